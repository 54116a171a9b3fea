/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * weir_net.h: the wire formats weir's packet parsers read (Ethernet, 802.1Q/802.1ad, IPv4,
 * IPv6 and its extension headers, the port pair of TCP/UDP/SCTP). Written for weir from the
 * RFCs/IEEE layouts, not copied from kernel or libbpf headers.
 *
 * Multi-byte fields are network byte order. Structs are naturally aligned, so clang emits
 * word loads; packet headers are often not word-aligned in memory, which the verifier
 * accepts on architectures with efficient unaligned access (x86-64, arm64).
 */
#ifndef WEIR_NET_H
#define WEIR_NET_H

#include "weir_types.h"

/* Byte order: the BPF target has the host's endianness. Constants fold at compile time. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define weir_htons(x) ((__be16)__builtin_bswap16(x))
#define weir_ntohs(x) ((__u16)__builtin_bswap16(x))
#define weir_ntohl(x) ((__u32)__builtin_bswap32(x))
#else
#define weir_htons(x) ((__be16)(x))
#define weir_ntohs(x) ((__u16)(x))
#define weir_ntohl(x) ((__u32)(x))
#endif

/* EtherTypes. */
#define WEIR_ETH_P_IP 0x0800
#define WEIR_ETH_P_IPV6 0x86DD
#define WEIR_ETH_P_8021Q 0x8100  /* customer VLAN tag */
#define WEIR_ETH_P_8021AD 0x88A8 /* service VLAN tag (QinQ outer) */

/* IP protocol numbers / IPv6 next-header values. */
#define WEIR_IPPROTO_HOPOPTS 0
#define WEIR_IPPROTO_ICMP 1
#define WEIR_IPPROTO_TCP 6
#define WEIR_IPPROTO_UDP 17
#define WEIR_IPPROTO_ROUTING 43
#define WEIR_IPPROTO_FRAGMENT 44
#define WEIR_IPPROTO_ESP 50
#define WEIR_IPPROTO_AH 51
#define WEIR_IPPROTO_ICMPV6 58
#define WEIR_IPPROTO_NONE 59
#define WEIR_IPPROTO_DSTOPTS 60
#define WEIR_IPPROTO_SCTP 132

struct weir_eth {
	__u8 dst[6];
	__u8 src[6];
	__be16 proto;
};
_Static_assert(sizeof(struct weir_eth) == 14, "weir_eth size");

/* A VLAN tag as it follows the EtherType that announced it. */
struct weir_vlan {
	__be16 tci;
	__be16 proto; /* EtherType of what follows */
};
_Static_assert(sizeof(struct weir_vlan) == 4, "weir_vlan size");

struct weir_ipv4 {
	__u8 ver_ihl; /* version << 4 | header length in 32-bit words */
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off; /* flags (3 bits) and fragment offset (13 bits, in 8-byte units) */
	__u8 ttl;
	__u8 protocol;
	__be16 check;
	__be32 saddr;
	__be32 daddr;
};
_Static_assert(sizeof(struct weir_ipv4) == 20, "weir_ipv4 size");
_Static_assert(__builtin_offsetof(struct weir_ipv4, saddr) == 12, "weir_ipv4.saddr offset");
#define WEIR_IPV4_OFFSET_MASK 0x1FFF

/* ICMPv6 neighbour discovery (RFC 4861): router/neighbour solicitation and advertisement. */
#define WEIR_ICMPV6_ROUTER_SOLICIT 133
/* Multicast listener discovery (RFC 2710, RFC 3810): query, report, done; MLDv2 report. */
#define WEIR_ICMPV6_MLD_QUERY 130
#define WEIR_ICMPV6_MLD_DONE 132
#define WEIR_ICMPV6_MLD2_REPORT 143
#define WEIR_ICMPV6_NEIGH_ADVERT 136
/* ND messages are sent with hop limit 255; a router would have decremented it. */
#define WEIR_ND_HOP_LIMIT 255

struct weir_ipv6 {
	__u8 ver_tc;	/* version << 4 | upper traffic class bits */
	__u8 tc_flow[3];
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__be32 saddr[4];
	__be32 daddr[4];
};
_Static_assert(sizeof(struct weir_ipv6) == 40, "weir_ipv6 size");
_Static_assert(__builtin_offsetof(struct weir_ipv6, saddr) == 8, "weir_ipv6.saddr offset");

/*
 * The first 8 bytes of any IPv6 extension header (every one is at least 8 bytes long).
 * hdrlen counts 8-byte units after the first 8 (hop-by-hop, routing, destination options)
 * or 4-byte units minus 2 (AH); frag_off is meaningful only in a fragment header.
 */
struct weir_ipv6_ext {
	__u8 nexthdr;
	__u8 hdrlen;
	__be16 frag_off; /* fragment header: offset (13 bits, 8-byte units) << 3 | flags */
	__be32 more;
};
_Static_assert(sizeof(struct weir_ipv6_ext) == 8, "weir_ipv6_ext size");
#define WEIR_IPV6_FRAG_OFFSET_MASK 0xFFF8

/* The port pair that starts TCP, UDP and SCTP headers alike. */
struct weir_l4_ports {
	__be16 source;
	__be16 dest;
};
_Static_assert(sizeof(struct weir_l4_ports) == 4, "weir_l4_ports size");

#endif /* WEIR_NET_H */
