/*
 * backup.c: `trialsync backup` and `trialsync restore`: a node's store
 * copied out while the node runs, and copied back while it is stopped.
 *
 * backup  asks the running node for a RocksDB checkpoint of its store
 *         (POST /v1/backup: only the node may open its store for writing,
 *         and a checkpoint needs the writer; RocksDB's read-only mode cannot
 *         make one), then opens the copy read-only and runs verify's checks
 *         on it (certificates, chains, signatures, entry times, state rebuilt
 *         from the oplog).  When the node is stopped (its API does not
 *         answer), the CLI opens the store itself and checkpoints it.
 * restore copies a backup next to the node's data directory, opens the copy
 *         for writing (migrating an older store format forward) and verifies
 *         it, and only then swaps it in: a failed restore leaves the data
 *         directory as it was.  A non-empty data directory is replaced only
 *         with --force, and is kept beside it, renamed, not deleted.
 *
 * A backup is the store only: keys, certificates, node.conf and the API
 * token are not in it (docs/operations.md says why and how to keep them).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../node/config.h"
#include "../storage/store.h"
#include "cli.h"
#include "client.h"

/* Copy buffer for restore: large enough to stream table files quickly. */
#define BACKUP_COPY_BYTES (256u * 1024)
/* A checkpoint holds a few dozen files; far more means it is not one. */
#define BACKUP_FILES_MAX 100000

static const char BACKUP_USAGE[] =
    "usage: trialsync backup --node NODEDIR --out PATH\n"
    "\n"
    "Writes a consistent copy of the node's store into PATH (a new directory;\n"
    "its parent must exist) and verifies the copy as 'trialsync verify' does.\n"
    "  - node running: the node writes the copy itself (POST /v1/backup), so PATH\n"
    "    must be writable by the node's user (e.g. under /var/lib/trialsync);\n"
    "    writes go on meanwhile, and the copy holds every write committed before.\n"
    "    On the node's file system the table files are hard links: the copy costs\n"
    "    little space there; copy it elsewhere (tar, rsync) to be a real backup.\n"
    "  - node stopped: this command makes the copy itself.\n"
    "The copy is the data only: keys, certificates, node.conf and api.token are\n"
    "NOT in it; keep the node directory's credentials separately (see\n"
    "docs/operations.md).\n"
    "\n"
    "Exit status: 0 written and verified, 1 failed (the message says which step).\n";

static const char RESTORE_USAGE[] =
    "usage: trialsync restore --node NODEDIR --from PATH [--force]\n"
    "\n"
    "Replaces a STOPPED node's store with the backup in PATH.  The backup is\n"
    "copied next to the data directory, migrated to this release's store format\n"
    "when older, and verified (as 'trialsync verify') before anything is replaced.\n"
    "A data directory holding anything is replaced only with --force, and is kept\n"
    "renamed to DATA.replaced-<time> (delete it once the node is back).\n"
    "\n"
    "After a restore, start the node: it gets its own later entries back from its\n"
    "hubs before it writes new ones (docs/operations.md, \"Restore\").\n";

/* Makes path absolute against the working directory. */
static int absolute_path(const char *path, char *out, size_t cap)
{
    if (path[0] == '/') {
        if ((size_t)snprintf(out, cap, "%s", path) >= cap)
            return -1;
        return 0;
    }
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)) == NULL)
        return -1;
    if ((size_t)snprintf(out, cap, "%s/%s", cwd, path) >= cap)
        return -1;
    return 0;
}

/* The size of the regular files directly in dir (a checkpoint is flat). */
static uint64_t dir_bytes(const char *dir, size_t *files)
{
    uint64_t total = 0;
    *files = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char p[PATH_MAX];
        struct stat st;
        if ((size_t)snprintf(p, sizeof(p), "%s/%s", dir, de->d_name) >= sizeof(p))
            continue;
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
            total += (uint64_t)st.st_size;
            (*files)++;
        }
    }
    closedir(d);
    return total;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The node's answer to POST /v1/backup: 0, or 1 after printing why. */
static int backup_online(const struct config *cfg, const char *out, struct client_response *res)
{
    json_t *body = json_pack("{s:s}", "path", out);
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (text == NULL)
        return cli_fail("out of memory");
    struct ts_error err = {0};
    int rc = client_request(cfg, "POST", "/v1/backup", text, res, &err);
    free(text);
    if (rc != 0)
        return -1;  /* not reachable: the caller tries offline */
    if (res->status != 200) {
        json_error_t jerr;
        json_t *j = json_loads(res->body, 0, &jerr);
        const char *msg = json_string_value(json_object_get(j, "error"));
        rc = cli_fail("node %s refused the backup (HTTP %d): %s", cfg->id, res->status,
                      msg != NULL ? msg : res->body);
        json_decref(j);
        return rc;
    }
    return 0;
}

/* The node is not answering: checkpoint the store directly (it must be stopped). */
static int backup_offline(const struct config *cfg, const char *out)
{
    struct store *s = NULL;
    struct ts_error err = {0};
    if (store_open(cfg->data_dir, &s, &err) != 0)
        return cli_fail("node %s's API does not answer and its store cannot be opened: %s",
                        cfg->id, err.msg);
    int rc = store_checkpoint(s, out, &err);
    store_close(s);
    if (rc != 0)
        return cli_fail("%s", err.msg);
    return 0;
}

static void backup_usage(FILE *out)
{
    fputs(BACKUP_USAGE, out);
}

static void restore_usage(FILE *out)
{
    fputs(RESTORE_USAGE, out);
}

int cmd_backup(int argc, char **argv)
{
    static const struct option opts[] = {
        {"node", required_argument, NULL, 'n'},
        {"out", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *node_dir = NULL, *out_arg = NULL;
    int c;
    optind = 1;
    while ((c = cli_getopt(argc, argv, opts, "backup")) != -1) {
        switch (c) {
        case 'n': node_dir = optarg; break;
        case 'o': out_arg = optarg; break;
        case 'h': fputs(BACKUP_USAGE, stdout); return 0;
        default: fputs(BACKUP_USAGE, stderr); return 2;
        }
    }
    if (node_dir == NULL)
        return cli_usage_error("backup", backup_usage, "--node NODEDIR is required");
    if (out_arg == NULL)
        return cli_usage_error("backup", backup_usage, "--out PATH is required");
    if (optind != argc)
        return cli_usage_error("backup", backup_usage, "unexpected argument '%s'", argv[optind]);
    static struct config cfg;
    struct ts_error err = {0};
    if (config_load_dir(node_dir, &cfg, &err) != 0)
        return cli_fail("%s", err.msg);
    char out[PATH_MAX];
    if (absolute_path(out_arg, out, sizeof(out)) != 0)
        return cli_fail("--out %s: path too long", out_arg);
    struct stat st;
    if (lstat(out, &st) == 0)
        return cli_fail("--out %s already exists: a backup goes to a new directory", out);

    uint64_t t0 = now_ms();
    struct client_response res = {0};
    int rc = backup_online(&cfg, out, &res);
    client_response_release(&res);
    bool online = rc == 0;
    if (rc < 0)
        rc = backup_offline(&cfg, out);
    if (rc != 0)
        return rc;
    uint64_t t1 = now_ms();

    struct cli_verify_summary sum;
    rc = cli_verify_store(&cfg, out, true, NULL, &sum, &err);
    if (rc != 0)
        return cli_fail("backup in %s does NOT verify, do not rely on it: %s", out, err.msg);
    uint64_t t2 = now_ms();
    size_t files = 0;
    uint64_t bytes = dir_bytes(out, &files);
    cli_verify_print(&cfg, "backup of node", &sum);
    printf("backup of node %s written to %s (%s): %llu entries, %zu files, %" PRIu64
           " bytes; checkpoint %" PRIu64 " ms, verify %" PRIu64 " ms\n",
           cfg.id, out, online ? "by the running node" : "node stopped", sum.entries, files,
           bytes, t1 - t0, t2 - t1);
    return 0;
}

/* Copies the regular file src to dst (new, mode 0600) and syncs it. */
static int copy_file(const char *src, const char *dst)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -errno;
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        int e = errno;
        close(in);
        return -e;
    }
    static char buf[BACKUP_COPY_BYTES];
    int rc = 0;
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rc = -errno;
                break;
            }
            off += w;
        }
        if (rc != 0)
            break;
    }
    if (rc == 0 && fsync(out) != 0)
        rc = -errno;
    close(out);
    close(in);
    return rc;
}

/* Copies the flat directory src into the new directory dst. */
static int copy_dir(const char *src, const char *dst)
{
    if (mkdir(dst, 0700) != 0)
        return cli_fail("cannot create %s: %s", dst, strerror(errno));
    DIR *d = opendir(src);
    if (d == NULL)
        return cli_fail("cannot read %s: %s", src, strerror(errno));
    struct dirent *de;
    size_t files = 0;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char from[PATH_MAX], to[PATH_MAX];
        if ((size_t)snprintf(from, sizeof(from), "%s/%s", src, de->d_name) >= sizeof(from) ||
            (size_t)snprintf(to, sizeof(to), "%s/%s", dst, de->d_name) >= sizeof(to)) {
            rc = cli_fail("%s/%s: path too long", src, de->d_name);
            break;
        }
        struct stat st;
        if (lstat(from, &st) != 0 || !S_ISREG(st.st_mode)) {
            rc = cli_fail("%s is not a backup: %s is not a regular file", src, from);
            break;
        }
        if (++files > BACKUP_FILES_MAX) {
            rc = cli_fail("%s is not a backup: more than %d files", src, BACKUP_FILES_MAX);
            break;
        }
        int e = copy_file(from, to);
        if (e != 0)
            rc = cli_fail("cannot copy %s to %s: %s", from, to, strerror(-e));
    }
    closedir(d);
    if (rc == 0) {
        int fd = open(dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            fsync(fd);
            close(fd);
        }
    }
    return rc;
}

/* Removes the flat directory dir (a failed restore's copy). */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            char p[PATH_MAX];
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            if ((size_t)snprintf(p, sizeof(p), "%s/%s", dir, de->d_name) < sizeof(p))
                unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* True when dir exists and holds anything. */
static bool dir_nonempty(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return false;
    struct dirent *de;
    bool any = false;
    while (!any && (de = readdir(d)) != NULL)
        any = strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return any;
}

int cmd_restore(int argc, char **argv)
{
    static const struct option opts[] = {
        {"node", required_argument, NULL, 'n'},
        {"from", required_argument, NULL, 'f'},
        {"force", no_argument, NULL, 'F'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *node_dir = NULL, *from = NULL;
    bool force = false;
    int c;
    optind = 1;
    while ((c = cli_getopt(argc, argv, opts, "restore")) != -1) {
        switch (c) {
        case 'n': node_dir = optarg; break;
        case 'f': from = optarg; break;
        case 'F': force = true; break;
        case 'h': fputs(RESTORE_USAGE, stdout); return 0;
        default: fputs(RESTORE_USAGE, stderr); return 2;
        }
    }
    if (node_dir == NULL)
        return cli_usage_error("restore", restore_usage, "--node NODEDIR is required");
    if (from == NULL)
        return cli_usage_error("restore", restore_usage, "--from PATH is required");
    if (optind != argc)
        return cli_usage_error("restore", restore_usage, "unexpected argument '%s'",
                               argv[optind]);
    static struct config cfg;
    struct ts_error err = {0};
    if (config_load_dir(node_dir, &cfg, &err) != 0)
        return cli_fail("%s", err.msg);
    struct stat st;
    if (stat(from, &st) != 0 || !S_ISDIR(st.st_mode))
        return cli_fail("--from %s: not a directory", from);

    /* The node must be stopped: its store's lock says whether it runs. */
    bool occupied = dir_nonempty(cfg.data_dir);
    if (occupied) {
        struct store *s = NULL;
        int rc = store_open(cfg.data_dir, &s, &err);
        store_close(s);
        if (rc != 0 && strstr(err.msg, "in use") != NULL)
            return cli_fail("node %s is running (its store %s is locked): stop it first",
                            cfg.id, cfg.data_dir);
        if (!force)
            return cli_fail("data directory %s is not empty: pass --force to replace it (it "
                            "is kept as %s.replaced-<time>)",
                            cfg.data_dir, cfg.data_dir);
    }

    char tmp[PATH_MAX], kept[PATH_MAX];
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.restoring-%ld", cfg.data_dir, (long)getpid()) >=
            sizeof(tmp) ||
        (size_t)snprintf(kept, sizeof(kept), "%s.replaced-%s", cfg.data_dir, stamp) >=
            sizeof(kept))
        return cli_fail("data directory %s: path too long", cfg.data_dir);

    uint64_t t0 = now_ms();
    int rc = copy_dir(from, tmp);
    if (rc != 0) {
        remove_dir(tmp);
        return rc;
    }
    struct cli_verify_summary sum;
    rc = cli_verify_store(&cfg, tmp, false, NULL, &sum, &err);
    if (rc != 0) {
        remove_dir(tmp);
        return cli_fail("backup %s does NOT verify for node %s, nothing was changed: %s", from,
                        cfg.id, err.msg);
    }
    cli_verify_print(&cfg, "backup for node", &sum);
    if (occupied && rename(cfg.data_dir, kept) != 0) {
        remove_dir(tmp);
        return cli_fail("cannot move %s aside to %s: %s", cfg.data_dir, kept, strerror(errno));
    }
    if (!occupied)
        rmdir(cfg.data_dir);  /* an empty directory may stand in the way */
    if (rename(tmp, cfg.data_dir) != 0) {
        rc = cli_fail("cannot move the restored store %s to %s: %s (the previous data is in "
                      "%s)",
                      tmp, cfg.data_dir, strerror(errno), occupied ? kept : "nowhere: empty");
        return rc;
    }
    printf("node %s restored from %s: %llu entries in %s (%" PRIu64 " ms)%s%s\n", cfg.id, from,
           sum.entries, cfg.data_dir, now_ms() - t0, occupied ? "; previous data kept in " : "",
           occupied ? kept : "");
    return 0;
}
