/*
 * store.h: the node's RocksDB store: oplog, state, indexes, metadata.
 *
 * The only module that includes RocksDB.  Column families:
 *   oplog  entries by (origin, lane, seq), with the chain hash after each,
 *          and the signature of every signed point (the end of each batch);
 *   state  the merged field states by (type, id, field) (merge.h encoding);
 *   index  record history (entries per record), conflicts, record list;
 *   meta   version vector with chain heads, highest HLC seen, node metadata.
 *
 * Guarantees:
 * - store_apply is all-or-nothing: one RocksDB write batch, synced when asked.
 *   Nothing is written when any entry fails a check.
 * - State is a pure function of the set of entries held: the same entries
 *   applied in any order and any number of times give byte-identical state
 *   column families, hence equal store_digest values.
 * - Entries are never changed or removed.
 *
 * Threading: one store is used from one thread at a time (the node's loop).
 */
#ifndef TS_STORE_H
#define TS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../proto/entry.h"
#include "../proto/errors.h"
#include "../node/merge.h"

struct store;

/* Opens (creating when missing) the store in dir.  dir is made mode 0700 and
 * the files in it 0600 (wider modes are tightened; TS_ERR_PERM when they
 * cannot be); files created later follow the process umask (077 in
 * trialsyncd). */
int store_open(const char *dir, struct store **out, struct ts_error *err);
void store_close(struct store *s);

/*
 * Opens an existing store for reading only, also while its node runs
 * (RocksDB's read-only mode takes no lock): the view is the store as it was
 * at open (memtables recovered from the write-ahead log), and stays fixed.
 * Every write call fails on it.  TS_ERR_NOTFOUND when dir holds no store.
 */
int store_open_readonly(const char *dir, struct store **out, struct ts_error *err);

/*
 * Checks a batch's signature, made with the key of origin's certificate of
 * serial cert_serial (uppercase hex).  msg is codec_batch_sign_bytes() of the
 * batch header.  Returns 0, TS_ERR_SIGNATURE, or TS_ERR_AUTH (no certificate
 * of that origin and serial is known).
 */
typedef int (*store_verify_fn)(void *ctx, const char *origin, const char *cert_serial,
                               const uint8_t *msg, size_t len, const uint8_t *sig,
                               size_t sig_len);

struct store_apply_result {
    size_t applied;      /* entries new to this store */
    size_t duplicates;   /* entries already held, byte-identical */
};

/*
 * Applies n batches in one atomic write batch.  For each batch, in order:
 * - every entry decodes and names the batch's origin and lane and its own seq
 *   (TS_ERR_CORRUPT);
 * - an entry at or below the held head must be byte-identical to the stored
 *   one (TS_ERR_FORK, naming origin, lane and seq); it is then skipped;
 * - the first new entry must be head + 1 (TS_ERR_GAP) and each new entry's
 *   prev_hash must be the chain hash before it (TS_ERR_CHAIN);
 * - the chain hash after the last entry must equal batch->chain_hash and,
 *   when verify is not NULL, the signature must verify (TS_ERR_SIGNATURE).
 *   verify == NULL is for the node's own freshly built entries only.
 * Then each new entry is merged into state (merge.h), indexed for history
 * and conflicts with now_ms as its local entry time, the signature stored at
 * the batch's last seq, the heads and the highest HLC updated.  Several
 * batches of one (origin, lane) may follow each other in one call.
 * err names the offending entry.  res may be NULL.
 */
int store_apply(struct store *s, const char *trial, const struct batch *batches,
                size_t n, store_verify_fn verify, void *ctx, bool sync,
                uint64_t now_ms, struct store_apply_result *res, struct ts_error *err);

/*
 * A check on what an entry says, run by store_apply on every entry new to
 * this store right after decoding it (so callers need not decode again).
 * Non-zero refuses the whole call: nothing is written, err says why.
 */
typedef int (*store_entry_check_fn)(void *ctx, const struct entry *e, struct ts_error *err);
void store_set_entry_check(struct store *s, store_entry_check_fn fn, void *ctx);

/* The head of (origin, lane): its seq (0 when empty) and chain hash (zeros). */
int store_head(struct store *s, const char *origin, uint8_t lane, uint64_t *seq,
               uint8_t hash[TS_HASH_BYTES]);

/* The version vector, sorted by (origin, lane), malloc'ed (free()). */
int store_vv(struct store *s, struct vv_item **items, size_t *count);

/* The highest HLC of any entry held (0 when empty). */
uint64_t store_hlc_max(struct store *s);

/*
 * Reads the entries of (origin, lane) from from_seq on, ending at the last
 * signed point that keeps count <= max_entries and encoded bytes <= max_bytes,
 * into *out (release with store_batch_release).  out->count is 0 when no
 * signed point is reachable from from_seq (nothing to send).
 */
int store_read_batch(struct store *s, const char *trial, const char *origin,
                     uint8_t lane, uint64_t from_seq, size_t max_entries,
                     size_t max_bytes, struct batch *out, struct ts_error *err);
void store_batch_release(struct batch *b);

/* One stored entry, decoded (entry_release() it); TS_ERR_NOTFOUND. */
int store_entry_get(struct store *s, const struct entry_ref *ref, struct entry *out,
                    struct ts_error *err);

/* The chain hash after one stored entry (h(n) of DESIGN.md 2); TS_ERR_NOTFOUND. */
int store_entry_hash(struct store *s, const struct entry_ref *ref, uint8_t out[TS_HASH_BYTES]);

/* True when the store holds the record (any entry has written it). */
bool store_record_exists(struct store *s, const char *type, const char *id);

/* A field's merged state; an empty state (not an error) when it has none. */
int store_field_get(struct store *s, const char *type, const char *id,
                    const char *field, struct field_state *out);

/* Callbacks return 0 to go on, anything else to stop (returned by the walker). */
typedef int (*store_field_cb)(void *ctx, const char *field, const struct field_state *st);
typedef int (*store_entry_cb)(void *ctx, const struct entry *e, uint64_t stored_ms);
typedef int (*store_conflict_cb)(void *ctx, const char *type, const char *id,
                                 const char *field, const struct field_state *st);
typedef int (*store_record_cb)(void *ctx, const char *type, const char *id);

/* Each field of a record, by field name; TS_ERR_NOTFOUND when no field exists. */
int store_record_fields(struct store *s, const char *type, const char *id,
                        store_field_cb cb, void *ctx);

/*
 * Every entry that wrote the record, ordered by (hlc, origin, lane, seq), with
 * the time this node stored it; TS_ERR_NOTFOUND when there is none.
 */
int store_record_history(struct store *s, const char *type, const char *id,
                         store_entry_cb cb, void *ctx);

/* Every record of a type ("" for all types), by (type, id). */
int store_records(struct store *s, const char *type, store_record_cb cb, void *ctx);

/*
 * The longest key a page cursor holds: the part of an index key after the
 * walk's prefix.  A conflict's "type NUL id NUL field" is the longest; a
 * record's "type NUL id" and a history key's hlc(8) origin NUL lane(1)
 * seq(8) are shorter.
 */
#define STORE_PAGE_KEY_BYTES_MAX (TS_TYPE_BYTES_MAX + 1 + TS_ID_BYTES_MAX + 1 + TS_FIELD_BYTES_MAX)
_Static_assert(8 + TS_ID_BYTES_MAX + 1 + 1 + 8 <= STORE_PAGE_KEY_BYTES_MAX,
               "a history key's tail fits a cursor");

/*
 * One page of a walk (the _page walkers below): at most `limit` (> 0) index
 * keys are visited, from the first key after `after` (after_len 0: from the
 * start).  A key visited is not always an item handed to the callback
 * (store_conflicts_page skips stale index keys; callers filter), so the work
 * per page is bounded by `limit` whatever the filter.  On return `next` holds
 * the key of the last key visited when more keys remain (next_len > 0: pass
 * it as `after` for the next page), and next_len is 0 when the walk ended.
 * A cursor is the key's part after the walk's prefix, opaque to callers and
 * meaningful only to the walk (same type, same record) that returned it;
 * any bytes are safe: the walk resumes at the first key above them.
 */
struct store_page {
    size_t limit;
    uint8_t after[STORE_PAGE_KEY_BYTES_MAX];
    size_t after_len;
    uint8_t next[STORE_PAGE_KEY_BYTES_MAX];
    size_t next_len;
};

/* store_records, one page. */
int store_records_page(struct store *s, const char *type, struct store_page *page,
                       store_record_cb cb, void *ctx);

/* store_conflicts, one page. */
int store_conflicts_page(struct store *s, struct store_page *page, store_conflict_cb cb,
                         void *ctx);

/*
 * store_record_history, one page: TS_ERR_NOTFOUND only when the record has
 * no history at all (a page past the end is empty, not an error).
 */
int store_record_history_page(struct store *s, const char *type, const char *id,
                              struct store_page *page, store_entry_cb cb, void *ctx);

/* The records of type whose id begins with id_prefix, by id. */
int store_records_prefix(struct store *s, const char *type, const char *id_prefix,
                         store_record_cb cb, void *ctx);

/*
 * A forward walk over the records of one type ("" for every type) in
 * (type, id) order, the order of store_records, that reads each record's
 * fields and history without a seek per record: one cursor over the record
 * list, and, opened on first use, one over the state column family and one
 * over the history index, each only ever moved forward (a record whose
 * fields or history the caller does not ask for is stepped over).  An
 * entry's body is still one point read (the oplog is keyed by origin).
 * The cursors read one snapshot taken at open, so a walk beside writes sees
 * one state; memory is bounded by one record.
 */
struct store_walk;

/* An entry of the current record's history, with the chain hash after it. */
typedef int (*store_walk_entry_cb)(void *ctx, const struct entry *e,
                                   const uint8_t hash[TS_HASH_BYTES], uint64_t stored_ms);

/* Opens a walk positioned at the first record; 0 or TS_ERR_NOMEM. */
int store_walk_open(struct store *s, const char *type, struct store_walk **out);
/* Moves the walk to the first record whose id is >= id (same type walks only). */
int store_walk_seek(struct store_walk *w, const char *id);
void store_walk_close(struct store_walk *w);
/* The current record, NULL (both) once the walk is past the last one. */
const char *store_walk_type(const struct store_walk *w);
const char *store_walk_id(const struct store_walk *w);
/* Moves to the next record; 0, or the store's read error. */
int store_walk_next(struct store_walk *w);
/*
 * The current record's fields, as store_record_fields (TS_ERR_NOTFOUND when
 * it has none), and its history, as store_record_history (in (hlc, origin,
 * lane, seq) order; TS_ERR_NOTFOUND when empty).  Each at most once per
 * record, fields and history in either order.
 */
int store_walk_fields(struct store_walk *w, store_field_cb cb, void *ctx);
int store_walk_history(struct store_walk *w, store_walk_entry_cb cb, void *ctx);

/* Every field with a conflict (merge_conflict), by (type, id, field). */
int store_conflicts(struct store *s, store_conflict_cb cb, void *ctx);

/* SHA-256 over the state column family in key order. */
int store_digest(struct store *s, uint8_t out[TS_HASH_BYTES]);

/*
 * Says whether a record's state rows go into a filtered digest; called once
 * per record, in key order.  It may read the store (store_field_get).
 */
typedef bool (*store_record_filter_fn)(void *ctx, const char *type, const char *id);

/*
 * As store_digest, over the rows of the records keep() accepts only: two
 * stores holding the same entries for those records give the same digest,
 * whatever else each holds (a site's share of the trial at the site and at a
 * hub).  keep NULL: every record, the same bytes as store_digest.
 */
int store_digest_filtered(struct store *s, store_record_filter_fn keep, void *ctx,
                          uint8_t out[TS_HASH_BYTES]);

struct store_stats {
    uint64_t entries;
    uint64_t records;
    uint64_t conflicts;
    uint64_t bytes_on_disk;  /* table files plus memtables */
};
int store_stats(struct store *s, struct store_stats *out);

/*
 * Walks every chain from seq 1: each entry decodes and sits at its key, each
 * prev_hash and stored chain hash matches the recomputed chain, each stored
 * signature verifies (when verify is not NULL).  The first problem returns
 * TS_ERR_CORRUPT naming origin, lane and seq.
 */
int store_verify(struct store *s, const char *trial, store_verify_fn verify,
                 void *ctx, struct ts_error *err);

/*
 * A check on what a stored entry says (its origin's certificate, its time),
 * called by store_verify_entries for every entry held in full (not holes),
 * in chain order, once its chain hash has been checked.  Non-zero stops the
 * walk: err says why (TS_ERR_CORRUPT when the callback returns a positive
 * value).
 */
typedef int (*store_verify_entry_fn)(void *ctx, const struct entry *e, struct ts_error *err);

/* store_verify, and entry_cb (when not NULL) on every entry; ctx is passed to both. */
int store_verify_entries(struct store *s, const char *trial, store_verify_fn verify,
                         store_verify_entry_fn entry_cb, void *ctx, struct ts_error *err);

/*
 * Rebuilds the state from the oplog and compares it with the stored state
 * column family, record by record, so memory is bounded by the largest
 * record, not by the store:
 * - every entry held in full that names a record must have its history key
 *   (the history index is what the rebuild walks), and every history key
 *   must name an entry held in full, of that record and HLC;
 * - each record's field states are rebuilt by merging the writes of its
 *   entries (exactly as store_apply merges them) and encoded; every field
 *   the oplog produces must be stored with byte-identical encoding, and
 *   every stored field must be produced by the oplog.
 * Holes (entries this node may not see) reach no state and are skipped.
 * The first difference returns TS_ERR_CORRUPT naming record and field
 * ("record subject 101-0001 field sex: ...").  *fields (may be NULL) gets
 * the number of field states compared.  Reads only; run it on a stopped
 * node (after store_verify, which proves the entries themselves).
 */
int store_verify_state(struct store *s, uint64_t *fields, struct ts_error *err);

/*
 * Writes a consistent copy of the store (a RocksDB checkpoint: table files
 * hard-linked when dir is on the same file system, copied otherwise; the
 * memtables flushed first) into dir, which must be an absolute path that does
 * not exist yet (its parent must).  Safe while the store is being written:
 * the copy holds exactly the write batches committed before the call.
 * Returns 0, TS_ERR_INVALID (relative path), TS_ERR_EXISTS, TS_ERR_IO,
 * TS_ERR_DISKFULL.  Not on a store_open_readonly store.
 */
int store_checkpoint(struct store *s, const char *dir, struct ts_error *err);

/*
 * The store format this build writes (the marker of every store it opens for
 * writing: older formats are migrated forward by store_open, newer ones are
 * refused by both opens).
 */
uint32_t store_format_version(void);

/*
 * Whether the store can still be written: 0, or TS_ERR_IO with err saying
 * why: a write of this process failed in RocksDB (a failed sync, ENOSPC, any
 * I/O error: remembered from the first, never cleared), or RocksDB counted a
 * background error (a flush or compaction failed), after which it refuses
 * every write.  Debian's RocksDB C API cannot resume a store from either, so
 * the caller stops writing and the process restarts (node.h).
 */
int store_health(struct store *s, struct ts_error *err);

/*
 * Free space a store needs beyond its owner's floor to take one more write
 * without that floor being crossed while RocksDB works it through:
 * - the largest write: one batch of TS_BATCH_BYTES_MAX of entries, written
 *   to the write-ahead log as the entries plus their state and index rows
 *   (each field value is stored again in state): at most 3 x 1 MiB;
 * - a memtable flush: the memtables (8 MiB at most, STORE_MEMTABLES_BYTES_MAX
 *   in store.c) are written as table files before the log they replace is
 *   deleted, and values that do not compress take their full size: 8 MiB;
 * - compaction: level 0 is compacted when it holds 4 files (RocksDB's
 *   default trigger) of at most one memtable (4 MiB, the oplog's), and a
 *   compaction writes its output before it deletes its inputs: 16 MiB, plus
 *   the overlapping part of the next level, bounded in practice by the
 *   rewritten state and index rows of those files: 4 MiB more.
 * 3 + 8 + 16 + 4 = 31 MiB, rounded up to 32 MiB.
 */
#define STORE_WRITE_HEADROOM_BYTES (32ULL << 20)

/* Small named metadata values (membership, settings); TS_ERR_NOTFOUND. */
int store_meta_get(struct store *s, const char *key, char **val, size_t *len);
int store_meta_put(struct store *s, const char *key, const void *val, size_t len,
                   bool sync, struct ts_error *err);

#endif
