/*
 * sysquery.h: the queries the node raises itself (source "system"), derived
 * from the state every node holds.
 *
 * A clinical value with concurrent different values, and concurrent
 * different final statuses, need a person: the node shows a system query on
 * the field (DOMAIN.md, issue "workflows").  Nothing is written for it, so
 * there is nothing to replicate, nothing to duplicate and nothing a node can
 * get wrong on its own: every node holding the same entries shows the same
 * query with the same id, open while the cause holds.
 *
 * The id is derived from what caused it: the record, the field and the
 * first (origin, lane, seq) of the concurrent writes.  A later write that
 * supersedes those writes (the person's correction, made having seen the
 * conflict) closes it: `get` then shows it closed, by whom and when, read from
 * the record's history.  A later, new disagreement on the same field is
 * another cause, hence another query.
 *
 * Only a site record's field (what a query may target: schema_target_ok)
 * gets one.
 */
#ifndef TS_SYSQUERY_H
#define TS_SYSQUERY_H

#include <jansson.h>

#include "../proto/entry.h"
#include "merge.h"

struct store;

/* "SYS-" + 16 hex digits + NUL. */
#define SYSQUERY_ID_BYTES 21

/*
 * The id of the system query on type/id/field caused by the concurrent
 * writes whose least ref (entry_ref_cmp) is cause.
 */
void sysquery_id(const char *type, const char *id, const char *field,
                 const struct entry_ref *cause, char out[SYSQUERY_ID_BYTES]);

/*
 * The id of the open system query of a field in state st, or false when the
 * field raises none (no conflict under merge_conflict, or not a site
 * record's field).
 */
bool sysquery_open_id(const char *type, const char *id, const char *field,
                      const struct field_state *st, char out[SYSQUERY_ID_BYTES]);

/*
 * Says whether the write of entry ref is out of the displayed record (a
 * quarantined edit, lock.h): such a write takes no part in a conflict.
 */
typedef bool (*sysquery_hidden_fn)(void *ctx, const struct entry_ref *ref);

/*
 * The conflict system queries of the record type/id, open and closed: a JSON
 * array (new reference) of {"id", "source": "system", "target", "field",
 * "state": "open"|"closed", "cause", and for closed ones "closed_by":
 * {"user", "origin", "seq", "time"}}: open ones first, in field order, then
 * closed ones, oldest first.  hidden (may be NULL) leaves writes out, as the
 * displayed record does.  NULL on a store error.
 */
json_t *sysquery_list(struct store *s, const char *type, const char *id,
                      sysquery_hidden_fn hidden, void *hidden_ctx);

#endif
