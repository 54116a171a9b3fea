/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * For the loader's upgrade test: "the next version" of xdp_prefilter, tc_ingress and tc_egress.
 * Same names, maps and verdicts, different code (they count 2 bytes per packet more than the
 * frame length, which a test can see), so weir must replace the attached programs in place
 * rather than treat the load as a no-op. The XDP program uses exactly xdp.c's maps, so the
 * upgrade reuses every map and creates none.
 */
#include "weir_bpf.h"
#include "weir_maps.h"
#include "weir_count.h"

WEIR_DEFINE_MAP_IF_COUNTERS;
WEIR_DEFINE_MAP_PREFILTER_V4;
WEIR_DEFINE_MAP_DENY_V4_ROOT;
WEIR_DEFINE_MAP_DENY_V4_NODES;
WEIR_DEFINE_MAP_PREFILTER_V6;
WEIR_DEFINE_MAP_PREFILTER_STATS;
WEIR_DEFINE_MAP_FAILSAFE_IN;

#include "weir_prefilter.h"

SEC("xdp")
int xdp_prefilter(struct xdp_md *ctx)
{
	return weir_prefilter(ctx, 2);
}

static __always_inline int count_skb(struct __sk_buff *skb, __u32 hook)
{
	struct weir_if_key key = {
		.ifindex = skb->ifindex,
		.hook = hook,
	};

	weir_count_hash(&if_counters, &key, skb->len + 2);
	return TC_ACT_UNSPEC;
}

SEC("classifier")
int tc_ingress(struct __sk_buff *skb)
{
	return count_skb(skb, WEIR_HOOK_TC_INGRESS);
}

SEC("classifier")
int tc_egress(struct __sk_buff *skb)
{
	return count_skb(skb, WEIR_HOOK_TC_EGRESS);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
