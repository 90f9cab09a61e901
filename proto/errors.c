/*
 * errors.c: names and messages of trialsync's error codes.
 */
#include "errors.h"

#include <stdarg.h>
#include <stdio.h>

const char *ts_strerror(int code)
{
    switch (code) {
    case TS_OK: return "ok";
    case TS_ERR_INVALID: return "invalid";
    case TS_ERR_NOMEM: return "out of memory";
    case TS_ERR_IO: return "i/o error";
    case TS_ERR_CORRUPT: return "corrupt";
    case TS_ERR_NOTFOUND: return "not found";
    case TS_ERR_EXISTS: return "already exists";
    case TS_ERR_TOOBIG: return "too big";
    case TS_ERR_AUTH: return "not authorized";
    case TS_ERR_DISKFULL: return "disk full";
    case TS_ERR_FORK: return "fork";
    case TS_ERR_CHAIN: return "broken chain";
    case TS_ERR_SIGNATURE: return "bad signature";
    case TS_ERR_GAP: return "gap";
    case TS_ERR_PERM: return "unsafe permissions";
    case TS_ERR_CONFIG: return "bad configuration";
    case TS_ERR_AGAIN: return "not yet";
    }
    return "unknown error";
}

int ts_error_set(struct ts_error *err, int code, const char *fmt, ...)
{
    if (err == NULL)
        return code;
    va_list ap;
    va_start(ap, fmt);
    err->code = code;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}
