/*
 * peer.h: replication between nodes (sites to hubs, hubs to hubs).
 *
 * The peer manager listens for peers ([peer] listen) and connects out to the
 * hubs a node lists ([peer] hub), runs one session per link over mutual TLS,
 * and adds the per-peer replication state to the API's status.
 */
#ifndef TS_PEER_H
#define TS_PEER_H

#include "../proto/errors.h"
#include "api.h"
#include "node.h"

struct peer_mgr;

/*
 * Starts replication for n: loads the TLS credentials (key mode 0600), listens
 * when [peer] listen is set, connects to the hubs listed.  err says what is
 * wrong (a port in use, a bad certificate, ...).
 */
int peer_mgr_start(struct peer_mgr **out, struct node *n, struct ts_error *err);
/* Closes every link (asynchronously); the node keeps running until closed. */
void peer_mgr_stop(struct peer_mgr *m);
/* Frees m once the loop has run every close (after uv_run returned). */
void peer_mgr_free(struct peer_mgr *m);
/* Called for each entry applied from a peer (the SAE clock uses it). */
void peer_mgr_on_applied(struct peer_mgr *m,
                         void (*cb)(void *ctx, const struct entry *e, uint64_t now_ms), void *ctx);
/* Re-reads the revocation list file (cfg.crl) now, changed or not, and cuts
 * off peers it revokes; a file that does not load is traced and the list in
 * force kept.  On the loop thread (trialsyncd's SIGHUP). */
void peer_mgr_reload_crl(struct peer_mgr *m);
/* Fills the API's extension hooks (status, extra routes). */
void peer_mgr_api_hooks(struct peer_mgr *m, struct api_hooks *hooks);

#endif
