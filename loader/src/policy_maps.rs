//! Writing the network policy into the TC program's maps, all at once.
//!
//! The classifier maps hold two banks and `pol_active` names the one packets read. An apply
//! compiles the config, and when the result differs from what the active bank holds, writes the
//! whole policy into the other bank (nothing reads it), then its `pol_endpoints` entries, then
//! flips `pol_active` (one 4-byte write: every packet sees either the old policy or the new one,
//! never a mix), and finally removes the old bank's endpoint entries. A failure before the flip
//! leaves the old policy in force; the flip and the endpoint writes are in the undo log, so a
//! later failure in the same command puts the old bank back. Conntrack entries belong to no
//! bank: flows established under the old policy keep going.
//!
//! TC ingress looks an interface's policy up only when its fast path entry (`fp_endpoints`)
//! carries `fastpath::POLICY` (or when it has no entry): the new endpoints get that mark before
//! the flip, and the fast path's apply keeps it while either bank holds the interface.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::os::fd::AsFd;

use maps_schema::{
    fastpath, pol, Codec, DirChunk, FpEndpoint, PolBitmap, PolEndpoint, PolEndpointKey, PolRule,
    PolRuleSet,
};

use crate::config::Config;
use crate::contents::{self, Undo};
use crate::error::Error;
use crate::maps::{MapSet, OpenMap};
use crate::policy::kernel::{self, BankPlan, BankSizes};
use crate::sys::bpf;
use crate::sys::netlink::Netlink;

/// The bank switch.
pub const MAP_ACTIVE: &str = "pol_active";
/// Endpoints by (bank, ifindex, hook).
pub const MAP_ENDPOINTS: &str = "pol_endpoints";
/// Conntrack.
pub const MAP_CT: &str = "pol_ct";
const MAP_RULESETS: &str = "pol_rulesets";
const MAP_ROOT: &str = "pol_root";
const MAP_NODES: &str = "pol_nodes";
const MAP_BITMAPS: &str = "pol_bitmaps";
const MAP_RULES: &str = "pol_rules";

/// What applying the policy did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PolicyChange {
    /// True when a new policy was written and switched to.
    pub switched: bool,
    /// The bank in force afterwards.
    pub bank: u32,
    /// Rule sets in force.
    pub rule_sets: usize,
    /// Rules over all rule sets.
    pub rules: usize,
    /// `pol_endpoints` entries (two per endpoint interface).
    pub endpoints: usize,
}

impl PolicyChange {
    /// True when nothing was written.
    #[must_use]
    pub fn is_noop(&self) -> bool {
        !self.switched
    }
}

impl fmt::Display for PolicyChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "policy: bank {} in force: {} rule set(s), {} rule(s), {} endpoint hook(s)",
            self.bank, self.rule_sets, self.rules, self.endpoints
        )
    }
}

/// Sets the policy map capacities from the config (before the maps are created).
pub fn set_capacities(maps: &mut MapSet, cfg: &Config) {
    maps.set_capacity(MAP_CT, cfg.conntrack_capacity);
    let cc = cfg.classifier_capacity;
    for (name, entries) in BankSizes::new(cc.rule_sets, cc.chunks, cc.bitmaps).max_entries() {
        maps.set_capacity(name, entries);
    }
}

fn max_entries(m: &OpenMap) -> Result<u32, Error> {
    bpf::map_info(m.fd.as_fd())
        .map(|i| i.max_entries)
        .map_err(|e| Error::bpf(format!("map '{}'", m.def.name), e))
}

/// The classifier maps, if the loaded objects use them.
struct PolicyMaps<'a> {
    active: &'a OpenMap,
    endpoints: &'a OpenMap,
    rulesets: &'a OpenMap,
    root: &'a OpenMap,
    nodes: &'a OpenMap,
    bitmaps: &'a OpenMap,
    rules: &'a OpenMap,
}

impl<'a> PolicyMaps<'a> {
    fn of(maps: &'a MapSet) -> Option<Self> {
        Some(Self {
            active: maps.get(MAP_ACTIVE)?,
            endpoints: maps.get(MAP_ENDPOINTS)?,
            rulesets: maps.get(MAP_RULESETS)?,
            root: maps.get(MAP_ROOT)?,
            nodes: maps.get(MAP_NODES)?,
            bitmaps: maps.get(MAP_BITMAPS)?,
            rules: maps.get(MAP_RULES)?,
        })
    }

    /// Bank sizes: half of each map as it exists in the kernel.
    fn sizes(&self) -> Result<BankSizes, Error> {
        Ok(BankSizes::new(
            max_entries(self.rulesets)? / 2,
            max_entries(self.nodes)? / 2,
            max_entries(self.bitmaps)? / 2,
        ))
    }

    fn active_bank(&self) -> Result<u32, Error> {
        let mut v = [0u8; 4];
        bpf::map_lookup(self.active.fd.as_fd(), &0u32.to_ne_bytes(), &mut v)
            .map_err(|e| Error::bpf(format!("map '{MAP_ACTIVE}'"), e))?;
        Ok(u32::from_ne_bytes(v) & 1)
    }

    /// The endpoint entries of `bank` as the map holds them.
    fn endpoints_of(&self, bank: u32) -> Result<BTreeMap<PolEndpointKey, PolEndpoint>, Error> {
        let mut out = BTreeMap::new();
        for (k, v) in contents::entries(self.endpoints)? {
            if let (Ok(k), Ok(v)) = (PolEndpointKey::decode(&k), PolEndpoint::decode(&v)) {
                if k.bank == bank {
                    out.insert(k, v);
                }
            }
        }
        Ok(out)
    }

    /// Whether the maps hold exactly `plan` (its bank is the active one).
    fn holds(&self, plan: &BankPlan) -> Result<bool, Error> {
        fn same<T: Codec + PartialEq>(m: &OpenMap, want: &[(u32, T)]) -> Result<bool, Error> {
            let fd = m.fd.as_fd();
            let mut buf = vec![0u8; m.def.value.size as usize];
            for (i, v) in want {
                let found = bpf::map_lookup(fd, &i.to_ne_bytes(), &mut buf)
                    .map_err(|e| Error::bpf(format!("map '{}'", m.def.name), e))?;
                if !found || T::decode(&buf).ok().as_ref() != Some(v) {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Ok(self.endpoints_of(plan.bank)? == plan.endpoints
            && same(self.rulesets, &plan.rule_sets)?
            && same(self.rules, &plan.rules)?
            && same(self.bitmaps, &plan.bitmaps)?
            && same(self.nodes, &plan.chunks)?
            && same(self.root, &plan.root)?)
    }
}

/// Interface indices in the current network namespace, by name.
fn ifindices(cfg: &Config) -> Result<HashMap<String, u32>, Error> {
    let mut out = HashMap::new();
    if cfg.policies.is_empty() {
        return Ok(out);
    }
    let mut nl = Netlink::open().map_err(|e| Error::netlink("policy endpoints", e))?;
    for i in &cfg.interfaces {
        match nl
            .link_index(&i.name)
            .map_err(|e| Error::netlink(i.name.clone(), e))?
        {
            Some(index) => {
                out.insert(i.name.clone(), index);
            }
            None => log::warn!(
                "interface '{}': not found, its policy is not loaded",
                i.name
            ),
        }
    }
    Ok(out)
}

/// Writes the policy of `cfg` (see the module documentation). Maps the loaded objects do not
/// use are skipped.
///
/// # Errors
/// A compile or capacity problem (nothing written), or a map error (the undo log has what was
/// written to maps packets read).
pub fn apply(maps: &MapSet, cfg: &Config, undo: &mut Undo) -> Result<PolicyChange, Error> {
    let Some(pm) = PolicyMaps::of(maps) else {
        return Ok(PolicyChange::default());
    };
    let compiled = crate::policy::compile(cfg).map_err(|e| Error::map(MAP_RULES, e.to_string()))?;
    for i in &cfg.interfaces {
        if !i.tc {
            let selected = compiled
                .endpoints
                .iter()
                .any(|e| e.name == i.name && (e.ingress.is_some() || e.egress.is_some()));
            if selected {
                log::warn!(
                    "interface '{}': selected by a policy but has tc=off: the policy is not enforced there",
                    i.name
                );
            }
        }
    }
    let index = ifindices(cfg)?;
    let lookup = |name: &str| index.get(name).copied();
    let sizes = pm.sizes()?;
    let active = pm.active_bank()?;
    let over = |e: kernel::OverCapacity| Error::map(MAP_RULESETS, e.to_string());
    let current = kernel::plan_bank(cfg, &compiled, active, sizes, &lookup).map_err(over)?;
    let mut change = PolicyChange {
        switched: false,
        bank: active,
        rule_sets: current.rule_sets.len(),
        rules: current.rules.len(),
        endpoints: current.endpoints.len(),
    };
    if pm.holds(&current)? {
        return Ok(change);
    }
    let target = 1 - active;
    let plan = kernel::plan_bank(cfg, &compiled, target, sizes, &lookup).map_err(over)?;

    // The inactive bank: no packet reads it, so these writes need no undo.
    let mut unread = Undo::default();
    let zero = |m: &OpenMap| vec![0u8; m.def.value.size as usize];
    let write = |m: &OpenMap, w: Vec<(u32, Vec<u8>)>, unread: &mut Undo| {
        let z = zero(m);
        contents::write_array(m, &w, |_| z.clone(), unread)
    };
    let enc = |v: &[(u32, PolBitmap)]| v.iter().map(|(i, b)| (*i, b.encode())).collect();
    write(pm.bitmaps, enc(&plan.bitmaps), &mut unread)?;
    let enc = |v: &[(u32, DirChunk)]| v.iter().map(|(i, b)| (*i, b.encode())).collect();
    write(pm.nodes, enc(&plan.chunks), &mut unread)?;
    let enc = |v: &[(u32, u32)]| v.iter().map(|(i, b)| (*i, b.encode())).collect();
    write(pm.root, enc(&plan.root), &mut unread)?;
    let enc = |v: &[(u32, PolRule)]| v.iter().map(|(i, b)| (*i, b.encode())).collect();
    write(pm.rules, enc(&plan.rules), &mut unread)?;
    let enc = |v: &[(u32, PolRuleSet)]| v.iter().map(|(i, b)| (*i, b.encode())).collect();
    write(pm.rulesets, enc(&plan.rule_sets), &mut unread)?;

    // Its endpoints (what an earlier apply left in this bank goes first), then the switch.
    for k in pm.endpoints_of(target)?.keys() {
        if !plan.endpoints.contains_key(k) {
            contents::delete_entry(pm.endpoints, &k.encode(), undo)?;
        }
    }
    for (k, v) in &plan.endpoints {
        contents::write_entry(pm.endpoints, &k.encode(), &v.encode(), undo)?;
    }
    // TC ingress skips the policy of an interface whose fast path entry lacks the hint: mark
    // the new endpoints before they are in force (the fast path's apply keeps the mark while
    // either bank holds the interface).
    let new_ifs: BTreeSet<u32> = plan.endpoints.keys().map(|k| k.ifindex).collect();
    mark_policy_interfaces(maps, &new_ifs, undo)?;
    contents::write_entry(pm.active, &0u32.encode(), &target.encode(), undo)?;
    // The old bank's entries stay until the next apply writes that bank (its left-overs go
    // first, above): a packet that read the old bank number just before the switch may still
    // look them up, and must find its policy, not an endpoint without one.
    change.switched = true;
    change.bank = target;
    log::debug!(
        "policy: bank {target} written ({} root slots, {} chunks, {} bitmaps) and switched to",
        plan.root.len(),
        plan.chunks.len(),
        plan.bitmaps.len()
    );
    Ok(change)
}

/// The interfaces (ifindex) with a `pol_endpoints` entry in either bank: those whose fast
/// path entry must carry `fastpath::POLICY`. Empty when the objects have no policy maps.
///
/// # Errors
/// Reading `pol_endpoints` failed.
pub fn endpoint_ifindices(maps: &MapSet) -> Result<BTreeSet<u32>, Error> {
    let Some(m) = maps.get(MAP_ENDPOINTS) else {
        return Ok(BTreeSet::new());
    };
    Ok(contents::entries(m)?
        .keys()
        .filter_map(|k| PolEndpointKey::decode(k).ok())
        .map(|k| k.ifindex)
        .collect())
}

/// Sets `fastpath::POLICY` on the existing `fp_endpoints` entries of `ifindices` that lack it
/// (an interface without an entry is looked up anyway).
fn mark_policy_interfaces(
    maps: &MapSet,
    ifindices: &BTreeSet<u32>,
    undo: &mut Undo,
) -> Result<(), Error> {
    let Some(m) = maps.get(crate::fastpath::MAP_ENDPOINTS) else {
        return Ok(());
    };
    let mut value = vec![0u8; m.def.value.size as usize];
    for ifindex in ifindices {
        let key = ifindex.encode();
        let found = bpf::map_lookup(m.fd.as_fd(), &key, &mut value)
            .map_err(|e| Error::bpf(format!("map '{}'", m.def.name), e))?;
        if !found {
            continue;
        }
        let Ok(mut ep) = FpEndpoint::decode(&value) else {
            continue;
        };
        if ep.flags & fastpath::POLICY == 0 {
            ep.flags |= fastpath::POLICY;
            contents::write_entry(m, &key, &ep.encode(), undo)?;
        }
    }
    Ok(())
}

/// Whether the policy of `cfg` is the one in force: the active bank holds exactly its plan.
/// Reads only. `Ok(true)` when the loaded objects have no policy maps and `cfg` no policy.
///
/// # Errors
/// A compile or capacity problem, or a map that cannot be read.
pub fn in_force(maps: &MapSet, cfg: &Config) -> Result<bool, Error> {
    let Some(pm) = PolicyMaps::of(maps) else {
        return Ok(cfg.policies.is_empty());
    };
    let compiled = crate::policy::compile(cfg).map_err(|e| Error::map(MAP_RULES, e.to_string()))?;
    let index = ifindices(cfg)?;
    let lookup = |name: &str| index.get(name).copied();
    let plan = kernel::plan_bank(cfg, &compiled, pm.active_bank()?, pm.sizes()?, &lookup)
        .map_err(|e| Error::map(MAP_RULESETS, e.to_string()))?;
    pm.holds(&plan)
}

/// Entries in the conntrack table (by walking it).
///
/// # Errors
/// Returns an error when the map cannot be read.
pub fn conntrack_entries(m: &OpenMap) -> Result<usize, Error> {
    Ok(contents::keys(m.fd.as_fd(), m.def.key.size, m.def.name)?.len())
}

/// The `pol::*` constants the loader relies on, checked against the kernel layout's parameters
/// in [`crate::policy`].
const _: () = {
    assert!(pol::ROOT_BITS == crate::policy::ROOT_BITS as u32);
    assert!(pol::CHUNK_BITS == crate::policy::STRIDE as u32);
    assert!(pol::MAX_RULES as usize == crate::policy::MAX_RULES);
};
