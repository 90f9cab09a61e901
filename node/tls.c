/*
 * tls.c: mutually authenticated TLS 1.3 over libuv streams, with framing.
 *
 * OpenSSL never touches a socket here.  Each connection's SSL object reads
 * from one memory BIO (filled from libuv reads) and writes to another
 * (drained into uv_write requests), so no call blocks the loop.  Verification
 * is set explicitly: TLS 1.3 only, peer certificates required on both sides,
 * one X509_STORE holding only the trial CA (and the CRL), no session
 * resumption (so every connection is checked against the current CRL), and a
 * verify callback that reads the peer's identity from its URI SAN and refuses
 * another trial inside the handshake, so the peer gets an alert.
 *
 * Connection states, and the function making each transition:
 *
 *   RESOLVING --conn_resolve_cb--> CONNECTING --conn_connect_cb--> HANDSHAKE
 *   (tls_connect starts in RESOLVING or CONNECTING; an accepted conn starts
 *   in HANDSHAKE)
 *   HANDSHAKE --conn_handshake_done--> OPEN
 *   HANDSHAKE, OPEN --conn_close--> CLOSING   (final bytes: alert or
 *       close_notify, then FIN; reads discarded until the peer's FIN, so our
 *       last bytes are not lost to a reset; bounded by TLS_CLOSE_LINGER_MS)
 *   any --conn_close_handles--> CLOSED         (uv_close on every handle)
 *   CLOSED --conn_finish--> freed, after on_close, once every handle's close
 *       callback and any pending name lookup have come back.
 *
 * Work per callback is bounded: one socket read (TLS_READ_BYTES) per read
 * callback, at most TLS_FRAMES_PER_WAKEUP_MAX frames delivered per loop
 * iteration (reading pauses and a uv_idle handle resumes delivery), and
 * queued frames are encrypted once per iteration from a uv_prepare handle,
 * just before the loop blocks, so the frames queued meanwhile share records.
 */
#include "tls.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include "../proto/codec.h"
#include "crypto.h"
#include "openssl_util.h"
#include "util.h"

/* One socket read: a full TLS record (16 KiB of plaintext plus overhead). */
#define TLS_READ_BYTES (16 * 1024 + 512)
/* Plaintext per SSL_write: the TLS 1.3 maximum record payload. */
#define TLS_RECORD_PLAIN_BYTES (16 * 1024)
/* Ciphertext gathered before it is handed to uv_write: keeps the write BIO
 * small (it never shrinks) while writing in few system calls. */
#define TLS_WIRE_CHUNK_BYTES (64 * 1024)
/* Frames up to this size are received into the conn itself, not the heap:
 * acks and live pushes are a few hundred bytes. */
#define TLS_RX_INLINE_BYTES 4096
/* Pending connections the kernel holds for a listener. */
#define TLS_LISTEN_BACKLOG 511
/* The peer address: a DNS name (253) plus ":65535" and brackets. */
#define TLS_ADDR_BYTES 264

_Static_assert(TLS_RX_INLINE_BYTES < TS_FRAME_BYTES_MAX,
               "large frames must go to the heap");
_Static_assert(TLS_RECORD_PLAIN_BYTES <= TLS_WIRE_CHUNK_BYTES,
               "a wire chunk holds at least one record");

enum conn_state {
    CONN_RESOLVING,
    CONN_CONNECTING,
    CONN_HANDSHAKE,
    CONN_OPEN,
    CONN_CLOSING,
    CONN_CLOSED,
};

/*
 * How much of a goodbye a close sends, in increasing order: nothing; what
 * OpenSSL already wrote (an alert after a fatal error); close_notify; the
 * queued frames, then close_notify.
 */
enum close_mode {
    CLOSE_ABORT,
    CLOSE_DRAIN,
    CLOSE_NOTIFY,
    CLOSE_FLUSH,
};

struct tls_ctx {
    SSL_CTX *ssl_ctx;
    X509 *ca;
    char trial[TS_ID_BYTES_MAX + 1];
    struct pki_identity self;
    char *crl_path;            /* NULL: no CRL configured */
    struct tls_conn *conns;    /* every live conn of this ctx, for CRL cut-off */
    unsigned conns_live;
    unsigned listeners_live;
    bool trace;                /* TS_TLS_TRACE set: state transitions to stderr */
};

/* One queued outbound frame: the 4-byte prefix and the body, contiguous. */
struct out_chunk {
    struct out_chunk *next;
    size_t len;
    size_t off;                /* bytes already encrypted */
    uint8_t bytes[];
};

/* Ciphertext handed to libuv, freed by conn_write_cb. */
struct wire_write {
    uv_write_t req;
    size_t len;
    uint8_t bytes[];
};

struct tls_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;          /* handshake deadline, idle check, close linger */
    uv_idle_t resume;          /* delivers buffered frames after a capped wakeup */
    uv_prepare_t flush;        /* encrypts queued frames before the loop blocks */
    uv_connect_t connect_req;
    uv_shutdown_t shutdown_req;
    uv_getaddrinfo_t resolve_req;

    struct uv_loop_s *loop;
    struct tls_ctx *ctx;
    struct tls_listener *listener;   /* NULL for a client conn */
    struct tls_conn *ctx_prev;
    struct tls_conn *ctx_next;
    SSL *ssl;
    BIO *rbio;                 /* network -> OpenSSL (owned by ssl) */
    BIO *wbio;                 /* OpenSSL -> network (owned by ssl) */

    enum conn_state state;
    bool server;
    bool hs_counted;           /* counted in listener->handshaking */
    bool resolving;            /* a name lookup is in flight */
    bool rx_paused;            /* frame cap hit: socket reads stopped */
    bool peer_known;           /* the verify callback accepted peer */
    bool shutdown_done;        /* CLOSING: our FIN is out */
    bool peer_eof;             /* CLOSING: the peer's FIN came in */
    bool close_set;            /* close_code and close_text are final */
    bool rx_any;               /* a byte came from the peer (a silent conn may be evicted) */
    bool waiting;              /* accepted silent over a cap: admitted when it speaks */
    unsigned handles_open;
    int uv_err;                /* the last libuv write error, for messages */

    struct tls_conn_cbs cbs;
    struct tls_conn_opts opts;
    void *data;
    struct pki_identity peer;
    char addr[TLS_ADDR_BYTES];
    uint64_t last_rx_ms;
    uint64_t started_ms;       /* uv_now at accept or tls_connect */

    size_t plain_bytes;        /* queued, not yet encrypted */
    size_t wire_bytes;         /* encrypted, not yet taken by the kernel */
    struct out_chunk *out_head;
    struct out_chunk *out_tail;

    struct {
        uint8_t hdr[4];
        size_t hdr_have;
        uint8_t *body;         /* rx_inline or heap; non-NULL iff hdr_have == 4 */
        uint32_t body_len;
        size_t body_have;
    } rx;

    int close_code;
    char close_text[TLS_REASON_BYTES_MAX];
    char refusal[256];         /* why the verify callback refused the peer */
    uint8_t rx_wire[TLS_READ_BYTES];
    uint8_t rx_inline[TLS_RX_INLINE_BYTES];
};

struct tls_listener {
    uv_tcp_t tcp;
    struct uv_loop_s *loop;
    struct tls_ctx *ctx;
    struct tls_conn_cbs cbs;
    struct tls_conn_opts opts;
    void *data;
    unsigned handshaking;
    unsigned handshaking_max;
    unsigned waiting;          /* conns with waiting set */
    unsigned conns_live;       /* accepted conns not yet freed */
    int port;
    bool closing;
    bool handle_closed;
};

static void conn_close(struct tls_conn *c, int code, enum close_mode mode,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void conn_read_frames(struct tls_conn *c);
static void conn_timer_cb(uv_timer_t *t);
static void conn_flush_soon(struct tls_conn *c);
static void conn_resume_cb(uv_idle_t *h);

/* ----- OpenSSL helpers -------------------------------------------------- */

/* snprintf for messages, where cutting a long one short is intended. */
static void text_format(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void text_format(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(out, cap, fmt, ap);
    va_end(ap);
}

/* The reason of the earliest queued OpenSSL error, for a person. */
static const char *ssl_reason(unsigned long e)
{
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    return r != NULL ? r : "unknown TLS error";
}

/*
 * TS_ERR_AUTH for failures about certificates and identities (ours refused by
 * the peer, as alerts, or theirs refused here), TS_ERR_CORRUPT otherwise.
 */
static int ssl_error_code(unsigned long e)
{
    if (ERR_GET_LIB(e) != ERR_LIB_SSL)
        return TS_ERR_CORRUPT;
    int r = ERR_GET_REASON(e);
    if (r == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE || r == SSL_R_CERTIFICATE_VERIFY_FAILED)
        return TS_ERR_AUTH;
    if (r > SSL_AD_REASON_OFFSET) {
        switch (r - SSL_AD_REASON_OFFSET) {
        case SSL_AD_HANDSHAKE_FAILURE:
        case SSL_AD_BAD_CERTIFICATE:
        case SSL_AD_UNSUPPORTED_CERTIFICATE:
        case SSL_AD_CERTIFICATE_REVOKED:
        case SSL_AD_CERTIFICATE_EXPIRED:
        case SSL_AD_CERTIFICATE_UNKNOWN:
        case SSL_AD_UNKNOWN_CA:
        case SSL_AD_ACCESS_DENIED:
        case SSL_AD_CERTIFICATE_REQUIRED:
            return TS_ERR_AUTH;
        default:
            break;
        }
    }
    return TS_ERR_CORRUPT;
}

/* "Jan  2 03:04:05 2030 GMT", for messages. */
static void asn1_time_text(const ASN1_TIME *t, char *out, size_t cap)
{
    assert(cap > 0);
    out[0] = '\0';
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL)
        return;
    if (ASN1_TIME_print(b, t) == 1) {
        int n = BIO_read(b, out, (int)cap - 1);
        out[n > 0 ? n : 0] = '\0';
    }
    BIO_free(b);
    ERR_clear_error();
}

/* Loads one PEM certificate from a file. */
static int x509_load(const char *path, const char *what, X509 **out, char **pem_out,
                     size_t *pem_len, struct ts_error *err)
{
    char *pem = NULL;
    size_t len = 0;
    int rc = pki_read_file(path, &pem, &len, err);
    if (rc != 0)
        return rc;
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (b == NULL) {
        free(pem);
        return ts_error_set(err, TS_ERR_NOMEM, "out of memory reading %s", path);
    }
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    if (x == NULL) {
        free(pem);
        ERR_clear_error();
        return ts_error_set(err, TS_ERR_CONFIG, "%s %s is not a PEM certificate", what, path);
    }
    *out = x;
    if (pem_out != NULL) {
        *pem_out = pem;
        *pem_len = len;
    } else {
        free(pem);
    }
    return 0;
}

/* The trialsync identity of a certificate (its URI SAN), via pki.h. */
static int x509_identity(X509 *x, struct pki_identity *out, struct ts_error *err)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL)
        return ts_error_set(err, TS_ERR_NOMEM, "out of memory");
    int rc;
    char *pem = NULL;
    if (PEM_write_bio_X509(b, x) != 1) {
        ERR_clear_error();
        rc = ts_error_set(err, TS_ERR_NOMEM, "cannot encode the certificate");
        goto out_free_bio;
    }
    long len = BIO_get_mem_data(b, &pem);
    assert(len > 0);
    rc = pki_cert_identity(pem, (size_t)len, out, err);
out_free_bio:
    BIO_free(b);
    return rc;
}

/* Loads and checks a CRL: issued and signed by the trial CA. */
static int crl_load(const struct tls_ctx *ctx, const char *path, X509_CRL **out,
                    struct ts_error *err)
{
    char *pem = NULL;
    size_t len = 0;
    int rc = pki_read_file(path, &pem, &len, err);
    if (rc != 0)
        return rc;
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (b == NULL) {
        rc = ts_error_set(err, TS_ERR_NOMEM, "out of memory reading %s", path);
        goto out_free_pem;
    }
    X509_CRL *crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL);
    BIO_free(b);
    if (crl == NULL) {
        ERR_clear_error();
        rc = ts_error_set(err, TS_ERR_CONFIG, "revocation list %s is not a PEM CRL", path);
        goto out_free_pem;
    }
    if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ctx->ca)) != 0 ||
        X509_CRL_verify(crl, X509_get0_pubkey(ctx->ca)) != 1) {
        ERR_clear_error();
        rc = ts_error_set(err, TS_ERR_CONFIG,
                          "revocation list %s is not signed by the trial CA", path);
        goto out_free_crl;
    }
    const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
    if (next != NULL && X509_cmp_current_time(next) < 0) {
        /* Still enforced (see conn_verify_cb), but someone should know. */
        char when[64];
        asn1_time_text(next, when, sizeof(when));
        fprintf(stderr, "tls: warning: revocation list %s expired on %s; its revocations stay "
                "enforced; write a fresh one from the trial CA\n", path, when);
    }
    *out = crl;
    free(pem);
    return 0;
out_free_crl:
    X509_CRL_free(crl);
out_free_pem:
    free(pem);
    return rc;
}

/* A trust store holding the trial CA alone, and crl (may be NULL). */
static int store_new(const struct tls_ctx *ctx, X509_CRL *crl, X509_STORE **out,
                     struct ts_error *err)
{
    X509_STORE *s = X509_STORE_new();
    if (s == NULL)
        return ts_error_set(err, TS_ERR_NOMEM, "out of memory building the trust store");
    if (X509_STORE_add_cert(s, ctx->ca) != 1)
        goto out_free_store;
    if (crl != NULL) {
        if (X509_STORE_add_crl(s, crl) != 1)
            goto out_free_store;
        if (X509_STORE_set_flags(s, X509_V_FLAG_CRL_CHECK) != 1)
            goto out_free_store;
    }
    /* RFC 5280 conformance: refuse certificates OpenSSL would only tolerate. */
    if (X509_STORE_set_flags(s, X509_V_FLAG_X509_STRICT) != 1)
        goto out_free_store;
    *out = s;
    return 0;
out_free_store:
    X509_STORE_free(s);
    ERR_clear_error();
    return ts_error_set(err, TS_ERR_NOMEM, "cannot build the trust store");
}

/* ----- connection state ------------------------------------------------- */

static const char *conn_state_name(enum conn_state s)
{
    switch (s) {
    case CONN_RESOLVING: return "resolving";
    case CONN_CONNECTING: return "connecting";
    case CONN_HANDSHAKE: return "handshake";
    case CONN_OPEN: return "open";
    case CONN_CLOSING: return "closing";
    case CONN_CLOSED: return "closed";
    }
    return "?";
}

static bool conn_transition_ok(enum conn_state from, enum conn_state to)
{
    switch (from) {
    case CONN_RESOLVING: return to == CONN_CONNECTING || to == CONN_CLOSED;
    case CONN_CONNECTING: return to == CONN_HANDSHAKE || to == CONN_CLOSED;
    case CONN_HANDSHAKE: return to == CONN_OPEN || to == CONN_CLOSING || to == CONN_CLOSED;
    case CONN_OPEN: return to == CONN_CLOSING || to == CONN_CLOSED;
    case CONN_CLOSING: return to == CONN_CLOSED;
    case CONN_CLOSED: return false;
    }
    return false;
}

static bool conn_check(const struct tls_conn *c)
{
    if (c->state > CONN_CLOSED)
        return false;
    if (c->hs_counted && c->state != CONN_HANDSHAKE)
        return false;
    if (c->hs_counted && c->listener == NULL)
        return false;
    if (c->waiting && (c->hs_counted || c->state != CONN_HANDSHAKE))
        return false;
    if ((c->out_head == NULL) != (c->plain_bytes == 0))
        return false;
    if (c->rx.hdr_have > 4)
        return false;
    if (c->rx.body_have > c->rx.body_len)
        return false;
    if ((c->rx.body != NULL) != (c->rx.hdr_have == 4))
        return false;
    if (c->state >= CONN_CLOSING && !c->close_set)
        return false;
    if (c->state == CONN_OPEN && !c->peer_known)
        return false;
    if (c->server != (c->listener != NULL))
        return false;
    return true;
}

static void conn_set_state(struct tls_conn *c, enum conn_state to)
{
    assert(conn_transition_ok(c->state, to));
    if (c->hs_counted) {
        assert(c->listener->handshaking > 0);
        c->listener->handshaking--;
        c->hs_counted = false;
    }
    if (c->waiting) {
        assert(c->listener->waiting > 0);
        c->listener->waiting--;
        c->waiting = false;
    }
    if (c->ctx->trace)
        fprintf(stderr, "tls: peer %s: %s -> %s\n", c->addr, conn_state_name(c->state),
                conn_state_name(to));
    c->state = to;
    assert(conn_check(c));
}

static void conn_free_queue(struct tls_conn *c)
{
    struct out_chunk *k = c->out_head;
    while (k != NULL) {
        struct out_chunk *next = k->next;
        free(k);
        k = next;
    }
    c->out_head = NULL;
    c->out_tail = NULL;
    c->plain_bytes = 0;
}

static void conn_finish(struct tls_conn *c)
{
    assert(c->state == CONN_CLOSED);
    assert(c->handles_open == 0);
    assert(!c->resolving);
    assert(!c->hs_counted);
    assert(!c->waiting);
    assert(c->wire_bytes == 0);
    struct tls_ctx *ctx = c->ctx;
    if (c->ctx_prev != NULL)
        c->ctx_prev->ctx_next = c->ctx_next;
    else
        ctx->conns = c->ctx_next;
    if (c->ctx_next != NULL)
        c->ctx_next->ctx_prev = c->ctx_prev;
    assert(ctx->conns_live > 0);
    ctx->conns_live--;

    c->cbs.on_close(c, c->close_code, c->close_text);

    struct tls_listener *l = c->listener;
    if (l != NULL) {
        assert(l->conns_live > 0);
        l->conns_live--;
        if (l->handle_closed && l->conns_live == 0)
            free(l);
    }
    conn_free_queue(c);
    if (c->rx.body != NULL && c->rx.body != c->rx_inline)
        free(c->rx.body);
    SSL_free(c->ssl);
    free(c);
}

static void conn_maybe_finish(struct tls_conn *c)
{
    if (c->handles_open == 0 && !c->resolving)
        conn_finish(c);
}

static void conn_handle_closed_cb(uv_handle_t *h)
{
    struct tls_conn *c = h->data;
    assert(c->handles_open > 0);
    c->handles_open--;
    conn_maybe_finish(c);
}

static void conn_close_handles(struct tls_conn *c)
{
    conn_set_state(c, CONN_CLOSED);
    if (c->resolving)
        (void)uv_cancel((uv_req_t *)&c->resolve_req);
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed_cb);
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed_cb);
    uv_close((uv_handle_t *)&c->resume, conn_handle_closed_cb);
    uv_close((uv_handle_t *)&c->flush, conn_handle_closed_cb);
}

/* ----- writing ---------------------------------------------------------- */

static void conn_write_cb(uv_write_t *req, int status)
{
    struct wire_write *w = container_of(req, struct wire_write, req);
    struct tls_conn *c = container_of((uv_tcp_t *)req->handle, struct tls_conn, tcp);
    assert(c->wire_bytes >= w->len);
    c->wire_bytes -= w->len;
    free(w);
    if (status < 0) {
        if (c->state < CONN_CLOSING)
            conn_close(c, TS_ERR_IO, CLOSE_ABORT, "write failed: %s", uv_strerror(status));
        return;
    }
    if (c->state == CONN_OPEN && c->plain_bytes == 0 && c->wire_bytes == 0 &&
        c->cbs.on_drain != NULL)
        c->cbs.on_drain(c);
}

/*
 * Hands everything OpenSSL wrote to libuv.  0, or TS_ERR_IO with c->uv_err
 * set (the caller closes).
 */
static int conn_drain_wbio(struct tls_conn *c)
{
    size_t pending;
    while ((pending = BIO_ctrl_pending(c->wbio)) > 0) {
        struct wire_write *w = malloc(sizeof(*w) + pending);
        if (w == NULL) {
            c->uv_err = UV_ENOMEM;
            return TS_ERR_IO;
        }
        int got = BIO_read(c->wbio, w->bytes, (int)pending);
        assert(got == (int)pending);
        w->len = (size_t)got;
        uv_buf_t b = uv_buf_init((char *)w->bytes, (unsigned)w->len);
        int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, conn_write_cb);
        if (rc != 0) {
            free(w);
            c->uv_err = rc;
            return TS_ERR_IO;
        }
        c->wire_bytes += w->len;
    }
    return 0;
}

/*
 * Encrypts every queued frame, packing small frames into shared records.
 * 0; TS_ERR_CORRUPT when OpenSSL fails (its error queue says why);
 * TS_ERR_IO when libuv refuses the bytes (c->uv_err).
 */
static int conn_encrypt_queue(struct tls_conn *c)
{
    uint8_t rec[TLS_RECORD_PLAIN_BYTES];
    assert(c->state == CONN_OPEN);
    while (c->out_head != NULL) {
        size_t n = 0;
        while (n < sizeof(rec) && c->out_head != NULL) {
            struct out_chunk *k = c->out_head;
            size_t take = k->len - k->off;
            if (take > sizeof(rec) - n)
                take = sizeof(rec) - n;
            memcpy(rec + n, k->bytes + k->off, take);
            n += take;
            k->off += take;
            c->plain_bytes -= take;
            if (k->off == k->len) {
                c->out_head = k->next;
                if (c->out_head == NULL)
                    c->out_tail = NULL;
                free(k);
            }
        }
        size_t written = 0;
        ERR_clear_error();
        if (SSL_write_ex(c->ssl, rec, n, &written) != 1)
            return TS_ERR_CORRUPT;
        /* A memory BIO takes everything: no partial writes without SSL_MODE_ENABLE_PARTIAL_WRITE. */
        assert(written == n);
        if (BIO_ctrl_pending(c->wbio) >= TLS_WIRE_CHUNK_BYTES && conn_drain_wbio(c) != 0)
            return TS_ERR_IO;
    }
    return conn_drain_wbio(c);
}

/* ----- closing ---------------------------------------------------------- */

static void conn_shutdown_cb(uv_shutdown_t *req, int status)
{
    struct tls_conn *c = container_of(req, struct tls_conn, shutdown_req);
    if (c->state != CONN_CLOSING)
        return;
    c->shutdown_done = true;
    if (status < 0 || c->peer_eof)
        conn_close_handles(c);
}

static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct tls_conn *c = container_of((uv_tcp_t *)h, struct tls_conn, tcp);
    buf->base = (char *)c->rx_wire;
    buf->len = sizeof(c->rx_wire);
}

static void conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/*
 * Starts closing c with a reason (the first reason given wins; later calls
 * are ignored).  mode says what goodbye to send; it is lowered to what the
 * state allows.  Never calls the owner: on_close comes from conn_finish.
 */
static void conn_close(struct tls_conn *c, int code, enum close_mode mode,
                       const char *fmt, ...)
{
    if (c->close_set)
        return;
    assert(c->state < CONN_CLOSING);
    char what[TLS_REASON_BYTES_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (c->peer_known)
        text_format(c->close_text, sizeof(c->close_text), "peer %s (%s/%s): %s", c->addr,
                    pki_role_name(c->peer.role), c->peer.id, what);
    else
        text_format(c->close_text, sizeof(c->close_text), "peer %s: %s", c->addr, what);
    c->close_code = code;
    c->close_set = true;
    if (c->ctx->trace)
        fprintf(stderr, "tls: close (%s): %s\n", ts_strerror(code), c->close_text);

    if (c->state == CONN_HANDSHAKE) {
        if (mode > CLOSE_DRAIN)
            mode = CLOSE_DRAIN;
    } else if (c->state != CONN_OPEN) {
        mode = CLOSE_ABORT;
    }
    (void)uv_read_stop((uv_stream_t *)&c->tcp);
    (void)uv_idle_stop(&c->resume);
    (void)uv_prepare_stop(&c->flush);
    c->rx_paused = false;

    if (mode == CLOSE_FLUSH && conn_encrypt_queue(c) != 0)
        mode = CLOSE_ABORT;
    conn_free_queue(c);
    if (mode >= CLOSE_NOTIFY) {
        ERR_clear_error();
        (void)SSL_shutdown(c->ssl);
    }
    ERR_clear_error();
    if (mode >= CLOSE_DRAIN && conn_drain_wbio(c) != 0)
        mode = CLOSE_ABORT;
    if (mode != CLOSE_ABORT &&
        uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, conn_shutdown_cb) == 0) {
        conn_set_state(c, CONN_CLOSING);
        /* Keep reading (and discarding) until the peer's FIN: closing with
         * unread bytes would reset the link and could destroy our alert. */
        if (uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb) != 0)
            c->peer_eof = true;
        uv_timer_start(&c->timer, conn_timer_cb, TLS_CLOSE_LINGER_MS, 0);
        return;
    }
    conn_close_handles(c);
}

/*
 * The peer's certificate starts after this node's clock.  Certificates start
 * two days before issue (pki.c), so this clock is further behind than that:
 * the reason says what the clock reads and what to fix.
 */
static void conn_fail_not_yet_valid(struct tls_conn *c)
{
    char now_text[32] = "?";
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm) != NULL)
        strftime(now_text, sizeof(now_text), "%Y-%m-%dT%H:%M:%SZ", &tm);
    conn_close(c, TS_ERR_AUTH, CLOSE_DRAIN,
               "certificate verify failed: %s: this node's clock reads %s, before the "
               "certificate's start; set the clock right (NTP)",
               X509_verify_cert_error_string(X509_V_ERR_CERT_NOT_YET_VALID), now_text);
}

/* Closes c after a failed OpenSSL call, with the most useful reason. */
static void conn_fail_ssl(struct tls_conn *c, const char *what)
{
    long vr = SSL_get_verify_result(c->ssl);
    unsigned long e = ERR_peek_error();
    /* An identity is only shown for a peer whose handshake completed. */
    if (c->state == CONN_HANDSHAKE)
        c->peer_known = false;
    if (c->refusal[0] != '\0')
        conn_close(c, TS_ERR_AUTH, CLOSE_DRAIN, "certificate refused: %s", c->refusal);
    else if (vr == X509_V_ERR_CERT_NOT_YET_VALID)
        conn_fail_not_yet_valid(c);
    else if (vr != X509_V_OK)
        conn_close(c, TS_ERR_AUTH, CLOSE_DRAIN, "certificate verify failed: %s",
                   X509_verify_cert_error_string(vr));
    else if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) > SSL_AD_REASON_OFFSET)
        conn_close(c, ssl_error_code(e), CLOSE_DRAIN, "%s: alert from peer: %s", what,
                   ssl_reason(e));
    else
        conn_close(c, ssl_error_code(e), CLOSE_DRAIN, "%s: %s", what, ssl_reason(e));
    ERR_clear_error();
}

/* ----- timers ----------------------------------------------------------- */

static void conn_arm_idle(struct tls_conn *c)
{
    assert(c->state == CONN_OPEN);
    if (c->opts.idle_timeout_ms == 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, conn_timer_cb, c->opts.idle_timeout_ms, 0);
}

/* True once a server conn has read the peer's whole ClientHello (OpenSSL
 * has moved past reading it). */
static bool conn_hello_read(const struct tls_conn *c)
{
    OSSL_HANDSHAKE_STATE st = SSL_get_state(c->ssl);
    return st != TLS_ST_BEFORE && st != TLS_ST_SR_CLNT_HELLO;
}

/* The first deadline of a new conn: a server conn must have sent its
 * ClientHello by hello_timeout_ms, and every conn must be through its
 * handshake by handshake_timeout_ms. */
static uint64_t conn_first_deadline_ms(const struct tls_conn *c)
{
    if (c->server && c->opts.hello_timeout_ms != 0 &&
        c->opts.hello_timeout_ms < c->opts.handshake_timeout_ms)
        return c->opts.hello_timeout_ms;
    return c->opts.handshake_timeout_ms;
}

static void conn_timer_cb(uv_timer_t *t)
{
    struct tls_conn *c = container_of(t, struct tls_conn, timer);
    switch (c->state) {
    case CONN_RESOLVING:
    case CONN_CONNECTING:
    case CONN_HANDSHAKE: {
        uint64_t since = uv_now(c->loop) - c->started_ms;
        if (since < c->opts.handshake_timeout_ms) {
            if (c->server && !conn_hello_read(c)) {
                conn_close(c, TS_ERR_IO, CLOSE_ABORT,
                           "handshake timeout: no ClientHello within %u ms",
                           (unsigned)c->opts.hello_timeout_ms);
                break;
            }
            uv_timer_start(&c->timer, conn_timer_cb, c->opts.handshake_timeout_ms - since, 0);
            break;
        }
        conn_close(c, TS_ERR_IO, CLOSE_ABORT, "handshake timeout: not done after %u ms (%s)",
                   (unsigned)c->opts.handshake_timeout_ms, conn_state_name(c->state));
        break;
    }
    case CONN_OPEN: {
        if (c->opts.idle_timeout_ms == 0)
            break;
        uint64_t since = uv_now(c->loop) - c->last_rx_ms;
        if (since >= c->opts.idle_timeout_ms)
            conn_close(c, TS_ERR_IO, CLOSE_NOTIFY, "idle timeout: nothing received for %u ms",
                       (unsigned)c->opts.idle_timeout_ms);
        else
            uv_timer_start(&c->timer, conn_timer_cb, c->opts.idle_timeout_ms - since, 0);
        break;
    }
    case CONN_CLOSING:
        conn_close_handles(c);
        break;
    case CONN_CLOSED:
        break;
    }
}

/* ----- handshake -------------------------------------------------------- */

/*
 * OpenSSL's verify callback: keeps its verdict, except a CRL that is not yet
 * valid (see below), and at the leaf certificate reads the trialsync
 * identity and refuses another trial, so the refusal is a handshake alert.
 */
static int conn_verify_cb(int ok, X509_STORE_CTX *x)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct tls_conn *c = SSL_get_app_data(ssl);
    assert(c != NULL);
    if (!ok) {
        /* The CRL is the newest revocation list this node has, whatever its
         * dates: one from a clock ahead of ours, or one past its nextUpdate,
         * still lists every certificate the CA revoked, and each of those is
         * still refused (cert_crl runs after this).  Refusing every peer
         * instead would stop the whole trial when clocks disagree or when no
         * revocation has refreshed the list for PKI_CRL_DAYS. */
        int e = X509_STORE_CTX_get_error(x);
        if (e != X509_V_ERR_CRL_NOT_YET_VALID && e != X509_V_ERR_CRL_HAS_EXPIRED)
            return 0;
        X509_STORE_CTX_set_error(x, X509_V_OK);
        return 1;
    }
    if (X509_STORE_CTX_get_error_depth(x) != 0)
        return 1;
    struct pki_identity id;
    struct ts_error perr = {0};
    X509 *leaf = X509_STORE_CTX_get_current_cert(x);
    if (leaf == NULL || x509_identity(leaf, &id, &perr) != 0) {
        text_format(c->refusal, sizeof(c->refusal), "no trialsync identity: %s", perr.msg);
        goto out_refuse;
    }
    if (strcmp(id.trial, c->ctx->trial) != 0) {
        snprintf(c->refusal, sizeof(c->refusal),
                 "certificate is for trial '%s', this node is in trial '%s'", id.trial,
                 c->ctx->trial);
        goto out_refuse;
    }
    c->peer = id;
    c->peer_known = true;
    return 1;
out_refuse:
    c->peer_known = false;
    X509_STORE_CTX_set_error(x, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
}

static void conn_handshake_done(struct tls_conn *c)
{
    assert(c->state == CONN_HANDSHAKE);
    /* Belt and braces: the handshake cannot succeed without these, but the
     * identity below is what every authorization decision rests on. */
    if (SSL_version(c->ssl) != TLS1_3_VERSION || SSL_get0_peer_certificate(c->ssl) == NULL ||
        SSL_get_verify_result(c->ssl) != X509_V_OK || !c->peer_known) {
        conn_close(c, TS_ERR_AUTH, CLOSE_NOTIFY, "peer certificate not verified");
        return;
    }
    conn_set_state(c, CONN_OPEN);
    c->last_rx_ms = uv_now(c->loop);
    conn_arm_idle(c);
    if (c->cbs.on_handshake(c, &c->peer) != 0) {
        conn_close(c, TS_ERR_AUTH, CLOSE_NOTIFY, "refused by this node");
        return;
    }
    if (c->state == CONN_OPEN && c->out_head != NULL)
        conn_flush_soon(c);
}

static void conn_handshake(struct tls_conn *c)
{
    assert(c->state == CONN_HANDSHAKE);
    ERR_clear_error();
    int rc = SSL_do_handshake(c->ssl);
    int e = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, rc);
    if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ) {
        conn_fail_ssl(c, "tls handshake failed");
        return;
    }
    if (conn_drain_wbio(c) != 0) {
        conn_close(c, TS_ERR_IO, CLOSE_ABORT, "write failed: %s", uv_strerror(c->uv_err));
        return;
    }
    if (e == SSL_ERROR_NONE)
        conn_handshake_done(c);
}

/* ----- flushing --------------------------------------------------------- */

static void conn_flush_cb(uv_prepare_t *h)
{
    struct tls_conn *c = container_of(h, struct tls_conn, flush);
    (void)uv_prepare_stop(h);
    if (c->state != CONN_OPEN)
        return;
    int rc = conn_encrypt_queue(c);
    if (rc == TS_ERR_CORRUPT)
        conn_fail_ssl(c, "tls error");
    else if (rc != 0)
        conn_close(c, TS_ERR_IO, CLOSE_ABORT, "write failed: %s", uv_strerror(c->uv_err));
}

/* Encrypts the queue before the loop next blocks (idempotent). */
static void conn_flush_soon(struct tls_conn *c)
{
    assert(c->state == CONN_OPEN);
    int rc = uv_prepare_start(&c->flush, conn_flush_cb);
    assert(rc == 0);
    (void)rc;
}

/* ----- reading ---------------------------------------------------------- */

/*
 * Pauses socket reads while frames are buffered beyond this wakeup's cap, and
 * lets a uv_idle handle deliver them on the next loop iterations.
 */
static void conn_rx_pause(struct tls_conn *c, bool pause)
{
    if (pause == c->rx_paused)
        return;
    c->rx_paused = pause;
    if (pause) {
        (void)uv_read_stop((uv_stream_t *)&c->tcp);
        (void)uv_idle_start(&c->resume, conn_resume_cb);
        return;
    }
    (void)uv_idle_stop(&c->resume);
    int rc = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb);
    if (rc != 0)
        conn_close(c, TS_ERR_IO, CLOSE_ABORT, "read failed: %s", uv_strerror(rc));
}

/*
 * Reads up to len plaintext bytes.  1 with *n set; 0 when OpenSSL needs more
 * bytes from the network; -1 when c is closing (reason set).
 */
static int conn_ssl_read(struct tls_conn *c, uint8_t *buf, size_t len, size_t *n)
{
    ERR_clear_error();
    int rc = SSL_read_ex(c->ssl, buf, len, n);
    if (rc == 1)
        return 1;
    switch (SSL_get_error(c->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        conn_close(c, TS_OK, CLOSE_NOTIFY, "closed by peer");
        return -1;
    default:
        conn_fail_ssl(c, "tls error");
        return -1;
    }
}

/* The length prefix is complete: check it, then make room for the body. */
static int conn_rx_begin_body(struct tls_conn *c)
{
    assert(c->rx.hdr_have == 4);
    uint32_t len = codec_frame_len_read(c->rx.hdr);
    if (len == 0) {
        c->rx.hdr_have = 0;
        conn_close(c, TS_ERR_CORRUPT, CLOSE_NOTIFY, "malformed frame: empty body");
        return -1;
    }
    if (len > TS_FRAME_BYTES_MAX) {
        c->rx.hdr_have = 0;
        conn_close(c, TS_ERR_TOOBIG, CLOSE_NOTIFY,
                   "frame of %u bytes is above the limit of %u bytes", (unsigned)len,
                   (unsigned)TS_FRAME_BYTES_MAX);
        return -1;
    }
    uint8_t *body = c->rx_inline;
    if (len > sizeof(c->rx_inline)) {
        body = malloc(len);
        if (body == NULL) {
            c->rx.hdr_have = 0;
            conn_close(c, TS_ERR_NOMEM, CLOSE_ABORT, "out of memory for a frame of %u bytes",
                       (unsigned)len);
            return -1;
        }
    }
    c->rx.body = body;
    c->rx.body_len = len;
    c->rx.body_have = 0;
    return 0;
}

static void conn_rx_deliver(struct tls_conn *c)
{
    uint8_t *body = c->rx.body;
    size_t len = c->rx.body_len;
    assert(c->rx.body_have == len);
    c->rx.hdr_have = 0;
    c->rx.body = NULL;
    c->rx.body_len = 0;
    c->rx.body_have = 0;
    c->cbs.on_frame(c, body, len);
    if (body != c->rx_inline)
        free(body);
}

/* Delivers the frames OpenSSL can decrypt now, at most the per-wakeup cap. */
static void conn_read_frames(struct tls_conn *c)
{
    unsigned frames = 0;
    while (c->state == CONN_OPEN) {
        if (frames == TLS_FRAMES_PER_WAKEUP_MAX) {
            conn_rx_pause(c, SSL_has_pending(c->ssl) || BIO_ctrl_pending(c->rbio) > 0);
            goto out_drain;
        }
        size_t n = 0;
        if (c->rx.hdr_have < 4) {
            if (conn_ssl_read(c, c->rx.hdr + c->rx.hdr_have, 4 - c->rx.hdr_have, &n) <= 0)
                break;
            c->rx.hdr_have += n;
            if (c->rx.hdr_have == 4 && conn_rx_begin_body(c) != 0)
                break;
            continue;
        }
        if (conn_ssl_read(c, c->rx.body + c->rx.body_have, c->rx.body_len - c->rx.body_have,
                          &n) <= 0)
            break;
        c->rx.body_have += n;
        if (c->rx.body_have == c->rx.body_len) {
            conn_rx_deliver(c);
            frames++;
        }
    }
    if (c->state == CONN_OPEN)
        conn_rx_pause(c, false);
out_drain:
    /* Reading may have made OpenSSL answer (a KeyUpdate, for one). */
    if (c->state == CONN_OPEN && BIO_ctrl_pending(c->wbio) > 0 && conn_drain_wbio(c) != 0)
        conn_close(c, TS_ERR_IO, CLOSE_ABORT, "write failed: %s", uv_strerror(c->uv_err));
}

static void conn_resume_cb(uv_idle_t *h)
{
    struct tls_conn *c = container_of(h, struct tls_conn, resume);
    if (c->state != CONN_OPEN) {
        (void)uv_idle_stop(h);
        return;
    }
    conn_read_frames(c);
}

static bool listener_admit_waiting(struct tls_conn *c);

static void conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tls_conn *c = container_of((uv_tcp_t *)s, struct tls_conn, tcp);
    if (nread == 0)
        return;
    if (c->state == CONN_CLOSING) {
        /* Lingering: discard, and finish once both FINs are through. */
        if (nread < 0) {
            c->peer_eof = true;
            (void)uv_read_stop(s);
            if (c->shutdown_done)
                conn_close_handles(c);
        }
        return;
    }
    assert(c->state == CONN_HANDSHAKE || c->state == CONN_OPEN);
    if (nread < 0) {
        if (nread == UV_EOF)
            conn_close(c, TS_ERR_IO, CLOSE_ABORT, "connection closed by peer%s",
                       c->state == CONN_HANDSHAKE ? " during the handshake"
                                                  : " without close_notify");
        else
            conn_close(c, TS_ERR_IO, CLOSE_ABORT, "read failed: %s",
                       uv_strerror((int)nread));
        return;
    }
    assert(buf->base == (char *)c->rx_wire);
    assert((size_t)nread <= sizeof(c->rx_wire));
    c->last_rx_ms = uv_now(c->loop);
    c->rx_any = true;
    if (c->waiting && !listener_admit_waiting(c))
        return;
    if (BIO_write(c->rbio, buf->base, (int)nread) != (int)nread) {
        ERR_clear_error();
        conn_close(c, TS_ERR_NOMEM, CLOSE_ABORT, "out of memory buffering input");
        return;
    }
    if (c->state == CONN_HANDSHAKE)
        conn_handshake(c);
    if (c->state == CONN_OPEN)
        conn_read_frames(c);
}

/* ----- creation --------------------------------------------------------- */

static void addr_format(const struct sockaddr *sa, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        (void)uv_ip4_name(in, ip, sizeof(ip));
        snprintf(out, cap, "%s:%u", ip, (unsigned)ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        (void)uv_ip6_name(in6, ip, sizeof(ip));
        snprintf(out, cap, "[%s]:%u", ip, (unsigned)ntohs(in6->sin6_port));
    } else {
        snprintf(out, cap, "(unknown address family %d)", (int)sa->sa_family);
    }
}

/* A numeric IPv4 or IPv6 address; -1 for anything else. */
static int addr_parse(const char *host, int port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return -1;
}

static bool cbs_valid(const struct tls_conn_cbs *cbs)
{
    return cbs != NULL && cbs->on_handshake != NULL && cbs->on_frame != NULL &&
           cbs->on_close != NULL;
}

/*
 * A conn with its SSL object and its four handles initialised (so it must
 * be closed with conn_close from here on), not yet connected.  NULL when out
 * of memory.
 */
static struct tls_conn *conn_new(struct uv_loop_s *loop, struct tls_ctx *ctx, bool server,
                                 const struct tls_conn_opts *opts,
                                 const struct tls_conn_cbs *cbs, void *data)
{
    struct tls_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->ssl = SSL_new(ctx->ssl_ctx);
    if (c->ssl == NULL)
        goto out_free_conn;
    c->rbio = BIO_new(BIO_s_mem());
    if (c->rbio == NULL)
        goto out_free_ssl;
    c->wbio = BIO_new(BIO_s_mem());
    if (c->wbio == NULL)
        goto out_free_rbio;
    /* An empty memory BIO means "try again later", never end of stream. */
    BIO_set_mem_eof_return(c->rbio, -1);
    BIO_set_mem_eof_return(c->wbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_app_data(c->ssl, c);
    if (server)
        SSL_set_accept_state(c->ssl);
    else
        SSL_set_connect_state(c->ssl);
    if (uv_tcp_init(loop, &c->tcp) != 0)
        goto out_free_ssl;
    int rc = uv_timer_init(loop, &c->timer);
    assert(rc == 0);
    rc = uv_idle_init(loop, &c->resume);
    assert(rc == 0);
    rc = uv_prepare_init(loop, &c->flush);
    assert(rc == 0);
    (void)rc;
    c->tcp.data = c;
    c->timer.data = c;
    c->resume.data = c;
    c->flush.data = c;
    c->handles_open = 4;

    c->loop = loop;
    c->ctx = ctx;
    c->server = server;
    c->cbs = *cbs;
    c->opts = *opts;
    c->data = data;
    snprintf(c->addr, sizeof(c->addr), "(not connected)");
    c->ctx_next = ctx->conns;
    if (ctx->conns != NULL)
        ctx->conns->ctx_prev = c;
    ctx->conns = c;
    ctx->conns_live++;
    c->started_ms = uv_now(loop);
    uv_timer_start(&c->timer, conn_timer_cb, conn_first_deadline_ms(c), 0);
    return c;

out_free_rbio:
    BIO_free(c->rbio);
out_free_ssl:
    SSL_free(c->ssl);   /* also frees the BIOs once SSL_set_bio ran */
out_free_conn:
    free(c);
    return NULL;
}

static void conn_connect_cb(uv_connect_t *req, int status)
{
    struct tls_conn *c = container_of(req, struct tls_conn, connect_req);
    if (c->state != CONN_CONNECTING)
        return;   /* closed meanwhile: UV_ECANCELED */
    if (status < 0) {
        conn_close(c, TS_ERR_IO, CLOSE_ABORT, "connect failed: %s", uv_strerror(status));
        return;
    }
    (void)uv_tcp_nodelay(&c->tcp, 1);
    conn_set_state(c, CONN_HANDSHAKE);
    int rc = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb);
    if (rc != 0) {
        conn_close(c, TS_ERR_IO, CLOSE_ABORT, "read failed: %s", uv_strerror(rc));
        return;
    }
    conn_handshake(c);
}

static void conn_start_connect(struct tls_conn *c, const struct sockaddr *sa)
{
    int rc = uv_tcp_connect(&c->connect_req, &c->tcp, sa, conn_connect_cb);
    if (rc != 0)
        conn_close(c, TS_ERR_IO, CLOSE_ABORT, "connect failed: %s", uv_strerror(rc));
}

static void conn_resolve_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct tls_conn *c = container_of(req, struct tls_conn, resolve_req);
    assert(c->resolving);
    c->resolving = false;
    if (c->state == CONN_CLOSED) {
        uv_freeaddrinfo(res);
        conn_maybe_finish(c);
        return;
    }
    assert(c->state == CONN_RESOLVING);
    if (status < 0 || res == NULL) {
        uv_freeaddrinfo(res);
        conn_close(c, TS_ERR_IO, CLOSE_ABORT, "cannot resolve the host name: %s",
                   uv_strerror(status));
        return;
    }
    conn_set_state(c, CONN_CONNECTING);
    conn_start_connect(c, res->ai_addr);
    uv_freeaddrinfo(res);
}

void tls_conn_opts_default(struct tls_conn_opts *o)
{
    o->handshake_timeout_ms = TLS_HANDSHAKE_TIMEOUT_MS_DEFAULT;
    o->hello_timeout_ms = TLS_HELLO_TIMEOUT_MS_DEFAULT;
    o->idle_timeout_ms = 0;
}

int tls_connect(struct uv_loop_s *loop, struct tls_ctx *ctx, const char *host, int port,
                const struct tls_conn_opts *opts, const struct tls_conn_cbs *cbs,
                void *data, struct tls_conn **out, struct ts_error *err)
{
    struct tls_conn_opts defaults;
    assert(loop != NULL);
    assert(ctx != NULL);
    assert(out != NULL);
    if (opts == NULL) {
        tls_conn_opts_default(&defaults);
        opts = &defaults;
    }
    if (!cbs_valid(cbs) || opts->handshake_timeout_ms == 0)
        return ts_error_set(err, TS_ERR_INVALID,
                            "tls_connect: callbacks and a handshake timeout are required");
    if (host == NULL || host[0] == '\0' || strlen(host) > 253)
        return ts_error_set(err, TS_ERR_INVALID, "invalid host name");
    if (port <= 0 || port > 65535)
        return ts_error_set(err, TS_ERR_INVALID, "invalid port %d for %s (1 to 65535)",
                            port, host);
    struct sockaddr_storage ss;
    bool numeric = addr_parse(host, port, &ss) == 0;

    struct tls_conn *c = conn_new(loop, ctx, false, opts, cbs, data);
    if (c == NULL)
        return ts_error_set(err, TS_ERR_NOMEM, "out of memory connecting to %s:%d", host,
                            port);
    if (strchr(host, ':') != NULL)
        snprintf(c->addr, sizeof(c->addr), "[%s]:%d", host, port);
    else
        snprintf(c->addr, sizeof(c->addr), "%s:%d", host, port);
    *out = c;
    if (numeric) {
        c->state = CONN_CONNECTING;
        conn_start_connect(c, (const struct sockaddr *)&ss);
        return 0;
    }
    c->state = CONN_RESOLVING;
    char service[8];
    snprintf(service, sizeof(service), "%d", port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = uv_getaddrinfo(loop, &c->resolve_req, conn_resolve_cb, host, service, &hints);
    if (rc != 0) {
        conn_close(c, TS_ERR_IO, CLOSE_ABORT, "cannot resolve the host name: %s",
                   uv_strerror(rc));
        return 0;
    }
    c->resolving = true;
    return 0;
}

/* ----- connection API --------------------------------------------------- */

int tls_conn_send_frame(struct tls_conn *c, const uint8_t *body, size_t len)
{
    assert(c != NULL);
    assert(body != NULL || len == 0);
    if (c->state >= CONN_CLOSING)
        return TS_ERR_IO;
    if (len == 0)
        return TS_ERR_INVALID;
    if (len > TS_FRAME_BYTES_MAX)
        return TS_ERR_TOOBIG;
    size_t need = 4 + len;
    if (tls_conn_send_queued_bytes(c) + need > TLS_SEND_QUEUE_BYTES_MAX)
        return TS_ERR_TOOBIG;
    struct out_chunk *k = malloc(sizeof(*k) + need);
    if (k == NULL)
        return TS_ERR_NOMEM;
    k->next = NULL;
    k->len = need;
    k->off = 0;
    codec_frame_len_write(k->bytes, (uint32_t)len);
    memcpy(k->bytes + 4, body, len);
    if (c->out_tail != NULL)
        c->out_tail->next = k;
    else
        c->out_head = k;
    c->out_tail = k;
    c->plain_bytes += need;
    if (c->state == CONN_OPEN)
        conn_flush_soon(c);
    assert(conn_check(c));
    return 0;
}

size_t tls_conn_send_queued_bytes(const struct tls_conn *c)
{
    return c->plain_bytes + c->wire_bytes;
}

void tls_conn_close(struct tls_conn *c, int reason_code, const char *reason_text)
{
    assert(c != NULL);
    assert(reason_code <= 0);
    if (c->close_set)
        return;
    conn_close(c, reason_code, CLOSE_FLUSH, "%s",
               reason_text != NULL ? reason_text : "closed by this node");
}

void tls_conn_set_idle_timeout(struct tls_conn *c, uint32_t idle_timeout_ms)
{
    c->opts.idle_timeout_ms = idle_timeout_ms;
    if (c->state == CONN_OPEN)
        conn_arm_idle(c);
}

void tls_conn_set_data(struct tls_conn *c, void *data)
{
    c->data = data;
}

void *tls_conn_data(const struct tls_conn *c)
{
    return c->data;
}

const struct pki_identity *tls_conn_peer(const struct tls_conn *c)
{
    return c->peer_known && c->state >= CONN_OPEN ? &c->peer : NULL;
}

const char *tls_conn_peer_addr(const struct tls_conn *c)
{
    return c->addr;
}

bool tls_conn_is_server(const struct tls_conn *c)
{
    return c->server;
}

bool tls_conn_is_open(const struct tls_conn *c)
{
    return c->state == CONN_OPEN;
}

/* ----- listeners -------------------------------------------------------- */

/* The length of addr without its ":port". */
static size_t addr_host_len(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    return colon != NULL ? (size_t)(colon - addr) : strlen(addr);
}

/* Connections of l handshaking now from the IP address of addr. */
static unsigned listener_handshaking_from(const struct tls_listener *l, const char *addr)
{
    size_t n = addr_host_len(addr);
    unsigned count = 0;
    for (const struct tls_conn *o = l->ctx->conns; o != NULL; o = o->ctx_next) {
        if (o->listener == l && o->hs_counted && addr_host_len(o->addr) == n &&
            memcmp(o->addr, addr, n) == 0)
            count++;
    }
    return count;
}

/* True when the peer of the just-accepted c has bytes waiting: a real peer
 * sends its ClientHello with its connect.  They are peeked, not taken. */
static bool conn_has_bytes_waiting(const struct tls_conn *c)
{
    uv_os_fd_t fd;
    uint8_t byte;
    if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) != 0)
        return false;
    return recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 1;
}

/*
 * Closes the oldest conn of l handshaking silently (not one byte received)
 * from the IP address of addr, or from anywhere when addr is NULL, to give
 * its slot to a newcomer that has spoken.  False when there is none.
 */
static bool listener_evict_silent(struct tls_listener *l, const char *addr)
{
    size_t n = addr != NULL ? addr_host_len(addr) : 0;
    struct tls_conn *oldest = NULL;
    for (struct tls_conn *o = l->ctx->conns; o != NULL; o = o->ctx_next) {  /* newest first */
        if (o->listener != l || !o->hs_counted || o->rx_any || o->close_set)
            continue;
        if (addr != NULL && (addr_host_len(o->addr) != n || memcmp(o->addr, addr, n) != 0))
            continue;
        oldest = o;
    }
    if (oldest == NULL)
        return false;
    conn_close(oldest, TS_ERR_TOOBIG, CLOSE_ABORT,
               "evicted: silent since accept, its handshake slot went to a peer that spoke");
    assert(!oldest->hs_counted);
    return true;
}

/*
 * Gives the accepted c a handshake slot, or decides to wait (true) or refuses
 * (closes c, false).  A conn that has spoken (its ClientHello is here) may
 * take the slot of the oldest silent conn of a full scope.  A silent one
 * over a cap waits, reading but holding no slot, until its first bytes
 * (listener_admit_waiting) or its ClientHello deadline: a real peer's
 * ClientHello can trail its connect by the time it takes to make a key
 * share.  At most TLS_WAITING_MAX wait; a newcomer past that closes the
 * oldest waiting one, which a flood of silent conns must therefore renew
 * faster than a real peer speaks.
 */
static bool listener_admit(struct tls_conn *c, bool spoke)
{
    struct tls_listener *l = c->listener;
    assert(!c->hs_counted);
    unsigned same_addr = listener_handshaking_from(l, c->addr);
    bool addr_full = same_addr >= TLS_HANDSHAKING_PER_ADDR_MAX;
    bool all_full = l->handshaking >= l->handshaking_max;
    if (addr_full && spoke)
        addr_full = !listener_evict_silent(l, c->addr);
    if (!addr_full && all_full && spoke)
        all_full = !listener_evict_silent(l, NULL);
    if (!addr_full && !all_full) {
        c->hs_counted = true;
        l->handshaking++;
        return true;
    }
    if (spoke) {
        if (addr_full)
            conn_close(c, TS_ERR_TOOBIG, CLOSE_ABORT,
                       "too many handshakes in progress from this address (%u)", same_addr);
        else
            conn_close(c, TS_ERR_TOOBIG, CLOSE_ABORT, "too many handshakes in progress (%u)",
                       l->handshaking_max);
        return false;
    }
    if (l->waiting >= TLS_WAITING_MAX) {
        struct tls_conn *oldest = NULL;
        for (struct tls_conn *o = l->ctx->conns; o != NULL; o = o->ctx_next)
            if (o->listener == l && o->waiting)
                oldest = o;
        assert(oldest != NULL);
        conn_close(oldest, TS_ERR_TOOBIG, CLOSE_ABORT,
                   "too many handshakes in progress (%u) and too many silent connections "
                   "waiting for a slot (%u)", l->handshaking_max, TLS_WAITING_MAX);
    }
    c->waiting = true;
    l->waiting++;
    return true;
}

/* c, waiting, has sent its first bytes: admits it (true) or closes it. */
static bool listener_admit_waiting(struct tls_conn *c)
{
    assert(c->waiting);
    c->waiting = false;
    c->listener->waiting--;
    return listener_admit(c, true);
}

static void listener_connection_cb(uv_stream_t *server, int status)
{
    struct tls_listener *l = container_of((uv_tcp_t *)server, struct tls_listener, tcp);
    if (l->closing)
        return;
    if (status < 0) {
        /* Out of descriptors, typically; libuv keeps listening. */
        fprintf(stderr, "tls: listener on port %d: cannot accept: %s\n", l->port,
                uv_strerror(status));
        return;
    }
    struct tls_conn *c = conn_new(l->loop, l->ctx, true, &l->opts, &l->cbs, l->data);
    if (c == NULL) {
        /* Out of memory: the connection stays in the kernel's backlog and
         * libuv stops accepting until one is taken; nothing better to do. */
        fprintf(stderr, "tls: listener on port %d: out of memory accepting a connection\n",
                l->port);
        return;
    }
    c->listener = l;
    l->conns_live++;
    c->state = CONN_HANDSHAKE;
    int rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc != 0) {
        conn_close(c, TS_ERR_IO, CLOSE_ABORT, "accept failed: %s", uv_strerror(rc));
        return;
    }
    struct sockaddr_storage ss;
    int ss_len = (int)sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &ss_len) == 0)
        addr_format((const struct sockaddr *)&ss, c->addr, sizeof(c->addr));
    (void)uv_tcp_nodelay(&c->tcp, 1);
    if (!listener_admit(c, conn_has_bytes_waiting(c)))
        return;
    rc = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb);
    if (rc != 0)
        conn_close(c, TS_ERR_IO, CLOSE_ABORT, "read failed: %s", uv_strerror(rc));
}

static void listener_closed_cb(uv_handle_t *h)
{
    struct tls_listener *l = container_of((uv_tcp_t *)h, struct tls_listener, tcp);
    l->handle_closed = true;
    if (l->conns_live == 0)
        free(l);
}

int tls_listen(struct uv_loop_s *loop, struct tls_ctx *ctx, const char *host, int port,
               unsigned handshaking_max, const struct tls_conn_opts *opts,
               const struct tls_conn_cbs *cbs, void *data, struct tls_listener **out,
               struct ts_error *err)
{
    assert(loop != NULL);
    assert(ctx != NULL);
    assert(out != NULL);
    struct tls_conn_opts defaults;
    if (opts == NULL) {
        tls_conn_opts_default(&defaults);
        opts = &defaults;
    }
    if (!cbs_valid(cbs) || opts->handshake_timeout_ms == 0)
        return ts_error_set(err, TS_ERR_INVALID,
                            "tls_listen: callbacks and a handshake timeout are required");
    if (port < 0 || port > 65535)
        return ts_error_set(err, TS_ERR_INVALID, "invalid listen port %d (0 to 65535)", port);
    struct sockaddr_storage ss;
    if (host == NULL || addr_parse(host, port, &ss) != 0)
        return ts_error_set(err, TS_ERR_INVALID,
                            "invalid listen address '%s': a numeric IPv4 or IPv6 address "
                            "is required", host != NULL ? host : "(null)");
    struct tls_listener *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return ts_error_set(err, TS_ERR_NOMEM, "out of memory");
    if (uv_tcp_init(loop, &l->tcp) != 0) {
        free(l);
        return ts_error_set(err, TS_ERR_NOMEM, "cannot create a socket");
    }
    l->loop = loop;
    l->ctx = ctx;
    l->cbs = *cbs;
    l->opts = *opts;
    l->data = data;
    l->handshaking_max = handshaking_max != 0 ? handshaking_max : TLS_HANDSHAKING_MAX_DEFAULT;
    int rc = uv_tcp_bind(&l->tcp, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&l->tcp, TLS_LISTEN_BACKLOG, listener_connection_cb);
    if (rc != 0) {
        l->closing = true;
        uv_close((uv_handle_t *)&l->tcp, listener_closed_cb);
        return ts_error_set(err, TS_ERR_IO, "cannot listen on %s port %d: %s", host, port,
                            uv_strerror(rc));
    }
    int ss_len = (int)sizeof(ss);
    rc = uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &ss_len);
    assert(rc == 0);
    l->port = ss.ss_family == AF_INET6
                  ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                  : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    ctx->listeners_live++;
    *out = l;
    return 0;
}

int tls_listener_port(const struct tls_listener *l)
{
    return l->port;
}

unsigned tls_listener_handshaking(const struct tls_listener *l)
{
    return l->handshaking;
}

void tls_listener_close(struct tls_listener *l)
{
    assert(!l->closing);
    l->closing = true;
    assert(l->ctx->listeners_live > 0);
    l->ctx->listeners_live--;
    uv_close((uv_handle_t *)&l->tcp, listener_closed_cb);
}

/* ----- context ---------------------------------------------------------- */

/* TLS 1.3 only, certificates required both ways, no resumption, our verify. */
static int ssl_ctx_configure(SSL_CTX *s, struct ts_error *err)
{
    if (SSL_CTX_set_min_proto_version(s, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(s, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_ciphersuites(s, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                    "TLS_CHACHA20_POLY1305_SHA256") != 1 ||
        SSL_CTX_set1_groups_list(s, "X25519:P-256") != 1) {
        ERR_clear_error();
        return ts_error_set(err, TS_ERR_CONFIG, "this OpenSSL cannot do TLS 1.3 as configured");
    }
    /* Resumption would skip the certificate check, and with it the CRL. */
    SSL_CTX_set_options(s, SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_set_num_tickets(s, 0) != 1) {
        ERR_clear_error();
        return ts_error_set(err, TS_ERR_CONFIG, "cannot turn session tickets off");
    }
    SSL_CTX_set_mode(s, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(s, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, conn_verify_cb);
    /* Node certificates are issued by the trial CA directly. */
    SSL_CTX_set_verify_depth(s, 1);
    return 0;
}

static int ctx_load_identity(struct tls_ctx *ctx, const struct tls_ctx_config *cfg,
                             struct ts_error *err)
{
    X509 *cert = NULL;
    char *pem = NULL;
    size_t pem_len = 0;
    int rc = x509_load(cfg->cert_path, "node certificate", &cert, &pem, &pem_len, err);
    if (rc != 0)
        return rc;
    rc = pki_cert_identity(pem, pem_len, &ctx->self, err);
    if (rc != 0) {
        char why[sizeof(err->msg)];
        snprintf(why, sizeof(why), "%s", err != NULL ? err->msg : "");
        rc = ts_error_set(err, TS_ERR_CONFIG, "node certificate %s: %s", cfg->cert_path, why);
        goto out_free_cert;
    }
    if (strcmp(ctx->self.trial, ctx->trial) != 0) {
        rc = ts_error_set(err, TS_ERR_CONFIG,
                          "node certificate %s is for trial '%s', this node is configured "
                          "for trial '%s'", cfg->cert_path, ctx->self.trial, ctx->trial);
        goto out_free_cert;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0) {
        char when[64];
        asn1_time_text(X509_get0_notAfter(cert), when, sizeof(when));
        rc = ts_error_set(err, TS_ERR_CONFIG, "node certificate %s expired on %s; issue a new "
                          "one from the trial CA", cfg->cert_path, when);
        goto out_free_cert;
    }
    if (X509_verify(cert, X509_get0_pubkey(ctx->ca)) != 1) {
        rc = ts_error_set(err, TS_ERR_CONFIG, "node certificate %s is not signed by the "
                          "trial CA %s", cfg->cert_path, cfg->ca_path);
        goto out_free_cert;
    }
    if (SSL_CTX_use_certificate(ctx->ssl_ctx, cert) != 1) {
        rc = ts_error_set(err, TS_ERR_CONFIG, "node certificate %s: %s", cfg->cert_path,
                          ssl_reason(ERR_peek_error()));
        goto out_free_cert;
    }
    /*
     * The project's one key loader, with no passphrase source: trialsyncd
     * restarts unattended, so it never asks a terminal, and an encrypted node
     * key is refused with a message saying so.
     */
    EVP_PKEY *key = NULL;
    rc = ossl_key_load(cfg->key_path, NULL, &key, err);
    if (rc == TS_ERR_INVALID) {
        char why[sizeof(err->msg)];
        snprintf(why, sizeof(why), "%s", err != NULL ? err->msg : "");
        rc = ts_error_set(err, TS_ERR_CONFIG, "cannot load the node key: %s", why);
    }
    if (rc != 0)
        goto out_free_cert;
    if (EVP_PKEY_eq(X509_get0_pubkey(cert), key) != 1) {
        rc = ts_error_set(err, TS_ERR_CONFIG, "node key %s does not match certificate %s",
                          cfg->key_path, cfg->cert_path);
        goto out_free_key;
    }
    if (SSL_CTX_use_PrivateKey(ctx->ssl_ctx, key) != 1) {
        rc = ts_error_set(err, TS_ERR_CONFIG, "cannot use the node key %s: %s", cfg->key_path,
                          ssl_reason(ERR_peek_error()));
        goto out_free_key;
    }
    rc = 0;
out_free_key:
    EVP_PKEY_free(key);
out_free_cert:
    ERR_clear_error();
    X509_free(cert);
    free(pem);
    return rc;
}

/* Installs a trust store of the CA and crl (may be NULL) for new handshakes. */
static int ctx_install_store(struct tls_ctx *ctx, X509_CRL *crl, struct ts_error *err)
{
    X509_STORE *store = NULL;
    int rc = store_new(ctx, crl, &store, err);
    if (rc != 0)
        return rc;
    SSL_CTX_set_cert_store(ctx->ssl_ctx, store);   /* takes store, frees the old one */
    if (crl != NULL)
        X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx->ssl_ctx), X509_V_FLAG_CRL_CHECK);
    return 0;
}

int tls_ctx_new(const struct tls_ctx_config *cfg, struct tls_ctx **out, struct ts_error *err)
{
    assert(cfg != NULL);
    assert(out != NULL);
    if (cfg->trial == NULL || cfg->ca_path == NULL || cfg->cert_path == NULL ||
        cfg->key_path == NULL)
        return ts_error_set(err, TS_ERR_INVALID,
                            "tls: the trial id, CA, certificate and key paths are required");
    size_t trial_len = strlen(cfg->trial);
    if (trial_len == 0 || trial_len > TS_ID_BYTES_MAX)
        return ts_error_set(err, TS_ERR_INVALID, "tls: invalid trial id '%s'", cfg->trial);

    int rc;
    struct tls_ctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return ts_error_set(err, TS_ERR_NOMEM, "out of memory");
    memcpy(ctx->trial, cfg->trial, trial_len + 1);
    const char *trace = getenv("TS_TLS_TRACE");
    const char *node_trace = getenv("TRIALSYNC_TRACE");
    ctx->trace = (trace != NULL && trace[0] != '\0' && strcmp(trace, "0") != 0) ||
                 (node_trace != NULL && strcmp(node_trace, "debug") == 0);
    if (cfg->crl_path != NULL) {
        ctx->crl_path = strdup(cfg->crl_path);
        if (ctx->crl_path == NULL) {
            rc = ts_error_set(err, TS_ERR_NOMEM, "out of memory");
            goto out_free_ctx;
        }
    }
    rc = x509_load(cfg->ca_path, "trial CA certificate", &ctx->ca, NULL, NULL, err);
    if (rc != 0)
        goto out_free_ctx;
    if (X509_check_ca(ctx->ca) == 0) {
        rc = ts_error_set(err, TS_ERR_CONFIG, "%s is not a CA certificate", cfg->ca_path);
        goto out_free_ca;
    }
    ctx->ssl_ctx = SSL_CTX_new(TLS_method());
    if (ctx->ssl_ctx == NULL) {
        ERR_clear_error();
        rc = ts_error_set(err, TS_ERR_NOMEM, "cannot create a TLS context");
        goto out_free_ca;
    }
    rc = ssl_ctx_configure(ctx->ssl_ctx, err);
    if (rc != 0)
        goto out_free_ssl_ctx;
    rc = ctx_load_identity(ctx, cfg, err);
    if (rc != 0)
        goto out_free_ssl_ctx;
    X509_CRL *crl = NULL;
    if (ctx->crl_path != NULL) {
        rc = crl_load(ctx, ctx->crl_path, &crl, err);
        if (rc != 0)
            goto out_free_ssl_ctx;
    }
    rc = ctx_install_store(ctx, crl, err);
    X509_CRL_free(crl);
    if (rc != 0)
        goto out_free_ssl_ctx;
    *out = ctx;
    return 0;

out_free_ssl_ctx:
    SSL_CTX_free(ctx->ssl_ctx);
out_free_ca:
    X509_free(ctx->ca);
out_free_ctx:
    free(ctx->crl_path);
    free(ctx);
    return rc;
}

void tls_ctx_free(struct tls_ctx *ctx)
{
    if (ctx == NULL)
        return;
    assert(ctx->conns_live == 0);
    assert(ctx->conns == NULL);
    assert(ctx->listeners_live == 0);
    SSL_CTX_free(ctx->ssl_ctx);
    X509_free(ctx->ca);
    free(ctx->crl_path);
    free(ctx);
}

const struct pki_identity *tls_ctx_identity(const struct tls_ctx *ctx)
{
    return &ctx->self;
}

int tls_ctx_reload_crl(struct tls_ctx *ctx, const char *crl_path, unsigned *cut_off,
                       struct ts_error *err)
{
    assert(ctx != NULL);
    const char *path = crl_path != NULL ? crl_path : ctx->crl_path;
    if (path == NULL)
        return ts_error_set(err, TS_ERR_INVALID,
                            "no revocation list configured: give the CRL path to reload");
    char *path_copy = NULL;
    if (crl_path != NULL) {
        path_copy = strdup(crl_path);
        if (path_copy == NULL)
            return ts_error_set(err, TS_ERR_NOMEM, "out of memory");
    }
    X509_CRL *crl = NULL;
    int rc = crl_load(ctx, path, &crl, err);
    if (rc != 0)
        goto out_free_path;
    rc = ctx_install_store(ctx, crl, err);
    if (rc != 0)
        goto out_free_crl;
    if (path_copy != NULL) {
        free(ctx->crl_path);
        ctx->crl_path = path_copy;
        path_copy = NULL;
    }
    /* A revoked peer that is connected is cut off now, not at its next handshake. */
    unsigned n = 0;
    for (struct tls_conn *c = ctx->conns; c != NULL; c = c->ctx_next) {
        if (c->state != CONN_HANDSHAKE && c->state != CONN_OPEN)
            continue;
        X509 *peer = SSL_get0_peer_certificate(c->ssl);
        X509_REVOKED *rev = NULL;
        if (peer != NULL && X509_CRL_get0_by_cert(crl, &rev, peer) == 1) {
            conn_close(c, TS_ERR_AUTH, CLOSE_NOTIFY,
                       "certificate revoked (revocation list reloaded)");
            n++;
        }
    }
    if (cut_off != NULL)
        *cut_off = n;
    rc = 0;
out_free_crl:
    X509_CRL_free(crl);
out_free_path:
    free(path_copy);
    return rc;
}
