/*
 * metrics.h: the node's state in the Prometheus text exposition format 0.0.4.
 *
 * Pure: metrics_render reads the JSON objects GET /v1/status and GET /v1/saes
 * answer and writes text; it does no I/O and reads no clock, so a test can
 * drive it with hand-built JSON.  Every field is optional: a field missing
 * from the JSON (an older node build) leaves out its samples, never the
 * whole exposition.  A metric family is written (with its # HELP and # TYPE
 * lines) only when it has at least one sample.
 *
 * Families (types in brackets; counters end in _total, units are base units):
 *   trialsync_info{node,role,trial}                                  [gauge, 1]
 *   trialsync_build_info{version,store_format}                       [gauge, 1]
 *   trialsync_peer_connected{peer,role}                               [gauge 0/1]
 *   trialsync_peer_revoked{peer}                                      [gauge 0/1]
 *   trialsync_peer_last_seen_timestamp_seconds{peer} (never seen: no sample)
 *   trialsync_peer_last_seen_age_seconds{peer}   deprecated, the same as an age
 *   trialsync_peer_behind_entries{peer,lane,direction}  lane safety|bulk,
 *                                                     direction send|receive
 *   trialsync_peer_sent_bytes_total{peer}, ..._received_bytes_total,
 *   trialsync_peer_sent_entries_total{peer}, ..._received_entries_total,
 *   trialsync_peer_batches_refused_total{peer}                        [counters]
 *   trialsync_peer_saes_in_flight{peer}                               [gauge]
 *   trialsync_handshake_failures_total{reason}                        [counter]
 *   trialsync_sae_in_flight, trialsync_sae_late, trialsync_sae_at_risk [gauges]
 *   trialsync_sae_alarms_total                                        [counter]
 *   trialsync_sae_deadline_timestamp_seconds{sae,site}  one per SAE not yet
 *       acknowledged, its 24 h deadline as Unix time (alert on
 *       `... - time() < 6*3600`)                                      [gauge]
 *   trialsync_duplicate_identity_total{site} [counter] and
 *       trialsync_duplicate_identity_alarm{site} (0/1) [gauge]: a hub
 *       refused a second node connecting with a site's identity
 *   trialsync_conflicts_open, trialsync_store_size_bytes,
 *   trialsync_disk_free_bytes, trialsync_entries, trialsync_records,
 *   trialsync_accepting_writes (0/1), trialsync_uptime_seconds,
 *   trialsync_start_time_seconds (Unix time)                          [gauges]
 *   trialsync_storage_state{state} 1 for the node's state, 0 for the
 *       others (ok, disk_low, storage_failed), trialsync_disk_guard_bytes [gauges]
 *   trialsync_writes_refused_disk_total                               [counter]
 *   trialsync_commit_duration_seconds                                 [histogram]
 *       _bucket{le} cumulative, le="+Inf" last, then _sum and _count; the
 *       status gives per-bucket counts (one more than bounds_s, the last
 *       being the overflow); _count is their sum, so it always equals the
 *       +Inf bucket.  A histogram whose bounds are not strictly increasing or
 *       whose counts do not number bounds + 1 is left out.
 *   process_cpu_seconds_total [counter], process_open_fds, process_max_fds,
 *   process_resident_memory_bytes, process_start_time_seconds       [gauges]
 *       the client libraries' standard families, from the status's
 *       "process" object (the API reads /proc; the renderer stays pure).
 */
#ifndef TS_METRICS_H
#define TS_METRICS_H

#include <jansson.h>
#include <stddef.h>

/*
 * The exposition may not grow past this: at PEER_INFOS_MAX peers it stays
 * well under 1 MiB, so hitting the cap means the input is not a node's status.
 */
#define METRICS_BYTES_MAX (8u * 1024u * 1024u)

/* Per-SAE deadline series written at most; the counts cover the rest. */
#define METRICS_SAE_SERIES_MAX 1000

/* The Content-Type a /metrics answer carries. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/*
 * Renders status (GET /v1/status's object, required) and saes (GET
 * /v1/saes's object, or NULL) into *out, a malloc'ed NUL-terminated buffer
 * the caller frees, of *out_len bytes (not counting the NUL).  Returns 0,
 * TS_ERR_INVALID when status is not a JSON object, TS_ERR_NOMEM, or
 * TS_ERR_TOOBIG past METRICS_BYTES_MAX; on error *out is NULL.  Reentrant.
 */
int metrics_render(const json_t *status, const json_t *saes, char **out, size_t *out_len);

#endif
