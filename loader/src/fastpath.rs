//! The fast path to local workloads: the `interface … addrs= fastpath=` statements compiled
//! into the `fp_*` maps the TC ingress program reads (programs/include/weir_fastpath.h), written
//! as a difference against what they hold.
//!
//! - `fp_endpoints`: every interface with TC programs, by ifindex: whether the fast path is
//!   on there, whether it is a workload's host side, whether it may be a policy endpoint
//!   (`fastpath::POLICY`: it has `pol_endpoints` entries in either bank; TC ingress skips the
//!   policy lookups of the others), and its own MAC (the source of the frames the fast path
//!   sends into the workload).
//! - `fp_routes_v4` / `fp_routes_v6`: the `addrs=` of every workload with the fast path on →
//!   its host-side interface. A workload with `fastpath=off` has no routes: packets for it
//!   take the normal path.
//! - `fp_macs` is the program's own (the workloads' MACs it learned); entries of interfaces
//!   that are no longer workloads are removed here.
//!
//! Writes are ordered so a program running meanwhile only sees consistent tables: endpoints
//! before the routes that lead to them, removals the other way round.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use maps_schema::{fastpath, Codec, FpEndpoint, FpRoute, LpmV4Key, LpmV6Key};

use crate::config::{Config, Role};
use crate::contents::{self, Bytes, Undo};
use crate::error::Error;
use crate::maps::MapSet;
use crate::sys::netlink::{LinkAddr, Netlink};

/// Interfaces by ifindex.
pub const MAP_ENDPOINTS: &str = "fp_endpoints";
/// IPv4 workload routes.
pub const MAP_ROUTES_V4: &str = "fp_routes_v4";
/// IPv6 workload routes.
pub const MAP_ROUTES_V6: &str = "fp_routes_v6";
/// Learned workload MACs.
pub const MAP_MACS: &str = "fp_macs";

/// An interface as the kernel knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub ifindex: u32,
    /// Its Ethernet address.
    pub mac: [u8; 6],
}

/// What the `fp_*` maps should hold, encoded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Desired {
    /// `fp_endpoints`.
    pub endpoints: Bytes,
    /// `fp_routes_v4`.
    pub routes_v4: Bytes,
    /// `fp_routes_v6`.
    pub routes_v6: Bytes,
}

/// Compiles the config's interfaces into the fast path's map contents. `link` resolves an
/// interface name (the caller asks the kernel). Pure.
///
/// # Errors
/// An interface with TC programs that `link` cannot resolve (named), or two workloads
/// claiming the same address.
pub fn compile(
    cfg: &Config,
    mut link: impl FnMut(&str) -> Result<Link, Error>,
) -> Result<Desired, Error> {
    let mut out = Desired::default();
    let mut owner: BTreeMap<(IpAddr, u8), &str> = BTreeMap::new();
    for i in cfg.interfaces.iter().filter(|i| i.tc) {
        let l = link(&i.name)?;
        let workload = i.role == Role::Workload;
        let mut flags = 0;
        if i.fastpath {
            flags |= fastpath::ON;
        }
        if workload {
            flags |= fastpath::WORKLOAD;
        }
        let value = FpEndpoint {
            flags,
            mac: l.mac,
            pad: [0; 2],
        };
        out.endpoints.insert(l.ifindex.encode(), value.encode());
        if !(workload && i.fastpath) {
            continue;
        }
        let route = FpRoute {
            ifindex: l.ifindex,
            pad: 0,
        }
        .encode();
        for cidr in &i.addrs {
            let net = cidr.network().addr;
            if let Some(other) = owner.insert((net, cidr.prefix_len), &i.name) {
                return Err(Error::Environment(format!(
                    "{}:{}:{}: interface '{}': address {cidr} is also an address of workload \
                     '{other}'; a workload address must belong to one workload",
                    cfg.source, i.span.line, i.span.column, i.name
                )));
            }
            match net {
                IpAddr::V4(a) => {
                    if let Some(k) = LpmV4Key::new(a, u32::from(cidr.prefix_len)) {
                        out.routes_v4.insert(k.encode(), route.clone());
                    }
                }
                IpAddr::V6(a) => {
                    if let Some(k) = LpmV6Key::new(a, u32::from(cidr.prefix_len)) {
                        out.routes_v6.insert(k.encode(), route.clone());
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Resolves an interface through rtnetlink.
fn resolve(nl: &mut Netlink, name: &str) -> Result<Link, Error> {
    match nl.link_index_mac(name) {
        Ok(Some(LinkAddr {
            ifindex,
            mac: Some(mac),
        })) => Ok(Link { ifindex, mac }),
        Ok(Some(LinkAddr { mac: None, .. })) => Err(Error::attach(
            format!("interface '{name}'"),
            "it has no Ethernet address, so the fast path cannot send frames through it; \
             set fastpath=off (or tc=off) on it",
        )),
        Ok(None) => Err(Error::attach(
            format!("interface '{name}'"),
            "it does not exist; create it first or remove it from the config",
        )),
        Err(e) => Err(Error::netlink(format!("interface '{name}'"), e)),
    }
}

/// Sets `fastpath::POLICY` on the endpoints whose interface is in `policy` (pure).
fn mark_policy(endpoints: &mut Bytes, policy: &std::collections::BTreeSet<u32>) {
    for (k, v) in endpoints.iter_mut() {
        let (Ok(ifindex), Ok(mut ep)) = (u32::decode(k), FpEndpoint::decode(v)) else {
            continue;
        };
        if policy.contains(&ifindex) {
            ep.flags |= fastpath::POLICY;
            *v = ep.encode();
        }
    }
}

/// What applying the fast path maps changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FastpathChange {
    /// Endpoints written and removed; endpoints afterwards.
    pub endpoints: (usize, usize, usize),
    /// Routes (v4 and v6) written and removed; routes afterwards.
    pub routes: (usize, usize, usize),
}

impl FastpathChange {
    /// True when nothing was written.
    pub fn is_noop(&self) -> bool {
        self.endpoints.0 + self.endpoints.1 + self.routes.0 + self.routes.1 == 0
    }
}

impl fmt::Display for FastpathChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fastpath: endpoints {} written {} removed ({} in all), routes {} written {} removed ({} in all)",
            self.endpoints.0,
            self.endpoints.1,
            self.endpoints.2,
            self.routes.0,
            self.routes.1,
            self.routes.2
        )
    }
}

/// Writes the fast path maps for `cfg`: only the difference against what they hold. Does
/// nothing when the loaded objects have no fast path maps.
///
/// # Errors
/// An interface that cannot be resolved, conflicting workload addresses, or a map error
/// (earlier writes are in `undo` for the caller to roll back).
pub fn apply(maps: &MapSet, cfg: &Config, undo: &mut Undo) -> Result<FastpathChange, Error> {
    let Some(endpoints) = maps.get(MAP_ENDPOINTS) else {
        return Ok(FastpathChange::default());
    };
    let get = |name: &str| {
        maps.get(name)
            .ok_or_else(|| Error::map(name.to_owned(), "missing beside fp_endpoints"))
    };
    let (v4, v6, macs) = (get(MAP_ROUTES_V4)?, get(MAP_ROUTES_V6)?, get(MAP_MACS)?);
    let mut nl = if cfg.interfaces.iter().any(|i| i.tc) {
        Some(Netlink::open().map_err(|e| Error::netlink("rtnetlink socket", e))?)
    } else {
        None
    };
    let mut desired = compile(cfg, |name| match nl.as_mut() {
        Some(nl) => resolve(nl, name),
        None => Err(Error::attach(
            format!("interface '{name}'"),
            "no rtnetlink socket",
        )),
    })?;
    // The policy hint: policy_maps::apply ran first, so both banks' endpoints are known here.
    mark_policy(
        &mut desired.endpoints,
        &crate::policy_maps::endpoint_ifindices(maps)?,
    );
    for (m, want) in [(v4, &desired.routes_v4), (v6, &desired.routes_v6)] {
        let cap = crate::sys::bpf::map_info(std::os::fd::AsFd::as_fd(&m.fd))
            .map_err(|e| Error::bpf(format!("map '{}'", m.def.name), e))?
            .max_entries as usize;
        if want.len() > cap {
            return Err(Error::map(
                m.def.name,
                format!(
                    "the workloads have {} addresses, more than its capacity of {cap}; nothing was changed",
                    want.len()
                ),
            ));
        }
    }
    let cur_endpoints = contents::entries(endpoints)?;
    let cur_v4 = contents::entries(v4)?;
    let cur_v6 = contents::entries(v6)?;
    let cur_macs = contents::entries(macs)?;
    let workloads: Bytes = desired
        .endpoints
        .iter()
        .filter(|(_, v)| FpEndpoint::decode(v).is_ok_and(|e| e.flags & fastpath::WORKLOAD != 0))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut change = FastpathChange::default();
    change.endpoints.0 = contents::write_diff(endpoints, &cur_endpoints, &desired.endpoints, undo)?;
    change.routes.0 = contents::write_diff(v4, &cur_v4, &desired.routes_v4, undo)?
        + contents::write_diff(v6, &cur_v6, &desired.routes_v6, undo)?;
    change.routes.1 = contents::delete_diff(v4, &cur_v4, &desired.routes_v4, undo)?
        + contents::delete_diff(v6, &cur_v6, &desired.routes_v6, undo)?;
    change.endpoints.1 =
        contents::delete_diff(endpoints, &cur_endpoints, &desired.endpoints, undo)?;
    // A MAC learned for an interface that is no longer a workload (or gone) is stale.
    contents::delete_diff(macs, &cur_macs, &workloads, undo)?;
    change.endpoints.2 = desired.endpoints.len();
    change.routes.2 = desired.routes_v4.len() + desired.routes_v6.len();
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        crate::config::parse("t.conf", text).expect("config")
    }

    fn links(name: &str) -> Result<Link, Error> {
        let n: u32 = name
            .trim_start_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .unwrap();
        Ok(Link {
            ifindex: 100 + n,
            mac: [2, 0, 0, 0, 0, n as u8],
        })
    }

    fn endpoint(d: &Desired, ifindex: u32) -> Option<FpEndpoint> {
        d.endpoints
            .get(&ifindex.encode())
            .map(|v| FpEndpoint::decode(v).unwrap())
    }

    #[test]
    fn workloads_get_routes_hosts_only_an_endpoint() {
        let d = compile(
            &cfg("interface eth1\n\
                  interface wl2 role=workload addrs=10.0.0.2,fd00::2\n\
                  interface wl3 role=workload addrs=10.0.1.0/24 fastpath=off\n\
                  interface wl4 role=workload addrs=10.0.0.4 tc=off\n"),
            links,
        )
        .unwrap();
        assert_eq!(
            endpoint(&d, 101),
            Some(FpEndpoint {
                flags: fastpath::ON,
                mac: [2, 0, 0, 0, 0, 1],
                pad: [0; 2]
            })
        );
        assert_eq!(
            endpoint(&d, 102).unwrap().flags,
            fastpath::ON | fastpath::WORKLOAD
        );
        // fastpath=off: known (so nothing is routed out of it either) but off, and no routes.
        assert_eq!(endpoint(&d, 103).unwrap().flags, fastpath::WORKLOAD);
        // tc=off: no programs there, nothing at all.
        assert_eq!(endpoint(&d, 104), None);
        let route = FpRoute {
            ifindex: 102,
            pad: 0,
        }
        .encode();
        let k4 = LpmV4Key::new("10.0.0.2".parse().unwrap(), 32).unwrap();
        let k6 = LpmV6Key::new("fd00::2".parse().unwrap(), 128).unwrap();
        assert_eq!(d.routes_v4, Bytes::from([(k4.encode(), route.clone())]));
        assert_eq!(d.routes_v6, Bytes::from([(k6.encode(), route)]));
    }

    #[test]
    fn policy_endpoints_get_the_hint_and_nothing_else_changes() {
        let mut d = compile(
            &cfg("interface eth1\n\
                  interface wl2 role=workload addrs=10.0.0.2\n\
                  interface wl3 role=workload addrs=10.0.0.3 fastpath=off\n"),
            links,
        )
        .unwrap();
        // 103 and an interface weir has no entry for (999) are policy endpoints.
        mark_policy(&mut d.endpoints, &[103, 999].into());
        assert_eq!(endpoint(&d, 101).unwrap().flags, fastpath::ON);
        assert_eq!(
            endpoint(&d, 102).unwrap().flags,
            fastpath::ON | fastpath::WORKLOAD
        );
        let ep = endpoint(&d, 103).unwrap();
        assert_eq!(ep.flags, fastpath::WORKLOAD | fastpath::POLICY);
        assert_eq!(ep.mac, [2, 0, 0, 0, 0, 3]);
        assert_eq!(d.endpoints.len(), 3);
    }

    #[test]
    fn an_address_belongs_to_one_workload() {
        let e = compile(
            &cfg("interface wl1 role=workload addrs=10.0.0.2\n\
                  interface wl2 role=workload addrs=10.0.0.2/32\n"),
            links,
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("wl2") && text.contains("wl1"), "{text}");
    }

    #[test]
    fn an_unknown_interface_is_named() {
        let e = compile(&cfg("interface ghost0\n"), |name| {
            Err(Error::attach(
                format!("interface '{name}'"),
                "it does not exist",
            ))
        })
        .unwrap_err();
        assert!(e.to_string().contains("ghost0"), "{e}");
    }
}
