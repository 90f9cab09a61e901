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
 * Comparing chain heads and the digest with a running peer (--peer) is not
 * done yet: see docs/security.md.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../node/config.h"
#include "../node/crypto.h"
#include "../node/pki.h"
#include "../storage/store.h"
#include "cli.h"

/* Far above the certificates of one trial (a few hubs, a few hundred sites,
 * each renewed a few times). */
#define VERIFY_ORIGINS_MAX 4096

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
};

static const char VERIFY_USAGE[] =
    "usage: trialsync verify --node NODEDIR\n"
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
    "Comparing with a running peer (--peer) is not implemented yet.\n";

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

int cmd_verify(int argc, char **argv)
{
    static const struct option opts[] = {
        {"node", required_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *node_dir = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'n': node_dir = optarg; break;
        case 'h': fputs(VERIFY_USAGE, stdout); return 0;
        default: return 2;
        }
    }
    if (node_dir == NULL || optind != argc) {
        fputs(VERIFY_USAGE, stderr);
        return 2;
    }
    static struct config cfg;
    struct ts_error err = {0};
    if (config_load_dir(node_dir, &cfg, &err) != 0)
        return cli_fail("%s", err.msg);
    struct verify_ctx *v = calloc(1, sizeof(*v));
    if (v == NULL)
        return cli_fail("out of memory");
    v->cfg = &cfg;
    if (pki_read_file(cfg.ca, &v->ca_pem, &v->ca_len, &err) != 0) {
        verify_ctx_free(v);
        return cli_fail("cannot read the trial CA certificate: %s", err.msg);
    }
    char *own = NULL;
    size_t own_len = 0;
    if (pki_read_file(cfg.cert, &own, &own_len, &err) != 0 ||
        pki_cert_serial_hex(own, own_len, v->own_serial, sizeof(v->own_serial), &err) != 0) {
        free(own);
        verify_ctx_free(v);
        return cli_fail("cannot read this node's certificate: %s", err.msg);
    }
    free(own);
    crl_load(v);
    if (store_open(cfg.data_dir, &v->store, &err) != 0) {
        verify_ctx_free(v);
        return cli_fail("%s (stop the node first)", err.msg);
    }
    uint64_t fields = 0;
    int rc = store_verify_entries(v->store, cfg.trial, verify_cb, entry_cb, v, &err);
    if (rc != 0 && v->failure[0] != '\0')
        snprintf(err.msg, sizeof(err.msg), "%s", v->failure);
    if (rc == 0)
        rc = store_verify_state(v->store, &fields, &err);
    struct store_stats st;
    memset(&st, 0, sizeof(st));
    store_stats(v->store, &st);
    store_close(v->store);
    size_t origins = v->count;
    verify_ctx_free(v);
    if (rc != 0)
        return cli_fail("store of node %s does NOT verify: %s", cfg.id, err.msg);
    printf("store of node %s verifies: %llu entries, every chain and signature checked; "
           "%zu origin certificates chain to the trial CA and were valid when they signed; "
           "state rebuilt from the oplog equals the stored state (%llu fields)\n",
           cfg.id, (unsigned long long)st.entries, origins, (unsigned long long)fields);
    return 0;
}
