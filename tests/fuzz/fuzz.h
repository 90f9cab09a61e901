/*
 * fuzz.h: what the libFuzzer harnesses of tests/fuzz/ share.
 *
 * Each harness (fuzz_<target>.c) defines LLVMFuzzerTestOneInput and checks
 * properties with FUZZ_CHECK, which aborts with a message: libFuzzer then
 * saves the input as a crash, like a sanitizer report.  assert() is not used
 * for this because a RelWithDebInfo build keeps asserts but a packager's
 * -DNDEBUG would silently turn the oracle off.
 */
#ifndef TS_FUZZ_H
#define TS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: property broken: %s\n", __FILE__, __LINE__, #cond);    \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/*
 * The merge harness's input: entries, each as a 2-byte big-endian length and
 * the entry's bytes, then the bytes that choose the orders (fuzz_merge.c).
 */
#define FUZZ_MERGE_ENTRIES_MAX 48
#define FUZZ_MERGE_LEN_BYTES 2

#endif
