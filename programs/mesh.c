/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * Service-mesh redirect: a meshed workload's outbound TCP goes to its local proxy, and the
 * proxy asks where it was going with getsockopt(SO_ORIGINAL_DST), as with iptables REDIRECT,
 * but with no NAT and no conntrack entry.
 *
 * 1. connect4/connect6 (meshed cgroups): the destination the client asked for is remembered in
 *    mesh_clients under the socket's cookie, and the socket connects to 127.0.0.1:proxy-port
 *    (::1 for IPv6; v4-mapped destinations on IPv6 sockets go to ::ffff:127.0.0.1). Loopback
 *    destinations and excluded ports are left alone; so is the proxy itself (its cgroup, or
 *    its uid), whatever cgroup it sits in: no loops.
 * 2. sock_ops ACTIVE_ESTABLISHED: the client's source port exists only now. The pending entry
 *    moves to mesh_origdst under the connection's (netns, client addr:port, proxy addr:port),
 *    before the handshake's last ACK leaves, so before the proxy can accept it.
 * 3. cgroup/getsockopt: the proxy's accepted socket has that same pair the other way round
 *    (its peer is the client); SOL_IP/SO_ORIGINAL_DST gets a struct sockaddr_in and
 *    SOL_IPV6/IP6T_SO_ORIGINAL_DST a struct sockaddr_in6 from it. Other options, and sockets
 *    weir did not redirect, keep the kernel's own answer.
 * 4. getpeername4/6: the client sees the address it asked for, not the proxy's, as it does
 *    behind iptables REDIRECT (mesh_clients keeps the socket's entry for its lifetime, an LRU).
 *
 * Inbound capture (Istio's `PREROUTING -j REDIRECT --to-port 15006`, without iptables):
 * 5. sock_ops TCP_LISTEN: a socket that starts listening on the inbound port of a captured
 *    network namespace (mesh_inbound, by netns cookie) is the proxy's inbound listener: it goes
 *    into mesh_listeners under (netns cookie, port, family). It leaves the map when closed.
 * 6. sk_lookup (mesh_sk_lookup, one copy per captured netns, attached to that netns): a TCP
 *    connection arriving from outside (not over loopback: locally made connections, the
 *    proxy's own to the app included, never pass PREROUTING either) for a local port that is
 *    not excluded and not one of the proxy's gets the proxy's inbound listener. The proxy
 *    accepts a socket whose local address:port is the original destination. No listener:
 *    the connection is refused, as behind REDIRECT to a port nothing listens on.
 * 7. cgroup/getsockopt: on such a socket SO_ORIGINAL_DST answers its own local address.
 *
 * Addresses are 16 bytes, IPv4 v4-mapped, so v4 sockets and v4-mapped v6 sockets meet in one
 * key. Programs return 1 (go on): the mesh never fails a call.
 */
#include "weir_bpf.h"
#include "weir_sock_ctx.h"
#include "weir_maps.h"
#include "weir_count.h"
#include "weir_net.h"

WEIR_DEFINE_MAP_MESH_CGROUPS;
WEIR_DEFINE_MAP_MESH_PORTS;
WEIR_DEFINE_MAP_MESH_CLIENTS;
WEIR_DEFINE_MAP_MESH_ORIGDST;
WEIR_DEFINE_MAP_MESH_STATS;
WEIR_DEFINE_MAP_MESH_COUNTERS;
WEIR_DEFINE_MAP_MESH_INBOUND;
WEIR_DEFINE_MAP_MESH_IN_PORTS;
WEIR_DEFINE_MAP_MESH_LISTENERS;

/*
 * sk_lookup cannot ask for its network namespace's cookie (bpf_get_netns_cookie is not
 * available to it), so each captured netns runs its own copy of mesh_sk_lookup in which the
 * loader replaced this 64-bit immediate with the cookie (maps-schema mesh::NETNS_PLACEHOLDER).
 */
#define WEIR_MESH_NETNS_PLACEHOLDER 0x776569726e65746eULL
#define LOOPBACK_IFINDEX 1

#define PROCEED 1
#define SOCK_STREAM 1

/* 127.0.0.1 and the v4-mapped prefix's third word, network order. */
#define LOOPBACK4 weir_ntohl(0x7f000001)
#define MAPPED_WORD weir_ntohl(0x0000ffff)

static __always_inline void v4_mapped(__u8 out[16], __u32 ip4)
{
	__builtin_memset(out, 0, 10);
	out[10] = 0xff;
	out[11] = 0xff;
	__builtin_memcpy(out + 12, &ip4, 4);
}

static __always_inline void copy_ip6(__u8 out[16], const __u32 w[4])
{
	__u32 v[4] = { w[0], w[1], w[2], w[3] };

	__builtin_memcpy(out, v, 16);
}

static __always_inline int is_loopback4(__u32 ip4)
{
	return (weir_ntohl(ip4) >> 24) == 127 || ip4 == 0;
}

/*
 * The mesh the current task belongs to: the deepest meshed ancestor of its cgroup. 0 when there
 * is none, or when the task is a proxy (a proxy cgroup anywhere on the path, or the mesh's
 * proxy uid).
 */
static __always_inline int mesh_of_task(__u64 *cgroup, struct weir_mesh_cgroup *out)
{
	int found = 0;

	for (int level = 0; level < WEIR_LB_MAX_CGROUP_DEPTH; level++) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(level);
		struct weir_mesh_cgroup *c;

		if (!id)
			break;
		c = bpf_map_lookup_elem(&mesh_cgroups, &id);
		if (!c)
			continue;
		if (c->flags & WEIR_MESH_PROXY)
			return 0;
		if (c->flags & WEIR_MESH_MESHED) {
			*out = *c;
			*cgroup = id;
			found = 1;
		}
	}
	if (found && (out->flags & WEIR_MESH_PROXY_UID) &&
	    (__u32)bpf_get_current_uid_gid() == out->proxy_uid)
		return 0;
	return found;
}

/* Whether this connect is redirected; on 1, `*cfg` and `*cgroup` describe the mesh. */
static __always_inline int mesh_wants(struct bpf_sock_addr *ctx, __u16 port, __u64 *cgroup,
				      struct weir_mesh_cgroup *cfg)
{
	struct weir_mesh_port_key pk = {};

	if (ctx->type != SOCK_STREAM || ctx->protocol != WEIR_IPPROTO_TCP)
		return 0;
	if (!mesh_of_task(cgroup, cfg))
		return 0;
	pk.cgroup = *cgroup;
	pk.port = port;
	if (bpf_map_lookup_elem(&mesh_ports, &pk))
		return 0;
	return 1;
}

/* Remembers where the socket was going, counts the redirect. */
static __always_inline void mesh_remember(struct bpf_sock_addr *ctx, const __u8 addr[16],
					  __u16 port, __u64 cgroup, __u32 counter)
{
	struct weir_mesh_origdst o = {};
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct weir_counter *c;

	__builtin_memcpy(o.addr, addr, 16);
	o.port = port;
	bpf_map_update_elem(&mesh_clients, &cookie, &o, BPF_ANY);
	c = bpf_map_lookup_elem(&mesh_stats, &cgroup);
	if (c)
		c->packets += 1; /* per-CPU: no atomics */
	weir_count_array(&mesh_counters, counter);
}

SEC("cgroup/connect4")
int mesh_connect4(struct bpf_sock_addr *ctx)
{
	struct weir_mesh_cgroup cfg;
	__u64 cgroup;
	__u32 ip4 = ctx->user_ip4;
	__u16 port = (__u16)ctx->user_port;
	__u8 addr[16];

	if (is_loopback4(ip4) || !mesh_wants(ctx, port, &cgroup, &cfg))
		return PROCEED;
	v4_mapped(addr, ip4);
	mesh_remember(ctx, addr, port, cgroup, WEIR_MESH_COUNT_REDIRECT4);
	ctx->user_ip4 = LOOPBACK4;
	ctx->user_port = cfg.proxy_port;
	return PROCEED;
}

SEC("cgroup/connect6")
int mesh_connect6(struct bpf_sock_addr *ctx)
{
	struct weir_mesh_cgroup cfg;
	__u64 cgroup;
	__u32 w[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3] };
	__u16 port = (__u16)ctx->user_port;
	int mapped = w[0] == 0 && w[1] == 0 && w[2] == MAPPED_WORD;
	__u8 addr[16];

	if (mapped && is_loopback4(w[3]))
		return PROCEED;
	/* ::1 and :: (which connects to the local host) */
	if (!mapped && w[0] == 0 && w[1] == 0 && w[2] == 0 &&
	    (w[3] == 0 || w[3] == weir_ntohl(1)))
		return PROCEED;
	if (!mesh_wants(ctx, port, &cgroup, &cfg))
		return PROCEED;
	__builtin_memcpy(addr, w, 16);
	mesh_remember(ctx, addr, port, cgroup,
		      mapped ? WEIR_MESH_COUNT_REDIRECT4 : WEIR_MESH_COUNT_REDIRECT6);
	ctx->user_ip6[0] = 0;
	ctx->user_ip6[1] = 0;
	ctx->user_ip6[2] = mapped ? MAPPED_WORD : 0;
	ctx->user_ip6[3] = mapped ? LOOPBACK4 : weir_ntohl(1);
	ctx->user_port = cfg.proxy_port;
	return PROCEED;
}

/*
 * Runs for every TCP socket of the attach cgroup; only a redirected client's transition to
 * ESTABLISHED does anything. This runs in softirq context: no task, no cgroup checks here,
 * the cookie alone says whether the socket was redirected.
 */
/* A socket starts listening: the proxy's inbound listener if it is on a captured port. */
static __always_inline void mesh_listen(struct bpf_sock_ops *ctx)
{
	struct weir_mesh_listener_key k = {};
	struct weir_mesh_inbound *in;
	__u64 netns = bpf_get_netns_cookie(ctx);

	in = bpf_map_lookup_elem(&mesh_inbound, &netns);
	if (!in || ctx->local_port != in->inbound_port)
		return;
	k.netns_cookie = netns;
	k.port = in->inbound_port;
	k.family = ctx->family == WEIR_AF_INET ? 4 : 6;
	bpf_sock_hash_update(ctx, &mesh_listeners, &k, BPF_ANY);
}

SEC("sockops")
int mesh_sockops(struct bpf_sock_ops *ctx)
{
	struct weir_mesh_tuple k = {};
	struct weir_mesh_origdst *o;
	__u64 cookie;

	if (ctx->op == BPF_SOCK_OPS_TCP_LISTEN_CB) {
		mesh_listen(ctx);
		return PROCEED;
	}
	if (ctx->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		return PROCEED;
	cookie = bpf_get_socket_cookie(ctx);
	o = bpf_map_lookup_elem(&mesh_clients, &cookie);
	if (!o)
		return PROCEED;
	k.netns_cookie = bpf_get_netns_cookie(ctx);
	if (ctx->family == WEIR_AF_INET) {
		v4_mapped(k.client, ctx->local_ip4);
		v4_mapped(k.proxy, ctx->remote_ip4);
	} else {
		copy_ip6(k.client, ctx->local_ip6);
		copy_ip6(k.proxy, ctx->remote_ip6);
	}
	k.client_port = weir_htons((__u16)ctx->local_port);
	k.proxy_port = (__u16)(ctx->remote_port >> 16);
	bpf_map_update_elem(&mesh_origdst, &k, o, BPF_ANY);
	weir_count_array(&mesh_counters, WEIR_MESH_COUNT_RECORDED);
	return PROCEED;
}

/*
 * getpeername on a redirected client: the original destination, when the socket is still
 * connected to its proxy (a socket reconnected elsewhere since keeps its real peer).
 */
static __always_inline const struct weir_mesh_origdst *mesh_peer(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);

	return bpf_map_lookup_elem(&mesh_clients, &cookie);
}

SEC("cgroup/getpeername4")
int mesh_getpeername4(struct bpf_sock_addr *ctx)
{
	const struct weir_mesh_origdst *o;
	__u32 ip4;

	if (ctx->user_ip4 != LOOPBACK4)
		return PROCEED;
	o = mesh_peer(ctx);
	if (!o || o->addr[10] != 0xff || o->addr[11] != 0xff)
		return PROCEED;
	__builtin_memcpy(&ip4, o->addr + 12, 4);
	ctx->user_ip4 = ip4;
	ctx->user_port = o->port;
	return PROCEED;
}

SEC("cgroup/getpeername6")
int mesh_getpeername6(struct bpf_sock_addr *ctx)
{
	const struct weir_mesh_origdst *o;
	__u32 w[4];
	int mapped = ctx->user_ip6[0] == 0 && ctx->user_ip6[1] == 0 &&
		     ctx->user_ip6[2] == MAPPED_WORD && ctx->user_ip6[3] == LOOPBACK4;
	int lo6 = ctx->user_ip6[0] == 0 && ctx->user_ip6[1] == 0 && ctx->user_ip6[2] == 0 &&
		  ctx->user_ip6[3] == weir_ntohl(1);

	if (!mapped && !lo6)
		return PROCEED;
	o = mesh_peer(ctx);
	if (!o)
		return PROCEED;
	__builtin_memcpy(w, o->addr, 16);
	ctx->user_ip6[0] = w[0];
	ctx->user_ip6[1] = w[1];
	ctx->user_ip6[2] = w[2];
	ctx->user_ip6[3] = w[3];
	ctx->user_port = o->port;
	return PROCEED;
}

/*
 * Whether `port` of a captured netns is captured: not excluded, not the proxy's own. `*in`
 * is the netns's capture.
 */
static __always_inline int inbound_captures(__u64 netns, const struct weir_mesh_inbound *in,
					    __u16 port)
{
	struct weir_mesh_inbound_port_key pk = {};

	if (port == in->inbound_port || port == in->proxy_port)
		return 0;
	pk.netns_cookie = netns;
	pk.port = port;
	return !bpf_map_lookup_elem(&mesh_in_ports, &pk);
}

/*
 * An accepted socket of a captured netns on a captured local port can only have come through
 * mesh_sk_lookup (a listener on that port would have had the connection otherwise only if
 * capture was off): its original destination is its own local address, as REDIRECT reports.
 */
static __always_inline const struct weir_mesh_origdst *
inbound_origdst(__u64 netns, struct bpf_sock *sk, struct weir_mesh_origdst *out)
{
	const struct weir_mesh_inbound *in = bpf_map_lookup_elem(&mesh_inbound, &netns);
	__u16 port = (__u16)sk->src_port;

	if (!in || !inbound_captures(netns, in, port))
		return 0;
	if (sk->family == WEIR_AF_INET)
		v4_mapped(out->addr, sk->src_ip4);
	else
		copy_ip6(out->addr, sk->src_ip6);
	out->port = weir_htons(port);
	return out;
}

/* getsockopt(SOL_IP, SO_ORIGINAL_DST) and getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST). */
SEC("cgroup/getsockopt")
int mesh_getsockopt(struct bpf_sockopt *ctx)
{
	struct weir_mesh_tuple k = {};
	const struct weir_mesh_origdst *o;
	struct weir_mesh_origdst local = {};
	__u32 counter = WEIR_MESH_COUNT_ANSWERED;
	struct bpf_sock *sk;
	int level = ctx->level;
	__u8 *optval, *end;

	if (ctx->optname != WEIR_SO_ORIGINAL_DST ||
	    (level != WEIR_SOL_IP && level != WEIR_SOL_IPV6))
		return PROCEED;
	sk = ctx->sk;
	if (!sk)
		return PROCEED;
	/* The proxy's accepted socket: its peer is the client, its own address the proxy's. */
	k.netns_cookie = bpf_get_netns_cookie(ctx);
	if (sk->family == WEIR_AF_INET) {
		v4_mapped(k.client, sk->dst_ip4);
		v4_mapped(k.proxy, sk->src_ip4);
	} else {
		copy_ip6(k.client, sk->dst_ip6);
		copy_ip6(k.proxy, sk->src_ip6);
	}
	k.client_port = sk->dst_port;
	k.proxy_port = weir_htons((__u16)sk->src_port);
	o = bpf_map_lookup_elem(&mesh_origdst, &k);
	if (!o) {
		o = inbound_origdst(k.netns_cookie, sk, &local);
		if (!o) {
			weir_count_array(&mesh_counters, WEIR_MESH_COUNT_UNKNOWN);
			return PROCEED;
		}
		counter = WEIR_MESH_COUNT_INBOUND_ANSWERED;
	}
	optval = ctx->optval;
	end = ctx->optval_end;
	if (level == WEIR_SOL_IP) {
		struct weir_sockaddr_in *sin = (void *)optval;
		__u32 ip4;

		/* An IPv6 destination has no sockaddr_in: keep the kernel's error. */
		if (o->addr[10] != 0xff || o->addr[11] != 0xff)
			return PROCEED;
		if ((void *)(sin + 1) > (void *)end)
			return PROCEED;
		__builtin_memcpy(&ip4, o->addr + 12, 4);
		__builtin_memset(sin, 0, sizeof(*sin));
		sin->family = WEIR_AF_INET;
		sin->port = o->port;
		sin->addr = ip4;
		ctx->optlen = sizeof(*sin);
	} else {
		struct weir_sockaddr_in6 *sin6 = (void *)optval;

		if ((void *)(sin6 + 1) > (void *)end)
			return PROCEED;
		__builtin_memset(sin6, 0, sizeof(*sin6));
		sin6->family = WEIR_AF_INET6;
		sin6->port = o->port;
		__builtin_memcpy(sin6->addr, o->addr, 16);
		ctx->optlen = sizeof(*sin6);
	}
	ctx->retval = 0;
	weir_count_array(&mesh_counters, counter);
	return PROCEED;
}

/* The proxy's inbound listener of `netns` for `family` (4 or 6); a reference, or NULL. */
static __always_inline struct bpf_sock *inbound_listener(__u64 netns, __u16 port, __u16 family)
{
	struct weir_mesh_listener_key k = {};

	k.netns_cookie = netns;
	k.port = port;
	k.family = family;
	return bpf_map_lookup_elem(&mesh_listeners, &k);
}

/*
 * A connection made in this namespace: from a loopback address, or from the very address it
 * goes to (the source the kernel picks for a connection to a local address). Such
 * connections never pass PREROUTING's nat rules either; the proxy's own connections to the
 * app (to 127.0.0.1, or to the pod's address, or from 127.0.0.6 as Istio's) are among them.
 * (The ingress ifindex does not tell: to a non-loopback local address it is not lo's.)
 */
static __always_inline int from_this_host(struct bpf_sk_lookup *ctx)
{
	if (ctx->family == WEIR_AF_INET)
		return is_loopback4(ctx->remote_ip4) || ctx->remote_ip4 == ctx->local_ip4;
	{
		__u32 r0 = ctx->remote_ip6[0], r1 = ctx->remote_ip6[1];
		__u32 r2 = ctx->remote_ip6[2], r3 = ctx->remote_ip6[3];

		if (r0 == 0 && r1 == 0 && r2 == 0 && r3 == weir_ntohl(1))
			return 1;
		if (r0 == 0 && r1 == 0 && r2 == MAPPED_WORD && is_loopback4(r3))
			return 1;
		return r0 == ctx->local_ip6[0] && r1 == ctx->local_ip6[1] &&
		       r2 == ctx->local_ip6[2] && r3 == ctx->local_ip6[3];
	}
}

SEC("sk_lookup")
int mesh_sk_lookup(struct bpf_sk_lookup *ctx)
{
	__u64 netns = WEIR_MESH_NETNS_PLACEHOLDER;
	const struct weir_mesh_inbound *in;
	struct bpf_sock *sk;
	long err;

	if (ctx->protocol != WEIR_IPPROTO_TCP || ctx->ingress_ifindex == LOOPBACK_IFINDEX ||
	    from_this_host(ctx))
		return SK_PASS;
	in = bpf_map_lookup_elem(&mesh_inbound, &netns);
	if (!in || !inbound_captures(netns, in, (__u16)ctx->local_port))
		return SK_PASS;
	/* An IPv4 connection may go to an IPv4 listener or to a dual-stack IPv6 one. */
	sk = inbound_listener(netns, in->inbound_port, ctx->family == WEIR_AF_INET ? 4 : 6);
	if (sk) {
		err = bpf_sk_assign(ctx, sk, 0);
		bpf_sk_release(sk);
	} else {
		err = -1;
	}
	if (err && ctx->family == WEIR_AF_INET) {
		sk = inbound_listener(netns, in->inbound_port, 6);
		if (sk) {
			err = bpf_sk_assign(ctx, sk, 0);
			bpf_sk_release(sk);
		}
	}
	if (err) {
		/* Fail closed, as REDIRECT to a port nothing listens on: the client gets a RST. */
		weir_count_array(&mesh_counters, WEIR_MESH_COUNT_INBOUND_REFUSED);
		return SK_DROP;
	}
	weir_count_array(&mesh_counters, WEIR_MESH_COUNT_INBOUND);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
