/*
 * fuzz_api.h: the local API (node/api.c) driven without a socket, for the
 * HTTP and write-body harnesses (fuzz_api.c says how).
 */
#ifndef TS_FUZZ_API_H
#define TS_FUZZ_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The two nodes every input may talk to: a hub and a site of trial T1. */
enum fuzz_node { FUZZ_NODE_HUB, FUZZ_NODE_SITE, FUZZ_NODE_COUNT };

/* The bearer token both nodes accept (seeds carry it). */
#define FUZZ_API_TOKEN "fuzz-token-0123456789abcdef"

/* Responses one exchange collects, at most (pipelined requests). */
#define FUZZ_API_RESPONSES_MAX 64

struct fuzz_response {
    int status;
    const char *body;   /* into the exchange's buffer, valid until the next one */
    size_t body_len;
    bool json;          /* Content-Type: application/json */
    bool json_parses;   /* ... and the body is JSON */
};

struct fuzz_exchange {
    struct fuzz_response res[FUZZ_API_RESPONSES_MAX];
    size_t count;
    /* A request was left unanswered with the loop idle: the connection
     * stopped reading (the rest of the input was not sent). */
    bool stuck;
};

/*
 * Builds the CA, both nodes (key, certificate, node.conf, token, RocksDB
 * store under $TS_TEST_TMP, else $TMPDIR, else /dev/shm) and their APIs, once
 * per process, removed at exit; every later call does nothing.  Aborts on
 * failure: a harness cannot run without.  Used by the unit suite of the API
 * too (tests/unit/test_api.c).
 */
void fuzz_api_setup(void);

/*
 * Called by a harness before each input with the input's first byte, which
 * picks the node (low bit: 0 hub, 1 site) and the size of the reads the
 * rest arrives in (the other bits; 0: one read).  Every
 * FUZZ_API_INPUTS_PER_STORE inputs both nodes start again on empty stores
 * (fuzz_api.c says why).
 */
void fuzz_api_input_begin(uint8_t first, enum fuzz_node *node, size_t *chunk);

/*
 * One connection to node: opened as the listener would accept it, fed len
 * bytes in reads of chunk bytes (0: one read) as the socket would deliver
 * them, the loop run after each read until the request is answered (a write
 * waits for its group commit; when it never is, x->stuck is set and no more
 * is sent), then closed by the client and the loop run until the connection
 * is freed.  Checks (aborting when broken) what holds of any exchange: the
 * connection is freed and every response is well-formed HTTP/1.1 whose
 * Content-Length is its body's length.  Fills *x with the responses in
 * order.  With TS_FUZZ_VERBOSE set, each response's status and the start of
 * its body go to stderr (to see what a seed does).
 */
void fuzz_api_exchange(enum fuzz_node node, const uint8_t *data, size_t len, size_t chunk,
                       struct fuzz_exchange *x);

/*
 * The harnesses' properties of an exchange (aborting when broken): every
 * request was answered (not stuck), none with a 500 (a request, however
 * wrong, is the client's error, never the node's), and every JSON response
 * parses.
 */
void fuzz_api_check(const struct fuzz_exchange *x);

#endif
