/*
 * dashboard.h: the web page CRO operators watch (GET /dashboard), and the
 * page that signs a person in when a browser has no session.
 *
 * The pages are built into the node: they load nothing from any other
 * address (no CDN, no font or script from elsewhere) and read the node's own
 * API from the browser: GET /v1/status, /v1/saes, /v1/conflicts,
 * /v1/records?type=query and /v1/records/query/ID, every 2 s, authenticated
 * by the ts_session cookie the sign-in sets (session.h; it holds a random
 * session id, never a token); the sign-in answers the session's CSRF token,
 * which login.js keeps in the origin's localStorage and app.js sends as
 * X-CSRF-Token with every request (GET /v1/session names the person signed
 * in; the page's one write is sign-out, POST /v1/session/end).  The dashboard shows the
 * node, every peer (connected or disconnected, last seen, entries behind per lane in
 * both directions, throughput of the last minute), every serious adverse
 * event with its awareness, received and deadline times and a LATE / AT
 * RISK / on time flag, open conflicts and open queries.
 *
 * Element ids and classes a test or a scraper may rely on:
 *   #node, #role, #trial, #refreshed (last good refresh, "HH:MM:SS UTC"),
 *   #banner (shown while the node cannot be read or refuses the cookie);
 *   #who (the person signed in: "NAME (USER, ROLE)"), button#signout;
 *   on the sign-in page: form#signin, input#token, #error (why the node
 *   refused, shown only then);
 *   table#sites   problem rows first (revoked; disconnected, longest first;
 *       behind, most first; SAEs late, then in flight; then by id);
 *       tr[data-peer=ID][data-severity="ok"|"warn"|"bad"]  td.name (the site's name, its id when
 *       it has none), td.id, td.state ("connected" | "disconnected"),
 *       td.last-seen, td.behind-send-safety, td.behind-send-bulk,
 *       td.behind-recv-safety, td.behind-recv-bulk (numbers with "," every
 *       3 digits), td.throughput, td.saes;
 *   table#saes    tr[data-sae=ID]   td.site ("NAME (ID)", or ID; the id in
 *       data-site), td.term, td.aware, td.received,
 *       td.deadline, td.left, td.flag ("LATE" | "AT RISK" | "on time"),
 *       td.acked ("yes" | "no"), td.alarms;
 *   table#conflicts tr[data-conflict=TYPE/ID/FIELD];
 *   table#queries tr[data-query=ID] td.state, td.target, td.text.
 * A time cell (td.aware, td.received, td.deadline, td.last-seen) holds the
 * API's value verbatim in data-iso and shows it as "YYYY-MM-DD HH:MM UTC",
 * seconds cut off (never rounded up, so a deadline never shows later than
 * it is); a time without a zone shows as written followed by " (no zone)".
 */
#ifndef TS_DASHBOARD_H
#define TS_DASHBOARD_H

#include <stdbool.h>
#include <stddef.h>

#define DASHBOARD_CONTENT_TYPE "text/html; charset=utf-8"

/* dashboard_csp's answer fits in this many bytes, its NUL included. */
#define DASHBOARD_CSP_BYTES_MAX 512

/*
 * The dashboard page: static UTF-8 HTML, NUL-terminated, *len bytes without
 * the NUL.  Serve it to a request a user token or the ts_session
 * cookie authenticates.
 */
const char *dashboard_html(size_t *len);

/*
 * The sign-in page, for GET /dashboard without a session or with ?signin
 * (answer it with 401): a form whose script (login.js) POSTs the person's user token as
 * JSON to /v1/session, then opens /dashboard; static, as above.
 */
const char *dashboard_login_html(size_t *len);

/*
 * The files the dashboard loads by URL: GET /dashboard/app.js and
 * /dashboard/style.css.  For such a path, sets *body (static, NUL-terminated,
 * *len bytes without the NUL) and *content_type and returns true; false for
 * any other path.  Serve them only to an authenticated request, as the page.
 */
bool dashboard_file(const char *path, const char **body, size_t *len, const char **content_type);

/*
 * The sign-in page's script, GET /dashboard/login.js: served to anyone, as
 * the sign-in page is.  Sets *body, *len, *content_type as dashboard_file
 * does for that path and returns true; false for any other path.
 */
bool dashboard_public_file(const char *path, const char **body, size_t *len,
                           const char **content_type);

/*
 * The Content-Security-Policy header value both pages need: nothing loads
 * from anywhere else, the script and styles come from the node's own URLs
 * (so no inline script can run) but for the sign-in page's inline style,
 * allowed by its SHA-256, fetches go to the node itself only,
 * no page may frame them.  Writes it NUL-terminated into out; returns 0, or
 * TS_ERR_TOOBIG when cap is below DASHBOARD_CSP_BYTES_MAX.
 */
int dashboard_csp(char *out, size_t cap);

#endif
