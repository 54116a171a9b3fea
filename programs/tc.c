/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * TC programs for ingress and egress: packet/byte counters per interface and hook, and the
 * stateful network policy of include/weir_policy.h for interfaces that are policy endpoints.
 * Allowed packets and packets weir has no verdict on return TC_ACT_UNSPEC, so the next TC
 * program (TCX or clsact) and netfilter still see them; denied ones TC_ACT_SHOT.
 */
#include "weir_bpf.h"
#include "weir_maps.h"
#include "weir_count.h"

WEIR_DEFINE_MAP_IF_COUNTERS;
WEIR_DEFINE_MAP_FAILSAFE_IN;
WEIR_DEFINE_MAP_POL_ACTIVE;
WEIR_DEFINE_MAP_POL_ENDPOINTS;
WEIR_DEFINE_MAP_POL_RULESETS;
WEIR_DEFINE_MAP_POL_ROOT;
WEIR_DEFINE_MAP_POL_NODES;
WEIR_DEFINE_MAP_POL_BITMAPS;
WEIR_DEFINE_MAP_POL_RULES;
WEIR_DEFINE_MAP_POL_CT;
WEIR_DEFINE_MAP_POL_RULE_CTRS;
WEIR_DEFINE_MAP_POL_POL_CTRS;
WEIR_DEFINE_MAP_POL_STATS;
WEIR_DEFINE_MAP_POL_EV_RATE;
WEIR_DEFINE_MAP_POL_EVENTS;

#include "weir_policy.h"

/* aya-obj 0.3.0 only knows "classifier" for TC; the attach point picks the direction. */
SEC("classifier")
int tc_ingress(struct __sk_buff *skb)
{
	return weir_policy(skb, WEIR_HOOK_TC_INGRESS);
}

SEC("classifier")
int tc_egress(struct __sk_buff *skb)
{
	return weir_policy(skb, WEIR_HOOK_TC_EGRESS);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
