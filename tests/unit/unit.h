/*
 * unit.h: what every CUnit suite shares: a runner that exits non-zero on any
 * failure, a seeded random generator whose seed is printed (replay a run with
 * TS_SEED=<seed>), and a scratch directory per test.
 */
#ifndef TS_UNIT_H
#define TS_UNIT_H

#include <CUnit/Basic.h>
#include <stddef.h>
#include <stdint.h>

struct unit_test {
    const char *name;
    void (*fn)(void);
};

/* Runs the tests of one suite; returns the process exit status. */
int unit_run(const char *suite, const struct unit_test *tests);

/* The seed of this run: TS_SEED when set, else time-based; printed once. */
uint64_t unit_seed(void);
/* xorshift64* over the seed: deterministic for a given seed. */
uint64_t unit_rand(void);
/* Fisher-Yates over a[0..n) with unit_rand: a random order, replayable by seed. */
void unit_shuffle(size_t *a, size_t n);

/*
 * A fresh empty directory for one test under $TS_TEST_TMP (or /tmp), named
 * after tag; returns a static buffer valid until the next call.
 */
const char *unit_tmpdir(const char *tag);

#endif
