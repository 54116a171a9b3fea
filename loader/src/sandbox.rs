//! A throwaway network: two network namespaces joined by a veth pair, and a cgroup, with unique
//! names and removed again on drop. `weir demo` runs in one, and so do the end-to-end tests.
//!
//! Namespace `a` is the client side, namespace `b` the host weir protects. Addresses come from the
//! benchmarking range 198.18.0.0/15 and the documentation prefix 2001:db8::/32, so nothing here can
//! be mistaken for a real network. Nothing is created in the caller's own namespace: the veth is
//! made inside `a` with its peer placed straight into `b`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::Error;
use crate::sys::netlink::Netlink;
use crate::sys::{cgroup, netns};

/// Client-side address (in namespace `a`).
pub const ADDR_A4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Host-side address (in namespace `b`).
pub const ADDR_B4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// Client-side IPv6 address.
pub const ADDR_A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// Host-side IPv6 address.
pub const ADDR_B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Two namespaces, a veth pair between them, and a cgroup.
#[derive(Debug)]
pub struct Sandbox {
    /// Network namespace of the client (name under /run/netns).
    pub ns_a: String,
    /// Network namespace of the host weir loads into.
    pub ns_b: String,
    /// The veth end in `a`.
    pub veth_a: String,
    /// The veth end in `b`.
    pub veth_b: String,
    /// The cgroup, relative to the cgroup v2 mount.
    pub cgroup: String,
    /// The cgroup's directory.
    pub cgroup_dir: PathBuf,
    /// A pin dir of this sandbox's own (under /sys/fs/bpf).
    pub pin_dir: PathBuf,
    created_ns: Vec<String>,
    created_cgroup: bool,
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(context, e)
}

impl Sandbox {
    /// Creates a sandbox whose names start with `tag` (≤ 4 characters, so interface names fit in 15).
    ///
    /// # Errors
    /// Returns an error (after removing whatever was created) when a namespace, link, address or
    /// cgroup cannot be created.
    pub fn new(tag: &str) -> Result<Self, Error> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{}", std::process::id() % 100_000, n);
        let cg_root = cgroup::cgroup2_mount().map_err(io("finding the cgroup v2 mount".into()))?;
        let cgroup = format!("weir-{tag}-{id}");
        let mut sb = Self {
            ns_a: format!("weir-{tag}-{id}-a"),
            ns_b: format!("weir-{tag}-{id}-b"),
            veth_a: format!("{tag}{id}a"),
            veth_b: format!("{tag}{id}b"),
            cgroup_dir: cg_root.join(&cgroup),
            cgroup,
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/weir-{tag}-{id}")),
            created_ns: Vec::new(),
            created_cgroup: false,
        };
        sb.build()?; // on error, Drop removes what was made
        Ok(sb)
    }

    fn build(&mut self) -> Result<(), Error> {
        for ns in [self.ns_a.clone(), self.ns_b.clone()] {
            netns::create(&ns).map_err(io(format!("creating network namespace {ns}")))?;
            self.created_ns.push(ns);
        }
        let a = self.netns_fd(&self.ns_a)?;
        let b = self.netns_fd(&self.ns_b)?;
        let (va, vb) = (self.veth_a.clone(), self.veth_b.clone());
        netns::run_in(a.as_fd(), || -> Result<(), Error> {
            let mut nl = Netlink::open().map_err(|e| Error::netlink("sandbox", e))?;
            nl.link_add_veth(&va, &vb, Some(b.as_fd()))
                .map_err(|e| Error::netlink(format!("creating veth {va}"), e))?;
            configure(&mut nl, &va, ADDR_A4.into(), ADDR_A6.into())
        })?;
        netns::run_in(b.as_fd(), || -> Result<(), Error> {
            let mut nl = Netlink::open().map_err(|e| Error::netlink("sandbox", e))?;
            configure(&mut nl, &vb, ADDR_B4.into(), ADDR_B6.into())
        })?;
        cgroup::create(&self.cgroup_dir)
            .map_err(io(format!("creating cgroup {}", self.cgroup_dir.display())))?;
        self.created_cgroup = true;
        Ok(())
    }

    /// Opens the namespace `name` of this sandbox.
    ///
    /// # Errors
    /// Returns an error when it cannot be opened.
    pub fn netns_fd(&self, name: &str) -> Result<OwnedFd, Error> {
        netns::open(name).map_err(io(format!("opening network namespace {name}")))
    }

    /// Runs `f` on a thread inside namespace `a`.
    ///
    /// # Errors
    /// Returns an error when the namespace cannot be opened.
    pub fn in_a<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, Error> {
        let fd = self.netns_fd(&self.ns_a)?;
        Ok(netns::run_in(fd.as_fd(), f))
    }

    /// Runs `f` on a thread inside namespace `b`.
    ///
    /// # Errors
    /// Returns an error when the namespace cannot be opened.
    pub fn in_b<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, Error> {
        let fd = self.netns_fd(&self.ns_b)?;
        Ok(netns::run_in(fd.as_fd(), f))
    }
}

fn configure(nl: &mut Netlink, ifname: &str, v4: IpAddr, v6: IpAddr) -> Result<(), Error> {
    let ctx = |e| Error::netlink(format!("configuring {ifname}"), e);
    let lo = nl
        .link_index("lo")
        .map_err(ctx)?
        .ok_or_else(|| Error::Environment("no lo in namespace".into()))?;
    nl.link_set_up(lo).map_err(ctx)?;
    let idx = nl
        .link_index(ifname)
        .map_err(ctx)?
        .ok_or_else(|| Error::Environment(format!("{ifname} vanished after creation")))?;
    nl.addr_add(idx, v4, 24).map_err(ctx)?;
    nl.addr_add(idx, v6, 64).map_err(ctx)?;
    nl.link_set_up(idx).map_err(ctx)?;
    Ok(())
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.pin_dir.exists() {
            // Detach whatever a test or the demo left attached before the namespaces go.
            if let Ok(b) = self.netns_fd(&self.ns_b) {
                let dp = crate::Dataplane::new(self.pin_dir.clone());
                let _ = netns::run_in(b.as_fd(), || dp.unload());
            }
        }
        // Deleting the namespaces deletes the veth pair with them.
        for ns in self.created_ns.drain(..) {
            if let Err(e) = netns::delete(&ns) {
                log::warn!("sandbox: removing network namespace {ns}: {e}");
            }
        }
        if self.created_cgroup {
            if let Err(e) = cgroup::remove(&self.cgroup_dir) {
                log::warn!(
                    "sandbox: removing cgroup {}: {e}",
                    self.cgroup_dir.display()
                );
            }
        }
    }
}
