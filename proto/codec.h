/*
 * codec.h: entries, batches and frames to and from bytes.
 *
 * The only module that sees protobuf-c.  Decoding never trusts its input:
 * every length is checked against limits.h before anything is allocated,
 * identifiers are checked for length and for printable ASCII without NUL,
 * and anything malformed returns TS_ERR_CORRUPT (or TS_ERR_TOOBIG) with a
 * message, never a crash.  All functions are pure and thread-safe.
 *
 * The rules, the same when encoding and decoding: ids (origin, trial,
 * node_id, record_id, site, field names, record_type) are printable ASCII
 * without spaces (0x21-0x7e) within their limits, and only site may be "";
 * free text (user, reason, value, refusal reason) is UTF-8 without NUL
 * within its limit; lanes are below LANE_COUNT; entry and ref seqs and a
 * batch's first_seq are >= 1 (vector seqs may be 0); hashes are exactly
 * TS_HASH_BYTES.  Protobuf fields this schema does not have, and a singular
 * field given twice, are refused.
 */
#ifndef TS_CODEC_H
#define TS_CODEC_H

#include "entry.h"
#include "errors.h"

/*
 * Encodes e into a malloc'ed buffer (*out, *out_len); the caller frees it.
 * Refuses (TS_ERR_INVALID / TS_ERR_TOOBIG) an entry that breaks limits.h, so
 * that whatever encodes also decodes; on error *out is NULL.  NULL user,
 * reason or value pointers encode as "".  The encoding is canonical: equal
 * entries give equal bytes.
 */
int codec_entry_encode(const struct entry *e, uint8_t **out, size_t *out_len,
                       struct ts_error *err);

/*
 * Decodes buf into *e (which the caller releases with entry_release).  Only
 * the canonical encoding decodes (exactly the bytes codec_entry_encode gives
 * for the result), so one entry has one byte form.  user, reason and values
 * are never NULL.  On error *e is zeroed.
 */
int codec_entry_decode(const uint8_t *buf, size_t len, struct entry *e,
                       struct ts_error *err);

/*
 * The bytes an origin signs for a batch ending at seq with chain hash h, with
 * the key of its certificate of serial cert_serial (uppercase hex):
 * "trialsync-batch-v2" NUL trial NUL origin NUL cert_serial NUL lane(1 byte)
 * seq(8 bytes big-endian) h(32 bytes).  Naming the certificate in the signed
 * bytes keeps a relay from passing a batch off as signed by another key of
 * the same origin.  Writes at most cap bytes into out and returns the
 * length, or TS_ERR_TOOBIG (cap too small, an id above TS_ID_BYTES_MAX, a
 * serial above TS_SERIAL_BYTES_MAX).  A buffer of CODEC_SIGN_BYTES_MAX
 * always suffices.
 */
#define CODEC_SIGN_BYTES_MAX (19 + 2 * (TS_ID_BYTES_MAX + 1) + TS_SERIAL_BYTES_MAX + 1 + 1 + 8 + \
                              TS_HASH_BYTES)
int codec_batch_sign_bytes(const char *trial, const char *origin, const char *cert_serial,
                           uint8_t lane, uint64_t seq, const uint8_t hash[TS_HASH_BYTES],
                           uint8_t *out, size_t cap);

/*
 * Encodes a frame body (without the 4-byte length prefix) into a malloc'ed
 * buffer.  TS_ERR_TOOBIG when it would exceed TS_FRAME_BYTES_MAX.  Checks the
 * frame by the same rules as decoding (a batch's entries are decoded and must
 * be first_seq, first_seq + 1, ... of its origin and lane), TS_ERR_INVALID
 * otherwise, so that a peer's codec never refuses what this one sends.
 */
int codec_frame_encode(const struct frame *f, uint8_t **out, size_t *out_len,
                       struct ts_error *err);

/*
 * Decodes a frame body.  len above TS_FRAME_BYTES_MAX is refused before any
 * allocation.  A batch frame's entries are checked against the batch limits
 * (count, bytes, consecutive seqs start at first_seq >= 1): each entry
 * decodes and has the batch's origin and lane.  A decoded batch's entries
 * point into storage the frame owns (batch.owned), valid until
 * codec_frame_release, independent of buf.  The caller releases *f with
 * codec_frame_release; on error *f is zeroed.
 */
int codec_frame_decode(const uint8_t *buf, size_t len, struct frame *f,
                       struct ts_error *err);

/*
 * Frees what a frame owns (vector, reason, a decoded batch's storage) and
 * zeroes it; safe on a zeroed frame.  A batch built by hand (owned == NULL)
 * keeps its entries: they are the caller's.
 */
void codec_frame_release(struct frame *f);

/* Reads the 4-byte big-endian length prefix. */
uint32_t codec_frame_len_read(const uint8_t prefix[4]);
/* Writes len as the 4-byte big-endian length prefix. */
void codec_frame_len_write(uint8_t prefix[4], uint32_t len);

#endif
