/*
 * schema.h: the rule book of trialsync's clinical data, as one table (pure).
 *
 * Every record type, its key pattern and the site a key belongs to; every
 * field with its kind of value, its controlled terms, its merge policy and
 * the rank of each status, which roles may write it (and which values a site
 * may use), whether a change needs a reason, and its CDISC name.  Validation
 * (validate.c), merging (merge.c), the admission of entries from any peer and
 * the downlink filter read this table; none keeps a list of its own.
 *
 * Adding a field is one line here; its rules follow everywhere.
 */
#ifndef TS_SCHEMA_H
#define TS_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>

#include "../proto/limits.h"

/* Who may write: a bit per role of the origin's certificate. */
enum schema_role {
    SCHEMA_ROLE_SITE = 1u << 0,   /* a clinical site: its own patients' data */
    SCHEMA_ROLE_HUB = 1u << 1,    /* the CRO: queries, coding, corrections, membership */
    SCHEMA_ROLE_ADMIN = 1u << 2,  /* an admin: membership only */
};

enum merge_policy {
    MERGE_POLICY_LATEST,      /* highest (hlc, origin) shown; conflicts flagged */
    MERGE_POLICY_WORST,       /* worst severity / grade / Y shown; conflicts flagged */
    MERGE_POLICY_RANK,        /* highest workflow rank shown */
    MERGE_POLICY_QUERY_STATE, /* highest (round, state rank) shown; a rule, never a conflict */
    MERGE_POLICY_ROUND,       /* query round: highest round shown; a rule, never a conflict */
    MERGE_POLICY_WRITE_ONCE,  /* keys: earliest (hlc, origin) shown; a second value is a conflict */
    MERGE_POLICY_APPEND,      /* query messages: every write kept and shown, never a conflict */
    MERGE_POLICY_MAX,         /* a monotonic total (enrollment slots): highest number shown;
                               * a rule, never a conflict */
};

enum schema_kind {
    KIND_TEXT,      /* free text: UTF-8, tabs and line breaks allowed */
    KIND_CODE,      /* one line of UTF-8, at most SCHEMA_CODE_BYTES_MAX */
    KIND_DATE,      /* ISO 8601 date, partial date or date-time */
    KIND_DATETIME,  /* ISO 8601 date-time with at least hours and minutes */
    KIND_TERM,      /* one of a controlled list */
    KIND_DIGITS,    /* a numeric code: MedDRA PT and SOC codes */
    KIND_VERSION,   /* a MedDRA version: 26.1 */
    KIND_ROUND,     /* an integer from 1 to UINT32_MAX */
    KIND_SITE,      /* subject.site: the key's site prefix */
    KIND_TARGET,    /* query.target: type/id/field of a site record */
    KIND_CRL,       /* a PEM X.509 CRL; validate_entry has the CA check its signature */
    KIND_SECRET,    /* a user's salted slow hash: scrypt$<log2 N>$<r>$<p>$<salt>$<hash> */
    KIND_SITE_REF,  /* a site id, or "" for the CRO (user.site) */
    KIND_RECORD,    /* signature.target: "subject/<id>" or "visit/<id>" of the same subject;
                     * sdv.target: also "ae/<id>" */
    KIND_FIELDS,    /* sdv.fields: field names of the target, comma-separated; "" all */
    KIND_DIGEST,    /* a SHA-256 digest as 64 lowercase hex digits */
    KIND_COUNT,     /* a count of enrollment slots: decimal 0..SCHEMA_COUNT_MAX */
    KIND_NODE,      /* a node id (enrollment.allocator): an id of letters and digits */
};

/* The largest enrollment cap or slot count: far above any trial's size, and
 * small enough that sums over every site never overflow a uint64_t. */
#define SCHEMA_COUNT_MAX 1000000000u

/* SDTM character variables hold at most 200 bytes; codes are no longer. */
#define SCHEMA_CODE_BYTES_MAX 200

/*
 * A controlled term.  rank orders a workflow (status: higher wins the merge)
 * or a scale (severity: higher is worse); 0 when the field has no order.
 */
struct schema_term {
    const char *value;
    int rank;
};

struct schema_field {
    const char *name;
    enum schema_kind kind;
    const struct schema_term *terms;   /* KIND_TERM: NULL-valued sentinel ends it */
    enum merge_policy policy;
    unsigned writers;                  /* schema_role bits that may write it */
    const char *const *site_terms;     /* NULL: a site may write any term; else only these */
    bool optional;                     /* "" allowed, meaning no value */
    bool reason_free;                  /* a change needs no reason (append-only) */
    const char *cdisc;                 /* SDTM/CDASH variable name, "" when none */
    const char *label;                 /* what it is, for exports and errors */
};

struct schema_type {
    const char *name;
    const char *domain;                /* SDTM domain ("DM", "SV", "AE"), "" when none */
    const char *key_format;            /* for error messages */
    bool site_scoped;                  /* its records belong to one site */
    unsigned creators;                 /* roles that may create a record of it */
    const struct schema_field *fields;
    size_t count;
};

/* Every record type, in a fixed order; *count is set. */
const struct schema_type *schema_types(size_t *count);

/* The type named name, or NULL. */
const struct schema_type *schema_type_find(const char *name);

/* The field of t named name, or NULL. */
const struct schema_field *schema_field_find(const struct schema_type *t, const char *name);

/* The field (type, name), or NULL when either is unknown. */
const struct schema_field *schema_field(const char *type, const char *name);

/* Rank of value among f's terms, or -1 when it is not one of them. */
int schema_term_rank(const struct schema_field *f, const char *value);

/* True when value is one of f's terms. */
bool schema_term_ok(const struct schema_field *f, const char *value);

/*
 * The workflow of a status field (DOMAIN.md "Workflows as state machines"):
 * the states f may move to from the state `from`, as a NULL-ended list, empty
 * when `from` is final.  NULL when f is not a workflow field or `from` is not
 * one of its states.  Only forward moves are listed; going back is never a
 * move (entered-in-error undoes a mistaken record).
 */
const char *const *schema_next_states(const struct schema_field *f, const char *from);

/* True when value is a final state of the workflow field f (no next state). */
bool schema_state_final(const struct schema_field *f, const char *value);

/* True when a site may write value to f (its writers and site_terms). */
bool schema_site_may_write(const struct schema_field *f, const char *value);

/* True when id is a well-formed key of type. */
bool schema_key_ok(const char *type, const char *id);

/*
 * The site a subject, visit or AE key belongs to: the characters before its
 * first '-' (letters and digits).  False when the key has none.
 */
bool schema_site_of_key(const char *id, char site[TS_ID_BYTES_MAX + 1]);

/*
 * Splits a query target "type/id/field" (a visit id holds '/').  On success
 * type_out and id_out are filled and *field_out points into s.
 */
bool schema_target_split(const char *s, char type_out[TS_TYPE_BYTES_MAX + 1],
                         char id_out[TS_ID_BYTES_MAX + 1], const char **field_out);

/* True when s names a field of a site-scoped record with a well-formed key. */
bool schema_target_ok(const char *s);

/* The site a query target belongs to; false when s is not a valid target. */
bool schema_target_site(const char *s, char site[TS_ID_BYTES_MAX + 1]);

/*
 * The serious-AE predicate: an AE is serious when its aeser is "Y".  value is
 * the displayed aeser (NULL when unset).
 */
bool schema_ae_serious(const char *aeser);

/* True when s is an id: 1..TS_ID_BYTES_MAX of [A-Za-z0-9._-], not "." or "..". */
bool schema_id_ok(const char *s);

/*
 * The people who act through a node (issue: users and roles).  A user's role
 * and site are write-once, so the verdict on an entry a user wrote is the same
 * on every node whatever else it has seen; changing a role means disabling the
 * account and adding another.
 */
enum schema_user_role {
    USER_ROLE_NONE = 0,
    USER_ROLE_CRC,           /* site data entry */
    USER_ROLE_INVESTIGATOR,  /* site; signs visits */
    USER_ROLE_MONITOR,       /* CRO: queries, source-data verification */
    USER_ROLE_DM,            /* CRO data manager: queries, coding, corrections */
    USER_ROLE_SAFETY,        /* CRO: SAE handling, queries */
    USER_ROLE_VIEWER,        /* reads, writes nothing */
    USER_ROLE_METRICS,       /* reads /metrics and /healthz only */
};

/* The role named s, or USER_ROLE_NONE. */
enum schema_user_role schema_user_role_find(const char *s);

/* The name of a role ("crc", ...); "" for USER_ROLE_NONE. */
const char *schema_user_role_name(enum schema_user_role r);

/* True when users of the role work at a site's node (crc, investigator). */
bool schema_user_role_at_site(enum schema_user_role r);

/* True when users of the role work at a hub (monitor, dm, safety). */
bool schema_user_role_at_hub(enum schema_user_role r);

/*
 * True when a user of role r may write value to field f of type t.  The
 * certificate-role rules (writers, site_terms) still apply on top; this is
 * the finer split among people: a crc or an investigator writes what a site
 * may (only an investigator signs a visit); a monitor and the safety role
 * word, answer and close queries; a data manager also codes and corrects; a
 * viewer and a metrics reader write nothing; users and membership are the
 * admin's and no user's.
 */
bool schema_user_may_write(enum schema_user_role r, const struct schema_type *t,
                           const struct schema_field *f, const char *value);

/*
 * Who an entry's user field names (on every hop):
 *   "<user id>"          a person who signed in at the origin with their own
 *                        credential; a `user` record names their role and site;
 *   "integration:<text>" the origin's integration credential (its API token),
 *                        acting on behalf of <text>; it may do what the
 *                        origin's certificate may, and the audit trail says so.
 */
#define SCHEMA_INTEGRATION_PREFIX "integration:"

/* True when user names the integration credential (and *on_behalf the rest). */
bool schema_user_is_integration(const char *user, const char **on_behalf);

#define SCHEMA_USER_TYPE "user"
/* An investigator's electronic signature of a visit or a subject's casebook
 * (21 CFR 11.50): key <subject>-SIG-<number>, written once, by a person. */
#define SCHEMA_SIGNATURE_TYPE "signature"
/* Access events (sign-in, sign-out, refused sign-ins) of one person at one
 * node: key <node>-ACC-<user>, an append-only list written by that node. */
#define SCHEMA_ACCESS_TYPE "access"
/* A monitor's source-data verification mark on a subject, visit or AE:
 * key <subject>-SDV-<number>, written once, at a hub. */
#define SCHEMA_SDV_TYPE "sdv"
/* A data manager's lock of a subject's records (node/lock.h): key
 * <subject>-LOCK, written at a hub, one epoch per lock or unlock. */
#define SCHEMA_LOCK_TYPE "lock"
/* The trial's enrollment cap and the hub that allocates slots under it: one
 * record, key "trial", written at that hub (node/enroll.h). */
#define SCHEMA_ENROLLMENT_TYPE "enrollment"
#define SCHEMA_ENROLLMENT_ID "trial"
/* One site's enrollment slots: key <site>-QUOTA, granted and release
 * requests by the allocating hub, acknowledgements and releases by the
 * site's node (node/enroll.h). */
#define SCHEMA_QUOTA_TYPE "quota"
#define SCHEMA_QUOTA_SUFFIX "-QUOTA"
#define SCHEMA_MEMBER_TYPE "member"
#define SCHEMA_QUERY_TYPE "query"
/* The trial CA's revocation list, carried by replication: one record. */
#define SCHEMA_CRL_TYPE "crl"
#define SCHEMA_CRL_ID "ca"

#endif
