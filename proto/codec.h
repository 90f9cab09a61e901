/*
 * codec.h: entries, batches and frames to and from bytes.
 *
 * The only module that sees protobuf-c.  Decoding never trusts its input:
 * every length is checked against limits.h before anything is allocated,
 * identifiers are checked for length and for printable ASCII without NUL,
 * and anything malformed returns TS_ERR_CORRUPT (or TS_ERR_TOOBIG) with a
 * message, never a crash.  All functions are pure and thread-safe.
 */
#ifndef TS_CODEC_H
#define TS_CODEC_H

#include "entry.h"
#include "errors.h"

/*
 * Encodes e into a malloc'ed buffer (*out, *out_len); the caller frees it.
 * Refuses (TS_ERR_INVALID / TS_ERR_TOOBIG) an entry that breaks limits.h, so
 * that whatever encodes also decodes.
 */
int codec_entry_encode(const struct entry *e, uint8_t **out, size_t *out_len,
                       struct ts_error *err);

/* Decodes buf into *e (which the caller releases with entry_release). */
int codec_entry_decode(const uint8_t *buf, size_t len, struct entry *e,
                       struct ts_error *err);

/*
 * The bytes an origin signs for a batch ending at seq with chain hash h:
 * "trialsync-batch-v1" NUL trial NUL origin NUL lane(1 byte) seq(8 bytes
 * big-endian) h(32 bytes).  Writes at most cap bytes into out and returns the
 * length, or TS_ERR_TOOBIG.
 */
int codec_batch_sign_bytes(const char *trial, const char *origin, uint8_t lane,
                           uint64_t seq, const uint8_t hash[TS_HASH_BYTES],
                           uint8_t *out, size_t cap);

/*
 * Encodes a frame body (without the 4-byte length prefix) into a malloc'ed
 * buffer.  TS_ERR_TOOBIG when it would exceed TS_FRAME_BYTES_MAX.
 */
int codec_frame_encode(const struct frame *f, uint8_t **out, size_t *out_len,
                       struct ts_error *err);

/*
 * Decodes a frame body.  len above TS_FRAME_BYTES_MAX is refused before any
 * allocation.  A batch frame's entries are checked against the batch limits
 * (count, bytes, consecutive seqs start at first_seq >= 1).  The caller
 * releases *f with codec_frame_release.
 */
int codec_frame_decode(const uint8_t *buf, size_t len, struct frame *f,
                       struct ts_error *err);

void codec_frame_release(struct frame *f);

/* Reads the 4-byte big-endian length prefix. */
uint32_t codec_frame_len_read(const uint8_t prefix[4]);
void codec_frame_len_write(uint8_t prefix[4], uint32_t len);

#endif
