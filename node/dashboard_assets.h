/*
 * dashboard_assets.h: the dashboard's files (node/dashboard/), embedded at
 * build time by cmake/embed.cmake into a generated C file.  Only dashboard.c
 * reads them.
 */
#ifndef TS_DASHBOARD_ASSETS_H
#define TS_DASHBOARD_ASSETS_H

#include <stddef.h>

struct dashboard_asset {
    const char *name;   /* relative to node/dashboard/: "index.html", "app.js" */
    const unsigned char *bytes;  /* len bytes, then a NUL */
    size_t len;
};

extern const struct dashboard_asset dashboard_assets[];
extern const size_t dashboard_assets_count;

#endif
