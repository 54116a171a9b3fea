//! From a [`Compiled`] policy to the entries of one bank of the kernel maps (`tc.c`'s
//! `weir_policy.h` reads them). Pure: the caller resolves interface indices and writes the
//! entries (`crate::policy_maps`).
//!
//! Every map but `pol_endpoints` is an array holding two banks, one per half; every id a bank
//! stores (rule set, table, chunk, bitmap) is a global index into its bank's half, so the
//! program never needs to know the bank sizes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use maps_schema::{
    hook, pol, DirChunk, PolBitmap, PolEndpoint, PolEndpointKey, PolRule, PolRuleSet,
};

use crate::config::{Config, Direction, Role, RuleAction};

use super::bitmap::Bitmap;
use super::classifier::Classifier;
use super::prefix::PrefixTable;
use super::Compiled;

/// How many entries one bank has in each map: half of each array map's `max_entries`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BankSizes {
    /// Rule sets (`pol_rulesets`; `pol_root` and `pol_rules` are sized from it).
    pub rule_sets: u32,
    /// Chunks (`pol_nodes`).
    pub chunks: u32,
    /// Bitmaps (`pol_bitmaps`).
    pub bitmaps: u32,
}

impl BankSizes {
    /// The sizes of a bank of maps created with these capacities per bank.
    #[must_use]
    pub fn new(rule_sets: u32, chunks: u32, bitmaps: u32) -> Self {
        Self {
            rule_sets,
            chunks,
            bitmaps,
        }
    }

    /// `max_entries` of each classifier map for these bank sizes: `(map, entries)`.
    #[must_use]
    pub fn max_entries(&self) -> [(&'static str, u32); 5] {
        let rs = self.rule_sets;
        [
            ("pol_rulesets", rs.saturating_mul(2)),
            (
                "pol_root",
                rs.saturating_mul(2 * pol::TABLES_PER_SET * pol::ROOT_SLOTS),
            ),
            ("pol_rules", rs.saturating_mul(2 * pol::MAX_RULES)),
            ("pol_nodes", self.chunks.saturating_mul(2)),
            ("pol_bitmaps", self.bitmaps.saturating_mul(2)),
        ]
    }
}

/// A bank's worth of entries: `(global index, value)` for the arrays, keys for the hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BankPlan {
    /// The bank (0 or 1).
    pub bank: u32,
    /// `pol_rulesets`.
    pub rule_sets: Vec<(u32, PolRuleSet)>,
    /// `pol_root`.
    pub root: Vec<(u32, u32)>,
    /// `pol_nodes`.
    pub chunks: Vec<(u32, DirChunk)>,
    /// `pol_bitmaps`.
    pub bitmaps: Vec<(u32, PolBitmap)>,
    /// `pol_rules`.
    pub rules: Vec<(u32, PolRule)>,
    /// `pol_endpoints`.
    pub endpoints: BTreeMap<PolEndpointKey, PolEndpoint>,
}

/// Why a policy does not fit the maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverCapacity {
    /// `rule-sets`, `chunks` or `bitmaps` (the `classifier capacity` option).
    pub what: &'static str,
    /// How many the policy needs.
    pub needed: usize,
    /// How many a bank holds.
    pub capacity: u32,
}

impl fmt::Display for OverCapacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the policy needs {} classifier {}, more than the {} a bank holds; nothing was changed. \
             Raise it with `classifier capacity {}={}` (a pinned map cannot grow: `weir unload` first)",
            self.needed,
            self.what,
            self.capacity,
            self.what,
            (self.needed * 2).next_multiple_of(1024)
        )
    }
}

impl std::error::Error for OverCapacity {}

/// The TC hook's meaning for an endpoint of `role`: a workload's ingress (into the workload)
/// leaves the host-side veth, so it is that interface's TC egress.
#[must_use]
pub fn direction_of(role: Role, tc_hook: u32) -> Direction {
    match (role, tc_hook == hook::TC_INGRESS) {
        (Role::Host, true) | (Role::Workload, false) => Direction::Ingress,
        (Role::Host, false) | (Role::Workload, true) => Direction::Egress,
    }
}

fn action_code(a: RuleAction) -> u8 {
    match a {
        RuleAction::Allow => pol::ACT_ALLOW,
        RuleAction::Deny => pol::ACT_DENY,
        RuleAction::Log => pol::ACT_LOG,
        RuleAction::Pass => pol::ACT_PASS,
    }
}

/// A table slot under construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Bitmap id + 1 (0: empty).
    Leaf(u32),
    /// Index into the plan's local chunk list.
    Node(usize),
}

/// The bank's bitmaps, interned.
struct Bitmaps {
    base: u32,
    ids: HashMap<Bitmap, u32>,
    list: Vec<Bitmap>,
}

impl Bitmaps {
    fn id(&mut self, b: Bitmap) -> u32 {
        if let Some(&id) = self.ids.get(&b) {
            return id;
        }
        let id = self.base + self.list.len() as u32;
        self.ids.insert(b, id);
        self.list.push(b);
        id
    }
}

/// One multibit table: a 256-slot root over the key's first 8 bits, then 4-bit chunk levels.
/// Prefixes are inserted shortest first, so a longer one always lands on leaves that it
/// overrides (pushing a covering prefix's leaf down into the chunks it creates).
fn build_table(
    table: &PrefixTable,
    bitmaps: &mut Bitmaps,
    chunks: &mut Vec<[Slot; 16]>,
) -> [Slot; 256] {
    let bits = u32::from(table.bits);
    let mut root = [Slot::Leaf(0); 256];
    let mut entries: Vec<_> = table.entries.iter().collect();
    entries.sort_by_key(|e| e.prefix.len);
    for e in entries {
        let leaf = Slot::Leaf(bitmaps.id(e.rules) + 1);
        let len = u32::from(e.prefix.len);
        // Left-aligned in 128 bits.
        let key = e.prefix.key << (128 - bits);
        let first = (key >> 120) as usize;
        if len <= pol::ROOT_BITS {
            let n = 1usize << (pol::ROOT_BITS - len);
            for s in &mut root[first..first + n] {
                *s = leaf;
            }
            continue;
        }
        let mut depth = pol::ROOT_BITS;
        // Where the slot being followed is: a root slot, or (chunk, slot).
        let mut at: (Option<usize>, usize) = (None, first);
        loop {
            let current = match at {
                (None, i) => root[i],
                (Some(c), i) => chunks[c][i],
            };
            let chunk = match current {
                Slot::Node(c) => c,
                Slot::Leaf(v) => {
                    chunks.push([Slot::Leaf(v); 16]);
                    let c = chunks.len() - 1;
                    match at {
                        (None, i) => root[i] = Slot::Node(c),
                        (Some(p), i) => chunks[p][i] = Slot::Node(c),
                    }
                    c
                }
            };
            let nibble = ((key >> (124 - depth)) & 0xf) as usize;
            if len <= depth + pol::CHUNK_BITS {
                let n = 1usize << (depth + pol::CHUNK_BITS - len);
                for s in &mut chunks[chunk][nibble..nibble + n] {
                    *s = leaf;
                }
                break;
            }
            depth += pol::CHUNK_BITS;
            at = (Some(chunk), nibble);
        }
    }
    root
}

/// The root of the protocol dimension: every protocol number a slot.
fn proto_root(c: &Classifier, bitmaps: &mut Bitmaps) -> [Slot; 256] {
    let mut root = [Slot::Leaf(0); 256];
    for (p, s) in root.iter_mut().enumerate() {
        let b = c.proto.get(&(p as u8)).copied().unwrap_or(c.proto_other);
        *s = Slot::Leaf(bitmaps.id(b) + 1);
    }
    root
}

/// The entries of bank `bank` for `compiled` (compiled from `cfg`). `ifindex` resolves an
/// interface name; interfaces it does not know, or without TC programs, get no entries (the
/// caller warns about them). `slot` gives an interface's counter slot (by ifindex), which its
/// endpoint entries carry.
///
/// # Errors
/// [`OverCapacity`] when the policy needs more rule sets, chunks or bitmaps than a bank holds.
pub fn plan_bank(
    cfg: &Config,
    compiled: &Compiled,
    bank: u32,
    sizes: BankSizes,
    ifindex: &dyn Fn(&str) -> Option<u32>,
    slot: &dyn Fn(u32) -> u16,
) -> Result<BankPlan, OverCapacity> {
    let n_sets = compiled.rule_sets.len();
    if n_sets > sizes.rule_sets as usize {
        return Err(OverCapacity {
            what: "rule-sets",
            needed: n_sets,
            capacity: sizes.rule_sets,
        });
    }
    let set_base = bank * sizes.rule_sets;
    let chunk_base = bank * sizes.chunks;
    let mut bitmaps = Bitmaps {
        base: bank * sizes.bitmaps,
        ids: HashMap::new(),
        list: Vec::new(),
    };
    let mut chunks: Vec<[Slot; 16]> = Vec::new();
    let mut plan = BankPlan {
        bank,
        ..BankPlan::default()
    };
    let mut roots: Vec<(u32, [Slot; 256])> = Vec::new();
    for (i, (set, c)) in compiled
        .rule_sets
        .iter()
        .zip(&compiled.classifiers)
        .enumerate()
    {
        let id = set_base + i as u32;
        let table = id * pol::TABLES_PER_SET;
        roots.push((table + pol::T_PROTO, proto_root(c, &mut bitmaps)));
        for (t, dim) in [
            (pol::T_V4, &c.remote_v4),
            (pol::T_V6, &c.remote_v6),
            (pol::T_SPORT, &c.sport),
            (pol::T_DPORT, &c.dport),
            (pol::T_ICMP, &c.icmp),
        ] {
            roots.push((table + t, build_table(dim, &mut bitmaps, &mut chunks)));
        }
        let mut flags = 0;
        if set.enforced {
            flags |= pol::RS_ENFORCED;
        }
        if set.audited {
            flags |= pol::RS_AUDITED;
        }
        plan.rule_sets.push((
            id,
            PolRuleSet {
                flags,
                table,
                nrules: set.rules.len() as u32,
                no_ports_bm: bitmaps.id(c.no_ports),
                no_icmp_bm: bitmaps.id(c.no_icmp),
                log_bm: bitmaps.id(c.evaluation.log),
                audit_bm: bitmaps.id(c.evaluation.audit),
                pad: 0,
            },
        ));
        for (bit, r) in set.rules.iter().enumerate() {
            plan.rules.push((
                id * pol::MAX_RULES + bit as u32,
                PolRule {
                    rule_id: r.rule as u32,
                    policy_id: u16::try_from(r.policy).unwrap_or(u16::MAX),
                    action: action_code(r.action),
                    audit: u8::from(r.audit),
                    policy_last: r.policy_last,
                    pad: 0,
                },
            ));
        }
    }
    if chunks.len() > sizes.chunks as usize {
        return Err(OverCapacity {
            what: "chunks",
            needed: chunks.len(),
            capacity: sizes.chunks,
        });
    }
    if bitmaps.list.len() > sizes.bitmaps as usize {
        return Err(OverCapacity {
            what: "bitmaps",
            needed: bitmaps.list.len(),
            capacity: sizes.bitmaps,
        });
    }
    let encode = |s: Slot| match s {
        Slot::Leaf(v) => v,
        Slot::Node(c) => pol::NODE | (chunk_base + c as u32),
    };
    for (table, root) in roots {
        for (i, s) in root.iter().enumerate() {
            plan.root
                .push((table * pol::ROOT_SLOTS + i as u32, encode(*s)));
        }
    }
    for (i, c) in chunks.iter().enumerate() {
        let mut slot = [0u32; 16];
        for (d, s) in slot.iter_mut().zip(c) {
            *d = encode(*s);
        }
        plan.chunks.push((chunk_base + i as u32, DirChunk { slot }));
    }
    for (i, b) in bitmaps.list.iter().enumerate() {
        plan.bitmaps
            .push((bitmaps.base + i as u32, PolBitmap { w: b.0 }));
    }
    for (e, sets) in cfg.interfaces.iter().zip(&compiled.endpoints) {
        if sets.ingress.is_none() && sets.egress.is_none() {
            continue;
        }
        if !e.tc {
            continue;
        }
        let Some(index) = ifindex(&e.name) else {
            continue;
        };
        for h in [hook::TC_INGRESS, hook::TC_EGRESS] {
            let direction = direction_of(e.role, h);
            let set = match direction {
                Direction::Ingress => sets.ingress,
                Direction::Egress => sets.egress,
            };
            plan.endpoints.insert(
                PolEndpointKey {
                    bank,
                    ifindex: index,
                    hook: h,
                },
                PolEndpoint {
                    ruleset: set.map_or(pol::NO_RULESET, |s| set_base + s as u32),
                    direction: match direction {
                        Direction::Ingress => pol::DIR_INGRESS,
                        Direction::Egress => pol::DIR_EGRESS,
                    },
                    flags: if e.role == Role::Host {
                        pol::EP_HOST
                    } else {
                        0
                    },
                    slot: slot(index),
                },
            );
        }
    }
    Ok(plan)
}

/// A model of the kernel's table walk over a plan (for tests): the bitmap id + 1 the walk of
/// `key` (left-aligned, `levels` chunk levels at most) in table `table` ends on.
#[must_use]
pub fn walk(plan: &BankPlan, table: u32, key: u128, levels: u32) -> u32 {
    let root: HashMap<u32, u32> = plan.root.iter().copied().collect();
    let chunks: HashMap<u32, DirChunk> = plan.chunks.iter().copied().collect();
    let mut slot = root
        .get(&(table * pol::ROOT_SLOTS + (key >> 120) as u32))
        .copied()
        .unwrap_or(0);
    for level in 0..levels {
        if slot & pol::NODE == 0 {
            break;
        }
        let Some(c) = chunks.get(&(slot & !pol::NODE)) else {
            return 0;
        };
        let pos = pol::ROOT_BITS + level * pol::CHUNK_BITS;
        slot = c.slot[((key >> (124 - pos)) & 0xf) as usize];
    }
    if slot & pol::NODE != 0 {
        0
    } else {
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::policy::compile;

    fn cfg(text: &str) -> Config {
        parse("<test>", text).unwrap_or_else(|e| panic!("{e}"))
    }

    const TEXT: &str = "\
interface w1 role=workload labels=app:web
interface w2 role=workload labels=app:db
interface eth0 role=host labels=host:yes
ipset nets 10.1.0.0/16 10.1.2.0/24 2001:db8:1::/48
policy web selector=\"app == 'web'\"
rule web ingress allow proto=tcp dport=80,1000-1999 remote=set:nets
rule web ingress deny proto=icmp icmp-type=8 remote=!10.1.2.3
rule web egress allow
policy hostpol selector=\"has(host)\" types=ingress
rule hostpol ingress pass proto=udp
rule hostpol ingress allow proto=udp dport=53
";

    fn plan(bank: u32) -> (Config, BankPlan) {
        let c = cfg(TEXT);
        let compiled = compile(&c).unwrap();
        let names = ["w1", "w2", "eth0"];
        let p = plan_bank(
            &c,
            &compiled,
            bank,
            BankSizes::new(16, 1024, 1024),
            &|n: &str| names.iter().position(|x| *x == n).map(|i| i as u32 + 10),
            &|ifindex| ifindex as u16 - 9,
        )
        .unwrap();
        (c, p)
    }

    #[test]
    fn walks_give_the_classifier_bitmaps() {
        let c = cfg(TEXT);
        let compiled = compile(&c).unwrap();
        for bank in [0, 1] {
            let (_, p) = plan(bank);
            let bitmaps: HashMap<u32, [u64; 4]> =
                p.bitmaps.iter().map(|(i, b)| (*i, b.w)).collect();
            let lookup = |leaf: u32| Bitmap(bitmaps[&(leaf - 1)]);
            for (i, cl) in compiled.classifiers.iter().enumerate() {
                let table = (bank * 16 + i as u32) * pol::TABLES_PER_SET;
                for k in [
                    0u32,
                    0x0a01_0000,
                    0x0a01_0203,
                    0x0a01_02ff,
                    0x0aff_0000,
                    u32::MAX,
                ] {
                    let got = lookup(walk(&p, table + pol::T_V4, u128::from(k) << 96, 6));
                    assert_eq!(got, cl.remote_v4.lookup(u128::from(k)), "v4 {k:#x}");
                }
                for port in [0u16, 79, 80, 81, 999, 1000, 1500, 1999, 2000, 65535] {
                    let got = lookup(walk(&p, table + pol::T_DPORT, u128::from(port) << 112, 2));
                    assert_eq!(got, cl.dport.lookup(u128::from(port)), "port {port}");
                }
                for a in ["2001:db8:1::5", "2001:db8:2::1", "::"] {
                    let k = u128::from(a.parse::<std::net::Ipv6Addr>().unwrap());
                    let got = lookup(walk(&p, table + pol::T_V6, k, 30));
                    assert_eq!(got, cl.remote_v6.lookup(k), "v6 {a}");
                }
                for t in [(8u8, 0u8), (0, 0), (3, 1)] {
                    let k = u128::from(t.0) << 8 | u128::from(t.1);
                    let got = lookup(walk(&p, table + pol::T_ICMP, k << 112, 2));
                    assert_eq!(got, cl.icmp.lookup(k), "icmp {t:?}");
                }
                for proto in [1u8, 6, 17, 47] {
                    let got = lookup(walk(&p, table + pol::T_PROTO, u128::from(proto) << 120, 0));
                    let want = cl.proto.get(&proto).copied().unwrap_or(cl.proto_other);
                    assert_eq!(got, want, "proto {proto}");
                }
            }
        }
    }

    #[test]
    fn ids_stay_in_their_bank_and_endpoints_follow_roles() {
        let (_, p0) = plan(0);
        let (_, p1) = plan(1);
        assert!(p0.rule_sets.iter().all(|(i, _)| *i < 16));
        assert!(p1.rule_sets.iter().all(|(i, _)| (16..32).contains(i)));
        assert!(p1.bitmaps.iter().all(|(i, _)| (1024..2048).contains(i)));
        assert!(p1.chunks.iter().all(|(i, _)| (1024..2048).contains(i)));
        for (_, s) in &p1.root {
            if s & pol::NODE != 0 {
                assert!((1024..2048).contains(&(s & !pol::NODE)));
            } else {
                assert!(*s == 0 || (1025..=2048).contains(s));
            }
        }
        // w1 (workload, ifindex 10): its ingress is the veth's TC egress.
        let ep = |h| {
            p1.endpoints[&PolEndpointKey {
                bank: 1,
                ifindex: 10,
                hook: h,
            }]
        };
        assert_eq!(ep(hook::TC_EGRESS).direction, pol::DIR_INGRESS);
        assert_eq!(ep(hook::TC_INGRESS).direction, pol::DIR_EGRESS);
        assert_eq!(ep(hook::TC_EGRESS).flags, 0);
        assert_eq!(
            (ep(hook::TC_EGRESS).slot, ep(hook::TC_INGRESS).slot),
            (1, 1)
        );
        // w2 is selected by nothing: no entries. eth0 (host) is selected for ingress only.
        assert!(!p1.endpoints.keys().any(|k| k.ifindex == 11));
        let host = p1.endpoints[&PolEndpointKey {
            bank: 1,
            ifindex: 12,
            hook: hook::TC_INGRESS,
        }];
        assert_eq!(
            (host.direction, host.flags),
            (pol::DIR_INGRESS, pol::EP_HOST)
        );
        let host_out = p1.endpoints[&PolEndpointKey {
            bank: 1,
            ifindex: 12,
            hook: hook::TC_EGRESS,
        }];
        assert_eq!(host_out.ruleset, pol::NO_RULESET);
        // The pass rule knows the last bit of its policy.
        let pass = p1
            .rules
            .iter()
            .find(|(_, r)| r.action == pol::ACT_PASS)
            .unwrap();
        assert_eq!(pass.1.policy_last, 1);
    }

    #[test]
    fn over_capacity_names_the_option() {
        let c = cfg(TEXT);
        let compiled = compile(&c).unwrap();
        let e = plan_bank(
            &c,
            &compiled,
            0,
            BankSizes::new(1, 1024, 1024),
            &|_| Some(1),
            &|_| 0,
        )
        .unwrap_err();
        assert_eq!(e.what, "rule-sets");
        assert!(e.to_string().contains("classifier capacity rule-sets="));
        let e = plan_bank(
            &c,
            &compiled,
            0,
            BankSizes::new(16, 2, 1024),
            &|_| Some(1),
            &|_| 0,
        )
        .unwrap_err();
        assert_eq!(e.what, "chunks");
    }
}
