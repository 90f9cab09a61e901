/*
 * test_safety.c: the SAE clock's time parsing (the deadline rests on it).
 */
#include "../../node/safety.h"
#include "unit.h"

static void test_safety_parse_time(void)
{
    CU_ASSERT_EQUAL(safety_parse_time("1970-01-01T00:00:00Z"), 0);  /* the epoch itself */
    CU_ASSERT_EQUAL(safety_parse_time("1970-01-01T00:00:01Z"), 1000);
    CU_ASSERT_EQUAL(safety_parse_time("2026-11-22T09:30:00Z"), 1795339800000ULL);
    CU_ASSERT_EQUAL(safety_parse_time("2026-11-22T09:30:00.250Z"), 1795339800250ULL);
    CU_ASSERT_EQUAL(safety_parse_time("2026-11-22T09:30:00.25Z"), 1795339800250ULL);
    CU_ASSERT_EQUAL(safety_parse_time("2026-11-22T09:30Z"), 1795339800000ULL);
    /* An offset: 11:30 at +02:00 is 09:30 UTC. */
    CU_ASSERT_EQUAL(safety_parse_time("2026-11-22T11:30:00+02:00"), 1795339800000ULL);
    CU_ASSERT_EQUAL(safety_parse_time("2026-11-22T04:30:00-05:00"), 1795339800000ULL);
    /* Not a date-time: no clock can run. */
    CU_ASSERT_EQUAL(safety_parse_time("2026-11-22"), 0);
    CU_ASSERT_EQUAL(safety_parse_time("2026-11-22T9:30Z"), 0);
    CU_ASSERT_EQUAL(safety_parse_time("2026-11-22T09:30:00Zjunk"), 0);
    CU_ASSERT_EQUAL(safety_parse_time("2026-11-22T09:30:00+0200"), 0);
    CU_ASSERT_EQUAL(safety_parse_time(""), 0);
    CU_ASSERT_EQUAL(safety_parse_time(NULL), 0);
    CU_ASSERT_EQUAL(SAFETY_DEADLINE_MS, 86400000ULL);
}

int main(void)
{
    static const struct unit_test tests[] = {
        {"test_safety_parse_time", test_safety_parse_time},
        {NULL, NULL},
    };
    return unit_run("safety", tests);
}
