/*
 * fuzz_entry.c: libFuzzer harness of the entry decoder (codec_entry_decode).
 *
 * Properties, for every input: the decoder returns without a memory error
 * (ASan, UBSan), and an input it accepts is the one canonical form of what
 * it decoded to: encoding the entry again gives exactly the input bytes
 * (codec.h: one entry has one byte form, which the chain hash relies on).  A
 * refused input leaves the entry zeroed.
 */
#include <string.h>

#include "../../proto/codec.h"
#include "fuzz.h"

static bool zeroed(const struct entry *e)
{
    static const struct entry zero;
    return memcmp(e, &zero, sizeof(zero)) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct entry e;
    struct ts_error err = {0, ""};
    if (codec_entry_decode(data, size, &e, &err) != 0) {
        FUZZ_CHECK(zeroed(&e));
        FUZZ_CHECK(err.msg[0] != '\0');
        return 0;
    }
    FUZZ_CHECK(e.user != NULL);
    FUZZ_CHECK(e.reason != NULL);
    for (size_t i = 0; i < e.writes_count; i++)
        FUZZ_CHECK(e.writes[i].value != NULL);
    uint8_t *again = NULL;
    size_t again_len = 0;
    int rc = codec_entry_encode(&e, &again, &again_len, &err);
    if (rc != 0)
        fprintf(stderr, "a decoded entry does not encode: %s\n", err.msg);
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(again_len == size);
    FUZZ_CHECK(memcmp(again, data, size) == 0);
    free(again);
    entry_release(&e);
    return 0;
}
