/*
 * validate.h: the rules every write obeys before it becomes an entry (pure).
 *
 * Record types subject, visit, ae and query of DOMAIN.md: key formats,
 * known fields, controlled terms, ISO 8601 (partial) dates, integer ranges,
 * write-once keys, a reason when a field that has a value changes, who may
 * write which field, and which lane and site scope a write belongs to.  A
 * refused write fills struct validate_error with the field, the value and
 * what is allowed, in words a person can act on.
 */
#ifndef TS_VALIDATE_H
#define TS_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../proto/entry.h"
#include "../proto/errors.h"
#include "enroll.h"
#include "schema.h"

struct validate_field {
    const char *field;
    const char *value;
};

struct validate_error {
    char field[TS_FIELD_BYTES_MAX + 1];   /* "" when the error is not about one field */
    char value[128];                      /* the refused value, cut to fit */
    char allowed[512];                    /* what is allowed, "" when not a list */
    char msg[768];                        /* the whole sentence */
    char rule[24];                        /* validate_entry: the rule broken, a metric label */
};

/* Who is writing: the role of the node the write enters through. */
enum validate_role {
    VALIDATE_ROLE_SITE,   /* may write its own site's subjects, visits, AEs; answer queries */
    VALIDATE_ROLE_HUB,    /* the CRO: queries, AE coding, corrections on any record */
};

/*
 * The displayed value of a field of the record as it stands now, or NULL when
 * the field has no value (or the record does not exist).
 */
typedef const char *(*validate_current_fn)(void *ctx, const char *field);

/*
 * Checks one write of n fields to record (type, id).  site is the writing
 * node's site id (for VALIDATE_ROLE_SITE).  Returns 0, or TS_ERR_INVALID /
 * TS_ERR_AUTH with err filled.
 */
int validate_write(const char *type, const char *id,
                   const struct validate_field *fields, size_t n,
                   const char *reason, const char *user,
                   enum validate_role role, const char *site,
                   validate_current_fn current, void *ctx,
                   struct validate_error *err);

/*
 * The lane of a valid write: LANE_SAFETY for an AE that is or becomes serious
 * (aeser=Y in this write or now), LANE_BULK otherwise.
 */
enum lane validate_lane(const char *type, const struct validate_field *fields,
                        size_t n, validate_current_fn current, void *ctx);

/*
 * The site scope of a record: the site prefix of its key ("101" for subject
 * "101-0003", its visits and AEs; for a query, the site of its target).
 * Writes "" for trial-wide records.  TS_ERR_INVALID when it cannot be told.
 */
int validate_scope(const char *type, const char *id,
                   const struct validate_field *fields, size_t n,
                   validate_current_fn current, void *ctx,
                   char site[TS_ID_BYTES_MAX + 1]);

/*
 * Checks an admin's write of n fields to a trial-wide record of type (a
 * `user` account, written at a hub): the key, each field and value by the
 * table, and a reason (an admin's every change says why).  Returns 0, or
 * TS_ERR_INVALID with err filled.
 */
int validate_admin_write(const char *type, const char *id, const struct validate_field *fields,
                         size_t n, const char *reason, struct validate_error *err);

/*
 * Checks that a user of role r may make a write of n fields to a record of
 * type (schema_user_may_write for each field), the same rule at the API and
 * in validate_entry.  Returns 0, or TS_ERR_AUTH with err naming the field,
 * the role and what the role may do.
 */
int validate_user_role(enum schema_user_role r, const char *type,
                       const struct validate_field *fields, size_t n,
                       struct validate_error *err);

/* True when s is an ISO 8601 date, partial date or date-time as SDTM allows. */
bool validate_iso8601(const char *s);

/* True when s is a valid id: 1..TS_ID_BYTES_MAX of [A-Za-z0-9._-]. */
bool validate_id(const char *s);

/*
 * What the admission of an entry may ask of the node that holds it.  Every
 * member may be NULL/0: the rule that needs it then holds the entry back
 * (TS_ERR_AGAIN) or is skipped (the clock when now_ms is 0).
 */
struct validate_lookup {
    /* The target of query id as written by its creating entry (write-once),
     * copied into buf; 0, or non-zero when this node does not hold it. */
    int (*query_target)(void *ctx, const char *id, char *buf, size_t cap);
    /* The highest round of query id held here; 0, or non-zero when none. */
    int (*query_round)(void *ctx, const char *id, uint32_t *round);
    /* The role (enum schema_role bit) of an origin's certificate, 0 unknown. */
    unsigned (*origin_role)(void *ctx, const char *origin);
    /* Checks a revocation list (PEM) is signed by the trial CA: 0 with
     * *number its CRL number, or non-zero with why (why_cap bytes) said. */
    int (*crl_check)(void *ctx, const char *pem, int64_t *number, char *why, size_t why_cap);
    /* The write-once role and site of user id as held here: 0, or non-zero
     * when this node does not hold the user's record (yet). */
    int (*user_info)(void *ctx, const char *user, enum schema_user_role *role,
                     char site[TS_ID_BYTES_MAX + 1]);
    /* The targets of lock epoch `epoch` of subject as held here (node/lock.h;
     * every version of that epoch, comma-joined) copied into buf; 0, or
     * non-zero when this node does not hold that epoch (yet). */
    int (*lock_targets)(void *ctx, const char *subject, uint64_t epoch, char *buf, size_t cap);
    /* What this node knows of the slots an entry's admission rests on
     * (enroll.h): 0 with out filled; NULL skips the enrollment rules. */
    int (*enroll_view)(void *ctx, const struct entry *e, struct enroll_view *out);
    void *ctx;
    uint64_t now_ms;   /* this node's wall clock; 0 skips the clock bound */
    uint64_t skew_ms;  /* how far ahead of now_ms an entry may be stamped */
};

/*
 * The admission of one entry, the same on every node and every hop, for an
 * entry written here or received from any peer (DESIGN.md §1).  origin_role is
 * the schema_role bit of the origin's certificate.  Rules that depend only on
 * the entry (and on immutable keys: a query's target from its creating entry)
 * are checked here; rules on current values (a reason for a change, the order
 * of a workflow) are the API's and the merge's.
 *   - the record type and key are known and well formed; every field is a
 *     field of the type, once, with a value of its kind (validate_write's
 *     value rules, word for word);
 *   - the origin's role may write each field with each value (the table's
 *     writers and site_terms): coding, query wording, target, source and
 *     closing are the CRO's; membership is a hub's or an admin's;
 *   - the entry's site scope is the record's (key prefix; a query's target),
 *     and a site writes only records of its own site;
 *   - a site answers only rounds the CRO opened; a write supersedes no
 *     message, and a site's supersedes only its own or the CRO's writes;
 *   - nothing stamped more than skew_ms past now_ms (HLC or wall time);
 *   - a `crl` entry writes a PEM CRL signed by the trial CA (lk->crl_check)
 *     and its CRL number, as signed;
 *   - the user is the origin's integration credential on behalf of someone
 *     named ("integration:<name>"), or a user whose record this node holds
 *     (held back until it does) with a role that may make the write
 *     (validate_user_role), working where the role works: a site user at
 *     its own site's node, a CRO user at a hub;
 *   - locks (node/lock.h): a `lock` entry writes epoch, targets of its own
 *     subject and a seen vector, and carries no lock epoch itself; only a
 *     subject, visit or AE entry carries one; an entry whose lock epoch's
 *     targets cover its record is refused (rule `lock`: its writer had seen
 *     the lock), and one naming an epoch not held here is held back.
 *   - enrollment slots (enroll_admit, with lk->enroll_view): a site takes a
 *     slot only within its acknowledged slots, releases only unused ones,
 *     and only the allocating hub grants them or sets the cap.
 * Returns 0; TS_ERR_AUTH or TS_ERR_INVALID (refused: err names the rule and
 * says why); TS_ERR_AGAIN (not yet: the query's creation is not held, or the
 * entry is ahead of the clock; retry later, nothing is wrong with the peer).
 */
int validate_entry(const struct entry *e, unsigned origin_role, const struct validate_lookup *lk,
                   struct validate_error *err);

#endif
