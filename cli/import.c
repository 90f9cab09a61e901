/*
 * import.c: trialsync import: loads subjects, visits and AEs from a CSV or
 * NDJSON file into a running node (for moving from another system).
 *
 * Two passes over the file, so memory stays bounded whatever its size:
 *   1. every row is parsed and checked here (format, one row per record),
 *      and sent in requests of at most TS_IMPORT_ROWS_MAX rows with dry_run:
 *      the node checks each row with the rules of a single write against the
 *      records as they stand.  Every error is reported, naming the file's
 *      line; if there is any, nothing is written.
 *   2. the same requests again, for real: each one is one group commit.
 * A request is all or nothing.  Between the passes another writer could make
 * a row invalid; then the requests before it stay written and the message
 * says which lines were, and which were not.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../node/config.h"
#include "cli.h"
#include "client.h"

/* One CSV record or NDJSON line: a row is one entry, and an entry is at most
 * TS_ENTRY_BYTES_MAX; a longer record is an unbalanced quote, not data. */
#define IMPORT_RECORD_BYTES_MAX TS_ENTRY_BYTES_MAX
/* Columns of a CSV header: type, id, reason and the fields of one write. */
#define IMPORT_COLUMNS_MAX (TS_WRITES_PER_ENTRY_MAX + 3)
/* Errors printed before the rest are only counted: a wrong file can have
 * thousands, and the first hundred say what is wrong. */
#define IMPORT_ERRORS_PRINTED_MAX 100
/* Retries of a request the node answers 503 (busy committing), 1 s apart. */
#define IMPORT_BUSY_RETRIES_MAX 30

enum import_format { IMPORT_FORMAT_CSV, IMPORT_FORMAT_NDJSON };

static void import_usage(FILE *out)
{
    fprintf(out,
            "usage: trialsync import --node NODEDIR FILE [--format csv|ndjson] [--user NAME]\n"
            "                        [--reason TEXT] [--dry-run]\n"
            "\n"
            "Loads subjects, visits and adverse events from FILE into the node (for moving\n"
            "from another system).  Every row is checked first, with the rules the API\n"
            "applies to a single write and against the records the node holds; each error\n"
            "names the file's line, the field, the value and what is allowed.  If any row\n"
            "is wrong nothing is written.  Rows are then written in groups of up to %d,\n"
            "one group commit each.\n"
            "\n"
            "FILE formats (--format, else by the name: .csv, .ndjson/.jsonl, else the\n"
            "first character: '{' is NDJSON):\n"
            "  NDJSON  one JSON object a line; blank lines are skipped:\n"
            "          {\"type\":\"subject\",\"id\":\"101-0001\",\"fields\":{\"sex\":\"F\",\n"
            "           \"brthdtc\":\"1961-04\"},\"reason\":\"...\"}   (reason optional)\n"
            "  CSV     RFC 4180: a header row 'type,id,FIELD,FIELD...' then one row per\n"
            "          record; a cell may be quoted (\"a, b\", \"\"\"\" is a quote, line breaks\n"
            "          allowed inside quotes).  An empty cell is a field not written.  An\n"
            "          optional column 'reason' gives the row's reason for change.\n"
            "TYPE is subject, visit or ae; each record appears in one row only.\n"
            "\n"
            "  --user     who is importing, recorded in the audit trail (default: login)\n"
            "  --reason   reason for change for rows that change values already held\n"
            "             (a row's own reason wins)\n"
            "  --dry-run  check every row, write nothing\n",
            TS_IMPORT_ROWS_MAX);
}

/* ---- growable strings ---------------------------------------------------- */

struct buf {
    char *p;
    size_t len, cap;
};

static int buf_put(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap > 0 ? b->cap : 256;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static void buf_release(struct buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* ---- the file ------------------------------------------------------------ */

struct reader {
    FILE *f;
    const char *path;
    enum import_format format;
    size_t line;            /* lines read so far */
    char *text;             /* the current line (getline's buffer) */
    size_t text_cap;
    char *columns[IMPORT_COLUMNS_MAX];
    size_t columns_count;
    size_t reason_column;   /* IMPORT_COLUMNS_MAX when there is none */
    struct buf cells[IMPORT_COLUMNS_MAX];
};

/* Reads the next line without its line ending: its length, or -1 at EOF. */
static ssize_t reader_line(struct reader *r)
{
    ssize_t n = getline(&r->text, &r->text_cap, r->f);
    if (n < 0)
        return -1;
    r->line++;
    if (n > 0 && r->text[n - 1] == '\n')
        r->text[--n] = '\0';
    if (n > 0 && r->text[n - 1] == '\r')
        r->text[--n] = '\0';
    return n;
}

/*
 * Reads one CSV record (RFC 4180) into r->cells: 1 with *ncells set, 0 at
 * EOF, -1 with why filled (the record starts at line *start).
 */
static int csv_record(struct reader *r, size_t *ncells, size_t *start, char *why, size_t cap)
{
    ssize_t n;
    do {
        n = reader_line(r);
        if (n < 0)
            return 0;
    } while (n == 0);  /* blank lines are no records */
    *start = r->line;

    size_t cell = 0, bytes = 0;
    const char *p = r->text;
    r->cells[0].len = 0;
    if (buf_put(&r->cells[0], "", 0) != 0)
        goto out_nomem;
    for (;;) {
        if (*p == '"') {
            /* A quoted cell: runs to the lone closing quote, over lines. */
            p++;
            for (;;) {
                const char *q = strchr(p, '"');
                size_t take = q != NULL ? (size_t)(q - p) : strlen(p);
                bytes += take;
                if (bytes > IMPORT_RECORD_BYTES_MAX) {
                    snprintf(why, cap,
                             "the record runs on past %d bytes to line %zu: a quoted cell "
                             "opened on line %zu is not closed (unbalanced '\"')",
                             IMPORT_RECORD_BYTES_MAX, r->line, *start);
                    return -1;
                }
                if (buf_put(&r->cells[cell], p, take) != 0)
                    goto out_nomem;
                if (q == NULL) {
                    if (reader_line(r) < 0) {
                        snprintf(why, cap,
                                 "unbalanced '\"': the quoted cell opened on line %zu is "
                                 "never closed", *start);
                        return -1;
                    }
                    if (buf_put(&r->cells[cell], "\n", 1) != 0)
                        goto out_nomem;
                    p = r->text;
                    continue;
                }
                if (q[1] == '"') {
                    if (buf_put(&r->cells[cell], "\"", 1) != 0)
                        goto out_nomem;
                    p = q + 2;
                    continue;
                }
                p = q + 1;
                break;
            }
            if (*p != ',' && *p != '\0') {
                snprintf(why, cap,
                         "text after the closing '\"' of cell %zu%s (an unbalanced quote "
                         "opened on line %zu?)", cell + 1,
                         r->line != *start ? " on a later line" : "", *start);
                return -1;
            }
        } else {
            size_t take = strcspn(p, ",\"");
            if (p[take] == '"') {
                snprintf(why, cap,
                         "a '\"' inside unquoted cell %zu: quote the whole cell and double "
                         "the quote (\"\")", cell + 1);
                return -1;
            }
            bytes += take;
            if (bytes > IMPORT_RECORD_BYTES_MAX) {
                snprintf(why, cap, "the record is longer than %d bytes",
                         IMPORT_RECORD_BYTES_MAX);
                return -1;
            }
            if (buf_put(&r->cells[cell], p, take) != 0)
                goto out_nomem;
            p += take;
        }
        if (*p == '\0')
            break;
        /* A comma: the next cell. */
        p++;
        if (++cell == IMPORT_COLUMNS_MAX) {
            snprintf(why, cap, "more than %d cells", IMPORT_COLUMNS_MAX);
            return -1;
        }
        r->cells[cell].len = 0;
        if (buf_put(&r->cells[cell], "", 0) != 0)
            goto out_nomem;
    }
    *ncells = cell + 1;
    return 1;

out_nomem:
    snprintf(why, cap, "out of memory");
    return -1;
}

/* Reads the CSV header: 0, or -1 with why filled. */
static int csv_header(struct reader *r, char *why, size_t cap)
{
    size_t ncells = 0, start = 0;
    int rc = csv_record(r, &ncells, &start, why, cap);
    if (rc == 0) {
        snprintf(why, cap, "the file is empty: a CSV import starts with a header row "
                           "'type,id,FIELD,...'");
        return -1;
    }
    if (rc < 0)
        return -1;
    if (ncells < 2 || strcmp(r->cells[0].p, "type") != 0 || strcmp(r->cells[1].p, "id") != 0) {
        snprintf(why, cap, "the header row must start with 'type,id', not '%.60s'", r->text);
        return -1;
    }
    r->reason_column = IMPORT_COLUMNS_MAX;
    for (size_t i = 0; i < ncells; i++) {
        const char *name = r->cells[i].p;
        if (name[0] == '\0' || strlen(name) > TS_FIELD_BYTES_MAX) {
            snprintf(why, cap, "header column %zu: a field name is 1 to %d characters", i + 1,
                     TS_FIELD_BYTES_MAX);
            return -1;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(r->columns[j], name) == 0) {
                snprintf(why, cap, "header column %zu: '%s' is also column %zu", i + 1, name,
                         j + 1);
                return -1;
            }
        }
        r->columns[i] = strdup(name);
        if (r->columns[i] == NULL) {
            snprintf(why, cap, "out of memory");
            return -1;
        }
        r->columns_count = i + 1;
        if (strcmp(name, "reason") == 0)
            r->reason_column = i;
    }
    return 0;
}

static bool importable_type(const char *t)
{
    return strcmp(t, "subject") == 0 || strcmp(t, "visit") == 0 || strcmp(t, "ae") == 0;
}

/* A CSV record as a row object; NULL with why filled. */
static json_t *csv_row(struct reader *r, size_t ncells, char *why, size_t cap)
{
    if (ncells != r->columns_count) {
        snprintf(why, cap, "%zu cells, but the header has %zu columns", ncells,
                 r->columns_count);
        return NULL;
    }
    json_t *fields = json_object();
    json_t *row = json_pack("{s:s,s:s,s:o}", "type", r->cells[0].p, "id", r->cells[1].p,
                            "fields", fields);
    if (row == NULL) {
        snprintf(why, cap, "a cell is not valid UTF-8");
        return NULL;
    }
    for (size_t i = 2; i < ncells; i++) {
        if (r->cells[i].len == 0)
            continue;  /* an empty cell is a field not written */
        json_t *v = json_string(r->cells[i].p);
        if (v == NULL) {
            snprintf(why, cap, "column '%s': the value is not valid UTF-8", r->columns[i]);
            json_decref(row);
            return NULL;
        }
        json_object_set_new(i == r->reason_column ? row : fields, r->columns[i], v);
    }
    return row;
}

/* An NDJSON line as a row object (checked); NULL with why filled. */
static json_t *ndjson_row(const char *text, char *why, size_t cap)
{
    json_error_t jerr;
    json_t *row = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (row == NULL) {
        snprintf(why, cap, "not JSON: %s (column %d)", jerr.text, jerr.column);
        return NULL;
    }
    const char *key;
    json_t *v;
    if (!json_is_object(row))
        goto out_shape;
    json_object_foreach(row, key, v) {
        if (strcmp(key, "type") != 0 && strcmp(key, "id") != 0 && strcmp(key, "fields") != 0 &&
            strcmp(key, "reason") != 0) {
            snprintf(why, cap, "unknown key '%.40s': a row has type, id, fields and reason",
                     key);
            json_decref(row);
            return NULL;
        }
    }
    if (!json_is_string(json_object_get(row, "type")) ||
        !json_is_string(json_object_get(row, "id")) ||
        !json_is_object(json_object_get(row, "fields")))
        goto out_shape;
    v = json_object_get(row, "reason");
    if (v != NULL && !json_is_string(v))
        goto out_shape;
    json_object_foreach(json_object_get(row, "fields"), key, v) {
        if (!json_is_string(v)) {
            snprintf(why, cap, "field '%.40s': the value must be a JSON string", key);
            json_decref(row);
            return NULL;
        }
    }
    return row;

out_shape:
    snprintf(why, cap, "a row is {\"type\": string, \"id\": string, \"fields\": {name: "
                       "string, ...}, \"reason\": string}");
    json_decref(row);
    return NULL;
}

/*
 * The next row of the file: 1 with *row (the caller's) and *line, 0 at EOF,
 * -1 with why filled and *line the line it is about.
 */
static int reader_next(struct reader *r, json_t **row, size_t *line, char *why, size_t cap)
{
    *row = NULL;
    if (r->format == IMPORT_FORMAT_CSV) {
        size_t ncells = 0;
        int rc = csv_record(r, &ncells, line, why, cap);
        if (rc <= 0)
            return rc;
        *row = csv_row(r, ncells, why, cap);
    } else {
        ssize_t n;
        do {
            n = reader_line(r);
            if (n < 0)
                return 0;
        } while (strspn(r->text, " \t") == (size_t)n);
        *line = r->line;
        if ((size_t)n > IMPORT_RECORD_BYTES_MAX) {
            snprintf(why, cap, "the line is longer than %d bytes", IMPORT_RECORD_BYTES_MAX);
            return -1;
        }
        *row = ndjson_row(r->text, why, cap);
    }
    if (*row == NULL)
        return -1;
    const char *type = json_string_value(json_object_get(*row, "type"));
    const char *id = json_string_value(json_object_get(*row, "id"));
    if (!importable_type(type)) {
        snprintf(why, cap, "type '%.20s': an import loads subject, visit and ae records", type);
    } else if (id[0] == '\0' || strlen(id) > TS_ID_BYTES_MAX) {
        snprintf(why, cap, "the id is 1 to %d characters", TS_ID_BYTES_MAX);
    } else if (json_object_size(json_object_get(*row, "fields")) == 0) {
        snprintf(why, cap, "%s %s: the row writes no field", type, id);
    } else {
        return 1;
    }
    json_decref(*row);
    *row = NULL;
    return -1;
}

static void reader_release(struct reader *r)
{
    for (size_t i = 0; i < r->columns_count; i++)
        free(r->columns[i]);
    for (size_t i = 0; i < IMPORT_COLUMNS_MAX; i++)
        buf_release(&r->cells[i]);
    free(r->text);
    if (r->f != NULL)
        fclose(r->f);
}

/* ---- one row per record -------------------------------------------------- */

/* The records seen, "type/id" -> first line: open addressing, grown at half. */
struct seen {
    char **keys;
    size_t *lines;
    size_t cap, count;
};

static uint64_t seen_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;  /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

/* Records key at line: 0 when new, the earlier line when seen, -1 no memory. */
static long long seen_add(struct seen *s, const char *key, size_t line)
{
    if (2 * (s->count + 1) > s->cap) {
        struct seen g = {.cap = s->cap > 0 ? 2 * s->cap : 1024};
        g.keys = calloc(g.cap, sizeof(*g.keys));
        g.lines = calloc(g.cap, sizeof(*g.lines));
        if (g.keys == NULL || g.lines == NULL) {
            free(g.keys);
            free(g.lines);
            return -1;
        }
        for (size_t i = 0; i < s->cap; i++) {
            if (s->keys[i] == NULL)
                continue;
            size_t j = seen_hash(s->keys[i]) & (g.cap - 1);
            while (g.keys[j] != NULL)
                j = (j + 1) & (g.cap - 1);
            g.keys[j] = s->keys[i];
            g.lines[j] = s->lines[i];
        }
        g.count = s->count;
        free(s->keys);
        free(s->lines);
        *s = g;
    }
    size_t j = seen_hash(key) & (s->cap - 1);
    while (s->keys[j] != NULL) {
        if (strcmp(s->keys[j], key) == 0)
            return (long long)s->lines[j];
        j = (j + 1) & (s->cap - 1);
    }
    s->keys[j] = strdup(key);
    if (s->keys[j] == NULL)
        return -1;
    s->lines[j] = line;
    s->count++;
    return 0;
}

static void seen_release(struct seen *s)
{
    for (size_t i = 0; i < s->cap; i++)
        free(s->keys[i]);
    free(s->keys);
    free(s->lines);
    memset(s, 0, sizeof(*s));
}

/* ---- requests ------------------------------------------------------------ */

struct import {
    const struct config *cfg;
    const char *path;
    const char *user;
    const char *reason;
    struct buf rows;                     /* the chunk's rows, comma-joined */
    size_t lines[TS_IMPORT_ROWS_MAX];    /* the file line of each row */
    size_t count;                        /* rows in the chunk */
    size_t errors;                       /* errors found so far */
    size_t written;                      /* rows committed (pass 2) */
    size_t first_line_unwritten;
};

static void import_error(struct import *im, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void import_error(struct import *im, size_t line, const char *fmt, ...)
{
    im->errors++;
    if (im->errors > IMPORT_ERRORS_PRINTED_MAX)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "trialsync import: %s line %zu: ", im->path, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Prints the node's refusals of the chunk's rows, naming their lines. */
static void print_refusals(struct import *im, json_t *answer)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(answer, "errors"), i, e) {
        json_int_t row = json_integer_value(json_object_get(e, "row"));
        size_t line = row >= 0 && (size_t)row < im->count ? im->lines[row] : 0;
        const char *type = json_string_value(json_object_get(e, "type"));
        const char *id = json_string_value(json_object_get(e, "id"));
        const char *msg = json_string_value(json_object_get(e, "message"));
        const char *allowed = json_string_value(json_object_get(e, "allowed"));
        char what[TS_TYPE_BYTES_MAX + TS_ID_BYTES_MAX + 8] = "";
        if (type != NULL && id != NULL)
            snprintf(what, sizeof(what), "%s %s: ", type, id);
        if (allowed != NULL && msg != NULL && strstr(msg, allowed) == NULL)
            import_error(im, line, "%s%s (allowed: %s)", what, msg, allowed);
        else
            import_error(im, line, "%s%s", what, msg != NULL ? msg : "refused");
    }
}

/*
 * Sends the chunk (dry_run: checked only).  0 when the node took it; 1 when
 * it refused rows (printed); -1 when the import cannot go on (printed).
 */
static int chunk_send(struct import *im, bool dry_run)
{
    if (im->count == 0)
        return 0;
    json_t *user = json_string(im->user);
    json_t *reason = im->reason != NULL ? json_string(im->reason) : NULL;
    char *user_s = user != NULL ? json_dumps(user, JSON_ENCODE_ANY) : NULL;
    char *reason_s = reason != NULL ? json_dumps(reason, JSON_ENCODE_ANY) : NULL;
    json_decref(user);
    json_decref(reason);
    struct buf body = {0};
    int rc = -1;
    if (user_s == NULL || (im->reason != NULL && reason_s == NULL)) {
        cli_fail("--user and --reason must be valid UTF-8");
        goto out_free;
    }
    if (buf_put(&body, dry_run ? "{\"dry_run\":true,\"user\":" : "{\"dry_run\":false,\"user\":",
                dry_run ? 23 : 24) != 0 ||
        buf_put(&body, user_s, strlen(user_s)) != 0 ||
        (reason_s != NULL &&
         (buf_put(&body, ",\"reason\":", 10) != 0 || buf_put(&body, reason_s, strlen(reason_s)))) ||
        buf_put(&body, ",\"rows\":[", 9) != 0 || buf_put(&body, im->rows.p, im->rows.len) != 0 ||
        buf_put(&body, "]}", 2) != 0) {
        cli_fail("out of memory");
        goto out_free;
    }

    struct client_response res;
    struct ts_error err = {0};
    for (int attempt = 0;; attempt++) {
        if (client_request(im->cfg, "POST", "/v1/import", body.p, &res, &err) != 0) {
            cli_fail("%s", err.msg);
            goto out_free;
        }
        if (res.status != 503 || attempt == IMPORT_BUSY_RETRIES_MAX)
            break;
        client_response_release(&res);
        sleep(1);
    }
    json_error_t jerr;
    json_t *answer = json_loads(res.body, 0, &jerr);
    if (res.status == 200) {
        rc = 0;
    } else if (res.status == 400 && json_is_array(json_object_get(answer, "errors"))) {
        print_refusals(im, answer);
        rc = 1;
    } else {
        const char *msg = json_string_value(json_object_get(answer, "error"));
        cli_fail("lines %zu to %zu: the node answered HTTP %d: %s", im->lines[0],
                 im->lines[im->count - 1], res.status, msg != NULL ? msg : res.body);
    }
    json_decref(answer);
    client_response_release(&res);

out_free:
    buf_release(&body);
    free(user_s);
    free(reason_s);
    return rc;
}

/* Adds a row to the chunk, sending the chunk first when it is full. */
static int chunk_add(struct import *im, json_t *row, size_t line, bool dry_run)
{
    char *s = json_dumps(row, JSON_COMPACT);
    if (s == NULL) {
        import_error(im, line, "cannot encode the row");
        return 0;
    }
    size_t len = strlen(s);
    /* The request's own keys, user and reason take at most this much. */
    size_t overhead = 64 + 6 * (strlen(im->user) + (im->reason != NULL ? strlen(im->reason) : 0));
    if (len + overhead > TS_IMPORT_REQUEST_BYTES_MAX) {
        import_error(im, line, "the row is too large for one request (%zu bytes)", len);
        free(s);
        return 0;
    }
    int rc = 0;
    if (im->count == TS_IMPORT_ROWS_MAX ||
        im->rows.len + 1 + len + overhead > TS_IMPORT_REQUEST_BYTES_MAX) {
        rc = chunk_send(im, dry_run);
        if (rc != 0 && !dry_run) {
            free(s);
            return rc;  /* the chunk stays: its first line is the first unwritten */
        }
        if (rc == 0 && !dry_run)
            im->written += im->count;
        im->count = 0;
        im->rows.len = 0;
    }
    if (rc >= 0 && ((im->count > 0 && buf_put(&im->rows, ",", 1) != 0) ||
                    buf_put(&im->rows, s, len) != 0)) {
        cli_fail("out of memory");
        rc = -1;
    }
    if (rc >= 0)
        im->lines[im->count++] = line;
    free(s);
    return rc;
}

/*
 * One pass over the file.  Pass 1 (dry_run) checks every row and reports
 * every error; pass 2 writes.  0, 1 (rows refused) or -1 (cannot go on).
 */
static int import_pass(struct import *im, const char *path, enum import_format format,
                       bool dry_run, size_t *rows_out)
{
    struct reader r = {.path = path, .format = format};
    struct seen seen = {0};
    char why[768];
    int rc = 0;
    size_t rows = 0;

    r.f = fopen(path, "r");
    if (r.f == NULL) {
        cli_fail("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    im->count = 0;
    im->rows.len = 0;
    if (format == IMPORT_FORMAT_CSV && csv_header(&r, why, sizeof(why)) != 0) {
        import_error(im, r.line > 0 ? r.line : 1, "%s", why);
        rc = 1;
        goto out_release;
    }
    for (;;) {
        json_t *row = NULL;
        size_t line = 0;
        int got = reader_next(&r, &row, &line, why, sizeof(why));
        if (got == 0)
            break;
        if (got < 0) {
            import_error(im, line, "%s", why);
            if (!dry_run) {
                rc = 1;  /* the file changed since it was checked */
                goto out_release;
            }
            continue;
        }
        char key[TS_TYPE_BYTES_MAX + TS_ID_BYTES_MAX + 2];
        const char *type = json_string_value(json_object_get(row, "type"));
        const char *id = json_string_value(json_object_get(row, "id"));
        snprintf(key, sizeof(key), "%s/%s", type, id);
        long long earlier = seen_add(&seen, key, line);
        if (earlier < 0) {
            json_decref(row);
            cli_fail("out of memory");
            rc = -1;
            goto out_release;
        }
        if (earlier > 0) {
            import_error(im, line,
                         "%s %s is already in line %lld; an import writes each record once "
                         "(put all its fields in one row)", type, id, earlier);
            json_decref(row);
            if (!dry_run) {
                rc = 1;
                goto out_release;
            }
            continue;
        }
        rows++;
        int sent = chunk_add(im, row, line, dry_run);
        json_decref(row);
        if (sent < 0 || (sent > 0 && !dry_run)) {
            rc = sent < 0 ? -1 : 1;
            goto out_release;
        }
    }
    int sent = chunk_send(im, dry_run);
    if (sent == 0 && !dry_run)
        im->written += im->count;
    if (sent != 0)
        rc = sent;
    else if (im->errors > 0)
        rc = 1;
    *rows_out = rows;

out_release:
    if (rc != 0 && !dry_run)
        im->first_line_unwritten = im->count > 0 ? im->lines[0] : r.line;
    seen_release(&seen);
    reader_release(&r);
    return rc;
}

static enum import_format format_guess(const char *path)
{
    size_t len = strlen(path);
    if (len >= 4 && strcmp(path + len - 4, ".csv") == 0)
        return IMPORT_FORMAT_CSV;
    if ((len >= 7 && strcmp(path + len - 7, ".ndjson") == 0) ||
        (len >= 6 && strcmp(path + len - 6, ".jsonl") == 0))
        return IMPORT_FORMAT_NDJSON;
    FILE *f = fopen(path, "r");
    int c = EOF;
    if (f != NULL) {
        do
            c = fgetc(f);
        while (c == ' ' || c == '\t' || c == '\r' || c == '\n');
        fclose(f);
    }
    return c == '{' ? IMPORT_FORMAT_NDJSON : IMPORT_FORMAT_CSV;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int cmd_import(int argc, char **argv)
{
    static const struct option opts[] = {
        {"node", required_argument, NULL, 'n'},
        {"format", required_argument, NULL, 'f'},
        {"user", required_argument, NULL, 'u'},
        {"reason", required_argument, NULL, 'r'},
        {"dry-run", no_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *node_dir = NULL, *format_name = NULL, *user = NULL, *reason = NULL;
    bool dry_run = false;
    int c;

    optind = 1;
    while ((c = cli_getopt(argc, argv, opts, "import")) != -1) {
        switch (c) {
        case 'n': node_dir = optarg; break;
        case 'f': format_name = optarg; break;
        case 'u': user = optarg; break;
        case 'r': reason = optarg; break;
        case 'd': dry_run = true; break;
        case 'h': import_usage(stdout); return 0;
        default: import_usage(stderr); return 2;
        }
    }
    if (node_dir == NULL)
        return cli_usage_error("import", import_usage, "--node NODEDIR is required");
    if (optind == argc)
        return cli_usage_error("import", import_usage, "FILE is required");
    if (optind + 1 != argc)
        return cli_usage_error("import", import_usage, "one FILE only: unexpected argument "
                               "'%s'", argv[optind + 1]);
    const char *path = argv[optind];
    enum import_format format;
    if (format_name == NULL)
        format = format_guess(path);
    else if (strcmp(format_name, "csv") == 0)
        format = IMPORT_FORMAT_CSV;
    else if (strcmp(format_name, "ndjson") == 0)
        format = IMPORT_FORMAT_NDJSON;
    else
        return cli_fail("--format is csv or ndjson, not '%s'", format_name);
    if (reason != NULL && strlen(reason) > TS_REASON_BYTES_MAX)
        return cli_fail("--reason is longer than %d bytes", TS_REASON_BYTES_MAX);

    char user_buf[TS_USER_BYTES_MAX + 1];
    if (user == NULL) {
        struct passwd *pw = getpwuid(geteuid());
        snprintf(user_buf, sizeof(user_buf), "%s", pw != NULL ? pw->pw_name : "unknown");
        user = user_buf;
    }
    if (strlen(user) > TS_USER_BYTES_MAX)
        return cli_fail("--user is longer than %d bytes", TS_USER_BYTES_MAX);

    static struct config cfg;
    struct ts_error err = {0};
    if (config_load_dir(node_dir, &cfg, &err) != 0)
        return cli_fail("%s", err.msg);

    struct import *im = calloc(1, sizeof(*im));
    if (im == NULL)
        return cli_fail("out of memory");
    im->cfg = &cfg;
    im->path = path;
    im->user = user;
    im->reason = reason;

    int status = 1;
    size_t rows = 0;
    double t0 = now_s();
    int rc = import_pass(im, path, format, true, &rows);
    if (rc != 0) {
        if (im->errors > IMPORT_ERRORS_PRINTED_MAX)
            fprintf(stderr, "trialsync import: ... and %zu more errors\n",
                    im->errors - IMPORT_ERRORS_PRINTED_MAX);
        if (rc > 0)
            cli_fail("%zu error%s in %s; nothing written", im->errors,
                     im->errors == 1 ? "" : "s", path);
        else
            cli_fail("nothing written");
        goto out_free;
    }
    if (rows == 0) {
        cli_fail("%s holds no rows; nothing written", path);
        goto out_free;
    }
    if (dry_run) {
        printf("checked %zu rows of %s: all valid; nothing written (--dry-run)\n", rows, path);
        status = 0;
        goto out_free;
    }
    rc = import_pass(im, path, format, false, &rows);
    if (rc != 0) {
        if (im->written == 0)
            cli_fail("nothing written");
        else
            cli_fail("%zu rows up to line %zu were written (they were valid when checked); "
                     "nothing from line %zu on: fix those rows and import the rest",
                     im->written, im->first_line_unwritten - 1, im->first_line_unwritten);
        goto out_free;
    }
    double secs = now_s() - t0;
    printf("imported %zu rows from %s in %.2f s (%.0f rows/s)\n", im->written, path, secs,
           secs > 0 ? (double)im->written / secs : 0.0);
    status = 0;

out_free:
    buf_release(&im->rows);
    free(im);
    return status;
}
