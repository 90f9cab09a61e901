/*
 * merge.h: conflict-free merge of field writes (pure, no I/O).
 *
 * Each field of each record is a multi-value register.  A write names the
 * earlier writes it supersedes (the live writes its writer saw).  The state of
 * a field after any set of writes is:
 *     dead = union of the supersedes lists of every write applied
 *     live = writes applied that are not in dead
 * which does not depend on the order of application, nor on duplicates.  The
 * value shown to a person follows the field's policy (DOMAIN.md); live writes
 * that disagree are a conflict, except where the policy is a rule a person
 * need not judge (merge_conflict): append-only fields, whose live writes are
 * all shown in (hlc, origin) order, query state and round, and the steps of a
 * workflow before a final state.
 *
 * Encoding is canonical: live sorted by (hlc, origin, lane, seq), dead sorted
 * by (origin, lane, seq), so equal states encode to equal bytes.
 */
#ifndef TS_MERGE_H
#define TS_MERGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../proto/entry.h"
#include "../proto/errors.h"
#include "schema.h"


/*
 * Bounds on one field's state, checked before anything is allocated
 * (merge_field_apply and merge_field_decode refuse more).  Live writes of a
 * clinical field are concurrent disagreements nobody resolved, a handful at
 * most; the exception is an append-only field (query messages), whose every
 * message stays live, and a query thread of a thousand messages is already
 * far past what a person reads.  Dead writes are the field's corrections: a
 * value changed eight thousand times is a bug, not data.
 */
#define MERGE_LIVE_MAX 1024
#define MERGE_DEAD_MAX 8192
/* First byte of merge_field_encode's output. */
#define MERGE_ENCODING_VERSION 1

struct live_write {
    struct entry_ref ref;
    uint64_t hlc;
    uint32_t round;  /* query round of the entry that wrote it (query state), else 0 */
    char *value;     /* owned */
};

struct field_state {
    struct live_write *live;   /* owned, canonical order */
    size_t live_count;
    struct entry_ref *dead;    /* owned, canonical order */
    size_t dead_count;
};

/* One incoming write, as the store extracts it from an entry. */
struct merge_write {
    struct entry_ref ref;
    uint64_t hlc;
    uint32_t round;
    const char *value;
    const struct entry_ref *supersedes;
    size_t supersedes_count;
};

void field_state_release(struct field_state *s);

/*
 * The query round an entry's writes carry (merge_write.round): the "round"
 * the entry itself writes, for query records.  A query entry that writes no
 * valid round is taken as round 1, as validate.c takes a new query; the node
 * must write the round with every later-round state change, since the round
 * a writer saw is not otherwise in the entry.  0 for other types.
 */
uint32_t merge_entry_round(const struct entry *e);

/*
 * The merge write of w, one of e's writes, with round from
 * merge_entry_round(e).  Borrows from e: valid while e is.  The store builds
 * (and rebuilds) every field state through it, and so does the merge fuzzer.
 */
void merge_write_of(const struct entry *e, const struct field_write *w, uint32_t round,
                    struct merge_write *mw);

enum merge_policy merge_policy_of(const char *type, const char *field);

/*
 * Applies w to s.  Returns 1 when s changed, 0 when w was already held (or
 * already superseded and brought nothing new), or a negative ts_err:
 * TS_ERR_INVALID (empty or unterminated origin, lane out of range, NULL
 * value), TS_ERR_TOOBIG (value above TS_VALUE_BYTES_MAX, more than
 * TS_SUPERSEDES_MAX supersedes, or the state would pass MERGE_LIVE_MAX /
 * MERGE_DEAD_MAX), TS_ERR_FORK (a live write with the same ref but another
 * hlc, round or value), TS_ERR_NOMEM.  On error s is unchanged.  w is
 * borrowed; the value is copied.
 */
int merge_field_apply(struct field_state *s, const struct merge_write *w);

/*
 * Index in s->live of the write shown for this field under its policy, or -1
 * when s has no live write.  For append-only fields, whose live writes are
 * all shown, it is the newest one.
 */
int merge_display(const char *type, const char *field, const struct field_state *s);

/*
 * True when the field's live writes disagree in a way a person must resolve:
 * never for writes that hold one value, for query messages, state or round
 * (their merge is a rule); for a status, only when the shown state is final
 * and another live write differs from it; for every other field, when any two
 * live values differ.
 */
bool merge_conflict(const char *type, const char *field, const struct field_state *s);

/*
 * True when ref (an entry) wrote a live state of the workflow field whose
 * state is s, and that state lost to a different, final state shown instead
 * (merge_conflict holds).  The other fields that entry wrote are stale: they
 * were written by someone who had not seen the final state.
 */
bool merge_write_lost(const char *type, const char *field, const struct field_state *s,
                      const struct entry_ref *ref);

/*
 * Workflow rank of a status value (higher wins), or -1 when the value is not
 * a status of that record type.  For query state the round is not included.
 */
int merge_rank(const char *type, const char *field, const char *value);

/* Canonical bytes of s, malloc'ed (the caller frees *out); 0 or TS_ERR_NOMEM. */
int merge_field_encode(const struct field_state *s, uint8_t **out, size_t *out_len);
/* Decodes bytes written by merge_field_encode; TS_ERR_CORRUPT on anything else.
 * s is output only: filled on success, left empty (zeroed) on error. */
int merge_field_decode(const uint8_t *buf, size_t len, struct field_state *s);

#endif
