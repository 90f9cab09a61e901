/*
 * trace.c: diagnostics on stderr (see trace.h).
 */
#include "trace.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static char trace_node[72] = "-";
static enum trace_level trace_min = TRACE_INFO;

void trace_init(const char *node_id)
{
    snprintf(trace_node, sizeof(trace_node), "%s", node_id);
    const char *env = getenv("TRIALSYNC_TRACE");
    trace_min = (env != NULL && strcmp(env, "debug") == 0) ? TRACE_DEBUG : TRACE_INFO;
}

void trace(enum trace_level level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (level < trace_min)
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    time_t secs = tv.tv_sec;
    struct tm tm;
    gmtime_r(&secs, &tm);
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);

    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s.%03ldZ %s %s %s\n", when, (long)(tv.tv_usec / 1000), trace_node,
            names[level], line);
}
