/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/* XDP packet/byte counter: counts every frame per ingress interface, then passes it. */
#include "weir_bpf.h"
#include "weir_maps.h"
#include "weir_count.h"

WEIR_DEFINE_MAP_IF_COUNTERS;

SEC("xdp")
int xdp_counter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct weir_if_key key = {
		.ifindex = ctx->ingress_ifindex,
		.hook = WEIR_HOOK_XDP,
	};

	/* Linear frame length; weir does not load multi-buffer (xdp.frags) programs. */
	weir_count_hash(&if_counters, &key, (__u64)(data_end - data));
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
