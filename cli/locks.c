/*
 * locks.c: the verbs of record locks (node/lock.h): a data manager's lock
 * and unlock at a hub, and a site user's re-applying of an edit a lock
 * quarantined, once the record is unlocked.
 *
 * Every verb talks to a running node's API as the signed-in person; the node
 * decides (role, lock epochs) and says why when it refuses.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../node/config.h"
#include "../proto/limits.h"
#include "cli.h"
#include "client.h"

static void lock_usage(FILE *out)
{
    fprintf(out,
            "usage: trialsync lock --node HUBDIR (--subject ID | TYPE ID) --reason TEXT\n"
            "       trialsync unlock --node HUBDIR (--subject ID | TYPE ID) --reason TEXT\n\n"
            "A data manager's freeze (role dm, signed in with TRIALSYNC_TOKEN_FILE, at a\n"
            "hub): --subject locks the subject and every visit and AE under it; TYPE ID\n"
            "(subject, visit or ae) locks one record.  Each lock or unlock is a new lock\n"
            "epoch of the subject.  A write made where the lock is known is refused; an\n"
            "edit made offline without having seen it is kept in the log but not shown:\n"
            "'trialsync get' lists it under \"quarantined\" until it is re-applied with\n"
            "'trialsync reapply' after the unlock.  'unlock --subject' unlocks everything\n"
            "of the subject.\n");
}

int cmd_lock(const char *verb, int argc, char **argv)
{
    static const struct option opts[] = {
        {"node", required_argument, NULL, 'N'}, {"subject", required_argument, NULL, 's'},
        {"reason", required_argument, NULL, 'r'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *node_dir = NULL, *subject = NULL, *reason = NULL;
    bool lock = strcmp(verb, "lock") == 0;
    int c;
    optind = 1;
    while ((c = cli_getopt(argc, argv, opts, verb)) != -1) {
        switch (c) {
        case 'N': node_dir = optarg; break;
        case 's': subject = optarg; break;
        case 'r': reason = optarg; break;
        case 'h': lock_usage(stdout); return 0;
        default: lock_usage(stderr); return 2;
        }
    }
    if (node_dir == NULL)
        return cli_usage_error(verb, lock_usage, "--node HUBDIR is required");
    if (reason == NULL || reason[0] == '\0')
        return cli_usage_error(verb, lock_usage, "--reason TEXT is required");
    if ((subject != NULL) == (argc - optind == 2) || (subject != NULL && argc != optind))
        return cli_usage_error(verb, lock_usage, "name either --subject ID or TYPE ID");
    if (!client_signed_in())
        return cli_fail("%s: set TRIALSYNC_TOKEN_FILE to your token file: a lock is a data "
                        "manager's, signed in", verb);
    json_t *req = subject != NULL
                      ? json_pack("{s:s,s:s}", "subject", subject, "reason", reason)
                      : json_pack("{s:s,s:s,s:s}", "type", argv[optind], "id", argv[optind + 1],
                                  "reason", reason);
    return cli_signed_in_post(node_dir, lock ? "/v1/lock" : "/v1/unlock", req, verb);
}

static void reapply_usage(FILE *out)
{
    fprintf(out,
            "usage: trialsync reapply --node NODEDIR TYPE ID ENTRY [--user NAME]\n\n"
            "Writes again, as a new write of yours, the field values of an edit a lock\n"
            "quarantined (ENTRY as 'trialsync get' lists it under \"quarantined\":\n"
            "ORIGIN/LANE/SEQ, e.g. 101/bulk/7).  The record must be unlocked; the reason\n"
            "names the edit re-applied, and the quarantined edit then shows resolved.\n"
            "--user names the person when the node's integration credential is used.\n");
}

/* The quarantined edit named ref in the record r (the API's `get`), or NULL. */
static json_t *find_quarantined(json_t *r, const char *ref)
{
    size_t i;
    json_t *q;
    json_array_foreach(json_object_get(r, "quarantined"), i, q) {
        const char *entry = json_string_value(json_object_get(q, "entry"));
        if (entry != NULL && strcmp(entry, ref) == 0)
            return q;
    }
    return NULL;
}

int cmd_reapply(int argc, char **argv)
{
    static const struct option opts[] = {
        {"node", required_argument, NULL, 'N'}, {"user", required_argument, NULL, 'u'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    static struct config cfg;
    const char *node_dir = NULL, *user = NULL;
    char path[3 * (TS_TYPE_BYTES_MAX + TS_ID_BYTES_MAX) + 32], type_esc[3 * TS_TYPE_BYTES_MAX + 1];
    char id_esc[3 * TS_ID_BYTES_MAX + 1], reason[TS_REASON_BYTES_MAX + 1];
    struct ts_error err = {0};
    struct client_response res;
    int c;
    optind = 1;
    while ((c = cli_getopt(argc, argv, opts, "reapply")) != -1) {
        switch (c) {
        case 'N': node_dir = optarg; break;
        case 'u': user = optarg; break;
        case 'h': reapply_usage(stdout); return 0;
        default: reapply_usage(stderr); return 2;
        }
    }
    if (node_dir == NULL)
        return cli_usage_error("reapply", reapply_usage, "--node NODEDIR is required");
    if (argc - optind != 3)
        return cli_usage_error("reapply", reapply_usage, "TYPE, ID and ENTRY are required");
    const char *type = argv[optind], *id = argv[optind + 1], *ref = argv[optind + 2];
    if (config_load_dir(node_dir, &cfg, &err) != 0)
        return cli_fail("%s", err.msg);
    if (client_escape(type, type_esc, sizeof(type_esc)) != 0 ||
        client_escape(id, id_esc, sizeof(id_esc)) != 0)
        return cli_fail("reapply: TYPE or ID too long");
    snprintf(path, sizeof(path), "/v1/records/%s/%s", type_esc, id_esc);
    if (client_request(&cfg, "GET", path, NULL, &res, &err) != 0)
        return cli_fail("%s", err.msg);
    json_t *r = res.status == 200 ? json_loads(res.body, 0, NULL) : NULL;
    if (r == NULL) {
        cli_fail("reapply: cannot read %s %s (HTTP %d): %s", type, id, res.status, res.body);
        client_response_release(&res);
        return 1;
    }
    client_response_release(&res);
    json_t *q = find_quarantined(r, ref);
    if (q == NULL) {
        json_decref(r);
        return cli_fail("reapply: %s %s has no quarantined edit %s ('trialsync get' lists "
                        "them)", type, id, ref);
    }
    snprintf(reason, sizeof(reason), "re-applies edit %s quarantined by lock epoch %lld%s%s",
             ref, (long long)json_integer_value(json_object_get(q, "lock_epoch")),
             json_string_length(json_object_get(q, "reason")) > 0 ? ": " : "",
             json_string_value(json_object_get(q, "reason")));
    json_t *req = json_pack("{s:O,s:s}", "fields", json_object_get(q, "fields"), "reason",
                            reason);
    if (user != NULL)
        json_object_set_new(req, "user", json_string(user));
    json_decref(r);
    /* As the person signed in, or through the integration credential for --user. */
    return cli_signed_in_post(node_dir, path, req, "re-applied edit");
}

void cli_print_lock_lines(json_t *r)
{
    json_t *l = json_object_get(r, "locked");
    if (l != NULL)
        printf("\nLOCKED by %s since %s (lock epoch %lld): %s\n",
               json_string_value(json_object_get(l, "by")),
               json_string_value(json_object_get(l, "since")),
               (long long)json_integer_value(json_object_get(l, "epoch")),
               json_string_value(json_object_get(l, "reason")));
    size_t i;
    json_t *q;
    json_array_foreach(json_object_get(r, "quarantined"), i, q) {
        printf("%sQUARANTINED %s by %s at %s (lock epoch %lld)%s, query %s %s:",
               i == 0 ? "\n" : "", json_string_value(json_object_get(q, "entry")),
               json_string_value(json_object_get(q, "user")),
               json_string_value(json_object_get(q, "time")),
               (long long)json_integer_value(json_object_get(q, "lock_epoch")),
               json_is_true(json_object_get(q, "resolved")) ? ", resolved" : "",
               json_string_value(json_object_get(json_object_get(q, "query"), "id")),
               json_string_value(json_object_get(json_object_get(q, "query"), "state")));
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(q, "fields"), k, v)
            printf(" %s=%s", k, json_string_value(v));
        printf("\n");
    }
}
