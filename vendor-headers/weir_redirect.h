/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * weir's own declaration of the kernel ABI the TC fast path uses: the redirect, FIB lookup and
 * MTU check helpers and their parameter structs. Written for weir from the uapi values and
 * layouts (checked against this kernel's BTF: enum bpf_func_id, struct bpf_fib_lookup,
 * struct bpf_redir_neigh), not copied from kernel or libbpf headers.
 */
#ifndef WEIR_REDIRECT_H
#define WEIR_REDIRECT_H

#include "weir_bpf.h"

#define WEIR_AF_INET 2
#define WEIR_AF_INET6 10

/* bpf_fib_lookup() parameters, in and out (64 bytes). */
struct bpf_fib_lookup {
	__u8 family; /* AF_INET or AF_INET6 */
	__u8 l4_protocol;
	__be16 sport;
	__be16 dport;
	__u16 tot_len; /* in: packet length for an MTU check (0: check the skb); out: the MTU */
	__u32 ifindex; /* in: the ingress interface; out: the egress interface */
	__be32 flowinfo; /* IPv4: the TOS byte in the lowest address byte; IPv6: flow info */
	__u32 src[4];	 /* IPv4 in src[0] */
	__u32 dst[4];	 /* IPv4 in dst[0]; out: the next hop when there is a gateway */
	__be16 h_vlan_proto;
	__be16 h_vlan_tci;
	__u8 smac[6]; /* out: the egress interface's MAC */
	__u8 dmac[6]; /* out: the next hop's MAC */
};
WEIR_ASSERT_SIZE(struct bpf_fib_lookup, 64);
WEIR_ASSERT_OFFSET(struct bpf_fib_lookup, tot_len, 6);
WEIR_ASSERT_OFFSET(struct bpf_fib_lookup, ifindex, 8);
WEIR_ASSERT_OFFSET(struct bpf_fib_lookup, src, 16);
WEIR_ASSERT_OFFSET(struct bpf_fib_lookup, dst, 32);
WEIR_ASSERT_OFFSET(struct bpf_fib_lookup, smac, 52);
WEIR_ASSERT_OFFSET(struct bpf_fib_lookup, dmac, 58);

/* bpf_fib_lookup() results weir acts on (the others: leave the packet to the stack). */
#define BPF_FIB_LKUP_RET_SUCCESS 0
#define BPF_FIB_LKUP_RET_NO_NEIGH 7 /* routed, but the next hop's MAC is not known yet */

/* bpf_check_mtu() result: fits. */
#define BPF_MTU_CHK_RET_SUCCESS 0

/* 23: send the packet out of `ifindex` (flags 0: its egress); returns TC_ACT_REDIRECT. */
static long (*const bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)23;

/* 69: a route (and neighbour) lookup in the kernel's FIB; a BPF_FIB_LKUP_RET_* value. */
static long (*const bpf_fib_lookup)(void *ctx, struct bpf_fib_lookup *params, int plen,
				    __u32 flags) = (void *)69;

/*
 * 152: send out of `ifindex`, filling in the MACs from the neighbour table (resolving the
 * next hop if needed). params NULL: the kernel finds the next hop from the packet's
 * destination. Returns TC_ACT_REDIRECT.
 */
static long (*const bpf_redirect_neigh)(__u32 ifindex, void *params, int plen,
					__u64 flags) = (void *)152;

/*
 * 155: hand the packet to the ingress of the peer of `ifindex` (a veth or netkit in another
 * network namespace), without a second pass through the backlog queue. TC ingress only.
 */
static long (*const bpf_redirect_peer)(__u32 ifindex, __u64 flags) = (void *)155;

/* 163: whether the packet fits the MTU of `ifindex` (GSO packets by their segments). */
static long (*const bpf_check_mtu)(void *ctx, __u32 ifindex, __u32 *mtu_len, __s32 len_diff,
				   __u64 flags) = (void *)163;

#endif /* WEIR_REDIRECT_H */
