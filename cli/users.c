/*
 * users.c: `trialsync user add | list | disable | reset`, an admin's verbs
 * for the people who act through nodes (schema.h, users.h).
 *
 * An account is a `user` record written at the trial's first hub, on the
 * admin's word, and replicated to every node, so a site signs its own people
 * in while it is offline.  The token is made here, written once to a 0600
 * file for the admin to hand to the person, and only its salted scrypt hash
 * leaves this machine.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../node/config.h"
#include "../node/crypto.h"
#include "../node/schema.h"
#include "../proto/errors.h"
#include "cli.h"
#include "client.h"
#include "pages.h"

#define USER_TOKEN_PATH_MAX 4096

static void user_usage(FILE *out)
{
    fprintf(out,
            "usage: trialsync user add USER --role ROLE --name TEXT --dir DIR [--site SITE]\n"
            "                          [--out FILE]\n"
            "       trialsync user list --dir DIR [--json]\n"
            "       trialsync user disable USER --dir DIR --reason TEXT\n"
            "       trialsync user reset USER --dir DIR [--out FILE] [--reason TEXT]\n\n"
            "People act through nodes with their own token.  ROLE is one of\n"
            "  crc, investigator   site staff (need --site SITE; they sign in at that\n"
            "                      site's node only; only an investigator signs a visit)\n"
            "  monitor, safety     CRO: word, answer and close queries (at a hub)\n"
            "  dm                  CRO data manager: queries, AE coding, corrections\n"
            "  viewer              reads only (at a hub, or at --site SITE's node)\n"
            "  metrics             reads /metrics only (a Prometheus scraper)\n"
            "add: records the account at the trial's first hub (it replicates to every\n"
            "node) and writes the person's token to FILE (default DIR/users/USER.token,\n"
            "mode 0600) once; hand it over privately.  The person points the CLI at it\n"
            "with TRIALSYNC_TOKEN_FILE=FILE, or sends 'Authorization: Bearer <token>'.\n"
            "A role and a site never change: disable the account and add another.\n"
            "disable: the account signs in nowhere from then on.  reset: a new token\n"
            "(the old one stops working) and the account active again.\n");
}

/* DIR/users/USER.token, the directory made 0700 when missing. */
static int default_token_path(const char *dir, const char *user, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/users", dir);
    if (n < 0 || (size_t)n >= cap)
        return cli_fail("path too long");
    if (mkdir(out, 0700) != 0 && access(out, W_OK) != 0)
        return cli_fail("cannot create %s", out);
    n = snprintf(out, cap, "%s/users/%s.token", dir, user);
    if (n < 0 || (size_t)n >= cap)
        return cli_fail("path too long");
    return 0;
}

/*
 * A fresh token for user: "<user>:<48 hex digits>" into token, and the
 * salted hash of its secret part into hash.
 */
static int new_token(const char *user, char *token, size_t token_cap, char *hash,
                     size_t hash_cap)
{
    char secret[2 * CRYPTO_TOKEN_BYTES + 1];
    struct ts_error err = {0};
    if (cli_random_hex(secret, CRYPTO_TOKEN_BYTES) != 0)
        return cli_fail("no random bytes for a token");
    int n = snprintf(token, token_cap, "%s:%s", user, secret);
    if (n < 0 || (size_t)n >= token_cap)
        return cli_fail("user id too long");
    if (crypto_secret_hash(secret, hash, hash_cap, &err) != 0)
        return cli_fail("%s", err.msg);
    memset(secret, 0, sizeof(secret));
    return 0;
}

/* Writes the token file (never replacing one) and says where it is. */
static int save_token(const char *dir, const char *user, const char *out, const char *token)
{
    char path[USER_TOKEN_PATH_MAX];
    if (out != NULL)
        snprintf(path, sizeof(path), "%s", out);
    else if (default_token_path(dir, user, path, sizeof(path)) != 0)
        return 1;
    char line[300];
    snprintf(line, sizeof(line), "%s\n", token);
    int rc = cli_write_file(path, line, 0600, true);
    memset(line, 0, sizeof(line));
    if (rc != 0)
        return cli_fail("cannot write the token to %s: %s%s", path, strerror(-rc),
                        rc == -EEXIST ? " (it exists: remove it, or give --out FILE)" : "");
    printf("token for %s in %s (mode 0600): hand it over privately, then delete the file\n",
           user, path);
    return 0;
}

/* True when the trial's first hub holds an account named user. */
static int user_exists(const char *dir, const char *user, bool *exists)
{
    struct client_response res = {0};
    struct ts_error err = {0};
    char path[200];
    snprintf(path, sizeof(path), "/v1/records/" SCHEMA_USER_TYPE "/%s", user);
    if (cli_hub_request(dir, "GET", path, NULL, &res, &err) != 0)
        return cli_fail("%s\nstart the trial's first hub and run the command again", err.msg);
    *exists = res.status == 200;
    int status = res.status;
    client_response_release(&res);
    if (status != 200 && status != 404)
        return cli_fail("the hub answered HTTP %d", status);
    return 0;
}

static int user_add(const char *dir, const char *user, const char *role, const char *site,
                    const char *name, const char *out)
{
    enum schema_user_role r = schema_user_role_find(role);
    if (r == USER_ROLE_NONE)
        return cli_fail("--role: '%s' is not a role; roles: crc, investigator, monitor, dm, "
                        "safety, viewer, metrics", role);
    if (schema_user_role_at_site(r) && site == NULL)
        return cli_fail("a %s works at a site: give --site SITE", role);
    if (schema_user_role_at_hub(r) && site != NULL)
        return cli_fail("a %s works for the CRO at the hubs: leave out --site", role);
    if (!schema_id_ok(user) || strlen(user) > 64)
        return cli_fail("'%s' is not a user id: 1 to 64 of letters, digits, '.', '_', '-'",
                        user);
    bool exists = false;
    if (user_exists(dir, user, &exists) != 0)
        return 1;
    if (exists)
        return cli_fail("user %s exists; 'trialsync user reset %s' gives a new token", user,
                        user);

    char token[256], hash[CRYPTO_SECRET_TEXT_MAX];
    if (new_token(user, token, sizeof(token), hash, sizeof(hash)) != 0)
        return 1;
    json_t *fields = json_pack("{s:s,s:s,s:s,s:s}", "role", role, "name", name, "state",
                               "active", "secret", hash);
    if (fields != NULL && site != NULL)
        json_object_set_new(fields, "site", json_string(site));
    if (fields == NULL)
        return cli_fail("out of memory");
    char path[200];
    snprintf(path, sizeof(path), "/v1/users/%s", user);
    int rc = cli_admin_write(dir, path, fields, "user added", "user account");
    json_decref(fields);
    if (rc != 0)
        return rc;
    printf("user %s (%s%s%s) added; the account replicates to every node\n", user, role,
           site != NULL ? " at site " : "", site != NULL ? site : "");
    rc = save_token(dir, user, out, token);
    memset(token, 0, sizeof(token));
    return rc;
}

static int user_change(const char *dir, const char *user, json_t *fields, const char *reason,
                       const char *what)
{
    bool exists = false;
    if (user_exists(dir, user, &exists) != 0)
        return 1;
    if (!exists)
        return cli_fail("no user %s; 'trialsync user list --dir %s' shows the accounts", user,
                        dir);
    char path[200];
    snprintf(path, sizeof(path), "/v1/users/%s", user);
    return cli_admin_write(dir, path, fields, reason, what);
}

/* One field's displayed value from a GET /v1/records answer, or "". */
static const char *shown(json_t *rec, const char *field)
{
    json_t *v = json_object_get(json_object_get(json_object_get(rec, "fields"), field), "value");
    return json_is_string(v) ? json_string_value(v) : "";
}

static const char *shown_str(json_t *item, const char *key)
{
    const char *v = json_string_value(json_object_get(item, key));
    return v != NULL ? v : "";
}

/* pages_get_fn over the trial's first hub; ctx is the trial directory. */
static int hub_get_page(void *ctx, const char *path, struct client_response *res,
                        struct ts_error *err)
{
    return cli_hub_request(ctx, "GET", path, NULL, res, err);
}

static int user_list(const char *dir, bool as_json)
{
    struct client_response res = {0};
    struct ts_error err = {0};
    json_t *list = NULL;
    int rc = pages_get_all(hub_get_page, (void *)dir, "/v1/records?type=" SCHEMA_USER_TYPE,
                           "records", &list, &res, &err);
    if (rc < 0)
        return cli_fail("%s\nstart the trial's first hub and run the command again", err.msg);
    client_response_release(&res);
    json_t *records = json_object_get(list, "records");
    if (!json_is_array(records)) {
        json_decref(list);
        return cli_fail("the hub did not list its records");
    }
    json_t *out = json_array();
    size_t i;
    json_t *item;
    json_array_foreach(records, i, item) {
        const char *id = json_string_value(json_object_get(item, "id"));
        char path[200];
        snprintf(path, sizeof(path), "/v1/records/" SCHEMA_USER_TYPE "/%s", id != NULL ? id : "");
        struct client_response one = {0};
        if (id == NULL || cli_hub_request(dir, "GET", path, NULL, &one, &err) != 0 ||
            one.status != 200) {
            client_response_release(&one);
            continue;
        }
        json_t *rec = json_loads(one.body, 0, NULL);
        client_response_release(&one);
        json_array_append_new(out, json_pack("{s:s,s:s,s:s,s:s,s:s}", "user", id, "role",
                                             shown(rec, "role"), "site", shown(rec, "site"),
                                             "name", shown(rec, "name"), "state",
                                             shown(rec, "state")));
        json_decref(rec);
    }
    json_decref(list);
    if (as_json) {
        char *text = json_dumps(out, JSON_INDENT(2));
        printf("%s\n", text != NULL ? text : "[]");
        free(text);
    } else {
        printf("%-20s %-13s %-8s %-9s %s\n", "USER", "ROLE", "SITE", "STATE", "NAME");
        json_array_foreach(out, i, item) {
            printf("%-20s %-13s %-8s %-9s %s\n", shown_str(item, "user"), shown_str(item, "role"),
                   shown_str(item, "site")[0] ? shown_str(item, "site") : "(CRO)",
                   shown_str(item, "state"), shown_str(item, "name"));
        }
    }
    json_decref(out);
    return 0;
}

int cmd_user(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'}, {"role", required_argument, NULL, 'R'},
        {"site", required_argument, NULL, 's'}, {"name", required_argument, NULL, 'n'},
        {"out", required_argument, NULL, 'o'}, {"reason", required_argument, NULL, 'r'},
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = NULL, *role = NULL, *site = NULL, *name = NULL, *out = NULL;
    const char *reason = NULL;
    bool as_json = false;
    int c;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        user_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *action = argv[1];
    char verb[64];
    snprintf(verb, sizeof(verb), "user %.32s", action);
    if (strcmp(action, "add") != 0 && strcmp(action, "list") != 0 &&
        strcmp(action, "disable") != 0 && strcmp(action, "reset") != 0)
        return cli_usage_error("user", user_usage, "unknown action '%s'", action);
    optind = 2;
    while ((c = cli_getopt(argc, argv, opts, verb)) != -1) {
        switch (c) {
        case 'd': dir = optarg; break;
        case 'R': role = optarg; break;
        case 's': site = optarg; break;
        case 'n': name = optarg; break;
        case 'o': out = optarg; break;
        case 'r': reason = optarg; break;
        case 'j': as_json = true; break;
        case 'h': user_usage(stdout); return 0;
        default: user_usage(stderr); return 2;
        }
    }
    bool list = strcmp(action, "list") == 0;
    const char *user = optind < argc ? argv[optind] : NULL;
    if (dir == NULL)
        return cli_usage_error(verb, user_usage, "--dir DIR is required");
    if (!list && user == NULL)
        return cli_usage_error(verb, user_usage, "which user? (USER is required)");
    if (optind + (list ? 0 : 1) != argc)
        return cli_usage_error(verb, user_usage, "unexpected argument '%s'", argv[argc - 1]);
    if (list)
        return user_list(dir, as_json);
    if (strcmp(action, "add") == 0) {
        if (role == NULL)
            return cli_usage_error(verb, user_usage, "--role ROLE is required");
        if (name == NULL || name[0] == '\0')
            return cli_usage_error(verb, user_usage,
                                   "--name TEXT is required (the printed name, for signatures "
                                   "and the audit trail)");
        return user_add(dir, user, role, site, name, out);
    }
    if (strcmp(action, "disable") == 0) {
        if (reason == NULL || reason[0] == '\0')
            return cli_fail("user disable: --reason TEXT is required (it goes in the audit "
                            "trail)");
        json_t *fields = json_pack("{s:s}", "state", "disabled");
        int rc = user_change(dir, user, fields, reason, "account change");
        json_decref(fields);
        if (rc == 0)
            printf("user %s disabled: it signs in nowhere once the change reaches a node\n",
                   user);
        return rc;
    }
    char token[256], hash[CRYPTO_SECRET_TEXT_MAX];
    if (new_token(user, token, sizeof(token), hash, sizeof(hash)) != 0)
        return 1;
    json_t *fields = json_pack("{s:s,s:s}", "state", "active", "secret", hash);
    int rc = user_change(dir, user, fields, reason != NULL ? reason : "token reset",
                         "account change");
    json_decref(fields);
    if (rc == 0)
        rc = save_token(dir, user, out, token);
    memset(token, 0, sizeof(token));
    return rc;
}

/* ---- sign ------------------------------------------------------------------------ */

/*
 * POSTs req (consumed) to path at the node in node_dir with the signed-in
 * person's token; prints the answer, or why it was refused naming what.
 * Returns the exit status.
 */
int cli_signed_in_post(const char *node_dir, const char *path, json_t *req,
                       const char *what)
{
    static struct config cfg;
    struct ts_error err = {0};
    if (config_load_dir(node_dir, &cfg, &err) != 0) {
        json_decref(req);
        return cli_fail("%s", err.msg);
    }
    char *body = req != NULL ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (body == NULL)
        return cli_fail("the arguments must be UTF-8");
    struct client_response res;
    int rc = client_request(&cfg, "POST", path, body, &res, &err);
    memset(body, 0, strlen(body));   /* it may hold a re-entered secret */
    free(body);
    if (rc != 0)
        return cli_fail("%s", err.msg);
    int status = res.status;
    if (status == 200)
        printf("%s\n", res.body);
    else
        cli_fail("the node refused the %s (HTTP %d): %s", what, status, res.body);
    client_response_release(&res);
    return status == 200 ? 0 : 1;
}

static void sign_usage(FILE *out)
{
    fprintf(out,
            "usage: trialsync sign --node NODEDIR TYPE ID [--meaning MEANING]\n"
            "                      [--secret-file FILE]\n\n"
            "An investigator's electronic signature (21 CFR 11.50) of a visit (TYPE visit)\n"
            "or of a subject's whole casebook (TYPE subject: the subject, its visits and\n"
            "AEs).  Needs TRIALSYNC_TOKEN_FILE (the investigator signed in); the token is\n"
            "entered again for each signing: read from --secret-file FILE (mode 0600), or\n"
            "from the terminal.  MEANING: approval (default), review, responsibility,\n"
            "authorship.  The node records the printed name, the time (UTC), the meaning\n"
            "and a digest of exactly the versions signed; a later change to a signed value\n"
            "shows the signature as broken wherever the record is read.\n");
}

/* The re-entered token: FILE's first line, or a line typed with echo off. */
static int read_secret(const char *file, char *out, size_t cap)
{
    FILE *in = NULL;
    struct ts_error err = {0};
    if (file != NULL) {
        if (crypto_check_secret_file(file, &err) != 0)
            return cli_fail("%s", err.msg);
        in = fopen(file, "r");
        if (in == NULL)
            return cli_fail("cannot read %s", file);
    } else {
        struct crypto_pass pass;
        crypto_pass_init(&pass, NULL, true);
        int rc = crypto_pass_get(&pass, "your token (to sign)", false, &err);
        if (rc == 0)
            snprintf(out, cap, "%.*s", (int)pass.len, pass.text);
        crypto_pass_release(&pass);
        return rc == 0 ? 0 : cli_fail("%s", err.msg);
    }
    bool got = fgets(out, (int)cap, in) != NULL;
    fclose(in);
    if (!got)
        return cli_fail("%s is empty", file);
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

int cmd_sign(int argc, char **argv)
{
    static const struct option opts[] = {
        {"node", required_argument, NULL, 'N'}, {"meaning", required_argument, NULL, 'm'},
        {"secret-file", required_argument, NULL, 'S'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *node_dir = NULL, *meaning = "approval", *secret_file = NULL;
    int c;
    optind = 1;
    while ((c = cli_getopt(argc, argv, opts, "sign")) != -1) {
        switch (c) {
        case 'N': node_dir = optarg; break;
        case 'm': meaning = optarg; break;
        case 'S': secret_file = optarg; break;
        case 'h': sign_usage(stdout); return 0;
        default: sign_usage(stderr); return 2;
        }
    }
    if (node_dir == NULL)
        return cli_usage_error("sign", sign_usage, "--node NODEDIR is required");
    if (argc - optind != 2)
        return cli_usage_error("sign", sign_usage, "TYPE and ID are required");
    if (!client_signed_in())
        return cli_fail("sign: set TRIALSYNC_TOKEN_FILE to your token file: a signature is "
                        "made by the signer, signed in");
    char secret[512];
    if (read_secret(secret_file, secret, sizeof(secret)) != 0)
        return 1;
    json_t *req = json_pack("{s:s,s:s,s:s,s:s}", "type", argv[optind], "id", argv[optind + 1],
                            "meaning", meaning, "secret", secret);
    memset(secret, 0, sizeof(secret));
    return cli_signed_in_post(node_dir, "/v1/sign", req, "signature");
}

/* ---- sdv ------------------------------------------------------------------------- */

static void sdv_usage(FILE *out)
{
    fprintf(out,
            "usage: trialsync sdv --node HUBDIR TYPE ID [--fields NAME,NAME...]\n\n"
            "A monitor's source-data verification mark on a subject, visit or AE (TYPE):\n"
            "the named fields (default: every field) match the source, as exactly the\n"
            "versions the hub holds now.  Needs TRIALSYNC_TOKEN_FILE (the monitor signed\n"
            "in).  'trialsync get' shows each mark 'verified', or 'needs re-verification'\n"
            "once any node writes one of those fields again (an offline edit included).\n");
}

int cmd_sdv(int argc, char **argv)
{
    static const struct option opts[] = {
        {"node", required_argument, NULL, 'N'}, {"fields", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    const char *node_dir = NULL, *fields = NULL;
    int c;
    optind = 1;
    while ((c = cli_getopt(argc, argv, opts, "sdv")) != -1) {
        switch (c) {
        case 'N': node_dir = optarg; break;
        case 'f': fields = optarg; break;
        case 'h': sdv_usage(stdout); return 0;
        default: sdv_usage(stderr); return 2;
        }
    }
    if (node_dir == NULL)
        return cli_usage_error("sdv", sdv_usage, "--node HUBDIR is required");
    if (argc - optind != 2)
        return cli_usage_error("sdv", sdv_usage, "TYPE and ID are required");
    if (!client_signed_in())
        return cli_fail("sdv: set TRIALSYNC_TOKEN_FILE to your token file: a verification is "
                        "made by the monitor, signed in");
    json_t *list = json_array();
    for (const char *p = fields != NULL ? fields : ""; *p != '\0';) {
        size_t len = strcspn(p, ",");
        if (len > 0)
            json_array_append_new(list, json_stringn(p, len));
        p += len + (p[len] == ',' ? 1 : 0);
    }
    json_t *req = json_pack("{s:s,s:s,s:o}", "type", argv[optind], "id", argv[optind + 1],
                            "fields", list);
    return cli_signed_in_post(node_dir, "/v1/sdv", req, "verification");
}
