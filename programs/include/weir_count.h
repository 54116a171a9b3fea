/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/* Counting helpers shared by weir's programs. */
#ifndef WEIR_COUNT_H
#define WEIR_COUNT_H

#include "weir_bpf.h"
#include "weir_maps.h"

/* Add one call to slot `index` of a per-CPU array map (array slots always exist). */
static __always_inline void weir_count_array(void *map, __u32 index)
{
	struct weir_counter *c = bpf_map_lookup_elem(map, &index);

	if (c)
		c->packets += 1;
}

/*
 * Add one packet of `bytes` at hook id `hook` to the counters at index `*slot` of a per-CPU
 * array of struct weir_if_ctrs (if_counters). An array lookup is inlined by the verifier,
 * where a hash lookup hashes its key and walks a bucket. Slot WEIR_IF_SLOT_NONE exists but
 * nobody reads it: an interface without a slot is counted there rather than tested for. The
 * slot is passed by address so that a caller short of stack can keep it in a variable it has
 * anyway.
 */
static __always_inline void weir_count_slot(void *map, const __u32 *slot, __u32 hook,
					    __u64 bytes)
{
	struct weir_if_ctrs *c = bpf_map_lookup_elem(map, slot);
	__u32 i = hook - WEIR_IF_FIRST_HOOK;

	if (c && i < WEIR_IF_HOOKS) {
		c->packets[i] += 1;
		c->bytes[i] += bytes;
	}
}

#endif /* WEIR_COUNT_H */
