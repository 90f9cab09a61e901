/*
 * trace.c: diagnostics on stderr (see trace.h).
 */
#include "trace.h"

#include <assert.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define TRACE_LINE_BYTES 2048

/* A warning or error written recently, whose repeats are being counted. */
struct trace_repeat {
    const char *fmt;        /* NULL: slot free */
    uint64_t hash;          /* of the formatted message */
    enum trace_level level;
    uint64_t first_ms;      /* when it was last written */
    uint32_t held;          /* repeats since then, not written */
    char line[TRACE_LINE_BYTES];
};

static char trace_node[72] = "-";
static enum trace_level trace_min = TRACE_INFO;
static bool trace_journal;
static FILE *trace_out;
static uint64_t (*trace_clock_ms)(void);
static struct trace_repeat trace_repeats[TRACE_REPEAT_SLOTS];

static uint64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)(tv.tv_usec / 1000);
}

/* systemd sets JOURNAL_STREAM=DEV:INODE of the stream it connected to
 * stderr; stderr redirected elsewhere since (a pipe, a file) does not match. */
static bool stderr_is_journal(void)
{
    const char *env = getenv("JOURNAL_STREAM");
    if (env == NULL)
        return false;
    unsigned long long dev = 0, ino = 0;
    if (sscanf(env, "%llu:%llu", &dev, &ino) != 2)
        return false;
    struct stat st;
    if (fstat(STDERR_FILENO, &st) != 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void trace_init(const char *node_id)
{
    snprintf(trace_node, sizeof(trace_node), "%s", node_id);
    const char *env = getenv("TRIALSYNC_TRACE");
    trace_min = (env != NULL && strcmp(env, "debug") == 0) ? TRACE_DEBUG : TRACE_INFO;
    trace_journal = stderr_is_journal();
}

void trace_set_sink(FILE *out, uint64_t (*clock_ms)(void))
{
    trace_out = out;
    trace_clock_ms = clock_ms;
    memset(trace_repeats, 0, sizeof(trace_repeats));
}

static void write_line(enum trace_level level, uint64_t now_ms, const char *line)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    /* syslog priorities: debug 7, info 6, warning 4, err 3. */
    static const int priorities[] = {7, 6, 4, 3};
    assert(level >= TRACE_DEBUG && level <= TRACE_ERROR);
    time_t secs = (time_t)(now_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    FILE *out = trace_out != NULL ? trace_out : stderr;
    if (trace_journal && trace_out == NULL)
        fprintf(out, "<%d>", priorities[level]);
    fprintf(out, "%s.%03uZ %s %s %s\n", when, (unsigned)(now_ms % 1000), trace_node,
            names[level], line);
}

/* The summary of a slot's held repeats, if any, then the slot is reset. */
static void repeat_write(struct trace_repeat *r, uint64_t now_ms)
{
    if (r->fmt != NULL && r->held > 0) {
        char line[TRACE_LINE_BYTES + 64];
        uint64_t secs = (now_ms - r->first_ms + 999) / 1000;
        snprintf(line, sizeof(line), "%s (repeated %u times in the last %llu s)", r->line,
                 r->held, (unsigned long long)secs);
        write_line(r->level, now_ms, line);
    }
    r->held = 0;
}

static uint64_t hash_text(const char *s)
{
    uint64_t h = 14695981039346656037ULL;  /* FNV-1a */
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

/* true when the line is a repeat to hold back; otherwise it is to be written
 * now (and is remembered, when a slot is free, to count its repeats). */
static bool repeat_held(enum trace_level level, const char *fmt, const char *line,
                        uint64_t now_ms)
{
    uint64_t h = hash_text(line);
    struct trace_repeat *oldest = &trace_repeats[0];
    for (int i = 0; i < TRACE_REPEAT_SLOTS; i++) {
        struct trace_repeat *r = &trace_repeats[i];
        if (r->fmt == fmt && r->hash == h && r->level == level && strcmp(r->line, line) == 0) {
            if (now_ms - r->first_ms < TRACE_REPEAT_WINDOW_MS) {
                r->held++;
                return true;
            }
            /* The window has passed: the count of those held back, and this
             * one opens a new window. */
            if (r->held > 0) {
                r->held++;
                repeat_write(r, now_ms);
                r->first_ms = now_ms;
                return true;
            }
            r->first_ms = now_ms;
            return false;
        }
        /* A free slot wins; among used ones, the least recently written. */
        if (oldest->fmt != NULL && (r->fmt == NULL || r->first_ms < oldest->first_ms))
            oldest = r;
    }
    /* A new message takes the free or the oldest slot; the oldest's count
     * is written first so no repeat goes unreported. */
    repeat_write(oldest, now_ms);
    oldest->fmt = fmt;
    oldest->hash = h;
    oldest->level = level;
    oldest->first_ms = now_ms;
    oldest->held = 0;
    snprintf(oldest->line, sizeof(oldest->line), "%s", line);
    return false;
}

void trace(enum trace_level level, const char *fmt, ...)
{
    if (level < trace_min)
        return;
    uint64_t now_ms = trace_clock_ms != NULL ? trace_clock_ms() : wall_ms();
    char line[TRACE_LINE_BYTES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (level >= TRACE_WARN && repeat_held(level, fmt, line, now_ms))
        return;
    write_line(level, now_ms, line);
}

void trace_flush(void)
{
    uint64_t now_ms = trace_clock_ms != NULL ? trace_clock_ms() : wall_ms();
    for (int i = 0; i < TRACE_REPEAT_SLOTS; i++)
        repeat_write(&trace_repeats[i], now_ms);
}
