/*
 * test_session.c: the dashboard's session table (node/session.h): ids and
 * CSRF tokens are the random bytes given, in hex; a session is found only
 * by its exact id, only within its idle and absolute limits, and is
 * forgotten once found expired or ended; a full table evicts the least
 * recently used session.
 */
#include "unit.h"

#include <stdio.h>
#include <string.h>

#include "../../node/session.h"

static const uint64_t T0 = 1700000000000ULL;

static struct users_principal person(const char *user)
{
    struct users_principal p;
    memset(&p, 0, sizeof(p));
    snprintf(p.user, sizeof(p.user), "%s", user);
    p.role = USER_ROLE_MONITOR;
    return p;
}

/* Random bytes from the suite's seeded generator (a session's id and CSRF token). */
static void fill_random(uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)unit_rand();
}

static struct session *open_one(struct session_table *t, const char *user, uint64_t now_ms)
{
    uint8_t digest[TS_HASH_BYTES] = {1}, id[SESSION_RANDOM_BYTES], csrf[SESSION_RANDOM_BYTES];
    struct users_principal p = person(user);
    fill_random(id, sizeof(id));
    fill_random(csrf, sizeof(csrf));
    return session_open(t, &p, digest, id, csrf, now_ms);
}

static struct session *find(struct session_table *t, const char *id, uint64_t now_ms)
{
    return session_find(t, id, strlen(id), now_ms);
}

/* An empty table t with one session, opened at T0 by mon1, whose id is copied to id. */
static struct session *open_fresh(struct session_table *t, char id[SESSION_TEXT_BYTES])
{
    session_table_init(t);
    struct session *s = open_one(t, "mon1", T0);
    snprintf(id, SESSION_TEXT_BYTES, "%s", s->id);
    return s;
}

static void test_session_ids_are_the_random_bytes_in_hex(void)
{
    static struct session_table t;
    uint8_t digest[TS_HASH_BYTES] = {0}, id[SESSION_RANDOM_BYTES], csrf[SESSION_RANDOM_BYTES];
    struct users_principal p = person("mon1");
    session_table_init(&t);
    memset(id, 0xab, sizeof(id));
    memset(csrf, 0x01, sizeof(csrf));
    struct session *s = session_open(&t, &p, digest, id, csrf, T0);
    CU_ASSERT_EQUAL(strlen(s->id), 2 * SESSION_RANDOM_BYTES);
    CU_ASSERT_EQUAL(strspn(s->id, "ab"), 2 * SESSION_RANDOM_BYTES);
    CU_ASSERT_EQUAL(strspn(s->csrf, "01"), 2 * SESSION_RANDOM_BYTES);
    CU_ASSERT_STRING_EQUAL(s->who.user, "mon1");
    CU_ASSERT_EQUAL(session_count(&t), 1);
    CU_ASSERT_PTR_EQUAL(find(&t, s->id, T0 + 1), s);
}

static void test_session_found_only_by_its_exact_id(void)
{
    static struct session_table t;
    char id[SESSION_TEXT_BYTES];
    struct session *s = open_fresh(&t, id);
    CU_ASSERT_PTR_EQUAL(find(&t, id, T0), s);
    /* One digit changed, one missing, one more, the CSRF token, nothing. */
    id[5] = id[5] == '0' ? '1' : '0';
    CU_ASSERT_PTR_NULL(find(&t, id, T0));
    CU_ASSERT_PTR_NULL(session_find(&t, s->id, strlen(s->id) - 1, T0));
    char longer[SESSION_TEXT_BYTES + 1];
    snprintf(longer, sizeof(longer), "%s0", s->id);
    CU_ASSERT_PTR_NULL(find(&t, longer, T0));
    CU_ASSERT_PTR_NULL(find(&t, s->csrf, T0));
    CU_ASSERT_PTR_NULL(find(&t, "", T0));
    CU_ASSERT_EQUAL(session_count(&t), 1);
}

static void test_session_idle_expiry(void)
{
    static struct session_table t;
    char id[SESSION_TEXT_BYTES];
    struct session *s = open_fresh(&t, id);
    /* Used just before each idle limit: it lives on, past the idle limit in total. */
    uint64_t now = T0;
    for (int i = 0; i < 3; i++) {
        now += SESSION_IDLE_MS - 1;
        CU_ASSERT_PTR_EQUAL_FATAL(find(&t, id, now), s);
    }
    CU_ASSERT(now - T0 > SESSION_IDLE_MS);
    /* Then unused for exactly the idle limit: ended, and forgotten. */
    now += SESSION_IDLE_MS;
    CU_ASSERT_PTR_NULL(find(&t, id, now));
    CU_ASSERT_EQUAL(t.expired, 1);
    CU_ASSERT_EQUAL(session_count(&t), 0);
    CU_ASSERT_PTR_NULL(find(&t, id, now));
    CU_ASSERT_EQUAL(t.expired, 1);
}

static void test_session_absolute_expiry(void)
{
    static struct session_table t;
    char id[SESSION_TEXT_BYTES];
    CU_ASSERT_PTR_NOT_NULL_FATAL(open_fresh(&t, id));
    /* Polled every 2 s like an open dashboard: never idle, yet it ends at
     * the absolute limit. */
    uint64_t now = T0;
    uint64_t last_found = T0;
    for (now = T0; now < T0 + SESSION_ABSOLUTE_MS + 10000; now += 2000) {
        if (find(&t, id, now) == NULL)
            break;
        last_found = now;
    }
    CU_ASSERT_EQUAL(now, T0 + SESSION_ABSOLUTE_MS);
    CU_ASSERT(last_found < T0 + SESSION_ABSOLUTE_MS);
    CU_ASSERT(last_found >= T0 + SESSION_ABSOLUTE_MS - 2000);
    CU_ASSERT_EQUAL(session_count(&t), 0);
}

static void test_session_clock_going_back_is_no_fresh_start(void)
{
    static struct session_table t;
    char id[SESSION_TEXT_BYTES];
    struct session *s = open_fresh(&t, id);
    CU_ASSERT_PTR_EQUAL(find(&t, id, T0 - 60000), s);
    CU_ASSERT_EQUAL(s->used_ms, T0);
    CU_ASSERT_PTR_NULL(find(&t, id, T0 + SESSION_IDLE_MS));
}

static void test_session_end_forgets(void)
{
    static struct session_table t;
    session_table_init(&t);
    struct session *a = open_one(&t, "mon1", T0);
    struct session *b = open_one(&t, "mon2", T0);
    char ida[SESSION_TEXT_BYTES];
    snprintf(ida, sizeof(ida), "%s", a->id);
    CU_ASSERT_PTR_NOT_EQUAL(a, b);
    CU_ASSERT_STRING_NOT_EQUAL(a->id, b->id);
    session_end(&t, a);
    CU_ASSERT_PTR_NULL(find(&t, ida, T0 + 1));
    CU_ASSERT_PTR_EQUAL(find(&t, b->id, T0 + 1), b);
    CU_ASSERT_EQUAL(session_count(&t), 1);
}

static void test_session_full_table_evicts_least_recently_used(void)
{
    static struct session_table t;
    static char ids[SESSION_SLOTS][SESSION_TEXT_BYTES];
    session_table_init(&t);
    for (size_t i = 0; i < SESSION_SLOTS; i++) {
        struct session *s = open_one(&t, "mon", T0 + i);
        snprintf(ids[i], sizeof(ids[i]), "%s", s->id);
    }
    CU_ASSERT_EQUAL(session_count(&t), SESSION_SLOTS);
    /* The oldest is used again: the second oldest is now the least recently used. */
    CU_ASSERT_PTR_NOT_NULL(find(&t, ids[0], T0 + SESSION_SLOTS));
    struct session *n = open_one(&t, "late", T0 + SESSION_SLOTS + 1);
    CU_ASSERT_EQUAL(t.evicted, 1);
    CU_ASSERT_EQUAL(session_count(&t), SESSION_SLOTS);
    CU_ASSERT_PTR_NOT_NULL(find(&t, ids[0], T0 + SESSION_SLOTS + 2));
    CU_ASSERT_PTR_NULL(find(&t, ids[1], T0 + SESSION_SLOTS + 2));
    CU_ASSERT_PTR_NOT_NULL(find(&t, ids[2], T0 + SESSION_SLOTS + 2));
    CU_ASSERT_PTR_EQUAL(find(&t, n->id, T0 + SESSION_SLOTS + 2), n);
    /* An expired slot is reused before anything live is evicted. */
    session_table_init(&t);
    struct session *old = open_one(&t, "old", T0);
    for (size_t i = 1; i < SESSION_SLOTS; i++)
        open_one(&t, "mon", T0 + SESSION_IDLE_MS - 1);
    struct session *fresh = open_one(&t, "fresh", T0 + SESSION_IDLE_MS + 1);
    CU_ASSERT_PTR_EQUAL(fresh, old);
    CU_ASSERT_EQUAL(t.evicted, 0);
    CU_ASSERT_EQUAL(t.expired, 1);
}

static void test_session_text_equal(void)
{
    CU_ASSERT(session_text_equal("abc", 3, "abc", 3));
    CU_ASSERT(!session_text_equal("abc", 3, "abd", 3));
    CU_ASSERT(!session_text_equal("abc", 3, "abcd", 4));
    CU_ASSERT(!session_text_equal("", 0, "a", 1));
    CU_ASSERT(session_text_equal("", 0, "", 0));
}

int main(void)
{
    static const struct unit_test tests[] = {
        {"test_session_ids_are_the_random_bytes_in_hex", test_session_ids_are_the_random_bytes_in_hex},
        {"test_session_found_only_by_its_exact_id", test_session_found_only_by_its_exact_id},
        {"test_session_idle_expiry", test_session_idle_expiry},
        {"test_session_absolute_expiry", test_session_absolute_expiry},
        {"test_session_clock_going_back_is_no_fresh_start", test_session_clock_going_back_is_no_fresh_start},
        {"test_session_end_forgets", test_session_end_forgets},
        {"test_session_full_table_evicts_least_recently_used", test_session_full_table_evicts_least_recently_used},
        {"test_session_text_equal", test_session_text_equal},
        {NULL, NULL},
    };
    return unit_run("session", tests);
}
