//! B6: throughput and CPU per Gbit over veth with the full dataplane; the fast path against the
//! routed path. iperf3 over the routed node of `weir::topology::Routed` (a host namespace that
//! forwards between two workloads, w1 and w2, and an outside network, each behind a veth), for
//! four variants, each in its own node, built once, and a fifth without a node:
//!
//! - **none**: no programs, no rules: the kernel's plain forwarding (the baseline);
//! - **routed**: no programs, and a Calico/kube-like iptables FORWARD chain in the host
//!   namespace (conntrack `RELATED,ESTABLISHED` accept first, then a few hundred per-endpoint
//!   dispatch rules that do not match, then accepts for the workloads' subnets);
//! - **weir fastpath=off**: weir's TC programs on the three host-side interfaces, fast path off;
//! - **weir fastpath=on**: the same with the fast path on (`bpf_redirect_peer` into a local
//!   workload, `bpf_fib_lookup` + `bpf_redirect(_neigh)` out of one);
//! - **floor**: no node at all: the two endpoints of each path joined by one veth pair directly
//!   (two `weir::sandbox::Sandbox`es: w1 → w2 and out → w1), no host namespace, no programs, no
//!   rules. Any redirect-based fast path still crosses a host-side veth and runs a program there,
//!   so this is the best one could do: floor ÷ routed says whether the goal is reachable at all.
//!
//! Tests: workload → workload (w1 → w2) and outside → workload (out → w1), each as TCP with one
//! stream, TCP with four, and UDP at an unlimited send rate (`-b 0`) with fixed datagrams. Within
//! a round every test runs the five variants back to back, the first one rotating every round.
//! CPU per Gbit is the whole machine's non-idle CPU time (/proc/stat) over the client's run,
//! divided by the Gbit the receiver got: the forwarding happens in softirq, which iperf3's own
//! CPU figures leave out.

use std::fmt::Write as _;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir::sandbox::{self, Sandbox};
use weir::topology::Routed;

use crate::env::{self, Facts};
use crate::flags::Flags;
use crate::proc::output_of;
use crate::report::{self, med, show, show_x, verdict};

/// The heading of B6's section.
pub const HEADING: &str = "## B6: throughput and CPU per Gbit over veth, fast path vs routed path";

const DEFAULT_ROUNDS: usize = 7;
const DEFAULT_SECONDS: u64 = 3;
/// Seconds per measurement of the untimed warm-up round.
const WARM_SECONDS: u64 = 1;
const PORT: u16 = 5201;
/// UDP payload per datagram: fits a 1500-byte MTU with IPv4 and UDP headers, no fragments.
const UDP_LEN: usize = 1400;
/// Streams of the parallel TCP test.
const STREAMS: usize = 4;
/// Workload endpoints that the routed variant's iptables rules describe (none of them exists).
const ENDPOINTS: usize = 150;
/// /proc/stat counts in USER_HZ, which is 100 on every Linux ABI (not CONFIG_HZ).
const USER_HZ: f64 = 100.0;
/// Busy CPUs of other work (median before the rounds) above which the section says that CPU
/// per Gbit was not measurable in this run.
const BUSY_BACKGROUND: f64 = 0.5;

// ---------------------------------------------------------------------------------------------
// Options

/// Command-line options of `b6`.
#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: usize,
    /// Seconds per measurement.
    pub seconds: u64,
    pub write: bool,
    /// Hidden `--dev`: fewer rounds allowed, nothing written.
    pub dev: bool,
}

impl Options {
    /// Parses `[--rounds N] [--seconds N] [--no-write]` (and the hidden `--dev`).
    ///
    /// # Errors
    /// A usage error, as a message.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut o = Self {
            rounds: DEFAULT_ROUNDS,
            seconds: DEFAULT_SECONDS,
            write: true,
            dev: false,
        };
        let mut f = Flags::new("b6", args);
        while let Some(a) = f.next_flag() {
            match a {
                "--rounds" => o.rounds = f.number(a)? as usize,
                "--seconds" => o.seconds = f.number(a)?,
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
            return Err(format!("b6: --rounds must be at least {min_rounds}"));
        }
        if !(1..=60).contains(&o.seconds) {
            return Err("b6: --seconds must be between 1 and 60".into());
        }
        Ok(o)
    }

    /// The command line that reproduces this run.
    pub fn command(&self) -> String {
        let mut c = format!(
            "cargo run --release -p weir-bench -- b6 --rounds {}",
            self.rounds
        );
        if self.seconds != DEFAULT_SECONDS {
            c += &format!(" --seconds {}", self.seconds);
        }
        c
    }
}

// ---------------------------------------------------------------------------------------------
// A minimal JSON reader (iperf3 -J), enough to pick numbers out of an object tree

#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(kv) => kv.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn at(&self, path: &[&str]) -> Option<&Json> {
        path.iter().try_fold(self, |j, k| j.get(k))
    }

    fn num(&self) -> Option<f64> {
        match self {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }

    fn str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }
}

struct JsonReader<'a> {
    b: &'a [u8],
    i: usize,
}

/// Nesting deeper than this is refused (iperf3's output is 4–5 levels deep).
const JSON_MAX_DEPTH: usize = 64;

impl JsonReader<'_> {
    fn err(&self, what: &str) -> String {
        format!("JSON: {what} at byte {}", self.i)
    }

    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected '{}'", c as char)))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > JSON_MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.ws();
        match self.peek() {
            Some(b'{') => {
                self.i += 1;
                let mut kv = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(kv));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.ws();
                    self.expect(b':')?;
                    let v = self.value(depth + 1)?;
                    kv.push((k, v));
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(kv));
                        }
                        _ => return Err(self.err("expected ',' or '}'")),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Ok(Json::Arr(v));
                }
                loop {
                    v.push(self.value(depth + 1)?);
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(v));
                        }
                        _ => return Err(self.err("expected ',' or ']'")),
                    }
                }
            }
            Some(b'"') => self.string().map(Json::Str),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("unexpected character")),
            None => Err(self.err("unexpected end")),
        }
    }

    fn literal(&mut self, word: &str, v: Json) -> Result<Json, String> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("bad literal"))
        }
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.i;
        while self.i < self.b.len()
            && matches!(
                self.b[self.i],
                b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
            )
        {
            self.i += 1;
        }
        let s = std::str::from_utf8(&self.b[start..self.i]).expect("ASCII");
        s.parse::<f64>()
            .map(Json::Num)
            .map_err(|_| format!("JSON: bad number '{s}' at byte {start}"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .b
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.err("bad \\u escape"))?;
        self.i += 4;
        Ok(h)
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = self.peek().ok_or_else(|| self.err("unterminated string"))?;
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = self.peek().ok_or_else(|| self.err("unterminated escape"))?;
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xd800..0xdc00).contains(&hi)
                                && self.b[self.i..].starts_with(b"\\u")
                            {
                                self.i += 2;
                                let lo = self.hex4()?;
                                0x10000 + ((hi - 0xd800) << 10) + (lo.wrapping_sub(0xdc00) & 0x3ff)
                            } else {
                                hi
                            };
                            char::from_u32(code).unwrap_or('\u{fffd}')
                        }
                        _ => return Err(self.err("bad escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("string is not UTF-8"))
    }
}

/// Parses one JSON document (whitespace around it allowed, nothing else).
fn parse_json(text: &str) -> Result<Json, String> {
    let mut r = JsonReader {
        b: text.as_bytes(),
        i: 0,
    };
    let v = r.value(0)?;
    r.ws();
    if r.i != r.b.len() {
        return Err(r.err("trailing characters"));
    }
    Ok(v)
}

/// What one iperf3 client run reports for the receiving side.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Iperf {
    /// Bytes the server received.
    bytes: f64,
    /// Received bits per second, over the receiver's own interval.
    bps: f64,
    /// UDP only: the share of datagrams that did not arrive, in percent.
    lost_percent: Option<f64>,
}

/// Reads `end.sum_received` of an iperf3 `-J` report (iperf3 ≥ 3.9 has it for UDP too), or the
/// report's own `error`.
fn parse_iperf(text: &str, udp: bool) -> Result<Iperf, String> {
    let j = parse_json(text).map_err(|e| format!("iperf3 -J output: {e}"))?;
    if let Some(e) = j.get("error").and_then(Json::str) {
        return Err(format!("iperf3: {e}"));
    }
    let r = j
        .at(&["end", "sum_received"])
        .ok_or("iperf3 -J output has no end.sum_received")?;
    let num = |k: &str| {
        r.get(k)
            .and_then(Json::num)
            .ok_or_else(|| format!("iperf3 -J output: end.sum_received.{k} is missing"))
    };
    Ok(Iperf {
        bytes: num("bytes")?,
        bps: num("bits_per_second")?,
        lost_percent: if udp {
            Some(num("lost_percent")?)
        } else {
            None
        },
    })
}

// ---------------------------------------------------------------------------------------------
// /proc/stat

/// The machine's CPU time so far, in USER_HZ ticks summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct CpuTicks {
    /// user + nice + system + irq + softirq + steal (guest time is already inside user).
    busy: u64,
    /// busy + idle + iowait.
    total: u64,
}

impl CpuTicks {
    /// Busy CPU seconds between `earlier` and `self`.
    fn busy_secs_since(&self, earlier: &CpuTicks) -> f64 {
        self.busy.saturating_sub(earlier.busy) as f64 / USER_HZ
    }
}

/// The aggregate `cpu ` line of /proc/stat.
fn parse_proc_stat(text: &str) -> Result<CpuTicks, String> {
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or("/proc/stat has no 'cpu ' line")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|w| w.parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("/proc/stat: malformed line '{line}'"))?;
    if f.len() < 4 {
        return Err(format!("/proc/stat: too few fields in '{line}'"));
    }
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal guest guest_nice
    let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    Ok(CpuTicks {
        busy,
        total: busy + at(3) + at(4),
    })
}

fn cpu_now() -> Result<CpuTicks, String> {
    let t =
        std::fs::read_to_string("/proc/stat").map_err(|e| format!("reading /proc/stat: {e}"))?;
    parse_proc_stat(&t)
}

// ---------------------------------------------------------------------------------------------
// The routed variant's iptables rules

/// A Calico/kube-like FORWARD chain (an `iptables-restore` file): conntrack first, then
/// dispatch by interface into per-endpoint chains (`ENDPOINTS` endpoints, none of which
/// exists, so a new flow walks past 2 × `ENDPOINTS` rules), then accepts for the workloads'
/// subnets. The comments name the rules whose counters prove packets went through them.
fn iptables_rules() -> String {
    let ep = |i: usize| format!("cali{i:011x}");
    let mut t = String::with_capacity(ENDPOINTS * 600);
    t += "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n";
    t += ":b6-from-wl-dispatch - [0:0]\n:b6-to-wl-dispatch - [0:0]\n";
    for i in 0..ENDPOINTS {
        let _ = writeln!(t, ":b6-fw-{} - [0:0]\n:b6-tw-{} - [0:0]", ep(i), ep(i));
    }
    t += "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED \
          -m comment --comment b6-established -j ACCEPT\n";
    t += "-A FORWARD -m conntrack --ctstate INVALID -j DROP\n";
    t += "-A FORWARD -j b6-from-wl-dispatch\n-A FORWARD -j b6-to-wl-dispatch\n";
    for net in ["198.18.1.0/24", "198.18.2.0/24"] {
        for dir in ["-s", "-d"] {
            let _ = writeln!(
                t,
                "-A FORWARD {dir} {net} -m comment --comment b6-subnet -j ACCEPT"
            );
        }
    }
    for i in 0..ENDPOINTS {
        let _ = writeln!(t, "-A b6-from-wl-dispatch -i {} -g b6-fw-{}", ep(i), ep(i));
    }
    for i in 0..ENDPOINTS {
        let _ = writeln!(t, "-A b6-to-wl-dispatch -o {} -g b6-tw-{}", ep(i), ep(i));
    }
    for i in 0..ENDPOINTS {
        let ip = Ipv4Addr::new(10, 244, (i / 250) as u8, (i % 250 + 1) as u8);
        let (fw, tw) = (format!("b6-fw-{}", ep(i)), format!("b6-tw-{}", ep(i)));
        let _ = writeln!(t, "-A {fw} ! -s {ip}/32 -j DROP");
        let _ = writeln!(t, "-A {fw} -p udp -m udp --dport 53 -j ACCEPT");
        let _ = writeln!(t, "-A {fw} -p tcp -m multiport --dports 80,443 -j ACCEPT");
        let _ = writeln!(t, "-A {fw} -j DROP");
        let _ = writeln!(
            t,
            "-A {tw} -s 10.244.0.0/16 -p tcp -m tcp --dport 8080 -j ACCEPT"
        );
        let _ = writeln!(t, "-A {tw} -j DROP");
    }
    t += "COMMIT\n";
    t
}

/// Packet counters of the rules commented `comment` in `iptables -L FORWARD -v -x -n` output.
fn rule_packets(listing: &str, comment: &str) -> u64 {
    let tag = format!("/* {comment} */");
    listing
        .lines()
        .filter(|l| l.contains(&tag))
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

// ---------------------------------------------------------------------------------------------
// Variants, tests and the nodes

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum V {
    None,
    Routed,
    WeirOff,
    WeirOn,
    /// One veth pair straight between the two endpoints: no host, no programs, no rules.
    Floor,
}

const VARIANTS: [V; 5] = [V::None, V::Routed, V::WeirOff, V::WeirOn, V::Floor];

impl V {
    fn name(self) -> &'static str {
        match self {
            V::None => "none",
            V::Routed => "routed (iptables)",
            V::WeirOff => "weir fastpath=off",
            V::WeirOn => "weir fastpath=on",
            V::Floor => "direct veth, no host (the floor)",
        }
    }

    /// The short name in the progress lines.
    fn short(self) -> &'static str {
        match self {
            V::None => "none",
            V::Routed => "routed",
            V::WeirOff => "off",
            V::WeirOn => "on",
            V::Floor => "floor",
        }
    }

    /// The node's (or the floor's sandboxes') name tag (≤ 3 characters).
    fn tag(self) -> &'static str {
        match self {
            V::None => "b6n",
            V::Routed => "b6r",
            V::WeirOff => "b6f",
            V::WeirOn => "b6p",
            V::Floor => "b6d",
        }
    }

    fn idx(self) -> usize {
        VARIANTS.iter().position(|&v| v == self).expect("a variant")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// w1 → w2.
    W1W2,
    /// out → w1.
    OutW1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Tcp,
    TcpParallel,
    Udp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Test {
    way: Way,
    proto: Proto,
}

const TESTS: [Test; 6] = [
    Test {
        way: Way::W1W2,
        proto: Proto::Tcp,
    },
    Test {
        way: Way::W1W2,
        proto: Proto::TcpParallel,
    },
    Test {
        way: Way::W1W2,
        proto: Proto::Udp,
    },
    Test {
        way: Way::OutW1,
        proto: Proto::Tcp,
    },
    Test {
        way: Way::OutW1,
        proto: Proto::TcpParallel,
    },
    Test {
        way: Way::OutW1,
        proto: Proto::Udp,
    },
];

impl Test {
    fn way_name(self) -> &'static str {
        match self.way {
            Way::W1W2 => "w1 → w2",
            Way::OutW1 => "out → w1",
        }
    }

    fn proto_name(self) -> String {
        match self.proto {
            Proto::Tcp => "TCP, 1 stream".into(),
            Proto::TcpParallel => format!("TCP, {STREAMS} streams"),
            Proto::Udp => format!("UDP {UDP_LEN} B, -b 0"),
        }
    }

    fn udp(self) -> bool {
        self.proto == Proto::Udp
    }

    /// iperf3 client arguments after `-c ADDR`.
    fn iperf_args(self, seconds: u64) -> Vec<String> {
        let mut a: Vec<String> = ["-p", &PORT.to_string(), "-t", &seconds.to_string()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(["-J", "--connect-timeout", "3000"].map(String::from));
        match self.proto {
            Proto::Tcp => {}
            Proto::TcpParallel => a.extend(["-P".into(), STREAMS.to_string()]),
            Proto::Udp => a.extend(
                ["-u", "-b", "0", "-l"]
                    .map(String::from)
                    .into_iter()
                    .chain(std::iter::once(UDP_LEN.to_string())),
            ),
        }
        a
    }
}

/// One measurement.
#[derive(Debug, Clone, Copy)]
struct Meas {
    gbps: f64,
    /// Busy CPU ms of the whole machine per Gbit received.
    cpu_ms_per_gbit: f64,
    /// Busy CPUs over the run (0..=number of CPUs).
    busy_cpus: f64,
    lost_percent: Option<f64>,
}

/// Counters that prove what path a variant's packets took, summed over the node.
#[derive(Debug, Clone, Copy, Default)]
struct PathCounters {
    /// routed: the `RELATED,ESTABLISHED` accept; the subnet accepts (new flows).
    established: u64,
    subnet: u64,
    /// weir: packets at TC ingress of the host interfaces, and those redirected.
    tc_ingress: u64,
    fastpath_in: u64,
    fastpath_out: u64,
}

impl PathCounters {
    fn since(&self, e: &PathCounters) -> PathCounters {
        PathCounters {
            established: self.established - e.established,
            subnet: self.subnet - e.subnet,
            tc_ingress: self.tc_ingress - e.tc_ingress,
            fastpath_in: self.fastpath_in - e.fastpath_in,
            fastpath_out: self.fastpath_out - e.fastpath_out,
        }
    }
}

fn run_ok(argv: &[&str]) -> Result<String, String> {
    output_of(argv)
}

/// The floor: for each path, its two endpoints joined by one veth pair (a sandbox's `a` is the
/// client, `b` the server), with nothing between them.
struct Floor {
    /// w1 (a) → w2 (b).
    w1w2: Sandbox,
    /// out (a) → w1 (b).
    out_w1: Sandbox,
}

impl Floor {
    fn new(v: V) -> Result<Self, String> {
        let sb = |what: &str| {
            Sandbox::new(v.tag()).map_err(|e| format!("building the floor's {what} veth: {e}"))
        };
        Ok(Floor {
            w1w2: sb("w1 → w2")?,
            out_w1: sb("out → w1")?,
        })
    }

    fn both(&self) -> [&Sandbox; 2] {
        [&self.w1w2, &self.out_w1]
    }
}

/// Where a variant's endpoints live.
enum Net {
    Routed(Routed),
    Floor(Floor),
}

impl Net {
    /// A name unique to this variant (the scratch files').
    fn name(&self) -> &str {
        match self {
            Net::Routed(r) => &r.host,
            Net::Floor(f) => &f.w1w2.ns_a,
        }
    }

    /// The namespaces the iperf3 servers run in.
    fn server_netns(&self) -> [String; 2] {
        match self {
            Net::Routed(r) => [r.w1.netns.clone(), r.w2.netns.clone()],
            Net::Floor(f) => [f.w1w2.ns_b.clone(), f.out_w1.ns_b.clone()],
        }
    }

    /// The client's namespace and the server's address for `way`.
    fn client(&self, way: Way) -> (&str, Ipv4Addr) {
        match (self, way) {
            (Net::Routed(r), Way::W1W2) => (&r.w1.netns, r.w2.v4),
            (Net::Routed(r), Way::OutW1) => (&r.out.netns, r.w1.v4),
            (Net::Floor(f), Way::W1W2) => (&f.w1w2.ns_a, sandbox::ADDR_B4),
            (Net::Floor(f), Way::OutW1) => (&f.out_w1.ns_a, sandbox::ADDR_B4),
        }
    }
}

/// Sends one datagram to each of `targets` (port 9, nobody listens) from the calling thread's
/// namespace.
fn send_warm_up(targets: &[Ipv4Addr]) -> Result<(), String> {
    let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("bind: {e}"))?;
    for t in targets {
        s.send_to(b"b6 warm-up", SocketAddrV4::new(*t, 9))
            .map_err(|e| format!("send_to {t}: {e}"))?;
    }
    Ok(())
}

/// One variant's network with its iperf3 servers (in the two server namespaces).
struct Node {
    v: V,
    /// Declared first: the servers are killed (Drop) before the namespaces go.
    servers: Vec<Child>,
    net: Net,
}

impl Drop for Node {
    fn drop(&mut self) {
        for c in &mut self.servers {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sets up variant `v` in the routed node `node`: its rules or its programs.
fn set_up(v: V, node: &Routed, scratch: &Path) -> Result<(), String> {
    match v {
        V::None | V::Floor => {}
        V::Routed => {
            let f = scratch.join(format!("{}.rules", node.host));
            let rules = iptables_rules();
            std::fs::write(&f, &rules).map_err(|e| format!("writing {}: {e}", f.display()))?;
            // On stdin: iptables-nft-restore 1.8.9 with `-w FILE` reads nothing from FILE
            // and still exits 0.
            let input = File::open(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            let out = Command::new("ip")
                .args(["netns", "exec", &node.host, "iptables-restore", "-w"])
                .stdin(input)
                .output()
                .map_err(|e| format!("running iptables-restore: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "iptables-restore in {} failed ({}): {}",
                    node.host,
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            let listed = run_ok(&["ip", "netns", "exec", &node.host, "iptables", "-w", "-S"])?;
            let (want, got) = (
                rules.lines().filter(|l| l.starts_with("-A")).count(),
                listed.lines().filter(|l| l.starts_with("-A")).count(),
            );
            if want != got {
                return Err(format!(
                    "iptables-restore in {} loaded {got} rules of {want}",
                    node.host
                ));
            }
        }
        V::WeirOff | V::WeirOn => {
            let fp = if v == V::WeirOn { "on" } else { "off" };
            let text = node.config(&format!("fastpath={fp}"));
            let cfg = weir::config::parse("b6.conf", &text).map_err(|e| e.to_string())?;
            let dp = weir::Dataplane::new(node.pin_dir.clone());
            node.run_in(&node.host, || dp.load(&cfg))
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("weir load ({}): {e}", v.name()))?;
        }
    }
    Ok(())
}

impl Node {
    fn build(v: V, scratch: &Path) -> Result<Self, String> {
        let net = if v == V::Floor {
            Net::Floor(Floor::new(v)?)
        } else {
            let node =
                Routed::new(v.tag()).map_err(|e| format!("building the {} node: {e}", v.name()))?;
            Net::Routed(node)
        };
        let mut n = Node {
            v,
            servers: Vec::new(),
            net,
        };
        if let Net::Routed(node) = &n.net {
            set_up(v, node, scratch)?;
        }
        for ns in n.net.server_netns() {
            let c = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &ns,
                    "iperf3",
                    "-s",
                    "-p",
                    &PORT.to_string(),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("starting iperf3 -s in {ns}: {e}"))?;
            n.servers.push(c);
        }
        for ns in n.net.server_netns() {
            n.wait_listening(&ns)?;
        }
        n.warm_up()?;
        Ok(n)
    }

    fn wait_listening(&mut self, ns: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let filter = format!("sport = :{PORT}");
        loop {
            let out = run_ok(&["ip", "netns", "exec", ns, "ss", "-Hltn", &filter])?;
            if !out.trim().is_empty() {
                return Ok(());
            }
            for c in &mut self.servers {
                if let Ok(Some(st)) = c.try_wait() {
                    return Err(format!("iperf3 -s in {ns} exited: {st}"));
                }
            }
            if Instant::now() > deadline {
                return Err(format!("iperf3 -s in {ns} does not listen after 10 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every leg sends a datagram to its gateway and to the other legs, so that weir learns
    /// the workloads' MACs and the host its neighbours (the same for every variant); in the
    /// floor, each end to the other.
    fn warm_up(&self) -> Result<(), String> {
        match &self.net {
            Net::Routed(node) => {
                let legs = node.legs();
                for l in legs {
                    let targets: Vec<Ipv4Addr> = std::iter::once(l.gw4)
                        .chain(legs.iter().filter(|o| o.v4 != l.v4).map(|o| o.v4))
                        .collect();
                    node.run_in(&l.netns, || send_warm_up(&targets))
                        .map_err(|e| e.to_string())??;
                }
            }
            Net::Floor(f) => {
                for sb in f.both() {
                    sb.in_a(|| send_warm_up(&[sandbox::ADDR_B4]))
                        .map_err(|e| e.to_string())??;
                    sb.in_b(|| send_warm_up(&[sandbox::ADDR_A4]))
                        .map_err(|e| e.to_string())??;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        Ok(())
    }

    /// One iperf3 client run of `t`, with the machine's CPU time around it.
    fn measure(&self, t: Test, seconds: u64, scratch: &Path) -> Result<Meas, String> {
        let (from, to) = self.net.client(t.way);
        let out_path = scratch.join(format!("{}.json", self.net.name()));
        let out = File::create(&out_path).map_err(|e| format!("{}: {e}", out_path.display()))?;
        let to_s = to.to_string();
        let mut argv: Vec<String> = ["ip", "netns", "exec", from, "iperf3", "-c", &to_s]
            .iter()
            .map(|s| s.to_string())
            .collect();
        argv.extend(t.iperf_args(seconds));
        let shell = argv.join(" ");
        let c0 = cpu_now()?;
        let w0 = Instant::now();
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawning `{shell}`: {e}"))?;
        let deadline = w0 + Duration::from_secs(seconds + 20);
        let status = loop {
            if let Some(st) = child.try_wait().map_err(|e| format!("`{shell}`: {e}"))? {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{shell}` ({}) still runs after {} s",
                    self.v.name(),
                    seconds + 20
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let wall = w0.elapsed().as_secs_f64();
        let c1 = cpu_now()?;
        let text = std::fs::read_to_string(&out_path)
            .map_err(|e| format!("{}: {e}", out_path.display()))?;
        let r = parse_iperf(&text, t.udp())
            .map_err(|e| format!("`{shell}` ({}, {status}): {e}", self.v.name()))?;
        if !status.success() {
            return Err(format!("`{shell}` ({}) failed: {status}", self.v.name()));
        }
        let gbit = r.bytes * 8.0 / 1e9;
        if gbit <= 0.0 {
            return Err(format!("`{shell}` ({}): nothing received", self.v.name()));
        }
        let busy = c1.busy_secs_since(&c0);
        Ok(Meas {
            gbps: r.bps / 1e9,
            cpu_ms_per_gbit: busy * 1e3 / gbit,
            busy_cpus: busy / wall,
            lost_percent: r.lost_percent,
        })
    }

    fn counters(&self) -> Result<PathCounters, String> {
        let mut c = PathCounters::default();
        // The floor has no host, so nothing to count.
        let Net::Routed(node) = &self.net else {
            return Ok(c);
        };
        match self.v {
            V::None | V::Floor => {}
            V::Routed => {
                let l = run_ok(&[
                    "ip", "netns", "exec", &node.host, "iptables", "-w", "-L", "FORWARD", "-v",
                    "-x", "-n",
                ])?;
                c.established = rule_packets(&l, "b6-established");
                c.subnet = rule_packets(&l, "b6-subnet");
            }
            V::WeirOff | V::WeirOn => {
                let dp = weir::Dataplane::new(node.pin_dir.clone());
                let st = node
                    .run_in(&node.host, || dp.status())
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("weir status ({}): {e}", self.v.name()))?;
                let sum = |hook: &str| -> u64 {
                    st.if_counters
                        .iter()
                        .filter(|x| x.hook == hook)
                        .map(|x| x.counter.packets)
                        .sum()
                };
                c.tc_ingress = sum("tc-ingress");
                c.fastpath_in = sum("fastpath-in");
                c.fastpath_out = sum("fastpath-out");
            }
        }
        Ok(c)
    }
}

/// The busy CPUs of the machine while nothing of ours runs (other sessions, daemons).
fn background(d: Duration) -> Result<f64, String> {
    let a = cpu_now()?;
    let t = Instant::now();
    std::thread::sleep(d);
    let b = cpu_now()?;
    Ok(b.busy_secs_since(&a) / t.elapsed().as_secs_f64())
}

fn tool_versions() -> Vec<String> {
    let first = |argv: &[&str]| {
        output_of(argv)
            .map(|s| s.lines().next().unwrap_or("").trim().to_owned())
            .unwrap_or_else(|e| e)
    };
    vec![first(&["iperf3", "--version"]), first(&["iptables", "-V"])]
}

/// Per (test index, variant index): one measurement per timed round.
type Samples = Vec<Vec<Vec<Meas>>>;

/// Runs B6 and writes its section of BENCHMARKS.md.
///
/// # Errors
/// A missing prerequisite, a failed command, or a variant whose counters show it did not take
/// the path it stands for.
pub fn run(opts: &Options) -> Result<(), String> {
    let t0 = Instant::now();
    let mut facts = env::prelude(
        "B6",
        &[
            ("ip", "iproute2"),
            ("ss", "iproute2"),
            ("iperf3", "iperf3"),
            ("iptables", "iptables"),
            ("iptables-restore", "iptables"),
        ],
    )?;
    facts.tools = tool_versions();
    let scratch = env::Scratch::new("b6")?;
    eprintln!(
        "B6: {} rounds of {} tests × {} variants, {} s each; building the nodes",
        opts.rounds,
        TESTS.len(),
        VARIANTS.len(),
        opts.seconds
    );
    let nodes: Vec<Node> = VARIANTS
        .iter()
        .map(|&v| Node::build(v, &scratch.0))
        .collect::<Result<_, _>>()?;

    // One untimed warm-up round (short measurements: neighbours, MACs, conntrack, caches),
    // then the timed ones.
    let mut samples: Samples = vec![vec![Vec::new(); VARIANTS.len()]; TESTS.len()];
    let mut bg = Vec::new();
    let mut before = Vec::new();
    for round in 0..=opts.rounds {
        if round == 1 {
            before = nodes.iter().map(Node::counters).collect::<Result<_, _>>()?;
        }
        let tr = Instant::now();
        if round > 0 {
            bg.push(background(Duration::from_millis(500))?);
        }
        let secs = if round == 0 {
            WARM_SECONDS
        } else {
            opts.seconds
        };
        let mut line = Vec::new();
        for (ti, &t) in TESTS.iter().enumerate() {
            let mut order: Vec<usize> = (0..nodes.len()).collect();
            order.rotate_left(round % nodes.len());
            let mut got = vec![0.0; nodes.len()];
            for i in order {
                let m = nodes[i].measure(t, secs, &scratch.0)?;
                got[i] = m.gbps;
                if round > 0 {
                    samples[ti][i].push(m);
                }
            }
            line.push(format!(
                "{} {}: {}",
                t.way_name(),
                t.proto_name(),
                got.iter()
                    .map(|g| format!("{g:.1}"))
                    .collect::<Vec<_>>()
                    .join("/")
            ));
        }
        eprintln!(
            "{} ({:.0} s), Gbit/s {}: {}",
            if round == 0 {
                "warm-up round".to_owned()
            } else {
                format!("round {round}/{}", opts.rounds)
            },
            tr.elapsed().as_secs_f64(),
            VARIANTS.map(V::short).join("/"),
            line.join("; ")
        );
    }
    let after: Vec<PathCounters> = nodes.iter().map(Node::counters).collect::<Result<_, _>>()?;
    let counts: Vec<PathCounters> = after.iter().zip(&before).map(|(a, b)| a.since(b)).collect();
    check_paths(&counts)?;

    let report = Report {
        opts,
        facts,
        samples,
        background: bg,
        counts,
        minutes: t0.elapsed().as_secs_f64() / 60.0,
    };
    let section = report.section();
    println!("{section}");
    if opts.write {
        let path = env::workspace_root().join("BENCHMARKS.md");
        report::write_section(&path, HEADING, &section)?;
        eprintln!("wrote the B6 section of {}", path.display());
    }
    // Servers, programs, rules and namespaces go with the nodes (RAII), also on error paths.
    drop(nodes);
    Ok(())
}

/// Each variant really took its path during the timed rounds: the routed variant's FORWARD
/// rules counted, weir with the fast path on redirected packets, with it off none.
fn check_paths(c: &[PathCounters]) -> Result<(), String> {
    let r = &c[V::Routed.idx()];
    if r.established == 0 || r.subnet == 0 {
        return Err(format!(
            "the routed variant's FORWARD rules did not count (established {}, subnet accepts \
             {}): its traffic did not go through them",
            r.established, r.subnet
        ));
    }
    let on = &c[V::WeirOn.idx()];
    if on.fastpath_in == 0 {
        return Err(format!(
            "weir fastpath=on: the fastpath-in counter did not grow ({} packets at TC ingress): \
             the variant did not take the fast path",
            on.tc_ingress
        ));
    }
    let off = &c[V::WeirOff.idx()];
    if off.tc_ingress == 0 || off.fastpath_in + off.fastpath_out != 0 {
        return Err(format!(
            "weir fastpath=off: {} packets at TC ingress, {} + {} fast-pathed (want > 0 and 0)",
            off.tc_ingress, off.fastpath_in, off.fastpath_out
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The report

struct Report<'a> {
    opts: &'a Options,
    facts: Facts,
    samples: Samples,
    background: Vec<f64>,
    counts: Vec<PathCounters>,
    minutes: f64,
}

fn ratio(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x / y).collect()
}

/// The fast path's goal, on per-round ratios to the routed path: a median of at least 1.2× its
/// throughput, or of at most 0.8× its CPU per Gbit. False without samples.
fn goal_met(thr: &[f64], cpu: &[f64]) -> bool {
    med(thr) >= 1.2 || med(cpu) <= 0.8
}

/// The floor's line for one test: whether the goal is reachable at all, with the floor's
/// ratios to the routed path (median and range).
fn reachable_line(test: &str, thr: &[f64], cpu: &[f64]) -> String {
    format!(
        "  - {test}: reachable: {} (floor {:.2}× / {:.2}×: throughput {}, CPU per Gbit {})",
        if goal_met(thr, cpu) {
            "**yes**"
        } else {
            "**no**"
        },
        med(thr),
        med(cpu),
        show_x(thr),
        show_x(cpu)
    )
}

impl Report<'_> {
    fn get(&self, ti: usize, v: V, f: impl Fn(&Meas) -> f64) -> Vec<f64> {
        self.samples[ti][v.idx()].iter().map(f).collect()
    }

    fn gbps(&self, ti: usize, v: V) -> Vec<f64> {
        self.get(ti, v, |m| m.gbps)
    }

    fn cpu(&self, ti: usize, v: V) -> Vec<f64> {
        self.get(ti, v, |m| m.cpu_ms_per_gbit)
    }

    fn section(&self) -> String {
        let mut s = String::new();
        let f = &self.facts;
        let _ = writeln!(s, "{HEADING}\n");
        let _ = writeln!(
            s,
            "iperf3 between network namespaces of a routed node (`weir::topology::Routed`): a \
             host namespace forwarding between two workloads (w1, w2) and an outside network, \
             each behind a veth pair (MTU 1500). Five variants, built once, the first four each \
             in its own node: **none** (plain forwarding, no programs, no rules); **routed** (no \
             programs; \
             an iptables FORWARD chain like Calico's or kube-proxy's, loaded with \
             `iptables-restore` into the node's host namespace: a conntrack `RELATED,ESTABLISHED` \
             accept first, `INVALID` drop, then {} non-matching per-endpoint dispatch rules \
             (`-i`/`-o cali…` into per-endpoint chains, {} rules in all), then accepts for the \
             workloads' subnets); **weir fastpath=off** (weir's TC ingress and egress programs \
             on the three host-side veths, fast path off); **weir fastpath=on** (the same with \
             the fast path: `bpf_redirect_peer` into a local workload, `bpf_fib_lookup` + \
             `bpf_redirect`/`bpf_redirect_neigh` out of one); and **{}**: no node at all, the \
             two endpoints of each path joined by one veth pair straight (per path two \
             namespaces and a veth between them, `weir::sandbox::Sandbox`, MTU 1500: the \
             client's, w1 or out, and the server's, w2 or w1), no host namespace, no programs, \
             no rules. A redirect-based fast path still crosses a host-side veth and runs a TC \
             program and a FIB lookup there, so the floor is the best any of them could do here: \
             floor ÷ routed says whether the fast path's goal is reachable at all on this \
             machine. Every endpoint sent one datagram after the build (weir learns the \
             workloads' MACs, the host its neighbours; in the floor each end its peer's). Tests: \
             w1 → w2 and out → w1, each TCP with one stream (iperf3's default), TCP with {} \
             streams (`-P {}`), and UDP with {} B datagrams at an unlimited rate (`-u -b 0 -l \
             {}`); throughput is what the receiver got (`end.sum_received`). **CPU per Gbit** is \
             the whole machine's non-idle CPU time from /proc/stat (user, system, irq, softirq, \
             steal) from the client's start to its exit, divided by the Gbit received: the \
             forwarding runs in softirq, which iperf3's own CPU figures leave out.\n",
            2 * ENDPOINTS,
            iptables_rules()
                .lines()
                .filter(|l| l.starts_with("-A"))
                .count(),
            V::Floor.name(),
            STREAMS,
            STREAMS,
            UDP_LEN,
            UDP_LEN
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
            "- {} timed rounds of {} s per measurement after one untimed warm-up round ({} s \
             each); within a round each test runs the {} variants back to back, the first \
             one rotating every round. Ratios are taken within a round. The run took {:.1} \
             minutes.",
            self.opts.rounds,
            self.opts.seconds,
            WARM_SECONDS,
            VARIANTS.len(),
            self.minutes
        );
        let _ = writeln!(
            s,
            "- Background load (busy CPUs of the machine over 0.5 s before each round, nothing \
             of this benchmark running): {}. The machine is shared; that load is inside every \
             CPU figure below and takes cycles from iperf3.\n",
            show(&self.background, 2)
        );
        let _ = writeln!(
            s,
            "| path | test | variant | received Gbit/s | ÷ none | ÷ routed | CPU ms per Gbit | CPU ÷ routed | busy CPUs | UDP loss % |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
        for (ti, t) in TESTS.iter().enumerate() {
            for v in VARIANTS {
                let g = self.gbps(ti, v);
                let c = self.cpu(ti, v);
                let vs_none = if v == V::None {
                    "1".to_owned()
                } else {
                    show_x(&ratio(&g, &self.gbps(ti, V::None)))
                };
                let (vs_routed, cpu_routed) = if v == V::Routed {
                    ("1".to_owned(), "1".to_owned())
                } else {
                    (
                        show_x(&ratio(&g, &self.gbps(ti, V::Routed))),
                        show_x(&ratio(&c, &self.cpu(ti, V::Routed))),
                    )
                };
                let loss = if t.udp() {
                    show(&self.get(ti, v, |m| m.lost_percent.unwrap_or(f64::NAN)), 1)
                } else {
                    "–".into()
                };
                let name = if v == V::WeirOn {
                    format!("**{}**", v.name())
                } else {
                    v.name().to_owned()
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {name} | {} | {vs_none} | {vs_routed} | {} | {cpu_routed} | {:.2} | {loss} |",
                    t.way_name(),
                    t.proto_name(),
                    show(&g, 2),
                    show(&c, 0),
                    med(&self.get(ti, v, |m| m.busy_cpus)),
                );
            }
        }
        let _ = writeln!(s, "\n{}", self.checks());
        let _ = writeln!(s, "Issue goals (medians of per-round ratios, per test):\n");
        let _ = write!(s, "{}", self.goals());
        let _ = writeln!(s, "\n{}", self.meaning());
        s
    }

    fn checks(&self) -> String {
        let c = |v: V| self.counts[v.idx()];
        let (r, on, off) = (c(V::Routed), c(V::WeirOn), c(V::WeirOff));
        let share = if on.tc_ingress > 0 {
            100.0 * (on.fastpath_in + on.fastpath_out) as f64 / on.tc_ingress as f64
        } else {
            f64::NAN
        };
        format!(
            "Path checks over the timed rounds (the run fails when one does not hold): the \
             routed variant's `RELATED,ESTABLISHED` rule counted {} packets and its subnet \
             accepts {} (the first packets of new flows); with **fastpath=on**, of {} packets \
             at weir's TC ingress on the host interfaces, {} were redirected into a workload \
             (`fastpath-in`) and {} out of one (`fastpath-out`), {share:.1} % in all; with \
             fastpath=off, {} packets at TC ingress and none redirected. The floor has no host \
             and nothing to count.\n",
            r.established, r.subnet, on.tc_ingress, on.fastpath_in, on.fastpath_out, off.tc_ingress
        )
    }

    fn goals(&self) -> String {
        let mut g = String::new();
        let mut met_fast = 0;
        let mut met_off = 0;
        let mut reachable = 0;
        let mut lines_fast = String::new();
        let mut lines_off = String::new();
        let mut lines_floor = String::new();
        for (ti, t) in TESTS.iter().enumerate() {
            let thr = ratio(&self.gbps(ti, V::WeirOn), &self.gbps(ti, V::Routed));
            let cpu = ratio(&self.cpu(ti, V::WeirOn), &self.cpu(ti, V::Routed));
            let ok = goal_met(&thr, &cpu);
            met_fast += usize::from(ok);
            let test = format!("{} {}", t.way_name(), t.proto_name());
            let _ = writeln!(
                lines_fast,
                "  - {test}: throughput {}, CPU per Gbit {} → {}",
                show_x(&thr),
                show_x(&cpu),
                verdict(ok)
            );
            // The same goal for the floor: can any fast path meet it here?
            let floor_thr = ratio(&self.gbps(ti, V::Floor), &self.gbps(ti, V::Routed));
            let floor_cpu = ratio(&self.cpu(ti, V::Floor), &self.cpu(ti, V::Routed));
            reachable += usize::from(goal_met(&floor_thr, &floor_cpu));
            let _ = writeln!(
                lines_floor,
                "{}",
                reachable_line(&test, &floor_thr, &floor_cpu)
            );
            let off = ratio(&self.gbps(ti, V::WeirOff), &self.gbps(ti, V::None));
            let ok = med(&off) >= 0.9;
            met_off += usize::from(ok);
            let _ = writeln!(
                lines_off,
                "  - {} {}: throughput {} (CPU per Gbit {}) → {}",
                t.way_name(),
                t.proto_name(),
                show_x(&off),
                show_x(&ratio(&self.cpu(ti, V::WeirOff), &self.cpu(ti, V::None))),
                verdict(ok)
            );
        }
        let n = TESTS.len();
        let _ = writeln!(
            g,
            "- fast path ≥ 1.2× the routed path's throughput, or ≤ 0.8× its CPU per Gbit \
             (`fastpath=on` ÷ `routed`): met in {met_fast} of {n} tests → {}",
            verdict(met_fast == n)
        );
        g += &lines_fast;
        let _ = writeln!(
            g,
            "- is that goal reachable at all on this machine? The same test for the floor \
             (`{}` ÷ `routed`; no redirect-based fast path can beat one veth with nothing \
             between the endpoints): reachable in {reachable} of {n} tests",
            V::Floor.name()
        );
        g += &lines_floor;
        let _ = writeln!(
            g,
            "- weir with fastpath=off ≥ 0.9× the no-program baseline's throughput \
             (`fastpath=off` ÷ `none`): met in {met_off} of {n} tests → {}",
            verdict(met_off == n)
        );
        g += &lines_off;
        g
    }

    fn meaning(&self) -> String {
        let m = |ti: usize, v: V| med(&self.gbps(ti, v));
        let cm = |ti: usize, v: V| med(&self.cpu(ti, v));
        let r = |ti: usize, a: V, b: V| med(&ratio(&self.gbps(ti, a), &self.gbps(ti, b)));
        let rc = |ti: usize, a: V, b: V| med(&ratio(&self.cpu(ti, a), &self.cpu(ti, b)));
        let busy = |ti: usize, v: V| med(&self.get(ti, v, |m| m.busy_cpus));
        // TESTS: 0 w1→w2 TCP, 2 w1→w2 UDP, 3 out→w1 TCP, 5 out→w1 UDP.
        let bg = med(&self.background);
        let mut t = "**What the numbers mean.** ".to_owned();
        if bg >= BUSY_BACKGROUND {
            // With the CPUs saturated by others, busy time is just wall time × CPUs.
            t += &format!(
                "Other work on this shared machine kept {bg:.2} of its {} CPUs busy (median \
                 of the samples before each round) while this ran, so the machine was \
                 saturated throughout (every measurement shows ≈ {:.2} busy CPUs): CPU per \
                 Gbit is then all CPUs × time ÷ Gbit, the inverse of throughput, and says \
                 nothing beyond it, and iperf3 got whatever share of the CPUs the scheduler \
                 left it, which is why the ranges are wide. Only the ratios within a round \
                 mean something here; rerun on a quiet machine for CPU per Gbit. ",
                self.facts.cpus,
                busy(0, V::None),
            );
        } else {
            t += &format!(
                "Everything here runs on {} CPUs: the iperf3 client, the server and the \
                 forwarding in softirq share them, so a single TCP stream is CPU-bound (w1 → \
                 w2: {:.2} busy CPUs with no programs) and throughput and CPU per Gbit are two \
                 views of the same cost per byte. ",
                self.facts.cpus,
                busy(0, V::None),
            );
        }
        t += &format!(
            "TCP over veth keeps GSO end to end (a veth does not segment), so a forwarded skb \
             carries up to 64 KiB and the per-packet work of a router (netfilter hooks, \
             conntrack, the FIB, TC programs) is paid once per many segments, next to the \
             copies into and out of the sockets: with one stream w1 → w2, none {:.1} Gbit/s \
             ({:.0} ms CPU per Gbit), routed {:.1} ({:.0}), weir off {:.1} ({:.0}), weir on \
             {:.1} ({:.0}), the floor {:.1} ({:.0}). ",
            m(0, V::None),
            cm(0, V::None),
            m(0, V::Routed),
            cm(0, V::Routed),
            m(0, V::WeirOff),
            cm(0, V::WeirOff),
            m(0, V::WeirOn),
            cm(0, V::WeirOn),
            m(0, V::Floor),
            cm(0, V::Floor),
        );
        t += &format!(
            "The fast path against the routed path: {:.2}× the throughput at {:.2}× the CPU per \
             Gbit w1 → w2, {:.2}× at {:.2}× out → w1 (TCP, one stream). It skips the host \
             namespace's IP stack (routing, netfilter, a second pass through the per-CPU \
             backlog), not the veth transmit nor the receiving workload's stack. ",
            r(0, V::WeirOn, V::Routed),
            rc(0, V::WeirOn, V::Routed),
            r(3, V::WeirOn, V::Routed),
            rc(3, V::WeirOn, V::Routed),
        );
        t += &format!(
            "The floor, one veth straight between the two endpoints (what is left when a fast \
             path costs nothing at all: no host-side veth, no program, no lookup), against the \
             routed path: {:.2}× the throughput at {:.2}× the CPU per Gbit w1 → w2, {:.2}× at \
             {:.2}× out → w1 (TCP, one stream; {:.2}× / {:.2}× and {:.2}× / {:.2}× with UDP). \
             In the floor both paths are the same single veth, so its own w1 → w2 and out → w1 \
             throughputs differ only by noise. ",
            r(0, V::Floor, V::Routed),
            rc(0, V::Floor, V::Routed),
            r(3, V::Floor, V::Routed),
            rc(3, V::Floor, V::Routed),
            r(2, V::Floor, V::Routed),
            rc(2, V::Floor, V::Routed),
            r(5, V::Floor, V::Routed),
            rc(5, V::Floor, V::Routed),
        );
        let loss_max = [2usize, 5]
            .iter()
            .flat_map(|&ti| {
                VARIANTS.map(|v| med(&self.get(ti, v, |m| m.lost_percent.unwrap_or(f64::NAN))))
            })
            .fold(0.0f64, f64::max);
        t += &format!(
            "UDP is per packet ({UDP_LEN} B datagrams, no GSO: every program, hook and lookup \
             runs once per datagram), at {:.0} ms CPU per Gbit without programs against {:.0} \
             for TCP. ",
            cm(2, V::None),
            cm(0, V::None)
        );
        t += &if loss_max < 5.0 {
            format!(
                "At `-b 0` the sender's one `sendto` per datagram sets the pace and the path \
                 keeps up (median loss at most {loss_max:.1} %), so received ≈ sent and a \
                 cheaper path shows as lower CPU per Gbit as much as higher throughput. "
            )
        } else {
            format!(
                "At `-b 0` the sender overruns the path or the receiver (median loss up to \
                 {loss_max:.1} %): received throughput is what the slowest stage drains. "
            )
        };
        t += &format!(
            "The fast path against the routed path there: {:.2}× the throughput at {:.2}× the \
             CPU per Gbit w1 → w2, {:.2}× at {:.2}× out → w1; weir with the fast path off \
             against no programs: {:.2}× / {:.2}× (its TC programs run on every datagram at \
             the ingress and egress of two host interfaces, where with TCP they run once per \
             super-packet). ",
            r(2, V::WeirOn, V::Routed),
            rc(2, V::WeirOn, V::Routed),
            r(5, V::WeirOn, V::Routed),
            rc(5, V::WeirOn, V::Routed),
            r(2, V::WeirOff, V::None),
            r(5, V::WeirOff, V::None),
        );
        t += &format!(
            "What the routed variant pays is conntrack (a lookup and state update on every \
             packet) and the netfilter hooks, not its rule walk: established packets match the \
             first rule, and only a flow's first packets walk the {} dispatch rules (routed ÷ \
             none: {:.2}× TCP, {:.2}× UDP w1 → w2). ",
            2 * ENDPOINTS,
            r(0, V::Routed, V::None),
            r(2, V::Routed, V::None),
        );
        t += "CPU per Gbit is machine-wide: other work on the machine (the background above) \
              lands in every figure, and only ratios within a round are compared. The section reports what this run \
              measured; it does not claim more than the ranges allow: a ratio whose range \
              straddles 1 is not a difference.";
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn options_parse_and_reproduce() {
        let o = Options::parse(&[]).unwrap();
        assert_eq!((o.rounds, o.seconds, o.write, o.dev), (7, 3, true, false));
        assert_eq!(
            o.command(),
            "cargo run --release -p weir-bench -- b6 --rounds 7"
        );
        let o = Options::parse(&args("--rounds 9 --seconds 5 --no-write")).unwrap();
        assert!(!o.write);
        assert_eq!(
            o.command(),
            "cargo run --release -p weir-bench -- b6 --rounds 9 --seconds 5"
        );
        assert!(Options::parse(&args("--rounds 3")).is_err());
        assert!(Options::parse(&args("--seconds 0")).is_err());
        assert!(Options::parse(&args("--bogus")).is_err());
        // --dev: short runs, never written.
        let o = Options::parse(&args("--dev --rounds 1 --seconds 1")).unwrap();
        assert_eq!((o.rounds, o.write), (1, false));
    }

    #[test]
    fn json_reader() {
        let j = parse_json(
            r#" {"a": [1, -2.5e3, true, false, null, {}], "b": {"c": "x\"\\\/\n\u00e9\ud83d\ude00"},
                "d": [] } "#,
        )
        .unwrap();
        assert_eq!(
            j.get("a"),
            Some(&Json::Arr(vec![
                Json::Num(1.0),
                Json::Num(-2500.0),
                Json::Bool(true),
                Json::Bool(false),
                Json::Null,
                Json::Obj(vec![])
            ]))
        );
        assert_eq!(j.at(&["b", "c"]).and_then(Json::str), Some("x\"\\/\né😀"));
        assert_eq!(j.at(&["d"]), Some(&Json::Arr(vec![])));
        assert!(j.at(&["b", "zz"]).is_none());
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\" 1}",
            "[1] 2",
            "\"abc",
            "tru",
            "{\"a\":-}",
        ] {
            assert!(parse_json(bad).is_err(), "{bad:?} parsed");
        }
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(parse_json(&deep).is_err());
    }

    /// Shaped like iperf3 3.12's `-J` output (trimmed).
    const TCP: &str = r#"{
        "start": {"connected": [{"socket": 5}], "version": "iperf 3.12"},
        "intervals": [{"streams": [{"bytes": 1}], "sum": {"bits_per_second": 2.3e10}}],
        "end": {
            "streams": [],
            "sum_sent": {"start": 0, "end": 1.000727, "seconds": 1.000727,
                         "bytes": 2903244800, "bits_per_second": 23209085394.9179,
                         "retransmits": 0, "sender": true},
            "sum_received": {"start": 0, "end": 1.005516, "seconds": 1.005516,
                             "bytes": 2901934080, "bits_per_second": 23088118577.924168,
                             "sender": true},
            "cpu_utilization_percent": {"host_total": 70.1}
        }
    }"#;

    const UDP: &str = r#"{"start": {}, "intervals": [], "end": {"streams": [],
        "sum": {"bytes": 222082000, "bits_per_second": 1776419736.175089, "lost_percent": 43.57},
        "sum_sent": {"bytes": 222082000, "bits_per_second": 1776419736.175089, "lost_packets": 0,
                     "packets": 158630, "lost_percent": 0, "sender": true},
        "sum_received": {"bytes": 125318200, "bits_per_second": 1002350141.7223642,
                         "jitter_ms": 0.0008, "lost_packets": 69117, "packets": 158630,
                         "lost_percent": 43.571203429363926, "sender": false}}}"#;

    #[test]
    fn iperf_reports() {
        let t = parse_iperf(TCP, false).unwrap();
        assert_eq!(t.bytes, 2901934080.0);
        assert_eq!(t.bps, 23088118577.924168);
        assert_eq!(t.lost_percent, None);
        let u = parse_iperf(UDP, true).unwrap();
        assert_eq!(
            (u.bytes, u.lost_percent),
            (125318200.0, Some(43.571203429363926))
        );
        let e = parse_iperf(
            r#"{"start": {}, "intervals": [], "end": {},
                "error": "unable to connect to server: Connection refused"}"#,
            false,
        );
        assert_eq!(
            e,
            Err("iperf3: unable to connect to server: Connection refused".into())
        );
        assert!(parse_iperf(r#"{"end": {}}"#, false)
            .unwrap_err()
            .contains("no end.sum_received"));
        // A TCP report lacks lost_percent: fine for TCP, an error for UDP.
        assert!(parse_iperf(TCP, true).unwrap_err().contains("lost_percent"));
    }

    #[test]
    fn proc_stat_delta() {
        let a = parse_proc_stat(
            "cpu  100 5 50 1000 20 3 7 1 40 0\ncpu0 50 2 25 500 10 1 3 0 20 0\nintr 1 2\n",
        )
        .unwrap();
        // guest (40) is inside user already; idle and iowait are not busy.
        assert_eq!(
            a,
            CpuTicks {
                busy: 166,
                total: 1186
            }
        );
        let b = parse_proc_stat("cpu  300 5 150 1100 20 3 57 1 0 0\n").unwrap();
        // (200 user + 100 system + 50 softirq) ticks at 100 Hz.
        assert!((b.busy_secs_since(&a) - 3.5).abs() < 1e-9);
        // Older kernels print fewer columns.
        let c = parse_proc_stat("cpu 1 2 3 4\n").unwrap();
        assert_eq!(c, CpuTicks { busy: 6, total: 10 });
        assert!(parse_proc_stat("intr 1\n").is_err());
        assert!(parse_proc_stat("cpu 1 x 3 4\n").is_err());
        assert!(parse_proc_stat("cpu 1 2\n").is_err());
    }

    #[test]
    fn routed_rules_and_their_counters() {
        let t = iptables_rules();
        assert!(t.starts_with("*filter\n") && t.ends_with("COMMIT\n"));
        let rules: Vec<&str> = t.lines().filter(|l| l.starts_with("-A")).collect();
        // conntrack first: established packets never walk the per-endpoint rules.
        assert!(
            rules[0].contains("--ctstate RELATED,ESTABLISHED") && rules[0].ends_with("-j ACCEPT")
        );
        let dispatch = rules.iter().filter(|l| l.contains("-dispatch -")).count();
        assert_eq!(dispatch, 2 * ENDPOINTS);
        assert_eq!(rules.iter().filter(|l| l.contains("b6-subnet")).count(), 4);
        // Every chain name fits iptables' 28 characters, every interface name 15.
        for l in t.lines().filter_map(|l| l.strip_prefix(':')) {
            assert!(l.split(' ').next().unwrap().len() <= 28, "{l}");
        }
        for l in &rules {
            if let Some(i) = l.split(" -i ").nth(1).or_else(|| l.split(" -o ").nth(1)) {
                assert!(i.split(' ').next().unwrap().len() <= 15, "{l}");
            }
        }
        let listing = "\
Chain FORWARD (policy ACCEPT 0 packets, 0 bytes)
    pkts      bytes target     prot opt in     out     source               destination
 1234567 9999999999 ACCEPT     0    --  *      *       0.0.0.0/0            0.0.0.0/0            ctstate RELATED,ESTABLISHED /* b6-established */
       0        0 DROP       0    --  *      *       0.0.0.0/0            0.0.0.0/0            ctstate INVALID
       9      540 ACCEPT     0    --  *      *       198.18.1.0/24        0.0.0.0/0            /* b6-subnet */
       3      180 ACCEPT     0    --  *      *       0.0.0.0/0            198.18.1.0/24        /* b6-subnet */
";
        assert_eq!(rule_packets(listing, "b6-established"), 1234567);
        assert_eq!(rule_packets(listing, "b6-subnet"), 12);
        assert_eq!(rule_packets(listing, "b6-nothing"), 0);
    }

    #[test]
    fn goal_and_reachability() {
        // Either criterion on the medians is enough; both at the boundary count.
        assert!(goal_met(&[1.2, 1.0, 1.3], &[1.0; 3]));
        assert!(goal_met(&[1.0; 3], &[0.8, 0.9, 0.7]));
        assert!(!goal_met(&[1.19, 1.1, 1.3], &[0.81, 0.9, 0.7]));
        // No samples: not met.
        assert!(!goal_met(&[], &[]));
        assert_eq!(
            reachable_line(
                "w1 → w2 TCP, 1 stream",
                &[1.12, 1.05, 1.2],
                &[0.86, 0.9, 0.84]
            ),
            "  - w1 → w2 TCP, 1 stream: reachable: **no** (floor 1.12× / 0.86×: \
             throughput 1.12 (1.05–1.20)×, CPU per Gbit 0.86 (0.84–0.90)×)"
        );
        assert!(reachable_line("t", &[1.3], &[0.9]).contains("reachable: **yes** (floor 1.30×"));
    }

    #[test]
    fn iperf_arguments() {
        let a = |t: Test| t.iperf_args(3).join(" ");
        assert_eq!(a(TESTS[0]), "-p 5201 -t 3 -J --connect-timeout 3000");
        assert_eq!(a(TESTS[1]), "-p 5201 -t 3 -J --connect-timeout 3000 -P 4");
        assert_eq!(
            a(TESTS[2]),
            "-p 5201 -t 3 -J --connect-timeout 3000 -u -b 0 -l 1400"
        );
        assert_eq!(TESTS[3].way_name(), "out → w1");
    }

    #[test]
    fn section_from_made_up_rounds() {
        let opts = Options::parse(&[]).unwrap();
        let facts = Facts {
            date: "d".into(),
            kernel: "k".into(),
            commit: "c".into(),
            cpus: 2,
            tools: vec![],
        };
        let meas = |gbps: f64, busy: f64| Meas {
            gbps,
            cpu_ms_per_gbit: busy * 1e3 / gbps,
            busy_cpus: busy,
            lost_percent: Some(1.0),
        };
        // Per variant (none, routed, off, on, floor): the fast path 1.5× routed, off = none,
        // the floor 1.75× routed.
        let gb = [10.0, 8.0, 10.0, 12.0, 14.0];
        let samples: Samples = TESTS
            .iter()
            .map(|_| gb.iter().map(|&g| vec![meas(g, 1.5); 7]).collect())
            .collect();
        let counts = vec![PathCounters::default(); VARIANTS.len()];
        let mut r = Report {
            opts: &opts,
            facts,
            samples,
            background: vec![0.1; 7],
            counts,
            minutes: 1.0,
        };
        let s = r.section();
        assert!(s.starts_with(HEADING));
        // 6 tests × 5 variants.
        assert_eq!(
            s.lines()
                .filter(|l| l.starts_with("| w1 → w2") || l.starts_with("| out → w1"))
                .count(),
            30
        );
        assert!(s.contains("met in 6 of 6 tests → **met**"), "{s}");
        assert!(s.contains("throughput 1.50 (1.50–1.50)×"), "{s}");
        assert!(s.contains("reachable in 6 of 6 tests"), "{s}");
        assert!(
            s.contains(
                "  - out → w1 TCP, 1 stream: reachable: **yes** (floor 1.75× / 0.57×: \
                 throughput 1.75 (1.75–1.75)×, CPU per Gbit 0.57 (0.57–0.57)×)"
            ),
            "{s}"
        );
        assert!(s.contains("| direct veth, no host (the floor) | 14.00 (14.00–14.00) | 1.40"));
        assert!(s.contains("the floor 14.0 (107)"), "{s}");
        // A floor only 1.12× routed at 0.86× its CPU: the goal is out of reach.
        for (ti, _) in TESTS.iter().enumerate() {
            r.samples[ti][V::Floor.idx()] = vec![meas(8.96, 1.5 * 0.86 * 1.12); 7];
        }
        let s = r.section();
        assert!(s.contains("reachable in 0 of 6 tests"), "{s}");
        assert!(
            s.contains("w1 → w2 UDP 1400 B, -b 0: reachable: **no** (floor 1.12× / 0.86×"),
            "{s}"
        );
        // The fast path's own verdicts do not change with the floor.
        assert!(s.contains("met in 6 of 6 tests → **met**"), "{s}");
        assert!(!s.contains("saturated"));
        r.background = vec![1.9; 7];
        assert!(r.section().contains("saturated throughout"));
    }
}
