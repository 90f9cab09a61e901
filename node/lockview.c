/*
 * lockview.c: record locks read from the store (see lockview.h).
 *
 * What this file guarantees:
 *   - Lock versions come from the lock record's history (every entry ever
 *     held), so the epoch -> (targets, seen) map is the same on every node
 *     that holds the same entries, whatever order they arrived in.
 *   - Displayed values of a record with quarantined entries are rebuilt by
 *     merge_field_apply over exactly its other entries, as store_apply would
 *     have built them had the quarantined entries never existed.
 *   - Reads only; a subject without a lock record costs one existence check.
 */
#include "lockview.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../proto/errors.h"
#include "api.h"
#include "crypto.h"
#include "merge.h"
#include "schema.h"

struct load_ctx {
    struct lock_set *set;
    size_t cap;
    int rc;
};

static int load_cb(void *ctx, const struct entry *e, uint64_t stored_ms)
{
    struct load_ctx *l = ctx;
    (void)stored_ms;
    if (l->set->count == LOCK_VERSIONS_MAX)
        return l->rc = TS_ERR_TOOBIG;
    if (l->set->count == l->cap) {
        size_t cap = l->cap == 0 ? 4 : 2 * l->cap;
        if (cap > LOCK_VERSIONS_MAX)
            cap = LOCK_VERSIONS_MAX;
        struct lock_version *v = realloc(l->set->v, cap * sizeof(*v));
        if (v == NULL)
            return l->rc = TS_ERR_NOMEM;
        l->set->v = v;
        l->cap = cap;
    }
    if (lock_version_of(e, &l->set->v[l->set->count]))
        l->set->count++;
    return 0;
}

int lockview_load(struct store *s, const char *subject, struct lock_set *out)
{
    char id[TS_ID_BYTES_MAX + 1];
    memset(out, 0, sizeof(*out));
    if (!lock_record_id(subject, id) || !store_record_exists(s, SCHEMA_LOCK_TYPE, id))
        return 0;
    struct load_ctx l = {.set = out};
    int rc = store_record_history(s, SCHEMA_LOCK_TYPE, id, load_cb, &l);
    if (rc == TS_ERR_NOTFOUND)
        rc = 0;
    if (rc == 0)
        rc = l.rc;
    if (rc != 0)
        lock_set_release(out);
    return rc;
}

int lockview_epoch_targets(struct store *s, const char *subject, uint64_t epoch, char *buf,
                           size_t cap)
{
    struct lock_set set;
    int rc = lockview_load(s, subject, &set);
    if (rc != 0)
        return rc;
    bool found = false;
    size_t used = 0;
    assert(cap > 0);
    buf[0] = '\0';
    for (size_t i = 0; i < set.count && rc == 0; i++) {
        if (set.v[i].epoch != epoch)
            continue;
        found = true;
        int n = snprintf(buf + used, cap - used, "%s%s", used > 0 ? "," : "", set.v[i].targets);
        if (n < 0 || (size_t)n >= cap - used)
            rc = TS_ERR_TOOBIG;
        else
            used += (size_t)n;
    }
    lock_set_release(&set);
    if (rc == 0 && !found)
        rc = TS_ERR_NOTFOUND;
    return rc;
}

int lockview_check_write(struct store *s, const char *type, const char *id, uint64_t *epoch,
                         char *msg, size_t cap)
{
    char subject[TS_ID_BYTES_MAX + 1], since[40];
    struct lock_set set;
    *epoch = 0;
    if (!lock_subject_of(type, id, subject))
        return 0;
    int rc = lockview_load(s, subject, &set);
    if (rc != 0) {
        snprintf(msg, cap, "cannot read the locks of subject %s: %s", subject, ts_strerror(rc));
        return rc;
    }
    *epoch = lock_set_epoch(&set);
    const struct lock_version *v = lock_set_covering(&set, *epoch, type, id);
    if (v != NULL) {
        api_format_time(v->wall_ms, since, sizeof(since));
        snprintf(msg, cap, "%s %s is locked by %s since %s (lock epoch %" PRIu64 "): %s; a data "
                 "manager unlocks it with 'trialsync unlock'",
                 type, id, v->user, since, v->epoch, v->reason);
        rc = TS_ERR_AUTH;
    }
    lock_set_release(&set);
    return rc;
}

int lockview_seen(struct store *s, const char *subject, char *out, size_t cap)
{
    char site[TS_ID_BYTES_MAX + 1];
    struct vv_item *vv = NULL;
    size_t count = 0, used = 0, chains = 0;
    if (!schema_site_of_key(subject, site))
        return TS_ERR_INVALID;
    int rc = store_vv(s, &vv, &count);
    if (rc != 0)
        return rc;
    out[0] = '\0';
    for (size_t i = 0; i < count && rc == 0; i++) {
        /* Another site never writes this subject's records (scope), so its
         * chains say nothing about them. */
        if (strcmp(vv[i].origin, site) != 0 &&
            store_record_exists(s, SCHEMA_MEMBER_TYPE, vv[i].origin))
            continue;
        if (++chains > LOCK_SEEN_MAX) {
            rc = TS_ERR_TOOBIG;
            break;
        }
        int n = snprintf(out + used, cap - used, "%s%s:%u:%" PRIu64, used > 0 ? "," : "",
                         vv[i].origin, (unsigned)vv[i].lane, vv[i].seq);
        if (n < 0 || (size_t)n >= cap - used)
            rc = TS_ERR_TOOBIG;
        else
            used += (size_t)n;
    }
    free(vv);
    return rc;
}

void lockview_query_id(const struct entry_ref *ref, char out[TS_ID_BYTES_MAX + 1])
{
    char cause[TS_ID_BYTES_MAX + 48];
    uint8_t h[TS_HASH_BYTES];
    int n = snprintf(cause, sizeof(cause), "quarantine|%s/%s/%" PRIu64, ref->origin,
                     ref->lane == LANE_SAFETY ? "safety" : "bulk", ref->seq);
    assert(n > 0 && (size_t)n < sizeof(cause));
    crypto_sha256(cause, (size_t)n, h);
    memcpy(out, "SYS-", 4);
    for (size_t i = 0; i < 8; i++)
        snprintf(out + 4 + 2 * i, 3, "%02x", h[i]);
}

/* ---- the displayed record ------------------------------------------------------ */

/* Fields of one record: at most the writes of one entry times a few. */
#define LOCKVIEW_FIELDS_MAX 128

struct rebuilt_field {
    char name[TS_FIELD_BYTES_MAX + 1];
    struct field_state st;
    uint64_t hlc_max;   /* newest displayed (not quarantined) write of it */
};

struct read_ctx {
    const struct lock_set *set;
    struct rebuilt_field *fields;
    size_t count;
    json_t *quarantined;   /* array; entries with their hlc kept in "_hlc" */
    int rc;
};

static struct rebuilt_field *field_slot(struct read_ctx *r, const char *name)
{
    for (size_t i = 0; i < r->count; i++)
        if (strcmp(r->fields[i].name, name) == 0)
            return &r->fields[i];
    if (r->count == LOCKVIEW_FIELDS_MAX || strlen(name) > TS_FIELD_BYTES_MAX)
        return NULL;
    struct rebuilt_field *f = &r->fields[r->count++];
    memset(f, 0, sizeof(*f));
    memcpy(f->name, name, strlen(name) + 1);
    return f;
}

static json_t *quarantine_json(const struct entry *e, const struct lock_version *v)
{
    char ref[TS_ID_BYTES_MAX + 40], time[40], qid[TS_ID_BYTES_MAX + 1];
    struct entry_ref r;
    memset(&r, 0, sizeof(r));
    memcpy(r.origin, e->origin, sizeof(r.origin));
    r.lane = e->lane;
    r.seq = e->seq;
    snprintf(ref, sizeof(ref), "%s/%s/%" PRIu64, e->origin,
             e->lane == LANE_SAFETY ? "safety" : "bulk", e->seq);
    api_format_time(e->wall_ms, time, sizeof(time));
    lockview_query_id(&r, qid);
    json_t *fields = json_object();
    for (size_t i = 0; i < e->writes_count; i++)
        json_object_set_new(fields, e->writes[i].field, json_string(e->writes[i].value));
    return json_pack("{s:s,s:s,s:s,s:s,s:o,s:I,s:I,s:{s:s,s:s}}", "entry", ref, "user", e->user,
                     "time", time, "reason", e->reason, "fields", fields, "lock_epoch",
                     (json_int_t)v->epoch, "_hlc", (json_int_t)e->hlc, "query", "id", qid,
                     "source", "system");
}

static int read_cb(void *ctx, const struct entry *e, uint64_t stored_ms)
{
    struct read_ctx *r = ctx;
    (void)stored_ms;
    const struct lock_version *v = lock_quarantines(r->set, e);
    if (v != NULL) {
        json_array_append_new(r->quarantined, quarantine_json(e, v));
        return 0;
    }
    uint32_t round = merge_entry_round(e);
    for (size_t i = 0; i < e->writes_count; i++) {
        struct rebuilt_field *f = field_slot(r, e->writes[i].field);
        if (f == NULL)
            return r->rc = TS_ERR_TOOBIG;
        struct merge_write mw;
        merge_write_of(e, &e->writes[i], round, &mw);
        int rc = merge_field_apply(&f->st, &mw);
        if (rc < 0)
            return r->rc = rc;
        if (e->hlc > f->hlc_max)
            f->hlc_max = e->hlc;
    }
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(((const struct rebuilt_field *)a)->name, ((const struct rebuilt_field *)b)->name);
}

/* Marks each quarantined entry resolved when every field it wrote has a
 * later displayed write, and its system query closed then. */
static void mark_resolved(struct read_ctx *r)
{
    size_t i;
    json_t *q;
    json_array_foreach(r->quarantined, i, q) {
        uint64_t hlc = (uint64_t)json_integer_value(json_object_get(q, "_hlc"));
        bool resolved = true;
        const char *name;
        json_t *value;
        json_object_foreach(json_object_get(q, "fields"), name, value) {
            struct rebuilt_field *f = NULL;
            for (size_t k = 0; k < r->count && f == NULL; k++)
                if (strcmp(r->fields[k].name, name) == 0)
                    f = &r->fields[k];
            if (f == NULL || f->hlc_max <= hlc)
                resolved = false;
        }
        json_object_del(q, "_hlc");
        json_object_set_new(q, "resolved", json_boolean(resolved));
        json_object_set_new(json_object_get(q, "query"), "state",
                            json_string(resolved ? "closed" : "open"));
    }
}

static json_t *locked_json(const struct lock_set *set, const char *type, const char *id)
{
    char since[40];
    uint64_t epoch = lock_set_epoch(set);
    const struct lock_version *v = lock_set_covering(set, epoch, type, id);
    if (v == NULL)
        return NULL;
    api_format_time(v->wall_ms, since, sizeof(since));
    return json_pack("{s:I,s:s,s:s,s:s,s:s}", "epoch", (json_int_t)v->epoch, "by", v->user,
                     "since", since, "reason", v->reason, "targets", v->targets);
}

int lockview_record_fields(struct store *s, const char *type, const char *id,
                           store_field_cb cb, void *ctx, json_t **locked, json_t **quarantined)
{
    char subject[TS_ID_BYTES_MAX + 1];
    struct lock_set set = {0};
    struct read_ctx r = {.set = &set};
    int rc;

    *locked = NULL;
    *quarantined = NULL;
    if (!lock_subject_of(type, id, subject))
        return store_record_fields(s, type, id, cb, ctx);
    rc = lockview_load(s, subject, &set);
    if (rc != 0)
        return rc;
    if (set.count == 0)
        return store_record_fields(s, type, id, cb, ctx);

    r.fields = calloc(LOCKVIEW_FIELDS_MAX, sizeof(*r.fields));
    r.quarantined = json_array();
    if (r.fields == NULL || r.quarantined == NULL) {
        rc = TS_ERR_NOMEM;
        goto out_free;
    }
    rc = store_record_history(s, type, id, read_cb, &r);
    if (rc == 0)
        rc = r.rc;
    if (rc != 0)
        goto out_free;
    *locked = locked_json(&set, type, id);
    if (json_array_size(r.quarantined) == 0) {
        /* Nothing quarantined: the stored state is the displayed one. */
        rc = store_record_fields(s, type, id, cb, ctx);
        goto out_free;
    }
    mark_resolved(&r);
    qsort(r.fields, r.count, sizeof(*r.fields), name_cmp);
    for (size_t i = 0; i < r.count && rc == 0; i++)
        rc = cb(ctx, r.fields[i].name, &r.fields[i].st);
    *quarantined = json_incref(r.quarantined);

out_free:
    if (r.fields != NULL)
        for (size_t i = 0; i < r.count; i++)
            field_state_release(&r.fields[i].st);
    free(r.fields);
    json_decref(r.quarantined);
    lock_set_release(&set);
    if (rc != 0) {
        json_decref(*locked);
        json_decref(*quarantined);
        *locked = NULL;
        *quarantined = NULL;
    }
    return rc;
}
