//! B3: connect-time load balancing. Connections per second and `connect()` latency to a service
//! address (VIP), N = 1 → 100k services, for four ways of getting there:
//!
//! - **weir**: `cgroup/connect4` (programs/sock_addr.o, loaded through the weir library with N
//!   `service` lines) rewrites the socket's destination once, at `connect()`;
//! - **iptables**: kube-proxy's iptables layout in `nat OUTPUT` (the client is local):
//!   `KUBE-SERVICES` (one rule per service, searched in order) → `KUBE-SVC-*` (a random pick
//!   between the endpoints) → `KUBE-SEP-*` (`DNAT`), through conntrack;
//! - **nft**: kube-proxy's nftables layout: `ip daddr . meta l4proto . th dport vmap` on a map of
//!   all services → a chain per service that picks an endpoint with `numgen random` → a chain
//!   per endpoint that DNATs;
//! - **direct**: `connect()` straight to the backend, nothing in between: the floor.
//!
//! Every variant has its own sandbox (two network namespaces, a veth pair, a cgroup): the
//! backends are TCP servers in namespace `b` (two ports; every service has both as its
//! endpoints), the client is a process of this binary (`__b3-client`) that joins the sandbox's
//! cgroup and enters namespace `a` (the same for every variant: cgroup membership is per
//! process, and weir's programs are attached to that cgroup), then loops socket / connect /
//! close with `SO_LINGER` 0 (so no TIME_WAIT piles up). Only `connect()` is timed per call;
//! connections per second count the whole loop.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    self as sock, sockopt, AddressFamily, Backlog, Shutdown, SockFlag, SockType, SockaddrIn,
};
use weir::object::SockAddrHook;
use weir::sandbox::{Sandbox, ADDR_B4};
use weir::sys::bpf::{self, consts::BPF_STATS_RUN_TIME, LinkTarget};
use weir::sys::{cgroup, netns};

use crate::env::{self, Facts};
use crate::flags::Flags;
use crate::proc::{self, output_of, Step};
use crate::report::{self, fmt_n, med, shape, show, show_x, verdict};

/// The heading of B3's section.
pub const HEADING: &str = "## B3: connect-time load balancing";
/// Hidden subcommand: the client process (see [`client_main`]).
pub const CLIENT: &str = "__b3-client";

/// The backends: two ports on namespace `b`'s address; every service lists both.
const PORTS: [u16; 2] = [8080, 8081];
const VIP_PORT: u16 = 80;
/// Service `i` has VIP 10.96.0.1 + i (a Kubernetes-like service range, in no route of the
/// client's namespace unless a variant needs one).
const VIP_BASE: u32 = u32::from_be_bytes([10, 96, 0, 1]);
const VIP_RANGE: &str = "10.96.0.0/12";
/// Addresses in VIP_RANGE from VIP_BASE on.
const MAX_SERVICES: usize = (1 << 20) - 2;
/// 30k: about the most weir's maps hold with two backends per service (32767).
const DEFAULT_SCALES: [usize; 6] = [1, 100, 1000, 10_000, 30_000, 100_000];
const DEFAULT_ROUNDS: usize = 9;
const DEFAULT_MIN_MS: u64 = 150;
const DEFAULT_MIN_CONNS: usize = 300;
/// A measurement stops after this long even below its connection count (a slow variant).
const MAX_MS: u64 = 5000;
/// Untimed connections at the start of every client run (page faults, caches).
const WARM_CONNS: usize = 50;
/// Connections in the correctness check, spread over the measured targets: with two
/// endpoints picked at random, all on one of them has a probability of 2^-23.
const CHECK_CONNS: usize = 24;

fn vip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(VIP_BASE + i as u32)
}

fn backend(k: usize) -> SocketAddrV4 {
    SocketAddrV4::new(ADDR_B4, PORTS[k])
}

// ---------------------------------------------------------------------------------------------
// Options

/// Command-line options of `b3`.
#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: usize,
    pub scales: Vec<usize>,
    /// Largest N with the iptables variant (its rules take long to load).
    pub iptables_max: usize,
    /// Largest N with the nft variant.
    pub nft_max: usize,
    /// Minimum wall time of one measurement.
    pub min_ms: u64,
    /// Minimum connections of one measurement.
    pub min_conns: usize,
    pub write: bool,
}

impl Options {
    /// Parses `[--rounds N] [--scales A,B,..] [--iptables-max N] [--nft-max N] [--ms N]
    /// [--conns N] [--no-write]`.
    ///
    /// # Errors
    /// A usage error, as a message.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut o = Self {
            rounds: DEFAULT_ROUNDS,
            scales: DEFAULT_SCALES.to_vec(),
            iptables_max: MAX_SERVICES,
            nft_max: MAX_SERVICES,
            min_ms: DEFAULT_MIN_MS,
            min_conns: DEFAULT_MIN_CONNS,
            write: true,
        };
        let mut f = Flags::new("b3", args);
        while let Some(a) = f.next_flag() {
            match a {
                "--rounds" => o.rounds = f.number(a)? as usize,
                "--scales" => o.scales = f.numbers(a)?,
                "--iptables-max" => o.iptables_max = f.number(a)? as usize,
                "--nft-max" => o.nft_max = f.number(a)? as usize,
                "--ms" => o.min_ms = f.number(a)?,
                "--conns" => o.min_conns = f.number(a)? as usize,
                "--no-write" => o.write = false,
                other => return Err(f.unknown(other)),
            }
        }
        if o.rounds < 7 {
            return Err("b3: --rounds must be at least 7".into());
        }
        o.scales.sort_unstable();
        o.scales.dedup();
        if o.scales.is_empty() || o.scales[0] < 1 || o.scales[o.scales.len() - 1] > MAX_SERVICES {
            return Err(format!(
                "b3: every scale must be between 1 and {MAX_SERVICES}"
            ));
        }
        if o.min_conns < 100 {
            return Err("b3: --conns must be at least 100 (for a p99)".into());
        }
        if o.min_ms == 0 || o.min_ms >= MAX_MS {
            return Err(format!("b3: --ms must be between 1 and {}", MAX_MS - 1));
        }
        Ok(o)
    }

    /// The command line that reproduces this run.
    pub fn command(&self) -> String {
        let mut c = format!(
            "cargo run --release -p weir-bench -- b3 --rounds {}",
            self.rounds
        );
        if self.scales != DEFAULT_SCALES {
            let s: Vec<String> = self.scales.iter().map(|n| n.to_string()).collect();
            c += &format!(" --scales {}", s.join(","));
        }
        if self.iptables_max != MAX_SERVICES {
            c += &format!(" --iptables-max {}", self.iptables_max);
        }
        if self.nft_max != MAX_SERVICES {
            c += &format!(" --nft-max {}", self.nft_max);
        }
        if self.min_ms != DEFAULT_MIN_MS {
            c += &format!(" --ms {}", self.min_ms);
        }
        if self.min_conns != DEFAULT_MIN_CONNS {
            c += &format!(" --conns {}", self.min_conns);
        }
        c
    }
}

// ---------------------------------------------------------------------------------------------
// The rules of the competitors

/// kube-proxy's iptables layout for `n` services with two endpoints each, in `nat OUTPUT` (an
/// `iptables-restore` file). Chain names have kube-proxy's length (a prefix and 16 characters).
fn iptables_rules(n: usize) -> String {
    let mut t = String::with_capacity(n * 400);
    t += "*nat\n:OUTPUT ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n";
    for i in 0..n {
        let _ = writeln!(t, ":KUBE-SVC-{i:016X} - [0:0]");
        for k in 0..PORTS.len() {
            let _ = writeln!(t, ":KUBE-SEP-{:016X} - [0:0]", 2 * i + k);
        }
    }
    t += "-A OUTPUT -j KUBE-SERVICES\n";
    for i in 0..n {
        let _ = writeln!(
            t,
            "-A KUBE-SERVICES -d {}/32 -p tcp -m tcp --dport {VIP_PORT} -j KUBE-SVC-{i:016X}",
            vip(i)
        );
    }
    for i in 0..n {
        // kube-proxy's pick among k endpoints: rule j matches with probability 1/(k-j), the
        // last one always.
        let _ = writeln!(
            t,
            "-A KUBE-SVC-{i:016X} -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-{:016X}",
            2 * i
        );
        let _ = writeln!(t, "-A KUBE-SVC-{i:016X} -j KUBE-SEP-{:016X}", 2 * i + 1);
        for k in 0..PORTS.len() {
            let _ = writeln!(
                t,
                "-A KUBE-SEP-{:016X} -p tcp -m tcp -j DNAT --to-destination {}",
                2 * i + k,
                backend(k)
            );
        }
    }
    t += "COMMIT\n";
    t
}

/// kube-proxy's nftables layout for `n` services (an `nft -f` file): the `services` chain looks
/// the destination up in one verdict map and jumps to the service's chain, which picks an
/// endpoint chain with `numgen random`; the endpoint chain DNATs.
///
/// kube-proxy writes the pick as an anonymous vmap (`numgen random mod 2 vmap { 0 : goto A, 1 :
/// goto B }`); the kernel names each anonymous set by scanning the table's sets, so loading
/// 10k of them took 58 s here and 100k would take hours. With two endpoints the same pick is
/// `numgen random mod 2 0 goto A` then `goto B`, which loads in linear time.
fn nft_rules(n: usize) -> String {
    let mut t = String::with_capacity(n * 300);
    t += "add table ip kube-proxy\n";
    t += "add chain ip kube-proxy nat-output { type nat hook output priority -100; policy accept; }\n";
    t += "add chain ip kube-proxy services\n";
    t += "add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }\n";
    for i in 0..n {
        let _ = writeln!(t, "add chain ip kube-proxy service-{i:08X}");
        for k in 0..PORTS.len() {
            let _ = writeln!(t, "add chain ip kube-proxy endpoint-{i:08X}-{k}");
            let _ = writeln!(
                t,
                "add rule ip kube-proxy endpoint-{i:08X}-{k} meta l4proto tcp dnat to {}",
                backend(k)
            );
        }
        let _ = writeln!(
            t,
            "add rule ip kube-proxy service-{i:08X} numgen random mod 2 0 goto endpoint-{i:08X}-0"
        );
        let _ = writeln!(
            t,
            "add rule ip kube-proxy service-{i:08X} goto endpoint-{i:08X}-1"
        );
    }
    for chunk in (0..n).collect::<Vec<_>>().chunks(4096) {
        let elems: Vec<String> = chunk
            .iter()
            .map(|&i| format!("{} . tcp . {VIP_PORT} : goto service-{i:08X}", vip(i)))
            .collect();
        let _ = writeln!(
            t,
            "add element ip kube-proxy service-ips {{ {} }}",
            elems.join(", ")
        );
    }
    t += "add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips\n";
    t += "add rule ip kube-proxy nat-output jump services\n";
    t
}

/// The `lb capacity` a user with `n` services (two backends each) configures: the defaults, or
/// the next powers of two that hold them (the kernel rounds hash buckets up to one anyway).
fn weir_capacity(n: usize) -> (usize, usize) {
    let services = (n + 1).next_power_of_two().max(65_536);
    let backends = (PORTS.len() * n + 1).next_power_of_two().max(65_536);
    (services, backends)
}

/// weir's config for `n` services attached to the sandbox's cgroup.
fn weir_config(n: usize, cgroup: &str) -> String {
    let mut t = String::with_capacity(n * 90);
    let _ = writeln!(t, "cgroup {cgroup}");
    let (services, backends) = weir_capacity(n);
    let _ = writeln!(
        t,
        "lb capacity services={services} backends={backends} slots={}",
        backends.max(262_144)
    );
    for i in 0..n {
        let _ = writeln!(
            t,
            "service s{i} {}:{VIP_PORT}/tcp backends={},{}",
            vip(i),
            backend(0),
            backend(1)
        );
    }
    t
}

// ---------------------------------------------------------------------------------------------
// The client process

/// `SO_LINGER` on, 0 s: close() sends a RST and frees the socket at once (no TIME_WAIT).
fn linger0(fd: &impl AsFd) -> Result<(), String> {
    let l = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    sock::setsockopt(fd, sockopt::Linger, &l).map_err(|e| format!("SO_LINGER: {e}"))
}

/// One socket / connect / close; returns the time `connect()` took.
fn connect_once(to: &SockaddrIn) -> Result<Duration, String> {
    let fd = sock::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    let t = Instant::now();
    sock::connect(fd.as_raw_fd(), to).map_err(|e| format!("connect to {to}: {e}"))?;
    let d = t.elapsed();
    linger0(&fd)?;
    drop(fd);
    Ok(d)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn client(args: &[String]) -> Result<(), String> {
    let [cg, ns, to, mode, rest @ ..] = args else {
        return Err("usage: CGROUP_DIR NETNS ADDR:PORT check N | run MIN_MS MIN_CONNS".into());
    };
    cgroup::add_process(Path::new(cg), std::process::id())
        .map_err(|e| format!("joining cgroup {cg}: {e}"))?;
    let fd = netns::open(ns).map_err(|e| format!("opening netns {ns}: {e}"))?;
    netns::enter(fd.as_fd()).map_err(|e| format!("entering netns {ns}: {e}"))?;
    let to: SocketAddrV4 = to.parse().map_err(|_| format!("bad address '{to}'"))?;
    let num = |s: Option<&String>| -> Result<u64, String> {
        s.and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{mode}: a number is missing"))
    };
    match mode.as_str() {
        // One line per attempt: `ok PEER` (getpeername) or `err ERRNO`.
        "check" => {
            for _ in 0..num(rest.first())? {
                match TcpStream::connect_timeout(&to.into(), Duration::from_secs(1)) {
                    Ok(s) => {
                        let peer = s.peer_addr().map_err(|e| format!("getpeername: {e}"))?;
                        linger0(&s)?;
                        println!("ok {peer}");
                    }
                    Err(e) => println!("err {}", e.raw_os_error().unwrap_or(-1)),
                }
            }
        }
        // `result CONNECTIONS ELAPSED_NS P50_NS P99_NS MAX_NS`.
        "run" => {
            let (min_ms, min_conns) = (num(rest.first())?, num(rest.get(1))? as usize);
            let to = SockaddrIn::from(to);
            for _ in 0..WARM_CONNS {
                connect_once(&to)?;
            }
            let mut lat = Vec::with_capacity(min_conns * 4);
            let t0 = Instant::now();
            let (min, max) = (Duration::from_millis(min_ms), Duration::from_millis(MAX_MS));
            loop {
                lat.push(connect_once(&to)?.as_nanos() as u64);
                let e = t0.elapsed();
                if (e >= min && lat.len() >= min_conns) || e >= max {
                    break;
                }
            }
            let elapsed = t0.elapsed().as_nanos();
            lat.sort_unstable();
            println!(
                "result {} {elapsed} {} {} {}",
                lat.len(),
                percentile(&lat, 0.50),
                percentile(&lat, 0.99),
                lat[lat.len() - 1]
            );
        }
        other => return Err(format!("unknown mode '{other}'")),
    }
    Ok(())
}

/// The client's main: `weir-bench __b3-client CGROUP_DIR NETNS ADDR:PORT MODE ...`. Joins the
/// cgroup (its own pid into `cgroup.procs`), enters the namespace, then runs MODE.
pub fn client_main(args: &[String]) -> ExitCode {
    match client(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{CLIENT}: {e}");
            ExitCode::from(1)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The backends

fn listen(addr: SocketAddrV4) -> Result<TcpListener, String> {
    let ctx = |what: &str, e: nix::Error| format!("{what} for the backend {addr}: {e}");
    let fd = sock::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| ctx("socket", e))?;
    sock::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| ctx("SO_REUSEADDR", e))?;
    sock::bind(fd.as_raw_fd(), &SockaddrIn::from(addr)).map_err(|e| ctx("bind", e))?;
    // The longest queue the namespace allows (-1: net.core.somaxconn, 4096 by default): a
    // burst the accept thread has not caught up with must not drop SYNs.
    sock::listen(&fd, Backlog::MAXALLOWABLE).map_err(|e| ctx("listen", e))?;
    Ok(TcpListener::from(fd))
}

/// TCP servers on the backend ports in namespace `b`, counting what they accept.
struct Server {
    stop: Arc<AtomicBool>,
    listeners: Vec<Arc<TcpListener>>,
    accepts: Arc<[AtomicU64; 2]>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    fn start(sb: &Sandbox) -> Result<Self, String> {
        let listeners = sb
            .in_b(|| {
                (0..PORTS.len())
                    .map(|k| listen(backend(k)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(|e| e.to_string())??;
        let stop = Arc::new(AtomicBool::new(false));
        let accepts: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let listeners: Vec<Arc<TcpListener>> = listeners.into_iter().map(Arc::new).collect();
        let threads = listeners
            .iter()
            .enumerate()
            .map(|(k, l)| {
                let (l, stop, accepts) = (l.clone(), stop.clone(), accepts.clone());
                std::thread::spawn(move || loop {
                    let r = l.accept();
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match r {
                        // Closed at once: the client has reset it or is about to.
                        Ok(_) => {
                            accepts[k].fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(1)),
                    }
                })
            })
            .collect();
        Ok(Self {
            stop,
            listeners,
            accepts,
            threads,
        })
    }

    fn accepted(&self) -> [u64; 2] {
        [0, 1].map(|k| self.accepts[k].load(Ordering::Relaxed))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for l in &self.listeners {
            // Wakes a blocked accept() (it returns EINVAL).
            let _ = sock::shutdown(l.as_raw_fd(), Shutdown::Both);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Variants and their sandboxes

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum V {
    Weir,
    Nft,
    Iptables,
    Direct,
}

const VARIANTS: [V; 4] = [V::Weir, V::Nft, V::Iptables, V::Direct];

impl V {
    fn name(self) -> &'static str {
        match self {
            V::Weir => "weir (connect4)",
            V::Nft => "nft vmap",
            V::Iptables => "iptables DNAT",
            V::Direct => "direct to the backend",
        }
    }

    fn short(self) -> &'static str {
        match self {
            V::Weir => "weir",
            V::Nft => "nft",
            V::Iptables => "iptables",
            V::Direct => "direct",
        }
    }
}

/// One variant at one N, in its own sandbox.
struct Env {
    v: V,
    n: usize,
    /// Declared before the sandbox: the servers stop before the namespaces go.
    server: Server,
    sb: Sandbox,
    /// How long loading the services took (weir: parse + load through the library; the
    /// competitors: their restore command).
    setup: Option<Duration>,
}

/// Where one measurement connects to: the VIP of service `i`, or the backend for `direct`.
fn target(v: V, i: usize) -> SocketAddrV4 {
    match v {
        V::Direct => backend(0),
        _ => SocketAddrV4::new(vip(i), VIP_PORT),
    }
}

/// One measurement's result.
#[derive(Debug, Clone, Copy)]
struct Meas {
    conn_s: f64,
    p50_us: f64,
    p99_us: f64,
}

impl Env {
    /// Builds the sandbox and servers, checks that the VIP is unreachable as it is, loads the
    /// services. `Ok(Err(_))`: weir refused the config (a capacity), which is a result.
    fn build(v: V, n: usize, scratch: &Path) -> Result<Result<Self, String>, String> {
        let sb = Sandbox::new("b3").map_err(|e| format!("building a sandbox: {e}"))?;
        let server = Server::start(&sb)?;
        if matches!(v, V::Iptables | V::Nft) {
            // Netfilter sees a locally generated packet only after the route lookup, so the
            // VIPs need a route: towards `b`, which neither owns nor forwards them, so an
            // untranslated connection goes nowhere.
            output_of(&[
                "ip",
                "-n",
                &sb.ns_a,
                "route",
                "add",
                VIP_RANGE,
                "via",
                &ADDR_B4.to_string(),
            ])?;
        }
        let mut env = Env {
            v,
            n,
            server,
            sb,
            setup: None,
        };
        if v != V::Direct {
            env.check_unreachable()?;
        }
        let run_in_a = |step: Step| -> Result<Duration, String> {
            env.sb
                .in_a(|| proc::run(&step))
                .map_err(|e| e.to_string())?
        };
        let file = scratch.join(format!("{}-{}.rules", env.sb.ns_a, v.short()));
        let f = file.to_string_lossy().into_owned();
        let write = |text: String| {
            std::fs::write(&file, text).map_err(|e| format!("writing {}: {e}", file.display()))
        };
        let setup = match v {
            V::Direct => None,
            V::Iptables => {
                write(iptables_rules(n))?;
                Some(run_in_a(Step::new(
                    "iptables-restore",
                    &["iptables-restore", &f],
                ))?)
            }
            V::Nft => {
                write(nft_rules(n))?;
                Some(run_in_a(Step::new("nft -f", &["nft", "-f", &f]))?)
            }
            V::Weir => {
                let text = weir_config(n, &env.sb.cgroup);
                let t = Instant::now();
                let cfg = weir::config::parse("b3.conf", &text).map_err(|e| e.to_string())?;
                let dp = weir::Dataplane::new(env.sb.pin_dir.clone());
                let loaded = env.sb.in_b(|| dp.load(&cfg)).map_err(|e| e.to_string())?;
                if let Err(e) = loaded {
                    return Ok(Err(e.to_string()));
                }
                Some(t.elapsed())
            }
        };
        let _ = std::fs::remove_file(&file);
        env.setup = setup;
        Ok(Ok(env))
    }

    /// The first VIP cannot be reached from namespace `a` by a process outside the sandbox's
    /// cgroup (weir) or before any rule is loaded (the competitors).
    fn check_unreachable(&self) -> Result<(), String> {
        let to = SocketAddr::from(target(self.v, 0));
        let r = self
            .sb
            .in_a(|| TcpStream::connect_timeout(&to, Duration::from_millis(300)))
            .map_err(|e| e.to_string())?;
        if r.is_ok() || self.server.accepted() != [0, 0] {
            return Err(format!(
                "{}: {to} is reachable from {} without any translation",
                self.v.name(),
                self.sb.ns_a
            ));
        }
        Ok(())
    }

    fn client(&self, self_exe: &Path, to: SocketAddrV4, mode: &[String]) -> Result<String, String> {
        let out = Command::new(self_exe)
            .arg(CLIENT)
            .arg(&self.sb.cgroup_dir)
            .arg(&self.sb.ns_a)
            .arg(to.to_string())
            .args(mode)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("spawning the client: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(format!(
                "{} at N = {}: client to {to} failed ({}): {stdout}{}",
                self.v.name(),
                self.n,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(stdout)
    }

    /// Every target (service positions) answers from a backend, with the VIP as the peer
    /// `getpeername()` reports, every connection reaches a server, and the services use both
    /// endpoints.
    fn verify(&self, self_exe: &Path, positions: &[usize]) -> Result<(), String> {
        let before = self.server.accepted();
        let each = CHECK_CONNS.div_ceil(positions.len());
        let mut total = 0;
        for &i in positions {
            let to = target(self.v, i);
            let out = self.client(self_exe, to, &["check".into(), each.to_string()])?;
            for line in out.lines() {
                let want = format!("ok {to}");
                if line != want {
                    return Err(format!(
                        "{} at N = {}: connection to {to}: `{line}`, expected `{want}`",
                        self.v.name(),
                        self.n
                    ));
                }
                total += 1;
            }
        }
        let want = (positions.len() * each) as u64;
        // The accept threads may lag a little behind the client.
        let t = Instant::now();
        let got = loop {
            let now = self.server.accepted();
            let got = [now[0] - before[0], now[1] - before[1]];
            if got[0] + got[1] >= want || t.elapsed() > Duration::from_secs(2) {
                break got;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if total != want || got[0] + got[1] != want {
            return Err(format!(
                "{} at N = {}: {total} connections succeeded and the backends accepted {got:?}, \
                 expected {want}",
                self.v.name(),
                self.n
            ));
        }
        if self.v != V::Direct && (got[0] == 0 || got[1] == 0) {
            return Err(format!(
                "{} at N = {}: one endpoint got every connection: {got:?}",
                self.v.name(),
                self.n
            ));
        }
        Ok(())
    }

    fn measure(&self, self_exe: &Path, i: usize, opts: &Options) -> Result<Meas, String> {
        let to = target(self.v, i);
        let out = self.client(
            self_exe,
            to,
            &[
                "run".into(),
                opts.min_ms.to_string(),
                opts.min_conns.to_string(),
            ],
        )?;
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix("result "))
            .ok_or_else(|| format!("{}: no result from the client: {out}", self.v.name()))?;
        let f: Vec<f64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        let [count, elapsed_ns, p50, p99, _max] = f[..] else {
            return Err(format!("malformed client result `{line}`"));
        };
        Ok(Meas {
            conn_s: count / (elapsed_ns / 1e9),
            p50_us: p50 / 1e3,
            p99_us: p99 / 1e3,
        })
    }

    /// weir's connect4 program on the sandbox's cgroup.
    fn connect4(&self) -> Result<std::os::fd::OwnedFd, String> {
        let cg = cgroup::open_dir(&self.sb.cgroup_dir)
            .map_err(|e| format!("opening {}: {e}", self.sb.cgroup_dir.display()))?;
        let q = bpf::prog_query(
            LinkTarget::Fd(cg.as_fd()),
            SockAddrHook::Connect4.attach_type(),
            0,
        )
        .map_err(|e| format!("querying connect4 programs: {e}"))?;
        let id = *q
            .prog_ids
            .first()
            .ok_or("no connect4 program on the cgroup")?;
        bpf::prog_fd_by_id(id).map_err(|e| e.to_string())
    }

    /// Run time (ns) and run count of weir's connect4 program (bpf_stats must be on).
    fn connect4_stats(&self) -> Result<(u64, u64), String> {
        let fd = self.connect4()?;
        let info = bpf::prog_info(fd.as_fd()).map_err(|e| e.to_string())?;
        Ok((info.run_time_ns, info.run_cnt))
    }
}

/// How many services and backends weir's maps hold (their `max_entries` in the embedded
/// sock_addr object; backend id 0 is never used).
struct WeirCapacity {
    services: usize,
    backends: usize,
}

impl WeirCapacity {
    fn embedded() -> Result<Self, String> {
        let size = |name: &str| -> Result<usize, String> {
            for o in weir::embedded::OBJECTS {
                let v =
                    weir::object::parse_and_verify(o.name, o.bytes).map_err(|e| e.to_string())?;
                if let Some(m) = v.maps.iter().find(|m| m.name == name) {
                    return Ok(m.max_entries as usize);
                }
            }
            Err(format!("no embedded object has the map {name}"))
        };
        Ok(Self {
            services: size("lb_services")?,
            backends: size("lb_backends")? - 1,
        })
    }

    /// Why weir cannot hold `n` services with two backends each, if it cannot: the config sizes
    /// the maps with `lb capacity` (the embedded sizes are the defaults), up to the statement's
    /// limit.
    fn refuses(&self, n: usize) -> Option<String> {
        // The config sizes the maps for n (`lb capacity`); only the statement's own limit is left.
        let (services, backends) = weir_capacity(n);
        let (cap_s, cap_b) = (self.services.max(services), self.backends.max(backends));
        let backends = n * PORTS.len();
        (n > cap_s || backends > cap_b || cap_b > 16_777_216).then(|| {
            format!(
                "does not fit: weir's maps hold {} services and {} backends (`lb_services`, \
                 `lb_backends`), {} services need {backends} backends",
                self.services,
                self.backends,
                fmt_n(n)
            )
        })
    }
}

/// The services measured at N: first, middle and last (a linear rule list is searched up to
/// the matching rule, so the mean of their costs is what the average service costs). At N = 1
/// that is one service three times, so every N gets as many measurements.
fn positions(n: usize) -> Vec<usize> {
    vec![0, n / 2, n - 1]
}

/// The rate of connections spread evenly over the measured services: one over the mean time
/// per connection (not the mean of the rates, which the cheapest service would dominate).
fn rate(m: &[Meas]) -> f64 {
    m.len() as f64 / m.iter().map(|x| 1.0 / x.conn_s).sum::<f64>()
}

// ---------------------------------------------------------------------------------------------
// The run

struct Scale {
    n: usize,
    positions: Vec<usize>,
    envs: BTreeMap<V, Env>,
    /// Variants that do not run at this N, and why.
    missing: BTreeMap<V, String>,
}

/// The environment of `v` at scale `s` (`direct` is one for all scales).
fn env_of<'a>(direct: &'a Env, s: &'a Scale, v: V) -> Option<&'a Env> {
    if v == V::Direct {
        Some(direct)
    } else {
        s.envs.get(&v)
    }
}

/// Per (scale index, variant): per round, one measurement per position.
type Samples = BTreeMap<(usize, V), Vec<Vec<Meas>>>;

fn tool_versions() -> Vec<String> {
    let first = |argv: &[&str]| {
        output_of(argv)
            .map(|s| s.lines().next().unwrap_or("").trim().to_owned())
            .unwrap_or_else(|e| e)
    };
    vec![first(&["iptables", "-V"]), first(&["nft", "--version"])]
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 10.0 {
        format!("{s:.0} s")
    } else if s >= 1.0 {
        format!("{s:.1} s")
    } else {
        format!("{:.0} ms", s * 1e3)
    }
}

/// Runs B3 and writes its section of BENCHMARKS.md.
///
/// # Errors
/// A missing prerequisite, a failed command, or a variant that does not reach the backends.
pub fn run(opts: &Options) -> Result<(), String> {
    let t0 = Instant::now();
    let mut facts = env::prelude(
        "B3",
        &[
            ("ip", "iproute2"),
            ("iptables", "iptables"),
            ("iptables-restore", "iptables"),
            ("nft", "nftables"),
        ],
    )?;
    facts.tools = tool_versions();
    let self_exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let scratch = env::Scratch::new("b3")?;
    eprintln!(
        "B3: scales {:?}, {} rounds; building namespaces and loading services",
        opts.scales, opts.rounds
    );

    let weir_cap = WeirCapacity::embedded()?;
    let direct = Env::build(V::Direct, 0, &scratch.0)??;
    direct.verify(&self_exe, &[0])?;
    let mut scales: Vec<Scale> = Vec::new();
    for &n in &opts.scales {
        let mut s = Scale {
            n,
            positions: positions(n),
            envs: BTreeMap::new(),
            missing: BTreeMap::new(),
        };
        for v in [V::Weir, V::Nft, V::Iptables] {
            let cap = match v {
                V::Iptables => Some((opts.iptables_max, "--iptables-max")),
                V::Nft => Some((opts.nft_max, "--nft-max")),
                _ => None,
            };
            if let Some((max, flag)) = cap.filter(|(max, _)| n > *max) {
                s.missing
                    .insert(v, format!("not run above {flag} {}", fmt_n(max)));
                continue;
            }
            if v == V::Weir {
                if let Some(why) = weir_cap.refuses(n) {
                    eprintln!("N = {n}: weir {why}");
                    s.missing.insert(v, why);
                    continue;
                }
            }
            match Env::build(v, n, &scratch.0)? {
                Ok(env) => {
                    env.verify(&self_exe, &s.positions)?;
                    eprintln!(
                        "N = {n}: {} loaded in {}, verified",
                        v.short(),
                        env.setup.map_or("–".into(), secs)
                    );
                    s.envs.insert(v, env);
                }
                Err(e) => {
                    eprintln!("N = {n}: {} refused the services: {e}", v.short());
                    s.missing.insert(v, e);
                }
            }
        }
        scales.push(s);
    }

    // One untimed warm-up round, then the timed ones: the scales in a rotating order, within a
    // scale the variants in a rotating order, each variant at every position back to back.
    let mut samples: Samples = BTreeMap::new();
    for round in 0..=opts.rounds {
        let tr = Instant::now();
        let k = scales.len();
        for j in 0..k {
            let si = (round + j) % k;
            let s = &scales[si];
            let mut vs: Vec<V> = VARIANTS
                .iter()
                .copied()
                .filter(|&v| env_of(&direct, s, v).is_some())
                .collect();
            let len = vs.len();
            vs.rotate_left(round % len);
            // Position by position, all variants back to back: the measurements a ratio
            // compares are at most a few hundred ms apart.
            let mut ms: BTreeMap<V, Vec<Meas>> = BTreeMap::new();
            for &i in &s.positions {
                for &v in &vs {
                    let env = env_of(&direct, s, v).expect("filtered");
                    ms.entry(v)
                        .or_default()
                        .push(env.measure(&self_exe, i, opts)?);
                }
            }
            if round > 0 {
                for (v, m) in ms {
                    samples.entry((si, v)).or_default().push(m);
                }
            }
        }
        let last = scales.len() - 1;
        let fmt = |v: V| {
            samples
                .get(&(last, v))
                .and_then(|r| r.last())
                .map_or("–".into(), |m| format!("{:.0}", rate(m)))
        };
        eprintln!(
            "{} ({:.1} s): N = {}: conn/s weir {}, nft {}, iptables {}, direct {}",
            if round == 0 {
                "warm-up round".to_owned()
            } else {
                format!("round {round}/{}", opts.rounds)
            },
            tr.elapsed().as_secs_f64(),
            scales[last].n,
            fmt(V::Weir),
            fmt(V::Nft),
            fmt(V::Iptables),
            fmt(V::Direct)
        );
    }

    // weir's connect4 program on its own (bpf_stats), outside the timed rounds.
    let mut in_prog = BTreeMap::new();
    {
        let _stats = bpf::enable_stats(BPF_STATS_RUN_TIME).map_err(|e| e.to_string())?;
        for (si, s) in scales.iter().enumerate() {
            if let Some(env) = s.envs.get(&V::Weir) {
                let a = env.connect4_stats()?;
                env.measure(&self_exe, s.positions[s.positions.len() / 2], opts)?;
                let b = env.connect4_stats()?;
                in_prog.insert(si, (b.0 - a.0) as f64 / (b.1 - a.1).max(1) as f64);
            }
        }
    }

    let report = Report {
        opts,
        facts,
        scales: &scales,
        samples,
        in_prog,
        minutes: t0.elapsed().as_secs_f64() / 60.0,
    };
    let section = report.section();
    println!("{section}");
    if opts.write {
        let path = env::workspace_root().join("BENCHMARKS.md");
        report::write_section(&path, HEADING, &section)?;
        eprintln!("wrote the B3 section of {}", path.display());
    }
    // Sandboxes, servers, rules and programs go with the envs (RAII), also on the error paths.
    drop(scales);
    drop(direct);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The report

struct Report<'a> {
    opts: &'a Options,
    facts: Facts,
    scales: &'a [Scale],
    samples: Samples,
    /// bpf_stats ns per connect4 run, per scale index.
    in_prog: BTreeMap<usize, f64>,
    minutes: f64,
}

/// Per round, the mean over positions of one field.
fn per_round(rounds: &[Vec<Meas>], f: impl Fn(&Meas) -> f64) -> Vec<f64> {
    rounds
        .iter()
        .map(|m| m.iter().map(&f).sum::<f64>() / m.len() as f64)
        .collect()
}

fn ratio(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x / y).collect()
}

impl Report<'_> {
    fn rounds(&self, si: usize, v: V) -> Option<&Vec<Vec<Meas>>> {
        self.samples.get(&(si, v))
    }

    fn conn_s(&self, si: usize, v: V) -> Vec<f64> {
        self.rounds(si, v)
            .map_or_else(Vec::new, |r| r.iter().map(|m| rate(m)).collect())
    }

    /// Per round: µs one connection costs beyond the direct connection's (socket + connect +
    /// close, from conn/s).
    fn overhead_us(&self, si: usize, v: V) -> Vec<f64> {
        let d = self.conn_s(si, V::Direct);
        self.conn_s(si, v)
            .iter()
            .zip(&d)
            .map(|(x, y)| 1e6 / x - 1e6 / y)
            .collect()
    }

    fn missing(&self, si: usize, v: V) -> String {
        self.scales[si]
            .missing
            .get(&v)
            .map_or("–".into(), |why| format!("– ({})", short_reason(why)))
    }

    fn section(&self) -> String {
        let mut s = String::new();
        let f = &self.facts;
        let _ = writeln!(s, "{HEADING}\n");
        let _ = writeln!(
            s,
            "Connections per second and `connect()` latency from a client to a service address \
             (VIP) with N services present, for four ways of getting there: weir's \
             `cgroup/connect4` program (programs/sock_addr.o, loaded through the weir library \
             from N `service` lines and attached to the client's cgroup) rewriting the socket's \
             destination once; kube-proxy's iptables layout (`nat OUTPUT` → `KUBE-SERVICES`, one \
             rule per service searched in order → `KUBE-SVC-*`, a `statistic` random pick → \
             `KUBE-SEP-*`, `DNAT`); kube-proxy's nftables layout (`ip daddr . meta l4proto . th \
             dport vmap` on one map of all services → a chain per service picking an endpoint \
             chain with `numgen random` → `dnat`); and a direct `connect()` to the backend, \
             the floor. Every variant runs in a sandbox of its own; the host's tables are never \
             touched.\n"
        );
        let _ = writeln!(
            s,
            "- Date: {}; kernel {}; commit {}; {} CPUs; {:.1} min in all",
            f.date, f.kernel, f.commit, f.cpus, self.minutes
        );
        let _ = writeln!(s, "- Tools: {}", f.tools.join("; "));
        let _ = writeln!(s, "- Command (as root): `{}`", self.opts.command());
        let _ = writeln!(
            s,
            "- Setup: each variant has two network namespaces joined by a veth pair and a \
             cgroup. Namespace `b` runs the backends, two TCP servers ({}:{} and :{}) accepting \
             in a loop; every service has both as its endpoints. Service i has VIP 10.96.0.1 + \
             i, port {VIP_PORT}/tcp. The client is a process (`weir-bench {CLIENT}`) that writes \
             its pid into the sandbox's `cgroup.procs`, enters namespace `a` and loops \
             `socket()`, `connect()`, `close()` with `SO_LINGER` 0 (a RST, no TIME_WAIT); the \
             same process for every variant. weir's programs are attached to that cgroup; the \
             iptables and nft rules live in namespace `a`, which for them (only) has a route \
             for {VIP_RANGE} towards `b` (netfilter sees a local connection only after its \
             route lookup); `b` neither owns nor forwards VIPs.",
            ADDR_B4, PORTS[0], PORTS[1]
        );
        let _ = writeln!(
            s,
            "- Checked before timing, for every variant and N: the VIP cannot be reached \
             untranslated (from outside weir's cgroup, or before the rules are loaded), and \
             {CHECK_CONNS} connections spread over the measured VIPs succeed, `getpeername()` reports the \
             VIP, the backends accept exactly as many, and both endpoints are used."
        );
        let _ = writeln!(
            s,
            "- A measurement: one client run against one VIP, {WARM_CONNS} untimed connections, \
             then at least {} connections and {} ms (at most {} s); conn/s = connections ÷ wall \
             time of the loop, latency = time inside `connect()` alone, p50 / p99 over that \
             run. Per round and variant, the first, middle and last service are measured \
             (iptables searches `KUBE-SERVICES` linearly), and the round's value is what connections \
             spread evenly over the three cost: conn/s = 1 ÷ the mean time per connection, \
             latencies the mean of the three. \
             {} timed rounds after one untimed warm-up round; in every round the scales come in \
             a rotating order, and within a scale, position by position, every variant runs \
             once, in an order that rotates every round (`direct` is measured in every scale's \
             block, so the runs a ratio compares are a second or so apart); ratios are taken \
             within a round, then the median (min–max) over rounds is shown. The machine is \
             shared: other jobs' bursts show as wide ranges, most of all in p99.",
            self.opts.min_conns,
            self.opts.min_ms,
            MAX_MS / 1000,
            self.opts.rounds
        );
        let _ = writeln!(
            s,
            "- Simplifications of kube-proxy's rules, all in the competitors' favour: no \
             `KUBE-MARK-MASQ` / masquerade rules, no comments, no filter-table or NodePort \
             chains; nft's endpoint pick is `numgen random mod 2 0 goto A` + `goto B` instead \
             of kube-proxy's anonymous `numgen … vmap {{ 0 : goto A, 1 : goto B }}`, because \
             the kernel names every anonymous set by scanning the table's sets: 10k of them \
             took 58 s to load here, and 100k would take hours. `iptables` is the Debian \
             default, iptables-nft (rules become nf_tables rules in the legacy layout).\n"
        );

        self.setup_table(&mut s);
        for (si, sc) in self.scales.iter().enumerate() {
            self.scale_table(&mut s, si, sc);
        }
        self.position_table(&mut s);
        self.shape_table(&mut s);
        let _ = writeln!(s, "### Issue goals\n");
        s += &self.goals();
        let _ = writeln!(s, "\n{}", self.meaning());
        s
    }

    fn setup_table(&self, s: &mut String) {
        let _ = writeln!(s, "### Loading the services (one sample each)\n");
        let _ = writeln!(
            s,
            "| N | weir: parse the config + `Dataplane::load` (maps, programs, cgroup links) | \
             `iptables-restore` (1 + 3N chains, 1 + 5N rules) | `nft -f` (3N + 2 chains, 4N + \
             2 rules, N map elements) |"
        );
        let _ = writeln!(s, "|---|---|---|---|");
        for (si, sc) in self.scales.iter().enumerate() {
            let cell = |v: V| match sc.envs.get(&v) {
                Some(e) => e.setup.map_or("–".into(), secs),
                None => self.missing(si, v),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                fmt_n(sc.n),
                cell(V::Weir),
                cell(V::Iptables),
                cell(V::Nft)
            );
        }
        let _ = writeln!(s);
    }

    fn scale_table(&self, s: &mut String, si: usize, sc: &Scale) {
        let _ = writeln!(
            s,
            "### N = {} service{}\n",
            fmt_n(sc.n),
            if sc.n == 1 { "" } else { "s" }
        );
        let _ = writeln!(
            s,
            "| variant | conn/s | connect p50 µs | connect p99 µs | conn/s ÷ iptables | conn/s ÷ direct |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        let ipt = self.conn_s(si, V::Iptables);
        let dir = self.conn_s(si, V::Direct);
        for v in VARIANTS {
            let Some(r) = self.rounds(si, v) else {
                let _ = writeln!(
                    s,
                    "| {} | {} | – | – | – | – |",
                    v.name(),
                    self.missing(si, v)
                );
                continue;
            };
            let c = self.conn_s(si, v);
            let name = if v == V::Weir {
                format!("**{}**", v.name())
            } else {
                v.name().to_owned()
            };
            let vs_ipt = if ipt.is_empty() {
                "–".into()
            } else {
                show_x(&ratio(&c, &ipt))
            };
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {vs_ipt} | {} |",
                show(&c, 0),
                show(&per_round(r, |m| m.p50_us), 1),
                show(&per_round(r, |m| m.p99_us), 1),
                show_x(&ratio(&c, &dir))
            );
        }
        let _ = writeln!(s);
    }

    /// conn/s per position, to show where a linear search shows.
    fn position_table(&self, s: &mut String) {
        let _ = writeln!(s, "### By service position\n");
        let _ = writeln!(
            s,
            "Median conn/s when the VIP is the first / middle / last of the N services \
             (`direct` has no position: it is the same backend three times; so is N = 1).\n"
        );
        let _ = writeln!(s, "| N | weir | nft vmap | iptables DNAT | direct |");
        let _ = writeln!(s, "|---|---|---|---|---|");
        for (si, sc) in self.scales.iter().enumerate() {
            let cell = |v: V| match self.rounds(si, v) {
                Some(r) => (0..sc.positions.len())
                    .map(|p| {
                        let xs: Vec<f64> = r.iter().map(|m| m[p].conn_s).collect();
                        format!("{:.0}", med(&xs))
                    })
                    .collect::<Vec<_>>()
                    .join(" / "),
                None => "–".into(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                fmt_n(sc.n),
                cell(V::Weir),
                cell(V::Nft),
                cell(V::Iptables),
                cell(V::Direct)
            );
        }
        let _ = writeln!(s);
    }

    fn shape_table(&self, s: &mut String) {
        let _ = writeln!(s, "### Shape over N\n");
        let _ = writeln!(
            s,
            "What one connection costs beyond a direct one: per round, 1/conn/s of the variant \
             minus 1/conn/s of `direct` in the same round (µs), median over rounds; p50 connect \
             latency likewise. Shape: *flat* when all points stay within 15 % of the smallest \
             (or within the rounds' own spread), else whichever of `a + b·log10 N` and `a + \
             b·N` fits better.\n"
        );
        let _ = writeln!(s, "| cost | {} | shape |", {
            self.scales
                .iter()
                .map(|sc| format!("N = {}", fmt_n(sc.n)))
                .collect::<Vec<_>>()
                .join(" | ")
        });
        let _ = writeln!(s, "|---|{}---|", "---|".repeat(self.scales.len()));
        for v in [V::Weir, V::Nft, V::Iptables] {
            let mut pts = Vec::new();
            let mut spread = Vec::new();
            let cells: Vec<String> = (0..self.scales.len())
                .map(|si| {
                    let o = self.overhead_us(si, v);
                    if o.is_empty() {
                        return "–".into();
                    }
                    let sm = crate::stats::Summary::of(&o).expect("non-empty");
                    pts.push((self.scales[si].n, sm.median));
                    spread.push((sm.max - sm.min) / 2.0);
                    format!("{:.2}", sm.median)
                })
                .collect();
            let _ = writeln!(
                s,
                "| {} per connection over direct, µs | {} | {} |",
                v.short(),
                cells.join(" | "),
                shape(&pts, med(&spread), "µs", "services")
            );
        }
        for v in VARIANTS {
            let mut pts = Vec::new();
            let mut spread = Vec::new();
            let cells: Vec<String> = (0..self.scales.len())
                .map(|si| match self.rounds(si, v) {
                    Some(r) => {
                        let x = per_round(r, |m| m.p50_us);
                        let sm = crate::stats::Summary::of(&x).expect("non-empty");
                        pts.push((self.scales[si].n, sm.median));
                        spread.push((sm.max - sm.min) / 2.0);
                        format!("{:.1}", sm.median)
                    }
                    None => "–".into(),
                })
                .collect();
            let _ = writeln!(
                s,
                "| {} connect p50, µs | {} | {} |",
                v.short(),
                cells.join(" | "),
                shape(&pts, med(&spread), "µs", "services")
            );
        }
        if !self.in_prog.is_empty() {
            let cells: Vec<String> = (0..self.scales.len())
                .map(|si| {
                    self.in_prog
                        .get(&si)
                        .map_or("–".into(), |ns| format!("{ns:.0} ns"))
                })
                .collect();
            let _ = writeln!(
                s,
                "| weir `connect4` program per call (bpf_stats, one extra run) | {} | |",
                cells.join(" | ")
            );
        }
        let _ = writeln!(s);
    }

    fn scale_index(&self, n: usize) -> Option<usize> {
        self.scales.iter().position(|s| s.n == n)
    }

    fn goals(&self) -> String {
        let mut g = String::new();
        for (n, want) in [(1usize, 1.2), (10_000, 5.0)] {
            let line = match self.scale_index(n) {
                None => format!("not measured (N = {} not in --scales)", fmt_n(n)),
                Some(si) => {
                    let (w, i) = (self.conn_s(si, V::Weir), self.conn_s(si, V::Iptables));
                    if w.is_empty() || i.is_empty() {
                        format!(
                            "not measured (weir {}, iptables {}) → **missed**",
                            self.missing(si, V::Weir),
                            self.missing(si, V::Iptables)
                        )
                    } else {
                        let r = ratio(&w, &i);
                        format!("weir ÷ iptables conn/s = {} → {}", show_x(&r), {
                            verdict(med(&r) >= want)
                        })
                    }
                }
            };
            let _ = writeln!(
                g,
                "- ≥ {want}× the connection rate of iptables at {} service{}: {line}",
                fmt_n(n),
                if n == 1 { "" } else { "s" }
            );
        }
        let line = match self.scale_index(100_000) {
            None => "not measured (N = 100k not in --scales) → **missed**".to_owned(),
            Some(si) => {
                let (w, d) = (self.conn_s(si, V::Weir), self.conn_s(si, V::Direct));
                if w.is_empty() {
                    let largest = (0..self.scales.len())
                        .rev()
                        .find(|&sj| !self.conn_s(sj, V::Weir).is_empty());
                    let at = largest.map_or(String::new(), |sj| {
                        let r = ratio(&self.conn_s(sj, V::Weir), &self.conn_s(sj, V::Direct));
                        format!(
                            "; at the largest N it loaded, {}, weir ÷ direct = {}",
                            fmt_n(self.scales[sj].n),
                            show_x(&r)
                        )
                    });
                    format!(
                        "not measured: weir cannot hold 100k services ({}){at} → **missed**",
                        self.scales[si]
                            .missing
                            .get(&V::Weir)
                            .map_or("–", String::as_str)
                    )
                } else {
                    let r = ratio(&w, &d);
                    let p = ratio(
                        &per_round(self.rounds(si, V::Direct).expect("direct"), |m| m.p50_us),
                        &per_round(self.rounds(si, V::Weir).expect("weir"), |m| m.p50_us),
                    );
                    format!(
                        "weir ÷ direct conn/s = {} (p50 latency direct ÷ weir {}) → {}",
                        show_x(&r),
                        show_x(&p),
                        verdict(med(&r) >= 0.95)
                    )
                }
            }
        };
        let _ = writeln!(
            g,
            "- within 5 % of a direct connect at 100k services: {line}"
        );
        g
    }

    fn meaning(&self) -> String {
        let first = 0;
        let last = self.scales.len() - 1;
        let o = |si: usize, v: V| med(&self.overhead_us(si, v));
        let d = |si: usize| {
            let c = med(&self.conn_s(si, V::Direct));
            1e6 / c
        };
        let mut t = format!(
            "**What the numbers mean.** A direct connection costs {:.1} µs of wall time here \
             (socket, connect with its SYN / SYN-ACK over the veth, close with a RST; the \
             backend's accept runs on the other core). ",
            d(first)
        );
        if !self.overhead_us(first, V::Weir).is_empty() {
            t += &format!(
                "weir adds {:.2} µs per connection at N = {}",
                o(first, V::Weir),
                fmt_n(self.scales[first].n)
            );
            let lw = (0..=last)
                .rev()
                .find(|&si| !self.overhead_us(si, V::Weir).is_empty())
                .unwrap_or(first);
            if lw != first {
                t += &format!(
                    " and {:.2} µs at {}",
                    o(lw, V::Weir),
                    fmt_n(self.scales[lw].n)
                );
            }
            t += ": one run of `cgroup/connect4` per `connect()` (a hash lookup of the \
                  destination in `lb_services`, a random slot of the service's table, the \
                  backend, a counter, and the VIP kept under the socket's cookie in `lb_conn` \
                  for `getpeername()`), one run of `cgroup/sock_release` per `close()` (which \
                  deletes that entry), and nothing in between: no packet of the connection is \
                  translated or tracked. ";
            let progs: Vec<f64> = self.in_prog.values().copied().collect();
            if !progs.is_empty() {
                let lo = progs.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = progs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                t += &format!("The program itself takes {lo:.0}–{hi:.0} ns per call (bpf_stats). ");
            }
        }
        if !self.overhead_us(first, V::Iptables).is_empty()
            && !self.overhead_us(first, V::Nft).is_empty()
        {
            t += &format!(
                "iptables and nft pay for conntrack and NAT on every connection: the first \
                 packet creates a conntrack entry and runs the nat chains, every later packet \
                 is looked up and translated, and the entry lives on after close; at N = {} \
                 that is {:.2} µs (nft) and {:.2} µs (iptables) over direct. ",
                fmt_n(self.scales[first].n),
                o(first, V::Nft),
                o(first, V::Iptables)
            );
        }
        let li = (0..=last)
            .rev()
            .find(|&si| !self.overhead_us(si, V::Iptables).is_empty());
        if let Some(li) = li {
            if li != first {
                t += &format!(
                    "iptables grows with the position of the service in `KUBE-SERVICES`, which \
                     is searched rule by rule: {:.1} µs over direct at N = {} (mean of the first, \
                     middle and last service). ",
                    o(li, V::Iptables),
                    fmt_n(self.scales[li].n)
                );
            }
        }
        let ln = (0..=last)
            .rev()
            .find(|&si| !self.overhead_us(si, V::Nft).is_empty());
        if let Some(ln) = ln {
            if ln != first {
                t += &format!(
                    "nft's verdict map is a hash lookup whatever N is: {:.2} µs over direct at \
                     N = {}. ",
                    o(ln, V::Nft),
                    fmt_n(self.scales[ln].n)
                );
            }
        }
        // Against nft, the stronger competitor; and the tail.
        let weir_scales: Vec<usize> = (0..=last)
            .filter(|&si| self.rounds(si, V::Weir).is_some() && self.rounds(si, V::Nft).is_some())
            .collect();
        if let (Some(&a), Some(&b)) = (weir_scales.first(), weir_scales.last()) {
            let r = |si| show_x(&ratio(&self.conn_s(si, V::Weir), &self.conn_s(si, V::Nft)));
            t += &format!(
                "Against nft, the stronger competitor, weir makes {} the connections at N = {} \
                 and {} at {}. ",
                r(a),
                fmt_n(self.scales[a].n),
                r(b),
                fmt_n(self.scales[b].n)
            );
            let p99 = |si: usize, v: V| {
                med(&per_round(self.rounds(si, v).expect("measured"), |m| {
                    m.p99_us
                }))
            };
            let above = weir_scales
                .iter()
                .filter(|&&si| p99(si, V::Weir) > p99(si, V::Nft))
                .count();
            if above > 0 {
                t += &format!(
                    "weir's p99 is above nft's at {above} of {} N (at N = {}: {:.1} µs, nft \
                     {:.1}, direct {:.1}) although its p50 is lower; this run does not say why. ",
                    weir_scales.len(),
                    fmt_n(self.scales[b].n),
                    p99(b, V::Weir),
                    p99(b, V::Nft),
                    p99(b, V::Direct)
                );
            }
        }
        // Loading: weir's own time grows faster than N.
        let loads: Vec<(usize, f64)> = self
            .scales
            .iter()
            .filter_map(|sc| {
                let e = sc.envs.get(&V::Weir)?;
                Some((sc.n, e.setup?.as_secs_f64()))
            })
            .collect();
        if let (Some(&(n1, t1)), Some(&(n2, t2))) = (loads.iter().rev().nth(1), loads.last()) {
            if n2 > n1 && t2 / t1 > 1.5 * (n2 as f64 / n1 as f64) {
                t += &format!(
                    "Loading is not linear in N for weir: {} at {} services, {} at {} ({:.1}× \
                     the time for {:.1}× the services), while `nft -f` stays close to linear. ",
                    secs(Duration::from_secs_f64(t1)),
                    fmt_n(n1),
                    secs(Duration::from_secs_f64(t2)),
                    fmt_n(n2),
                    t2 / t1,
                    n2 as f64 / n1 as f64
                );
            }
        }
        t.trim_end().to_owned()
    }
}

/// The first line of a reason, shortened for a table cell.
fn short_reason(why: &str) -> String {
    let line = why.lines().next().unwrap_or(why);
    if line.chars().count() > 160 {
        format!("{}…", line.chars().take(160).collect::<String>())
    } else {
        line.to_owned()
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
        assert_eq!(o.scales, DEFAULT_SCALES);
        assert_eq!(
            o.command(),
            "cargo run --release -p weir-bench -- b3 --rounds 9"
        );
        let o = Options::parse(&args(
            "--rounds 7 --scales 10,1 --iptables-max 10_000 --no-write",
        ))
        .unwrap();
        assert_eq!(o.scales, [1, 10]);
        assert!(!o.write);
        assert_eq!(
            o.command(),
            "cargo run --release -p weir-bench -- b3 --rounds 7 --scales 1,10 --iptables-max 10000"
        );
        assert!(Options::parse(&args("--rounds 3")).is_err());
        assert!(Options::parse(&args("--scales 0")).is_err());
        assert!(Options::parse(&args("--bogus")).is_err());
    }

    #[test]
    fn vips_stay_in_their_range() {
        assert_eq!(vip(0), Ipv4Addr::new(10, 96, 0, 1));
        assert_eq!(vip(255), Ipv4Addr::new(10, 96, 1, 0));
        let last = u32::from(vip(MAX_SERVICES - 1));
        assert_eq!(last >> 20, u32::from(Ipv4Addr::new(10, 96, 0, 0)) >> 20);
        assert_eq!(positions(1), [0, 0, 0]);
        assert_eq!(positions(100), [0, 50, 99]);
        let m = |conn_s| Meas {
            conn_s,
            p50_us: 0.0,
            p99_us: 0.0,
        };
        // 1 ms + 1 ms + 4 ms for three connections: 500 per second, not 667.
        assert_eq!(rate(&[m(1000.0), m(1000.0), m(250.0)]), 500.0);
    }

    #[test]
    fn rules_have_kube_proxys_shape() {
        let t = iptables_rules(3);
        assert_eq!(t.lines().filter(|l| l.starts_with(':')).count(), 2 + 3 * 3);
        assert_eq!(t.lines().filter(|l| l.starts_with("-A")).count(), 1 + 5 * 3);
        assert!(t.contains(
            "-A KUBE-SERVICES -d 10.96.0.3/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-0000000000000002\n"
        ));
        assert!(t.contains(
            "-A KUBE-SEP-0000000000000005 -p tcp -m tcp -j DNAT --to-destination 198.18.0.2:8081\n"
        ));
        // iptables chain names hold at most 28 characters.
        assert!(t.lines().filter_map(|l| l.strip_prefix(':')).all(|l| l
            .split(' ')
            .next()
            .unwrap()
            .len()
            <= 28));
        let n = nft_rules(3);
        assert_eq!(n.matches("add chain").count(), 2 + 3 * 3);
        assert_eq!(n.matches("add rule").count(), 2 + 4 * 3);
        assert!(n.contains("10.96.0.1 . tcp . 80 : goto service-00000000"));
        // 100k services with two backends each: capacities rounded up to powers of two.
        assert_eq!(weir_capacity(100_000), (131_072, 262_144));
        let w = weir_config(2, "weir-b3-1");
        assert_eq!(
            w,
            "cgroup weir-b3-1\n\
             lb capacity services=65536 backends=65536 slots=262144\n\
             service s0 10.96.0.1:80/tcp backends=198.18.0.2:8080,198.18.0.2:8081\n\
             service s1 10.96.0.2:80/tcp backends=198.18.0.2:8080,198.18.0.2:8081\n"
        );
        assert!(weir::config::parse("b3.conf", &weir_config(100, "x")).is_ok());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }
}
