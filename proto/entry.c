/*
 * entry.c: lifecycle and ordering of the plain entry structs of entry.h.
 *
 * Guarantees: entry_release() frees exactly what an entry owns (user, reason,
 * each write's value and supersedes array, the writes array), leaves the
 * struct zeroed, and is safe on a zeroed or already released entry.
 * entry_ref_cmp() is a total order (origin bytes, then lane, then seq) that
 * returns only -1, 0 or 1, so it can feed qsort and bsearch directly.
 */
#include "entry.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

void entry_release(struct entry *e)
{
    assert(e != NULL);
    free(e->user);
    free(e->reason);
    if (e->writes != NULL) {
        for (size_t i = 0; i < e->writes_count; i++) {
            free(e->writes[i].value);
            free(e->writes[i].supersedes);
        }
    } else {
        /* A count without an array would be a half-built entry. */
        assert(e->writes_count == 0);
    }
    free(e->writes);
    memset(e, 0, sizeof(*e));
}

int entry_ref_cmp(const struct entry_ref *a, const struct entry_ref *b)
{
    assert(a != NULL);
    assert(b != NULL);
    /* Origins are NUL-terminated within their arrays; compare as bytes. */
    int c = strcmp(a->origin, b->origin);
    if (c != 0)
        return c < 0 ? -1 : 1;
    if (a->lane != b->lane)
        return a->lane < b->lane ? -1 : 1;
    if (a->seq != b->seq)
        return a->seq < b->seq ? -1 : 1;
    return 0;
}
