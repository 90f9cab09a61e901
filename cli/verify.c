/*
 * verify.c: `trialsync verify --node NODEDIR`: checks a stopped node's store
 * offline and proves three things, naming the first thing that fails:
 *
 * 1. Who signed: every origin that has a chain in the store has a certificate
 *    (the node's own node.crt, or the one kept in the store's metadata,
 *    "cert/<origin>", when the origin's entries first arrived) that chains
 *    to the trial CA of node.conf (time and revocation aside, as a receiver
 *    checks it), whose URI SAN names this trial, a node role (hub or site;
 *    the node's own role for its own chain) and exactly that origin.  The
 *    certificate store inside the store is never trusted on its own.
 * 2. What was signed: every chain's hashes from seq 1 and every stored batch
 *    signature against that certificate's key (store_verify_entries), and
 *    every entry's wall time inside its certificate's validity period (the
 *    certificate was valid when the entry was signed).
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

/* Far above the origins of one trial (a few hubs and a few hundred sites). */
#define VERIFY_ORIGINS_MAX 4096

/* An origin whose certificate has been checked. */
struct verify_origin {
    char origin[TS_ID_BYTES_MAX + 1];
    struct crypto_pubkey *key;
    int64_t not_before_s;
    int64_t not_after_s;
    uint64_t entries;
};

struct verify_ctx {
    struct store *store;
    const struct config *cfg;
    char *ca_pem;
    size_t ca_len;
    struct verify_origin origins[VERIFY_ORIGINS_MAX];
    size_t count;
    struct verify_origin *last;  /* entries come chain by chain: a one-slot cache */
};

static const char VERIFY_USAGE[] =
    "usage: trialsync verify --node NODEDIR\n"
    "\n"
    "Checks a stopped node's store (stop the node first) and exits 1 naming the\n"
    "first thing that fails:\n"
    "  - every origin's certificate (node.crt for the node itself, the one kept in\n"
    "    the store for others) chains to the trial CA (ca.crt of node.conf), names\n"
    "    this trial, a node role and exactly that origin in its URI SAN;\n"
    "  - every hash chain from its first entry, and every batch signature, with\n"
    "    that certificate's key;\n"
    "  - every entry was written while its certificate was valid (wall time within\n"
    "    notBefore..notAfter);\n"
    "  - the state rebuilt from the oplog equals the stored state, field by field\n"
    "    (a difference is named by record and field); entries held only as holes\n"
    "    reach no state and are skipped.\n"
    "Comparing with a running peer (--peer) is not implemented yet.\n";

static struct verify_origin *origin_find(struct verify_ctx *v, const char *origin)
{
    if (v->last != NULL && strcmp(v->last->origin, origin) == 0)
        return v->last;
    for (size_t i = 0; i < v->count; i++)
        if (strcmp(v->origins[i].origin, origin) == 0)
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
 * Loads and checks the certificate of origin (see the file comment, 1).
 * Returns 0 with the origin added, or TS_ERR_AUTH with err naming the origin
 * and why.
 */
static int origin_check(struct verify_ctx *v, const char *origin, struct ts_error *err)
{
    const struct config *cfg = v->cfg;
    bool own = strcmp(origin, cfg->id) == 0;
    char *pem = NULL;
    size_t len = 0;
    struct ts_error cerr = {0};
    if (v->count == VERIFY_ORIGINS_MAX)
        return ts_error_set(err, TS_ERR_TOOBIG, "more than %d origins", VERIFY_ORIGINS_MAX);
    if (own) {
        if (pki_read_file(cfg->cert, &pem, &len, &cerr) != 0)
            return ts_error_set(err, TS_ERR_AUTH, "origin %s (this node): %s", origin, cerr.msg);
    } else {
        char key[TS_ID_BYTES_MAX + 8];
        snprintf(key, sizeof(key), "cert/%s", origin);
        if (store_meta_get(v->store, key, &pem, &len) != 0)
            return ts_error_set(err, TS_ERR_AUTH,
                                "origin %s: the store keeps no certificate for it", origin);
    }
    struct verify_origin *o = &v->origins[v->count];
    memset(o, 0, sizeof(*o));
    struct pki_identity who;
    int rc = pki_verify_cert(v->ca_pem, v->ca_len, pem, len, &who, &cerr);
    if (rc != 0) {
        rc = ts_error_set(err, TS_ERR_AUTH,
                          "origin %s: its certificate does not chain to the trial CA %s: %s",
                          origin, cfg->ca, cerr.msg);
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
    snprintf(o->origin, sizeof(o->origin), "%s", origin);
    v->count++;
out_free_pem:
    free(pem);
    return rc;
}

/* Checks the certificate of every origin that has a chain in the store. */
static int origins_check(struct verify_ctx *v, struct ts_error *err)
{
    struct vv_item *vv = NULL;
    size_t n = 0;
    int rc = store_vv(v->store, &vv, &n);
    if (rc != 0)
        return ts_error_set(err, rc, "cannot read the version vector: %s", ts_strerror(rc));
    for (size_t i = 0; i < n && rc == 0; i++)
        if (origin_find(v, vv[i].origin) == NULL)
            rc = origin_check(v, vv[i].origin, err);
    free(vv);
    return rc;
}

static int verify_cb(void *ctx, const char *origin, const uint8_t *msg, size_t len,
                     const uint8_t *sig, size_t sig_len)
{
    struct verify_origin *o = origin_find(ctx, origin);
    if (o == NULL)
        return TS_ERR_AUTH;  /* a chain with no head: store_verify names it */
    return crypto_verify(o->key, msg, len, sig, sig_len) ? 0 : TS_ERR_SIGNATURE;
}

/* Each entry was written while its origin's certificate was valid. */
static int entry_cb(void *ctx, const struct entry *e, struct ts_error *err)
{
    struct verify_origin *o = origin_find(ctx, e->origin);
    if (o == NULL)
        return ts_error_set(err, TS_ERR_AUTH, "entry %s/%u/%" PRIu64 ": origin %s has no head",
                            e->origin, (unsigned)e->lane, e->seq, e->origin);
    o->entries++;
    int64_t wall_s = e->wall_ms > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)(e->wall_ms / 1000);
    if (e->wall_ms == 0 || wall_s < o->not_before_s || wall_s > o->not_after_s) {
        char at[32], from[32], to[32];
        time_text(wall_s, at);
        time_text(o->not_before_s, from);
        time_text(o->not_after_s, to);
        return ts_error_set(err, TS_ERR_AUTH,
                            "origin %s: entry %s/%s/%" PRIu64 " was written at %s, when its "
                            "certificate was not valid (valid from %s to %s)",
                            e->origin, e->origin, e->lane == LANE_SAFETY ? "safety" : "bulk",
                            e->seq, e->wall_ms == 0 ? "no time at all" : at, from, to);
    }
    return 0;
}

static void verify_ctx_free(struct verify_ctx *v)
{
    for (size_t i = 0; i < v->count; i++)
        crypto_pubkey_free(v->origins[i].key);
    free(v->ca_pem);
    free(v);
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
    if (store_open(cfg.data_dir, &v->store, &err) != 0) {
        verify_ctx_free(v);
        return cli_fail("%s (stop the node first)", err.msg);
    }
    uint64_t fields = 0;
    int rc = origins_check(v, &err);
    if (rc == 0)
        rc = store_verify_entries(v->store, cfg.trial, verify_cb, entry_cb, v, &err);
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
