//! The service mesh's cgroup hooks: its own `connect4`/`connect6` and `getpeername4`/`6`
//! programs (beside the load balancer's, so they need pin names of their own), `sockops` (TCP
//! socket events) and `getsockopt`. Attached exactly like the sock_addr hooks: a pinned `BPF_LINK_CREATE` on the
//! cgroup v2 directory, multi-attach beside anybody else's programs, no legacy fallback.

use super::{sock_addr, Outcome, Pins};
use crate::error::Error;
use crate::object::LoadedProgram;
use crate::sys::bpf::consts;

/// Where on a cgroup a mesh program attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MeshHook {
    /// `BPF_CGROUP_INET4_CONNECT`: outbound IPv4 redirect.
    Connect4,
    /// `BPF_CGROUP_INET6_CONNECT`: outbound IPv6 (and v4-mapped) redirect.
    Connect6,
    /// `BPF_CGROUP_SOCK_OPS`: records a redirected connection once established.
    SockOps,
    /// `BPF_CGROUP_GETSOCKOPT`: answers `SO_ORIGINAL_DST`.
    GetSockopt,
    /// `BPF_CGROUP_INET4_GETPEERNAME`: a redirected client sees its original destination.
    GetPeerName4,
    /// `BPF_CGROUP_INET6_GETPEERNAME`: the same for IPv6 sockets.
    GetPeerName6,
}

impl MeshHook {
    /// Every mesh hook, in attach order.
    pub const ALL: [MeshHook; 6] = [
        Self::SockOps,
        Self::GetSockopt,
        Self::GetPeerName4,
        Self::GetPeerName6,
        Self::Connect4,
        Self::Connect6,
    ];

    /// The kernel's `enum bpf_attach_type` value.
    pub fn attach_type(self) -> u32 {
        match self {
            Self::Connect4 => consts::BPF_CGROUP_INET4_CONNECT,
            Self::Connect6 => consts::BPF_CGROUP_INET6_CONNECT,
            Self::SockOps => consts::BPF_CGROUP_SOCK_OPS,
            Self::GetSockopt => consts::BPF_CGROUP_GETSOCKOPT,
            Self::GetPeerName4 => consts::BPF_CGROUP_INET4_GETPEERNAME,
            Self::GetPeerName6 => consts::BPF_CGROUP_INET6_GETPEERNAME,
        }
    }

    /// The name in pins and messages, e.g. `mesh-connect4`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect4 => "mesh-connect4",
            Self::Connect6 => "mesh-connect6",
            Self::SockOps => "mesh-sockops",
            Self::GetSockopt => "mesh-getsockopt",
            Self::GetPeerName4 => "mesh-getpeername4",
            Self::GetPeerName6 => "mesh-getpeername6",
        }
    }
}

pub(crate) fn attach(
    pins: &Pins,
    cgroup: &str,
    hook: MeshHook,
    prog: &LoadedProgram,
) -> Result<Outcome, Error> {
    sock_addr::attach_cgroup_link(pins, cgroup, hook.name(), hook.attach_type(), prog)
}
