/*
 * node.h: one trialsync node: its store, its key, its clock, and the local
 * write path with group commit.
 *
 * A write is validated against the record as it stands, turned into an oplog
 * entry (next seq of its lane, HLC time, the live writes it supersedes, the
 * previous chain hash) and queued in the pending group.  Once per loop
 * iteration (a uv_check handle) the group is signed per lane and applied to
 * the store in one synced write batch; only then are the writers called back
 * with success.  Concurrent writes therefore share one fsync.  A write to a
 * record already in the pending group first commits the group, so every
 * entry is built against committed state.
 *
 * Loop: everything here runs on the node's libuv loop thread.
 */
#ifndef TS_NODE_H
#define TS_NODE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "../proto/entry.h"
#include "../proto/errors.h"
#include "../storage/store.h"
#include "config.h"
#include "crypto.h"
#include "hlc.h"
#include "validate.h"

/* The record type of the membership log: one record per site. */
#define MEMBER_TYPE "member"

struct node_write {
    const char *type;
    const char *id;
    const struct validate_field *fields;
    size_t n;
    const char *reason;   /* may be NULL */
    const char *user;     /* may be NULL: "unknown" */
    bool membership;      /* a `member` record written by an admin (hubs only) */
};

struct node_write_result {
    int code;                    /* 0 or a ts_err */
    struct entry_ref ref;        /* the entry made, when code == 0 */
    uint64_t hlc;
    struct validate_error verr;  /* filled when validation refused the write */
    struct ts_error err;         /* filled for other errors */
};

typedef void (*node_write_cb)(void *ctx, const struct node_write_result *r);

/* Called after every group commit or applied batch; peers push from it. */
typedef void (*node_commit_cb)(void *ctx);

struct node_pending;
struct enroll_ledger;

/* node.revoked: "this site was revoked on <date>: <reason>", a reason
 * (TS_REASON_BYTES_MAX) and a date with room to spare. */
#define NODE_REVOKED_BYTES_MAX (TS_REASON_BYTES_MAX + 128)

/* Commit (fsync) latency histogram bounds, in seconds; one more bucket above. */
#define NODE_COMMIT_BUCKETS 10
extern const double node_commit_bounds_s[NODE_COMMIT_BUCKETS];

/* Called for each safety-lane entry of this node's own chain once committed. */
typedef void (*node_entry_cb)(void *ctx, const struct entry *e);

/*
 * What the node can do with its store.  node_health_set() traces every change
 * (at error priority away from ok); /healthz, /metrics and status show it.
 *
 *   ok ──free space below the guard (node_admit, node_health_check)──> disk_low
 *   disk_low ──space returns (node_admit, node_health_check)──> ok
 *   ok, disk_low ──a store write or sync fails, a RocksDB background error
 *                  (node_flush, node_admit_failure, node_health_check)──> storage_failed
 *
 * storage_failed is final: after a failed fsync the kernel may have dropped
 * the dirty pages it could not write (PostgreSQL's "fsyncgate"), so a later
 * sync that succeeds proves nothing; no write is tried again, every writer
 * is answered with an error, and on_storage_failed lets the daemon exit
 * non-zero so its supervisor restarts it and recovery replays the log.
 */
enum node_health {
    NODE_HEALTH_OK,
    NODE_HEALTH_DISK_LOW,
    NODE_HEALTH_STORAGE_FAILED,
};
#define NODE_HEALTH_COUNT 3

/* Called once, when the node enters storage_failed. */
typedef void (*node_failed_cb)(void *ctx);

struct node {
    uv_loop_t *loop;
    struct config cfg;
    struct store *store;
    struct crypto_key *key;
    struct crypto_pubkey *pubkey;
    char *cert_pem;
    /* Serial of cert_pem (uppercase hex): named in every batch this node signs. */
    char cert_serial[TS_SERIAL_BYTES_MAX + 1];
    struct hlc clock;
    uint64_t (*wall_ms)(void);     /* the wall clock; replaceable in tests */
    uv_check_t flush_check;
    struct node_pending *pending;
    uint64_t heads_seq[LANE_COUNT];            /* including pending entries */
    uint8_t heads_hash[LANE_COUNT][TS_HASH_BYTES];
    node_commit_cb on_commit;
    void *on_commit_ctx;
    node_entry_cb on_safety_entry;
    void *on_safety_entry_ctx;
    uint64_t commit_counts[NODE_COMMIT_BUCKETS + 1];
    double commit_sum_s;
    uint64_t started_ms;
    uint64_t commits;              /* group commits done */
    uint64_t writes_refused_disk;  /* writes refused below the free-disk threshold */
    /* Set once this site learns of its own revocation (peer.c): why, in one
     * sentence; "" while not revoked.  A revoked node refuses every write. */
    char revoked[NODE_REVOKED_BYTES_MAX + 1];
    enum node_health health;
    char health_why[sizeof(((struct ts_error *)0)->msg)];  /* "" while ok */
    node_failed_cb on_storage_failed;
    void *on_storage_failed_ctx;
    /* Enrollment slots per site (enroll_node.h); made on first use. */
    struct enroll_ledger *enroll;
    bool closing;
};

/*
 * Opens the node of cfg on loop: loads and checks the key (mode 0600), the
 * certificate (its identity must match [node] id, role and trial), opens the
 * store, verifies nothing yet.  err says what is wrong.
 */
int node_open(struct node **out, uv_loop_t *loop, const struct config *cfg,
              struct ts_error *err);

/* Commits what is pending and releases everything; handles are closed on the loop. */
void node_close(struct node *n);

/*
 * Validates and queues one write.  Returns 0 when queued: cb is called after
 * the group commit (success or the commit's error).  Returns a negative code
 * when refused at once (validation, free-disk threshold): *now is filled and
 * cb is never called.
 */
int node_write(struct node *n, const struct node_write *w, node_write_cb cb, void *ctx,
               struct node_write_result *now);

/* Called by node_write_many for each row it refuses (row counts from 0). */
typedef void (*node_refused_cb)(void *ctx, size_t row, const struct node_write_result *r);

/*
 * Validates count writes (an import, at most TS_IMPORT_ROWS_MAX, each to a
 * different record) against committed state, every one of them, and queues
 * them as one group commit only when all are valid: all or nothing.  What was
 * pending is committed first.  Returns 0 when queued (cb(ctx) is called once,
 * after the commit; possibly before this returns) or, with dry_run, when all
 * are valid (nothing queued, cb never called).  Returns a negative code when
 * refused: refused(ctx, row, r) was called for each bad row (TS_ERR_INVALID),
 * or *now says why the whole request was (disk low, busy, too big); cb is
 * never called then.
 */
int node_write_many(struct node *n, const struct node_write *ws, size_t count, bool dry_run,
                    node_refused_cb refused, node_write_cb cb, void *ctx,
                    struct node_write_result *now);

/* Re-reads this node's chain heads from the store (after its own entries were
 * restored from a hub).  Commits what is pending first. */
void node_reload_heads(struct node *n);

/* Commits the pending group now (synchronously); 0 when nothing was pending. */
int node_flush(struct node *n);

/*
 * Free space below which no writer (local writes, received batches) is let
 * in: the configured floor ([storage] disk_free_min_mb) plus the store's own
 * headroom (STORE_WRITE_HEADROOM_BYTES), so what was let in never takes the
 * disk below the floor while RocksDB flushes and compacts it.
 */
uint64_t node_disk_guard_bytes(const struct node *n);

/* True when the data directory's free space is below node_disk_guard_bytes. */
bool node_disk_low(struct node *n, uint64_t *free_bytes);

/*
 * The one guard in front of every writer: 0 when a write may go to the
 * store; else TS_ERR_DISKFULL (disk low: the state becomes disk_low) or
 * TS_ERR_AGAIN (storage_failed: the node is about to restart), with err
 * saying why in words a person can act on.  Counts refusals for disk.
 */
int node_admit(struct node *n, struct ts_error *err);

/*
 * After a failed store call: when the store says it can no longer be written
 * (store_health), enters storage_failed.  Returns true when the node is in
 * storage_failed.
 */
bool node_admit_failure(struct node *n);

/* Re-reads free space and the store's health; moves the state.  Any time. */
enum node_health node_health_check(struct node *n);

/* "ok", "disk_low", "storage_failed". */
const char *node_health_name(enum node_health h);

/* Wall clock in ms since the epoch. */
uint64_t node_now_ms(void);

/* Verifies signatures of batches whose origin is this node, made with its
 * current key (cert_serial is its current certificate's). */
int node_verify_own(void *ctx, const char *origin, const char *cert_serial, const uint8_t *msg,
                    size_t len, const uint8_t *sig, size_t sig_len);

#endif
