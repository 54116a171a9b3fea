//! The compiler against a naive reference: a linear matcher written straight from the
//! semantics in the module documentation, over the config itself (not the rule sets), so a bug
//! in rule set building is caught too. Focused tests for each semantic rule, a property test
//! over random configs and packets, and the scale measurement.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Instant;

use super::*;
use crate::config::{
    has_ports, is_icmp, parse, render_config, Cidr, Config, Direction, RemoteTarget, Rule,
    RuleAction,
};

/// A verdict in terms of config rule indices.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Naive {
    Unselected,
    Allow(usize),
    Deny(usize),
    DefaultDeny,
}

impl Naive {
    fn allows(&self) -> bool {
        matches!(self, Naive::Unselected | Naive::Allow(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    decision: Naive,
    logged: BTreeSet<usize>,
    audit: Option<Naive>,
}

fn contains(cidr: &Cidr, addr: IpAddr) -> bool {
    match (cidr.addr, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let len = u32::from(cidr.prefix_len);
            len == 0 || (u32::from(n) ^ u32::from(a)) >> (32 - len) == 0
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let len = u32::from(cidr.prefix_len);
            len == 0 || (u128::from(n) ^ u128::from(a)) >> (128 - len) == 0
        }
        _ => false,
    }
}

fn in_target(config: &Config, target: &RemoteTarget, addr: IpAddr) -> bool {
    match target {
        RemoteTarget::Net(cidr) => contains(cidr, addr),
        RemoteTarget::Set(name) => config
            .ipset(name)
            .is_some_and(|s| s.entries.iter().any(|(c, _)| contains(c, addr))),
    }
}

fn rule_matches(config: &Config, rule: &Rule, p: &Packet) -> bool {
    if rule.proto.is_some_and(|proto| proto != p.proto) {
        return false;
    }
    let positives: Vec<_> = rule.remote.iter().filter(|r| !r.negated).collect();
    if !positives.is_empty()
        && !positives
            .iter()
            .any(|r| in_target(config, &r.target, p.remote))
    {
        return false;
    }
    if rule
        .remote
        .iter()
        .any(|r| r.negated && in_target(config, &r.target, p.remote))
    {
        return false;
    }
    // A port (ICMP) condition never matches a packet without ports (that is not ICMP).
    let in_ranges = |ranges: &[(u16, u16)], port: u16| {
        ranges.is_empty()
            || (has_ports(p.proto) && ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&port)))
    };
    if !in_ranges(&rule.sport, p.sport) || !in_ranges(&rule.dport, p.dport) {
        return false;
    }
    if let Some((t, code)) = rule.icmp {
        if !is_icmp(p.proto) || p.icmp_type != t || code.is_some_and(|c| c != p.icmp_code) {
            return false;
        }
    }
    true
}

/// One linear evaluation; `None` when no policy (of the kind considered) selects the endpoint.
fn naive_run(
    config: &Config,
    endpoint: usize,
    direction: Direction,
    p: &Packet,
    with_audit: bool,
) -> Option<(Naive, BTreeSet<usize>)> {
    let labels = &config.interfaces[endpoint].labels;
    let mut policies: Vec<_> = config
        .policies
        .iter()
        .filter(|pol| {
            pol.applies(direction) && pol.selector.matches(labels) && (with_audit || !pol.audit)
        })
        .collect();
    if policies.is_empty() {
        return None;
    }
    policies.sort_by(|a, b| (a.order, &a.name).cmp(&(b.order, &b.name)));
    let mut logged = BTreeSet::new();
    for policy in policies {
        for (i, rule) in config.rules.iter().enumerate() {
            if rule.policy != policy.name
                || rule.direction != direction
                || !rule_matches(config, rule, p)
            {
                continue;
            }
            match rule.action {
                RuleAction::Allow => return Some((Naive::Allow(i), logged)),
                RuleAction::Deny => return Some((Naive::Deny(i), logged)),
                RuleAction::Log => {
                    logged.insert(i);
                }
                RuleAction::Pass => break,
            }
        }
    }
    Some((Naive::DefaultDeny, logged))
}

fn naive(config: &Config, endpoint: usize, direction: Direction, p: &Packet) -> Outcome {
    let (decision, mut logged) = naive_run(config, endpoint, direction, p, false)
        .unwrap_or((Naive::Unselected, BTreeSet::new()));
    let labels = &config.interfaces[endpoint].labels;
    let audited = config
        .policies
        .iter()
        .any(|pol| pol.audit && pol.applies(direction) && pol.selector.matches(labels));
    let mut audit = None;
    if audited {
        let (would, would_log) =
            naive_run(config, endpoint, direction, p, true).expect("an audit policy selects");
        for i in would_log {
            let policy = &config.rules[i].policy;
            if config
                .policies
                .iter()
                .any(|pol| pol.name == *policy && pol.audit)
            {
                logged.insert(i);
            }
        }
        if decision.allows() && !would.allows() {
            audit = Some(would);
        }
    }
    Outcome {
        decision,
        logged,
        audit,
    }
}

/// The compiled verdict in the same terms.
fn compiled(c: &Compiled, endpoint: usize, direction: Direction, p: &Packet) -> Outcome {
    let v = c.verdict(endpoint, direction, p);
    let rules = c
        .rule_set(endpoint, direction)
        .map(|id| c.rule_sets[id].rules.as_slice())
        .unwrap_or_default();
    let rule = |bit: u16| rules[usize::from(bit)].rule;
    let map = |d: Decision| match d {
        Decision::Unselected => Naive::Unselected,
        Decision::Allow(b) => Naive::Allow(rule(b)),
        Decision::Deny(b) => Naive::Deny(rule(b)),
        Decision::DefaultDeny => Naive::DefaultDeny,
    };
    Outcome {
        decision: map(v.decision),
        logged: v.logged.iter().map(|b| rules[b].rule).collect(),
        audit: v.audit.map(map),
    }
}

fn config(text: &str) -> Config {
    parse("t.conf", text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn packet(remote: &str, proto: u8, sport: u16, dport: u16) -> Packet {
    Packet {
        remote: remote.parse().unwrap(),
        proto,
        sport,
        dport,
        icmp_type: 0,
        icmp_code: 0,
    }
}

fn tcp(remote: &str, dport: u16) -> Packet {
    packet(remote, 6, 40_000, dport)
}

fn udp(remote: &str, dport: u16) -> Packet {
    packet(remote, 17, 40_000, dport)
}

fn icmp(remote: &str, proto: u8, icmp_type: u8, icmp_code: u8) -> Packet {
    Packet {
        icmp_type,
        icmp_code,
        ..packet(remote, proto, 0, 0)
    }
}

/// The outcome at endpoint `name`, checked against the naive matcher.
fn outcome(c: &Config, name: &str, direction: Direction, p: &Packet) -> Outcome {
    let compiled_policy = compile(c).unwrap();
    let e = c.interfaces.iter().position(|i| i.name == name).unwrap();
    let got = compiled(&compiled_policy, e, direction, p);
    assert_eq!(got, naive(c, e, direction, p), "{p:?}");
    got
}

fn decision(c: &Config, name: &str, direction: Direction, p: &Packet) -> Naive {
    outcome(c, name, direction, p).decision
}

/// The index in `Config::rules` of the rule on line `line`.
fn rule_on(c: &Config, line: u32) -> usize {
    c.rules.iter().position(|r| r.span.line == line).unwrap()
}

use Direction::{Egress, Ingress};

#[test]
fn unselected_endpoints_allow_everything() {
    let c = config(
        "interface web labels=app:web\n\
         interface db labels=app:db\n\
         policy p selector=\"app == 'web'\"\n\
         rule p ingress allow proto=tcp dport=80\n",
    );
    assert_eq!(
        decision(&c, "db", Ingress, &udp("192.0.2.1", 9)),
        Naive::Unselected
    );
    assert_eq!(
        decision(&c, "db", Egress, &udp("192.0.2.1", 9)),
        Naive::Unselected
    );
    // Selected for ingress only: egress stays open.
    assert_eq!(
        decision(&c, "web", Egress, &udp("192.0.2.1", 9)),
        Naive::Unselected
    );
    let compiled_policy = compile(&c).unwrap();
    assert_eq!(compiled_policy.endpoints[1].ingress, None);
    assert_eq!(compiled_policy.endpoints[0].egress, None);
}

#[test]
fn selected_means_default_deny_in_that_direction() {
    let c = config(
        "interface web labels=app:web\n\
         policy p selector=\"app == 'web'\"\n\
         rule p ingress allow proto=tcp dport=80\n\
         policy none selector=has(app) types=egress\n",
    );
    assert_eq!(
        decision(&c, "web", Ingress, &tcp("192.0.2.1", 80)),
        Naive::Allow(0)
    );
    assert_eq!(
        decision(&c, "web", Ingress, &tcp("192.0.2.1", 81)),
        Naive::DefaultDeny
    );
    // A policy without rules still selects: egress is now default deny.
    assert_eq!(
        decision(&c, "web", Egress, &tcp("192.0.2.1", 80)),
        Naive::DefaultDeny
    );
    // No types= and no rules: ingress, as in Kubernetes.
    let c = config("interface a\npolicy deny-in selector=all()\n");
    assert!(c.policies[0].ingress);
    assert!(!c.policies[0].egress);
    assert_eq!(
        decision(&c, "a", Ingress, &tcp("::1", 1)),
        Naive::DefaultDeny
    );
    assert_eq!(decision(&c, "a", Egress, &tcp("::1", 1)), Naive::Unselected);
}

#[test]
fn policies_apply_by_order_then_name() {
    let c = config(
        "interface a\n\
         policy z-allow order=10 selector=all()\n\
         rule z-allow ingress allow\n\
         policy a-deny order=10 selector=all()\n\
         rule a-deny ingress deny proto=udp\n\
         policy first order=5 selector=all()\n\
         rule first ingress allow proto=udp dport=53\n",
    );
    // order 5 first, then a-deny (name), then z-allow.
    assert_eq!(
        decision(&c, "a", Ingress, &udp("192.0.2.1", 53)),
        Naive::Allow(rule_on(&c, 7))
    );
    assert_eq!(
        decision(&c, "a", Ingress, &udp("192.0.2.1", 54)),
        Naive::Deny(rule_on(&c, 5))
    );
    assert_eq!(
        decision(&c, "a", Ingress, &tcp("192.0.2.1", 54)),
        Naive::Allow(rule_on(&c, 3))
    );
}

#[test]
fn first_matching_rule_wins_within_a_policy() {
    let c = config(
        "interface a\n\
         policy p selector=all()\n\
         rule p ingress deny proto=tcp remote=10.1.0.0/16\n\
         rule p ingress allow proto=tcp remote=10.0.0.0/8\n\
         rule p ingress deny remote=10.1.2.3\n",
    );
    assert_eq!(
        decision(&c, "a", Ingress, &tcp("10.1.2.3", 1)),
        Naive::Deny(0)
    );
    assert_eq!(
        decision(&c, "a", Ingress, &tcp("10.2.0.1", 1)),
        Naive::Allow(1)
    );
    assert_eq!(
        decision(&c, "a", Ingress, &udp("10.1.2.3", 1)),
        Naive::Deny(2)
    );
    assert_eq!(
        decision(&c, "a", Ingress, &udp("10.1.2.4", 1)),
        Naive::DefaultDeny
    );
}

#[test]
fn pass_skips_the_rest_of_its_policy() {
    let c = config(
        "interface a\n\
         policy one order=1 selector=all()\n\
         rule one ingress pass remote=10.0.0.0/8\n\
         rule one ingress deny proto=tcp\n\
         rule one ingress log proto=tcp\n\
         policy two order=2 selector=all()\n\
         rule two ingress log\n\
         rule two ingress allow proto=tcp dport=22\n\
         rule two ingress pass proto=udp\n\
         rule two ingress allow proto=udp\n",
    );
    // Passed by `one`: its deny is skipped, `two` allows.
    let o = outcome(&c, "a", Ingress, &tcp("10.0.0.1", 22));
    assert_eq!(o.decision, Naive::Allow(rule_on(&c, 8)));
    assert_eq!(o.logged, BTreeSet::from([rule_on(&c, 7)]));
    // Not passed: `one` denies.
    assert_eq!(
        decision(&c, "a", Ingress, &tcp("192.0.2.1", 22)),
        Naive::Deny(rule_on(&c, 4))
    );
    // Pass in the last policy: nothing left, default deny (the skipped allow does not count).
    let o = outcome(&c, "a", Ingress, &udp("10.0.0.1", 53));
    assert_eq!(o.decision, Naive::DefaultDeny);
    assert_eq!(o.logged, BTreeSet::from([rule_on(&c, 7)]));
}

#[test]
fn log_records_and_continues() {
    let c = config(
        "interface a\n\
         policy p selector=all()\n\
         rule p ingress log proto=tcp\n\
         rule p ingress log dport=1-100 proto=tcp\n\
         rule p ingress allow proto=tcp dport=80\n\
         rule p ingress log\n",
    );
    let o = outcome(&c, "a", Ingress, &tcp("192.0.2.1", 80));
    assert_eq!(o.decision, Naive::Allow(2));
    // The log after the deciding rule does not record.
    assert_eq!(o.logged, BTreeSet::from([0, 1]));
    let o = outcome(&c, "a", Ingress, &udp("192.0.2.1", 80));
    assert_eq!(o.decision, Naive::DefaultDeny);
    assert_eq!(o.logged, BTreeSet::from([3]));
}

#[test]
fn audit_policies_report_but_never_decide() {
    let c = config(
        "interface a labels=app:web\n\
         interface b labels=app:db\n\
         policy trial order=1 selector=all() audit\n\
         rule trial ingress log proto=udp\n\
         rule trial ingress deny proto=udp dport=53\n\
         rule trial ingress allow proto=tcp\n\
         policy enforce order=2 selector=\"app == 'web'\"\n\
         rule enforce ingress deny proto=tcp dport=23\n\
         rule enforce ingress allow\n",
    );
    // b: only the audit policy selects it: everything passes, would-be denials are reported.
    let o = outcome(&c, "b", Ingress, &udp("192.0.2.1", 53));
    assert_eq!(o.decision, Naive::Unselected);
    assert_eq!(o.audit, Some(Naive::Deny(rule_on(&c, 5))));
    assert_eq!(o.logged, BTreeSet::from([rule_on(&c, 4)]));
    let o = outcome(&c, "b", Ingress, &icmp("192.0.2.1", 1, 8, 0));
    assert_eq!(
        (o.decision, o.audit),
        (Naive::Unselected, Some(Naive::DefaultDeny))
    );
    let o = outcome(&c, "b", Ingress, &tcp("192.0.2.1", 23));
    assert_eq!((o.decision, o.audit), (Naive::Unselected, None));
    // a: the audit policy's allow does not rescue what the enforcing policy denies...
    let o = outcome(&c, "a", Ingress, &tcp("192.0.2.1", 23));
    assert_eq!((o.decision, o.audit), (Naive::Deny(rule_on(&c, 8)), None));
    // ...and its deny does not drop what the enforcing policy allows; it is reported.
    let o = outcome(&c, "a", Ingress, &udp("192.0.2.1", 53));
    assert_eq!(
        (o.decision, o.audit),
        (
            Naive::Allow(rule_on(&c, 9)),
            Some(Naive::Deny(rule_on(&c, 5)))
        )
    );
}

#[test]
fn remote_cidrs_sets_and_negations() {
    let c = config(
        "interface a\n\
         ipset bad 10.1.0.0/16 2001:db8:bad::/48\n\
         ipset v4only 198.51.100.0/24\n\
         policy p selector=all()\n\
         rule p ingress allow remote=10.0.0.0/8,!set:bad\n\
         rule p ingress allow remote=!10.0.0.0/8,!2001:db8::/32,!set:v4only\n\
         rule p ingress deny remote=set:v4only\n",
    );
    let d = |remote: &str| decision(&c, "a", Ingress, &tcp(remote, 1));
    assert_eq!(d("10.2.0.1"), Naive::Allow(0));
    assert_eq!(d("10.1.0.1"), Naive::DefaultDeny); // in 10/8 but in `bad`, and not outside 10/8
    assert_eq!(d("192.0.2.1"), Naive::Allow(1));
    assert_eq!(d("198.51.100.1"), Naive::Deny(2));
    assert_eq!(d("2001:db8:bad::1"), Naive::DefaultDeny);
    assert_eq!(d("2001:db9::1"), Naive::Allow(1));
    // A set of IPv4 networks only never matches an IPv6 remote positively.
    let c = config(
        "interface a\nipset v4 10.0.0.0/8\npolicy p selector=all()\nrule p ingress allow remote=set:v4\n",
    );
    assert_eq!(
        decision(&c, "a", Ingress, &tcp("::ffff:10.0.0.1", 1)),
        Naive::DefaultDeny
    );
    assert_eq!(
        decision(&c, "a", Ingress, &tcp("10.0.0.1", 1)),
        Naive::Allow(0)
    );
}

#[test]
fn protocols_ports_and_icmp() {
    let c = config(
        "interface a\n\
         policy p selector=all()\n\
         rule p ingress allow proto=tcp sport=1024-65535 dport=80,443,8000-8080\n\
         rule p ingress allow proto=udp dport=53\n\
         rule p ingress allow proto=icmp icmp-type=8\n\
         rule p ingress allow proto=icmpv6 icmp-type=1 icmp-code=4\n\
         rule p ingress allow proto=47\n\
         rule p egress allow proto=sctp dport=0\n",
    );
    let d = |p: Packet| decision(&c, "a", Ingress, &p);
    assert_eq!(d(packet("192.0.2.1", 6, 1024, 8080)), Naive::Allow(0));
    assert_eq!(d(packet("192.0.2.1", 6, 1023, 8080)), Naive::DefaultDeny);
    assert_eq!(d(packet("192.0.2.1", 6, 5000, 8081)), Naive::DefaultDeny);
    assert_eq!(d(packet("192.0.2.1", 17, 5000, 443)), Naive::DefaultDeny);
    assert_eq!(d(udp("192.0.2.1", 53)), Naive::Allow(1));
    assert_eq!(d(icmp("192.0.2.1", 1, 8, 0)), Naive::Allow(2));
    assert_eq!(d(icmp("192.0.2.1", 1, 8, 99)), Naive::Allow(2));
    assert_eq!(d(icmp("192.0.2.1", 1, 0, 0)), Naive::DefaultDeny);
    // icmp-type=8 is ICMP's echo request: ICMPv6 type 8 is not matched by rule 2.
    assert_eq!(d(icmp("2001:db8::1", 58, 8, 0)), Naive::DefaultDeny);
    assert_eq!(d(icmp("2001:db8::1", 58, 1, 4)), Naive::Allow(3));
    assert_eq!(d(icmp("2001:db8::1", 58, 1, 3)), Naive::DefaultDeny);
    assert_eq!(d(packet("2001:db8::1", 47, 0, 0)), Naive::Allow(4));
    assert_eq!(
        decision(&c, "a", Egress, &packet("192.0.2.1", 132, 9, 0)),
        Naive::Allow(5)
    );
}

/// Port and ICMP conditions hold only for packets that have them, even in a config built by
/// hand without a protocol (the parser would refuse it).
#[test]
fn port_and_icmp_conditions_need_packets_that_have_them() {
    let mut c = config(
        "interface a\n\
         policy p selector=all()\n\
         rule p ingress allow proto=tcp dport=0-65535\n\
         rule p ingress allow proto=icmp icmp-type=0\n",
    );
    c.rules[0].proto = None;
    c.rules[1].proto = None;
    let d = |p: Packet| decision(&c, "a", Ingress, &p);
    assert_eq!(d(packet("192.0.2.1", 17, 0, 0)), Naive::Allow(0));
    assert_eq!(d(packet("192.0.2.1", 47, 0, 0)), Naive::DefaultDeny);
    assert_eq!(d(icmp("192.0.2.1", 1, 0, 0)), Naive::Allow(1));
    assert_eq!(d(icmp("2001:db8::1", 58, 0, 5)), Naive::Allow(1));
}

#[test]
fn identical_rule_lists_share_a_rule_set() {
    let mut text = String::new();
    for i in 0..1000 {
        let env = if i % 2 == 0 { "prod" } else { "dev" };
        let _ = writeln!(
            text,
            "interface w{i} role=workload labels=app:web,env:{env}"
        );
    }
    text.push_str(
        "policy web selector=\"app == 'web'\"\n\
         rule web ingress allow proto=tcp dport=80\n\
         policy prod selector=\"env == 'prod'\" types=ingress,egress\n\
         rule prod egress allow\n\
         policy empty selector=\"env == 'dev'\" types=egress\n",
    );
    let c = config(&text);
    let compiled_policy = compile(&c).unwrap();
    // Ingress: {web, prod} for prod, {web} for dev: same rules, same flags, one set. Egress:
    // {prod} with one rule, {empty} with none: two sets.
    assert_eq!(compiled_policy.rule_sets.len(), 3);
    assert_eq!(compiled_policy.rule_sets[0].endpoints.len(), 1000);
    let egress: Vec<_> = compiled_policy
        .endpoints
        .iter()
        .map(|e| e.egress.unwrap())
        .collect();
    assert_eq!(egress.iter().collect::<BTreeSet<_>>().len(), 2);
}

#[test]
fn more_than_256_rules_is_refused() {
    let mut text = "interface a\npolicy p selector=all()\n".to_owned();
    for i in 0..=MAX_RULES {
        let _ = writeln!(text, "rule p ingress allow proto=tcp dport={}", i + 1);
    }
    let c = config(&text);
    let err = compile(&c).unwrap_err();
    assert_eq!(
        err.to_string(),
        "endpoint 'a' has 257 ingress rules, more than the 256 one endpoint may have in one \
         direction (from policies p)"
    );
    // Exactly 256 compile, and the last rule is reachable.
    text.truncate(text.trim_end().rfind('\n').unwrap() + 1);
    let c = config(&text);
    assert_eq!(
        decision(&c, "a", Ingress, &tcp("192.0.2.1", 256)),
        Naive::Allow(255)
    );
}

/// A small xorshift generator (no crates).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Addresses clustered enough that prefixes nest and packets hit them.
fn random_addr(rng: &mut Rng, v6: bool) -> IpAddr {
    let low: [u32; 6] = [0, 1, 2, 0x80, 0xff, 0x1234];
    if v6 {
        let base: u128 = rng.pick(&[
            0xfd00_u128 << 112,
            (0xfd00_u128 << 112) | (1 << 64),
            0x2001_0db8_u128 << 96,
            0,
        ]);
        let tail = u128::from(rng.pick(&low)) << (16 * rng.below(5) as u32);
        IpAddr::V6((base | tail).into())
    } else {
        let base: u32 = rng.pick(&[0x0a00_0000, 0x0a00_0100, 0x0a01_0000, 0xc0a8_0000, 0]);
        let tail = rng.pick(&low) << (8 * rng.below(3) as u32);
        IpAddr::V4((base | tail).into())
    }
}

fn random_cidr(rng: &mut Rng) -> Cidr {
    let v6 = rng.chance(35);
    let addr = random_addr(rng, v6);
    let prefix_len = if v6 {
        rng.pick(&[0, 16, 32, 48, 64, 120, 127, 128])
    } else {
        rng.pick(&[0, 8, 15, 16, 23, 24, 25, 31, 32])
    };
    Cidr { addr, prefix_len }.network()
}

const PORTS: &[u16] = &[0, 1, 22, 53, 79, 80, 81, 443, 1000, 1023, 1024, 8080, 65535];

fn random_ports(rng: &mut Rng) -> String {
    let n = 1 + rng.below(3);
    (0..n)
        .map(|_| {
            let (a, b) = (rng.pick(PORTS), rng.pick(PORTS));
            if rng.chance(50) {
                a.to_string()
            } else {
                format!("{}-{}", a.min(b), a.max(b))
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn random_selector(rng: &mut Rng, depth: u32) -> String {
    const ATOMS: &[&str] = &[
        "all()",
        "has(app)",
        "!has(env)",
        "app == 'web'",
        "app != 'db'",
        "env == prod",
        "app in {web, db}",
        "env not in {'dev'}",
    ];
    if depth == 0 || rng.chance(40) {
        return rng.pick(ATOMS).to_owned();
    }
    let (a, b) = (
        random_selector(rng, depth - 1),
        random_selector(rng, depth - 1),
    );
    match rng.below(3) {
        0 => format!("({a}) && ({b})"),
        1 => format!("({a}) || ({b})"),
        _ => format!("!({a})"),
    }
}

/// A random but valid config text.
fn random_config(rng: &mut Rng) -> String {
    let mut text = String::new();
    let sets = rng.below(4);
    for s in 0..sets {
        let _ = write!(text, "ipset s{s}");
        for _ in 0..1 + rng.below(6) {
            let _ = write!(text, " {}", random_cidr(rng));
        }
        text.push('\n');
    }
    for e in 0..1 + rng.below(4) {
        let mut labels = Vec::new();
        if rng.chance(70) {
            labels.push(format!("app:{}", rng.pick(&["web", "db", "x"])));
        }
        if rng.chance(50) {
            labels.push(format!("env:{}", rng.pick(&["prod", "dev"])));
        }
        let _ = write!(text, "interface e{e} role=workload");
        if !labels.is_empty() {
            let _ = write!(text, " labels={}", labels.join(","));
        }
        text.push('\n');
    }
    for p in 0..1 + rng.below(5) {
        let types = rng.pick(&[
            None,
            None,
            Some("ingress"),
            Some("egress"),
            Some("ingress,egress"),
        ]);
        let _ = write!(
            text,
            "policy p{p} order={} selector=\"{}\"",
            rng.below(3),
            random_selector(rng, 2)
        );
        if let Some(t) = types {
            let _ = write!(text, " types={t}");
        }
        if rng.chance(20) {
            text.push_str(" audit");
        }
        text.push('\n');
        for _ in 0..rng.below(9) {
            let direction = match types {
                Some("ingress") => "ingress",
                Some("egress") => "egress",
                _ => rng.pick(&["ingress", "egress"]),
            };
            let action = rng.pick(&["allow", "allow", "deny", "deny", "log", "pass"]);
            let _ = write!(text, "rule p{p} {direction} {action}");
            let proto = rng.pick(&[
                "any", "any", "tcp", "tcp", "udp", "icmp", "icmpv6", "sctp", "47",
            ]);
            let _ = write!(text, " proto={proto}");
            if rng.chance(50) {
                let items: Vec<String> = (0..1 + rng.below(3))
                    .map(|_| {
                        let not = if rng.chance(30) { "!" } else { "" };
                        if sets > 0 && rng.chance(40) {
                            format!("{not}set:s{}", rng.below(sets))
                        } else {
                            format!("{not}{}", random_cidr(rng))
                        }
                    })
                    .collect();
                let _ = write!(text, " remote={}", items.join(","));
            }
            if matches!(proto, "tcp" | "udp" | "sctp") {
                if rng.chance(30) {
                    let _ = write!(text, " sport={}", random_ports(rng));
                }
                if rng.chance(50) {
                    let _ = write!(text, " dport={}", random_ports(rng));
                }
            }
            if matches!(proto, "icmp" | "icmpv6") && rng.chance(60) {
                let _ = write!(text, " icmp-type={}", rng.pick(&[0, 3, 8, 128]));
                if rng.chance(50) {
                    let _ = write!(text, " icmp-code={}", rng.pick(&[0, 1, 4]));
                }
            }
            text.push('\n');
        }
    }
    text
}

fn random_packet(rng: &mut Rng) -> Packet {
    let proto = rng.pick(&[6, 6, 17, 17, 1, 58, 132, 47, 50]);
    let v6 = if is_icmp(proto) {
        proto == 58
    } else {
        rng.chance(35)
    };
    let port = |rng: &mut Rng| {
        if rng.chance(80) {
            rng.pick(PORTS)
        } else {
            rng.next() as u16
        }
    };
    Packet {
        remote: random_addr(rng, v6),
        proto,
        sport: if has_ports(proto) { port(rng) } else { 0 },
        dport: if has_ports(proto) { port(rng) } else { 0 },
        icmp_type: rng.pick(&[0, 3, 8, 128, 9]),
        icmp_code: rng.pick(&[0, 1, 4]),
    }
}

/// Random policies, sets, endpoints and packets: the classifier's verdict (decision, logged
/// rules, audit report) equals the naive matcher's, and every config round-trips through its
/// canonical text.
#[test]
fn classifier_matches_the_naive_matcher() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut checked = 0usize;
    let mut decisions = [0usize; 4];
    for case in 0..2000 {
        let text = random_config(&mut rng);
        let c = config(&text);
        let rendered = render_config(&c);
        assert!(
            c.eq_ignoring_spans(&config(&rendered)),
            "{text}\nrendered:\n{rendered}"
        );
        let compiled_policy = compile(&c).unwrap();
        for _ in 0..25 {
            let p = random_packet(&mut rng);
            for e in 0..c.interfaces.len() {
                for direction in [Ingress, Egress] {
                    let want = naive(&c, e, direction, &p);
                    let got = compiled(&compiled_policy, e, direction, &p);
                    assert_eq!(
                        got, want,
                        "case {case}, endpoint e{e} {direction}, {p:?}\n{text}"
                    );
                    decisions[match want.decision {
                        Naive::Unselected => 0,
                        Naive::Allow(_) => 1,
                        Naive::Deny(_) => 2,
                        Naive::DefaultDeny => 3,
                    }] += 1;
                    checked += 1;
                }
            }
        }
    }
    // The generator reaches every outcome often enough for the comparison to mean something.
    assert!(decisions.iter().all(|&n| n > checked / 50), "{decisions:?}");
    println!("{checked} verdicts compared; unselected/allow/deny/default-deny {decisions:?}");
}

/// 1,000 endpoints × 256 ingress rules with 10,000 CIDRs in sets (and a worst case with a
/// rule set per endpoint): prints the compile time and table sizes; asserts only correctness
/// on a sample of packets.
#[test]
fn scale_1k_endpoints_256_rules_10k_cidrs() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut text = String::new();
    // 20 sets of 500 networks: two thirds IPv4, one third IPv6.
    for s in 0..20 {
        for chunk in 0..50 {
            let _ = write!(text, "ipset big{s}");
            for i in 0..10 {
                let n = (s * 500 + chunk * 10 + i) as u32;
                if n % 3 == 2 {
                    let a = (0x2001_0db8_u128 << 96) | (u128::from(n) << 80);
                    let _ = write!(text, " {}/{}", std::net::Ipv6Addr::from(a), 48 + n % 17);
                } else {
                    let a = 0x0a00_0000 | (n.wrapping_mul(2_654_435_761) & 0x00ff_ff00);
                    let len = 24 + n % 9;
                    let cidr = Cidr {
                        addr: IpAddr::V4(a.into()),
                        prefix_len: len as u8,
                    }
                    .network();
                    let _ = write!(text, " {cidr}");
                }
            }
            text.push('\n');
        }
    }
    for e in 0..1000 {
        let _ = writeln!(
            text,
            "interface w{e} role=workload labels=app:app{},env:{}",
            e % 10,
            if e % 2 == 0 { "prod" } else { "dev" }
        );
    }
    // A random ingress rule; `sets` names the sets it may reference (`{sets.0}0..{sets.1}`).
    let rule = |rng: &mut Rng, policy: &str, sets: (&str, usize), text: &mut String| {
        let action = rng.pick(&["allow", "allow", "deny", "log", "pass"]);
        let _ = write!(text, "rule {policy} ingress {action}");
        match rng.below(4) {
            0 => {
                let not = if rng.chance(20) { "!" } else { "" };
                let _ = write!(text, " remote={not}set:{}{}", sets.0, rng.below(sets.1));
            }
            1 => {
                let _ = write!(text, " remote={}", random_cidr(rng));
            }
            _ => {}
        }
        let proto = rng.pick(&["tcp", "udp", "any", "icmp"]);
        let _ = write!(text, " proto={proto}");
        if proto != "any" && proto != "icmp" {
            let _ = write!(text, " dport={}", random_ports(rng));
        }
        text.push('\n');
    };
    let _ = writeln!(text, "policy base order=10 selector=all()");
    for _ in 0..56 {
        rule(&mut rng, "base", ("big", 20), &mut text);
    }
    for a in 0..10 {
        let _ = writeln!(text, "policy app{a} order=100 selector=\"app == 'app{a}'\"");
        for _ in 0..200 {
            rule(&mut rng, &format!("app{a}"), ("big", 20), &mut text);
        }
    }
    let _ = writeln!(text, "policy out selector=all() types=egress");
    let _ = writeln!(text, "rule out egress allow remote=set:big0,set:big1");

    let start = Instant::now();
    let c = config(&text);
    let parsed = start.elapsed();
    let start = Instant::now();
    let compiled_policy = compile(&c).unwrap();
    let took = start.elapsed();
    let stats = compiled_policy.stats();
    assert_eq!(stats.rule_sets, 11);
    assert!(compiled_policy.rule_sets[..10]
        .iter()
        .all(|s| s.rules.len() == MAX_RULES || s.direction == Egress));
    println!(
        "shared: 1000 endpoints, 10 x 256 ingress rules, 10000 CIDRs: parse {parsed:?}, \
         compile {took:?}; {stats:?}"
    );
    for _ in 0..2000 {
        let p = random_packet(&mut rng);
        let e = rng.below(1000);
        assert_eq!(
            compiled(&compiled_policy, e, Ingress, &p),
            naive(&c, e, Ingress, &p)
        );
    }

    // Worst case for sharing: every endpoint its own policy of 256 rules, each rule set also
    // folding in a 1,000-network set.
    let mut text = String::new();
    for chunk in 0..100 {
        let _ = write!(text, "ipset shared0");
        for i in 0..10 {
            let n = (chunk * 10 + i) as u32;
            let _ = write!(text, " 172.{}.{}.0/24", 16 + n / 256, n % 256);
        }
        text.push('\n');
    }
    for e in 0..1000 {
        let _ = writeln!(text, "interface w{e} role=workload labels=id:w{e}");
        let _ = writeln!(text, "policy w{e} selector=\"id == 'w{e}'\"");
        let _ = writeln!(text, "rule w{e} ingress deny remote=set:shared0");
        for _ in 1..MAX_RULES {
            rule(&mut rng, &format!("w{e}"), ("shared", 1), &mut text);
        }
    }
    let c = config(&text);
    let start = Instant::now();
    let compiled_policy = compile(&c).unwrap();
    let took = start.elapsed();
    let stats = compiled_policy.stats();
    assert_eq!(stats.rule_sets, 1000);
    println!(
        "distinct: 1000 endpoints x 256 rules, own rule set each: compile {took:?}; {stats:?}"
    );
    for _ in 0..100 {
        let p = random_packet(&mut rng);
        let e = rng.below(1000);
        assert_eq!(
            compiled(&compiled_policy, e, Ingress, &p),
            naive(&c, e, Ingress, &p)
        );
    }
}
