/*
 * test_api.c: the local API's request path (node/api.c) on a real hub and
 * site, in process, without a socket: the seam the HTTP fuzzers use
 * (tests/fuzz/fuzz_api.c) feeds a connection the bytes a client sends and
 * collects what the API writes back.  Each test here is a bug the fuzzers
 * found, kept as a plain request.
 */
#define _GNU_SOURCE  /* memmem */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "../../node/api.h"
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

/* One GET on node; its answer parsed (NULL when it is not JSON), *status set. */
static json_t *get_json(enum fuzz_node node, const char *path, int *status)
{
    char req[2048];
    struct fuzz_exchange x;
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\n" AUTH "\r\n", path);
    CU_ASSERT_FATAL(n > 0 && (size_t)n < sizeof(req));
    exchange(node, req, &x);
    CU_ASSERT_FATAL(x.count == 1);
    *status = x.res[0].status;
    return json_loadb(x.res[0].body, x.res[0].body_len, 0, NULL);
}

/* A write of body to path on the site, answered 200. */
static void site_write(const char *path, const char *body)
{
    struct fuzz_exchange x;
    post_then_healthz(FUZZ_NODE_SITE, path, body, &x);
    CU_ASSERT_EQUAL_FATAL(x.count, 2);
    if (x.res[0].status != 200)
        printf("\n  %s: %d %.*s ", path, x.res[0].status, (int)x.res[0].body_len, x.res[0].body);
    CU_ASSERT_EQUAL_FATAL(x.res[0].status, 200);
}

/*
 * Follows "next" from path (which holds a query) with ?limit=limit, joining
 * the pages' list_key arrays; *pages counts the answers.  Every page but the
 * last holds a cursor; none holds more than limit keys' items (per_key items
 * a key: a history entry gives a version per field it wrote).
 */
static json_t *all_pages(const char *path, const char *list_key, unsigned limit, size_t per_key,
                         size_t *pages)
{
    json_t *all = json_array();
    char after[2 * 256] = "";
    *pages = 0;
    for (;;) {
        char url[1024];
        int status;
        snprintf(url, sizeof(url), "%s&limit=%u%s%s", path, limit, after[0] ? "&after=" : "",
                 after);
        json_t *page = get_json(FUZZ_NODE_SITE, url, &status);
        CU_ASSERT_EQUAL_FATAL(status, 200);
        CU_ASSERT_PTR_NOT_NULL_FATAL(page);
        (*pages)++;
        CU_ASSERT_FATAL(*pages <= 1000);
        json_t *items = json_object_get(page, list_key);
        CU_ASSERT_FATAL(json_is_array(items));
        CU_ASSERT(json_array_size(items) <= limit * per_key);
        CU_ASSERT_EQUAL(json_integer_value(json_object_get(page, "limit")), limit);
        json_array_extend(all, items);
        const char *next = json_string_value(json_object_get(page, "next"));
        if (next == NULL) {
            json_decref(page);
            return all;
        }
        CU_ASSERT_NOT_EQUAL(strcmp(next, after), 0);
        snprintf(after, sizeof(after), "%s", next);
        json_decref(page);
    }
}

/*
 * Records come in pages of ?limit= (default API_PAGE_LIMIT_DEFAULT): walking
 * "next" gives every record once, in key order, as one large page does;
 * ?site= keeps a site's records.  The answer used to be the whole store,
 * built on the loop thread.
 */
static void test_api_records_paged(void)
{
    char path[128];
    for (int i = 1; i <= 7; i++) {
        snprintf(path, sizeof(path), "/v1/records/subject/101-02%02d", i);
        site_write(path, "{\"fields\":{\"site\":\"101\",\"sex\":\"U\"},\"user\":\"coordinator\"}");
    }
    int status;
    json_t *one = get_json(FUZZ_NODE_SITE, "/v1/records?type=subject&limit=100000", &status);
    CU_ASSERT_EQUAL_FATAL(status, 200);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(one, "limit")), API_PAGE_LIMIT_MAX);
    CU_ASSERT_PTR_NULL(json_object_get(one, "next"));
    json_t *whole = json_object_get(one, "records");
    CU_ASSERT_FATAL(json_array_size(whole) >= 7);
    json_t *dflt = get_json(FUZZ_NODE_SITE, "/v1/records?type=subject", &status);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(dflt, "limit")), API_PAGE_LIMIT_DEFAULT);
    json_decref(dflt);
    for (unsigned limit = 1; limit <= 4; limit++) {
        size_t pages;
        json_t *all = all_pages("/v1/records?type=subject", "records", limit, 1, &pages);
        CU_ASSERT(json_equal(all, whole));
        /* A full last page is followed by one empty page: at most one extra. */
        size_t n = json_array_size(whole);
        CU_ASSERT(pages >= (n + limit - 1) / limit && pages <= n / limit + 1);
        json_decref(all);
    }
    size_t pages;
    json_t *mine = all_pages("/v1/records?type=subject&site=101", "records", 2, 1, &pages);
    CU_ASSERT(json_equal(mine, whole));
    json_decref(mine);
    json_t *none = all_pages("/v1/records?type=subject&site=102", "records", 3, 1, &pages);
    CU_ASSERT_EQUAL(json_array_size(none), 0);
    json_decref(none);
    json_decref(one);
}

/* A record's history comes in pages too: one entry per page at limit=1. */
static void test_api_history_paged(void)
{
    const char *path = "/v1/records/subject/101-0300";
    site_write(path, "{\"fields\":{\"site\":\"101\",\"sex\":\"F\"},\"user\":\"coordinator\"}");
    site_write(path, "{\"fields\":{\"brthdtc\":\"1961\"},\"user\":\"coordinator\"}");
    site_write(path, "{\"fields\":{\"rficdtc\":\"2024-01-02\"},\"user\":\"coordinator\"}");
    size_t pages;
    json_t *all = all_pages("/v1/records/subject/101-0300/history?x=", "versions", 1, 2, &pages);
    /* Three entries: site and sex, brthdtc, rficdtc. */
    CU_ASSERT_EQUAL(json_array_size(all), 4);
    CU_ASSERT_EQUAL(pages, 3);
    const char *fields[] = {"sex", "site", "brthdtc", "rficdtc"};
    for (size_t i = 0; i < 4 && i < json_array_size(all); i++) {
        const char *f = json_string_value(json_object_get(json_array_get(all, i), "field"));
        if (i < 2) {
            CU_ASSERT(f != NULL && (strcmp(f, "sex") == 0 || strcmp(f, "site") == 0));
        } else {
            CU_ASSERT(f != NULL && strcmp(f, fields[i]) == 0);
        }
    }
    json_decref(all);
    int status;
    json_t *gone = get_json(FUZZ_NODE_SITE, "/v1/records/subject/101-0399/history?limit=1",
                            &status);
    CU_ASSERT_EQUAL(status, 404);
    json_decref(gone);
}

/* A limit or cursor that is not one is the client's mistake: 400 saying so. */
static void test_api_page_parameters_refused(void)
{
    const char *bad[] = {
        "/v1/records?limit=0", "/v1/records?limit=-1", "/v1/records?limit=x",
        "/v1/records?limit=", "/v1/conflicts?after=abc", "/v1/conflicts?after=zz",
        "/v1/conflicts?after=%41%41", "/v1/records?site=../x",
        "/v1/records/subject/101-0300/history?limit=1e3",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int status;
        json_t *j = get_json(FUZZ_NODE_SITE, bad[i], &status);
        if (status != 400)
            printf("\n  %s: %d ", bad[i], status);
        CU_ASSERT_EQUAL(status, 400);
        CU_ASSERT_PTR_NOT_NULL(json_object_get(j, "error"));
        json_decref(j);
    }
    /* The SAE list's cursor is a position: 8 bytes. */
    {
        int st;
        json_t *j = get_json(FUZZ_NODE_SITE, "/v1/saes?after=00", &st);
        CU_ASSERT_EQUAL(st, 400);
        json_decref(j);
    }
    /* Any cursor of the right form is safe: the walk resumes above it. */
    int status;
    json_t *j = get_json(FUZZ_NODE_SITE, "/v1/conflicts?after=ffffffff&limit=5", &status);
    CU_ASSERT_EQUAL(status, 200);
    CU_ASSERT_EQUAL(json_integer_value(json_object_get(j, "count")), 0);
    CU_ASSERT_PTR_NULL(json_object_get(j, "next"));
    json_decref(j);
}

int main(void)
{
    static const struct unit_test tests[] = {
        {"test_api_refused_write_body_keeps_connection",
         test_api_refused_write_body_keeps_connection},
        {"test_api_write_then_read", test_api_write_then_read},
        {"test_api_backup_parent_missing", test_api_backup_parent_missing},
        {"test_api_path_not_utf8", test_api_path_not_utf8},
        {"test_api_records_paged", test_api_records_paged},
        {"test_api_history_paged", test_api_history_paged},
        {"test_api_page_parameters_refused", test_api_page_parameters_refused},
        {NULL, NULL},
    };
    unit_seed();
    fuzz_api_setup();
    return unit_run("api", tests);
}
