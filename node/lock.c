/*
 * lock.c: record locks and the quarantine predicate (see lock.h).
 *
 * What this file guarantees:
 *   - Every function is a function of its arguments alone: no I/O, no
 *     clock, no state, so every node that holds the same entries gives the
 *     same verdicts, and the unit suite can drive them over any interleaving.
 *   - lock_quarantines depends on the set of lock versions, never on their
 *     order, and treats two versions of one epoch (two hubs locking at once)
 *     each on its own: either one that covers the record quarantines.
 */
#include "lock.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../proto/errors.h"
#include "lex.h"
#include "schema.h"

void lock_set_release(struct lock_set *s)
{
    if (s == NULL)
        return;
    free(s->v);
    s->v = NULL;
    s->count = 0;
}

bool lock_type_lockable(const char *type)
{
    return type != NULL &&
           (strcmp(type, "subject") == 0 || strcmp(type, "visit") == 0 || strcmp(type, "ae") == 0);
}

bool lock_subject_of(const char *type, const char *id, char subject[TS_ID_BYTES_MAX + 1])
{
    if (!lock_type_lockable(type) || !schema_key_ok(type, id))
        return false;
    size_t len;
    if (strcmp(type, "ae") == 0)
        len = (size_t)(strstr(id, "-AE-") - id);
    else
        len = strcspn(id, "/");
    assert(len > 0 && len <= TS_ID_BYTES_MAX);
    memcpy(subject, id, len);
    subject[len] = '\0';
    return true;
}

bool lock_record_id(const char *subject, char out[TS_ID_BYTES_MAX + 1])
{
    int n = snprintf(out, TS_ID_BYTES_MAX + 1, "%s-LOCK", subject);
    return n > 0 && n <= TS_ID_BYTES_MAX;
}

/* The next comma-separated item of *p (len bytes); false at the end. */
static bool next_item(const char **p, const char **item, size_t *len)
{
    if (**p == '\0')
        return false;
    *item = *p;
    *len = strcspn(*p, ",");
    *p += *len + ((*p)[*len] == ',' ? 1 : 0);
    return true;
}

/* One target item of the lock of subject (len bytes at s). */
static bool target_item_ok(const char *subject, const char *s, size_t len)
{
    char buf[TS_TYPE_BYTES_MAX + TS_ID_BYTES_MAX + 2];
    char sub[TS_ID_BYTES_MAX + 1];
    if (len == 1 && s[0] == '*')
        return true;
    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *slash = strchr(buf, '/');
    if (slash == NULL)
        return false;
    *slash = '\0';
    return lock_subject_of(buf, slash + 1, sub) && strcmp(sub, subject) == 0;
}

bool lock_targets_ok(const char *lock_id, const char *targets)
{
    char subject[TS_ID_BYTES_MAX + 1];
    size_t id_len = strnlen(lock_id, TS_ID_BYTES_MAX + 1);
    if (!schema_key_ok(SCHEMA_LOCK_TYPE, lock_id) || targets == NULL ||
        strnlen(targets, LOCK_TEXT_BYTES_MAX + 1) > LOCK_TEXT_BYTES_MAX)
        return false;
    memcpy(subject, lock_id, id_len - 5);   /* the key ends in "-LOCK" */
    subject[id_len - 5] = '\0';
    if (targets[0] == '\0')
        return true;
    const char *p = targets, *item;
    size_t len, count = 0;
    while (next_item(&p, &item, &len)) {
        if (++count > LOCK_TARGETS_MAX || !target_item_ok(subject, item, len))
            return false;
    }
    /* A trailing comma leaves an empty last item. */
    return targets[strlen(targets) - 1] != ',';
}

bool lock_covers(const char *targets, const char *type, const char *id)
{
    size_t type_len = strlen(type), id_len = strlen(id);
    const char *p = targets, *item;
    size_t len;
    while (next_item(&p, &item, &len)) {
        if (len == 1 && item[0] == '*')
            return lock_type_lockable(type);
        if (len == type_len + 1 + id_len && strncmp(item, type, type_len) == 0 &&
            item[type_len] == '/' && strncmp(item + type_len + 1, id, id_len) == 0)
            return true;
    }
    return false;
}

int lock_targets_edit(const char *cur, const char *target, bool add, char *out, size_t cap)
{
    char type[TS_TYPE_BYTES_MAX + 1];
    const char *id = "";
    size_t used = 0, count = 0, tlen = strlen(target);
    const char *p = cur, *item;
    size_t len;
    bool found = false;

    assert(cap > 0);
    out[0] = '\0';
    bool all = strcmp(target, "*") == 0;
    if (!all) {
        size_t type_len = strcspn(target, "/");
        if (type_len > TS_TYPE_BYTES_MAX || target[type_len] != '/')
            return TS_ERR_INVALID;
        memcpy(type, target, type_len);
        type[type_len] = '\0';
        id = target + type_len + 1;
    }
    if (add && (all ? strchr(cur, '*') != NULL : lock_covers(cur, type, id)))
        return TS_ERR_EXISTS;
    if (all) {
        /* The whole subject replaces any list; unlocking it clears all. */
        if (!add && cur[0] == '\0')
            return TS_ERR_NOTFOUND;
        snprintf(out, cap, "%s", add ? "*" : "");
        return 0;
    }
    while (next_item(&p, &item, &len)) {
        if (len == tlen && strncmp(item, target, len) == 0) {
            found = true;
            if (!add)
                continue;
        }
        int n = snprintf(out + used, cap - used, "%s%.*s", used > 0 ? "," : "", (int)len, item);
        if (n < 0 || (size_t)n >= cap - used)
            return TS_ERR_TOOBIG;
        used += (size_t)n;
        count++;
    }
    if (!add)
        return found ? 0 : TS_ERR_NOTFOUND;
    if (count + 1 > LOCK_TARGETS_MAX)
        return TS_ERR_TOOBIG;
    int n = snprintf(out + used, cap - used, "%s%s", used > 0 ? "," : "", target);
    return n < 0 || (size_t)n >= cap - used ? TS_ERR_TOOBIG : 0;
}

/* Parses the decimal digits of s (len bytes) into *out; false on overflow. */
static bool digits_parse(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20 || !lex_all(s, len, lex_digit))
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

int lock_seen_parse(const char *s, struct vv_item *items, size_t cap)
{
    if (s == NULL)
        return -1;
    const char *p = s, *item;
    size_t len, n = 0;
    while (next_item(&p, &item, &len)) {
        const char *c1 = memchr(item, ':', len);
        if (c1 == NULL || n == cap)
            return -1;
        size_t origin_len = (size_t)(c1 - item);
        const char *c2 = memchr(c1 + 1, ':', len - origin_len - 1);
        if (c2 == NULL || origin_len == 0 || origin_len > TS_ID_BYTES_MAX ||
            !lex_all(item, origin_len, lex_id_char))
            return -1;
        uint64_t lane, seq;
        if (!digits_parse(c1 + 1, (size_t)(c2 - c1 - 1), &lane) || lane >= LANE_COUNT ||
            !digits_parse(c2 + 1, len - (size_t)(c2 + 1 - item), &seq))
            return -1;
        memcpy(items[n].origin, item, origin_len);
        items[n].origin[origin_len] = '\0';
        items[n].lane = (uint8_t)lane;
        items[n].seq = seq;
        n++;
    }
    if (s[0] != '\0' && s[strlen(s) - 1] == ',')
        return -1;
    return (int)n;
}

bool lock_seen_holds(const struct vv_item *seen, size_t n, const struct entry_ref *ref)
{
    for (size_t i = 0; i < n; i++) {
        if (seen[i].lane == ref->lane && strcmp(seen[i].origin, ref->origin) == 0)
            return ref->seq <= seen[i].seq;
    }
    return false;
}

bool lock_version_of(const struct entry *e, struct lock_version *v)
{
    const char *epoch = NULL, *targets = NULL, *seen = NULL;
    assert(e != NULL);
    if (strcmp(e->record_type, SCHEMA_LOCK_TYPE) != 0)
        return false;
    for (size_t i = 0; i < e->writes_count; i++) {
        const struct field_write *w = &e->writes[i];
        if (strcmp(w->field, "epoch") == 0)
            epoch = w->value;
        else if (strcmp(w->field, "targets") == 0)
            targets = w->value;
        else if (strcmp(w->field, "seen") == 0)
            seen = w->value;
    }
    memset(v, 0, sizeof(*v));
    if (epoch == NULL || targets == NULL || seen == NULL ||
        !digits_parse(epoch, strlen(epoch), &v->epoch) || v->epoch == 0 ||
        !lock_targets_ok(e->record_id, targets))
        return false;
    int n = lock_seen_parse(seen, v->seen, LOCK_SEEN_MAX);
    if (n < 0)
        return false;
    v->seen_count = (size_t)n;
    snprintf(v->targets, sizeof(v->targets), "%s", targets);
    memcpy(v->ref.origin, e->origin, sizeof(v->ref.origin));
    v->ref.lane = e->lane;
    v->ref.seq = e->seq;
    snprintf(v->user, sizeof(v->user), "%s", e->user != NULL ? e->user : "");
    snprintf(v->reason, sizeof(v->reason), "%s", e->reason != NULL ? e->reason : "");
    v->wall_ms = e->wall_ms;
    return true;
}

uint64_t lock_set_epoch(const struct lock_set *s)
{
    uint64_t max = 0;
    for (size_t i = 0; i < s->count; i++)
        if (s->v[i].epoch > max)
            max = s->v[i].epoch;
    return max;
}

const struct lock_version *lock_set_covering(const struct lock_set *s, uint64_t epoch,
                                             const char *type, const char *id)
{
    for (size_t i = 0; i < s->count; i++) {
        if (s->v[i].epoch == epoch && lock_covers(s->v[i].targets, type, id))
            return &s->v[i];
    }
    return NULL;
}

const struct lock_version *lock_quarantines(const struct lock_set *s, const struct entry *e)
{
    struct entry_ref r;
    memset(&r, 0, sizeof(r));
    memcpy(r.origin, e->origin, sizeof(r.origin));
    r.lane = e->lane;
    r.seq = e->seq;
    const struct lock_version *found = NULL;
    for (size_t i = 0; i < s->count; i++) {
        const struct lock_version *v = &s->v[i];
        if (v->epoch <= e->lock_epoch || !lock_covers(v->targets, e->record_type, e->record_id))
            continue;
        if (lock_seen_holds(v->seen, v->seen_count, &r))
            continue;
        /* The lowest such epoch names the lock, whatever order s is in. */
        if (found == NULL || v->epoch < found->epoch ||
            (v->epoch == found->epoch && entry_ref_cmp(&v->ref, &found->ref) < 0))
            found = v;
    }
    return found;
}
