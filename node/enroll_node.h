/*
 * enroll_node.h: a node's ledger of enrollment slots (enroll.h) over its
 * store: what admission asks (enroll_node_view), what an admitted entry
 * changes (enroll_node_note), the site node's own enrollments and its
 * acknowledgements and releases, and the allocating hub's cap and grants.
 *
 * The ledger keeps, per site, what the site's own chain says up to a seq
 * (its watermark): acknowledged, released, the subjects holding a slot.  It
 * is advanced entry by entry as admission passes them, in chain order, so
 * entries of one store_apply call see those before them; whenever the
 * watermark is not the seq just before the entry at hand (a call that
 * failed, a restart) it is rebuilt from the committed state, which holds
 * exactly the chain up to the committed head.
 *
 * Loop: everything here runs on the node's libuv loop thread.
 */
#ifndef TS_ENROLL_NODE_H
#define TS_ENROLL_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "../proto/entry.h"
#include "enroll.h"

struct node;
struct node_write;
struct node_write_result;
struct validate_field;

/* At most this many sites are tracked: far above any trial's site count. */
#define ENROLL_NODE_SITES_MAX 4096

/* validate_lookup.enroll_view for node n (ctx is the node). */
int enroll_node_view(struct node *n, const struct entry *e, struct enroll_view *out);

/* After admission passed e: the ledger of e's origin follows it. */
void enroll_node_note(struct node *n, const struct entry *e);

/*
 * Before a local write w: a subject moved into a slot-taking status by this
 * site's node takes a slot (slot=Y is added: *out is w with it, fields in
 * buf, TS_WRITES_PER_ENTRY_MAX of them), or is refused "site S has used U
 * of N slots" when none is free; a hub's write of such a status needs the
 * subject's slot held.  When check is true the pending group is committed
 * first so the count is exact.  Returns 0 (*out set) or a negative code
 * with now filled.
 */
int enroll_node_prepare(struct node *n, const struct node_write *w, bool check,
                        struct node_write *out, struct validate_field *buf,
                        struct node_write_result *now);

/*
 * A site node's duty, called from the tick: acknowledges a grant and
 * releases asked-for unused slots, writing its own quota record.
 */
void enroll_node_tick(struct node *n);

/* The trial's cap and allocator as held; false when no cap is set. */
bool enroll_node_cap(struct node *n, uint64_t *cap, char allocator[TS_ID_BYTES_MAX + 1]);

/*
 * Every site this node knows slots or enrollments of (members, quota
 * records), sorted by site id, into a malloc'ed array (*sites, free()).
 */
int enroll_node_sites(struct node *n, struct enroll_site **sites, size_t *count);

/* Sets the cap (the first time: this hub becomes the allocator).  0, or a
 * negative code with msg said. */
int enroll_node_set_cap(struct node *n, uint64_t cap, const char *user, char *msg,
                        size_t msg_cap, void (*done)(void *ctx, const struct node_write_result *r),
                        void *ctx);

/* Sets site's slots at the allocator (enroll_set_slots).  0, or a negative
 * code with msg said. */
int enroll_node_set_slots(struct node *n, const char *site, uint64_t slots, const char *user,
                          char *msg, size_t msg_cap,
                          void (*done)(void *ctx, const struct node_write_result *r), void *ctx);

/*
 * The slots as this node knows them, for status and /metrics:
 * {"cap": N|null, "allocator": ID|null, "enrolled": N, "sites": [{"site",
 * "enrolled", "slots", "under_quota", "granted", "release_requested",
 * "acknowledged", "released"}]}.  A site node knows its own site only.
 */
json_t *enroll_node_json(struct node *n);

/* Releases everything the ledger holds (node_close). */
void enroll_node_free(struct node *n);

#endif
