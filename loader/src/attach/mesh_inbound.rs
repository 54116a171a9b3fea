//! The service mesh's inbound capture: one copy of `mesh_sk_lookup` per captured network
//! namespace (its cookie written into the code, see [`LoadedProgram::instance`]), attached to
//! that namespace with a pinned `BPF_LINK_CREATE` (`BPF_SK_LOOKUP`). sk_lookup links are
//! multi-attach: programs of others in the namespace keep running.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use super::{pin, reuse_pinned_link, Outcome, Pins};
use crate::error::Error;
use crate::object::LoadedProgram;
use crate::sys::{bpf, netns};

/// The pin name's kind for inbound capture: `mesh-inbound@<netns>`.
pub const KIND: &str = "mesh-inbound";

/// The cookie and inode of the network namespace `name_or_path` (a name in `/run/netns` or a
/// path).
///
/// # Errors
/// When the namespace cannot be opened, entered or stat'ed.
pub fn netns_identity(name_or_path: &str) -> Result<(u64, u64), Error> {
    let what = format!("network namespace {name_or_path}");
    let fd = netns::open(name_or_path).map_err(|e| Error::io(what.clone(), e))?;
    let cookie = netns::cookie(fd.as_fd())
        .map_err(|e| Error::io(format!("{what}: reading its cookie"), e))?;
    let ino = std::fs::File::from(fd)
        .metadata()
        .map_err(|e| Error::io(format!("{what}: fstat"), e))?
        .ino();
    Ok((cookie, ino))
}

pub(crate) fn attach(pins: &Pins, ns: &str, prog: &LoadedProgram) -> Result<Outcome, Error> {
    let target = format!("network namespace {ns} (sk_lookup)");
    let (cookie, ino) = netns_identity(ns)?;
    let copy = prog.instance(maps_schema::mesh::NETNS_PLACEHOLDER, cookie)?;
    // The kernel reports a netns link's namespace by its inode (32 bits of it).
    let on_this_netns = |t: &bpf::LinkInfoTarget| matches!(t, bpf::LinkInfoTarget::Netns { netns_ino, .. } if u64::from(*netns_ino) == ino & 0xffff_ffff);
    if let Some(outcome) = reuse_pinned_link(pins, &target, on_this_netns, &copy)? {
        return Ok(outcome);
    }
    let ns_fd = netns::open(ns).map_err(|e| Error::io(target.clone(), e))?;
    let link = bpf::link_create(
        copy.fd.as_fd(),
        bpf::LinkTarget::Fd(ns_fd.as_fd()),
        bpf::consts::BPF_SK_LOOKUP,
        0,
    )
    .map_err(|e| Error::bpf(format!("{target}: attaching '{}'", copy.spec.name), e))?;
    pin(link.as_fd(), &pins.link)?;
    log::info!(
        "{target}: program '{}' (id {}, netns cookie {cookie}) attached by netns link",
        copy.spec.name,
        copy.id
    );
    Ok(Outcome::Created)
}
