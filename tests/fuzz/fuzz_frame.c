/*
 * fuzz_frame.c: libFuzzer harness of the frame decoder (codec_frame_decode),
 * which reads every byte a peer sends after the 4-byte length prefix.
 *
 * Properties, for every input: no memory error (ASan, UBSan); a refused
 * input leaves the frame zeroed and says why; an accepted one means what its
 * bytes say:
 *   - it encodes again (codec_frame_encode checks by the decoder's rules, so
 *     whatever decodes must be sendable), and that encoding is a fixed
 *     point: decoded and encoded once more it gives the same bytes (frames,
 *     unlike entries, may arrive in another spelling, e.g. a padded varint,
 *     so the input itself need not come back);
 *   - each entry of a decoded batch (holes aside) either decodes to entry
 *     first_seq + i of the batch's origin and lane and re-encodes to the
 *     bytes carried, or is refused for its form alone, which the receiver's
 *     store checks (codec.c): every other rule is the frame decoder's.
 */
#include <string.h>

#include "../../proto/codec.h"
#include "fuzz.h"

static bool zeroed(const struct frame *f)
{
    static const struct frame zero;
    return memcmp(f, &zero, sizeof(zero)) == 0;
}

static void check_batch_entries(const struct batch *b)
{
    for (size_t i = 0; i < b->count; i++) {
        if (b->entry_lens[i] == BATCH_HOLE_LEN)
            continue;
        struct entry e;
        struct ts_error err = {0, ""};
        int rc = codec_entry_decode(b->entries[i], b->entry_lens[i], &e, &err);
        if (rc == TS_ERR_CORRUPT && strstr(err.msg, "not in canonical form") != NULL)
            continue;
        if (rc != 0)
            fprintf(stderr, "entry %zu of a decoded batch does not decode: %s\n", i, err.msg);
        FUZZ_CHECK(rc == 0);
        FUZZ_CHECK(e.seq == b->first_seq + i);
        FUZZ_CHECK(e.lane == b->lane);
        FUZZ_CHECK(strcmp(e.origin, b->origin) == 0);
        uint8_t *enc = NULL;
        size_t enc_len = 0;
        FUZZ_CHECK(codec_entry_encode(&e, &enc, &enc_len, NULL) == 0);
        FUZZ_CHECK(enc_len == b->entry_lens[i]);
        FUZZ_CHECK(memcmp(enc, b->entries[i], enc_len) == 0);
        free(enc);
        entry_release(&e);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The length prefix reads back what was written. */
    if (size >= 4) {
        uint8_t prefix[4];
        uint32_t len = codec_frame_len_read(data);
        codec_frame_len_write(prefix, len);
        FUZZ_CHECK(memcmp(prefix, data, 4) == 0);
    }

    struct frame f;
    struct ts_error err = {0, ""};
    if (codec_frame_decode(data, size, &f, &err) != 0) {
        FUZZ_CHECK(zeroed(&f));
        FUZZ_CHECK(err.msg[0] != '\0');
        return 0;
    }
    if (f.type == FRAME_BATCH)
        check_batch_entries(&f.batch);

    uint8_t *once = NULL, *twice = NULL;
    size_t once_len = 0, twice_len = 0;
    int rc = codec_frame_encode(&f, &once, &once_len, &err);
    if (rc != 0)
        fprintf(stderr, "a decoded frame does not encode: %s\n", err.msg);
    FUZZ_CHECK(rc == 0);
    struct frame g;
    rc = codec_frame_decode(once, once_len, &g, &err);
    if (rc != 0)
        fprintf(stderr, "a re-encoded frame does not decode: %s\n", err.msg);
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(g.type == f.type);
    FUZZ_CHECK(codec_frame_encode(&g, &twice, &twice_len, NULL) == 0);
    FUZZ_CHECK(twice_len == once_len);
    FUZZ_CHECK(memcmp(twice, once, once_len) == 0);
    free(once);
    free(twice);
    codec_frame_release(&g);
    codec_frame_release(&f);
    return 0;
}
