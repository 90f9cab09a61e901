/*
 * api.h: the node's local HTTP/JSON API (loopback by default).
 *
 * Every request but GET /healthz carries "Authorization: Bearer <token>",
 * the token being the content of the node's token file (mode 0600).  Routes:
 *   POST /v1/records/TYPE/ID          write fields {"fields":{..},"reason":..,"user":..}
 *   GET  /v1/records/TYPE/ID          displayed values and conflicting values;
 *                                     query messages also as a "thread" of
 *                                     {text, author, node, time}; a value
 *                                     written with a status that lost to a
 *                                     final one is "stale" (merge_write_lost)
 *   GET  /v1/records/TYPE/ID/history  every version of every field (paged)
 *   GET  /v1/records?type=TYPE&site=S the records held (paged; site: a site's
 *                                     subjects, visits, AEs and queries)
 *   GET  /v1/conflicts?site=S         every field in conflict (merge_conflict;
 *                                     paged); a status also lists its
 *                                     "stale_fields"
 *   GET  /v1/status                   node, counts, version vector, peers
 *   GET  /v1/digest                   state digest
 *   GET  /v1/saes?site=S              serious adverse events and their 24-hour clock (paged)
 *   POST /v1/backup                   {"path": "/new/dir"}: a checkpoint of the store there
 *   GET  /healthz                     liveness for load balancers and systemd: 200
 *                                     when the storage state is ok, else 503 (node.h);
 *                                     "status":"revoked" (503) once a site knows it
 *                                     was revoked
 * Paged lists take ?limit=N (default API_PAGE_LIMIT_DEFAULT, cut to
 * API_PAGE_LIMIT_MAX) and ?after=CURSOR; an answer with more to come carries
 * "next": the cursor (opaque hex) to pass as after for the next page.  A
 * filtered page may hold fewer than limit items, even none, and still carry
 * "next": limit bounds the keys a page visits, not the items it keeps.
 * Requests are bounded (TS_HTTP_REQUEST_BYTES_MAX) and connections capped
 * (TS_API_CONNECTIONS_MAX in all, API_CONNECTIONS_PER_ADDR_MAX from one
 * address).  A write is answered only after its group commit.
 *
 * Abuse bounds: a request's credentials are checked as soon as its headers
 * are complete, so an unauthenticated request that carries a body is answered
 * 401 and closed before one byte of the body is read.  Headers, body and the
 * idle time between keep-alive requests each have a deadline.  A connection
 * over a cap evicts the oldest connection of that scope that is not inside an
 * authenticated request (one that has not finished its headers, or sits idle
 * between requests); when every one is inside such a request the newcomer is
 * answered 503 and closed, before anything is read from it.  So connections
 * that never authenticate cannot keep a token holder (the CLI, Prometheus, a
 * signed-in dashboard) out.
 */
#ifndef TS_API_H
#define TS_API_H

#include <jansson.h>

#include "../proto/errors.h"
#include "node.h"

/* From the first byte of a request (or from accept) to the end of its
 * headers.  A local client sends its headers in one write; 10 s covers a
 * host stalled by swapping or a sanitizer build, while a client dribbling a
 * byte a second (slowloris) loses its slot long before its headers end. */
#define API_HEADER_TIMEOUT_MS 10000u
/* From the end of the headers to the end of the body: the largest body
 * (TS_HTTP_REQUEST_BYTES_MAX, 256 KiB) takes milliseconds on loopback and
 * under 30 s at 9 KiB/s on a poor remote link. */
#define API_BODY_TIMEOUT_MS 30000u
/* Between keep-alive requests: longer than Prometheus' default 15 s scrape
 * interval, so a scraper keeps its connection, yet an idle connection does
 * not hold a slot for long (idle connections are evicted first anyway). */
#define API_IDLE_TIMEOUT_MS 30000u
/* How often deadlines are checked: the timeouts above are honoured to within
 * this, and one check walks at most TS_API_CONNECTIONS_MAX connections. */
#define API_TICK_MS 500u
/* Connections from one IP address: the CLI, dashboard tabs (browsers open 6
 * per host), a scraper and a data-entry integration or load tool with 64
 * keep-alive clients (bench/run.sh) fit together on loopback, yet one address
 * holds only a quarter of TS_API_CONNECTIONS_MAX. */
#define API_CONNECTIONS_PER_ADDR_MAX 128u
/* A connection not yet read from is not evicted for this long: a client
 * sends its request right after its connect, so a quarter second covers that
 * client being descheduled in between on a busy host, while one that sent
 * nothing for that long is no client waiting on an answer. */
#define API_EVICT_GRACE_MS 250u

/*
 * Paged lists (GET /v1/records, /v1/conflicts, /v1/records/TYPE/ID/history,
 * /v1/saes): a page is built on the loop thread, so its size bounds what
 * every other client (peers included) waits for.  Without ?limit= a page
 * visits API_PAGE_LIMIT_DEFAULT index keys: a dashboard table's worth.  A
 * larger limit is cut to API_PAGE_LIMIT_MAX: a page of 1000 records takes
 * milliseconds (docs/operations.md "Paged lists" has the measured figures),
 * and a conflict or a history version reads an entry or two more per key;
 * the CLI pages at that size.
 */
#define API_PAGE_LIMIT_DEFAULT 100u
#define API_PAGE_LIMIT_MAX 1000u
_Static_assert(API_PAGE_LIMIT_DEFAULT >= 1 && API_PAGE_LIMIT_DEFAULT <= API_PAGE_LIMIT_MAX,
               "the default page is a legal page");

_Static_assert(API_CONNECTIONS_PER_ADDR_MAX * 4 <= TS_API_CONNECTIONS_MAX,
               "one address holds a small share of the API's connections");
_Static_assert(API_TICK_MS * 4 <= API_HEADER_TIMEOUT_MS,
               "the tick must be fine enough for the shortest deadline");
_Static_assert(API_EVICT_GRACE_MS < API_HEADER_TIMEOUT_MS,
               "a silent connection becomes evictable well before its deadline");
_Static_assert(API_HEADER_TIMEOUT_MS <= API_BODY_TIMEOUT_MS,
               "a body may take longer than headers");

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

/*
 * The SAE list (GET /v1/saes), a new JSON object the API frees: the SAEs of
 * site ("" for all) among the limit from position from; *next is where the
 * next page starts, 0 when none remains.
 */
typedef json_t *(*api_saes_fn)(void *ctx, const char *site, size_t from, size_t limit,
                               size_t *next);

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

/*
 * An HLC as JSON carries it: a decimal string.  HLCs are ms << 16, above
 * 2^53, where JSON readers that hold numbers as doubles (jq, JavaScript)
 * would round them.
 */
#define API_HLC_TEXT_BYTES 21
void api_hlc_text(uint64_t hlc, char out[API_HLC_TEXT_BYTES]);

#endif
