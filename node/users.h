/*
 * users.h: who is asking.  Signs a person in at a node from their own token,
 * against their `user` record as replicated to this node (schema.h), with a
 * bounded cache of tokens already checked and a bounded limiter of failed
 * attempts per user and per address.
 *
 * A user token is "<user id>:<secret>"; the record holds a salted scrypt hash
 * of the secret (crypto.h), never the secret.  The first use of a token at a
 * node costs one scrypt on the loop thread (tens of milliseconds); later uses
 * hit the cache, which holds SHA-256 digests only and forgets a token when the
 * user's secret or state changes.  Failed attempts beyond the limits are
 * refused before any scrypt runs, so guessing costs the node nothing.
 *
 * Loop thread only; no allocation after users_new.
 */
#ifndef TS_USERS_H
#define TS_USERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../proto/limits.h"
#include "schema.h"

struct store;

/* Tokens remembered after a successful check: a node's active users. */
#define USERS_CACHE_SLOTS 128
/* Failed attempts remembered, per user id and per address. */
#define USERS_LIMIT_SLOTS 256
/* At most this many failures per user id, and per address, in a window:
 * a person mistyping gets several tries; a guesser gets almost none. */
#define USERS_FAILS_PER_USER_MAX 5
#define USERS_FAILS_PER_ADDR_MAX 20
#define USERS_FAIL_WINDOW_MS 60000u
/* A cached token is checked against its record again after this long. */
#define USERS_CACHE_TTL_MS 300000u

struct users;

struct users_principal {
    char user[TS_ID_BYTES_MAX + 1];
    enum schema_user_role role;
    char site[TS_ID_BYTES_MAX + 1];   /* "" for the CRO */
    char name[128];                   /* printed name */
    bool checked;                     /* the token was checked against the record now
                                       * (not from the cache): a sign-in worth recording */
};

enum users_verdict {
    USERS_OK,
    USERS_BAD,        /* unknown user, wrong secret, malformed token */
    USERS_DISABLED,   /* the account is disabled */
    USERS_LIMITED,    /* too many failures lately: not even checked */
};

/* A new authenticator reading user records from store; NULL when out of memory. */
struct users *users_new(struct store *store);
void users_free(struct users *u);

/* True when token has the form of a user token ("<user id>:<secret>"). */
bool users_token_is_user(const char *token, size_t len);

/*
 * Signs in the holder of token (len bytes) coming from addr (text, may be
 * "").  On USERS_OK *out names the user; otherwise why says what to do, in
 * words that do not tell a guesser which part was wrong.
 */
enum users_verdict users_authenticate(struct users *u, const char *token, size_t len,
                                      const char *addr, uint64_t now_ms,
                                      struct users_principal *out, char *why, size_t why_cap);

/*
 * Checks a secret re-entered by the signed-in user (an e-signature, 21 CFR
 * 11.200): as users_authenticate but never from the cache, and the token must
 * be user's own.  Failures count against the same limits.
 */
enum users_verdict users_reverify(struct users *u, const char *user, const char *token,
                                  size_t len, const char *addr, uint64_t now_ms, char *why,
                                  size_t why_cap);


/*
 * The digest binding a check to user's record as it is now (its secret hash
 * and state), into out: a session keeps it from sign-in.  0, or
 * TS_ERR_NOTFOUND when the record is missing or unusable.
 */
int users_record_digest(struct users *u, const char *user, uint8_t out[TS_HASH_BYTES]);

/*
 * Whether user, signed in earlier against the record whose digest was
 * record_digest, may still act: USERS_OK with *out filled from the record
 * as it is now; USERS_DISABLED once the account is disabled; USERS_BAD once
 * the record is gone or its secret was reset.  A store read and a SHA-256,
 * no scrypt; not counted as a failed sign-in.
 */
enum users_verdict users_recheck(struct users *u, const char *user,
                                 const uint8_t record_digest[TS_HASH_BYTES],
                                 struct users_principal *out);

/* Counters since start: failed attempts, and attempts refused by the limiter. */
void users_counts(const struct users *u, uint64_t *failures, uint64_t *limited);

#endif
