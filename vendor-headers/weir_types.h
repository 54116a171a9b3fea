/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * weir's own declaration of kernel ABI facts: the fixed-width integer types the BPF
 * uapi is written in. Written for weir (not copied from kernel or libbpf headers);
 * same licence as weir's BPF programs.
 */
#ifndef WEIR_TYPES_H
#define WEIR_TYPES_H

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef signed short __s16;
typedef unsigned int __u32;
typedef signed int __s32;
typedef unsigned long long __u64;
typedef signed long long __s64;

/* Network byte order; the names only document intent (no sparse checking here). */
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u64 __be64;

_Static_assert(sizeof(__u8) == 1 && sizeof(__u16) == 2, "integer widths");
_Static_assert(sizeof(__u32) == 4 && sizeof(__u64) == 8, "integer widths");
_Static_assert(sizeof(void *) == 8, "BPF context pointers are 64-bit");

#endif /* WEIR_TYPES_H */
