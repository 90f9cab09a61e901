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

#include "../proto/entry.h"
#include "../proto/errors.h"

struct validate_field {
    const char *field;
    const char *value;
};

struct validate_error {
    char field[TS_FIELD_BYTES_MAX + 1];   /* "" when the error is not about one field */
    char value[128];                      /* the refused value, cut to fit */
    char allowed[512];                    /* what is allowed, "" when not a list */
    char msg[768];                        /* the whole sentence */
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

/* True when s is an ISO 8601 date, partial date or date-time as SDTM allows. */
bool validate_iso8601(const char *s);

/* True when s is a valid id: 1..TS_ID_BYTES_MAX of [A-Za-z0-9._-]. */
bool validate_id(const char *s);

/*
 * What an entry's origin may have written, checked by every receiver (so a
 * relayed entry is checked again): an entry whose origin is a site must be
 * scoped to that site (its `site` and the site prefix of its record key) and
 * may not be a `member` record.  Hub origins are trusted (their API
 * validated the write).  Returns 0 or TS_ERR_AUTH with err filled.
 */
int validate_entry_origin(const struct entry *e, bool origin_is_site, struct validate_error *err);

#endif
