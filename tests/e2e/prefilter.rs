//! The XDP prefilter with real traffic: `weir load` / `weir apply` / `weir unload` on the host
//! namespace's veth (XDP attached natively), and packets sent from the client namespace through
//! the kernel's real receive path. The client has two addresses per family, one of which gets
//! denied, so every "blocked" has an "allowed" next to it on the same link.
//! (Verdicts on hand-built frames through BPF_PROG_TEST_RUN are in `prefilter_prog.rs`.)
//! Sockets bound to a chosen source (TCP, raw ICMP, AF_PACKET) come from nix's safe socket API:
//! the `socket` and `net` features, a dev-dependency of the weir package.

use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, UdpSocket,
};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    self as sock, sockopt, AddressFamily, LinkAddr, MsgFlags, SockFlag, SockProtocol, SockType,
    SockaddrIn, SockaddrIn6, SockaddrStorage,
};
use nix::sys::time::TimeVal;
use weir::sandbox::{Sandbox, ADDR_A4, ADDR_A6, ADDR_B4, ADDR_B6};
use weir::status::Status;
use weir::sys::netlink::Netlink;

use crate::common::*;

/// The client's first addresses (made by the sandbox): the ones the tests deny.
const DENIED4: Ipv4Addr = ADDR_A4;
const DENIED6: Ipv6Addr = ADDR_A6;
/// The client's second addresses (added by [`setup`]): never denied.
const ALLOWED4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 5);
const ALLOWED6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5);

/// How long a connect or an echo request may take before it counts as blocked. Blocked packets
/// are dropped silently, so "blocked" is always a timeout; an allowed one answers in
/// microseconds on a veth.
const BLOCKED_AFTER: Duration = Duration::from_secs(1);

// ---- sandbox set-up and tear-down ----

/// A sandbox whose client has a second address per family and whose neighbour entries are
/// resolved for good in both directions, before anything is denied.
fn setup(tag: &str) -> Sandbox {
    let sb = sandbox(tag);
    let va = sb.veth_a.clone();
    sb.in_a(move || {
        let mut nl = Netlink::open().expect("netlink");
        let idx = nl.link_index(&va).expect("link_index").expect("veth_a");
        nl.addr_add(idx, ALLOWED4.into(), 24)
            .expect("add 198.18.0.5/24");
        nl.addr_add(idx, ALLOWED6.into(), 64)
            .expect("add 2001:db8::5/64");
    })
    .expect("netns a");
    pin_neighbours(&sb);
    // Both client addresses work before anything is denied.
    for (src, dst) in [
        (IpAddr::from(DENIED4), IpAddr::from(ADDR_B4)),
        (ALLOWED4.into(), ADDR_B4.into()),
        (DENIED6.into(), ADDR_B6.into()),
        (ALLOWED6.into(), ADDR_B6.into()),
    ] {
        assert!(ping(&sb, src, dst), "{src} -> {dst} before any deny");
    }
    sb
}

/// Neighbour discovery must be done BEFORE a deny list is loaded: the denied host's own
/// neighbour solicitations and advertisements come from the denied address and are dropped too
/// (the prefilter judges ICMPv6 by source address like anything else), so the host could no
/// longer resolve the client, nor the client the host, once an entry expires. A warm-up by
/// traffic only lasts the REACHABLE time (15-45 s, then a probe that the deny list drops), so
/// the resolved entries are made permanent. ARP is not IP and always passes the prefilter; the
/// IPv4 entries are pinned as well so that no resolution races with the counted traffic.
fn pin_neighbours(sb: &Sandbox) {
    let mac_a = mac(&sb.ns_a, &sb.veth_a);
    let mac_b = mac(&sb.ns_b, &sb.veth_b);
    let permanent = |ns: &str, addr: String, mac: &str, dev: &str| {
        let cmd = format!("neigh replace {addr} lladdr {mac} dev {dev} nud permanent");
        ip(ns, &cmd.split(' ').collect::<Vec<_>>());
    };
    for b in [ADDR_B4.to_string(), ADDR_B6.to_string()] {
        permanent(&sb.ns_a, b, &mac_b, &sb.veth_a);
    }
    for a in [DENIED4.to_string(), ALLOWED4.to_string()] {
        permanent(&sb.ns_b, a, &mac_a, &sb.veth_b);
    }
    for a in [DENIED6.to_string(), ALLOWED6.to_string()] {
        permanent(&sb.ns_b, a, &mac_a, &sb.veth_b);
    }
}

/// Runs `ip -n NS ARGS...` (iproute2) and returns its stdout.
fn ip(ns: &str, args: &[&str]) -> String {
    let o = Command::new("ip")
        .arg("-n")
        .arg(ns)
        .args(args)
        .output()
        .expect("running ip (iproute2 must be installed)");
    assert!(
        o.status.success(),
        "ip -n {ns} {}: {}",
        args.join(" "),
        text(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The MAC address of `dev` in namespace `ns`, as `ip link` prints it.
fn mac(ns: &str, dev: &str) -> String {
    let out = ip(ns, &["-o", "link", "show", "dev", dev]);
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC address for {dev} in: {out}"))
        .to_owned()
}

fn mac_bytes(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).expect("MAC octet"))
        .collect();
    v.try_into().expect("6 octets")
}

/// The config for the sandbox's host interface with `body` appended.
fn conf(sb: &Sandbox, body: &str) -> String {
    format!("interface {} xdp=native tc=on\n{body}", sb.veth_b)
}

fn load(sb: &Sandbox, cfg: &ConfigFile) -> String {
    ok(weir_in(sb, &["load", "--config", &cfg.arg()]))
}

fn apply(sb: &Sandbox, cfg: &ConfigFile) -> String {
    ok(weir_in(sb, &["apply", &cfg.arg()]))
}

/// `weir unload`, then nothing of weir may be left for this sandbox.
fn finish(sb: &Sandbox) {
    ok(weir_in(sb, &["unload"]));
    assert_eq!(residue(sb), Vec::<String>::new());
}

// ---- status ----

/// Drops counted against the deny entry `cidr` (None when the entry is not in the map).
fn hits(st: &Status, cidr: &str) -> Option<u64> {
    st.deny_hits
        .iter()
        .find(|(c, _)| c == cidr)
        .map(|&(_, h)| h)
}

/// Entries in a pinned map (for hash/LPM maps: counted by walking the keys).
fn entries(st: &Status, map: &str) -> u32 {
    st.maps
        .iter()
        .find(|m| m.name == map)
        .unwrap_or_else(|| panic!("map {map} missing from status:\n{st}"))
        .entries
        .unwrap_or_else(|| panic!("map {map} has no countable entries"))
}

/// The deny entries, sorted.
fn deny_list(st: &Status) -> Vec<String> {
    let mut v: Vec<String> = st.deny_hits.iter().map(|(c, _)| c.clone()).collect();
    v.sort();
    v
}

/// (link id, program id) of the XDP attachment on the host veth.
fn xdp_ids(sb: &Sandbox, st: &Status) -> (Option<u32>, u32) {
    let pin = format!("xdp@{}", sb.veth_b);
    let a = st
        .attachments
        .iter()
        .find(|a| a.pin == pin)
        .unwrap_or_else(|| panic!("{pin} missing from status:\n{st}"));
    (a.link_id, a.prog_id)
}

/// Prefilter packet counters by reason: [passed, dropped, failsafe, unparsed].
fn verdicts(st: &Status) -> [u64; 4] {
    ["passed", "dropped", "failsafe", "unparsed"].map(|r| prefilter(st, r))
}

// ---- traffic ----

/// A TCP listener on `port` of every address of the host namespace (IPv4 and IPv6). Nobody
/// accepts: the kernel completes handshakes into the backlog, which is all a connect needs.
fn listen_b(sb: &Sandbox, port: u16) -> TcpListener {
    sb.in_b(|| TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)))
        .expect("netns b")
        .unwrap_or_else(|e| panic!("listening on [::]:{port} in the host namespace: {e}"))
}

fn sockaddr(addr: SocketAddr) -> SockaddrStorage {
    SockaddrStorage::from(addr)
}

/// A TCP connect from `src` (in the client namespace) to `dst`, giving up after `timeout`: Ok
/// when the handshake completed, `EINPROGRESS` when it timed out (what Linux returns when
/// SO_SNDTIMEO expires during a blocking connect), or another errno.
fn tcp_connect(sb: &Sandbox, src: IpAddr, dst: SocketAddr, timeout: Duration) -> Result<(), Errno> {
    sb.in_a(move || {
        let family = if dst.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        let fd = sock::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
            .expect("socket(SOCK_STREAM)");
        sock::setsockopt(&fd, sockopt::SendTimeout, &timeval(timeout)).expect("SO_SNDTIMEO");
        sock::bind(fd.as_raw_fd(), &sockaddr(SocketAddr::new(src, 0)))
            .unwrap_or_else(|e| panic!("binding a TCP socket to {src}: {e}"));
        sock::connect(fd.as_raw_fd(), &sockaddr(dst))
    })
    .expect("netns a")
}

/// True when a TCP connect from `src` to `dst` completes; false when it times out after
/// [`BLOCKED_AFTER`].
fn tcp_reaches(sb: &Sandbox, src: impl Into<IpAddr>, dst: SocketAddr) -> bool {
    tcp_reaches_within(sb, src, dst, BLOCKED_AFTER)
}

fn tcp_reaches_within(
    sb: &Sandbox,
    src: impl Into<IpAddr>,
    dst: SocketAddr,
    timeout: Duration,
) -> bool {
    let src = src.into();
    match tcp_connect(sb, src, dst, timeout) {
        Ok(()) => true,
        // A timeout, or (EHOSTUNREACH) the client could not resolve the host's address.
        Err(Errno::EINPROGRESS | Errno::ETIMEDOUT | Errno::EHOSTUNREACH) => false,
        Err(e) => panic!("TCP connect {src} -> {dst}: {e} (expected success or a timeout)"),
    }
}

fn timeval(d: Duration) -> TimeVal {
    TimeVal::new(d.as_secs() as _, d.subsec_micros() as _)
}

/// The Internet checksum of the concatenated `parts`.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut bytes = parts.concat();
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Echo identifier of this test process, and a sequence number per request.
fn echo_id() -> u16 {
    std::process::id() as u16
}

fn next_seq() -> u16 {
    static SEQ: AtomicU16 = AtomicU16::new(1);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// An ICMP (`kind` 8) or ICMPv6 (`kind` 128) echo request; the checksum covers `pseudo` (the
/// IPv6 pseudo-header, empty for ICMP) and the message.
fn echo_request(kind: u8, seq: u16, pseudo: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0];
    m.extend(echo_id().to_be_bytes());
    m.extend(seq.to_be_bytes());
    m.extend(b"weir prefilter e2e");
    let c = checksum(&[pseudo, &m]);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// A raw ICMP or ICMPv6 socket in the client namespace, bound to one source address. Only
/// incoming ICMP reaches it (echo replies among them).
struct Icmp {
    fd: OwnedFd,
    v4: bool,
}

impl Icmp {
    fn open(sb: &Sandbox, src: IpAddr) -> Self {
        sb.in_a(move || {
            let (family, proto) = match src {
                IpAddr::V4(_) => (AddressFamily::Inet, SockProtocol::Icmp),
                IpAddr::V6(_) => (AddressFamily::Inet6, SockProtocol::IcmpV6),
            };
            let fd = sock::socket(family, SockType::Raw, SockFlag::SOCK_CLOEXEC, proto)
                .expect("raw ICMP socket");
            sock::bind(fd.as_raw_fd(), &sockaddr(SocketAddr::new(src, 0)))
                .unwrap_or_else(|e| panic!("binding a raw ICMP socket to {src}: {e}"));
            sock::setsockopt(
                &fd,
                sockopt::ReceiveTimeout,
                &timeval(Duration::from_millis(100)),
            )
            .expect("SO_RCVTIMEO");
            Icmp {
                fd,
                v4: src.is_ipv4(),
            }
        })
        .expect("netns a")
    }

    /// Sends an echo request to `dst`; returns its sequence number. For ICMPv6 the kernel fills
    /// in the checksum of a raw socket's message (it needs the pseudo-header), for ICMP we do.
    fn send_echo(&self, dst: IpAddr) -> u16 {
        let seq = next_seq();
        let (msg, to) = match dst {
            IpAddr::V4(d) => (
                echo_request(8, seq, &[]),
                sockaddr(SocketAddrV4::new(d, 0).into()),
            ),
            IpAddr::V6(d) => (
                echo_request(128, seq, &[]),
                sockaddr(SocketAddrV6::new(d, 0, 0, 0).into()),
            ),
        };
        sock::sendto(self.fd.as_raw_fd(), &msg, &to, MsgFlags::empty())
            .unwrap_or_else(|e| panic!("sending an echo request to {dst}: {e}"));
        seq
    }

    /// Waits up to `timeout` for the echo reply `seq` from `from`.
    fn reply(&self, from: IpAddr, seq: u16, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            let (msg, sender): (&[u8], Option<IpAddr>) = if self.v4 {
                match sock::recvfrom::<SockaddrIn>(self.fd.as_raw_fd(), &mut buf) {
                    // A raw IPv4 socket receives the IP header too.
                    Ok((n, addr)) => {
                        let ihl = usize::from(buf[0] & 0xf) * 4;
                        (&buf[ihl.min(n)..n], addr.map(|a| a.ip().into()))
                    }
                    Err(Errno::EAGAIN | Errno::EINTR) => continue,
                    Err(e) => panic!("recvfrom on the ICMP socket: {e}"),
                }
            } else {
                match sock::recvfrom::<SockaddrIn6>(self.fd.as_raw_fd(), &mut buf) {
                    Ok((n, addr)) => (&buf[..n], addr.map(|a| a.ip().into())),
                    Err(Errno::EAGAIN | Errno::EINTR) => continue,
                    Err(e) => panic!("recvfrom on the ICMPv6 socket: {e}"),
                }
            };
            let reply_type = if self.v4 { 0 } else { 129 };
            if sender == Some(from)
                && msg.len() >= 8
                && msg[0] == reply_type
                && msg[4..6] == echo_id().to_be_bytes()
                && msg[6..8] == seq.to_be_bytes()
            {
                return true;
            }
        }
        false
    }
}

/// True when an ICMP / ICMPv6 echo request from `src` to `dst` is answered within
/// [`BLOCKED_AFTER`].
fn ping(sb: &Sandbox, src: IpAddr, dst: IpAddr) -> bool {
    let icmp = Icmp::open(sb, src);
    let seq = icmp.send_echo(dst);
    icmp.reply(dst, seq, BLOCKED_AFTER)
}

/// Sends `n` UDP datagrams from `src` (client namespace) to `dst`.
fn udp_from(sb: &Sandbox, src: IpAddr, dst: SocketAddr, n: u32) {
    sb.in_a(move || {
        let s = UdpSocket::bind(SocketAddr::new(src, 0))
            .unwrap_or_else(|e| panic!("binding UDP to {src}: {e}"));
        for i in 0..n {
            s.send_to(format!("datagram {i}").as_bytes(), dst)
                .unwrap_or_else(|e| panic!("send_to {dst} from {src}: {e}"));
        }
    })
    .expect("netns a");
}

/// A deny-list file with a unique name, removed on drop.
struct TempFile {
    path: PathBuf,
}

impl TempFile {
    fn new(sb: &Sandbox, what: &str, body: &[u8]) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("{}-{what}-{n}.txt", sb.ns_b));
        std::fs::write(&path, body).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        Self { path }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

// ---- 1. denied source ----

#[test]
fn a_denied_source_loses_tcp_and_icmp_while_its_other_address_keeps_them() {
    let sb = setup("pfd");
    let _listener = listen_b(&sb, 8080);
    let cfg = ConfigFile::new(
        &sb,
        &conf(&sb, &format!("prefilter deny {DENIED4} {DENIED6}\n")),
    );
    load(&sb, &cfg);
    for (denied, allowed, host) in [
        (
            IpAddr::from(DENIED4),
            IpAddr::from(ALLOWED4),
            IpAddr::from(ADDR_B4),
        ),
        (DENIED6.into(), ALLOWED6.into(), ADDR_B6.into()),
    ] {
        let port = SocketAddr::new(host, 8080);
        assert!(
            !tcp_reaches(&sb, denied, port),
            "TCP {denied} -> {port} must be dropped"
        );
        assert!(
            tcp_reaches(&sb, allowed, port),
            "TCP {allowed} -> {port} must pass"
        );
        assert!(
            !ping(&sb, denied, host),
            "echo {denied} -> {host} must be dropped"
        );
        assert!(
            ping(&sb, allowed, host),
            "echo {allowed} -> {host} must pass"
        );
    }
    let st = status(&sb);
    // At least the SYN and the echo request of each family (SYN retransmits may add some).
    for cidr in ["198.18.0.1/32", "2001:db8::1/128"] {
        assert!(hits(&st, cidr).unwrap_or(0) >= 2, "{cidr}:\n{st}");
    }
    assert_eq!(prefilter(&st, "failsafe"), 0, "{st}");
    finish(&sb);
}

// ---- 2. failsafe ports ----

#[test]
fn a_failsafe_port_stays_reachable_from_a_denied_source_until_failsafe_in_none() {
    let sb = setup("pff");
    let (_ssh, _other) = (listen_b(&sb, 22), listen_b(&sb, 2222));
    let deny = format!("prefilter deny {DENIED4} {DENIED6}\n");
    // No `failsafe in` statement: the defaults, tcp/22 and udp/68.
    let defaults = ConfigFile::new(&sb, &conf(&sb, &deny));
    load(&sb, &defaults);
    let hosts = [IpAddr::from(ADDR_B4), IpAddr::from(ADDR_B6)];
    let denied = [IpAddr::from(DENIED4), IpAddr::from(DENIED6)];
    let before = status(&sb);
    for (src, host) in denied.into_iter().zip(hosts) {
        assert!(
            tcp_reaches(&sb, src, SocketAddr::new(host, 22)),
            "tcp/22 is a default failsafe: {src} -> {host} must connect"
        );
    }
    let after = status(&sb);
    // Each handshake is at least a SYN and an ACK through the failsafe, and a packet that
    // passes through a failsafe is no hit of the deny entry (hits count drops).
    assert!(
        prefilter(&after, "failsafe") - prefilter(&before, "failsafe") >= 4,
        "{after}"
    );
    assert_eq!(
        verdicts(&after)[1],
        verdicts(&before)[1],
        "nothing dropped\n{after}"
    );
    for cidr in ["198.18.0.1/32", "2001:db8::1/128"] {
        assert_eq!(hits(&after, cidr), Some(0), "{cidr}\n{after}");
    }
    for (src, host) in denied.into_iter().zip(hosts) {
        assert!(
            !tcp_reaches(&sb, src, SocketAddr::new(host, 2222)),
            "tcp/2222 is no failsafe: {src} -> {host} must be dropped"
        );
    }
    let st = status(&sb);
    for cidr in ["198.18.0.1/32", "2001:db8::1/128"] {
        assert!(hits(&st, cidr).unwrap_or(0) >= 1, "{cidr}: the SYN\n{st}");
    }

    let none = ConfigFile::new(&sb, &conf(&sb, &format!("{deny}failsafe in none\n")));
    let out = apply(&sb, &none);
    assert!(out.starts_with("prefilter:"), "{out}");
    for (src, host) in denied.into_iter().zip(hosts) {
        assert!(
            !tcp_reaches(&sb, src, SocketAddr::new(host, 22)),
            "with `failsafe in none` tcp/22 from {src} must be dropped too"
        );
    }
    // And back: an explicit list that names tcp/2222 only.
    let only_2222 = ConfigFile::new(&sb, &conf(&sb, &format!("{deny}failsafe in tcp/2222\n")));
    apply(&sb, &only_2222);
    for (src, host) in denied.into_iter().zip(hosts) {
        assert!(tcp_reaches(&sb, src, SocketAddr::new(host, 2222)), "{src}");
        assert!(!tcp_reaches(&sb, src, SocketAddr::new(host, 22)), "{src}");
    }
    finish(&sb);
}

/// The failsafe exists "so that a wrong deny list cannot cut off the machine". Over IPv4 that
/// holds however cold the caches are: ARP is not IP and passes. Over IPv6, address resolution
/// is ICMPv6 (neighbour solicitations and advertisements) sent from the very address that is
/// denied, and the prefilter drops it like any portless packet of a denied source: neither
/// side can resolve the other, and the failsafe port is unreachable as soon as the neighbour
/// caches are cold (a new client, a reboot, or 15-45 s after the last confirmation).
#[test]
fn ipv6_failsafe_port_is_reachable_from_a_denied_source_with_cold_neighbour_caches() {
    // A plain sandbox: no neighbour entries resolved or pinned, nothing sent yet.
    let sb = sandbox("pfn");
    let _ssh = listen_b(&sb, 22);
    let cfg = ConfigFile::new(
        &sb,
        &conf(&sb, &format!("prefilter deny {DENIED4} {DENIED6}\n")),
    );
    load(&sb, &cfg);
    let patience = Duration::from_secs(5);
    assert!(
        tcp_reaches_within(&sb, DENIED4, (ADDR_B4, 22).into(), patience),
        "IPv4: tcp/22 from the denied {DENIED4}, ARP passes the prefilter"
    );
    let reached = tcp_reaches_within(&sb, DENIED6, (ADDR_B6, 22).into(), patience);
    let st = status(&sb);
    assert!(
        reached,
        "IPv6: tcp/22 (a default failsafe) from the denied {DENIED6} is unreachable: the \
         neighbour discovery of the denied address is dropped ({} drops counted against \
         2001:db8::1/128 although only tcp/22 was contacted)\n{st}",
        hits(&st, "2001:db8::1/128").unwrap_or(0)
    );
    finish(&sb);
}

// ---- 3. exact counters ----

#[test]
fn counters_match_the_traffic_exactly() {
    let sb = setup("pfc");
    let cfg = ConfigFile::new(
        &sb,
        &conf(&sb, &format!("prefilter deny {DENIED4} {DENIED6}\n")),
    );
    load(&sb, &cfg);
    let (n, m) = (37u32, 23u32);
    let st0 = status(&sb);
    let [passed0, dropped0, failsafe0, unparsed0] = verdicts(&st0);
    assert_eq!(hits(&st0, "198.18.0.1/32"), Some(0), "{st0}");
    assert_eq!(hits(&st0, "2001:db8::1/128"), Some(0), "{st0}");

    // UDP to a port nobody listens on and that is no failsafe. The denied datagrams vanish at
    // XDP; each allowed one passes and makes the host answer with a port-unreachable, which
    // leaves through veth_b and is not seen by its XDP hook.
    udp_from(&sb, DENIED4.into(), (ADDR_B4, 9).into(), n);
    udp_from(&sb, DENIED6.into(), (ADDR_B6, 9).into(), n);
    udp_from(&sb, ALLOWED4.into(), (ADDR_B4, 9).into(), m);
    udp_from(&sb, ALLOWED6.into(), (ADDR_B6, 9).into(), m);
    // veth hands frames to the XDP side through a NAPI ring: counting trails send() a little.
    eventually("the prefilter counted every datagram", || {
        let [p, d, ..] = verdicts(&status(&sb));
        d - dropped0 >= u64::from(2 * n) && p - passed0 >= u64::from(2 * m)
    });
    let st = status(&sb);
    let [passed, dropped, failsafe, unparsed] = verdicts(&st);
    // Exact where nothing else can come in: the only IP packets from the denied addresses are
    // ours (neighbours are resolved for good, so no NS/NA from them), ARP is not IP, and the
    // host's own replies are egress. Anything else the client sends (MLD, router
    // solicitations from its link-local address) passes, so `passed` is a lower bound.
    assert_eq!(dropped - dropped0, u64::from(2 * n), "dropped\n{st}");
    assert_eq!(hits(&st, "198.18.0.1/32"), Some(u64::from(n)), "{st}");
    assert_eq!(hits(&st, "2001:db8::1/128"), Some(u64::from(n)), "{st}");
    assert!(passed - passed0 >= u64::from(2 * m), "passed\n{st}");
    assert_eq!(failsafe, failsafe0, "{st}");
    assert_eq!(unparsed, unparsed0, "{st}");

    // Bytes: XDP sees whole frames. "datagram N" is 10 or 11 bytes; the counter's bytes are
    // exact for the dropped ones (Ethernet 14 + IPv4 20 / IPv6 40 + UDP 8 + payload).
    let payload: u64 = (0..n).map(|i| format!("datagram {i}").len() as u64).sum();
    let byte_delta = |r: &str| {
        let c = |s: &Status| {
            s.prefilter
                .iter()
                .find(|(x, _)| x == r)
                .map(|(_, c)| c.bytes)
                .unwrap_or(0)
        };
        c(&st) - c(&st0)
    };
    assert_eq!(
        byte_delta("dropped"),
        2 * payload + u64::from(n) * ((14 + 20 + 8) + (14 + 40 + 8)),
        "{st}"
    );
    finish(&sb);
}

// ---- 4. VLAN-tagged frames ----

/// A packet socket in the client namespace that sends hand-built Ethernet frames out of veth_a.
struct Injector {
    fd: OwnedFd,
    /// veth_a's link-layer address, as the kernel reported it for a frame of veth_a.
    to: LinkAddr,
    mac_a: [u8; 6],
    mac_b: [u8; 6],
}

impl Injector {
    fn open(sb: &Sandbox) -> Self {
        let mac_a = mac_bytes(&mac(&sb.ns_a, &sb.veth_a));
        let mac_b = mac_bytes(&mac(&sb.ns_b, &sb.veth_b));
        let va = sb.veth_a.clone();
        sb.in_a(move || {
            let idx = Netlink::open()
                .expect("netlink")
                .link_index(&va)
                .expect("link_index")
                .expect("veth_a");
            let fd = sock::socket(
                AddressFamily::Packet,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::EthAll,
            )
            .expect("AF_PACKET socket");
            sock::setsockopt(
                &fd,
                sockopt::ReceiveTimeout,
                &timeval(Duration::from_millis(100)),
            )
            .expect("SO_RCVTIMEO");
            // nix builds a `sockaddr_ll` only from one the kernel returned: send a datagram out
            // of veth_a and keep the address the packet socket reports for it.
            let udp = UdpSocket::bind((ALLOWED4, 0)).expect("bind");
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut buf = [0u8; 2048];
            loop {
                assert!(
                    Instant::now() < deadline,
                    "no frame of {va} on the packet socket"
                );
                udp.send_to(b"finding veth_a", (ADDR_B4, 9))
                    .expect("send_to");
                match sock::recvfrom::<LinkAddr>(fd.as_raw_fd(), &mut buf) {
                    Ok((_, Some(to))) if to.ifindex() == idx as usize => {
                        return Injector {
                            fd,
                            to,
                            mac_a,
                            mac_b,
                        }
                    }
                    Ok(_) | Err(Errno::EAGAIN | Errno::EINTR) => {}
                    Err(e) => panic!("recvfrom on the packet socket: {e}"),
                }
            }
        })
        .expect("netns a")
    }

    /// Sends `l3` to the host's MAC with the VLAN `tags` (TPID, VLAN id; outermost first) in
    /// the frame itself.
    fn send(&self, tags: &[(u16, u16)], ethertype: u16, l3: &[u8]) -> usize {
        let mut f = Vec::with_capacity(64 + l3.len());
        f.extend(self.mac_b);
        f.extend(self.mac_a);
        for (tpid, vid) in tags {
            f.extend(tpid.to_be_bytes());
            f.extend(vid.to_be_bytes());
        }
        f.extend(ethertype.to_be_bytes());
        f.extend(l3);
        sock::sendto(self.fd.as_raw_fd(), &f, &self.to, MsgFlags::empty())
            .expect("sendto on the packet socket");
        f.len()
    }
}

/// An IPv4 packet carrying an ICMP echo request, checksums right (the host answers it).
fn ipv4_echo(src: Ipv4Addr, dst: Ipv4Addr, seq: u16) -> Vec<u8> {
    let icmp = echo_request(8, seq, &[]);
    let mut p = vec![0x45, 0];
    p.extend(((20 + icmp.len()) as u16).to_be_bytes());
    p.extend([0, 0, 0x40, 0, 64, 1, 0, 0]); // id 0, DF, TTL 64, ICMP, checksum below
    p.extend(src.octets());
    p.extend(dst.octets());
    let c = checksum(&[&p]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend(icmp);
    p
}

/// An IPv6 packet carrying an ICMPv6 echo request, checksum right.
fn ipv6_echo(src: Ipv6Addr, dst: Ipv6Addr, seq: u16) -> Vec<u8> {
    let len = 8 + 18u32; // echo header + payload of `echo_request`
    let mut pseudo = Vec::new();
    pseudo.extend(src.octets());
    pseudo.extend(dst.octets());
    pseudo.extend(len.to_be_bytes());
    pseudo.extend([0, 0, 0, 58]);
    let icmp = echo_request(128, seq, &pseudo);
    assert_eq!(icmp.len() as u32, len);
    let mut p = vec![0x60, 0, 0, 0];
    p.extend((icmp.len() as u16).to_be_bytes());
    p.extend([58, 64]);
    p.extend(src.octets());
    p.extend(dst.octets());
    p.extend(icmp);
    p
}

const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;

/// VLAN tags of a frame, outermost first: (TPID, VLAN id).
type Tags = &'static [(u16, u16)];

/// VLAN-tagged frames on the host veth: the prefilter on the parent device judges them by the
/// inner IP source. This kernel has no 802.1Q support (`CONFIG_VLAN_8021Q` is not set: `ip link
/// add ... type vlan` fails with "Unknown device type", and bridge VLAN filtering depends on it
/// too), so no VLAN subinterface can exist on either end. The client therefore sends tagged
/// frames itself through an AF_PACKET socket on veth_a; they cross the veth and meet the XDP
/// program on veth_b's real receive path with the tags in the frame (a VLAN device would have
/// passed its tag out of band, in the skb, over veth's VLAN offload; a packet socket does not).
/// The host, lacking VLAN devices, discards a frame with a VLAN id after XDP has passed it, so
/// for those only the XDP verdict is visible; priority-tagged frames (VLAN id 0, single and
/// stacked) are untagged by the core receive path and answered, so they show the whole way.
#[test]
fn vlan_and_qinq_tagged_frames_are_judged_on_the_parent_device() {
    let sb = setup("pfv");
    let cfg = ConfigFile::new(
        &sb,
        &conf(&sb, &format!("prefilter deny {DENIED4} {DENIED6}\n")),
    );
    load(&sb, &cfg);
    let inj = Injector::open(&sb);
    let replies = [
        DENIED4.into(),
        ALLOWED4.into(),
        DENIED6.into(),
        ALLOWED6.into(),
    ]
    .map(|a: IpAddr| (a, Icmp::open(&sb, a)));
    let cases: [(&str, Tags, bool); 5] = [
        ("802.1Q VLAN 10", &[(TPID_8021Q, 10)], false),
        (
            "802.1ad VLAN 20 + 802.1Q VLAN 30 (QinQ)",
            &[(TPID_8021AD, 20), (TPID_8021Q, 30)],
            false,
        ),
        (
            "802.1Q VLAN 10 + 802.1Q VLAN 30",
            &[(TPID_8021Q, 10), (TPID_8021Q, 30)],
            false,
        ),
        ("802.1Q priority tag (VLAN 0)", &[(TPID_8021Q, 0)], true),
        (
            "802.1ad 0 + 802.1Q 0",
            &[(TPID_8021AD, 0), (TPID_8021Q, 0)],
            true,
        ),
    ];
    const K: u64 = 5;
    for (what, tags, answered) in cases {
        let st0 = status(&sb);
        let [passed0, dropped0, failsafe0, unparsed0] = verdicts(&st0);
        let bytes0 = st0
            .prefilter
            .iter()
            .find(|(r, _)| r == "dropped")
            .map_or(0, |(_, c)| c.bytes);
        let mut dropped_bytes = 0u64;
        let mut last_seq = [0u16; 4];
        for (i, (src, _)) in replies.iter().enumerate() {
            for _ in 0..K {
                let seq = next_seq();
                last_seq[i] = seq;
                let len = match *src {
                    IpAddr::V4(s) => inj.send(tags, 0x0800, &ipv4_echo(s, ADDR_B4, seq)),
                    IpAddr::V6(s) => inj.send(tags, 0x86dd, &ipv6_echo(s, ADDR_B6, seq)),
                };
                if *src == IpAddr::from(DENIED4) || *src == IpAddr::from(DENIED6) {
                    dropped_bytes += len as u64;
                }
            }
        }
        eventually(&format!("{what}: every frame counted"), || {
            let [p, d, ..] = verdicts(&status(&sb));
            d - dropped0 >= 2 * K && p - passed0 >= 2 * K
        });
        let st = status(&sb);
        let [passed, dropped, failsafe, unparsed] = verdicts(&st);
        assert_eq!(dropped - dropped0, 2 * K, "{what}: dropped\n{st}");
        assert!(passed - passed0 >= 2 * K, "{what}: passed\n{st}");
        assert_eq!((failsafe, unparsed), (failsafe0, unparsed0), "{what}\n{st}");
        for cidr in ["198.18.0.1/32", "2001:db8::1/128"] {
            assert_eq!(
                hits(&st, cidr).unwrap_or(0) - hits(&st0, cidr).unwrap_or(0),
                K,
                "{what}: {cidr}\n{st}"
            );
        }
        // The XDP program saw the tags in the frame: the dropped bytes include them.
        let bytes = st
            .prefilter
            .iter()
            .find(|(r, _)| r == "dropped")
            .map_or(0, |(_, c)| c.bytes);
        assert_eq!(bytes - bytes0, dropped_bytes, "{what}: dropped bytes\n{st}");
        for (i, (src, icmp)) in replies.iter().enumerate() {
            let host: IpAddr = if src.is_ipv4() {
                ADDR_B4.into()
            } else {
                ADDR_B6.into()
            };
            let denied = *src == IpAddr::from(DENIED4) || *src == IpAddr::from(DENIED6);
            if denied {
                assert!(
                    !icmp.reply(host, last_seq[i], BLOCKED_AFTER),
                    "{what}: the host answered the denied {src}"
                );
            } else if answered {
                assert!(
                    icmp.reply(host, last_seq[i], Duration::from_secs(5)),
                    "{what}: no echo reply to the allowed {src}"
                );
            }
        }
    }
    finish(&sb);
}

// ---- 5. runtime changes without reattaching ----

#[test]
fn apply_adds_and_removes_deny_entries_without_reattaching() {
    let sb = setup("pfa");
    let _listener = listen_b(&sb, 8080);
    let web4 = SocketAddr::from((ADDR_B4, 8080));
    let web6 = SocketAddr::from((ADDR_B6, 8080));
    let base = ConfigFile::new(&sb, &conf(&sb, "prefilter deny 192.0.2.0/24\n"));
    load(&sb, &base);
    let st0 = status(&sb);
    let ids0 = xdp_ids(&sb, &st0);
    assert!(
        ids0.0.is_some(),
        "XDP through a bpf_link on this kernel:\n{st0}"
    );
    assert!(tcp_reaches(&sb, DENIED4, web4) && tcp_reaches(&sb, DENIED6, web6));

    let deny = ConfigFile::new(
        &sb,
        &conf(
            &sb,
            &format!("prefilter deny 192.0.2.0/24 {DENIED4} {DENIED6}\n"),
        ),
    );
    let out = apply(&sb, &deny);
    assert!(
        out.starts_with("prefilter:")
            && out.contains("deny v4 +1 -0 (2 entries)")
            && out.contains("deny v6 +1 -0 (1 entries)"),
        "{out}"
    );
    assert!(!tcp_reaches(&sb, DENIED4, web4), "denied by apply");
    assert!(!tcp_reaches(&sb, DENIED6, web6), "denied by apply");
    assert!(!ping(&sb, DENIED4.into(), ADDR_B4.into()));
    assert!(tcp_reaches(&sb, ALLOWED4, web4) && tcp_reaches(&sb, ALLOWED6, web6));
    let out = apply(&sb, &deny);
    assert!(out.starts_with("nothing to do"), "{out}");
    let st1 = status(&sb);
    assert_eq!(st1.attachments, st0.attachments, "apply must not reattach");
    assert_eq!(xdp_ids(&sb, &st1), ids0);
    let hits_before = hits(&st1, "198.18.0.1/32").expect("entry");
    assert!(
        hits_before >= 2,
        "SYN and echo request were dropped:\n{st1}"
    );

    // Adding another entry keeps the hit counts of the entries that stay.
    let more = ConfigFile::new(
        &sb,
        &conf(
            &sb,
            &format!("prefilter deny 192.0.2.0/24 198.51.100.0/24 {DENIED4} {DENIED6}\n"),
        ),
    );
    let out = apply(&sb, &more);
    assert!(out.contains("deny v4 +1 -0 (3 entries)"), "{out}");
    assert_eq!(hits(&status(&sb), "198.18.0.1/32"), Some(hits_before));

    // `weir load` with a changed deny list converges the contents the same way, in place.
    let out = load(&sb, &deny);
    assert!(out.contains("deny v4 +0 -1 (2 entries)"), "{out}");
    assert_eq!(
        status(&sb).attachments,
        st0.attachments,
        "load reattached:\n{out}"
    );

    let out = apply(&sb, &base);
    assert!(
        out.contains("deny v4 +0 -1 (1 entries)") && out.contains("deny v6 +0 -1 (0 entries)"),
        "{out}"
    );
    assert!(tcp_reaches(&sb, DENIED4, web4), "restored by apply");
    assert!(tcp_reaches(&sb, DENIED6, web6), "restored by apply");
    assert!(ping(&sb, DENIED4.into(), ADDR_B4.into()));
    assert!(ping(&sb, DENIED6.into(), ADDR_B6.into()));
    let st2 = status(&sb);
    assert_eq!(st2.attachments, st0.attachments, "apply must not reattach");
    assert_eq!(deny_list(&st2), ["192.0.2.0/24"]);
    finish(&sb);
}

// ---- 6. a large deny file ----

/// `n` distinct random IPv4 networks (prefixes /8 to /32, host bits clear), none of which
/// overlaps 198.0.0.0/8 (the sandbox's 198.18.0.0/15 stays reachable).
fn random_networks(n: usize) -> Vec<String> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15
        ^ u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    let mut next = move || {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let r = next();
        let prefix = 8 + (r >> 40) as u32 % 25;
        let addr = (r as u32) & (u32::MAX << (32 - prefix));
        let first = addr >> 24;
        if first == 0 || first == 198 || first >= 224 {
            continue;
        }
        if seen.insert((addr, prefix)) {
            out.push(format!("{}/{prefix}", Ipv4Addr::from(addr)));
        }
    }
    out
}

#[test]
fn a_deny_file_of_100k_networks_loads_and_shrinks_back() {
    const N: usize = 100_000;
    let sb = setup("pfk");
    let _listener = listen_b(&sb, 8080);
    let web = SocketAddr::from((ADDR_B4, 8080));
    // Random prefixes of every length share few table chunks: room for ~3 per network.
    const CAPACITY: &str = "prefilter capacity v4=131072 v4-chunks=393216\n";
    let small = ConfigFile::new(
        &sb,
        &conf(&sb, &format!("{CAPACITY}prefilter deny {DENIED4}\n")),
    );
    load(&sb, &small);

    let mut body = String::from("; random networks for the weir prefilter e2e test\n");
    for net in random_networks(N) {
        body.push_str(&net);
        body.push('\n');
    }
    let file = TempFile::new(&sb, "deny", body.as_bytes());
    let big = ConfigFile::new(
        &sb,
        &conf(
            &sb,
            &format!(
                "{CAPACITY}prefilter deny {DENIED4}\nprefilter deny-file {}\n",
                file.path.display()
            ),
        ),
    );
    let t = Instant::now();
    let out = apply(&sb, &big);
    eprintln!("weir apply of {N} more networks took {:?}", t.elapsed());
    assert!(
        out.contains(&format!("deny v4 +{N} -0 ({} entries)", N + 1)),
        "{out}"
    );
    let st = status(&sb);
    assert_eq!(entries(&st, "prefilter_v4") as usize, N + 1);
    assert_eq!(st.deny_hits.len(), N + 1);
    assert!(
        !tcp_reaches(&sb, DENIED4, web),
        "still denied among 100k others"
    );
    assert!(
        tcp_reaches(&sb, ALLOWED4, web),
        "not covered by any of the 100k"
    );

    let t = Instant::now();
    let out = apply(&sb, &small);
    eprintln!("weir apply back to 1 network took {:?}", t.elapsed());
    assert!(
        out.contains(&format!("deny v4 +0 -{N} (1 entries)")),
        "{out}"
    );
    let st = status(&sb);
    assert_eq!(entries(&st, "prefilter_v4"), 1, "{st}");
    assert_eq!(deny_list(&st), ["198.18.0.1/32"]);

    // A fresh `weir load` of the big list fills the new maps the same way.
    ok(weir_in(&sb, &["unload"]));
    let t = Instant::now();
    load(&sb, &big);
    eprintln!("weir load with {} networks took {:?}", N + 1, t.elapsed());
    let st = status(&sb);
    assert_eq!(entries(&st, "prefilter_v4") as usize, N + 1);
    assert!(!tcp_reaches(&sb, DENIED4, web));
    assert!(tcp_reaches(&sb, ALLOWED4, web));
    drop(file);
    finish(&sb);
}

// ---- 7. capacity ----

#[test]
fn a_deny_list_over_capacity_is_refused_and_changes_nothing() {
    let sb = setup("pfq");
    let _listener = listen_b(&sb, 8080);
    let web = SocketAddr::from((ADDR_B4, 8080));
    let small = ConfigFile::new(
        &sb,
        &conf(
            &sb,
            &format!("prefilter capacity v4=16\nprefilter deny {DENIED4}\n"),
        ),
    );
    load(&sb, &small);
    let st0 = status(&sb);
    assert_eq!(
        st0.maps
            .iter()
            .find(|m| m.name == "prefilter_v4")
            .map(|m| m.max_entries),
        Some(16),
        "{st0}"
    );
    // 20 networks: 19 unrelated ones and the client's other address, but not the denied one.
    // Were any of it applied, the traffic below would show it.
    let mut twenty: Vec<String> = (0..19).map(|i| format!("10.{i}.0.0/16")).collect();
    twenty.push(ALLOWED4.to_string());
    let twenty = twenty.join(" ");
    let check_unchanged = |what: &str| {
        let st = status(&sb);
        assert_eq!(deny_list(&st), ["198.18.0.1/32"], "{what}\n{st}");
        assert_eq!(st.attachments, st0.attachments, "{what}");
        assert!(
            !tcp_reaches(&sb, DENIED4, web),
            "{what}: the old deny list stays in force"
        );
        assert!(
            tcp_reaches(&sb, ALLOWED4, web),
            "{what}: nothing new was denied"
        );
    };
    check_unchanged("before");

    // The config itself is over its capacity: refused before anything is opened.
    let over = ConfigFile::new(
        &sb,
        &conf(
            &sb,
            &format!("prefilter capacity v4=16\nprefilter deny {twenty}\n"),
        ),
    );
    for cmd in [
        vec!["load", "--config", &over.arg()],
        vec!["apply", &over.arg()],
    ] {
        let o = weir_in(&sb, &cmd);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{cmd:?}: {t}");
        assert!(
            t.contains(&over.arg()) && t.contains("IPv4 capacity (16") && t.contains("20"),
            "{cmd:?}: the message names the list, the capacity and the count: {t}"
        );
        check_unchanged(cmd[0]);
    }

    // A capacity that fits the list but not the pinned map (made with 16 entries): refused
    // by the map, which cannot grow.
    let bigger = ConfigFile::new(
        &sb,
        &conf(
            &sb,
            &format!("prefilter capacity v4=32\nprefilter deny {twenty}\n"),
        ),
    );
    for cmd in [
        vec!["load", "--config", &bigger.arg()],
        vec!["apply", &bigger.arg()],
    ] {
        let o = weir_in(&sb, &cmd);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{cmd:?}: {t}");
        assert!(
            t.contains("prefilter_v4")
                && t.contains("max_entries is 16 in the pinned map, 32 wanted"),
            "{cmd:?}: the message names the map and both capacities: {t}"
        );
        check_unchanged(cmd[0]);
    }
    finish(&sb);
}

// ---- 8. unload ----

#[test]
fn unload_restores_traffic_from_a_denied_source() {
    let sb = setup("pfu");
    let _listener = listen_b(&sb, 8080);
    let web4 = SocketAddr::from((ADDR_B4, 8080));
    let web6 = SocketAddr::from((ADDR_B6, 8080));
    let cfg = ConfigFile::new(
        &sb,
        &conf(&sb, &format!("prefilter deny {DENIED4} {DENIED6}\n")),
    );
    load(&sb, &cfg);
    assert!(!tcp_reaches(&sb, DENIED4, web4));
    assert!(!ping(&sb, DENIED6.into(), ADDR_B6.into()));
    let out = ok(weir_in(&sb, &["unload"]));
    assert!(out.contains("removed"), "{out}");
    assert_eq!(residue(&sb), Vec::<String>::new());
    assert!(tcp_reaches(&sb, DENIED4, web4), "restored by unload");
    assert!(tcp_reaches(&sb, DENIED6, web6), "restored by unload");
    assert!(ping(&sb, DENIED4.into(), ADDR_B4.into()));
    assert!(ping(&sb, DENIED6.into(), ADDR_B6.into()));
    let out = ok(weir_in(&sb, &["unload"]));
    assert!(out.contains("nothing to unload"), "{out}");
    assert_eq!(residue(&sb), Vec::<String>::new());
}
