//! Stateful network policy at TC with real traffic. The sandbox's host namespace (`b`) routes
//! between the outside namespace (`a`) and two workloads, each a namespace of its own behind a
//! veth whose host side is a weir endpoint (`role=workload`); `b`'s side of the sandbox veth is
//! a host endpoint. Connections are made with std sockets inside the namespaces and `ping`.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::process::Command;
use std::time::Duration;

use weir::sandbox::{Sandbox, ADDR_A4, ADDR_A6};
use weir::status::Status;
use weir::sys::netns;

use crate::common::*;

/// How long a blocked connect or echo waits: blocked packets are dropped silently.
const BLOCKED_AFTER: Duration = Duration::from_millis(800);

/// Workload `n` (1 or 2): its namespace, host-side veth and addresses.
struct Workload {
    ns: String,
    host_if: String,
    v4: Ipv4Addr,
    v6: Ipv6Addr,
}

/// The sandbox plus two workloads; the workload namespaces go on drop.
struct Topo {
    sb: Sandbox,
    w: [Workload; 2],
}

impl Drop for Topo {
    fn drop(&mut self) {
        // weir first (the sandbox's own drop would too, but the workload veths go with their
        // namespaces, which must not outlive the test).
        let dp = weir::Dataplane::new(self.sb.pin_dir.clone());
        let _ = self.sb.in_b(|| dp.unload());
        for w in &self.w {
            let _ = Command::new("ip").args(["netns", "del", &w.ns]).output();
        }
    }
}

fn run(args: &[&str]) -> String {
    let o = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ns_run(ns: &str, args: &[&str]) -> String {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    run(&all)
}

fn topo(tag: &str) -> Topo {
    let sb = sandbox(tag);
    let base = sb.veth_b.trim_end_matches('b').to_owned();
    let w = [1u8, 2].map(|n| Workload {
        ns: format!("{}-w{n}", sb.ns_b),
        host_if: format!("{base}h{n}"),
        v4: Ipv4Addr::new(198, 19, n, 2),
        v6: Ipv6Addr::new(0x2001, 0xdb8, 0x100 + u16::from(n), 0, 0, 0, 0, 2),
    });
    let t = Topo { sb, w };
    let (b, a) = (t.sb.ns_b.clone(), t.sb.ns_a.clone());
    for (n, w) in t.w.iter().enumerate() {
        let n = n + 1;
        let wl_if = format!("{base}c{n}");
        run(&["ip", "netns", "add", &w.ns]);
        ns_run(
            &b,
            &[
                "ip", "link", "add", &w.host_if, "type", "veth", "peer", "name", &wl_if, "netns",
                &w.ns,
            ],
        );
        ns_run(
            &b,
            &[
                "ip",
                "addr",
                "add",
                &format!("198.19.{n}.1/24"),
                "dev",
                &w.host_if,
            ],
        );
        ns_run(
            &b,
            &[
                "ip",
                "addr",
                "add",
                &format!("2001:db8:10{n}::1/64"),
                "dev",
                &w.host_if,
                "nodad",
            ],
        );
        ns_run(&b, &["ip", "link", "set", &w.host_if, "up"]);
        ns_run(&w.ns, &["ip", "link", "set", "lo", "up"]);
        ns_run(
            &w.ns,
            &["ip", "addr", "add", &format!("{}/24", w.v4), "dev", &wl_if],
        );
        ns_run(
            &w.ns,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/64", w.v6),
                "dev",
                &wl_if,
                "nodad",
            ],
        );
        ns_run(&w.ns, &["ip", "link", "set", &wl_if, "up"]);
        ns_run(
            &w.ns,
            &[
                "ip",
                "route",
                "add",
                "default",
                "via",
                &format!("198.19.{n}.1"),
            ],
        );
        ns_run(
            &w.ns,
            &[
                "ip",
                "-6",
                "route",
                "add",
                "default",
                "via",
                &format!("2001:db8:10{n}::1"),
            ],
        );
        ns_run(
            &a,
            &[
                "ip",
                "route",
                "add",
                &format!("198.19.{n}.0/24"),
                "via",
                "198.18.0.2",
            ],
        );
        ns_run(
            &a,
            &[
                "ip",
                "-6",
                "route",
                "add",
                &format!("2001:db8:10{n}::/64"),
                "via",
                "2001:db8::2",
            ],
        );
    }
    ns_run(&b, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    ns_run(&b, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    // Everything reaches everything before any policy (and the neighbour caches are warm).
    // The sandbox's own IPv6 addresses may still be tentative (DAD) for a moment.
    for w in &t.w {
        for dst in [IpAddr::from(w.v4), w.v6.into()] {
            let mut tries = 0;
            while !ping(&a, dst) {
                tries += 1;
                assert!(tries < 10, "outside -> {dst} before any policy");
            }
        }
    }
    t
}

/// One echo request from namespace `ns`; true when answered.
fn ping(ns: &str, dst: IpAddr) -> bool {
    let dst = dst.to_string();
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c1", "-W1", "-q", &dst])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let fd = netns::open(ns).unwrap_or_else(|e| panic!("opening netns {ns}: {e}"));
    netns::run_in(fd.as_fd(), f)
}

/// A TCP echo server in `ns` on `port` (all addresses, both families), serving until the
/// test ends.
fn echo_server(ns: &str, port: u16) {
    let listener = in_ns(ns, move || TcpListener::bind(("::", port)).expect("bind"));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// Connects from `ns` to `dst` and exchanges one message; true when it works.
fn tcp_ok(ns: &str, dst: SocketAddr) -> bool {
    in_ns(ns, move || {
        let Ok(mut s) = TcpStream::connect_timeout(&dst, BLOCKED_AFTER) else {
            return false;
        };
        s.set_read_timeout(Some(BLOCKED_AFTER)).ok();
        let mut buf = [0u8; 5];
        s.write_all(b"hello").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"hello"
    })
}

/// Sends one UDP datagram from `ns` to `dst` and waits for it at `rx` (bound in the
/// destination namespace); true when it arrives.
fn udp_ok(ns: &str, dst: SocketAddr, rx: &UdpSocket) -> bool {
    in_ns(ns, move || {
        let s = UdpSocket::bind(if dst.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).unwrap();
        s.send_to(b"ping", dst).unwrap();
    });
    rx.set_read_timeout(Some(BLOCKED_AFTER)).unwrap();
    let mut buf = [0u8; 16];
    rx.recv_from(&mut buf).is_ok()
}

fn udp_rx(ns: &str, port: u16) -> UdpSocket {
    in_ns(ns, move || UdpSocket::bind(("::", port)).expect("bind udp"))
}

fn conf(t: &Topo, body: &str) -> String {
    format!(
        "interface {} xdp=off\ninterface {} role=workload xdp=off labels=app:web,env:prod\n\
         interface {} role=workload xdp=off labels=app:db\n{body}",
        t.sb.veth_b, t.w[0].host_if, t.w[1].host_if
    )
}

fn load(t: &Topo, cfg: &ConfigFile) -> String {
    ok(weir_in(&t.sb, &["load", "--config", &cfg.arg()]))
}

fn apply(t: &Topo, cfg: &ConfigFile) -> String {
    ok(weir_in(&t.sb, &["apply", &cfg.arg()]))
}

fn stat(st: &Status, name: &str) -> u64 {
    st.policy_stats
        .iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, c)| c.packets)
}

fn rule(st: &Status, id: u32) -> u64 {
    st.rule_counters
        .iter()
        .find(|(r, _)| *r == id)
        .map_or(0, |(_, c)| c.packets)
}

fn v4(w: &Workload, port: u16) -> SocketAddr {
    SocketAddr::new(w.v4.into(), port)
}

fn v6(w: &Workload, port: u16) -> SocketAddr {
    SocketAddr::new(w.v6.into(), port)
}

// ---- allow, deny, conntrack, default deny, both families ----

#[test]
fn selected_workload_gets_default_deny_replies_pass_by_conntrack_and_others_stay_open() {
    let t = topo("pol");
    let (a, w1, w2) = (t.sb.ns_a.clone(), &t.w[0], &t.w[1]);
    for w in &t.w {
        echo_server(&w.ns, 80);
        echo_server(&w.ns, 81);
    }
    // web: in, TCP 80 from the outside networks and echo requests; out, only DNS. Replies to
    // accepted connections leave through the egress default deny by conntrack alone.
    let cfg = ConfigFile::new(
        &t.sb,
        &conf(
            &t,
            "policy web selector=\"app == 'web'\"\n\
             rule web ingress allow proto=tcp dport=80 remote=198.18.0.0/24,2001:db8::/64\n\
             rule web ingress allow proto=icmp icmp-type=8\n\
             rule web ingress allow proto=icmpv6 icmp-type=128\n\
             rule web egress allow proto=udp dport=53\n",
        ),
    );
    load(&t, &cfg);
    for (dst80, dst81) in [(v4(w1, 80), v4(w1, 81)), (v6(w1, 80), v6(w1, 81))] {
        assert!(tcp_ok(&a, dst80), "{dst80}: allowed, replies by conntrack");
        assert!(!tcp_ok(&a, dst81), "{dst81}: default deny");
    }
    assert!(
        ping(&a, w1.v4.into()) && ping(&a, w1.v6.into()),
        "echo allowed in"
    );
    // Out of web: only DNS. A connection it opens is denied at its egress.
    assert!(!tcp_ok(&w1.ns, SocketAddr::new(ADDR_A4.into(), 22)));
    assert!(!ping(&w1.ns, ADDR_A4.into()));
    assert!(!ping(&w1.ns, ADDR_A6.into()));
    // db is selected by nothing: everything passes, both ways.
    for dst in [v4(w2, 80), v4(w2, 81), v6(w2, 81)] {
        assert!(tcp_ok(&a, dst), "{dst}: unselected endpoint");
    }
    assert!(ping(&w2.ns, ADDR_A4.into()));
    // web -> db: web's egress denies it before db sees it.
    assert!(!tcp_ok(&w1.ns, v4(w2, 80)));
    assert!(
        !tcp_ok(&w2.ns, v4(w1, 80)),
        "from db: web allows only the outside"
    );

    let st = status(&t.sb);
    assert!(st.conntrack_entries.unwrap_or(0) >= 4, "{st}");
    assert!(stat(&st, "denied-by-default") >= 6, "{st}");
    assert!(stat(&st, "established") > 0, "{st}");
    assert!(
        rule(&st, 0) > 0 && rule(&st, 1) > 0 && rule(&st, 2) > 0,
        "{st}"
    );
    // The pre-existing interface counters still count.
    assert!(packets(&st, &w1.host_if, "tc-egress") > 0);
}

// ---- sets, ranges, protocols, ICMP types, pass and order, audit ----

#[test]
fn sets_ranges_icmp_types_pass_across_ordered_policies_and_audit_that_only_counts() {
    let t = topo("pos");
    let (a, w1, w2) = (t.sb.ns_a.clone(), &t.w[0], &t.w[1]);
    for port in [1500, 2000] {
        echo_server(&w1.ns, port);
    }
    echo_server(&w2.ns, 80);
    let rx5000 = udp_rx(&w1.ns, 5000);
    let rx5001 = udp_rx(&w1.ns, 5001);
    // Rule ids are config indices: 0..=6 in file order.
    let cfg = ConfigFile::new(
        &t.sb,
        &conf(
            &t,
            "ipset outside 198.18.0.0/24 2001:db8::/64\n\
             policy first order=10 selector=\"app == 'web' && env != 'dev'\"\n\
             rule first ingress pass proto=tcp dport=1000-1999\n\
             rule first ingress deny proto=tcp dport=1500\n\
             rule first ingress deny proto=udp remote=!set:outside\n\
             policy second order=20 selector=\"app in {web, api}\"\n\
             rule second ingress allow proto=tcp dport=1000-1999 remote=set:outside\n\
             rule second ingress allow proto=udp dport=5000\n\
             rule second ingress allow proto=icmp icmp-type=8\n\
             policy trial order=30 selector=\"app == 'db'\" audit\n\
             rule trial ingress deny proto=tcp dport=80\n",
        ),
    );
    load(&t, &cfg);
    // The pass in `first` skips its deny of 1500: `second` allows the range.
    assert!(tcp_ok(&a, v4(w1, 1500)) && tcp_ok(&a, v6(w1, 1500)));
    assert!(!tcp_ok(&a, v4(w1, 2000)), "outside the range: default deny");
    // UDP: allowed to 5000 from the set, denied from outside it by `first`, 5001 by default.
    assert!(udp_ok(&a, v4(w1, 5000), &rx5000));
    assert!(udp_ok(&a, v6(w1, 5000), &rx5000));
    assert!(!udp_ok(&w2.ns, v4(w1, 5000), &rx5000), "not in set:outside");
    assert!(!udp_ok(&a, v4(w1, 5001), &rx5001));
    // ICMP: echo requests over IPv4 only (no ICMPv6 rule).
    assert!(ping(&a, w1.v4.into()));
    assert!(!ping(&a, w1.v6.into()));
    // db is selected by an audit policy only: its deny is counted, never enforced.
    assert!(tcp_ok(&a, v4(w2, 80)));
    assert!(tcp_ok(&a, v6(w2, 80)));

    let st = status(&t.sb);
    assert!(rule(&st, 0) == 0, "a pass decides nothing: {st}");
    assert!(
        rule(&st, 3) > 0 && rule(&st, 4) > 0 && rule(&st, 5) > 0,
        "{st}"
    );
    assert_eq!(rule(&st, 2), 1, "one datagram from w2: {st}");
    assert_eq!(rule(&st, 1), 0, "skipped by the pass: {st}");
    let counts = |p: u32| {
        st.policy_counts
            .iter()
            .find(|(i, _)| *i == p)
            .map(|(_, c)| *c)
    };
    assert_eq!(counts(0).map(|c| c.denied), Some(1), "{st}");
    assert_eq!(
        counts(2).map(|c| c.audited),
        Some(2),
        "two audited flows: {st}"
    );
    assert_eq!(stat(&st, "audit-would-deny"), 2, "{st}");
}

// ---- apply under a running connection; exact counters; iptables still counts ----

#[test]
fn a_policy_change_keeps_an_allowed_connection_and_counters_and_iptables_stay_exact() {
    let t = topo("poc");
    let (a, b, w1) = (t.sb.ns_a.clone(), t.sb.ns_b.clone(), &t.w[0]);
    echo_server(&w1.ns, 80);
    let rx = udp_rx(&w1.ns, 5000);
    // A counting-only iptables rule in the host namespace, made before weir is loaded.
    ns_run(
        &b,
        &["iptables", "-A", "FORWARD", "-p", "udp", "--dport", "5000"],
    );
    let first = ConfigFile::new(
        &t.sb,
        &conf(
            &t,
            "policy web selector=\"app == 'web'\"\n\
             rule web ingress allow proto=tcp dport=80\n\
             rule web ingress allow proto=udp dport=5000\n",
        ),
    );
    let out = load(&t, &first);
    assert!(out.contains("policy: bank 1 in force"), "{out}");
    // A connection opened under the first policy...
    let dst = v4(w1, 80);
    let mut conn = in_ns(&a, move || TcpStream::connect_timeout(&dst, BLOCKED_AFTER)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut echo = |msg: &[u8]| {
        conn.write_all(msg).unwrap();
        let mut buf = vec![0u8; msg.len()];
        conn.read_exact(&mut buf).unwrap();
        assert_eq!(buf, msg);
    };
    echo(b"before");
    // ...keeps working under a new policy that still allows it (and denies something else).
    let second = ConfigFile::new(
        &t.sb,
        &conf(
            &t,
            "policy web selector=\"app == 'web'\"\n\
             rule web ingress deny proto=tcp dport=81\n\
             rule web ingress allow proto=tcp dport=80\n\
             rule web ingress allow proto=udp dport=5000\n",
        ),
    );
    let out = apply(&t, &second);
    assert!(out.contains("policy: bank 0 in force"), "{out}");
    for i in 0..20 {
        echo(format!("after {i}").as_bytes());
    }
    // Applying the same config again writes nothing.
    let out = apply(&t, &second);
    assert!(!out.contains("policy:"), "{out}");
    drop(conn);

    // Exact counters: N datagrams of one flow, all counted against the rule that allowed it
    // (rule 2 of the second config), with their bytes as TC sees them (Ethernet included).
    const N: u64 = 25;
    in_ns(&a, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..N {
            s.send_to(
                b"ping",
                SocketAddr::new(Ipv4Addr::new(198, 19, 1, 2).into(), 5000),
            )
            .unwrap();
        }
    });
    rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 16];
    for _ in 0..N {
        rx.recv_from(&mut buf).expect("every datagram arrives");
    }
    let st = status(&t.sb);
    let c = st
        .rule_counters
        .iter()
        .find(|(r, _)| *r == 2)
        .map(|(_, c)| *c)
        .unwrap_or_default();
    assert_eq!((c.packets, c.bytes), (N, N * (14 + 20 + 8 + 4)), "{st}");
    // The iptables rule saw every one of them too: weir handed them on.
    let listing = ns_run(&b, &["iptables", "-L", "FORWARD", "-v", "-x", "-n"]);
    let counted: u64 = listing
        .lines()
        .find(|l| l.contains("dpt:5000"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counting rule in:\n{listing}"));
    assert_eq!(counted, N, "{listing}");
}

// ---- events ----

#[test]
fn weir_events_streams_log_and_deny_events_with_their_fields() {
    let t = topo("pev");
    let (a, w1) = (t.sb.ns_a.clone(), &t.w[0]);
    echo_server(&w1.ns, 80);
    let cfg = ConfigFile::new(
        &t.sb,
        &conf(
            &t,
            "policy web selector=\"app == 'web'\"\n\
             rule web ingress log proto=tcp dport=80\n\
             rule web ingress allow proto=tcp dport=80\n",
        ),
    );
    load(&t, &cfg);
    assert!(tcp_ok(&a, v4(w1, 80)));
    assert!(!tcp_ok(&a, v6(w1, 81)));
    // The ring keeps what the program wrote until a reader takes it.
    let pin = t.sb.pin_dir.to_string_lossy().into_owned();
    let out = std::process::Command::new(weir_exe())
        .args(["--pin-dir", &pin, "events", "--json", "--count", "2"])
        .output()
        .expect("weir events");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let index = with_nl_ifindex(&t, &w1.host_if);
    assert!(
        lines[0].contains("\"verdict\":\"log\"")
            && lines[0].contains("\"direction\":\"ingress\"")
            && lines[0].contains(
                "\"rule\":0,\"rule_name\":\"web#1\",\"policy\":0,\"policy_name\":\"web\",\"proto\":6"
            )
            && lines[0].contains(&format!("\"ifindex\":{index},"))
            && lines[0].contains("\"src\":\"198.18.0.1\",\"dst\":\"198.19.1.2\"")
            && lines[0].contains("\"dport\":80"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("\"verdict\":\"deny\"")
            && lines[1].contains("\"rule\":null,\"rule_name\":null,\"policy\":null")
            && lines[1].contains("\"src\":\"2001:db8::1\",\"dst\":\"2001:db8:101::2\"")
            && lines[1].contains("\"dport\":81"),
        "{}",
        lines[1]
    );
    let st = status(&t.sb);
    assert!(stat(&st, "events") >= 2, "{st}");
    // Status names the rules and policies it counts: web's second rule allowed the flow.
    assert_eq!(st.rule_name(1), "web#2");
    assert_eq!(st.policy_name(0), "web");
    assert!(st.to_string().contains("rule web#2"), "{st}");
}

fn with_nl_ifindex(t: &Topo, name: &str) -> u32 {
    let name = name.to_owned();
    t.sb.in_b(move || {
        weir::sys::netlink::Netlink::open()
            .expect("netlink")
            .link_index(&name)
            .expect("link_index")
            .expect("interface exists")
    })
    .expect("netns b")
}

// ---- host endpoints: failsafes before policy ----

#[test]
fn a_host_endpoint_policy_cannot_lock_out_a_failsafe_port() {
    let t = topo("pfs");
    let (a, b) = (t.sb.ns_a.clone(), t.sb.ns_b.clone());
    echo_server(&b, 22);
    echo_server(&b, 23);
    let cfg = ConfigFile::new(
        &t.sb,
        &format!(
            "interface {} xdp=off labels=kind:host\n\
             policy lockdown selector=\"has(kind)\"\n\
             rule lockdown ingress deny proto=tcp\n",
            t.sb.veth_b
        ),
    );
    load(&t, &cfg);
    let host = |p| SocketAddr::new(Ipv4Addr::new(198, 18, 0, 2).into(), p);
    assert!(tcp_ok(&a, host(22)), "tcp/22 is a default failsafe");
    assert!(!tcp_ok(&a, host(23)), "tcp/23 is denied");
    let st = status(&t.sb);
    assert!(stat(&st, "failsafe") >= 1, "{st}");
}

// ---- `weir set`: a set's members changed in place, the config reverting them ----

#[test]
fn weir_set_changes_members_in_place_and_apply_puts_the_file_back() {
    let t = topo("pst");
    let (a, w1, w2) = (t.sb.ns_a.clone(), &t.w[0], &t.w[1]);
    echo_server(&w1.ns, 80);
    // S holds db's networks only: the outside (198.18.0.1, 2001:db8::1) is not in it.
    let cfg = ConfigFile::new(
        &t.sb,
        &conf(
            &t,
            "ipset S 198.19.2.0/24 2001:db8:102::/64\n\
             policy web selector=\"app == 'web'\"\n\
             rule web ingress allow proto=tcp dport=80 remote=set:S\n",
        ),
    );
    load(&t, &cfg);
    assert!(tcp_ok(&w2.ns, v4(w1, 80)), "db is in S");
    assert!(
        !tcp_ok(&a, v4(w1, 80)) && !tcp_ok(&a, v6(w1, 80)),
        "outside S"
    );

    let out = ok(weir_in(
        &t.sb,
        &["set", "add", "S", "198.18.0.1/32", "2001:db8::1"],
    ));
    assert!(out.contains("set 'S': 2 member(s) added"), "{out}");
    assert!(tcp_ok(&a, v4(w1, 80)), "added: allowed");
    assert!(tcp_ok(&a, v6(w1, 80)), "added (IPv6): allowed");
    assert!(tcp_ok(&w2.ns, v4(w1, 80)), "the file's members still match");
    // Adding a member again changes nothing.
    let out = ok(weir_in(&t.sb, &["set", "add", "S", "198.18.0.1"]));
    assert!(
        out.contains("0 member(s) added") && out.contains("1 already"),
        "{out}"
    );

    // A connection established while allowed outlives the removal (conntrack); new ones
    // are denied.
    let established = in_ns(&a, {
        let dst = v4(w1, 80);
        move || TcpStream::connect_timeout(&dst, BLOCKED_AFTER).expect("connect while allowed")
    });
    ok(weir_in(&t.sb, &["set", "del", "S", "198.18.0.1/32"]));
    assert!(!tcp_ok(&a, v4(w1, 80)), "removed: new flows denied");
    assert!(tcp_ok(&a, v6(w1, 80)), "the IPv6 member stays");
    let mut s = established;
    s.set_read_timeout(Some(BLOCKED_AFTER)).unwrap();
    let mut buf = [0u8; 3];
    assert!(
        s.write_all(b"est").is_ok() && s.read_exact(&mut buf).is_ok(),
        "an established flow is not re-evaluated"
    );

    // Errors name the problem and change nothing.
    let o = weir_in(&t.sb, &["set", "add", "nope", "10.0.0.1"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("set 'nope' is not in the policy in force; sets: S"),
        "{}",
        text(&o)
    );
    let o = weir_in(&t.sb, &["set", "del", "S", "198.18.0.1"]);
    assert!(!o.status.success() && text(&o).contains("is not a member of set 'S'"));
    let o = weir_in(&t.sb, &["set", "add", "S", "198.18.0.1/8"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("argument 3 '198.18.0.1/8'"),
        "{}",
        text(&o)
    );
    assert!(tcp_ok(&a, v6(w1, 80)), "unchanged by the failures");

    // The config stays the truth: an apply of the file puts its members back.
    apply(&t, &cfg);
    assert!(!tcp_ok(&a, v6(w1, 80)), "the file's members are back");
    assert!(tcp_ok(&w2.ns, v4(w1, 80)));
    // And `weir set` works on the bank the apply switched to.
    ok(weir_in(&t.sb, &["set", "add", "S", "198.18.0.0/24"]));
    assert!(tcp_ok(&a, v4(w1, 80)), "added after the apply");
}
