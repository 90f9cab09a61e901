/*
 * users.c: signing people in at a node (see users.h).
 *
 * What this file guarantees:
 *   - A token is accepted only when its user's record is held here, its state
 *     is active and scrypt of its secret matches the record's hash; or when a
 *     digest of the same token was accepted against the same hash and state
 *     less than USERS_CACHE_TTL_MS ago.
 *   - Once a user id or an address has failed its limit within the window,
 *     nothing is checked for it (no scrypt, no store read) until the window
 *     has passed.
 *   - The cache and the limiter are fixed arrays: no allocation per request.
 */
#include "users.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../proto/errors.h"
#include "../storage/store.h"
#include "crypto.h"
#include "merge.h"

struct cache_slot {
    uint8_t token_digest[TS_HASH_BYTES];
    uint8_t record_digest[TS_HASH_BYTES];   /* of the secret and state it matched */
    uint64_t checked_ms;
    bool used;
};

struct limit_slot {
    char key[TS_ID_BYTES_MAX + 8];   /* "u:<user>" or "a:<address>" */
    uint64_t window_start_ms;
    unsigned failures;
};

struct users {
    struct store *store;
    struct cache_slot cache[USERS_CACHE_SLOTS];
    struct limit_slot limits[USERS_LIMIT_SLOTS];
    uint64_t failures;
    uint64_t limited;
};

struct users *users_new(struct store *store)
{
    assert(store != NULL);
    struct users *u = calloc(1, sizeof(*u));
    if (u != NULL)
        u->store = store;
    return u;
}

void users_free(struct users *u)
{
    free(u);
}

void users_counts(const struct users *u, uint64_t *failures, uint64_t *limited)
{
    *failures = u->failures;
    *limited = u->limited;
}

bool users_token_is_user(const char *token, size_t len)
{
    const char *colon = memchr(token, ':', len);
    if (colon == NULL || colon == token || (size_t)(colon - token) > TS_ID_BYTES_MAX)
        return false;
    return (size_t)(colon - token) + 1 < len;
}

/* ---- the limiter ------------------------------------------------------------------ */

static struct limit_slot *limit_find(struct users *u, const char *key, uint64_t now_ms,
                                     bool create)
{
    struct limit_slot *oldest = &u->limits[0];
    for (size_t i = 0; i < USERS_LIMIT_SLOTS; i++) {
        struct limit_slot *s = &u->limits[i];
        if (s->key[0] != '\0' && strcmp(s->key, key) == 0) {
            if (now_ms - s->window_start_ms >= USERS_FAIL_WINDOW_MS) {
                s->window_start_ms = now_ms;
                s->failures = 0;
            }
            return s;
        }
        if (s->key[0] == '\0' || s->window_start_ms < oldest->window_start_ms)
            oldest = s;
    }
    if (!create)
        return NULL;
    /* The oldest window makes room: a flood of addresses forgets the
     * earliest, which have had the longest to age out anyway. */
    memset(oldest, 0, sizeof(*oldest));
    snprintf(oldest->key, sizeof(oldest->key), "%s", key);
    oldest->window_start_ms = now_ms;
    return oldest;
}

static bool limit_reached(struct users *u, const char *key, unsigned max, uint64_t now_ms)
{
    struct limit_slot *s = limit_find(u, key, now_ms, false);
    return s != NULL && s->failures >= max;
}

static void limit_fail(struct users *u, const char *key, uint64_t now_ms)
{
    struct limit_slot *s = limit_find(u, key, now_ms, true);
    s->failures++;
}

/* ---- the record -------------------------------------------------------------------- */

/* The displayed value of a field of user id, copied into buf; false when unset. */
static bool user_field(struct users *u, const char *id, const char *field, char *buf,
                       size_t cap)
{
    struct field_state st;
    if (store_field_get(u->store, SCHEMA_USER_TYPE, id, field, &st) != 0)
        return false;
    int i = merge_display(SCHEMA_USER_TYPE, field, &st);
    bool ok = i >= 0 && strlen(st.live[i].value) < cap;
    if (ok)
        memcpy(buf, st.live[i].value, strlen(st.live[i].value) + 1);
    field_state_release(&st);
    return ok;
}

/*
 * Reads user id's record into *p (id, role, site, name) and the digest that
 * binds a check to its secret hash and state, the state being "active" or
 * not in *active; the secret hash into secret (cap bytes).  False when the
 * record is missing or unusable.
 */
static bool record_load(struct users *u, const char *id, struct users_principal *p,
                        uint8_t record_digest[TS_HASH_BYTES], bool *active, char *secret,
                        size_t secret_cap)
{
    char role[32], state[16];
    assert(secret_cap == CRYPTO_SECRET_TEXT_MAX + 1);
    if (!user_field(u, id, "role", role, sizeof(role)) ||
        !user_field(u, id, "secret", secret, secret_cap) ||
        !user_field(u, id, "state", state, sizeof(state)))
        return false;
    p->role = schema_user_role_find(role);
    if (p->role == USER_ROLE_NONE)
        return false;
    if (!user_field(u, id, "site", p->site, sizeof(p->site)))
        p->site[0] = '\0';
    if (!user_field(u, id, "name", p->name, sizeof(p->name)))
        p->name[0] = '\0';
    /* The record digest binds a cached token or a session to the hash and
     * state it was checked against: a reset or a disable forgets it at once. */
    char record_text[CRYPTO_SECRET_TEXT_MAX + 1 + sizeof(state) + 1];
    snprintf(record_text, sizeof(record_text), "%s\n%s", secret, state);
    crypto_sha256(record_text, strlen(record_text), record_digest);
    *active = strcmp(state, "active") == 0;
    return true;
}

enum users_verdict users_recheck(struct users *u, const char *user,
                                 const uint8_t record_digest[TS_HASH_BYTES],
                                 struct users_principal *out)
{
    char secret[CRYPTO_SECRET_TEXT_MAX + 1];
    uint8_t now_digest[TS_HASH_BYTES];
    bool active = false;
    assert(u != NULL && user != NULL && record_digest != NULL && out != NULL);
    memset(out, 0, sizeof(*out));
    snprintf(out->user, sizeof(out->user), "%s", user);
    if (!record_load(u, user, out, now_digest, &active, secret, sizeof(secret)))
        return USERS_BAD;
    memset(secret, 0, sizeof(secret));
    if (!active)
        return USERS_DISABLED;
    return memcmp(now_digest, record_digest, TS_HASH_BYTES) == 0 ? USERS_OK : USERS_BAD;
}

int users_record_digest(struct users *u, const char *user, uint8_t out[TS_HASH_BYTES])
{
    char secret[CRYPTO_SECRET_TEXT_MAX + 1];
    struct users_principal p;
    bool active = false;
    memset(&p, 0, sizeof(p));
    if (!record_load(u, user, &p, out, &active, secret, sizeof(secret)))
        return TS_ERR_NOTFOUND;
    memset(secret, 0, sizeof(secret));
    return 0;
}

static struct cache_slot *cache_find(struct users *u, const uint8_t digest[TS_HASH_BYTES])
{
    for (size_t i = 0; i < USERS_CACHE_SLOTS; i++) {
        if (u->cache[i].used && memcmp(u->cache[i].token_digest, digest, TS_HASH_BYTES) == 0)
            return &u->cache[i];
    }
    return NULL;
}

static void cache_put(struct users *u, const uint8_t token_digest[TS_HASH_BYTES],
                      const uint8_t record_digest[TS_HASH_BYTES], uint64_t now_ms)
{
    struct cache_slot *slot = cache_find(u, token_digest);
    for (size_t i = 0; slot == NULL && i < USERS_CACHE_SLOTS; i++) {
        if (!u->cache[i].used)
            slot = &u->cache[i];
    }
    if (slot == NULL) {
        slot = &u->cache[0];
        for (size_t i = 1; i < USERS_CACHE_SLOTS; i++) {
            if (u->cache[i].checked_ms < slot->checked_ms)
                slot = &u->cache[i];
        }
    }
    memcpy(slot->token_digest, token_digest, TS_HASH_BYTES);
    memcpy(slot->record_digest, record_digest, TS_HASH_BYTES);
    slot->checked_ms = now_ms;
    slot->used = true;
}

static enum users_verdict fail(struct users *u, const char *user_key, const char *addr_key,
                               uint64_t now_ms, enum users_verdict v, char *why, size_t cap,
                               const char *text)
{
    u->failures++;
    if (user_key[0] != '\0')
        limit_fail(u, user_key, now_ms);
    limit_fail(u, addr_key, now_ms);
    snprintf(why, cap, "%s", text);
    return v;
}

static enum users_verdict check_token(struct users *u, const char *token, size_t len,
                                      const char *addr, uint64_t now_ms, bool use_cache,
                                      struct users_principal *out, char *why, size_t why_cap)
{
    char user_key[TS_ID_BYTES_MAX + 8] = "";
    char addr_key[TS_ID_BYTES_MAX + 8];
    static const char bad[] = "wrong or unknown user token";

    assert(u != NULL && token != NULL && out != NULL);
    memset(out, 0, sizeof(*out));
    snprintf(addr_key, sizeof(addr_key), "a:%.*s", TS_ID_BYTES_MAX, addr != NULL ? addr : "");
    if (!users_token_is_user(token, len) || len > 512)
        return fail(u, "", addr_key, now_ms, USERS_BAD, why, why_cap, bad);
    size_t id_len = (size_t)((const char *)memchr(token, ':', len) - token);
    memcpy(out->user, token, id_len);
    out->user[id_len] = '\0';
    snprintf(user_key, sizeof(user_key), "u:%s", out->user);

    if (limit_reached(u, user_key, USERS_FAILS_PER_USER_MAX, now_ms) ||
        limit_reached(u, addr_key, USERS_FAILS_PER_ADDR_MAX, now_ms)) {
        u->limited++;
        snprintf(why, why_cap, "too many failed sign-ins; wait a minute and try again");
        return USERS_LIMITED;
    }
    if (!schema_id_ok(out->user))
        return fail(u, "", addr_key, now_ms, USERS_BAD, why, why_cap, bad);

    char secret[CRYPTO_SECRET_TEXT_MAX + 1];
    bool active = false;
    uint8_t token_digest[TS_HASH_BYTES], record_digest[TS_HASH_BYTES];
    if (!record_load(u, out->user, out, record_digest, &active, secret, sizeof(secret)))
        return fail(u, user_key, addr_key, now_ms, USERS_BAD, why, why_cap, bad);
    crypto_sha256(token, len, token_digest);

    if (!active)
        return fail(u, user_key, addr_key, now_ms, USERS_DISABLED, why, why_cap,
                    "this user account is disabled; ask the trial's admin");
    struct cache_slot *hit = use_cache ? cache_find(u, token_digest) : NULL;
    if (hit != NULL && memcmp(hit->record_digest, record_digest, TS_HASH_BYTES) == 0 &&
        now_ms - hit->checked_ms < USERS_CACHE_TTL_MS)
        return USERS_OK;

    char secret_given[513];
    size_t secret_len = len - id_len - 1;
    memcpy(secret_given, token + id_len + 1, secret_len);
    secret_given[secret_len] = '\0';
    bool match = crypto_secret_verify(secret_given, secret);
    memset(secret_given, 0, sizeof(secret_given));
    if (!match)
        return fail(u, user_key, addr_key, now_ms, USERS_BAD, why, why_cap, bad);
    cache_put(u, token_digest, record_digest, now_ms);
    out->checked = true;
    return USERS_OK;
}

enum users_verdict users_authenticate(struct users *u, const char *token, size_t len,
                                      const char *addr, uint64_t now_ms,
                                      struct users_principal *out, char *why, size_t why_cap)
{
    return check_token(u, token, len, addr, now_ms, true, out, why, why_cap);
}

enum users_verdict users_reverify(struct users *u, const char *user, const char *token,
                                  size_t len, const char *addr, uint64_t now_ms, char *why,
                                  size_t why_cap)
{
    struct users_principal p;
    enum users_verdict v = check_token(u, token, len, addr, now_ms, false, &p, why, why_cap);
    if (v == USERS_OK && strcmp(p.user, user) != 0) {
        snprintf(why, why_cap, "the secret entered is not %s's", user);
        return USERS_BAD;
    }
    return v;
}
