/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * weir_policy.h: stateful network policy at TC (tc.c).
 *
 * Per packet on an interface that has an entry in pol_endpoints (for the active bank):
 *   1. parse IPv4/IPv6 (extension headers walked), TCP/UDP/SCTP ports, ICMP type/code and, for
 *      ICMP errors, the header of the packet the error is about;
 *   2. conntrack: the flow as the endpoint sees it (local/remote address and port) is looked up
 *      in pol_ct; a live entry means the packet skips policy (established), and an ICMP error
 *      about a live flow is related; expiry is checked here, on lookup;
 *   3. otherwise the flow is new: failsafe ports (host endpoints, inbound), neighbour discovery,
 *      then the endpoint's rule set: one table walk per dimension, a 4-word AND of the bitmaps,
 *      and find-first-set steps (one per `pass` taken) as loader/src/policy/verdict.rs does;
 *   4. an allowed new flow gets a conntrack entry; a denied packet is dropped (TC_ACT_SHOT).
 * Denied, logged and audited packets emit an event into pol_events, within a per-CPU budget.
 *
 * Nothing here loops over rules or CIDRs: the cost of a new flow is bounded by the table depth
 * (31 reads for IPv6, 7 for IPv4, 3 for ports) and the number of `pass` steps.
 *
 * The including file defines the maps first (WEIR_DEFINE_MAP_POL_*, WEIR_DEFINE_MAP_FAILSAFE_IN).
 * Assumes an Ethernet device (the L3 header at offset 14) and VLAN tags offloaded (skb->protocol
 * is the L3 protocol); anything else is handed on untouched.
 */
#ifndef WEIR_POLICY_H
#define WEIR_POLICY_H

#include "weir_bpf.h"
#include "weir_maps.h"
#include "weir_net.h"
#include "weir_count.h"
#include "weir_failsafe.h"

/* Counted on top of every packet's length (0; the upgrade test's "next version" sets 2). */
#ifndef WEIR_TC_EXTRA_BYTES
#define WEIR_TC_EXTRA_BYTES 0
#endif

#define WEIR_POL_L3_OFF 14
#define WEIR_POL_IPV6_MAX_EXT 8
/* Chunk levels below the 8-bit root: (128 - 8) / 4 for IPv6. */
#define WEIR_POL_MAX_LEVELS 30
/* find-first-set steps: one per pass (at most one per rule) plus the deciding one. */
#define WEIR_POL_MAX_STEPS (WEIR_POL_MAX_RULES + 1)
#define WEIR_NS 1000000000ULL

#define WEIR_TCP_FIN 0x01
#define WEIR_TCP_SYN 0x02
#define WEIR_TCP_RST 0x04
#define WEIR_TCP_ACK 0x10

/* What the parser found. Addresses are in network order, ports in host order. */
struct weir_pol_pkt {
	__u32 src[4];
	__u32 dst[4];
	__u32 inner_src[4];
	__u32 inner_dst[4];
	__u32 len;
	__u16 sport;
	__u16 dport;
	__u16 inner_sport;
	__u16 inner_dport;
	__u8 family; /* 4 or 6 */
	__u8 proto;
	__u8 has_ports;	/* TCP/UDP/SCTP header read (first fragment) */
	__u8 is_icmp;	/* ICMP/ICMPv6 header read */
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 tcp_flags;
	__u8 hop_limit;
	__u8 inner_ok; /* an ICMP error whose inner header was read */
	__u8 inner_proto;
	__u8 echo; /* 1: echo request, 2: echo reply (sport = dport = identifier) */
	__u8 pad;
};

/* One table walk: the key left-aligned in 4 host-order words. */
struct weir_pol_walk {
	__u32 key[4];
	__u32 table;
	__u32 levels;
};

/* One evaluation (verdict.rs's `run`). */
struct weir_pol_run {
	__u64 cand[4];	  /* in: matching rules that are not `log` */
	__u64 logm[4];	  /* in: matching `log` rules */
	__u64 skipped[4]; /* rules skipped by a pass */
	__u64 m[4];	  /* scratch for the caller: the matching rules */
	__u32 rs;	  /* rule set id */
	__s32 bit;	  /* out: deciding bit, or -1 for the default deny */
	__s32 log_bit;	  /* out: first logged bit, or -1 */
	__u32 allow;	  /* out: 1 allow, 0 deny */
};

/* A new flow's classification. */
struct weir_pol_query {
	__u32 remote[4]; /* host-order words, MSB first (IPv4 in word 0) */
	__u32 ruleset;
	__u16 sport;
	__u16 dport;
	__u8 family;
	__u8 proto;
	__u8 has_ports;
	__u8 is_icmp;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 allow;	  /* out: 1 when the packet goes through */
	__u8 audit;	  /* out: 1 when an audit policy would drop it */
	__u32 rule;	  /* out: deciding rule id, or WEIR_POL_NONE */
	__u32 policy;	  /* out: its policy id, or WEIR_POL_NONE */
	__u32 log_rule;	  /* out: first logged rule, or WEIR_POL_NONE */
	__u32 log_policy; /* out */
	__u32 audit_rule; /* out: the rule an audit policy would drop it by, or NONE */
	__u32 audit_policy;
};

/* ---- small helpers ---- */

static __always_inline void weir_pol_stat(__u32 index, __u64 bytes)
{
	struct weir_counter *c = bpf_map_lookup_elem(&pol_stats, &index);

	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
}

static __always_inline void weir_pol_count_rule(__u32 rule, __u64 bytes)
{
	struct weir_counter *c;

	if (rule == WEIR_POL_NONE)
		return;
	c = bpf_map_lookup_elem(&pol_rule_ctrs, &rule);
	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
}

/*
 * The bit helpers below are branch-free on purpose: the verifier follows every branch of every
 * step of weir_pol_run's loop, and a branchy find-first-set multiplies its paths.
 */

/* Set bits of a word (SWAR: BPF has no popcount instruction). */
static __always_inline __u64 weir_popcount64(__u64 v)
{
	v = v - ((v >> 1) & 0x5555555555555555ULL);
	v = (v & 0x3333333333333333ULL) + ((v >> 2) & 0x3333333333333333ULL);
	v = (v + (v >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
	return (v * 0x0101010101010101ULL) >> 56;
}

/* Index of the lowest set bit of a non-zero word (64 for 0). */
static __always_inline __u32 weir_ctz64(__u64 x)
{
	__u64 low = (x & -x) - 1;

	/* Opaque to clang: it would turn the whole into cttz, lowered with a .rodata table. */
	asm volatile("" : "+r"(low));
	return weir_popcount64(low);
}

/* The lowest set bit of a 256-bit map, or -1. */
static __always_inline __s32 weir_ffs256(const __u64 *w)
{
	if (w[0])
		return weir_ctz64(w[0]);
	if (w[1])
		return 64 + weir_ctz64(w[1]);
	if (w[2])
		return 128 + weir_ctz64(w[2]);
	if (w[3])
		return 192 + weir_ctz64(w[3]);
	return -1;
}

/* Word `i` (0..3) of the map of bits 0..n-1, for 0 <= n <= 256. */
static __always_inline __u64 weir_below(__u32 n, __u32 i)
{
	__u64 lt = (__u64)i - (n >> 6);	 /* negative when word i lies wholly below n */
	__u64 eq = (__u64)i ^ (n >> 6);	 /* 0 when bit n falls in word i */
	__u64 low = (1ULL << (n & 63)) - 1;

	/* Opaque to clang, which would turn the arithmetic back into branches. */
	asm volatile("" : "+r"(lt), "+r"(eq));
	lt >>= 63;
	eq = (eq - 1) >> 63;
	return -lt | (-eq & low);
}

/* ---- parsing ---- */

static __always_inline void weir_pol_icmp(struct __sk_buff *skb, struct weir_pol_pkt *p, __u32 off)
{
	__u8 h[8];

	if (bpf_skb_load_bytes(skb, off, h, sizeof(h)))
		return;
	p->is_icmp = 1;
	p->icmp_type = h[0];
	p->icmp_code = h[1];
	if ((p->family == 4 && h[0] == 8) || (p->family == 6 && h[0] == 128))
		p->echo = 1;
	else if ((p->family == 4 && h[0] == 0) || (p->family == 6 && h[0] == 129))
		p->echo = 2;
	if (p->echo) {
		p->sport = ((__u16)h[4] << 8) | h[5];
		p->dport = p->sport;
	}
}

/* The inner packet's ports (or echo identifier) at `off`. */
static __always_inline void weir_pol_inner_l4(struct __sk_buff *skb, struct weir_pol_pkt *p,
					      __u32 off)
{
	__u8 h[8];

	if (p->inner_proto == WEIR_IPPROTO_TCP || p->inner_proto == WEIR_IPPROTO_UDP ||
	    p->inner_proto == WEIR_IPPROTO_SCTP) {
		if (bpf_skb_load_bytes(skb, off, h, 4))
			return;
		p->inner_sport = ((__u16)h[0] << 8) | h[1];
		p->inner_dport = ((__u16)h[2] << 8) | h[3];
		p->inner_ok = 1;
	} else if (p->inner_proto == WEIR_IPPROTO_ICMP || p->inner_proto == WEIR_IPPROTO_ICMPV6) {
		if (bpf_skb_load_bytes(skb, off, h, 8))
			return;
		/* Only errors about echo requests relate to a tracked flow. */
		if (h[0] != 8 && h[0] != 128)
			return;
		p->inner_sport = ((__u16)h[4] << 8) | h[5];
		p->inner_dport = p->inner_sport;
		p->inner_ok = 1;
	} else {
		p->inner_ok = 1;
	}
}

static __always_inline int weir_icmp_is_error(__u8 family, __u8 type)
{
	if (family == 4)
		return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
	return type >= 1 && type <= 4;
}

/*
 * Copies `len` (a constant) bytes at packet offset `off` to `to` (4-byte aligned): straight from
 * the linear data when they lie there (the common case, and no helper call), else with
 * bpf_skb_load_bytes (paged data). 0, or -1 past the end of the packet.
 *
 * The linear copy is done in words: clang copies from a pointer it knows nothing about byte by
 * byte (four loads, shifts and ors per word), but packet data needs no alignment here (the
 * verifier checks packet alignment only where the CPU has no efficient unaligned access, and
 * the fast path's reads rely on that too).
 */
static __always_inline int weir_pol_load(struct __sk_buff *skb, __u32 off, void *to, __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;

	/* Bounded, so that the verifier can follow the packet pointer's offset. */
	if (off <= 0x3ff) {
		void *at = data + off;

		if (at + len <= end) {
			__builtin_memcpy(to, (const __u32 *)at, len);
			return 0;
		}
	}
	return bpf_skb_load_bytes(skb, off, to, len) ? -1 : 0;
}

/*
 * Fills `p` from the packet; 0 when it is IPv4 or IPv6 with a readable header. A global
 * function: verified once, on its own.
 */
__attribute__((noinline)) int weir_pol_parse(struct __sk_buff *skb, struct weir_pol_pkt *p)
{
	__u32 off = WEIR_POL_L3_OFF;
	__u8 proto;

	if (!skb || !p)
		return -1;
	p->len = skb->len;
	if (skb->protocol == weir_htons(WEIR_ETH_P_IP)) {
		struct weir_ipv4 ip;

		if (weir_pol_load(skb, off, &ip, sizeof(ip)))
			return -1;
		if ((ip.ver_ihl >> 4) != 4 || (ip.ver_ihl & 0xf) < 5)
			return -1;
		p->family = 4;
		p->proto = ip.protocol;
		p->src[0] = ip.saddr;
		p->dst[0] = ip.daddr;
		p->hop_limit = ip.ttl;
		/* Only the first fragment carries the L4 header. */
		if (ip.frag_off & weir_htons(WEIR_IPV4_OFFSET_MASK))
			return 0;
		off += (ip.ver_ihl & 0xf) * 4;
		proto = ip.protocol;
	} else if (skb->protocol == weir_htons(WEIR_ETH_P_IPV6)) {
		struct weir_ipv6 ip6;

		if (weir_pol_load(skb, off, &ip6, sizeof(ip6)))
			return -1;
		if ((ip6.ver_tc >> 4) != 6)
			return -1;
		p->family = 6;
		__builtin_memcpy(p->src, ip6.saddr, 16);
		__builtin_memcpy(p->dst, ip6.daddr, 16);
		p->hop_limit = ip6.hop_limit;
		proto = ip6.nexthdr;
		off += sizeof(ip6);
		for (int i = 0; i < WEIR_POL_IPV6_MAX_EXT; i++) {
			struct weir_ipv6_ext ext;

			if (proto != WEIR_IPPROTO_HOPOPTS && proto != WEIR_IPPROTO_ROUTING &&
			    proto != WEIR_IPPROTO_DSTOPTS && proto != WEIR_IPPROTO_FRAGMENT &&
			    proto != WEIR_IPPROTO_AH)
				break;
			if (bpf_skb_load_bytes(skb, off, &ext, sizeof(ext)))
				return -1;
			if (proto == WEIR_IPPROTO_FRAGMENT) {
				if (ext.frag_off & weir_htons(WEIR_IPV6_FRAG_OFFSET_MASK)) {
					p->proto = ext.nexthdr;
					return 0; /* non-first fragment: no L4 header */
				}
				off += sizeof(ext);
			} else if (proto == WEIR_IPPROTO_AH) {
				off += ((__u32)ext.hdrlen + 2) * 4;
			} else {
				off += ((__u32)ext.hdrlen + 1) * 8;
			}
			proto = ext.nexthdr;
		}
		p->proto = proto;
	} else {
		return -1;
	}

	if (proto == WEIR_IPPROTO_TCP) {
		__u8 h[14] __attribute__((aligned(4)));

		if (weir_pol_load(skb, off, h, sizeof(h)))
			return 0;
		p->sport = ((__u16)h[0] << 8) | h[1];
		p->dport = ((__u16)h[2] << 8) | h[3];
		p->tcp_flags = h[13];
		p->has_ports = 1;
	} else if (proto == WEIR_IPPROTO_UDP || proto == WEIR_IPPROTO_SCTP) {
		__u8 h[4] __attribute__((aligned(4)));

		if (weir_pol_load(skb, off, h, sizeof(h)))
			return 0;
		p->sport = ((__u16)h[0] << 8) | h[1];
		p->dport = ((__u16)h[2] << 8) | h[3];
		p->has_ports = 1;
	} else if ((p->family == 4 && proto == WEIR_IPPROTO_ICMP) ||
		   (p->family == 6 && proto == WEIR_IPPROTO_ICMPV6)) {
		weir_pol_icmp(skb, p, off);
		if (!p->is_icmp || !weir_icmp_is_error(p->family, p->icmp_type))
			return 0;
		off += 8;
		if (p->family == 4) {
			struct weir_ipv4 in;

			if (bpf_skb_load_bytes(skb, off, &in, sizeof(in)))
				return 0;
			if ((in.ver_ihl >> 4) != 4 || (in.ver_ihl & 0xf) < 5)
				return 0;
			p->inner_src[0] = in.saddr;
			p->inner_dst[0] = in.daddr;
			p->inner_proto = in.protocol;
			weir_pol_inner_l4(skb, p, off + (in.ver_ihl & 0xf) * 4);
		} else {
			struct weir_ipv6 in6;

			if (bpf_skb_load_bytes(skb, off, &in6, sizeof(in6)))
				return 0;
			__builtin_memcpy(p->inner_src, in6.saddr, 16);
			__builtin_memcpy(p->inner_dst, in6.daddr, 16);
			p->inner_proto = in6.nexthdr;
			weir_pol_inner_l4(skb, p, off + sizeof(in6));
		}
	}
	return 0;
}

/* ---- the classifier ---- */

/*
 * Walks one multibit table: the root slot of the key's first byte, then one 4-bit chunk level
 * at a time until a slot that is not a node (at most `levels`). Returns the leaf (bitmap id + 1)
 * or 0.
 */
__attribute__((noinline)) int weir_pol_walk(struct weir_pol_walk *w)
{
	__u32 index, slot, *root;

	if (!w)
		return 0;
	index = w->table * (1U << WEIR_POL_ROOT_BITS) + (w->key[0] >> 24);
	root = bpf_map_lookup_elem(&pol_root, &index);
	if (!root)
		return 0;
	slot = *root;
	for (__u32 level = 0; level < WEIR_POL_MAX_LEVELS; level++) {
		struct weir_dir_chunk *chunk;
		__u32 pos, word, nibble;

		if (level >= w->levels || !(slot & WEIR_POL_NODE))
			break;
		index = slot & ~WEIR_POL_NODE;
		chunk = bpf_map_lookup_elem(&pol_nodes, &index);
		if (!chunk)
			return 0;
		pos = WEIR_POL_ROOT_BITS + level * WEIR_POL_CHUNK_BITS;
		word = w->key[(pos >> 5) & 3];
		nibble = (word >> ((28 - (pos & 31)) & 31)) & 0xf;
		slot = chunk->slot[nibble];
	}
	if (slot & WEIR_POL_NODE)
		return 0;
	return slot;
}

/* ANDs the bitmap a walk ended on into `m` (a missing one empties it). */
static __always_inline void weir_pol_and(__u64 *m, __u32 leaf)
{
	struct weir_pol_bitmap *b;
	__u32 id;

	if (!leaf) {
		m[0] = m[1] = m[2] = m[3] = 0;
		return;
	}
	id = leaf - 1;
	b = bpf_map_lookup_elem(&pol_bitmaps, &id);
	if (!b) {
		m[0] = m[1] = m[2] = m[3] = 0;
		return;
	}
	m[0] &= b->w[0];
	m[1] &= b->w[1];
	m[2] &= b->w[2];
	m[3] &= b->w[3];
}

static __always_inline int weir_pol_and_id(__u64 *m, __u32 id)
{
	struct weir_pol_bitmap *b = bpf_map_lookup_elem(&pol_bitmaps, &id);

	if (!b)
		return -1;
	m[0] &= b->w[0];
	m[1] &= b->w[1];
	m[2] &= b->w[2];
	m[3] &= b->w[3];
	return 0;
}

/*
 * First match wins among `cand`: an allow or deny decides; a pass clears the rest of its policy
 * and looks again. Then the `log` rules before the decision that no pass skipped.
 */
__attribute__((noinline)) int weir_pol_run(struct weir_pol_run *r)
{
	if (!r)
		return 0;
	r->bit = -1;
	r->allow = 0;
	r->skipped[0] = r->skipped[1] = r->skipped[2] = r->skipped[3] = 0;
	for (__u32 step = 0; step < WEIR_POL_MAX_STEPS; step++) {
		struct weir_pol_rule *rule;
		__s32 bit = weir_ffs256(r->cand);
		__u32 index;
		__s64 last;

		if (bit < 0)
			break;
		index = r->rs * WEIR_POL_MAX_RULES + (__u32)bit;
		rule = bpf_map_lookup_elem(&pol_rules, &index);
		if (!rule)
			break; /* never written: treat as the default deny */
		if (rule->action == WEIR_POL_ACT_ALLOW || rule->action == WEIR_POL_ACT_DENY) {
			r->bit = bit;
			r->allow = rule->action == WEIR_POL_ACT_ALLOW;
			break;
		}
		if (rule->action == WEIR_POL_ACT_PASS) {
			last = (__s64)rule->policy_last + 1;
			if (last <= bit)
				last = bit + 1;
		} else {
			last = bit + 1;
		}
		for (__u32 i = 0; i < 4; i++) {
			__u64 upto = weir_below(last, i);

			r->skipped[i] |= upto & ~weir_below(bit + 1, i);
			r->cand[i] &= ~upto;
		}
	}
	for (__u32 i = 0; i < 4; i++)
		r->logm[i] &= ~r->skipped[i] & (r->bit < 0 ? ~0ULL : weir_below(r->bit & 0xff, i));
	r->log_bit = weir_ffs256(r->logm);
	return 0;
}

static __always_inline void weir_pol_rule_ids(__u32 rs, __s32 bit, __u32 *rule, __u32 *policy)
{
	struct weir_pol_rule *r;
	__u32 index;

	*rule = WEIR_POL_NONE;
	*policy = WEIR_POL_NONE;
	if (bit < 0)
		return;
	index = rs * WEIR_POL_MAX_RULES + (__u32)bit;
	r = bpf_map_lookup_elem(&pol_rules, &index);
	if (r) {
		*rule = r->rule_id;
		*policy = r->policy_id;
	}
}

/* Classifies a new flow against rule set q->ruleset. */
__attribute__((noinline)) int weir_pol_classify(struct weir_pol_query *q)
{
	struct weir_pol_walk w = {};
	struct weir_pol_run run = {}; /* also holds the matching rules: the stack is tight */
	struct weir_pol_ruleset *rs;
	struct weir_pol_bitmap *bm;
	__u64 *m = run.m;
	__u32 id;

	if (!q)
		return 0;
	q->allow = 1;
	q->audit = 0;
	q->rule = q->policy = WEIR_POL_NONE;
	q->log_rule = q->log_policy = WEIR_POL_NONE;
	q->audit_rule = q->audit_policy = WEIR_POL_NONE;
	id = q->ruleset;
	rs = bpf_map_lookup_elem(&pol_rulesets, &id);
	if (!rs)
		return 0;
	m[0] = m[1] = m[2] = m[3] = ~0ULL;

	w.table = rs->table + WEIR_POL_T_PROTO;
	w.key[0] = (__u32)q->proto << 24;
	w.levels = 0;
	weir_pol_and(m, weir_pol_walk(&w));

	w.key[0] = q->remote[0];
	w.key[1] = q->remote[1];
	w.key[2] = q->remote[2];
	w.key[3] = q->remote[3];
	if (q->family == 4) {
		w.table = rs->table + WEIR_POL_T_V4;
		w.levels = (32 - WEIR_POL_ROOT_BITS) / WEIR_POL_CHUNK_BITS;
	} else {
		w.table = rs->table + WEIR_POL_T_V6;
		w.levels = (128 - WEIR_POL_ROOT_BITS) / WEIR_POL_CHUNK_BITS;
	}
	weir_pol_and(m, weir_pol_walk(&w));

	w.key[1] = w.key[2] = w.key[3] = 0;
	w.levels = (16 - WEIR_POL_ROOT_BITS) / WEIR_POL_CHUNK_BITS;
	if (q->has_ports) {
		w.table = rs->table + WEIR_POL_T_SPORT;
		w.key[0] = (__u32)q->sport << 16;
		weir_pol_and(m, weir_pol_walk(&w));
		w.table = rs->table + WEIR_POL_T_DPORT;
		w.key[0] = (__u32)q->dport << 16;
		weir_pol_and(m, weir_pol_walk(&w));
	} else if (weir_pol_and_id(m, rs->no_ports_bm)) {
		m[0] = m[1] = m[2] = m[3] = 0;
	}
	if (q->is_icmp) {
		w.table = rs->table + WEIR_POL_T_ICMP;
		w.key[0] = ((__u32)q->icmp_type << 24) | ((__u32)q->icmp_code << 16);
		weir_pol_and(m, weir_pol_walk(&w));
	} else if (weir_pol_and_id(m, rs->no_icmp_bm)) {
		m[0] = m[1] = m[2] = m[3] = 0;
	}

	/* m: the matching rules; the evaluations split off the log and audit rules. */
	id = rs->log_bm;
	bm = bpf_map_lookup_elem(&pol_bitmaps, &id);
	if (!bm)
		return 0;
	for (__u32 i = 0; i < 4; i++)
		run.logm[i] = m[i] & bm->w[i];
	id = rs->audit_bm;
	bm = bpf_map_lookup_elem(&pol_bitmaps, &id);
	if (!bm)
		return 0;
	if (rs->flags & WEIR_POL_RS_ENFORCED) {
		for (__u32 i = 0; i < 4; i++) {
			run.cand[i] = m[i] & ~run.logm[i] & ~bm->w[i];
			run.logm[i] &= ~bm->w[i];
		}
		run.rs = q->ruleset;
		weir_pol_run(&run);
		q->allow = run.allow;
		weir_pol_rule_ids(q->ruleset, run.bit, &q->rule, &q->policy);
		weir_pol_rule_ids(q->ruleset, run.log_bit, &q->log_rule, &q->log_policy);
	}
	if (rs->flags & WEIR_POL_RS_AUDITED) {
		struct weir_pol_bitmap *log;

		id = rs->log_bm;
		log = bpf_map_lookup_elem(&pol_bitmaps, &id);
		if (!log)
			return 0;
		for (__u32 i = 0; i < 4; i++) {
			run.cand[i] = m[i] & ~log->w[i];
			run.logm[i] = m[i] & log->w[i] & bm->w[i];
		}
		run.rs = q->ruleset;
		weir_pol_run(&run);
		if (q->log_rule == WEIR_POL_NONE)
			weir_pol_rule_ids(q->ruleset, run.log_bit, &q->log_rule, &q->log_policy);
		if (q->allow && !run.allow) {
			q->audit = 1;
			weir_pol_rule_ids(q->ruleset, run.bit, &q->audit_rule, &q->audit_policy);
		}
	}
	return 0;
}

/* ---- events ---- */

/*
 * Not inlined: its 64-byte record would otherwise sit in weir_policy's frame for the whole
 * classifier call chain (512 bytes of stack in all). `how` is direction << 8 | verdict.
 */
static __attribute__((noinline)) void weir_pol_event(const struct weir_pol_pkt *p,
						     __u32 ifindex, __u32 how, __u32 rule,
						     __u32 policy)
{
	struct weir_pol_event ev = {};
	struct weir_pol_rate *rate;
	__u32 zero = 0;
	__u64 now = bpf_ktime_get_ns(), credit;
	const __u64 cost = WEIR_POL_EVENT_COST_NS;

	rate = bpf_map_lookup_elem(&pol_ev_rate, &zero);
	if (!rate)
		return;
	credit = rate->credit_ns + (now - rate->last_ns);
	if (credit > cost * WEIR_POL_EVENT_BURST)
		credit = cost * WEIR_POL_EVENT_BURST;
	rate->last_ns = now;
	if (credit < cost) {
		rate->credit_ns = credit;
		weir_pol_stat(WEIR_POL_STAT_EVENTS_LOST, 0);
		return;
	}
	rate->credit_ns = credit - cost;
	ev.ts_ns = now;
	ev.ifindex = ifindex;
	ev.rule = rule;
	ev.policy = policy;
	ev.len = p->len;
	__builtin_memcpy(ev.src, p->src, 16);
	__builtin_memcpy(ev.dst, p->dst, 16);
	if (p->is_icmp && !p->echo) {
		ev.sport = p->icmp_type;
		ev.dport = p->icmp_code;
	} else {
		ev.sport = p->sport;
		ev.dport = p->dport;
	}
	ev.family = p->family;
	ev.proto = p->proto;
	ev.direction = how >> 8;
	ev.verdict = how & 0xff;
	if (bpf_ringbuf_output(&pol_events, &ev, sizeof(ev), 0))
		weir_pol_stat(WEIR_POL_STAT_EVENTS_LOST, 0);
	else
		weir_pol_stat(WEIR_POL_STAT_EVENTS, 0);
}

/* ---- conntrack ---- */

/* The flow as the endpoint sees it: the same key for both directions. */
static __always_inline void weir_ct_key(struct weir_ct_key *k, __u32 ifindex, __u32 direction,
					__u8 family, __u8 proto, const __u32 *src,
					const __u32 *dst, __u16 sport, __u16 dport, __u8 echo)
{
	k->ifindex = ifindex;
	k->family = family;
	k->proto = proto;
	if (direction == WEIR_POL_DIR_INGRESS) {
		__builtin_memcpy(k->local, dst, 16);
		__builtin_memcpy(k->remote, src, 16);
		k->lport = dport;
		k->rport = sport;
	} else {
		__builtin_memcpy(k->local, src, 16);
		__builtin_memcpy(k->remote, dst, 16);
		k->lport = sport;
		k->rport = dport;
	}
	if (echo) {
		k->lport = sport; /* the identifier */
		k->rport = 0;
	}
}

static __always_inline __u64 weir_ct_timeout(__u8 state)
{
	switch (state) {
	case WEIR_CT_TCP_SYN:
		return WEIR_CT_TIMEOUT_SYN * WEIR_NS;
	case WEIR_CT_TCP_EST:
		return WEIR_CT_TIMEOUT_EST * WEIR_NS;
	case WEIR_CT_TCP_FIN:
		return WEIR_CT_TIMEOUT_FIN * WEIR_NS;
	case WEIR_CT_TCP_CLOSED:
		return WEIR_CT_TIMEOUT_CLOSED * WEIR_NS;
	case WEIR_CT_REPLIED:
		return WEIR_CT_TIMEOUT_REPLIED * WEIR_NS;
	default:
		return WEIR_CT_TIMEOUT_OPEN * WEIR_NS;
	}
}

/* Whether a tracked flow has not timed out at `now`. */
static __always_inline int weir_ct_live(const struct weir_ct *ct, __u64 now)
{
	__s64 age = (__s64)(now - ct->last_ns);

	return age <= 0 || (__u64)age <= weir_ct_timeout(ct->state);
}

/* A packet of a tracked flow: advance the state. */
static __always_inline void weir_ct_update(struct weir_ct *ct, const struct weir_pol_pkt *p,
					   __u32 direction, __u64 now)
{
	int from_opener = !!(ct->flags & WEIR_CT_F_OPENED_EGRESS) ==
			  (direction == WEIR_POL_DIR_EGRESS);

	/* The coarse clock moves once a tick: most packets leave the shared line clean. */
	if (ct->last_ns != now)
		ct->last_ns = now;
	if (p->proto == WEIR_IPPROTO_TCP && p->has_ports) {
		if (p->tcp_flags & WEIR_TCP_RST) {
			ct->state = WEIR_CT_TCP_CLOSED;
			return;
		}
		if (ct->state == WEIR_CT_TCP_SYN && !from_opener)
			ct->state = WEIR_CT_TCP_EST;
		if (p->tcp_flags & WEIR_TCP_FIN) {
			ct->flags |= direction == WEIR_POL_DIR_EGRESS ? WEIR_CT_F_FIN_LOCAL
								      : WEIR_CT_F_FIN_REMOTE;
			if ((ct->flags & (WEIR_CT_F_FIN_LOCAL | WEIR_CT_F_FIN_REMOTE)) ==
			    (WEIR_CT_F_FIN_LOCAL | WEIR_CT_F_FIN_REMOTE))
				ct->state = WEIR_CT_TCP_FIN;
		}
		return;
	}
	if (ct->state == WEIR_CT_OPEN && !from_opener)
		ct->state = WEIR_CT_REPLIED;
}

/* ---- the whole policy step ---- */

/*
 * IPv6 link-local control that no policy judges: neighbour discovery (types 133-136, hop limit
 * 255) and multicast listener discovery (MLD queries and reports 130-132, MLDv2 reports 143,
 * hop limit 1). Without them a link stops working, and MLD's periodic reports would fill the
 * event stream with denies.
 */
static __always_inline int weir_is_nd(const struct weir_pol_pkt *p)
{
	if (p->family != 6 || !p->is_icmp)
		return 0;
	if (p->hop_limit == WEIR_ND_HOP_LIMIT)
		return p->icmp_type >= WEIR_ICMPV6_ROUTER_SOLICIT &&
		       p->icmp_type <= WEIR_ICMPV6_NEIGH_ADVERT;
	return p->hop_limit == 1 && ((p->icmp_type >= WEIR_ICMPV6_MLD_QUERY &&
				      p->icmp_type <= WEIR_ICMPV6_MLD_DONE) ||
				     p->icmp_type == WEIR_ICMPV6_MLD2_REPORT);
}

static __always_inline int weir_failsafe(const struct weir_pol_pkt *p)
{
	int base = weir_failsafe_base(p->proto);

	return p->has_ports && base >= 0 && weir_failsafe_port(base, p->dport);
}

static __always_inline void weir_host_words(__u32 *out, const __u32 *net, __u8 family)
{
	out[0] = weir_ntohl(net[0]);
	if (family == 6) {
		out[1] = weir_ntohl(net[1]);
		out[2] = weir_ntohl(net[2]);
		out[3] = weir_ntohl(net[3]);
	}
}

/*
 * The whole TC step for one packet at `hook` of interface `ifindex`: count it (when `count`),
 * then the policy verdict: TC_ACT_SHOT to drop, TC_ACT_UNSPEC to hand it on (allowed, or
 * nothing for weir to judge). `ifindex` is the packet's own interface, except for the fast
 * path, which asks the verdict of the hook a redirected packet skips (a workload's ingress, its
 * veth's TC egress). Called straight from the programs, so their own frames stay empty: the
 * classifier's call chain needs most of the 512 bytes of stack.
 */
__attribute__((noinline)) int weir_policy_at(struct __sk_buff *skb, __u32 ifindex, __u32 hook,
					     __u32 count)
{
	struct weir_pol_ep_key ek = {};
	struct weir_pol_pkt p = {};
	struct weir_ct_key ck = {};
	struct weir_pol_ep *ep;
	struct weir_ct *ct;
	__u32 direction, *bank;
	__u64 now;

	if (!skb)
		return TC_ACT_UNSPEC;
	/* ek is zeroed: its bank, 0, keys pol_active's one slot (the stack is tight). */
	bank = bpf_map_lookup_elem(&pol_active, &ek.bank);
	if (!bank)
		return TC_ACT_UNSPEC;
	ek.bank = *bank;
	ek.ifindex = ifindex;
	ek.hook = hook;
	ep = bpf_map_lookup_elem(&pol_endpoints, &ek);
	/*
	 * Every packet is counted per interface and hook (weir_count.h), policy or not, at the
	 * slot its endpoint entry carries, or else its fast path entry: one lookup fewer for an
	 * endpoint. ek has served: its first word keys the count (the stack is tight).
	 */
	if (count) {
		if (ep) {
			ek.bank = ep->slot;
		} else {
			struct weir_fp_endpoint *self = bpf_map_lookup_elem(&fp_endpoints, &ek.ifindex);

			ek.bank = self ? self->slot : WEIR_IF_SLOT_NONE;
		}
		weir_count_slot(&if_counters, &ek.bank, hook, skb->len + WEIR_TC_EXTRA_BYTES);
	}
	if (!ep)
		return TC_ACT_UNSPEC; /* no policy on this interface */
	if (weir_pol_parse(skb, &p))
		return TC_ACT_UNSPEC; /* not IP: ARP and the like */
	direction = ep->direction;
	/*
	 * Conntrack's clock: timeouts are seconds, so the coarse clock (one tick) is enough and
	 * cheaper. Entries written with the fine clock (an older version) can be up to a tick
	 * ahead of it: weir_ct_live takes a negative age as 0.
	 */
	now = bpf_ktime_get_coarse_ns();

	/* Established: a live entry for this flow. */
	if (!p.is_icmp || p.echo) {
		weir_ct_key(&ck, ifindex, direction, p.family, p.proto, p.src, p.dst, p.sport,
			    p.dport, p.echo);
		ct = bpf_map_lookup_elem(&pol_ct, &ck);
		if (ct) {
			int reopen = p.proto == WEIR_IPPROTO_TCP &&
				     (p.tcp_flags & (WEIR_TCP_SYN | WEIR_TCP_ACK)) == WEIR_TCP_SYN &&
				     (ct->state == WEIR_CT_TCP_FIN || ct->state == WEIR_CT_TCP_CLOSED);

			if (!reopen && weir_ct_live(ct, now)) {
				weir_ct_update(ct, &p, direction, now);
				weir_pol_count_rule(ct->rule, p.len);
				weir_pol_stat(WEIR_POL_STAT_ESTABLISHED, p.len);
				return TC_ACT_UNSPEC;
			}
			bpf_map_delete_elem(&pol_ct, &ck); /* expired, or a new connection */
		}
	} else if (p.inner_ok) {
		/* Related: an error about a tracked flow (the inner packet went the other way). */
		__u8 inner_echo = p.inner_proto == WEIR_IPPROTO_ICMP ||
				  p.inner_proto == WEIR_IPPROTO_ICMPV6;

		weir_ct_key(&ck, ifindex,
			    direction == WEIR_POL_DIR_INGRESS ? WEIR_POL_DIR_EGRESS
							      : WEIR_POL_DIR_INGRESS,
			    p.family, p.inner_proto, p.inner_src, p.inner_dst, p.inner_sport,
			    p.inner_dport, inner_echo);
		ct = bpf_map_lookup_elem(&pol_ct, &ck);
		if (ct && weir_ct_live(ct, now)) {
			weir_pol_count_rule(ct->rule, p.len);
			weir_pol_stat(WEIR_POL_STAT_RELATED, p.len);
			return TC_ACT_UNSPEC;
		}
	}

	/* A new flow. */
	__u32 rule = WEIR_POL_NONE;

	if ((ep->flags & WEIR_POL_EP_HOST) && direction == WEIR_POL_DIR_INGRESS &&
	    weir_failsafe(&p)) {
		weir_pol_stat(WEIR_POL_STAT_FAILSAFE, p.len);
	} else if (weir_is_nd(&p)) {
		weir_pol_stat(WEIR_POL_STAT_UNTRACKED, p.len);
		return TC_ACT_UNSPEC;
	} else if (ep->ruleset != WEIR_POL_NO_RULESET) {
		struct weir_pol_query q = {};

		q.ruleset = ep->ruleset;
		q.family = p.family;
		q.proto = p.proto;
		q.has_ports = p.has_ports;
		q.is_icmp = p.is_icmp;
		q.sport = p.sport;
		q.dport = p.dport;
		q.icmp_type = p.icmp_type;
		q.icmp_code = p.icmp_code;
		weir_host_words(q.remote, direction == WEIR_POL_DIR_INGRESS ? p.src : p.dst,
				p.family);
		weir_pol_classify(&q);
		if (q.log_rule != WEIR_POL_NONE) {
			weir_pol_count_rule(q.log_rule, p.len);
			weir_pol_event(&p, ifindex, direction << 8 | WEIR_POL_EV_LOG, q.log_rule,
				       q.log_policy);
		}
		if (q.audit) {
			__u32 pid = q.audit_policy;
			struct weir_pol_counts *pc = bpf_map_lookup_elem(&pol_pol_ctrs, &pid);

			if (pc)
				pc->audited += 1;
			weir_pol_stat(WEIR_POL_STAT_AUDIT, p.len);
			weir_pol_event(&p, ifindex, direction << 8 | WEIR_POL_EV_AUDIT,
				       q.audit_rule, q.audit_policy);
		}
		if (!q.allow) {
			if (q.rule == WEIR_POL_NONE) {
				weir_pol_stat(WEIR_POL_STAT_DEFAULT_DENIED, p.len);
			} else {
				__u32 pid = q.policy;
				struct weir_pol_counts *pc =
					bpf_map_lookup_elem(&pol_pol_ctrs, &pid);

				if (pc)
					pc->denied += 1;
				weir_pol_stat(WEIR_POL_STAT_DENIED, p.len);
				weir_pol_count_rule(q.rule, p.len);
			}
			weir_pol_event(&p, ifindex, direction << 8 | WEIR_POL_EV_DENY, q.rule,
				       q.policy);
			return TC_ACT_SHOT;
		}
		rule = q.rule;
	}

	/* Allowed: track it (ICMP other than echo requests has no flow to track). */
	if (p.is_icmp && p.echo != 1) {
		weir_pol_count_rule(rule, p.len);
		weir_pol_stat(WEIR_POL_STAT_UNTRACKED, p.len);
		return TC_ACT_UNSPEC;
	}
	if (p.proto == WEIR_IPPROTO_TCP && p.has_ports && (p.tcp_flags & WEIR_TCP_RST)) {
		weir_pol_count_rule(rule, p.len);
		weir_pol_stat(WEIR_POL_STAT_UNTRACKED, p.len);
		return TC_ACT_UNSPEC;
	}
	{
		struct weir_ct v = {};

		v.last_ns = now;
		v.rule = rule;
		v.flags = direction == WEIR_POL_DIR_EGRESS ? WEIR_CT_F_OPENED_EGRESS : 0;
		if (p.proto == WEIR_IPPROTO_TCP && p.has_ports)
			/* A flow picked up mid-stream (weir loaded under it) counts as established. */
			v.state = (p.tcp_flags & (WEIR_TCP_SYN | WEIR_TCP_ACK)) == WEIR_TCP_SYN
					  ? WEIR_CT_TCP_SYN
					  : WEIR_CT_TCP_EST;
		else
			v.state = WEIR_CT_OPEN;
		if (bpf_map_update_elem(&pol_ct, &ck, &v, BPF_ANY))
			weir_pol_stat(WEIR_POL_STAT_CT_FULL, 0);
	}
	weir_pol_count_rule(rule, p.len);
	weir_pol_stat(WEIR_POL_STAT_NEW, p.len);
	return TC_ACT_UNSPEC;
}

#endif /* WEIR_POLICY_H */
