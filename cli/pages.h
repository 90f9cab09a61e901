/*
 * pages.h: the CLI's reader of the API's paged lists (node/api.h: ?limit=,
 * ?after=, "next"): every page of a list, joined into one answer, so verbs
 * print whole lists however long they are.
 */
#ifndef TS_CLI_PAGES_H
#define TS_CLI_PAGES_H

#include <jansson.h>

#include "../proto/errors.h"
#include "client.h"

/* One GET of path; as client_request (0 with *res filled, or a negative code). */
typedef int (*pages_get_fn)(void *ctx, const char *path, struct client_response *res,
                            struct ts_error *err);

/*
 * GETs path (which may hold a query) page by page at the API's largest page
 * size, following "next" until an answer has none, and joins the pages'
 * `list_key` arrays into the first answer, whose "count" becomes the total
 * and which keeps no "next" or "limit".  Returns 0 with *out (a new
 * reference); a negative code with err filled when the node cannot be
 * reached or answers something that is not a page; 1 when a page is
 * answered with a status other than 200, that answer left in *failed for
 * the caller to report (client_response_release it).
 */
int pages_get_all(pages_get_fn get, void *ctx, const char *path, const char *list_key,
                  json_t **out, struct client_response *failed, struct ts_error *err);

#endif
