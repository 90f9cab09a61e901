/*
 * trace.h: the node's diagnostics, one line each on stderr.
 *
 * "2026-11-22T10:00:00.123Z hub1 warn peer 101: refused: certificate revoked"
 * The node id is set once at start; TRACE_DEBUG lines show only when
 * TRIALSYNC_TRACE=debug.
 *
 * Under systemd, when stderr is the journal (JOURNAL_STREAM names it), each
 * line starts with its syslog priority, "<4>" for a warning, so journalctl
 * -p filters and colours them.
 *
 * A warning or error identical to one written less than
 * TRACE_REPEAT_WINDOW_MS ago (the same format string and the same
 * arguments: an unreachable hub retried every few seconds) is not written
 * again; the count is written once the window has passed, as the message
 * followed by "(repeated N times in the last M s)", when the message comes
 * again or is pushed out by others, or at trace_flush().
 *
 * Single-threaded: called from the loop thread only.
 */
#ifndef TS_TRACE_H
#define TS_TRACE_H

#include <stdint.h>
#include <stdio.h>

/* A minute: an operator reading the journal sees a failing peer at once and
 * then once a minute, not 24 times. */
#define TRACE_REPEAT_WINDOW_MS 60000u
/* Distinct failing messages tracked at once: a hub with a few unreachable
 * peers fits; more than this are written each time (never lost). */
#define TRACE_REPEAT_SLOTS 16

enum trace_level {
    TRACE_DEBUG,
    TRACE_INFO,
    TRACE_WARN,
    TRACE_ERROR,
};

void trace_init(const char *node_id);
void trace(enum trace_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes the counts of repeats held back (at shutdown). */
void trace_flush(void);
/* For tests: lines go to out (NULL: stderr again) and time comes from
 * clock_ms (NULL: the wall clock); forgets repeats held back. */
void trace_set_sink(FILE *out, uint64_t (*clock_ms)(void));

#endif
