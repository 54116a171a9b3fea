/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * The fast path, run at TC ingress once weir's own policy has allowed a packet (it never
 * bypasses policy):
 *
 * - a packet for a local workload (fp_routes_v4/v6) goes straight into the workload's network
 *   namespace with bpf_redirect_peer, once the workload's own ingress policy allows it
 *   (WEIR_FASTPATH_ALLOWED): the host's routing, netfilter and the veth's backlog hop are
 *   skipped;
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
 * The including program defines the maps (WEIR_DEFINE_MAP_FP_*, IF_COUNTERS) and may define
 * WEIR_FASTPATH_ALLOWED(skb, ifindex): nonzero when the ingress policy of the workload behind
 * `ifindex` allows the packet (default: allowed).
 */
#ifndef WEIR_FASTPATH_H
#define WEIR_FASTPATH_H

#include "weir_bpf.h"
#include "weir_redirect.h"
#include "weir_maps.h"
#include "weir_net.h"
#include "weir_count.h"

#ifndef WEIR_FASTPATH_ALLOWED
#define WEIR_FASTPATH_ALLOWED(skb, ifindex) 1
#endif

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

/*
 * Into the workload behind `ifindex` (its host-side interface). `l3` points at the IP header
 * (already bounds-checked by the caller); `ip4` says which family.
 */
static __always_inline int fp_to_workload(struct __sk_buff *skb, __u32 ifindex, int ip4)
{
	struct weir_fp_endpoint *target = bpf_map_lookup_elem(&fp_endpoints, &ifindex);
	struct weir_mac *mac;
	__u32 mtu = 0;

	if (!target || !(target->flags & WEIR_FP_ON) || !(target->flags & WEIR_FP_WORKLOAD))
		return WEIR_FP_NORMAL;
	mac = bpf_map_lookup_elem(&fp_macs, &ifindex);
	if (!mac)
		return WEIR_FP_NORMAL;
	if (bpf_check_mtu(skb, ifindex, &mtu, 0, 0) != BPF_MTU_CHK_RET_SUCCESS)
		return WEIR_FP_NORMAL;
	if (!(WEIR_FASTPATH_ALLOWED(skb, ifindex)))
		return WEIR_FP_NORMAL; /* the workload's own hook drops it, and reports it */

	/* Helpers above may not move packet data, but re-derive the pointers for the verifier. */
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct weir_eth *eth = data;

	if (ip4) {
		struct weir_ipv4 *ip = data + sizeof(*eth);

		if ((void *)(ip + 1) > end)
			return WEIR_FP_NORMAL;
		fp_ttl_dec4(ip);
	} else {
		struct weir_ipv6 *ip = data + sizeof(*eth);

		if ((void *)(ip + 1) > end)
			return WEIR_FP_NORMAL;
		ip->hop_limit--;
	}
	fp_mac_copy(eth->src, target->mac);
	fp_mac_copy(eth->dst, mac->addr);
	{
		struct weir_if_key key = { .ifindex = ifindex, .hook = WEIR_HOOK_FASTPATH_IN };

		weir_count_hash(&if_counters, &key, skb->len);
	}
	return bpf_redirect_peer(ifindex, 0);
}

/* From a workload to a destination that is not local: the FIB picks the host interface. */
static __always_inline int fp_out(struct __sk_buff *skb, struct bpf_fib_lookup *fib, int ip4)
{
	__u32 from = skb->ifindex;
	long rc = bpf_fib_lookup(skb, fib, sizeof(*fib), 0);
	struct weir_fp_endpoint *egress;

	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return WEIR_FP_NORMAL; /* local, unreachable, too big, forwarding off, ... */
	/* A workload weir has no route for (not configured) stays on the normal path. */
	egress = bpf_map_lookup_elem(&fp_endpoints, &fib->ifindex);
	if (egress && (egress->flags & WEIR_FP_WORKLOAD))
		return WEIR_FP_NORMAL;

	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct weir_eth *eth = data;

	if (ip4) {
		struct weir_ipv4 *ip = data + sizeof(*eth);

		if ((void *)(ip + 1) > end)
			return WEIR_FP_NORMAL;
		fp_ttl_dec4(ip);
	} else {
		struct weir_ipv6 *ip = data + sizeof(*eth);

		if ((void *)(ip + 1) > end)
			return WEIR_FP_NORMAL;
		ip->hop_limit--;
	}
	{
		struct weir_if_key key = { .ifindex = from, .hook = WEIR_HOOK_FASTPATH_OUT };

		weir_count_hash(&if_counters, &key, skb->len);
	}
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return bpf_redirect_neigh(fib->ifindex, (void *)0, 0, 0);
	fp_mac_copy(eth->src, fib->smac);
	fp_mac_copy(eth->dst, fib->dmac);
	return bpf_redirect(fib->ifindex, 0);
}

static __always_inline int fp_ipv4(struct __sk_buff *skb, const struct weir_fp_endpoint *self)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct weir_ipv4 *ip = data + sizeof(struct weir_eth);
	struct weir_lpm_v4 key = { .prefixlen = 32 };
	struct weir_fp_route *route;

	if ((void *)(ip + 1) > end)
		return WEIR_FP_NORMAL;
	if (ip->ttl <= 1)
		return WEIR_FP_NORMAL;
	__builtin_memcpy(key.addr, &ip->daddr, 4);
	route = bpf_map_lookup_elem(&fp_routes_v4, &key);
	if (route) {
		if (route->ifindex == skb->ifindex)
			return WEIR_FP_NORMAL; /* back where it came from: the stack's business */
		return fp_to_workload(skb, route->ifindex, 1);
	}
	if (!(self->flags & WEIR_FP_WORKLOAD))
		return WEIR_FP_NORMAL; /* transit between host interfaces is left to the host */

	struct bpf_fib_lookup fib = {
		.family = WEIR_AF_INET,
		.l4_protocol = ip->protocol,
		.flowinfo = ip->tos,
		.ifindex = skb->ifindex,
	};

	fib.src[0] = ip->saddr;
	fib.dst[0] = ip->daddr;
	return fp_out(skb, &fib, 1);
}

static __always_inline int fp_ipv6(struct __sk_buff *skb, const struct weir_fp_endpoint *self)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct weir_ipv6 *ip = data + sizeof(struct weir_eth);
	struct weir_lpm_v6 key = { .prefixlen = 128 };
	struct weir_fp_route *route;

	if ((void *)(ip + 1) > end)
		return WEIR_FP_NORMAL;
	if (ip->hop_limit <= 1)
		return WEIR_FP_NORMAL;
	/* Link-local and multicast destinations are never routed. */
	__u8 first = ((__u8 *)ip->daddr)[0];
	__u8 second = ((__u8 *)ip->daddr)[1];

	if (first == 0xff || (first == 0xfe && (second & 0xc0) == 0x80))
		return WEIR_FP_NORMAL;
	__builtin_memcpy(key.addr, ip->daddr, 16);
	route = bpf_map_lookup_elem(&fp_routes_v6, &key);
	if (route) {
		if (route->ifindex == skb->ifindex)
			return WEIR_FP_NORMAL;
		return fp_to_workload(skb, route->ifindex, 0);
	}
	if (!(self->flags & WEIR_FP_WORKLOAD))
		return WEIR_FP_NORMAL;

	struct bpf_fib_lookup fib = {
		.family = WEIR_AF_INET6,
		.l4_protocol = ip->nexthdr,
		.ifindex = skb->ifindex,
	};
	__u32 flow;

	__builtin_memcpy(&flow, ip, 4);
	fib.flowinfo = flow & weir_ntohl(0x0FFFFFFF); /* the swap is its own inverse */
	__builtin_memcpy(fib.src, ip->saddr, 16);
	__builtin_memcpy(fib.dst, ip->daddr, 16);
	return fp_out(skb, &fib, 0);
}

/*
 * The fast path for a packet weir's policy allowed at this TC ingress; TC_ACT_UNSPEC (the
 * normal path) whenever it does not apply.
 */
static __always_inline int weir_fastpath(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct weir_eth *eth = data;
	__u32 in = skb->ifindex;
	struct weir_fp_endpoint *self;

	if ((void *)(eth + 1) > end)
		return WEIR_FP_NORMAL;
	self = bpf_map_lookup_elem(&fp_endpoints, &in);
	if (!self || !(self->flags & WEIR_FP_ON))
		return WEIR_FP_NORMAL;
	if (self->flags & WEIR_FP_WORKLOAD)
		fp_learn(in, eth->src);
	/* Only what is sent to this interface's own MAC is for the host to route. */
	if (!fp_mac_eq(eth->dst, self->mac))
		return WEIR_FP_NORMAL;
	if (eth->proto == weir_htons(WEIR_ETH_P_IP))
		return fp_ipv4(skb, self);
	if (eth->proto == weir_htons(WEIR_ETH_P_IPV6))
		return fp_ipv6(skb, self);
	return WEIR_FP_NORMAL;
}

#endif /* WEIR_FASTPATH_H */
