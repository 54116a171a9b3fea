/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/* Counting helpers shared by weir's programs. */
#ifndef WEIR_COUNT_H
#define WEIR_COUNT_H

#include "weir_bpf.h"
#include "weir_maps.h"

/*
 * Add one packet of `bytes` to the counter at `key` of a per-CPU hash map, creating
 * the entry on first use. Per-CPU values are only touched by this CPU, so no atomics.
 */
static __always_inline void weir_count_hash(void *map, const void *key, __u64 bytes)
{
	struct weir_counter *c = bpf_map_lookup_elem(map, key);

	if (!c) {
		struct weir_counter zero = {};

		/* NOEXIST: if another CPU created it meanwhile, its entry is kept. */
		bpf_map_update_elem(map, key, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(map, key);
		if (!c)
			return; /* map full: drop the count, never the packet */
	}
	c->packets += 1;
	c->bytes += bytes;
}

/* Add one call to slot `index` of a per-CPU array map (array slots always exist). */
static __always_inline void weir_count_array(void *map, __u32 index)
{
	struct weir_counter *c = bpf_map_lookup_elem(map, &index);

	if (c)
		c->packets += 1;
}

#endif /* WEIR_COUNT_H */
