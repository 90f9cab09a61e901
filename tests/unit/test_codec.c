/*
 * test_codec.c: the CUnit suite of proto/codec.c and proto/entry.c.
 *
 * What it shows: entries and frames of every type survive a round trip; the
 * encoder's bytes match an independent hand-written protobuf encoder (so the
 * field numbers and the canonical form are what trialsync.proto says); every
 * limit of limits.h is refused with the right code and a message naming the
 * field, when encoding and when decoding; and malformed input (every
 * truncation, every single-byte change of valid encodings, random bytes and
 * random mutations) returns an error or something valid, never a crash, the
 * same way every time.  Random tests print their seed (replay: TS_SEED=...).
 *
 * This file does not include the generated protobuf-c header: malformed bytes
 * are built with the small wire writer below.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

#include "../../proto/codec.h"
#include "../../proto/entry.h"
#include "../../proto/protocol.h"

/* ---- helpers ------------------------------------------------------------ */

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);
    if (p == NULL) {
        fprintf(stderr, "test_codec: out of memory\n");
        abort();
    }
    return p;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s);
    char *p = xcalloc(n + 1, 1);
    memcpy(p, s, n + 1);
    return p;
}

/* A string of n copies of c, on the heap. */
static char *xrepeat(char c, size_t n)
{
    char *p = xcalloc(n + 1, 1);
    memset(p, c, n);
    return p;
}

static void set_id(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    CU_ASSERT_FATAL(n < cap);
    memcpy(dst, src, n + 1);
}

#define SET_ID(arr, s) set_id((arr), sizeof(arr), (s))

/* ---- a protobuf wire writer, independent of protobuf-c ------------------- */

struct wb {
    uint8_t *b;
    size_t n;
    size_t cap;
};

static void wb_reserve(struct wb *w, size_t more)
{
    if (w->n + more <= w->cap)
        return;
    size_t cap = w->cap == 0 ? 256 : w->cap;
    while (cap < w->n + more)
        cap *= 2;
    uint8_t *b = realloc(w->b, cap);
    if (b == NULL) {
        fprintf(stderr, "test_codec: out of memory\n");
        abort();
    }
    w->b = b;
    w->cap = cap;
}

static void wb_raw(struct wb *w, const void *p, size_t n)
{
    wb_reserve(w, n);
    if (n > 0)
        memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void wb_byte(struct wb *w, uint8_t c)
{
    wb_raw(w, &c, 1);
}

static void wb_varint(struct wb *w, uint64_t v)
{
    while (v >= 0x80) {
        wb_byte(w, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    wb_byte(w, (uint8_t)v);
}

static void wb_tag(struct wb *w, uint32_t number, unsigned type)
{
    wb_varint(w, (uint64_t)number << 3 | type);
}

static void wb_len_field(struct wb *w, uint32_t number, const void *p, size_t n)
{
    wb_tag(w, number, 2);
    wb_varint(w, n);
    wb_raw(w, p, n);
}

static void wb_uint_field(struct wb *w, uint32_t number, uint64_t v)
{
    wb_tag(w, number, 0);
    wb_varint(w, v);
}

static void wb_free(struct wb *w)
{
    free(w->b);
    memset(w, 0, sizeof(*w));
}

/*
 * One field replaced while an encoder writes a message: its bytes or number
 * given, or left out.  Lets a test break exactly one thing.
 */
enum patch_mode { PATCH_NONE, PATCH_BYTES, PATCH_UINT, PATCH_OMIT };

struct patch {
    uint32_t number;
    enum patch_mode mode;
    const void *data;
    size_t len;
    uint64_t u;
};

static const struct patch no_patch = { 0, PATCH_NONE, NULL, 0, 0 };

/* Writes a proto3 string/bytes field: patched, or omitted when empty. */
static void put_len(struct wb *w, uint32_t number, const void *p, size_t n, const struct patch *pt)
{
    if (pt->mode != PATCH_NONE && pt->number == number) {
        if (pt->mode == PATCH_BYTES)
            wb_len_field(w, number, pt->data, pt->len);
        else if (pt->mode == PATCH_UINT)
            wb_uint_field(w, number, pt->u);
        return;
    }
    if (n > 0)
        wb_len_field(w, number, p, n);
}

static void put_str(struct wb *w, uint32_t number, const char *s, const struct patch *pt)
{
    put_len(w, number, s, s == NULL ? 0 : strlen(s), pt);
}

/* Writes a proto3 varint field: patched, or omitted when zero. */
static void put_uint(struct wb *w, uint32_t number, uint64_t v, const struct patch *pt)
{
    if (pt->mode != PATCH_NONE && pt->number == number) {
        if (pt->mode == PATCH_UINT)
            wb_uint_field(w, number, pt->u);
        else if (pt->mode == PATCH_BYTES)
            wb_len_field(w, number, pt->data, pt->len);
        return;
    }
    if (v != 0)
        wb_uint_field(w, number, v);
}

/* Field numbers of trialsync.proto, written out independently of the codec. */
enum { REF_ORIGIN = 1, REF_LANE = 2, REF_SEQ = 3 };
enum { WRITE_FIELD = 1, WRITE_VALUE = 2, WRITE_SUPERSEDES = 3 };
enum {
    ENTRY_ORIGIN = 1, ENTRY_LANE, ENTRY_SEQ, ENTRY_HLC, ENTRY_WALL_MS, ENTRY_USER, ENTRY_REASON,
    ENTRY_RECORD_TYPE, ENTRY_RECORD_ID, ENTRY_SITE, ENTRY_WRITES, ENTRY_PREV_HASH,
};
enum {
    BATCH_TRIAL = 1, BATCH_ORIGIN, BATCH_LANE, BATCH_FIRST_SEQ, BATCH_ENTRIES, BATCH_CHAIN_HASH,
    BATCH_SIGNATURE,
};
enum { VV_ORIGIN = 1, VV_LANE = 2, VV_SEQ = 3 };
enum { HELLO_TRIAL = 1, HELLO_NODE_ID, HELLO_PROTOCOL_VERSION, HELLO_VECTOR };
enum { ACK_VECTOR = 1 };
enum { REFUSAL_REASON = 1 };

static void wire_write(struct wb *w, const struct field_write *fw)
{
    put_str(w, WRITE_FIELD, fw->field, &no_patch);
    put_str(w, WRITE_VALUE, fw->value, &no_patch);
    for (size_t k = 0; k < fw->supersedes_count; k++) {
        const struct entry_ref *r = &fw->supersedes[k];
        struct wb sub = { 0 };
        put_str(&sub, REF_ORIGIN, r->origin, &no_patch);
        put_uint(&sub, REF_LANE, r->lane, &no_patch);
        put_uint(&sub, REF_SEQ, r->seq, &no_patch);
        wb_len_field(w, WRITE_SUPERSEDES, sub.b, sub.n);
        wb_free(&sub);
    }
}

/* The canonical encoding of e, by hand, with one field patched. */
static void wire_entry(struct wb *w, const struct entry *e, const struct patch *pt)
{
    put_str(w, ENTRY_ORIGIN, e->origin, pt);
    put_uint(w, ENTRY_LANE, e->lane, pt);
    put_uint(w, ENTRY_SEQ, e->seq, pt);
    put_uint(w, ENTRY_HLC, e->hlc, pt);
    put_uint(w, ENTRY_WALL_MS, e->wall_ms, pt);
    put_str(w, ENTRY_USER, e->user, pt);
    put_str(w, ENTRY_REASON, e->reason, pt);
    put_str(w, ENTRY_RECORD_TYPE, e->record_type, pt);
    put_str(w, ENTRY_RECORD_ID, e->record_id, pt);
    put_str(w, ENTRY_SITE, e->site, pt);
    if (pt->mode != PATCH_NONE && pt->number == ENTRY_WRITES) {
        put_len(w, ENTRY_WRITES, NULL, 0, pt);
    } else {
        for (size_t i = 0; i < e->writes_count; i++) {
            struct wb sub = { 0 };
            wire_write(&sub, &e->writes[i]);
            wb_len_field(w, ENTRY_WRITES, sub.b, sub.n);
            wb_free(&sub);
        }
    }
    put_len(w, ENTRY_PREV_HASH, e->prev_hash, sizeof(e->prev_hash), pt);
}

static void wire_vv(struct wb *w, uint32_t number, const struct vv_item *v)
{
    struct wb sub = { 0 };
    put_str(&sub, VV_ORIGIN, v->origin, &no_patch);
    put_uint(&sub, VV_LANE, v->lane, &no_patch);
    put_uint(&sub, VV_SEQ, v->seq, &no_patch);
    wb_len_field(w, number, sub.b, sub.n);
    wb_free(&sub);
}

/* A Frame holding body as field `number`. */
static void wire_frame(struct wb *w, uint32_t number, const struct wb *body)
{
    wb_len_field(w, number, body->b, body->n);
}

static void wire_batch(struct wb *w, const struct batch *b, const struct patch *pt)
{
    put_str(w, BATCH_TRIAL, b->trial, pt);
    put_str(w, BATCH_ORIGIN, b->origin, pt);
    put_uint(w, BATCH_LANE, b->lane, pt);
    put_uint(w, BATCH_FIRST_SEQ, b->first_seq, pt);
    if (pt->mode != PATCH_NONE && pt->number == BATCH_ENTRIES) {
        put_len(w, BATCH_ENTRIES, NULL, 0, pt);
    } else {
        for (size_t i = 0; i < b->count; i++)
            wb_len_field(w, BATCH_ENTRIES, b->entries[i], b->entry_lens[i]);
    }
    put_len(w, BATCH_CHAIN_HASH, b->chain_hash, sizeof(b->chain_hash), pt);
    put_len(w, BATCH_SIGNATURE, b->signature, b->signature_len, pt);
}

/* ---- fixtures ----------------------------------------------------------- */

static void set_ref(struct entry_ref *r, const char *origin, uint8_t lane, uint64_t seq)
{
    SET_ID(r->origin, origin);
    r->lane = lane;
    r->seq = seq;
}

/* A write of field = value superseding n refs (filled by the caller). */
static void set_write(struct field_write *w, const char *field, const char *value, size_t n)
{
    SET_ID(w->field, field);
    w->value = xstrdup(value);
    w->supersedes_count = n;
    w->supersedes = n > 0 ? xcalloc(n, sizeof(*w->supersedes)) : NULL;
}

/* An adverse-event entry of site 101: three writes, three supersedes. */
static void make_entry(struct entry *e, uint64_t seq)
{
    memset(e, 0, sizeof(*e));
    SET_ID(e->origin, "site-101");
    e->lane = LANE_SAFETY;
    e->seq = seq;
    e->hlc = (UINT64_C(1718000000000) << 16) | 3;
    e->wall_ms = UINT64_C(1718000000123);
    e->user = xstrdup("dr.smith");
    e->reason = xstrdup("Corrected after source data verification");
    SET_ID(e->record_type, "ae");
    SET_ID(e->record_id, "101-0003-AE02");
    SET_ID(e->site, "101");
    e->writes_count = 3;
    e->writes = xcalloc(3, sizeof(*e->writes));
    set_write(&e->writes[0], "aeterm", "Headache", 2);
    set_ref(&e->writes[0].supersedes[0], "site-101", LANE_BULK, 5);
    set_ref(&e->writes[0].supersedes[1], "hub-1", LANE_SAFETY, 3);
    set_write(&e->writes[1], "aeser", "Y", 0);
    /* A non-ASCII value: an em dash and an accented letter. */
    set_write(&e->writes[2], "aesev", "SEVERE \xe2\x80\x94 c\xc3\xa9phal\xc3\xa9" "e", 1);
    set_ref(&e->writes[2].supersedes[0], "hub-1", LANE_BULK, UINT64_MAX);
    for (int i = 0; i < TS_HASH_BYTES; i++)
        e->prev_hash[i] = (uint8_t)(0x10 + i);
}

static void assert_refs_equal(const struct entry_ref *a, const struct entry_ref *b)
{
    CU_ASSERT_STRING_EQUAL(a->origin, b->origin);
    CU_ASSERT_EQUAL(a->lane, b->lane);
    CU_ASSERT_EQUAL(a->seq, b->seq);
    CU_ASSERT_EQUAL(entry_ref_cmp(a, b), 0);
}

static const char *text_or_empty(const char *s)
{
    return s == NULL ? "" : s;
}

static void assert_entries_equal(const struct entry *a, const struct entry *b)
{
    CU_ASSERT_STRING_EQUAL(a->origin, b->origin);
    CU_ASSERT_EQUAL(a->lane, b->lane);
    CU_ASSERT_EQUAL(a->seq, b->seq);
    CU_ASSERT_EQUAL(a->hlc, b->hlc);
    CU_ASSERT_EQUAL(a->wall_ms, b->wall_ms);
    CU_ASSERT_STRING_EQUAL(text_or_empty(a->user), text_or_empty(b->user));
    CU_ASSERT_STRING_EQUAL(text_or_empty(a->reason), text_or_empty(b->reason));
    CU_ASSERT_STRING_EQUAL(a->record_type, b->record_type);
    CU_ASSERT_STRING_EQUAL(a->record_id, b->record_id);
    CU_ASSERT_STRING_EQUAL(a->site, b->site);
    CU_ASSERT_EQUAL(memcmp(a->prev_hash, b->prev_hash, TS_HASH_BYTES), 0);
    CU_ASSERT_EQUAL(a->lock_epoch, b->lock_epoch);
    CU_ASSERT_EQUAL_FATAL(a->writes_count, b->writes_count);
    for (size_t i = 0; i < a->writes_count; i++) {
        const struct field_write *x = &a->writes[i];
        const struct field_write *y = &b->writes[i];
        CU_ASSERT_STRING_EQUAL(x->field, y->field);
        CU_ASSERT_STRING_EQUAL(text_or_empty(x->value), text_or_empty(y->value));
        CU_ASSERT_EQUAL_FATAL(x->supersedes_count, y->supersedes_count);
        for (size_t k = 0; k < x->supersedes_count; k++)
            assert_refs_equal(&x->supersedes[k], &y->supersedes[k]);
    }
}

/* Every char * of a decoded entry is set, and every id fits and is terminated. */
static void assert_entry_well_formed(const struct entry *e)
{
    CU_ASSERT_PTR_NOT_NULL(e->user);
    CU_ASSERT_PTR_NOT_NULL(e->reason);
    CU_ASSERT(strnlen(e->origin, sizeof(e->origin)) < sizeof(e->origin));
    CU_ASSERT(strnlen(e->record_type, sizeof(e->record_type)) < sizeof(e->record_type));
    CU_ASSERT(strnlen(e->record_id, sizeof(e->record_id)) < sizeof(e->record_id));
    CU_ASSERT(strnlen(e->site, sizeof(e->site)) < sizeof(e->site));
    CU_ASSERT(e->lane < LANE_COUNT);
    CU_ASSERT(e->seq >= 1);
    CU_ASSERT(e->writes_count <= TS_WRITES_PER_ENTRY_MAX);
    for (size_t i = 0; i < e->writes_count; i++) {
        CU_ASSERT_PTR_NOT_NULL(e->writes[i].value);
        CU_ASSERT(e->writes[i].supersedes_count <= TS_SUPERSEDES_MAX);
    }
}

/* Encodes e, which must succeed. */
static void encode_ok(const struct entry *e, uint8_t **out, size_t *len)
{
    struct ts_error err = { 0, "" };
    int rc = codec_entry_encode(e, out, len, &err);
    if (rc != 0)
        fprintf(stderr, "encode failed: %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(*out);
    CU_ASSERT_FATAL(*len > 0);
}

/* Decodes bytes that must be refused with code; checks the message has want. */
static void decode_refused(const uint8_t *buf, size_t len, int code, const char *want)
{
    struct entry e;
    struct ts_error err = { 0, "" };
    int rc = codec_entry_decode(buf, len, &e, &err);
    if (rc != code)
        fprintf(stderr, "want %d (%s), got %d: %s\n", code, want, rc, err.msg);
    CU_ASSERT_EQUAL(rc, code);
    CU_ASSERT_EQUAL(err.code, code);
    if (want != NULL && strstr(err.msg, want) == NULL) {
        fprintf(stderr, "message '%s' lacks '%s'\n", err.msg, want);
        CU_FAIL("error message does not say what was wrong");
    }
    /* A refused decode leaves nothing to release. */
    CU_ASSERT_EQUAL(e.writes_count, 0);
    CU_ASSERT_PTR_NULL(e.writes);
    CU_ASSERT_PTR_NULL(e.user);
    CU_ASSERT_PTR_NULL(e.reason);
}

/* make_entry(seq) with one field patched on the wire, then decoded. */
static void entry_patch_refused(const struct patch *pt, int code, const char *want)
{
    struct entry e;
    struct wb w = { 0 };

    make_entry(&e, 9);
    wire_entry(&w, &e, pt);
    decode_refused(w.b, w.n, code, want);
    wb_free(&w);
    entry_release(&e);
}

static struct patch patch_bytes(uint32_t number, const void *data, size_t len)
{
    struct patch p = { number, PATCH_BYTES, data, len, 0 };
    return p;
}

static struct patch patch_uint(uint32_t number, uint64_t u)
{
    struct patch p = { number, PATCH_UINT, NULL, 0, u };
    return p;
}

static struct patch patch_omit(uint32_t number)
{
    struct patch p = { number, PATCH_OMIT, NULL, 0, 0 };
    return p;
}

/* ---- entries: round trips ----------------------------------------------- */

static void test_codec_entry_round_trip(void)
{
    struct entry e;
    struct entry d;
    struct ts_error err = { 0, "" };
    uint8_t *buf;
    uint8_t *again;
    size_t len;
    size_t again_len;

    make_entry(&e, 42);
    encode_ok(&e, &buf, &len);
    CU_ASSERT_EQUAL_FATAL(codec_entry_decode(buf, len, &d, &err), 0);
    assert_entries_equal(&e, &d);
    assert_entry_well_formed(&d);
    /* Decoding then encoding gives back the very same bytes. */
    encode_ok(&d, &again, &again_len);
    CU_ASSERT_EQUAL(again_len, len);
    CU_ASSERT_EQUAL(memcmp(again, buf, len), 0);
    free(again);
    free(buf);
    entry_release(&d);
    entry_release(&e);
}

static void test_codec_entry_round_trip_empty_text(void)
{
    struct entry e;
    struct entry d;
    struct ts_error err = { 0, "" };
    uint8_t *buf;
    size_t len;

    /* Trial-wide (site ""), no user or reason (NULL reads as ""), empty value, no writes of refs. */
    memset(&e, 0, sizeof(e));
    SET_ID(e.origin, "hub-1");
    e.lane = LANE_BULK;
    e.seq = 1;
    SET_ID(e.record_type, "member");
    SET_ID(e.record_id, "site-102");
    e.writes_count = 1;
    e.writes = xcalloc(1, sizeof(*e.writes));
    set_write(&e.writes[0], "status", "", 0);
    encode_ok(&e, &buf, &len);
    CU_ASSERT_EQUAL_FATAL(codec_entry_decode(buf, len, &d, &err), 0);
    assert_entries_equal(&e, &d);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d.user);
    CU_ASSERT_STRING_EQUAL(d.user, "");
    CU_ASSERT_PTR_NOT_NULL_FATAL(d.reason);
    CU_ASSERT_STRING_EQUAL(d.reason, "");
    CU_ASSERT_STRING_EQUAL(d.site, "");
    CU_ASSERT_STRING_EQUAL(d.writes[0].value, "");
    CU_ASSERT_EQUAL(d.writes[0].supersedes_count, 0);
    CU_ASSERT_PTR_NULL(d.writes[0].supersedes);
    entry_release(&d);
    free(buf);

    /* An entry without writes also round-trips. */
    entry_release(&e);
    memset(&e, 0, sizeof(e));
    SET_ID(e.origin, "admin-1");
    e.seq = 2;
    SET_ID(e.record_type, "study");
    SET_ID(e.record_id, "settings");
    e.user = xstrdup("");
    e.reason = xstrdup("");
    encode_ok(&e, &buf, &len);
    CU_ASSERT_EQUAL_FATAL(codec_entry_decode(buf, len, &d, &err), 0);
    assert_entries_equal(&e, &d);
    CU_ASSERT_EQUAL(d.writes_count, 0);
    CU_ASSERT_PTR_NULL(d.writes);
    entry_release(&d);
    free(buf);
    entry_release(&e);
}

/* The codec's bytes are exactly what the schema says, as a second encoder writes them. */
static void test_codec_entry_wire_format(void)
{
    struct entry e;
    struct wb w = { 0 };
    uint8_t *buf;
    size_t len;

    make_entry(&e, 300);
    encode_ok(&e, &buf, &len);
    wire_entry(&w, &e, &no_patch);
    CU_ASSERT_EQUAL(len, w.n);
    CU_ASSERT_EQUAL(memcmp(buf, w.b, len < w.n ? len : w.n), 0);
    /* The first field is origin: tag 0x0a, length 8, "site-101". */
    CU_ASSERT_EQUAL(buf[0], 0x0a);
    CU_ASSERT_EQUAL(buf[1], 8);
    CU_ASSERT_EQUAL(memcmp(buf + 2, "site-101", 8), 0);
    /* lane 0 is left out; seq 300 follows as field 3: 0x18 0xac 0x02. */
    CU_ASSERT_EQUAL(buf[10], 0x18);
    CU_ASSERT_EQUAL(buf[11], 0xac);
    CU_ASSERT_EQUAL(buf[12], 0x02);
    /* The last field is prev_hash: tag 0x62, length 32. */
    CU_ASSERT_EQUAL(buf[len - 34], 0x62);
    CU_ASSERT_EQUAL(buf[len - 33], 32);
    CU_ASSERT_EQUAL(memcmp(buf + len - 32, e.prev_hash, 32), 0);
    free(buf);
    /* A lock epoch follows prev_hash as field 13 (tag 0x68), and decodes. */
    e.lock_epoch = 3;
    encode_ok(&e, &buf, &len);
    CU_ASSERT_EQUAL(len, w.n + 2);
    CU_ASSERT_EQUAL(memcmp(buf, w.b, w.n), 0);
    CU_ASSERT_EQUAL(buf[len - 2], 0x68);
    CU_ASSERT_EQUAL(buf[len - 1], 3);
    struct entry d;
    struct ts_error err = {0};
    CU_ASSERT_EQUAL_FATAL(codec_entry_decode(buf, len, &d, &err), 0);
    CU_ASSERT_EQUAL(d.lock_epoch, 3);
    entry_release(&d);
    free(buf);
    wb_free(&w);
    entry_release(&e);
}

/* Random valid text: ASCII, 2-, 3- and 4-byte UTF-8, up to max bytes. */
static char *random_text(size_t max)
{
    static const char *const pieces[] = { "a", "Z", " ", "\n", "-", "\xc3\xa9", "\xe2\x80\x94",
                                          "\xf0\x9f\x92\x8a", "\xe6\x97\xa5" };
    size_t want = unit_rand() % (max + 1);
    char *s = xcalloc(want + 1, 1);
    size_t n = 0;

    for (;;) {
        const char *p = pieces[unit_rand() % (sizeof(pieces) / sizeof(pieces[0]))];
        size_t k = strlen(p);
        if (n + k > want)
            break;
        memcpy(s + n, p, k);
        n += k;
    }
    s[n] = '\0';
    return s;
}

static void random_id(char *dst, size_t max, bool may_be_empty)
{
    static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-:/~!";
    size_t n = (may_be_empty ? 0 : 1) + unit_rand() % (max + (may_be_empty ? 1 : 0));
    for (size_t i = 0; i < n; i++)
        dst[i] = chars[unit_rand() % (sizeof(chars) - 1)];
    dst[n] = '\0';
}

/* Whatever encodes, decodes to the same entry: random valid entries. */
static void test_codec_entry_random_round_trip(void)
{
    size_t encoded = 0;

    unit_seed();
    for (int round = 0; round < 300; round++) {
        struct entry e;
        struct entry d;
        struct ts_error err = { 0, "" };
        uint8_t *buf;
        size_t len;

        memset(&e, 0, sizeof(e));
        random_id(e.origin, TS_ID_BYTES_MAX, false);
        e.lane = (uint8_t)(unit_rand() % LANE_COUNT);
        e.seq = 1 + unit_rand() % UINT64_MAX;
        e.hlc = unit_rand() >> (unit_rand() % 64);
        e.wall_ms = unit_rand() >> (unit_rand() % 64);
        e.user = random_text(TS_USER_BYTES_MAX);
        e.reason = random_text(unit_rand() % 4 == 0 ? TS_REASON_BYTES_MAX : 40);
        random_id(e.record_type, TS_TYPE_BYTES_MAX, false);
        random_id(e.record_id, TS_ID_BYTES_MAX, false);
        random_id(e.site, TS_ID_BYTES_MAX, true);
        e.writes_count = unit_rand() % (round % 10 == 0 ? TS_WRITES_PER_ENTRY_MAX + 1 : 6);
        e.writes = e.writes_count > 0 ? xcalloc(e.writes_count, sizeof(*e.writes)) : NULL;
        for (size_t i = 0; i < e.writes_count; i++) {
            struct field_write *w = &e.writes[i];
            random_id(w->field, TS_FIELD_BYTES_MAX, false);
            w->value = random_text(unit_rand() % 8 == 0 ? TS_VALUE_BYTES_MAX : 60);
            w->supersedes_count = unit_rand() % (unit_rand() % 8 == 0 ? TS_SUPERSEDES_MAX + 1 : 3);
            w->supersedes = w->supersedes_count > 0 ? xcalloc(w->supersedes_count, sizeof(*w->supersedes))
                                                    : NULL;
            for (size_t k = 0; k < w->supersedes_count; k++) {
                random_id(w->supersedes[k].origin, TS_ID_BYTES_MAX, false);
                w->supersedes[k].lane = (uint8_t)(unit_rand() % LANE_COUNT);
                w->supersedes[k].seq = 1 + unit_rand() % 1000;
            }
        }
        for (int i = 0; i < TS_HASH_BYTES; i++)
            e.prev_hash[i] = (uint8_t)unit_rand();

        int rc = codec_entry_encode(&e, &buf, &len, &err);
        /* Only the total size can refuse a random valid entry. */
        CU_ASSERT(rc == 0 || rc == TS_ERR_TOOBIG);
        if (rc == TS_ERR_TOOBIG) {
            CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "entry is"));
            CU_ASSERT_PTR_NULL(buf);
        }
        if (rc == 0) {
            encoded++;
            CU_ASSERT(len <= TS_ENTRY_BYTES_MAX);
            int drc = codec_entry_decode(buf, len, &d, &err);
            if (drc != 0)
                fprintf(stderr, "round %d: %s\n", round, err.msg);
            CU_ASSERT_EQUAL_FATAL(drc, 0);
            assert_entries_equal(&e, &d);
            entry_release(&d);
            free(buf);
        }
        entry_release(&e);
    }
    /* Most random entries are small enough to encode. */
    CU_ASSERT(encoded > 200);
}

/* ---- entries: the encoder refuses what breaks limits -------------------- */

/* Encodes e expecting code (0: success) and a message containing want. */
static void encode_refused(const struct entry *e, int code, const char *want)
{
    struct ts_error err = { 0, "" };
    uint8_t *buf = (uint8_t *)&err;   /* must be reset to NULL */
    size_t len = 99;
    int rc = codec_entry_encode(e, &buf, &len, &err);

    if (rc != code)
        fprintf(stderr, "want %d (%s), got %d: %s\n", code, want, rc, err.msg);
    CU_ASSERT_EQUAL(rc, code);
    if (code != 0) {
        /* A refused encode hands back nothing. */
        CU_ASSERT_PTR_NULL(buf);
        CU_ASSERT_EQUAL(len, 0);
    } else {
        CU_ASSERT_PTR_NOT_NULL(buf);
        CU_ASSERT(len > 0);
    }
    if (want != NULL && strstr(err.msg, want) == NULL) {
        fprintf(stderr, "message '%s' lacks '%s'\n", err.msg, want);
        CU_FAIL("error message does not say what was wrong");
    }
    if (rc == 0)
        free(buf);
}

static void test_codec_entry_encode_refuses_limits(void)
{
    struct entry e;

    make_entry(&e, 1);
    free(e.writes[0].value);
    e.writes[0].value = xrepeat('x', 5000);
    encode_refused(&e, TS_ERR_TOOBIG, "entry field 'aeterm': value is 5000 bytes, at most 4096");
    free(e.writes[0].value);
    e.writes[0].value = xrepeat('x', TS_VALUE_BYTES_MAX);
    encode_refused(&e, 0, NULL);
    entry_release(&e);

    make_entry(&e, 1);
    e.lane = LANE_COUNT;
    encode_refused(&e, TS_ERR_INVALID, "lane is 2, at most 1");
    e.lane = LANE_BULK;
    e.seq = 0;
    encode_refused(&e, TS_ERR_INVALID, "entry seq is 0");
    e.seq = 1;
    /* An origin that fills its array without a terminator is too long. */
    memset(e.origin, 'a', sizeof(e.origin));
    encode_refused(&e, TS_ERR_TOOBIG, "entry origin is 64 bytes, at most 63");
    SET_ID(e.origin, "site 101");
    encode_refused(&e, TS_ERR_INVALID, "entry origin: byte 4 is 0x20");
    SET_ID(e.origin, "site-101");
    e.record_type[0] = '\0';
    encode_refused(&e, TS_ERR_INVALID, "entry record_type is empty");
    SET_ID(e.record_type, "ae");
    SET_ID(e.writes[1].field, "ae ser");
    encode_refused(&e, TS_ERR_INVALID, "entry write 1: field name: byte 2 is 0x20");
    SET_ID(e.writes[1].field, "aeser");
    free(e.reason);
    e.reason = xstrdup("bad \xc3\x28 utf-8");
    encode_refused(&e, TS_ERR_INVALID, "entry reason: invalid UTF-8 at byte 4");
    free(e.reason);
    e.reason = xrepeat('r', TS_REASON_BYTES_MAX + 1);
    encode_refused(&e, TS_ERR_TOOBIG, "entry reason is 1025 bytes, at most 1024");
    free(e.reason);
    e.reason = xstrdup("ok");
    free(e.user);
    e.user = xrepeat('u', TS_USER_BYTES_MAX + 1);
    encode_refused(&e, TS_ERR_TOOBIG, "entry user is 128 bytes, at most 127");
    free(e.user);
    e.user = NULL;
    e.writes[0].supersedes[1].lane = 7;
    encode_refused(&e, TS_ERR_INVALID, "entry field 'aeterm': supersedes ref 1 lane is 7");
    e.writes[0].supersedes[1].lane = 0;
    e.writes[0].supersedes[1].seq = 0;
    encode_refused(&e, TS_ERR_INVALID, "supersedes ref 1 seq is 0");
    e.writes[0].supersedes[1].seq = 1;
    encode_refused(&e, 0, NULL);
    entry_release(&e);

    /* Too many supersedes, too many writes. */
    make_entry(&e, 1);
    free(e.writes[1].supersedes);
    e.writes[1].supersedes_count = TS_SUPERSEDES_MAX + 1;
    e.writes[1].supersedes = xcalloc(TS_SUPERSEDES_MAX + 1, sizeof(struct entry_ref));
    for (size_t k = 0; k < TS_SUPERSEDES_MAX + 1; k++)
        set_ref(&e.writes[1].supersedes[k], "hub-1", 0, k + 1);
    encode_refused(&e, TS_ERR_TOOBIG, "entry field 'aeser': supersedes: 33, at most 32");
    e.writes[1].supersedes_count = TS_SUPERSEDES_MAX;
    encode_refused(&e, 0, NULL);
    entry_release(&e);

    make_entry(&e, 1);
    for (size_t i = 0; i < e.writes_count; i++) {
        free(e.writes[i].value);
        free(e.writes[i].supersedes);
    }
    free(e.writes);
    e.writes_count = TS_WRITES_PER_ENTRY_MAX + 1;
    e.writes = xcalloc(e.writes_count, sizeof(*e.writes));
    for (size_t i = 0; i < e.writes_count; i++) {
        char name[24];
        snprintf(name, sizeof(name), "f%zu", i);
        set_write(&e.writes[i], name, "v", 0);
    }
    encode_refused(&e, TS_ERR_TOOBIG, "entry writes: 65, at most 64");
    e.writes_count = TS_WRITES_PER_ENTRY_MAX;
    encode_refused(&e, 0, NULL);
    e.writes_count = TS_WRITES_PER_ENTRY_MAX + 1;
    entry_release(&e);

    /* Every value within its limit, but the whole entry too big. */
    make_entry(&e, 1);
    for (size_t i = 0; i < e.writes_count; i++)
        free(e.writes[i].value);
    free(e.writes[0].supersedes);
    free(e.writes[2].supersedes);
    free(e.writes);
    e.writes_count = 20;
    e.writes = xcalloc(e.writes_count, sizeof(*e.writes));
    for (size_t i = 0; i < e.writes_count; i++) {
        char name[24];
        snprintf(name, sizeof(name), "f%zu", i);
        set_write(&e.writes[i], name, "", 0);
        free(e.writes[i].value);
        e.writes[i].value = xrepeat('v', TS_VALUE_BYTES_MAX);
    }
    encode_refused(&e, TS_ERR_TOOBIG, "entry is");
    entry_release(&e);
}

/* ---- entries: malformed input ------------------------------------------- */

static void test_codec_entry_decode_truncated(void)
{
    struct entry e;
    uint8_t *buf;
    size_t len;

    make_entry(&e, 5);
    encode_ok(&e, &buf, &len);
    entry_release(&e);
    for (size_t cut = 0; cut < len; cut++) {
        struct ts_error err = { 0, "" };
        /* A copy of exactly cut bytes, so a read past it is an ASan report. */
        uint8_t *part = xcalloc(cut, 1);
        memcpy(part, buf, cut);
        int rc = codec_entry_decode(part, cut, &e, &err);
        CU_ASSERT(rc == TS_ERR_CORRUPT);
        CU_ASSERT(err.msg[0] != '\0');
        CU_ASSERT_PTR_NULL(e.writes);
        free(part);
    }
    free(buf);
}

/*
 * Decodes a changed encoding: an error with a message, or an entry that is
 * valid (it re-encodes) and canonical (to exactly these bytes).  Returns
 * whether it decoded.
 */
static bool decode_any_entry(const uint8_t *buf, size_t len)
{
    struct entry e;
    struct ts_error err = { 0, "" };
    struct ts_error err2 = { 0, "" };
    int rc = codec_entry_decode(buf, len, &e, &err);

    if (rc < 0) {
        CU_ASSERT(rc == TS_ERR_CORRUPT || rc == TS_ERR_TOOBIG);
        CU_ASSERT_EQUAL(err.code, rc);
        CU_ASSERT(err.msg[0] != '\0');
        /* Deterministic: the same bytes give the same error. */
        CU_ASSERT_EQUAL(codec_entry_decode(buf, len, &e, &err2), rc);
        CU_ASSERT_STRING_EQUAL(err.msg, err2.msg);
        return false;
    }
    CU_ASSERT_EQUAL(rc, 0);
    assert_entry_well_formed(&e);
    uint8_t *again = NULL;
    size_t again_len = 0;
    CU_ASSERT_EQUAL(codec_entry_encode(&e, &again, &again_len, &err), 0);
    CU_ASSERT_EQUAL(again_len, len);
    if (again != NULL && again_len == len)
        CU_ASSERT_EQUAL(memcmp(again, buf, len), 0);
    free(again);
    entry_release(&e);
    return true;
}

static void test_codec_entry_decode_byte_flips(void)
{
    struct entry e;
    uint8_t *buf;
    size_t len;
    size_t decoded = 0;
    size_t refused = 0;

    make_entry(&e, 5);
    encode_ok(&e, &buf, &len);
    entry_release(&e);
    uint8_t *copy = xcalloc(len, 1);
    for (size_t at = 0; at < len; at++) {
        for (unsigned x = 1; x < 256; x++) {
            memcpy(copy, buf, len);
            copy[at] ^= (uint8_t)x;
            if (decode_any_entry(copy, len))
                decoded++;
            else
                refused++;
        }
    }
    /* Changes inside values or hashes still decode; changes to the structure do not. */
    CU_ASSERT(decoded > 0);
    CU_ASSERT(refused > 0);
    printf("\n    %zu changed entries decoded, %zu refused ", decoded, refused);
    free(copy);
    free(buf);
}

static void test_codec_entry_decode_garbage(void)
{
    struct entry e;
    uint8_t *valid;
    size_t valid_len;

    unit_seed();
    /* Random bytes of random lengths. */
    for (int round = 0; round < 20000; round++) {
        size_t len = unit_rand() % 300;
        uint8_t *buf = xcalloc(len, 1);
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)unit_rand();
        /* Random bytes are almost never a canonical entry. */
        CU_ASSERT_FALSE(decode_any_entry(buf, len));
        free(buf);
    }
    /* Several random changes, insertions and deletions in a valid entry. */
    make_entry(&e, 77);
    encode_ok(&e, &valid, &valid_len);
    entry_release(&e);
    size_t decoded = 0;
    size_t refused = 0;
    for (int round = 0; round < 20000; round++) {
        size_t len = valid_len;
        uint8_t *buf = xcalloc(valid_len + 8, 1);
        memcpy(buf, valid, valid_len);
        int edits = 1 + (int)(unit_rand() % 4);
        for (int k = 0; k < edits && len > 0; k++) {
            size_t at = unit_rand() % len;
            switch (unit_rand() % 3) {
            case 0:
                buf[at] = (uint8_t)unit_rand();
                break;
            case 1:
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = (uint8_t)unit_rand();
                len++;
                break;
            default:
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
                break;
            }
        }
        if (decode_any_entry(buf, len))
            decoded++;
        else
            refused++;
        free(buf);
    }
    /* A byte set inside a value or hash keeps the entry valid; most edits do not. */
    printf("\n    %zu edited entries decoded, %zu refused ", decoded, refused);
    CU_ASSERT(decoded > 0);
    CU_ASSERT(refused > decoded);
    free(valid);
}

static void test_codec_entry_decode_id_too_long(void)
{
    char id[TS_ID_BYTES_MAX + 1];
    memset(id, 'a', sizeof(id));
    struct patch p = patch_bytes(ENTRY_ORIGIN, id, TS_ID_BYTES_MAX + 1);
    entry_patch_refused(&p, TS_ERR_TOOBIG, "entry origin is 64 bytes, at most 63");
    p = patch_bytes(ENTRY_RECORD_ID, id, TS_ID_BYTES_MAX + 1);
    entry_patch_refused(&p, TS_ERR_TOOBIG, "entry record_id is 64 bytes, at most 63");
    p = patch_bytes(ENTRY_SITE, id, TS_ID_BYTES_MAX + 1);
    entry_patch_refused(&p, TS_ERR_TOOBIG, "entry site is 64 bytes, at most 63");
    p = patch_bytes(ENTRY_RECORD_TYPE, id, TS_TYPE_BYTES_MAX + 1);
    entry_patch_refused(&p, TS_ERR_TOOBIG, "entry record_type is 16 bytes, at most 15");

    /* At the limit it decodes. */
    struct entry e;
    struct entry d;
    struct wb w = { 0 };
    struct ts_error err = { 0, "" };
    make_entry(&e, 3);
    memset(e.origin, 'o', TS_ID_BYTES_MAX);
    e.origin[TS_ID_BYTES_MAX] = '\0';
    wire_entry(&w, &e, &no_patch);
    CU_ASSERT_EQUAL(codec_entry_decode(w.b, w.n, &d, &err), 0);
    CU_ASSERT_EQUAL(strlen(d.origin), TS_ID_BYTES_MAX);
    entry_release(&d);
    wb_free(&w);
    entry_release(&e);
}

static void test_codec_entry_decode_id_bad_bytes(void)
{
    static const struct {
        const char *id;
        size_t len;
        const char *want;
    } cases[] = {
        { "site\0" "101", 8, "entry origin: byte 4 is 0x00" },
        { "site\001101", 8, "entry origin: byte 4 is 0x01" },
        { "site\n101", 8, "entry origin: byte 4 is 0x0a" },
        { "site 101", 8, "entry origin: byte 4 is 0x20" },
        { "site\177101", 8, "entry origin: byte 4 is 0x7f" },
        { "site\303\251", 6, "entry origin: byte 4 is 0xc3" },
        { "\0", 1, "entry origin: byte 0 is 0x00" },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct patch p = patch_bytes(ENTRY_ORIGIN, cases[i].id, cases[i].len);
        entry_patch_refused(&p, TS_ERR_CORRUPT, cases[i].want);
    }
    /* An empty origin (left out on the wire) is refused too. */
    struct patch p = patch_omit(ENTRY_ORIGIN);
    entry_patch_refused(&p, TS_ERR_CORRUPT, "entry origin is empty");
    p = patch_bytes(ENTRY_RECORD_ID, "101\0", 4);
    entry_patch_refused(&p, TS_ERR_CORRUPT, "entry record_id: byte 3 is 0x00");

    /* In a field name and in a supersedes ref. */
    struct entry e;
    struct wb w = { 0 };
    make_entry(&e, 2);
    e.writes[1].field[2] = '\t';
    wire_entry(&w, &e, &no_patch);
    decode_refused(w.b, w.n, TS_ERR_CORRUPT, "entry write 1: field name: byte 2 is 0x09");
    wb_free(&w);
    e.writes[1].field[2] = 's';
    e.writes[0].supersedes[1].origin[0] = '\033';
    wire_entry(&w, &e, &no_patch);
    decode_refused(w.b, w.n, TS_ERR_CORRUPT,
                   "entry field 'aeterm': supersedes ref 1 origin: byte 0 is 0x1b");
    wb_free(&w);
    entry_release(&e);
}

static void test_codec_entry_decode_prev_hash_length(void)
{
    uint8_t hash[TS_HASH_BYTES + 1];
    memset(hash, 0xab, sizeof(hash));
    struct patch p = patch_bytes(ENTRY_PREV_HASH, hash, TS_HASH_BYTES - 1);
    entry_patch_refused(&p, TS_ERR_CORRUPT, "entry prev_hash is 31 bytes, expected 32");
    p = patch_bytes(ENTRY_PREV_HASH, hash, TS_HASH_BYTES + 1);
    entry_patch_refused(&p, TS_ERR_CORRUPT, "entry prev_hash is 33 bytes, expected 32");
    p = patch_omit(ENTRY_PREV_HASH);
    entry_patch_refused(&p, TS_ERR_CORRUPT, "entry prev_hash is 0 bytes, expected 32");
}

static void test_codec_entry_decode_lane_out_of_range(void)
{
    struct patch p = patch_uint(ENTRY_LANE, LANE_COUNT);
    entry_patch_refused(&p, TS_ERR_CORRUPT, "entry lane is 2, at most 1");
    p = patch_uint(ENTRY_LANE, 255);
    entry_patch_refused(&p, TS_ERR_CORRUPT, "entry lane is 255, at most 1");
    /* protobuf-c would cut 2^32 to lane 0; the codec refuses it. */
    p = patch_uint(ENTRY_LANE, UINT64_C(1) << 32);
    entry_patch_refused(&p, TS_ERR_CORRUPT, "above 32 bits");

    struct entry e;
    struct wb w = { 0 };
    make_entry(&e, 2);
    e.writes[2].supersedes[0].lane = 9;
    wire_entry(&w, &e, &no_patch);
    decode_refused(w.b, w.n, TS_ERR_CORRUPT, "entry field 'aesev': supersedes ref 0 lane is 9, at most 1");
    wb_free(&w);
    entry_release(&e);
}

static void test_codec_entry_decode_seq_zero(void)
{
    struct patch p = patch_omit(ENTRY_SEQ);
    entry_patch_refused(&p, TS_ERR_CORRUPT, "entry seq is 0");
    p = patch_uint(ENTRY_SEQ, 0);
    entry_patch_refused(&p, TS_ERR_CORRUPT, "entry seq is 0");

    struct entry e;
    struct wb w = { 0 };
    make_entry(&e, 2);
    e.writes[0].supersedes[0].seq = 0;
    wire_entry(&w, &e, &no_patch);
    decode_refused(w.b, w.n, TS_ERR_CORRUPT, "supersedes ref 0 seq is 0");
    wb_free(&w);
    entry_release(&e);
}

static void test_codec_entry_decode_value_too_big(void)
{
    struct entry e;
    struct wb w = { 0 };

    make_entry(&e, 2);
    free(e.writes[0].value);
    e.writes[0].value = xrepeat('h', 5000);
    wire_entry(&w, &e, &no_patch);
    decode_refused(w.b, w.n, TS_ERR_TOOBIG, "entry field 'aeterm': value is 5000 bytes, at most 4096");
    wb_free(&w);
    entry_release(&e);

    char name[TS_FIELD_BYTES_MAX + 2];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    make_entry(&e, 2);
    /* A field name of 32 bytes, written by hand into a one-write entry. */
    struct wb fw = { 0 };
    wb_len_field(&fw, WRITE_FIELD, name, TS_FIELD_BYTES_MAX + 1);
    wb_len_field(&fw, WRITE_VALUE, "v", 1);
    struct patch p = patch_bytes(ENTRY_WRITES, fw.b, fw.n);
    wire_entry(&w, &e, &p);
    decode_refused(w.b, w.n, TS_ERR_TOOBIG, "entry write 0: field name is 32 bytes, at most 31");
    wb_free(&fw);
    wb_free(&w);
    entry_release(&e);
}

static void test_codec_entry_decode_counts(void)
{
    struct entry e;
    struct wb w = { 0 };

    /* 65 writes: an entry without writes, 65 appended, then its prev_hash. */
    make_entry(&e, 2);
    struct field_write one;
    memset(&one, 0, sizeof(one));
    SET_ID(one.field, "x");
    one.value = (char *)"1";
    struct patch p = patch_omit(ENTRY_WRITES);
    struct wb head = { 0 };
    wire_entry(&head, &e, &p);
    /* head ends with prev_hash (tag, length, 32 bytes): leave it for the end. */
    wb_raw(&w, head.b, head.n - (2 + TS_HASH_BYTES));
    for (int i = 0; i < TS_WRITES_PER_ENTRY_MAX + 1; i++) {
        struct wb sub = { 0 };
        wire_write(&sub, &one);
        wb_len_field(&w, ENTRY_WRITES, sub.b, sub.n);
        wb_free(&sub);
    }
    wb_len_field(&w, ENTRY_PREV_HASH, e.prev_hash, TS_HASH_BYTES);
    decode_refused(w.b, w.n, TS_ERR_TOOBIG, "entry writes: 65, at most 64");
    wb_free(&w);
    wb_free(&head);
    entry_release(&e);

    /* 33 supersedes in one write. */
    make_entry(&e, 2);
    free(e.writes[1].supersedes);
    e.writes[1].supersedes_count = TS_SUPERSEDES_MAX + 1;
    e.writes[1].supersedes = xcalloc(TS_SUPERSEDES_MAX + 1, sizeof(struct entry_ref));
    for (size_t k = 0; k < TS_SUPERSEDES_MAX + 1; k++)
        set_ref(&e.writes[1].supersedes[k], "hub-1", 1, k + 1);
    wire_entry(&w, &e, &no_patch);
    decode_refused(w.b, w.n, TS_ERR_TOOBIG, "entry field 'aeser': supersedes: 33, at most 32");
    wb_free(&w);
    /* 32 is allowed. */
    e.writes[1].supersedes_count = TS_SUPERSEDES_MAX;
    wire_entry(&w, &e, &no_patch);
    CU_ASSERT_TRUE(decode_any_entry(w.b, w.n));
    wb_free(&w);
    e.writes[1].supersedes_count = TS_SUPERSEDES_MAX + 1;
    entry_release(&e);
}

static void test_codec_entry_decode_text_rules(void)
{
    struct patch p = patch_bytes(ENTRY_REASON, "typo\0fixed", 10);
    entry_patch_refused(&p, TS_ERR_CORRUPT, "entry reason: byte 4 is NUL");
    p = patch_bytes(ENTRY_REASON, "bad \xff", 5);
    entry_patch_refused(&p, TS_ERR_CORRUPT, "entry reason: invalid UTF-8 at byte 4");
    /* Overlong form of '/', a UTF-16 surrogate, a cut sequence, above U+10FFFF. */
    p = patch_bytes(ENTRY_USER, "a\xc0\xaf", 3);
    entry_patch_refused(&p, TS_ERR_CORRUPT, "entry user: invalid UTF-8 at byte 1");
    p = patch_bytes(ENTRY_USER, "\xed\xa0\x80", 3);
    entry_patch_refused(&p, TS_ERR_CORRUPT, "entry user: invalid UTF-8 at byte 0");
    p = patch_bytes(ENTRY_USER, "ab\xe2\x80", 4);
    entry_patch_refused(&p, TS_ERR_CORRUPT, "entry user: invalid UTF-8 at byte 2");
    p = patch_bytes(ENTRY_USER, "\xf4\x90\x80\x80", 4);
    entry_patch_refused(&p, TS_ERR_CORRUPT, "entry user: invalid UTF-8 at byte 0");

    char *user = xrepeat('u', TS_USER_BYTES_MAX + 1);
    p = patch_bytes(ENTRY_USER, user, TS_USER_BYTES_MAX + 1);
    entry_patch_refused(&p, TS_ERR_TOOBIG, "entry user is 128 bytes, at most 127");
    free(user);
    char *reason = xrepeat('r', TS_REASON_BYTES_MAX + 1);
    p = patch_bytes(ENTRY_REASON, reason, TS_REASON_BYTES_MAX + 1);
    entry_patch_refused(&p, TS_ERR_TOOBIG, "entry reason is 1025 bytes, at most 1024");
    free(reason);

    /* A NUL inside a value would cut it short in C: refused, naming the field. */
    struct entry e;
    struct wb w = { 0 };
    struct wb fw = { 0 };
    make_entry(&e, 2);
    wb_len_field(&fw, WRITE_FIELD, "aeterm", 6);
    wb_len_field(&fw, WRITE_VALUE, "Head\0ache", 9);
    p = patch_bytes(ENTRY_WRITES, fw.b, fw.n);
    wire_entry(&w, &e, &p);
    decode_refused(w.b, w.n, TS_ERR_CORRUPT, "entry field 'aeterm': value: byte 4 is NUL");
    wb_free(&fw);
    wb_free(&w);
    entry_release(&e);
}

static void test_codec_entry_decode_wire_rules(void)
{
    struct entry e;
    struct wb w = { 0 };

    make_entry(&e, 2);
    /* An unknown field appended. */
    wire_entry(&w, &e, &no_patch);
    wb_uint_field(&w, 14, 1);
    decode_refused(w.b, w.n, TS_ERR_CORRUPT, "entry: unknown field 14");
    wb_free(&w);
    /* A second origin. */
    wire_entry(&w, &e, &no_patch);
    wb_len_field(&w, ENTRY_ORIGIN, "hub-1", 5);
    decode_refused(w.b, w.n, TS_ERR_CORRUPT, "entry: field 'origin' appears more than once");
    wb_free(&w);
    /* seq as a string. */
    struct patch p = patch_bytes(ENTRY_SEQ, "7", 1);
    wire_entry(&w, &e, &p);
    decode_refused(w.b, w.n, TS_ERR_CORRUPT, "entry: field 'seq' has wire type 2, expected 0");
    wb_free(&w);
    /* origin as a number. */
    p = patch_uint(ENTRY_ORIGIN, 7);
    wire_entry(&w, &e, &p);
    decode_refused(w.b, w.n, TS_ERR_CORRUPT, "entry: field 'origin' has wire type 0, expected 2");
    wb_free(&w);
    /* A group (wire type 3), a fixed32 and a reserved wire type. */
    wire_entry(&w, &e, &no_patch);
    wb_tag(&w, 14, 3);
    decode_refused(w.b, w.n, TS_ERR_CORRUPT, "unsupported wire type 3");
    wb_free(&w);
    wire_entry(&w, &e, &no_patch);
    wb_tag(&w, ENTRY_HLC, 5);
    wb_raw(&w, "\1\2\3\4", 4);
    decode_refused(w.b, w.n, TS_ERR_CORRUPT, "field 'hlc' has wire type 5");
    wb_free(&w);
    wire_entry(&w, &e, &no_patch);
    wb_tag(&w, 15, 7);
    decode_refused(w.b, w.n, TS_ERR_CORRUPT, "unsupported wire type 7");
    wb_free(&w);
    /* Field number 0. */
    wire_entry(&w, &e, &no_patch);
    wb_byte(&w, 0x00);
    decode_refused(w.b, w.n, TS_ERR_CORRUPT, "field number 0");
    wb_free(&w);
    /* A varint of eleven bytes, and one above 64 bits. */
    wire_entry(&w, &e, &no_patch);
    wb_tag(&w, ENTRY_HLC, 0);
    wb_raw(&w, "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 11);
    decode_refused(w.b, w.n, TS_ERR_CORRUPT, "cut or overlong varint");
    wb_free(&w);
    wire_entry(&w, &e, &no_patch);
    wb_tag(&w, ENTRY_HLC, 0);
    wb_raw(&w, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 10);
    decode_refused(w.b, w.n, TS_ERR_CORRUPT, "cut or overlong varint");
    wb_free(&w);
    /* A length past the end, and a huge length. */
    wire_entry(&w, &e, &no_patch);
    wb_tag(&w, ENTRY_SITE, 2);
    wb_varint(&w, 10);
    wb_raw(&w, "abc", 3);
    decode_refused(w.b, w.n, TS_ERR_CORRUPT, "claims 10 bytes, 3 remain");
    wb_free(&w);
    wire_entry(&w, &e, &no_patch);
    wb_tag(&w, ENTRY_SITE, 2);
    wb_raw(&w, "\xff\xff\xff\xff\x0f", 5);
    decode_refused(w.b, w.n, TS_ERR_CORRUPT, "claims 4294967295 bytes");
    wb_free(&w);
    /* A tag of six bytes. */
    wire_entry(&w, &e, &no_patch);
    wb_raw(&w, "\x88\x80\x80\x80\x80\x00", 6);
    decode_refused(w.b, w.n, TS_ERR_CORRUPT, "bad field tag");
    wb_free(&w);
    /* A malformed ref inside a write. */
    struct wb fw = { 0 };
    wb_len_field(&fw, WRITE_FIELD, "aeterm", 6);
    wb_tag(&fw, WRITE_SUPERSEDES, 2);
    wb_varint(&fw, 3);
    wb_raw(&fw, "\x0a\x05x", 3);
    p = patch_bytes(ENTRY_WRITES, fw.b, fw.n);
    wire_entry(&w, &e, &p);
    decode_refused(w.b, w.n, TS_ERR_CORRUPT, "supersedes ref 0: field 1 claims 5 bytes, 1 remain");
    wb_free(&fw);
    wb_free(&w);
    entry_release(&e);
}

/* Valid entries in any other byte form are refused: one entry, one encoding. */
static void test_codec_entry_decode_non_canonical(void)
{
    struct entry e;
    struct wb w = { 0 };

    make_entry(&e, 2);
    /* origin moved to the end. */
    struct patch p = patch_omit(ENTRY_ORIGIN);
    wire_entry(&w, &e, &p);
    wb_len_field(&w, ENTRY_ORIGIN, e.origin, strlen(e.origin));
    decode_refused(w.b, w.n, TS_ERR_CORRUPT, "not in canonical form");
    wb_free(&w);
    /* lane 0 written out although proto3 leaves it out. */
    p = patch_uint(ENTRY_LANE, 0);
    wire_entry(&w, &e, &p);
    decode_refused(w.b, w.n, TS_ERR_CORRUPT, "not in canonical form");
    wb_free(&w);
    /* An empty site written out. */
    p = patch_bytes(ENTRY_SITE, "", 0);
    SET_ID(e.site, "");
    wire_entry(&w, &e, &p);
    decode_refused(w.b, w.n, TS_ERR_CORRUPT, "not in canonical form");
    wb_free(&w);
    /* seq 2 as a padded varint 0x82 0x00. */
    struct wb head = { 0 };
    wb_len_field(&head, ENTRY_ORIGIN, e.origin, strlen(e.origin));
    wb_tag(&head, ENTRY_SEQ, 0);
    wb_raw(&head, "\x82\x00", 2);
    struct patch p2 = patch_omit(ENTRY_ORIGIN);
    struct wb rest = { 0 };
    struct entry tail = e;
    tail.seq = 0;
    wire_entry(&rest, &tail, &p2);
    wb_raw(&head, rest.b, rest.n);
    decode_refused(head.b, head.n, TS_ERR_CORRUPT, "not in canonical form");
    /* The same bytes with a minimal varint decode. */
    struct wb good = { 0 };
    wire_entry(&good, &e, &no_patch);
    CU_ASSERT_TRUE(decode_any_entry(good.b, good.n));
    wb_free(&good);
    wb_free(&rest);
    wb_free(&head);
    entry_release(&e);
}

static void test_codec_entry_decode_too_big(void)
{
    /* Above the limit, refused before a byte is read: the buffer is smaller. */
    static const uint8_t tiny[1] = { 0x0a };
    decode_refused(tiny, TS_ENTRY_BYTES_MAX + 1, TS_ERR_TOOBIG, "entry is 65537 bytes, at most 65536");
    decode_refused(tiny, SIZE_MAX, TS_ERR_TOOBIG, "at most 65536");
}

/* ---- frames ------------------------------------------------------------- */

static void frame_encode_ok(const struct frame *f, uint8_t **out, size_t *len)
{
    struct ts_error err = { 0, "" };
    int rc = codec_frame_encode(f, out, len, &err);
    if (rc != 0)
        fprintf(stderr, "frame encode failed: %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(*out);
    CU_ASSERT_FATAL(*len > 0);
    CU_ASSERT(*len <= TS_FRAME_BYTES_MAX);
}

static void frame_refused(const uint8_t *buf, size_t len, int code, const char *want)
{
    struct frame f;
    struct ts_error err = { 0, "" };
    int rc = codec_frame_decode(buf, len, &f, &err);

    if (rc != code)
        fprintf(stderr, "want %d (%s), got %d: %s\n", code, want, rc, err.msg);
    CU_ASSERT_EQUAL(rc, code);
    CU_ASSERT_EQUAL(err.code, code);
    if (want != NULL && strstr(err.msg, want) == NULL) {
        fprintf(stderr, "message '%s' lacks '%s'\n", err.msg, want);
        CU_FAIL("error message does not say what was wrong");
    }
    CU_ASSERT_PTR_NULL(f.vector);
    CU_ASSERT_PTR_NULL(f.reason);
    CU_ASSERT_PTR_NULL(f.batch.owned);
    if (rc == 0)
        codec_frame_release(&f);
}

static void make_hello(struct frame *f, size_t n)
{
    memset(f, 0, sizeof(*f));
    f->type = FRAME_HELLO;
    SET_ID(f->trial, "ONCO-2024-07");
    SET_ID(f->node_id, "site-101");
    f->protocol_version = 1;
    f->vector_count = n;
    f->vector = n > 0 ? xcalloc(n, sizeof(*f->vector)) : NULL;
    for (size_t i = 0; i < n; i++) {
        char origin[32];
        snprintf(origin, sizeof(origin), "node-%zu", i / 2);
        SET_ID(f->vector[i].origin, origin);
        f->vector[i].lane = (uint8_t)(i % 2);
        f->vector[i].seq = i * 1000 + (i % 3);
    }
}

static void assert_vectors_equal(const struct frame *a, const struct frame *b)
{
    CU_ASSERT_EQUAL_FATAL(a->vector_count, b->vector_count);
    for (size_t i = 0; i < a->vector_count; i++) {
        CU_ASSERT_STRING_EQUAL(a->vector[i].origin, b->vector[i].origin);
        CU_ASSERT_EQUAL(a->vector[i].lane, b->vector[i].lane);
        CU_ASSERT_EQUAL(a->vector[i].seq, b->vector[i].seq);
    }
}

static void test_codec_frame_hello_round_trip(void)
{
    struct frame f;
    struct frame d;
    struct ts_error err = { 0, "" };
    uint8_t *buf;
    size_t len;

    make_hello(&f, 7);
    frame_encode_ok(&f, &buf, &len);
    CU_ASSERT_EQUAL_FATAL(codec_frame_decode(buf, len, &d, &err), 0);
    CU_ASSERT_EQUAL(d.type, FRAME_HELLO);
    CU_ASSERT_STRING_EQUAL(d.trial, "ONCO-2024-07");
    CU_ASSERT_STRING_EQUAL(d.node_id, "site-101");
    CU_ASSERT_EQUAL(d.protocol_version, 1);
    assert_vectors_equal(&f, &d);
    CU_ASSERT_PTR_NULL(d.reason);
    CU_ASSERT_PTR_NULL(d.batch.owned);
    /* The frame is field 1 of Frame; a hello's trial is its field 1. */
    CU_ASSERT_EQUAL(buf[0], 0x0a);
    codec_frame_release(&d);
    free(buf);
    codec_frame_release(&f);

    /* A full vector, and an empty one. */
    make_hello(&f, TS_CHAINS_MAX);
    frame_encode_ok(&f, &buf, &len);
    CU_ASSERT_EQUAL_FATAL(codec_frame_decode(buf, len, &d, &err), 0);
    assert_vectors_equal(&f, &d);
    codec_frame_release(&d);
    free(buf);
    codec_frame_release(&f);
    make_hello(&f, 0);
    frame_encode_ok(&f, &buf, &len);
    CU_ASSERT_EQUAL_FATAL(codec_frame_decode(buf, len, &d, &err), 0);
    CU_ASSERT_EQUAL(d.vector_count, 0);
    CU_ASSERT_PTR_NULL(d.vector);
    codec_frame_release(&d);
    free(buf);
    codec_frame_release(&f);
}

/* A batch of n consecutive entries of (site-101, safety) from first_seq; bytes owned by the caller. */
static void make_batch(struct frame *f, uint64_t first_seq, size_t n)
{
    memset(f, 0, sizeof(*f));
    f->type = FRAME_BATCH;
    struct batch *b = &f->batch;
    SET_ID(b->trial, "ONCO-2024-07");
    SET_ID(b->origin, "site-101");
    b->lane = LANE_SAFETY;
    b->first_seq = first_seq;
    b->count = n;
    b->entries = xcalloc(n, sizeof(*b->entries));
    b->entry_lens = xcalloc(n, sizeof(*b->entry_lens));
    for (size_t i = 0; i < n; i++) {
        struct entry e;
        uint8_t *buf;
        make_entry(&e, first_seq + i);
        encode_ok(&e, &buf, &b->entry_lens[i]);
        b->entries[i] = buf;
        entry_release(&e);
    }
    for (int i = 0; i < TS_HASH_BYTES; i++)
        b->chain_hash[i] = (uint8_t)(0xc0 + i);
    b->signature_len = TS_SIG_BYTES_MAX;
    for (int i = 0; i < TS_SIG_BYTES_MAX; i++)
        b->signature[i] = (uint8_t)(0x55 ^ i);
}

/* Frees what make_batch() allocated: a hand-built batch does not own its entries. */
static void free_batch(struct frame *f)
{
    CU_ASSERT_PTR_NULL(f->batch.owned);
    for (size_t i = 0; i < f->batch.count; i++)
        free((void *)f->batch.entries[i]);
    free(f->batch.entries);
    free(f->batch.entry_lens);
    codec_frame_release(f);
}

static void test_codec_frame_batch_round_trip(void)
{
    struct frame f;
    struct frame d;
    struct ts_error err = { 0, "" };
    uint8_t *buf;
    size_t len;

    make_batch(&f, 41, 3);
    frame_encode_ok(&f, &buf, &len);
    CU_ASSERT_EQUAL_FATAL(codec_frame_decode(buf, len, &d, &err), 0);
    /* The decoded entries live in the frame, not in the input: free it first. */
    memset(buf, 0xee, len);
    free(buf);
    CU_ASSERT_EQUAL(d.type, FRAME_BATCH);
    CU_ASSERT_STRING_EQUAL(d.batch.trial, "ONCO-2024-07");
    CU_ASSERT_STRING_EQUAL(d.batch.origin, "site-101");
    CU_ASSERT_EQUAL(d.batch.lane, LANE_SAFETY);
    CU_ASSERT_EQUAL(d.batch.first_seq, 41);
    CU_ASSERT_EQUAL(memcmp(d.batch.chain_hash, f.batch.chain_hash, TS_HASH_BYTES), 0);
    CU_ASSERT_EQUAL(d.batch.signature_len, TS_SIG_BYTES_MAX);
    CU_ASSERT_EQUAL(memcmp(d.batch.signature, f.batch.signature, TS_SIG_BYTES_MAX), 0);
    CU_ASSERT_PTR_NOT_NULL(d.batch.owned);
    CU_ASSERT_EQUAL_FATAL(d.batch.count, 3);
    for (size_t i = 0; i < 3; i++) {
        struct entry e;
        CU_ASSERT_EQUAL(d.batch.entry_lens[i], f.batch.entry_lens[i]);
        CU_ASSERT_EQUAL(memcmp(d.batch.entries[i], f.batch.entries[i], f.batch.entry_lens[i]), 0);
        CU_ASSERT_PTR_NOT_EQUAL(d.batch.entries[i], f.batch.entries[i]);
        CU_ASSERT_EQUAL(codec_entry_decode(d.batch.entries[i], d.batch.entry_lens[i], &e, &err), 0);
        CU_ASSERT_EQUAL(e.seq, 41 + i);
        entry_release(&e);
    }
    codec_frame_release(&d);
    CU_ASSERT_PTR_NULL(d.batch.owned);
    CU_ASSERT_EQUAL(d.batch.count, 0);

    /* An empty signature is a valid encoding (verification is not the codec's). */
    f.batch.signature_len = 0;
    frame_encode_ok(&f, &buf, &len);
    CU_ASSERT_EQUAL_FATAL(codec_frame_decode(buf, len, &d, &err), 0);
    CU_ASSERT_EQUAL(d.batch.signature_len, 0);
    codec_frame_release(&d);
    free(buf);
    free_batch(&f);

    /* One entry whose seq is the last one possible. */
    make_batch(&f, UINT64_MAX, 1);
    frame_encode_ok(&f, &buf, &len);
    CU_ASSERT_EQUAL_FATAL(codec_frame_decode(buf, len, &d, &err), 0);
    CU_ASSERT_EQUAL(d.batch.first_seq, UINT64_MAX);
    codec_frame_release(&d);
    free(buf);
    free_batch(&f);
}

/* cert_serial: round trip, and only uppercase hex within its limit. */
static void test_codec_frame_batch_cert_serial(void)
{
    struct frame f;
    struct frame d;
    struct ts_error err = { 0, "" };
    uint8_t *buf;
    size_t len;

    make_batch(&f, 1, 2);
    /* The longest serial RFC 5280 allows, as hex. */
    memset(f.batch.cert_serial, 'F', TS_SERIAL_BYTES_MAX);
    f.batch.cert_serial[TS_SERIAL_BYTES_MAX] = '\0';
    frame_encode_ok(&f, &buf, &len);
    CU_ASSERT_EQUAL_FATAL(codec_frame_decode(buf, len, &d, &err), 0);
    CU_ASSERT_EQUAL(strlen(d.batch.cert_serial), TS_SERIAL_BYTES_MAX);
    CU_ASSERT_EQUAL(memcmp(d.batch.cert_serial, f.batch.cert_serial, TS_SERIAL_BYTES_MAX), 0);
    codec_frame_release(&d);
    /* The same bytes decode whatever the receiver had before: a serial that
     * is not uppercase hex is refused on the wire, as when encoding. */
    uint8_t *p = NULL;
    for (size_t i = 0; i + TS_SERIAL_BYTES_MAX <= len; i++) {
        if (memcmp(buf + i, f.batch.cert_serial, TS_SERIAL_BYTES_MAX) == 0) {
            p = buf + i;
            break;
        }
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    p[3] = 'f';
    CU_ASSERT_EQUAL(codec_frame_decode(buf, len, &d, &err), TS_ERR_CORRUPT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "cert_serial"));
    free(buf);
    snprintf(f.batch.cert_serial, sizeof(f.batch.cert_serial), "12-3");
    err.msg[0] = '\0';
    CU_ASSERT_EQUAL(codec_frame_encode(&f, &buf, &len, &err), TS_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "cert_serial"));
    /* None at all (a hand-built batch) still round trips as "". */
    f.batch.cert_serial[0] = '\0';
    frame_encode_ok(&f, &buf, &len);
    CU_ASSERT_EQUAL_FATAL(codec_frame_decode(buf, len, &d, &err), 0);
    CU_ASSERT_STRING_EQUAL(d.batch.cert_serial, "");
    codec_frame_release(&d);
    free(buf);
    free_batch(&f);
}

static void test_codec_frame_batch_holes_and_cert(void)
{
    struct frame f;
    struct frame d;
    struct ts_error err = { 0, "" };
    uint8_t hole_hash[TS_HASH_BYTES];
    static const char cert[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    uint8_t *buf;
    size_t len;

    make_batch(&f, 7, 3);
    for (size_t i = 0; i < TS_HASH_BYTES; i++)
        hole_hash[i] = (uint8_t)(0xa0 + i);
    /* Entry 1 (seq 8) becomes a hole: only the chain hash after it travels. */
    const uint8_t *kept = f.batch.entries[1];
    size_t kept_len = f.batch.entry_lens[1];
    f.batch.entries[1] = hole_hash;
    f.batch.entry_lens[1] = BATCH_HOLE_LEN;
    f.batch.origin_cert = cert;
    f.batch.origin_cert_len = sizeof(cert) - 1;
    snprintf(f.batch.cert_serial, sizeof(f.batch.cert_serial), "%s", "0A1B2C3D");
    frame_encode_ok(&f, &buf, &len);
    CU_ASSERT_EQUAL_FATAL(codec_frame_decode(buf, len, &d, &err), 0);
    free(buf);
    CU_ASSERT_STRING_EQUAL(d.batch.cert_serial, "0A1B2C3D");
    CU_ASSERT_EQUAL_FATAL(d.batch.count, 3);
    CU_ASSERT_EQUAL(d.batch.entry_lens[1], BATCH_HOLE_LEN);
    CU_ASSERT_EQUAL(memcmp(d.batch.entries[1], hole_hash, TS_HASH_BYTES), 0);
    CU_ASSERT_EQUAL(d.batch.entry_lens[0], f.batch.entry_lens[0]);
    CU_ASSERT_EQUAL(d.batch.entry_lens[2], f.batch.entry_lens[2]);
    CU_ASSERT_EQUAL_FATAL(d.batch.origin_cert_len, sizeof(cert) - 1);
    CU_ASSERT_EQUAL(memcmp(d.batch.origin_cert, cert, sizeof(cert) - 1), 0);
    CU_ASSERT_EQUAL(d.batch.origin_cert[d.batch.origin_cert_len], '\0');
    codec_frame_release(&d);

    /* Without a certificate, none comes back. */
    f.batch.origin_cert = NULL;
    f.batch.origin_cert_len = 0;
    frame_encode_ok(&f, &buf, &len);
    CU_ASSERT_EQUAL_FATAL(codec_frame_decode(buf, len, &d, &err), 0);
    CU_ASSERT_PTR_NULL(d.batch.origin_cert);
    CU_ASSERT_EQUAL(d.batch.origin_cert_len, 0);
    codec_frame_release(&d);
    free(buf);

    /* A certificate above the limit is refused before encoding. */
    char *big = malloc(TS_CERT_BYTES_MAX + 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    memset(big, 'A', TS_CERT_BYTES_MAX + 1);
    big[TS_CERT_BYTES_MAX + 1] = '\0';
    f.batch.origin_cert = big;
    f.batch.origin_cert_len = TS_CERT_BYTES_MAX + 1;
    CU_ASSERT_EQUAL(codec_frame_encode(&f, &buf, &len, &err), TS_ERR_TOOBIG);
    free(big);
    f.batch.origin_cert = NULL;
    f.batch.origin_cert_len = 0;
    f.batch.entries[1] = kept;
    f.batch.entry_lens[1] = kept_len;
    free_batch(&f);
}

static void test_codec_frame_ack_round_trip(void)
{
    struct frame f;
    struct frame d;
    struct ts_error err = { 0, "" };
    uint8_t *buf;
    size_t len;

    make_hello(&f, 5);
    f.type = FRAME_ACK;
    memset(f.trial, 0, sizeof(f.trial));
    memset(f.node_id, 0, sizeof(f.node_id));
    f.protocol_version = 0;
    f.vector[4].seq = UINT64_MAX;
    frame_encode_ok(&f, &buf, &len);
    /* An ack is field 3 of Frame. */
    CU_ASSERT_EQUAL(buf[0], 0x1a);
    CU_ASSERT_EQUAL_FATAL(codec_frame_decode(buf, len, &d, &err), 0);
    CU_ASSERT_EQUAL(d.type, FRAME_ACK);
    assert_vectors_equal(&f, &d);
    CU_ASSERT_STRING_EQUAL(d.trial, "");
    codec_frame_release(&d);
    free(buf);

    /* An empty ack: just its tag and a zero length. */
    f.vector_count = 0;
    frame_encode_ok(&f, &buf, &len);
    CU_ASSERT_EQUAL(len, 2);
    CU_ASSERT_EQUAL(buf[0], 0x1a);
    CU_ASSERT_EQUAL(buf[1], 0x00);
    CU_ASSERT_EQUAL_FATAL(codec_frame_decode(buf, len, &d, &err), 0);
    CU_ASSERT_EQUAL(d.type, FRAME_ACK);
    CU_ASSERT_EQUAL(d.vector_count, 0);
    codec_frame_release(&d);
    free(buf);
    f.vector_count = 5;
    codec_frame_release(&f);
}

static void test_codec_frame_refusal_round_trip(void)
{
    struct frame f;
    struct frame d;
    struct ts_error err = { 0, "" };
    uint8_t *buf;
    size_t len;

    memset(&f, 0, sizeof(f));
    f.type = FRAME_REFUSAL;
    f.reason = xstrdup("certificate revoked: site-104 \xe2\x80\x94 contact the CRO");
    frame_encode_ok(&f, &buf, &len);
    CU_ASSERT_EQUAL(buf[0], 0x22);
    CU_ASSERT_EQUAL_FATAL(codec_frame_decode(buf, len, &d, &err), 0);
    CU_ASSERT_EQUAL(d.type, FRAME_REFUSAL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d.reason);
    CU_ASSERT_STRING_EQUAL(d.reason, f.reason);
    codec_frame_release(&d);
    free(buf);
    codec_frame_release(&f);
    CU_ASSERT_PTR_NULL(f.reason);

    /* No reason at all still decodes to "". */
    f.type = FRAME_REFUSAL;
    frame_encode_ok(&f, &buf, &len);
    CU_ASSERT_EQUAL_FATAL(codec_frame_decode(buf, len, &d, &err), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d.reason);
    CU_ASSERT_STRING_EQUAL(d.reason, "");
    codec_frame_release(&d);
    free(buf);
}

static void test_codec_frame_decode_oversized(void)
{
    /*
     * The length alone refuses the frame: the buffer is one byte, so reading
     * it further would be an ASan report, and nothing is allocated.
     */
    static const uint8_t tiny[1] = { 0x12 };
    frame_refused(tiny, (size_t)TS_FRAME_BYTES_MAX + 1, TS_ERR_TOOBIG, "at most 1114112");
    frame_refused(tiny, SIZE_MAX, TS_ERR_TOOBIG, "at most 1114112");
    /* Exactly at the limit the bytes are read (and these are not a frame). */
    uint8_t *big = xcalloc(TS_FRAME_BYTES_MAX, 1);
    frame_refused(big, TS_FRAME_BYTES_MAX, TS_ERR_CORRUPT, "frame");
    free(big);
}

/* Hand-encodes f's batch with one field patched, as a Frame. */
static void wire_batch_frame(struct wb *w, const struct frame *f, const struct patch *pt)
{
    struct wb body = { 0 };
    wire_batch(&body, &f->batch, pt);
    wire_frame(w, FRAME_BATCH, &body);
    wb_free(&body);
}

static void test_codec_frame_batch_too_many_entries(void)
{
    struct frame f;
    struct wb w = { 0 };
    struct ts_error err = { 0, "" };
    uint8_t *out = NULL;
    size_t out_len = 0;

    /* 1025 small entries (copies of one: the count is refused first). */
    make_batch(&f, 1, 1);
    struct wb entries = { 0 };
    for (int i = 0; i < TS_BATCH_ENTRIES_MAX + 1; i++)
        wb_len_field(&entries, BATCH_ENTRIES, f.batch.entries[0], f.batch.entry_lens[0]);
    struct patch p = patch_omit(BATCH_ENTRIES);
    struct wb body = { 0 };
    wire_batch(&body, &f.batch, &p);
    wb_raw(&body, entries.b, entries.n);
    wire_frame(&w, FRAME_BATCH, &body);
    frame_refused(w.b, w.n, TS_ERR_TOOBIG, "batch entries: 1025, at most 1024");
    wb_free(&w);
    wb_free(&body);
    wb_free(&entries);
    free_batch(&f);

    /* The encoder refuses it too. */
    make_batch(&f, 1, 2);
    const uint8_t **many = xcalloc(TS_BATCH_ENTRIES_MAX + 1, sizeof(*many));
    size_t *lens = xcalloc(TS_BATCH_ENTRIES_MAX + 1, sizeof(*lens));
    for (size_t i = 0; i < TS_BATCH_ENTRIES_MAX + 1; i++) {
        many[i] = f.batch.entries[0];
        lens[i] = f.batch.entry_lens[0];
    }
    const uint8_t **saved = f.batch.entries;
    size_t *saved_lens = f.batch.entry_lens;
    f.batch.entries = many;
    f.batch.entry_lens = lens;
    f.batch.count = TS_BATCH_ENTRIES_MAX + 1;
    CU_ASSERT_EQUAL(codec_frame_encode(&f, &out, &out_len, &err), TS_ERR_TOOBIG);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "batch entries: 1025, at most 1024"));
    CU_ASSERT_PTR_NULL(out);
    f.batch.entries = saved;
    f.batch.entry_lens = saved_lens;
    f.batch.count = 2;
    free(many);
    free(lens);
    free_batch(&f);
}

static void test_codec_frame_batch_bytes_limits(void)
{
    struct frame f;
    struct wb w = { 0 };
    struct wb body = { 0 };

    make_batch(&f, 1, 1);
    struct patch p = patch_omit(BATCH_ENTRIES);
    /* One entry above TS_ENTRY_BYTES_MAX. */
    uint8_t *huge = xcalloc(TS_ENTRY_BYTES_MAX + 1, 1);
    wire_batch(&body, &f.batch, &p);
    wb_len_field(&body, BATCH_ENTRIES, huge, TS_ENTRY_BYTES_MAX + 1);
    wire_frame(&w, FRAME_BATCH, &body);
    frame_refused(w.b, w.n, TS_ERR_TOOBIG, "batch entry 0 is 65537 bytes, at most 65536");
    wb_free(&w);
    wb_free(&body);
    /* Seventeen entries of 64000 bytes: each fits, together above TS_BATCH_BYTES_MAX. */
    wire_batch(&body, &f.batch, &p);
    for (int i = 0; i < 17; i++)
        wb_len_field(&body, BATCH_ENTRIES, huge, 64000);
    wire_frame(&w, FRAME_BATCH, &body);
    CU_ASSERT(w.n <= TS_FRAME_BYTES_MAX);
    frame_refused(w.b, w.n, TS_ERR_TOOBIG, "batch entries pass 1048576 bytes at entry 16");
    wb_free(&w);
    wb_free(&body);
    /* An empty entry. */
    wire_batch(&body, &f.batch, &p);
    wb_len_field(&body, BATCH_ENTRIES, huge, 0);
    wire_frame(&w, FRAME_BATCH, &body);
    frame_refused(w.b, w.n, TS_ERR_CORRUPT, "batch entry 0 is empty");
    wb_free(&w);
    wb_free(&body);
    free(huge);
    free_batch(&f);
}

static void test_codec_frame_batch_header_rules(void)
{
    struct frame f;
    struct wb w = { 0 };
    uint8_t bytes[TS_SIG_BYTES_MAX + 1];

    memset(bytes, 0x5a, sizeof(bytes));
    make_batch(&f, 1, 2);
    struct patch p = patch_uint(BATCH_FIRST_SEQ, 0);
    wire_batch_frame(&w, &f, &p);
    frame_refused(w.b, w.n, TS_ERR_CORRUPT, "batch first_seq is 0");
    wb_free(&w);
    p = patch_bytes(BATCH_CHAIN_HASH, bytes, TS_HASH_BYTES - 1);
    wire_batch_frame(&w, &f, &p);
    frame_refused(w.b, w.n, TS_ERR_CORRUPT, "batch chain_hash is 31 bytes, expected 32");
    wb_free(&w);
    p = patch_omit(BATCH_CHAIN_HASH);
    wire_batch_frame(&w, &f, &p);
    frame_refused(w.b, w.n, TS_ERR_CORRUPT, "batch chain_hash is 0 bytes, expected 32");
    wb_free(&w);
    p = patch_bytes(BATCH_SIGNATURE, bytes, TS_SIG_BYTES_MAX + 1);
    wire_batch_frame(&w, &f, &p);
    frame_refused(w.b, w.n, TS_ERR_TOOBIG, "batch signature is 65 bytes, at most 64");
    wb_free(&w);
    p = patch_omit(BATCH_ENTRIES);
    wire_batch_frame(&w, &f, &p);
    frame_refused(w.b, w.n, TS_ERR_CORRUPT, "batch has no entries");
    wb_free(&w);
    p = patch_uint(BATCH_LANE, 2);
    wire_batch_frame(&w, &f, &p);
    frame_refused(w.b, w.n, TS_ERR_CORRUPT, "batch lane is 2, at most 1");
    wb_free(&w);
    p = patch_bytes(BATCH_TRIAL, "ONCO\x01", 5);
    wire_batch_frame(&w, &f, &p);
    frame_refused(w.b, w.n, TS_ERR_CORRUPT, "batch trial: byte 4 is 0x01");
    wb_free(&w);
    p = patch_omit(BATCH_ORIGIN);
    wire_batch_frame(&w, &f, &p);
    frame_refused(w.b, w.n, TS_ERR_CORRUPT, "batch origin is empty");
    wb_free(&w);
    /* Two entries from UINT64_MAX would pass the last seq. */
    p = patch_uint(BATCH_FIRST_SEQ, UINT64_MAX);
    wire_batch_frame(&w, &f, &p);
    frame_refused(w.b, w.n, TS_ERR_CORRUPT, "passes the last seq");
    wb_free(&w);
    /* Unpatched, the same batch decodes. */
    wire_batch_frame(&w, &f, &no_patch);
    struct frame d;
    struct ts_error err = { 0, "" };
    CU_ASSERT_EQUAL(codec_frame_decode(w.b, w.n, &d, &err), 0);
    codec_frame_release(&d);
    wb_free(&w);
    free_batch(&f);
}

static void test_codec_frame_batch_entries_must_follow(void)
{
    struct frame f;
    struct wb w = { 0 };

    /* first_seq says 10, the entries are 11 and 12. */
    make_batch(&f, 11, 2);
    struct patch p = patch_uint(BATCH_FIRST_SEQ, 10);
    wire_batch_frame(&w, &f, &p);
    frame_refused(w.b, w.n, TS_ERR_CORRUPT, "batch entry 0: seq is 11, expected 10");
    wb_free(&w);
    /* Entries in the wrong order. */
    const uint8_t *t = f.batch.entries[0];
    size_t tl = f.batch.entry_lens[0];
    f.batch.entries[0] = f.batch.entries[1];
    f.batch.entry_lens[0] = f.batch.entry_lens[1];
    f.batch.entries[1] = t;
    f.batch.entry_lens[1] = tl;
    p = patch_uint(BATCH_FIRST_SEQ, 12);
    wire_batch_frame(&w, &f, &p);
    frame_refused(w.b, w.n, TS_ERR_CORRUPT, "batch entry 1: seq is 11, expected 13");
    wb_free(&w);
    /* Another origin's batch. */
    p = patch_bytes(BATCH_ORIGIN, "site-102", 8);
    wire_batch_frame(&w, &f, &p);
    frame_refused(w.b, w.n, TS_ERR_CORRUPT, "origin is 'site-101', the batch's is 'site-102'");
    wb_free(&w);
    /* Another lane. */
    p = patch_uint(BATCH_LANE, LANE_BULK);
    wire_batch_frame(&w, &f, &p);
    frame_refused(w.b, w.n, TS_ERR_CORRUPT, "lane is 0, the batch's is 1");
    wb_free(&w);
    free_batch(&f);

    /* An entry that does not decode, inside a well-formed batch. */
    make_batch(&f, 1, 2);
    uint8_t *bad = xcalloc(f.batch.entry_lens[1], 1);
    memcpy(bad, f.batch.entries[1], f.batch.entry_lens[1]);
    bad[f.batch.entry_lens[1] - 33] = 31;   /* prev_hash length 32 -> 31 */
    free((void *)f.batch.entries[1]);
    f.batch.entries[1] = bad;
    wire_batch_frame(&w, &f, &no_patch);
    frame_refused(w.b, w.n, TS_ERR_CORRUPT, "batch entry 1 (seq 2): entry");
    wb_free(&w);
    /* The encoder refuses to send it. */
    struct ts_error err = { 0, "" };
    uint8_t *out = NULL;
    size_t out_len = 0;
    CU_ASSERT_EQUAL(codec_frame_encode(&f, &out, &out_len, &err), TS_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "batch entry 1 (seq 2)"));
    CU_ASSERT_PTR_NULL(out);
    free_batch(&f);
}

static void test_codec_frame_hello_rules(void)
{
    struct frame f;
    struct wb w = { 0 };
    struct wb body = { 0 };

    /* 4097 vector items. */
    make_hello(&f, TS_CHAINS_MAX + 1);
    wb_len_field(&body, HELLO_TRIAL, f.trial, strlen(f.trial));
    wb_len_field(&body, HELLO_NODE_ID, f.node_id, strlen(f.node_id));
    for (size_t i = 0; i < f.vector_count; i++)
        wire_vv(&body, HELLO_VECTOR, &f.vector[i]);
    wire_frame(&w, FRAME_HELLO, &body);
    frame_refused(w.b, w.n, TS_ERR_TOOBIG, "hello vector items: 4097, at most 4096");
    wb_free(&w);
    wb_free(&body);
    /* The encoder too. */
    struct ts_error err = { 0, "" };
    uint8_t *out = NULL;
    size_t out_len = 0;
    CU_ASSERT_EQUAL(codec_frame_encode(&f, &out, &out_len, &err), TS_ERR_TOOBIG);
    CU_ASSERT_PTR_NULL(out);
    codec_frame_release(&f);

    /* An item with lane 5; an item with a control character in its origin. */
    make_hello(&f, 3);
    f.vector[2].lane = 5;
    wb_len_field(&body, HELLO_TRIAL, f.trial, strlen(f.trial));
    wb_len_field(&body, HELLO_NODE_ID, f.node_id, strlen(f.node_id));
    for (size_t i = 0; i < f.vector_count; i++)
        wire_vv(&body, HELLO_VECTOR, &f.vector[i]);
    wire_frame(&w, FRAME_HELLO, &body);
    frame_refused(w.b, w.n, TS_ERR_CORRUPT, "hello vector item 2 lane is 5, at most 1");
    wb_free(&w);
    wb_free(&body);
    CU_ASSERT_EQUAL(codec_frame_encode(&f, &out, &out_len, &err), TS_ERR_INVALID);
    f.vector[2].lane = 1;
    f.vector[1].origin[1] = '\r';
    wb_len_field(&body, HELLO_TRIAL, f.trial, strlen(f.trial));
    wb_len_field(&body, HELLO_NODE_ID, f.node_id, strlen(f.node_id));
    for (size_t i = 0; i < f.vector_count; i++)
        wire_vv(&body, HELLO_VECTOR, &f.vector[i]);
    wire_frame(&w, FRAME_HELLO, &body);
    frame_refused(w.b, w.n, TS_ERR_CORRUPT, "hello vector item 1 origin: byte 1 is 0x0d");
    wb_free(&w);
    wb_free(&body);
    codec_frame_release(&f);

    /* No trial; a protocol version above 32 bits. */
    wb_len_field(&body, HELLO_NODE_ID, "site-101", 8);
    wire_frame(&w, FRAME_HELLO, &body);
    frame_refused(w.b, w.n, TS_ERR_CORRUPT, "hello trial is empty");
    wb_free(&w);
    wb_free(&body);
    wb_len_field(&body, HELLO_TRIAL, "T", 1);
    wb_len_field(&body, HELLO_NODE_ID, "site-101", 8);
    wb_uint_field(&body, HELLO_PROTOCOL_VERSION, UINT64_C(1) << 33);
    wire_frame(&w, FRAME_HELLO, &body);
    frame_refused(w.b, w.n, TS_ERR_CORRUPT, "field 'protocol_version' is 8589934592, above 32 bits");
    wb_free(&w);
    wb_free(&body);

    /* An ack with a bad item is refused the same way. */
    struct vv_item item;
    memset(&item, 0, sizeof(item));
    wire_vv(&body, ACK_VECTOR, &item);
    wire_frame(&w, FRAME_ACK, &body);
    frame_refused(w.b, w.n, TS_ERR_CORRUPT, "ack vector item 0 origin is empty");
    wb_free(&w);
    wb_free(&body);
}

static void test_codec_frame_body_rules(void)
{
    struct wb w = { 0 };
    struct wb body = { 0 };

    /* Empty: no body. */
    static const uint8_t nothing[1] = { 0 };
    frame_refused(nothing, 0, TS_ERR_CORRUPT, "frame has no body");
    /* Two bodies: a refusal and an ack. */
    wb_len_field(&body, REFUSAL_REASON, "no", 2);
    wire_frame(&w, FRAME_REFUSAL, &body);
    wb_len_field(&w, FRAME_ACK, "", 0);
    frame_refused(w.b, w.n, TS_ERR_CORRUPT, "frame has more than one body");
    wb_free(&w);
    /* The same body twice. */
    wire_frame(&w, FRAME_REFUSAL, &body);
    wire_frame(&w, FRAME_REFUSAL, &body);
    frame_refused(w.b, w.n, TS_ERR_CORRUPT, "appears more than once");
    wb_free(&w);
    wb_free(&body);
    /* An unknown body. */
    wb_len_field(&w, 5, "", 0);
    frame_refused(w.b, w.n, TS_ERR_CORRUPT, "frame: unknown field 5");
    wb_free(&w);
    /* A refusal whose reason is too long, or not UTF-8. */
    char *reason = xrepeat('r', TS_REASON_BYTES_MAX + 1);
    wb_len_field(&body, REFUSAL_REASON, reason, TS_REASON_BYTES_MAX + 1);
    wire_frame(&w, FRAME_REFUSAL, &body);
    frame_refused(w.b, w.n, TS_ERR_TOOBIG, "refusal reason is 1025 bytes, at most 1024");
    wb_free(&w);
    wb_free(&body);
    free(reason);
    wb_len_field(&body, REFUSAL_REASON, "\x80", 1);
    wire_frame(&w, FRAME_REFUSAL, &body);
    frame_refused(w.b, w.n, TS_ERR_CORRUPT, "refusal reason: invalid UTF-8 at byte 0");
    wb_free(&w);
    wb_free(&body);
}

static void test_codec_frame_encode_refuses(void)
{
    struct frame f;
    struct ts_error err = { 0, "" };
    uint8_t *out = NULL;
    size_t out_len = 0;

    make_hello(&f, 1);
    f.trial[0] = '\0';
    CU_ASSERT_EQUAL(codec_frame_encode(&f, &out, &out_len, &err), TS_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "hello trial is empty"));
    CU_ASSERT_PTR_NULL(out);
    codec_frame_release(&f);

    make_batch(&f, 1, 1);
    f.batch.first_seq = 0;
    CU_ASSERT_EQUAL(codec_frame_encode(&f, &out, &out_len, &err), TS_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "batch first_seq is 0"));
    f.batch.first_seq = 2;
    CU_ASSERT_EQUAL(codec_frame_encode(&f, &out, &out_len, &err), TS_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "seq is 1, expected 2"));
    f.batch.first_seq = 1;
    f.batch.signature_len = TS_SIG_BYTES_MAX + 1;
    CU_ASSERT_EQUAL(codec_frame_encode(&f, &out, &out_len, &err), TS_ERR_TOOBIG);
    f.batch.signature_len = 0;
    size_t saved = f.batch.count;
    f.batch.count = 0;
    CU_ASSERT_EQUAL(codec_frame_encode(&f, &out, &out_len, &err), TS_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "batch has no entries"));
    f.batch.count = saved;
    size_t saved_len = f.batch.entry_lens[0];
    f.batch.entry_lens[0] = TS_ENTRY_BYTES_MAX + 1;
    CU_ASSERT_EQUAL(codec_frame_encode(&f, &out, &out_len, &err), TS_ERR_TOOBIG);
    f.batch.entry_lens[0] = saved_len;
    CU_ASSERT_EQUAL(codec_frame_encode(&f, &out, &out_len, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(out);
    free(out);
    out = NULL;
    free_batch(&f);

    memset(&f, 0, sizeof(f));
    f.type = FRAME_REFUSAL;
    f.reason = xstrdup("bad\xc3");
    CU_ASSERT_EQUAL(codec_frame_encode(&f, &out, &out_len, &err), TS_ERR_INVALID);
    codec_frame_release(&f);
    f.type = (enum frame_type)9;
    CU_ASSERT_EQUAL(codec_frame_encode(&f, &out, &out_len, &err), TS_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "frame type 9 is unknown"));
    CU_ASSERT_PTR_NULL(out);
}

/* One valid encoding of each frame type. */
static size_t sample_frames(uint8_t *bufs[4], size_t lens[4])
{
    struct frame f;

    make_hello(&f, 3);
    frame_encode_ok(&f, &bufs[0], &lens[0]);
    f.type = FRAME_ACK;
    frame_encode_ok(&f, &bufs[1], &lens[1]);
    codec_frame_release(&f);
    make_batch(&f, 9, 2);
    frame_encode_ok(&f, &bufs[2], &lens[2]);
    free_batch(&f);
    memset(&f, 0, sizeof(f));
    f.type = FRAME_REFUSAL;
    f.reason = xstrdup("unknown trial");
    frame_encode_ok(&f, &bufs[3], &lens[3]);
    codec_frame_release(&f);
    return 4;
}

static void test_codec_frame_decode_truncated(void)
{
    uint8_t *bufs[4];
    size_t lens[4];
    size_t n = sample_frames(bufs, lens);

    for (size_t k = 0; k < n; k++) {
        for (size_t cut = 0; cut < lens[k]; cut++) {
            uint8_t *part = xcalloc(cut, 1);
            memcpy(part, bufs[k], cut);
            frame_refused(part, cut, TS_ERR_CORRUPT, NULL);
            free(part);
        }
        free(bufs[k]);
    }
}

/*
 * True when a and b are the same frame field by field (a batch's entries
 * compared as bytes).  Frames, unlike entries, have no canonical-form rule:
 * another spelling of a frame (a padded varint, an explicit 0) decodes too,
 * and must mean what its canonical re-encoding means.
 */
static bool frames_same(const struct frame *a, const struct frame *b)
{
    if (a->type != b->type || strcmp(a->trial, b->trial) != 0 ||
        strcmp(a->node_id, b->node_id) != 0 || a->protocol_version != b->protocol_version ||
        a->vector_count != b->vector_count)
        return false;
    for (size_t i = 0; i < a->vector_count; i++)
        if (strcmp(a->vector[i].origin, b->vector[i].origin) != 0 ||
            a->vector[i].lane != b->vector[i].lane || a->vector[i].seq != b->vector[i].seq)
            return false;
    if ((a->reason == NULL) != (b->reason == NULL) ||
        (a->reason != NULL && strcmp(a->reason, b->reason) != 0))
        return false;
    const struct batch *x = &a->batch, *y = &b->batch;
    if (strcmp(x->trial, y->trial) != 0 || strcmp(x->origin, y->origin) != 0 ||
        x->lane != y->lane || x->first_seq != y->first_seq || x->count != y->count ||
        memcmp(x->chain_hash, y->chain_hash, TS_HASH_BYTES) != 0 ||
        x->signature_len != y->signature_len ||
        memcmp(x->signature, y->signature, x->signature_len) != 0 ||
        x->origin_cert_len != y->origin_cert_len ||
        (x->origin_cert_len > 0 && memcmp(x->origin_cert, y->origin_cert, x->origin_cert_len) != 0))
        return false;
    for (size_t i = 0; i < x->count; i++) {
        size_t n = x->entry_lens[i] == BATCH_HOLE_LEN ? TS_HASH_BYTES : x->entry_lens[i];
        if (x->entry_lens[i] != y->entry_lens[i] || memcmp(x->entries[i], y->entries[i], n) != 0)
            return false;
    }
    return true;
}

/*
 * Decodes a changed frame: an error with a message, or a frame that is valid:
 * it encodes again, to these bytes or to another spelling that decodes to the
 * same frame and re-encodes to itself; and each entry of a batch (holes
 * aside) decodes to its own bytes or is refused for its form alone (the
 * frame decoder leaves the canonical-form check to the receiving store).
 * Returns whether it decoded.
 */
static bool decode_any_frame(const uint8_t *buf, size_t len)
{
    struct frame f;
    struct ts_error err = { 0, "" };
    struct ts_error err2 = { 0, "" };
    int rc = codec_frame_decode(buf, len, &f, &err);

    if (rc < 0) {
        CU_ASSERT(rc == TS_ERR_CORRUPT || rc == TS_ERR_TOOBIG);
        CU_ASSERT(err.msg[0] != '\0');
        CU_ASSERT_PTR_NULL(f.vector);
        CU_ASSERT_PTR_NULL(f.batch.owned);
        CU_ASSERT_EQUAL(codec_frame_decode(buf, len, &f, &err2), rc);
        CU_ASSERT_STRING_EQUAL(err.msg, err2.msg);
        return false;
    }
    CU_ASSERT(f.type >= FRAME_HELLO && f.type <= FRAME_REFUSAL);
    CU_ASSERT(f.vector_count <= TS_CHAINS_MAX);
    if (f.type == FRAME_BATCH) {
        CU_ASSERT(f.batch.count >= 1 && f.batch.count <= TS_BATCH_ENTRIES_MAX);
        CU_ASSERT(f.batch.first_seq >= 1);
        CU_ASSERT(f.batch.signature_len <= TS_SIG_BYTES_MAX);
    }
    if (f.type == FRAME_REFUSAL)
        CU_ASSERT_PTR_NOT_NULL(f.reason);
    uint8_t *again = NULL;
    size_t again_len = 0;
    int erc = codec_frame_encode(&f, &again, &again_len, &err);
    if (erc != 0)
        fprintf(stderr, "decoded frame does not encode: %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(erc, 0);
    if (again_len != len || memcmp(again, buf, len) != 0) {
        struct frame g;
        uint8_t *third = NULL;
        size_t third_len = 0;
        CU_ASSERT_EQUAL_FATAL(codec_frame_decode(again, again_len, &g, &err), 0);
        CU_ASSERT(frames_same(&f, &g));
        CU_ASSERT_EQUAL_FATAL(codec_frame_encode(&g, &third, &third_len, &err), 0);
        CU_ASSERT_EQUAL(third_len, again_len);
        if (third_len == again_len)
            CU_ASSERT_EQUAL(memcmp(third, again, again_len), 0);
        free(third);
        codec_frame_release(&g);
    }
    free(again);
    for (size_t i = 0; f.type == FRAME_BATCH && i < f.batch.count; i++) {
        struct entry e;
        if (f.batch.entry_lens[i] == BATCH_HOLE_LEN)
            continue;
        rc = codec_entry_decode(f.batch.entries[i], f.batch.entry_lens[i], &e, &err);
        if (rc == TS_ERR_CORRUPT && strstr(err.msg, "not in canonical form") != NULL)
            continue;
        if (rc != 0)
            fprintf(stderr, "entry %zu of a decoded batch: %s\n", i, err.msg);
        CU_ASSERT_EQUAL_FATAL(rc, 0);
        CU_ASSERT_STRING_EQUAL(e.origin, f.batch.origin);
        CU_ASSERT_EQUAL(e.lane, f.batch.lane);
        CU_ASSERT_EQUAL(e.seq, f.batch.first_seq + i);
        entry_release(&e);
    }
    codec_frame_release(&f);
    return true;
}

static void test_codec_frame_decode_byte_flips(void)
{
    uint8_t *bufs[4];
    size_t lens[4];
    size_t n = sample_frames(bufs, lens);
    size_t decoded = 0;
    size_t refused = 0;

    for (size_t k = 0; k < n; k++) {
        uint8_t *copy = xcalloc(lens[k], 1);
        for (size_t at = 0; at < lens[k]; at++) {
            /* Every value for the batch's header; every single bit inside its entries. */
            bool deep = k == 2 && at > 40;
            for (unsigned x = 1; x < 256; x++) {
                if (deep && (x & (x - 1)) != 0 && x != 0xff)
                    continue;
                memcpy(copy, bufs[k], lens[k]);
                copy[at] ^= (uint8_t)x;
                if (decode_any_frame(copy, lens[k]))
                    decoded++;
                else
                    refused++;
            }
        }
        free(copy);
        free(bufs[k]);
    }
    CU_ASSERT(decoded > 0);
    CU_ASSERT(refused > 0);
    printf("\n    %zu changed frames decoded, %zu refused ", decoded, refused);
}

static void test_codec_frame_decode_garbage(void)
{
    uint8_t *bufs[4];
    size_t lens[4];
    size_t n = sample_frames(bufs, lens);
    size_t garbage_decoded = 0;
    size_t edited_decoded = 0;

    unit_seed();
    for (int round = 0; round < 20000; round++) {
        size_t len = unit_rand() % 200;
        uint8_t *buf = xcalloc(len + 2, 1);
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)unit_rand();
        /* Half the time, a plausible frame header so the body gets parsed. */
        if (round % 2 == 0 && len >= 2) {
            buf[0] = (uint8_t)((1 + unit_rand() % 4) << 3 | 2);
            buf[1] = (uint8_t)((len - 2) & 0x7f);
        }
        if (decode_any_frame(buf, len))
            garbage_decoded++;
        free(buf);
    }
    for (int round = 0; round < 20000; round++) {
        size_t k = unit_rand() % n;
        size_t len = lens[k];
        uint8_t *buf = xcalloc(len + 8, 1);
        memcpy(buf, bufs[k], len);
        int edits = 1 + (int)(unit_rand() % 4);
        for (int e = 0; e < edits && len > 0; e++) {
            size_t at = unit_rand() % len;
            switch (unit_rand() % 3) {
            case 0:
                buf[at] = (uint8_t)unit_rand();
                break;
            case 1:
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = (uint8_t)unit_rand();
                len++;
                break;
            default:
                memmove(buf + at, buf + at + 1, len - at - 1);
                len--;
                break;
            }
        }
        if (decode_any_frame(buf, len))
            edited_decoded++;
        free(buf);
    }
    for (size_t k = 0; k < n; k++)
        free(bufs[k]);
    printf("\n    %zu of 20000 random and %zu of 20000 edited frames decoded ", garbage_decoded,
           edited_decoded);
    /* Some garbage is a valid frame (an empty ack is two bytes), most is not. */
    CU_ASSERT(garbage_decoded < 20000 / 2);
    /* An edit inside a refusal's reason or a vector's seq keeps a frame valid. */
    CU_ASSERT(edited_decoded > 0);
    CU_ASSERT(edited_decoded < 20000);
}

/* ---- signatures and length prefixes ------------------------------------- */

static void test_codec_sign_bytes_layout(void)
{
    uint8_t hash[TS_HASH_BYTES];
    uint8_t out[CODEC_SIGN_BYTES_MAX];
    static const char domain[] = "trialsync-batch-v2";

    for (int i = 0; i < TS_HASH_BYTES; i++)
        hash[i] = (uint8_t)(0xa0 + i);
    memset(out, 0xcc, sizeof(out));
    int n = codec_batch_sign_bytes("T-1", "site-101", "0A1B", LANE_BULK,
                                   UINT64_C(0x0102030405060708), hash, out, sizeof(out));
    /* 18 + NUL, 3 + NUL, 8 + NUL, 4 + NUL, lane, seq, hash. */
    CU_ASSERT_EQUAL_FATAL(n, 19 + 4 + 9 + 5 + 1 + 8 + 32);
    size_t at = 0;
    for (size_t i = 0; i < strlen(domain); i++)
        CU_ASSERT_EQUAL(out[at++], (uint8_t)domain[i]);
    CU_ASSERT_EQUAL(out[at++], 0);
    CU_ASSERT_EQUAL(out[at++], 'T');
    CU_ASSERT_EQUAL(out[at++], '-');
    CU_ASSERT_EQUAL(out[at++], '1');
    CU_ASSERT_EQUAL(out[at++], 0);
    for (size_t i = 0; i < 8; i++)
        CU_ASSERT_EQUAL(out[at++], (uint8_t)"site-101"[i]);
    CU_ASSERT_EQUAL(out[at++], 0);
    for (size_t i = 0; i < 4; i++)
        CU_ASSERT_EQUAL(out[at++], (uint8_t)"0A1B"[i]);
    CU_ASSERT_EQUAL(out[at++], 0);
    CU_ASSERT_EQUAL(out[at++], 1);
    for (uint8_t i = 1; i <= 8; i++)
        CU_ASSERT_EQUAL(out[at++], i);
    for (int i = 0; i < TS_HASH_BYTES; i++)
        CU_ASSERT_EQUAL(out[at++], (uint8_t)(0xa0 + i));
    CU_ASSERT_EQUAL(at, (size_t)n);
    /* Nothing written past the length. */
    CU_ASSERT_EQUAL(out[n], 0xcc);

    /* Moving a byte between trial and origin, or origin and serial, changes the bytes. */
    uint8_t a[CODEC_SIGN_BYTES_MAX];
    uint8_t b[CODEC_SIGN_BYTES_MAX];
    int na = codec_batch_sign_bytes("ab", "c", "1", 0, 1, hash, a, sizeof(a));
    int nb = codec_batch_sign_bytes("a", "bc", "1", 0, 1, hash, b, sizeof(b));
    CU_ASSERT_EQUAL(na, nb);
    CU_ASSERT_NOT_EQUAL(memcmp(a, b, (size_t)na), 0);
    nb = codec_batch_sign_bytes("ab", "c1", "", 0, 1, hash, b, sizeof(b));
    CU_ASSERT_EQUAL(na, nb);
    CU_ASSERT_NOT_EQUAL(memcmp(a, b, (size_t)na), 0);
    /* The certificate, lane and seq are in the bytes. */
    nb = codec_batch_sign_bytes("ab", "c", "2", 0, 1, hash, b, sizeof(b));
    CU_ASSERT_EQUAL(na, nb);
    CU_ASSERT_NOT_EQUAL(memcmp(a, b, (size_t)na), 0);
    nb = codec_batch_sign_bytes("ab", "c", "1", 1, 1, hash, b, sizeof(b));
    CU_ASSERT_NOT_EQUAL(memcmp(a, b, (size_t)na), 0);
    nb = codec_batch_sign_bytes("ab", "c", "1", 0, 256, hash, b, sizeof(b));
    CU_ASSERT_NOT_EQUAL(memcmp(a, b, (size_t)na), 0);
}

static void test_codec_sign_bytes_limits(void)
{
    uint8_t hash[TS_HASH_BYTES] = { 0 };
    uint8_t out[CODEC_SIGN_BYTES_MAX + 1];
    char id[TS_ID_BYTES_MAX + 2];
    char serial[TS_SERIAL_BYTES_MAX + 2];

    int need = codec_batch_sign_bytes("T", "O", "01", 0, 1, hash, out, sizeof(out));
    CU_ASSERT_EQUAL_FATAL(need, 19 + 2 + 2 + 3 + 1 + 8 + 32);
    /* One byte short: refused, and nothing written. */
    memset(out, 0xcc, sizeof(out));
    CU_ASSERT_EQUAL(codec_batch_sign_bytes("T", "O", "01", 0, 1, hash, out, (size_t)need - 1),
                    TS_ERR_TOOBIG);
    CU_ASSERT_EQUAL(out[0], 0xcc);
    CU_ASSERT_EQUAL(codec_batch_sign_bytes("T", "O", "01", 0, 1, hash, out, (size_t)need), need);
    /* Ids and serial at their limits fit CODEC_SIGN_BYTES_MAX exactly. */
    memset(id, 'i', TS_ID_BYTES_MAX);
    id[TS_ID_BYTES_MAX] = '\0';
    memset(serial, 'F', TS_SERIAL_BYTES_MAX);
    serial[TS_SERIAL_BYTES_MAX] = '\0';
    CU_ASSERT_EQUAL(codec_batch_sign_bytes(id, id, serial, 1, UINT64_MAX, hash, out,
                                           CODEC_SIGN_BYTES_MAX),
                    CODEC_SIGN_BYTES_MAX);
    /* An id or a serial above its limit is refused. */
    id[TS_ID_BYTES_MAX] = 'i';
    id[TS_ID_BYTES_MAX + 1] = '\0';
    serial[TS_SERIAL_BYTES_MAX] = 'F';
    serial[TS_SERIAL_BYTES_MAX + 1] = '\0';
    CU_ASSERT_EQUAL(codec_batch_sign_bytes(id, "O", "01", 0, 1, hash, out, sizeof(out)),
                    TS_ERR_TOOBIG);
    CU_ASSERT_EQUAL(codec_batch_sign_bytes("T", id, "01", 0, 1, hash, out, sizeof(out)),
                    TS_ERR_TOOBIG);
    CU_ASSERT_EQUAL(codec_batch_sign_bytes("T", "O", serial, 0, 1, hash, out, sizeof(out)),
                    TS_ERR_TOOBIG);
}

static void test_codec_frame_len_prefix(void)
{
    uint8_t p[4];

    codec_frame_len_write(p, UINT32_C(0x01020304));
    CU_ASSERT_EQUAL(p[0], 0x01);
    CU_ASSERT_EQUAL(p[1], 0x02);
    CU_ASSERT_EQUAL(p[2], 0x03);
    CU_ASSERT_EQUAL(p[3], 0x04);
    CU_ASSERT_EQUAL(codec_frame_len_read(p), UINT32_C(0x01020304));

    static const uint8_t high[4] = { 0x80, 0x00, 0x00, 0x01 };
    CU_ASSERT_EQUAL(codec_frame_len_read(high), UINT32_C(0x80000001));
    static const uint8_t max[4] = { 0xff, 0xff, 0xff, 0xff };
    CU_ASSERT_EQUAL(codec_frame_len_read(max), UINT32_MAX);

    codec_frame_len_write(p, 0);
    CU_ASSERT_EQUAL(p[0] | p[1] | p[2] | p[3], 0);
    CU_ASSERT_EQUAL(codec_frame_len_read(p), 0);
    codec_frame_len_write(p, TS_FRAME_BYTES_MAX);
    CU_ASSERT_EQUAL(p[0], 0x00);
    CU_ASSERT_EQUAL(p[1], 0x11);
    CU_ASSERT_EQUAL(p[2], 0x00);
    CU_ASSERT_EQUAL(p[3], 0x00);
    unit_seed();
    for (int i = 0; i < 1000; i++) {
        uint32_t v = (uint32_t)unit_rand();
        codec_frame_len_write(p, v);
        CU_ASSERT_EQUAL(codec_frame_len_read(p), v);
        CU_ASSERT_EQUAL(p[0], (uint8_t)(v >> 24));
        CU_ASSERT_EQUAL(p[3], (uint8_t)v);
    }
}

/* ---- entry.c ------------------------------------------------------------ */

static void test_codec_entry_ref_cmp_order(void)
{
    struct entry_ref a;
    struct entry_ref b;

    set_ref(&a, "hub-1", 1, 9);
    set_ref(&b, "site-101", 0, 1);
    /* origin first, whatever lane and seq say. */
    CU_ASSERT_EQUAL(entry_ref_cmp(&a, &b), -1);
    CU_ASSERT_EQUAL(entry_ref_cmp(&b, &a), 1);
    set_ref(&b, "hub-1", 0, 10);
    CU_ASSERT_EQUAL(entry_ref_cmp(&a, &b), 1);
    CU_ASSERT_EQUAL(entry_ref_cmp(&b, &a), -1);
    set_ref(&b, "hub-1", 1, 10);
    CU_ASSERT_EQUAL(entry_ref_cmp(&a, &b), -1);
    /* seq compared as an unsigned 64-bit number. */
    set_ref(&b, "hub-1", 1, UINT64_MAX);
    CU_ASSERT_EQUAL(entry_ref_cmp(&a, &b), -1);
    set_ref(&b, "hub-1", 1, 9);
    CU_ASSERT_EQUAL(entry_ref_cmp(&a, &b), 0);
    /* A prefix sorts first; bytes compare unsigned. */
    set_ref(&b, "hub-10", 0, 0);
    CU_ASSERT_EQUAL(entry_ref_cmp(&a, &b), -1);
    set_ref(&b, "hub~", 0, 0);
    CU_ASSERT_EQUAL(entry_ref_cmp(&a, &b), -1);
}

static void test_codec_release_zeroed(void)
{
    struct entry e;
    struct frame f;

    memset(&e, 0, sizeof(e));
    entry_release(&e);
    entry_release(&e);
    CU_ASSERT_PTR_NULL(e.writes);
    make_entry(&e, 1);
    entry_release(&e);
    CU_ASSERT_PTR_NULL(e.user);
    CU_ASSERT_PTR_NULL(e.writes);
    CU_ASSERT_EQUAL(e.writes_count, 0);
    entry_release(&e);

    memset(&f, 0, sizeof(f));
    codec_frame_release(&f);
    codec_frame_release(&f);
    CU_ASSERT_PTR_NULL(f.vector);
    make_hello(&f, 2);
    codec_frame_release(&f);
    CU_ASSERT_PTR_NULL(f.vector);
    CU_ASSERT_EQUAL(f.vector_count, 0);
}

/* A hello says the range of protocol versions its sender speaks: min travels
 * only when below max, so a one-version hello is byte-identical to one from a
 * release before ranges (which refuses unknown fields), and such a hello
 * decodes as the range [v, v]. */
static void test_codec_hello_protocol_range(void)
{
    struct frame f, d;
    struct ts_error err = { 0, "" };
    uint8_t *range_buf, *one_buf, *old_buf;
    size_t range_len, one_len, old_len;

    make_hello(&f, 3);
    f.protocol_version_min = 1;
    f.protocol_version = 2;
    frame_encode_ok(&f, &range_buf, &range_len);
    CU_ASSERT_EQUAL_FATAL(codec_frame_decode(range_buf, range_len, &d, &err), 0);
    CU_ASSERT_EQUAL(d.protocol_version_min, 1);
    CU_ASSERT_EQUAL(d.protocol_version, 2);
    codec_frame_release(&d);

    f.protocol_version_min = 1;
    f.protocol_version = 1;
    frame_encode_ok(&f, &one_buf, &one_len);
    f.protocol_version_min = 0;   /* as the releases before ranges built it */
    frame_encode_ok(&f, &old_buf, &old_len);
    CU_ASSERT_EQUAL_FATAL(one_len, old_len);
    CU_ASSERT(memcmp(one_buf, old_buf, one_len) == 0);
    CU_ASSERT(range_len > one_len);
    CU_ASSERT_EQUAL_FATAL(codec_frame_decode(old_buf, old_len, &d, &err), 0);
    CU_ASSERT_EQUAL(d.protocol_version_min, 1);
    CU_ASSERT_EQUAL(d.protocol_version, 1);
    codec_frame_release(&d);
    free(range_buf);
    free(one_buf);
    free(old_buf);
    codec_frame_release(&f);
}

/* Each side picks the highest version both speak; [1,2] talks to [1,1] at 1
 * (both ways), [3,3] and [1,2] refuse naming both ranges; the answer is the
 * same from either side, exhaustively over small ranges. */
static void test_codec_protocol_negotiate(void)
{
    char why[PROTOCOL_REASON_BYTES_MAX];
    uint32_t v = 99;
    CU_ASSERT_EQUAL(protocol_negotiate(1, 2, 1, 1, &v, why, sizeof(why)), 0);
    CU_ASSERT_EQUAL(v, 1);
    CU_ASSERT_EQUAL(protocol_negotiate(1, 1, 1, 2, &v, why, sizeof(why)), 0);
    CU_ASSERT_EQUAL(v, 1);
    /* A hello without protocol_version_min (0): exactly its version. */
    CU_ASSERT_EQUAL(protocol_negotiate(1, 2, 0, 1, &v, why, sizeof(why)), 0);
    CU_ASSERT_EQUAL(v, 1);
    CU_ASSERT_EQUAL(protocol_negotiate(1, 3, 2, 5, &v, why, sizeof(why)), 0);
    CU_ASSERT_EQUAL(v, 3);

    CU_ASSERT_EQUAL(protocol_negotiate(1, 2, 3, 3, &v, why, sizeof(why)), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(v, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "the peer speaks 3..3, this node 1..2"));
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "upgrade this node"));
    CU_ASSERT_EQUAL(protocol_negotiate(3, 3, 1, 2, &v, why, sizeof(why)), TS_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "the peer speaks 1..2, this node 3..3"));
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "upgrade the peer"));
    /* Malformed ranges from a peer. */
    CU_ASSERT_EQUAL(protocol_negotiate(1, 2, 0, 0, &v, why, sizeof(why)), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(protocol_negotiate(1, 2, 2, 1, &v, why, sizeof(why)), TS_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "malformed"));
    CU_ASSERT_EQUAL(protocol_negotiate(1, 2, 1, 2, &v, NULL, 0), 0);

    for (uint32_t a0 = 1; a0 <= 4; a0++)
        for (uint32_t a1 = a0; a1 <= 4; a1++)
            for (uint32_t b0 = 1; b0 <= 4; b0++)
                for (uint32_t b1 = b0; b1 <= 4; b1++) {
                    uint32_t x = 0, y = 0;
                    int rx = protocol_negotiate(a0, a1, b0, b1, &x, NULL, 0);
                    int ry = protocol_negotiate(b0, b1, a0, a1, &y, NULL, 0);
                    CU_ASSERT_EQUAL(rx, ry);
                    CU_ASSERT_EQUAL(x, y);
                    bool overlap = a0 <= b1 && b0 <= a1;
                    CU_ASSERT_EQUAL(rx == 0, overlap);
                    if (overlap)
                        CU_ASSERT_EQUAL(x, a1 < b1 ? a1 : b1);
                }
}

int main(void)
{
    static const struct unit_test tests[] = {
        { "test_codec_entry_round_trip", test_codec_entry_round_trip },
        { "test_codec_entry_round_trip_empty_text", test_codec_entry_round_trip_empty_text },
        { "test_codec_entry_wire_format", test_codec_entry_wire_format },
        { "test_codec_entry_random_round_trip", test_codec_entry_random_round_trip },
        { "test_codec_entry_encode_refuses_limits", test_codec_entry_encode_refuses_limits },
        { "test_codec_entry_decode_truncated", test_codec_entry_decode_truncated },
        { "test_codec_entry_decode_byte_flips", test_codec_entry_decode_byte_flips },
        { "test_codec_entry_decode_garbage", test_codec_entry_decode_garbage },
        { "test_codec_entry_decode_id_too_long", test_codec_entry_decode_id_too_long },
        { "test_codec_entry_decode_id_bad_bytes", test_codec_entry_decode_id_bad_bytes },
        { "test_codec_entry_decode_prev_hash_length", test_codec_entry_decode_prev_hash_length },
        { "test_codec_entry_decode_lane_out_of_range", test_codec_entry_decode_lane_out_of_range },
        { "test_codec_entry_decode_seq_zero", test_codec_entry_decode_seq_zero },
        { "test_codec_entry_decode_value_too_big", test_codec_entry_decode_value_too_big },
        { "test_codec_entry_decode_counts", test_codec_entry_decode_counts },
        { "test_codec_entry_decode_text_rules", test_codec_entry_decode_text_rules },
        { "test_codec_entry_decode_wire_rules", test_codec_entry_decode_wire_rules },
        { "test_codec_entry_decode_non_canonical", test_codec_entry_decode_non_canonical },
        { "test_codec_entry_decode_too_big", test_codec_entry_decode_too_big },
        { "test_codec_frame_hello_round_trip", test_codec_frame_hello_round_trip },
        { "test_codec_frame_batch_round_trip", test_codec_frame_batch_round_trip },
        { "test_codec_hello_protocol_range", test_codec_hello_protocol_range },
        { "test_codec_protocol_negotiate", test_codec_protocol_negotiate },
        { "test_codec_frame_batch_holes_and_cert", test_codec_frame_batch_holes_and_cert },
        { "test_codec_frame_ack_round_trip", test_codec_frame_ack_round_trip },
        { "test_codec_frame_refusal_round_trip", test_codec_frame_refusal_round_trip },
        { "test_codec_frame_decode_oversized", test_codec_frame_decode_oversized },
        { "test_codec_frame_batch_too_many_entries", test_codec_frame_batch_too_many_entries },
        { "test_codec_frame_batch_bytes_limits", test_codec_frame_batch_bytes_limits },
        { "test_codec_frame_batch_header_rules", test_codec_frame_batch_header_rules },
        { "test_codec_frame_batch_entries_must_follow", test_codec_frame_batch_entries_must_follow },
        { "test_codec_frame_hello_rules", test_codec_frame_hello_rules },
        { "test_codec_frame_body_rules", test_codec_frame_body_rules },
        { "test_codec_frame_encode_refuses", test_codec_frame_encode_refuses },
        { "test_codec_frame_decode_truncated", test_codec_frame_decode_truncated },
        { "test_codec_frame_decode_byte_flips", test_codec_frame_decode_byte_flips },
        { "test_codec_frame_decode_garbage", test_codec_frame_decode_garbage },
        { "test_codec_sign_bytes_layout", test_codec_sign_bytes_layout },
        { "test_codec_frame_batch_cert_serial", test_codec_frame_batch_cert_serial },
        { "test_codec_sign_bytes_limits", test_codec_sign_bytes_limits },
        { "test_codec_frame_len_prefix", test_codec_frame_len_prefix },
        { "test_codec_entry_ref_cmp_order", test_codec_entry_ref_cmp_order },
        { "test_codec_release_zeroed", test_codec_release_zeroed },
        { NULL, NULL },
    };

    unit_seed();
    return unit_run("codec", tests);
}
