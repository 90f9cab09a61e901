/*
 * trace.h: the node's diagnostics, one line each on stderr.
 *
 * "2026-11-22T10:00:00.123Z hub1 warn peer 101: refused: certificate revoked"
 * The node id is set once at start; TRACE_DEBUG lines show only when
 * TRIALSYNC_TRACE=debug.
 */
#ifndef TS_TRACE_H
#define TS_TRACE_H

enum trace_level {
    TRACE_DEBUG,
    TRACE_INFO,
    TRACE_WARN,
    TRACE_ERROR,
};

void trace_init(const char *node_id);
void trace(enum trace_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
