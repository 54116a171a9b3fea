/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * For the loader's verification tests: a map named like a schema map (if_counters) whose key
 * struct has its members swapped. Sizes match the schema; only the BTF member layout differs,
 * which is exactly the drift weir's layout check must catch before anything is loaded.
 */
#include "weir_bpf.h"

struct weir_if_key {
	__u32 hook;
	__u32 ifindex;
};

struct weir_counter {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, struct weir_if_key);
	__type(value, struct weir_counter);
	__uint(max_entries, 1024);
} if_counters SEC(".maps");

SEC("xdp")
int xdp_bad_map(struct xdp_md *ctx)
{
	struct weir_if_key key = { .hook = 0, .ifindex = ctx->ingress_ifindex };

	return bpf_map_lookup_elem(&if_counters, &key) ? XDP_PASS : XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
