/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * For the loader's verification tests: a program in a section aya-obj parses but weir does not
 * attach (a socket filter). weir must refuse the object, naming the program and section.
 */
#include "weir_bpf.h"

SEC("socket")
int sock_filter_prog(struct __sk_buff *skb)
{
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
