/*
 * enroll.c: `trialsync enrollment`: the trial's enrollment cap and each
 * site's slots (node/enroll.h), through a hub's local API, and the table
 * `status` and `enrollment show` print.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../node/config.h"
#include "../proto/errors.h"
#include "cli.h"
#include "client.h"

static void enrollment_usage(FILE *out)
{
    fprintf(out,
            "usage: trialsync enrollment cap --node HUBDIR --cap N [--user NAME]\n"
            "       trialsync enrollment grant --node HUBDIR --site SITE --slots N [--user NAME]\n"
            "       trialsync enrollment show --node NODEDIR [--json]\n\n"
            "Enrollment slots under a trial-wide cap, held without coordination: each\n"
            "site enrolls offline within its own slots; the enrollment beyond them is\n"
            "refused and the subject stays in screening.\n"
            "  cap    a data manager sets the trial's cap at a hub; that hub allocates\n"
            "         the slots from then on (the cap never drops below the slots given)\n"
            "  grant  sets a site's slots: more are granted while the cap allows; fewer\n"
            "         asks the site's node to give back unused slots, which it does when\n"
            "         it next hears from the hub (slots move between sites in two steps:\n"
            "         grant the one site fewer, then, once released, the other more)\n"
            "  show   the cap and, per site, subjects enrolled, slots held, granted and\n"
            "         released, as this node knows them\n"
            "Signed in (TRIALSYNC_TOKEN_FILE) as a data manager, or with the hub's\n"
            "integration credential and --user naming the data manager.\n");
}

void cli_enrollment_print(const json_t *en)
{
    if (!json_is_object(en))
        return;
    const json_t *cap = json_object_get(en, "cap");
    json_t *sites = json_object_get(en, "sites");
    if (json_is_integer(cap))
        printf("enrollment: %lld enrolled, cap %lld (allocated by %s)\n",
               (long long)json_integer_value(json_object_get(en, "enrolled")),
               (long long)json_integer_value(cap),
               json_string_value(json_object_get(en, "allocator")));
    else
        printf("enrollment: %lld enrolled, no cap set\n",
               (long long)json_integer_value(json_object_get(en, "enrolled")));
    if (json_array_size(sites) == 0)
        return;
    printf("%-12s %9s %7s %9s %9s %9s\n", "SITE", "ENROLLED", "SLOTS", "GRANTED", "RELEASED",
           "ASKED");
    size_t i;
    json_t *s;
    json_array_foreach(sites, i, s) {
        char slots[24];
        if (json_is_true(json_object_get(s, "under_quota")))
            snprintf(slots, sizeof(slots), "%lld",
                     (long long)json_integer_value(json_object_get(s, "slots")));
        else
            snprintf(slots, sizeof(slots), "-");
        printf("%-12s %9lld %7s %9lld %9lld %9lld\n", json_string_value(json_object_get(s, "site")),
               (long long)json_integer_value(json_object_get(s, "enrolled")), slots,
               (long long)json_integer_value(json_object_get(s, "granted")),
               (long long)json_integer_value(json_object_get(s, "released")),
               (long long)json_integer_value(json_object_get(s, "release_requested")));
    }
}

/* One request to the node of node_dir; prints the answer; 0 or 1. */
static int enrollment_request(const char *node_dir, const char *method, const char *path,
                              json_t *req, bool as_json)
{
    static struct config cfg;
    struct ts_error err = {0};
    if (config_load_dir(node_dir, &cfg, &err) != 0) {
        json_decref(req);
        return cli_fail("%s", err.msg);
    }
    char *body = req != NULL ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    struct client_response res;
    int rc = client_request(&cfg, method, path, body, &res, &err);
    free(body);
    if (rc != 0)
        return cli_fail("%s", err.msg);
    int status = res.status;
    if (status != 200) {
        cli_fail("the node refused (HTTP %d): %s", status, res.body);
    } else if (as_json || strcmp(method, "POST") == 0) {
        printf("%s\n", res.body);
    } else {
        json_error_t jerr;
        json_t *en = json_loads(res.body, 0, &jerr);
        cli_enrollment_print(en);
        json_decref(en);
    }
    client_response_release(&res);
    return status == 200 ? 0 : 1;
}

/* A count from 0 to SCHEMA_COUNT_MAX (node/schema.h), checked. */
static bool count_arg(const char *s, long long *out)
{
    char *end = NULL;
    if (s == NULL || s[0] < '0' || s[0] > '9')
        return false;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0' || v < 0 || v > 1000000000LL)
        return false;
    *out = v;
    return true;
}

int cmd_enrollment(int argc, char **argv)
{
    static const struct option opts[] = {
        {"node", required_argument, NULL, 'N'}, {"cap", required_argument, NULL, 'c'},
        {"site", required_argument, NULL, 's'}, {"slots", required_argument, NULL, 'n'},
        {"user", required_argument, NULL, 'u'}, {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    const char *node_dir = NULL, *cap = NULL, *site = NULL, *slots = NULL, *user = NULL;
    bool as_json = false;
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        enrollment_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *op = argv[1];
    int c;
    optind = 2;
    while ((c = cli_getopt(argc, argv, opts, "enrollment")) != -1) {
        switch (c) {
        case 'N': node_dir = optarg; break;
        case 'c': cap = optarg; break;
        case 's': site = optarg; break;
        case 'n': slots = optarg; break;
        case 'u': user = optarg; break;
        case 'j': as_json = true; break;
        case 'h': enrollment_usage(stdout); return 0;
        default: enrollment_usage(stderr); return 2;
        }
    }
    if (node_dir == NULL)
        return cli_usage_error("enrollment", enrollment_usage, "--node DIR is required");
    if (optind != argc)
        return cli_usage_error("enrollment", enrollment_usage, "unexpected '%s'", argv[optind]);
    if (strcmp(op, "show") == 0)
        return enrollment_request(node_dir, "GET", "/v1/enrollment", NULL, as_json);
    long long n;
    json_t *req;
    if (strcmp(op, "cap") == 0) {
        if (!count_arg(cap, &n))
            return cli_usage_error("enrollment", enrollment_usage,
                                   "--cap N is required: a whole number up to 1000000000");
        req = json_pack("{s:I}", "cap", (json_int_t)n);
    } else if (strcmp(op, "grant") == 0) {
        if (site == NULL || !count_arg(slots, &n))
            return cli_usage_error("enrollment", enrollment_usage,
                                   "--site SITE and --slots N are required");
        req = json_pack("{s:s,s:I}", "site", site, "slots", (json_int_t)n);
    } else {
        return cli_usage_error("enrollment", enrollment_usage, "unknown operation '%s'", op);
    }
    if (req == NULL)
        return cli_fail("the arguments must be UTF-8");
    if (!client_signed_in()) {
        if (user == NULL)
            return cli_usage_error("enrollment", enrollment_usage,
                                   "--user NAME names the data manager (or set "
                                   "TRIALSYNC_TOKEN_FILE to sign in)");
        json_object_set_new(req, "user", json_string(user));
    }
    return enrollment_request(node_dir, "POST",
                              strcmp(op, "cap") == 0 ? "/v1/enrollment/cap"
                                                     : "/v1/enrollment/grant",
                              req, false);
}
