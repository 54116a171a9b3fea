//! Attaching loaded programs: one file per attach kind, each with its modern path (a `bpf_link`,
//! pinned so it outlives `weir load`) and its fallback (rtnetlink), and each refusing to replace or
//! remove a program weir did not attach.
//!
//! Every attachment has a stable pin name, `<kind>@<target>` (`xdp@eth1`, `tc-ingress@eth1`,
//! `connect4@weir%2Fdemo`). A bpf_link attachment is pinned under `links/`; a netlink one has no
//! kernel object of its own, so weir pins the *program* under `legacy/` to remember which program
//! id is its own.

pub mod mesh;
pub mod mesh_inbound;
pub mod sock_addr;
pub mod tc;
pub mod xdp;

use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::config::AttachPolicy;
use crate::error::Error;
use crate::object::{LoadedProgram, SockAddrHook};
use crate::sys::bpf;
pub use mesh::MeshHook;

/// Directory (below the pin dir) of pinned bpf_links.
pub const LINKS_DIR: &str = "links";
/// Directory (below the pin dir) of programs attached through netlink.
pub const LEGACY_DIR: &str = "legacy";
/// Directory (below the pin dir) of programs pinned just before a netlink attach: a weir killed
/// between the attach and recording it leaves the program here, so the next weir recognises it.
pub const PENDING_DIR: &str = "pending";

/// Where a program is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachPoint {
    /// XDP on an interface.
    Xdp { ifname: String, generic: bool },
    /// TC on an interface, ingress or egress.
    Tc { ifname: String, egress: bool },
    /// A cgroup `sock_addr` hook; `cgroup` is relative to the cgroup v2 mount.
    Cgroup { cgroup: String, hook: SockAddrHook },
    /// A service-mesh program on a cgroup; `cgroup` as above.
    Mesh { cgroup: String, hook: MeshHook },
    /// The load balancer's `cgroup/sock_release` program on a cgroup; `cgroup` as above.
    SockRelease { cgroup: String },
    /// The mesh's inbound capture (sk_lookup) in a network namespace (name or path, as in the
    /// config's `netns=`).
    MeshInbound { netns: String },
}

/// The pin name prefix of [`AttachPoint::SockRelease`].
const SOCK_RELEASE: &str = "sock-release";

impl AttachPoint {
    /// The pin file name: `<kind>@<target>`, with `/` and `%` escaped so it is one path element.
    pub fn pin_name(&self) -> String {
        match self {
            Self::Xdp { ifname, .. } => format!("xdp@{ifname}"),
            Self::Tc {
                ifname,
                egress: false,
            } => format!("tc-ingress@{ifname}"),
            Self::Tc {
                ifname,
                egress: true,
            } => format!("tc-egress@{ifname}"),
            Self::Cgroup { cgroup, hook } => format!("{}@{}", hook.name(), escape(cgroup)),
            Self::Mesh { cgroup, hook } => format!("{}@{}", hook.name(), escape(cgroup)),
            Self::SockRelease { cgroup } => format!("{SOCK_RELEASE}@{}", escape(cgroup)),
            Self::MeshInbound { netns } => format!("{}@{}", mesh_inbound::KIND, escape(netns)),
        }
    }

    /// Parses a pin file name back into the kind and target (XDP mode is not in the name).
    pub fn from_pin_name(name: &str) -> Option<Self> {
        let (kind, target) = name.split_once('@')?;
        if target.is_empty() {
            return None;
        }
        Some(match kind {
            "xdp" => Self::Xdp {
                ifname: target.to_owned(),
                generic: false,
            },
            "tc-ingress" => Self::Tc {
                ifname: target.to_owned(),
                egress: false,
            },
            "tc-egress" => Self::Tc {
                ifname: target.to_owned(),
                egress: true,
            },
            SOCK_RELEASE => Self::SockRelease {
                cgroup: unescape(target)?,
            },
            mesh_inbound::KIND => Self::MeshInbound {
                netns: unescape(target)?,
            },
            other if MeshHook::ALL.iter().any(|h| h.name() == other) => {
                let hook = MeshHook::ALL.iter().find(|h| h.name() == other)?;
                Self::Mesh {
                    cgroup: unescape(target)?,
                    hook: *hook,
                }
            }
            other => {
                let hook = ALL_SOCK_HOOKS.iter().find(|h| h.name() == other)?;
                Self::Cgroup {
                    cgroup: unescape(target)?,
                    hook: *hook,
                }
            }
        })
    }

    /// A human description for messages: `interface veth0 (xdp)`, `cgroup weir/demo (connect4)`.
    pub fn describe(&self) -> String {
        match self {
            Self::Xdp { ifname, generic } => {
                format!(
                    "interface {ifname} (xdp {})",
                    if *generic { "generic" } else { "native" }
                )
            }
            Self::Tc { ifname, egress } => format!(
                "interface {ifname} (tc {})",
                if *egress { "egress" } else { "ingress" }
            ),
            Self::Cgroup { cgroup, hook } => format!("cgroup {cgroup} ({})", hook.name()),
            Self::Mesh { cgroup, hook } => format!("cgroup {cgroup} ({})", hook.name()),
            Self::SockRelease { cgroup } => format!("cgroup {cgroup} ({SOCK_RELEASE})"),
            Self::MeshInbound { netns } => format!("network namespace {netns} (mesh-inbound)"),
        }
    }
}

const ALL_SOCK_HOOKS: [SockAddrHook; 12] = [
    SockAddrHook::Bind4,
    SockAddrHook::Bind6,
    SockAddrHook::Connect4,
    SockAddrHook::Connect6,
    SockAddrHook::GetPeerName4,
    SockAddrHook::GetPeerName6,
    SockAddrHook::GetSockName4,
    SockAddrHook::GetSockName6,
    SockAddrHook::SendMsg4,
    SockAddrHook::SendMsg6,
    SockAddrHook::RecvMsg4,
    SockAddrHook::RecvMsg6,
];

fn escape(s: &str) -> String {
    s.replace('%', "%25").replace('/', "%2F")
}

fn unescape(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3)?;
        out.push(match code {
            "25" => '%',
            "2F" => '/',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// One attachment weir wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Where.
    pub point: AttachPoint,
    /// The program name (as in the object).
    pub program: String,
    /// bpf_link, netlink, or whichever the kernel has.
    pub policy: AttachPolicy,
}

/// What attaching did.
#[derive(Debug)]
pub enum Outcome {
    /// The same code was attached already: nothing changed.
    Unchanged,
    /// A new attachment was made (undo: detach it).
    Created,
    /// Our attachment now runs the new program (undo: put `previous` back).
    Replaced { previous: OwnedFd },
}

/// The paths an attachment may be pinned at.
#[derive(Debug, Clone)]
pub struct Pins {
    /// `<pin-dir>/links/<name>`.
    pub link: PathBuf,
    /// `<pin-dir>/legacy/<name>`.
    pub legacy: PathBuf,
    /// `<pin-dir>/pending/<name>`: see [`attach_legacy`].
    pub pending: PathBuf,
}

impl Pins {
    /// Pin paths of `point` below `pin_dir`.
    pub fn new(pin_dir: &Path, point: &AttachPoint) -> Self {
        let name = point.pin_name();
        Self {
            link: pin_dir.join(LINKS_DIR).join(&name),
            legacy: pin_dir.join(LEGACY_DIR).join(&name),
            pending: pin_dir.join(PENDING_DIR).join(name),
        }
    }
}

/// Attaches `prog` through netlink (`attach`) so that a crash at any point leaves a state the
/// next weir recognises: the program is pinned at `pins.pending` first, attached, and its pin is
/// then renamed over `pins.legacy` (one atomic rename). A weir killed in between leaves the
/// pending pin, which [`settle_pending`] resolves. On an attach error the pending pin goes.
///
/// # Errors
/// When pinning, the attach or the rename fails.
pub(crate) fn attach_legacy(
    pins: &Pins,
    prog: BorrowedFd<'_>,
    attach: impl FnOnce() -> Result<(), Error>,
) -> Result<(), Error> {
    if let Some(dir) = pins.pending.parent() {
        if !dir.is_dir() {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .or_else(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
    }
    pin(prog, &pins.pending)?;
    if let Err(e) = attach() {
        let _ = remove_pin(&pins.pending);
        return Err(e);
    }
    fs::rename(&pins.pending, &pins.legacy).map_err(|e| {
        Error::io(
            format!(
                "recording the attachment: renaming {} to {}",
                pins.pending.display(),
                pins.legacy.display()
            ),
            e,
        )
    })
}

/// Resolves a pending pin (see [`attach_legacy`]) left by a weir that died mid-attach: if the
/// program attached now (`attached`, as the kernel reports it) is the pending one, the attach
/// happened and the pin becomes the legacy pin; otherwise it never happened and the pin goes.
///
/// # Errors
/// When the pin cannot be read, renamed or removed.
pub(crate) fn settle_pending(pins: &Pins, attached: Option<u32>) -> Result<(), Error> {
    let Some(prog) = open_pin(&pins.pending)? else {
        return Ok(());
    };
    let id = bpf::prog_info(prog.as_fd())
        .map_err(|e| Error::bpf(format!("pin {}", pins.pending.display()), e))?
        .id;
    if attached == Some(id) {
        log::info!(
            "{}: the program a previous weir attached (id {id}) is recorded now",
            pins.legacy.display()
        );
        fs::rename(&pins.pending, &pins.legacy)
            .map_err(|e| Error::io(format!("renaming {}", pins.pending.display()), e))
    } else {
        remove_pin(&pins.pending)
    }
}

/// Opens a pin if it exists.
pub(crate) fn open_pin(path: &Path) -> Result<Option<OwnedFd>, Error> {
    match bpf::obj_get(path) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.errno() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(Error::bpf(format!("opening pin {}", path.display()), e)),
    }
}

/// Removes a pin; a missing pin is fine.
pub(crate) fn remove_pin(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing pin {}", path.display()), e)),
    }
}

/// Pins `fd` at `path`, replacing a stale pin there.
pub(crate) fn pin(fd: BorrowedFd<'_>, path: &Path) -> Result<(), Error> {
    remove_pin(path)?;
    bpf::obj_pin(fd, path).map_err(|e| Error::bpf(format!("pinning at {}", path.display()), e))
}

/// Whether the program with id `id` (an attached one) is `prog` already: the same code (tag)
/// on the same maps. A program that is gone is not.
pub(crate) fn runs_already(id: u32, prog: &LoadedProgram) -> Result<bool, Error> {
    match bpf::prog_fd_by_id(id) {
        Ok(fd) => {
            let info =
                bpf::prog_info(fd.as_fd()).map_err(|e| Error::bpf(format!("prog id {id}"), e))?;
            let mut maps = info.map_ids;
            maps.sort_unstable();
            Ok(info.tag == prog.tag && maps == prog.map_ids)
        }
        Err(e) if e.errno() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(Error::bpf(format!("prog id {id}"), e)),
    }
}

/// Keeps or updates weir's pinned link at `pins.link` if it still points at the attach target
/// (`on_target` recognises it): unchanged when it runs `prog`'s code already, else updated in
/// place to `prog` (hitless: the old program runs until the new one takes over). A link whose
/// target is gone (interface or cgroup re-created) is unpinned and `None` is returned, as when
/// there is no pin at all.
pub(crate) fn reuse_pinned_link(
    pins: &Pins,
    target: &str,
    on_target: impl Fn(&bpf::LinkInfoTarget) -> bool,
    prog: &LoadedProgram,
) -> Result<Option<Outcome>, Error> {
    let Some(link) = open_pin(&pins.link)? else {
        return Ok(None);
    };
    let info = match bpf::link_info(link.as_fd()) {
        Ok(info) if on_target(&info.target) => info,
        _ => {
            remove_pin(&pins.link)?;
            return Ok(None);
        }
    };
    if runs_already(info.prog_id, prog)? {
        return Ok(Some(Outcome::Unchanged));
    }
    let previous = bpf::prog_fd_by_id(info.prog_id)
        .map_err(|e| Error::bpf(format!("prog id {}", info.prog_id), e))?;
    bpf::link_update(link.as_fd(), prog.fd.as_fd(), Some(previous.as_fd())).map_err(|e| {
        Error::bpf(
            format!("{target}: replacing program '{}'", prog.spec.name),
            e,
        )
    })?;
    log::info!(
        "{target}: program replaced in place (id {} -> {})",
        info.prog_id,
        prog.id
    );
    Ok(Some(Outcome::Replaced { previous }))
}

/// Decides between a bpf_link and the netlink fallback for `policy`, given whether the kernel
/// has the link kind (`feature`). `attach=link` without kernel support is an error, not a fallback.
pub(crate) fn use_link(
    policy: AttachPolicy,
    available: impl FnOnce() -> bool,
    feature: &str,
    target: &str,
) -> Result<bool, Error> {
    // `available` runs only when the policy needs the answer: attach=legacy probes nothing.
    match policy {
        AttachPolicy::Legacy => Ok(false),
        AttachPolicy::Auto => Ok(available()),
        AttachPolicy::Link if available() => Ok(true),
        AttachPolicy::Link => Err(Error::Feature {
            feature: feature.into(),
            problem: format!("{target}: attach=link was asked for but the kernel does not have it; use attach=auto"),
        }),
    }
}

/// Describes a program id for a refusal message: `id 42 ('xdp_fw')`.
pub(crate) fn describe_prog(id: u32) -> String {
    match bpf::prog_fd_by_id(id)
        .ok()
        .and_then(|fd| bpf::prog_info(fd.as_fd()).ok())
    {
        Some(info) if !info.name.is_empty() => format!("id {id} ('{}')", info.name),
        _ => format!("id {id}"),
    }
}

/// Attaches `prog` at `want.point`, or recognises that it is attached already.
///
/// # Errors
/// Returns an error naming the interface or cgroup when the attachment cannot be made, including
/// when a program weir did not attach is in the way.
pub fn attach(pin_dir: &Path, want: &Desired, prog: &LoadedProgram) -> Result<Outcome, Error> {
    let pins = Pins::new(pin_dir, &want.point);
    match &want.point {
        AttachPoint::Xdp { ifname, generic } => {
            xdp::attach(&pins, ifname, *generic, want.policy, prog)
        }
        AttachPoint::Tc { ifname, egress } => tc::attach(&pins, ifname, *egress, want.policy, prog),
        AttachPoint::Cgroup { cgroup, hook } => {
            sock_addr::attach(&pins, cgroup, *hook, want.policy, prog)
        }
        AttachPoint::Mesh { cgroup, hook } => mesh::attach(&pins, cgroup, *hook, prog),
        AttachPoint::SockRelease { cgroup } => sock_addr::attach_cgroup_link(
            &pins,
            cgroup,
            SOCK_RELEASE,
            crate::object::CgroupSockHook::SockRelease.attach_type(),
            prog,
        ),
        AttachPoint::MeshInbound { netns } => mesh_inbound::attach(&pins, netns, prog),
    }
}

/// Puts back what [`attach`] changed (used when a later step of `weir load` fails).
///
/// # Errors
/// Returns the first error; the caller logs it and goes on undoing the rest.
pub fn undo(pin_dir: &Path, point: &AttachPoint, outcome: Outcome) -> Result<(), Error> {
    let pins = Pins::new(pin_dir, point);
    match outcome {
        Outcome::Unchanged => Ok(()),
        Outcome::Created => detach(pin_dir, point),
        Outcome::Replaced { previous } => match point {
            AttachPoint::Xdp { ifname, generic } => {
                xdp::replace_back(&pins, ifname, *generic, previous.as_fd())
            }
            AttachPoint::Tc { ifname, egress } => {
                tc::replace_back(&pins, ifname, *egress, previous.as_fd())
            }
            AttachPoint::Cgroup { .. }
            | AttachPoint::Mesh { .. }
            | AttachPoint::SockRelease { .. }
            | AttachPoint::MeshInbound { .. } => sock_addr::replace_back(&pins, previous.as_fd()),
        },
    }
}

/// Removes weir's attachment at `point` (pinned link or netlink attachment) and its pins.
/// Attachments of others are left alone.
///
/// # Errors
/// Returns an error when the kernel refuses the detach.
pub fn detach(pin_dir: &Path, point: &AttachPoint) -> Result<(), Error> {
    let pins = Pins::new(pin_dir, point);
    match point {
        AttachPoint::Xdp { ifname, .. } => xdp::detach(&pins, ifname),
        AttachPoint::Tc { ifname, egress } => tc::detach(&pins, pin_dir, ifname, *egress),
        AttachPoint::Cgroup { .. }
        | AttachPoint::Mesh { .. }
        | AttachPoint::SockRelease { .. }
        | AttachPoint::MeshInbound { .. } => sock_addr::detach(&pins),
    }
}

/// Detaches a pinned bpf_link and removes its pin. A link whose target is gone is just unpinned.
pub(crate) fn detach_link_pin(path: &Path) -> Result<(), Error> {
    if let Some(link) = open_pin(path)? {
        match bpf::link_detach(link.as_fd()) {
            Ok(()) => {}
            // ENOLINK: the target (interface, cgroup) is gone and the link with it.
            Err(e) if matches!(e.errno(), Some(libc::ENOLINK) | Some(libc::ENOENT)) => {}
            Err(e) => {
                return Err(Error::bpf(
                    format!("detaching link pinned at {}", path.display()),
                    e,
                ))
            }
        }
    }
    remove_pin(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a kernel without a link kind gets: auto falls back to netlink, `attach=link` is an
    /// error naming the missing feature, `attach=legacy` does not even probe.
    #[test]
    fn a_missing_link_kind_falls_back_or_is_named() {
        assert!(!use_link(AttachPolicy::Auto, || false, "TCX", "interface x").unwrap());
        assert!(use_link(AttachPolicy::Auto, || true, "TCX", "interface x").unwrap());
        assert!(use_link(AttachPolicy::Link, || true, "TCX", "interface x").unwrap());
        let e = use_link(AttachPolicy::Link, || false, "XDP bpf_link", "interface x").unwrap_err();
        let Error::Feature { feature, problem } = &e else {
            panic!("want Error::Feature, got {e:?}");
        };
        assert_eq!(feature, "XDP bpf_link");
        assert!(problem.starts_with("interface x: attach=link"), "{problem}");
        assert!(e.to_string().contains("XDP bpf_link"), "{e}");
        let probed = std::cell::Cell::new(false);
        let legacy = use_link(
            AttachPolicy::Legacy,
            || {
                probed.set(true);
                true
            },
            "TCX",
            "interface x",
        );
        assert!(!legacy.unwrap() && !probed.get());
    }

    #[test]
    fn pin_names_round_trip_and_escape_cgroup_paths() {
        let points = [
            AttachPoint::Xdp {
                ifname: "veth0".into(),
                generic: false,
            },
            AttachPoint::Tc {
                ifname: "eth1".into(),
                egress: true,
            },
            AttachPoint::Tc {
                ifname: "eth1".into(),
                egress: false,
            },
            AttachPoint::Cgroup {
                cgroup: "weir/demo%1".into(),
                hook: SockAddrHook::Connect6,
            },
            AttachPoint::Mesh {
                cgroup: "weir/mesh".into(),
                hook: MeshHook::SockOps,
            },
            AttachPoint::Mesh {
                cgroup: "/".into(),
                hook: MeshHook::Connect4,
            },
            AttachPoint::SockRelease {
                cgroup: "weir/lb".into(),
            },
            AttachPoint::MeshInbound {
                netns: "/proc/1/ns/net".into(),
            },
            AttachPoint::MeshInbound {
                netns: "web".into(),
            },
        ];
        for p in points {
            let name = p.pin_name();
            assert!(!name.contains('/'), "{name}");
            assert_eq!(AttachPoint::from_pin_name(&name), Some(p));
        }
        assert_eq!(
            AttachPoint::Cgroup {
                cgroup: "a/b".into(),
                hook: SockAddrHook::Connect4
            }
            .pin_name(),
            "connect4@a%2Fb"
        );
        assert_eq!(AttachPoint::from_pin_name("bogus@x"), None);
        assert_eq!(AttachPoint::from_pin_name("connect4@a%2"), None);
        assert_eq!(AttachPoint::from_pin_name("xdp@"), None);
    }
}
