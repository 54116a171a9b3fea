//! The classifier of one rule set: per packet dimension a table whose lookup gives the bitmap of
//! the rules matching that dimension; the packet's matching rules are the AND of its dimension
//! bitmaps. No lookup scans rules, so the cost per packet does not depend on how many rules or
//! CIDRs there are.
//!
//! Dimensions: the IP protocol (exact, with a default for protocols no rule names), the remote
//! IPv4 and IPv6 address (longest prefix), the source and destination port (longest prefix over
//! 16 bits, ranges decomposed into prefixes; looked up for TCP, UDP and SCTP only), and the ICMP
//! type and code (longest prefix over `type << 8 | code`; looked up for ICMP and ICMPv6 only).
//! For a packet without ports (or that is not ICMP) the port (ICMP) dimensions give the rules
//! without port (ICMP) conditions: a rule with a port condition never matches a packet that has
//! no ports. (The parser already requires such rules to name a protocol with ports, so the
//! protocol dimension excludes them too; the classifier does not rely on it.)

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use crate::config::{has_ports, is_icmp, Cidr, Config, IpSet, RemoteTarget, Rule};

use super::bitmap::Bitmap;
use super::prefix::{range_prefixes, Prefix, PrefixBuilder, PrefixTable};
use super::ruleset::RuleSet;
use super::verdict::{Evaluation, Packet, Verdict};

/// The tables of one rule set.
#[derive(Debug, Clone)]
pub struct Classifier {
    /// Rules per IP protocol that some rule names.
    pub proto: BTreeMap<u8, Bitmap>,
    /// Rules for every other protocol (those with `proto=any`).
    pub proto_other: Bitmap,
    /// Remote IPv4 address (32-bit keys).
    pub remote_v4: PrefixTable,
    /// Remote IPv6 address (128-bit keys).
    pub remote_v6: PrefixTable,
    /// Source port (16-bit keys).
    pub sport: PrefixTable,
    /// Destination port (16-bit keys).
    pub dport: PrefixTable,
    /// ICMP type and code (`type << 8 | code`, 16-bit keys).
    pub icmp: PrefixTable,
    /// Rules with neither `sport=` nor `dport=`: the port bitmap of packets without ports.
    pub no_ports: Bitmap,
    /// Rules without `icmp-type=`: the ICMP bitmap of packets that are not ICMP.
    pub no_icmp: Bitmap,
    /// What the verdict step needs.
    pub evaluation: Evaluation,
}

fn cidr_prefix(cidr: &Cidr) -> (bool, Prefix) {
    match cidr.addr {
        IpAddr::V4(a) => (
            true,
            Prefix::new(32, u128::from(u32::from(a)), cidr.prefix_len),
        ),
        IpAddr::V6(a) => (false, Prefix::new(128, u128::from(a), cidr.prefix_len)),
    }
}

/// The two address dimensions under construction. Sets are folded in once each, with the
/// bitmap of every rule naming them: a 10k-network set named by 50 rules costs 10k marks, not
/// 500k.
struct Remotes<'a> {
    v4: PrefixBuilder,
    v6: PrefixBuilder,
    /// Set name → (rules naming it, rules naming it negated).
    sets: BTreeMap<&'a str, (Bitmap, Bitmap)>,
}

impl<'a> Remotes<'a> {
    fn new() -> Self {
        Remotes {
            v4: PrefixBuilder::new(32),
            v6: PrefixBuilder::new(128),
            sets: BTreeMap::new(),
        }
    }

    fn mark(&mut self, cidr: &Cidr, positive: Bitmap, negative: Bitmap) {
        let (is_v4, prefix) = cidr_prefix(cidr);
        let table = if is_v4 { &mut self.v4 } else { &mut self.v6 };
        table.mark(prefix, positive, negative);
    }

    /// Adds rule `bit`'s remote condition.
    fn rule(&mut self, rule: &'a Rule, bit: usize) {
        if !rule.remote.iter().any(|r| !r.negated) {
            self.v4.unconstrained(bit);
            self.v6.unconstrained(bit);
        }
        let me = Bitmap::bit(bit);
        for item in &rule.remote {
            let (pos, neg) = if item.negated {
                (Bitmap::EMPTY, me)
            } else {
                (me, Bitmap::EMPTY)
            };
            match &item.target {
                RemoteTarget::Net(cidr) => self.mark(cidr, pos, neg),
                RemoteTarget::Set(name) => {
                    let entry = self.sets.entry(name.as_str()).or_default();
                    *entry = (entry.0.or(pos), entry.1.or(neg));
                }
            }
        }
    }

    fn build(mut self, sets: &HashMap<&str, &IpSet>) -> (PrefixTable, PrefixTable) {
        let named = std::mem::take(&mut self.sets);
        for (name, (pos, neg)) in named {
            for (cidr, _) in sets.get(name).map_or(&[][..], |s| &s.entries) {
                self.mark(cidr, pos, neg);
            }
        }
        (self.v4.build(), self.v6.build())
    }
}

fn ports(ranges: &[(u16, u16)], bit: usize, table: &mut PrefixBuilder) {
    if ranges.is_empty() {
        table.unconstrained(bit);
    }
    for &(lo, hi) in ranges {
        for prefix in range_prefixes(16, u128::from(lo), u128::from(hi)) {
            table.positive(prefix, bit);
        }
    }
}

impl Classifier {
    /// Builds the tables of `set`, whose rules are rules of `config`.
    #[must_use]
    pub fn build(config: &Config, set: &RuleSet) -> Classifier {
        let sets: HashMap<&str, &IpSet> =
            config.ipsets.iter().map(|s| (s.name.as_str(), s)).collect();
        let mut proto: BTreeMap<u8, Bitmap> = BTreeMap::new();
        let mut proto_other = Bitmap::EMPTY;
        let mut remotes = Remotes::new();
        let mut sport = PrefixBuilder::new(16);
        let mut dport = PrefixBuilder::new(16);
        let mut icmp = PrefixBuilder::new(16);
        // Protocols named by some rule get their own entry; `any` rules go into every entry.
        for r in &set.rules {
            if let Some(p) = config.rules[r.rule].proto {
                proto.entry(p).or_default();
            }
        }
        for (bit, r) in set.rules.iter().enumerate() {
            let rule = &config.rules[r.rule];
            match rule.proto {
                None => {
                    proto_other.set(bit);
                    for entry in proto.values_mut() {
                        entry.set(bit);
                    }
                }
                Some(p) => {
                    if let Some(entry) = proto.get_mut(&p) {
                        entry.set(bit);
                    }
                }
            }
            remotes.rule(rule, bit);
            ports(&rule.sport, bit, &mut sport);
            ports(&rule.dport, bit, &mut dport);
            match rule.icmp {
                None => icmp.unconstrained(bit),
                Some((t, None)) => icmp.positive(Prefix::new(16, u128::from(t) << 8, 8), bit),
                Some((t, Some(c))) => {
                    icmp.positive(Prefix::new(16, u128::from(t) << 8 | u128::from(c), 16), bit)
                }
            }
        }
        let (remote_v4, remote_v6) = remotes.build(&sets);
        let (sport, dport, icmp) = (sport.build(), dport.build(), icmp.build());
        Classifier {
            proto,
            proto_other,
            remote_v4,
            remote_v6,
            no_ports: sport.unconstrained.and(dport.unconstrained),
            no_icmp: icmp.unconstrained,
            sport,
            dport,
            icmp,
            evaluation: Evaluation::of(set),
        }
    }

    /// The rules matching `packet`: one lookup per dimension, ANDed.
    #[must_use]
    pub fn matching(&self, packet: &Packet) -> Bitmap {
        let proto = self
            .proto
            .get(&packet.proto)
            .copied()
            .unwrap_or(self.proto_other);
        let remote = match packet.remote {
            IpAddr::V4(a) => self.remote_v4.lookup(u128::from(u32::from(a))),
            IpAddr::V6(a) => self.remote_v6.lookup(u128::from(a)),
        };
        let ports = if has_ports(packet.proto) {
            self.sport
                .lookup(u128::from(packet.sport))
                .and(self.dport.lookup(u128::from(packet.dport)))
        } else {
            self.no_ports
        };
        let icmp = if is_icmp(packet.proto) {
            self.icmp
                .lookup(u128::from(packet.icmp_type) << 8 | u128::from(packet.icmp_code))
        } else {
            self.no_icmp
        };
        proto.and(remote).and(ports).and(icmp)
    }

    /// The verdict for `packet`.
    #[must_use]
    pub fn classify(&self, packet: &Packet) -> Verdict {
        self.evaluation.verdict(self.matching(packet))
    }

    /// Every bitmap the tables hold (for sizing the shared bitmap table).
    pub fn bitmaps(&self) -> impl Iterator<Item = Bitmap> + '_ {
        self.proto
            .values()
            .copied()
            .chain([self.proto_other, self.no_ports, self.no_icmp])
            .chain(
                [
                    &self.remote_v4,
                    &self.remote_v6,
                    &self.sport,
                    &self.dport,
                    &self.icmp,
                ]
                .into_iter()
                .flat_map(|t| t.entries.iter().map(|e| e.rules)),
            )
    }
}
