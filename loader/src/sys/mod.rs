//! Every syscall weir makes, and the only module with `unsafe`. Each wrapper is thin and typed,
//! and its error names the call that failed.

pub mod bpf;
pub mod bpffs;
pub mod caps;
pub mod cgroup;
#[cfg(test)]
pub(crate) mod fake;
pub mod netlink;
pub mod netns;
pub mod ringbuf;
pub mod sockopt;
