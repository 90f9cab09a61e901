/*
 * store.c: the node's RocksDB store (the only file that includes RocksDB).
 *
 * One RocksDB database, four column families; every key is binary and ordered
 * so that the reads the node makes are range scans:
 *
 *   oplog  origin NUL lane(1) seq(8 BE)       -> chain hash after it (32) | entry bytes
 *          origin NUL lane(1) seq(8 BE) 's'   -> signature of the batch ending at seq:
 *                                                serial length(1) | certificate serial
 *                                                (hex) | signature
 *          (a signature record sorts right after its entry, so a chain scan
 *          sees each signed point where it falls)
 *   state  type NUL id NUL field              -> merge_field_encode() bytes
 *   index  'h' type NUL id NUL hlc(8 BE) origin NUL lane(1) seq(8 BE) -> stored_ms(8 BE)
 *          'c' type NUL id NUL field          -> "" (only while merge_conflict())
 *          'r' type NUL id                    -> ""
 *   meta   'F'                                -> format marker
 *          'H' origin NUL lane(1)             -> head seq(8 BE) | chain hash(32)
 *          'T'                                -> highest HLC (8 BE)
 *          'C'                                -> entries | records | conflicts (3 x 8 BE)
 *          'U' key                            -> a store_meta_put() value
 *
 * Guarantees (see store.h): store_apply checks everything before writing and
 * writes one RocksDB write batch, synced when asked; only the state column
 * family feeds the digest, and its bytes depend only on the set of entries
 * held (merge.h is order-free and canonical); the indexes and counters are
 * derived data written in the same batch.
 *
 * Heads, the highest HLC and the counters are cached in memory from open on
 * and updated only after a write batch succeeds.  store_apply keeps its
 * pending field states, records and chain heads in per-call overlays, so one
 * call may touch a field or a chain several times and reads its own writes.
 * The store is used from one thread at a time.
 */
#include "store.h"
#include "store_debug.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../node/crypto.h"
#include "../proto/codec.h"

/*
 * Memory: a site node with 100k entries must stay under 48 MiB RSS in total,
 * of which the shared libraries alone take about 16 MiB, so RocksDB gets a
 * small block cache and small memtables, capped together by
 * STORE_MEMTABLES_BYTES_MAX.  A catch-up batch is at most 1 MiB of entries
 * (about 2.5 MiB of keys and values written), so the oplog memtable still
 * holds a whole batch.  Measured with 100k entries of 300 bytes: about
 * 29 MiB anonymous memory; doubling these buys no throughput.
 */
#define STORE_CACHE_BYTES (4u << 20)
#define STORE_MEMTABLES_BYTES_MAX (8u << 20)
#define STORE_OPLOG_MEMTABLE_BYTES (4u << 20)
#define STORE_STATE_MEMTABLE_BYTES (2u << 20)
#define STORE_INDEX_MEMTABLE_BYTES (2u << 20)
#define STORE_META_MEMTABLE_BYTES (1u << 20)
/* 4 shards of 1 MiB: a filter or index partition always fits in one. */
#define STORE_CACHE_SHARD_BITS 2
/* Memtable bloom: 5% of each memtable's size. */
#define STORE_MEMTABLE_BLOOM_RATIO 0.05
/* Every CF's memtable data is in the WAL: bound what a restart replays. */
#define STORE_WAL_BYTES_MAX (32u << 20)
/* 1M entries are a few hundred MiB of 64 MiB tables: far below this. */
#define STORE_OPEN_FILES_MAX 256
/* RocksDB's own info LOG: warnings only, two small files. */
#define STORE_INFO_LOG_FILES 2
#define STORE_INFO_LOG_BYTES (1u << 20)
/* Two cores on the project's machines. */
#define STORE_BACKGROUND_JOBS 2
/* 10 bits per key: about 1% false positives for absent keys. */
#define STORE_BLOOM_BITS_PER_KEY 10.0

/* The longest key: a history key, 1 + 15 + 1 + 63 + 1 + 8 + 63 + 1 + 1 + 8. */
#define STORE_KEY_BYTES_MAX 256
/* A state key: type NUL id NUL field. */
#define STORE_STATE_KEY_BYTES_MAX (TS_TYPE_BYTES_MAX + 1 + TS_ID_BYTES_MAX + 1 + TS_FIELD_BYTES_MAX)
/* store_meta_put: names are short words, values membership lists or settings. */
#define STORE_META_KEY_BYTES_MAX 200
#define STORE_META_VALUE_BYTES_MAX (1u << 20)
/* store_digest hashes the state stream in chunks of this size. */
#define STORE_DIGEST_CHUNK_BYTES (64u * 1024)
/* codec_batch_sign_bytes: a tag, trial, origin, serial, lane, seq, hash. */
#define STORE_SIGN_BYTES_MAX 256
_Static_assert(CODEC_SIGN_BYTES_MAX <= STORE_SIGN_BYTES_MAX, "signed bytes fit the buffer");
/* A stored signature value: the serial's length, the serial, the signature. */
#define STORE_SIG_VALUE_BYTES_MAX (1 + TS_SERIAL_BYTES_MAX + TS_SIG_BYTES_MAX)

_Static_assert(1 + TS_TYPE_BYTES_MAX + 1 + TS_ID_BYTES_MAX + 1 + 8 + TS_ID_BYTES_MAX + 1 + 1 + 8
                   <= STORE_KEY_BYTES_MAX,
               "a history key must fit in a key buffer");
_Static_assert(1 + STORE_META_KEY_BYTES_MAX <= STORE_KEY_BYTES_MAX,
               "a meta key must fit in a key buffer");
_Static_assert(1 + TS_TYPE_BYTES_MAX + 1 + TS_ID_BYTES_MAX + 1 + STORE_PAGE_KEY_BYTES_MAX + 1
                   <= STORE_KEY_BYTES_MAX,
               "the longest paged prefix, a cursor and its 0 byte fit in a key buffer");
_Static_assert(STORE_STATE_KEY_BYTES_MAX + 1 < 256, "state key offsets fit in a byte");

enum store_cf {
    STORE_CF_DEFAULT,
    STORE_CF_OPLOG,
    STORE_CF_STATE,
    STORE_CF_INDEX,
    STORE_CF_META,
    STORE_CF_COUNT,
};

static const char *const store_cf_names[STORE_CF_COUNT] = {
    "default", "oplog", "state", "index", "meta",
};

enum {
    KEY_META_FORMAT = 'F',
    KEY_META_HEAD = 'H',
    KEY_META_HLC = 'T',
    KEY_META_COUNTERS = 'C',
    KEY_META_USER = 'U',
    KEY_INDEX_HISTORY = 'h',
    KEY_INDEX_CONFLICT = 'c',
    KEY_INDEX_RECORD = 'r',
    KEY_OPLOG_SIGNATURE = 's',
};

/* The head of one (origin, lane) chain as committed. */
struct head {
    char origin[TS_ID_BYTES_MAX + 1];
    uint8_t lane;
    uint64_t seq;
    uint8_t hash[TS_HASH_BYTES];
};

/* An entry applied earlier in the current store_apply call. */
struct pending {
    const uint8_t *bytes;  /* points into the caller's batch */
    size_t len;
    uint8_t hash[TS_HASH_BYTES];
};

/* A chain touched by the current store_apply call. */
struct apply_chain {
    char origin[TS_ID_BYTES_MAX + 1];
    uint8_t lane;
    uint64_t db_seq;                 /* committed head when the call started */
    uint64_t seq;                    /* head including this call's entries */
    uint8_t hash[TS_HASH_BYTES];
    struct pending *pending;         /* entries db_seq + 1 .. seq */
    size_t pending_count;
    size_t pending_cap;
};

/* A field state or a record met by the current store_apply call. */
struct ov_item {
    uint64_t hash;
    uint32_t slot;
    uint8_t klen;
    uint8_t id_off;
    uint8_t field_off;
    bool dirty;
    bool conflict_before;
    char key[STORE_STATE_KEY_BYTES_MAX + 1];  /* NUL-terminated copy of the key */
    struct field_state st;
};

/* Open addressing over items; slots hold item index + 1, 0 when empty. */
struct overlay {
    struct ov_item *items;
    size_t count;
    size_t cap;
    uint32_t *slots;
    size_t slots_cap;  /* a power of two */
};

/*
 * Keys collected during a call, written in key order at its end: RocksDB's
 * memtable inserts keys that arrive in order much faster than scattered ones.
 * Each key is stored as a length byte and the key.
 */
struct keylist {
    uint8_t *bytes;
    size_t len;
    size_t cap;
    const uint8_t **ptrs;  /* filled by keylist_sort */
    size_t count;
    size_t ptrs_cap;
};

struct store {
    char *dir;
    rocksdb_t *db;
    rocksdb_column_family_handle_t *cf[STORE_CF_COUNT];
    rocksdb_options_t *opts;
    rocksdb_options_t *cf_opts[STORE_CF_COUNT];
    rocksdb_cache_t *cache;
    rocksdb_readoptions_t *ro;
    rocksdb_writeoptions_t *wo_sync;
    rocksdb_writeoptions_t *wo_nosync;

    /* Committed metadata, cached. */
    struct head *heads;  /* sorted by (origin, lane) */
    size_t heads_count;
    size_t heads_cap;
    uint64_t hlc_max;
    uint64_t entries;
    uint64_t records;
    uint64_t conflicts;
    uint32_t format_version;   /* after open: always STORE_FORMAT_VERSION */
    /* The first write RocksDB failed (a sync, ENOSPC): "" while none has.
     * Sticky: after a failed sync the pages it covered may be gone, so no
     * later write of this process is trusted (store_health). */
    char write_failure[sizeof(((struct ts_error *)0)->msg)];

    /* store_apply scratch, kept between calls to save allocations. */
    rocksdb_writebatch_t *wb;
    struct apply_chain *chains;
    size_t chains_count;
    size_t chains_cap;
    struct overlay states;
    struct overlay recs;
    struct keylist history;
    struct ov_item **sorted;   /* overlay items to write, in key order */
    size_t sorted_cap;
    store_entry_check_fn entry_check;  /* see store_set_entry_check */
    void *entry_check_ctx;
};

/* ---- small helpers ---- */

static const char *lane_name(uint8_t lane)
{
    switch (lane) {
    case LANE_SAFETY: return "safety";
    case LANE_BULK: return "bulk";
    }
    return "unknown-lane";
}

static void be64_put(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* A key being built; every append checks the bound. */
struct key {
    uint8_t b[STORE_KEY_BYTES_MAX];
    size_t len;
};

static bool key_bytes(struct key *k, const void *p, size_t n)
{
    if (n > sizeof(k->b) - k->len)
        return false;
    memcpy(k->b + k->len, p, n);
    k->len += n;
    return true;
}

static bool key_u8(struct key *k, uint8_t v)
{
    return key_bytes(k, &v, 1);
}

static bool key_u64(struct key *k, uint64_t v)
{
    uint8_t b[8];
    be64_put(b, v);
    return key_bytes(k, b, 8);
}

/* Appends s without its NUL; s is bounded by max (else false). */
static bool key_str(struct key *k, const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n > max)
        return false;
    return key_bytes(k, s, n);
}

/* Appends s and a NUL separator. */
static bool key_str0(struct key *k, const char *s, size_t max)
{
    return key_str(k, s, max) && key_u8(k, 0);
}

static bool key_oplog(struct key *k, const char *origin, uint8_t lane, uint64_t seq)
{
    k->len = 0;
    return key_str0(k, origin, TS_ID_BYTES_MAX) && key_u8(k, lane) && key_u64(k, seq);
}

static bool key_state(struct key *k, const char *type, const char *id, const char *field)
{
    k->len = 0;
    return key_str0(k, type, TS_TYPE_BYTES_MAX) && key_str0(k, id, TS_ID_BYTES_MAX) &&
           key_str(k, field, TS_FIELD_BYTES_MAX);
}

static bool key_head(struct key *k, const char *origin, uint8_t lane)
{
    k->len = 0;
    return key_u8(k, KEY_META_HEAD) && key_str0(k, origin, TS_ID_BYTES_MAX) && key_u8(k, lane);
}

/* The bytes of a valid id or type: 1..max chars, NUL-terminated in its array. */
static bool str_ok(const char *s, size_t max)
{
    if (s == NULL || s[0] == '\0')
        return false;
    return strnlen(s, max + 1) <= max;
}

/*
 * Converts a RocksDB errptr into a ts_err code and message and frees it.
 */
static int rdb_error(const struct store *s, char *errptr, const char *what, struct ts_error *err)
{
    int code = TS_ERR_IO;
    if (strstr(errptr, "No space left") != NULL)
        code = TS_ERR_DISKFULL;
    else if (strstr(errptr, "Corruption") != NULL)
        code = TS_ERR_CORRUPT;
    ts_error_set(err, code, "store %s: %s: %s", s->dir, what, errptr);
    rocksdb_free(errptr);
    return code;
}

/* rdb_error for a write: the store remembers the first one (store_health). */
static int rdb_write_error(struct store *s, char *errptr, const char *what, struct ts_error *err)
{
    int code = rdb_error(s, errptr, what, err);
    if (s->write_failure[0] == '\0')
        snprintf(s->write_failure, sizeof(s->write_failure), "%s", err->msg);
    return code;
}

static void hex8(const uint8_t *h, char out[17])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++) {
        out[2 * i] = digits[h[i] >> 4];
        out[2 * i + 1] = digits[h[i] & 15];
    }
    out[16] = '\0';
}

/*
 * A pinned point read.  Returns 1 with *ps set (destroy it), 0 when absent,
 * or a negative code with err filled.
 */
static int rdb_get(struct store *s, enum store_cf cf, const struct key *k,
                   rocksdb_pinnableslice_t **ps, struct ts_error *err)
{
    char *errptr = NULL;
    *ps = rocksdb_get_pinned_cf(s->db, s->ro, s->cf[cf], (const char *)k->b, k->len, &errptr);
    if (errptr != NULL)
        return rdb_error(s, errptr, "read", err);
    return *ps != NULL ? 1 : 0;
}

/* A prefix scan: an iterator bounded to keys starting with prefix. */
struct scan {
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it;
    struct key upper;
    bool bounded;
};

/*
 * Opens a scan of cf over keys starting with prefix (all keys when plen is
 * 0), positioned at start (or at the prefix when start is NULL).
 */
static void scan_open(struct scan *sc, struct store *s, enum store_cf cf, const uint8_t *prefix,
                      size_t plen, const struct key *start)
{
    sc->ro = rocksdb_readoptions_create();
    sc->bounded = false;
    sc->upper.len = 0;
    /* The upper bound is the prefix with its last non-0xff byte incremented. */
    if (plen > 0) {
        memcpy(sc->upper.b, prefix, plen);
        size_t n = plen;
        while (n > 0 && sc->upper.b[n - 1] == 0xff)
            n--;
        if (n > 0) {
            sc->upper.b[n - 1]++;
            sc->upper.len = n;
            sc->bounded = true;
            rocksdb_readoptions_set_iterate_upper_bound(sc->ro, (const char *)sc->upper.b,
                                                        sc->upper.len);
        }
    }
    sc->it = rocksdb_create_iterator_cf(s->db, sc->ro, s->cf[cf]);
    if (start != NULL)
        rocksdb_iter_seek(sc->it, (const char *)start->b, start->len);
    else if (plen > 0)
        rocksdb_iter_seek(sc->it, (const char *)prefix, plen);
    else
        rocksdb_iter_seek_to_first(sc->it);
}

static bool scan_valid(struct scan *sc, const uint8_t *prefix, size_t plen)
{
    if (!rocksdb_iter_valid(sc->it))
        return false;
    if (!sc->bounded && plen > 0) {
        size_t klen;
        const char *k = rocksdb_iter_key(sc->it, &klen);
        return klen >= plen && memcmp(k, prefix, plen) == 0;
    }
    return true;
}

/* Closes the scan; returns 0 or the iterator's error. */
static int scan_close(struct scan *sc, struct store *s, struct ts_error *err)
{
    char *errptr = NULL;
    rocksdb_iter_get_error(sc->it, &errptr);
    rocksdb_iter_destroy(sc->it);
    rocksdb_readoptions_destroy(sc->ro);
    if (errptr != NULL)
        return rdb_error(s, errptr, "scan", err);
    return 0;
}

/* ---- heads cache ---- */

static int head_cmp(const char *origin_a, uint8_t lane_a, const char *origin_b, uint8_t lane_b)
{
    int c = strcmp(origin_a, origin_b);
    if (c != 0)
        return c;
    return (int)lane_a - (int)lane_b;
}

/* Index of (origin, lane) in s->heads, or -(insertion point) - 1. */
static ptrdiff_t heads_find(const struct store *s, const char *origin, uint8_t lane)
{
    size_t lo = 0;
    size_t hi = s->heads_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = head_cmp(s->heads[mid].origin, s->heads[mid].lane, origin, lane);
        if (c == 0)
            return (ptrdiff_t)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -(ptrdiff_t)lo - 1;
}

static int heads_reserve(struct store *s, size_t want)
{
    if (want <= s->heads_cap)
        return 0;
    size_t cap = s->heads_cap ? s->heads_cap : 16;
    while (cap < want)
        cap *= 2;
    struct head *h = realloc(s->heads, cap * sizeof(*h));
    if (h == NULL)
        return TS_ERR_NOMEM;
    s->heads = h;
    s->heads_cap = cap;
    return 0;
}

/* Sets a head; the capacity must have been reserved. */
static void heads_set(struct store *s, const char *origin, uint8_t lane, uint64_t seq,
                      const uint8_t hash[TS_HASH_BYTES])
{
    ptrdiff_t i = heads_find(s, origin, lane);
    if (i < 0) {
        size_t at = (size_t)(-i - 1);
        assert(s->heads_count < s->heads_cap);
        memmove(&s->heads[at + 1], &s->heads[at], (s->heads_count - at) * sizeof(s->heads[0]));
        s->heads_count++;
        i = (ptrdiff_t)at;
        memset(&s->heads[i], 0, sizeof(s->heads[i]));
        memcpy(s->heads[i].origin, origin, strlen(origin) + 1);
        s->heads[i].lane = lane;
    }
    assert(seq >= s->heads[i].seq);
    s->heads[i].seq = seq;
    memcpy(s->heads[i].hash, hash, TS_HASH_BYTES);
}

/* ---- overlays ---- */

static uint64_t fnv1a(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static int overlay_grow_slots(struct overlay *ov)
{
    size_t cap = ov->slots_cap ? ov->slots_cap * 2 : 256;
    uint32_t *slots = calloc(cap, sizeof(*slots));
    if (slots == NULL)
        return TS_ERR_NOMEM;
    for (size_t i = 0; i < ov->count; i++) {
        size_t at = (size_t)ov->items[i].hash & (cap - 1);
        while (slots[at] != 0)
            at = (at + 1) & (cap - 1);
        slots[at] = (uint32_t)(i + 1);
        ov->items[i].slot = (uint32_t)at;
    }
    free(ov->slots);
    ov->slots = slots;
    ov->slots_cap = cap;
    return 0;
}

/*
 * Finds the item of key, or adds it (*created true, st zeroed).  Returns the
 * item's index or a negative code.  Indexes stay valid while items grow.
 */
static ptrdiff_t overlay_get(struct overlay *ov, const struct key *k, bool *created)
{
    assert(k->len <= STORE_STATE_KEY_BYTES_MAX);
    *created = false;
    if ((ov->count + 1) * 2 > ov->slots_cap) {
        if (overlay_grow_slots(ov) != 0)
            return TS_ERR_NOMEM;
    }
    uint64_t h = fnv1a(k->b, k->len);
    size_t at = (size_t)h & (ov->slots_cap - 1);
    while (ov->slots[at] != 0) {
        struct ov_item *it = &ov->items[ov->slots[at] - 1];
        if (it->hash == h && it->klen == k->len && memcmp(it->key, k->b, k->len) == 0)
            return (ptrdiff_t)(ov->slots[at] - 1);
        at = (at + 1) & (ov->slots_cap - 1);
    }
    if (ov->count == ov->cap) {
        size_t cap = ov->cap ? ov->cap * 2 : 64;
        struct ov_item *items = realloc(ov->items, cap * sizeof(*items));
        if (items == NULL)
            return TS_ERR_NOMEM;
        ov->items = items;
        ov->cap = cap;
    }
    struct ov_item *it = &ov->items[ov->count];
    memset(it, 0, offsetof(struct ov_item, key));
    memset(&it->st, 0, sizeof(it->st));
    it->hash = h;
    it->slot = (uint32_t)at;
    it->klen = (uint8_t)k->len;
    memcpy(it->key, k->b, k->len);
    it->key[k->len] = '\0';
    ov->slots[at] = (uint32_t)(ov->count + 1);
    *created = true;
    return (ptrdiff_t)ov->count++;
}

/* Empties the overlay in O(items), keeping its memory. */
static void overlay_reset(struct overlay *ov)
{
    for (size_t i = 0; i < ov->count; i++) {
        field_state_release(&ov->items[i].st);
        ov->slots[ov->items[i].slot] = 0;
    }
    ov->count = 0;
}

static void overlay_free(struct overlay *ov)
{
    overlay_reset(ov);
    free(ov->items);
    free(ov->slots);
    memset(ov, 0, sizeof(*ov));
}

static int keylist_add(struct keylist *kl, const struct key *k)
{
    assert(k->len <= UINT8_MAX);
    if (k->len + 1 > kl->cap - kl->len) {
        size_t cap = kl->cap ? kl->cap * 2 : 64 * 1024;
        while (cap - kl->len < k->len + 1)
            cap *= 2;
        uint8_t *b = realloc(kl->bytes, cap);
        if (b == NULL)
            return TS_ERR_NOMEM;
        kl->bytes = b;
        kl->cap = cap;
    }
    kl->bytes[kl->len] = (uint8_t)k->len;
    memcpy(kl->bytes + kl->len + 1, k->b, k->len);
    kl->len += k->len + 1;
    kl->count++;
    return 0;
}

static int key_ptr_cmp(const void *pa, const void *pb)
{
    const uint8_t *a = *(const uint8_t *const *)pa;
    const uint8_t *b = *(const uint8_t *const *)pb;
    size_t n = a[0] < b[0] ? a[0] : b[0];
    int c = memcmp(a + 1, b + 1, n);
    if (c != 0)
        return c;
    return (int)a[0] - (int)b[0];
}

/* Points ptrs at every key, in key order. */
static int keylist_sort(struct keylist *kl)
{
    if (kl->count > kl->ptrs_cap) {
        const uint8_t **p = realloc(kl->ptrs, kl->count * sizeof(*p));
        if (p == NULL)
            return TS_ERR_NOMEM;
        kl->ptrs = p;
        kl->ptrs_cap = kl->count;
    }
    size_t off = 0;
    for (size_t i = 0; i < kl->count; i++) {
        kl->ptrs[i] = kl->bytes + off;
        off += 1 + (size_t)kl->bytes[off];
    }
    assert(off == kl->len);
    /* No keys (a batch of entries all held already): ptrs may still be NULL,
     * which qsort must not be given even for 0 elements. */
    if (kl->count > 1)
        qsort(kl->ptrs, kl->count, sizeof(kl->ptrs[0]), key_ptr_cmp);
    return 0;
}

static void keylist_reset(struct keylist *kl)
{
    kl->len = 0;
    kl->count = 0;
}

static void keylist_free(struct keylist *kl)
{
    free(kl->bytes);
    free(kl->ptrs);
    memset(kl, 0, sizeof(*kl));
}

static int ov_item_cmp(const void *pa, const void *pb)
{
    const struct ov_item *a = *(const struct ov_item *const *)pa;
    const struct ov_item *b = *(const struct ov_item *const *)pb;
    size_t n = a->klen < b->klen ? a->klen : b->klen;
    int c = memcmp(a->key, b->key, n);
    if (c != 0)
        return c;
    return (int)a->klen - (int)b->klen;
}

/* Points s->sorted at the dirty items of ov in key order; returns how many. */
static ptrdiff_t overlay_sorted_dirty(struct store *s, struct overlay *ov)
{
    if (ov->count > s->sorted_cap) {
        struct ov_item **p = realloc(s->sorted, ov->count * sizeof(*p));
        if (p == NULL)
            return TS_ERR_NOMEM;
        s->sorted = p;
        s->sorted_cap = ov->count;
    }
    size_t n = 0;
    for (size_t i = 0; i < ov->count; i++) {
        if (ov->items[i].dirty)
            s->sorted[n++] = &ov->items[i];
    }
    if (n > 1)  /* s->sorted may be NULL while nothing was ever dirty */
        qsort(s->sorted, n, sizeof(s->sorted[0]), ov_item_cmp);
    return (ptrdiff_t)n;
}

/* ---- open / close ---- */

enum dir_kind {
    DIR_NEW,       /* missing or empty: create a store */
    DIR_EXISTING,  /* holds a RocksDB database */
};

static int dir_inspect(const char *dir, enum dir_kind *kind, struct ts_error *err)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno == ENOENT) {
            *kind = DIR_NEW;
            return 0;
        }
        return ts_error_set(err, TS_ERR_IO, "store %s: %s", dir, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return ts_error_set(err, TS_ERR_INVALID, "store %s is not a directory", dir);

    size_t n = strlen(dir);
    char *current = malloc(n + sizeof("/CURRENT"));
    if (current == NULL)
        return ts_error_set(err, TS_ERR_NOMEM, "store %s: out of memory", dir);
    memcpy(current, dir, n);
    memcpy(current + n, "/CURRENT", sizeof("/CURRENT"));
    int has_current = stat(current, &st) == 0;
    free(current);
    if (has_current) {
        *kind = DIR_EXISTING;
        return 0;
    }

    DIR *d = opendir(dir);
    if (d == NULL)
        return ts_error_set(err, TS_ERR_IO, "store %s: %s", dir, strerror(errno));
    struct dirent *de;
    char other[256] = "";
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(other, sizeof(other), "%s", de->d_name);
        break;
    }
    closedir(d);
    if (other[0] != '\0')
        return ts_error_set(err, TS_ERR_INVALID,
                            "store %s is not a trialsync store: the directory holds other "
                            "files (%s) and no database",
                            dir, other);
    *kind = DIR_NEW;
    return 0;
}

static void options_build(struct store *s)
{
    /*
     * Few shards: with the default 16 shards of a small cache, one shard is
     * smaller than a big table's filter, which is then read from disk again
     * on every Get.
     */
    rocksdb_lru_cache_options_t *lru = rocksdb_lru_cache_options_create();
    rocksdb_lru_cache_options_set_capacity(lru, STORE_CACHE_BYTES);
    rocksdb_lru_cache_options_set_num_shard_bits(lru, STORE_CACHE_SHARD_BITS);
    s->cache = rocksdb_cache_create_lru_opts(lru);
    rocksdb_lru_cache_options_destroy(lru);

    rocksdb_block_based_table_options_t *bbto = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(bbto, s->cache);
    /* The table options own the filter policy. */
    rocksdb_block_based_options_set_filter_policy(
        bbto, rocksdb_filterpolicy_create_bloom_full(STORE_BLOOM_BITS_PER_KEY));
    /*
     * Index and filter blocks live in the cache, so memory stays bounded
     * whatever the data size; partitioned, so each piece is small and the
     * cache keeps the hot ones (most Gets during apply are for absent keys
     * and stop at the filter).
     */
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(bbto, 1);
    rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(bbto, 1);
    rocksdb_block_based_options_set_index_type(
        bbto, rocksdb_block_based_table_index_type_two_level_index_search);
    rocksdb_block_based_options_set_partition_filters(bbto, 1);
    rocksdb_block_based_options_set_pin_top_level_index_and_filter(bbto, 1);
    rocksdb_block_based_options_set_format_version(bbto, 5);

    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_options_set_create_missing_column_families(o, 1);
    rocksdb_options_set_max_background_jobs(o, STORE_BACKGROUND_JOBS);
    rocksdb_options_set_max_open_files(o, STORE_OPEN_FILES_MAX);
    rocksdb_options_set_keep_log_file_num(o, STORE_INFO_LOG_FILES);
    rocksdb_options_set_max_log_file_size(o, STORE_INFO_LOG_BYTES);
    rocksdb_options_set_info_log_level(o, 2 /* WARN */);
    rocksdb_options_set_stats_dump_period_sec(o, 0);
    rocksdb_options_set_db_write_buffer_size(o, STORE_MEMTABLES_BYTES_MAX);
    rocksdb_options_set_max_total_wal_size(o, STORE_WAL_BYTES_MAX);
    rocksdb_options_set_max_write_buffer_number(o, 2);
    rocksdb_options_set_compression(o, rocksdb_lz4_compression);
    rocksdb_options_set_level_compaction_dynamic_level_bytes(o, 1);
    /* Absent keys are the common case in apply: a memtable bloom answers them. */
    rocksdb_options_set_memtable_prefix_bloom_size_ratio(o, STORE_MEMTABLE_BLOOM_RATIO);
    rocksdb_options_set_memtable_whole_key_filtering(o, 1);
    rocksdb_options_set_block_based_table_factory(o, bbto);
    rocksdb_block_based_options_destroy(bbto);
    s->opts = o;

    static const size_t memtable_bytes[STORE_CF_COUNT] = {
        [STORE_CF_DEFAULT] = STORE_META_MEMTABLE_BYTES,
        [STORE_CF_OPLOG] = STORE_OPLOG_MEMTABLE_BYTES,
        [STORE_CF_STATE] = STORE_STATE_MEMTABLE_BYTES,
        [STORE_CF_INDEX] = STORE_INDEX_MEMTABLE_BYTES,
        [STORE_CF_META] = STORE_META_MEMTABLE_BYTES,
    };
    for (int i = 0; i < STORE_CF_COUNT; i++) {
        s->cf_opts[i] = rocksdb_options_create_copy(o);
        rocksdb_options_set_write_buffer_size(s->cf_opts[i], memtable_bytes[i]);
    }

    s->ro = rocksdb_readoptions_create();
    s->wo_sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(s->wo_sync, 1);
    s->wo_nosync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(s->wo_nosync, 0);
    s->wb = rocksdb_writebatch_create();
}

/* An existing database must have every column family of a trialsync store. */
static int check_column_families(struct store *s, struct ts_error *err)
{
    char *errptr = NULL;
    size_t n = 0;
    char **names = rocksdb_list_column_families(s->opts, s->dir, &n, &errptr);
    if (errptr != NULL) {
        ts_error_set(err, TS_ERR_INVALID, "store %s is not a trialsync store: %s", s->dir, errptr);
        rocksdb_free(errptr);
        return TS_ERR_INVALID;
    }
    int rc = 0;
    for (int i = STORE_CF_OPLOG; i < STORE_CF_COUNT && rc == 0; i++) {
        bool found = false;
        for (size_t j = 0; j < n; j++)
            found = found || strcmp(names[j], store_cf_names[i]) == 0;
        if (!found)
            rc = ts_error_set(err, TS_ERR_INVALID,
                              "store %s is not a trialsync store: a RocksDB database "
                              "without the '%s' column family",
                              s->dir, store_cf_names[i]);
    }
    rocksdb_list_column_families_destroy(names, n);
    return rc;
}

static int open_error(struct store *s, char *errptr, struct ts_error *err)
{
    int rc;
    /* RocksDB says "While lock file" (other process) or "lock hold by current process". */
    if (strstr(errptr, "lock") != NULL || strstr(errptr, "Lock") != NULL) {
        rc = ts_error_set(err, TS_ERR_IO,
                          "store %s is in use by another process (or opened twice): %s",
                          s->dir, errptr);
        rocksdb_free(errptr);
        return rc;
    }
    return rdb_error(s, errptr, "cannot open", err);
}

/*
 * Store formats.  The format marker ('F') is STORE_FORMAT_PREFIX followed by
 * the format number in decimal.  store_open moves an older store forward one
 * step at a time (each step is one synced write batch that also writes the
 * next marker, so a crash leaves a store at one whole format or the next);
 * a store newer than STORE_FORMAT_VERSION is refused, and so is one older
 * than STORE_FORMAT_VERSION_MIN (no step from it is known any more).
 *
 *   v1  the first release: the counters record ('C') is written with the
 *       first applied entry, so an empty store has none.
 *   v2  the counters record is always present (written at creation); the
 *       step from v1 recounts it from the column families.
 */
static const char STORE_FORMAT_PREFIX[] = "trialsync-store-v";
#define STORE_FORMAT_VERSION 2u
#define STORE_FORMAT_VERSION_MIN 1u
/* "trialsync-store-v" and up to 10 digits. */
#define STORE_FORMAT_BYTES_MAX 32
_Static_assert(STORE_FORMAT_VERSION_MIN >= 1 && STORE_FORMAT_VERSION_MIN <= STORE_FORMAT_VERSION,
               "the oldest format migrated from is a released one, not newer than the current");

/* The marker of format version into out (NUL-terminated); its length. */
static size_t format_marker(uint32_t version, char out[STORE_FORMAT_BYTES_MAX])
{
    int n = snprintf(out, STORE_FORMAT_BYTES_MAX, "%s%" PRIu32, STORE_FORMAT_PREFIX, version);
    assert(n > 0 && n < STORE_FORMAT_BYTES_MAX);
    return (size_t)n;
}

/* Parses a marker; false when it is not "trialsync-store-v<N>", N >= 1. */
static bool format_parse(const char *v, size_t vlen, uint32_t *version)
{
    size_t plen = strlen(STORE_FORMAT_PREFIX);
    if (vlen <= plen || vlen > plen + 10 || memcmp(v, STORE_FORMAT_PREFIX, plen) != 0)
        return false;
    uint64_t n = 0;
    for (size_t i = plen; i < vlen; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    if (n == 0 || n > UINT32_MAX || v[plen] == '0')
        return false;
    *version = (uint32_t)n;
    return true;
}

/* Counts the keys of cf (with prefix, when plen > 0) that keep(key) accepts. */
static int count_keys(struct store *s, enum store_cf cf, const uint8_t *prefix, size_t plen,
                      bool (*keep)(const char *k, size_t klen), uint64_t *out,
                      struct ts_error *err)
{
    struct scan sc;
    *out = 0;
    scan_open(&sc, s, cf, prefix, plen, NULL);
    for (; scan_valid(&sc, prefix, plen); rocksdb_iter_next(sc.it)) {
        size_t klen;
        const char *k = rocksdb_iter_key(sc.it, &klen);
        if (keep == NULL || keep(k, klen))
            (*out)++;
    }
    return scan_close(&sc, s, err);
}

/* An oplog key of an entry (or a hole), not of a signature record. */
static bool oplog_key_is_entry(const char *k, size_t klen)
{
    size_t olen = strnlen(k, klen);
    return olen < klen && klen == olen + 1 + 1 + 8;
}

/* v1 -> v2: writes the counters record, recounted from the column families. */
static int migrate_v1_v2(struct store *s, rocksdb_writebatch_t *wb, struct ts_error *err)
{
    uint64_t entries, records, conflicts;
    uint8_t pr = KEY_INDEX_RECORD, pc = KEY_INDEX_CONFLICT;
    int rc = count_keys(s, STORE_CF_OPLOG, NULL, 0, oplog_key_is_entry, &entries, err);
    if (rc == 0)
        rc = count_keys(s, STORE_CF_INDEX, &pr, 1, NULL, &records, err);
    if (rc == 0)
        rc = count_keys(s, STORE_CF_INDEX, &pc, 1, NULL, &conflicts, err);
    if (rc != 0)
        return rc;
    uint8_t kb = KEY_META_COUNTERS;
    uint8_t v[24];
    be64_put(v, entries);
    be64_put(v + 8, records);
    be64_put(v + 16, conflicts);
    rocksdb_writebatch_put_cf(wb, s->cf[STORE_CF_META], (const char *)&kb, 1, (const char *)v,
                              sizeof(v));
    return 0;
}

/* One step from format `from` to from + 1: adds its writes to wb. */
typedef int (*store_migrate_fn)(struct store *s, rocksdb_writebatch_t *wb, struct ts_error *err);

/* Indexed by the format migrated from; [v] moves v to v + 1. */
static const store_migrate_fn store_migrations[STORE_FORMAT_VERSION] = {
    [1] = migrate_v1_v2,
};

/* Moves the store from format `from` to STORE_FORMAT_VERSION, step by step. */
static int store_migrate(struct store *s, uint32_t from, struct ts_error *err)
{
    assert(from >= STORE_FORMAT_VERSION_MIN);
    assert(from < STORE_FORMAT_VERSION);
    for (uint32_t v = from; v < STORE_FORMAT_VERSION; v++) {
        assert(store_migrations[v] != NULL);
        rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
        int rc = store_migrations[v](s, wb, err);
        if (rc == 0) {
            char marker[STORE_FORMAT_BYTES_MAX];
            size_t mlen = format_marker(v + 1, marker);
            uint8_t kb = KEY_META_FORMAT;
            rocksdb_writebatch_put_cf(wb, s->cf[STORE_CF_META], (const char *)&kb, 1, marker,
                                      mlen);
            char *errptr = NULL;
            rocksdb_write(s->db, s->wo_sync, wb, &errptr);
            if (errptr != NULL)
                rc = rdb_error(s, errptr, "migrate the store format", err);
        }
        rocksdb_writebatch_destroy(wb);
        if (rc != 0) {
            char why[sizeof(err->msg)];
            snprintf(why, sizeof(why), "%s", err->msg);
            return ts_error_set(err, rc, "store %s: migrating format v%" PRIu32 " to v%" PRIu32
                                " failed (the store stays at v%" PRIu32 "): %s",
                                s->dir, v, v + 1, v, why);
        }
    }
    return 0;
}

/*
 * Reads the format marker: writes it (and the zero counters) into a new
 * store, migrates an older store forward (writable opens only), refuses a
 * newer or unknown one.
 */
static int load_format(struct store *s, bool created, bool readonly, struct ts_error *err)
{
    struct key k = {.len = 0};
    key_u8(&k, KEY_META_FORMAT);
    rocksdb_pinnableslice_t *ps;
    int rc = rdb_get(s, STORE_CF_META, &k, &ps, err);
    if (rc < 0)
        return rc;
    char marker[STORE_FORMAT_BYTES_MAX];
    if (rc == 0) {
        if (!created)
            return ts_error_set(err, TS_ERR_INVALID,
                                "store %s is not a trialsync store: no format marker", s->dir);
        assert(!readonly);
        size_t mlen = format_marker(STORE_FORMAT_VERSION, marker);
        uint8_t kc = KEY_META_COUNTERS;
        uint8_t zeros[24] = {0};
        rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
        rocksdb_writebatch_put_cf(wb, s->cf[STORE_CF_META], (const char *)k.b, k.len, marker,
                                  mlen);
        rocksdb_writebatch_put_cf(wb, s->cf[STORE_CF_META], (const char *)&kc, 1,
                                  (const char *)zeros, sizeof(zeros));
        char *errptr = NULL;
        rocksdb_write(s->db, s->wo_sync, wb, &errptr);
        rocksdb_writebatch_destroy(wb);
        if (errptr != NULL)
            return rdb_error(s, errptr, "write format marker", err);
        s->format_version = STORE_FORMAT_VERSION;
        return 0;
    }
    size_t vlen;
    const char *v = rocksdb_pinnableslice_value(ps, &vlen);
    uint32_t version = 0;
    bool ok = format_parse(v, vlen, &version);
    char seen[64];
    snprintf(seen, sizeof(seen), "%.*s", (int)(vlen < 40 ? vlen : 40), v);
    rocksdb_pinnableslice_destroy(ps);
    if (!ok)
        return ts_error_set(err, TS_ERR_INVALID,
                            "store %s has format '%s'; this trialsync reads '%s%u' to '%s%u'",
                            s->dir, seen, STORE_FORMAT_PREFIX, STORE_FORMAT_VERSION_MIN,
                            STORE_FORMAT_PREFIX, STORE_FORMAT_VERSION);
    if (version > STORE_FORMAT_VERSION)
        return ts_error_set(err, TS_ERR_INVALID,
                            "store %s has format v%" PRIu32 ", newer than this trialsync "
                            "(formats v%u to v%u): it was written by a later release; run "
                            "that release (or restore a backup taken before the upgrade)",
                            s->dir, version, STORE_FORMAT_VERSION_MIN, STORE_FORMAT_VERSION);
    if (version < STORE_FORMAT_VERSION_MIN)
        return ts_error_set(err, TS_ERR_INVALID,
                            "store %s has format v%" PRIu32 ", older than this trialsync can "
                            "migrate (formats v%u to v%u): upgrade through an intermediate "
                            "release first",
                            s->dir, version, STORE_FORMAT_VERSION_MIN, STORE_FORMAT_VERSION);
    if (version < STORE_FORMAT_VERSION) {
        if (readonly)
            return ts_error_set(err, TS_ERR_INVALID,
                                "store %s has format v%" PRIu32 " and must be migrated to v%u "
                                "first: start the node (or run 'trialsync verify') once with "
                                "this trialsync",
                                s->dir, version, STORE_FORMAT_VERSION);
        rc = store_migrate(s, version, err);
        if (rc != 0)
            return rc;
    }
    s->format_version = STORE_FORMAT_VERSION;
    return 0;
}

/* Reads the format marker, the heads, the highest HLC and the counters. */
static int load_meta(struct store *s, bool created, bool readonly, struct ts_error *err)
{
    int rc = load_format(s, created, readonly, err);
    if (rc != 0)
        return rc;
    struct key k;
    rocksdb_pinnableslice_t *ps;

    k.len = 0;
    key_u8(&k, KEY_META_HLC);
    rc = rdb_get(s, STORE_CF_META, &k, &ps, err);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        size_t vlen;
        const char *v = rocksdb_pinnableslice_value(ps, &vlen);
        if (vlen == 8)
            s->hlc_max = be64_get((const uint8_t *)v);
        rocksdb_pinnableslice_destroy(ps);
        if (vlen != 8)
            return ts_error_set(err, TS_ERR_CORRUPT, "store %s: highest HLC record is corrupt",
                                s->dir);
    }

    k.len = 0;
    key_u8(&k, KEY_META_COUNTERS);
    rc = rdb_get(s, STORE_CF_META, &k, &ps, err);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        size_t vlen;
        const uint8_t *v = (const uint8_t *)rocksdb_pinnableslice_value(ps, &vlen);
        if (vlen == 24) {
            s->entries = be64_get(v);
            s->records = be64_get(v + 8);
            s->conflicts = be64_get(v + 16);
        }
        rocksdb_pinnableslice_destroy(ps);
        if (vlen != 24)
            return ts_error_set(err, TS_ERR_CORRUPT, "store %s: counters record is corrupt",
                                s->dir);
    } else {
        /* Format v2 writes the counters at creation: their absence is damage. */
        return ts_error_set(err, TS_ERR_CORRUPT, "store %s: counters record is missing",
                            s->dir);
    }

    uint8_t prefix = KEY_META_HEAD;
    struct scan sc;
    scan_open(&sc, s, STORE_CF_META, &prefix, 1, NULL);
    rc = 0;
    for (; rc == 0 && scan_valid(&sc, &prefix, 1); rocksdb_iter_next(sc.it)) {
        size_t klen, vlen;
        const char *key = rocksdb_iter_key(sc.it, &klen);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(sc.it, &vlen);
        const char *origin = key + 1;
        size_t olen = strnlen(origin, klen - 1);
        if (olen == 0 || olen > TS_ID_BYTES_MAX || klen != 1 + olen + 2 ||
            vlen != 8 + TS_HASH_BYTES) {
            rc = ts_error_set(err, TS_ERR_CORRUPT, "store %s: a chain head record is corrupt",
                              s->dir);
            break;
        }
        rc = heads_reserve(s, s->heads_count + 1);
        if (rc != 0) {
            ts_error_set(err, rc, "store %s: out of memory", s->dir);
            break;
        }
        /* Keys come sorted by (origin, lane): append. */
        struct head *h = &s->heads[s->heads_count++];
        memset(h, 0, sizeof(*h));
        memcpy(h->origin, origin, olen);
        h->lane = (uint8_t)key[1 + olen + 1];
        h->seq = be64_get(v);
        memcpy(h->hash, v + 8, TS_HASH_BYTES);
    }
    int rc2 = scan_close(&sc, s, err);
    return rc != 0 ? rc : rc2;
}

/*
 * Makes dir (created here when missing) mode 0700 and every file in it mode
 * 0600: the store holds patient data and nobody but the node's user reads
 * it.  An existing directory or file with wider modes is tightened rather
 * than refused, so a store made before this rule (or copied in with cp) is
 * fixed on its next open; one this user cannot chmod is refused.  Files
 * RocksDB creates later get the process umask: trialsyncd sets 077.
 */
static int dir_secure(const char *dir, struct ts_error *err)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return ts_error_set(err, TS_ERR_IO, "store %s: cannot create it: %s", dir,
                            strerror(errno));
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return ts_error_set(err, TS_ERR_IO, "store %s: %s", dir, strerror(errno));
    int rc = 0;
    struct stat st;
    if (fstat(dfd, &st) != 0) {
        rc = ts_error_set(err, TS_ERR_IO, "store %s: %s", dir, strerror(errno));
        goto out_close_dir;
    }
    if ((st.st_mode & 077) != 0 && fchmod(dfd, 0700) != 0) {
        rc = ts_error_set(err, TS_ERR_PERM,
                          "store %s has mode 0%03o and cannot be made 0700: %s (chmod 700 %s)",
                          dir, (unsigned)(st.st_mode & 07777), strerror(errno), dir);
        goto out_close_dir;
    }
    DIR *d = fdopendir(dup(dfd));
    if (d == NULL) {
        rc = ts_error_set(err, TS_ERR_IO, "store %s: %s", dir, strerror(errno));
        goto out_close_dir;
    }
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
            (st.st_mode & 077) == 0)
            continue;
        if (fchmodat(dfd, de->d_name, 0600, 0) != 0)
            rc = ts_error_set(err, TS_ERR_PERM,
                              "store file %s/%s has mode 0%03o and cannot be made 0600: %s",
                              dir, de->d_name, (unsigned)(st.st_mode & 07777),
                              strerror(errno));
    }
    closedir(d);
out_close_dir:
    close(dfd);
    return rc;
}

int store_open(const char *dir, struct store **out, struct ts_error *err)
{
    *out = NULL;
    if (dir == NULL || dir[0] == '\0')
        return ts_error_set(err, TS_ERR_INVALID, "store: no directory given");

    enum dir_kind kind;
    int rc = dir_inspect(dir, &kind, err);
    if (rc != 0)
        return rc;
    rc = dir_secure(dir, err);
    if (rc != 0)
        return rc;

    struct store *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return ts_error_set(err, TS_ERR_NOMEM, "store %s: out of memory", dir);
    s->dir = strdup(dir);
    if (s->dir == NULL) {
        free(s);
        return ts_error_set(err, TS_ERR_NOMEM, "store %s: out of memory", dir);
    }
    options_build(s);

    if (kind == DIR_EXISTING) {
        rc = check_column_families(s, err);
        if (rc != 0)
            goto out_close;
    }

    char *errptr = NULL;
    s->db = rocksdb_open_column_families(s->opts, dir, STORE_CF_COUNT, store_cf_names,
                                         (const rocksdb_options_t *const *)s->cf_opts, s->cf,
                                         &errptr);
    if (errptr != NULL) {
        s->db = NULL;
        rc = open_error(s, errptr, err);
        goto out_close;
    }
    rc = load_meta(s, kind == DIR_NEW, false, err);
    if (rc != 0)
        goto out_close;
    *out = s;
    return 0;

out_close:
    store_close(s);
    return rc;
}

static void apply_chains_free(struct store *s)
{
    for (size_t i = 0; i < s->chains_cap; i++)
        free(s->chains[i].pending);
    free(s->chains);
    s->chains = NULL;
    s->chains_cap = 0;
    s->chains_count = 0;
}

int store_open_readonly(const char *dir, struct store **out, struct ts_error *err)
{
    *out = NULL;
    if (dir == NULL || dir[0] == '\0')
        return ts_error_set(err, TS_ERR_INVALID, "store: no directory given");
    enum dir_kind kind;
    int rc = dir_inspect(dir, &kind, err);
    if (rc != 0)
        return rc;
    if (kind == DIR_NEW)
        return ts_error_set(err, TS_ERR_NOTFOUND, "store %s: no trialsync store there", dir);

    struct store *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return ts_error_set(err, TS_ERR_NOMEM, "store %s: out of memory", dir);
    s->dir = strdup(dir);
    if (s->dir == NULL) {
        free(s);
        return ts_error_set(err, TS_ERR_NOMEM, "store %s: out of memory", dir);
    }
    options_build(s);
    /*
     * A running node may compact and delete table files while we read:
     * opening every table file now keeps the ones this view needs readable
     * (an unlinked file stays readable while open).
     */
    rocksdb_options_set_max_open_files(s->opts, -1);
    for (int i = 0; i < STORE_CF_COUNT; i++)
        rocksdb_options_set_max_open_files(s->cf_opts[i], -1);
    rc = check_column_families(s, err);
    if (rc != 0)
        goto out_close;

    char *errptr = NULL;
    s->db = rocksdb_open_for_read_only_column_families(
        s->opts, dir, STORE_CF_COUNT, store_cf_names,
        (const rocksdb_options_t *const *)s->cf_opts, s->cf, 0, &errptr);
    if (errptr != NULL) {
        s->db = NULL;
        rc = open_error(s, errptr, err);
        goto out_close;
    }
    rc = load_meta(s, false, true, err);
    if (rc != 0)
        goto out_close;
    *out = s;
    return 0;

out_close:
    store_close(s);
    return rc;
}

void store_close(struct store *s)
{
    if (s == NULL)
        return;
    if (s->db != NULL) {
        for (int i = 0; i < STORE_CF_COUNT; i++) {
            if (s->cf[i] != NULL)
                rocksdb_column_family_handle_destroy(s->cf[i]);
        }
        rocksdb_close(s->db);
    }
    if (s->wb != NULL)
        rocksdb_writebatch_destroy(s->wb);
    if (s->ro != NULL)
        rocksdb_readoptions_destroy(s->ro);
    if (s->wo_sync != NULL)
        rocksdb_writeoptions_destroy(s->wo_sync);
    if (s->wo_nosync != NULL)
        rocksdb_writeoptions_destroy(s->wo_nosync);
    for (int i = 0; i < STORE_CF_COUNT; i++) {
        if (s->cf_opts[i] != NULL)
            rocksdb_options_destroy(s->cf_opts[i]);
    }
    if (s->opts != NULL)
        rocksdb_options_destroy(s->opts);
    if (s->cache != NULL)
        rocksdb_cache_destroy(s->cache);
    apply_chains_free(s);
    overlay_free(&s->states);
    overlay_free(&s->recs);
    keylist_free(&s->history);
    free(s->sorted);
    free(s->heads);
    free(s->dir);
    free(s);
}

/* ---- apply ---- */

/* The chain scratch of (origin, lane) for this call, created on first use. */
static struct apply_chain *apply_chain_get(struct store *s, const char *origin, uint8_t lane)
{
    for (size_t i = 0; i < s->chains_count; i++) {
        if (s->chains[i].lane == lane && strcmp(s->chains[i].origin, origin) == 0)
            return &s->chains[i];
    }
    if (s->chains_count == s->chains_cap) {
        size_t cap = s->chains_cap ? s->chains_cap * 2 : 8;
        struct apply_chain *c = realloc(s->chains, cap * sizeof(*c));
        if (c == NULL)
            return NULL;
        memset(c + s->chains_cap, 0, (cap - s->chains_cap) * sizeof(*c));
        s->chains = c;
        s->chains_cap = cap;
    }
    struct apply_chain *c = &s->chains[s->chains_count++];
    c->pending_count = 0;
    memcpy(c->origin, origin, strlen(origin) + 1);
    c->lane = lane;
    ptrdiff_t i = heads_find(s, origin, lane);
    if (i >= 0) {
        c->db_seq = s->heads[i].seq;
        memcpy(c->hash, s->heads[i].hash, TS_HASH_BYTES);
    } else {
        c->db_seq = 0;
        memset(c->hash, 0, TS_HASH_BYTES);
    }
    c->seq = c->db_seq;
    return c;
}

static int apply_chain_push(struct apply_chain *c, const uint8_t *bytes, size_t len,
                            const uint8_t hash[TS_HASH_BYTES])
{
    if (c->pending_count == c->pending_cap) {
        size_t cap = c->pending_cap ? c->pending_cap * 2 : 64;
        struct pending *p = realloc(c->pending, cap * sizeof(*p));
        if (p == NULL)
            return TS_ERR_NOMEM;
        c->pending = p;
        c->pending_cap = cap;
    }
    struct pending *p = &c->pending[c->pending_count++];
    p->bytes = bytes;
    p->len = len;
    memcpy(p->hash, hash, TS_HASH_BYTES);
    c->seq++;
    memcpy(c->hash, hash, TS_HASH_BYTES);
    return 0;
}

/* What the current call is doing, for error messages and counters. */
struct apply_ctx {
    struct store *s;
    const struct batch *b;
    uint64_t seq;
    uint64_t now_ms;
    uint64_t hlc_max;
    uint64_t applied;
    uint64_t duplicates;
    uint64_t records_new;
    int64_t conflicts_delta;
    struct ts_error *err;
};

#define ENTRY_FMT "entry %s/%s/%" PRIu64
#define ENTRY_ARGS(a) (a)->b->origin, lane_name((a)->b->lane), (a)->seq

/*
 * The stored bytes and chain hash of seq, already held or applied earlier in
 * this call.  Returns 0, or TS_ERR_CORRUPT when the store lacks an entry its
 * head covers.  *ps (when set) must be destroyed after using bytes.
 */
static int apply_stored(struct apply_ctx *a, struct apply_chain *c, uint64_t seq,
                        rocksdb_pinnableslice_t **ps, const uint8_t **bytes, size_t *len,
                        const uint8_t **hash)
{
    *ps = NULL;
    if (seq > c->db_seq) {
        const struct pending *p = &c->pending[seq - c->db_seq - 1];
        *bytes = p->len == 0 ? p->hash : p->bytes;  /* a hole keeps only its hash */
        *len = p->len;
        *hash = p->hash;
        return 0;
    }
    struct key k;
    key_oplog(&k, c->origin, c->lane, seq);
    int rc = rdb_get(a->s, STORE_CF_OPLOG, &k, ps, a->err);
    if (rc < 0)
        return rc;
    size_t vlen = 0;
    const uint8_t *v = rc == 1 ? (const uint8_t *)rocksdb_pinnableslice_value(*ps, &vlen) : NULL;
    if (v == NULL || vlen < TS_HASH_BYTES) {
        if (*ps != NULL)
            rocksdb_pinnableslice_destroy(*ps);
        *ps = NULL;
        return ts_error_set(a->err, TS_ERR_CORRUPT,
                            "store %s: %s/%s/%" PRIu64 " is below the head but missing or "
                            "corrupt; run store verification",
                            a->s->dir, c->origin, lane_name(c->lane), seq);
    }
    *hash = v;
    *bytes = v + TS_HASH_BYTES;
    *len = vlen - TS_HASH_BYTES;
    return 0;
}

/*
 * Loads the state of key into the overlay (once per call); a field of a
 * record new to the store starts empty without a read.
 */
static int apply_state_load(struct apply_ctx *a, const struct key *k, const struct entry *e,
                            const char *field, bool record_new, struct ov_item **out)
{
    struct store *s = a->s;
    bool created;
    ptrdiff_t i = overlay_get(&s->states, k, &created);
    if (i < 0)
        return ts_error_set(a->err, TS_ERR_NOMEM, "store %s: out of memory", s->dir);
    struct ov_item *it = &s->states.items[i];
    if (created) {
        size_t tlen = strlen(e->record_type);
        it->id_off = (uint8_t)(tlen + 1);
        it->field_off = (uint8_t)(tlen + 1 + strlen(e->record_id) + 1);
        if (record_new) {
            *out = it;
            return 0;
        }
        rocksdb_pinnableslice_t *ps;
        int rc = rdb_get(s, STORE_CF_STATE, k, &ps, a->err);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            size_t vlen;
            const char *v = rocksdb_pinnableslice_value(ps, &vlen);
            rc = merge_field_decode((const uint8_t *)v, vlen, &it->st);
            rocksdb_pinnableslice_destroy(ps);
            if (rc != 0)
                return ts_error_set(a->err, TS_ERR_CORRUPT,
                                    "store %s: stored state of %s %s field %s does not decode",
                                    s->dir, e->record_type, e->record_id, field);
            it->conflict_before = merge_conflict(e->record_type, field, &it->st);
        }
    }
    *out = it;
    return 0;
}

/* Merges a new entry's writes into state and indexes it. */
static int apply_entry_state(struct apply_ctx *a, const struct entry *e)
{
    struct store *s = a->s;
    if (e->record_type[0] == '\0' || e->record_id[0] == '\0') {
        if (e->writes_count == 0)
            return 0;  /* an entry about no record: kept in the oplog only */
        return ts_error_set(a->err, TS_ERR_CORRUPT, ENTRY_FMT ": writes fields of no record",
                            ENTRY_ARGS(a));
    }
    /*
     * Record list: written once per record.  State keys of a record exist
     * only once its record key does (both are written in one batch), so for
     * a record this store has never seen no state needs reading.
     */
    struct key k = {.len = 0};
    bool ok = key_u8(&k, KEY_INDEX_RECORD) && key_str0(&k, e->record_type, TS_TYPE_BYTES_MAX) &&
              key_str(&k, e->record_id, TS_ID_BYTES_MAX);
    assert(ok);
    bool created;
    ptrdiff_t ri = overlay_get(&s->recs, &k, &created);
    if (ri < 0)
        return ts_error_set(a->err, TS_ERR_NOMEM, "store %s: out of memory", s->dir);
    if (created) {
        rocksdb_pinnableslice_t *ps;
        int rc = rdb_get(s, STORE_CF_INDEX, &k, &ps, a->err);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            rocksdb_pinnableslice_destroy(ps);
        } else {
            s->recs.items[ri].dirty = true;  /* new: written by apply_finish */
            a->records_new++;
        }
    }
    bool record_new = s->recs.items[ri].dirty;

    uint32_t round = merge_entry_round(e);
    for (size_t i = 0; i < e->writes_count; i++) {
        const struct field_write *w = &e->writes[i];
        if (w->field[0] == '\0' || !key_state(&k, e->record_type, e->record_id, w->field))
            return ts_error_set(a->err, TS_ERR_CORRUPT, ENTRY_FMT ": bad field name in write %zu",
                                ENTRY_ARGS(a), i);
        struct ov_item *it = NULL;
        int rc = apply_state_load(a, &k, e, w->field, record_new, &it);
        if (rc != 0)
            return rc;
        struct merge_write mw;
        merge_write_of(e, w, round, &mw);
        rc = merge_field_apply(&it->st, &mw);
        if (rc < 0)
            return ts_error_set(a->err, rc, ENTRY_FMT ": cannot merge field %s: %s",
                                ENTRY_ARGS(a), w->field, ts_strerror(rc));
        if (rc == 1)
            it->dirty = true;
    }

    /* History: (type, id, hlc, origin, lane, seq) -> when this node stored it. */
    k.len = 0;
    ok = key_u8(&k, KEY_INDEX_HISTORY) && key_str0(&k, e->record_type, TS_TYPE_BYTES_MAX) &&
              key_str0(&k, e->record_id, TS_ID_BYTES_MAX) && key_u64(&k, e->hlc) &&
              key_str0(&k, e->origin, TS_ID_BYTES_MAX) && key_u8(&k, e->lane) &&
              key_u64(&k, e->seq);
    assert(ok);
    if (keylist_add(&s->history, &k) != 0)
        return ts_error_set(a->err, TS_ERR_NOMEM, "store %s: out of memory", s->dir);
    return 0;
}

/*
 * A stored signature value (see the file comment) from a certificate serial
 * and a signature; returns its length.
 */
static size_t sig_value_make(uint8_t out[STORE_SIG_VALUE_BYTES_MAX], const char *serial,
                             const uint8_t *sig, size_t sig_len)
{
    size_t n = strnlen(serial, TS_SERIAL_BYTES_MAX + 1);
    assert(n <= TS_SERIAL_BYTES_MAX);
    assert(sig_len <= TS_SIG_BYTES_MAX);
    out[0] = (uint8_t)n;
    memcpy(out + 1, serial, n);
    memcpy(out + 1 + n, sig, sig_len);
    return 1 + n + sig_len;
}

/* Splits a stored signature value; false when it is malformed. */
static bool sig_value_split(const uint8_t *v, size_t vlen, char serial[TS_SERIAL_BYTES_MAX + 1],
                            const uint8_t **sig, size_t *sig_len)
{
    if (vlen < 1 || v[0] > TS_SERIAL_BYTES_MAX || vlen < 1 + (size_t)v[0] ||
        vlen - 1 - v[0] > TS_SIG_BYTES_MAX)
        return false;
    memcpy(serial, v + 1, v[0]);
    serial[v[0]] = '\0';
    *sig = v + 1 + v[0];
    *sig_len = vlen - 1 - v[0];
    return true;
}

static int apply_check_batch(struct apply_ctx *a, const char *trial)
{
    const struct batch *b = a->b;
    if (!str_ok(b->origin, TS_ID_BYTES_MAX))
        return ts_error_set(a->err, TS_ERR_INVALID, "batch with no valid origin");
    if (b->lane >= LANE_COUNT)
        return ts_error_set(a->err, TS_ERR_INVALID, "batch %s/%u: unknown lane", b->origin,
                            (unsigned)b->lane);
    if (b->count == 0 || b->entries == NULL || b->entry_lens == NULL)
        return ts_error_set(a->err, TS_ERR_INVALID, "batch %s/%s from %" PRIu64 ": no entries",
                            b->origin, lane_name(b->lane), b->first_seq);
    if (b->first_seq == 0 || b->first_seq > UINT64_MAX - b->count)
        return ts_error_set(a->err, TS_ERR_INVALID, "batch %s/%s: bad first seq %" PRIu64,
                            b->origin, lane_name(b->lane), b->first_seq);
    if (b->signature_len > TS_SIG_BYTES_MAX)
        return ts_error_set(a->err, TS_ERR_INVALID, "batch %s/%s: signature too long", b->origin,
                            lane_name(b->lane));
    if (b->trial[0] != '\0' && strncmp(b->trial, trial, sizeof(b->trial)) != 0)
        return ts_error_set(a->err, TS_ERR_AUTH, "batch %s/%s is for trial %s, this node is in %s",
                            b->origin, lane_name(b->lane), b->trial, trial);
    return 0;
}

static int apply_verify_signature(struct apply_ctx *a, const char *trial, store_verify_fn verify,
                                  void *ctx)
{
    const struct batch *b = a->b;
    uint64_t last = b->first_seq + b->count - 1;
    uint8_t msg[STORE_SIGN_BYTES_MAX];
    int len = codec_batch_sign_bytes(trial, b->origin, b->cert_serial, b->lane, last,
                                     b->chain_hash, msg, sizeof(msg));
    if (len < 0)
        return ts_error_set(a->err, len, "batch %s/%s/%" PRIu64 ": cannot build signed bytes",
                            b->origin, lane_name(b->lane), last);
    int rc = verify(ctx, b->origin, b->cert_serial, msg, (size_t)len, b->signature,
                    b->signature_len);
    if (rc == TS_ERR_AUTH)
        return ts_error_set(a->err, rc,
                            "batch %s/%s/%" PRIu64 "..%" PRIu64 ": origin %s has no known "
                            "certificate of serial '%s' in this trial",
                            b->origin, lane_name(b->lane), b->first_seq, last, b->origin,
                            b->cert_serial);
    if (rc != 0)
        return ts_error_set(a->err, rc < 0 ? rc : TS_ERR_SIGNATURE,
                            "batch %s/%s/%" PRIu64 "..%" PRIu64 ": signature does not verify",
                            b->origin, lane_name(b->lane), b->first_seq, last);
    return 0;
}

/* Stores the batch's signature at its last seq (when not already held). */
static int apply_signature_store(struct apply_ctx *a, struct apply_chain *c, uint64_t last,
                                 bool last_is_new)
{
    const struct batch *b = a->b;
    struct key k;
    key_oplog(&k, c->origin, c->lane, last);
    key_u8(&k, KEY_OPLOG_SIGNATURE);
    if (!last_is_new) {
        rocksdb_pinnableslice_t *ps;
        int rc = rdb_get(a->s, STORE_CF_OPLOG, &k, &ps, a->err);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            rocksdb_pinnableslice_destroy(ps);
            return 0;
        }
    }
    uint8_t val[STORE_SIG_VALUE_BYTES_MAX];
    size_t vlen = sig_value_make(val, b->cert_serial, b->signature, b->signature_len);
    rocksdb_writebatch_put_cf(a->s->wb, a->s->cf[STORE_CF_OPLOG], (const char *)k.b, k.len,
                              (const char *)val, vlen);
    return 0;
}

/*
 * One hole of a batch (an entry filtered out for this receiver, see entry.h):
 * only the chain hash after it is known.  Held already: the held hash must
 * be the same (else a fork).  New: it must follow the head; the hash is
 * stored as the entry's oplog value with no bytes, and becomes the chain
 * hash the next entry's prev_hash must match.  Nothing reaches state.
 * Returns 1 when new, 0 when held, or a negative code.
 */
static int apply_hole(struct apply_ctx *a, struct apply_chain *c, const uint8_t *hash,
                      uint8_t after[TS_HASH_BYTES])
{
    const struct batch *b = a->b;
    if (a->seq <= c->seq) {
        rocksdb_pinnableslice_t *ps;
        const uint8_t *stored = NULL, *held = NULL;
        size_t stored_len = 0;
        int rc = apply_stored(a, c, a->seq, &ps, &stored, &stored_len, &held);
        if (rc == 0 && memcmp(held, hash, TS_HASH_BYTES) != 0)
            rc = ts_error_set(a->err, TS_ERR_FORK,
                              ENTRY_FMT ": fork: the hole's chain hash differs from the one "
                              "held for this seq; quarantine origin %s",
                              ENTRY_ARGS(a), b->origin);
        if (rc == 0)
            memcpy(after, held, TS_HASH_BYTES);
        if (ps != NULL)
            rocksdb_pinnableslice_destroy(ps);
        if (rc != 0)
            return rc;
        a->duplicates++;
        return 0;
    }
    if (a->seq != c->seq + 1)
        return ts_error_set(a->err, TS_ERR_GAP,
                            ENTRY_FMT ": gap: this node holds %s/%s up to seq %" PRIu64,
                            ENTRY_ARGS(a), b->origin, lane_name(b->lane), c->seq);
    memcpy(after, hash, TS_HASH_BYTES);
    struct key k;
    key_oplog(&k, b->origin, b->lane, a->seq);
    rocksdb_writebatch_put_cf(a->s->wb, a->s->cf[STORE_CF_OPLOG], (const char *)k.b, k.len,
                              (const char *)after, TS_HASH_BYTES);
    int rc = apply_chain_push(c, NULL, 0, after);
    if (rc != 0)
        return ts_error_set(a->err, rc, "store %s: out of memory", a->s->dir);
    a->applied++;
    return 1;
}

static int apply_batch(struct apply_ctx *a, const char *trial, store_verify_fn verify, void *ctx)
{
    struct store *s = a->s;
    const struct batch *b = a->b;
    a->seq = b->first_seq;
    int rc = apply_check_batch(a, trial);
    if (rc != 0)
        return rc;
    /*
     * The signature is checked before the entries: a fork alarm must rest on
     * entries their origin signed, not on bytes anyone could send.
     */
    if (verify != NULL) {
        rc = apply_verify_signature(a, trial, verify, ctx);
        if (rc != 0)
            return rc;
    }
    struct apply_chain *c = apply_chain_get(s, b->origin, b->lane);
    if (c == NULL)
        return ts_error_set(a->err, TS_ERR_NOMEM, "store %s: out of memory", s->dir);

    uint8_t after[TS_HASH_BYTES] = {0};  /* chain hash after the entry just checked */
    bool last_is_new = false;
    struct entry e;
    memset(&e, 0, sizeof(e));
    struct key k;
    for (size_t i = 0; i < b->count; i++) {
        a->seq = b->first_seq + i;
        const uint8_t *bytes = b->entries[i];
        size_t len = b->entry_lens[i];
        struct ts_error derr = {0};
        if (bytes == NULL)
            return ts_error_set(a->err, TS_ERR_CORRUPT, ENTRY_FMT ": empty", ENTRY_ARGS(a));
        if (len == BATCH_HOLE_LEN) {
            rc = apply_hole(a, c, bytes, after);
            if (rc < 0)
                return rc;
            last_is_new = rc == 1;
            continue;
        }
        rc = codec_entry_decode(bytes, len, &e, &derr);
        if (rc != 0) {
            entry_release(&e);
            return ts_error_set(a->err, TS_ERR_CORRUPT, ENTRY_FMT ": does not decode: %s",
                                ENTRY_ARGS(a), derr.msg);
        }
        if (strcmp(e.origin, b->origin) != 0 || e.lane != b->lane || e.seq != a->seq) {
            ts_error_set(a->err, TS_ERR_CORRUPT,
                         ENTRY_FMT ": the entry names %s/%s/%" PRIu64 " instead", ENTRY_ARGS(a),
                         e.origin, lane_name(e.lane), e.seq);
            entry_release(&e);
            return TS_ERR_CORRUPT;
        }

        if (a->seq <= c->seq) {
            /* Held already: it must be the very same entry. */
            rocksdb_pinnableslice_t *ps;
            const uint8_t *stored = NULL, *hash = NULL;
            size_t stored_len = 0;
            rc = apply_stored(a, c, a->seq, &ps, &stored, &stored_len, &hash);
            if (rc == 0 && stored_len == 0) {
                /* Held as a hole: the same entry if it hashes to the hole's hash. */
                uint8_t h[TS_HASH_BYTES];
                crypto_chain_hash(e.prev_hash, bytes, len, h);
                if (memcmp(h, hash, TS_HASH_BYTES) != 0)
                    rc = ts_error_set(a->err, TS_ERR_FORK,
                                      ENTRY_FMT ": fork: does not hash to the chain hash held "
                                      "for this seq; quarantine origin %s",
                                      ENTRY_ARGS(a), b->origin);
                memcpy(after, hash, TS_HASH_BYTES);
            } else if (rc == 0) {
                if (stored_len != len || memcmp(stored, bytes, len) != 0)
                    rc = ts_error_set(a->err, TS_ERR_FORK,
                                      ENTRY_FMT ": fork: differs from the entry held for this "
                                      "seq; quarantine origin %s",
                                      ENTRY_ARGS(a), b->origin);
                memcpy(after, hash, TS_HASH_BYTES);
            }
            if (ps != NULL)
                rocksdb_pinnableslice_destroy(ps);
            entry_release(&e);
            memset(&e, 0, sizeof(e));
            if (rc != 0)
                return rc;
            a->duplicates++;
            last_is_new = false;
            continue;
        }

        if (a->seq != c->seq + 1) {
            entry_release(&e);
            return ts_error_set(a->err, TS_ERR_GAP,
                                ENTRY_FMT ": gap: this node holds %s/%s up to seq %" PRIu64
                                ", so seqs %" PRIu64 "..%" PRIu64 " are missing",
                                ENTRY_ARGS(a), b->origin, lane_name(b->lane), c->seq,
                                c->seq + 1, a->seq - 1);
        }
        if (memcmp(e.prev_hash, c->hash, TS_HASH_BYTES) != 0) {
            char want[17], got[17];
            hex8(c->hash, want);
            hex8(e.prev_hash, got);
            entry_release(&e);
            return ts_error_set(a->err, TS_ERR_CHAIN,
                                ENTRY_FMT ": prev_hash %s... does not match the chain hash "
                                "%s... of seq %" PRIu64,
                                ENTRY_ARGS(a), got, want, c->seq);
        }
        if (s->entry_check != NULL) {
            rc = s->entry_check(s->entry_check_ctx, &e, a->err);
            if (rc != 0) {
                entry_release(&e);
                return rc < 0 ? rc : TS_ERR_AUTH;
            }
        }
        crypto_chain_hash(c->hash, bytes, len, after);

        key_oplog(&k, b->origin, b->lane, a->seq);
        const char *vals[2] = {(const char *)after, (const char *)bytes};
        size_t vlens[2] = {TS_HASH_BYTES, len};
        const char *keys[1] = {(const char *)k.b};
        size_t klens[1] = {k.len};
        rocksdb_writebatch_putv_cf(s->wb, s->cf[STORE_CF_OPLOG], 1, keys, klens, 2, vals, vlens);

        rc = apply_entry_state(a, &e);
        if (rc == 0)
            rc = apply_chain_push(c, bytes, len, after);
        if (e.hlc > a->hlc_max)
            a->hlc_max = e.hlc;
        entry_release(&e);
        memset(&e, 0, sizeof(e));
        if (rc == TS_ERR_NOMEM)
            return ts_error_set(a->err, rc, "store %s: out of memory", s->dir);
        if (rc != 0)
            return rc;
        a->applied++;
        last_is_new = true;
    }

    uint64_t last = b->first_seq + b->count - 1;
    a->seq = last;
    if (memcmp(after, b->chain_hash, TS_HASH_BYTES) != 0) {
        char want[17], got[17];
        hex8(after, got);
        hex8(b->chain_hash, want);
        return ts_error_set(a->err, TS_ERR_CHAIN,
                            ENTRY_FMT ": chain hash %s... after the batch, the batch claims %s...",
                            ENTRY_ARGS(a), got, want);
    }
    return apply_signature_store(a, c, last, last_is_new);
}

/* Writes the overlays' results, heads, highest HLC and counters into the batch. */
static int apply_finish(struct apply_ctx *a)
{
    struct store *s = a->s;
    if (keylist_sort(&s->history) != 0)
        return ts_error_set(a->err, TS_ERR_NOMEM, "store %s: out of memory", s->dir);
    uint8_t stored[8];
    be64_put(stored, a->now_ms);
    for (size_t i = 0; i < s->history.count; i++) {
        const uint8_t *k = s->history.ptrs[i];
        rocksdb_writebatch_put_cf(s->wb, s->cf[STORE_CF_INDEX], (const char *)k + 1, k[0],
                                  (const char *)stored, sizeof(stored));
    }

    ptrdiff_t n = overlay_sorted_dirty(s, &s->recs);
    if (n < 0)
        return ts_error_set(a->err, TS_ERR_NOMEM, "store %s: out of memory", s->dir);
    for (ptrdiff_t i = 0; i < n; i++)
        rocksdb_writebatch_put_cf(s->wb, s->cf[STORE_CF_INDEX], s->sorted[i]->key,
                                  s->sorted[i]->klen, "", 0);

    n = overlay_sorted_dirty(s, &s->states);
    if (n < 0)
        return ts_error_set(a->err, TS_ERR_NOMEM, "store %s: out of memory", s->dir);
    for (ptrdiff_t i = 0; i < n; i++) {
        struct ov_item *it = s->sorted[i];
        uint8_t *enc = NULL;
        size_t enc_len = 0;
        int rc = merge_field_encode(&it->st, &enc, &enc_len);
        if (rc != 0)
            return ts_error_set(a->err, rc, "store %s: cannot encode state of %s: %s", s->dir,
                                it->key, ts_strerror(rc));
        rocksdb_writebatch_put_cf(s->wb, s->cf[STORE_CF_STATE], it->key, it->klen,
                                  (const char *)enc, enc_len);
        free(enc);

        const char *type = it->key;
        const char *field = it->key + it->field_off;
        bool conflict = merge_conflict(type, field, &it->st);
        if (conflict == it->conflict_before)
            continue;
        struct key k = {.len = 0};
        bool ok = key_u8(&k, KEY_INDEX_CONFLICT) && key_bytes(&k, it->key, it->klen);
        assert(ok);
        if (conflict) {
            rocksdb_writebatch_put_cf(s->wb, s->cf[STORE_CF_INDEX], (const char *)k.b, k.len,
                                      "", 0);
            a->conflicts_delta++;
        } else {
            rocksdb_writebatch_delete_cf(s->wb, s->cf[STORE_CF_INDEX], (const char *)k.b, k.len);
            a->conflicts_delta--;
        }
    }

    size_t new_chains = 0;
    for (size_t i = 0; i < s->chains_count; i++) {
        const struct apply_chain *c = &s->chains[i];
        if (c->seq == c->db_seq)
            continue;
        if (heads_find(s, c->origin, c->lane) < 0)
            new_chains++;
        struct key k;
        key_head(&k, c->origin, c->lane);
        uint8_t v[8 + TS_HASH_BYTES];
        be64_put(v, c->seq);
        memcpy(v + 8, c->hash, TS_HASH_BYTES);
        rocksdb_writebatch_put_cf(s->wb, s->cf[STORE_CF_META], (const char *)k.b, k.len,
                                  (const char *)v, sizeof(v));
    }
    if (s->heads_count + new_chains > TS_CHAINS_MAX)
        return ts_error_set(a->err, TS_ERR_TOOBIG, "store %s: more than %d chains", s->dir,
                            TS_CHAINS_MAX);
    /* Reserve now, so nothing can fail once the batch is written. */
    if (heads_reserve(s, s->heads_count + new_chains) != 0)
        return ts_error_set(a->err, TS_ERR_NOMEM, "store %s: out of memory", s->dir);

    if (a->hlc_max > s->hlc_max) {
        uint8_t kb = KEY_META_HLC;
        uint8_t v[8];
        be64_put(v, a->hlc_max);
        rocksdb_writebatch_put_cf(s->wb, s->cf[STORE_CF_META], (const char *)&kb, 1,
                                  (const char *)v, sizeof(v));
    }
    if (a->applied > 0) {
        assert((int64_t)s->conflicts + a->conflicts_delta >= 0);
        uint8_t kb = KEY_META_COUNTERS;
        uint8_t v[24];
        be64_put(v, s->entries + a->applied);
        be64_put(v + 8, s->records + a->records_new);
        be64_put(v + 16, (uint64_t)((int64_t)s->conflicts + a->conflicts_delta));
        rocksdb_writebatch_put_cf(s->wb, s->cf[STORE_CF_META], (const char *)&kb, 1,
                                  (const char *)v, sizeof(v));
    }
    return 0;
}

/* After a successful write: the cache follows what is now on disk. */
static void apply_commit(struct apply_ctx *a)
{
    struct store *s = a->s;
    for (size_t i = 0; i < s->chains_count; i++) {
        const struct apply_chain *c = &s->chains[i];
        if (c->seq != c->db_seq)
            heads_set(s, c->origin, c->lane, c->seq, c->hash);
    }
    if (a->hlc_max > s->hlc_max)
        s->hlc_max = a->hlc_max;
    if (a->applied > 0) {
        s->entries += a->applied;
        s->records += a->records_new;
        s->conflicts = (uint64_t)((int64_t)s->conflicts + a->conflicts_delta);
    }
}

static void apply_reset(struct store *s)
{
    rocksdb_writebatch_clear(s->wb);
    s->chains_count = 0;
    overlay_reset(&s->states);
    overlay_reset(&s->recs);
    keylist_reset(&s->history);
}

int store_apply(struct store *s, const char *trial, const struct batch *batches, size_t n,
                store_verify_fn verify, void *ctx, bool sync, uint64_t now_ms,
                struct store_apply_result *res, struct ts_error *err)
{
    assert(s != NULL);
    assert(trial != NULL);
    assert(batches != NULL || n == 0);
    if (res != NULL)
        memset(res, 0, sizeof(*res));
    struct apply_ctx a = {.s = s, .now_ms = now_ms, .hlc_max = s->hlc_max, .err = err};
    int rc = 0;
    apply_reset(s);
    for (size_t i = 0; i < n && rc == 0; i++) {
        a.b = &batches[i];
        rc = apply_batch(&a, trial, verify, ctx);
    }
    if (rc == 0)
        rc = apply_finish(&a);
    if (rc == 0 && rocksdb_writebatch_count(s->wb) > 0) {
        char *errptr = NULL;
        rocksdb_write(s->db, sync ? s->wo_sync : s->wo_nosync, s->wb, &errptr);
        if (errptr != NULL)
            rc = rdb_write_error(s, errptr, "write", err);
    }
    if (rc == 0) {
        apply_commit(&a);
        if (res != NULL) {
            res->applied = (size_t)a.applied;
            res->duplicates = (size_t)a.duplicates;
        }
    }
    apply_reset(s);
    return rc;
}

/* ---- reads ---- */

void store_set_entry_check(struct store *s, store_entry_check_fn fn, void *ctx)
{
    s->entry_check = fn;
    s->entry_check_ctx = ctx;
}

int store_head(struct store *s, const char *origin, uint8_t lane, uint64_t *seq,
               uint8_t hash[TS_HASH_BYTES])
{
    ptrdiff_t i = origin != NULL ? heads_find(s, origin, lane) : -1;
    if (i < 0) {
        *seq = 0;
        if (hash != NULL)
            memset(hash, 0, TS_HASH_BYTES);
        return 0;
    }
    *seq = s->heads[i].seq;
    if (hash != NULL)
        memcpy(hash, s->heads[i].hash, TS_HASH_BYTES);
    return 0;
}

int store_vv(struct store *s, struct vv_item **items, size_t *count)
{
    *items = NULL;
    *count = 0;
    if (s->heads_count == 0)
        return 0;
    struct vv_item *v = calloc(s->heads_count, sizeof(*v));
    if (v == NULL)
        return TS_ERR_NOMEM;
    for (size_t i = 0; i < s->heads_count; i++) {
        memcpy(v[i].origin, s->heads[i].origin, sizeof(v[i].origin));
        v[i].lane = s->heads[i].lane;
        v[i].seq = s->heads[i].seq;
    }
    *items = v;
    *count = s->heads_count;
    return 0;
}

uint64_t store_hlc_max(struct store *s)
{
    return s->hlc_max;
}

/* A growing buffer for store_read_batch. */
struct readbuf {
    uint8_t *bytes;
    size_t len;
    size_t cap;
    size_t *offs;  /* offs[i] = start of entry i; offs[count] = len */
    size_t count;
    size_t offs_cap;
};

static int readbuf_add(struct readbuf *rb, const uint8_t *p, size_t n)
{
    if (rb->count + 2 > rb->offs_cap) {
        size_t cap = rb->offs_cap ? rb->offs_cap * 2 : 64;
        size_t *o = realloc(rb->offs, cap * sizeof(*o));
        if (o == NULL)
            return TS_ERR_NOMEM;
        rb->offs = o;
        rb->offs_cap = cap;
    }
    if (n > rb->cap - rb->len) {
        size_t cap = rb->cap ? rb->cap : 16 * 1024;
        while (cap - rb->len < n)
            cap *= 2;
        uint8_t *b = realloc(rb->bytes, cap);
        if (b == NULL)
            return TS_ERR_NOMEM;
        rb->bytes = b;
        rb->cap = cap;
    }
    rb->offs[rb->count++] = rb->len;
    memcpy(rb->bytes + rb->len, p, n);
    rb->len += n;
    rb->offs[rb->count] = rb->len;
    return 0;
}

int store_read_batch(struct store *s, const char *trial, const char *origin, uint8_t lane,
                     uint64_t from_seq, size_t max_entries, size_t max_bytes, struct batch *out,
                     struct ts_error *err)
{
    memset(out, 0, sizeof(*out));
    if (!str_ok(trial, TS_ID_BYTES_MAX) || !str_ok(origin, TS_ID_BYTES_MAX) || lane >= LANE_COUNT)
        return ts_error_set(err, TS_ERR_INVALID, "read batch: bad trial, origin or lane");
    if (from_seq == 0)
        from_seq = 1;
    memcpy(out->trial, trial, strlen(trial) + 1);
    memcpy(out->origin, origin, strlen(origin) + 1);
    out->lane = lane;
    out->first_seq = from_seq;

    uint64_t head;
    store_head(s, origin, lane, &head, NULL);
    if (from_seq > head || max_entries == 0)
        return 0;

    struct key prefix = {.len = 0};
    key_str0(&prefix, origin, TS_ID_BYTES_MAX);
    key_u8(&prefix, lane);
    struct key start;
    key_oplog(&start, origin, lane, from_seq);

    struct readbuf rb = {0};
    size_t signed_count = 0;
    uint8_t signed_hash[TS_HASH_BYTES];
    uint8_t last_hash[TS_HASH_BYTES];
    uint64_t expect = from_seq;
    int rc = 0;
    struct scan sc;
    scan_open(&sc, s, STORE_CF_OPLOG, prefix.b, prefix.len, &start);
    for (; scan_valid(&sc, prefix.b, prefix.len); rocksdb_iter_next(sc.it)) {
        size_t klen, vlen;
        const uint8_t *key = (const uint8_t *)rocksdb_iter_key(sc.it, &klen);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(sc.it, &vlen);
        if (klen == prefix.len + 9 && key[klen - 1] == KEY_OPLOG_SIGNATURE) {
            /* A signed point: it belongs to the entry just read. */
            uint64_t seq = be64_get(key + prefix.len);
            if (rb.count == 0 || seq != expect - 1)
                continue;
            const uint8_t *sig;
            size_t sig_len;
            if (!sig_value_split(v, vlen, out->cert_serial, &sig, &sig_len)) {
                rc = ts_error_set(err, TS_ERR_CORRUPT,
                                  "store %s: signature at %s/%s/%" PRIu64 " is corrupt", s->dir,
                                  origin, lane_name(lane), seq);
                break;
            }
            signed_count = rb.count;
            memcpy(signed_hash, last_hash, TS_HASH_BYTES);
            memcpy(out->signature, sig, sig_len);
            out->signature_len = sig_len;
            continue;
        }
        uint64_t seq = klen == prefix.len + 8 ? be64_get(key + prefix.len) : 0;
        if (seq == expect && vlen == TS_HASH_BYTES) {
            /* Held only as a hole: never relayed (only hubs relay, and hubs hold no holes). */
            if (rb.count == 0)
                rc = ts_error_set(err, TS_ERR_NOTFOUND,
                                  "store %s: %s/%s/%" PRIu64 " is held only as a hole and "
                                  "cannot be sent on", s->dir, origin, lane_name(lane), expect);
            break;
        }
        if (seq != expect || vlen <= TS_HASH_BYTES) {
            rc = ts_error_set(err, TS_ERR_CORRUPT,
                              "store %s: %s/%s/%" PRIu64 " is missing or corrupt", s->dir,
                              origin, lane_name(lane), expect);
            break;
        }
        size_t len = vlen - TS_HASH_BYTES;
        if (rb.count + 1 > max_entries || len > max_bytes - rb.len)
            break;
        rc = readbuf_add(&rb, v + TS_HASH_BYTES, len);
        if (rc != 0) {
            ts_error_set(err, rc, "store %s: out of memory", s->dir);
            break;
        }
        memcpy(last_hash, v, TS_HASH_BYTES);
        expect++;
    }
    int rc2 = scan_close(&sc, s, err);
    if (rc == 0)
        rc = rc2;
    if (rc != 0 || signed_count == 0) {
        memset(out->signature, 0, sizeof(out->signature));
        out->signature_len = 0;
        goto out_free;
    }

    /* One block holds the entry pointers, the lengths and the bytes. */
    size_t bytes = rb.offs[signed_count];
    size_t head_bytes = signed_count * (sizeof(uint8_t *) + sizeof(size_t));
    uint8_t *block = malloc(head_bytes + bytes);
    if (block == NULL) {
        rc = ts_error_set(err, TS_ERR_NOMEM, "store %s: out of memory", s->dir);
        goto out_free;
    }
    const uint8_t **ptrs = (const uint8_t **)(void *)block;
    size_t *lens = (size_t *)(void *)(block + signed_count * sizeof(uint8_t *));
    uint8_t *data = block + head_bytes;
    memcpy(data, rb.bytes, bytes);
    for (size_t i = 0; i < signed_count; i++) {
        ptrs[i] = data + rb.offs[i];
        lens[i] = rb.offs[i + 1] - rb.offs[i];
    }
    out->entries = ptrs;
    out->entry_lens = lens;
    out->count = signed_count;
    memcpy(out->chain_hash, signed_hash, TS_HASH_BYTES);
    out->owned = block;

out_free:
    free(rb.offs);
    free(rb.bytes);
    return rc;
}

void store_batch_release(struct batch *b)
{
    if (b == NULL)
        return;
    free(b->owned);
    memset(b, 0, sizeof(*b));
}

/* Decodes a stored oplog value (hash | entry) read for ref. */
static int entry_from_value(struct store *s, const struct entry_ref *ref, const uint8_t *v,
                            size_t vlen, struct entry *out, struct ts_error *err)
{
    struct ts_error derr = {0};
    if (vlen <= TS_HASH_BYTES ||
        codec_entry_decode(v + TS_HASH_BYTES, vlen - TS_HASH_BYTES, out, &derr) != 0) {
        entry_release(out);
        memset(out, 0, sizeof(*out));
        return ts_error_set(err, TS_ERR_CORRUPT, "store %s: entry %s/%s/%" PRIu64
                            " does not decode: %s", s->dir, ref->origin,
                            lane_name(ref->lane), ref->seq, derr.msg);
    }
    return 0;
}

int store_entry_get(struct store *s, const struct entry_ref *ref, struct entry *out,
                    struct ts_error *err)
{
    memset(out, 0, sizeof(*out));
    struct key k;
    if (!key_oplog(&k, ref->origin, ref->lane, ref->seq))
        return ts_error_set(err, TS_ERR_NOTFOUND, "no such entry");
    rocksdb_pinnableslice_t *ps;
    int rc = rdb_get(s, STORE_CF_OPLOG, &k, &ps, err);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return ts_error_set(err, TS_ERR_NOTFOUND, "entry %s/%s/%" PRIu64 " is not held",
                            ref->origin, lane_name(ref->lane), ref->seq);
    size_t vlen;
    const uint8_t *v = (const uint8_t *)rocksdb_pinnableslice_value(ps, &vlen);
    if (vlen == TS_HASH_BYTES) {
        rocksdb_pinnableslice_destroy(ps);
        return ts_error_set(err, TS_ERR_NOTFOUND,
                            "entry %s/%s/%" PRIu64 " is held only as a hole (another site's)",
                            ref->origin, lane_name(ref->lane), ref->seq);
    }
    rc = entry_from_value(s, ref, v, vlen, out, err);
    rocksdb_pinnableslice_destroy(ps);
    return rc;
}

int store_entry_hash(struct store *s, const struct entry_ref *ref, uint8_t out[TS_HASH_BYTES])
{
    struct key k;
    if (!key_oplog(&k, ref->origin, ref->lane, ref->seq))
        return TS_ERR_NOTFOUND;
    rocksdb_pinnableslice_t *ps;
    int rc = rdb_get(s, STORE_CF_OPLOG, &k, &ps, NULL);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return TS_ERR_NOTFOUND;
    size_t vlen;
    const uint8_t *v = (const uint8_t *)rocksdb_pinnableslice_value(ps, &vlen);
    if (vlen >= TS_HASH_BYTES)
        memcpy(out, v, TS_HASH_BYTES);
    rocksdb_pinnableslice_destroy(ps);
    return vlen >= TS_HASH_BYTES ? 0 : TS_ERR_CORRUPT;
}

bool store_record_exists(struct store *s, const char *type, const char *id)
{
    struct key k = {.len = 0};
    if (!key_u8(&k, KEY_INDEX_RECORD) || !key_str0(&k, type, TS_TYPE_BYTES_MAX) ||
        !key_str(&k, id, TS_ID_BYTES_MAX))
        return false;
    rocksdb_pinnableslice_t *ps = NULL;
    int rc = rdb_get(s, STORE_CF_INDEX, &k, &ps, NULL);
    if (rc == 1)
        rocksdb_pinnableslice_destroy(ps);
    return rc == 1;
}

int store_field_get(struct store *s, const char *type, const char *id, const char *field,
                    struct field_state *out)
{
    memset(out, 0, sizeof(*out));
    struct key k;
    if (!key_state(&k, type, id, field))
        return 0;  /* a name longer than the limits holds nothing */
    rocksdb_pinnableslice_t *ps;
    int rc = rdb_get(s, STORE_CF_STATE, &k, &ps, NULL);
    if (rc <= 0)
        return rc;
    size_t vlen;
    const char *v = rocksdb_pinnableslice_value(ps, &vlen);
    rc = merge_field_decode((const uint8_t *)v, vlen, out);
    rocksdb_pinnableslice_destroy(ps);
    if (rc != 0) {
        field_state_release(out);
        memset(out, 0, sizeof(*out));
        return TS_ERR_CORRUPT;
    }
    return 0;
}

/* ---- paged walks (struct store_page) ---- */

/*
 * Opens an index scan of prefix for page (NULL: the whole prefix): from the
 * first key above prefix || page->after, found by seeking to that key with a
 * 0 byte appended (the least key above it).
 */
static void page_scan_open(struct scan *sc, struct store *s, const struct key *prefix,
                           const struct store_page *page)
{
    assert(page == NULL || page->limit > 0);
    assert(page == NULL || page->after_len <= STORE_PAGE_KEY_BYTES_MAX);
    if (page == NULL || page->after_len == 0) {
        scan_open(sc, s, STORE_CF_INDEX, prefix->b, prefix->len, NULL);
        return;
    }
    struct key start = *prefix;
    bool ok = key_bytes(&start, page->after, page->after_len) && key_u8(&start, 0);
    assert(ok);  /* a prefix and a cursor fit a key (STORE_KEY_BYTES_MAX) */
    (void)ok;
    scan_open(sc, s, STORE_CF_INDEX, prefix->b, prefix->len, &start);
}

/*
 * Counts the key at the iterator into page: false when the page is already
 * full (the key is the first of the next page; page->next holds the cursor),
 * true when the key is to be visited (its cursor kept in page->next).
 */
static bool page_take(struct store_page *page, size_t *visited, const struct key *prefix,
                      const char *key, size_t klen)
{
    if (page == NULL)
        return true;
    if (*visited == page->limit)
        return false;
    assert(klen >= prefix->len);
    size_t tail = klen - prefix->len;
    if (tail > STORE_PAGE_KEY_BYTES_MAX)
        tail = STORE_PAGE_KEY_BYTES_MAX;  /* corrupt: the walk's own check refuses it */
    memcpy(page->next, key + prefix->len, tail);
    page->next_len = tail;
    (*visited)++;
    return true;
}

/* One state row, its field name (flen bytes, not terminated) and its value:
 * decoded and handed to cb.  TS_ERR_CORRUPT for a bad name or value. */
static int field_row(const char *name, size_t flen, const char *v, size_t vlen,
                     store_field_cb cb, void *ctx)
{
    char field[TS_FIELD_BYTES_MAX + 1];
    if (flen == 0 || flen > TS_FIELD_BYTES_MAX)
        return TS_ERR_CORRUPT;
    memcpy(field, name, flen);
    field[flen] = '\0';
    struct field_state st = {0};
    if (merge_field_decode((const uint8_t *)v, vlen, &st) != 0) {
        field_state_release(&st);
        return TS_ERR_CORRUPT;
    }
    int rc = cb(ctx, field, &st);
    field_state_release(&st);
    return rc;
}

/* A history key's part after "type NUL id NUL" (hlc(8) origin NUL lane(1)
 * seq(8)) and its value (the stored time): the entry's ref; false when
 * malformed. */
static bool history_row(const uint8_t *rest, size_t left, const uint8_t *v, size_t vlen,
                        struct entry_ref *ref, uint64_t *stored_ms)
{
    const char *origin = (const char *)rest + 8;
    size_t olen = left > 8 ? strnlen(origin, left - 8) : 0;
    if (vlen != 8 || olen == 0 || olen > TS_ID_BYTES_MAX || left != 8 + olen + 1 + 1 + 8)
        return false;
    memset(ref, 0, sizeof(*ref));
    memcpy(ref->origin, origin, olen);
    ref->lane = rest[8 + olen + 1];
    ref->seq = be64_get(rest + left - 8);
    *stored_ms = be64_get(v);
    return true;
}

int store_record_fields(struct store *s, const char *type, const char *id, store_field_cb cb,
                        void *ctx)
{
    struct key prefix = {.len = 0};
    if (!key_str0(&prefix, type, TS_TYPE_BYTES_MAX) || !key_str0(&prefix, id, TS_ID_BYTES_MAX))
        return TS_ERR_NOTFOUND;
    int rc = 0;
    size_t seen = 0;
    struct scan sc;
    scan_open(&sc, s, STORE_CF_STATE, prefix.b, prefix.len, NULL);
    for (; rc == 0 && scan_valid(&sc, prefix.b, prefix.len); rocksdb_iter_next(sc.it)) {
        size_t klen, vlen;
        const char *key = rocksdb_iter_key(sc.it, &klen);
        const char *v = rocksdb_iter_value(sc.it, &vlen);
        seen++;
        rc = field_row(key + prefix.len, klen - prefix.len, v, vlen, cb, ctx);
    }
    int rc2 = scan_close(&sc, s, NULL);
    if (rc == 0)
        rc = rc2;
    if (rc == 0 && seen == 0)
        rc = TS_ERR_NOTFOUND;
    return rc;
}

int store_record_history(struct store *s, const char *type, const char *id, store_entry_cb cb,
                         void *ctx)
{
    return store_record_history_page(s, type, id, NULL, cb, ctx);
}

int store_record_history_page(struct store *s, const char *type, const char *id,
                              struct store_page *page, store_entry_cb cb, void *ctx)
{
    struct key prefix = {.len = 0};
    if (!key_u8(&prefix, KEY_INDEX_HISTORY) || !key_str0(&prefix, type, TS_TYPE_BYTES_MAX) ||
        !key_str0(&prefix, id, TS_ID_BYTES_MAX))
        return TS_ERR_NOTFOUND;
    int rc = 0;
    size_t seen = 0, visited = 0;
    bool more = false;
    struct scan sc;
    page_scan_open(&sc, s, &prefix, page);
    for (; rc == 0 && scan_valid(&sc, prefix.b, prefix.len); rocksdb_iter_next(sc.it)) {
        size_t klen, vlen;
        const uint8_t *key = (const uint8_t *)rocksdb_iter_key(sc.it, &klen);
        if (!page_take(page, &visited, &prefix, (const char *)key, klen)) {
            more = true;
            break;
        }
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(sc.it, &vlen);
        struct entry_ref ref;
        uint64_t stored_ms;
        if (!history_row(key + prefix.len, klen - prefix.len, v, vlen, &ref, &stored_ms)) {
            rc = TS_ERR_CORRUPT;
            break;
        }
        struct entry e;
        rc = store_entry_get(s, &ref, &e, NULL);
        if (rc == TS_ERR_NOTFOUND)
            rc = TS_ERR_CORRUPT;  /* indexed but not held */
        if (rc != 0)
            break;
        seen++;
        rc = cb(ctx, &e, stored_ms);
        entry_release(&e);
    }
    int rc2 = scan_close(&sc, s, NULL);
    if (rc == 0)
        rc = rc2;
    if (page != NULL && !more)
        page->next_len = 0;
    /* A page past the end of a record's history is empty, not missing. */
    bool resumed = page != NULL && page->after_len > 0;
    if (rc == 0 && seen == 0 && (!resumed || !store_record_exists(s, type, id)))
        rc = TS_ERR_NOTFOUND;
    return rc;
}

/* Splits "type NUL id [NUL field]" (bounded) into NUL-terminated copies. */
static bool split_key(const char *key, size_t klen, char type[TS_TYPE_BYTES_MAX + 1],
                      char id[TS_ID_BYTES_MAX + 1], char field[TS_FIELD_BYTES_MAX + 1])
{
    const char *p = key;
    const char *end = key + klen;
    const char *nul = memchr(p, 0, (size_t)(end - p));
    if (nul == NULL || nul == p || (size_t)(nul - p) > TS_TYPE_BYTES_MAX)
        return false;
    memcpy(type, p, (size_t)(nul - p));
    type[nul - p] = '\0';
    p = nul + 1;
    if (field == NULL) {
        if (p == end || (size_t)(end - p) > TS_ID_BYTES_MAX)
            return false;
        memcpy(id, p, (size_t)(end - p));
        id[end - p] = '\0';
        return true;
    }
    nul = memchr(p, 0, (size_t)(end - p));
    if (nul == NULL || nul == p || (size_t)(nul - p) > TS_ID_BYTES_MAX)
        return false;
    memcpy(id, p, (size_t)(nul - p));
    id[nul - p] = '\0';
    p = nul + 1;
    if (p == end || (size_t)(end - p) > TS_FIELD_BYTES_MAX)
        return false;
    memcpy(field, p, (size_t)(end - p));
    field[end - p] = '\0';
    return true;
}

int store_records(struct store *s, const char *type, store_record_cb cb, void *ctx)
{
    return store_records_page(s, type, NULL, cb, ctx);
}

int store_records_page(struct store *s, const char *type, struct store_page *page,
                       store_record_cb cb, void *ctx)
{
    struct key prefix = {.len = 0};
    key_u8(&prefix, KEY_INDEX_RECORD);
    if (page != NULL)
        page->next_len = 0;
    if (type != NULL && type[0] != '\0' && !key_str0(&prefix, type, TS_TYPE_BYTES_MAX))
        return 0;
    int rc = 0;
    size_t visited = 0;
    bool more = false;
    struct scan sc;
    page_scan_open(&sc, s, &prefix, page);
    for (; rc == 0 && scan_valid(&sc, prefix.b, prefix.len); rocksdb_iter_next(sc.it)) {
        size_t klen;
        const char *key = rocksdb_iter_key(sc.it, &klen);
        if (!page_take(page, &visited, &prefix, key, klen)) {
            more = true;
            break;
        }
        char t[TS_TYPE_BYTES_MAX + 1], id[TS_ID_BYTES_MAX + 1];
        if (!split_key(key + 1, klen - 1, t, id, NULL)) {
            rc = TS_ERR_CORRUPT;
            break;
        }
        rc = cb(ctx, t, id);
    }
    int rc2 = scan_close(&sc, s, NULL);
    if (page != NULL && !more)
        page->next_len = 0;
    return rc != 0 ? rc : rc2;
}

int store_records_prefix(struct store *s, const char *type, const char *id_prefix,
                         store_record_cb cb, void *ctx)
{
    assert(type != NULL && type[0] != '\0');
    assert(id_prefix != NULL);
    struct key prefix = {.len = 0};
    size_t plen = strlen(id_prefix);
    if (!key_u8(&prefix, KEY_INDEX_RECORD) || !key_str0(&prefix, type, TS_TYPE_BYTES_MAX) ||
        plen > TS_ID_BYTES_MAX || !key_bytes(&prefix, id_prefix, plen))
        return 0;
    int rc = 0;
    struct scan sc;
    scan_open(&sc, s, STORE_CF_INDEX, prefix.b, prefix.len, NULL);
    for (; rc == 0 && scan_valid(&sc, prefix.b, prefix.len); rocksdb_iter_next(sc.it)) {
        size_t klen;
        const char *key = rocksdb_iter_key(sc.it, &klen);
        char t[TS_TYPE_BYTES_MAX + 1], id[TS_ID_BYTES_MAX + 1];
        if (!split_key(key + 1, klen - 1, t, id, NULL)) {
            rc = TS_ERR_CORRUPT;
            break;
        }
        rc = cb(ctx, t, id);
    }
    int rc2 = scan_close(&sc, s, NULL);
    return rc != 0 ? rc : rc2;
}

int store_conflicts(struct store *s, store_conflict_cb cb, void *ctx)
{
    return store_conflicts_page(s, NULL, cb, ctx);
}

int store_conflicts_page(struct store *s, struct store_page *page, store_conflict_cb cb,
                         void *ctx)
{
    struct key prefix = {.len = 0};
    key_u8(&prefix, KEY_INDEX_CONFLICT);
    int rc = 0;
    size_t visited = 0;
    bool more = false;
    struct scan sc;
    page_scan_open(&sc, s, &prefix, page);
    for (; rc == 0 && scan_valid(&sc, prefix.b, prefix.len); rocksdb_iter_next(sc.it)) {
        size_t klen;
        const char *key = rocksdb_iter_key(sc.it, &klen);
        if (!page_take(page, &visited, &prefix, key, klen)) {
            more = true;
            break;
        }
        char t[TS_TYPE_BYTES_MAX + 1], id[TS_ID_BYTES_MAX + 1], f[TS_FIELD_BYTES_MAX + 1];
        if (!split_key(key + 1, klen - 1, t, id, f)) {
            rc = TS_ERR_CORRUPT;
            break;
        }
        struct field_state st;
        rc = store_field_get(s, t, id, f, &st);
        if (rc != 0)
            break;
        rc = cb(ctx, t, id, f, &st);
        field_state_release(&st);
    }
    int rc2 = scan_close(&sc, s, NULL);
    if (page != NULL && !more)
        page->next_len = 0;
    return rc != 0 ? rc : rc2;
}

/*
 * The digest hashes the stream of (4-byte BE key length, key, 4-byte BE value
 * length, value) over the state column family in key order, in chunks of
 * STORE_DIGEST_CHUNK_BYTES: h = 0^32, then h = SHA-256(h || chunk) for every
 * full chunk and once more for the (possibly empty) last one.  The chunking
 * is fixed, so equal states give equal digests with bounded memory.
 */
struct digest {
    uint8_t h[TS_HASH_BYTES];
    uint8_t *buf;
    size_t len;
};

static void digest_feed(struct digest *d, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        size_t take = STORE_DIGEST_CHUNK_BYTES - d->len;
        if (take > n)
            take = n;
        memcpy(d->buf + d->len, b, take);
        d->len += take;
        b += take;
        n -= take;
        if (d->len == STORE_DIGEST_CHUNK_BYTES) {
            uint8_t next[TS_HASH_BYTES];
            crypto_chain_hash(d->h, d->buf, d->len, next);
            memcpy(d->h, next, TS_HASH_BYTES);
            d->len = 0;
        }
    }
}

static void digest_feed_len(struct digest *d, size_t n)
{
    uint8_t b[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    digest_feed(d, b, 4);
}

int store_digest(struct store *s, uint8_t out[TS_HASH_BYTES])
{
    return store_digest_filtered(s, NULL, NULL, out);
}

/*
 * The (type, id) of a state row's key "type\0id\0field", copied into the
 * arrays; false for a key of any other shape.
 */
static bool state_key_record(const char *k, size_t klen, char type[TS_TYPE_BYTES_MAX + 1],
                             char id[TS_ID_BYTES_MAX + 1])
{
    const char *t_end = memchr(k, '\0', klen);
    if (t_end == NULL || (size_t)(t_end - k) > TS_TYPE_BYTES_MAX)
        return false;
    const char *i = t_end + 1;
    const char *i_end = memchr(i, '\0', klen - (size_t)(i - k));
    if (i_end == NULL || (size_t)(i_end - i) > TS_ID_BYTES_MAX)
        return false;
    memcpy(type, k, (size_t)(t_end - k));
    type[t_end - k] = '\0';
    memcpy(id, i, (size_t)(i_end - i));
    id[i_end - i] = '\0';
    return true;
}

int store_digest_filtered(struct store *s, store_record_filter_fn keep, void *ctx,
                          uint8_t out[TS_HASH_BYTES])
{
    struct digest d = {.len = 0};
    d.buf = malloc(STORE_DIGEST_CHUNK_BYTES);
    if (d.buf == NULL)
        return TS_ERR_NOMEM;
    /* The verdict of the record the scan is in: rows of one record are
     * adjacent, so keep() runs once per record. */
    char type[TS_TYPE_BYTES_MAX + 1] = "", id[TS_ID_BYTES_MAX + 1] = "";
    bool kept = false, have = false;
    struct scan sc;
    scan_open(&sc, s, STORE_CF_STATE, NULL, 0, NULL);
    for (; scan_valid(&sc, NULL, 0); rocksdb_iter_next(sc.it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(sc.it, &klen);
        const char *v = rocksdb_iter_value(sc.it, &vlen);
        if (keep != NULL) {
            char t2[TS_TYPE_BYTES_MAX + 1], i2[TS_ID_BYTES_MAX + 1];
            if (!state_key_record(k, klen, t2, i2))
                continue;
            if (!have || strcmp(t2, type) != 0 || strcmp(i2, id) != 0) {
                memcpy(type, t2, sizeof(type));
                memcpy(id, i2, sizeof(id));
                have = true;
                kept = keep(ctx, type, id);
            }
            if (!kept)
                continue;
        }
        digest_feed_len(&d, klen);
        digest_feed(&d, k, klen);
        digest_feed_len(&d, vlen);
        digest_feed(&d, v, vlen);
    }
    int rc = scan_close(&sc, s, NULL);
    if (rc == 0)
        crypto_chain_hash(d.h, d.buf, d.len, out);
    free(d.buf);
    return rc;
}

int store_stats(struct store *s, struct store_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->entries = s->entries;
    out->records = s->records;
    out->conflicts = s->conflicts;
    /* Table files plus what the memtables hold (not yet flushed, but in the
     * synced WAL): what the store occupies now. */
    for (int i = 0; i < STORE_CF_COUNT; i++) {
        uint64_t v = 0;
        if (rocksdb_property_int_cf(s->db, s->cf[i], "rocksdb.total-sst-files-size", &v) == 0)
            out->bytes_on_disk += v;
        v = 0;
        if (rocksdb_property_int_cf(s->db, s->cf[i], "rocksdb.cur-size-all-mem-tables", &v) == 0)
            out->bytes_on_disk += v;
    }
    return 0;
}

/* ---- checkpoint ---- */

int store_checkpoint(struct store *s, const char *dir, struct ts_error *err)
{
    assert(s != NULL);
    assert(s->db != NULL);
    if (dir == NULL || dir[0] != '/')
        return ts_error_set(err, TS_ERR_INVALID, "checkpoint: the target must be an absolute "
                            "path, not '%s'", dir != NULL ? dir : "");
    struct stat st;
    if (lstat(dir, &st) == 0)
        return ts_error_set(err, TS_ERR_EXISTS, "checkpoint: %s already exists (a backup "
                            "goes to a new directory)", dir);
    /* A missing parent is the caller's mistake, said in its words rather
     * than RocksDB's (which would also name this store's directory). */
    char parent[PATH_MAX];
    size_t len = strnlen(dir, sizeof(parent));
    if (len == sizeof(parent))
        return ts_error_set(err, TS_ERR_INVALID, "checkpoint: the target path is too long");
    memcpy(parent, dir, len + 1);
    while (len > 1 && parent[len - 1] == '/')
        parent[--len] = '\0';
    char *slash = strrchr(parent, '/');
    assert(slash != NULL);
    slash[slash == parent ? 1 : 0] = '\0';
    if (stat(parent, &st) != 0)
        return ts_error_set(err, TS_ERR_INVALID, "checkpoint: the parent directory %s does not "
                            "exist (create it first)", parent);
    if (!S_ISDIR(st.st_mode))
        return ts_error_set(err, TS_ERR_INVALID, "checkpoint: %s is not a directory", parent);
    char *errptr = NULL;
    rocksdb_checkpoint_t *cp = rocksdb_checkpoint_object_create(s->db, &errptr);
    if (errptr != NULL)
        return rdb_error(s, errptr, "checkpoint", err);
    /* 0: flush the memtables first, so the checkpoint needs no WAL replay. */
    rocksdb_checkpoint_create(cp, dir, 0, &errptr);
    rocksdb_checkpoint_object_destroy(cp);
    if (errptr != NULL)
        return rdb_error(s, errptr, "checkpoint", err);
    return 0;
}

uint32_t store_format_version(void)
{
    return STORE_FORMAT_VERSION;
}

/* ---- verification ---- */

/* The chain store_verify is walking. */
struct verify_chain {
    char origin[TS_ID_BYTES_MAX + 1];
    uint8_t lane;
    uint64_t seq;                   /* last entry seen */
    uint8_t hash[TS_HASH_BYTES];    /* chain hash after it */
    bool active;
};

static int verify_chain_end(struct store *s, const struct verify_chain *vc, struct ts_error *err)
{
    if (!vc->active)
        return 0;
    ptrdiff_t i = heads_find(s, vc->origin, vc->lane);
    if (i < 0 || s->heads[i].seq != vc->seq ||
        memcmp(s->heads[i].hash, vc->hash, TS_HASH_BYTES) != 0)
        return ts_error_set(err, TS_ERR_CORRUPT,
                            "store %s: chain %s/%s ends at seq %" PRIu64
                            " but its recorded head is seq %" PRIu64 " (or another hash)",
                            s->dir, vc->origin, lane_name(vc->lane), vc->seq,
                            i < 0 ? 0 : s->heads[i].seq);
    return 0;
}

int store_verify(struct store *s, const char *trial, store_verify_fn verify, void *ctx,
                 struct ts_error *err)
{
    return store_verify_entries(s, trial, verify, NULL, ctx, err);
}

int store_verify_entries(struct store *s, const char *trial, store_verify_fn verify,
                         store_verify_entry_fn entry_cb, void *ctx, struct ts_error *err)
{
    struct verify_chain vc;
    memset(&vc, 0, sizeof(vc));
    size_t chains = 0;
    struct entry e;
    memset(&e, 0, sizeof(e));
    int rc = 0;
    struct scan sc;
    scan_open(&sc, s, STORE_CF_OPLOG, NULL, 0, NULL);
    for (; rc == 0 && scan_valid(&sc, NULL, 0); rocksdb_iter_next(sc.it)) {
        size_t klen, vlen;
        const uint8_t *key = (const uint8_t *)rocksdb_iter_key(sc.it, &klen);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(sc.it, &vlen);
        const char *origin = (const char *)key;
        size_t olen = strnlen(origin, klen);
        bool is_sig = klen == olen + 1 + 1 + 8 + 1 && key[klen - 1] == KEY_OPLOG_SIGNATURE;
        if (olen == 0 || olen > TS_ID_BYTES_MAX || (klen != olen + 1 + 1 + 8 && !is_sig)) {
            rc = ts_error_set(err, TS_ERR_CORRUPT, "store %s: an oplog key is malformed", s->dir);
            break;
        }
        uint8_t lane = key[olen + 1];
        uint64_t seq = be64_get(key + olen + 2);
        if (!vc.active || vc.lane != lane || strcmp(vc.origin, origin) != 0) {
            rc = verify_chain_end(s, &vc, err);
            if (rc != 0)
                break;
            memset(&vc, 0, sizeof(vc));
            memcpy(vc.origin, origin, olen);
            vc.lane = lane;
            vc.active = true;
            chains++;
        }
        if (is_sig) {
            if (seq != vc.seq || vc.seq == 0) {
                rc = ts_error_set(err, TS_ERR_CORRUPT,
                                  "store %s: %s/%s/%" PRIu64 ": a signature with no entry",
                                  s->dir, vc.origin, lane_name(lane), seq);
                break;
            }
            if (verify == NULL)
                continue;
            uint8_t msg[STORE_SIGN_BYTES_MAX];
            char serial[TS_SERIAL_BYTES_MAX + 1];
            const uint8_t *sig = NULL;
            size_t sig_len = 0;
            int len = -1;
            if (sig_value_split(v, vlen, serial, &sig, &sig_len))
                len = codec_batch_sign_bytes(trial, vc.origin, serial, lane, seq, vc.hash, msg,
                                             sizeof(msg));
            if (len < 0 || verify(ctx, vc.origin, serial, msg, (size_t)len, sig, sig_len) != 0)
                rc = ts_error_set(err, TS_ERR_CORRUPT,
                                  "store %s: %s/%s/%" PRIu64 ": the stored signature does not "
                                  "verify",
                                  s->dir, vc.origin, lane_name(lane), seq);
            continue;
        }
        if (seq != vc.seq + 1) {
            rc = ts_error_set(err, TS_ERR_CORRUPT,
                              "store %s: %s/%s/%" PRIu64 ": missing (the next entry held is "
                              "seq %" PRIu64 ")",
                              s->dir, vc.origin, lane_name(lane), vc.seq + 1, seq);
            break;
        }
        struct ts_error derr = {0};
        if (vlen == TS_HASH_BYTES) {
            /* A hole: its hash is the chain; the next entry's prev_hash and
             * the signed chain hash commit to it. */
            memcpy(vc.hash, v, TS_HASH_BYTES);
            vc.seq = seq;
            continue;
        }
        if (vlen <= TS_HASH_BYTES ||
            codec_entry_decode(v + TS_HASH_BYTES, vlen - TS_HASH_BYTES, &e, &derr) != 0) {
            rc = ts_error_set(err, TS_ERR_CORRUPT,
                              "store %s: %s/%s/%" PRIu64 ": the stored entry does not decode: %s",
                              s->dir, vc.origin, lane_name(lane), seq, derr.msg);
        } else if (strcmp(e.origin, vc.origin) != 0 || e.lane != lane || e.seq != seq) {
            rc = ts_error_set(err, TS_ERR_CORRUPT,
                              "store %s: %s/%s/%" PRIu64 ": the stored entry names %s/%s/%" PRIu64,
                              s->dir, vc.origin, lane_name(lane), seq, e.origin,
                              lane_name(e.lane), e.seq);
        } else if (memcmp(e.prev_hash, vc.hash, TS_HASH_BYTES) != 0) {
            rc = ts_error_set(err, TS_ERR_CORRUPT,
                              "store %s: %s/%s/%" PRIu64 ": prev_hash does not match the chain",
                              s->dir, vc.origin, lane_name(lane), seq);
        } else {
            uint8_t h[TS_HASH_BYTES];
            crypto_chain_hash(vc.hash, v + TS_HASH_BYTES, vlen - TS_HASH_BYTES, h);
            if (memcmp(h, v, TS_HASH_BYTES) != 0)
                rc = ts_error_set(err, TS_ERR_CORRUPT,
                                  "store %s: %s/%s/%" PRIu64 ": the stored chain hash does not "
                                  "match the entry's bytes",
                                  s->dir, vc.origin, lane_name(lane), seq);
            memcpy(vc.hash, h, TS_HASH_BYTES);
            vc.seq = seq;
            /* The entry is what its chain says it is: now the caller's
             * checks on what it says (who wrote it, when). */
            if (rc == 0 && entry_cb != NULL) {
                int crc = entry_cb(ctx, &e, err);
                if (crc != 0)
                    rc = crc < 0 ? crc : TS_ERR_CORRUPT;
            }
        }
        entry_release(&e);
        memset(&e, 0, sizeof(e));
    }
    int rc2 = scan_close(&sc, s, err);
    if (rc == 0)
        rc = rc2;
    if (rc == 0)
        rc = verify_chain_end(s, &vc, err);
    if (rc == 0 && chains != s->heads_count) {
        /* A head whose chain has no entry at all. */
        for (size_t i = 0; i < s->heads_count; i++) {
            struct key k;
            key_oplog(&k, s->heads[i].origin, s->heads[i].lane, 1);
            rocksdb_pinnableslice_t *ps;
            int got = rdb_get(s, STORE_CF_OPLOG, &k, &ps, err);
            if (got < 0)
                return got;
            if (got == 1) {
                rocksdb_pinnableslice_destroy(ps);
                continue;
            }
            return ts_error_set(err, TS_ERR_CORRUPT,
                                "store %s: %s/%s/1: missing (the head is seq %" PRIu64 ")",
                                s->dir, s->heads[i].origin, lane_name(s->heads[i].lane),
                                s->heads[i].seq);
        }
    }
    return rc;
}

/* ---- state verification ---- */

/* One field of the record being rebuilt from its entries. */
struct rebuild_field {
    char name[TS_FIELD_BYTES_MAX + 1];
    bool produced;  /* some write changed it: store_apply would have stored it */
    struct field_state st;
};

/*
 * The record being rebuilt.  Fields are few per record (a schema's fields, or
 * a query's), so they are kept in an array searched linearly and sorted by
 * name once the record is complete.
 */
struct rebuild {
    char type[TS_TYPE_BYTES_MAX + 1];
    char id[TS_ID_BYTES_MAX + 1];
    struct rebuild_field *fields;
    size_t count;
    size_t cap;
    uint64_t entries;  /* history keys met, over all records */
};

static void rebuild_reset(struct rebuild *rb)
{
    for (size_t i = 0; i < rb->count; i++)
        field_state_release(&rb->fields[i].st);
    rb->count = 0;
}

static void rebuild_free(struct rebuild *rb)
{
    rebuild_reset(rb);
    free(rb->fields);
    rb->fields = NULL;
    rb->cap = 0;
}

static struct rebuild_field *rebuild_field_get(struct rebuild *rb, const char *name)
{
    for (size_t i = 0; i < rb->count; i++)
        if (strcmp(rb->fields[i].name, name) == 0)
            return &rb->fields[i];
    if (rb->count == rb->cap) {
        size_t cap = rb->cap == 0 ? 16 : rb->cap * 2;
        struct rebuild_field *f = realloc(rb->fields, cap * sizeof(*f));
        if (f == NULL)
            return NULL;
        rb->fields = f;
        rb->cap = cap;
    }
    struct rebuild_field *f = &rb->fields[rb->count++];
    memset(f, 0, sizeof(*f));
    snprintf(f->name, sizeof(f->name), "%s", name);
    return f;
}

static int rebuild_field_cmp(const void *pa, const void *pb)
{
    const struct rebuild_field *a = pa, *b = pb;
    return strcmp(a->name, b->name);
}

/* Splits a history key: 'h' type NUL id NUL hlc(8) origin NUL lane(1) seq(8). */
static bool history_key_parse(const uint8_t *k, size_t klen, char type[TS_TYPE_BYTES_MAX + 1],
                              char id[TS_ID_BYTES_MAX + 1], uint64_t *hlc,
                              struct entry_ref *ref)
{
    if (klen < 1 || k[0] != KEY_INDEX_HISTORY)
        return false;
    const uint8_t *p = k + 1, *end = k + klen;
    const uint8_t *nul = memchr(p, 0, (size_t)(end - p));
    if (nul == NULL || nul == p || (size_t)(nul - p) > TS_TYPE_BYTES_MAX)
        return false;
    memcpy(type, p, (size_t)(nul - p));
    type[nul - p] = '\0';
    p = nul + 1;
    nul = memchr(p, 0, (size_t)(end - p));
    if (nul == NULL || nul == p || (size_t)(nul - p) > TS_ID_BYTES_MAX)
        return false;
    memcpy(id, p, (size_t)(nul - p));
    id[nul - p] = '\0';
    p = nul + 1;
    if (end - p < 8)
        return false;
    *hlc = be64_get(p);
    p += 8;
    nul = memchr(p, 0, (size_t)(end - p));
    if (nul == NULL || nul == p || (size_t)(nul - p) > TS_ID_BYTES_MAX)
        return false;
    memset(ref, 0, sizeof(*ref));
    memcpy(ref->origin, p, (size_t)(nul - p));
    p = nul + 1;
    if (end - p != 1 + 8)
        return false;
    ref->lane = p[0];
    ref->seq = be64_get(p + 1);
    return true;
}

/*
 * Merges the entry a history key names into rb (whose type and id must be
 * the key's).  The entry must be held in full and be of that record and HLC.
 */
static int rebuild_entry(struct store *s, struct rebuild *rb, const uint8_t *hk, size_t hlen,
                         struct ts_error *err)
{
    char type[TS_TYPE_BYTES_MAX + 1], id[TS_ID_BYTES_MAX + 1];
    uint64_t hlc = 0;
    struct entry_ref ref;
    if (!history_key_parse(hk, hlen, type, id, &hlc, &ref))
        return ts_error_set(err, TS_ERR_CORRUPT, "store %s: a history key is malformed", s->dir);
    assert(strcmp(type, rb->type) == 0);
    assert(strcmp(id, rb->id) == 0);
    struct key k;
    if (!key_oplog(&k, ref.origin, ref.lane, ref.seq))
        return ts_error_set(err, TS_ERR_CORRUPT, "store %s: a history key is malformed", s->dir);
    rocksdb_pinnableslice_t *ps;
    int rc = rdb_get(s, STORE_CF_OPLOG, &k, &ps, err);
    if (rc < 0)
        return rc;
    size_t vlen = 0;
    const uint8_t *v = rc == 1 ? (const uint8_t *)rocksdb_pinnableslice_value(ps, &vlen) : NULL;
    if (v == NULL || vlen <= TS_HASH_BYTES) {
        if (rc == 1)
            rocksdb_pinnableslice_destroy(ps);
        return ts_error_set(err, TS_ERR_CORRUPT,
                            "record %s %s: its history names entry %s/%s/%" PRIu64
                            ", which is not held in full",
                            type, id, ref.origin, lane_name(ref.lane), ref.seq);
    }
    struct entry e;
    memset(&e, 0, sizeof(e));
    rc = entry_from_value(s, &ref, v, vlen, &e, err);
    rocksdb_pinnableslice_destroy(ps);
    if (rc != 0)
        return rc;
    if (strcmp(e.record_type, type) != 0 || strcmp(e.record_id, id) != 0 || e.hlc != hlc ||
        strcmp(e.origin, ref.origin) != 0 || e.lane != ref.lane || e.seq != ref.seq) {
        rc = ts_error_set(err, TS_ERR_CORRUPT,
                          "record %s %s: its history names entry %s/%s/%" PRIu64
                          ", which writes record %s %s",
                          type, id, ref.origin, lane_name(ref.lane), ref.seq, e.record_type,
                          e.record_id);
        goto out_release;
    }
    uint32_t round = merge_entry_round(&e);
    for (size_t i = 0; i < e.writes_count; i++) {
        const struct field_write *w = &e.writes[i];
        struct rebuild_field *f = rebuild_field_get(rb, w->field);
        if (f == NULL) {
            rc = ts_error_set(err, TS_ERR_NOMEM, "store %s: out of memory", s->dir);
            goto out_release;
        }
        struct merge_write mw;
        merge_write_of(&e, w, round, &mw);
        rc = merge_field_apply(&f->st, &mw);
        if (rc < 0) {
            rc = ts_error_set(err, TS_ERR_CORRUPT,
                              "record %s %s field %s: entry %s/%s/%" PRIu64
                              " does not merge: %s",
                              type, id, w->field, e.origin, lane_name(e.lane), e.seq,
                              ts_strerror(rc));
            goto out_release;
        }
        if (rc == 1)
            f->produced = true;
        rc = 0;
    }
    rb->entries++;
out_release:
    entry_release(&e);
    return rc;
}

/* The value a state shows (merge_display), for messages; "(none)" when none. */
static const char *state_shown(const char *type, const char *field, const struct field_state *st)
{
    int i = merge_display(type, field, st);
    return i < 0 ? "(none)" : st->live[i].value;
}

/* Compares one produced field with its stored bytes. */
static int state_compare_field(struct store *s, const struct rebuild *rb,
                               const struct rebuild_field *f, const uint8_t *v, size_t vlen,
                               struct ts_error *err)
{
    uint8_t *enc = NULL;
    size_t enc_len = 0;
    int rc = merge_field_encode(&f->st, &enc, &enc_len);
    if (rc != 0)
        return ts_error_set(err, rc, "store %s: cannot encode state: %s", s->dir, ts_strerror(rc));
    bool same = enc_len == vlen && memcmp(enc, v, vlen) == 0;
    free(enc);
    if (same)
        return 0;
    struct field_state stored;
    if (merge_field_decode(v, vlen, &stored) != 0)
        return ts_error_set(err, TS_ERR_CORRUPT,
                            "record %s %s field %s: the stored state does not decode (the "
                            "oplog gives \"%.80s\")",
                            rb->type, rb->id, f->name, state_shown(rb->type, f->name, &f->st));
    ts_error_set(err, TS_ERR_CORRUPT,
                 "record %s %s field %s: the stored state differs from the one the oplog "
                 "gives (stored shows \"%.80s\" with %zu live and %zu superseded writes; the "
                 "oplog gives \"%.80s\" with %zu live and %zu superseded)",
                 rb->type, rb->id, f->name, state_shown(rb->type, f->name, &stored),
                 stored.live_count, stored.dead_count, state_shown(rb->type, f->name, &f->st),
                 f->st.live_count, f->st.dead_count);
    field_state_release(&stored);
    return TS_ERR_CORRUPT;
}

/* A stored state key no entry produces: named by record and field. */
static int state_unproduced(struct store *s, const char *k, size_t klen, struct ts_error *err)
{
    char type[TS_TYPE_BYTES_MAX + 1], id[TS_ID_BYTES_MAX + 1], field[TS_FIELD_BYTES_MAX + 1];
    if (!split_key(k, klen, type, id, field))
        return ts_error_set(err, TS_ERR_CORRUPT, "store %s: a state key is malformed", s->dir);
    return ts_error_set(err, TS_ERR_CORRUPT,
                        "record %s %s field %s: a state is stored but no entry of the oplog "
                        "writes it",
                        type, id, field);
}

/*
 * Compares the rebuilt record rb with the stored state, advancing ss (a scan
 * of the whole state column family, in key order) past the record's keys.
 * Records are met in key order, so a stored key that sorts before this
 * record's belongs to no record the oplog writes.
 */
static int state_compare_record(struct store *s, struct rebuild *rb, struct scan *ss,
                                uint64_t *compared, struct ts_error *err)
{
    struct key p = {.len = 0};
    bool ok = key_str0(&p, rb->type, TS_TYPE_BYTES_MAX) && key_str0(&p, rb->id, TS_ID_BYTES_MAX);
    assert(ok);
    qsort(rb->fields, rb->count, sizeof(*rb->fields), rebuild_field_cmp);
    size_t i = 0;
    for (; scan_valid(ss, NULL, 0); rocksdb_iter_next(ss->it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(ss->it, &klen);
        size_t n = klen < p.len ? klen : p.len;
        int c = memcmp(k, p.b, n);
        if (c > 0)
            break;  /* a later record's */
        if (c < 0 || klen <= p.len)
            return state_unproduced(s, k, klen, err);
        /* A field of this record. */
        const char *field = k + p.len;
        size_t flen = klen - p.len;
        while (i < rb->count && !rb->fields[i].produced)
            i++;
        /* < 0: the stored field sorts before the next produced one. */
        int fc = -1;
        if (i < rb->count) {
            const char *name = rb->fields[i].name;
            size_t nlen = strlen(name);
            fc = memcmp(field, name, flen < nlen ? flen : nlen);
            if (fc == 0)
                fc = flen < nlen ? -1 : flen > nlen ? 1 : 0;
        }
        if (fc < 0)
            return state_unproduced(s, k, klen, err);
        if (fc > 0)
            return ts_error_set(err, TS_ERR_CORRUPT,
                                "record %s %s field %s: the oplog writes it but no state is "
                                "stored",
                                rb->type, rb->id, rb->fields[i].name);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(ss->it, &vlen);
        int rc = state_compare_field(s, rb, &rb->fields[i], v, vlen, err);
        if (rc != 0)
            return rc;
        (*compared)++;
        i++;
    }
    for (; i < rb->count; i++)
        if (rb->fields[i].produced)
            return ts_error_set(err, TS_ERR_CORRUPT,
                                "record %s %s field %s: the oplog writes it but no state is "
                                "stored",
                                rb->type, rb->id, rb->fields[i].name);
    return 0;
}

/*
 * Counts the entries held in full that name a record (those store_apply
 * indexes in the record's history).
 */
static int count_record_entries(struct store *s, uint64_t *out, struct ts_error *err)
{
    *out = 0;
    struct entry e;
    memset(&e, 0, sizeof(e));
    int rc = 0;
    struct scan sc;
    scan_open(&sc, s, STORE_CF_OPLOG, NULL, 0, NULL);
    for (; rc == 0 && scan_valid(&sc, NULL, 0); rocksdb_iter_next(sc.it)) {
        size_t klen, vlen;
        const char *key = rocksdb_iter_key(sc.it, &klen);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(sc.it, &vlen);
        if (klen > 0 && key[klen - 1] == KEY_OPLOG_SIGNATURE && strnlen(key, klen) + 11 == klen)
            continue;
        if (vlen <= TS_HASH_BYTES)
            continue;  /* a hole */
        struct ts_error derr = {0};
        if (codec_entry_decode(v + TS_HASH_BYTES, vlen - TS_HASH_BYTES, &e, &derr) != 0)
            rc = ts_error_set(err, TS_ERR_CORRUPT, "store %s: an oplog entry does not decode: %s",
                              s->dir, derr.msg);
        else if (e.record_type[0] != '\0' && e.record_id[0] != '\0')
            (*out)++;
        entry_release(&e);
        memset(&e, 0, sizeof(e));
    }
    int rc2 = scan_close(&sc, s, err);
    return rc != 0 ? rc : rc2;
}

int store_verify_state(struct store *s, uint64_t *fields, struct ts_error *err)
{
    uint64_t compared = 0, with_record = 0;
    if (fields != NULL)
        *fields = 0;
    int rc = count_record_entries(s, &with_record, err);
    if (rc != 0)
        return rc;

    struct rebuild rb;
    memset(&rb, 0, sizeof(rb));
    struct scan hs, ss;
    const uint8_t hprefix[1] = {KEY_INDEX_HISTORY};
    scan_open(&hs, s, STORE_CF_INDEX, hprefix, 1, NULL);
    scan_open(&ss, s, STORE_CF_STATE, NULL, 0, NULL);
    bool active = false;
    for (; rc == 0 && scan_valid(&hs, hprefix, 1); rocksdb_iter_next(hs.it)) {
        size_t klen;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(hs.it, &klen);
        char type[TS_TYPE_BYTES_MAX + 1], id[TS_ID_BYTES_MAX + 1];
        uint64_t hlc;
        struct entry_ref ref;
        if (!history_key_parse(k, klen, type, id, &hlc, &ref)) {
            rc = ts_error_set(err, TS_ERR_CORRUPT, "store %s: a history key is malformed",
                              s->dir);
            break;
        }
        if (!active || strcmp(type, rb.type) != 0 || strcmp(id, rb.id) != 0) {
            if (active)
                rc = state_compare_record(s, &rb, &ss, &compared, err);
            if (rc != 0)
                break;
            rebuild_reset(&rb);
            memcpy(rb.type, type, sizeof(rb.type));
            memcpy(rb.id, id, sizeof(rb.id));
            active = true;
        }
        rc = rebuild_entry(s, &rb, k, klen, err);
    }
    if (rc == 0 && active)
        rc = state_compare_record(s, &rb, &ss, &compared, err);
    if (rc == 0 && scan_valid(&ss, NULL, 0)) {
        size_t klen;
        const char *k = rocksdb_iter_key(ss.it, &klen);
        rc = state_unproduced(s, k, klen, err);
    }
    int rc2 = scan_close(&ss, s, err);
    int rc3 = scan_close(&hs, s, err);
    rebuild_free(&rb);
    if (rc == 0)
        rc = rc2 != 0 ? rc2 : rc3;
    if (rc == 0 && rb.entries != with_record)
        rc = ts_error_set(err, TS_ERR_CORRUPT,
                          "store %s: %" PRIu64 " entries write records but the record "
                          "history index names %" PRIu64 ": the state cannot be rebuilt from "
                          "all of them",
                          s->dir, with_record, rb.entries);
    if (rc == 0 && fields != NULL)
        *fields = compared;
    return rc;
}

/* ---- metadata ---- */

static bool key_meta_user(struct key *k, const char *key)
{
    k->len = 0;
    return key != NULL && key[0] != '\0' && key_u8(k, KEY_META_USER) &&
           key_str(k, key, STORE_META_KEY_BYTES_MAX);
}

int store_meta_get(struct store *s, const char *key, char **val, size_t *len)
{
    *val = NULL;
    *len = 0;
    struct key k;
    if (!key_meta_user(&k, key))
        return TS_ERR_NOTFOUND;
    rocksdb_pinnableslice_t *ps;
    int rc = rdb_get(s, STORE_CF_META, &k, &ps, NULL);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return TS_ERR_NOTFOUND;
    size_t vlen;
    const char *v = rocksdb_pinnableslice_value(ps, &vlen);
    /* One extra NUL so text values can be used as C strings. */
    char *copy = malloc(vlen + 1);
    if (copy == NULL) {
        rocksdb_pinnableslice_destroy(ps);
        return TS_ERR_NOMEM;
    }
    memcpy(copy, v, vlen);
    copy[vlen] = '\0';
    rocksdb_pinnableslice_destroy(ps);
    *val = copy;
    *len = vlen;
    return 0;
}

int store_meta_put(struct store *s, const char *key, const void *val, size_t len, bool sync,
                   struct ts_error *err)
{
    struct key k;
    if (!key_meta_user(&k, key))
        return ts_error_set(err, TS_ERR_INVALID, "metadata name must be 1..%d bytes",
                            STORE_META_KEY_BYTES_MAX);
    if (len > STORE_META_VALUE_BYTES_MAX)
        return ts_error_set(err, TS_ERR_TOOBIG, "metadata %s: %zu bytes, at most %u", key, len,
                            STORE_META_VALUE_BYTES_MAX);
    char *errptr = NULL;
    rocksdb_put_cf(s->db, sync ? s->wo_sync : s->wo_nosync, s->cf[STORE_CF_META],
                   (const char *)k.b, k.len, val != NULL ? val : "", len, &errptr);
    if (errptr != NULL)
        return rdb_write_error(s, errptr, "write metadata", err);
    return 0;
}

int store_health(struct store *s, struct ts_error *err)
{
    if (s->write_failure[0] != '\0')
        return ts_error_set(err, TS_ERR_IO, "%s", s->write_failure);
    /* A flush or compaction that failed (a sync, ENOSPC) stops RocksDB's
     * writes as well; the count only grows. */
    uint64_t bg = 0;
    if (s->db != NULL && rocksdb_property_int(s->db, "rocksdb.background-errors", &bg) == 0 &&
        bg > 0)
        return ts_error_set(err, TS_ERR_IO,
                            "store %s: %" PRIu64 " RocksDB background error(s) (a flush or "
                            "compaction failed; its info LOG says which)", s->dir, bg);
    return 0;
}

/* ---- test hook ---- */

int store_debug_corrupt(struct store *s, const struct entry_ref *ref, size_t byte_offset)
{
    struct key k;
    if (!key_oplog(&k, ref->origin, ref->lane, ref->seq))
        return TS_ERR_NOTFOUND;
    rocksdb_pinnableslice_t *ps;
    int rc = rdb_get(s, STORE_CF_OPLOG, &k, &ps, NULL);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return TS_ERR_NOTFOUND;
    size_t vlen;
    const char *v = rocksdb_pinnableslice_value(ps, &vlen);
    if (vlen <= TS_HASH_BYTES || byte_offset >= vlen - TS_HASH_BYTES) {
        rocksdb_pinnableslice_destroy(ps);
        return TS_ERR_INVALID;
    }
    char *copy = malloc(vlen);
    if (copy == NULL) {
        rocksdb_pinnableslice_destroy(ps);
        return TS_ERR_NOMEM;
    }
    memcpy(copy, v, vlen);
    rocksdb_pinnableslice_destroy(ps);
    copy[TS_HASH_BYTES + byte_offset] ^= (char)0xff;
    char *errptr = NULL;
    rocksdb_put_cf(s->db, s->wo_sync, s->cf[STORE_CF_OPLOG], (const char *)k.b, k.len, copy, vlen,
                   &errptr);
    free(copy);
    if (errptr != NULL) {
        rocksdb_free(errptr);
        return TS_ERR_IO;
    }
    return 0;
}

int store_debug_state_put(struct store *s, const char *type, const char *id, const char *field,
                          const uint8_t *bytes, size_t len)
{
    struct key k;
    if (!key_state(&k, type, id, field))
        return TS_ERR_INVALID;
    char *errptr = NULL;
    if (bytes == NULL)
        rocksdb_delete_cf(s->db, s->wo_sync, s->cf[STORE_CF_STATE], (const char *)k.b, k.len,
                          &errptr);
    else
        rocksdb_put_cf(s->db, s->wo_sync, s->cf[STORE_CF_STATE], (const char *)k.b, k.len,
                       (const char *)bytes, len, &errptr);
    if (errptr != NULL) {
        rocksdb_free(errptr);
        return TS_ERR_IO;
    }
    return 0;
}

/* Rebuilds one record's fields from its history, into rb. */
static int rebuild_one_record(struct store *s, struct rebuild *rb, const char *type,
                              const char *id, struct ts_error *err)
{
    struct key p = {.len = 0};
    if (!key_u8(&p, KEY_INDEX_HISTORY) || !key_str0(&p, type, TS_TYPE_BYTES_MAX) ||
        !key_str0(&p, id, TS_ID_BYTES_MAX))
        return TS_ERR_INVALID;
    snprintf(rb->type, sizeof(rb->type), "%s", type);
    snprintf(rb->id, sizeof(rb->id), "%s", id);
    int rc = 0;
    struct scan sc;
    scan_open(&sc, s, STORE_CF_INDEX, p.b, p.len, NULL);
    for (; rc == 0 && scan_valid(&sc, p.b, p.len); rocksdb_iter_next(sc.it)) {
        size_t klen;
        const uint8_t *k = (const uint8_t *)rocksdb_iter_key(sc.it, &klen);
        rc = rebuild_entry(s, rb, k, klen, err);
    }
    int rc2 = scan_close(&sc, s, err);
    return rc != 0 ? rc : rc2;
}

int store_debug_entry_replace(struct store *s, const uint8_t *bytes, size_t len,
                              const char *cert_serial, const uint8_t *sig, size_t sig_len)
{
    struct entry e, old;
    memset(&e, 0, sizeof(e));
    memset(&old, 0, sizeof(old));
    struct ts_error err = {0};
    if (codec_entry_decode(bytes, len, &e, &err) != 0)
        return TS_ERR_INVALID;
    struct entry_ref ref;
    memset(&ref, 0, sizeof(ref));
    memcpy(ref.origin, e.origin, sizeof(ref.origin));
    ref.lane = e.lane;
    ref.seq = e.seq;
    ptrdiff_t hi = heads_find(s, e.origin, e.lane);
    int rc = TS_ERR_INVALID;
    if (hi < 0 || s->heads[hi].seq != e.seq)
        goto out_release;  /* only a chain's head can be replaced */
    rc = store_entry_get(s, &ref, &old, &err);
    if (rc != 0)
        goto out_release;
    rc = TS_ERR_INVALID;
    if (strcmp(old.record_type, e.record_type) != 0 || strcmp(old.record_id, e.record_id) != 0 ||
        old.hlc != e.hlc || memcmp(old.prev_hash, e.prev_hash, TS_HASH_BYTES) != 0)
        goto out_release;

    uint8_t hash[TS_HASH_BYTES];
    crypto_chain_hash(e.prev_hash, bytes, len, hash);
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    struct key k;
    key_oplog(&k, e.origin, e.lane, e.seq);
    const char *vals[2] = {(const char *)hash, (const char *)bytes};
    size_t vlens[2] = {TS_HASH_BYTES, len};
    const char *keys[1] = {(const char *)k.b};
    size_t klens[1] = {k.len};
    rocksdb_writebatch_putv_cf(wb, s->cf[STORE_CF_OPLOG], 1, keys, klens, 2, vals, vlens);
    key_u8(&k, KEY_OPLOG_SIGNATURE);
    uint8_t sval[STORE_SIG_VALUE_BYTES_MAX];
    size_t sval_len = sig_value_make(sval, cert_serial, sig, sig_len);
    rocksdb_writebatch_put_cf(wb, s->cf[STORE_CF_OPLOG], (const char *)k.b, k.len,
                              (const char *)sval, sval_len);
    key_head(&k, e.origin, e.lane);
    uint8_t hv[8 + TS_HASH_BYTES];
    be64_put(hv, e.seq);
    memcpy(hv + 8, hash, TS_HASH_BYTES);
    rocksdb_writebatch_put_cf(wb, s->cf[STORE_CF_META], (const char *)k.b, k.len,
                              (const char *)hv, sizeof(hv));
    char *errptr = NULL;
    rocksdb_write(s->db, s->wo_sync, wb, &errptr);
    rocksdb_writebatch_destroy(wb);
    if (errptr != NULL) {
        rocksdb_free(errptr);
        rc = TS_ERR_IO;
        goto out_release;
    }
    heads_set(s, e.origin, e.lane, e.seq, hash);

    /* The record's state as the rewritten oplog gives it, so only the
     * entry's signer and certificate can give the forgery away. */
    rc = 0;
    if (e.record_type[0] != '\0' && e.record_id[0] != '\0') {
        struct rebuild rb;
        memset(&rb, 0, sizeof(rb));
        rc = rebuild_one_record(s, &rb, e.record_type, e.record_id, &err);
        for (size_t i = 0; rc == 0 && i < rb.count; i++) {
            if (!rb.fields[i].produced)
                continue;
            uint8_t *enc = NULL;
            size_t enc_len = 0;
            rc = merge_field_encode(&rb.fields[i].st, &enc, &enc_len);
            if (rc == 0)
                rc = store_debug_state_put(s, e.record_type, e.record_id, rb.fields[i].name,
                                           enc, enc_len);
            free(enc);
        }
        rebuild_free(&rb);
    }
out_release:
    entry_release(&old);
    entry_release(&e);
    return rc;
}

int store_debug_resign(struct store *s, const char *trial, const char *origin, uint8_t lane,
                       const char *cert_serial, store_debug_sign_fn sign, void *ctx)
{
    struct key p = {.len = 0};
    if (!key_str0(&p, origin, TS_ID_BYTES_MAX) || !key_u8(&p, lane))
        return TS_ERR_INVALID;
    uint8_t hash[TS_HASH_BYTES] = {0};
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    int rc = 0;
    struct scan sc;
    scan_open(&sc, s, STORE_CF_OPLOG, p.b, p.len, NULL);
    for (; rc == 0 && scan_valid(&sc, p.b, p.len); rocksdb_iter_next(sc.it)) {
        size_t klen, vlen;
        const char *k = rocksdb_iter_key(sc.it, &klen);
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(sc.it, &vlen);
        if (klen == p.len + 8) {
            if (vlen < TS_HASH_BYTES) {
                rc = TS_ERR_CORRUPT;
                break;
            }
            memcpy(hash, v, TS_HASH_BYTES);  /* the chain hash after this seq */
            continue;
        }
        if (klen != p.len + 9 || (uint8_t)k[klen - 1] != KEY_OPLOG_SIGNATURE)
            continue;
        uint8_t msg[STORE_SIGN_BYTES_MAX], sig[TS_SIG_BYTES_MAX];
        size_t sig_len = 0;
        int len = codec_batch_sign_bytes(trial, origin, cert_serial, lane,
                                         be64_get((const uint8_t *)k + p.len), hash, msg,
                                         sizeof(msg));
        rc = len < 0 ? len : sign(ctx, msg, (size_t)len, sig, &sig_len);
        if (rc == 0) {
            uint8_t sval[STORE_SIG_VALUE_BYTES_MAX];
            size_t sval_len = sig_value_make(sval, cert_serial, sig, sig_len);
            rocksdb_writebatch_put_cf(wb, s->cf[STORE_CF_OPLOG], k, klen, (const char *)sval,
                                      sval_len);
        }
    }
    int rc2 = scan_close(&sc, s, NULL);
    if (rc == 0)
        rc = rc2;
    if (rc == 0) {
        char *errptr = NULL;
        rocksdb_write(s->db, s->wo_sync, wb, &errptr);
        if (errptr != NULL) {
            rocksdb_free(errptr);
            rc = TS_ERR_IO;
        }
    }
    rocksdb_writebatch_destroy(wb);
    return rc;
}

int store_debug_format_stamp(struct store *s, uint32_t version, bool drop_counters)
{
    char marker[STORE_FORMAT_BYTES_MAX];
    size_t mlen = format_marker(version, marker);
    uint8_t kf = KEY_META_FORMAT, kc = KEY_META_COUNTERS;
    rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
    rocksdb_writebatch_put_cf(wb, s->cf[STORE_CF_META], (const char *)&kf, 1, marker, mlen);
    if (drop_counters)
        rocksdb_writebatch_delete_cf(wb, s->cf[STORE_CF_META], (const char *)&kc, 1);
    char *errptr = NULL;
    rocksdb_write(s->db, s->wo_sync, wb, &errptr);
    rocksdb_writebatch_destroy(wb);
    if (errptr != NULL) {
        rocksdb_free(errptr);
        return TS_ERR_IO;
    }
    return 0;
}

/* ---- walks: records with their fields and history, no seek per record ---- */

/* One forward cursor of a walk over cf, bounded to keys starting with prefix. */
struct walk_cursor {
    rocksdb_readoptions_t *ro;
    rocksdb_iterator_t *it;
    struct key prefix;
    struct key upper;
};

struct store_walk {
    struct store *s;
    const rocksdb_snapshot_t *snap;
    char type[TS_TYPE_BYTES_MAX + 1];  /* "" for every type */
    struct walk_cursor rec;            /* KEY_INDEX_RECORD type NUL id */
    struct walk_cursor state;          /* type NUL id NUL field */
    struct walk_cursor hist;           /* KEY_INDEX_HISTORY type NUL id NUL ... */
    bool at_end;
    char cur_type[TS_TYPE_BYTES_MAX + 1];
    char cur_id[TS_ID_BYTES_MAX + 1];
};

/* Read-ahead of a walk's cursors: they read table files front to back. */
#define STORE_WALK_READAHEAD_BYTES (1u << 20)

static int walk_cursor_open(struct store_walk *w, struct walk_cursor *c, enum store_cf cf,
                            const struct key *prefix, const struct key *start)
{
    c->ro = rocksdb_readoptions_create();
    if (c->ro == NULL)
        return TS_ERR_NOMEM;
    if (w->snap != NULL)
        rocksdb_readoptions_set_snapshot(c->ro, w->snap);
    rocksdb_readoptions_set_readahead_size(c->ro, STORE_WALK_READAHEAD_BYTES);
    /* A scan of the whole trial would only evict what the node's reads need. */
    rocksdb_readoptions_set_fill_cache(c->ro, 0);
    c->prefix = *prefix;
    c->upper.len = 0;
    if (prefix->len > 0) {
        memcpy(c->upper.b, prefix->b, prefix->len);
        size_t n = prefix->len;
        while (n > 0 && c->upper.b[n - 1] == 0xff)
            n--;
        if (n > 0) {
            c->upper.b[n - 1]++;
            c->upper.len = n;
            rocksdb_readoptions_set_iterate_upper_bound(c->ro, (const char *)c->upper.b,
                                                        c->upper.len);
        }
    }
    c->it = rocksdb_create_iterator_cf(w->s->db, c->ro, w->s->cf[cf]);
    if (c->it == NULL) {
        rocksdb_readoptions_destroy(c->ro);
        c->ro = NULL;
        return TS_ERR_NOMEM;
    }
    const struct key *at = start != NULL ? start : prefix;
    if (at->len > 0)
        rocksdb_iter_seek(c->it, (const char *)at->b, at->len);
    else
        rocksdb_iter_seek_to_first(c->it);
    return 0;
}

/* The cursor's key when it is valid and within its prefix, else NULL. */
static const uint8_t *walk_cursor_key(const struct walk_cursor *c, size_t *klen)
{
    if (c->it == NULL || !rocksdb_iter_valid(c->it))
        return NULL;
    const uint8_t *k = (const uint8_t *)rocksdb_iter_key(c->it, klen);
    if (*klen < c->prefix.len || memcmp(k, c->prefix.b, c->prefix.len) != 0)
        return NULL;
    return k;
}

/* Closes the cursor (when open); 0 or its read error. */
static int walk_cursor_close(struct store *s, struct walk_cursor *c)
{
    int rc = 0;
    if (c->it != NULL) {
        char *errptr = NULL;
        rocksdb_iter_get_error(c->it, &errptr);
        rocksdb_iter_destroy(c->it);
        if (errptr != NULL)
            rc = rdb_error(s, errptr, "walk", NULL);
    }
    if (c->ro != NULL)
        rocksdb_readoptions_destroy(c->ro);
    memset(c, 0, sizeof(*c));
    return rc;
}

/* Reads the record cursor's key into cur_type/cur_id (at_end past the last). */
static int walk_load(struct store_walk *w)
{
    size_t klen;
    const uint8_t *k = walk_cursor_key(&w->rec, &klen);
    if (k == NULL) {
        w->at_end = true;
        w->cur_type[0] = w->cur_id[0] = '\0';
        return walk_cursor_close(w->s, &w->rec);
    }
    w->at_end = false;
    if (!split_key((const char *)k + 1, klen - 1, w->cur_type, w->cur_id, NULL))
        return TS_ERR_CORRUPT;
    return 0;
}

int store_walk_open(struct store *s, const char *type, struct store_walk **out)
{
    assert(type != NULL);
    *out = NULL;
    struct store_walk *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return TS_ERR_NOMEM;
    w->s = s;
    snprintf(w->type, sizeof(w->type), "%s", type);
    w->snap = rocksdb_create_snapshot(s->db);
    struct key prefix = {.len = 0};
    key_u8(&prefix, KEY_INDEX_RECORD);
    if (type[0] != '\0' && !key_str0(&prefix, type, TS_TYPE_BYTES_MAX)) {
        w->at_end = true;  /* a type longer than the limit holds nothing */
        *out = w;
        return 0;
    }
    int rc = walk_cursor_open(w, &w->rec, STORE_CF_INDEX, &prefix, NULL);
    if (rc == 0)
        rc = walk_load(w);
    if (rc != 0) {
        store_walk_close(w);
        return rc;
    }
    *out = w;
    return 0;
}

int store_walk_seek(struct store_walk *w, const char *id)
{
    assert(w->type[0] != '\0');
    struct key prefix = {.len = 0}, start;
    key_u8(&prefix, KEY_INDEX_RECORD);
    key_str0(&prefix, w->type, TS_TYPE_BYTES_MAX);
    start = prefix;
    /* The field and history cursors follow with a seek of their own. */
    int rc = walk_cursor_close(w->s, &w->state);
    int rc2 = walk_cursor_close(w->s, &w->hist);
    if (rc == 0)
        rc = rc2;
    rc2 = walk_cursor_close(w->s, &w->rec);
    if (rc == 0)
        rc = rc2;
    if (rc != 0)
        return rc;
    if (!key_bytes(&start, id, strnlen(id, TS_ID_BYTES_MAX))) {
        w->at_end = true;
        return 0;
    }
    rc = walk_cursor_open(w, &w->rec, STORE_CF_INDEX, &prefix, &start);
    return rc != 0 ? rc : walk_load(w);
}

void store_walk_close(struct store_walk *w)
{
    if (w == NULL)
        return;
    walk_cursor_close(w->s, &w->rec);
    walk_cursor_close(w->s, &w->state);
    walk_cursor_close(w->s, &w->hist);
    if (w->snap != NULL)
        rocksdb_release_snapshot(w->s->db, w->snap);
    free(w);
}

const char *store_walk_type(const struct store_walk *w)
{
    return w->at_end ? NULL : w->cur_type;
}

const char *store_walk_id(const struct store_walk *w)
{
    return w->at_end ? NULL : w->cur_id;
}

int store_walk_next(struct store_walk *w)
{
    if (w->at_end)
        return 0;
    rocksdb_iter_next(w->rec.it);
    return walk_load(w);
}

/* (type, id) of a key "type NUL id NUL ..." against the current record, as
 * the keys order: <0 before it, 0 the record's, >0 after; *rest is the byte
 * after the id's NUL.  TS_ERR_CORRUPT (as 2) for a key that does not split. */
static int walk_key_cmp(const struct store_walk *w, const uint8_t *k, size_t klen,
                        size_t *rest)
{
    const uint8_t *tnul = memchr(k, 0, klen);
    if (tnul == NULL)
        return 2;
    size_t tlen = (size_t)(tnul - k);
    const uint8_t *id = tnul + 1;
    const uint8_t *inul = memchr(id, 0, klen - tlen - 1);
    if (inul == NULL)
        return 2;
    size_t ilen = (size_t)(inul - id);
    *rest = (size_t)(inul + 1 - k);
    size_t ctlen = strlen(w->cur_type);
    int c = memcmp(k, w->cur_type, tlen < ctlen ? tlen : ctlen);
    if (c == 0 && tlen != ctlen)
        c = tlen < ctlen ? -1 : 1;
    if (c != 0)
        return c < 0 ? -1 : 1;
    size_t cilen = strlen(w->cur_id);
    c = memcmp(id, w->cur_id, ilen < cilen ? ilen : cilen);
    if (c == 0 && ilen != cilen)
        c = ilen < cilen ? -1 : 1;
    return c < 0 ? -1 : c > 0 ? 1 : 0;
}

/* Opens cursor c, when it is not open yet, at the current record (its
 * prefix: the lead byte when not 0, then the walk's type); an open cursor is
 * stepped forward by its reader. */
static int walk_cursor_reach(struct store_walk *w, struct walk_cursor *c, enum store_cf cf,
                             int lead)
{
    if (c->it != NULL)
        return 0;
    struct key prefix = {.len = 0}, start = {.len = 0};
    if (lead != 0) {
        key_u8(&prefix, (uint8_t)lead);
        key_u8(&start, (uint8_t)lead);
    }
    if (w->type[0] != '\0')
        key_str0(&prefix, w->type, TS_TYPE_BYTES_MAX);
    if (!key_str0(&start, w->cur_type, TS_TYPE_BYTES_MAX) ||
        !key_str0(&start, w->cur_id, TS_ID_BYTES_MAX))
        return TS_ERR_CORRUPT;
    return walk_cursor_open(w, c, cf, &prefix, &start);
}

int store_walk_fields(struct store_walk *w, store_field_cb cb, void *ctx)
{
    if (w->at_end)
        return TS_ERR_NOTFOUND;
    int rc = walk_cursor_reach(w, &w->state, STORE_CF_STATE, 0);
    size_t seen = 0;
    while (rc == 0) {
        size_t klen, rest;
        const uint8_t *k = walk_cursor_key(&w->state, &klen);
        if (k == NULL)
            break;
        int c = walk_key_cmp(w, k, klen, &rest);
        if (c == 2) {
            rc = TS_ERR_CORRUPT;
            break;
        }
        if (c > 0)
            break;
        if (c == 0) {
            size_t vlen;
            const char *v = rocksdb_iter_value(w->state.it, &vlen);
            seen++;
            rc = field_row((const char *)k + rest, klen - rest, v, vlen, cb, ctx);
        }
        rocksdb_iter_next(w->state.it);
    }
    if (rc == 0 && seen == 0)
        rc = TS_ERR_NOTFOUND;
    return rc;
}

int store_walk_history(struct store_walk *w, store_walk_entry_cb cb, void *ctx)
{
    if (w->at_end)
        return TS_ERR_NOTFOUND;
    int rc = walk_cursor_reach(w, &w->hist, STORE_CF_INDEX, KEY_INDEX_HISTORY);
    size_t seen = 0;
    while (rc == 0) {
        size_t klen, rest;
        const uint8_t *k = walk_cursor_key(&w->hist, &klen);
        if (k == NULL)
            break;
        int c = walk_key_cmp(w, k + 1, klen - 1, &rest);
        if (c == 2) {
            rc = TS_ERR_CORRUPT;
            break;
        }
        if (c > 0)
            break;
        if (c < 0) {
            rocksdb_iter_next(w->hist.it);
            continue;
        }
        rest += 1;  /* the lead byte */
        size_t vlen;
        const uint8_t *v = (const uint8_t *)rocksdb_iter_value(w->hist.it, &vlen);
        struct entry_ref ref;
        uint64_t stored_ms;
        if (!history_row(k + rest, klen - rest, v, vlen, &ref, &stored_ms)) {
            rc = TS_ERR_CORRUPT;
            break;
        }
        struct key ok;
        rocksdb_pinnableslice_t *ps = NULL;
        if (!key_oplog(&ok, ref.origin, ref.lane, ref.seq)) {
            rc = TS_ERR_CORRUPT;
            break;
        }
        rc = rdb_get(w->s, STORE_CF_OPLOG, &ok, &ps, NULL);
        if (rc <= 0) {
            rc = rc == 0 ? TS_ERR_CORRUPT : rc;  /* indexed but not held */
            break;
        }
        size_t elen;
        const uint8_t *ev = (const uint8_t *)rocksdb_pinnableslice_value(ps, &elen);
        struct entry e;
        memset(&e, 0, sizeof(e));
        uint8_t hash[TS_HASH_BYTES];
        if (elen <= TS_HASH_BYTES) {
            rc = TS_ERR_CORRUPT;  /* a hole is never indexed */
        } else {
            memcpy(hash, ev, TS_HASH_BYTES);
            rc = entry_from_value(w->s, &ref, ev, elen, &e, NULL);
        }
        rocksdb_pinnableslice_destroy(ps);
        if (rc != 0)
            break;
        seen++;
        rc = cb(ctx, &e, hash, stored_ms);
        entry_release(&e);
        rocksdb_iter_next(w->hist.it);
    }
    if (rc == 0 && seen == 0)
        rc = TS_ERR_NOTFOUND;
    return rc;
}
