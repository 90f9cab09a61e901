/*
 * test_trace.c: trace lines carry the journald priority only when stderr
 * is the journal, and repeated identical warnings are summarised with a
 * count instead of written one by one.
 */
#include "unit.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../node/trace.h"

static uint64_t fake_now_ms;
static uint64_t fake_clock(void) { return fake_now_ms; }

static char *captured;
static size_t captured_len;
static FILE *sink;

static void sink_open(void)
{
    sink = open_memstream(&captured, &captured_len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(sink);
    fake_now_ms = 1700000000000ULL;
    trace_set_sink(sink, fake_clock);
}

/* Closes the sink; the caller frees the text. */
static char *sink_close(void)
{
    trace_set_sink(NULL, NULL);
    fclose(sink);
    sink = NULL;
    return captured;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void warn_unreachable(const char *host)
{
    trace(TRACE_WARN, "hub %s unreachable: connection refused", host);
}

static void test_trace_repeats_summarised(void)
{
    trace_init("site101");
    sink_open();
    /* 24 a minute, every 2.5 s, for a minute: one line, then one summary. */
    for (int i = 0; i < 24; i++) {
        warn_unreachable("10.0.0.1:7800");
        fake_now_ms += 2500;
    }
    trace_flush();
    char *out = sink_close();
    CU_ASSERT_EQUAL(count(out, "hub 10.0.0.1:7800 unreachable"), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "(repeated 23 times in the last 60 s)"));
    CU_ASSERT_EQUAL(count(out, "\n"), 2);
    CU_ASSERT_PTR_NULL(strstr(out, "<4>"));  /* not the journal */
    free(out);
}

static void test_trace_repeats_after_window_written_again(void)
{
    trace_init("site101");
    sink_open();
    warn_unreachable("h1:1");
    fake_now_ms += 10000;
    warn_unreachable("h1:1");                 /* held */
    fake_now_ms += TRACE_REPEAT_WINDOW_MS;
    warn_unreachable("h1:1");                 /* window passed: the summary, counting this one */
    char *out = sink_close();
    CU_ASSERT_EQUAL(count(out, "\n"), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "h1:1 unreachable: connection refused (repeated 2 times in the last 70 s)"));
    free(out);

    /* A single occurrence per window is written as it is, never summarised. */
    sink_open();
    for (int i = 0; i < 3; i++) {
        warn_unreachable("h2:1");
        fake_now_ms += TRACE_REPEAT_WINDOW_MS + 1;
    }
    trace_flush();
    out = sink_close();
    CU_ASSERT_EQUAL(count(out, "h2:1 unreachable: connection refused\n"), 3);
    CU_ASSERT_PTR_NULL(strstr(out, "repeated"));
    free(out);
}

static void test_trace_different_args_not_merged(void)
{
    trace_init("hub1");
    sink_open();
    warn_unreachable("a:1");
    warn_unreachable("b:1");
    warn_unreachable("a:1");
    trace(TRACE_INFO, "peer %s: connected", "101");
    trace(TRACE_INFO, "peer %s: connected", "101");  /* info lines are state changes: all kept */
    trace(TRACE_ERROR, "hub %s unreachable: connection refused", "a:1");  /* another format */
    char *out = sink_close();
    CU_ASSERT_EQUAL(count(out, "a:1 unreachable"), 2);  /* the warn once, the error once */
    CU_ASSERT_EQUAL(count(out, "b:1 unreachable"), 1);
    CU_ASSERT_EQUAL(count(out, "peer 101: connected"), 2);
    free(out);
}

static void test_trace_slots_full_none_lost(void)
{
    trace_init("hub1");
    sink_open();
    /* h0 fails three times (two held back), then more distinct failures
     * than there are slots push it out: its count is written then. */
    for (int i = 0; i < 3; i++)
        warn_unreachable("h0:1");
    char host[32];
    for (int i = 1; i <= TRACE_REPEAT_SLOTS; i++) {
        fake_now_ms++;
        snprintf(host, sizeof(host), "h%d:1", i);
        warn_unreachable(host);
    }
    char *out = sink_close();
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "h0:1 unreachable: connection refused (repeated 2 times"));
    CU_ASSERT_EQUAL(count(out, "\n"), 1 + 1 + TRACE_REPEAT_SLOTS);
    free(out);
}

static void test_trace_journal_priorities(void)
{
    /* JOURNAL_STREAM naming stderr's device and inode: the journal.  Here
     * stderr is whatever ctest gave us; point the variable at it. */
    struct stat st;
    CU_ASSERT_EQUAL_FATAL(fstat(2, &st), 0);
    char env[64];
    snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", env, 1);
    FILE *saved = stderr;
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(mem);
    trace_init("hub1");
    stderr = mem;  /* what write_line writes to when no sink is set */
    trace(TRACE_ERROR, "disk %s", "full");
    trace(TRACE_WARN, "peer %s: slow", "101");
    trace(TRACE_INFO, "peer %s: connected", "101");
    stderr = saved;
    fclose(mem);
    CU_ASSERT_EQUAL(strncmp(buf, "<3>", 3), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "\n<4>"));
    CU_ASSERT_PTR_NOT_NULL(strstr(buf, "\n<6>"));
    free(buf);

    /* A JOURNAL_STREAM that is not stderr (inherited, stderr redirected): plain. */
    setenv("JOURNAL_STREAM", "1:1", 1);
    trace_init("hub1");
    sink_open();
    trace(TRACE_ERROR, "disk %s", "full");
    char *out = sink_close();
    CU_ASSERT_PTR_NULL(strstr(out, "<3>"));
    free(out);
    unsetenv("JOURNAL_STREAM");
    trace_init("hub1");
}

int main(void)
{
    static const struct unit_test tests[] = {
        { "test_trace_repeats_summarised", test_trace_repeats_summarised },
        { "test_trace_repeats_after_window_written_again", test_trace_repeats_after_window_written_again },
        { "test_trace_different_args_not_merged", test_trace_different_args_not_merged },
        { "test_trace_slots_full_none_lost", test_trace_slots_full_none_lost },
        { "test_trace_journal_priorities", test_trace_journal_priorities },
        { NULL, NULL },
    };
    return unit_run("trace", tests);
}
