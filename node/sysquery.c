/*
 * sysquery.c: system queries, derived from the state (sysquery.h).
 *
 * Guarantees: the same entries give the same list on every node, in the same
 * order; nothing is written; reading a record's system queries reads its
 * fields, its history and, for each write that superseded two or more
 * others, those writes' entries (a correction of a conflict), nothing else.
 */
#include "sysquery.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../proto/errors.h"
#include "../storage/store.h"
#include "api.h"
#include "crypto.h"
#include "schema.h"
#include "util.h"

/* Bytes of the SHA-256 the id shows (as hex): 64 bits. */
#define SYSQUERY_ID_HASH_BYTES 8

void sysquery_id(const char *type, const char *id, const char *field,
                 const struct entry_ref *cause, char out[SYSQUERY_ID_BYTES])
{
    assert(type != NULL && id != NULL && field != NULL && cause != NULL);
    char buf[TS_TYPE_BYTES_MAX + TS_ID_BYTES_MAX + TS_FIELD_BYTES_MAX + TS_ID_BYTES_MAX + 64];
    /* NUL-separated, so no two causes share the bytes hashed. */
    int len = snprintf(buf, sizeof(buf), "conflict%c%s%c%s%c%s%c%s%c%u%c%llu", 0, type, 0, id,
                       0, field, 0, cause->origin, 0, (unsigned)cause->lane, 0,
                       (unsigned long long)cause->seq);
    assert(len > 0 && (size_t)len < sizeof(buf));
    uint8_t h[TS_HASH_BYTES];
    crypto_sha256(buf, (size_t)len, h);
    char hex[2 * SYSQUERY_ID_HASH_BYTES + 1];
    util_hex(h, SYSQUERY_ID_HASH_BYTES, hex);
    snprintf(out, SYSQUERY_ID_BYTES, "SYS-%s", hex);
}

/* True when type/id/field is a site record's field, which a query may target. */
static bool sysquery_target(const char *type, const char *id, const char *field,
                            char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s/%s", type, id, field);
    return n > 0 && (size_t)n < cap && schema_target_ok(out);
}

/* The least ref (entry_ref_cmp) of refs. */
static const struct entry_ref *least_ref(const struct entry_ref *const *refs, size_t n)
{
    assert(n > 0);
    const struct entry_ref *least = refs[0];
    for (size_t i = 1; i < n; i++)
        if (entry_ref_cmp(refs[i], least) < 0)
            least = refs[i];
    return least;
}

bool sysquery_open_id(const char *type, const char *id, const char *field,
                      const struct field_state *st, char out[SYSQUERY_ID_BYTES])
{
    char target[TS_TYPE_BYTES_MAX + TS_ID_BYTES_MAX + TS_FIELD_BYTES_MAX + 3];
    if (st->live_count < 2 || !merge_conflict(type, field, st) ||
        !sysquery_target(type, id, field, target, sizeof(target)))
        return false;
    const struct entry_ref *least = &st->live[0].ref;
    for (size_t i = 1; i < st->live_count; i++)
        if (entry_ref_cmp(&st->live[i].ref, least) < 0)
            least = &st->live[i].ref;
    sysquery_id(type, id, field, least, out);
    return true;
}

static const char *cause_text(const char *type, const char *field)
{
    return merge_policy_of(type, field) == MERGE_POLICY_RANK
               ? "a final status with another status written concurrently"
               : "concurrent different values";
}

static json_t *item_json(const char *type, const char *id, const char *field,
                         const char *qid, const char *state)
{
    char target[TS_TYPE_BYTES_MAX + TS_ID_BYTES_MAX + TS_FIELD_BYTES_MAX + 3];
    snprintf(target, sizeof(target), "%s/%s/%s", type, id, field);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "id", qid, "source", "system", "target",
                     target, "field", field, "state", state, "cause", cause_text(type, field));
}

struct list_ctx {
    struct store *store;
    const char *type;
    const char *id;
    json_t *list;
    sysquery_hidden_fn hidden;
    void *hidden_ctx;
};

static bool is_hidden(const struct list_ctx *l, const struct entry_ref *ref)
{
    return l->hidden != NULL && l->hidden(l->hidden_ctx, ref);
}

static bool listed(json_t *list, const char *qid)
{
    size_t i;
    json_t *q;
    json_array_foreach(list, i, q) {
        if (strcmp(json_string_value(json_object_get(q, "id")), qid) == 0)
            return true;
    }
    return false;
}

static int open_cb(void *ctx, const char *field, const struct field_state *st)
{
    struct list_ctx *l = ctx;
    char qid[SYSQUERY_ID_BYTES];
    /* The displayed record's live writes: without the hidden ones. */
    struct field_state shown = *st;
    struct live_write *kept = NULL;
    if (l->hidden != NULL && st->live_count > 0) {
        kept = malloc(st->live_count * sizeof(*kept));
        if (kept == NULL)
            return TS_ERR_NOMEM;
        size_t n = 0;
        for (size_t i = 0; i < st->live_count; i++)
            if (!is_hidden(l, &st->live[i].ref))
                kept[n++] = st->live[i];  /* borrowed: st owns the values */
        shown.live = kept;
        shown.live_count = n;
    }
    if (sysquery_open_id(l->type, l->id, field, &shown, qid))
        json_array_append_new(l->list, item_json(l->type, l->id, field, qid, "open"));
    free(kept);
    return 0;
}

/*
 * True when the writes of field that w superseded were a conflict: their
 * state, rebuilt from their entries, is one merge_conflict flags.  A
 * superseded write this node does not hold makes it false (it always holds
 * them: a write names only writes its writer held, and this node applied w).
 */
static bool superseded_a_conflict(const struct list_ctx *l, const char *field,
                                  const struct field_write *w)
{
    struct store *s = l->store;
    const char *type = l->type;
    struct field_state tmp = {0};
    bool ok = true;
    for (size_t i = 0; i < w->supersedes_count && ok; i++) {
        if (is_hidden(l, &w->supersedes[i]))
            continue;
        struct entry e;
        memset(&e, 0, sizeof(e));
        if (store_entry_get(s, &w->supersedes[i], &e, NULL) != 0) {
            ok = false;
            break;
        }
        for (size_t k = 0; k < e.writes_count; k++) {
            if (strcmp(e.writes[k].field, field) != 0)
                continue;
            struct merge_write mw;
            merge_write_of(&e, &e.writes[k], merge_entry_round(&e), &mw);
            /* Only the values matter here, not what each superseded. */
            mw.supersedes = NULL;
            mw.supersedes_count = 0;
            if (merge_field_apply(&tmp, &mw) < 0)
                ok = false;
        }
        entry_release(&e);
    }
    bool conflict = ok && tmp.live_count >= 2 && merge_conflict(type, field, &tmp);
    field_state_release(&tmp);
    return conflict;
}

static int closed_cb(void *ctx, const struct entry *e, uint64_t stored_ms)
{
    (void)stored_ms;
    struct list_ctx *l = ctx;
    char target[TS_TYPE_BYTES_MAX + TS_ID_BYTES_MAX + TS_FIELD_BYTES_MAX + 3];
    struct entry_ref self = {.lane = e->lane, .seq = e->seq};
    memcpy(self.origin, e->origin, sizeof(self.origin));
    if (is_hidden(l, &self))
        return 0;  /* a quarantined write resolves nothing */
    for (size_t i = 0; i < e->writes_count; i++) {
        const struct field_write *w = &e->writes[i];
        if (w->supersedes_count < 2 ||
            !sysquery_target(l->type, l->id, w->field, target, sizeof(target)) ||
            !superseded_a_conflict(l, w->field, w))
            continue;
        const struct entry_ref *refs[TS_SUPERSEDES_MAX];
        size_t n = 0;
        for (size_t k = 0; k < w->supersedes_count && n < TS_SUPERSEDES_MAX; k++)
            if (!is_hidden(l, &w->supersedes[k]))
                refs[n++] = &w->supersedes[k];
        char qid[SYSQUERY_ID_BYTES];
        sysquery_id(l->type, l->id, w->field, least_ref(refs, n), qid);
        /* Two people closing the same query concurrently: the first listed
         * (history order) is shown; their writes conflict in turn. */
        if (listed(l->list, qid))
            continue;
        json_t *q = item_json(l->type, l->id, w->field, qid, "closed");
        char t[40];
        api_format_time(e->wall_ms, t, sizeof(t));
        json_object_set_new(q, "closed_by",
                            json_pack("{s:s,s:s,s:I,s:s}", "user", e->user, "origin",
                                      e->origin, "seq", (json_int_t)e->seq, "time", t));
        json_array_append_new(l->list, q);
    }
    return 0;
}

json_t *sysquery_list(struct store *s, const char *type, const char *id,
                      sysquery_hidden_fn hidden, void *hidden_ctx)
{
    struct list_ctx l = {.store = s, .type = type, .id = id, .list = json_array(),
                         .hidden = hidden, .hidden_ctx = hidden_ctx};
    if (l.list == NULL)
        return NULL;
    int rc = store_record_fields(s, type, id, open_cb, &l);
    if (rc == 0)
        rc = store_record_history(s, type, id, closed_cb, &l);
    if (rc != 0) {
        json_decref(l.list);
        return NULL;
    }
    return l.list;
}
