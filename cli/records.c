/*
 * records.c: the verbs that talk to a running node's API: put, get, history,
 * records, conflicts, status, digest.
 */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../node/config.h"
#include "../node/schema.h"
#include "cli.h"
#include "client.h"
#include "pages.h"

static void record_usage(const char *verb, FILE *out)
{
    if (strcmp(verb, "put") == 0)
        fprintf(out,
                "usage: trialsync put --node NODEDIR TYPE ID field=value... [--reason TEXT] "
                "[--user NAME]\n"
                "       trialsync put --node NODEDIR TYPE ID --fields-file PATH|- [field=value...]"
                "\n\n"
                "Writes fields of one record through the node's API; prints the entry made\n"
                "(JSON).  A change to a field that has a value needs --reason.\n"
                "  TYPE      subject, visit, ae or query\n"
                "  ID        the record's key, e.g. 101-0003, 101-0003/V1, 101-0003-AE-001\n"
                "  --fields-file PATH  the fields as a JSON object {\"field\": \"value\", ...}\n"
                "            read from PATH, or from standard input with '-', so patient\n"
                "            values do not appear in the process's arguments (ps)\n"
                "  --user    whom the node's integration credential acts for (default: the\n"
                "            login name); with TRIALSYNC_TOKEN_FILE set, the signed-in person\n"
                "            writes, and --user may only name them\n");
    else if (strcmp(verb, "status") == 0)
        fprintf(out,
                "usage: trialsync status --node NODEDIR [--json]\n"
                "       trialsync status --node NODEDIR --check [--offline-max-s N] "
                "[--late-saes]\n\n"
                "Prints the node's state and one row per peer: connected, last seen,\n"
                "entries behind per lane, SAEs in flight.  --json prints the API's object.\n"
                "--check   one line for a monitor (Nagios-style): \"OK: ...\" and exit 0, or\n"
                "          \"WARNING: ...\" and exit 1 when a peer (not revoked) has been\n"
                "          offline longer than --offline-max-s N seconds (default 3600; a\n"
                "          peer never seen since the node started counts) or an SAE is late\n"
                "--late-saes  check only for late SAEs, not connections\n");
    else if (strcmp(verb, "records") == 0)
        fprintf(out, "usage: trialsync records --node NODEDIR [TYPE]\n\n"
                     "Lists the records the node holds (JSON).\n");
    else if (strcmp(verb, "saes") == 0)
        fprintf(out, "usage: trialsync saes --node NODEDIR\n\n"
                     "Lists the serious adverse events the node tracks with their 24-hour clock:\n"
                     "awareness, received (hub) or written (site) time, deadline, late, at\n"
                     "risk, acknowledged, alarms raised (JSON).\n");
    else if (strcmp(verb, "digest") == 0)
        fprintf(out, "usage: trialsync digest --node NODEDIR [--site SITE] [--json]\n\n"
                     "Prints the node's state digest: equal entries give equal digests.\n"
                     "--site SITE  the digest of that site's share of the trial only (its\n"
                     "             subjects, visits, AEs and the queries about them): the\n"
                     "             site's node and every hub print the same once they agree.\n");
    else if (strcmp(verb, "conflicts") == 0)
        fprintf(out, "usage: trialsync conflicts --node NODEDIR\n\n"
                     "Lists every field with more than one concurrent value (JSON).\n");
    else
        fprintf(out, "usage: trialsync %s --node NODEDIR TYPE ID [--json]\n\n%s\n"
                     "A table on a terminal; JSON (the API's answer) in a pipe or with --json.\n",
                verb,
                strcmp(verb, "get") == 0
                    ? "Prints the record's displayed values, and every value of a field in "
                      "conflict."
                    : "Prints every version of every field: who, when, old and new value, "
                      "why.");
}

static void default_user(char *out, size_t cap)
{
    struct passwd *pw = getpwuid(geteuid());
    snprintf(out, cap, "%s", pw != NULL ? pw->pw_name : "unknown");
}

/* Prints an error answer of the API: its message and the field details. */
static int print_api_error(const struct client_response *res)
{
    json_error_t jerr;
    json_t *j = json_loads(res->body, 0, &jerr);
    const char *msg = j != NULL ? json_string_value(json_object_get(j, "error")) : NULL;
    if (msg == NULL) {
        cli_fail("the node answered HTTP %d: %s", res->status, res->body);
    } else {
        cli_fail("%s", msg);
        const char *allowed = json_string_value(json_object_get(j, "allowed"));
        if (allowed != NULL && strstr(msg, allowed) == NULL)
            fprintf(stderr, "allowed: %s\n", allowed);
    }
    json_decref(j);
    return 1;
}

static void print_status_table(json_t *s)
{
    const char *revoked = json_string_value(json_object_get(s, "revoked"));
    if (revoked != NULL)
        printf("REVOKED: %s; this node accepts no writes and no longer connects to its hubs\n",
               revoked);
    json_t *storage = json_object_get(s, "storage");
    const char *state = json_string_value(json_object_get(storage, "state"));
    printf("node %s (%s) of trial %s: %lld entries, %lld records, %lld conflicts, %s%s\n",
           json_string_value(json_object_get(s, "node")),
           json_string_value(json_object_get(s, "role")),
           json_string_value(json_object_get(s, "trial")),
           (long long)json_integer_value(json_object_get(s, "entries")),
           (long long)json_integer_value(json_object_get(s, "records")),
           (long long)json_integer_value(json_object_get(s, "conflicts")),
           json_is_true(json_object_get(s, "accepting_writes")) ? "accepting writes"
                                                                 : "REFUSING WRITES: ",
           json_is_true(json_object_get(s, "accepting_writes"))
               ? ""
               : (revoked != NULL ? "revoked" : (state != NULL ? state : "disk low")));
    const char *why = json_string_value(json_object_get(storage, "why"));
    if (why != NULL && why[0] != '\0')
        printf("storage %s: %s\n", state != NULL ? state : "?", why);
    json_t *dups = json_object_get(s, "duplicate_identity");
    size_t di;
    json_t *d;
    json_array_foreach(dups, di, d) {
        if (!json_is_true(json_object_get(d, "alarm")))
            continue;
        printf("ALARM: two nodes run site %s's bundle: %lld connections from %s refused (last "
               "%s), the link from %s kept\n",
               json_string_value(json_object_get(d, "site")),
               (long long)json_integer_value(json_object_get(d, "refused")),
               json_string_value(json_object_get(d, "refused_addr")),
               json_string_value(json_object_get(d, "last")),
               json_string_value(json_object_get(d, "kept_addr")));
    }
    json_t *sae = json_object_get(s, "sae");
    const char *role = json_string_value(json_object_get(s, "role"));
    if (json_is_object(sae) && role != NULL && strcmp(role, "hub") == 0)
        printf("SAEs: %lld received, %lld late\n",
               (long long)json_integer_value(json_object_get(sae, "tracked")),
               (long long)json_integer_value(json_object_get(sae, "late")));
    else if (json_is_object(sae))
        printf("SAEs: %lld in flight (not yet acknowledged by a hub), %lld at risk, %lld late, "
               "%lld alarms\n",
               (long long)json_integer_value(json_object_get(sae, "in_flight")),
               (long long)json_integer_value(json_object_get(sae, "at_risk")),
               (long long)json_integer_value(json_object_get(sae, "late")),
               (long long)json_integer_value(json_object_get(sae, "alarms")));
    cli_enrollment_print(json_object_get(s, "enrollment"));
    json_t *peers = json_object_get(s, "peers");
    printf("\n%-12s %-6s %-10s %-22s %12s %12s %12s %12s %6s %9s\n", "PEER", "ROLE", "STATE",
           "LAST SEEN", "SEND SAFETY", "SEND BULK", "RECV SAFETY", "RECV BULK", "SAES",
           "CONFLICTS");
    size_t i;
    json_t *p;
    json_array_foreach(peers, i, p) {
        printf("%-12s %-6s %-10s %-22s %12lld %12lld %12lld %12lld %6lld %9lld\n",
               json_string_value(json_object_get(p, "id")),
               json_string_value(json_object_get(p, "role")),
               json_is_true(json_object_get(p, "connected")) ? "connected" : "offline",
               json_is_string(json_object_get(p, "last_seen"))
                   ? json_string_value(json_object_get(p, "last_seen"))
                   : "never",
               (long long)json_integer_value(json_object_get(p, "behind_send_safety")),
               (long long)json_integer_value(json_object_get(p, "behind_send_bulk")),
               (long long)json_integer_value(json_object_get(p, "behind_recv_safety")),
               (long long)json_integer_value(json_object_get(p, "behind_recv_bulk")),
               (long long)json_integer_value(json_object_get(p, "saes_in_flight")),
               (long long)json_integer_value(json_object_get(p, "conflicts")));
    }
    if (json_array_size(peers) == 0)
        printf("(no peers)\n");
    json_t *vv = json_object_get(s, "version_vector");
    printf("\n%-16s %-7s %10s\n", "ORIGIN", "LANE", "HELD");
    json_array_foreach(vv, i, p) {
        printf("%-16s %-7s %10lld\n", json_string_value(json_object_get(p, "origin")),
               json_string_value(json_object_get(p, "lane")),
               (long long)json_integer_value(json_object_get(p, "seq")));
    }
}

/* Record types `records TYPE` lists: those whose records belong to a site. */
static bool listable_type(const char *name)
{
    const struct schema_type *t = schema_type_find(name);
    return t != NULL && t->site_scoped;
}

/* "subject, visit, ae, query": the listable types, from the schema table. */
static void listable_types(char *out, size_t cap)
{
    size_t count, len = 0;
    const struct schema_type *types = schema_types(&count);
    out[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        if (!types[i].site_scoped)
            continue;
        int n = snprintf(out + len, cap - len, "%s%s", len > 0 ? ", " : "", types[i].name);
        if (n < 0 || (size_t)n >= cap - len)
            break;
        len += (size_t)n;
    }
}

static const char *usage_verb;

static void usage_of_verb(FILE *out)
{
    record_usage(usage_verb, out);
}

/* A usage error of verb: the message, then the verb's usage; returns 2. */
static int usage_error(const char *verb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const char *verb, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    usage_verb = verb;
    return cli_usage_error(verb, usage_of_verb, "%s", msg);
}

/* ---- status --check -------------------------------------------------------- */

/* An hour offline is worth a look; a monitor that wants less passes --offline-max-s. */
#define STATUS_OFFLINE_MAX_S_DEFAULT 3600
/* The one-line summary names at most this many problems, then "and N more". */
#define STATUS_CHECK_NAMED_MAX 5

/* Adds one problem to the summary line (the first few by name). */
static void check_note(char *line, size_t cap, size_t *problems, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void check_note(char *line, size_t cap, size_t *problems, const char *fmt, ...)
{
    (*problems)++;
    if (*problems > STATUS_CHECK_NAMED_MAX)
        return;
    size_t len = strlen(line);
    if (len > 0 && len + 2 < cap) {
        memcpy(line + len, "; ", 3);
        len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + len, cap - len, fmt, ap);
    va_end(ap);
}

/*
 * `status --check`: one line and an exit status for a monitor.  A peer that is
 * not revoked and has been offline longer than offline_max_s (or never seen
 * since the node started) is a problem, unless late_saes_only; so are a late
 * SAE, this site's revocation and a site identity two nodes use at once.
 * Returns 0 ("OK: ...") or 1 ("WARNING: ...").
 */
static int status_check(json_t *s, long long offline_max_s, bool late_saes_only)
{
    char line[1024] = "";
    size_t problems = 0, peers_total = 0, connected = 0, i;
    json_t *p;
    json_array_foreach(json_object_get(s, "peers"), i, p) {
        if (json_is_true(json_object_get(p, "revoked")))
            continue;
        peers_total++;
        if (json_is_true(json_object_get(p, "connected"))) {
            connected++;
            continue;
        }
        if (late_saes_only)
            continue;
        const char *id = json_string_value(json_object_get(p, "id"));
        const char *role = json_string_value(json_object_get(p, "role"));
        json_t *age = json_object_get(p, "last_seen_age_s");
        if (!json_is_integer(age))
            check_note(line, sizeof(line), &problems, "%s %s never connected",
                       role != NULL ? role : "peer", id != NULL ? id : "?");
        else if (json_integer_value(age) > offline_max_s)
            check_note(line, sizeof(line), &problems, "%s %s offline for %lld s (max %lld)",
                       role != NULL ? role : "peer", id != NULL ? id : "?",
                       (long long)json_integer_value(age), offline_max_s);
    }
    long long late = json_integer_value(json_object_get(json_object_get(s, "sae"), "late"));
    if (late > 0)
        check_note(line, sizeof(line), &problems, "%lld SAE%s late (past 24 h)", late,
                   late == 1 ? "" : "s");
    /* What a person must act on whatever the monitor watches for. */
    const char *revoked = json_string_value(json_object_get(s, "revoked"));
    if (revoked != NULL)
        check_note(line, sizeof(line), &problems, "REVOKED: %s", revoked);
    json_array_foreach(json_object_get(s, "duplicate_identity"), i, p) {
        if (json_is_true(json_object_get(p, "alarm")))
            check_note(line, sizeof(line), &problems, "two nodes run site %s's bundle",
                       json_string_value(json_object_get(p, "site")));
    }
    const char *node = json_string_value(json_object_get(s, "node"));
    if (problems == 0) {
        printf("OK: node %s: %zu/%zu peers connected, no SAE late\n", node != NULL ? node : "?",
               connected, peers_total);
        return 0;
    }
    printf("WARNING: node %s: %s", node != NULL ? node : "?", line);
    if (problems > STATUS_CHECK_NAMED_MAX)
        printf("; and %zu more", problems - STATUS_CHECK_NAMED_MAX);
    printf("\n");
    return 1;
}

/* ---- tables ------------------------------------------------------------ */

/* A column is at most this many characters wide; longer text is cut with "~". */
#define TABLE_CELL_CHARS_MAX 40

/*
 * The display width of UTF-8 text: its code points (continuation bytes do not
 * count), so "Charité" is 7 wide, not 8 bytes.  East Asian wide characters are
 * counted as one; clinical data in this trial is Latin script.
 */
size_t cli_display_width(const char *s)
{
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if ((*p & 0xC0) != 0x80)
            w++;
    }
    return w;
}

/* The bytes of s's first chars code points. */
size_t cli_prefix_bytes(const char *s, size_t chars)
{
    size_t i = 0, seen = 0;
    while (s[i] != '\0') {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (seen == chars)
                break;
            seen++;
        }
        i++;
    }
    return i;
}

/* Prints s in a column width wide (padded with spaces, cut when longer). */
static void print_cell(const char *s, size_t width, bool last)
{
    if (s == NULL)
        s = "";
    size_t w = cli_display_width(s);
    if (w > width) {
        fwrite(s, 1, cli_prefix_bytes(s, width - 1), stdout);
        fputc('~', stdout);
        w = width;
    } else {
        fputs(s, stdout);
    }
    if (last)
        return;
    for (; w < width + 2; w++)
        fputc(' ', stdout);
}

/* A table of rows x cols cells (NULL is empty), columns sized to their text. */
static void print_table(const char *const *head, const char **cells, size_t rows, size_t cols)
{
    size_t width[8] = {0};
    assert(cols <= sizeof(width) / sizeof(width[0]));
    for (size_t c = 0; c < cols; c++) {
        width[c] = cli_display_width(head[c]);
        for (size_t r = 0; r < rows; r++) {
            const char *v = cells[r * cols + c];
            size_t w = v != NULL ? cli_display_width(v) : 0;
            if (w > width[c])
                width[c] = w;
        }
        if (width[c] > TABLE_CELL_CHARS_MAX)
            width[c] = TABLE_CELL_CHARS_MAX;
    }
    for (size_t c = 0; c < cols; c++)
        print_cell(head[c], width[c], c + 1 == cols);
    fputc('\n', stdout);
    for (size_t r = 0; r < rows; r++) {
        for (size_t c = 0; c < cols; c++)
            print_cell(cells[r * cols + c], width[c], c + 1 == cols);
        fputc('\n', stdout);
    }
}

/* A field's value as text: a string, or an append-only list joined with " | ". */
static char *value_text(json_t *v)
{
    if (json_is_string(v))
        return strdup(json_string_value(v));
    if (!json_is_array(v))
        return strdup(json_is_null(v) ? "" : "?");
    size_t cap = 1, i;
    json_t *e;
    json_array_foreach(v, i, e) cap += strlen(json_string_value(e) ? json_string_value(e) : "") + 3;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    size_t len = 0;
    json_array_foreach(v, i, e) {
        const char *t = json_string_value(e) != NULL ? json_string_value(e) : "";
        int n = snprintf(out + len, cap - len, "%s%s", i > 0 ? " | " : "", t);
        assert(n >= 0 && (size_t)n < cap - len);
        len += (size_t)n;
    }
    out[len] = '\0';
    return out;
}

/* `get` on a terminal: one row per field; a conflict lists every value. */
static int print_record_table(json_t *r)
{
    static const char *const head[] = {"FIELD", "VALUE", "CONFLICT"};
    json_t *fields = json_object_get(r, "fields");
    size_t rows = 0, cap = json_object_size(fields) + 1;
    const char *key;
    json_t *f;
    json_object_foreach(fields, key, f) cap += json_array_size(json_object_get(f, "values"));
    const char **cells = calloc(cap * 3, sizeof(*cells));
    char **owned = calloc(cap, sizeof(*owned));
    if (cells == NULL || owned == NULL) {
        free(cells);
        free(owned);
        return cli_fail("out of memory");
    }
    printf("%s %s\n\n", json_string_value(json_object_get(r, "type")),
           json_string_value(json_object_get(r, "id")));
    json_object_foreach(fields, key, f) {
        bool conflict = json_is_true(json_object_get(f, "conflict"));
        owned[rows] = value_text(json_object_get(f, "value"));
        cells[rows * 3] = key;
        cells[rows * 3 + 1] = owned[rows];
        cells[rows * 3 + 2] = conflict ? "CONFLICT" : NULL;
        rows++;
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(f, "values"), i, v) {
            char line[512];
            snprintf(line, sizeof(line), "  %s (%s, %s)",
                     json_string_value(json_object_get(v, "value")),
                     json_string_value(json_object_get(v, "origin")),
                     json_string_value(json_object_get(v, "time")));
            owned[rows] = strdup(line);
            cells[rows * 3 + 1] = owned[rows];
            rows++;
        }
    }
    print_table(head, cells, rows, 3);
    cli_print_lock_lines(r);
    for (size_t i = 0; i < rows; i++)
        free(owned[i]);
    free(owned);
    free(cells);
    return 0;
}

/* The list a verb's answer pages (node/api.h), or NULL when it is not paged. */
static const char *paged_list_of(const char *verb)
{
    if (strcmp(verb, "records") == 0)
        return "records";
    if (strcmp(verb, "conflicts") == 0)
        return "conflicts";
    if (strcmp(verb, "history") == 0)
        return "versions";
    if (strcmp(verb, "saes") == 0)
        return "saes";
    return NULL;
}

/* pages_get_fn over the node's API; ctx is the node's config. */
static int get_page(void *ctx, const char *path, struct client_response *res,
                    struct ts_error *err)
{
    return client_request(ctx, "GET", path, NULL, res, err);
}

/* `history` on a terminal: one row per version, oldest first. */
static int print_history_table(json_t *h)
{
    static const char *const head[] = {"TIME", "NODE", "USER", "FIELD", "OLD", "NEW", "REASON"};
    static const char *const keys[] = {"entry_time", "node", "user", "field",
                                       "old_value", "new_value", "reason"};
    json_t *versions = json_object_get(h, "versions");
    size_t rows = json_array_size(versions);
    const char **cells = calloc(rows * 7 + 1, sizeof(*cells));
    if (cells == NULL)
        return cli_fail("out of memory");
    size_t i;
    json_t *v;
    json_array_foreach(versions, i, v) {
        for (size_t c = 0; c < 7; c++)
            cells[i * 7 + c] = json_string_value(json_object_get(v, keys[c]));
    }
    printf("%s %s: %zu versions\n\n", json_string_value(json_object_get(h, "type")),
           json_string_value(json_object_get(h, "id")), rows);
    print_table(head, cells, rows, 7);
    free(cells);
    return 0;
}

/* The largest --fields-file: every field at its largest value fits, quoted
 * and escaped, and the request stays under the API's bound. */
#define FIELDS_FILE_BYTES_MAX (TS_HTTP_REQUEST_BYTES_MAX - 16 * 1024)

/*
 * Reads put's fields from path ("-": standard input): one JSON object of
 * field name -> string value, added to fields.  Prints what is wrong and
 * returns non-zero on an unreadable, oversized or malformed file.
 */
static int read_fields_file(const char *path, json_t *fields)
{
    bool is_stdin = strcmp(path, "-") == 0;
    FILE *f = is_stdin ? stdin : fopen(path, "r");
    if (f == NULL)
        return cli_fail("--fields-file %s: %s", path, strerror(errno));
    char *buf = malloc(FIELDS_FILE_BYTES_MAX + 1);
    if (buf == NULL) {
        if (!is_stdin)
            fclose(f);
        return cli_fail("out of memory");
    }
    size_t len = fread(buf, 1, FIELDS_FILE_BYTES_MAX + 1, f);
    bool failed = ferror(f) != 0;
    if (!is_stdin)
        fclose(f);
    const char *name = is_stdin ? "standard input" : path;
    int rc = 0;
    if (failed) {
        rc = cli_fail("--fields-file: cannot read %s", name);
        goto out_free_buf;
    }
    if (len > FIELDS_FILE_BYTES_MAX) {
        rc = cli_fail("--fields-file: %s is larger than %d bytes", name, FIELDS_FILE_BYTES_MAX);
        goto out_free_buf;
    }
    json_error_t jerr;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        rc = cli_fail("--fields-file: %s is not JSON: %s (line %d)", name, jerr.text, jerr.line);
        goto out_free_buf;
    }
    if (!json_is_object(root)) {
        rc = cli_fail("--fields-file: %s must hold one JSON object {\"field\": \"value\", ...}",
                      name);
        goto out_free_root;
    }
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value) {
        if (!json_is_string(value)) {
            rc = cli_fail("--fields-file: field '%.40s': the value must be a JSON string", key);
            goto out_free_root;
        }
        if (key[0] == '\0' || strlen(key) > TS_FIELD_BYTES_MAX) {
            rc = cli_fail("--fields-file: field name '%.40s' must be 1 to %d bytes", key,
                          TS_FIELD_BYTES_MAX);
            goto out_free_root;
        }
        json_object_set(fields, key, value);
    }
out_free_root:
    json_decref(root);
out_free_buf:
    free(buf);
    return rc;
}

int cmd_record(const char *verb, int argc, char **argv)
{
    static const struct option opts[] = {
        {"node", required_argument, NULL, 'n'},
        {"reason", required_argument, NULL, 'r'},
        {"user", required_argument, NULL, 'u'},
        {"fields-file", required_argument, NULL, 'f'},
        {"json", no_argument, NULL, 'j'},
        {"check", no_argument, NULL, 'c'},
        {"offline-max-s", required_argument, NULL, 'o'},
        {"late-saes", no_argument, NULL, 'l'},
        {"site", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *node_dir = NULL, *reason = NULL, *user = NULL, *fields_file = NULL;
    bool as_json = false, check = false, late_saes_only = false;
    long long offline_max_s = STATUS_OFFLINE_MAX_S_DEFAULT;
    const char *offline_arg = NULL, *site = NULL;
    bool is_put = strcmp(verb, "put") == 0;
    int c;

    optind = 1;
    /* Options and operands in any order: put --node N subject 101-0001 x=1 --reason R. */
    while ((c = cli_getopt(argc, argv, opts, verb)) != -1) {
        switch (c) {
        case 'n': node_dir = optarg; break;
        case 'r': reason = optarg; break;
        case 'u': user = optarg; break;
        case 'f': fields_file = optarg; break;
        case 'j': as_json = true; break;
        case 'c': check = true; break;
        case 'o': offline_arg = optarg; break;
        case 'l': late_saes_only = true; break;
        case 's': site = optarg; break;
        case 'h': record_usage(verb, stdout); return 0;
        default: record_usage(verb, stderr); return 2;
        }
    }
    const char *const *pos = (const char *const *)argv + optind;
    size_t npos = (size_t)(argc - optind);
    if (npos > TS_WRITES_PER_ENTRY_MAX + 2)
        return cli_fail("too many arguments (at most %d fields in one write)",
                        TS_WRITES_PER_ENTRY_MAX);
    if (node_dir == NULL)
        return usage_error(verb, "--node NODEDIR is required");
    if ((check || offline_arg != NULL || late_saes_only) && strcmp(verb, "status") != 0)
        return usage_error(verb, "--check, --offline-max-s and --late-saes go with status");
    if (site != NULL && strcmp(verb, "digest") != 0)
        return usage_error(verb, "--site goes with digest");
    if (site != NULL && !schema_id_ok(site))
        return usage_error(verb, "--site: '%s' is not a site id", site);
    if ((offline_arg != NULL || late_saes_only) && !check)
        return usage_error(verb, "--offline-max-s and --late-saes go with --check");
    if (offline_arg != NULL) {
        char *end;
        errno = 0;
        offline_max_s = strtoll(offline_arg, &end, 10);
        if (errno != 0 || end == offline_arg || *end != '\0' || offline_max_s < 0)
            return usage_error(verb, "--offline-max-s: '%s' is not a number of seconds (0 or "
                               "more)", offline_arg);
    }
    bool needs_record = is_put || strcmp(verb, "get") == 0 || strcmp(verb, "history") == 0;
    bool is_records = strcmp(verb, "records") == 0;
    if (needs_record && npos == 0)
        return usage_error(verb, "TYPE and ID are required");
    if (needs_record && npos == 1)
        return usage_error(verb, "ID is required after TYPE '%s'", pos[0]);
    if (fields_file != NULL && !is_put)
        return usage_error(verb, "--fields-file goes with put");
    if (is_put && npos == 2 && fields_file == NULL)
        return usage_error(verb, "no fields given: write at least one field=value, or give "
                           "--fields-file PATH");
    if (!is_put && needs_record && npos > 2)
        return usage_error(verb, "unexpected argument '%s'", pos[2]);
    if (is_records && npos > 1)
        return usage_error(verb, "unexpected argument '%s'", pos[1]);
    if (!needs_record && !is_records && npos > 0)
        return usage_error(verb, "unexpected argument '%s'", pos[0]);
    if (is_records && npos == 1 && !listable_type(pos[0])) {
        char allowed[256];
        listable_types(allowed, sizeof(allowed));
        return cli_fail("unknown type '%s'; allowed: %s", pos[0], allowed);
    }

    static struct config cfg;
    struct ts_error err = {0};
    if (config_load_dir(node_dir, &cfg, &err) != 0)
        return cli_fail("%s", err.msg);

    char path[1024], type_esc[128], id_esc[256];
    const char *method = "GET";
    char *body = NULL;
    if (needs_record) {
        if (client_escape(pos[0], type_esc, sizeof(type_esc)) != 0 ||
            client_escape(pos[1], id_esc, sizeof(id_esc)) != 0)
            return cli_fail("record type or id too long");
        snprintf(path, sizeof(path), "/v1/records/%s/%s%s", type_esc, id_esc,
                 strcmp(verb, "history") == 0 ? "/history" : "");
    } else if (strcmp(verb, "records") == 0) {
        if (npos == 1 && client_escape(pos[0], type_esc, sizeof(type_esc)) != 0)
            return cli_fail("record type too long");
        snprintf(path, sizeof(path), "/v1/records%s%s", npos == 1 ? "?type=" : "",
                 npos == 1 ? type_esc : "");
    } else if (site != NULL) {
        snprintf(path, sizeof(path), "/v1/digest?site=%s", site);
    } else {
        snprintf(path, sizeof(path), "/v1/%s", verb);
    }

    if (is_put) {
        char user_buf[128];
        json_t *fields = json_object();
        if (fields_file != NULL && read_fields_file(fields_file, fields) != 0) {
            json_decref(fields);
            return 1;
        }
        for (size_t i = 2; i < npos; i++) {
            const char *eq = strchr(pos[i], '=');
            if (eq == NULL || eq == pos[i]) {
                json_decref(fields);
                return cli_fail("'%s' is not field=value", pos[i]);
            }
            char name[TS_FIELD_BYTES_MAX + 2];
            size_t nl = (size_t)(eq - pos[i]);
            if (nl > TS_FIELD_BYTES_MAX) {
                json_decref(fields);
                return cli_fail("field name '%.*s' is too long (at most %d)", (int)nl, pos[i],
                                TS_FIELD_BYTES_MAX);
            }
            memcpy(name, pos[i], nl);
            name[nl] = '\0';
            if (json_object_get(fields, name) != NULL) {
                json_decref(fields);
                return cli_fail("field '%s' is given twice", name);
            }
            json_object_set_new(fields, name, json_string(eq + 1));
        }
        if (user == NULL && !client_signed_in()) {
            default_user(user_buf, sizeof(user_buf));
            user = user_buf;
        }
        if (json_object_size(fields) == 0) {
            json_decref(fields);
            return cli_fail("no fields given: %s holds an empty object", fields_file);
        }
        if (json_object_size(fields) > TS_WRITES_PER_ENTRY_MAX) {
            json_decref(fields);
            return cli_fail("too many fields (at most %d in one write)", TS_WRITES_PER_ENTRY_MAX);
        }
        json_t *req = json_pack("{s:o}", "fields", fields);
        if (user != NULL)
            json_object_set_new(req, "user", json_string(user));
        if (reason != NULL)
            json_object_set_new(req, "reason", json_string(reason));
        body = json_dumps(req, JSON_COMPACT);
        json_decref(req);
        if (body == NULL)
            return cli_fail("a value is not valid UTF-8");
        method = "POST";
    }

    struct client_response res;
    int rc;
    const char *list_key = paged_list_of(verb);
    if (list_key != NULL) {
        /* Lists come in pages (node/api.h): every page is read and joined,
         * so the verb prints the whole list as before. */
        json_t *all = NULL;
        rc = pages_get_all(get_page, &cfg, path, list_key, &all, &res, &err);
        if (rc < 0)
            return cli_fail("%s", err.msg);
        if (rc == 0) {
            res.status = 200;
            res.body = json_dumps(all, JSON_COMPACT | JSON_SORT_KEYS);
            json_decref(all);
            if (res.body == NULL)
                return cli_fail("out of memory");
            res.len = strlen(res.body);
            char *withnl = realloc(res.body, res.len + 2);
            if (withnl == NULL) {
                client_response_release(&res);
                return cli_fail("out of memory");
            }
            res.body = withnl;
            res.body[res.len++] = '\n';
            res.body[res.len] = '\0';
        }
    } else {
        rc = client_request(&cfg, method, path, body, &res, &err);
    }
    free(body);
    if (rc < 0)
        return cli_fail("%s", err.msg);
    if (res.status != 200) {
        print_api_error(&res);
        client_response_release(&res);
        return 1;
    }
    if (check) {
        json_error_t jerr;
        json_t *s = json_loads(res.body, 0, &jerr);
        client_response_release(&res);
        if (s == NULL)
            return cli_fail("the node's status is not JSON: %s", jerr.text);
        int crc = status_check(s, offline_max_s, late_saes_only);
        json_decref(s);
        return crc;
    }
    if (strcmp(verb, "status") == 0 && !as_json) {
        json_error_t jerr;
        json_t *s = json_loads(res.body, 0, &jerr);
        if (s == NULL) {
            client_response_release(&res);
            return cli_fail("the node's status is not JSON: %s", jerr.text);
        }
        print_status_table(s);
        json_decref(s);
    } else if (strcmp(verb, "digest") == 0 && !as_json) {
        json_error_t jerr;
        json_t *s = json_loads(res.body, 0, &jerr);
        const char *d = s != NULL ? json_string_value(json_object_get(s, "digest")) : NULL;
        if (d == NULL) {
            json_decref(s);
            client_response_release(&res);
            return cli_fail("the node's digest answer is malformed");
        }
        printf("%s\n", d);
        json_decref(s);
    } else if ((strcmp(verb, "get") == 0 || strcmp(verb, "history") == 0) && !as_json &&
               isatty(STDOUT_FILENO)) {
        /* A person at a terminal reads a table; a pipe or --json gets the API's
         * JSON unchanged, which scripts parse. */
        json_error_t jerr;
        json_t *s = json_loads(res.body, 0, &jerr);
        if (s == NULL) {
            client_response_release(&res);
            return cli_fail("the node's answer is not JSON: %s", jerr.text);
        }
        int prc = strcmp(verb, "get") == 0 ? print_record_table(s) : print_history_table(s);
        json_decref(s);
        client_response_release(&res);
        return prc;
    } else {
        fwrite(res.body, 1, res.len, stdout);
    }
    client_response_release(&res);
    return 0;
}
