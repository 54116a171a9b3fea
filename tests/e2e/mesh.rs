//! Service-mesh redirect on the real kernel. A small transparent proxy (this test binary re-run
//! as `mesh::proxy_child`) sits in its own cgroup below the meshed one, as a sidecar does, in the
//! client namespace `a`: it accepts on 127.0.0.1 and ::1, asks `SO_ORIGINAL_DST` (or
//! `IP6T_SO_ORIGINAL_DST`) exactly as it would behind iptables REDIRECT, picks a backend for a
//! service VIP from the table the test gives it (anything else it connects to as is), and
//! answers `via <original destination> <upstream peer> <upstream reply>`. Clients
//! (`mesh::client_child`) are processes in a meshed or an unmeshed cgroup; backends are threads
//! in namespace `b` that answer with their name (`be<port>`) and close.
//!
//! The VIPs are in no namespace's routes, so a connection neither redirected nor balanced fails
//! with ENETUNREACH.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use weir::sandbox::{Sandbox, ADDR_B4, ADDR_B6};
use weir::sys::{bpf, cgroup, netns};

use crate::common::*;

const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 210, 1);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x210, 0, 0, 0, 0, 1);
const PROXY_PORT: u16 = 15001;
const ENETUNREACH: i32 = 101;

fn vip4(port: u16) -> SocketAddr {
    (VIP4, port).into()
}

fn vip6(port: u16) -> SocketAddr {
    (VIP6, port).into()
}

fn b4(port: u16) -> SocketAddr {
    (ADDR_B4, port).into()
}

fn b6(port: u16) -> SocketAddr {
    (ADDR_B6, port).into()
}

/// TCP servers on `[::]:port` in namespace `b` that write `be<port>` and close, until dropped.
struct Backends {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Backends {
    fn start(sb: &Sandbox, ports: &[u16]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for &port in ports {
            let tcp = sb
                .in_b(|| {
                    let tcp = TcpListener::bind(("::", port)).expect("bind tcp backend");
                    tcp.set_nonblocking(true).unwrap();
                    tcp
                })
                .expect("netns b");
            let s = stop.clone();
            threads.push(std::thread::spawn(move || {
                let name = format!("be{port}");
                while !s.load(Ordering::Relaxed) {
                    match tcp.accept() {
                        Ok((mut conn, _)) => {
                            let _ = conn.write_all(name.as_bytes());
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            }));
        }
        Self { stop, threads }
    }
}

impl Drop for Backends {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Cgroups below the sandbox's, removed on drop (deepest first, after their processes exit).
struct SubCgroups(Vec<PathBuf>);

impl SubCgroups {
    fn new(sb: &Sandbox, rels: &[&str]) -> Self {
        let mut made = Self(Vec::new());
        for rel in rels {
            let dir = sb.cgroup_dir.join(rel);
            cgroup::create(&dir).expect("creating a test cgroup");
            made.0.push(dir);
        }
        made
    }
}

impl Drop for SubCgroups {
    fn drop(&mut self) {
        for d in self.0.iter().rev() {
            let _ = cgroup::remove(d);
        }
    }
}

/// The proxy process, killed on drop.
struct Proxy(Child);

impl Proxy {
    /// Starts the proxy in cgroup `dir` and namespace `a`; `table` maps a VIP to its backends.
    /// It listens on 127.0.0.1 and ::1, or (`dual`) on one dual-stack `[::]` socket, where IPv4
    /// clients arrive v4-mapped.
    fn start(
        sb: &Sandbox,
        dir: &Path,
        dual: bool,
        table: &[(SocketAddr, Vec<SocketAddr>)],
    ) -> Self {
        Self::start_in(&sb.ns_a, PROXY_PORT, dir, dual, table)
    }

    /// As [`Proxy::start`], in namespace `ns` on `port`.
    fn start_in(
        ns: &str,
        port: u16,
        dir: &Path,
        dual: bool,
        table: &[(SocketAddr, Vec<SocketAddr>)],
    ) -> Self {
        let table: Vec<String> = table
            .iter()
            .map(|(vip, bes)| {
                let bes: Vec<String> = bes.iter().map(ToString::to_string).collect();
                format!("{vip}={}", bes.join(","))
            })
            .collect();
        let spec = format!(
            "{}|{ns}|{port}|{}|{}",
            dir.display(),
            if dual { "dual" } else { "split" },
            table.join(";")
        );
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "mesh::proxy_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("WEIR_MESH_PROXY", &spec)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the proxy");
        let stdout = child.stdout.take().expect("proxy stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines.any(|l| l.is_ok_and(|l| l.contains("PROXY READY")));
        let proxy = Self(child);
        assert!(ready, "the proxy did not start ({spec})");
        proxy
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One client attempt's outcome: its peer (getpeername) and the reply, or the errno of the
/// failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Ok { peer: SocketAddr, reply: String },
    Err(i32),
}

impl Reply {
    fn ok(peer: SocketAddr, reply: &str) -> Self {
        Reply::Ok {
            peer,
            reply: reply.to_owned(),
        }
    }
}

/// `count` TCP connections to `to` from a process in cgroup `dir`, in namespace `a`.
fn clients(sb: &Sandbox, dir: &Path, to: SocketAddr, count: u32) -> Vec<Reply> {
    let spec = format!("{}|{}|{to}|{count}", dir.display(), sb.ns_a);
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "mesh::client_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WEIR_MESH_CLIENT", &spec)
        .output()
        .expect("running the client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client {spec} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replies: Vec<Reply> = stdout
        .lines()
        .filter_map(|l| l.split_once("CLIENT ").map(|(_, rest)| rest))
        .map(|l| {
            let mut f = l.splitn(3, ' ');
            match (f.next(), f.next(), f.next()) {
                (Some("ok"), Some(peer), Some(reply)) => Reply::Ok {
                    peer: peer.parse().expect("peer"),
                    reply: reply.to_owned(),
                },
                (Some("err"), Some(errno), None) => Reply::Err(errno.parse().expect("errno")),
                _ => panic!("bad client line {l:?}"),
            }
        })
        .collect();
    assert_eq!(replies.len(), count as usize, "client {spec}: {stdout}");
    replies
}

/// The client process: not a test of its own. Runs only when `clients` starts this binary with
/// `WEIR_MESH_CLIENT=CGROUP_DIR|NETNS|ADDR|COUNT`; prints one `CLIENT` line per connection.
#[test]
fn client_child() {
    let Ok(spec) = std::env::var("WEIR_MESH_CLIENT") else {
        return;
    };
    let [dir, ns, to, count] = spec.split('|').collect::<Vec<_>>()[..] else {
        panic!("bad WEIR_MESH_CLIENT {spec:?}");
    };
    cgroup::add_process(Path::new(dir), std::process::id()).expect("joining the cgroup");
    let fd = netns::open(ns).expect("opening netns a");
    netns::enter(fd.as_fd()).expect("entering netns a");
    let to: SocketAddr = to.parse().expect("address");
    for _ in 0..count.parse::<u32>().expect("count") {
        let line = match TcpStream::connect_timeout(&to, Duration::from_secs(3)) {
            Err(e) => format!("err {}", e.raw_os_error().unwrap_or(-1)),
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                let peer = s.peer_addr().expect("getpeername");
                let mut reply = String::new();
                match s.read_to_string(&mut reply) {
                    Ok(_) => format!("ok {peer} {reply}"),
                    Err(e) => format!("err {}", e.raw_os_error().unwrap_or(-1)),
                }
            }
        };
        println!("CLIENT {line}");
    }
}

/// What the proxy asks the kernel, as an unmodified proxy would: `SO_ORIGINAL_DST` on an IPv4
/// socket, `IP6T_SO_ORIGINAL_DST` on an IPv6 one.
fn original_dst(conn: &TcpStream) -> std::io::Result<SocketAddr> {
    use nix::sys::socket::{getsockopt, sockopt};
    let local = conn.local_addr()?;
    Ok(if local.is_ipv4() {
        let sin = getsockopt(conn, sockopt::OriginalDst)?;
        SocketAddr::from((
            Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
            u16::from_be(sin.sin_port),
        ))
    } else {
        let sin6 = getsockopt(conn, sockopt::Ip6tOriginalDst)?;
        let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
        // A v4-mapped original destination is an IPv4 one.
        let ip = ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4);
        SocketAddr::new(ip, u16::from_be(sin6.sin6_port))
    })
}

fn relay(mut conn: TcpStream, table: &[(SocketAddr, Vec<SocketAddr>)], turn: &AtomicUsize) {
    let answer = match original_dst(&conn) {
        Err(e) => format!("no-original-dst {}", e.raw_os_error().unwrap_or(-1)),
        Ok(orig) => {
            // The proxy balances by itself: round robin over the VIP's backends.
            let upstream = match table.iter().find(|(vip, _)| *vip == orig) {
                Some((_, bes)) => bes[turn.fetch_add(1, Ordering::Relaxed) % bes.len()],
                None => orig,
            };
            match TcpStream::connect_timeout(&upstream, Duration::from_secs(3)) {
                Err(e) => format!(
                    "via {orig} upstream-error {}",
                    e.raw_os_error().unwrap_or(-1)
                ),
                Ok(mut up) => {
                    let peer = up.peer_addr().map_or("?".to_owned(), |p| p.to_string());
                    let mut reply = String::new();
                    let _ = up.read_to_string(&mut reply);
                    format!("via {orig} {peer} {reply}")
                }
            }
        }
    };
    let _ = conn.write_all(answer.as_bytes());
}

/// The proxy process: not a test of its own. Runs only when `Proxy::start` starts this binary
/// with `WEIR_MESH_PROXY=CGROUP_DIR|NETNS|PORT|split or dual|VIP=BACKEND,...;...`; serves
/// until killed.
#[test]
fn proxy_child() {
    let Ok(spec) = std::env::var("WEIR_MESH_PROXY") else {
        return;
    };
    let [dir, ns, port, listen, table] = spec.split('|').collect::<Vec<_>>()[..] else {
        panic!("bad WEIR_MESH_PROXY {spec:?}");
    };
    let table: Vec<(SocketAddr, Vec<SocketAddr>)> = table
        .split(';')
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (vip, bes) = e.split_once('=').expect("VIP=BACKENDS");
            (
                vip.parse().expect("vip"),
                bes.split(',')
                    .map(|b| b.parse().expect("backend"))
                    .collect(),
            )
        })
        .collect();
    // Join the cgroup first: sockets belong to the cgroup of the process that creates them.
    cgroup::add_process(Path::new(dir), std::process::id()).expect("joining the proxy cgroup");
    let fd = netns::open(ns).expect("opening netns a");
    netns::enter(fd.as_fd()).expect("entering netns a");
    let port: u16 = port.parse().expect("port");
    let table = Arc::new(table);
    let turn = Arc::new(AtomicUsize::new(0));
    let mut acceptors = Vec::new();
    let addrs = if listen == "dual" {
        vec![SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))]
    } else {
        vec![
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
        ]
    };
    for addr in addrs {
        let listener = TcpListener::bind(addr).expect("proxy bind");
        let (table, turn) = (table.clone(), turn.clone());
        acceptors.push(std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (table, turn) = (table.clone(), turn.clone());
                std::thread::spawn(move || relay(conn, &table, &turn));
            }
        }));
    }
    println!("PROXY READY");
    for a in acceptors {
        let _ = a.join();
    }
}

fn load(sb: &Sandbox, body: &str) -> String {
    let cfg = ConfigFile::new(sb, body);
    ok(weir_in(sb, &["load", "--config", &cfg.arg()]))
}

fn apply(sb: &Sandbox, body: &str) -> String {
    let cfg = ConfigFile::new(sb, body);
    ok(weir_in(sb, &["apply", &cfg.arg()]))
}

/// IPv6 addresses are usable once duplicate address detection is done.
fn wait_for_v6(sb: &Sandbox, port: u16) {
    eventually("IPv6 reachable from namespace a", || {
        sb.in_a(|| TcpStream::connect_timeout(&b6(port), Duration::from_secs(1)))
            .expect("netns a")
            .is_ok()
    });
}

/// Every reply came through the proxy for `orig`, from one of `backends` (address and name),
/// and the client saw `peer` as its peer (the address it asked for, not the proxy's).
fn assert_proxied(
    what: &str,
    replies: &[Reply],
    peer: SocketAddr,
    orig: SocketAddr,
    backends: &[SocketAddr],
) {
    for r in replies {
        let Reply::Ok {
            peer: seen,
            reply: text,
        } = r
        else {
            panic!("{what}: {r:?} in {replies:?}");
        };
        assert_eq!(*seen, peer, "{what}: getpeername");
        let ok = backends
            .iter()
            .any(|b| *text == format!("via {orig} {b} be{}", b.port()));
        assert!(
            ok,
            "{what}: {text:?} is not via the proxy to one of {backends:?}"
        );
    }
}

/// Every reply came straight from be8001 or be8002 by connect-time balancing (peer: the VIP).
fn assert_balanced(what: &str, replies: &[Reply]) {
    for r in replies {
        assert!(
            *r == Reply::ok(vip4(80), "be8001") || *r == Reply::ok(vip4(80), "be8002"),
            "{what}: {r:?}"
        );
    }
}

fn status_mesh(sb: &Sandbox) -> weir::mesh::MeshStatus {
    status(sb).mesh
}

/// Every mesh hook of the embedded program list is gone from the cgroup.
fn mesh_residue(sb: &Sandbox) -> Vec<String> {
    let dir = cgroup::open_dir(&sb.cgroup_dir).expect("cgroup dir");
    let mut left = Vec::new();
    for (_, hook) in weir::embedded::PROGS_MESH {
        let ids = bpf::prog_query(bpf::LinkTarget::Fd(dir.as_fd()), hook.attach_type(), 0)
            .expect("cgroup query")
            .prog_ids;
        if !ids.is_empty() {
            left.push(format!("{hook:?}: {ids:?}"));
        }
    }
    left
}

#[test]
fn meshed_clients_go_through_the_proxy_and_others_are_balanced() {
    let sb = sandbox("msh");
    let _servers = Backends::start(&sb, &[8001, 8002, 8003]);
    wait_for_v6(&sb, 8001);
    let cgs = SubCgroups::new(&sb, &["app", "app/envoy", "other"]);
    let (app, envoy, other) = (&cgs.0[0], &cgs.0[1], &cgs.0[2]);
    let services = format!(
        "service web {v4}/tcp backends={a},{b}\nservice web6 {v6}/tcp backends={c},{d}\n",
        v4 = vip4(80),
        v6 = vip6(80),
        a = b4(8001),
        b = b4(8002),
        c = b6(8001),
        d = b6(8002),
    );
    let mesh_line = format!(
        "mesh {cg}/app proxy-port={PROXY_PORT} proxy-cgroup={cg}/app/envoy exclude-ports=8003\n",
        cg = sb.cgroup
    );
    let out = load(&sb, &format!("cgroup {}\n{services}{mesh_line}", sb.cgroup));
    assert!(
        out.contains("mesh-getsockopt") && out.contains("mesh:"),
        "{out}"
    );
    let _proxy = Proxy::start(
        &sb,
        envoy,
        false,
        &[
            (vip4(80), vec![b4(8001), b4(8002)]),
            (vip6(80), vec![b6(8001), b6(8002)]),
        ],
    );

    // A meshed client's connections to a VIP reach the proxy, which learns the VIP and picks a
    // backend itself: IPv4, IPv6, and v4-mapped on an IPv6 socket (reported as IPv4).
    let four = [b4(8001), b4(8002)];
    assert_proxied(
        "v4",
        &clients(&sb, app, vip4(80), 4),
        vip4(80),
        vip4(80),
        &four,
    );
    let six = [b6(8001), b6(8002)];
    assert_proxied(
        "v6",
        &clients(&sb, app, vip6(80), 4),
        vip6(80),
        vip6(80),
        &six,
    );
    let mapped = SocketAddr::from((VIP4.to_ipv6_mapped(), 80));
    assert_proxied(
        "v4-mapped",
        &clients(&sb, app, mapped, 2),
        mapped,
        vip4(80),
        &four,
    );
    // Not only VIPs: any destination goes through the proxy (it connects to it as is) ...
    assert_proxied(
        "direct",
        &clients(&sb, app, b4(8002), 1),
        b4(8002),
        b4(8002),
        &[b4(8002)],
    );
    // ... except excluded ports, which stay direct.
    assert_eq!(
        clients(&sb, app, b4(8003), 1),
        [Reply::ok(b4(8003), "be8003")]
    );

    // An unmeshed client goes straight to a backend by connect-time balancing.
    assert_balanced("unmeshed", &clients(&sb, other, vip4(80), 4));
    // The proxy's own connections (its cgroup is inside the meshed one) are neither redirected
    // back to it nor balanced: the VIP is unreachable for it, a backend reached directly.
    assert_eq!(clients(&sb, envoy, vip4(80), 1), [Reply::Err(ENETUNREACH)]);
    assert_eq!(
        clients(&sb, envoy, b4(8001), 1),
        [Reply::ok(b4(8001), "be8001")]
    );

    // Status: the meshed cgroup with its redirect count, the proxy's cgroup, the counters.
    let st = status_mesh(&sb);
    let meshed = st.cgroups.iter().find(|c| !c.proxy).expect("meshed cgroup");
    assert_eq!(
        meshed.path.as_deref(),
        Some(format!("{}/app", sb.cgroup).as_str())
    );
    assert_eq!((meshed.proxy_port, meshed.excluded_ports), (PROXY_PORT, 1));
    assert_eq!(meshed.redirected, 11, "{st:?}");
    assert!(
        st.cgroups
            .iter()
            .any(|c| c.proxy
                && c.path.as_deref() == Some(format!("{}/app/envoy", sb.cgroup).as_str()))
    );
    let count = |name: &str| {
        st.counters
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(count("original destinations answered"), 11, "{st:?}");
    let shown = ok(weir_in(&sb, &["status"]));
    assert!(shown.contains("11 connections redirected"), "{shown}");

    // The same config again changes nothing.
    let same = apply(&sb, &format!("cgroup {}\n{services}{mesh_line}", sb.cgroup));
    assert!(same.contains("nothing to do"), "{same}");

    // Removing the mesh statement: the workload is balanced directly again.
    let out = apply(&sb, &format!("cgroup {}\n{services}", sb.cgroup));
    assert!(out.contains("mesh: cgroups 0 written 2 removed"), "{out}");
    assert_balanced("no longer meshed", &clients(&sb, app, vip4(80), 3));
    assert!(status_mesh(&sb).cgroups.is_empty());

    // A load without any mesh statement detaches the mesh programs; the balancer's stay.
    let out = load(&sb, &format!("cgroup {}\n{services}", sb.cgroup));
    assert!(out.contains("(mesh-sockops):  detached"), "{out}");
    let st = status(&sb);
    assert!(
        st.attachments.iter().all(|a| !a.pin.starts_with("mesh-")),
        "{st:?}"
    );
    assert!(st
        .attachments
        .iter()
        .any(|a| a.pin.starts_with("connect4@")));
    assert!(st.mesh.cgroups.is_empty());
    assert_balanced("mesh programs detached", &clients(&sb, app, vip4(80), 2));
    // And `weir apply` cannot mesh again without a load.
    let cfg = ConfigFile::new(&sb, &format!("cgroup {}\n{services}{mesh_line}", sb.cgroup));
    let out = weir_in(&sb, &["apply", &cfg.arg()]);
    assert!(
        !out.status.success() && text(&out).contains("run `weir load` first"),
        "{}",
        text(&out)
    );

    ok(weir_in(&sb, &["unload"]));
    assert_eq!(residue(&sb), Vec::<String>::new());
    assert_eq!(mesh_residue(&sb), Vec::<String>::new());
    drop(_proxy);
    drop(cgs);
}

#[test]
fn the_proxy_uid_is_never_redirected() {
    let sb = sandbox("msu");
    let _servers = Backends::start(&sb, &[8001]);
    let cgs = SubCgroups::new(&sb, &["app"]);
    // The test runs as root: with proxy-uid=0 every process of the cgroup counts as the proxy.
    load(
        &sb,
        &format!(
            "cgroup {cg}\nmesh {cg}/app proxy-port={PROXY_PORT} proxy-uid=0\n",
            cg = sb.cgroup
        ),
    );
    assert_eq!(
        clients(&sb, &cgs.0[0], b4(8001), 2),
        [Reply::ok(b4(8001), "be8001"), Reply::ok(b4(8001), "be8001")]
    );
    let st = status_mesh(&sb);
    assert_eq!(st.cgroups.len(), 1);
    assert_eq!(
        (st.cgroups[0].proxy_uid, st.cgroups[0].redirected),
        (Some(0), 0)
    );
    // A uid that is not ours: now the same client is redirected (nobody listens: refused).
    apply(
        &sb,
        &format!(
            "cgroup {cg}\nmesh {cg}/app proxy-port={PROXY_PORT} proxy-uid=4242\n",
            cg = sb.cgroup
        ),
    );
    assert_eq!(clients(&sb, &cgs.0[0], b4(8001), 1), [Reply::Err(111)]);
    assert_eq!(status_mesh(&sb).cgroups[0].redirected, 1);
    ok(weir_in(&sb, &["unload"]));
    assert_eq!(mesh_residue(&sb), Vec::<String>::new());
    drop(cgs);
}

#[test]
fn a_dual_stack_proxy_and_loopback_destinations() {
    let sb = sandbox("msd");
    let _servers = Backends::start(&sb, &[8001]);
    wait_for_v6(&sb, 8001);
    let cgs = SubCgroups::new(&sb, &["app", "proxy"]);
    load(
        &sb,
        &format!(
            "cgroup {cg}\nmesh {cg}/app proxy-port={PROXY_PORT} proxy-cgroup={cg}/proxy\n",
            cg = sb.cgroup
        ),
    );
    let proxy = Proxy::start(
        &sb,
        &cgs.0[1],
        true,
        &[(vip4(80), vec![b4(8001)]), (vip6(80), vec![b6(8001)])],
    );
    let app = &cgs.0[0];
    // IPv4 clients reach the [::] listener v4-mapped: the recorded pair still matches.
    assert_proxied(
        "v4",
        &clients(&sb, app, vip4(80), 2),
        vip4(80),
        vip4(80),
        &[b4(8001)],
    );
    assert_proxied(
        "v6",
        &clients(&sb, app, vip6(80), 2),
        vip6(80),
        vip6(80),
        &[b6(8001)],
    );
    // Loopback destinations are never redirected: the proxy reached directly has no original
    // destination to report (ENOENT, as behind iptables).
    for to in [
        SocketAddr::from((Ipv4Addr::LOCALHOST, PROXY_PORT)),
        SocketAddr::from((Ipv6Addr::LOCALHOST, PROXY_PORT)),
    ] {
        let r = clients(&sb, app, to, 1);
        assert_eq!(r, [Reply::ok(to, "no-original-dst 2")], "{to}");
    }
    let st = status_mesh(&sb);
    assert_eq!(st.cgroups.iter().map(|c| c.redirected).sum::<u64>(), 4);
    ok(weir_in(&sb, &["unload"]));
    assert_eq!(mesh_residue(&sb), Vec::<String>::new());
    drop(proxy);
    drop(cgs);
}

const INBOUND_PORT: u16 = 15006;
const ECONNREFUSED: i32 = 111;

/// Inbound capture: namespace `b` is the meshed workload's. Its app (backends on 8001 and
/// 8003) is reached from namespace `a`; the proxy listens on `[::]:15006` in `b` (in its own
/// cgroup below the meshed one) and, for each connection, asks SO_ORIGINAL_DST and connects to
/// that address itself (over loopback, which is never captured).
#[test]
fn inbound_connections_go_to_the_proxy_inbound_port() {
    let sb = sandbox("msi");
    let _app = Backends::start(&sb, &[8001, 8003]);
    wait_for_v6(&sb, 8001);
    let cgs = SubCgroups::new(&sb, &["app", "app/envoy", "client"]);
    let (envoy, client) = (&cgs.0[1], &cgs.0[2]);
    let base = format!(
        "cgroup {cg}\nmesh {cg}/app proxy-port={PROXY_PORT} proxy-cgroup={cg}/app/envoy",
        cg = sb.cgroup
    );
    let inbound = format!(
        "{base} inbound-port={INBOUND_PORT} netns={} exclude-inbound-ports=8003\n",
        sb.ns_b
    );
    let out = load(&sb, &inbound);
    assert!(out.contains("mesh-inbound"), "{out}");
    let proxy = Proxy::start_in(&sb.ns_b, INBOUND_PORT, envoy, true, &[]);

    // IPv4 and IPv6 connections to the app's port arrive at the proxy, which learns the
    // original destination and reaches the app itself; the client sees the app's address.
    let v4 = clients(&sb, client, b4(8001), 3);
    assert_proxied("inbound v4", &v4, b4(8001), b4(8001), &[b4(8001)]);
    let v6 = clients(&sb, client, b6(8001), 3);
    assert_proxied("inbound v6", &v6, b6(8001), b6(8001), &[b6(8001)]);
    // An excluded port goes straight to the app.
    assert_eq!(
        clients(&sb, client, b4(8003), 1),
        [Reply::ok(b4(8003), "be8003")]
    );

    let st = status_mesh(&sb);
    assert_eq!(st.inbound.len(), 1, "{st:?}");
    let i = &st.inbound[0];
    assert_eq!(
        (&i.netns, i.ports, i.excluded_ports, i.listeners),
        (&sb.ns_b, Some((INBOUND_PORT, PROXY_PORT)), 1, 1),
        "{st:?}"
    );
    let count = |st: &weir::mesh::MeshStatus, name: &str| {
        st.counters
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(count(&st, "inbound connections to the proxy"), 6, "{st:?}");
    assert_eq!(
        count(&st, "original destinations answered (inbound)"),
        6,
        "{st:?}"
    );
    let shown = ok(weir_in(&sb, &["status"]));
    assert!(shown.contains("inbound TCP -> proxy port 15006"), "{shown}");

    // Removing inbound-port with `weir apply`: the app is reached directly again.
    let out = apply(&sb, &format!("{base}\n"));
    assert!(
        out.contains("inbound capture entries 0 written 2 removed"),
        "{out}"
    );
    assert_eq!(
        clients(&sb, client, b4(8001), 1),
        [Reply::ok(b4(8001), "be8001")]
    );
    assert_eq!(
        clients(&sb, client, b6(8001), 1),
        [Reply::ok(b6(8001), "be8001")]
    );
    assert_eq!(status_mesh(&sb).inbound[0].ports, None);
    // And back on: through the proxy again (its listener stayed known).
    apply(&sb, &inbound);
    let v4 = clients(&sb, client, b4(8001), 1);
    assert_proxied("inbound again", &v4, b4(8001), b4(8001), &[b4(8001)]);

    // No proxy listening: captured connections are refused (fail closed, as REDIRECT).
    drop(proxy);
    assert_eq!(
        clients(&sb, client, b4(8001), 1),
        [Reply::Err(ECONNREFUSED)]
    );
    assert_eq!(status_mesh(&sb).inbound[0].listeners, 0);

    // A load without inbound capture detaches it; unload leaves nothing behind.
    let out = load(&sb, &format!("{base}\n"));
    assert!(out.contains("(mesh-inbound):  detached"), "{out}");
    assert_eq!(
        clients(&sb, client, b4(8001), 1),
        [Reply::ok(b4(8001), "be8001")]
    );
    load(&sb, &inbound);
    ok(weir_in(&sb, &["unload"]));
    assert_eq!(residue(&sb), Vec::<String>::new());
    drop(cgs);
}
