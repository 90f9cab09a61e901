/*
 * crypto.h: hashing, signing and key files (OpenSSL behind a narrow interface).
 *
 * Chain hashes are SHA-256; node keys are Ed25519 (fast, deterministic
 * signatures).  Private key files must be mode 0600 (no group or other bits)
 * and owned by the running user: crypto_key_load refuses anything else with
 * TS_ERR_PERM and a message naming the file and its mode.
 */
#ifndef TS_CRYPTO_H
#define TS_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../proto/errors.h"
#include "../proto/limits.h"

struct crypto_key;      /* a private key */
struct crypto_pubkey;   /* a public key */

void crypto_sha256(const void *data, size_t len, uint8_t out[TS_HASH_BYTES]);

/* h(n) = SHA-256(h(n-1) || entry bytes n). */
void crypto_chain_hash(const uint8_t prev[TS_HASH_BYTES], const uint8_t *entry,
                       size_t len, uint8_t out[TS_HASH_BYTES]);

/* Loads a PEM private key; checks the file's mode first. */
int crypto_key_load(const char *path, struct crypto_key **out, struct ts_error *err);
void crypto_key_free(struct crypto_key *k);

/* Signs msg; *sig_len <= TS_SIG_BYTES_MAX. */
int crypto_sign(struct crypto_key *k, const uint8_t *msg, size_t len,
                uint8_t sig[TS_SIG_BYTES_MAX], size_t *sig_len, struct ts_error *err);

/* The public key of a PEM certificate (in memory). */
int crypto_pubkey_from_cert(const char *pem, size_t len, struct crypto_pubkey **out,
                            struct ts_error *err);
/* The public key of a private key. */
int crypto_pubkey_from_key(struct crypto_key *k, struct crypto_pubkey **out,
                           struct ts_error *err);
void crypto_pubkey_free(struct crypto_pubkey *p);

bool crypto_verify(struct crypto_pubkey *p, const uint8_t *msg, size_t len,
                   const uint8_t *sig, size_t sig_len);

/*
 * Checks that a secret file (key, API token) is a regular file with no group
 * or other permission bits; TS_ERR_PERM with the mode in the message.
 */
int crypto_check_secret_file(const char *path, struct ts_error *err);

/* Fills buf with cryptographically random bytes. */
int crypto_random(uint8_t *buf, size_t len);

#endif
