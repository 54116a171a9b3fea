//! End-to-end tests on the real kernel. Every test builds its own sandbox (two network namespaces,
//! a veth pair, a cgroup, a pin dir, all with unique names) and removes it again, also when it
//! fails. They need root, bpffs, cgroup v2, BTF, XDP on veth, TCX and cgroup links (kernel 6.6+):
//! a missing prerequisite fails the test, it does not skip it.

mod common;
mod fastpath;
mod lb;
mod lifecycle;
mod loader;
mod mesh;
mod policy;
mod prefilter;
mod prefilter_prog;
