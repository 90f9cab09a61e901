/*
 * merge.c: multi-value registers with field policies (see merge.h).
 *
 * What this file guarantees:
 *   - merge_field_apply() computes dead = union of every applied write's
 *     supersedes, live = applied writes not in dead.  Both sets only depend
 *     on the set of writes applied, never on their order or on duplicates,
 *     so every node holding the same entries holds the same field states.
 *     A write that arrives already dead is dropped, but its supersedes still
 *     join dead: that is what makes out-of-order delivery converge.
 *   - The arrays are always in canonical order (live by (hlc, origin, lane,
 *     seq), dead by (origin, lane, seq)), live and dead are disjoint and hold
 *     no duplicates, and their sizes stay within MERGE_LIVE_MAX and
 *     MERGE_DEAD_MAX.  A refused write (negative return) leaves the state
 *     exactly as it was.
 *   - The displayed write is chosen by a total order (policy key, then
 *     (hlc, origin, lane, seq), then value), so it is the same everywhere.
 *   - merge_field_encode() is canonical: equal states give equal bytes.
 *     merge_field_decode() accepts only what encode could have written.
 *
 * Encoding, all integers big-endian:
 *     u8  version (MERGE_ENCODING_VERSION)
 *     u32 live_count
 *         live_count x { u8 origin_len, origin, u8 lane, u64 seq, u64 hlc,
 *                        u32 round, u32 value_len, value }
 *     u32 dead_count
 *         dead_count x { u8 origin_len, origin, u8 lane, u64 seq }
 * Origins are 1..TS_ID_BYTES_MAX bytes, values 0..TS_VALUE_BYTES_MAX bytes,
 * neither holds a NUL byte.
 *
 * No I/O, no globals: safe to call from any thread on distinct states.
 */
#include "merge.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "enroll.h"

_Static_assert(TS_ID_BYTES_MAX <= UINT8_MAX, "an origin length fits in one byte");
_Static_assert(TS_SUPERSEDES_MAX <= MERGE_DEAD_MAX,
               "one write's supersedes must fit in an empty dead set");
_Static_assert(MERGE_LIVE_MAX <= INT32_MAX, "merge_display returns an int index");

/* ---- ordering ---------------------------------------------------------- */

static int ref_cmp(const struct entry_ref *a, const struct entry_ref *b)
{
    int c = strcmp(a->origin, b->origin);
    if (c != 0)
        return c < 0 ? -1 : 1;
    if (a->lane != b->lane)
        return a->lane < b->lane ? -1 : 1;
    if (a->seq != b->seq)
        return a->seq < b->seq ? -1 : 1;
    return 0;
}

static int ref_cmp_qsort(const void *a, const void *b)
{
    return ref_cmp(a, b);
}

/* Canonical order of live writes: (hlc, origin, lane, seq). */
static int live_cmp(const struct live_write *a, const struct live_write *b)
{
    if (a->hlc != b->hlc)
        return a->hlc < b->hlc ? -1 : 1;
    return ref_cmp(&a->ref, &b->ref);
}

static bool ref_valid(const struct entry_ref *r)
{
    if (memchr(r->origin, '\0', sizeof(r->origin)) == NULL)
        return false;
    if (r->origin[0] == '\0')
        return false;
    return r->lane < LANE_COUNT;
}

/* True when ref is in the sorted array refs[0..n). */
static bool refs_have(const struct entry_ref *refs, size_t n, const struct entry_ref *ref)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = ref_cmp(&refs[mid], ref);
        if (c == 0)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

static long live_find(const struct field_state *s, const struct entry_ref *ref)
{
    for (size_t i = 0; i < s->live_count; i++) {
        if (ref_cmp(&s->live[i].ref, ref) == 0)
            return (long)i;
    }
    return -1;
}

/* The invariants every state keeps; used as assert(state_check(s)), so it
 * is unused when NDEBUG compiles the assertions out. */
__attribute__((unused)) static bool state_check(const struct field_state *s)
{
    if (s->live_count > MERGE_LIVE_MAX || s->dead_count > MERGE_DEAD_MAX)
        return false;
    if (s->live_count > 0 && s->live == NULL)
        return false;
    if (s->dead_count > 0 && s->dead == NULL)
        return false;
    for (size_t i = 1; i < s->live_count; i++) {
        if (live_cmp(&s->live[i - 1], &s->live[i]) >= 0)
            return false;
    }
    for (size_t i = 1; i < s->dead_count; i++) {
        if (ref_cmp(&s->dead[i - 1], &s->dead[i]) >= 0)
            return false;
    }
    for (size_t i = 0; i < s->live_count; i++) {
        if (s->live[i].value == NULL)
            return false;
        if (refs_have(s->dead, s->dead_count, &s->live[i].ref))
            return false;
    }
    return true;
}

/* ---- lifecycle --------------------------------------------------------- */

void field_state_release(struct field_state *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->live_count; i++)
        free(s->live[i].value);
    free(s->live);
    free(s->dead);
    memset(s, 0, sizeof(*s));
}

/* ---- policies ---------------------------------------------------------- */

enum merge_policy merge_policy_of(const char *type, const char *field)
{
    assert(type != NULL);
    assert(field != NULL);
    const struct schema_field *f = schema_field(type, field);
    return f != NULL ? f->policy : MERGE_POLICY_LATEST;
}

int merge_rank(const char *type, const char *field, const char *value)
{
    assert(type != NULL);
    assert(field != NULL);
    const struct schema_field *f = schema_field(type, field);
    if (f == NULL || value == NULL)
        return -1;
    if (f->policy != MERGE_POLICY_RANK && f->policy != MERGE_POLICY_QUERY_STATE)
        return -1;
    return schema_term_rank(f, value);
}

/* Severity of a value of a worst-wins field (the table's rank: higher is
 * worse); -1 for a value outside the field's scale, so any known value
 * outranks garbage. */
static int worst_score(const char *type, const char *field, const char *value)
{
    return schema_term_rank(schema_field(type, field), value);
}

/* The policy's primary key of one live write; bigger is shown. */
struct display_key {
    int64_t major;
    int64_t minor;
};

static struct display_key display_key_of(enum merge_policy policy, const char *type,
                                         const char *field, const struct live_write *lw)
{
    struct display_key k = { 0, 0 };

    switch (policy) {
    case MERGE_POLICY_WORST:
        k.major = worst_score(type, field, lw->value);
        break;
    case MERGE_POLICY_RANK:
        k.major = merge_rank(type, field, lw->value);
        break;
    case MERGE_POLICY_QUERY_STATE:
        k.major = lw->round;
        k.minor = merge_rank(type, field, lw->value);
        break;
    case MERGE_POLICY_ROUND:
        /* The store stamps every write of a query entry with the round the
         * entry writes, so the round field's own value is its round. */
        k.major = lw->round;
        break;
    case MERGE_POLICY_MAX: {
        /* A value that is not a count (never admitted) sorts below 0. */
        uint64_t count;
        k.major = enroll_count_parse(lw->value, &count) ? (int64_t)count : -1;
        break;
    }
    case MERGE_POLICY_LATEST:
    case MERGE_POLICY_WRITE_ONCE:
    case MERGE_POLICY_APPEND:
        break;
    }
    return k;
}

/* Total order of candidates for display: policy key, then canonical live
 * order, then the value (unreachable while refs are unique; kept so the order
 * is total whatever the input). */
static int display_cmp(enum merge_policy policy, const char *type, const char *field,
                       const struct live_write *a, const struct live_write *b)
{
    struct display_key ka = display_key_of(policy, type, field, a);
    struct display_key kb = display_key_of(policy, type, field, b);

    if (ka.major != kb.major)
        return ka.major < kb.major ? -1 : 1;
    if (ka.minor != kb.minor)
        return ka.minor < kb.minor ? -1 : 1;
    int c = live_cmp(a, b);
    if (c != 0)
        return c;
    c = strcmp(a->value, b->value);
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

/*
 * LATEST, WORST, RANK, QUERY_STATE, ROUND: the greatest write under display_cmp.
 * WRITE_ONCE: the earliest write by (hlc, origin, lane, seq), the first one.
 * APPEND: every live write is shown; the index returned is the newest one.
 */
int merge_display(const char *type, const char *field, const struct field_state *s)
{
    assert(s != NULL);
    assert(state_check(s));
    if (s->live_count == 0)
        return -1;

    enum merge_policy policy = merge_policy_of(type, field);
    if (policy == MERGE_POLICY_WRITE_ONCE)
        return 0;
    if (policy == MERGE_POLICY_APPEND || policy == MERGE_POLICY_LATEST)
        return (int)(s->live_count - 1);

    size_t best = 0;
    for (size_t i = 1; i < s->live_count; i++) {
        if (display_cmp(policy, type, field, &s->live[i], &s->live[best]) > 0)
            best = i;
    }
    return (int)best;
}

/* True when every live write of s holds the same value. */
static bool live_values_agree(const struct field_state *s)
{
    for (size_t i = 1; i < s->live_count; i++) {
        if (strcmp(s->live[i].value, s->live[0].value) != 0)
            return false;
    }
    return true;
}

/*
 * Which live writes a person must look at:
 *   - none when they all hold the same value (two nodes agreed while apart);
 *   - none for append-only messages and the query's (round, state) and round,
 *     whose merge is a rule DOMAIN.md states (an answer crossing a cancel);
 *   - for a status, only when the shown state is final and another live write
 *     differs from it: concurrent final states (died against withdrawn), or a
 *     write that lost to a final state it had not seen (a late "randomized"
 *     against "died"), whose entry may carry other fields (merge_write_lost);
 *     concurrent steps along the way (enrolled against randomized) are the
 *     rank rule at work;
 *   - otherwise (clinical values, worst-wins, keys), any disagreement.
 */
bool merge_conflict(const char *type, const char *field, const struct field_state *s)
{
    assert(s != NULL);
    if (s->live_count < 2)
        return false;
    if (live_values_agree(s))
        return false;
    switch (merge_policy_of(type, field)) {
    case MERGE_POLICY_APPEND:
    case MERGE_POLICY_QUERY_STATE:
    case MERGE_POLICY_ROUND:
    case MERGE_POLICY_MAX:
        return false;
    case MERGE_POLICY_RANK: {
        int shown = merge_display(type, field, s);
        assert(shown >= 0);
        return schema_state_final(schema_field(type, field), s->live[shown].value);
    }
    case MERGE_POLICY_LATEST:
    case MERGE_POLICY_WORST:
    case MERGE_POLICY_WRITE_ONCE:
        break;
    }
    return true;
}

bool merge_write_lost(const char *type, const char *field, const struct field_state *s,
                      const struct entry_ref *ref)
{
    assert(s != NULL);
    assert(ref != NULL);
    if (merge_policy_of(type, field) != MERGE_POLICY_RANK || !merge_conflict(type, field, s))
        return false;
    int shown = merge_display(type, field, s);
    assert(shown >= 0);
    for (size_t i = 0; i < s->live_count; i++) {
        if (ref_cmp(&s->live[i].ref, ref) != 0)
            continue;
        return strcmp(s->live[i].value, s->live[shown].value) != 0;
    }
    return false;
}

/* ---- apply ------------------------------------------------------------- */

uint32_t merge_entry_round(const struct entry *e)
{
    if (strcmp(e->record_type, "query") != 0)
        return 0;
    for (size_t i = 0; i < e->writes_count; i++) {
        const struct field_write *w = &e->writes[i];
        if (strcmp(w->field, "round") != 0 || w->value == NULL)
            continue;
        char *end = NULL;
        errno = 0;
        unsigned long v = strtoul(w->value, &end, 10);
        if (errno != 0 || end == w->value || *end != '\0' || v == 0 || v > UINT32_MAX)
            return 1;
        return (uint32_t)v;
    }
    return 1;
}

void merge_write_of(const struct entry *e, const struct field_write *w, uint32_t round,
                    struct merge_write *mw)
{
    memset(mw, 0, sizeof(*mw));
    mw->hlc = e->hlc;
    mw->round = round;
    mw->value = w->value != NULL ? w->value : "";
    mw->supersedes = w->supersedes;
    mw->supersedes_count = w->supersedes_count;
    memcpy(mw->ref.origin, e->origin, sizeof(mw->ref.origin));
    mw->ref.lane = e->lane;
    mw->ref.seq = e->seq;
}

static int write_check(const struct merge_write *w)
{
    if (!ref_valid(&w->ref))
        return TS_ERR_INVALID;
    if (w->value == NULL)
        return TS_ERR_INVALID;
    if (strnlen(w->value, TS_VALUE_BYTES_MAX + 1) > TS_VALUE_BYTES_MAX)
        return TS_ERR_TOOBIG;
    if (w->supersedes_count > TS_SUPERSEDES_MAX)
        return TS_ERR_TOOBIG;
    if (w->supersedes_count > 0 && w->supersedes == NULL)
        return TS_ERR_INVALID;
    for (size_t i = 0; i < w->supersedes_count; i++) {
        if (!ref_valid(&w->supersedes[i]))
            return TS_ERR_INVALID;
    }
    return 0;
}

/* Merges the sorted, disjoint arrays a and b into out (sized na + nb). */
static void refs_merge(const struct entry_ref *a, size_t na,
                       const struct entry_ref *b, size_t nb, struct entry_ref *out)
{
    size_t i = 0, j = 0, k = 0;

    while (i < na && j < nb) {
        int c = ref_cmp(&a[i], &b[j]);
        assert(c != 0);
        out[k++] = c < 0 ? a[i++] : b[j++];
    }
    while (i < na)
        out[k++] = a[i++];
    while (j < nb)
        out[k++] = b[j++];
}

static char *value_dup(const char *value)
{
    size_t len = strlen(value);
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return NULL;
    memcpy(copy, value, len + 1);
    return copy;
}

int merge_field_apply(struct field_state *s, const struct merge_write *w)
{
    assert(s != NULL);
    assert(w != NULL);
    assert(state_check(s));

    int rc = write_check(w);
    if (rc < 0)
        return rc;

    /* The same (origin, lane, seq) with different content is two entries
     * claiming one place in a chain. */
    long held = live_find(s, &w->ref);
    if (held >= 0) {
        const struct live_write *lw = &s->live[held];
        if (lw->hlc != w->hlc || lw->round != w->round || strcmp(lw->value, w->value) != 0)
            return TS_ERR_FORK;
    }

    /* The refs this write adds to dead: its supersedes not dead yet, once each. */
    struct entry_ref added[TS_SUPERSEDES_MAX];
    size_t added_count = 0;
    for (size_t i = 0; i < w->supersedes_count; i++) {
        const struct entry_ref *r = &w->supersedes[i];
        if (refs_have(s->dead, s->dead_count, r))
            continue;
        bool seen = false;
        for (size_t j = 0; j < added_count && !seen; j++)
            seen = ref_cmp(&added[j], r) == 0;
        if (!seen)
            added[added_count++] = *r;
    }
    qsort(added, added_count, sizeof(added[0]), ref_cmp_qsort);

    bool w_dead = refs_have(s->dead, s->dead_count, &w->ref)
                  || refs_have(added, added_count, &w->ref);
    bool w_joins = !w_dead && held < 0;
    size_t survivors = 0;
    for (size_t i = 0; i < s->live_count; i++) {
        if (!refs_have(added, added_count, &s->live[i].ref))
            survivors++;
    }

    if (added_count == 0 && !w_joins)
        return 0;

    size_t dead_count = s->dead_count + added_count;
    size_t live_count = survivors + (w_joins ? 1 : 0);
    if (dead_count > MERGE_DEAD_MAX || live_count > MERGE_LIVE_MAX)
        return TS_ERR_TOOBIG;

    /* Everything that can fail happens before the state is touched. */
    struct entry_ref *dead = NULL;
    struct live_write *live = NULL;
    char *value = NULL;
    if (added_count > 0) {
        dead = malloc(dead_count * sizeof(*dead));
        if (dead == NULL)
            goto out_nomem;
    }
    if (live_count > 0) {
        live = malloc(live_count * sizeof(*live));
        if (live == NULL)
            goto out_free_dead;
    }
    if (w_joins) {
        value = value_dup(w->value);
        if (value == NULL)
            goto out_free_live;
    }

    /* Commit: survivors keep their values; the superseded ones free theirs. */
    struct live_write incoming = { .ref = w->ref, .hlc = w->hlc, .round = w->round, .value = value };
    size_t k = 0;
    bool placed = !w_joins;
    for (size_t i = 0; i < s->live_count; i++) {
        struct live_write *lw = &s->live[i];
        if (refs_have(added, added_count, &lw->ref)) {
            free(lw->value);
            continue;
        }
        if (!placed && live_cmp(&incoming, lw) < 0) {
            live[k++] = incoming;
            placed = true;
        }
        live[k++] = *lw;
    }
    if (!placed)
        live[k++] = incoming;
    assert(k == live_count);
    free(s->live);
    s->live = live;
    s->live_count = live_count;

    if (added_count > 0) {
        refs_merge(s->dead, s->dead_count, added, added_count, dead);
        free(s->dead);
        s->dead = dead;
        s->dead_count = dead_count;
    }
    assert(state_check(s));
    return 1;

out_free_live:
    free(live);
out_free_dead:
    free(dead);
out_nomem:
    return TS_ERR_NOMEM;
}

/* ---- encoding ---------------------------------------------------------- */

static uint8_t *put_u8(uint8_t *p, uint8_t v)
{
    *p = v;
    return p + 1;
}

static uint8_t *put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--)
        *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

static uint8_t *put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--)
        *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

static uint8_t *put_ref(uint8_t *p, const struct entry_ref *r)
{
    size_t len = strlen(r->origin);
    p = put_u8(p, (uint8_t)len);
    memcpy(p, r->origin, len);
    p += len;
    p = put_u8(p, r->lane);
    return put_u64(p, r->seq);
}

static size_t ref_encoded_len(const struct entry_ref *r)
{
    return 1 + strlen(r->origin) + 1 + 8;
}

int merge_field_encode(const struct field_state *s, uint8_t **out, size_t *out_len)
{
    assert(s != NULL);
    assert(out != NULL);
    assert(out_len != NULL);
    assert(state_check(s));

    size_t len = 1 + 4 + 4;
    for (size_t i = 0; i < s->live_count; i++)
        len += ref_encoded_len(&s->live[i].ref) + 8 + 4 + 4 + strlen(s->live[i].value);
    for (size_t i = 0; i < s->dead_count; i++)
        len += ref_encoded_len(&s->dead[i]);

    uint8_t *buf = malloc(len);
    if (buf == NULL)
        return TS_ERR_NOMEM;
    uint8_t *p = buf;
    p = put_u8(p, MERGE_ENCODING_VERSION);
    p = put_u32(p, (uint32_t)s->live_count);
    for (size_t i = 0; i < s->live_count; i++) {
        const struct live_write *lw = &s->live[i];
        size_t vlen = strlen(lw->value);
        p = put_ref(p, &lw->ref);
        p = put_u64(p, lw->hlc);
        p = put_u32(p, lw->round);
        p = put_u32(p, (uint32_t)vlen);
        memcpy(p, lw->value, vlen);
        p += vlen;
    }
    p = put_u32(p, (uint32_t)s->dead_count);
    for (size_t i = 0; i < s->dead_count; i++)
        p = put_ref(p, &s->dead[i]);
    assert((size_t)(p - buf) == len);

    *out = buf;
    *out_len = len;
    return 0;
}

struct reader {
    const uint8_t *buf;
    size_t len;
    size_t pos;
};

static bool get_u8(struct reader *r, uint8_t *v)
{
    if (r->len - r->pos < 1)
        return false;
    *v = r->buf[r->pos++];
    return true;
}

static bool get_u32(struct reader *r, uint32_t *v)
{
    if (r->len - r->pos < 4)
        return false;
    uint32_t x = 0;
    for (int i = 0; i < 4; i++)
        x = (x << 8) | r->buf[r->pos++];
    *v = x;
    return true;
}

static bool get_u64(struct reader *r, uint64_t *v)
{
    if (r->len - r->pos < 8)
        return false;
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x = (x << 8) | r->buf[r->pos++];
    *v = x;
    return true;
}

/* n bytes without a NUL among them, so they read back as one C string. */
static bool get_text(struct reader *r, size_t n, const uint8_t **bytes)
{
    if (r->len - r->pos < n)
        return false;
    if (memchr(r->buf + r->pos, '\0', n) != NULL)
        return false;
    *bytes = r->buf + r->pos;
    r->pos += n;
    return true;
}

static bool get_ref(struct reader *r, struct entry_ref *ref)
{
    uint8_t olen;
    const uint8_t *origin;

    memset(ref, 0, sizeof(*ref));
    if (!get_u8(r, &olen) || olen == 0 || olen > TS_ID_BYTES_MAX)
        return false;
    if (!get_text(r, olen, &origin))
        return false;
    memcpy(ref->origin, origin, olen);
    ref->origin[olen] = '\0';
    if (!get_u8(r, &ref->lane) || ref->lane >= LANE_COUNT)
        return false;
    return get_u64(r, &ref->seq);
}

/* 0, TS_ERR_CORRUPT or TS_ERR_NOMEM; lw->value is set only on success. */
static int get_live(struct reader *r, struct live_write *lw)
{
    uint32_t vlen;
    const uint8_t *bytes;

    if (!get_ref(r, &lw->ref) || !get_u64(r, &lw->hlc) || !get_u32(r, &lw->round))
        return TS_ERR_CORRUPT;
    if (!get_u32(r, &vlen) || vlen > TS_VALUE_BYTES_MAX)
        return TS_ERR_CORRUPT;
    if (!get_text(r, vlen, &bytes))
        return TS_ERR_CORRUPT;
    lw->value = malloc((size_t)vlen + 1);
    if (lw->value == NULL)
        return TS_ERR_NOMEM;
    memcpy(lw->value, bytes, vlen);
    lw->value[vlen] = '\0';
    return 0;
}

/* True when no two live writes share a ref (live is ordered by hlc first,
 * so its order alone does not show that). */
static int live_refs_distinct(const struct field_state *s, bool *distinct)
{
    *distinct = true;
    if (s->live_count < 2)
        return 0;
    struct entry_ref *refs = malloc(s->live_count * sizeof(*refs));
    if (refs == NULL)
        return TS_ERR_NOMEM;
    for (size_t i = 0; i < s->live_count; i++)
        refs[i] = s->live[i].ref;
    qsort(refs, s->live_count, sizeof(*refs), ref_cmp_qsort);
    for (size_t i = 1; i < s->live_count && *distinct; i++)
        *distinct = ref_cmp(&refs[i - 1], &refs[i]) != 0;
    free(refs);
    return 0;
}

/*
 * s is output only: on success it owns the decoded state, on error it is
 * left empty (all zero).  TS_ERR_CORRUPT for bytes merge_field_encode would
 * not have written, TS_ERR_NOMEM when memory runs out.
 */
int merge_field_decode(const uint8_t *buf, size_t len, struct field_state *s)
{
    assert(s != NULL);
    assert(buf != NULL || len == 0);
    memset(s, 0, sizeof(*s));

    struct reader r = { buf, len, 0 };
    int rc = TS_ERR_CORRUPT;
    uint8_t version;
    uint32_t live_count, dead_count;

    if (!get_u8(&r, &version) || version != MERGE_ENCODING_VERSION)
        goto out_release;
    if (!get_u32(&r, &live_count) || live_count > MERGE_LIVE_MAX)
        goto out_release;
    if (live_count > 0) {
        s->live = calloc(live_count, sizeof(*s->live));
        if (s->live == NULL) {
            rc = TS_ERR_NOMEM;
            goto out_release;
        }
    }
    for (uint32_t i = 0; i < live_count; i++) {
        int lrc = get_live(&r, &s->live[i]);
        if (lrc < 0) {
            rc = lrc;
            goto out_release;
        }
        s->live_count++;
        if (i > 0 && live_cmp(&s->live[i - 1], &s->live[i]) >= 0)
            goto out_release;
    }
    if (!get_u32(&r, &dead_count) || dead_count > MERGE_DEAD_MAX)
        goto out_release;
    if (dead_count > 0) {
        s->dead = calloc(dead_count, sizeof(*s->dead));
        if (s->dead == NULL) {
            rc = TS_ERR_NOMEM;
            goto out_release;
        }
    }
    for (uint32_t i = 0; i < dead_count; i++) {
        if (!get_ref(&r, &s->dead[i]))
            goto out_release;
        s->dead_count++;
        if (i > 0 && ref_cmp(&s->dead[i - 1], &s->dead[i]) >= 0)
            goto out_release;
    }
    if (r.pos != r.len)
        goto out_release;

    bool distinct;
    int drc = live_refs_distinct(s, &distinct);
    if (drc < 0) {
        rc = drc;
        goto out_release;
    }
    if (!distinct)
        goto out_release;
    for (size_t i = 0; i < s->live_count; i++) {
        if (refs_have(s->dead, s->dead_count, &s->live[i].ref))
            goto out_release;
    }
    assert(state_check(s));
    return 0;

out_release:
    field_state_release(s);
    return rc;
}
