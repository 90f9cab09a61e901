/*
 * admin.c: trial set-up verbs: init, site add|list|revoke, hub add.
 *
 * A trial directory (init --dir DIR) holds:
 *   DIR/trial.conf   trial id, hub addresses, ports handed out, sites
 *   DIR/ca/          the trial CA (ca.key 0600, ca.crt, crl.pem)
 *   DIR/hub/         the first hub's node directory
 *   DIR/admin/       the admin identity (node.key 0600, node.crt)
 * Node directories hold node.conf, node.key (0600), node.crt, ca.crt and
 * api.token (0600): everything trialsyncd and the CLI need.
 *
 * The CA key and the admin key may be encrypted (init --encrypt-ca).  Every
 * verb that uses the CA key takes --pass-file FILE and otherwise asks on the
 * terminal, only when the key turns out to be encrypted; without a terminal
 * and a pass file it refuses before writing anything.  Node keys are never
 * encrypted: trialsyncd restarts unattended and asks nobody.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <ini.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../node/config.h"
#include "../node/crypto.h"
#include "../node/lex.h"
#include "../node/pki.h"
#include "../node/schema.h"
#include "../node/validate.h"
#include "cli.h"
#include "client.h"

#define CERT_DAYS 825
#define CA_DAYS 3650

int cli_write_file(const char *path, const char *content, int mode, bool exclusive)
{
    int flags = O_WRONLY | O_CREAT | (exclusive ? O_EXCL : O_TRUNC);
    int fd = open(path, flags, mode);
    if (fd < 0)
        return -errno;
    size_t len = strlen(content);
    const char *p = content;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            return -e;
        }
        p += n;
        len -= (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0)
        return -errno;
    return 0;
}

int cli_random_hex(char *out, size_t bytes)
{
    uint8_t raw[64];
    static const char digits[] = "0123456789abcdef";
    assert(bytes <= sizeof(raw));
    if (bytes > sizeof(raw) || crypto_random(raw, bytes) != 0)
        return -EIO;
    for (size_t i = 0; i < bytes; i++) {
        out[2 * i] = digits[raw[i] >> 4];
        out[2 * i + 1] = digits[raw[i] & 15];
    }
    out[2 * bytes] = '\0';
    return 0;
}

int cli_write_token(const char *path)
{
    char hexbuf[2 * 32 + 2];
    if (cli_random_hex(hexbuf, 32) != 0)
        return -EIO;
    hexbuf[64] = '\n';
    hexbuf[65] = '\0';
    return cli_write_file(path, hexbuf, 0600, true);
}

static int path_join(char *out, size_t cap, const char *a, const char *b)
{
    int n = snprintf(out, cap, "%s/%s", a, b);
    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int mkdir_p(const char *path, mode_t mode)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    }
    if (mkdir(tmp, mode) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* ---- trial.conf ---------------------------------------------------------- */

#define TRIAL_SITES_MAX 1024

struct trial_site {
    char id[TS_ID_BYTES_MAX + 1];
    char name[128];
    char status[16];       /* active or revoked */
    char dir[PATH_MAX];    /* where its bundle was written */
    char reason[256];
};

struct trial_conf {
    char id[TS_ID_BYTES_MAX + 1];
    char hubs[CONFIG_HUBS_MAX][280];
    int hubs_count;
    char hub_dirs[CONFIG_HUBS_MAX][PATH_MAX];
    unsigned next_port;
    struct trial_site *sites;
    size_t sites_count;
};

static int trial_conf_cb(void *user, const char *section, const char *key, const char *value)
{
    struct trial_conf *t = user;
    if (strcmp(section, "trial") == 0) {
        if (strcmp(key, "id") == 0)
            snprintf(t->id, sizeof(t->id), "%s", value);
        else if (strcmp(key, "hub") == 0 && t->hubs_count < CONFIG_HUBS_MAX)
            snprintf(t->hubs[t->hubs_count++], sizeof(t->hubs[0]), "%s", value);
        else if (strcmp(key, "hub_dir") == 0 && t->hubs_count > 0)
            snprintf(t->hub_dirs[t->hubs_count - 1], sizeof(t->hub_dirs[0]), "%s", value);
        else if (strcmp(key, "next_port") == 0)
            t->next_port = (unsigned)strtoul(value, NULL, 10);
        return 1;
    }
    if (strncmp(section, "site ", 5) == 0) {
        const char *id = section + 5;
        struct trial_site *s = NULL;
        for (size_t i = 0; i < t->sites_count; i++)
            if (strcmp(t->sites[i].id, id) == 0)
                s = &t->sites[i];
        if (s == NULL) {
            if (t->sites_count == TRIAL_SITES_MAX)
                return 0;
            s = &t->sites[t->sites_count++];
            memset(s, 0, sizeof(*s));
            snprintf(s->id, sizeof(s->id), "%s", id);
            snprintf(s->status, sizeof(s->status), "active");
        }
        if (strcmp(key, "name") == 0)
            snprintf(s->name, sizeof(s->name), "%s", value);
        else if (strcmp(key, "status") == 0)
            snprintf(s->status, sizeof(s->status), "%s", value);
        else if (strcmp(key, "dir") == 0)
            snprintf(s->dir, sizeof(s->dir), "%s", value);
        else if (strcmp(key, "reason") == 0)
            snprintf(s->reason, sizeof(s->reason), "%s", value);
    }
    return 1;
}

static int trial_conf_load(const char *dir, struct trial_conf *t)
{
    char path[PATH_MAX];
    memset(t, 0, sizeof(*t));
    t->sites = calloc(TRIAL_SITES_MAX, sizeof(*t->sites));
    if (t->sites == NULL)
        return cli_fail("out of memory");
    if (path_join(path, sizeof(path), dir, "trial.conf") != 0)
        return cli_fail("path too long");
    if (!exists(path))
        return cli_fail("%s is not a trial directory (no trial.conf; create one with "
                        "'trialsync init --trial ID --dir %s')", dir, dir);
    if (ini_parse(path, trial_conf_cb, t) != 0 || t->id[0] == '\0')
        return cli_fail("%s is damaged: it has no [trial] id", path);
    return 0;
}

static int trial_conf_save(const char *dir, const struct trial_conf *t)
{
    char path[PATH_MAX], tmp[PATH_MAX + 8];
    size_t cap = 4096 + t->sites_count * (PATH_MAX + 512);
    char *buf = malloc(cap);
    if (buf == NULL)
        return cli_fail("out of memory");
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o,
                          "# trialsync trial directory: written by the trialsync CLI.\n"
                          "[trial]\nid = %s\nnext_port = %u\n", t->id, t->next_port);
    for (int i = 0; i < t->hubs_count; i++)
        o += (size_t)snprintf(buf + o, cap - o, "hub = %s\nhub_dir = %s\n", t->hubs[i],
                              t->hub_dirs[i]);
    for (size_t i = 0; i < t->sites_count; i++) {
        const struct trial_site *s = &t->sites[i];
        o += (size_t)snprintf(buf + o, cap - o,
                              "\n[site %s]\nname = %s\nstatus = %s\ndir = %s\n", s->id,
                              s->name, s->status, s->dir);
        if (s->reason[0] != '\0')
            o += (size_t)snprintf(buf + o, cap - o, "reason = %s\n", s->reason);
    }
    path_join(path, sizeof(path), dir, "trial.conf");
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int rc = cli_write_file(tmp, buf, 0644, false);
    free(buf);
    if (rc != 0 || rename(tmp, path) != 0)
        return cli_fail("cannot write %s: %s", path, strerror(rc != 0 ? -rc : errno));
    return 0;
}

/* Writes DIR/node.conf for a node (mode 0644: it holds no secret). */
static int write_node_conf(const char *node_dir, const char *trial, const char *id,
                           enum pki_role role, unsigned api_port, const char *peer_listen,
                           char hubs[][280], int hubs_count)
{
    char path[PATH_MAX];
    char conf[8192];
    size_t o = 0;
    o += (size_t)snprintf(conf + o, sizeof(conf) - o,
                          "# trialsync node configuration (see deploy/node.conf.example).\n"
                          "# Relative paths are relative to this file's directory.\n"
                          "[node]\nid = %s\nrole = %s\ntrial = %s\ndata_dir = data\n\n"
                          "[api]\nlisten = 127.0.0.1:%u\ntoken_file = api.token\n\n"
                          "[peer]\ncert = node.crt\nkey = node.key\nca = ca.crt\n"
                          "crl = crl.pem\n",
                          id, pki_role_name(role), trial, api_port);
    if (peer_listen != NULL)
        o += (size_t)snprintf(conf + o, sizeof(conf) - o, "listen = %s\n", peer_listen);
    for (int i = 0; i < hubs_count; i++)
        o += (size_t)snprintf(conf + o, sizeof(conf) - o, "hub = %s\n", hubs[i]);
    o += (size_t)snprintf(conf + o, sizeof(conf) - o,
                          "\n[storage]\n# Writes are refused below this much free disk.\n"
                          "disk_free_min_mb = 64\n");
    path_join(path, sizeof(path), node_dir, "node.conf");
    int rc = cli_write_file(path, conf, 0644, true);
    if (rc != 0)
        return cli_fail("cannot write %s: %s", path, strerror(-rc));
    path_join(path, sizeof(path), node_dir, "api.token");
    rc = cli_write_token(path);
    if (rc != 0)
        return cli_fail("cannot write %s: %s", path, strerror(-rc));
    return 0;
}

/* Copies the CA's current CRL into a node directory (atomically replaced). */
static int copy_crl(const char *ca_dir, const char *node_dir)
{
    char src[PATH_MAX], dst[PATH_MAX], tmp[PATH_MAX + 8];
    char *pem = NULL;
    size_t len = 0;
    struct ts_error err = {0};
    path_join(src, sizeof(src), ca_dir, "crl.pem");
    path_join(dst, sizeof(dst), node_dir, "crl.pem");
    if (pki_read_file(src, &pem, &len, &err) != 0)
        return cli_fail("%s", err.msg);
    snprintf(tmp, sizeof(tmp), "%s.tmp", dst);
    int rc = cli_write_file(tmp, pem, 0644, false);
    free(pem);
    if (rc != 0 || rename(tmp, dst) != 0)
        return cli_fail("cannot write %s: %s", dst, strerror(rc != 0 ? -rc : errno));
    return 0;
}

/* ---- init ---------------------------------------------------------------- */

static void init_usage(FILE *out)
{
    fprintf(out,
            "usage: trialsync init --trial ID --dir DIR [--hub-id ID] [--host HOST]\n"
            "                      [--peer-port N] [--api-port N]\n"
            "                      [--encrypt-ca [--pass-file FILE]]\n\n"
            "Creates a trial: its CA (DIR/ca), the first hub's node directory (DIR/hub)\n"
            "and the admin identity (DIR/admin).  Refuses an existing trial directory.\n"
            "  --trial ID      the trial id (A-Z a-z 0-9 . _ -), e.g. ONC-301\n"
            "  --hub-id ID     the first hub's node id (default: hub1)\n"
            "  --host HOST     the address sites reach the hub at (default: 127.0.0.1)\n"
            "  --peer-port N   the hub's replication port (default: 7800)\n"
            "  --api-port N    the hub's local API port (default: 7801)\n"
            "  --encrypt-ca    encrypt DIR/ca/ca.key and DIR/admin/node.key (AES-256) with\n"
            "                  a passphrase; site add|revoke, hub add and crl renew then\n"
            "                  need it.  The hub's key stays unencrypted (mode 0600):\n"
            "                  trialsyncd restarts unattended and asks no passphrase\n"
            "  --pass-file FILE  the passphrase is FILE's first line (FILE mode 0600);\n"
            "                  without it, asked twice on the terminal\n");
}

static bool parse_port(const char *s, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v == 0 || v > 65535)
        return false;
    *out = (unsigned)v;
    return true;
}

static int init_trial(const char *trial, const char *dir, const char *hub_id, const char *host,
                      unsigned peer_port, unsigned api_port, struct crypto_pass *pass,
                      bool encrypt);

int cmd_init(int argc, char **argv)
{
    static const struct option opts[] = {
        {"trial", required_argument, NULL, 't'}, {"dir", required_argument, NULL, 'd'},
        {"hub-id", required_argument, NULL, 'i'}, {"host", required_argument, NULL, 'H'},
        {"peer-port", required_argument, NULL, 'p'}, {"api-port", required_argument, NULL, 'a'},
        {"encrypt-ca", no_argument, NULL, 'E'}, {"pass-file", required_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    const char *trial = NULL, *dir = NULL, *hub_id = "hub1", *host = "127.0.0.1";
    const char *pass_file = NULL;
    unsigned peer_port = 7800, api_port = 7801;
    bool encrypt = false;
    int c;

    optind = 1;
    while ((c = cli_getopt(argc, argv, opts, "init")) != -1) {
        switch (c) {
        case 't': trial = optarg; break;
        case 'd': dir = optarg; break;
        case 'i': hub_id = optarg; break;
        case 'H': host = optarg; break;
        case 'p':
            if (!parse_port(optarg, &peer_port))
                return cli_fail("--peer-port: '%s' is not a port (1-65535)", optarg);
            break;
        case 'a':
            if (!parse_port(optarg, &api_port))
                return cli_fail("--api-port: '%s' is not a port (1-65535)", optarg);
            break;
        case 'E': encrypt = true; break;
        case 'P': pass_file = optarg; break;
        case 'h': init_usage(stdout); return 0;
        default: init_usage(stderr); return 2;
        }
    }
    if (trial == NULL)
        return cli_usage_error("init", init_usage, "--trial ID is required");
    if (dir == NULL)
        return cli_usage_error("init", init_usage, "--dir DIR is required");
    if (optind != argc)
        return cli_usage_error("init", init_usage, "unexpected argument '%s'", argv[optind]);
    /* A pass file alone would leave the user believing the CA key is encrypted. */
    if (pass_file != NULL && !encrypt)
        return cli_fail("init: --pass-file goes with --encrypt-ca; without it the CA key is "
                        "written unencrypted (mode 0600)");
    struct crypto_pass pass;
    crypto_pass_init(&pass, pass_file, true);
    int rc = init_trial(trial, dir, hub_id, host, peer_port, api_port, &pass, encrypt);
    crypto_pass_release(&pass);
    return rc;
}

/* The work of init once its options are parsed. */
static int init_trial(const char *trial, const char *dir, const char *hub_id, const char *host,
                      unsigned peer_port, unsigned api_port, struct crypto_pass *pass,
                      bool encrypt)
{
    if (!validate_id(trial))
        return cli_fail("--trial: '%s' is not a valid id (1-63 of A-Z a-z 0-9 . _ -)", trial);
    if (!validate_id(hub_id))
        return cli_fail("--hub-id: '%s' is not a valid id (1-63 of A-Z a-z 0-9 . _ -)", hub_id);

    char path[PATH_MAX], ca_dir[PATH_MAX], hub_dir[PATH_MAX], admin_dir[PATH_MAX];
    if (path_join(path, sizeof(path), dir, "trial.conf") != 0 ||
        path_join(ca_dir, sizeof(ca_dir), dir, "ca") != 0 ||
        path_join(hub_dir, sizeof(hub_dir), dir, "hub") != 0 ||
        path_join(admin_dir, sizeof(admin_dir), dir, "admin") != 0)
        return cli_fail("--dir: path too long");
    if (exists(path) || exists(ca_dir))
        return cli_fail("%s already holds a trial; refusing to overwrite it", dir);
    struct ts_error err = {0};
    if (encrypt) {
        /* Asked before anything is written, so a refusal leaves no half trial. */
        char keys[2 * PATH_MAX + 16];
        snprintf(keys, sizeof(keys), "%s/ca.key and %s/node.key", ca_dir, admin_dir);
        if (crypto_pass_get(pass, keys, true, &err) != 0)
            return cli_fail("%s", err.msg);
    }
    int rc = mkdir_p(dir, 0755);
    if (rc != 0)
        return cli_fail("cannot create %s: %s", dir, strerror(-rc));

    struct crypto_pass *key_pass = encrypt ? pass : NULL;
    if (pki_ca_create(ca_dir, trial, CA_DAYS, key_pass, &err) != 0)
        return cli_fail("%s", err.msg);
    if (pki_crl_write(ca_dir, pass, &err) != 0)
        return cli_fail("%s", err.msg);
    struct pki_identity hub = {.role = PKI_ROLE_HUB};
    snprintf(hub.trial, sizeof(hub.trial), "%s", trial);
    snprintf(hub.id, sizeof(hub.id), "%s", hub_id);
    if (pki_issue(ca_dir, &hub, NULL, CERT_DAYS, hub_dir, pass, NULL, &err) != 0)
        return cli_fail("%s", err.msg);
    struct pki_identity admin = {.role = PKI_ROLE_ADMIN};
    snprintf(admin.trial, sizeof(admin.trial), "%s", trial);
    snprintf(admin.id, sizeof(admin.id), "admin");
    if (pki_issue(ca_dir, &admin, NULL, CERT_DAYS, admin_dir, pass, key_pass, &err) != 0)
        return cli_fail("%s", err.msg);

    char listen[300];
    snprintf(listen, sizeof(listen), "0.0.0.0:%u", peer_port);
    if (write_node_conf(hub_dir, trial, hub_id, PKI_ROLE_HUB, api_port, listen, NULL, 0) != 0)
        return 1;
    if (copy_crl(ca_dir, hub_dir) != 0)
        return 1;

    struct trial_conf t;
    memset(&t, 0, sizeof(t));
    snprintf(t.id, sizeof(t.id), "%s", trial);
    snprintf(t.hubs[0], sizeof(t.hubs[0]), "%s:%u", host, peer_port);
    snprintf(t.hub_dirs[0], sizeof(t.hub_dirs[0]), "hub");
    t.hubs_count = 1;
    t.next_port = (api_port > peer_port ? api_port : peer_port) + 10;
    if (trial_conf_save(dir, &t) != 0)
        return 1;

    printf("trial %s created in %s\n"
           "  CA          %s/ca (keep ca.key offline%s)\n"
           "  hub %-8s %s (start: trialsyncd --config %s/node.conf)\n"
           "  admin       %s\n"
           "next: trialsync site add SITE --dir %s --out SITEDIR\n",
           trial, dir, dir, encrypt ? "; it and the admin key are encrypted" : "", hub_id,
           hub_dir, hub_dir, admin_dir, dir);
    return 0;
}

/* ---- membership through the hub's API ------------------------------------ */

/* Loads the config of the trial's first hub (DIR/<hub_dir>). */
static int first_hub_config(const char *dir, const struct trial_conf *t, struct config *cfg,
                            struct ts_error *err)
{
    char hub_dir[PATH_MAX];
    if (t->hubs_count == 0)
        return ts_error_set(err, TS_ERR_CONFIG, "the trial lists no hub");
    if (t->hub_dirs[0][0] == '/')
        snprintf(hub_dir, sizeof(hub_dir), "%s", t->hub_dirs[0]);
    else if (path_join(hub_dir, sizeof(hub_dir), dir, t->hub_dirs[0]) != 0)
        return ts_error_set(err, TS_ERR_CONFIG, "path too long");
    return config_load_dir(hub_dir, cfg, err);
}

int cli_hub_request(const char *dir, const char *method, const char *path, const char *body,
                    struct client_response *res, struct ts_error *err)
{
    static struct config cfg;
    struct trial_conf t;
    if (trial_conf_load(dir, &t) != 0)
        return ts_error_set(err, TS_ERR_CONFIG, "cannot read the trial in %s", dir);
    int rc = first_hub_config(dir, &t, &cfg, err);
    free(t.sites);
    if (rc != 0)
        return rc;
    return client_request(&cfg, method, path, body, res, err);
}

int cli_admin_write(const char *dir, const char *path, json_t *fields, const char *reason,
                    const char *what)
{
    struct ts_error err = {0};
    struct client_response res;
    json_t *body = json_pack("{s:O,s:s,s:s}", "fields", fields, "reason", reason, "user", "admin");
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL)
        return cli_fail("out of memory");
    int rc = cli_hub_request(dir, "POST", path, text, &res, &err);
    free(text);
    if (rc != 0)
        return cli_fail("%s\nthe %s is not yet recorded: start the hub and run the command "
                        "again", err.msg, what);
    if (res.status != 200) {
        cli_fail("the hub refused the %s (HTTP %d): %s", what, res.status, res.body);
        client_response_release(&res);
        return 1;
    }
    client_response_release(&res);
    return 0;
}

/*
 * Records a membership change in the trial's membership log: a trial-wide
 * `member` entry written by the hub, replicated to every node.
 */
static int record_member(const char *dir, const char *site, const char *status,
                         const char *name, const char *reason)
{
    char path[256];
    json_t *fields = json_pack("{s:s,s:s}", "status", status, "name", name);
    if (fields == NULL)
        return cli_fail("out of memory");
    snprintf(path, sizeof(path), "/v1/members/%s", site);
    int rc = cli_admin_write(dir, path, fields, reason, "membership change");
    json_decref(fields);
    return rc;
}

static struct trial_site *find_site(struct trial_conf *t, const char *id)
{
    for (size_t i = 0; i < t->sites_count; i++)
        if (strcmp(t->sites[i].id, id) == 0)
            return &t->sites[i];
    return NULL;
}

/* ---- the revocation list, by replication ---------------------------------- */

/* Loads the config of the trial's hub i. */
static int hub_config(const char *dir, const struct trial_conf *t, int i, char *hub_dir,
                      size_t cap, struct config *cfg, struct ts_error *err)
{
    if (t->hub_dirs[i][0] == '/')
        snprintf(hub_dir, cap, "%s", t->hub_dirs[i]);
    else if (path_join(hub_dir, cap, dir, t->hub_dirs[i]) != 0)
        return ts_error_set(err, TS_ERR_CONFIG, "path too long");
    return config_load_dir(hub_dir, cfg, err);
}

/*
 * Records the CA's current revocation list (ca/crl.pem) as the trial's `crl`
 * entry through a hub's API (the first hub other than skip_hub, when there
 * is one): a trial-wide entry on the safety lane that replicates to every
 * node, sites included; each puts it in force when its CRL number is higher
 * than the one it holds, and cuts off any connected peer it revokes.
 */
static int record_crl(const char *dir, const struct trial_conf *t, const char *skip_hub,
                      const char *reason)
{
    static struct config cfg;
    struct ts_error err = {0};
    struct client_response res;
    char ca_dir[PATH_MAX], path[PATH_MAX], hub_dir[PATH_MAX];
    char *ca = NULL, *crl = NULL;
    size_t ca_len = 0, crl_len = 0;
    int64_t number = -1;
    int rc = 1;

    path_join(ca_dir, sizeof(ca_dir), dir, "ca");
    path_join(path, sizeof(path), ca_dir, "ca.crt");
    if (pki_read_file(path, &ca, &ca_len, &err) != 0)
        return cli_fail("%s", err.msg);
    path_join(path, sizeof(path), ca_dir, "crl.pem");
    if (pki_read_file(path, &crl, &crl_len, &err) != 0 ||
        pki_crl_check(ca, ca_len, crl, crl_len, &number, &err) != 0) {
        cli_fail("%s: %s", path, err.msg);
        goto out_free;
    }
    if (crl_len > TS_VALUE_BYTES_MAX) {
        cli_fail("%s is %zu bytes: a replicated revocation list holds at most %d (about 60 "
                 "revoked certificates)", path, crl_len, TS_VALUE_BYTES_MAX);
        goto out_free;
    }
    int hub = -1;
    for (int i = 0; i < t->hubs_count && hub < 0; i++) {
        if (hub_config(dir, t, i, hub_dir, sizeof(hub_dir), &cfg, &err) != 0)
            continue;
        if (skip_hub == NULL || strcmp(cfg.id, skip_hub) != 0 || i == t->hubs_count - 1)
            hub = i;
    }
    if (hub < 0) {
        cli_fail("no hub of the trial to record the revocation list through: %s", err.msg);
        goto out_free;
    }
    char num[24];
    snprintf(num, sizeof(num), "%" PRId64, number);
    json_t *body = json_pack("{s:{s:s,s:s},s:s,s:s}", "fields", "pem", crl, "number", num,
                             "reason", reason, "user", "admin");
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (text == NULL) {
        cli_fail("out of memory");
        goto out_free;
    }
    int crc = client_request(&cfg, "POST", "/v1/crl", text, &res, &err);
    free(text);
    if (crc != 0) {
        cli_fail("%s\nthe revocation list is not yet replicated: start hub %s and run "
                 "'trialsync crl renew --dir %s'", err.msg, cfg.id, dir);
        goto out_free;
    }
    if (res.status != 200) {
        cli_fail("hub %s refused the revocation list (HTTP %d): %s", cfg.id, res.status,
                 res.body);
        client_response_release(&res);
        goto out_free;
    }
    client_response_release(&res);
    printf("  revocation list number %" PRId64 " recorded at hub %s; it replicates to every "
           "node\n", number, cfg.id);
    rc = 0;
out_free:
    free(crl);
    free(ca);
    return rc;
}

/*
 * Issues a new key and certificate (a new serial) for the identity who into
 * node_dir, replacing node.key and node.crt and keeping everything else
 * (node.conf, api.token, the data).  The previous certificate is kept in
 * ca/issued/ under its serial: the entries it signed stay verifiable (every
 * node keeps it by (origin, serial)).  The node must be restarted.
 */
static int renew_identity(const char *dir, const struct pki_identity *who, const char *kind,
                          const char *node_dir, struct crypto_pass *ca_pass)
{
    char ca_dir[PATH_MAX], tmp_dir[PATH_MAX + 16], src[PATH_MAX + 32], dst[PATH_MAX + 32];
    char issued[PATH_MAX + 100], old_serial[PKI_SERIAL_HEX_BYTES_MAX] = "?";
    char new_serial[PKI_SERIAL_HEX_BYTES_MAX] = "?";
    struct ts_error err = {0};
    char *pem = NULL;
    size_t len = 0;

    path_join(ca_dir, sizeof(ca_dir), dir, "ca");
    snprintf(src, sizeof(src), "%s/node.crt", node_dir);
    if (pki_read_file(src, &pem, &len, &err) == 0 &&
        pki_cert_serial_hex(pem, len, old_serial, sizeof(old_serial), &err) == 0) {
        snprintf(issued, sizeof(issued), "%s/issued/%s-%s-%s.crt", ca_dir, kind, who->id,
                 old_serial);
        char issued_dir[PATH_MAX + 8];
        path_join(issued_dir, sizeof(issued_dir), ca_dir, "issued");
        mkdir_p(issued_dir, 0755);
        cli_write_file(issued, pem, 0644, false);
    }
    free(pem);
    pem = NULL;
    snprintf(tmp_dir, sizeof(tmp_dir), "%s/.renew", node_dir);
    snprintf(dst, sizeof(dst), "%s/node.key", tmp_dir);
    unlink(dst);
    snprintf(dst, sizeof(dst), "%s/node.crt", tmp_dir);
    unlink(dst);
    snprintf(dst, sizeof(dst), "%s/ca.crt", tmp_dir);
    unlink(dst);
    rmdir(tmp_dir);
    if (mkdir(tmp_dir, 0700) != 0)
        return cli_fail("cannot create %s: %s", tmp_dir, strerror(errno));
    int rc = pki_issue(ca_dir, who, NULL, CERT_DAYS, tmp_dir, ca_pass, NULL, &err);
    if (rc != 0) {
        cli_fail("%s", err.msg);
        goto out_rmdir;
    }
    /* The certificate first: a node started in between fails on a key that
     * does not match it, and says so, rather than running on a stale pair. */
    const char *files[] = {"node.crt", "node.key"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(src, sizeof(src), "%s/%s", tmp_dir, files[i]);
        snprintf(dst, sizeof(dst), "%s/%s", node_dir, files[i]);
        if (rename(src, dst) != 0) {
            rc = cli_fail("cannot move %s to %s: %s", src, dst, strerror(errno));
            goto out_rmdir;
        }
    }
    snprintf(src, sizeof(src), "%s/node.crt", node_dir);
    if (pki_read_file(src, &pem, &len, &err) == 0) {
        pki_cert_serial_hex(pem, len, new_serial, sizeof(new_serial), &err);
        if (strcmp(kind, "site") == 0) {
            /* site revoke revokes the current certificate. */
            snprintf(issued, sizeof(issued), "%s/issued/site-%s.crt", ca_dir, who->id);
            cli_write_file(issued, pem, 0644, false);
        }
        free(pem);
    }
    printf("%s %s renewed: new key and certificate (serial %s, was %s) in %s; restart it "
           "(trialsyncd --config %s/node.conf).  Entries signed with the old key stay "
           "verifiable; revoke the old certificate with 'trialsync %s revoke' only if its "
           "key is compromised\n",
           kind, who->id, new_serial, old_serial, node_dir, node_dir, kind);
    rc = 0;
out_rmdir:
    snprintf(dst, sizeof(dst), "%s/ca.crt", tmp_dir);
    unlink(dst);
    snprintf(dst, sizeof(dst), "%s/node.key", tmp_dir);
    unlink(dst);
    snprintf(dst, sizeof(dst), "%s/node.crt", tmp_dir);
    unlink(dst);
    rmdir(tmp_dir);
    return rc;
}

/* ---- site add | list | revoke -------------------------------------------- */

static void site_usage(FILE *out)
{
    fprintf(out,
            "usage: trialsync site add SITE --dir DIR --out SITEDIR [--name TEXT]\n"
            "                          [--hub HOST:PORT ...] [--api-port N] [--pass-file FILE]\n"
            "       trialsync site list --dir DIR [--json]\n"
            "       trialsync site revoke SITE --dir DIR --reason TEXT [--pass-file FILE]\n"
            "       trialsync site renew SITE --dir DIR [--out SITEDIR] [--pass-file FILE]\n\n"
            "add     issues the site's bundle in SITEDIR (node.key 0600, node.crt with role\n"
            "        site, ca.crt, crl.pem, node.conf listing the hubs, api.token) and\n"
            "        records the site in the membership log (the hub must be running)\n"
            "list    every site: name, status, connected, last seen, entries behind\n"
            "revoke  revokes the site's certificate (CRL) and records the revocation; the\n"
            "        CA-signed CRL replicates to every node (sites too); every node refuses\n"
            "        the site from then on, entries it signed before stay valid\n"
            "renew   issues a new key and certificate (new serial) into the site's bundle\n"
            "        (SITEDIR, default the one site add wrote), keeping node.conf and data;\n"
            "        restart the site; entries signed with the old key stay verifiable\n"
            "--pass-file FILE  the passphrase of an encrypted CA key (init --encrypt-ca) is\n"
            "        FILE's first line (FILE mode 0600); without it, asked on the terminal\n");
}

/*
 * A site id is what a subject key's site part can be (schema_site_of_key):
 * letters and digits only, "101" or "BOS1".  A '.', '_' or '-' would make a
 * site whose subjects no key could name.
 */
static bool site_id_ok(const char *site)
{
    return schema_id_ok(site) && lex_all(site, strlen(site), lex_alnum);
}

static int site_add(const char *dir, const char *site, const char *out_dir, const char *name,
                    char hubs[][280], int hubs_count, unsigned api_port,
                    struct crypto_pass *ca_pass)
{
    struct trial_conf t;
    if (trial_conf_load(dir, &t) != 0)
        return 1;
    int rc = 1;
    if (!site_id_ok(site)) {
        cli_fail("'%s' is not a valid site id: 1-%d letters or digits (e.g. 101 or BOS1), "
                 "because subject ids are <site>-<number> and their site part is only "
                 "letters and digits", site, TS_ID_BYTES_MAX);
        goto out;
    }
    if (find_site(&t, site) != NULL) {
        cli_fail("site %s already exists in trial %s; refusing to add it again", site, t.id);
        goto out;
    }
    if (t.sites_count == TRIAL_SITES_MAX) {
        cli_fail("the trial has the most sites this tool handles (%d)", TRIAL_SITES_MAX);
        goto out;
    }
    char ca_dir[PATH_MAX], issued[PATH_MAX], cert[PATH_MAX];
    path_join(ca_dir, sizeof(ca_dir), dir, "ca");
    struct ts_error err = {0};
    struct pki_identity who = {.role = PKI_ROLE_SITE};
    snprintf(who.trial, sizeof(who.trial), "%s", t.id);
    snprintf(who.id, sizeof(who.id), "%s", site);
    if (pki_issue(ca_dir, &who, name, CERT_DAYS, out_dir, ca_pass, NULL, &err) != 0) {
        cli_fail("%s", err.msg);
        goto out;
    }
    /* Keep a copy of every certificate issued, for revocation. */
    path_join(issued, sizeof(issued), ca_dir, "issued");
    mkdir_p(issued, 0755);
    snprintf(cert, sizeof(cert), "%s/node.crt", out_dir);
    char *pem = NULL;
    size_t pem_len = 0;
    char issued_cert[PATH_MAX + 80];
    snprintf(issued_cert, sizeof(issued_cert), "%s/site-%s.crt", issued, site);
    if (pki_read_file(cert, &pem, &pem_len, &err) != 0 ||
        cli_write_file(issued_cert, pem, 0644, false) != 0) {
        free(pem);
        cli_fail("cannot keep a copy of the certificate in %s", issued);
        goto out;
    }
    free(pem);
    if (hubs_count == 0) {
        for (int i = 0; i < t.hubs_count; i++)
            snprintf(hubs[i], 280, "%s", t.hubs[i]);
        hubs_count = t.hubs_count;
    }
    if (api_port == 0)
        api_port = t.next_port++;
    if (write_node_conf(out_dir, t.id, site, PKI_ROLE_SITE, api_port, NULL, hubs, hubs_count) != 0)
        goto out;
    if (copy_crl(ca_dir, out_dir) != 0)
        goto out;
    struct trial_site *s = &t.sites[t.sites_count++];
    memset(s, 0, sizeof(*s));
    snprintf(s->id, sizeof(s->id), "%s", site);
    snprintf(s->name, sizeof(s->name), "%s", name != NULL ? name : site);
    snprintf(s->status, sizeof(s->status), "active");
    if (out_dir[0] == '/') {
        snprintf(s->dir, sizeof(s->dir), "%s", out_dir);
    } else {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof(cwd)) == NULL)
            cwd[0] = '\0';
        snprintf(s->dir, sizeof(s->dir), "%.2000s/%.2000s", cwd, out_dir);
    }
    if (trial_conf_save(dir, &t) != 0)
        goto out;
    printf("site %s added to trial %s: bundle in %s (API port %u)\n"
           "  start it with: trialsyncd --config %s/node.conf\n",
           site, t.id, out_dir, api_port, out_dir);
    rc = record_member(dir, site, "active", s->name, "site added");
    if (rc == 0)
        printf("  recorded in the membership log\n");
out:
    free(t.sites);
    return rc;
}

static int site_revoke(const char *dir, const char *site, const char *reason,
                       struct crypto_pass *ca_pass)
{
    struct trial_conf t;
    if (trial_conf_load(dir, &t) != 0)
        return 1;
    int rc = 1;
    struct trial_site *s = find_site(&t, site);
    if (s == NULL) {
        cli_fail("trial %s has no site %s ('trialsync site list --dir %s' lists them)", t.id,
                 site, dir);
        goto out;
    }
    char ca_dir[PATH_MAX], cert[PATH_MAX + 80];
    struct ts_error err = {0};
    path_join(ca_dir, sizeof(ca_dir), dir, "ca");
    snprintf(cert, sizeof(cert), "%s/issued/site-%s.crt", ca_dir, site);
    if (strcmp(s->status, "revoked") != 0 && pki_revoke(ca_dir, cert, ca_pass, &err) != 0) {
        cli_fail("%s", err.msg);
        goto out;
    }
    snprintf(s->status, sizeof(s->status), "revoked");
    snprintf(s->reason, sizeof(s->reason), "%s", reason);
    if (trial_conf_save(dir, &t) != 0)
        goto out;
    printf("site %s revoked: certificate on the CRL (%s/crl.pem)\n", site, ca_dir);
    rc = record_member(dir, site, "revoked", s->name, reason);
    if (rc == 0)
        printf("  revocation recorded in the membership log; nodes refuse the site now\n");
    if (rc == 0)
        rc = record_crl(dir, &t, NULL, reason);
out:
    free(t.sites);
    return rc;
}

static int site_list(const char *dir, bool as_json)
{
    struct trial_conf t;
    if (trial_conf_load(dir, &t) != 0)
        return 1;
    static struct config cfg;
    struct ts_error err = {0};
    struct client_response res = {0};
    json_t *status = NULL;
    if (first_hub_config(dir, &t, &cfg, &err) == 0 &&
        client_request(&cfg, "GET", "/v1/status", NULL, &res, &err) == 0 && res.status == 200)
        status = json_loads(res.body, 0, NULL);
    client_response_release(&res);
    json_t *peers = status != NULL ? json_object_get(status, "peers") : NULL;

    json_t *out = json_array();
    for (size_t i = 0; i < t.sites_count; i++) {
        const struct trial_site *s = &t.sites[i];
        json_t *row = json_pack("{s:s,s:s,s:s}", "id", s->id, "name", s->name, "status",
                                s->status);
        size_t k;
        json_t *p;
        json_array_foreach(peers, k, p) {
            const char *pid = json_string_value(json_object_get(p, "id"));
            if (pid == NULL || strcmp(pid, s->id) != 0)
                continue;
            json_object_set(row, "connected", json_object_get(p, "connected"));
            json_object_set(row, "last_seen", json_object_get(p, "last_seen"));
            json_object_set(row, "behind_recv_safety", json_object_get(p, "behind_recv_safety"));
            json_object_set(row, "behind_recv_bulk", json_object_get(p, "behind_recv_bulk"));
            json_object_set(row, "behind_send_safety", json_object_get(p, "behind_send_safety"));
            json_object_set(row, "behind_send_bulk", json_object_get(p, "behind_send_bulk"));
        }
        json_array_append_new(out, row);
    }
    if (as_json) {
        json_t *doc = json_pack("{s:s,s:b,s:O}", "trial", t.id, "hub_reachable",
                                status != NULL, "sites", out);
        char *text = json_dumps(doc, JSON_COMPACT);
        json_decref(doc);
        printf("%s\n", text != NULL ? text : "{}");
        free(text);
    } else {
        printf("trial %s: %zu sites%s\n", t.id, t.sites_count,
               status == NULL ? " (hub not reachable: connection columns unknown)" : "");
        printf("%-10s %-24s %-8s %-10s %-24s %10s %10s\n", "SITE", "NAME", "STATUS", "CONNECTED",
               "LAST SEEN", "BEHIND", "TO SEND");
        size_t i;
        json_t *row;
        json_array_foreach(out, i, row) {
            json_t *conn = json_object_get(row, "connected");
            json_t *seen = json_object_get(row, "last_seen");
            long long behind = json_integer_value(json_object_get(row, "behind_recv_safety")) +
                               json_integer_value(json_object_get(row, "behind_recv_bulk"));
            long long to_send = json_integer_value(json_object_get(row, "behind_send_safety")) +
                                json_integer_value(json_object_get(row, "behind_send_bulk"));
            /* The name column is padded by characters, not bytes, so a
             * name like "Charité" keeps its row aligned. */
            const char *name = json_string_value(json_object_get(row, "name"));
            if (name == NULL)
                name = "";
            int name_bytes = (int)cli_prefix_bytes(name, 24);
            size_t name_width = cli_display_width(name);
            int pad = name_width < 24 ? (int)(24 - name_width) : 0;
            printf("%-10s %.*s%*s %-8s %-10s %-24s %10lld %10lld\n",
                   json_string_value(json_object_get(row, "id")), name_bytes, name, pad, "",
                   json_string_value(json_object_get(row, "status")),
                   conn == NULL ? "?" : json_is_true(conn) ? "yes" : "no",
                   json_is_string(seen) ? json_string_value(seen) : (status ? "never" : "?"),
                   behind, to_send);
        }
    }
    json_decref(out);
    json_decref(status);
    free(t.sites);
    return 0;
}

int cmd_site(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'}, {"out", required_argument, NULL, 'o'},
        {"name", required_argument, NULL, 'n'}, {"hub", required_argument, NULL, 'H'},
        {"reason", required_argument, NULL, 'r'}, {"api-port", required_argument, NULL, 'a'},
        {"json", no_argument, NULL, 'j'}, {"pass-file", required_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    const char *dir = NULL, *out_dir = NULL, *name = NULL, *reason = NULL;
    const char *pass_file = NULL;
    char hubs[CONFIG_HUBS_MAX][280];
    int hubs_count = 0;
    unsigned api_port = 0;
    bool as_json = false;
    int c;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        site_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *action = argv[1];
    char verb[64];
    snprintf(verb, sizeof(verb), "site %.32s", action);
    if (strcmp(action, "add") != 0 && strcmp(action, "revoke") != 0 &&
        strcmp(action, "list") != 0 && strcmp(action, "renew") != 0)
        return cli_usage_error("site", site_usage, "unknown action '%s'", action);
    optind = 2;
    while ((c = cli_getopt(argc, argv, opts, verb)) != -1) {
        switch (c) {
        case 'd': dir = optarg; break;
        case 'o': out_dir = optarg; break;
        case 'n': name = optarg; break;
        case 'r': reason = optarg; break;
        case 'j': as_json = true; break;
        case 'P': pass_file = optarg; break;
        case 'a':
            if (!parse_port(optarg, &api_port))
                return cli_fail("--api-port: '%s' is not a port (1-65535)", optarg);
            break;
        case 'H': {
            struct config_addr a;
            if (config_addr_parse(optarg, &a) != 0)
                return cli_fail("--hub: '%s' is not HOST:PORT", optarg);
            if (hubs_count == CONFIG_HUBS_MAX)
                return cli_fail("--hub: at most %d hubs", CONFIG_HUBS_MAX);
            snprintf(hubs[hubs_count++], 280, "%s", optarg);
            break;
        }
        case 'h': site_usage(stdout); return 0;
        default: site_usage(stderr); return 2;
        }
    }
    const char *site = optind < argc ? argv[optind] : NULL;
    if (dir == NULL)
        return cli_usage_error(verb, site_usage, "--dir DIR is required");
    if (strcmp(action, "list") != 0 && site == NULL)
        return cli_usage_error(verb, site_usage, "which site? (SITE is required)");
    if (optind + (site != NULL && strcmp(action, "list") != 0 ? 1 : 0) != argc)
        return cli_usage_error(verb, site_usage, "unexpected argument '%s'",
                               argv[argc - 1]);
    if (strcmp(action, "add") == 0) {
        if (out_dir == NULL)
            return cli_usage_error(verb, site_usage, "--out SITEDIR is required");
        struct crypto_pass pass;
        crypto_pass_init(&pass, pass_file, true);
        int rc = site_add(dir, site, out_dir, name, hubs, hubs_count, api_port, &pass);
        crypto_pass_release(&pass);
        return rc;
    }
    if (strcmp(action, "revoke") == 0) {
        if (reason == NULL || reason[0] == '\0')
            return cli_fail("site revoke: --reason TEXT is required (it goes in the audit trail)");
        struct crypto_pass pass;
        crypto_pass_init(&pass, pass_file, true);
        int rc = site_revoke(dir, site, reason, &pass);
        crypto_pass_release(&pass);
        return rc;
    }
    if (strcmp(action, "list") == 0)
        return site_list(dir, as_json);
    if (strcmp(action, "renew") == 0) {
        struct trial_conf t;
        if (trial_conf_load(dir, &t) != 0)
            return 1;
        struct trial_site *s = find_site(&t, site);
        int rc;
        if (s == NULL) {
            rc = cli_fail("trial %s has no site %s", t.id, site);
        } else if (strcmp(s->status, "revoked") == 0) {
            rc = cli_fail("site %s is revoked; a revoked site is not renewed", site);
        } else {
            struct pki_identity who = {.role = PKI_ROLE_SITE};
            snprintf(who.trial, sizeof(who.trial), "%s", t.id);
            snprintf(who.id, sizeof(who.id), "%s", site);
            struct crypto_pass pass;
            crypto_pass_init(&pass, pass_file, true);
            rc = renew_identity(dir, &who, "site", out_dir != NULL ? out_dir : s->dir, &pass);
            crypto_pass_release(&pass);
        }
        free(t.sites);
        return rc;
    }
    return cli_usage_error("site", site_usage, "unknown action '%s'", action);
}

/* ---- hub add ------------------------------------------------------------- */

static void hub_usage(FILE *out)
{
    fprintf(out,
            "usage: trialsync hub add HUB --dir DIR --out HUBDIR [--host HOST]\n"
            "                         [--peer-port N] [--api-port N] [--pass-file FILE]\n"
            "       trialsync hub renew HUB --dir DIR [--out HUBDIR] [--pass-file FILE]\n"
            "       trialsync hub revoke HUB --dir DIR --reason TEXT [--pass-file FILE]\n\n"
            "renew: a new key and certificate (new serial) in the hub's directory; restart\n"
            "it.  revoke: puts the hub's certificate on the CRL and records the CA-signed\n"
            "CRL through another hub, so it replicates to every node; every node refuses\n"
            "the hub, and its entries signed after the revocation.\n\n"
            "Issues another hub: its node directory connects to the trial's existing hubs\n"
            "and they replicate to each other.  Sites added afterwards list every hub;\n"
            "add a 'hub = HOST:PORT' line to the [peer] section of existing sites'\n"
            "node.conf for them to fail over to it.  --pass-file FILE: the passphrase of\n"
            "an encrypted CA key is FILE's first line (mode 0600); without it, asked on\n"
            "the terminal.\n");
}

/* hub renew | revoke: the hub is found by id among the trial's hub directories. */
static int hub_renew_or_revoke(const char *dir, const char *action, const char *hub,
                               const char *out_dir, const char *reason, const char *pass_file)
{
    struct trial_conf t;
    if (trial_conf_load(dir, &t) != 0)
        return 1;
    static struct config cfg;
    struct ts_error err = {0};
    char hub_dir[PATH_MAX] = "";
    int rc = 1;
    bool found = false;
    for (int i = 0; i < t.hubs_count && !found; i++)
        found = hub_config(dir, &t, i, hub_dir, sizeof(hub_dir), &cfg, &err) == 0 &&
                strcmp(cfg.id, hub) == 0;
    if (!found && out_dir == NULL) {
        cli_fail("trial %s has no hub %s in its hub directories (give --out HUBDIR)", t.id, hub);
        goto out;
    }
    if (out_dir != NULL)
        snprintf(hub_dir, sizeof(hub_dir), "%s", out_dir);
    struct crypto_pass pass;
    crypto_pass_init(&pass, pass_file, true);
    if (strcmp(action, "renew") == 0) {
        struct pki_identity who = {.role = PKI_ROLE_HUB};
        snprintf(who.trial, sizeof(who.trial), "%s", t.id);
        snprintf(who.id, sizeof(who.id), "%s", hub);
        rc = renew_identity(dir, &who, "hub", hub_dir, &pass);
    } else if (reason == NULL || reason[0] == '\0') {
        rc = cli_fail("hub revoke: --reason TEXT is required (it goes in the audit trail)");
    } else {
        char ca_dir[PATH_MAX], cert[PATH_MAX + 16];
        path_join(ca_dir, sizeof(ca_dir), dir, "ca");
        snprintf(cert, sizeof(cert), "%s/node.crt", hub_dir);
        if (pki_revoke(ca_dir, cert, &pass, &err) != 0) {
            rc = cli_fail("%s", err.msg);
        } else {
            printf("hub %s revoked: certificate on the CRL (%s/crl.pem)\n", hub, ca_dir);
            rc = record_crl(dir, &t, hub, reason);
        }
    }
    crypto_pass_release(&pass);
out:
    free(t.sites);
    return rc;
}

/* ---- admin revoke ---------------------------------------------------------- */

static void admin_usage(FILE *out)
{
    fprintf(out,
            "usage: trialsync admin revoke --dir DIR --reason TEXT [--pass-file FILE]\n\n"
            "revoke: puts the trial's admin certificate (DIR/admin/node.crt) on the CRL\n"
            "and records the CA-signed CRL through a hub, so it replicates to every node:\n"
            "every node then refuses a connection with that certificate.  Use it when the\n"
            "admin key is lost or compromised.  Admins sign no oplog entries, so nothing\n"
            "already recorded changes.  --pass-file FILE: the passphrase of an encrypted\n"
            "CA key is FILE's first line (mode 0600); without it, asked on the terminal.\n");
}

int cmd_admin(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'}, {"reason", required_argument, NULL, 'r'},
        {"pass-file", required_argument, NULL, 'P'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = NULL, *reason = NULL, *pass_file = NULL;
    int c;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        admin_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "revoke") != 0)
        return cli_usage_error("admin", admin_usage, "unknown action '%s'", argv[1]);
    optind = 2;
    while ((c = cli_getopt(argc, argv, opts, "admin revoke")) != -1) {
        switch (c) {
        case 'd': dir = optarg; break;
        case 'r': reason = optarg; break;
        case 'P': pass_file = optarg; break;
        case 'h': admin_usage(stdout); return 0;
        default: return cli_usage_error("admin", admin_usage, NULL);
        }
    }
    if (optind < argc)
        return cli_usage_error("admin", admin_usage, "unexpected argument '%s'", argv[optind]);
    if (dir == NULL)
        return cli_usage_error("admin", admin_usage, "--dir DIR is required");
    if (reason == NULL || reason[0] == '\0')
        return cli_fail("admin revoke: --reason TEXT is required (it goes in the audit trail)");

    struct trial_conf t;
    if (trial_conf_load(dir, &t) != 0)
        return 1;
    char ca_dir[PATH_MAX], cert[PATH_MAX];
    struct ts_error err = {0};
    path_join(ca_dir, sizeof(ca_dir), dir, "ca");
    path_join(cert, sizeof(cert), dir, "admin/node.crt");
    struct crypto_pass pass;
    crypto_pass_init(&pass, pass_file, true);
    int rc;
    if (pki_revoke(ca_dir, cert, &pass, &err) != 0) {
        rc = cli_fail("%s", err.msg);
    } else {
        printf("admin revoked: certificate %s on the CRL (%s/crl.pem)\n", cert, ca_dir);
        rc = record_crl(dir, &t, NULL, reason);
    }
    crypto_pass_release(&pass);
    free(t.sites);
    return rc;
}

int cmd_hub(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'}, {"out", required_argument, NULL, 'o'},
        {"host", required_argument, NULL, 'H'}, {"peer-port", required_argument, NULL, 'p'},
        {"api-port", required_argument, NULL, 'a'}, {"pass-file", required_argument, NULL, 'P'},
        {"reason", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    const char *dir = NULL, *out_dir = NULL, *host = "127.0.0.1", *pass_file = NULL;
    unsigned peer_port = 0, api_port = 0;
    int c;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        hub_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *action = argv[1], *reason = NULL;
    if (strcmp(action, "add") != 0 && strcmp(action, "renew") != 0 &&
        strcmp(action, "revoke") != 0)
        return cli_usage_error("hub", hub_usage, "unknown action '%s'", action);
    char verb[64];
    snprintf(verb, sizeof(verb), "hub %s", action);
    optind = 2;
    while ((c = cli_getopt(argc, argv, opts, verb)) != -1) {
        switch (c) {
        case 'd': dir = optarg; break;
        case 'o': out_dir = optarg; break;
        case 'H': host = optarg; break;
        case 'r': reason = optarg; break;
        case 'P': pass_file = optarg; break;
        case 'p':
            if (!parse_port(optarg, &peer_port))
                return cli_fail("--peer-port: '%s' is not a port (1-65535)", optarg);
            break;
        case 'a':
            if (!parse_port(optarg, &api_port))
                return cli_fail("--api-port: '%s' is not a port (1-65535)", optarg);
            break;
        case 'h': hub_usage(stdout); return 0;
        default: hub_usage(stderr); return 2;
        }
    }
    if (dir == NULL)
        return cli_usage_error(verb, hub_usage, "--dir DIR is required");
    if (optind == argc)
        return cli_usage_error(verb, hub_usage, "which hub? (HUB is required)");
    if (optind + 1 != argc)
        return cli_usage_error(verb, hub_usage, "unexpected argument '%s'", argv[optind + 1]);
    if (strcmp(action, "add") != 0)
        return hub_renew_or_revoke(dir, action, argv[optind], out_dir, reason, pass_file);
    if (out_dir == NULL)
        return cli_usage_error(verb, hub_usage, "--out HUBDIR is required");
    const char *hub = argv[optind];
    if (!validate_id(hub))
        return cli_fail("'%s' is not a valid hub id (1-63 of A-Z a-z 0-9 . _ -)", hub);
    struct trial_conf t;
    if (trial_conf_load(dir, &t) != 0)
        return 1;
    int rc = 1;
    if (t.hubs_count == CONFIG_HUBS_MAX) {
        cli_fail("the trial has the most hubs allowed (%d)", CONFIG_HUBS_MAX);
        goto out;
    }
    if (peer_port == 0)
        peer_port = t.next_port++;
    if (api_port == 0)
        api_port = t.next_port++;
    char ca_dir[PATH_MAX];
    struct ts_error err = {0};
    path_join(ca_dir, sizeof(ca_dir), dir, "ca");
    struct pki_identity who = {.role = PKI_ROLE_HUB};
    snprintf(who.trial, sizeof(who.trial), "%s", t.id);
    snprintf(who.id, sizeof(who.id), "%s", hub);
    struct crypto_pass pass;
    crypto_pass_init(&pass, pass_file, true);
    rc = pki_issue(ca_dir, &who, NULL, CERT_DAYS, out_dir, &pass, NULL, &err);
    crypto_pass_release(&pass);
    if (rc != 0) {
        rc = cli_fail("%s", err.msg);
        goto out;
    }
    rc = 1;
    char listen[64];
    snprintf(listen, sizeof(listen), "0.0.0.0:%u", peer_port);
    if (write_node_conf(out_dir, t.id, hub, PKI_ROLE_HUB, api_port, listen, t.hubs,
                        t.hubs_count) != 0)
        goto out;
    if (copy_crl(ca_dir, out_dir) != 0)
        goto out;
    snprintf(t.hubs[t.hubs_count], sizeof(t.hubs[0]), "%s:%u", host, peer_port);
    if (out_dir[0] == '/') {
        snprintf(t.hub_dirs[t.hubs_count], sizeof(t.hub_dirs[0]), "%s", out_dir);
    } else {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof(cwd)) == NULL)
            cwd[0] = '\0';
        snprintf(t.hub_dirs[t.hubs_count], sizeof(t.hub_dirs[0]), "%.2000s/%.2000s", cwd,
                 out_dir);
    }
    t.hubs_count++;
    if (trial_conf_save(dir, &t) != 0)
        goto out;
    printf("hub %s added to trial %s: node directory %s (peer port %u, API port %u)\n"
           "  it connects to the existing hubs; start it with: trialsyncd --config "
           "%s/node.conf\n",
           hub, t.id, out_dir, peer_port, api_port, out_dir);
    rc = 0;
out:
    free(t.sites);
    return rc;
}

/* ---- crl renew ------------------------------------------------------------ */

static void crl_usage(FILE *out)
{
    fprintf(out,
            "usage: trialsync crl renew --dir DIR [--pass-file FILE]\n\n"
            "Signs a fresh revocation list (valid 30 days) listing every revoked\n"
            "certificate and records it through a hub (which must be running): it\n"
            "replicates to every node, sites included, each of which puts it in force\n"
            "when its CRL number is higher.  Run it monthly (cron).\n"
            "--pass-file FILE: the passphrase of an encrypted CA key is FILE's first\n"
            "line (mode 0600); without it, asked on the terminal (cron needs the file).\n");
}

int cmd_crl(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'},
        {"pass-file", required_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = NULL, *pass_file = NULL;
    int c;
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        crl_usage(stdout);
        return 0;
    }
    if (argc < 2)
        return cli_usage_error("crl", crl_usage, NULL);
    if (strcmp(argv[1], "renew") != 0)
        return cli_usage_error("crl", crl_usage, "unknown action '%s'", argv[1]);
    optind = 2;
    while ((c = cli_getopt(argc, argv, opts, "crl renew")) != -1) {
        switch (c) {
        case 'd': dir = optarg; break;
        case 'P': pass_file = optarg; break;
        case 'h': crl_usage(stdout); return 0;
        default: crl_usage(stderr); return 2;
        }
    }
    if (dir == NULL)
        return cli_usage_error("crl renew", crl_usage, "--dir DIR is required");
    if (optind != argc)
        return cli_usage_error("crl renew", crl_usage, "unexpected argument '%s'", argv[optind]);
    struct trial_conf t;
    if (trial_conf_load(dir, &t) != 0)
        return 1;
    char ca_dir[PATH_MAX];
    struct ts_error err = {0};
    path_join(ca_dir, sizeof(ca_dir), dir, "ca");
    int rc = 0;
    struct crypto_pass pass;
    crypto_pass_init(&pass, pass_file, true);
    if (pki_crl_write(ca_dir, &pass, &err) != 0)
        rc = cli_fail("%s", err.msg);
    crypto_pass_release(&pass);
    if (rc != 0)
        goto out;
    printf("revocation list of trial %s renewed: %s/crl.pem\n", t.id, ca_dir);
    rc = record_crl(dir, &t, NULL, "revocation list renewed");
out:
    free(t.sites);
    return rc;
}
