/*
 * ts_load: writes records through a node's API as fast as it acknowledges
 * them, over keep-alive connections, and prints throughput and latency.
 *
 *   ts_load NODEDIR COUNT CLIENTS PREFIX [TYPE]
 *
 * Writes COUNT subjects (or visits) with ids PREFIX%07u spread over CLIENTS
 * concurrent connections, each writing one at a time.  A write counts only
 * when the API answered 200, i.e. after its group commit was synced.
 * Prints one line:
 *   writes=N clients=C seconds=S rate=R/s p50_ms=.. p99_ms=.. failed=F
 * Exit 1 when any write failed.
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../node/config.h"
#include "../../node/pki.h"

struct job {
    const struct config *cfg;
    const char *token;
    const char *prefix;
    const char *type;
    unsigned first, count;
    double *lat_ms;      /* one per write */
    unsigned failed;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dial(const struct config *cfg)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", cfg->api.port);
    if (getaddrinfo(cfg->api.host, port, &hints, &res) != 0)
        return -1;
    int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* Reads one HTTP response; returns its status or -1. */
static int read_response(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n <= 0)
            return -1;
        len += (size_t)n;
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end == NULL)
            continue;
        const char *cl = strstr(buf, "Content-Length: ");
        size_t body = cl != NULL ? strtoul(cl + 16, NULL, 10) : 0;
        if (len < (size_t)(end + 4 - buf) + body)
            continue;
        int status = 0;
        sscanf(buf, "HTTP/1.1 %d", &status);
        return status;
    }
}

static void *worker(void *arg)
{
    struct job *j = arg;
    char req[2048], body[512], resp[8192];
    int fd = dial(j->cfg);
    if (fd < 0) {
        j->failed = j->count;
        return NULL;
    }
    for (unsigned i = 0; i < j->count; i++) {
        unsigned n = j->first + i;
        char id[64];
        int bl;
        if (strcmp(j->type, "visit") == 0) {
            snprintf(id, sizeof(id), "%s%07u/V1", j->prefix, n);
            bl = snprintf(body, sizeof(body),
                          "{\"fields\":{\"svstdtc\":\"2026-11-20\",\"status\":\"scheduled\","
                          "\"svoccur\":\"Y\"},\"user\":\"load\"}");
        } else {
            snprintf(id, sizeof(id), "%s%07u", j->prefix, n);
            char site[64];
            snprintf(site, sizeof(site), "%s", j->prefix);
            char *dash = strchr(site, '-');
            if (dash != NULL)
                *dash = '\0';
            bl = snprintf(body, sizeof(body),
                          "{\"fields\":{\"site\":\"%s\",\"sex\":\"F\",\"brthdtc\":\"1961-04\","
                          "\"status\":\"screening\",\"armcd\":\"A\"},\"user\":\"load\"}",
                          site);
        }
        int rl = snprintf(req, sizeof(req),
                          "POST /v1/records/%s/%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s"
                          "\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                          j->type, id, j->token, bl, body);
        double t0 = now_s();
        if (send(fd, req, (size_t)rl, MSG_NOSIGNAL) != rl ||
            read_response(fd, resp, sizeof(resp)) != 200) {
            j->failed++;
            close(fd);
            fd = dial(j->cfg);
            if (fd < 0) {
                j->failed += j->count - i - 1;
                return NULL;
            }
            j->lat_ms[i] = -1;
            continue;
        }
        j->lat_ms[i] = (now_s() - t0) * 1000.0;
    }
    close(fd);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 5 || argc > 6) {
        fprintf(stderr, "usage: ts_load NODEDIR COUNT CLIENTS PREFIX [subject|visit]\n");
        return 2;
    }
    static struct config cfg;
    struct ts_error err = {0};
    if (config_load_dir(argv[1], &cfg, &err) != 0) {
        fprintf(stderr, "ts_load: %s\n", err.msg);
        return 2;
    }
    char *token = NULL;
    size_t tlen = 0;
    if (pki_read_file(cfg.token_file, &token, &tlen, &err) != 0) {
        fprintf(stderr, "ts_load: %s\n", err.msg);
        return 2;
    }
    while (tlen > 0 && (token[tlen - 1] == '\n' || token[tlen - 1] == ' '))
        token[--tlen] = '\0';
    unsigned count = (unsigned)strtoul(argv[2], NULL, 10);
    unsigned clients = (unsigned)strtoul(argv[3], NULL, 10);
    if (count == 0 || clients == 0 || clients > 1024) {
        fprintf(stderr, "ts_load: COUNT >= 1 and CLIENTS 1..1024\n");
        return 2;
    }
    double *lat = calloc(count, sizeof(double));
    struct job *jobs = calloc(clients, sizeof(*jobs));
    pthread_t *th = calloc(clients, sizeof(*th));
    if (lat == NULL || jobs == NULL || th == NULL)
        return 2;
    unsigned per = count / clients, extra = count % clients, at = 0;
    double t0 = now_s();
    for (unsigned c = 0; c < clients; c++) {
        jobs[c] = (struct job){.cfg = &cfg, .token = token, .prefix = argv[4],
                               .type = argc == 6 ? argv[5] : "subject", .first = at,
                               .count = per + (c < extra), .lat_ms = lat + at};
        at += jobs[c].count;
        pthread_create(&th[c], NULL, worker, &jobs[c]);
    }
    unsigned failed = 0;
    for (unsigned c = 0; c < clients; c++) {
        pthread_join(th[c], NULL);
        failed += jobs[c].failed;
    }
    double secs = now_s() - t0;
    size_t ok = 0;
    for (unsigned i = 0; i < count; i++)
        if (lat[i] >= 0 && !(lat[i] == 0 && failed > 0))
            lat[ok++] = lat[i];
    qsort(lat, ok, sizeof(double), cmp_double);
    double p50 = ok ? lat[ok / 2] : 0, p99 = ok ? lat[(size_t)((double)ok * 0.99)] : 0;
    printf("writes=%u clients=%u seconds=%.3f rate=%.0f/s p50_ms=%.3f p99_ms=%.3f failed=%u\n",
           count - failed, clients, secs, (double)(count - failed) / secs, p50, p99, failed);
    free(lat);
    free(jobs);
    free(th);
    free(token);
    return failed == 0 ? 0 : 1;
}
