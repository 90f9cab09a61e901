/*
 * test_api.c: the local API's request path (node/api.c) on a real hub and
 * site, in process, without a socket: the seam the HTTP fuzzers use
 * (tests/fuzz/fuzz_api.c) feeds a connection the bytes a client sends and
 * collects what the API writes back.  Each test here is a bug the fuzzers
 * found, kept as a plain request.
 */
#define _GNU_SOURCE  /* memmem */
#include <stdio.h>
#include <string.h>

#include "../fuzz/fuzz_api.h"
#include "unit.h"

#define AUTH "Authorization: Bearer " FUZZ_API_TOKEN "\r\n"
#define HEALTHZ "GET /healthz HTTP/1.1\r\n\r\n"

static void exchange(enum fuzz_node node, const char *text, struct fuzz_exchange *x)
{
    fuzz_api_exchange(node, (const uint8_t *)text, strlen(text), 0, x);
}

/* A POST of body to path, then GET /healthz, on one keep-alive connection. */
static void post_then_healthz(enum fuzz_node node, const char *path, const char *body,
                              struct fuzz_exchange *x)
{
    char req[8192];
    int n = snprintf(req, sizeof(req), "POST %s HTTP/1.1\r\n" AUTH "Content-Length: %zu\r\n\r\n%s"
                     HEALTHZ, path, strlen(body), body);
    CU_ASSERT_FATAL(n > 0 && (size_t)n < sizeof(req));
    exchange(node, req, x);
}

/*
 * A write refused for its body's form (not JSON, not an object, a value
 * not a string, too many fields) is answered 400, and the connection reads
 * on: the next request on it is answered.  It used to stay "busy" forever,
 * so a keep-alive client's next request hung (found by fuzz_write_body).
 */
static void test_api_refused_write_body_keeps_connection(void)
{
    char many[4096] = "{\"fields\":{";
    for (int i = 0; i < 65; i++) {
        char f[32];
        snprintf(f, sizeof(f), "%s\"f%d\":\"v\"", i > 0 ? "," : "", i);
        strncat(many, f, sizeof(many) - strlen(many) - 1);
    }
    strncat(many, "}}", sizeof(many) - strlen(many) - 1);
    const char *bodies[] = {
        "{\"fields\":",                       /* not JSON */
        "[1,2]",                              /* not an object */
        "{\"fields\":[]}",                    /* fields not an object */
        "{\"fields\":{\"sex\":\"F\"},\"user\":7}",
        "{\"fields\":{\"sex\":1}}",           /* a value not a string */
        many,                                 /* 65 fields */
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        struct fuzz_exchange x;
        post_then_healthz(FUZZ_NODE_SITE, "/v1/records/subject/101-0003", bodies[i], &x);
        if (x.stuck || x.count != 2)
            printf("\n  body %zu: %zu responses%s ", i, x.count, x.stuck ? ", stuck" : "");
        CU_ASSERT(!x.stuck);
        CU_ASSERT_EQUAL_FATAL(x.count, 2);
        CU_ASSERT_EQUAL(x.res[0].status, 400);
        CU_ASSERT_EQUAL(x.res[1].status, 200);
    }
    /* The same for the revocation list and membership routes (hub). */
    struct fuzz_exchange x;
    post_then_healthz(FUZZ_NODE_HUB, "/v1/crl", "nope", &x);
    CU_ASSERT(!x.stuck);
    CU_ASSERT_EQUAL_FATAL(x.count, 2);
    CU_ASSERT_EQUAL(x.res[0].status, 400);
    post_then_healthz(FUZZ_NODE_HUB, "/v1/members/102", "{}", &x);
    CU_ASSERT(!x.stuck);
    CU_ASSERT_EQUAL_FATAL(x.count, 2);
    CU_ASSERT_EQUAL(x.res[0].status, 400);
}

/* A valid write is answered after its commit, and the connection reads on. */
static void test_api_write_then_read(void)
{
    struct fuzz_exchange x;
    const char *body = "{\"fields\":{\"site\":\"101\",\"sex\":\"F\"},\"user\":\"coordinator\"}";
    char req[2048];
    snprintf(req, sizeof(req),
             "POST /v1/records/subject/101-0009 HTTP/1.1\r\n" AUTH "Content-Length: %zu\r\n\r\n%s"
             "GET /v1/records/subject/101-0009 HTTP/1.1\r\n" AUTH "\r\n",
             strlen(body), body);
    exchange(FUZZ_NODE_SITE, req, &x);
    CU_ASSERT(!x.stuck);
    CU_ASSERT_EQUAL_FATAL(x.count, 2);
    CU_ASSERT_EQUAL(x.res[0].status, 200);
    CU_ASSERT_EQUAL(x.res[1].status, 200);
    CU_ASSERT(memmem(x.res[1].body, x.res[1].body_len, "\"sex\":{\"conflict\":false,\"value\":\"F\"}",
                     36) != NULL);
}

/*
 * A backup into a directory whose parent does not exist is the client's
 * mistake: 400 naming the parent, not 500 with RocksDB's message and the
 * data directory's path (found by fuzz_http).  The seam keeps the path below
 * its scratch directory.
 */
static void test_api_backup_parent_missing(void)
{
    struct fuzz_exchange x;
    post_then_healthz(FUZZ_NODE_HUB, "/v1/backup", "{\"path\":\"/no/such/dir/b1\"}", &x);
    CU_ASSERT_EQUAL_FATAL(x.count, 2);
    CU_ASSERT_EQUAL(x.res[0].status, 400);
    CU_ASSERT(memmem(x.res[0].body, x.res[0].body_len, "does not exist", 14) != NULL);
    CU_ASSERT(memmem(x.res[0].body, x.res[0].body_len, "/data", 5) == NULL);
}

/*
 * A path that is not UTF-8 (a record id, a site id) is refused or not found
 * with an answer that says so, its bytes outside ASCII shown as '?'.  It
 * used to be answered 500 "out of memory": the message quoted the path,
 * which JSON cannot carry, so building the answer failed (found by
 * fuzz_write_body).
 */
static void test_api_path_not_utf8(void)
{
    static const struct {
        enum fuzz_node node;
        const char *path;
        int post_status, get_status;  /* 0: no GET route */
        const char *quoted;
    } cases[] = {
        {FUZZ_NODE_HUB, "/v1/members/1\x8a" "2", 400, 0, "'1?2'"},
        {FUZZ_NODE_SITE, "/v1/records/subject/101-\xff", 400, 404, "'101-?'"},
        {FUZZ_NODE_HUB, "/v1/records/subject/101-\xc3", 400, 404, "'101-?'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fuzz_exchange x;
        char req[1024];
        const char *body = "{\"fields\":{\"status\":\"active\"},\"reason\":\"r\",\"user\":\"u\"}";
        snprintf(req, sizeof(req),
                 "POST %s HTTP/1.1\r\n" AUTH "Content-Length: %zu\r\n\r\n%s"
                 "GET %s HTTP/1.1\r\n" AUTH "\r\n", cases[i].path, strlen(body), body,
                 cases[i].path);
        exchange(cases[i].node, req, &x);
        CU_ASSERT(!x.stuck);
        CU_ASSERT_EQUAL_FATAL(x.count, 2);
        for (size_t r = 0; r < 2; r++) {
            int want = r == 0 ? cases[i].post_status : cases[i].get_status;
            if (want == 0)
                continue;
            if (x.res[r].status != want)
                printf("\n  case %zu response %zu: %d %.*s ", i, r, x.res[r].status,
                       (int)x.res[r].body_len, x.res[r].body);
            CU_ASSERT_EQUAL(x.res[r].status, want);
            CU_ASSERT(x.res[r].json_parses);
            CU_ASSERT(memmem(x.res[r].body, x.res[r].body_len, cases[i].quoted,
                             strlen(cases[i].quoted)) != NULL);
        }
    }
}

int main(void)
{
    static const struct unit_test tests[] = {
        {"test_api_refused_write_body_keeps_connection",
         test_api_refused_write_body_keeps_connection},
        {"test_api_write_then_read", test_api_write_then_read},
        {"test_api_backup_parent_missing", test_api_backup_parent_missing},
        {"test_api_path_not_utf8", test_api_path_not_utf8},
        {NULL, NULL},
    };
    unit_seed();
    fuzz_api_setup();
    return unit_run("api", tests);
}
