/*
 * peer.c: replication between nodes (see peer.h and docs/protocol.md).
 *
 * One session per TLS link, the same on both ends:
 *
 *   HANDSHAKE (tls) ──on_handshake: role allowed, not revoked──> HELLO_SENT
 *   HELLO_SENT ──Hello received: trial, id, version match──> STREAMING
 *   STREAMING: each side sends the batches the other lacks and may receive,
 *              safety lane before bulk, at most PEER_WINDOW_BATCHES unacked;
 *              each received batch is verified and applied durably, then
 *              acked; new commits are pushed as they happen.
 *   any ──refusal, error, idle, revocation, stop──> closed (tls on_close)
 *
 * set_state() traces every transition; session_check() holds the invariants.
 *
 * Chains: the manager keeps a registry of every (origin, lane) this node
 * holds or has heard of, with its head.  A session keeps, per chain, what the
 * peer holds (acked), what was sent to it (sent >= acked) and what the peer
 * said it holds (advertised, for the lag the other way), and a to-do list
 * per lane of chains that may have something to send.
 *
 * Authorization (DESIGN.md §5): a site may send only its own entries; a hub
 * relays anything that verifies.  Downlink filter: a site receives its own
 * chains, and hub chains with every entry that belongs to another site
 * replaced by a hole (its chain hash), never other sites' chains.
 *
 * Outgoing links: a site keeps one link to the first reachable hub of its
 * list and fails over to the next; a hub keeps one link to each hub it lists.
 * Reconnects back off exponentially with jitter.
 *
 * One identity, one link: a hub refuses a site's second connection while the
 * first is live (duplicate_refused); the refused node retries once after
 * seconds (its own half-open link is replaced by then), then every few
 * minutes.  A site that learns of its own revocation refuses writes and stops
 * dialing (self_revocation_check).
 */
#include "peer.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../proto/codec.h"
#include "../proto/protocol.h"
#include "enroll_node.h"
#include "hlc.h"
#include "lockview.h"
#include "merge.h"
#include "pki.h"
#include "safety.h"
#include "tls.h"
#include "trace.h"
#include "util.h"
#include "validate.h"

/*
 * The wire protocol versions this node speaks (proto/protocol.h): the hello
 * says the range, and each link uses the highest version both sides speak.
 * A release that changes the wire raises MAX and keeps MIN until every node
 * in the field speaks the new version (docs/operations.md, upgrades).
 */
#define PEER_PROTOCOL_VERSION_MIN 1
#define PEER_PROTOCOL_VERSION_MAX 1
_Static_assert(PEER_PROTOCOL_VERSION_MIN >= 1 && PEER_PROTOCOL_VERSION_MIN <= PEER_PROTOCOL_VERSION_MAX,
               "the protocol range is a non-empty range of versions from 1");
/* Unacked batches per session: two keep the link and the receiver's disk busy. */
#define PEER_WINDOW_BATCHES 2
/* Entries and bytes in one batch sent: the limits an origin commits a group
 * with, so every signed point can be reached (a smaller cap would stall). */
#define PEER_BATCH_ENTRIES_MAX TS_BATCH_ENTRIES_MAX
#define PEER_BATCH_BYTES_MAX TS_BATCH_BYTES_MAX
/* Connected sessions at once: 200 sites, hubs, and room for reconnect overlap. */
#define PEER_SESSIONS_MAX 512
/* Peers remembered for the status table (every site of a large trial). */
#define PEER_INFOS_MAX 2048
/* A site's name in the status table: any value a member record's field may hold. */
#define PEER_NAME_BYTES_MAX (TS_VALUE_BYTES_MAX + 1)
/*
 * Conflicts counted per site for one status answer (the peers' "conflicts"):
 * the count walks the conflict index on the loop thread, so it stops here
 * and the status says "site_conflicts_partial" (the store's total,
 * "conflicts", is exact).  Far above a healthy trial's open conflicts.
 */
#define PEER_STATUS_CONFLICTS_MAX 5000
/*
 * A peer's connection history (the per-site page, GET /v1/sites/ID): its
 * last connects and disconnects with their reasons, kept in a ring of this
 * many, so 2048 peers hold a bounded few megabytes however often they flap.
 */
#define PEER_EVENTS_MAX 12
/* A disconnect reason as kept: the trace's full text is in the trace. */
#define PEER_REASON_BYTES_MAX 120
/*
 * Last seen, the last disconnect and the history are written to the store's
 * metadata at each connect and disconnect, and for a connected peer at most
 * this often (not per frame): a hub restarted shows a site seen before the
 * restart as seen then, late by at most this much.
 */
#define PEER_SEEN_SAVE_MS 10000
/* The metadata key of a peer's kept history: this prefix and its id. */
#define PEER_SEEN_META_PREFIX "peer_seen/"
/* The kept history as JSON text: every event at its longest, with room. */
#define PEER_SEEN_VALUE_BYTES_MAX (PEER_EVENTS_MAX * (PEER_REASON_BYTES_MAX * 2 + 64) + 512)
/* The manager's tick: keepalives, revocation checks, reconnect timers. */
#define PEER_TICK_MS 250
/* Without a byte received for this long a link is considered dead. */
#define PEER_IDLE_TIMEOUT_MS 30000
/* A session sends at least this often (an empty ack) so the other side's idle timer holds. */
#define PEER_KEEPALIVE_MS 5000
#define PEER_RECONNECT_MIN_MS 200
/* Capped so that every site is back within 5 s of a hub restart (TARGETS). */
#define PEER_RECONNECT_MAX_MS 3000
/*
 * A site session the hub heard from within this long is live: a second
 * connection with the same identity is then a second node running the same
 * bundle, not the first one reconnecting (a live link sends at least every
 * PEER_KEEPALIVE_MS; a link that died half-open has been silent longer).
 */
#define PEER_DUPLICATE_LIVE_MS (2 * PEER_KEEPALIVE_MS)
/*
 * A node refused because another one holds its identity dials again after
 * PEER_DUPLICATE_RETRY_MS the first time: by then a link of its own that died
 * half-open (a NAT rebinding the hub has not noticed) has been silent past
 * PEER_DUPLICATE_LIVE_MS and is replaced.  Refused again, it is a second node
 * indeed and waits PEER_DUPLICATE_BACKOFF_MS between attempts: long enough
 * never to bother the live one, short enough to take over within minutes
 * once that one is stopped.  Both with jitter (half to all).
 */
#define PEER_DUPLICATE_RETRY_MS (2 * (PEER_DUPLICATE_LIVE_MS + PEER_TICK_MS))
#define PEER_DUPLICATE_BACKOFF_MS (5 * 60 * 1000)
/* Identities the hub remembers a duplicate of (metric and dashboard alarm). */
#define PEER_DUPLICATES_MAX 64
/* A duplicate alarm clears when no second node was refused for this long. */
#define PEER_DUPLICATE_ALARM_MS (10 * 60 * 1000)
/* Origin certificates whose keys are cached: every origin, and a few
 * rotations of each. */
#define PEER_ORIGINS_MAX (2 * TS_CHAINS_MAX)

_Static_assert(PEER_BATCH_BYTES_MAX <= TS_BATCH_BYTES_MAX, "a sent batch must decode");
_Static_assert(PEER_KEEPALIVE_MS * 3 < PEER_IDLE_TIMEOUT_MS,
               "keepalives must arrive well within the idle timeout");
_Static_assert(PEER_RECONNECT_MIN_MS < PEER_RECONNECT_MAX_MS, "backoff range");
_Static_assert(PEER_DUPLICATE_LIVE_MS > PEER_KEEPALIVE_MS + PEER_TICK_MS,
               "a live link is heard from within the duplicate window");
_Static_assert(PEER_DUPLICATE_LIVE_MS < PEER_IDLE_TIMEOUT_MS,
               "a link silent past the duplicate window may be a half-open one: replaced");
_Static_assert(PEER_DUPLICATE_RETRY_MS / 2 > PEER_DUPLICATE_LIVE_MS,
               "the first retry comes after a half-open link has fallen silent");
_Static_assert(PEER_DUPLICATE_BACKOFF_MS > PEER_DUPLICATE_RETRY_MS,
               "a node refused twice waits longer than after the first time");

enum session_state {
    SESSION_STATE_HANDSHAKE,
    SESSION_STATE_HELLO_SENT,
    SESSION_STATE_STREAMING,
    SESSION_STATE_CLOSING,
};

static const char *session_state_name(enum session_state s)
{
    switch (s) {
    case SESSION_STATE_HANDSHAKE: return "handshake";
    case SESSION_STATE_HELLO_SENT: return "hello-sent";
    case SESSION_STATE_STREAMING: return "streaming";
    case SESSION_STATE_CLOSING: return "closing";
    }
    return "?";
}

struct chain {
    char origin[TS_ID_BYTES_MAX + 1];
    uint8_t lane;
    uint64_t head;   /* highest seq held here */
};

/* One certificate of an origin: the key history is kept by (origin, serial). */
struct origin_key {
    char origin[TS_ID_BYTES_MAX + 1];
    char serial[TS_SERIAL_BYTES_MAX + 1];
    enum pki_role role;
    struct crypto_pubkey *pubkey;
    char *cert;      /* PEM, owned */
    size_t cert_len;
};

/* recv_block: the chain is refused on this link. */
#define RECV_REFUSED UINT64_MAX
/* How long a sender waits before offering a held batch again: the entry it
 * waits for (a query's creation relayed by another hub) is usually a moment
 * away; a clock far ahead is held much longer, one retry a second is cheap. */
#define PEER_HOLD_RETRY_MS 1000
/* How long a sender waits before offering a batch again that this node held
 * because its disk is low (or its storage failed, until it restarts): space
 * returns in an operator's time, and each offer resends up to a batch
 * (TS_BATCH_BYTES_MAX), so a few seconds keep the link cheap and the
 * catch-up prompt once space is back. */
#define PEER_HOLD_DISK_MS 5000

struct peer_mgr;
static uint64_t link_clock_ms(const struct peer_mgr *m);

/* The rules of validate_entry, as metric labels (validate_error.rule). */
static const char *const admit_rule_names[] = {
    "type", "key", "field", "value", "role", "user", "scope", "supersedes", "lock", "revoked",
    "enrollment", "other",
};
#define ADMIT_RULES_COUNT (sizeof(admit_rule_names) / sizeof(admit_rule_names[0]))

static size_t admit_rule_index(const char *rule)
{
    for (size_t i = 0; i + 1 < ADMIT_RULES_COUNT; i++) {
        if (strcmp(admit_rule_names[i], rule) == 0)
            return i;
    }
    return ADMIT_RULES_COUNT - 1;
}

/* One connect or disconnect of a peer (the ring in struct peer_info). */
struct peer_event {
    uint64_t at_ms;                       /* wall clock */
    bool connected;                       /* a connect; else a disconnect */
    char reason[PEER_REASON_BYTES_MAX];   /* a disconnect's reason, a connect's address */
};

/* What the manager remembers of a peer across its sessions. */
struct peer_info {
    char id[TS_ID_BYTES_MAX + 1];
    enum pki_role role;
    bool connected;
    uint64_t last_seen_ms;
    uint64_t seen_saved_ms;                   /* last_seen_ms as last written to the store */
    struct peer_event events[PEER_EVENTS_MAX]; /* oldest at events_first */
    size_t events_first, events_count;
    char addr[64];
    uint64_t entries_sent, entries_received;
    uint64_t bytes_sent, bytes_received;
    uint64_t batches_refused;
    uint64_t batches_held;                      /* not yet admissible: retried */
    uint64_t entries_refused[ADMIT_RULES_COUNT]; /* by rule, see admit_rule_names */
    bool clock_known;                           /* the peer's hello said its clock */
    int64_t clock_offset_ms;                    /* its clock minus this node's, at hello */
    struct session *session;
};

struct outlink;

/*
 * What a tls_conn's data points to: a session, or (for a connection a
 * listener accepted, until its handshake completes) the listener's tag.
 */
enum conn_kind { CONN_KIND_SESSION = 0, CONN_KIND_LISTENER = 1 };

struct listener_tag {
    enum conn_kind kind;   /* CONN_KIND_LISTENER; first member */
    struct peer_mgr *m;
};

struct session {
    enum conn_kind kind;   /* CONN_KIND_SESSION; first member */
    struct peer_mgr *m;
    struct tls_conn *conn;
    struct session *next, *prev;
    struct outlink *link;            /* NULL for an accepted session */
    uint32_t protocol_version;       /* agreed at hello (0 before it) */
    struct peer_info *info;          /* set once the peer is identified */
    enum session_state state;
    struct pki_identity peer;
    size_t cap;                      /* size of the per-chain arrays */
    uint64_t *acked;
    uint64_t *sent;
    uint64_t *advertised;
    bool *queued;
    /* Per chain: a tag of the certificate serial last sent with a batch of
     * it on this link (0 none): a batch signed by another key carries its
     * certificate again. */
    uint32_t *cert_sent;
    /* What this end takes of each chain from the peer: 0 everything;
     * RECV_REFUSED after an entry broke a rule (nothing more of that chain
     * until the next session); else the seq of a batch held back (not yet
     * admissible), so later batches wait until it comes again. */
    uint64_t *recv_block;
    /* When this end may offer each chain again: 0 now; UINT64_MAX never on
     * this link (the peer refused it); else a time in ms (the peer held it). */
    uint64_t *send_paused_until_ms;
    uint32_t *todo[LANE_COUNT];      /* chain indexes, FIFO */
    size_t todo_head[LANE_COUNT], todo_len[LANE_COUNT];
    int inflight;
    uint64_t last_send_ms;
    bool streamed;                   /* hellos exchanged: the link really worked */
};

struct outlink {
    struct peer_mgr *m;
    struct config_addr addrs[CONFIG_HUBS_MAX];
    int addrs_count;
    int current;                     /* index into addrs being tried */
    struct session *session;
    unsigned failures;
    uint64_t next_attempt_ms;
    char peer_id[TS_ID_BYTES_MAX + 1];  /* learned at the first handshake */
    bool parked;   /* the peer hub's own link to us is the one kept */
    /* Refusals in a row because another node holds this identity (reset by
     * a link that streams): the first waits PEER_DUPLICATE_RETRY_MS, the
     * next ones PEER_DUPLICATE_BACKOFF_MS. */
    unsigned duplicate_refusals;
    bool duplicate; /* the last close was such a refusal */
};

/* A site identity two nodes were seen using at once (hub side). */
struct duplicate {
    char id[TS_ID_BYTES_MAX + 1];
    uint64_t refused;        /* second connections refused */
    uint64_t last_ms;        /* when the last one was */
    char addr[64];           /* the address of the last one refused */
    char kept_addr[64];      /* the address of the link kept */
};

struct peer_mgr {
    struct node *node;
    struct tls_ctx *tls;
    struct tls_listener *listener;
    struct listener_tag listener_tag;
    uv_timer_t tick;
    struct chain *chains;
    size_t chains_count, chains_cap;
    struct origin_key *origins;
    size_t origins_count;
    struct peer_info *infos;
    size_t infos_count;
    struct session *sessions;
    size_t sessions_count;
    struct outlink links[CONFIG_HUBS_MAX];
    int links_count;
    char *ca_pem;
    size_t ca_len;
    struct crl_stamp {  /* the CRL file last loaded: a change of any of these reloads it */
        dev_t dev;
        ino_t ino;
        off_t size;
        struct timespec mtim;
    } crl_stamp;
    uint64_t handshake_failures[8];  /* by reason, see failure_reason_names */
    bool stopping;
    struct safety *safety;
    void (*on_applied)(void *ctx, const struct entry *e, uint64_t now_ms);
    void *on_applied_ctx;
    /* The session whose batch the store is applying (NULL for local
     * writes), so an entry's refusal is charged to the peer that sent it. */
    struct session *applying;
    /* The last refusal by validate_entry: its rule and the entry. */
    char refused_rule[24];
    /* A site whose clock is off from a hub's by more than the skew bound:
     * its entries stamped ahead would be held there.  The hub it was seen
     * against, and the offset (the hub's clock minus this node's). */
    bool clock_alarm;
    char clock_alarm_hub[TS_ID_BYTES_MAX + 1];
    int64_t clock_alarm_offset_ms;
    /* The batch being applied was signed by a revoked certificate: entries
     * stamped after this time (ms) are refused; 0 when not revoked. */
    uint64_t applying_revoked_ms;
    char applying_serial[TS_SERIAL_BYTES_MAX + 1];
    /* The revocation list in force (PEM, NUL-terminated; NULL when none)
     * and its CRL number (-1 none). */
    char *crl_pem;
    size_t crl_len;
    int64_t crl_number;
    /* Hub: identities seen on two live links at once. */
    struct duplicate duplicates[PEER_DUPLICATES_MAX];
    size_t duplicates_count;
    /* Site: the CRL number last searched for this node's own serial (-2
     * before the first search), and whether it stopped dialing its hubs
     * because it learned it was revoked (node.revoked says why). */
    int64_t self_crl_checked;
    bool self_revoked;
};

/*
 * The clock of reconnect schedules: the loop's monotonic time, so a wall
 * clock stepped back (a site whose time is corrected by an hour) never holds
 * a link down for the size of the step, and one stepped forward never skips
 * a backoff.
 */
static uint64_t link_clock_ms(const struct peer_mgr *m)
{
    /* libuv's monotonic clock, read directly: a session closing while the
     * node stops may run after the node itself is gone. */
    (void)m;
    return uv_hrtime() / 1000000u;
}

static const char *failure_reason_names[] = {
    "certificate", "role", "revoked", "trial", "protocol", "duplicate", "other",
};
enum { FAIL_CERT, FAIL_ROLE, FAIL_REVOKED, FAIL_TRIAL, FAIL_PROTOCOL, FAIL_DUPLICATE, FAIL_OTHER };

/* ---- chains ----------------------------------------------------------------- */

static int chain_find(struct peer_mgr *m, const char *origin, uint8_t lane)
{
    for (size_t i = 0; i < m->chains_count; i++)
        if (m->chains[i].lane == lane && strcmp(m->chains[i].origin, origin) == 0)
            return (int)i;
    return -1;
}

static bool session_grow(struct session *s, size_t need);

/* The index of (origin, lane), registered when new; -1 when the registry is full. */
static int chain_get(struct peer_mgr *m, const char *origin, uint8_t lane)
{
    int i = chain_find(m, origin, lane);
    if (i >= 0)
        return i;
    if (m->chains_count == TS_CHAINS_MAX || strlen(origin) > TS_ID_BYTES_MAX ||
        lane >= LANE_COUNT)
        return -1;
    if (m->chains_count == m->chains_cap) {
        size_t cap = m->chains_cap == 0 ? 64 : m->chains_cap * 2;
        struct chain *nc = realloc(m->chains, cap * sizeof(*nc));
        if (nc == NULL)
            return -1;
        m->chains = nc;
        m->chains_cap = cap;
    }
    struct chain *c = &m->chains[m->chains_count];
    memset(c, 0, sizeof(*c));
    memcpy(c->origin, origin, strlen(origin) + 1);
    c->lane = lane;
    for (struct session *s = m->sessions; s != NULL; s = s->next)
        if (!session_grow(s, m->chains_count + 1))
            return -1;
    return (int)m->chains_count++;
}

/* ---- origins' keys ------------------------------------------------------------ */

static struct origin_key *origin_find(struct peer_mgr *m, const char *origin, const char *serial)
{
    for (size_t i = 0; i < m->origins_count; i++)
        if (strcmp(m->origins[i].origin, origin) == 0 &&
            (serial == NULL || strcmp(m->origins[i].serial, serial) == 0))
            return &m->origins[i];
    return NULL;
}

/* The store's metadata key of an origin's certificate of serial. */
static void origin_cert_meta_key(char *out, size_t cap, const char *origin, const char *serial)
{
    if (serial != NULL)
        snprintf(out, cap, "cert/%s/%s", origin, serial);
    else
        snprintf(out, cap, "cert/%s", origin);
}

/*
 * Learns a certificate of an origin: it must chain to the trial CA (time and
 * revocation aside: entries signed before a revocation stay valid) and name
 * that origin.  Kept in the store's metadata by (origin, serial), and as the
 * origin's latest known one, so relays can pass it on and entries signed
 * with an earlier key stay verifiable.
 */
static struct origin_key *origin_learn(struct peer_mgr *m, const char *origin, const char *pem,
                                       size_t len, bool persist, struct ts_error *err)
{
    struct pki_identity who;
    struct crypto_pubkey *pk = NULL;
    char serial[TS_SERIAL_BYTES_MAX + 1];
    if (pki_verify_cert(m->ca_pem, m->ca_len, pem, len, &who, err) != 0)
        return NULL;
    if (strcmp(who.id, origin) != 0 || strcmp(who.trial, m->node->cfg.trial) != 0) {
        ts_error_set(err, TS_ERR_AUTH, "the certificate sent for origin %s names %s/%s", origin,
                     who.trial, who.id);
        return NULL;
    }
    if (pki_cert_serial_hex(pem, len, serial, sizeof(serial), err) != 0)
        return NULL;
    struct origin_key *o = origin_find(m, origin, serial);
    if (o != NULL)
        return o;
    if (m->origins_count == PEER_ORIGINS_MAX) {
        ts_error_set(err, TS_ERR_TOOBIG, "too many origin certificates");
        return NULL;
    }
    if (crypto_pubkey_from_cert(pem, len, &pk, err) != 0)
        return NULL;
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        crypto_pubkey_free(pk);
        ts_error_set(err, TS_ERR_NOMEM, "out of memory");
        return NULL;
    }
    memcpy(copy, pem, len);
    copy[len] = '\0';
    if (persist) {
        char key[TS_ID_BYTES_MAX + TS_SERIAL_BYTES_MAX + 8];
        origin_cert_meta_key(key, sizeof(key), origin, serial);
        store_meta_put(m->node->store, key, pem, len, false, NULL);
        origin_cert_meta_key(key, sizeof(key), origin, NULL);
        store_meta_put(m->node->store, key, pem, len, false, NULL);
    }
    o = &m->origins[m->origins_count++];
    memset(o, 0, sizeof(*o));
    memcpy(o->origin, origin, strlen(origin) + 1);
    memcpy(o->serial, serial, strlen(serial) + 1);
    o->role = who.role;
    o->pubkey = pk;
    o->cert = copy;
    o->cert_len = len;
    return o;
}

/*
 * A certificate of an origin: the one of serial, or (serial NULL) any one,
 * for what does not depend on the key (its role).  Cached, or from the
 * store's metadata.
 */
static struct origin_key *origin_key(struct peer_mgr *m, const char *origin, const char *serial)
{
    struct origin_key *o = origin_find(m, origin, serial);
    if (o != NULL)
        return o;
    char key[TS_ID_BYTES_MAX + TS_SERIAL_BYTES_MAX + 8];
    char *pem = NULL;
    size_t len = 0;
    origin_cert_meta_key(key, sizeof(key), origin, serial);
    if (store_meta_get(m->node->store, key, &pem, &len) != 0) {
        /* A store written before key history kept one certificate per origin. */
        origin_cert_meta_key(key, sizeof(key), origin, NULL);
        if (serial == NULL || store_meta_get(m->node->store, key, &pem, &len) != 0)
            return NULL;
    }
    o = origin_learn(m, origin, pem, len, false, NULL);
    free(pem);
    if (o != NULL && serial != NULL && strcmp(o->serial, serial) != 0)
        return NULL;
    return o;
}

static int verify_cb(void *ctx, const char *origin, const char *cert_serial, const uint8_t *msg,
                     size_t len, const uint8_t *sig, size_t sig_len)
{
    struct peer_mgr *m = ctx;
    struct origin_key *o = origin_key(m, origin, cert_serial);
    if (o == NULL)
        return TS_ERR_AUTH;
    return crypto_verify(o->pubkey, msg, len, sig, sig_len) ? 0 : TS_ERR_SIGNATURE;
}

/* A small tag of a serial for cert_sent: FNV-1a, never 0. */
static uint32_t serial_tag(const char *serial)
{
    uint32_t h = 2166136261u;
    for (const char *p = serial; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return h == 0 ? 1 : h;
}

/* ---- the revocation list, carried by replication ------------------------------ */

/*
 * Makes crl_pem (already checked: signed by the trial CA, number `number`)
 * the revocation list in force when its number is higher than the one in
 * force: written to the node's CRL file atomically, then TLS reloads it and
 * cuts off any connected peer it revokes.  Returns true when it took over.
 */
static void reload_crl_if_changed(struct peer_mgr *m);

/* Writes a whole file and syncs it (the caller renames it into place). */
static int crl_file_write(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = errno;
            close(fd);
            return e != 0 ? -e : -EIO;
        }
        off += (size_t)n;
    }
    int rc = fsync(fd) != 0 ? -errno : 0;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

static bool crl_take(struct peer_mgr *m, const char *pem, size_t len, int64_t number)
{
    if (number <= m->crl_number)
        return false;
    const char *path = m->node->cfg.crl;
    if (path[0] != '\0') {
        char tmp[PATH_MAX + 8];
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        int rc = crl_file_write(tmp, pem, len);
        if (rc == 0 && rename(tmp, path) != 0)
            rc = -errno;
        if (rc != 0) {
            trace(TRACE_ERROR, "revocation list %" PRId64 " not written to %s: %s", number, path,
                  strerror(-rc));
            unlink(tmp);
            return false;
        }
    }
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return false;
    memcpy(copy, pem, len);
    copy[len] = '\0';
    free(m->crl_pem);
    m->crl_pem = copy;
    m->crl_len = len;
    trace(TRACE_INFO, "revocation list number %" PRId64 " in force (was %" PRId64 "), received "
          "by replication", number, m->crl_number);
    m->crl_number = number;
    if (path[0] != '\0')
        reload_crl_if_changed(m);
    return true;
}

/* An applied entry that carries a revocation list (the `crl` record). */
static void crl_entry_applied(struct peer_mgr *m, const struct entry *e)
{
    if (strcmp(e->record_type, SCHEMA_CRL_TYPE) != 0)
        return;
    for (size_t i = 0; i < e->writes_count; i++) {
        const struct field_write *w = &e->writes[i];
        if (strcmp(w->field, "pem") != 0)
            continue;
        int64_t number = -1;
        struct ts_error err = {0};
        /* Admitted already (validate_entry checks the CA's signature);
         * checked again here, where it is about to be trusted. */
        if (pki_crl_check(m->ca_pem, m->ca_len, w->value, strlen(w->value), &number, &err) != 0) {
            trace(TRACE_ERROR, "crl entry %s/%" PRIu64 ": %s", e->origin, e->seq, err.msg);
            return;
        }
        crl_take(m, w->value, strlen(w->value), number);
    }
}

/* Loads the revocation list in force from the node's CRL file, if any. */
static void crl_load_in_force(struct peer_mgr *m)
{
    char *pem = NULL;
    size_t len = 0;
    int64_t number = -1;
    m->crl_number = -1;
    if (m->node->cfg.crl[0] == '\0' || pki_read_file(m->node->cfg.crl, &pem, &len, NULL) != 0)
        return;
    if (pki_crl_check(m->ca_pem, m->ca_len, pem, len, &number, NULL) != 0) {
        free(pem);
        return;
    }
    free(m->crl_pem);
    m->crl_pem = pem;
    m->crl_len = len;
    m->crl_number = number;
}

/* ---- peers ----------------------------------------------------------------- */

/* ---- kept history: last seen, connects and disconnects ------------------------ */

static void seen_meta_key(char *key, size_t cap, const char *id)
{
    snprintf(key, cap, PEER_SEEN_META_PREFIX "%s", id);
}

/* The newest event of p, or NULL. */
static const struct peer_event *event_last(const struct peer_info *p, bool connected)
{
    for (size_t k = p->events_count; k > 0; k--) {
        const struct peer_event *e = &p->events[(p->events_first + k - 1) % PEER_EVENTS_MAX];
        if (e->connected == connected)
            return e;
    }
    return NULL;
}

/* Appends an event to p's ring, the oldest dropped when it is full. */
static void event_add(struct peer_info *p, uint64_t at_ms, bool connected, const char *reason)
{
    struct peer_event *e;
    if (p->events_count < PEER_EVENTS_MAX) {
        e = &p->events[(p->events_first + p->events_count) % PEER_EVENTS_MAX];
        p->events_count++;
    } else {
        e = &p->events[p->events_first];
        p->events_first = (p->events_first + 1) % PEER_EVENTS_MAX;
    }
    assert(p->events_count <= PEER_EVENTS_MAX);
    e->at_ms = at_ms;
    e->connected = connected;
    snprintf(e->reason, sizeof(e->reason), "%s", reason != NULL ? reason : "");
}

/* p's events, oldest first, as [{time, at_ms, event, reason}]. */
static json_t *events_json(const struct peer_info *p)
{
    json_t *out = json_array();
    for (size_t k = 0; k < p->events_count; k++) {
        const struct peer_event *e = &p->events[(p->events_first + k) % PEER_EVENTS_MAX];
        char at[40];
        api_format_time(e->at_ms, at, sizeof(at));
        json_array_append_new(out, json_pack("{s:s,s:I,s:s,s:s}", "time", at, "at_ms",
                                             (json_int_t)e->at_ms, "event",
                                             e->connected ? "connected" : "disconnected",
                                             "reason", e->reason));
    }
    return out;
}

/*
 * Writes p's last seen time and events to the store's metadata (unsynced: a
 * crash loses at most the last PEER_SEEN_SAVE_MS, never replicated data).
 */
static void seen_save(struct peer_mgr *m, struct peer_info *p)
{
    char key[sizeof(PEER_SEEN_META_PREFIX) + TS_ID_BYTES_MAX];
    json_t *j = json_pack("{s:I,s:o}", "last_seen_ms", (json_int_t)p->last_seen_ms, "events",
                          events_json(p));
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (text == NULL)
        return;
    seen_meta_key(key, sizeof(key), p->id);
    struct ts_error err = {0};
    if (store_meta_put(m->node->store, key, text, strlen(text), false, &err) != 0)
        trace(TRACE_WARN, "peer %s: last seen time not kept: %s", p->id, err.msg);
    else
        p->seen_saved_ms = p->last_seen_ms;
    free(text);
}

/* Reads what seen_save kept of p (a new info): nothing when there is none. */
static void seen_load(struct peer_mgr *m, struct peer_info *p)
{
    char key[sizeof(PEER_SEEN_META_PREFIX) + TS_ID_BYTES_MAX];
    char *val = NULL;
    size_t len = 0;
    seen_meta_key(key, sizeof(key), p->id);
    if (store_meta_get(m->node->store, key, &val, &len) != 0)
        return;
    json_t *j = len <= PEER_SEEN_VALUE_BYTES_MAX ? json_loadb(val, len, 0, NULL) : NULL;
    free(val);
    json_t *seen = json_object_get(j, "last_seen_ms");
    if (json_is_integer(seen) && json_integer_value(seen) > 0)
        p->last_seen_ms = (uint64_t)json_integer_value(seen);
    size_t i;
    json_t *ev;
    json_array_foreach(json_object_get(j, "events"), i, ev) {
        json_t *at = json_object_get(ev, "at_ms");
        const char *what = json_string_value(json_object_get(ev, "event"));
        const char *why = json_string_value(json_object_get(ev, "reason"));
        if (!json_is_integer(at) || what == NULL)
            continue;
        event_add(p, (uint64_t)json_integer_value(at), strcmp(what, "connected") == 0, why);
    }
    p->seen_saved_ms = p->last_seen_ms;
    json_decref(j);
}

static struct peer_info *info_get(struct peer_mgr *m, const char *id, enum pki_role role)
{
    for (size_t i = 0; i < m->infos_count; i++)
        if (strcmp(m->infos[i].id, id) == 0)
            return &m->infos[i];
    if (m->infos_count == PEER_INFOS_MAX)
        return NULL;
    struct peer_info *p = &m->infos[m->infos_count++];
    memset(p, 0, sizeof(*p));
    snprintf(p->id, sizeof(p->id), "%s", id);
    p->role = role;
    seen_load(m, p);
    return p;
}

/* True when the membership log says site id is revoked. */
static bool member_revoked(struct peer_mgr *m, const char *id)
{
    struct field_state st;
    memset(&st, 0, sizeof(st));
    if (store_field_get(m->node->store, MEMBER_TYPE, id, "status", &st) != 0)
        return false;
    bool revoked = false;
    for (size_t i = 0; i < st.live_count; i++)
        if (strcmp(st.live[i].value, "revoked") == 0)
            revoked = true;  /* a revocation is never undone by a concurrent write */
    field_state_release(&st);
    return revoked;
}

/*
 * The name the membership log gives site id ("St. Mary's, Boston") into out,
 * or "" when it has none.  Of concurrent names, the one the merge rules show.
 */
static void member_name(struct peer_mgr *m, const char *id, char *out, size_t cap)
{
    struct field_state st;
    assert(cap > 0);
    out[0] = '\0';
    memset(&st, 0, sizeof(st));
    if (store_field_get(m->node->store, MEMBER_TYPE, id, "name", &st) != 0)
        return;
    int shown = merge_display(MEMBER_TYPE, "name", &st);
    if (shown >= 0 && (size_t)shown < st.live_count)
        snprintf(out, cap, "%s", st.live[shown].value);
    field_state_release(&st);
}

/* ---- sessions ---------------------------------------------------------------- */

static bool session_check(const struct session *s)
{
    if (s->inflight < 0 || s->inflight > PEER_WINDOW_BATCHES)
        return false;
    if (s->cap < s->m->chains_count)
        return false;
    if (s->state == SESSION_STATE_STREAMING && s->info == NULL)
        return false;
    return true;
}

static void set_state(struct session *s, enum session_state to)
{
    trace(TRACE_DEBUG, "peer %s: %s -> %s", s->info != NULL ? s->info->id : tls_conn_peer_addr(s->conn),
          session_state_name(s->state), session_state_name(to));
    s->state = to;
}

static bool session_grow(struct session *s, size_t need)
{
    if (need <= s->cap)
        return true;
    size_t cap = s->cap == 0 ? 64 : s->cap;
    while (cap < need)
        cap *= 2;
    uint64_t *a = realloc(s->acked, cap * sizeof(*a));
    if (a == NULL)
        return false;
    s->acked = a;
    uint64_t *b = realloc(s->sent, cap * sizeof(*b));
    if (b == NULL)
        return false;
    s->sent = b;
    uint64_t *c = realloc(s->advertised, cap * sizeof(*c));
    if (c == NULL)
        return false;
    s->advertised = c;
    bool *q = realloc(s->queued, cap * sizeof(*q));
    if (q == NULL)
        return false;
    s->queued = q;
    uint32_t *cs = realloc(s->cert_sent, cap * sizeof(*cs));
    if (cs == NULL)
        return false;
    s->cert_sent = cs;
    uint64_t *rb = realloc(s->recv_block, cap * sizeof(*rb));
    if (rb == NULL)
        return false;
    s->recv_block = rb;
    uint64_t *sp = realloc(s->send_paused_until_ms, cap * sizeof(*sp));
    if (sp == NULL)
        return false;
    s->send_paused_until_ms = sp;
    for (int lane = 0; lane < LANE_COUNT; lane++) {
        /* The to-do ring is re-laid from its head so it stays contiguous. */
        uint32_t *t = malloc(cap * sizeof(*t));
        if (t == NULL)
            return false;
        for (size_t i = 0; i < s->todo_len[lane]; i++)
            t[i] = s->todo[lane][(s->todo_head[lane] + i) % s->cap];
        free(s->todo[lane]);
        s->todo[lane] = t;
        s->todo_head[lane] = 0;
    }
    for (size_t i = s->cap; i < cap; i++) {
        s->acked[i] = 0;
        s->sent[i] = 0;
        s->advertised[i] = 0;
        s->queued[i] = false;
        s->cert_sent[i] = 0;
        s->recv_block[i] = 0;
        s->send_paused_until_ms[i] = 0;
    }
    s->cap = cap;
    return true;
}

enum send_rule { SEND_NONE, SEND_ALL, SEND_FILTERED };

/* What of chain c the peer of s may receive (DESIGN.md §5, downlink filter). */
static enum send_rule send_rule(struct session *s, const struct chain *c)
{
    struct peer_mgr *m = s->m;
    if (m->node->cfg.role == PKI_ROLE_SITE)
        /* A site sends only its own entries: it holds others' chains with
         * holes, and relaying those would leave holes at a hub for good. */
        return strcmp(c->origin, m->node->cfg.id) == 0 ? SEND_ALL : SEND_NONE;
    if (s->peer.role == PKI_ROLE_HUB)
        return SEND_ALL;
    if (strcmp(c->origin, s->peer.id) == 0)
        return SEND_ALL;  /* its own entries: restores a site that lost its disk */
    enum pki_role role;
    if (strcmp(c->origin, m->node->cfg.id) == 0) {
        role = m->node->cfg.role;
    } else {
        struct origin_key *o = origin_key(m, c->origin, NULL);
        if (o == NULL)
            return SEND_NONE;
        role = o->role;
    }
    return role == PKI_ROLE_SITE ? SEND_NONE : SEND_FILTERED;
}

/*
 * Whether the peer of s may send this node chain c at all: the mirror of
 * send_rule on the other end, so lag is counted only for what can come.
 */
static bool recv_allowed(struct session *s, const struct chain *c)
{
    struct peer_mgr *m = s->m;
    if (s->peer.role == PKI_ROLE_SITE)
        return strcmp(c->origin, s->peer.id) == 0;  /* a site sends only its own */
    if (m->node->cfg.role == PKI_ROLE_HUB)
        return true;                                /* hub to hub: everything */
    if (strcmp(c->origin, m->node->cfg.id) == 0 || strcmp(c->origin, s->peer.id) == 0)
        return true;
    struct origin_key *o = origin_key(m, c->origin, NULL);
    return o != NULL && o->role != PKI_ROLE_SITE;   /* other sites' chains never come */
}

static void todo_push(struct session *s, uint32_t idx)
{
    const struct chain *c = &s->m->chains[idx];
    if (s->queued[idx] || s->state != SESSION_STATE_STREAMING)
        return;
    if (s->send_paused_until_ms[idx] != 0 && node_now_ms() < s->send_paused_until_ms[idx])
        return;
    if (c->head <= s->sent[idx] || send_rule(s, c) == SEND_NONE)
        return;
    uint8_t lane = c->lane;
    s->todo[lane][(s->todo_head[lane] + s->todo_len[lane]) % s->cap] = idx;
    s->todo_len[lane]++;
    s->queued[idx] = true;
}

static void session_pump(struct session *s);

/* A chain grew here: every session that may want it hears of it. */
static void chain_advanced(struct peer_mgr *m, int idx, uint64_t head)
{
    if (idx < 0 || head <= m->chains[idx].head)
        return;
    m->chains[idx].head = head;
    for (struct session *s = m->sessions; s != NULL; s = s->next) {
        todo_push(s, (uint32_t)idx);
        session_pump(s);
    }
}

static int send_frame(struct session *s, const struct frame *f)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    struct ts_error err = {0};
    int rc = codec_frame_encode(f, &buf, &len, &err);
    if (rc != 0) {
        trace(TRACE_ERROR, "peer %s: cannot encode a frame: %s", s->peer.id, err.msg);
        return rc;
    }
    rc = tls_conn_send_frame(s->conn, buf, len);
    free(buf);
    if (rc == 0) {
        s->last_send_ms = node_now_ms();
        if (s->info != NULL)
            s->info->bytes_sent += len + 4;
    }
    return rc;
}

static void session_refuse(struct session *s, int fail_reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Refuses the peer: the reason is traced, sent to it, and the link closed. */
static void session_refuse(struct session *s, int fail_reason, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (s->state == SESSION_STATE_CLOSING)
        return;
    trace(TRACE_WARN, "peer %s (%s): refused: %s", s->peer.id[0] ? s->peer.id : "?",
          tls_conn_peer_addr(s->conn), reason);
    if (fail_reason >= 0)
        s->m->handshake_failures[fail_reason]++;
    if (s->info != NULL)
        s->info->batches_refused++;
    struct frame f;
    memset(&f, 0, sizeof(f));
    f.type = FRAME_REFUSAL;
    f.reason = reason;
    send_frame(s, &f);
    set_state(s, SESSION_STATE_CLOSING);
    tls_conn_close(s->conn, TS_ERR_AUTH, reason);
}

/*
 * Replaces, in a batch read from the store, every entry the site peer may
 * not see by a hole (the chain hash after it).  Walks backwards, so that the
 * hash after entry i is at hand: the batch's chain hash for the last entry,
 * entry i+1's prev_hash for the others; one decode per entry.  hole_hashes
 * (count of them) holds the hashes the holes point to.  Returns 0, or
 * TS_ERR_CORRUPT when a stored entry does not decode (nothing is then sent).
 */
static int apply_filter(struct session *s, struct batch *b, uint8_t (*hole_hashes)[TS_HASH_BYTES])
{
    uint8_t after[TS_HASH_BYTES];
    memcpy(after, b->chain_hash, TS_HASH_BYTES);
    for (size_t k = b->count; k-- > 0;) {
        if (b->entry_lens[k] == BATCH_HOLE_LEN) {
            /* Held as a hole here: the hash before it is unknown, and so is
             * the hash after the entry before it. */
            return TS_ERR_CORRUPT;
        }
        struct entry e;
        memset(&e, 0, sizeof(e));
        if (codec_entry_decode(b->entries[k], b->entry_lens[k], &e, NULL) != 0) {
            entry_release(&e);
            return TS_ERR_CORRUPT;
        }
        bool hide = e.site[0] != '\0' && strcmp(e.site, s->peer.id) != 0;
        if (hide) {
            memcpy(hole_hashes[k], after, TS_HASH_BYTES);
            b->entries[k] = hole_hashes[k];
            b->entry_lens[k] = BATCH_HOLE_LEN;
        }
        memcpy(after, e.prev_hash, TS_HASH_BYTES);
        entry_release(&e);
    }
    return 0;
}

/* Sends the next batch of chain idx; false when there was nothing to send. */
static bool send_next_batch(struct session *s, uint32_t idx)
{
    struct peer_mgr *m = s->m;
    const struct chain *c = &m->chains[idx];
    struct batch b;
    struct ts_error err = {0};
    enum send_rule rule = send_rule(s, c);

    if (rule == SEND_NONE || c->head <= s->sent[idx])
        return false;
    if (s->send_paused_until_ms[idx] != 0 && node_now_ms() < s->send_paused_until_ms[idx])
        return false;
    memset(&b, 0, sizeof(b));
    int rc = store_read_batch(m->node->store, m->node->cfg.trial, c->origin, c->lane,
                              s->sent[idx] + 1, PEER_BATCH_ENTRIES_MAX, PEER_BATCH_BYTES_MAX,
                              &b, &err);
    if (rc != 0 || b.count == 0) {
        if (rc != 0)
            trace(TRACE_ERROR, "peer %s: reading %s/%u from %" PRIu64 ": %s", s->peer.id,
                  c->origin, c->lane, s->sent[idx] + 1, err.msg);
        store_batch_release(&b);
        return false;
    }
    uint8_t (*holes)[TS_HASH_BYTES] = NULL;
    if (rule == SEND_FILTERED) {
        holes = malloc(b.count * TS_HASH_BYTES);
        if (holes == NULL) {
            store_batch_release(&b);
            return false;
        }
        if (apply_filter(s, &b, holes) != 0) {
            trace(TRACE_ERROR, "peer %s: %s/%u from %" PRIu64 " cannot be filtered (a stored "
                  "entry does not decode); run trialsync verify", s->peer.id, c->origin, c->lane,
                  s->sent[idx] + 1);
            free(holes);
            store_batch_release(&b);
            return false;
        }
    }
    /* The certificate that signed the batch goes with the first batch of a
     * chain on a link, and again whenever the signing key changes. */
    uint32_t tag = serial_tag(b.cert_serial);
    if (s->cert_sent[idx] != tag) {
        struct origin_key *o = origin_key(m, c->origin, b.cert_serial);
        if (o != NULL) {
            b.origin_cert = o->cert;
            b.origin_cert_len = o->cert_len;
        }
    }
    struct frame f;
    memset(&f, 0, sizeof(f));
    f.type = FRAME_BATCH;
    f.batch = b;
    uint64_t last = b.first_seq + b.count - 1;
    size_t count = b.count;
    rc = send_frame(s, &f);
    store_batch_release(&b);
    free(holes);
    if (rc != 0)
        return false;
    s->cert_sent[idx] = tag;
    s->sent[idx] = last;
    s->inflight++;
    if (s->info != NULL)
        s->info->entries_sent += count;
    return true;
}

/* Sends while the window allows: the safety lane's chains first. */
static void session_pump(struct session *s)
{
    if (s->state != SESSION_STATE_STREAMING)
        return;
    for (uint8_t lane = 0; lane < LANE_COUNT; lane++) {
        while (s->inflight < PEER_WINDOW_BATCHES && s->todo_len[lane] > 0) {
            uint32_t idx = s->todo[lane][s->todo_head[lane]];
            if (send_next_batch(s, idx) && s->m->chains[idx].head > s->sent[idx])
                continue;  /* more of this chain: stays first in line */
            s->todo_head[lane] = (s->todo_head[lane] + 1) % s->cap;
            s->todo_len[lane]--;
            s->queued[idx] = false;
        }
        if (s->inflight >= PEER_WINDOW_BATCHES)
            break;
    }
    assert(session_check(s));
}

static int send_hello(struct session *s)
{
    struct peer_mgr *m = s->m;
    struct vv_item *vv = NULL;
    size_t count = 0;
    int rc = store_vv(m->node->store, &vv, &count);
    if (rc != 0)
        return rc;
    /* A site learns only of the chains it may receive: not even the ids and
     * sizes of other sites' chains. */
    size_t kept = 0;
    for (size_t i = 0; i < count; i++) {
        int idx = chain_get(m, vv[i].origin, vv[i].lane);
        if (s->peer.role == PKI_ROLE_SITE &&
            (idx < 0 || send_rule(s, &m->chains[idx]) == SEND_NONE))
            continue;
        vv[kept++] = vv[i];
    }
    count = kept;
    struct frame f;
    memset(&f, 0, sizeof(f));
    f.type = FRAME_HELLO;
    snprintf(f.trial, sizeof(f.trial), "%s", m->node->cfg.trial);
    snprintf(f.node_id, sizeof(f.node_id), "%s", m->node->cfg.id);
    f.protocol_version = PEER_PROTOCOL_VERSION_MAX;
    f.protocol_version_min = PEER_PROTOCOL_VERSION_MIN;
    f.wall_ms = node_now_ms();
    f.vector = vv;
    f.vector_count = count;
    rc = send_frame(s, &f);
    free(vv);
    return rc;
}

static struct session *session_new(struct peer_mgr *m, struct outlink *link)
{
    struct session *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->kind = CONN_KIND_SESSION;
    s->m = m;
    s->link = link;
    s->state = SESSION_STATE_HANDSHAKE;
    if (!session_grow(s, m->chains_count > 0 ? m->chains_count : 1)) {
        for (int lane = 0; lane < LANE_COUNT; lane++)
            free(s->todo[lane]);
        free(s->acked), free(s->sent), free(s->advertised), free(s->queued), free(s->cert_sent);
        free(s->recv_block), free(s->send_paused_until_ms);
        free(s);
        return NULL;
    }
    s->next = m->sessions;
    if (m->sessions != NULL)
        m->sessions->prev = s;
    m->sessions = s;
    m->sessions_count++;
    return s;
}

static void session_free(struct session *s)
{
    struct peer_mgr *m = s->m;
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        m->sessions = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    m->sessions_count--;
    if (s->info != NULL && s->info->session == s) {
        s->info->session = NULL;
        s->info->connected = false;
    }
    if (s->link != NULL && s->link->session == s)
        s->link->session = NULL;
    for (int lane = 0; lane < LANE_COUNT; lane++)
        free(s->todo[lane]);
    free(s->acked);
    free(s->sent);
    free(s->advertised);
    free(s->queued);
    free(s->cert_sent);
    free(s->recv_block);
    free(s->send_paused_until_ms);
    free(s);
}

/* ---- one identity, one node -------------------------------------------------------- */

/* The refusal reason's prefix, which the refused node recognizes. */
#define PEER_DUPLICATE_REASON "identity in use"

static struct duplicate *duplicate_get(struct peer_mgr *m, const char *id)
{
    for (size_t i = 0; i < m->duplicates_count; i++)
        if (strcmp(m->duplicates[i].id, id) == 0)
            return &m->duplicates[i];
    if (m->duplicates_count == PEER_DUPLICATES_MAX)
        return NULL;
    struct duplicate *d = &m->duplicates[m->duplicates_count++];
    memset(d, 0, sizeof(*d));
    snprintf(d->id, sizeof(d->id), "%s", id);
    return d;
}

/*
 * A second connection from a site whose first link is live (heard from within
 * PEER_DUPLICATE_LIVE_MS): two nodes run the same bundle.  The first link is
 * kept and the new one refused with a reason that says so; the hub counts it
 * and raises an alarm naming the site.  True when s was refused.  A link
 * silent longer is taken for a half-open one and replaced, as before.
 */
static bool duplicate_refused(struct peer_mgr *m, struct session *s, struct session *old,
                              const struct peer_info *info)
{
    uint64_t now = node_now_ms();
    if (s->peer.role != PKI_ROLE_SITE || s->link != NULL || old->link != NULL)
        return false;
    if (old->state != SESSION_STATE_STREAMING || now - info->last_seen_ms >= PEER_DUPLICATE_LIVE_MS)
        return false;
    struct duplicate *d = duplicate_get(m, s->peer.id);
    bool first = d != NULL && (d->refused == 0 || now - d->last_ms >= PEER_DUPLICATE_ALARM_MS);
    if (d != NULL) {
        d->refused++;
        d->last_ms = now;
        snprintf(d->addr, sizeof(d->addr), "%s", tls_conn_peer_addr(s->conn));
        snprintf(d->kept_addr, sizeof(d->kept_addr), "%s", tls_conn_peer_addr(old->conn));
    }
    if (first)
        trace(TRACE_ERROR,
              "ALARM duplicate identity: a second node connects as site %s from %s while its "
              "link from %s is live; the first link is kept, the second refused: two nodes "
              "must never run the same site bundle", s->peer.id, tls_conn_peer_addr(s->conn),
              tls_conn_peer_addr(old->conn));
    session_refuse(s, FAIL_DUPLICATE,
                   PEER_DUPLICATE_REASON ": site %s is already connected from %s (link live); "
                   "two nodes are running the same site bundle: stop one of them",
                   s->peer.id, tls_conn_peer_addr(old->conn));
    return true;
}

/* ---- a revoked site knows it -------------------------------------------------------- */

/*
 * This site's revocation in the membership log: true with when (the entry's
 * wall time, UTC) and why (its reason for change) filled.
 */
static bool self_member_revoked(struct peer_mgr *m, char *when, size_t when_cap, char *why,
                                size_t why_cap)
{
    struct field_state st;
    memset(&st, 0, sizeof(st));
    if (store_field_get(m->node->store, MEMBER_TYPE, m->node->cfg.id, "status", &st) != 0)
        return false;
    bool revoked = false;
    for (size_t i = 0; i < st.live_count && !revoked; i++) {
        if (strcmp(st.live[i].value, "revoked") != 0)
            continue;
        revoked = true;
        struct entry e;
        memset(&e, 0, sizeof(e));
        if (store_entry_get(m->node->store, &st.live[i].ref, &e, NULL) == 0) {
            api_format_time(e.wall_ms, when, when_cap);
            snprintf(why, why_cap, "%s", e.reason[0] != '\0' ? e.reason : "no reason recorded");
            entry_release(&e);
        } else {
            api_format_time((st.live[i].hlc >> HLC_LOGICAL_BITS), when, when_cap);
            snprintf(why, why_cap, "no reason recorded");
        }
    }
    field_state_release(&st);
    return revoked;
}

/*
 * A site learns of its own revocation from what replicates to it: its member
 * record (status revoked) or the CRL in force naming its certificate.  From
 * then on it refuses writes (node.revoked), says why in its status, /healthz
 * and, once, its trace, and stops dialing its hubs: they would refuse it, and
 * a revocation is never undone (a re-admitted site gets a new bundle and a
 * restart).  Called every tick; the CRL is searched once per CRL number.
 */
static void self_revocation_check(struct peer_mgr *m)
{
    struct node *n = m->node;
    if (n->cfg.role != PKI_ROLE_SITE || m->self_revoked)
        return;
    char when[40] = "", why[TS_REASON_BYTES_MAX + 64] = "";
    const char *source = NULL;
    if (self_member_revoked(m, when, sizeof(when), why, sizeof(why))) {
        source = "its member record";
    } else if (m->crl_pem != NULL && m->crl_number != m->self_crl_checked) {
        m->self_crl_checked = m->crl_number;
        int64_t at_s = 0;
        if (pki_crl_revoked(m->crl_pem, m->crl_len, n->cert_serial, &at_s, NULL) == 1) {
            api_format_time(at_s > 0 ? (uint64_t)at_s * 1000 : 0, when, sizeof(when));
            snprintf(why, sizeof(why), "certificate %s is on the trial's revocation list",
                     n->cert_serial);
            source = "the revocation list";
        }
    }
    if (source == NULL)
        return;
    m->self_revoked = true;
    snprintf(n->revoked, sizeof(n->revoked), "this site was revoked on %s: %s", when, why);
    trace(TRACE_ERROR,
          "REVOKED: %s (learned from %s); this node accepts no more writes and stops "
          "connecting to its hubs; reads still work", n->revoked, source);
    for (int i = 0; i < m->links_count; i++)
        m->links[i].next_attempt_ms = UINT64_MAX;
}

/* ---- tls callbacks --------------------------------------------------------------- */

static int on_handshake(struct tls_conn *conn, const struct pki_identity *peer)
{
    enum conn_kind *kind = tls_conn_data(conn);
    struct session *s;
    if (*kind == CONN_KIND_LISTENER) {
        struct peer_mgr *lm = ((struct listener_tag *)(void *)kind)->m;
        if (lm->sessions_count >= PEER_SESSIONS_MAX) {
            trace(TRACE_WARN, "peer %s (%s): refused: %d sessions already", peer->id,
                  tls_conn_peer_addr(conn), PEER_SESSIONS_MAX);
            return 1;
        }
        s = session_new(lm, NULL);
        if (s == NULL)
            return 1;
        s->conn = conn;
        tls_conn_set_data(conn, s);
    } else {
        s = (struct session *)(void *)kind;
    }
    struct peer_mgr *m = s->m;
    const struct config *cfg = &m->node->cfg;

    s->peer = *peer;
    /* Refusals from here on are sent to the peer as a Refusal frame, so it
     * knows why and backs off, and are traced with the reason. */
    if (peer->role == PKI_ROLE_ADMIN) {
        session_refuse(s, FAIL_ROLE, "role admin does not replicate");
        return 0;
    }
    if (cfg->role == PKI_ROLE_SITE && peer->role != PKI_ROLE_HUB) {
        session_refuse(s, FAIL_ROLE, "a site replicates only with hubs, not a %s",
                       pki_role_name(peer->role));
        return 0;
    }
    if (strcmp(peer->id, cfg->id) == 0) {
        session_refuse(s, FAIL_ROLE, "it presents this node's own identity");
        return 0;
    }
    if (member_revoked(m, peer->id)) {
        session_refuse(s, FAIL_REVOKED, "site %s is revoked in the membership log", peer->id);
        return 0;
    }
    struct peer_info *info = info_get(m, peer->id, peer->role);
    if (info == NULL) {
        m->handshake_failures[FAIL_OTHER]++;
        trace(TRACE_WARN, "peer %s: refused: too many peers", peer->id);
        return 1;
    }
    if (s->link != NULL)
        snprintf(s->link->peer_id, sizeof(s->link->peer_id), "%s", peer->id);
    if (info->session != NULL && info->session != s &&
        duplicate_refused(m, s, info->session, info))
        return 0;
    if (info->session != NULL && info->session != s) {
        struct session *old = info->session;
        bool new_out = s->link != NULL, old_out = old->link != NULL;
        if (peer->role == PKI_ROLE_HUB && new_out != old_out) {
            /* Two hubs that list each other: both keep the link the hub with
             * the lower id started, and the other parks its own. */
            const char *starter = new_out ? cfg->id : peer->id;
            const char *lower = strcmp(cfg->id, peer->id) < 0 ? cfg->id : peer->id;
            if (strcmp(starter, lower) != 0) {
                if (new_out) {
                    s->link->parked = true;
                    set_state(s, SESSION_STATE_CLOSING);
                    tls_conn_close(s->conn, 0, "hub link kept: the one the peer started");
                } else {
                    session_refuse(s, -1, "a link with hub %s exists (the one %s started is kept)",
                                   peer->id, lower);
                }
                return 0;
            }
            if (old_out)
                old->link->parked = true;
        }
        /* Otherwise a peer reconnecting before its old link timed out: the
         * new connection wins. */
        trace(TRACE_INFO, "peer %s: new connection replaces the old one", peer->id);
        old->info = NULL;
        set_state(old, SESSION_STATE_CLOSING);
        tls_conn_close(old->conn, 0, "replaced by a new connection");
    }
    info->session = s;
    info->connected = true;
    info->last_seen_ms = node_now_ms();
    snprintf(info->addr, sizeof(info->addr), "%s", tls_conn_peer_addr(conn));
    event_add(info, info->last_seen_ms, true, info->addr);
    seen_save(m, info);
    s->info = info;
    tls_conn_set_idle_timeout(conn, PEER_IDLE_TIMEOUT_MS);
    if (send_hello(s) != 0)
        return 1;
    set_state(s, SESSION_STATE_HELLO_SENT);
    trace(TRACE_INFO, "peer %s (%s, %s): connected", peer->id, pki_role_name(peer->role),
          tls_conn_peer_addr(conn));
    return 0;
}

/*
 * Learns the peer's clock offset from its hello.  A site compares its clock
 * with its hubs': past the skew bound, a hub would hold the site's new entries
 * (validate_entry's clock rule), so that is an alarm an operator must act on
 * (fix the site's time), raised in the trace, the status and the metrics.
 * The offset includes the hello's transit time, a few ms: far below the bound.
 */
static void clock_check(struct session *s, uint64_t peer_wall_ms)
{
    struct peer_mgr *m = s->m;
    if (peer_wall_ms == 0 || s->info == NULL)
        return;
    uint64_t now = node_now_ms();
    /* Clocks of the same era: a difference past 2^62 ms is clamped there. */
    uint64_t gap = peer_wall_ms >= now ? peer_wall_ms - now : now - peer_wall_ms;
    if (gap > (UINT64_C(1) << 62))
        gap = UINT64_C(1) << 62;
    int64_t offset = peer_wall_ms >= now ? (int64_t)gap : -(int64_t)gap;
    s->info->clock_known = true;
    s->info->clock_offset_ms = offset;
    if (m->node->cfg.role != PKI_ROLE_SITE || s->peer.role != PKI_ROLE_HUB)
        return;
    uint64_t magnitude = offset < 0 ? (uint64_t)(-offset) : (uint64_t)offset;
    if (magnitude > m->node->cfg.clock_skew_max_ms) {
        m->clock_alarm = true;
        snprintf(m->clock_alarm_hub, sizeof(m->clock_alarm_hub), "%s", s->peer.id);
        m->clock_alarm_offset_ms = offset;
        trace(TRACE_ERROR,
              "ALARM clock: this node's clock is %" PRIu64 " s %s hub %s's (bound %" PRIu64
              " s): entries stamped ahead of the hub's clock by more than the bound are held "
              "there; set this machine's time (NTP)",
              magnitude / 1000, offset < 0 ? "ahead of" : "behind", s->peer.id,
              m->node->cfg.clock_skew_max_ms / 1000);
    } else if (m->clock_alarm && strcmp(m->clock_alarm_hub, s->peer.id) == 0) {
        m->clock_alarm = false;
        trace(TRACE_INFO, "clock: within %" PRIu64 " s of hub %s again",
              m->node->cfg.clock_skew_max_ms / 1000, s->peer.id);
    }
}

static void handle_hello(struct session *s, const struct frame *f)
{
    struct peer_mgr *m = s->m;
    if (s->state != SESSION_STATE_HELLO_SENT) {
        session_refuse(s, FAIL_PROTOCOL, "a second hello");
        return;
    }
    if (strcmp(f->trial, m->node->cfg.trial) != 0) {
        session_refuse(s, FAIL_TRIAL, "hello for trial %s, this is trial %s", f->trial,
                       m->node->cfg.trial);
        return;
    }
    if (strcmp(f->node_id, s->peer.id) != 0) {
        session_refuse(s, FAIL_PROTOCOL, "hello from node %s but its certificate is %s",
                       f->node_id, s->peer.id);
        return;
    }
    char why[PROTOCOL_REASON_BYTES_MAX];
    uint32_t agreed = 0;
    if (protocol_negotiate(PEER_PROTOCOL_VERSION_MIN, PEER_PROTOCOL_VERSION_MAX,
                           f->protocol_version_min, f->protocol_version, &agreed, why,
                           sizeof(why)) != 0) {
        session_refuse(s, FAIL_PROTOCOL, "%s", why);
        return;
    }
    s->protocol_version = agreed;
    for (size_t i = 0; i < f->vector_count; i++) {
        /* A site's vector may name only chains this node holds or the site's
         * own: anything else would fill the registry for nothing. */
        int idx = chain_find(m, f->vector[i].origin, f->vector[i].lane);
        if (idx < 0 && (s->peer.role == PKI_ROLE_HUB || strcmp(f->vector[i].origin, s->peer.id) == 0))
            idx = chain_get(m, f->vector[i].origin, f->vector[i].lane);
        if (idx < 0)
            continue;
        s->acked[idx] = f->vector[i].seq;
        s->sent[idx] = f->vector[i].seq;
        s->advertised[idx] = f->vector[i].seq;
        if (s->peer.role == PKI_ROLE_HUB && f->vector[i].lane == LANE_SAFETY &&
            strcmp(f->vector[i].origin, m->node->cfg.id) == 0)
            safety_acked(m->safety, f->vector[i].seq, m->node->wall_ms());
    }
    clock_check(s, f->wall_ms);
    set_state(s, SESSION_STATE_STREAMING);
    s->streamed = true;
    if (s->link != NULL) {
        s->link->failures = 0;  /* a working link: the next outage backs off from scratch */
        s->link->duplicate_refusals = 0;
    }
    for (size_t i = 0; i < m->chains_count; i++)
        todo_push(s, (uint32_t)i);
    session_pump(s);
}

/* After a batch applied: the entries' effects above the store (SAE clock). */
static void notify_applied(struct peer_mgr *m, const struct batch *b)
{
    if (m->on_applied == NULL && b->lane != LANE_SAFETY)
        return;
    uint64_t now = m->node->wall_ms();
    for (size_t i = 0; i < b->count; i++) {
        if (b->entry_lens[i] == BATCH_HOLE_LEN)
            continue;
        struct entry e;
        memset(&e, 0, sizeof(e));
        if (codec_entry_decode(b->entries[i], b->entry_lens[i], &e, NULL) == 0) {
            if (m->safety != NULL && e.lane == LANE_SAFETY)
                safety_applied(m->safety, &e, now);
            if (e.lane == LANE_SAFETY)
                crl_entry_applied(m, &e);
            if (m->on_applied != NULL)
                m->on_applied(m->on_applied_ctx, &e, now);
        }
        entry_release(&e);
    }
}

/*
 * Answers a batch with a refusal of its chain alone: retry_after_ms 0 refuses
 * the chain on this link; above 0 holds it, to be offered again from seq.
 */
static void send_chain_refusal(struct session *s, const struct batch *b, uint64_t seq,
                               uint32_t retry_after_ms, const char *reason)
{
    struct vv_item item;
    memset(&item, 0, sizeof(item));
    snprintf(item.origin, sizeof(item.origin), "%s", b->origin);
    item.lane = b->lane;
    item.seq = seq != 0 ? seq : b->first_seq;
    struct frame rf;
    memset(&rf, 0, sizeof(rf));
    rf.type = FRAME_REFUSAL;
    rf.reason = (char *)reason;
    rf.vector = &item;
    rf.vector_count = 1;
    rf.retry_after_ms = retry_after_ms;
    if (send_frame(s, &rf) != 0) {
        /* The sender would wait for an answer for ever: start afresh. */
        set_state(s, SESSION_STATE_CLOSING);
        tls_conn_close(s->conn, TS_ERR_IO, "cannot queue a refusal");
    }
}

/* Holds b because the store cannot take it now (node_admit): see PEER_HOLD_DISK_MS. */
static void hold_for_storage(struct session *s, const struct batch *b, int idx, const char *why)
{
    if (s->info != NULL)
        s->info->batches_held++;
    s->recv_block[idx] = b->first_seq;
    trace(TRACE_WARN, "peer %s: batch %s/%s from seq %" PRIu64 " held for %u ms: %s", s->peer.id,
          b->origin, b->lane == LANE_SAFETY ? "safety" : "bulk", b->first_seq,
          (unsigned)PEER_HOLD_DISK_MS, why);
    send_chain_refusal(s, b, b->first_seq, PEER_HOLD_DISK_MS, why);
}

static void handle_batch(struct session *s, const struct frame *f)
{
    struct peer_mgr *m = s->m;
    const struct batch *b = &f->batch;
    struct ts_error err = {0};
    struct store_apply_result res = {0};

    if (s->state != SESSION_STATE_STREAMING) {
        session_refuse(s, FAIL_PROTOCOL, "a batch before the hello");
        return;
    }
    if (strcmp(b->trial, m->node->cfg.trial) != 0) {
        session_refuse(s, -1, "batch for trial %s", b->trial);
        return;
    }
    if (s->peer.role == PKI_ROLE_SITE && strcmp(b->origin, s->peer.id) != 0) {
        session_refuse(s, -1, "site %s sent entries of origin %s: a site may send only its own",
                       s->peer.id, b->origin);
        return;
    }
    if (m->node->cfg.role == PKI_ROLE_HUB && s->peer.role == PKI_ROLE_SITE) {
        for (size_t i = 0; i < b->count; i++) {
            if (b->entry_lens[i] == BATCH_HOLE_LEN) {
                session_refuse(s, -1, "site %s sent a hole in its own chain", s->peer.id);
                return;
            }
        }
    }
    char qkey[TS_ID_BYTES_MAX + 16];
    char *qval = NULL;
    size_t qlen = 0;
    snprintf(qkey, sizeof(qkey), "quarantine/%s", b->origin);
    if (store_meta_get(m->node->store, qkey, &qval, &qlen) == 0) {
        free(qval);
        session_refuse(s, -1, "origin %s is quarantined after a fork; nothing of it is applied",
                       b->origin);
        return;
    }
    if (b->origin_cert != NULL && origin_find(m, b->origin, b->cert_serial) == NULL) {
        if (origin_learn(m, b->origin, b->origin_cert, b->origin_cert_len, true, &err) == NULL) {
            session_refuse(s, -1, "batch %s/%u: its origin's certificate: %s", b->origin, b->lane,
                           err.msg);
            return;
        }
    }
    /* What each entry says is checked by entry_check_cb as the store decodes
     * it; the certificate that signed it must at least be known (sent or
     * held), by (origin, serial): a key rotation keeps the earlier ones. */
    if (origin_key(m, b->origin, b->cert_serial) == NULL) {
        session_refuse(s, -1, "batch %s/%u: origin %s has no known certificate of serial '%s' "
                       "(none sent)", b->origin, b->lane, b->origin, b->cert_serial);
        return;
    }
    int idx = chain_get(m, b->origin, b->lane);
    if (idx < 0) {
        session_refuse(s, -1, "too many chains");
        return;
    }
    if (!session_grow(s, m->chains_count)) {
        session_refuse(s, -1, "out of memory");
        return;
    }
    uint64_t last = b->first_seq + b->count - 1;
    /* Sent before the peer read our refusal or hold of this chain: the same
     * answer again, so every batch sent gets one answer. */
    if (s->recv_block[idx] == RECV_REFUSED) {
        send_chain_refusal(s, b, 0, 0, "the chain is refused on this link");
        return;
    }
    if (s->recv_block[idx] != 0 && b->first_seq > s->recv_block[idx]) {
        send_chain_refusal(s, b, s->recv_block[idx], PEER_HOLD_RETRY_MS,
                           "waiting for the held batch to come again");
        return;
    }
    /* The one disk guard for every writer (node_admit): a batch this node
     * cannot take now is held, the link stays up and the sender offers it
     * again later; no reconnect, nothing applied. */
    if (node_admit(m->node, &err) != 0) {
        hold_for_storage(s, b, idx, err.msg);
        return;
    }
    s->recv_block[idx] = 0;
    m->applying = s;
    m->refused_rule[0] = '\0';
    /* A batch signed with a revoked key: its entries stamped after the
     * revocation are refused by entry_check_cb (DESIGN.md §6: those signed
     * before it stay valid). */
    m->applying_revoked_ms = 0;
    snprintf(m->applying_serial, sizeof(m->applying_serial), "%s", b->cert_serial);
    int64_t revoked_at_s = 0;
    if (m->crl_pem != NULL &&
        pki_crl_revoked(m->crl_pem, m->crl_len, b->cert_serial, &revoked_at_s, NULL) == 1)
        m->applying_revoked_ms = revoked_at_s <= 0 ? 1 : (uint64_t)revoked_at_s * 1000;
    int rc = store_apply(m->node->store, m->node->cfg.trial, b, 1, verify_cb, m, true,
                         node_now_ms(), &res, &err);
    m->applying = NULL;
    m->applying_revoked_ms = 0;
    if (rc == TS_ERR_AGAIN) {
        /* Not yet admissible (a query's creation still on its way, or stamped
         * ahead of this clock): nothing applied or acknowledged; the sender
         * offers it again after a pause.  The link and the peer are fine. */
        if (s->info != NULL)
            s->info->batches_held++;
        s->recv_block[idx] = b->first_seq;
        trace(TRACE_INFO, "peer %s: batch %s/%s %" PRIu64 "-%" PRIu64 " held, not yet: %s",
              s->peer.id, b->origin, b->lane == LANE_SAFETY ? "safety" : "bulk", b->first_seq,
              last, err.msg);
        send_chain_refusal(s, b, b->first_seq, PEER_HOLD_RETRY_MS, err.msg);
        return;
    }
    if (rc != 0 && m->refused_rule[0] != '\0') {
        /* An entry broke a rule of the rule book: that chain is refused on
         * this link (nothing of the batch applied or acknowledged), and the
         * link goes on for every other chain. */
        if (s->info != NULL) {
            s->info->entries_refused[admit_rule_index(m->refused_rule)]++;
            s->info->batches_refused++;
        }
        s->recv_block[idx] = RECV_REFUSED;
        trace(TRACE_WARN, "peer %s (%s): refused: batch %s/%s %" PRIu64 "-%" PRIu64
              " refused (%s): %s; chain %s/%s refused on this link, the link goes on",
              s->peer.id, tls_conn_peer_addr(s->conn), b->origin,
              b->lane == LANE_SAFETY ? "safety" : "bulk", b->first_seq, last, ts_strerror(rc),
              err.msg, b->origin, b->lane == LANE_SAFETY ? "safety" : "bulk");
        char reason[TS_REASON_BYTES_MAX + 1];
        snprintf(reason, sizeof(reason), "batch %s/%s %" PRIu64 "-%" PRIu64 " refused (%s): %s",
                 b->origin, b->lane == LANE_SAFETY ? "safety" : "bulk", b->first_seq, last,
                 ts_strerror(rc), err.msg);
        send_chain_refusal(s, b, b->first_seq, 0, reason);
        return;
    }
    if (rc != 0 && node_admit_failure(m->node)) {
        /* The store failed under this batch: the node restarts, and the peer
         * offers the batch again then (or to another hub). */
        hold_for_storage(s, b, idx, m->node->health_why);
        return;
    }
    if (rc == TS_ERR_FORK) {
        struct ts_error qerr = {0};
        if (store_meta_put(m->node->store, qkey, err.msg, strlen(err.msg), true, &qerr) != 0)
            /* Not persisted: the origin is still refused on this link, and the
             * fork will be found again at its next batch. */
            trace(TRACE_ERROR, "FORK: quarantine of origin %s not recorded: %s", b->origin,
                  qerr.msg);
        trace(TRACE_ERROR, "FORK: origin %s is quarantined: %s (peer %s)", b->origin, err.msg,
              s->peer.id);
        session_refuse(s, -1, "fork: %s", err.msg);
        return;
    }
    if (rc != 0) {
        session_refuse(s, -1, "batch %s/%s %" PRIu64 "-%" PRIu64 " refused (%s): %s", b->origin,
                       b->lane == LANE_SAFETY ? "safety" : "bulk", b->first_seq, last,
                       ts_strerror(rc), err.msg);
        return;
    }
    if (s->info != NULL) {
        s->info->entries_received += res.applied;
        s->info->last_seen_ms = node_now_ms();
    }
    if (last > s->advertised[idx])
        s->advertised[idx] = last;
    if (last > s->acked[idx])
        s->acked[idx] = last;
    if (last > s->sent[idx])
        s->sent[idx] = last;
    hlc_observe(&m->node->clock, store_hlc_max(m->node->store));

    struct vv_item item;
    memset(&item, 0, sizeof(item));
    snprintf(item.origin, sizeof(item.origin), "%s", b->origin);
    item.lane = b->lane;
    item.seq = last;
    struct frame ack;
    memset(&ack, 0, sizeof(ack));
    ack.type = FRAME_ACK;
    ack.vector = &item;
    ack.vector_count = 1;
    if (send_frame(s, &ack) != 0) {
        /* The sender would wait for this ack for ever: start the link afresh. */
        set_state(s, SESSION_STATE_CLOSING);
        tls_conn_close(s->conn, TS_ERR_IO, "cannot queue an ack");
        return;
    }

    if (res.applied > 0 && strcmp(b->origin, m->node->cfg.id) == 0)
        node_reload_heads(m->node);  /* restored from a hub: new writes follow it */
    if (res.applied > 0) {
        notify_applied(m, b);
        uint64_t head = 0;
        uint8_t hash[TS_HASH_BYTES];
        store_head(m->node->store, b->origin, b->lane, &head, hash);
        chain_advanced(m, idx, head);
    }
}

static void handle_ack(struct session *s, const struct frame *f)
{
    struct peer_mgr *m = s->m;
    if (s->state != SESSION_STATE_STREAMING) {
        session_refuse(s, FAIL_PROTOCOL, "an ack before the hello");
        return;
    }
    if (f->vector_count == 0)
        return;  /* a keepalive */
    for (size_t i = 0; i < f->vector_count; i++) {
        int idx = chain_find(m, f->vector[i].origin, f->vector[i].lane);
        if (idx < 0)
            continue;
        if (f->vector[i].seq > s->acked[idx])
            s->acked[idx] = f->vector[i].seq;
        if (f->vector[i].seq > s->advertised[idx])
            s->advertised[idx] = f->vector[i].seq;
        if (s->peer.role == PKI_ROLE_HUB && f->vector[i].lane == LANE_SAFETY &&
            strcmp(f->vector[i].origin, m->node->cfg.id) == 0)
            safety_acked(m->safety, f->vector[i].seq, m->node->wall_ms());
    }
    if (s->inflight > 0)
        s->inflight--;
    session_pump(s);
}

/*
 * The peer answered a batch with a refusal of its chain.  Held
 * (retry_after_ms > 0): the chain is offered again from the held seq after the
 * pause.  Refused: an entry broke a rule there, which is serious (this node's
 * own entries should never be refused; a relayed chain means its origin
 * misbehaved), so it is an error in the trace, and the chain is not offered
 * again on this link.  Every other chain goes on either way.
 */
static void handle_chain_refusal(struct session *s, const struct vv_item *chain,
                                 uint32_t retry_after_ms, const char *reason)
{
    struct peer_mgr *m = s->m;
    if (s->inflight > 0)
        s->inflight--;
    int idx = chain_find(m, chain->origin, chain->lane);
    if (idx < 0 || !session_grow(s, m->chains_count)) {
        session_pump(s);
        return;
    }
    bool first = s->send_paused_until_ms[idx] == 0;
    if (retry_after_ms == 0) {
        if (s->send_paused_until_ms[idx] != UINT64_MAX)
            trace(TRACE_ERROR, "peer %s refused chain %s/%s from seq %" PRIu64 ": %s",
                  s->peer.id, chain->origin, chain->lane == LANE_SAFETY ? "safety" : "bulk",
                  chain->seq, reason);
        s->send_paused_until_ms[idx] = UINT64_MAX;
    } else if (s->send_paused_until_ms[idx] != UINT64_MAX) {
        if (first)
            trace(TRACE_INFO, "peer %s holds chain %s/%s from seq %" PRIu64
                  " (offered again in %" PRIu32 " ms): %s",
                  s->peer.id, chain->origin, chain->lane == LANE_SAFETY ? "safety" : "bulk",
                  chain->seq, retry_after_ms, reason);
        s->send_paused_until_ms[idx] = node_now_ms() + retry_after_ms;
        if (chain->seq >= 1 && chain->seq - 1 < s->sent[idx])
            s->sent[idx] = chain->seq - 1;
    }
    session_pump(s);
}

static void on_frame(struct tls_conn *conn, const uint8_t *body, size_t len)
{
    struct session *s = tls_conn_data(conn);
    struct frame f;
    struct ts_error err = {0};

    if (s->state == SESSION_STATE_CLOSING)
        return;
    if (s->info != NULL) {
        s->info->bytes_received += len + 4;
        s->info->last_seen_ms = node_now_ms();
    }
    memset(&f, 0, sizeof(f));
    if (codec_frame_decode(body, len, &f, &err) != 0) {
        session_refuse(s, -1, "malformed frame: %s", err.msg);
        return;
    }
    switch (f.type) {
    case FRAME_HELLO: handle_hello(s, &f); break;
    case FRAME_BATCH: handle_batch(s, &f); break;
    case FRAME_ACK: handle_ack(s, &f); break;
    case FRAME_REFUSAL:
        if (f.vector_count == 1) {
            handle_chain_refusal(s, &f.vector[0], f.retry_after_ms,
                                 f.reason != NULL ? f.reason : "");
            break;
        }
        if (f.reason != NULL &&
            strncmp(f.reason, PEER_DUPLICATE_REASON, strlen(PEER_DUPLICATE_REASON)) == 0) {
            /* Another node runs with this node's identity: dialing again
             * at once would knock it off or be refused again. */
            unsigned seen = s->link != NULL ? s->link->duplicate_refusals : 1;
            int wait_ms = seen == 0 ? PEER_DUPLICATE_RETRY_MS : PEER_DUPLICATE_BACKOFF_MS;
            trace(TRACE_ERROR, "peer %s refused this node: %s; next attempt within %d s",
                  s->peer.id, f.reason, (wait_ms + 999) / 1000);
            if (s->link != NULL) {
                s->link->duplicate = true;
                s->link->duplicate_refusals++;
            }
        } else {
            trace(TRACE_WARN, "peer %s refused this node: %s", s->peer.id,
                  f.reason != NULL ? f.reason : "");
        }
        set_state(s, SESSION_STATE_CLOSING);
        tls_conn_close(conn, TS_ERR_AUTH, "refused by the peer");
        break;
    }
    codec_frame_release(&f);
}

static void on_close(struct tls_conn *conn, int code, const char *reason)
{
    enum conn_kind *kind = tls_conn_data(conn);
    if (*kind == CONN_KIND_LISTENER) {
        /* Accepted, never identified: a failed or refused handshake. */
        struct peer_mgr *lm = ((struct listener_tag *)(void *)kind)->m;
        if (code != 0) {
            lm->handshake_failures[code == TS_ERR_AUTH ? FAIL_CERT : FAIL_OTHER]++;
            trace(TRACE_WARN, "connection %s refused: %s", tls_conn_peer_addr(conn),
                  reason != NULL ? reason : "");
        }
        return;
    }
    struct session *s = (struct session *)(void *)kind;
    struct peer_mgr *m = s->m;
    if (s->info != NULL && s->info->session == s) {
        trace(code == 0 ? TRACE_INFO : TRACE_WARN, "peer %s: disconnected: %s", s->info->id,
              reason != NULL ? reason : "closed");
        /* At stop the node (and its store) may be gone by now:
         * peer_mgr_stop kept every link's end already. */
        if (!m->stopping) {
            event_add(s->info, node_now_ms(), false, reason != NULL ? reason : "closed");
            seen_save(m, s->info);
        }
    }
    else if (s->state == SESSION_STATE_HANDSHAKE && code != 0)
        trace(TRACE_WARN, "connection %s refused: %s", tls_conn_peer_addr(conn),
              reason != NULL ? reason : "");
    if (s->state == SESSION_STATE_HANDSHAKE && code == TS_ERR_AUTH)
        m->handshake_failures[FAIL_CERT]++;
    struct outlink *link = s->link;
    bool streamed = s->streamed;
    if (link == NULL && s->peer.role == PKI_ROLE_HUB && s->info != NULL) {
        /* The kept link from that hub is gone: our own may try again. */
        for (int i = 0; i < m->links_count; i++) {
            if (m->links[i].parked && strcmp(m->links[i].peer_id, s->peer.id) == 0) {
                m->links[i].parked = false;
                m->links[i].next_attempt_ms = link_clock_ms(m);
            }
        }
    }
    session_free(s);
    if (link != NULL && !m->stopping) {
        uint64_t now = link_clock_ms(m);
        /* Only a link that exchanged hellos resets the backoff (on_hello);
         * a refusal or a failed handshake makes the next attempt wait longer. */
        if (!streamed)
            link->failures++;
        if ((code != 0 || !streamed) && link->addrs_count > 1)
            link->current = (link->current + 1) % link->addrs_count;  /* fail over */
        unsigned shift = link->failures < 6 ? link->failures : 6;
        uint64_t delay = (uint64_t)PEER_RECONNECT_MIN_MS << shift;
        if (delay > PEER_RECONNECT_MAX_MS)
            delay = PEER_RECONNECT_MAX_MS;
        if (link->duplicate)
            delay = link->duplicate_refusals <= 1 ? PEER_DUPLICATE_RETRY_MS
                                                  : PEER_DUPLICATE_BACKOFF_MS;
        link->duplicate = false;
        uint8_t r = 0;
        crypto_random(&r, 1);
        delay = delay / 2 + (delay / 2) * r / 255;  /* jitter: half to all of it */
        link->next_attempt_ms = m->self_revoked ? UINT64_MAX : now + delay;
    }
}

static const struct tls_conn_cbs session_cbs = {
    .on_handshake = on_handshake,
    .on_frame = on_frame,
    .on_close = on_close,
    .on_drain = NULL,
};

/* ---- outgoing links ------------------------------------------------------------ */

static void link_connect(struct outlink *link)
{
    struct peer_mgr *m = link->m;
    struct ts_error err = {0};
    const struct config_addr *a = &link->addrs[link->current];
    struct session *s = session_new(m, link);
    if (s == NULL)
        return;
    struct tls_conn_opts opts;
    tls_conn_opts_default(&opts);
    if (tls_connect(m->node->loop, m->tls, a->host, a->port, &opts, &session_cbs, s,
                    &s->conn, &err) != 0) {
        trace(TRACE_WARN, "cannot connect to %s:%u: %s", a->host, a->port, err.msg);
        session_free(s);
        link->failures++;
        link->next_attempt_ms = link_clock_ms(m) + PEER_RECONNECT_MAX_MS;
        return;
    }
    link->session = s;
    trace(TRACE_DEBUG, "connecting to %s:%u", a->host, a->port);
}

/* ---- the tick ------------------------------------------------------------------- */

static void crl_stamp_set(struct crl_stamp *c, const struct stat *st)
{
    c->dev = st->st_dev;
    c->ino = st->st_ino;
    c->size = st->st_size;
    c->mtim = st->st_mtim;
}

static bool crl_stamp_same(const struct crl_stamp *c, const struct stat *st)
{
    return c->dev == st->st_dev && c->ino == st->st_ino && c->size == st->st_size &&
           c->mtim.tv_sec == st->st_mtim.tv_sec && c->mtim.tv_nsec == st->st_mtim.tv_nsec;
}

/* Picks up a CRL file that changed on disk (an admin revoked a certificate). */
static void reload_crl_if_changed(struct peer_mgr *m)
{
    struct stat st;
    if (m->node->cfg.crl[0] == '\0' || stat(m->node->cfg.crl, &st) != 0)
        return;
    /* Seconds are not enough: a CRL renewed within the second it was last
     * loaded (a revocation right after a start or another renewal) must
     * still be picked up; the file is replaced by rename(), so its inode
     * changes too. */
    if (crl_stamp_same(&m->crl_stamp, &st))
        return;
    unsigned cut = 0;
    struct ts_error err = {0};
    if (tls_ctx_reload_crl(m->tls, m->node->cfg.crl, &cut, &err) != 0) {
        trace(TRACE_WARN, "revocation list %s not reloaded: %s", m->node->cfg.crl, err.msg);
        return;
    }
    crl_stamp_set(&m->crl_stamp, &st);
    trace(TRACE_INFO, "revocation list reloaded%s", cut > 0 ? ": revoked peers cut off" : "");
}

void peer_mgr_reload_crl(struct peer_mgr *m)
{
    if (m->node->cfg.crl[0] == '\0') {
        trace(TRACE_INFO, "no revocation list configured: nothing to reload");
        return;
    }
    /* Forget the stamp so the file is read even when it looks unchanged
     * (an admin who asks for a reload gets one). */
    memset(&m->crl_stamp, 0, sizeof(m->crl_stamp));
    reload_crl_if_changed(m);
}

static void tick_cb(uv_timer_t *t)
{
    struct peer_mgr *m = container_of(t, struct peer_mgr, tick);
    uint64_t now = node_now_ms();

    reload_crl_if_changed(m);
    self_revocation_check(m);
    for (size_t i = 0; i < m->infos_count; i++) {
        struct peer_info *p = &m->infos[i];
        if (p->connected && p->last_seen_ms >= p->seen_saved_ms + PEER_SEEN_SAVE_MS)
            seen_save(m, p);
    }
    node_health_check(m->node);  /* disk low or back, a RocksDB background error */
    safety_tick(m->safety, m->node->wall_ms());
    enroll_node_tick(m->node);
    for (struct session *s = m->sessions, *next; s != NULL; s = next) {
        next = s->next;
        if (s->state != SESSION_STATE_STREAMING)
            continue;
        if (s->peer.role == PKI_ROLE_SITE && member_revoked(m, s->peer.id)) {
            session_refuse(s, FAIL_REVOKED, "site %s has been revoked", s->peer.id);
            continue;
        }
        /* A chain dropped from the to-do list after a failed read or send
         * comes back here, so no chain stalls on a link. */
        for (size_t c = 0; c < m->chains_count; c++)
            if (m->chains[c].head > s->sent[c] && !s->queued[c])
                todo_push(s, (uint32_t)c);
        if (now - s->last_send_ms >= PEER_KEEPALIVE_MS) {
            struct frame ka;
            memset(&ka, 0, sizeof(ka));
            ka.type = FRAME_ACK;
            send_frame(s, &ka);
        }
        session_pump(s);
    }
    for (int i = 0; i < m->links_count; i++) {
        struct outlink *link = &m->links[i];
        if (link->session == NULL && !link->parked && !m->self_revoked &&
            link_clock_ms(m) >= link->next_attempt_ms)
            link_connect(link);
    }
}

static unsigned schema_role_of(enum pki_role role)
{
    switch (role) {
    case PKI_ROLE_SITE:
        return SCHEMA_ROLE_SITE;
    case PKI_ROLE_HUB:
        return SCHEMA_ROLE_HUB;
    case PKI_ROLE_ADMIN:
        return SCHEMA_ROLE_ADMIN;
    }
    return 0;
}

static unsigned lookup_origin_role(void *ctx, const char *origin)
{
    struct peer_mgr *m = ctx;
    if (strcmp(origin, m->node->cfg.id) == 0)
        return schema_role_of(m->node->cfg.role);
    struct origin_key *ok = origin_key(m, origin, NULL);
    return ok != NULL ? schema_role_of(ok->role) : 0;
}

/* The displayed value of a field held here, copied into buf. */
static int lookup_field(struct peer_mgr *m, const char *type, const char *id, const char *field,
                        char *buf, size_t cap)
{
    struct field_state st;
    int rc = store_field_get(m->node->store, type, id, field, &st);
    if (rc != 0)
        return rc;
    int i = merge_display(type, field, &st);
    rc = TS_ERR_NOTFOUND;
    if (i >= 0 && strlen(st.live[i].value) < cap) {
        memcpy(buf, st.live[i].value, strlen(st.live[i].value) + 1);
        rc = 0;
    }
    field_state_release(&st);
    return rc;
}

/* A query's target is write-once and only the CRO writes it, so the value
 * held is the one its creating entry wrote. */
static int lookup_query_target(void *ctx, const char *id, char *buf, size_t cap)
{
    return lookup_field(ctx, SCHEMA_QUERY_TYPE, id, "target", buf, cap);
}

static int lookup_query_round(void *ctx, const char *id, uint32_t *round)
{
    char buf[16];
    int rc = lookup_field(ctx, SCHEMA_QUERY_TYPE, id, "round", buf, sizeof(buf));
    if (rc != 0)
        return rc;
    char *end = NULL;
    unsigned long v = strtoul(buf, &end, 10);
    if (end == buf || *end != '\0' || v == 0 || v > UINT32_MAX)
        return TS_ERR_CORRUPT;
    *round = (uint32_t)v;
    return 0;
}

/* validate_lookup.user_info: a user's role and site are write-once, so the
 * values held are the ones the creating entry wrote. */
static int lookup_user_info(void *ctx, const char *user, enum schema_user_role *role,
                            char site[TS_ID_BYTES_MAX + 1])
{
    char buf[TS_ID_BYTES_MAX + 1];
    int rc = lookup_field(ctx, SCHEMA_USER_TYPE, user, "role", buf, sizeof(buf));
    if (rc != 0)
        return rc;
    *role = schema_user_role_find(buf);
    if (*role == USER_ROLE_NONE)
        return TS_ERR_CORRUPT;
    site[0] = '\0';
    rc = lookup_field(ctx, SCHEMA_USER_TYPE, user, "site", site, TS_ID_BYTES_MAX + 1);
    return rc == TS_ERR_NOTFOUND ? 0 : rc;
}

/* validate_lookup.lock_targets: every version of a lock epoch held here. */
static int lookup_lock_targets(void *ctx, const char *subject, uint64_t epoch, char *buf,
                               size_t cap)
{
    struct peer_mgr *m = ctx;
    return lockview_epoch_targets(m->node->store, subject, epoch, buf, cap);
}

/*
 * The admission of every entry the store is about to apply, written here or
 * received from any peer on any hop: validate_entry with the origin's role
 * from its certificate (DESIGN.md §1).
 */
/* validate_lookup.crl_check: the revocation list is signed by the trial CA. */
static int lookup_crl_check(void *ctx, const char *pem, int64_t *number, char *why,
                            size_t why_cap)
{
    struct peer_mgr *m = ctx;
    struct ts_error err = {0};
    int rc = pki_crl_check(m->ca_pem, m->ca_len, pem, strlen(pem), number, &err);
    if (rc != 0)
        snprintf(why, why_cap, "%s", err.msg);
    return rc;
}

/* validate_lookup.enroll_view: the node's ledger of slots. */
static int lookup_enroll_view(void *ctx, const struct entry *e, struct enroll_view *out)
{
    struct peer_mgr *m = ctx;
    return enroll_node_view(m->node, e, out);
}

static int entry_check_cb(void *ctx, const struct entry *e, struct ts_error *err)
{
    struct peer_mgr *m = ctx;
    unsigned role = lookup_origin_role(m, e->origin);
    if (role == 0)
        return ts_error_set(err, TS_ERR_AUTH, "origin %s is unknown", e->origin);
    if (m->applying_revoked_ms != 0 && e->wall_ms > m->applying_revoked_ms) {
        snprintf(m->refused_rule, sizeof(m->refused_rule), "revoked");
        return ts_error_set(err, TS_ERR_AUTH,
                            "%s/%s/%" PRIu64 " (%s %s) refused by rule 'revoked': signed with "
                            "certificate %s of %s, revoked at %" PRIu64 " s, but stamped %" PRIu64
                            " ms",
                            e->origin, e->lane == LANE_SAFETY ? "safety" : "bulk", e->seq,
                            e->record_type, e->record_id, m->applying_serial, e->origin,
                            m->applying_revoked_ms / 1000, e->wall_ms);
    }
    struct validate_lookup lk = {
        .query_target = lookup_query_target,
        .query_round = lookup_query_round,
        .origin_role = lookup_origin_role,
        .crl_check = lookup_crl_check,
        .user_info = lookup_user_info,
        .lock_targets = lookup_lock_targets,
        .enroll_view = lookup_enroll_view,
        .ctx = m,
        .now_ms = 0,
        .skew_ms = m->node->cfg.clock_skew_max_ms,
    };
    /* The clock bound is for others' entries: this node's own follow its own
     * clock.  An entry at or below this node's clock moves nothing, so the
     * bound counts from the later of the wall clock and the clock's last
     * timestamp (a wall clock stepped back does not refuse honest peers). */
    if (strcmp(e->origin, m->node->cfg.id) != 0) {
        uint64_t now = node_now_ms(), last = hlc_ms(m->node->clock.last);
        lk.now_ms = now > last ? now : last;
    }
    struct validate_error verr;
    int rc = validate_entry(e, role, &lk, &verr);
    if (rc == 0) {
        enroll_node_note(m->node, e);
        return 0;
    }
    snprintf(m->refused_rule, sizeof(m->refused_rule), "%s", verr.rule);
    return ts_error_set(err, rc, "%s/%s/%" PRIu64 " (%s %s) %s by rule '%s': %s", e->origin,
                        e->lane == LANE_SAFETY ? "safety" : "bulk", e->seq, e->record_type,
                        e->record_id, rc == TS_ERR_AGAIN ? "held back" : "refused", verr.rule,
                        verr.msg);
}

static void on_safety_entry(void *ctx, const struct entry *e)
{
    struct peer_mgr *m = ctx;
    safety_local_commit(m->safety, e, m->node->wall_ms());
    crl_entry_applied(m, e);
}

/* The node committed local writes: its own chains advanced. */
static void on_commit(void *ctx)
{
    struct peer_mgr *m = ctx;
    for (uint8_t lane = 0; lane < LANE_COUNT; lane++) {
        uint64_t head = 0;
        uint8_t hash[TS_HASH_BYTES];
        store_head(m->node->store, m->node->cfg.id, lane, &head, hash);
        int idx = chain_get(m, m->node->cfg.id, lane);
        chain_advanced(m, idx, head);
    }
}

/* ---- status ---------------------------------------------------------------------- */

static int member_cb(void *ctx, const char *type, const char *id)
{
    struct peer_mgr *m = ctx;
    (void)type;
    info_get(m, id, PKI_ROLE_SITE);
    return 0;
}

/* Open conflicts per site, by the site prefix of the record key. */
struct site_conflicts {
    json_t *counts;   /* {site: n} */
};

static int site_conflict_cb(void *ctx, const char *type, const char *id, const char *field,
                            const struct field_state *st)
{
    struct site_conflicts *sc = ctx;
    char site[TS_ID_BYTES_MAX + 1];
    (void)field;
    (void)st;
    if (validate_scope(type, id, NULL, 0, NULL, NULL, site) != 0 || site[0] == '\0')
        return 0;
    json_t *n = json_object_get(sc->counts, site);
    json_object_set_new(sc->counts, site, json_integer(json_integer_value(n) + 1));
    return 0;
}

/*
 * One row of the status's "peers": what this node knows of peer p.  sum is
 * the node's SAE summary; conflict_counts maps a site id to its open
 * conflicts.  Returns a new reference.
 */
static json_t *peer_status_row(struct peer_mgr *m, const struct peer_info *p,
                               const struct safety_summary *sum, const json_t *conflict_counts)
{
    struct session *s = p->session;
    uint64_t behind_send[LANE_COUNT] = {0}, behind_recv[LANE_COUNT] = {0};
    if (s != NULL && s->state == SESSION_STATE_STREAMING) {
        for (size_t c = 0; c < m->chains_count; c++) {
            const struct chain *ch = &m->chains[c];
            if (ch->head > s->acked[c] && send_rule(s, ch) != SEND_NONE)
                behind_send[ch->lane] += ch->head - s->acked[c];
            if (s->advertised[c] > ch->head && recv_allowed(s, ch))
                behind_recv[ch->lane] += s->advertised[c] - ch->head;
        }
    }
    char seen[40];
    if (p->last_seen_ms != 0)
        api_format_time(p->last_seen_ms, seen, sizeof(seen));
    uint64_t now = m->node->wall_ms();
    /* SAEs in flight on this link: at a hub, the site's safety entries
     * not yet here; at a site, its SAEs no hub has acknowledged. */
    uint64_t saes = behind_recv[LANE_SAFETY];
    if (m->node->cfg.role == PKI_ROLE_SITE && p->role == PKI_ROLE_HUB)
        saes = sum->in_flight;
    json_t *row = json_pack(
        "{s:s,s:s,s:b,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b}", "id", p->id, "role",
        pki_role_name(p->role), "connected", p->connected,
        "last_seen", p->last_seen_ms != 0 ? json_string(seen) : json_null(),
        "behind_send_safety", (json_int_t)behind_send[LANE_SAFETY], "behind_send_bulk",
        (json_int_t)behind_send[LANE_BULK], "behind_recv_safety",
        (json_int_t)behind_recv[LANE_SAFETY], "behind_recv_bulk",
        (json_int_t)behind_recv[LANE_BULK], "entries_sent", (json_int_t)p->entries_sent,
        "entries_received", (json_int_t)p->entries_received, "bytes_sent",
        (json_int_t)p->bytes_sent, "bytes_received", (json_int_t)p->bytes_received,
        "batches_refused", (json_int_t)p->batches_refused, "revoked",
        p->role == PKI_ROLE_SITE && member_revoked(m, p->id));
    json_object_set_new(row, "saes_in_flight", json_integer((json_int_t)saes));
    /* The site's name from its member record: null when it has none. */
    char name[PEER_NAME_BYTES_MAX];
    member_name(m, p->id, name, sizeof(name));
    json_object_set_new(row, "name", name[0] != '\0' ? json_string(name) : json_null());
    json_t *refused = json_object();
    for (size_t r = 0; r < ADMIT_RULES_COUNT; r++) {
        if (p->entries_refused[r] > 0)
            json_object_set_new(refused, admit_rule_names[r],
                                json_integer((json_int_t)p->entries_refused[r]));
    }
    json_object_set_new(row, "entries_refused", refused);
    json_object_set_new(row, "batches_held", json_integer((json_int_t)p->batches_held));
    json_object_set_new(row, "clock_offset_ms",
                        p->clock_known ? json_integer((json_int_t)p->clock_offset_ms)
                                       : json_null());
    /* Conflicts on the site's records (at a site, on its own: the hub row). */
    const char *key = p->role == PKI_ROLE_SITE ? p->id : m->node->cfg.id;
    json_object_set_new(row, "conflicts",
                        json_integer(json_integer_value(json_object_get(conflict_counts, key))));
    const struct peer_event *down = event_last(p, false);
    json_object_set_new(row, "last_disconnect_reason",
                        down != NULL ? json_string(down->reason) : json_null());
    char down_at[40];
    if (down != NULL)
        api_format_time(down->at_ms, down_at, sizeof(down_at));
    json_object_set_new(row, "last_disconnect",
                        down != NULL ? json_string(down_at) : json_null());
    json_object_set_new(row, "last_seen_ms",
                        p->last_seen_ms != 0 ? json_integer((json_int_t)p->last_seen_ms)
                                             : json_null());
    json_object_set_new(row, "last_seen_age_s",
                        p->last_seen_ms != 0 && now >= p->last_seen_ms
                            ? json_integer((json_int_t)((now - p->last_seen_ms) / 1000))
                            : json_null());
    return row;
}

/*
 * A hub this node dials (an outlink) is in the peers before its first
 * handshake, so a restarted site exports its hub-link series (connected 0)
 * at once and "hub link down" can fire.  Until a handshake names the hub
 * its "host:port" stands for its id, one row per configured address, marked
 * "id_pending"; after it, the hub's own row replaces them.
 */
static void status_add_pending_hubs(struct peer_mgr *m, json_t *peers,
                                    const struct safety_summary *sum,
                                    const json_t *conflict_counts)
{
    for (int l = 0; l < m->links_count; l++) {
        const struct outlink *link = &m->links[l];
        if (link->peer_id[0] != '\0')
            continue;
        for (int a = 0; a < link->addrs_count; a++) {
            /* A host name may be longer than an id: the row's id is replaced. */
            char addr[sizeof(link->addrs[a].host) + 8];
            bool v6 = strchr(link->addrs[a].host, ':') != NULL;
            snprintf(addr, sizeof(addr), "%s%s%s:%u", v6 ? "[" : "", link->addrs[a].host,
                     v6 ? "]" : "", (unsigned)link->addrs[a].port);
            struct peer_info pending;
            memset(&pending, 0, sizeof(pending));
            pending.role = PKI_ROLE_HUB;
            json_t *row = peer_status_row(m, &pending, sum, conflict_counts);
            json_object_set_new(row, "id", json_string(addr));
            json_object_set_new(row, "id_pending", json_true());
            json_array_append_new(peers, row);
        }
    }
}

static void status_extend(void *ctx, json_t *status)
{
    struct peer_mgr *m = ctx;
    json_t *peers = json_object_get(status, "peers");
    struct safety_summary sum;
    safety_summarize(m->safety, m->node->wall_ms(), &sum);
    json_object_set_new(status, "sae",
                        json_pack("{s:I,s:I,s:I,s:I,s:I}", "tracked", (json_int_t)sum.tracked,
                                  "in_flight", (json_int_t)sum.in_flight,
                                  "late", (json_int_t)sum.late, "at_risk",
                                  (json_int_t)sum.at_risk, "alarms", (json_int_t)sum.alarms));
    if (m->node->cfg.role == PKI_ROLE_HUB)
        store_records(m->node->store, MEMBER_TYPE, member_cb, m);  /* every site, even offline */
    struct site_conflicts sc = {.counts = json_object()};
    struct store_page page = {.limit = PEER_STATUS_CONFLICTS_MAX};
    store_conflicts_page(m->node->store, &page, site_conflict_cb, &sc);
    json_object_set_new(status, "site_conflicts_partial", json_boolean(page.next_len > 0));
    for (size_t i = 0; i < m->infos_count; i++)
        json_array_append_new(peers, peer_status_row(m, &m->infos[i], &sum, sc.counts));
    status_add_pending_hubs(m, peers, &sum, sc.counts);
    json_decref(sc.counts);
    json_t *fails = json_object();
    for (size_t i = 0; i < ARRAY_LEN(failure_reason_names); i++)
        json_object_set_new(fails, failure_reason_names[i],
                            json_integer((json_int_t)m->handshake_failures[i]));
    json_object_set_new(status, "handshake_failures", fails);
    json_t *clock = json_pack("{s:b,s:I}", "alarm", m->clock_alarm, "skew_max_ms",
                              (json_int_t)m->node->cfg.clock_skew_max_ms);
    if (m->clock_alarm) {
        json_object_set_new(clock, "hub", json_string(m->clock_alarm_hub));
        json_object_set_new(clock, "offset_ms", json_integer((json_int_t)m->clock_alarm_offset_ms));
    }
    json_object_set_new(status, "clock", clock);
    /* Hub: identities two nodes were seen using at once; alarm while the
     * last refusal is recent. */
    json_t *dups = json_array();
    uint64_t now_ms = node_now_ms();
    for (size_t i = 0; i < m->duplicates_count; i++) {
        const struct duplicate *d = &m->duplicates[i];
        char last[40];
        api_format_time(d->last_ms, last, sizeof(last));
        json_array_append_new(
            dups, json_pack("{s:s,s:I,s:s,s:s,s:s,s:b}", "site", d->id, "refused",
                            (json_int_t)d->refused, "last", last, "refused_addr", d->addr,
                            "kept_addr", d->kept_addr, "alarm",
                            now_ms - d->last_ms < PEER_DUPLICATE_ALARM_MS));
    }
    json_object_set_new(status, "duplicate_identity", dups);
}

/* ---- start / stop ---------------------------------------------------------------- */

static int load_chains(struct peer_mgr *m)
{
    struct vv_item *vv = NULL;
    size_t count = 0;
    int rc = store_vv(m->node->store, &vv, &count);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < count; i++) {
        int idx = chain_get(m, vv[i].origin, vv[i].lane);
        if (idx >= 0)
            m->chains[idx].head = vv[i].seq;
    }
    free(vv);
    for (uint8_t lane = 0; lane < LANE_COUNT; lane++)
        chain_get(m, m->node->cfg.id, lane);
    return 0;
}

int peer_mgr_start(struct peer_mgr **out, struct node *n, struct ts_error *err)
{
    const struct config *cfg = &n->cfg;
    struct peer_mgr *m = calloc(1, sizeof(*m));
    int rc;

    if (m == NULL)
        return ts_error_set(err, TS_ERR_NOMEM, "out of memory");
    m->node = n;
    m->origins = calloc(PEER_ORIGINS_MAX, sizeof(*m->origins));
    m->infos = calloc(PEER_INFOS_MAX, sizeof(*m->infos));
    if (m->origins == NULL || m->infos == NULL) {
        rc = ts_error_set(err, TS_ERR_NOMEM, "out of memory");
        goto out_free;
    }
    rc = pki_read_file(cfg->ca, &m->ca_pem, &m->ca_len, err);
    if (rc != 0)
        goto out_free;
    struct tls_ctx_config tc = {
        .trial = cfg->trial,
        .ca_path = cfg->ca,
        .cert_path = cfg->cert,
        .key_path = cfg->key,
        .crl_path = NULL,
    };
    struct stat st;
    if (cfg->crl[0] != '\0' && stat(cfg->crl, &st) == 0) {
        tc.crl_path = cfg->crl;
        crl_stamp_set(&m->crl_stamp, &st);
    }
    rc = tls_ctx_new(&tc, &m->tls, err);
    if (rc != 0)
        goto out_free;
    crl_load_in_force(m);
    m->self_crl_checked = -2;  /* no CRL number: the first one in force is searched */
    /* This node's own certificate: its batches are verified like any
     * origin's (a chain restored from a hub), by (origin, serial). */
    if (origin_learn(m, cfg->id, n->cert_pem, strlen(n->cert_pem), false, err) == NULL) {
        rc = TS_ERR_CONFIG;
        goto out_free_tls;
    }
    rc = load_chains(m);
    if (rc != 0) {
        ts_error_set(err, rc, "reading the version vector failed");
        goto out_free_tls;
    }
    if (cfg->peer_listen_set) {
        struct tls_conn_opts opts;
        tls_conn_opts_default(&opts);
        m->listener_tag.kind = CONN_KIND_LISTENER;
        m->listener_tag.m = m;
        rc = tls_listen(n->loop, m->tls, cfg->peer_listen.host, cfg->peer_listen.port, 0, &opts,
                        &session_cbs, &m->listener_tag, &m->listener, err);
        if (rc != 0) {
            struct ts_error inner = *err;
            ts_error_set(err, rc, "cannot listen for peers on %s:%u: %s",
                         cfg->peer_listen.host, cfg->peer_listen.port, inner.msg);
            goto out_free_tls;
        }
    }
    if (cfg->role == PKI_ROLE_SITE && cfg->hubs_count > 0) {
        struct outlink *l = &m->links[m->links_count++];
        l->m = m;
        for (int i = 0; i < cfg->hubs_count; i++)
            l->addrs[l->addrs_count++] = cfg->hubs[i];
    } else if (cfg->role == PKI_ROLE_HUB) {
        for (int i = 0; i < cfg->hubs_count; i++) {
            struct outlink *l = &m->links[m->links_count++];
            l->m = m;
            l->addrs[0] = cfg->hubs[i];
            l->addrs_count = 1;
        }
    }
    rc = safety_open(&m->safety, n);
    if (rc != 0) {
        ts_error_set(err, rc, "cannot load the SAE list");
        goto out_free_tls;
    }
    n->on_commit = on_commit;
    n->on_commit_ctx = m;
    n->on_safety_entry = on_safety_entry;
    n->on_safety_entry_ctx = m;
    store_set_entry_check(n->store, entry_check_cb, m);
    uv_timer_init(n->loop, &m->tick);
    uv_timer_start(&m->tick, tick_cb, 0, PEER_TICK_MS);
    if (m->listener != NULL)
        trace(TRACE_INFO, "listening for peers on %s:%d", cfg->peer_listen.host,
              tls_listener_port(m->listener));
    *out = m;
    return 0;

out_free_tls:
    tls_ctx_free(m->tls);
out_free:
    for (size_t i = 0; i < m->origins_count; i++) {
        crypto_pubkey_free(m->origins[i].pubkey);
        free(m->origins[i].cert);
    }
    free(m->crl_pem);
    free(m->ca_pem);
    free(m->origins);
    free(m->infos);
    free(m);
    return rc;
}

static void tick_closed_cb(uv_handle_t *h)
{
    struct peer_mgr *m = container_of((uv_timer_t *)h, struct peer_mgr, tick);
    (void)m;
}

void peer_mgr_stop(struct peer_mgr *m)
{
    if (m == NULL || m->stopping)
        return;
    m->stopping = true;
    /* Each link's end is kept now, while the store is open (on_close runs
     * later, maybe after the node is freed). */
    for (size_t i = 0; i < m->infos_count; i++) {
        struct peer_info *p = &m->infos[i];
        if (!p->connected || m->node->store == NULL)
            continue;
        event_add(p, node_now_ms(), false, "this node stopped");
        seen_save(m, p);
    }
    m->node->on_commit = NULL;
    m->node->on_safety_entry = NULL;
    if (m->node->store != NULL)
        store_set_entry_check(m->node->store, NULL, NULL);
    uv_timer_stop(&m->tick);
    uv_close((uv_handle_t *)&m->tick, tick_closed_cb);
    if (m->listener != NULL)
        tls_listener_close(m->listener);
    for (struct session *s = m->sessions; s != NULL; s = s->next) {
        if (s->state != SESSION_STATE_CLOSING) {
            set_state(s, SESSION_STATE_CLOSING);
            tls_conn_close(s->conn, 0, "node stopping");
        }
    }
}

void peer_mgr_free(struct peer_mgr *m)
{
    if (m == NULL)
        return;
    assert(m->sessions == NULL);
    tls_ctx_free(m->tls);
    for (size_t i = 0; i < m->origins_count; i++) {
        crypto_pubkey_free(m->origins[i].pubkey);
        free(m->origins[i].cert);
    }
    free(m->origins);
    free(m->infos);
    free(m->chains);
    free(m->crl_pem);
    free(m->ca_pem);
    safety_free(m->safety);
    free(m);
}

static json_t *saes_json(void *ctx, const char *site, size_t from, size_t limit, size_t *next)
{
    struct peer_mgr *m = ctx;
    return safety_json_page(m->safety, m->node->wall_ms(), site, from, limit, next);
}

/*
 * GET /v1/sites/ID: the per-site page's own part: the peer's status row (as
 * /v1/status has it: name, state, last seen, lag now, SAEs in flight,
 * conflicts) and its recent connects and disconnects ("events", oldest
 * first, at most PEER_EVENTS_MAX).  Its SAEs, queries and conflicts are the
 * paged lists with ?site=ID.  A site of the membership log that never
 * connected is known too (a hub); an id no one knows is 404.
 */
static int route(void *ctx, const char *path, const char *query, struct api_response *res)
{
    struct peer_mgr *m = ctx;
    static const char prefix[] = "/v1/sites/";
    (void)query;
    if (strncmp(path, prefix, sizeof(prefix) - 1) != 0)
        return 0;
    const char *id = path + sizeof(prefix) - 1;
    struct peer_info *p = NULL;
    for (size_t i = 0; i < m->infos_count && p == NULL; i++)
        if (strcmp(m->infos[i].id, id) == 0)
            p = &m->infos[i];
    if (p == NULL && m->node->cfg.role == PKI_ROLE_HUB && schema_id_ok(id) &&
        store_record_exists(m->node->store, MEMBER_TYPE, id))
        p = info_get(m, id, PKI_ROLE_SITE);
    json_t *out;
    if (p == NULL) {
        res->status = 404;
        out = json_pack("{s:s}", "error", "no site or peer with that id is known to this node");
    } else {
        struct safety_summary sum;
        safety_summarize(m->safety, m->node->wall_ms(), &sum);
        /* The site's conflict count: a bounded walk, as in the status. */
        struct site_conflicts sc = {.counts = json_object()};
        struct store_page page = {.limit = PEER_STATUS_CONFLICTS_MAX};
        store_conflicts_page(m->node->store, &page, site_conflict_cb, &sc);
        json_t *row = peer_status_row(m, p, &sum, sc.counts);
        json_decref(sc.counts);
        json_object_set_new(row, "conflicts_partial", json_boolean(page.next_len > 0));
        res->status = 200;
        out = json_pack("{s:s,s:o,s:o,s:I}", "node", m->node->cfg.id, "peer", row, "events",
                        events_json(p), "events_max", (json_int_t)PEER_EVENTS_MAX);
    }
    res->content_type = "application/json";
    res->body = out != NULL ? json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(out);
    if (res->body == NULL) {
        res->status = 500;
        return 1;
    }
    res->len = strlen(res->body);
    return 1;
}

void peer_mgr_api_hooks(struct peer_mgr *m, struct api_hooks *hooks)
{
    hooks->status_extend = status_extend;
    hooks->saes = saes_json;
    hooks->route = route;
    hooks->ctx = m;
}

void peer_mgr_on_applied(struct peer_mgr *m,
                         void (*cb)(void *ctx, const struct entry *e, uint64_t now_ms), void *ctx)
{
    m->on_applied = cb;
    m->on_applied_ctx = ctx;
}
