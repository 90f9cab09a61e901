/*
 * protocol.c: wire protocol version negotiation (see protocol.h).  No I/O.
 */
#include "protocol.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>

#include "errors.h"

int protocol_negotiate(uint32_t ours_min, uint32_t ours_max, uint32_t theirs_min,
                       uint32_t theirs_max, uint32_t *agreed, char *why, size_t cap)
{
    assert(ours_min >= 1);
    assert(ours_min <= ours_max);
    assert(agreed != NULL);
    *agreed = 0;
    if (theirs_min == 0)
        theirs_min = theirs_max;
    if (theirs_max == 0 || theirs_min > theirs_max) {
        if (why != NULL)
            snprintf(why, cap, "malformed protocol range %" PRIu32 "..%" PRIu32
                     " in the peer's hello", theirs_min, theirs_max);
        return TS_ERR_INVALID;
    }
    uint32_t high = ours_max < theirs_max ? ours_max : theirs_max;
    uint32_t low = ours_min > theirs_min ? ours_min : theirs_min;
    if (high < low) {
        if (why != NULL)
            snprintf(why, cap, "no common protocol version: the peer speaks %" PRIu32
                     "..%" PRIu32 ", this node %" PRIu32 "..%" PRIu32 "; upgrade %s "
                     "(hubs first, then sites: docs/operations.md)",
                     theirs_min, theirs_max, ours_min, ours_max,
                     theirs_max < ours_min ? "the peer" : "this node");
        return TS_ERR_INVALID;
    }
    *agreed = high;
    assert(*agreed >= ours_min && *agreed <= ours_max);
    assert(*agreed >= theirs_min && *agreed <= theirs_max);
    return 0;
}
