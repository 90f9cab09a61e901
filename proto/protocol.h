/*
 * protocol.h: which wire protocol version two nodes speak (pure logic).
 *
 * Each node speaks a range of protocol versions [min, max] and says it in its
 * hello (Hello.protocol_version = max, Hello.protocol_version_min = min, the
 * latter absent when equal to max, so a hello of a node speaking one version
 * is byte-identical to one from the releases before ranges existed).  Both
 * sides run protocol_negotiate on the two ranges and reach the same answer:
 * the highest version both speak, or a refusal naming both ranges.
 */
#ifndef TS_PROTOCOL_H
#define TS_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

/* The reason of a refusal: two ranges and advice, far below a Refusal's. */
#define PROTOCOL_REASON_BYTES_MAX 256

/*
 * Picks the highest version in both [ours_min, ours_max] and
 * [theirs_min, theirs_max] into *agreed.  theirs_min 0 means "exactly
 * theirs_max" (a hello without the field).  Returns 0, or TS_ERR_INVALID
 * with a reason in why (cap bytes, NUL-terminated; may be NULL) when the
 * ranges do not overlap or theirs is malformed (max 0, or min above max).
 * ours must be a valid range (asserted).  Symmetric: swapping the two
 * ranges gives the same *agreed.
 */
int protocol_negotiate(uint32_t ours_min, uint32_t ours_max, uint32_t theirs_min,
                       uint32_t theirs_max, uint32_t *agreed, char *why, size_t cap);

#endif
