//! A throwaway routed node: a host network namespace that forwards between two workloads and an
//! outside network, each behind a veth pair, like a Kubernetes node with two pods and an uplink.
//! Unique names, removed again on drop. The fast path's demo, tests and benchmark run in one.
//!
//! ```text
//!   w1  eth0 198.18.1.2/24 2001:db8:1::2/64 ── h1 (.1) ┐
//!   w2  eth0 198.18.2.2/24 2001:db8:2::2/64 ── h2 (.1) ├─ host: forwarding on
//!   out eth0 198.18.3.2/24 2001:db8:3::2/64 ── ho (.1) ┘
//! ```
//!
//! Every namespace other than the host has a default route via its host-side address.
//! Addresses come from the benchmarking range 198.18.0.0/15 and the documentation prefix
//! 2001:db8::/32. Nothing is created in the caller's own namespace: each veth is made inside
//! the host namespace with its peer placed straight into the other one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::Error;
use crate::sys::netlink::Netlink;
use crate::sys::netns;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One side network of the host: a namespace behind a veth pair.
#[derive(Debug, Clone)]
pub struct Leg {
    /// The namespace (name under /run/netns).
    pub netns: String,
    /// The host-side interface name (in the host namespace).
    pub host_if: String,
    /// The address inside the namespace (on its `eth0`).
    pub v4: Ipv4Addr,
    /// Its IPv6 address.
    pub v6: Ipv6Addr,
    /// The host-side addresses: the namespace's default gateways.
    pub gw4: Ipv4Addr,
    /// IPv6 gateway.
    pub gw6: Ipv6Addr,
}

/// The routed node. Field order is the order of creation.
#[derive(Debug)]
pub struct Routed {
    /// The host namespace (where weir loads).
    pub host: String,
    /// The first workload.
    pub w1: Leg,
    /// The second workload.
    pub w2: Leg,
    /// The outside network (the uplink's far side).
    pub out: Leg,
    /// A pin dir of this node's own (under /sys/fs/bpf).
    pub pin_dir: PathBuf,
    created: Vec<String>,
}

fn leg(tag: &str, id: &str, name: &str, net: u8) -> Leg {
    Leg {
        netns: format!("weir-{tag}-{id}-{name}"),
        host_if: format!("{tag}{id}{name}"),
        v4: Ipv4Addr::new(198, 18, net, 2),
        v6: Ipv6Addr::new(0x2001, 0xdb8, u16::from(net), 0, 0, 0, 0, 2),
        gw4: Ipv4Addr::new(198, 18, net, 1),
        gw6: Ipv6Addr::new(0x2001, 0xdb8, u16::from(net), 0, 0, 0, 0, 1),
    }
}

fn nl_err(what: String) -> impl FnOnce(crate::sys::netlink::NetlinkError) -> Error {
    move |e| Error::netlink(what, e)
}

fn index(nl: &mut Netlink, name: &str) -> Result<u32, Error> {
    nl.link_index(name)
        .map_err(nl_err(format!("looking up {name}")))?
        .ok_or_else(|| Error::Environment(format!("{name} vanished after creation")))
}

impl Routed {
    /// Creates the node; names start with `tag` (≤ 3 characters, so interface names fit in 15).
    ///
    /// # Errors
    /// Returns an error (after removing whatever was created) when a namespace, link, address,
    /// route or sysctl cannot be set up.
    pub fn new(tag: &str) -> Result<Self, Error> {
        let id = format!(
            "{}{}",
            std::process::id() % 100_000,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut r = Self {
            host: format!("weir-{tag}-{id}-h"),
            w1: leg(tag, &id, "w1", 1),
            w2: leg(tag, &id, "w2", 2),
            out: leg(tag, &id, "o", 3),
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/weir-{tag}-{id}")),
            created: Vec::new(),
        };
        r.build()?; // on error, Drop removes what was made
        Ok(r)
    }

    /// The three legs: w1, w2, out.
    pub fn legs(&self) -> [&Leg; 3] {
        [&self.w1, &self.w2, &self.out]
    }

    fn build(&mut self) -> Result<(), Error> {
        let names: Vec<String> = std::iter::once(self.host.clone())
            .chain(self.legs().iter().map(|l| l.netns.clone()))
            .collect();
        for ns in names {
            netns::create(&ns)
                .map_err(|e| Error::io(format!("creating network namespace {ns}"), e))?;
            self.created.push(ns);
        }
        let host = self.open(&self.host)?;
        let legs: Vec<Leg> = self.legs().iter().map(|l| (*l).clone()).collect();
        for l in &legs {
            let far = self.open(&l.netns)?;
            netns::run_in(host.as_fd(), || -> Result<(), Error> {
                let mut nl = Netlink::open().map_err(nl_err("routed node".into()))?;
                nl.link_add_veth(&l.host_if, "eth0", Some(far.as_fd()))
                    .map_err(nl_err(format!("creating veth {}", l.host_if)))?;
                let idx = index(&mut nl, &l.host_if)?;
                let ctx = format!("configuring {}", l.host_if);
                nl.addr_add(idx, l.gw4.into(), 24)
                    .map_err(nl_err(ctx.clone()))?;
                nl.addr_add(idx, l.gw6.into(), 64)
                    .map_err(nl_err(ctx.clone()))?;
                nl.link_set_up(idx).map_err(nl_err(ctx))
            })?;
            netns::run_in(far.as_fd(), || -> Result<(), Error> {
                let mut nl = Netlink::open().map_err(nl_err("routed node".into()))?;
                let ctx = format!("configuring eth0 in {}", l.netns);
                let lo = index(&mut nl, "lo")?;
                nl.link_set_up(lo).map_err(nl_err(ctx.clone()))?;
                let idx = index(&mut nl, "eth0")?;
                nl.addr_add(idx, l.v4.into(), 24)
                    .map_err(nl_err(ctx.clone()))?;
                nl.addr_add(idx, l.v6.into(), 64)
                    .map_err(nl_err(ctx.clone()))?;
                nl.link_set_up(idx).map_err(nl_err(ctx.clone()))?;
                nl.route_add_default(l.gw4.into())
                    .map_err(nl_err(ctx.clone()))?;
                nl.route_add_default(l.gw6.into()).map_err(nl_err(ctx))
            })?;
        }
        netns::run_in(host.as_fd(), || -> Result<(), Error> {
            let mut nl = Netlink::open().map_err(nl_err("routed node".into()))?;
            let lo = index(&mut nl, "lo")?;
            nl.link_set_up(lo)
                .map_err(nl_err("lo in the host namespace".into()))?;
            // /proc/sys/net shows the namespace of the thread that opens it.
            for (key, path) in [
                ("IPv4 forwarding", "/proc/sys/net/ipv4/ip_forward"),
                ("IPv6 forwarding", "/proc/sys/net/ipv6/conf/all/forwarding"),
            ] {
                std::fs::write(path, "1")
                    .map_err(|e| Error::io(format!("turning {key} on ({path})"), e))?;
            }
            Ok(())
        })
    }

    fn open(&self, ns: &str) -> Result<OwnedFd, Error> {
        netns::open(ns).map_err(|e| Error::io(format!("opening network namespace {ns}"), e))
    }

    /// Runs `f` on a thread inside namespace `ns` (one of this node's).
    ///
    /// # Errors
    /// Returns an error when the namespace cannot be opened.
    pub fn run_in<T: Send>(&self, ns: &str, f: impl FnOnce() -> T + Send) -> Result<T, Error> {
        let fd = self.open(ns)?;
        Ok(netns::run_in(fd.as_fd(), f))
    }

    /// The host's `interface` statements for weir: both workloads (with their addresses) and
    /// the uplink, TC only, and `extra` appended to every line (e.g. `fastpath=off`).
    pub fn config(&self, extra: &str) -> String {
        let sep = if extra.is_empty() { "" } else { " " };
        let mut out = String::new();
        for w in [&self.w1, &self.w2] {
            out.push_str(&format!(
                "interface {} role=workload xdp=off addrs={},{}{sep}{extra}\n",
                w.host_if, w.v4, w.v6
            ));
        }
        out.push_str(&format!(
            "interface {} xdp=off{sep}{extra}\n",
            self.out.host_if
        ));
        out
    }

    /// Every address of the node's three side networks.
    pub fn addrs(&self) -> Vec<IpAddr> {
        self.legs()
            .iter()
            .flat_map(|l| [IpAddr::from(l.v4), IpAddr::from(l.v6)])
            .collect()
    }
}

impl Drop for Routed {
    fn drop(&mut self) {
        if self.pin_dir.exists() {
            // Detach whatever was left attached before the namespaces go.
            if let Ok(h) = self.open(&self.host) {
                let dp = crate::Dataplane::new(self.pin_dir.clone());
                let _ = netns::run_in(h.as_fd(), || dp.unload());
            }
        }
        // Deleting a namespace deletes the veth ends in it, and so the pairs.
        for ns in self.created.drain(..).rev() {
            if let Err(e) = netns::delete(&ns) {
                log::warn!("routed node: removing network namespace {ns}: {e}");
            }
        }
    }
}
