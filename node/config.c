/*
 * config.c: node.conf parsing and checking (see config.h).
 */
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crypto.h"
#include "validate.h"

struct parse_ctx {
    FILE *f;
    int line;           /* the line inih is on: counted by read_line */
    struct config *c;
    struct ts_error *err;
    bool failed;
    bool seen_id, seen_role, seen_trial;
};

static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    if (*s == '\0' || *s == '-')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return false;
    *out = v;
    return true;
}

int config_addr_parse(const char *s, struct config_addr *out)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s)
        return TS_ERR_INVALID;
    const char *host = s;
    size_t host_len = (size_t)(colon - s);
    if (host[0] == '[') {
        if (host_len < 3 || host[host_len - 1] != ']')
            return TS_ERR_INVALID;
        host++;
        host_len -= 2;
    }
    if (host_len >= sizeof(out->host))
        return TS_ERR_INVALID;
    uint64_t port;
    if (!parse_u64(colon + 1, 65535, &port) || port == 0)
        return TS_ERR_INVALID;
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    out->port = (uint16_t)port;
    return 0;
}

/* Joins a relative path onto the config file's directory. */
static int resolve_path(const struct config *c, const char *value, char *out, size_t cap)
{
    int n;
    if (value[0] == '/')
        n = snprintf(out, cap, "%s", value);
    else
        n = snprintf(out, cap, "%s/%s", c->dir, value);
    return (n < 0 || (size_t)n >= cap) ? TS_ERR_TOOBIG : 0;
}

static int copy_id(const char *value, char *out, size_t cap)
{
    if (!validate_id(value) || strlen(value) >= cap)
        return TS_ERR_INVALID;
    memcpy(out, value, strlen(value) + 1);
    return 0;
}

static int fail(struct parse_ctx *p, int line, const char *section, const char *key,
                const char *what)
{
    ts_error_set(p->err, TS_ERR_CONFIG, "%s line %d: [%s] %s: %s", p->c->path, line,
                 section, key, what);
    p->failed = true;
    return 0;  /* inih: stop */
}

/* inih's reader: fgets that counts lines, so errors can name them. */
static char *read_line(char *str, int num, void *stream)
{
    struct parse_ctx *p = stream;
    char *r = fgets(str, num, p->f);
    if (r != NULL)
        p->line++;
    return r;
}

static int on_value(void *user, const char *section, const char *key, const char *value)
{
    struct parse_ctx *p = user;
    int line = p->line;
    struct config *c = p->c;
    uint64_t n;

    if (p->failed)
        return 0;
    if (strcmp(section, "node") == 0) {
        if (strcmp(key, "id") == 0) {
            if (copy_id(value, c->id, sizeof(c->id)) != 0)
                return fail(p, line, section, key, "must be 1-63 of A-Z a-z 0-9 . _ -");
            p->seen_id = true;
        } else if (strcmp(key, "role") == 0) {
            if (pki_role_parse(value, &c->role) != 0 || c->role == PKI_ROLE_ADMIN)
                return fail(p, line, section, key, "must be hub or site");
            p->seen_role = true;
        } else if (strcmp(key, "trial") == 0) {
            if (copy_id(value, c->trial, sizeof(c->trial)) != 0)
                return fail(p, line, section, key, "must be 1-63 of A-Z a-z 0-9 . _ -");
            p->seen_trial = true;
        } else if (strcmp(key, "data_dir") == 0) {
            if (resolve_path(c, value, c->data_dir, sizeof(c->data_dir)) != 0)
                return fail(p, line, section, key, "path too long");
        } else {
            return fail(p, line, section, key, "unknown key (allowed: id, role, trial, data_dir)");
        }
    } else if (strcmp(section, "api") == 0) {
        if (strcmp(key, "listen") == 0) {
            if (config_addr_parse(value, &c->api) != 0)
                return fail(p, line, section, key, "must be HOST:PORT, e.g. 127.0.0.1:7801");
        } else if (strcmp(key, "token_file") == 0) {
            if (resolve_path(c, value, c->token_file, sizeof(c->token_file)) != 0)
                return fail(p, line, section, key, "path too long");
        } else {
            return fail(p, line, section, key, "unknown key (allowed: listen, token_file)");
        }
    } else if (strcmp(section, "peer") == 0) {
        if (strcmp(key, "listen") == 0) {
            if (config_addr_parse(value, &c->peer_listen) != 0)
                return fail(p, line, section, key, "must be HOST:PORT, e.g. 0.0.0.0:7800");
            c->peer_listen_set = true;
        } else if (strcmp(key, "hub") == 0) {
            if (c->hubs_count >= CONFIG_HUBS_MAX)
                return fail(p, line, section, key, "too many hubs (at most 8)");
            if (config_addr_parse(value, &c->hubs[c->hubs_count]) != 0)
                return fail(p, line, section, key, "must be HOST:PORT");
            c->hubs_count++;
        } else if (strcmp(key, "cert") == 0 || strcmp(key, "key") == 0 ||
                   strcmp(key, "ca") == 0 || strcmp(key, "crl") == 0) {
            char *dst = strcmp(key, "cert") == 0 ? c->cert
                      : strcmp(key, "key") == 0  ? c->key
                      : strcmp(key, "ca") == 0   ? c->ca
                                                 : c->crl;
            if (resolve_path(c, value, dst, PATH_MAX) != 0)
                return fail(p, line, section, key, "path too long");
        } else if (strcmp(key, "clock_skew_max_s") == 0) {
            if (!parse_u64(value, 7 * 86400, &n) || n == 0)
                return fail(p, line, section, key, "must be a whole number of seconds (1 to 604800)");
            c->clock_skew_max_ms = n * 1000;
        } else {
            return fail(p, line, section, key,
                        "unknown key (allowed: listen, hub, cert, key, ca, crl, clock_skew_max_s)");
        }
    } else if (strcmp(section, "storage") == 0) {
        if (strcmp(key, "disk_free_min_mb") == 0) {
            if (!parse_u64(value, 1024 * 1024, &n))
                return fail(p, line, section, key, "must be a whole number of MiB (0 to 1048576)");
            c->disk_free_min_bytes = n * 1024 * 1024;
        } else if (strcmp(key, "failed_exit_s") == 0) {
            if (!parse_u64(value, 3600, &n))
                return fail(p, line, section, key, "must be a whole number of seconds (0 to 3600)");
            c->failed_exit_s = (uint32_t)n;
        } else {
            return fail(p, line, section, key,
                        "unknown key (allowed: disk_free_min_mb, failed_exit_s)");
        }
    } else if (strcmp(section, "safety") == 0) {
        if (strcmp(key, "sae_alarm_first_s") == 0 || strcmp(key, "sae_alarm_second_s") == 0) {
            if (!parse_u64(value, 30 * 86400, &n) || n == 0)
                return fail(p, line, section, key, "must be seconds, 1 to 2592000");
            if (strcmp(key, "sae_alarm_first_s") == 0)
                c->sae_alarm_first_s = (uint32_t)n;
            else
                c->sae_alarm_second_s = (uint32_t)n;
        } else {
            return fail(p, line, section, key,
                        "unknown key (allowed: sae_alarm_first_s, sae_alarm_second_s)");
        }
    } else {
        return fail(p, line, section, key,
                    "unknown section (allowed: node, api, peer, storage, safety)");
    }
    return 1;
}

static void set_defaults(struct config *c)
{
    /* The directory is shorter than PATH_MAX - 16 (checked by config_load). */
    resolve_path(c, "data", c->data_dir, sizeof(c->data_dir));
    snprintf(c->api.host, sizeof(c->api.host), "127.0.0.1");
    c->api.port = 7801;
    resolve_path(c, "api.token", c->token_file, sizeof(c->token_file));
    resolve_path(c, "node.crt", c->cert, sizeof(c->cert));
    resolve_path(c, "node.key", c->key, sizeof(c->key));
    resolve_path(c, "ca.crt", c->ca, sizeof(c->ca));
    c->disk_free_min_bytes = 64ULL * 1024 * 1024;
    c->failed_exit_s = CONFIG_FAILED_EXIT_S_DEFAULT;
    c->clock_skew_max_ms = CONFIG_CLOCK_SKEW_MAX_MS_DEFAULT;
    c->sae_alarm_first_s = 3600;
    c->sae_alarm_second_s = 12 * 3600;
}

int config_load(const char *path, struct config *c, struct ts_error *err)
{
    memset(c, 0, sizeof(*c));
    if (strlen(path) >= sizeof(c->path))
        return ts_error_set(err, TS_ERR_CONFIG, "config path too long");
    memcpy(c->path, path, strlen(path) + 1);

    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        snprintf(c->dir, sizeof(c->dir), ".");
    } else if (slash == path) {
        snprintf(c->dir, sizeof(c->dir), "/");
    } else {
        size_t dir_len = (size_t)(slash - path);
        memcpy(c->dir, path, dir_len);
        c->dir[dir_len] = '\0';
    }
    if (strlen(c->dir) + 16 >= sizeof(c->dir))
        return ts_error_set(err, TS_ERR_CONFIG, "config path too long");
    set_defaults(c);

    FILE *f = fopen(path, "r");
    if (f == NULL)
        return ts_error_set(err, TS_ERR_CONFIG, "cannot read config %s: %s", path,
                            strerror(errno));
    struct parse_ctx p = {.f = f, .c = c, .err = err};
    int rc = ini_parse_stream(read_line, &p, on_value, &p);
    fclose(f);
    if (p.failed)
        return TS_ERR_CONFIG;
    if (rc != 0)
        return ts_error_set(err, TS_ERR_CONFIG, "%s line %d: not of the form key = value", path,
                            rc);
    if (!p.seen_id || !p.seen_role || !p.seen_trial)
        return ts_error_set(err, TS_ERR_CONFIG, "%s: [node] needs id, role and trial", path);
    if (c->sae_alarm_second_s <= c->sae_alarm_first_s)
        return ts_error_set(err, TS_ERR_CONFIG,
                            "%s: [safety] sae_alarm_second_s must be later than sae_alarm_first_s",
                            path);
    return 0;
}

int config_check_files(const struct config *c, struct ts_error *err)
{
    const struct {
        const char *path;
        const char *what;
    } files[] = {
        {c->path, "config file"},
        {c->ca, "CA certificate"},
        {c->crl, "CRL"},
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        if (files[i].path[0] == '\0')
            continue;  /* no CRL configured */
        int rc = crypto_check_trusted_file(files[i].path, files[i].what, err);
        /* A missing file is the loader's to report, in its own words. */
        if (rc != 0 && rc != TS_ERR_NOTFOUND)
            return rc;
    }
    return 0;
}

int config_load_dir(const char *node, struct config *c, struct ts_error *err)
{
    char path[PATH_MAX];
    struct stat st;
    if (stat(node, &st) != 0)
        return ts_error_set(err, TS_ERR_CONFIG, "cannot read config %s: %s (give a node directory "
                            "or its node.conf)",
                            node, strerror(errno));
    if (S_ISREG(st.st_mode))
        return config_load(node, c, err);
    if (!S_ISDIR(st.st_mode))
        return ts_error_set(err, TS_ERR_CONFIG, "%s is neither a node directory nor a node.conf",
                            node);
    int n = snprintf(path, sizeof(path), "%s/node.conf", node);
    if (n < 0 || (size_t)n >= sizeof(path))
        return ts_error_set(err, TS_ERR_CONFIG, "node directory path too long");
    return config_load(path, c, err);
}
