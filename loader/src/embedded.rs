//! The BPF objects built from `programs/*.c` and embedded in the binary, so that what runs is
//! exactly what was reviewed and committed (CI checks the objects match their sources).

use crate::object::EmbeddedObject;

/// Every object weir loads, in load order.
pub const OBJECTS: &[EmbeddedObject] = &[
    EmbeddedObject {
        name: "xdp.o",
        bytes: include_bytes!("../../programs/xdp.o"),
    },
    EmbeddedObject {
        name: "tc.o",
        bytes: include_bytes!("../../programs/tc.o"),
    },
    EmbeddedObject {
        name: "sock_addr.o",
        bytes: include_bytes!("../../programs/sock_addr.o"),
    },
    EmbeddedObject {
        name: "mesh.o",
        bytes: include_bytes!("../../programs/mesh.o"),
    },
];

/// The program attached at XDP on host interfaces: the prefilter (deny list, failsafes).
pub const PROG_XDP: &str = "xdp_prefilter";
/// The program attached at TC ingress.
pub const PROG_TC_INGRESS: &str = "tc_ingress";
/// The program attached at TC egress.
pub const PROG_TC_EGRESS: &str = "tc_egress";
/// The programs attached to the connect-time cgroup, with their hooks: connect-time load
/// balancing (connect, unconnected UDP sendmsg) and its reverse translation (recvmsg, getpeername).
pub const PROGS_SOCK: &[(&str, crate::object::SockAddrHook)] = &[
    ("sock_connect4", crate::object::SockAddrHook::Connect4),
    ("sock_connect6", crate::object::SockAddrHook::Connect6),
    ("sock_sendmsg4", crate::object::SockAddrHook::SendMsg4),
    ("sock_sendmsg6", crate::object::SockAddrHook::SendMsg6),
    ("sock_recvmsg4", crate::object::SockAddrHook::RecvMsg4),
    ("sock_recvmsg6", crate::object::SockAddrHook::RecvMsg6),
    (
        "sock_getpeername4",
        crate::object::SockAddrHook::GetPeerName4,
    ),
    (
        "sock_getpeername6",
        crate::object::SockAddrHook::GetPeerName6,
    ),
];

/// The program attached beside [`PROGS_SOCK`] on every connect-time cgroup (before them): it
/// deletes a closing socket's entry in `lb_conn`, where connect remembered its VIP.
pub const PROG_SOCK_RELEASE: &str = "sock_release";

/// The service-mesh programs, attached to the connect-time cgroups when the config meshes a
/// cgroup: the outbound redirect (connect), recording redirected connections once established
/// (sockops), answering `SO_ORIGINAL_DST` (getsockopt) and showing a redirected client its
/// original destination as its peer (getpeername). Attached in this order, the redirect last, so
/// no connection is redirected before what serves it is in place.
pub const PROGS_MESH: &[(&str, crate::attach::MeshHook)] = &[
    ("mesh_sockops", crate::attach::MeshHook::SockOps),
    ("mesh_getsockopt", crate::attach::MeshHook::GetSockopt),
    ("mesh_getpeername4", crate::attach::MeshHook::GetPeerName4),
    ("mesh_getpeername6", crate::attach::MeshHook::GetPeerName6),
    ("mesh_connect4", crate::attach::MeshHook::Connect4),
    ("mesh_connect6", crate::attach::MeshHook::Connect6),
];

/// The service mesh's inbound capture program (sk_lookup), one copy per captured network
/// namespace.
pub const PROG_MESH_INBOUND: &str = "mesh_sk_lookup";
