/*
 * lock.h: record locks (freeze) and the quarantine of unseen edits (pure).
 *
 * A data manager at a hub locks records of one subject (a visit, an AE, the
 * subject record, or "*": the subject and everything under it) and unlocks
 * them.  Each lock or unlock is one entry of the subject's `lock` record
 * (key <subject>-LOCK, schema.h) writing three fields:
 *   epoch    1, 2, 3, ...: one per lock or unlock of the subject;
 *   targets  the whole set of records locked from this epoch on ("" none);
 *   seen     the version vector the locking hub held when it locked,
 *            "origin:lane:seq,..." (only origins that may write the
 *            subject's records: its site and the hubs).
 * Every version stays in the record's history, so each node reads the same
 * map epoch -> (targets, seen) from the same entries.
 *
 * Every entry that writes a subject, visit or AE carries the lock epoch its
 * writer's node held for the subject (entry.lock_epoch, 0 for none).  From
 * that, every node decides alike, whatever order entries arrive in:
 *   - admission (validate_entry, every hop): an entry claiming epoch e whose
 *     targets cover its record is refused (rule `lock`): its writer saw the
 *     lock; an epoch not held yet holds the entry back until it is;
 *   - quarantine (read time): an entry W on record R is quarantined when a
 *     lock version of epoch k > W.lock_epoch covers R and does not hold W
 *     in its seen vector: W was made without seeing a lock that froze R.
 *     Its values are not displayed; it stays in the log and the history.
 * Nothing here does I/O; lockview.h reads lock versions from the store.
 */
#ifndef TS_LOCK_H
#define TS_LOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../proto/entry.h"

/* Records one lock version names: a subject's visits and AEs a person locks
 * one by one, or "*" for all of them; 64 is past any visit schedule. */
#define LOCK_TARGETS_MAX 64
/* Bytes of a targets or seen value: the schema's value bound. */
#define LOCK_TEXT_BYTES_MAX TS_VALUE_BYTES_MAX
/* Chains in a seen vector: the subject's site and up to 19 hubs, two lanes
 * each; bounded so the vector fits one field value. */
#define LOCK_SEEN_MAX 40
/* Lock versions of one subject read at once: a lock and an unlock a day for
 * half a year.  Beyond it the oldest are not read and a node refuses to
 * lock the subject again (lockview.c). */
#define LOCK_VERSIONS_MAX 256

_Static_assert(LOCK_SEEN_MAX * (TS_ID_BYTES_MAX + 26) <= LOCK_TEXT_BYTES_MAX,
               "a full seen vector fits one field value");

/* One lock version: what one lock entry wrote, and who wrote it when. */
struct lock_version {
    uint64_t epoch;
    char targets[LOCK_TEXT_BYTES_MAX + 1];
    struct vv_item seen[LOCK_SEEN_MAX];
    size_t seen_count;
    struct entry_ref ref;                  /* the lock entry */
    char user[TS_USER_BYTES_MAX + 1];
    uint64_t wall_ms;
    char reason[TS_REASON_BYTES_MAX + 1];
};

/* The lock versions of one subject, in no particular order. */
struct lock_set {
    struct lock_version *v;   /* owned */
    size_t count;
};

void lock_set_release(struct lock_set *s);

/* True for the record types a lock freezes: subject, visit, ae. */
bool lock_type_lockable(const char *type);

/*
 * The subject a subject, visit or AE key belongs to ("101-0003" for
 * "101-0003/V3" and "101-0003-AE-001"); false for other types or bad keys.
 */
bool lock_subject_of(const char *type, const char *id, char subject[TS_ID_BYTES_MAX + 1]);

/* The lock record's id of subject: "<subject>-LOCK"; false when too long. */
bool lock_record_id(const char *subject, char out[TS_ID_BYTES_MAX + 1]);

/*
 * True when targets is a valid targets value of lock record lock_id: "" or
 * a comma list of at most LOCK_TARGETS_MAX items, each "*" or
 * subject/<subject>, visit/<visit of subject>, ae/<AE of subject>.
 */
bool lock_targets_ok(const char *lock_id, const char *targets);

/*
 * The targets after locking (add) or unlocking target ("*" or type/id) in
 * cur, into out.  Unlocking "*" unlocks everything.  0; TS_ERR_EXISTS when
 * add finds target covered already; TS_ERR_NOTFOUND when an unlock finds it
 * not in cur; TS_ERR_TOOBIG past LOCK_TARGETS_MAX or cap.
 */
int lock_targets_edit(const char *cur, const char *target, bool add, char *out, size_t cap);

/* True when targets ("*" or a list as above) covers record type/id. */
bool lock_covers(const char *targets, const char *type, const char *id);

/*
 * Parses a seen value "origin:lane:seq,..." into items (at most cap).
 * Returns the count, or -1 when s is not such a list.
 */
int lock_seen_parse(const char *s, struct vv_item *items, size_t cap);

/* True when the chain item (origin, lane) of seen holds ref's seq. */
bool lock_seen_holds(const struct vv_item *seen, size_t n, const struct entry_ref *ref);

/*
 * Fills v from e, an entry of a lock record; false when e does not write
 * epoch, targets and seen as the schema allows (admission refuses those).
 */
bool lock_version_of(const struct entry *e, struct lock_version *v);

/* The highest epoch of s, 0 when s is empty. */
uint64_t lock_set_epoch(const struct lock_set *s);

/*
 * The version of epoch that covers type/id (the first, when two hubs wrote
 * the same epoch), or NULL.
 */
const struct lock_version *lock_set_covering(const struct lock_set *s, uint64_t epoch,
                                             const char *type, const char *id);

/*
 * The quarantine predicate: the lock version that quarantines e (an entry
 * of a subject, visit or AE of s's subject), or NULL when e is displayed.
 * A function of the set s and of e alone, so it does not depend on the
 * order either arrived in.
 */
const struct lock_version *lock_quarantines(const struct lock_set *s, const struct entry *e);

#endif
