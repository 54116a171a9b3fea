/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * TC packet/byte counters for ingress and egress. Both return TC_ACT_UNSPEC so the
 * next TC program (TCX or clsact) still runs: weir only observes here.
 */
#include "weir_bpf.h"
#include "weir_maps.h"
#include "weir_count.h"

WEIR_DEFINE_MAP_IF_COUNTERS;
WEIR_DEFINE_MAP_FP_ROUTES_V4;
WEIR_DEFINE_MAP_FP_ROUTES_V6;
WEIR_DEFINE_MAP_FP_ENDPOINTS;
WEIR_DEFINE_MAP_FP_MACS;

#include "weir_fastpath.h"

static __always_inline int count_skb(struct __sk_buff *skb, __u32 hook)
{
	struct weir_if_key key = {
		.ifindex = skb->ifindex,
		.hook = hook,
	};

	weir_count_hash(&if_counters, &key, skb->len);
	return TC_ACT_UNSPEC;
}

/* aya-obj 0.3.0 only knows "classifier" for TC; the attach point picks the direction. */
SEC("classifier")
int tc_ingress(struct __sk_buff *skb)
{
	count_skb(skb, WEIR_HOOK_TC_INGRESS);
	return weir_fastpath(skb);
}

SEC("classifier")
int tc_egress(struct __sk_buff *skb)
{
	return count_skb(skb, WEIR_HOOK_TC_EGRESS);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
