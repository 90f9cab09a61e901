/*
 * api.h: the node's local HTTP/JSON API (loopback by default).
 *
 * Every request but GET /healthz carries "Authorization: Bearer <token>",
 * the token being the content of the node's token file (mode 0600).  Routes:
 *   POST /v1/records/TYPE/ID          write fields {"fields":{..},"reason":..,"user":..}
 *   GET  /v1/records/TYPE/ID          displayed values and conflicting values
 *   GET  /v1/records/TYPE/ID/history  every version of every field
 *   GET  /v1/records?type=TYPE        the records held
 *   GET  /v1/conflicts                every field with more than one live value
 *   GET  /v1/status                   node, counts, version vector, peers
 *   GET  /v1/digest                   state digest
 *   GET  /v1/saes                     serious adverse events and their 24-hour clock
 *   POST /v1/backup                   {"path": "/new/dir"}: a checkpoint of the store there
 *   GET  /healthz                     liveness for load balancers and systemd: 200
 *                                     when the storage state is ok, else 503 (node.h)
 * Requests are bounded (TS_HTTP_REQUEST_BYTES_MAX) and connections capped
 * (TS_API_CONNECTIONS_MAX).  A write is answered only after its group commit.
 */
#ifndef TS_API_H
#define TS_API_H

#include <jansson.h>

#include "../proto/errors.h"
#include "node.h"

struct api;

/*
 * Extension points for modules above the node (replication, metrics,
 * dashboard): status_extend adds to the status object; route may answer a
 * GET the API does not know (return 1 and fill the response, 0 to pass).
 */
struct api_response {
    int status;
    const char *content_type;
    char *body;     /* malloc'ed; the API frees it */
    size_t len;
};
typedef void (*api_status_fn)(void *ctx, json_t *status);
typedef int (*api_route_fn)(void *ctx, const char *path, const char *query,
                            struct api_response *res);

/* The SAE list (GET /v1/saes), a new JSON object the API frees. */
typedef json_t *(*api_saes_fn)(void *ctx);

struct api_hooks {
    api_status_fn status_extend;
    api_saes_fn saes;
    api_route_fn route;
    void *ctx;
};

/* Loads the token, binds [api] listen, starts serving on n's loop. */
int api_start(struct api **out, struct node *n, const struct api_hooks *hooks,
              struct ts_error *err);

/* Stops listening and closes every connection (asynchronously on the loop). */
void api_stop(struct api *a);

/* Formats ms since the epoch as ISO 8601 UTC with milliseconds. */
void api_format_time(uint64_t ms, char *out, size_t cap);

#endif
