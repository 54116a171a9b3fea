//! The fast path with real traffic (needs `bpf_redirect_peer`, kernel ≥ 5.10, and
//! `bpf_check_mtu`, ≥ 5.12). Each test builds its own topology of four network namespaces: a
//! host (where weir loads), two workloads behind veths, and an outside network routed through
//! the host, like a Kubernetes node with two pods and an uplink:
//!
//! ```text
//!   w1 (198.18.1.2, 2001:db8:1::2) ── h1 ┐
//!   w2 (198.18.2.2, 2001:db8:2::2) ── h2 ├─ host (forwarding, a counting iptables FORWARD rule)
//!   out (198.18.3.2, 2001:db8:3::2) ── ho ┘
//! ```
//!
//! The host's iptables FORWARD chain has one counting rule (in the host namespace the test
//! made): with the fast path on it sees none of the redirected packets, with it off it sees
//! them all.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::process::{Command, Output};
use std::time::Duration;

use weir::dataplane::Dataplane;
use weir::status::Status;
use weir::sys::netns;
use weir::topology::Routed;

use crate::common::*;

/// The routed node plus the host's counting FORWARD rules; `weir unload` and removal on drop
/// (the node's own).
struct Topo {
    node: Routed,
    host: String,
    w1: String,
    w2: String,
    out: String,
    h1: String,
    h2: String,
    ho: String,
}

fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"))
}

fn must(args: &[&str]) -> String {
    let o = sh(args);
    assert!(o.status.success(), "{args:?} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

impl Topo {
    fn new() -> Topo {
        require_root();
        let node = Routed::new("fp").unwrap_or_else(|e| panic!("building the routed node: {e}"));
        let t = Topo {
            host: node.host.clone(),
            w1: node.w1.netns.clone(),
            w2: node.w2.netns.clone(),
            out: node.out.netns.clone(),
            h1: node.w1.host_if.clone(),
            h2: node.w2.host_if.clone(),
            ho: node.out.host_if.clone(),
            node,
        };
        // The counting rules: no target, they only count what the host forwards.
        for tool in ["iptables", "ip6tables"] {
            must(&[
                "ip",
                "netns",
                "exec",
                &t.host,
                tool,
                "-w",
                "-A",
                "FORWARD",
                "-m",
                "comment",
                "--comment",
                "weir-fp-count",
            ]);
        }
        t
    }

    fn weir(&self, args: &[&str]) -> Output {
        let pin = self.node.pin_dir.to_string_lossy().into_owned();
        let mut all = vec!["--netns", self.host.as_str(), "--pin-dir", pin.as_str()];
        all.extend_from_slice(args);
        weir(&all)
    }

    /// `weir load` (or `apply` when `apply`) with the fast path on or off everywhere.
    fn load(&self, fastpath: &str, apply: bool) {
        let path = std::env::temp_dir().join(format!("{}-{fastpath}.conf", self.host));
        std::fs::write(&path, self.node.config(&format!("fastpath={fastpath}"))).expect("config");
        let p = path.to_string_lossy().into_owned();
        let out = if apply {
            self.weir(&["apply", &p])
        } else {
            self.weir(&["load", "--config", &p])
        };
        let _ = std::fs::remove_file(&path);
        ok(out);
    }

    fn status(&self) -> Status {
        let dp = Dataplane::new(self.node.pin_dir.clone());
        self.node
            .run_in(&self.host, || dp.status())
            .expect("host netns")
            .expect("status")
    }

    /// What the host's FORWARD counting rules (v4 + v6) have seen.
    fn forwarded(&self) -> u64 {
        let mut n = 0;
        for tool in ["iptables", "ip6tables"] {
            let out = must(&[
                "ip", "netns", "exec", &self.host, tool, "-w", "-L", "FORWARD", "-v", "-x", "-n",
            ]);
            let line = out
                .lines()
                .find(|l| l.contains("weir-fp-count"))
                .unwrap_or_else(|| panic!("no counting rule in {out}"));
            n += line
                .split_whitespace()
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap();
        }
        n
    }

    fn zero_forwarded(&self) {
        for tool in ["iptables", "ip6tables"] {
            must(&[
                "ip", "netns", "exec", &self.host, tool, "-w", "-Z", "FORWARD",
            ]);
        }
    }
}

/// `ping` from namespace `ns`: the output, and whether every request was answered.
fn ping(ns: &str, dst: &str, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["ip", "netns", "exec", ns, "ping", "-n", "-W", "2"];
    args.extend_from_slice(extra);
    args.push(dst);
    let o = sh(&args);
    (o.status.success(), text(&o))
}

fn ping_ok(ns: &str, dst: &str, count: u32) -> String {
    let c = count.to_string();
    let (ok, out) = ping(ns, dst, &["-c", &c, "-i", "0.05"]);
    assert!(ok, "ping {dst} from {ns}: {out}");
    out
}

/// A TCP exchange of `bytes` from `from` to `to` (served from namespace `server_ns`).
fn tcp_echo(from: &str, server_ns: &str, to: SocketAddr, bytes: usize) {
    let sfd = netns::open(server_ns).expect("server netns");
    let listener =
        netns::run_in(sfd.as_fd(), || TcpListener::bind(to)).expect("listening in the server ns");
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 65536];
        loop {
            let n = s.read(&mut buf).expect("server read");
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).expect("server write");
        }
    });
    let cfd = netns::open(from).expect("client netns");
    netns::run_in(cfd.as_fd(), || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let data: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
        let mut back = vec![0u8; bytes];
        let writer = {
            let mut w = s.try_clone().unwrap();
            let data = data.clone();
            std::thread::spawn(move || {
                w.write_all(&data).expect("client write");
                w.shutdown(std::net::Shutdown::Write).unwrap();
            })
        };
        s.read_exact(&mut back).expect("client read");
        writer.join().unwrap();
        assert!(back == data, "tcp {to}: the echo differs");
    });
    server.join().unwrap();
}

/// A UDP request/reply from `from` to `to` (served from `server_ns`); the reply's source is
/// the server's own address.
fn udp_echo(from: &str, server_ns: &str, to: SocketAddr) {
    let sfd = netns::open(server_ns).expect("server netns");
    let server = netns::run_in(sfd.as_fd(), || UdpSocket::bind(to)).expect("udp bind");
    server
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let t = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        for _ in 0..5 {
            let (n, peer) = server.recv_from(&mut buf).expect("server recv");
            server.send_to(&buf[..n], peer).expect("server send");
        }
    });
    let cfd = netns::open(from).expect("client netns");
    netns::run_in(cfd.as_fd(), || {
        let any: SocketAddr = if to.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let c = UdpSocket::bind(any).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        for i in 0..5u8 {
            c.send_to(&[i; 32], to).unwrap();
            let mut buf = [0u8; 64];
            let (n, src) = c.recv_from(&mut buf).expect("udp reply");
            assert_eq!((n, src, buf[0]), (32, to, i), "udp {to}");
        }
    });
    t.join().unwrap();
}

fn packets_of(st: &Status, ifname: &str, hook: &str) -> u64 {
    packets(st, ifname, hook)
}

/// Every kind of traffic the issue lists, in both families: workload ↔ workload,
/// outside → workload, workload → outside. Returns nothing; asserts it all works.
fn all_traffic(t: &Topo, port: u16) {
    for (from, to) in [
        (&t.w1, "198.18.2.2"),
        (&t.w2, "198.18.1.2"),
        (&t.out, "198.18.1.2"),
        (&t.w1, "198.18.3.2"),
        (&t.w1, "2001:db8:2::2"),
        (&t.out, "2001:db8:2::2"),
        (&t.w2, "2001:db8:3::2"),
    ] {
        let out = ping_ok(from, to, 5);
        // One router hop: the host (fast path or not) takes one off the reply's TTL.
        assert!(out.contains("ttl=63"), "ping {to} from {from}: {out}");
    }
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    tcp_echo(
        &t.w1,
        &t.w2,
        SocketAddr::new(ip("198.18.2.2"), port),
        300_000,
    );
    tcp_echo(
        &t.out,
        &t.w2,
        SocketAddr::new(ip("198.18.2.2"), port + 1),
        300_000,
    );
    tcp_echo(
        &t.w1,
        &t.out,
        SocketAddr::new(ip("198.18.3.2"), port + 2),
        300_000,
    );
    tcp_echo(
        &t.w2,
        &t.w1,
        SocketAddr::new(ip("2001:db8:1::2"), port + 3),
        300_000,
    );
    tcp_echo(
        &t.out,
        &t.w1,
        SocketAddr::new(ip("2001:db8:1::2"), port + 4),
        300_000,
    );
    udp_echo(&t.w1, &t.w2, SocketAddr::new(ip("198.18.2.2"), port + 5));
    udp_echo(
        &t.out,
        &t.w1,
        SocketAddr::new(ip("2001:db8:1::2"), port + 6),
    );
    udp_echo(&t.w2, &t.out, SocketAddr::new(ip("198.18.3.2"), port + 7));
}

/// Every endpoint sends once, so weir knows the workloads' MACs and the host its neighbours.
fn warm_up(t: &Topo) {
    for (from, to) in [
        (&t.w1, "198.18.1.1"),
        (&t.w2, "198.18.2.1"),
        (&t.out, "198.18.3.1"),
        (&t.w1, "2001:db8:1::1"),
        (&t.w2, "2001:db8:2::1"),
        (&t.out, "2001:db8:3::1"),
    ] {
        ping_ok(from, to, 1);
    }
    for (from, to) in [
        (&t.w1, "198.18.2.2"),
        (&t.w1, "198.18.3.2"),
        (&t.w2, "198.18.3.2"),
        (&t.w1, "2001:db8:2::2"),
        (&t.w1, "2001:db8:3::2"),
        (&t.w2, "2001:db8:3::2"),
    ] {
        ping_ok(from, to, 1);
    }
}

#[test]
fn fastpath_on_bypasses_the_hosts_forwarding_and_everything_still_works() {
    let t = Topo::new();
    t.load("on", false);
    warm_up(&t);
    t.zero_forwarded();
    let before = t.status();
    all_traffic(&t, 7100);
    assert_eq!(
        t.forwarded(),
        0,
        "the host's FORWARD chain saw fast-pathed packets"
    );
    let st = t.status();
    let grew = |ifname: &str, hook: &str| {
        packets_of(&st, ifname, hook) > packets_of(&before, ifname, hook)
    };
    // Into each workload straight from the uplink or the other workload, and out of each.
    for (ifname, hook) in [
        (&t.h1, "fastpath-in"),
        (&t.h2, "fastpath-in"),
        (&t.h1, "fastpath-out"),
        (&t.h2, "fastpath-out"),
    ] {
        assert!(grew(ifname, hook), "{ifname} {hook} did not count:\n{st}");
    }
    let text = ok(t.weir(&["status"]));
    assert!(text.contains("fastpath-in"), "{text}");
}

#[test]
fn fastpath_off_takes_the_normal_path_and_apply_switches_it() {
    let t = Topo::new();
    t.load("off", false);
    warm_up(&t);
    t.zero_forwarded();
    all_traffic(&t, 7200);
    let seen = t.forwarded();
    // 35 echo requests + 35 replies at least, and the TCP and UDP exchanges.
    assert!(seen > 70, "the FORWARD chain saw only {seen} packets");
    let st = t.status();
    for ifname in [&t.h1, &t.h2, &t.ho] {
        for hook in ["fastpath-in", "fastpath-out"] {
            assert_eq!(packets_of(&st, ifname, hook), 0, "{ifname} {hook}:\n{st}");
        }
    }

    // `weir apply` turns it on without reattaching anything: the same traffic bypasses the
    // host from then on (after one packet from each workload teaches weir its MAC).
    t.load("on", true);
    warm_up(&t);
    t.zero_forwarded();
    all_traffic(&t, 7300);
    assert_eq!(t.forwarded(), 0, "after apply fastpath=on");
}

#[test]
fn expiring_and_too_big_packets_take_the_normal_path() {
    let t = Topo::new();
    t.load("on", false);
    warm_up(&t);
    // TTL 1 would expire at the host: the kernel answers, as a router does.
    let (ok1, out) = ping(&t.w1, "198.18.2.2", &["-c", "1", "-t", "1"]);
    assert!(!ok1 && out.contains("Time to live exceeded"), "{out}");
    let (ok1, out) = ping(&t.w1, "2001:db8:2::2", &["-c", "1", "-t", "1"]);
    assert!(
        !ok1 && out.to_lowercase().contains("time exceeded"),
        "{out}"
    );
    // A smaller MTU towards w2: a 1400-byte datagram with DF set does not fit, so the host
    // says so (the fast path hands it to the stack instead of sending it on).
    must(&["ip", "-n", &t.host, "link", "set", &t.h2, "mtu", "1280"]);
    must(&["ip", "-n", &t.w2, "link", "set", "eth0", "mtu", "1280"]);
    let (ok1, out) = ping(&t.out, "198.18.2.2", &["-c", "1", "-M", "do", "-s", "1400"]);
    assert!(!ok1 && out.contains("mtu = 1280"), "{out}");
    // What fits still goes through.
    ping_ok(&t.out, "198.18.2.2", 3);
}

/// A TCP connect from namespace `from`: whether it was accepted within a second.
fn connects(t: &Topo, from: &str, server_ns: &str, to: SocketAddr) -> bool {
    let listener = t
        .node
        .run_in(server_ns, || TcpListener::bind(to))
        .expect("server netns")
        .expect("listen");
    let ok = t
        .node
        .run_in(from, || {
            TcpStream::connect_timeout(&to, Duration::from_secs(1)).is_ok()
        })
        .expect("client netns");
    drop(listener);
    ok
}

fn stat(st: &Status, name: &str) -> u64 {
    st.policy_stats
        .iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, c)| c.packets)
}

#[test]
fn policy_runs_before_the_fast_path_and_its_denies_still_deny() {
    let t = Topo::new();
    let n = &t.node;
    let cfg = |fp: &str| {
        format!(
        "interface {h1} role=workload xdp=off addrs={w1v4},{w1v6} labels=app:client fastpath={fp}\n\
         interface {h2} role=workload xdp=off addrs={w2v4},{w2v6} labels=app:db fastpath={fp}\n\
         interface {ho} xdp=off fastpath={fp}\n\
         policy db selector=\"app == 'db'\"\n\
         rule db ingress allow proto=tcp dport=5432 remote=198.18.1.0/24,2001:db8:1::/64\n\
         rule db ingress allow proto=icmp icmp-type=8\n\
         rule db ingress allow proto=icmpv6 icmp-type=128\n",
        h1 = t.h1,
        h2 = t.h2,
        ho = t.ho,
        w1v4 = n.w1.v4,
        w1v6 = n.w1.v6,
        w2v4 = n.w2.v4,
        w2v6 = n.w2.v6,
    )
    };
    let path = std::env::temp_dir().join(format!("{}-policy.conf", t.host));
    std::fs::write(&path, cfg("on")).expect("config");
    ok(t.weir(&["load", "--config", &path.to_string_lossy()]));
    warm_up(&t);
    t.zero_forwarded();
    let before = t.status();

    let w2 = |ip: IpAddr, port| SocketAddr::new(ip, port);
    // Allowed by the db policy: through the fast path, replies by conntrack.
    tcp_echo(&t.w1, &t.w2, w2(n.w2.v4.into(), 5432), 100_000);
    tcp_echo(&t.w1, &t.w2, w2(n.w2.v6.into(), 5432), 100_000);
    ping_ok(&t.w1, &n.w2.v4.to_string(), 3);
    ping_ok(&t.out, &n.w2.v6.to_string(), 3);
    assert_eq!(t.forwarded(), 0, "allowed traffic left the fast path");
    let mid = t.status();
    assert!(
        packets_of(&mid, &t.h2, "fastpath-in") > packets_of(&before, &t.h2, "fastpath-in"),
        "nothing took the fast path into db:\n{mid}"
    );

    // Denied by it: another port, or the right port from outside the allowed network. The
    // packets are dropped where the fast path judged them, never delivered.
    for (from, to) in [
        (&t.w1, w2(n.w2.v4.into(), 5433)),
        (&t.w1, w2(n.w2.v6.into(), 5433)),
        (&t.out, w2(n.w2.v4.into(), 5432)),
        (&t.out, w2(n.w2.v6.into(), 5432)),
    ] {
        assert!(!connects(&t, from, &t.w2, to), "{from} reached {to}");
    }
    let after = t.status();
    assert!(
        stat(&after, "denied-by-default") > stat(&mid, "denied-by-default"),
        "the denies were not counted:\n{after}"
    );
    // The same flows with the fast path off are denied too (at the veth's own hook).
    std::fs::write(&path, cfg("off")).expect("config");
    ok(t.weir(&["apply", &path.to_string_lossy()]));
    let _ = std::fs::remove_file(&path);
    for (from, to) in [
        (&t.w1, w2(n.w2.v4.into(), 5433)),
        (&t.out, w2(n.w2.v4.into(), 5432)),
    ] {
        assert!(
            !connects(&t, from, &t.w2, to),
            "fastpath=off: {from} reached {to}"
        );
    }
}
