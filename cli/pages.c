/*
 * pages.c: every page of a paged API list (see pages.h).  Each page is one
 * request; the joined answer is held in memory, as the single answer was
 * before lists were paged.
 */
#include "pages.h"

#include <stdio.h>
#include <string.h>

#include "../node/api.h"

/* A path, its query and a cursor: the request line's URL bound (api.c). */
#define PAGES_PATH_BYTES_MAX 2048

int pages_get_all(pages_get_fn get, void *ctx, const char *path, const char *list_key,
                  json_t **out, struct client_response *failed, struct ts_error *err)
{
    char url[PAGES_PATH_BYTES_MAX];
    char after[PAGES_PATH_BYTES_MAX / 2] = "";
    const char sep = strchr(path, '?') != NULL ? '&' : '?';
    json_t *joined = NULL;
    *out = NULL;
    memset(failed, 0, sizeof(*failed));
    for (;;) {
        int n = snprintf(url, sizeof(url), "%s%climit=%u%s%s", path, sep, API_PAGE_LIMIT_MAX,
                         after[0] != '\0' ? "&after=" : "", after);
        if (n < 0 || (size_t)n >= sizeof(url)) {
            json_decref(joined);
            return ts_error_set(err, TS_ERR_TOOBIG, "the request path is too long");
        }
        struct client_response res = {0};
        int rc = get(ctx, url, &res, err);
        if (rc != 0) {
            json_decref(joined);
            return rc;
        }
        if (res.status != 200) {
            json_decref(joined);
            *failed = res;
            return 1;
        }
        json_error_t jerr;
        json_t *page = json_loads(res.body, 0, &jerr);
        client_response_release(&res);
        json_t *items = json_object_get(page, list_key);
        json_t *next = json_object_get(page, "next");
        if (!json_is_array(items) || (next != NULL && !json_is_string(next))) {
            json_decref(page);
            json_decref(joined);
            return ts_error_set(err, TS_ERR_CORRUPT, "the node's answer is not a page of %s",
                                list_key);
        }
        const char *cursor = next != NULL ? json_string_value(next) : "";
        /* A node that answered the cursor it was given would never end. */
        if (cursor[0] != '\0' && (strcmp(cursor, after) == 0 || strlen(cursor) >= sizeof(after))) {
            json_decref(page);
            json_decref(joined);
            return ts_error_set(err, TS_ERR_CORRUPT, "the node's page cursor does not advance");
        }
        snprintf(after, sizeof(after), "%s", cursor);
        if (joined == NULL) {
            joined = page;
        } else {
            json_array_extend(json_object_get(joined, list_key), items);
            json_decref(page);
        }
        if (after[0] == '\0')
            break;
    }
    json_t *all = json_object_get(joined, list_key);
    json_object_del(joined, "next");
    json_object_del(joined, "limit");
    json_object_set_new(joined, "count", json_integer((json_int_t)json_array_size(all)));
    *out = joined;
    return 0;
}
