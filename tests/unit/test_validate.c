/*
 * test_validate.c: every rule of validate.c, accepted and refused: record
 * keys, known fields, controlled terms, ISO 8601 dates with real calendar
 * checks, reasons for change, entered-in-error, write-once fields, resolved
 * AEs, limits, what a site and the hub may write, lanes and site scopes, and
 * errors that name the field, the value and what is allowed.
 */
#include "unit.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../node/hlc.h"
#include "../../node/merge.h"
#include "../../node/schema.h"
#include "../../node/validate.h"

/* ---- helpers ----------------------------------------------------------- */

/* The record as it stands: (field, value) pairs a test sets up. */
struct record {
    const char *pairs[32][2];
    size_t n;
};

static const char *record_current(void *ctx, const char *field)
{
    const struct record *r = ctx;
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->pairs[i][0], field) == 0)
            return r->pairs[i][1];
    }
    return NULL;
}

static void record_set(struct record *r, const char *field, const char *value)
{
    CU_ASSERT_FATAL(r->n < 32);
    r->pairs[r->n][0] = field;
    r->pairs[r->n][1] = value;
    r->n++;
}

static struct validate_error E;

/* A write of n fields by the hub, with a reason when not NULL. */
static int hub_write(const char *type, const char *id, const struct validate_field *f, size_t n,
                     const char *reason, struct record *cur)
{
    return validate_write(type, id, f, n, reason, "dm.jones", VALIDATE_ROLE_HUB, "",
                          cur != NULL ? record_current : NULL, cur, &E);
}

static int site_write(const char *site, const char *type, const char *id,
                      const struct validate_field *f, size_t n, const char *reason,
                      struct record *cur)
{
    return validate_write(type, id, f, n, reason, "crc.smith", VALIDATE_ROLE_SITE, site,
                          cur != NULL ? record_current : NULL, cur, &E);
}

/* One field, by the hub, on a record with no values yet. */
static int one(const char *type, const char *id, const char *field, const char *value)
{
    struct validate_field f = { field, value };
    return hub_write(type, id, &f, 1, NULL, NULL);
}

static int subject_field(const char *field, const char *value)
{
    return one("subject", "101-0003", field, value);
}

static int ae_field(const char *field, const char *value)
{
    return one("ae", "101-0003-AE-001", field, value);
}

static bool msg_has(const char *part)
{
    return strstr(E.msg, part) != NULL;
}

/* ---- record types and keys -------------------------------------------- */

static void test_validate_unknown_type_refused(void)
{
    CU_ASSERT_EQUAL(one("patient", "101-0003", "sex", "M"), TS_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(E.value, "patient");
    CU_ASSERT_STRING_EQUAL(E.allowed, "subject, visit, ae, query");
    CU_ASSERT_STRING_EQUAL(E.msg,
                           "record type 'patient' is not known; allowed types: subject, visit, "
                           "ae, query");
    CU_ASSERT_EQUAL(one("", "101-0003", "sex", "M"), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(one("Subject", "101-0003", "sex", "M"), TS_ERR_INVALID);
}

static void test_validate_subject_keys(void)
{
    static const char *good[] = { "101-0003", "1-1", "SITE7-42", "abc01-000000001" };
    static const char *bad[] = { "1010003", "101-", "-0003", "101-00a3", "101_0003",
                                 "101-0003-", "10 1-0003", "101-0003/V1", "" };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        CU_ASSERT_EQUAL(one("subject", good[i], "sex", "F"), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CU_ASSERT_EQUAL(one("subject", bad[i], "sex", "F"), TS_ERR_INVALID);
        CU_ASSERT_STRING_EQUAL(E.field, "");
        CU_ASSERT_STRING_EQUAL(E.value, bad[i]);
        CU_ASSERT(msg_has("e.g. 101-0003"));
    }
    /* A key one byte past TS_ID_BYTES_MAX. */
    char longkey[TS_ID_BYTES_MAX + 2];
    memset(longkey, '1', sizeof(longkey));
    longkey[3] = '-';
    longkey[TS_ID_BYTES_MAX + 1] = '\0';
    CU_ASSERT_EQUAL(one("subject", longkey, "sex", "F"), TS_ERR_INVALID);
    longkey[TS_ID_BYTES_MAX] = '\0';
    CU_ASSERT_EQUAL(one("subject", longkey, "sex", "F"), 0);
    CU_ASSERT_EQUAL(one("subject", NULL, "sex", "F"), TS_ERR_INVALID);
}

static void test_validate_visit_keys(void)
{
    static const char *good[] = { "101-0003/V3", "101-0003/SCREENING", "101-0003/UNSCHED/2",
                                  "101-0003/V3.1", "101-0003/END_OF_TREATMENT" };
    static const char *bad[] = { "101-0003", "101-0003/", "101-0003/V3/", "101-0003/V3/x",
                                 "101-0003//2", "1010003/V3", "101-0003/V 3", "101-0003/V3/1/2" };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        CU_ASSERT_EQUAL(one("visit", good[i], "svoccur", "Y"), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CU_ASSERT_EQUAL(one("visit", bad[i], "svoccur", "Y"), TS_ERR_INVALID);
        CU_ASSERT(msg_has("101-0003/V3"));
    }
}

static void test_validate_ae_keys(void)
{
    static const char *good[] = { "101-0003-AE-001", "101-0003-AE-1", "AE1-0003-AE-120" };
    static const char *bad[] = { "101-0003-AE-", "101-0003-AE-01a", "101-0003-ae-001",
                                 "101-AE-001", "101-0003-AE001", "101-0003", "101-0003-AE-001-AE-2" };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        CU_ASSERT_EQUAL(one("ae", good[i], "aesev", "MILD"), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CU_ASSERT_EQUAL(one("ae", bad[i], "aesev", "MILD"), TS_ERR_INVALID);
        CU_ASSERT(msg_has("101-0003-AE-001"));
    }
}

static void test_validate_query_keys(void)
{
    static const char *good[] = { "Q-hub-1", "Q-cro-hub.eu-17", "Q-101-0000042" };
    static const char *bad[] = { "Q-hub", "Q--1", "Q-hub-", "q-hub-1", "Q-hub-1a", "Q-h/b-1", "Q-" };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        CU_ASSERT_EQUAL(one("query", good[i], "text", "Please check"), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CU_ASSERT_EQUAL(one("query", bad[i], "text", "Please check"), TS_ERR_INVALID);
        CU_ASSERT(msg_has("Q-<origin>-<number>"));
    }
}

static void test_validate_id(void)
{
    CU_ASSERT_TRUE(validate_id("hub"));
    CU_ASSERT_TRUE(validate_id("site-101"));
    CU_ASSERT_TRUE(validate_id("a.b_c-D9"));
    CU_ASSERT_FALSE(validate_id(""));
    CU_ASSERT_FALSE(validate_id(NULL));
    CU_ASSERT_FALSE(validate_id("a b"));
    CU_ASSERT_FALSE(validate_id("a/b"));
    CU_ASSERT_FALSE(validate_id("caf\xc3\xa9"));
    char s[TS_ID_BYTES_MAX + 2];
    memset(s, 'x', sizeof(s));
    s[TS_ID_BYTES_MAX] = '\0';
    CU_ASSERT_TRUE(validate_id(s));
    s[TS_ID_BYTES_MAX] = 'x';
    s[TS_ID_BYTES_MAX + 1] = '\0';
    CU_ASSERT_FALSE(validate_id(s));
}

/* ---- fields and values ------------------------------------------------- */

static void test_validate_unknown_field_refused(void)
{
    CU_ASSERT_EQUAL(subject_field("gender", "M"), TS_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(E.field, "gender");
    CU_ASSERT_STRING_EQUAL(E.allowed,
                           "site, sex, brthdtc, rficdtc, armcd, status, dsdecod, dsstdtc, eie, slot");
    CU_ASSERT_STRING_EQUAL(E.msg,
                           "field 'gender' is not a field of subject; allowed fields: site, sex, "
                           "brthdtc, rficdtc, armcd, status, dsdecod, dsstdtc, eie, slot");
    /* A field of another type is not a field of this one. */
    CU_ASSERT_EQUAL(one("visit", "101-0003/V1", "aesev", "MILD"), TS_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(E.allowed, "svstdtc, svendtc, svoccur, status, eie");
    CU_ASSERT_EQUAL(ae_field("status ", "ongoing"), TS_ERR_INVALID);
    CU_ASSERT(strstr(E.allowed, "aeterm, aestdtc") != NULL);
    CU_ASSERT(strstr(E.allowed, "meddra_ver") != NULL);
    CU_ASSERT_EQUAL(one("query", "Q-hub-1", "answer", "x"), TS_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(E.allowed, "target, text, state, round, messages, source");
}

/* Every value of a list is accepted, and near misses are refused with the list. */
static void check_terms(const char *type, const char *id, const char *field,
                        const char *const *good, const char *allowed, const char *const *bad)
{
    for (size_t i = 0; good[i] != NULL; i++) {
        int rc = one(type, id, field, good[i]);
        CU_ASSERT_EQUAL(rc, 0);
        if (rc != 0)
            printf("\n    %s.%s='%s' refused: %s\n", type, field, good[i], E.msg);
    }
    for (size_t i = 0; bad[i] != NULL; i++) {
        CU_ASSERT_EQUAL(one(type, id, field, bad[i]), TS_ERR_INVALID);
        CU_ASSERT_STRING_EQUAL(E.field, field);
        CU_ASSERT_STRING_EQUAL(E.value, bad[i]);
        CU_ASSERT_STRING_EQUAL(E.allowed, allowed);
    }
}

static void test_validate_sex_terms(void)
{
    static const char *good[] = { "M", "F", "U", NULL };
    static const char *bad[] = { "X", "m", "Male", "", " M", NULL };
    check_terms("subject", "101-0003", "sex", good, "M, F, U", bad);
    CU_ASSERT_EQUAL(subject_field("sex", "X"), TS_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(E.msg, "field 'sex': 'X' is not allowed; allowed values: M, F, U");
    CU_ASSERT_EQUAL(subject_field("sex", ""), TS_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(E.msg,
                           "field 'sex': an empty value is not allowed; allowed values: M, F, U");
}

static void test_validate_yes_no_flags(void)
{
    static const char *good[] = { "Y", "N", NULL };
    static const char *bad[] = { "y", "YES", "1", "", NULL };
    static const char *ae_flags[] = { "aeser", "aesdth", "aeslife", "aeshosp", "aesdisab",
                                      "aescong", "aesmie", "eie" };
    for (size_t i = 0; i < sizeof(ae_flags) / sizeof(ae_flags[0]); i++) {
        if (strcmp(ae_flags[i], "eie") == 0)
            continue; /* eie=Y needs a reason: see its own test. */
        check_terms("ae", "101-0003-AE-001", ae_flags[i], good, "Y, N", bad);
    }
    check_terms("visit", "101-0003/V1", "svoccur", good, "Y, N", bad);
    CU_ASSERT_EQUAL(one("subject", "101-0003", "eie", "N"), 0);
    CU_ASSERT_EQUAL(one("visit", "101-0003/V1", "eie", "maybe"), TS_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(E.allowed, "Y, N");
}

static void test_validate_ae_severity_and_grade(void)
{
    static const char *sev[] = { "MILD", "MODERATE", "SEVERE", NULL };
    static const char *sev_bad[] = { "mild", "LIFE THREATENING", "3", "", NULL };
    check_terms("ae", "101-0003-AE-001", "aesev", sev, "MILD, MODERATE, SEVERE", sev_bad);
    static const char *grade[] = { "1", "2", "3", "4", "5", NULL };
    static const char *grade_bad[] = { "0", "6", "01", "3.0", "III", "", NULL };
    check_terms("ae", "101-0003-AE-001", "aetoxgr", grade, "1, 2, 3, 4, 5", grade_bad);
}

static void test_validate_ae_outcome_and_action(void)
{
    static const char *out[] = { "RECOVERED/RESOLVED", "RECOVERING/RESOLVING",
                                 "NOT RECOVERED/NOT RESOLVED", "RECOVERED/RESOLVED WITH SEQUELAE",
                                 "FATAL", "UNKNOWN", NULL };
    static const char *out_bad[] = { "RECOVERED", "recovered/resolved", "DEATH", "", NULL };
    check_terms("ae", "101-0003-AE-001", "aeout", out,
                "RECOVERED/RESOLVED, RECOVERING/RESOLVING, NOT RECOVERED/NOT RESOLVED, "
                "RECOVERED/RESOLVED WITH SEQUELAE, FATAL, UNKNOWN",
                out_bad);
    static const char *acn[] = { "DOSE INCREASED", "DOSE NOT CHANGED", "DOSE REDUCED",
                                 "DRUG INTERRUPTED", "DRUG WITHDRAWN", "NOT APPLICABLE",
                                 "UNKNOWN", NULL };
    static const char *acn_bad[] = { "NONE", "DOSE  REDUCED", "dose reduced", NULL };
    check_terms("ae", "101-0003-AE-001", "aeacn", acn,
                "DOSE INCREASED, DOSE NOT CHANGED, DOSE REDUCED, DRUG INTERRUPTED, DRUG "
                "WITHDRAWN, NOT APPLICABLE, UNKNOWN",
                acn_bad);
}

static void test_validate_statuses(void)
{
    static const char *subject[] = { "screening", "enrolled", "randomized", "screen_failed",
                                     "completed", "lost_to_followup", "withdrawn", "died", NULL };
    static const char *subject_bad[] = { "SCREENING", "dead", "ongoing", "", NULL };
    check_terms("subject", "101-0003", "status", subject,
                "screening, enrolled, randomized, screen_failed, completed, lost_to_followup, "
                "withdrawn, died",
                subject_bad);
    static const char *visit[] = { "scheduled", "started", "completed", "skipped", "signed", NULL };
    static const char *visit_bad[] = { "done", "died", NULL };
    check_terms("visit", "101-0003/V2", "status", visit,
                "scheduled, started, completed, skipped, signed", visit_bad);
    static const char *ae_bad[] = { "closed", "RESOLVED", NULL };
    static const char *ae[] = { "ongoing", NULL };
    check_terms("ae", "101-0003-AE-001", "status", ae, "ongoing, resolved", ae_bad);
    static const char *state[] = { "open", "answered", "closed", "cancelled", NULL };
    static const char *state_bad[] = { "reopened", "OPEN", NULL };
    check_terms("query", "Q-hub-1", "state", state, "open, answered, closed, cancelled", state_bad);

    /* Every status accepted here has a merge rank, so merging can order it. */
    for (size_t i = 0; subject[i] != NULL; i++)
        CU_ASSERT(merge_rank("subject", "status", subject[i]) > 0);
    for (size_t i = 0; visit[i] != NULL; i++)
        CU_ASSERT(merge_rank("visit", "status", visit[i]) > 0);
    for (size_t i = 0; state[i] != NULL; i++)
        CU_ASSERT(merge_rank("query", "state", state[i]) > 0);
}

static void test_validate_query_source_and_round(void)
{
    static const char *src[] = { "dm", "monitor", "system", NULL };
    static const char *src_bad[] = { "DM", "site", "cra", "", NULL };
    check_terms("query", "Q-hub-1", "source", src, "dm, monitor, system", src_bad);

    static const char *round[] = { "1", "2", "10", "4294967295", NULL };
    for (size_t i = 0; round[i] != NULL; i++)
        CU_ASSERT_EQUAL(one("query", "Q-hub-1", "round", round[i]), 0);
    static const char *round_bad[] = { "0", "-1", "+1", "01", "1.5", "1e3", " 1", "1 ", "",
                                       "4294967296", "99999999999999999999", "two", NULL };
    for (size_t i = 0; round_bad[i] != NULL; i++) {
        CU_ASSERT_EQUAL(one("query", "Q-hub-1", "round", round_bad[i]), TS_ERR_INVALID);
        CU_ASSERT_STRING_EQUAL(E.field, "round");
    }
}

static void test_validate_query_target(void)
{
    static const char *good[] = { "subject/101-0003/sex", "visit/101-0003/V3/svstdtc",
                                  "visit/101-0003/UNSCHED/2/status", "ae/101-0003-AE-001/aesev" };
    static const char *bad[] = { "subject/101-0003", "subject/101-0003/gender",
                                 "patient/101-0003/sex", "subject/1010003/sex",
                                 "query/Q-hub-1/text", "ae/101-0003-AE-001/", "/101-0003/sex",
                                 "subject//sex", "" };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        CU_ASSERT_EQUAL(one("query", "Q-hub-1", "target", good[i]), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CU_ASSERT_EQUAL(one("query", "Q-hub-1", "target", bad[i]), TS_ERR_INVALID);
        CU_ASSERT_STRING_EQUAL(E.field, "target");
        CU_ASSERT(strstr(E.allowed, "<type>/<id>/<field>") != NULL);
    }
}

static void test_validate_text_fields(void)
{
    CU_ASSERT_EQUAL(ae_field("aeterm", "Headache, frontal"), 0);
    CU_ASSERT_EQUAL(ae_field("aeterm", "C\xc3\xa9phal\xc3\xa9" "e"), 0);
    CU_ASSERT_EQUAL(one("query", "Q-hub-1", "text", "Line one\nLine two\tindented"), 0);
    CU_ASSERT_EQUAL(ae_field("aeterm", ""), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(ae_field("aeterm", "   \n"), TS_ERR_INVALID);
    CU_ASSERT(msg_has("only spaces"));
    CU_ASSERT_EQUAL(ae_field("aeterm", "bell\x07"), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(ae_field("aeterm", "bad \xff utf-8"), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(ae_field("aeterm", "overlong \xc0\xaf"), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(ae_field("aeterm", "surrogate \xed\xa0\x80"), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(one("query", "Q-hub-1", "messages", ""), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(one("query", "Q-hub-1", "text", ""), TS_ERR_INVALID);

    /* Codes: one line, at most 200 bytes; "" clears them. */
    CU_ASSERT_EQUAL(subject_field("armcd", "ARM-A"), 0);
    CU_ASSERT_EQUAL(subject_field("armcd", ""), 0);
    CU_ASSERT_EQUAL(subject_field("dsdecod", "ADVERSE EVENT"), 0);
    CU_ASSERT_EQUAL(ae_field("aerel", "PROBABLY RELATED"), 0);
    CU_ASSERT_EQUAL(subject_field("armcd", "A\nB"), TS_ERR_INVALID);
    char code[202];
    memset(code, 'C', sizeof(code));
    code[200] = '\0';
    CU_ASSERT_EQUAL(subject_field("armcd", code), 0);
    code[200] = 'C';
    code[201] = '\0';
    CU_ASSERT_EQUAL(subject_field("armcd", code), TS_ERR_INVALID);
    CU_ASSERT(msg_has("201 bytes"));
}

static void test_validate_ae_coding_values(void)
{
    CU_ASSERT_EQUAL(ae_field("aedecod", "Headache"), 0);
    CU_ASSERT_EQUAL(ae_field("aeptcd", "10019211"), 0);
    CU_ASSERT_EQUAL(ae_field("aebodsys", "Nervous system disorders"), 0);
    CU_ASSERT_EQUAL(ae_field("aesoccd", "10029205"), 0);
    CU_ASSERT_EQUAL(ae_field("meddra_ver", "26.1"), 0);
    CU_ASSERT_EQUAL(ae_field("meddra_ver", "27"), 0);
    CU_ASSERT_EQUAL(ae_field("aeptcd", "1001921a"), TS_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(E.field, "aeptcd");
    CU_ASSERT_EQUAL(ae_field("aesoccd", "-1"), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(ae_field("meddra_ver", "v26"), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(ae_field("meddra_ver", "26."), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(ae_field("meddra_ver", ".1"), TS_ERR_INVALID);
}

/* ---- dates ------------------------------------------------------------- */

static void test_validate_iso8601_accepted(void)
{
    static const char *good[] = {
        "1961", "1961-04", "1961-04-12", "2024-02-29", "2000-02-29", "2023-12-31",
        "2024-03-05T14:30", "2024-03-05T14:30:59", "2024-03-05T00:00:00.5",
        "2024-03-05T23:59:59.123", "2024-03-05T23:59:59.123456789", "2024-03-05T14:30Z",
        "2024-03-05T14:30:00Z", "2024-03-05T14:30:00+02:00", "2024-03-05T14:30-05:30",
        "2024-03-05T14:30:00.250+14:00", "0001-01-01", "9999-12-31",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        CU_ASSERT_TRUE(validate_iso8601(good[i]));
        if (!validate_iso8601(good[i]))
            printf("\n    refused: %s\n", good[i]);
    }
}

static void test_validate_iso8601_refused(void)
{
    static const char *bad[] = {
        "", "61", "19610", "1961-4", "1961-04-1", "1961/04/12", "1961-00", "1961-13",
        "1961-04-00", "1961-04-31", "1961-06-31", "1961-09-31", "1961-11-31", "2023-02-29",
        "1900-02-29", "2100-02-29", "2024-02-30", "2024-01-32", "0000", "2024-03-05T",
        "2024-03-05T14", "2024-03-05T24:00", "2024-03-05T14:60", "2024-03-05T14:30:60",
        "2024-03-05T14:30:00.", "2024-03-05T14:30:00.1234567890", "2024-03-05T14:30.5",
        "2024-03-05 14:30", "2024-03T14:30", "1961T10:00", "2024-03-05T14:30z",
        "2024-03-05T14:30+2", "2024-03-05T14:30+0200", "2024-03-05T14:30+15:00",
        "2024-03-05T14:30+02:60", "2024-03-05T14:30ZZ", "2024-03-05x", "UNK", "2024-UN-UN",
        "--03-05", "+2024-03-05",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CU_ASSERT_FALSE(validate_iso8601(bad[i]));
        if (validate_iso8601(bad[i]))
            printf("\n    accepted: %s\n", bad[i]);
    }
    CU_ASSERT_FALSE(validate_iso8601(NULL));
}

static void test_validate_leap_days(void)
{
    CU_ASSERT_TRUE(validate_iso8601("2024-02-29"));   /* divisible by 4 */
    CU_ASSERT_TRUE(validate_iso8601("2000-02-29"));   /* divisible by 400 */
    CU_ASSERT_TRUE(validate_iso8601("1600-02-29"));
    CU_ASSERT_FALSE(validate_iso8601("1900-02-29"));  /* by 100, not 400 */
    CU_ASSERT_FALSE(validate_iso8601("2023-02-29"));
    CU_ASSERT_TRUE(validate_iso8601("2023-02-28"));
    CU_ASSERT_FALSE(validate_iso8601("2024-02-30"));
    /* And through a field: the error says what is wrong. */
    CU_ASSERT_EQUAL(ae_field("aestdtc", "2023-02-29"), TS_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(E.field, "aestdtc");
    CU_ASSERT_STRING_EQUAL(E.value, "2023-02-29");
    CU_ASSERT(msg_has("does not exist"));
    CU_ASSERT(strstr(E.allowed, "YYYY-MM-DD") != NULL);
}

static void test_validate_date_fields(void)
{
    static const char *fields_subject[] = { "brthdtc", "rficdtc", "dsstdtc" };
    for (size_t i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(subject_field(fields_subject[i], "1961"), 0);
        CU_ASSERT_EQUAL(subject_field(fields_subject[i], "1961-04"), 0);
        CU_ASSERT_EQUAL(subject_field(fields_subject[i], "1961-04-31"), TS_ERR_INVALID);
        CU_ASSERT_STRING_EQUAL(E.field, fields_subject[i]);
    }
    CU_ASSERT_EQUAL(one("visit", "101-0003/V1", "svstdtc", "2024-03-05T09:15"), 0);
    CU_ASSERT_EQUAL(one("visit", "101-0003/V1", "svendtc", "2024-13-05"), TS_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(E.msg,
                           "field 'svendtc': '2024-13-05' is not an ISO 8601 date (the month "
                           "must be 01 to 12); allowed: YYYY, YYYY-MM or YYYY-MM-DD, optionally "
                           "followed by THH:MM[:SS[.fff]][Z|+HH:MM|-HH:MM]");
    CU_ASSERT_EQUAL(ae_field("aeendtc", "2024-03"), 0);
    /* An optional date may be cleared. */
    CU_ASSERT_EQUAL(ae_field("aeendtc", ""), 0);
}

static void test_validate_sae_aware_needs_datetime(void)
{
    CU_ASSERT_EQUAL(ae_field("sae_aware_dtc", "2024-03-05T14:30"), 0);
    CU_ASSERT_EQUAL(ae_field("sae_aware_dtc", "2024-03-05T14:30:00Z"), 0);
    CU_ASSERT_EQUAL(ae_field("sae_aware_dtc", "2024-03-05T14:30:00+01:00"), 0);
    CU_ASSERT_EQUAL(ae_field("sae_aware_dtc", "2024-03-05"), TS_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(E.field, "sae_aware_dtc");
    CU_ASSERT(msg_has("full date and time"));
    CU_ASSERT_STRING_EQUAL(E.allowed, "YYYY-MM-DDTHH:MM[:SS[.fff]][Z|+HH:MM|-HH:MM]");
    CU_ASSERT_EQUAL(ae_field("sae_aware_dtc", "2024"), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(ae_field("sae_aware_dtc", "2024-02-30T10:00"), TS_ERR_INVALID);
}

/* ---- rules across values and time ------------------------------------- */

static void test_validate_site_must_match_key(void)
{
    CU_ASSERT_EQUAL(subject_field("site", "101"), 0);
    CU_ASSERT_EQUAL(subject_field("site", "102"), TS_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(E.field, "site");
    CU_ASSERT_STRING_EQUAL(E.value, "102");
    CU_ASSERT_STRING_EQUAL(E.allowed, "101");
    CU_ASSERT(msg_has("101-0003"));
    CU_ASSERT_EQUAL(subject_field("site", ""), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(subject_field("site", "101-"), TS_ERR_INVALID);
}

static void test_validate_reason_required_on_change(void)
{
    struct record cur = { .n = 0 };
    struct validate_field f = { "sex", "F" };

    /* First value: no reason needed. */
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", &f, 1, NULL, &cur), 0);
    record_set(&cur, "sex", "M");
    /* A change without a reason, with an empty one, with a blank one. */
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", &f, 1, NULL, &cur), TS_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(E.field, "sex");
    CU_ASSERT_STRING_EQUAL(E.value, "F");
    CU_ASSERT_STRING_EQUAL(E.msg, "field 'sex': changing 'M' to 'F' needs a reason for change");
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", &f, 1, "", &cur), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", &f, 1, "  \n", &cur), TS_ERR_INVALID);
    /* With a reason it goes through; writing the same value needs none. */
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", &f, 1, "transcription error", &cur), 0);
    f.value = "M";
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", &f, 1, NULL, &cur), 0);
    /* Clearing a value is a change too. */
    record_set(&cur, "brthdtc", "1961-04");
    struct validate_field clear = { "brthdtc", "" };
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", &clear, 1, NULL, &cur), TS_ERR_INVALID);
    CU_ASSERT(msg_has("changing '1961-04' to ''"));
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", &clear, 1, "not known", &cur), 0);
}

static void test_validate_reason_limits(void)
{
    struct validate_field f = { "sex", "F" };
    char *reason = malloc(TS_REASON_BYTES_MAX + 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(reason);
    memset(reason, 'r', TS_REASON_BYTES_MAX + 1);
    reason[TS_REASON_BYTES_MAX + 1] = '\0';
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", &f, 1, reason, NULL), TS_ERR_INVALID);
    CU_ASSERT(msg_has("reason"));
    reason[TS_REASON_BYTES_MAX] = '\0';
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", &f, 1, reason, NULL), 0);
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", &f, 1, "bad \xff", NULL), TS_ERR_INVALID);
    free(reason);

    char user[TS_USER_BYTES_MAX + 2];
    memset(user, 'u', sizeof(user));
    user[TS_USER_BYTES_MAX + 1] = '\0';
    CU_ASSERT_EQUAL(validate_write("subject", "101-0003", &f, 1, NULL, user, VALIDATE_ROLE_HUB,
                                   "", NULL, NULL, &E),
                    TS_ERR_INVALID);
    CU_ASSERT(msg_has("user"));
    user[TS_USER_BYTES_MAX] = '\0';
    CU_ASSERT_EQUAL(validate_write("subject", "101-0003", &f, 1, NULL, user, VALIDATE_ROLE_HUB,
                                   "", NULL, NULL, &E),
                    0);
}

static void test_validate_workflow_forward_needs_no_reason(void)
{
    struct record cur = { .n = 0 };
    record_set(&cur, "status", "screening");
    struct validate_field f = { "status", "enrolled" };
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", &f, 1, NULL, &cur), 0);
    /* Backwards is never a move, reason or not. */
    cur.pairs[0][1] = "randomized";
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", &f, 1, NULL, &cur), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", &f, 1, "randomized in error", &cur),
                    TS_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(E.field, "status");
    CU_ASSERT(msg_has("cannot move to 'enrolled'"));
    CU_ASSERT_STRING_EQUAL(E.allowed, "completed, withdrawn, lost_to_followup, died");

    struct record visit = { .n = 0 };
    record_set(&visit, "status", "completed");
    struct validate_field sign = { "status", "signed" };
    CU_ASSERT_EQUAL(hub_write("visit", "101-0003/V2", &sign, 1, NULL, &visit), 0);
}

/* DOMAIN.md's state machines, enforced against the displayed state. */
static void test_validate_status_moves(void)
{
    struct record cur = { .n = 0 };
    record_set(&cur, "status", "completed");
    struct validate_field back = { "status", "enrolled" };
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", &back, 1, "entered wrongly", &cur),
                    TS_ERR_INVALID);
    CU_ASSERT(msg_has("'completed' is final"));
    CU_ASSERT(msg_has("entered in error"));
    CU_ASSERT_STRING_EQUAL(E.allowed, "");
    /* The way to undo a mistaken record. */
    struct validate_field eie = { "eie", "Y" };
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", &eie, 1, "wrong subject", &cur), 0);
    /* Rewriting the state shown is no move. */
    struct validate_field same = { "status", "completed" };
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", &same, 1, NULL, &cur), 0);

    /* screen_failed follows screening only. */
    struct validate_field sf = { "status", "screen_failed" };
    cur.pairs[0][1] = "enrolled";
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", &sf, 1, "failed", &cur), TS_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(E.allowed, "randomized, withdrawn, lost_to_followup, died");
    cur.pairs[0][1] = "screening";
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", &sf, 1, NULL, &cur), 0);
    /* Forward jumps are moves; a new record may start anywhere. */
    struct validate_field rand = { "status", "randomized" };
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", &rand, 1, NULL, &cur), 0);
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", &rand, 1, NULL, NULL), 0);
    /* Site and CRO alike. */
    cur.pairs[0][1] = "died";
    CU_ASSERT_EQUAL(site_write("101", "subject", "101-0003", &rand, 1, "typo", &cur),
                    TS_ERR_INVALID);

    struct record visit = { .n = 0 };
    record_set(&visit, "status", "signed");
    struct validate_field started = { "status", "started" };
    CU_ASSERT_EQUAL(hub_write("visit", "101-0003/V2", &started, 1, "reopen", &visit),
                    TS_ERR_INVALID);
    struct record ae = { .n = 0 };
    record_set(&ae, "status", "resolved");
    struct validate_field ongoing = { "status", "ongoing" };
    CU_ASSERT_EQUAL(hub_write("ae", "101-0003-AE-001", &ongoing, 1, "recurred", &ae),
                    TS_ERR_INVALID);

    /* Every state of every workflow has its moves; finals are the ranks'
     * tops, so the merge never shows a non-final state over a final one. */
    static const char *const types[] = { "subject", "visit", "ae" };
    for (size_t t = 0; t < 3; t++) {
        const struct schema_field *f = schema_field(types[t], "status");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        for (size_t i = 0; f->terms[i].value != NULL; i++) {
            const char *const *next = schema_next_states(f, f->terms[i].value);
            CU_ASSERT_PTR_NOT_NULL_FATAL(next);
            for (size_t k = 0; next[k] != NULL; k++) {
                CU_ASSERT(schema_term_rank(f, next[k]) > f->terms[i].rank);
                CU_ASSERT(!schema_state_final(f, f->terms[i].value));
            }
        }
    }
    CU_ASSERT_PTR_NULL(schema_next_states(schema_field("subject", "sex"), "F"));
}

static void test_validate_query_state_and_round_forward(void)
{
    struct record q = { .n = 0 };
    record_set(&q, "target", "subject/101-0003/sex");
    record_set(&q, "state", "open");
    record_set(&q, "round", "1");
    struct validate_field answer = { "state", "answered" };
    CU_ASSERT_EQUAL(hub_write("query", "Q-hub-1", &answer, 1, NULL, &q), 0);

    /* Closed, then a re-query: round 2 opens again without a reason. */
    q.pairs[1][1] = "closed";
    struct validate_field requery[2] = { { "state", "open" }, { "round", "2" } };
    CU_ASSERT_EQUAL(hub_write("query", "Q-hub-1", requery, 2, NULL, &q), 0);
    /* Reopening within the same round is going back: it needs a reason. */
    CU_ASSERT_EQUAL(hub_write("query", "Q-hub-1", requery, 1, NULL, &q), TS_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(E.field, "state");
    /* And a round cannot go down without one either. */
    q.pairs[2][1] = "3";
    struct validate_field down = { "round", "2" };
    CU_ASSERT_EQUAL(hub_write("query", "Q-hub-1", &down, 1, NULL, &q), TS_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(E.field, "round");
}

static void test_validate_messages_append_without_reason(void)
{
    struct record q = { .n = 0 };
    record_set(&q, "target", "subject/101-0003/sex");
    record_set(&q, "messages", "Please confirm sex against source.");
    struct validate_field msg = { "messages", "Confirmed: F per source document." };
    CU_ASSERT_EQUAL(hub_write("query", "Q-hub-1", &msg, 1, NULL, &q), 0);
}

static void test_validate_eie_needs_reason(void)
{
    struct validate_field f = { "eie", "Y" };
    CU_ASSERT_EQUAL(hub_write("ae", "101-0003-AE-001", &f, 1, NULL, NULL), TS_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(E.field, "eie");
    CU_ASSERT_STRING_EQUAL(E.value, "Y");
    CU_ASSERT(msg_has("entered in error needs a reason"));
    CU_ASSERT_EQUAL(hub_write("ae", "101-0003-AE-001", &f, 1, "  ", NULL), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(hub_write("ae", "101-0003-AE-001", &f, 1, "duplicate of AE-002", NULL), 0);
    /* Even when the record is already marked. */
    struct record cur = { .n = 0 };
    record_set(&cur, "eie", "Y");
    CU_ASSERT_EQUAL(hub_write("visit", "101-0003/V1", &f, 1, NULL, &cur), TS_ERR_INVALID);
    /* Unmarking is an ordinary change: it needs a reason because eie had a value. */
    struct validate_field undo = { "eie", "N" };
    CU_ASSERT_EQUAL(hub_write("visit", "101-0003/V1", &undo, 1, NULL, &cur), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(hub_write("visit", "101-0003/V1", &undo, 1, "marked by mistake", &cur), 0);
}

static void test_validate_write_once(void)
{
    struct record cur = { .n = 0 };
    record_set(&cur, "site", "101");
    struct validate_field same = { "site", "101" };
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", &same, 1, NULL, &cur), 0);

    struct record q = { .n = 0 };
    record_set(&q, "target", "subject/101-0003/sex");
    struct validate_field other = { "target", "subject/101-0003/brthdtc" };
    /* Not even with a reason. */
    CU_ASSERT_EQUAL(hub_write("query", "Q-hub-1", &other, 1, "wrong field", &q), TS_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(E.field, "target");
    CU_ASSERT_STRING_EQUAL(E.value, "subject/101-0003/brthdtc");
    CU_ASSERT_STRING_EQUAL(E.allowed, "subject/101-0003/sex");
    CU_ASSERT_STRING_EQUAL(E.msg,
                           "field 'target' is write-once: it is 'subject/101-0003/sex' and "
                           "cannot become 'subject/101-0003/brthdtc'");

    /* A current site that differs from the key (a merge conflict) stays put. */
    struct record odd = { .n = 0 };
    record_set(&odd, "site", "1O1");
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", &same, 1, "fix", &odd), TS_ERR_INVALID);
    CU_ASSERT(msg_has("write-once"));
}

static void test_validate_ae_resolved_needs_end_and_outcome(void)
{
    struct validate_field resolve = { "status", "resolved" };
    CU_ASSERT_EQUAL(hub_write("ae", "101-0003-AE-001", &resolve, 1, NULL, NULL), TS_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(E.field, "status");
    CU_ASSERT_STRING_EQUAL(E.value, "resolved");
    CU_ASSERT(msg_has("missing: aeendtc, aeout"));

    struct validate_field with_end[2] = { { "status", "resolved" }, { "aeendtc", "2024-03-09" } };
    CU_ASSERT_EQUAL(hub_write("ae", "101-0003-AE-001", with_end, 2, NULL, NULL), TS_ERR_INVALID);
    CU_ASSERT(msg_has("missing: aeout"));

    struct validate_field all[3] = { { "status", "resolved" }, { "aeendtc", "2024-03-09" },
                                     { "aeout", "RECOVERED/RESOLVED" } };
    CU_ASSERT_EQUAL(hub_write("ae", "101-0003-AE-001", all, 3, NULL, NULL), 0);

    /* Values already on the record count. */
    struct record cur = { .n = 0 };
    record_set(&cur, "aeout", "RECOVERING/RESOLVING");
    CU_ASSERT_EQUAL(hub_write("ae", "101-0003-AE-001", with_end, 2, NULL, &cur), 0);
    CU_ASSERT_EQUAL(hub_write("ae", "101-0003-AE-001", &resolve, 1, NULL, &cur), TS_ERR_INVALID);
    CU_ASSERT(msg_has("missing: aeendtc"));
    record_set(&cur, "aeendtc", "2024-03-09");
    CU_ASSERT_EQUAL(hub_write("ae", "101-0003-AE-001", &resolve, 1, NULL, &cur), 0);

    /* Clearing the end date of a resolved AE is refused as well. */
    record_set(&cur, "status", "resolved");
    struct validate_field clear = { "aeendtc", "" };
    CU_ASSERT_EQUAL(hub_write("ae", "101-0003-AE-001", &clear, 1, "unknown", &cur), TS_ERR_INVALID);
    CU_ASSERT(msg_has("missing: aeendtc"));
    /* An ongoing AE needs neither. */
    struct validate_field ongoing = { "status", "ongoing" };
    CU_ASSERT_EQUAL(hub_write("ae", "101-0003-AE-001", &ongoing, 1, NULL, NULL), 0);
}

static void test_validate_write_shape(void)
{
    struct validate_field f[TS_WRITES_PER_ENTRY_MAX + 1] = { { "sex", "M" } };

    /* Nothing to write. */
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", f, 0, NULL, NULL), TS_ERR_INVALID);
    CU_ASSERT(msg_has("at least one field"));
    /* One field twice. */
    struct validate_field twice[2] = { { "sex", "M" }, { "sex", "F" } };
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", twice, 2, NULL, NULL), TS_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(E.field, "sex");
    CU_ASSERT(msg_has("twice"));
    /* More fields than an entry carries. */
    for (size_t i = 0; i < TS_WRITES_PER_ENTRY_MAX + 1; i++) {
        f[i].field = "sex";
        f[i].value = "M";
    }
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", f, TS_WRITES_PER_ENTRY_MAX + 1, NULL, NULL),
                    TS_ERR_INVALID);
    CU_ASSERT(msg_has("at most 64 fields"));
    /* A value above TS_VALUE_BYTES_MAX. */
    char *big = malloc(TS_VALUE_BYTES_MAX + 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    memset(big, 'a', TS_VALUE_BYTES_MAX + 1);
    big[TS_VALUE_BYTES_MAX + 1] = '\0';
    CU_ASSERT_EQUAL(ae_field("aeterm", big), TS_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(E.field, "aeterm");
    CU_ASSERT(msg_has("longer than 4096 bytes"));
    /* The refused value is cut to fit, and says so. */
    CU_ASSERT_EQUAL(strlen(E.value), sizeof(E.value) - 1);
    CU_ASSERT_STRING_EQUAL(E.value + sizeof(E.value) - 4, "...");
    big[TS_VALUE_BYTES_MAX] = '\0';
    CU_ASSERT_EQUAL(ae_field("aeterm", big), 0);
    free(big);
    /* A NULL value. */
    struct validate_field none = { "sex", NULL };
    CU_ASSERT_EQUAL(hub_write("subject", "101-0003", &none, 1, NULL, NULL), TS_ERR_INVALID);
}

static void test_validate_error_value_printable(void)
{
    /* Cut on a character boundary: 2-byte characters never split. */
    char value[400];
    size_t k = 0;
    while (k + 2 < sizeof(value)) {
        value[k++] = '\xc3';
        value[k++] = '\xa9';
    }
    value[k] = '\0';
    CU_ASSERT_EQUAL(subject_field("sex", value), TS_ERR_INVALID);
    size_t len = strlen(E.value);
    CU_ASSERT(len < sizeof(E.value));
    CU_ASSERT_STRING_EQUAL(E.value + len - 3, "...");
    CU_ASSERT_EQUAL((len - 3) % 2, 0);
    /* Control characters are shown as '?'. */
    CU_ASSERT_EQUAL(subject_field("sex", "M\n\x1b[31m"), TS_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(E.value, "M??[31m");
    /* err may be NULL. */
    struct validate_field f = { "sex", "Q" };
    CU_ASSERT_EQUAL(validate_write("subject", "101-0003", &f, 1, NULL, NULL, VALIDATE_ROLE_HUB,
                                   "", NULL, NULL, NULL),
                    TS_ERR_INVALID);
}

/* ---- roles ------------------------------------------------------------- */

static void test_validate_site_writes_own_site_only(void)
{
    struct validate_field sex = { "sex", "F" };
    CU_ASSERT_EQUAL(site_write("101", "subject", "101-0003", &sex, 1, NULL, NULL), 0);
    CU_ASSERT_EQUAL(site_write("102", "subject", "101-0003", &sex, 1, NULL, NULL), TS_ERR_AUTH);
    CU_ASSERT_STRING_EQUAL(E.value, "101-0003");
    CU_ASSERT_STRING_EQUAL(E.msg, "subject '101-0003' belongs to site '101'; this node is site '102'");
    struct validate_field occ = { "svoccur", "Y" };
    CU_ASSERT_EQUAL(site_write("101", "visit", "101-0003/V1", &occ, 1, NULL, NULL), 0);
    CU_ASSERT_EQUAL(site_write("10", "visit", "101-0003/V1", &occ, 1, NULL, NULL), TS_ERR_AUTH);
    struct validate_field sev = { "aesev", "MILD" };
    CU_ASSERT_EQUAL(site_write("101", "ae", "101-0003-AE-001", &sev, 1, NULL, NULL), 0);
    CU_ASSERT_EQUAL(site_write("1011", "ae", "101-0003-AE-001", &sev, 1, NULL, NULL), TS_ERR_AUTH);
    /* A site node without a site id writes nothing. */
    CU_ASSERT_EQUAL(site_write("", "subject", "101-0003", &sex, 1, NULL, NULL), TS_ERR_AUTH);
    CU_ASSERT_EQUAL(site_write(NULL, "subject", "101-0003", &sex, 1, NULL, NULL), TS_ERR_AUTH);
    /* Validation of values still applies to a site. */
    struct validate_field bad = { "sex", "X" };
    CU_ASSERT_EQUAL(site_write("101", "subject", "101-0003", &bad, 1, NULL, NULL), TS_ERR_INVALID);
}

static void test_validate_site_may_not_code_aes(void)
{
    static const char *coding[] = { "aedecod", "aeptcd", "aebodsys", "aesoccd", "meddra_ver" };
    static const char *values[] = { "Headache", "10019211", "Nervous system disorders",
                                    "10029205", "26.1" };
    for (size_t i = 0; i < 5; i++) {
        struct validate_field f[2] = { { "aesev", "MILD" }, { coding[i], values[i] } };
        CU_ASSERT_EQUAL(site_write("101", "ae", "101-0003-AE-001", f, 2, NULL, NULL), TS_ERR_AUTH);
        CU_ASSERT_STRING_EQUAL(E.field, coding[i]);
        CU_ASSERT(msg_has("coding"));
        CU_ASSERT_EQUAL(hub_write("ae", "101-0003-AE-001", f, 2, NULL, NULL), 0);
    }
}

static void test_validate_site_on_queries(void)
{
    struct record q = { .n = 0 };
    record_set(&q, "target", "subject/101-0003/sex");
    record_set(&q, "state", "open");
    record_set(&q, "round", "1");

    /* Answering: a message and state=answered, on its own site's record. */
    struct validate_field answer[2] = { { "messages", "Corrected per source." },
                                        { "state", "answered" } };
    CU_ASSERT_EQUAL(site_write("101", "query", "Q-hub-1", answer, 2, NULL, &q), 0);
    CU_ASSERT_EQUAL(site_write("101", "query", "Q-hub-1", answer, 1, NULL, &q), 0);
    /* Another site's query. */
    CU_ASSERT_EQUAL(site_write("102", "query", "Q-hub-1", answer, 2, NULL, &q), TS_ERR_AUTH);
    /* Closing or cancelling is the CRO's. */
    struct validate_field close = { "state", "closed" };
    CU_ASSERT_EQUAL(site_write("101", "query", "Q-hub-1", &close, 1, NULL, &q), TS_ERR_AUTH);
    CU_ASSERT_STRING_EQUAL(E.field, "state");
    CU_ASSERT_STRING_EQUAL(E.value, "closed");
    CU_ASSERT_STRING_EQUAL(E.allowed, "answered");
    struct validate_field cancel = { "state", "cancelled" };
    CU_ASSERT_EQUAL(site_write("101", "query", "Q-hub-1", &cancel, 1, NULL, &q), TS_ERR_AUTH);
    /* Other query fields. */
    static const char *others[][2] = { { "text", "x" }, { "round", "2" }, { "source", "dm" },
                                       { "target", "subject/101-0003/sex" } };
    for (size_t i = 0; i < 4; i++) {
        struct validate_field f = { others[i][0], others[i][1] };
        CU_ASSERT_EQUAL(site_write("101", "query", "Q-hub-1", &f, 1, NULL, &q), TS_ERR_AUTH);
        CU_ASSERT_STRING_EQUAL(E.field, others[i][0]);
    }
    /* A query that does not exist (no target) cannot be answered. */
    struct record none = { .n = 0 };
    CU_ASSERT_EQUAL(site_write("101", "query", "Q-hub-2", answer, 2, NULL, &none), TS_ERR_AUTH);
    CU_ASSERT_EQUAL(site_write("101", "query", "Q-hub-2", answer, 2, NULL, NULL), TS_ERR_AUTH);
}

static void test_validate_hub_may_write_anything_valid(void)
{
    struct validate_field subject[4] = { { "site", "102" }, { "sex", "U" }, { "status", "enrolled" },
                                         { "brthdtc", "1970" } };
    CU_ASSERT_EQUAL(hub_write("subject", "102-0001", subject, 4, NULL, NULL), 0);
    struct validate_field query[5] = { { "target", "ae/205-0001-AE-003/aesev" },
                                       { "text", "Severity does not match grade." },
                                       { "state", "open" }, { "round", "1" },
                                       { "source", "monitor" } };
    CU_ASSERT_EQUAL(hub_write("query", "Q-hub-7", query, 5, NULL, NULL), 0);
    struct validate_field close = { "state", "closed" };
    struct record q = { .n = 0 };
    record_set(&q, "target", "subject/101-0003/sex");
    record_set(&q, "state", "answered");
    CU_ASSERT_EQUAL(hub_write("query", "Q-hub-7", &close, 1, NULL, &q), 0);
    /* Valid still means valid. */
    struct validate_field bad = { "aesev", "FATAL" };
    CU_ASSERT_EQUAL(hub_write("ae", "205-0001-AE-003", &bad, 1, NULL, NULL), TS_ERR_INVALID);
}

/* ---- lanes and scopes -------------------------------------------------- */

static void test_validate_lane(void)
{
    struct validate_field serious = { "aeser", "Y" };
    struct validate_field not_serious = { "aeser", "N" };
    struct validate_field term = { "aeterm", "Syncope" };
    struct record cur = { .n = 0 };

    CU_ASSERT_EQUAL(validate_lane("ae", &serious, 1, NULL, NULL), LANE_SAFETY);
    CU_ASSERT_EQUAL(validate_lane("ae", &not_serious, 1, NULL, NULL), LANE_BULK);
    CU_ASSERT_EQUAL(validate_lane("ae", &term, 1, record_current, &cur), LANE_BULK);
    record_set(&cur, "aeser", "Y");
    /* Any write to an AE that is serious now, including its downgrade. */
    CU_ASSERT_EQUAL(validate_lane("ae", &term, 1, record_current, &cur), LANE_SAFETY);
    CU_ASSERT_EQUAL(validate_lane("ae", &not_serious, 1, record_current, &cur), LANE_SAFETY);
    cur.pairs[0][1] = "N";
    CU_ASSERT_EQUAL(validate_lane("ae", &term, 1, record_current, &cur), LANE_BULK);
    CU_ASSERT_EQUAL(validate_lane("ae", &serious, 1, record_current, &cur), LANE_SAFETY);
    /* Only AEs ride the safety lane. */
    CU_ASSERT_EQUAL(validate_lane("subject", &serious, 1, NULL, NULL), LANE_BULK);
    CU_ASSERT_EQUAL(validate_lane("query", &serious, 1, NULL, NULL), LANE_BULK);
}

static void test_validate_scope(void)
{
    char site[TS_ID_BYTES_MAX + 1];

    CU_ASSERT_EQUAL(validate_scope("subject", "101-0003", NULL, 0, NULL, NULL, site), 0);
    CU_ASSERT_STRING_EQUAL(site, "101");
    CU_ASSERT_EQUAL(validate_scope("visit", "SITE7-0003/V3/2", NULL, 0, NULL, NULL, site), 0);
    CU_ASSERT_STRING_EQUAL(site, "SITE7");
    CU_ASSERT_EQUAL(validate_scope("ae", "205-0001-AE-003", NULL, 0, NULL, NULL, site), 0);
    CU_ASSERT_STRING_EQUAL(site, "205");
    CU_ASSERT_EQUAL(validate_scope("subject", "1010003", NULL, 0, NULL, NULL, site), TS_ERR_INVALID);
    CU_ASSERT_STRING_EQUAL(site, "");

    /* A query: the site of its target, from the write or the record. */
    struct validate_field target = { "target", "visit/303-0009/V1/svstdtc" };
    CU_ASSERT_EQUAL(validate_scope("query", "Q-hub-1", &target, 1, NULL, NULL, site), 0);
    CU_ASSERT_STRING_EQUAL(site, "303");
    struct record q = { .n = 0 };
    record_set(&q, "target", "ae/404-0001-AE-001/aesev");
    struct validate_field text = { "text", "x" };
    CU_ASSERT_EQUAL(validate_scope("query", "Q-hub-1", &text, 1, record_current, &q, site), 0);
    CU_ASSERT_STRING_EQUAL(site, "404");
    CU_ASSERT_EQUAL(validate_scope("query", "Q-hub-1", &text, 1, NULL, NULL, site), TS_ERR_INVALID);
    struct validate_field bad = { "target", "nonsense" };
    CU_ASSERT_EQUAL(validate_scope("query", "Q-hub-1", &bad, 1, NULL, NULL, site), TS_ERR_INVALID);

    /* Records of no site are trial-wide. */
    CU_ASSERT_EQUAL(validate_scope("member", "site-101", NULL, 0, NULL, NULL, site), 0);
    CU_ASSERT_STRING_EQUAL(site, "");
}


/* ---- validate_entry: the admission of entries from any origin ---------- */

/* A node's view for admission: one query held, with its target and round. */
struct held {
    const char *query_id;
    const char *target;
    uint32_t round;
};

static int held_target(void *ctx, const char *id, char *buf, size_t cap)
{
    const struct held *h = ctx;
    if (h->query_id == NULL || strcmp(id, h->query_id) != 0)
        return TS_ERR_NOTFOUND;
    snprintf(buf, cap, "%s", h->target);
    return 0;
}

static int held_round(void *ctx, const char *id, uint32_t *round)
{
    const struct held *h = ctx;
    if (h->query_id == NULL || strcmp(id, h->query_id) != 0)
        return TS_ERR_NOTFOUND;
    *round = h->round;
    return 0;
}

static unsigned held_role(void *ctx, const char *origin)
{
    (void)ctx;
    if (strncmp(origin, "hub", 3) == 0)
        return SCHEMA_ROLE_HUB;
    if (strcmp(origin, "admin") == 0)
        return SCHEMA_ROLE_ADMIN;
    return origin[0] >= '0' && origin[0] <= '9' ? SCHEMA_ROLE_SITE : 0;
}

static struct held HELD = {"Q-hub1-9", "subject/102-0001/sex", 1};

/* The user accounts this node holds: id, role, site. */
static const struct {
    const char *id;
    enum schema_user_role role;
    const char *site;
} HELD_USERS[] = {
    {"crc101", USER_ROLE_CRC, "101"},         {"inv101", USER_ROLE_INVESTIGATOR, "101"},
    {"crc102", USER_ROLE_CRC, "102"},         {"mon", USER_ROLE_MONITOR, ""},
    {"dm1", USER_ROLE_DM, ""},                {"safe", USER_ROLE_SAFETY, ""},
    {"view", USER_ROLE_VIEWER, ""},           {"prom", USER_ROLE_METRICS, ""},
};

static int held_user(void *ctx, const char *user, enum schema_user_role *role,
                     char site[TS_ID_BYTES_MAX + 1])
{
    (void)ctx;
    for (size_t i = 0; i < sizeof(HELD_USERS) / sizeof(HELD_USERS[0]); i++) {
        if (strcmp(HELD_USERS[i].id, user) == 0) {
            *role = HELD_USERS[i].role;
            snprintf(site, TS_ID_BYTES_MAX + 1, "%s", HELD_USERS[i].site);
            return 0;
        }
    }
    return TS_ERR_NOTFOUND;
}
/*
 * A stand-in for the node's CA check (pki_crl_check, tested in test_pki): a
 * list "signed by the CA" is a PEM CRL whose body names "CA-SIGNED", and its
 * number follows "number=".
 */
static int held_crl_check(void *ctx, const char *pem, int64_t *number, char *why, size_t cap)
{
    (void)ctx;
    const char *n = strstr(pem, "number=");
    if (strstr(pem, "CA-SIGNED") == NULL || n == NULL) {
        snprintf(why, cap, "the revocation list is not signed by the trial CA");
        return TS_ERR_AUTH;
    }
    *number = strtoll(n + 7, NULL, 10);
    return 0;
}

static const struct validate_lookup LK = {
    .query_target = held_target,
    .query_round = held_round,
    .origin_role = held_role,
    .crl_check = held_crl_check,
    .user_info = held_user,
    .ctx = &HELD,
    .now_ms = 0,
    .skew_ms = 0,
};

#define ADMIT_WRITES_MAX 4
static struct field_write AW[ADMIT_WRITES_MAX];
static struct entry AE;

/* An entry of origin writing type/id scoped to site, with "field=value"
 * writes (NULL-terminated). */
static struct entry *admit_entry(const char *origin, const char *type, const char *id,
                                 const char *site, ...)
{
    va_list ap;
    memset(&AE, 0, sizeof(AE));
    memset(AW, 0, sizeof(AW));
    snprintf(AE.origin, sizeof(AE.origin), "%s", origin);
    snprintf(AE.record_type, sizeof(AE.record_type), "%s", type);
    snprintf(AE.record_id, sizeof(AE.record_id), "%s", id);
    snprintf(AE.site, sizeof(AE.site), "%s", site);
    AE.user = (char *)"integration:someone";
    AE.reason = (char *)"";
    AE.seq = 1;
    AE.hlc = (uint64_t)1700000000000 << HLC_LOGICAL_BITS;
    AE.wall_ms = 1700000000000;
    AE.writes = AW;
    va_start(ap, site);
    for (const char *fv; (fv = va_arg(ap, const char *)) != NULL;) {
        assert(AE.writes_count < ADMIT_WRITES_MAX);
        struct field_write *w = &AW[AE.writes_count++];
        const char *eq = strchr(fv, '=');
        assert(eq != NULL);
        snprintf(w->field, sizeof(w->field), "%.*s", (int)(eq - fv), fv);
        w->value = (char *)(eq + 1);
    }
    va_end(ap);
    return &AE;
}

static int admit(unsigned role, struct entry *e)
{
    return validate_entry(e, role, &LK, &E);
}

/* admit() with the entry's user set to user. */
static int admit_as(unsigned role, const char *user, struct entry *e)
{
    e->user = (char *)user;
    return validate_entry(e, role, &LK, &E);
}

static bool rule_is(const char *rule)
{
    if (strcmp(E.rule, rule) == 0)
        return true;
    printf("\n  rule '%s' (wanted '%s'): %s\n", E.rule, rule, E.msg);
    return false;
}

static void test_validate_entry_site_own_records(void)
{
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE,
                          admit_entry("101", "subject", "101-0001", "101", "sex=F", NULL)), 0);
    /* Another site's scope, or a key of another site under its own scope. */
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE,
                          admit_entry("117", "subject", "101-0001", "101", "sex=F", NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT(rule_is("scope"));
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE,
                          admit_entry("117", "subject", "101-0001", "117", "sex=F", NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT(rule_is("scope"));
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE, admit_entry("117", "visit", "101-0001/V1", "117",
                                                        "status=started", NULL)),
                    TS_ERR_AUTH);
    /* A hub's entry must carry the record's own scope too (the downlink
     * filter reads it). */
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_HUB,
                          admit_entry("hub1", "subject", "101-0001", "102", "sex=F", NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT(rule_is("scope"));
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_HUB,
                          admit_entry("hub1", "subject", "101-0001", "101", "sex=F", NULL)), 0);
}

static void test_validate_entry_values_and_fields(void)
{
    /* What the API refuses, a peer's entry cannot carry either. */
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE,
                          admit_entry("101", "subject", "101-0001", "101", "ssn=123-45-6789", NULL)),
                    TS_ERR_INVALID);
    CU_ASSERT(rule_is("field"));
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE, admit_entry("101", "subject", "101-0001", "101",
                                                        "status=pwned", NULL)),
                    TS_ERR_INVALID);
    CU_ASSERT(rule_is("value"));
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE, admit_entry("101", "subject", "101-0001", "101",
                                                        "sex=<img src=x>", NULL)),
                    TS_ERR_INVALID);
    CU_ASSERT(rule_is("value"));
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE, admit_entry("101", "subject", "101-0001", "101",
                                                        "sex=F", "sex=M", NULL)),
                    TS_ERR_INVALID);
    CU_ASSERT(rule_is("field"));
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE,
                          admit_entry("101", "subject", "101-0001", "101", NULL)),
                    TS_ERR_INVALID);
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE,
                          admit_entry("101", "patient", "101-0001", "101", "sex=F", NULL)),
                    TS_ERR_INVALID);
    CU_ASSERT(rule_is("type"));
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE,
                          admit_entry("101", "subject", "101_0001", "101", "sex=F", NULL)),
                    TS_ERR_INVALID);
    CU_ASSERT(rule_is("key"));
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE,
                          admit_entry("101", "subject", "101-0001", "101", "site=102", NULL)),
                    TS_ERR_INVALID);
    CU_ASSERT(rule_is("value"));
}

/* The revocation list by replication: a hub's or an admin's, CA-signed, whole. */
static void test_validate_entry_crl(void)
{
#define GOOD_CRL "-----BEGIN X509 CRL-----\nCA-SIGNED number=1700000123\n-----END X509 CRL-----\n"
    /* A hub records the CA's list, number as signed, trial-wide. */
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_HUB, admit_entry("hub1", "crl", "ca", "",
                                                       "pem=" GOOD_CRL, "number=1700000123",
                                                       NULL)),
                    0);
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_ADMIN, admit_entry("admin", "crl", "ca", "",
                                                         "pem=" GOOD_CRL, "number=1700000123",
                                                         NULL)),
                    0);
    /* A site may not (even the CA's own list). */
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE, admit_entry("101", "crl", "ca", "",
                                                        "pem=" GOOD_CRL, "number=1700000123",
                                                        NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT(rule_is("role"));
    /* Not signed by the CA. */
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_HUB,
                          admit_entry("hub1", "crl", "ca", "",
                                      "pem=-----BEGIN X509 CRL-----\nnumber=9\n"
                                      "-----END X509 CRL-----\n",
                                      "number=9", NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT(rule_is("value"));
    /* A number other than the one the CA signed. */
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_HUB, admit_entry("hub1", "crl", "ca", "",
                                                       "pem=" GOOD_CRL, "number=1800000000",
                                                       NULL)),
                    TS_ERR_INVALID);
    CU_ASSERT(rule_is("value"));
    /* The list without its number, or not a PEM CRL at all. */
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_HUB, admit_entry("hub1", "crl", "ca", "",
                                                       "pem=" GOOD_CRL, NULL)),
                    TS_ERR_INVALID);
    CU_ASSERT(rule_is("value"));
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_HUB, admit_entry("hub1", "crl", "ca", "",
                                                       "pem=CA-SIGNED number=5", "number=5",
                                                       NULL)),
                    TS_ERR_INVALID);
    CU_ASSERT(rule_is("value"));
    /* One record, trial-wide: another key or a site scope is refused. */
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_HUB, admit_entry("hub1", "crl", "other", "",
                                                       "pem=" GOOD_CRL, "number=1700000123",
                                                       NULL)),
                    TS_ERR_INVALID);
    CU_ASSERT(rule_is("key"));
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_HUB, admit_entry("hub1", "crl", "ca", "101",
                                                       "pem=" GOOD_CRL, "number=1700000123",
                                                       NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT(rule_is("scope"));
    /* Without a CA at hand the entry is held, never admitted unchecked. */
    struct validate_lookup lk = LK;
    lk.crl_check = NULL;
    CU_ASSERT_EQUAL(validate_entry(admit_entry("hub1", "crl", "ca", "", "pem=" GOOD_CRL,
                                               "number=1700000123", NULL),
                                   SCHEMA_ROLE_HUB, &lk, &E),
                    TS_ERR_AGAIN);
#undef GOOD_CRL
}

static void test_validate_entry_cro_fields(void)
{
    /* AE coding, query wording, targets, closing: the CRO's alone. */
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE, admit_entry("101", "ae", "101-0001-AE-001", "101",
                                                        "aedecod=HACKED-CODING", NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT(rule_is("role"));
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_HUB, admit_entry("hub1", "ae", "101-0001-AE-001", "101",
                                                       "aedecod=Headache", NULL)),
                    0);
    /* Site 101 redirecting the CRO's query about site 102's subject. */
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE, admit_entry("101", "query", "Q-hub1-9", "101",
                                                        "target=subject/101-0001/sex", NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT(rule_is("role"));
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE,
                          admit_entry("102", "query", "Q-hub1-9", "102", "state=closed", NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT(rule_is("role"));
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE,
                          admit_entry("102", "query", "Q-hub1-9", "102", "text=rewritten", NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE, admit_entry("102", "query", "Q-hub1-9", "102",
                                                        "state=cancelled", NULL)),
                    TS_ERR_AUTH);
    /* A new query on another site's subject, made by a site. */
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE, admit_entry("101", "query", "Q-101-1", "102",
                                                        "target=subject/102-0001/sex",
                                                        "text=hi", NULL)),
                    TS_ERR_AUTH);
    /* Membership: an admin's or a hub's, never a site's. */
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE,
                          admit_entry("118", "member", "101", "", "status=revoked", NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT(rule_is("role"));
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_HUB,
                          admit_entry("hub1", "member", "101", "", "status=revoked", NULL)), 0);
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_HUB,
                          admit_entry("hub1", "member", "101", "101", "status=revoked", NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT(rule_is("scope"));
}

static void test_validate_entry_query_answers(void)
{
    /* The right site answers the query about its own subject. */
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE, admit_entry("102", "query", "Q-hub1-9", "102",
                                                        "messages=confirmed", "state=answered",
                                                        "round=1", NULL)),
                    0);
    /* Another site answering it, under either scope: refused. */
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE, admit_entry("101", "query", "Q-hub1-9", "101",
                                                        "messages=mine now", NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT(rule_is("scope"));
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE, admit_entry("101", "query", "Q-hub1-9", "102",
                                                        "messages=mine now", NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT(rule_is("scope"));
    /* A query not held yet: not refused, held back until its creation comes. */
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE, admit_entry("102", "query", "Q-hub2-3", "102",
                                                        "messages=early", NULL)),
                    TS_ERR_AGAIN);
    CU_ASSERT(rule_is("pending"));
    /* A round the CRO has not opened: held; a round alone: refused. */
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE, admit_entry("102", "query", "Q-hub1-9", "102",
                                                        "state=answered", "round=999", NULL)),
                    TS_ERR_AGAIN);
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE,
                          admit_entry("102", "query", "Q-hub1-9", "102", "round=1", NULL)),
                    TS_ERR_AUTH);
    /* The hub's later writes take the scope of the query's target, never
     * one of their own choosing. */
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_HUB, admit_entry("hub1", "query", "Q-hub1-9", "102",
                                                       "messages=follow-up", NULL)),
                    0);
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_HUB, admit_entry("hub1", "query", "Q-hub1-9", "101",
                                                       "messages=follow-up", NULL)),
                    TS_ERR_AUTH);
}

static void test_validate_entry_supersedes(void)
{
    struct entry_ref hub_ref = {"hub1", 1, 5};
    struct entry_ref other_site = {"102", 1, 5};
    struct entry_ref own = {"101", 1, 4};
    struct entry *e = admit_entry("101", "subject", "101-0001", "101", "sex=F", NULL);
    AW[0].supersedes = &own;
    AW[0].supersedes_count = 1;
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE, e), 0);
    AW[0].supersedes = &hub_ref;
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE, e), 0);
    AW[0].supersedes = &other_site;
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE, e), TS_ERR_AUTH);
    CU_ASSERT(rule_is("supersedes"));
    /* An origin whose certificate has not reached this node yet (another
     * hub's first batch is on its way): held until it has, not refused. */
    struct entry_ref unknown = {"xhub", 1, 2};
    AW[0].supersedes = &unknown;
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE, e), TS_ERR_AGAIN);
    CU_ASSERT(rule_is("pending"));
    /* A message is never superseded, by anyone. */
    e = admit_entry("hub1", "query", "Q-hub1-9", "102", "messages=again", NULL);
    AW[0].supersedes = &hub_ref;
    AW[0].supersedes_count = 1;
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_HUB, e), TS_ERR_AUTH);
    CU_ASSERT(rule_is("supersedes"));
}

static void test_validate_entry_clock_bound(void)
{
    struct validate_lookup lk = LK;
    lk.now_ms = 1700000000000;
    lk.skew_ms = 300000;
    struct entry *e = admit_entry("101", "subject", "101-0001", "101", "sex=F", NULL);
    CU_ASSERT_EQUAL(validate_entry(e, SCHEMA_ROLE_SITE, &lk, &E), 0);
    /* Just inside the bound, then past it; then the top of the clock. */
    e->hlc = (lk.now_ms + lk.skew_ms) << HLC_LOGICAL_BITS;
    CU_ASSERT_EQUAL(validate_entry(e, SCHEMA_ROLE_SITE, &lk, &E), 0);
    e->hlc = (lk.now_ms + lk.skew_ms + 1) << HLC_LOGICAL_BITS;
    CU_ASSERT_EQUAL(validate_entry(e, SCHEMA_ROLE_SITE, &lk, &E), TS_ERR_AGAIN);
    CU_ASSERT(rule_is("clock"));
    e->hlc = UINT64_MAX;
    CU_ASSERT_EQUAL(validate_entry(e, SCHEMA_ROLE_SITE, &lk, &E), TS_ERR_AGAIN);
    e->hlc = lk.now_ms << HLC_LOGICAL_BITS;
    e->wall_ms = UINT64_MAX;
    CU_ASSERT_EQUAL(validate_entry(e, SCHEMA_ROLE_SITE, &lk, &E), TS_ERR_AGAIN);
    /* A bound that would overflow saturates instead. */
    lk.now_ms = UINT64_MAX - 10;
    e->wall_ms = UINT64_MAX;
    CU_ASSERT_EQUAL(validate_entry(e, SCHEMA_ROLE_SITE, &lk, &E), 0);
}

/* The role matrix on every hop: which user may make which write where. */
static void test_validate_entry_users(void)
{
    /* A site user writes its site's records at its site's node. */
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_SITE, "crc101",
                             admit_entry("101", "subject", "101-0001", "101", "sex=F", NULL)), 0);
    /* ... never at another site's node, nor at a hub. */
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_SITE, "crc102",
                             admit_entry("101", "subject", "101-0001", "101", "sex=F", NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT(rule_is("user"));
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_HUB, "crc101",
                             admit_entry("hub1", "subject", "101-0001", "101", "sex=F", NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT(rule_is("user"));
    /* A CRO user works at a hub only. */
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_SITE, "dm1",
                             admit_entry("101", "subject", "101-0001", "101", "sex=F", NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT(rule_is("user"));
    /* A viewer and a metrics reader write nothing, anywhere. */
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_HUB, "view",
                             admit_entry("hub1", "subject", "101-0001", "101", "sex=F", NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT(rule_is("user"));
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_HUB, "prom",
                             admit_entry("hub1", "ae", "101-0001-AE-001", "101",
                                         "aedecod=Nausea", NULL)),
                    TS_ERR_AUTH);
    /* Coding is the data manager's, not the monitor's. */
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_HUB, "dm1",
                             admit_entry("hub1", "ae", "101-0001-AE-001", "101",
                                         "aedecod=Nausea", NULL)), 0);
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_HUB, "mon",
                             admit_entry("hub1", "ae", "101-0001-AE-001", "101",
                                         "aedecod=Nausea", NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT(rule_is("user"));
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_HUB, "mon",
                             admit_entry("hub1", "query", "Q-hub1-1", "102",
                                         "target=subject/102-0001/sex", "text=Check",
                                         "state=open", "round=1", NULL)), 0);
    /* Only an investigator signs a visit. */
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_SITE, "crc101",
                             admit_entry("101", "visit", "101-0001/V1", "101", "status=signed",
                                         NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_SITE, "inv101",
                             admit_entry("101", "visit", "101-0001/V1", "101", "status=signed",
                                         NULL)), 0);
    /* A user this node does not hold yet: held back, not refused. */
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_SITE, "newcomer",
                             admit_entry("101", "subject", "101-0001", "101", "sex=F", NULL)),
                    TS_ERR_AGAIN);
    CU_ASSERT(rule_is("pending"));
    /* Not a user id, and an integration credential acting for nobody. */
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_SITE, "Dr. Jane Smith (PI, site 102)",
                             admit_entry("101", "subject", "101-0001", "101", "sex=F", NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT(rule_is("user"));
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_SITE, "integration:",
                             admit_entry("101", "subject", "101-0001", "101", "sex=F", NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_SITE, "integration:Jane",
                             admit_entry("101", "subject", "101-0001", "101", "sex=F", NULL)), 0);
    /* A signature: the investigator's own, of a record of the same subject. */
    static const char digest[] = "versions=0123456789abcdef0123456789abcdef"
                                 "0123456789abcdef0123456789abcdef";
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_SITE, "inv101",
                             admit_entry("101", "signature", "101-0001-SIG-001", "101",
                                         "target=visit/101-0001/V1", "meaning=approval",
                                         "signed_at=2026-11-01T10:00Z", digest, NULL)), 0);
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_SITE, "crc101",
                             admit_entry("101", "signature", "101-0001-SIG-001", "101",
                                         "target=visit/101-0001/V1", digest, NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_SITE, "integration:inv101",
                             admit_entry("101", "signature", "101-0001-SIG-001", "101",
                                         "target=visit/101-0001/V1", digest, NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT(rule_is("user"));
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_SITE, "inv101",
                             admit_entry("101", "signature", "101-0001-SIG-001", "101",
                                         "target=visit/101-0002/V1", digest, NULL)),
                    TS_ERR_INVALID);
    CU_ASSERT(rule_is("value"));
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_SITE, "inv101",
                             admit_entry("101", "signature", "101-0001-SIG-001", "101",
                                         "target=subject/101-0001", "versions=ABC", NULL)),
                    TS_ERR_INVALID);
    /* Source-data verification: the monitor's, at a hub, of a record of the
     * mark's subject (an AE too). */
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_HUB, "mon",
                             admit_entry("hub1", "sdv", "101-0001-SDV-1796216219711", "101",
                                         "target=ae/101-0001-AE-002", "fields=aeterm,aesev",
                                         "verified_at=2026-11-01T10:00Z", digest, NULL)), 0);
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_HUB, "dm1",
                             admit_entry("hub1", "sdv", "101-0001-SDV-1796216219711", "101",
                                         "target=ae/101-0001-AE-002", digest, NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_HUB, "integration:mon",
                             admit_entry("hub1", "sdv", "101-0001-SDV-1796216219711", "101",
                                         "target=ae/101-0001-AE-002", digest, NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_HUB, "mon",
                             admit_entry("hub1", "sdv", "101-0001-SDV-1796216219711", "101",
                                         "target=ae/101-0002-AE-002", digest, NULL)),
                    TS_ERR_INVALID);
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_SITE, "crc101",
                             admit_entry("101", "sdv", "101-0001-SDV-1796216219711", "101",
                                         "target=visit/101-0001/V1", digest, NULL)),
                    TS_ERR_AUTH);
    /* Access events: a person's own, at the node they signed in at. */
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_SITE, "crc101",
                             admit_entry("101", "access", "101-ACC-crc101", "101",
                                         "events=sign-in: token from 127.0.0.1", NULL)), 0);
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_SITE, "crc101",
                             admit_entry("101", "access", "101-ACC-inv101", "101",
                                         "events=sign-out", NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT(rule_is("user"));
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_SITE, "integration:101",
                             admit_entry("101", "access", "101-ACC-inv101", "101",
                                         "events=sign-in refused (token)", NULL)), 0);
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_SITE, "integration:101",
                             admit_entry("101", "access", "102-ACC-crc102", "102",
                                         "events=sign-in refused (token)", NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT(rule_is("scope"));
    CU_ASSERT(schema_key_ok("signature", "101-0001-SIG-007"));
    CU_ASSERT(!schema_key_ok("signature", "101-0001-SIG-"));
    CU_ASSERT(!schema_key_ok("ae", "101-0001-AE-"));
    /* A person's account is the admin's, through a hub, never a user's. */
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_HUB, "dm1",
                             admit_entry("hub1", "user", "mallory", "", "role=dm",
                                         "name=M", "state=active", NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_SITE, "integration:admin",
                             admit_entry("101", "user", "mallory", "", "role=dm",
                                         "name=M", "state=active", NULL)),
                    TS_ERR_AUTH);
    CU_ASSERT(rule_is("role"));
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_HUB, "integration:admin",
                             admit_entry("hub1", "user", "jsmith", "", "role=crc", "site=101",
                                         "name=J. Smith", "state=active", NULL)), 0);
}

/* schema_user_may_write over every role, type and field: the table's
 * writers bound each role, and only the listed roles write anything. */
static void test_validate_user_role_matrix(void)
{
    size_t ntypes;
    const struct schema_type *types = schema_types(&ntypes);
    unsigned wrote[USER_ROLE_METRICS + 1] = {0};
    for (int r = USER_ROLE_NONE; r <= USER_ROLE_METRICS; r++) {
        for (size_t t = 0; t < ntypes; t++) {
            for (size_t f = 0; f < types[t].count; f++) {
                const struct schema_field *fld = &types[t].fields[f];
                const char *value = fld->terms != NULL ? fld->terms[0].value : "x";
                bool may = schema_user_may_write((enum schema_user_role)r, &types[t], fld, value);
                /* A person's access events are the node's record of them,
                 * whatever their role: not a write of data. */
                if (!may || strcmp(types[t].name, SCHEMA_ACCESS_TYPE) == 0)
                    continue;
                wrote[r]++;
                /* The enrollment cap: a data manager's, at the allocating hub. */
                CU_ASSERT(types[t].site_scoped ||
                          (strcmp(types[t].name, SCHEMA_ENROLLMENT_TYPE) == 0 &&
                           r == USER_ROLE_DM));
                unsigned cert = schema_user_role_at_site((enum schema_user_role)r)
                                    ? SCHEMA_ROLE_SITE
                                    : SCHEMA_ROLE_HUB;
                CU_ASSERT(fld->writers & cert);
            }
        }
    }
    CU_ASSERT_EQUAL(wrote[USER_ROLE_NONE], 0);
    CU_ASSERT_EQUAL(wrote[USER_ROLE_VIEWER], 0);
    CU_ASSERT_EQUAL(wrote[USER_ROLE_METRICS], 0);
    CU_ASSERT(wrote[USER_ROLE_CRC] > 0);
    CU_ASSERT(wrote[USER_ROLE_MONITOR] > 0);
    CU_ASSERT(wrote[USER_ROLE_DM] > wrote[USER_ROLE_MONITOR]);
    CU_ASSERT_EQUAL(schema_user_role_find("crc"), USER_ROLE_CRC);
    CU_ASSERT_EQUAL(schema_user_role_find("admin"), USER_ROLE_NONE);
    CU_ASSERT_STRING_EQUAL(schema_user_role_name(USER_ROLE_DM), "dm");
}

/* Lock epochs held: subject 101-0001 epoch 1 locks everything, epoch 2
 * unlocks; epoch 3 locks visit V3 only. */
static int held_lock_targets(void *ctx, const char *subject, uint64_t epoch, char *buf,
                             size_t cap)
{
    (void)ctx;
    static const char *const targets[] = {"*", "", "visit/101-0001/V3"};
    if (strcmp(subject, "101-0001") != 0 || epoch == 0 || epoch > 3)
        return TS_ERR_NOTFOUND;
    snprintf(buf, cap, "%s", targets[epoch - 1]);
    return 0;
}

static void test_validate_admit_lock_epochs(void)
{
    struct validate_lookup lk = LK;
    lk.lock_targets = held_lock_targets;
    struct entry *e = admit_entry("101", "visit", "101-0001/V3", "101", "svstdtc=2026-11-02",
                                  NULL);
    e->lock_epoch = 1;
    CU_ASSERT_EQUAL(validate_entry(e, SCHEMA_ROLE_SITE, &lk, &E), TS_ERR_AUTH);
    CU_ASSERT_TRUE(rule_is("lock"));
    e->lock_epoch = 2;
    CU_ASSERT_EQUAL(validate_entry(e, SCHEMA_ROLE_SITE, &lk, &E), 0);
    e->lock_epoch = 3;
    CU_ASSERT_EQUAL(validate_entry(e, SCHEMA_ROLE_SITE, &lk, &E), TS_ERR_AUTH);
    CU_ASSERT_TRUE(rule_is("lock"));
    /* Epoch 3 locks V3 only: another visit is free. */
    e = admit_entry("101", "visit", "101-0001/V2", "101", "svstdtc=2026-11-02", NULL);
    e->lock_epoch = 3;
    CU_ASSERT_EQUAL(validate_entry(e, SCHEMA_ROLE_SITE, &lk, &E), 0);
    /* An epoch not held here: held back, not refused. */
    e->lock_epoch = 4;
    CU_ASSERT_EQUAL(validate_entry(e, SCHEMA_ROLE_SITE, &lk, &E), TS_ERR_AGAIN);
    CU_ASSERT_TRUE(rule_is("pending"));
    /* Without the lookup the node cannot tell: held back too. */
    CU_ASSERT_EQUAL(admit(SCHEMA_ROLE_SITE, e), TS_ERR_AGAIN);
    /* A lock epoch on a type no lock freezes. */
    e = admit_entry("hub1", "query", "Q-hub1-9", "101", "target=subject/101-0001/sex",
                    "text=Check", "state=open", NULL);
    e->lock_epoch = 1;
    CU_ASSERT_EQUAL(validate_entry(e, SCHEMA_ROLE_HUB, &lk, &E), TS_ERR_INVALID);
    CU_ASSERT_TRUE(rule_is("lock"));
}

static void test_validate_admit_lock_record(void)
{
    struct entry *e = admit_entry("hub1", "lock", "101-0001-LOCK", "101", "epoch=1",
                                  "targets=*", "seen=101:1:4,hub1:1:9", NULL);
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_HUB, "dm1", e), 0);
    /* Only a data manager, a person, at a hub. */
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_HUB, "mon", e), TS_ERR_AUTH);
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_HUB, "integration:dm1", e), TS_ERR_AUTH);
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_SITE, "dm1", e), TS_ERR_AUTH);
    /* A lock carries no epoch of its own, names its own subject's records,
     * and writes a seen vector. */
    e->lock_epoch = 1;
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_HUB, "dm1", e), TS_ERR_INVALID);
    CU_ASSERT_TRUE(rule_is("lock"));
    e = admit_entry("hub1", "lock", "101-0001-LOCK", "101", "epoch=1",
                    "targets=visit/101-0002/V1", "seen=", NULL);
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_HUB, "dm1", e), TS_ERR_INVALID);
    CU_ASSERT_TRUE(rule_is("lock"));
    e = admit_entry("hub1", "lock", "101-0001-LOCK", "101", "epoch=1", "targets=*",
                    "seen=101:7:1", NULL);
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_HUB, "dm1", e), TS_ERR_INVALID);
    e = admit_entry("hub1", "lock", "101-0001-LOCK", "101", "epoch=1", "targets=*", NULL);
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_HUB, "dm1", e), TS_ERR_INVALID);
    /* Scoped to the subject's site, like its records. */
    e = admit_entry("hub1", "lock", "101-0001-LOCK", "", "epoch=1", "targets=*", "seen=", NULL);
    CU_ASSERT_EQUAL(admit_as(SCHEMA_ROLE_HUB, "dm1", e), TS_ERR_AUTH);
    CU_ASSERT_TRUE(rule_is("scope"));
}

int main(void)
{
    static const struct unit_test tests[] = {
        { "test_validate_admit_lock_epochs", test_validate_admit_lock_epochs },
        { "test_validate_admit_lock_record", test_validate_admit_lock_record },
        { "test_validate_unknown_type_refused", test_validate_unknown_type_refused },
        { "test_validate_subject_keys", test_validate_subject_keys },
        { "test_validate_visit_keys", test_validate_visit_keys },
        { "test_validate_ae_keys", test_validate_ae_keys },
        { "test_validate_query_keys", test_validate_query_keys },
        { "test_validate_id", test_validate_id },
        { "test_validate_unknown_field_refused", test_validate_unknown_field_refused },
        { "test_validate_sex_terms", test_validate_sex_terms },
        { "test_validate_yes_no_flags", test_validate_yes_no_flags },
        { "test_validate_ae_severity_and_grade", test_validate_ae_severity_and_grade },
        { "test_validate_ae_outcome_and_action", test_validate_ae_outcome_and_action },
        { "test_validate_statuses", test_validate_statuses },
        { "test_validate_status_moves", test_validate_status_moves },
        { "test_validate_query_source_and_round", test_validate_query_source_and_round },
        { "test_validate_query_target", test_validate_query_target },
        { "test_validate_text_fields", test_validate_text_fields },
        { "test_validate_ae_coding_values", test_validate_ae_coding_values },
        { "test_validate_iso8601_accepted", test_validate_iso8601_accepted },
        { "test_validate_iso8601_refused", test_validate_iso8601_refused },
        { "test_validate_leap_days", test_validate_leap_days },
        { "test_validate_date_fields", test_validate_date_fields },
        { "test_validate_sae_aware_needs_datetime", test_validate_sae_aware_needs_datetime },
        { "test_validate_site_must_match_key", test_validate_site_must_match_key },
        { "test_validate_reason_required_on_change", test_validate_reason_required_on_change },
        { "test_validate_reason_limits", test_validate_reason_limits },
        { "test_validate_workflow_forward_needs_no_reason", test_validate_workflow_forward_needs_no_reason },
        { "test_validate_query_state_and_round_forward", test_validate_query_state_and_round_forward },
        { "test_validate_messages_append_without_reason", test_validate_messages_append_without_reason },
        { "test_validate_eie_needs_reason", test_validate_eie_needs_reason },
        { "test_validate_write_once", test_validate_write_once },
        { "test_validate_ae_resolved_needs_end_and_outcome", test_validate_ae_resolved_needs_end_and_outcome },
        { "test_validate_write_shape", test_validate_write_shape },
        { "test_validate_error_value_printable", test_validate_error_value_printable },
        { "test_validate_site_writes_own_site_only", test_validate_site_writes_own_site_only },
        { "test_validate_site_may_not_code_aes", test_validate_site_may_not_code_aes },
        { "test_validate_site_on_queries", test_validate_site_on_queries },
        { "test_validate_hub_may_write_anything_valid", test_validate_hub_may_write_anything_valid },
        { "test_validate_lane", test_validate_lane },
        { "test_validate_scope", test_validate_scope },
        {"test_validate_entry_site_own_records", test_validate_entry_site_own_records},
        {"test_validate_entry_values_and_fields", test_validate_entry_values_and_fields},
        {"test_validate_entry_cro_fields", test_validate_entry_cro_fields},
        {"test_validate_entry_crl", test_validate_entry_crl},
        {"test_validate_entry_query_answers", test_validate_entry_query_answers},
        {"test_validate_entry_supersedes", test_validate_entry_supersedes},
        {"test_validate_entry_clock_bound", test_validate_entry_clock_bound},
        {"test_validate_entry_users", test_validate_entry_users},
        {"test_validate_user_role_matrix", test_validate_user_role_matrix},
        { NULL, NULL },
    };
    return unit_run("validate", tests);
}
