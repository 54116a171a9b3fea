/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * A deliberately INVALID XDP program, for the loader's test that a verifier rejection
 * carries the verifier log. It compiles, passes weir's schema check (it uses
 * if_counters as the schema defines it), and the kernel verifier rejects it because it
 * reads packet data without checking it against data_end.
 */
#include "weir_bpf.h"
#include "weir_maps.h"
#include "weir_count.h"

WEIR_DEFINE_MAP_IF_COUNTERS;

SEC("xdp")
int xdp_invalid(struct xdp_md *ctx)
{
	__u8 *data = (__u8 *)(long)ctx->data;

	weir_count_slot(&if_counters, WEIR_IF_SLOT_NONE, WEIR_HOOK_TC_INGRESS, 1);
	/* BUG ON PURPOSE: no `data + 1 > data_end` check before this read. */
	return data[0] ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
