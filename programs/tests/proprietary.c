/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * For the loader's verification tests: a program whose declared licence is not
 * GPL-compatible. weir must refuse it before load, naming the licence.
 */
#include "weir_bpf.h"

SEC("xdp")
int xdp_proprietary(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Proprietary";
