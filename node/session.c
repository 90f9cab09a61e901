/*
 * session.c: the dashboard's session table (see session.h).
 *
 * What this file guarantees: a slot is free exactly when its id is "";
 * every live slot's opened_ms <= used_ms; a session is answered only within
 * both of its limits; no allocation.
 */
#include "session.h"

#include <assert.h>
#include <string.h>

#include "util.h"

void session_table_init(struct session_table *t)
{
    assert(t != NULL);
    memset(t, 0, sizeof(*t));
}

bool session_text_equal(const char *a, size_t a_len, const char *b, size_t b_len)
{
    if (a_len != b_len)
        return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < a_len; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

static bool slot_live(const struct session *s)
{
    return s->id[0] != '\0';
}

static bool slot_expired(const struct session *s, uint64_t now_ms)
{
    assert(s->opened_ms <= s->used_ms);
    /* A clock that went back counts as no time passed, never as a fresh start. */
    uint64_t idle = now_ms > s->used_ms ? now_ms - s->used_ms : 0;
    uint64_t age = now_ms > s->opened_ms ? now_ms - s->opened_ms : 0;
    return idle >= SESSION_IDLE_MS || age >= SESSION_ABSOLUTE_MS;
}

struct session *session_open(struct session_table *t, const struct users_principal *who,
                             const uint8_t record_digest[TS_HASH_BYTES],
                             const uint8_t id_random[SESSION_RANDOM_BYTES],
                             const uint8_t csrf_random[SESSION_RANDOM_BYTES], uint64_t now_ms)
{
    assert(t != NULL && who != NULL && record_digest != NULL);
    assert(id_random != NULL && csrf_random != NULL);
    assert(who->user[0] != '\0');
    struct session *slot = NULL;
    struct session *lru = &t->slots[0];
    for (size_t i = 0; i < SESSION_SLOTS && slot == NULL; i++) {
        struct session *s = &t->slots[i];
        if (slot_live(s) && slot_expired(s, now_ms)) {
            t->expired++;
            s->id[0] = '\0';
        }
        if (!slot_live(s))
            slot = s;
        else if (s->used_ms < lru->used_ms)
            lru = s;
    }
    if (slot == NULL) {
        /* Every slot live: the least recently used makes room, being the
         * likeliest to be a browser closed without signing out. */
        slot = lru;
        t->evicted++;
    }
    memset(slot, 0, sizeof(*slot));
    util_hex(id_random, SESSION_RANDOM_BYTES, slot->id);
    util_hex(csrf_random, SESSION_RANDOM_BYTES, slot->csrf);
    slot->who = *who;
    memcpy(slot->record_digest, record_digest, TS_HASH_BYTES);
    slot->opened_ms = now_ms;
    slot->used_ms = now_ms;
    t->opened++;
    assert(slot_live(slot));
    return slot;
}

struct session *session_find(struct session_table *t, const char *id, size_t len,
                             uint64_t now_ms)
{
    assert(t != NULL && id != NULL);
    struct session *found = NULL;
    if (len != SESSION_TEXT_BYTES - 1)
        return NULL;
    /* Every live slot is compared, so the time taken says nothing about
     * which ids exist. */
    for (size_t i = 0; i < SESSION_SLOTS; i++) {
        struct session *s = &t->slots[i];
        if (slot_live(s) && session_text_equal(s->id, strlen(s->id), id, len))
            found = s;
    }
    if (found == NULL)
        return NULL;
    if (slot_expired(found, now_ms)) {
        t->expired++;
        session_end(t, found);
        return NULL;
    }
    if (now_ms > found->used_ms)
        found->used_ms = now_ms;
    return found;
}

void session_end(struct session_table *t, struct session *s)
{
    assert(t != NULL && s != NULL);
    assert(s >= &t->slots[0] && s < &t->slots[SESSION_SLOTS]);
    memset(s, 0, sizeof(*s));
    assert(!slot_live(s));
}

size_t session_count(const struct session_table *t)
{
    size_t n = 0;
    for (size_t i = 0; i < SESSION_SLOTS; i++)
        n += slot_live(&t->slots[i]) ? 1 : 0;
    return n;
}
