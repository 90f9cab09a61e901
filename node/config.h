/*
 * config.h: a node's configuration, read from node.conf (INI, parsed by inih).
 *
 * Relative paths in the file are taken relative to the file's own directory,
 * so a node directory can be moved as a whole.  config_load refuses unknown
 * sections and keys, missing required keys and malformed values with a
 * message naming the file, the line and what is allowed.
 */
#ifndef TS_CONFIG_H
#define TS_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "../proto/errors.h"
#include "../proto/limits.h"
#include "pki.h"

/* Hubs a site lists to fail over between. */
#define CONFIG_HUBS_MAX 8
/* Five minutes: NTP-synced hospital clocks are within seconds of each other. */
/* Long enough for in-flight answers to reach their clients and for a
 * monitor to scrape the state; short, so the supervisor restarts the node
 * (and recovery replays its log) within seconds. */
#define CONFIG_FAILED_EXIT_S_DEFAULT 5
#define CONFIG_CLOCK_SKEW_MAX_MS_DEFAULT (300ULL * 1000)

struct config_addr {
    char host[256];
    uint16_t port;
};

struct config {
    char path[PATH_MAX];        /* the file read */
    char dir[PATH_MAX];         /* its directory */
    /* [node] */
    char id[TS_ID_BYTES_MAX + 1];
    enum pki_role role;
    char trial[TS_ID_BYTES_MAX + 1];
    char data_dir[PATH_MAX];
    /* [api] */
    struct config_addr api;
    char token_file[PATH_MAX];
    /* [peer] */
    bool peer_listen_set;
    struct config_addr peer_listen;
    char cert[PATH_MAX];
    char key[PATH_MAX];
    char ca[PATH_MAX];
    char crl[PATH_MAX];         /* "" when none */
    struct config_addr hubs[CONFIG_HUBS_MAX];
    int hubs_count;
    /* How far ahead of this node's clock an entry may be stamped before it is
     * held back (validate_entry): skew between honest clocks stays well
     * inside it, and a node cannot pull the trial's clock further. */
    uint64_t clock_skew_max_ms;
    /* [storage] */
    uint64_t disk_free_min_bytes;
    /* Seconds a node whose storage failed stays up (answering writers with
     * the error, showing storage_failed) before it exits non-zero. */
    uint32_t failed_exit_s;
    /* [safety] */
    uint32_t sae_alarm_first_s;   /* unacknowledged SAE alarm, first */
    uint32_t sae_alarm_second_s;  /* and second */
};

/* Reads and checks path into *c. */
int config_load(const char *path, struct config *c, struct ts_error *err);

/* Parses "host:port" (host may be [v6]); TS_ERR_INVALID on anything else. */
int config_addr_parse(const char *s, struct config_addr *out);

/*
 * Loads a node named as the CLI's --node and the daemon's --config take it:
 * a node directory (DIR/node.conf is read) or the node.conf file itself.
 */
int config_load_dir(const char *node, struct config *c, struct ts_error *err);

/*
 * Refuses a config file, CA certificate or CRL (when configured) that group
 * or others may write, or that belongs to another user than the effective
 * one or root (crypto_check_trusted_file): whoever could write them could
 * redirect the node or choose whom it trusts.  TS_ERR_PERM with the file and
 * the fix (chmod go-w FILE).  trialsyncd runs it at startup.
 */
int config_check_files(const struct config *c, struct ts_error *err);

#endif
