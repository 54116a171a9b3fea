//! `weir demo`: the whole dataplane on real traffic in a sandbox that it builds and removes.
//!
//! The client runs as a separate process (weir itself, with the hidden `__demo-client` command),
//! because cgroup membership is per process: the connect-time hooks only see sockets of processes
//! inside the demo cgroup, and weir must not move itself there.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config;
use crate::dataplane::Dataplane;
use crate::error::Error;
use crate::sandbox::{Sandbox, ADDR_A4, ADDR_B4, ADDR_B6};
use crate::status::Status;
use crate::sys::netns;

/// TCP echo port of the demo server.
pub const TCP_PORT: u16 = 7001;
/// UDP echo port of the demo server.
pub const UDP_PORT: u16 = 7002;
/// The failsafe port the demo keeps reachable from a denied client (SSH's).
pub const FAILSAFE_PORT: u16 = 22;
/// Connections/datagrams per kind the demo client makes.
pub const ROUNDS: u32 = 5;
/// Second backend's TCP and UDP ports (the demo's second echo server, same address).
pub const TCP_PORT_2: u16 = 7003;
/// See [`TCP_PORT_2`].
pub const UDP_PORT_2: u16 = 7004;
/// The demo's IPv4 service address: TCP port 80 and UDP port 53 (no route leads there, so only a
/// rewritten connection reaches anything).
pub const VIP4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 96, 0, 10);
/// The demo's IPv6 service address (TCP port 80).
pub const VIP6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0, 0x10);
/// Connections/datagrams per kind in the load-balancing part.
pub const LB_ROUNDS: u32 = 10;
/// The demo proxy's port (on 127.0.0.1 and ::1) in the service-mesh part.
pub const MESH_PROXY_PORT: u16 = 15001;
/// Connections per address family in the service-mesh part.
pub const MESH_ROUNDS: u32 = 4;
/// The demo proxy's inbound port (Istio's 15006) in namespace `b`, where inbound TCP is
/// captured in the service-mesh part.
pub const MESH_INBOUND_PORT: u16 = 15006;

/// The services the demo adds to its config: two backends (two echo servers) per IPv4 service,
/// one for IPv6.
pub fn demo_services() -> String {
    format!(
        "service echo {VIP4}:80/tcp backends={ADDR_B4}:{TCP_PORT},{ADDR_B4}:{TCP_PORT_2}\n\
         service echo {VIP4}:53/udp backends={ADDR_B4}:{UDP_PORT},{ADDR_B4}:{UDP_PORT_2}\n\
         service echo6 [{VIP6}]:80/tcp backends=[{ADDR_B6}]:{TCP_PORT}\n"
    )
}

/// The demo's config, for a sandbox.
pub fn demo_config(sb: &Sandbox) -> String {
    format!(
        "# weir demo: XDP and TC on the host side of the veth, connect-time hooks on the demo cgroup\n\
         interface {} role=host xdp=native tc=on\n\
         cgroup {}\n",
        sb.veth_b, sb.cgroup
    )
}

/// An echo server (TCP and UDP, v4 and v6) on a thread inside a namespace, until dropped.
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl EchoServer {
    /// Starts the server inside the namespace `netns_fd` is a handle of.
    ///
    /// # Errors
    /// Returns an error when the sockets cannot be bound.
    pub fn start(netns_fd: std::os::fd::BorrowedFd<'_>) -> Result<Self, Error> {
        Self::start_on(netns_fd, TCP_PORT, UDP_PORT)
    }

    /// Starts the server on other ports.
    ///
    /// # Errors
    /// Returns an error when the sockets cannot be bound.
    pub fn start_on(
        netns_fd: std::os::fd::BorrowedFd<'_>,
        tcp_port: u16,
        udp_port: u16,
    ) -> Result<Self, Error> {
        let (tcp, udp) = netns::run_in(netns_fd, || -> std::io::Result<_> {
            // [::] is dual-stack on Linux (bindv6only=0 in a fresh namespace).
            let tcp = TcpListener::bind(("::", tcp_port))?;
            tcp.set_nonblocking(true)?;
            let udp = UdpSocket::bind(("::", udp_port))?;
            udp.set_read_timeout(Some(Duration::from_millis(50)))?;
            Ok((tcp, udp))
        })
        .map_err(|e| Error::io("demo server: binding echo sockets", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let s1 = stop.clone();
        let tcp_thread = std::thread::spawn(move || {
            while !s1.load(Ordering::Relaxed) {
                match tcp.accept() {
                    Ok((mut conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; 256];
                        if let Ok(n) = conn.read(&mut buf) {
                            let _ = conn.write_all(&buf[..n]);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        let s2 = stop.clone();
        let udp_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !s2.load(Ordering::Relaxed) {
                if let Ok((n, from)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(&buf[..n], from);
                }
            }
        });
        Ok(Self {
            stop,
            threads: vec![tcp_thread, udp_thread],
        })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Runs the demo client (weir's hidden `__demo-client` command) inside `sb`'s cgroup and client
/// namespace, and returns its output.
///
/// # Errors
/// Returns an error when the client cannot be started or fails.
pub fn run_client(weir_exe: &Path, sb: &Sandbox, rounds: u32) -> Result<String, Error> {
    run_client_mode(weir_exe, sb, rounds, "echo")
}

/// [`run_client`] with a mode: `echo` (the backends directly), `lb` (through the demo's
/// service addresses) or `lb-excluded` (the service addresses, expected unreachable).
fn run_client_mode(
    weir_exe: &Path,
    sb: &Sandbox,
    rounds: u32,
    mode: &str,
) -> Result<String, Error> {
    run_client_in(weir_exe, sb, &sb.cgroup_dir, rounds, mode)
}

/// [`run_client_mode`] in another cgroup (`cgroup_dir`, below the sandbox's).
fn run_client_in(
    weir_exe: &Path,
    sb: &Sandbox,
    cgroup_dir: &Path,
    rounds: u32,
    mode: &str,
) -> Result<String, Error> {
    let out = Command::new(weir_exe)
        .arg("__demo-client")
        .arg(cgroup_dir.join("cgroup.procs"))
        .arg(&sb.ns_a)
        .arg(rounds.to_string())
        .arg(mode)
        .output()
        .map_err(|e| {
            Error::io(
                format!("starting the demo client {}", weir_exe.display()),
                e,
            )
        })?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(Error::Environment(format!(
            "demo client failed ({}): {}",
            out.status,
            text.trim()
        )));
    }
    Ok(text)
}

/// The hidden `__demo-client CGROUP_PROCS NETNS ROUNDS [MODE]` command: joins the cgroup and
/// namespace, then (mode `echo`, the default) makes ROUNDS TCP echo exchanges over IPv4 and over
/// IPv6, and ROUNDS connected-UDP ones; mode `lb` makes them through the demo's services and
/// reports the peer addresses the sockets saw; mode `lb-excluded` checks a service address
/// stays unreachable.
pub fn client_main(args: &[String]) -> i32 {
    match client(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("demo client: {e}");
            1
        }
    }
}

fn client(args: &[String]) -> Result<(), String> {
    let (procs, ns, rounds, mode) = match args {
        [procs, ns, rounds] => (procs, ns, rounds, "echo"),
        [procs, ns, rounds, mode] => (procs, ns, rounds, mode.as_str()),
        _ => return Err("usage: weir __demo-client CGROUP_PROCS NETNS ROUNDS [MODE]".into()),
    };
    let rounds: u32 = rounds
        .parse()
        .map_err(|_| format!("bad ROUNDS '{rounds}'"))?;
    std::fs::write(procs, std::process::id().to_string())
        .map_err(|e| format!("joining cgroup via {procs}: {e}"))?;
    let fd = netns::open(ns).map_err(|e| format!("opening netns {ns}: {e}"))?;
    netns::enter(fd.as_fd()).map_err(|e| format!("entering netns {ns}: {e}"))?;
    match mode {
        "echo" => {}
        "lb" => return lb_client(rounds),
        "lb-excluded" => return lb_excluded_client(),
        "mesh" => return mesh_client(rounds),
        "mesh-proxy" => return mesh_proxy(),
        "mesh-inbound-proxy" => return mesh_inbound_proxy(),
        other => return Err(format!("unknown mode '{other}'")),
    }
    let timeout = Duration::from_secs(3);
    for ip in [IpAddr::from(ADDR_B4), IpAddr::from(ADDR_B6)] {
        for i in 0..rounds {
            tcp_echo(SocketAddr::new(ip, TCP_PORT), &format!("hello {i}"))?;
        }
        println!("tcp {ip}: {rounds} echo exchanges");
    }
    for i in 0..rounds {
        let to = SocketAddr::new(ADDR_B4.into(), UDP_PORT);
        let s = UdpSocket::bind(("0.0.0.0", 0)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        s.connect(to)
            .map_err(|e| format!("udp connect {to}: {e}"))?;
        let msg = format!("ping {i}");
        s.send(msg.as_bytes())
            .map_err(|e| format!("udp send {to}: {e}"))?;
        let mut buf = [0u8; 64];
        let n = s
            .recv(&mut buf)
            .map_err(|e| format!("udp receive {to}: {e}"))?;
        if &buf[..n] != msg.as_bytes() {
            return Err(format!("udp {to}: echo mismatch"));
        }
    }
    println!("udp {}: {rounds} echo exchanges", ADDR_B4);
    Ok(())
}

/// One TCP echo exchange with `to`; returns the peer address the socket reports.
fn tcp_echo(to: SocketAddr, msg: &str) -> Result<SocketAddr, String> {
    let timeout = Duration::from_secs(3);
    let mut s =
        TcpStream::connect_timeout(&to, timeout).map_err(|e| format!("tcp connect {to}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.write_all(msg.as_bytes())
        .map_err(|e| format!("tcp send {to}: {e}"))?;
    let mut buf = [0u8; 64];
    let n = s
        .read(&mut buf)
        .map_err(|e| format!("tcp receive {to}: {e}"))?;
    if &buf[..n] != msg.as_bytes() {
        return Err(format!("tcp {to}: echo mismatch"));
    }
    s.peer_addr().map_err(|e| format!("getpeername {to}: {e}"))
}

/// Mode `lb`: TCP to both service addresses and unconnected UDP to the IPv4 one; every
/// exchange must echo, and the addresses the application sees must be the service's.
fn lb_client(rounds: u32) -> Result<(), String> {
    for vip in [SocketAddr::from((VIP4, 80)), SocketAddr::from((VIP6, 80))] {
        for i in 0..rounds {
            let peer = tcp_echo(vip, &format!("hello {i}"))?;
            if peer != vip {
                return Err(format!("tcp {vip}: getpeername says {peer}"));
            }
        }
        println!("tcp {vip}: {rounds} echo exchanges, getpeername = {vip} every time");
    }
    let vip = SocketAddr::from((VIP4, 53));
    let s = UdpSocket::bind(("0.0.0.0", 0)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    for i in 0..rounds {
        let msg = format!("ping {i}");
        s.send_to(msg.as_bytes(), vip)
            .map_err(|e| format!("udp sendto {vip}: {e}"))?;
        let mut buf = [0u8; 64];
        let (n, from) = s
            .recv_from(&mut buf)
            .map_err(|e| format!("udp recvfrom (sent to {vip}): {e}"))?;
        if &buf[..n] != msg.as_bytes() || from != vip {
            return Err(format!("udp {vip}: reply from {from}"));
        }
    }
    println!("udp {vip} (unconnected sendto): {rounds} echo exchanges, every reply from {vip}");
    Ok(())
}

/// Mode `mesh`: TCP echo exchanges with both service addresses from a meshed cgroup; they go
/// through the demo proxy, yet the application sees the service address as its peer.
fn mesh_client(rounds: u32) -> Result<(), String> {
    for vip in [SocketAddr::from((VIP4, 80)), SocketAddr::from((VIP6, 80))] {
        for i in 0..rounds {
            let peer = tcp_echo(vip, &format!("hello {i}"))?;
            if peer != vip {
                return Err(format!("tcp {vip}: getpeername says {peer}"));
            }
        }
        println!("tcp {vip}: {rounds} echo exchanges, getpeername = {vip} every time");
    }
    Ok(())
}

/// The demo proxy's upstream for an original destination: it balances the IPv4 service over
/// both echo servers by itself (round robin on `turn`), and connects anything else as is.
fn mesh_upstream(orig: SocketAddr, turn: usize) -> SocketAddr {
    if orig == SocketAddr::from((VIP4, 80)) {
        let port = if turn.is_multiple_of(2) {
            TCP_PORT
        } else {
            TCP_PORT_2
        };
        SocketAddr::new(ADDR_B4.into(), port)
    } else if orig == SocketAddr::from((VIP6, 80)) {
        SocketAddr::new(ADDR_B6.into(), TCP_PORT)
    } else {
        orig
    }
}

/// One proxied connection: the original destination, an upstream, one message relayed each way.
fn mesh_relay(mut conn: TcpStream, turn: usize) -> Result<String, String> {
    let orig =
        crate::sys::sockopt::original_dst(&conn).map_err(|e| format!("SO_ORIGINAL_DST: {e}"))?;
    let to = mesh_upstream(orig, turn);
    let t = Duration::from_secs(3);
    let mut up = TcpStream::connect_timeout(&to, t).map_err(|e| format!("upstream {to}: {e}"))?;
    let _ = conn.set_read_timeout(Some(t));
    let _ = up.set_read_timeout(Some(t));
    let mut buf = [0u8; 256];
    let n = conn.read(&mut buf).map_err(|e| e.to_string())?;
    up.write_all(&buf[..n]).map_err(|e| e.to_string())?;
    let n = up.read(&mut buf).map_err(|e| e.to_string())?;
    conn.write_all(&buf[..n]).map_err(|e| e.to_string())?;
    Ok(format!(
        "proxy: original destination {orig} -> upstream {to}"
    ))
}

/// Mode `mesh-proxy`: a small transparent proxy on 127.0.0.1 and ::1, as a sidecar would be;
/// prints `ready`, then one line per connection, until killed.
fn mesh_proxy() -> Result<(), String> {
    let turn = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut threads = Vec::new();
    for ip in [
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
    ] {
        let l = TcpListener::bind((ip, MESH_PROXY_PORT))
            .map_err(|e| format!("proxy bind {ip}:{MESH_PROXY_PORT}: {e}"))?;
        let turn = turn.clone();
        threads.push(std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let n = turn.fetch_add(1, Ordering::Relaxed);
                match mesh_relay(conn, n) {
                    Ok(line) => println!("{line}"),
                    Err(e) => println!("proxy: {e}"),
                }
            }
        }));
    }
    println!("ready");
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// Mode `mesh-inbound-proxy`: the proxy's inbound side in the workload's namespace, on
/// `[::]:MESH_INBOUND_PORT` (both families): every captured connection arrives with the
/// original destination as its local address (SO_ORIGINAL_DST says the same); the proxy
/// connects to it (the app; a connection from the namespace's own address is not captured
/// again) and relays one message each way. Prints `ready`, then one line per connection.
fn mesh_inbound_proxy() -> Result<(), String> {
    let l = TcpListener::bind((std::net::Ipv6Addr::UNSPECIFIED, MESH_INBOUND_PORT))
        .map_err(|e| format!("inbound proxy bind [::]:{MESH_INBOUND_PORT}: {e}"))?;
    println!("ready");
    for mut conn in l.incoming().flatten() {
        let mut relay = || -> Result<String, String> {
            let local = conn.local_addr().map_err(|e| e.to_string())?;
            let orig = crate::sys::sockopt::original_dst(&conn)
                .map_err(|e| format!("SO_ORIGINAL_DST: {e}"))?;
            let t = Duration::from_secs(3);
            let mut app =
                TcpStream::connect_timeout(&orig, t).map_err(|e| format!("app {orig}: {e}"))?;
            let _ = conn.set_read_timeout(Some(t));
            let _ = app.set_read_timeout(Some(t));
            let mut buf = [0u8; 256];
            let n = conn.read(&mut buf).map_err(|e| e.to_string())?;
            app.write_all(&buf[..n]).map_err(|e| e.to_string())?;
            let n = app.read(&mut buf).map_err(|e| e.to_string())?;
            conn.write_all(&buf[..n]).map_err(|e| e.to_string())?;
            Ok(format!(
                "inbound proxy: accepted as {local}, original destination {orig} -> app"
            ))
        };
        match relay() {
            Ok(line) => println!("{line}"),
            Err(e) => println!("inbound proxy: {e}"),
        }
    }
    Ok(())
}

/// Mode `lb-excluded`: the cgroup is opted out, so the service address is not rewritten and,
/// having no route, is unreachable.
fn lb_excluded_client() -> Result<(), String> {
    let vip = SocketAddr::from((VIP4, 80));
    match TcpStream::connect_timeout(&vip, Duration::from_secs(2)) {
        Ok(_) => Err(format!("tcp {vip}: connected, but the cgroup is excluded")),
        Err(e) => {
            println!("tcp {vip}: not rewritten ({e})");
            Ok(())
        }
    }
}

fn counter(st: &Status, ifname: &str, hook: &str) -> u64 {
    st.if_counters
        .iter()
        .find(|c| c.interface == ifname && c.hook == hook)
        .map(|c| c.counter.packets)
        .unwrap_or(0)
}

fn sock(st: &Status, hook: &str) -> u64 {
    st.sock_counters
        .iter()
        .find(|(h, _)| h == hook)
        .map(|(_, n)| *n)
        .unwrap_or(0)
}

/// Runs the demo, writing what happens to `out`.
///
/// # Errors
/// Returns an error when any step fails; the sandbox is removed in every case.
pub fn run(out: &mut dyn Write) -> Result<(), Error> {
    let w = |out: &mut dyn Write, s: String| {
        let _ = writeln!(out, "{s}");
    };
    let exe = std::env::current_exe().map_err(|e| Error::io("finding the weir executable", e))?;
    let sb = Sandbox::new("dm")?;
    w(
        out,
        format!(
            "sandbox: namespaces {} (client) and {} (host), veth {} <-> {}, cgroup {}",
            sb.ns_a, sb.ns_b, sb.veth_a, sb.veth_b, sb.cgroup
        ),
    );
    let text = demo_config(&sb);
    w(
        out,
        format!(
            "config:\n{}",
            text.lines()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    );
    let cfg = config::parse("<demo>", &text)?;
    let b = sb.netns_fd(&sb.ns_b)?;
    let dp = Dataplane::new(sb.pin_dir.clone());

    let report = netns::run_in(b.as_fd(), || dp.load(&cfg))?;
    w(
        out,
        format!(
            "weir load (pin dir {}):\n{}",
            sb.pin_dir.display(),
            indent(&report.to_string())
        ),
    );
    let again = netns::run_in(b.as_fd(), || dp.load(&cfg))?;
    w(
        out,
        format!(
            "weir load again: {}",
            if again.is_noop() {
                "no-op"
            } else {
                "CHANGED SOMETHING"
            }
        ),
    );
    if !again.is_noop() {
        return Err(Error::Environment(format!(
            "second load was not a no-op:\n{again}"
        )));
    }

    {
        let _server = EchoServer::start(b.as_fd())?;
        let client_out = run_client(&exe, &sb, ROUNDS)?;
        w(
            out,
            format!(
                "traffic from a client process in cgroup {}:\n{}",
                sb.cgroup,
                indent(&client_out)
            ),
        );
    }

    let st = netns::run_in(b.as_fd(), || dp.status())?;
    w(out, format!("weir status:\n{}", indent(&st.to_string())));
    let checks = [
        (
            "the XDP prefilter passed the client's packets on the host veth",
            st.prefilter
                .iter()
                .any(|(r, c)| r == "passed" && c.packets > 0),
        ),
        (
            "TC ingress saw them too",
            counter(&st, &sb.veth_b, "tc-ingress") > 0,
        ),
        (
            "TC egress saw the replies",
            counter(&st, &sb.veth_b, "tc-egress") > 0,
        ),
        (
            "connect4 ran for every IPv4 connect (TCP and UDP)",
            sock(&st, "connect4") == 2 * u64::from(ROUNDS),
        ),
        (
            "connect6 ran for every IPv6 connect",
            sock(&st, "connect6") == u64::from(ROUNDS),
        ),
    ];
    let mut failed = Vec::new();
    report_checks(out, &checks, &mut failed);

    // The prefilter: deny the client's address at runtime (map contents only, no reattach).
    let deny_text = format!("{text}prefilter deny {ADDR_A4}/32\nfailsafe in tcp/22 udp/68\n");
    w(out, format!("weir apply (deny the client):\n  prefilter deny {ADDR_A4}/32\n  failsafe in tcp/22 udp/68"));
    let deny_cfg = config::parse("<demo>", &deny_text)?;
    let change = netns::run_in(b.as_fd(), || dp.apply(&deny_cfg))?;
    w(out, format!("  {change}"));
    let denied = {
        let _server = EchoServer::start(b.as_fd())?;
        let _ssh = FailsafeListener::start(b.as_fd())?;
        let a = sb.netns_fd(&sb.ns_a)?;
        netns::run_in(a.as_fd(), || {
            let t = Duration::from_millis(700);
            let echo =
                TcpStream::connect_timeout(&SocketAddr::new(ADDR_B4.into(), TCP_PORT), t).is_ok();
            let ssh =
                TcpStream::connect_timeout(&SocketAddr::new(ADDR_B4.into(), FAILSAFE_PORT), t)
                    .is_ok();
            (echo, ssh)
        })
    };
    w(
        out,
        format!(
            "  from the denied client: tcp/{TCP_PORT} {}, tcp/{FAILSAFE_PORT} (failsafe) {}",
            if denied.0 { "connected" } else { "dropped" },
            if denied.1 { "connected" } else { "dropped" }
        ),
    );
    let st = netns::run_in(b.as_fd(), || dp.status())?;
    let reason = |r: &str| {
        st.prefilter
            .iter()
            .find(|(n, _)| n == r)
            .map(|(_, c)| c.packets)
            .unwrap_or(0)
    };
    w(
        out,
        format!(
            "  prefilter: {} dropped, {} passed by failsafe; deny entry hits: {}",
            reason("dropped"),
            reason("failsafe"),
            st.deny_hits
                .iter()
                .map(|(c, h)| format!("{c} {h}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let restore = netns::run_in(b.as_fd(), || dp.apply(&cfg))?;
    w(out, format!("weir apply (original config): {restore}"));
    let after = {
        let _server = EchoServer::start(b.as_fd())?;
        let a = sb.netns_fd(&sb.ns_a)?;
        netns::run_in(a.as_fd(), || {
            TcpStream::connect_timeout(
                &SocketAddr::new(ADDR_B4.into(), TCP_PORT),
                Duration::from_secs(3),
            )
            .is_ok()
        })
    };
    let checks = [
        (
            "the denied client's connection was dropped at XDP",
            !denied.0 && reason("dropped") > 0,
        ),
        (
            "the failsafe port stayed reachable from the denied client",
            denied.1 && reason("failsafe") > 0,
        ),
        (
            "the deny entry counted its hits",
            st.deny_hits.iter().any(|(_, h)| *h > 0),
        ),
        (
            "removing the entry restored traffic without reattaching",
            after,
        ),
    ];
    report_checks(out, &checks, &mut failed);

    lb_phase(out, &exe, &sb, &dp, &text, &mut failed)?;
    mesh_phase(out, &exe, &sb, &dp, &text, &mut failed)?;
    crate::demo_fastpath::run(out, &mut failed)?;

    let removed = netns::run_in(b.as_fd(), || dp.unload())?;
    w(
        out,
        format!(
            "weir unload: removed {} pins and attachments; pin dir gone: {}",
            removed.len(),
            !sb.pin_dir.exists()
        ),
    );
    drop(sb);
    w(out, "sandbox removed".into());
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Environment(format!(
            "demo checks failed: {}",
            failed.join("; ")
        )))
    }
}

/// Connect-time load balancing: services added by `weir apply`, a client going through them,
/// the per-backend counts, then the cgroup opted out, then the services removed.
fn lb_phase(
    out: &mut dyn Write,
    exe: &Path,
    sb: &Sandbox,
    dp: &Dataplane,
    base: &str,
    failed: &mut Vec<&'static str>,
) -> Result<(), Error> {
    let b = sb.netns_fd(&sb.ns_b)?;
    let services = demo_services();
    let _ = writeln!(out, "weir apply (add services):\n{}", indent(&services));
    let cfg = config::parse("<demo>", &format!("{base}{services}"))?;
    let change = netns::run_in(b.as_fd(), || dp.apply_report(&cfg))?;
    let _ = writeln!(out, "  {}", change.lb);
    let client = {
        let _one = EchoServer::start(b.as_fd())?;
        let _two = EchoServer::start_on(b.as_fd(), TCP_PORT_2, UDP_PORT_2)?;
        run_client_mode(exe, sb, LB_ROUNDS, "lb")
    };
    let client_ok = match &client {
        Ok(text) => {
            let _ = writeln!(out, "traffic to the service addresses:\n{}", indent(text));
            true
        }
        Err(e) => {
            let _ = writeln!(out, "  client: {e}");
            false
        }
    };
    let st = netns::run_in(b.as_fd(), || dp.status())?;
    let mut lines = Vec::new();
    let mut rewritten = 0;
    let mut backends_used = 0;
    for svc in &st.services {
        lines.push(svc.to_string());
        for be in &svc.backends {
            lines.push(format!("  -> {} {} rewritten", be.addr, be.rewritten));
            if svc.vip == SocketAddr::from((VIP4, 80)) {
                rewritten += be.rewritten;
                backends_used += usize::from(be.rewritten > 0);
            }
        }
    }
    let _ = writeln!(out, "weir status, services:\n{}", indent(&lines.join("\n")));
    // Mesh sidecars opt out: the same cgroup excluded sees the service address untouched.
    let excluded = format!("{base}{services}lb exclude {}\n", sb.cgroup);
    let cfg_ex = config::parse("<demo>", &excluded)?;
    let _ = writeln!(out, "weir apply (lb exclude {}):", sb.cgroup);
    let change = netns::run_in(b.as_fd(), || dp.apply_report(&cfg_ex))?;
    let _ = writeln!(out, "  {}", change.lb);
    let opted_out = run_client_mode(exe, sb, 1, "lb-excluded");
    if let Ok(text) = &opted_out {
        let _ = write!(out, "{}", indent(text));
        let _ = writeln!(out);
    }
    let restore = netns::run_in(b.as_fd(), || {
        dp.apply_report(&config::parse("<demo>", base)?)
    })?;
    let _ = writeln!(out, "weir apply (original config): {}", restore.lb);
    let st = netns::run_in(b.as_fd(), || dp.status())?;
    let checks = [
        (
            "TCP and UDP through the service addresses reached a backend, and the client saw only the service addresses (getpeername, recvfrom)",
            client_ok,
        ),
        (
            "every IPv4 TCP connection to the service was counted against a backend",
            rewritten == u64::from(LB_ROUNDS),
        ),
        (
            "an excluded cgroup's connection to the service address was left alone",
            opted_out.is_ok(),
        ),
        ("removing the services left none", st.services.is_empty()),
    ];
    report_checks(out, &checks, failed);
    let _ = writeln!(
        out,
        "  ({backends_used} of 2 IPv4 TCP backends were picked over {LB_ROUNDS} connections)"
    );
    Ok(())
}

/// A demo proxy process (weir's `__demo-client ... mesh-proxy` or `mesh-inbound-proxy`),
/// killed on drop.
struct DemoProxy(std::process::Child);

/// The lines a demo proxy prints, one per connection.
type ProxyLines = std::io::Lines<std::io::BufReader<std::process::ChildStdout>>;

impl DemoProxy {
    /// Starts the proxy `mode` in `cgroup_dir` and namespace `ns`; returns once it listens.
    fn start(
        exe: &Path,
        cgroup_dir: &Path,
        ns: &str,
        mode: &str,
    ) -> Result<(Self, ProxyLines), Error> {
        use std::io::BufRead;
        let mut child = Command::new(exe)
            .arg("__demo-client")
            .arg(cgroup_dir.join("cgroup.procs"))
            .arg(ns)
            .arg("0")
            .arg(mode)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(format!("demo: starting the {mode}"), e))?;
        let stdout = child.stdout.take();
        let proxy = Self(child);
        let mut lines = std::io::BufReader::new(
            stdout.ok_or_else(|| Error::Environment(format!("demo: the {mode} has no stdout")))?,
        )
        .lines();
        if !matches!(lines.next(), Some(Ok(l)) if l == "ready") {
            return Err(Error::Environment(format!(
                "demo: the {mode} did not start"
            )));
        }
        Ok((proxy, lines))
    }
}

impl Drop for DemoProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Cgroups below the sandbox's, removed on drop (after their processes are gone).
struct DemoCgroups(Vec<std::path::PathBuf>);

impl Drop for DemoCgroups {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            for _ in 0..100 {
                if crate::sys::cgroup::remove(d).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Service mesh: the client's cgroup meshed (a `weir load`: the mesh programs attach), a proxy
/// in a cgroup of its own, the client's connections to the service addresses going through it;
/// inbound capture of namespace `b`, where the proxy's inbound side receives the plain
/// client's connections to the echo servers and relays them; then the mesh removed by
/// `weir apply`.
fn mesh_phase(
    out: &mut dyn Write,
    exe: &Path,
    sb: &Sandbox,
    dp: &Dataplane,
    base: &str,
    failed: &mut Vec<&'static str>,
) -> Result<(), Error> {
    let b = sb.netns_fd(&sb.ns_b)?;
    let mut cgroups = DemoCgroups(Vec::new());
    for rel in ["app", "proxy"] {
        let d = sb.cgroup_dir.join(rel);
        crate::sys::cgroup::create(&d)
            .map_err(|e| Error::io(format!("demo: creating cgroup {}", d.display()), e))?;
        cgroups.0.push(d);
    }
    let mesh = format!(
        "mesh {cg}/app proxy-port={MESH_PROXY_PORT} proxy-cgroup={cg}/proxy \
         inbound-port={MESH_INBOUND_PORT} netns={nb}
",
        cg = sb.cgroup,
        nb = sb.ns_b
    );
    let services = demo_services();
    let _ = writeln!(
        out,
        "weir load (mesh the client's cgroup):
{}",
        indent(&mesh)
    );
    let cfg = config::parse("<demo>", &format!("{base}{services}{mesh}"))?;
    let report = netns::run_in(b.as_fd(), || dp.load(&cfg))?;
    let _ = writeln!(out, "  {}", report.mesh);
    let (proxy, lines) = DemoProxy::start(exe, &cgroups.0[1], &sb.ns_a, "mesh-proxy")?;
    // The proxy's inbound side, in namespace b, started after the load (its listener is
    // known from the moment it listens).
    let (inbound_proxy, in_lines) =
        DemoProxy::start(exe, &cgroups.0[1], &sb.ns_b, "mesh-inbound-proxy")?;
    let (client, inbound) = {
        let _one = EchoServer::start(b.as_fd())?;
        let _two = EchoServer::start_on(b.as_fd(), TCP_PORT_2, UDP_PORT_2)?;
        (
            run_client_in(exe, sb, &cgroups.0[0], MESH_ROUNDS, "mesh"),
            // A plain client (not meshed) in namespace a, to the echo servers in b.
            run_client_in(exe, sb, &sb.cgroup_dir, MESH_ROUNDS, "echo"),
        )
    };
    drop(proxy);
    drop(inbound_proxy);
    let proxied: Vec<String> = lines.map_while(Result::ok).collect();
    let proxied_in: Vec<String> = in_lines.map_while(Result::ok).collect();
    let inbound_ok = match &inbound {
        Ok(text) => {
            let _ = writeln!(
                out,
                "traffic from a plain client in namespace a to the echo servers in b (b captured):\n{}",
                indent(text)
            );
            true
        }
        Err(e) => {
            let _ = writeln!(out, "  inbound client: {e}");
            false
        }
    };
    let _ = writeln!(
        out,
        "the inbound proxy's log:\n{}",
        indent(&proxied_in.join("\n"))
    );
    let client_ok = match &client {
        Ok(text) => {
            let _ = writeln!(out, "traffic from the meshed cgroup:\n{}", indent(text));
            true
        }
        Err(e) => {
            let _ = writeln!(out, "  client: {e}");
            false
        }
    };
    let _ = writeln!(out, "the proxy's log:\n{}", indent(&proxied.join("\n")));
    let st = netns::run_in(b.as_fd(), || dp.status())?;
    let lines: Vec<String> = st
        .mesh
        .cgroups
        .iter()
        .map(ToString::to_string)
        .chain(st.mesh.inbound.iter().map(ToString::to_string))
        .collect();
    let _ = writeln!(out, "weir status, mesh:\n{}", indent(&lines.join("\n")));
    let captured = st
        .mesh
        .counters
        .iter()
        .find(|(n, _)| *n == "inbound connections to the proxy")
        .map_or(0, |(_, n)| *n);
    let redirected: u64 = st.mesh.cgroups.iter().map(|c| c.redirected).sum();
    let answered = st
        .mesh
        .counters
        .iter()
        .find(|(n, _)| *n == "original destinations answered")
        .map_or(0, |(_, n)| *n);
    let restore = netns::run_in(b.as_fd(), || {
        dp.apply_report(&config::parse("<demo>", base)?)
    })?;
    let _ = writeln!(out, "weir apply (original config): {}", restore.mesh);
    let st = netns::run_in(b.as_fd(), || dp.status())?;
    drop(cgroups);
    let want = 2 * u64::from(MESH_ROUNDS);
    let checks = [
        (
            "the meshed client's connections went through the proxy, and it saw the service addresses as its peers",
            client_ok && proxied.iter().filter(|l| l.contains("original destination")).count() as u64 == want,
        ),
        (
            "every connection was redirected, and SO_ORIGINAL_DST answered for each (IPv4 and IPv6)",
            redirected == want && answered == want,
        ),
        (
            // The plain client's TCP connections and the outbound proxy's upstream ones: all
            // arrive in b, so all meet b's sidecar.
            "inbound TCP to namespace b (the plain client's and the outbound proxy's) went through the inbound proxy, which found each original destination (IPv4 and IPv6; UDP untouched)",
            inbound_ok
                && captured == 2 * want
                && proxied_in.iter().filter(|l| l.contains("original destination")).count() as u64 == 2 * want,
        ),
        ("removing the mesh left no meshed cgroup", st.mesh.cgroups.is_empty()),
    ];
    report_checks(out, &checks, failed);
    Ok(())
}

fn report_checks(
    out: &mut dyn Write,
    checks: &[(&'static str, bool)],
    failed: &mut Vec<&'static str>,
) {
    for (what, ok) in checks {
        let _ = writeln!(out, "  [{}] {what}", if *ok { "ok" } else { "FAILED" });
        if !ok {
            failed.push(what);
        }
    }
}

/// A TCP listener on the failsafe port (22) inside a namespace, accepting until dropped.
struct FailsafeListener {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FailsafeListener {
    fn start(netns_fd: std::os::fd::BorrowedFd<'_>) -> Result<Self, Error> {
        let listener = netns::run_in(netns_fd, || -> std::io::Result<TcpListener> {
            let l = TcpListener::bind(("::", FAILSAFE_PORT))?;
            l.set_nonblocking(true)?;
            Ok(l)
        })
        .map_err(|e| Error::io("demo: binding the failsafe listener", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if listener.accept().is_err() {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for FailsafeListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(crate) fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
