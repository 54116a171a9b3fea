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
];

/// The program attached at XDP on host interfaces: the prefilter (deny list, failsafes).
pub const PROG_XDP: &str = "xdp_prefilter";
/// The program attached at TC ingress.
pub const PROG_TC_INGRESS: &str = "tc_ingress";
/// The program attached at TC egress.
pub const PROG_TC_EGRESS: &str = "tc_egress";
/// The programs attached to the connect-time cgroup, with their hooks.
pub const PROGS_SOCK: &[(&str, crate::object::SockAddrHook)] = &[
    ("sock_connect4", crate::object::SockAddrHook::Connect4),
    ("sock_connect6", crate::object::SockAddrHook::Connect6),
];
