/*
 * api.c: the local HTTP/JSON API (see api.h).
 *
 * Connection states:
 *
 *   READING ──message complete──> BUSY (request dispatched; reading paused
 *      ^                               until the response is queued)
 *      └──────── response queued ───────┘
 *   any ──error / peer closed / api_stop──> CLOSING ──uv_close cb──> freed
 *
 * http-parser is paused at each message end so pipelined bytes wait in
 * `leftover` until the response of the request before them is queued.  A
 * connection is freed only in its close callback; a write's commit callback
 * that finds its connection gone drops the answer (the write is durable).
 */
#include "api.h"

#include <assert.h>
#include <http_parser.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../proto/codec.h"
#include "dashboard.h"
#include "merge.h"
#include "metrics.h"
#include "pki.h"
#include "procstat.h"
#include "trace.h"
#include "util.h"
#include "version.h"

#define API_URL_BYTES_MAX 2048
#define API_TOKEN_BYTES_MAX 256
#define API_HEADER_NAME_BYTES_MAX 64
/* The Cookie header: the dashboard's token cookie and a browser's others. */
#define API_COOKIE_BYTES_MAX 2048
/* A backup target path: far above any real one, far below PATH_MAX. */
#define API_BACKUP_PATH_BYTES_MAX 1024

struct api {
    struct node *node;
    uv_tcp_t listener;
    char token[API_TOKEN_BYTES_MAX + 1];
    size_t token_len;
    struct api_hooks hooks;
    size_t connections;
    struct api_conn *conns;   /* every open connection, for api_stop */
    bool stopping;
    bool listener_closed;
    /* notAfter of the certificates the node started with (0: unreadable):
     * a renewed certificate takes effect, and shows here, at restart. */
    int64_t cert_not_after_s;
    int64_t ca_not_after_s;
};

struct api_conn {
    uv_tcp_t tcp;
    struct api *api;
    struct api_conn *next, *prev;
    http_parser parser;
    char url[API_URL_BYTES_MAX + 1];
    size_t url_len;
    char header_name[API_HEADER_NAME_BYTES_MAX + 1];
    size_t header_name_len;
    bool header_is_auth;
    bool header_is_cookie;
    char auth[API_TOKEN_BYTES_MAX + 16];
    size_t auth_len;
    char cookie[API_COOKIE_BYTES_MAX + 1];
    size_t cookie_len;
    char *body;
    size_t body_len;
    size_t request_bytes;
    bool message_done;
    bool busy;
    bool closing;
    bool keep_alive;
    char *leftover;
    size_t leftover_len;
    uv_shutdown_t shutdown_req;
    bool shutting_down;
    int refs;   /* the connection itself + writes waiting for a commit + a shutdown */
};

struct write_wait {
    struct api_conn *conn;
    char type[TS_TYPE_BYTES_MAX + 1];
    char id[TS_ID_BYTES_MAX + 1];
};

static void conn_close(struct api_conn *c);
static void conn_finish(struct api_conn *c);
static void listener_closed_cb(uv_handle_t *h);
static void conn_unref(struct api_conn *c);
static void conn_feed(struct api_conn *c, const char *data, size_t len);

void api_format_time(uint64_t ms, char *out, size_t cap)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%03uZ", base, (unsigned)(ms % 1000));
}

static const char *lane_name(uint8_t lane)
{
    return lane == LANE_SAFETY ? "safety" : "bulk";
}

/* ---- responses ---------------------------------------------------------- */

struct write_req {
    uv_write_t req;
    char *buf;
};

static void write_done_cb(uv_write_t *req, int status)
{
    struct write_req *w = container_of(req, struct write_req, req);
    free(w->buf);
    free(w);
}

static const char *status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 302: return "Found";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 507: return "Insufficient Storage";
    }
    return "Error";
}

static void conn_send_extra(struct api_conn *c, int status, const char *content_type,
                            const char *extra_headers, const char *body, size_t len);

static void conn_send(struct api_conn *c, int status, const char *content_type,
                      const char *body, size_t len)
{
    conn_send_extra(c, status, content_type, "", body, len);
}

/* Sends a response; extra_headers are whole "Name: value\r\n" lines. */
static void conn_send_extra(struct api_conn *c, int status, const char *content_type,
                            const char *extra_headers, const char *body, size_t len)
{
    if (c->closing || c->shutting_down)
        return;
    char head[1024];
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                      "%sConnection: %s\r\n\r\n",
                      status, status_text(status), content_type, len, extra_headers,
                      c->keep_alive ? "keep-alive" : "close");
    if (hl < 0 || (size_t)hl >= sizeof(head)) {
        conn_close(c);
        return;
    }
    struct write_req *w = malloc(sizeof(*w));
    char *buf = malloc((size_t)hl + len);
    if (w == NULL || buf == NULL) {
        free(w);
        free(buf);
        conn_close(c);
        return;
    }
    memcpy(buf, head, (size_t)hl);
    memcpy(buf + hl, body, len);
    w->buf = buf;
    uv_buf_t b = uv_buf_init(buf, (unsigned)((size_t)hl + len));
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, write_done_cb) != 0) {
        free(buf);
        free(w);
        conn_close(c);
        return;
    }
    if (!c->keep_alive)
        conn_finish(c);
}

static void conn_send_json(struct api_conn *c, int status, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    if (s == NULL) {
        conn_send(c, 500, "application/json", "{\"error\":\"out of memory\"}", 25);
        return;
    }
    size_t len = strlen(s);
    /* A trailing newline keeps the CLI's output tidy. */
    char *withnl = realloc(s, len + 2);
    if (withnl != NULL) {
        s = withnl;
        s[len++] = '\n';
        s[len] = '\0';
    }
    /* Busy (503) is temporary: say when to come back. */
    conn_send_extra(c, status, "application/json", status == 503 ? "Retry-After: 1\r\n" : "", s,
                    len);
    free(s);
}

/*
 * s as a JSON string.  A message may quote the request's path, which can hold
 * any byte, and JSON carries only UTF-8 (jansson refuses the rest): then
 * every byte outside ASCII becomes '?', so the answer is still sent.
 */
static json_t *json_text(const char *s)
{
    json_t *j = json_string(s);
    if (j != NULL)
        return j;
    char ascii[1024];
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0' && n + 1 < sizeof(ascii);
         p++)
        ascii[n++] = *p < 0x80 ? (char)*p : '?';
    ascii[n] = '\0';
    return json_string(ascii);
}

static void conn_send_error(struct api_conn *c, int status, const char *msg)
{
    conn_send_json(c, status, json_pack("{s:o}", "error", json_text(msg)));
}

static int http_status_of(int code)
{
    switch (code) {
    case TS_ERR_INVALID:
    case TS_ERR_TOOBIG: return 400;
    case TS_ERR_AUTH: return 403;
    case TS_ERR_NOTFOUND: return 404;
    case TS_ERR_DISKFULL: return 507;
    case TS_ERR_AGAIN: return 503;
    }
    return 500;
}

/* Ends a request: resumes reading what the client sent after it. */
static void conn_request_done(struct api_conn *c)
{
    c->busy = false;
    free(c->body);
    c->body = NULL;
    c->body_len = 0;
    c->url_len = 0;
    c->auth_len = 0;
    c->cookie_len = 0;
    c->request_bytes = 0;
    c->message_done = false;
    if (c->closing)
        return;
    http_parser_pause(&c->parser, 0);
    if (c->leftover_len > 0) {
        char *rest = c->leftover;
        size_t rest_len = c->leftover_len;
        c->leftover = NULL;
        c->leftover_len = 0;
        conn_feed(c, rest, rest_len);
        free(rest);
    }
}

/* ---- handlers ----------------------------------------------------------- */

static json_t *write_json(const struct live_write *lw)
{
    char t[40];
    api_format_time(lw->hlc >> HLC_LOGICAL_BITS, t, sizeof(t));
    return json_pack("{s:s,s:s,s:s,s:I,s:s}", "value", lw->value, "origin", lw->ref.origin,
                     "lane", lane_name(lw->ref.lane), "seq", (json_int_t)lw->ref.seq,
                     "time", t);
}

struct get_ctx {
    const char *type;
    json_t *fields;
};

static int get_field_cb(void *ctx, const char *field, const struct field_state *st)
{
    struct get_ctx *g = ctx;
    int i = merge_display(g->type, field, st);
    if (i < 0)
        return 0;
    bool conflict = merge_conflict(g->type, field, st);
    json_t *f = json_object();
    if (merge_policy_of(g->type, field) == MERGE_POLICY_APPEND) {
        json_t *all = json_array();
        for (size_t k = 0; k < st->live_count; k++)
            json_array_append_new(all, json_string(st->live[k].value));
        json_object_set_new(f, "value", all);
    } else {
        json_object_set_new(f, "value", json_string(st->live[i].value));
    }
    json_object_set_new(f, "conflict", json_boolean(conflict));
    if (conflict) {
        json_t *vals = json_array();
        for (size_t k = 0; k < st->live_count; k++)
            json_array_append_new(vals, write_json(&st->live[k]));
        json_object_set_new(f, "values", vals);
    }
    json_object_set_new(g->fields, field, f);
    return 0;
}

static void handle_get(struct api_conn *c, const char *type, const char *id)
{
    struct get_ctx g = {.type = type, .fields = json_object()};
    int rc = store_record_fields(c->api->node->store, type, id, get_field_cb, &g);
    if (rc == TS_ERR_NOTFOUND) {
        json_decref(g.fields);
        char msg[200];
        snprintf(msg, sizeof(msg), "no %s record with id '%s'", type, id);
        conn_send_error(c, 404, msg);
        return;
    }
    if (rc != 0) {
        json_decref(g.fields);
        conn_send_error(c, 500, ts_strerror(rc));
        return;
    }
    conn_send_json(c, 200, json_pack("{s:s,s:s,s:o}", "type", type, "id", id, "fields", g.fields));
}

struct history_ctx {
    struct store *store;
    json_t *versions;
};

/* The value field had in the entry ref named, or NULL. */
static json_t *old_value(struct store *s, const struct entry_ref *ref, const char *field)
{
    struct entry e;
    memset(&e, 0, sizeof(e));
    if (store_entry_get(s, ref, &e, NULL) != 0)
        return NULL;
    json_t *v = NULL;
    for (size_t i = 0; i < e.writes_count; i++)
        if (strcmp(e.writes[i].field, field) == 0)
            v = json_string(e.writes[i].value);
    entry_release(&e);
    return v;
}

static int history_cb(void *ctx, const struct entry *e, uint64_t stored_ms)
{
    struct history_ctx *h = ctx;
    char event_t[40], entry_t[40];
    api_format_time(e->wall_ms, event_t, sizeof(event_t));
    api_format_time(stored_ms, entry_t, sizeof(entry_t));
    for (size_t i = 0; i < e->writes_count; i++) {
        const struct field_write *fw = &e->writes[i];
        json_t *old = json_null();
        if (fw->supersedes_count == 1) {
            json_t *v = old_value(h->store, &fw->supersedes[0], fw->field);
            if (v != NULL) {
                json_decref(old);
                old = v;
            }
        } else if (fw->supersedes_count > 1) {
            json_decref(old);
            old = json_array();
            for (size_t k = 0; k < fw->supersedes_count; k++) {
                json_t *v = old_value(h->store, &fw->supersedes[k], fw->field);
                json_array_append_new(old, v != NULL ? v : json_null());
            }
        }
        json_t *ver = json_pack("{s:s,s:s,s:o,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:s}", "field",
                                fw->field, "new_value", fw->value, "old_value", old, "user",
                                e->user, "node", e->origin, "reason", e->reason, "event_time",
                                event_t, "entry_time", entry_t, "seq", (json_int_t)e->seq,
                                "hlc", (json_int_t)e->hlc, "lane", lane_name(e->lane));
        json_array_append_new(h->versions, ver);
    }
    return 0;
}

static void handle_history(struct api_conn *c, const char *type, const char *id)
{
    struct history_ctx h = {.store = c->api->node->store, .versions = json_array()};
    int rc = store_record_history(h.store, type, id, history_cb, &h);
    if (rc != 0) {
        json_decref(h.versions);
        char msg[200];
        snprintf(msg, sizeof(msg), "no %s record with id '%s'", type, id);
        conn_send_error(c, rc == TS_ERR_NOTFOUND ? 404 : 500,
                        rc == TS_ERR_NOTFOUND ? msg : ts_strerror(rc));
        return;
    }
    conn_send_json(c, 200,
                   json_pack("{s:s,s:s,s:o}", "type", type, "id", id, "versions", h.versions));
}

static int records_cb(void *ctx, const char *type, const char *id)
{
    json_array_append_new(ctx, json_pack("{s:s,s:s}", "type", type, "id", id));
    return 0;
}

static void handle_records(struct api_conn *c, const char *query)
{
    char type[TS_TYPE_BYTES_MAX + 1] = "";
    if (query != NULL && strncmp(query, "type=", 5) == 0) {
        size_t len = strcspn(query + 5, "&");
        if (len > TS_TYPE_BYTES_MAX) {
            conn_send_error(c, 400, "type too long");
            return;
        }
        memcpy(type, query + 5, len);
        type[len] = '\0';
    }
    json_t *list = json_array();
    int rc = store_records(c->api->node->store, type, records_cb, list);
    if (rc != 0) {
        json_decref(list);
        conn_send_error(c, 500, ts_strerror(rc));
        return;
    }
    size_t count = json_array_size(list);
    conn_send_json(c, 200, json_pack("{s:o,s:I}", "records", list, "count", (json_int_t)count));
}

static int conflicts_cb(void *ctx, const char *type, const char *id, const char *field,
                        const struct field_state *st)
{
    json_t *vals = json_array();
    for (size_t k = 0; k < st->live_count; k++)
        json_array_append_new(vals, write_json(&st->live[k]));
    int i = merge_display(type, field, st);
    json_array_append_new(ctx, json_pack("{s:s,s:s,s:s,s:s,s:o}", "type", type, "id", id,
                                         "field", field, "displayed",
                                         i >= 0 ? st->live[i].value : "", "values", vals));
    return 0;
}

static void handle_conflicts(struct api_conn *c)
{
    json_t *list = json_array();
    int rc = store_conflicts(c->api->node->store, conflicts_cb, list);
    if (rc != 0) {
        json_decref(list);
        conn_send_error(c, 500, ts_strerror(rc));
        return;
    }
    size_t count = json_array_size(list);
    conn_send_json(c, 200, json_pack("{s:o,s:I}", "conflicts", list, "count", (json_int_t)count));
}

static void hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static void handle_digest(struct api_conn *c)
{
    uint8_t d[TS_HASH_BYTES];
    char h[2 * TS_HASH_BYTES + 1];
    int rc = store_digest(c->api->node->store, d);
    if (rc != 0) {
        conn_send_error(c, 500, ts_strerror(rc));
        return;
    }
    hex(d, sizeof(d), h);
    conn_send_json(c, 200, json_pack("{s:s,s:s}", "node", c->api->node->cfg.id, "digest", h));
}

static json_t *status_json(struct api *a);
static bool token_matches(const struct api *a, const char *given, size_t given_len);
static bool authorized(struct api_conn *c);

static void handle_status(struct api_conn *c)
{
    conn_send_json(c, 200, status_json(c->api));
}

static json_t *saes_json(struct api *a)
{
    return a->hooks.saes != NULL ? a->hooks.saes(a->hooks.ctx) : json_pack("{s:[]}", "saes");
}

static void handle_metrics(struct api_conn *c)
{
    json_t *st = status_json(c->api);
    json_t *saes = saes_json(c->api);
    char *text = NULL;
    size_t len = 0;
    int rc = metrics_render(st, saes, &text, &len);
    json_decref(st);
    json_decref(saes);
    if (rc != 0) {
        conn_send_error(c, 500, "cannot render the metrics");
        return;
    }
    conn_send(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

/* The dashboard: the page for a browser holding the token cookie; a token in
 * the query sets the cookie (then redirects, so the token leaves the URL);
 * without either, a form asking for the token. */
static void handle_dashboard(struct api_conn *c, const char *query)
{
    if (strncmp(query, "token=", 6) == 0) {
        const char *tok = query + 6;
        size_t tl = strcspn(tok, "&");
        if (token_matches(c->api, tok, tl)) {
            char extra[API_TOKEN_BYTES_MAX + 160];
            snprintf(extra, sizeof(extra),
                     "Location: /dashboard\r\nSet-Cookie: ts_token=%.*s; HttpOnly; "
                     "SameSite=Strict; Path=/\r\n",
                     (int)tl, tok);
            conn_send_extra(c, 302, "text/plain", extra, "", 0);
            return;
        }
    }
    char csp[DASHBOARD_CSP_BYTES_MAX];
    char extra[DASHBOARD_CSP_BYTES_MAX + 64];
    if (dashboard_csp(csp, sizeof(csp)) != 0)
        csp[0] = '\0';
    snprintf(extra, sizeof(extra), "Content-Security-Policy: %s\r\n", csp);
    size_t len = 0;
    if (!authorized(c)) {
        const char *form = dashboard_login_html(&len);
        conn_send_extra(c, 401, DASHBOARD_CONTENT_TYPE, extra, form, len);
        return;
    }
    const char *page = dashboard_html(&len);
    conn_send_extra(c, 200, DASHBOARD_CONTENT_TYPE, extra, page, len);
}

/* The process's own figures (procstat.h); a figure /proc would not give is null. */
static json_t *process_json(void)
{
    struct procstat ps;
    procstat_read(&ps);
    json_t *p = json_object();
    json_object_set_new(p, "resident_bytes", ps.resident_known
                                                 ? json_integer((json_int_t)ps.resident_bytes)
                                                 : json_null());
    json_object_set_new(p, "open_fds",
                        ps.open_fds_known ? json_integer((json_int_t)ps.open_fds) : json_null());
    json_object_set_new(p, "max_fds",
                        ps.max_fds_known ? json_integer((json_int_t)ps.max_fds) : json_null());
    json_object_set_new(p, "cpu_seconds",
                        ps.cpu_known ? json_real(ps.cpu_seconds) : json_null());
    json_object_set_new(p, "start_time_s",
                        ps.start_known ? json_real(ps.start_time_s) : json_null());
    return p;
}

static json_t *status_json(struct api *a)
{
    struct node *n = a->node;
    struct store_stats st;
    struct vv_item *vv = NULL;
    size_t vv_count = 0;
    uint64_t free_bytes = 0;

    memset(&st, 0, sizeof(st));
    store_stats(n->store, &st);
    store_vv(n->store, &vv, &vv_count);
    bool low = node_disk_low(n, &free_bytes);
    json_t *vector = json_array();
    for (size_t i = 0; i < vv_count; i++)
        json_array_append_new(vector, json_pack("{s:s,s:s,s:I}", "origin", vv[i].origin, "lane",
                                                lane_name(vv[i].lane), "seq",
                                                (json_int_t)vv[i].seq));
    free(vv);
    json_t *s = json_pack(
        "{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:b,s:I,s:o,s:[]}", "node", n->cfg.id, "role",
        pki_role_name(n->cfg.role), "trial", n->cfg.trial, "entries", (json_int_t)st.entries,
        "records", (json_int_t)st.records, "conflicts", (json_int_t)st.conflicts, "store_bytes",
        (json_int_t)st.bytes_on_disk, "disk_free_bytes", (json_int_t)free_bytes,
        "accepting_writes", !low, "uptime_s",
        (json_int_t)((node_now_ms() - n->started_ms) / 1000), "version_vector", vector,
        "peers");
    json_object_set_new(s, "writes_refused_disk", json_integer((json_int_t)n->writes_refused_disk));
    json_t *bounds = json_array(), *counts = json_array();
    uint64_t total = 0;
    for (size_t b = 0; b < NODE_COMMIT_BUCKETS; b++)
        json_array_append_new(bounds, json_real(node_commit_bounds_s[b]));
    for (size_t b = 0; b <= NODE_COMMIT_BUCKETS; b++) {
        json_array_append_new(counts, json_integer((json_int_t)n->commit_counts[b]));
        total += n->commit_counts[b];
    }
    json_object_set_new(s, "commit_latency",
                        json_pack("{s:o,s:o,s:f,s:I}", "bounds_s", bounds, "counts", counts,
                                  "sum_s", n->commit_sum_s, "count", (json_int_t)total));
    json_object_set_new(s, "cert_not_after_s", a->cert_not_after_s != 0
                                                  ? json_integer((json_int_t)a->cert_not_after_s)
                                                  : json_null());
    json_object_set_new(s, "ca_not_after_s", a->ca_not_after_s != 0
                                                ? json_integer((json_int_t)a->ca_not_after_s)
                                                : json_null());
    json_object_set_new(s, "store_format", json_integer((json_int_t)store_format_version()));
    json_object_set_new(s, "version", json_string(TS_VERSION));
    /* started_ms is the wall clock at node_open: a timestamp, unlike uptime_s,
     * that does not change from one scrape to the next. */
    json_object_set_new(s, "started_at_ms", json_integer((json_int_t)n->started_ms));
    json_object_set_new(s, "process", process_json());
    if (a->hooks.status_extend != NULL)
        a->hooks.status_extend(a->hooks.ctx, s);
    return s;
}

static void write_done(void *ctx, const struct node_write_result *r)
{
    struct write_wait *ww = ctx;
    struct api_conn *c = ww->conn;
    if (c->closing) {
        free(ww);
        conn_unref(c);
        return;
    }
    if (r->code != 0) {
        conn_send_error(c, http_status_of(r->code), r->err.msg);
    } else {
        conn_send_json(c, 200,
                       json_pack("{s:b,s:s,s:s,s:s,s:s,s:I,s:I}", "ok", 1, "type", ww->type,
                                 "id", ww->id, "origin", r->ref.origin, "lane",
                                 lane_name(r->ref.lane), "seq", (json_int_t)r->ref.seq, "hlc",
                                 (json_int_t)r->hlc));
    }
    free(ww);
    conn_request_done(c);
    conn_unref(c);
}

/* Ends the request itself, on every path: at once when refused, in
 * write_done after the group commit otherwise. */
static void handle_write(struct api_conn *c, const char *type, const char *id, bool membership)
{
    json_error_t jerr;
    json_t *root = json_loadb(c->body != NULL ? c->body : "", c->body_len, 0, &jerr);
    struct validate_field fields[TS_WRITES_PER_ENTRY_MAX];
    char msg[300];
    size_t n = 0;

    if (root == NULL || !json_is_object(root)) {
        snprintf(msg, sizeof(msg), "body must be a JSON object: %s",
                 root == NULL ? jerr.text : "not an object");
        json_decref(root);
        conn_send_error(c, 400, msg);
        conn_request_done(c);
        return;
    }
    json_t *jfields = json_object_get(root, "fields");
    json_t *jreason = json_object_get(root, "reason");
    json_t *juser = json_object_get(root, "user");
    if (!json_is_object(jfields) || (jreason != NULL && !json_is_string(jreason)) ||
        (juser != NULL && !json_is_string(juser))) {
        json_decref(root);
        conn_send_error(c, 400,
                        "body must be {\"fields\": {name: string, ...}, \"reason\": string, "
                        "\"user\": string}");
        conn_request_done(c);
        return;
    }
    const char *key;
    json_t *value;
    json_object_foreach(jfields, key, value) {
        if (n == TS_WRITES_PER_ENTRY_MAX) {
            json_decref(root);
            conn_send_error(c, 400, "too many fields in one write (at most 64)");
            conn_request_done(c);
            return;
        }
        if (!json_is_string(value)) {
            snprintf(msg, sizeof(msg), "field '%.40s': the value must be a JSON string", key);
            json_decref(root);
            conn_send_error(c, 400, msg);
            conn_request_done(c);
            return;
        }
        fields[n].field = key;
        fields[n].value = json_string_value(value);
        n++;
    }

    struct write_wait *ww = calloc(1, sizeof(*ww));
    if (ww == NULL) {
        json_decref(root);
        conn_send_error(c, 500, "out of memory");
        conn_request_done(c);
        return;
    }
    ww->conn = c;
    snprintf(ww->type, sizeof(ww->type), "%s", type);
    snprintf(ww->id, sizeof(ww->id), "%s", id);

    struct node_write w = {
        .type = type,
        .id = id,
        .fields = fields,
        .n = n,
        .reason = jreason != NULL ? json_string_value(jreason) : NULL,
        .user = juser != NULL ? json_string_value(juser) : NULL,
        .membership = membership,
    };
    struct node_write_result now;
    c->busy = true;
    c->refs++;
    int rc = node_write(c->api->node, &w, write_done, ww, &now);
    json_decref(root);
    if (rc != 0) {
        c->refs--;
        free(ww);
        if (now.verr.msg[0] != '\0') {
            json_t *e = json_pack("{s:o}", "error", json_text(now.verr.msg));
            if (now.verr.field[0] != '\0')
                json_object_set_new(e, "field", json_text(now.verr.field));
            if (now.verr.value[0] != '\0')
                json_object_set_new(e, "value", json_text(now.verr.value));
            if (now.verr.allowed[0] != '\0')
                json_object_set_new(e, "allowed", json_text(now.verr.allowed));
            conn_send_json(c, http_status_of(rc), e);
        } else {
            conn_send_error(c, http_status_of(rc), now.err.msg);
        }
        conn_request_done(c);
    }
    /* Otherwise write_done answers after the group commit. */
}

/* ---- import ------------------------------------------------------------- */

/*
 * POST /v1/import: {"rows": [{"type": T, "id": ID, "fields": {name: value},
 * "reason": R}, ...], "user": U, "reason": R, "dry_run": bool}.  At most
 * TS_IMPORT_ROWS_MAX rows, each to a different record.  Every row is checked
 * (the rules of a single write, against the records as they stand); only when
 * all pass are they written, as one group commit (node_write_many).  A row's
 * own reason wins over the request's.  200 {"ok", "rows", "dry_run"}; 400
 * {"error", "refused", "errors": [{"row", "type", "id", "field", "value",
 * "allowed", "message"}]} with row counted from 0, nothing written.
 */
struct import_wait {
    struct api_conn *conn;
    size_t rows;
    json_t *errors;               /* the refused rows, while validating */
    const struct node_write *ws;  /* while validating */
};

static void import_refused_cb(void *ctx, size_t row, const struct node_write_result *r)
{
    struct import_wait *iw = ctx;
    const char *msg = r->verr.msg[0] != '\0' ? r->verr.msg : r->err.msg;
    json_t *e = json_pack("{s:I,s:s,s:s,s:s}", "row", (json_int_t)row, "type", iw->ws[row].type,
                          "id", iw->ws[row].id, "message", msg);
    if (e == NULL)
        return;
    if (r->verr.field[0] != '\0')
        json_object_set_new(e, "field", json_text(r->verr.field));
    if (r->verr.value[0] != '\0')
        json_object_set_new(e, "value", json_text(r->verr.value));
    if (r->verr.allowed[0] != '\0')
        json_object_set_new(e, "allowed", json_text(r->verr.allowed));
    json_array_append_new(iw->errors, e);
}

static void import_done_cb(void *ctx, const struct node_write_result *r)
{
    struct import_wait *iw = ctx;
    struct api_conn *c = iw->conn;
    if (!c->closing) {
        if (r->code != 0)
            conn_send_error(c, http_status_of(r->code), r->err.msg);
        else
            conn_send_json(c, 200, json_pack("{s:b,s:I,s:b}", "ok", 1, "rows",
                                              (json_int_t)iw->rows, "dry_run", 0));
        conn_request_done(c);
    }
    free(iw);
    conn_unref(c);
}

/* Refuses row `row` of an import before it reaches the node: a malformed row. */
static void import_row_error(json_t *errors, size_t row, const char *msg)
{
    json_array_append_new(errors, json_pack("{s:I,s:s}", "row", (json_int_t)row, "message", msg));
}

static void handle_import(struct api_conn *c)
{
    json_error_t jerr;
    json_t *root = json_loadb(c->body != NULL ? c->body : "", c->body_len, 0, &jerr);
    struct node_write *ws = NULL;
    struct validate_field *fields = NULL;
    struct import_wait *iw = NULL;
    json_t *errors = NULL;
    char msg[300];

    json_t *jrows = root != NULL ? json_object_get(root, "rows") : NULL;
    json_t *juser = root != NULL ? json_object_get(root, "user") : NULL;
    json_t *jreason = root != NULL ? json_object_get(root, "reason") : NULL;
    json_t *jdry = root != NULL ? json_object_get(root, "dry_run") : NULL;
    if (!json_is_array(jrows) || (juser != NULL && !json_is_string(juser)) ||
        (jreason != NULL && !json_is_string(jreason)) || (jdry != NULL && !json_is_boolean(jdry))) {
        snprintf(msg, sizeof(msg),
                 "body must be {\"rows\": [{\"type\", \"id\", \"fields\", \"reason\"}, ...], "
                 "\"user\": string, \"reason\": string, \"dry_run\": bool}%s%s",
                 root == NULL ? ": " : "", root == NULL ? jerr.text : "");
        conn_send_error(c, 400, msg);
        goto out_done;
    }
    size_t count = json_array_size(jrows);
    if (count == 0 || count > TS_IMPORT_ROWS_MAX) {
        snprintf(msg, sizeof(msg), "an import request holds 1 to %d rows, not %zu",
                 TS_IMPORT_ROWS_MAX, count);
        conn_send_error(c, 400, msg);
        goto out_done;
    }

    /* One flat array of fields for every row: count them first. */
    size_t total_fields = 0;
    size_t i;
    json_t *row;
    json_array_foreach(jrows, i, row) {
        json_t *jf = json_object_get(row, "fields");
        if (json_is_object(jf))
            total_fields += json_object_size(jf);
    }
    ws = calloc(count, sizeof(*ws));
    fields = calloc(total_fields > 0 ? total_fields : 1, sizeof(*fields));
    errors = json_array();
    if (ws == NULL || fields == NULL || errors == NULL) {
        conn_send_error(c, 500, "out of memory");
        goto out_done;
    }
    const char *user = juser != NULL ? json_string_value(juser) : NULL;
    const char *reason = jreason != NULL ? json_string_value(jreason) : NULL;
    size_t used = 0;
    json_array_foreach(jrows, i, row) {
        json_t *jtype = json_object_get(row, "type"), *jid = json_object_get(row, "id");
        json_t *jf = json_object_get(row, "fields"), *jr = json_object_get(row, "reason");
        if (!json_is_object(row) || !json_is_string(jtype) || !json_is_string(jid) ||
            !json_is_object(jf) || (jr != NULL && !json_is_string(jr))) {
            import_row_error(errors, i,
                             "a row is {\"type\": string, \"id\": string, \"fields\": {name: "
                             "string, ...}, \"reason\": string}");
            continue;
        }
        if (json_object_size(jf) > TS_WRITES_PER_ENTRY_MAX) {
            snprintf(msg, sizeof(msg), "too many fields in one row (at most %d)",
                     TS_WRITES_PER_ENTRY_MAX);
            import_row_error(errors, i, msg);
            continue;
        }
        struct node_write *w = &ws[i];
        w->type = json_string_value(jtype);
        w->id = json_string_value(jid);
        w->fields = &fields[used];
        w->reason = jr != NULL ? json_string_value(jr) : reason;
        w->user = user;
        const char *key;
        json_t *value;
        bool ok = true;
        json_object_foreach(jf, key, value) {
            if (!json_is_string(value)) {
                snprintf(msg, sizeof(msg), "field '%.40s': the value must be a JSON string", key);
                import_row_error(errors, i, msg);
                ok = false;
                break;
            }
            fields[used].field = key;
            fields[used].value = json_string_value(value);
            used++;
            w->n++;
        }
        if (!ok)
            continue;
    }
    assert(used <= total_fields);
    if (json_array_size(errors) > 0) {
        size_t refused = json_array_size(errors);
        snprintf(msg, sizeof(msg), "%zu of %zu rows are malformed; nothing written", refused,
                 count);
        conn_send_json(c, 400, json_pack("{s:s,s:I,s:O}", "error", msg, "refused",
                                         (json_int_t)refused, "errors", errors));
        goto out_done;
    }

    iw = calloc(1, sizeof(*iw));
    if (iw == NULL) {
        conn_send_error(c, 500, "out of memory");
        goto out_done;
    }
    iw->conn = c;
    iw->rows = count;
    iw->errors = errors;
    iw->ws = ws;
    bool dry_run = json_is_true(jdry);
    struct node_write_result now;
    c->busy = true;
    c->refs++;
    int rc = node_write_many(c->api->node, ws, count, dry_run, import_refused_cb, import_done_cb,
                             iw, &now);
    if (rc == 0 && !dry_run) {
        /* import_done_cb answers after the group commit (it may have already). */
        iw = NULL;
        goto out_free;
    }
    c->refs--;
    if (rc == 0) {
        conn_send_json(c, 200, json_pack("{s:b,s:I,s:b}", "ok", 1, "rows", (json_int_t)count,
                                          "dry_run", 1));
    } else if (json_array_size(errors) > 0) {
        size_t refused = json_array_size(errors);
        snprintf(msg, sizeof(msg), "%zu of %zu rows refused; nothing written", refused, count);
        conn_send_json(c, 400, json_pack("{s:s,s:I,s:O}", "error", msg, "refused",
                                         (json_int_t)refused, "errors", errors));
    } else {
        conn_send_error(c, http_status_of(rc), now.err.msg);
    }

out_done:
    conn_request_done(c);
out_free:
    free(iw);
    json_decref(errors);
    free(fields);
    free(ws);
    json_decref(root);
}

/*
 * POST /v1/backup {"path": "/absolute/new/dir"}: a RocksDB checkpoint of the
 * store into a directory that must not exist yet, written by this process
 * (so with its user and into a place it may write).  It runs on the loop:
 * the table files are hard-linked (copied across file systems) after the
 * memtables are flushed, which takes milliseconds to a few seconds, and
 * peer sessions and writes wait meanwhile (their timeouts are far longer).
 * The copy holds every write committed before the request; the caller
 * verifies it (trialsync backup opens it read-only and runs verify's checks).
 */
static void handle_backup(struct api_conn *c)
{
    struct node *n = c->api->node;
    json_error_t jerr;
    json_t *root = json_loadb(c->body != NULL ? c->body : "", c->body_len, 0, &jerr);
    json_t *jpath = root != NULL ? json_object_get(root, "path") : NULL;
    if (!json_is_string(jpath)) {
        json_decref(root);
        conn_send_error(c, 400, "body must be {\"path\": \"/absolute/path/of/a/new/directory\"}");
        return;
    }
    const char *path = json_string_value(jpath);
    if (path[0] != '/' || strlen(path) > API_BACKUP_PATH_BYTES_MAX) {
        json_decref(root);
        conn_send_error(c, 400, "path must be absolute and at most 1024 bytes");
        return;
    }
    uint64_t t0 = node_now_ms();
    struct ts_error err = {0};
    int rc = node_flush(n);
    if (rc == 0)
        rc = store_checkpoint(n->store, path, &err);
    else
        ts_error_set(&err, rc, "cannot commit the pending writes first: %s", ts_strerror(rc));
    if (rc != 0) {
        json_decref(root);
        conn_send_error(c, rc == TS_ERR_EXISTS || rc == TS_ERR_INVALID ? 400 : 500, err.msg);
        return;
    }
    struct store_stats st;
    store_stats(n->store, &st);
    trace(TRACE_INFO, "backup: store checkpoint written to %s (%" PRIu64 " entries, %" PRIu64
          " ms)", path, st.entries, node_now_ms() - t0);
    conn_send_json(c, 200, json_pack("{s:s,s:s,s:I,s:I,s:I}", "node", n->cfg.id, "path", path,
                                     "entries", (json_int_t)st.entries, "elapsed_ms",
                                     (json_int_t)(node_now_ms() - t0), "store_format",
                                     (json_int_t)store_format_version()));
    json_decref(root);
}

/* Splits "/v1/records/TYPE/ID[/history]"; false when the path is not that. */
static bool parse_record_path(char *path, char **type, char **id, bool *history)
{
    const char prefix[] = "/v1/records/";
    if (strncmp(path, prefix, sizeof(prefix) - 1) != 0)
        return false;
    *type = path + sizeof(prefix) - 1;
    char *slash = strchr(*type, '/');
    if (slash == NULL || slash == *type)
        return false;
    *slash = '\0';
    *id = slash + 1;
    /* Visit ids contain '/': the history suffix is recognised at the end. */
    *history = false;
    size_t id_len = strlen(*id);
    const char suffix[] = "/history";
    if (id_len > sizeof(suffix) - 1 &&
        strcmp(*id + id_len - (sizeof(suffix) - 1), suffix) == 0) {
        (*id)[id_len - (sizeof(suffix) - 1)] = '\0';
        *history = true;
    }
    return **id != '\0' && strlen(*type) <= TS_TYPE_BYTES_MAX && strlen(*id) <= TS_ID_BYTES_MAX;
}

/* Compares a given token with the node's in constant time. */
static bool token_matches(const struct api *a, const char *given, size_t given_len)
{
    if (given_len != a->token_len)
        return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < given_len; i++)
        diff |= (unsigned char)(given[i] ^ a->token[i]);
    return diff == 0;
}

/* The value of cookie `name` in a Cookie header, or NULL. */
static const char *cookie_value(const char *header, size_t header_len, const char *name,
                                size_t *len)
{
    size_t nl = strlen(name);
    size_t i = 0;
    while (i < header_len) {
        while (i < header_len && (header[i] == ' ' || header[i] == ';'))
            i++;
        size_t start = i;
        while (i < header_len && header[i] != ';')
            i++;
        if (i - start > nl && memcmp(header + start, name, nl) == 0 && header[start + nl] == '=') {
            *len = i - start - nl - 1;
            return header + start + nl + 1;
        }
    }
    return NULL;
}

/* A request is authorized by "Authorization: Bearer <token>" or the
 * dashboard's ts_token cookie holding the same token. */
static bool authorized(struct api_conn *c)
{
    const char prefix[] = "Bearer ";
    struct api *a = c->api;
    if (c->auth_len >= sizeof(prefix) - 1 && strncmp(c->auth, prefix, sizeof(prefix) - 1) == 0)
        return token_matches(a, c->auth + sizeof(prefix) - 1, c->auth_len - (sizeof(prefix) - 1));
    size_t len = 0;
    const char *v = cookie_value(c->cookie, c->cookie_len, "ts_token", &len);
    return v != NULL && token_matches(a, v, len);
}

static void dispatch(struct api_conn *c)
{
    struct http_parser_url u;
    char path[API_URL_BYTES_MAX + 1];
    char query[API_URL_BYTES_MAX + 1] = "";
    enum http_method method = (enum http_method)c->parser.method;

    c->keep_alive = http_should_keep_alive(&c->parser) != 0;
    c->url[c->url_len] = '\0';
    http_parser_url_init(&u);
    if (http_parser_parse_url(c->url, c->url_len, 0, &u) != 0 || !(u.field_set & (1 << UF_PATH))) {
        conn_send_error(c, 400, "malformed URL");
        conn_request_done(c);
        return;
    }
    memcpy(path, c->url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    path[u.field_data[UF_PATH].len] = '\0';
    if (u.field_set & (1 << UF_QUERY)) {
        memcpy(query, c->url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
        query[u.field_data[UF_QUERY].len] = '\0';
    }

    if (strcmp(path, "/healthz") == 0 && method == HTTP_GET) {
        bool low = node_disk_low(c->api->node, NULL);
        conn_send_json(c, 200, json_pack("{s:s,s:s,s:b}", "status", "ok", "node",
                                         c->api->node->cfg.id, "accepting_writes", !low));
        conn_request_done(c);
        return;
    }
    if (strcmp(path, "/dashboard") == 0 && method == HTTP_GET) {
        handle_dashboard(c, query);
        conn_request_done(c);
        return;
    }
    if (!authorized(c)) {
        conn_send_error(c, 401,
                        "missing or wrong API token: send 'Authorization: Bearer <token>' "
                        "with the content of the node's token file");
        conn_request_done(c);
        return;
    }

    const char *file = NULL, *file_type = NULL;
    size_t file_len = 0;
    if (method == HTTP_GET && dashboard_file(path, &file, &file_len, &file_type)) {
        conn_send(c, 200, file_type, file, file_len);
        conn_request_done(c);
        return;
    }

    char *type, *id;
    bool history;
    if (parse_record_path(path, &type, &id, &history)) {
        if (method == HTTP_POST && !history) {
            handle_write(c, type, id, false);
            return;  /* handle_write ends the request */
        }
        if (method == HTTP_GET) {
            if (history)
                handle_history(c, type, id);
            else
                handle_get(c, type, id);
        } else {
            conn_send_error(c, 405, "use GET to read a record, POST to write one");
        }
    } else if (strcmp(path, "/v1/import") == 0 && method == HTTP_POST) {
        handle_import(c);
        return;  /* handle_import ends the request */
    } else if (strcmp(path, "/v1/backup") == 0 && method == HTTP_POST) {
        handle_backup(c);
    } else if (strcmp(path, "/v1/crl") == 0 && method == HTTP_POST) {
        /* The trial's revocation list, to replicate to every node: body
         * {"fields": {"pem": PEM, "number": N}, "reason": ..., "user": ...}. */
        handle_write(c, SCHEMA_CRL_TYPE, SCHEMA_CRL_ID, true);
        return;
    } else if (strncmp(path, "/v1/members/", 12) == 0 && method == HTTP_POST) {
        if (strlen(path + 12) > TS_ID_BYTES_MAX) {
            conn_send_error(c, 400, "site id too long");
        } else {
            handle_write(c, MEMBER_TYPE, path + 12, true);
            return;
        }
    } else if (method != HTTP_GET) {
        conn_send_error(c, 405, "only GET is allowed here");
    } else if (strcmp(path, "/v1/records") == 0) {
        handle_records(c, query);
    } else if (strcmp(path, "/v1/conflicts") == 0) {
        handle_conflicts(c);
    } else if (strcmp(path, "/v1/status") == 0) {
        handle_status(c);
    } else if (strcmp(path, "/v1/digest") == 0) {
        handle_digest(c);
    } else if (strcmp(path, "/v1/saes") == 0) {
        conn_send_json(c, 200, saes_json(c->api));
    } else if (strcmp(path, "/metrics") == 0) {
        handle_metrics(c);
    } else {
        struct api_response res = {0};
        if (c->api->hooks.route != NULL &&
            c->api->hooks.route(c->api->hooks.ctx, path, query, &res) == 1) {
            conn_send(c, res.status, res.content_type, res.body != NULL ? res.body : "",
                      res.len);
            free(res.body);
        } else {
            conn_send_error(c, 404, "no such endpoint");
        }
    }
    conn_request_done(c);
}

/* ---- http-parser callbacks ---------------------------------------------- */

static int on_message_begin(http_parser *p)
{
    struct api_conn *c = p->data;
    c->url_len = 0;
    c->auth_len = 0;
    c->cookie_len = 0;
    c->header_name_len = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct api_conn *c = p->data;
    if (c->url_len + len > API_URL_BYTES_MAX)
        return 1;
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct api_conn *c = p->data;
    if (c->header_is_auth || c->header_is_cookie || c->header_name_len == (size_t)-1)
        c->header_name_len = 0;
    c->header_is_auth = false;
    c->header_is_cookie = false;
    if (c->header_name_len + len > API_HEADER_NAME_BYTES_MAX) {
        c->header_name_len = API_HEADER_NAME_BYTES_MAX;  /* too long to be one we read */
        return 0;
    }
    memcpy(c->header_name + c->header_name_len, at, len);
    c->header_name_len += len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct api_conn *c = p->data;
    /* header_name_len == (size_t)-1: more of a value already classified as
     * one we do not read (a value can arrive split across reads). */
    if (!c->header_is_auth && !c->header_is_cookie && c->header_name_len == (size_t)-1)
        return 0;
    if (!c->header_is_auth && !c->header_is_cookie) {
        c->header_name[c->header_name_len] = '\0';
        c->header_is_auth = strcasecmp(c->header_name, "authorization") == 0;
        c->header_is_cookie = strcasecmp(c->header_name, "cookie") == 0;
        c->header_name_len = 0;
        if (c->header_is_auth)
            c->auth_len = 0;
        else if (c->header_is_cookie)
            c->cookie_len = 0;
        else
            c->header_name_len = (size_t)-1;  /* next field starts a new name */
    }
    if (c->header_is_auth) {
        if (c->auth_len + len >= sizeof(c->auth))
            return 1;
        memcpy(c->auth + c->auth_len, at, len);
        c->auth_len += len;
    } else if (c->header_is_cookie) {
        if (c->cookie_len + len >= sizeof(c->cookie))
            return 1;
        memcpy(c->cookie + c->cookie_len, at, len);
        c->cookie_len += len;
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct api_conn *c = p->data;
    c->header_name_len = 0;
    c->header_is_auth = false;
    c->header_is_cookie = false;
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct api_conn *c = p->data;
    if (c->body_len + len > TS_HTTP_REQUEST_BYTES_MAX)
        return 1;
    char *nb = realloc(c->body, c->body_len + len + 1);
    if (nb == NULL)
        return 1;
    c->body = nb;
    memcpy(c->body + c->body_len, at, len);
    c->body_len += len;
    c->body[c->body_len] = '\0';
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct api_conn *c = p->data;
    c->message_done = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- connections -------------------------------------------------------- */

static void api_maybe_free(struct api *a)
{
    if (a->stopping && a->listener_closed && a->connections == 0)
        free(a);
}

/* Drops one reference: the open handle, or a write waiting for its commit. */
static void conn_unref(struct api_conn *c)
{
    struct api *a = c->api;
    assert(c->refs > 0);
    if (--c->refs > 0)
        return;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    a->connections--;
    free(c->body);
    free(c->leftover);
    free(c);
    api_maybe_free(a);
}

static void conn_closed_cb(uv_handle_t *h)
{
    conn_unref(container_of((uv_tcp_t *)h, struct api_conn, tcp));
}

static void conn_close(struct api_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, conn_closed_cb);
}

static void conn_shutdown_cb(uv_shutdown_t *req, int status)
{
    struct api_conn *c = container_of(req, struct api_conn, shutdown_req);
    (void)status;
    conn_close(c);
    conn_unref(c);
}

/*
 * Ends a connection after its last response: the write side is shut down
 * once every queued write has gone out (libuv completes them first), then
 * the handle is closed.  Closing at once would drop what the kernel had not
 * yet taken, cutting large answers short.
 */
static void conn_finish(struct api_conn *c)
{
    if (c->closing || c->shutting_down)
        return;
    c->shutting_down = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->refs++;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, conn_shutdown_cb) != 0) {
        c->refs--;
        conn_close(c);
    }
}

static void conn_feed(struct api_conn *c, const char *data, size_t len)
{
    while (len > 0 && !c->closing && !c->shutting_down) {
        if (c->busy) {
            /* Pipelined bytes wait until this request is answered. */
            if (c->leftover_len + len > TS_HTTP_REQUEST_BYTES_MAX) {
                conn_close(c);
                return;
            }
            char *nl = realloc(c->leftover, c->leftover_len + len);
            if (nl == NULL) {
                conn_close(c);
                return;
            }
            memcpy(nl + c->leftover_len, data, len);
            c->leftover = nl;
            c->leftover_len += len;
            return;
        }
        c->request_bytes += len;
        size_t used = http_parser_execute(&c->parser, &parser_settings, data, len);
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e != HPE_OK && e != HPE_PAUSED) {
            c->keep_alive = false;
            if (e == HPE_CB_body || e == HPE_CB_url || e == HPE_CB_header_value)
                conn_send_error(c, 413, "request too large");
            else
                conn_send_error(c, 400, http_errno_description(e));
            conn_close(c);
            return;
        }
        if (c->request_bytes > TS_HTTP_REQUEST_BYTES_MAX && !c->message_done) {
            c->keep_alive = false;
            conn_send_error(c, 413, "request too large");
            conn_close(c);
            return;
        }
        data += used;
        len -= used;
        if (c->message_done) {
            c->message_done = false;
            c->busy = true;
            dispatch(c);
        } else if (used == 0) {
            break;
        }
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(suggested);
    buf->len = buf->base != NULL ? suggested : 0;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct api_conn *c = container_of((uv_tcp_t *)s, struct api_conn, tcp);
    if (nread < 0) {
        if (!c->closing)
            conn_close(c);
    } else if (nread > 0) {
        conn_feed(c, buf->base, (size_t)nread);
    }
    free(buf->base);
}

static void accept_cb(uv_stream_t *server, int status)
{
    struct api *a = container_of((uv_tcp_t *)server, struct api, listener);
    if (status < 0 || a->stopping)
        return;
    struct api_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    uv_tcp_init(server->loop, &c->tcp);
    c->api = a;
    c->refs = 1;
    c->next = a->conns;
    if (a->conns != NULL)
        a->conns->prev = c;
    a->conns = c;
    a->connections++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        a->connections > TS_API_CONNECTIONS_MAX) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

static int load_token(struct api *a, const char *path, struct ts_error *err)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = crypto_check_secret_file(path, err);
    if (rc != 0)
        return rc;
    rc = pki_read_file(path, &buf, &len, err);
    if (rc != 0)
        return rc;
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
        len--;
    if (len < 16 || len > API_TOKEN_BYTES_MAX) {
        free(buf);
        return ts_error_set(err, TS_ERR_CONFIG,
                            "API token in %s must be 16 to 256 characters", path);
    }
    memcpy(a->token, buf, len);
    a->token[len] = '\0';
    a->token_len = len;
    free(buf);
    return 0;
}

/* The notAfter of the PEM certificate in path; 0 when it cannot be read
 * (the node checked its certificates at start: this only feeds status). */
static int64_t cert_not_after(const char *path)
{
    char *pem = NULL;
    size_t len = 0;
    int64_t not_before_s = 0, not_after_s = 0;
    struct ts_error err = {0};
    if (pki_read_file(path, &pem, &len, &err) != 0)
        return 0;
    if (pki_cert_validity(pem, len, &not_before_s, &not_after_s, &err) != 0)
        not_after_s = 0;
    free(pem);
    return not_after_s;
}

int api_start(struct api **out, struct node *n, const struct api_hooks *hooks,
              struct ts_error *err)
{
    struct api *a = calloc(1, sizeof(*a));
    struct sockaddr_storage addr;
    int rc;

    if (a == NULL)
        return ts_error_set(err, TS_ERR_NOMEM, "out of memory");
    a->node = n;
    if (hooks != NULL)
        a->hooks = *hooks;
    rc = load_token(a, n->cfg.token_file, err);
    if (rc != 0) {
        free(a);
        return rc;
    }
    a->cert_not_after_s = cert_not_after(n->cfg.cert);
    a->ca_not_after_s = cert_not_after(n->cfg.ca);
    if (uv_ip4_addr(n->cfg.api.host, n->cfg.api.port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(n->cfg.api.host, n->cfg.api.port, (struct sockaddr_in6 *)&addr) != 0) {
        free(a);
        return ts_error_set(err, TS_ERR_CONFIG, "[api] listen: '%s' is not an IP address",
                            n->cfg.api.host);
    }
    uv_tcp_init(n->loop, &a->listener);
    rc = uv_tcp_bind(&a->listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&a->listener, 128, accept_cb);
    if (rc != 0) {
        ts_error_set(err, TS_ERR_CONFIG, "cannot listen for the API on %s:%u: %s%s",
                     n->cfg.api.host, n->cfg.api.port, uv_strerror(rc),
                     rc == UV_EADDRINUSE ? " (is another node running with this config?)" : "");
        a->stopping = true;
        uv_close((uv_handle_t *)&a->listener, listener_closed_cb);
        return TS_ERR_CONFIG;
    }
    *out = a;
    return 0;
}

static void listener_closed_cb(uv_handle_t *h)
{
    struct api *a = container_of((uv_tcp_t *)h, struct api, listener);
    a->listener_closed = true;
    api_maybe_free(a);
}

void api_stop(struct api *a)
{
    if (a == NULL || a->stopping)
        return;
    a->stopping = true;
    for (struct api_conn *c = a->conns; c != NULL; c = c->next)
        if (!c->closing)
            conn_close(c);
    uv_close((uv_handle_t *)&a->listener, listener_closed_cb);
}
