/*
 * test_hlc.c: the hybrid logical clock never goes backwards, follows the wall
 * clock when it can, and stays ahead of every timestamp it has observed.
 */
#include "unit.h"

#include "../../node/hlc.h"

#define HOUR_MS (3600ULL * 1000ULL)

static void test_hlc_follows_wall_clock_forward(void)
{
    struct hlc c;
    hlc_init(&c, 0);

    uint64_t t1 = hlc_now(&c, 1000);
    uint64_t t2 = hlc_now(&c, 2000);
    CU_ASSERT_EQUAL(hlc_ms(t1), 1000);
    CU_ASSERT_EQUAL(hlc_ms(t2), 2000);
    CU_ASSERT_EQUAL(t1 & 0xffff, 0);
    CU_ASSERT_EQUAL(t2 & 0xffff, 0);
    CU_ASSERT(t2 > t1);
}

static void test_hlc_monotonic_when_wall_clock_jumps_back(void)
{
    struct hlc c;
    uint64_t wall = 1700000000000ULL;
    hlc_init(&c, 0);

    uint64_t before = hlc_now(&c, wall);
    uint64_t prev = before;
    /* The clock is set back by three hours, then creeps forward again. */
    for (uint64_t step = 0; step < 1000; step++) {
        uint64_t t = hlc_now(&c, wall - 3 * HOUR_MS + step);
        CU_ASSERT(t > prev);
        /* Stays on the last wall time seen; only the logical part moves. */
        CU_ASSERT_EQUAL(hlc_ms(t), wall);
        prev = t;
    }
    /* Once the wall clock passes the old time again, it takes over. */
    uint64_t later = hlc_now(&c, wall + 5);
    CU_ASSERT(later > prev);
    CU_ASSERT_EQUAL(hlc_ms(later), wall + 5);
}

static void test_hlc_logical_counter_increments(void)
{
    struct hlc c;
    hlc_init(&c, 0);

    uint64_t t0 = hlc_now(&c, 5000);
    for (uint64_t i = 1; i <= 10; i++) {
        uint64_t t = hlc_now(&c, 5000);
        CU_ASSERT_EQUAL(t, t0 + i);
        CU_ASSERT_EQUAL(t & 0xffff, i);
        CU_ASSERT_EQUAL(hlc_ms(t), 5000);
    }
}

static void test_hlc_observe_remote_far_ahead(void)
{
    struct hlc c;
    hlc_init(&c, 0);

    uint64_t local = hlc_now(&c, 1000);
    /* A peer whose clock runs a day ahead, already seven events into its ms. */
    uint64_t remote = ((1000 + 24 * HOUR_MS) << HLC_LOGICAL_BITS) | 7;
    hlc_observe(&c, remote);
    uint64_t t = hlc_now(&c, 1001);
    CU_ASSERT(t > remote);
    CU_ASSERT(t > local);
    CU_ASSERT_EQUAL(hlc_ms(t), 1000 + 24 * HOUR_MS);
    CU_ASSERT_EQUAL(t, remote + 1);

    /* Observing something older changes nothing. */
    hlc_observe(&c, local);
    CU_ASSERT_EQUAL(hlc_now(&c, 1002), remote + 2);
}

static void test_hlc_init_resumes_after_last(void)
{
    struct hlc c;
    uint64_t last = (uint64_t)9000 << HLC_LOGICAL_BITS | 3;
    hlc_init(&c, last);
    /* A restart with the wall clock behind the persisted last value. */
    CU_ASSERT_EQUAL(hlc_now(&c, 10), last + 1);
}

/* A clock at the top of its range stays there: it never wraps to 0, which
 * would sort every later write before every earlier one. */
static void test_hlc_saturates_never_wraps(void)
{
    struct hlc c;
    hlc_init(&c, UINT64_MAX - 1);
    CU_ASSERT_EQUAL(hlc_now(&c, 1700000000000ULL), UINT64_MAX);
    CU_ASSERT_EQUAL(hlc_now(&c, 1700000000000ULL), UINT64_MAX);
    hlc_init(&c, 0);
    /* A wall clock past the representable range pins the top too. */
    CU_ASSERT_EQUAL(hlc_now(&c, UINT64_MAX), UINT64_MAX);
    CU_ASSERT_EQUAL(hlc_now(&c, 5), UINT64_MAX);
    hlc_init(&c, 0);
    hlc_observe(&c, UINT64_MAX);
    CU_ASSERT_EQUAL(hlc_now(&c, 5), UINT64_MAX);
}

static void test_hlc_ms(void)
{
    CU_ASSERT_EQUAL(hlc_ms(0), 0);
    CU_ASSERT_EQUAL(hlc_ms(((uint64_t)1234 << HLC_LOGICAL_BITS) | 0xffff), 1234);
    CU_ASSERT_EQUAL(hlc_ms((uint64_t)1700000000000ULL << HLC_LOGICAL_BITS), 1700000000000ULL);
}

int main(void)
{
    static const struct unit_test tests[] = {
        { "test_hlc_follows_wall_clock_forward", test_hlc_follows_wall_clock_forward },
        { "test_hlc_monotonic_when_wall_clock_jumps_back", test_hlc_monotonic_when_wall_clock_jumps_back },
        { "test_hlc_logical_counter_increments", test_hlc_logical_counter_increments },
        { "test_hlc_observe_remote_far_ahead", test_hlc_observe_remote_far_ahead },
        { "test_hlc_init_resumes_after_last", test_hlc_init_resumes_after_last },
        { "test_hlc_ms", test_hlc_ms },
        { "test_hlc_saturates_never_wraps", test_hlc_saturates_never_wraps },
        { NULL, NULL },
    };
    return unit_run("hlc", tests);
}
