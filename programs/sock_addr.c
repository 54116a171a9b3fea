/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * Connect-time load balancing (cgroup sock_addr hooks).
 *
 * connect4/6 and sendmsg4/6 look the destination up in lb_services; a service's destination
 * (its VIP) is rewritten to a backend picked at random by weight (a random slot of the
 * service's lb_slots table), or the one the client's network namespace used last when the
 * service has affinity. The original VIP is remembered (for connected sockets in lb_conn
 * under the socket's cookie, deleted again by sock_release when the socket closes, or in the
 * socket's own storage, lb_sock, when lb_conn is full; for unconnected UDP in the lb_revnat
 * LRU under the cookie and the backend address), so recvmsg4/6 (UDP replies) and
 * getpeername4/6 report the VIP again. No packet is ever translated: only the socket's idea
 * of its peer.
 *
 * Addresses are handled as 16 bytes throughout, IPv4 as v4-mapped IPv6 (::ffff:a.b.c.d):
 * a v4-mapped destination on an IPv6 socket (connect6) then matches the IPv4 service and gets
 * its IPv4 backend back v4-mapped.
 *
 * Every hook also counts its calls in sock_counters. Programs return 1 to let the call go on;
 * 0 fails it, with the errno set by bpf_set_retval (ECONNREFUSED for a service without a usable
 * backend) instead of the default EPERM.
 */
#include "weir_bpf.h"
#include "weir_maps.h"
#include "weir_count.h"

WEIR_DEFINE_MAP_SOCK_COUNTERS;
WEIR_DEFINE_MAP_LB_SERVICES;
WEIR_DEFINE_MAP_LB_SLOTS;
WEIR_DEFINE_MAP_LB_BACKENDS;
WEIR_DEFINE_MAP_LB_REVNAT;
WEIR_DEFINE_MAP_LB_SOCK;
WEIR_DEFINE_MAP_LB_CONN;
WEIR_DEFINE_MAP_LB_AFFINITY;
WEIR_DEFINE_MAP_LB_EXCLUDE;
WEIR_DEFINE_MAP_LB_STATS;

#define SOCK_ADDR_ALLOW 1
#define SOCK_ADDR_FAIL 0

/* errno value (asm-generic/errno.h). */
#define WEIR_ECONNREFUSED 111

#define NSEC_PER_SEC 1000000000ULL

enum lb_verdict {
	LB_PASS,    /* not a service (or opted out): leave the address alone */
	LB_REWRITE, /* rewrite to the picked backend */
	LB_REFUSE,  /* a service with no usable backend */
};

/* `ip4` (network order, as user_ip4 holds it) as a v4-mapped IPv6 address. */
static __always_inline void v4_mapped(__u8 out[16], __u32 ip4)
{
	__builtin_memset(out, 0, 10);
	out[10] = 0xff;
	out[11] = 0xff;
	__builtin_memcpy(out + 12, &ip4, 4);
}

/* True when the current task's cgroup, or one of its ancestors, is in lb_exclude. */
static __always_inline int lb_excluded(void)
{
	for (int level = 0; level < WEIR_LB_MAX_CGROUP_DEPTH; level++) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(level);

		if (!id)
			return 0; /* below the task's own cgroup */
		if (bpf_map_lookup_elem(&lb_exclude, &id))
			return 1;
	}
	return 0;
}

/* One more connection (or datagram) for a backend: user space creates its counter with it. */
static __always_inline void lb_count(__u32 backend_id)
{
	struct weir_counter *c = bpf_map_lookup_elem(&lb_stats, &backend_id);

	if (c)
		c->packets += 1; /* per-CPU: no atomics */
}

/*
 * Chooses the backend for a connection or datagram to `key`; on LB_REWRITE `*out` holds it.
 * The exclusion walk only runs for service destinations, so other traffic pays one lookup.
 */
static __always_inline int lb_pick(void *ctx, const struct weir_lb_svc_key *key,
				   struct weir_lb_backend *out)
{
	struct weir_lb_svc *svc = bpf_map_lookup_elem(&lb_services, key);
	struct weir_lb_affinity_key akey = {};
	struct weir_lb_backend *be = 0;
	__u32 backend_id = 0;
	__u64 now = 0;
	__u32 slots, svc_id, affinity;

	if (!svc || (svc->flags & WEIR_LB_SVC_EXCLUDED))
		return LB_PASS;
	/* The cgroup walk only when some cgroup is excluded: it costs about 0.4 µs a connect. */
	if ((svc->flags & WEIR_LB_SVC_CHECK_CGROUPS) && lb_excluded())
		return LB_PASS;
	slots = svc->slots;
	if (slots == 0 || slots > WEIR_LB_MAX_SLOTS)
		return LB_REFUSE;
	svc_id = svc->id;
	affinity = svc->flags & WEIR_LB_SVC_AFFINITY;

	if (affinity) {
		struct weir_lb_affinity *a;

		now = bpf_ktime_get_ns();
		akey.netns_cookie = bpf_get_netns_cookie(ctx);
		akey.service = svc_id;
		a = bpf_map_lookup_elem(&lb_affinity, &akey);
		/* last_ns may be ahead of `now` if another CPU just wrote it: still fresh. */
		if (a && (a->last_ns >= now ||
			  now - a->last_ns <= (__u64)svc->affinity_timeout_s * NSEC_PER_SEC)) {
			backend_id = a->backend;
			be = bpf_map_lookup_elem(&lb_backends, &backend_id);
			/* A backend since removed, moved or drained gets no new connections. */
			if (be && (be->service != svc_id || (be->flags & WEIR_LB_BACKEND_DRAINED)))
				be = 0;
		}
	}
	if (!be) {
		struct weir_lb_slot_key skey = {
			.service = svc_id,
			.slot = bpf_get_prandom_u32() % slots,
		};
		__u32 *id = bpf_map_lookup_elem(&lb_slots, &skey);

		if (!id)
			return LB_REFUSE;
		backend_id = *id;
		be = bpf_map_lookup_elem(&lb_backends, &backend_id);
		if (!be)
			return LB_REFUSE;
	}
	if (affinity) {
		struct weir_lb_affinity val = { .backend = backend_id, .last_ns = now };

		bpf_map_update_elem(&lb_affinity, &akey, &val, BPF_ANY);
	}
	lb_count(backend_id);
	*out = *be;
	return LB_REWRITE;
}

/*
 * Remembers that this socket's `be` stands for the VIP `vip`, for recvmsg and getpeername.
 * A connected socket (connect: TCP, connected UDP) has one peer, kept in lb_conn under its
 * cookie until sock_release deletes it: never evicted, so it holds however many sockets are
 * open, up to the map's capacity. Past that, the socket's own storage holds it (never full,
 * but creating it costs about 0.9 µs a connect against 0.1 µs for the hash entry). An
 * unconnected UDP socket may send to many VIPs: those go to the lb_revnat LRU.
 */
static __always_inline void lb_remember(struct bpf_sock_addr *ctx,
					const struct weir_lb_backend *be,
					const struct weir_lb_svc_key *vip, int connected)
{
	if (connected) {
		struct weir_lb_sock v = {};
		__u64 cookie = bpf_get_socket_cookie(ctx);
		struct weir_lb_sock *s;

		__builtin_memcpy(v.backend_addr, be->addr, 16);
		__builtin_memcpy(v.vip_addr, vip->addr, 16);
		v.backend_port = be->port;
		v.vip_port = vip->port;
		if (bpf_map_update_elem(&lb_conn, &cookie, &v, BPF_ANY) == 0)
			return;
		s = bpf_sk_storage_get(&lb_sock, ctx->sk, (void *)0, BPF_SK_STORAGE_GET_F_CREATE);
		if (s)
			*s = v;
		return;
	}

	struct weir_lb_revnat_key k = {};
	struct weir_lb_revnat v = {};

	k.cookie = bpf_get_socket_cookie(ctx);
	__builtin_memcpy(k.addr, be->addr, 16);
	k.port = be->port;
	__builtin_memcpy(v.addr, vip->addr, 16);
	v.port = vip->port;
	bpf_map_update_elem(&lb_revnat, &k, &v, BPF_ANY);
}

/* A socket re-connected to a non-service address must not keep reporting an old VIP. */
static __always_inline void lb_forget(struct bpf_sock_addr *ctx, int connected)
{
	if (!connected)
		return;
	__u64 cookie = bpf_get_socket_cookie(ctx);

	/* A lookup first: most sockets have no entry, and a lookup takes no bucket lock. */
	if (bpf_map_lookup_elem(&lb_conn, &cookie))
		bpf_map_delete_elem(&lb_conn, &cookie);
	if (bpf_sk_storage_get(&lb_sock, ctx->sk, (void *)0, 0))
		bpf_sk_storage_delete(&lb_sock, ctx->sk);
}

/* The destination as 16 bytes: user_ip6 for v6 hooks, user_ip4 v4-mapped for v4 hooks. */
static __always_inline void dest_read(struct bpf_sock_addr *ctx, int is6, __u8 out[16])
{
	if (is6) {
		__u32 w[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2],
			       ctx->user_ip6[3] };

		__builtin_memcpy(out, w, 16);
	} else {
		v4_mapped(out, ctx->user_ip4);
	}
}

static __always_inline void dest_write(struct bpf_sock_addr *ctx, int is6, const __u8 addr[16],
				       __u16 port)
{
	if (is6) {
		__u32 w[4];

		__builtin_memcpy(w, addr, 16);
		ctx->user_ip6[0] = w[0];
		ctx->user_ip6[1] = w[1];
		ctx->user_ip6[2] = w[2];
		ctx->user_ip6[3] = w[3];
	} else {
		__u32 ip4;

		__builtin_memcpy(&ip4, addr + 12, 4);
		ctx->user_ip4 = ip4;
	}
	ctx->user_port = port;
}

/*
 * connect and sendmsg. v4 hooks see IPv4 sockets (and v4-mapped destinations of IPv6 UDP
 * sockets); v6 hooks see IPv6 destinations and v4-mapped ones, balanced as IPv4. `is6` and
 * `connected` are constants per program, so each program keeps only its own context accesses.
 */
static __always_inline int lb_forward(struct bpf_sock_addr *ctx, int is6, int connected)
{
	struct weir_lb_svc_key key = {};
	struct weir_lb_backend be;
	int verdict;

	dest_read(ctx, is6, key.addr);
	key.port = (__u16)ctx->user_port;
	key.proto = (__u8)ctx->protocol;
	verdict = lb_pick(ctx, &key, &be);
	if (verdict == LB_PASS) {
		lb_forget(ctx, connected);
		return SOCK_ADDR_ALLOW;
	}
	if (verdict == LB_REFUSE) {
		bpf_set_retval(-WEIR_ECONNREFUSED);
		return SOCK_ADDR_FAIL;
	}
	dest_write(ctx, is6, be.addr, be.port);
	lb_remember(ctx, &be, &key, connected);
	return SOCK_ADDR_ALLOW;
}

/* True when `s` remembers the backend `addr`:`port` (the socket's peer now) and its VIP. */
static __always_inline int lb_sock_matches(const struct weir_lb_sock *s, const __u8 addr[16],
					   __u16 port)
{
	return s && s->backend_port == port && __builtin_memcmp(s->backend_addr, addr, 16) == 0;
}

/*
 * recvmsg / getpeername: a backend address this socket was connected or sent to becomes its
 * VIP again. lb_conn (or, past its capacity, the socket's own storage) answers for its
 * connected peer; the LRU for what an unconnected UDP socket sent (and for sockets connected
 * before an upgrade from a weir that kept every socket there).
 */
static __always_inline void lb_reverse(struct bpf_sock_addr *ctx, int is6)
{
	struct weir_lb_revnat_key k = {};
	struct weir_lb_sock *s;

	dest_read(ctx, is6, k.addr);
	k.port = (__u16)ctx->user_port;
	k.cookie = bpf_get_socket_cookie(ctx);
	s = bpf_map_lookup_elem(&lb_conn, &k.cookie);
	if (!lb_sock_matches(s, k.addr, k.port))
		s = bpf_sk_storage_get(&lb_sock, ctx->sk, (void *)0, 0);
	if (lb_sock_matches(s, k.addr, k.port)) {
		dest_write(ctx, is6, s->vip_addr, s->vip_port);
		return;
	}
	struct weir_lb_revnat *v;

	v = bpf_map_lookup_elem(&lb_revnat, &k);
	if (v)
		dest_write(ctx, is6, v->addr, v->port);
}

SEC("cgroup/connect4")
int sock_connect4(struct bpf_sock_addr *ctx)
{
	weir_count_array(&sock_counters, WEIR_SOCK_HOOK_CONNECT4);
	return lb_forward(ctx, 0, 1);
}

SEC("cgroup/connect6")
int sock_connect6(struct bpf_sock_addr *ctx)
{
	weir_count_array(&sock_counters, WEIR_SOCK_HOOK_CONNECT6);
	return lb_forward(ctx, 1, 1);
}

SEC("cgroup/sendmsg4")
int sock_sendmsg4(struct bpf_sock_addr *ctx)
{
	weir_count_array(&sock_counters, WEIR_SOCK_HOOK_SENDMSG4);
	return lb_forward(ctx, 0, 0);
}

SEC("cgroup/sendmsg6")
int sock_sendmsg6(struct bpf_sock_addr *ctx)
{
	weir_count_array(&sock_counters, WEIR_SOCK_HOOK_SENDMSG6);
	return lb_forward(ctx, 1, 0);
}

/* recvmsg and getpeername cannot fail the call: the verifier only accepts a return of 1. */
SEC("cgroup/recvmsg4")
int sock_recvmsg4(struct bpf_sock_addr *ctx)
{
	weir_count_array(&sock_counters, WEIR_SOCK_HOOK_RECVMSG4);
	lb_reverse(ctx, 0);
	return SOCK_ADDR_ALLOW;
}

SEC("cgroup/recvmsg6")
int sock_recvmsg6(struct bpf_sock_addr *ctx)
{
	weir_count_array(&sock_counters, WEIR_SOCK_HOOK_RECVMSG6);
	lb_reverse(ctx, 1);
	return SOCK_ADDR_ALLOW;
}

SEC("cgroup/getpeername4")
int sock_getpeername4(struct bpf_sock_addr *ctx)
{
	weir_count_array(&sock_counters, WEIR_SOCK_HOOK_GETPEERNAME4);
	lb_reverse(ctx, 0);
	return SOCK_ADDR_ALLOW;
}

SEC("cgroup/getpeername6")
int sock_getpeername6(struct bpf_sock_addr *ctx)
{
	weir_count_array(&sock_counters, WEIR_SOCK_HOOK_GETPEERNAME6);
	lb_reverse(ctx, 1);
	return SOCK_ADDR_ALLOW;
}

/*
 * Every inet socket of the cgroup that closes: its lb_conn entry, if connect() made one, goes
 * with it (socket cookies are never reused, so a missed delete would only waste an entry).
 */
SEC("cgroup/sock_release")
int sock_release(struct bpf_sock *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);

	weir_count_array(&sock_counters, WEIR_SOCK_HOOK_SOCK_RELEASE);
	if (bpf_map_lookup_elem(&lb_conn, &cookie))
		bpf_map_delete_elem(&lb_conn, &cookie);
	return 1;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
