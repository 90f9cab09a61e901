/*
 * esign.h: investigators' electronic signatures (21 CFR 11.50, 11.70,
 * 11.200), read from the state every node holds.
 *
 * The same holds for a monitor's source-data verification mark (`sdv`):
 * verified while the fields it names hold the versions it saw, "needs
 * re-verification" after any later write to one of them.
 *
 * A `signature` record (schema.h) names what was signed (a visit, or a
 * subject's casebook: the subject and every visit and AE under it) and a
 * digest of exactly the field versions shown when it was signed.  Whether a
 * signature still holds is derived, never stored: it is broken as soon as the
 * signed records' versions differ from the digest, so every node that holds
 * the same entries says the same, and a later change (from any node, offline
 * or not) can never leave a signature silently in place.
 */
#ifndef TS_ESIGN_H
#define TS_ESIGN_H

#include <jansson.h>
#include <stdint.h>

#include "../proto/limits.h"

struct store;

/*
 * The digest of the versions of target ("subject/<id>" or "visit/<id>"): for
 * each record signed, in key order, each field in name order, each live
 * write in canonical order: type, id, field, value and the write's entry
 * (origin, lane, seq), chained through SHA-256.  0, TS_ERR_NOTFOUND when the
 * record does not exist, or another negative code.
 */
int esign_digest(struct store *s, const char *target, uint8_t out[TS_HASH_BYTES]);

/* The same digest as 64 lowercase hex digits and a NUL.  fields, when not
 * NULL or "", limits it to those fields (comma-separated): an SDV mark's. */
int esign_digest_hex(struct store *s, const char *target, const char *fields,
                     char out[2 * TS_HASH_BYTES + 1]);

/*
 * The signatures of the record type/id: a JSON array (new reference) of
 * {"id", "user", "name", "meaning", "signed_at", "state": "valid"|"broken"},
 * or NULL when the record cannot carry one (not a subject or a visit).
 */
json_t *esign_list(struct store *s, const char *type, const char *id);

/* The next free signature id of subject at this node: <subject>-SIG-<nnn>. */
int esign_next_id(struct store *s, const char *subject, char out[TS_ID_BYTES_MAX + 1]);

/*
 * The SDV marks of the record type/id (a subject, visit or AE): a JSON array
 * of {"id", "user", "fields", "verified_at", "state": "verified" | "needs
 * re-verification"}, or NULL when the record cannot carry one.
 */
json_t *esign_sdv_list(struct store *s, const char *type, const char *id);

#endif
