/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/* cgroup connect4/connect6 call counters: count, allow, never rewrite the address. */
#include "weir_bpf.h"
#include "weir_maps.h"
#include "weir_count.h"

WEIR_DEFINE_MAP_SOCK_COUNTERS;

/* sock_addr programs return 1 to let the call proceed (0 would fail it with EPERM). */
#define SOCK_ADDR_ALLOW 1

SEC("cgroup/connect4")
int sock_connect4(struct bpf_sock_addr *ctx)
{
	(void)ctx;
	weir_count_array(&sock_counters, WEIR_SOCK_HOOK_CONNECT4);
	return SOCK_ADDR_ALLOW;
}

SEC("cgroup/connect6")
int sock_connect6(struct bpf_sock_addr *ctx)
{
	(void)ctx;
	weir_count_array(&sock_counters, WEIR_SOCK_HOOK_CONNECT6);
	return SOCK_ADDR_ALLOW;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
