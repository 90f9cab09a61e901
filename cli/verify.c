/*
 * verify.c: `trialsync verify --node NODEDIR`: checks a stopped node's store
 * offline and proves three things, naming the first thing that fails:
 *
 * 1. Who signed: every certificate a stored batch signature names, by
 *    (origin, serial) (the node's own node.crt, or one kept in the store's
 *    metadata, "cert/<origin>/<serial>", when it first signed entries held
 *    here: a key rotation keeps the earlier ones), chains to the trial CA of
 *    node.conf (time and revocation aside, as a receiver checks it), has that
 *    serial, and its URI SAN names this trial, a node role (hub or site; the
 *    node's own role for its own chain) and exactly that origin.  The
 *    certificate store inside the store is never trusted on its own.
 * 2. What was signed: every chain's hashes from seq 1 and every stored batch
 *    signature against the key of the certificate it names
 *    (store_verify_entries), and every entry's wall time inside that
 *    certificate's validity period and not after its revocation in the
 *    node's CRL (checked at the signed point that covers the entry).
 * 3. What is shown: the state is rebuilt from the oplog and compared with the
 *    stored state, field by field (store_verify_state); a difference is
 *    named by record and field.
 *
 * With --peer PEERDIR, once those pass, the stopped node is compared with a
 * running peer through the peer's API (GET /v1/status, GET /v1/digest):
 * every (origin, lane) chain head is reported equal, or which side is ahead
 * and by how many entries.  A node merely ahead or behind is not a failure
 * (replication is asynchronous); equal version vectors with different state
 * digests are, because the same entries must merge to the same state.  The
 * digests are compared only when both nodes hold every entry in full: a site
 * holds entries scoped to other sites as holes, which reach no state.
 */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../node/config.h"
#include "../node/crypto.h"
#include "../node/pki.h"
#include "../storage/store.h"
#include "cli.h"
#include "client.h"

/* Far above the certificates of one trial (a few hubs, a few hundred sites,
 * each renewed a few times). */
#define VERIFY_ORIGINS_MAX 4096
/* Two lanes per origin: the most chains a peer's version vector may name
 * before it is taken as malformed (checked before allocating). */
#define VERIFY_PEER_CHAINS_MAX (2 * VERIFY_ORIGINS_MAX)
_Static_assert(VERIFY_PEER_CHAINS_MAX >= VERIFY_ORIGINS_MAX,
               "a peer's vector holds at least one chain per origin");

/* A certificate of an origin (origin, serial) that has been checked. */
struct verify_origin {
    char origin[TS_ID_BYTES_MAX + 1];
    char serial[TS_SERIAL_BYTES_MAX + 1];
    struct crypto_pubkey *key;
    int64_t not_before_s;
    int64_t not_after_s;
    int64_t revoked_at_s;   /* 0: not revoked by the node's CRL */
};

/*
 * The entries of a chain since its last signed point: which certificate
 * signed them is known only at the signed point (the signature record sorts
 * after the entry it ends), so their times are checked there.
 */
struct verify_pending {
    char origin[TS_ID_BYTES_MAX + 1];
    uint8_t lane;
    uint64_t count;
    uint64_t min_seq, min_wall_ms;   /* the earliest-stamped entry */
    uint64_t max_seq, max_wall_ms;   /* the latest-stamped entry */
};

struct verify_ctx {
    struct store *store;
    const struct config *cfg;
    char *ca_pem;
    size_t ca_len;
    char *crl_pem;          /* the node's CRL, when it has one signed by the CA */
    size_t crl_len;
    char own_serial[TS_SERIAL_BYTES_MAX + 1];
    struct verify_origin origins[VERIFY_ORIGINS_MAX];
    size_t count;
    struct verify_origin *last;  /* entries come chain by chain: a one-slot cache */
    struct verify_pending pending;
    char failure[768];      /* why a signed point failed, beyond "does not verify" */
    uint64_t entries_full;  /* entries held in full (entry_cb), holes excluded */
};

static const char VERIFY_USAGE[] =
    "usage: trialsync verify --node NODEDIR [--peer PEERDIR]\n"
    "\n"
    "Checks a stopped node's store (stop the node first) and exits 1 naming the\n"
    "first thing that fails:\n"
    "  - every certificate that signed a batch (named by origin and serial: node.crt\n"
    "    for the node's current one, the ones kept in the store for others and for\n"
    "    its own earlier keys) chains to the trial CA (ca.crt of node.conf), names\n"
    "    this trial, a node role and exactly that origin in its URI SAN;\n"
    "  - every hash chain from its first entry, and every batch signature, with\n"
    "    the key of the certificate the batch names;\n"
    "  - every entry was written while that certificate was valid (wall time within\n"
    "    notBefore..notAfter) and not after its revocation (the node's CRL);\n"
    "  - the state rebuilt from the oplog equals the stored state, field by field\n"
    "    (a difference is named by record and field); entries held only as holes\n"
    "    reach no state and are skipped.\n"
    "\n"
    "  --peer PEERDIR   then compare with a RUNNING peer through its API (PEERDIR\n"
    "                   holds the peer's node.conf and api.token): each chain\n"
    "                   (origin, lane) is reported as equal, or with the side that\n"
    "                   is ahead and by how many entries.  A peer merely ahead or\n"
    "                   behind is reported, not a failure (replication is\n"
    "                   asynchronous).  When the version vectors are equal the\n"
    "                   state digests must be equal, else exit 1 naming both; they\n"
    "                   are compared only when both nodes hold every entry in full\n"
    "                   (a site holds other sites' entries as holes).\n"
    "\n"
    "Exit status: 0 nothing disagrees, 1 a check failed (or the digests differ\n"
    "with equal vectors), 2 usage.\n";

static struct verify_origin *origin_find(struct verify_ctx *v, const char *origin,
                                         const char *serial)
{
    if (v->last != NULL && strcmp(v->last->origin, origin) == 0 &&
        strcmp(v->last->serial, serial) == 0)
        return v->last;
    for (size_t i = 0; i < v->count; i++)
        if (strcmp(v->origins[i].origin, origin) == 0 &&
            strcmp(v->origins[i].serial, serial) == 0)
            return v->last = &v->origins[i];
    return NULL;
}

static void time_text(int64_t s, char out[32])
{
    time_t t = (time_t)s;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "%" PRId64, s);
}

/*
 * Loads and checks the certificate (origin, serial) (see the file comment,
 * 1).  Returns 0 with it added, or TS_ERR_AUTH with err naming the origin
 * and why.
 */
static int origin_check(struct verify_ctx *v, const char *origin, const char *serial,
                        struct ts_error *err)
{
    const struct config *cfg = v->cfg;
    bool own = strcmp(origin, cfg->id) == 0;
    char *pem = NULL;
    size_t len = 0;
    struct ts_error cerr = {0};
    if (v->count == VERIFY_ORIGINS_MAX)
        return ts_error_set(err, TS_ERR_TOOBIG, "more than %d origin certificates",
                            VERIFY_ORIGINS_MAX);
    if (own && strcmp(serial, v->own_serial) == 0) {
        if (pki_read_file(cfg->cert, &pem, &len, &cerr) != 0)
            return ts_error_set(err, TS_ERR_AUTH, "origin %s (this node): %s", origin, cerr.msg);
    } else {
        char key[TS_ID_BYTES_MAX + TS_SERIAL_BYTES_MAX + 8];
        snprintf(key, sizeof(key), "cert/%s/%s", origin, serial);
        if (store_meta_get(v->store, key, &pem, &len) != 0) {
            /* A store written before key history kept one per origin. */
            snprintf(key, sizeof(key), "cert/%s", origin);
            if (store_meta_get(v->store, key, &pem, &len) != 0)
                return ts_error_set(err, TS_ERR_AUTH,
                                    "origin %s: the store keeps no certificate of serial '%s' "
                                    "for it", origin, serial);
        }
    }
    struct verify_origin *o = &v->origins[v->count];
    memset(o, 0, sizeof(*o));
    struct pki_identity who;
    char found[TS_SERIAL_BYTES_MAX + 1] = "";
    int rc = pki_verify_cert(v->ca_pem, v->ca_len, pem, len, &who, &cerr);
    if (rc != 0) {
        rc = ts_error_set(err, TS_ERR_AUTH,
                          "origin %s: its certificate does not chain to the trial CA %s: %s",
                          origin, cfg->ca, cerr.msg);
        goto out_free_pem;
    }
    if (pki_cert_serial_hex(pem, len, found, sizeof(found), &cerr) != 0 ||
        strcmp(found, serial) != 0) {
        rc = ts_error_set(err, TS_ERR_AUTH,
                          "origin %s: batches name certificate serial '%s' but the certificate "
                          "kept for it has serial '%s'", origin, serial, found);
        goto out_free_pem;
    }
    if (strcmp(who.trial, cfg->trial) != 0 || strcmp(who.id, origin) != 0) {
        rc = ts_error_set(err, TS_ERR_AUTH,
                          "origin %s: its certificate names trialsync://%s/%s/%s, not "
                          "trial %s and id %s",
                          origin, who.trial, pki_role_name(who.role), who.id, cfg->trial,
                          origin);
        goto out_free_pem;
    }
    /* Only nodes sign oplog batches; a node signs its own chain in its own role. */
    if ((who.role != PKI_ROLE_HUB && who.role != PKI_ROLE_SITE) ||
        (own && who.role != cfg->role)) {
        rc = ts_error_set(err, TS_ERR_AUTH,
                          "origin %s: its certificate's role is %s, which may not sign "
                          "this chain",
                          origin, pki_role_name(who.role));
        goto out_free_pem;
    }
    rc = pki_cert_validity(pem, len, &o->not_before_s, &o->not_after_s, &cerr);
    if (rc == 0)
        rc = crypto_pubkey_from_cert(pem, len, &o->key, &cerr);
    if (rc != 0) {
        rc = ts_error_set(err, TS_ERR_AUTH, "origin %s: %s", origin, cerr.msg);
        goto out_free_pem;
    }
    if (v->crl_pem != NULL &&
        pki_crl_revoked(v->crl_pem, v->crl_len, serial, &o->revoked_at_s, NULL) != 1)
        o->revoked_at_s = 0;
    snprintf(o->origin, sizeof(o->origin), "%s", origin);
    snprintf(o->serial, sizeof(o->serial), "%s", serial);
    v->count++;
out_free_pem:
    free(pem);
    return rc;
}

/* Checks the times of the entries pending since the last signed point. */
static int pending_check(struct verify_ctx *v, const struct verify_origin *o)
{
    const struct verify_pending *p = &v->pending;
    if (p->count == 0)
        return 0;
    const char *lane = p->lane == LANE_SAFETY ? "safety" : "bulk";
    int64_t min_s = (int64_t)(p->min_wall_ms / 1000);
    int64_t max_s = p->max_wall_ms / 1000 > (uint64_t)INT64_MAX ? INT64_MAX
                                                                 : (int64_t)(p->max_wall_ms / 1000);
    if (min_s < o->not_before_s || max_s > o->not_after_s) {
        bool early = min_s < o->not_before_s;
        char at[32], from[32], to[32];
        time_text(early ? min_s : max_s, at);
        time_text(o->not_before_s, from);
        time_text(o->not_after_s, to);
        snprintf(v->failure, sizeof(v->failure),
                 "origin %s: entry %s/%s/%" PRIu64 " was written at %s, when its certificate "
                 "(serial %s) was not valid (valid from %s to %s)",
                 o->origin, o->origin, lane, early ? p->min_seq : p->max_seq, at, o->serial,
                 from, to);
        return TS_ERR_AUTH;
    }
    if (o->revoked_at_s != 0 && p->max_wall_ms > (uint64_t)o->revoked_at_s * 1000) {
        char at[32], when[32];
        time_text(max_s, at);
        time_text(o->revoked_at_s, when);
        snprintf(v->failure, sizeof(v->failure),
                 "origin %s: entry %s/%s/%" PRIu64 " was signed at %s with certificate %s, "
                 "revoked at %s",
                 o->origin, o->origin, lane, p->max_seq, at, o->serial, when);
        return TS_ERR_AUTH;
    }
    return 0;
}

static int verify_cb(void *ctx, const char *origin, const char *serial, const uint8_t *msg,
                     size_t len, const uint8_t *sig, size_t sig_len)
{
    struct verify_ctx *v = ctx;
    struct verify_origin *o = origin_find(v, origin, serial);
    if (o == NULL) {
        struct ts_error err = {0};
        if (origin_check(v, origin, serial, &err) != 0) {
            snprintf(v->failure, sizeof(v->failure), "%s", err.msg);
            return TS_ERR_AUTH;
        }
        o = origin_find(v, origin, serial);
    }
    if (!crypto_verify(o->key, msg, len, sig, sig_len))
        return TS_ERR_SIGNATURE;
    int rc = pending_check(v, o);
    memset(&v->pending, 0, sizeof(v->pending));
    return rc;
}

/* Each entry has a time; checked against its signer at the signed point. */
static int entry_cb(void *ctx, const struct entry *e, struct ts_error *err)
{
    struct verify_ctx *v = ctx;
    struct verify_pending *p = &v->pending;
    if (e->wall_ms == 0)
        return ts_error_set(err, TS_ERR_AUTH, "origin %s: entry %s/%s/%" PRIu64 " was written "
                            "at no time at all", e->origin, e->origin,
                            e->lane == LANE_SAFETY ? "safety" : "bulk", e->seq);
    if (p->count > 0 && (p->lane != e->lane || strcmp(p->origin, e->origin) != 0))
        memset(p, 0, sizeof(*p));  /* a chain's tail past its last signed point */
    if (p->count == 0) {
        snprintf(p->origin, sizeof(p->origin), "%s", e->origin);
        p->lane = e->lane;
        p->min_seq = p->max_seq = e->seq;
        p->min_wall_ms = p->max_wall_ms = e->wall_ms;
    }
    if (e->wall_ms < p->min_wall_ms) {
        p->min_wall_ms = e->wall_ms;
        p->min_seq = e->seq;
    }
    if (e->wall_ms > p->max_wall_ms) {
        p->max_wall_ms = e->wall_ms;
        p->max_seq = e->seq;
    }
    p->count++;
    v->entries_full++;
    return 0;
}

static void verify_ctx_free(struct verify_ctx *v)
{
    for (size_t i = 0; i < v->count; i++)
        crypto_pubkey_free(v->origins[i].key);
    free(v->crl_pem);
    free(v->ca_pem);
    free(v);
}

/* The node's CRL, when it has one the trial CA signed (revocation times). */
static void crl_load(struct verify_ctx *v)
{
    int64_t number = -1;
    if (v->cfg->crl[0] == '\0' ||
        pki_read_file(v->cfg->crl, &v->crl_pem, &v->crl_len, NULL) != 0)
        return;
    if (pki_crl_check(v->ca_pem, v->ca_len, v->crl_pem, v->crl_len, &number, NULL) != 0) {
        free(v->crl_pem);
        v->crl_pem = NULL;
    }
}

/* ---- --peer: comparing with a running peer ------------------------------- */

/* What the stopped node holds, read from its store before it is closed. */
struct verify_local {
    struct vv_item *vv;   /* sorted by (origin, lane); malloc'ed */
    size_t vv_count;
    uint8_t digest[TS_HASH_BYTES];
    bool holes;           /* some entry is held only as a hole */
};

static int vv_item_cmp(const void *a, const void *b)
{
    const struct vv_item *x = a, *y = b;
    int c = strcmp(x->origin, y->origin);
    if (c != 0)
        return c;
    return (int)x->lane - (int)y->lane;
}

static const char *lane_word(uint8_t lane)
{
    return lane == LANE_SAFETY ? "safety" : "bulk";
}

static void hex_text(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/*
 * GETs path from the peer's API.  Returns the answer's JSON object (the
 * caller json_decref()s it), or NULL with the reason printed.
 */
static json_t *peer_get(const struct config *pcfg, const char *path)
{
    struct client_response res;
    struct ts_error err = {0};
    if (client_request(pcfg, "GET", path, NULL, &res, &err) != 0) {
        cli_fail("peer %s: its API cannot be reached (--peer needs it running): %s", pcfg->id,
                 err.msg);
        return NULL;
    }
    json_t *j = NULL;
    if (res.status != 200) {
        cli_fail("peer %s: GET %s answered %d: %.200s", pcfg->id, path, res.status, res.body);
    } else {
        j = json_loads(res.body, 0, NULL);
        if (!json_is_object(j)) {
            json_decref(j);
            j = NULL;
            cli_fail("peer %s: GET %s did not answer a JSON object", pcfg->id, path);
        }
    }
    client_response_release(&res);
    return j;
}

/*
 * Reads the peer's version_vector from its status into *out (malloc'ed,
 * sorted by (origin, lane)).  Returns 0, or -1 with the reason printed when
 * it is malformed: every item checked, at most VERIFY_PEER_CHAINS_MAX.
 */
static int peer_vv_parse(const struct config *pcfg, json_t *status, struct vv_item **out,
                         size_t *count)
{
    json_t *arr = json_object_get(status, "version_vector");
    *out = NULL;
    *count = 0;
    if (!json_is_array(arr)) {
        cli_fail("peer %s: its status has no version_vector", pcfg->id);
        return -1;
    }
    size_t n = json_array_size(arr);
    if (n > VERIFY_PEER_CHAINS_MAX) {
        cli_fail("peer %s: its version vector names %zu chains, more than %d", pcfg->id, n,
                 VERIFY_PEER_CHAINS_MAX);
        return -1;
    }
    struct vv_item *vv = calloc(n > 0 ? n : 1, sizeof(*vv));
    if (vv == NULL) {
        cli_fail("out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_array_get(arr, i);
        const char *origin = json_string_value(json_object_get(it, "origin"));
        const char *lane = json_string_value(json_object_get(it, "lane"));
        json_t *seq = json_object_get(it, "seq");
        if (origin == NULL || origin[0] == '\0' || strlen(origin) > TS_ID_BYTES_MAX ||
            lane == NULL || (strcmp(lane, "bulk") != 0 && strcmp(lane, "safety") != 0) ||
            !json_is_integer(seq) || json_integer_value(seq) < 0) {
            free(vv);
            cli_fail("peer %s: item %zu of its version vector is malformed", pcfg->id, i);
            return -1;
        }
        snprintf(vv[i].origin, sizeof(vv[i].origin), "%s", origin);
        vv[i].lane = strcmp(lane, "safety") == 0 ? LANE_SAFETY : LANE_BULK;
        vv[i].seq = (uint64_t)json_integer_value(seq);
    }
    if (n > 1)
        qsort(vv, n, sizeof(*vv), vv_item_cmp);
    for (size_t i = 1; i < n; i++) {
        if (vv_item_cmp(&vv[i - 1], &vv[i]) == 0) {
            cli_fail("peer %s: its version vector names %s/%s twice", pcfg->id, vv[i].origin,
                     lane_word(vv[i].lane));
            free(vv);
            return -1;
        }
    }
    *out = vv;
    *count = n;
    return 0;
}

/*
 * Prints each chain's heads here and at the peer (a chain one side lacks
 * counts as seq 0 there).  Returns how many chains differ; *ahead_here and
 * *ahead_peer count which side is ahead.
 */
static size_t vv_report(const char *peer_id, const struct vv_item *a, size_t na,
                        const struct vv_item *b, size_t nb, size_t *ahead_here,
                        size_t *ahead_peer)
{
    size_t i = 0, j = 0;
    *ahead_here = 0;
    *ahead_peer = 0;
    while (i < na || j < nb) {
        int c = i == na ? 1 : j == nb ? -1 : vv_item_cmp(&a[i], &b[j]);
        const struct vv_item *it = c <= 0 ? &a[i] : &b[j];
        uint64_t here = c <= 0 ? a[i].seq : 0;
        uint64_t there = c >= 0 ? b[j].seq : 0;
        if (here == there)
            printf("  %s/%s: equal at seq %" PRIu64 "\n", it->origin, lane_word(it->lane), here);
        else if (here > there)
            printf("  %s/%s: this node ahead by %" PRIu64 " (seq %" PRIu64 "; peer %s at %" PRIu64
                   ")\n", it->origin, lane_word(it->lane), here - there, here, peer_id, there);
        else
            printf("  %s/%s: peer %s ahead by %" PRIu64 " (seq %" PRIu64 "; this node at %" PRIu64
                   ")\n", it->origin, lane_word(it->lane), peer_id, there - here, there, here);
        if (here > there)
            (*ahead_here)++;
        if (there > here)
            (*ahead_peer)++;
        if (c <= 0)
            i++;
        if (c >= 0)
            j++;
    }
    return *ahead_here + *ahead_peer;
}

/*
 * Compares the stopped node (what lo holds) with the running peer whose
 * directory is peer_dir.  Returns 0 when nothing disagrees (a side merely
 * ahead is reported, not a failure), 1 with the reason printed otherwise.
 */
static int peer_compare(const struct config *cfg, const struct verify_local *lo,
                        const char *peer_dir)
{
    static struct config pcfg;
    struct ts_error err = {0};
    int rc = 1;
    if (config_load_dir(peer_dir, &pcfg, &err) != 0)
        return cli_fail("--peer %s: %s", peer_dir, err.msg);
    if (strcmp(pcfg.id, cfg->id) == 0)
        return cli_fail("--peer %s is node %s itself: name another node", peer_dir, pcfg.id);
    if (strcmp(pcfg.trial, cfg->trial) != 0)
        return cli_fail("--peer %s is a node of trial %s, not %s", peer_dir, pcfg.trial,
                        cfg->trial);
    json_t *status = peer_get(&pcfg, "/v1/status");
    if (status == NULL)
        return 1;
    json_t *dj = peer_get(&pcfg, "/v1/digest");
    struct vv_item *pvv = NULL;
    size_t pvv_count = 0;
    if (dj == NULL || peer_vv_parse(&pcfg, status, &pvv, &pvv_count) != 0)
        goto out_free_json;
    const char *pdigest = json_string_value(json_object_get(dj, "digest"));
    if (pdigest == NULL || strlen(pdigest) != 2 * TS_HASH_BYTES ||
        strspn(pdigest, "0123456789abcdef") != 2 * TS_HASH_BYTES) {
        cli_fail("peer %s: its digest answer is malformed", pcfg.id);
        goto out_free_vv;
    }
    const char *prole = json_string_value(json_object_get(status, "role"));
    bool peer_site = prole == NULL || strcmp(prole, "hub") != 0;
    char here_digest[2 * TS_HASH_BYTES + 1];
    hex_text(lo->digest, TS_HASH_BYTES, here_digest);

    printf("compared with running peer %s (%s):\n", pcfg.id, prole != NULL ? prole : "?");
    size_t ahead_here = 0, ahead_peer = 0;
    if (vv_report(pcfg.id, lo->vv, lo->vv_count, pvv, pvv_count, &ahead_here, &ahead_peer) != 0) {
        printf("version vectors differ: this node ahead in %zu chain(s), peer %s ahead in %zu; "
               "state digests not compared (being ahead or behind is not a failure)\n",
               ahead_here, pcfg.id, ahead_peer);
        rc = 0;
    } else if (lo->holes || peer_site) {
        /* A site holds entries scoped to other sites as holes, which reach
         * no state: equal vectors need not mean equal states then. */
        printf("version vectors equal (%zu chains); state digests not compared: %s\n",
               lo->vv_count, lo->holes ? "this node holds entries as holes"
                                       : "the peer is a site and may hold entries as holes");
        rc = 0;
    } else if (strcmp(here_digest, pdigest) != 0) {
        cli_fail("state digests differ with equal version vectors (%zu chains): node %s has %s, "
                 "peer %s has %s", lo->vv_count, cfg->id, here_digest, pcfg.id, pdigest);
    } else {
        printf("version vectors equal (%zu chains) and state digests equal: %s\n", lo->vv_count,
               here_digest);
        rc = 0;
    }
out_free_vv:
    free(pvv);
out_free_json:
    json_decref(dj);
    json_decref(status);
    return rc;
}

void cli_verify_print(const struct config *cfg, const char *what,
                      const struct cli_verify_summary *sum)
{
    printf("%s %s verifies: %llu entries, every chain and signature checked; "
           "%zu origin certificates chain to the trial CA and were valid when they signed; "
           "state rebuilt from the oplog equals the stored state (%llu fields)\n",
           what, cfg->id, (unsigned long long)sum->entries, sum->origins,
           (unsigned long long)sum->fields);
}

int cli_verify_store(const struct config *cfg, const char *dir, bool readonly,
                     struct verify_local *lo, struct cli_verify_summary *sum,
                     struct ts_error *err)
{
    memset(sum, 0, sizeof(*sum));
    sum->stage = CLI_VERIFY_STAGE_SETUP;
    struct verify_ctx *v = calloc(1, sizeof(*v));
    if (v == NULL)
        return ts_error_set(err, TS_ERR_NOMEM, "out of memory");
    v->cfg = cfg;
    if (pki_read_file(cfg->ca, &v->ca_pem, &v->ca_len, err) != 0) {
        verify_ctx_free(v);
        char why[sizeof(err->msg)];
        snprintf(why, sizeof(why), "%s", err->msg);
        return ts_error_set(err, TS_ERR_CONFIG, "cannot read the trial CA certificate: %s", why);
    }
    char *own = NULL;
    size_t own_len = 0;
    if (pki_read_file(cfg->cert, &own, &own_len, err) != 0 ||
        pki_cert_serial_hex(own, own_len, v->own_serial, sizeof(v->own_serial), err) != 0) {
        free(own);
        verify_ctx_free(v);
        char why[sizeof(err->msg)];
        snprintf(why, sizeof(why), "%s", err->msg);
        return ts_error_set(err, TS_ERR_CONFIG, "cannot read this node's certificate: %s", why);
    }
    free(own);
    crl_load(v);
    int rc = readonly ? store_open_readonly(dir, &v->store, err) : store_open(dir, &v->store, err);
    if (rc != 0) {
        verify_ctx_free(v);
        if (!readonly) {
            char why[sizeof(err->msg)];
            snprintf(why, sizeof(why), "%s", err->msg);
            ts_error_set(err, rc, "%s (stop the node first)", why);
        }
        return rc;
    }
    sum->stage = CLI_VERIFY_STAGE_CHECK;
    uint64_t fields = 0;
    rc = store_verify_entries(v->store, cfg->trial, verify_cb, entry_cb, v, err);
    if (rc != 0 && v->failure[0] != '\0')
        snprintf(err->msg, sizeof(err->msg), "%s", v->failure);
    if (rc == 0)
        rc = store_verify_state(v->store, &fields, err);
    struct store_stats st;
    memset(&st, 0, sizeof(st));
    store_stats(v->store, &st);
    if (rc == 0 && lo != NULL) {
        rc = store_vv(v->store, &lo->vv, &lo->vv_count);
        if (rc == 0)
            rc = store_digest(v->store, lo->digest);
        if (rc != 0)
            ts_error_set(err, rc, "cannot read its version vector and digest: %s",
                         ts_strerror(rc));
        /* Chains are whole from seq 1 (just checked): each head is its count. */
        uint64_t held = 0;
        for (size_t i = 0; i < lo->vv_count; i++)
            held += lo->vv[i].seq;
        lo->holes = held > v->entries_full;
    }
    store_close(v->store);
    sum->entries = st.entries;
    sum->fields = fields;
    sum->origins = v->count;
    verify_ctx_free(v);
    return rc;
}

static void verify_usage(FILE *out)
{
    fputs(VERIFY_USAGE, out);
}

int cmd_verify(int argc, char **argv)
{
    static const struct option opts[] = {
        {"node", required_argument, NULL, 'n'},
        {"peer", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *node_dir = NULL, *peer_dir = NULL;
    int c;
    optind = 1;
    while ((c = cli_getopt(argc, argv, opts, "verify")) != -1) {
        switch (c) {
        case 'n': node_dir = optarg; break;
        case 'p': peer_dir = optarg; break;
        case 'h': fputs(VERIFY_USAGE, stdout); return 0;
        default: fputs(VERIFY_USAGE, stderr); return 2;
        }
    }
    if (node_dir == NULL)
        return cli_usage_error("verify", verify_usage, "--node NODEDIR is required");
    if (optind != argc)
        return cli_usage_error("verify", verify_usage, "unexpected argument '%s'", argv[optind]);
    static struct config cfg;
    struct ts_error err = {0};
    if (config_load_dir(node_dir, &cfg, &err) != 0)
        return cli_fail("%s", err.msg);
    struct verify_local lo;
    memset(&lo, 0, sizeof(lo));
    struct cli_verify_summary sum;
    int rc = cli_verify_store(&cfg, cfg.data_dir, false, peer_dir != NULL ? &lo : NULL, &sum,
                              &err);
    if (rc != 0) {
        free(lo.vv);
        if (sum.stage == CLI_VERIFY_STAGE_SETUP)
            return cli_fail("%s", err.msg);
        return cli_fail("store of node %s does NOT verify: %s", cfg.id, err.msg);
    }
    cli_verify_print(&cfg, "store of node", &sum);
    if (peer_dir == NULL)
        return 0;
    /* The vector is sorted already; sorting again costs nothing and makes the
     * merge in vv_report independent of the store's key order. */
    if (lo.vv_count > 1)
        qsort(lo.vv, lo.vv_count, sizeof(*lo.vv), vv_item_cmp);
    rc = peer_compare(&cfg, &lo, peer_dir);
    free(lo.vv);
    return rc;
}
