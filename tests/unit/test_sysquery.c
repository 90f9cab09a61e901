/*
 * test_sysquery.c: system queries derived from a field's state (pure part:
 * sysquery_id, sysquery_open_id).  Randomised: the seed is printed.
 */
#include <stdio.h>
#include <string.h>

#include "../../node/merge.h"
#include "../../node/sysquery.h"
#include "unit.h"

#define WRITES_MAX 6

struct w {
    struct entry_ref ref;
    uint64_t hlc;
    char value[16];
};

/* The state after applying ws in the order perm gives (no write supersedes
 * another: all concurrent). */
static void build(const struct w *ws, const size_t *perm, size_t n, struct field_state *st)
{
    memset(st, 0, sizeof(*st));
    for (size_t i = 0; i < n; i++) {
        const struct w *x = &ws[perm[i]];
        struct merge_write mw = {.ref = x->ref, .hlc = x->hlc, .value = x->value};
        CU_ASSERT(merge_field_apply(st, &mw) >= 0);
    }
}

static void test_sysquery_same_id_in_any_order(void)
{
    unit_seed();
    static const char *const origins[] = {"101", "hub1", "hub2"};
    static const char *const sexes[] = {"F", "M", "U"};
    for (int round = 0; round < 500; round++) {
        size_t n = 2 + (size_t)(unit_rand() % (WRITES_MAX - 1));
        struct w ws[WRITES_MAX];
        size_t perm[WRITES_MAX];
        bool differ = false;
        for (size_t i = 0; i < n; i++) {
            memset(&ws[i], 0, sizeof(ws[i]));
            snprintf(ws[i].ref.origin, sizeof(ws[i].ref.origin), "%s", origins[unit_rand() % 3]);
            ws[i].ref.lane = (uint8_t)(unit_rand() % 2);
            ws[i].ref.seq = 1 + i * 7 + unit_rand() % 5;  /* distinct refs */
            ws[i].hlc = 1000 + unit_rand() % 50;
            snprintf(ws[i].value, sizeof(ws[i].value), "%s", sexes[unit_rand() % 3]);
            differ = differ || strcmp(ws[i].value, ws[0].value) != 0;
            perm[i] = i;
        }
        char first[SYSQUERY_ID_BYTES] = "";
        bool first_open = false;
        for (int order = 0; order < 4; order++) {
            unit_shuffle(perm, n);
            struct field_state st;
            build(ws, perm, n, &st);
            char id[SYSQUERY_ID_BYTES] = "";
            bool open = sysquery_open_id("subject", "101-0001", "sex", &st, id);
            CU_ASSERT_EQUAL(open, differ);  /* a query exactly when the values differ */
            if (order == 0) {
                first_open = open;
                memcpy(first, id, sizeof(first));
            } else {
                CU_ASSERT_EQUAL(open, first_open);
                CU_ASSERT_STRING_EQUAL(id, first);
            }
            field_state_release(&st);
        }
        if (first_open)
            CU_ASSERT_EQUAL(strlen(first), SYSQUERY_ID_BYTES - 1);
    }
}

static void test_sysquery_none_for_rules_or_non_site_records(void)
{
    struct w ws[2] = {
        {.ref = {.origin = "101", .lane = 1, .seq = 4}, .hlc = 10, .value = "answered"},
        {.ref = {.origin = "hub1", .lane = 1, .seq = 9}, .hlc = 11, .value = "cancelled"},
    };
    size_t perm[2] = {0, 1};
    struct field_state st;
    build(ws, perm, 2, &st);
    char id[SYSQUERY_ID_BYTES];
    CU_ASSERT_FALSE(sysquery_open_id("query", "Q-hub1-1", "state", &st, id));
    /* A trial-wide record (an account) is no site record: no query about it. */
    CU_ASSERT_FALSE(sysquery_open_id("user", "ana", "name", &st, id));
    CU_ASSERT_TRUE(sysquery_open_id("subject", "101-0001", "sex", &st, id));
    field_state_release(&st);
}

static void test_sysquery_id_depends_on_every_part(void)
{
    struct entry_ref a = {.origin = "101", .lane = 1, .seq = 3};
    struct entry_ref b = {.origin = "101", .lane = 1, .seq = 4};
    char x[SYSQUERY_ID_BYTES], y[SYSQUERY_ID_BYTES];
    sysquery_id("subject", "101-0001", "sex", &a, x);
    CU_ASSERT_EQUAL(strncmp(x, "SYS-", 4), 0);
    sysquery_id("subject", "101-0001", "sex", &b, y);
    CU_ASSERT_STRING_NOT_EQUAL(x, y);
    sysquery_id("subject", "101-0001", "armcd", &a, y);
    CU_ASSERT_STRING_NOT_EQUAL(x, y);
    sysquery_id("subject", "101-0002", "sex", &a, y);
    CU_ASSERT_STRING_NOT_EQUAL(x, y);
    sysquery_id("subject", "101-0001", "sex", &a, y);
    CU_ASSERT_STRING_EQUAL(x, y);
}

int main(void)
{
    static const struct unit_test tests[] = {
        {"test_sysquery_same_id_in_any_order", test_sysquery_same_id_in_any_order},
        {"test_sysquery_none_for_rules_or_non_site_records", test_sysquery_none_for_rules_or_non_site_records},
        {"test_sysquery_id_depends_on_every_part", test_sysquery_id_depends_on_every_part},
        {NULL, NULL},
    };
    return unit_run("sysquery", tests);
}
