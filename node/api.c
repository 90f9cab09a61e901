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
 * While READING, a connection is in one of three phases, each with its own
 * deadline (conn_arm; api_tick_cb closes what is overdue): HEADERS (from
 * accept, or from a request's first byte, to the end of its headers), BODY
 * (headers complete to message complete) and IDLE (between keep-alive
 * requests).  A BUSY connection has no deadline: the node is answering.
 * Credentials are checked in on_headers_complete: an unauthenticated request
 * with a body is answered 401 and the connection finished there, before any
 * of the body is read.  accept_cb enforces the connection caps (conn_admit).
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
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "../proto/codec.h"
#include "crypto.h"
#include "dashboard.h"
#include "enroll_node.h"
#include "esign.h"
#include "sysquery.h"
#include "lockview.h"
#include "merge.h"
#include "metrics.h"
#include "pki.h"
#include "procstat.h"
#include "session.h"
#include "trace.h"
#include "users.h"
#include "util.h"
#include "validate.h"
#include "version.h"

#define API_URL_BYTES_MAX 2048
#define API_TOKEN_BYTES_MAX 256
#define API_HEADER_NAME_BYTES_MAX 64
/* The Cookie header: the dashboard's session cookie and a browser's others. */
#define API_COOKIE_BYTES_MAX 2048
/* X-CSRF-Token, Content-Type, Origin and Host: a CSRF token is 64 hex
 * digits, an origin or host a scheme and a name; a longer value is refused. */
#define API_SMALL_HEADER_BYTES_MAX 256
/* A backup target path: far above any real one, far below PATH_MAX. */
#define API_BACKUP_PATH_BYTES_MAX 1024
/* What conn_read_first takes at accept: a request line and headers of the
 * CLI, a browser or a scraper (a browser's cookies included) fit. */
#define API_FIRST_READ_BYTES 4096
/* One socket read: libuv's usual 64 KiB. */
#define API_READ_BYTES (64 * 1024)
/* Connections judge_unread reads for one newcomer over a cap: a whole
 * per-address cap, and a bound on the system calls a flood can cause. */
#define API_ADMIT_READS_MAX API_CONNECTIONS_PER_ADDR_MAX
/* Connections accepted per loop iteration: enough for any real burst of
 * clients, few enough that reads and closes run between bursts of a flood. */
#define API_ACCEPTS_PER_WAKEUP_MAX 16u
/* A sign-in body ({"token": "USER:SECRET"}) is read before any credential
 * is known, so it is held to far less than an ordinary request. */
#define API_SIGNIN_BODY_BYTES_MAX 1024
/* The cookie naming a dashboard session (session.h); never a token. */
#define API_SESSION_COOKIE "ts_session"

struct api {
    struct node *node;
    uv_tcp_t listener;
    uv_timer_t tick;          /* deadlines: api_tick_cb */
    uv_prepare_t accept_resume; /* accept_resume_cb, before each poll */
    unsigned accepts_this_wakeup;
    bool accept_pending;      /* libuv holds an accepted socket for us */
    char token[API_TOKEN_BYTES_MAX + 1];
    size_t token_len;
    struct api_hooks hooks;
    struct users *users;      /* people's tokens, checked against their records */
    struct session_table sessions;   /* the dashboard's signed-in browsers */
    uint64_t session_requests_refused; /* cookie requests without CSRF token, JSON or Origin */
    size_t connections;       /* allocated, closing ones included */
    size_t connections_open;  /* not closing: what the caps count */
    struct api_conn *conns;   /* every connection, newest first */
    bool stopping;
    bool listener_closed;
    bool tick_closed;
    bool accept_resume_closed;
    /* What the abuse bounds did, for status (GET /v1/status "api"). */
    uint64_t evicted;         /* closed to admit a newcomer over a cap */
    uint64_t refused_full;    /* answered 503: every slot in an authenticated request */
    uint64_t timed_out;       /* headers, body or idle deadline passed */
    uint64_t refused_unauth_body; /* 401 at the headers, body never read */
    bool read_buf_lent;       /* alloc_cb gave read_buf out, read_cb has not returned */
    char read_buf[API_READ_BYTES];
    /* notAfter of the certificates the node started with (0: unreadable):
     * a renewed certificate takes effect, and shows here, at restart. */
    int64_t cert_not_after_s;
    int64_t ca_not_after_s;
};

/* The headers read besides Authorization and Cookie, for the dashboard's writes. */
enum api_header {
    API_HEADER_NONE,
    API_HEADER_CSRF,           /* X-CSRF-Token */
    API_HEADER_CONTENT_TYPE,
    API_HEADER_ORIGIN,
    API_HEADER_HOST,
    API_HEADER_COUNT
};

struct api_conn {
    uv_tcp_t tcp;
    struct api *api;
    struct api_conn *next, *prev;
    struct sockaddr_storage addr;   /* the client's; family AF_UNSPEC when unknown */
    uint64_t deadline_ms;           /* uv_now time it is closed at; 0: none */
    uint64_t accepted_ms;           /* uv_now time of accept */
    bool read_any;                  /* a byte of it was read */
    bool authed;                    /* this request's headers carried valid credentials */
    bool proven;                    /* some request of it did (conn_admit's priority) */
    bool body_refused;              /* unauthenticated with a body: 401 at the headers */
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
    enum api_header header_small;   /* which small header's value is being read */
    char small[API_HEADER_COUNT][API_SMALL_HEADER_BYTES_MAX + 1];
    size_t small_len[API_HEADER_COUNT];
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
    /* Who the request comes from, set by authorized(). */
    enum { WHO_NOBODY, WHO_INTEGRATION, WHO_USER } who;
    struct users_principal user;
    /* The dashboard session that authenticated this request (its cookie),
     * or NULL; valid until the request ends. */
    struct session *session;
    char refused_why[128];   /* why a user token was refused, for the 401 */
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
static void conn_arm(struct api_conn *c, uint32_t timeout_ms);

void api_format_time(uint64_t ms, char *out, size_t cap)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%03uZ", base, (unsigned)(ms % 1000));
}

void api_hlc_text(uint64_t hlc, char out[API_HLC_TEXT_BYTES])
{
    snprintf(out, API_HLC_TEXT_BYTES, "%llu", (unsigned long long)hlc);
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
    memset(c->small_len, 0, sizeof(c->small_len));
    c->session = NULL;
    c->request_bytes = 0;
    c->message_done = false;
    c->authed = false;
    if (c->closing)
        return;
    conn_arm(c, API_IDLE_TIMEOUT_MS);
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

/* A value as the API shows it: a user's secret hash never leaves the node. */
static const char *shown_value(const char *type, const char *field, const char *value)
{
    const struct schema_field *f = schema_field(type, field);
    return f != NULL && f->kind == KIND_SECRET ? "(salted hash, not shown)" : value;
}

static json_t *write_json(const char *type, const char *field, const struct live_write *lw)
{
    char t[40];
    api_format_time(lw->hlc >> HLC_LOGICAL_BITS, t, sizeof(t));
    return json_pack("{s:s,s:s,s:s,s:I,s:s}", "value", shown_value(type, field, lw->value),
                     "origin", lw->ref.origin,
                     "lane", lane_name(lw->ref.lane), "seq", (json_int_t)lw->ref.seq,
                     "time", t);
}

static void history_who(struct store *s, const char *user, json_t *ver);

/*
 * One message of an append-only thread as a person reads it: the text, who
 * wrote it (the entry's user, with the role of their account or the person an
 * integration acted for: history_who), on which node, and when (the entry's
 * HLC time, UTC).  The author is "" when the entry is not held here (it always is:
 * a live write comes from an entry this node applied).
 */
static json_t *message_json(struct store *store, const struct live_write *lw)
{
    char t[40];
    api_format_time(lw->hlc >> HLC_LOGICAL_BITS, t, sizeof(t));
    struct entry e;
    memset(&e, 0, sizeof(e));
    bool held = store_entry_get(store, &lw->ref, &e, NULL) == 0;
    json_t *m = json_pack("{s:s,s:s,s:s,s:s,s:I}", "text", lw->value, "author",
                          held ? e.user : "", "node", lw->ref.origin, "time", t, "seq",
                          (json_int_t)lw->ref.seq);
    if (held) {
        history_who(store, e.user, m);
        entry_release(&e);
    }
    return m;
}

/* The workflow (rank) fields of a record, whose losing writes make the
 * other writes of their entries stale (merge_write_lost). */
#define API_WORKFLOW_FIELDS_MAX 2

struct get_ctx {
    const char *type;
    struct store *store;
    json_t *fields;
    const char *workflow[API_WORKFLOW_FIELDS_MAX];
    struct field_state workflow_st[API_WORKFLOW_FIELDS_MAX];
    size_t workflow_count;
};

/* Reads the record's workflow fields' states into g. */
static int get_workflow_load(struct get_ctx *g, const char *id)
{
    const struct schema_type *t = schema_type_find(g->type);
    if (t == NULL)
        return 0;
    for (size_t i = 0; i < t->count && g->workflow_count < API_WORKFLOW_FIELDS_MAX; i++) {
        if (t->fields[i].policy != MERGE_POLICY_RANK)
            continue;
        size_t k = g->workflow_count;
        int rc = store_field_get(g->store, g->type, id, t->fields[i].name, &g->workflow_st[k]);
        if (rc != 0)
            return rc;
        g->workflow[k] = t->fields[i].name;
        g->workflow_count++;
    }
    return 0;
}

static void get_workflow_release(struct get_ctx *g)
{
    for (size_t i = 0; i < g->workflow_count; i++)
        field_state_release(&g->workflow_st[i]);
    g->workflow_count = 0;
}

/* The workflow field whose losing write ref's entry made, or NULL. */
static const char *get_stale_by(const struct get_ctx *g, const char *field,
                                const struct entry_ref *ref, int *lost_index)
{
    for (size_t i = 0; i < g->workflow_count; i++) {
        const struct field_state *ws = &g->workflow_st[i];
        if (strcmp(g->workflow[i], field) == 0)
            continue;
        if (!merge_write_lost(g->type, g->workflow[i], ws, ref))
            continue;
        for (size_t k = 0; k < ws->live_count; k++) {
            if (strcmp(ws->live[k].ref.origin, ref->origin) == 0
                && ws->live[k].ref.lane == ref->lane && ws->live[k].ref.seq == ref->seq)
                *lost_index = (int)k;
        }
        return g->workflow[i];
    }
    return NULL;
}

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
        json_t *thread = json_array();
        for (size_t k = 0; k < st->live_count; k++) {
            json_array_append_new(all, json_string(st->live[k].value));
            json_array_append_new(thread, message_json(g->store, &st->live[k]));
        }
        json_object_set_new(f, "value", all);
        json_object_set_new(f, "thread", thread);
    } else {
        json_object_set_new(f, "value", json_string(shown_value(g->type, field,
                                                                st->live[i].value)));
    }
    /* A value written with a workflow state that lost to a final one: its
     * writer had not seen the subject (visit, AE) closed.  Shown, flagged. */
    int lost = -1;
    const char *by = get_stale_by(g, field, &st->live[i].ref, &lost);
    if (by != NULL) {
        conflict = true;
        const struct field_state *ws = NULL;
        for (size_t k = 0; k < g->workflow_count; k++)
            if (strcmp(g->workflow[k], by) == 0)
                ws = &g->workflow_st[k];
        assert(ws != NULL);
        int won = merge_display(g->type, by, ws);
        assert(won >= 0);
        assert(lost >= 0);
        json_object_set_new(f, "stale",
                            json_pack("{s:s,s:s,s:s}", "field", by, "written_with",
                                      ws->live[lost].value, "lost_to", ws->live[won].value));
    }
    json_object_set_new(f, "conflict", json_boolean(conflict));
    if (conflict) {
        json_t *vals = json_array();
        for (size_t k = 0; k < st->live_count; k++)
            json_array_append_new(vals, write_json(g->type, field, &st->live[k]));
        json_object_set_new(f, "values", vals);
    }
    json_object_set_new(g->fields, field, f);
    return 0;
}

struct hidden_ctx {
    struct store *store;
    const struct lock_set *locks;
};

/* sysquery_hidden_fn: a write is out of the displayed record when its entry
 * is quarantined by a lock (lock.h). */
static bool quarantined_write(void *ctx, const struct entry_ref *ref)
{
    const struct hidden_ctx *h = ctx;
    struct entry e;
    memset(&e, 0, sizeof(e));
    if (store_entry_get(h->store, ref, &e, NULL) != 0)
        return false;
    bool out = lock_quarantines(h->locks, &e) != NULL;
    entry_release(&e);
    return out;
}

/*
 * Every system query of a record: the conflicts a person must resolve
 * (sysquery.h), judged on the displayed record (without quarantined edits),
 * then one per quarantined edit (lockview.h), with its state.  NULL on a
 * store error.
 */
static json_t *get_system_queries(struct store *store, const char *type, const char *id,
                                  const json_t *quarantined)
{
    struct lock_set locks = {0};
    struct hidden_ctx h = {.store = store, .locks = &locks};
    char subject[TS_ID_BYTES_MAX + 1];
    bool locked = false;
    if (quarantined != NULL && lock_subject_of(type, id, subject)) {
        if (lockview_load(store, subject, &locks) != 0)
            return NULL;
        locked = locks.count > 0;
    }
    json_t *list = sysquery_list(store, type, id, locked ? quarantined_write : NULL, &h);
    lock_set_release(&locks);
    if (list == NULL)
        return NULL;
    size_t i;
    json_t *q;
    json_array_foreach(quarantined, i, q) {
        const json_t *query = json_object_get(q, "query");
        const char *qid = json_string_value(json_object_get(query, "id"));
        const char *state = json_string_value(json_object_get(query, "state"));
        if (qid == NULL || state == NULL)
            continue;
        char target[TS_TYPE_BYTES_MAX + TS_ID_BYTES_MAX + 2];
        snprintf(target, sizeof(target), "%s/%s", type, id);
        json_array_append_new(list, json_pack("{s:s,s:s,s:s,s:s,s:s,s:O}", "id", qid, "source",
                                              "system", "target", target, "state", state,
                                              "cause", "an edit made without seeing the lock "
                                              "(quarantined)", "entry",
                                              json_object_get(q, "entry")));
    }
    return list;
}

static void handle_get(struct api_conn *c, const char *type, const char *id)
{
    struct get_ctx g = {.type = type, .store = c->api->node->store, .fields = json_object()};
    json_t *locked = NULL, *quarantined = NULL;
    int rc = get_workflow_load(&g, id);
    if (rc == 0)
        rc = lockview_record_fields(c->api->node->store, type, id, get_field_cb, &g, &locked,
                                    &quarantined);
    get_workflow_release(&g);
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
    json_t *out = json_pack("{s:s,s:s,s:o}", "type", type, "id", id, "fields", g.fields);
    json_t *sigs = esign_list(c->api->node->store, type, id);
    if (sigs != NULL)
        json_object_set_new(out, "signatures", sigs);
    json_t *sdv = esign_sdv_list(c->api->node->store, type, id);
    if (sdv != NULL)
        json_object_set_new(out, "sdv", sdv);
    if (locked != NULL)
        json_object_set_new(out, "locked", locked);
    if (quarantined != NULL)
        json_object_set_new(out, "quarantined", quarantined);
    json_t *sys = get_system_queries(c->api->node->store, type, id, quarantined);
    if (sys != NULL)
        json_object_set_new(out, "system_queries", sys);
    conn_send_json(c, 200, out);
}

struct history_ctx {
    struct store *store;
    json_t *versions;
    struct lock_set locks;   /* the record's subject's lock versions (lock.h) */
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

/*
 * Who made a version, as the audit trail shows it: "via" says whether a
 * person signed in ("sign-in", with the role their account holds) or the
 * node's integration credential acted ("integration", for "on_behalf_of").
 */
static void history_who(struct store *s, const char *user, json_t *ver)
{
    const char *on_behalf = NULL;
    if (schema_user_is_integration(user, &on_behalf)) {
        json_object_set_new(ver, "via", json_string("integration"));
        json_object_set_new(ver, "on_behalf_of", json_string(on_behalf));
        return;
    }
    json_object_set_new(ver, "via", json_string("sign-in"));
    struct field_state st;
    if (store_field_get(s, SCHEMA_USER_TYPE, user, "role", &st) != 0)
        return;
    int i = merge_display(SCHEMA_USER_TYPE, "role", &st);
    if (i >= 0)
        json_object_set_new(ver, "role", json_string(st.live[i].value));
    field_state_release(&st);
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
        if (json_is_string(old))
            json_string_set(old, shown_value(e->record_type, fw->field, json_string_value(old)));
        char hlc[API_HLC_TEXT_BYTES];
        api_hlc_text(e->hlc, hlc);
        json_t *ver = json_pack("{s:s,s:s,s:o,s:s,s:s,s:s,s:s,s:s,s:I,s:s,s:s}", "field",
                                fw->field, "new_value",
                                shown_value(e->record_type, fw->field, fw->value), "old_value",
                                old, "user",
                                e->user, "node", e->origin, "reason", e->reason, "event_time",
                                event_t, "entry_time", entry_t, "seq", (json_int_t)e->seq,
                                "hlc", hlc, "lane", lane_name(e->lane));
        history_who(h->store, e->user, ver);
        const struct lock_version *q = lock_quarantines(&h->locks, e);
        if (q != NULL)
            json_object_set_new(ver, "quarantined_by_lock_epoch", json_integer((json_int_t)q->epoch));
        json_array_append_new(h->versions, ver);
    }
    return 0;
}

/* ---- paged lists (api.h: API_PAGE_LIMIT_DEFAULT, ?limit=, ?after=) ------- */

/*
 * The value of parameter name in a query string ("a=1&b=2") into out; false
 * when absent.  *bad is set when the value does not fit cap - 1 bytes or
 * holds a percent escape (no paged parameter needs one: types, site ids,
 * numbers and hex cursors are plain).
 */
static bool query_param(const char *query, const char *name, char *out, size_t cap, bool *bad)
{
    size_t nl = strlen(name);
    const char *p = query;
    assert(cap > 0);
    while (p != NULL && *p != '\0') {
        size_t len = strcspn(p, "&");
        if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t vlen = len - nl - 1;
            if (vlen >= cap || memchr(p + nl + 1, '%', vlen) != NULL) {
                *bad = true;
                return false;
            }
            memcpy(out, p + nl + 1, vlen);
            out[vlen] = '\0';
            return true;
        }
        p = p[len] == '&' ? p + len + 1 : NULL;
    }
    return false;
}

static int hex_digit(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/*
 * A page's limit and cursor from the query: NULL, or why the request is
 * refused (answered 400).  A limit above API_PAGE_LIMIT_MAX is cut to it.
 */
static const char *page_from_query(const char *query, struct store_page *page)
{
    char v[2 * STORE_PAGE_KEY_BYTES_MAX + 1];
    bool bad = false;
    memset(page, 0, sizeof(*page));
    page->limit = API_PAGE_LIMIT_DEFAULT;
    if (query_param(query, "limit", v, sizeof(v), &bad)) {
        char *end = NULL;
        if (v[0] < '0' || v[0] > '9')
            return "limit must be a whole number from 1";
        unsigned long long n = strtoull(v, &end, 10);
        if (*end != '\0' || n == 0)
            return "limit must be a whole number from 1";
        page->limit = n > API_PAGE_LIMIT_MAX ? API_PAGE_LIMIT_MAX : (size_t)n;
    }
    if (bad)
        return "limit is not a number";
    if (query_param(query, "after", v, sizeof(v), &bad)) {
        size_t len = strlen(v);
        if (len % 2 != 0)
            return "after must be the \"next\" cursor of an earlier page";
        for (size_t i = 0; i < len / 2; i++) {
            int hi = hex_digit(v[2 * i]), lo = hex_digit(v[2 * i + 1]);
            if (hi < 0 || lo < 0)
                return "after must be the \"next\" cursor of an earlier page";
            page->after[i] = (uint8_t)(hi * 16 + lo);
        }
        page->after_len = len / 2;
    }
    if (bad)
        return "after must be the \"next\" cursor of an earlier page";
    return NULL;
}

/* Adds "limit" and, when more remain, "next" (the cursor, hex) to a page's answer. */
static void page_answer(json_t *out, const struct store_page *page)
{
    json_object_set_new(out, "limit", json_integer((json_int_t)page->limit));
    if (page->next_len == 0)
        return;
    char hex[2 * STORE_PAGE_KEY_BYTES_MAX + 1];
    assert(page->next_len <= STORE_PAGE_KEY_BYTES_MAX);
    util_hex(page->next, page->next_len, hex);
    json_object_set_new(out, "next", json_string(hex));
}

/*
 * The ?site= filter: out is "" when the query names none; false (answered
 * 400) when the value is not a site id.
 */
static bool site_from_query(const char *query, char out[TS_ID_BYTES_MAX + 1])
{
    bool bad = false;
    out[0] = '\0';
    if (!query_param(query, "site", out, TS_ID_BYTES_MAX + 1, &bad))
        return !bad;
    return schema_id_ok(out);
}

struct scope_ctx {
    struct store *store;
    const char *type, *id;
    char value[TS_VALUE_BYTES_MAX + 1];
};

/* validate_current_fn over the store: a field's displayed value. */
static const char *scope_current_cb(void *ctx, const char *field)
{
    struct scope_ctx *sc = ctx;
    struct field_state st;
    memset(&st, 0, sizeof(st));
    if (store_field_get(sc->store, sc->type, sc->id, field, &st) != 0)
        return NULL;
    int i = merge_display(sc->type, field, &st);
    const char *out = NULL;
    if (i >= 0) {
        snprintf(sc->value, sizeof(sc->value), "%s", st.live[i].value);
        out = sc->value;
    }
    field_state_release(&st);
    return out;
}

/* True when record (type, id) belongs to site (validate_scope; a query by its target). */
static bool record_of_site(struct store *store, const char *type, const char *id,
                           const char *site)
{
    struct scope_ctx sc = {.store = store, .type = type, .id = id};
    char scope[TS_ID_BYTES_MAX + 1];
    if (validate_scope(type, id, NULL, 0, scope_current_cb, &sc, scope) != 0)
        return false;
    return strcmp(scope, site) == 0;
}

/*
 * A paged list's request: its page (page_from_query) and site filter
 * (site_from_query); false, with the 400 answered, when either is refused.
 */
static bool list_request(struct api_conn *c, const char *query, struct store_page *page,
                         char site[TS_ID_BYTES_MAX + 1])
{
    const char *why = page_from_query(query, page);
    if (why == NULL && !site_from_query(query, site))
        why = "site must be a site id";
    if (why != NULL) {
        conn_send_error(c, 400, why);
        return false;
    }
    return true;
}

/* Answers a page of a list: {key: list, "count", "limit", ["next"]}; takes list. */
static void send_list(struct api_conn *c, const char *key, json_t *list,
                      const struct store_page *page)
{
    size_t count = json_array_size(list);
    json_t *out = json_pack("{s:o,s:I}", key, list, "count", (json_int_t)count);
    page_answer(out, page);
    conn_send_json(c, 200, out);
}

static void handle_history(struct api_conn *c, const char *type, const char *id,
                           const char *query)
{
    struct store_page page;
    const char *why = page_from_query(query, &page);
    if (why != NULL) {
        conn_send_error(c, 400, why);
        return;
    }
    struct history_ctx h = {.store = c->api->node->store, .versions = json_array()};
    char subject[TS_ID_BYTES_MAX + 1];
    int rc = 0;
    if (lock_subject_of(type, id, subject))
        rc = lockview_load(h.store, subject, &h.locks);
    if (rc == 0)
        rc = store_record_history_page(h.store, type, id, &page, history_cb, &h);
    lock_set_release(&h.locks);
    if (rc != 0) {
        json_decref(h.versions);
        char msg[200];
        snprintf(msg, sizeof(msg), "no %s record with id '%s'", type, id);
        conn_send_error(c, rc == TS_ERR_NOTFOUND ? 404 : 500,
                        rc == TS_ERR_NOTFOUND ? msg : ts_strerror(rc));
        return;
    }
    json_t *out = json_pack("{s:s,s:s,s:o}", "type", type, "id", id, "versions", h.versions);
    page_answer(out, &page);
    conn_send_json(c, 200, out);
}

struct records_ctx {
    struct store *store;
    const char *site;   /* "" for every record */
    json_t *list;
};

static int records_cb(void *ctx, const char *type, const char *id)
{
    struct records_ctx *rc = ctx;
    if (rc->site[0] != '\0' && !record_of_site(rc->store, type, id, rc->site))
        return 0;
    json_array_append_new(rc->list, json_pack("{s:s,s:s}", "type", type, "id", id));
    return 0;
}

static void handle_records(struct api_conn *c, const char *query)
{
    char type[TS_TYPE_BYTES_MAX + 1] = "";
    char site[TS_ID_BYTES_MAX + 1];
    bool bad = false;
    struct store_page page;
    if (!query_param(query, "type", type, sizeof(type), &bad) && bad) {
        conn_send_error(c, 400, "type too long");
        return;
    }
    if (!list_request(c, query, &page, site))
        return;
    struct records_ctx rc = {.store = c->api->node->store, .site = site, .list = json_array()};
    int err = store_records_page(rc.store, type, &page, records_cb, &rc);
    if (err != 0) {
        json_decref(rc.list);
        conn_send_error(c, 500, ts_strerror(err));
        return;
    }
    send_list(c, "records", rc.list, &page);
}

struct conflicts_ctx {
    struct store *store;
    const char *site;   /* "" for every conflict */
    json_t *list;
};

/*
 * The other fields written by the entries of a workflow field's losing
 * writes (merge_write_lost): each as {field, value, origin, seq}.  They were
 * written by someone who had not seen the final state shown.
 */
static json_t *stale_fields_json(struct store *store, const char *type, const char *field,
                                 const struct field_state *st)
{
    json_t *out = json_array();
    for (size_t k = 0; k < st->live_count; k++) {
        if (!merge_write_lost(type, field, st, &st->live[k].ref))
            continue;
        struct entry e;
        memset(&e, 0, sizeof(e));
        if (store_entry_get(store, &st->live[k].ref, &e, NULL) != 0)
            continue;
        for (size_t w = 0; w < e.writes_count; w++) {
            if (strcmp(e.writes[w].field, field) == 0)
                continue;
            json_array_append_new(out, json_pack("{s:s,s:s,s:s,s:I}", "field",
                                                 e.writes[w].field, "value", e.writes[w].value,
                                                 "origin", e.origin, "seq", (json_int_t)e.seq));
        }
        entry_release(&e);
    }
    return out;
}

static int conflicts_cb(void *ctx, const char *type, const char *id, const char *field,
                        const struct field_state *st)
{
    struct conflicts_ctx *cc = ctx;
    /* The index is kept by the store; the rule of what is a conflict is
     * merge_conflict's, asked again here so an index written under an older
     * rule never shows a rule's outcome as a conflict. */
    if (!merge_conflict(type, field, st))
        return 0;
    if (cc->site[0] != '\0' && !record_of_site(cc->store, type, id, cc->site))
        return 0;
    json_t *vals = json_array();
    for (size_t k = 0; k < st->live_count; k++)
        json_array_append_new(vals, write_json(type, field, &st->live[k]));
    int i = merge_display(type, field, st);
    json_t *item = json_pack("{s:s,s:s,s:s,s:s,s:o}", "type", type, "id", id, "field", field,
                             "displayed", i >= 0 ? shown_value(type, field, st->live[i].value) : "",
                             "values", vals);
    if (merge_policy_of(type, field) == MERGE_POLICY_RANK)
        json_object_set_new(item, "stale_fields", stale_fields_json(cc->store, type, field, st));
    char qid[SYSQUERY_ID_BYTES];
    if (sysquery_open_id(type, id, field, st, qid))
        json_object_set_new(item, "system_query", json_string(qid));
    json_array_append_new(cc->list, item);
    return 0;
}

static void handle_conflicts(struct api_conn *c, const char *query)
{
    char site[TS_ID_BYTES_MAX + 1];
    struct store_page page;
    if (!list_request(c, query, &page, site))
        return;
    json_t *list = json_array();
    struct conflicts_ctx cc = {.store = c->api->node->store, .site = site, .list = list};
    int rc = store_conflicts_page(c->api->node->store, &page, conflicts_cb, &cc);
    if (rc != 0) {
        json_decref(list);
        conn_send_error(c, 500, ts_strerror(rc));
        return;
    }
    send_list(c, "conflicts", list, &page);
}

/* A site's share of the trial: the records scoped to that site. */
struct site_share {
    struct store *store;
    char site[TS_ID_BYTES_MAX + 1];
};

static bool site_share_keep(void *ctx, const char *type, const char *id)
{
    const struct site_share *sh = ctx;
    const struct schema_type *t = schema_type_find(type);
    if (t == NULL || !t->site_scoped)
        return false;
    char site[TS_ID_BYTES_MAX + 1] = "";
    if (strcmp(type, SCHEMA_QUERY_TYPE) != 0) {
        if (!schema_site_of_key(id, site))
            return false;
    } else {
        /* A query belongs to the site of the record it is about. */
        struct field_state st = {0};
        if (store_field_get(sh->store, type, id, "target", &st) != 0)
            return false;
        int i = merge_display(type, "target", &st);
        if (i >= 0)
            schema_target_site(st.live[i].value, site);
        field_state_release(&st);
    }
    return strcmp(site, sh->site) == 0;
}

/*
 * GET /v1/digest[?site=S]: the state digest, of everything the node holds or
 * of site S's share only (its subjects, visits, AEs and the queries about
 * them), which a site and every hub compute alike once they hold the same
 * entries.
 */
static void handle_digest(struct api_conn *c, const char *query)
{
    struct node *n = c->api->node;
    struct site_share share = { .store = n->store };
    bool by_site = false;
    if (query != NULL && strncmp(query, "site=", 5) == 0) {
        size_t len = strcspn(query + 5, "&");
        if (len == 0 || len > TS_ID_BYTES_MAX) {
            conn_send_error(c, 400, "site: give a site id");
            return;
        }
        memcpy(share.site, query + 5, len);
        share.site[len] = '\0';
        if (!schema_id_ok(share.site)) {
            conn_send_error(c, 400, "site: not a site id");
            return;
        }
        if (n->cfg.role == PKI_ROLE_SITE && strcmp(share.site, n->cfg.id) != 0) {
            conn_send_error(c, 400, "a site's node holds only its own share of the trial: "
                                    "ask a hub for another site's digest");
            return;
        }
        by_site = true;
    } else if (query != NULL && query[0] != '\0') {
        conn_send_error(c, 400, "the digest takes only site=S");
        return;
    }
    uint8_t d[TS_HASH_BYTES];
    char h[2 * TS_HASH_BYTES + 1];
    int rc = by_site ? store_digest_filtered(n->store, site_share_keep, &share, d)
                     : store_digest(n->store, d);
    if (rc != 0) {
        conn_send_error(c, 500, ts_strerror(rc));
        return;
    }
    util_hex(d, sizeof(d), h);
    json_t *o = json_pack("{s:s,s:s}", "node", n->cfg.id, "digest", h);
    if (o != NULL && by_site)
        json_object_set_new(o, "site", json_string(share.site));
    conn_send_json(c, 200, o);
}

static json_t *status_json(struct api *a);
static bool token_matches(const struct api *a, const char *given, size_t given_len);
static bool authorized(struct api_conn *c);
static void conn_address(struct api_conn *c, char *out, size_t cap);
static void record_access(struct api *a, const char *user, bool as_person, const char *fmt,
                          ...) __attribute__((format(printf, 4, 5)));

static void handle_status(struct api_conn *c)
{
    conn_send_json(c, 200, status_json(c->api));
}

/* Every SAE (for /metrics: bounded by SAFETY_SAES_MAX, its deadline series). */
static json_t *saes_json(struct api *a)
{
    size_t next = 0;
    return a->hooks.saes != NULL ? a->hooks.saes(a->hooks.ctx, "", 0, SIZE_MAX, &next)
                                 : json_pack("{s:[]}", "saes");
}

/*
 * GET /v1/saes?site=S&limit=N&after=CURSOR: a page of the SAE list.  The
 * cursor is the position of the next SAE as 8 bytes big-endian, in hex like
 * the store's cursors.
 */
static void handle_saes(struct api_conn *c, const char *query)
{
    char site[TS_ID_BYTES_MAX + 1];
    struct store_page page;
    if (!list_request(c, query, &page, site))
        return;
    if (page.after_len != 0 && page.after_len != 8) {
        conn_send_error(c, 400, "after must be the \"next\" cursor of an earlier page");
        return;
    }
    uint64_t from = 0;
    for (size_t i = 0; i < page.after_len; i++)
        from = from << 8 | page.after[i];
    size_t next = 0;
    json_t *out = c->api->hooks.saes != NULL
                      ? c->api->hooks.saes(c->api->hooks.ctx, site,
                                           from > SIZE_MAX ? SIZE_MAX : (size_t)from, page.limit,
                                           &next)
                      : json_pack("{s:[]}", "saes");
    page.next_len = 0;
    if (next != 0) {
        for (size_t i = 0; i < 8; i++)
            page.next[i] = (uint8_t)((uint64_t)next >> (56 - 8 * i));
        page.next_len = 8;
    }
    page_answer(out, &page);
    conn_send_json(c, 200, out);
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

static const char *user_may_reach(struct api_conn *c, const char *path, bool write);

/* The dashboard: the page for a browser signed in (its ts_session cookie);
 * without a session, or asked for with ?signin (a page that lost its CSRF
 * token signs in afresh), the sign-in page (login.html, whose script POSTs
 * the person's token to /v1/session). */
static void handle_dashboard(struct api_conn *c, const char *query)
{
    char csp[DASHBOARD_CSP_BYTES_MAX];
    char extra[DASHBOARD_CSP_BYTES_MAX + 64];
    if (dashboard_csp(csp, sizeof(csp)) != 0)
        csp[0] = '\0';
    snprintf(extra, sizeof(extra), "Content-Security-Policy: %s\r\n", csp);
    size_t len = 0;
    if (strcmp(query, "signin") == 0 || !authorized(c) ||
        user_may_reach(c, "/dashboard", false) != NULL) {
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
    node_disk_low(n, &free_bytes);
    bool low = node_health_check(n) != NODE_HEALTH_OK;
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
        "accepting_writes", !low && n->revoked[0] == '\0', "uptime_s",
        (json_int_t)((node_now_ms() - n->started_ms) / 1000), "version_vector", vector,
        "peers");
    json_object_set_new(s, "revoked",
                        n->revoked[0] != '\0' ? json_string(n->revoked) : json_null());
    json_object_set_new(s, "writes_refused_disk", json_integer((json_int_t)n->writes_refused_disk));
    json_object_set_new(s, "storage", json_pack("{s:s,s:s,s:I}", "state", node_health_name(n->health),
                                                "why", n->health_why, "disk_guard_bytes",
                                                (json_int_t)node_disk_guard_bytes(n)));
    json_object_set_new(s, "dashboard_sessions",
                        json_integer((json_int_t)session_count(&a->sessions)));
    json_object_set_new(s, "dashboard_requests_refused",
                        json_integer((json_int_t)a->session_requests_refused));
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
    uint64_t fails = 0, limited = 0;
    users_counts(a->users, &fails, &limited);
    json_object_set_new(s, "signin", json_pack("{s:I,s:I}", "failures", (json_int_t)fails,
                                               "limited", (json_int_t)limited));
    json_object_set_new(
        s, "api",
        json_pack("{s:I,s:I,s:I,s:I,s:I}", "connections", (json_int_t)a->connections_open,
                  "evicted", (json_int_t)a->evicted, "refused_full", (json_int_t)a->refused_full,
                  "timed_out", (json_int_t)a->timed_out, "refused_unauthenticated_body",
                  (json_int_t)a->refused_unauth_body));
    json_object_set_new(s, "enrollment", enroll_node_json(n));
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
        char hlc[API_HLC_TEXT_BYTES];
        api_hlc_text(r->hlc, hlc);
        conn_send_json(c, 200,
                       json_pack("{s:b,s:s,s:s,s:s,s:s,s:I,s:s}", "ok", 1, "type", ww->type,
                                 "id", ww->id, "origin", r->ref.origin, "lane",
                                 lane_name(r->ref.lane), "seq", (json_int_t)r->ref.seq, "hlc",
                                 hlc));
    }
    free(ww);
    conn_request_done(c);
    conn_unref(c);
}

/*
 * The user an entry records (schema.h): the signed-in person's id, or
 * "integration:<name>" for the integration credential acting for the person
 * the request names.  A signed-in person names nobody else.  NULL, or why the
 * request is refused.
 */
static const char *write_user(const struct api_conn *c, const char *named, char *out, size_t cap)
{
    assert(c->who != WHO_NOBODY);
    if (c->who == WHO_USER) {
        if (named != NULL && strcmp(named, c->user.user) != 0)
            return "\"user\" is the signed-in user; a person acts only as themselves";
        snprintf(out, cap, "%s", c->user.user);
        return NULL;
    }
    if (named == NULL || named[0] == '\0')
        return "name the person this write is for: \"user\": NAME (the integration "
               "credential acts on someone's behalf, and the audit trail says whose)";
    int len = snprintf(out, cap, SCHEMA_INTEGRATION_PREFIX "%s", named);
    if (len < 0 || (size_t)len >= cap)
        return "the user name is too long";
    return NULL;
}

/* Answers an error and ends the request (the handlers that end their own). */
static void conn_refuse(struct api_conn *c, int status, const char *msg)
{
    conn_send_error(c, status, msg);
    conn_request_done(c);
}

/* Hands one write to the node; write_done (or the refusal here) answers. */
static void submit_write(struct api_conn *c, const struct node_write *w)
{
    struct write_wait *ww = calloc(1, sizeof(*ww));
    if (ww == NULL) {
        conn_send_error(c, 500, "out of memory");
        conn_request_done(c);
        return;
    }
    ww->conn = c;
    snprintf(ww->type, sizeof(ww->type), "%s", w->type);
    snprintf(ww->id, sizeof(ww->id), "%s", w->id);

    struct node_write_result now;
    c->busy = true;
    c->refs++;
    int rc = node_write(c->api->node, w, write_done, ww, &now);
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
        conn_refuse(c, 400, msg);
        return;
    }
    json_t *jfields = json_object_get(root, "fields");
    json_t *jreason = json_object_get(root, "reason");
    json_t *juser = json_object_get(root, "user");
    if (!json_is_object(jfields) || (jreason != NULL && !json_is_string(jreason)) ||
        (juser != NULL && !json_is_string(juser))) {
        json_decref(root);
        conn_refuse(c, 400,
                        "body must be {\"fields\": {name: string, ...}, \"reason\": string, "
                        "\"user\": string}");
        return;
    }
    const char *key;
    json_t *value;
    json_object_foreach(jfields, key, value) {
        if (n == TS_WRITES_PER_ENTRY_MAX) {
            json_decref(root);
            conn_refuse(c, 400, "too many fields in one write (at most 64)");
            return;
        }
        if (!json_is_string(value)) {
            snprintf(msg, sizeof(msg), "field '%.40s': the value must be a JSON string", key);
            json_decref(root);
            conn_refuse(c, 400, msg);
            return;
        }
        fields[n].field = key;
        fields[n].value = json_string_value(value);
        n++;
    }

    char user[TS_USER_BYTES_MAX + 1];
    const char *refusal = write_user(c, juser != NULL ? json_string_value(juser) : NULL, user,
                                     sizeof(user));
    if (refusal == NULL && strcmp(type, SCHEMA_SIGNATURE_TYPE) == 0)
        refusal = "a signature is made with 'trialsync sign' (POST /v1/sign), which re-checks "
                  "the signer's secret and computes what is signed";
    if (refusal == NULL && strcmp(type, SCHEMA_SDV_TYPE) == 0)
        refusal = "source-data verification is marked with 'trialsync sdv' (POST /v1/sdv), "
                  "which computes what is verified";
    if (refusal == NULL && strcmp(type, SCHEMA_ACCESS_TYPE) == 0)
        refusal = "access events are recorded by the node, not written as data";
    if (refusal == NULL && strcmp(type, SCHEMA_LOCK_TYPE) == 0)
        refusal = "records are locked with 'trialsync lock' (POST /v1/lock), which records "
                  "what the hub has seen";
    if (refusal == NULL && (strcmp(type, SCHEMA_QUOTA_TYPE) == 0 ||
                            strcmp(type, SCHEMA_ENROLLMENT_TYPE) == 0))
        refusal = "enrollment slots are set with 'trialsync enrollment' (POST "
                  "/v1/enrollment/cap, /v1/enrollment/grant), which keeps them within the cap";
    if (refusal == NULL && json_object_get(jfields, "slot") != NULL)
        refusal = "field 'slot' is set by the site's node when the subject is enrolled";
    struct validate_error verr;
    if (refusal == NULL && c->who == WHO_USER &&
        validate_user_role(c->user.role, type, fields, n, &verr) != 0)
        refusal = verr.msg;
    if (refusal != NULL) {
        conn_refuse(c, c->who == WHO_USER ? 403 : 400, refusal);
        json_decref(root);
        return;
    }

    struct node_write w = {
        .type = type,
        .id = id,
        .fields = fields,
        .n = n,
        .reason = jreason != NULL ? json_string_value(jreason) : NULL,
        .user = user,
        .membership = membership,
    };
    submit_write(c, &w);
    json_decref(root);
}

/* ---- e-signatures ----------------------------------------------------------- */

/*
 * POST /v1/sign {"type": "subject"|"visit", "id": ID, "meaning": M, "secret":
 * TOKEN}: the signed-in investigator signs the record (a subject: the whole
 * casebook) after re-entering their token (21 CFR 11.200: each signing is
 * authenticated, not carried by the session).  The node computes the digest
 * of exactly the versions it holds and writes the signature record as theirs.
 */
static void handle_sign(struct api_conn *c)
{
    json_error_t jerr;
    json_t *root = json_loadb(c->body != NULL ? c->body : "", c->body_len, 0, &jerr);
    const char *type = json_string_value(json_object_get(root, "type"));
    const char *id = json_string_value(json_object_get(root, "id"));
    const char *meaning = json_string_value(json_object_get(root, "meaning"));
    const char *secret = json_string_value(json_object_get(root, "secret"));
    char target[TS_TYPE_BYTES_MAX + TS_ID_BYTES_MAX + 2], digest[2 * TS_HASH_BYTES + 1];
    char sig_id[TS_ID_BYTES_MAX + 1], subject[TS_ID_BYTES_MAX + 1], now[40], why[160];
    char addr[64];

    if (c->who != WHO_USER || c->user.role != USER_ROLE_INVESTIGATOR) {
        conn_refuse(c, 403, "only an investigator signs, signed in with their own token");
        goto out;
    }
    if (type == NULL || id == NULL || secret == NULL ||
        (strcmp(type, "subject") != 0 && strcmp(type, "visit") != 0) ||
        !schema_key_ok(type, id)) {
        conn_refuse(c, 400, "body must be {\"type\": \"subject\"|\"visit\", \"id\": ID, "
                                "\"meaning\": MEANING, \"secret\": YOUR-TOKEN}");
        goto out;
    }
    conn_address(c, addr, sizeof(addr));
    if (users_reverify(c->api->users, c->user.user, secret, strlen(secret), addr, node_now_ms(),
                       why, sizeof(why)) != USERS_OK) {
        trace(TRACE_WARN, "api: signature by '%s' refused: %s", c->user.user, why);
        conn_refuse(c, 401, why);
        goto out;
    }
    snprintf(target, sizeof(target), "%s/%s", type, id);
    int rc = esign_digest_hex(c->api->node->store, target, NULL, digest);
    if (rc != 0) {
        snprintf(why, sizeof(why), "no %s record with id '%.64s' here", type, id);
        conn_refuse(c, rc == TS_ERR_NOTFOUND ? 404 : 500, why);
        goto out;
    }
    snprintf(subject, sizeof(subject), "%.*s", (int)strcspn(id, "/"), id);
    if (esign_next_id(c->api->node->store, subject, sig_id) != 0) {
        conn_refuse(c, 500, "cannot number the signature");
        goto out;
    }
    api_format_time(node_now_ms(), now, sizeof(now));
    struct validate_field fields[] = {
        {.field = "target", .value = target},
        {.field = "meaning", .value = meaning != NULL ? meaning : "approval"},
        {.field = "name", .value = c->user.name[0] ? c->user.name : c->user.user},
        {.field = "signed_at", .value = now},
        {.field = "versions", .value = digest},
    };
    struct node_write w = {
        .type = SCHEMA_SIGNATURE_TYPE,
        .id = sig_id,
        .fields = fields,
        .n = sizeof(fields) / sizeof(fields[0]),
        .user = c->user.user,
    };
    submit_write(c, &w);
out:
    json_decref(root);
}

/*
 * POST /v1/sdv {"type": "subject"|"visit"|"ae", "id": ID, "fields": [NAME...]}:
 * the signed-in monitor marks the record's fields (none named: all of them)
 * verified against the source, as exactly the versions this hub holds.  The
 * id is <subject>-SDV-<ms>: two hubs marking one subject in the same
 * millisecond would show as a conflict of the mark, never lose one.
 */
static void handle_sdv(struct api_conn *c)
{
    json_error_t jerr;
    json_t *root = json_loadb(c->body != NULL ? c->body : "", c->body_len, 0, &jerr);
    const char *type = json_string_value(json_object_get(root, "type"));
    const char *id = json_string_value(json_object_get(root, "id"));
    json_t *jfields = json_object_get(root, "fields");
    char target[TS_TYPE_BYTES_MAX + TS_ID_BYTES_MAX + 2], digest[2 * TS_HASH_BYTES + 1];
    char mark_id[TS_ID_BYTES_MAX + 1], now[40], msg[200], list[1025] = "";

    if (c->who != WHO_USER || c->user.role != USER_ROLE_MONITOR) {
        conn_refuse(c, 403, "source-data verification is a monitor's, signed in with their "
                            "own token");
        goto out;
    }
    const struct schema_type *t = type != NULL ? schema_type_find(type) : NULL;
    if (t == NULL || id == NULL || !schema_key_ok(type, id) ||
        (strcmp(type, "subject") != 0 && strcmp(type, "visit") != 0 &&
         strcmp(type, "ae") != 0) ||
        (jfields != NULL && !json_is_array(jfields))) {
        conn_refuse(c, 400, "body must be {\"type\": \"subject\"|\"visit\"|\"ae\", \"id\": "
                            "ID, \"fields\": [NAME, ...]}");
        goto out;
    }
    size_t i;
    json_t *jf;
    json_array_foreach(jfields, i, jf) {
        const char *name = json_string_value(jf);
        if (name == NULL || schema_field_find(t, name) == NULL) {
            snprintf(msg, sizeof(msg), "'%.40s' is not a field of %s", name != NULL ? name : "",
                     type);
            conn_refuse(c, 400, msg);
            goto out;
        }
        size_t used = strlen(list);
        int n = snprintf(list + used, sizeof(list) - used, "%s%s", used > 0 ? "," : "", name);
        if (n < 0 || (size_t)n >= sizeof(list) - used) {
            conn_refuse(c, 400, "too many fields");
            goto out;
        }
    }
    snprintf(target, sizeof(target), "%s/%s", type, id);
    int rc = esign_digest_hex(c->api->node->store, target, list, digest);
    if (rc != 0) {
        snprintf(msg, sizeof(msg), "no %s record with id '%.64s' here", type, id);
        conn_refuse(c, rc == TS_ERR_NOTFOUND ? 404 : 500, msg);
        goto out;
    }
    const char *ae = strstr(id, "-AE-");
    int subject_len = (int)(ae != NULL ? (size_t)(ae - id) : strcspn(id, "/"));
    uint64_t now_ms = node_now_ms();
    snprintf(mark_id, sizeof(mark_id), "%.*s-SDV-%llu", subject_len, id,
             (unsigned long long)now_ms);
    api_format_time(now_ms, now, sizeof(now));
    struct validate_field fields[] = {
        {.field = "target", .value = target},
        {.field = "fields", .value = list},
        {.field = "verified_at", .value = now},
        {.field = "versions", .value = digest},
    };
    struct node_write w = {
        .type = SCHEMA_SDV_TYPE,
        .id = mark_id,
        .fields = fields,
        .n = sizeof(fields) / sizeof(fields[0]),
        .user = c->user.user,
    };
    submit_write(c, &w);
out:
    json_decref(root);
}

/* ---- locks ---------------------------------------------------------------- */

/*
 * POST /v1/lock and /v1/unlock {"subject": ID} or {"type": T, "id": ID},
 * "reason": R: the signed-in data manager locks (unlocks) a subject with
 * everything under it, or one record, at this hub.  The node writes the
 * subject's next lock epoch with the whole new set of records locked and
 * the versions it holds (node/lock.h); whatever it has not seen of those
 * records stays in the log, quarantined.
 */
static void handle_lock(struct api_conn *c, bool lock)
{
    json_error_t jerr;
    json_t *root = json_loadb(c->body != NULL ? c->body : "", c->body_len, 0, &jerr);
    const char *subject_arg = json_string_value(json_object_get(root, "subject"));
    const char *type = json_string_value(json_object_get(root, "type"));
    const char *id = json_string_value(json_object_get(root, "id"));
    const char *reason = json_string_value(json_object_get(root, "reason"));
    char subject[TS_ID_BYTES_MAX + 1], lock_id[TS_ID_BYTES_MAX + 1], msg[300];
    char target[TS_TYPE_BYTES_MAX + TS_ID_BYTES_MAX + 2], epoch[24];
    char *cur = calloc(1, LOCK_TEXT_BYTES_MAX + 1), *targets = calloc(1, LOCK_TEXT_BYTES_MAX + 1);
    char *seen = calloc(1, LOCK_TEXT_BYTES_MAX + 1);
    struct lock_set set = {0};
    struct node *n = c->api->node;

    if (cur == NULL || targets == NULL || seen == NULL) {
        conn_refuse(c, 500, "out of memory");
        goto out;
    }
    struct validate_field probe = {.field = "targets", .value = ""};
    if (c->who != WHO_USER || validate_user_role(c->user.role, SCHEMA_LOCK_TYPE, &probe, 1,
                                                 NULL) != 0) {
        conn_refuse(c, 403, "locking records is a data manager's (role dm), signed in with "
                            "their own token");
        goto out;
    }
    if (n->cfg.role != PKI_ROLE_HUB) {
        conn_refuse(c, 403, "records are locked at a hub");
        goto out;
    }
    if (subject_arg != NULL ? !schema_key_ok("subject", subject_arg)
                            : type == NULL || id == NULL || !lock_subject_of(type, id, subject)) {
        conn_refuse(c, 400, "body must be {\"subject\": ID} or {\"type\": \"subject\"|\"visit\"|"
                            "\"ae\", \"id\": ID}, with \"reason\": TEXT");
        goto out;
    }
    if (reason == NULL || reason[0] == '\0') {
        conn_refuse(c, 400, "a lock or an unlock needs a reason");
        goto out;
    }
    if (subject_arg != NULL) {
        snprintf(subject, sizeof(subject), "%s", subject_arg);
        snprintf(target, sizeof(target), "*");
        type = "subject";
        id = subject_arg;
    } else {
        snprintf(target, sizeof(target), "%s/%s", type, id);
    }
    if (!store_record_exists(n->store, type, id)) {
        snprintf(msg, sizeof(msg), "no %s record with id '%.64s' here", type, id);
        conn_refuse(c, 404, msg);
        goto out;
    }
    /* What is pending is committed first, so seen holds every write this
     * hub took before the lock. */
    node_flush(n);
    int rc = lockview_load(n->store, subject, &set);
    uint64_t e = rc == 0 ? lock_set_epoch(&set) : 0;
    if (rc == 0 && e > 0)
        rc = lockview_epoch_targets(n->store, subject, e, cur, LOCK_TEXT_BYTES_MAX + 1);
    if (rc == 0)
        rc = lock_targets_edit(cur, target, lock, targets, LOCK_TEXT_BYTES_MAX + 1);
    if (rc == TS_ERR_EXISTS || rc == TS_ERR_NOTFOUND) {
        snprintf(msg, sizeof(msg), "%s is %s (lock epoch %" PRIu64 ": %s)",
                 strcmp(target, "*") == 0 ? subject : target,
                 rc == TS_ERR_EXISTS ? "locked already" : "not locked on its own",
                 e, cur[0] ? cur : "nothing locked");
        conn_refuse(c, 409, msg);
        goto out;
    }
    if (rc == 0)
        rc = lockview_seen(n->store, subject, seen, LOCK_TEXT_BYTES_MAX + 1);
    if (rc != 0 || !lock_record_id(subject, lock_id)) {
        snprintf(msg, sizeof(msg), "cannot lock %s: %s", subject, ts_strerror(rc));
        conn_refuse(c, http_status_of(rc), msg);
        goto out;
    }
    snprintf(epoch, sizeof(epoch), "%" PRIu64, e + 1);
    struct validate_field fields[] = {
        {.field = "epoch", .value = epoch},
        {.field = "targets", .value = targets},
        {.field = "seen", .value = seen},
    };
    struct node_write w = {
        .type = SCHEMA_LOCK_TYPE,
        .id = lock_id,
        .fields = fields,
        .n = sizeof(fields) / sizeof(fields[0]),
        .reason = reason,
        .user = c->user.user,
    };
    submit_write(c, &w);
out:
    lock_set_release(&set);
    free(seen);
    free(targets);
    free(cur);
    json_decref(root);
}

/* ---- enrollment slots ---------------------------------------------------- */

/*
 * POST /v1/enrollment/cap {"cap": N, "user": U} and POST /v1/enrollment/grant
 * {"site": S, "slots": N, "user": U}: a data manager (signed in, or the
 * integration credential acting for one) at the allocating hub sets the
 * trial's cap or a site's slots (enroll_node.h: a decrease asks the site's
 * node to release unused slots).  GET /v1/enrollment: the slots as this
 * node knows them.
 */
static void handle_enrollment(struct api_conn *c, bool grant)
{
    json_error_t jerr;
    json_t *root = json_loadb(c->body != NULL ? c->body : "", c->body_len, 0, &jerr);
    json_t *jcount = json_object_get(root, grant ? "slots" : "cap");
    json_t *juser = json_object_get(root, "user");
    const char *site = json_string_value(json_object_get(root, "site"));
    char user[TS_USER_BYTES_MAX + 1], msg[300];

    if (c->who == WHO_USER && c->user.role != USER_ROLE_DM) {
        conn_refuse(c, 403, "enrollment slots are set by a data manager (role dm)");
        goto out;
    }
    if (!json_is_integer(jcount) || json_integer_value(jcount) < 0 ||
        json_integer_value(jcount) > (json_int_t)SCHEMA_COUNT_MAX || (grant && site == NULL) ||
        (juser != NULL && !json_is_string(juser))) {
        conn_refuse(c, 400, grant ? "body must be {\"site\": SITE, \"slots\": N, \"user\": NAME}"
                                  : "body must be {\"cap\": N, \"user\": NAME}");
        goto out;
    }
    const char *refusal = write_user(c, json_string_value(juser), user, sizeof(user));
    if (refusal != NULL) {
        conn_refuse(c, 400, refusal);
        goto out;
    }
    struct write_wait *ww = calloc(1, sizeof(*ww));
    if (ww == NULL) {
        conn_refuse(c, 500, "out of memory");
        goto out;
    }
    ww->conn = c;
    snprintf(ww->type, sizeof(ww->type), "%s", grant ? SCHEMA_QUOTA_TYPE : SCHEMA_ENROLLMENT_TYPE);
    snprintf(ww->id, sizeof(ww->id), "%s%s", grant ? site : SCHEMA_ENROLLMENT_ID,
             grant ? SCHEMA_QUOTA_SUFFIX : "");
    c->busy = true;
    c->refs++;
    uint64_t count = (uint64_t)json_integer_value(jcount);
    int rc = grant ? enroll_node_set_slots(c->api->node, site, count, user, msg, sizeof(msg),
                                           write_done, ww)
                   : enroll_node_set_cap(c->api->node, count, user, msg, sizeof(msg), write_done,
                                         ww);
    if (rc != 0) {
        c->refs--;
        free(ww);
        conn_refuse(c, http_status_of(rc), msg);
    }
out:
    json_decref(root);
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
    char user[TS_USER_BYTES_MAX + 1];
    const char *refusal = write_user(c, juser != NULL ? json_string_value(juser) : NULL, user,
                                     sizeof(user));
    if (refusal != NULL) {
        conn_send_error(c, 400, refusal);
        goto out_done;
    }
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
    return session_text_equal(given, given_len, a->token, a->token_len);
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

/* The peer's address as text, for the sign-in limiter and the trace. */
static void conn_address(struct api_conn *c, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    out[0] = '\0';
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET)
        uv_ip4_name((struct sockaddr_in *)&ss, out, cap);
    else if (ss.ss_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)&ss, out, cap);
}

/*
 * The dashboard session the ts_session cookie names, if it is live and its
 * person's account still lets them in (users_recheck: a disable or a reset
 * ends it at its next request).  Sets c->who, c->user and c->session.
 */
static bool session_authorized(struct api_conn *c)
{
    struct api *a = c->api;
    size_t len = 0;
    const char *id = cookie_value(c->cookie, c->cookie_len, API_SESSION_COOKIE, &len);
    if (id == NULL)
        return false;
    struct session *s = session_find(&a->sessions, id, len, node_now_ms());
    if (s == NULL) {
        snprintf(c->refused_why, sizeof(c->refused_why),
                 "your dashboard session has ended (signed out, idle or too old): sign in again");
        return false;
    }
    enum users_verdict v = users_recheck(a->users, s->who.user, s->record_digest, &c->user);
    if (v != USERS_OK) {
        trace(TRACE_INFO, "api: dashboard session of user '%s' ended: the account is %s",
              s->who.user, v == USERS_DISABLED ? "disabled" : "gone or its token reset");
        session_end(&a->sessions, s);
        snprintf(c->refused_why, sizeof(c->refused_why),
                 "your dashboard session has ended: the account was disabled or its token "
                 "reset; ask the trial's admin");
        return false;
    }
    c->who = WHO_USER;
    c->session = s;
    return true;
}

/*
 * A request is authorized by "Authorization: Bearer <token>" or by the
 * dashboard's ts_session cookie (session_authorized).  The token is the
 * node's integration credential (its token file), or a person's user token
 * ("<user>:<secret>", users.h) checked against the user's record.  Sets
 * c->who (and c->session for a cookie); a failed user sign-in is traced
 * (repeats are summarised).
 */
static bool authorized(struct api_conn *c)
{
    const char prefix[] = "Bearer ";
    struct api *a = c->api;
    const char *tok = NULL;
    size_t len = 0;
    c->who = WHO_NOBODY;
    c->session = NULL;
    c->refused_why[0] = '\0';
    if (c->auth_len >= sizeof(prefix) - 1 && strncmp(c->auth, prefix, sizeof(prefix) - 1) == 0) {
        tok = c->auth + sizeof(prefix) - 1;
        len = c->auth_len - (sizeof(prefix) - 1);
    } else {
        return session_authorized(c);
    }
    if (token_matches(a, tok, len)) {
        c->who = WHO_INTEGRATION;
        return true;
    }
    if (!users_token_is_user(tok, len))
        return false;
    char addr[64], why[128];
    conn_address(c, addr, sizeof(addr));
    enum users_verdict v = users_authenticate(a->users, tok, len, addr, node_now_ms(), &c->user,
                                              why, sizeof(why));
    if (v == USERS_OK) {
        c->who = WHO_USER;
        /* A token checked against the record (its first use here, or the
         * first after the cache's time): a sign-in, recorded; the cache's
         * hits are not, so a busy client does not grow the log. */
        if (c->user.checked)
            record_access(a, c->user.user, true, "sign-in: token from %s", addr[0] ? addr : "?");
        return true;
    }
    trace(TRACE_WARN, "api: sign-in refused for user '%.64s' from %s: %s", c->user.user,
          addr[0] ? addr : "?", why);
    if (v != USERS_LIMITED)
        record_access(a, c->user.user, false, "sign-in refused (token) from %s: %s",
                      addr[0] ? addr : "?", why);
    snprintf(c->refused_why, sizeof(c->refused_why), "sign-in refused: %s", why);
    return false;
}

/*
 * What a signed-in person may reach at this node: a site user (crc,
 * investigator, or a viewer with a site) only their own site's node, a CRO
 * user only a hub; a metrics reader only /metrics; admin endpoints (import,
 * backup, membership, revocation) are the integration credential's.  NULL
 * when allowed, else why not.
 */
static const char *user_may_reach(struct api_conn *c, const char *path, bool write)
{
    const struct users_principal *p = &c->user;
    const struct node *n = c->api->node;
    if (c->who == WHO_INTEGRATION)
        return NULL;
    assert(c->who == WHO_USER);
    if (p->role == USER_ROLE_METRICS)
        return strcmp(path, "/metrics") == 0 ? NULL
                                             : "a metrics reader reads /metrics and /healthz only";
    if (p->site[0] != '\0') {
        if (n->cfg.role != PKI_ROLE_SITE || strcmp(n->cfg.id, p->site) != 0)
            return "a site user signs in only at the site's own node";
    } else if (n->cfg.role != PKI_ROLE_HUB) {
        return "a CRO user signs in only at a hub";
    }
    if (write && p->role == USER_ROLE_VIEWER)
        return "a viewer writes nothing";
    return NULL;
}

/* ---- dashboard sessions ------------------------------------------------ */

/* True when the Content-Type header is application/json (parameters aside). */
static bool content_is_json(const struct api_conn *c)
{
    const char *v = c->small[API_HEADER_CONTENT_TYPE];
    size_t n = strcspn(v, ";");
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    return c->small_len[API_HEADER_CONTENT_TYPE] > 0 && n == 16 &&
           strncasecmp(v, "application/json", 16) == 0;
}

/* True when the Origin header is "http://" + the Host header: the node's own page. */
static bool origin_is_own(const struct api_conn *c)
{
    const char *origin = c->small[API_HEADER_ORIGIN];
    size_t origin_len = c->small_len[API_HEADER_ORIGIN];
    size_t host_len = c->small_len[API_HEADER_HOST];
    if (host_len == 0 || origin_len != 7 + host_len)
        return false;
    return strncmp(origin, "http://", 7) == 0 &&
           strncasecmp(origin + 7, c->small[API_HEADER_HOST], host_len) == 0;
}

/*
 * Why a request authenticated by a session cookie is refused, or NULL.
 * Every one (but the page and its files) must carry the session's CSRF
 * token, which only the node's own page holds (the sign-in answered it; the
 * page keeps it in its origin's storage): browsers send cookies to every
 * port of a host, so the cookie alone, sent by a page elsewhere or copied by
 * a server on another port, reads nothing.  A write must also be JSON and
 * come from the node's own page (Origin).  A page elsewhere (another port of
 * the same host counts as the same site, so SameSite sends the cookie) can
 * send none of these.
 */
static const char *session_request_refusal(const struct api_conn *c, bool write)
{
    const struct session *s = c->session;
    assert(s != NULL);
    if (!write) {
        if (!session_text_equal(c->small[API_HEADER_CSRF], c->small_len[API_HEADER_CSRF],
                                s->csrf, strlen(s->csrf)))
            return "a request from a browser session needs the X-CSRF-Token header holding "
                   "the token the sign-in answered (the node's own page sends it)";
        return NULL;
    }
    if (c->small_len[API_HEADER_ORIGIN] == 0)
        return "a write from a browser session must carry an Origin header (this node's own "
               "dashboard page sends one)";
    if (!origin_is_own(c))
        return "this write comes from a page of another origin than this node's: refused "
               "(cross-site request forgery protection)";
    if (!session_text_equal(c->small[API_HEADER_CSRF], c->small_len[API_HEADER_CSRF], s->csrf,
                            strlen(s->csrf)))
        return "a write from a browser session needs the X-CSRF-Token header holding the "
               "token the sign-in answered (the node's own page sends it)";
    if (!content_is_json(c))
        return "a write from a browser session must be sent as Content-Type: application/json";
    return NULL;
}

/* The session's person, as the sign-in and GET /v1/session answer it. */
static json_t *session_json(const struct api_conn *c, const struct session *s)
{
    if (c->who == WHO_INTEGRATION)
        return json_pack("{s:b}", "integration", 1);
    assert(c->who == WHO_USER);
    json_t *j = json_pack("{s:s,s:s,s:s,s:s}", "user", c->user.user, "role",
                          schema_user_role_name(c->user.role), "site", c->user.site, "name",
                          c->user.name);
    if (s != NULL) {
        json_object_set_new(j, "idle_timeout_s", json_integer(SESSION_IDLE_MS / 1000));
        uint64_t ends_ms = s->opened_ms + SESSION_ABSOLUTE_MS;
        json_object_set_new(j, "ends_at_ms", json_integer((json_int_t)ends_ms));
    }
    return j;
}

/*
 * POST /v1/session {"token": "USER:SECRET"}: a person signs the browser in.
 * Answers the session's CSRF token and sets the ts_session cookie, which
 * holds only the random session id.  The integration credential opens no
 * session: a browser works as a person.
 */
/* An access event's write needs no answer: it is in the log once committed. */
static void access_written(void *ctx, const struct node_write_result *r)
{
    (void)ctx;
    if (r->code != 0)
        trace(TRACE_WARN, "api: an access event was not recorded: %s", r->err.msg);
}

/*
 * Appends an access event of user at this node to their access record
 * (<node>-ACC-<user>, schema.h), as a write of the person (signed in: their
 * own sign-in or sign-out) or of the node (a refused attempt: the person did
 * not prove who they are).  Only for users whose account this node holds, so
 * a guesser cannot make records for invented names; refusals past the
 * limiter are not recorded (users.h bounds them).
 */
static void record_access(struct api *a, const char *user, bool as_person, const char *fmt,
                          ...)
{
    struct node *n = a->node;
    char id[TS_ID_BYTES_MAX + 1], event[256], who[TS_USER_BYTES_MAX + 1];
    if (!schema_id_ok(user) || !store_record_exists(n->store, SCHEMA_USER_TYPE, user))
        return;
    int len = snprintf(id, sizeof(id), "%s-ACC-%s", n->cfg.id, user);
    if (len < 0 || (size_t)len >= sizeof(id) || !schema_key_ok(SCHEMA_ACCESS_TYPE, id))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(event, sizeof(event), fmt, ap);
    va_end(ap);
    snprintf(who, sizeof(who), "%s%s", as_person ? "" : SCHEMA_INTEGRATION_PREFIX,
             as_person ? user : n->cfg.id);
    struct validate_field f = {.field = "events", .value = event};
    struct node_write w = {
        .type = SCHEMA_ACCESS_TYPE, .id = id, .fields = &f, .n = 1, .user = who,
    };
    struct node_write_result now;
    if (node_write(n, &w, access_written, NULL, &now) != 0)
        trace(TRACE_WARN, "api: the access event '%s' of %s was not recorded: %s", event, user,
              now.err.msg);
}

static void handle_session_open(struct api_conn *c)
{
    struct api *a = c->api;
    char addr[64], why[128];
    conn_address(c, addr, sizeof(addr));
    if (!content_is_json(c)) {
        conn_send_error(c, 400, "sign in with Content-Type: application/json and a body "
                                "{\"token\": \"USER:SECRET\"}");
        return;
    }
    /* A browser always names the page it posts from: a page elsewhere
     * cannot sign this browser in to an account of its choosing. */
    if (c->small_len[API_HEADER_ORIGIN] > 0 && !origin_is_own(c)) {
        a->session_requests_refused++;
        trace(TRACE_WARN, "api: sign-in from a page of another origin refused (from %s)",
              addr[0] ? addr : "?");
        conn_send_error(c, 403, "sign in from this node's own /dashboard page");
        return;
    }
    json_error_t jerr;
    json_t *body = json_loadb(c->body != NULL ? c->body : "", c->body_len, 0, &jerr);
    const char *tok = json_string_value(json_object_get(body, "token"));
    if (tok == NULL) {
        json_decref(body);
        conn_send_error(c, 400, "the body must be {\"token\": \"USER:SECRET\"}");
        return;
    }
    size_t len = strlen(tok);
    if (token_matches(a, tok, len)) {
        json_decref(body);
        conn_send_error(c, 403, "the node's integration credential opens no dashboard session: "
                                "sign in with your own user token (trialsync user add ... "
                                "--role viewer gives one)");
        return;
    }
    enum users_verdict v = users_authenticate(a->users, tok, len, addr, node_now_ms(), &c->user,
                                              why, sizeof(why));
    json_decref(body);
    if (v != USERS_OK) {
        trace(TRACE_WARN, "api: dashboard sign-in refused for user '%.64s' from %s: %s",
              c->user.user, addr[0] ? addr : "?", why);
        if (v != USERS_LIMITED)
            record_access(a, c->user.user, false, "sign-in refused (dashboard) from %s: %s",
                          addr[0] ? addr : "?", why);
        char msg[160];
        snprintf(msg, sizeof(msg), "sign-in refused: %s", why);
        conn_send_error(c, 401, msg);
        return;
    }
    c->who = WHO_USER;
    const char *why_not = c->user.role == USER_ROLE_METRICS
                              ? "a metrics account reads /metrics only and opens no dashboard "
                                "session"
                              : user_may_reach(c, "/dashboard", false);
    if (why_not != NULL) {
        conn_send_error(c, 403, why_not);
        return;
    }
    uint8_t digest[TS_HASH_BYTES], id_random[SESSION_RANDOM_BYTES], csrf_random[SESSION_RANDOM_BYTES];
    if (users_record_digest(a->users, c->user.user, digest) != 0 ||
        crypto_random(id_random, sizeof(id_random)) != 0 ||
        crypto_random(csrf_random, sizeof(csrf_random)) != 0) {
        conn_send_error(c, 500, "cannot open a session now; try again");
        return;
    }
    struct session *s =
        session_open(&a->sessions, &c->user, digest, id_random, csrf_random, node_now_ms());
    memset(id_random, 0, sizeof(id_random));
    memset(csrf_random, 0, sizeof(csrf_random));
    trace(TRACE_INFO, "api: dashboard session opened for user '%s' (%s) from %s", c->user.user,
          schema_user_role_name(c->user.role), addr[0] ? addr : "?");
    record_access(a, c->user.user, true, "sign-in: dashboard session from %s",
                  addr[0] ? addr : "?");
    /* Max-Age: the browser forgets the cookie when the node would. */
    char extra[SESSION_TEXT_BYTES + 128];
    snprintf(extra, sizeof(extra),
             "Set-Cookie: " API_SESSION_COOKIE "=%s; HttpOnly; SameSite=Strict; Path=/; "
             "Max-Age=%u\r\n",
             s->id, SESSION_ABSOLUTE_MS / 1000);
    json_t *answer = session_json(c, s);
    /* The CSRF token is answered here only: the page keeps it. */
    json_object_set_new(answer, "csrf_token", json_string(s->csrf));
    char *text = json_dumps(answer, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(answer);
    if (text == NULL) {
        session_end(&a->sessions, s);
        conn_send_error(c, 500, "out of memory");
        return;
    }
    conn_send_extra(c, 200, "application/json", extra, text, strlen(text));
    free(text);
}

/*
 * POST /v1/session/end or DELETE /v1/session: forgets the cookie's session
 * (a write like any other: the session's CSRF token and own Origin, checked
 * before this runs) and clears the cookie.  Without a live session there is
 * nothing to forget, and the cookie is cleared all the same.
 */
static void handle_session_end(struct api_conn *c)
{
    static const char clear[] = "Set-Cookie: " API_SESSION_COOKIE "=; HttpOnly; SameSite=Strict; "
                                "Path=/; Max-Age=0\r\n";
    bool ended = c->session != NULL;
    if (ended) {
        trace(TRACE_INFO, "api: dashboard session of user '%s' signed out", c->user.user);
        record_access(c->api, c->user.user, true, "sign-out: dashboard session");
        session_end(&c->api->sessions, c->session);
        c->session = NULL;
    }
    const char *body = ended ? "{\"signed_out\":true}\n" : "{\"signed_out\":false}\n";
    conn_send_extra(c, 200, "application/json", clear, body, strlen(body));
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
        /* Not 200 while the node cannot take writes (node.h's states), nor
         * once a site knows it was revoked (it says so and why). */
        struct node *n = c->api->node;
        enum node_health h = node_health_check(n);
        bool revoked = n->revoked[0] != '\0';
        bool ok = h == NODE_HEALTH_OK && !revoked;
        json_t *body = json_pack("{s:s,s:s,s:b}", "status",
                                 revoked ? "revoked" : node_health_name(h), "node", n->cfg.id,
                                 "accepting_writes", ok);
        if (revoked)
            json_object_set_new(body, "revoked", json_string(n->revoked));
        if (h != NODE_HEALTH_OK || revoked)
            json_object_set_new(body, "why", json_string(revoked ? n->revoked : n->health_why));
        conn_send_json(c, ok ? 200 : 503, body);
        conn_request_done(c);
        return;
    }
    if (strcmp(path, "/dashboard") == 0 && method == HTTP_GET) {
        handle_dashboard(c, query);
        conn_request_done(c);
        return;
    }
    const char *file = NULL, *file_type = NULL;
    size_t file_len = 0;
    if (method == HTTP_GET && dashboard_public_file(path, &file, &file_len, &file_type)) {
        conn_send(c, 200, file_type, file, file_len);
        conn_request_done(c);
        return;
    }
    if (strcmp(path, "/v1/session") == 0 && method == HTTP_POST) {
        handle_session_open(c);
        conn_request_done(c);
        return;
    }
    bool session_end_path = (strcmp(path, "/v1/session/end") == 0 && method == HTTP_POST) ||
                            (strcmp(path, "/v1/session") == 0 && method == HTTP_DELETE);
    /* Credentials were checked when the headers ended; a session may have
     * ended while the body was read, so an accepted one is checked again (a
     * refused one is not: it would count as a second failed sign-in). */
    if (c->authed)
        c->authed = authorized(c);
    if (!c->authed && session_end_path) {
        handle_session_end(c);
        conn_request_done(c);
        return;
    }
    if (c->who == WHO_NOBODY) {
        conn_send_error(c, 401,
                        c->refused_why[0] != '\0'
                            ? c->refused_why
                            : "missing or wrong API token: send 'Authorization: Bearer "
                              "<token>' with your user token, or the content of the node's "
                              "token file");
        conn_request_done(c);
        return;
    }
    /* The page's files carry no data, and browsers ask for /favicon.ico on
     * their own: neither needs the CSRF token. */
    bool page_file = method == HTTP_GET && (dashboard_file(path, &file, &file_len, &file_type) ||
                                            strcmp(path, "/favicon.ico") == 0);
    if (c->session != NULL && !page_file) {
        const char *refusal =
            session_request_refusal(c, method != HTTP_GET && method != HTTP_HEAD);
        if (refusal != NULL) {
            char addr[64];
            conn_address(c, addr, sizeof(addr));
            c->api->session_requests_refused++;
            trace(TRACE_WARN,
                  "api: refused a browser-session request %s %.128s by user '%s' from %s "
                  "(Origin '%.96s'): %s",
                  http_method_str(method), path, c->user.user, addr[0] ? addr : "?",
                  c->small_len[API_HEADER_ORIGIN] > 0 ? c->small[API_HEADER_ORIGIN] : "none",
                  refusal);
            conn_send_error(c, 403, refusal);
            conn_request_done(c);
            return;
        }
    }
    if (session_end_path) {
        handle_session_end(c);
        conn_request_done(c);
        return;
    }

    bool admin_path = strcmp(path, "/v1/import") == 0 || strcmp(path, "/v1/backup") == 0 ||
                      strcmp(path, "/v1/crl") == 0 || strncmp(path, "/v1/members/", 12) == 0 ||
                      strncmp(path, "/v1/users/", 10) == 0;
    const char *why_not = user_may_reach(c, path, method != HTTP_GET);
    if (why_not == NULL && admin_path && c->who != WHO_INTEGRATION)
        why_not = "this is an admin operation: use the trialsync CLI with the node's "
                  "integration credential";
    if (why_not != NULL) {
        conn_send_error(c, 403, why_not);
        conn_request_done(c);
        return;
    }

    if (method == HTTP_GET && strcmp(path, "/v1/session") == 0) {
        conn_send_json(c, 200, session_json(c, c->session));
        conn_request_done(c);
        return;
    }
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
                handle_history(c, type, id, query);
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
    } else if (strcmp(path, "/v1/sdv") == 0 && method == HTTP_POST) {
        handle_sdv(c);
        return;  /* handle_sdv ends the request */
    } else if ((strcmp(path, "/v1/enrollment/cap") == 0 ||
                strcmp(path, "/v1/enrollment/grant") == 0) && method == HTTP_POST) {
        handle_enrollment(c, strcmp(path, "/v1/enrollment/grant") == 0);
        return;  /* handle_enrollment ends the request */
    } else if (strcmp(path, "/v1/sign") == 0 && method == HTTP_POST) {
        handle_sign(c);
        return;  /* handle_sign ends the request */
    } else if ((strcmp(path, "/v1/lock") == 0 || strcmp(path, "/v1/unlock") == 0) &&
               method == HTTP_POST) {
        handle_lock(c, strcmp(path, "/v1/lock") == 0);
        return;  /* handle_lock ends the request */
    } else if (strncmp(path, "/v1/users/", 10) == 0 && method == HTTP_POST) {
        /* A user account, on an admin's word: {"fields": {...}, "reason": R,
         * "user": ADMIN}. */
        if (strlen(path + 10) > TS_ID_BYTES_MAX) {
            conn_send_error(c, 400, "user id too long");
        } else {
            handle_write(c, SCHEMA_USER_TYPE, path + 10, true);
            return;
        }
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
        handle_conflicts(c, query);
    } else if (strcmp(path, "/v1/status") == 0) {
        handle_status(c);
    } else if (strcmp(path, "/v1/enrollment") == 0) {
        conn_send_json(c, 200, enroll_node_json(c->api->node));
    } else if (strcmp(path, "/v1/digest") == 0) {
        handle_digest(c, query);
    } else if (strcmp(path, "/v1/saes") == 0) {
        handle_saes(c, query);
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
    conn_arm(c, API_HEADER_TIMEOUT_MS);
    c->url_len = 0;
    c->auth_len = 0;
    c->cookie_len = 0;
    memset(c->small_len, 0, sizeof(c->small_len));
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

/* Which of the small headers name is (case-insensitive), or API_HEADER_NONE. */
static enum api_header small_header_of(const char *name)
{
    static const char *const names[API_HEADER_COUNT] = {
        [API_HEADER_CSRF] = "x-csrf-token",
        [API_HEADER_CONTENT_TYPE] = "content-type",
        [API_HEADER_ORIGIN] = "origin",
        [API_HEADER_HOST] = "host",
    };
    for (int h = API_HEADER_NONE + 1; h < API_HEADER_COUNT; h++) {
        if (strcasecmp(name, names[h]) == 0)
            return (enum api_header)h;
    }
    return API_HEADER_NONE;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct api_conn *c = p->data;
    if (c->header_is_auth || c->header_is_cookie || c->header_small != API_HEADER_NONE ||
        c->header_name_len == (size_t)-1)
        c->header_name_len = 0;
    c->header_is_auth = false;
    c->header_is_cookie = false;
    c->header_small = API_HEADER_NONE;
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
    bool reading = c->header_is_auth || c->header_is_cookie || c->header_small != API_HEADER_NONE;
    if (!reading && c->header_name_len == (size_t)-1)
        return 0;
    if (!reading) {
        c->header_name[c->header_name_len] = '\0';
        c->header_is_auth = strcasecmp(c->header_name, "authorization") == 0;
        c->header_is_cookie = strcasecmp(c->header_name, "cookie") == 0;
        c->header_small = small_header_of(c->header_name);
        c->header_name_len = 0;
        if (c->header_is_auth)
            c->auth_len = 0;
        else if (c->header_is_cookie)
            c->cookie_len = 0;
        else if (c->header_small != API_HEADER_NONE)
            c->small_len[c->header_small] = 0;
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
    } else if (c->header_small != API_HEADER_NONE) {
        size_t *n = &c->small_len[c->header_small];
        if (*n + len > API_SMALL_HEADER_BYTES_MAX)
            return 1;
        memcpy(c->small[c->header_small] + *n, at, len);
        *n += len;
        c->small[c->header_small][*n] = '\0';
    }
    return 0;
}

/*
 * The headers are whole: the credentials are judged here, before any of the
 * body is read, so a client without them cannot make the node buffer a body
 * (conn_feed answers 401 and finishes the connection).  A request without a
 * body goes on to dispatch, which answers the public routes (/healthz, the
 * dashboard's sign-in form) and refuses the rest.
 */
static int on_headers_complete(http_parser *p)
{
    struct api_conn *c = p->data;
    c->header_name_len = 0;
    c->header_is_auth = false;
    c->header_is_cookie = false;
    c->header_small = API_HEADER_NONE;
    c->authed = authorized(c);
    if (c->authed)
        c->proven = true;
    bool has_body = (p->flags & F_CHUNKED) != 0 ||
                    (p->content_length > 0 && p->content_length != ULLONG_MAX);
    /* The one body read before any credential: a sign-in, which carries
     * the credential, small and of a declared length. */
    static const char signin_path[] = "/v1/session";
    size_t sp = sizeof(signin_path) - 1;
    bool signin = p->method == HTTP_POST && (p->flags & F_CHUNKED) == 0 &&
                  p->content_length <= API_SIGNIN_BODY_BYTES_MAX && c->url_len >= sp &&
                  memcmp(c->url, signin_path, sp) == 0 &&
                  (c->url_len == sp || c->url[sp] == '?');
    if (!c->authed && has_body && !signin) {
        c->body_refused = true;
        return -1;  /* HPE_CB_headers_complete: conn_feed answers */
    }
    conn_arm(c, API_BODY_TIMEOUT_MS);
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
    conn_arm(c, 0);  /* being answered: the node, not the client, holds it now */
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
    if (a->stopping && a->listener_closed && a->tick_closed && a->accept_resume_closed &&
        a->connections == 0) {
        users_free(a->users);
        free(a);
    }
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
    assert(c->api->connections_open > 0);
    c->api->connections_open--;
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
    if (len > 0)
        c->read_any = true;
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
        if (e == HPE_CB_headers_complete && c->body_refused) {
            /* conn_send finishes the connection (Connection: close) and stops
             * reading: the body stays unread in the kernel until the close. */
            c->keep_alive = false;
            c->api->refused_unauth_body++;
            conn_send_error(c, 401,
                            "missing or wrong API token: send 'Authorization: Bearer <token>' "
                            "with the content of the node's token file (checked before the "
                            "body is read)");
            if (!c->shutting_down)
                conn_close(c);
            return;
        }
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

/* Every connection reads into the API's one buffer: libuv hands it to
 * read_cb before it asks for another, and conn_feed copies what it keeps, so
 * a flood of readers costs no allocation per read. */
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct api_conn *c = container_of((uv_tcp_t *)h, struct api_conn, tcp);
    (void)suggested;
    assert(!c->api->read_buf_lent);
    c->api->read_buf_lent = true;
    *buf = uv_buf_init(c->api->read_buf, sizeof(c->api->read_buf));
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
    /* UV_ENOBUFS aside, libuv returns the buffer alloc_cb lent. */
    assert(buf->base == NULL || buf->base == c->api->read_buf);
    c->api->read_buf_lent = false;
}

/* Sets c's deadline timeout_ms from now (0: none). */
static void conn_arm(struct api_conn *c, uint32_t timeout_ms)
{
    c->deadline_ms = timeout_ms == 0 ? 0 : uv_now(c->tcp.loop) + timeout_ms;
}

/* Closes every connection past its deadline; runs every API_TICK_MS. */
static void api_tick_cb(uv_timer_t *t)
{
    struct api *a = container_of(t, struct api, tick);
    uint64_t now = uv_now(t->loop);
    /* conn_close only marks and asks uv_close: the list stays intact. */
    for (struct api_conn *c = a->conns; c != NULL; c = c->next) {
        if (c->closing || c->deadline_ms == 0 || now < c->deadline_ms)
            continue;
        assert(!c->busy);
        a->timed_out++;
        conn_close(c);
    }
}

static bool addr_same_host(const struct sockaddr_storage *x, const struct sockaddr_storage *y)
{
    if (x->ss_family != y->ss_family)
        return false;
    if (x->ss_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)x)->sin_addr,
                      &((const struct sockaddr_in *)y)->sin_addr, sizeof(struct in_addr)) == 0;
    if (x->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)x)->sin6_addr,
                      &((const struct sockaddr_in6 *)y)->sin6_addr,
                      sizeof(struct in6_addr)) == 0;
    return false;
}

/*
 * True when closing c costs nobody an answer: it is not being answered, not
 * inside a request whose credentials were good, and has nothing queued (one
 * finishing after its last answer has handed that answer to the kernel).  A
 * connection this node has not read from yet is spared for
 * API_EVICT_GRACE_MS: its request may be waiting unread behind the accepts of
 * a flood, and evicting it would judge it without reading it.  A newcomer
 * that has proven its credentials skips that grace (skip_grace): it goes
 * before connections that have shown nothing.
 */
static bool conn_evictable(const struct api_conn *c, uint64_t now, bool skip_grace)
{
    if (c->closing || c->busy || c->authed || c->tcp.write_queue_size > 0)
        return false;
    return skip_grace || c->read_any || now - c->accepted_ms >= API_EVICT_GRACE_MS;
}

/* The oldest evictable connection other than self, from host's address when
 * host is not NULL; NULL when there is none. */
static struct api_conn *oldest_evictable(struct api *a, const struct api_conn *self,
                                         const struct sockaddr_storage *host)
{
    struct api_conn *oldest = NULL;
    uint64_t now = uv_now(a->listener.loop);
    for (struct api_conn *o = a->conns; o != NULL; o = o->next)  /* newest first */
        if (o != self && conn_evictable(o, now, self->proven) &&
            (host == NULL || addr_same_host(&o->addr, host)))
            oldest = o;
    return oldest;
}

static void conn_read_first(struct api_conn *c);

/*
 * Reads what the oldest not-yet-read connections of the scope (host's
 * address, or all when host is NULL) have sent, at most API_ADMIT_READS_MAX
 * of them: a full cap of connections accepted in a burst is judged (answered,
 * refused at its headers, or seen to dribble) before a newcomer is refused.
 */
static void judge_unread(struct api *a, const struct api_conn *self,
                         const struct sockaddr_storage *host)
{
    struct api_conn *o = a->conns;
    while (o != NULL && o->next != NULL)
        o = o->next;
    unsigned reads = 0;
    for (; o != NULL && reads < API_ADMIT_READS_MAX; o = o->prev) {
        if (o == self || o->closing || o->read_any ||
            (host != NULL && !addr_same_host(&o->addr, host)))
            continue;
        conn_read_first(o);
        reads++;
    }
}

/* Closes the oldest evictable connection of the scope (see judge_unread);
 * false when there is none. */
static bool evict_one(struct api *a, const struct api_conn *self,
                      const struct sockaddr_storage *host)
{
    struct api_conn *victim = oldest_evictable(a, self, host);
    if (victim == NULL) {
        judge_unread(a, self, host);
        victim = oldest_evictable(a, self, host);
    }
    if (victim == NULL)
        return false;
    a->evicted++;
    conn_close(victim);
    return true;
}

/*
 * Makes room for the newly accepted c under both caps by evicting the oldest
 * evictable connection of the scope that is full (its address, then all).
 * False when a cap is full of connections inside authenticated requests (or
 * not yet read, and within their grace).
 */
static bool conn_admit(struct api *a, struct api_conn *c)
{
    if (c->busy)
        return true;  /* being answered (conn_read_first): over a cap only until then */
    size_t same_addr = 0;
    for (const struct api_conn *o = a->conns; o != NULL; o = o->next)
        if (o != c && !o->closing && addr_same_host(&o->addr, &c->addr))
            same_addr++;
    /* Loops: connections judged and being answered at accept are let in
     * over a cap (conn_read_first), so a scope can be more than one over. */
    for (; same_addr >= API_CONNECTIONS_PER_ADDR_MAX; same_addr--)
        if (!evict_one(a, c, &c->addr))
            return false;
    while (a->connections_open > TS_API_CONNECTIONS_MAX)
        if (!evict_one(a, c, NULL))
            return false;
    assert(a->connections_open <= TS_API_CONNECTIONS_MAX);
    return true;
}

/* Answers 503 with one non-blocking write of a constant and closes: a
 * refusal costs no allocation and no read. */
static void conn_refuse_full(struct api_conn *c)
{
    static const char busy[] =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        "Content-Length: 60\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
        "{\"error\":\"too many API connections, try again in a second\"}\n";
    c->api->refused_full++;
    uv_buf_t b = uv_buf_init((char *)busy, sizeof(busy) - 1);
    (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    conn_close(c);
}

/*
 * Reads what a client has already sent, at once, without waiting for the
 * loop to poll it: accept_one judges a newcomer this way before admitting it,
 * and judge_unread the connections holding a full cap.  A client that sends
 * its request with its connect (the CLI, a scraper) is answered here, or is
 * inside an authenticated request, before any accept could evict it.  At
 * most API_FIRST_READ_BYTES; the rest of its bytes come through read_cb.
 */
static void conn_read_first(struct api_conn *c)
{
    char buf[API_FIRST_READ_BYTES];
    if (c->closing || c->shutting_down)
        return;
    uv_os_fd_t fd;
    if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) != 0)
        return;
    ssize_t got = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (got > 0)
        conn_feed(c, buf, (size_t)got);
    /* 0 (the client left) and errors (EAGAIN: nothing yet) are read_cb's. */
}

static void accept_one(struct api *a);

/*
 * libuv accepts while the backlog holds connections, and a flood refills it
 * as fast as this node closes what it evicts, so one wakeup could accept
 * without end, reading nobody and freeing nothing.  After
 * API_ACCEPTS_PER_WAKEUP_MAX accepts, the next one is left pending: libuv
 * stops watching the listener until accept_resume_cb takes it, before the
 * loop next polls, so reads and close callbacks run in between.
 */
static void accept_cb(uv_stream_t *server, int status)
{
    struct api *a = container_of((uv_tcp_t *)server, struct api, listener);
    if (status < 0 || a->stopping)
        return;
    if (a->accepts_this_wakeup >= API_ACCEPTS_PER_WAKEUP_MAX) {
        a->accept_pending = true;
        return;
    }
    a->accepts_this_wakeup++;
    accept_one(a);
}

static void accept_resume_cb(uv_prepare_t *h)
{
    struct api *a = container_of(h, struct api, accept_resume);
    a->accepts_this_wakeup = 0;
    if (a->accept_pending && !a->stopping) {
        a->accept_pending = false;
        a->accepts_this_wakeup++;
        accept_one(a);  /* its uv_accept makes libuv watch the listener again */
    }
}

static void accept_one(struct api *a)
{
    uv_stream_t *server = (uv_stream_t *)&a->listener;
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
    a->connections_open++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    int addr_len = (int)sizeof(c->addr);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->addr, &addr_len) != 0)
        c->addr.ss_family = AF_UNSPEC;
    c->accepted_ms = uv_now(server->loop);
    conn_arm(c, API_HEADER_TIMEOUT_MS);
    uv_tcp_nodelay(&c->tcp, 1);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
    /* Judged before admitted: what it sent decides whether it may go
     * before the connections that hold the slots. */
    conn_read_first(c);
    if (c->closing || c->shutting_down)
        return;  /* answered and finishing, or refused at its headers */
    if (!conn_admit(a, c))
        conn_refuse_full(c);
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
    session_table_init(&a->sessions);
    a->users = users_new(n->store);
    if (a->users == NULL) {
        free(a);
        return ts_error_set(err, TS_ERR_NOMEM, "out of memory");
    }
    a->cert_not_after_s = cert_not_after(n->cfg.cert);
    a->ca_not_after_s = cert_not_after(n->cfg.ca);
    if (uv_ip4_addr(n->cfg.api.host, n->cfg.api.port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(n->cfg.api.host, n->cfg.api.port, (struct sockaddr_in6 *)&addr) != 0) {
        free(a);
        return ts_error_set(err, TS_ERR_CONFIG, "[api] listen: '%s' is not an IP address",
                            n->cfg.api.host);
    }
    a->tick_closed = true;  /* until the handles are started below */
    a->accept_resume_closed = true;
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
    uv_timer_init(n->loop, &a->tick);
    a->tick_closed = false;
    uv_timer_start(&a->tick, api_tick_cb, API_TICK_MS, API_TICK_MS);
    uv_prepare_init(n->loop, &a->accept_resume);
    a->accept_resume_closed = false;
    uv_prepare_start(&a->accept_resume, accept_resume_cb);
    *out = a;
    return 0;
}

static void tick_closed_cb(uv_handle_t *h)
{
    struct api *a = container_of((uv_timer_t *)h, struct api, tick);
    a->tick_closed = true;
    api_maybe_free(a);
}

static void accept_resume_closed_cb(uv_handle_t *h)
{
    struct api *a = container_of((uv_prepare_t *)h, struct api, accept_resume);
    a->accept_resume_closed = true;
    api_maybe_free(a);
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
    uv_close((uv_handle_t *)&a->tick, tick_closed_cb);
    uv_close((uv_handle_t *)&a->accept_resume, accept_resume_closed_cb);
    uv_close((uv_handle_t *)&a->listener, listener_closed_cb);
}
