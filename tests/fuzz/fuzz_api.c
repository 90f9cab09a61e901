/*
 * fuzz_api.c: the seam the HTTP harnesses use to reach node/api.c without a
 * socket.
 *
 * node/api.c is compiled into this file, so the harnesses drive the static
 * functions libuv calls: accept_cb (a new connection, set up exactly as in
 * the daemon) and read_cb (bytes the socket delivered, then EOF).  Two libuv
 * calls are replaced inside api.c alone, by macros defined before it is
 * included: uv_accept (nothing to accept: the connection's handle stays
 * unopened) and uv_write (responses are appended to a buffer and completed at
 * once).  A third, store_checkpoint, keeps POST /v1/backup inside the scratch
 * directory: the path a request names is taken below a jail there.
 * Everything else is the real node: real certificates, a real RocksDB store,
 * group commit on the loop.  api.c itself carries no test code, so its
 * changes need nothing here unless accept_cb, read_cb or the connection's
 * reference count change.
 */
#define _GNU_SOURCE  /* nftw's FTW_PHYS, before any system header */
#include <ftw.h>
#include <uv.h>

#include "../../node/node.h"
#include "../../storage/store.h"

static int fuzz_uv_accept(uv_stream_t *server, uv_stream_t *client);
static int fuzz_uv_write(uv_write_t *req, uv_stream_t *handle, const uv_buf_t bufs[],
                         unsigned int nbufs, uv_write_cb cb);
static int fuzz_store_checkpoint(struct store *s, const char *dir, struct ts_error *err);
#define uv_accept fuzz_uv_accept
#define uv_write fuzz_uv_write
#define store_checkpoint fuzz_store_checkpoint
#include "../../node/api.c"
#undef uv_accept
#undef uv_write
#undef store_checkpoint

#include <jansson.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../node/config.h"
#include "../../node/pki.h"
#include "../../node/trace.h"
#include "fuzz.h"
#include "fuzz_api.h"

/* Inputs on one pair of stores before both start empty again
 * (nodes_renew): a few hundred writes keep every request fast. */
#define FUZZ_API_INPUTS_PER_STORE 500

/* Loop iterations an exchange may take to answer and free its connection:
 * one commit and one close need a few; more is a connection never freed. */
#define FUZZ_API_LOOP_ROUNDS_MAX 1000

static struct {
    bool ready;
    char base[PATH_MAX];
    char jail[PATH_MAX];
    bool jail_used;
    bool verbose;    /* TS_FUZZ_VERBOSE=1: each response's status and body start */
    unsigned inputs;  /* on the current stores */
    uv_loop_t loop;
    struct config cfg[FUZZ_NODE_COUNT];
    struct node *node[FUZZ_NODE_COUNT];
    struct api *api[FUZZ_NODE_COUNT];
    char *out;       /* what the API wrote in this exchange */
    size_t out_len, out_cap;
} fz;

static int fuzz_uv_accept(uv_stream_t *server, uv_stream_t *client)
{
    (void)server;
    (void)client;
    return 0;
}

static int fuzz_uv_write(uv_write_t *req, uv_stream_t *handle, const uv_buf_t bufs[],
                         unsigned int nbufs, uv_write_cb cb)
{
    (void)handle;
    for (unsigned i = 0; i < nbufs; i++) {
        while (fz.out_len + bufs[i].len > fz.out_cap) {
            fz.out_cap = fz.out_cap == 0 ? 65536 : fz.out_cap * 2;
            fz.out = realloc(fz.out, fz.out_cap);
            FUZZ_CHECK(fz.out != NULL);
        }
        memcpy(fz.out + fz.out_len, bufs[i].base, bufs[i].len);
        fz.out_len += bufs[i].len;
    }
    cb(req, 0);
    return 0;
}

static int fuzz_store_checkpoint(struct store *s, const char *dir, struct ts_error *err)
{
    char jailed[PATH_MAX];
    if (dir[0] != '/')
        return store_checkpoint(s, dir, err);  /* refused as relative, as it is */
    int n = snprintf(jailed, sizeof(jailed), "%s%s", fz.jail, dir);
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof(jailed));
    fz.jail_used = true;
    return store_checkpoint(s, jailed, err);
}

static int remove_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void remove_tree(const char *path)
{
    nftw(path, remove_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_text(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    FUZZ_CHECK(f != NULL);
    FUZZ_CHECK(fputs(text, f) >= 0);
    FUZZ_CHECK(fclose(f) == 0);
    FUZZ_CHECK(chmod(path, mode) == 0);
}

static void node_start(enum fuzz_node i)
{
    struct ts_error err = {0, ""};
    if (node_open(&fz.node[i], &fz.loop, &fz.cfg[i], &err) != 0 ||
        api_start(&fz.api[i], fz.node[i], NULL, &err) != 0) {
        fprintf(stderr, "fuzz: node %s: %s\n", fz.cfg[i].id, err.msg);
        abort();
    }
}

static void nodes_stop(void)
{
    for (int i = 0; i < FUZZ_NODE_COUNT; i++) {
        api_stop(fz.api[i]);
        node_close(fz.node[i]);
    }
    uv_run(&fz.loop, UV_RUN_DEFAULT);
}

/*
 * Both nodes again on empty stores.  A store that grows without end makes
 * each input slower (a record's history, a field's dead set, the record
 * list) and what an input does ever more a matter of the inputs before it.
 */
static void nodes_renew(void)
{
    nodes_stop();
    for (int i = 0; i < FUZZ_NODE_COUNT; i++) {
        remove_tree(fz.cfg[i].data_dir);
        node_start((enum fuzz_node)i);
    }
}

static void teardown(void)
{
    nodes_stop();
    remove_tree(fz.base);
}

static void node_make(enum fuzz_node i, const char *ca_dir)
{
    static const char *ids[FUZZ_NODE_COUNT] = {"hub1", "101"};
    struct pki_identity who = {.role = i == FUZZ_NODE_HUB ? PKI_ROLE_HUB : PKI_ROLE_SITE};
    struct ts_error err = {0, ""};
    char dir[PATH_MAX], path[PATH_MAX + 32], conf[512];

    snprintf(who.trial, sizeof(who.trial), "T1");
    snprintf(who.id, sizeof(who.id), "%s", ids[i]);
    snprintf(dir, sizeof(dir), "%s/%s", fz.base, ids[i]);
    if (pki_issue(ca_dir, &who, NULL, 30, dir, NULL, NULL, &err) != 0) {
        fprintf(stderr, "fuzz: pki_issue %s: %s\n", ids[i], err.msg);
        abort();
    }
    /* The API port is set to 0 below (any free port); config needs one. */
    snprintf(conf, sizeof(conf),
             "[node]\nid = %s\nrole = %s\ntrial = T1\n[api]\nlisten = 127.0.0.1:7801\n"
             "[peer]\n%s = 127.0.0.1:7901\n[storage]\ndisk_free_min_mb = 0\n",
             ids[i], i == FUZZ_NODE_HUB ? "hub" : "site", i == FUZZ_NODE_HUB ? "listen" : "hub");
    snprintf(path, sizeof(path), "%s/api.token", dir);
    write_text(path, FUZZ_API_TOKEN "\n", 0600);
    snprintf(path, sizeof(path), "%s/node.conf", dir);
    write_text(path, conf, 0644);
    if (config_load(path, &fz.cfg[i], &err) != 0) {
        fprintf(stderr, "fuzz: node %s: %s\n", ids[i], err.msg);
        abort();
    }
    fz.cfg[i].api.port = 0;
    node_start(i);
}

void fuzz_api_setup(void)
{
    if (fz.ready)
        return;
    /* The unit suites' scratch directory, else a RAM file system: the
     * store is written on every input. */
    const char *tmp = getenv("TS_TEST_TMP");
    if (tmp != NULL && tmp[0] != '\0')
        mkdir(tmp, 0755);
    else
        tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0')
        tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fz.base, sizeof(fz.base), "%s/ts-fuzz-api-XXXXXX", tmp);
    FUZZ_CHECK(mkdtemp(fz.base) != NULL);
    snprintf(fz.jail, sizeof(fz.jail), "%s/backup-jail", fz.base);
    FUZZ_CHECK(mkdir(fz.jail, 0700) == 0);
    /* Traces would cost more than the requests; the responses are checked. */
    trace_set_sink(fopen("/dev/null", "w"), NULL);
    FUZZ_CHECK(uv_loop_init(&fz.loop) == 0);

    char ca_dir[PATH_MAX + 8];
    struct ts_error err = {0, ""};
    snprintf(ca_dir, sizeof(ca_dir), "%s/ca", fz.base);
    if (pki_ca_create(ca_dir, "T1", 365, NULL, &err) != 0) {
        fprintf(stderr, "fuzz: pki_ca_create: %s\n", err.msg);
        abort();
    }
    node_make(FUZZ_NODE_HUB, ca_dir);
    node_make(FUZZ_NODE_SITE, ca_dir);
    atexit(teardown);
    fz.verbose = getenv("TS_FUZZ_VERBOSE") != NULL;
    fz.ready = true;
}

/* libFuzzer calls it once, before the first input: the HTTP harnesses'
 * nodes are built then, outside any input's time. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_api_setup();
    return 0;
}

void fuzz_api_input_begin(uint8_t first, enum fuzz_node *node, size_t *chunk)
{
    *node = (first & 1) ? FUZZ_NODE_SITE : FUZZ_NODE_HUB;
    *chunk = first >> 1;
    if (++fz.inputs > FUZZ_API_INPUTS_PER_STORE) {
        nodes_renew();
        fz.inputs = 1;
    }
}

/* Parses what the API wrote into x, checking each response's form. */
static void responses_check(struct fuzz_exchange *x)
{
    size_t at = 0;
    x->count = 0;
    while (at < fz.out_len) {
        const char *p = fz.out + at;
        size_t left = fz.out_len - at;
        FUZZ_CHECK(x->count < FUZZ_API_RESPONSES_MAX);
        FUZZ_CHECK(left > 12 && memcmp(p, "HTTP/1.1 ", 9) == 0);
        const char *end = memmem(p, left, "\r\n\r\n", 4);
        FUZZ_CHECK(end != NULL);
        size_t head_len = (size_t)(end - p) + 4;
        char head[2048];
        FUZZ_CHECK(head_len < sizeof(head));
        memcpy(head, p, head_len);
        head[head_len] = '\0';
        struct fuzz_response *r = &x->res[x->count++];
        char *num_end = NULL;
        r->status = (int)strtol(head + 9, &num_end, 10);
        FUZZ_CHECK(num_end == head + 12 && *num_end == ' ');
        FUZZ_CHECK(r->status >= 200 && r->status <= 599);
        const char *cl = strstr(head, "\r\nContent-Length: ");
        FUZZ_CHECK(cl != NULL);
        unsigned long long body_len = strtoull(cl + 18, NULL, 10);
        FUZZ_CHECK(body_len <= left - head_len);
        r->body = p + head_len;
        r->body_len = (size_t)body_len;
        r->json = strstr(head, "\r\nContent-Type: application/json") != NULL;
        r->json_parses = false;
        if (r->json) {
            json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
            r->json_parses = j != NULL;
            json_decref(j);
        }
        at += head_len + r->body_len;
        if (fz.verbose)
            fprintf(stderr, "  %d %.*s\n", r->status, (int)(r->body_len < 160 ? r->body_len : 160),
                    r->body);
    }
}

/* Runs the loop until c holds only the harness's reference; false when stuck. */
static bool loop_until_idle(struct api_conn *c, bool want_closed)
{
    for (int i = 0; i < FUZZ_API_LOOP_ROUNDS_MAX; i++) {
        if (want_closed ? c->refs == 1 : c->closing || !c->busy)
            return true;
        uv_run(&fz.loop, UV_RUN_NOWAIT);
    }
    return false;
}

void fuzz_api_exchange(enum fuzz_node node, const uint8_t *data, size_t len, size_t chunk,
                       struct fuzz_exchange *x)
{
    struct api *a = fz.api[node];
    size_t before = a->connections;
    fz.out_len = 0;
    x->stuck = false;

    accept_cb((uv_stream_t *)&a->listener, 0);
    FUZZ_CHECK(a->connections == before + 1);
    struct api_conn *c = a->conns;
    FUZZ_CHECK(c != NULL);
    /* The harness's own reference: c stays readable until the end. */
    c->refs++;

    if (chunk == 0)
        chunk = len > 0 ? len : 1;
    for (size_t off = 0; off < len && !c->closing; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        /* read_cb frees what alloc_cb gave it: the bytes are copied as libuv would. */
        uv_buf_t buf;
        alloc_cb((uv_handle_t *)&c->tcp, n, &buf);
        FUZZ_CHECK(buf.base != NULL);
        memcpy(buf.base, data + off, n);
        read_cb((uv_stream_t *)&c->tcp, (ssize_t)n, &buf);
        /* A write waits for its group commit: let it, as the loop would. */
        if (!loop_until_idle(c, false)) {
            x->stuck = true;
            break;
        }
    }
    if (!c->closing) {
        uv_buf_t none = uv_buf_init(NULL, 0);
        read_cb((uv_stream_t *)&c->tcp, UV_EOF, &none);
    }
    bool freed = loop_until_idle(c, true);
    if (!freed)
        fprintf(stderr, "connection not freed: refs %d busy %d\n", c->refs, (int)c->busy);
    FUZZ_CHECK(freed);
    conn_unref(c);
    FUZZ_CHECK(a->connections == before);

    if (fz.jail_used) {
        remove_tree(fz.jail);
        FUZZ_CHECK(mkdir(fz.jail, 0700) == 0);
        fz.jail_used = false;
    }
    responses_check(x);
}

void fuzz_api_check(const struct fuzz_exchange *x)
{
    if (x->stuck)
        fprintf(stderr, "a request was never answered: the connection stopped reading\n");
    FUZZ_CHECK(!x->stuck);
    for (size_t i = 0; i < x->count; i++) {
        const struct fuzz_response *r = &x->res[i];
        if (r->status == 500 || (r->json && !r->json_parses))
            fprintf(stderr, "response %zu: %d %.*s\n", i, r->status, (int)r->body_len, r->body);
        FUZZ_CHECK(r->status != 500);
        FUZZ_CHECK(!r->json || r->json_parses);
    }
}
