/*
 * client.h: the CLI's side of a node's local API: one blocking HTTP/1.1
 * request per call, authenticated with the node's token.
 */
#ifndef TS_CLI_CLIENT_H
#define TS_CLI_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "../node/config.h"

struct client_response {
    int status;
    char *body;      /* malloc'ed, NUL-terminated */
    size_t len;
};

/*
 * Sends method path (with body when not NULL) to the API of the node whose
 * config is cfg.  Returns 0 with *res filled (any HTTP status), or a negative
 * code with a message in err when the node cannot be reached.
 */
int client_request(const struct config *cfg, const char *method, const char *path,
                   const char *body, struct client_response *res, struct ts_error *err);

void client_response_release(struct client_response *res);

/* True when requests carry a person's token (TRIALSYNC_TOKEN_FILE is set):
 * the node then knows who is writing, and the CLI names nobody. */
bool client_signed_in(void);

/* Percent-encodes s for a URL path segment. */
int client_escape(const char *s, char *out, size_t cap);

#endif
