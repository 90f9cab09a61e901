/*
 * verify.c: `trialsync verify --node NODEDIR`: checks a stopped node's store
 * offline: every chain's hashes from seq 1, every stored signature against
 * its origin's certificate (the node's own, or the one kept when the origin's
 * entries first arrived).  Names the first entry that fails.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../node/config.h"
#include "../node/crypto.h"
#include "../node/pki.h"
#include "../storage/store.h"
#include "cli.h"

#define VERIFY_ORIGINS_MAX 4096

struct verify_ctx {
    struct store *store;
    const struct config *cfg;
    char origins[VERIFY_ORIGINS_MAX][TS_ID_BYTES_MAX + 1];
    struct crypto_pubkey *keys[VERIFY_ORIGINS_MAX];
    size_t count;
};

static struct crypto_pubkey *key_of(struct verify_ctx *v, const char *origin)
{
    for (size_t i = 0; i < v->count; i++)
        if (strcmp(v->origins[i], origin) == 0)
            return v->keys[i];
    if (v->count == VERIFY_ORIGINS_MAX)
        return NULL;
    char *pem = NULL;
    size_t len = 0;
    if (strcmp(origin, v->cfg->id) == 0) {
        if (pki_read_file(v->cfg->cert, &pem, &len, NULL) != 0)
            return NULL;
    } else {
        char key[TS_ID_BYTES_MAX + 8];
        snprintf(key, sizeof(key), "cert/%s", origin);
        if (store_meta_get(v->store, key, &pem, &len) != 0)
            return NULL;
    }
    struct crypto_pubkey *pk = NULL;
    int rc = crypto_pubkey_from_cert(pem, len, &pk, NULL);
    free(pem);
    if (rc != 0)
        return NULL;
    snprintf(v->origins[v->count], sizeof(v->origins[0]), "%s", origin);
    v->keys[v->count++] = pk;
    return pk;
}

static int verify_cb(void *ctx, const char *origin, const uint8_t *msg, size_t len,
                     const uint8_t *sig, size_t sig_len)
{
    struct crypto_pubkey *pk = key_of(ctx, origin);
    if (pk == NULL)
        return TS_ERR_AUTH;
    return crypto_verify(pk, msg, len, sig, sig_len) ? 0 : TS_ERR_SIGNATURE;
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
        case 'h':
            printf("usage: trialsync verify --node NODEDIR\n\n"
                   "Checks a stopped node's store: every hash chain from its first entry and\n"
                   "every batch signature.  Prints the first entry that fails, exit 1.\n");
            return 0;
        default: return 2;
        }
    }
    if (node_dir == NULL || optind != argc) {
        fprintf(stderr, "usage: trialsync verify --node NODEDIR\n");
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
    if (store_open(cfg.data_dir, &v->store, &err) != 0) {
        free(v);
        return cli_fail("%s (stop the node first)", err.msg);
    }
    int rc = store_verify(v->store, cfg.trial, verify_cb, v, &err);
    struct store_stats st;
    memset(&st, 0, sizeof(st));
    store_stats(v->store, &st);
    store_close(v->store);
    for (size_t i = 0; i < v->count; i++)
        crypto_pubkey_free(v->keys[i]);
    free(v);
    if (rc != 0)
        return cli_fail("store of node %s does NOT verify: %s", cfg.id, err.msg);
    printf("store of node %s verifies: %llu entries, every chain and signature checked\n", cfg.id,
           (unsigned long long)st.entries);
    return 0;
}
