/*
 * metrics.c: Prometheus text exposition of a node's status (see metrics.h).
 *
 * The output is built in one growing buffer whose first failure (out of
 * memory, past METRICS_BYTES_MAX) is sticky: later appends do nothing and
 * metrics_render returns that error, so the writers below need no error
 * checks of their own.  Families are written in a fixed order, peers in the
 * order the status lists them, handshake failure reasons sorted by name, so
 * equal input gives byte-equal output.
 */
#include "metrics.h"

#include <assert.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../proto/errors.h"
#include "util.h"

struct mbuf {
    char *data;
    size_t len;
    size_t cap;
    int err;   /* first failure; sticky */
};

struct label {
    const char *name;
    const char *value;
};

/* A metric family: its # HELP / # TYPE lines go out before its first sample. */
struct family {
    const char *name;
    const char *type;
    const char *help;
    bool started;
};

/* ---- buffer ------------------------------------------------------------- */

static void buf_append(struct mbuf *b, const char *s, size_t n)
{
    if (b->err != 0)
        return;
    if (n > METRICS_BYTES_MAX - b->len) {
        b->err = TS_ERR_TOOBIG;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap != 0 ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (d == NULL) {
            b->err = TS_ERR_NOMEM;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_puts(struct mbuf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

/* Label values escape backslash, double quote and line feed (format 0.0.4). */
static void buf_label_value(struct mbuf *b, const char *v)
{
    const char *run = v;
    for (const char *p = v; *p != '\0'; p++) {
        const char *esc = NULL;
        if (*p == '\\')
            esc = "\\\\";
        else if (*p == '"')
            esc = "\\\"";
        else if (*p == '\n')
            esc = "\\n";
        if (esc == NULL)
            continue;
        buf_append(b, run, (size_t)(p - run));
        buf_puts(b, esc);
        run = p + 1;
    }
    buf_puts(b, run);
}

/* ---- numbers ------------------------------------------------------------ */

/*
 * d in the shortest form that reads back as d: 0.00025, not 0.00025000000000000001;
 * 1000, not 1e+03.
 */
static void format_double(double d, char *out, size_t cap)
{
    assert(isfinite(d));
    /* Whole numbers print as integers (1000, not 1e+03) while exact in a double. */
    if (d == floor(d) && fabs(d) < 9007199254740992.0) {
        snprintf(out, cap, "%.0f", d);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, d);
        if (strtod(out, NULL) == d)
            return;
    }
}

/* A JSON number or boolean as a sample value; false when j is neither. */
static bool format_value(const json_t *j, char *out, size_t cap)
{
    if (json_is_integer(j)) {
        snprintf(out, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(j));
        return true;
    }
    if (json_is_real(j)) {
        format_double(json_real_value(j), out, cap);
        return true;
    }
    if (json_is_boolean(j)) {
        snprintf(out, cap, "%d", json_is_true(j) ? 1 : 0);
        return true;
    }
    return false;
}

/* ---- samples ------------------------------------------------------------ */

static void family_start(struct mbuf *b, struct family *f)
{
    if (f->started)
        return;
    f->started = true;
    /* HELP texts are ours: a line feed or backslash in one would need escaping. */
    assert(strchr(f->help, '\n') == NULL);
    assert(strchr(f->help, '\\') == NULL);
    buf_puts(b, "# HELP ");
    buf_puts(b, f->name);
    buf_puts(b, " ");
    buf_puts(b, f->help);
    buf_puts(b, "\n# TYPE ");
    buf_puts(b, f->name);
    buf_puts(b, " ");
    buf_puts(b, f->type);
    buf_puts(b, "\n");
}

/* Writes `name[suffix]{labels} value`; value is already formatted. */
static void sample_text(struct mbuf *b, struct family *f, const char *suffix,
                        const struct label *labels, size_t nlabels, const char *value)
{
    family_start(b, f);
    buf_puts(b, f->name);
    buf_puts(b, suffix);
    if (nlabels > 0) {
        buf_puts(b, "{");
        for (size_t i = 0; i < nlabels; i++) {
            if (i > 0)
                buf_puts(b, ",");
            buf_puts(b, labels[i].name);
            buf_puts(b, "=\"");
            buf_label_value(b, labels[i].value);
            buf_puts(b, "\"");
        }
        buf_puts(b, "}");
    }
    buf_puts(b, " ");
    buf_puts(b, value);
    buf_puts(b, "\n");
}

/* Writes a sample when j is a number or boolean; nothing otherwise. */
static void sample_json(struct mbuf *b, struct family *f, const struct label *labels,
                        size_t nlabels, const json_t *j)
{
    char v[64];
    if (format_value(j, v, sizeof(v)))
        sample_text(b, f, "", labels, nlabels, v);
}

/* A top-level field of obj as an unlabelled sample. */
static void sample_field(struct mbuf *b, const json_t *obj, const char *field,
                         const char *name, const char *type, const char *help)
{
    struct family f = {name, type, help, false};
    sample_json(b, &f, NULL, 0, json_object_get(obj, field));
}

/* ---- time --------------------------------------------------------------- */

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Reads exactly n digits at *p; advances *p. */
static bool read_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return true;
}

/*
 * ISO 8601 "YYYY-MM-DDTHH:MM[:SS[.fff]](Z|+HH:MM|-HH:MM)" as Unix seconds.
 * A time without a zone is refused: its instant is not known.
 */
static bool parse_iso_seconds(const char *s, double *out)
{
    int y, mo, d, h, mi, sec = 0, zh = 0, zm = 0;
    double frac = 0;
    const char *p = s;

    if (!read_digits(&p, 4, &y) || *p++ != '-' || !read_digits(&p, 2, &mo) || *p++ != '-' ||
        !read_digits(&p, 2, &d) || *p++ != 'T' || !read_digits(&p, 2, &h) || *p++ != ':' ||
        !read_digits(&p, 2, &mi))
        return false;
    if (*p == ':') {
        p++;
        if (!read_digits(&p, 2, &sec))
            return false;
        if (*p == '.') {
            double scale = 0.1;
            p++;
            if (*p < '0' || *p > '9')
                return false;
            for (; *p >= '0' && *p <= '9'; p++, scale /= 10)
                frac += (*p - '0') * scale;
        }
    }
    int sign = 0;
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p++ == '+' ? 1 : -1;
        if (!read_digits(&p, 2, &zh) || *p++ != ':' || !read_digits(&p, 2, &zm))
            return false;
    } else {
        return false;
    }
    static const int month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > month_days[mo - 1] || h > 23 ||
        mi > 59 || sec > 60 || zh > 23 || zm > 59)
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo == 2 && d == 29 && !leap)
        return false;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
    secs -= sign * (zh * 3600 + zm * 60);
    *out = (double)secs + frac;
    return true;
}

/* ---- families ----------------------------------------------------------- */

static const char *string_or(const json_t *obj, const char *field, const char *dflt)
{
    const char *s = json_string_value(json_object_get(obj, field));
    return s != NULL ? s : dflt;
}

static void render_info(struct mbuf *b, const json_t *status)
{
    struct family f = {"trialsync_info", "gauge",
                       "The node's identity; always 1.", false};
    if (json_object_get(status, "node") == NULL)
        return;
    struct label l[] = {
        {"node", string_or(status, "node", "")},
        {"role", string_or(status, "role", "")},
        {"trial", string_or(status, "trial", "")},
    };
    sample_text(b, &f, "", l, ARRAY_LEN(l), "1");
}

/* The software's version and the store format it writes, as labels (the
 * info-metric convention: the value is always 1, the labels are the data). */
static void render_build_info(struct mbuf *b, const json_t *status)
{
    struct family f = {"trialsync_build_info", "gauge",
                       "The running build: version and store format; always 1.", false};
    const char *version = json_string_value(json_object_get(status, "version"));
    if (version == NULL)
        return;
    char format[32] = "";
    const json_t *sf = json_object_get(status, "store_format");
    if (json_is_integer(sf))
        snprintf(format, sizeof(format), "%" JSON_INTEGER_FORMAT, json_integer_value(sf));
    struct label l[] = {{"version", version}, {"store_format", format}};
    sample_text(b, &f, "", l, ARRAY_LEN(l), "1");
}

/* One family with one sample per peer, read from the peer object's field. */
static void render_peer_field(struct mbuf *b, const json_t *peers, const char *field,
                              const char *name, const char *type, const char *help)
{
    struct family f = {name, type, help, false};
    size_t i;
    json_t *p;
    json_array_foreach(peers, i, p) {
        const char *id = json_string_value(json_object_get(p, "id"));
        if (id == NULL)
            continue;
        struct label l[] = {{"peer", id}};
        sample_json(b, &f, l, ARRAY_LEN(l), json_object_get(p, field));
    }
}

static void render_peers(struct mbuf *b, const json_t *status)
{
    const json_t *peers = json_object_get(status, "peers");
    if (!json_is_array(peers))
        return;
    size_t i;
    json_t *p;

    struct family connected = {"trialsync_peer_connected", "gauge",
                               "1 while a session with the peer is up, 0 otherwise.", false};
    json_array_foreach(peers, i, p) {
        const char *id = json_string_value(json_object_get(p, "id"));
        if (id == NULL)
            continue;
        struct label l[] = {{"peer", id}, {"role", string_or(p, "role", "")}};
        sample_json(b, &connected, l, ARRAY_LEN(l), json_object_get(p, "connected"));
    }
    render_peer_field(b, peers, "revoked", "trialsync_peer_revoked", "gauge",
                      "1 when the peer's membership is revoked.");
    /* last_seen is null for a peer never seen: no sample, not a fake time. */
    struct family seen = {"trialsync_peer_last_seen_timestamp_seconds", "gauge",
                          "When the peer was last heard from (Unix time).", false};
    json_array_foreach(peers, i, p) {
        const char *id = json_string_value(json_object_get(p, "id"));
        const char *at = json_string_value(json_object_get(p, "last_seen"));
        double t;
        if (id == NULL || at == NULL || !parse_iso_seconds(at, &t))
            continue;
        char v[64];
        format_double(t, v, sizeof(v));
        struct label l[] = {{"peer", id}};
        sample_text(b, &seen, "", l, ARRAY_LEN(l), v);
    }
    render_peer_field(b, peers, "last_seen_age_s", "trialsync_peer_last_seen_age_seconds",
                      "gauge",
                      "Deprecated, removed in the next release: use time() - "
                      "trialsync_peer_last_seen_timestamp_seconds. Seconds since the peer was "
                      "last heard from.");

    static const struct {
        const char *field, *lane, *direction;
    } behind[] = {
        {"behind_send_safety", "safety", "send"},
        {"behind_send_bulk", "bulk", "send"},
        {"behind_recv_safety", "safety", "receive"},
        {"behind_recv_bulk", "bulk", "receive"},
    };
    struct family lag = {"trialsync_peer_behind_entries", "gauge",
                         "Entries not yet replicated, per lane: send = the peer lacks them, "
                         "receive = this node lacks them.",
                         false};
    json_array_foreach(peers, i, p) {
        const char *id = json_string_value(json_object_get(p, "id"));
        if (id == NULL)
            continue;
        for (size_t k = 0; k < ARRAY_LEN(behind); k++) {
            struct label l[] = {
                {"peer", id}, {"lane", behind[k].lane}, {"direction", behind[k].direction}};
            sample_json(b, &lag, l, ARRAY_LEN(l), json_object_get(p, behind[k].field));
        }
    }

    render_peer_field(b, peers, "bytes_sent", "trialsync_peer_sent_bytes_total", "counter",
                      "Bytes sent to the peer since this node started.");
    render_peer_field(b, peers, "bytes_received", "trialsync_peer_received_bytes_total",
                      "counter", "Bytes received from the peer since this node started.");
    render_peer_field(b, peers, "entries_sent", "trialsync_peer_sent_entries_total", "counter",
                      "Oplog entries sent to the peer since this node started.");
    render_peer_field(b, peers, "entries_received", "trialsync_peer_received_entries_total",
                      "counter", "Oplog entries received from the peer since this node started.");
    render_peer_field(b, peers, "batches_refused", "trialsync_peer_batches_refused_total",
                      "counter", "Batches from the peer refused (bad signature, chain, origin).");
    render_peer_field(b, peers, "saes_in_flight", "trialsync_peer_saes_in_flight", "gauge",
                      "Serious adverse events of the peer not yet acknowledged.");
    render_peer_field(b, peers, "batches_held", "trialsync_peer_batches_held_total", "counter",
                      "Batches from the peer held back, not yet admissible (retried).");

    struct family refused = {"trialsync_peer_entries_refused_total", "counter",
                             "Entries from the peer refused by a rule of the rule book, by rule.",
                             false};
    json_array_foreach(peers, i, p) {
        const char *id = json_string_value(json_object_get(p, "id"));
        const json_t *rules = json_object_get(p, "entries_refused");
        if (id == NULL || !json_is_object(rules))
            continue;
        const char *rule;
        const json_t *n;
        json_object_foreach((json_t *)rules, rule, n) {
            struct label l[] = {{"peer", id}, {"rule", rule}};
            sample_json(b, &refused, l, ARRAY_LEN(l), n);
        }
    }

    struct family offset = {"trialsync_peer_clock_offset_seconds", "gauge",
                            "The peer's clock minus this node's, learned at its hello.", false};
    json_array_foreach(peers, i, p) {
        const char *id = json_string_value(json_object_get(p, "id"));
        const json_t *ms = json_object_get(p, "clock_offset_ms");
        if (id == NULL || !json_is_integer(ms))
            continue;
        json_t *secs = json_real((double)json_integer_value(ms) / 1000.0);
        struct label l[] = {{"peer", id}};
        sample_json(b, &offset, l, ARRAY_LEN(l), secs);
        json_decref(secs);
    }
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void render_handshake_failures(struct mbuf *b, const json_t *status)
{
    const json_t *fails = json_object_get(status, "handshake_failures");
    size_t n = json_object_size(fails);
    if (!json_is_object(fails) || n == 0)
        return;
    const char **keys = calloc(n, sizeof(*keys));
    if (keys == NULL) {
        b->err = b->err != 0 ? b->err : TS_ERR_NOMEM;
        return;
    }
    size_t count = 0;
    const char *key;
    json_t *v;
    /* json_object_foreach takes a non-const object; it does not modify it. */
    json_object_foreach((json_t *)fails, key, v) {
        assert(count < n);
        keys[count++] = key;
    }
    qsort(keys, count, sizeof(*keys), compare_strings);
    struct family f = {"trialsync_handshake_failures_total", "counter",
                       "Peer handshakes refused, by reason.", false};
    for (size_t i = 0; i < count; i++) {
        struct label l[] = {{"reason", keys[i]}};
        sample_json(b, &f, l, ARRAY_LEN(l), json_object_get(fails, keys[i]));
    }
    free(keys);
}

static void render_clock(struct mbuf *b, const json_t *status)
{
    const json_t *clock = json_object_get(status, "clock");
    if (!json_is_object(clock))
        return;
    sample_field(b, clock, "alarm", "trialsync_clock_alarm", "gauge",
                 "1 while this site's clock is off a hub's by more than the skew bound.");
}

/* Hub: site identities two nodes were seen using at once (peer.c). */
static void render_duplicates(struct mbuf *b, const json_t *status)
{
    const json_t *dups = json_object_get(status, "duplicate_identity");
    if (!json_is_array(dups))
        return;
    struct family total = {"trialsync_duplicate_identity_total", "counter",
                           "Connections refused because another node held the site's identity "
                           "on a live link (two nodes run one bundle).", false};
    struct family alarm = {"trialsync_duplicate_identity_alarm", "gauge",
                           "1 while a second node using the site's identity was refused in "
                           "the last 10 minutes.", false};
    struct family *families[] = {&total, &alarm};
    const char *fields[] = {"refused", "alarm"};
    for (size_t k = 0; k < ARRAY_LEN(families); k++) {
        size_t i;
        const json_t *d;
        json_array_foreach((json_t *)dups, i, d) {
            const char *site = json_string_value(json_object_get(d, "site"));
            if (site == NULL)
                continue;
            struct label l[] = {{"site", site}};
            sample_json(b, families[k], l, ARRAY_LEN(l), json_object_get(d, fields[k]));
        }
    }
}

/* People's sign-ins refused at this node (users.h), and those the limiter
 * refused without checking: a rising rate is someone guessing. */
static void render_signin(struct mbuf *b, const json_t *status)
{
    const json_t *si = json_object_get(status, "signin");
    if (!json_is_object(si))
        return;
    sample_field(b, si, "failures", "trialsync_api_signin_failures_total", "counter",
                 "Sign-ins with a user token refused (wrong, unknown or disabled).");
    sample_field(b, si, "limited", "trialsync_api_signin_limited_total", "counter",
                 "Sign-ins refused unchecked after too many failures for a user or address.");
}

/* Enrollment slots (enroll_node.h): per site as this node knows them. */
static void render_enrollment(struct mbuf *b, const json_t *status)
{
    const json_t *en = json_object_get(status, "enrollment");
    if (!json_is_object(en))
        return;
    sample_field(b, en, "cap", "trialsync_enrollment_cap", "gauge",
                 "The trial-wide enrollment cap (absent until one is set).");
    sample_field(b, en, "enrolled", "trialsync_enrolled_subjects_total", "gauge",
                 "Subjects holding an enrollment slot, over the sites this node knows.");
    struct family per_site[] = {
        {"trialsync_enrolled_subjects", "gauge",
         "Subjects of the site holding an enrollment slot.", false},
        {"trialsync_enrollment_slots", "gauge",
         "Enrollment slots the site holds (acknowledged less released).", false},
    };
    static const char *const fields[] = {"enrolled", "slots"};
    _Static_assert(ARRAY_LEN(per_site) == ARRAY_LEN(fields), "a field per family");
    const json_t *sites = json_object_get(en, "sites");
    for (size_t k = 0; k < ARRAY_LEN(fields); k++) {
        size_t i;
        const json_t *site;
        json_array_foreach(sites, i, site) {
            struct label l = {"site", string_or(site, "site", "")};
            sample_json(b, &per_site[k], &l, 1, json_object_get(site, fields[k]));
        }
    }
}

static void render_sae_totals(struct mbuf *b, const json_t *status)
{
    const json_t *sae = json_object_get(status, "sae");
    if (!json_is_object(sae))
        return;
    sample_field(b, sae, "in_flight", "trialsync_sae_in_flight", "gauge",
                 "Serious adverse events recorded and not yet acknowledged by a hub.");
    sample_field(b, sae, "late", "trialsync_sae_late", "gauge",
                 "Serious adverse events past their 24 h reporting deadline.");
    sample_field(b, sae, "at_risk", "trialsync_sae_at_risk", "gauge",
                 "Serious adverse events not yet acknowledged and near their deadline.");
    sample_field(b, sae, "alarms", "trialsync_sae_alarms_total", "counter",
                 "Alarms raised for unacknowledged serious adverse events.");
}

static void render_sae_deadlines(struct mbuf *b, const json_t *saes)
{
    const json_t *list = json_object_get(saes, "saes");
    if (!json_is_array(list))
        return;
    struct family f = {"trialsync_sae_deadline_timestamp_seconds", "gauge",
                       "Reporting deadline (Unix time) of each serious adverse event not yet "
                       "acknowledged nor reported by the backup channel.",
                       false};
    size_t written = 0;
    size_t i;
    json_t *s;
    json_array_foreach(list, i, s) {
        const char *id = json_string_value(json_object_get(s, "id"));
        const char *deadline = json_string_value(json_object_get(s, "deadline"));
        double t;
        /* A report by phone or fax ends the clock's urgency as acknowledgement
         * does (sae_at_risk leaves it out too). */
        if (id == NULL || deadline == NULL || json_is_true(json_object_get(s, "acked")) ||
            json_is_string(json_object_get(s, "backup_time")))
            continue;
        if (!parse_iso_seconds(deadline, &t))
            continue;
        if (written == METRICS_SAE_SERIES_MAX)
            break;
        char v[64];
        format_double(t, v, sizeof(v));
        struct label l[] = {{"sae", id}, {"site", string_or(s, "site", "")}};
        sample_text(b, &f, "", l, ARRAY_LEN(l), v);
        written++;
    }
}

/*
 * The storage state (node.h): one sample per state, 1 for the node's, so an
 * alert reads trialsync_storage_state{state!="ok"} == 1.  The state names
 * are the status's; one the list does not know is still shown.
 */
static void render_storage_state(struct mbuf *b, const json_t *storage)
{
    static const char *const states[] = {"ok", "disk_low", "storage_failed"};
    struct family f = {"trialsync_storage_state", "gauge",
                       "1 for the node's storage state (ok, disk_low, storage_failed), 0 for "
                       "the others.", false};
    const char *state = json_string_value(json_object_get(storage, "state"));
    if (state == NULL)
        return;
    bool known = false;
    for (size_t i = 0; i < ARRAY_LEN(states); i++) {
        struct label l[] = {{"state", states[i]}};
        bool is = strcmp(state, states[i]) == 0;
        known = known || is;
        sample_text(b, &f, "", l, ARRAY_LEN(l), is ? "1" : "0");
    }
    if (!known) {
        struct label l[] = {{"state", state}};
        sample_text(b, &f, "", l, ARRAY_LEN(l), "1");
    }
    sample_field(b, storage, "disk_guard_bytes", "trialsync_disk_guard_bytes", "gauge",
                 "Free bytes below which writes are refused and peers' batches held.");
}

static void render_node_totals(struct mbuf *b, const json_t *status)
{
    sample_field(b, status, "conflicts", "trialsync_conflicts_open", "gauge",
                 "Fields with more than one concurrent value.");
    sample_field(b, status, "store_bytes", "trialsync_store_size_bytes", "gauge",
                 "Bytes the node's store takes on disk.");
    sample_field(b, status, "disk_free_bytes", "trialsync_disk_free_bytes", "gauge",
                 "Bytes free on the store's file system.");
    sample_field(b, status, "entries", "trialsync_entries", "gauge",
                 "Oplog entries the node holds.");
    sample_field(b, status, "records", "trialsync_records", "gauge",
                 "Records the node holds.");
    sample_field(b, status, "accepting_writes", "trialsync_accepting_writes", "gauge",
                 "1 while the node accepts writes, 0 while its storage state is not ok.");
    sample_field(b, status, "writes_refused_disk", "trialsync_writes_refused_disk_total",
                 "counter", "Writes refused because free disk was below the threshold.");
    render_storage_state(b, json_object_get(status, "storage"));
    sample_field(b, status, "dashboard_sessions", "trialsync_dashboard_sessions", "gauge",
                 "Dashboard sessions open (people signed in through a browser).");
    sample_field(b, status, "dashboard_requests_refused",
                 "trialsync_dashboard_requests_refused_total", "counter",
                 "Browser-session requests refused: no CSRF token, or a write not JSON or "
                 "from another origin.");
    sample_field(b, status, "uptime_s", "trialsync_uptime_seconds", "gauge",
                 "Seconds since the node started.");
    const json_t *started_ms = json_object_get(status, "started_at_ms");
    if (json_is_integer(started_ms)) {
        struct family f = {"trialsync_start_time_seconds", "gauge",
                           "When the node started (Unix time); counters restart then.", false};
        json_t *secs = json_real((double)json_integer_value(started_ms) / 1000.0);
        sample_json(b, &f, NULL, 0, secs);
        json_decref(secs);
    }
}

/* The standard process_* families of the Prometheus client libraries, from
 * the status's "process" object (read from /proc by the API, procstat.h). */
static void render_process(struct mbuf *b, const json_t *status)
{
    const json_t *proc = json_object_get(status, "process");
    if (!json_is_object(proc))
        return;
    sample_field(b, proc, "cpu_seconds", "process_cpu_seconds_total", "counter",
                 "Total user and system CPU time spent in seconds.");
    sample_field(b, proc, "open_fds", "process_open_fds", "gauge",
                 "Number of open file descriptors.");
    sample_field(b, proc, "max_fds", "process_max_fds", "gauge",
                 "Maximum number of open file descriptors.");
    sample_field(b, proc, "resident_bytes", "process_resident_memory_bytes", "gauge",
                 "Resident memory size in bytes.");
    sample_field(b, proc, "start_time_s", "process_start_time_seconds", "gauge",
                 "Start time of the process since unix epoch in seconds.");
}

/* The certificates' notAfter, for renewal alerts (docs/operations.md). */
static void render_cert_expiry(struct mbuf *b, const json_t *status)
{
    const char *node = json_string_value(json_object_get(status, "node"));
    if (node == NULL)
        return;
    struct label l[] = {{"node", node}};
    struct family cert = {"trialsync_cert_expiry_timestamp_seconds", "gauge",
                          "notAfter of the certificate the node runs with (seconds since the "
                          "epoch); renew before it.", false};
    sample_json(b, &cert, l, ARRAY_LEN(l), json_object_get(status, "cert_not_after_s"));
    struct family ca = {"trialsync_ca_cert_expiry_timestamp_seconds", "gauge",
                        "notAfter of the trial CA certificate the node trusts (seconds since "
                        "the epoch).", false};
    sample_json(b, &ca, l, ARRAY_LEN(l), json_object_get(status, "ca_not_after_s"));
}

/* The JSON number j as a double; false when it is not a number. */
static bool number_of(const json_t *j, double *out)
{
    if (!json_is_number(j))
        return false;
    *out = json_number_value(j);
    return true;
}

static void render_commit_histogram(struct mbuf *b, const json_t *status)
{
    const json_t *h = json_object_get(status, "commit_latency");
    const json_t *bounds = json_object_get(h, "bounds_s");
    const json_t *counts = json_object_get(h, "counts");
    if (!json_is_array(bounds) || !json_is_array(counts))
        return;
    size_t nb = json_array_size(bounds);
    if (json_array_size(counts) != nb + 1)
        return;
    /* Check everything first: a half-written histogram is worse than none. */
    double prev = -INFINITY;
    for (size_t i = 0; i < nb; i++) {
        double le;
        if (!number_of(json_array_get(bounds, i), &le) || !(le > prev))
            return;
        prev = le;
    }
    for (size_t i = 0; i <= nb; i++) {
        const json_t *c = json_array_get(counts, i);
        if (!json_is_integer(c) || json_integer_value(c) < 0)
            return;
    }

    struct family f = {"trialsync_commit_duration_seconds", "histogram",
                       "Time a group commit took to reach the disk (fsync included).", false};
    uint64_t cumulative = 0;
    char v[64], le_text[64];
    for (size_t i = 0; i <= nb; i++) {
        cumulative += (uint64_t)json_integer_value(json_array_get(counts, i));
        if (i < nb)
            format_double(json_number_value(json_array_get(bounds, i)), le_text,
                          sizeof(le_text));
        else
            snprintf(le_text, sizeof(le_text), "+Inf");
        snprintf(v, sizeof(v), "%llu", (unsigned long long)cumulative);
        struct label l[] = {{"le", le_text}};
        sample_text(b, &f, "_bucket", l, ARRAY_LEN(l), v);
    }
    double sum;
    if (number_of(json_object_get(h, "sum_s"), &sum)) {
        format_double(sum, v, sizeof(v));
        sample_text(b, &f, "_sum", NULL, 0, v);
    }
    /* _count is the +Inf bucket by definition; the status's own count is not needed. */
    snprintf(v, sizeof(v), "%llu", (unsigned long long)cumulative);
    sample_text(b, &f, "_count", NULL, 0, v);
}

int metrics_render(const json_t *status, const json_t *saes, char **out, size_t *out_len)
{
    assert(out != NULL);
    assert(out_len != NULL);
    *out = NULL;
    *out_len = 0;
    if (!json_is_object(status))
        return TS_ERR_INVALID;

    struct mbuf b = {0};
    render_info(&b, status);
    render_build_info(&b, status);
    render_peers(&b, status);
    render_handshake_failures(&b, status);
    render_duplicates(&b, status);
    render_sae_totals(&b, status);
    render_enrollment(&b, status);
    render_signin(&b, status);
    render_clock(&b, status);
    if (json_is_object(saes))
        render_sae_deadlines(&b, saes);
    render_node_totals(&b, status);
    render_cert_expiry(&b, status);
    render_commit_histogram(&b, status);
    render_process(&b, status);
    buf_append(&b, "", 0);  /* an empty exposition is still a valid, allocated string */
    if (b.err != 0) {
        free(b.data);
        return b.err;
    }
    assert(b.data != NULL);
    assert(b.data[b.len] == '\0');
    *out = b.data;
    *out_len = b.len;
    return 0;
}
