/*
 * ts_evil_peer: a hostile replication peer for the fault suite
 * (tests/fault/test_hostile_peers.sh).
 *
 *   ts_evil_peer MODE NODEDIR HOST PORT [ARG...]
 *
 * NODEDIR holds the identity to use: node.crt, node.key, ca.crt (a site
 * bundle, a hub directory, the admin directory).  The tool connects to a
 * hub's peer port over the node's own TLS layer (node/tls.h), sends a Hello
 * like a real node (its trial and id, protocol version 1, an empty vector),
 * waits for the hub's Hello, then misbehaves as MODE says:
 *
 *   valid          a well-formed batch of its own entries, seq 1..3
 *   other-origin   a batch signed with its key whose origin is ARG (default 101)
 *   tampered       its own batch 1..3 with one byte of entry 2's value
 *                  changed after signing
 *   bad-signature  its own batch 1..3, the signature's bytes flipped
 *   replay         batch 1..3, and once acked the very same frame again: the
 *                  hub must ack it as duplicates
 *   fork           batch 1..3, and once acked a different batch 2..3
 *   malformed      a frame of random bytes
 *   other-scope    its own origin, but writing subject ARG-0001 of site ARG
 *                  (another site's patient record)
 *   forge-member   its own origin, a membership entry marking site ARG revoked
 *   oversized      a 64 MiB length prefix (raw OpenSSL: tls.h refuses to
 *                  send a frame above TS_FRAME_BYTES_MAX)
 *   stall          ARG connections (default 200) that never send a byte,
 *                  held ARG2 seconds (default 12), from source address ARG3
 *                  (default 127.0.0.2, so a per-address cap on the hub can
 *                  tell them from real peers on 127.0.0.1)
 *   craft          one entry said in full on the command line, continuing
 *                  the node's REAL chain (a hostile site, not a stranger):
 *
 *       ts_evil_peer craft NODEDIR HOST PORT TYPE ID [OPTION...] FIELD=VALUE...
 *
 *                  NODEDIR is a (stopped) node's directory: its node.conf
 *                  names the store, which is opened read-only in effect
 *                  (store_head of the entry's lane: seq + 1 and prev_hash;
 *                  store_hlc_max for a default HLC above anything held) and
 *                  closed before connecting.  The batch is signed with the
 *                  node's own key, so the hub sees a genuine, well-chained
 *                  batch of that site; only what the entry says is hostile.
 *                  Options: --site S (scope; default the node's id, "-" for
 *                  ""), --lane safety|bulk (default bulk), --hlc N, --wall MS
 *                  (default: now, and an HLC above now and the store's max),
 *                  --user U (default integration:coordinator), --reason R (default ""),
 *                  --supersedes ORIGIN/LANE/SEQ (on every write; repeatable).
 *                  TS_EVIL_ANSWER_MS sets how long to wait for an answer.
 *                  Exit 0 refused or closed, 1 acked, 3 held back (a
 *                  refusal of the chain with a retry: not yet admissible).
 *
 * Entries are realistic: record_type subject, record_id <site>-00NN, site
 * scope <site>, writes site=<site> and sex=F, a user, a non-zero HLC, lane
 * bulk, prev_hash chaining, signed with NODEDIR/node.key over
 * codec_batch_sign_bytes.
 *
 * TS_EVIL_WALL_MS in the environment pins the entries' wall clock (and so
 * their HLC): two runs then build byte-identical batches, which is how the
 * suite replays a batch on a new connection.
 *
 * Output: one line per event ("hello: ...", "sent: ...", "ack: ...",
 * "refused: <the hub's Refusal reason>", "closed: <reason>"), then
 * "verdict: ...".  Exit status: 0 when the hub refused or closed the link
 * (for replay: when it acked the replayed batch as duplicates and nothing
 * moved; for stall: when it closed every stalled connection), 1 when it
 * accepted what it should have refused (or kept a stalled link, or never
 * answered), 2 on a usage or set-up error; craft: 3 when the hub neither
 * acked, refused nor closed (a batch it holds back).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "../../node/config.h"
#include "../../node/crypto.h"
#include "../../node/pki.h"
#include "../../node/tls.h"
#include "../../node/util.h"
#include "../../proto/codec.h"
#include "../../storage/store.h"

#define EVIL_ENTRIES 3
/* How long the hub has to answer what the tool sent. */
#define EVIL_ANSWER_MS 15000u
/* The length the oversized mode announces. */
#define EVIL_OVERSIZED_BYTES (64u * 1024 * 1024)
/* Garbage frame length for the malformed mode. */
#define EVIL_GARBAGE_BYTES 200
#define EVIL_STALL_MAX 4000
/* craft: writes and supersedes one entry may carry. */
#define EVIL_CRAFT_WRITES 16
#define EVIL_CRAFT_SUPERSEDES 4

enum mode {
    MODE_VALID,
    MODE_OTHER_ORIGIN,
    MODE_TAMPERED,
    MODE_BAD_SIGNATURE,
    MODE_REPLAY,
    MODE_FORK,
    MODE_MALFORMED,
    MODE_OTHER_SCOPE,
    MODE_FORGE_MEMBER,
    MODE_OVERSIZED,
    MODE_STALL,
    MODE_CRAFT,
};

static const struct {
    const char *name;
    enum mode mode;
} modes[] = {
    {"valid", MODE_VALID},
    {"other-origin", MODE_OTHER_ORIGIN},
    {"tampered", MODE_TAMPERED},
    {"bad-signature", MODE_BAD_SIGNATURE},
    {"replay", MODE_REPLAY},
    {"fork", MODE_FORK},
    {"malformed", MODE_MALFORMED},
    {"other-scope", MODE_OTHER_SCOPE},
    {"forge-member", MODE_FORGE_MEMBER},
    {"oversized", MODE_OVERSIZED},
    {"stall", MODE_STALL},
    {"craft", MODE_CRAFT},
};

enum verdict {
    VERDICT_NONE = -1,
    VERDICT_REFUSED = 0,   /* what the hub must do (replay: ack duplicates) */
    VERDICT_ACCEPTED = 1,  /* the hub took what it must not */
    VERDICT_ERROR = 2,     /* the tool could not do its part */
    VERDICT_HELD = 3,      /* craft: the hub held the batch back (not yet admissible) */
};

/* craft: the one entry to build, and where the real chain stands. */
struct craft {
    const char *type, *id, *site, *user, *reason;
    uint8_t lane;
    bool hlc_set, wall_set;
    uint64_t hlc, wall_ms;
    uint64_t lock_epoch;   /* --lock-epoch: the lock epoch the entry claims */
    const char *fields[EVIL_CRAFT_WRITES];
    const char *values[EVIL_CRAFT_WRITES];
    size_t writes_count;
    struct entry_ref supersedes[EVIL_CRAFT_SUPERSEDES];
    size_t supersedes_count;
    /* From the node's store. */
    uint64_t head_seq;
    uint8_t head_hash[TS_HASH_BYTES];
    uint64_t hlc_max;
    /* --then-legit: after the hub refuses the crafted chain, a legit entry on
     * the other lane, over the same link, must be acked (the link goes on). */
    bool then_legit;
    bool legit_sent;
    uint64_t other_head_seq;
    uint8_t other_head_hash[TS_HASH_BYTES];
};

/* A batch the tool built: encoded entries, the chain hash after the last, signed. */
struct evil_batch {
    char origin[TS_ID_BYTES_MAX + 1];
    uint8_t lane;
    uint64_t first_seq;
    size_t count;
    uint8_t *entries[EVIL_ENTRIES];
    size_t lens[EVIL_ENTRIES];
    uint8_t hash_before[TS_HASH_BYTES];
    uint8_t hash_after[EVIL_ENTRIES][TS_HASH_BYTES];
    uint8_t signature[TS_SIG_BYTES_MAX];
    size_t signature_len;
    bool with_cert;
};

struct evil {
    enum mode mode;
    const char *victim;              /* another site's id */
    struct pki_identity me;
    char crt_path[4096], key_path[4096], ca_path[4096];
    char *cert_pem;
    size_t cert_len;
    char cert_serial[TS_SERIAL_BYTES_MAX + 1];  /* named in every batch signed */
    struct crypto_key *key;

    uv_loop_t loop;
    uv_timer_t timer;
    struct tls_ctx *tls;
    struct tls_conn *conn;
    bool hello_seen;
    int acks;                        /* acks naming the batch last sent */
    char ack_origin[TS_ID_BYTES_MAX + 1];
    uint8_t ack_lane;
    uint64_t ack_seq;
    uint8_t *replay_frame;           /* replay: the exact bytes sent first */
    size_t replay_len;
    uint8_t chain1_hash[TS_HASH_BYTES];  /* fork: h(1) of the valid batch */

    enum verdict verdict;
    char outcome[1024];
    uint32_t answer_ms;
    struct craft craft;
};

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The entries' wall clock: TS_EVIL_WALL_MS when set, else now. */
static uint64_t entry_wall_ms(void)
{
    const char *pin = getenv("TS_EVIL_WALL_MS");
    if (pin != NULL && pin[0] != '\0') {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(pin, &end, 10);
        if (errno == 0 && *end == '\0' && v > 0 && v < (1ull << 47))
            return (uint64_t)v;
    }
    return now_ms();
}

/* Sets the verdict once; the first one stands. */
static void decide(struct evil *ev, enum verdict v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void decide(struct evil *ev, enum verdict v, const char *fmt, ...)
{
    if (ev->verdict != VERDICT_NONE)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ev->outcome, sizeof(ev->outcome), fmt, ap);
    va_end(ap);
    ev->verdict = v;
}

/* ---- entries and batches ------------------------------------------------ */

/* What one entry says, beyond its place in the chain. */
struct entry_spec {
    const char *origin;
    uint8_t lane;
    const char *type;
    char record_id[TS_ID_BYTES_MAX + 1];
    const char *site;                /* scope */
    const char *user;
    const char *reason;
    const char *fields[3];
    const char *values[3];
    size_t writes_count;
};

static int entry_build(const struct entry_spec *sp, uint64_t seq, uint64_t hlc,
                       const uint8_t prev[TS_HASH_BYTES], uint8_t **out, size_t *out_len)
{
    struct entry e;
    struct field_write w[3];
    char values[3][64];
    char user[64], reason[128];
    struct ts_error err = {0};

    memset(&e, 0, sizeof(e));
    memset(w, 0, sizeof(w));
    snprintf(e.origin, sizeof(e.origin), "%s", sp->origin);
    e.lane = sp->lane;
    e.seq = seq;
    e.hlc = hlc;
    e.wall_ms = hlc >> 16;
    snprintf(user, sizeof(user), "%s", sp->user);
    snprintf(reason, sizeof(reason), "%s", sp->reason);
    e.user = user;
    e.reason = reason;
    snprintf(e.record_type, sizeof(e.record_type), "%s", sp->type);
    snprintf(e.record_id, sizeof(e.record_id), "%s", sp->record_id);
    snprintf(e.site, sizeof(e.site), "%s", sp->site);
    for (size_t i = 0; i < sp->writes_count; i++) {
        snprintf(w[i].field, sizeof(w[i].field), "%s", sp->fields[i]);
        snprintf(values[i], sizeof(values[i]), "%s", sp->values[i]);
        w[i].value = values[i];
    }
    e.writes = w;
    e.writes_count = sp->writes_count;
    memcpy(e.prev_hash, prev, TS_HASH_BYTES);
    if (codec_entry_encode(&e, out, out_len, &err) != 0) {
        say("error: cannot encode an entry: %s", err.msg);
        return -1;
    }
    return 0;
}

/* The subject record NN of site: the usual first eCRF page. */
static void spec_subject(struct entry_spec *sp, const char *origin, const char *site, unsigned nn,
                         const char *sex)
{
    memset(sp, 0, sizeof(*sp));
    sp->origin = origin;
    sp->lane = LANE_BULK;
    sp->type = "subject";
    snprintf(sp->record_id, sizeof(sp->record_id), "%s-%04u", site, nn);
    sp->site = site;
    sp->user = "integration:coordinator";
    sp->reason = "";
    sp->fields[0] = "site";
    sp->values[0] = site;
    sp->fields[1] = "sex";
    sp->values[1] = sex;
    sp->writes_count = 2;
}

/*
 * Builds entries first_seq .. first_seq + count - 1 from specs, chained from
 * prev, and signs the batch with the tool's key (whatever its origin says).
 */
static int batch_build(struct evil *ev, struct evil_batch *b, const struct entry_spec *specs,
                       uint64_t first_seq, size_t count, const uint8_t prev[TS_HASH_BYTES])
{
    struct ts_error err = {0};
    uint8_t msg[CODEC_SIGN_BYTES_MAX];

    memset(b, 0, sizeof(*b));
    snprintf(b->origin, sizeof(b->origin), "%s", specs[0].origin);
    b->lane = specs[0].lane;
    b->first_seq = first_seq;
    b->count = count;
    memcpy(b->hash_before, prev, TS_HASH_BYTES);
    const uint8_t *h = prev;
    uint64_t hlc = entry_wall_ms() << 16;
    for (size_t i = 0; i < count; i++) {
        if (entry_build(&specs[i], first_seq + i, hlc + i, h, &b->entries[i], &b->lens[i]) != 0)
            return -1;
        crypto_chain_hash(h, b->entries[i], b->lens[i], b->hash_after[i]);
        h = b->hash_after[i];
    }
    int n = codec_batch_sign_bytes(ev->me.trial, b->origin, ev->cert_serial, b->lane,
                                   first_seq + count - 1, h, msg, sizeof(msg));
    if (n < 0) {
        say("error: cannot build the signed bytes");
        return -1;
    }
    if (crypto_sign(ev->key, msg, (size_t)n, b->signature, &b->signature_len, &err) != 0) {
        say("error: cannot sign: %s", err.msg);
        return -1;
    }
    b->with_cert = true;
    return 0;
}

static void batch_release(struct evil_batch *b)
{
    for (size_t i = 0; i < b->count; i++)
        free(b->entries[i]);
    memset(b, 0, sizeof(*b));
}

/* The frame body of b (malloc'ed). */
static int batch_frame(struct evil *ev, const struct evil_batch *b, uint8_t **out, size_t *len)
{
    struct frame f;
    struct ts_error err = {0};
    const uint8_t *entries[EVIL_ENTRIES];
    size_t lens[EVIL_ENTRIES];

    memset(&f, 0, sizeof(f));
    f.type = FRAME_BATCH;
    snprintf(f.batch.trial, sizeof(f.batch.trial), "%s", ev->me.trial);
    snprintf(f.batch.origin, sizeof(f.batch.origin), "%s", b->origin);
    f.batch.lane = b->lane;
    f.batch.first_seq = b->first_seq;
    for (size_t i = 0; i < b->count; i++) {
        entries[i] = b->entries[i];
        lens[i] = b->lens[i];
    }
    f.batch.entries = entries;
    f.batch.entry_lens = lens;
    f.batch.count = b->count;
    memcpy(f.batch.chain_hash, b->hash_after[b->count - 1], TS_HASH_BYTES);
    memcpy(f.batch.signature, b->signature, b->signature_len);
    f.batch.signature_len = b->signature_len;
    snprintf(f.batch.cert_serial, sizeof(f.batch.cert_serial), "%s", ev->cert_serial);
    if (b->with_cert) {
        f.batch.origin_cert = ev->cert_pem;
        f.batch.origin_cert_len = ev->cert_len;
    }
    if (codec_frame_encode(&f, out, len, &err) != 0) {
        say("error: cannot encode the batch frame: %s", err.msg);
        return -1;
    }
    return 0;
}

/* Changes entry i's value of sex (F) to M in place, after the batch was signed. */
static int tamper(struct evil_batch *b, size_t i)
{
    /* A FieldWrite: 0x0a len "sex" 0x12 len value. */
    static const uint8_t needle[] = {0x0a, 0x03, 's', 'e', 'x', 0x12, 0x01};
    uint8_t *p = b->entries[i];
    for (size_t k = 0; k + sizeof(needle) < b->lens[i]; k++) {
        if (memcmp(p + k, needle, sizeof(needle)) == 0 && p[k + sizeof(needle)] == 'F') {
            p[k + sizeof(needle)] = 'M';
            return 0;
        }
    }
    say("error: no sex=F write found in entry %zu to tamper with", i);
    return -1;
}

/* ---- the session over node/tls.h ------------------------------------------ */

static int send_body(struct evil *ev, const uint8_t *body, size_t len, const char *what)
{
    int rc = tls_conn_send_frame(ev->conn, body, len);
    if (rc != 0) {
        decide(ev, VERDICT_ERROR, "cannot send %s: %s", what, ts_strerror(rc));
        tls_conn_close(ev->conn, 0, "tool error");
        return -1;
    }
    say("sent: %s", what);
    return 0;
}

/* Sends b; the ack expected is (origin, lane, last seq). */
static int send_batch(struct evil *ev, const struct evil_batch *b, const char *what, bool keep)
{
    uint8_t *body = NULL;
    size_t len = 0;
    char desc[256];
    if (batch_frame(ev, b, &body, &len) != 0) {
        decide(ev, VERDICT_ERROR, "cannot build the batch");
        tls_conn_close(ev->conn, 0, "tool error");
        return -1;
    }
    snprintf(desc, sizeof(desc), "%s batch %s/%u %" PRIu64 "-%" PRIu64 " (%zu bytes)", what,
             b->origin, b->lane, b->first_seq, b->first_seq + b->count - 1, len);
    snprintf(ev->ack_origin, sizeof(ev->ack_origin), "%s", b->origin);
    ev->ack_lane = b->lane;
    ev->ack_seq = b->first_seq + b->count - 1;
    int rc = send_body(ev, body, len, desc);
    if (rc == 0 && keep) {
        ev->replay_frame = body;
        ev->replay_len = len;
    } else {
        free(body);
    }
    return rc;
}

/* The tool's own three subjects, seq 1..3 of its bulk lane. */
static int own_batch(struct evil *ev, struct evil_batch *b)
{
    struct entry_spec specs[EVIL_ENTRIES];
    uint8_t zero[TS_HASH_BYTES] = {0};
    for (unsigned i = 0; i < EVIL_ENTRIES; i++)
        spec_subject(&specs[i], ev->me.id, ev->me.id, i + 1, "F");
    return batch_build(ev, b, specs, 1, EVIL_ENTRIES, zero);
}

/* ---- craft: one entry of the node's real chain, said on the command line ---- */

/* Reads where the node's chain of the crafted lane stands (the node must be stopped). */
static int craft_read_store(struct evil *ev, const char *dir)
{
    static struct config cfg;
    struct ts_error err = {0};
    struct store *s = NULL;
    struct craft *cr = &ev->craft;

    if (config_load_dir(dir, &cfg, &err) != 0) {
        say("error: %s", err.msg);
        return -1;
    }
    if (store_open(cfg.data_dir, &s, &err) != 0) {
        say("error: cannot open the store of %s (is the node stopped?): %s", dir, err.msg);
        return -1;
    }
    int rc = store_head(s, ev->me.id, cr->lane, &cr->head_seq, cr->head_hash);
    if (rc == 0)
        rc = store_head(s, ev->me.id, cr->lane == LANE_BULK ? LANE_SAFETY : LANE_BULK,
                        &cr->other_head_seq, cr->other_head_hash);
    cr->hlc_max = store_hlc_max(s);
    store_close(s);
    if (rc != 0) {
        say("error: cannot read the head of %s/%u: %s", ev->me.id, cr->lane, ts_strerror(rc));
        return -1;
    }
    say("store: %s/%u head seq %" PRIu64 ", highest hlc %" PRIu64, ev->me.id, cr->lane,
        cr->head_seq, cr->hlc_max);
    return 0;
}

/* Builds and signs the crafted entry at head + 1, chained from the head's hash. */
static int craft_batch(struct evil *ev, struct evil_batch *b)
{
    struct craft *cr = &ev->craft;
    struct entry e;
    struct field_write w[EVIL_CRAFT_WRITES];
    struct ts_error err = {0};
    uint8_t msg[CODEC_SIGN_BYTES_MAX];

    memset(b, 0, sizeof(*b));
    memset(&e, 0, sizeof(e));
    memset(w, 0, sizeof(w));
    snprintf(e.origin, sizeof(e.origin), "%s", ev->me.id);
    e.lane = cr->lane;
    e.seq = cr->head_seq + 1;
    uint64_t wall = cr->wall_set ? cr->wall_ms : entry_wall_ms();
    e.wall_ms = wall;
    if (cr->hlc_set) {
        e.hlc = cr->hlc;
    } else {
        e.hlc = wall << 16;
        if (e.hlc <= cr->hlc_max)
            e.hlc = cr->hlc_max + 1;
    }
    e.user = (char *)cr->user;
    e.reason = (char *)cr->reason;
    snprintf(e.record_type, sizeof(e.record_type), "%s", cr->type);
    snprintf(e.record_id, sizeof(e.record_id), "%s", cr->id);
    snprintf(e.site, sizeof(e.site), "%s", cr->site);
    for (size_t i = 0; i < cr->writes_count; i++) {
        snprintf(w[i].field, sizeof(w[i].field), "%s", cr->fields[i]);
        w[i].value = (char *)cr->values[i];
        w[i].supersedes = cr->supersedes_count > 0 ? cr->supersedes : NULL;
        w[i].supersedes_count = cr->supersedes_count;
    }
    e.writes = w;
    e.writes_count = cr->writes_count;
    memcpy(e.prev_hash, cr->head_hash, TS_HASH_BYTES);
    e.lock_epoch = cr->lock_epoch;

    snprintf(b->origin, sizeof(b->origin), "%s", ev->me.id);
    b->lane = cr->lane;
    b->first_seq = e.seq;
    b->count = 1;
    memcpy(b->hash_before, cr->head_hash, TS_HASH_BYTES);
    if (codec_entry_encode(&e, &b->entries[0], &b->lens[0], &err) != 0) {
        say("error: cannot encode the crafted entry: %s", err.msg);
        return -1;
    }
    crypto_chain_hash(cr->head_hash, b->entries[0], b->lens[0], b->hash_after[0]);
    int n = codec_batch_sign_bytes(ev->me.trial, b->origin, ev->cert_serial, b->lane, e.seq,
                                   b->hash_after[0], msg, sizeof(msg));
    if (n < 0) {
        say("error: cannot build the signed bytes");
        return -1;
    }
    if (crypto_sign(ev->key, msg, (size_t)n, b->signature, &b->signature_len, &err) != 0) {
        say("error: cannot sign: %s", err.msg);
        return -1;
    }
    b->with_cert = true;
    say("crafted: %s/%u seq %" PRIu64 " hlc %" PRIu64 " wall %" PRIu64 " %s %s site '%s', "
        "%zu write(s)%s", e.origin, e.lane, e.seq, e.hlc, e.wall_ms, e.record_type, e.record_id,
        e.site, e.writes_count, cr->supersedes_count > 0 ? ", superseding" : "");
    return 0;
}

/*
 * --then-legit: a legit entry on the other lane of the node's real chain (a
 * subject of its own site, well formed), sent over the link on which the
 * crafted chain was just refused.
 */
static void craft_send_legit(struct evil *ev)
{
    const struct craft *cr = &ev->craft;
    struct craft legit = *cr;
    static char id[TS_ID_BYTES_MAX + 1];
    static char site_value[TS_ID_BYTES_MAX + 8];
    struct evil_batch b;

    snprintf(id, sizeof(id), "%s-9001", ev->me.id);
    snprintf(site_value, sizeof(site_value), "%s", ev->me.id);
    legit.type = "subject";
    legit.id = id;
    legit.site = ev->me.id;
    legit.reason = "";
    legit.lane = cr->lane == LANE_BULK ? LANE_SAFETY : LANE_BULK;
    legit.hlc_set = false;
    legit.wall_set = false;
    legit.fields[0] = "site";
    legit.values[0] = site_value;
    legit.fields[1] = "sex";
    legit.values[1] = "U";
    legit.writes_count = 2;
    legit.supersedes_count = 0;
    legit.head_seq = cr->other_head_seq;
    memcpy(legit.head_hash, cr->other_head_hash, TS_HASH_BYTES);
    /* From here on the tool speaks of the legit entry (its ack names it). */
    ev->craft = legit;
    int rc = craft_batch(ev, &b);
    ev->craft.legit_sent = true;
    if (rc != 0) {
        decide(ev, VERDICT_ERROR, "cannot build the legit batch");
        tls_conn_close(ev->conn, 0, "tool error");
        return;
    }
    send_batch(ev, &b, "legit (other lane, same link)", false);
    batch_release(&b);
}

/* Parses the craft arguments: TYPE ID [OPTION...] FIELD=VALUE... */
static int craft_parse(struct evil *ev, int argc, char **argv)
{
    struct craft *cr = &ev->craft;
    if (argc < 3)
        return -1;
    cr->type = argv[0];
    cr->id = argv[1];
    cr->site = ev->me.id;
    cr->user = "integration:coordinator";
    cr->reason = "";
    cr->lane = LANE_BULK;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (strcmp(a, "--then-legit") == 0) {
            cr->then_legit = true;
            continue;  /* takes no value */
        }
        if (strncmp(a, "--", 2) == 0 && v == NULL)
            return -1;
        if (strcmp(a, "--site") == 0) {
            cr->site = strcmp(v, "-") == 0 ? "" : v;
        } else if (strcmp(a, "--lane") == 0) {
            if (strcmp(v, "safety") == 0)
                cr->lane = LANE_SAFETY;
            else if (strcmp(v, "bulk") == 0)
                cr->lane = LANE_BULK;
            else
                return -1;
        } else if (strcmp(a, "--lock-epoch") == 0) {
            errno = 0;
            unsigned long long n = strtoull(v, &end, 10);
            if (errno != 0 || end == v || *end != '\0')
                return -1;
            cr->lock_epoch = n;
        } else if (strcmp(a, "--hlc") == 0 || strcmp(a, "--wall") == 0) {
            errno = 0;
            unsigned long long n = strtoull(v, &end, 10);
            if (errno != 0 || end == v || *end != '\0')
                return -1;
            if (a[2] == 'h') {
                cr->hlc = n;
                cr->hlc_set = true;
            } else {
                cr->wall_ms = n;
                cr->wall_set = true;
            }
        } else if (strcmp(a, "--user") == 0) {
            cr->user = v;
        } else if (strcmp(a, "--reason") == 0) {
            cr->reason = v;
        } else if (strcmp(a, "--supersedes") == 0) {
            if (cr->supersedes_count == EVIL_CRAFT_SUPERSEDES)
                return -1;
            struct entry_ref *r = &cr->supersedes[cr->supersedes_count];
            unsigned lane = 0;
            unsigned long long seq = 0;
            char origin[65];  /* the %64 below, and its NUL */
            if (sscanf(v, "%64[^/]/%u/%llu", origin, &lane, &seq) != 3 || lane >= LANE_COUNT ||
                seq == 0 || strlen(origin) > TS_ID_BYTES_MAX)
                return -1;
            snprintf(r->origin, sizeof(r->origin), "%s", origin);
            r->lane = (uint8_t)lane;
            r->seq = seq;
            cr->supersedes_count++;
        } else {
            const char *eq = strchr(a, '=');
            if (strncmp(a, "--", 2) == 0 || eq == NULL || eq == a ||
                cr->writes_count == EVIL_CRAFT_WRITES ||
                (size_t)(eq - a) > TS_FIELD_BYTES_MAX)
                return -1;
            static char names[EVIL_CRAFT_WRITES][TS_FIELD_BYTES_MAX + 1];
            snprintf(names[cr->writes_count], sizeof(names[0]), "%.*s", (int)(eq - a), a);
            cr->fields[cr->writes_count] = names[cr->writes_count];
            cr->values[cr->writes_count] = eq + 1;
            cr->writes_count++;
            continue;
        }
        i++;  /* the option's value */
    }
    return cr->writes_count > 0 ? 0 : -1;
}

/* The hub said hello: do what the mode says. */
static void misbehave(struct evil *ev)
{
    struct evil_batch b;
    struct entry_spec specs[EVIL_ENTRIES];
    uint8_t zero[TS_HASH_BYTES] = {0};
    memset(&b, 0, sizeof(b));

    switch (ev->mode) {
    case MODE_VALID:
    case MODE_REPLAY:
    case MODE_FORK:
        if (own_batch(ev, &b) == 0) {
            memcpy(ev->chain1_hash, b.hash_after[0], TS_HASH_BYTES);
            send_batch(ev, &b, "valid", ev->mode == MODE_REPLAY);
        }
        break;
    case MODE_OTHER_ORIGIN:
        for (unsigned i = 0; i < EVIL_ENTRIES; i++)
            spec_subject(&specs[i], ev->victim, ev->victim, 90 + i, "F");
        if (batch_build(ev, &b, specs, 1, EVIL_ENTRIES, zero) == 0)
            send_batch(ev, &b, "other site's", false);
        break;
    case MODE_TAMPERED:
        if (own_batch(ev, &b) == 0 && tamper(&b, 1) == 0)
            send_batch(ev, &b, "tampered (entry 2's sex F->M after signing)", false);
        else
            decide(ev, VERDICT_ERROR, "cannot build the tampered batch");
        break;
    case MODE_BAD_SIGNATURE:
        if (own_batch(ev, &b) == 0) {
            for (size_t i = 0; i < b.signature_len; i++)
                b.signature[i] ^= 0xff;
            send_batch(ev, &b, "badly signed", false);
        }
        break;
    case MODE_MALFORMED: {
        uint8_t garbage[EVIL_GARBAGE_BYTES];
        if (crypto_random(garbage, sizeof(garbage)) != 0) {
            decide(ev, VERDICT_ERROR, "no random bytes");
            break;
        }
        garbage[0] = 0x00;  /* field number 0: never valid protobuf, whatever follows */
        send_body(ev, garbage, sizeof(garbage), "garbage frame (200 random bytes)");
        break;
    }
    case MODE_OTHER_SCOPE:
        spec_subject(&specs[0], ev->me.id, ev->victim, 1, "M");
        specs[0].reason = "correction";
        if (batch_build(ev, &b, specs, 1, 1, zero) == 0)
            send_batch(ev, &b, "other site's record in its own", false);
        break;
    case MODE_FORGE_MEMBER:
        memset(&specs[0], 0, sizeof(specs[0]));
        specs[0].origin = ev->me.id;
        specs[0].lane = LANE_SAFETY;
        specs[0].type = "member";
        snprintf(specs[0].record_id, sizeof(specs[0].record_id), "%s", ev->victim);
        specs[0].site = "";
        specs[0].user = "integration:admin";
        specs[0].reason = "forged revocation";
        specs[0].fields[0] = "status";
        specs[0].values[0] = "revoked";
        specs[0].writes_count = 1;
        if (batch_build(ev, &b, specs, 1, 1, zero) == 0)
            send_batch(ev, &b, "forged membership", false);
        break;
    case MODE_CRAFT:
        if (craft_batch(ev, &b) == 0)
            send_batch(ev, &b, "crafted", false);
        break;
    case MODE_OVERSIZED:
    case MODE_STALL:
        break;
    }
    if (ev->verdict == VERDICT_NONE && b.count == 0 && ev->mode != MODE_MALFORMED)
        decide(ev, VERDICT_ERROR, "could not build the batch");
    if (ev->verdict == VERDICT_ERROR)
        tls_conn_close(ev->conn, 0, "tool error");
    batch_release(&b);
}

/* An ack naming the batch last sent. */
static void on_our_ack(struct evil *ev, uint64_t seq)
{
    ev->acks++;
    switch (ev->mode) {
    case MODE_REPLAY:
        if (ev->acks == 1) {
            uint8_t *body = ev->replay_frame;
            ev->replay_frame = NULL;
            send_body(ev, body, ev->replay_len, "the same batch frame again");
            free(body);
            return;
        }
        if (seq == ev->ack_seq)
            decide(ev, VERDICT_REFUSED, "the replayed batch was acked as duplicates (head %" PRIu64
                   ")", seq);
        else
            decide(ev, VERDICT_ACCEPTED, "the replayed batch moved the head to %" PRIu64, seq);
        break;
    case MODE_FORK:
        if (ev->acks == 1) {
            struct evil_batch b;
            struct entry_spec specs[EVIL_ENTRIES];
            for (unsigned i = 0; i < 2; i++)
                spec_subject(&specs[i], ev->me.id, ev->me.id, i + 2, "M");
            if (batch_build(ev, &b, specs, 2, 2, ev->chain1_hash) == 0) {
                b.with_cert = false;
                send_batch(ev, &b, "forking (other entries at seq 2-3)", false);
            } else {
                decide(ev, VERDICT_ERROR, "cannot build the forking batch");
                tls_conn_close(ev->conn, 0, "tool error");
            }
            batch_release(&b);
            return;
        }
        decide(ev, VERDICT_ACCEPTED, "the forking batch was acked (head %" PRIu64 ")", seq);
        break;
    case MODE_CRAFT:
        if (ev->craft.legit_sent)
            decide(ev, VERDICT_REFUSED, "refused, and the link carried on: the legit batch on "
                   "the other lane was acked over it (head %" PRIu64 ")", seq);
        else
            decide(ev, VERDICT_ACCEPTED, "acked: the hub took the crafted entry (head %" PRIu64
                   ")", seq);
        break;
    default:
        decide(ev, VERDICT_ACCEPTED, "the hub acked the batch (head %" PRIu64 ")", seq);
        break;
    }
    tls_conn_close(ev->conn, 0, "done");
}

static int on_handshake(struct tls_conn *c, const struct pki_identity *peer)
{
    struct evil *ev = tls_conn_data(c);
    struct frame f;
    uint8_t *body = NULL;
    size_t len = 0;
    struct ts_error err = {0};

    say("handshake: done with %s %s (our side; the hub may still refuse our certificate)",
        pki_role_name(peer->role), peer->id);
    memset(&f, 0, sizeof(f));
    f.type = FRAME_HELLO;
    snprintf(f.trial, sizeof(f.trial), "%s", ev->me.trial);
    snprintf(f.node_id, sizeof(f.node_id), "%s", ev->me.id);
    f.protocol_version = 1;
    if (codec_frame_encode(&f, &body, &len, &err) != 0) {
        decide(ev, VERDICT_ERROR, "cannot encode the hello: %s", err.msg);
        return 1;
    }
    int rc = tls_conn_send_frame(c, body, len);
    free(body);
    if (rc != 0) {
        decide(ev, VERDICT_ERROR, "cannot send the hello: %s", ts_strerror(rc));
        return 1;
    }
    return 0;
}

static void on_frame(struct tls_conn *c, const uint8_t *body, size_t len)
{
    struct evil *ev = tls_conn_data(c);
    struct frame f;
    struct ts_error err = {0};

    memset(&f, 0, sizeof(f));
    if (codec_frame_decode(body, len, &f, &err) != 0) {
        say("hub: a frame that does not decode: %s", err.msg);
        return;
    }
    switch (f.type) {
    case FRAME_HELLO:
        say("hello: hub %s of trial %s, protocol %u", f.node_id, f.trial, f.protocol_version);
        if (!ev->hello_seen) {
            ev->hello_seen = true;
            misbehave(ev);
        }
        break;
    case FRAME_BATCH:
        /* What the hub sends a site (membership): not our business here. */
        break;
    case FRAME_ACK:
        for (size_t i = 0; i < f.vector_count; i++) {
            const struct vv_item *it = &f.vector[i];
            say("ack: %s/%u %" PRIu64, it->origin, it->lane, it->seq);
            if (strcmp(it->origin, ev->ack_origin) == 0 && it->lane == ev->ack_lane &&
                it->seq >= ev->ack_seq && ev->ack_seq > 0)
                on_our_ack(ev, it->seq);
        }
        break;
    case FRAME_REFUSAL:
        if (f.vector_count == 1 && f.retry_after_ms > 0) {
            say("held: %s/%u from seq %" PRIu64 ", offered again in %" PRIu32 " ms: %s",
                f.vector[0].origin, f.vector[0].lane, f.vector[0].seq, f.retry_after_ms,
                f.reason != NULL ? f.reason : "");
            decide(ev, ev->mode == MODE_CRAFT ? VERDICT_HELD : VERDICT_ERROR,
                   "held back: %s", f.reason != NULL ? f.reason : "");
            tls_conn_close(ev->conn, 0, "held back");
            break;
        }
        say("refused: %s", f.reason != NULL ? f.reason : "");
        if (ev->mode == MODE_REPLAY)
            decide(ev, VERDICT_ACCEPTED, "the hub refused instead of acking duplicates: %s",
                   f.reason != NULL ? f.reason : "");
        else if (ev->mode == MODE_FORK && ev->acks == 0)
            decide(ev, VERDICT_ERROR, "the valid batch before the fork was refused: %s",
                   f.reason != NULL ? f.reason : "");
        else if (ev->mode == MODE_CRAFT && ev->craft.legit_sent)
            decide(ev, VERDICT_ERROR, "the legit batch was refused too: %s",
                   f.reason != NULL ? f.reason : "");
        else if (!(ev->mode == MODE_CRAFT && ev->craft.then_legit && f.vector_count == 1))
            decide(ev, VERDICT_REFUSED, "refused: %s", f.reason != NULL ? f.reason : "");
        /* A refusal of one chain leaves the link up: the hub goes on with
         * every other chain.  The tool shows it (--then-legit) or ends the
         * session itself. */
        if (ev->mode == MODE_CRAFT && f.vector_count == 1 && ev->verdict == VERDICT_NONE) {
            craft_send_legit(ev);
            break;
        }
        if (ev->mode == MODE_CRAFT && f.vector_count == 1)
            tls_conn_close(ev->conn, 0, "chain refused; the link stayed up");
        break;
    }
    codec_frame_release(&f);
}

static void timer_closed_cb(uv_handle_t *h)
{
    (void)h;
}

static void on_close(struct tls_conn *c, int code, const char *reason)
{
    struct evil *ev = tls_conn_data(c);
    say("closed: %s%s%s", reason != NULL ? reason : "", code != 0 ? " / " : "",
        code != 0 ? ts_strerror(code) : "");
    if (ev->mode == MODE_REPLAY || (ev->mode == MODE_FORK && ev->acks == 0))
        decide(ev, ev->mode == MODE_REPLAY ? VERDICT_ACCEPTED : VERDICT_ERROR,
               "closed before the %s: %s", ev->mode == MODE_REPLAY ? "replay was acked"
                                                                   : "valid batch was acked",
               reason != NULL ? reason : "");
    else
        decide(ev, VERDICT_REFUSED, "closed %s the hub's hello: %s",
               ev->hello_seen ? "after" : "before", reason != NULL ? reason : "");
    ev->conn = NULL;
    uv_timer_stop(&ev->timer);
    uv_close((uv_handle_t *)&ev->timer, timer_closed_cb);
}

static void timer_cb(uv_timer_t *t)
{
    struct evil *ev = container_of(t, struct evil, timer);
    decide(ev, VERDICT_ACCEPTED, "the hub neither refused nor closed within %u ms%s",
           ev->answer_ms, ev->hello_seen ? "" : " (and never said hello)");
    if (ev->conn != NULL)
        tls_conn_close(ev->conn, 0, "tool timeout");
}

static const struct tls_conn_cbs evil_cbs = {
    .on_handshake = on_handshake,
    .on_frame = on_frame,
    .on_close = on_close,
    .on_drain = NULL,
};

static int run_session(struct evil *ev, const char *host, int port)
{
    struct ts_error err = {0};
    struct tls_ctx_config cfg = {
        .trial = ev->me.trial,
        .ca_path = ev->ca_path,
        .cert_path = ev->crt_path,
        .key_path = ev->key_path,
        .crl_path = NULL,
    };
    if (tls_ctx_new(&cfg, &ev->tls, &err) != 0) {
        say("error: %s", err.msg);
        return VERDICT_ERROR;
    }
    uv_loop_init(&ev->loop);
    uv_timer_init(&ev->loop, &ev->timer);
    uv_timer_start(&ev->timer, timer_cb, ev->answer_ms, 0);
    if (tls_connect(&ev->loop, ev->tls, host, port, NULL, &evil_cbs, ev, &ev->conn, &err) != 0) {
        say("error: cannot connect: %s", err.msg);
        uv_close((uv_handle_t *)&ev->timer, timer_closed_cb);
        uv_run(&ev->loop, UV_RUN_DEFAULT);
        uv_loop_close(&ev->loop);
        tls_ctx_free(ev->tls);
        return VERDICT_ERROR;
    }
    uv_run(&ev->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&ev->loop) != 0)
        say("warning: the loop still had handles");
    tls_ctx_free(ev->tls);
    free(ev->replay_frame);
    return ev->verdict == VERDICT_NONE ? VERDICT_ERROR : (int)ev->verdict;
}

/* ---- oversized: raw OpenSSL, so any length can go in the prefix --------------- */

static int tcp_connect(const char *host, int port, const char *src, bool nonblock)
{
    struct sockaddr_in sa, local;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        say("error: HOST must be a numeric IPv4 address, not %s", host);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (src != NULL) {
        memset(&local, 0, sizeof(local));
        local.sin_family = AF_INET;
        if (inet_pton(AF_INET, src, &local.sin_addr) != 1 ||
            bind(fd, (struct sockaddr *)&local, sizeof(local)) != 0) {
            say("error: cannot bind to %s: %s", src, strerror(errno));
            close(fd);
            return -1;
        }
    }
    if (nonblock)
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS) {
        say("error: connect to %s:%d: %s", host, port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads exactly n bytes: 1, or 0 on close, -1 on error or timeout (errno kept). */
static int ssl_read_all(SSL *ssl, uint8_t *buf, size_t n, int *ssl_err)
{
    size_t have = 0;
    while (have < n) {
        size_t got = 0;
        int rc = SSL_read_ex(ssl, buf + have, n - have, &got);
        if (rc != 1) {
            *ssl_err = SSL_get_error(ssl, rc);
            return *ssl_err == SSL_ERROR_ZERO_RETURN ? 0 : -1;
        }
        have += got;
    }
    return 1;
}

/* Reads one frame; its type (FRAME_*), 0 on close, -1 on error. */
static int ssl_read_frame(SSL *ssl, struct frame *f, int *ssl_err)
{
    uint8_t prefix[4];
    int rc = ssl_read_all(ssl, prefix, 4, ssl_err);
    if (rc <= 0)
        return rc;
    uint32_t len = codec_frame_len_read(prefix);
    if (len == 0 || len > TS_FRAME_BYTES_MAX)
        return -1;
    uint8_t *body = malloc(len);
    if (body == NULL)
        return -1;
    rc = ssl_read_all(ssl, body, len, ssl_err);
    if (rc > 0) {
        struct ts_error err = {0};
        rc = codec_frame_decode(body, len, f, &err) == 0 ? (int)f->type : -1;
    }
    free(body);
    return rc;
}

static int ssl_write_all(SSL *ssl, const uint8_t *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        size_t put = 0;
        if (SSL_write_ex(ssl, buf + done, n - done, &put) != 1)
            return -1;
        done += put;
    }
    return 0;
}

static const char *ssl_err_text(int ssl_err)
{
    static char text[300];
    unsigned long e = ERR_peek_error();
    if (ssl_err == SSL_ERROR_SYSCALL && e == 0)
        snprintf(text, sizeof(text), "%s", errno == 0 ? "EOF without close_notify"
                                          : errno == EAGAIN || errno == EWOULDBLOCK
                                              ? "timeout"
                                              : strerror(errno));
    else
        snprintf(text, sizeof(text), "%s",
                 e != 0 && ERR_reason_error_string(e) != NULL ? ERR_reason_error_string(e)
                                                             : "tls error");
    return text;
}

static int run_oversized(struct evil *ev, const char *host, int port)
{
    int verdict = VERDICT_ERROR;
    int ssl_err = 0;
    SSL *ssl = NULL;
    struct frame f;
    uint8_t *hello = NULL;
    size_t hello_len = 0;
    struct ts_error err = {0};

    int fd = tcp_connect(host, port, NULL, false);
    if (fd < 0)
        return VERDICT_ERROR;
    struct timeval tv = {.tv_sec = EVIL_ANSWER_MS / 1000, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        goto out_close_fd;
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(ctx, ev->ca_path, NULL) != 1 ||
        SSL_CTX_use_certificate_file(ctx, ev->crt_path, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, ev->key_path, SSL_FILETYPE_PEM) != 1) {
        say("error: cannot load the credentials of %s", ev->crt_path);
        goto out_free_ctx;
    }
    ssl = SSL_new(ctx);
    if (ssl == NULL)
        goto out_free_ctx;
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) != 1) {
        const char *why = ERR_reason_error_string(ERR_peek_error());
        say("closed: handshake failed: %s", why != NULL ? why : "tls error");
        verdict = VERDICT_REFUSED;
        goto out_free_ssl;
    }
    say("handshake: done (raw OpenSSL)");
    memset(&f, 0, sizeof(f));
    f.type = FRAME_HELLO;
    snprintf(f.trial, sizeof(f.trial), "%s", ev->me.trial);
    snprintf(f.node_id, sizeof(f.node_id), "%s", ev->me.id);
    f.protocol_version = 1;
    if (codec_frame_encode(&f, &hello, &hello_len, &err) != 0) {
        say("error: cannot encode the hello: %s", err.msg);
        goto out_free_ssl;
    }
    uint8_t prefix[4];
    codec_frame_len_write(prefix, (uint32_t)hello_len);
    if (ssl_write_all(ssl, prefix, 4) != 0 || ssl_write_all(ssl, hello, hello_len) != 0) {
        say("closed: sending the hello failed");
        verdict = VERDICT_REFUSED;
        goto out_free_ssl;
    }
    /* Up to the hub's hello. */
    for (;;) {
        memset(&f, 0, sizeof(f));
        int t = ssl_read_frame(ssl, &f, &ssl_err);
        if (t == FRAME_HELLO)
            say("hello: hub %s of trial %s, protocol %u", f.node_id, f.trial, f.protocol_version);
        else if (t == FRAME_REFUSAL)
            say("refused: %s", f.reason != NULL ? f.reason : "");
        codec_frame_release(&f);
        if (t == FRAME_HELLO)
            break;
        if (t <= 0 || t == FRAME_REFUSAL) {
            say("closed: before the hub's hello: %s", t == 0 ? "close_notify" : ssl_err_text(ssl_err));
            verdict = VERDICT_REFUSED;
            goto out_free_ssl;
        }
    }
    /* The length of a 64 MiB frame, then a little of its body. */
    uint8_t body[1024];
    memset(body, 0x0a, sizeof(body));
    codec_frame_len_write(prefix, EVIL_OVERSIZED_BYTES);
    if (ssl_write_all(ssl, prefix, 4) != 0 || ssl_write_all(ssl, body, sizeof(body)) != 0) {
        say("closed: while sending the oversized frame");
        decide(ev, VERDICT_REFUSED, "closed while the oversized frame was sent");
        verdict = VERDICT_REFUSED;
        goto out_free_ssl;
    }
    say("sent: a length prefix of %u bytes and %zu bytes of body", EVIL_OVERSIZED_BYTES,
        sizeof(body));
    uint64_t t0 = now_ms();
    for (;;) {
        memset(&f, 0, sizeof(f));
        ERR_clear_error();
        errno = 0;
        int t = ssl_read_frame(ssl, &f, &ssl_err);
        if (t == FRAME_REFUSAL)
            say("refused: %s", f.reason != NULL ? f.reason : "");
        codec_frame_release(&f);
        if (t > 0)
            continue;
        if (t == 0) {
            say("closed: close_notify from the hub after %" PRIu64 " ms", now_ms() - t0);
            verdict = VERDICT_REFUSED;
        } else if (ssl_err == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            say("open: the hub kept the link for %u ms after the oversized prefix",
                EVIL_ANSWER_MS);
            verdict = VERDICT_ACCEPTED;
        } else {
            say("closed: %s after %" PRIu64 " ms", ssl_err_text(ssl_err), now_ms() - t0);
            verdict = VERDICT_REFUSED;
        }
        break;
    }

out_free_ssl:
    free(hello);
    SSL_free(ssl);
out_free_ctx:
    SSL_CTX_free(ctx);
out_close_fd:
    close(fd);
    decide(ev, verdict, "%s", verdict == VERDICT_REFUSED ? "the hub closed the link"
                              : verdict == VERDICT_ACCEPTED ? "the hub kept the link open"
                                                            : "tool error");
    return verdict;
}

/* ---- stall: connections that never send a byte ---------------------------- */

static int run_stall(struct evil *ev, const char *host, int port, int n, int hold_s,
                     const char *src)
{
    static int fds[EVIL_STALL_MAX];
    static uint64_t closed_ms[EVIL_STALL_MAX];
    struct pollfd pfd[EVIL_STALL_MAX];
    int opened = 0;
    uint64_t t0 = now_ms();

    for (int i = 0; i < n; i++) {
        fds[i] = tcp_connect(host, port, src, true);
        closed_ms[i] = 0;
        if (fds[i] < 0) {
            say("error: only %d connections opened", opened);
            break;
        }
        opened++;
    }
    say("stall: holding %d silent connections from %s for %d s", opened,
        src != NULL ? src : "the default address", hold_s);
    uint64_t deadline = t0 + (uint64_t)hold_s * 1000u;
    int open_count = opened;
    while (open_count > 0 && now_ms() < deadline) {
        int k = 0;
        int map[EVIL_STALL_MAX];
        for (int i = 0; i < opened; i++) {
            if (fds[i] < 0)
                continue;
            pfd[k].fd = fds[i];
            pfd[k].events = POLLIN;
            pfd[k].revents = 0;
            map[k++] = i;
        }
        int wait_ms = (int)(deadline - now_ms());
        if (poll(pfd, (nfds_t)k, wait_ms > 200 ? 200 : wait_ms) < 0 && errno != EINTR)
            break;
        for (int j = 0; j < k; j++) {
            if (pfd[j].revents == 0)
                continue;
            uint8_t buf[512];
            ssize_t got = recv(pfd[j].fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (got > 0 || (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)))
                continue;  /* bytes from the hub (never expected first): still open */
            int i = map[j];
            closed_ms[i] = now_ms() - t0;
            close(fds[i]);
            fds[i] = -1;
            open_count--;
        }
    }
    int at_once = 0, later = 0;
    uint64_t later_min = UINT64_MAX, later_max = 0;
    for (int i = 0; i < opened; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
            continue;
        }
        if (closed_ms[i] < 1000) {
            at_once++;
        } else {
            later++;
            if (closed_ms[i] < later_min)
                later_min = closed_ms[i];
            if (closed_ms[i] > later_max)
                later_max = closed_ms[i];
        }
    }
    say("stall: %d opened, %d closed by the hub within 1 s, %d closed after %.1f-%.1f s, %d still "
        "open after %d s", opened, at_once, later, later > 0 ? (double)later_min / 1000.0 : 0.0,
        (double)later_max / 1000.0, open_count, hold_s);
    if (opened < n) {
        decide(ev, VERDICT_ERROR, "could not open %d connections", n);
        return VERDICT_ERROR;
    }
    if (open_count > 0) {
        decide(ev, VERDICT_ACCEPTED, "%d silent connections still open after %d s", open_count,
               hold_s);
        return VERDICT_ACCEPTED;
    }
    decide(ev, VERDICT_REFUSED, "the hub closed every silent connection");
    return VERDICT_REFUSED;
}

/* ---- main ----------------------------------------------------------------------- */

static int usage(void)
{
    fprintf(stderr, "usage: ts_evil_peer MODE NODEDIR HOST PORT [ARG...]\nmodes:");
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        fprintf(stderr, " %s", modes[i].name);
    fprintf(stderr, "\n  other-origin|other-scope|forge-member [VICTIM_SITE]\n"
                    "  stall [N [HOLD_SECONDS [SOURCE_ADDRESS]]]\n"
                    "  craft TYPE ID [--site S|-] [--lane safety|bulk] [--hlc N] [--wall MS]\n"
                    "        [--user U] [--reason R] [--supersedes ORIGIN/LANE/SEQ]... [--lock-epoch N]\n"
                    "        "
                    "FIELD=VALUE...\n");
    return VERDICT_ERROR;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv)
{
    static struct evil ev;
    struct ts_error err = {0};
    int port = 0;

    if (argc < 5)
        return usage();
    signal(SIGPIPE, SIG_IGN);
    memset(&ev, 0, sizeof(ev));
    ev.verdict = VERDICT_NONE;
    ev.victim = "101";
    bool found = false;
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (strcmp(argv[1], modes[i].name) == 0) {
            ev.mode = modes[i].mode;
            found = true;
        }
    }
    if (!found || parse_int(argv[4], 1, 65535, &port) != 0)
        return usage();
    const char *dir = argv[2], *host = argv[3];
    snprintf(ev.crt_path, sizeof(ev.crt_path), "%s/node.crt", dir);
    snprintf(ev.key_path, sizeof(ev.key_path), "%s/node.key", dir);
    snprintf(ev.ca_path, sizeof(ev.ca_path), "%s/ca.crt", dir);

    if (ev.mode == MODE_STALL) {
        int n = 200, hold_s = 12;
        const char *src = "127.0.0.2";
        if ((argc > 5 && parse_int(argv[5], 1, EVIL_STALL_MAX, &n) != 0) ||
            (argc > 6 && parse_int(argv[6], 1, 600, &hold_s) != 0))
            return usage();
        if (argc > 7)
            src = strcmp(argv[7], "-") == 0 ? NULL : argv[7];
        int v = run_stall(&ev, host, port, n, hold_s, src);
        say("verdict: %s", ev.outcome);
        return v;
    }
    if (argc > 5 && ev.mode != MODE_CRAFT)
        ev.victim = argv[5];
    ev.answer_ms = EVIL_ANSWER_MS;
    const char *answer = getenv("TS_EVIL_ANSWER_MS");
    if (answer != NULL && answer[0] != '\0') {
        int ms = 0;
        if (parse_int(answer, 100, 600000, &ms) != 0)
            return usage();
        ev.answer_ms = (uint32_t)ms;
    }

    if (pki_read_file(ev.crt_path, &ev.cert_pem, &ev.cert_len, &err) != 0 ||
        pki_cert_identity(ev.cert_pem, ev.cert_len, &ev.me, &err) != 0 ||
        pki_cert_serial_hex(ev.cert_pem, ev.cert_len, ev.cert_serial, sizeof(ev.cert_serial),
                            &err) != 0 ||
        crypto_key_load(ev.key_path, &ev.key, &err) != 0) {
        say("error: %s", err.msg);
        free(ev.cert_pem);
        return VERDICT_ERROR;
    }
    say("identity: %s/%s/%s, mode %s", ev.me.trial, pki_role_name(ev.me.role), ev.me.id,
        argv[1]);
    if (ev.mode == MODE_CRAFT) {
        int bad = craft_parse(&ev, argc - 5, argv + 5) != 0 ? usage()
                  : craft_read_store(&ev, dir) != 0        ? VERDICT_ERROR
                                                           : 0;
        if (bad != 0) {
            crypto_key_free(ev.key);
            free(ev.cert_pem);
            return bad;
        }
    }
    int v = ev.mode == MODE_OVERSIZED ? run_oversized(&ev, host, port)
                                      : run_session(&ev, host, port);
    say("verdict: %s", ev.outcome[0] != '\0' ? ev.outcome : "tool error");
    crypto_key_free(ev.key);
    free(ev.cert_pem);
    return v;
}
