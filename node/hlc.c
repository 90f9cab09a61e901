/*
 * hlc.c: hybrid logical clock (see hlc.h).
 */
#include "hlc.h"

void hlc_init(struct hlc *c, uint64_t last)
{
    c->last = last;
}

uint64_t hlc_now(struct hlc *c, uint64_t wall_ms)
{
    /* Saturating: a wall clock past the representable range pins the clock
     * at its top instead of wrapping to 0. */
    uint64_t physical = wall_ms > (UINT64_MAX >> HLC_LOGICAL_BITS) ? UINT64_MAX
                                                                   : wall_ms << HLC_LOGICAL_BITS;

    /* A wall clock behind what was seen (skew, or a jump back) only bumps the
     * logical part, so timestamps never go backwards. */
    if (physical > c->last)
        c->last = physical;
    else if (c->last < UINT64_MAX)
        c->last++;
    return c->last;
}

void hlc_observe(struct hlc *c, uint64_t remote)
{
    if (remote > c->last)
        c->last = remote;
}

uint64_t hlc_ms(uint64_t t)
{
    return t >> HLC_LOGICAL_BITS;
}
