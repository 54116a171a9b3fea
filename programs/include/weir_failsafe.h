/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * Failsafe ports (`failsafe in`): the failsafe_in bitmap the XDP prefilter and the TC policy
 * both check first, so neither a deny list nor a policy can lock out SSH or DHCP. The including
 * program defines the failsafe_in map (WEIR_DEFINE_MAP_FAILSAFE_IN).
 */
#ifndef WEIR_FAILSAFE_H
#define WEIR_FAILSAFE_H

#include "weir_bpf.h"
#include "weir_maps.h"
#include "weir_net.h"

/* The first failsafe_in word of IP protocol `proto`, or -1 for a protocol without ports. */
static __always_inline int weir_failsafe_base(__u8 proto)
{
	switch (proto) {
	case WEIR_IPPROTO_TCP:
		return WEIR_FAILSAFE_SLOT_TCP * WEIR_FAILSAFE_WORDS_PER_SLOT;
	case WEIR_IPPROTO_UDP:
		return WEIR_FAILSAFE_SLOT_UDP * WEIR_FAILSAFE_WORDS_PER_SLOT;
	case WEIR_IPPROTO_SCTP:
		return WEIR_FAILSAFE_SLOT_SCTP * WEIR_FAILSAFE_WORDS_PER_SLOT;
	default:
		return -1;
	}
}

/* Whether destination `port` (host order) is a failsafe port of the protocol at `base`. */
static __always_inline int weir_failsafe_port(__u32 base, __u16 port)
{
	__u32 word = base + (port >> 6);
	__u64 *bits = bpf_map_lookup_elem(&failsafe_in, &word);

	return bits && ((*bits >> (port & 63)) & 1);
}

#endif /* WEIR_FAILSAFE_H */
