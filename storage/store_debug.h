/*
 * store_debug.h: test-only hooks into the store, for tests that must damage
 * what is on disk to prove that the store notices.
 *
 * Nothing in the node or the CLI may call these: they break the store's
 * guarantee that entries are never changed.
 */
#ifndef TS_STORE_DEBUG_H
#define TS_STORE_DEBUG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/*
 * Flips (xor 0xff) the byte at byte_offset of the stored encoded bytes of the
 * entry ref (the entry itself, not the chain hash stored before it), written
 * synced and bypassing every check.  Returns 0, TS_ERR_NOTFOUND when the entry
 * is not held, TS_ERR_INVALID when byte_offset is past its end, TS_ERR_IO.
 */
int store_debug_corrupt(struct store *s, const struct entry_ref *ref, size_t byte_offset);

/*
 * Writes bytes as the stored state of (type, id, field), synced, bypassing
 * every check: the state no longer follows from the oplog.  bytes NULL
 * deletes the stored state instead.  Returns 0,
 * TS_ERR_INVALID (names too long), TS_ERR_IO.
 */
int store_debug_state_put(struct store *s, const char *type, const char *id, const char *field,
                          const uint8_t *bytes, size_t len);

/*
 * Replaces the head entry of a chain with bytes (an encoded entry naming the
 * same origin, lane, seq, record, HLC and prev_hash as the one held) and the
 * signature stored at that seq with sig, recomputes the chain hash and the
 * head, and rewrites the record's state as its entries now give it: a forgery
 * only the signer's certificate can give away.  Returns 0, TS_ERR_INVALID
 * (not the head, or not the same record), TS_ERR_NOTFOUND, TS_ERR_IO.
 */
int store_debug_entry_replace(struct store *s, const uint8_t *bytes, size_t len,
                              const char *cert_serial, const uint8_t *sig, size_t sig_len);

/* Signs msg into sig (at most TS_SIG_BYTES_MAX bytes); 0 or a negative code. */
typedef int (*store_debug_sign_fn)(void *ctx, const uint8_t *msg, size_t len, uint8_t *sig,
                                   size_t *sig_len);

/*
 * Replaces every stored signature of (origin, lane) with one sign makes over
 * codec_batch_sign_bytes() of that signed point, naming the certificate of
 * serial cert_serial, in one synced write: the chain now verifies with
 * another key.  Returns 0, TS_ERR_INVALID,
 * TS_ERR_CORRUPT, TS_ERR_IO, or what sign returns.
 */
int store_debug_resign(struct store *s, const char *trial, const char *origin, uint8_t lane,
                       const char *cert_serial, store_debug_sign_fn sign, void *ctx);

/*
 * Stamps the store with format marker `version` (any number, also one newer
 * than this build), synced, and with drop_counters deletes the counters
 * record as a format v1 store without entries lacks it: reopening then
 * exercises the migration (or the refusal).  Returns 0 or TS_ERR_IO.
 */
int store_debug_format_stamp(struct store *s, uint32_t version, bool drop_counters);

#endif
