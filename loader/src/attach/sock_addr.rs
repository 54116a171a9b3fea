//! cgroup `sock_addr` hooks (connect, sendmsg, recvmsg, getpeername, ...): a pinned
//! `BPF_LINK_CREATE` on a cgroup v2 directory. Cgroup links are multi-attach, so weir's programs
//! run beside anybody else's; there is no netlink-style fallback to offer (the legacy
//! `BPF_PROG_ATTACH` would be owned by no pin), so a kernel without cgroup links is an error.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;

use super::{detach_link_pin, open_pin, pin, reuse_pinned_link, Outcome, Pins};
use crate::config::AttachPolicy;
use crate::error::Error;
use crate::object::{LoadedProgram, SockAddrHook};
use crate::sys::{bpf, cgroup};

/// The directory of `cgroup` (relative to the cgroup v2 mount; a leading `/` is allowed).
///
/// # Errors
/// Returns an error when no cgroup v2 mount is found or the cgroup does not exist.
pub fn cgroup_dir(cgroup: &str) -> Result<PathBuf, Error> {
    let root = cgroup::cgroup2_mount()
        .map_err(|e| Error::io("finding the cgroup v2 mount in /proc/mounts", e))?;
    let dir = root.join(cgroup.trim_start_matches('/'));
    if !dir.is_dir() {
        return Err(Error::attach(
            format!("cgroup {cgroup}"),
            format!(
                "{} does not exist; create it (mkdir) or fix the cgroup statement",
                dir.display()
            ),
        ));
    }
    Ok(dir)
}

pub(crate) fn attach(
    pins: &Pins,
    cgroup: &str,
    hook: SockAddrHook,
    _policy: AttachPolicy,
    prog: &LoadedProgram,
) -> Result<Outcome, Error> {
    attach_cgroup_link(pins, cgroup, hook.name(), hook.attach_type(), prog)
}

/// Attaches `prog` to `cgroup` at `attach_type` through a pinned cgroup link (any cgroup hook:
/// the sock_addr ones here, the mesh's in [`super::mesh`]).
pub(crate) fn attach_cgroup_link(
    pins: &Pins,
    cgroup: &str,
    hook_name: &str,
    attach_type: u32,
    prog: &LoadedProgram,
) -> Result<Outcome, Error> {
    let target = format!("cgroup {cgroup} ({hook_name})");
    let dir = cgroup_dir(cgroup)?;
    let cgroup_id = cgroup::cgroup_id(&dir)
        .map_err(|e| Error::io(format!("{target}: reading the cgroup id"), e))?;

    let on_this_cgroup = |t: &bpf::LinkInfoTarget| matches!(t, bpf::LinkInfoTarget::Cgroup { cgroup_id: id, .. } if *id == cgroup_id);
    if let Some(outcome) = reuse_pinned_link(pins, &target, on_this_cgroup, prog)? {
        return Ok(outcome);
    }
    if !bpf::features().cgroup_link {
        return Err(Error::Feature {
            feature: "cgroup bpf_link".into(),
            problem: format!("{target}: weir attaches cgroup programs only through cgroup links"),
        });
    }
    let dir_fd = cgroup::open_dir(&dir)
        .map_err(|e| Error::io(format!("{target}: opening {}", dir.display()), e))?;
    let link = bpf::link_create(
        prog.fd.as_fd(),
        bpf::LinkTarget::Fd(dir_fd.as_fd()),
        attach_type,
        0,
    )
    .map_err(|e| Error::bpf(format!("{target}: attaching '{}'", prog.spec.name), e))?;
    pin(link.as_fd(), &pins.link)?;
    log::info!(
        "{target}: program '{}' (id {}) attached by cgroup link",
        prog.spec.name,
        prog.id
    );
    Ok(Outcome::Created)
}

pub(crate) fn replace_back(pins: &Pins, previous: BorrowedFd<'_>) -> Result<(), Error> {
    let link = open_pin(&pins.link)?
        .ok_or_else(|| Error::attach(pins.link.display().to_string(), "link pin vanished"))?;
    bpf::link_update(link.as_fd(), previous, None)
        .map_err(|e| Error::bpf("restoring cgroup program", e))
}

pub(crate) fn detach(pins: &Pins) -> Result<(), Error> {
    detach_link_pin(&pins.link)
}
