/*
 * procstat.h: the running process's own resource figures, for the standard
 * Prometheus process_* metrics (resident memory, open descriptors, CPU time,
 * start time).  Linux only: everything comes from /proc/self and /proc/stat.
 * A figure that cannot be read is reported unknown (its _known flag false)
 * rather than as 0, so /metrics leaves it out instead of showing a lie.
 */
#ifndef TS_PROCSTAT_H
#define TS_PROCSTAT_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Directory entries counted in /proc/self/fd at most: far above
 * RLIMIT_NOFILE's usual 1024 to 65536, and a bound on the work one scrape
 * does on the loop thread.
 */
#define PROCSTAT_FDS_MAX 1048576

struct procstat {
    uint64_t resident_bytes;
    bool resident_known;
    uint64_t open_fds;
    bool open_fds_known;
    uint64_t max_fds;            /* the soft RLIMIT_NOFILE */
    bool max_fds_known;
    double cpu_seconds;          /* user + system */
    bool cpu_known;
    double start_time_s;         /* Unix time the process started */
    bool start_known;
};

/*
 * Fills *out with what can be read now (always returns; unknown figures have
 * their _known flag false).  Blocking file reads of /proc, small and
 * bounded (PROCSTAT_FDS_MAX): fine on the loop thread once per scrape.
 */
void procstat_read(struct procstat *out);

#endif
