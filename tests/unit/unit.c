/*
 * unit.c: the shared CUnit runner, seeded random numbers and scratch dirs.
 */
#include "unit.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t seed_value;
static uint64_t rand_state;
static int seed_ready;

uint64_t unit_seed(void)
{
    if (!seed_ready) {
        const char *env = getenv("TS_SEED");
        if (env != NULL && *env != '\0')
            seed_value = strtoull(env, NULL, 10);
        else
            seed_value = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
        if (seed_value == 0)
            seed_value = 1;
        rand_state = seed_value;
        seed_ready = 1;
        printf("seed: %" PRIu64 " (replay with TS_SEED=%" PRIu64 ")\n", seed_value, seed_value);
        fflush(stdout);
    }
    return seed_value;
}

uint64_t unit_rand(void)
{
    unit_seed();
    rand_state ^= rand_state >> 12;
    rand_state ^= rand_state << 25;
    rand_state ^= rand_state >> 27;
    return rand_state * 0x2545F4914F6CDD1DULL;
}

void unit_shuffle(size_t *a, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(unit_rand() % i);
        size_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

const char *unit_tmpdir(const char *tag)
{
    static char path[512];
    static unsigned counter;
    const char *base = getenv("TS_TEST_TMP");
    char cmd[1200];

    if (base == NULL || *base == '\0')
        base = "/tmp";
    snprintf(path, sizeof(path), "%s/unit-%s-%ld-%u", base, tag, (long)getpid(), counter++);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && mkdir -p '%s'", path, path);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot create %s\n", path);
        abort();
    }
    return path;
}

int unit_run(const char *suite_name, const struct unit_test *tests)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite suite = CU_add_suite(suite_name, NULL, NULL);
    if (suite == NULL)
        return 2;
    for (const struct unit_test *t = tests; t->name != NULL; t++) {
        if (CU_add_test(suite, t->name, t->fn) == NULL)
            return 2;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    unsigned run = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    if (run == 0)
        return 1;
    return failed == 0 ? 0 : 1;
}
