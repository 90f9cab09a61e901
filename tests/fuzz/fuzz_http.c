/*
 * fuzz_http.c: libFuzzer harness of the local API's request path: the bytes
 * a client sends, through http-parser's callbacks (node/api.c), the request
 * limits, authorization and dispatch to every route, on a real hub or site
 * (fuzz_api.c).
 *
 * Input: one byte, then what the client sends.  The byte's low bit picks the
 * node (0 hub, 1 site); the rest, when not 0, is the size of the reads the
 * bytes arrive in (1..127: requests split across reads, pipelined requests
 * waiting for the one before to be answered).
 *
 * Properties (fuzz_api_exchange): no memory error, no leak, every request
 * answered (the connection never stops reading), the connection always freed, every response is well-formed HTTP/1.1 whose length is
 * its Content-Length, none is a 500 (a request, however wrong, is the
 * client's error, never the node's), JSON responses parse; and a request
 * without the token is never answered 200 except /healthz and the
 * dashboard's login page.
 */
#define _GNU_SOURCE  /* memmem */
#include <string.h>

#include "fuzz.h"
#include "fuzz_api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum fuzz_node node;
    size_t chunk;
    fuzz_api_input_begin(data[0], &node, &chunk);
    static struct fuzz_exchange x;
    fuzz_api_exchange(node, data + 1, size - 1, chunk, &x);
    fuzz_api_check(&x);
    if (memmem(data, size, FUZZ_API_TOKEN, strlen(FUZZ_API_TOKEN)) != NULL)
        return 0;
    /* Without the token: no data but /healthz's, nothing redirects.  The
     * sign-in page and its script (HTML, JavaScript, CSS) hold no data. */
    for (size_t i = 0; i < x.count; i++) {
        FUZZ_CHECK(x.res[i].status != 302);
        if (x.res[i].status != 200 || !x.res[i].json)
            continue;
        FUZZ_CHECK(memmem(x.res[i].body, x.res[i].body_len, "\"accepting_writes\"", 18) != NULL);
    }
    return 0;
}
