/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * weir's own declaration of kernel ABI facts for the socket-level program types the service
 * mesh uses: sock_ops (BPF_PROG_TYPE_SOCK_OPS), cgroup sockopt (BPF_PROG_TYPE_CGROUP_SOCKOPT)
 * and the struct bpf_sock they point to, plus the extra helpers those programs call.
 * Written for weir from the uapi layout facts (checked against this kernel's BTF), not copied
 * from kernel or libbpf headers; same licence as weir's BPF programs.
 */
#ifndef WEIR_SOCK_CTX_H
#define WEIR_SOCK_CTX_H

#include "weir_types.h"
#include "weir_ctx.h"

/* Address families and socket option levels (linux/socket.h, linux/in.h). */
#define WEIR_AF_INET 2
#define WEIR_AF_INET6 10
#define WEIR_SOL_IP 0
#define WEIR_SOL_IPV6 41

/* A full socket as cgroup sockopt (ctx->sk) and other programs see it. Read-only. */
struct bpf_sock {
	__u32 bound_dev_if;
	__u32 family;
	__u32 type;
	__u32 protocol;
	__u32 mark;
	__u32 priority;
	__u32 src_ip4;	   /* network order */
	__u32 src_ip6[4];  /* network order */
	__u32 src_port;	   /* HOST order */
	__be16 dst_port;   /* network order */
	__u16 __weir_pad;
	__u32 dst_ip4;
	__u32 dst_ip6[4];
	__u32 state;
	__s32 rx_queue_mapping;
};
WEIR_ASSERT_SIZE(struct bpf_sock, 80);
WEIR_ASSERT_OFFSET(struct bpf_sock, family, 4);
WEIR_ASSERT_OFFSET(struct bpf_sock, src_ip4, 24);
WEIR_ASSERT_OFFSET(struct bpf_sock, src_ip6, 28);
WEIR_ASSERT_OFFSET(struct bpf_sock, src_port, 44);
WEIR_ASSERT_OFFSET(struct bpf_sock, dst_port, 48);
WEIR_ASSERT_OFFSET(struct bpf_sock, dst_ip4, 52);
WEIR_ASSERT_OFFSET(struct bpf_sock, dst_ip6, 56);
WEIR_ASSERT_OFFSET(struct bpf_sock, state, 72);

/* ---- sock_ops ---- */

/* ctx->op values (the BPF_SOCK_OPS_* callbacks) weir reacts to. */
#define BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB 4  /* a connect()ed socket became established */
#define BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB 5 /* an accepted socket became established */
#define BPF_SOCK_OPS_TCP_LISTEN_CB 11          /* listen(): sent without any cb flag */

/*
 * Context of BPF_PROG_TYPE_SOCK_OPS. remote_port holds the port in network order in its
 * UPPER 16 bits on little-endian machines (the kernel loads the __be16 and shifts it);
 * local_port is in host order.
 */
struct bpf_sock_ops {
	__u32 op;
	__u32 args[4]; /* a union with `reply` in the uapi */
	__u32 family;
	__u32 remote_ip4;
	__u32 local_ip4;
	__u32 remote_ip6[4];
	__u32 local_ip6[4];
	__u32 remote_port;
	__u32 local_port;
	__u32 is_fullsock;
	__u32 snd_cwnd;
	__u32 srtt_us;
	__u32 bpf_sock_ops_cb_flags;
	__u32 state;
	__u32 rtt_min;
	__u32 snd_ssthresh;
	__u32 rcv_nxt;
	__u32 snd_nxt;
	__u32 snd_una;
	__u32 mss_cache;
	__u32 ecn_flags;
	__u32 rate_delivered;
	__u32 rate_interval_us;
	__u32 packets_out;
	__u32 retrans_out;
	__u32 total_retrans;
	__u32 segs_in;
	__u32 data_segs_in;
	__u32 segs_out;
	__u32 data_segs_out;
	__u32 lost_out;
	__u32 sacked_out;
	__u32 sk_txhash;
	__u64 bytes_received;
	__u64 bytes_acked;
	WEIR_CTX_PTR(struct bpf_sock *, sk);
	WEIR_CTX_PTR(void *, skb_data);
	WEIR_CTX_PTR(void *, skb_data_end);
	__u32 skb_len;
	__u32 skb_tcp_flags;
	__u64 skb_hwtstamp;
};
WEIR_ASSERT_SIZE(struct bpf_sock_ops, 224);
WEIR_ASSERT_OFFSET(struct bpf_sock_ops, family, 20);
WEIR_ASSERT_OFFSET(struct bpf_sock_ops, remote_ip4, 24);
WEIR_ASSERT_OFFSET(struct bpf_sock_ops, local_ip4, 28);
WEIR_ASSERT_OFFSET(struct bpf_sock_ops, remote_ip6, 32);
WEIR_ASSERT_OFFSET(struct bpf_sock_ops, local_ip6, 48);
WEIR_ASSERT_OFFSET(struct bpf_sock_ops, remote_port, 64);
WEIR_ASSERT_OFFSET(struct bpf_sock_ops, local_port, 68);
WEIR_ASSERT_OFFSET(struct bpf_sock_ops, bytes_received, 168);
WEIR_ASSERT_OFFSET(struct bpf_sock_ops, sk, 184);
WEIR_ASSERT_OFFSET(struct bpf_sock_ops, skb_len, 208);
WEIR_ASSERT_OFFSET(struct bpf_sock_ops, skb_hwtstamp, 216);

/* ---- cgroup sockopt (getsockopt / setsockopt) ---- */

/*
 * Context of BPF_PROG_TYPE_CGROUP_SOCKOPT. optval..optval_end is a kernel copy of the user's
 * buffer (bounds-checked packet-style); a getsockopt program may rewrite it, optlen (no larger
 * than the user's) and retval (0 to turn the kernel's error into success).
 */
struct bpf_sockopt {
	WEIR_CTX_PTR(struct bpf_sock *, sk);
	WEIR_CTX_PTR(__u8 *, optval);
	WEIR_CTX_PTR(__u8 *, optval_end);
	__s32 level;
	__s32 optname;
	__s32 optlen;
	__s32 retval;
};
WEIR_ASSERT_SIZE(struct bpf_sockopt, 40);
WEIR_ASSERT_OFFSET(struct bpf_sockopt, optval, 8);
WEIR_ASSERT_OFFSET(struct bpf_sockopt, optval_end, 16);
WEIR_ASSERT_OFFSET(struct bpf_sockopt, level, 24);
WEIR_ASSERT_OFFSET(struct bpf_sockopt, optname, 28);
WEIR_ASSERT_OFFSET(struct bpf_sockopt, optlen, 32);
WEIR_ASSERT_OFFSET(struct bpf_sockopt, retval, 36);

/* The socket addresses getsockopt(SO_ORIGINAL_DST) returns (linux/in.h, linux/in6.h). */
struct weir_sockaddr_in {
	__u16 family;
	__be16 port;
	__be32 addr;
	__u8 zero[8];
};
WEIR_ASSERT_SIZE(struct weir_sockaddr_in, 16);

struct weir_sockaddr_in6 {
	__u16 family;
	__be16 port;
	__be32 flowinfo;
	__u8 addr[16];
	__u32 scope_id;
};
WEIR_ASSERT_SIZE(struct weir_sockaddr_in6, 28);

/* ---- Helpers (enum bpf_func_id) these programs call beyond weir_bpf.h's ---- */

/* 15: the current task's gid << 32 | uid. */
static __u64 (*const bpf_get_current_uid_gid)(void) = (void *)15;

/* ---- sk_lookup (BPF_PROG_TYPE_SK_LOOKUP): a listening-socket lookup in one netns ---- */

#define SK_DROP 0
#define SK_PASS 1

/* Addresses in network byte order; local_port in host order, remote_port in network order. */
struct bpf_sk_lookup {
	union {
		WEIR_CTX_PTR(struct bpf_sock *, sk); /* the socket selected so far */
		__u64 cookie;
	};
	__u32 family;
	__u32 protocol;
	__u32 remote_ip4;
	__u32 remote_ip6[4];
	__u16 remote_port;
	__u16 pad;
	__u32 local_ip4;
	__u32 local_ip6[4];
	__u32 local_port;
	__u32 ingress_ifindex;
};
WEIR_ASSERT_SIZE(struct bpf_sk_lookup, 72);
WEIR_ASSERT_OFFSET(struct bpf_sk_lookup, family, 8);
WEIR_ASSERT_OFFSET(struct bpf_sk_lookup, remote_port, 36);
WEIR_ASSERT_OFFSET(struct bpf_sk_lookup, local_ip4, 40);
WEIR_ASSERT_OFFSET(struct bpf_sk_lookup, local_port, 60);
WEIR_ASSERT_OFFSET(struct bpf_sk_lookup, ingress_ifindex, 64);

#endif /* WEIR_SOCK_CTX_H */
