/*
 * util.h: small helpers every module of the daemon shares.
 */
#ifndef TS_UTIL_H
#define TS_UTIL_H

#include <stddef.h>

/* The struct that embeds member ptr (libuv handles are embedded in their owners). */
#define container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
