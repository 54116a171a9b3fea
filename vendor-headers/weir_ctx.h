/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * weir's own declaration of kernel ABI facts: the program context structs and return
 * codes weir's programs use. Written for weir from the uapi layout facts (checked
 * against this kernel's BTF), not copied from kernel or libbpf headers; same licence
 * as weir's BPF programs.
 *
 * The verifier checks every context access by offset and size, so each offset is
 * asserted below. Fields are kept in full so the offsets come out right; a field
 * being declared does not mean every program type may read it.
 */
#ifndef WEIR_CTX_H
#define WEIR_CTX_H

#include "weir_types.h"

#define WEIR_ASSERT_OFFSET(type, field, off) \
	_Static_assert(__builtin_offsetof(type, field) == (off), #type "." #field " offset")
#define WEIR_ASSERT_SIZE(type, size) \
	_Static_assert(sizeof(type) == (size), #type " size")

/* Context pointers are 64-bit slots in the uapi, whatever the pointer width. */
#define WEIR_CTX_PTR(type, name) type name __attribute__((aligned(8)))

struct bpf_sock;
struct bpf_flow_keys;

/* ---- XDP ---- */

/* XDP program return codes (enum xdp_action). */
#define XDP_ABORTED 0
#define XDP_DROP 1
#define XDP_PASS 2
#define XDP_TX 3
#define XDP_REDIRECT 4

/* Context of BPF_PROG_TYPE_XDP. data/data_end/data_meta become packet pointers. */
struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};
WEIR_ASSERT_SIZE(struct xdp_md, 24);
WEIR_ASSERT_OFFSET(struct xdp_md, data, 0);
WEIR_ASSERT_OFFSET(struct xdp_md, data_end, 4);
WEIR_ASSERT_OFFSET(struct xdp_md, data_meta, 8);
WEIR_ASSERT_OFFSET(struct xdp_md, ingress_ifindex, 12);
WEIR_ASSERT_OFFSET(struct xdp_md, rx_queue_index, 16);
WEIR_ASSERT_OFFSET(struct xdp_md, egress_ifindex, 20);

/* ---- TC (BPF_PROG_TYPE_SCHED_CLS, direct action) ---- */

/* TC return codes (include/uapi/linux/pkt_cls.h). UNSPEC hands on to the next program. */
#define TC_ACT_UNSPEC (-1)
#define TC_ACT_OK 0
#define TC_ACT_RECLASSIFY 1
#define TC_ACT_SHOT 2
#define TC_ACT_PIPE 3
#define TC_ACT_STOLEN 4
#define TC_ACT_QUEUED 5
#define TC_ACT_REPEAT 6
#define TC_ACT_REDIRECT 7

/* Context of socket-buffer programs (TC, cgroup_skb, socket filters, ...). */
struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
	__u32 tc_index;
	__u32 cb[5];
	__u32 hash;
	__u32 tc_classid;
	__u32 data;
	__u32 data_end;
	__u32 napi_id;
	__u32 family;
	__u32 remote_ip4;
	__u32 local_ip4;
	__u32 remote_ip6[4];
	__u32 local_ip6[4];
	__u32 remote_port;
	__u32 local_port;
	__u32 data_meta;
	WEIR_CTX_PTR(struct bpf_flow_keys *, flow_keys);
	__u64 tstamp;
	__u32 wire_len;
	__u32 gso_segs;
	WEIR_CTX_PTR(struct bpf_sock *, sk);
	__u32 gso_size;
	__u8 tstamp_type;
	__u8 __weir_reserved[3];
	__u64 hwtstamp;
};
WEIR_ASSERT_SIZE(struct __sk_buff, 192);
WEIR_ASSERT_OFFSET(struct __sk_buff, len, 0);
WEIR_ASSERT_OFFSET(struct __sk_buff, pkt_type, 4);
WEIR_ASSERT_OFFSET(struct __sk_buff, mark, 8);
WEIR_ASSERT_OFFSET(struct __sk_buff, queue_mapping, 12);
WEIR_ASSERT_OFFSET(struct __sk_buff, protocol, 16);
WEIR_ASSERT_OFFSET(struct __sk_buff, vlan_present, 20);
WEIR_ASSERT_OFFSET(struct __sk_buff, vlan_tci, 24);
WEIR_ASSERT_OFFSET(struct __sk_buff, vlan_proto, 28);
WEIR_ASSERT_OFFSET(struct __sk_buff, priority, 32);
WEIR_ASSERT_OFFSET(struct __sk_buff, ingress_ifindex, 36);
WEIR_ASSERT_OFFSET(struct __sk_buff, ifindex, 40);
WEIR_ASSERT_OFFSET(struct __sk_buff, tc_index, 44);
WEIR_ASSERT_OFFSET(struct __sk_buff, cb, 48);
WEIR_ASSERT_OFFSET(struct __sk_buff, hash, 68);
WEIR_ASSERT_OFFSET(struct __sk_buff, tc_classid, 72);
WEIR_ASSERT_OFFSET(struct __sk_buff, data, 76);
WEIR_ASSERT_OFFSET(struct __sk_buff, data_end, 80);
WEIR_ASSERT_OFFSET(struct __sk_buff, napi_id, 84);
WEIR_ASSERT_OFFSET(struct __sk_buff, family, 88);
WEIR_ASSERT_OFFSET(struct __sk_buff, remote_ip4, 92);
WEIR_ASSERT_OFFSET(struct __sk_buff, local_ip4, 96);
WEIR_ASSERT_OFFSET(struct __sk_buff, remote_ip6, 100);
WEIR_ASSERT_OFFSET(struct __sk_buff, local_ip6, 116);
WEIR_ASSERT_OFFSET(struct __sk_buff, remote_port, 132);
WEIR_ASSERT_OFFSET(struct __sk_buff, local_port, 136);
WEIR_ASSERT_OFFSET(struct __sk_buff, data_meta, 140);
WEIR_ASSERT_OFFSET(struct __sk_buff, flow_keys, 144);
WEIR_ASSERT_OFFSET(struct __sk_buff, tstamp, 152);
WEIR_ASSERT_OFFSET(struct __sk_buff, wire_len, 160);
WEIR_ASSERT_OFFSET(struct __sk_buff, gso_segs, 164);
WEIR_ASSERT_OFFSET(struct __sk_buff, sk, 168);
WEIR_ASSERT_OFFSET(struct __sk_buff, gso_size, 176);
WEIR_ASSERT_OFFSET(struct __sk_buff, tstamp_type, 180);
WEIR_ASSERT_OFFSET(struct __sk_buff, hwtstamp, 184);

/* ---- cgroup sock_addr (connect4/6, bind4/6, sendmsg4/6, ...) ---- */

/* Context of BPF_PROG_TYPE_CGROUP_SOCK_ADDR. Addresses and ports are network order. */
struct bpf_sock_addr {
	__u32 user_family;
	__u32 user_ip4;
	__u32 user_ip6[4];
	__u32 user_port;
	__u32 family;
	__u32 type;
	__u32 protocol;
	__u32 msg_src_ip4;
	__u32 msg_src_ip6[4];
	WEIR_CTX_PTR(struct bpf_sock *, sk);
};
WEIR_ASSERT_SIZE(struct bpf_sock_addr, 72);
WEIR_ASSERT_OFFSET(struct bpf_sock_addr, user_family, 0);
WEIR_ASSERT_OFFSET(struct bpf_sock_addr, user_ip4, 4);
WEIR_ASSERT_OFFSET(struct bpf_sock_addr, user_ip6, 8);
WEIR_ASSERT_OFFSET(struct bpf_sock_addr, user_port, 24);
WEIR_ASSERT_OFFSET(struct bpf_sock_addr, family, 28);
WEIR_ASSERT_OFFSET(struct bpf_sock_addr, type, 32);
WEIR_ASSERT_OFFSET(struct bpf_sock_addr, protocol, 36);
WEIR_ASSERT_OFFSET(struct bpf_sock_addr, msg_src_ip4, 40);
WEIR_ASSERT_OFFSET(struct bpf_sock_addr, msg_src_ip6, 44);
WEIR_ASSERT_OFFSET(struct bpf_sock_addr, sk, 64);

#endif /* WEIR_CTX_H */
