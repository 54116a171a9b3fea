//! Connect-time load balancing on the real kernel: clients are processes (this test binary
//! re-run as `lb::probe_child`) that join the sandbox's cgroup (or a cgroup below it, or stay
//! outside) and its client namespace `a`; backends are threads in namespace `b`, one TCP and
//! one UDP socket per port, answering with their own name (`be<port>`).
//!
//! The VIPs are in no namespace's routes, so a connection that is not rewritten fails with
//! ENETUNREACH: that is how "untouched" is told apart from "refused" (ECONNREFUSED).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use weir::sandbox::{Sandbox, ADDR_B4, ADDR_B6};
use weir::sys::{cgroup, netns};

use crate::common::*;

const VIP4: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 1);
const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x200, 0, 0, 0, 0, 1);
const ENETUNREACH: i32 = 101;
const ECONNREFUSED: i32 = 111;

fn vip4(port: u16) -> SocketAddr {
    (VIP4, port).into()
}

fn vip6(port: u16) -> SocketAddr {
    (VIP6, port).into()
}

fn mapped(port: u16) -> SocketAddr {
    (VIP4.to_ipv6_mapped(), port).into()
}

/// TCP and UDP servers on `[::]:port` (dual-stack) in namespace `b`, one per port, until dropped.
struct Backends {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Backends {
    fn start(sb: &Sandbox, ports: &[u16]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for &port in ports {
            let (tcp, udp) = sb
                .in_b(|| {
                    let tcp = TcpListener::bind(("::", port)).expect("bind tcp backend");
                    tcp.set_nonblocking(true).unwrap();
                    let udp = UdpSocket::bind(("::", port)).expect("bind udp backend");
                    udp.set_read_timeout(Some(Duration::from_millis(50)))
                        .unwrap();
                    (tcp, udp)
                })
                .expect("netns b");
            let name = format!("be{port}");
            let (s1, n1) = (stop.clone(), name.clone());
            threads.push(std::thread::spawn(move || {
                while !s1.load(Ordering::Relaxed) {
                    match tcp.accept() {
                        Ok((mut conn, _)) => {
                            let _ = conn.write_all(n1.as_bytes());
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            }));
            let s2 = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while !s2.load(Ordering::Relaxed) {
                    if let Ok((_, from)) = udp.recv_from(&mut buf) {
                        let _ = udp.send_to(name.as_bytes(), from);
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

/// A cgroup below the sandbox's, removed on drop (after the probes in it have exited).
struct SubCgroup(PathBuf);

impl SubCgroup {
    fn new(sb: &Sandbox, rel: &str) -> Self {
        let dir = sb.cgroup_dir.join(rel);
        cgroup::create(&dir).expect("creating a test cgroup");
        Self(dir)
    }
}

impl Drop for SubCgroup {
    fn drop(&mut self) {
        // Deepest first: the children of this one were created after it.
        let mut dirs: Vec<PathBuf> = walk(&self.0);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            let _ = cgroup::remove(&d);
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walk(&e.path()));
            }
        }
    }
    out
}

/// One attempt's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Probe {
    /// `peer`: getpeername (TCP and connected UDP); `from`: where the reply came from.
    Ok {
        peer: Option<SocketAddr>,
        from: SocketAddr,
        reply: String,
    },
    /// The errno of the failed call.
    Err(i32),
}

impl Probe {
    fn reply(&self) -> &str {
        match self {
            Probe::Ok { reply, .. } => reply,
            Probe::Err(_) => "",
        }
    }
}

/// Where a probe process runs: its cgroup (`None`: stays in the test's own, outside the attach
/// cgroup) — always in namespace `a`.
fn probe_in(
    sb: &Sandbox,
    cgroup_dir: Option<&Path>,
    op: &str,
    to: SocketAddr,
    count: u32,
    pause_ms: u64,
) -> Vec<Probe> {
    probe_run(sb, cgroup_dir, op, to, count, pause_ms).0
}

/// [`probe_in`], also returning the probe's whole output (for lines other than `PROBE`).
fn probe_run(
    sb: &Sandbox,
    cgroup_dir: Option<&Path>,
    op: &str,
    to: SocketAddr,
    count: u32,
    pause_ms: u64,
) -> (Vec<Probe>, String) {
    let procs = cgroup_dir.map_or_else(|| "-".to_owned(), |d| d.display().to_string());
    let spec = format!("{procs}|{}|{op}|{to}|{count}|{pause_ms}", sb.ns_a);
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "lb::probe_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WEIR_LB_PROBE", &spec)
        .output()
        .expect("running the probe");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "probe {spec} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let probes: Vec<Probe> = stdout
        .lines()
        // The harness prints "test ... " before the first line, on the same line.
        .filter_map(|l| l.split_once("PROBE ").map(|(_, rest)| rest))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            match f[..] {
                ["err", errno] => Probe::Err(errno.parse().unwrap()),
                ["ok", peer, from, reply] => Probe::Ok {
                    peer: (peer != "-").then(|| peer.parse().unwrap()),
                    from: from.parse().unwrap(),
                    reply: reply.to_owned(),
                },
                _ => panic!("bad probe line {l:?}"),
            }
        })
        .collect();
    assert_eq!(probes.len(), count as usize, "probe {spec}: {stdout}");
    (probes, stdout.into_owned())
}

/// `count` attempts from a process in the sandbox's cgroup.
fn probe(sb: &Sandbox, op: &str, to: SocketAddr, count: u32) -> Vec<Probe> {
    probe_in(sb, Some(&sb.cgroup_dir), op, to, count, 0)
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

fn tcp_once(to: SocketAddr) -> Probe {
    let mut s = match TcpStream::connect_timeout(&to, Duration::from_secs(3)) {
        Ok(s) => s,
        Err(e) => return Probe::Err(errno(&e)),
    };
    let peer = s.peer_addr().expect("getpeername");
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut reply = String::new();
    if let Err(e) = s.read_to_string(&mut reply) {
        return Probe::Err(errno(&e));
    }
    Probe::Ok {
        peer: Some(peer),
        from: peer,
        reply,
    }
}

fn udp_once(to: SocketAddr, connected: bool) -> Probe {
    let s = UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).expect("bind");
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut peer = None;
    let sent = if connected {
        if let Err(e) = s.connect(to) {
            return Probe::Err(errno(&e));
        }
        peer = Some(s.peer_addr().expect("getpeername"));
        s.send(b"hello")
    } else {
        s.send_to(b"hello", to)
    };
    if let Err(e) = sent {
        return Probe::Err(errno(&e));
    }
    let mut buf = [0u8; 64];
    match s.recv_from(&mut buf) {
        Ok((n, from)) => Probe::Ok {
            peer,
            from,
            reply: String::from_utf8_lossy(&buf[..n]).into_owned(),
        },
        Err(e) => Probe::Err(errno(&e)),
    }
}

/// Re-connects `s` (already connected elsewhere) to `to`, then one request/reply.
fn udp_reconnected(s: &UdpSocket, to: SocketAddr) -> Probe {
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    if let Err(e) = s.connect(to) {
        return Probe::Err(errno(&e));
    }
    let peer = Some(s.peer_addr().expect("getpeername"));
    if let Err(e) = s.send(b"hello") {
        return Probe::Err(errno(&e));
    }
    let mut buf = [0u8; 64];
    match s.recv_from(&mut buf) {
        Ok((n, from)) => Probe::Ok {
            peer,
            from,
            reply: String::from_utf8_lossy(&buf[..n]).into_owned(),
        },
        Err(e) => Probe::Err(errno(&e)),
    }
}

/// The client process: not a test of its own. Runs only when `probe_in` starts this binary with
/// `WEIR_LB_PROBE=CGROUP_DIR|-|NETNS|OP|ADDR|COUNT|PAUSE_MS`; prints one `PROBE` line per attempt.
#[test]
fn probe_child() {
    let Ok(spec) = std::env::var("WEIR_LB_PROBE") else {
        return;
    };
    let f: Vec<&str> = spec.split('|').collect();
    let [procs, ns, op, to, count, pause_ms] = f[..] else {
        panic!("bad WEIR_LB_PROBE {spec:?}");
    };
    if procs != "-" {
        cgroup::add_process(Path::new(procs), std::process::id()).expect("joining the cgroup");
    }
    let fd = netns::open(ns).expect("opening netns a");
    netns::enter(fd.as_fd()).expect("entering netns a");
    let to: SocketAddr = to.parse().expect("address");
    // Connections kept open until every attempt is made (`tcphold=MAP_PIN`), then the entries
    // of the pinned map are counted while they are open and again once they are closed.
    let mut held = Vec::new();
    for _ in 0..count.parse::<u32>().expect("count") {
        std::thread::sleep(Duration::from_millis(pause_ms.parse().expect("pause")));
        let p = match op {
            "tcp" => tcp_once(to),
            "udp" => udp_once(to, false),
            "udpc" => udp_once(to, true),
            op if op.starts_with("tcphold=") => {
                let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))
                    .expect("connect to the VIP");
                let peer = s.peer_addr().expect("getpeername");
                let mut reply = String::new();
                s.read_to_string(&mut reply).expect("reply");
                held.push(s);
                Probe::Ok {
                    peer: Some(peer),
                    from: peer,
                    reply,
                }
            }
            // Connected to `to` first (a VIP), then re-connected to the address after `=`.
            op if op.starts_with("udpre=") => {
                let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
                s.connect(to).expect("connect to the VIP");
                let again: SocketAddr = op["udpre=".len()..].parse().expect("second address");
                udp_reconnected(&s, again)
            }
            other => panic!("unknown probe op {other}"),
        };
        let line = match p {
            Probe::Ok { peer, from, reply } => format!(
                "ok {} {from} {reply}",
                peer.map_or_else(|| "-".to_owned(), |p| p.to_string())
            ),
            Probe::Err(e) => format!("err {e}"),
        };
        println!("PROBE {line}");
    }
    if let Some(map) = op.strip_prefix("tcphold=") {
        let entries = || {
            let fd = weir::sys::bpf::obj_get(Path::new(map)).expect("opening the pinned map");
            weir::contents::keys(fd.as_fd(), 8, map)
                .expect("reading the map")
                .len()
        };
        let open = entries();
        drop(held);
        println!("HELD open={open} closed={}", entries());
    }
}

fn load(sb: &Sandbox, body: &str) {
    let cfg = ConfigFile::new(sb, body);
    ok(weir_in(sb, &["load", "--config", &cfg.arg()]));
}

fn apply(sb: &Sandbox, body: &str) -> String {
    let cfg = ConfigFile::new(sb, body);
    ok(weir_in(sb, &["apply", &cfg.arg()]))
}

fn replies(probes: &[Probe], name: &str) -> usize {
    probes.iter().filter(|p| p.reply() == name).count()
}

/// Asserts every probe succeeded, reached one of `backends`, and saw `vip` as its peer (when it
/// has one) and as the source of the reply.
fn assert_balanced(what: &str, probes: &[Probe], vip: SocketAddr, backends: &[&str]) {
    for p in probes {
        let Probe::Ok { peer, from, reply } = p else {
            panic!("{what}: {p:?} in {probes:?}");
        };
        assert!(backends.contains(&reply.as_str()), "{what}: reply {reply}");
        assert_eq!(*from, vip, "{what}: reply source");
        if let Some(peer) = peer {
            assert_eq!(*peer, vip, "{what}: getpeername");
        }
    }
}

/// IPv6 addresses are usable once duplicate address detection is done.
fn wait_for_v6(sb: &Sandbox, port: u16) {
    eventually("IPv6 reachable from namespace a", || {
        sb.in_a(|| TcpStream::connect_timeout(&(ADDR_B6, port).into(), Duration::from_secs(1)))
            .expect("netns a")
            .is_ok()
    });
}

#[test]
fn tcp_udp_v4_v6_and_mapped_reach_a_backend_and_report_the_vip() {
    let sb = sandbox("lbt");
    let b4 = |p| SocketAddr::from((ADDR_B4, p));
    let b6 = |p| SocketAddr::from((ADDR_B6, p));
    let _servers = Backends::start(&sb, &[8001, 8002]);
    wait_for_v6(&sb, 8001);
    load(
        &sb,
        &format!(
            "cgroup {cg}\n\
             service web {v4}/tcp backends={a},{b}\n\
             service web {v4u}/udp backends={a},{b}\n\
             service web6 {v6}/tcp backends={c},{d}\n\
             service web6 {v6u}/udp backends={c},{d}\n",
            cg = sb.cgroup,
            v4 = vip4(80),
            v4u = vip4(53),
            v6 = vip6(80),
            v6u = vip6(53),
            a = b4(8001),
            b = b4(8002),
            c = b6(8001),
            d = b6(8002),
        ),
    );
    let both = ["be8001", "be8002"];
    let cases = [
        ("tcp v4", "tcp", vip4(80), vip4(80)),
        ("unconnected udp v4", "udp", vip4(53), vip4(53)),
        ("connected udp v4", "udpc", vip4(53), vip4(53)),
        ("tcp v6", "tcp", vip6(80), vip6(80)),
        ("unconnected udp v6", "udp", vip6(53), vip6(53)),
        ("connected udp v6", "udpc", vip6(53), vip6(53)),
        // v4-mapped on an IPv6 socket: balanced as IPv4, reported back v4-mapped.
        ("tcp v4-mapped", "tcp", mapped(80), mapped(80)),
        ("unconnected udp v4-mapped", "udp", mapped(53), mapped(53)),
        ("connected udp v4-mapped", "udpc", mapped(53), mapped(53)),
    ];
    for (what, op, to, vip) in cases {
        let probes = probe(&sb, op, to, 12);
        assert_balanced(what, &probes, vip, &both);
        // 12 picks between two equal backends: both are used (all on one: p = 2^-11).
        assert!(
            replies(&probes, "be8001") > 0 && replies(&probes, "be8002") > 0,
            "{what}: one backend got everything: {probes:?}"
        );
    }

    // A UDP socket connected to the VIP and then straight to a backend forgets the VIP:
    // getpeername and the reply's source are the backend's own address.
    let again = probe(&sb, &format!("udpre={}", b4(8002)), vip4(53), 2);
    for p in &again {
        let Probe::Ok { peer, from, reply } = p else {
            panic!("re-connected udp: {again:?}");
        };
        assert_eq!(
            (*peer, *from, reply.as_str()),
            (Some(b4(8002)), b4(8002), "be8002")
        );
    }

    // A process outside the attach cgroup is not balanced: the VIP is unreachable for it.
    let outside = probe_in(&sb, None, "tcp", vip4(80), 2, 0);
    assert_eq!(outside, vec![Probe::Err(ENETUNREACH); 2]);

    // Status: the services, their backends, and every rewrite counted.
    let st = status(&sb);
    assert_eq!(st.services.len(), 4, "{:?}", st.services);
    let web = st
        .services
        .iter()
        .find(|s| s.vip == vip4(80) && s.proto == "tcp")
        .expect("web in status");
    let addrs: Vec<SocketAddr> = web.backends.iter().map(|b| b.addr).collect();
    assert_eq!(addrs, [b4(8001), b4(8002)]);
    // tcp v4 (12) and tcp v4-mapped (12) went through this service.
    let total: u64 = web.backends.iter().map(|b| b.rewritten).sum();
    assert_eq!(total, 24, "{web:?}");
    let text = ok(weir_in(&sb, &["status"]));
    assert!(text.contains("198.18.200.1:80/tcp"), "{text}");

    ok(weir_in(&sb, &["unload"]));
    assert_eq!(residue(&sb), Vec::<String>::new());
    // Every sock_addr hook is gone from the cgroup, not only connect4/6.
    let dir = cgroup::open_dir(&sb.cgroup_dir).expect("cgroup dir");
    for (_, hook) in weir::embedded::PROGS_SOCK {
        let ids = weir::sys::bpf::prog_query(
            weir::sys::bpf::LinkTarget::Fd(dir.as_fd()),
            hook.attach_type(),
            0,
        )
        .expect("cgroup query")
        .prog_ids;
        assert!(ids.is_empty(), "{hook:?} still attached: {ids:?}");
    }
}

/// Connected sockets keep their VIP in `lb_conn` by cookie until they close (`sock_release`
/// deletes the entry); past its capacity, in their own socket storage, with the same result.
/// Needs: cgroup/sock_release programs (5.9) with bpf_get_socket_cookie, socket storage.
#[test]
fn connected_sockets_are_forgotten_on_close_and_overflow_into_socket_storage() {
    let sb = sandbox("lbc");
    let _servers = Backends::start(&sb, &[8001, 8002]);
    load(
        &sb,
        &format!(
            "cgroup {cg}\nlb capacity connections=2\nservice web {v4}/tcp backends={a},{b}\n",
            cg = sb.cgroup,
            v4 = vip4(80),
            a = SocketAddr::from((ADDR_B4, 8001)),
            b = SocketAddr::from((ADDR_B4, 8002)),
        ),
    );
    let map = pin(&sb, "maps/lb_conn@v1");
    // `n` TCP connections held open at once: every one must report the VIP; the output says
    // how many lb_conn entries there were while they were open and after they closed.
    let hold = |n: u32, what: &str| {
        let op = format!("tcphold={}", map.display());
        let (probes, out) = probe_run(&sb, Some(&sb.cgroup_dir), &op, vip4(80), n, 0);
        assert_balanced(what, &probes, vip4(80), &["be8001", "be8002"]);
        out
    };
    // Two from lb_conn (full at 2), three from socket storage.
    let out = hold(5, "held tcp");
    assert!(out.contains("HELD open=2 closed=0"), "{out}");
    // Closed sockets left nothing behind, so new ones use lb_conn again.
    let out = hold(1, "tcp after close");
    assert!(out.contains("HELD open=1 closed=0"), "{out}");
    let st = status(&sb);
    assert!(
        st.sock_counters
            .iter()
            .any(|(hook, calls)| hook == "sock-release" && *calls >= 6),
        "{:?}",
        st.sock_counters
    );
}

#[test]
fn weights_are_respected_and_weight_zero_drains() {
    let sb = sandbox("lbw");
    let _servers = Backends::start(&sb, &[8001, 8002]);
    let cfg = |w1: u32| {
        format!(
            "cgroup {}\nservice web {}/tcp backends={}:8001@{w1},{}:8002@3\n",
            sb.cgroup,
            vip4(80),
            ADDR_B4,
            ADDR_B4
        )
    };
    load(&sb, &cfg(1));
    // 1:3 → 4 slots. 400 connections: 100 expected on be8001, sd ≈ 8.7; allow ±45 (> 5 sd).
    let probes = probe(&sb, "tcp", vip4(80), 400);
    assert_balanced("weighted", &probes, vip4(80), &["be8001", "be8002"]);
    let on_1 = replies(&probes, "be8001");
    assert!((55..=145).contains(&on_1), "be8001 got {on_1} of 400");

    // The per-backend counters are exact.
    let count = |st: &weir::status::Status, port: u16| {
        st.services[0]
            .backends
            .iter()
            .find(|b| b.addr.port() == port)
            .map(|b| (b.rewritten, b.drained))
            .expect("backend in status")
    };
    let st = status(&sb);
    assert_eq!(count(&st, 8001), (on_1 as u64, false));
    assert_eq!(count(&st, 8002), ((400 - on_1) as u64, false));

    // Drain be8001: no new connections, its counter and id are kept.
    let out = apply(&sb, &cfg(0));
    assert!(out.contains("lb:"), "{out}");
    let drained = probe(&sb, "tcp", vip4(80), 60);
    assert_eq!(replies(&drained, "be8002"), 60, "{drained:?}");
    let st = status(&sb);
    assert_eq!(count(&st, 8001), (on_1 as u64, true));
    assert_eq!(count(&st, 8002), ((460 - on_1) as u64, false));

    // The same config again writes nothing.
    let out = apply(&sb, &cfg(0));
    assert!(out.contains("nothing to do"), "{out}");
}

#[test]
fn no_backends_is_refused_and_removing_a_service_restores_plain_behaviour() {
    let sb = sandbox("lbr");
    let _servers = Backends::start(&sb, &[8001]);
    load(
        &sb,
        &format!(
            "cgroup {cg}\n\
             service web {}/tcp backends={b}:8001\n\
             service gone {}/tcp backends=none\n\
             service gone {}/udp backends=none\n",
            vip4(80),
            vip4(81),
            vip4(53),
            cg = sb.cgroup,
            b = ADDR_B4,
        ),
    );
    assert_balanced(
        "web",
        &probe(&sb, "tcp", vip4(80), 3),
        vip4(80),
        &["be8001"],
    );
    assert_eq!(
        probe(&sb, "tcp", vip4(81), 2),
        vec![Probe::Err(ECONNREFUSED); 2]
    );
    assert_eq!(
        probe(&sb, "udp", vip4(53), 2),
        vec![Probe::Err(ECONNREFUSED); 2],
        "unconnected UDP to a service without backends"
    );
    assert_eq!(
        probe(&sb, "udpc", vip4(53), 2),
        vec![Probe::Err(ECONNREFUSED); 2],
        "connected UDP to a service without backends"
    );
    assert_eq!(
        probe(&sb, "tcp", mapped(81), 1),
        vec![Probe::Err(ECONNREFUSED)],
        "v4-mapped on an IPv6 socket"
    );

    // Remove every service: the VIPs are plain (unroutable) addresses again.
    let out = apply(&sb, &format!("cgroup {}\n", sb.cgroup));
    assert!(out.contains("services 0 written 3 removed"), "{out}");
    for port in [80, 81] {
        assert_eq!(
            probe(&sb, "tcp", vip4(port), 1),
            vec![Probe::Err(ENETUNREACH)]
        );
    }
    assert_eq!(
        probe(&sb, "udp", vip4(53), 1),
        vec![Probe::Err(ENETUNREACH)]
    );
    assert!(status(&sb).services.is_empty());
}

#[test]
fn excluded_cgroups_and_services_are_untouched() {
    let sb = sandbox("lbx");
    let _servers = Backends::start(&sb, &[8001]);
    let mesh = SubCgroup::new(&sb, "mesh");
    let deeper = SubCgroup::new(&sb, "mesh/sidecar/deeper");
    let app = SubCgroup::new(&sb, "app");
    load(
        &sb,
        &format!(
            "cgroup {cg}\n\
             lb exclude {cg}/mesh\n\
             service web {}/tcp backends={b}:8001\n\
             service opt-out {}/tcp backends={b}:8001 excluded\n",
            vip4(80),
            vip4(81),
            cg = sb.cgroup,
            b = ADDR_B4,
        ),
    );
    let in_cg = |dir: &Path, port| probe_in(&sb, Some(dir), "tcp", vip4(port), 1, 0);
    assert_balanced("app", &in_cg(&app.0, 80), vip4(80), &["be8001"]);
    assert_balanced(
        "the attach cgroup itself",
        &in_cg(&sb.cgroup_dir, 80),
        vip4(80),
        &["be8001"],
    );
    assert_eq!(in_cg(&mesh.0, 80), vec![Probe::Err(ENETUNREACH)]);
    assert_eq!(
        in_cg(&deeper.0, 80),
        vec![Probe::Err(ENETUNREACH)],
        "descendants of an excluded cgroup are excluded"
    );
    assert_eq!(
        in_cg(&app.0, 81),
        vec![Probe::Err(ENETUNREACH)],
        "an excluded service"
    );

    // An apply that fails (an excluded cgroup that does not exist) changes nothing.
    let bad = ConfigFile::new(
        &sb,
        &format!(
            "cgroup {cg}\nlb exclude {cg}/nonexistent\nservice web {}/tcp backends=none\n",
            vip4(80),
            cg = sb.cgroup
        ),
    );
    let out = weir_in(&sb, &["apply", &bad.arg()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("nonexistent"), "{}", text(&out));
    assert_balanced(
        "after a failed apply",
        &in_cg(&app.0, 80),
        vip4(80),
        &["be8001"],
    );
    assert_eq!(in_cg(&mesh.0, 80), vec![Probe::Err(ENETUNREACH)]);

    // Lifting the exclusion with apply: the mesh is balanced too.
    let out = apply(
        &sb,
        &format!(
            "cgroup {}\nservice web {}/tcp backends={}:8001\n",
            sb.cgroup,
            vip4(80),
            ADDR_B4
        ),
    );
    assert!(
        out.contains("excluded cgroups 0 written 1 removed"),
        "{out}"
    );
    assert_balanced("mesh", &in_cg(&mesh.0, 80), vip4(80), &["be8001"]);
    drop((deeper, mesh, app));
}

#[test]
fn affinity_holds_and_expires() {
    let sb = sandbox("lba");
    let ports = [8001, 8002, 8003, 8004];
    let _servers = Backends::start(&sb, &ports);
    let backends: Vec<String> = ports.iter().map(|p| format!("{ADDR_B4}:{p}")).collect();
    load(
        &sb,
        &format!(
            "cgroup {}\nservice web {}/tcp backends={} affinity=1\n",
            sb.cgroup,
            vip4(80),
            backends.join(",")
        ),
    );
    let names = ["be8001", "be8002", "be8003", "be8004"];
    // Within the timeout every connection from the namespace goes to the same backend
    // (without affinity, 20 picks among 4 agreeing has p = 4^-19).
    let held = probe(&sb, "tcp", vip4(80), 20);
    assert_balanced("affinity", &held, vip4(80), &names);
    let first = held[0].reply().to_owned();
    assert!(held.iter().all(|p| p.reply() == first), "{held:?}");

    // After the timeout the next connection is a fresh pick: over 6 expiries at least one lands
    // elsewhere (all on `first`: p = 4^-6).
    let later = probe_in(&sb, Some(&sb.cgroup_dir), "tcp", vip4(80), 6, 1300);
    assert_balanced("expired", &later, vip4(80), &names);
    assert!(
        later.iter().any(|p| p.reply() != first),
        "affinity never expired: {first} then {later:?}"
    );

    // Draining the backend a client is held to moves it at once, affinity or not.
    let held = probe(&sb, "tcp", vip4(80), 3);
    let current = held[2].reply().to_owned();
    let weighted: Vec<String> = ports
        .iter()
        .map(|p| {
            let w = if current == format!("be{p}") { 0 } else { 1 };
            format!("{ADDR_B4}:{p}@{w}")
        })
        .collect();
    apply(
        &sb,
        &format!(
            "cgroup {}\nservice web {}/tcp backends={} affinity=1\n",
            sb.cgroup,
            vip4(80),
            weighted.join(",")
        ),
    );
    let moved = probe(&sb, "tcp", vip4(80), 5);
    assert_balanced("drained", &moved, vip4(80), &names);
    assert!(
        moved.iter().all(|p| p.reply() != current),
        "still sent to the drained {current}: {moved:?}"
    );
    let again = moved[0].reply();
    assert!(moved.iter().all(|p| p.reply() == again), "{moved:?}");
}

#[test]
fn services_beyond_the_capacity_are_refused_and_change_nothing() {
    let sb = sandbox("lbq");
    let _servers = Backends::start(&sb, &[8001]);
    let base = format!("cgroup {}\nlb capacity services=2 backends=4\n", sb.cgroup);
    let two = format!(
        "{base}service a {}/tcp backends={b}:8001\nservice b {}/tcp backends={b}:8001\n",
        vip4(80),
        vip4(81),
        b = ADDR_B4
    );
    load(&sb, &two);
    let before = status(&sb).services;
    assert_eq!(before.len(), 2);
    // A third service does not fit: refused, naming the option, and the two stay as they were.
    let three = format!(
        "{two}service c {}/tcp backends={}:8001\n",
        vip4(82),
        ADDR_B4
    );
    let cfg = ConfigFile::new(&sb, &three);
    let out = weir_in(&sb, &["apply", &cfg.arg()]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("lb_services") && t.contains("lb capacity services=N"),
        "{t}"
    );
    assert_eq!(status(&sb).services, before);
    assert_balanced("a", &probe(&sb, "tcp", vip4(80), 2), vip4(80), &["be8001"]);
    assert_eq!(
        probe(&sb, "tcp", vip4(82), 1),
        vec![Probe::Err(ENETUNREACH)]
    );
}
