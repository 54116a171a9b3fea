//! XDP on an interface: a pinned `BPF_LINK_CREATE` (attach type `BPF_XDP`) when the kernel has XDP
//! links, else rtnetlink `IFLA_XDP`. Native (driver) mode unless the config asks for generic: weir
//! never falls back from native to generic on its own, because generic XDP runs after the skb is
//! built and a user who asked for driver-level drop would silently lose it.

use std::os::fd::{AsFd, BorrowedFd};

use super::{
    attach_legacy, describe_prog, detach_link_pin, open_pin, pin, remove_pin, runs_already,
    settle_pending, use_link, Outcome, Pins,
};
use crate::config::AttachPolicy;
use crate::error::Error;
use crate::object::LoadedProgram;
use crate::sys::bpf;
use crate::sys::netlink::{Netlink, XdpMode};

const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// `XDP_ATTACHED_*` values reported by `IFLA_XDP_ATTACHED`.
const XDP_ATTACHED_DRV: u8 = 1;
const XDP_ATTACHED_SKB: u8 = 2;

fn nl(ifname: &str) -> Result<Netlink, Error> {
    Netlink::open().map_err(|e| Error::netlink(format!("interface {ifname}"), e))
}

/// The ifindex of `ifname` in the current network namespace.
pub(crate) fn ifindex(nl: &mut Netlink, ifname: &str) -> Result<u32, Error> {
    nl.link_index(ifname)
        .map_err(|e| Error::netlink(format!("interface {ifname}"), e))?
        .ok_or_else(|| {
            Error::attach(
                format!("interface {ifname}"),
                "no such interface in this network namespace (check the name, or pass --netns)",
            )
        })
}

fn mode(generic: bool) -> XdpMode {
    if generic {
        XdpMode::Generic
    } else {
        XdpMode::Native
    }
}

/// Which of weir's pins (if any) holds the program currently attached.
fn ours(pins: &Pins, attached: u32) -> Result<Option<bool /* is link */>, Error> {
    if let Some(link) = open_pin(&pins.link)? {
        let info = bpf::link_info(link.as_fd())
            .map_err(|e| Error::bpf(format!("link {}", pins.link.display()), e))?;
        if info.prog_id == attached {
            return Ok(Some(true));
        }
    }
    if let Some(prog) = open_pin(&pins.legacy)? {
        let info = bpf::prog_info(prog.as_fd())
            .map_err(|e| Error::bpf(format!("pin {}", pins.legacy.display()), e))?;
        if info.id == attached {
            return Ok(Some(false));
        }
    }
    Ok(None)
}

pub(crate) fn attach(
    pins: &Pins,
    ifname: &str,
    generic: bool,
    policy: AttachPolicy,
    prog: &LoadedProgram,
) -> Result<Outcome, Error> {
    let target = format!("interface {ifname}");
    let mut nl = nl(ifname)?;
    let ifindex = ifindex(&mut nl, ifname)?;
    let state = nl
        .xdp_query(ifindex)
        .map_err(|e| Error::netlink(&target, e))?;
    settle_pending(pins, state.prog_id)?;
    let want_attached = if generic {
        XDP_ATTACHED_SKB
    } else {
        XDP_ATTACHED_DRV
    };

    if let Some(current) = state.prog_id.filter(|&id| id != 0) {
        let Some(is_link) = ours(pins, current)? else {
            return Err(Error::attach(
                target,
                format!(
                    "an XDP program weir did not attach is there ({}); weir will not replace it. \
                     Remove it first (ip link set dev {ifname} xdp off) or drop xdp from this interface in the config",
                    describe_prog(current)
                ),
            ));
        };
        if state.attached == want_attached {
            if runs_already(current, prog)? {
                log::debug!("{target}: xdp prog id {current} already runs this code");
                return Ok(Outcome::Unchanged);
            }
            let previous = bpf::prog_fd_by_id(current)
                .map_err(|e| Error::bpf(format!("prog id {current}"), e))?;
            if is_link {
                let link = open_pin(&pins.link)?
                    .ok_or_else(|| Error::attach(&target, "link pin vanished"))?;
                bpf::link_update(link.as_fd(), prog.fd.as_fd(), Some(previous.as_fd()))
                    .map_err(|e| Error::bpf(format!("{target}: replacing xdp program"), e))?;
            } else {
                attach_legacy(pins, prog.fd.as_fd(), || {
                    nl.xdp_attach(
                        ifindex,
                        prog.fd.as_fd(),
                        mode(generic),
                        Some(previous.as_fd()),
                    )
                    .map_err(|e| Error::netlink(&target, e))
                })?;
            }
            log::info!(
                "{target}: xdp program replaced (id {current} -> {})",
                prog.id
            );
            return Ok(Outcome::Replaced { previous });
        }
        // The mode changed (native <-> generic): a link cannot change mode, so detach first.
        log::warn!(
            "{target}: xdp mode changes, detaching the old program before attaching the new one"
        );
        detach(pins, ifname)?;
    } else {
        // Nothing attached: any pin of ours is stale (interface re-created); drop it.
        remove_pin(&pins.link)?;
        remove_pin(&pins.legacy)?;
        remove_pin(&pins.pending)?;
    }

    let use_link = use_link(policy, || bpf::features().xdp_link, "XDP bpf_link", &target)?;
    let mode_hint = if generic {
        String::new()
    } else {
        format!(
            " (if the driver of {ifname} has no native XDP, set xdp=generic for it in the config)"
        )
    };
    if use_link {
        let flags = if generic {
            XDP_FLAGS_SKB_MODE
        } else {
            XDP_FLAGS_DRV_MODE
        };
        let link = bpf::link_create(
            prog.fd.as_fd(),
            bpf::LinkTarget::Ifindex(ifindex),
            bpf::consts::BPF_XDP,
            flags,
        )
        .map_err(|e| {
            Error::attach(
                &target,
                format!("attaching xdp program '{}': {e}{mode_hint}", prog.spec.name),
            )
        })?;
        pin(link.as_fd(), &pins.link)?;
    } else {
        let attached = attach_legacy(pins, prog.fd.as_fd(), || {
            nl.xdp_attach(ifindex, prog.fd.as_fd(), mode(generic), None)
                .map_err(|e| {
                    Error::attach(
                        &target,
                        format!("attaching xdp program '{}': {e}{mode_hint}", prog.spec.name),
                    )
                })
        });
        if let Err(e) = attached {
            // Attached but not recorded: take it off again (the pending pin says it is ours).
            if open_pin(&pins.pending)?.is_some() {
                let _ = nl.xdp_detach(ifindex, mode(generic), Some(prog.fd.as_fd()));
                let _ = remove_pin(&pins.pending);
            }
            return Err(e);
        }
    }
    log::info!(
        "{target}: xdp program '{}' (id {}) attached {} in {} mode",
        prog.spec.name,
        prog.id,
        if use_link {
            "by bpf_link"
        } else {
            "by netlink"
        },
        if generic { "generic" } else { "native" }
    );
    Ok(Outcome::Created)
}

pub(crate) fn replace_back(
    pins: &Pins,
    ifname: &str,
    generic: bool,
    previous: BorrowedFd<'_>,
) -> Result<(), Error> {
    let target = format!("interface {ifname}");
    if let Some(link) = open_pin(&pins.link)? {
        return bpf::link_update(link.as_fd(), previous, None)
            .map_err(|e| Error::bpf(format!("{target}: restoring xdp"), e));
    }
    let mut nl = nl(ifname)?;
    let ifindex = ifindex(&mut nl, ifname)?;
    attach_legacy(pins, previous, || {
        nl.xdp_attach(ifindex, previous, mode(generic), None)
            .map_err(|e| Error::netlink(&target, e))
    })
}

pub(crate) fn detach(pins: &Pins, ifname: &str) -> Result<(), Error> {
    detach_link_pin(&pins.link)?;
    let target = format!("interface {ifname}");
    if open_pin(&pins.pending)?.is_some() {
        // A weir died mid-attach: record what it attached, if it did, before detaching.
        let mut nl = nl(ifname)?;
        let attached = match nl
            .link_index(ifname)
            .map_err(|e| Error::netlink(&target, e))?
        {
            Some(ifindex) => {
                nl.xdp_query(ifindex)
                    .map_err(|e| Error::netlink(&target, e))?
                    .prog_id
            }
            None => None,
        };
        settle_pending(pins, attached)?;
    }
    let Some(prog) = open_pin(&pins.legacy)? else {
        return Ok(());
    };
    let mut nl = nl(ifname)?;
    if let Some(ifindex) = nl
        .link_index(ifname)
        .map_err(|e| Error::netlink(&target, e))?
    {
        let state = nl
            .xdp_query(ifindex)
            .map_err(|e| Error::netlink(&target, e))?;
        let our_id = bpf::prog_info(prog.as_fd())
            .map_err(|e| Error::bpf(&target, e))?
            .id;
        match state.prog_id {
            Some(id) if id == our_id => {
                let generic = state.attached == XDP_ATTACHED_SKB;
                nl.xdp_detach(ifindex, mode(generic), Some(prog.as_fd()))
                    .map_err(|e| Error::netlink(&target, e))?;
            }
            Some(id) if id != 0 => log::warn!(
                "{target}: the XDP program there now ({}) is not weir's; left alone",
                describe_prog(id)
            ),
            _ => {}
        }
    }
    remove_pin(&pins.legacy)
}
