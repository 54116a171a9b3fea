//! TC on an interface: a pinned TCX link (`BPF_TCX_INGRESS`/`BPF_TCX_EGRESS`) when the kernel has
//! TCX, else a `clsact` qdisc with a direct-action `cls_bpf` filter.
//!
//! TCX runs several programs side by side, so attaching never displaces anyone. On the legacy path
//! weir owns exactly one filter per direction, at a fixed priority and handle; a filter there that
//! is not weir's is refused, and the `clsact` qdisc is removed on unload only if weir created it
//! and nobody else's filters hang on it. bpffs can hold only BPF objects, so "weir created this
//! qdisc" is remembered as a second pin of the program, `legacy/clsact@<ifname>`.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use super::xdp::ifindex;
use super::{
    attach_legacy, describe_prog, detach_link_pin, open_pin, pin, remove_pin, reuse_pinned_link,
    runs_already, settle_pending, use_link, Outcome, Pins, LEGACY_DIR,
};
use crate::config::AttachPolicy;
use crate::error::Error;
use crate::object::LoadedProgram;
use crate::sys::bpf;
use crate::sys::netlink::{Netlink, TcDirection};

/// The priority of weir's legacy cls_bpf filters (1: weir's verdict comes first).
pub const LEGACY_PRIO: u16 = 1;
/// The handle of weir's legacy cls_bpf filters.
pub const LEGACY_HANDLE: u32 = 0x5745;

fn dir(egress: bool) -> TcDirection {
    if egress {
        TcDirection::Egress
    } else {
        TcDirection::Ingress
    }
}

fn dir_name(egress: bool) -> &'static str {
    if egress {
        "egress"
    } else {
        "ingress"
    }
}

fn clsact_marker(pin_dir: &Path, ifname: &str) -> std::path::PathBuf {
    pin_dir.join(LEGACY_DIR).join(format!("clsact@{ifname}"))
}

pub(crate) fn attach(
    pins: &Pins,
    ifname: &str,
    egress: bool,
    policy: AttachPolicy,
    prog: &LoadedProgram,
) -> Result<Outcome, Error> {
    let target = format!("interface {ifname}");
    let what = format!("tc {}", dir_name(egress));
    let mut nl = Netlink::open().map_err(|e| Error::netlink(&target, e))?;
    let ifindex = ifindex(&mut nl, ifname)?;

    // A pinned TCX link of ours: keep it or update it in place.
    let on_this_device = |t: &bpf::LinkInfoTarget| matches!(t, bpf::LinkInfoTarget::Tcx { ifindex: i, .. } if *i == ifindex);
    if let Some(outcome) = reuse_pinned_link(pins, &target, on_this_device, prog)? {
        return Ok(outcome);
    }

    // A legacy filter of ours?
    let filters = if nl
        .clsact_exists(ifindex)
        .map_err(|e| Error::netlink(&target, e))?
    {
        nl.cls_bpf_list(ifindex, dir(egress))
            .map_err(|e| Error::netlink(&target, e))?
    } else {
        Vec::new()
    };
    let at_weirs_place = |filters: &[crate::sys::netlink::ClsBpfFilter]| {
        filters
            .iter()
            .find(|f| f.prio == LEGACY_PRIO && f.handle == LEGACY_HANDLE)
            .and_then(|f| f.prog_id)
    };
    settle_pending(pins, at_weirs_place(&filters))?;
    let ours_legacy = open_pin(&pins.legacy)?
        .map(|fd| bpf::prog_info(fd.as_fd()).map(|i| i.id))
        .transpose()
        .map_err(|e| Error::bpf(&target, e))?;
    if let Some(f) = filters
        .iter()
        .find(|f| f.prio == LEGACY_PRIO && f.handle == LEGACY_HANDLE)
    {
        match (f.prog_id, ours_legacy) {
            (Some(id), Some(our)) if id == our => {
                if runs_already(id, prog)? {
                    return Ok(Outcome::Unchanged);
                }
                let previous = bpf::prog_fd_by_id(id).map_err(|e| Error::bpf(format!("prog id {id}"), e))?;
                attach_legacy(pins, prog.fd.as_fd(), || {
                    nl.cls_bpf_attach(ifindex, dir(egress), LEGACY_PRIO, LEGACY_HANDLE, prog.fd.as_fd(), &prog.spec.name, true)
                        .map_err(|e| Error::netlink(&target, e))
                })?;
                return Ok(Outcome::Replaced { previous });
            }
            (id, _) => {
                return Err(Error::attach(
                    target,
                    format!(
                        "a {what} cls_bpf filter weir did not attach sits at weir's priority {LEGACY_PRIO} handle {LEGACY_HANDLE:#x} ({}); weir will not replace it",
                        id.map(describe_prog).unwrap_or_else(|| "no program id".into())
                    ),
                ))
            }
        }
    }
    remove_pin(&pins.legacy)?;

    let use_link = use_link(policy, || bpf::features().tcx, "TCX", &target)?;
    if use_link {
        let attach_type = if egress {
            bpf::consts::BPF_TCX_EGRESS
        } else {
            bpf::consts::BPF_TCX_INGRESS
        };
        let link = bpf::link_create(
            prog.fd.as_fd(),
            bpf::LinkTarget::Ifindex(ifindex),
            attach_type,
            0,
        )
        .map_err(|e| {
            Error::bpf(
                format!(
                    "{target}: attaching {what} program '{}' by TCX",
                    prog.spec.name
                ),
                e,
            )
        })?;
        pin(link.as_fd(), &pins.link)?;
    } else {
        let pin_dir = pins
            .legacy
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("/"));
        // The marker is pinned before the qdisc is made, so a weir killed in between leaves a
        // marker (the qdisc is made by the next load) rather than a qdisc nobody claims.
        let marker = clsact_marker(pin_dir, ifname);
        if !nl
            .clsact_exists(ifindex)
            .map_err(|e| Error::netlink(&target, e))?
        {
            pin(prog.fd.as_fd(), &marker)?;
            let created = nl
                .clsact_add(ifindex)
                .map_err(|e| Error::netlink(&target, e))?;
            if !created {
                remove_pin(&marker)?; // somebody else made it meanwhile
            }
        }
        attach_legacy(pins, prog.fd.as_fd(), || {
            nl.cls_bpf_attach(
                ifindex,
                dir(egress),
                LEGACY_PRIO,
                LEGACY_HANDLE,
                prog.fd.as_fd(),
                &prog.spec.name,
                false,
            )
            .map_err(|e| Error::netlink(&target, e))
        })?;
    }
    log::info!(
        "{target}: {what} program '{}' (id {}) attached by {}",
        prog.spec.name,
        prog.id,
        if use_link {
            "TCX link"
        } else {
            "clsact + cls_bpf"
        }
    );
    Ok(Outcome::Created)
}

pub(crate) fn replace_back(
    pins: &Pins,
    ifname: &str,
    egress: bool,
    previous: BorrowedFd<'_>,
) -> Result<(), Error> {
    let target = format!("interface {ifname}");
    if let Some(link) = open_pin(&pins.link)? {
        return bpf::link_update(link.as_fd(), previous, None)
            .map_err(|e| Error::bpf(format!("{target}: restoring tc"), e));
    }
    let mut nl = Netlink::open().map_err(|e| Error::netlink(&target, e))?;
    let ifindex = ifindex(&mut nl, ifname)?;
    let name = bpf::prog_info(previous).map(|i| i.name).unwrap_or_default();
    attach_legacy(pins, previous, || {
        nl.cls_bpf_attach(
            ifindex,
            dir(egress),
            LEGACY_PRIO,
            LEGACY_HANDLE,
            previous,
            &name,
            true,
        )
        .map_err(|e| Error::netlink(&target, e))
    })
}

pub(crate) fn detach(pins: &Pins, pin_dir: &Path, ifname: &str, egress: bool) -> Result<(), Error> {
    detach_link_pin(&pins.link)?;
    let target = format!("interface {ifname}");
    if open_pin(&pins.pending)?.is_some() {
        // A weir died mid-attach: record what it attached, if it did, before detaching.
        let mut nl = Netlink::open().map_err(|e| Error::netlink(&target, e))?;
        let mut attached = None;
        if let Some(ifindex) = nl
            .link_index(ifname)
            .map_err(|e| Error::netlink(&target, e))?
        {
            if nl
                .clsact_exists(ifindex)
                .map_err(|e| Error::netlink(&target, e))?
            {
                attached = nl
                    .cls_bpf_list(ifindex, dir(egress))
                    .map_err(|e| Error::netlink(&target, e))?
                    .iter()
                    .find(|f| f.prio == LEGACY_PRIO && f.handle == LEGACY_HANDLE)
                    .and_then(|f| f.prog_id);
            }
        }
        settle_pending(pins, attached)?;
    }
    let legacy = open_pin(&pins.legacy)?;
    let marker = clsact_marker(pin_dir, ifname);
    if legacy.is_none() && open_pin(&marker)?.is_none() {
        return Ok(());
    }
    let mut nl = Netlink::open().map_err(|e| Error::netlink(&target, e))?;
    let Some(ifindex) = nl
        .link_index(ifname)
        .map_err(|e| Error::netlink(&target, e))?
    else {
        // The interface is gone, and its qdisc and filters with it.
        remove_pin(&pins.legacy)?;
        return remove_pin(&marker);
    };
    if let Some(prog) = legacy {
        let our_id = bpf::prog_info(prog.as_fd())
            .map_err(|e| Error::bpf(&target, e))?
            .id;
        if nl
            .clsact_exists(ifindex)
            .map_err(|e| Error::netlink(&target, e))?
        {
            let filters = nl
                .cls_bpf_list(ifindex, dir(egress))
                .map_err(|e| Error::netlink(&target, e))?;
            for f in filters
                .iter()
                .filter(|f| f.prio == LEGACY_PRIO && f.handle == LEGACY_HANDLE)
            {
                if f.prog_id == Some(our_id) {
                    nl.cls_bpf_detach(ifindex, dir(egress), f.prio, f.handle)
                        .map_err(|e| Error::netlink(&target, e))?;
                } else {
                    log::warn!("{target}: the filter at weir's priority is not weir's any more; left alone");
                }
            }
        }
        remove_pin(&pins.legacy)?;
    }
    // Remove the clsact qdisc weir created once neither direction has a filter of anyone.
    let other_dir_ours = open_pin(
        &pin_dir
            .join(LEGACY_DIR)
            .join(format!("tc-{}@{ifname}", dir_name(!egress))),
    )?;
    if other_dir_ours.is_none() && open_pin(&marker)?.is_some() {
        if nl
            .clsact_exists(ifindex)
            .map_err(|e| Error::netlink(&target, e))?
        {
            let left = nl
                .cls_bpf_list(ifindex, TcDirection::Ingress)
                .map_err(|e| Error::netlink(&target, e))?
                .len()
                + nl.cls_bpf_list(ifindex, TcDirection::Egress)
                    .map_err(|e| Error::netlink(&target, e))?
                    .len();
            if left == 0 {
                nl.clsact_del(ifindex)
                    .map_err(|e| Error::netlink(&target, e))?;
            } else {
                log::warn!("{target}: weir created the clsact qdisc but {left} filter(s) of others use it; left in place");
            }
        }
        remove_pin(&marker)?;
    }
    Ok(())
}
