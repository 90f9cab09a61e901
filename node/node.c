/*
 * node.c: a node's local write path and group commit (see node.h).
 *
 * Pending group:
 *
 *   node_write ──validate──> entry built, chained on heads_* ──> pending lane
 *        │                                                          │
 *        └── record already pending? node_flush() first             │
 *                                                                   v
 *   flush_check_cb (after the loop's poll) ──> node_flush: sign each lane's
 *   run, store_apply(sync) ──> writers called back, on_commit()
 *
 * heads_* always describe the chain including pending entries; after a failed
 * commit they are read back from the store, so the next entry follows what is
 * durable.
 */
#include "node.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#include "../proto/codec.h"
#include "lockview.h"
#include "enroll_node.h"
#include "merge.h"
#include "pki.h"
#include "schema.h"
#include "trace.h"
#include "util.h"

/* Free space above the disk guard at which a disk_low node takes writes
 * again: a flush frees about a memtable's log (4 MiB), so 8 MiB is more than
 * one flush's swing. */
#define NODE_DISK_RESUME_BYTES (8ULL << 20)
/* Writers waiting on one group: every entry of both lanes. */
#define NODE_WAITERS_MAX (LANE_COUNT * TS_BATCH_ENTRIES_MAX)
/* Fields whose state one write looks at: its own plus those rules consult. */
#define NODE_LOOKUP_FIELDS_MAX (TS_WRITES_PER_ENTRY_MAX + 16)

struct pending_lane {
    uint8_t *bufs[TS_BATCH_ENTRIES_MAX];
    size_t lens[TS_BATCH_ENTRIES_MAX];
    size_t count;
    size_t bytes;
    uint64_t first_seq;
};

struct waiter {
    node_write_cb cb;
    void *ctx;
    struct entry_ref ref;
    uint64_t hlc;
};

struct node_pending {
    struct pending_lane lanes[LANE_COUNT];
    struct waiter waiters[NODE_WAITERS_MAX];
    size_t waiters_count;
    uint64_t touched[NODE_WAITERS_MAX];  /* hashes of the records in the group */
    size_t touched_count;
    /* The writers of the group being called back; callbacks must not flush. */
    struct waiter delivering[NODE_WAITERS_MAX];
    bool in_delivery;
};

const double node_commit_bounds_s[NODE_COMMIT_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
};

static double monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void commit_observe(struct node *n, double secs)
{
    size_t b = 0;
    while (b < NODE_COMMIT_BUCKETS && secs > node_commit_bounds_s[b])
        b++;
    n->commit_counts[b]++;
    n->commit_sum_s += secs;
}

uint64_t node_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t record_hash(const char *type, const char *id)
{
    uint64_t h = 1469598103934665603ULL;  /* FNV-1a */
    for (const char *p = type; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    h = (h ^ '/') * 1099511628211ULL;
    for (const char *p = id; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    return h;
}

int node_verify_own(void *ctx, const char *origin, const char *cert_serial, const uint8_t *msg,
                    size_t len, const uint8_t *sig, size_t sig_len)
{
    struct node *n = ctx;
    if (strcmp(origin, n->cfg.id) != 0 || strcmp(cert_serial, n->cert_serial) != 0)
        return TS_ERR_AUTH;
    return crypto_verify(n->pubkey, msg, len, sig, sig_len) ? 0 : TS_ERR_SIGNATURE;
}

static void reload_heads(struct node *n)
{
    for (uint8_t lane = 0; lane < LANE_COUNT; lane++)
        store_head(n->store, n->cfg.id, lane, &n->heads_seq[lane], n->heads_hash[lane]);
}

void node_reload_heads(struct node *n)
{
    if (n->pending->waiters_count > 0 && !n->pending->in_delivery)
        node_flush(n);
    if (n->pending->waiters_count == 0)
        reload_heads(n);
}

static void flush_check_cb(uv_check_t *h)
{
    struct node *n = container_of(h, struct node, flush_check);
    uv_check_stop(&n->flush_check);
    node_flush(n);
}

const char *node_health_name(enum node_health h)
{
    switch (h) {
    case NODE_HEALTH_OK: return "ok";
    case NODE_HEALTH_DISK_LOW: return "disk_low";
    case NODE_HEALTH_STORAGE_FAILED: return "storage_failed";
    }
    return "unknown";
}

/* The one place the health state changes: traces each transition. */
static void node_health_set(struct node *n, enum node_health h, const char *why)
{
    /* storage_failed is final (node.h). */
    assert(n->health != NODE_HEALTH_STORAGE_FAILED || h == NODE_HEALTH_STORAGE_FAILED);
    enum node_health was = n->health;
    snprintf(n->health_why, sizeof(n->health_why), "%s", h == NODE_HEALTH_OK ? "" : why);
    if (was == h)
        return;
    n->health = h;
    if (h == NODE_HEALTH_OK)
        trace(TRACE_INFO, "storage: %s -> ok: writes and batches accepted again",
              node_health_name(was));
    else if (h == NODE_HEALTH_DISK_LOW)
        trace(TRACE_ERROR, "storage: %s -> disk_low: %s", node_health_name(was), why);
    else
        trace(TRACE_ERROR, "storage: %s -> storage_failed: %s; no write is tried again, "
              "writers get an error, and the node exits non-zero so it restarts and "
              "recovers its log", node_health_name(was), why);
    if (h == NODE_HEALTH_STORAGE_FAILED && n->on_storage_failed != NULL)
        n->on_storage_failed(n->on_storage_failed_ctx);
}

uint64_t node_disk_guard_bytes(const struct node *n)
{
    return n->cfg.disk_free_min_bytes + STORE_WRITE_HEADROOM_BYTES;
}

enum node_health node_health_check(struct node *n)
{
    struct ts_error err = {0};
    uint64_t free_bytes = 0;
    char why[sizeof(n->health_why)];

    if (n->health == NODE_HEALTH_STORAGE_FAILED || n->store == NULL)
        return n->health;
    if (store_health(n->store, &err) != 0) {
        node_health_set(n, NODE_HEALTH_STORAGE_FAILED, err.msg);
        return n->health;
    }
    bool low = node_disk_low(n, &free_bytes);
    /* Leaving disk_low takes NODE_DISK_RESUME_BYTES more than entering it,
     * so a node at the threshold does not flap with each flush that frees a
     * log file. */
    if (!low && n->health == NODE_HEALTH_DISK_LOW &&
        free_bytes < node_disk_guard_bytes(n) + NODE_DISK_RESUME_BYTES)
        low = true;
    if (low) {
        snprintf(why, sizeof(why),
                 "%llu MiB free on %s, below the threshold of %llu MiB ([storage] "
                 "disk_free_min_mb = %llu, plus %llu MiB the store needs to flush and compact "
                 "what it took); writes refused and peers' batches held until %llu MiB are "
                 "free, reads still work",
                 (unsigned long long)(free_bytes >> 20), n->cfg.data_dir,
                 (unsigned long long)(node_disk_guard_bytes(n) >> 20),
                 (unsigned long long)(n->cfg.disk_free_min_bytes >> 20),
                 (unsigned long long)(STORE_WRITE_HEADROOM_BYTES >> 20),
                 (unsigned long long)((node_disk_guard_bytes(n) + NODE_DISK_RESUME_BYTES) >> 20));
        node_health_set(n, NODE_HEALTH_DISK_LOW, why);
    } else {
        node_health_set(n, NODE_HEALTH_OK, "");
    }
    return n->health;
}

int node_admit(struct node *n, struct ts_error *err)
{
    switch (node_health_check(n)) {
    case NODE_HEALTH_OK:
        return 0;
    case NODE_HEALTH_DISK_LOW:
        n->writes_refused_disk++;
        return ts_error_set(err, TS_ERR_DISKFULL, "refusing writes: %s", n->health_why);
    case NODE_HEALTH_STORAGE_FAILED:
        break;
    }
    return ts_error_set(err, TS_ERR_AGAIN,
                        "refusing writes: storage_failed: %s; the node restarts and recovers "
                        "its log: retry then", n->health_why);
}

bool node_admit_failure(struct node *n)
{
    return node_health_check(n) == NODE_HEALTH_STORAGE_FAILED;
}

bool node_disk_low(struct node *n, uint64_t *free_bytes)
{
    struct statvfs sv;
    if (statvfs(n->cfg.data_dir, &sv) != 0) {
        if (free_bytes != NULL)
            *free_bytes = 0;
        return false;  /* cannot tell: the write itself will report the disk's error */
    }
    uint64_t avail = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
    if (free_bytes != NULL)
        *free_bytes = avail;
    return avail < node_disk_guard_bytes(n);
}

int node_open(struct node **out, uv_loop_t *loop, const struct config *cfg,
              struct ts_error *err)
{
    struct node *n = calloc(1, sizeof(*n));
    struct pki_identity who;
    size_t cert_len = 0;
    int rc;

    if (n == NULL)
        return ts_error_set(err, TS_ERR_NOMEM, "out of memory");
    n->pending = calloc(1, sizeof(*n->pending));
    if (n->pending == NULL) {
        rc = ts_error_set(err, TS_ERR_NOMEM, "out of memory");
        goto out_free_node;
    }
    n->loop = loop;
    n->cfg = *cfg;
    n->wall_ms = node_now_ms;

    rc = crypto_key_load(cfg->key, &n->key, err);
    if (rc != 0)
        goto out_free_pending;
    rc = crypto_pubkey_from_key(n->key, &n->pubkey, err);
    if (rc != 0)
        goto out_free_key;
    rc = pki_read_file(cfg->cert, &n->cert_pem, &cert_len, err);
    if (rc != 0)
        goto out_free_pubkey;
    rc = pki_cert_identity(n->cert_pem, cert_len, &who, err);
    if (rc != 0)
        goto out_free_cert;
    if (strcmp(who.trial, cfg->trial) != 0 || strcmp(who.id, cfg->id) != 0 ||
        who.role != cfg->role) {
        rc = ts_error_set(err, TS_ERR_CONFIG,
                          "certificate %s is for trialsync://%s/%s/%s but %s says "
                          "trialsync://%s/%s/%s",
                          cfg->cert, who.trial, pki_role_name(who.role), who.id, cfg->path,
                          cfg->trial, pki_role_name(cfg->role), cfg->id);
        goto out_free_cert;
    }
    rc = pki_cert_serial_hex(n->cert_pem, cert_len, n->cert_serial, sizeof(n->cert_serial), err);
    if (rc != 0)
        goto out_free_cert;
    rc = store_open(cfg->data_dir, &n->store, err);
    if (rc != 0)
        goto out_free_cert;
    /* The store keeps every certificate this node has signed with, by serial,
     * so its entries signed before a key rotation stay verifiable (peers and
     * trialsync verify look the key up by (origin, serial)). */
    char cert_key[TS_ID_BYTES_MAX + TS_SERIAL_BYTES_MAX + 8];
    snprintf(cert_key, sizeof(cert_key), "cert/%s/%s", cfg->id, n->cert_serial);
    rc = store_meta_put(n->store, cert_key, n->cert_pem, cert_len, true, err);
    if (rc != 0) {
        store_close(n->store);
        goto out_free_cert;
    }
    hlc_init(&n->clock, store_hlc_max(n->store));
    reload_heads(n);
    uv_check_init(loop, &n->flush_check);
    n->started_ms = node_now_ms();
    n->health = NODE_HEALTH_OK;
    node_health_check(n);  /* a disk already low is traced at start */
    *out = n;
    return 0;

out_free_cert:
    free(n->cert_pem);
out_free_pubkey:
    crypto_pubkey_free(n->pubkey);
out_free_key:
    crypto_key_free(n->key);
out_free_pending:
    free(n->pending);
out_free_node:
    free(n);
    return rc;
}

static void node_closed_cb(uv_handle_t *h)
{
    struct node *n = container_of((uv_check_t *)h, struct node, flush_check);
    free(n->pending);
    free(n);
}

void node_close(struct node *n)
{
    if (n == NULL || n->closing)
        return;
    node_flush(n);
    n->closing = true;
    enroll_node_free(n);
    store_close(n->store);
    n->store = NULL;
    crypto_pubkey_free(n->pubkey);
    crypto_key_free(n->key);
    free(n->cert_pem);
    uv_close((uv_handle_t *)&n->flush_check, node_closed_cb);
}

/* The states of the fields one write reads, loaded once from the store. */
struct lookup {
    struct node *n;
    const char *type;
    const char *id;
    bool absent;    /* the record does not exist: every field state is empty */
    char names[NODE_LOOKUP_FIELDS_MAX][TS_FIELD_BYTES_MAX + 1];
    struct field_state states[NODE_LOOKUP_FIELDS_MAX];
    size_t count;
};

static const struct field_state *lookup_state(struct lookup *l, const char *field)
{
    for (size_t i = 0; i < l->count; i++)
        if (strcmp(l->names[i], field) == 0)
            return &l->states[i];
    if (l->count == NODE_LOOKUP_FIELDS_MAX || strlen(field) > TS_FIELD_BYTES_MAX)
        return NULL;
    struct field_state *st = &l->states[l->count];
    memset(st, 0, sizeof(*st));
    if (!l->absent && store_field_get(l->n->store, l->type, l->id, field, st) != 0)
        memset(st, 0, sizeof(*st));
    memcpy(l->names[l->count], field, strlen(field) + 1);
    l->count++;
    return st;
}

static const char *lookup_current(void *ctx, const char *field)
{
    struct lookup *l = ctx;
    const struct field_state *st = lookup_state(l, field);
    if (st == NULL)
        return NULL;
    int i = merge_display(l->type, field, st);
    return i < 0 ? NULL : st->live[i].value;
}

static void lookup_release(struct lookup *l)
{
    for (size_t i = 0; i < l->count; i++)
        field_state_release(&l->states[i]);
    l->count = 0;
}

/*
 * Checks a revocation-list write (POST /v1/crl): hubs only, the one record,
 * a reason.  That the list is the CA's is validate_entry's check, as for an
 * entry from any peer.
 */
static int validate_crl_write(const struct node_write *w, enum pki_role role,
                              struct validate_error *verr)
{
    if (role != PKI_ROLE_HUB) {
        snprintf(verr->msg, sizeof(verr->msg),
                 "the revocation list is recorded at a hub, not at a site");
        return TS_ERR_AUTH;
    }
    if (strcmp(w->id, SCHEMA_CRL_ID) != 0) {
        snprintf(verr->msg, sizeof(verr->msg), "the revocation list's record is crl/%s",
                 SCHEMA_CRL_ID);
        return TS_ERR_INVALID;
    }
    if (w->reason == NULL || w->reason[0] == '\0') {
        snprintf(verr->msg, sizeof(verr->msg), "a new revocation list needs a reason");
        return TS_ERR_INVALID;
    }
    return 0;
}

/*
 * Checks a membership write: hubs only, a valid site id, status active or
 * revoked, a name, and a reason.
 */
static int validate_member(const struct node_write *w, enum pki_role role,
                           struct validate_error *verr)
{
    if (role != PKI_ROLE_HUB) {
        snprintf(verr->msg, sizeof(verr->msg), "membership is recorded at a hub, not at a site");
        return TS_ERR_AUTH;
    }
    if (!validate_id(w->id)) {
        snprintf(verr->msg, sizeof(verr->msg), "'%.64s' is not a valid site id", w->id);
        return TS_ERR_INVALID;
    }
    if (w->reason == NULL || w->reason[0] == '\0') {
        snprintf(verr->msg, sizeof(verr->msg), "a membership change needs a reason");
        return TS_ERR_INVALID;
    }
    for (size_t i = 0; i < w->n; i++) {
        const char *f = w->fields[i].field, *v = w->fields[i].value;
        if (strcmp(f, "status") == 0) {
            if (strcmp(v, "active") != 0 && strcmp(v, "revoked") != 0) {
                snprintf(verr->field, sizeof(verr->field), "status");
                snprintf(verr->value, sizeof(verr->value), "%.100s", v);
                snprintf(verr->allowed, sizeof(verr->allowed), "active, revoked");
                snprintf(verr->msg, sizeof(verr->msg),
                         "field 'status': '%.100s' is not allowed; allowed values: active, "
                         "revoked", v);
                return TS_ERR_INVALID;
            }
        } else if (strcmp(f, "name") != 0) {
            snprintf(verr->field, sizeof(verr->field), "%.31s", f);
            snprintf(verr->msg, sizeof(verr->msg),
                     "member records have the fields status and name, not '%.31s'", f);
            return TS_ERR_INVALID;
        }
    }
    return 0;
}

static int result_error(struct node_write_result *now, int code, const char *fmt, const char *arg)
{
    memset(now, 0, sizeof(*now));
    now->code = code;
    ts_error_set(&now->err, code, fmt, arg);
    return code;
}

/* Fills e's writes from the request; supersedes point into l's states. */
static int build_writes(struct lookup *l, const struct node_write *w, struct entry *e,
                        struct field_write *writes, char *round_buf, size_t round_cap,
                        struct ts_error *err)
{
    size_t count = 0;
    bool has_state = false, has_round = false;

    for (size_t i = 0; i < w->n; i++) {
        if (strcmp(w->fields[i].field, "state") == 0)
            has_state = true;
        if (strcmp(w->fields[i].field, "round") == 0)
            has_round = true;
    }
    for (size_t i = 0; i <= w->n; i++) {
        const char *field, *value;
        if (i < w->n) {
            field = w->fields[i].field;
            value = w->fields[i].value;
        } else if (strcmp(w->type, "query") == 0 && has_state && !has_round) {
            /* A query's state merges by (round, state): the entry carries the
             * round it belongs to, the current one unless the writer says. */
            const char *cur = lookup_current(l, "round");
            snprintf(round_buf, round_cap, "%s", cur != NULL ? cur : "1");
            field = "round";
            value = round_buf;
        } else {
            break;
        }
        if (count == TS_WRITES_PER_ENTRY_MAX)
            return ts_error_set(err, TS_ERR_TOOBIG, "too many fields in one write (at most %d)",
                                TS_WRITES_PER_ENTRY_MAX);
        struct field_write *fw = &writes[count++];
        memset(fw, 0, sizeof(*fw));
        memcpy(fw->field, field, strlen(field) + 1);
        fw->value = (char *)value;
        const struct field_state *st = lookup_state(l, field);
        if (st == NULL)
            return ts_error_set(err, TS_ERR_TOOBIG, "write reads too many fields");
        if (merge_policy_of(w->type, field) == MERGE_POLICY_APPEND || st->live_count == 0)
            continue;
        if (st->live_count > TS_SUPERSEDES_MAX)
            return ts_error_set(err, TS_ERR_TOOBIG,
                                "field '%s' has %zu unresolved values; resolve the conflict "
                                "at the hub first", field, st->live_count);
        fw->supersedes = calloc(st->live_count, sizeof(struct entry_ref));
        if (fw->supersedes == NULL)
            return ts_error_set(err, TS_ERR_NOMEM, "out of memory");
        for (size_t j = 0; j < st->live_count; j++)
            fw->supersedes[j] = st->live[j].ref;
        fw->supersedes_count = st->live_count;
    }
    e->writes = writes;
    e->writes_count = count;
    return 0;
}

/* Where the next entry of each lane goes: seq and chain hash of its lane's head. */
struct chain_heads {
    uint64_t seq[LANE_COUNT];
    uint8_t hash[LANE_COUNT][TS_HASH_BYTES];
};

/*
 * Refuses writes while the node stops, once it knows it was revoked, or
 * while its disk is low: 0, or the code
 * with *now filled.
 */
static int node_accepting(struct node *n, struct node_write_result *now)
{
    if (n->closing)
        return result_error(now, TS_ERR_IO, "node is %s", "stopping");
    if (n->revoked[0] != '\0')
        return result_error(now, TS_ERR_AUTH,
                            "%s; this node accepts no writes (reads still work)", n->revoked);
    memset(now, 0, sizeof(*now));
    now->code = node_admit(n, &now->err);
    return now->code;
}

/*
 * Validates write w against the record as the store holds it and builds its
 * entry, chained on heads (advanced on success).  On success *buf (malloc'ed,
 * the caller's) holds the encoded entry, *lane and *hlc say where and when.
 * On refusal returns the code with *now filled; heads are left untouched.
 * Reads only committed state: the caller makes sure no pending entry of the
 * same record exists.
 */
static int entry_prepare(struct node *n, const struct node_write *w, struct chain_heads *heads,
                         uint8_t **buf, size_t *len, enum lane *lane_out, uint64_t *hlc,
                         struct node_write_result *now)
{
    struct field_write writes[TS_WRITES_PER_ENTRY_MAX];
    struct lookup *l = NULL;
    struct entry e;
    char round_buf[24];
    int rc;

    memset(now, 0, sizeof(*now));
    memset(&e, 0, sizeof(e));
    memset(writes, 0, sizeof(writes));
    if (strlen(w->type) > TS_TYPE_BYTES_MAX || strlen(w->id) > TS_ID_BYTES_MAX)
        return result_error(now, TS_ERR_INVALID, "record type or id too long%s", "");

    l = calloc(1, sizeof(*l));
    if (l == NULL)
        return result_error(now, TS_ERR_NOMEM, "out of memory%s", "");
    l->n = n;
    l->type = w->type;
    l->id = w->id;
    /* Most writes create a record: one lookup then spares one per field. */
    l->absent = !store_record_exists(n->store, w->type, w->id);

    enum validate_role role = n->cfg.role == PKI_ROLE_HUB ? VALIDATE_ROLE_HUB : VALIDATE_ROLE_SITE;
    const char *user = (w->user != NULL && *w->user) ? w->user : "unknown";
    const char *reason = w->reason != NULL ? w->reason : "";
    enum lane lane = LANE_BULK;
    if (w->membership && strcmp(w->type, SCHEMA_USER_TYPE) == 0) {
        rc = n->cfg.role == PKI_ROLE_HUB
                 ? validate_admin_write(w->type, w->id, w->fields, w->n, w->reason, &now->verr)
                 : TS_ERR_AUTH;
        if (rc == TS_ERR_AUTH)
            snprintf(now->verr.msg, sizeof(now->verr.msg),
                     "user accounts are recorded at a hub, not at a site");
        lane = LANE_SAFETY;  /* a disabled account must overtake any backlog */
    } else if (w->membership && strcmp(w->type, SCHEMA_CRL_TYPE) == 0) {
        rc = validate_crl_write(w, n->cfg.role, &now->verr);
        lane = LANE_SAFETY;  /* a revocation must overtake any backlog */
    } else if (w->membership) {
        rc = validate_member(w, n->cfg.role, &now->verr);
        lane = LANE_SAFETY;  /* a revocation must overtake any backlog */
    } else if (strcmp(w->type, SCHEMA_CRL_TYPE) == 0) {
        rc = TS_ERR_AUTH;
        snprintf(now->verr.msg, sizeof(now->verr.msg),
                 "the revocation list is recorded by an admin with 'trialsync site revoke' or "
                 "'crl renew', not as data");
    } else if (strcmp(w->type, MEMBER_TYPE) == 0) {
        rc = TS_ERR_AUTH;
        snprintf(now->verr.msg, sizeof(now->verr.msg),
                 "member records are written by an admin with 'trialsync site', not as data");
    } else {
        rc = validate_write(w->type, w->id, w->fields, w->n, reason, user, role, n->cfg.id,
                            lookup_current, l, &now->verr);
        lane = validate_lane(w->type, w->fields, w->n, lookup_current, l);
    }
    if (rc != 0) {
        now->code = rc;
        ts_error_set(&now->err, rc, "%s", now->verr.msg);
        goto out_release;
    }

    /* A lock the node holds freezes the record; the entry says which lock
     * epoch its writer saw (node/lock.h). */
    if (!w->membership) {
        rc = lockview_check_write(n->store, w->type, w->id, &e.lock_epoch, now->verr.msg,
                                  sizeof(now->verr.msg));
        if (rc != 0) {
            now->code = rc;
            ts_error_set(&now->err, rc, "%s", now->verr.msg);
            goto out_release;
        }
    }

    if (w->membership)
        rc = 0;  /* membership is trial-wide: e.site stays "" */
    else
        rc = validate_scope(w->type, w->id, w->fields, w->n, lookup_current, l, e.site);
    if (rc != 0) {
        now->code = rc;
        ts_error_set(&now->err, rc, "cannot tell which site record %s %s belongs to",
                     w->type, w->id);
        goto out_release;
    }
    /* A hub writes only for sites of the trial (and its own records, such
     * as its access events, scoped to itself): a mistyped site (103 for
     * 102) would otherwise make records no site ever receives.  A site's
     * node writes only its own site's records (validate_write). */
    if (n->cfg.role == PKI_ROLE_HUB && e.site[0] != '\0' && strcmp(e.site, n->cfg.id) != 0 &&
        !store_record_exists(n->store, MEMBER_TYPE, e.site)) {
        rc = now->code = TS_ERR_INVALID;
        ts_error_set(&now->err, rc, "site %s is not a site of this trial (record %s %s): add "
                     "it with 'trialsync site add %s' first", e.site, w->type, w->id, e.site);
        goto out_release;
    }
    rc = build_writes(l, w, &e, writes, round_buf, sizeof(round_buf), &now->err);
    if (rc != 0) {
        now->code = rc;
        goto out_free_writes;
    }

    memcpy(e.origin, n->cfg.id, strlen(n->cfg.id) + 1);
    e.lane = (uint8_t)lane;
    e.seq = heads->seq[lane] + 1;
    e.wall_ms = n->wall_ms();
    e.hlc = hlc_now(&n->clock, e.wall_ms);
    e.user = (char *)user;
    e.reason = (char *)reason;
    memcpy(e.record_type, w->type, strlen(w->type) + 1);
    memcpy(e.record_id, w->id, strlen(w->id) + 1);
    memcpy(e.prev_hash, heads->hash[lane], TS_HASH_BYTES);

    rc = codec_entry_encode(&e, buf, len, &now->err);
    if (rc != 0) {
        now->code = rc;
        goto out_free_writes;
    }
    crypto_chain_hash(heads->hash[lane], *buf, *len, heads->hash[lane]);
    heads->seq[lane] = e.seq;
    *lane_out = lane;
    *hlc = e.hlc;

out_free_writes:
    for (size_t i = 0; i < TS_WRITES_PER_ENTRY_MAX; i++)
        free(writes[i].supersedes);
out_release:
    lookup_release(l);
    free(l);
    return rc;
}

static void heads_load(const struct node *n, struct chain_heads *h)
{
    memcpy(h->seq, n->heads_seq, sizeof(h->seq));
    memcpy(h->hash, n->heads_hash, sizeof(h->hash));
}

static void heads_store(struct node *n, const struct chain_heads *h)
{
    memcpy(n->heads_seq, h->seq, sizeof(h->seq));
    memcpy(n->heads_hash, h->hash, sizeof(h->hash));
}

/* Queues one prepared entry in the pending group (the lane has room). */
static void pending_add(struct node *n, enum lane lane, uint8_t *buf, size_t len,
                        uint64_t seq, uint64_t hlc, uint64_t record, node_write_cb cb, void *ctx)
{
    struct node_pending *p = n->pending;
    struct pending_lane *pl = &p->lanes[lane];
    assert(pl->count < TS_BATCH_ENTRIES_MAX);
    assert(p->waiters_count < NODE_WAITERS_MAX);
    if (pl->count == 0)
        pl->first_seq = seq;
    pl->bufs[pl->count] = buf;
    pl->lens[pl->count] = len;
    pl->count++;
    pl->bytes += len;

    struct waiter *wt = &p->waiters[p->waiters_count++];
    wt->cb = cb;
    wt->ctx = ctx;
    memset(&wt->ref, 0, sizeof(wt->ref));
    memcpy(wt->ref.origin, n->cfg.id, strlen(n->cfg.id) + 1);
    wt->ref.lane = (uint8_t)lane;
    wt->ref.seq = seq;
    wt->hlc = hlc;
    p->touched[p->touched_count++] = record;
}

int node_write(struct node *n, const struct node_write *w, node_write_cb cb, void *ctx,
               struct node_write_result *now)
{
    struct node_pending *p = n->pending;
    struct chain_heads heads;
    uint8_t *buf = NULL;
    size_t len = 0;
    enum lane lane;
    uint64_t hlc = 0;
    int rc;

    memset(now, 0, sizeof(*now));
    rc = node_accepting(n, now);
    if (rc != 0)
        return rc;
    if (strlen(w->type) > TS_TYPE_BYTES_MAX || strlen(w->id) > TS_ID_BYTES_MAX)
        return result_error(now, TS_ERR_INVALID, "record type or id too long%s", "");
    /* An enrollment takes one of the site's slots (enroll_node.h). */
    struct validate_field enroll_fields[TS_WRITES_PER_ENTRY_MAX];
    struct node_write enrolled;
    rc = enroll_node_prepare(n, w, !p->in_delivery, &enrolled, enroll_fields, now);
    if (rc != 0)
        return rc;
    w = &enrolled;

    uint64_t rh = record_hash(w->type, w->id);
    /* Restarts after a flush: its callbacks may have queued this record again. */
recheck:
    for (size_t i = 0; i < p->touched_count; i++) {
        if (p->touched[i] == rh) {
            /* A writer called back from a commit (a pipelining client) must
             * not commit inside that commit: the group waits for the loop. */
            if (p->in_delivery)
                return result_error(now, TS_ERR_AGAIN,
                                    "node busy committing; retry the write%s", "");
            rc = node_flush(n);
            if (rc != 0)
                return result_error(now, rc, "committing the pending group failed: %s",
                                    ts_strerror(rc));
            goto recheck;
        }
    }

    heads_load(n, &heads);
    rc = entry_prepare(n, w, &heads, &buf, &len, &lane, &hlc, now);
    if (rc != 0)
        return rc;
    struct pending_lane *pl = &p->lanes[lane];
    if (pl->count == TS_BATCH_ENTRIES_MAX || pl->bytes + TS_ENTRY_BYTES_MAX > TS_BATCH_BYTES_MAX) {
        /* Only while a commit calls its writers back can a lane be full here:
         * a group must stay within one replication batch. */
        free(buf);
        return result_error(now, TS_ERR_AGAIN, "node busy committing; retry the write%s", "");
    }
    heads_store(n, &heads);
    pending_add(n, lane, buf, len, heads.seq[lane], hlc, rh, cb, ctx);

    if (!p->in_delivery &&
        (pl->count == TS_BATCH_ENTRIES_MAX || pl->bytes + TS_ENTRY_BYTES_MAX > TS_BATCH_BYTES_MAX))
        node_flush(n);  /* the writers learn the outcome through their callbacks */
    else if (!uv_is_active((uv_handle_t *)&n->flush_check))
        uv_check_start(&n->flush_check, flush_check_cb);
    return 0;
}

int node_write_many(struct node *n, const struct node_write *ws, size_t count, bool dry_run,
                    node_refused_cb refused, node_write_cb cb, void *ctx,
                    struct node_write_result *now)
{
    struct node_pending *p = n->pending;
    struct chain_heads heads;
    uint8_t **bufs = NULL;
    size_t *lens = NULL;
    uint8_t *lanes = NULL;
    uint64_t *hlcs = NULL, *seqs = NULL, *hashes = NULL;
    size_t lane_count[LANE_COUNT] = {0}, lane_bytes[LANE_COUNT] = {0};
    size_t bad = 0;
    int rc;

    assert(count > 0);
    assert(count <= TS_IMPORT_ROWS_MAX);
    memset(now, 0, sizeof(*now));
    rc = node_accepting(n, now);
    if (rc != 0)
        return rc;
    /* The import is validated against committed state and committed as a
     * group of its own, so whatever is pending goes first. */
    if (p->waiters_count > 0) {
        if (p->in_delivery)
            return result_error(now, TS_ERR_AGAIN, "node busy committing; retry the import%s",
                                "");
        rc = node_flush(n);
        if (rc != 0)
            return result_error(now, rc, "committing the pending group failed: %s",
                                ts_strerror(rc));
    }

    bufs = calloc(count, sizeof(*bufs));
    lens = calloc(count, sizeof(*lens));
    lanes = calloc(count, sizeof(*lanes));
    hlcs = calloc(count, sizeof(*hlcs));
    seqs = calloc(count, sizeof(*seqs));
    hashes = calloc(count, sizeof(*hashes));
    if (bufs == NULL || lens == NULL || lanes == NULL || hlcs == NULL || seqs == NULL ||
        hashes == NULL) {
        rc = result_error(now, TS_ERR_NOMEM, "out of memory%s", "");
        goto out_free;
    }

    /* Every row is checked, so the writer learns of every bad row at once. */
    heads_load(n, &heads);
    for (size_t i = 0; i < count; i++) {
        struct node_write_result r;
        const struct node_write *w = &ws[i];
        if (strlen(w->type) > TS_TYPE_BYTES_MAX || strlen(w->id) > TS_ID_BYTES_MAX) {
            result_error(&r, TS_ERR_INVALID, "record type or id too long%s", "");
            refused(ctx, i, &r);
            bad++;
            continue;
        }
        hashes[i] = record_hash(w->type, w->id);
        /* Each entry is built against committed state: a second write to a
         * record in the same group would not see the first. */
        size_t dup = i;
        for (size_t j = 0; j < i && dup == i; j++)
            if (hashes[j] == hashes[i] && strcmp(ws[j].type, w->type) == 0 &&
                strcmp(ws[j].id, w->id) == 0)
                dup = j;
        if (dup != i) {
            memset(&r, 0, sizeof(r));
            r.code = TS_ERR_INVALID;
            snprintf(r.verr.msg, sizeof(r.verr.msg),
                     "%.15s %.63s is already written by row %zu of this import; an import "
                     "writes each record once (put all its fields in one row)",
                     w->type, w->id, dup + 1);
            ts_error_set(&r.err, TS_ERR_INVALID, "%s", r.verr.msg);
            refused(ctx, i, &r);
            bad++;
            continue;
        }
        enum lane lane;
        struct validate_field enroll_fields[TS_WRITES_PER_ENTRY_MAX];
        struct node_write enrolled;
        /* A row that enrolls takes a slot; admission counts them (all or
         * nothing, like the rest of the import). */
        rc = enroll_node_prepare(n, w, false, &enrolled, enroll_fields, &r);
        if (rc == 0)
            rc = entry_prepare(n, &enrolled, &heads, &bufs[i], &lens[i], &lane, &hlcs[i], &r);
        if (rc != 0) {
            refused(ctx, i, &r);
            bad++;
            continue;
        }
        lanes[i] = (uint8_t)lane;
        seqs[i] = heads.seq[lane];
        lane_count[lane]++;
        lane_bytes[lane] += lens[i];
    }
    if (bad > 0) {
        rc = result_error(now, TS_ERR_INVALID, "rows refused; nothing written%s", "");
        goto out_free;
    }
    for (uint8_t lane = 0; lane < LANE_COUNT; lane++) {
        if (lane_count[lane] > TS_BATCH_ENTRIES_MAX || lane_bytes[lane] > TS_BATCH_BYTES_MAX) {
            rc = result_error(now, TS_ERR_TOOBIG,
                              "the rows do not fit in one group commit (at most 1 MiB of "
                              "entries); send fewer rows per request%s", "");
            goto out_free;
        }
    }
    if (dry_run) {
        rc = 0;
        goto out_free;
    }

    /* All valid: the entries join the (empty) group as one commit.  Only the
     * last waiter is called back: the group commits all or nothing. */
    assert(p->waiters_count == 0);
    heads_store(n, &heads);
    for (size_t i = 0; i < count; i++) {
        pending_add(n, (enum lane)lanes[i], bufs[i], lens[i], seqs[i], hlcs[i], hashes[i],
                    i + 1 == count ? cb : NULL, i + 1 == count ? ctx : NULL);
        bufs[i] = NULL;
    }
    /* As node_write does: a full lane is committed now, so the next writer
     * finds room. */
    bool full = false;
    for (uint8_t lane = 0; lane < LANE_COUNT; lane++) {
        const struct pending_lane *pl = &p->lanes[lane];
        if (pl->count == TS_BATCH_ENTRIES_MAX ||
            pl->bytes + TS_ENTRY_BYTES_MAX > TS_BATCH_BYTES_MAX)
            full = true;
    }
    if (full && !p->in_delivery)
        node_flush(n);  /* cb learns the outcome */
    else if (!uv_is_active((uv_handle_t *)&n->flush_check))
        uv_check_start(&n->flush_check, flush_check_cb);
    rc = 0;

out_free:
    if (bufs != NULL)
        for (size_t i = 0; i < count; i++)
            free(bufs[i]);
    free(bufs);
    free(lens);
    free(lanes);
    free(hlcs);
    free(seqs);
    free(hashes);
    return rc;
}

int node_flush(struct node *n)
{
    struct node_pending *p = n->pending;
    struct batch batches[LANE_COUNT];
    size_t nb = 0;
    struct ts_error err = {0};
    uint8_t msg[256];
    int rc = 0;

    if (p->waiters_count == 0)
        return 0;
    if (uv_is_active((uv_handle_t *)&n->flush_check))
        uv_check_stop(&n->flush_check);

    memset(batches, 0, sizeof(batches));
    /* After a failed sync nothing is written again (node.h): the group's
     * writers are answered with the error. */
    if (n->health == NODE_HEALTH_STORAGE_FAILED)
        rc = ts_error_set(&err, TS_ERR_AGAIN,
                          "storage_failed: %s; nothing written; the node restarts and recovers "
                          "its log: retry then", n->health_why);
    for (uint8_t lane = 0; lane < LANE_COUNT && rc == 0; lane++) {
        struct pending_lane *pl = &p->lanes[lane];
        if (pl->count == 0)
            continue;
        struct batch *b = &batches[nb++];
        memcpy(b->trial, n->cfg.trial, strlen(n->cfg.trial) + 1);
        memcpy(b->origin, n->cfg.id, strlen(n->cfg.id) + 1);
        b->lane = lane;
        b->first_seq = pl->first_seq;
        b->entries = (const uint8_t **)pl->bufs;
        b->entry_lens = pl->lens;
        b->count = pl->count;
        memcpy(b->chain_hash, n->heads_hash[lane], TS_HASH_BYTES);
        memcpy(b->cert_serial, n->cert_serial, strlen(n->cert_serial) + 1);
        int mlen = codec_batch_sign_bytes(n->cfg.trial, n->cfg.id, n->cert_serial, lane,
                                          n->heads_seq[lane], b->chain_hash, msg, sizeof(msg));
        if (mlen < 0) {
            rc = ts_error_set(&err, mlen, "cannot build the batch header to sign");
            break;
        }
        rc = crypto_sign(n->key, msg, (size_t)mlen, b->signature, &b->signature_len, &err);
    }
    if (rc == 0) {
        double t0 = monotonic_s();
        rc = store_apply(n->store, n->cfg.trial, batches, nb, NULL, NULL, true, n->wall_ms(),
                         NULL, &err);
        commit_observe(n, monotonic_s() - t0);
        if (rc != 0 && node_admit_failure(n)) {
            /* The sync's outcome is unknown: the entries may or may not be
             * in the log recovery replays (docs/operations.md). */
            struct ts_error cause = err;
            ts_error_set(&err, rc, "storage_failed: %s; this write may or may not be present "
                         "after the node restarts", cause.msg);
        }
    }
    n->commits++;
    /* The safety lane's entries are few (SAEs, membership): decode them for
     * whoever tracks them, before their bytes are freed. */
    if (rc == 0 && n->on_safety_entry != NULL) {
        struct pending_lane *sl = &p->lanes[LANE_SAFETY];
        for (size_t i = 0; i < sl->count; i++) {
            struct entry e;
            memset(&e, 0, sizeof(e));
            if (codec_entry_decode(sl->bufs[i], sl->lens[i], &e, NULL) == 0)
                n->on_safety_entry(n->on_safety_entry_ctx, &e);
            entry_release(&e);
        }
    }

    /* Reset the group before calling anyone back: a callback may write again. */
    assert(!p->in_delivery);
    size_t count = p->waiters_count;
    struct waiter *waiters = p->delivering;
    memcpy(waiters, p->waiters, count * sizeof(*waiters));
    for (uint8_t lane = 0; lane < LANE_COUNT; lane++) {
        struct pending_lane *pl = &p->lanes[lane];
        for (size_t i = 0; i < pl->count; i++)
            free(pl->bufs[i]);
        pl->count = 0;
        pl->bytes = 0;
    }
    p->waiters_count = 0;
    p->touched_count = 0;
    if (rc != 0)
        reload_heads(n);

    p->in_delivery = true;
    for (size_t i = 0; i < count; i++) {
        struct node_write_result r;
        memset(&r, 0, sizeof(r));
        r.code = rc;
        r.ref = waiters[i].ref;
        r.hlc = waiters[i].hlc;
        if (rc != 0)
            r.err = err;
        if (waiters[i].cb != NULL)
            waiters[i].cb(waiters[i].ctx, &r);
    }
    p->in_delivery = false;
    if (rc == 0 && n->on_commit != NULL)
        n->on_commit(n->on_commit_ctx);
    return rc;
}
