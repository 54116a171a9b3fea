//! weir: an eBPF network dataplane for Linux.
//!
//! # Architecture
//! The layers, bottom up, and why they are separate:
//! - [`sys`]: every syscall (`bpf(2)`, rtnetlink, bpffs, cgroup, netns) behind thin typed
//!   wrappers. It is the only place with `unsafe`, so auditing weir's contact with the kernel
//!   means reading one folder.
//! - [`btf`], [`object`]: parsing and verifying BPF objects with no syscalls at all (aya-obj does
//!   the ELF and relocation work), so a bad object is refused before anything is created, and the
//!   checks are unit-tested and fuzzed without a kernel.
//! - [`maps`], [`attach`]: kernel objects with weir's rules on top: maps reused only when
//!   compatible with `maps-schema`, one file per attach kind with its bpf_link path and its
//!   netlink fallback, never touching programs weir did not attach.
//! - [`dataplane`], [`status`]: load / apply / unload / status as reconcile steps over the pins.
//!   The pins *are* the state: there is no daemon and no state file.
//! - [`config`]: the config language, parsed by hand with line:column errors.
//! - [`policy`]: the network policy compiler (config → per-endpoint classifiers), pure like
//!   the prefilter's table planner.
//! - [`cli`], [`demo`], [`sandbox`]: the `weir` command; only the CLI prints.

// Only sys/ may use `unsafe`; the compiler holds every other module to that.
#![deny(unsafe_code)]

pub mod attach;
pub mod btf;
pub mod cli;
pub mod config;
pub mod contents;
pub mod dataplane;
pub mod demo;
pub mod demo_fastpath;
pub mod embedded;
pub mod error;
pub mod events;
pub mod fastpath;
pub mod lb;
pub mod maps;
pub mod mesh;
pub mod object;
pub mod policy;
pub mod policy_maps;
pub mod prefilter;
pub mod sandbox;
pub mod status;
#[allow(unsafe_code)]
pub mod sys;
#[cfg(test)]
mod tests_fake;
pub mod topology;

pub use dataplane::{Dataplane, DEFAULT_PIN_DIR};
pub use error::Error;
