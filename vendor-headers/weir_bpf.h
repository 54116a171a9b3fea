/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * weir's own declaration of kernel ABI facts for BPF programs: section and map
 * definition macros, map types and update flags, and the helper calls weir uses.
 * Written for weir from the uapi values (checked against this kernel's BTF), not
 * copied from kernel or libbpf headers; same licence as weir's BPF programs.
 * Include this one file; it pulls in weir_types.h and weir_ctx.h.
 */
#ifndef WEIR_BPF_H
#define WEIR_BPF_H

#include "weir_types.h"
#include "weir_ctx.h"

/* ---- Object layout conventions (what loaders such as aya-obj look for) ---- */

/* Put a program, map or the licence string into the named ELF section. */
#define SEC(name) __attribute__((section(name), used))

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/*
 * BTF map definitions: loaders read a map's attributes from the BTF of its struct.
 * An integer attribute is the length of the array a member points to; a type
 * attribute is the pointed-to type of a member. Neither takes space at run time.
 */
#define __uint(name, val) int (*name)[val]
#define __type(name, val) __typeof__(val) *name

/* ---- Map types (enum bpf_map_type): the ones maps-schema knows ---- */

#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PERCPU_HASH 5
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_LRU_HASH 9
#define BPF_MAP_TYPE_LRU_PERCPU_HASH 10
#define BPF_MAP_TYPE_LPM_TRIE 11
#define BPF_MAP_TYPE_SOCKHASH 18
#define BPF_MAP_TYPE_SK_STORAGE 24
#define BPF_MAP_TYPE_RINGBUF 27

/* Map creation flags. */
#define BPF_F_NO_PREALLOC (1U << 0)

/* bpf_map_update_elem() flags. */
#define BPF_ANY 0     /* create or update */
#define BPF_NOEXIST 1 /* create only */
#define BPF_EXIST 2   /* update only */

/*
 * ---- Helper calls ----
 * A helper is called by number (enum bpf_func_id). A call through a constant function
 * pointer whose value is that number compiles to `call <number>`.
 * Only the helpers weir's programs call are declared; add more by their id.
 */

/* 1: pointer to the value for key, or NULL. Per-CPU maps give this CPU's value. */
static void *(*const bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;

/* 2: create/update the entry for key (flags: BPF_ANY/NOEXIST/EXIST); 0 or -errno. */
static long (*const bpf_map_update_elem)(void *map, const void *key, const void *value,
					 __u64 flags) = (void *)2;

/* 3: delete the entry for key; 0 or -errno. */
static long (*const bpf_map_delete_elem)(void *map, const void *key) = (void *)3;

/* 5: CLOCK_MONOTONIC in nanoseconds. */
static __u64 (*const bpf_ktime_get_ns)(void) = (void *)5;

/* 160: CLOCK_MONOTONIC_COARSE in nanoseconds (tick resolution, cheaper than bpf_ktime_get_ns). */
static __u64 (*const bpf_ktime_get_coarse_ns)(void) = (void *)160;

/* 7: a pseudo-random 32-bit number (not for cryptography). */
static __u32 (*const bpf_get_prandom_u32)(void) = (void *)7;

/*
 * 26: copy `len` bytes at packet offset `offset` (linear or paged data alike) to `to`;
 * 0 or -errno (past the end of the packet).
 */
static long (*const bpf_skb_load_bytes)(const void *skb, __u32 offset, void *to,
					__u32 len) = (void *)26;

/*
 * 46: the socket's cookie, a 64-bit id unique to the socket for the life of the system.
 * Program types pass their own context (cgroup sock_addr: struct bpf_sock_addr *).
 */
static __u64 (*const bpf_get_socket_cookie)(void *ctx) = (void *)46;

/*
 * 107: the socket's value in a BPF_MAP_TYPE_SK_STORAGE map, created zeroed when flags has
 * BPF_SK_STORAGE_GET_F_CREATE; NULL when absent (or on failure to create).
 */
static void *(*const bpf_sk_storage_get)(void *map, void *sk, void *value,
					 __u64 flags) = (void *)107;
#define BPF_SK_STORAGE_GET_F_CREATE (1ULL << 0)

/* 108: drops the socket's value from a BPF_MAP_TYPE_SK_STORAGE map; 0 or -ENOENT. */
static long (*const bpf_sk_storage_delete)(void *map, void *sk) = (void *)108;

/*
 * 70: add the sock_ops context's socket to a BPF_MAP_TYPE_SOCKHASH under key (flags as
 * bpf_map_update_elem); allowed at ESTABLISHED and TCP_LISTEN callbacks; 0 or -errno.
 */
static long (*const bpf_sock_hash_update)(void *skops, void *map, void *key,
					  __u64 flags) = (void *)70;

/* 86: releases a socket reference (e.g. one a sockhash lookup returned). */
static long (*const bpf_sk_release)(void *sk) = (void *)86;

/* 122: the cookie of the network namespace of the context's socket (sock_addr: its ctx). */
static __u64 (*const bpf_get_netns_cookie)(void *ctx) = (void *)122;

/*
 * 123: the cgroup v2 id of the current task's ancestor at `level` (0: the root); 0 when the
 * task's cgroup is less deep than `level`. The id is the cgroup directory's inode number.
 */
static __u64 (*const bpf_get_current_ancestor_cgroup_id)(int level) = (void *)123;

/*
 * 124 (sk_lookup): the socket the lookup selects (a TCP one must be listening); 0 or -errno
 * (-EAFNOSUPPORT: an IPv6-only socket for an IPv4 lookup).
 */
static long (*const bpf_sk_assign)(void *ctx, void *sk, __u64 flags) = (void *)124;

/* 130: copy `size` bytes of `data` into a ring buffer map as one record; 0 or -errno (full). */
static long (*const bpf_ringbuf_output)(void *ringbuf, void *data, __u64 size,
					__u64 flags) = (void *)130;

/*
 * 187: the value the hooked syscall returns when the program returns 0 (cgroup programs).
 * Without it a refusing sock_addr program makes the call fail with EPERM.
 */
static int (*const bpf_set_retval)(int retval) = (void *)187;

#endif /* WEIR_BPF_H */
