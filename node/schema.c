/*
 * schema.c: the rule book's table (see schema.h and DOMAIN.md).  Pure: no
 * I/O, no globals that change, no allocation.
 *
 * What this file guarantees:
 *   - Each record type and field of DOMAIN.md appears once, here, with every
 *     rule the rest of trialsync applies to it.
 *   - Ranks are the only source of workflow order and of severity: a status
 *     of higher rank wins a merge; a worst-wins field shows its highest rank.
 *   - Key and target parsing is total: any byte string gets an answer.
 */
#include "schema.h"

#include <assert.h>
#include <string.h>

#include "lex.h"

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

#define SITE SCHEMA_ROLE_SITE
#define HUB SCHEMA_ROLE_HUB
#define ADMIN SCHEMA_ROLE_ADMIN

/* ---- controlled terms, with their ranks ------------------------------------ */

static const struct schema_term terms_sex[] = { { "M", 0 }, { "F", 0 }, { "U", 0 }, { NULL, 0 } };
/* Y ranks above N: for the serious flags, worst wins. */
static const struct schema_term terms_yn[] = { { "Y", 1 }, { "N", 0 }, { NULL, 0 } };
static const struct schema_term terms_aesev[] = {
    { "MILD", 1 }, { "MODERATE", 2 }, { "SEVERE", 3 }, { NULL, 0 },
};
static const struct schema_term terms_aetoxgr[] = {
    { "1", 1 }, { "2", 2 }, { "3", 3 }, { "4", 4 }, { "5", 5 }, { NULL, 0 },
};
static const struct schema_term terms_aeout[] = {
    { "RECOVERED/RESOLVED", 0 }, { "RECOVERING/RESOLVING", 0 },
    { "NOT RECOVERED/NOT RESOLVED", 0 }, { "RECOVERED/RESOLVED WITH SEQUELAE", 0 },
    { "FATAL", 0 }, { "UNKNOWN", 0 }, { NULL, 0 },
};
static const struct schema_term terms_aeacn[] = {
    { "DOSE INCREASED", 0 }, { "DOSE NOT CHANGED", 0 }, { "DOSE REDUCED", 0 },
    { "DRUG INTERRUPTED", 0 }, { "DRUG WITHDRAWN", 0 }, { "NOT APPLICABLE", 0 },
    { "UNKNOWN", 0 }, { NULL, 0 },
};
/* Workflow ranks (DOMAIN.md): terminal states rank above the path to them,
 * and among concurrent terminal states died > withdrawn > lost > completed. */
static const struct schema_term terms_subject_status[] = {
    { "screening", 10 }, { "enrolled", 20 }, { "randomized", 30 }, { "screen_failed", 40 },
    { "completed", 50 }, { "lost_to_followup", 60 }, { "withdrawn", 70 }, { "died", 80 },
    { NULL, 0 },
};
static const struct schema_term terms_visit_status[] = {
    { "scheduled", 10 }, { "started", 20 }, { "completed", 30 }, { "skipped", 35 },
    { "signed", 40 }, { NULL, 0 },
};
static const struct schema_term terms_ae_status[] = {
    { "ongoing", 10 }, { "resolved", 20 }, { NULL, 0 },
};
static const struct schema_term terms_query_state[] = {
    { "open", 10 }, { "answered", 20 }, { "closed", 30 }, { "cancelled", 40 }, { NULL, 0 },
};
static const struct schema_term terms_query_source[] = {
    { "dm", 0 }, { "monitor", 0 }, { "system", 0 }, { NULL, 0 },
};
static const struct schema_term terms_member_status[] = {
    { "active", 0 }, { "revoked", 0 }, { NULL, 0 },
};

static const struct schema_term terms_slot[] = { { "Y", 0 }, { NULL, 0 } };

static const struct schema_term terms_user_role[] = {
    { "crc", 0 }, { "investigator", 0 }, { "monitor", 0 }, { "dm", 0 }, { "safety", 0 },
    { "viewer", 0 }, { "metrics", 0 }, { NULL, 0 },
};
static const struct schema_term terms_user_state[] = {
    { "active", 0 }, { "disabled", 0 }, { NULL, 0 },
};

/* What a signature means (21 CFR 11.50(a)(3)). */
static const struct schema_term terms_sig_meaning[] = {
    { "approval", 0 }, { "review", 0 }, { "responsibility", 0 }, { "authorship", 0 },
    { NULL, 0 },
};

/*
 * The moves of each workflow (DOMAIN.md), checked by validate_write against
 * the displayed state.  A move may skip states on the way forward (a visit
 * recorded as completed without having been started); it never goes back, and
 * screen_failed follows screening only.  A state without moves is final: the
 * merge flags concurrent final states, and a write that lost to one, for a
 * person (merge_conflict).
 */
struct schema_step {
    const char *from;
    const char *const *to;   /* NULL-ended */
};

static const char *const next_none[] = { NULL };
static const char *const next_screening[] = { "enrolled", "randomized", "screen_failed", NULL };
static const char *const next_enrolled[] = { "randomized", "withdrawn", "lost_to_followup",
                                             "died", NULL };
static const char *const next_randomized[] = { "completed", "withdrawn", "lost_to_followup",
                                               "died", NULL };
static const struct schema_step steps_subject_status[] = {
    { "screening", next_screening }, { "enrolled", next_enrolled },
    { "randomized", next_randomized }, { "screen_failed", next_none },
    { "completed", next_none }, { "lost_to_followup", next_none },
    { "withdrawn", next_none }, { "died", next_none }, { NULL, NULL },
};
static const char *const next_scheduled[] = { "started", "completed", "skipped", NULL };
static const char *const next_started[] = { "completed", NULL };
static const char *const next_visit_completed[] = { "signed", NULL };
static const struct schema_step steps_visit_status[] = {
    { "scheduled", next_scheduled }, { "started", next_started },
    { "completed", next_visit_completed }, { "skipped", next_none }, { "signed", next_none },
    { NULL, NULL },
};
static const char *const next_ongoing[] = { "resolved", NULL };
static const struct schema_step steps_ae_status[] = {
    { "ongoing", next_ongoing }, { "resolved", next_none }, { NULL, NULL },
};

/* Which terms each workflow's steps belong to. */
static const struct {
    const struct schema_term *terms;
    const struct schema_step *steps;
} workflows[] = {
    { terms_subject_status, steps_subject_status },
    { terms_visit_status, steps_visit_status },
    { terms_ae_status, steps_ae_status },
};

/* A site answers a query: it may set its state to answered, nothing else. */
static const char *const site_terms_query_state[] = { "answered", NULL };

/* ---- record types and their fields ------------------------------------------ */

/* name, kind, terms, policy, writers, site_terms, optional, reason_free, cdisc, label */
static const struct schema_field subject_fields[] = {
    { "site", KIND_SITE, NULL, MERGE_POLICY_WRITE_ONCE, SITE | HUB, NULL, false, false,
      "SITEID", "Study site identifier" },
    { "sex", KIND_TERM, terms_sex, MERGE_POLICY_LATEST, SITE | HUB, NULL, false, false,
      "SEX", "Sex" },
    { "brthdtc", KIND_DATE, NULL, MERGE_POLICY_LATEST, SITE | HUB, NULL, true, false,
      "BRTHDTC", "Date/time of birth" },
    { "rficdtc", KIND_DATE, NULL, MERGE_POLICY_LATEST, SITE | HUB, NULL, true, false,
      "RFICDTC", "Date/time of informed consent" },
    { "armcd", KIND_CODE, NULL, MERGE_POLICY_LATEST, SITE | HUB, NULL, true, false,
      "ARMCD", "Planned arm code" },
    { "status", KIND_TERM, terms_subject_status, MERGE_POLICY_RANK, SITE | HUB, NULL, false,
      false, "", "Subject status" },
    { "dsdecod", KIND_CODE, NULL, MERGE_POLICY_LATEST, SITE | HUB, NULL, true, false,
      "DSDECOD", "Standardized disposition term" },
    { "dsstdtc", KIND_DATE, NULL, MERGE_POLICY_LATEST, SITE | HUB, NULL, true, false,
      "DSSTDTC", "Start date/time of disposition event" },
    { "eie", KIND_TERM, terms_yn, MERGE_POLICY_LATEST, SITE | HUB, NULL, false, false,
      "", "Entered in error" },
    /* Set by the site's node, with the status that first enrolls the subject:
     * the subject takes one of the site's enrollment slots, for good
     * (node/enroll.h).  Only the site writes it, so every node counts the
     * site's slots from the site's own chain. */
    { "slot", KIND_TERM, terms_slot, MERGE_POLICY_WRITE_ONCE, SITE, NULL, false, false,
      "", "Takes one of the site's enrollment slots" },
};

static const struct schema_field visit_fields[] = {
    { "svstdtc", KIND_DATE, NULL, MERGE_POLICY_LATEST, SITE | HUB, NULL, true, false,
      "SVSTDTC", "Start date/time of visit" },
    { "svendtc", KIND_DATE, NULL, MERGE_POLICY_LATEST, SITE | HUB, NULL, true, false,
      "SVENDTC", "End date/time of visit" },
    { "svoccur", KIND_TERM, terms_yn, MERGE_POLICY_LATEST, SITE | HUB, NULL, false, false,
      "SVOCCUR", "Visit occurred" },
    { "status", KIND_TERM, terms_visit_status, MERGE_POLICY_RANK, SITE | HUB, NULL, false,
      false, "", "Visit status" },
    { "eie", KIND_TERM, terms_yn, MERGE_POLICY_LATEST, SITE | HUB, NULL, false, false,
      "", "Entered in error" },
};

static const struct schema_field ae_fields[] = {
    { "aeterm", KIND_TEXT, NULL, MERGE_POLICY_LATEST, SITE | HUB, NULL, false, false,
      "AETERM", "Reported term for the adverse event" },
    { "aestdtc", KIND_DATE, NULL, MERGE_POLICY_LATEST, SITE | HUB, NULL, true, false,
      "AESTDTC", "Start date/time of adverse event" },
    { "aeendtc", KIND_DATE, NULL, MERGE_POLICY_LATEST, SITE | HUB, NULL, true, false,
      "AEENDTC", "End date/time of adverse event" },
    { "aesev", KIND_TERM, terms_aesev, MERGE_POLICY_WORST, SITE | HUB, NULL, false, false,
      "AESEV", "Severity/intensity" },
    { "aetoxgr", KIND_TERM, terms_aetoxgr, MERGE_POLICY_WORST, SITE | HUB, NULL, false, false,
      "AETOXGR", "Standard toxicity grade" },
    { "aeser", KIND_TERM, terms_yn, MERGE_POLICY_WORST, SITE | HUB, NULL, false, false,
      "AESER", "Serious event" },
    { "aesdth", KIND_TERM, terms_yn, MERGE_POLICY_WORST, SITE | HUB, NULL, false, false,
      "AESDTH", "Results in death" },
    { "aeslife", KIND_TERM, terms_yn, MERGE_POLICY_WORST, SITE | HUB, NULL, false, false,
      "AESLIFE", "Is life threatening" },
    { "aeshosp", KIND_TERM, terms_yn, MERGE_POLICY_WORST, SITE | HUB, NULL, false, false,
      "AESHOSP", "Requires or prolongs hospitalization" },
    { "aesdisab", KIND_TERM, terms_yn, MERGE_POLICY_WORST, SITE | HUB, NULL, false, false,
      "AESDISAB", "Persist or signif disability/incapacity" },
    { "aescong", KIND_TERM, terms_yn, MERGE_POLICY_WORST, SITE | HUB, NULL, false, false,
      "AESCONG", "Congenital anomaly or birth defect" },
    { "aesmie", KIND_TERM, terms_yn, MERGE_POLICY_WORST, SITE | HUB, NULL, false, false,
      "AESMIE", "Other medically important serious event" },
    { "aerel", KIND_CODE, NULL, MERGE_POLICY_LATEST, SITE | HUB, NULL, true, false,
      "AEREL", "Causality" },
    { "aeacn", KIND_TERM, terms_aeacn, MERGE_POLICY_LATEST, SITE | HUB, NULL, false, false,
      "AEACN", "Action taken with study treatment" },
    { "aeout", KIND_TERM, terms_aeout, MERGE_POLICY_LATEST, SITE | HUB, NULL, false, false,
      "AEOUT", "Outcome of adverse event" },
    { "sae_aware_dtc", KIND_DATETIME, NULL, MERGE_POLICY_LATEST, SITE | HUB, NULL, true, false,
      "", "Date/time the site became aware of the serious AE" },
    /* The backup channel (phone, fax) when replication could not carry the
     * SAE in time: it stops the site's alarms and, within the deadline,
     * counts as reported in time (node/safety.h). */
    { "sae_backup_dtc", KIND_DATETIME, NULL, MERGE_POLICY_LATEST, SITE | HUB, NULL, true, false,
      "", "Date/time the SAE was reported by a backup channel" },
    { "sae_backup_by", KIND_CODE, NULL, MERGE_POLICY_LATEST, SITE | HUB, NULL, true, false,
      "", "Backup channel and who took the report" },
    /* The CRO's safety reviewer: reviewed and reported onward. */
    { "sae_handled_dtc", KIND_DATETIME, NULL, MERGE_POLICY_LATEST, HUB, NULL, true, false,
      "", "Date/time the CRO's safety reviewer marked the SAE handled" },
    { "sae_handled_note", KIND_TEXT, NULL, MERGE_POLICY_LATEST, HUB, NULL, true, false,
      "", "How the SAE was handled (review, onward report)" },
    { "status", KIND_TERM, terms_ae_status, MERGE_POLICY_RANK, SITE | HUB, NULL, false, false,
      "", "Adverse event status" },
    { "eie", KIND_TERM, terms_yn, MERGE_POLICY_LATEST, SITE | HUB, NULL, false, false,
      "", "Entered in error" },
    /* MedDRA coding is the CRO's. */
    { "aedecod", KIND_CODE, NULL, MERGE_POLICY_LATEST, HUB, NULL, true, false,
      "AEDECOD", "Dictionary-derived term" },
    { "aeptcd", KIND_DIGITS, NULL, MERGE_POLICY_LATEST, HUB, NULL, true, false,
      "AEPTCD", "Preferred term code" },
    { "aebodsys", KIND_CODE, NULL, MERGE_POLICY_LATEST, HUB, NULL, true, false,
      "AEBODSYS", "Body system or organ class" },
    { "aesoccd", KIND_DIGITS, NULL, MERGE_POLICY_LATEST, HUB, NULL, true, false,
      "AESOCCD", "Primary system organ class code" },
    { "meddra_ver", KIND_VERSION, NULL, MERGE_POLICY_LATEST, HUB, NULL, true, false,
      "", "MedDRA version" },
};

/* The CRO opens, words and closes a query; a site answers it (messages and
 * state=answered on a query whose target is one of its own records). */
static const struct schema_field query_fields[] = {
    { "target", KIND_TARGET, NULL, MERGE_POLICY_WRITE_ONCE, HUB, NULL, false, false,
      "", "The field the query is about: type/id/field" },
    { "text", KIND_TEXT, NULL, MERGE_POLICY_LATEST, HUB, NULL, false, false,
      "", "Query text" },
    { "state", KIND_TERM, terms_query_state, MERGE_POLICY_QUERY_STATE, HUB | SITE,
      site_terms_query_state, false, false, "", "Query state" },
    /* A site's answer carries the round it answers (validate_entry: never
     * a round the CRO has not opened, never without an answer). */
    { "round", KIND_ROUND, NULL, MERGE_POLICY_ROUND, HUB | SITE, NULL, false, false,
      "", "Query round" },
    { "messages", KIND_TEXT, NULL, MERGE_POLICY_APPEND, HUB | SITE, NULL, false, true,
      "", "Query messages (append-only)" },
    { "source", KIND_TERM, terms_query_source, MERGE_POLICY_LATEST, HUB, NULL, false, false,
      "", "Who raised the query" },
};

/* The membership log: written at a hub on an admin's word. */
static const struct schema_field member_fields[] = {
    { "status", KIND_TERM, terms_member_status, MERGE_POLICY_LATEST, HUB | ADMIN, NULL, false,
      false, "", "Membership status" },
    { "name", KIND_CODE, NULL, MERGE_POLICY_LATEST, HUB | ADMIN, NULL, true, false,
      "", "Site name" },
};

/* The trial's revocation list, signed by the CA, recorded at a hub on an
 * admin's word and replicated to every node (sites included), which puts it
 * in force when its number is higher than the one it holds. */
static const struct schema_field crl_fields[] = {
    { "pem", KIND_CRL, NULL, MERGE_POLICY_LATEST, HUB | ADMIN, NULL, false, false,
      "", "Revocation list (PEM, signed by the trial CA)" },
    { "number", KIND_DIGITS, NULL, MERGE_POLICY_LATEST, HUB | ADMIN, NULL, false, false,
      "", "CRL number" },
};

/* An investigator's signature: what was signed (the record, and a digest of
 * exactly the versions of its fields shown when signing), by whom (the
 * entry's user; the printed name), when, and what it means.  Write-once: a
 * later change to a signed value breaks the signature (derived from the
 * state, see node/esign.h); it is never edited. */
static const struct schema_field signature_fields[] = {
    { "target", KIND_RECORD, NULL, MERGE_POLICY_WRITE_ONCE, SITE, NULL, false, false,
      "", "The signed record: subject/<id> (the casebook) or visit/<id>" },
    { "meaning", KIND_TERM, terms_sig_meaning, MERGE_POLICY_WRITE_ONCE, SITE, NULL, false, false,
      "", "Meaning of the signature" },
    { "name", KIND_CODE, NULL, MERGE_POLICY_WRITE_ONCE, SITE, NULL, false, false,
      "", "Printed name of the signer" },
    { "signed_at", KIND_DATETIME, NULL, MERGE_POLICY_WRITE_ONCE, SITE, NULL, false, false,
      "", "Date/time of signing (UTC)" },
    { "versions", KIND_DIGEST, NULL, MERGE_POLICY_WRITE_ONCE, SITE, NULL, false, false,
      "", "SHA-256 of the field versions signed" },
};

/* Source-data verification: a monitor's mark that the named fields of a
 * record match the source documents, as exactly the versions a digest names.
 * Write-once; a later write to a verified field turns it into "needs
 * re-verification", derived from the state (node/esign.h). */
static const struct schema_field sdv_fields[] = {
    { "target", KIND_RECORD, NULL, MERGE_POLICY_WRITE_ONCE, HUB, NULL, false, false,
      "", "The verified record: subject/<id>, visit/<id> or ae/<id>" },
    { "fields", KIND_FIELDS, NULL, MERGE_POLICY_WRITE_ONCE, HUB, NULL, true, false,
      "", "The verified fields (comma-separated); empty: the whole record" },
    { "verified_at", KIND_DATETIME, NULL, MERGE_POLICY_WRITE_ONCE, HUB, NULL, false, false,
      "", "Date/time of the verification (UTC)" },
    { "versions", KIND_DIGEST, NULL, MERGE_POLICY_WRITE_ONCE, HUB, NULL, false, false,
      "", "SHA-256 of the field versions verified" },
};

/* A data manager's lock (freeze) of records of one subject: each lock or
 * unlock writes the next epoch with the whole set of records locked and the
 * versions the locking hub held; every version stays in the record's
 * history, so epoch -> (targets, seen) is read from the log (node/lock.h). */
static const struct schema_field lock_fields[] = {
    { "epoch", KIND_ROUND, NULL, MERGE_POLICY_LATEST, HUB, NULL, false, false,
      "", "Lock epoch: 1, 2, ... one per lock or unlock of the subject" },
    { "targets", KIND_TEXT, NULL, MERGE_POLICY_LATEST, HUB, NULL, true, false,
      "", "Records locked: subject/<id>, visit/<id>, ae/<id> or * (comma-separated)" },
    { "seen", KIND_TEXT, NULL, MERGE_POLICY_LATEST, HUB, NULL, true, false,
      "", "Versions the locking hub held: origin:lane:seq, comma-separated" },
};

/* A person's access events at one node (21 CFR 11.10(e): who signed in,
 * when, from where; refused attempts too), appended by the node where they
 * happened and replicated like any record of that node's scope. */
static const struct schema_field access_fields[] = {
    { "events", KIND_TEXT, NULL, MERGE_POLICY_APPEND, SITE | HUB, NULL, false, true,
      "", "Access events: sign-in, sign-out, refused sign-ins" },
};

/* The people who act through nodes: written at a hub on an admin's word and
 * replicated to every node, so a site signs in its own users while offline.
 * Role and site never change (see schema.h); the secret is a salted slow hash
 * of a random token the admin hands to the person, never the token. */
static const struct schema_field user_fields[] = {
    { "role", KIND_TERM, terms_user_role, MERGE_POLICY_WRITE_ONCE, HUB | ADMIN, NULL, false,
      false, "", "Role" },
    { "site", KIND_SITE_REF, NULL, MERGE_POLICY_WRITE_ONCE, HUB | ADMIN, NULL, true, false,
      "", "Site the user works at (\"\" for the CRO)" },
    { "name", KIND_CODE, NULL, MERGE_POLICY_LATEST, HUB | ADMIN, NULL, false, false,
      "", "Printed name" },
    { "state", KIND_TERM, terms_user_state, MERGE_POLICY_LATEST, HUB | ADMIN, NULL, false,
      false, "", "Account state" },
    { "secret", KIND_SECRET, NULL, MERGE_POLICY_LATEST, HUB | ADMIN, NULL, false, true,
      "", "Salted slow hash of the user's token" },
};

/* The trial's enrollment cap (node/enroll.h): set at one hub, which becomes
 * the allocator of slots for good; only it changes the cap or grants. */
static const struct schema_field enrollment_fields[] = {
    { "cap", KIND_COUNT, NULL, MERGE_POLICY_LATEST, HUB, NULL, false, false,
      "", "Trial-wide enrollment cap" },
    { "allocator", KIND_NODE, NULL, MERGE_POLICY_WRITE_ONCE, HUB, NULL, false, false,
      "", "The hub that allocates enrollment slots" },
};

/* One site's enrollment slots, as monotonic totals (escrow: Balegas et al.,
 * EuroSys 2015): the site may enroll acknowledged - released subjects. */
static const struct schema_field quota_fields[] = {
    { "granted", KIND_COUNT, NULL, MERGE_POLICY_MAX, HUB, NULL, false, true,
      "", "Slots ever granted to the site (by the allocating hub)" },
    { "release_requested", KIND_COUNT, NULL, MERGE_POLICY_MAX, HUB, NULL, false, true,
      "", "Slots the allocating hub asked the site to give back (total)" },
    { "acknowledged", KIND_COUNT, NULL, MERGE_POLICY_MAX, SITE, NULL, false, true,
      "", "Granted slots the site's node has seen (total)" },
    { "released", KIND_COUNT, NULL, MERGE_POLICY_MAX, SITE, NULL, false, true,
      "", "Unused slots the site's node gave back (total)" },
};

static const struct schema_type types[] = {
    { "subject", "DM", "<site>-<number>, e.g. 101-0003", true, SITE | HUB, subject_fields,
      COUNT_OF(subject_fields) },
    { "visit", "SV", "<subject>/<visit code>[/<repeat>], e.g. 101-0003/V3", true, SITE | HUB,
      visit_fields, COUNT_OF(visit_fields) },
    { "ae", "AE", "<subject>-AE-<number>, e.g. 101-0003-AE-001", true, SITE | HUB, ae_fields,
      COUNT_OF(ae_fields) },
    { SCHEMA_QUERY_TYPE, "", "Q-<origin>-<number>, e.g. Q-hub-17", true, HUB, query_fields,
      COUNT_OF(query_fields) },
    { SCHEMA_MEMBER_TYPE, "", "a site id, e.g. 101", false, HUB | ADMIN, member_fields,
      COUNT_OF(member_fields) },
    { SCHEMA_CRL_TYPE, "", SCHEMA_CRL_ID, false, HUB | ADMIN, crl_fields,
      COUNT_OF(crl_fields) },
    { SCHEMA_USER_TYPE, "", "a user id, e.g. jsmith", false, HUB | ADMIN, user_fields,
      COUNT_OF(user_fields) },
    { SCHEMA_SIGNATURE_TYPE, "", "<subject>-SIG-<number>, e.g. 101-0003-SIG-001", true, SITE,
      signature_fields, COUNT_OF(signature_fields) },
    { SCHEMA_SDV_TYPE, "", "<subject>-SDV-<number>, e.g. 101-0003-SDV-1796216219711", true, HUB,
      sdv_fields, COUNT_OF(sdv_fields) },
    { SCHEMA_ACCESS_TYPE, "", "<node>-ACC-<user>, e.g. 101-ACC-jsmith", true, SITE | HUB,
      access_fields, COUNT_OF(access_fields) },
    { SCHEMA_LOCK_TYPE, "", "<subject>-LOCK, e.g. 101-0003-LOCK", true, HUB, lock_fields,
      COUNT_OF(lock_fields) },
    { SCHEMA_ENROLLMENT_TYPE, "", SCHEMA_ENROLLMENT_ID, false, HUB, enrollment_fields,
      COUNT_OF(enrollment_fields) },
    { SCHEMA_QUOTA_TYPE, "", "<site>" SCHEMA_QUOTA_SUFFIX ", e.g. 101" SCHEMA_QUOTA_SUFFIX, true,
      SITE | HUB, quota_fields, COUNT_OF(quota_fields) },
};

#undef SITE
#undef HUB
#undef ADMIN

const struct schema_type *schema_types(size_t *count)
{
    *count = COUNT_OF(types);
    return types;
}

const struct schema_type *schema_type_find(const char *name)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < COUNT_OF(types); i++) {
        if (strcmp(types[i].name, name) == 0)
            return &types[i];
    }
    return NULL;
}

const struct schema_field *schema_field_find(const struct schema_type *t, const char *name)
{
    if (t == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < t->count; i++) {
        if (strcmp(t->fields[i].name, name) == 0)
            return &t->fields[i];
    }
    return NULL;
}

const struct schema_field *schema_field(const char *type, const char *name)
{
    return schema_field_find(schema_type_find(type), name);
}

int schema_term_rank(const struct schema_field *f, const char *value)
{
    if (f == NULL || f->terms == NULL || value == NULL)
        return -1;
    for (size_t i = 0; f->terms[i].value != NULL; i++) {
        if (strcmp(f->terms[i].value, value) == 0)
            return f->terms[i].rank;
    }
    return -1;
}

bool schema_term_ok(const struct schema_field *f, const char *value)
{
    if (f == NULL || f->terms == NULL || value == NULL)
        return false;
    for (size_t i = 0; f->terms[i].value != NULL; i++) {
        if (strcmp(f->terms[i].value, value) == 0)
            return true;
    }
    return false;
}

const char *const *schema_next_states(const struct schema_field *f, const char *from)
{
    if (f == NULL || f->terms == NULL || from == NULL)
        return NULL;
    for (size_t w = 0; w < COUNT_OF(workflows); w++) {
        if (workflows[w].terms != f->terms)
            continue;
        for (const struct schema_step *st = workflows[w].steps; st->from != NULL; st++) {
            if (strcmp(st->from, from) == 0)
                return st->to;
        }
        return NULL;
    }
    return NULL;
}

bool schema_state_final(const struct schema_field *f, const char *value)
{
    const char *const *next = schema_next_states(f, value);
    return next != NULL && next[0] == NULL;
}

bool schema_site_may_write(const struct schema_field *f, const char *value)
{
    assert(f != NULL);
    if ((f->writers & SCHEMA_ROLE_SITE) == 0)
        return false;
    if (f->site_terms == NULL)
        return true;
    for (size_t i = 0; f->site_terms[i] != NULL; i++) {
        if (value != NULL && strcmp(f->site_terms[i], value) == 0)
            return true;
    }
    return false;
}

bool schema_ae_serious(const char *aeser)
{
    return aeser != NULL && strcmp(aeser, "Y") == 0;
}

/* ---- keys -------------------------------------------------------------------- */

bool schema_id_ok(const char *s)
{
    if (s == NULL)
        return false;
    size_t len = strnlen(s, TS_ID_BYTES_MAX + 1);
    if (len > TS_ID_BYTES_MAX || !lex_all(s, len, lex_id_char))
        return false;
    /* Ids name files and directories too (bundles, certificates). */
    return strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* `<site>-<digits>`, exactly the len characters of s. */
static bool subject_key_ok(const char *s, size_t len)
{
    size_t site = lex_span(s, len, lex_alnum);
    if (site == 0 || site >= len || s[site] != '-')
        return false;
    return lex_all(s + site + 1, len - site - 1, lex_digit);
}

static bool visit_key_ok(const char *s, size_t len)
{
    const char *slash = memchr(s, '/', len);
    if (slash == NULL || !subject_key_ok(s, (size_t)(slash - s)))
        return false;
    const char *code = slash + 1;
    size_t rest = len - (size_t)(code - s);
    const char *slash2 = memchr(code, '/', rest);
    if (slash2 == NULL)
        return lex_all(code, rest, lex_id_char);
    size_t code_len = (size_t)(slash2 - code);
    return lex_all(code, code_len, lex_id_char)
           && lex_all(slash2 + 1, rest - code_len - 1, lex_digit);
}

/* `<subject><infix><digits>`: an AE (-AE-) or a signature (-SIG-) of a subject. */
static bool infix_key_ok(const char *s, size_t len, const char *infix)
{
    const char *at = strstr(s, infix);
    if (at == NULL || !subject_key_ok(s, (size_t)(at - s)))
        return false;
    const char *num = at + strlen(infix);
    return num < s + len && lex_all(num, len - (size_t)(num - s), lex_digit);
}

/* `<node>-ACC-<user>`: a node id of letters and digits, then a user id. */
static bool access_key_ok(const char *s, size_t len)
{
    const char *at = strstr(s, "-ACC-");
    if (at == NULL || at == s || !lex_all(s, (size_t)(at - s), lex_alnum))
        return false;
    const char *user = at + 5;
    return user < s + len && schema_id_ok(user);
}

/* `<site>-QUOTA`: a site id of letters and digits. */
static bool quota_key_ok(const char *s, size_t len)
{
    size_t suffix = sizeof(SCHEMA_QUOTA_SUFFIX) - 1;
    return len > suffix && strcmp(s + len - suffix, SCHEMA_QUOTA_SUFFIX) == 0 &&
           lex_all(s, len - suffix, lex_alnum);
}

static bool query_key_ok(const char *s, size_t len)
{
    if (len < 2 || s[0] != 'Q' || s[1] != '-')
        return false;
    const char *dash = strrchr(s, '-');
    if (dash == s + 1)
        return false;
    size_t origin_len = (size_t)(dash - (s + 2));
    return lex_all(s + 2, origin_len, lex_id_char)
           && lex_all(dash + 1, len - (size_t)(dash + 1 - s), lex_digit);
}

bool schema_key_ok(const char *type, const char *id)
{
    if (type == NULL || id == NULL)
        return false;
    size_t len = strnlen(id, TS_ID_BYTES_MAX + 1);
    if (len == 0 || len > TS_ID_BYTES_MAX)
        return false;
    if (strcmp(type, "subject") == 0)
        return subject_key_ok(id, len);
    if (strcmp(type, "visit") == 0)
        return visit_key_ok(id, len);
    if (strcmp(type, "ae") == 0)
        return infix_key_ok(id, len, "-AE-");
    if (strcmp(type, SCHEMA_QUERY_TYPE) == 0)
        return query_key_ok(id, len);
    if (strcmp(type, SCHEMA_MEMBER_TYPE) == 0)
        return schema_id_ok(id);
    if (strcmp(type, SCHEMA_CRL_TYPE) == 0)
        return strcmp(id, SCHEMA_CRL_ID) == 0;
    if (strcmp(type, SCHEMA_USER_TYPE) == 0)
        return schema_id_ok(id);
    if (strcmp(type, SCHEMA_SIGNATURE_TYPE) == 0)
        return infix_key_ok(id, len, "-SIG-");
    if (strcmp(type, SCHEMA_SDV_TYPE) == 0)
        return infix_key_ok(id, len, "-SDV-");
    if (strcmp(type, SCHEMA_ACCESS_TYPE) == 0)
        return access_key_ok(id, len);
    if (strcmp(type, SCHEMA_LOCK_TYPE) == 0)
        return len > 5 && strcmp(id + len - 5, "-LOCK") == 0 && subject_key_ok(id, len - 5);
    if (strcmp(type, SCHEMA_ENROLLMENT_TYPE) == 0)
        return strcmp(id, SCHEMA_ENROLLMENT_ID) == 0;
    if (strcmp(type, SCHEMA_QUOTA_TYPE) == 0)
        return quota_key_ok(id, len);
    return false;
}

bool schema_site_of_key(const char *id, char site[TS_ID_BYTES_MAX + 1])
{
    size_t len = strnlen(id, TS_ID_BYTES_MAX + 1);
    size_t n = lex_span(id, len, lex_alnum);
    if (n == 0 || n >= len || id[n] != '-')
        return false;
    memcpy(site, id, n);
    site[n] = '\0';
    return true;
}

bool schema_target_split(const char *s, char type_out[TS_TYPE_BYTES_MAX + 1],
                         char id_out[TS_ID_BYTES_MAX + 1], const char **field_out)
{
    const char *first = strchr(s, '/');
    const char *last = strrchr(s, '/');
    if (first == NULL || last == first)
        return false;
    size_t type_len = (size_t)(first - s);
    size_t id_len = (size_t)(last - first - 1);
    if (type_len == 0 || type_len > TS_TYPE_BYTES_MAX || id_len == 0 || id_len > TS_ID_BYTES_MAX)
        return false;
    memcpy(type_out, s, type_len);
    type_out[type_len] = '\0';
    memcpy(id_out, first + 1, id_len);
    id_out[id_len] = '\0';
    *field_out = last + 1;
    return true;
}

bool schema_target_ok(const char *s)
{
    char type[TS_TYPE_BYTES_MAX + 1];
    char id[TS_ID_BYTES_MAX + 1];
    const char *field;

    if (s == NULL || !schema_target_split(s, type, id, &field))
        return false;
    const struct schema_type *t = schema_type_find(type);
    /* A query is about a site's clinical record, never about a query. */
    if (t == NULL || !t->site_scoped || strcmp(type, SCHEMA_QUERY_TYPE) == 0)
        return false;
    return schema_key_ok(type, id) && schema_field_find(t, field) != NULL;
}

bool schema_target_site(const char *s, char site[TS_ID_BYTES_MAX + 1])
{
    char type[TS_TYPE_BYTES_MAX + 1];
    char id[TS_ID_BYTES_MAX + 1];
    const char *field;

    site[0] = '\0';
    if (!schema_target_ok(s))
        return false;
    bool split = schema_target_split(s, type, id, &field);
    assert(split);
    return split && schema_site_of_key(id, site);
}

/* ---- users and roles ---------------------------------------------------------- */

static const char *const user_role_names[] = {
    [USER_ROLE_NONE] = "",
    [USER_ROLE_CRC] = "crc",
    [USER_ROLE_INVESTIGATOR] = "investigator",
    [USER_ROLE_MONITOR] = "monitor",
    [USER_ROLE_DM] = "dm",
    [USER_ROLE_SAFETY] = "safety",
    [USER_ROLE_VIEWER] = "viewer",
    [USER_ROLE_METRICS] = "metrics",
};

enum schema_user_role schema_user_role_find(const char *s)
{
    if (s == NULL || s[0] == '\0')
        return USER_ROLE_NONE;
    for (size_t i = 1; i < COUNT_OF(user_role_names); i++) {
        if (strcmp(user_role_names[i], s) == 0)
            return (enum schema_user_role)i;
    }
    return USER_ROLE_NONE;
}

const char *schema_user_role_name(enum schema_user_role r)
{
    assert((size_t)r < COUNT_OF(user_role_names));
    return (size_t)r < COUNT_OF(user_role_names) ? user_role_names[r] : "";
}

bool schema_user_role_at_site(enum schema_user_role r)
{
    return r == USER_ROLE_CRC || r == USER_ROLE_INVESTIGATOR;
}

bool schema_user_role_at_hub(enum schema_user_role r)
{
    return r == USER_ROLE_MONITOR || r == USER_ROLE_DM || r == USER_ROLE_SAFETY;
}

bool schema_user_may_write(enum schema_user_role r, const struct schema_type *t,
                           const struct schema_field *f, const char *value)
{
    assert(t != NULL);
    assert(f != NULL);
    /* Enrollment cap and slots: the data manager's, at the allocating hub;
     * a site's acknowledgements and releases are its node's own. */
    if (strcmp(t->name, SCHEMA_ENROLLMENT_TYPE) == 0 || strcmp(t->name, SCHEMA_QUOTA_TYPE) == 0)
        return r == USER_ROLE_DM && (f->writers & SCHEMA_ROLE_HUB) != 0;
    /* Membership, revocation and accounts are the admin's, through a hub. */
    if (!t->site_scoped)
        return false;
    bool query = strcmp(t->name, SCHEMA_QUERY_TYPE) == 0;
    /* A signature is the investigator's own act (21 CFR 11.50, 11.100). */
    if (strcmp(t->name, SCHEMA_SIGNATURE_TYPE) == 0)
        return r == USER_ROLE_INVESTIGATOR;
    /* Source-data verification is the monitor's (ICH E6 5.18). */
    if (strcmp(t->name, SCHEMA_SDV_TYPE) == 0)
        return r == USER_ROLE_MONITOR;
    /* Locking data is the data manager's (node/lock.h). */
    if (strcmp(t->name, SCHEMA_LOCK_TYPE) == 0)
        return r == USER_ROLE_DM;
    /* A person's own access events, written by the node they signed in at
     * (validate_entry: only their own record). */
    if (strcmp(t->name, SCHEMA_ACCESS_TYPE) == 0)
        return r != USER_ROLE_NONE;
    /* Marking an SAE handled is the safety reviewer's alone. */
    if (strcmp(t->name, "ae") == 0 && strncmp(f->name, "sae_handled", 11) == 0)
        return r == USER_ROLE_SAFETY;
    switch (r) {
    case USER_ROLE_CRC:
    case USER_ROLE_INVESTIGATOR:
        if (!schema_site_may_write(f, value))
            return false;
        /* Signing a visit is the investigator's (21 CFR 11.50). */
        if (strcmp(t->name, "visit") == 0 && strcmp(f->name, "status") == 0 && value != NULL &&
            strcmp(value, "signed") == 0)
            return r == USER_ROLE_INVESTIGATOR;
        return true;
    case USER_ROLE_MONITOR:
    case USER_ROLE_SAFETY:
        return query && (f->writers & SCHEMA_ROLE_HUB) != 0;
    case USER_ROLE_DM:
        return (f->writers & SCHEMA_ROLE_HUB) != 0;
    case USER_ROLE_NONE:
    case USER_ROLE_VIEWER:
    case USER_ROLE_METRICS:
        return false;
    }
    return false;
}

bool schema_user_is_integration(const char *user, const char **on_behalf)
{
    static const char prefix[] = SCHEMA_INTEGRATION_PREFIX;
    if (user == NULL || strncmp(user, prefix, sizeof(prefix) - 1) != 0)
        return false;
    if (on_behalf != NULL)
        *on_behalf = user + sizeof(prefix) - 1;
    return true;
}
