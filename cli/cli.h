/*
 * cli.h: what the trialsync command's verbs share.
 */
#ifndef TS_CLI_H
#define TS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Prints "trialsync: <message>" on stderr; returns 1 (the exit status). */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

struct option;

/* What cli_getopt returns for a mistake it has already reported. */
#define CLI_OPT_ERROR '?'

/*
 * getopt_long over argv for the verb named verb ("site add"), options and
 * operands in any order, -h/--help as 'h'.  Returns the next option's val, -1
 * at the end (operands from optind on), or CLI_OPT_ERROR after printing on
 * stderr which option is unknown or which one needs a value; the caller then
 * prints its usage and exits 2.  Set optind before the first call.
 */
int cli_getopt(int argc, char **argv, const struct option *opts, const char *verb);

/*
 * A usage error of verb: prints "trialsync VERB: <message>" when fmt is not
 * NULL, then the verb's usage (when usage is not NULL), on stderr.  Returns 2,
 * the exit status of a usage error.
 */
int cli_usage_error(const char *verb, void (*usage)(FILE *out), const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes a file with the given mode, refusing to replace one (O_EXCL). */
int cli_write_file(const char *path, const char *content, int mode, bool exclusive);

/* Writes 2 * bytes random hex digits and a NUL into out (bytes <= 64). */
int cli_random_hex(char *out, size_t bytes);

/* Creates a random API token file (hex, mode 0600). */
int cli_write_token(const char *path);

struct config;
struct ts_error;
struct verify_local;   /* verify.c's own: callers outside it pass NULL */

enum cli_verify_stage {
    CLI_VERIFY_STAGE_SETUP,   /* reading the CA, the node's certificate, opening the store */
    CLI_VERIFY_STAGE_CHECK,   /* the store opened: a failure from here means it does not verify */
};

struct cli_verify_summary {
    enum cli_verify_stage stage;   /* how far it got */
    unsigned long long entries;
    unsigned long long fields;
    size_t origins;
};

/*
 * The checks of `trialsync verify` (certificates, chains, signatures, entry
 * times, state rebuilt) on the store in dir, as the node of cfg holds it:
 * opened read-only (a backup beside a running node) or for writing (a stopped
 * node's store, migrated to the current format on the way).  Returns 0 or a
 * negative code with the first failure in err; sum says how far it got.
 */
int cli_verify_store(const struct config *cfg, const char *dir, bool readonly,
                     struct verify_local *lo, struct cli_verify_summary *sum,
                     struct ts_error *err);

/* Prints the one-line success report: "<what> <node id> verifies: ...". */
void cli_verify_print(const struct config *cfg, const char *what,
                      const struct cli_verify_summary *sum);

struct client_response;

/*
 * A request to the trial's first hub (DIR/<its dir>), with the hub's
 * integration credential: the admin's verbs run where the trial directory is.
 */
int cli_hub_request(const char *dir, const char *method, const char *path, const char *body,
                    struct client_response *res, struct ts_error *err);

/*
 * An admin's change to a trial-wide record, written at the first hub:
 * POST path {"fields": fields, "reason": reason} on behalf of "admin".  what
 * names the change in errors.  Returns 0, or 1 after printing why.
 */
typedef struct json_t json_t;
int cli_admin_write(const char *dir, const char *path, json_t *fields, const char *reason,
                    const char *what);

int cmd_init(int argc, char **argv);
int cmd_user(int argc, char **argv);
int cmd_sign(int argc, char **argv);
int cmd_sdv(int argc, char **argv);
int cmd_lock(const char *verb, int argc, char **argv);   /* lock, unlock */
int cmd_reapply(int argc, char **argv);

/*
 * POSTs req (consumed) to path at the node in node_dir with the signed-in
 * person's token (the node's integration token when nobody is signed in);
 * prints the answer, or why it was refused naming what.  Returns the exit
 * status.
 */
int cli_signed_in_post(const char *node_dir, const char *path, json_t *req, const char *what);

/* `get` on a terminal: the record's lock and quarantined edits, if any. */
void cli_print_lock_lines(json_t *r);
int cmd_enrollment(int argc, char **argv);
int cmd_site(int argc, char **argv);
int cmd_hub(int argc, char **argv);
int cmd_crl(int argc, char **argv);
int cmd_record(const char *verb, int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_admin(int argc, char **argv);
int cmd_backup(int argc, char **argv);
int cmd_restore(int argc, char **argv);

/* The display width of UTF-8 text: its code points ("Charité" is 7). */
size_t cli_display_width(const char *s);
/* The bytes of s's first chars code points. */
size_t cli_prefix_bytes(const char *s, size_t chars);

/* Prints the enrollment part of a node's status (cli/enroll.c). */
typedef struct json_t json_t;
void cli_enrollment_print(const json_t *en);

#endif
