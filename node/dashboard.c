/*
 * dashboard.c: the operators' web page and its sign-in page, built into the
 * node so they work with no outside network (see dashboard.h).
 *
 * Editing: the page, its script and its styles are the files in
 * node/dashboard/ (index.html, app.js, style.css, login.html), plain files a
 * browser can open; cmake/embed.cmake compiles their bytes in at build time
 * (dashboard_assets.h), so an edit needs only a rebuild.
 * tests/e2e/test_dashboard.sh drives the page in headless Chromium against a
 * real hub and real sites and keeps screenshots.
 *
 * Security: the pages load nothing from elsewhere (the only URLs they name
 * are the node's own /v1 paths, /dashboard and /dashboard/FILE); every value
 * from the API is put in the page as text (textContent, setAttribute), never
 * parsed as markup.  dashboard_csp allows scripts and styles from the node
 * itself ('self': the dashboard's app.js and style.css, which need a session
 * like any API path, and the sign-in page's login.js, which is public; every
 * answer carries nosniff, so no JSON answer runs as a script) and the sign-in page's one inline style by its SHA-256.
 */
#include "dashboard.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../proto/errors.h"
#include "crypto.h"
#include "dashboard_assets.h"

/* The embedded file called name (relative to node/dashboard/); asserts it is there. */
static const struct dashboard_asset *asset(const char *name)
{
    for (size_t i = 0; i < dashboard_assets_count; i++) {
        if (strcmp(dashboard_assets[i].name, name) == 0) {
            assert(dashboard_assets[i].bytes[dashboard_assets[i].len] == '\0');
            return &dashboard_assets[i];
        }
    }
    assert(!"a dashboard file the build did not embed");
    return NULL;
}

static const char *asset_text(const char *name, size_t *len)
{
    const struct dashboard_asset *a = asset(name);
    *len = a->len;
    return (const char *)a->bytes;
}

const char *dashboard_html(size_t *len)
{
    return asset_text("index.html", len);
}

const char *dashboard_login_html(size_t *len)
{
    return asset_text("login.html", len);
}

/* The sign-in page's script: public, as the sign-in page is; it holds nothing
 * but the code that POSTs the token the person types to /v1/session. */
bool dashboard_public_file(const char *path, const char **body, size_t *len,
                           const char **content_type)
{
    assert(path != NULL);
    if (strcmp(path, "/dashboard/login.js") != 0)
        return false;
    *body = asset_text("login.js", len);
    *content_type = "text/javascript; charset=utf-8";
    return true;
}

/* The files the page loads by URL, and the type each is served as. */
static const struct {
    const char *path;
    const char *name;
    const char *content_type;
} dashboard_files[] = {
    {"/dashboard/app.js", "app.js", "text/javascript; charset=utf-8"},
    {"/dashboard/style.css", "style.css", "text/css; charset=utf-8"},
};

bool dashboard_file(const char *path, const char **body, size_t *len, const char **content_type)
{
    assert(path != NULL);
    for (size_t i = 0; i < sizeof(dashboard_files) / sizeof(dashboard_files[0]); i++) {
        if (strcmp(path, dashboard_files[i].path) == 0) {
            *body = asset_text(dashboard_files[i].name, len);
            *content_type = dashboard_files[i].content_type;
            return true;
        }
    }
    return false;
}

/* Standard base64 (RFC 4648, with padding) of n bytes into out (4*ceil(n/3)+1 bytes). */
static void base64(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = digits[(v >> 18) & 63];
        out[o++] = digits[(v >> 12) & 63];
        out[o++] = i + 1 < n ? digits[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? digits[v & 63] : '=';
    }
    out[o] = '\0';
}

#define HASH_B64_BYTES (4 * ((TS_HASH_BYTES + 2) / 3) + 1)

/*
 * The base64 SHA-256 of what the page's one element opened by `open` holds,
 * as a browser hashes an inline script or style for a CSP 'sha256-' source.
 */
static void element_hash(const char *page, const char *open, const char *close,
                         char out[HASH_B64_BYTES])
{
    const char *start = strstr(page, open);
    assert(start != NULL);
    start += strlen(open);
    assert(strstr(start, open) == NULL);  /* one such element: one hash covers it */
    const char *end = strstr(start, close);
    assert(end != NULL);
    uint8_t digest[TS_HASH_BYTES];
    crypto_sha256(start, (size_t)(end - start), digest);
    base64(digest, sizeof(digest), out);
}

int dashboard_csp(char *out, size_t cap)
{
    char login_style[HASH_B64_BYTES];
    size_t len = 0;
    const char *page = dashboard_html(&len);
    const char *login = dashboard_login_html(&len);

    assert(out != NULL);
    /* The dashboard loads its script and styles by URL: an inline one would be refused. */
    assert(strstr(page, "<script>") == NULL);
    assert(strstr(page, "<style>") == NULL);
    /* The login page's script is a file too (login.js): an inline one would need its own hash. */
    assert(strstr(login, "<script>") == NULL);
    assert(strstr(login, "<script src='/dashboard/login.js'></script>") != NULL);
    element_hash(login, "<style>", "</style>", login_style);
    int n = snprintf(out, cap,
                     "default-src 'none'; script-src 'self'; "
                     "style-src 'self' 'sha256-%s'; connect-src 'self'; img-src data:; "
                     "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
                     login_style);
    if (n < 0 || (size_t)n >= cap)
        return TS_ERR_TOOBIG;
    assert((size_t)n < DASHBOARD_CSP_BYTES_MAX);
    return 0;
}
