/*
 * entry.h: the plain C form of oplog entries, batches and frames.
 *
 * These structs are what the rest of trialsync sees; only proto/codec.c
 * converts them to and from protobuf bytes.  Identifiers are fixed-size,
 * NUL-terminated arrays (bounded by limits.h), free text is heap-allocated.
 */
#ifndef TS_ENTRY_H
#define TS_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limits.h"

enum lane {
    LANE_SAFETY = 0,  /* serious adverse events and anything urgent: sent first */
    LANE_BULK = 1,
    LANE_COUNT = 2,
};

/* One write, named by the entry that made it. */
struct entry_ref {
    char origin[TS_ID_BYTES_MAX + 1];
    uint8_t lane;
    uint64_t seq;
};

struct field_write {
    char field[TS_FIELD_BYTES_MAX + 1];
    char *value;                     /* owned; NUL-terminated */
    struct entry_ref *supersedes;    /* owned array */
    size_t supersedes_count;
};

struct entry {
    char origin[TS_ID_BYTES_MAX + 1];
    uint8_t lane;
    uint64_t seq;
    uint64_t hlc;
    uint64_t wall_ms;
    char *user;                      /* owned; "" when absent */
    char *reason;                    /* owned; "" when absent */
    char record_type[TS_TYPE_BYTES_MAX + 1];
    char record_id[TS_ID_BYTES_MAX + 1];
    char site[TS_ID_BYTES_MAX + 1];  /* "" for trial-wide entries */
    struct field_write *writes;      /* owned array */
    size_t writes_count;
    uint8_t prev_hash[TS_HASH_BYTES];
    /* The lock epoch of the record's subject held by the writer's node when
     * it made the entry (node/lock.h); 0 when it held none.  0 is not
     * encoded, so entries made before locks existed keep their bytes. */
    uint64_t lock_epoch;
};

/* Frees everything an entry owns (not the struct itself); safe on a zeroed entry. */
void entry_release(struct entry *e);

/* Compares two refs: origin, then lane, then seq. */
int entry_ref_cmp(const struct entry_ref *a, const struct entry_ref *b);

/* One version-vector item: the highest seq held of one (origin, lane). */
struct vv_item {
    char origin[TS_ID_BYTES_MAX + 1];
    uint8_t lane;
    uint64_t seq;
};

/*
 * A batch as it travels: consecutive entries of one (origin, lane), the chain
 * hash after the last one and the origin's signature over the batch header.
 * The entry bytes point into a buffer the batch owns when it was decoded.
 */
struct batch {
    char trial[TS_ID_BYTES_MAX + 1];
    char origin[TS_ID_BYTES_MAX + 1];
    uint8_t lane;
    uint64_t first_seq;
    const uint8_t **entries;   /* entries[i] is entry first_seq + i, encoded */
    size_t *entry_lens;
    size_t count;
    uint8_t chain_hash[TS_HASH_BYTES];
    uint8_t signature[TS_SIG_BYTES_MAX];
    size_t signature_len;
    /*
     * The origin's certificate (PEM), so a receiver that has not met the
     * origin can check the signature; NULL/0 when the receiver has it.
     */
    const char *origin_cert;
    size_t origin_cert_len;
    /*
     * The serial (uppercase hex, no leading zero bytes) of the origin's
     * certificate whose key made signature; part of the signed bytes.
     */
    char cert_serial[TS_SERIAL_BYTES_MAX + 1];
    void *owned;               /* codec-private storage; NULL when built by hand */
};

/*
 * A hole: an entry the receiver may not see (the downlink filter: another
 * site's record) travels as the 32-byte chain hash after it.  In a struct
 * batch, entry_lens[i] == 0 marks a hole and entries[i] points to that hash.
 * The chain stays verifiable: the next entry's prev_hash and the signed chain
 * hash commit to it.
 */
#define BATCH_HOLE_LEN 0

enum frame_type {
    FRAME_HELLO = 1,
    FRAME_BATCH = 2,
    FRAME_ACK = 3,
    FRAME_REFUSAL = 4,
};

struct frame {
    enum frame_type type;
    /* FRAME_HELLO */
    char trial[TS_ID_BYTES_MAX + 1];
    char node_id[TS_ID_BYTES_MAX + 1];
    uint32_t protocol_version;      /* the highest version the sender speaks */
    uint32_t protocol_version_min;  /* the lowest (decoded: = protocol_version when absent) */
    uint64_t wall_ms;            /* the sender's wall clock; 0 when it did not say */
    /* FRAME_HELLO and FRAME_ACK: owned array; FRAME_REFUSAL: the one chain
     * refused (vector_count 1), or none when the whole link is refused */
    struct vv_item *vector;
    size_t vector_count;
    /* FRAME_BATCH */
    struct batch batch;
    /* FRAME_REFUSAL: owned */
    char *reason;
    /* FRAME_REFUSAL of one chain: 0 refused on this link; above 0 only held,
     * offered again from vector[0].seq after this many milliseconds */
    uint32_t retry_after_ms;
};

#endif
