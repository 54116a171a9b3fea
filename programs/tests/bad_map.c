/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * For the loader's verification tests: a map named like a schema map (if_counters) whose value
 * struct has two members swapped. Sizes match the schema; only the BTF member layout differs,
 * which is exactly the drift weir's layout check must catch before anything is loaded.
 */
#include "weir_bpf.h"

struct weir_if_ctrs {
	__u32 pad;
	__u32 ifindex;
	__u64 packets[4];
	__u64 bytes[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct weir_if_ctrs);
	__uint(max_entries, 1024);
} if_counters SEC(".maps");

SEC("xdp")
int xdp_bad_map(struct xdp_md *ctx)
{
	__u32 slot = ctx->ingress_ifindex & 1023;

	return bpf_map_lookup_elem(&if_counters, &slot) ? XDP_PASS : XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
