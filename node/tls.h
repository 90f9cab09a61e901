/*
 * tls.h: mutually authenticated TLS 1.3 links between nodes, carrying frames.
 *
 * This is the transport layer under the peer session.  It owns the TCP
 * socket, the TLS state and the framing (a 4-byte big-endian length, then
 * the body), and hands its owner whole frames.  It guarantees:
 *
 *  - TLS 1.3 only; both sides present a certificate; chains are verified
 *    against the trial CA alone (never the system store), with the trial's
 *    revocation list when one is configured.  Session resumption is off, so
 *    every connection is verified in full against the current CRL.
 *  - The peer's identity is the trialsync://<trial>/<role>/<id> URI SAN of
 *    its verified certificate (pki_cert_identity); the CN is never read.  A
 *    peer whose certificate names another trial is refused in the handshake.
 *  - A frame longer than TS_FRAME_BYTES_MAX, or empty, closes the connection
 *    before anything is allocated for it.  At most TLS_FRAMES_PER_WAKEUP_MAX
 *    frames are delivered per loop iteration; the rest wait for the next one.
 *  - Queued outbound bytes are bounded by TLS_SEND_QUEUE_BYTES_MAX.
 *  - Handshakes are bounded in time (handshake_timeout_ms; an accepted
 *    conn must also have sent its ClientHello by hello_timeout_ms) and, on a
 *    listener, in number (handshaking_max, and TLS_HANDSHAKING_PER_ADDR_MAX
 *    per address); established links may have an idle timeout.
 *  - Every refusal and failure ends in one on_close call with a TS_ERR_*
 *    code and a sentence for the trace, e.g.
 *    "peer 127.0.0.1:43210: certificate verify failed: certificate revoked".
 *
 * Threading: everything here runs on the one libuv loop thread that owns the
 * connection.  A tls_ctx may be shared by listeners and connections of one
 * loop.  The owner's callbacks are only ever called from libuv callbacks,
 * never synchronously from inside a tls_* function the owner called, so the
 * owner may call tls_conn_send_frame / tls_conn_close from any callback.
 *
 * Debugging: with TRIALSYNC_TRACE=debug (or TS_TLS_TRACE=1) in the
 * environment when a tls_ctx is made, its connections' state transitions and
 * close reasons go to stderr.
 *
 * Neither OpenSSL nor libuv types appear here: connections and listeners are
 * opaque heap objects owned by this module (the uv handles are embedded in
 * them and recovered with container_of), the owner attaches its own state
 * with tls_conn_set_data(), and the loop is passed as struct uv_loop_s (the
 * uv_loop_t of <uv.h>).
 */
#ifndef TS_TLS_H
#define TS_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../proto/errors.h"
#include "../proto/limits.h"
#include "pki.h"

/* A handshake costs a few ms of CPU; 10 s is generous on a slow WAN link and
 * still frees a slot held by a stalled client quickly. */
#define TLS_HANDSHAKE_TIMEOUT_MS_DEFAULT 10000u
/* Outbound bytes queued per connection (plaintext not yet encrypted plus
 * ciphertext not yet taken by the kernel, so it may exceed this by the TLS
 * record overhead of what is in flight, about 0.2%): several full frames, so
 * a sender can keep the link busy, yet 100 peers stay under a hub's memory
 * budget. */
#define TLS_SEND_QUEUE_BYTES_MAX (8u * 1024 * 1024)
/* Frames delivered per loop iteration per connection, so one busy peer
 * cannot starve the others or the timers. */
#define TLS_FRAMES_PER_WAKEUP_MAX 16u
/* Concurrent handshakes per listener by default: a full mesh reconnecting at
 * once after a hub restart, while a flood of stalled clients cannot take
 * every slot for longer than one handshake timeout. */
#define TLS_HANDSHAKING_MAX_DEFAULT 64u
/* From accept to the peer's whole ClientHello, which a real peer sends with
 * its connect: 3 s covers a lost first segment and its retransmission (the
 * initial TCP retransmission timeout is 1 s) on a poor WAN link, and frees a
 * slot held by a silent client three times sooner than the full handshake
 * timeout.  0 in tls_conn_opts: only the handshake timeout applies. */
#define TLS_HELLO_TIMEOUT_MS_DEFAULT 3000u
/* Concurrent handshakes from one IP address: a handshake takes a few round
 * trips, so even a dozen sites behind one NAT reconnecting together after a
 * hub restart get through four at a time within a second, while holding the
 * listener's slots takes 16 addresses.  A newcomer that has sent its
 * ClientHello evicts a silent connection (see tls_listen). */
#define TLS_HANDSHAKING_PER_ADDR_MAX 4u
/* Silent connections accepted over a cap, waiting for their first bytes: a
 * real peer speaks within milliseconds, so a flood must open this many
 * silent connections in that time to push one out. */
#define TLS_WAITING_MAX 64u
/* After close is asked, how long the final bytes (alert, close_notify) may
 * take to reach the kernel before the socket is closed regardless. */
#define TLS_CLOSE_LINGER_MS 2000u
/* The reason text given to on_close, peer address included. */
#define TLS_REASON_BYTES_MAX 512

_Static_assert(TLS_SEND_QUEUE_BYTES_MAX >= 4u * (TS_FRAME_BYTES_MAX + 4u),
               "the send queue must hold several maximal frames");
_Static_assert(TLS_HANDSHAKING_PER_ADDR_MAX * 8 <= TLS_HANDSHAKING_MAX_DEFAULT,
               "one address must take only a small share of the handshake slots");
_Static_assert(TLS_HELLO_TIMEOUT_MS_DEFAULT < TLS_HANDSHAKE_TIMEOUT_MS_DEFAULT,
               "the ClientHello deadline comes before the handshake's");
_Static_assert(TS_FRAME_BYTES_MAX < UINT32_MAX,
               "a frame length must fit the 4-byte prefix");

struct uv_loop_s;        /* uv_loop_t */
struct tls_ctx;          /* credentials and verification settings */
struct tls_conn;         /* one TLS connection */
struct tls_listener;     /* a listening socket producing tls_conns */

/* ----- context ---------------------------------------------------------- */

struct tls_ctx_config {
    const char *trial;      /* expected trial id of every peer (and of us) */
    const char *ca_path;    /* the trial CA certificate (PEM): the only trust anchor */
    const char *cert_path;  /* this node's certificate (PEM), signed by the CA */
    const char *key_path;   /* this node's private key (PEM); must be mode 0600 */
    const char *crl_path;   /* the trial's CRL (PEM), or NULL for no CRL checking */
};

/*
 * Builds a context from cfg (strings are copied; cfg may be freed after).
 * Refuses, with a message naming the file: a key readable by group or other
 * (TS_ERR_PERM), unreadable files (TS_ERR_IO), a certificate without a
 * trialsync identity, for another trial, expired or not signed by the CA, a
 * key that does not match it, a CRL not signed by the CA (TS_ERR_CONFIG).
 * A CRL past its nextUpdate (or not yet valid by our clock) is still
 * enforced, with a warning on stderr: it is the newest list this node has,
 * and refusing every peer instead would stop the trial.
 * On success *out owns the context; free it with tls_ctx_free once every
 * listener and connection using it is gone.
 */
int tls_ctx_new(const struct tls_ctx_config *cfg, struct tls_ctx **out,
                struct ts_error *err);

/* Frees ctx.  Asserts that no connection or listener still uses it. */
void tls_ctx_free(struct tls_ctx *ctx);

/* This node's own identity, from its certificate.  Valid while ctx lives. */
const struct pki_identity *tls_ctx_identity(const struct tls_ctx *ctx);

/*
 * Loads the CRL at crl_path (NULL: the path given at construction) and uses
 * it for every handshake from now on; turns CRL checking on if it was off.
 * Connections of this ctx whose peer certificate the new CRL revokes are
 * closed (asynchronously, TS_ERR_AUTH, "certificate revoked").  On error the
 * previous CRL stays in force.  *cut_off (may be NULL) receives the number
 * of connections closed.  Loop thread only.
 */
int tls_ctx_reload_crl(struct tls_ctx *ctx, const char *crl_path, unsigned *cut_off,
                       struct ts_error *err);

/* ----- connections ------------------------------------------------------ */

/*
 * What the owner of a connection answers.  All are called on the loop
 * thread, from libuv callbacks.
 *
 * on_handshake: the handshake completed and the peer's chain verified; peer
 *   is its identity (trial already checked).  Return 0 to accept, non-zero
 *   to refuse (the conn is then closed with TS_ERR_AUTH).  The owner may
 *   send frames from here.  Required.  Note that in TLS 1.3 a client
 *   finishes its handshake before the server has judged the client's
 *   certificate: a client the server refuses sees on_handshake, then
 *   on_close with TS_ERR_AUTH ("alert from peer: ... certificate revoked").
 * on_frame: one whole frame body, valid only during the call.  The owner
 *   may send frames or close the conn from here.  Required.
 * on_close: called exactly once per conn that tls_connect returned or that
 *   a listener accepted, with 0 for an orderly close (asked by the owner or
 *   by the peer) or a TS_ERR_* code (TS_ERR_AUTH: refused identity or
 *   certificate; TS_ERR_TOOBIG / TS_ERR_CORRUPT: bad frame or TLS data;
 *   TS_ERR_IO: network failure or timeout), and a reason prefixed with the
 *   peer's address.  The conn is freed when on_close returns; only the
 *   getters may be used on it during the call.  Required.
 * on_drain: the send queue became empty (optional, may be NULL); it may
 *   also come once after the handshake with nothing queued.
 */
struct tls_conn_cbs {
    int (*on_handshake)(struct tls_conn *c, const struct pki_identity *peer);
    void (*on_frame)(struct tls_conn *c, const uint8_t *body, size_t len);
    void (*on_close)(struct tls_conn *c, int reason_code, const char *reason_text);
    void (*on_drain)(struct tls_conn *c);
};

struct tls_conn_opts {
    uint32_t handshake_timeout_ms;  /* from accept or tls_connect to verified; > 0 */
    uint32_t hello_timeout_ms;      /* accepted conns: from accept to the whole ClientHello; 0 = none */
    uint32_t idle_timeout_ms;       /* once open, without bytes received; 0 = none */
};

/* TLS_HANDSHAKE_TIMEOUT_MS_DEFAULT, TLS_HELLO_TIMEOUT_MS_DEFAULT, no idle timeout. */
void tls_conn_opts_default(struct tls_conn_opts *o);

/*
 * Starts a client connection to host:port (a numeric IPv4/IPv6 address or a
 * name, resolved asynchronously; the first address the resolver gives is
 * used, so list a hub's addresses separately to fail over between them).
 * The handshake timeout covers resolving and connecting too.  No server
 * name is checked: the peer's identity is its URI SAN, which on_handshake
 * receives to judge.  cbs is copied; data is the owner's
 * pointer (tls_conn_data).  opts NULL means tls_conn_opts_default.
 * Returns 0 and sets *out (which stays valid until on_close returns; every
 * later failure, connect errors included, is reported there), or
 * TS_ERR_INVALID / TS_ERR_NOMEM with nothing created and no callback.
 */
int tls_connect(struct uv_loop_s *loop, struct tls_ctx *ctx, const char *host, int port,
                const struct tls_conn_opts *opts, const struct tls_conn_cbs *cbs,
                void *data, struct tls_conn **out, struct ts_error *err);

/*
 * Queues one frame (body of len bytes, copied; the prefix is added here).
 * Frames queued before the handshake completes are sent after on_handshake
 * accepts.  Writing happens before the loop next blocks, coalescing the
 * frames queued meanwhile.  Returns 0, TS_ERR_INVALID for an empty frame,
 * TS_ERR_TOOBIG for len above TS_FRAME_BYTES_MAX or when the queue would
 * exceed TLS_SEND_QUEUE_BYTES_MAX (nothing queued: wait for on_drain or
 * poll tls_conn_send_queued_bytes), TS_ERR_IO once the conn is closing,
 * TS_ERR_NOMEM.  Never calls a callback synchronously.
 */
int tls_conn_send_frame(struct tls_conn *c, const uint8_t *body, size_t len);

/* Outbound bytes queued and not yet taken by the kernel (flow control). */
size_t tls_conn_send_queued_bytes(const struct tls_conn *c);

/*
 * Closes c: frames already queued are still sent, then close_notify, within
 * TLS_CLOSE_LINGER_MS.  reason_code (0 or TS_ERR_*) and reason_text (may be
 * NULL; copied) are what on_close reports, unless the conn was already
 * closing for another reason.  on_close follows asynchronously, never from
 * inside this call; frames received meanwhile are dropped.  Idempotent.
 */
void tls_conn_close(struct tls_conn *c, int reason_code, const char *reason_text);

/* Changes the idle timeout of c (0 = none); counts from the last byte received. */
void tls_conn_set_idle_timeout(struct tls_conn *c, uint32_t idle_timeout_ms);

void tls_conn_set_data(struct tls_conn *c, void *data);
void *tls_conn_data(const struct tls_conn *c);

/* The verified identity of the peer, or NULL before the handshake completed. */
const struct pki_identity *tls_conn_peer(const struct tls_conn *c);

/* The peer's address, "127.0.0.1:43210" or "[::1]:4433" (a client conn
 * shows the host it was asked to connect to).  Never NULL. */
const char *tls_conn_peer_addr(const struct tls_conn *c);

/* True for a conn accepted by a listener, false for one from tls_connect. */
bool tls_conn_is_server(const struct tls_conn *c);

/* True once the handshake completed and until close starts. */
bool tls_conn_is_open(const struct tls_conn *c);

/* ----- listeners -------------------------------------------------------- */

/*
 * Listens on host:port (a numeric IPv4 or IPv6 address; port 0 picks an
 * ephemeral port, see tls_listener_port).  Each accepted conn uses cbs
 * (copied), opts (NULL: defaults) and starts with tls_conn_data() == data.
 * At most handshaking_max conns of this listener handshake at once (0:
 * TLS_HANDSHAKING_MAX_DEFAULT), at most TLS_HANDSHAKING_PER_ADDR_MAX from one
 * IP address.  A connection beyond either cap whose ClientHello is already
 * waiting when it is accepted takes the slot of the oldest connection of
 * that scope that has not sent one byte (closed: TS_ERR_TOOBIG, "evicted:
 * silent since accept ..").  One still silent waits, holding no slot, until
 * its first bytes (then the same rule applies) or its ClientHello deadline
 * (opts->hello_timeout_ms); at most TLS_WAITING_MAX wait, the oldest closed
 * first.  One that spoke and finds nothing to evict is closed at once
 * (on_close: TS_ERR_TOOBIG, "too many handshakes in progress").  So a flood
 * of silent clients cannot keep a real peer out, and clients that speak but
 * stall hold at most a few slots per address for the handshake timeout.  Returns 0 and *out, or TS_ERR_INVALID
 * (bad address) / TS_ERR_IO (e.g. the port is in use) / TS_ERR_NOMEM.
 */
int tls_listen(struct uv_loop_s *loop, struct tls_ctx *ctx, const char *host, int port,
               unsigned handshaking_max, const struct tls_conn_opts *opts,
               const struct tls_conn_cbs *cbs, void *data, struct tls_listener **out,
               struct ts_error *err);

/* The port l is bound to. */
int tls_listener_port(const struct tls_listener *l);

/* Connections of l in the handshake right now. */
unsigned tls_listener_handshaking(const struct tls_listener *l);

/*
 * Stops accepting.  Conns already accepted live on (close them separately);
 * l is freed asynchronously once its socket is closed and its last conn is
 * gone.  l must not be used after this call.
 */
void tls_listener_close(struct tls_listener *l);

#endif
