/*
 * codec.c: entries, batches and frames to and from protobuf bytes.
 *
 * The only file that includes the generated trialsync.pb-c.h.  Everything
 * else sees the plain structs of entry.h.
 *
 * Decoding works in three steps, so that nothing is allocated for input that
 * breaks a limit and protobuf-c never parses bytes we have not checked:
 *
 *   1. scan_*(): walk the wire bytes without allocating.  Every tag, varint
 *      and length is checked against the bytes that remain; unknown fields,
 *      wrong wire types, repeated singular fields and uint32 values above 32
 *      bits are refused; every count and length is checked against limits.h;
 *      every identifier, text, lane, seq and hash is checked by the same
 *      check_*() rules the encoder applies (the *_view structs carry the
 *      values to them).  Nesting is fixed by the schema (at most three
 *      levels), so the walk is iterative per level, never recursive on input.
 *   2. protobuf-c unpacks the checked bytes with its default allocator.
 *   3. *_from_pb() copies into the plain structs, re-checking every bound
 *      that memory safety depends on rather than trusting step 1 blindly.
 *
 * Entries are also required to be canonical: an entry decodes only from the
 * exact bytes codec_entry_encode() produces for it.  Entries are hashed and
 * signed as stored bytes, so this gives each entry exactly one byte form; no
 * padded varint, reordered field or explicit default can make two byte
 * strings that mean the same entry.
 *
 * Errors: TS_ERR_TOOBIG when a length or count is above limits.h,
 * TS_ERR_CORRUPT (decoding) or TS_ERR_INVALID (encoding) for anything else
 * that breaks the rules, TS_ERR_NOMEM when an allocation fails; always with a
 * message in struct ts_error naming the field and what is allowed.  On error
 * the output struct is left zeroed.  No function keeps state: all are
 * thread-safe, and decoding is a deterministic function of the input bytes.
 */
#include "codec.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trialsync.pb-c.h"

/* ---- limits this file relies on ---------------------------------------- */

_Static_assert(LANE_COUNT <= 256, "lanes fit the uint8_t of entry.h");
_Static_assert(TS_FRAME_BYTES_MAX < UINT32_MAX, "a frame length fits the 4-byte prefix");
_Static_assert((uint64_t)TS_WRITES_PER_ENTRY_MAX * TS_SUPERSEDES_MAX < SIZE_MAX / 64,
               "the refs of one entry can be counted and allocated");
_Static_assert(CODEC_SIGN_BYTES_MAX == sizeof("trialsync-batch-v2") + 2 * (TS_ID_BYTES_MAX + 1)
                                       + TS_SERIAL_BYTES_MAX + 1 + 1 + 8 + TS_HASH_BYTES,
               "CODEC_SIGN_BYTES_MAX matches the layout of codec_batch_sign_bytes");

/* ---- field numbers of trialsync.proto ------------------------------------ */

/*
 * The scan switches on field numbers; schema_matches() checks each of these
 * against the generated descriptors (by name) in every debug-build decode.
 */
enum { REF_ORIGIN = 1, REF_LANE = 2, REF_SEQ = 3 };
enum { WRITE_FIELD = 1, WRITE_VALUE = 2, WRITE_SUPERSEDES = 3 };
enum {
    ENTRY_ORIGIN = 1, ENTRY_LANE = 2, ENTRY_SEQ = 3, ENTRY_HLC = 4, ENTRY_WALL_MS = 5,
    ENTRY_USER = 6, ENTRY_REASON = 7, ENTRY_RECORD_TYPE = 8, ENTRY_RECORD_ID = 9,
    ENTRY_SITE = 10, ENTRY_WRITES = 11, ENTRY_PREV_HASH = 12, ENTRY_LOCK_EPOCH = 13,
};
enum {
    BATCH_TRIAL = 1, BATCH_ORIGIN = 2, BATCH_LANE = 3, BATCH_FIRST_SEQ = 4, BATCH_ENTRIES = 5,
    BATCH_CHAIN_HASH = 6, BATCH_SIGNATURE = 7, BATCH_ORIGIN_CERT = 8, BATCH_CERT_SERIAL = 9,
};
enum { VV_ORIGIN = 1, VV_LANE = 2, VV_SEQ = 3 };
enum {
    HELLO_TRIAL = 1, HELLO_NODE_ID = 2, HELLO_PROTOCOL_VERSION = 3, HELLO_VECTOR = 4,
    HELLO_WALL_MS = 5, HELLO_PROTOCOL_VERSION_MIN = 6,
};
enum { ACK_VECTOR = 1 };
enum { REFUSAL_REASON = 1, REFUSAL_CHAINS = 2, REFUSAL_RETRY_AFTER_MS = 3 };

/* entry.h's frame types are the field numbers of Frame's body. */
_Static_assert((int)FRAME_HELLO == (int)TRIALSYNC__FRAME__BODY_HELLO, "frame type = body field");
_Static_assert((int)FRAME_BATCH == (int)TRIALSYNC__FRAME__BODY_BATCH, "frame type = body field");
_Static_assert((int)FRAME_ACK == (int)TRIALSYNC__FRAME__BODY_ACK, "frame type = body field");
_Static_assert((int)FRAME_REFUSAL == (int)TRIALSYNC__FRAME__BODY_REFUSAL, "frame type = body field");

#ifndef NDEBUG
static bool field_is(const ProtobufCMessageDescriptor *d, const char *name, unsigned number)
{
    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field_by_name(d, name);
    return fd != NULL && fd->id == number;
}

static bool schema_matches(void)
{
    const ProtobufCMessageDescriptor *ref = &trialsync__entry_ref__descriptor;
    const ProtobufCMessageDescriptor *write = &trialsync__field_write__descriptor;
    const ProtobufCMessageDescriptor *entry = &trialsync__entry__descriptor;
    const ProtobufCMessageDescriptor *batch = &trialsync__batch__descriptor;
    const ProtobufCMessageDescriptor *vv = &trialsync__version_item__descriptor;
    const ProtobufCMessageDescriptor *hello = &trialsync__hello__descriptor;

    return field_is(ref, "origin", REF_ORIGIN) && field_is(ref, "lane", REF_LANE) &&
           field_is(ref, "seq", REF_SEQ) && ref->n_fields == 3 &&
           field_is(write, "field", WRITE_FIELD) && field_is(write, "value", WRITE_VALUE) &&
           field_is(write, "supersedes", WRITE_SUPERSEDES) && write->n_fields == 3 &&
           field_is(entry, "origin", ENTRY_ORIGIN) && field_is(entry, "lane", ENTRY_LANE) &&
           field_is(entry, "seq", ENTRY_SEQ) && field_is(entry, "hlc", ENTRY_HLC) &&
           field_is(entry, "wall_ms", ENTRY_WALL_MS) && field_is(entry, "user", ENTRY_USER) &&
           field_is(entry, "reason", ENTRY_REASON) &&
           field_is(entry, "record_type", ENTRY_RECORD_TYPE) &&
           field_is(entry, "record_id", ENTRY_RECORD_ID) && field_is(entry, "site", ENTRY_SITE) &&
           field_is(entry, "writes", ENTRY_WRITES) &&
           field_is(entry, "prev_hash", ENTRY_PREV_HASH) &&
           field_is(entry, "lock_epoch", ENTRY_LOCK_EPOCH) && entry->n_fields == 13 &&
           field_is(batch, "trial", BATCH_TRIAL) && field_is(batch, "origin", BATCH_ORIGIN) &&
           field_is(batch, "lane", BATCH_LANE) && field_is(batch, "first_seq", BATCH_FIRST_SEQ) &&
           field_is(batch, "entries", BATCH_ENTRIES) &&
           field_is(batch, "chain_hash", BATCH_CHAIN_HASH) &&
           field_is(batch, "signature", BATCH_SIGNATURE) &&
           field_is(batch, "origin_cert", BATCH_ORIGIN_CERT) &&
           field_is(batch, "cert_serial", BATCH_CERT_SERIAL) && batch->n_fields == 9 &&
           field_is(vv, "origin", VV_ORIGIN) && field_is(vv, "lane", VV_LANE) &&
           field_is(vv, "seq", VV_SEQ) && vv->n_fields == 3 &&
           field_is(hello, "trial", HELLO_TRIAL) && field_is(hello, "node_id", HELLO_NODE_ID) &&
           field_is(hello, "protocol_version", HELLO_PROTOCOL_VERSION) &&
           field_is(hello, "vector", HELLO_VECTOR) && field_is(hello, "wall_ms", HELLO_WALL_MS) &&
           field_is(hello, "protocol_version_min", HELLO_PROTOCOL_VERSION_MIN) &&
           hello->n_fields == 6 &&
           field_is(&trialsync__ack__descriptor, "vector", ACK_VECTOR) &&
           field_is(&trialsync__refusal__descriptor, "reason", REFUSAL_REASON) &&
           field_is(&trialsync__refusal__descriptor, "chains", REFUSAL_CHAINS) &&
           field_is(&trialsync__refusal__descriptor, "retry_after_ms", REFUSAL_RETRY_AFTER_MS) &&
           trialsync__refusal__descriptor.n_fields == 3 &&
           field_is(&trialsync__frame__descriptor, "hello", FRAME_HELLO) &&
           field_is(&trialsync__frame__descriptor, "batch", FRAME_BATCH) &&
           field_is(&trialsync__frame__descriptor, "ack", FRAME_ACK) &&
           field_is(&trialsync__frame__descriptor, "refusal", FRAME_REFUSAL);
}

/* The schema check is a fixed fact of the build: done once, not per decode. */
static bool schema_checked(void)
{
    static int verdict = -1;
    if (verdict < 0)
        verdict = schema_matches() ? 1 : 0;
    return verdict == 1;
}
#endif

/* ---- wire reading ------------------------------------------------------ */

enum wire_type {
    WIRE_VARINT = 0,
    WIRE_I64 = 1,
    WIRE_LEN = 2,
    WIRE_I32 = 5,
    WIRE_NONE = 8,   /* for a field type this codec does not use */
};

/*
 * protobuf-c reads tags and length prefixes of at most 5 bytes; refusing
 * longer ones here keeps the scan at least as strict as the unpack.
 */
#define WIRE_TAG_BYTES_MAX 5
#define WIRE_VARINT_BYTES_MAX 10

struct wire_reader {
    const uint8_t *buf;
    size_t len;
    size_t off;
};

struct wire_field {
    uint32_t number;
    unsigned type;
    uint64_t varint;        /* WIRE_VARINT: the value */
    const uint8_t *data;    /* WIRE_LEN: the bytes, inside the reader's buffer */
    size_t len;
    size_t at;              /* offset of the tag, for messages */
};

/* A run of bytes inside the input (decoding) or a struct (encoding). */
struct span {
    const uint8_t *p;
    size_t len;
};

/*
 * Reads one varint of at most max_bytes at r->off.  False when it is cut
 * short, longer than max_bytes or above 64 bits.
 */
static bool wire_varint(struct wire_reader *r, unsigned max_bytes, uint64_t *out)
{
    uint64_t v = 0;

    assert(max_bytes <= WIRE_VARINT_BYTES_MAX);
    for (unsigned i = 0; i < max_bytes; i++) {
        if (r->off >= r->len)
            return false;
        uint8_t b = r->buf[r->off++];
        /* The tenth byte may carry only bit 63. */
        if (i == WIRE_VARINT_BYTES_MAX - 1 && b > 1)
            return false;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if ((b & 0x80) == 0) {
            *out = v;
            return true;
        }
    }
    return false;
}

/*
 * Reads the next field of a message.  Returns 1 with *f filled, 0 at the end
 * of the message, or TS_ERR_CORRUPT when the bytes are not protobuf.
 */
static int wire_next(struct wire_reader *r, struct wire_field *f, const char *ctx,
                     struct ts_error *err)
{
    uint64_t tag;
    uint64_t n;

    if (r->off == r->len)
        return 0;
    assert(r->off < r->len);
    memset(f, 0, sizeof(*f));
    f->at = r->off;
    if (!wire_varint(r, WIRE_TAG_BYTES_MAX, &tag))
        return ts_error_set(err, TS_ERR_CORRUPT, "%s: bad field tag at byte %zu", ctx, f->at);
    if ((tag >> 3) == 0 || (tag >> 3) > UINT32_MAX)
        return ts_error_set(err, TS_ERR_CORRUPT, "%s: field number %" PRIu64 " at byte %zu is not valid",
                            ctx, tag >> 3, f->at);
    f->number = (uint32_t)(tag >> 3);
    f->type = (unsigned)(tag & 7);
    switch (f->type) {
    case WIRE_VARINT:
        if (!wire_varint(r, WIRE_VARINT_BYTES_MAX, &f->varint))
            return ts_error_set(err, TS_ERR_CORRUPT, "%s: field %" PRIu32 " has a cut or overlong varint",
                                ctx, f->number);
        return 1;
    case WIRE_LEN:
        if (!wire_varint(r, WIRE_TAG_BYTES_MAX, &n))
            return ts_error_set(err, TS_ERR_CORRUPT, "%s: field %" PRIu32 " has a bad length",
                                ctx, f->number);
        if (n > r->len - r->off)
            return ts_error_set(err, TS_ERR_CORRUPT,
                                "%s: field %" PRIu32 " claims %" PRIu64 " bytes, %zu remain",
                                ctx, f->number, n, r->len - r->off);
        f->data = r->buf + r->off;
        f->len = (size_t)n;
        r->off += (size_t)n;
        return 1;
    case WIRE_I64:
    case WIRE_I32:
        n = f->type == WIRE_I64 ? 8 : 4;
        if (n > r->len - r->off)
            return ts_error_set(err, TS_ERR_CORRUPT, "%s: field %" PRIu32 " is cut short",
                                ctx, f->number);
        f->data = r->buf + r->off;
        f->len = (size_t)n;
        r->off += (size_t)n;
        return 1;
    default:
        return ts_error_set(err, TS_ERR_CORRUPT, "%s: field %" PRIu32 " has unsupported wire type %u",
                            ctx, f->number, f->type);
    }
}

static unsigned wire_type_of(ProtobufCType type)
{
    switch (type) {
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_UINT64:
        return WIRE_VARINT;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
        return WIRE_LEN;
    default:
        /* trialsync.proto uses no other type; such a field never matches. */
        return WIRE_NONE;
    }
}

/*
 * Reads the next field of a message of descriptor d and checks it against the
 * schema: known number, expected wire type, a singular field at most once
 * (seen has one bit per field number), uint32 values within 32 bits.
 * Returns 1, 0 at the end, or TS_ERR_CORRUPT.
 */
static int scan_next(struct wire_reader *r, const ProtobufCMessageDescriptor *d, uint32_t *seen,
                     const char *ctx, struct wire_field *f, struct ts_error *err)
{
    int rc = wire_next(r, f, ctx, err);
    if (rc <= 0)
        return rc;

    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(d, f->number);
    if (fd == NULL)
        return ts_error_set(err, TS_ERR_CORRUPT, "%s: unknown field %" PRIu32 " at byte %zu",
                            ctx, f->number, f->at);
    if (f->type != wire_type_of(fd->type))
        return ts_error_set(err, TS_ERR_CORRUPT, "%s: field '%s' has wire type %u, expected %u",
                            ctx, fd->name, f->type, wire_type_of(fd->type));
    if (fd->label != PROTOBUF_C_LABEL_REPEATED) {
        /* Every field number of trialsync.proto fits the bitmask. */
        assert(f->number < 32);
        uint32_t bit = UINT32_C(1) << f->number;
        if ((*seen & bit) != 0)
            return ts_error_set(err, TS_ERR_CORRUPT, "%s: field '%s' appears more than once",
                                ctx, fd->name);
        *seen |= bit;
    }
    if (fd->type == PROTOBUF_C_TYPE_UINT32 && f->varint > UINT32_MAX)
        return ts_error_set(err, TS_ERR_CORRUPT, "%s: field '%s' is %" PRIu64 ", above 32 bits",
                            ctx, fd->name, f->varint);
    return 1;
}

static struct span span_of_field(const struct wire_field *f)
{
    struct span s = { f->data, f->len };
    return s;
}

/* ---- the rules, shared by encoding and decoding ------------------------- */

/*
 * Each check_*() takes `bad`, the code for a broken rule: TS_ERR_CORRUPT when
 * decoding, TS_ERR_INVALID when encoding.  Lengths above a limit are always
 * TS_ERR_TOOBIG.  `what` names the value for the message.
 */

/* An identifier: 0..max bytes of printable ASCII without spaces. */
static int check_id(const char *what, struct span s, size_t max, bool may_be_empty, int bad,
                    struct ts_error *err)
{
    if (s.len > max)
        return ts_error_set(err, TS_ERR_TOOBIG, "%s is %zu bytes, at most %zu", what, s.len, max);
    if (s.len == 0 && !may_be_empty)
        return ts_error_set(err, bad, "%s is empty", what);
    for (size_t i = 0; i < s.len; i++) {
        if (s.p[i] < 0x21 || s.p[i] > 0x7e)
            return ts_error_set(err, bad,
                                "%s: byte %zu is 0x%02x; ids are printable ASCII without spaces",
                                what, i, s.p[i]);
    }
    return 0;
}

/*
 * Offset of the first byte that breaks UTF-8 (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF), or len when s is valid.
 */
static size_t utf8_invalid_at(const uint8_t *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        uint8_t c = s[i];
        size_t more;
        uint32_t cp;
        uint32_t min;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            more = 1;
            cp = c & 0x1f;
            min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            more = 2;
            cp = c & 0x0f;
            min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            more = 3;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            return i;
        }
        if (more > len - i - 1)
            return i;
        for (size_t k = 1; k <= more; k++) {
            uint8_t b = s[i + k];
            if ((b & 0xc0) != 0x80)
                return i;
            cp = (cp << 6) | (b & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += more + 1;
    }
    return len;
}

/* Free text: 0..max bytes of UTF-8 without NUL. */
static int check_text(const char *what, struct span s, size_t max, int bad, struct ts_error *err)
{
    if (s.len > max)
        return ts_error_set(err, TS_ERR_TOOBIG, "%s is %zu bytes, at most %zu", what, s.len, max);
    const uint8_t *nul = s.len > 0 ? memchr(s.p, 0, s.len) : NULL;
    if (nul != NULL)
        return ts_error_set(err, bad, "%s: byte %zu is NUL", what, (size_t)(nul - s.p));
    size_t at = utf8_invalid_at(s.p, s.len);
    if (at != s.len)
        return ts_error_set(err, bad, "%s: invalid UTF-8 at byte %zu", what, at);
    return 0;
}

static int check_lane(const char *owner, uint64_t lane, int bad, struct ts_error *err)
{
    if (lane >= LANE_COUNT)
        return ts_error_set(err, bad, "%s lane is %" PRIu64 ", at most %d", owner, lane,
                            LANE_COUNT - 1);
    return 0;
}

static int check_seq(const char *owner, const char *name, uint64_t seq, int bad,
                     struct ts_error *err)
{
    if (seq == 0)
        return ts_error_set(err, bad, "%s %s is 0; seqs start at 1", owner, name);
    return 0;
}

static int check_count(const char *what, size_t count, size_t max, struct ts_error *err)
{
    if (count > max)
        return ts_error_set(err, TS_ERR_TOOBIG, "%s: %zu, at most %zu", what, count, max);
    return 0;
}

/* The values of one message, whether read from the wire or from a struct. */
struct ref_view {
    struct span origin;
    uint64_t lane;
    uint64_t seq;
};

struct write_view {
    struct span field;
    struct span value;
    size_t supersedes_count;
};

struct entry_view {
    struct span origin;
    uint64_t lane;
    uint64_t seq;
    struct span user;
    struct span reason;
    struct span record_type;
    struct span record_id;
    struct span site;
    size_t writes_count;
    struct span prev_hash;
};

struct vv_view {
    struct span origin;
    uint64_t lane;
};

struct batch_view {
    struct span trial;
    struct span origin;
    uint64_t lane;
    uint64_t first_seq;
    size_t count;
    size_t entry_bytes;
    struct span chain_hash;
    size_t signature_len;
    struct span cert_serial;
};

static int check_ref(const char *owner, const struct ref_view *v, int bad, struct ts_error *err)
{
    char what[160];
    int rc;

    if (err == NULL)
        what[0] = '\0';  /* quiet pass: no message wanted */
    else
        snprintf(what, sizeof(what), "%s origin", owner);
    if ((rc = check_id(what, v->origin, TS_ID_BYTES_MAX, false, bad, err)) < 0)
        return rc;
    if ((rc = check_lane(owner, v->lane, bad, err)) < 0)
        return rc;
    return check_seq(owner, "seq", v->seq, bad, err);
}

/*
 * Checks the name, value and supersedes count of write `index`; on success
 * writes into owner (cap bytes) the prefix that names the write in later
 * messages, "entry field 'aeterm'".
 */
static int check_write(size_t index, const struct write_view *v, int bad, char *owner, size_t cap,
                       struct ts_error *err)
{
    char what[160];
    int rc;

    /* The common case, a valid write, formats nothing: the messages are
     * built only when a check fails (decoding is on the replication path). */
    if (check_id("", v->field, TS_FIELD_BYTES_MAX, false, bad, NULL) == 0 &&
        check_text("", v->value, TS_VALUE_BYTES_MAX, bad, NULL) == 0 &&
        check_count("", v->supersedes_count, TS_SUPERSEDES_MAX, NULL) == 0) {
        /* "entry field 'NAME'", assembled without printf: this runs per write. */
        static const char head[] = "entry field '";
        if (owner != NULL && cap >= sizeof(head) + v->field.len + 1) {
            memcpy(owner, head, sizeof(head) - 1);
            memcpy(owner + sizeof(head) - 1, v->field.p, v->field.len);
            owner[sizeof(head) - 1 + v->field.len] = '\'';
            owner[sizeof(head) + v->field.len] = '\0';
        } else if (owner != NULL && cap > 0) {
            owner[0] = '\0';
        }
        return 0;
    }
    snprintf(what, sizeof(what), "entry write %zu: field name", index);
    if ((rc = check_id(what, v->field, TS_FIELD_BYTES_MAX, false, bad, err)) < 0)
        return rc;
    /* The name is now short printable ASCII, safe to quote. */
    snprintf(owner, cap, "entry field '%.*s'", (int)v->field.len, (const char *)v->field.p);
    snprintf(what, sizeof(what), "%s: value", owner);
    if ((rc = check_text(what, v->value, TS_VALUE_BYTES_MAX, bad, err)) < 0)
        return rc;
    snprintf(what, sizeof(what), "%s: supersedes", owner);
    return check_count(what, v->supersedes_count, TS_SUPERSEDES_MAX, err);
}

/* Checks everything of an entry but its writes. */
static int check_entry(const struct entry_view *v, int bad, struct ts_error *err)
{
    int rc;

    if ((rc = check_id("entry origin", v->origin, TS_ID_BYTES_MAX, false, bad, err)) < 0)
        return rc;
    if ((rc = check_lane("entry", v->lane, bad, err)) < 0)
        return rc;
    if ((rc = check_seq("entry", "seq", v->seq, bad, err)) < 0)
        return rc;
    if ((rc = check_text("entry user", v->user, TS_USER_BYTES_MAX, bad, err)) < 0)
        return rc;
    if ((rc = check_text("entry reason", v->reason, TS_REASON_BYTES_MAX, bad, err)) < 0)
        return rc;
    if ((rc = check_id("entry record_type", v->record_type, TS_TYPE_BYTES_MAX, false, bad, err)) < 0)
        return rc;
    if ((rc = check_id("entry record_id", v->record_id, TS_ID_BYTES_MAX, false, bad, err)) < 0)
        return rc;
    if ((rc = check_id("entry site", v->site, TS_ID_BYTES_MAX, true, bad, err)) < 0)
        return rc;
    if ((rc = check_count("entry writes", v->writes_count, TS_WRITES_PER_ENTRY_MAX, err)) < 0)
        return rc;
    if (v->prev_hash.len != TS_HASH_BYTES)
        return ts_error_set(err, bad, "entry prev_hash is %zu bytes, expected %d", v->prev_hash.len,
                            TS_HASH_BYTES);
    return 0;
}

static int check_vv(const char *owner, const struct vv_view *v, int bad, struct ts_error *err)
{
    char what[160];
    int rc;

    snprintf(what, sizeof(what), "%s origin", owner);
    if ((rc = check_id(what, v->origin, TS_ID_BYTES_MAX, false, bad, err)) < 0)
        return rc;
    /* seq 0 is allowed: it says the sender holds nothing of that chain. */
    return check_lane(owner, v->lane, bad, err);
}

static int check_hello(struct span trial, struct span node_id, size_t vector_count, int bad,
                       struct ts_error *err)
{
    int rc;

    if ((rc = check_id("hello trial", trial, TS_ID_BYTES_MAX, false, bad, err)) < 0)
        return rc;
    if ((rc = check_id("hello node_id", node_id, TS_ID_BYTES_MAX, false, bad, err)) < 0)
        return rc;
    return check_count("hello vector items", vector_count, TS_CHAINS_MAX, err);
}

/* Checks a batch's header and sizes; its entries are checked by batch_check_entries(). */
static int check_batch(const struct batch_view *v, int bad, struct ts_error *err)
{
    int rc;

    if ((rc = check_id("batch trial", v->trial, TS_ID_BYTES_MAX, false, bad, err)) < 0)
        return rc;
    if ((rc = check_id("batch origin", v->origin, TS_ID_BYTES_MAX, false, bad, err)) < 0)
        return rc;
    if ((rc = check_lane("batch", v->lane, bad, err)) < 0)
        return rc;
    if ((rc = check_seq("batch", "first_seq", v->first_seq, bad, err)) < 0)
        return rc;
    if ((rc = check_count("batch entries", v->count, TS_BATCH_ENTRIES_MAX, err)) < 0)
        return rc;
    if (v->count == 0)
        return ts_error_set(err, bad, "batch has no entries");
    if (v->entry_bytes > TS_BATCH_BYTES_MAX)
        return ts_error_set(err, TS_ERR_TOOBIG, "batch entries are %zu bytes, at most %d",
                            v->entry_bytes, TS_BATCH_BYTES_MAX);
    if (v->first_seq > UINT64_MAX - (v->count - 1))
        return ts_error_set(err, bad, "batch of %zu entries from seq %" PRIu64 " passes the last seq",
                            v->count, v->first_seq);
    if (v->chain_hash.len != TS_HASH_BYTES)
        return ts_error_set(err, bad, "batch chain_hash is %zu bytes, expected %d", v->chain_hash.len,
                            TS_HASH_BYTES);
    if (v->signature_len > TS_SIG_BYTES_MAX)
        return ts_error_set(err, TS_ERR_TOOBIG, "batch signature is %zu bytes, at most %d",
                            v->signature_len, TS_SIG_BYTES_MAX);
    /* A serial as pki_cert_serial_hex writes it: uppercase hex digits. */
    if (v->cert_serial.len > TS_SERIAL_BYTES_MAX)
        return ts_error_set(err, bad, "batch cert_serial is %zu bytes, at most %d",
                            v->cert_serial.len, TS_SERIAL_BYTES_MAX);
    for (size_t i = 0; i < v->cert_serial.len; i++) {
        uint8_t c = v->cert_serial.p[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')))
            return ts_error_set(err, bad, "batch cert_serial is not uppercase hex");
    }
    return 0;
}

/* One encoded entry of a batch: 1..TS_ENTRY_BYTES_MAX bytes. */
static int check_batch_entry_len(size_t index, size_t len, int bad, struct ts_error *err)
{
    if (len > TS_ENTRY_BYTES_MAX)
        return ts_error_set(err, TS_ERR_TOOBIG, "batch entry %zu is %zu bytes, at most %d", index, len,
                            TS_ENTRY_BYTES_MAX);
    if (len == 0)
        return ts_error_set(err, bad, "batch entry %zu is empty", index);
    return 0;
}

/* ---- scanning: the wire bytes, before anything is allocated ------------- */

static int scan_ref(const char *owner, struct span bytes, int bad, struct ts_error *err)
{
    struct wire_reader r = { bytes.p, bytes.len, 0 };
    struct wire_field f;
    struct ref_view v = { { (const uint8_t *)"", 0 }, 0, 0 };
    uint32_t seen = 0;
    int rc;

    while ((rc = scan_next(&r, &trialsync__entry_ref__descriptor, &seen, owner, &f, err)) > 0) {
        switch (f.number) {
        case REF_ORIGIN: v.origin = span_of_field(&f); break;
        case REF_LANE: v.lane = f.varint; break;
        case REF_SEQ: v.seq = f.varint; break;
        default: assert(!"scan_next lets through only fields of EntryRef"); break;
        }
    }
    if (rc < 0)
        return rc;
    return check_ref(owner, &v, bad, err);
}

static int scan_write(size_t index, struct span bytes, struct ts_error *err)
{
    struct wire_reader r = { bytes.p, bytes.len, 0 };
    struct wire_field f;
    struct write_view v = { { (const uint8_t *)"", 0 }, { (const uint8_t *)"", 0 }, 0 };
    struct span refs[TS_SUPERSEDES_MAX];
    char ctx[64];
    char owner[96];
    char what[160];
    uint32_t seen = 0;
    int rc;

    (void)ctx;
    while ((rc = scan_next(&r, &trialsync__field_write__descriptor, &seen, "entry write", &f, err)) > 0) {
        switch (f.number) {
        case WRITE_FIELD: v.field = span_of_field(&f); break;
        case WRITE_VALUE: v.value = span_of_field(&f); break;
        case WRITE_SUPERSEDES:
            /* Past the limit, only count: check_write() refuses the total. */
            if (v.supersedes_count < TS_SUPERSEDES_MAX)
                refs[v.supersedes_count] = span_of_field(&f);
            v.supersedes_count++;
            break;
        default: assert(!"scan_next lets through only fields of FieldWrite"); break;
        }
    }
    if (rc < 0)
        return rc;
    if ((rc = check_write(index, &v, TS_ERR_CORRUPT, owner, sizeof(owner), err)) < 0)
        return rc;
    for (size_t i = 0; i < v.supersedes_count; i++) {
        if (scan_ref("", refs[i], TS_ERR_CORRUPT, NULL) == 0)
            continue;
        /* Name the ref only now that it failed. */
        snprintf(what, sizeof(what), "%s: supersedes ref %zu", owner, i);
        if ((rc = scan_ref(what, refs[i], TS_ERR_CORRUPT, err)) < 0)
            return rc;
    }
    return 0;
}

/* Scans an entry's wire bytes (no allocation); *out receives its header. */
static int scan_entry_view(const uint8_t *buf, size_t len, struct entry_view *out,
                           struct ts_error *err);

static int scan_entry(const uint8_t *buf, size_t len, struct ts_error *err)
{
    struct entry_view v;
    return scan_entry_view(buf, len, &v, err);
}

static int scan_entry_view(const uint8_t *buf, size_t len, struct entry_view *out,
                           struct ts_error *err)
{
    struct wire_reader r = { buf, len, 0 };
    struct wire_field f;
    struct entry_view v;
    struct span writes[TS_WRITES_PER_ENTRY_MAX];
    uint32_t seen = 0;
    int rc;

    memset(&v, 0, sizeof(v));
    v.origin = v.user = v.reason = v.record_type = v.record_id = v.site = v.prev_hash =
        (struct span){ (const uint8_t *)"", 0 };
    while ((rc = scan_next(&r, &trialsync__entry__descriptor, &seen, "entry", &f, err)) > 0) {
        switch (f.number) {
        case ENTRY_ORIGIN: v.origin = span_of_field(&f); break;
        case ENTRY_LANE: v.lane = f.varint; break;
        case ENTRY_SEQ: v.seq = f.varint; break;
        case ENTRY_HLC: /* hlc: any value */ break;
        case ENTRY_WALL_MS: /* wall_ms: any value */ break;
        case ENTRY_USER: v.user = span_of_field(&f); break;
        case ENTRY_REASON: v.reason = span_of_field(&f); break;
        case ENTRY_RECORD_TYPE: v.record_type = span_of_field(&f); break;
        case ENTRY_RECORD_ID: v.record_id = span_of_field(&f); break;
        case ENTRY_SITE: v.site = span_of_field(&f); break;
        case ENTRY_WRITES:
            if (v.writes_count < TS_WRITES_PER_ENTRY_MAX)
                writes[v.writes_count] = span_of_field(&f);
            v.writes_count++;
            break;
        case ENTRY_PREV_HASH: v.prev_hash = span_of_field(&f); break;
        case ENTRY_LOCK_EPOCH: /* lock_epoch: any value; validate_entry judges it */ break;
        default: assert(!"scan_next lets through only fields of Entry"); break;
        }
    }
    if (rc < 0)
        return rc;
    if ((rc = check_entry(&v, TS_ERR_CORRUPT, err)) < 0)
        return rc;
    for (size_t i = 0; i < v.writes_count; i++) {
        if ((rc = scan_write(i, writes[i], err)) < 0)
            return rc;
    }
    *out = v;
    return 0;
}

static int scan_vv(const char *owner, struct span bytes, struct ts_error *err)
{
    struct wire_reader r = { bytes.p, bytes.len, 0 };
    struct wire_field f;
    struct vv_view v = { { (const uint8_t *)"", 0 }, 0 };
    uint32_t seen = 0;
    int rc;

    while ((rc = scan_next(&r, &trialsync__version_item__descriptor, &seen, owner, &f, err)) > 0) {
        switch (f.number) {
        case VV_ORIGIN: v.origin = span_of_field(&f); break;
        case VV_LANE: v.lane = f.varint; break;
        case VV_SEQ: /* seq: any value */ break;
        default: assert(!"scan_next lets through only fields of VersionItem"); break;
        }
    }
    if (rc < 0)
        return rc;
    return check_vv(owner, &v, TS_ERR_CORRUPT, err);
}

/*
 * Checks the version items of a Hello or Ack: a second pass over a message
 * the first pass walked, taking only field `number`.
 */
static int scan_vector(const char *ctx, struct span bytes, const ProtobufCMessageDescriptor *d,
                       uint32_t number, struct ts_error *err)
{
    struct wire_reader r = { bytes.p, bytes.len, 0 };
    struct wire_field f;
    char owner[64];
    size_t i = 0;
    uint32_t seen = 0;
    int rc;

    while ((rc = scan_next(&r, d, &seen, ctx, &f, err)) > 0) {
        if (f.number != number)
            continue;
        snprintf(owner, sizeof(owner), "%s vector item %zu", ctx, i++);
        if ((rc = scan_vv(owner, span_of_field(&f), err)) < 0)
            return rc;
    }
    return rc;
}

static int scan_hello(struct span bytes, struct ts_error *err)
{
    struct wire_reader r = { bytes.p, bytes.len, 0 };
    struct wire_field f;
    struct span trial = { (const uint8_t *)"", 0 };
    struct span node_id = { (const uint8_t *)"", 0 };
    size_t vector_count = 0;
    uint32_t seen = 0;
    int rc;

    while ((rc = scan_next(&r, &trialsync__hello__descriptor, &seen, "hello", &f, err)) > 0) {
        switch (f.number) {
        case HELLO_TRIAL: trial = span_of_field(&f); break;
        case HELLO_NODE_ID: node_id = span_of_field(&f); break;
        case HELLO_PROTOCOL_VERSION: /* protocol_version: the session negotiates it */ break;
        case HELLO_VECTOR: vector_count++; break;
        case HELLO_WALL_MS: /* any clock reading: the receiver judges it */ break;
        case HELLO_PROTOCOL_VERSION_MIN: /* the session negotiates the range */ break;
        default: assert(!"scan_next lets through only fields of Hello"); break;
        }
    }
    if (rc < 0)
        return rc;
    if ((rc = check_hello(trial, node_id, vector_count, TS_ERR_CORRUPT, err)) < 0)
        return rc;
    return scan_vector("hello", bytes, &trialsync__hello__descriptor, HELLO_VECTOR, err);
}

static int scan_ack(struct span bytes, struct ts_error *err)
{
    struct wire_reader r = { bytes.p, bytes.len, 0 };
    struct wire_field f;
    size_t vector_count = 0;
    uint32_t seen = 0;
    int rc;

    while ((rc = scan_next(&r, &trialsync__ack__descriptor, &seen, "ack", &f, err)) > 0) {
        assert(f.number == ACK_VECTOR);
        vector_count++;
    }
    if (rc < 0)
        return rc;
    if ((rc = check_count("ack vector items", vector_count, TS_CHAINS_MAX, err)) < 0)
        return rc;
    return scan_vector("ack", bytes, &trialsync__ack__descriptor, ACK_VECTOR, err);
}

static int scan_refusal(struct span bytes, struct ts_error *err)
{
    struct wire_reader r = { bytes.p, bytes.len, 0 };
    struct wire_field f;
    struct span reason = { (const uint8_t *)"", 0 };
    uint32_t seen = 0;
    int rc;

    size_t chains = 0;
    uint64_t retry = 0;

    while ((rc = scan_next(&r, &trialsync__refusal__descriptor, &seen, "refusal", &f, err)) > 0) {
        if (f.number == REFUSAL_CHAINS) {
            chains++;
            continue;
        }
        if (f.number == REFUSAL_RETRY_AFTER_MS) {
            retry = f.varint;
            continue;
        }
        assert(f.number == REFUSAL_REASON);
        reason = span_of_field(&f);
    }
    if (rc < 0)
        return rc;
    if (chains > 1)
        return ts_error_set(err, TS_ERR_CORRUPT, "refusal names %zu chains (at most one)", chains);
    if (retry != 0 && chains == 0)
        return ts_error_set(err, TS_ERR_CORRUPT, "refusal: a retry needs the chain it is about");
    if ((rc = scan_vector("refusal", bytes, &trialsync__refusal__descriptor, REFUSAL_CHAINS,
                          err)) < 0)
        return rc;
    return check_text("refusal reason", reason, TS_REASON_BYTES_MAX, TS_ERR_CORRUPT, err);
}

static int scan_batch(struct span bytes, struct ts_error *err)
{
    struct wire_reader r = { bytes.p, bytes.len, 0 };
    struct wire_field f;
    struct batch_view v;
    uint32_t seen = 0;
    int rc;

    memset(&v, 0, sizeof(v));
    v.trial = v.origin = v.chain_hash = v.cert_serial = (struct span){ (const uint8_t *)"", 0 };
    while ((rc = scan_next(&r, &trialsync__batch__descriptor, &seen, "batch", &f, err)) > 0) {
        switch (f.number) {
        case BATCH_TRIAL: v.trial = span_of_field(&f); break;
        case BATCH_ORIGIN: v.origin = span_of_field(&f); break;
        case BATCH_LANE: v.lane = f.varint; break;
        case BATCH_FIRST_SEQ: v.first_seq = f.varint; break;
        case BATCH_ENTRIES:
            /*
             * Each entry is checked as it comes, so a batch of many small
             * or a few huge entries is refused before the total is known.
             */
            if ((rc = check_batch_entry_len(v.count, f.len, TS_ERR_CORRUPT, err)) < 0)
                return rc;
            v.count++;
            v.entry_bytes += f.len;
            if ((rc = check_count("batch entries", v.count, TS_BATCH_ENTRIES_MAX, err)) < 0)
                return rc;
            if (v.entry_bytes > TS_BATCH_BYTES_MAX)
                return ts_error_set(err, TS_ERR_TOOBIG, "batch entries pass %d bytes at entry %zu",
                                    TS_BATCH_BYTES_MAX, v.count - 1);
            break;
        case BATCH_CHAIN_HASH: v.chain_hash = span_of_field(&f); break;
        case BATCH_SIGNATURE: v.signature_len = f.len; break;
        case BATCH_ORIGIN_CERT:
            if (f.len > TS_CERT_BYTES_MAX)
                return ts_error_set(err, TS_ERR_TOOBIG, "batch origin_cert is %zu bytes, at most %d",
                                    f.len, TS_CERT_BYTES_MAX);
            break;
        case BATCH_CERT_SERIAL: v.cert_serial = span_of_field(&f); break;
        default: assert(!"scan_next lets through only fields of Batch"); break;
        }
    }
    if (rc < 0)
        return rc;
    return check_batch(&v, TS_ERR_CORRUPT, err);
}

static int scan_frame(const uint8_t *buf, size_t len, struct ts_error *err)
{
    struct wire_reader r = { buf, len, 0 };
    struct wire_field f;
    struct wire_field body;
    bool have_body = false;
    uint32_t seen = 0;
    int rc;

    memset(&body, 0, sizeof(body));
    while ((rc = scan_next(&r, &trialsync__frame__descriptor, &seen, "frame", &f, err)) > 0) {
        /* The body is a oneof: protobuf-c would keep the last, we keep none. */
        if (have_body)
            return ts_error_set(err, TS_ERR_CORRUPT, "frame has more than one body");
        body = f;
        have_body = true;
    }
    if (rc < 0)
        return rc;
    if (!have_body)
        return ts_error_set(err, TS_ERR_CORRUPT, "frame has no body");
    switch (body.number) {
    case FRAME_HELLO: return scan_hello(span_of_field(&body), err);
    case FRAME_BATCH: return scan_batch(span_of_field(&body), err);
    case FRAME_ACK: return scan_ack(span_of_field(&body), err);
    case FRAME_REFUSAL: return scan_refusal(span_of_field(&body), err);
    default:
        assert(!"scan_next lets through only fields of Frame");
        return ts_error_set(err, TS_ERR_CORRUPT, "frame body %" PRIu32 " is unknown", body.number);
    }
}

/* ---- from the plain structs: views and checks for encoding -------------- */

/* A fixed id array of entry.h: its length, at most cap (then not terminated). */
static struct span span_of_array(const char *s, size_t cap)
{
    struct span v = { (const uint8_t *)s, strnlen(s, cap) };
    return v;
}

/* A heap string of entry.h; NULL reads as "". */
static struct span span_of_text(const char *s)
{
    struct span v = { (const uint8_t *)"", 0 };
    if (s != NULL) {
        v.p = (const uint8_t *)s;
        v.len = strlen(s);
    }
    return v;
}

#define SPAN_OF_ARRAY(a) span_of_array((a), sizeof(a))

static int entry_check_struct(const struct entry *e, struct ts_error *err)
{
    struct entry_view v;
    char owner[96];
    char what[160];
    int rc;

    v.origin = SPAN_OF_ARRAY(e->origin);
    v.lane = e->lane;
    v.seq = e->seq;
    v.user = span_of_text(e->user);
    v.reason = span_of_text(e->reason);
    v.record_type = SPAN_OF_ARRAY(e->record_type);
    v.record_id = SPAN_OF_ARRAY(e->record_id);
    v.site = SPAN_OF_ARRAY(e->site);
    v.writes_count = e->writes_count;
    v.prev_hash = (struct span){ e->prev_hash, sizeof(e->prev_hash) };
    if ((rc = check_entry(&v, TS_ERR_INVALID, err)) < 0)
        return rc;
    if (e->writes_count > 0 && e->writes == NULL)
        return ts_error_set(err, TS_ERR_INVALID, "entry has %zu writes but no writes array",
                            e->writes_count);
    for (size_t i = 0; i < e->writes_count; i++) {
        const struct field_write *w = &e->writes[i];
        struct write_view wv = { SPAN_OF_ARRAY(w->field), span_of_text(w->value),
                                 w->supersedes_count };
        if ((rc = check_write(i, &wv, TS_ERR_INVALID, owner, sizeof(owner), err)) < 0)
            return rc;
        if (w->supersedes_count > 0 && w->supersedes == NULL)
            return ts_error_set(err, TS_ERR_INVALID, "%s: %zu supersedes but no array", owner,
                                w->supersedes_count);
        for (size_t k = 0; k < w->supersedes_count; k++) {
            const struct entry_ref *ref = &w->supersedes[k];
            struct ref_view rv = { SPAN_OF_ARRAY(ref->origin), ref->lane, ref->seq };
            snprintf(what, sizeof(what), "%s: supersedes ref %zu", owner, k);
            if ((rc = check_ref(what, &rv, TS_ERR_INVALID, err)) < 0)
                return rc;
        }
    }
    return 0;
}

static int vector_check_struct(const char *ctx, const struct vv_item *vector, size_t count,
                               struct ts_error *err)
{
    char owner[64];
    int rc;

    if (count > 0 && vector == NULL)
        return ts_error_set(err, TS_ERR_INVALID, "%s has %zu vector items but no array", ctx, count);
    for (size_t i = 0; i < count; i++) {
        struct vv_view v = { SPAN_OF_ARRAY(vector[i].origin), vector[i].lane };
        snprintf(owner, sizeof(owner), "%s vector item %zu", ctx, i);
        if ((rc = check_vv(owner, &v, TS_ERR_INVALID, err)) < 0)
            return rc;
    }
    return 0;
}

/* ---- encoding ----------------------------------------------------------- */

/* protobuf-c's string fields are char *; it only reads them when packing. */
static char *pb_str(const char *s)
{
    return (char *)(s != NULL ? s : "");
}

int codec_entry_encode(const struct entry *e, uint8_t **out, size_t *out_len, struct ts_error *err)
{
    Trialsync__Entry m = TRIALSYNC__ENTRY__INIT;
    Trialsync__FieldWrite *writes = NULL;
    Trialsync__FieldWrite **write_ptrs = NULL;
    Trialsync__EntryRef *refs = NULL;
    Trialsync__EntryRef **ref_ptrs = NULL;
    size_t refs_total = 0;
    uint8_t *buf = NULL;
    int rc;

    assert(e != NULL);
    assert(out != NULL);
    assert(out_len != NULL);
    *out = NULL;
    *out_len = 0;
    if ((rc = entry_check_struct(e, err)) < 0)
        return rc;

    for (size_t i = 0; i < e->writes_count; i++)
        refs_total += e->writes[i].supersedes_count;
    if (e->writes_count > 0) {
        writes = calloc(e->writes_count, sizeof(*writes));
        write_ptrs = calloc(e->writes_count, sizeof(*write_ptrs));
        if (writes == NULL || write_ptrs == NULL) {
            rc = ts_error_set(err, TS_ERR_NOMEM, "out of memory encoding an entry of %zu writes",
                              e->writes_count);
            goto out_free_writes;
        }
    }
    if (refs_total > 0) {
        refs = calloc(refs_total, sizeof(*refs));
        ref_ptrs = calloc(refs_total, sizeof(*ref_ptrs));
        if (refs == NULL || ref_ptrs == NULL) {
            rc = ts_error_set(err, TS_ERR_NOMEM, "out of memory encoding an entry of %zu refs",
                              refs_total);
            goto out_free_refs;
        }
    }

    m.origin = pb_str(e->origin);
    m.lane = e->lane;
    m.seq = e->seq;
    m.hlc = e->hlc;
    m.wall_ms = e->wall_ms;
    m.user = pb_str(e->user);
    m.reason = pb_str(e->reason);
    m.record_type = pb_str(e->record_type);
    m.record_id = pb_str(e->record_id);
    m.site = pb_str(e->site);
    m.n_writes = e->writes_count;
    m.writes = write_ptrs;
    m.prev_hash.data = (uint8_t *)e->prev_hash;
    m.prev_hash.len = sizeof(e->prev_hash);
    m.lock_epoch = e->lock_epoch;

    size_t next_ref = 0;
    for (size_t i = 0; i < e->writes_count; i++) {
        const struct field_write *w = &e->writes[i];
        trialsync__field_write__init(&writes[i]);
        writes[i].field = pb_str(w->field);
        writes[i].value = pb_str(w->value);
        writes[i].n_supersedes = w->supersedes_count;
        writes[i].supersedes = w->supersedes_count > 0 ? &ref_ptrs[next_ref] : NULL;
        for (size_t k = 0; k < w->supersedes_count; k++) {
            Trialsync__EntryRef *ref = &refs[next_ref];
            trialsync__entry_ref__init(ref);
            ref->origin = pb_str(w->supersedes[k].origin);
            ref->lane = w->supersedes[k].lane;
            ref->seq = w->supersedes[k].seq;
            ref_ptrs[next_ref++] = ref;
        }
        write_ptrs[i] = &writes[i];
    }
    assert(next_ref == refs_total);

    size_t size = trialsync__entry__get_packed_size(&m);
    if (size > TS_ENTRY_BYTES_MAX) {
        rc = ts_error_set(err, TS_ERR_TOOBIG, "entry is %zu bytes encoded, at most %d", size,
                          TS_ENTRY_BYTES_MAX);
        goto out_free_refs;
    }
    /* A valid entry has an origin, so it is never empty. */
    assert(size > 0);
    buf = malloc(size);
    if (buf == NULL) {
        rc = ts_error_set(err, TS_ERR_NOMEM, "out of memory for an entry of %zu bytes", size);
        goto out_free_refs;
    }
    size_t packed = trialsync__entry__pack(&m, buf);
    assert(packed == size);
    (void)packed;
    *out = buf;
    *out_len = size;
    rc = 0;

out_free_refs:
    free(ref_ptrs);
    free(refs);
out_free_writes:
    free(write_ptrs);
    free(writes);
    return rc;
}

/* ---- decoding: protobuf-c messages to plain structs --------------------- */

/*
 * Copies a string protobuf-c unpacked into a fixed array of cap bytes.  The
 * scan has checked its length; refusing here too keeps memory safe even if
 * the scan and protobuf-c ever disagreed.
 */
static int copy_id(const char *what, char *dst, size_t cap, const char *src, struct ts_error *err)
{
    size_t n = strnlen(src, cap);
    if (n == cap)
        return ts_error_set(err, TS_ERR_CORRUPT, "%s does not fit %zu bytes", what, cap - 1);
    memcpy(dst, src, n + 1);
    return 0;
}

/* Copies a string protobuf-c unpacked to a new heap string of at most max bytes. */
static int copy_text(const char *what, char **dst, const char *src, size_t max, struct ts_error *err)
{
    size_t n = strnlen(src, max + 1);
    if (n > max)
        return ts_error_set(err, TS_ERR_CORRUPT, "%s is above %zu bytes", what, max);
    *dst = malloc(n + 1);
    if (*dst == NULL)
        return ts_error_set(err, TS_ERR_NOMEM, "out of memory for %s (%zu bytes)", what, n);
    memcpy(*dst, src, n + 1);
    return 0;
}

static int lane_from_pb(const char *what, uint32_t lane, uint8_t *out, struct ts_error *err)
{
    if (lane >= LANE_COUNT)
        return ts_error_set(err, TS_ERR_CORRUPT, "%s lane %" PRIu32 " is out of range", what, lane);
    *out = (uint8_t)lane;
    return 0;
}

static int write_from_pb(const Trialsync__FieldWrite *m, struct field_write *w, struct ts_error *err)
{
    int rc;

    if ((rc = copy_id("entry field name", w->field, sizeof(w->field), m->field, err)) < 0)
        return rc;
    if ((rc = copy_text("entry value", &w->value, m->value, TS_VALUE_BYTES_MAX, err)) < 0)
        return rc;
    if (m->n_supersedes > TS_SUPERSEDES_MAX)
        return ts_error_set(err, TS_ERR_CORRUPT, "entry write has %zu supersedes", m->n_supersedes);
    if (m->n_supersedes == 0)
        return 0;
    w->supersedes = calloc(m->n_supersedes, sizeof(*w->supersedes));
    if (w->supersedes == NULL)
        return ts_error_set(err, TS_ERR_NOMEM, "out of memory for %zu supersedes", m->n_supersedes);
    w->supersedes_count = m->n_supersedes;
    for (size_t k = 0; k < m->n_supersedes; k++) {
        const Trialsync__EntryRef *src = m->supersedes[k];
        struct entry_ref *ref = &w->supersedes[k];
        if ((rc = copy_id("entry ref origin", ref->origin, sizeof(ref->origin), src->origin, err)) < 0)
            return rc;
        if ((rc = lane_from_pb("entry ref", src->lane, &ref->lane, err)) < 0)
            return rc;
        ref->seq = src->seq;
    }
    return 0;
}

/* Fills e from m; on error e holds what was copied so far, for entry_release. */
static int entry_from_pb(const Trialsync__Entry *m, struct entry *e, struct ts_error *err)
{
    int rc;

    if ((rc = copy_id("entry origin", e->origin, sizeof(e->origin), m->origin, err)) < 0)
        return rc;
    if ((rc = lane_from_pb("entry", m->lane, &e->lane, err)) < 0)
        return rc;
    e->seq = m->seq;
    e->hlc = m->hlc;
    e->wall_ms = m->wall_ms;
    if ((rc = copy_text("entry user", &e->user, m->user, TS_USER_BYTES_MAX, err)) < 0)
        return rc;
    if ((rc = copy_text("entry reason", &e->reason, m->reason, TS_REASON_BYTES_MAX, err)) < 0)
        return rc;
    if ((rc = copy_id("entry record_type", e->record_type, sizeof(e->record_type), m->record_type,
                      err)) < 0)
        return rc;
    if ((rc = copy_id("entry record_id", e->record_id, sizeof(e->record_id), m->record_id, err)) < 0)
        return rc;
    if ((rc = copy_id("entry site", e->site, sizeof(e->site), m->site, err)) < 0)
        return rc;
    if (m->prev_hash.len != TS_HASH_BYTES)
        return ts_error_set(err, TS_ERR_CORRUPT, "entry prev_hash is %zu bytes", m->prev_hash.len);
    memcpy(e->prev_hash, m->prev_hash.data, TS_HASH_BYTES);
    e->lock_epoch = m->lock_epoch;
    if (m->n_writes > TS_WRITES_PER_ENTRY_MAX)
        return ts_error_set(err, TS_ERR_CORRUPT, "entry has %zu writes", m->n_writes);
    if (m->n_writes == 0)
        return 0;
    e->writes = calloc(m->n_writes, sizeof(*e->writes));
    if (e->writes == NULL)
        return ts_error_set(err, TS_ERR_NOMEM, "out of memory for %zu writes", m->n_writes);
    /* Zeroed writes release cleanly, so count them all at once. */
    e->writes_count = m->n_writes;
    for (size_t i = 0; i < m->n_writes; i++) {
        if ((rc = write_from_pb(m->writes[i], &e->writes[i], err)) < 0)
            return rc;
    }
    return 0;
}

/*
 * Refuses bytes that are a valid entry but not the one byte form the encoder
 * gives it (see the file comment).
 */
static int entry_check_canonical(const struct entry *e, const uint8_t *buf, size_t len,
                                 struct ts_error *err)
{
    uint8_t *canon = NULL;
    size_t canon_len = 0;
    struct ts_error sub;
    int rc = codec_entry_encode(e, &canon, &canon_len, &sub);

    if (rc == TS_ERR_NOMEM)
        return ts_error_set(err, rc, "%s", sub.msg);
    if (rc < 0)
        return ts_error_set(err, TS_ERR_CORRUPT, "entry decodes but does not re-encode: %s", sub.msg);
    if (canon_len != len || memcmp(canon, buf, len) != 0)
        rc = ts_error_set(err, TS_ERR_CORRUPT,
                          "entry is not in canonical form (%zu bytes; canonical is %zu bytes)", len,
                          canon_len);
    free(canon);
    return rc;
}

int codec_entry_decode(const uint8_t *buf, size_t len, struct entry *e, struct ts_error *err)
{
    int rc;

    assert(buf != NULL || len == 0);
    assert(e != NULL);
    assert(schema_checked());
    memset(e, 0, sizeof(*e));
    if (len > TS_ENTRY_BYTES_MAX)
        return ts_error_set(err, TS_ERR_TOOBIG, "entry is %zu bytes, at most %d", len,
                            TS_ENTRY_BYTES_MAX);
    if ((rc = scan_entry(buf, len, err)) < 0)
        return rc;

    Trialsync__Entry *m = trialsync__entry__unpack(NULL, len, buf);
    if (m == NULL) {
        /* The scan accepts nothing protobuf-c refuses, so this is memory. */
        return ts_error_set(err, TS_ERR_NOMEM, "cannot unpack an entry of %zu bytes", len);
    }
    rc = entry_from_pb(m, e, err);
    trialsync__entry__free_unpacked(m, NULL);
    if (rc == 0)
        rc = entry_check_canonical(e, buf, len, err);
    if (rc < 0)
        entry_release(e);
    return rc;
}

/* ---- batches ------------------------------------------------------------ */

/*
 * Every entry of b decodes and is entry first_seq + i of (origin, lane).
 * Decode errors keep TS_ERR_TOOBIG and TS_ERR_NOMEM, others become bad.
 */
static int batch_check_entries(const struct batch *b, int bad, struct ts_error *err)
{
    struct ts_error sub;
    size_t olen = strlen(b->origin);

    /*
     * Each entry is scanned (every field and limit checked, nothing
     * allocated) and its header compared with the batch's.  The full decode,
     * with its canonical-form check, is the receiver's store's: it decodes
     * each entry once more anyway, so doing it here too halved catch-up.
     */
    for (size_t i = 0; i < b->count; i++) {
        struct entry_view v;
        uint64_t want = b->first_seq + i;
        if (b->entry_lens[i] == BATCH_HOLE_LEN)
            continue;  /* a hole: only its chain hash travels */
        if (b->entry_lens[i] > TS_ENTRY_BYTES_MAX)
            return ts_error_set(err, TS_ERR_TOOBIG, "batch entry %zu (seq %" PRIu64 "): entry is "
                                "%zu bytes, at most %d", i, want, b->entry_lens[i],
                                TS_ENTRY_BYTES_MAX);
        int rc = scan_entry_view(b->entries[i], b->entry_lens[i], &v, &sub);
        if (rc < 0) {
            if (rc != TS_ERR_TOOBIG && rc != TS_ERR_NOMEM)
                rc = bad;
            return ts_error_set(err, rc, "batch entry %zu (seq %" PRIu64 "): %s", i, want, sub.msg);
        }
        if (v.origin.len != olen || memcmp(v.origin.p, b->origin, olen) != 0)
            return ts_error_set(err, bad, "batch entry %zu: origin is '%.*s', the batch's is '%s'",
                                i, (int)v.origin.len, (const char *)v.origin.p, b->origin);
        if (v.lane != b->lane)
            return ts_error_set(err, bad, "batch entry %zu: lane is %u, the batch's is %u", i,
                                (unsigned)v.lane, (unsigned)b->lane);
        if (v.seq != want)
            return ts_error_set(err, bad, "batch entry %zu: seq is %" PRIu64 ", expected %" PRIu64,
                                i, v.seq, want);
    }
    return 0;
}

static int batch_check_struct(const struct batch *b, struct ts_error *err)
{
    struct batch_view v;
    int rc;

    v.trial = SPAN_OF_ARRAY(b->trial);
    v.origin = SPAN_OF_ARRAY(b->origin);
    v.lane = b->lane;
    v.first_seq = b->first_seq;
    v.count = b->count;
    v.entry_bytes = 0;
    v.chain_hash = (struct span){ b->chain_hash, sizeof(b->chain_hash) };
    v.signature_len = b->signature_len;
    v.cert_serial = SPAN_OF_ARRAY(b->cert_serial);
    if (b->count > 0 && (b->entries == NULL || b->entry_lens == NULL))
        return ts_error_set(err, TS_ERR_INVALID, "batch has %zu entries but no arrays", b->count);
    /* Sizes first, so the total below cannot overflow. */
    for (size_t i = 0; i < b->count && i < TS_BATCH_ENTRIES_MAX; i++) {
        if (b->entries[i] == NULL)
            return ts_error_set(err, TS_ERR_INVALID, "batch entry %zu has no bytes", i);
        if (b->entry_lens[i] == BATCH_HOLE_LEN) {
            v.entry_bytes += TS_HOLE_WIRE_BYTES;
            continue;
        }
        if ((rc = check_batch_entry_len(i, b->entry_lens[i], TS_ERR_INVALID, err)) < 0)
            return rc;
        v.entry_bytes += b->entry_lens[i];
    }
    if (b->origin_cert_len > TS_CERT_BYTES_MAX)
        return ts_error_set(err, TS_ERR_TOOBIG, "batch origin_cert is %zu bytes, at most %d",
                            b->origin_cert_len, TS_CERT_BYTES_MAX);
    if ((rc = check_batch(&v, TS_ERR_INVALID, err)) < 0)
        return rc;
    return batch_check_entries(b, TS_ERR_INVALID, err);
}

/*
 * The decoded batch's arrays and entry bytes, in one block the batch owns
 * (batch.owned): the entry pointers, then the lengths, then the bytes.
 */
static int batch_from_pb(const Trialsync__Batch *m, struct batch *b, struct ts_error *err)
{
    size_t total = 0;
    int rc;

    if ((rc = copy_id("batch trial", b->trial, sizeof(b->trial), m->trial, err)) < 0)
        return rc;
    if ((rc = copy_id("batch origin", b->origin, sizeof(b->origin), m->origin, err)) < 0)
        return rc;
    if ((rc = lane_from_pb("batch", m->lane, &b->lane, err)) < 0)
        return rc;
    if ((rc = copy_id("batch cert_serial", b->cert_serial, sizeof(b->cert_serial),
                      m->cert_serial, err)) < 0)
        return rc;
    b->first_seq = m->first_seq;
    if (m->chain_hash.len != TS_HASH_BYTES)
        return ts_error_set(err, TS_ERR_CORRUPT, "batch chain_hash is %zu bytes", m->chain_hash.len);
    memcpy(b->chain_hash, m->chain_hash.data, TS_HASH_BYTES);
    if (m->signature.len > TS_SIG_BYTES_MAX)
        return ts_error_set(err, TS_ERR_CORRUPT, "batch signature is %zu bytes", m->signature.len);
    if (m->signature.len > 0)
        memcpy(b->signature, m->signature.data, m->signature.len);
    b->signature_len = m->signature.len;
    if (m->n_entries == 0 || m->n_entries > TS_BATCH_ENTRIES_MAX)
        return ts_error_set(err, TS_ERR_CORRUPT, "batch has %zu entries", m->n_entries);
    for (size_t i = 0; i < m->n_entries; i++) {
        if (m->entries[i].len == 0 || m->entries[i].len > TS_ENTRY_BYTES_MAX)
            return ts_error_set(err, TS_ERR_CORRUPT, "batch entry %zu is %zu bytes", i,
                                m->entries[i].len);
        total += m->entries[i].len;
    }
    if (total > TS_BATCH_BYTES_MAX)
        return ts_error_set(err, TS_ERR_CORRUPT, "batch entries are %zu bytes", total);
    if (m->origin_cert.len > TS_CERT_BYTES_MAX)
        return ts_error_set(err, TS_ERR_CORRUPT, "batch origin_cert is %zu bytes",
                            m->origin_cert.len);
    total += m->origin_cert.len + 1;  /* the certificate, NUL-terminated, after the entries */

    size_t n = m->n_entries;
    size_t lens_at = n * sizeof(*b->entries);
    /* Round up so the lengths are aligned whatever the pointer size. */
    lens_at = (lens_at + _Alignof(size_t) - 1) / _Alignof(size_t) * _Alignof(size_t);
    size_t bytes_at = lens_at + n * sizeof(*b->entry_lens);
    uint8_t *block = malloc(bytes_at + total);
    if (block == NULL)
        return ts_error_set(err, TS_ERR_NOMEM, "out of memory for a batch of %zu bytes", total);
    b->owned = block;
    b->entries = (const uint8_t **)(void *)block;
    b->entry_lens = (size_t *)(void *)(block + lens_at);
    uint8_t *at = block + bytes_at;
    for (size_t i = 0; i < n; i++) {
        const ProtobufCBinaryData *e = &m->entries[i];
        if (e->len == TS_HOLE_WIRE_BYTES && e->data[0] == 0) {
            /* A hole: keep the chain hash, mark it with length 0. */
            memcpy(at, e->data + 1, TS_HASH_BYTES);
            b->entries[i] = at;
            b->entry_lens[i] = BATCH_HOLE_LEN;
            at += e->len;
            continue;
        }
        memcpy(at, e->data, e->len);
        b->entries[i] = at;
        b->entry_lens[i] = e->len;
        at += e->len;
    }
    if (m->origin_cert.len > 0) {
        memcpy(at, m->origin_cert.data, m->origin_cert.len);
        b->origin_cert = (const char *)at;
        b->origin_cert_len = m->origin_cert.len;
    }
    at[m->origin_cert.len] = 0;
    at += m->origin_cert.len + 1;
    assert(at == block + bytes_at + total);
    b->count = n;
    return 0;
}

/* ---- frames ------------------------------------------------------------- */

static int vector_from_pb(Trialsync__VersionItem *const *items, size_t n, struct frame *f,
                          struct ts_error *err)
{
    int rc;

    if (n > TS_CHAINS_MAX)
        return ts_error_set(err, TS_ERR_CORRUPT, "vector has %zu items", n);
    if (n == 0)
        return 0;
    f->vector = calloc(n, sizeof(*f->vector));
    if (f->vector == NULL)
        return ts_error_set(err, TS_ERR_NOMEM, "out of memory for %zu vector items", n);
    f->vector_count = n;
    for (size_t i = 0; i < n; i++) {
        struct vv_item *v = &f->vector[i];
        if ((rc = copy_id("vector item origin", v->origin, sizeof(v->origin), items[i]->origin,
                          err)) < 0)
            return rc;
        if ((rc = lane_from_pb("vector item", items[i]->lane, &v->lane, err)) < 0)
            return rc;
        v->seq = items[i]->seq;
    }
    return 0;
}

static int frame_from_pb(const Trialsync__Frame *m, struct frame *f, struct ts_error *err)
{
    int rc;

    switch (m->body_case) {
    case TRIALSYNC__FRAME__BODY_HELLO:
        f->type = FRAME_HELLO;
        if ((rc = copy_id("hello trial", f->trial, sizeof(f->trial), m->hello->trial, err)) < 0)
            return rc;
        if ((rc = copy_id("hello node_id", f->node_id, sizeof(f->node_id), m->hello->node_id, err)) < 0)
            return rc;
        f->protocol_version = m->hello->protocol_version;
        /* Absent: a node speaking exactly one version (every release before
         * ranges).  A min above the max is left for the session to refuse. */
        f->protocol_version_min = m->hello->protocol_version_min != 0
                                      ? m->hello->protocol_version_min
                                      : m->hello->protocol_version;
        f->wall_ms = m->hello->wall_ms;
        return vector_from_pb(m->hello->vector, m->hello->n_vector, f, err);
    case TRIALSYNC__FRAME__BODY_BATCH:
        f->type = FRAME_BATCH;
        if ((rc = batch_from_pb(m->batch, &f->batch, err)) < 0)
            return rc;
        return batch_check_entries(&f->batch, TS_ERR_CORRUPT, err);
    case TRIALSYNC__FRAME__BODY_ACK:
        f->type = FRAME_ACK;
        return vector_from_pb(m->ack->vector, m->ack->n_vector, f, err);
    case TRIALSYNC__FRAME__BODY_REFUSAL:
        f->type = FRAME_REFUSAL;
        if (m->refusal->n_chains > 1)
            return ts_error_set(err, TS_ERR_CORRUPT, "refusal names %zu chains (at most one)",
                                m->refusal->n_chains);
        if ((rc = vector_from_pb(m->refusal->chains, m->refusal->n_chains, f, err)) < 0)
            return rc;
        if (m->refusal->retry_after_ms != 0 && m->refusal->n_chains == 0)
            return ts_error_set(err, TS_ERR_CORRUPT, "refusal: a retry needs the chain it is about");
        f->retry_after_ms = m->refusal->retry_after_ms;
        return copy_text("refusal reason", &f->reason, m->refusal->reason, TS_REASON_BYTES_MAX, err);
    default:
        return ts_error_set(err, TS_ERR_CORRUPT, "frame has no body");
    }
}

int codec_frame_decode(const uint8_t *buf, size_t len, struct frame *f, struct ts_error *err)
{
    int rc;

    assert(buf != NULL || len == 0);
    assert(f != NULL);
    assert(schema_checked());
    memset(f, 0, sizeof(*f));
    /* First, before the bytes are even read. */
    if (len > TS_FRAME_BYTES_MAX)
        return ts_error_set(err, TS_ERR_TOOBIG, "frame is %zu bytes, at most %d", len,
                            TS_FRAME_BYTES_MAX);
    if ((rc = scan_frame(buf, len, err)) < 0)
        return rc;

    Trialsync__Frame *m = trialsync__frame__unpack(NULL, len, buf);
    if (m == NULL)
        return ts_error_set(err, TS_ERR_NOMEM, "cannot unpack a frame of %zu bytes", len);
    rc = frame_from_pb(m, f, err);
    trialsync__frame__free_unpacked(m, NULL);
    if (rc < 0)
        codec_frame_release(f);
    return rc;
}

void codec_frame_release(struct frame *f)
{
    assert(f != NULL);
    free(f->vector);
    free(f->reason);
    /* Only a decoded batch owns its entries; one built by hand does not. */
    free(f->batch.owned);
    memset(f, 0, sizeof(*f));
}

/* Packs m after checking its size; the caller frees *out. */
static int frame_pack(const Trialsync__Frame *m, uint8_t **out, size_t *out_len, struct ts_error *err)
{
    size_t size = trialsync__frame__get_packed_size(m);

    if (size > TS_FRAME_BYTES_MAX)
        return ts_error_set(err, TS_ERR_TOOBIG, "frame is %zu bytes encoded, at most %d", size,
                            TS_FRAME_BYTES_MAX);
    /* A frame always holds its body's tag, so it is never empty. */
    assert(size > 0);
    uint8_t *buf = malloc(size);
    if (buf == NULL)
        return ts_error_set(err, TS_ERR_NOMEM, "out of memory for a frame of %zu bytes", size);
    size_t packed = trialsync__frame__pack(m, buf);
    assert(packed == size);
    (void)packed;
    *out = buf;
    *out_len = size;
    return 0;
}

/* Encodes a Hello or Ack, which differ only in their header. */
static int frame_encode_vector(const struct frame *f, Trialsync__Frame *m, uint8_t **out,
                               size_t *out_len, struct ts_error *err)
{
    Trialsync__Hello hello = TRIALSYNC__HELLO__INIT;
    Trialsync__Ack ack = TRIALSYNC__ACK__INIT;
    Trialsync__Refusal refusal = TRIALSYNC__REFUSAL__INIT;
    Trialsync__VersionItem *items = NULL;
    Trialsync__VersionItem **item_ptrs = NULL;
    int rc;

    if (f->vector_count > 0) {
        items = calloc(f->vector_count, sizeof(*items));
        item_ptrs = calloc(f->vector_count, sizeof(*item_ptrs));
        if (items == NULL || item_ptrs == NULL) {
            rc = ts_error_set(err, TS_ERR_NOMEM, "out of memory encoding %zu vector items",
                              f->vector_count);
            goto out_free_items;
        }
    }
    for (size_t i = 0; i < f->vector_count; i++) {
        trialsync__version_item__init(&items[i]);
        items[i].origin = pb_str(f->vector[i].origin);
        items[i].lane = f->vector[i].lane;
        items[i].seq = f->vector[i].seq;
        item_ptrs[i] = &items[i];
    }
    if (f->type == FRAME_HELLO) {
        hello.trial = pb_str(f->trial);
        hello.node_id = pb_str(f->node_id);
        hello.protocol_version = f->protocol_version;
        /* Sent only for a range: a one-version hello stays byte-identical to
         * those of releases that reject unknown fields. */
        hello.protocol_version_min = f->protocol_version_min < f->protocol_version
                                         ? f->protocol_version_min
                                         : 0;
        hello.wall_ms = f->wall_ms;
        hello.n_vector = f->vector_count;
        hello.vector = item_ptrs;
        m->body_case = TRIALSYNC__FRAME__BODY_HELLO;
        m->hello = &hello;
    } else if (f->type == FRAME_REFUSAL) {
        refusal.reason = pb_str(f->reason);
        refusal.n_chains = f->vector_count;
        refusal.chains = item_ptrs;
        refusal.retry_after_ms = f->retry_after_ms;
        m->body_case = TRIALSYNC__FRAME__BODY_REFUSAL;
        m->refusal = &refusal;
    } else {
        assert(f->type == FRAME_ACK);
        ack.n_vector = f->vector_count;
        ack.vector = item_ptrs;
        m->body_case = TRIALSYNC__FRAME__BODY_ACK;
        m->ack = &ack;
    }
    rc = frame_pack(m, out, out_len, err);

out_free_items:
    free(item_ptrs);
    free(items);
    return rc;
}

static int frame_encode_batch(const struct batch *b, Trialsync__Frame *m, uint8_t **out,
                              size_t *out_len, struct ts_error *err)
{
    Trialsync__Batch batch = TRIALSYNC__BATCH__INIT;
    ProtobufCBinaryData *entries;
    int rc;

    assert(b->count > 0);
    entries = calloc(b->count, sizeof(*entries));
    uint8_t *holes = malloc(b->count * TS_HOLE_WIRE_BYTES);
    if (entries == NULL || holes == NULL) {
        free(entries);
        free(holes);
        return ts_error_set(err, TS_ERR_NOMEM, "out of memory encoding a batch of %zu entries",
                            b->count);
    }
    for (size_t i = 0; i < b->count; i++) {
        if (b->entry_lens[i] == BATCH_HOLE_LEN) {
            uint8_t *h = holes + i * TS_HOLE_WIRE_BYTES;
            h[0] = 0;
            memcpy(h + 1, b->entries[i], TS_HASH_BYTES);
            entries[i].data = h;
            entries[i].len = TS_HOLE_WIRE_BYTES;
            continue;
        }
        entries[i].data = (uint8_t *)b->entries[i];
        entries[i].len = b->entry_lens[i];
    }
    batch.trial = pb_str(b->trial);
    batch.origin = pb_str(b->origin);
    batch.lane = b->lane;
    batch.first_seq = b->first_seq;
    batch.n_entries = b->count;
    batch.entries = entries;
    batch.chain_hash.data = (uint8_t *)b->chain_hash;
    batch.chain_hash.len = sizeof(b->chain_hash);
    batch.signature.data = b->signature_len > 0 ? (uint8_t *)b->signature : NULL;
    batch.signature.len = b->signature_len;
    batch.origin_cert.data = (uint8_t *)b->origin_cert;
    batch.origin_cert.len = b->origin_cert != NULL ? b->origin_cert_len : 0;
    batch.cert_serial = pb_str(b->cert_serial);
    m->body_case = TRIALSYNC__FRAME__BODY_BATCH;
    m->batch = &batch;
    rc = frame_pack(m, out, out_len, err);
    free(entries);
    free(holes);
    return rc;
}

int codec_frame_encode(const struct frame *f, uint8_t **out, size_t *out_len, struct ts_error *err)
{
    Trialsync__Frame m = TRIALSYNC__FRAME__INIT;
    int rc;

    assert(f != NULL);
    assert(out != NULL);
    assert(out_len != NULL);
    *out = NULL;
    *out_len = 0;
    switch (f->type) {
    case FRAME_HELLO:
        rc = check_hello(SPAN_OF_ARRAY(f->trial), SPAN_OF_ARRAY(f->node_id), f->vector_count,
                         TS_ERR_INVALID, err);
        if (rc == 0)
            rc = vector_check_struct("hello", f->vector, f->vector_count, err);
        if (rc < 0)
            return rc;
        return frame_encode_vector(f, &m, out, out_len, err);
    case FRAME_ACK:
        rc = check_count("ack vector items", f->vector_count, TS_CHAINS_MAX, err);
        if (rc == 0)
            rc = vector_check_struct("ack", f->vector, f->vector_count, err);
        if (rc < 0)
            return rc;
        return frame_encode_vector(f, &m, out, out_len, err);
    case FRAME_BATCH:
        if ((rc = batch_check_struct(&f->batch, err)) < 0)
            return rc;
        return frame_encode_batch(&f->batch, &m, out, out_len, err);
    case FRAME_REFUSAL:
        rc = check_text("refusal reason", span_of_text(f->reason), TS_REASON_BYTES_MAX,
                        TS_ERR_INVALID, err);
        if (rc == 0)
            rc = check_count("refusal chains", f->vector_count, 1, err);
        if (rc == 0)
            rc = vector_check_struct("refusal", f->vector, f->vector_count, err);
        if (rc == 0 && f->retry_after_ms != 0 && f->vector_count == 0)
            rc = ts_error_set(err, TS_ERR_INVALID, "refusal: a retry needs the chain it is about");
        if (rc < 0)
            return rc;
        return frame_encode_vector(f, &m, out, out_len, err);
    }
    return ts_error_set(err, TS_ERR_INVALID, "frame type %d is unknown", (int)f->type);
}

/* ---- batch signatures and length prefixes ------------------------------- */

int codec_batch_sign_bytes(const char *trial, const char *origin, const char *cert_serial,
                           uint8_t lane, uint64_t seq, const uint8_t hash[TS_HASH_BYTES],
                           uint8_t *out, size_t cap)
{
    static const char domain[] = "trialsync-batch-v2";

    assert(trial != NULL);
    assert(origin != NULL);
    assert(hash != NULL);
    assert(out != NULL || cap == 0);
    assert(lane < LANE_COUNT);
    size_t trial_len = strnlen(trial, TS_ID_BYTES_MAX + 1);
    size_t origin_len = strnlen(origin, TS_ID_BYTES_MAX + 1);
    assert(cert_serial != NULL);
    size_t serial_len = strnlen(cert_serial, TS_SERIAL_BYTES_MAX + 1);
    if (trial_len > TS_ID_BYTES_MAX || origin_len > TS_ID_BYTES_MAX ||
        serial_len > TS_SERIAL_BYTES_MAX)
        return TS_ERR_TOOBIG;
    /* The NULs end each text, so no two headers give the same bytes. */
    size_t need = sizeof(domain) + trial_len + 1 + origin_len + 1 + serial_len + 1 + 1 + 8 +
                  TS_HASH_BYTES;
    assert(need <= CODEC_SIGN_BYTES_MAX);
    if (need > cap)
        return TS_ERR_TOOBIG;

    uint8_t *at = out;
    memcpy(at, domain, sizeof(domain));
    at += sizeof(domain);
    memcpy(at, trial, trial_len + 1);
    at += trial_len + 1;
    memcpy(at, origin, origin_len + 1);
    at += origin_len + 1;
    memcpy(at, cert_serial, serial_len + 1);
    at += serial_len + 1;
    *at++ = lane;
    for (int shift = 56; shift >= 0; shift -= 8)
        *at++ = (uint8_t)(seq >> shift);
    memcpy(at, hash, TS_HASH_BYTES);
    at += TS_HASH_BYTES;
    assert((size_t)(at - out) == need);
    return (int)need;
}

uint32_t codec_frame_len_read(const uint8_t prefix[4])
{
    return (uint32_t)prefix[0] << 24 | (uint32_t)prefix[1] << 16 | (uint32_t)prefix[2] << 8 |
           (uint32_t)prefix[3];
}

void codec_frame_len_write(uint8_t prefix[4], uint32_t len)
{
    prefix[0] = (uint8_t)(len >> 24);
    prefix[1] = (uint8_t)(len >> 16);
    prefix[2] = (uint8_t)(len >> 8);
    prefix[3] = (uint8_t)len;
}
