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
    fastpath, pol, Codec, DirChunk, FpEndpoint, PolBitmap, PolEndpoint, PolEndpointKey, PolMark,
    PolName, PolPrefixKey, PolRule, PolRuleSet, PolSet, PolSetMeta, PolSetRs,
};

use crate::config::{Cidr, Config};
use crate::contents::{self, Undo};
use crate::error::Error;
use crate::maps::{MapSet, OpenMap};
use crate::policy::incremental::{self, Index, SetOp, Store};
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
const MAP_SET_META: &str = "pol_set_meta";
const MAP_SETS: &str = "pol_sets";
const MAP_SET_RS: &str = "pol_set_rs";
const MAP_SET_MEMBERS: &str = "pol_set_members";
const MAP_SET_INLINE: &str = "pol_set_inline";
const MAP_BM_IDS: &str = "pol_bm_ids";
/// Rule and policy names for `weir status` and `weir events`.
pub const MAP_NAMES: &str = "pol_names";

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
    // The set index holds the bank in force only.
    maps.set_capacity(MAP_SET_RS, cc.rule_sets.saturating_mul(2));
    maps.set_capacity(
        MAP_SET_MEMBERS,
        cc.chunks.saturating_mul(pol::SET_MEMBERS_PER_CHUNK),
    );
    maps.set_capacity(MAP_BM_IDS, cc.bitmaps);
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

/// The set index maps (`weir set`), if the loaded objects have them.
struct IndexMaps<'a> {
    meta: &'a OpenMap,
    sets: &'a OpenMap,
    rule_sets: &'a OpenMap,
    members: &'a OpenMap,
    inline: &'a OpenMap,
    bitmap_ids: &'a OpenMap,
}

impl<'a> IndexMaps<'a> {
    fn of(maps: &'a MapSet) -> Option<Self> {
        Some(Self {
            meta: maps.get(MAP_SET_META)?,
            sets: maps.get(MAP_SETS)?,
            rule_sets: maps.get(MAP_SET_RS)?,
            members: maps.get(MAP_SET_MEMBERS)?,
            inline: maps.get(MAP_SET_INLINE)?,
            bitmap_ids: maps.get(MAP_BM_IDS)?,
        })
    }

    fn meta(&self) -> Result<PolSetMeta, Error> {
        let mut v = vec![0u8; self.meta.def.value.size as usize];
        bpf::map_lookup(self.meta.fd.as_fd(), &0u32.to_ne_bytes(), &mut v)
            .map_err(|e| Error::bpf(format!("map '{MAP_SET_META}'"), e))?;
        Ok(PolSetMeta::decode(&v).unwrap_or_default())
    }

    fn write_meta(&self, meta: &PolSetMeta) -> Result<(), Error> {
        bpf::map_update(self.meta.fd.as_fd(), &0u32.to_ne_bytes(), &meta.encode(), 0)
            .map_err(|e| Error::bpf(format!("map '{MAP_SET_META}'"), e))
    }

    /// Makes the index describe `index` (its bank is the one in force, or is about to be):
    /// marked invalid first, so an interrupted write leaves an index `weir set` refuses.
    /// Writes only what differs (nothing when the index is already in step). The members of
    /// sets whose record (digest and count included) is unchanged are not even read.
    fn sync(&self, index: &Index) -> Result<(), Error> {
        fn bytes<K: Codec, V: Codec>(v: &[(K, V)]) -> contents::Bytes {
            v.iter().map(|(k, v)| (k.encode(), v.encode())).collect()
        }
        let wanted = [
            (self.inline, bytes(&index.inline)),
            (self.sets, bytes(&index.sets)),
            (self.rule_sets, bytes(&index.rule_sets)),
            (self.bitmap_ids, bytes(&index.bitmap_ids)),
        ];
        let mut current = Vec::with_capacity(wanted.len());
        for (m, desired) in &wanted {
            let have = contents::entries(m)?;
            let same = have == *desired;
            current.push((have, same));
        }
        let meta = self.meta()?;
        // The same sets (names, member digests and counts) in a valid index: the members are
        // in step (rule changes alone leave them alone).
        let stored_sets = &current[1].0;
        let members_same = meta.valid == pol::SET_META_VALID
            && stored_sets.len() == index.sets.len()
            && index.sets.iter().all(|(id, want)| {
                stored_sets
                    .get(&id.encode())
                    .and_then(|v| PolSet::decode(v).ok())
                    .is_some_and(|have| {
                        (have.name, have.digest, have.members)
                            == (want.name, want.digest, want.members)
                    })
            });
        if meta == index.meta && members_same && current.iter().all(|(_, same)| *same) {
            return Ok(());
        }
        self.write_meta(&PolSetMeta::default())?;
        if !members_same {
            sync_members(self.members, &index.members)?;
        }
        // Nothing reads these maps but weir, and the meta entry says they are not usable yet:
        // no undo needed.
        let mut unread = Undo::default();
        for ((m, desired), (have, same)) in wanted.iter().zip(&current) {
            if !same {
                contents::delete_diff(m, have, desired, &mut unread)?;
                contents::write_diff(m, have, desired, &mut unread)?;
            }
        }
        self.write_meta(&index.meta)
    }
}

/// Elements per batch syscall for `pol_set_members`.
const MEMBER_BATCH: usize = 8192;

/// Every entry of `pol_set_members`: the key as three words, the value.
fn member_entries(m: &OpenMap) -> Result<Vec<([u64; 3], u32)>, Error> {
    let mut out = Vec::new();
    contents::for_each_entry(m.fd.as_fd(), m.def, |k, v| {
        if let (Ok(k), Ok(v)) = (<[u8; 24]>::try_from(k), u32::decode(v)) {
            out.push((words(&k), v));
        }
    })?;
    Ok(out)
}

/// A 24-byte key as three words (compared as words, not bytes: a byte-wise compare is slow with
/// some libcs).
fn words(b: &[u8; 24]) -> [u64; 3] {
    let w = |i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().unwrap_or_default());
    [w(0), w(8), w(16)]
}

/// Makes `pol_set_members` hold exactly `members` (grouped, see
/// [`incremental::member_group`]): one batched read, then batched deletions and writes of the
/// entries that differ.
fn sync_members(m: &OpenMap, members: &[PolPrefixKey]) -> Result<(), Error> {
    let fd = m.fd.as_fd();
    debug_assert!(members
        .first()
        .is_none_or(|k| k.encode() == incremental::member_bytes(k)));
    let mut want: Vec<([u64; 3], u32)> = members
        .iter()
        .map(|k| {
            let (g, bit) = incremental::member_group(k);
            (words(&incremental::member_bytes(&g)), bit)
        })
        .collect();
    want.sort_unstable_by_key(|(k, _)| *k);
    // Merge the bits of each entry.
    let mut merged: Vec<([u64; 3], u32)> = Vec::with_capacity(want.len());
    for (k, bit) in want {
        match merged.last_mut() {
            Some((last, v)) if *last == k => *v |= bit,
            _ => merged.push((k, bit)),
        }
    }
    let mut have = member_entries(m)?;
    have.sort_unstable_by_key(|(k, _)| *k);
    let (mut gone, mut keys, mut values) = (Vec::new(), Vec::new(), Vec::new());
    let flat = |out: &mut Vec<u8>, k: &[u64; 3]| {
        for x in k {
            out.extend_from_slice(&x.to_ne_bytes());
        }
    };
    let (mut i, mut j) = (0, 0);
    loop {
        match (have.get(i), merged.get(j)) {
            (Some(a), Some(b)) if a.0 == b.0 => {
                if a.1 != b.1 {
                    flat(&mut keys, &b.0);
                    values.extend_from_slice(&b.1.to_ne_bytes());
                }
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a.0 < b.0 => {
                flat(&mut gone, &a.0);
                i += 1;
            }
            (Some(a), None) => {
                flat(&mut gone, &a.0);
                i += 1;
            }
            (_, Some(b)) => {
                flat(&mut keys, &b.0);
                values.extend_from_slice(&b.1.to_ne_bytes());
                j += 1;
            }
            (None, None) => break,
        }
    }
    for chunk in gone.chunks(24 * MEMBER_BATCH) {
        let n = (chunk.len() / 24) as u32;
        if bpf::map_delete_batch(fd, chunk, n).is_err() {
            for k in chunk.chunks_exact(24) {
                match bpf::map_delete(fd, k) {
                    Ok(_) => {}
                    Err(e) if e.errno() == Some(libc::ENOENT) => {}
                    Err(e) => {
                        return Err(Error::bpf(
                            format!("map '{MAP_SET_MEMBERS}': deleting an entry"),
                            e,
                        ))
                    }
                }
            }
        }
    }
    for (k, v) in keys
        .chunks(24 * MEMBER_BATCH)
        .zip(values.chunks(4 * MEMBER_BATCH))
    {
        let n = k.len() / 24;
        if bpf::map_update_batch(fd, k, v, n as u32, 0).is_err() {
            for (k, v) in k.chunks_exact(24).zip(v.chunks_exact(4)) {
                bpf::map_update(fd, k, v, 0).map_err(|e| {
                    Error::bpf(
                        format!(
                            "map '{MAP_SET_MEMBERS}': writing an entry (it holds {} per \
                             classifier chunk: raise `classifier capacity chunks=`)",
                            pol::SET_MEMBERS_PER_CHUNK
                        ),
                        e,
                    )
                })?;
            }
        }
    }
    Ok(())
}

/// Writes the set index of the bank `plan` describes (see [`IndexMaps::sync`]); a no-op when
/// the loaded objects have no index maps.
fn write_index(
    maps: &MapSet,
    cfg: &Config,
    compiled: &crate::policy::Compiled,
    plan: &BankPlan,
    sizes: BankSizes,
) -> Result<(), Error> {
    let Some(im) = IndexMaps::of(maps) else {
        return Ok(());
    };
    let inline: usize = cfg.rules.iter().map(|r| r.remote.len()).sum();
    let too_big = if cfg.ipsets.len() > pol::MAX_SETS as usize {
        Some(format!(
            "{} sets, more than {}",
            cfg.ipsets.len(),
            pol::MAX_SETS
        ))
    } else if inline > pol::MAX_INLINE_MARKS as usize {
        Some(format!(
            "{inline} inline remote= networks, more than {}",
            pol::MAX_INLINE_MARKS
        ))
    } else {
        None
    };
    if let Some(why) = too_big {
        return disable_index(&im, &why);
    }
    im.sync(&incremental::index(cfg, compiled, plan, sizes))
}

/// An index that could not be written is no reason to fail the apply (the policy applies all
/// the same): it is marked unusable, and `weir set` refuses until an apply writes one.
fn index_or_warn(maps: &MapSet, written: Result<(), Error>) {
    if let Err(e) = written {
        log::warn!("policy: the set index for `weir set` was not written: {e}");
        if let Some(im) = IndexMaps::of(maps) {
            let _ = im.write_meta(&PolSetMeta::default());
        }
    }
}

/// Marks the set index unusable (the policy still applies; `weir set` refuses until an apply
/// writes an index that fits).
fn disable_index(im: &IndexMaps<'_>, why: &str) -> Result<(), Error> {
    log::warn!("policy: the set index for `weir set` is not written: {why}");
    im.write_meta(&PolSetMeta::default())
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

/// The names of `cfg`'s rule and policy ids, as `pol_names` holds them: a rule is `POLICY#N`,
/// the Nth rule of its policy in file order (as a Calico user counts a policy's rules).
#[must_use]
pub fn names(cfg: &Config) -> contents::Bytes {
    let entry = |id: u32, name: &str| {
        let value = PolName {
            name: crate::policy::incremental::encode_name(name),
        };
        (id.encode(), value.encode())
    };
    let mut nth: HashMap<&str, u32> = HashMap::new();
    let rules = cfg.rules.iter().enumerate().map(|(id, r)| {
        let n = nth.entry(r.policy.as_str()).or_insert(0);
        *n += 1;
        entry(id as u32, &format!("{}#{n}", r.policy))
    });
    let policies = cfg
        .policies
        .iter()
        .enumerate()
        .map(|(id, p)| entry(pol::NAME_POLICY_BASE + id as u32, &p.name));
    rules.chain(policies).collect()
}

/// Makes `pol_names` hold exactly the names of `cfg` (only what differs is written).
fn write_names(maps: &MapSet, cfg: &Config, undo: &mut Undo) -> Result<(), Error> {
    let Some(m) = maps.get(MAP_NAMES) else {
        return Ok(());
    };
    let desired = names(cfg);
    let current = if m.reused {
        contents::entries(m)?
    } else {
        BTreeMap::new()
    };
    contents::delete_diff(m, &current, &desired, undo)?;
    contents::write_diff(m, &current, &desired, undo)?;
    Ok(())
}

/// Writes the policy of `cfg` (see the module documentation). Maps the loaded objects do not
/// use are skipped.
///
/// # Errors
/// A compile or capacity problem (nothing written), or a map error (the undo log has what was
/// written to maps packets read).
pub fn apply(
    maps: &MapSet,
    cfg: &Config,
    slots: &crate::fastpath::Slots,
    undo: &mut Undo,
) -> Result<PolicyChange, Error> {
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
    write_names(maps, cfg, undo)?;
    let index = ifindices(cfg)?;
    let lookup = |name: &str| index.get(name).copied();
    let slot = |ifindex: u32| slots.of(ifindex);
    let sizes = pm.sizes()?;
    let active = pm.active_bank()?;
    let over = |e: kernel::OverCapacity| Error::map(MAP_RULESETS, e.to_string());
    let current = kernel::plan_bank(cfg, &compiled, active, sizes, &lookup, &slot).map_err(over)?;
    let mut change = PolicyChange {
        switched: false,
        bank: active,
        rule_sets: current.rule_sets.len(),
        rules: current.rules.len(),
        endpoints: current.endpoints.len(),
    };
    if pm.holds(&current)? {
        // The tables are the config's; the index may not be (a `weir set` on a set no rule
        // uses, or an interrupted command): bring it in step.
        index_or_warn(maps, write_index(maps, cfg, &compiled, &current, sizes));
        return Ok(change);
    }
    let target = 1 - active;
    let plan = kernel::plan_bank(cfg, &compiled, target, sizes, &lookup, &slot).map_err(over)?;

    // The set index of the new bank is written by a second thread while this one writes the
    // bank (at 100k set members its writes take about as long as the bank's). Only weir reads
    // it, and only when its meta entry names the bank in force (written last): if the switch
    // fails, `weir set` refuses until the next apply.
    let bank_written = std::thread::scope(|scope| {
        let index = scope.spawn(|| write_index(maps, cfg, &compiled, &plan, sizes));
        let written = (|| -> Result<(), Error> {
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
            // TC ingress skips the policy of an interface whose fast path entry lacks the hint:
            // mark the new endpoints before they are in force (the fast path's apply keeps the
            // mark while either bank holds the interface).
            let new_ifs: BTreeSet<u32> = plan.endpoints.keys().map(|k| k.ifindex).collect();
            mark_policy_interfaces(maps, &new_ifs, undo)?;
            contents::write_entry(pm.active, &0u32.encode(), &target.encode(), undo)?;
            Ok(())
        })();
        let indexed = index
            .join()
            .unwrap_or_else(|_| Err(Error::Environment("the set index writer panicked".into())));
        index_or_warn(maps, indexed);
        written
    });
    bank_written?;
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
    // The slots the last load assigned: an unchanged config keeps them.
    let slots = crate::fastpath::current_slots(maps)?;
    let slot = |ifindex: u32| slots.of(ifindex);
    let plan = kernel::plan_bank(
        cfg,
        &compiled,
        pm.active_bank()?,
        pm.sizes()?,
        &lookup,
        &slot,
    )
    .map_err(|e| Error::map(MAP_RULESETS, e.to_string()))?;
    pm.holds(&plan)
}

/// One value of `m`, `None` when absent.
fn lookup<T: Codec>(m: &OpenMap, key: &[u8]) -> Result<Option<T>, Error> {
    let mut v = vec![0u8; m.def.value.size as usize];
    let found = bpf::map_lookup(m.fd.as_fd(), key, &mut v)
        .map_err(|e| Error::bpf(format!("map '{}'", m.def.name), e))?;
    if !found {
        return Ok(None);
    }
    T::decode(&v)
        .map(Some)
        .map_err(|e| Error::map(m.def.name, e.to_string()))
}

/// The bank in force and its set index, read entry by entry from the pinned maps.
struct Pinned<'a> {
    pm: &'a PolicyMaps<'a>,
    im: &'a IndexMaps<'a>,
}

impl Store for Pinned<'_> {
    fn root(&mut self, index: u32) -> Result<u32, Error> {
        Ok(lookup::<u32>(self.pm.root, &index.encode())?.unwrap_or(0))
    }
    fn chunk(&mut self, chunk: u32) -> Result<[u32; 16], Error> {
        Ok(lookup::<DirChunk>(self.pm.nodes, &chunk.encode())?
            .unwrap_or_default()
            .slot)
    }
    fn member(&mut self, key: &PolPrefixKey) -> Result<bool, Error> {
        let (group, bit) = incremental::member_group(key);
        Ok(lookup::<u32>(self.im.members, &group.encode())?.is_some_and(|v| v & bit != 0))
    }
    fn inline(&mut self, key: &PolPrefixKey) -> Result<Option<PolMark>, Error> {
        lookup(self.im.inline, &key.encode())
    }
    fn bitmap_id(&mut self, bitmap: &PolBitmap) -> Result<Option<u32>, Error> {
        lookup(self.im.bitmap_ids, &bitmap.encode())
    }
    fn set(&mut self, id: u32) -> Result<Option<PolSet>, Error> {
        lookup(self.im.sets, &id.encode())
    }
    fn rule_set(&mut self, id: u32) -> Result<Option<PolSetRs>, Error> {
        lookup(self.im.rule_sets, &id.encode())
    }
}

/// The maps `weir set` reads and writes.
pub const SET_COMMAND_MAPS: &[&str] = &[
    MAP_ACTIVE,
    MAP_ENDPOINTS,
    MAP_RULESETS,
    MAP_ROOT,
    MAP_NODES,
    MAP_BITMAPS,
    MAP_RULES,
    MAP_SET_META,
    MAP_SETS,
    MAP_SET_RS,
    MAP_SET_MEMBERS,
    MAP_SET_INLINE,
    MAP_BM_IDS,
];

/// What `weir set add|del` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetChange {
    /// The set.
    pub set: String,
    /// Added or removed.
    pub op: SetOp,
    /// Members added or removed.
    pub changed: usize,
    /// Networks that were members already (`add`).
    pub unchanged: usize,
    /// The bank in force (changed in place).
    pub bank: u32,
    /// Tables (rule set × address family) recomputed.
    pub tables: usize,
    /// Chunks written (new and in place).
    pub chunks: usize,
    /// Root slots written.
    pub root_slots: usize,
    /// New bitmaps.
    pub bitmaps: usize,
}

impl fmt::Display for SetChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (verb, already) = match self.op {
            SetOp::Add => ("added to", "already members"),
            SetOp::Del => ("removed from", ""),
        };
        write!(
            f,
            "set '{}': {} member(s) {verb} it",
            self.set, self.changed,
        )?;
        if self.unchanged > 0 {
            write!(f, " ({} {already})", self.unchanged)?;
        }
        write!(
            f,
            "; policy bank {} changed in place: {} table(s), {} chunk(s), {} root slot(s), {} new bitmap(s) written",
            self.bank, self.tables, self.chunks, self.root_slots, self.bitmaps
        )
    }
}

/// Adds `cidrs` to (or removes them from) the set called `name` in the policy in force, in
/// place (see [`crate::policy::incremental`]): no config, no compile, no bank switch. The next
/// full apply puts the config's members back.
///
/// # Errors
/// No policy loaded or an index not in step with it (run `weir apply`), an unknown set, a
/// `del` of a non-member, no room in the bank (all checked before anything is written), or a
/// map error (the index is then left marked invalid until the next apply).
pub fn set_members(
    maps: &MapSet,
    name: &str,
    op: SetOp,
    cidrs: &[Cidr],
) -> Result<SetChange, Error> {
    let (Some(pm), Some(im)) = (PolicyMaps::of(maps), IndexMaps::of(maps)) else {
        return Err(Error::Environment(
            "no policy is loaded here: the TC programs (or their set index maps) are not \
             loaded; `weir load` a config with an interface that has tc on"
                .into(),
        ));
    };
    let meta = im.meta()?;
    let active = pm.active_bank()?;
    if meta.valid != pol::SET_META_VALID || meta.bank != active {
        return Err(Error::Environment(
            "the set index is not in step with the policy in force (no `weir apply` wrote it \
             yet, one was interrupted, or the sets did not fit it: see that apply's warning): \
             `weir apply` the config first"
                .into(),
        ));
    }
    let sizes = pm.sizes()?;
    let plan = {
        let mut store = Pinned { pm: &pm, im: &im };
        incremental::plan(&mut store, meta, sizes, name, op, cidrs)?
    };
    let change = SetChange {
        set: name.to_owned(),
        op,
        changed: plan.add.len() + plan.del.len(),
        unchanged: plan.unchanged,
        bank: active,
        tables: plan.tables,
        chunks: plan.chunks.len(),
        root_slots: plan.root.len(),
        bitmaps: plan.bitmaps.len(),
    };
    if change.changed == 0 {
        return Ok(change);
    }
    // Invalid while the writes are under way: an interrupted command leaves an index that the
    // next `weir set` refuses and the next apply rebuilds.
    im.write_meta(&PolSetMeta { valid: 0, ..meta })?;
    // Packets read these: in the order the plan gives (bitmaps, new chunks, chunks in place
    // deepest first, root slots). The bank stays in force throughout, so nothing is undone.
    let mut log = Undo::default();
    let enc = |v: &[(u32, PolBitmap)]| -> Vec<(u32, Vec<u8>)> {
        v.iter().map(|(i, b)| (*i, b.encode())).collect()
    };
    let none = |_| Vec::new();
    contents::write_array(pm.bitmaps, &enc(&plan.bitmaps), none, &mut log)?;
    let chunks: Vec<(u32, Vec<u8>)> = plan.chunks.iter().map(|(i, c)| (*i, c.encode())).collect();
    contents::write_array(pm.nodes, &chunks, none, &mut log)?;
    let root: Vec<(u32, Vec<u8>)> = plan.root.iter().map(|(i, v)| (*i, v.encode())).collect();
    contents::write_array(pm.root, &root, none, &mut log)?;
    // The index.
    let ids: Vec<(Vec<u8>, Vec<u8>)> = plan
        .bitmap_ids
        .iter()
        .map(|(b, i)| (b.encode(), i.encode()))
        .collect();
    contents::put_entries(im.bitmap_ids, &ids, 0, |_| None, &mut log)?;
    // Members: each entry holds 32 networks (a bit each), so read, change the bits, write.
    let mut groups: BTreeMap<PolPrefixKey, (u32, u32)> = BTreeMap::new();
    for (k, add) in plan
        .add
        .iter()
        .map(|k| (k, true))
        .chain(plan.del.iter().map(|k| (k, false)))
    {
        let (group, bit) = incremental::member_group(k);
        let entry = match groups.get_mut(&group) {
            Some(e) => e,
            None => {
                let v = lookup::<u32>(im.members, &group.encode())?.unwrap_or(0);
                groups.entry(group).or_insert((v, v))
            }
        };
        if add {
            entry.1 |= bit;
        } else {
            entry.1 &= !bit;
        }
    }
    for (group, (before, after)) in &groups {
        match (before, after) {
            (b, a) if b == a => {}
            (_, 0) => {
                contents::delete_entry(im.members, &group.encode(), &mut log)?;
            }
            _ => contents::write_entry(im.members, &group.encode(), &after.encode(), &mut log)
                .map_err(|e| {
                    Error::map(
                        MAP_SET_MEMBERS,
                        format!(
                            "{e} (it holds {} entries per classifier chunk: raise \
                             `classifier capacity chunks=`)",
                            pol::SET_MEMBERS_PER_CHUNK
                        ),
                    )
                })?,
        }
    }
    if let Some((id, set)) = plan.set {
        contents::write_entry(im.sets, &id.encode(), &set.encode(), &mut log)?;
    }
    im.write_meta(&plan.meta)?;
    log::debug!("policy: {change}");
    Ok(change)
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
