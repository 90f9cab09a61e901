/*
 * main.c: trialsyncd, one trialsync node in the foreground.
 *
 *   trialsyncd --config FILE
 *
 * Traces to stderr.  Exits non-zero with a message on a bad config, an unsafe
 * key or token file, a certificate that does not match the config, a store
 * that cannot be opened, or a port in use.  SIGINT and SIGTERM commit what is
 * pending and stop cleanly (exit 0).  After a storage failure (node.h) it
 * exits 75 within [storage] failed_exit_s, or at a signal, so systemd
 * restarts it and recovery replays the log.  SIGHUP reloads (reload_cb): the
 * revocation list, and the settings that can change live.
 *
 * Under systemd (Type=notify) it sends READY=1 once the API and the peer
 * listener are up, and STOPPING=1 when it starts to stop; without
 * NOTIFY_SOCKET sd_notify does nothing.  This is the only file that talks to
 * libsystemd.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <uv.h>

#include "api.h"
#include "config.h"
#include "node.h"
#include "peer.h"
#include "trace.h"
#include "util.h"
#include "version.h"

/* Exit status after the storage failed (sysexits' EX_TEMPFAIL): non-zero, so
 * systemd's Restart=on-failure starts the node again and recovery replays
 * its log. */
#define DAEMON_EXIT_STORAGE_FAILED 75

struct daemon {
    uv_loop_t loop;
    uv_signal_t sigint, sigterm, sighup;
    uv_timer_t failed_exit;       /* storage_failed: the exit, failed_exit_s later */
    bool storage_failed;
    const char *config_path;
    struct node *node;
    struct api *api;
    struct peer_mgr *peers;
    bool stopping;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: trialsyncd --config FILE|DIR\n"
            "\n"
            "Runs one trialsync node (hub or site) in the foreground; traces go to stderr.\n"
            "FILE is the node's node.conf (see deploy/node.conf.example); DIR, a node\n"
            "directory, means DIR/node.conf (as the CLI's --node takes it).\n"
            "\n"
            "  -c, --config FILE|DIR  the node configuration\n"
            "  -h, --help          this text\n"
            "      --version       print the version\n");
}

/* Stops everything; uv_run returns once the handles are closed. */
static void daemon_stop(struct daemon *d)
{
    if (d->stopping)
        return;
    d->stopping = true;
    sd_notify(0, "STOPPING=1");
    peer_mgr_stop(d->peers);
    api_stop(d->api);
    node_close(d->node);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sighup, NULL);
    uv_close((uv_handle_t *)&d->failed_exit, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;
    if (d->stopping)
        return;
    trace(TRACE_INFO, "signal %d: stopping", signum);
    daemon_stop(d);
}

static void failed_exit_cb(uv_timer_t *t)
{
    struct daemon *d = container_of(t, struct daemon, failed_exit);
    trace(TRACE_ERROR, "storage_failed: exiting %d so the node restarts and recovers its log",
          DAEMON_EXIT_STORAGE_FAILED);
    daemon_stop(d);
}

/*
 * The node's storage failed (node.h: no write is trusted again).  The node
 * stays up failed_exit_s, answering writers with the error and showing
 * storage_failed, then exits non-zero; a stop meanwhile exits non-zero too.
 */
static void storage_failed_cb(void *ctx)
{
    struct daemon *d = ctx;
    d->storage_failed = true;
    sd_notifyf(0, "STATUS=storage_failed: %s", d->node->health_why);
    if (!d->stopping)
        uv_timer_start(&d->failed_exit, failed_exit_cb, (uint64_t)d->node->cfg.failed_exit_s * 1000,
                       0);
}

/*
 * The settings a reload applies to the running node: each is read afresh
 * from node->cfg where it is used, so assigning it is enough.  Every other
 * setting (ids, addresses, paths, credentials) is bound at start; a change
 * to one is traced as needing a restart and not applied.
 */
static void reload_config(struct daemon *d)
{
    static struct config fresh;  /* static: struct config holds several PATH_MAX paths */
    struct ts_error err = {0};
    if (config_load_dir(d->config_path, &fresh, &err) != 0) {
        trace(TRACE_WARN, "reload: config not reloaded, the running settings stay: %s", err.msg);
        return;
    }
    struct config *live = &d->node->cfg;
    live->disk_free_min_bytes = fresh.disk_free_min_bytes;
    live->clock_skew_max_ms = fresh.clock_skew_max_ms;
    live->sae_alarm_first_s = fresh.sae_alarm_first_s;
    live->sae_alarm_second_s = fresh.sae_alarm_second_s;
    /* Compare the rest with the live settings copied over, so a difference
     * left is one the reload did not apply. */
    fresh.disk_free_min_bytes = live->disk_free_min_bytes;
    fresh.clock_skew_max_ms = live->clock_skew_max_ms;
    fresh.sae_alarm_first_s = live->sae_alarm_first_s;
    fresh.sae_alarm_second_s = live->sae_alarm_second_s;
    bool restart_needed = memcmp(&fresh, live, sizeof(fresh)) != 0;
    trace(TRACE_INFO,
          "reload: config %s: disk_free_min_mb=%llu clock_skew_max_s=%llu "
          "sae_alarm_first_s=%u sae_alarm_second_s=%u%s",
          d->config_path, (unsigned long long)(live->disk_free_min_bytes >> 20),
          (unsigned long long)(live->clock_skew_max_ms / 1000), live->sae_alarm_first_s,
          live->sae_alarm_second_s,
          restart_needed ? "; other settings changed and need a restart" : "");
}

/* SIGHUP (systemctl reload): the revocation list and the live settings. */
static void reload_cb(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;
    if (d->stopping)
        return;
    sd_notify(0, "RELOADING=1");
    trace(TRACE_INFO, "signal %d: reloading", signum);
    reload_config(d);
    peer_mgr_reload_crl(d->peers);
    sd_notify(0, "READY=1");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL;
    int c;

    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config_path = optarg; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("trialsyncd %s\n", TS_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (config_path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }

    /* Every file the node creates (store files, backups, the CRL copy) is
     * for its own user alone: RocksDB creates its files with 0666 & ~umask. */
    umask(077);

    static struct config cfg;
    struct ts_error err = {0};
    if (config_load_dir(config_path, &cfg, &err) != 0 || config_check_files(&cfg, &err) != 0) {
        fprintf(stderr, "trialsyncd: %s\n", err.msg);
        return 1;
    }
    trace_init(cfg.id);
    signal(SIGPIPE, SIG_IGN);

    static struct daemon d;
    uv_loop_init(&d.loop);
    if (node_open(&d.node, &d.loop, &cfg, &err) != 0) {
        fprintf(stderr, "trialsyncd: %s\n", err.msg);
        return 1;
    }
    uv_timer_init(&d.loop, &d.failed_exit);
    d.node->on_storage_failed = storage_failed_cb;
    d.node->on_storage_failed_ctx = &d;
    if (peer_mgr_start(&d.peers, d.node, &err) != 0) {
        fprintf(stderr, "trialsyncd: %s\n", err.msg);
        node_close(d.node);
        uv_run(&d.loop, UV_RUN_DEFAULT);
        return 1;
    }
    struct api_hooks hooks = {0};
    peer_mgr_api_hooks(d.peers, &hooks);
    if (api_start(&d.api, d.node, &hooks, &err) != 0) {
        fprintf(stderr, "trialsyncd: %s\n", err.msg);
        peer_mgr_stop(d.peers);
        node_close(d.node);
        uv_run(&d.loop, UV_RUN_DEFAULT);
        peer_mgr_free(d.peers);
        return 1;
    }
    d.config_path = config_path;
    uv_signal_init(&d.loop, &d.sigint);
    uv_signal_init(&d.loop, &d.sigterm);
    uv_signal_init(&d.loop, &d.sighup);
    d.sigint.data = &d;
    d.sigterm.data = &d;
    d.sighup.data = &d;
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    uv_signal_start(&d.sighup, reload_cb, SIGHUP);

    trace(TRACE_INFO, "trialsyncd %s %s node of trial %s ready: API on %s:%u", TS_VERSION,
          pki_role_name(cfg.role), cfg.trial, cfg.api.host, cfg.api.port);
    /* Both listeners are bound (peer_mgr_start, api_start): peers and the
     * CLI can connect from here on. */
    sd_notify(0, "READY=1");
    uv_run(&d.loop, UV_RUN_DEFAULT);
    peer_mgr_free(d.peers);
    uv_loop_close(&d.loop);
    trace_flush();
    if (d.storage_failed) {
        trace(TRACE_ERROR, "stopped after a storage failure: exit %d", DAEMON_EXIT_STORAGE_FAILED);
        return DAEMON_EXIT_STORAGE_FAILED;
    }
    trace(TRACE_INFO, "stopped");
    return 0;
}
