/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * TC programs for ingress and egress: packet/byte counters per interface and hook, the
 * stateful network policy of include/weir_policy.h for interfaces that are policy endpoints,
 * and the fast path of include/weir_fastpath.h.
 * Allowed packets and packets weir has no verdict on return TC_ACT_UNSPEC, so the next TC
 * program (TCX or clsact) and netfilter still see them; denied ones TC_ACT_SHOT.
 */
#include "weir_tc.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";
