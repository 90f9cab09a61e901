/*
 * hlc.h: hybrid logical clock.
 *
 * A timestamp is (wall milliseconds << 16) | logical counter.  hlc_now()
 * returns a value strictly greater than every value it returned or observed
 * before, whatever the wall clock does (it may jump back by hours); when the
 * wall clock is ahead of everything seen, the timestamp follows it.  The
 * arithmetic saturates at UINT64_MAX and never wraps (admission keeps
 * entries stamped far in the future away, so the top is never reached in
 * practice).  Pure: the
 * caller passes the wall clock in, so tests can drive it.
 */
#ifndef TS_HLC_H
#define TS_HLC_H

#include <stdint.h>

#define HLC_LOGICAL_BITS 16

struct hlc {
    uint64_t last;
};

void hlc_init(struct hlc *c, uint64_t last);
/* A new timestamp for a local event at wall time wall_ms. */
uint64_t hlc_now(struct hlc *c, uint64_t wall_ms);
/* Takes in a timestamp received from a peer, so later hlc_now() exceed it. */
void hlc_observe(struct hlc *c, uint64_t remote);
/* The wall-clock milliseconds part of a timestamp. */
uint64_t hlc_ms(uint64_t t);

#endif
