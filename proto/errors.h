/*
 * errors.h: trialsync's error codes.
 *
 * Actions return 0 or one of these negative codes.  Library errors (RocksDB's
 * errptr, OpenSSL's error queue, protobuf-c's NULL) are converted into them at
 * the boundary, together with a message a person can act on in a
 * struct ts_error when the function takes one.
 */
#ifndef TS_ERRORS_H
#define TS_ERRORS_H

#include <stddef.h>

enum ts_err {
    TS_OK = 0,
    TS_ERR_INVALID = -1,   /* bad input: a value, a field, a frame */
    TS_ERR_NOMEM = -2,
    TS_ERR_IO = -3,        /* the disk or the network failed */
    TS_ERR_CORRUPT = -4,   /* stored or received bytes do not decode or verify */
    TS_ERR_NOTFOUND = -5,
    TS_ERR_EXISTS = -6,
    TS_ERR_TOOBIG = -7,    /* above a limit of limits.h */
    TS_ERR_AUTH = -8,      /* not allowed, or not authenticated */
    TS_ERR_DISKFULL = -9,  /* below the free-disk threshold */
    TS_ERR_FORK = -10,     /* two different entries for one (origin, lane, seq) */
    TS_ERR_CHAIN = -11,    /* an entry does not follow its chain */
    TS_ERR_SIGNATURE = -12,/* a batch signature does not verify */
    TS_ERR_GAP = -13,      /* a batch starts after the held head: entries missing */
    TS_ERR_PERM = -14,     /* a file's permissions are unsafe */
    TS_ERR_CONFIG = -15,   /* the node's configuration is wrong */
    TS_ERR_AGAIN = -16,    /* not yet: a missing dependency or a future time; retry later */
};

/* A message for a person, filled by the function that failed. */
struct ts_error {
    int code;
    char msg[512];
};

/* The short name of a code: "invalid", "corrupt", ... Never NULL. */
const char *ts_strerror(int code);

/*
 * Sets err (when not NULL) to code and a printf-formatted message; returns
 * code so a caller can write `return ts_error_set(err, TS_ERR_IO, ...)`.
 */
int ts_error_set(struct ts_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
