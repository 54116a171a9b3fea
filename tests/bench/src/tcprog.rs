//! tc-prog: a micro-measurement of weir's TC programs, one program run at a time. A routed node
//! (`weir::topology::Routed`) gets weir's real embedded TC object through the library
//! (`fastpath=off`, as B2's main weir variant) with a policy of N ingress rules on workload w1,
//! one echoed UDP datagram from the outside makes the flow established, and then each path is
//! timed with `BPF_PROG_TEST_RUN` (`repeat` runs on one skb; the kernel reports the average):
//!
//! - w1's veth `tc_egress`: w1's ingress policy on an established datagram (B2's policy hook);
//! - the uplink's `tc_ingress`: no policy, fast path off (B2's other program per datagram);
//! - w1's veth `tc_ingress` on the reply: w1's egress hook, an endpoint too (tracked, no
//!   rules: the conntrack hit, the fast path entry's check and the policy);
//! - the uplink's `tc_egress` on the reply: no policy;
//! - an empty SCHED_CLS program: the test run's own floor;
//! - w1's veth `tc_egress` on **new flows**: one test run per datagram (`repeat` 1), each from
//!   a source address and port never used before, so each misses conntrack, is classified
//!   (the matching rule is the last) and gets a conntrack entry; with the empty program run the
//!   same way as its floor (a single run's duration includes reading the clock around it).
//!
//! The `__sk_buff` context passed in names the interface (`ifindex`): the kernel looks it up in
//! the caller's network namespace and runs `eth_type_trans` on the frame, so the runs happen in
//! the node's host namespace and the frames carry an Ethernet header. The policy path's runs are
//! checked against weir's `established` outcome counter. Nothing here asserts a timing.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use weir::sys::bpf::{self, consts, LinkTarget, TestRun};
use weir::topology::{Leg, Routed};

use crate::flags::Flags;
use crate::report::med;

const DEFAULT_RULES: usize = 10;
const DEFAULT_REPEAT: u32 = 200_000;
const DEFAULT_ROUNDS: usize = 7;
/// weir's limit of rules per endpoint and direction.
const MAX_RULES: usize = 256;
/// w1's receiver port (the rules' dport) and the outside socket's port.
const PORT: u16 = 7000;
const EST_PORT: u16 = 7001;
/// The matching rule's CIDR (the outside network); the others never match.
const MATCH_CIDR: &str = "198.18.3.0/24";
/// `TC_ACT_UNSPEC` as the test run reports it (u32).
const UNSPEC: u32 = u32::MAX;
const PAYLOAD: &[u8] = b"weir-tc-prog";

/// Command-line options of `tc-prog`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Ingress rules on w1's policy (the matching one last).
    pub rules: usize,
    /// Runs per test run.
    pub repeat: u32,
    /// Interleaved rounds (one test run per path each).
    pub rounds: usize,
}

impl Options {
    /// Parses `[--rules N] [--repeat N] [--rounds N]`.
    ///
    /// # Errors
    /// A usage error, as a message.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut o = Self {
            rules: DEFAULT_RULES,
            repeat: DEFAULT_REPEAT,
            rounds: DEFAULT_ROUNDS,
        };
        let mut f = Flags::new("tc-prog", args);
        while let Some(a) = f.next_flag() {
            match a {
                "--rules" => o.rules = f.number(a)? as usize,
                "--repeat" => o.repeat = u32::try_from(f.number(a)?).unwrap_or(u32::MAX),
                "--rounds" => o.rounds = f.number(a)? as usize,
                other => return Err(f.unknown(other)),
            }
        }
        if !(1..=MAX_RULES).contains(&o.rules) {
            return Err(format!(
                "tc-prog: --rules must be between 1 and {MAX_RULES}"
            ));
        }
        if !(1000..=10_000_000).contains(&o.repeat) {
            return Err("tc-prog: --repeat must be between 1000 and 10000000".into());
        }
        if o.rounds == 0 {
            return Err("tc-prog: --rounds must be at least 1".into());
        }
        Ok(o)
    }
}

/// weir's config: w1 selected by one policy with `n` ingress rules (the match last), every
/// interface TC only with the fast path off.
fn config(legs: [&Leg; 3], n: usize) -> String {
    let [w1, w2, out] = legs;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "interface {} role=workload xdp=off addrs={},{} labels=app:tp fastpath=off",
        w1.host_if, w1.v4, w1.v6
    );
    let _ = writeln!(
        t,
        "interface {} role=workload xdp=off addrs={},{} fastpath=off",
        w2.host_if, w2.v4, w2.v6
    );
    let _ = writeln!(t, "interface {} xdp=off fastpath=off", out.host_if);
    t += "policy tp selector=\"app == 'tp'\"\n";
    for i in 0..n - 1 {
        let _ = writeln!(
            t,
            "rule tp ingress allow proto=udp dport={PORT} remote={}",
            crate::b4::cidr(i)
        );
    }
    let _ = writeln!(
        t,
        "rule tp ingress allow proto=udp dport={PORT} remote={MATCH_CIDR}"
    );
    t
}

/// An Ethernet frame with an IPv4/UDP datagram (UDP checksum 0: none).
fn frame(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f.extend(crate::b2::ipv4_udp(src, sport, dst, dport, PAYLOAD));
    f
}

/// The head of a `struct __sk_buff` up to and including `ifindex` (offset 40) and `tc_index`:
/// the kernel zero-fills the rest and accepts a shorter context.
fn skb_ctx(ifindex: u32) -> [u8; 48] {
    let mut c = [0u8; 48];
    c[40..44].copy_from_slice(&ifindex.to_ne_bytes());
    c
}

/// One measured path.
struct Path {
    name: &'static str,
    prog: OwnedFd,
    ifindex: u32,
    frame: Vec<u8>,
    ns: Vec<f64>,
}

impl Path {
    fn run(&mut self, repeat: u32) -> Result<(), String> {
        let ctx = skb_ctx(self.ifindex);
        let r = bpf::prog_test_run(
            self.prog.as_fd(),
            &TestRun {
                data_in: &self.frame,
                ctx_in: Some(&ctx),
                repeat,
                ..Default::default()
            },
        )
        .map_err(|e| format!("{}: {e}", self.name))?;
        if r.retval != UNSPEC {
            return Err(format!(
                "{}: verdict {} where TC_ACT_UNSPEC was expected",
                self.name, r.retval as i32
            ));
        }
        self.ns.push(f64::from(r.duration_ns));
        Ok(())
    }
}

/// New flows: one test run per datagram, each from an (address, port) of the matching CIDR
/// never used before.
struct Fresh {
    name: &'static str,
    prog: OwnedFd,
    ifindex: u32,
    dst: Ipv4Addr,
    /// Flows made so far (the next source).
    next: u32,
    ns: Vec<f64>,
    /// The verdict wanted.
    verdict: u32,
}

impl Fresh {
    /// The `n`-th new source: 198.18.3.10 .. .249, ports 1024 .. 65535.
    fn source(n: u32) -> (Ipv4Addr, u16) {
        let ports = 65535 - 1024 + 1;
        let host = 10 + (n / ports) % 240;
        (
            Ipv4Addr::new(198, 18, 3, host as u8),
            (1024 + n % ports) as u16,
        )
    }

    /// `runs` single test runs; records their mean duration.
    fn run(&mut self, runs: u32) -> Result<(), String> {
        let ctx = skb_ctx(self.ifindex);
        let mut total = 0u64;
        for _ in 0..runs {
            let (src, sport) = Self::source(self.next);
            self.next += 1;
            let frame = frame(src, sport, self.dst, PORT);
            let r = bpf::prog_test_run(
                self.prog.as_fd(),
                &TestRun {
                    data_in: &frame,
                    ctx_in: Some(&ctx),
                    repeat: 1,
                    ..Default::default()
                },
            )
            .map_err(|e| format!("{}: {e}", self.name))?;
            if r.retval != self.verdict {
                return Err(format!(
                    "{}: verdict {} where {} was expected",
                    self.name, r.retval as i32, self.verdict as i32
                ));
            }
            total += u64::from(r.duration_ns);
        }
        self.ns.push(total as f64 / f64::from(runs.max(1)));
        Ok(())
    }
}

/// New flows per round: enough for a stable mean, few enough to stay far below conntrack's
/// capacity over the rounds.
const NEW_PER_ROUND: u32 = 5000;

/// weir's policy outcome packets named `outcome` (pol_stats, all CPUs).
fn outcome(node: &Routed, outcome: &str) -> Result<u64, String> {
    let dp = weir::Dataplane::new(node.pin_dir.clone());
    let st = node
        .run_in(&node.host, || dp.status())
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("weir status: {e}"))?;
    Ok(st
        .policy_stats
        .iter()
        .filter(|(n, _)| n == outcome)
        .map(|(_, c)| c.packets)
        .sum())
}

/// One datagram from `out` to w1 and w1's answer: the flow is established in weir's conntrack.
fn echo(node: &Routed) -> Result<(), String> {
    let (w1, out) = (node.w1.v4, node.out.v4);
    let rx = node
        .run_in(&node.w1.netns, || {
            UdpSocket::bind(SocketAddrV4::new(w1, PORT))
        })
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("binding w1's receiver: {e}"))?;
    let tx = node
        .run_in(&node.out.netns, || {
            UdpSocket::bind(SocketAddrV4::new(out, EST_PORT))
        })
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("binding out's socket: {e}"))?;
    for s in [&rx, &tx] {
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    }
    let mut buf = [0u8; 64];
    tx.send_to(b"tc-prog echo", SocketAddrV4::new(w1, PORT))
        .map_err(|e| format!("echo send: {e}"))?;
    let (len, from) = rx
        .recv_from(&mut buf)
        .map_err(|e| format!("no echo request at w1: {e}"))?;
    rx.send_to(&buf[..len], from)
        .map_err(|e| format!("echo reply: {e}"))?;
    tx.recv_from(&mut buf)
        .map_err(|e| format!("no echo reply in out: {e}"))?;
    Ok(())
}

/// The program attached at `attach` (TCX) of `ifindex`, checked by name.
fn attached(ifindex: u32, attach: u32, want: &str) -> Result<OwnedFd, String> {
    let q = bpf::prog_query(LinkTarget::Ifindex(ifindex), attach, 0).map_err(|e| e.to_string())?;
    for id in q.prog_ids {
        let fd = bpf::prog_fd_by_id(id).map_err(|e| e.to_string())?;
        let info = bpf::prog_info(fd.as_fd()).map_err(|e| e.to_string())?;
        if info.name == want {
            return Ok(fd);
        }
    }
    Err(format!("no {want} attached to ifindex {ifindex}"))
}

/// Runs the measurement and prints ns per run for each path.
///
/// # Errors
/// Setting up the node, loading weir, a test run, or a wrong verdict.
pub fn run(opts: &Options) -> Result<(), String> {
    let node = Routed::new("tp").map_err(|e| format!("building the node: {e}"))?;
    let text = config(node.legs(), opts.rules);
    let cfg = weir::config::parse("tc-prog.conf", &text).map_err(|e| e.to_string())?;
    let dp = weir::Dataplane::new(node.pin_dir.clone());
    node.run_in(&node.host, || dp.load(&cfg))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("weir load: {e}"))?;
    echo(&node)?;

    let (w1_if, out_if) = (node.w1.host_if.clone(), node.out.host_if.clone());
    let (w1, out) = (node.w1.v4, node.out.v4);
    let inbound = frame(out, EST_PORT, w1, PORT);
    let reply = frame(w1, PORT, out, EST_PORT);
    let (repeat, rounds) = (opts.repeat, opts.rounds);
    type Measured = (Vec<Path>, Vec<Fresh>, [u64; 2], [u64; 2]);
    let (paths, fresh, before, after) = node
        .run_in(&node.host, || -> Result<Measured, String> {
            let mut nl = weir::sys::netlink::Netlink::open().map_err(|e| e.to_string())?;
            let mut index = |name: &str| -> Result<u32, String> {
                nl.link_index(name)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("{name} is gone"))
            };
            let (w1x, outx) = (index(&w1_if)?, index(&out_if)?);
            let (ing, eg) = (consts::BPF_TCX_INGRESS, consts::BPF_TCX_EGRESS);
            let empty = bpf::load_return_program(
                "tc_prog_empty",
                consts::BPF_PROG_TYPE_SCHED_CLS,
                None,
                -1,
            )
            .map_err(|e| e.to_string())?;
            let mut paths = vec![
                Path {
                    name: "empty SCHED_CLS program (test-run floor)",
                    prog: empty,
                    ifindex: outx,
                    frame: inbound.clone(),
                    ns: Vec::new(),
                },
                Path {
                    name: "w1 veth tc_egress: ingress policy, established UDP",
                    prog: attached(w1x, eg, "tc_egress")?,
                    ifindex: w1x,
                    frame: inbound.clone(),
                    ns: Vec::new(),
                },
                Path {
                    name: "uplink tc_ingress: no policy, fast path off",
                    prog: attached(outx, ing, "tc_ingress")?,
                    ifindex: outx,
                    frame: inbound.clone(),
                    ns: Vec::new(),
                },
                Path {
                    name: "w1 veth tc_ingress: egress endpoint, no rules, reply",
                    prog: attached(w1x, ing, "tc_ingress")?,
                    ifindex: w1x,
                    frame: reply.clone(),
                    ns: Vec::new(),
                },
                Path {
                    name: "uplink tc_egress: no policy, reply",
                    prog: attached(outx, eg, "tc_egress")?,
                    ifindex: outx,
                    frame: reply.clone(),
                    ns: Vec::new(),
                },
            ];
            let fresh_empty = bpf::load_return_program(
                "tc_prog_empty",
                consts::BPF_PROG_TYPE_SCHED_CLS,
                None,
                -1,
            )
            .map_err(|e| e.to_string())?;
            let mut fresh = vec![
                Fresh {
                    name: "empty SCHED_CLS program, single runs (floor)",
                    prog: fresh_empty,
                    ifindex: w1x,
                    dst: w1,
                    next: 0,
                    ns: Vec::new(),
                    verdict: UNSPEC,
                },
                Fresh {
                    name: "w1 veth tc_egress: new UDP flow, allowed",
                    prog: attached(w1x, eg, "tc_egress")?,
                    ifindex: w1x,
                    dst: w1,
                    next: 0,
                    ns: Vec::new(),
                    verdict: UNSPEC,
                },
            ];
            // Warm-up (also the checks' baselines).
            for p in &mut paths {
                p.run(repeat.min(10_000))?;
                p.ns.clear();
            }
            for f in &mut fresh {
                f.run(100)?;
                f.ns.clear();
            }
            let before = [
                outcome(&node, "established")?,
                outcome(&node, "new-allowed")?,
            ];
            for _ in 0..rounds {
                for p in &mut paths {
                    p.run(repeat)?;
                }
                for f in &mut fresh {
                    f.run(NEW_PER_ROUND)?;
                }
            }
            let after = [
                outcome(&node, "established")?,
                outcome(&node, "new-allowed")?,
            ];
            Ok((paths, fresh, before, after))
        })
        .map_err(|e| e.to_string())??;

    // Both of w1's hooks are endpoints (a policy selecting w1 tracks both directions).
    let want = 2 * u64::from(repeat) * rounds as u64;
    let counted = after[0] - before[0];
    let want_new = u64::from(NEW_PER_ROUND) * rounds as u64;
    let counted_new = after[1] - before[1];
    println!(
        "tc-prog: {} rules on w1's ingress, {rounds} rounds x {repeat} runs per path \
         (ns per run: median, min, max)",
        opts.rules
    );
    for p in &paths {
        let min = p.ns.iter().copied().fold(f64::INFINITY, f64::min);
        let max = p.ns.iter().copied().fold(0.0, f64::max);
        println!(
            "  {:<52} {:>6.0} {:>6.0} {:>6.0}",
            p.name,
            med(&p.ns),
            min,
            max
        );
    }
    let est = med(&paths[1].ns) + med(&paths[2].ns);
    println!(
        "  {:<52} {est:>6.0}",
        "B2 established datagram (uplink in + w1 out)"
    );
    println!(
        "new flows: {rounds} rounds x {NEW_PER_ROUND} single runs per path (mean ns per run: \
         median, min, max over rounds)"
    );
    for f in &fresh {
        let min = f.ns.iter().copied().fold(f64::INFINITY, f64::min);
        let max = f.ns.iter().copied().fold(0.0, f64::max);
        println!(
            "  {:<52} {:>6.0} {:>6.0} {:>6.0}",
            f.name,
            med(&f.ns),
            min,
            max
        );
    }
    let added = med(&fresh[1].ns) - med(&fresh[0].ns) + med(&paths[2].ns) - med(&paths[0].ns);
    println!(
        "  {:<52} {added:>6.0}",
        "B2 new flow, over the floors (uplink in + w1 out)"
    );
    println!("  established outcomes counted: {counted} (runs on w1's two hooks: {want})");
    println!("  new outcomes counted: {counted_new} (new-flow runs: {want_new})");
    if counted < want {
        return Err(format!(
            "w1's hooks counted {counted} established packets for {want} runs: \
             the conntrack entry was not used on every run"
        ));
    }
    if counted_new < want_new {
        return Err(format!(
            "w1's tc_egress counted {counted_new} new flows for {want_new} runs: \
             some datagram was not a new flow"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options() {
        let o = Options::parse(&args(&["--rules", "250", "--repeat", "100_000"])).unwrap();
        assert_eq!(
            (o.rules, o.repeat, o.rounds),
            (250, 100_000, DEFAULT_ROUNDS)
        );
        assert!(Options::parse(&args(&["--rules", "0"])).is_err());
        assert!(Options::parse(&args(&["--rules", "257"])).is_err());
        assert!(Options::parse(&args(&["--repeat", "10"])).is_err());
        assert!(Options::parse(&args(&["--bogus"])).is_err());
    }

    #[test]
    fn frames_are_well_formed() {
        let f = frame(
            Ipv4Addr::new(198, 18, 3, 2),
            EST_PORT,
            Ipv4Addr::new(198, 18, 1, 2),
            PORT,
        );
        assert_eq!(f.len(), 14 + 20 + 8 + PAYLOAD.len());
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(crate::b2::csum(&f[14..34]), 0, "IPv4 header checksum");
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), PORT);
        assert_eq!(skb_ctx(7)[40..44], 7u32.to_ne_bytes());
    }

    #[test]
    fn new_flow_sources_never_repeat_and_stay_in_the_matching_cidr() {
        let all = DEFAULT_ROUNDS as u32 * NEW_PER_ROUND + 1000;
        let mut seen = std::collections::HashSet::new();
        for n in 0..all {
            let (a, p) = Fresh::source(n);
            assert_eq!(a.octets()[..3], [198, 18, 3]);
            assert!(p >= 1024);
            assert!(seen.insert((a, p)), "{n}");
        }
        assert_eq!(Fresh::source(64512), (Ipv4Addr::new(198, 18, 3, 11), 1024));
    }

    #[test]
    fn config_parses_with_the_match_last() {
        let leg = |name: &str, net: u8| Leg {
            netns: format!("ns-{name}"),
            host_if: name.to_owned(),
            v4: Ipv4Addr::new(198, 18, net, 2),
            v6: format!("2001:db8:{net}::2").parse().unwrap(),
            gw4: Ipv4Addr::new(198, 18, net, 1),
            gw6: format!("2001:db8:{net}::1").parse().unwrap(),
        };
        let (w1, w2, out) = (leg("a", 1), leg("b", 2), leg("c", 3));
        let t = config([&w1, &w2, &out], 10);
        weir::config::parse("tc-prog.conf", &t).unwrap();
        let rules: Vec<&str> = t.lines().filter(|l| l.starts_with("rule ")).collect();
        assert_eq!(rules.len(), 10);
        assert!(rules[9].ends_with(MATCH_CIDR));
        assert!(t.contains("fastpath=off"));
    }
}
