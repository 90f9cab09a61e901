/*
 * openssl_util.h: helpers shared by the files that include OpenSSL
 * (crypto.c, pki.c, tls.c).  Internal: nothing outside those files uses it.
 */
#ifndef TS_OPENSSL_UTIL_H
#define TS_OPENSSL_UTIL_H

#include "../proto/errors.h"

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

#endif
