/*
 * session.h: the dashboard's sign-in sessions at one node.  A person signs
 * in once with their user token (users.h); the node remembers a random
 * session id, which the browser holds in the ts_session cookie, and a
 * random CSRF token, which only the node's own page can read.  Neither is
 * derived from any secret, so a leaked cookie reveals no token.
 *
 * What this module guarantees:
 *   - A table of SESSION_SLOTS sessions, fixed in size: opening one when all
 *     are taken forgets the one used least recently (counted in `evicted`).
 *   - session_find answers a session only while it is less than
 *     SESSION_IDLE_MS since its last use and less than SESSION_ABSOLUTE_MS
 *     since it was opened; a session found expired is forgotten then.
 *   - Ids are compared in constant time.
 *
 * Pure: no I/O, no clock, no allocation after session_table_init; the caller
 * passes the time and the random bytes, so a test can drive every path.
 * Whether the person's account still allows them in (disabled, token reset)
 * is users.h's to say; the session keeps the digest of the record it was
 * opened against for that check.
 */
#ifndef TS_SESSION_H
#define TS_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../proto/limits.h"
#include "users.h"

/* People signed in to one node's dashboard at once: a CRO's monitors, data
 * managers and safety staff are tens; twice that leaves room for a person
 * with several browsers before anyone is signed out to make room. */
#define SESSION_SLOTS 64
/* Random bytes in a session id and in a CSRF token: 256 bits, far above
 * the 128 that makes guessing one hopeless. */
#define SESSION_RANDOM_BYTES 32
/* The hex text of either, its NUL included. */
#define SESSION_TEXT_BYTES (2 * SESSION_RANDOM_BYTES + 1)
/* A session unused this long ends: the automatic log-off of an unattended
 * browser (OWASP's 15 to 30 minutes for routine applications).  An open
 * dashboard polls every 2 s and so stays signed in while it is on screen. */
#define SESSION_IDLE_MS (15u * 60u * 1000u)
/* A session ends this long after sign-in however busy: one working shift,
 * so a screen left polling overnight asks for the secret again. */
#define SESSION_ABSOLUTE_MS (8u * 3600u * 1000u)

_Static_assert(SESSION_IDLE_MS < SESSION_ABSOLUTE_MS, "idle expiry comes before absolute expiry");
_Static_assert(SESSION_RANDOM_BYTES >= 16, "at least 128 random bits in an id");

struct session {
    char id[SESSION_TEXT_BYTES];     /* hex; "" for a free slot */
    char csrf[SESSION_TEXT_BYTES];   /* hex */
    struct users_principal who;
    uint8_t record_digest[TS_HASH_BYTES];   /* users_record_digest at sign-in */
    uint64_t opened_ms;
    uint64_t used_ms;
};

struct session_table {
    struct session slots[SESSION_SLOTS];
    uint64_t opened;    /* since start */
    uint64_t evicted;   /* forgotten to make room */
    uint64_t expired;   /* found past their idle or absolute limit */
};

void session_table_init(struct session_table *t);

/*
 * Opens a session for who, bound to record_digest, at now_ms; id_random and
 * csrf_random are SESSION_RANDOM_BYTES each from crypto_random.  Returns the
 * session (owned by the table, valid until it is ended, evicted or found
 * expired).  Never fails: a full table evicts its least recently used.
 */
struct session *session_open(struct session_table *t, const struct users_principal *who,
                             const uint8_t record_digest[TS_HASH_BYTES],
                             const uint8_t id_random[SESSION_RANDOM_BYTES],
                             const uint8_t csrf_random[SESSION_RANDOM_BYTES], uint64_t now_ms);

/*
 * The live session whose id is the len bytes at id, marked used at now_ms;
 * NULL when there is none or it has expired (then it is forgotten).
 */
struct session *session_find(struct session_table *t, const char *id, size_t len,
                             uint64_t now_ms);

/* Forgets s (sign-out, or its account no longer lets the person in). */
void session_end(struct session_table *t, struct session *s);

/* Sessions open now (expired ones not yet found count until they are). */
size_t session_count(const struct session_table *t);

/* True when a and b (a_len and b_len bytes) are equal, in time independent of where they differ. */
bool session_text_equal(const char *a, size_t a_len, const char *b, size_t b_len);

#endif
