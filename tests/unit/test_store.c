/*
 * test_store.c: the RocksDB store against real databases in scratch dirs.
 *
 * Entries are built with the real codec, chained with crypto_chain_hash and
 * their batches signed with a real Ed25519 key (generated with openssl into
 * a 0600 file), so apply, read_batch and verify run exactly as in a node.
 * Proves: apply is atomic and refuses forks, gaps, broken chains and bad
 * signatures; duplicates are skipped; everything survives a reopen; tampered
 * entries are named by store_verify; history, conflicts, records and stats
 * are right; the state digest depends only on the set of entries applied.
 */
#include "unit.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../node/crypto.h"
#include "../../node/merge.h"
#include "../../proto/codec.h"
#include "../../storage/store.h"
#include "../../storage/store_debug.h"

#define TRIAL "trial-1"
#define TB_ENTRIES_MAX 512

/* ---- signing ---- */

static struct crypto_key *test_key;
static struct crypto_pubkey *test_pub;

static void key_setup(void)
{
    if (test_key != NULL)
        return;
    char path[600];
    char cmd[1400];
    snprintf(path, sizeof(path), "%s/node.key", unit_tmpdir("key"));
    snprintf(cmd, sizeof(cmd),
             "openssl genpkey -algorithm ed25519 -out '%s' 2>/dev/null && chmod 600 '%s'", path,
             path);
    CU_ASSERT_FATAL(system(cmd) == 0);
    struct ts_error err = {0};
    CU_ASSERT_FATAL(crypto_key_load(path, &test_key, &err) == 0);
    CU_ASSERT_FATAL(crypto_pubkey_from_key(test_key, &test_pub, &err) == 0);
}

/* The serial of the test key's certificate: every origin of these tests
 * signs with it; other origins and serials are unknown. */
#define TEST_SERIAL "5E"

static int verify_cb(void *ctx, const char *origin, const char *cert_serial, const uint8_t *msg,
                     size_t len, const uint8_t *sig, size_t sig_len)
{
    (void)ctx;
    if (strcmp(origin, "site-101") != 0 && strcmp(origin, "site-102") != 0 &&
        strcmp(origin, "hub-1") != 0)
        return TS_ERR_AUTH;
    if (strcmp(cert_serial, TEST_SERIAL) != 0)
        return TS_ERR_AUTH;
    return crypto_verify(test_pub, msg, len, sig, sig_len) ? 0 : TS_ERR_SIGNATURE;
}

/* ---- building chains and batches ---- */

struct tchain {
    const char *origin;
    uint8_t lane;
    uint64_t seq;
    uint8_t hash[TS_HASH_BYTES];
};

static void tchain_init(struct tchain *c, const char *origin, uint8_t lane)
{
    memset(c, 0, sizeof(*c));
    c->origin = origin;
    c->lane = lane;
}

struct tb {
    struct batch b;
    const uint8_t *ptrs[TB_ENTRIES_MAX];
    size_t lens[TB_ENTRIES_MAX];
    uint8_t *bufs[TB_ENTRIES_MAX];
};

static void tb_begin(struct tb *t, const struct tchain *c)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->b.trial, sizeof(t->b.trial), "%s", TRIAL);
    snprintf(t->b.origin, sizeof(t->b.origin), "%s", c->origin);
    t->b.lane = c->lane;
    t->b.first_seq = c->seq + 1;
    t->b.entries = t->ptrs;
    t->b.entry_lens = t->lens;
}

/* Appends e (origin, lane, seq and prev_hash filled from the chain). */
static void tb_add_entry(struct tb *t, struct tchain *c, struct entry *e)
{
    CU_ASSERT_FATAL(t->b.count < TB_ENTRIES_MAX);
    snprintf(e->origin, sizeof(e->origin), "%s", c->origin);
    e->lane = c->lane;
    e->seq = c->seq + 1;
    memcpy(e->prev_hash, c->hash, TS_HASH_BYTES);
    struct ts_error err = {0};
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = codec_entry_encode(e, &buf, &len, &err);
    if (rc != 0)
        fprintf(stderr, "encode: %s\n", err.msg);
    CU_ASSERT_FATAL(rc == 0);
    uint8_t next[TS_HASH_BYTES];
    crypto_chain_hash(c->hash, buf, len, next);
    memcpy(c->hash, next, TS_HASH_BYTES);
    c->seq++;
    t->bufs[t->b.count] = buf;
    t->ptrs[t->b.count] = buf;
    t->lens[t->b.count] = len;
    t->b.count++;
}

/* Appends an entry writing one field (value "" and nsup 0 allowed). */
static void tb_add(struct tb *t, struct tchain *c, const char *type, const char *id, uint64_t hlc,
                   const char *field, const char *value, const struct entry_ref *sup,
                   size_t nsup)
{
    struct entry e;
    memset(&e, 0, sizeof(e));
    struct field_write w;
    memset(&w, 0, sizeof(w));
    snprintf(w.field, sizeof(w.field), "%s", field);
    w.value = (char *)value;
    w.supersedes = (struct entry_ref *)sup;
    w.supersedes_count = nsup;
    e.hlc = hlc;
    e.wall_ms = hlc >> 16;
    e.user = (char *)"coordinator";
    e.reason = (char *)"";
    snprintf(e.record_type, sizeof(e.record_type), "%s", type);
    snprintf(e.record_id, sizeof(e.record_id), "%s", id);
    snprintf(e.site, sizeof(e.site), "101");
    e.writes = &w;
    e.writes_count = 1;
    tb_add_entry(t, c, &e);
}

static void tb_sign(struct tb *t, const struct tchain *c)
{
    memcpy(t->b.chain_hash, c->hash, TS_HASH_BYTES);
    if (t->b.cert_serial[0] == '\0')
        snprintf(t->b.cert_serial, sizeof(t->b.cert_serial), "%s", TEST_SERIAL);
    uint8_t msg[256];
    int len = codec_batch_sign_bytes(TRIAL, t->b.origin, t->b.cert_serial, t->b.lane,
                                     t->b.first_seq + t->b.count - 1, t->b.chain_hash, msg,
                                     sizeof(msg));
    CU_ASSERT_FATAL(len > 0);
    struct ts_error err = {0};
    key_setup();
    CU_ASSERT_FATAL(crypto_sign(test_key, msg, (size_t)len, t->b.signature, &t->b.signature_len,
                                &err) == 0);
}

static void tb_free(struct tb *t)
{
    for (size_t i = 0; i < t->b.count; i++)
        free(t->bufs[i]);
    memset(t, 0, sizeof(*t));
}

static struct tb *tb_new(void)
{
    struct tb *t = calloc(1, sizeof(*t));
    CU_ASSERT_FATAL(t != NULL);
    return t;
}

static struct store *open_store(const char *tag)
{
    struct store *s = NULL;
    struct ts_error err = {0};
    int rc = store_open(unit_tmpdir(tag), &s, &err);
    if (rc != 0)
        fprintf(stderr, "store_open: %s\n", err.msg);
    CU_ASSERT_FATAL(rc == 0);
    return s;
}

static int apply(struct store *s, const struct batch *b, size_t n, struct store_apply_result *res,
                 struct ts_error *err)
{
    return store_apply(s, TRIAL, b, n, verify_cb, NULL, true, 1000, res, err);
}

static void apply_ok(struct store *s, const struct batch *b, size_t n)
{
    struct ts_error err = {0};
    int rc = apply(s, b, n, NULL, &err);
    if (rc != 0)
        fprintf(stderr, "apply: %s\n", err.msg);
    CU_ASSERT_FATAL(rc == 0);
}

static void digest_of(struct store *s, uint8_t out[TS_HASH_BYTES])
{
    CU_ASSERT_FATAL(store_digest(s, out) == 0);
}

/* The displayed value of a field, copied into buf ("" when none). */
static const char *field_value(struct store *s, const char *type, const char *id,
                               const char *field, char *buf, size_t cap)
{
    struct field_state st;
    buf[0] = '\0';
    CU_ASSERT_FATAL(store_field_get(s, type, id, field, &st) == 0);
    int i = merge_display(type, field, &st);
    if (i >= 0)
        snprintf(buf, cap, "%s", st.live[i].value);
    field_state_release(&st);
    return buf;
}

/* A store with two signed batches of site-101/bulk: seqs 1-3 and 4-5. */
static void fill_basic(struct store *s, struct tchain *c)
{
    struct tb *t = tb_new();
    tb_begin(t, c);
    tb_add(t, c, "subject", "101-0001", 1000 << 16, "sex", "F", NULL, 0);
    tb_add(t, c, "subject", "101-0001", 1001 << 16, "armcd", "A", NULL, 0);
    tb_add(t, c, "visit", "101-0001/V1", 1002 << 16, "svstdtc", "2024-01-02", NULL, 0);
    tb_sign(t, c);
    apply_ok(s, &t->b, 1);
    tb_free(t);
    tb_begin(t, c);
    tb_add(t, c, "visit", "101-0001/V2", 1003 << 16, "svstdtc", "2024-02-02", NULL, 0);
    tb_add(t, c, "ae", "101-0001-AE-001", 1004 << 16, "aeterm", "Headache", NULL, 0);
    tb_sign(t, c);
    apply_ok(s, &t->b, 1);
    tb_free(t);
    free(t);
}

/* ---- tests ---- */

static int count_cb(void *ctx, const char *type, const char *id)
{
    (void)type;
    (void)id;
    (*(int *)ctx)++;
    return 0;
}

static void test_store_append_read_back(void)
{
    struct store *s = open_store("readback");
    struct tchain c;
    tchain_init(&c, "site-101", LANE_BULK);
    fill_basic(s, &c);

    uint64_t seq;
    uint8_t hash[TS_HASH_BYTES];
    CU_ASSERT(store_head(s, "site-101", LANE_BULK, &seq, hash) == 0);
    CU_ASSERT(seq == 5);
    CU_ASSERT(memcmp(hash, c.hash, TS_HASH_BYTES) == 0);
    CU_ASSERT(store_head(s, "site-101", LANE_SAFETY, &seq, hash) == 0);
    CU_ASSERT(seq == 0);

    struct entry_ref ref = {.lane = LANE_BULK, .seq = 3};
    snprintf(ref.origin, sizeof(ref.origin), "site-101");
    struct entry e;
    struct ts_error err = {0};
    CU_ASSERT_FATAL(store_entry_get(s, &ref, &e, &err) == 0);
    CU_ASSERT(e.seq == 3);
    CU_ASSERT(strcmp(e.record_type, "visit") == 0);
    CU_ASSERT(strcmp(e.record_id, "101-0001/V1") == 0);
    CU_ASSERT(e.writes_count == 1);
    CU_ASSERT(strcmp(e.writes[0].value, "2024-01-02") == 0);
    entry_release(&e);
    ref.seq = 6;
    CU_ASSERT(store_entry_get(s, &ref, &e, &err) == TS_ERR_NOTFOUND);

    char buf[64];
    CU_ASSERT(strcmp(field_value(s, "subject", "101-0001", "sex", buf, sizeof(buf)), "F") == 0);
    CU_ASSERT(strcmp(field_value(s, "subject", "101-0001", "brthdtc", buf, sizeof(buf)), "") == 0);

    struct vv_item *vv;
    size_t n;
    CU_ASSERT_FATAL(store_vv(s, &vv, &n) == 0);
    CU_ASSERT(n == 1);
    if (n == 1) {
        CU_ASSERT(strcmp(vv[0].origin, "site-101") == 0);
        CU_ASSERT(vv[0].lane == LANE_BULK);
        CU_ASSERT(vv[0].seq == 5);
    }
    free(vv);
    CU_ASSERT(store_hlc_max(s) == (uint64_t)1004 << 16);

    int records = 0;
    CU_ASSERT(store_records(s, "", count_cb, &records) == 0);
    CU_ASSERT(records == 4);
    records = 0;
    CU_ASSERT(store_records(s, "visit", count_cb, &records) == 0);
    CU_ASSERT(records == 2);
    store_close(s);
}

static int fields_cb(void *ctx, const char *field, const struct field_state *st)
{
    char *out = ctx;
    size_t len = strlen(out);
    snprintf(out + len, 128 - len, "%s=%s;", field, st->live_count ? st->live[0].value : "");
    return 0;
}

static void test_store_record_fields(void)
{
    struct store *s = open_store("fields");
    struct tchain c;
    tchain_init(&c, "site-101", LANE_BULK);
    fill_basic(s, &c);
    char out[128] = "";
    CU_ASSERT(store_record_fields(s, "subject", "101-0001", fields_cb, out) == 0);
    CU_ASSERT(strcmp(out, "armcd=A;sex=F;") == 0);
    CU_ASSERT(store_record_fields(s, "subject", "101-0002", fields_cb, out) == TS_ERR_NOTFOUND);
    /* "101-0001" must not match the prefix of "101-0001/V1"'s keys. */
    CU_ASSERT(store_record_fields(s, "visit", "101-0001", fields_cb, out) == TS_ERR_NOTFOUND);
    store_close(s);
}

struct snapshot {
    uint64_t seq;
    uint8_t hash[TS_HASH_BYTES];
    uint8_t digest[TS_HASH_BYTES];
    struct store_stats stats;
    uint64_t hlc;
};

static void snap(struct store *s, struct snapshot *p)
{
    memset(p, 0, sizeof(*p));
    store_head(s, "site-101", LANE_BULK, &p->seq, p->hash);
    digest_of(s, p->digest);
    store_stats(s, &p->stats);
    p->stats.bytes_on_disk = 0;
    p->hlc = store_hlc_max(s);
}

static bool snap_equal(const struct snapshot *a, const struct snapshot *b)
{
    return a->seq == b->seq && memcmp(a->hash, b->hash, TS_HASH_BYTES) == 0 &&
           memcmp(a->digest, b->digest, TS_HASH_BYTES) == 0 &&
           a->stats.entries == b->stats.entries && a->stats.records == b->stats.records &&
           a->stats.conflicts == b->stats.conflicts && a->hlc == b->hlc;
}

static void test_store_apply_atomic(void)
{
    struct store *s = open_store("atomic");
    struct tchain c, c2;
    tchain_init(&c, "site-101", LANE_BULK);
    fill_basic(s, &c);
    struct snapshot before, after;
    snap(s, &before);

    /* Batch 1 is good (another chain); batch 2 has a broken entry in the middle. */
    tchain_init(&c2, "site-102", LANE_SAFETY);
    struct tb *t1 = tb_new(), *t2 = tb_new();
    tb_begin(t1, &c2);
    tb_add(t1, &c2, "ae", "102-0001-AE-001", 2000 << 16, "aeser", "Y", NULL, 0);
    tb_sign(t1, &c2);
    tb_begin(t2, &c);
    tb_add(t2, &c, "subject", "101-0001", 2001 << 16, "sex", "M", NULL, 0);
    tb_add(t2, &c, "subject", "101-0002", 2002 << 16, "sex", "M", NULL, 0);
    tb_add(t2, &c, "subject", "101-0003", 2003 << 16, "sex", "M", NULL, 0);
    tb_sign(t2, &c);
    /* Entry 7's bytes no longer decode. */
    uint8_t junk[4] = {0xff, 0xff, 0xff, 0xff};
    const uint8_t *saved = t2->ptrs[1];
    size_t saved_len = t2->lens[1];
    t2->ptrs[1] = junk;
    t2->lens[1] = sizeof(junk);

    struct batch both[2] = {t1->b, t2->b};
    struct ts_error err = {0};
    struct store_apply_result res;
    int rc = apply(s, both, 2, &res, &err);
    CU_ASSERT(rc == TS_ERR_CORRUPT);
    CU_ASSERT(strstr(err.msg, "site-101/bulk/7") != NULL);
    snap(s, &after);
    CU_ASSERT(snap_equal(&before, &after));
    uint64_t seq;
    store_head(s, "site-102", LANE_SAFETY, &seq, NULL);
    CU_ASSERT(seq == 0);
    char buf[16];
    CU_ASSERT(strcmp(field_value(s, "subject", "101-0001", "sex", buf, sizeof(buf)), "F") == 0);
    CU_ASSERT(strcmp(field_value(s, "subject", "101-0002", "sex", buf, sizeof(buf)), "") == 0);

    /* Mended, the same call applies everything. */
    t2->ptrs[1] = saved;
    t2->lens[1] = saved_len;
    both[1] = t2->b;
    CU_ASSERT(apply(s, both, 2, &res, &err) == 0);
    CU_ASSERT(res.applied == 4);
    CU_ASSERT(res.duplicates == 0);
    store_head(s, "site-101", LANE_BULK, &seq, NULL);
    CU_ASSERT(seq == 8);
    tb_free(t1);
    tb_free(t2);
    free(t1);
    free(t2);
    store_close(s);
}

static void test_store_duplicates_skipped(void)
{
    struct store *s = open_store("dups");
    struct tchain c;
    tchain_init(&c, "site-101", LANE_BULK);
    struct tchain start = c;
    struct tb *t = tb_new();
    tb_begin(t, &c);
    for (int i = 0; i < 6; i++) {
        char id[32];
        snprintf(id, sizeof(id), "101-%04d", i);
        tb_add(t, &c, "subject", id, (uint64_t)(100 + i) << 16, "sex", "F", NULL, 0);
    }
    tb_sign(t, &c);

    /* The same batch twice in one call: the second copy is all duplicates. */
    struct batch twice[2] = {t->b, t->b};
    struct store_apply_result res;
    struct ts_error err = {0};
    CU_ASSERT_FATAL(apply(s, twice, 2, &res, &err) == 0);
    CU_ASSERT(res.applied == 6);
    CU_ASSERT(res.duplicates == 6);
    struct snapshot a, b;
    snap(s, &a);
    CU_ASSERT(a.stats.entries == 6);

    /* Again in a later call. */
    CU_ASSERT(apply(s, &t->b, 1, &res, &err) == 0);
    CU_ASSERT(res.applied == 0);
    CU_ASSERT(res.duplicates == 6);
    snap(s, &b);
    CU_ASSERT(snap_equal(&a, &b));

    /* A batch overlapping the head: 4..8, of which 7 and 8 are new. */
    struct tb *t2 = tb_new();
    struct tchain c2 = start;
    tb_begin(t2, &c2);
    struct tb *skip = tb_new();
    tb_begin(skip, &c2);
    for (int i = 0; i < 3; i++) {
        char id[32];
        snprintf(id, sizeof(id), "101-%04d", i);
        tb_add(skip, &c2, "subject", id, (uint64_t)(100 + i) << 16, "sex", "F", NULL, 0);
    }
    tb_begin(t2, &c2);
    for (int i = 3; i < 8; i++) {
        char id[32];
        snprintf(id, sizeof(id), "101-%04d", i);
        tb_add(t2, &c2, "subject", id, (uint64_t)(100 + i) << 16, "sex", "F", NULL, 0);
    }
    tb_sign(t2, &c2);
    CU_ASSERT(apply(s, &t2->b, 1, &res, &err) == 0);
    CU_ASSERT(res.applied == 2);
    CU_ASSERT(res.duplicates == 3);
    uint64_t seq;
    store_head(s, "site-101", LANE_BULK, &seq, NULL);
    CU_ASSERT(seq == 8);
    tb_free(t);
    tb_free(t2);
    tb_free(skip);
    free(t);
    free(t2);
    free(skip);
    store_close(s);
}

/*
 * A hub chain of three entries, the middle one about another site: the
 * receiver gets it as a hole (the chain hash after it) and still verifies
 * the chain; state never sees it; a forged hole fails the chain.
 */
static void test_store_holes(void)
{
    struct store *s = open_store("holes");
    struct tchain c;
    tchain_init(&c, "hub-1", LANE_BULK);
    struct tb *t = tb_new();
    tb_begin(t, &c);
    tb_add(t, &c, "subject", "101-0001", 100 << 16, "sex", "F", NULL, 0);
    tb_add(t, &c, "subject", "102-0001", 101 << 16, "sex", "M", NULL, 0);
    uint8_t hole_hash[TS_HASH_BYTES];
    memcpy(hole_hash, c.hash, TS_HASH_BYTES);
    tb_add(t, &c, "subject", "101-0002", 102 << 16, "sex", "U", NULL, 0);
    tb_sign(t, &c);

    /* A forged hole: the next entry's prev_hash no longer follows. */
    const uint8_t *real = t->ptrs[1];
    size_t real_len = t->lens[1];
    uint8_t forged[TS_HASH_BYTES];
    memset(forged, 0x5a, sizeof(forged));
    t->ptrs[1] = forged;
    t->lens[1] = BATCH_HOLE_LEN;
    struct ts_error err = {0};
    CU_ASSERT(apply(s, &t->b, 1, NULL, &err) == TS_ERR_CHAIN);
    uint64_t seq = 99;
    store_head(s, "hub-1", LANE_BULK, &seq, NULL);
    CU_ASSERT(seq == 0);

    /* The true hole applies: the signature covers the whole chain. */
    t->ptrs[1] = hole_hash;
    struct store_apply_result res;
    CU_ASSERT_FATAL(apply(s, &t->b, 1, &res, &err) == 0);
    CU_ASSERT(res.applied == 3);
    store_head(s, "hub-1", LANE_BULK, &seq, NULL);
    CU_ASSERT(seq == 3);
    char buf[16];
    CU_ASSERT_STRING_EQUAL(field_value(s, "subject", "101-0002", "sex", buf, sizeof(buf)), "U");
    CU_ASSERT(store_record_exists(s, "subject", "101-0002"));
    CU_ASSERT(!store_record_exists(s, "subject", "102-0001"));  /* held only as a hole */
    CU_ASSERT(!store_record_exists(s, "visit", "101-0002"));
    struct field_state st;
    CU_ASSERT_FATAL(store_field_get(s, "subject", "102-0001", "sex", &st) == 0);
    CU_ASSERT(st.live_count == 0);
    field_state_release(&st);
    struct entry_ref ref = {.lane = LANE_BULK, .seq = 2};
    snprintf(ref.origin, sizeof(ref.origin), "hub-1");
    struct entry e;
    CU_ASSERT(store_entry_get(s, &ref, &e, &err) == TS_ERR_NOTFOUND);

    /* Again, as a hole and as the full entry: duplicates, nothing changes. */
    CU_ASSERT(apply(s, &t->b, 1, &res, &err) == 0);
    CU_ASSERT(res.duplicates == 3);
    t->ptrs[1] = real;
    t->lens[1] = real_len;
    CU_ASSERT(apply(s, &t->b, 1, &res, &err) == 0);
    CU_ASSERT(res.duplicates == 3);

    /* The store verifies (its state too: holes reach no state), and refuses
     * to relay a hole. */
    CU_ASSERT(store_verify(s, TRIAL, verify_cb, NULL, &err) == 0);
    uint64_t fields = 0;
    CU_ASSERT(store_verify_state(s, &fields, &err) == 0);
    CU_ASSERT(fields == 2);
    struct batch out;
    CU_ASSERT(store_read_batch(s, TRIAL, "hub-1", LANE_BULK, 2, 10, 1 << 20, &out, &err) ==
              TS_ERR_NOTFOUND);
    store_batch_release(&out);
    tb_free(t);
    free(t);
    store_close(s);
}

static void test_store_fork_detected(void)
{
    struct store *s = open_store("fork");
    struct tchain c;
    tchain_init(&c, "site-101", LANE_BULK);
    struct tchain start = c;
    fill_basic(s, &c);
    struct snapshot before, after;
    snap(s, &before);

    /* The same origin signs a different entry 2 (same prev_hash). */
    struct tchain f = start;
    struct tb *t = tb_new();
    tb_begin(t, &f);
    tb_add(t, &f, "subject", "101-0001", 1000 << 16, "sex", "F", NULL, 0);
    tb_add(t, &f, "subject", "101-0001", 1001 << 16, "armcd", "B", NULL, 0);
    tb_sign(t, &f);
    struct ts_error err = {0};
    int rc = apply(s, &t->b, 1, NULL, &err);
    CU_ASSERT(rc == TS_ERR_FORK);
    CU_ASSERT(strstr(err.msg, "site-101/bulk/2") != NULL);
    snap(s, &after);
    CU_ASSERT(snap_equal(&before, &after));
    tb_free(t);
    free(t);
    store_close(s);
}

static void test_store_gap_refused(void)
{
    struct store *s = open_store("gap");
    struct tchain c;
    tchain_init(&c, "site-101", LANE_BULK);
    fill_basic(s, &c);
    struct tb *skipped = tb_new(), *t = tb_new();
    tb_begin(skipped, &c);
    tb_add(skipped, &c, "subject", "101-0009", 3000 << 16, "sex", "F", NULL, 0);
    tb_begin(t, &c);
    tb_add(t, &c, "subject", "101-0009", 3001 << 16, "sex", "M", NULL, 0);
    tb_sign(t, &c);
    struct ts_error err = {0};
    CU_ASSERT(apply(s, &t->b, 1, NULL, &err) == TS_ERR_GAP);
    CU_ASSERT(strstr(err.msg, "site-101/bulk/7") != NULL);

    /* A new chain must start at 1. */
    struct tchain c2;
    tchain_init(&c2, "site-102", LANE_BULK);
    struct tb *t2 = tb_new();
    tb_begin(t2, &c2);
    tb_add(t2, &c2, "subject", "102-0001", 3000 << 16, "sex", "F", NULL, 0);
    tb_free(t2);  /* seq 1 is never sent */
    tb_begin(t2, &c2);
    tb_add(t2, &c2, "subject", "102-0001", 3001 << 16, "sex", "F", NULL, 0);
    tb_sign(t2, &c2);
    CU_ASSERT(apply(s, &t2->b, 1, NULL, &err) == TS_ERR_GAP);
    uint64_t seq;
    store_head(s, "site-101", LANE_BULK, &seq, NULL);
    CU_ASSERT(seq == 5);
    tb_free(skipped);
    tb_free(t);
    tb_free(t2);
    free(skipped);
    free(t);
    free(t2);
    store_close(s);
}

static void test_store_chain_broken(void)
{
    struct store *s = open_store("chain");
    struct tchain c;
    tchain_init(&c, "site-101", LANE_BULK);
    fill_basic(s, &c);
    struct snapshot before, after;
    snap(s, &before);

    /* Entry 6 names a wrong prev_hash. */
    struct tchain bad = c;
    bad.hash[0] ^= 1;
    struct tb *t = tb_new();
    tb_begin(t, &bad);
    tb_add(t, &bad, "subject", "101-0001", 3000 << 16, "sex", "M", NULL, 0);
    tb_sign(t, &bad);
    struct ts_error err = {0};
    CU_ASSERT(apply(s, &t->b, 1, NULL, &err) == TS_ERR_CHAIN);
    CU_ASSERT(strstr(err.msg, "site-101/bulk/6") != NULL);
    tb_free(t);

    /* Good entries, but the batch claims (and signs) another chain hash. */
    struct tchain good = c;
    tb_begin(t, &good);
    tb_add(t, &good, "subject", "101-0001", 3000 << 16, "sex", "M", NULL, 0);
    good.hash[5] ^= 0x10;
    tb_sign(t, &good);
    CU_ASSERT(apply(s, &t->b, 1, NULL, &err) == TS_ERR_CHAIN);
    CU_ASSERT(strstr(err.msg, "site-101/bulk/6") != NULL);
    snap(s, &after);
    CU_ASSERT(snap_equal(&before, &after));
    tb_free(t);
    free(t);
    store_close(s);
}

static void test_store_bad_signature_refused(void)
{
    struct store *s = open_store("sig");
    struct tchain c;
    tchain_init(&c, "site-101", LANE_BULK);
    struct tb *t = tb_new();
    tb_begin(t, &c);
    tb_add(t, &c, "subject", "101-0001", 1000 << 16, "sex", "F", NULL, 0);
    tb_sign(t, &c);
    t->b.signature[10] ^= 0x01;
    struct ts_error err = {0};
    CU_ASSERT(apply(s, &t->b, 1, NULL, &err) == TS_ERR_SIGNATURE);
    CU_ASSERT(strstr(err.msg, "site-101/bulk/1") != NULL);
    uint64_t seq;
    store_head(s, "site-101", LANE_BULK, &seq, NULL);
    CU_ASSERT(seq == 0);

    /* A signature for another trial does not verify here. */
    t->b.signature[10] ^= 0x01;
    CU_ASSERT(store_apply(s, "trial-2", &t->b, 1, verify_cb, NULL, true, 1, NULL, &err) ==
              TS_ERR_AUTH);  /* the batch names trial-1 */
    snprintf(t->b.trial, sizeof(t->b.trial), "%s", "");
    CU_ASSERT(store_apply(s, "trial-2", &t->b, 1, verify_cb, NULL, true, 1, NULL, &err) ==
              TS_ERR_SIGNATURE);
    tb_free(t);

    /* An origin nobody knows. */
    struct tchain u;
    tchain_init(&u, "site-999", LANE_BULK);
    tb_begin(t, &u);
    tb_add(t, &u, "subject", "999-0001", 1000 << 16, "sex", "F", NULL, 0);
    tb_sign(t, &u);
    CU_ASSERT(apply(s, &t->b, 1, NULL, &err) == TS_ERR_AUTH);
    struct store_stats st;
    store_stats(s, &st);
    CU_ASSERT(st.entries == 0);
    tb_free(t);
    free(t);
    store_close(s);
}

static void test_store_entry_must_match_batch(void)
{
    struct store *s = open_store("mismatch");
    struct tchain c, other;
    tchain_init(&c, "site-101", LANE_BULK);
    tchain_init(&other, "site-102", LANE_BULK);
    struct tb *t = tb_new();
    /* An entry of site-102 inside a batch that says site-101. */
    tb_begin(t, &c);
    tb_add(t, &other, "subject", "102-0001", 1000 << 16, "sex", "F", NULL, 0);
    tb_sign(t, &other);
    struct ts_error err = {0};
    CU_ASSERT(store_apply(s, TRIAL, &t->b, 1, NULL, NULL, true, 1, NULL, &err) == TS_ERR_CORRUPT);
    CU_ASSERT(strstr(err.msg, "site-101/bulk/1") != NULL);
    tb_free(t);
    free(t);
    store_close(s);
}

static void test_store_reopen_keeps_everything(void)
{
    const char *dir = unit_tmpdir("reopen");
    char path[512];
    snprintf(path, sizeof(path), "%s", dir);
    struct store *s = NULL;
    struct ts_error err = {0};
    CU_ASSERT_FATAL(store_open(path, &s, &err) == 0);
    struct tchain c, c2;
    tchain_init(&c, "site-101", LANE_BULK);
    tchain_init(&c2, "hub-1", LANE_SAFETY);
    fill_basic(s, &c);
    struct tb *t = tb_new();
    tb_begin(t, &c2);
    tb_add(t, &c2, "subject", "101-0001", 9000 << 16, "sex", "M", NULL, 0);
    tb_sign(t, &c2);
    apply_ok(s, &t->b, 1);
    CU_ASSERT(store_meta_put(s, "membership", "abc", 3, true, &err) == 0);

    struct snapshot before, after;
    snap(s, &before);
    struct vv_item *vv1, *vv2;
    size_t n1, n2;
    store_vv(s, &vv1, &n1);
    store_close(s);

    CU_ASSERT_FATAL(store_open(path, &s, &err) == 0);
    snap(s, &after);
    CU_ASSERT(snap_equal(&before, &after));
    CU_ASSERT(after.stats.entries == 6);
    CU_ASSERT(after.stats.conflicts == 1);
    CU_ASSERT(store_hlc_max(s) == (uint64_t)9000 << 16);
    store_vv(s, &vv2, &n2);
    CU_ASSERT(n1 == 2 && n2 == 2);
    CU_ASSERT(n1 == n2 && memcmp(vv1, vv2, n1 * sizeof(*vv1)) == 0);
    if (n2 == 2) {
        CU_ASSERT(strcmp(vv2[0].origin, "hub-1") == 0);
        CU_ASSERT(strcmp(vv2[1].origin, "site-101") == 0);
    }
    free(vv1);
    free(vv2);
    char *val;
    size_t len;
    CU_ASSERT(store_meta_get(s, "membership", &val, &len) == 0);
    CU_ASSERT(len == 3 && memcmp(val, "abc", 3) == 0);
    free(val);
    CU_ASSERT(store_verify(s, TRIAL, verify_cb, NULL, &err) == 0);

    /* And the chain goes on where it stopped. */
    tb_free(t);
    tb_begin(t, &c);
    tb_add(t, &c, "subject", "101-0005", 9001 << 16, "sex", "M", NULL, 0);
    tb_sign(t, &c);
    apply_ok(s, &t->b, 1);
    tb_free(t);
    free(t);
    store_close(s);
}

static void test_store_tamper_detected(void)
{
    struct store *s = open_store("tamper");
    struct tchain c, c2;
    tchain_init(&c, "site-101", LANE_BULK);
    tchain_init(&c2, "site-102", LANE_BULK);
    fill_basic(s, &c);
    struct tb *t = tb_new();
    tb_begin(t, &c2);
    tb_add(t, &c2, "subject", "102-0001", 1000 << 16, "sex", "F", NULL, 0);
    tb_sign(t, &c2);
    apply_ok(s, &t->b, 1);
    tb_free(t);
    free(t);

    struct ts_error err = {0};
    CU_ASSERT(store_verify(s, TRIAL, verify_cb, NULL, &err) == 0);
    struct entry_ref ref = {.lane = LANE_BULK, .seq = 4};
    snprintf(ref.origin, sizeof(ref.origin), "site-101");
    /* Flip a byte near the end: inside the value of the visit date. */
    struct entry e;
    CU_ASSERT_FATAL(store_entry_get(s, &ref, &e, &err) == 0);
    entry_release(&e);
    CU_ASSERT(store_debug_corrupt(s, &ref, 100000) == TS_ERR_INVALID);
    CU_ASSERT_FATAL(store_debug_corrupt(s, &ref, 40) == 0);
    int rc = store_verify(s, TRIAL, verify_cb, NULL, &err);
    CU_ASSERT(rc == TS_ERR_CORRUPT);
    CU_ASSERT(strstr(err.msg, "site-101/bulk/4") != NULL);
    /* Flipped back, the store verifies again. */
    CU_ASSERT_FATAL(store_debug_corrupt(s, &ref, 40) == 0);
    CU_ASSERT(store_verify(s, TRIAL, verify_cb, NULL, &err) == 0);

    /* The last byte is inside prev_hash: the entry still decodes, the chain breaks. */
    struct entry held;
    CU_ASSERT_FATAL(store_entry_get(s, &ref, &held, &err) == 0);
    uint8_t *bytes = NULL;
    size_t len = 0;
    CU_ASSERT_FATAL(codec_entry_encode(&held, &bytes, &len, &err) == 0);
    entry_release(&held);
    free(bytes);
    CU_ASSERT_FATAL(store_debug_corrupt(s, &ref, len - 1) == 0);
    CU_ASSERT(store_entry_get(s, &ref, &held, &err) == 0);
    entry_release(&held);
    rc = store_verify(s, TRIAL, verify_cb, NULL, &err);
    CU_ASSERT(rc == TS_ERR_CORRUPT);
    CU_ASSERT(strstr(err.msg, "site-101/bulk/4") != NULL);
    CU_ASSERT(strstr(err.msg, "prev_hash") != NULL);
    CU_ASSERT_FATAL(store_debug_corrupt(s, &ref, len - 1) == 0);
    CU_ASSERT(store_verify(s, TRIAL, verify_cb, NULL, &err) == 0);

    /* A signature made for another trial does not verify. */
    CU_ASSERT(store_verify(s, "trial-2", verify_cb, NULL, &err) == TS_ERR_CORRUPT);
    CU_ASSERT(strstr(err.msg, "signature") != NULL);
    store_close(s);
}

/* Writes st, with its first live value replaced by value, as the stored state. */
static void state_edit(struct store *s, const char *type, const char *id, const char *field,
                       const char *value)
{
    struct field_state st;
    CU_ASSERT_FATAL(store_field_get(s, type, id, field, &st) == 0);
    CU_ASSERT_FATAL(st.live_count == 1);
    free(st.live[0].value);
    st.live[0].value = strdup(value);
    CU_ASSERT_FATAL(st.live[0].value != NULL);
    uint8_t *enc = NULL;
    size_t len = 0;
    CU_ASSERT_FATAL(merge_field_encode(&st, &enc, &len) == 0);
    CU_ASSERT_FATAL(store_debug_state_put(s, type, id, field, enc, len) == 0);
    free(enc);
    field_state_release(&st);
}

static void test_store_state_edit_detected(void)
{
    struct store *s = open_store("state-edit");
    struct tchain c, c2;
    tchain_init(&c, "site-101", LANE_BULK);
    tchain_init(&c2, "site-102", LANE_BULK);
    fill_basic(s, &c);
    struct tb *t = tb_new();
    tb_begin(t, &c2);
    tb_add(t, &c2, "subject", "102-0001", 1000 << 16, "sex", "F", NULL, 0);
    tb_sign(t, &c2);
    apply_ok(s, &t->b, 1);
    tb_free(t);
    free(t);

    struct ts_error err = {0};
    uint64_t fields = 0;
    CU_ASSERT(store_verify_state(s, &fields, &err) == 0);
    CU_ASSERT(fields == 6);

    struct field_state armcd;
    CU_ASSERT_FATAL(store_field_get(s, "subject", "101-0001", "armcd", &armcd) == 0);
    uint8_t *armcd_enc = NULL;
    size_t armcd_len = 0;
    CU_ASSERT_FATAL(merge_field_encode(&armcd, &armcd_enc, &armcd_len) == 0);
    field_state_release(&armcd);

    /* One value edited in place: named by record and field, both values shown. */
    state_edit(s, "subject", "101-0001", "sex", "M");
    CU_ASSERT(store_verify(s, TRIAL, verify_cb, NULL, &err) == 0);  /* the oplog is intact */
    CU_ASSERT(store_verify_state(s, NULL, &err) == TS_ERR_CORRUPT);
    CU_ASSERT(strstr(err.msg, "record subject 101-0001 field sex:") != NULL);
    CU_ASSERT(strstr(err.msg, "stored shows \"M\"") != NULL);
    CU_ASSERT(strstr(err.msg, "the oplog gives \"F\"") != NULL);
    state_edit(s, "subject", "101-0001", "sex", "F");
    CU_ASSERT(store_verify_state(s, NULL, &err) == 0);

    /* The last record of the store, edited. */
    state_edit(s, "visit", "101-0001/V2", "svstdtc", "2024-02-03");
    CU_ASSERT(store_verify_state(s, NULL, &err) == TS_ERR_CORRUPT);
    CU_ASSERT(strstr(err.msg, "record visit 101-0001/V2 field svstdtc:") != NULL);
    state_edit(s, "visit", "101-0001/V2", "svstdtc", "2024-02-02");

    /* Bytes that are no state at all. */
    struct field_state st;
    CU_ASSERT_FATAL(store_field_get(s, "ae", "101-0001-AE-001", "aeterm", &st) == 0);
    uint8_t *enc = NULL;
    size_t len = 0;
    CU_ASSERT_FATAL(merge_field_encode(&st, &enc, &len) == 0);
    CU_ASSERT_FATAL(store_debug_state_put(s, "ae", "101-0001-AE-001", "aeterm",
                                          (const uint8_t *)"xx", 2) == 0);
    CU_ASSERT(store_verify_state(s, NULL, &err) == TS_ERR_CORRUPT);
    CU_ASSERT(strstr(err.msg, "record ae 101-0001-AE-001 field aeterm:") != NULL);

    /* A stored field no entry writes, then a deleted one. */
    CU_ASSERT_FATAL(store_debug_state_put(s, "ae", "101-0001-AE-001", "aeterm", enc, len) == 0);
    CU_ASSERT_FATAL(store_debug_state_put(s, "subject", "101-0001", "race", enc, len) == 0);
    CU_ASSERT(store_verify_state(s, NULL, &err) == TS_ERR_CORRUPT);
    CU_ASSERT(strstr(err.msg, "record subject 101-0001 field race: a state is stored but no "
                              "entry") != NULL);
    CU_ASSERT_FATAL(store_debug_state_put(s, "subject", "101-0001", "race", NULL, 0) == 0);
    CU_ASSERT(store_verify_state(s, NULL, &err) == 0);
    state_edit(s, "subject", "101-0001", "armcd", "A");  /* (re)written, unchanged */
    CU_ASSERT(store_verify_state(s, NULL, &err) == 0);
    CU_ASSERT_FATAL(store_debug_state_put(s, "subject", "101-0001", "armcd", NULL, 0) == 0);
    CU_ASSERT(store_verify_state(s, NULL, &err) == TS_ERR_CORRUPT);
    CU_ASSERT(strstr(err.msg, "record subject 101-0001 field armcd: the oplog writes it but no "
                              "state is stored") != NULL);

    /* Records no entry writes: before the first, between two, after the last. */
    const char *ghosts[][2] = {{"aa", "1"}, {"subject", "101-0002"}, {"zz", "9"}};
    CU_ASSERT_FATAL(store_debug_state_put(s, "subject", "101-0001", "armcd", NULL, 0) == 0);
    CU_ASSERT_FATAL(store_debug_state_put(s, "subject", "101-0001", "armcd", enc, len) == 0);
    /* ...the same bytes as another field's: not this field's state. */
    CU_ASSERT(store_verify_state(s, NULL, &err) == TS_ERR_CORRUPT);
    CU_ASSERT_FATAL(store_debug_state_put(s, "subject", "101-0001", "armcd", armcd_enc,
                                          armcd_len) == 0);
    CU_ASSERT(store_verify_state(s, NULL, &err) == 0);
    for (size_t i = 0; i < 3; i++) {
        CU_ASSERT_FATAL(store_debug_state_put(s, ghosts[i][0], ghosts[i][1], "sex", enc, len) ==
                        0);
        CU_ASSERT(store_verify_state(s, NULL, &err) == TS_ERR_CORRUPT);
        char want[128];
        snprintf(want, sizeof(want), "record %s %s field sex: a state is stored but no entry",
                 ghosts[i][0], ghosts[i][1]);
        CU_ASSERT(strstr(err.msg, want) != NULL);
        CU_ASSERT_FATAL(store_debug_state_put(s, ghosts[i][0], ghosts[i][1], "sex", NULL, 0) ==
                        0);
    }
    CU_ASSERT(store_verify_state(s, NULL, &err) == 0);
    free(enc);
    free(armcd_enc);
    field_state_release(&st);
    store_close(s);
}

struct history {
    char lines[16][512];
    int n;
};

static int history_cb(void *ctx, const struct entry *e, uint64_t stored_ms)
{
    struct history *h = ctx;
    if (h->n < 16)
        snprintf(h->lines[h->n++], sizeof(h->lines[0]), "%" PRIu64 " %s/%u/%" PRIu64 " %s=%s @%"
                 PRIu64, e->hlc >> 16, e->origin, (unsigned)e->lane, e->seq, e->writes[0].field,
                 e->writes[0].value, stored_ms);
    return 0;
}

/* A read-only open works while the store is open for writing (a running
 * node), sees what was written before it opened, and nothing after. */
static void test_store_readonly_beside_writer(void)
{
    const char *dir = unit_tmpdir("readonly");
    char path[512];
    snprintf(path, sizeof(path), "%s", dir);
    struct store *w = NULL, *r = NULL;
    struct ts_error err = {0};
    CU_ASSERT(store_open_readonly(path, &r, &err) == TS_ERR_NOTFOUND);
    CU_ASSERT_FATAL(store_open(path, &w, &err) == 0);
    struct tchain c;
    tchain_init(&c, "site-101", LANE_BULK);
    fill_basic(w, &c);
    int rc = store_open_readonly(path, &r, &err);
    if (rc != 0)
        fprintf(stderr, "store_open_readonly: %s\n", err.msg);
    CU_ASSERT_FATAL(rc == 0);
    char buf[64];
    CU_ASSERT_STRING_EQUAL(field_value(r, "subject", "101-0001", "sex", buf, sizeof(buf)), "F");
    CU_ASSERT(store_hlc_max(r) == store_hlc_max(w));
    int n = 0;
    CU_ASSERT(store_records_prefix(r, "visit", "101-0001/", count_cb, &n) == 0);
    CU_ASSERT(n == 2);
    n = 0;
    CU_ASSERT(store_records_prefix(r, "ae", "101-0001-AE-", count_cb, &n) == 0);
    CU_ASSERT(n == 1);
    n = 0;
    CU_ASSERT(store_records_prefix(r, "visit", "101-00011/", count_cb, &n) == 0);
    CU_ASSERT(n == 0);
    struct entry_ref ref = {.origin = "site-101", .lane = LANE_BULK, .seq = 5};
    uint8_t hw[TS_HASH_BYTES], hr[TS_HASH_BYTES], head[TS_HASH_BYTES];
    uint64_t seq = 0;
    CU_ASSERT(store_entry_hash(w, &ref, hw) == 0);
    CU_ASSERT(store_entry_hash(r, &ref, hr) == 0);
    CU_ASSERT(memcmp(hw, hr, TS_HASH_BYTES) == 0);
    CU_ASSERT(store_head(w, "site-101", LANE_BULK, &seq, head) == 0);
    CU_ASSERT(seq == 5 && memcmp(head, hw, TS_HASH_BYTES) == 0);
    /* A write after the read-only open is not in its view. */
    struct tb *t = tb_new();
    tb_begin(t, &c);
    tb_add(t, &c, "visit", "101-0001/V3", 2000 << 16, "svstdtc", "2024-03-02", NULL, 0);
    tb_sign(t, &c);
    apply_ok(w, &t->b, 1);
    tb_free(t);
    free(t);
    n = 0;
    CU_ASSERT(store_records_prefix(r, "visit", "101-0001/", count_cb, &n) == 0);
    CU_ASSERT(n == 2);
    store_close(r);
    store_close(w);
}

static void test_store_history_order(void)
{
    struct store *s = open_store("history");
    struct tchain a, b, h;
    tchain_init(&a, "site-101", LANE_BULK);
    tchain_init(&b, "site-101", LANE_SAFETY);
    tchain_init(&h, "hub-1", LANE_BULK);
    struct tb *ta = tb_new(), *tbb = tb_new(), *th = tb_new();
    tb_begin(ta, &a);
    tb_add(ta, &a, "ae", "101-0001-AE-001", 300 << 16, "aeterm", "Headache", NULL, 0);
    tb_add(ta, &a, "ae", "101-0001-AE-002", 100 << 16, "aeterm", "Other record", NULL, 0);
    tb_add(ta, &a, "ae", "101-0001-AE-001", 100 << 16, "aesev", "MILD", NULL, 0);
    tb_sign(ta, &a);
    tb_begin(tbb, &b);
    tb_add(tbb, &b, "ae", "101-0001-AE-001", 100 << 16, "aeser", "Y", NULL, 0);
    tb_sign(tbb, &b);
    tb_begin(th, &h);
    tb_add(th, &h, "ae", "101-0001-AE-001", 100 << 16, "aedecod", "HEADACHE", NULL, 0);
    tb_add(th, &h, "ae", "101-0001-AE-001", 200 << 16, "meddra_ver", "26.0", NULL, 0);
    tb_sign(th, &h);
    struct ts_error err = {0};
    CU_ASSERT_FATAL(store_apply(s, TRIAL, &ta->b, 1, verify_cb, NULL, true, 7000, NULL, &err) == 0);
    CU_ASSERT_FATAL(store_apply(s, TRIAL, &th->b, 1, verify_cb, NULL, true, 8000, NULL, &err) == 0);
    CU_ASSERT_FATAL(store_apply(s, TRIAL, &tbb->b, 1, verify_cb, NULL, true, 9000, NULL, &err) == 0);

    struct history hist = {.n = 0};
    CU_ASSERT(store_record_history(s, "ae", "101-0001-AE-001", history_cb, &hist) == 0);
    CU_ASSERT_FATAL(hist.n == 5);
    CU_ASSERT_STRING_EQUAL(hist.lines[0], "100 hub-1/1/1 aedecod=HEADACHE @8000");
    CU_ASSERT_STRING_EQUAL(hist.lines[1], "100 site-101/0/1 aeser=Y @9000");
    CU_ASSERT_STRING_EQUAL(hist.lines[2], "100 site-101/1/3 aesev=MILD @7000");
    CU_ASSERT_STRING_EQUAL(hist.lines[3], "200 hub-1/1/2 meddra_ver=26.0 @8000");
    CU_ASSERT_STRING_EQUAL(hist.lines[4], "300 site-101/1/1 aeterm=Headache @7000");
    CU_ASSERT(store_record_history(s, "ae", "101-0001-AE-009", history_cb, &hist) ==
              TS_ERR_NOTFOUND);
    tb_free(ta);
    tb_free(tbb);
    tb_free(th);
    free(ta);
    free(tbb);
    free(th);
    store_close(s);
}

struct conflicts {
    char lines[8][512];
    int n;
};

static int conflict_cb(void *ctx, const char *type, const char *id, const char *field,
                       const struct field_state *st)
{
    struct conflicts *c = ctx;
    if (c->n < 8)
        snprintf(c->lines[c->n++], sizeof(c->lines[0]), "%s %s %s %zu", type, id, field,
                 st->live_count);
    return 0;
}

static void test_store_conflicts_listed(void)
{
    struct store *s = open_store("conflicts");
    struct tchain a, h;
    tchain_init(&a, "site-101", LANE_BULK);
    tchain_init(&h, "hub-1", LANE_BULK);
    struct tb *ta = tb_new(), *th = tb_new();
    /* Site and hub write the same field concurrently: neither saw the other. */
    tb_begin(ta, &a);
    tb_add(ta, &a, "subject", "101-0001", 100 << 16, "brthdtc", "1961", NULL, 0);
    tb_add(ta, &a, "subject", "101-0001", 101 << 16, "sex", "F", NULL, 0);
    tb_sign(ta, &a);
    tb_begin(th, &h);
    tb_add(th, &h, "subject", "101-0001", 102 << 16, "brthdtc", "1962", NULL, 0);
    tb_sign(th, &h);
    struct batch both[2] = {ta->b, th->b};
    apply_ok(s, both, 2);

    struct conflicts cf = {.n = 0};
    CU_ASSERT(store_conflicts(s, conflict_cb, &cf) == 0);
    CU_ASSERT_FATAL(cf.n == 1);
    CU_ASSERT_STRING_EQUAL(cf.lines[0], "subject 101-0001 brthdtc 2");
    struct store_stats st;
    store_stats(s, &st);
    CU_ASSERT(st.conflicts == 1);

    /* A correction that saw both writes resolves it. */
    struct entry_ref sup[2];
    memset(sup, 0, sizeof(sup));
    snprintf(sup[0].origin, sizeof(sup[0].origin), "site-101");
    sup[0].lane = LANE_BULK;
    sup[0].seq = 1;
    snprintf(sup[1].origin, sizeof(sup[1].origin), "hub-1");
    sup[1].lane = LANE_BULK;
    sup[1].seq = 1;
    tb_free(ta);
    tb_begin(ta, &a);
    tb_add(ta, &a, "subject", "101-0001", 200 << 16, "brthdtc", "1961-04", sup, 2);
    tb_sign(ta, &a);
    apply_ok(s, &ta->b, 1);
    cf.n = 0;
    CU_ASSERT(store_conflicts(s, conflict_cb, &cf) == 0);
    CU_ASSERT(cf.n == 0);
    store_stats(s, &st);
    CU_ASSERT(st.conflicts == 0);
    char buf[32];
    CU_ASSERT_STRING_EQUAL(field_value(s, "subject", "101-0001", "brthdtc", buf, sizeof(buf)),
                           "1961-04");
    tb_free(ta);
    tb_free(th);
    free(ta);
    free(th);
    store_close(s);
}

static void test_store_same_field_twice_in_one_call(void)
{
    /* Two entries of one call touch one field; the result equals two calls. */
    struct store *s1 = open_store("twice-a");
    struct store *s2 = open_store("twice-b");
    struct tchain c;
    tchain_init(&c, "site-101", LANE_BULK);
    struct tb *t1 = tb_new(), *t2 = tb_new();
    tb_begin(t1, &c);
    tb_add(t1, &c, "visit", "101-0001/V1", 100 << 16, "status", "scheduled", NULL, 0);
    tb_sign(t1, &c);
    struct entry_ref sup = {.lane = LANE_BULK, .seq = 1};
    snprintf(sup.origin, sizeof(sup.origin), "site-101");
    tb_begin(t2, &c);
    tb_add(t2, &c, "visit", "101-0001/V1", 101 << 16, "status", "started", &sup, 1);
    tb_sign(t2, &c);
    struct batch both[2] = {t1->b, t2->b};
    apply_ok(s1, both, 2);
    apply_ok(s2, &t1->b, 1);
    apply_ok(s2, &t2->b, 1);
    uint8_t d1[TS_HASH_BYTES], d2[TS_HASH_BYTES];
    digest_of(s1, d1);
    digest_of(s2, d2);
    CU_ASSERT(memcmp(d1, d2, TS_HASH_BYTES) == 0);
    struct field_state st;
    CU_ASSERT(store_field_get(s1, "visit", "101-0001/V1", "status", &st) == 0);
    CU_ASSERT(st.live_count == 1);
    CU_ASSERT(st.dead_count == 1);
    field_state_release(&st);
    struct store_stats ss;
    store_stats(s1, &ss);
    CU_ASSERT(ss.records == 1);
    CU_ASSERT(ss.entries == 2);
    CU_ASSERT(ss.conflicts == 0);
    tb_free(t1);
    tb_free(t2);
    free(t1);
    free(t2);
    store_close(s1);
    store_close(s2);
}

/*
 * Three origins write overlapping records and fields (some superseding
 * writes of others) in several batches; every order of applying the batches
 * gives one digest.
 */
#define ORDER_BATCHES 9
#define ORDER_STORES 4

static void test_store_merge_order_independent(void)
{
    const char *origins[3] = {"site-101", "site-102", "hub-1"};
    struct tchain ch[3];
    struct tb *tbs[ORDER_BATCHES];
    for (int o = 0; o < 3; o++)
        tchain_init(&ch[o], origins[o], LANE_BULK);
    static const char *const fields[] = {"status", "svstdtc", "svoccur"};
    static const char *const values[] = {"scheduled", "started", "completed", "2024-01-01",
                                         "2024-01-02", "Y", "N"};
    for (int bi = 0; bi < ORDER_BATCHES; bi++) {
        int o = bi % 3;
        tbs[bi] = tb_new();
        tb_begin(tbs[bi], &ch[o]);
        for (int k = 0; k < 20; k++) {
            char id[32];
            snprintf(id, sizeof(id), "101-%04d/V1", (int)(unit_rand() % 6));
            const char *field = fields[unit_rand() % 3];
            const char *value = values[unit_rand() % 7];
            /* Sometimes supersede an earlier write of another origin. */
            struct entry_ref sup;
            size_t nsup = 0;
            int other = (int)(unit_rand() % 3);
            if (other != o && ch[other].seq > 0 && unit_rand() % 2 == 0) {
                memset(&sup, 0, sizeof(sup));
                snprintf(sup.origin, sizeof(sup.origin), "%s", origins[other]);
                sup.lane = LANE_BULK;
                sup.seq = 1 + unit_rand() % ch[other].seq;
                nsup = 1;
            }
            uint64_t hlc = ((uint64_t)(1000 + unit_rand() % 50) << 16) | (uint64_t)o;
            tb_add(tbs[bi], &ch[o], "visit", id, hlc, field, value, &sup, nsup);
        }
        tb_sign(tbs[bi], &ch[o]);
    }

    uint8_t first[TS_HASH_BYTES];
    for (int run = 0; run < ORDER_STORES; run++) {
        struct store *s = open_store("order");
        /* A random order that keeps each chain's own batches in sequence:
         * shuffle, then apply whatever is ready, retrying the others. */
        int order[ORDER_BATCHES];
        for (int i = 0; i < ORDER_BATCHES; i++)
            order[i] = i;
        for (int i = ORDER_BATCHES - 1; i > 0; i--) {
            int j = (int)(unit_rand() % (uint64_t)(i + 1));
            int tmp = order[i];
            order[i] = order[j];
            order[j] = tmp;
        }
        bool done[ORDER_BATCHES] = {false};
        int left = ORDER_BATCHES;
        while (left > 0) {
            for (int i = 0; i < ORDER_BATCHES; i++) {
                int bi = order[i];
                if (done[bi])
                    continue;
                struct ts_error err = {0};
                /* Sometimes two batches in one call, sometimes re-applied. */
                int rc = apply(s, &tbs[bi]->b, 1, NULL, &err);
                if (rc == TS_ERR_GAP)
                    continue;
                CU_ASSERT_FATAL(rc == 0);
                if (unit_rand() % 3 == 0)
                    CU_ASSERT(apply(s, &tbs[bi]->b, 1, NULL, &err) == 0);
                done[bi] = true;
                left--;
            }
        }
        uint8_t d[TS_HASH_BYTES];
        digest_of(s, d);
        struct store_stats st;
        store_stats(s, &st);
        CU_ASSERT(st.entries == ORDER_BATCHES * 20);
        /* Rebuilt from scratch, the state is the one applied piecemeal. */
        struct ts_error verr = {0};
        CU_ASSERT(store_verify_state(s, NULL, &verr) == 0);
        if (verr.code != 0)
            printf("\n%s\n", verr.msg);
        if (run == 0)
            memcpy(first, d, TS_HASH_BYTES);
        else
            CU_ASSERT(memcmp(first, d, TS_HASH_BYTES) == 0);
        store_close(s);
    }

    /* All batches in one call give the same digest too. */
    struct batch all[ORDER_BATCHES];
    for (int i = 0; i < ORDER_BATCHES; i++)
        all[i] = tbs[i]->b;
    struct store *s = open_store("order-all");
    apply_ok(s, all, ORDER_BATCHES);
    uint8_t d[TS_HASH_BYTES];
    digest_of(s, d);
    CU_ASSERT(memcmp(first, d, TS_HASH_BYTES) == 0);
    store_close(s);
    for (int i = 0; i < ORDER_BATCHES; i++) {
        tb_free(tbs[i]);
        free(tbs[i]);
    }
}

static void test_store_read_batch_limits(void)
{
    struct store *s = open_store("readbatch");
    struct tchain c;
    tchain_init(&c, "site-101", LANE_BULK);
    /* Signed points at 3, 6 and 10. */
    static const int ends[3] = {3, 6, 10};
    int seq = 0;
    struct tb *t = tb_new();
    for (int bi = 0; bi < 3; bi++) {
        tb_begin(t, &c);
        while (seq < ends[bi]) {
            char id[32];
            snprintf(id, sizeof(id), "101-%04d", seq++);
            tb_add(t, &c, "subject", id, (uint64_t)(100 + seq) << 16, "sex", "F", NULL, 0);
        }
        tb_sign(t, &c);
        apply_ok(s, &t->b, 1);
        tb_free(t);
    }

    struct batch b;
    struct ts_error err = {0};
    CU_ASSERT_FATAL(store_read_batch(s, TRIAL, "site-101", LANE_BULK, 1, 5, 1 << 20, &b, &err) ==
                    0);
    CU_ASSERT(b.count == 3);
    CU_ASSERT(b.first_seq == 1);
    store_batch_release(&b);

    CU_ASSERT_FATAL(store_read_batch(s, TRIAL, "site-101", LANE_BULK, 1, 100, 1 << 20, &b, &err) ==
                    0);
    CU_ASSERT(b.count == 10);
    size_t total = 0;
    for (size_t i = 0; i < b.count; i++)
        total += b.entry_lens[i];
    uint8_t head_hash[TS_HASH_BYTES];
    uint64_t head;
    store_head(s, "site-101", LANE_BULK, &head, head_hash);
    CU_ASSERT(memcmp(b.chain_hash, head_hash, TS_HASH_BYTES) == 0);

    /* The whole batch relays into a fresh store as it is. */
    struct store *s2 = open_store("readbatch-relay");
    struct store_apply_result res;
    CU_ASSERT(apply(s2, &b, 1, &res, &err) == 0);
    CU_ASSERT(res.applied == 10);
    uint8_t d1[TS_HASH_BYTES], d2[TS_HASH_BYTES];
    digest_of(s, d1);
    digest_of(s2, d2);
    CU_ASSERT(memcmp(d1, d2, TS_HASH_BYTES) == 0);
    store_close(s2);
    store_batch_release(&b);

    /* max_bytes one byte short of all ten ends at 6. */
    CU_ASSERT_FATAL(store_read_batch(s, TRIAL, "site-101", LANE_BULK, 1, 100, total - 1, &b,
                                     &err) == 0);
    CU_ASSERT(b.count == 6);
    store_batch_release(&b);

    /* From the middle of a signed run: 5..6, then nothing fits below 6 entries from 4. */
    CU_ASSERT_FATAL(store_read_batch(s, TRIAL, "site-101", LANE_BULK, 5, 3, 1 << 20, &b, &err) ==
                    0);
    CU_ASSERT(b.count == 2);
    CU_ASSERT(b.first_seq == 5);
    store_batch_release(&b);
    CU_ASSERT_FATAL(store_read_batch(s, TRIAL, "site-101", LANE_BULK, 7, 3, 1 << 20, &b, &err) ==
                    0);
    CU_ASSERT(b.count == 0);
    store_batch_release(&b);

    /* Past the head, and an unknown chain: nothing to send. */
    CU_ASSERT(store_read_batch(s, TRIAL, "site-101", LANE_BULK, 11, 100, 1 << 20, &b, &err) == 0);
    CU_ASSERT(b.count == 0);
    store_batch_release(&b);
    CU_ASSERT(store_read_batch(s, TRIAL, "site-102", LANE_BULK, 1, 100, 1 << 20, &b, &err) == 0);
    CU_ASSERT(b.count == 0);
    store_batch_release(&b);
    free(t);
    store_close(s);
}

/* Appends a query entry writing state (and round when round is not NULL). */
static void tb_add_query(struct tb *t, struct tchain *c, uint64_t hlc, const char *state,
                         const char *round)
{
    struct entry e;
    memset(&e, 0, sizeof(e));
    struct field_write w[2];
    memset(w, 0, sizeof(w));
    snprintf(w[0].field, sizeof(w[0].field), "state");
    w[0].value = (char *)state;
    snprintf(w[1].field, sizeof(w[1].field), "round");
    w[1].value = (char *)round;
    e.hlc = hlc;
    e.user = (char *)"monitor";
    e.reason = (char *)"";
    snprintf(e.record_type, sizeof(e.record_type), "query");
    snprintf(e.record_id, sizeof(e.record_id), "Q-hub-1-1");
    snprintf(e.site, sizeof(e.site), "101");
    e.writes = w;
    e.writes_count = round != NULL ? 2 : 1;
    tb_add_entry(t, c, &e);
}

static void test_store_query_round_feeds_merge(void)
{
    struct store *s = open_store("round");
    struct tchain h, a;
    tchain_init(&h, "hub-1", LANE_BULK);
    tchain_init(&a, "site-101", LANE_BULK);
    struct tb *th = tb_new(), *ta = tb_new();
    tb_begin(th, &h);
    tb_add_query(th, &h, 100 << 16, "open", "1");
    tb_sign(th, &h);
    /* The site answers round 1 without restating the round. */
    tb_begin(ta, &a);
    tb_add_query(ta, &a, 90 << 16, "answered", NULL);
    tb_sign(ta, &a);
    struct batch both[2] = {th->b, ta->b};
    apply_ok(s, both, 2);
    char buf[32];
    CU_ASSERT_STRING_EQUAL(field_value(s, "query", "Q-hub-1-1", "state", buf, sizeof(buf)),
                           "answered");
    /* A re-query opens round 2: it wins over the round-1 answer. */
    tb_free(th);
    tb_begin(th, &h);
    tb_add_query(th, &h, 80 << 16, "open", "2");
    tb_sign(th, &h);
    apply_ok(s, &th->b, 1);
    CU_ASSERT_STRING_EQUAL(field_value(s, "query", "Q-hub-1-1", "state", buf, sizeof(buf)),
                           "open");
    tb_free(th);
    tb_free(ta);
    free(th);
    free(ta);
    store_close(s);
}

static void test_store_stats_counts(void)
{
    struct store *s = open_store("stats");
    struct store_stats st;
    CU_ASSERT(store_stats(s, &st) == 0);
    CU_ASSERT(st.entries == 0 && st.records == 0 && st.conflicts == 0);
    struct tchain c;
    tchain_init(&c, "site-101", LANE_BULK);
    fill_basic(s, &c);
    CU_ASSERT(store_stats(s, &st) == 0);
    CU_ASSERT(st.entries == 5);
    CU_ASSERT(st.records == 4);
    CU_ASSERT(st.conflicts == 0);
    store_close(s);
}

static void test_store_open_errors(void)
{
    struct ts_error err = {0};
    struct store *s = NULL;
    char path[600];

    /* A directory holding something else. */
    snprintf(path, sizeof(path), "%s", unit_tmpdir("notstore"));
    char file[700];
    snprintf(file, sizeof(file), "%s/notes.txt", path);
    FILE *f = fopen(file, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("hello\n", f);
    fclose(f);
    CU_ASSERT(store_open(path, &s, &err) == TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "not a trialsync store") != NULL);
    CU_ASSERT(s == NULL);

    /* A plain file. */
    CU_ASSERT(store_open(file, &s, &err) == TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "not a directory") != NULL);

    /* Opened twice: the second is refused while the first holds it. */
    snprintf(path, sizeof(path), "%s", unit_tmpdir("locked"));
    struct store *first = NULL;
    CU_ASSERT_FATAL(store_open(path, &first, &err) == 0);
    CU_ASSERT(store_open(path, &s, &err) != 0);
    CU_ASSERT(strstr(err.msg, "in use") != NULL);
    CU_ASSERT(s == NULL);
    store_close(first);
    CU_ASSERT(store_open(path, &s, &err) == 0);
    store_close(s);
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    CU_ASSERT_FATAL(stat(path, &st) == 0);
    return st.st_mode & 07777;
}

/* The store's directory ends 0700 and its files 0600, whatever they were:
 * created fresh, or an existing store opened after its modes were widened. */
static void test_store_modes_tightened(void)
{
    struct ts_error err = {0};
    struct store *s = NULL;
    char dir[600], file[700];
    snprintf(dir, sizeof(dir), "%s/db", unit_tmpdir("modes"));
    CU_ASSERT_FATAL(store_open(dir, &s, &err) == 0);
    CU_ASSERT_EQUAL(mode_of(dir), 0700);
    store_close(s);

    CU_ASSERT_FATAL(chmod(dir, 0755) == 0);
    snprintf(file, sizeof(file), "%s/IDENTITY", dir);  /* RocksDB keeps it as it is */
    CU_ASSERT_FATAL(chmod(file, 0644) == 0);
    CU_ASSERT_EQUAL(mode_of(file), 0644);
    CU_ASSERT_FATAL(store_open(dir, &s, &err) == 0);
    CU_ASSERT_EQUAL(mode_of(dir), 0700);
    CU_ASSERT_EQUAL(mode_of(file), 0600);
    store_close(s);
}

static void test_store_meta_roundtrip(void)
{
    struct store *s = open_store("meta");
    char *val;
    size_t len;
    struct ts_error err = {0};
    CU_ASSERT(store_meta_get(s, "peers", &val, &len) == TS_ERR_NOTFOUND);
    CU_ASSERT(store_meta_put(s, "peers", "hub-1,hub-2", 11, false, &err) == 0);
    CU_ASSERT(store_meta_get(s, "peers", &val, &len) == 0);
    CU_ASSERT(len == 11);
    CU_ASSERT_STRING_EQUAL(val, "hub-1,hub-2");
    free(val);
    CU_ASSERT(store_meta_put(s, "", "x", 1, false, &err) == TS_ERR_INVALID);
    /* User metadata does not feed the state digest. */
    uint8_t d1[TS_HASH_BYTES], d2[TS_HASH_BYTES];
    digest_of(s, d1);
    CU_ASSERT(store_meta_put(s, "peers", "hub-3", 5, true, &err) == 0);
    digest_of(s, d2);
    CU_ASSERT(memcmp(d1, d2, TS_HASH_BYTES) == 0);
    store_close(s);
}

static void test_store_own_entries_without_verify(void)
{
    /* The node's own freshly built entries: verify NULL, still chained. */
    struct store *s = open_store("own");
    struct tchain c;
    tchain_init(&c, "site-101", LANE_SAFETY);
    struct tb *t = tb_new();
    tb_begin(t, &c);
    tb_add(t, &c, "ae", "101-0001-AE-001", 100 << 16, "aeser", "Y", NULL, 0);
    tb_sign(t, &c);
    struct ts_error err = {0};
    struct store_apply_result res;
    CU_ASSERT(store_apply(s, TRIAL, &t->b, 1, NULL, NULL, false, 5, &res, &err) == 0);
    CU_ASSERT(res.applied == 1);
    /* Its signature was kept: it can be read for relay and verifies. */
    struct batch b;
    CU_ASSERT(store_read_batch(s, TRIAL, "site-101", LANE_SAFETY, 1, 10, 1 << 20, &b, &err) == 0);
    CU_ASSERT(b.count == 1);
    CU_ASSERT(b.signature_len == t->b.signature_len);
    store_batch_release(&b);
    CU_ASSERT(store_verify(s, TRIAL, verify_cb, NULL, &err) == 0);
    tb_free(t);
    free(t);
    store_close(s);
}

/* A store written at format v1 (the first release: no counters record before
 * the first entry; here dropped after five) opens at the current format with
 * its counters recounted, and verifies under it; reopening changes nothing. */
static void test_store_format_migrates_forward(void)
{
    struct ts_error err = {0};
    char path[600];
    snprintf(path, sizeof(path), "%s", unit_tmpdir("format-old"));
    struct store *s = NULL;
    CU_ASSERT_FATAL(store_open(path, &s, &err) == 0);
    struct tchain c;
    tchain_init(&c, "site-101", LANE_BULK);
    fill_basic(s, &c);
    uint8_t before[TS_HASH_BYTES], after[TS_HASH_BYTES];
    digest_of(s, before);
    CU_ASSERT_FATAL(store_debug_format_stamp(s, 1, true) == 0);
    store_close(s);

    /* Read-only opens do not migrate: they say what to do. */
    CU_ASSERT(store_open_readonly(path, &s, &err) == TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "must be migrated") != NULL);
    CU_ASSERT(s == NULL);

    CU_ASSERT_FATAL(store_open(path, &s, &err) == 0);
    struct store_stats st;
    CU_ASSERT(store_stats(s, &st) == 0);
    CU_ASSERT(st.entries == 5);
    CU_ASSERT(st.records == 4);
    digest_of(s, after);
    CU_ASSERT(memcmp(before, after, TS_HASH_BYTES) == 0);
    CU_ASSERT(store_verify(s, TRIAL, verify_cb, NULL, &err) == 0);
    uint64_t fields = 0;
    CU_ASSERT(store_verify_state(s, &fields, &err) == 0);
    store_close(s);

    /* Migrated for good: the read-only open now accepts it. */
    CU_ASSERT_FATAL(store_open_readonly(path, &s, &err) == 0);
    CU_ASSERT(store_stats(s, &st) == 0);
    CU_ASSERT(st.entries == 5);
    store_close(s);

    /* An empty v1 store (no counters at all) migrates too. */
    snprintf(path, sizeof(path), "%s", unit_tmpdir("format-old-empty"));
    CU_ASSERT_FATAL(store_open(path, &s, &err) == 0);
    CU_ASSERT_FATAL(store_debug_format_stamp(s, 1, true) == 0);
    store_close(s);
    CU_ASSERT_FATAL(store_open(path, &s, &err) == 0);
    CU_ASSERT(store_stats(s, &st) == 0);
    CU_ASSERT(st.entries == 0);
    store_close(s);
}

/* A store stamped with a format newer than this build is refused by both
 * opens, naming both versions, and is left as it was. */
static void test_store_format_newer_refused(void)
{
    struct ts_error err = {0};
    char path[600];
    snprintf(path, sizeof(path), "%s", unit_tmpdir("format-new"));
    struct store *s = NULL;
    CU_ASSERT_FATAL(store_open(path, &s, &err) == 0);
    uint32_t next = store_format_version() + 1;
    CU_ASSERT_FATAL(store_debug_format_stamp(s, next, false) == 0);
    store_close(s);
    char want[64];
    snprintf(want, sizeof(want), "format v%u, newer than this trialsync", (unsigned)next);
    CU_ASSERT(store_open(path, &s, &err) == TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, want) != NULL);
    CU_ASSERT(s == NULL);
    CU_ASSERT(store_open_readonly(path, &s, &err) == TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, want) != NULL);
    /* Still refused: the refusal wrote nothing. */
    CU_ASSERT(store_open(path, &s, &err) == TS_ERR_INVALID);
    /* A marker that is not a format at all. */
    snprintf(path, sizeof(path), "%s", unit_tmpdir("format-garbage"));
    CU_ASSERT_FATAL(store_open(path, &s, &err) == 0);
    CU_ASSERT_FATAL(store_debug_format_stamp(s, 0, false) == 0);
    store_close(s);
    CU_ASSERT(store_open(path, &s, &err) == TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "has format 'trialsync-store-v0'") != NULL);
}

/* A checkpoint taken while the store is open holds what was committed, opens
 * read-only beside the writer, verifies, and is not changed by later writes. */
static void test_store_checkpoint(void)
{
    struct ts_error err = {0};
    struct store *s = open_store("ckpt-src");
    struct tchain c;
    tchain_init(&c, "site-101", LANE_BULK);
    fill_basic(s, &c);
    char dst[700];
    snprintf(dst, sizeof(dst), "%s/copy", unit_tmpdir("ckpt-dst"));
    CU_ASSERT(store_checkpoint(s, "relative/path", &err) == TS_ERR_INVALID);
    CU_ASSERT_FATAL(store_checkpoint(s, dst, &err) == 0);
    CU_ASSERT(store_checkpoint(s, dst, &err) == TS_ERR_EXISTS);
    /* More writes after the checkpoint. */
    struct tb *t = tb_new();
    tb_begin(t, &c);
    tb_add(t, &c, "subject", "101-0002", 2000 << 16, "sex", "M", NULL, 0);
    tb_sign(t, &c);
    apply_ok(s, &t->b, 1);
    tb_free(t);
    free(t);
    struct store *cp = NULL;
    CU_ASSERT_FATAL(store_open_readonly(dst, &cp, &err) == 0);
    struct store_stats st;
    CU_ASSERT(store_stats(cp, &st) == 0);
    CU_ASSERT(st.entries == 5);
    CU_ASSERT(store_verify(cp, TRIAL, verify_cb, NULL, &err) == 0);
    uint64_t fields = 0;
    CU_ASSERT(store_verify_state(cp, &fields, &err) == 0);
    CU_ASSERT(!store_record_exists(cp, "subject", "101-0002"));
    store_close(cp);
    store_close(s);
}

/*
 * A checkpoint into a directory whose parent is missing (or is a file) is the
 * caller's mistake, said as such (TS_ERR_INVALID, naming the parent): the
 * API answers 400, not 500 with RocksDB's words and the data directory's
 * path.  Found by the HTTP fuzzer (tests/fuzz/fuzz_http.c).
 */
static void test_store_checkpoint_parent_missing(void)
{
    struct ts_error err = {0};
    struct store *s = open_store("ckpt-parent");
    char dst[700], file[700];
    const char *tmp = unit_tmpdir("ckpt-parent-dst");
    snprintf(dst, sizeof(dst), "%s/no/such/parent/copy", tmp);
    CU_ASSERT(store_checkpoint(s, dst, &err) == TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "/no/such/parent") != NULL);
    CU_ASSERT(strstr(err.msg, "does not exist") != NULL);
    snprintf(file, sizeof(file), "%s/plain-file", tmp);
    FILE *f = fopen(file, "w");
    CU_ASSERT_FATAL(f != NULL);
    fclose(f);
    snprintf(dst, sizeof(dst), "%s/plain-file/copy", tmp);
    CU_ASSERT(store_checkpoint(s, dst, &err) == TS_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "is not a directory") != NULL);
    /* A trailing slash names the same directory. */
    snprintf(dst, sizeof(dst), "%s/copy/", tmp);
    CU_ASSERT(store_checkpoint(s, dst, &err) == 0);
    store_close(s);
}

/* ---- walks ---- */

/* What a walk or the per-record calls read: one line per record, with its
 * fields and history when asked. */
struct walk_text {
    char *buf;
    size_t len;
    size_t cap;
};

static void wt_add(struct walk_text *w, const char *s)
{
    size_t n = strlen(s);
    if (w->len + n + 1 > w->cap) {
        size_t cap = w->cap ? 2 * (w->len + n + 1) : 4096;
        char *nb = realloc(w->buf, cap);
        CU_ASSERT_FATAL(nb != NULL);
        w->buf = nb;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n + 1);
    w->len += n;
}

static int wt_field_cb(void *ctx, const char *field, const struct field_state *st)
{
    char line[256];
    snprintf(line, sizeof(line), " %s=%s/%zu", field, st->live_count ? st->live[0].value : "",
             st->live_count);
    wt_add(ctx, line);
    return 0;
}

static int wt_entry_cb(void *ctx, const struct entry *e, uint64_t stored_ms)
{
    char line[256];
    snprintf(line, sizeof(line), " %s/%u/%" PRIu64 "@%" PRIu64, e->origin, (unsigned)e->lane,
             e->seq, stored_ms);
    wt_add(ctx, line);
    return 0;
}

static struct store *wt_store;

static int wt_walk_entry_cb(void *ctx, const struct entry *e, const uint8_t hash[TS_HASH_BYTES],
                            uint64_t stored_ms)
{
    /* The hash handed over is the chain hash stored after the entry. */
    struct entry_ref ref;
    memset(&ref, 0, sizeof(ref));
    snprintf(ref.origin, sizeof(ref.origin), "%s", e->origin);
    ref.lane = e->lane;
    ref.seq = e->seq;
    uint8_t h[TS_HASH_BYTES];
    CU_ASSERT(store_entry_hash(wt_store, &ref, h) == 0 && memcmp(h, hash, TS_HASH_BYTES) == 0);
    return wt_entry_cb(ctx, e, stored_ms);
}

/* The record's part of the text, by point reads (what the walk must match);
 * mode bit 1: fields, bit 2: history. */
static void wt_record(struct store *s, struct walk_text *w, const char *type, const char *id,
                      unsigned mode)
{
    char line[256];
    snprintf(line, sizeof(line), "\n%s %s:", type, id);
    wt_add(w, line);
    if (mode & 1)
        CU_ASSERT(store_record_fields(s, type, id, wt_field_cb, w) == 0);
    if (mode & 2)
        CU_ASSERT(store_record_history(s, type, id, wt_entry_cb, w) == 0);
}

struct wt_list {
    struct store *s;
    struct walk_text *w;
    uint64_t seed;
    const char *from;   /* records before it are left out (a seek) */
};

/* The mode the walk test uses for a record: a function of seed and id, so
 * both sides agree (some records are stepped over, fields and history in
 * either order). */
static unsigned wt_mode(uint64_t seed, const char *type, const char *id)
{
    uint64_t h = seed;
    for (const char *p = type; *p; p++)
        h = h * 1099511628211ULL ^ (unsigned char)*p;
    for (const char *p = id; *p; p++)
        h = h * 1099511628211ULL ^ (unsigned char)*p;
    return (unsigned)(h >> 7) % 4;
}

static int wt_list_cb(void *ctx, const char *type, const char *id)
{
    struct wt_list *l = ctx;
    if (l->from != NULL && strcmp(id, l->from) < 0)
        return 0;
    wt_record(l->s, l->w, type, id, wt_mode(l->seed, type, id));
    return 0;
}

/* Records of several types with ids that are prefixes of each other
 * (101-1, 101-10, 101-100), written by two origins in random order: a walk of
 * each type, and of every type, reads the same records, fields and
 * histories as store_records, store_record_fields and store_record_history,
 * also when it steps over records, reads history before fields, or seeks. */
static void test_store_walk_matches_point_reads(void)
{
    uint64_t seed = unit_rand();
    printf("\n  walk seed %" PRIu64 "\n", seed);
    struct store *s = open_store("walk");
    wt_store = s;
    struct tchain a, h;
    tchain_init(&a, "site-101", LANE_BULK);
    tchain_init(&h, "hub-1", LANE_BULK);
    struct tb *ta = tb_new(), *th = tb_new();
    tb_begin(ta, &a);
    tb_begin(th, &h);
    static const char *const subjects[] = {"101-1", "101-10", "101-100", "101-2", "1010-1"};
    static const char *const fields[] = {"sex", "armcd", "brthdtc"};
    uint64_t hlc = 1;
    for (size_t i = 0; i < 120; i++) {
        const char *subj = subjects[unit_rand() % 5];
        char id[64];
        const char *type, *field;
        unsigned k = (unsigned)(unit_rand() % 3);
        if (k == 0) {
            type = "subject";
            snprintf(id, sizeof(id), "%s", subj);
            field = fields[unit_rand() % 3];
        } else if (k == 1) {
            type = "visit";
            snprintf(id, sizeof(id), "%s/V%u", subj, (unsigned)(unit_rand() % 3));
            field = "svstdtc";
        } else {
            type = "ae";
            snprintf(id, sizeof(id), "%s-AE-%u", subj, (unsigned)(unit_rand() % 3));
            field = "aeterm";
        }
        char value[32];
        snprintf(value, sizeof(value), "v%zu", i);
        bool hub = unit_rand() % 2;
        tb_add(hub ? th : ta, hub ? &h : &a, type, id, (hlc++) << 16, field, value, NULL, 0);
    }
    tb_sign(ta, &a);
    tb_sign(th, &h);
    struct ts_error err = {0};
    CU_ASSERT_FATAL(store_apply(s, TRIAL, &ta->b, 1, verify_cb, NULL, true, 7000, NULL, &err) == 0);
    CU_ASSERT_FATAL(store_apply(s, TRIAL, &th->b, 1, verify_cb, NULL, true, 8000, NULL, &err) == 0);

    static const char *const types[] = {"subject", "visit", "ae", ""};
    for (size_t t = 0; t < 4; t++) {
        for (int seek = 0; seek < 2; seek++) {
            const char *from = seek && types[t][0] != '\0' ? "101-10" : NULL;
            struct walk_text want = {0}, got = {0};
            wt_add(&want, "");
            wt_add(&got, "");
            struct wt_list l = {.s = s, .w = &want, .seed = seed, .from = from};
            CU_ASSERT(store_records(s, types[t], wt_list_cb, &l) == 0);
            struct store_walk *w = NULL;
            CU_ASSERT_FATAL(store_walk_open(s, types[t], &w) == 0);
            if (from != NULL)
                CU_ASSERT(store_walk_seek(w, from) == 0);
            size_t n = 0;
            for (const char *id; (id = store_walk_id(w)) != NULL; n++) {
                const char *type = store_walk_type(w);
                unsigned mode = wt_mode(seed, type, id);
                char line[256];
                snprintf(line, sizeof(line), "\n%s %s:", type, id);
                wt_add(&got, line);
                /* History first when both: the cursors are independent. */
                struct walk_text hist = {0};
                wt_add(&hist, "");
                if (mode & 2)
                    CU_ASSERT(store_walk_history(w, wt_walk_entry_cb, &hist) == 0);
                if (mode & 1)
                    CU_ASSERT(store_walk_fields(w, wt_field_cb, &got) == 0);
                wt_add(&got, hist.buf);
                free(hist.buf);
                CU_ASSERT_FATAL(store_walk_next(w) == 0);
            }
            CU_ASSERT(n > 0);
            CU_ASSERT(store_walk_type(w) == NULL);
            store_walk_close(w);
            CU_ASSERT_STRING_EQUAL(got.buf, want.buf);
            free(want.buf);
            free(got.buf);
        }
    }
    /* A type with no records, and one longer than the limit: an empty walk. */
    struct store_walk *w = NULL;
    CU_ASSERT(store_walk_open(s, "query", &w) == 0 && store_walk_id(w) == NULL);
    CU_ASSERT(store_walk_fields(w, wt_field_cb, NULL) == TS_ERR_NOTFOUND);
    store_walk_close(w);
    tb_free(ta);
    tb_free(th);
    free(ta);
    free(th);
    store_close(s);
}

int main(void)
{
    unit_seed();
    static const struct unit_test tests[] = {
        {"test_store_append_read_back", test_store_append_read_back},
        {"test_store_record_fields", test_store_record_fields},
        {"test_store_apply_atomic", test_store_apply_atomic},
        {"test_store_duplicates_skipped", test_store_duplicates_skipped},
        {"test_store_fork_detected", test_store_fork_detected},
        {"test_store_holes", test_store_holes},
        {"test_store_gap_refused", test_store_gap_refused},
        {"test_store_chain_broken", test_store_chain_broken},
        {"test_store_bad_signature_refused", test_store_bad_signature_refused},
        {"test_store_entry_must_match_batch", test_store_entry_must_match_batch},
        {"test_store_reopen_keeps_everything", test_store_reopen_keeps_everything},
        {"test_store_tamper_detected", test_store_tamper_detected},
        {"test_store_state_edit_detected", test_store_state_edit_detected},
        {"test_store_history_order", test_store_history_order},
        {"test_store_readonly_beside_writer", test_store_readonly_beside_writer},
        {"test_store_conflicts_listed", test_store_conflicts_listed},
        {"test_store_same_field_twice_in_one_call", test_store_same_field_twice_in_one_call},
        {"test_store_merge_order_independent", test_store_merge_order_independent},
        {"test_store_read_batch_limits", test_store_read_batch_limits},
        {"test_store_query_round_feeds_merge", test_store_query_round_feeds_merge},
        {"test_store_stats_counts", test_store_stats_counts},
        {"test_store_open_errors", test_store_open_errors},
        {"test_store_meta_roundtrip", test_store_meta_roundtrip},
        {"test_store_modes_tightened", test_store_modes_tightened},
        {"test_store_own_entries_without_verify", test_store_own_entries_without_verify},
        {"test_store_format_migrates_forward", test_store_format_migrates_forward},
        {"test_store_format_newer_refused", test_store_format_newer_refused},
        {"test_store_checkpoint", test_store_checkpoint},
        {"test_store_checkpoint_parent_missing", test_store_checkpoint_parent_missing},
        {"test_store_walk_matches_point_reads", test_store_walk_matches_point_reads},
        {NULL, NULL},
    };
    int rc = unit_run("store", tests);
    crypto_pubkey_free(test_pub);
    crypto_key_free(test_key);
    return rc;
}
