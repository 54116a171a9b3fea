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
//! - `if_counters` slots ([`assign_slots`]): every interface with TC programs gets a slot, an
//!   index into the per-CPU array `if_counters`, kept in its `fp_endpoints` entry (and in its
//!   `pol_endpoints` entries), so the programs count with an array lookup. A slot keeps the
//!   interface it was last assigned to (its `ifindex` field), so an interface keeps its
//!   counters across loads, and `weir status` reads them without another map.
//!
//! Writes are ordered so a program running meanwhile only sees consistent tables: endpoints
//! before the routes that lead to them, removals the other way round.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use maps_schema::{fastpath, if_slot, Codec, FpEndpoint, FpRoute, IfCounters, LpmV4Key, LpmV6Key};

use crate::config::{Config, Role};
use crate::contents::{self, Bytes, Undo};
use crate::error::Error;
use crate::maps::{MapSet, OpenMap};
use crate::sys::netlink::{LinkAddr, Netlink};

/// Interfaces by ifindex.
pub const MAP_ENDPOINTS: &str = "fp_endpoints";
/// IPv4 workload routes.
pub const MAP_ROUTES_V4: &str = "fp_routes_v4";
/// IPv6 workload routes.
pub const MAP_ROUTES_V6: &str = "fp_routes_v6";
/// Learned workload MACs.
pub const MAP_MACS: &str = "fp_macs";
/// Interface counters, by slot.
pub const MAP_COUNTERS: &str = "if_counters";

/// Interfaces' counter slots in `if_counters`, by ifindex.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Slots(pub BTreeMap<u32, u16>);

impl Slots {
    /// The slot of `ifindex`, [`if_slot::NONE`] when it has none.
    pub fn of(&self, ifindex: u32) -> u16 {
        self.0.get(&ifindex).copied().unwrap_or(NONE)
    }
}

const NONE: u16 = if_slot::NONE as u16;

/// A slot plan: the slot of every wanted interface, and the slots to (re)label for a new owner
/// (their counters start from zero).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SlotPlan {
    /// Slots by ifindex.
    pub slots: Slots,
    /// (slot, ifindex) pairs to write.
    pub label: Vec<(u16, u32)>,
}

/// Plans the counter slots of the interfaces `wanted` (ifindices) given the slots their
/// `fp_endpoints` entries have now (`current`) and the interface each slot of `if_counters`
/// was last assigned to (`labels`, by slot; 0: never). Pure.
///
/// An interface keeps its current slot, or else finds the slot still labelled with it (its
/// counters go on, as a removed interface's did in a hash by ifindex); a new one takes a slot
/// nobody has used, then one labelled with an interface that neither has now nor will have
/// (its counters are dropped). A slot some current entry refers to is never handed to another
/// interface: a program may count into it until that entry is rewritten. When no slot is left,
/// the interface gets [`if_slot::NONE`]: counted nowhere, until a later load frees a slot.
pub fn plan_slots(
    wanted: &BTreeSet<u32>,
    current: &BTreeMap<u32, u16>,
    labels: &[u32],
) -> SlotPlan {
    let usable = |s: u16| s != NONE && usize::from(s) < labels.len();
    let mut plan = SlotPlan::default();
    let mut taken: BTreeSet<u16> = BTreeSet::new();
    let keep = |ifindex: u32, s: u16, plan: &mut SlotPlan, taken: &mut BTreeSet<u16>| {
        taken.insert(s);
        plan.slots.0.insert(ifindex, s);
        if labels[usize::from(s)] != ifindex {
            plan.label.push((s, ifindex));
        }
    };
    // Current slots whose label is this interface's, or unused (a rebuilt if_counters).
    for &ifindex in wanted {
        if let Some(&s) = current.get(&ifindex) {
            let label = labels.get(usize::from(s)).copied();
            if usable(s) && !taken.contains(&s) && (label == Some(ifindex) || label == Some(0)) {
                keep(ifindex, s, &mut plan, &mut taken);
            }
        }
    }
    // Referred to by current entries: not to be handed to anyone else.
    let referred: BTreeSet<u16> = current.values().copied().collect();
    let labelled: BTreeMap<u32, u16> = (1..labels.len())
        .filter_map(|s| Some((labels[s], u16::try_from(s).ok()?)))
        .filter(|(ifindex, _)| *ifindex != 0)
        .collect();
    let owners: BTreeSet<u32> = wanted.iter().chain(current.keys()).copied().collect();
    let mut fresh = (1..labels.len())
        .filter_map(|s| u16::try_from(s).ok())
        .filter(|s| labels[usize::from(*s)] == 0 && !referred.contains(s));
    let mut stale = (1..labels.len())
        .filter_map(|s| u16::try_from(s).ok())
        .filter(|s| {
            let label = labels[usize::from(*s)];
            label != 0 && !owners.contains(&label) && !referred.contains(s)
        });
    for &ifindex in wanted {
        if plan.slots.0.contains_key(&ifindex) {
            continue;
        }
        let own = labelled
            .get(&ifindex)
            .copied()
            .filter(|s| !taken.contains(s) && !referred.contains(s));
        let s = own
            .or_else(|| fresh.find(|s| !taken.contains(s)))
            .or_else(|| stale.find(|s| !taken.contains(s)));
        match s {
            Some(s) => keep(ifindex, s, &mut plan, &mut taken),
            None => {
                plan.slots.0.insert(ifindex, NONE);
            }
        }
    }
    plan
}

/// The ifindex of every interface of `cfg` with TC programs that exists.
fn tc_ifindices(cfg: &Config) -> Result<BTreeSet<u32>, Error> {
    let mut out = BTreeSet::new();
    if !cfg.interfaces.iter().any(|i| i.tc) {
        return Ok(out);
    }
    let mut nl = Netlink::open().map_err(|e| Error::netlink("rtnetlink socket", e))?;
    for i in cfg.interfaces.iter().filter(|i| i.tc) {
        // One that does not exist is refused by `apply` with the reason.
        if let Some(index) = nl
            .link_index(&i.name)
            .map_err(|e| Error::netlink(format!("interface '{}'", i.name), e))?
        {
            out.insert(index);
        }
    }
    Ok(out)
}

/// The slots the `fp_endpoints` entries hold now, by ifindex (for a command that reads only).
///
/// # Errors
/// Reading `fp_endpoints` failed.
pub fn current_slots(maps: &MapSet) -> Result<Slots, Error> {
    let Some(endpoints) = maps.get(MAP_ENDPOINTS) else {
        return Ok(Slots::default());
    };
    Ok(Slots(
        contents::entries(endpoints)?
            .iter()
            .filter_map(|(k, v)| Some((u32::decode(k).ok()?, FpEndpoint::decode(v).ok()?.slot)))
            .collect(),
    ))
}

/// The interface each `if_counters` slot was last assigned to (by slot; 0: never).
fn slot_labels(m: &OpenMap) -> Result<Vec<u32>, Error> {
    let size = m.def.value.size as usize;
    let mut labels = vec![0u32; m.def.max_entries as usize];
    for (k, v) in contents::entries(m)? {
        let (Ok(slot), Some(first)) = (u32::decode(&k), v.get(..size)) else {
            continue;
        };
        if let (Some(label), Ok(c)) = (labels.get_mut(slot as usize), IfCounters::decode(first)) {
            *label = c.ifindex;
        }
    }
    Ok(labels)
}

/// Assigns the counter slots of `cfg`'s interfaces with TC programs ([`plan_slots`]) and
/// labels the slots that change hands (their counters start from zero), before any map entry
/// refers to them. Empty when the loaded objects have no `if_counters` or `fp_endpoints`.
///
/// # Errors
/// Resolving the interfaces or reading or writing the maps failed (the writes are in `undo`).
pub fn assign_slots(maps: &MapSet, cfg: &Config, undo: &mut Undo) -> Result<Slots, Error> {
    let (Some(counters), Some(_)) = (maps.get(MAP_COUNTERS), maps.get(MAP_ENDPOINTS)) else {
        return Ok(Slots::default());
    };
    let wanted = tc_ifindices(cfg)?;
    let current = current_slots(maps)?.0;
    let plan = plan_slots(&wanted, &current, &slot_labels(counters)?);
    let unslotted = plan.slots.0.values().filter(|s| **s == NONE).count();
    if unslotted > 0 {
        log::warn!(
            "map '{MAP_COUNTERS}': {unslotted} interface(s) get no counter slot (all {} are taken):              their packets are not counted",
            if_slot::SLOTS - 1
        );
    }
    let cpus = crate::sys::bpf::possible_cpus()
        .map_err(|e| Error::io("reading the possible CPUs", e))? as usize;
    for &(slot, ifindex) in &plan.label {
        let value = IfCounters {
            ifindex,
            ..IfCounters::default()
        }
        .encode();
        let per_cpu = value.len().next_multiple_of(8);
        let mut all = vec![0u8; per_cpu * cpus];
        for cpu in all.chunks_mut(per_cpu) {
            cpu[..value.len()].copy_from_slice(&value);
        }
        contents::write_entry(counters, &u32::from(slot).encode(), &all, undo)?;
    }
    Ok(plan.slots)
}

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

/// Compiles the config's interfaces into the fast path's map contents, with their counter
/// `slots`. `link` resolves an interface name (the caller asks the kernel). Pure.
///
/// # Errors
/// An interface with TC programs that `link` cannot resolve (named), or two workloads
/// claiming the same address.
pub fn compile(
    cfg: &Config,
    slots: &Slots,
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
            slot: slots.of(l.ifindex),
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

/// Writes the fast path maps for `cfg`, with the counter `slots` of [`assign_slots`]: only the
/// difference against what they hold. Does nothing when the loaded objects have no fast path
/// maps.
///
/// # Errors
/// An interface that cannot be resolved, conflicting workload addresses, or a map error
/// (earlier writes are in `undo` for the caller to roll back).
pub fn apply(
    maps: &MapSet,
    cfg: &Config,
    slots: &Slots,
    undo: &mut Undo,
) -> Result<FastpathChange, Error> {
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
    let mut desired = compile(cfg, slots, |name| match nl.as_mut() {
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
            &Slots([(101, 7), (102, 3)].into()),
            links,
        )
        .unwrap();
        assert_eq!(
            endpoint(&d, 101),
            Some(FpEndpoint {
                flags: fastpath::ON,
                mac: [2, 0, 0, 0, 0, 1],
                slot: 7
            })
        );
        assert_eq!(endpoint(&d, 102).unwrap().slot, 3);
        // No slot assigned: counted nowhere.
        assert_eq!(endpoint(&d, 103).unwrap().slot, 0);
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
            &Slots::default(),
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
            &Slots::default(),
            links,
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("wl2") && text.contains("wl1"), "{text}");
    }

    fn set(v: &[u32]) -> BTreeSet<u32> {
        v.iter().copied().collect()
    }

    #[test]
    fn slots_stay_with_their_interfaces() {
        // 10 has slot 1, 11 slot 2; 12 is new; 4 slots (slot 0 is nobody's).
        let current = BTreeMap::from([(10, 1), (11, 2)]);
        let p = plan_slots(&set(&[10, 11, 12]), &current, &[0, 10, 11, 0]);
        assert_eq!(p.slots, Slots([(10, 1), (11, 2), (12, 3)].into()));
        assert_eq!(p.label, vec![(3, 12)], "only the new slot is labelled");
        // Unchanged: nothing to write.
        let p2 = plan_slots(&set(&[10, 11, 12]), &p.slots.0, &[0, 10, 11, 12]);
        assert_eq!(p2.slots, p.slots);
        assert!(p2.label.is_empty());
    }

    #[test]
    fn a_returning_interface_finds_its_counters() {
        // 11 was removed (slot 2 still labelled with it); it comes back.
        let p = plan_slots(&set(&[10, 11]), &BTreeMap::from([(10, 1)]), &[0, 10, 11, 0]);
        assert_eq!(p.slots.of(11), 2);
        assert!(p.label.is_empty());
    }

    #[test]
    fn a_slot_in_use_is_never_handed_on() {
        // 11 leaves but its entry (slot 2) is still there while this load runs: 12 must not get
        // slot 2 although its label is stale-to-be; slot 3 is free.
        let current = BTreeMap::from([(10, 1), (11, 2)]);
        let p = plan_slots(&set(&[10, 12]), &current, &[0, 10, 11, 0]);
        assert_eq!(p.slots.of(12), 3);
        // No free slot: the stale one is used only once nothing refers to it.
        let p = plan_slots(&set(&[10, 12]), &current, &[0, 10, 11]);
        assert_eq!(p.slots.of(12), 0);
        let p = plan_slots(&set(&[10, 12]), &BTreeMap::from([(10, 1)]), &[0, 10, 11]);
        assert_eq!(p.slots.of(12), 2);
        assert_eq!(
            p.label,
            vec![(2, 12)],
            "relabelled: 11's counters are dropped"
        );
    }

    #[test]
    fn a_rebuilt_counter_map_keeps_the_entries_slots() {
        // if_counters was recreated (every label 0): the entries' slots are labelled again.
        let current = BTreeMap::from([(10, 2), (11, 1)]);
        let p = plan_slots(&set(&[10, 11]), &current, &[0, 0, 0, 0]);
        assert_eq!(p.slots, Slots([(10, 2), (11, 1)].into()));
        assert_eq!(p.label, vec![(2, 10), (1, 11)]);
        // An entry whose slot is another interface's, or out of range, or none, gets a new one.
        let current = BTreeMap::from([(10, 2), (11, 9), (12, 0)]);
        let p = plan_slots(&set(&[10, 11, 12]), &current, &[0, 0, 13, 0, 0]);
        assert_eq!(p.slots.0.len(), 3);
        let mut got: Vec<u16> = p.slots.0.values().copied().collect();
        got.sort_unstable();
        got.dedup();
        assert_eq!(got.len(), 3, "{p:?}");
        assert!(p.slots.0.values().all(|s| *s != 0 && *s != 2), "{p:?}");
    }

    #[test]
    fn an_unknown_interface_is_named() {
        let e = compile(&cfg("interface ghost0\n"), &Slots::default(), |name| {
            Err(Error::attach(
                format!("interface '{name}'"),
                "it does not exist",
            ))
        })
        .unwrap_err();
        assert!(e.to_string().contains("ghost0"), "{e}");
    }
}
