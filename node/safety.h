/*
 * safety.h: the 24-hour clock of serious adverse events (SAEs).
 *
 * An SAE is an `ae` record whose displayed aeser is Y; its writes travel on
 * the safety lane.  Its deadline is the site's awareness time
 * (sae_aware_dtc) plus 24 hours.
 *
 * At a hub: the time the hub first received it is stamped; an SAE received
 * after its deadline is flagged late.
 * At a site: an SAE is in flight until a hub acknowledges the site's safety
 * chain past it.  One unacknowledged after [safety] sae_alarm_first_s (1 h)
 * and again after sae_alarm_second_s (12 h) raises an alarm (trace, metric,
 * status) telling staff to use the backup channel (phone or fax); one within
 * SAFETY_AT_RISK_MS of its deadline is flagged at risk.
 *
 * The list is rebuilt from the store when the node starts and kept up to date
 * by the node (local commits) and the peer manager (entries applied, acks).
 * Loop thread only.
 */
#ifndef TS_SAFETY_H
#define TS_SAFETY_H

#include <jansson.h>
#include <stdint.h>

#include "../proto/entry.h"
#include "node.h"

/* Regulations give 24 hours from the site's awareness. */
#define SAFETY_DEADLINE_MS (24ULL * 3600 * 1000)
/* Still unacknowledged this close to the deadline: at risk. */
#define SAFETY_AT_RISK_MS (6ULL * 3600 * 1000)
/* SAEs tracked by one node: far above any trial's count. */
#define SAFETY_SAES_MAX 100000

struct safety;

struct safety_summary {
    uint64_t tracked;     /* SAEs this node knows of (a hub: received) */
    uint64_t in_flight;   /* site: unacknowledged; hub: 0 (it cannot see what has not come) */
    uint64_t late;        /* hub: received after the deadline; site: past deadline unacked */
    uint64_t at_risk;
    uint64_t alarms;      /* alarms raised since the node started */
};

int safety_open(struct safety **out, struct node *n);
void safety_free(struct safety *s);

/* An entry of this node's own chain was committed (called for safety-lane entries). */
void safety_local_commit(struct safety *s, const struct entry *e, uint64_t now_ms);
/* An entry from a peer was applied. */
void safety_applied(struct safety *s, const struct entry *e, uint64_t now_ms);
/* A hub holds this site's safety chain up to seq. */
void safety_acked(struct safety *s, uint64_t seq, uint64_t now_ms);
/* Raises due alarms (site). */
void safety_tick(struct safety *s, uint64_t now_ms);

void safety_summarize(struct safety *s, uint64_t now_ms, struct safety_summary *out);
/* {"saes":[{id, site, aeterm, aware_time, received_time, deadline, late, at_risk, acked, alarms}]} */
json_t *safety_json(struct safety *s, uint64_t now_ms);

/*
 * safety_json of the SAEs at positions from .. from + limit - 1 (limit > 0)
 * of site ("" for every site): positions are stable (SAEs are only
 * appended).  *next is the position to resume at when more remain, else 0.
 */
json_t *safety_json_page(struct safety *s, uint64_t now_ms, const char *site, size_t from,
                         size_t limit, size_t *next);

/* Parses an ISO 8601 date-time (UTC or with offset) to ms since the epoch; 0 if not one. */
uint64_t safety_parse_time(const char *iso);

#endif
