/*
 * test_fuzz.c: seeded mutation fuzzing of what reads untrusted bytes: the
 * frame and entry decoders and the merge state decoder, and of merge_apply.
 *
 * Valid inputs are built, then mutated (bit flips, byte sets, inserts,
 * deletions, truncation, duplication of a slice) TS_FUZZ_ITERS times each
 * (default 20000, at least FUZZ_ITERS_MIN); every result must be refused
 * cleanly or decode to something that re-encodes to the same bytes (a
 * batch's entries too, see frame_decoded_matches).  Each campaign counts the
 * mutated inputs that decoded and fails when none did: a decoder that refused
 * everything would otherwise pass.  Run under ASan and UBSan in `make test`,
 * so a memory error anywhere is a failure.  The seed is printed; TS_SEED
 * replays a run.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../node/merge.h"
#include "../../proto/codec.h"
#include "unit.h"

/*
 * About one mutated input in twenty still decodes, so a campaign of this many
 * (half of it for frames and field states) finds some valid ones whatever
 * the seed (0.95^500 < 1e-11): a smaller TS_FUZZ_ITERS is raised to it.
 */
#define FUZZ_ITERS_MIN 1000

static size_t iterations(void)
{
    const char *env = getenv("TS_FUZZ_ITERS");
    long v = env != NULL ? strtol(env, NULL, 10) : 0;
    if (v <= 0)
        return 20000;
    return v < FUZZ_ITERS_MIN ? FUZZ_ITERS_MIN : (size_t)v;
}

/* Mutates buf (len bytes, capacity cap) in place; returns the new length. */
static size_t mutate(uint8_t *buf, size_t len, size_t cap)
{
    int rounds = 1 + (int)(unit_rand() % 4);
    for (int r = 0; r < rounds; r++) {
        uint64_t k = unit_rand();
        size_t at = len > 0 ? (size_t)(unit_rand() % len) : 0;
        switch (k % 6) {
        case 0: if (len > 0) buf[at] ^= (uint8_t)(1u << (k >> 8) % 8); break;
        case 1: if (len > 0) buf[at] = (uint8_t)(k >> 16); break;
        case 2:  /* insert a byte */
            if (len < cap) {
                memmove(buf + at + 1, buf + at, len - at);
                buf[at] = (uint8_t)(k >> 24);
                len++;
            }
            break;
        case 3:  /* delete a run */
            if (len > 0) {
                size_t n = 1 + (size_t)((k >> 8) % 8);
                if (n > len - at)
                    n = len - at;
                memmove(buf + at, buf + at + n, len - at - n);
                len -= n;
            }
            break;
        case 4: len = at; break;  /* truncate */
        case 5: {                 /* duplicate a slice */
            size_t n = 1 + (size_t)((k >> 8) % 16);
            if (n > len - at)
                n = len - at;
            if (len + n <= cap) {
                memmove(buf + at + n, buf + at, len - at);
                len += n;
            }
            break;
        }
        }
    }
    return len;
}

static void random_entry(struct entry *e, struct field_write *w, struct entry_ref *refs,
                         char values[][64])
{
    memset(e, 0, sizeof(*e));
    snprintf(e->origin, sizeof(e->origin), "site-%u", (unsigned)(unit_rand() % 50));
    e->lane = (uint8_t)(unit_rand() % LANE_COUNT);
    e->seq = 1 + unit_rand() % 100000;
    e->hlc = unit_rand();
    e->wall_ms = unit_rand() >> 20;
    e->user = (char *)"coordinator";
    e->reason = (char *)(unit_rand() % 2 ? "" : "correction");
    snprintf(e->record_type, sizeof(e->record_type), "subject");
    snprintf(e->record_id, sizeof(e->record_id), "101-%04u", (unsigned)(unit_rand() % 10000));
    snprintf(e->site, sizeof(e->site), "101");
    size_t n = 1 + unit_rand() % 4;
    for (size_t i = 0; i < n; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        snprintf(w[i].field, sizeof(w[i].field), "f%zu", i);
        snprintf(values[i], 64, "value-%llu", (unsigned long long)(unit_rand() % 1000));
        w[i].value = values[i];
        size_t ns = unit_rand() % 3;
        for (size_t j = 0; j < ns; j++) {
            memset(&refs[i * 2 + j], 0, sizeof(refs[0]));
            snprintf(refs[i * 2 + j].origin, sizeof(refs[0].origin), "hub1");
            refs[i * 2 + j].lane = 1;
            refs[i * 2 + j].seq = 1 + unit_rand() % 50;
        }
        w[i].supersedes = ns > 0 ? &refs[i * 2] : NULL;
        w[i].supersedes_count = ns;
    }
    e->writes = w;
    e->writes_count = n;
    for (size_t i = 0; i < TS_HASH_BYTES; i++)
        e->prev_hash[i] = (uint8_t)unit_rand();
}

static void test_fuzz_entry_decode(void)
{
    size_t iters = iterations(), accepted = 0;
    uint8_t *buf = malloc(TS_ENTRY_BYTES_MAX);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    for (size_t it = 0; it < iters; it++) {
        struct entry e, d;
        struct field_write w[4];
        struct entry_ref refs[8];
        char values[4][64];
        uint8_t *enc = NULL;
        size_t len = 0;
        random_entry(&e, w, refs, values);
        CU_ASSERT_FATAL(codec_entry_encode(&e, &enc, &len, NULL) == 0);
        memcpy(buf, enc, len);
        free(enc);
        len = mutate(buf, len, TS_ENTRY_BYTES_MAX);
        if (codec_entry_decode(buf, len, &d, NULL) != 0)
            continue;
        /* Accepted: it must be the one canonical form of what it says. */
        accepted++;
        uint8_t *again = NULL;
        size_t again_len = 0;
        CU_ASSERT_FATAL(codec_entry_encode(&d, &again, &again_len, NULL) == 0);
        CU_ASSERT(again_len == len && memcmp(again, buf, len) == 0);
        free(again);
        entry_release(&d);
    }
    printf(" (%zu mutated entries, %zu still valid) ", iters, accepted);
    /* Proof the decoder still accepts: changed values keep an entry valid. */
    CU_ASSERT(accepted > 0);
    free(buf);
}

/*
 * True when a and b are the same frame field by field (a batch's entries
 * compared as bytes).  Frames, unlike entries, have no canonical-form rule:
 * another spelling of a frame (a padded varint, an explicit 0) decodes too,
 * and must mean what its canonical re-encoding means.
 */
static bool frames_same(const struct frame *a, const struct frame *b)
{
    if (a->type != b->type || strcmp(a->trial, b->trial) != 0 ||
        strcmp(a->node_id, b->node_id) != 0 || a->protocol_version != b->protocol_version ||
        a->vector_count != b->vector_count)
        return false;
    for (size_t i = 0; i < a->vector_count; i++)
        if (strcmp(a->vector[i].origin, b->vector[i].origin) != 0 ||
            a->vector[i].lane != b->vector[i].lane || a->vector[i].seq != b->vector[i].seq)
            return false;
    if ((a->reason == NULL) != (b->reason == NULL) ||
        (a->reason != NULL && strcmp(a->reason, b->reason) != 0))
        return false;
    const struct batch *x = &a->batch, *y = &b->batch;
    if (strcmp(x->trial, y->trial) != 0 || strcmp(x->origin, y->origin) != 0 ||
        x->lane != y->lane || x->first_seq != y->first_seq || x->count != y->count ||
        memcmp(x->chain_hash, y->chain_hash, TS_HASH_BYTES) != 0 ||
        x->signature_len != y->signature_len ||
        memcmp(x->signature, y->signature, x->signature_len) != 0 ||
        x->origin_cert_len != y->origin_cert_len ||
        (x->origin_cert_len > 0 && memcmp(x->origin_cert, y->origin_cert, x->origin_cert_len) != 0))
        return false;
    for (size_t i = 0; i < x->count; i++) {
        size_t n = x->entry_lens[i] == BATCH_HOLE_LEN ? TS_HASH_BYTES : x->entry_lens[i];
        if (x->entry_lens[i] != y->entry_lens[i] || memcmp(x->entries[i], y->entries[i], n) != 0)
            return false;
    }
    return true;
}

/*
 * A frame that decoded from buf (len bytes) must be what buf says: it encodes
 * again to exactly buf, or (buf being another spelling, see frames_same) to
 * bytes that decode to the same frame and encode to themselves.  A batch's
 * entries (holes aside) are only scanned by the frame decoder; their
 * canonical-form check is left to the receiver's store (codec.c,
 * batch_check_entries).  So each entry either decodes, is (origin, lane,
 * first_seq + i) of the batch and re-encodes to the bytes the frame carries,
 * or is refused for its form alone: every other rule must already have been
 * enforced by the frame decoder.  Returns whether all held.
 */
static bool frame_decoded_matches(const struct frame *d, const uint8_t *buf, size_t len,
                                  bool verbose)
{
    bool ok = true;
    uint8_t *again = NULL;
    size_t again_len = 0;
    struct ts_error err = {0, ""};

    if (codec_frame_encode(d, &again, &again_len, &err) != 0) {
        if (verbose)
            fprintf(stderr, "\n  decoded frame does not encode: %s\n", err.msg);
        return false;
    }
    if (again_len != len || memcmp(again, buf, len) != 0) {
        struct frame g;
        uint8_t *third = NULL;
        size_t third_len = 0;
        if (codec_frame_decode(again, again_len, &g, &err) != 0 || !frames_same(d, &g) ||
            codec_frame_encode(&g, &third, &third_len, &err) != 0 || third_len != again_len ||
            memcmp(third, again, again_len) != 0) {
            if (verbose)
                fprintf(stderr, "\n  decoded frame re-encodes to %zu bytes of another frame "
                        "(input %zu)\n", again_len, len);
            ok = false;
        }
        free(third);
        codec_frame_release(&g);
    }
    free(again);
    if (d->type != FRAME_BATCH)
        return ok;
    for (size_t i = 0; i < d->batch.count; i++) {
        struct entry e;
        if (d->batch.entry_lens[i] == BATCH_HOLE_LEN)
            continue;
        int rc = codec_entry_decode(d->batch.entries[i], d->batch.entry_lens[i], &e, &err);
        if (rc == TS_ERR_CORRUPT && strstr(err.msg, "not in canonical form") != NULL)
            continue;
        if (rc != 0) {
            if (verbose)
                fprintf(stderr, "\n  entry %zu of a decoded batch does not decode: %s\n", i,
                        err.msg);
            ok = false;
            continue;
        }
        uint8_t *enc = NULL;
        size_t enc_len = 0;
        if (e.seq != d->batch.first_seq + i || e.lane != d->batch.lane ||
            strcmp(e.origin, d->batch.origin) != 0) {
            if (verbose)
                fprintf(stderr, "\n  entry %zu of a decoded batch is not its (origin, lane, seq)\n",
                        i);
            ok = false;
        }
        if (codec_entry_encode(&e, &enc, &enc_len, &err) != 0 ||
            enc_len != d->batch.entry_lens[i] || memcmp(enc, d->batch.entries[i], enc_len) != 0) {
            if (verbose)
                fprintf(stderr, "\n  entry %zu of a decoded batch re-encodes to other bytes\n", i);
            ok = false;
        }
        free(enc);
        entry_release(&e);
    }
    return ok;
}

static void test_fuzz_frame_decode(void)
{
    size_t iters = iterations() / 2, accepted = 0, mismatched = 0, originals_changed = 0;
    size_t cap = 64 * 1024;
    uint8_t *buf = malloc(cap);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    for (size_t it = 0; it < iters; it++) {
        struct frame f, d;
        uint8_t *ents[3];
        size_t lens[3];
        const uint8_t *ptrs[3];
        memset(&f, 0, sizeof(f));
        f.type = FRAME_BATCH;
        snprintf(f.batch.trial, sizeof(f.batch.trial), "T1");
        uint64_t first = 1 + unit_rand() % 1000;
        size_t n = 1 + unit_rand() % 3;
        for (size_t i = 0; i < n; i++) {
            struct entry e;
            struct field_write w[4];
            struct entry_ref refs[8];
            char values[4][64];
            random_entry(&e, w, refs, values);
            snprintf(e.origin, sizeof(e.origin), "101");
            e.lane = 1;
            e.seq = first + i;
            CU_ASSERT_FATAL(codec_entry_encode(&e, &ents[i], &lens[i], NULL) == 0);
            ptrs[i] = ents[i];
        }
        snprintf(f.batch.origin, sizeof(f.batch.origin), "101");
        f.batch.lane = 1;
        f.batch.first_seq = first;
        f.batch.entries = ptrs;
        f.batch.entry_lens = lens;
        f.batch.count = n;
        f.batch.signature_len = 64;
        if (unit_rand() % 3 == 0) {
            static uint8_t hole[TS_HASH_BYTES];
            ptrs[0] = hole;
            lens[0] = BATCH_HOLE_LEN;
        }
        uint8_t *enc = NULL;
        size_t len = 0;
        CU_ASSERT_FATAL(codec_frame_encode(&f, &enc, &len, NULL) == 0);
        for (size_t i = 0; i < n; i++)
            free(ents[i]);
        /* Unchanged, the frame decodes to exactly what was encoded. */
        CU_ASSERT_FATAL(codec_frame_decode(enc, len, &d, NULL) == 0);
        uint8_t *again = NULL;
        size_t again_len = 0;
        CU_ASSERT_FATAL(codec_frame_encode(&d, &again, &again_len, NULL) == 0);
        if (again_len != len || memcmp(again, enc, len) != 0)
            originals_changed++;
        free(again);
        codec_frame_release(&d);
        if (len > cap)
            len = cap;
        memcpy(buf, enc, len);
        free(enc);
        len = mutate(buf, len, cap);
        if (codec_frame_decode(buf, len, &d, NULL) == 0) {
            accepted++;
            /* The first few are described; all are counted. */
            if (!frame_decoded_matches(&d, buf, len, mismatched < 3)) {
                if (mismatched < 3)
                    fprintf(stderr, "  (mutated frame %zu of this seed)\n", it);
                mismatched++;
            }
            codec_frame_release(&d);
        }
    }
    /* Pure garbage of every small length. */
    for (size_t it = 0; it < iters; it++) {
        size_t len = unit_rand() % 256;
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)unit_rand();
        struct frame d;
        if (codec_frame_decode(buf, len, &d, NULL) == 0)
            codec_frame_release(&d);
    }
    printf(" (%zu mutated frames, %zu still valid, %zu of them not what their bytes say) ",
           iters, accepted, mismatched);
    CU_ASSERT_EQUAL(originals_changed, 0);
    CU_ASSERT_EQUAL(mismatched, 0);
    /* Proof the decoder still accepts: changed entry values keep a batch valid. */
    CU_ASSERT(accepted > 0);
    free(buf);
}

static void test_fuzz_merge(void)
{
    size_t iters = iterations() / 2, accepted = 0;
    for (size_t it = 0; it < iters; it++) {
        struct field_state st;
        memset(&st, 0, sizeof(st));
        size_t n = 1 + unit_rand() % 6;
        for (size_t i = 0; i < n; i++) {
            struct merge_write w;
            struct entry_ref sup[2];
            char value[32];
            memset(&w, 0, sizeof(w));
            snprintf(w.ref.origin, sizeof(w.ref.origin), "n%u", (unsigned)(unit_rand() % 4));
            w.ref.lane = (uint8_t)(unit_rand() % 2);
            w.ref.seq = 1 + unit_rand() % 8;
            w.hlc = unit_rand() % 100;
            snprintf(value, sizeof(value), "%u", (unsigned)(unit_rand() % 5));
            w.value = value;
            size_t ns = unit_rand() % 3;
            for (size_t j = 0; j < ns; j++) {
                memset(&sup[j], 0, sizeof(sup[j]));
                snprintf(sup[j].origin, sizeof(sup[j].origin), "n%u", (unsigned)(unit_rand() % 4));
                sup[j].lane = (uint8_t)(unit_rand() % 2);
                sup[j].seq = 1 + unit_rand() % 8;
            }
            w.supersedes = ns > 0 ? sup : NULL;
            w.supersedes_count = ns;
            /* Applied, already known, or a fork refused: never anything else. */
            int rc = merge_field_apply(&st, &w);
            CU_ASSERT(rc == 0 || rc == 1 || rc == TS_ERR_FORK);
        }
        uint8_t *enc = NULL;
        size_t len = 0;
        CU_ASSERT_FATAL(merge_field_encode(&st, &enc, &len) == 0);
        field_state_release(&st);
        uint8_t *buf = malloc(len + 64);
        CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
        memcpy(buf, enc, len);
        free(enc);
        size_t mlen = mutate(buf, len, len + 64);
        struct field_state d;
        if (merge_field_decode(buf, mlen, &d) == 0) {
            accepted++;
            uint8_t *again = NULL;
            size_t again_len = 0;
            CU_ASSERT_FATAL(merge_field_encode(&d, &again, &again_len) == 0);
            CU_ASSERT(again_len == mlen && memcmp(again, buf, mlen) == 0);
            free(again);
            /* One live write is shown, and only when there is one. */
            int shown = merge_display("subject", "sex", &d);
            CU_ASSERT(d.live_count > 0 ? shown >= 0 && (size_t)shown < d.live_count : shown == -1);
            field_state_release(&d);
        }
        free(buf);
    }
    printf(" (%zu mutated field states, %zu still valid) ", iters, accepted);
    CU_ASSERT(accepted > 0);
}

int main(void)
{
    static const struct unit_test tests[] = {
        {"test_fuzz_entry_decode", test_fuzz_entry_decode},
        {"test_fuzz_frame_decode", test_fuzz_frame_decode},
        {"test_fuzz_merge", test_fuzz_merge},
        {NULL, NULL},
    };
    unit_seed();
    return unit_run("fuzz", tests);
}
