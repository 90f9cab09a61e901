/*
 * openssl_util.h: helpers shared by the files that include OpenSSL
 * (crypto.c, pki.c, tls.c).  Internal: nothing outside those files uses it.
 */
#ifndef TS_OPENSSL_UTIL_H
#define TS_OPENSSL_UTIL_H

#include <openssl/types.h>

#include "../proto/errors.h"

struct crypto_pass;

/*
 * Fills err with the printf-formatted account of what failed and the reasons
 * on OpenSSL's error queue, then empties the queue.  Returns code.
 */
int ossl_error(struct ts_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * A PEM passphrase callback that refuses: trialsync keys are protected by
 * file permissions, and a daemon must never block on a terminal prompt.
 */
int ossl_no_passphrase_cb(char *buf, int size, int rwflag, void *u);

/*
 * The project's one private-key loader (crypto_key_load_pass is it, wrapped):
 * checks the opened file (regular, ours, mode 0600 or stricter), reads the
 * PEM, decrypts it with pass's passphrase when it is encrypted (pass NULL: no
 * passphrase, never a prompt) and requires Ed25519.  On success *out is a new
 * key the caller frees.  Codes and messages as crypto_key_load_pass.
 */
int ossl_key_load(const char *path, struct crypto_pass *pass, EVP_PKEY **out,
                  struct ts_error *err);

#endif
