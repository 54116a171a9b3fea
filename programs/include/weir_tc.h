/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * weir_tc.h: the TC programs (tc_ingress, tc_egress) and the maps they define, shared by tc.c
 * and by the loader's upgrade test object (programs/tests/upgrade.c), which builds "the next
 * version" of them by defining WEIR_TC_EXTRA_BYTES (counted on top of every packet's length,
 * so a test can tell the versions apart) before including this file.
 */
#ifndef WEIR_TC_H
#define WEIR_TC_H

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
/* The set index: only the loader reads it (`weir set`); defined here so every TC object pins it. */
WEIR_DEFINE_MAP_POL_SET_META;
WEIR_DEFINE_MAP_POL_SETS;
WEIR_DEFINE_MAP_POL_SET_RS;
WEIR_DEFINE_MAP_POL_SET_MEMBERS;
WEIR_DEFINE_MAP_POL_SET_INLINE;
WEIR_DEFINE_MAP_POL_BM_IDS;
/* Rule and policy names: only the loader reads them (`weir status`, `weir events`). */
WEIR_DEFINE_MAP_POL_NAMES;
WEIR_DEFINE_MAP_FP_ROUTES_V4;
WEIR_DEFINE_MAP_FP_ROUTES_V6;
WEIR_DEFINE_MAP_FP_ENDPOINTS;
WEIR_DEFINE_MAP_FP_MACS;

#include "weir_policy.h"
#include "weir_fastpath.h"

/*
 * aya-obj 0.3.0 only knows "classifier" for TC; the attach point picks the direction.
 *
 * Ingress: this interface's policy first; then, for what it allows, the fast path. A packet
 * for a local workload is judged by that workload's ingress policy (its veth's TC egress, the
 * hook bpf_redirect_peer skips) before it is redirected: the fast path never bypasses policy,
 * and a packet it denies is dropped here, counted and reported once.
 *
 * The interface's fp_endpoints entry comes first: one lookup tells where its packets are
 * counted (its if_counters slot), whether it may have a policy (WEIR_FP_POLICY, which the
 * loader sets before a bank switch makes it an endpoint) and whether its fast path is on, so
 * an interface with neither costs that lookup and its count. An interface without an entry
 * gets the policy lookups (and no count: it has no slot).
 */
SEC("classifier")
int tc_ingress(struct __sk_buff *skb)
{
	struct weir_fp_endpoint *self;
	__u32 in = skb->ifindex, key = in;
	int target;

	self = bpf_map_lookup_elem(&fp_endpoints, &key);
	key = self ? self->slot : WEIR_IF_SLOT_NONE;
	weir_count_slot(&if_counters, &key, WEIR_HOOK_TC_INGRESS, skb->len + WEIR_TC_EXTRA_BYTES);
	if ((!self || (self->flags & WEIR_FP_POLICY)) &&
	    weir_policy_at(skb, in, WEIR_HOOK_TC_INGRESS, 0) == TC_ACT_SHOT)
		return TC_ACT_SHOT;
	if (!self || !(self->flags & WEIR_FP_ON))
		return TC_ACT_UNSPEC;
	target = weir_fastpath_target(skb, self);
	if (target == WEIR_FP_ROUTE_OUT)
		return weir_fastpath_out(skb, self->slot);
	if (target < 0)
		return TC_ACT_UNSPEC;
	if (weir_policy_at(skb, target, WEIR_HOOK_TC_EGRESS, 0) == TC_ACT_SHOT)
		return TC_ACT_SHOT;
	return weir_fastpath_peer(skb, target);
}

SEC("classifier")
int tc_egress(struct __sk_buff *skb)
{
	return weir_policy_at(skb, skb->ifindex, WEIR_HOOK_TC_EGRESS, 1);
}

#endif /* WEIR_TC_H */
