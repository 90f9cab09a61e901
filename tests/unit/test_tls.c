/*
 * test_tls.c: the TLS transport (node/tls.c) between real endpoints.
 *
 * A trial CA and node certificates are made with pki.h in a scratch
 * directory; the odd certificates pki refuses to issue (another trial's
 * identity signed by this CA, an expired one) are built here with OpenSSL.
 * A server and a client run on 127.0.0.1, on an ephemeral port, in one libuv
 * loop.  Hostile clients that tls.c cannot produce (no certificate, a length
 * prefix above the limit, another CA) are plain blocking OpenSSL clients on a
 * thread.  Every loop run is bounded by a timer, so no test can hang.
 */
#include "unit.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include "../../node/pki.h"
#include "../../node/tls.h"

#define TRIAL "T1"
#define PATH_BYTES 600
#define BIG_FRAME_BYTES (1024 * 1024)
#define SMALL_FRAMES 100
#define LOOP_MS 5000

/* ----- fixture: a trial CA and the identities the tests use ------------- */

static char fixture_dir[PATH_BYTES];

/* snprintf into a PATH_BYTES buffer; a path that does not fit aborts the run. */
static void path_format(char *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void path_format(char *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, PATH_BYTES, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= PATH_BYTES)
        abort();
}

/* fixture_dir/rel, in a ring of buffers: valid for the next 63 calls. */
static const char *fx(const char *rel)
{
    static char paths[64][PATH_BYTES];
    static unsigned next;
    char *p = paths[next++ % 64];
    path_format(p, "%s/%s", fixture_dir, rel);
    return p;
}

static void issue(const char *ca_rel, enum pki_role role, const char *id, const char *out_rel)
{
    struct pki_identity who;
    struct ts_error err = {0};
    memset(&who, 0, sizeof(who));
    snprintf(who.trial, sizeof(who.trial), "%s", TRIAL);
    who.role = role;
    snprintf(who.id, sizeof(who.id), "%s", id);
    int rc = pki_issue(fx(ca_rel), &who, NULL, 30, fx(out_rel), NULL, NULL, &err);
    if (rc != 0) {
        fprintf(stderr, "pki_issue %s: %s\n", id, err.msg);
        abort();
    }
}

static void write_pem_file(const char *path, int mode, int (*write)(BIO *, void *), void *obj)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL || write(b, obj) != 1)
        abort();
    char *data = NULL;
    long len = BIO_get_mem_data(b, &data);
    FILE *f = fopen(path, "w");
    if (f == NULL || fwrite(data, 1, (size_t)len, f) != (size_t)len || fclose(f) != 0)
        abort();
    if (chmod(path, (mode_t)mode) != 0)
        abort();
    BIO_free(b);
}

static int write_key(BIO *b, void *k)
{
    return PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
}

static int write_cert(BIO *b, void *x)
{
    return PEM_write_bio_X509(b, x);
}

static void *read_pem(const char *path, bool key)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        abort();
    void *obj = key ? (void *)PEM_read_PrivateKey(f, NULL, NULL, NULL)
                    : (void *)PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (obj == NULL)
        abort();
    return obj;
}

/*
 * Issues, with OpenSSL directly, a certificate pki would refuse: any URI,
 * any validity window (seconds from now), signed by the CA in ca_rel.
 */
static void issue_custom(const char *ca_rel, const char *uri, long from_s, long to_s,
                         const char *out_rel)
{
    char path[PATH_BYTES];
    path_format(path, "%s/ca.key", fx(ca_rel));
    EVP_PKEY *ca_key = read_pem(path, true);
    path_format(path, "%s/ca.crt", fx(ca_rel));
    X509 *ca = read_pem(path, false);
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    X509 *x = X509_new();
    char san[300];
    X509V3_CTX v3;
    snprintf(san, sizeof(san), "URI:%s", uri);
    if (key == NULL || x == NULL || X509_set_version(x, X509_VERSION_3) != 1 ||
        ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(unit_rand() >> 33) + 1) != 1 ||
        X509_gmtime_adj(X509_getm_notBefore(x), from_s) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), to_s) == NULL ||
        X509_set_issuer_name(x, X509_get_subject_name(ca)) != 1 ||
        X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                   (const unsigned char *)"custom", -1, -1, 0) != 1 ||
        X509_set_pubkey(x, key) != 1)
        abort();
    X509V3_set_ctx(&v3, ca, x, NULL, NULL, 0);
    const struct { int nid; const char *value; } exts[] = {
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature"},
        {NID_ext_key_usage, "serverAuth,clientAuth"},
        {NID_authority_key_identifier, "keyid:always"},
        {NID_subject_alt_name, san},
    };
    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, exts[i].nid, exts[i].value);
        if (e == NULL || X509_add_ext(x, e, -1) != 1)
            abort();
        X509_EXTENSION_free(e);
    }
    if (X509_sign(x, ca_key, NULL) <= 0)
        abort();
    path_format(path, "mkdir -p '%s'", fx(out_rel));
    if (system(path) != 0)
        abort();
    path_format(path, "%s/node.key", fx(out_rel));
    write_pem_file(path, 0600, write_key, key);
    path_format(path, "%s/node.crt", fx(out_rel));
    write_pem_file(path, 0644, write_cert, x);
    X509_free(x);
    EVP_PKEY_free(key);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
}

/*
 * Writes a CRL signed by the CA in ca_rel, valid from from_s to to_s
 * (seconds from now), revoking the certificate in revoked_rel.
 */
static void write_custom_crl(const char *ca_rel, const char *revoked_rel, long from_s,
                             long to_s, const char *out_rel)
{
    char path[PATH_BYTES];
    path_format(path, "%s/ca.key", fx(ca_rel));
    EVP_PKEY *ca_key = read_pem(path, true);
    path_format(path, "%s/ca.crt", fx(ca_rel));
    X509 *ca = read_pem(path, false);
    path_format(path, "%s/node.crt", fx(revoked_rel));
    X509 *revoked = read_pem(path, false);
    X509_CRL *crl = X509_CRL_new();
    X509_REVOKED *r = X509_REVOKED_new();
    ASN1_TIME *from = X509_gmtime_adj(NULL, from_s);
    ASN1_TIME *to = X509_gmtime_adj(NULL, to_s);
    if (crl == NULL || r == NULL || from == NULL || to == NULL ||
        X509_CRL_set_version(crl, X509_CRL_VERSION_2) != 1 ||
        X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca)) != 1 ||
        X509_CRL_set1_lastUpdate(crl, from) != 1 || X509_CRL_set1_nextUpdate(crl, to) != 1 ||
        X509_REVOKED_set_serialNumber(r, X509_get_serialNumber(revoked)) != 1 ||
        X509_REVOKED_set_revocationDate(r, from) != 1 || X509_CRL_add0_revoked(crl, r) != 1 ||
        X509_CRL_sort(crl) != 1 || X509_CRL_sign(crl, ca_key, NULL) <= 0)
        abort();
    BIO *b = BIO_new_file(fx(out_rel), "w");
    if (b == NULL || PEM_write_bio_X509_CRL(b, crl) != 1)
        abort();
    BIO_free(b);
    ASN1_TIME_free(from);
    ASN1_TIME_free(to);
    X509_CRL_free(crl);
    X509_free(revoked);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
}

static void fixture_once(void)
{
    if (fixture_dir[0] != '\0')
        return;
    path_format(fixture_dir, "%s", unit_tmpdir("tls"));
    struct ts_error err = {0};
    if (pki_ca_create(fx("ca"), TRIAL, 365, NULL, &err) != 0 ||
        pki_ca_create(fx("other-ca"), TRIAL, 365, NULL, &err) != 0) {
        fprintf(stderr, "pki_ca_create: %s\n", err.msg);
        abort();
    }
    issue("ca", PKI_ROLE_HUB, "hub1", "hub");
    issue("ca", PKI_ROLE_SITE, "s01", "site");
    issue("ca", PKI_ROLE_SITE, "s05", "revoked");
    issue("ca", PKI_ROLE_SITE, "s06", "revoked-old");
    issue("other-ca", PKI_ROLE_SITE, "s02", "stranger");
    issue_custom("ca", "trialsync://T2/site/s03", -60, 86400, "wrong-trial");
    issue_custom("ca", "trialsync://" TRIAL "/site/s04", -2 * 86400, -86400, "expired");
    write_custom_crl("ca", "revoked-old", -40 * 86400, -10 * 86400, "expired-crl.pem");
    write_custom_crl("ca", "revoked-old", 3600, 30 * 86400, "future-crl.pem");
}

/* A context for the identity in directory rel, trusting the trial CA. */
static struct tls_ctx *ctx_with_crl(const char *rel, const char *trial, const char *crl_rel)
{
    char cert[PATH_BYTES];
    char key[PATH_BYTES];
    struct tls_ctx *ctx = NULL;
    struct ts_error err = {0};
    path_format(cert, "%s/%s/node.crt", fixture_dir, rel);
    path_format(key, "%s/%s/node.key", fixture_dir, rel);
    struct tls_ctx_config cfg = {
        .trial = trial,
        .ca_path = fx("ca/ca.crt"),
        .cert_path = cert,
        .key_path = key,
        .crl_path = fx(crl_rel),
    };
    int rc = tls_ctx_new(&cfg, &ctx, &err);
    if (rc != 0)
        fprintf(stderr, "tls_ctx_new %s: %s\n", rel, err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    return ctx;
}

static struct tls_ctx *ctx_for(const char *rel, const char *trial)
{
    return ctx_with_crl(rel, trial, "ca/crl.pem");
}

/* ----- one loop, a server side and a client side ------------------------ */

/* What one side saw, filled by the callbacks below. */
struct side {
    struct tls_conn *conn;
    int handshakes;
    struct pki_identity peer;
    int refuse;              /* on_handshake's answer */
    bool echo;               /* send every frame back */
    int frames;
    size_t frame_bytes;
    uint64_t frame_sums[SMALL_FRAMES + 8];
    int drains;
    int closes;
    int close_code;
    char close_text[TLS_REASON_BYTES_MAX];
};

static struct {
    uv_loop_t loop;
    uv_timer_t guard;
    bool timed_out;
    struct side srv;
    struct side cli;
    struct tls_listener *listener;
    struct tls_ctx *srv_ctx;
    struct tls_ctx *cli_ctx;
} w;

static uint64_t fnv1a(const uint8_t *p, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static int on_handshake(struct tls_conn *c, const struct pki_identity *peer)
{
    struct side *s = tls_conn_data(c);
    s->conn = c;
    s->handshakes++;
    s->peer = *peer;
    return s->refuse;
}

static void on_frame(struct tls_conn *c, const uint8_t *body, size_t len)
{
    struct side *s = tls_conn_data(c);
    if ((size_t)s->frames < sizeof(s->frame_sums) / sizeof(s->frame_sums[0]))
        s->frame_sums[s->frames] = fnv1a(body, len);
    s->frames++;
    s->frame_bytes += len;
    if (s->echo)
        CU_ASSERT_EQUAL(tls_conn_send_frame(c, body, len), 0);
}

static void on_close(struct tls_conn *c, int code, const char *text)
{
    struct side *s = tls_conn_data(c);
    s->closes++;
    s->close_code = code;
    snprintf(s->close_text, sizeof(s->close_text), "%s", text);
    if (s->conn == c)
        s->conn = NULL;
}

static void on_drain(struct tls_conn *c)
{
    struct side *s = tls_conn_data(c);
    s->drains++;
}

static const struct tls_conn_cbs cbs = {
    .on_handshake = on_handshake,
    .on_frame = on_frame,
    .on_close = on_close,
    .on_drain = on_drain,
};

static void guard_cb(uv_timer_t *t)
{
    w.timed_out = true;
    uv_stop(t->loop);
}

static void world_init(void)
{
    fixture_once();
    memset(&w, 0, sizeof(w));
    CU_ASSERT_EQUAL_FATAL(uv_loop_init(&w.loop), 0);
    uv_timer_init(&w.loop, &w.guard);
    /* The guard never keeps the loop alive by itself. */
    uv_unref((uv_handle_t *)&w.guard);
}

/* Runs the loop until *counter reaches target, at most ms; true if it did. */
static bool run_until(const int *counter, int target, unsigned ms)
{
    w.timed_out = false;
    uv_timer_start(&w.guard, guard_cb, ms, 0);
    while (*counter < target && !w.timed_out) {
        if (uv_run(&w.loop, UV_RUN_ONCE) == 0 && *counter < target)
            break;
    }
    uv_timer_stop(&w.guard);
    return *counter >= target;
}

/* Lets the loop run for ms, whatever happens. */
static void run_for(unsigned ms)
{
    int never = 0;
    (void)run_until(&never, 1, ms);
}

static void start_server_on(struct tls_ctx *ctx, const char *host, unsigned handshaking_max,
                            const struct tls_conn_opts *opts)
{
    struct ts_error err = {0};
    w.srv_ctx = ctx;
    int rc = tls_listen(&w.loop, ctx, host, 0, handshaking_max, opts, &cbs, &w.srv,
                        &w.listener, &err);
    if (rc != 0)
        fprintf(stderr, "tls_listen: %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT(tls_listener_port(w.listener) > 0);
}

static void start_server(struct tls_ctx *ctx, unsigned handshaking_max,
                         const struct tls_conn_opts *opts)
{
    start_server_on(ctx, "127.0.0.1", handshaking_max, opts);
}

static struct tls_conn *start_client_to(struct tls_ctx *ctx, const char *host, int port)
{
    struct tls_conn *c = NULL;
    struct ts_error err = {0};
    w.cli_ctx = ctx;
    int rc = tls_connect(&w.loop, ctx, host, port, NULL, &cbs, &w.cli, &c, &err);
    if (rc != 0)
        fprintf(stderr, "tls_connect: %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT_PTR_NOT_NULL(c);
    w.cli.conn = c;
    return c;
}

static struct tls_conn *start_client(struct tls_ctx *ctx)
{
    return start_client_to(ctx, "127.0.0.1", tls_listener_port(w.listener));
}

/* Closes whatever is left, winds the loop down (bounded) and frees it all. */
static void world_release(void)
{
    if (w.cli.conn != NULL)
        tls_conn_close(w.cli.conn, 0, "test over");
    if (w.srv.conn != NULL)
        tls_conn_close(w.srv.conn, 0, "test over");
    if (w.listener != NULL)
        tls_listener_close(w.listener);
    w.listener = NULL;
    w.timed_out = false;
    uv_timer_start(&w.guard, guard_cb, LOOP_MS, 0);
    uv_run(&w.loop, UV_RUN_DEFAULT);
    CU_ASSERT_FALSE(w.timed_out);
    uv_close((uv_handle_t *)&w.guard, NULL);
    uv_run(&w.loop, UV_RUN_DEFAULT);
    CU_ASSERT_EQUAL(uv_loop_close(&w.loop), 0);
    if (w.cli_ctx != w.srv_ctx)
        tls_ctx_free(w.cli_ctx);
    tls_ctx_free(w.srv_ctx);
}

static bool contains(const char *text, const char *part)
{
    if (strstr(text, part) != NULL)
        return true;
    fprintf(stderr, "expected \"%s\" in \"%s\"\n", part, text);
    return false;
}

/* ----- a plain OpenSSL client on a thread, for what tls.c will not send -- */

struct raw_client {
    int port;
    const char *cert;        /* NULL: present no certificate */
    const char *key;
    const uint8_t *send;     /* written once the handshake is done */
    size_t send_len;
    pthread_t thread;
    /* results */
    bool handshake_ok;
    bool closed;             /* the server ended the link */
    char error[256];         /* OpenSSL's reason, if the link failed */
};

static void *raw_client_main(void *arg)
{
    struct raw_client *r = arg;
    struct sockaddr_in sa;
    struct timeval tv = {.tv_sec = 5, .tv_usec = 0};
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)r->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return NULL;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        goto out_close_fd;
    SSL_CTX *sc = SSL_CTX_new(TLS_client_method());
    if (sc == NULL)
        goto out_close_fd;
    SSL_CTX_set_min_proto_version(sc, TLS1_3_VERSION);
    SSL_CTX_set_verify(sc, SSL_VERIFY_NONE, NULL);
    if (r->cert != NULL && (SSL_CTX_use_certificate_file(sc, r->cert, SSL_FILETYPE_PEM) != 1 ||
                            SSL_CTX_use_PrivateKey_file(sc, r->key, SSL_FILETYPE_PEM) != 1))
        goto out_free_ctx;
    SSL *ssl = SSL_new(sc);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1)
        goto out_free_ssl;
    if (SSL_connect(ssl) == 1) {
        r->handshake_ok = true;
        if (r->send_len > 0)
            (void)SSL_write(ssl, r->send, (int)r->send_len);
        uint8_t buf[256];
        while (SSL_read(ssl, buf, sizeof(buf)) > 0)
            ;
        r->closed = true;
    }
    unsigned long e = ERR_peek_error();
    if (e != 0)
        snprintf(r->error, sizeof(r->error), "%s", ERR_reason_error_string(e));
    ERR_clear_error();
out_free_ssl:
    SSL_free(ssl);
out_free_ctx:
    SSL_CTX_free(sc);
out_close_fd:
    close(fd);
    return NULL;
}

static void raw_client_start(struct raw_client *r, const char *rel)
{
    static char cert[PATH_BYTES];
    static char key[PATH_BYTES];
    r->port = tls_listener_port(w.listener);
    if (rel != NULL) {
        path_format(cert, "%s/%s/node.crt", fixture_dir, rel);
        path_format(key, "%s/%s/node.key", fixture_dir, rel);
        r->cert = cert;
        r->key = key;
    }
    CU_ASSERT_EQUAL_FATAL(pthread_create(&r->thread, NULL, raw_client_main, r), 0);
}

/* Runs the loop until the server side closed once, then joins the client. */
static void raw_client_finish(struct raw_client *r)
{
    CU_ASSERT(run_until(&w.srv.closes, 1, LOOP_MS));
    CU_ASSERT_EQUAL(pthread_join(r->thread, NULL), 0);
}

/* ----- tests ------------------------------------------------------------ */

static void test_tls_handshake_identities(void)
{
    world_init();
    start_server(ctx_for("hub", TRIAL), 0, NULL);
    struct tls_conn *c = start_client(ctx_for("site", TRIAL));
    CU_ASSERT_PTR_NULL(tls_conn_peer(c));
    CU_ASSERT_FALSE(tls_conn_is_open(c));
    CU_ASSERT(run_until(&w.srv.handshakes, 1, LOOP_MS));
    CU_ASSERT(run_until(&w.cli.handshakes, 1, LOOP_MS));

    CU_ASSERT_STRING_EQUAL(w.srv.peer.trial, TRIAL);
    CU_ASSERT_EQUAL(w.srv.peer.role, PKI_ROLE_SITE);
    CU_ASSERT_STRING_EQUAL(w.srv.peer.id, "s01");
    CU_ASSERT_STRING_EQUAL(w.cli.peer.trial, TRIAL);
    CU_ASSERT_EQUAL(w.cli.peer.role, PKI_ROLE_HUB);
    CU_ASSERT_STRING_EQUAL(w.cli.peer.id, "hub1");
    CU_ASSERT_EQUAL(tls_ctx_identity(w.srv_ctx)->role, PKI_ROLE_HUB);
    CU_ASSERT_STRING_EQUAL(tls_ctx_identity(w.cli_ctx)->id, "s01");

    CU_ASSERT_PTR_NOT_NULL_FATAL(tls_conn_peer(c));
    CU_ASSERT_STRING_EQUAL(tls_conn_peer(c)->id, "hub1");
    CU_ASSERT(tls_conn_is_open(c));
    CU_ASSERT_FALSE(tls_conn_is_server(c));
    CU_ASSERT_PTR_NOT_NULL_FATAL(w.srv.conn);
    CU_ASSERT(tls_conn_is_server(w.srv.conn));
    CU_ASSERT(contains(tls_conn_peer_addr(w.srv.conn), "127.0.0.1:"));
    CU_ASSERT_EQUAL(tls_listener_handshaking(w.listener), 0);

    /* An orderly close: the owner's reason on this side, "closed by peer" there. */
    tls_conn_close(c, 0, "done here");
    tls_conn_close(c, TS_ERR_IO, "ignored: already closing");
    CU_ASSERT_EQUAL(tls_conn_send_frame(c, (const uint8_t *)"x", 1), TS_ERR_IO);
    CU_ASSERT(run_until(&w.cli.closes, 1, LOOP_MS));
    CU_ASSERT(run_until(&w.srv.closes, 1, LOOP_MS));
    CU_ASSERT_EQUAL(w.cli.close_code, 0);
    CU_ASSERT(contains(w.cli.close_text, "done here"));
    CU_ASSERT(contains(w.cli.close_text, "(hub/hub1)"));
    CU_ASSERT_EQUAL(w.srv.close_code, 0);
    CU_ASSERT(contains(w.srv.close_text, "closed by peer"));
    CU_ASSERT(contains(w.srv.close_text, "(site/s01)"));
    world_release();
    CU_ASSERT_EQUAL(w.cli.closes, 1);
    CU_ASSERT_EQUAL(w.srv.closes, 1);
}

static void test_tls_frames_echo(void)
{
    world_init();
    w.srv.echo = true;
    start_server(ctx_for("hub", TRIAL), 0, NULL);
    struct tls_conn *c = start_client(ctx_for("site", TRIAL));

    /* Queued before the handshake: sent once the server is verified.  More
     * frames than one wakeup delivers, then one of 1 MiB. */
    uint64_t sums[SMALL_FRAMES + 1];
    uint8_t small[300];
    for (int i = 0; i < SMALL_FRAMES; i++) {
        size_t len = 1 + (size_t)(unit_rand() % sizeof(small));
        for (size_t j = 0; j < len; j++)
            small[j] = (uint8_t)unit_rand();
        sums[i] = fnv1a(small, len);
        CU_ASSERT_EQUAL(tls_conn_send_frame(c, small, len), 0);
    }
    uint8_t *big = malloc(BIG_FRAME_BYTES);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    for (size_t j = 0; j < BIG_FRAME_BYTES; j++)
        big[j] = (uint8_t)unit_rand();
    sums[SMALL_FRAMES] = fnv1a(big, BIG_FRAME_BYTES);
    CU_ASSERT_EQUAL(tls_conn_send_frame(c, big, BIG_FRAME_BYTES), 0);
    CU_ASSERT(tls_conn_send_queued_bytes(c) > BIG_FRAME_BYTES);

    CU_ASSERT(run_until(&w.cli.frames, SMALL_FRAMES + 1, LOOP_MS));
    CU_ASSERT_EQUAL(w.srv.frames, SMALL_FRAMES + 1);
    CU_ASSERT_EQUAL(w.cli.frames, SMALL_FRAMES + 1);
    for (int i = 0; i <= SMALL_FRAMES; i++) {
        CU_ASSERT_EQUAL(w.srv.frame_sums[i], sums[i]);
        CU_ASSERT_EQUAL(w.cli.frame_sums[i], sums[i]);
    }
    CU_ASSERT_EQUAL(w.srv.frame_bytes, w.cli.frame_bytes);
    CU_ASSERT(run_until(&w.cli.drains, 1, LOOP_MS));
    CU_ASSERT_EQUAL(tls_conn_send_queued_bytes(c), 0);

    /* The server starts one too: 1 MiB the other way. */
    CU_ASSERT_PTR_NOT_NULL_FATAL(w.srv.conn);
    w.srv.echo = false;
    CU_ASSERT_EQUAL(tls_conn_send_frame(w.srv.conn, big, BIG_FRAME_BYTES), 0);
    CU_ASSERT(run_until(&w.cli.frames, SMALL_FRAMES + 2, LOOP_MS));
    CU_ASSERT_EQUAL(w.cli.frame_sums[SMALL_FRAMES + 1], sums[SMALL_FRAMES]);
    CU_ASSERT_EQUAL(w.srv.closes + w.cli.closes, 0);
    free(big);
    world_release();
}

static void test_tls_send_limits(void)
{
    world_init();
    start_server(ctx_for("hub", TRIAL), 0, NULL);
    struct tls_conn *c = start_client(ctx_for("site", TRIAL));
    uint8_t *big = calloc(1, TS_FRAME_BYTES_MAX + 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big);

    CU_ASSERT_EQUAL(tls_conn_send_frame(c, big, 0), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(tls_conn_send_frame(c, big, TS_FRAME_BYTES_MAX + 1), TS_ERR_TOOBIG);
    int queued = 0;
    while (tls_conn_send_frame(c, big, TS_FRAME_BYTES_MAX) == 0)
        queued++;
    CU_ASSERT_EQUAL(queued, (int)(TLS_SEND_QUEUE_BYTES_MAX / (TS_FRAME_BYTES_MAX + 4)));
    CU_ASSERT(tls_conn_send_queued_bytes(c) <= TLS_SEND_QUEUE_BYTES_MAX);
    CU_ASSERT_EQUAL(tls_conn_send_frame(c, big, TS_FRAME_BYTES_MAX), TS_ERR_TOOBIG);

    /* Everything queued arrives; the queue drains and takes frames again. */
    CU_ASSERT(run_until(&w.srv.frames, queued, LOOP_MS));
    CU_ASSERT_EQUAL(w.srv.frame_bytes, (size_t)queued * TS_FRAME_BYTES_MAX);
    CU_ASSERT(run_until(&w.cli.drains, 1, LOOP_MS));
    CU_ASSERT_EQUAL(tls_conn_send_queued_bytes(c), 0);
    CU_ASSERT_EQUAL(tls_conn_send_frame(c, big, TS_FRAME_BYTES_MAX), 0);
    free(big);
    world_release();
}

static void test_tls_oversized_frame_refused(void)
{
    world_init();
    start_server(ctx_for("hub", TRIAL), 0, NULL);
    /* Only the prefix is sent: the server must decide on it alone, without
     * waiting for (or allocating) 4 GiB. */
    static const uint8_t prefix[4] = {0xFF, 0xFF, 0xFF, 0xF0};
    struct raw_client r = {.send = prefix, .send_len = sizeof(prefix)};
    raw_client_start(&r, "site");
    raw_client_finish(&r);
    CU_ASSERT(r.handshake_ok);
    CU_ASSERT(r.closed);
    CU_ASSERT_EQUAL(w.srv.handshakes, 1);
    CU_ASSERT_EQUAL(w.srv.frames, 0);
    CU_ASSERT_EQUAL(w.srv.close_code, TS_ERR_TOOBIG);
    CU_ASSERT(contains(w.srv.close_text, "frame of 4294967280 bytes is above the limit"));
    CU_ASSERT(contains(w.srv.close_text, "peer 127.0.0.1:"));
    world_release();
}

static void test_tls_empty_frame_refused(void)
{
    world_init();
    start_server(ctx_for("hub", TRIAL), 0, NULL);
    static const uint8_t prefix[4] = {0, 0, 0, 0};
    struct raw_client r = {.send = prefix, .send_len = sizeof(prefix)};
    raw_client_start(&r, "site");
    raw_client_finish(&r);
    CU_ASSERT(r.closed);
    CU_ASSERT_EQUAL(w.srv.frames, 0);
    CU_ASSERT_EQUAL(w.srv.close_code, TS_ERR_CORRUPT);
    CU_ASSERT(contains(w.srv.close_text, "malformed frame"));
    world_release();
}

static void test_tls_no_client_cert_refused(void)
{
    world_init();
    start_server(ctx_for("hub", TRIAL), 0, NULL);
    struct raw_client r = {0};
    raw_client_start(&r, NULL);
    raw_client_finish(&r);
    CU_ASSERT_EQUAL(w.srv.handshakes, 0);
    CU_ASSERT_EQUAL(w.srv.close_code, TS_ERR_AUTH);
    CU_ASSERT(contains(w.srv.close_text, "peer did not return a certificate"));
    /* The client is told why, with an alert. */
    CU_ASSERT(contains(r.error, "certificate required"));
    world_release();
}

static void test_tls_other_ca_refused(void)
{
    world_init();
    start_server(ctx_for("hub", TRIAL), 0, NULL);
    struct raw_client r = {0};
    raw_client_start(&r, "stranger");
    raw_client_finish(&r);
    CU_ASSERT_EQUAL(w.srv.handshakes, 0);
    CU_ASSERT_EQUAL(w.srv.close_code, TS_ERR_AUTH);
    CU_ASSERT(contains(w.srv.close_text, "certificate verify failed: unable to get local issuer"));
    CU_ASSERT(contains(r.error, "unknown ca"));

    /* Nor does a node start with a certificate another CA signed. */
    struct tls_ctx *bad = NULL;
    struct ts_error err = {0};
    struct tls_ctx_config cfg = {
        .trial = TRIAL,
        .ca_path = fx("ca/ca.crt"),
        .cert_path = fx("stranger/node.crt"),
        .key_path = fx("stranger/node.key"),
    };
    CU_ASSERT_EQUAL(tls_ctx_new(&cfg, &bad, &err), TS_ERR_CONFIG);
    CU_ASSERT(contains(err.msg, "not signed by the trial CA"));
    world_release();
}

static void test_tls_wrong_trial_refused(void)
{
    world_init();
    start_server(ctx_for("hub", TRIAL), 0, NULL);
    struct raw_client r = {0};
    raw_client_start(&r, "wrong-trial");
    raw_client_finish(&r);
    CU_ASSERT_EQUAL(w.srv.handshakes, 0);
    CU_ASSERT_EQUAL(w.srv.close_code, TS_ERR_AUTH);
    CU_ASSERT(contains(w.srv.close_text, "certificate is for trial 'T2'"));
    CU_ASSERT(contains(r.error, "handshake failure"));

    /* The client side checks too: a node of trial T2 (same CA, for the sake
     * of the test) refuses a hub of T1 in its handshake. */
    struct tls_conn *c = start_client(ctx_for("wrong-trial", "T2"));
    (void)c;
    CU_ASSERT(run_until(&w.cli.closes, 1, LOOP_MS));
    CU_ASSERT(run_until(&w.srv.closes, 2, LOOP_MS));
    CU_ASSERT_EQUAL(w.cli.handshakes, 0);
    CU_ASSERT_EQUAL(w.cli.close_code, TS_ERR_AUTH);
    CU_ASSERT(contains(w.cli.close_text, "certificate is for trial 'T1', this node is in trial 'T2'"));
    CU_ASSERT_EQUAL(w.srv.close_code, TS_ERR_AUTH);
    CU_ASSERT(contains(w.srv.close_text, "alert handshake failure"));
    world_release();
}

static void test_tls_expired_refused(void)
{
    world_init();
    start_server(ctx_for("hub", TRIAL), 0, NULL);
    struct raw_client r = {0};
    raw_client_start(&r, "expired");
    raw_client_finish(&r);
    CU_ASSERT_EQUAL(w.srv.handshakes, 0);
    CU_ASSERT_EQUAL(w.srv.close_code, TS_ERR_AUTH);
    CU_ASSERT(contains(w.srv.close_text, "certificate verify failed: certificate has expired"));
    CU_ASSERT(contains(r.error, "certificate expired"));
    world_release();
}

static void test_tls_revoked_refused_after_crl_reload(void)
{
    world_init();
    start_server(ctx_for("hub", TRIAL), 0, NULL);
    start_client(ctx_for("revoked", TRIAL));
    CU_ASSERT(run_until(&w.srv.handshakes, 1, LOOP_MS));
    CU_ASSERT(run_until(&w.cli.handshakes, 1, LOOP_MS));

    /* Revoke s05: the live link is cut off when the CRL is reloaded. */
    struct ts_error err = {0};
    int rc = pki_revoke(fx("ca"), fx("revoked/node.crt"), NULL, &err);
    if (rc != 0)
        fprintf(stderr, "pki_revoke: %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    unsigned cut = 0;
    CU_ASSERT_EQUAL(tls_ctx_reload_crl(w.srv_ctx, NULL, &cut, &err), 0);
    CU_ASSERT_EQUAL(cut, 1);
    CU_ASSERT(run_until(&w.srv.closes, 1, LOOP_MS));
    CU_ASSERT(run_until(&w.cli.closes, 1, LOOP_MS));
    CU_ASSERT_EQUAL(w.srv.close_code, TS_ERR_AUTH);
    CU_ASSERT(contains(w.srv.close_text, "certificate revoked"));

    /* And it cannot come back. */
    start_client(w.cli_ctx);
    CU_ASSERT(run_until(&w.srv.closes, 2, LOOP_MS));
    CU_ASSERT(run_until(&w.cli.closes, 2, LOOP_MS));
    CU_ASSERT_EQUAL(w.srv.handshakes, 1);
    CU_ASSERT_EQUAL(w.srv.close_code, TS_ERR_AUTH);
    CU_ASSERT(contains(w.srv.close_text, "certificate verify failed: certificate revoked"));
    CU_ASSERT_EQUAL(w.cli.close_code, TS_ERR_AUTH);
    CU_ASSERT(contains(w.cli.close_text, "alert certificate revoked"));

    /* Others are unaffected. */
    tls_ctx_free(w.cli_ctx);
    start_client(ctx_for("site", TRIAL));
    CU_ASSERT(run_until(&w.srv.handshakes, 2, LOOP_MS));
    CU_ASSERT_EQUAL(tls_ctx_reload_crl(w.srv_ctx, NULL, &cut, &err), 0);
    CU_ASSERT_EQUAL(cut, 0);
    world_release();
}

static void test_tls_stale_crl_still_enforced(void)
{
    /* CRLs revoking s06: one ten days past its nextUpdate, one dated an
     * hour ahead of our clock. */
    static const char *const crls[] = {"expired-crl.pem", "future-crl.pem"};
    for (size_t i = 0; i < sizeof(crls) / sizeof(crls[0]); i++) {
        world_init();
        start_server(ctx_with_crl("hub", TRIAL, crls[i]), 0, NULL);
        start_client(ctx_for("revoked-old", TRIAL));
        CU_ASSERT(run_until(&w.srv.closes, 1, LOOP_MS));
        CU_ASSERT_EQUAL(w.srv.handshakes, 0);
        CU_ASSERT_EQUAL(w.srv.close_code, TS_ERR_AUTH);
        CU_ASSERT(contains(w.srv.close_text, "certificate verify failed: certificate revoked"));
        CU_ASSERT(run_until(&w.cli.closes, 1, LOOP_MS));

        /* Everyone else still gets in. */
        tls_ctx_free(w.cli_ctx);
        start_client(ctx_for("site", TRIAL));
        CU_ASSERT(run_until(&w.srv.handshakes, 1, LOOP_MS));
        CU_ASSERT_EQUAL(w.srv.peer.role, PKI_ROLE_SITE);
        CU_ASSERT_STRING_EQUAL(w.srv.peer.id, "s01");
        world_release();
    }
}

static void test_tls_owner_refuses_peer(void)
{
    world_init();
    w.srv.refuse = 1;
    start_server(ctx_for("hub", TRIAL), 0, NULL);
    start_client(ctx_for("site", TRIAL));
    CU_ASSERT(run_until(&w.srv.closes, 1, LOOP_MS));
    CU_ASSERT(run_until(&w.cli.closes, 1, LOOP_MS));
    CU_ASSERT_EQUAL(w.srv.close_code, TS_ERR_AUTH);
    CU_ASSERT(contains(w.srv.close_text, "refused by this node"));
    world_release();
}

/* A TCP client that connects and then says nothing (or, with speak set,
 * one byte of a TLS record header and then nothing). */
struct mute_client {
    uv_tcp_t tcp;
    uv_connect_t req;
    bool speak;
    int connected;
    int eof;
};

static void mute_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char scratch[256];
    buf->base = scratch;
    buf->len = sizeof(scratch);
}

static void mute_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct mute_client *m = s->data;
    if (nread < 0) {
        m->eof++;
        uv_read_stop(s);
    }
}

static void mute_connect_cb(uv_connect_t *req, int status)
{
    struct mute_client *m = req->handle->data;
    CU_ASSERT_EQUAL(status, 0);
    m->connected++;
    if (m->speak) {
        uv_buf_t b = uv_buf_init("\x16", 1);
        CU_ASSERT_EQUAL(uv_try_write(req->handle, &b, 1), 1);
    }
    uv_read_start(req->handle, mute_alloc_cb, mute_read_cb);
}

static void mute_start(struct mute_client *m)
{
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", tls_listener_port(w.listener), &sa);
    uv_tcp_init(&w.loop, &m->tcp);
    m->tcp.data = m;
    CU_ASSERT_EQUAL(uv_tcp_connect(&m->req, &m->tcp, (struct sockaddr *)&sa, mute_connect_cb), 0);
}

/* Starts a server with those deadlines and a mute client m, and checks the
 * server closes m with a reason containing why. */
static void mute_timed_out(struct mute_client *m, uint32_t hello_ms, uint32_t handshake_ms,
                           const char *why)
{
    struct tls_conn_opts opts;
    tls_conn_opts_default(&opts);
    opts.hello_timeout_ms = hello_ms;
    opts.handshake_timeout_ms = handshake_ms;
    start_server(ctx_for("hub", TRIAL), 0, &opts);
    mute_start(m);
    CU_ASSERT(run_until(&m->connected, 1, LOOP_MS));
    CU_ASSERT(run_until(&w.srv.closes, 1, LOOP_MS));
    CU_ASSERT_EQUAL(w.srv.close_code, TS_ERR_IO);
    CU_ASSERT(contains(w.srv.close_text, why));
    CU_ASSERT(run_until(&m->eof, 1, LOOP_MS));
}

/* Starts a server with one handshake slot and lets m take it. */
static void one_slot_held_by(struct mute_client *m)
{
    start_server(ctx_for("hub", TRIAL), 1, NULL);
    mute_start(m);
    CU_ASSERT(run_until(&m->connected, 1, LOOP_MS));
    run_for(50);
    CU_ASSERT_EQUAL(tls_listener_handshaking(w.listener), 1);
}

static void test_tls_handshake_timeout(void)
{
    world_init();
    struct mute_client m = {0};
    mute_timed_out(&m, TLS_HELLO_TIMEOUT_MS_DEFAULT, 200, "handshake timeout");
    CU_ASSERT_EQUAL(tls_listener_handshaking(w.listener), 0);
    uv_close((uv_handle_t *)&m.tcp, NULL);
    world_release();
}

static void test_tls_handshake_cap(void)
{
    world_init();
    /* The only slot goes to a client that spoke (one byte), then stalls. */
    struct mute_client m1 = {.speak = true};
    one_slot_held_by(&m1);
    /* A real client finds no silent connection to evict: refused, and the
     * first keeps its slot. */
    start_client(ctx_for("site", TRIAL));
    CU_ASSERT(run_until(&w.srv.closes, 1, LOOP_MS));
    CU_ASSERT_EQUAL(w.srv.close_code, TS_ERR_TOOBIG);
    CU_ASSERT(contains(w.srv.close_text, "too many handshakes in progress"));
    CU_ASSERT(run_until(&w.cli.closes, 1, LOOP_MS));
    CU_ASSERT_EQUAL(w.cli.handshakes, 0);
    CU_ASSERT_EQUAL(m1.eof, 0);
    CU_ASSERT_EQUAL(tls_listener_handshaking(w.listener), 1);
    /* The slot frees up when the stalled client leaves. */
    uv_close((uv_handle_t *)&m1.tcp, NULL);
    CU_ASSERT(run_until(&w.srv.closes, 2, LOOP_MS));
    CU_ASSERT_EQUAL(tls_listener_handshaking(w.listener), 0);
    world_release();
}

/* A silent client over a full cap holds no slot: it waits for its first
 * bytes and is closed at the ClientHello deadline. */
static void test_tls_handshake_cap_silent_waits(void)
{
    world_init();
    struct tls_conn_opts opts;
    tls_conn_opts_default(&opts);
    opts.hello_timeout_ms = 300;
    start_server(ctx_for("hub", TRIAL), 1, &opts);
    struct mute_client m1 = {.speak = true};
    struct mute_client m2 = {0};
    mute_start(&m1);
    CU_ASSERT(run_until(&m1.connected, 1, LOOP_MS));
    run_for(50);
    mute_start(&m2);
    CU_ASSERT(run_until(&m2.connected, 1, LOOP_MS));
    run_for(50);
    CU_ASSERT_EQUAL(tls_listener_handshaking(w.listener), 1);
    CU_ASSERT(run_until(&m2.eof, 1, LOOP_MS));
    CU_ASSERT(run_until(&m1.eof, 1, LOOP_MS));
    CU_ASSERT(contains(w.srv.close_text, "no ClientHello within 300 ms"));
    CU_ASSERT_EQUAL(tls_listener_handshaking(w.listener), 0);
    uv_close((uv_handle_t *)&m1.tcp, NULL);
    uv_close((uv_handle_t *)&m2.tcp, NULL);
    world_release();
}

static void test_tls_hello_timeout(void)
{
    world_init();
    struct mute_client m = {0};
    /* Closed at the ClientHello deadline, long before the handshake's. */
    mute_timed_out(&m, 200, 20000, "handshake timeout: no ClientHello within 200 ms");
    /* A real client, whose ClientHello comes at once, is not cut off by it. */
    start_client(ctx_for("site", TRIAL));
    CU_ASSERT(run_until(&w.srv.handshakes, 1, LOOP_MS));
    run_for(400);
    CU_ASSERT_EQUAL(w.srv.closes, 1);
    uv_close((uv_handle_t *)&m.tcp, NULL);
    world_release();
}

static void test_tls_silent_evicted_for_a_peer(void)
{
    world_init();
    struct mute_client m1 = {0};
    one_slot_held_by(&m1);
    /* The only slot is held by a silent client; a real peer takes it. */
    start_client(ctx_for("site", TRIAL));
    CU_ASSERT(run_until(&w.srv.handshakes, 1, LOOP_MS));
    CU_ASSERT(run_until(&w.cli.handshakes, 1, LOOP_MS));
    CU_ASSERT(run_until(&m1.eof, 1, LOOP_MS));
    CU_ASSERT_EQUAL(w.srv.close_code, TS_ERR_TOOBIG);
    CU_ASSERT(contains(w.srv.close_text, "evicted: silent since accept"));
    uv_close((uv_handle_t *)&m1.tcp, NULL);
    world_release();
}

/* Sends the server a frame every tick, ticks_left times. */
struct ticker {
    uv_timer_t timer;
    int ticks_left;
};

static void ticker_cb(uv_timer_t *t)
{
    struct ticker *k = (struct ticker *)t;
    if (k->ticks_left == 0 || w.cli.conn == NULL) {
        uv_timer_stop(t);
        return;
    }
    k->ticks_left--;
    CU_ASSERT_EQUAL(tls_conn_send_frame(w.cli.conn, (const uint8_t *)"ping", 4), 0);
}

static void test_tls_idle_timeout(void)
{
    world_init();
    start_server(ctx_for("hub", TRIAL), 0, NULL);
    struct tls_conn *c = start_client(ctx_for("site", TRIAL));
    CU_ASSERT(run_until(&w.srv.handshakes, 1, LOOP_MS));
    CU_ASSERT_PTR_NOT_NULL_FATAL(w.srv.conn);
    /* The server hears from the client every 50 ms for a while: not idle. */
    tls_conn_set_idle_timeout(w.srv.conn, 400);
    struct ticker k = {.ticks_left = 8};
    uv_timer_init(&w.loop, &k.timer);
    uv_timer_start(&k.timer, ticker_cb, 50, 50);
    CU_ASSERT(run_until(&w.srv.frames, 8, LOOP_MS));
    CU_ASSERT_EQUAL(w.srv.closes, 0);
    /* Then the client goes quiet. */
    CU_ASSERT(run_until(&w.srv.closes, 1, LOOP_MS));
    CU_ASSERT_EQUAL(w.srv.close_code, TS_ERR_IO);
    CU_ASSERT(contains(w.srv.close_text, "idle timeout: nothing received for 400 ms"));
    CU_ASSERT(run_until(&w.cli.closes, 1, LOOP_MS));
    CU_ASSERT_EQUAL(w.cli.close_code, 0);
    (void)c;
    uv_close((uv_handle_t *)&k.timer, NULL);
    world_release();
}

static void test_tls_connect_by_name(void)
{
    /* Listen where the resolver sends "localhost" first, as uv_getaddrinfo will. */
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    char host[64];
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    CU_ASSERT_EQUAL_FATAL(getaddrinfo("localhost", NULL, &hints, &res), 0);
    CU_ASSERT_EQUAL_FATAL(getnameinfo(res->ai_addr, res->ai_addrlen, host, sizeof(host), NULL, 0,
                                      NI_NUMERICHOST), 0);
    freeaddrinfo(res);

    world_init();
    start_server_on(ctx_for("hub", TRIAL), host, 0, NULL);
    struct tls_conn *c = start_client_to(ctx_for("site", TRIAL), "localhost",
                                         tls_listener_port(w.listener));
    CU_ASSERT(contains(tls_conn_peer_addr(c), "localhost:"));
    CU_ASSERT(run_until(&w.cli.handshakes, 1, LOOP_MS));
    CU_ASSERT(run_until(&w.srv.handshakes, 1, LOOP_MS));
    CU_ASSERT(contains(tls_conn_peer_addr(w.srv.conn), host));
    world_release();
}

static void test_tls_connect_and_listen_errors(void)
{
    world_init();
    start_server(ctx_for("hub", TRIAL), 0, NULL);
    int port = tls_listener_port(w.listener);
    struct tls_listener *l2 = NULL;
    struct tls_conn *c = NULL;
    struct ts_error err = {0};

    /* The port is taken. */
    CU_ASSERT_EQUAL(tls_listen(&w.loop, w.srv_ctx, "127.0.0.1", port, 0, NULL, &cbs, NULL, &l2,
                               &err), TS_ERR_IO);
    CU_ASSERT(contains(err.msg, "address already in use"));
    /* Listening needs a numeric address. */
    CU_ASSERT_EQUAL(tls_listen(&w.loop, w.srv_ctx, "localhost", 0, 0, NULL, &cbs, NULL, &l2,
                               &err), TS_ERR_INVALID);
    /* Bad arguments create nothing and call nothing. */
    w.cli_ctx = ctx_for("site", TRIAL);
    CU_ASSERT_EQUAL(tls_connect(&w.loop, w.cli_ctx, "127.0.0.1", 0, NULL, &cbs, &w.cli, &c,
                                &err), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(tls_connect(&w.loop, w.cli_ctx, "", 1, NULL, &cbs, &w.cli, &c, &err),
                    TS_ERR_INVALID);

    /* Nobody listens any more: the failure comes through on_close. */
    tls_listener_close(w.listener);
    w.listener = NULL;
    run_for(20);
    start_client_to(w.cli_ctx, "127.0.0.1", port);
    CU_ASSERT(run_until(&w.cli.closes, 1, LOOP_MS));
    CU_ASSERT_EQUAL(w.cli.handshakes, 0);
    CU_ASSERT_EQUAL(w.cli.close_code, TS_ERR_IO);
    CU_ASSERT(contains(w.cli.close_text, "connect failed: connection refused"));

    /* Closing a conn still connecting is fine too. */
    c = start_client_to(w.cli_ctx, "127.0.0.1", port);
    tls_conn_close(c, 0, "changed my mind");
    CU_ASSERT(run_until(&w.cli.closes, 2, LOOP_MS));
    CU_ASSERT(contains(w.cli.close_text, "changed my mind"));
    world_release();
}

static void test_tls_ctx_refuses_bad_config(void)
{
    fixture_once();
    struct tls_ctx *ctx = NULL;
    struct ts_error err = {0};
    char key[PATH_BYTES];
    char cmd[PATH_BYTES * 3 + 64];
    path_format(key, "%s/site-key-0644", fixture_dir);
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && chmod 0644 '%s'", fx("site/node.key"), key, key);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    struct tls_ctx_config cfg = {
        .trial = TRIAL,
        .ca_path = fx("ca/ca.crt"),
        .cert_path = fx("site/node.crt"),
        .key_path = key,
    };
    CU_ASSERT_EQUAL(tls_ctx_new(&cfg, &ctx, &err), TS_ERR_PERM);

    /* An encrypted node key is refused, never prompted for: a daemon restarts unattended. */
    path_format(key, "%s/site-key-encrypted", fixture_dir);
    EVP_PKEY *site_key = read_pem(fx("site/node.key"), true);
    BIO *b = BIO_new(BIO_s_mem());
    CU_ASSERT_FATAL(b != NULL && PEM_write_bio_PrivateKey(b, site_key, EVP_aes_256_cbc(),
                                                         (const unsigned char *)"passphrase",
                                                         10, NULL, NULL) == 1);
    char *data = NULL;
    long len = BIO_get_mem_data(b, &data);
    FILE *f = fopen(key, "w");
    CU_ASSERT_FATAL(f != NULL && fwrite(data, 1, (size_t)len, f) == (size_t)len);
    CU_ASSERT_FATAL(fclose(f) == 0 && chmod(key, 0600) == 0);
    BIO_free(b);
    EVP_PKEY_free(site_key);
    CU_ASSERT_EQUAL(tls_ctx_new(&cfg, &ctx, &err), TS_ERR_CONFIG);
    CU_ASSERT(contains(err.msg, "is encrypted"));
    CU_ASSERT(contains(err.msg, "unattended"));
    CU_ASSERT(ERR_peek_error() == 0);

    cfg.key_path = fx("hub/node.key");
    CU_ASSERT_EQUAL(tls_ctx_new(&cfg, &ctx, &err), TS_ERR_CONFIG);
    CU_ASSERT(contains(err.msg, "does not match"));

    cfg.key_path = fx("site/node.key");
    cfg.trial = "T2";
    CU_ASSERT_EQUAL(tls_ctx_new(&cfg, &ctx, &err), TS_ERR_CONFIG);
    CU_ASSERT(contains(err.msg, "is for trial 'T1'"));

    cfg.trial = TRIAL;
    cfg.cert_path = fx("expired/node.crt");
    cfg.key_path = fx("expired/node.key");
    CU_ASSERT_EQUAL(tls_ctx_new(&cfg, &ctx, &err), TS_ERR_CONFIG);
    CU_ASSERT(contains(err.msg, "expired on"));

    cfg.cert_path = fx("site/node.crt");
    cfg.key_path = fx("site/node.key");
    cfg.crl_path = fx("other-ca/crl.pem");
    CU_ASSERT_EQUAL(tls_ctx_new(&cfg, &ctx, &err), TS_ERR_CONFIG);
    CU_ASSERT(contains(err.msg, "not signed by the trial CA"));

    cfg.crl_path = NULL;
    CU_ASSERT_EQUAL_FATAL(tls_ctx_new(&cfg, &ctx, &err), 0);
    CU_ASSERT_EQUAL(tls_ctx_reload_crl(ctx, NULL, NULL, &err), TS_ERR_INVALID);
    CU_ASSERT_EQUAL(tls_ctx_reload_crl(ctx, fx("ca/crl.pem"), NULL, &err), 0);
    tls_ctx_free(ctx);
}

int main(void)
{
    static const struct unit_test tests[] = {
        {"test_tls_handshake_identities", test_tls_handshake_identities},
        {"test_tls_frames_echo", test_tls_frames_echo},
        {"test_tls_send_limits", test_tls_send_limits},
        {"test_tls_oversized_frame_refused", test_tls_oversized_frame_refused},
        {"test_tls_empty_frame_refused", test_tls_empty_frame_refused},
        {"test_tls_no_client_cert_refused", test_tls_no_client_cert_refused},
        {"test_tls_other_ca_refused", test_tls_other_ca_refused},
        {"test_tls_wrong_trial_refused", test_tls_wrong_trial_refused},
        {"test_tls_expired_refused", test_tls_expired_refused},
        {"test_tls_revoked_refused_after_crl_reload", test_tls_revoked_refused_after_crl_reload},
        {"test_tls_stale_crl_still_enforced", test_tls_stale_crl_still_enforced},
        {"test_tls_owner_refuses_peer", test_tls_owner_refuses_peer},
        {"test_tls_handshake_timeout", test_tls_handshake_timeout},
        {"test_tls_handshake_cap", test_tls_handshake_cap},
        {"test_tls_handshake_cap_silent_waits", test_tls_handshake_cap_silent_waits},
        {"test_tls_hello_timeout", test_tls_hello_timeout},
        {"test_tls_silent_evicted_for_a_peer", test_tls_silent_evicted_for_a_peer},
        {"test_tls_idle_timeout", test_tls_idle_timeout},
        {"test_tls_connect_by_name", test_tls_connect_by_name},
        {"test_tls_connect_and_listen_errors", test_tls_connect_and_listen_errors},
        {"test_tls_ctx_refuses_bad_config", test_tls_ctx_refuses_bad_config},
        {NULL, NULL},
    };
    unit_seed();
    return unit_run("tls", tests);
}
