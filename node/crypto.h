/*
 * crypto.h: hashing, signing and key files (OpenSSL behind a narrow interface).
 *
 * Chain hashes are SHA-256; node keys are Ed25519 (fast, deterministic
 * signatures).  Private key files must be mode 0600 (no group or other bits)
 * and owned by the running user: crypto_key_load refuses anything else with
 * TS_ERR_PERM and a message naming the file and its mode.
 *
 * One loader reads every private key of the project (node, CA, admin):
 * crypto_key_load_pass here, and ossl_key_load (openssl_util.h) for the other
 * OpenSSL files.  A key may be encrypted only when its caller gives a
 * passphrase source (struct crypto_pass): the CLI does for the CA and admin
 * keys; trialsyncd never does, because a daemon restarts unattended and must
 * not wait for a person at a terminal, so node keys stay unencrypted and are
 * protected by their file mode.
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

/*
 * The longest passphrase taken from a pass file or a terminal: far beyond a
 * sensible passphrase, small enough to live on the stack.
 */
#define CRYPTO_PASS_BYTES_MAX 1024
/* A key encrypted here needs a passphrase of at least this many bytes. */
#define CRYPTO_PASS_BYTES_NEW_MIN 8

/*
 * Where the passphrase of an encrypted key comes from, and (once asked) the
 * passphrase itself, so one command asks a person only once.  Embed it, set
 * it up with crypto_pass_init and wipe it with crypto_pass_release.
 *  - file != NULL: the first line of that file (a secret file: regular, ours,
 *    mode 0600 or stricter, as a key file).
 *  - otherwise, when prompt is true and stdin is a terminal: asked there
 *    (without echo; twice when a new key is encrypted).
 *  - otherwise there is no passphrase and an encrypted key is refused.
 * The passphrase is read only when a key turns out to be encrypted (or when
 * one is to be encrypted): an unencrypted key never makes anyone type.
 */
struct crypto_pass {
    const char *file;   /* a pass file (the caller keeps the string), or NULL */
    bool prompt;        /* may ask on the terminal; never in trialsyncd */
    bool have;          /* text holds the passphrase */
    size_t len;
    char text[CRYPTO_PASS_BYTES_MAX + 1];
};

void crypto_pass_init(struct crypto_pass *p, const char *file, bool prompt);
/* Wipes the passphrase. */
void crypto_pass_release(struct crypto_pass *p);

/*
 * Reads the passphrase now, if not yet read: for_new_key says a key is about
 * to be encrypted with it (the terminal asks twice, and fewer than
 * CRYPTO_PASS_BYTES_NEW_MIN bytes are refused).  key_path names the key in
 * the prompt and in messages.  TS_ERR_AUTH when no source gives one, the
 * pass file's code (TS_ERR_PERM, TS_ERR_NOTFOUND, ...) when it is unusable.
 */
int crypto_pass_get(struct crypto_pass *p, const char *key_path, bool for_new_key,
                    struct ts_error *err);

/*
 * Loads a PEM Ed25519 private key after checking, on the opened file, that it
 * is regular, ours and mode 0600 or stricter.  pass is the passphrase source
 * for an encrypted key, or NULL for none (the daemon's node key).  Refusals:
 * TS_ERR_PERM (file type, owner, mode), TS_ERR_INVALID (not an Ed25519 PEM
 * key, or encrypted while pass is NULL), TS_ERR_AUTH (encrypted and no
 * passphrase, or a wrong one), each with a message naming the file.
 * OpenSSL's error queue is left empty.
 */
int crypto_key_load_pass(const char *path, struct crypto_pass *pass, struct crypto_key **out,
                         struct ts_error *err);
/* crypto_key_load_pass without a passphrase source: what trialsyncd uses. */
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

/*
 * Checks that a file the node trusts without it being secret (its config,
 * the CA certificate, the CRL) is a regular file owned by the effective user
 * or root and not writable by group or others; TS_ERR_PERM naming the file,
 * its mode and the fix (chmod go-w FILE), TS_ERR_NOTFOUND when it does not
 * exist.  what names the file in messages ("config file").
 */
int crypto_check_trusted_file(const char *path, const char *what, struct ts_error *err);

/* Fills buf with cryptographically random bytes. */
int crypto_random(uint8_t *buf, size_t len);

/*
 * A user's secret at rest: scrypt (RFC 7914) with a random 16-byte salt,
 * N = 2^CRYPTO_SCRYPT_LOG2_N, r = 8, p = 1, written as
 * "scrypt$<log2 N>$<r>$<p>$<salt base64>$<hash base64>" (a KIND_SECRET value).
 * The token itself is random (CRYPTO_TOKEN_BYTES), so the slow hash guards a
 * copied store or oplog against guessing, not a weak password.
 */
#define CRYPTO_SCRYPT_LOG2_N 15
#define CRYPTO_SECRET_TEXT_MAX 160
#define CRYPTO_TOKEN_BYTES 24

/* Hashes secret into out (cap bytes, at least CRYPTO_SECRET_TEXT_MAX). */
int crypto_secret_hash(const char *secret, char *out, size_t cap, struct ts_error *err);

/*
 * True when secret matches stored (a crypto_secret_hash text), compared in
 * constant time.  Parameters come from stored and are bounded (log2 N <= 20,
 * r <= 16, p <= 4), so a forged record cannot make a node spend unbounded
 * memory or time.
 */
bool crypto_secret_verify(const char *secret, const char *stored);

#endif
