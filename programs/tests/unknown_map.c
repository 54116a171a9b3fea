/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * For the loader's verification tests: a map that maps-schema does not define. weir must
 * refuse the object by name before creating anything.
 */
#include "weir_bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} not_in_schema SEC(".maps");

SEC("xdp")
int xdp_unknown_map(struct xdp_md *ctx)
{
	__u32 key = 0;

	return bpf_map_lookup_elem(&not_in_schema, &key) ? XDP_PASS : XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
