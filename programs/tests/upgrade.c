/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * For the loader's upgrade test: "the next version" of xdp_prefilter, tc_ingress and tc_egress.
 * Same names, maps and verdicts (policy, conntrack and fast path included), different code (they
 * count 2 bytes per packet more than the frame length, which a test can see), so weir must
 * replace the attached programs in place rather than treat the load as a no-op. They use
 * exactly xdp.c's and tc.c's maps, so the upgrade reuses every map (conntrack included) and
 * creates none.
 */
#include "weir_bpf.h"
#include "weir_maps.h"

/* The TC programs of tc.c, counting 2 bytes more per packet; they define if_counters and
 * failsafe_in, which the XDP program shares. */
#define WEIR_TC_EXTRA_BYTES 2
#include "weir_tc.h"

WEIR_DEFINE_MAP_PREFILTER_V4;
WEIR_DEFINE_MAP_DENY_V4_ROOT;
WEIR_DEFINE_MAP_DENY_V4_NODES;
WEIR_DEFINE_MAP_PREFILTER_V6;
WEIR_DEFINE_MAP_PREFILTER_STATS;

#include "weir_prefilter.h"

SEC("xdp")
int xdp_prefilter(struct xdp_md *ctx)
{
	return weir_prefilter(ctx, 2);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
