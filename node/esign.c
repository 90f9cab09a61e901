/*
 * esign.c: signatures read from the state (see esign.h).
 *
 * What this file guarantees:
 *   - The digest depends only on the live writes of the signed records (their
 *     values and the entries that wrote them), so equal entry sets give equal
 *     digests on every node, whatever order the entries arrived in.
 *   - A signature is "valid" only when the digest it holds equals the digest
 *     of the records now; anything else (a later write, a concurrent write,
 *     a record it cannot find) shows it "broken".
 */
#include "esign.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../proto/errors.h"
#include "../storage/store.h"
#include "crypto.h"
#include "merge.h"
#include "schema.h"

struct digest_ctx {
    struct store *store;
    const char *type;
    const char *fields;   /* "a,b,c": only these; NULL or "": every field */
    uint8_t hash[TS_HASH_BYTES];
    size_t records;
    int rc;
};

/* h = SHA-256(h || item): one item of the chain. */
static int chain_item(uint8_t hash[TS_HASH_BYTES], const char *const *parts, size_t n)
{
    size_t len = TS_HASH_BYTES;
    for (size_t i = 0; i < n; i++)
        len += strlen(parts[i]) + 1;
    uint8_t *buf = malloc(len);
    if (buf == NULL)
        return TS_ERR_NOMEM;
    memcpy(buf, hash, TS_HASH_BYTES);
    size_t at = TS_HASH_BYTES;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(parts[i]) + 1;   /* the NUL separates the parts */
        memcpy(buf + at, parts[i], l);
        at += l;
    }
    assert(at == len);
    crypto_sha256(buf, len, hash);
    free(buf);
    return 0;
}

struct field_ctx {
    struct digest_ctx *d;
    const char *id;
};

/* True when name is one of the comma-separated list. */
static bool in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p != '\0';) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, name, n) == 0)
            return true;
        p += len + (p[len] == ',' ? 1 : 0);
    }
    return false;
}

static int digest_field_cb(void *ctx, const char *field, const struct field_state *st)
{
    struct field_ctx *f = ctx;
    if (f->d->fields != NULL && f->d->fields[0] != '\0' && !in_list(f->d->fields, field))
        return 0;
    for (size_t i = 0; i < st->live_count; i++) {
        const struct live_write *lw = &st->live[i];
        char lane[4], seq[24];
        snprintf(lane, sizeof(lane), "%u", (unsigned)lw->ref.lane);
        snprintf(seq, sizeof(seq), "%llu", (unsigned long long)lw->ref.seq);
        const char *parts[] = {f->d->type, f->id, field, lw->value, lw->ref.origin, lane, seq};
        int rc = chain_item(f->d->hash, parts, sizeof(parts) / sizeof(parts[0]));
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int digest_record_cb(void *ctx, const char *type, const char *id)
{
    struct digest_ctx *d = ctx;
    struct field_ctx f = {.d = d, .id = id};
    d->type = type;
    d->records++;
    int rc = store_record_fields(d->store, type, id, digest_field_cb, &f);
    return rc == TS_ERR_NOTFOUND ? 0 : rc;
}

static int digest(struct store *s, const char *target, const char *fields,
                  uint8_t out[TS_HASH_BYTES])
{
    struct digest_ctx d = {.store = s, .fields = fields};
    char prefix[TS_ID_BYTES_MAX + 8];
    int rc;

    memset(d.hash, 0, sizeof(d.hash));
    if (strncmp(target, "ae/", 3) == 0) {
        const char *id = target + 3;
        if (!store_record_exists(s, "ae", id))
            return TS_ERR_NOTFOUND;
        rc = digest_record_cb(&d, "ae", id);
    } else if (strncmp(target, "visit/", 6) == 0) {
        const char *id = target + 6;
        if (!store_record_exists(s, "visit", id))
            return TS_ERR_NOTFOUND;
        rc = digest_record_cb(&d, "visit", id);
    } else if (strncmp(target, "subject/", 8) == 0) {
        const char *id = target + 8;
        if (!store_record_exists(s, "subject", id))
            return TS_ERR_NOTFOUND;
        /* The casebook: the subject, then its visits, then its AEs. */
        rc = digest_record_cb(&d, "subject", id);
        snprintf(prefix, sizeof(prefix), "%s/", id);
        if (rc == 0)
            rc = store_records_prefix(s, "visit", prefix, digest_record_cb, &d);
        snprintf(prefix, sizeof(prefix), "%s-AE-", id);
        if (rc == 0)
            rc = store_records_prefix(s, "ae", prefix, digest_record_cb, &d);
    } else {
        return TS_ERR_INVALID;
    }
    if (rc != 0)
        return rc;
    assert(d.records > 0);
    memcpy(out, d.hash, TS_HASH_BYTES);
    return 0;
}

int esign_digest(struct store *s, const char *target, uint8_t out[TS_HASH_BYTES])
{
    return digest(s, target, NULL, out);
}

int esign_digest_hex(struct store *s, const char *target, const char *fields,
                     char out[2 * TS_HASH_BYTES + 1])
{
    uint8_t h[TS_HASH_BYTES];
    int rc = digest(s, target, fields, h);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < TS_HASH_BYTES; i++)
        snprintf(out + 2 * i, 3, "%02x", h[i]);
    return 0;
}

/* The displayed value of a signature field, or "" (and the writer's entry). */
static const char *mark_field(struct store *s, const char *type, const char *id,
                              const char *field, char *buf, size_t cap, struct entry_ref *ref)
{
    struct field_state st;
    buf[0] = '\0';
    if (store_field_get(s, type, id, field, &st) != 0)
        return buf;
    int i = merge_display(type, field, &st);
    if (i >= 0) {
        snprintf(buf, cap, "%s", st.live[i].value);
        if (ref != NULL)
            *ref = st.live[i].ref;
    }
    field_state_release(&st);
    return buf;
}

struct list_ctx {
    struct store *store;
    const char *target;
    json_t *out;
};

/* A mark of type on l->target: whether it still holds, and who made it
 * (the user of the entry that wrote its target) into e. */
static bool mark_holds(struct list_ctx *l, const char *type, const char *id, const char *fields,
                       struct entry *e)
{
    char target[TS_TYPE_BYTES_MAX + TS_ID_BYTES_MAX + 2], versions[2 * TS_HASH_BYTES + 1];
    char now[2 * TS_HASH_BYTES + 1];
    struct entry_ref ref;
    memset(&ref, 0, sizeof(ref));
    mark_field(l->store, type, id, "target", target, sizeof(target), &ref);
    mark_field(l->store, type, id, "versions", versions, sizeof(versions), NULL);
    if (store_entry_get(l->store, &ref, e, NULL) != 0)
        memset(e, 0, sizeof(*e));
    return esign_digest_hex(l->store, target, fields, now) == 0 && strcmp(now, versions) == 0;
}

/* True when mark id of type is about l->target. */
static bool mark_is_about(struct list_ctx *l, const char *type, const char *id)
{
    char target[TS_TYPE_BYTES_MAX + TS_ID_BYTES_MAX + 2];
    mark_field(l->store, type, id, "target", target, sizeof(target), NULL);
    return strcmp(target, l->target) == 0;
}

static int list_cb(void *ctx, const char *type, const char *id)
{
    struct list_ctx *l = ctx;
    char meaning[32], name[256], signed_at[64];
    if (!mark_is_about(l, type, id))
        return 0;
    mark_field(l->store, type, id, "meaning", meaning, sizeof(meaning), NULL);
    mark_field(l->store, type, id, "name", name, sizeof(name), NULL);
    mark_field(l->store, type, id, "signed_at", signed_at, sizeof(signed_at), NULL);
    struct entry e;
    bool valid = mark_holds(l, type, id, NULL, &e);
    json_array_append_new(l->out,
                          json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "id", id, "user",
                                    e.user != NULL ? e.user : "", "name", name, "meaning",
                                    meaning, "signed_at", signed_at, "state",
                                    valid ? "valid" : "broken"));
    entry_release(&e);
    return 0;
}

static int sdv_list_cb(void *ctx, const char *type, const char *id)
{
    struct list_ctx *l = ctx;
    char fields[1100], at[64];
    if (!mark_is_about(l, type, id))
        return 0;
    mark_field(l->store, type, id, "fields", fields, sizeof(fields), NULL);
    mark_field(l->store, type, id, "verified_at", at, sizeof(at), NULL);
    struct entry e;
    bool valid = mark_holds(l, type, id, fields, &e);
    json_array_append_new(l->out,
                          json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", id, "user",
                                    e.user != NULL ? e.user : "", "fields", fields,
                                    "verified_at", at, "state",
                                    valid ? "verified" : "needs re-verification"));
    entry_release(&e);
    return 0;
}

json_t *esign_sdv_list(struct store *s, const char *type, const char *id)
{
    char target[TS_TYPE_BYTES_MAX + TS_ID_BYTES_MAX + 2], prefix[TS_ID_BYTES_MAX + 8];
    char site[TS_ID_BYTES_MAX + 1];
    if (strcmp(type, "subject") != 0 && strcmp(type, "visit") != 0 && strcmp(type, "ae") != 0)
        return NULL;
    if (!schema_site_of_key(id, site))
        return NULL;
    /* The subject is the key up to its '/' (a visit) or its "-AE-" (an AE). */
    const char *ae = strstr(id, "-AE-");
    size_t subject_len = ae != NULL ? (size_t)(ae - id) : strcspn(id, "/");
    snprintf(target, sizeof(target), "%s/%s", type, id);
    snprintf(prefix, sizeof(prefix), "%.*s-SDV-", (int)subject_len, id);
    struct list_ctx l = {.store = s, .target = target, .out = json_array()};
    if (l.out == NULL)
        return NULL;
    if (store_records_prefix(s, SCHEMA_SDV_TYPE, prefix, sdv_list_cb, &l) != 0) {
        json_decref(l.out);
        return NULL;
    }
    return l.out;
}

json_t *esign_list(struct store *s, const char *type, const char *id)
{
    char target[TS_TYPE_BYTES_MAX + TS_ID_BYTES_MAX + 2], prefix[TS_ID_BYTES_MAX + 8];
    char site[TS_ID_BYTES_MAX + 1];
    if (strcmp(type, "subject") != 0 && strcmp(type, "visit") != 0)
        return NULL;
    if (!schema_site_of_key(id, site))
        return NULL;
    /* A visit's subject is its key up to the '/'. */
    size_t subject_len = strcspn(id, "/");
    snprintf(target, sizeof(target), "%s/%s", type, id);
    snprintf(prefix, sizeof(prefix), "%.*s-SIG-", (int)subject_len, id);
    struct list_ctx l = {.store = s, .target = target, .out = json_array()};
    if (l.out == NULL)
        return NULL;
    if (store_records_prefix(s, SCHEMA_SIGNATURE_TYPE, prefix, list_cb, &l) != 0) {
        json_decref(l.out);
        return NULL;
    }
    return l.out;
}

static int count_cb(void *ctx, const char *type, const char *id)
{
    (void)type;
    (void)id;
    (*(unsigned *)ctx)++;
    return 0;
}

int esign_next_id(struct store *s, const char *subject, char out[TS_ID_BYTES_MAX + 1])
{
    char prefix[TS_ID_BYTES_MAX + 8];
    unsigned n = 0;
    snprintf(prefix, sizeof(prefix), "%s-SIG-", subject);
    int rc = store_records_prefix(s, SCHEMA_SIGNATURE_TYPE, prefix, count_cb, &n);
    if (rc != 0)
        return rc;
    /* Only the subject's own site writes its signatures, so the count at the
     * site's node is the highest number used; a gap is harmless. */
    int len = snprintf(out, TS_ID_BYTES_MAX + 1, "%s-SIG-%03u", subject, n + 1);
    return len > 0 && len <= TS_ID_BYTES_MAX ? 0 : TS_ERR_TOOBIG;
}
