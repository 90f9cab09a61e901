/*
 * lockview.h: record locks as the store holds them (lock.h's rules, read
 * from the state every node holds).
 *
 * Lock versions are read from the history of the subject's `lock` record;
 * the quarantine of an unseen edit is derived at read time, never stored, so
 * every node that holds the same entries shows the same values, the same
 * quarantined edits and the same system queries.  Only records of a subject
 * that has a lock record pay for it: for every other record a read costs
 * one existence check.
 */
#ifndef TS_LOCKVIEW_H
#define TS_LOCKVIEW_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "../storage/store.h"
#include "lock.h"

/*
 * The lock versions of subject held here into *out (empty when none;
 * lock_set_release it).  Versions a lock entry wrote badly are skipped
 * (admission refuses them).  0, TS_ERR_TOOBIG past LOCK_VERSIONS_MAX, or
 * another store error.
 */
int lockview_load(struct store *s, const char *subject, struct lock_set *out);

/*
 * validate_lookup.lock_targets: the targets of every version of epoch of
 * subject, comma-joined into buf; TS_ERR_NOTFOUND when no version of that
 * epoch is held.
 */
int lockview_epoch_targets(struct store *s, const char *subject, uint64_t epoch, char *buf,
                           size_t cap);

/*
 * A local write to type/id (node.c): *epoch gets the subject's lock epoch
 * held here (0 when none, or when type is not lockable).  0, or TS_ERR_AUTH
 * when that epoch locks the record, with msg ("visit 101-0003/V3 is locked
 * by dm.lee since <time> (lock epoch 3): ...").
 */
int lockview_check_write(struct store *s, const char *type, const char *id, uint64_t *epoch,
                         char *msg, size_t cap);

/*
 * The seen value of a new lock of subject at this hub: this store's version
 * vector restricted to the origins that may write the subject's records (its
 * site, and every origin that is not a member site).  0, or TS_ERR_TOOBIG
 * past LOCK_SEEN_MAX chains.
 */
int lockview_seen(struct store *s, const char *subject, char *out, size_t cap);

/*
 * The fields of record type/id as displayed, each passed to cb like
 * store_record_fields: when entries of the record are quarantined, the
 * states are rebuilt from the record's history without them.  *locked (new
 * reference or NULL) gets {"epoch", "by", "since", "reason", "targets"} when
 * the record is locked now; *quarantined (new reference or NULL) gets one
 * object per quarantined entry: {"entry": "origin/lane/seq", "user", "time",
 * "reason", "fields": {name: value}, "lock_epoch", "resolved", "query":
 * {"id", "source": "system", "state": "open"|"closed"}}.  Returns what
 * store_record_fields returns (TS_ERR_NOTFOUND for no record).
 */
int lockview_record_fields(struct store *s, const char *type, const char *id,
                           store_field_cb cb, void *ctx, json_t **locked, json_t **quarantined);

/* The id of the system query a quarantined entry raises: "SYS-" and the
 * first 16 hex digits of SHA-256("quarantine|<origin>/<lane>/<seq>"). */
void lockview_query_id(const struct entry_ref *ref, char out[TS_ID_BYTES_MAX + 1]);

#endif
