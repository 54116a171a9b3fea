//! B2: network policy at TC, cost per new flow and per established packet, with N = 10 → 10k
//! rules / CIDRs on one endpoint's ingress. Every variant has a routed node of its own
//! (`weir::topology::Routed`: a host namespace forwarding between workloads w1, w2 and an
//! outside network), and the traffic goes from the outside namespace to w1 through the host:
//!
//! - **none**: no programs, no rules (the baseline every cost is measured against);
//! - **weir**: weir's TC programs with a policy on w1's ingress (fast path off, so the packets
//!   take the same kernel path as the competitors'), min(N, 250) rules, the last one over an
//!   IP set of the remaining CIDRs when N > 250, the matching CIDR last;
//! - **weir, fast path on**: the same with weir's default `fastpath=on`;
//! - **iptables chain**: FORWARD → a per-endpoint chain: conntrack `RELATED,ESTABLISHED` accept
//!   first, then N `-s CIDR -p udp --dport P -j ACCEPT` rules, the matching one last, then DROP;
//! - **iptables + ipset**: the same chain with one rule matching a `hash:net` set of N CIDRs;
//! - **nft**: a forward chain with `ct state established,related accept` and one rule over a
//!   concatenated `ipv4_addr . inet_service` interval set of N elements, then drop.
//!
//! A measurement is a paced burst of UDP datagrams sent from one thread through a raw socket
//! in the outside namespace: **new flows** (every datagram from a source address and port never
//! used before) or **established** (one flow, echoed by w1 first so both conntracks have it).
//! The cost is the sending thread's CPU time per datagram minus the no-filter node's in the
//! same round: veth hands packets on through the per-CPU backlog, whose softirq runs when the
//! sender re-enables bottom halves, so the host's forwarding (TC, netfilter, conntrack) and the
//! delivery to w1 run in that thread's context, and without IRQ time accounting (this kernel)
//! their time is the thread's. The machine's busy time from /proc/stat and weir's programs'
//! own time (bpf_stats) are cross-checks.

use std::fmt::Write as _;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::resource::UsageWho;
use nix::sys::socket::{
    self as sock, setsockopt, sockopt, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType,
    SockaddrIn,
};
use weir::sys::bpf::{self, consts, LinkTarget};
use weir::topology::Routed;

use crate::env::{self, Facts};
use crate::flags::Flags;
use crate::proc::output_of;
use crate::report::{self, fmt_n, med, show, show_x, verdict};

/// The heading of B2's section.
pub const HEADING: &str = "## B2: TC policy: cost per new flow and per established packet";

const DEFAULT_ROUNDS: usize = 7;
const DEFAULT_SCALES: [usize; 4] = [10, 100, 1000, 10_000];
const DEFAULT_DATAGRAMS: usize = 4000;
/// The port w1's receiver listens on, and the rules' `dport`.
const PORT: u16 = 7000;
/// The established flow's source port (a socket in `out` takes the echo).
const EST_PORT: u16 = 7001;
/// The CIDR that matches the traffic (the outside network); the others never do.
const MATCH_CIDR: &str = "198.18.3.0/24";
/// weir's rules per endpoint and direction are limited to 256; the benchmark uses at most this.
const WEIR_MAX_RULES: usize = 250;
/// Datagrams per second of a burst (pacing): a modest rate on a shared 2-core machine.
const RATE: f64 = 20_000.0;
/// Datagrams per chunk: the nodes take turns chunk by chunk.
const CHUNK: usize = 100;
/// The least number of datagrams of a burst that is cut short for a slow variant.
const MIN_DATAGRAMS: usize = 200;
/// netfilter's unreplied-UDP timeout in the competitors' nodes (s): conntrack's table size is
/// one global limit (262,144 here), so new-flow entries must leave quickly.
const NF_UDP_TIMEOUT: u32 = 10;
/// /proc/stat counts in USER_HZ, which is 100 on every Linux ABI.
const USER_HZ: f64 = 100.0;
/// The new-flow cost ratio `N = max ÷ N = min` at or under which weir counts as flat.
const FLAT_GOAL: f64 = 1.5;

// ---------------------------------------------------------------------------------------------
// Options

/// Command-line options of `b2`.
#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: usize,
    pub scales: Vec<usize>,
    /// Datagrams per burst.
    pub datagrams: usize,
    pub write: bool,
    /// Hidden `--dev`: fewer rounds allowed, nothing written.
    pub dev: bool,
}

impl Options {
    /// Parses `[--rounds N] [--scales A,B,..] [--datagrams N] [--no-write]` (and `--dev`).
    ///
    /// # Errors
    /// A usage error, as a message.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut o = Self {
            rounds: DEFAULT_ROUNDS,
            scales: DEFAULT_SCALES.to_vec(),
            datagrams: DEFAULT_DATAGRAMS,
            write: true,
            dev: false,
        };
        let mut f = Flags::new("b2", args);
        while let Some(a) = f.next_flag() {
            match a {
                "--rounds" => o.rounds = f.number(a)? as usize,
                "--scales" => o.scales = f.numbers(a)?,
                "--datagrams" => o.datagrams = f.number(a)? as usize,
                "--no-write" => o.write = false,
                // Development runs: any number of rounds, never written to BENCHMARKS.md.
                "--dev" => o.dev = true,
                other => return Err(f.unknown(other)),
            }
        }
        if o.dev {
            o.write = false;
        }
        let min_rounds = if o.dev { 1 } else { 7 };
        if o.rounds < min_rounds {
            return Err(format!("b2: --rounds must be at least {min_rounds}"));
        }
        if o.scales.is_empty() || o.scales.iter().any(|&n| !(1..=100_000).contains(&n)) {
            return Err("b2: --scales must be between 1 and 100000".into());
        }
        if !(MIN_DATAGRAMS..=1_000_000).contains(&o.datagrams) {
            return Err(format!(
                "b2: --datagrams must be between {MIN_DATAGRAMS} and 1000000"
            ));
        }
        Ok(o)
    }

    /// The command line that reproduces this run.
    pub fn command(&self) -> String {
        let mut c = format!(
            "cargo run --release -p weir-bench -- b2 --rounds {}",
            self.rounds
        );
        if self.scales != DEFAULT_SCALES {
            let s: Vec<String> = self.scales.iter().map(|n| n.to_string()).collect();
            c += &format!(" --scales {}", s.join(","));
        }
        if self.datagrams != DEFAULT_DATAGRAMS {
            c += &format!(" --datagrams {}", self.datagrams);
        }
        c
    }
}

// ---------------------------------------------------------------------------------------------
// Rules, sets and packets (pure)

/// The N CIDRs of scale `n`: `n - 1` disjoint /30s in 10.0.0.0/8 that never match, then the
/// matching one.
fn entries(n: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n.saturating_sub(1)).map(crate::b4::cidr).collect();
    v.push(MATCH_CIDR.to_owned());
    v
}

/// What weir's config needs to know of a node.
struct WeirIfs<'a> {
    w1: &'a str,
    w1_addrs: String,
    w2: &'a str,
    w2_addrs: String,
    out: &'a str,
}

/// weir's config: w1 labelled and selected by one policy with min(n, 250) ingress rules, the
/// last one over the IP set in `set_path` (the remaining CIDRs) when n > 250; the matching CIDR
/// is last. Returns the config and the set file's lines (empty when there is no set).
fn weir_config(ifs: &WeirIfs<'_>, n: usize, fastpath: bool, set_path: &Path) -> (String, String) {
    let fp = if fastpath { "on" } else { "off" };
    let mut t = String::new();
    let _ = writeln!(
        t,
        "interface {} role=workload xdp=off addrs={} labels=app:b2 fastpath={fp}",
        ifs.w1, ifs.w1_addrs
    );
    let _ = writeln!(
        t,
        "interface {} role=workload xdp=off addrs={} fastpath={fp}",
        ifs.w2, ifs.w2_addrs
    );
    let _ = writeln!(t, "interface {} xdp=off fastpath={fp}", ifs.out);
    t += "conntrack capacity entries=262144\n";
    t += "classifier capacity chunks=65536\n";
    let all = entries(n);
    let mut set = String::new();
    let single = if n <= WEIR_MAX_RULES {
        n
    } else {
        WEIR_MAX_RULES - 1
    };
    if n > WEIR_MAX_RULES {
        for c in &all[single..] {
            set += c;
            set.push('\n');
        }
        let _ = writeln!(t, "ipset-file rest {}", set_path.display());
    }
    t += "policy b2 selector=\"app == 'b2'\"\n";
    for c in &all[..single] {
        let _ = writeln!(t, "rule b2 ingress allow proto=udp dport={PORT} remote={c}");
    }
    if n > WEIR_MAX_RULES {
        let _ = writeln!(
            t,
            "rule b2 ingress allow proto=udp dport={PORT} remote=set:rest"
        );
    }
    (t, set)
}

/// The iptables chain variant (an `iptables-restore` file): FORWARD → `b2-ep` for packets to
/// `ep_if`; conntrack first, n rules with the matching one last, then DROP.
fn iptables_chain(ep_if: &str, n: usize) -> String {
    let mut t = String::with_capacity(n * 64 + 300);
    t += "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n";
    t += ":b2-ep - [0:0]\n";
    let _ = writeln!(t, "-A FORWARD -o {ep_if} -j b2-ep");
    t += "-A b2-ep -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n";
    for c in entries(n) {
        let _ = writeln!(t, "-A b2-ep -s {c} -p udp -m udp --dport {PORT} -j ACCEPT");
    }
    t += "-A b2-ep -j DROP\nCOMMIT\n";
    t
}

/// The ipset variant's chain: conntrack first, one rule over the set `b2`, then DROP.
fn iptables_ipset(ep_if: &str) -> String {
    let mut t = String::new();
    t += "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n";
    t += ":b2-ep - [0:0]\n";
    let _ = writeln!(t, "-A FORWARD -o {ep_if} -j b2-ep");
    t += "-A b2-ep -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n";
    let _ = writeln!(
        t,
        "-A b2-ep -p udp -m udp --dport {PORT} -m set --match-set b2 src -j ACCEPT"
    );
    t += "-A b2-ep -j DROP\nCOMMIT\n";
    t
}

/// `ipset restore` input: the `hash:net` set `b2` with the n CIDRs.
fn ipset_restore(n: usize) -> String {
    let mut t = String::with_capacity(n * 24 + 100);
    let _ = writeln!(
        t,
        "create b2 hash:net family inet hashsize 1024 maxelem {}",
        (n + 1024).next_power_of_two()
    );
    for c in entries(n) {
        let _ = writeln!(t, "add b2 {c}");
    }
    t
}

/// The nft variant: a forward chain with conntrack first and one rule over a concatenated
/// `ipv4_addr . inet_service` interval set of n elements, then drop.
fn nft_table(ep_if: &str, n: usize) -> String {
    let mut t = String::with_capacity(n * 24 + 400);
    t += "table ip b2 {\n\tset allow {\n\t\ttype ipv4_addr . inet_service\n\t\tflags interval\n";
    t += "\t\telements = { ";
    for (i, c) in entries(n).iter().enumerate() {
        if i > 0 {
            t += ", ";
        }
        let _ = write!(t, "{c} . {PORT}");
    }
    t += " }\n\t}\n";
    t += "\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n";
    let _ = writeln!(
        t,
        "\t\toifname \"{ep_if}\" ct state established,related accept"
    );
    let _ = writeln!(
        t,
        "\t\toifname \"{ep_if}\" meta l4proto udp ip saddr . udp dport @allow accept"
    );
    let _ = writeln!(t, "\t\toifname \"{ep_if}\" drop");
    t += "\t}\n}\n";
    t
}

/// The source of new flow `k`: 240 addresses of the outside network × 60,000 ports, so that
/// no flow repeats within 14.4 million.
fn flow_source(k: u64) -> (Ipv4Addr, u16) {
    let addr = 10 + (k / 60_000) % 240;
    let port = 1024 + k % 60_000;
    (Ipv4Addr::new(198, 18, 3, addr as u8), port as u16)
}

const PAYLOAD: &[u8] = b"weir-b2";
const PACKET_LEN: usize = 20 + 8 + PAYLOAD.len();

/// The Internet checksum of `b`.
pub(crate) fn csum(b: &[u8]) -> u16 {
    let mut s: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// An IPv4/UDP datagram for a raw `IPPROTO_RAW` socket (the UDP checksum is left 0: none).
fn udp_packet(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> [u8; PACKET_LEN] {
    let mut p = [0u8; PACKET_LEN];
    p.copy_from_slice(&ipv4_udp(src, sport, dst, dport, PAYLOAD));
    p
}

/// An IPv4 (DF, TTL 64) / UDP datagram carrying `payload`, UDP checksum 0 (none). Also the
/// packet `tc-prog` runs its programs on.
pub(crate) fn ipv4_udp(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let len = 20 + 8 + payload.len();
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let c = csum(&p[..20]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

/// Busy ticks (user + nice + system + irq + softirq + steal) of the `cpu ` line of /proc/stat.
fn parse_busy(text: &str) -> Result<u64, String> {
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or("/proc/stat has no 'cpu ' line")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| format!("/proc/stat: malformed line '{line}'"))?;
    if f.len() < 4 {
        return Err(format!("/proc/stat: too few fields in '{line}'"));
    }
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    Ok(at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

/// Per-rule packet counts of one chain in `iptables -L CHAIN -v -x -n` output, in rule order.
fn chain_packets(listing: &str) -> Vec<u64> {
    listing
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .collect()
}

/// A `pol_stats` outcome's packets in weir's status.
fn outcome(st: &weir::status::Status, name: &str) -> u64 {
    st.policy_stats
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, c)| c.packets)
        .sum()
}

/// How many datagrams a burst of `v` at scale `n` sends: the iptables chain's new flows walk
/// all n rules, so above 1k its burst shrinks with n (its per-datagram cost is what is kept).
fn datagrams(base: usize, v: V, n: usize, kind: Kind) -> usize {
    if v == V::Chain && kind == Kind::New && n > 1000 {
        (base * 1000 / n).max(MIN_DATAGRAMS)
    } else {
        base
    }
}

// ---------------------------------------------------------------------------------------------
// Variants and measurements

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V {
    None,
    Weir,
    WeirFast,
    Chain,
    Ipset,
    Nft,
}

/// The variants with a node per scale (`None` has one node for all).
const FILTERS: [V; 5] = [V::Weir, V::WeirFast, V::Chain, V::Ipset, V::Nft];
const VARIANTS: [V; 6] = [V::None, V::Weir, V::WeirFast, V::Chain, V::Ipset, V::Nft];

impl V {
    fn name(self) -> &'static str {
        match self {
            V::None => "no filter",
            V::Weir => "weir",
            V::WeirFast => "weir, fast path on",
            V::Chain => "iptables chain",
            V::Ipset => "iptables + ipset",
            V::Nft => "nft concat set",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            V::None => "b2n",
            V::Weir => "b2w",
            V::WeirFast => "b2f",
            V::Chain => "b2c",
            V::Ipset => "b2s",
            V::Nft => "b2t",
        }
    }

    fn idx(self) -> usize {
        VARIANTS.iter().position(|&x| x == self).unwrap_or(0)
    }

    fn is_weir(self) -> bool {
        matches!(self, V::Weir | V::WeirFast)
    }

    fn netfilter(self) -> bool {
        matches!(self, V::Chain | V::Ipset | V::Nft)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    New,
    Est,
}

const KINDS: [Kind; 2] = [Kind::New, Kind::Est];

impl Kind {
    fn idx(self) -> usize {
        match self {
            Kind::New => 0,
            Kind::Est => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::New => "new flows",
            Kind::Est => "established",
        }
    }
}

/// One burst, per datagram.
#[derive(Debug, Clone, Copy)]
struct Meas {
    /// The sending thread's CPU time (ns).
    cpu_ns: f64,
    /// The machine's busy time (ns, /proc/stat).
    busy_ns: f64,
}

/// The calling thread's CPU time. getrusage reads `sum_exec_runtime`, which for the running
/// thread is only brought up to date at a tick or a reschedule (4 ms granularity here):
/// sched_yield updates it first, so the reading is exact to the µs.
fn thread_cpu_ns() -> Result<u64, String> {
    std::thread::yield_now();
    crate::proc::rusage_ns(UsageWho::RUSAGE_THREAD)
}

fn busy_ticks() -> Result<u64, String> {
    let t =
        std::fs::read_to_string("/proc/stat").map_err(|e| format!("reading /proc/stat: {e}"))?;
    parse_busy(&t)
}

fn ns_exec(ns: &str, argv: &[&str], stdin: Option<&Path>) -> Result<String, String> {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(argv);
    if let Some(p) = stdin {
        c.stdin(File::open(p).map_err(|e| format!("{}: {e}", p.display()))?);
    }
    let out = c
        .output()
        .map_err(|e| format!("running {} in {ns}: {e}", argv.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` in {ns} failed ({}): {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One variant's node at one scale, with its sockets.
struct Node {
    v: V,
    n: usize,
    /// Raw socket in `out` (IPPROTO_RAW: the header is ours).
    raw: OwnedFd,
    /// w1's receiver, bound to PORT.
    rx: UdpSocket,
    /// `out`'s socket of the established flow (takes the echo).
    est: UdpSocket,
    next_flow: u64,
    node: Routed,
}

impl Node {
    fn build(v: V, n: usize, dir: &Path) -> Result<Self, String> {
        let node = Routed::new(v.tag())
            .map_err(|e| format!("building the {} node (N = {n}): {e}", v.name()))?;
        let host = node.host.clone();
        let ep = node.w1.host_if.clone();
        let file = |name: &str, text: &str| -> Result<PathBuf, String> {
            let p = dir.join(format!("{host}-{name}"));
            std::fs::write(&p, text).map_err(|e| format!("writing {}: {e}", p.display()))?;
            Ok(p)
        };
        match v {
            V::None => {}
            V::Weir | V::WeirFast => {
                let set_path = dir.join(format!("{host}-rest.txt"));
                let addrs = |l: &weir::topology::Leg| format!("{},{}", l.v4, l.v6);
                let ifs = WeirIfs {
                    w1: &node.w1.host_if,
                    w1_addrs: addrs(&node.w1),
                    w2: &node.w2.host_if,
                    w2_addrs: addrs(&node.w2),
                    out: &node.out.host_if,
                };
                let (text, set) = weir_config(&ifs, n, v == V::WeirFast, &set_path);
                std::fs::write(&set_path, set)
                    .map_err(|e| format!("writing {}: {e}", set_path.display()))?;
                let cfg = weir::config::parse("b2.conf", &text).map_err(|e| e.to_string())?;
                let dp = weir::Dataplane::new(node.pin_dir.clone());
                node.run_in(&host, || dp.load(&cfg))
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("weir load ({}, N = {n}): {e}", v.name()))?;
            }
            V::Chain | V::Ipset => {
                let rules = if v == V::Chain {
                    iptables_chain(&ep, n)
                } else {
                    let f = file("ipset", &ipset_restore(n))?;
                    ns_exec(&host, &["ipset", "restore"], Some(&f))?;
                    let listed = ns_exec(&host, &["ipset", "list", "b2", "-terse"], None)?;
                    let count = listed
                        .lines()
                        .find_map(|l| l.strip_prefix("Number of entries: "))
                        .and_then(|c| c.trim().parse::<usize>().ok());
                    if count != Some(n) {
                        return Err(format!("ipset b2 in {host} holds {count:?} entries of {n}"));
                    }
                    iptables_ipset(&ep)
                };
                // On stdin: iptables-nft-restore with `-w FILE` reads nothing and exits 0.
                let f = file("rules", &rules)?;
                ns_exec(&host, &["iptables-restore", "-w"], Some(&f))?;
                let listed = ns_exec(&host, &["iptables", "-w", "-S"], None)?;
                let count = |t: &str| t.lines().filter(|l| l.starts_with("-A")).count();
                if count(&rules) != count(&listed) {
                    return Err(format!(
                        "iptables-restore in {host} loaded {} rules of {}",
                        count(&listed),
                        count(&rules)
                    ));
                }
            }
            V::Nft => {
                let f = file("nft", &nft_table(&ep, n))?;
                let p = f.to_string_lossy().into_owned();
                ns_exec(&host, &["nft", "-f", &p], None)?;
            }
        }
        if v.netfilter() {
            node.run_in(&host, || {
                std::fs::write(
                    "/proc/sys/net/netfilter/nf_conntrack_udp_timeout",
                    NF_UDP_TIMEOUT.to_string(),
                )
            })
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("setting nf_conntrack_udp_timeout in {host}: {e}"))?;
        }
        let w1 = node.w1.v4;
        let out = node.out.v4;
        let rx = node
            .run_in(&node.w1.netns, || {
                UdpSocket::bind(SocketAddrV4::new(w1, PORT))
            })
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("binding w1's receiver: {e}"))?;
        // Room for a whole burst: it is read after the burst, not during it.
        setsockopt(&rx, sockopt::RcvBufForce, &(64 << 20))
            .map_err(|e| format!("SO_RCVBUFFORCE: {e}"))?;
        rx.set_read_timeout(Some(Duration::from_millis(300)))
            .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
        let est = node
            .run_in(&node.out.netns, || {
                UdpSocket::bind(SocketAddrV4::new(out, EST_PORT))
            })
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("binding out's socket: {e}"))?;
        est.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
        let raw = node
            .run_in(&node.out.netns, || {
                sock::socket(
                    AddressFamily::Inet,
                    SockType::Raw,
                    SockFlag::empty(),
                    SockProtocol::Raw,
                )
            })
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("raw socket in out: {e}"))?;
        let mut me = Node {
            v,
            n,
            raw,
            rx,
            est,
            next_flow: 0,
            node,
        };
        me.echo()?;
        me.burst(Kind::New, 100)?;
        Ok(me)
    }

    /// One datagram of the established flow to w1 and back, so that every conntrack on the
    /// way has seen both directions.
    fn echo(&self) -> Result<(), String> {
        let to = SocketAddrV4::new(self.node.w1.v4, PORT);
        self.est
            .send_to(b"b2 echo", to)
            .map_err(|e| format!("echo send: {e}"))?;
        let mut buf = [0u8; 64];
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let (len, from) = self.rx.recv_from(&mut buf).map_err(|e| {
                format!(
                    "{} (N = {}): no echo request at w1: {e}",
                    self.v.name(),
                    self.n
                )
            })?;
            if &buf[..len] == b"b2 echo" {
                self.rx
                    .send_to(&buf[..len], from)
                    .map_err(|e| format!("echo reply: {e}"))?;
                break;
            }
            if Instant::now() > deadline {
                return Err("echo request not seen within 2 s".into());
            }
        }
        self.est.recv_from(&mut buf).map_err(|e| {
            format!(
                "{} (N = {}): no echo reply in out: {e}",
                self.v.name(),
                self.n
            )
        })?;
        Ok(())
    }

    /// Reads w1's datagrams until `want` arrived or none came for 300 ms.
    fn drain(&self, want: usize) -> usize {
        let mut buf = [0u8; 64];
        let mut got = 0;
        while got < want {
            match self.rx.recv_from(&mut buf) {
                Ok(_) => got += 1,
                Err(_) => break,
            }
        }
        got
    }

    /// Sends `d` datagrams of `kind` back to back; returns the sending thread's CPU time (ns)
    /// and the machine's busy ticks over them. w1 reads them later ([`Node::received`]).
    fn send(&mut self, kind: Kind, d: usize) -> Result<(u64, u64), String> {
        let dst = self.node.w1.v4;
        let to = SockaddrIn::from(SocketAddrV4::new(dst, 0));
        let first = self.next_flow;
        let fd = self.raw.as_raw_fd();
        // /proc/stat is read outside the thread's timed window (reading it costs µs).
        let b0 = busy_ticks()?;
        let c0 = thread_cpu_ns()?;
        for i in 0..d {
            let (src, sport) = match kind {
                Kind::New => flow_source(first + i as u64),
                Kind::Est => (self.node.out.v4, EST_PORT),
            };
            let p = udp_packet(src, sport, dst, PORT);
            sock::sendto(fd, &p, &to, MsgFlags::empty())
                .map_err(|e| format!("sendto (raw, {}): {e}", self.v.name()))?;
        }
        let c1 = thread_cpu_ns()?;
        let b1 = busy_ticks()?;
        if kind == Kind::New {
            self.next_flow += d as u64;
        }
        Ok((c1 - c0, b1.saturating_sub(b0)))
    }

    /// Checks that w1 received the `d` datagrams sent since the last check.
    fn received(&self, kind: Kind, d: usize) -> Result<(), String> {
        let got = self.drain(d);
        if got != d {
            return Err(format!(
                "{} (N = {}, {}): w1 received {got} of {d} datagrams",
                self.v.name(),
                self.n,
                kind.name()
            ));
        }
        Ok(())
    }

    /// An untimed burst of `d` datagrams of `kind` (an echo first for established ones).
    fn burst(&mut self, kind: Kind, d: usize) -> Result<(), String> {
        if kind == Kind::Est {
            self.echo()?;
        }
        self.send(kind, d)?;
        self.received(kind, d)
    }

    /// The ids of weir's programs attached to the host's interfaces (each once).
    fn weir_progs(&self) -> Result<Vec<u32>, String> {
        let ifs: Vec<String> = self.node.legs().iter().map(|l| l.host_if.clone()).collect();
        let mut ids = self
            .node
            .run_in(&self.node.host, || -> Result<Vec<u32>, String> {
                let mut nl = weir::sys::netlink::Netlink::open().map_err(|e| e.to_string())?;
                let mut ids = Vec::new();
                for name in &ifs {
                    let idx = nl
                        .link_index(name)
                        .map_err(|e| e.to_string())?
                        .ok_or_else(|| format!("{name} is gone"))?;
                    for at in [consts::BPF_TCX_INGRESS, consts::BPF_TCX_EGRESS] {
                        let q = bpf::prog_query(LinkTarget::Ifindex(idx), at, 0)
                            .map_err(|e| e.to_string())?;
                        ids.extend(q.prog_ids);
                    }
                }
                Ok(ids)
            })
            .map_err(|e| e.to_string())??;
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Err(format!("{}: no weir program attached", self.v.name()));
        }
        Ok(ids)
    }

    /// Run time (ns) per program name over `ids` (bpf_stats must be on), names sorted.
    fn prog_time(ids: &[u32]) -> Result<Vec<(String, u64)>, String> {
        let mut t: Vec<(String, u64)> = Vec::new();
        for &id in ids {
            let fd = bpf::prog_fd_by_id(id).map_err(|e| e.to_string())?;
            let i = bpf::prog_info(fd.as_fd()).map_err(|e| e.to_string())?;
            match t.iter_mut().find(|(n, _)| *n == i.name) {
                Some(e) => e.1 += i.run_time_ns,
                None => t.push((i.name, i.run_time_ns)),
            }
        }
        t.sort();
        Ok(t)
    }

    /// What proves the variant's path: weir's new and established outcomes, or the iptables
    /// chain's conntrack rule and matching rule.
    fn counters(&self) -> Result<(u64, u64), String> {
        match self.v {
            V::Weir | V::WeirFast => {
                let dp = weir::Dataplane::new(self.node.pin_dir.clone());
                let st = self
                    .node
                    .run_in(&self.node.host, || dp.status())
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("weir status: {e}"))?;
                Ok((outcome(&st, "new-allowed"), outcome(&st, "established")))
            }
            V::Chain | V::Ipset => {
                let l = ns_exec(
                    &self.node.host,
                    &["iptables", "-w", "-L", "b2-ep", "-v", "-x", "-n"],
                    None,
                )?;
                let p = chain_packets(&l);
                // conntrack accept first, the matching rule second to last.
                if p.len() < 3 {
                    return Err(format!("chain b2-ep has {} rules", p.len()));
                }
                Ok((p[p.len() - 2], p[0]))
            }
            V::None | V::Nft => Ok((0, 0)),
        }
    }
}

fn tool_versions() -> Vec<String> {
    let first = |argv: &[&str]| {
        output_of(argv)
            .map(|s| s.lines().next().unwrap_or("").trim().to_owned())
            .unwrap_or_else(|e| e)
    };
    vec![
        first(&["iptables", "-V"]),
        first(&["ipset", "version"]),
        first(&["nft", "--version"]),
    ]
}

/// [scale][weir, weir fast][kind]: ns in each weir program (by name) per datagram.
type InProg = Vec<Vec<[Vec<(String, f64)>; 2]>>;

/// The total of a program breakdown.
fn total(p: &[(String, f64)]) -> f64 {
    if p.is_empty() {
        f64::NAN
    } else {
        p.iter().map(|x| x.1).sum()
    }
}

/// `1819 (tc_egress 900, tc_ingress 919)`.
fn show_progs(p: &[(String, f64)]) -> String {
    let parts: Vec<String> = p
        .iter()
        .filter(|x| x.1 > 0.5)
        .map(|(n, t)| format!("{n} {t:.0}"))
        .collect();
    format!("{:.0} ({})", total(p), parts.join(", "))
}

/// samples[scale][kind][variant]: one measurement per timed round.
type Samples = Vec<Vec<Vec<Vec<Meas>>>>;

/// Runs B2 and writes its section of BENCHMARKS.md.
///
/// # Errors
/// A missing prerequisite, a failed command, a variant that lost datagrams, or counters that
/// show a variant did not take the path it stands for.
pub fn run(opts: &Options) -> Result<(), String> {
    let t0 = Instant::now();
    let mut facts = env::prelude(
        "B2",
        &[
            ("ip", "iproute2"),
            ("iptables", "iptables"),
            ("iptables-restore", "iptables"),
            ("ipset", "ipset"),
            ("nft", "nftables"),
        ],
    )?;
    facts.tools = tool_versions();
    let scratch = env::Scratch::new("b2")?;
    eprintln!(
        "B2: {} rounds, N = {:?}, {} datagrams per burst; building {} nodes",
        opts.rounds,
        opts.scales,
        opts.datagrams,
        1 + opts.scales.len() * FILTERS.len()
    );
    let mut base = Node::build(V::None, 0, &scratch.0)?;
    // nodes[scale][filter index]
    let mut nodes: Vec<Vec<Node>> = Vec::new();
    for &n in &opts.scales {
        let tb = Instant::now();
        let row = FILTERS
            .iter()
            .map(|&v| Node::build(v, n, &scratch.0))
            .collect::<Result<Vec<_>, _>>()?;
        eprintln!("  N = {n}: built in {:.1} s", tb.elapsed().as_secs_f64());
        nodes.push(row);
    }

    let mut samples: Samples =
        vec![vec![vec![Vec::new(); VARIANTS.len()]; KINDS.len()]; opts.scales.len()];
    let mut before = Vec::new();
    for round in 0..=opts.rounds {
        if round == 1 {
            before = counters_of(&nodes)?;
        }
        let tr = Instant::now();
        let mut line = Vec::new();
        for (si, &n) in opts.scales.iter().enumerate() {
            for kind in KINDS {
                let mut order: Vec<usize> = (0..VARIANTS.len()).collect();
                order.rotate_left(round % VARIANTS.len());
                let row = &mut nodes[si];
                let mut all: Vec<&mut Node> =
                    std::iter::once(&mut base).chain(row.iter_mut()).collect();
                let ms = measure(&mut all, &order, kind, n, opts.datagrams)?;
                let got: Vec<f64> = ms.iter().map(|m| m.cpu_ns).collect();
                if round > 0 {
                    for (i, m) in ms.into_iter().enumerate() {
                        samples[si][kind.idx()][i].push(m);
                    }
                }
                line.push(format!(
                    "N={} {}: {}",
                    fmt_n(n),
                    if kind == Kind::New { "new" } else { "est" },
                    got.iter()
                        .map(|g| format!("{:.0}", g - got[0]))
                        .skip(1)
                        .collect::<Vec<_>>()
                        .join("/")
                ));
            }
        }
        eprintln!(
            "{} ({:.0} s), ns added per datagram (weir/fast/chain/ipset/nft): {}",
            if round == 0 {
                "warm-up round".to_owned()
            } else {
                format!("round {round}/{}", opts.rounds)
            },
            tr.elapsed().as_secs_f64(),
            line.join("; ")
        );
    }
    let after = counters_of(&nodes)?;
    let mut sent = vec![vec![(0u64, 0u64); FILTERS.len()]; opts.scales.len()];
    for (si, &n) in opts.scales.iter().enumerate() {
        for (fi, &v) in FILTERS.iter().enumerate() {
            let rounds = opts.rounds as u64;
            sent[si][fi] = (
                rounds * datagrams(opts.datagrams, v, n, Kind::New) as u64,
                rounds * datagrams(opts.datagrams, v, n, Kind::Est) as u64,
            );
        }
    }
    let checks = check_paths(opts, &before, &after, &sent)?;

    // weir's programs on their own (bpf_stats), outside the timed rounds.
    let mut in_prog: InProg = vec![vec![[Vec::new(), Vec::new()]; 2]; opts.scales.len()];
    {
        let _stats = bpf::enable_stats(consts::BPF_STATS_RUN_TIME).map_err(|e| e.to_string())?;
        for (si, row) in nodes.iter_mut().enumerate() {
            for (wi, v) in [V::Weir, V::WeirFast].iter().enumerate() {
                let node = &mut row[FILTERS.iter().position(|x| x == v).unwrap_or(0)];
                let ids = node.weir_progs()?;
                for kind in KINDS {
                    let a = Node::prog_time(&ids)?;
                    node.burst(kind, opts.datagrams)?;
                    let b = Node::prog_time(&ids)?;
                    // The established burst's echo (2 packets) is inside; negligible.
                    let d = opts.datagrams as f64;
                    let per: Vec<(String, f64)> = b
                        .iter()
                        .map(|(name, t)| {
                            let before = a.iter().find(|x| x.0 == *name).map_or(0, |x| x.1);
                            (name.clone(), (t - before) as f64 / d)
                        })
                        .collect();
                    in_prog[si][wi][kind.idx()] = per;
                }
            }
        }
    }

    let report = Report {
        opts,
        facts,
        samples,
        in_prog,
        checks,
        minutes: t0.elapsed().as_secs_f64() / 60.0,
    };
    let section = report.section();
    println!("{section}");
    if opts.write {
        let path = env::workspace_root().join("BENCHMARKS.md");
        report::write_section(&path, HEADING, &section)?;
        eprintln!("wrote the B2 section of {}", path.display());
    }
    // Programs, rules, sockets and namespaces go with the nodes (RAII), also on error paths.
    drop(nodes);
    drop(base);
    Ok(())
}

/// One measurement of every node (indexed like `VARIANTS`) at scale `n`: the bursts are cut
/// into chunks of about `CHUNK` datagrams sent node after node in `order` (A B C … A B C …),
/// so that whatever else the machine does falls on all of them alike; the sender sleeps
/// between chunks (untimed) to keep the pace. Returns the per-datagram costs.
fn measure(
    nodes: &mut [&mut Node],
    order: &[usize],
    kind: Kind,
    n: usize,
    base: usize,
) -> Result<Vec<Meas>, String> {
    let chunks = base.div_ceil(CHUNK);
    let per: Vec<usize> = nodes
        .iter()
        .map(|nd| datagrams(base, nd.v, n, kind))
        .collect();
    if kind == Kind::Est {
        for nd in nodes.iter() {
            nd.echo()?;
        }
    }
    let mut cpu = vec![0u64; nodes.len()];
    let mut busy = vec![0u64; nodes.len()];
    let mut sent = vec![0usize; nodes.len()];
    let t0 = Instant::now();
    let mut total = 0usize;
    for c in 0..chunks {
        for &i in order {
            // Chunk c's share of node i's datagrams.
            let d = per[i] * (c + 1) / chunks - per[i] * c / chunks;
            if d == 0 {
                continue;
            }
            let (cp, b) = nodes[i].send(kind, d)?;
            cpu[i] += cp;
            busy[i] += b;
            sent[i] += d;
            total += d;
        }
        let due = t0 + Duration::from_secs_f64(total as f64 / RATE);
        let now = Instant::now();
        if now < due {
            std::thread::sleep(due - now);
        }
    }
    for (i, nd) in nodes.iter().enumerate() {
        nd.received(kind, sent[i])?;
    }
    Ok((0..nodes.len())
        .map(|i| Meas {
            cpu_ns: cpu[i] as f64 / sent[i] as f64,
            busy_ns: busy[i] as f64 / USER_HZ * 1e9 / sent[i] as f64,
        })
        .collect())
}

type Counts = Vec<Vec<(u64, u64)>>;

fn counters_of(nodes: &[Vec<Node>]) -> Result<Counts, String> {
    nodes
        .iter()
        .map(|row| row.iter().map(Node::counters).collect())
        .collect()
}

/// Every weir variant counted its datagrams as new flows and established packets, and every
/// iptables variant counted them at its matching rule and its conntrack rule (the nft variant
/// drops what its set does not accept, and w1 received every datagram). Returns a sentence.
fn check_paths(
    opts: &Options,
    before: &Counts,
    after: &Counts,
    sent: &[Vec<(u64, u64)>],
) -> Result<String, String> {
    let mut lines = Vec::new();
    for (si, &n) in opts.scales.iter().enumerate() {
        for (fi, &v) in FILTERS.iter().enumerate() {
            if !(v.is_weir() || matches!(v, V::Chain | V::Ipset)) {
                continue;
            }
            let (new, est) = (
                after[si][fi].0 - before[si][fi].0,
                after[si][fi].1 - before[si][fi].1,
            );
            let (want_new, want_est) = sent[si][fi];
            // Echoes add one new-or-established packet per established burst.
            if new < want_new || est < want_est {
                return Err(format!(
                    "{} (N = {n}): counted {new} new flows and {est} established packets over \
                     the timed rounds, sent {want_new} and {want_est}",
                    v.name()
                ));
            }
            if si + 1 == opts.scales.len() {
                lines.push(format!("{}: {new} new / {est} established", v.name()));
            }
        }
    }
    Ok(lines.join("; "))
}

// ---------------------------------------------------------------------------------------------
// The report

struct Report<'a> {
    opts: &'a Options,
    facts: Facts,
    samples: Samples,
    /// ns in weir's programs per datagram (bpf_stats).
    in_prog: InProg,
    checks: String,
    minutes: f64,
}

impl Report<'_> {
    fn raw(&self, si: usize, k: Kind, v: V, f: impl Fn(&Meas) -> f64) -> Vec<f64> {
        self.samples[si][k.idx()][v.idx()].iter().map(f).collect()
    }

    /// Per round: v's CPU per datagram minus the no-filter node's (ns).
    fn cost(&self, si: usize, k: Kind, v: V) -> Vec<f64> {
        let b = self.raw(si, k, V::None, |m| m.cpu_ns);
        self.raw(si, k, v, |m| m.cpu_ns)
            .iter()
            .zip(&b)
            .map(|(x, y)| x - y)
            .collect()
    }

    fn busy_cost(&self, si: usize, k: Kind, v: V) -> Vec<f64> {
        let b = self.raw(si, k, V::None, |m| m.busy_ns);
        self.raw(si, k, v, |m| m.busy_ns)
            .iter()
            .zip(&b)
            .map(|(x, y)| x - y)
            .collect()
    }

    /// Per round: a's cost ÷ b's.
    fn ratio(&self, si: usize, k: Kind, a: V, b: V) -> Vec<f64> {
        self.cost(si, k, a)
            .iter()
            .zip(&self.cost(si, k, b))
            .map(|(x, y)| x / y)
            .collect()
    }

    fn scale_idx(&self, n: usize) -> Option<usize> {
        self.opts.scales.iter().position(|&x| x == n)
    }

    fn section(&self) -> String {
        let mut s = String::new();
        let f = &self.facts;
        let _ = writeln!(s, "{HEADING}\n");
        let _ = writeln!(
            s,
            "Network policy on one workload's ingress with N rules / CIDRs, traffic from the \
             outside namespace to w1 through the host namespace of a routed node \
             (`weir::topology::Routed`); every variant has its own node, built once: **no \
             filter** (the baseline); **weir** (its TC programs on the host's veths, \
             `fastpath=off`, so the packets take the kernel's forwarding path like the \
             competitors'; min(N, {WEIR_MAX_RULES}) `allow proto=udp dport={PORT}` rules, for N \
             > {WEIR_MAX_RULES} the last one `remote=set:` over the remaining CIDRs; the \
             matching CIDR is last); **weir, fast path on** (the same with weir's default \
             fast path: the policy decides at the uplink's TC ingress and the packet is \
             redirected into w1, skipping routing and netfilter); **iptables chain** (FORWARD \
             `-o` w1's veth → a per-endpoint chain: conntrack `RELATED,ESTABLISHED` accept first, \
             N `-s CIDR -p udp --dport {PORT} -j ACCEPT` rules, the matching one last, DROP); \
             **iptables + ipset** (the same chain with one `-m set` rule over a `hash:net` set \
             of N CIDRs); **nft** (a forward chain: `ct state established,related accept`, one \
             rule `ip saddr . udp dport @allow` over an `ipv4_addr . inet_service` interval set \
             of N elements, drop). N − 1 CIDRs are disjoint /30s of 10.0.0.0/8 that never \
             match, the last is {MATCH_CIDR}.\n"
        );
        let _ = writeln!(
            s,
            "A measurement is a burst of {} UDP datagrams ({} B IP packets) from one thread \
             through a raw socket in the outside namespace, paced at {} k/s: **new flows** \
             (each datagram from a source address and port never used before: a new conntrack \
             entry in netfilter and a new flow in weir) or **established** (one flow that w1 \
             echoed first). The iptables chain's new-flow burst shrinks to {}·1000/N datagrams \
             (at least {MIN_DATAGRAMS}) above N = 1k. w1 must receive every datagram (the \
             chains end in a drop, so that proves the matching rule matched). **Cost** is the \
             sending thread's CPU time per datagram (getrusage RUSAGE_THREAD) minus the \
             no-filter node's in the same round: veth queues each packet to the per-CPU \
             backlog, whose softirq runs when the sender re-enables bottom halves, so the \
             host's forwarding, TC, netfilter and conntrack and the delivery into w1's socket \
             run in the sender's context, and this kernel has no IRQ time accounting, so that \
             time is the thread's. netfilter's UDP timeout is {NF_UDP_TIMEOUT} s in the \
             competitors' nodes (the conntrack table limit is machine-wide); weir's conntrack \
             holds 262,144 entries.\n",
            self.opts.datagrams,
            PACKET_LEN,
            RATE / 1000.0,
            self.opts.datagrams
        );
        let _ = writeln!(
            s,
            "- Date: {}; kernel {}; commit {}; {} CPUs",
            f.date, f.kernel, f.commit, f.cpus
        );
        let _ = writeln!(s, "- Tools: {}", f.tools.join("; "));
        let _ = writeln!(s, "- Command (as root): `{}`", self.opts.command());
        let _ = writeln!(
            s,
            "- {} timed rounds after one untimed warm-up round; within a round, for each N and \
             kind, the six nodes take turns in chunks of {CHUNK} datagrams (A B C … A B C …, \
             the first one rotating every round), so that other work on the machine falls on \
             all of them alike; the pacing sleeps are between chunks, outside the timed \
             windows. Ratios are taken within a round. The run took {:.1} minutes.",
            self.opts.rounds, self.minutes
        );
        let _ = writeln!(
            s,
            "- Path checks over the timed rounds at N = {}: {} (counters: weir's `new` and \
             `established` outcomes; the chain's matching rule and its conntrack rule).\n",
            fmt_n(*self.opts.scales.last().unwrap_or(&0)),
            self.checks
        );
        for k in KINDS {
            let _ = writeln!(
                s,
                "**{}**: ns of CPU per datagram added over the no-filter node (median \
                 (min–max) over rounds), and the competitors' cost ÷ weir's (per round):\n",
                match k {
                    Kind::New => "New flows",
                    Kind::Est => "Established packets",
                }
            );
            let _ = writeln!(
                s,
                "| N | no filter (absolute) | **weir** | weir, fast path on | iptables chain | iptables + ipset | nft | chain ÷ weir | ipset ÷ weir | nft ÷ weir |"
            );
            let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
            for (si, &n) in self.opts.scales.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "| {} | {} | **{}** | {} | {} | {} | {} | {} | {} | {} |",
                    fmt_n(n),
                    show(&self.raw(si, k, V::None, |m| m.cpu_ns), 0),
                    show(&self.cost(si, k, V::Weir), 0),
                    show(&self.cost(si, k, V::WeirFast), 0),
                    show(&self.cost(si, k, V::Chain), 0),
                    show(&self.cost(si, k, V::Ipset), 0),
                    show(&self.cost(si, k, V::Nft), 0),
                    show_x(&self.ratio(si, k, V::Chain, V::Weir)),
                    show_x(&self.ratio(si, k, V::Ipset, V::Weir)),
                    show_x(&self.ratio(si, k, V::Nft, V::Weir)),
                );
            }
            let pts = |v: V| -> Vec<(usize, f64)> {
                self.opts
                    .scales
                    .iter()
                    .enumerate()
                    .map(|(si, &n)| (n, med(&self.cost(si, k, v))))
                    .collect()
            };
            let _ = writeln!(
                s,
                "\nShape over N: weir {}; iptables chain {}; ipset {}; nft {}.\n",
                report::shape(&pts(V::Weir), 50.0, "ns", "rules"),
                report::shape(&pts(V::Chain), 50.0, "ns", "rules"),
                report::shape(&pts(V::Ipset), 50.0, "ns", "CIDRs"),
                report::shape(&pts(V::Nft), 50.0, "ns", "elements"),
            );
        }
        let _ = writeln!(
            s,
            "**Cross-checks**: weir's programs' own time per datagram (bpf_stats, \
             `run_time_ns` of every weir program in the node over one extra burst after the \
             timed rounds, all hooks the datagram passes); the machine's busy time per datagram \
             from /proc/stat added over the no-filter node (10 ms ticks, other work on the \
             machine included: coarse).\n"
        );
        let _ = writeln!(
            s,
            "| N | weir programs, new / established | weir fast path programs, new / established | machine busy added, new: weir / chain / ipset / nft | machine busy added, established: weir / chain / ipset / nft |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|");
        for (si, &n) in self.opts.scales.iter().enumerate() {
            let bm = |k: Kind| -> String {
                [V::Weir, V::Chain, V::Ipset, V::Nft]
                    .iter()
                    .map(|&v| format!("{:.0}", med(&self.busy_cost(si, k, v))))
                    .collect::<Vec<_>>()
                    .join(" / ")
            };
            let p = &self.in_prog[si];
            let _ = writeln!(
                s,
                "| {} | {} / {} | {} / {} | {} | {} |",
                fmt_n(n),
                show_progs(&p[0][0]),
                show_progs(&p[0][1]),
                show_progs(&p[1][0]),
                show_progs(&p[1][1]),
                bm(Kind::New),
                bm(Kind::Est)
            );
        }
        let _ = writeln!(s, "\nIssue goals:\n");
        let _ = write!(s, "{}", self.goals());
        let _ = writeln!(s, "\n{}", self.meaning());
        s
    }

    fn goals(&self) -> String {
        let mut g = String::new();
        let (first, last) = (0, self.opts.scales.len() - 1);
        let (n0, n1) = (self.opts.scales[first], self.opts.scales[last]);
        for k in KINDS {
            let r: Vec<f64> = self
                .cost(last, k, V::Weir)
                .iter()
                .zip(&self.cost(first, k, V::Weir))
                .map(|(a, b)| a / b)
                .collect();
            let ok = med(&r) <= FLAT_GOAL;
            let _ = writeln!(
                g,
                "- flat, {}: weir cost(N = {}) ÷ cost(N = {}) = {} (≤ {FLAT_GOAL}) → {}",
                k.name(),
                fmt_n(n1),
                fmt_n(n0),
                show_x(&r),
                verdict(ok)
            );
        }
        match self.scale_idx(1000) {
            Some(si) => {
                let r = self.ratio(si, Kind::New, V::Chain, V::Weir);
                let _ = writeln!(
                    g,
                    "- ≥ 10× cheaper than the iptables chain for new flows at N = 1k: {} → {}",
                    show_x(&r),
                    verdict(med(&r) >= 10.0)
                );
            }
            None => g += "- ≥ 10× cheaper than the iptables chain at N = 1k: N = 1k not run\n",
        }
        for k in KINDS {
            let parts: Vec<String> = self
                .opts
                .scales
                .iter()
                .enumerate()
                .map(|(si, &n)| {
                    let r = self.ratio(si, k, V::Nft, V::Weir);
                    format!("{} {}", fmt_n(n), show_x(&r))
                })
                .collect();
            let ok = (0..self.opts.scales.len())
                .all(|si| med(&self.ratio(si, k, V::Nft, V::Weir)) >= 1.2);
            let _ = writeln!(
                g,
                "- ≥ 1.2× cheaper than nft, {} (nft ÷ weir by N): {} → {}",
                k.name(),
                parts.join(", "),
                verdict(ok)
            );
        }
        g
    }

    fn meaning(&self) -> String {
        let last = self.opts.scales.len() - 1;
        let n1 = fmt_n(self.opts.scales[last]);
        let c = |k: Kind, v: V| med(&self.cost(last, k, v));
        let base = med(&self.raw(last, Kind::New, V::None, |m| m.cpu_ns));
        let p = &self.in_prog[last];
        format!(
            "**What the numbers mean.** Sending one datagram and carrying it through the host \
             into w1's socket costs the no-filter node about {base:.0} ns of CPU; every other \
             number is what a filter adds to that. At N = {n1}, a new flow costs weir {:.0} ns \
             more ({:.0} ns of it inside its programs by bpf_stats: parsing, a conntrack miss, \
             the classifier's table lookups and the conntrack insert; the rest is the TC hooks \
             themselves), the iptables chain {:.0} ns (netfilter's conntrack entry plus a walk \
             over all N rules), ipset {:.0} ns and nft {:.0} ns (conntrack plus one set \
             lookup). An established packet costs weir {:.0} ns (a conntrack hit: {:.0} ns in \
             its programs), and the netfilter variants {:.0} / {:.0} / {:.0} ns: their \
             conntrack lookup and the `ESTABLISHED` accept, whatever N is. weir runs two \
             programs per datagram (the uplink's TC ingress and w1's veth TC egress, each \
             parsing the packet; the table above splits their time), so on an established \
             packet, where netfilter's work is one conntrack lookup, weir costs {:.2}× what \
             nft does. On new flows nft costs {:.2}× and ipset {:.2}× what weir does at \
             N = {n1}: one set lookup is what they do too, and their cost does not grow with \
             N either; only the iptables chain walks its rules ({:.0}× weir). With the fast path \
             on (weir's default), weir adds {:.0} ns per new flow and {:.0} ns per \
             established packet over plain forwarding: the same policy work, but the redirect \
             into w1 skips the host's routing, netfilter hooks and the second TC hook, which \
             pays for most of it. Netfilter's conntrack \
             is paid by every netfilter variant and never by weir, which keeps its own \
             conntrack in a BPF map; the no-filter node pays neither. The costs are small \
             differences of CPU times of a few µs, measured on a shared machine: read the \
             ranges, and the ratios of small costs (established packets) as rough.",
            c(Kind::New, V::Weir),
            total(&p[0][0]),
            c(Kind::New, V::Chain),
            c(Kind::New, V::Ipset),
            c(Kind::New, V::Nft),
            c(Kind::Est, V::Weir),
            total(&p[0][1]),
            c(Kind::Est, V::Chain),
            c(Kind::Est, V::Ipset),
            c(Kind::Est, V::Nft),
            c(Kind::Est, V::Weir) / c(Kind::Est, V::Nft),
            c(Kind::New, V::Nft) / c(Kind::New, V::Weir),
            c(Kind::New, V::Ipset) / c(Kind::New, V::Weir),
            c(Kind::New, V::Chain) / c(Kind::New, V::Weir),
            c(Kind::New, V::WeirFast),
            c(Kind::Est, V::WeirFast),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options() {
        let o = Options::parse(&[]).unwrap();
        assert_eq!((o.rounds, o.datagrams, o.write), (7, 4000, true));
        assert_eq!(o.scales, DEFAULT_SCALES);
        assert_eq!(
            o.command(),
            "cargo run --release -p weir-bench -- b2 --rounds 7"
        );
        let o = Options::parse(&args(&["--dev", "--rounds", "1", "--scales", "10,1000"])).unwrap();
        assert!(!o.write);
        assert!(o.command().ends_with("--rounds 1 --scales 10,1000"));
        assert!(Options::parse(&args(&["--rounds", "3"])).is_err());
        assert!(Options::parse(&args(&["--datagrams", "5"])).is_err());
        assert!(Options::parse(&args(&["--bogus"])).is_err());
        assert!(Options::parse(&args(&["--no-write"])).is_ok_and(|o| !o.write));
    }

    #[test]
    fn entries_end_with_the_match() {
        let e = entries(3);
        assert_eq!(e, ["10.0.0.0/30", "10.0.0.4/30", MATCH_CIDR]);
        assert_eq!(entries(1), [MATCH_CIDR]);
        let big = entries(10_000);
        assert_eq!(big.len(), 10_000);
        let mut u = big.clone();
        u.sort();
        u.dedup();
        assert_eq!(u.len(), 10_000);
    }

    fn ifs() -> WeirIfs<'static> {
        WeirIfs {
            w1: "h1",
            w1_addrs: "198.18.1.2,2001:db8:1::2".into(),
            w2: "h2",
            w2_addrs: "198.18.2.2,2001:db8:2::2".into(),
            out: "ho",
        }
    }

    #[test]
    fn weir_configs_parse_and_keep_under_the_rule_limit() {
        let dir = std::env::temp_dir().join(format!("b2-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let set = dir.join("rest.txt");
        let (t, s) = weir_config(&ifs(), 10, false, &set);
        assert!(s.is_empty());
        assert_eq!(t.matches("rule b2 ingress").count(), 10);
        assert!(t.contains(&format!("remote={MATCH_CIDR}\n")));
        assert!(t.contains("fastpath=off"));
        weir::config::parse("b2.conf", &t).unwrap();

        let (t, s) = weir_config(&ifs(), 1000, true, &set);
        assert_eq!(t.matches("rule b2 ingress").count(), WEIR_MAX_RULES);
        assert!(t
            .lines()
            .rfind(|l| l.starts_with("rule"))
            .unwrap()
            .ends_with("remote=set:rest"));
        assert_eq!(s.lines().count(), 1000 - (WEIR_MAX_RULES - 1));
        assert_eq!(s.lines().last(), Some(MATCH_CIDR));
        std::fs::write(&set, &s).unwrap();
        weir::config::parse("b2.conf", &t).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn netfilter_rulesets() {
        let c = iptables_chain("h1", 3);
        let a: Vec<&str> = c.lines().filter(|l| l.starts_with("-A")).collect();
        assert_eq!(a.len(), 6);
        assert_eq!(a[0], "-A FORWARD -o h1 -j b2-ep");
        assert!(a[1].contains("--ctstate RELATED,ESTABLISHED"));
        assert!(a[4].starts_with(&format!("-A b2-ep -s {MATCH_CIDR} ")));
        assert_eq!(a[5], "-A b2-ep -j DROP");
        assert!(c.ends_with("COMMIT\n"));
        let i = iptables_ipset("h1");
        assert!(i.contains("--match-set b2 src"));
        let r = ipset_restore(3);
        assert_eq!(r.lines().count(), 4);
        assert!(r.starts_with("create b2 hash:net"));
        assert!(r.ends_with(&format!("add b2 {MATCH_CIDR}\n")));
        let n = nft_table("h1", 2);
        assert!(n.contains(&format!(
            "elements = {{ 10.0.0.0/30 . {PORT}, {MATCH_CIDR} . {PORT} }}"
        )));
        assert!(n.contains("type ipv4_addr . inet_service"));
        assert!(n.contains("ip saddr . udp dport @allow accept"));
    }

    #[test]
    fn flows_do_not_repeat_and_packets_are_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for k in (0..2_000_000u64).step_by(997) {
            assert!(seen.insert(flow_source(k)));
        }
        assert_eq!(flow_source(0), (Ipv4Addr::new(198, 18, 3, 10), 1024));
        assert_eq!(flow_source(60_000), (Ipv4Addr::new(198, 18, 3, 11), 1024));
        let p = udp_packet(
            Ipv4Addr::new(198, 18, 3, 2),
            7001,
            Ipv4Addr::new(198, 18, 1, 2),
            PORT,
        );
        assert_eq!(p.len(), 35);
        assert_eq!(csum(&p[..20]), 0, "a valid header sums to 0");
        assert_eq!(u16::from_be_bytes([p[24], p[25]]), 15);
        assert_eq!(&p[28..], PAYLOAD);
    }

    #[test]
    fn parsers() {
        let stat = "cpu  10 2 30 400 5 6 7 8 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n";
        assert_eq!(parse_busy(stat), Ok(10 + 2 + 30 + 6 + 7 + 8));
        assert!(parse_busy("intr 1\n").is_err());
        let l = "Chain b2-ep (1 references)\n    pkts      bytes target     prot opt in     out     source               destination\n\
                 \x20    120     4200 ACCEPT     0    --  *      *       0.0.0.0/0            0.0.0.0/0            ctstate RELATED,ESTABLISHED\n\
                 \x20      0        0 ACCEPT     17   --  *      *       10.0.0.0/30          0.0.0.0/0            udp dpt:7000\n\
                 \x20     77     2695 ACCEPT     17   --  *      *       198.18.3.0/24        0.0.0.0/0            udp dpt:7000\n\
                 \x20      0        0 DROP       0    --  *      *       0.0.0.0/0            0.0.0.0/0\n";
        assert_eq!(chain_packets(l), [120, 0, 77, 0]);
    }

    #[test]
    fn bursts_shrink_only_for_the_chain() {
        assert_eq!(datagrams(4000, V::Chain, 10_000, Kind::New), 400);
        assert_eq!(datagrams(4000, V::Chain, 100_000, Kind::New), MIN_DATAGRAMS);
        assert_eq!(datagrams(4000, V::Chain, 1000, Kind::New), 4000);
        assert_eq!(datagrams(4000, V::Chain, 10_000, Kind::Est), 4000);
        assert_eq!(datagrams(4000, V::Nft, 10_000, Kind::New), 4000);
    }
}
