/*
 * export.c: `trialsync export`: the trial in the files the industry reads.
 *
 *   odm           CDISC ODM 1.3.2 snapshot of the displayed values
 *   odm-audit     CDISC ODM 1.3.2 transactional: every version, with AuditRecords
 *   sdtm-csv      one CSV per SDTM domain (DM, DS, SV, AE) and queries.csv
 *   dataset-json  CDISC Dataset-JSON 1.1, the same datasets
 *   audit         the audit trail, one row per field write (CSV or NDJSON)
 *   records-ndjson  the displayed records as `trialsync import` reads them
 *
 * What it guarantees (docs/export.md):
 * - It reads the node's store directly, read-only (store_open_readonly), so
 *   it works on a stopped node and beside a running one; the view is the
 *   store as it was when the export opened it.
 * - Streaming: records are read one at a time (subjects by id, each with its
 *   visits and AEs by id) by store walks, one forward cursor per record type
 *   and no seek per record, and written as they are read; memory holds one
 *   record and the output buffers, whatever the size of the trial.
 * - --as-of TIME: the records as rebuilt from the entries whose HLC time is
 *   at or before TIME (the same on every node holding them).
 * - Every OID, variable name, label and code list comes from the schema
 *   table (node/schema.h); this file keeps no field list of its own, only
 *   the SDTM identifier variables (STUDYID, USUBJID, ...) a domain adds.
 * - Deterministic: everything is in a defined order and the only time in a
 *   file is --as-of or, without it, the highest HLC time of the store, so
 *   two converged nodes write byte-identical files.
 * - A site node exports only its own site; --site on a hub selects one.
 */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include "../node/config.h"
#include "../node/esign.h"
#include "../node/hlc.h"
#include "../node/merge.h"
#include "../node/pki.h"
#include "../node/schema.h"
#include "../storage/store.h"
#include "cli.h"
#include "version.h"

static const char EXPORT_USAGE[] =
    "usage: trialsync export --node NODEDIR --format FORMAT [--out PATH] [--site S]\n"
    "                        [--subject ID] [--as-of TIME]\n"
    "       trialsync export --node NODEDIR --format audit [--audit-format csv|ndjson]\n"
    "                        [--out FILE] [--site S] [--subject ID] [--user NAME]\n"
    "                        [--since TIME] [--until TIME]\n"
    "\n"
    "Exports the trial from the node's store (read-only; the node may be running).\n"
    "FORMAT:\n"
    "  odm           CDISC ODM 1.3.2 snapshot (XML) to --out FILE or stdout\n"
    "  odm-audit     CDISC ODM 1.3.2 transactional: every version of every item with\n"
    "                its AuditRecord (user, node, time, reason, entry hash)\n"
    "  sdtm-csv      dm.csv ds.csv sv.csv ae.csv queries.csv into the directory --out\n"
    "  dataset-json  dm.json ds.json sv.json ae.json queries.json (Dataset-JSON 1.1) into --out\n"
    "  audit         every field write: record, field, old, new, user, node, times,\n"
    "                reason, entry hash (CSV, or NDJSON) to --out FILE or stdout\n"
    "  records-ndjson  the subjects, visits and AEs with their displayed values, one\n"
    "                line each, in the NDJSON form `trialsync import` reads\n"
    "TIME is ISO 8601 UTC: 2024-05-01, 2024-05-01T10:00, 2024-05-01T10:00:00Z.\n"
    "--as-of exports the trial as it was at TIME: only entries whose HLC time (set\n"
    "where they were written) is at or before TIME; it is also the file's time\n"
    "(default: the newest write held), so two nodes holding the same entries write\n"
    "byte-identical files.\n"
    "Entered-in-error records are left out of sdtm-csv and dataset-json; fields\n"
    "with concurrent values are listed in the TSCONFL variable (ODM: an Annotation).\n";

/* The most fields a record type has (schema.c); checked at start. */
#define EXPORT_FIELDS_MAX 32
/* Fixed SDTM identifier columns a dataset adds to the schema's fields. */
#define EXPORT_COLUMNS_MAX (EXPORT_FIELDS_MAX + 8)
/* Output buffer of each open file. */
#define EXPORT_BUFFER_BYTES (64u << 10)
/* Values of one record's earlier writes kept to show "old" in the audit. */
#define EXPORT_AUDIT_WRITES_MAX 65536

#define ODM_NS "http://www.cdisc.org/ns/odm/v1.3"
#define ODM_MDV_OID "MDV.trialsync.1"
#define EXPORT_SOURCE_VERSION TS_VERSION

enum export_format {
    EXPORT_ODM,
    EXPORT_SDTM_CSV,
    EXPORT_DATASET_JSON,
    EXPORT_AUDIT,
    EXPORT_ODM_AUDIT,
    EXPORT_RECORDS_NDJSON,
};

/* A sorted set of names (the users and nodes an odm-audit file names). */
struct name_set {
    char **v;
    size_t count;
    size_t cap;
};

/* One field of the record being exported: its displayed value, and conflict. */
struct rec_field {
    char *value;     /* owned; NULL when the field has no value */
    bool conflict;
    char *live;      /* owned; the concurrent values, for the conflict note */
    struct entry_ref shown;  /* the write whose value is shown */
};

struct rec {
    const struct schema_type *type;
    bool held;       /* the record exists (at --as-of: has an entry by then) */
    struct rec_field f[EXPORT_FIELDS_MAX];
};

/* The walks (storage/store.h) the record exports read the clinical types with. */
enum export_walk { W_SUBJECT, W_VISIT, W_AE, W_SIG, W_SDV, W_COUNT };

/* What a dataset column shows. */
enum col_kind {
    COL_FIELD,     /* a schema field of the record */
    COL_STUDYID,
    COL_DOMAIN,
    COL_USUBJID,
    COL_SUBJID,
    COL_SEQ,       /* AESEQ from the AE number; DSSEQ 1 */
    COL_SPID,      /* the record's own number (AESPID) */
    COL_VISIT,     /* visit code [/repeat] */
    COL_VISITNUM,  /* the visit's number, derived from its code (visit_number) */
    COL_DSTERM,    /* the disposition, as reported (= DSDECOD) */
    COL_QUERYID,
    COL_RECTYPE,   /* query target: type, id, variable */
    COL_RECID,
    COL_VARNAME,
    COL_CONFLICT,  /* TSCONFL: the variables with concurrent values */
};

struct column {
    enum col_kind kind;
    const struct schema_field *field;  /* COL_FIELD */
    char name[TS_FIELD_BYTES_MAX + 1];
    const char *label;
    bool integer;
    bool decimal;  /* Dataset-JSON "decimal": a number written as a string */
};

/* One output dataset (CSV or Dataset-JSON), written row by row. */
struct table {
    FILE *f;
    char path[PATH_MAX];
    const char *domain;     /* "DM", "DS", ... */
    const char *label;
    const struct schema_type *type;
    struct column cols[EXPORT_COLUMNS_MAX];
    size_t ncols;
    uint64_t rows;
};

enum export_table { T_DM, T_DS, T_SV, T_AE, T_QUERIES, T_COUNT };

struct exporter {
    struct store *store;
    const struct config *cfg;
    enum export_format format;
    bool ndjson;
    const char *site;       /* NULL: every site */
    const char *subject;    /* NULL: every subject */
    const char *user;       /* audit filter */
    int64_t since_ms;       /* audit filter, -1 when none */
    int64_t until_ms;
    char created[32];       /* the file's time, ISO 8601 UTC */
    int64_t as_of_ms;       /* --as-of: entries with a later HLC time are left out; -1 */
    struct store_walk *walk[W_COUNT];
    struct field_state as_of[EXPORT_FIELDS_MAX];  /* a record's states rebuilt at --as-of */
    bool ae_event;          /* odm: the subject's SE.AE event is open */
    /* The current subject has signatures / SDV marks (read with esign_list,
     * esign_sdv_list); false at a past --as-of (docs/export.md). */
    bool subject_sigs;
    bool subject_sdv;
    json_t *casebook_sigs;  /* the current subject's own signatures (odm-audit) */
    struct name_set signers;  /* users who signed (AdminData, odm) */
    bool any_sigs;          /* the file names a signature: SignatureDefs written */
    FILE *out;              /* odm and audit */
    struct table t[T_COUNT];
    struct rec rec;
    uint64_t records;
    int rc;                 /* first write error */
    /* audit: the current record's earlier writes, for "old" */
    struct audit_write {
        struct entry_ref ref;
        char field[TS_FIELD_BYTES_MAX + 1];
        char *value;
    } *writes;
    size_t writes_count;
    size_t writes_cap;
    char last_origin[TS_ID_BYTES_MAX + 1];
    bool last_origin_site;
    /* odm-audit: the users and nodes named (first pass), and the state of
     * the record whose history is being written (second pass). */
    struct odma {
        bool collect;               /* first pass: only collect names */
        struct name_set users;
        struct name_set locations;
        const char *subject;        /* the subject whose data is walked */
        const struct schema_type *type;
        const char *id;             /* the record */
        uint64_t entries;           /* entries of the record written so far */
        uint64_t fields_written;    /* bit k: field k has a value (since Insert) */
        bool removed;               /* the last transaction was a Remove */
        bool ae_event;              /* the subject's SE.AE event exists */
        /* The valid signature covering the record (NULL: none) and the
         * writes it covers: the live writes of the record's fields now. */
        const json_t *sig;
        struct signed_write {
            size_t field;
            struct entry_ref ref;
        } *signed_writes;
        size_t signed_count;
        size_t signed_cap;
        /* The current entry's AuditRecord: room for the user, node and reason
         * at their limits, each character escaped (&quot; is 6 bytes). */
        char audit[6 * (TS_USER_BYTES_MAX + TS_ID_BYTES_MAX + TS_REASON_BYTES_MAX) + 512];
    } odma;
};

static const struct schema_type *type_of(const char *name)
{
    const struct schema_type *t = schema_type_find(name);
    if (t == NULL) {
        fprintf(stderr, "trialsync: export: schema has no type '%s'\n", name);
        abort();
    }
    return t;
}

/* ---- time ---------------------------------------------------------------- */

static void time_iso(uint64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "1970-01-01T00:00:00Z");
}

/* Parses YYYY-MM-DD[THH:MM[:SS]][Z] (UTC) into milliseconds; false on anything else. */
static bool time_parse(const char *s, int64_t *ms)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    int y, mo, d, h = 0, mi = 0, sec = 0, n = 0;
    size_t len = strlen(s);
    if (len > 0 && s[len - 1] == 'Z')
        len--;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
        return false;
    if ((size_t)n < len) {
        int n2 = 0;
        if (sscanf(s + n, "T%2d:%2d%n", &h, &mi, &n2) != 2 || n2 != 6)
            return false;
        n += n2;
        if ((size_t)n < len) {
            if (sscanf(s + n, ":%2d%n", &sec, &n2) != 1 || n2 != 3)
                return false;
            n += n2;
        }
    }
    if ((size_t)n != len || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
        sec > 60)
        return false;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return false;
    *ms = (int64_t)t * 1000;
    return true;
}

/* ---- escaping ------------------------------------------------------------- */

/* XML text or attribute value; control characters XML 1.0 forbids become '?'.
 * Runs of characters that need no escape are written at once. */
static void xml_put(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s, *run = p;
    for (;; p++) {
        unsigned char c = *p;
        if (c >= 0x20 && c != '&' && c != '<' && c != '>' && c != '"')
            continue;
        if (p > run)
            fwrite(run, 1, (size_t)(p - run), f);
        run = p + 1;
        switch (c) {
        case '\0': return;
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\t': fputs("&#9;", f); break;
        case '\n': fputs("&#10;", f); break;
        case '\r': fputs("&#13;", f); break;
        default: fputc('?', f);
        }
    }
}

static void json_put(FILE *f, const char *s)
{
    fputc('"', f);
    const unsigned char *p = (const unsigned char *)s, *run = p;
    for (;; p++) {
        unsigned char c = *p;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        if (p > run)
            fwrite(run, 1, (size_t)(p - run), f);
        run = p + 1;
        switch (c) {
        case '\0': fputc('"', f); return;
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default: fprintf(f, "\\u%04x", c);
        }
    }
}

/* RFC 4180: quoted when it holds a comma, quote or line break; quotes doubled. */
static void csv_put(FILE *f, const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '"')
            fputc('"', f);
        fputc(*p, f);
    }
    fputc('"', f);
}

/* ---- records -------------------------------------------------------------- */

/* The variable name of a field: its CDISC name, else its own name in capitals. */
static void field_name(const struct schema_field *f, char out[TS_FIELD_BYTES_MAX + 1])
{
    const char *src = f->cdisc[0] != '\0' ? f->cdisc : f->name;
    size_t i = 0;
    for (; src[i] != '\0' && i < TS_FIELD_BYTES_MAX; i++)
        out[i] = (src[i] >= 'a' && src[i] <= 'z') ? (char)(src[i] - 'a' + 'A') : src[i];
    out[i] = '\0';
}

static void rec_clear(struct rec *r)
{
    for (size_t i = 0; i < EXPORT_FIELDS_MAX; i++) {
        free(r->f[i].value);
        free(r->f[i].live);
    }
    memset(r, 0, sizeof(*r));
}

static char *live_text(const struct field_state *st)
{
    size_t cap = 64;
    for (size_t i = 0; i < st->live_count; i++)
        cap += strlen(st->live[i].value) + strlen(st->live[i].ref.origin) + 48;
    char *s = malloc(cap);
    if (s == NULL)
        return NULL;
    size_t n = (size_t)snprintf(s, cap, "conflict: %zu concurrent values:", st->live_count);
    for (size_t i = 0; i < st->live_count && n < cap; i++)
        n += (size_t)snprintf(s + n, cap - n, "%s '%s' (written at %s)", i ? ";" : "",
                              st->live[i].value, st->live[i].ref.origin);
    return s;
}

static int rec_field_cb(void *ctx, const char *field, const struct field_state *st)
{
    struct exporter *x = ctx;
    struct rec *r = &x->rec;
    const struct schema_field *f = schema_field_find(r->type, field);
    if (f == NULL)
        return 0;  /* a field this version's schema does not know: not exported */
    size_t i = (size_t)(f - r->type->fields);
    int shown = merge_display(r->type->name, field, st);
    if (shown < 0)
        return 0;
    if (f->policy == MERGE_POLICY_APPEND) {
        /* Every live write is shown, oldest first, one per line. */
        size_t len = 1;
        for (size_t k = 0; k < st->live_count; k++)
            len += strlen(st->live[k].value) + 1;
        char *v = malloc(len);
        if (v == NULL)
            return TS_ERR_NOMEM;
        v[0] = '\0';
        size_t n = 0;
        for (size_t k = 0; k < st->live_count; k++)
            n += (size_t)snprintf(v + n, len - n, "%s%s", k ? "\n" : "", st->live[k].value);
        r->f[i].value = v;
    } else {
        r->f[i].value = strdup(st->live[shown].value);
        if (r->f[i].value == NULL)
            return TS_ERR_NOMEM;
    }
    r->f[i].shown = st->live[shown].ref;
    if (merge_conflict(r->type->name, field, st)) {
        r->f[i].conflict = true;
        r->f[i].live = live_text(st);
        if (r->f[i].live == NULL)
            return TS_ERR_NOMEM;
    }
    return 0;
}

/* Reads one record's fields into x->rec by point reads (membership records). */
static int rec_load(struct exporter *x, const char *type, const char *id)
{
    rec_clear(&x->rec);
    x->rec.type = type_of(type);
    x->rec.held = true;
    int rc = store_record_fields(x->store, type, id, rec_field_cb, x);
    return rc == TS_ERR_NOTFOUND ? 0 : rc;
}

/* True when an entry is in the export: at --as-of, written by then (HLC). */
static bool entry_in_time(const struct exporter *x, const struct entry *e)
{
    return x->as_of_ms < 0 || hlc_ms(e->hlc) <= (uint64_t)x->as_of_ms;
}

/* --as-of: merges the writes of an entry held by then into x->as_of. */
static int as_of_entry_cb(void *ctx, const struct entry *e, const uint8_t hash[TS_HASH_BYTES],
                          uint64_t stored_ms)
{
    struct exporter *x = ctx;
    (void)hash;
    (void)stored_ms;
    if (!entry_in_time(x, e))
        return 0;
    x->rec.held = true;
    uint32_t round = merge_entry_round(e);
    for (size_t i = 0; i < e->writes_count; i++) {
        const struct schema_field *f = schema_field_find(x->rec.type, e->writes[i].field);
        if (f == NULL)
            continue;  /* a field this version's schema does not know: not exported */
        struct merge_write mw;
        merge_write_of(e, &e->writes[i], round, &mw);
        int rc = merge_field_apply(&x->as_of[f - x->rec.type->fields], &mw);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/*
 * Reads the walk's current record into x->rec: its stored field states, or
 * at --as-of the states rebuilt from the entries of its history written by
 * then, merged exactly as the store merges them (merge.h), so the result is
 * what the store held once it had those entries, on any node.
 */
static int rec_load_walk(struct exporter *x, struct store_walk *w)
{
    rec_clear(&x->rec);
    x->rec.type = type_of(store_walk_type(w));
    int rc;
    if (x->as_of_ms < 0) {
        x->rec.held = true;
        rc = store_walk_fields(w, rec_field_cb, x);
        return rc == TS_ERR_NOTFOUND ? 0 : rc;
    }
    rc = store_walk_history(w, as_of_entry_cb, x);
    if (rc == TS_ERR_NOTFOUND)
        rc = 0;
    const struct schema_type *t = x->rec.type;
    for (size_t k = 0; k < t->count; k++) {
        if (rc == 0 && x->as_of[k].live_count > 0)
            rc = rec_field_cb(x, t->fields[k].name, &x->as_of[k]);
        field_state_release(&x->as_of[k]);
        memset(&x->as_of[k], 0, sizeof(x->as_of[k]));
    }
    return rc;
}

static const char *rec_value(const struct rec *r, const char *field)
{
    const struct schema_field *f = schema_field_find(r->type, field);
    if (f == NULL)
        return NULL;
    return r->f[f - r->type->fields].value;
}

static bool rec_eie(const struct rec *r)
{
    const char *v = rec_value(r, "eie");
    return v != NULL && strcmp(v, "Y") == 0;
}

/* The subject id of a subject, visit, AE, signature or SDV mark key; false
 * for other keys. */
static bool subject_of(const char *type, const char *id, char out[TS_ID_BYTES_MAX + 1])
{
    size_t n;
    if (strcmp(type, "subject") == 0) {
        n = strlen(id);
    } else if (strcmp(type, "visit") == 0) {
        const char *slash = strchr(id, '/');
        if (slash == NULL)
            return false;
        n = (size_t)(slash - id);
    } else if (strcmp(type, "ae") == 0 || strcmp(type, SCHEMA_SIGNATURE_TYPE) == 0 ||
               strcmp(type, SCHEMA_SDV_TYPE) == 0) {
        const char *infix = strcmp(type, "ae") == 0                      ? "-AE-"
                            : strcmp(type, SCHEMA_SIGNATURE_TYPE) == 0 ? "-SIG-"
                                                                       : "-SDV-";
        const char *at = strstr(id, infix);
        if (at == NULL)
            return false;
        n = (size_t)(at - id);
    } else {
        return false;
    }
    if (n > TS_ID_BYTES_MAX)
        return false;
    memcpy(out, id, n);
    out[n] = '\0';
    return true;
}

/* True when a subject is in the export (--site, --subject). */
static bool subject_wanted(const struct exporter *x, const char *subject)
{
    if (x->subject != NULL && strcmp(x->subject, subject) != 0)
        return false;
    if (x->site != NULL) {
        char site[TS_ID_BYTES_MAX + 1];
        if (!schema_site_of_key(subject, site) || strcmp(site, x->site) != 0)
            return false;
    }
    return true;
}

/* True when a query (by its target) is in the export. */
static bool target_wanted(const struct exporter *x, const char *target)
{
    char type[TS_TYPE_BYTES_MAX + 1], id[TS_ID_BYTES_MAX + 1], subj[TS_ID_BYTES_MAX + 1];
    const char *field;
    if (target == NULL || !schema_target_split(target, type, id, &field))
        return x->site == NULL && x->subject == NULL;
    if (!subject_of(type, id, subj))
        return x->site == NULL && x->subject == NULL;
    return subject_wanted(x, subj);
}

/* ---- walking the clinical records ---------------------------------------- */

/*
 * Subjects, visits and AEs are read by three walks (store_walk_*) moved
 * forward together: a subject's visits ("<subject>/<code>") and AEs
 * ("<subject>-AE-<n>") follow each other in id order, and their order by
 * subject is the subjects' order: subject ids are letters and digits, one
 * '-', then digits (schema.c), so when one subject id is a prefix of
 * another the longer one goes on with a digit, which sorts after both '/'
 * and '-'.  So no record is looked up by key: each walk reads its part of
 * the store front to back once.
 */
static int walks_open(struct exporter *x)
{
    static const char *const types[W_COUNT] = {"subject", "visit", "ae", SCHEMA_SIGNATURE_TYPE,
                                               SCHEMA_SDV_TYPE};
    static const char *const infix[W_COUNT] = {"", "/", "-AE-", "-SIG-", "-SDV-"};
    for (int i = 0; i < W_COUNT; i++) {
        int rc = store_walk_open(x->store, types[i], &x->walk[i]);
        if (rc == 0 && x->subject != NULL) {
            /* One subject: every walk starts at its records. */
            char at[TS_ID_BYTES_MAX + 8];
            snprintf(at, sizeof(at), "%s%s", x->subject, infix[i]);
            rc = store_walk_seek(x->walk[i], at);
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void walks_close(struct exporter *x)
{
    for (int i = 0; i < W_COUNT; i++) {
        store_walk_close(x->walk[i]);
        x->walk[i] = NULL;
    }
}

/* Moves walk w past the records of subjects before subject; *at: it is at
 * one of subject's own. */
static int walk_reach(struct store_walk *w, const char *subject, bool *at)
{
    *at = false;
    for (;;) {
        const char *id = store_walk_id(w);
        if (id == NULL)
            return 0;
        char subj[TS_ID_BYTES_MAX + 1];
        int c = subject_of(store_walk_type(w), id, subj) ? strcmp(subj, subject) : -1;
        if (c > 0)
            return 0;
        if (c == 0) {
            *at = true;
            return 0;
        }
        int rc = store_walk_next(w);
        if (rc != 0)
            return rc;
    }
}

typedef int (*record_fn)(struct exporter *x, struct store_walk *w);
typedef int (*subject_fn)(struct exporter *x, const char *id);

/* fn on each of subject's records of walk which, by id. */
static int walk_children(struct exporter *x, enum export_walk which, const char *subject,
                         record_fn fn)
{
    struct store_walk *w = x->walk[which];
    bool at;
    int rc;
    while ((rc = walk_reach(w, subject, &at)) == 0 && at) {
        rc = fn(x, w);
        if (rc == 0)
            rc = store_walk_next(w);
        if (rc != 0)
            return rc;
    }
    return rc;
}

/* fn on each subject in the export, by id (it walks the children itself). */
static int walk_subjects(struct exporter *x, subject_fn fn)
{
    struct store_walk *w = x->walk[W_SUBJECT];
    int rc = 0;
    for (const char *id; rc == 0 && (id = store_walk_id(w)) != NULL;) {
        if (x->subject != NULL && strcmp(id, x->subject) != 0)
            break;  /* the walk started at the one subject: past it */
        if (subject_wanted(x, id)) {
            /* Signatures and SDV marks are derived from the state now: not
             * at a past --as-of. */
            bool sigs = false, sdv = false;
            if (x->as_of_ms < 0) {
                rc = walk_reach(x->walk[W_SIG], id, &sigs);
                if (rc == 0)
                    rc = walk_reach(x->walk[W_SDV], id, &sdv);
            }
            x->subject_sigs = sigs;
            x->subject_sdv = sdv;
            if (rc == 0)
                rc = fn(x, id);
        }
        if (rc == 0)
            rc = store_walk_next(w);
    }
    return rc;
}

/* fn on each subject in the export, the walks opened for it and closed after. */
static int walk_export(struct exporter *x, subject_fn fn)
{
    int rc = walks_open(x);
    if (rc == 0)
        rc = walk_subjects(x, fn);
    walks_close(x);
    return rc;
}

/* fn on the subject's own record (the subject walk's current one), then on
 * each of its visits and AEs. */
static int walk_subject_records(struct exporter *x, const char *id, record_fn fn)
{
    int rc = fn(x, x->walk[W_SUBJECT]);
    if (rc == 0)
        rc = walk_children(x, W_VISIT, id, fn);
    return rc != 0 ? rc : walk_children(x, W_AE, id, fn);
}

/* ---- ODM ------------------------------------------------------------------ */

static const char *odm_datatype(const struct schema_field *f)
{
    switch (f->kind) {
    case KIND_DATE:
    case KIND_DATETIME: return "partialDatetime";
    case KIND_DIGITS:
    case KIND_ROUND: return "integer";
    default: return "text";
    }
}

/* The record types that are clinical data: the ones with an SDTM domain. */
static bool type_clinical(const struct schema_type *t)
{
    return t->domain[0] != '\0';
}

static void odm_metadata(struct exporter *x)
{
    FILE *f = x->out;
    size_t ntypes;
    const struct schema_type *types = schema_types(&ntypes);
    fprintf(f, "  <MetaDataVersion OID=\"" ODM_MDV_OID "\" Name=\"trialsync schema\">\n");
    fprintf(f, "   <Protocol>\n");
    int order = 1;
    for (size_t i = 0; i < ntypes; i++) {
        if (!type_clinical(&types[i]))
            continue;
        /* A subject's own data is mandatory; visits and AEs may be absent. */
        fprintf(f, "    <StudyEventRef StudyEventOID=\"SE.%s\" OrderNumber=\"%d\" "
                   "Mandatory=\"%s\"/>\n",
                types[i].domain, order, order == 1 ? "Yes" : "No");
        order++;
    }
    fprintf(f, "   </Protocol>\n");
    for (size_t i = 0; i < ntypes; i++) {
        const struct schema_type *t = &types[i];
        if (!type_clinical(t))
            continue;
        /* Visits repeat (the repeat key is the visit code); AEs are forms
         * repeated within one event; a subject's own data is one event. */
        bool visit = strcmp(t->name, "visit") == 0;
        fprintf(f, "   <StudyEventDef OID=\"SE.%s\" Name=\"%s\" Repeating=\"%s\" Type=\"%s\">\n",
                t->domain, t->name, visit ? "Yes" : "No", visit ? "Scheduled" : "Common");
        fprintf(f, "    <FormRef FormOID=\"F.%s\" Mandatory=\"Yes\"/>\n", t->domain);
        fprintf(f, "   </StudyEventDef>\n");
    }
    for (size_t i = 0; i < ntypes; i++) {
        const struct schema_type *t = &types[i];
        if (!type_clinical(t))
            continue;
        fprintf(f, "   <FormDef OID=\"F.%s\" Name=\"%s\" Repeating=\"%s\">\n", t->domain,
                t->name, strcmp(t->name, "ae") == 0 ? "Yes" : "No");
        fprintf(f, "    <ItemGroupRef ItemGroupOID=\"IG.%s\" Mandatory=\"Yes\"/>\n", t->domain);
        fprintf(f, "   </FormDef>\n");
    }
    for (size_t i = 0; i < ntypes; i++) {
        const struct schema_type *t = &types[i];
        if (!type_clinical(t))
            continue;
        fprintf(f, "   <ItemGroupDef OID=\"IG.%s\" Name=\"%s\" Repeating=\"No\" "
                   "SASDatasetName=\"%s\" Domain=\"%s\">\n",
                t->domain, t->domain, t->domain, t->domain);
        for (size_t k = 0; k < t->count; k++) {
            char name[TS_FIELD_BYTES_MAX + 1];
            field_name(&t->fields[k], name);
            fprintf(f, "    <ItemRef ItemOID=\"IT.%s.%s\" OrderNumber=\"%zu\" Mandatory=\"%s\"/>\n",
                    t->domain, name, k + 1, t->fields[k].optional ? "No" : "Yes");
        }
        fprintf(f, "   </ItemGroupDef>\n");
    }
    for (size_t i = 0; i < ntypes; i++) {
        const struct schema_type *t = &types[i];
        if (!type_clinical(t))
            continue;
        for (size_t k = 0; k < t->count; k++) {
            const struct schema_field *fd = &t->fields[k];
            char name[TS_FIELD_BYTES_MAX + 1];
            field_name(fd, name);
            fprintf(f, "   <ItemDef OID=\"IT.%s.%s\" Name=\"%s\" DataType=\"%s\"", t->domain,
                    name, name, odm_datatype(fd));
            if (fd->cdisc[0] != '\0' && strlen(fd->cdisc) <= 8)
                fprintf(f, " SASFieldName=\"%s\" SDSVarName=\"%s\"", fd->cdisc, fd->cdisc);
            fprintf(f, ">\n    <Description><TranslatedText xml:lang=\"en\">");
            xml_put(f, fd->label);
            fprintf(f, "</TranslatedText></Description>\n");
            if (fd->terms != NULL)
                fprintf(f, "    <CodeListRef CodeListOID=\"CL.%s.%s\"/>\n", t->domain, name);
            fprintf(f, "   </ItemDef>\n");
        }
    }
    for (size_t i = 0; i < ntypes; i++) {
        const struct schema_type *t = &types[i];
        if (!type_clinical(t))
            continue;
        for (size_t k = 0; k < t->count; k++) {
            const struct schema_field *fd = &t->fields[k];
            if (fd->terms == NULL)
                continue;
            char name[TS_FIELD_BYTES_MAX + 1];
            field_name(fd, name);
            fprintf(f, "   <CodeList OID=\"CL.%s.%s\" Name=\"%s\" DataType=\"text\">\n",
                    t->domain, name, name);
            for (size_t v = 0; fd->terms[v].value != NULL; v++) {
                fprintf(f, "    <EnumeratedItem CodedValue=\"");
                xml_put(f, fd->terms[v].value);
                fprintf(f, "\"/>\n");
            }
            fprintf(f, "   </CodeList>\n");
        }
    }
    fprintf(f, "  </MetaDataVersion>\n");
}

/* One Location per site in the membership (the export's site only, when filtered). */
static int odm_location_cb(void *ctx, const char *type, const char *id)
{
    struct exporter *x = ctx;
    (void)type;
    if (x->site != NULL && strcmp(id, x->site) != 0)
        return 0;
    int rc = rec_load(x, SCHEMA_MEMBER_TYPE, id);
    if (rc != 0)
        return rc;
    const char *name = rec_value(&x->rec, "name");
    FILE *f = x->out;
    fprintf(f, "  <Location OID=\"LOC.");
    xml_put(f, id);
    fprintf(f, "\" Name=\"");
    xml_put(f, name != NULL && name[0] != '\0' ? name : id);
    fprintf(f, "\" LocationType=\"Site\">\n");
    fprintf(f, "   <MetaDataVersionRef StudyOID=\"ST.");
    xml_put(f, x->cfg->trial);
    fprintf(f, "\" MetaDataVersionOID=\"" ODM_MDV_OID "\" EffectiveDate=\"%.10s\"/>\n",
            x->created);
    fprintf(f, "  </Location>\n");
    return 0;
}

/* Distinct users (and nodes) one odm-audit file may name; far above a trial's. */
#define EXPORT_NAMES_MAX 65536
_Static_assert(EXPORT_FIELDS_MAX <= 64, "odma.fields_written is a 64-bit mask");

static int name_set_add(struct name_set *s, const char *name)
{
    size_t lo = 0, hi = s->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->v[mid], name);
        if (c == 0)
            return 0;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (s->count == EXPORT_NAMES_MAX)
        return TS_ERR_TOOBIG;
    if (s->count == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        char **nv = realloc(s->v, cap * sizeof(*nv));
        if (nv == NULL)
            return TS_ERR_NOMEM;
        s->v = nv;
        s->cap = cap;
    }
    char *copy = strdup(name);
    if (copy == NULL)
        return TS_ERR_NOMEM;
    memmove(&s->v[lo + 1], &s->v[lo], (s->count - lo) * sizeof(*s->v));
    s->v[lo] = copy;
    s->count++;
    return 0;
}

static void name_set_release(struct name_set *s)
{
    for (size_t i = 0; i < s->count; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof(*s));
}

/* ---- signatures and SDV marks (node/esign.h) ------------------------------ */

/*
 * A signature names what it signed (a subject's casebook or a visit) and is
 * valid while those versions are shown; an SDV mark names the fields of a
 * subject, visit or AE it verified.  Both are read with esign_list and
 * esign_sdv_list, only for subjects that have any (their walks say so), so
 * a trial without them costs nothing.  ODM: the newest valid signature of a
 * record is its element's Signature (UserRef the signer, LocationRef the
 * subject's site, the only node that writes its signatures, SignatureRef
 * SD.<meaning>, DateTimeStamp the signing time); every signature and SDV
 * mark, with its derived state, is an Annotation of that element.
 */

/* a, or NULL (a released) when a is an empty array. */
static json_t *nonempty(json_t *a)
{
    if (a != NULL && json_array_size(a) == 0) {
        json_decref(a);
        return NULL;
    }
    return a;
}

/* The record's signatures, SDV marks (NULL when it has none or cannot carry one). */
static json_t *marks_sigs(const struct exporter *x, const char *type, const char *id)
{
    return x->subject_sigs ? nonempty(esign_list(x->store, type, id)) : NULL;
}

static json_t *marks_sdv(const struct exporter *x, const char *type, const char *id)
{
    return x->subject_sdv ? nonempty(esign_sdv_list(x->store, type, id)) : NULL;
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v != NULL ? v : "";
}

/* The newest valid signature of sigs (ids are numbered in order), or NULL. */
static const json_t *sig_newest_valid(const json_t *sigs)
{
    const json_t *best = NULL;
    size_t i;
    const json_t *sg;
    json_array_foreach(sigs, i, sg) {
        if (strcmp(jstr(sg, "state"), "valid") == 0 &&
            (best == NULL || strcmp(jstr(sg, "id"), jstr(best, "id")) > 0))
            best = sg;
    }
    return best;
}

/* The User OID of an entry's user; "USR" alone for an entry that names none. */
static void odma_user_oid(FILE *f, const char *user)
{
    fputs(user[0] != '\0' ? "USR." : "USR", f);
    xml_put(f, user);
}

/* A Signature element for sg, a signature of a record of subject. */
static void odm_signature(FILE *f, const json_t *sg, const char *subject)
{
    char site[TS_ID_BYTES_MAX + 1];
    if (!schema_site_of_key(subject, site))
        site[0] = '\0';
    fputs("<Signature><UserRef UserOID=\"", f);
    odma_user_oid(f, jstr(sg, "user"));
    fputs("\"/><LocationRef LocationOID=\"LOC.", f);
    xml_put(f, site);
    fputs("\"/><SignatureRef SignatureOID=\"SD.", f);
    xml_put(f, jstr(sg, "meaning"));
    fputs("\"/><DateTimeStamp>", f);
    xml_put(f, jstr(sg, "signed_at"));
    fputs("</DateTimeStamp></Signature>", f);
}

/* The Signature line of an element: the newest valid of sigs, if any. */
static void odm_signature_line(struct exporter *x, const json_t *sigs, const char *subject,
                               const char *indent)
{
    const json_t *best = sigs != NULL ? sig_newest_valid(sigs) : NULL;
    if (best == NULL)
        return;
    fputs(indent, x->out);
    odm_signature(x->out, best, subject);
    fputc('\n', x->out);
}

/* The Annotations of an element: each signature and SDV mark with its state. */
static void odm_marks(struct exporter *x, const json_t *sigs, const json_t *sdv,
                      const char *indent)
{
    FILE *f = x->out;
    size_t seq = 1, i;
    const json_t *m;
    json_array_foreach(sigs, i, m) {
        fprintf(f, "%s<Annotation SeqNum=\"%zu\"><Comment SponsorOrSite=\"Site\">", indent, seq++);
        fputs("signature ", f);
        xml_put(f, jstr(m, "id"));
        fputs(" (", f);
        xml_put(f, jstr(m, "meaning"));
        fputs(") by ", f);
        xml_put(f, jstr(m, "user"));
        fputs(" (", f);
        xml_put(f, jstr(m, "name"));
        fputs(") at ", f);
        xml_put(f, jstr(m, "signed_at"));
        fputs(": ", f);
        xml_put(f, jstr(m, "state"));
        fputs("</Comment></Annotation>\n", f);
    }
    json_array_foreach(sdv, i, m) {
        fprintf(f, "%s<Annotation SeqNum=\"%zu\"><Comment SponsorOrSite=\"Sponsor\">", indent,
                seq++);
        fputs("SDV ", f);
        xml_put(f, jstr(m, "id"));
        fputs(" of ", f);
        const char *fields = jstr(m, "fields");
        xml_put(f, fields[0] != '\0' ? fields : "every field");
        fputs(" by ", f);
        xml_put(f, jstr(m, "user"));
        fputs(" at ", f);
        xml_put(f, jstr(m, "verified_at"));
        fputs(": ", f);
        xml_put(f, jstr(m, "state"));
        fputs("</Comment></Annotation>\n", f);
    }
}

/* The current record's items, in table order, conflicts annotated. */
static void odm_items(struct exporter *x)
{
    FILE *f = x->out;
    const struct schema_type *t = x->rec.type;
    for (size_t k = 0; k < t->count; k++) {
        const struct rec_field *rf = &x->rec.f[k];
        if (rf->value == NULL)
            continue;
        char name[TS_FIELD_BYTES_MAX + 1];
        field_name(&t->fields[k], name);
        /* fputs, not fprintf: this line is most of an ODM file. */
        fputs("       <ItemData ItemOID=\"IT.", f);
        fputs(t->domain, f);
        fputc('.', f);
        fputs(name, f);
        fputs("\" Value=\"", f);
        xml_put(f, rf->value);
        if (!rf->conflict) {
            fputs("\"/>\n", f);
            continue;
        }
        fputs("\">\n        <Annotation SeqNum=\"1\"><Comment SponsorOrSite=\"Sponsor\">", f);
        xml_put(f, rf->live);
        fputs("</Comment></Annotation>\n       </ItemData>\n", f);
    }
}

static void odm_group(struct exporter *x, const char *indent)
{
    fprintf(x->out, "%s<ItemGroupData ItemGroupOID=\"IG.%s\">\n", indent, x->rec.type->domain);
    odm_items(x);
    fprintf(x->out, "%s</ItemGroupData>\n", indent);
}

static int odm_visit(struct exporter *x, struct store_walk *w)
{
    int rc = rec_load_walk(x, w);
    if (rc != 0 || !x->rec.held)
        return rc;
    const char *id = store_walk_id(w);
    const char *code = strchr(id, '/');
    FILE *f = x->out;
    fprintf(f, "    <StudyEventData StudyEventOID=\"SE.%s\" StudyEventRepeatKey=\"",
            x->rec.type->domain);
    xml_put(f, code != NULL ? code + 1 : id);
    fputs("\">\n", f);
    json_t *sigs = marks_sigs(x, "visit", id), *sdv = marks_sdv(x, "visit", id);
    odm_signature_line(x, sigs, x->odma.subject, "     ");
    odm_marks(x, sigs, sdv, "     ");
    json_decref(sigs);
    json_decref(sdv);
    fprintf(f, "     <FormData FormOID=\"F.%s\">\n", x->rec.type->domain);
    odm_group(x, "      ");
    fprintf(f, "     </FormData>\n    </StudyEventData>\n");
    x->records++;
    return 0;
}

static int odm_ae(struct exporter *x, struct store_walk *w)
{
    int rc = rec_load_walk(x, w);
    if (rc != 0 || !x->rec.held)
        return rc;
    const char *id = store_walk_id(w);
    const char *num = strstr(id, "-AE-");
    FILE *f = x->out;
    /* The AE event is opened by the subject's first AE (none: no event). */
    if (!x->ae_event)
        fprintf(f, "   <StudyEventData StudyEventOID=\"SE.%s\">\n", x->rec.type->domain);
    x->ae_event = true;
    fprintf(f, "     <FormData FormOID=\"F.%s\" FormRepeatKey=\"", x->rec.type->domain);
    xml_put(f, num != NULL ? num + 4 : id);
    fprintf(f, "\">\n");
    json_t *sdv = marks_sdv(x, "ae", id);
    odm_marks(x, NULL, sdv, "      ");
    json_decref(sdv);
    odm_group(x, "      ");
    fprintf(f, "     </FormData>\n");
    x->records++;
    return 0;
}

static int odm_subject(struct exporter *x, const char *id)
{
    int rc = rec_load_walk(x, x->walk[W_SUBJECT]);
    if (rc != 0 || !x->rec.held)
        return rc;
    FILE *f = x->out;
    const char *site = rec_value(&x->rec, "site");
    fprintf(f, "  <SubjectData SubjectKey=\"");
    xml_put(f, id);
    fprintf(f, "\">\n");
    x->odma.subject = id;
    json_t *sigs = marks_sigs(x, "subject", id), *sdv = marks_sdv(x, "subject", id);
    odm_signature_line(x, sigs, id, "   ");
    if (site != NULL) {
        fprintf(f, "   <SiteRef LocationOID=\"LOC.");
        xml_put(f, site);
        fprintf(f, "\"/>\n");
    }
    odm_marks(x, sigs, sdv, "   ");
    json_decref(sigs);
    json_decref(sdv);
    fprintf(f, "   <StudyEventData StudyEventOID=\"SE.%s\">\n    <FormData FormOID=\"F.%s\">\n",
            x->rec.type->domain, x->rec.type->domain);
    odm_group(x, "     ");
    fprintf(f, "    </FormData>\n   </StudyEventData>\n");
    x->records++;

    rc = walk_children(x, W_VISIT, id, odm_visit);
    if (rc != 0)
        return rc;
    x->ae_event = false;
    rc = walk_children(x, W_AE, id, odm_ae);
    if (x->ae_event)
        fprintf(f, "   </StudyEventData>\n");
    if (rc == 0)
        fprintf(f, "  </SubjectData>\n");
    return rc;
}

/*
 * The users who signed the exported subjects' records (AdminData's Users a
 * Signature names): the user of the entry that wrote each signature's
 * target, as esign_list reports it.  One walk over the signatures, which are
 * few; nothing at a past --as-of.
 */
static int signers_collect(struct exporter *x, struct name_set *users)
{
    if (x->as_of_ms >= 0)
        return 0;
    struct store_walk *w;
    int rc = store_walk_open(x->store, SCHEMA_SIGNATURE_TYPE, &w);
    for (const char *id; rc == 0 && (id = store_walk_id(w)) != NULL;) {
        char subj[TS_ID_BYTES_MAX + 1];
        if (subject_of(SCHEMA_SIGNATURE_TYPE, id, subj) && subject_wanted(x, subj)) {
            rc = rec_load_walk(x, w);
            const char *target = rec_value(&x->rec, "target");
            struct entry e;
            memset(&e, 0, sizeof(e));
            if (rc == 0 && target != NULL) {
                struct ts_error err = {0};
                const struct schema_field *tf = schema_field_find(x->rec.type, "target");
                rc = store_entry_get(x->store, &x->rec.f[tf - x->rec.type->fields].shown, &e,
                                     &err);
                if (rc == 0)
                    rc = name_set_add(users, e.user);
                x->any_sigs = true;
            }
            entry_release(&e);
        }
        if (rc == 0)
            rc = store_walk_next(w);
    }
    store_walk_close(w);
    return rc;
}

/* A User per name (LoginName; an entry that names none is the system's). */
static void odm_users(struct exporter *x, const struct name_set *users)
{
    FILE *f = x->out;
    for (size_t i = 0; i < users->count; i++) {
        const char *user = users->v[i];
        fputs("  <User OID=\"", f);
        odma_user_oid(f, user);
        fputs("\">", f);
        if (user[0] != '\0') {
            fputs("<LoginName>", f);
            xml_put(f, user);
            fputs("</LoginName>", f);
        } else {
            fputs("<DisplayName>no user named (written by the system)</DisplayName>", f);
        }
        fputs("</User>\n", f);
    }
}

/* A SignatureDef SD.<meaning> per meaning of the schema, when any signature is named. */
static void odm_signature_defs(struct exporter *x)
{
    if (!x->any_sigs)
        return;
    const struct schema_field *mf = schema_field(SCHEMA_SIGNATURE_TYPE, "meaning");
    assert(mf != NULL && mf->terms != NULL);
    for (size_t v = 0; mf->terms[v].value != NULL; v++) {
        const char *m = mf->terms[v].value;
        fputs("  <SignatureDef OID=\"SD.", x->out);
        xml_put(x->out, m);
        fputs("\" Methodology=\"Electronic\"><Meaning>", x->out);
        xml_put(x->out, m);
        fputs("</Meaning><LegalReason>21 CFR Part 11 electronic signature (11.50: ", x->out);
        xml_put(x->out, m);
        fputs(")</LegalReason></SignatureDef>\n", x->out);
    }
}

/*
 * Writes the ODM root and the Study's GlobalVariables, the same for every
 * ODM file: file_type is "Snapshot" or "Transactional", kind names the file
 * in its FileOID, description ends the StudyDescription.
 */
static void odm_open(struct exporter *x, const char *file_type, const char *kind,
                     const char *description)
{
    FILE *f = x->out;
    const char *trial = x->cfg->trial;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(f, "<ODM xmlns=\"" ODM_NS "\" FileType=\"%s\" FileOID=\"trialsync.", file_type);
    xml_put(f, trial);
    fprintf(f, ".%s.", kind);
    xml_put(f, x->site != NULL ? x->site : "all");
    fprintf(f, ".%s\" CreationDateTime=\"%s\" AsOfDateTime=\"%s\" ODMVersion=\"1.3.2\" "
               "Originator=\"trialsync\" SourceSystem=\"trialsync\" "
               "SourceSystemVersion=\"" EXPORT_SOURCE_VERSION "\">\n",
            x->created, x->created, x->created);
    fprintf(f, " <Study OID=\"ST.");
    xml_put(f, trial);
    fprintf(f, "\">\n  <GlobalVariables>\n   <StudyName>");
    xml_put(f, trial);
    fprintf(f, "</StudyName>\n   <StudyDescription>Trial ");
    xml_put(f, trial);
    fprintf(f, ", %s</StudyDescription>\n   <ProtocolName>", description);
    xml_put(f, trial);
    fprintf(f, "</ProtocolName>\n  </GlobalVariables>\n");
}

static int export_odm(struct exporter *x)
{
    FILE *f = x->out;
    const char *trial = x->cfg->trial;
    odm_open(x, "Snapshot", "odm", "exported by trialsync");
    odm_metadata(x);
    fprintf(f, " </Study>\n <AdminData StudyOID=\"ST.");
    xml_put(f, trial);
    fprintf(f, "\">\n");
    int rc = signers_collect(x, &x->signers);
    if (rc != 0)
        return rc;
    odm_users(x, &x->signers);
    rc = store_records(x->store, SCHEMA_MEMBER_TYPE, odm_location_cb, x);
    if (rc != 0)
        return rc;
    odm_signature_defs(x);
    fprintf(f, " </AdminData>\n <ClinicalData StudyOID=\"ST.");
    xml_put(f, trial);
    fprintf(f, "\" MetaDataVersionOID=\"" ODM_MDV_OID "\">\n");
    rc = walk_export(x, odm_subject);
    if (rc != 0)
        return rc;
    fprintf(f, " </ClinicalData>\n</ODM>\n");
    return 0;
}

/* ---- datasets: SDTM CSV and Dataset-JSON --------------------------------- */

static void col_add(struct table *t, enum col_kind kind, const char *name, const char *label,
                    bool integer)
{
    if (t->ncols == EXPORT_COLUMNS_MAX)
        abort();  /* EXPORT_COLUMNS_MAX is checked against the schema at start */
    struct column *c = &t->cols[t->ncols++];
    memset(c, 0, sizeof(*c));
    c->kind = kind;
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->label = label;
    c->integer = integer;
}

/* The schema's fields of t->type with a CDISC name; DS takes the DS* ones. */
static void col_fields(struct table *t, const char *only_prefix, const char *not_prefix)
{
    const struct schema_type *ty = t->type;
    for (size_t k = 0; k < ty->count; k++) {
        const struct schema_field *f = &ty->fields[k];
        bool want = only_prefix == NULL ? f->cdisc[0] != '\0'
                                        : strncmp(f->cdisc, only_prefix, 2) == 0;
        if (not_prefix != NULL && strncmp(f->cdisc, not_prefix, 2) == 0)
            want = false;
        if (!want)
            continue;
        struct column *c = &t->cols[t->ncols];
        /* Codes stay text (AEPTCD's leading zeros, if any, are kept). */
        col_add(t, COL_FIELD, "", f->label, false);
        field_name(f, c->name);
        c->field = f;
    }
}

static const char label_studyid[] = "Study Identifier";
static const char label_usubjid[] = "Unique Subject Identifier";

/* Starts an SDTM dataset: its domain, label, record type and the identifier
 * columns every domain opens with (STUDYID, DOMAIN, USUBJID). */
static struct table *table_start(struct exporter *x, int which, const char *domain,
                                 const char *label, const char *type)
{
    struct table *t = &x->t[which];
    t->domain = domain;
    t->label = label;
    t->type = type_of(type);
    col_add(t, COL_STUDYID, "STUDYID", label_studyid, false);
    col_add(t, COL_DOMAIN, "DOMAIN", "Domain Abbreviation", false);
    col_add(t, COL_USUBJID, "USUBJID", label_usubjid, false);
    return t;
}

static void tables_define(struct exporter *x)
{
    static const char conflict[] = "Variables with concurrent values (conflict)";
    struct table *t;

    t = table_start(x, T_DM, "DM", "Demographics", "subject");
    col_add(t, COL_SUBJID, "SUBJID", "Subject Identifier for the Study", false);
    col_fields(t, NULL, "DS");
    col_add(t, COL_CONFLICT, "TSCONFL", conflict, false);

    t = table_start(x, T_DS, "DS", "Disposition", "subject");
    col_add(t, COL_SEQ, "DSSEQ", "Sequence Number", true);
    col_add(t, COL_DSTERM, "DSTERM", "Reported Term for the Disposition Event", false);
    col_fields(t, "DS", NULL);
    col_add(t, COL_CONFLICT, "TSCONFL", conflict, false);

    t = table_start(x, T_SV, "SV", "Subject Visits", "visit");
    col_add(t, COL_VISITNUM, "VISITNUM", "Visit Number", false);
    t->cols[t->ncols - 1].decimal = true;
    col_add(t, COL_VISIT, "VISIT", "Visit Name", false);
    col_fields(t, NULL, NULL);
    col_add(t, COL_CONFLICT, "TSCONFL", conflict, false);

    t = table_start(x, T_AE, "AE", "Adverse Events", "ae");
    col_add(t, COL_SEQ, "AESEQ", "Sequence Number", true);
    col_add(t, COL_SPID, "AESPID", "Sponsor-Defined Identifier", false);
    col_fields(t, NULL, NULL);
    col_add(t, COL_CONFLICT, "TSCONFL", conflict, false);

    /* Queries have no SDTM domain: every field of the schema, by its own name. */
    t = &x->t[T_QUERIES];
    t->domain = "QUERIES";
    t->label = "Data queries";
    t->type = type_of(SCHEMA_QUERY_TYPE);
    col_add(t, COL_STUDYID, "STUDYID", label_studyid, false);
    col_add(t, COL_QUERYID, "QUERYID", "Query identifier", false);
    col_add(t, COL_USUBJID, "USUBJID", label_usubjid, false);
    col_add(t, COL_RECTYPE, "RECTYPE", "Record type the query is about", false);
    col_add(t, COL_RECID, "RECID", "Record the query is about", false);
    col_add(t, COL_VARNAME, "VARNAME", "Variable the query is about", false);
    for (size_t k = 0; k < t->type->count; k++) {
        if (strcmp(t->type->fields[k].name, "target") == 0)
            continue;
        struct column *c = &t->cols[t->ncols];
        col_add(t, COL_FIELD, "", t->type->fields[k].label,
                t->type->fields[k].kind == KIND_ROUND);
        field_name(&t->type->fields[k], c->name);
        c->field = &t->type->fields[k];
    }
    col_add(t, COL_CONFLICT, "TSCONFL", conflict, false);
}

static int table_open(struct exporter *x, struct table *t, const char *dir)
{
    bool json = x->format == EXPORT_DATASET_JSON;
    char lower[16];
    size_t i = 0;
    for (; t->domain[i] != '\0' && i < sizeof(lower) - 1; i++)
        lower[i] = (char)(t->domain[i] >= 'A' && t->domain[i] <= 'Z' ? t->domain[i] - 'A' + 'a'
                                                                     : t->domain[i]);
    lower[i] = '\0';
    if ((size_t)snprintf(t->path, sizeof(t->path), "%s/%s.%s", dir, lower,
                         json ? "json" : "csv") >= sizeof(t->path))
        return cli_fail("output path too long: %s", dir);
    t->f = fopen(t->path, "w");
    if (t->f == NULL)
        return cli_fail("cannot write %s: %s", t->path, strerror(errno));
    setvbuf(t->f, NULL, _IOFBF, EXPORT_BUFFER_BYTES);
    FILE *f = t->f;
    if (!json) {
        for (size_t c = 0; c < t->ncols; c++) {
            fputs(c ? "," : "", f);
            csv_put(f, t->cols[c].name);
        }
        fputs("\r\n", f);
        return 0;
    }
    fprintf(f, "{\"datasetJSONCreationDateTime\":\"%s\",\"datasetJSONVersion\":\"1.1.0\","
               "\"fileOID\":",
            x->created);
    char oid[PATH_MAX];
    snprintf(oid, sizeof(oid), "trialsync.%s.%s.%s.%s", x->cfg->trial,
             x->site != NULL ? x->site : "all", t->domain, x->created);
    json_put(f, oid);
    fprintf(f, ",\"dbLastModifiedDateTime\":\"%s\",\"originator\":\"trialsync\","
               "\"sourceSystem\":{\"name\":\"trialsync\",\"version\":\"" EXPORT_SOURCE_VERSION
               "\"},\"studyOID\":",
            x->created);
    snprintf(oid, sizeof(oid), "ST.%s", x->cfg->trial);
    json_put(f, oid);
    fprintf(f, ",\"metaDataVersionOID\":\"" ODM_MDV_OID "\",\"itemGroupOID\":\"IG.%s\","
               "\"name\":\"%s\",\"label\":",
            t->domain, t->domain);
    json_put(f, t->label);
    fputs(",\"columns\":[", f);
    for (size_t c = 0; c < t->ncols; c++) {
        fprintf(f, "%s\n{\"itemOID\":\"IT.%s.%s\",\"name\":\"%s\",\"label\":", c ? "," : "",
                t->domain, t->cols[c].name, t->cols[c].name);
        json_put(f, t->cols[c].label);
        fprintf(f, ",\"dataType\":\"%s\"",
                t->cols[c].integer ? "integer" : t->cols[c].decimal ? "decimal" : "string");
        if (t->cols[c].kind == COL_STUDYID)
            fputs(",\"keySequence\":1", f);
        else if (t->cols[c].kind == COL_USUBJID)
            fputs(",\"keySequence\":2", f);
        fputc('}', f);
    }
    fputs("],\n\"rows\":[", f);
    return 0;
}

static int table_close(struct exporter *x, struct table *t)
{
    if (t->f == NULL)
        return 0;
    if (x->format == EXPORT_DATASET_JSON)
        fprintf(t->f, "],\n\"records\":%" PRIu64 "}\n", t->rows);
    bool failed = ferror(t->f) != 0;
    if (fclose(t->f) != 0)
        failed = true;
    t->f = NULL;
    if (failed)
        return cli_fail("cannot write %s: %s", t->path, strerror(errno));
    return 0;
}

/* Digits of a visit number's whole part at most (a 32-bit value). */
#define EXPORT_VISITNUM_DIGITS_MAX 9
/* Repeats a visit number can tell apart in its two decimal places. */
#define EXPORT_VISITNUM_REPEAT_MAX 99

/*
 * VISITNUM from the visit code (the key's part after the subject,
 * "<code>[/<repeat>]"), the same on every node: the number the code ends
 * with, leading zeros dropped (V3 -> 3, WEEK012 -> 12, V0 -> 0); a repeat r
 * (1..99) adds r/100 (V3/2 -> 3.02), so repeats sort after their visit and
 * before the next.  A code that ends in no digit (SCR, EOT), a number of more
 * than 9 digits or a repeat outside 1..99 has no number: "" (missing).
 */
static const char *visit_number(const char *code, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (code == NULL)
        return buf;
    const char *slash = strchr(code, '/');
    size_t len = slash != NULL ? (size_t)(slash - code) : strlen(code);
    size_t digits = 0;
    while (digits < len && code[len - 1 - digits] >= '0' && code[len - 1 - digits] <= '9')
        digits++;
    if (digits == 0)
        return buf;
    const char *num = code + len - digits;
    while (digits > 1 && num[0] == '0') {
        num++;
        digits--;
    }
    if (digits > EXPORT_VISITNUM_DIGITS_MAX)
        return buf;
    unsigned long repeat = 0;
    if (slash != NULL) {
        const char *r = slash + 1;
        if (r[0] == '\0' || strspn(r, "0123456789") != strlen(r) ||
            strlen(r) > EXPORT_VISITNUM_DIGITS_MAX)
            return buf;
        repeat = strtoul(r, NULL, 10);
        if (repeat < 1 || repeat > EXPORT_VISITNUM_REPEAT_MAX)
            return buf;
    }
    if (repeat == 0)
        snprintf(buf, cap, "%.*s", (int)digits, num);
    else
        snprintf(buf, cap, "%.*s.%02lu", (int)digits, num, repeat);
    return buf;
}

/* What a row's key columns show. */
struct row_keys {
    const char *id;        /* the record's id */
    const char *subject;
    const char *number;    /* AE number, visit code */
    const char *seq;       /* AESEQ; NULL for 1 */
    const char *target_type;
    const char *target_id;
    const char *target_var;
};

static void table_row(struct exporter *x, struct table *t, const struct row_keys *k)
{
    FILE *f = t->f;
    bool json = x->format == EXPORT_DATASET_JSON;
    char usubjid[2 * TS_ID_BYTES_MAX + 2] = "";
    if (k->subject != NULL)
        snprintf(usubjid, sizeof(usubjid), "%s-%s", x->cfg->trial, k->subject);
    fputs(json ? (t->rows ? ",\n[" : "\n[") : "", f);
    for (size_t c = 0; c < t->ncols; c++) {
        const struct column *col = &t->cols[c];
        const char *v = "";
        char buf[512];
        switch (col->kind) {
        case COL_FIELD: {
            const struct rec_field *rf = &x->rec.f[col->field - x->rec.type->fields];
            v = rf->value != NULL ? rf->value : "";
            break;
        }
        case COL_STUDYID: v = x->cfg->trial; break;
        case COL_DOMAIN: v = t->domain; break;
        case COL_USUBJID: v = usubjid; break;
        case COL_SUBJID: v = k->subject; break;
        case COL_SEQ: v = k->seq != NULL ? k->seq : "1"; break;
        case COL_SPID: v = k->number; break;
        case COL_VISIT: v = k->number; break;
        case COL_VISITNUM: v = visit_number(k->number, buf, sizeof(buf)); break;
        case COL_DSTERM: v = rec_value(&x->rec, "dsdecod"); break;
        case COL_QUERYID: v = k->id; break;
        case COL_RECTYPE: v = k->target_type; break;
        case COL_RECID: v = k->target_id; break;
        case COL_VARNAME: v = k->target_var; break;
        case COL_CONFLICT: {
            size_t n = 0;
            buf[0] = '\0';
            for (size_t d = 0; d < t->ncols; d++) {
                const struct column *fc = &t->cols[d];
                if (fc->kind != COL_FIELD ||
                    !x->rec.f[fc->field - x->rec.type->fields].conflict)
                    continue;
                n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", n ? " " : "", fc->name);
                if (n >= sizeof(buf))
                    break;
            }
            v = buf;
            break;
        }
        }
        if (v == NULL)
            v = "";
        if (json) {
            fputs(c ? "," : "", f);
            if (col->integer && v[0] != '\0' && strspn(v, "0123456789") == strlen(v) &&
                strlen(v) < 16)
                fprintf(f, "%" PRIu64, (uint64_t)strtoull(v, NULL, 10));
            else
                json_put(f, v);
        } else {
            fputs(c ? "," : "", f);
            csv_put(f, v);
        }
    }
    fputs(json ? "]" : "\r\n", f);
    t->rows++;
}

static int ds_visit(struct exporter *x, struct store_walk *w)
{
    int rc = rec_load_walk(x, w);
    if (rc != 0 || !x->rec.held || rec_eie(&x->rec))
        return rc;
    const char *type = store_walk_type(w), *id = store_walk_id(w);
    char subj[TS_ID_BYTES_MAX + 1];
    if (!subject_of(type, id, subj))
        return 0;
    const char *slash = strchr(id, '/');
    struct row_keys k = {.id = id, .subject = subj, .number = slash + 1};
    table_row(x, &x->t[T_SV], &k);
    x->records++;
    return 0;
}

static int ds_ae(struct exporter *x, struct store_walk *w)
{
    int rc = rec_load_walk(x, w);
    if (rc != 0 || !x->rec.held || rec_eie(&x->rec))
        return rc;
    const char *type = store_walk_type(w), *id = store_walk_id(w);
    char subj[TS_ID_BYTES_MAX + 1];
    if (!subject_of(type, id, subj))
        return 0;
    const char *num = strstr(id, "-AE-") + 4;
    /* AESEQ is the AE number without its leading zeros; AESPID keeps them. */
    const char *seq = num;
    while (seq[0] == '0' && seq[1] != '\0')
        seq++;
    struct row_keys k = {.id = id, .subject = subj, .number = num, .seq = seq};
    table_row(x, &x->t[T_AE], &k);
    x->records++;
    return 0;
}

static int ds_subject(struct exporter *x, const char *id)
{
    int rc = rec_load_walk(x, x->walk[W_SUBJECT]);
    /* An entered-in-error subject takes its visits and AEs with it. */
    if (rc != 0 || !x->rec.held || rec_eie(&x->rec))
        return rc;
    struct row_keys k = {.id = id, .subject = id};
    table_row(x, &x->t[T_DM], &k);
    const char *ds = rec_value(&x->rec, "dsdecod");
    if (ds != NULL && ds[0] != '\0')
        table_row(x, &x->t[T_DS], &k);
    x->records++;
    rc = walk_children(x, W_VISIT, id, ds_visit);
    return rc != 0 ? rc : walk_children(x, W_AE, id, ds_ae);
}

static int ds_query(struct exporter *x, struct store_walk *w)
{
    int rc = rec_load_walk(x, w);
    if (rc != 0 || !x->rec.held)
        return rc;
    const char *id = store_walk_id(w);
    const char *target = rec_value(&x->rec, "target");
    if (!target_wanted(x, target))
        return 0;
    char ttype[TS_TYPE_BYTES_MAX + 1] = "", tid[TS_ID_BYTES_MAX + 1] = "";
    char subj[TS_ID_BYTES_MAX + 1] = "", var[TS_FIELD_BYTES_MAX + 1] = "";
    const char *field = NULL;
    if (target != NULL && schema_target_split(target, ttype, tid, &field)) {
        subject_of(ttype, tid, subj);
        const struct schema_field *f = schema_field(ttype, field);
        if (f != NULL)
            field_name(f, var);
        else
            snprintf(var, sizeof(var), "%s", field);
    }
    struct row_keys k = {.id = id, .subject = subj[0] ? subj : NULL, .target_type = ttype,
                         .target_id = tid, .target_var = var};
    table_row(x, &x->t[T_QUERIES], &k);
    x->records++;
    return 0;
}

static int export_datasets(struct exporter *x, const char *dir)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return cli_fail("cannot create %s: %s", dir, strerror(errno));
    tables_define(x);
    int rc = 0;
    for (int i = 0; i < T_COUNT && rc == 0; i++)
        rc = table_open(x, &x->t[i], dir);
    if (rc == 0) {
        rc = walk_export(x, ds_subject);
        struct store_walk *q = NULL;
        if (rc == 0)
            rc = store_walk_open(x->store, SCHEMA_QUERY_TYPE, &q);
        while (rc == 0 && store_walk_id(q) != NULL) {
            rc = ds_query(x, q);
            if (rc == 0)
                rc = store_walk_next(q);
        }
        store_walk_close(q);
        if (rc != 0)
            rc = cli_fail("cannot read the store: error %d", rc);
    }
    for (int i = 0; i < T_COUNT; i++) {
        int rc2 = table_close(x, &x->t[i]);
        if (rc == 0)
            rc = rc2;
    }
    return rc;
}

/* ---- audit trail ---------------------------------------------------------- */

static const char *const audit_columns[] = {
    "record_type", "record_id", "field", "old", "new", "user", "role", "node", "lane", "seq",
    "event_time", "entry_time", "reason", "entry_hash",
};
#define AUDIT_COLUMNS (sizeof(audit_columns) / sizeof(audit_columns[0]))

static void audit_writes_clear(struct exporter *x)
{
    for (size_t i = 0; i < x->writes_count; i++)
        free(x->writes[i].value);
    x->writes_count = 0;
}

/* The role of the node that wrote an entry: a site when the membership names it. */
static const char *origin_role(struct exporter *x, const char *origin)
{
    if (strcmp(x->last_origin, origin) != 0) {
        snprintf(x->last_origin, sizeof(x->last_origin), "%s", origin);
        x->last_origin_site = store_record_exists(x->store, SCHEMA_MEMBER_TYPE, origin);
    }
    return x->last_origin_site ? "site" : "hub";
}

/* The values of the writes w supersedes, joined by " | " into buf. */
static const char *audit_old(struct exporter *x, const struct field_write *w, char *buf,
                             size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t s = 0; s < w->supersedes_count; s++) {
        for (size_t i = 0; i < x->writes_count; i++) {
            if (strcmp(x->writes[i].field, w->field) != 0 ||
                entry_ref_cmp(&x->writes[i].ref, &w->supersedes[s]) != 0)
                continue;
            if (n < cap)
                n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? " | " : "",
                                      x->writes[i].value);
            break;
        }
    }
    return buf;
}

/* Lower-case hex of a chain hash. */
static void hash_hex(const uint8_t h[TS_HASH_BYTES], char out[2 * TS_HASH_BYTES + 1])
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < TS_HASH_BYTES; i++) {
        out[2 * i] = hex[h[i] >> 4];
        out[2 * i + 1] = hex[h[i] & 15];
    }
    out[2 * TS_HASH_BYTES] = '\0';
}

static int audit_entry_cb(void *ctx, const struct entry *e, const uint8_t h[TS_HASH_BYTES],
                          uint64_t stored_ms)
{
    struct exporter *x = ctx;
    (void)stored_ms;  /* this node's receive time: differs between nodes */
    if (!entry_in_time(x, e))
        return 0;  /* at --as-of the store did not hold it yet */
    bool wanted = true;
    int64_t event_ms = (int64_t)hlc_ms(e->hlc);
    /* --user NAME: NAME's own writes, and the integration credential's on NAME's
     * behalf. */
    const char *on_behalf = NULL;
    if (x->user != NULL && strcmp(x->user, e->user) != 0 &&
        !(schema_user_is_integration(e->user, &on_behalf) && strcmp(x->user, on_behalf) == 0))
        wanted = false;
    if (x->since_ms >= 0 && event_ms < x->since_ms)
        wanted = false;
    if (x->until_ms >= 0 && event_ms > x->until_ms)
        wanted = false;
    char event[32], entry[32], hash[2 * TS_HASH_BYTES + 1], lane[8], seq[24];
    time_iso((uint64_t)event_ms, event);
    time_iso(e->wall_ms, entry);
    struct entry_ref ref;
    memset(&ref, 0, sizeof(ref));
    snprintf(ref.origin, sizeof(ref.origin), "%s", e->origin);
    ref.lane = e->lane;
    ref.seq = e->seq;
    hash_hex(h, hash);
    snprintf(lane, sizeof(lane), "%s", e->lane == LANE_SAFETY ? "safety" : "bulk");
    snprintf(seq, sizeof(seq), "%" PRIu64, e->seq);
    for (size_t w = 0; w < e->writes_count; w++) {
        const struct field_write *fw = &e->writes[w];
        if (wanted) {
            char old[4096];
            const char *vals[AUDIT_COLUMNS] = {
                e->record_type, e->record_id, fw->field, audit_old(x, fw, old, sizeof(old)),
                fw->value, e->user, origin_role(x, e->origin), e->origin, lane, seq, event,
                entry, e->reason, hash,
            };
            if (x->ndjson) {
                fputc('{', x->out);
                for (size_t c = 0; c < AUDIT_COLUMNS; c++) {
                    fprintf(x->out, "%s\"%s\":", c ? "," : "", audit_columns[c]);
                    json_put(x->out, vals[c]);
                }
                fputs("}\n", x->out);
            } else {
                for (size_t c = 0; c < AUDIT_COLUMNS; c++) {
                    fputs(c ? "," : "", x->out);
                    csv_put(x->out, vals[c]);
                }
                fputs("\r\n", x->out);
            }
            x->records++;
        }
        /* Remembered for the "old" of later writes, wanted or not. */
        if (x->writes_count == EXPORT_AUDIT_WRITES_MAX)
            continue;
        if (x->writes_count == x->writes_cap) {
            size_t cap = x->writes_cap ? 2 * x->writes_cap : 64;
            struct audit_write *nw = realloc(x->writes, cap * sizeof(*nw));
            if (nw == NULL)
                return TS_ERR_NOMEM;
            x->writes = nw;
            x->writes_cap = cap;
        }
        struct audit_write *aw = &x->writes[x->writes_count];
        aw->value = strdup(fw->value);
        if (aw->value == NULL)
            return TS_ERR_NOMEM;
        aw->ref = ref;
        snprintf(aw->field, sizeof(aw->field), "%s", fw->field);
        x->writes_count++;
    }
    return 0;
}

static int audit_record(struct exporter *x, struct store_walk *w)
{
    const char *type = store_walk_type(w), *id = store_walk_id(w);
    const struct schema_type *t = schema_type_find(type);
    char subj[TS_ID_BYTES_MAX + 1];
    if (x->site != NULL || x->subject != NULL) {
        if (t == NULL || !t->site_scoped)
            return 0;
        if (strcmp(type, SCHEMA_QUERY_TYPE) == 0) {
            struct field_state st = {0};
            bool ok = false;
            if (store_field_get(x->store, type, id, "target", &st) == 0) {
                int shown = merge_display(type, "target", &st);
                ok = shown >= 0 && target_wanted(x, st.live[shown].value);
            }
            field_state_release(&st);
            if (!ok)
                return 0;
        } else if (!subject_of(type, id, subj) || !subject_wanted(x, subj)) {
            return 0;
        }
    }
    audit_writes_clear(x);
    int rc = store_walk_history(w, audit_entry_cb, x);
    audit_writes_clear(x);
    return rc == TS_ERR_NOTFOUND ? 0 : rc;
}

static int export_audit(struct exporter *x)
{
    if (!x->ndjson) {
        for (size_t c = 0; c < AUDIT_COLUMNS; c++) {
            fputs(c ? "," : "", x->out);
            csv_put(x->out, audit_columns[c]);
        }
        fputs("\r\n", x->out);
    }
    struct store_walk *w;
    int rc = store_walk_open(x->store, "", &w);
    while (rc == 0 && store_walk_id(w) != NULL) {
        rc = audit_record(x, w);
        if (rc == 0)
            rc = store_walk_next(w);
    }
    store_walk_close(w);
    free(x->writes);
    x->writes = NULL;
    return rc;
}

/* ---- ODM transactional: every version of every item (odm-audit) ----------- */

/*
 * One SubjectData per entry of the store's history (store_record_history):
 * subjects by id, each with its own history, then each visit's, then each
 * AE's, every history in (hlc, origin, lane, seq) order, so the transactions
 * on one entity appear in the order the store applies them (ODM 1.3.2 2.10).
 * The record's own element (SE.DM's event for a subject, SE.SV's event for a
 * visit, F.AE's form for an AE), its item group and its items carry the
 * record's TransactionType: Insert for its first entry (or the first after a
 * Remove), Remove for an entry that marks it entered in error (eie=Y), Update
 * otherwise; within an Update an item is an Insert when it had no value.
 * The entry's AuditRecord is on the SubjectData (which must have one, as the
 * top-level element with a TransactionType) and on every ItemData.
 * A first pass collects the users and nodes, defined in AdminData as
 * User USR.<user> and Location LOC.<node> before ClinicalData references them.
 */


/* True when an entry marks its record entered in error. */
static bool entry_sets_eie(const struct entry *e)
{
    for (size_t w = 0; w < e->writes_count; w++) {
        if (strcmp(e->writes[w].field, "eie") == 0 && strcmp(e->writes[w].value, "Y") == 0)
            return true;
    }
    return false;
}

/* The entry's AuditRecord, kept in x->odma.audit to be written once per item. */
static int odma_audit_record(struct exporter *x, const struct entry *e,
                             const uint8_t h[TS_HASH_BYTES])
{
    char when[32], hash[2 * TS_HASH_BYTES + 1];
    time_iso(e->wall_ms, when);
    hash_hex(h, hash);
    /* Built through a memory stream so xml_put escapes into it. */
    FILE *m = fmemopen(x->odma.audit, sizeof(x->odma.audit), "w");
    if (m == NULL)
        return TS_ERR_NOMEM;
    fputs("<AuditRecord><UserRef UserOID=\"", m);
    odma_user_oid(m, e->user);
    fputs("\"/><LocationRef LocationOID=\"LOC.", m);
    xml_put(m, e->origin);
    fprintf(m, "\"/><DateTimeStamp>%s</DateTimeStamp>", when);
    if (e->reason[0] != '\0') {
        fputs("<ReasonForChange>", m);
        xml_put(m, e->reason);
        fputs("</ReasonForChange>", m);
    }
    fprintf(m, "<SourceID>%s</SourceID></AuditRecord>", hash);
    bool truncated = ftell(m) >= (long)sizeof(x->odma.audit) - 1;
    fclose(m);
    /* The buffer holds the limits' worst case; an entry beyond them is corrupt. */
    return truncated ? TS_ERR_CORRUPT : 0;
}

static int odma_collect(struct exporter *x, const struct entry *e)
{
    int rc = name_set_add(&x->odma.users, e->user);
    if (rc == 0)
        rc = name_set_add(&x->odma.locations, e->origin);
    return rc;
}

/* Keeps the live writes of a field of a signed record (they are signed). */
static int odma_signed_cb(void *ctx, const char *field, const struct field_state *st)
{
    struct exporter *x = ctx;
    struct odma *a = &x->odma;
    const struct schema_field *fd = schema_field_find(a->type, field);
    if (fd == NULL)
        return 0;
    for (size_t i = 0; i < st->live_count; i++) {
        if (a->signed_count == a->signed_cap) {
            size_t cap = a->signed_cap ? 2 * a->signed_cap : 32;
            struct signed_write *nw = realloc(a->signed_writes, cap * sizeof(*nw));
            if (nw == NULL)
                return TS_ERR_NOMEM;
            a->signed_writes = nw;
            a->signed_cap = cap;
        }
        a->signed_writes[a->signed_count].field = (size_t)(fd - a->type->fields);
        a->signed_writes[a->signed_count].ref = st->live[i].ref;
        a->signed_count++;
    }
    return 0;
}

/* True when e's write of field k is one the record's signature covers. */
static bool odma_signed(const struct odma *a, size_t k, const struct entry *e)
{
    for (size_t i = 0; i < a->signed_count; i++) {
        const struct entry_ref *r = &a->signed_writes[i].ref;
        if (a->signed_writes[i].field == k && r->lane == e->lane && r->seq == e->seq &&
            strcmp(r->origin, e->origin) == 0)
            return true;
    }
    return false;
}

static int odma_entry_cb(void *ctx, const struct entry *e, const uint8_t hash[TS_HASH_BYTES],
                         uint64_t stored_ms)
{
    struct exporter *x = ctx;
    struct odma *a = &x->odma;
    (void)stored_ms;  /* this node's receive time: differs between nodes */
    if (!entry_in_time(x, e))
        return 0;  /* at --as-of the store did not hold it yet */
    if (a->collect)
        return odma_collect(x, e);
    int rc = odma_audit_record(x, e, hash);
    if (rc != 0)
        return rc;

    const struct schema_type *t = a->type;
    bool first = a->entries == 0;
    bool insert = first || a->removed;
    bool remove = !insert && entry_sets_eie(e);
    const char *txn = insert ? "Insert" : remove ? "Remove" : "Update";
    if (insert)
        a->fields_written = 0;
    a->removed = remove;
    a->entries++;

    bool subject = strcmp(t->name, "subject") == 0;
    bool ae = strcmp(t->name, "ae") == 0;
    FILE *f = x->out;
    fputs("  <SubjectData SubjectKey=\"", f);
    xml_put(f, a->subject);
    fprintf(f, "\" TransactionType=\"%s\">\n   %s\n", subject && first ? "Insert" : "Update",
            a->audit);
    char site[TS_ID_BYTES_MAX + 1];
    if (subject && first && schema_site_of_key(a->subject, site)) {
        fputs("   <SiteRef LocationOID=\"LOC.", f);
        xml_put(f, site);
        fputs("\"/>\n", f);
    }
    /* The record's element: a subject's or visit's event, an AE's form. */
    if (ae) {
        fprintf(f, "   <StudyEventData StudyEventOID=\"SE.%s\" TransactionType=\"%s\">\n"
                   "    <FormData FormOID=\"F.%s\" FormRepeatKey=\"",
                t->domain, a->ae_event ? "Update" : "Insert", t->domain);
        a->ae_event = true;
        const char *num = strstr(a->id, "-AE-");
        xml_put(f, num != NULL ? num + 4 : a->id);
        fprintf(f, "\" TransactionType=\"%s\">\n", txn);
    } else {
        fprintf(f, "   <StudyEventData StudyEventOID=\"SE.%s\"", t->domain);
        const char *code = strchr(a->id, '/');
        if (!subject) {
            fputs(" StudyEventRepeatKey=\"", f);
            xml_put(f, code != NULL ? code + 1 : a->id);
            fputc('"', f);
        }
        fprintf(f, " TransactionType=\"%s\">\n    <FormData FormOID=\"F.%s\" "
                   "TransactionType=\"%s\">\n",
                txn, t->domain, txn);
    }
    fprintf(f, "     <ItemGroupData ItemGroupOID=\"IG.%s\" TransactionType=\"%s\">\n", t->domain,
            txn);
    for (size_t w = 0; w < e->writes_count; w++) {
        const struct field_write *fw = &e->writes[w];
        const struct schema_field *fd = schema_field_find(t, fw->field);
        if (fd == NULL)
            continue;  /* a field this version's schema does not know: not exported */
        uint64_t bit = UINT64_C(1) << (size_t)(fd - t->fields);
        const char *item_txn = remove ? "Remove"
                               : (a->fields_written & bit) != 0 ? "Update" : "Insert";
        a->fields_written |= bit;
        char name[TS_FIELD_BYTES_MAX + 1];
        field_name(fd, name);
        fprintf(f, "      <ItemData ItemOID=\"IT.%s.%s\" TransactionType=\"%s\" Value=\"",
                t->domain, name, item_txn);
        xml_put(f, fw->value);
        fprintf(f, "\">%s", a->audit);
        if (a->sig != NULL && odma_signed(a, (size_t)(fd - t->fields), e))
            odm_signature(f, a->sig, a->subject);
        fputs("</ItemData>\n", f);
    }
    fprintf(f, "     </ItemGroupData>\n    </FormData>\n   </StudyEventData>\n  </SubjectData>\n");
    x->records++;
    return 0;
}

/* Writes (or, in the first pass, collects) one record's history. */
static int odma_record(struct exporter *x, struct store_walk *w)
{
    struct odma *a = &x->odma;
    a->type = type_of(store_walk_type(w));
    a->id = store_walk_id(w);
    a->entries = 0;
    a->fields_written = 0;
    a->removed = false;
    a->sig = NULL;
    a->signed_count = 0;
    json_t *visit_sigs = NULL;
    int rc = 0;
    if (!a->collect && x->subject_sigs) {
        /* A visit's own signature, else the casebook's, covers the record. */
        if (strcmp(a->type->name, "visit") == 0) {
            visit_sigs = marks_sigs(x, "visit", a->id);
            a->sig = visit_sigs != NULL ? sig_newest_valid(visit_sigs) : NULL;
        }
        if (a->sig == NULL && x->casebook_sigs != NULL)
            a->sig = sig_newest_valid(x->casebook_sigs);
        if (a->sig != NULL)
            rc = store_walk_fields(w, odma_signed_cb, x);
        if (rc == TS_ERR_NOTFOUND)
            rc = 0;
    }
    if (rc == 0)
        rc = store_walk_history(w, odma_entry_cb, x);
    a->sig = NULL;
    json_decref(visit_sigs);
    return rc == TS_ERR_NOTFOUND ? 0 : rc;
}

static int odma_subject(struct exporter *x, const char *id)
{
    x->odma.subject = id;
    json_decref(x->casebook_sigs);
    x->casebook_sigs = x->odma.collect ? NULL : marks_sigs(x, "subject", id);
    x->odma.ae_event = false;
    char site[TS_ID_BYTES_MAX + 1];
    if (x->odma.collect && schema_site_of_key(id, site)) {
        int rc = name_set_add(&x->odma.locations, site);
        if (rc != 0)
            return rc;
    }
    return walk_subject_records(x, id, odma_record);
}

/* The membership's sites (the exported one only, with --site) are locations too. */
static int odma_member_cb(void *ctx, const char *type, const char *id)
{
    struct exporter *x = ctx;
    (void)type;
    if (x->site != NULL && strcmp(id, x->site) != 0)
        return 0;
    return name_set_add(&x->odma.locations, id);
}

static int odma_admin(struct exporter *x)
{
    FILE *f = x->out;
    odm_users(x, &x->odma.users);
    for (size_t i = 0; i < x->odma.locations.count; i++) {
        const char *node = x->odma.locations.v[i];
        /* A node the membership names is a site; any other origin is a hub. */
        bool site = store_record_exists(x->store, SCHEMA_MEMBER_TYPE, node);
        const char *name = NULL;
        if (site) {
            int rc = rec_load(x, SCHEMA_MEMBER_TYPE, node);
            if (rc != 0)
                return rc;
            name = rec_value(&x->rec, "name");
        }
        fputs("  <Location OID=\"LOC.", f);
        xml_put(f, node);
        fputs("\" Name=\"", f);
        xml_put(f, name != NULL && name[0] != '\0' ? name : node);
        fprintf(f, "\" LocationType=\"%s\">\n   <MetaDataVersionRef StudyOID=\"ST.",
                site ? "Site" : "CRO");
        xml_put(f, x->cfg->trial);
        fprintf(f, "\" MetaDataVersionOID=\"" ODM_MDV_OID "\" EffectiveDate=\"%.10s\"/>\n"
                   "  </Location>\n",
                x->created);
    }
    odm_signature_defs(x);
    return 0;
}

static int export_odm_audit(struct exporter *x)
{
    FILE *f = x->out;
    const char *trial = x->cfg->trial;
    /* First pass: the users and nodes the transactions name. */
    x->odma.collect = true;
    int rc = walk_export(x, odma_subject);
    if (rc == 0)
        rc = store_records(x->store, SCHEMA_MEMBER_TYPE, odma_member_cb, x);
    if (rc == 0)
        rc = signers_collect(x, &x->odma.users);
    x->odma.collect = false;
    if (rc != 0)
        goto out_free_names;

    odm_open(x, "Transactional", "odm-audit", "audit trail exported by trialsync");
    odm_metadata(x);
    fprintf(f, " </Study>\n <AdminData StudyOID=\"ST.");
    xml_put(f, trial);
    fprintf(f, "\">\n");
    rc = odma_admin(x);
    if (rc != 0)
        goto out_free_names;
    fprintf(f, " </AdminData>\n <ClinicalData StudyOID=\"ST.");
    xml_put(f, trial);
    fprintf(f, "\" MetaDataVersionOID=\"" ODM_MDV_OID "\">\n");
    rc = walk_export(x, odma_subject);
    if (rc == 0)
        fprintf(f, " </ClinicalData>\n</ODM>\n");
out_free_names:
    json_decref(x->casebook_sigs);
    x->casebook_sigs = NULL;
    free(x->odma.signed_writes);
    x->odma.signed_writes = NULL;
    name_set_release(&x->odma.locations);
    name_set_release(&x->odma.users);
    return rc;
}

/* ---- records-ndjson: the displayed records, as `trialsync import` reads them */

/*
 * One line per subject, visit and AE (subjects by id, each followed by its
 * visits and AEs by id): {"type":T,"id":ID,"fields":{name:value,...}} with
 * the displayed value of every field that has one, in the schema's order.
 * Entered-in-error records are kept (with eie=Y) so a re-import holds them too,
 * with "reason": the reason of the write that marked them (import, like any
 * write, refuses eie=Y without one); queries, membership and conflicts are not
 * records import writes.
 */

static int recs_record(struct exporter *x, struct store_walk *w)
{
    int rc = rec_load_walk(x, w);
    if (rc != 0 || !x->rec.held)
        return rc;
    const char *type = store_walk_type(w), *id = store_walk_id(w);
    struct entry marked;
    memset(&marked, 0, sizeof(marked));
    if (rec_eie(&x->rec)) {
        /* The reason of the write whose eie value is shown. */
        const struct schema_field *eie = schema_field_find(x->rec.type, "eie");
        struct ts_error err = {0};
        rc = store_entry_get(x->store, &x->rec.f[eie - x->rec.type->fields].shown, &marked,
                             &err);
        if (rc != 0)
            return rc;
    }
    FILE *f = x->out;
    fputs("{\"type\":", f);
    json_put(f, type);
    fputs(",\"id\":", f);
    json_put(f, id);
    fputs(",\"fields\":{", f);
    const struct schema_type *t = x->rec.type;
    bool first = true;
    for (size_t k = 0; k < t->count; k++) {
        const char *v = x->rec.f[k].value;
        if (v == NULL || v[0] == '\0')
            continue;  /* import writes no field for an empty value either */
        /* A subject's enrollment slot is set by its site's node when it
         * enrolls (node/enroll_node.h), never imported as data. */
        if (strcmp(t->fields[k].name, "slot") == 0)
            continue;
        fputs(first ? "" : ",", f);
        json_put(f, t->fields[k].name);
        fputc(':', f);
        json_put(f, v);
        first = false;
    }
    fputc('}', f);
    if (marked.reason != NULL && marked.reason[0] != '\0') {
        fputs(",\"reason\":", f);
        json_put(f, marked.reason);
    }
    fputs("}\n", f);
    entry_release(&marked);
    x->records++;
    return 0;
}

static int recs_subject(struct exporter *x, const char *id)
{
    return walk_subject_records(x, id, recs_record);
}

static int export_records(struct exporter *x)
{
    return walk_export(x, recs_subject);
}

/* ---- the verb ------------------------------------------------------------- */

static bool schema_fits(void)
{
    size_t n;
    const struct schema_type *types = schema_types(&n);
    for (size_t i = 0; i < n; i++) {
        if (types[i].count > EXPORT_FIELDS_MAX)
            return false;
    }
    return true;
}

static void export_usage(FILE *out)
{
    fputs(EXPORT_USAGE, out);
}

int cmd_export(int argc, char **argv)
{
    static const struct option opts[] = {
        {"node", required_argument, NULL, 'n'},
        {"format", required_argument, NULL, 'f'},
        {"out", required_argument, NULL, 'o'},
        {"site", required_argument, NULL, 's'},
        {"subject", required_argument, NULL, 'S'},
        {"as-of", required_argument, NULL, 'a'},
        {"audit-format", required_argument, NULL, 'A'},
        {"user", required_argument, NULL, 'u'},
        {"since", required_argument, NULL, 'b'},
        {"until", required_argument, NULL, 'e'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *node_dir = NULL, *format = NULL, *out = NULL, *as_of = NULL;
    const char *audit_format = "csv", *since = NULL, *until = NULL;
    static struct exporter x;
    memset(&x, 0, sizeof(x));
    x.since_ms = x.until_ms = x.as_of_ms = -1;
    int c;
    optind = 1;
    while ((c = cli_getopt(argc, argv, opts, "export")) != -1) {
        switch (c) {
        case 'n': node_dir = optarg; break;
        case 'f': format = optarg; break;
        case 'o': out = optarg; break;
        case 's': x.site = optarg; break;
        case 'S': x.subject = optarg; break;
        case 'a': as_of = optarg; break;
        case 'A': audit_format = optarg; break;
        case 'u': x.user = optarg; break;
        case 'b': since = optarg; break;
        case 'e': until = optarg; break;
        case 'h': fputs(EXPORT_USAGE, stdout); return 0;
        default: fputs(EXPORT_USAGE, stderr); return 2;
        }
    }
    if (node_dir == NULL)
        return cli_usage_error("export", export_usage, "--node NODEDIR is required");
    if (format == NULL)
        return cli_usage_error("export", export_usage, "--format FORMAT is required");
    if (optind != argc)
        return cli_usage_error("export", export_usage, "unexpected argument '%s'", argv[optind]);
    if (strcmp(format, "odm") == 0)
        x.format = EXPORT_ODM;
    else if (strcmp(format, "sdtm-csv") == 0)
        x.format = EXPORT_SDTM_CSV;
    else if (strcmp(format, "dataset-json") == 0)
        x.format = EXPORT_DATASET_JSON;
    else if (strcmp(format, "audit") == 0)
        x.format = EXPORT_AUDIT;
    else if (strcmp(format, "odm-audit") == 0)
        x.format = EXPORT_ODM_AUDIT;
    else if (strcmp(format, "records-ndjson") == 0)
        x.format = EXPORT_RECORDS_NDJSON;
    else
        return cli_fail("--format '%s': allowed: odm, odm-audit, sdtm-csv, dataset-json, audit, "
                        "records-ndjson", format);
    if (strcmp(audit_format, "ndjson") == 0)
        x.ndjson = true;
    else if (strcmp(audit_format, "csv") != 0)
        return cli_fail("--audit-format '%s': allowed: csv, ndjson", audit_format);
    if ((x.format == EXPORT_SDTM_CSV || x.format == EXPORT_DATASET_JSON) && out == NULL)
        return cli_fail("--format %s writes one file per domain: give the directory with --out",
                        format);
    int64_t ms;
    if (since != NULL && !time_parse(since, &x.since_ms))
        return cli_fail("--since '%s' is not an ISO 8601 UTC time (2024-05-01T10:00:00Z)", since);
    if (until != NULL && !time_parse(until, &x.until_ms))
        return cli_fail("--until '%s' is not an ISO 8601 UTC time (2024-05-01T10:00:00Z)", until);
    if (as_of != NULL && !time_parse(as_of, &ms))
        return cli_fail("--as-of '%s' is not an ISO 8601 UTC time (2024-05-01T10:00:00Z)", as_of);
    if (as_of != NULL)
        x.as_of_ms = ms;
    if (x.subject != NULL && !schema_key_ok("subject", x.subject))
        return cli_fail("--subject '%s' is not a subject id (%s)", x.subject,
                        type_of("subject")->key_format);
    if (!schema_fits())
        return cli_fail("the schema has a type of more than %d fields", EXPORT_FIELDS_MAX);

    static struct config cfg;
    struct ts_error err = {0};
    if (config_load_dir(node_dir, &cfg, &err) != 0)
        return cli_fail("%s", err.msg);
    x.cfg = &cfg;
    /* A site's store holds only its own site's data; say so if asked for another. */
    if (cfg.role == PKI_ROLE_SITE) {
        if (x.site != NULL && strcmp(x.site, cfg.id) != 0)
            return cli_fail("node %s is a site: it holds and exports only site %s's data",
                            cfg.id, cfg.id);
        x.site = cfg.id;
    }
    if (store_open_readonly(cfg.data_dir, &x.store, &err) != 0)
        return cli_fail("%s", err.msg);
    time_iso(as_of != NULL ? (uint64_t)ms : hlc_ms(store_hlc_max(x.store)), x.created);
    /* At or after the newest write held, the state at --as-of is the stored state. */
    if (x.as_of_ms >= 0 && (uint64_t)x.as_of_ms >= hlc_ms(store_hlc_max(x.store)))
        x.as_of_ms = -1;

    int rc = 0;
    if (x.format == EXPORT_SDTM_CSV || x.format == EXPORT_DATASET_JSON) {
        rc = export_datasets(&x, out);
    } else {
        x.out = out != NULL ? fopen(out, "w") : stdout;
        if (x.out == NULL) {
            rc = cli_fail("cannot write %s: %s", out, strerror(errno));
        } else {
            setvbuf(x.out, NULL, _IOFBF, EXPORT_BUFFER_BYTES);
            rc = x.format == EXPORT_ODM              ? export_odm(&x)
                 : x.format == EXPORT_ODM_AUDIT      ? export_odm_audit(&x)
                 : x.format == EXPORT_RECORDS_NDJSON ? export_records(&x)
                                                     : export_audit(&x);
            if (rc != 0)
                rc = cli_fail("cannot read the store: error %d", rc);
            bool failed = ferror(x.out) != 0;
            if ((out != NULL ? fclose(x.out) : fflush(x.out)) != 0)
                failed = true;
            if (failed && rc == 0)
                rc = cli_fail("cannot write %s: %s", out != NULL ? out : "stdout",
                              strerror(errno));
        }
    }
    rec_clear(&x.rec);
    name_set_release(&x.signers);
    store_close(x.store);
    if (rc == 0)
        fprintf(stderr, "trialsync: exported %" PRIu64 " records (%s)\n", x.records, format);
    return rc;
}
