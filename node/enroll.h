/*
 * enroll.h: enrollment slots under a trial-wide cap, without coordination
 * (pure: no I/O, no globals, no allocation).
 *
 * An escrow (bounded counter, Balegas et al., EuroSys 2015).  One hub, the
 * allocator, holds the trial's cap (record enrollment/trial) and hands slots
 * to sites in each site's quota record <site>-QUOTA, as monotonic totals:
 *   granted            slots ever granted to the site      (allocator)
 *   release_requested  slots the allocator asked back      (allocator)
 *   acknowledged       granted slots the site's node saw   (site)
 *   released           unused slots the site gave back     (site)
 * A subject takes a slot when its site's node first moves it into a state at
 * or past enrolled (subject.slot = Y, written by the site in that entry); the
 * slot is never given back.  The site may hold acknowledged - released slots.
 *
 * What this file guarantees (enroll_admit, on every node and every hop):
 *   - a site's slotted subjects, acknowledged and released are read from the
 *     site's own chain up to the entry (every write that counts is the
 *     site's, on the bulk lane, in chain order), so every node reaches the
 *     same verdict on the same entry whatever else it holds;
 *   - once a site's chain has acknowledged slots, no entry of it takes a slot
 *     beyond acknowledged - released, nor releases a used slot;
 *   - a site never acknowledges more than the allocator granted (held back
 *     until the grant is held; refused at the allocator, which holds them
 *     all), and only the allocator grants or changes the cap;
 *   - the allocator grants only while the sum over sites of
 *     max(granted - released, taken), as it knows them, stays within the cap
 *     (enroll_set_slots); a stale `released` or `taken` only errs low on
 *     released and high on nothing, so trial-wide enrolled <= cap.
 * A site whose chain has acknowledged nothing yet is not under a quota: the
 * cap governs each site from the moment its node learns of the cap, when it
 * acknowledges (0 slots, or what it was granted); docs/decisions.md.
 */
#ifndef TS_ENROLL_H
#define TS_ENROLL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../proto/entry.h"

/* One site's slots as a node knows them. */
struct enroll_site {
    char site[TS_ID_BYTES_MAX + 1];
    uint64_t granted;            /* the allocator's, as held */
    uint64_t release_requested;  /* the allocator's, as held */
    uint64_t acknowledged;       /* the site's chain */
    uint64_t released;           /* the site's chain */
    uint64_t taken;              /* subjects of the site holding a slot */
    bool under_quota;            /* the site's chain has acknowledged slots */
};

/* What the admission of one entry needs to know (struct validate_lookup's
 * enroll_view fills it). */
struct enroll_view {
    struct enroll_site site;     /* the entry's site, from its chain before the entry */
    bool subject_slotted;        /* a subject entry: the subject holds a slot already */
    bool allocator_held;         /* the enrollment record is held here */
    char allocator[TS_ID_BYTES_MAX + 1];
    bool granted_complete;       /* this node is the allocator: site.granted is all */
};

struct enroll_refusal {
    char rule[24];               /* a metric label: "enrollment" or "pending" */
    char msg[256];
};

/* A count: decimal digits, no sign, no leading zero, at most SCHEMA_COUNT_MAX. */
bool enroll_count_parse(const char *s, uint64_t *out);

/* True when a subject in this status holds an enrollment slot: enrolled and
 * every state after it (randomized, completed, withdrawn, ...), not
 * screening or screen_failed. */
bool enroll_status_takes_slot(const char *status);

/* True when the entry's admission depends on enrollment slots (a subject
 * entry writing status or slot, a quota or an enrollment entry). */
bool enroll_entry_concerns(const struct entry *e);

/* The site's slots: acknowledged - released (0 when released passes it). */
uint64_t enroll_slots(const struct enroll_site *s);

/*
 * The enrollment rules for entry e of an origin of role origin_role (a
 * schema_role bit), given what the node knows (v).  Returns 0; TS_ERR_AUTH
 * (refused, why filled); TS_ERR_AGAIN (held back: the grant or the
 * enrollment record it rests on is not held yet).
 */
int enroll_admit(const struct entry *e, unsigned origin_role, const struct enroll_view *v,
                 struct enroll_refusal *why);

/*
 * What an admitted entry e of the site's own chain changes in its ledger s:
 * acknowledged, released, and taken (+1 when it slots a subject not yet
 * slotted: subject_was_slotted says).  Entries of other origins change
 * nothing here.
 */
void enroll_site_note(struct enroll_site *s, const struct entry *e, bool subject_was_slotted);

/* Sum over sites of max(granted - released, taken): the slots out of the
 * allocator's hands. */
uint64_t enroll_committed(const struct enroll_site *sites, size_t count);

/*
 * The allocator sets the slots of site index `at` to `slots` (its target
 * after releases asked for): above the present target it grants more
 * (*granted set, within cap), below it asks the site to release
 * (*release_requested set).  Returns 0 with the new totals; TS_ERR_INVALID
 * (beyond the cap: msg says by how much) when the grant does not fit.
 */
int enroll_set_slots(const struct enroll_site *sites, size_t count, size_t at, uint64_t cap,
                     uint64_t slots, uint64_t *granted, uint64_t *release_requested,
                     char *msg, size_t msg_cap);

/*
 * What the site's node writes to its own quota record after seeing s (its
 * ledger with the allocator's granted and release_requested held) and
 * whether it holds the trial's cap: the grant acknowledged (0 slots as soon
 * as the cap is held: the site is under the cap from then on) and the
 * asked-for release of unused slots.  True when there is something to write
 * (*acknowledged and *released set).
 */
bool enroll_site_reconcile(const struct enroll_site *s, bool cap_held, uint64_t *acknowledged,
                           uint64_t *released);

#endif
