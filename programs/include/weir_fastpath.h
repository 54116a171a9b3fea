/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * The fast path, run at TC ingress once weir's own policy has allowed a packet (it never
 * bypasses policy):
 *
 * - a packet for a local workload (fp_routes_v4/v6) goes straight into the workload's network
 *   namespace with bpf_redirect_peer, once the workload's own ingress policy allows it
 *   (the hook the redirect skips): the host's routing, netfilter and the veth's backlog hop
 *   are skipped;
 * - a packet from a workload to anywhere else is routed with bpf_fib_lookup and sent out of
 *   the right host interface (bpf_redirect with the MACs the FIB gave, or bpf_redirect_neigh
 *   when the next hop's MAC is not known yet).
 *
 * As a router would: only frames addressed to the interface's own MAC are routed; the TTL /
 * hop limit is decremented (the IPv4 checksum updated), and a packet that would expire takes
 * the normal path, so the kernel sends the ICMP error; a packet that does not fit the egress
 * MTU takes the normal path too (the kernel fragments it or sends "too big"). Source addresses
 * are never changed. Whenever weir cannot decide, the packet takes the normal path
 * (TC_ACT_UNSPEC), never a drop.
 *
 * A workload's MAC is learned here from the frames it sends (fp_macs): until it has sent one,
 * packets for it take the normal path (which resolves its MAC with ARP / ND anyway).
 *
 * The including program defines the maps (WEIR_DEFINE_MAP_FP_*, IF_COUNTERS) and puts the
 * pieces together around its policy (tc.c): weir_fastpath_target says where a packet goes
 * (given the arriving interface's fp_endpoints entry, which the program looks up first),
 * the program asks the policy of the hook the packet would skip, then weir_fastpath_peer or
 * weir_fastpath_out sends it. They are separate (global) functions so that each has its own
 * stack frame: the policy's call chain needs most of the 512 bytes.
 */
#ifndef WEIR_FASTPATH_H
#define WEIR_FASTPATH_H

#include "weir_bpf.h"
#include "weir_redirect.h"
#include "weir_maps.h"
#include "weir_net.h"
#include "weir_count.h"

#define WEIR_FP_NORMAL TC_ACT_UNSPEC

static __always_inline int fp_mac_eq(const __u8 *a, const __u8 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] &&
	       a[5] == b[5];
}

static __always_inline void fp_mac_copy(__u8 *dst, const __u8 *src)
{
	dst[0] = src[0];
	dst[1] = src[1];
	dst[2] = src[2];
	dst[3] = src[3];
	dst[4] = src[4];
	dst[5] = src[5];
}

/* Remembers the MAC a workload sends from (written only when it changes). */
static __always_inline void fp_learn(__u32 ifindex, const __u8 *src)
{
	struct weir_mac *known = bpf_map_lookup_elem(&fp_macs, &ifindex);
	struct weir_mac mac = {};

	if (src[0] & 1)
		return; /* a group address is nobody's own */
	if (known && fp_mac_eq(known->addr, src))
		return;
	fp_mac_copy(mac.addr, src);
	bpf_map_update_elem(&fp_macs, &ifindex, &mac, BPF_ANY);
}

/* One less hop for IPv4, with the header checksum adjusted for the TTL byte's 0x0100. */
static __always_inline void fp_ttl_dec4(struct weir_ipv4 *ip)
{
	__u32 check = ip->check;

	check += weir_htons(0x0100);
	ip->check = (__u16)(check + (check >= 0xFFFF));
	ip->ttl--;
}

/* Decrements the TTL / hop limit of the IPv4 or IPv6 packet behind the Ethernet header. */
static __always_inline int fp_hop(struct __sk_buff *skb, int ip4)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;

	if (ip4) {
		struct weir_ipv4 *ip = data + sizeof(struct weir_eth);

		if ((void *)(ip + 1) > end)
			return -1;
		fp_ttl_dec4(ip);
	} else {
		struct weir_ipv6 *ip = data + sizeof(struct weir_eth);

		if ((void *)(ip + 1) > end)
			return -1;
		ip->hop_limit--;
	}
	return 0;
}

/* Whether the workload behind `ifindex` can take a redirected packet now. */
static __always_inline int fp_target_ready(struct __sk_buff *skb, __u32 ifindex)
{
	struct weir_fp_endpoint *target = bpf_map_lookup_elem(&fp_endpoints, &ifindex);
	__u32 mtu = 0;

	if (!target || !(target->flags & WEIR_FP_ON) || !(target->flags & WEIR_FP_WORKLOAD))
		return 0;
	if (!bpf_map_lookup_elem(&fp_macs, &ifindex))
		return 0; /* it has not sent anything yet: the stack resolves it */
	return bpf_check_mtu(skb, ifindex, &mtu, 0, 0) == BPF_MTU_CHK_RET_SUCCESS;
}

/*
 * Where a packet arriving here goes: the host-side interface of the local workload it is for
 * (> 0, ready to take it), WEIR_FP_ROUTE_OUT when it is from a workload to somewhere not local,
 * WEIR_FP_STACK when the stack must handle it.
 */
#define WEIR_FP_ROUTE_OUT 0
#define WEIR_FP_STACK (-1)

__attribute__((noinline)) int weir_fastpath_target(struct __sk_buff *skb,
						    const struct weir_fp_endpoint *self)
{
	struct weir_fp_route *route;
	__u32 in;

	if (!skb || !self || !(self->flags & WEIR_FP_ON))
		return WEIR_FP_STACK;
	in = skb->ifindex;

	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct weir_eth *eth = data;

	if ((void *)(eth + 1) > end)
		return WEIR_FP_STACK;
	if (self->flags & WEIR_FP_WORKLOAD)
		fp_learn(in, eth->src);
	/* Only what is sent to this interface's own MAC is for the host to route. */
	if (!fp_mac_eq(eth->dst, self->mac))
		return WEIR_FP_STACK;
	if (eth->proto == weir_htons(WEIR_ETH_P_IP)) {
		struct weir_ipv4 *ip = data + sizeof(*eth);
		struct weir_lpm_v4 key = { .prefixlen = 32 };

		if ((void *)(ip + 1) > end || ip->ttl <= 1)
			return WEIR_FP_STACK; /* expiring: the stack sends the ICMP error */
		__builtin_memcpy(key.addr, &ip->daddr, 4);
		route = bpf_map_lookup_elem(&fp_routes_v4, &key);
	} else if (eth->proto == weir_htons(WEIR_ETH_P_IPV6)) {
		struct weir_ipv6 *ip = data + sizeof(*eth);
		struct weir_lpm_v6 key = { .prefixlen = 128 };

		if ((void *)(ip + 1) > end || ip->hop_limit <= 1)
			return WEIR_FP_STACK;
		/* Link-local and multicast destinations are never routed. */
		__u8 first = ((__u8 *)ip->daddr)[0];
		__u8 second = ((__u8 *)ip->daddr)[1];

		if (first == 0xff || (first == 0xfe && (second & 0xc0) == 0x80))
			return WEIR_FP_STACK;
		__builtin_memcpy(key.addr, ip->daddr, 16);
		route = bpf_map_lookup_elem(&fp_routes_v6, &key);
	} else {
		return WEIR_FP_STACK;
	}
	if (!route) /* not local: routed out of a host interface, for workloads only */
		return (self->flags & WEIR_FP_WORKLOAD) ? WEIR_FP_ROUTE_OUT : WEIR_FP_STACK;
	if (route->ifindex == in || route->ifindex > 0x7fffffff)
		return WEIR_FP_STACK; /* back where it came from: the stack's business */
	if (!fp_target_ready(skb, route->ifindex))
		return WEIR_FP_STACK;
	return (int)route->ifindex;
}

/*
 * Into the workload behind `ifindex` (its host-side interface), which weir_fastpath_target
 * chose and whose ingress policy allowed the packet: one hop less, the MACs a routed packet
 * would have, bpf_redirect_peer.
 */
__attribute__((noinline)) int weir_fastpath_peer(struct __sk_buff *skb, __u32 ifindex)
{
	struct weir_fp_endpoint *target = bpf_map_lookup_elem(&fp_endpoints, &ifindex);
	struct weir_mac *mac = bpf_map_lookup_elem(&fp_macs, &ifindex);
	__u32 slot;

	if (!skb || !target || !mac)
		return WEIR_FP_NORMAL;

	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct weir_eth *eth = data;

	if ((void *)(eth + 1) > end)
		return WEIR_FP_NORMAL;
	if (fp_hop(skb, eth->proto == weir_htons(WEIR_ETH_P_IP)))
		return WEIR_FP_NORMAL;
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	if ((void *)(eth + 1) > end)
		return WEIR_FP_NORMAL;
	fp_mac_copy(eth->src, target->mac);
	fp_mac_copy(eth->dst, mac->addr);
	slot = target->slot;
	weir_count_slot(&if_counters, &slot, WEIR_HOOK_FASTPATH_IN, skb->len);
	return bpf_redirect_peer(ifindex, 0);
}

/*
 * From a workload to a destination that is not local: the FIB picks the host interface and
 * the next hop; the packet leaves through that interface's egress (its TC egress hook, and so a
 * host endpoint's egress policy, still runs). `slot` is the workload interface's if_counters
 * slot, where the redirect is counted.
 */
__attribute__((noinline)) int weir_fastpath_out(struct __sk_buff *skb, __u32 slot)
{
	struct bpf_fib_lookup fib = {};
	struct weir_fp_endpoint *egress;
	__u32 from;
	int ip4;

	if (!skb)
		return WEIR_FP_NORMAL;
	from = skb->ifindex;

	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct weir_eth *eth = data;

	if ((void *)(eth + 1) > end)
		return WEIR_FP_NORMAL;
	ip4 = eth->proto == weir_htons(WEIR_ETH_P_IP);
	fib.ifindex = from;
	if (ip4) {
		struct weir_ipv4 *ip = data + sizeof(*eth);

		if ((void *)(ip + 1) > end)
			return WEIR_FP_NORMAL;
		fib.family = WEIR_AF_INET;
		fib.l4_protocol = ip->protocol;
		fib.flowinfo = ip->tos;
		fib.src[0] = ip->saddr;
		fib.dst[0] = ip->daddr;
	} else {
		struct weir_ipv6 *ip = data + sizeof(*eth);
		__u32 flow;

		if ((void *)(ip + 1) > end)
			return WEIR_FP_NORMAL;
		fib.family = WEIR_AF_INET6;
		fib.l4_protocol = ip->nexthdr;
		__builtin_memcpy(&flow, ip, 4);
		fib.flowinfo = flow & weir_ntohl(0x0FFFFFFF); /* the swap is its own inverse */
		__builtin_memcpy(fib.src, ip->saddr, 16);
		__builtin_memcpy(fib.dst, ip->daddr, 16);
	}

	/* tot_len 0: the kernel checks the packet (GSO included) against the egress MTU. */
	long rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);

	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return WEIR_FP_NORMAL; /* local, unreachable, too big, forwarding off, ... */
	/* A workload weir has no route for (not configured) stays on the normal path. */
	egress = bpf_map_lookup_elem(&fp_endpoints, &fib.ifindex);
	if (egress && (egress->flags & WEIR_FP_WORKLOAD))
		return WEIR_FP_NORMAL;
	if (fp_hop(skb, ip4))
		return WEIR_FP_NORMAL;
	weir_count_slot(&if_counters, &slot, WEIR_HOOK_FASTPATH_OUT, skb->len);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return bpf_redirect_neigh(fib.ifindex, (void *)0, 0, 0);
	data = (void *)(long)skb->data;
	end = (void *)(long)skb->data_end;
	eth = data;
	if ((void *)(eth + 1) > end)
		return WEIR_FP_NORMAL;
	fp_mac_copy(eth->src, fib.smac);
	fp_mac_copy(eth->dst, fib.dmac);
	return bpf_redirect(fib.ifindex, 0);
}

#endif /* WEIR_FASTPATH_H */
