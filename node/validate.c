/*
 * validate.c: the rules every write obeys before it becomes an entry (see
 * validate.h and DOMAIN.md).  Pure: no I/O, no globals, no allocation.
 *
 * What this file guarantees:
 *   - validate_write() returns 0 only for a write whose record type and key
 *     are well formed, whose every field is a known field of that type with
 *     a value of the right form (controlled term, real calendar date, ...),
 *     within the limits of limits.h, that changes a field with a value only
 *     with a reason for change, leaves write-once fields as they are, keeps a
 *     resolved AE with an end date and an outcome, and that the writing role
 *     may make.  Anything else is refused, nothing is half-accepted, and
 *     struct validate_error names the field, the value and what is allowed.
 *   - The checks run in a fixed order (record type, key, write shape, field
 *     names, role, values, then rules across values and time), so one bad
 *     write always gets the same error.
 *
 * Rules this file adds where DOMAIN.md leaves a choice (each tested):
 *   - A reason for change is not needed for an append-only field (query
 *     messages: nothing is changed), nor for a workflow moving forward
 *     (status along its moves, query state and query round to a higher rank
 *     or round).  A status moves only along the moves of schema.c's
 *     workflows from the state displayed now, reason or not: never back, and
 *     screen_failed only from screening; entered-in-error (eie=Y) undoes a
 *     mistaken record.  The query state moved back within a round is a
 *     correction and needs a reason.
 *   - "" is a value only for optional fields (dates, codes, AE coding); it
 *     means "no value" and, like any change, needs a reason once the field
 *     has a value.  Keys, controlled terms and query fields refuse it.
 */
#include "validate.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "enroll.h"
#include "merge.h"
#include "hlc.h"
#include "lex.h"
#include "lock.h"
#include "schema.h"

#define VALIDATE_CODE_BYTES_MAX SCHEMA_CODE_BYTES_MAX

_Static_assert(VALIDATE_CODE_BYTES_MAX < TS_VALUE_BYTES_MAX, "a code is a short value");


static const char date_allowed[] =
    "YYYY, YYYY-MM or YYYY-MM-DD, optionally followed by THH:MM[:SS[.fff]][Z|+HH:MM|-HH:MM]";
static const char datetime_allowed[] =
    "YYYY-MM-DDTHH:MM[:SS[.fff]][Z|+HH:MM|-HH:MM]";
static const char target_allowed[] =
    "<type>/<id>/<field> of a subject, visit or ae, e.g. subject/101-0003/sex";

/* ---- error reporting --------------------------------------------------- */

/* Appends src to dst (capacity cap) as far as it fits; always terminates. */
static void append(char *dst, size_t cap, const char *src)
{
    size_t used = strnlen(dst, cap - 1);
    size_t room = cap - 1 - used;
    size_t len = strlen(src);
    if (len > room)
        len = room;
    memcpy(dst + used, src, len);
    dst[used + len] = '\0';
}

static void join_terms(char *dst, size_t cap, const struct schema_term *terms)
{
    dst[0] = '\0';
    for (size_t i = 0; terms[i].value != NULL; i++) {
        if (i > 0)
            append(dst, cap, ", ");
        append(dst, cap, terms[i].value);
    }
}

/* The record types a write may name, as a person reads them. */
static void join_types(char *dst, size_t cap)
{
    size_t count;
    const struct schema_type *t = schema_types(&count);
    dst[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        /* Signatures, SDV marks, access events and slots are made by their
         * own verbs and by the node, not written as data. */
        if (!t[i].site_scoped || strcmp(t[i].name, SCHEMA_SIGNATURE_TYPE) == 0 ||
            strcmp(t[i].name, SCHEMA_SDV_TYPE) == 0 || strcmp(t[i].name, SCHEMA_ACCESS_TYPE) == 0 ||
            strcmp(t[i].name, SCHEMA_LOCK_TYPE) == 0 ||
            strcmp(t[i].name, SCHEMA_QUOTA_TYPE) == 0)
            continue;
        if (dst[0] != '\0')
            append(dst, cap, ", ");
        append(dst, cap, t[i].name);
    }
}

static void join_fields(char *dst, size_t cap, const struct schema_type *t)
{
    dst[0] = '\0';
    for (size_t i = 0; i < t->count; i++) {
        if (i > 0)
            append(dst, cap, ", ");
        append(dst, cap, t->fields[i].name);
    }
}

/* Length of the UTF-8 sequence starting at s, or 0 when it is not valid
 * (overlong forms, surrogates and code points past U+10FFFF included). */
static size_t utf8_char_len(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000))
        return 0;
    if (cp >= 0xd800 && cp <= 0xdfff)
        return 0;
    if (cp > 0x10ffff)
        return 0;
    return n;
}

/*
 * Copies src into dst (capacity cap) so that a person (and a JSON encoder)
 * can read it: cut at a character boundary with "..." when it does not fit,
 * control characters and bytes that are not UTF-8 shown as '?'.
 */
static void printable_copy(char *dst, size_t cap, const char *src)
{
    static const char more[] = "...";
    const unsigned char *s = (const unsigned char *)(src != NULL ? src : "");
    size_t k = 0;

    /* Invariant: "..." and its NUL always fit after what is written so far. */
    assert(cap > sizeof(more));
    while (*s != '\0') {
        size_t n = utf8_char_len(s);
        size_t take = n == 0 ? 1 : n;
        bool shown_as_is = n > 1 || (n == 1 && *s >= 0x20 && *s != 0x7f);
        size_t out = shown_as_is ? n : 1;
        size_t reserve = s[take] == '\0' ? 1 : sizeof(more);
        if (k + out + reserve > cap) {
            memcpy(dst + k, more, sizeof(more));
            return;
        }
        if (shown_as_is)
            memcpy(dst + k, s, n);
        else
            dst[k] = '?';
        k += out;
        s += take;
    }
    dst[k] = '\0';
}

/* Sets what the error is about; "" for any that do not apply. */
static void error_about(struct validate_error *err, const char *field, const char *value,
                        const char *allowed)
{
    printable_copy(err->field, sizeof(err->field), field);
    printable_copy(err->value, sizeof(err->value), value);
    printable_copy(err->allowed, sizeof(err->allowed), allowed);
}

/* Writes the sentence and returns code, so callers can `return refuse(...)`. */
static int refuse(struct validate_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(struct validate_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

/* ---- lexical helpers --------------------------------------------------- */

static bool is_blank(const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
            return false;
    }
    return true;
}

/* Valid UTF-8 without control characters; multiline allows tab, CR, LF. */
static bool text_ok(const char *s, bool multiline)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p != '\0') {
        size_t n = utf8_char_len(p);
        if (n == 0)
            return false;
        if (n == 1 && (*p < 0x20 || *p == 0x7f)) {
            if (!multiline || (*p != '\t' && *p != '\n' && *p != '\r'))
                return false;
        }
        p += n;
    }
    return true;
}

/* Parses a decimal integer of 1..UINT32_MAX without sign, space or leading
 * zero, so each round has one spelling. */
static bool round_parse(const char *s, uint32_t *out)
{
    size_t len = strlen(s);
    if (len == 0 || len > 10 || !lex_all(s, len, lex_digit) || s[0] == '0')
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++)
        v = v * 10 + (uint64_t)(s[i] - '0');
    if (v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

/* ---- ISO 8601 ---------------------------------------------------------- */

struct iso_parts {
    bool month;
    bool day;
    bool time;
};

static bool digits_at(const char *s, size_t n, unsigned *out)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!lex_digit(s[i]))
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return true;
}

static unsigned days_in_month(unsigned year, unsigned month)
{
    static const unsigned days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (month == 2 && leap)
        return 29;
    return days[month - 1];
}

/*
 * Parses an SDTM date: YYYY, YYYY-MM, YYYY-MM-DD, then optionally
 * THH:MM[:SS[.f{1,9}]] and Z or +HH:MM / -HH:MM.  Returns NULL when s is
 * one, else what is wrong with it, in words.
 */
static const char *iso8601_problem(const char *s, struct iso_parts *parts)
{
    unsigned year, month, day, hour, minute, second;
    const char *p = s;

    memset(parts, 0, sizeof(*parts));
    if (!digits_at(p, 4, &year))
        return "it does not start with a four-digit year";
    if (year == 0)
        return "year 0000 is not a calendar year";
    p += 4;
    if (*p == '\0')
        return NULL;
    if (*p != '-' || !digits_at(p + 1, 2, &month))
        return "the month must be two digits after '-'";
    if (month < 1 || month > 12)
        return "the month must be 01 to 12";
    parts->month = true;
    p += 3;
    if (*p == '\0')
        return NULL;
    if (*p != '-' || !digits_at(p + 1, 2, &day))
        return "the day must be two digits after '-'";
    if (day < 1 || day > days_in_month(year, month))
        return "that day does not exist in that month";
    parts->day = true;
    p += 3;
    if (*p == '\0')
        return NULL;
    if (*p != 'T')
        return "a time must follow 'T'";
    if (!digits_at(p + 1, 2, &hour) || p[3] != ':' || !digits_at(p + 4, 2, &minute))
        return "the time must be THH:MM";
    if (hour > 23 || minute > 59)
        return "hours must be 00 to 23 and minutes 00 to 59";
    parts->time = true;
    p += 6;
    if (*p == ':') {
        if (!digits_at(p + 1, 2, &second))
            return "seconds must be two digits after ':'";
        if (second > 59)
            return "seconds must be 00 to 59";
        p += 3;
        if (*p == '.') {
            size_t n = lex_span(p + 1, 10, lex_digit);
            if (n < 1 || n > 9)
                return "a fraction of a second must have 1 to 9 digits";
            p += 1 + n;
        }
    }
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        unsigned oh, om;
        if (!digits_at(p + 1, 2, &oh) || p[3] != ':' || !digits_at(p + 4, 2, &om))
            return "a UTC offset must be +HH:MM or -HH:MM";
        if (oh > 14 || om > 59)
            return "a UTC offset must be within -14:00 and +14:00";
        p += 6;
    }
    if (*p != '\0')
        return "unexpected characters after the date";
    return NULL;
}

bool validate_iso8601(const char *s)
{
    struct iso_parts parts;
    if (s == NULL)
        return false;
    return iso8601_problem(s, &parts) == NULL;
}

bool validate_id(const char *s)
{
    return schema_id_ok(s);
}

/* ---- the write --------------------------------------------------------- */

static const char *write_value(const struct validate_field *fields, size_t n, const char *field)
{
    for (size_t i = 0; i < n; i++) {
        if (fields[i].field != NULL && strcmp(fields[i].field, field) == 0)
            return fields[i].value;
    }
    return NULL;
}

static const char *current_value(validate_current_fn current, void *ctx, const char *field)
{
    return current != NULL ? current(ctx, field) : NULL;
}

/* The value the record will have: this write's, else the current one. */
static const char *after_value(const struct validate_field *fields, size_t n,
                               validate_current_fn current, void *ctx, const char *field)
{
    const char *v = write_value(fields, n, field);
    return v != NULL ? v : current_value(current, ctx, field);
}

/* What a field of this kind accepts, in words, for struct validate_error. */
static void kind_allowed(const char *id, const struct schema_field *f, char *buf, size_t cap)
{
    buf[0] = '\0';
    switch (f->kind) {
    case KIND_TERM:
        join_terms(buf, cap, f->terms);
        return;
    case KIND_TEXT:
        append(buf, cap, "UTF-8 text, not only spaces; tab and line breaks are the only "
                         "control characters allowed");
        return;
    case KIND_CODE:
        append(buf, cap, "one line of UTF-8 text of at most 200 bytes");
        return;
    case KIND_DATE:
        append(buf, cap, date_allowed);
        return;
    case KIND_DATETIME:
        append(buf, cap, datetime_allowed);
        return;
    case KIND_DIGITS:
        append(buf, cap, "a numeric code of 1 to 20 digits");
        return;
    case KIND_VERSION:
        append(buf, cap, "a MedDRA version, e.g. 26.1");
        return;
    case KIND_ROUND:
        append(buf, cap, "an integer from 1 to 4294967295");
        return;
    case KIND_SITE: {
        char site[TS_ID_BYTES_MAX + 1];
        if (schema_site_of_key(id, site))
            append(buf, cap, site);
        return;
    }
    case KIND_TARGET:
        append(buf, cap, target_allowed);
        return;
    case KIND_CRL:
        append(buf, cap, "a PEM X.509 CRL signed by the trial CA");
        return;
    case KIND_SECRET:
        append(buf, cap, "scrypt$<log2 N>$<r>$<p>$<salt base64>$<hash base64>");
        return;
    case KIND_SITE_REF:
        append(buf, cap, "a site id, or empty for the CRO");
        return;
    case KIND_RECORD:
        append(buf, cap, "subject/<subject id> or visit/<visit id> of the same subject");
        return;
    case KIND_DIGEST:
        append(buf, cap, "64 lowercase hex digits (SHA-256)");
        return;
    case KIND_FIELDS:
        append(buf, cap, "field names, comma-separated");
        return;
    case KIND_COUNT:
        append(buf, cap, "a whole number from 0 to 1000000000");
        return;
    case KIND_NODE:
        append(buf, cap, "a node id of letters and digits");
        return;
    }
    assert(!"unknown value kind");
}

static bool field_list_char(char c)
{
    return lex_alnum(c) || c == '_' || c == ',';
}

static bool lex_lower_hex(char c)
{
    return lex_digit(c) || (c >= 'a' && c <= 'f');
}

/* A signature's target: the subject of signature sig_id ("<subject>-SIG-n"),
 * or one of that subject's visits; an SDV mark's ("<subject>-SDV-n") also one
 * of its AEs. */
static bool signed_record_ok(const char *sig_id, const char *target)
{
    const char *at = strstr(sig_id, "-SIG-");
    bool sdv = at == NULL;
    if (sdv)
        at = strstr(sig_id, "-SDV-");
    if (at == NULL)
        return false;
    size_t subject_len = (size_t)(at - sig_id);
    if (sdv && strncmp(target, "ae/", 3) == 0)
        return schema_key_ok("ae", target + 3) && strncmp(target + 3, sig_id, subject_len) == 0 &&
               strncmp(target + 3 + subject_len, "-AE-", 4) == 0;
    if (strncmp(target, "subject/", 8) == 0)
        return strlen(target + 8) == subject_len &&
               strncmp(target + 8, sig_id, subject_len) == 0;
    if (strncmp(target, "visit/", 6) == 0)
        return schema_key_ok("visit", target + 6) &&
               strncmp(target + 6, sig_id, subject_len) == 0 && target[6 + subject_len] == '/';
    return false;
}

/* scrypt$<log2 N>$<r>$<p>$<salt>$<hash>: small decimal parameters, then two
 * non-empty base64 fields.  The form only; crypto.c checks a token against it. */
static bool secret_ok(const char *value)
{
    static const char prefix[] = "scrypt$";
    if (strncmp(value, prefix, sizeof(prefix) - 1) != 0)
        return false;
    const char *p = value + sizeof(prefix) - 1;
    for (int part = 0; part < 5; part++) {
        size_t n = strcspn(p, "$");
        bool last = part == 4;
        if (n == 0 || n > 128 || (last ? p[n] != '\0' : p[n] != '$'))
            return false;
        for (size_t i = 0; i < n; i++) {
            char c = p[i];
            bool ok = part < 3 ? lex_digit(c)
                               : lex_alnum(c) || c == '+' || c == '/' || c == '=';
            if (!ok)
                return false;
        }
        if (part < 3 && n > 2)
            return false;
        p += n + (last ? 0 : 1);
    }
    return true;
}

static int check_value(const char *type, const char *id, const struct schema_field *f,
                       const char *value, struct validate_error *err)
{
    char allowed[sizeof(err->allowed)];
    size_t len = strlen(value);

    kind_allowed(id, f, allowed, sizeof(allowed));
    if (len == 0) {
        if (f->optional)
            return 0;
        error_about(err, f->name, value, allowed);
        if (f->kind == KIND_TERM)
            return refuse(err, TS_ERR_INVALID,
                          "field '%s': an empty value is not allowed; allowed values: %s",
                          err->field, err->allowed);
        return refuse(err, TS_ERR_INVALID, "field '%s': an empty value is not allowed; allowed: %s",
                      err->field, err->allowed);
    }

    switch (f->kind) {
    case KIND_TERM:
        if (schema_term_ok(f, value))
            return 0;
        error_about(err, f->name, value, allowed);
        return refuse(err, TS_ERR_INVALID, "field '%s': '%s' is not allowed; allowed values: %s",
                      err->field, err->value, err->allowed);

    case KIND_TEXT:
        if (!text_ok(value, true)) {
            error_about(err, f->name, value, allowed);
            return refuse(err, TS_ERR_INVALID,
                          "field '%s': the value is not UTF-8 text or holds control characters",
                          err->field);
        }
        if (is_blank(value)) {
            error_about(err, f->name, value, allowed);
            return refuse(err, TS_ERR_INVALID, "field '%s': the value is only spaces",
                          err->field);
        }
        return 0;

    case KIND_CODE:
        if (len > VALIDATE_CODE_BYTES_MAX) {
            error_about(err, f->name, value, allowed);
            return refuse(err, TS_ERR_INVALID,
                          "field '%s': the value is %zu bytes; at most %d are allowed",
                          err->field, len, VALIDATE_CODE_BYTES_MAX);
        }
        if (!text_ok(value, false)) {
            error_about(err, f->name, value, allowed);
            return refuse(err, TS_ERR_INVALID,
                          "field '%s': the value is not one line of UTF-8 text", err->field);
        }
        return 0;

    case KIND_DATE:
    case KIND_DATETIME: {
        struct iso_parts parts;
        const char *problem = iso8601_problem(value, &parts);
        bool full = f->kind == KIND_DATETIME;
        if (problem == NULL && full && !parts.time)
            problem = "a full date and time is needed";
        if (problem == NULL)
            return 0;
        error_about(err, f->name, value, allowed);
        return refuse(err, TS_ERR_INVALID,
                      "field '%s': '%s' is not an ISO 8601 %s (%s); allowed: %s", err->field,
                      err->value, full ? "date-time" : "date", problem, err->allowed);
    }

    case KIND_DIGITS:
        if (len <= 20 && lex_all(value, len, lex_digit))
            return 0;
        break;

    case KIND_VERSION: {
        const char *dot = strchr(value, '.');
        size_t major = dot != NULL ? (size_t)(dot - value) : len;
        bool ok = major <= 4 && lex_all(value, major, lex_digit);
        if (ok && dot != NULL)
            ok = strlen(dot + 1) <= 4 && lex_all(dot + 1, strlen(dot + 1), lex_digit);
        if (ok)
            return 0;
        break;
    }

    case KIND_ROUND: {
        uint32_t round;
        if (round_parse(value, &round))
            return 0;
        break;
    }

    case KIND_SITE:
        if (strcmp(allowed, value) == 0)
            return 0;
        error_about(err, f->name, value, allowed);
        return refuse(err, TS_ERR_INVALID,
                      "field '%s': '%s' is not the site of %s '%s'; allowed: %s", err->field,
                      err->value, type, id, err->allowed);

    case KIND_CRL: {
        /* Its form only: who signed it is validate_entry's lk->crl_check. */
        static const char begin[] = "-----BEGIN X509 CRL-----";
        if (strncmp(value, begin, sizeof(begin) - 1) == 0 && text_ok(value, true) &&
            strstr(value, "-----END X509 CRL-----") != NULL)
            return 0;
        error_about(err, f->name, value, allowed);
        return refuse(err, TS_ERR_INVALID, "field '%s': the value is not a PEM X.509 CRL",
                      err->field);
    }

    case KIND_SECRET:
        if (secret_ok(value))
            return 0;
        error_about(err, f->name, "(not shown)", allowed);
        return refuse(err, TS_ERR_INVALID, "field '%s': the value is not a salted hash; "
                      "allowed: %s", err->field, err->allowed);

    case KIND_SITE_REF:
        if (schema_id_ok(value) && lex_all(value, len, lex_alnum))
            return 0;
        break;

    case KIND_RECORD:
        if (signed_record_ok(id, value))
            return 0;
        break;

    case KIND_DIGEST:
        if (len == 2 * TS_HASH_BYTES && lex_all(value, len, lex_lower_hex))
            return 0;
        break;

    case KIND_FIELDS:
        if (len <= 1024 && lex_all(value, len, field_list_char))
            return 0;
        break;

    case KIND_COUNT: {
        uint64_t count;
        if (enroll_count_parse(value, &count))
            return 0;
        break;
    }

    case KIND_NODE:
        if (schema_id_ok(value) && lex_all(value, len, lex_alnum))
            return 0;
        break;

    case KIND_TARGET:
        if (len <= TS_TYPE_BYTES_MAX + TS_ID_BYTES_MAX + TS_FIELD_BYTES_MAX + 2 && schema_target_ok(value))
            return 0;
        error_about(err, f->name, value, allowed);
        return refuse(err, TS_ERR_INVALID,
                      "field '%s': '%s' does not name a field of a record; allowed: %s",
                      err->field, err->value, err->allowed);
    }
    error_about(err, f->name, value, allowed);
    return refuse(err, TS_ERR_INVALID, "field '%s': '%s' is not allowed; allowed: %s",
                  err->field, err->value, err->allowed);
}

/* The write's query round, else the current one, else 1 (a new query). */
static uint32_t query_round(const struct validate_field *fields, size_t n,
                            validate_current_fn current, void *ctx, bool include_write)
{
    uint32_t round = 1;
    const char *v = include_write ? write_value(fields, n, "round") : NULL;
    if (v == NULL)
        v = current_value(current, ctx, "round");
    if (v != NULL && round_parse(v, &round))
        return round;
    return 1;
}

/* True when changing field from old to value moves a workflow forward, which
 * needs no reason: a higher status rank, or a higher (round, state). */
static bool workflow_forward(const char *type, const char *field, const char *old,
                             const char *value, const struct validate_field *fields, size_t n,
                             validate_current_fn current, void *ctx)
{
    const struct schema_field *spec = schema_field(type, field);
    enum merge_policy policy = spec != NULL ? spec->policy : MERGE_POLICY_LATEST;
    if (policy == MERGE_POLICY_RANK)
        return merge_rank(type, field, value) > merge_rank(type, field, old);
    if (policy == MERGE_POLICY_QUERY_STATE) {
        uint32_t old_round = query_round(fields, n, current, ctx, false);
        uint32_t new_round = query_round(fields, n, current, ctx, true);
        if (new_round != old_round)
            return new_round > old_round;
        return merge_rank(type, field, value) > merge_rank(type, field, old);
    }
    if (strcmp(type, "query") == 0 && strcmp(field, "round") == 0) {
        uint32_t a, b;
        return round_parse(old, &a) && round_parse(value, &b) && b > a;
    }
    return false;
}

/*
 * A status write against the state displayed now, old, one of the workflow's
 * states: 0 for one of its moves, else a refusal naming the moves allowed.
 */
static int check_step(const char *type, const struct schema_field *f, const char *old,
                      const char *value, struct validate_error *err)
{
    const char *const *next = schema_next_states(f, old);
    assert(next != NULL);
    char allowed[sizeof(err->allowed)];
    allowed[0] = '\0';
    for (size_t i = 0; next[i] != NULL; i++) {
        if (strcmp(next[i], value) == 0)
            return 0;
        if (i > 0)
            append(allowed, sizeof(allowed), ", ");
        append(allowed, sizeof(allowed), next[i]);
    }
    char old_cut[sizeof(err->value)];
    printable_copy(old_cut, sizeof(old_cut), old);
    error_about(err, f->name, value, allowed);
    if (next[0] == NULL)
        return refuse(err, TS_ERR_INVALID,
                      "field '%s': a %s in '%s' cannot move to '%s': '%s' is final; to undo a "
                      "mistaken record mark it entered in error (eie=Y with a reason)",
                      err->field, type, old_cut, err->value, old_cut);
    return refuse(err, TS_ERR_INVALID,
                  "field '%s': a %s in '%s' cannot move to '%s'; allowed next states: %s "
                  "(to undo a mistaken record mark it entered in error: eie=Y with a reason)",
                  err->field, type, old_cut, err->value, err->allowed);
}

static int check_change(const char *type, const struct schema_field *f, const char *value,
                        const char *reason, const struct validate_field *fields, size_t n,
                        validate_current_fn current, void *ctx, struct validate_error *err)
{
    bool has_reason = reason != NULL && !is_blank(reason);
    const char *old = current_value(current, ctx, f->name);

    if (strcmp(f->name, "eie") == 0 && strcmp(value, "Y") == 0 && !has_reason) {
        error_about(err, f->name, value, "");
        return refuse(err, TS_ERR_INVALID,
                      "field 'eie': marking a record entered in error needs a reason");
    }
    if (old == NULL || strcmp(old, value) == 0)
        return 0;

    char old_cut[sizeof(err->value)];
    printable_copy(old_cut, sizeof(old_cut), old);
    if (f->policy == MERGE_POLICY_WRITE_ONCE) {
        error_about(err, f->name, value, old);
        return refuse(err, TS_ERR_INVALID,
                      "field '%s' is write-once: it is '%s' and cannot become '%s'", err->field,
                      old_cut, err->value);
    }
    /* A state the workflow does not know (none is ever displayed) is left
     * to the reason rule below. */
    if (f->policy == MERGE_POLICY_RANK && schema_next_states(f, old) != NULL)
        return check_step(type, f, old, value, err);
    if (has_reason || f->reason_free)
        return 0;
    if (workflow_forward(type, f->name, old, value, fields, n, current, ctx))
        return 0;
    error_about(err, f->name, value, "");
    return refuse(err, TS_ERR_INVALID,
                  "field '%s': changing '%s' to '%s' needs a reason for change", err->field,
                  old_cut, err->value);
}

/* A resolved AE needs an end date and an outcome, whether this write
 * resolves it or clears either of them on an AE already resolved. */
static int check_ae_resolved(const struct validate_field *fields, size_t n,
                             validate_current_fn current, void *ctx, struct validate_error *err)
{
    const char *status = after_value(fields, n, current, ctx, "status");
    if (status == NULL || strcmp(status, "resolved") != 0)
        return 0;
    if (write_value(fields, n, "status") == NULL && write_value(fields, n, "aeendtc") == NULL
        && write_value(fields, n, "aeout") == NULL)
        return 0;
    const char *end = after_value(fields, n, current, ctx, "aeendtc");
    const char *out = after_value(fields, n, current, ctx, "aeout");
    bool end_missing = end == NULL || *end == '\0';
    bool out_missing = out == NULL || *out == '\0';
    if (!end_missing && !out_missing)
        return 0;
    error_about(err, "status", "resolved", "");
    return refuse(err, TS_ERR_INVALID,
                  "field 'status': an AE can be 'resolved' only with an end date (aeendtc) and "
                  "an outcome (aeout); missing: %s",
                  end_missing && out_missing ? "aeendtc, aeout"
                                             : (end_missing ? "aeendtc" : "aeout"));
}

/*
 * The table's writers rule for one write: role (a schema_role bit) may write
 * each field, with each value (a site's values may be narrowed, as a query
 * answer is).  The same function judges the API's writes and every entry a
 * peer sends, so both give the same verdict in the same words.
 */
static int check_writers(const char *type, const struct schema_field *const *specs,
                         const struct validate_field *fields, size_t n, unsigned role,
                         struct validate_error *err)
{
    for (size_t i = 0; i < n; i++) {
        const struct schema_field *f = specs[i];
        assert(f != NULL);
        if (role == SCHEMA_ROLE_SITE && (f->writers & SCHEMA_ROLE_SITE) != 0) {
            if (schema_site_may_write(f, fields[i].value))
                continue;
            char terms[sizeof(err->allowed)];
            terms[0] = '\0';
            for (size_t k = 0; f->site_terms[k] != NULL; k++) {
                if (k > 0)
                    append(terms, sizeof(terms), ", ");
                append(terms, sizeof(terms), f->site_terms[k]);
            }
            error_about(err, f->name, fields[i].value, terms);
            return refuse(err, TS_ERR_AUTH,
                          "field '%s': a site may set %s %s to '%s' only, not '%s'", err->field,
                          strcmp(type, SCHEMA_QUERY_TYPE) == 0 ? "a" : "the", type, err->allowed,
                          err->value);
        }
        if ((f->writers & role) != 0)
            continue;
        error_about(err, f->name, fields[i].value, "");
        if (role != SCHEMA_ROLE_SITE)
            return refuse(err, TS_ERR_AUTH, "field '%s' of %s: this origin's role may not write it",
                          err->field, type);
        if (strcmp(type, SCHEMA_QUERY_TYPE) == 0)
            return refuse(err, TS_ERR_AUTH,
                          "field '%s': on a query a site may write only messages and "
                          "state=answered",
                          err->field);
        if (strcmp(type, "ae") == 0)
            return refuse(err, TS_ERR_AUTH,
                          "field '%s': AE coding is done by the CRO; a site may not write it",
                          err->field);
        return refuse(err, TS_ERR_AUTH, "field '%s' of %s is the CRO's; a site may not write it",
                      err->field, type);
    }
    return 0;
}

static int check_role(const char *type, const char *id, const struct schema_field *const *specs,
                      const struct validate_field *fields, size_t n, enum validate_role role,
                      const char *site, validate_current_fn current, void *ctx,
                      struct validate_error *err)
{
    if (role == VALIDATE_ROLE_HUB)
        return 0;
    assert(role == VALIDATE_ROLE_SITE);
    if (site == NULL || *site == '\0') {
        error_about(err, "", "", "");
        return refuse(err, TS_ERR_AUTH, "this site node has no site id; it may not write");
    }

    int rc = check_writers(type, specs, fields, n, SCHEMA_ROLE_SITE, err);
    if (rc != 0)
        return rc;
    /* The round a site's answer belongs to is added by its node, from the
     * query as held; a person at a site never writes it. */
    for (size_t i = 0; i < n; i++) {
        if (strcmp(type, SCHEMA_QUERY_TYPE) == 0 && strcmp(specs[i]->name, "round") == 0) {
            error_about(err, specs[i]->name, fields[i].value, "messages, state");
            return refuse(err, TS_ERR_AUTH,
                          "field 'round': on a query a site may write only messages and "
                          "state=answered");
        }
    }

    char scope[TS_ID_BYTES_MAX + 1];
    if (validate_scope(type, id, fields, n, current, ctx, scope) != 0) {
        error_about(err, "", id, "");
        return refuse(err, TS_ERR_AUTH,
                      "%s '%s' is not tied to a record of this site; a site may only answer "
                      "existing queries on its own records",
                      type, err->value);
    }
    if (strcmp(scope, site) != 0) {
        char site_cut[sizeof(err->value)];
        printable_copy(site_cut, sizeof(site_cut), site);
        error_about(err, "", id, site);
        return refuse(err, TS_ERR_AUTH, "%s '%s' belongs to site '%s'; this node is site '%s'",
                      type, err->value, scope, site_cut);
    }
    return 0;
}

int validate_write(const char *type, const char *id,
                   const struct validate_field *fields, size_t n,
                   const char *reason, const char *user,
                   enum validate_role role, const char *site,
                   validate_current_fn current, void *ctx,
                   struct validate_error *err)
{
    struct validate_error scratch;
    const struct schema_field *specs[TS_WRITES_PER_ENTRY_MAX];
    char allowed[sizeof(err->allowed)];
    int rc;

    if (err == NULL)
        err = &scratch;
    memset(err, 0, sizeof(*err));

    const struct schema_type *t = type != NULL ? schema_type_find(type) : NULL;
    /* The enrollment cap is trial-wide, written by the allocating hub's
     * node on a data manager's word (enroll_node.h). */
    if (t == NULL || (!t->site_scoped && strcmp(type, SCHEMA_ENROLLMENT_TYPE) != 0)) {
        join_types(allowed, sizeof(allowed));
        error_about(err, "", type, allowed);
        return refuse(err, TS_ERR_INVALID, "record type '%s' is not known; allowed types: %s",
                      err->value, err->allowed);
    }
    if (id == NULL || !schema_key_ok(type, id)) {
        error_about(err, "", id, t->key_format);
        return refuse(err, TS_ERR_INVALID, "%s id '%s' is not valid; expected %s", type,
                      err->value, err->allowed);
    }
    if (n == 0 || fields == NULL) {
        error_about(err, "", "", "");
        return refuse(err, TS_ERR_INVALID, "a write must set at least one field");
    }
    if (n > TS_WRITES_PER_ENTRY_MAX) {
        error_about(err, "", "", "");
        return refuse(err, TS_ERR_INVALID, "a write sets at most %d fields; this one sets %zu",
                      TS_WRITES_PER_ENTRY_MAX, n);
    }
    if (reason != NULL) {
        size_t len = strnlen(reason, TS_REASON_BYTES_MAX + 1);
        if (len > TS_REASON_BYTES_MAX || !text_ok(reason, true)) {
            error_about(err, "", reason, "");
            return refuse(err, TS_ERR_INVALID,
                          "the reason for change must be UTF-8 text of at most %d bytes",
                          TS_REASON_BYTES_MAX);
        }
    }
    if (user != NULL) {
        size_t len = strnlen(user, TS_USER_BYTES_MAX + 1);
        if (len > TS_USER_BYTES_MAX || !text_ok(user, false)) {
            error_about(err, "", user, "");
            return refuse(err, TS_ERR_INVALID,
                          "the user name must be one line of UTF-8 text of at most %d bytes",
                          TS_USER_BYTES_MAX);
        }
    }

    /* Field names: known, once each; values present and within the limit. */
    for (size_t i = 0; i < n; i++) {
        const char *name = fields[i].field != NULL ? fields[i].field : "";
        specs[i] = schema_field_find(t, name);
        if (specs[i] == NULL) {
            join_fields(allowed, sizeof(allowed), t);
            error_about(err, name, fields[i].value, allowed);
            return refuse(err, TS_ERR_INVALID,
                          "field '%s' is not a field of %s; allowed fields: %s", err->field,
                          type, err->allowed);
        }
        for (size_t j = 0; j < i; j++) {
            if (specs[j] == specs[i]) {
                error_about(err, name, fields[i].value, "");
                return refuse(err, TS_ERR_INVALID, "field '%s' is written twice in one write",
                              err->field);
            }
        }
        if (fields[i].value == NULL) {
            error_about(err, name, "", "");
            return refuse(err, TS_ERR_INVALID, "field '%s' has no value", err->field);
        }
        size_t len = strnlen(fields[i].value, TS_VALUE_BYTES_MAX + 1);
        if (len > TS_VALUE_BYTES_MAX) {
            error_about(err, name, fields[i].value, "");
            return refuse(err, TS_ERR_INVALID,
                          "field '%s': the value is longer than %d bytes", err->field,
                          TS_VALUE_BYTES_MAX);
        }
    }

    rc = check_role(type, id, specs, fields, n, role, site, current, ctx, err);
    if (rc != 0)
        return rc;

    for (size_t i = 0; i < n; i++) {
        rc = check_value(type, id, specs[i], fields[i].value, err);
        if (rc != 0)
            return rc;
    }
    for (size_t i = 0; i < n; i++) {
        rc = check_change(type, specs[i], fields[i].value, reason, fields, n, current, ctx, err);
        if (rc != 0)
            return rc;
    }
    if (strcmp(type, "ae") == 0) {
        rc = check_ae_resolved(fields, n, current, ctx, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

enum lane validate_lane(const char *type, const struct validate_field *fields,
                        size_t n, validate_current_fn current, void *ctx)
{
    if (type == NULL || strcmp(type, "ae") != 0)
        return LANE_BULK;
    const char *now = write_value(fields, n, "aeser");
    if (schema_ae_serious(now))
        return LANE_SAFETY;
    /* An AE that is serious stays urgent, including the write that
     * downgrades it: safety reviewers must see that one first too. */
    const char *cur = current_value(current, ctx, "aeser");
    if (schema_ae_serious(cur))
        return LANE_SAFETY;
    return LANE_BULK;
}

int validate_scope(const char *type, const char *id,
                   const struct validate_field *fields, size_t n,
                   validate_current_fn current, void *ctx,
                   char site[TS_ID_BYTES_MAX + 1])
{
    assert(site != NULL);
    site[0] = '\0';
    if (type == NULL || id == NULL)
        return TS_ERR_INVALID;

    const struct schema_type *t = schema_type_find(type);
    if (t != NULL && t->site_scoped && strcmp(type, SCHEMA_QUERY_TYPE) != 0)
        return schema_site_of_key(id, site) ? 0 : TS_ERR_INVALID;

    if (strcmp(type, SCHEMA_QUERY_TYPE) == 0) {
        const char *target = write_value(fields, n, "target");
        if (target == NULL)
            target = current_value(current, ctx, "target");
        if (target == NULL || !schema_target_ok(target))
            return TS_ERR_INVALID;
        char ttype[TS_TYPE_BYTES_MAX + 1];
        char tid[TS_ID_BYTES_MAX + 1];
        const char *tfield;
        bool split = schema_target_split(target, ttype, tid, &tfield);
        assert(split);
        if (!split || !schema_site_of_key(tid, site))
            return TS_ERR_INVALID;
        return 0;
    }

    /* Any other type (membership, trial settings) is trial-wide. */
    return 0;
}

/* ---- admission of an entry, from any origin, on every hop ------------------ */

static int admit_refuse(struct validate_error *err, const char *rule, int code, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));

static int admit_refuse(struct validate_error *err, const char *rule, int code, const char *fmt,
                        ...)
{
    va_list ap;
    snprintf(err->rule, sizeof(err->rule), "%s", rule);
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

static const char *role_word(unsigned role)
{
    switch (role) {
    case SCHEMA_ROLE_SITE:
        return "site";
    case SCHEMA_ROLE_HUB:
        return "hub";
    case SCHEMA_ROLE_ADMIN:
        return "admin";
    }
    return "unknown role";
}

/* The site an entry's record belongs to, from immutable keys only: the key's
 * site prefix, or for a query the site of its target as written by the
 * entry itself or, for later writes, by the query's creating entry. */
static int admit_scope(const struct entry *e, const struct schema_type *t,
                       const struct validate_lookup *lk, char site[TS_ID_BYTES_MAX + 1],
                       struct validate_error *err)
{
    site[0] = '\0';
    if (!t->site_scoped)
        return 0;
    if (strcmp(t->name, SCHEMA_QUERY_TYPE) != 0) {
        bool ok = schema_site_of_key(e->record_id, site);
        assert(ok);  /* schema_key_ok passed */
        return ok ? 0 : admit_refuse(err, "key", TS_ERR_INVALID, "%s %s has no site", t->name,
                                     e->record_id);
    }
    for (size_t i = 0; i < e->writes_count; i++) {
        if (strcmp(e->writes[i].field, "target") == 0) {
            bool ok = schema_target_site(e->writes[i].value, site);
            assert(ok);  /* the value passed check_value */
            return ok ? 0 : admit_refuse(err, "value", TS_ERR_INVALID, "bad query target");
        }
    }
    char target[TS_TYPE_BYTES_MAX + TS_ID_BYTES_MAX + TS_FIELD_BYTES_MAX + 3];
    if (lk == NULL || lk->query_target == NULL ||
        lk->query_target(lk->ctx, e->record_id, target, sizeof(target)) != 0)
        return admit_refuse(err, "pending", TS_ERR_AGAIN,
                            "query %s is not held here yet: its creating entry must come first",
                            e->record_id);
    if (!schema_target_site(target, site))
        return admit_refuse(err, "scope", TS_ERR_AUTH, "query %s has no valid target held",
                            e->record_id);
    return 0;
}

int validate_admin_write(const char *type, const char *id, const struct validate_field *fields,
                         size_t n, const char *reason, struct validate_error *err)
{
    struct validate_error scratch;
    if (err == NULL)
        err = &scratch;
    memset(err, 0, sizeof(*err));
    const struct schema_type *t = schema_type_find(type);
    if (t == NULL || t->site_scoped)
        return refuse(err, TS_ERR_INVALID, "'%s' is not an admin's record type", type);
    if (id == NULL || !schema_key_ok(type, id)) {
        error_about(err, "", id, t->key_format);
        return refuse(err, TS_ERR_INVALID, "%s id '%s' is not valid; expected %s", type,
                      err->value, err->allowed);
    }
    if (n == 0 || n > TS_WRITES_PER_ENTRY_MAX)
        return refuse(err, TS_ERR_INVALID, "a write sets 1 to %d fields", TS_WRITES_PER_ENTRY_MAX);
    if (reason == NULL || reason[0] == '\0' ||
        strnlen(reason, TS_REASON_BYTES_MAX + 1) > TS_REASON_BYTES_MAX || !text_ok(reason, true))
        return refuse(err, TS_ERR_INVALID, "an admin's change needs a reason (UTF-8 text of at "
                      "most %d bytes)", TS_REASON_BYTES_MAX);
    for (size_t i = 0; i < n; i++) {
        const struct schema_field *f = schema_field_find(t, fields[i].field);
        if (f == NULL) {
            char allowed[sizeof(err->allowed)];
            join_fields(allowed, sizeof(allowed), t);
            error_about(err, fields[i].field, fields[i].value, allowed);
            return refuse(err, TS_ERR_INVALID, "field '%s' is not a field of %s; allowed "
                          "fields: %s", err->field, type, err->allowed);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(fields[j].field, fields[i].field) == 0)
                return refuse(err, TS_ERR_INVALID, "field '%s' is written twice",
                              fields[i].field);
        }
        if (fields[i].value == NULL)
            return refuse(err, TS_ERR_INVALID, "field '%s' has no value", f->name);
        int rc = check_value(type, id, f, fields[i].value, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int validate_user_role(enum schema_user_role r, const char *type,
                       const struct validate_field *fields, size_t n,
                       struct validate_error *err)
{
    struct validate_error scratch;
    if (err == NULL)
        err = &scratch;
    const struct schema_type *t = schema_type_find(type);
    assert(t != NULL);
    if (t == NULL)
        return refuse(err, TS_ERR_INVALID, "record type '%s' is not known", type);
    for (size_t i = 0; i < n; i++) {
        const struct schema_field *f = schema_field_find(t, fields[i].field);
        if (f == NULL || schema_user_may_write(r, t, f, fields[i].value))
            continue;
        error_about(err, fields[i].field, fields[i].value, "");
        const char *rn = r == USER_ROLE_NONE ? "(no role)" : schema_user_role_name(r);
        if (r == USER_ROLE_VIEWER || r == USER_ROLE_METRICS || r == USER_ROLE_NONE)
            return refuse(err, TS_ERR_AUTH, "a user with role %s writes nothing", rn);
        if (!t->site_scoped)
            return refuse(err, TS_ERR_AUTH, "%s records are the admin's: use the trialsync CLI "
                          "on the trial directory", type);
        if (strcmp(type, "visit") == 0 && strcmp(f->name, "status") == 0)
            return refuse(err, TS_ERR_AUTH, "field 'status': only an investigator signs a visit "
                          "(role %s)", rn);
        if (schema_user_role_at_site(r))
            return refuse(err, TS_ERR_AUTH, "field '%s' of %s: a site user (role %s) may not "
                          "write it", err->field, type, rn);
        return refuse(err, TS_ERR_AUTH, "field '%s' of %s: role %s may not write it%s",
                      err->field, type, rn,
                      r == USER_ROLE_DM ? "" : " (a monitor or safety user words, answers and "
                                               "closes queries; a data manager also codes and "
                                               "corrects)");
    }
    return 0;
}

/*
 * The entry's user: the origin's integration credential on behalf of someone
 * named, or a person whose record is held here, whose write-once role may make
 * this write and who works where the origin is (schema.h).
 */
static int admit_user(const struct entry *e, const struct schema_type *t, unsigned origin_role,
                      const struct validate_lookup *lk, struct validate_error *err)
{
    const char *on_behalf = NULL;
    if (schema_user_is_integration(e->user, &on_behalf)) {
        if (on_behalf[0] == '\0')
            return admit_refuse(err, "user", TS_ERR_AUTH, "the integration credential must name "
                                "the person it acts for");
        /* A signature and an SDV mark are a person's own acts: never on
         * someone's behalf. */
        if (strcmp(t->name, SCHEMA_SIGNATURE_TYPE) == 0 || strcmp(t->name, SCHEMA_SDV_TYPE) == 0 ||
            strcmp(t->name, SCHEMA_LOCK_TYPE) == 0)
            return admit_refuse(err, "user", TS_ERR_AUTH, "a %s is made by a person signed "
                                "in, not by the integration credential", t->name);
        return 0;
    }
    if (!schema_id_ok(e->user))
        return admit_refuse(err, "user", TS_ERR_AUTH, "user '%.64s' is neither a user id nor "
                            "'" SCHEMA_INTEGRATION_PREFIX "<name>'", e->user);
    enum schema_user_role r = USER_ROLE_NONE;
    char site[TS_ID_BYTES_MAX + 1] = "";
    if (lk == NULL || lk->user_info == NULL || lk->user_info(lk->ctx, e->user, &r, site) != 0)
        return admit_refuse(err, "pending", TS_ERR_AGAIN,
                            "user %s is not known here yet: the user's record must come first",
                            e->user);
    if (schema_user_role_at_site(r) &&
        (origin_role != SCHEMA_ROLE_SITE || strcmp(site, e->origin) != 0))
        return admit_refuse(err, "user", TS_ERR_AUTH, "user %s (%s at site %s) acted at node "
                            "%s: a site user works only at the site's own node",
                            e->user, schema_user_role_name(r), site, e->origin);
    if (schema_user_role_at_hub(r) && origin_role != SCHEMA_ROLE_HUB)
        return admit_refuse(err, "user", TS_ERR_AUTH, "user %s (%s) acted at node %s: a CRO "
                            "user works only at a hub", e->user, schema_user_role_name(r),
                            e->origin);
    /* Access events: a person's own record only ("<node>-ACC-<user>"). */
    if (strcmp(t->name, SCHEMA_ACCESS_TYPE) == 0) {
        const char *at = strstr(e->record_id, "-ACC-");
        if (at == NULL || strcmp(at + 5, e->user) != 0)
            return admit_refuse(err, "user", TS_ERR_AUTH, "user %s wrote the access events of "
                                "%.64s: a person's events are their own", e->user,
                                e->record_id);
    }
    struct validate_field fields[TS_WRITES_PER_ENTRY_MAX];
    assert(e->writes_count <= TS_WRITES_PER_ENTRY_MAX);
    for (size_t i = 0; i < e->writes_count; i++) {
        fields[i].field = e->writes[i].field;
        fields[i].value = e->writes[i].value;
    }
    int rc = validate_user_role(r, t->name, fields, e->writes_count, err);
    if (rc != 0)
        snprintf(err->rule, sizeof(err->rule), "user");
    return rc;
}

/* A site answers in the round it saw: never a round the CRO has not opened. */
static int admit_site_round(const struct entry *e, const struct validate_lookup *lk,
                            struct validate_error *err)
{
    const char *round = NULL;
    bool has_state = false;
    for (size_t i = 0; i < e->writes_count; i++) {
        if (strcmp(e->writes[i].field, "round") == 0)
            round = e->writes[i].value;
        if (strcmp(e->writes[i].field, "state") == 0)
            has_state = true;
    }
    if (round == NULL)
        return 0;
    if (!has_state)
        return admit_refuse(err, "role", TS_ERR_AUTH,
                            "site %s wrote the round of query %s without answering it: the round "
                            "is the CRO's", e->origin, e->record_id);
    uint32_t wrote = 0, held = 0;
    bool parsed = round_parse(round, &wrote);
    assert(parsed);  /* the value passed check_value */
    if (!parsed)
        return admit_refuse(err, "value", TS_ERR_INVALID, "bad round");
    if (lk == NULL || lk->query_round == NULL || lk->query_round(lk->ctx, e->record_id, &held) != 0)
        held = 1;
    if (wrote > held)
        return admit_refuse(err, "pending", TS_ERR_AGAIN,
                            "site %s answers round %" PRIu32 " of query %s; round %" PRIu32
                            " is the highest held here",
                            e->origin, wrote, e->record_id, held);
    return 0;
}

/*
 * A revocation list: the list (pem) and its number, both, in one entry; the
 * list signed by the trial CA (lk->crl_check, which holds OpenSSL) and its
 * CRL number the one the entry states, so every node puts the same list in
 * force in the same order.
 */
static int admit_crl(const struct entry *e, const struct validate_lookup *lk,
                     struct validate_error *err)
{
    const char *pem = NULL, *number = NULL;
    for (size_t i = 0; i < e->writes_count; i++) {
        if (strcmp(e->writes[i].field, "pem") == 0)
            pem = e->writes[i].value;
        else if (strcmp(e->writes[i].field, "number") == 0)
            number = e->writes[i].value;
    }
    if (pem == NULL || number == NULL)
        return admit_refuse(err, "value", TS_ERR_INVALID,
                            "a crl entry writes both the list (pem) and its number");
    if (lk == NULL || lk->crl_check == NULL)
        return admit_refuse(err, "value", TS_ERR_AGAIN,
                            "no trial CA at hand to check the revocation list against");
    int64_t signed_number = -1;
    char why[160] = "";
    if (lk->crl_check(lk->ctx, pem, &signed_number, why, sizeof(why)) != 0)
        return admit_refuse(err, "value", TS_ERR_AUTH, "field 'pem': %s", why);
    char text[24];
    snprintf(text, sizeof(text), "%" PRId64, signed_number);
    if (strcmp(text, number) != 0)
        return admit_refuse(err, "value", TS_ERR_INVALID,
                            "field 'number': '%.24s', but the list signed by the CA is number %s",
                            number, text);
    return 0;
}

/*
 * Locks (lock.h): what a lock entry writes, and the lock epoch an entry
 * carries against the epochs held here.
 */
static int admit_lock(const struct entry *e, const struct schema_type *t,
                      const struct validate_lookup *lk, struct validate_error *err)
{
    if (strcmp(t->name, SCHEMA_LOCK_TYPE) == 0) {
        struct lock_version *v = malloc(sizeof(*v));
        if (v == NULL)
            return admit_refuse(err, "lock", TS_ERR_AGAIN, "out of memory reading a lock");
        bool ok = lock_version_of(e, v);
        free(v);
        if (e->lock_epoch != 0)
            return admit_refuse(err, "lock", TS_ERR_INVALID,
                                "a lock entry carries no lock epoch of its own");
        if (!ok)
            return admit_refuse(err, "lock", TS_ERR_INVALID,
                                "lock %s must write epoch, targets (records of its own subject) "
                                "and seen (origin:lane:seq,...)",
                                e->record_id);
        return 0;
    }
    if (e->lock_epoch == 0)
        return 0;
    char subject[TS_ID_BYTES_MAX + 1];
    if (!lock_subject_of(t->name, e->record_id, subject))
        return admit_refuse(err, "lock", TS_ERR_INVALID,
                            "a %s entry carries no lock epoch (%" PRIu64 "): only subjects, "
                            "visits and AEs are locked",
                            t->name, e->lock_epoch);
    char *targets = malloc(LOCK_TEXT_BYTES_MAX + 1);
    if (targets == NULL)
        return admit_refuse(err, "lock", TS_ERR_AGAIN, "out of memory reading a lock");
    int rc = 0;
    if (lk == NULL || lk->lock_targets == NULL ||
        lk->lock_targets(lk->ctx, subject, e->lock_epoch, targets, LOCK_TEXT_BYTES_MAX + 1) != 0)
        rc = admit_refuse(err, "pending", TS_ERR_AGAIN,
                          "lock epoch %" PRIu64 " of subject %s is not held here yet: the lock "
                          "must come first",
                          e->lock_epoch, subject);
    else if (lock_covers(targets, t->name, e->record_id))
        rc = admit_refuse(err, "lock", TS_ERR_AUTH,
                          "%s %s is locked (lock epoch %" PRIu64 "), and its writer had seen the "
                          "lock",
                          t->name, e->record_id, e->lock_epoch);
    free(targets);
    return rc;
}

int validate_entry(const struct entry *e, unsigned origin_role, const struct validate_lookup *lk,
                   struct validate_error *err)
{
    const struct schema_field *specs[TS_WRITES_PER_ENTRY_MAX];
    struct validate_field fields[TS_WRITES_PER_ENTRY_MAX];
    char scope[TS_ID_BYTES_MAX + 1];
    int rc;

    assert(e != NULL);
    assert(err != NULL);
    memset(err, 0, sizeof(*err));

    /* The clock: nothing from the future is applied, nor moves this clock. */
    if (lk != NULL && lk->now_ms != 0) {
        uint64_t bound = lk->now_ms > UINT64_MAX - lk->skew_ms ? UINT64_MAX
                                                               : lk->now_ms + lk->skew_ms;
        uint64_t hlc_ms_at = hlc_ms(e->hlc);
        if (hlc_ms_at > bound || e->wall_ms > bound)
            return admit_refuse(err, "clock", TS_ERR_AGAIN,
                                "%s/%u/%" PRIu64 " is stamped %" PRIu64 " ms (wall %" PRIu64
                                " ms), more than %" PRIu64 " ms ahead of this node's clock; "
                                "held until then",
                                e->origin, e->lane, e->seq, hlc_ms_at, e->wall_ms, lk->skew_ms);
    }

    const struct schema_type *t = schema_type_find(e->record_type);
    if (t == NULL)
        return admit_refuse(err, "type", TS_ERR_INVALID, "record type '%.32s' is not known",
                            e->record_type);
    if ((t->creators & origin_role) == 0 &&
        !(origin_role == SCHEMA_ROLE_SITE && strcmp(t->name, SCHEMA_QUERY_TYPE) == 0))
        return admit_refuse(err, "role", TS_ERR_AUTH, "a %s may not write %s records",
                            role_word(origin_role), t->name);
    if (!schema_key_ok(t->name, e->record_id))
        return admit_refuse(err, "key", TS_ERR_INVALID, "%s id '%.64s' is not valid; expected %s",
                            t->name, e->record_id, t->key_format);
    if (e->writes_count == 0 || e->writes_count > TS_WRITES_PER_ENTRY_MAX)
        return admit_refuse(err, "field", TS_ERR_INVALID, "an entry writes 1 to %d fields, not %zu",
                            TS_WRITES_PER_ENTRY_MAX, e->writes_count);
    for (size_t i = 0; i < e->writes_count; i++) {
        const struct field_write *w = &e->writes[i];
        specs[i] = schema_field_find(t, w->field);
        if (specs[i] == NULL)
            return admit_refuse(err, "field", TS_ERR_INVALID, "field '%.32s' is not a field of %s",
                                w->field, t->name);
        for (size_t j = 0; j < i; j++) {
            if (specs[j] == specs[i])
                return admit_refuse(err, "field", TS_ERR_INVALID,
                                    "field '%s' is written twice in one entry", w->field);
        }
        if (w->value == NULL || strnlen(w->value, TS_VALUE_BYTES_MAX + 1) > TS_VALUE_BYTES_MAX)
            return admit_refuse(err, "value", TS_ERR_INVALID, "field '%s': no value, or too long",
                                w->field);
        fields[i].field = w->field;
        fields[i].value = w->value;
    }
    if (strnlen(e->reason, TS_REASON_BYTES_MAX + 1) > TS_REASON_BYTES_MAX ||
        !text_ok(e->reason, true))
        return admit_refuse(err, "value", TS_ERR_INVALID, "the reason is not UTF-8 text within %d "
                            "bytes", TS_REASON_BYTES_MAX);
    if (strnlen(e->user, TS_USER_BYTES_MAX + 1) > TS_USER_BYTES_MAX || !text_ok(e->user, false))
        return admit_refuse(err, "value", TS_ERR_INVALID, "the user is not one line of UTF-8 "
                            "text within %d bytes", TS_USER_BYTES_MAX);

    rc = check_writers(t->name, specs, fields, e->writes_count, origin_role, err);
    if (rc != 0) {
        snprintf(err->rule, sizeof(err->rule), "role");
        return rc;
    }
    if (strcmp(t->name, SCHEMA_MEMBER_TYPE) != 0) {
        for (size_t i = 0; i < e->writes_count; i++) {
            rc = check_value(t->name, e->record_id, specs[i], fields[i].value, err);
            if (rc != 0) {
                snprintf(err->rule, sizeof(err->rule), "value");
                return rc;
            }
        }
    } else {
        for (size_t i = 0; i < e->writes_count; i++) {
            if (specs[i]->kind == KIND_TERM && !schema_term_ok(specs[i], fields[i].value))
                return admit_refuse(err, "value", TS_ERR_INVALID,
                                    "member %s: field '%s' has no allowed value", e->record_id,
                                    specs[i]->name);
        }
    }

    if (strcmp(t->name, SCHEMA_CRL_TYPE) == 0) {
        rc = admit_crl(e, lk, err);
        if (rc != 0)
            return rc;
    }

    rc = admit_user(e, t, origin_role, lk, err);
    if (rc != 0)
        return rc;
    rc = admit_scope(e, t, lk, scope, err);
    if (rc != 0)
        return rc;
    if (strcmp(e->site, scope) != 0)
        return admit_refuse(err, "scope", TS_ERR_AUTH,
                            "%s %s belongs to site '%s' but the entry is scoped to site '%.32s'",
                            t->name, e->record_id, scope[0] ? scope : "(trial-wide)", e->site);
    if (origin_role == SCHEMA_ROLE_SITE && strcmp(scope, e->origin) != 0)
        return admit_refuse(err, "scope", TS_ERR_AUTH,
                            "site %s wrote %s %s, a record of site '%s': a site writes only its "
                            "own records",
                            e->origin, t->name, e->record_id, scope);
    if (origin_role == SCHEMA_ROLE_SITE && strcmp(t->name, SCHEMA_QUERY_TYPE) == 0) {
        rc = admit_site_round(e, lk, err);
        if (rc != 0)
            return rc;
    }
    rc = admit_lock(e, t, lk, err);
    if (rc != 0)
        return rc;

    /* What a write may supersede: never a message (append-only), and for a
     * site only its own writes or the CRO's, never another site's. */
    for (size_t i = 0; i < e->writes_count; i++) {
        const struct field_write *w = &e->writes[i];
        if (w->supersedes_count > 0 && specs[i]->policy == MERGE_POLICY_APPEND)
            return admit_refuse(err, "supersedes", TS_ERR_AUTH,
                                "field '%s' is append-only: a write supersedes nothing",
                                w->field);
        if (origin_role != SCHEMA_ROLE_SITE)
            continue;
        for (size_t k = 0; k < w->supersedes_count; k++) {
            const struct entry_ref *r = &w->supersedes[k];
            if (strcmp(r->origin, e->origin) == 0)
                continue;
            unsigned role = lk != NULL && lk->origin_role != NULL
                                ? lk->origin_role(lk->ctx, r->origin)
                                : 0;
            if (role == SCHEMA_ROLE_HUB)
                continue;
            /* An origin this node holds no certificate of yet (a hub whose
             * first batch has not reached it): held, not refused, until that
             * origin's chain arrives and says what it is.  Refusing would be
             * for good on the link, and the site's later writes would reach
             * no hub (found by the chaos run). */
            if (role == 0)
                return admit_refuse(err, "pending", TS_ERR_AGAIN,
                                    "site %s supersedes a write of %s, an origin not known here "
                                    "yet: held until its chain arrives",
                                    e->origin, r->origin);
            return admit_refuse(err, "supersedes", TS_ERR_AUTH,
                                "site %s supersedes a write of %s (%s), which it may not hold",
                                e->origin, r->origin, role == 0 ? "unknown" : role_word(role));
        }
    }

    if (lk != NULL && lk->enroll_view != NULL && enroll_entry_concerns(e)) {
        struct enroll_view view;
        struct enroll_refusal why;
        memset(&view, 0, sizeof(view));
        if (lk->enroll_view(lk->ctx, e, &view) != 0)
            return admit_refuse(err, "pending", TS_ERR_AGAIN, "the enrollment slots of site "
                                "'%.32s' cannot be read here now", scope);
        rc = enroll_admit(e, origin_role, &view, &why);
        if (rc != 0)
            return admit_refuse(err, why.rule, rc, "%s", why.msg);
    }
    return 0;
}
