/*
 * ts_store_forge: forges a stopped node's store the way someone with write
 * access to its RocksDB directory (but not the trial CA's key) could, for the
 * suites that prove `trialsync verify` notices (tests/fault/test_verify_forgery.sh):
 *
 *   ts_store_forge entry NODEDIR ORIGIN KEYFILE CERTFILE VALUE
 *       rewrites the first write of the head entry of ORIGIN's bulk chain to
 *       VALUE, re-signs every batch of that chain with KEYFILE, stores CERTFILE as ORIGIN's
 *       certificate and rewrites the record's state to match: only the
 *       certificate (not issued by the trial CA) gives the forgery away.
 *       Prints "forged ORIGIN/bulk/SEQ TYPE ID FIELD OLD -> VALUE".
 *   ts_store_forge state NODEDIR TYPE ID FIELD VALUE
 *       edits the stored state of one field in place: its first live write
 *       now shows VALUE.  The oplog is untouched.
 *
 * Test-only: uses store_debug.h, which nothing in the node may call.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../node/config.h"
#include "../../node/crypto.h"
#include "../../node/merge.h"
#include "../../node/pki.h"
#include "../../proto/codec.h"
#include "../../storage/store.h"
#include "../../storage/store_debug.h"

static int usage(void)
{
    fprintf(stderr, "usage: ts_store_forge entry NODEDIR ORIGIN KEYFILE CERTFILE VALUE\n"
                    "       ts_store_forge state NODEDIR TYPE ID FIELD VALUE\n");
    return 2;
}

static int sign_cb(void *ctx, const uint8_t *msg, size_t len, uint8_t *sig, size_t *sig_len)
{
    return crypto_sign(ctx, msg, len, sig, sig_len, NULL);
}

static int forge_entry(struct store *s, const struct config *cfg, char **argv)
{
    const char *origin = argv[0], *key_path = argv[1], *cert_path = argv[2], *value = argv[3];
    struct ts_error err = {0};
    struct entry_ref ref;
    memset(&ref, 0, sizeof(ref));
    snprintf(ref.origin, sizeof(ref.origin), "%s", origin);
    ref.lane = LANE_BULK;
    if (store_head(s, origin, LANE_BULK, &ref.seq, NULL) != 0 || ref.seq == 0) {
        fprintf(stderr, "ts_store_forge: no bulk chain of %s\n", origin);
        return 1;
    }
    struct entry e;
    if (store_entry_get(s, &ref, &e, &err) != 0 || e.writes_count == 0) {
        fprintf(stderr, "ts_store_forge: head entry of %s: %s\n", origin,
                err.msg[0] ? err.msg : "writes nothing");
        return 1;
    }
    char *old = e.writes[0].value;
    e.writes[0].value = (char *)value;
    uint8_t *bytes = NULL;
    size_t len = 0;
    int rc = codec_entry_encode(&e, &bytes, &len, &err);
    e.writes[0].value = old;
    struct crypto_key *key = NULL;
    char *pem = NULL;
    size_t pem_len = 0;
    if (rc == 0)
        rc = crypto_key_load(key_path, &key, &err);
    if (rc == 0)
        rc = pki_read_file(cert_path, &pem, &pem_len, &err);
    /* The batches name the forged certificate by its serial. */
    char serial[TS_SERIAL_BYTES_MAX + 1] = "";
    if (rc == 0)
        rc = pki_cert_serial_hex(pem, pem_len, serial, sizeof(serial), &err);
    uint8_t hash[TS_HASH_BYTES], msg[CODEC_SIGN_BYTES_MAX], sig[TS_SIG_BYTES_MAX];
    size_t sig_len = 0;
    if (rc == 0) {
        crypto_chain_hash(e.prev_hash, bytes, len, hash);
        int n = codec_batch_sign_bytes(cfg->trial, origin, serial, LANE_BULK, ref.seq, hash, msg,
                                       sizeof(msg));
        rc = n < 0 ? n : crypto_sign(key, msg, (size_t)n, sig, &sig_len, &err);
    }
    if (rc == 0)
        rc = store_debug_entry_replace(s, bytes, len, serial, sig, sig_len);
    /* Every earlier batch of the chain too, or their signatures give the new key away. */
    if (rc == 0)
        rc = store_debug_resign(s, cfg->trial, origin, LANE_BULK, serial, sign_cb, key);
    char cert_key[TS_ID_BYTES_MAX + TS_SERIAL_BYTES_MAX + 8];
    snprintf(cert_key, sizeof(cert_key), "cert/%s/%s", origin, serial);
    if (rc == 0)
        rc = store_meta_put(s, cert_key, pem, pem_len, true, &err);
    snprintf(cert_key, sizeof(cert_key), "cert/%s", origin);
    if (rc == 0)
        rc = store_meta_put(s, cert_key, pem, pem_len, true, &err);
    if (rc == 0)
        printf("forged %s/bulk/%" PRIu64 " %s %s %s %s -> %s\n", origin, ref.seq,
               e.record_type, e.record_id, e.writes[0].field, old, value);
    else
        fprintf(stderr, "ts_store_forge: %s (%s)\n", err.msg, ts_strerror(rc));
    free(pem);
    crypto_key_free(key);
    free(bytes);
    entry_release(&e);
    return rc == 0 ? 0 : 1;
}

static int forge_state(struct store *s, char **argv)
{
    const char *type = argv[0], *id = argv[1], *field = argv[2], *value = argv[3];
    struct field_state st;
    if (store_field_get(s, type, id, field, &st) != 0 || st.live_count == 0) {
        fprintf(stderr, "ts_store_forge: %s %s has no state for %s\n", type, id, field);
        return 1;
    }
    char *copy = strdup(value);
    if (copy == NULL)
        return 1;
    free(st.live[0].value);
    st.live[0].value = copy;
    uint8_t *enc = NULL;
    size_t len = 0;
    int rc = merge_field_encode(&st, &enc, &len);
    if (rc == 0)
        rc = store_debug_state_put(s, type, id, field, enc, len);
    free(enc);
    field_state_release(&st);
    if (rc != 0) {
        fprintf(stderr, "ts_store_forge: cannot write the state: %s\n", ts_strerror(rc));
        return 1;
    }
    printf("edited %s %s %s -> %s\n", type, id, field, value);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 7 || (strcmp(argv[1], "entry") != 0 && strcmp(argv[1], "state") != 0))
        return usage();
    static struct config cfg;
    struct ts_error err = {0};
    struct store *s = NULL;
    if (config_load_dir(argv[2], &cfg, &err) != 0 || store_open(cfg.data_dir, &s, &err) != 0) {
        fprintf(stderr, "ts_store_forge: %s\n", err.msg);
        return 1;
    }
    int rc = strcmp(argv[1], "entry") == 0 ? forge_entry(s, &cfg, argv + 3)
                                             : forge_state(s, argv + 3);
    store_close(s);
    return rc;
}
