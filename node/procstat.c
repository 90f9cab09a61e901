/*
 * procstat.c: the process's resource figures from /proc (see procstat.h).
 *
 * The figures follow the Prometheus client libraries' definitions so the
 * usual dashboards and alerts work unchanged: resident memory from
 * /proc/self/stat's rss (pages), CPU from its utime + stime (clock ticks),
 * start time from its starttime (ticks after boot) plus /proc/stat's btime,
 * open descriptors by counting /proc/self/fd.
 */
#include "procstat.h"

#include <assert.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* /proc/self/stat is one line well under this (52 fields, a 16-byte comm). */
#define PROCSTAT_STAT_BYTES_MAX 4096

/* Reads at most cap - 1 bytes of path into buf, NUL-terminated; false on failure. */
static bool read_small_file(const char *path, char *buf, size_t cap)
{
    assert(cap > 1);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t n = fread(buf, 1, cap - 1, f);
    bool ok = ferror(f) == 0 && n > 0;
    fclose(f);
    buf[n] = '\0';
    return ok;
}

/* The system's boot time (Unix seconds), /proc/stat's btime line. */
static bool boot_time_s(uint64_t *out)
{
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL)
        return false;
    char line[512];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "btime ", 6) != 0)
            continue;
        char *end;
        unsigned long long v = strtoull(line + 6, &end, 10);
        found = end != line + 6;
        *out = v;
    }
    fclose(f);
    return found;
}

/*
 * /proc/self/stat: the command name (field 2) is in parentheses and may hold
 * spaces or ')', so fields are counted from the last ')'.  Field 3 (state)
 * follows it; utime, stime are 14 and 15, starttime 22, rss 24.
 */
static void read_stat(struct procstat *out)
{
    char buf[PROCSTAT_STAT_BYTES_MAX];
    if (!read_small_file("/proc/self/stat", buf, sizeof(buf)))
        return;
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return;
    p++;
    unsigned long long field[53] = {0};
    int number = 3;
    /* Field 3 is a letter; the ones after it are numbers. */
    for (char *tok = p; number <= 24; number++) {
        while (*tok == ' ')
            tok++;
        if (*tok == '\0' || *tok == '\n')
            return;
        char *end;
        if (number == 3) {
            end = tok + strcspn(tok, " ");
        } else {
            long long v = strtoll(tok, &end, 10);
            if (end == tok)
                return;
            field[number] = v < 0 ? 0 : (unsigned long long)v;
        }
        tok = end;
    }
    long ticks = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    if (ticks > 0) {
        out->cpu_seconds = (double)(field[14] + field[15]) / (double)ticks;
        out->cpu_known = true;
        uint64_t boot_s;
        if (boot_time_s(&boot_s)) {
            out->start_time_s = (double)boot_s + (double)field[22] / (double)ticks;
            out->start_known = true;
        }
    }
    if (page > 0) {
        out->resident_bytes = (uint64_t)field[24] * (uint64_t)page;
        out->resident_known = true;
    }
}

static void read_fds(struct procstat *out)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return;
    uint64_t n = 0;
    struct dirent *e;
    while (n < PROCSTAT_FDS_MAX && (e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    /* The directory's own descriptor was open while it was counted. */
    out->open_fds = n > 0 ? n - 1 : 0;
    out->open_fds_known = true;

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        out->max_fds = (uint64_t)rl.rlim_cur;
        out->max_fds_known = true;
    }
}

void procstat_read(struct procstat *out)
{
    assert(out != NULL);
    memset(out, 0, sizeof(*out));
    read_stat(out);
    read_fds(out);
}
