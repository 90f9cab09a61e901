/*
 * store_debug.h: test-only hooks into the store, for tests that must damage
 * what is on disk to prove that the store notices.
 *
 * Nothing in the node or the CLI may call these: they break the store's
 * guarantee that entries are never changed.
 */
#ifndef TS_STORE_DEBUG_H
#define TS_STORE_DEBUG_H

#include <stddef.h>

#include "store.h"

/*
 * Flips (xor 0xff) the byte at byte_offset of the stored encoded bytes of the
 * entry ref (the entry itself, not the chain hash stored before it), written
 * synced and bypassing every check.  Returns 0, TS_ERR_NOTFOUND when the entry
 * is not held, TS_ERR_INVALID when byte_offset is past its end, TS_ERR_IO.
 */
int store_debug_corrupt(struct store *s, const struct entry_ref *ref, size_t byte_offset);

#endif
