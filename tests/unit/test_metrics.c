/*
 * test_metrics.c: the Prometheus exposition of a node's status: exact sample
 * lines, label escaping, cumulative histogram buckets, absent fields left
 * out (an older node), deterministic order, and a well-formed exposition
 * (every family's # HELP and # TYPE once, before its samples, its samples
 * together).  The status and SAE documents of the exposition tests come from
 * a live hub and site (see "a live hub and site" below), not from JSON
 * written here, so they cannot drift from what /v1/status and /v1/saes
 * answer; hand-built JSON is left only for the malformed, missing and
 * out-of-range shapes the renderer must cope with.
 */
#include "unit.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "../../node/api.h"
#include "../../node/config.h"
#include "../../node/metrics.h"
#include "../../node/node.h"
#include "../../node/peer.h"
#include "../../node/pki.h"
#include "../../proto/errors.h"
#include "version.h"

static json_t *parse(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    if (j == NULL)
        fprintf(stderr, "bad test JSON at line %d: %s\n", err.line, err.text);
    CU_ASSERT_PTR_NOT_NULL_FATAL(j);
    return j;
}

/* Renders; the test fails when rendering does. Caller frees. */
static char *render(const json_t *status, const json_t *saes)
{
    char *out = NULL;
    size_t len = 0;
    int rc = metrics_render(status, saes, &out, &len);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    CU_ASSERT_EQUAL(strlen(out), len);
    return out;
}

/* True when text holds line as a whole line. */
static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++) {
        bool starts = p == text || p[-1] == '\n';
        bool ends = p[n] == '\n' || p[n] == '\0';
        if (starts && ends)
            return true;
    }
    return false;
}

static void assert_line(const char *text, const char *line)
{
    if (!has_line(text, line))
        fprintf(stderr, "\nmissing line: %s\n--- in:\n%s---\n", line, text);
    CU_ASSERT(has_line(text, line));
}

static void assert_no_line(const char *text, const char *line)
{
    if (has_line(text, line))
        fprintf(stderr, "\nunexpected line: %s\n", line);
    CU_ASSERT(!has_line(text, line));
}

static size_t count_substr(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/*
 * Checks the exposition's structure the way a scraper reads it: each family
 * has one # HELP then one # TYPE line before its samples; every sample's
 * name is the family's (histograms: _bucket, _sum, _count); a family's
 * samples are contiguous; every value is a number; label sets are
 * {name="value",...} with escaped values.  Returns the number of samples.
 */
static size_t check_well_formed(const char *text)
{
    char family[128] = "";
    char type[32] = "";
    char seen[64][128];
    size_t seen_count = 0;
    size_t samples = 0;
    const char *p = text;

    while (*p != '\0') {
        const char *eol = strchr(p, '\n');
        CU_ASSERT_PTR_NOT_NULL_FATAL(eol);  /* every line ends with a line feed */
        char line[4096];
        size_t n = (size_t)(eol - p);
        CU_ASSERT_FATAL(n < sizeof(line));
        memcpy(line, p, n);
        line[n] = '\0';
        p = eol + 1;

        if (strncmp(line, "# HELP ", 7) == 0) {
            char name[128];
            CU_ASSERT_FATAL(sscanf(line + 7, "%127s", name) == 1);
            for (size_t i = 0; i < seen_count; i++)
                CU_ASSERT(strcmp(seen[i], name) != 0);  /* a family appears once */
            CU_ASSERT_FATAL(seen_count < 64);
            snprintf(seen[seen_count++], sizeof(seen[0]), "%s", name);
            snprintf(family, sizeof(family), "%s", name);
            type[0] = '\0';
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            char name[128];
            CU_ASSERT_FATAL(sscanf(line + 7, "%127s %31s", name, type) == 2);
            CU_ASSERT_STRING_EQUAL(name, family);
            CU_ASSERT(strcmp(type, "gauge") == 0 || strcmp(type, "counter") == 0 ||
                      strcmp(type, "histogram") == 0);
            if (strcmp(type, "counter") == 0)
                CU_ASSERT(strlen(name) > 6 && strcmp(name + strlen(name) - 6, "_total") == 0);
            continue;
        }
        CU_ASSERT_FATAL(line[0] != '#');
        CU_ASSERT_FATAL(type[0] != '\0');  /* a sample before its family's TYPE */
        size_t name_len = strcspn(line, "{ ");
        char name[128];
        CU_ASSERT_FATAL(name_len < sizeof(name));
        memcpy(name, line, name_len);
        name[name_len] = '\0';
        if (strcmp(type, "histogram") == 0) {
            size_t fl = strlen(family);
            CU_ASSERT(strncmp(name, family, fl) == 0);
            CU_ASSERT(strcmp(name + fl, "_bucket") == 0 || strcmp(name + fl, "_sum") == 0 ||
                      strcmp(name + fl, "_count") == 0);
        } else {
            CU_ASSERT_STRING_EQUAL(name, family);
        }
        const char *q = line + name_len;
        if (*q == '{') {
            q++;
            while (*q != '}') {
                size_t ln = strspn(q, "abcdefghijklmnopqrstuvwxyz_");
                CU_ASSERT_FATAL(ln > 0);
                q += ln;
                CU_ASSERT_FATAL(q[0] == '=' && q[1] == '"');
                q += 2;
                while (*q != '"') {
                    CU_ASSERT_FATAL(*q != '\0');
                    if (*q == '\\') {
                        CU_ASSERT_FATAL(q[1] == '\\' || q[1] == '"' || q[1] == 'n');
                        q++;
                    }
                    q++;
                }
                q++;
                if (*q == ',')
                    q++;
                else
                    CU_ASSERT_FATAL(*q == '}');
            }
            q++;
        }
        CU_ASSERT_FATAL(*q == ' ');
        char *end;
        double v = strtod(q + 1, &end);
        CU_ASSERT(*end == '\0');
        CU_ASSERT(!isnan(v));
        samples++;
    }
    return samples;
}

/* ---- a live hub and site: the status documents as the node produces them ---- */

/*
 * The documents the producer-facing tests read are not written by hand: a
 * hub (hub1) and a site (101) of trial T1 run in this process on one libuv
 * loop, with real certificates (pki_ca_create, pki_issue), node.conf and
 * token files, started the way trialsyncd starts a node (node_open,
 * peer_mgr_start, api_start).  A helper thread talks to their HTTP APIs over
 * loopback with the bearer token: the site records a subject and a serious AE
 * while no hub runs (its /v1/status and /v1/saes are taken then: the SAE is in
 * flight), then the hub starts, the membership log gets 101 (active) and 102
 * (revoked), the site connects and replicates, and the hub's /v1/status and
 * /v1/saes are taken.  So a key renamed in status_json (api.c) or
 * status_extend (peer.c) fails the tests below.
 */
#define LIVE_TRIAL "T1"
#define LIVE_TOKEN "metrics-test-token-0123456789abcdef"
#define LIVE_WAIT_MS 20000

struct live_node {
    const char *id;
    enum pki_role role;
    char dir[PATH_MAX];
    struct config cfg;
    struct node *node;
    struct peer_mgr *peers;
    struct api *api;
    uint16_t api_port;
    bool running;
};

enum live_cmd { LIVE_START_HUB, LIVE_STOP };

static struct {
    uv_loop_t loop;
    uv_async_t async;
    uv_sem_t done;
    uv_mutex_t lock;
    enum live_cmd cmd;
    int cmd_rc;
    struct live_node hub, site;
    uint16_t hub_peer_port;
    time_t aware_s;            /* the SAE's awareness time, whole seconds */
    char failure[512];         /* the helper thread's first failure */
    json_t *hub_status, *hub_saes, *site_status, *site_saes;
    json_t *site_status_after;  /* the site's, once it replicated to the hub */
    bool ran;
} live;

static void live_fail(const char *fmt, ...)
{
    if (live.failure[0] != '\0')
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(live.failure, sizeof(live.failure), fmt, ap);
    va_end(ap);
}

/* A loopback TCP port nothing listens on now (bound to 0, then released). */
static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    CU_ASSERT_FATAL(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void write_text(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    CU_ASSERT_FATAL(fd >= 0);
    size_t len = strlen(text);
    CU_ASSERT_FATAL(write(fd, text, len) == (ssize_t)len);
    CU_ASSERT_FATAL(fchmod(fd, mode) == 0);
    close(fd);
}

/* A node directory as `trialsync init` / `site add` make one: key, certificate,
 * CA certificate, token (0600) and node.conf. */
static void live_node_dir(struct live_node *ln, const char *base, const char *ca_dir)
{
    struct pki_identity who;
    struct ts_error err = {0};
    char path[PATH_MAX + 32], conf[1024];

    snprintf(ln->dir, sizeof(ln->dir), "%s/%s", base, ln->id);
    memset(&who, 0, sizeof(who));
    snprintf(who.trial, sizeof(who.trial), "%s", LIVE_TRIAL);
    who.role = ln->role;
    snprintf(who.id, sizeof(who.id), "%s", ln->id);
    int rc = pki_issue(ca_dir, &who, NULL, 30, ln->dir, NULL, NULL, &err);
    if (rc != 0)
        fprintf(stderr, "pki_issue %s: %s\n", ln->id, err.msg);
    CU_ASSERT_FATAL(rc == 0);
    ln->api_port = free_port();
    if (ln->role == PKI_ROLE_HUB)
        snprintf(conf, sizeof(conf),
                 "[node]\nid = %s\nrole = hub\ntrial = %s\n[api]\nlisten = 127.0.0.1:%u\n"
                 "[peer]\nlisten = 127.0.0.1:%u\n[storage]\ndisk_free_min_mb = 0\n",
                 ln->id, LIVE_TRIAL, ln->api_port, live.hub_peer_port);
    else
        snprintf(conf, sizeof(conf),
                 "[node]\nid = %s\nrole = site\ntrial = %s\n[api]\nlisten = 127.0.0.1:%u\n"
                 "[peer]\nhub = 127.0.0.1:%u\n[storage]\ndisk_free_min_mb = 0\n",
                 ln->id, LIVE_TRIAL, ln->api_port, live.hub_peer_port);
    snprintf(path, sizeof(path), "%s/api.token", ln->dir);
    write_text(path, LIVE_TOKEN "\n", 0600);
    snprintf(path, sizeof(path), "%s/node.conf", ln->dir);
    write_text(path, conf, 0644);
    rc = config_load(path, &ln->cfg, &err);
    if (rc != 0)
        fprintf(stderr, "config_load %s: %s\n", path, err.msg);
    CU_ASSERT_FATAL(rc == 0);
}

/* trialsyncd's start sequence (node/main.c), on live.loop. */
static int live_start(struct live_node *ln)
{
    struct ts_error err = {0};
    if (node_open(&ln->node, &live.loop, &ln->cfg, &err) != 0) {
        live_fail("node_open %s: %s", ln->id, err.msg);
        return -1;
    }
    if (peer_mgr_start(&ln->peers, ln->node, &err) != 0) {
        live_fail("peer_mgr_start %s: %s", ln->id, err.msg);
        node_close(ln->node);
        return -1;
    }
    struct api_hooks hooks = {0};
    peer_mgr_api_hooks(ln->peers, &hooks);
    if (api_start(&ln->api, ln->node, &hooks, &err) != 0) {
        live_fail("api_start %s: %s", ln->id, err.msg);
        peer_mgr_stop(ln->peers);
        node_close(ln->node);
        return -1;
    }
    ln->running = true;
    return 0;
}

/* trialsyncd's stop on a signal. */
static void live_stop(struct live_node *ln)
{
    if (!ln->running)
        return;
    ln->running = false;
    peer_mgr_stop(ln->peers);
    api_stop(ln->api);
    node_close(ln->node);
}

static void live_async_cb(uv_async_t *h)
{
    (void)h;
    uv_mutex_lock(&live.lock);
    enum live_cmd cmd = live.cmd;
    uv_mutex_unlock(&live.lock);
    if (cmd == LIVE_START_HUB) {
        live.cmd_rc = live_start(&live.hub);
    } else {
        live_stop(&live.hub);
        live_stop(&live.site);
        uv_close((uv_handle_t *)&live.async, NULL);
        live.cmd_rc = 0;
    }
    uv_sem_post(&live.done);
}

/* Runs cmd on the loop thread and waits for it. */
static int live_command(enum live_cmd cmd)
{
    uv_mutex_lock(&live.lock);
    live.cmd = cmd;
    uv_mutex_unlock(&live.lock);
    uv_async_send(&live.async);
    uv_sem_wait(&live.done);
    return live.cmd_rc;
}

/*
 * One HTTP/1.1 request to a node's API with its bearer token; returns the
 * HTTP status and the body (malloc'ed) in *body, or -1 when the exchange
 * failed.
 */
static int http(const struct live_node *ln, const char *method, const char *path,
                const char *json_body, char **body)
{
    char req[4096];
    size_t blen = json_body != NULL ? strlen(json_body) : 0;
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                     "Connection: close\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, path, LIVE_TOKEN, blen, json_body != NULL ? json_body : "");
    *body = NULL;
    if (n < 0 || (size_t)n >= sizeof(req))
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(ln->api_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        write(fd, req, (size_t)n) != n) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (buf == NULL || len + 1 >= cap) {
            char *bigger = buf != NULL ? realloc(buf, cap * 2) : NULL;
            if (bigger == NULL) {
                free(buf);
                close(fd);
                return -1;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r <= 0)
            break;
        len += (size_t)r;
        buf[len] = '\0';
        /* Done once the whole body of Content-Length is in. */
        const char *head_end = strstr(buf, "\r\n\r\n");
        const char *cl = strstr(buf, "\r\nContent-Length:");
        if (head_end != NULL && cl != NULL && cl < head_end &&
            len >= (size_t)(head_end + 4 - buf) + strtoul(cl + 17, NULL, 10))
            break;
    }
    close(fd);
    buf[len] = '\0';
    int status = 0;
    const char *head_end = strstr(buf, "\r\n\r\n");
    if (sscanf(buf, "HTTP/1.1 %d", &status) != 1 || head_end == NULL) {
        free(buf);
        return -1;
    }
    memmove(buf, head_end + 4, strlen(head_end + 4) + 1);
    *body = buf;
    return status;
}

/* A request that must answer 200; its body as JSON (NULL after a failure). */
static json_t *http_json(const struct live_node *ln, const char *method, const char *path,
                         const char *json_body)
{
    char *body = NULL;
    int status = http(ln, method, path, json_body, &body);
    json_t *doc = NULL;
    if (status != 200) {
        live_fail("%s %s %s: HTTP %d: %s", ln->id, method, path, status,
                  body != NULL ? body : "(no answer)");
    } else {
        json_error_t err;
        doc = json_loads(body, 0, &err);
        if (doc == NULL)
            live_fail("%s %s %s: not JSON: %s", ln->id, method, path, err.text);
    }
    free(body);
    return doc;
}

static void post(const struct live_node *ln, const char *path, const char *json_body)
{
    json_decref(http_json(ln, "POST", path, json_body));
}

/* The row of peer id in a status document, or NULL. */
static json_t *peer_row(const json_t *status, const char *id)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(status, "peers"), i, p)
        if (json_is_string(json_object_get(p, "id")) &&
            strcmp(json_string_value(json_object_get(p, "id")), id) == 0)
            return p;
    return NULL;
}

static void live_script(void *arg)
{
    (void)arg;
    char aware[32], body[512];
    struct tm tm;
    live.aware_s = time(NULL);
    gmtime_r(&live.aware_s, &tm);
    strftime(aware, sizeof(aware), "%Y-%m-%dT%H:%M:%SZ", &tm);

    /* The site alone: a subject and a serious AE, no hub to acknowledge it. */
    post(&live.site, "/v1/records/subject/101-0001",
         "{\"fields\":{\"site\":\"101\",\"sex\":\"F\"},\"user\":\"investigator\"}");
    snprintf(body, sizeof(body),
             "{\"fields\":{\"aeterm\":\"Anaphylaxis\",\"aestdtc\":\"2026-11-20\","
             "\"aesev\":\"SEVERE\",\"aeser\":\"Y\",\"aeslife\":\"Y\",\"sae_aware_dtc\":\"%s\","
             "\"status\":\"ongoing\"},\"user\":\"investigator\"}",
             aware);
    post(&live.site, "/v1/records/ae/101-0001-AE-001", body);
    live.site_status = http_json(&live.site, "GET", "/v1/status", NULL);
    live.site_saes = http_json(&live.site, "GET", "/v1/saes", NULL);

    /* The hub: 101 active and 102 revoked in its membership log; 101 connects. */
    if (live.failure[0] == '\0' && live_command(LIVE_START_HUB) == 0) {
        post(&live.hub, "/v1/members/101",
             "{\"fields\":{\"status\":\"active\",\"name\":\"Site 101\"},"
             "\"reason\":\"site added\",\"user\":\"admin\"}");
        post(&live.hub, "/v1/members/102",
             "{\"fields\":{\"status\":\"revoked\",\"name\":\"Site 102\"},"
             "\"reason\":\"site closed\",\"user\":\"admin\"}");
        /* Waits on the record, not on status keys: a renamed key must fail
         * an assertion below, not this wait. */
        for (int waited = 0; live.failure[0] == '\0'; waited += 50) {
            char *got = NULL;
            int status = http(&live.hub, "GET", "/v1/records/ae/101-0001-AE-001", NULL, &got);
            free(got);
            if (status == 200)
                break;
            if (waited >= LIVE_WAIT_MS) {
                live_fail("site 101's SAE did not reach the hub within %d ms", LIVE_WAIT_MS);
                break;
            }
            nanosleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);
        }
        live.hub_status = http_json(&live.hub, "GET", "/v1/status", NULL);
        live.hub_saes = http_json(&live.hub, "GET", "/v1/saes", NULL);
        live.site_status_after = http_json(&live.site, "GET", "/v1/status", NULL);
    }
    live_command(LIVE_STOP);
}

/* Runs the live hub and site once; the tests read the documents taken. */
static void live_once(void)
{
    if (live.ran) {
        CU_ASSERT_FATAL(live.failure[0] == '\0' && live.hub_status != NULL &&
                        live.hub_saes != NULL && live.site_status != NULL &&
                        live.site_saes != NULL);
        return;
    }
    live.ran = true;
    const char *base = unit_tmpdir("metrics-live");
    char ca_dir[PATH_MAX];
    struct ts_error err = {0};
    snprintf(ca_dir, sizeof(ca_dir), "%s/ca", base);
    /* A year: the 30-day certificates issued after it, a second or more later,
     * must not outlive it (pki_issue refuses that). */
    int rc = pki_ca_create(ca_dir, LIVE_TRIAL, 365, NULL, &err);
    if (rc != 0)
        fprintf(stderr, "pki_ca_create: %s\n", err.msg);
    CU_ASSERT_FATAL(rc == 0);
    live.hub = (struct live_node){.id = "hub1", .role = PKI_ROLE_HUB};
    live.site = (struct live_node){.id = "101", .role = PKI_ROLE_SITE};
    live.hub_peer_port = free_port();
    live_node_dir(&live.hub, base, ca_dir);
    live_node_dir(&live.site, base, ca_dir);

    signal(SIGPIPE, SIG_IGN);
    CU_ASSERT_FATAL(uv_loop_init(&live.loop) == 0);
    CU_ASSERT_FATAL(uv_sem_init(&live.done, 0) == 0);
    CU_ASSERT_FATAL(uv_mutex_init(&live.lock) == 0);
    uv_async_init(&live.loop, &live.async, live_async_cb);
    uv_thread_t helper;
    if (live_start(&live.site) == 0) {
        CU_ASSERT_FATAL(uv_thread_create(&helper, live_script, NULL) == 0);
        uv_run(&live.loop, UV_RUN_DEFAULT);
        uv_thread_join(&helper);
    } else {
        uv_close((uv_handle_t *)&live.async, NULL);
        uv_run(&live.loop, UV_RUN_DEFAULT);
    }
    peer_mgr_free(live.hub.peers);
    peer_mgr_free(live.site.peers);
    CU_ASSERT(uv_loop_close(&live.loop) == 0);
    uv_sem_destroy(&live.done);
    uv_mutex_destroy(&live.lock);
    if (live.failure[0] != '\0')
        fprintf(stderr, "\nlive hub and site: %s\n", live.failure);
    CU_ASSERT_FATAL(live.failure[0] == '\0');
    CU_ASSERT_PTR_NOT_NULL_FATAL(live.hub_status);
    CU_ASSERT_PTR_NOT_NULL_FATAL(live.hub_saes);
    CU_ASSERT_PTR_NOT_NULL_FATAL(live.site_status);
    CU_ASSERT_PTR_NOT_NULL_FATAL(live.site_saes);
    CU_ASSERT_PTR_NOT_NULL_FATAL(live.site_status_after);
}

static void live_free(void)
{
    json_decref(live.hub_status);
    json_decref(live.hub_saes);
    json_decref(live.site_status);
    json_decref(live.site_saes);
    json_decref(live.site_status_after);
}

/* The value of key in obj as the metrics text prints it: integers exact,
 * true/false as 1/0.  The test fails when the producer did not send key. */
static const char *field_text(const json_t *obj, const char *key)
{
    static char bufs[8][32];
    static unsigned next;
    char *b = bufs[next++ % 8];
    const json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) && !json_is_boolean(v))
        fprintf(stderr, "\nthe node's document has no integer or boolean \"%s\"\n", key);
    CU_ASSERT_FATAL(json_is_integer(v) || json_is_boolean(v));
    if (json_is_boolean(v))
        snprintf(b, 32, "%d", json_is_true(v) ? 1 : 0);
    else
        snprintf(b, 32, "%lld", (long long)json_integer_value(v));
    return b;
}

/* Asserts "NAME{LABELS} VALUE" where VALUE is obj's key (see field_text). */
static void assert_sample(const char *out, const char *name_labels, const json_t *obj,
                          const char *key)
{
    char line[512];
    snprintf(line, sizeof(line), "%s %s", name_labels, field_text(obj, key));
    assert_line(out, line);
}

/* The hub's /v1/status and /v1/saes, from the live hub (not written here). */
static void test_metrics_hub_status_lines(void)
{
    live_once();
    const json_t *s = live.hub_status;
    char *out = render(s, live.hub_saes);

    assert_line(out, "# HELP trialsync_peer_connected 1 while a session with the peer is up, "
                     "0 otherwise.");
    assert_line(out, "# TYPE trialsync_peer_connected gauge");
    assert_line(out, "trialsync_info{node=\"hub1\",role=\"hub\",trial=\"T1\"} 1");

    /* 101 replicated: connected, heard from, sent its subject and SAE. */
    const json_t *p101 = peer_row(s, "101");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p101);
    CU_ASSERT(json_is_true(json_object_get(p101, "connected")));
    CU_ASSERT(json_is_false(json_object_get(p101, "revoked")));
    CU_ASSERT(json_is_string(json_object_get(p101, "last_seen")));
    CU_ASSERT(json_integer_value(json_object_get(p101, "entries_received")) >= 2);
    CU_ASSERT(json_integer_value(json_object_get(p101, "bytes_received")) > 0);
    CU_ASSERT(json_integer_value(json_object_get(p101, "bytes_sent")) > 0);
    assert_line(out, "trialsync_peer_connected{peer=\"101\",role=\"site\"} 1");
    assert_line(out, "trialsync_peer_revoked{peer=\"101\"} 0");
    assert_sample(out, "trialsync_peer_last_seen_age_seconds{peer=\"101\"}", p101,
                  "last_seen_age_s");
    /* The timestamp is the row's last_seen, heard from during this test. */
    const char *ts = strstr(out, "\ntrialsync_peer_last_seen_timestamp_seconds{peer=\"101\"} ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(ts);
    double seen_s = strtod(strchr(ts, '}') + 2, NULL);
    CU_ASSERT(seen_s >= (double)live.aware_s - 1);
    CU_ASSERT(seen_s <= (double)time(NULL) + 1);
    assert_line(out, "# TYPE trialsync_peer_last_seen_timestamp_seconds gauge");
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "# HELP trialsync_peer_last_seen_age_seconds Deprecated"));
    assert_sample(out, "trialsync_peer_behind_entries{peer=\"101\",lane=\"safety\",direction=\"send\"}",
                  p101, "behind_send_safety");
    assert_sample(out, "trialsync_peer_behind_entries{peer=\"101\",lane=\"bulk\",direction=\"send\"}",
                  p101, "behind_send_bulk");
    assert_sample(out, "trialsync_peer_behind_entries{peer=\"101\",lane=\"safety\",direction=\"receive\"}",
                  p101, "behind_recv_safety");
    assert_sample(out, "trialsync_peer_behind_entries{peer=\"101\",lane=\"bulk\",direction=\"receive\"}",
                  p101, "behind_recv_bulk");
    assert_line(out, "# TYPE trialsync_peer_sent_bytes_total counter");
    assert_sample(out, "trialsync_peer_sent_bytes_total{peer=\"101\"}", p101, "bytes_sent");
    assert_sample(out, "trialsync_peer_received_bytes_total{peer=\"101\"}", p101,
                  "bytes_received");
    assert_sample(out, "trialsync_peer_sent_entries_total{peer=\"101\"}", p101, "entries_sent");
    assert_sample(out, "trialsync_peer_received_entries_total{peer=\"101\"}", p101,
                  "entries_received");
    assert_sample(out, "trialsync_peer_batches_refused_total{peer=\"101\"}", p101,
                  "batches_refused");
    assert_sample(out, "trialsync_peer_saes_in_flight{peer=\"101\"}", p101, "saes_in_flight");

    /* 102 revoked in the membership log and never seen: no age sample rather
     * than a made-up one. */
    const json_t *p102 = peer_row(s, "102");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p102);
    CU_ASSERT(json_is_null(json_object_get(p102, "last_seen_age_s")));
    assert_line(out, "trialsync_peer_connected{peer=\"102\",role=\"site\"} 0");
    assert_line(out, "trialsync_peer_revoked{peer=\"102\"} 1");
    assert_sample(out, "trialsync_peer_batches_refused_total{peer=\"102\"}", p102,
                  "batches_refused");
    CU_ASSERT_PTR_NULL(strstr(out, "trialsync_peer_last_seen_age_seconds{peer=\"102\"}"));
    CU_ASSERT_PTR_NULL(strstr(out, "trialsync_peer_last_seen_timestamp_seconds{peer=\"102\"}"));
    assert_no_line(out, "trialsync_peer_last_seen_age_seconds{peer=\"102\"} 0");

    /* Every handshake failure reason the node counts, each a sample. */
    const json_t *fails = json_object_get(s, "handshake_failures");
    CU_ASSERT_FATAL(json_is_object(fails));
    CU_ASSERT(json_object_size(fails) >= 6);
    const char *reason;
    const json_t *count;
    json_object_foreach((json_t *)fails, reason, count) {
        char name[128];
        snprintf(name, sizeof(name), "trialsync_handshake_failures_total{reason=\"%s\"}", reason);
        assert_sample(out, name, fails, reason);
    }
    assert_line(out, "# TYPE trialsync_handshake_failures_total counter");
    assert_sample(out, "trialsync_handshake_failures_total{reason=\"certificate\"}", fails,
                  "certificate");
    assert_sample(out, "trialsync_handshake_failures_total{reason=\"trial\"}", fails, "trial");

    /* The hub received the SAE. */
    const json_t *sae = json_object_get(s, "sae");
    CU_ASSERT(json_integer_value(json_object_get(sae, "tracked")) >= 1);
    assert_sample(out, "trialsync_sae_in_flight", sae, "in_flight");
    assert_sample(out, "trialsync_sae_late", sae, "late");
    assert_sample(out, "trialsync_sae_at_risk", sae, "at_risk");
    assert_line(out, "# TYPE trialsync_sae_alarms_total counter");
    assert_sample(out, "trialsync_sae_alarms_total", sae, "alarms");

    /* The node's own numbers: its store holds the site's records and the
     * membership log. */
    CU_ASSERT(json_integer_value(json_object_get(s, "entries")) >= 4);
    CU_ASSERT(json_integer_value(json_object_get(s, "records")) >= 4);
    CU_ASSERT(json_integer_value(json_object_get(s, "store_bytes")) > 0);
    CU_ASSERT(json_integer_value(json_object_get(s, "disk_free_bytes")) > 0);
    CU_ASSERT(json_is_true(json_object_get(s, "accepting_writes")));
    assert_sample(out, "trialsync_conflicts_open", s, "conflicts");
    assert_sample(out, "trialsync_store_size_bytes", s, "store_bytes");
    assert_sample(out, "trialsync_disk_free_bytes", s, "disk_free_bytes");
    assert_sample(out, "trialsync_entries", s, "entries");
    assert_sample(out, "trialsync_records", s, "records");
    assert_line(out, "trialsync_accepting_writes 1");
    assert_sample(out, "trialsync_writes_refused_disk_total", s, "writes_refused_disk");
    assert_line(out, "trialsync_dashboard_sessions 0");
    assert_line(out, "trialsync_dashboard_requests_refused_total 0");
    assert_sample(out, "trialsync_uptime_seconds", s, "uptime_s");
    assert_line(out, "# TYPE trialsync_commit_duration_seconds histogram");
    /* The version vector is the status's business, not a metric. */
    CU_ASSERT(json_array_size(json_object_get(s, "version_vector")) > 0);
    CU_ASSERT_PTR_NULL(strstr(out, "version_vector"));

    /* The clock: the hub is no site, so it raises no clock alarm; peer 101
     * said its clock at hello, 102 was never seen. */
    assert_line(out, "trialsync_clock_alarm 0");
    CU_ASSERT(json_is_false(json_object_get(json_object_get(s, "clock"), "alarm")));
    CU_ASSERT(json_is_integer(json_object_get(p101, "clock_offset_ms")));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\ntrialsync_peer_clock_offset_seconds{peer=\"101\"} "));
    CU_ASSERT_PTR_NULL(strstr(out, "trialsync_peer_clock_offset_seconds{peer=\"102\"}"));
    /* Nothing refused: no per-rule sample, but the held counter is there. */
    CU_ASSERT_EQUAL(json_object_size(json_object_get(p101, "entries_refused")), 0);
    CU_ASSERT_PTR_NULL(strstr(out, "\ntrialsync_peer_entries_refused_total{"));
    assert_line(out, "trialsync_peer_batches_held_total{peer=\"101\"} 0");

    /* The build, the start time and the process, from the node's own status. */
    char line[256];
    snprintf(line, sizeof(line),
             "trialsync_build_info{version=\"%s\",store_format=\"%s\"} 1", TS_VERSION,
             field_text(s, "store_format"));
    assert_line(out, line);
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(s, "version")), TS_VERSION);
    json_int_t started_ms = json_integer_value(json_object_get(s, "started_at_ms"));
    CU_ASSERT(started_ms / 1000 >= (json_int_t)live.aware_s - 60);
    CU_ASSERT(started_ms / 1000 <= (json_int_t)time(NULL));
    const char *st = strstr(out, "\ntrialsync_start_time_seconds ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(st);
    CU_ASSERT(fabs(strtod(st + 30, NULL) - (double)started_ms / 1000.0) < 0.001);
    const json_t *proc = json_object_get(s, "process");
    CU_ASSERT_FATAL(json_is_object(proc));
    CU_ASSERT(json_integer_value(json_object_get(proc, "resident_bytes")) > 1024 * 1024);
    CU_ASSERT(json_integer_value(json_object_get(proc, "open_fds")) > 3);
    CU_ASSERT(json_integer_value(json_object_get(proc, "max_fds")) >=
              json_integer_value(json_object_get(proc, "open_fds")));
    CU_ASSERT(json_real_value(json_object_get(proc, "cpu_seconds")) >= 0);
    double proc_start = json_real_value(json_object_get(proc, "start_time_s"));
    CU_ASSERT(proc_start <= (double)started_ms / 1000.0 + 1);  /* before the node opened */
    CU_ASSERT(proc_start > (double)time(NULL) - 3600);
    assert_line(out, "# TYPE process_cpu_seconds_total counter");
    assert_sample(out, "process_resident_memory_bytes", proc, "resident_bytes");
    assert_sample(out, "process_open_fds", proc, "open_fds");
    assert_sample(out, "process_max_fds", proc, "max_fds");
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\nprocess_cpu_seconds_total "));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\nprocess_start_time_seconds "));

    /* 1 info + 1 build info + per peer (connected, revoked, 4 behind, 7
     * counters) + 101's last seen timestamp, age and clock offset + every
     * failure reason + 4 sae + clock alarm + 10 node (2 of them the
     * dashboard's sessions and refusals) + 3 storage states + the
     * disk guard + start time + the node's
     * and the CA's certificate expiry + 11 buckets + sum + count + 5 process
     * + the hub's unacknowledged SAE deadlines + 2 sign-in counters + the
     * trial's enrolled total and each site's enrolled and slots (no cap set:
     * no cap sample). */
    size_t peers = json_array_size(json_object_get(s, "peers"));
    size_t enroll_sites = json_array_size(json_object_get(json_object_get(s, "enrollment"), "sites"));
    assert_line(out, "trialsync_enrolled_subjects_total 0");
    size_t deadlines = count_substr(out, "\ntrialsync_sae_deadline_timestamp_seconds{");
    CU_ASSERT_EQUAL(peers, 2);
    CU_ASSERT_EQUAL(check_well_formed(out), 2 + peers * 13 + 3 + json_object_size(fails) + 4 + 1 +
                                                10 + 3 + 1 + 1 + 2 + 11 + 2 + 5 + deadlines + 2 +
                                                1 + 2 * enroll_sites);
    assert_line(out, "# TYPE trialsync_api_signin_failures_total counter");
    assert_line(out, "# TYPE trialsync_api_signin_limited_total counter");
    /* The storage state: one sample per state, 1 for the node's. */
    assert_line(out, "trialsync_storage_state{state=\"ok\"} 1");
    assert_line(out, "trialsync_storage_state{state=\"disk_low\"} 0");
    assert_line(out, "trialsync_storage_state{state=\"storage_failed\"} 0");
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(json_object_get(s, "storage"), "state")),
                           "ok");
    CU_ASSERT(json_integer_value(json_object_get(json_object_get(s, "storage"), "disk_guard_bytes")) >=
              (json_int_t)STORE_WRITE_HEADROOM_BYTES);
    /* The hub's own certificate, as the node read it at start: in the future. */
    const char *ce = strstr(out, "\ntrialsync_cert_expiry_timestamp_seconds{node=\"");
    CU_ASSERT_PTR_NOT_NULL(ce);
    if (ce != NULL) {
        const char *v = strchr(ce, '}');
        CU_ASSERT(v != NULL && strtoll(v + 2, NULL, 10) > (long long)time(NULL));
    }
    CU_ASSERT(json_is_integer(json_object_get(s, "cert_not_after_s")));
    free(out);
}

/* The commit latency histogram the hub measured: cumulative buckets. */
static void test_metrics_histogram_is_cumulative(void)
{
    live_once();
    const json_t *lat = json_object_get(live.hub_status, "commit_latency");
    const json_t *bounds = json_object_get(lat, "bounds_s");
    const json_t *counts = json_object_get(lat, "counts");
    CU_ASSERT_FATAL(json_array_size(bounds) == 10);
    CU_ASSERT_FATAL(json_array_size(counts) == 11);
    CU_ASSERT(json_integer_value(json_object_get(lat, "count")) >= 2);  /* two member writes */
    char *out = render(live.hub_status, NULL);
    static const char *const le[] = {"0.0001", "0.00025", "0.0005", "0.001", "0.0025",
                                     "0.005", "0.01", "0.025", "0.1", "1", "+Inf"};
    long long total = 0;
    for (size_t i = 0; i < 11; i++) {
        char line[128];
        total += json_integer_value(json_array_get(counts, i));
        snprintf(line, sizeof(line), "trialsync_commit_duration_seconds_bucket{le=\"%s\"} %lld",
                 le[i], total);
        assert_line(out, line);
    }
    CU_ASSERT_EQUAL(total, json_integer_value(json_object_get(lat, "count")));
    assert_sample(out, "trialsync_commit_duration_seconds_count", lat, "count");
    CU_ASSERT(json_is_real(json_object_get(lat, "sum_s")));
    /* +Inf is the last bucket, then _sum, then _count. */
    const char *inf = strstr(out, "le=\"+Inf\"");
    const char *sum = strstr(out, "\ntrialsync_commit_duration_seconds_sum ");
    const char *cnt = strstr(out, "\ntrialsync_commit_duration_seconds_count ");
    CU_ASSERT_PTR_NOT_NULL_FATAL(inf);
    CU_ASSERT_PTR_NOT_NULL_FATAL(sum);
    CU_ASSERT(inf < sum);
    CU_ASSERT(sum < cnt);
    free(out);
}

/* The site's documents while its SAE waits for a hub: in flight, and a
 * deadline 24 hours after the awareness time it was recorded with. */
static void test_metrics_site_sae_deadline(void)
{
    live_once();
    const json_t *s = live.site_status;
    const json_t *sae = json_object_get(s, "sae");
    CU_ASSERT(json_integer_value(json_object_get(sae, "in_flight")) == 1);
    char *out = render(s, live.site_saes);
    assert_line(out, "trialsync_info{node=\"101\",role=\"site\",trial=\"T1\"} 1");
    assert_line(out, "trialsync_sae_in_flight 1");
    assert_sample(out, "trialsync_sae_late", sae, "late");
    assert_sample(out, "trialsync_sae_at_risk", sae, "at_risk");
    assert_sample(out, "trialsync_sae_alarms_total", sae, "alarms");
    assert_line(out, "# TYPE trialsync_sae_deadline_timestamp_seconds gauge");
    char line[256];
    snprintf(line, sizeof(line),
             "trialsync_sae_deadline_timestamp_seconds{sae=\"101-0001-AE-001\",site=\"101\"} %lld",
             (long long)live.aware_s + 24 * 3600);
    assert_line(out, line);
    check_well_formed(out);
    free(out);
}

/* The site before its first connection (the hub not yet started): its
 * configured hub is a peer already, labelled with its address, so the
 * hub-link series exist at once; once the handshake names the hub, the
 * hub's own row replaces it. */
static void test_metrics_site_hub_link_before_first_connection(void)
{
    live_once();
    char addr[64], line[256];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)live.hub_peer_port);
    const json_t *pending = peer_row(live.site_status, addr);
    CU_ASSERT_PTR_NOT_NULL_FATAL(pending);
    CU_ASSERT(json_is_true(json_object_get(pending, "id_pending")));
    CU_ASSERT(json_is_false(json_object_get(pending, "connected")));
    CU_ASSERT(json_is_null(json_object_get(pending, "last_seen")));
    CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(pending, "role")), "hub");
    CU_ASSERT_EQUAL(json_array_size(json_object_get(live.site_status, "peers")), 1);
    char *out = render(live.site_status, live.site_saes);
    snprintf(line, sizeof(line), "trialsync_peer_connected{peer=\"%s\",role=\"hub\"} 0", addr);
    assert_line(out, line);
    /* Never seen: no last-seen sample, not a made-up one. */
    CU_ASSERT_PTR_NULL(strstr(out, "trialsync_peer_last_seen"));
    /* The SAE waits for this hub. */
    snprintf(line, sizeof(line), "trialsync_peer_saes_in_flight{peer=\"%s\"} 1", addr);
    assert_line(out, line);
    check_well_formed(out);
    free(out);

    /* Connected: the hub by its id, the address row gone. */
    const json_t *after = live.site_status_after;
    CU_ASSERT_PTR_NULL(peer_row(after, addr));
    const json_t *hub = peer_row(after, "hub1");
    CU_ASSERT_PTR_NOT_NULL_FATAL(hub);
    CU_ASSERT(json_is_true(json_object_get(hub, "connected")));
    CU_ASSERT_PTR_NULL(json_object_get(hub, "id_pending"));
    CU_ASSERT_EQUAL(json_array_size(json_object_get(after, "peers")), 1);
    out = render(after, NULL);
    assert_line(out, "trialsync_peer_connected{peer=\"hub1\",role=\"hub\"} 1");
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "\ntrialsync_peer_last_seen_timestamp_seconds{peer=\"hub1\"} "));
    free(out);
}

/*
 * Hand-built documents from here on: not the producer's output.  Each feeds
 * the renderer a shape a node does not send on demand (malformed or missing
 * fields, an older node, labels a node id cannot hold, values out of range)
 * to check it copes; the producer's keys are checked above.
 */

/* Hand-built: a commit slower than the last bound (1 s) lands in +Inf; a
 * node cannot be made to commit that slowly here. */
static void test_metrics_histogram_overflow_counts_in_inf(void)
{
    json_t *s = parse("{\"commit_latency\":{\"bounds_s\":[0.001,0.01],\"counts\":[1,2,7],"
                      "\"sum_s\":3.5,\"count\":10}}");
    char *out = render(s, NULL);
    assert_line(out, "trialsync_commit_duration_seconds_bucket{le=\"0.001\"} 1");
    assert_line(out, "trialsync_commit_duration_seconds_bucket{le=\"0.01\"} 3");
    assert_line(out, "trialsync_commit_duration_seconds_bucket{le=\"+Inf\"} 10");
    assert_line(out, "trialsync_commit_duration_seconds_count 10");
    assert_line(out, "trialsync_commit_duration_seconds_sum 3.5");
    CU_ASSERT_EQUAL(check_well_formed(out), 5);
    free(out);
    json_decref(s);
}

static void test_metrics_histogram_malformed_left_out(void)
{
    static const char *const bad[] = {
        /* counts not bounds + 1 long */
        "{\"uptime_s\":1,\"commit_latency\":{\"bounds_s\":[0.1,1],\"counts\":[1,2],\"sum_s\":1}}",
        /* bounds not increasing */
        "{\"uptime_s\":1,\"commit_latency\":{\"bounds_s\":[1,0.1],\"counts\":[1,2,3],\"sum_s\":1}}",
        "{\"uptime_s\":1,\"commit_latency\":{\"bounds_s\":[1,1],\"counts\":[1,2,3],\"sum_s\":1}}",
        /* a negative or fractional count */
        "{\"uptime_s\":1,\"commit_latency\":{\"bounds_s\":[0.1],\"counts\":[1,-2],\"sum_s\":1}}",
        "{\"uptime_s\":1,\"commit_latency\":{\"bounds_s\":[0.1],\"counts\":[1,2.5],\"sum_s\":1}}",
        /* a bound that is not a number */
        "{\"uptime_s\":1,\"commit_latency\":{\"bounds_s\":[\"0.1\"],\"counts\":[1,2],\"sum_s\":1}}",
        /* not arrays */
        "{\"uptime_s\":1,\"commit_latency\":{\"bounds_s\":0.1,\"counts\":[1,2]}}",
        "{\"uptime_s\":1,\"commit_latency\":[]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *s = parse(bad[i]);
        char *out = render(s, NULL);
        CU_ASSERT_PTR_NULL(strstr(out, "commit_duration"));
        /* The rest of the exposition is still there. */
        assert_line(out, "trialsync_uptime_seconds 1");
        free(out);
        json_decref(s);
    }
    /* Without sum_s the buckets and count still go out. */
    json_t *s = parse("{\"commit_latency\":{\"bounds_s\":[0.5],\"counts\":[1,1]}}");
    char *out = render(s, NULL);
    assert_line(out, "trialsync_commit_duration_seconds_bucket{le=\"+Inf\"} 2");
    assert_line(out, "trialsync_commit_duration_seconds_count 2");
    CU_ASSERT_PTR_NULL(strstr(out, "_sum"));
    free(out);
    json_decref(s);
}

/* Hand-built: node and site ids cannot hold quotes or line feeds
 * (validate_id), so escaping is fed labels no node sends. */
static void test_metrics_label_values_escaped(void)
{
    json_t *s = json_pack("{s:[{s:s,s:s,s:b,s:I}],s:{s:I}}", "peers", "id",
                          "we\"ird\\site\nname", "role", "si\"te", "connected", 1,
                          "bytes_sent", (json_int_t)7, "handshake_failures", "a\\\"b\n", 3);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    char *out = render(s, NULL);
    assert_line(out, "trialsync_peer_connected{peer=\"we\\\"ird\\\\site\\nname\",role=\"si\\\"te\"} 1");
    assert_line(out, "trialsync_peer_sent_bytes_total{peer=\"we\\\"ird\\\\site\\nname\"} 7");
    assert_line(out, "trialsync_handshake_failures_total{reason=\"a\\\\\\\"b\\n\"} 3");
    /* The raw line feed never reaches the output inside a label. */
    CU_ASSERT_PTR_NULL(strstr(out, "site\nname"));
    CU_ASSERT_EQUAL(check_well_formed(out), 3);
    free(out);
    json_decref(s);
}

static void test_metrics_missing_fields_left_out(void)
{
    /* An empty status: nothing to say, but still a valid (empty) exposition. */
    json_t *s = parse("{}");
    char *out = render(s, NULL);
    CU_ASSERT_STRING_EQUAL(out, "");
    free(out);
    json_decref(s);

    /* An older node: no sae, no handshake_failures, no commit_latency, peers
     * without the new counters, a peer without an id. */
    s = parse("{\"node\":\"hub1\",\"entries\":5,\"peers\":["
              "{\"id\":\"101\",\"connected\":true,\"last_seen\":\"2026-01-01T00:00:00.000Z\"},"
              "{\"connected\":true},"
              "{\"id\":\"102\",\"connected\":\"yes\",\"behind_send_bulk\":null}]}");
    out = render(s, NULL);
    assert_line(out, "trialsync_info{node=\"hub1\",role=\"\",trial=\"\"} 1");
    assert_line(out, "trialsync_entries 5");
    assert_line(out, "trialsync_peer_connected{peer=\"101\",role=\"\"} 1");
    CU_ASSERT_PTR_NULL(strstr(out, "peer=\"102\""));  /* a string is not a state */
    CU_ASSERT_PTR_NULL(strstr(out, "last_seen_age"));
    /* last_seen alone (no age) still gives the timestamp. */
    assert_line(out, "trialsync_peer_last_seen_timestamp_seconds{peer=\"101\"} 1767225600");
    CU_ASSERT_PTR_NULL(strstr(out, "trialsync_build_info"));
    CU_ASSERT_PTR_NULL(strstr(out, "process_"));
    CU_ASSERT_PTR_NULL(strstr(out, "behind_entries"));
    CU_ASSERT_PTR_NULL(strstr(out, "trialsync_sae"));
    CU_ASSERT_PTR_NULL(strstr(out, "handshake"));
    CU_ASSERT_PTR_NULL(strstr(out, "commit_duration"));
    CU_ASSERT_PTR_NULL(strstr(out, "trialsync_records"));
    CU_ASSERT_EQUAL(check_well_formed(out), 4);
    free(out);
    json_decref(s);

    /* peers that is not an array, sae that is not an object. */
    s = parse("{\"peers\":{\"id\":\"101\"},\"sae\":[1],\"handshake_failures\":[]}");
    out = render(s, NULL);
    CU_ASSERT_STRING_EQUAL(out, "");
    free(out);
    json_decref(s);
}

/* The certificates' notAfter, labelled with the node; absent (null, or an
 * older node) means no sample. */
static void test_metrics_cert_expiry(void)
{
    json_t *s = parse("{\"node\":\"101\",\"cert_not_after_s\":1861920000,"
                      "\"ca_not_after_s\":2092521600}");
    char *out = render(s, NULL);
    assert_line(out, "# TYPE trialsync_cert_expiry_timestamp_seconds gauge");
    assert_line(out, "trialsync_cert_expiry_timestamp_seconds{node=\"101\"} 1861920000");
    assert_line(out, "trialsync_ca_cert_expiry_timestamp_seconds{node=\"101\"} 2092521600");
    free(out);
    json_decref(s);
    s = parse("{\"node\":\"101\",\"cert_not_after_s\":null}");
    out = render(s, NULL);
    CU_ASSERT_PTR_NULL(strstr(out, "expiry"));
    free(out);
    json_decref(s);
}

static void test_metrics_status_not_object_refused(void)
{
    char *out = (char *)1;
    size_t len = 99;
    json_t *a = json_array();
    CU_ASSERT_EQUAL(metrics_render(a, NULL, &out, &len), TS_ERR_INVALID);
    CU_ASSERT_PTR_NULL(out);
    CU_ASSERT_EQUAL(len, 0);
    CU_ASSERT_EQUAL(metrics_render(NULL, NULL, &out, &len), TS_ERR_INVALID);
    json_decref(a);
}

/* Hand-built: deadline strings in forms a node does not write (offsets, no
 * zone, impossible dates, no deadline) and saes documents that are not the
 * list; the real site's deadline is checked in test_metrics_site_sae_deadline. */
static void test_metrics_sae_deadlines(void)
{
    json_t *s = parse("{\"sae\":{\"in_flight\":2,\"late\":1,\"at_risk\":0,\"alarms\":0}}");
    json_t *saes = parse(
        "{\"saes\":["
        "{\"id\":\"101-0001-AE-001\",\"site\":\"101\",\"deadline\":\"2026-11-21T09:00:00.000Z\","
        " \"acked\":false,\"late\":false,\"at_risk\":false},"
        "{\"id\":\"101-0002-AE-001\",\"site\":\"101\",\"deadline\":\"2026-11-21T10:00:00+01:00\","
        " \"late\":true},"
        "{\"id\":\"102-0001-AE-001\",\"site\":\"102\",\"deadline\":\"2026-11-20T10:15:30.250Z\","
        " \"acked\":false},"
        "{\"id\":\"101-0003-AE-001\",\"site\":\"101\",\"deadline\":\"2026-11-21T09:00:00Z\","
        " \"acked\":true},"
        "{\"id\":\"101-0004-AE-001\",\"site\":\"101\",\"deadline\":\"2026-11-21T09:00\"},"
        "{\"id\":\"101-0005-AE-001\",\"site\":\"101\",\"deadline\":null},"
        "{\"id\":\"101-0006-AE-001\",\"site\":\"101\",\"deadline\":\"2026-02-29T09:00:00Z\"},"
        "{\"id\":\"101-0007-AE-001\",\"deadline\":\"2028-02-29T00:00:00Z\"},"
        "{\"id\":\"101-0008-AE-001\",\"site\":\"101\",\"deadline\":\"2026-11-21T09:00:00Z\","
        " \"acked\":false,\"backup_time\":\"2026-11-20T12:00:00.000Z\"},"
        "{\"id\":\"101-0009-AE-001\",\"site\":\"101\",\"deadline\":\"2026-11-21T09:00:00Z\","
        " \"acked\":false,\"backup_time\":null},"
        "{\"site\":\"101\",\"deadline\":\"2026-11-21T09:00:00Z\"}]}");
    char *out = render(s, saes);
    assert_line(out, "# TYPE trialsync_sae_deadline_timestamp_seconds gauge");
    /* date -u -d 2026-11-21T09:00:00Z +%s */
    assert_line(out, "trialsync_sae_deadline_timestamp_seconds{sae=\"101-0001-AE-001\",site=\"101\"} 1795251600");
    /* +01:00 is the same instant as 09:00Z; acked missing counts as not acknowledged. */
    assert_line(out, "trialsync_sae_deadline_timestamp_seconds{sae=\"101-0002-AE-001\",site=\"101\"} 1795251600");
    assert_line(out, "trialsync_sae_deadline_timestamp_seconds{sae=\"102-0001-AE-001\",site=\"102\"} 1795169730.25");
    /* 2028 is a leap year: date -u -d 2028-02-29T00:00:00Z +%s */
    assert_line(out, "trialsync_sae_deadline_timestamp_seconds{sae=\"101-0007-AE-001\",site=\"\"} 1835395200");
    /* No backup report yet (null): still urgent. */
    assert_line(out, "trialsync_sae_deadline_timestamp_seconds{sae=\"101-0009-AE-001\",site=\"101\"} 1795251600");
    /* Reported by phone or fax, acknowledged, without a zone, without a deadline,
     * an impossible date: no series. */
    CU_ASSERT_PTR_NULL(strstr(out, "101-0008-AE-001"));
    CU_ASSERT_PTR_NULL(strstr(out, "101-0003-AE-001"));
    CU_ASSERT_PTR_NULL(strstr(out, "101-0004-AE-001"));
    CU_ASSERT_PTR_NULL(strstr(out, "101-0005-AE-001"));
    CU_ASSERT_PTR_NULL(strstr(out, "101-0006-AE-001"));
    assert_line(out, "trialsync_sae_in_flight 2");
    assert_line(out, "trialsync_sae_late 1");
    CU_ASSERT_EQUAL(check_well_formed(out), 4 + 5);
    free(out);
    json_decref(saes);

    /* A saes object without a list, and one that is not an object. */
    saes = parse("{\"error\":\"no such endpoint\"}");
    out = render(s, saes);
    CU_ASSERT_PTR_NULL(strstr(out, "trialsync_sae_deadline"));
    free(out);
    json_decref(saes);
    saes = parse("[1,2]");
    out = render(s, saes);
    CU_ASSERT_PTR_NULL(strstr(out, "trialsync_sae_deadline"));
    free(out);
    json_decref(saes);
    json_decref(s);
}

/* Hand-built: reals, 2^53 + 1, exponents, negatives and strings where a node
 * sends whole numbers. */
static void test_metrics_numbers_formatted(void)
{
    json_t *s = parse("{\"uptime_s\":12.5,\"entries\":0,\"records\":9007199254740993,"
                      "\"store_bytes\":1e3,\"accepting_writes\":false,\"conflicts\":-1,"
                      "\"disk_free_bytes\":\"lots\"}");
    char *out = render(s, NULL);
    assert_line(out, "trialsync_uptime_seconds 12.5");
    assert_line(out, "trialsync_entries 0");
    assert_line(out, "trialsync_records 9007199254740993");  /* integers stay exact */
    assert_line(out, "trialsync_store_size_bytes 1000");
    assert_line(out, "trialsync_accepting_writes 0");
    assert_line(out, "trialsync_conflicts_open -1");
    CU_ASSERT_PTR_NULL(strstr(out, "disk_free"));
    free(out);
    json_decref(s);
}

/* Hand-built: the same keys in two insertion orders. */
static void test_metrics_deterministic_order(void)
{
    /* The same failures inserted in two orders render byte for byte the same. */
    json_t *a = parse("{\"handshake_failures\":{\"trial\":1,\"certificate\":2,\"other\":3}}");
    json_t *b = parse("{\"handshake_failures\":{\"other\":3,\"trial\":1,\"certificate\":2}}");
    char *oa = render(a, NULL);
    char *ob = render(b, NULL);
    CU_ASSERT_STRING_EQUAL(oa, ob);
    const char *cert = strstr(oa, "reason=\"certificate\"");
    const char *other = strstr(oa, "reason=\"other\"");
    const char *trial = strstr(oa, "reason=\"trial\"");
    CU_ASSERT(cert != NULL && cert < other);
    CU_ASSERT(other != NULL && other < trial);
    /* One HELP and TYPE for the whole family. */
    CU_ASSERT_EQUAL(count_substr(oa, "# TYPE trialsync_handshake_failures_total"), 1);
    free(oa);
    free(ob);
    json_decref(a);
    json_decref(b);
}

/* Hand-built: 5,000 peers, far past any trial. */
static void test_metrics_too_big_refused(void)
{
    /* 5,000 peers with 1,000-byte ids: about 15 MB of samples, past the cap. */
    char id[1001];
    json_t *peers = json_array();
    for (int i = 0; i < 5000; i++) {
        memset(id, 'a' + i % 26, sizeof(id) - 1);
        snprintf(id, 8, "%06d", i);
        id[6] = 'x';
        id[sizeof(id) - 1] = '\0';
        json_array_append_new(peers, json_pack("{s:s,s:b,s:I,s:I}", "id", id, "connected", 1,
                                               "bytes_sent", (json_int_t)1, "entries_sent",
                                               (json_int_t)1));
    }
    json_t *s = json_pack("{s:o}", "peers", peers);
    char *out = (char *)1;
    size_t len = 1;
    CU_ASSERT_EQUAL(metrics_render(s, NULL, &out, &len), TS_ERR_TOOBIG);
    CU_ASSERT_PTR_NULL(out);
    CU_ASSERT_EQUAL(len, 0);
    json_decref(s);
}

int main(void)
{
    static const struct unit_test tests[] = {
        { "test_metrics_hub_status_lines", test_metrics_hub_status_lines },
        { "test_metrics_histogram_is_cumulative", test_metrics_histogram_is_cumulative },
        { "test_metrics_site_sae_deadline", test_metrics_site_sae_deadline },
        { "test_metrics_site_hub_link_before_first_connection",
          test_metrics_site_hub_link_before_first_connection },
        { "test_metrics_histogram_overflow_counts_in_inf", test_metrics_histogram_overflow_counts_in_inf },
        { "test_metrics_histogram_malformed_left_out", test_metrics_histogram_malformed_left_out },
        { "test_metrics_label_values_escaped", test_metrics_label_values_escaped },
        { "test_metrics_missing_fields_left_out", test_metrics_missing_fields_left_out },
        { "test_metrics_cert_expiry", test_metrics_cert_expiry },
        { "test_metrics_status_not_object_refused", test_metrics_status_not_object_refused },
        { "test_metrics_sae_deadlines", test_metrics_sae_deadlines },
        { "test_metrics_numbers_formatted", test_metrics_numbers_formatted },
        { "test_metrics_deterministic_order", test_metrics_deterministic_order },
        { "test_metrics_too_big_refused", test_metrics_too_big_refused },
        { NULL, NULL },
    };
    int rc = unit_run("metrics", tests);
    live_free();
    return rc;
}
