/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * weir_prefilter.h: the XDP prefilter (drop packets from denied source prefixes, except to
 * failsafe ports), shared by xdp.c and the upgrade test object.
 *
 * The including file defines the maps first: prefilter_v4, deny_v4_root,
 * deny_v4_nodes, prefilter_v6, prefilter_stats and failsafe_in, with their
 * WEIR_DEFINE_MAP_* macros.
 *
 * Cost model: every packet pays for Ethernet/VLAN/IP parsing up to the source address, one
 * deny-list lookup and one per-CPU counter. For IPv4 the lookup is at most five array reads
 * (the multibit table of maps-schema's deny_dir), so it costs the same with 10 entries or 1M;
 * IPv6 uses an LPM trie. Only a packet whose source IS denied pays for the rest (fragment check,
 * IPv6 extension header walk, L4 port, failsafe bitmap): the failsafe decision matters only for
 * packets that would otherwise be dropped.
 */
#ifndef WEIR_PREFILTER_H
#define WEIR_PREFILTER_H

#include "weir_bpf.h"
#include "weir_maps.h"
#include "weir_net.h"
#include "weir_failsafe.h"

#define WEIR_MAX_VLAN_TAGS 2
/* IPv6 extension headers walked to find L4. A longer chain is judged by address alone, so a
 * denied source cannot reach a failsafe port by padding the chain. */
#define WEIR_IPV6_MAX_EXT 8
/* Header offsets beyond this are not followed (UNPARSED). It keeps every variable packet
 * offset provably below the verifier's 64 KiB packet range; no real frame gets near it. */
#define WEIR_MAX_HDR_OFF 0xF000

/*
 * A denied source's packet with L4 protocol `proto` at packet offset `off`: passed if it goes
 * to a failsafe port, dropped otherwise (also when the protocol has no ports).
 */
static __always_inline __u32 weir_prefilter_l4(void *data, void *data_end, __u8 proto,
					       __u32 off)
{
	struct weir_l4_ports *ports;
	int base = weir_failsafe_base(proto);

	if (base < 0)
		return WEIR_PREFILTER_DROPPED; /* no port: no failsafe */
	if (off > WEIR_MAX_HDR_OFF)
		return WEIR_PREFILTER_UNPARSED;
	ports = data + off;
	if ((void *)(ports + 1) > data_end)
		return WEIR_PREFILTER_UNPARSED; /* truncated: the stack discards it */
	if (weir_failsafe_port(base, weir_ntohs(ports->dest)))
		return WEIR_PREFILTER_FAILSAFE;
	return WEIR_PREFILTER_DROPPED;
}

/*
 * The judgement of a packet whose source is denied, from its L3 header at packet offset `off`
 * on: WEIR_PREFILTER_DROPPED, _FAILSAFE or _UNPARSED. Global (not static) functions are
 * verified once, on their own, with `off` unknown, instead of once per VLAN path and per
 * extension-header length: that keeps the IPv6 walk cheap for the verifier. Only denied
 * packets pay for the call.
 */
__attribute__((noinline)) __u32 weir_prefilter_judge_v4(struct xdp_md *ctx, __u32 off)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct weir_ipv4 *ip;

	if (off > WEIR_MAX_HDR_OFF)
		return WEIR_PREFILTER_UNPARSED;
	ip = data + off;
	if ((void *)(ip + 1) > data_end)
		return WEIR_PREFILTER_UNPARSED;
	/* Only the first fragment carries the L4 header: the others are judged by address. */
	if (ip->frag_off & weir_htons(WEIR_IPV4_OFFSET_MASK))
		return WEIR_PREFILTER_DROPPED;
	return weir_prefilter_l4(data, data_end, ip->protocol, off + (ip->ver_ihl & 0xf) * 4);
}

__attribute__((noinline)) __u32 weir_prefilter_judge_v6(struct xdp_md *ctx, __u32 off)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct weir_ipv6 *ip6;
	__u8 nexthdr;

	if (off > WEIR_MAX_HDR_OFF)
		return WEIR_PREFILTER_UNPARSED;
	ip6 = data + off;
	if ((void *)(ip6 + 1) > data_end)
		return WEIR_PREFILTER_UNPARSED;
	/*
	 * Walk the extension headers to the L4 header. Whatever is not TCP, UDP or SCTP after the
	 * walk (ICMPv6, ESP, no-next-header, or a ninth extension header) has no port a failsafe
	 * could name, and weir_prefilter_l4() judges it by address alone.
	 */
	nexthdr = ip6->nexthdr;
	off += sizeof(*ip6);
#pragma unroll
	for (int i = 0; i < WEIR_IPV6_MAX_EXT; i++) {
		struct weir_ipv6_ext *ext;

		if (nexthdr != WEIR_IPPROTO_HOPOPTS && nexthdr != WEIR_IPPROTO_ROUTING &&
		    nexthdr != WEIR_IPPROTO_DSTOPTS && nexthdr != WEIR_IPPROTO_FRAGMENT &&
		    nexthdr != WEIR_IPPROTO_AH)
			break;
		if (off > WEIR_MAX_HDR_OFF)
			return WEIR_PREFILTER_UNPARSED;
		ext = data + off;
		if ((void *)(ext + 1) > data_end)
			return WEIR_PREFILTER_UNPARSED; /* runs past the end: the stack discards it */
		if (nexthdr == WEIR_IPPROTO_FRAGMENT) {
			if (ext->frag_off & weir_htons(WEIR_IPV6_FRAG_OFFSET_MASK))
				return WEIR_PREFILTER_DROPPED; /* non-first fragment */
			off += sizeof(*ext);
		} else if (nexthdr == WEIR_IPPROTO_AH) {
			off += ((__u32)ext->hdrlen + 2) * 4;
		} else {
			off += ((__u32)ext->hdrlen + 1) * 8;
		}
		nexthdr = ext->nexthdr;
	}
	/*
	 * Neighbour discovery is the IPv6 counterpart of ARP (which, not being IP, always passes):
	 * without it a denied host cannot resolve this one, and its failsafe connections (SSH in)
	 * fail as soon as the neighbour caches are cold. It is let through only with hop limit 255,
	 * which proves it comes from this link (RFC 4861), and counted as failsafe. Redirects (137)
	 * are not needed to reach a failsafe port and stay dropped.
	 */
	if (nexthdr == WEIR_IPPROTO_ICMPV6 && ip6->hop_limit == WEIR_ND_HOP_LIMIT) {
		__u8 *type;

		if (off > WEIR_MAX_HDR_OFF)
			return WEIR_PREFILTER_UNPARSED;
		type = data + off;
		if ((void *)(type + 1) > data_end)
			return WEIR_PREFILTER_UNPARSED;
		if (*type >= WEIR_ICMPV6_ROUTER_SOLICIT && *type <= WEIR_ICMPV6_NEIGH_ADVERT)
			return WEIR_PREFILTER_FAILSAFE;
	}
	return weir_prefilter_l4(data, data_end, nexthdr, off);
}

/*
 * The IPv4 deny entry covering `addr` (host byte order), or NULL. Walks the multibit table:
 * the root slot of the top 16 bits, then at most WEIR_DIR_LEVELS chunks of 4 bits each, until a
 * slot that is not a node. Array lookups are inlined by the verifier into plain loads, and the
 * depth is bounded, so the cost does not depend on how many entries the list has.
 */
static __always_inline struct weir_deny_v4 *weir_deny_lookup_v4(__u32 addr)
{
	__u32 index = addr >> WEIR_DIR_ROOT_BITS;
	__u32 *root = bpf_map_lookup_elem(&deny_v4_root, &index);
	__u32 slot;

	if (!root)
		return 0;
	slot = *root;
#pragma unroll
	for (int level = 0; level < WEIR_DIR_LEVELS; level++) {
		struct weir_dir_chunk *chunk;
		__u32 shift = 32 - WEIR_DIR_ROOT_BITS - (level + 1) * WEIR_DIR_CHUNK_BITS;

		if (!(slot & WEIR_DIR_NODE))
			break;
		index = slot & ~WEIR_DIR_NODE;
		chunk = bpf_map_lookup_elem(&deny_v4_nodes, &index);
		if (!chunk)
			return 0; /* a chunk number past the map: never written by weir */
		slot = chunk->slot[(addr >> shift) & ((1 << WEIR_DIR_CHUNK_BITS) - 1)];
	}
	if (slot == 0 || (slot & WEIR_DIR_NODE))
		return 0;
	index = slot - 1;
	return bpf_map_lookup_elem(&prefilter_v4, &index);
}

/* A denied source: judge, and count a drop against the entry that matched. */
static __always_inline __u32 weir_prefilter_denied(__u64 *hits, __u32 reason)
{
	if (reason == WEIR_PREFILTER_DROPPED)
		__sync_fetch_and_add(hits, 1); /* shared by all CPUs */
	return reason;
}

static __always_inline __u32 weir_prefilter_v4(struct xdp_md *ctx, void *data, void *data_end,
					       __u32 off)
{
	struct weir_ipv4 *ip = data + off;
	struct weir_deny_v4 *deny;

	if ((void *)(ip + 1) > data_end)
		return WEIR_PREFILTER_UNPARSED;
	if ((ip->ver_ihl >> 4) != 4 || (ip->ver_ihl & 0xf) < 5)
		return WEIR_PREFILTER_UNPARSED;
	deny = weir_deny_lookup_v4(weir_ntohl(ip->saddr));
	if (!deny)
		return WEIR_PREFILTER_PASSED;
	return weir_prefilter_denied(&deny->hits, weir_prefilter_judge_v4(ctx, off));
}

static __always_inline __u32 weir_prefilter_v6(struct xdp_md *ctx, void *data, void *data_end,
					       __u32 off)
{
	struct weir_ipv6 *ip6 = data + off;
	struct weir_lpm_v6 key = { .prefixlen = 128 };
	struct weir_deny_entry *deny;

	if ((void *)(ip6 + 1) > data_end)
		return WEIR_PREFILTER_UNPARSED;
	if ((ip6->ver_tc >> 4) != 6)
		return WEIR_PREFILTER_UNPARSED;
	__builtin_memcpy(key.addr, ip6->saddr, sizeof(key.addr));
	deny = bpf_map_lookup_elem(&prefilter_v6, &key);
	if (!deny)
		return WEIR_PREFILTER_PASSED;
	return weir_prefilter_denied(&deny->hits, weir_prefilter_judge_v6(ctx, off));
}

/* Why a frame gets its verdict: one of WEIR_PREFILTER_*. */
static __always_inline __u32 weir_prefilter_classify(struct xdp_md *ctx, void *data,
						     void *data_end)
{
	struct weir_eth *eth = data;
	__u32 off = sizeof(*eth);
	__be16 proto;

	if ((void *)(eth + 1) > data_end)
		return WEIR_PREFILTER_UNPARSED;
	proto = eth->proto;
#pragma unroll
	for (int i = 0; i < WEIR_MAX_VLAN_TAGS; i++) {
		struct weir_vlan *vlan;

		if (proto != weir_htons(WEIR_ETH_P_8021Q) && proto != weir_htons(WEIR_ETH_P_8021AD))
			break;
		vlan = data + off;
		if ((void *)(vlan + 1) > data_end)
			return WEIR_PREFILTER_UNPARSED;
		proto = vlan->proto;
		off += sizeof(*vlan);
	}
	if (proto == weir_htons(WEIR_ETH_P_IP))
		return weir_prefilter_v4(ctx, data, data_end, off);
	if (proto == weir_htons(WEIR_ETH_P_IPV6))
		return weir_prefilter_v6(ctx, data, data_end, off);
	if (proto == weir_htons(WEIR_ETH_P_8021Q) || proto == weir_htons(WEIR_ETH_P_8021AD))
		return WEIR_PREFILTER_UNPARSED; /* a third tag: deeper than weir looks */
	return WEIR_PREFILTER_PASSED; /* not IP (ARP, LLDP, ...): nothing to judge */
}

/*
 * The whole prefilter: classify, count (packets and `extra_bytes` more than the linear frame
 * length; the production program passes 0), and drop only what is DROPPED.
 */
static __always_inline int weir_prefilter(struct xdp_md *ctx, __u64 extra_bytes)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 reason = weir_prefilter_classify(ctx, data, data_end);
	struct weir_counter *c = bpf_map_lookup_elem(&prefilter_stats, &reason);

	/* Per-CPU value: only this CPU writes it, no atomics needed. */
	if (c) {
		c->packets += 1;
		c->bytes += (__u64)(data_end - data) + extra_bytes;
	}
	return reason == WEIR_PREFILTER_DROPPED ? XDP_DROP : XDP_PASS;
}

#endif /* WEIR_PREFILTER_H */
