/*
 * fuzz_write_body.c: libFuzzer harness of a write's JSON body: jansson's
 * parse, the API's reading of {"fields": {...}, "reason", "user"} (and of an
 * import's rows), validate_write's rules against the record as the store
 * holds it, and the commit, on a real hub or site (fuzz_api.c).
 *
 * Input: one byte (low bit: 0 hub, 1 site; the rest: read size, 0 for one
 * read), a line naming the route below /v1/ ("records/subject/101-0003",
 * "import", "members/102", "crl"), then the body.  The harness wraps the body
 * in a POST with the token and the right Content-Length, so every mutation
 * lands in the JSON, not in the HTTP framing (fuzz_http does that).
 *
 * Properties: those of every exchange (fuzz_api.h: no memory error, no 500,
 * well-formed responses, the connection freed); the request answered and the
 * connection reading on; exactly one response; and a
 * record write answered 200 reads back: GET shows each field written with
 * the value written (among the values, for an append-only field), as the
 * write superseded every value its writer saw.
 */
#define _GNU_SOURCE  /* memmem */
#include <jansson.h>
#include <string.h>

#include "../../node/merge.h"
#include "fuzz.h"
#include "fuzz_api.h"

/* Path line bytes at most: "records/" and the longest type and id. */
#define PATH_BYTES_MAX (8 + TS_TYPE_BYTES_MAX + 1 + TS_ID_BYTES_MAX + 16)

static bool shown(json_t *field, const char *value, bool append)
{
    json_t *v = json_object_get(field, "value");
    if (!append)
        return json_is_string(v) && strcmp(json_string_value(v), value) == 0;
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item) {
        if (json_is_string(item) && strcmp(json_string_value(item), value) == 0)
            return true;
    }
    return false;
}

/* After a record write answered 200: GET shows what was written. */
static void check_read_back(enum fuzz_node node, const char *path, const uint8_t *body,
                            size_t body_len)
{
    char type[TS_TYPE_BYTES_MAX + 1];
    const char *t = path + strlen("records/");
    size_t tl = strcspn(t, "/");
    FUZZ_CHECK(tl > 0 && tl <= TS_TYPE_BYTES_MAX);
    memcpy(type, t, tl);
    type[tl] = '\0';

    char req[512];
    int n = snprintf(req, sizeof(req), "GET /v1/%s HTTP/1.1\r\nAuthorization: Bearer "
                     FUZZ_API_TOKEN "\r\n\r\n", path);
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof(req));
    static struct fuzz_exchange x;
    fuzz_api_exchange(node, (const uint8_t *)req, (size_t)n, 0, &x);
    fuzz_api_check(&x);
    FUZZ_CHECK(x.count == 1);
    FUZZ_CHECK(x.res[0].status == 200);
    json_t *got = json_loadb(x.res[0].body, x.res[0].body_len, 0, NULL);
    json_t *sent = json_loadb((const char *)body, body_len, 0, NULL);
    FUZZ_CHECK(got != NULL);
    FUZZ_CHECK(sent != NULL);
    json_t *fields = json_object_get(got, "fields");
    const char *key;
    json_t *value;
    json_object_foreach(json_object_get(sent, "fields"), key, value) {
        bool append = merge_policy_of(type, key) == MERGE_POLICY_APPEND;
        bool ok = shown(json_object_get(fields, key), json_string_value(value), append);
        if (!ok)
            fprintf(stderr, "field '%s' written as '%s' reads back as %.*s\n", key,
                    json_string_value(value), (int)x.res[0].body_len, x.res[0].body);
        FUZZ_CHECK(ok);
    }
    json_decref(sent);
    json_decref(got);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum fuzz_node node;
    size_t chunk;
    fuzz_api_input_begin(data[0], &node, &chunk);
    const uint8_t *nl = memchr(data + 1, '\n', size - 1);
    if (nl == NULL || (size_t)(nl - (data + 1)) > PATH_BYTES_MAX)
        return 0;
    char path[PATH_BYTES_MAX + 1];
    size_t path_len = (size_t)(nl - (data + 1));
    memcpy(path, data + 1, path_len);
    path[path_len] = '\0';
    const uint8_t *body = nl + 1;
    size_t body_len = size - (size_t)(body - data);

    size_t cap = body_len + 512;
    char *req = malloc(cap);
    FUZZ_CHECK(req != NULL);
    int head = snprintf(req, cap,
                        "POST /v1/%s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                        FUZZ_API_TOKEN "\r\nContent-Type: application/json\r\n"
                        "Content-Length: %zu\r\n\r\n", path, body_len);
    FUZZ_CHECK(head > 0 && (size_t)head + body_len <= cap);
    memcpy(req + head, body, body_len);
    static struct fuzz_exchange x;
    fuzz_api_exchange(node, (const uint8_t *)req, (size_t)head + body_len, chunk, &x);
    fuzz_api_check(&x);
    free(req);

    /* A path with a NUL, a space or a line break breaks the request line
     * or is cut short, so more than one response can come; otherwise one. */
    bool plain = strlen(path) == path_len && strcspn(path, " \r\n\t") == path_len;
    if (plain)
        FUZZ_CHECK(x.count == 1);
    if (plain && x.count == 1 && x.res[0].status == 200 && strncmp(path, "records/", 8) == 0 &&
        strchr(path, '?') == NULL && strchr(path, '#') == NULL)
        check_read_back(node, path, body, body_len);
    return 0;
}
