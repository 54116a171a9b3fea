//! B8: service-mesh redirect. Connections per second and `connect()` latency from a workload
//! to a service address through the same small transparent proxy, captured two ways:
//!
//! - **weir**: `mesh` (programs/mesh.o, loaded through the weir library): `cgroup/connect4`
//!   connects the workload's socket to 127.0.0.1:15001 at `connect()`, `sockops` records the
//!   connection once established, `cgroup/getsockopt` answers `SO_ORIGINAL_DST`;
//! - **iptables**: the standard sidecar setup (Istio's): `nat OUTPUT` → a chain that returns for
//!   the proxy's uid and for loopback destinations and `REDIRECT`s every other TCP connection
//!   to port 15001; the proxy's `SO_ORIGINAL_DST` comes from conntrack;
//! - **direct**: the workload connects to 127.0.0.1:15001 itself, nothing captures anything
//!   (the proxy's `SO_ORIGINAL_DST` fails and it picks a backend all the same): the floor.
//!
//! Each variant has its own sandbox (two network namespaces, a veth pair, a cgroup). The proxy
//! (`__b8-proxy`, a process of this binary) runs in namespace `a` as uid 1337 in a cgroup of its
//! own (inside the sandbox's), with two worker threads that each accept, ask `SO_ORIGINAL_DST`,
//! reach a backend in namespace `b` (the proxy balances by itself), answer and close: the same
//! proxy, the same code, for every variant. It reaches the backend two ways, each measured:
//! **fresh**, a new upstream connection per connection (an L4 proxy), and **pooled**, one
//! request/response on an upstream connection the worker keeps (as an HTTP proxy's connection
//! pool does), where the capture's share of the cost is larger. The workload (`__b8-client`) runs in
//! namespace `a` in the meshed cgroup and loops socket / connect (timed) / read to EOF / close
//! with `SO_LINGER` 0. A connection per second is one full round trip through the proxy and its
//! upstream connection. The iptables rules live in namespace `a` only, never the machine's own.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::resource::UsageWho;
use nix::sys::socket::{self as sock, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
use weir::sandbox::{Sandbox, ADDR_B4};
use weir::sys::{cgroup, netns};

use crate::env::{self, Facts};
use crate::flags::Flags;
use crate::proc::{self, output_of};
use crate::report::{self, med, show, show_x, verdict};

/// The heading of B8's section.
pub const HEADING: &str = "## B8: service-mesh redirect";
/// Hidden subcommand: the workload process (see [`client_main`]).
pub const CLIENT: &str = "__b8-client";
/// Hidden subcommand: the proxy process (see [`proxy_main`]).
pub const PROXY: &str = "__b8-proxy";

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const VIP_PORT: u16 = 80;
const PROXY_PORT: u16 = 15001;
/// The proxy's uid (Istio's): the iptables variant recognises the proxy by it.
const PROXY_UID: u32 = 1337;
const BACKEND_PORTS: [u16; 2] = [8080, 8081];
const PROXY_WORKERS: usize = 2;
const DEFAULT_ROUNDS: usize = 9;
const DEFAULT_MIN_MS: u64 = 300;
const DEFAULT_MIN_CONNS: usize = 300;
const MAX_MS: u64 = 5000;
const WARM_CONNS: usize = 50;
const CHECK_CONNS: usize = 8;
/// The goal: weir's connection rate at least this multiple of iptables'.
const GOAL: f64 = 1.3;

/// Command-line options of `b8`.
#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: usize,
    pub min_ms: u64,
    pub min_conns: usize,
    pub write: bool,
}

impl Options {
    /// Parses `[--rounds N] [--ms N] [--conns N] [--no-write]`.
    ///
    /// # Errors
    /// A usage error, as a message.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut o = Self {
            rounds: DEFAULT_ROUNDS,
            min_ms: DEFAULT_MIN_MS,
            min_conns: DEFAULT_MIN_CONNS,
            write: true,
        };
        let mut f = Flags::new("b8", args);
        while let Some(a) = f.next_flag() {
            match a {
                "--rounds" => o.rounds = f.number(a)? as usize,
                "--ms" => o.min_ms = f.number(a)?,
                "--conns" => o.min_conns = f.number(a)? as usize,
                "--no-write" => o.write = false,
                other => return Err(f.unknown(other)),
            }
        }
        if o.rounds < 7 {
            return Err("b8: --rounds must be at least 7".into());
        }
        if o.min_conns < 100 {
            return Err("b8: --conns must be at least 100 (for a p99)".into());
        }
        if o.min_ms == 0 || o.min_ms >= MAX_MS {
            return Err(format!("b8: --ms must be between 1 and {}", MAX_MS - 1));
        }
        Ok(o)
    }

    fn command(&self) -> String {
        let mut c = format!(
            "cargo run --release -p weir-bench -- b8 --rounds {}",
            self.rounds
        );
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
// The workload process

/// `SO_LINGER` on, 0 s: close() sends a RST and frees the socket at once (no TIME_WAIT).
fn linger0(fd: &impl AsFd) -> Result<(), String> {
    let l = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    sock::setsockopt(fd, sockopt::Linger, &l).map_err(|e| format!("SO_LINGER: {e}"))
}

/// One connection through the proxy: socket, connect (timed), read the answer to EOF, close.
fn transaction(to: &SockaddrIn) -> Result<(Duration, String), String> {
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
    let mut s = TcpStream::from(fd);
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .map_err(|e| format!("reading the proxy's answer: {e}"))?;
    linger0(&s)?;
    Ok((d, answer))
}

/// CPU time in ns of every thread of process `pid` (the first field of each thread's
/// `/proc/PID/task/TID/schedstat`: time spent running, in ns).
fn process_cpu_ns(pid: u32) -> Result<u64, String> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0;
    for e in std::fs::read_dir(&dir).map_err(|e| format!("reading {dir}: {e}"))? {
        let path = e
            .map_err(|e| format!("reading {dir}: {e}"))?
            .path()
            .join("schedstat");
        // A thread that ends between the listing and the read has nothing left to count.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        total += parse_schedstat(&text)
            .ok_or_else(|| format!("{}: unexpected contents {text:?}", path.display()))?;
    }
    Ok(total)
}

/// The run time (ns) from the text of a `schedstat` file: `RUN_NS WAIT_NS TIMESLICES`.
fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn enter(cg: &str, ns: &str) -> Result<(), String> {
    cgroup::add_process(Path::new(cg), std::process::id())
        .map_err(|e| format!("joining cgroup {cg}: {e}"))?;
    let fd = netns::open(ns).map_err(|e| format!("opening netns {ns}: {e}"))?;
    netns::enter(fd.as_fd()).map_err(|e| format!("entering netns {ns}: {e}"))
}

fn client(args: &[String]) -> Result<(), String> {
    let [cg, ns, to, mode, rest @ ..] = args else {
        return Err("usage: CGROUP_DIR NETNS ADDR:PORT check N | run MIN_MS MIN_CONNS".into());
    };
    enter(cg, ns)?;
    let to: SocketAddrV4 = to.parse().map_err(|_| format!("bad address '{to}'"))?;
    let to = SockaddrIn::from(to);
    let num = |s: Option<&String>| -> Result<u64, String> {
        s.and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{mode}: a number is missing"))
    };
    match mode.as_str() {
        // One line per connection: `answer TEXT`.
        "check" => {
            for _ in 0..num(rest.first())? {
                let (_, answer) = transaction(&to)?;
                println!("answer {answer}");
            }
        }
        // `result CONNECTIONS ELAPSED_NS P50_NS P99_NS CPU_NS` (this process's CPU time over
        // the timed connections).
        "run" => {
            let (min_ms, min_conns) = (num(rest.first())?, num(rest.get(1))? as usize);
            for _ in 0..WARM_CONNS {
                transaction(&to)?;
            }
            let mut lat = Vec::with_capacity(min_conns * 4);
            let cpu0 = proc::rusage_ns(UsageWho::RUSAGE_SELF)?;
            let t0 = Instant::now();
            let (min, max) = (Duration::from_millis(min_ms), Duration::from_millis(MAX_MS));
            loop {
                lat.push(transaction(&to)?.0.as_nanos() as u64);
                let e = t0.elapsed();
                if (e >= min && lat.len() >= min_conns) || e >= max {
                    break;
                }
            }
            let elapsed = t0.elapsed().as_nanos();
            let cpu = proc::rusage_ns(UsageWho::RUSAGE_SELF)? - cpu0;
            lat.sort_unstable();
            println!(
                "result {} {elapsed} {} {} {cpu}",
                lat.len(),
                percentile(&lat, 0.50),
                percentile(&lat, 0.99)
            );
        }
        other => return Err(format!("unknown mode '{other}'")),
    }
    Ok(())
}

/// The workload's main: `weir-bench __b8-client CGROUP_DIR NETNS ADDR:PORT MODE ...`.
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
// The proxy process

/// One redirected connection: where was it going, reach a backend (a fresh upstream connection,
/// or one request/response on the worker's pooled one), answer, close.
fn serve(conn: TcpStream, turn: &AtomicUsize, pool: &mut Option<TcpStream>) -> Result<(), String> {
    // Reached directly (the floor variant), a connection has no original destination.
    let orig = match sock::getsockopt(&conn, sockopt::OriginalDst) {
        Ok(o) => SocketAddrV4::new(
            Ipv4Addr::from(u32::from_be(o.sin_addr.s_addr)),
            u16::from_be(o.sin_port),
        )
        .to_string(),
        Err(nix::errno::Errno::ENOENT) => "none".to_owned(),
        Err(e) => return Err(format!("SO_ORIGINAL_DST: {e}")),
    };
    // The proxy balances by itself: round robin over the backends.
    let port = BACKEND_PORTS[turn.fetch_add(1, Ordering::Relaxed) % BACKEND_PORTS.len()];
    let port = match pool {
        None => {
            let upstream = TcpStream::connect(SocketAddrV4::new(ADDR_B4, port))
                .map_err(|e| format!("connecting upstream: {e}"))?;
            linger0(&upstream)?;
            port
        }
        Some(up) => {
            let mut b = [0u8; 1];
            up.write_all(b"?")
                .and_then(|()| up.read_exact(&mut b))
                .map_err(|e| format!("pooled upstream: {e}"))?;
            up.peer_addr().map_or(0, |a| a.port())
        }
    };
    let mut conn = conn;
    conn.write_all(format!("{orig} {port}").as_bytes())
        .map_err(|e| format!("answering: {e}"))?;
    // A normal close (FIN): the workload reads to EOF, then resets.
    Ok(())
}

fn proxy(args: &[String]) -> Result<(), String> {
    let [cg, ns, mode] = args else {
        return Err("usage: CGROUP_DIR NETNS fresh|pooled".into());
    };
    let pooled = match mode.as_str() {
        "fresh" => false,
        "pooled" => true,
        other => return Err(format!("unknown upstream mode '{other}'")),
    };
    enter(cg, ns)?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, PROXY_PORT))
        .map_err(|e| format!("bind 127.0.0.1:{PROXY_PORT}: {e}"))?;
    // As a sidecar does: its own uid, by which iptables recognises it.
    nix::unistd::setuid(nix::unistd::Uid::from_raw(PROXY_UID))
        .map_err(|e| format!("setuid {PROXY_UID}: {e}"))?;
    let listener = Arc::new(listener);
    let turn = Arc::new(AtomicUsize::new(0));
    let mut pools = Vec::new();
    for k in 0..PROXY_WORKERS {
        pools.push(if pooled {
            let to = SocketAddrV4::new(ADDR_B4, BACKEND_PORTS[k % BACKEND_PORTS.len()]);
            let up = TcpStream::connect(to).map_err(|e| format!("pooled upstream {to}: {e}"))?;
            up.set_nodelay(true)
                .map_err(|e| format!("TCP_NODELAY: {e}"))?;
            Some(up)
        } else {
            None
        });
    }
    let workers: Vec<JoinHandle<()>> = pools
        .into_iter()
        .map(|mut pool| {
            let (l, turn) = (listener.clone(), turn.clone());
            std::thread::spawn(move || loop {
                if let Ok((conn, _)) = l.accept() {
                    if let Err(e) = serve(conn, &turn, &mut pool) {
                        eprintln!("{PROXY}: {e}");
                    }
                }
            })
        })
        .collect();
    println!("ready");
    let _ = std::io::stdout().flush();
    for w in workers {
        let _ = w.join();
    }
    Ok(())
}

/// The proxy's main: `weir-bench __b8-proxy CGROUP_DIR NETNS fresh|pooled`; serves until
/// killed.
pub fn proxy_main(args: &[String]) -> ExitCode {
    match proxy(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{PROXY}: {e}");
            ExitCode::from(1)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Backends, variants, sandboxes

/// TCP servers on the backend ports in namespace `b` that accept and drop (fresh upstreams), or
/// (`echo`) answer every byte of the connections they accept (pooled upstreams).
///
/// Each listener blocks in `accept()`: a polling loop (non-blocking accept and a sleep) would
/// wake thousands of times a second in every variant's sandbox for the whole run and take CPU
/// from the variant being measured. `Drop` wakes them with `shutdown()` on the listener, which
/// makes a blocked `accept()` fail.
struct Backends {
    stop: Arc<AtomicBool>,
    listeners: Vec<Arc<TcpListener>>,
    threads: Vec<JoinHandle<()>>,
}

impl Backends {
    fn start(sb: &Sandbox, echo: bool) -> Result<Self, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let (mut listeners, mut threads) = (Vec::new(), Vec::new());
        for port in BACKEND_PORTS {
            let l = sb
                .in_b(|| TcpListener::bind((ADDR_B4, port)))
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("backend bind {ADDR_B4}:{port}: {e}"))?;
            let l = Arc::new(l);
            listeners.push(l.clone());
            let s = stop.clone();
            threads.push(std::thread::spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((mut c, _)) if echo => {
                            // Lives as long as the proxy keeps the connection.
                            let _ = c.set_nodelay(true);
                            std::thread::spawn(move || {
                                let mut b = [0u8; 64];
                                while let Ok(n @ 1..) = c.read(&mut b) {
                                    if c.write_all(&b[..n]).is_err() {
                                        break;
                                    }
                                }
                            });
                        }
                        Ok(_) => {}
                        // Shut down by Drop (EINVAL), or a transient error: check `stop`.
                        Err(_) => std::thread::sleep(Duration::from_millis(1)),
                    }
                }
            }));
        }
        Ok(Self {
            stop,
            listeners,
            threads,
        })
    }
}

impl Drop for Backends {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for l in &self.listeners {
            let _ = sock::shutdown(l.as_raw_fd(), sock::Shutdown::Both);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V {
    Weir,
    Iptables,
    Direct,
}

const VARIANTS: [V; 3] = [V::Weir, V::Iptables, V::Direct];

impl V {
    fn name(self) -> &'static str {
        match self {
            V::Weir => "weir (connect4 + sockops + getsockopt)",
            V::Iptables => "iptables nat OUTPUT REDIRECT",
            V::Direct => "direct to the proxy, no capture (the floor)",
        }
    }

    /// Where the workload connects.
    fn target(self) -> SocketAddrV4 {
        match self {
            V::Direct => SocketAddrV4::new(Ipv4Addr::LOCALHOST, PROXY_PORT),
            _ => SocketAddrV4::new(VIP, VIP_PORT),
        }
    }
}

/// The Istio-style capture in namespace `a` (an `iptables-restore` file).
fn iptables_rules() -> String {
    format!(
        "*nat\n\
         :OUTPUT ACCEPT [0:0]\n\
         :MESH_OUTPUT - [0:0]\n\
         :MESH_REDIRECT - [0:0]\n\
         -A OUTPUT -p tcp -j MESH_OUTPUT\n\
         -A MESH_OUTPUT -m owner --uid-owner {PROXY_UID} -j RETURN\n\
         -A MESH_OUTPUT -d 127.0.0.1/32 -j RETURN\n\
         -A MESH_OUTPUT -j MESH_REDIRECT\n\
         -A MESH_REDIRECT -p tcp -j REDIRECT --to-ports {PROXY_PORT}\n\
         COMMIT\n"
    )
}

/// One variant's world: sandbox, backends, the app and proxy cgroups, the proxy process.
struct Env {
    v: V,
    pooled: bool,
    // Drop order: the proxy, the cgroups (empty once it is gone), the backends, the sandbox.
    proxy: Child,
    cgroups: Vec<PathBuf>,
    _backends: Backends,
    sb: Sandbox,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.proxy.kill();
        let _ = self.proxy.wait();
        for d in self.cgroups.iter().rev() {
            // The kernel empties a cgroup a moment after its last process is reaped.
            for _ in 0..100 {
                if cgroup::remove(d).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn self_exe() -> Result<PathBuf, String> {
    std::env::current_exe().map_err(|e| format!("finding this executable: {e}"))
}

impl Env {
    fn app(&self) -> &Path {
        &self.cgroups[0]
    }

    fn new(v: V, pooled: bool, scratch: &Path) -> Result<Self, String> {
        let tag = match (v, pooled) {
            (V::Weir, false) => "b8wf",
            (V::Weir, true) => "b8wp",
            (V::Iptables, false) => "b8if",
            (V::Iptables, true) => "b8ip",
            (V::Direct, false) => "b8df",
            (V::Direct, true) => "b8dp",
        };
        let sb = Sandbox::new(tag).map_err(|e| e.to_string())?;
        let backends = Backends::start(&sb, pooled)?;
        let mut cgroups = Vec::new();
        for rel in ["app", "proxy"] {
            let d = sb.cgroup_dir.join(rel);
            cgroup::create(&d).map_err(|e| format!("creating cgroup {}: {e}", d.display()))?;
            cgroups.push(d);
        }
        // Netfilter sees a locally generated packet after the route lookup: the VIP needs a
        // route (towards `b`, which does not own it). weir rewrites before routing; it gets
        // the same route so the namespaces do not differ.
        output_of(&[
            "ip",
            "-n",
            &sb.ns_a,
            "route",
            "add",
            &format!("{VIP}/32"),
            "via",
            &ADDR_B4.to_string(),
        ])?;
        match v {
            V::Weir => {
                let text = format!(
                    "cgroup {cg}\nmesh {cg}/app proxy-port={PROXY_PORT} proxy-cgroup={cg}/proxy\n",
                    cg = sb.cgroup
                );
                let cfg = weir::config::parse("b8.conf", &text).map_err(|e| e.to_string())?;
                let dp = weir::Dataplane::new(sb.pin_dir.clone());
                sb.in_b(|| dp.load(&cfg))
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
            }
            V::Iptables => {
                let file = scratch.join(format!("{}.rules", sb.ns_a));
                std::fs::write(&file, iptables_rules())
                    .map_err(|e| format!("writing {}: {e}", file.display()))?;
                let f = file.to_string_lossy().into_owned();
                let r = output_of(&["ip", "netns", "exec", &sb.ns_a, "iptables-restore", &f]);
                let _ = std::fs::remove_file(&file);
                r?;
            }
            V::Direct => {}
        }
        let mut proxy = Command::new(self_exe()?)
            .args([
                PROXY,
                &cgroups[1].to_string_lossy(),
                &sb.ns_a,
                if pooled { "pooled" } else { "fresh" },
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting the proxy: {e}"))?;
        let mut ready = [0u8; 6];
        let started = proxy
            .stdout
            .take()
            .map(|mut o| o.read_exact(&mut ready).is_ok())
            .unwrap_or(false);
        let env = Self {
            v,
            pooled,
            proxy,
            cgroups,
            _backends: backends,
            sb,
        };
        if !started || &ready != b"ready\n" {
            return Err(format!("{}: the proxy did not start", env.what()));
        }
        Ok(env)
    }

    fn what(&self) -> String {
        format!(
            "{} ({} upstream)",
            self.v.name(),
            if self.pooled { "pooled" } else { "fresh" }
        )
    }

    fn client(&self, mode: &[&str]) -> Result<String, String> {
        let app = self.app().to_string_lossy().into_owned();
        let mut argv: Vec<String> = vec![
            CLIENT.into(),
            app,
            self.sb.ns_a.clone(),
            self.v.target().to_string(),
        ];
        argv.extend(mode.iter().map(|s| (*s).to_owned()));
        let out = Command::new(self_exe()?)
            .args(&argv)
            .output()
            .map_err(|e| format!("running the workload: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{}: workload failed: {}",
                self.what(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every connection went through the proxy, which saw the VIP as the original destination
    /// and used both backends.
    fn check(&self) -> Result<(), String> {
        let out = self.client(&["check", &CHECK_CONNS.to_string()])?;
        let want = match self.v {
            V::Direct => "none".to_owned(),
            _ => SocketAddr::from((VIP, VIP_PORT)).to_string(),
        };
        let mut ports = Vec::new();
        for line in out.lines() {
            let answer = line.strip_prefix("answer ").unwrap_or(line);
            let (orig, port) = answer.split_once(' ').unwrap_or((answer, ""));
            if orig != want {
                return Err(format!(
                    "{}: the proxy saw {answer:?}, not {want} as the original destination",
                    self.what()
                ));
            }
            ports.push(port.to_owned());
        }
        ports.sort();
        ports.dedup();
        if ports.len() != BACKEND_PORTS.len() {
            return Err(format!("{}: backends used {ports:?}", self.what()));
        }
        Ok(())
    }

    /// One measurement: (connections per second, p50 µs, p99 µs, CPU µs per connection).
    ///
    /// CPU per connection is the workload's own over its timed connections plus, over the
    /// whole client run (its warm-up connections included, so divided by all of them), the
    /// proxy's threads and this process, which runs the backends.
    fn measure(&self, opts: &Options) -> Result<(f64, f64, f64, f64), String> {
        let side = || -> Result<u64, String> {
            Ok(process_cpu_ns(self.proxy.id())? + proc::rusage_ns(UsageWho::RUSAGE_SELF)?)
        };
        let side0 = side()?;
        let out = self.client(&["run", &opts.min_ms.to_string(), &opts.min_conns.to_string()])?;
        let side_ns = (side()? - side0) as f64;
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix("result "))
            .ok_or_else(|| format!("{}: no result in {out:?}", self.what()))?;
        let f: Vec<f64> = line
            .split(' ')
            .map(|x| x.parse::<f64>().unwrap_or(f64::NAN))
            .collect();
        let [n, ns, p50, p99, client_ns] = f[..] else {
            return Err(format!("{}: bad result {line:?}", self.what()));
        };
        let cpu = client_ns / n + side_ns / (n + WARM_CONNS as f64);
        Ok((n / (ns / 1e9), p50 / 1e3, p99 / 1e3, cpu / 1e3))
    }
}

// ---------------------------------------------------------------------------------------------
// The run and the report

#[derive(Debug, Default)]
struct Series {
    rate: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    cpu: Vec<f64>,
}

/// Runs B8 and writes its section into BENCHMARKS.md (unless `--no-write`).
///
/// # Errors
/// A setup step, a correctness check or a measurement failed.
pub fn run(opts: &Options) -> Result<(), String> {
    env::ensure_tools(&[
        ("ip", "iproute2"),
        ("iptables", "iptables"),
        ("iptables-restore", "iptables"),
    ])?;
    weir::sys::bpffs::ensure_mounted(Path::new("/sys/fs/bpf"))
        .map_err(|e| format!("mounting bpffs at /sys/fs/bpf: {e}"))?;
    let facts = env::facts();
    let iptables = output_of(&["iptables", "-V"]).unwrap_or_else(|e| e);
    let scratch = std::env::temp_dir();
    // Index = mode * VARIANTS.len() + variant; mode 0 fresh, 1 pooled.
    let mut envs: Vec<Env> = Vec::new();
    for pooled in [false, true] {
        for v in VARIANTS {
            envs.push(Env::new(v, pooled, &scratch)?);
        }
    }
    for e in &envs {
        e.check()?;
    }
    let mut series: Vec<Series> = envs.iter().map(|_| Series::default()).collect();
    let mut ratios = [Vec::new(), Vec::new()];
    let mut floor = [Vec::new(), Vec::new()];
    for round in 0..opts.rounds {
        // Rotate which variant goes first, so none always runs on a warmer machine.
        let n = envs.len();
        let mut rates = vec![0.0; n];
        for i in (0..n).map(|k| (k + round) % n) {
            let (rate, p50, p99, cpu) = envs[i].measure(opts)?;
            rates[i] = rate;
            series[i].rate.push(rate);
            series[i].p50.push(p50);
            series[i].p99.push(p99);
            series[i].cpu.push(cpu);
        }
        for m in 0..2 {
            let r = &rates[m * VARIANTS.len()..];
            ratios[m].push(r[0] / r[1]);
            floor[m].push(r[0] / r[2]);
        }
        eprintln!(
            "b8 round {}/{}: fresh: weir {:.0}, iptables {:.0}, direct {:.0}; pooled: weir {:.0}, \
             iptables {:.0}, direct {:.0} conn/s",
            round + 1,
            opts.rounds,
            rates[0],
            rates[1],
            rates[2],
            rates[3],
            rates[4],
            rates[5]
        );
    }
    drop(envs);
    let text = section(opts, &facts, iptables.trim(), &series, &ratios, &floor);
    print!("{text}");
    if opts.write {
        report::write_section(&env::workspace_root().join("BENCHMARKS.md"), HEADING, &text)?;
    }
    Ok(())
}

fn section(
    opts: &Options,
    facts: &Facts,
    iptables: &str,
    series: &[Series],
    ratios: &[Vec<f64>; 2],
    floor: &[Vec<f64>; 2],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{HEADING}\n");
    let _ = writeln!(
        s,
        "A workload connects to a service address through a local transparent proxy (accept, \
         `SO_ORIGINAL_DST`, reach a backend in another namespace, answer, close), captured \
         by weir's `mesh` (connect-time redirect, `sockops`, `cgroup/getsockopt`) or by the \
         standard sidecar rules (`iptables -t nat` OUTPUT → uid/loopback RETURN → `REDIRECT \
         --to-ports {PROXY_PORT}`, conntrack answering `SO_ORIGINAL_DST`), or not captured at \
         all (the workload connects to the proxy itself: the floor), in namespaces of \
         their own; the same proxy binary (2 worker threads, uid {PROXY_UID}, its own cgroup) \
         in all. The proxy reaches the backend with a fresh upstream connection per connection \
         (an L4 proxy) or with one request/response on an upstream connection each worker keeps \
         (as an HTTP proxy's pool does). One connection is a full round trip through the proxy; \
         `connect()` latency is the workload's. The workload makes one connection at a time, so \
         the rate is bound by latency and the machine is not saturated; **CPU per connection** \
         is what the path costs whatever the load: the workload's CPU time over its timed \
         connections plus the proxy's and the backends' over the whole run (softirq work runs \
         inline in these tasks and is in their system time; this kernel has no IRQ time \
         accounting). {} interleaved rounds of at least {} ms and {} connections each.\n",
        opts.rounds, opts.min_ms, opts.min_conns
    );
    let _ = writeln!(
        s,
        "Run: {}, kernel {}, commit {}, {} CPUs, {iptables}; `{}`.\n",
        facts.date,
        facts.kernel,
        facts.commit,
        facts.cpus,
        opts.command()
    );
    let modes = ["fresh upstream per connection", "pooled upstream"];
    for (m, mode) in modes.iter().enumerate() {
        let _ = writeln!(s, "### {}\n", capitalize(mode));
        let _ = writeln!(
            s,
            "| capture | connections/s | connect() p50 (µs) | connect() p99 (µs) | CPU per \
             connection (µs) |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|");
        let block = &series[m * VARIANTS.len()..(m + 1) * VARIANTS.len()];
        for (v, d) in VARIANTS.iter().zip(block) {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                v.name(),
                show(&d.rate, 0),
                show(&d.p50, 1),
                show(&d.p99, 1),
                show(&d.cpu, 1)
            );
        }
        let p50 = med(&block[1].p50) / med(&block[0].p50);
        let per_round = |f: fn(f64, f64) -> f64, a: &[f64], b: &[f64]| -> Vec<f64> {
            a.iter().zip(b).map(|(x, y)| f(*x, *y)).collect()
        };
        let cpu_x = per_round(|i, w| i / w, &block[1].cpu, &block[0].cpu);
        let over_floor = per_round(|w, d| w - d, &block[0].cpu, &block[2].cpu);
        let ipt_over_floor = per_round(|i, d| i - d, &block[1].cpu, &block[2].cpu);
        let _ = writeln!(
            s,
            "\nweir / iptables connection rate, per round: {}; weir / the floor: {}; iptables / \
             weir connect() p50: {p50:.2}×. CPU per connection, per round: iptables / weir {}; \
             over the floor: weir {} µs, iptables {} µs.\n",
            show_x(&ratios[m]),
            show_x(&floor[m]),
            show_x(&cpu_x),
            show(&over_floor, 1),
            show(&ipt_over_floor, 1)
        );
    }
    let _ = writeln!(s, "### Issue goals\n");
    let _ = writeln!(s, "| goal | result | verdict |");
    let _ = writeln!(s, "|---|---|---|");
    for (m, mode) in modes.iter().enumerate() {
        let ratio = med(&ratios[m]);
        let _ = writeln!(
            s,
            "| connection rate ≥ {GOAL}× iptables `REDIRECT` ({mode}) | {ratio:.2}× | {} |",
            verdict(ratio >= GOAL)
        );
    }
    s
}

fn capitalize(text: &str) -> String {
    let mut c = text.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_run_time() {
        assert_eq!(
            parse_schedstat("176622599015 113355653531 113913\n"),
            Some(176622599015)
        );
        assert_eq!(parse_schedstat(""), None);
        assert_eq!(parse_schedstat("x 1 2"), None);
    }

    #[test]
    fn this_process_has_cpu_time() {
        let a = process_cpu_ns(std::process::id()).unwrap();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(process_cpu_ns(std::process::id()).unwrap() > a);
        assert!(proc::rusage_ns(UsageWho::RUSAGE_SELF).unwrap() > 0);
    }
}
