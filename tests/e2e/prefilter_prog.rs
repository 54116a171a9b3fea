//! The XDP prefilter program (programs/xdp.o, `xdp_prefilter`) on the real kernel, through
//! `BPF_PROG_TEST_RUN`: hand-built frames in, verdicts and exact counters out. Each test loads its
//! own copy of the object with its own (unpinned) maps, so tests run in parallel and attach nothing.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, BorrowedFd};

use maps_schema::{
    decode_per_cpu, failsafe, prefilter_reason as reason, Codec, Counter, DenyEntry, LpmV4Key,
    LpmV6Key,
};
use weir::contents::Undo;
use weir::maps::MapSet;
use weir::object::LoadedProgram;
use weir::sys::bpf::{self, TestRun};

use crate::common::require_root;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

const XDP_O: &[u8] = include_bytes!("../../programs/xdp.o");
const UPGRADE_O: &[u8] = include_bytes!("../../programs/tests/upgrade.o");
const TC_O: &[u8] = include_bytes!("../../programs/tc.o");

/// IP protocol numbers / IPv6 next headers used below.
const TCP: u8 = 6;
const UDP: u8 = 17;
const SCTP: u8 = 132;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;
const HOPOPTS: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const ESP: u8 = 50;
const AH: u8 = 51;
const NONE: u8 = 59;
const DSTOPTS: u8 = 60;

const ETH_IP: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_ARP: u16 = 0x0806;
const QTAG: u16 = 0x8100;
const ADTAG: u16 = 0x88a8;

// ---- frame builders (checksums are not needed: the prefilter never reads them) ----

/// Ethernet with the given VLAN tag protocol ids (outermost first), then `ethertype`, `payload`.
fn ether(tags: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    for (i, tpid) in tags.iter().enumerate() {
        f.extend(tpid.to_be_bytes());
        f.extend((100 + i as u16).to_be_bytes()); // TCI: VLAN id
    }
    f.extend(ethertype.to_be_bytes());
    f.extend(payload);
    f
}

/// IPv4 header (+ `options`, a multiple of 4 bytes) and payload. `frag` is the raw
/// flags/fragment-offset field.
fn ipv4_opts(src: Ipv4Addr, proto: u8, frag: u16, options: &[u8], payload: &[u8]) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let hlen = 20 + options.len();
    let mut p = vec![0x40 | (hlen / 4) as u8, 0];
    p.extend(((hlen + payload.len()) as u16).to_be_bytes());
    p.extend(0x1234u16.to_be_bytes());
    p.extend(frag.to_be_bytes());
    p.extend([64, proto, 0, 0]);
    p.extend(src.octets());
    p.extend([192, 0, 2, 1]);
    p.extend(options);
    p.extend(payload);
    p
}

fn ipv4(src: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_opts(src, proto, 0, &[], payload)
}

/// IPv4 fragment: `offset` in 8-byte units, `more` = MF.
fn ipv4_frag(src: Ipv4Addr, proto: u8, offset: u16, more: bool, payload: &[u8]) -> Vec<u8> {
    ipv4_opts(
        src,
        proto,
        offset | if more { 0x2000 } else { 0 },
        &[],
        payload,
    )
}

fn ipv6(src: Ipv6Addr, nexthdr: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend((payload.len() as u16).to_be_bytes());
    p.extend([nexthdr, 64]);
    p.extend(src.octets());
    p.extend("2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    p.extend(payload);
    p
}

/// Hop-by-hop, routing or destination options header: `(len + 1) * 8` bytes.
fn ext6(nexthdr: u8, len: u8) -> Vec<u8> {
    let mut h = vec![0u8; (len as usize + 1) * 8];
    h[0] = nexthdr;
    h[1] = len;
    h
}

/// IPv6 fragment header: `offset` in 8-byte units.
fn frag6(nexthdr: u8, offset: u16, more: bool) -> Vec<u8> {
    let mut h = vec![nexthdr, 0];
    h.extend((offset << 3 | u16::from(more)).to_be_bytes());
    h.extend(0xabcd_0123u32.to_be_bytes());
    h
}

/// Authentication header: `(len + 2) * 4` bytes.
fn ah6(nexthdr: u8, len: u8) -> Vec<u8> {
    let mut h = vec![0u8; (len as usize + 2) * 4];
    h[0] = nexthdr;
    h[1] = len;
    h
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn tcp(dport: u16) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend(40000u16.to_be_bytes());
    h.extend(dport.to_be_bytes());
    h.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    h
}

fn udp(dport: u16) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend(40000u16.to_be_bytes());
    h.extend(dport.to_be_bytes());
    h.extend([0, 12, 0, 0, 0xde, 0xad, 0xbe, 0xef]);
    h
}

/// SCTP common header (ports, verification tag, checksum).
fn sctp(dport: u16) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend(40000u16.to_be_bytes());
    h.extend(dport.to_be_bytes());
    h.extend([0; 8]);
    h
}

fn icmp_echo() -> Vec<u8> {
    vec![8, 0, 0, 0, 0, 1, 0, 1]
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

// ---- the program under test ----

/// One loaded copy of an object with its own maps.
struct Prefilter {
    maps: MapSet,
    progs: Vec<LoadedProgram>,
    /// The IPv4 deny list written so far.
    v4_list: std::cell::RefCell<std::collections::BTreeSet<(u32, u8)>>,
}

impl Prefilter {
    fn load() -> Self {
        Self::load_objects(&[("xdp.o", XDP_O)])
    }

    /// Loads the objects in order into one map set (same map name = same map).
    fn load_objects(objects: &[(&str, &[u8])]) -> Self {
        require_root();
        let mut maps = MapSet::ephemeral();
        let mut progs = Vec::new();
        for (name, bytes) in objects {
            let obj = weir::object::parse_and_verify(name, bytes)
                .unwrap_or_else(|e| panic!("verifying {name}: {e}"));
            progs.extend(
                obj.load(&mut maps)
                    .unwrap_or_else(|e| panic!("loading {name}: {e}")),
            );
        }
        Self {
            maps,
            progs,
            v4_list: Default::default(),
        }
    }

    fn prog(&self, name: &str) -> BorrowedFd<'_> {
        self.progs
            .iter()
            .find(|p| p.spec.name == name)
            .unwrap_or_else(|| panic!("no program {name}"))
            .fd
            .as_fd()
    }

    fn map(&self, name: &str) -> BorrowedFd<'_> {
        self.maps
            .get(name)
            .unwrap_or_else(|| panic!("no map {name}"))
            .fd
            .as_fd()
    }

    /// Adds `cidr` to the IPv4 deny list the way `weir apply` writes it (entry row, table).
    fn deny4(&self, cidr: &str) -> LpmV4Key {
        let (a, len) = cidr.split_once('/').unwrap();
        let key = LpmV4Key::new(v4(a), len.parse().unwrap()).unwrap();
        let mut list = self.v4_list.borrow_mut();
        list.insert((u32::from_be_bytes(key.addr), key.prefixlen as u8));
        weir::prefilter::apply_v4(&self.maps, &list, &mut Undo::default()).unwrap();
        key
    }

    fn deny6(&self, cidr: &str) -> LpmV6Key {
        let (a, len) = cidr.split_once('/').unwrap();
        let key = LpmV6Key::new(v6(a), len.parse().unwrap()).unwrap();
        bpf::map_update(
            self.map("prefilter_v6"),
            &key.encode(),
            &DenyEntry::default().encode(),
            0,
        )
        .unwrap();
        key
    }

    fn hits4(&self, key: &LpmV4Key) -> u64 {
        let m = self.maps.get("prefilter_v4").unwrap();
        weir::prefilter::v4_entries(m)
            .unwrap()
            .into_iter()
            .find(|(c, _)| {
                c.addr == std::net::IpAddr::from(key.addr)
                    && u32::from(c.prefix_len) == key.prefixlen
            })
            .expect("entry gone")
            .1
    }

    fn hits6(&self, key: &LpmV6Key) -> u64 {
        self.hits("prefilter_v6", &key.encode())
    }

    fn hits(&self, map: &str, key: &[u8]) -> u64 {
        let mut v = vec![0u8; DenyEntry::LAYOUT.size as usize];
        assert!(
            bpf::map_lookup(self.map(map), key, &mut v).unwrap(),
            "entry gone"
        );
        DenyEntry::decode(&v).unwrap().hits
    }

    /// Adds `port` of protocol `slot` to the failsafe bitmap.
    fn failsafe(&self, slot: u32, port: u16) {
        let (word, bit) = failsafe::position(slot, port);
        let fd = self.map("failsafe_in");
        let mut v = [0u8; 8];
        assert!(bpf::map_lookup(fd, &word.encode(), &mut v).unwrap());
        let bits = u64::decode(&v).unwrap() | bit;
        bpf::map_update(fd, &word.encode(), &bits.encode(), 0).unwrap();
    }

    /// Runs `xdp_prefilter` `repeat` times on `frame`; returns the verdict.
    fn run_n(&self, frame: &[u8], repeat: u32) -> u32 {
        self.run_prog("xdp_prefilter", frame, repeat)
    }

    fn run_prog(&self, prog: &str, frame: &[u8], repeat: u32) -> u32 {
        bpf::prog_test_run(
            self.prog(prog),
            &TestRun {
                data_in: frame,
                data_out_size: 1600,
                repeat,
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("test run of {prog}: {e}"))
        .retval
    }

    fn run(&self, frame: &[u8]) -> u32 {
        self.run_n(frame, 1)
    }

    /// The `prefilter_stats` counter of `reason`, summed over CPUs.
    fn stat(&self, r: u32) -> Counter {
        let ncpus = bpf::possible_cpus().unwrap() as usize;
        let mut v = vec![0u8; maps_schema::percpu_slot_size(16) * ncpus];
        assert!(bpf::map_lookup(self.map("prefilter_stats"), &r.encode(), &mut v).unwrap());
        Counter::sum(&decode_per_cpu::<Counter>(&v, ncpus).unwrap())
    }

    /// Packets per reason: [passed, dropped, failsafe, unparsed].
    fn packets(&self) -> [u64; 4] {
        [
            reason::PASSED,
            reason::DROPPED,
            reason::FAILSAFE,
            reason::UNPARSED,
        ]
        .map(|r| self.stat(r).packets)
    }

    /// Asserts the verdict of one run and that exactly one packet was counted under `why`.
    #[track_caller]
    fn expect(&self, frame: &[u8], verdict: u32, why: u32, what: &str) {
        let before = self.packets();
        let got = self.run(frame);
        let after = self.packets();
        let mut want = before;
        want[why as usize] += 1;
        assert_eq!(
            (got, after),
            (verdict, want),
            "{what}: verdict/counters [passed, dropped, failsafe, unparsed]"
        );
    }

    #[track_caller]
    fn dropped(&self, frame: &[u8], what: &str) {
        self.expect(frame, XDP_DROP, reason::DROPPED, what);
    }

    #[track_caller]
    fn passed(&self, frame: &[u8], what: &str) {
        self.expect(frame, XDP_PASS, reason::PASSED, what);
    }

    #[track_caller]
    fn failsafe_passed(&self, frame: &[u8], what: &str) {
        self.expect(frame, XDP_PASS, reason::FAILSAFE, what);
    }

    #[track_caller]
    fn unparsed(&self, frame: &[u8], what: &str) {
        self.expect(frame, XDP_PASS, reason::UNPARSED, what);
    }
}

// ---- tests ----

#[test]
fn loads_with_its_maps_and_stays_small_for_the_verifier() {
    let pf = Prefilter::load();
    let names: Vec<&str> = pf.maps.iter().map(|m| m.def.name).collect();
    assert_eq!(
        names,
        [
            "deny_v4_nodes",
            "deny_v4_root",
            "failsafe_in",
            "prefilter_stats",
            "prefilter_v4",
            "prefilter_v6"
        ]
    );
    let progs: Vec<&str> = pf.progs.iter().map(|p| p.spec.name.as_str()).collect();
    assert_eq!(progs, ["xdp_prefilter"]);
    let info = bpf::prog_info(pf.prog("xdp_prefilter")).unwrap();
    eprintln!(
        "xdp_prefilter: verified_insns {}, xlated {} bytes, jited {} bytes",
        info.verified_insns, info.xlated_len, info.jited_len
    );
    // The kernel's limit is 1M; the IPv6 extension-header walk must stay far below it.
    assert!(info.verified_insns < 5_000, "{}", info.verified_insns);
    for m in pf.maps.iter() {
        let mi = bpf::map_info(m.fd.as_fd()).unwrap();
        assert_eq!(
            (mi.max_entries, mi.flags),
            (m.def.max_entries, m.def.flags),
            "{}",
            m.def.name
        );
    }
}

#[test]
fn v4_denied_source_is_dropped_with_exact_counters() {
    let pf = Prefilter::load();
    let key = pf.deny4("198.51.100.7/32");
    let bad = ether(&[], ETH_IP, &ipv4(v4("198.51.100.7"), TCP, &tcp(80)));
    let good = ether(&[], ETH_IP, &ipv4(v4("198.51.100.8"), TCP, &tcp(80)));

    assert_eq!(pf.run_n(&bad, 7), XDP_DROP);
    assert_eq!(pf.run_n(&good, 3), XDP_PASS);
    assert_eq!(pf.hits4(&key), 7);
    let len = bad.len() as u64;
    assert_eq!(
        pf.stat(reason::DROPPED),
        Counter {
            packets: 7,
            bytes: 7 * len
        }
    );
    assert_eq!(
        pf.stat(reason::PASSED),
        Counter {
            packets: 3,
            bytes: 3 * good.len() as u64
        }
    );
    assert_eq!(pf.stat(reason::FAILSAFE), Counter::default());
    assert_eq!(pf.stat(reason::UNPARSED), Counter::default());

    // Rewriting the entry (what the loader does only for changed entries) restarts its count.
    pf.deny4("198.51.100.7/32");
    assert_eq!(pf.hits4(&key), 0);
    assert_eq!(pf.run_n(&bad, 2), XDP_DROP);
    assert_eq!(pf.hits4(&key), 2);
}

#[test]
fn v4_prefixes_and_longest_match_get_the_hit() {
    let pf = Prefilter::load();
    let net = pf.deny4("203.0.113.0/24");
    let host = pf.deny4("203.0.113.77/32");
    let from = |a: &str| ether(&[], ETH_IP, &ipv4(v4(a), UDP, &udp(53)));

    pf.dropped(&from("203.0.113.1"), "inside /24");
    pf.dropped(&from("203.0.113.255"), "inside /24");
    pf.dropped(&from("203.0.113.77"), "the /32");
    pf.passed(&from("203.0.114.1"), "next /24");
    pf.passed(&from("203.0.112.255"), "previous /24");
    assert_eq!((pf.hits4(&net), pf.hits4(&host)), (2, 1));

    // /0 denies every IPv4 source and nothing else.
    let all = Prefilter::load();
    let any = all.deny4("0.0.0.0/0");
    all.dropped(&from("10.1.2.3"), "/0");
    all.dropped(&from("255.255.255.255"), "/0");
    all.passed(
        &ether(&[], ETH_IPV6, &ipv6(v6("2001:db8::5"), UDP, &udp(53))),
        "/0 is IPv4 only",
    );
    assert_eq!(all.hits4(&any), 2);
}

#[test]
fn v4_failsafe_ports_pass_from_denied_sources() {
    let pf = Prefilter::load();
    let key = pf.deny4("198.51.100.0/24");
    pf.failsafe(failsafe::TCP, 22);
    pf.failsafe(failsafe::UDP, 68);
    pf.failsafe(failsafe::SCTP, 3868);
    pf.failsafe(failsafe::TCP, 65535);
    let bad = v4("198.51.100.9");
    let l4 = |proto: u8, l4: Vec<u8>| ether(&[], ETH_IP, &ipv4(bad, proto, &l4));

    pf.failsafe_passed(&l4(TCP, tcp(22)), "tcp/22");
    pf.failsafe_passed(&l4(UDP, udp(68)), "udp/68");
    pf.failsafe_passed(&l4(SCTP, sctp(3868)), "sctp/3868");
    pf.failsafe_passed(
        &l4(TCP, tcp(65535)),
        "tcp/65535 (last bit of the last word)",
    );
    pf.dropped(&l4(TCP, tcp(23)), "tcp/23");
    pf.dropped(&l4(TCP, tcp(21)), "tcp/21");
    pf.dropped(&l4(UDP, udp(22)), "udp/22: the slot is per protocol");
    pf.dropped(&l4(TCP, tcp(68)), "tcp/68");
    pf.dropped(&l4(SCTP, sctp(22)), "sctp/22");
    pf.dropped(&l4(TCP, tcp(22 + 64)), "tcp/86: same bit, next word");
    pf.dropped(&l4(ICMP, icmp_echo()), "icmp has no port");
    // A failsafe port from an allowed source is simply passed (the bitmap is not consulted).
    pf.passed(
        &ether(&[], ETH_IP, &ipv4(v4("192.0.2.9"), TCP, &tcp(22))),
        "allowed source",
    );
    // Options are skipped to find the ports (ihl = 7).
    pf.failsafe_passed(
        &ether(&[], ETH_IP, &ipv4_opts(bad, TCP, 0, &[1; 8], &tcp(22))),
        "tcp/22 behind IPv4 options",
    );
    pf.dropped(
        &ether(&[], ETH_IP, &ipv4_opts(bad, TCP, 0, &[1; 8], &tcp(23))),
        "tcp/23 behind IPv4 options",
    );
    // Only drops count as hits.
    assert_eq!(pf.hits4(&key), 8);
    assert_eq!(pf.packets(), [1, 8, 5, 0]);
}

#[test]
fn v4_fragments() {
    let pf = Prefilter::load();
    let key = pf.deny4("198.51.100.7/32");
    pf.failsafe(failsafe::TCP, 22);
    let bad = v4("198.51.100.7");

    pf.failsafe_passed(
        &ether(&[], ETH_IP, &ipv4_frag(bad, TCP, 0, true, &tcp(22))),
        "first fragment to tcp/22",
    );
    // A non-first fragment has no L4 header: judged by address alone, whatever its bytes say.
    pf.dropped(
        &ether(&[], ETH_IP, &ipv4_frag(bad, TCP, 185, true, &tcp(22))),
        "middle fragment",
    );
    pf.dropped(
        &ether(&[], ETH_IP, &ipv4_frag(bad, TCP, 1, false, &tcp(22))),
        "last fragment",
    );
    pf.passed(
        &ether(
            &[],
            ETH_IP,
            &ipv4_frag(v4("192.0.2.3"), TCP, 185, true, &tcp(80)),
        ),
        "fragment from an allowed source",
    );
    // DF alone is not fragmentation.
    pf.failsafe_passed(
        &ether(&[], ETH_IP, &ipv4_opts(bad, TCP, 0x4000, &[], &tcp(22))),
        "DF set",
    );
    assert_eq!(pf.hits4(&key), 2);
}

#[test]
fn v6_denied_sources_failsafes_and_extension_headers() {
    let pf = Prefilter::load();
    let net = pf.deny6("2001:db8:bad::/48");
    let host = pf.deny6("2001:db8:bad::66/128");
    pf.failsafe(failsafe::TCP, 22);
    pf.failsafe(failsafe::UDP, 546);
    let bad = v6("2001:db8:bad:1::9");
    let pkt = |nh: u8, rest: Vec<u8>| ether(&[], ETH_IPV6, &ipv6(bad, nh, &rest));

    pf.dropped(&pkt(TCP, tcp(80)), "tcp/80");
    pf.dropped(
        &ether(&[], ETH_IPV6, &ipv6(v6("2001:db8:bad::66"), TCP, &tcp(80))),
        "the /128",
    );
    pf.passed(
        &ether(&[], ETH_IPV6, &ipv6(v6("2001:db8:bae::9"), TCP, &tcp(80))),
        "outside the /48",
    );
    pf.failsafe_passed(&pkt(TCP, tcp(22)), "tcp/22");
    pf.failsafe_passed(&pkt(UDP, udp(546)), "udp/546");
    pf.dropped(&pkt(ICMPV6, icmp_echo()), "icmpv6");

    // hop-by-hop + routing + fragment (first) before TCP.
    let chain = |dport: u16| {
        cat(&[
            &ext6(ROUTING, 0),
            &ext6(FRAGMENT, 2),
            &frag6(TCP, 0, true),
            &tcp(dport),
        ])
    };
    pf.failsafe_passed(&pkt(HOPOPTS, chain(22)), "tcp/22 behind hbh+routing+frag");
    pf.dropped(&pkt(HOPOPTS, chain(23)), "tcp/23 behind hbh+routing+frag");
    // A non-first fragment: judged by address alone.
    pf.dropped(
        &pkt(
            HOPOPTS,
            cat(&[&ext6(FRAGMENT, 0), &frag6(TCP, 185, true), &tcp(22)]),
        ),
        "non-first fragment",
    );
    pf.dropped(
        &pkt(FRAGMENT, cat(&[&frag6(TCP, 1, false), &tcp(22)])),
        "last fragment",
    );
    // AH ((len + 2) * 4 bytes) and destination options.
    pf.failsafe_passed(
        &pkt(AH, cat(&[&ah6(DSTOPTS, 4), &ext6(TCP, 1), &tcp(22)])),
        "tcp/22 behind AH + dstopts",
    );
    // ESP and no-next-header have no readable L4 header.
    pf.dropped(&pkt(ESP, vec![0; 16]), "esp");
    pf.dropped(
        &pkt(DSTOPTS, cat(&[&ext6(NONE, 0), &tcp(22)])),
        "no next header",
    );

    // Eight extension headers are walked; a ninth is judged by address alone.
    let many = |n: usize| {
        let mut p = Vec::new();
        for i in 0..n {
            p.extend(ext6(if i + 1 == n { TCP } else { DSTOPTS }, 0));
        }
        p.extend(tcp(22));
        p
    };
    pf.failsafe_passed(&pkt(DSTOPTS, many(8)), "tcp/22 behind 8 headers");
    pf.dropped(&pkt(DSTOPTS, many(9)), "tcp/22 behind 9 headers");

    assert_eq!((pf.hits6(&net), pf.hits6(&host)), (8, 1));
    assert_eq!(pf.packets(), [1, 9, 5, 0]);
}

#[test]
fn vlan_tags() {
    let pf = Prefilter::load();
    pf.deny4("198.51.100.7/32");
    pf.deny6("2001:db8:bad::/48");
    pf.failsafe(failsafe::TCP, 22);
    let p4 = |port: u16| ipv4(v4("198.51.100.7"), TCP, &tcp(port));
    let p6 = ipv6(v6("2001:db8:bad::1"), TCP, &tcp(80));

    pf.dropped(&ether(&[QTAG], ETH_IP, &p4(80)), "802.1Q");
    pf.dropped(&ether(&[ADTAG, QTAG], ETH_IP, &p4(80)), "802.1ad + 802.1Q");
    pf.dropped(&ether(&[QTAG, QTAG], ETH_IP, &p4(80)), "802.1Q + 802.1Q");
    pf.dropped(&ether(&[QTAG, ADTAG], ETH_IP, &p4(80)), "tags in any order");
    pf.dropped(&ether(&[QTAG], ETH_IPV6, &p6), "IPv6 in 802.1Q");
    pf.dropped(&ether(&[ADTAG, QTAG], ETH_IPV6, &p6), "IPv6 in QinQ");
    pf.failsafe_passed(&ether(&[ADTAG, QTAG], ETH_IP, &p4(22)), "failsafe in QinQ");
    pf.passed(
        &ether(&[QTAG], ETH_IP, &ipv4(v4("192.0.2.3"), TCP, &tcp(80))),
        "allowed in 802.1Q",
    );
    pf.passed(&ether(&[QTAG], ETH_ARP, &[0; 28]), "ARP in 802.1Q");
    // A third tag is deeper than the prefilter looks.
    pf.unparsed(&ether(&[ADTAG, QTAG, QTAG], ETH_IP, &p4(80)), "three tags");
    // A tag cut off by the end of the frame.
    let mut cut = ether(&[], QTAG, &[]);
    cut.extend([0, 100]);
    pf.unparsed(&cut, "truncated tag");
}

#[test]
fn non_ip_is_passed() {
    let pf = Prefilter::load();
    pf.deny4("0.0.0.0/0");
    pf.deny6("::/0");
    // ARP request whose sender address is "denied": ARP is not judged.
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 198, 51, 100, 7];
    arp.extend([0; 6]);
    arp.extend([192, 0, 2, 1]);
    pf.passed(&ether(&[], ETH_ARP, &arp), "ARP");
    pf.passed(&ether(&[], 0x88cc, &[0; 32]), "LLDP");
    pf.passed(&ether(&[], ETH_ARP, &[]), "bare Ethernet header");
}

#[test]
fn malformed_frames_are_passed_and_counted() {
    let pf = Prefilter::load();
    let k4 = pf.deny4("198.51.100.7/32");
    let k6 = pf.deny6("2001:db8:bad::/48");
    pf.failsafe(failsafe::TCP, 22);
    let bad4 = v4("198.51.100.7");
    let bad6 = v6("2001:db8:bad::1");

    let full4 = ipv4(bad4, TCP, &tcp(80));
    pf.unparsed(
        &ether(&[], ETH_IP, &full4[..19]),
        "IPv4 header cut at 19 bytes",
    );
    pf.unparsed(
        &ether(&[], ETH_IP, &full4[..1]),
        "IPv4 header cut at 1 byte",
    );
    pf.unparsed(&ether(&[], ETH_IP, &[]), "IPv4 ethertype, no header");
    let mut ihl4 = full4.clone();
    ihl4[0] = 0x44;
    pf.unparsed(&ether(&[], ETH_IP, &ihl4), "ihl 4");
    let mut ver = full4.clone();
    ver[0] = 0x65;
    pf.unparsed(&ether(&[], ETH_IP, &ver), "version 6 in an IPv4 frame");
    // ihl 15 (60-byte header) but only 20 header bytes and 4 of TCP follow.
    let mut long = ipv4(bad4, TCP, &tcp(22)[..4]);
    long[0] = 0x4f;
    pf.unparsed(&ether(&[], ETH_IP, &long), "IPv4 options past the end");
    pf.unparsed(
        &ether(&[], ETH_IP, &ipv4(bad4, TCP, &tcp(22)[..3])),
        "TCP ports cut short",
    );

    let full6 = ipv6(bad6, TCP, &tcp(80));
    pf.unparsed(
        &ether(&[], ETH_IPV6, &full6[..39]),
        "IPv6 header cut at 39 bytes",
    );
    let mut ver6 = full6.clone();
    ver6[0] = 0x40;
    pf.unparsed(&ether(&[], ETH_IPV6, &ver6), "version 4 in an IPv6 frame");
    // A routing header that claims 16 more bytes than the frame has, so the next header
    // would start past the end.
    let past = ipv6(
        bad6,
        HOPOPTS,
        &cat(&[&ext6(ROUTING, 0), &ext6(DSTOPTS, 2)[..8]]),
    );
    pf.unparsed(
        &ether(&[], ETH_IPV6, &past),
        "extension header past the end",
    );
    pf.unparsed(
        &ether(&[], ETH_IPV6, &ipv6(bad6, DSTOPTS, &ext6(TCP, 0)[..7])),
        "extension header cut short",
    );
    // Extension headers and ports are only read for denied sources: from an allowed source
    // the same frame is judged (passed) by its address alone.
    pf.passed(
        &ether(
            &[],
            ETH_IPV6,
            &ipv6(
                v6("2001:db8:900d::1"),
                HOPOPTS,
                &cat(&[&ext6(ROUTING, 0), &ext6(TCP, 2)[..8]]),
            ),
        ),
        "allowed source, broken extension header",
    );

    // Nothing malformed was dropped or counted as a hit.
    assert_eq!((pf.hits4(&k4), pf.hits6(&k6)), (0, 0));
    assert_eq!(pf.packets(), [1, 0, 0, 11]);
}

#[test]
fn counters_are_exact_over_repeated_runs() {
    let pf = Prefilter::load();
    let k = pf.deny4("198.51.100.0/24");
    let k6 = pf.deny6("2001:db8:bad::/48");
    pf.failsafe(failsafe::TCP, 22);
    let frames = [
        (
            ether(&[], ETH_IP, &ipv4(v4("198.51.100.1"), TCP, &tcp(80))),
            1000,
            XDP_DROP,
        ),
        (
            ether(&[], ETH_IP, &ipv4(v4("198.51.100.1"), TCP, &tcp(22))),
            300,
            XDP_PASS,
        ),
        (
            ether(
                &[QTAG],
                ETH_IPV6,
                &ipv6(v6("2001:db8:bad::1"), UDP, &udp(9)),
            ),
            250,
            XDP_DROP,
        ),
        (
            ether(&[], ETH_IP, &ipv4(v4("192.0.2.2"), UDP, &udp(9))),
            4000,
            XDP_PASS,
        ),
        (ether(&[], ETH_IP, &[0x45; 10]), 17, XDP_PASS),
    ];
    for (f, n, verdict) in &frames {
        assert_eq!(pf.run_n(f, *n), *verdict);
    }
    let bytes = |i: usize| frames[i].0.len() as u64 * u64::from(frames[i].1);
    assert_eq!(
        pf.stat(reason::DROPPED),
        Counter {
            packets: 1250,
            bytes: bytes(0) + bytes(2)
        }
    );
    assert_eq!(
        pf.stat(reason::FAILSAFE),
        Counter {
            packets: 300,
            bytes: bytes(1)
        }
    );
    assert_eq!(
        pf.stat(reason::PASSED),
        Counter {
            packets: 4000,
            bytes: bytes(3)
        }
    );
    assert_eq!(
        pf.stat(reason::UNPARSED),
        Counter {
            packets: 17,
            bytes: bytes(4)
        }
    );
    assert_eq!((pf.hits4(&k), pf.hits6(&k6)), (1000, 250));
}

#[test]
fn the_upgrade_test_object_shares_the_maps_and_differs_visibly() {
    let pf = Prefilter::load_objects(&[("xdp.o", XDP_O), ("upgrade.o", UPGRADE_O)]);
    let names: Vec<&str> = pf.maps.iter().map(|m| m.def.name).collect();
    // The next version uses exactly the maps of the shipped XDP and TC objects, so an upgrade
    // creates none and reuses every one (the policy's conntrack included).
    let shipped = Prefilter::load_objects(&[("xdp.o", XDP_O), ("tc.o", TC_O)]);
    let want: Vec<&str> = shipped.maps.iter().map(|m| m.def.name).collect();
    assert_eq!(names, want);
    for m in [
        "deny_v4_root",
        "failsafe_in",
        "if_counters",
        "pol_ct",
        "fp_routes_v4",
    ] {
        assert!(names.contains(&m), "{m} missing from {names:?}");
    }
    let key = pf.deny4("198.51.100.7/32");
    let bad = ether(&[], ETH_IP, &ipv4(v4("198.51.100.7"), TCP, &tcp(80)));
    // Both loaded programs are called xdp_prefilter: run each by its fd.
    let xdp: Vec<&LoadedProgram> = pf
        .progs
        .iter()
        .filter(|p| p.spec.name == "xdp_prefilter")
        .collect();
    assert_eq!(xdp.len(), 2);
    assert_ne!(xdp[0].tag, xdp[1].tag, "the upgrade is different code");
    for p in &xdp {
        let r = bpf::prog_test_run(
            p.fd.as_fd(),
            &TestRun {
                data_in: &bad,
                data_out_size: 1600,
                repeat: 1,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(r.retval, XDP_DROP);
    }
    assert_eq!(pf.hits4(&key), 2);
    // xdp.o counts the frame length, upgrade.o 2 bytes more.
    assert_eq!(
        pf.stat(reason::DROPPED),
        Counter {
            packets: 2,
            bytes: 2 * bad.len() as u64 + 2
        }
    );
}

/// IPv6 neighbour discovery from a denied source passes as failsafe, but only from this link
/// (hop limit 255, RFC 4861): without it a denied host could not resolve this one and its
/// failsafe connections would fail once the neighbour caches are cold.
#[test]
fn v6_neighbour_discovery_from_a_denied_source_passes_only_on_link() {
    let pf = Prefilter::load();
    pf.deny6("2001:db8:bad::/48");
    let bad = v6("2001:db8:bad::9");
    let nd = |icmp_type: u8, hop_limit: u8| {
        let mut ip = ipv6(bad, ICMPV6, &[icmp_type, 0, 0, 0, 0, 0, 0, 0]);
        ip[7] = hop_limit;
        ether(&[], ETH_IPV6, &ip)
    };
    for t in 133..=136u8 {
        pf.failsafe_passed(&nd(t, 255), &format!("ND type {t} with hop limit 255"));
        pf.dropped(&nd(t, 64), &format!("ND type {t} routed (hop limit 64)"));
    }
    pf.dropped(
        &nd(137, 255),
        "a redirect is not needed to reach a failsafe port",
    );
    pf.dropped(
        &nd(128, 255),
        "an echo request with hop limit 255 is not ND",
    );
}
