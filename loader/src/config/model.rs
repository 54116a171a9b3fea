//! The desired state a config file describes.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::str::FromStr;

use super::diag::Span;

/// A parsed config file.
///
/// [`Config::default`] is what an empty file gives: no interfaces or cgroups, no pin-dir, an
/// empty prefilter with the default capacities, and the default failsafe ports
/// ([`DEFAULT_FAILSAFE_IN`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `interface` statements, in file order; names are unique.
    pub interfaces: Vec<Interface>,
    /// `cgroup` statements, in file order; paths are unique after normalisation.
    pub cgroups: Vec<CgroupAttach>,
    /// `pin-dir`, if given (the CLI's `--pin-dir` overrides it).
    pub pin_dir: Option<(PathBuf, Span)>,
    /// The XDP prefilter: `prefilter deny`, `prefilter deny-file` and `prefilter capacity`.
    pub prefilter: Prefilter,
    /// `failsafe in`: destination ports a denied source may still reach. [`DEFAULT_FAILSAFE_IN`]
    /// when the file has no `failsafe in` statement, empty for `failsafe in none`; otherwise the
    /// listed ranges in file order, exact duplicates removed.
    pub failsafe_in: Vec<PortRange>,
    /// `service` statements (connect-time load balancing), in file order; each (VIP, port,
    /// protocol) once.
    pub services: Vec<Service>,
    /// `lb exclude` cgroups (normalised paths, each once): their processes, and those of every
    /// cgroup below them, are never load-balanced.
    pub lb_exclude: Vec<LbExclude>,
    /// `ipset` and `ipset-file` statements: named CIDR lists, each name once (in the order of
    /// first mention); several statements with one name add up.
    pub ipsets: Vec<IpSet>,
    /// `policy` statements, in file order; names are unique.
    pub policies: Vec<Policy>,
    /// `rule` statements, in file order; each names a policy of [`Config::policies`]. Within a
    /// policy and direction, this order is the evaluation order.
    pub rules: Vec<Rule>,
    /// `lb capacity`: the sizes of the load-balancing maps.
    pub lb_capacity: LbCapacity,
    /// `conntrack capacity entries=N`: flows the policy's conntrack table holds.
    pub conntrack_capacity: u32,
    /// `classifier capacity`: the sizes of the policy classifier's tables (per bank).
    pub classifier_capacity: ClassifierCapacity,
    /// `mesh` statements (service-mesh redirect to a local proxy), in file order; each meshed
    /// cgroup once.
    pub meshes: Vec<Mesh>,
    /// The file name, or the name the caller gave the text (e.g. `"<embedded>"`).
    pub source: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            cgroups: Vec::new(),
            pin_dir: None,
            prefilter: Prefilter::default(),
            failsafe_in: DEFAULT_FAILSAFE_IN.to_vec(),
            services: Vec::new(),
            lb_exclude: Vec::new(),
            ipsets: Vec::new(),
            policies: Vec::new(),
            rules: Vec::new(),
            lb_capacity: LbCapacity::default(),
            conntrack_capacity: maps_schema::pol::DEFAULT_CT_ENTRIES,
            classifier_capacity: ClassifierCapacity::default(),
            meshes: Vec::new(),
            source: String::new(),
        }
    }
}

impl Config {
    /// True when both describe the same settings; spans, origins and `source` are ignored, and
    /// the deny list is compared as a set (its order follows the statements, which rendering
    /// regroups).
    #[must_use]
    pub fn eq_ignoring_spans(&self, other: &Config) -> bool {
        let same_interfaces = self.interfaces.len() == other.interfaces.len()
            && self.interfaces.iter().zip(&other.interfaces).all(|(a, b)| {
                a.name == b.name
                    && a.role == b.role
                    && a.xdp == b.xdp
                    && a.tc == b.tc
                    && a.attach == b.attach
                    && a.addrs == b.addrs
                    && a.labels == b.labels
                    && a.fastpath == b.fastpath
            });
        let same_cgroups = self.cgroups.len() == other.cgroups.len()
            && self
                .cgroups
                .iter()
                .zip(&other.cgroups)
                .all(|(a, b)| a.path == b.path && a.attach == b.attach);
        let same_pin_dir =
            self.pin_dir.as_ref().map(|(p, _)| p) == other.pin_dir.as_ref().map(|(p, _)| p);
        let deny_set = |c: &Config| {
            let mut set: Vec<Cidr> = c.prefilter.deny.iter().map(|(cidr, _)| *cidr).collect();
            set.sort_unstable();
            set
        };
        let files = |c: &Config| -> Vec<PathBuf> {
            c.prefilter
                .files
                .iter()
                .map(|(path, _)| path.clone())
                .collect()
        };
        let same_prefilter = self.prefilter.capacity_v4 == other.prefilter.capacity_v4
            && self.prefilter.capacity_v6 == other.prefilter.capacity_v6
            && self.prefilter.chunks_v4 == other.prefilter.chunks_v4
            && files(self) == files(other)
            && deny_set(self) == deny_set(other);
        let same_services = self.services.len() == other.services.len()
            && self.services.iter().zip(&other.services).all(|(a, b)| {
                a.name == b.name
                    && a.vip == b.vip
                    && a.proto == b.proto
                    && a.backends == b.backends
                    && a.affinity == b.affinity
                    && a.excluded == b.excluded
            });
        let exclude_paths =
            |c: &Config| -> Vec<String> { c.lb_exclude.iter().map(|e| e.path.clone()).collect() };
        same_interfaces
            && same_cgroups
            && same_pin_dir
            && same_prefilter
            && self.failsafe_in == other.failsafe_in
            && same_services
            && exclude_paths(self) == exclude_paths(other)
            && self.lb_capacity == other.lb_capacity
            && self.conntrack_capacity == other.conntrack_capacity
            && self.classifier_capacity == other.classifier_capacity
            && self.same_policy(other)
            && self.meshes.len() == other.meshes.len()
            && self.meshes.iter().zip(&other.meshes).all(|(a, b)| {
                Mesh {
                    span: Span::default(),
                    ..a.clone()
                } == Mesh {
                    span: Span::default(),
                    ..b.clone()
                }
            })
    }

    /// The policy part of [`Config::eq_ignoring_spans`]: sets as sets of networks (plus their
    /// files), policies in order, and each policy's rules in order (rendering groups rules
    /// under their policy, so the interleaving of different policies' rules is not compared).
    fn same_policy(&self, other: &Config) -> bool {
        let sets = |c: &Config| {
            c.ipsets
                .iter()
                .map(|s| {
                    let mut nets: Vec<Cidr> = s.entries.iter().map(|(n, _)| *n).collect();
                    nets.sort_unstable();
                    let files: Vec<PathBuf> = s.files.iter().map(|(p, _)| p.clone()).collect();
                    (s.name.clone(), nets, files)
                })
                .collect::<Vec<_>>()
        };
        let policies = |c: &Config| {
            c.policies
                .iter()
                .map(|p| {
                    let rules: Vec<Rule> = c
                        .rules
                        .iter()
                        .filter(|r| r.policy == p.name)
                        .map(|r| Rule {
                            span: Span::default(),
                            ..r.clone()
                        })
                        .collect();
                    (
                        Policy {
                            span: Span::default(),
                            ..p.clone()
                        },
                        rules,
                    )
                })
                .collect::<Vec<_>>()
        };
        sets(self) == sets(other) && policies(self) == policies(other)
    }

    /// The IP set called `name`, if declared.
    #[must_use]
    pub fn ipset(&self, name: &str) -> Option<&IpSet> {
        self.ipsets.iter().find(|s| s.name == name)
    }

    /// Every cgroup connect-time load balancing leaves alone, with the statement that asks for
    /// it: the `lb exclude` paths, then each mesh's meshed cgroup (its proxy must see the
    /// service address) and proxy cgroup (the proxy balances by itself). Paths may repeat.
    #[must_use]
    pub fn lb_excluded_cgroups(&self) -> Vec<(&str, &'static str, Span)> {
        let mut out: Vec<(&str, &'static str, Span)> = self
            .lb_exclude
            .iter()
            .map(|e| (e.path.as_str(), "lb exclude", e.span))
            .collect();
        for m in &self.meshes {
            out.push((m.cgroup.as_str(), "mesh", m.span));
            if let Some(p) = &m.proxy_cgroup {
                out.push((p.as_str(), "mesh proxy-cgroup", m.span));
            }
        }
        out
    }

    /// The interface called `name`, if configured.
    #[must_use]
    pub fn interface(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }
}

/// An `interface` statement: where the XDP and TC programs attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The Linux interface name (1..=15 bytes).
    pub name: String,
    /// What sits behind the interface.
    pub role: Role,
    /// Whether and how the XDP program attaches.
    pub xdp: XdpMode,
    /// Whether the TC programs attach.
    pub tc: bool,
    /// Which kernel attach mechanism to use.
    pub attach: AttachPolicy,
    /// `addrs=`: the endpoint's addresses (a workload's, or the host's on this interface),
    /// IPv4 and IPv6, in the order given, each once. Empty when not given.
    pub addrs: Vec<Cidr>,
    /// `labels=`: the endpoint's labels as (key, value), in the order given, keys unique.
    /// Policies select endpoints by them.
    pub labels: Vec<(String, String)>,
    /// `fastpath=`: whether packets arriving here may be redirected straight to a local
    /// workload (or, from a workload, out of the right host interface), bypassing the host's
    /// routing and netfilter. On by default; it needs `tc=on`.
    pub fastpath: bool,
    /// The interface name in the config text.
    pub span: Span,
}

/// What an interface faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Role {
    /// The host's own uplink or a host-facing device (default).
    #[default]
    Host,
    /// The host side of a workload (container/VM) device, e.g. a veth.
    Workload,
}

/// How the XDP program attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum XdpMode {
    /// No XDP program.
    Off,
    /// In the driver (default).
    #[default]
    Native,
    /// The generic (skb) hook: works everywhere, slower.
    Generic,
}

/// Which kernel mechanism attaches programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AttachPolicy {
    /// `Link` when the kernel supports it, else `Legacy` (default).
    #[default]
    Auto,
    /// `bpf_link` (XDP link, TCX, cgroup link) only; fail if unsupported.
    Link,
    /// netlink `IFLA_XDP` and clsact + `cls_bpf`. Not valid for cgroups.
    Legacy,
}

/// A `cgroup` statement: where the connect-time programs attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupAttach {
    /// Relative to the cgroup2 mount, normalised: no leading, trailing or doubled `/`, no `.`
    /// components, never empty, never containing `..`.
    pub path: String,
    /// `Auto` or `Link` (cgroups have no legacy mechanism we use).
    pub attach: AttachPolicy,
    /// The path in the config text.
    pub span: Span,
}

impl Role {
    /// The config-file spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Host => "host",
            Role::Workload => "workload",
        }
    }
}

impl XdpMode {
    /// The config-file spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            XdpMode::Off => "off",
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        }
    }
}

impl AttachPolicy {
    /// The config-file spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            AttachPolicy::Auto => "auto",
            AttachPolicy::Link => "link",
            AttachPolicy::Legacy => "legacy",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for AttachPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An IPv4 or IPv6 network: an address and a prefix length.
///
/// [`Cidr::parse`] only produces canonical values (no bits set beyond the prefix); a value built
/// by hand may have host bits, which [`Cidr::network`] clears. An IPv4-mapped IPv6 address such as
/// `::ffff:192.0.2.1` stays IPv6 (it goes to the IPv6 deny list; the kernel hands the prefilter
/// native IPv4 packets, which it does not match).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    /// The network address.
    pub addr: IpAddr,
    /// 0..=32 for IPv4, 0..=128 for IPv6.
    pub prefix_len: u8,
}

/// Why a text is not a [`Cidr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CidrError {
    /// The text before `/` (or the whole text) is not an IPv4 or IPv6 address.
    Address,
    /// Nothing after `/`.
    MissingPrefix,
    /// The text after `/` is not a decimal number.
    Prefix,
    /// The prefix length is longer than the address (`len` saturates at `u32::MAX`).
    PrefixRange {
        /// The prefix length given.
        len: u32,
        /// 32 or 128.
        max: u8,
    },
    /// Bits beyond the prefix are set; `network` is the CIDR with them cleared.
    HostBits {
        /// The canonical network.
        network: Cidr,
    },
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::Address => f.write_str("not an IPv4 or IPv6 address"),
            CidrError::MissingPrefix => f.write_str("missing prefix length after '/'"),
            CidrError::Prefix => f.write_str("the prefix length is not a number"),
            CidrError::PrefixRange { len, max } => {
                write!(f, "prefix length {len} is out of range (0 to {max})")
            }
            CidrError::HostBits { network } => {
                write!(f, "host bits are set (the network is {network})")
            }
        }
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// Parses `ADDRESS` or `ADDRESS/PREFIX` (IPv4 dotted quad or any RFC 4291 IPv6 text form,
    /// no zone, no brackets; the prefix in decimal). A bare address is a /32 or /128. Does not
    /// allocate.
    ///
    /// # Errors
    ///
    /// A [`CidrError`] saying which part is wrong; [`CidrError::HostBits`] carries the network
    /// that was probably meant (`10.1.2.3/8` → `10.0.0.0/8`).
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        Self::parse_bytes(text.as_bytes())
    }

    /// [`Cidr::parse`] on bytes, for deny-list files that need not be UTF-8 outside the address.
    pub(crate) fn parse_bytes(text: &[u8]) -> Result<Cidr, CidrError> {
        let (addr_text, prefix_text) = match text.iter().position(|&b| b == b'/') {
            Some(i) => (
                text.get(..i).unwrap_or_default(),
                Some(text.get(i + 1..).unwrap_or_default()),
            ),
            None => (text, None),
        };
        let addr = parse_addr(addr_text).ok_or(CidrError::Address)?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix_text {
            None => max,
            Some([]) => return Err(CidrError::MissingPrefix),
            Some(p) => {
                if !p.iter().all(u8::is_ascii_digit) {
                    return Err(CidrError::Prefix);
                }
                let len = p.iter().fold(0u32, |n, b| {
                    n.saturating_mul(10).saturating_add(u32::from(b - b'0'))
                });
                match u8::try_from(len) {
                    Ok(l) if l <= max => l,
                    _ => return Err(CidrError::PrefixRange { len, max }),
                }
            }
        };
        let cidr = Cidr { addr, prefix_len };
        let network = cidr.network();
        if network != cidr {
            return Err(CidrError::HostBits { network });
        }
        Ok(cidr)
    }

    /// True for an IPv4 network.
    #[must_use]
    pub const fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// The same prefix with every bit beyond it cleared (a prefix length beyond the address
    /// length is clamped to it).
    #[must_use]
    pub fn network(&self) -> Cidr {
        match self.addr {
            IpAddr::V4(a) => {
                let len = self.prefix_len.min(32);
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                Cidr {
                    addr: IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask)),
                    prefix_len: len,
                }
            }
            IpAddr::V6(a) => {
                let len = self.prefix_len.min(128);
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                Cidr {
                    addr: IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask)),
                    prefix_len: len,
                }
            }
        }
    }
}

/// An address without allocating: IPv4 by hand (block lists are mostly IPv4, and this is several
/// times faster than going through `&str`), IPv6 through std. Both reject what std rejects:
/// IPv4 octets with leading zeros (some tools read them as octal), zones, brackets.
fn parse_addr(text: &[u8]) -> Option<IpAddr> {
    // A dotted quad has a '.' before any ':'; an IPv6 address (even with an IPv4 tail) a ':'.
    match text.iter().find(|&&b| b == b'.' || b == b':') {
        Some(b'.') => parse_ipv4(text).map(IpAddr::V4),
        Some(_) => std::str::from_utf8(text)
            .ok()
            .and_then(|t| Ipv6Addr::from_str(t).ok())
            .map(IpAddr::V6),
        None => None,
    }
}

/// Exactly four decimal octets 0..=255 separated by '.', no leading zeros (as std's parser).
pub(crate) fn parse_ipv4(text: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split(|&b| b == b'.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || (part.len() > 1 && part.first() == Some(&b'0')) {
            return None;
        }
        let mut n: u16 = 0;
        for &b in part {
            if !b.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u16::from(b - b'0');
        }
        *octet = u8::try_from(n).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Cidr::parse(text)
    }
}

impl fmt::Display for Cidr {
    /// `ADDRESS/PREFIX`, the address in its canonical text form (RFC 5952 for IPv6), the prefix
    /// always written (`192.0.2.1/32`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Where a value came from: a config file or a deny-list file, line and column (1-based).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The file name as diagnostics show it (a deny-list file: its path as resolved). Shared by
    /// every entry of one file, so a 16M-entry list does not hold 16M copies of its name.
    pub source: std::sync::Arc<str>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in chars.
    pub column: u32,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.source, self.line, self.column)
    }
}

/// The XDP prefilter: source networks to drop before the stack sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefilter {
    /// Every denied network, from `prefilter deny` and from the files of `prefilter deny-file`,
    /// in the order the statements (and the lines of each file) give them; each network once,
    /// with the origin of its first mention. Entries whose `origin.source` is the config's
    /// [`Config::source`] were written inline; the others came from a file.
    pub deny: Vec<(Cidr, Origin)>,
    /// The `prefilter deny-file` statements: the path as written (relative paths are relative
    /// to the config file's directory) and its span. `render_config` prints these, not the
    /// files' contents.
    pub files: Vec<(PathBuf, Span)>,
    /// Capacity of the IPv4 deny map (entries).
    pub capacity_v4: u32,
    /// Capacity of the IPv6 deny map (entries).
    pub capacity_v6: u32,
    /// Chunks of the IPv4 deny table (`deny_v4_nodes`; 64 bytes each).
    pub chunks_v4: u32,
}

impl Prefilter {
    /// Default capacity of the IPv4 deny map.
    pub const DEFAULT_CAPACITY_V4: u32 = 65_536;
    /// Default number of IPv4 deny table chunks: enough for the default capacity of prefixes
    /// that cluster as published block lists do (random /32s need up to four chunks each).
    pub const DEFAULT_CHUNKS_V4: u32 = 65_536;
    /// Default capacity of the IPv6 deny map.
    pub const DEFAULT_CAPACITY_V6: u32 = 65_536;
    /// The largest capacity `prefilter capacity` accepts (2^24).
    pub const MAX_CAPACITY: u32 = 16_777_216;
}

impl Default for Prefilter {
    fn default() -> Self {
        Self {
            deny: Vec::new(),
            files: Vec::new(),
            capacity_v4: Self::DEFAULT_CAPACITY_V4,
            capacity_v6: Self::DEFAULT_CAPACITY_V6,
            chunks_v4: Self::DEFAULT_CHUNKS_V4,
        }
    }
}

/// `lb capacity services=N backends=N slots=N connections=N`: how many entries the
/// load-balancing maps hold.
/// They are hash maps allocated on demand, so a large capacity costs little until it is used
/// (the kernel's bucket array, 16 bytes per entry of capacity rounded up to a power of two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbCapacity {
    /// `lb_services`: (VIP, port, protocol) entries.
    pub services: u32,
    /// `lb_backends` and `lb_stats`: backends over all services.
    pub backends: u32,
    /// `lb_slots`: weighted slots over all services (one per backend for equal weights).
    pub slots: u32,
    /// `lb_conn`: open connected sockets to services whose VIP is remembered there (past it,
    /// in the socket's own storage: the same behaviour, a slower `connect()`).
    pub connections: u32,
}

impl Default for LbCapacity {
    fn default() -> Self {
        Self {
            services: maps_schema::lb::DEFAULT_SERVICES,
            backends: maps_schema::lb::DEFAULT_BACKENDS,
            slots: maps_schema::lb::DEFAULT_SLOTS,
            connections: maps_schema::lb::DEFAULT_CONNECTIONS,
        }
    }
}

/// `classifier capacity rule-sets=N chunks=N bitmaps=N`: how much each of the two banks of the
/// policy classifier holds (distinct rule sets, 64-byte table chunks, 32-byte rule bitmaps).
/// The maps are arrays, allocated in full: twice these sizes (and, per rule set, 6 KiB of root
/// slots and 3 KiB of rule slots).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassifierCapacity {
    /// Distinct rule sets (endpoints with identical rule lists share one).
    pub rule_sets: u32,
    /// Table chunks below the 256-slot roots.
    pub chunks: u32,
    /// Distinct rule bitmaps.
    pub bitmaps: u32,
}

impl ClassifierCapacity {
    /// The largest `rule-sets=` accepted (the root map has 2 × 1536 slots per rule set).
    pub const MAX_RULE_SETS: u32 = 65_536;
}

impl Default for ClassifierCapacity {
    fn default() -> Self {
        Self {
            rule_sets: maps_schema::pol::DEFAULT_RULE_SETS,
            chunks: maps_schema::pol::DEFAULT_CHUNKS,
            bitmaps: maps_schema::pol::DEFAULT_BITMAPS,
        }
    }
}

/// A transport protocol a failsafe port range applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L4Proto {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
    /// SCTP (IP protocol 132).
    Sctp,
}

impl L4Proto {
    /// The config-file spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            L4Proto::Tcp => "tcp",
            L4Proto::Udp => "udp",
            L4Proto::Sctp => "sctp",
        }
    }
}

impl fmt::Display for L4Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Destination ports `low..=high` of one protocol (1 <= low <= high).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    /// The protocol.
    pub proto: L4Proto,
    /// First port (>= 1).
    pub low: u16,
    /// Last port (>= `low`).
    pub high: u16,
}

impl fmt::Display for PortRange {
    /// `tcp/22` or `udp/67-68`, as the config writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}/{}", self.proto, self.low)
        } else {
            write!(f, "{}/{}-{}", self.proto, self.low, self.high)
        }
    }
}

/// The failsafe ports when a config has no `failsafe in` statement: `tcp/22` (SSH in, so a bad
/// deny list cannot lock the operator out) and `udp/68` (DHCP client: the server's replies
/// arrive there, and a lost lease takes the host off the network).
pub const DEFAULT_FAILSAFE_IN: &[PortRange] = &[
    PortRange {
        proto: L4Proto::Tcp,
        low: 22,
        high: 22,
    },
    PortRange {
        proto: L4Proto::Udp,
        low: 68,
        high: 68,
    },
];

/// A `service` statement: connections and datagrams to `vip` (with `proto`) from processes in
/// the `cgroup` statements' cgroups go to one of `backends`, chosen at random by weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The service name (letters, digits, `.`, `_`, `-`; several lines may share one name).
    pub name: String,
    /// The virtual address and port clients connect to.
    pub vip: std::net::SocketAddr,
    /// TCP or UDP.
    pub proto: L4Proto,
    /// The backends, in config order, each address once; all of the VIP's address family.
    /// Empty (`backends=none`): connections are refused.
    pub backends: Vec<Backend>,
    /// Session affinity timeout in seconds (`affinity=SECONDS`), `None` for `affinity=off`.
    pub affinity: Option<u32>,
    /// `excluded`: the service is declared but never rewritten.
    pub excluded: bool,
    /// The service name in the config text.
    pub span: Span,
}

/// One backend of a [`Service`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Backend {
    /// Address and port.
    pub addr: std::net::SocketAddr,
    /// Relative weight; 0 drains the backend (no new connections).
    pub weight: u32,
}

/// An `lb exclude` cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbExclude {
    /// Relative to the cgroup2 mount, normalised as [`CgroupAttach::path`].
    pub path: String,
    /// The path in the config text.
    pub span: Span,
}

/// An `ipset` / `ipset-file` name: IPv4 and IPv6 networks that rules match with `set:NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpSet {
    /// Letters, digits, `.`, `_`, `-`; up to 63 bytes.
    pub name: String,
    /// Every network, inline and from files, in the order given, each once (with the origin of
    /// its first mention; an entry whose `origin.source` is the config's was written inline).
    pub entries: Vec<(Cidr, Origin)>,
    /// The `ipset-file` paths as written, with their spans (rendering prints these, not the
    /// files' contents).
    pub files: Vec<(PathBuf, Span)>,
    /// The name at its first mention.
    pub span: Span,
}

/// A `policy` statement: which endpoints it selects, in which directions, and where it stands
/// among the policies. Its rules are the [`Rule`]s naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Letters, digits, `.`, `_`, `-`; up to 63 bytes; unique.
    pub name: String,
    /// Policies apply in ascending `order`, then by name.
    pub order: u32,
    /// The endpoints (interfaces, by their labels) the policy applies to.
    pub selector: super::selector::Selector,
    /// The policy applies to traffic into its endpoints: once selected for ingress by any
    /// policy, what no rule allows is denied.
    pub ingress: bool,
    /// The same for traffic out of its endpoints.
    pub egress: bool,
    /// `audit`: what the policy would deny is reported, never dropped.
    pub audit: bool,
    /// The name in the config text.
    pub span: Span,
}

impl Policy {
    /// The default `order` of a policy that gives none.
    pub const DEFAULT_ORDER: u32 = 1000;

    /// Whether the policy applies in `direction`.
    #[must_use]
    pub const fn applies(&self, direction: Direction) -> bool {
        match direction {
            Direction::Ingress => self.ingress,
            Direction::Egress => self.egress,
        }
    }
}

/// A direction, from the endpoint's point of view: a workload's ingress is what enters the
/// workload (the host-side veth's TC egress hook), a host interface's ingress what arrives on
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Into the endpoint; the remote address is the packet's source.
    Ingress,
    /// Out of the endpoint; the remote address is the packet's destination.
    Egress,
}

impl Direction {
    /// The config-file spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleAction {
    /// Accept the packet (stop).
    Allow,
    /// Drop the packet (stop).
    Deny,
    /// Record the packet and go on with the next rule.
    Log,
    /// Skip the rest of this policy; go on with the next policy.
    Pass,
}

impl RuleAction {
    /// The config-file spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            RuleAction::Allow => "allow",
            RuleAction::Deny => "deny",
            RuleAction::Log => "log",
            RuleAction::Pass => "pass",
        }
    }
}

impl fmt::Display for RuleAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// IP protocol numbers the config names (`proto=`).
pub const PROTO_NAMES: &[(&str, u8)] = &[
    ("tcp", 6),
    ("udp", 17),
    ("icmp", 1),
    ("icmpv6", 58),
    ("sctp", 132),
];

/// The config name of IP protocol `proto`, if it has one.
#[must_use]
pub fn proto_name(proto: u8) -> Option<&'static str> {
    PROTO_NAMES
        .iter()
        .find(|(_, p)| *p == proto)
        .map(|(n, _)| *n)
}

/// Whether packets of IP protocol `proto` carry the ports rules match (TCP, UDP, SCTP).
#[must_use]
pub const fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 132)
}

/// Whether `proto` is ICMP or ICMPv6 (rules may match their type and code).
#[must_use]
pub const fn is_icmp(proto: u8) -> bool {
    matches!(proto, 1 | 58)
}

/// One item of a rule's `remote=` list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Remote {
    /// `!`: the remote address must *not* be in `target`.
    pub negated: bool,
    /// A network or a set.
    pub target: RemoteTarget,
}

/// A network or a named set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RemoteTarget {
    /// A CIDR (a bare address is a /32 or /128).
    Net(Cidr),
    /// `set:NAME`, an [`IpSet`].
    Set(String),
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negated {
            f.write_str("!")?;
        }
        match &self.target {
            RemoteTarget::Net(cidr) => write!(f, "{cidr}"),
            RemoteTarget::Set(name) => write!(f, "set:{name}"),
        }
    }
}

/// A `rule` statement. It matches a packet when every condition given holds: the protocol; the
/// remote address is in one of the non-negated `remote` items (when there are any) and in none
/// of the negated ones; the source and destination ports are in one of the listed ranges (when
/// listed); the ICMP type (and code) are equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// The policy the rule belongs to.
    pub policy: String,
    /// Which traffic the rule looks at.
    pub direction: Direction,
    /// What it does on a match.
    pub action: RuleAction,
    /// IP protocol number; `None` for `any`.
    pub proto: Option<u8>,
    /// `remote=` items in the order written (may be empty: any remote).
    pub remote: Vec<Remote>,
    /// `sport=` ranges (inclusive; empty: any); only with a protocol that has ports.
    pub sport: Vec<(u16, u16)>,
    /// `dport=` ranges (inclusive; empty: any); only with a protocol that has ports.
    pub dport: Vec<(u16, u16)>,
    /// `icmp-type=` and `icmp-code=`; only with `proto=icmp` or `proto=icmpv6`.
    pub icmp: Option<(u8, Option<u8>)>,
    /// The rule's policy name in the config text.
    pub span: Span,
}

/// A `mesh` statement: a cgroup whose outbound TCP connections go to a local proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mesh {
    /// The meshed cgroup (and every cgroup below it), normalised as [`CgroupAttach::path`].
    pub cgroup: String,
    /// The proxy's outbound port on loopback (127.0.0.1 / ::1), e.g. 15001.
    pub proxy_port: u16,
    /// The proxy's cgroup (normalised): its processes are never redirected.
    pub proxy_cgroup: Option<String>,
    /// The proxy's uid: processes running as it are never redirected.
    pub proxy_uid: Option<u32>,
    /// Destination port ranges (inclusive, sorted, not overlapping) that are never redirected.
    pub exclude_ports: Vec<(u16, u16)>,
    /// Inbound capture (`inbound-port=`, `netns=`, `exclude-inbound-ports=`), if asked for.
    pub inbound: Option<MeshInbound>,
    /// The meshed cgroup's path in the config text.
    pub span: Span,
}

/// Inbound capture of a meshed workload: TCP connections arriving in its network namespace
/// go to the proxy's inbound listener (Istio's `REDIRECT --to-port 15006` in PREROUTING).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshInbound {
    /// The proxy's inbound port (Istio: 15006); whatever listens there in `netns` gets them.
    pub port: u16,
    /// The workload's network namespace: a name in `/run/netns` or a path.
    pub netns: String,
    /// Local port ranges (inclusive, sorted, not overlapping) that are never captured.
    pub exclude_ports: Vec<(u16, u16)>,
}
