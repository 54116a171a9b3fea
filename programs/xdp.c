/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * XDP prefilter for host interfaces: drops packets from denied source prefixes (an IPv4 multibit
 * table, an IPv6 LPM trie), except to failsafe ports, and counts every verdict. See
 * include/weir_prefilter.h.
 */
#include "weir_bpf.h"
#include "weir_maps.h"

WEIR_DEFINE_MAP_PREFILTER_V4;
WEIR_DEFINE_MAP_DENY_V4_ROOT;
WEIR_DEFINE_MAP_DENY_V4_NODES;
WEIR_DEFINE_MAP_PREFILTER_V6;
WEIR_DEFINE_MAP_PREFILTER_STATS;
WEIR_DEFINE_MAP_FAILSAFE_IN;

#include "weir_prefilter.h"

SEC("xdp")
int xdp_prefilter(struct xdp_md *ctx)
{
	/* Linear frame length; weir does not load multi-buffer (xdp.frags) programs. */
	return weir_prefilter(ctx, 0);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
