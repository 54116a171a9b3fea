//! The single source of truth for every weir BPF map.
//!
//! Each map's type, key and value layout, size and flags are declared once, in [`MAPS`]. From that
//! one table come:
//! - the C header `programs/include/weir_maps.h` ([`c_header`]), whose `WEIR_DEFINE_MAP_*` macros
//!   are the only way the BPF programs define their maps, so C cannot drift from the schema;
//! - the Rust key/value types with their byte codecs ([`Codec`]), used by the loader to check the
//!   maps it finds in an object and to read and write entries.
//!
//! Adding a map: declare its key/value structs with `schema_struct!` (if they are new), add a
//! [`MapDef`] to [`MAPS`], then run `make -C programs header` and use the new
//! `WEIR_DEFINE_MAP_<NAME>` macro in C.

#![forbid(unsafe_code)]

use std::fmt::{self, Write as _};

mod header;

pub use header::c_header;

/// Kernel `enum bpf_map_type` values of the map types weir uses.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapType {
    /// `BPF_MAP_TYPE_HASH`
    Hash = 1,
    /// `BPF_MAP_TYPE_ARRAY`
    Array = 2,
    /// `BPF_MAP_TYPE_PERCPU_HASH`
    PerCpuHash = 5,
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`
    PerCpuArray = 6,
    /// `BPF_MAP_TYPE_LRU_HASH`
    LruHash = 9,
    /// `BPF_MAP_TYPE_LRU_PERCPU_HASH`
    LruPerCpuHash = 10,
    /// `BPF_MAP_TYPE_LPM_TRIE`
    LpmTrie = 11,
    /// `BPF_MAP_TYPE_SOCKHASH`: sockets by key (user space reads a socket's cookie as the value).
    SockHash = 18,
    /// `BPF_MAP_TYPE_SK_STORAGE`: a value per socket, owned by the socket (no keys to list).
    SkStorage = 24,
    /// `BPF_MAP_TYPE_RINGBUF`
    RingBuf = 27,
}

impl MapType {
    /// Every map type weir knows, in kernel enum order.
    pub const ALL: &'static [MapType] = &[
        MapType::Hash,
        MapType::Array,
        MapType::PerCpuHash,
        MapType::PerCpuArray,
        MapType::LruHash,
        MapType::LruPerCpuHash,
        MapType::LpmTrie,
        MapType::SockHash,
        MapType::SkStorage,
        MapType::RingBuf,
    ];

    /// The map type with kernel enum value `value`, if weir knows it.
    pub fn from_u32(value: u32) -> Option<MapType> {
        Self::ALL.iter().copied().find(|t| *t as u32 == value)
    }

    /// The lower-case name bpftool uses, e.g. `"percpu_hash"`.
    pub fn name(self) -> &'static str {
        match self {
            MapType::Hash => "hash",
            MapType::Array => "array",
            MapType::PerCpuHash => "percpu_hash",
            MapType::PerCpuArray => "percpu_array",
            MapType::LruHash => "lru_hash",
            MapType::LruPerCpuHash => "lru_percpu_hash",
            MapType::LpmTrie => "lpm_trie",
            MapType::SockHash => "sockhash",
            MapType::SkStorage => "sk_storage",
            MapType::RingBuf => "ringbuf",
        }
    }

    /// The C constant, e.g. `"BPF_MAP_TYPE_PERCPU_HASH"` (declared in `vendor-headers/weir_bpf.h`).
    pub fn c_constant(self) -> &'static str {
        match self {
            MapType::Hash => "BPF_MAP_TYPE_HASH",
            MapType::Array => "BPF_MAP_TYPE_ARRAY",
            MapType::PerCpuHash => "BPF_MAP_TYPE_PERCPU_HASH",
            MapType::PerCpuArray => "BPF_MAP_TYPE_PERCPU_ARRAY",
            MapType::LruHash => "BPF_MAP_TYPE_LRU_HASH",
            MapType::LruPerCpuHash => "BPF_MAP_TYPE_LRU_PERCPU_HASH",
            MapType::LpmTrie => "BPF_MAP_TYPE_LPM_TRIE",
            MapType::SockHash => "BPF_MAP_TYPE_SOCKHASH",
            MapType::SkStorage => "BPF_MAP_TYPE_SK_STORAGE",
            MapType::RingBuf => "BPF_MAP_TYPE_RINGBUF",
        }
    }

    /// Whether user space sees one value per possible CPU (see [`decode_per_cpu`]).
    pub fn is_percpu(self) -> bool {
        matches!(
            self,
            MapType::PerCpuHash | MapType::PerCpuArray | MapType::LruPerCpuHash
        )
    }

    /// Whether the key is an index (`__u32`) that always exists rather than a hashed key.
    pub fn is_array(self) -> bool {
        matches!(self, MapType::Array | MapType::PerCpuArray)
    }

    /// Whether user space can walk the keys (`BPF_MAP_GET_NEXT_KEY`): socket storage and ring
    /// buffers have none to walk.
    pub fn has_keys(self) -> bool {
        !matches!(self, MapType::SkStorage | MapType::RingBuf)
    }
}

impl fmt::Display for MapType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Map flag values (`BPF_F_*` of `union bpf_attr.map_flags`) weir may use in [`MapDef::flags`].
pub mod map_flags {
    /// `BPF_F_NO_PREALLOC`: required by the kernel for LPM tries and socket storage.
    pub const NO_PREALLOC: u32 = 1 << 0;
}

/// One field of a C struct layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Field name, the same in C and Rust.
    pub name: &'static str,
    /// Byte offset from the start of the struct.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
    /// C type, e.g. `"__u32"`; arrays carry their length: `"__u8[16]"`.
    pub c_type: &'static str,
}

/// The byte layout of a map key or value, as the kernel and the C programs see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// C type name: `"__u32"` for a scalar, `"struct weir_if_key"` for a struct.
    pub c_name: &'static str,
    /// `sizeof` in bytes, padding included.
    pub size: u32,
    /// Struct fields in declaration order; empty for a scalar.
    pub fields: &'static [Field],
}

impl Layout {
    /// Whether this is a struct (as opposed to a scalar such as `__u32`).
    pub fn is_struct(&self) -> bool {
        !self.fields.is_empty()
    }

    /// Bytes not covered by any field (implicit C padding).
    pub fn padding(&self) -> u32 {
        if !self.is_struct() {
            return 0;
        }
        let covered: u32 = self.fields.iter().map(|f| f.size).sum();
        self.size.saturating_sub(covered)
    }
}

/// The definition of one BPF map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapDef {
    /// Map name: the C symbol in `.maps` and the kernel map name (at most 15 bytes).
    pub name: &'static str,
    /// Kernel map type.
    pub map_type: MapType,
    /// Key layout.
    pub key: Layout,
    /// Value layout (one CPU's value for per-CPU maps).
    pub value: Layout,
    /// `max_entries`.
    pub max_entries: u32,
    /// `map_flags` (see [`map_flags`]).
    pub flags: u32,
    /// Bumped whenever key or value layout or meaning changes, so a pinned map of an older
    /// layout is recognised instead of misread.
    pub layout_version: u32,
    /// One-line description (also emitted into the C header).
    pub doc: &'static str,
}

impl MapDef {
    /// The header macro that defines this map in C, e.g. `"WEIR_DEFINE_MAP_IF_COUNTERS"`.
    pub fn c_define_macro(&self) -> String {
        format!("WEIR_DEFINE_MAP_{}", self.name.to_ascii_uppercase())
    }

    /// The header macro holding [`MapDef::layout_version`], e.g. `"WEIR_LAYOUT_VERSION_IF_COUNTERS"`.
    pub fn c_layout_version_macro(&self) -> String {
        format!("WEIR_LAYOUT_VERSION_{}", self.name.to_ascii_uppercase())
    }

    /// Bytes per CPU slot in a per-CPU value buffer (value size rounded up to 8).
    pub fn percpu_slot_size(&self) -> usize {
        percpu_slot_size(self.value.size as usize)
    }
}

/// Hook ids: what an interface counter counts ([`IfCounters`], from [`if_slot::FIRST_HOOK`]).
pub mod hook {
    /// XDP on the interface.
    pub const XDP: u32 = 0;
    /// TC ingress on the interface.
    pub const TC_INGRESS: u32 = 1;
    /// TC egress on the interface.
    pub const TC_EGRESS: u32 = 2;
    /// Fast path: packets redirected straight into this workload (`bpf_redirect_peer`).
    pub const FASTPATH_IN: u32 = 3;
    /// Fast path: packets from this workload redirected out of a host interface.
    pub const FASTPATH_OUT: u32 = 4;
}

/// Interface counter slots: the index of an interface's counters in `if_counters`, which the
/// loader assigns and stores in the interface's `fp_endpoints` entry ([`FpEndpoint::slot`]), so
/// the TC programs count with an array lookup rather than a hash lookup.
pub mod if_slot {
    /// No slot (the interface has no `fp_endpoints` entry, or every slot is taken): its packets
    /// are counted into this slot, which nothing reads, rather than tested for.
    pub const NONE: u32 = 0;
    /// Slots in `if_counters`, [`NONE`] included.
    pub const SLOTS: u32 = 1024;
    /// The hook counted at index 0 of [`IfCounters::packets`] / [`IfCounters::bytes`]; the
    /// others follow in hook id order.
    pub const FIRST_HOOK: u32 = super::hook::TC_INGRESS;
    /// Hooks counted per slot: TC ingress, TC egress, fast path in, fast path out.
    pub const HOOKS: u32 = 4;
}

/// The fast path's maps: `fp_routes_v4`/`fp_routes_v6` (local workload addresses → the
/// workload's host-side interface) and `fp_endpoints` (per interface: flags, its MAC).
pub mod fastpath {
    /// `FpEndpoint::flags`: packets arriving on this interface may take the fast path, and
    /// (for workloads) packets for it may be redirected into it.
    pub const ON: u32 = 1 << 0;
    /// `FpEndpoint::flags`: the interface is a workload's host side.
    pub const WORKLOAD: u32 = 1 << 1;
    /// `FpEndpoint::flags`: the interface may be a policy endpoint (it has `pol_endpoints`
    /// entries in some bank). Without it TC ingress skips the policy lookups; an interface
    /// without an `fp_endpoints` entry is always looked up. Set before a bank switch makes it
    /// an endpoint, cleared only once neither bank holds it.
    pub const POLICY: u32 = 1 << 2;
    /// Default capacity of each route table (addresses of local workloads).
    pub const DEFAULT_ROUTES: u32 = 16_384;
    /// Capacity of `fp_endpoints` and `fp_macs` (interfaces).
    pub const MAX_ENDPOINTS: u32 = 16_384;
}

/// Socket hook ids: the key (array index) of `sock_counters`.
pub mod sock_hook {
    /// cgroup `connect4`.
    pub const CONNECT4: u32 = 0;
    /// cgroup `connect6`.
    pub const CONNECT6: u32 = 1;
    /// cgroup `sendmsg4` (unconnected UDP over IPv4, or v4-mapped on an IPv6 socket).
    pub const SENDMSG4: u32 = 2;
    /// cgroup `sendmsg6`.
    pub const SENDMSG6: u32 = 3;
    /// cgroup `recvmsg4`.
    pub const RECVMSG4: u32 = 4;
    /// cgroup `recvmsg6`.
    pub const RECVMSG6: u32 = 5;
    /// cgroup `getpeername4`.
    pub const GETPEERNAME4: u32 = 6;
    /// cgroup `getpeername6`.
    pub const GETPEERNAME6: u32 = 7;
    /// cgroup `sock_release` (every inet socket closed in the cgroup).
    pub const SOCK_RELEASE: u32 = 8;
}

/// Connect-time load balancing: flags and limits shared by the loader and `sock_addr.c`.
pub mod lb {
    /// [`LbService::flags`](crate::LbService): session affinity per client network namespace.
    pub const SVC_AFFINITY: u32 = 1 << 0;
    /// [`LbService::flags`](crate::LbService): the service is never rewritten (opt-out).
    pub const SVC_EXCLUDED: u32 = 1 << 1;
    /// `LbService::flags`: some cgroups are excluded (`lb exclude`, meshes), so the program
    /// walks the client's cgroup ancestors; without it the walk (≈ 0.4 µs a connect) is skipped.
    pub const SVC_CHECK_CGROUPS: u32 = 1 << 2;
    /// [`LbBackend::flags`](crate::LbBackend): weight 0, gets no new connections (affinity to it
    /// is not honoured either); it stays in `lb_backends` so its counters remain visible.
    pub const BACKEND_DRAINED: u16 = 1 << 0;
    /// The most slots one service's weighted table may have; weights are scaled down to fit.
    pub const MAX_SLOTS: u32 = 1024;
    /// Cgroup levels (root = 0) the exclusion check walks: a cgroup deeper than this is only
    /// excluded through one of its first `MAX_CGROUP_DEPTH` ancestors.
    pub const MAX_CGROUP_DEPTH: u32 = 16;
    /// Default capacity of `lb_backends` and `lb_stats` (`lb capacity backends=N` sets it).
    pub const DEFAULT_BACKENDS: u32 = 65_536;
    /// Default capacity of `lb_conn` (`lb capacity connections=N`).
    pub const DEFAULT_CONNECTIONS: u32 = 65_536;
    /// Default capacity of `lb_services` (`lb capacity services=N`).
    pub const DEFAULT_SERVICES: u32 = 65_536;
    /// Default capacity of `lb_slots` (`lb capacity slots=N`).
    pub const DEFAULT_SLOTS: u32 = 262_144;
}

/// Service-mesh redirect: flags, counter slots and limits shared by the loader and `mesh.c`.
pub mod mesh {
    /// [`MeshCgroup::flags`](crate::MeshCgroup): the cgroup's outbound TCP goes to its proxy.
    pub const MESHED: u32 = 1 << 0;
    /// [`MeshCgroup::flags`](crate::MeshCgroup): a proxy's cgroup, never redirected (it wins
    /// over a meshed ancestor: a sidecar's cgroup may sit inside its workload's).
    pub const PROXY: u32 = 1 << 1;
    /// [`MeshCgroup::flags`](crate::MeshCgroup): processes with uid
    /// [`MeshCgroup::proxy_uid`](crate::MeshCgroup) are the proxy, never redirected.
    pub const PROXY_UID: u32 = 1 << 2;
    /// `mesh_counters` slot: IPv4 (or v4-mapped) connections redirected to a proxy.
    pub const COUNT_REDIRECT4: u32 = 0;
    /// `mesh_counters` slot: IPv6 connections redirected to a proxy.
    pub const COUNT_REDIRECT6: u32 = 1;
    /// `mesh_counters` slot: redirected connections whose (client, proxy) pair was recorded
    /// once established.
    pub const COUNT_RECORDED: u32 = 2;
    /// `mesh_counters` slot: `SO_ORIGINAL_DST` / `IP6T_SO_ORIGINAL_DST` answered.
    pub const COUNT_ANSWERED: u32 = 3;
    /// `mesh_counters` slot: `SO_ORIGINAL_DST` asked for a socket weir did not redirect.
    pub const COUNT_UNKNOWN: u32 = 4;
    /// `mesh_counters` slot: inbound connections handed to the proxy's inbound listener.
    pub const COUNT_INBOUND: u32 = 5;
    /// `mesh_counters` slot: inbound connections refused: no proxy listens on the inbound port.
    pub const COUNT_INBOUND_REFUSED: u32 = 6;
    /// `mesh_counters` slot: `SO_ORIGINAL_DST` answered for an inbound-captured connection
    /// (its own local address).
    pub const COUNT_INBOUND_ANSWERED: u32 = 7;
    /// The placeholder `mesh_inbound` carries in its code for the network namespace cookie it
    /// serves: the loader writes the real cookie into each netns's copy of the program.
    pub const NETNS_PLACEHOLDER: u64 = 0x7765_6972_6e65_746e;
    /// Capacity of `mesh_inbound` (captured network namespaces).
    pub const MAX_INBOUND: u32 = 1024;
    /// Capacity of `mesh_listeners` (inbound listeners: one or two per captured netns).
    pub const MAX_LISTENERS: u32 = 4096;
    /// Number of `mesh_counters` slots.
    pub const COUNTERS: u32 = 8;
    /// The `getsockopt` option name of `SO_ORIGINAL_DST` (level `SOL_IP`) and of
    /// `IP6T_SO_ORIGINAL_DST` (level `SOL_IPV6`): both are 80.
    pub const SO_ORIGINAL_DST: u32 = 80;
    /// Capacity of `mesh_cgroups` (meshed and proxy cgroups together).
    pub const MAX_CGROUPS: u32 = 4096;
    /// Capacity of `mesh_ports` (excluded destination ports over every mesh).
    pub const MAX_PORTS: u32 = 16_384;
}

/// Prefilter verdict reasons: the key (array index) of `prefilter_stats`.
pub mod prefilter_reason {
    /// Not denied (or not IP at all): passed to the stack.
    pub const PASSED: u32 = 0;
    /// Source denied: dropped (and the deny entry's `hits` incremented).
    pub const DROPPED: u32 = 1;
    /// Source denied, but sent to a failsafe protocol/port: passed.
    pub const FAILSAFE: u32 = 2;
    /// Could not be parsed as far as judging it needs: passed to the stack, which deals with it.
    pub const UNPARSED: u32 = 3;
    /// Number of reasons (`prefilter_stats` has this many entries).
    pub const COUNT: u32 = 4;

    /// The lower-case name of a reason, e.g. `"failsafe"`.
    pub fn name(reason: u32) -> Option<&'static str> {
        match reason {
            PASSED => Some("passed"),
            DROPPED => Some("dropped"),
            FAILSAFE => Some("failsafe"),
            UNPARSED => Some("unparsed"),
            _ => None,
        }
    }
}

/// The layout of `failsafe_in`: one bitmap of 65536 destination ports per protocol slot, stored as
/// [`WORDS_PER_SLOT`](failsafe::WORDS_PER_SLOT) `u64` words (native byte order). Port `p` of slot
/// `s` is bit `p % 64` of word `s * WORDS_PER_SLOT + p / 64` (see [`failsafe::position`]).
pub mod failsafe {
    /// Protocol slot of TCP (IP protocol 6).
    pub const TCP: u32 = 0;
    /// Protocol slot of UDP (IP protocol 17).
    pub const UDP: u32 = 1;
    /// Protocol slot of SCTP (IP protocol 132).
    pub const SCTP: u32 = 2;
    /// Number of protocol slots.
    pub const SLOTS: u32 = 3;
    /// `u64` words per slot: 65536 ports / 64 bits.
    pub const WORDS_PER_SLOT: u32 = 1024;

    /// The word index (map key) and the bit mask within that word of `port` in protocol `slot`.
    pub const fn position(slot: u32, port: u16) -> (u32, u64) {
        (
            slot * WORDS_PER_SLOT + (port as u32) / 64,
            1u64 << ((port as u32) % 64),
        )
    }

    /// The protocol slot of IP protocol number `proto`, if failsafes can name it.
    pub const fn slot_of_ip_proto(proto: u8) -> Option<u32> {
        match proto {
            6 => Some(TCP),
            17 => Some(UDP),
            132 => Some(SCTP),
            _ => None,
        }
    }
}

/// The IPv4 deny table (`deny_v4_root` + `deny_v4_nodes`): a multibit trie with a
/// 16-bit first stride and four 4-bit strides, so a lookup costs at most five array reads
/// whatever the number of entries (an LPM trie's cost grows with its depth).
///
/// A slot is a `u32`: [`EMPTY`](deny_dir::EMPTY) (no entry covers these addresses), a leaf
/// `id + 1` (the longest deny entry covering all of them is `prefilter_v4[id]`), or
/// [`NODE`](deny_dir::NODE)` | chunk` (look at chunk `chunk` of `deny_v4_nodes`, slot =
/// the next 4 address bits). Root slot = the top 16 bits.
pub mod deny_dir {
    /// A slot no entry covers.
    pub const EMPTY: u32 = 0;
    /// Flag of a slot that points to a chunk (the chunk number is in the other bits).
    pub const NODE: u32 = 1 << 31;
    /// Address bits the root indexes.
    pub const ROOT_BITS: u32 = 16;
    /// Slots in the root (`deny_v4_root` entries).
    pub const ROOT_SLOTS: u32 = 1 << ROOT_BITS;
    /// Address bits each chunk level indexes.
    pub const CHUNK_BITS: u32 = 4;
    /// Slots per chunk.
    pub const CHUNK_SLOTS: u32 = 1 << CHUNK_BITS;
    /// Chunk levels below the root (16 + 4 * 4 = 32 bits).
    pub const LEVELS: u32 = 4;
    /// The largest entry id a leaf can name.
    pub const MAX_ID: u32 = NODE - 2;
}

/// Network policy at TC (`tc.c`): endpoint and rule-set flags, classifier table layout, rule
/// actions, conntrack states and timeouts, statistics and event codes.
///
/// The classifier tables live in two banks: `pol_active` names the bank packets read, and every
/// id stored in a bank (rule set, table, chunk, bitmap) points into that bank's half of its map,
/// so the loader can write the other bank completely and switch with one write.
pub mod pol {
    /// [`PolEndpoint::direction`](crate::PolEndpoint): traffic into the endpoint (the remote
    /// address is the source).
    pub const DIR_INGRESS: u32 = 0;
    /// Traffic out of the endpoint (the remote address is the destination).
    pub const DIR_EGRESS: u32 = 1;
    /// [`PolEndpoint::flags`](crate::PolEndpoint): a host endpoint (failsafe ports apply).
    pub const EP_HOST: u16 = 1 << 0;
    /// [`PolEndpoint::ruleset`](crate::PolEndpoint) of a direction no policy selects: flows
    /// are tracked (so replies to the other direction pass) and allowed.
    pub const NO_RULESET: u32 = u32::MAX;
    /// [`PolRuleSet::flags`](crate::PolRuleSet): an enforcing policy selects the endpoints.
    pub const RS_ENFORCED: u32 = 1 << 0;
    /// An audit policy selects them.
    pub const RS_AUDITED: u32 = 1 << 1;
    /// Tables per rule set, at `table + T_*`.
    pub const TABLES_PER_SET: u32 = 6;
    /// IP protocol (8-bit keys: root only).
    pub const T_PROTO: u32 = 0;
    /// Remote IPv4 address.
    pub const T_V4: u32 = 1;
    /// Remote IPv6 address.
    pub const T_V6: u32 = 2;
    /// Source port.
    pub const T_SPORT: u32 = 3;
    /// Destination port.
    pub const T_DPORT: u32 = 4;
    /// ICMP `type << 8 | code`.
    pub const T_ICMP: u32 = 5;
    /// Key bits the root of a table indexes (256 slots per table in `pol_root`).
    pub const ROOT_BITS: u32 = 8;
    /// Root slots per table.
    pub const ROOT_SLOTS: u32 = 1 << ROOT_BITS;
    /// Key bits per chunk level (`pol_nodes` holds 16-slot chunks).
    pub const CHUNK_BITS: u32 = 4;
    /// A slot pointing to a chunk (the chunk number in the other bits); 0 is empty; any other
    /// value is a leaf, `bitmap id + 1`.
    pub const NODE: u32 = 1 << 31;
    /// Rules per rule set: the bitmap width, and the stride of `pol_rules` (`ruleset * 256 +
    /// bit`).
    pub const MAX_RULES: u32 = 256;
    /// [`PolRule::action`](crate::PolRule) values.
    pub const ACT_ALLOW: u8 = 0;
    /// Deny.
    pub const ACT_DENY: u8 = 1;
    /// Log and go on.
    pub const ACT_LOG: u8 = 2;
    /// Skip the rest of the policy.
    pub const ACT_PASS: u8 = 3;
    /// Rule or policy id meaning "none" (the default deny, a failsafe, an unselected direction).
    pub const NONE: u32 = u32::MAX;

    /// Conntrack state: TCP, SYN seen.
    pub const CT_TCP_SYN: u8 = 1;
    /// TCP, a packet seen both ways.
    pub const CT_TCP_EST: u8 = 2;
    /// TCP, FIN seen from both sides.
    pub const CT_TCP_FIN: u8 = 3;
    /// TCP, RST seen.
    pub const CT_TCP_CLOSED: u8 = 4;
    /// UDP, SCTP, ICMP echo, other protocols: opened, no reply yet.
    pub const CT_OPEN: u8 = 5;
    /// A reply has been seen.
    pub const CT_REPLIED: u8 = 6;
    /// [`Ct::flags`](crate::Ct): the flow was opened by a packet leaving the endpoint.
    pub const CT_F_OPENED_EGRESS: u8 = 1 << 0;
    /// The endpoint side sent a FIN.
    pub const CT_F_FIN_LOCAL: u8 = 1 << 1;
    /// The remote side sent a FIN.
    pub const CT_F_FIN_REMOTE: u8 = 1 << 2;
    /// Timeouts in seconds, by state (checked on lookup).
    pub const CT_TIMEOUT_SYN: u32 = 30;
    /// Established TCP.
    pub const CT_TIMEOUT_EST: u32 = 7200;
    /// TCP after FINs both ways.
    pub const CT_TIMEOUT_FIN: u32 = 30;
    /// TCP after a RST.
    pub const CT_TIMEOUT_CLOSED: u32 = 10;
    /// UDP and others before a reply.
    pub const CT_TIMEOUT_OPEN: u32 = 30;
    /// UDP and others after a reply.
    pub const CT_TIMEOUT_REPLIED: u32 = 180;
    /// Default capacity of `pol_ct` (`conntrack capacity entries=N`).
    pub const DEFAULT_CT_ENTRIES: u32 = 65_536;
    /// Default rule sets per bank (`policy capacity rule-sets=N`).
    pub const DEFAULT_RULE_SETS: u32 = 256;
    /// Default chunks per bank (`policy capacity chunks=N`).
    pub const DEFAULT_CHUNKS: u32 = 32_768;
    /// Default bitmaps per bank (`policy capacity bitmaps=N`).
    pub const DEFAULT_BITMAPS: u32 = 16_384;
    /// `pol_set_members` holds this many members per chunk of a bank (`pol_nodes`' half).
    pub const SET_MEMBERS_PER_CHUNK: u32 = 4;
    /// Rule sets one set's record (`pol_sets`) lists, for `weir set`.
    pub const SET_MAX_RULESETS: u32 = 16;
    /// Sets one rule set's record (`pol_set_rs`) lists.
    pub const RS_MAX_SETS: u32 = 8;
    /// [`PolSet::nrulesets`](crate::PolSet) of a set `weir set` cannot change in place.
    pub const SET_REFS_OVER: u32 = u32::MAX;
    /// [`PolSetMeta::valid`](crate::PolSetMeta): the set index describes bank `bank`.
    pub const SET_META_VALID: u32 = 0x5e7;
    /// Sets `pol_sets` holds.
    pub const MAX_SETS: u32 = 4096;
    /// Inline remote CIDR marks `pol_set_inline` holds.
    pub const MAX_INLINE_MARKS: u32 = 65_536;
    /// Rules counted in `pol_rule_ctrs` (by config rule index).
    pub const MAX_RULE_IDS: u32 = 16_384;
    /// Policies counted in `pol_pol_ctrs` (by config policy index).
    pub const MAX_POLICY_IDS: u32 = 4096;
    /// `pol_names` key of policy id 0 (rule ids come first, from 0).
    pub const NAME_POLICY_BASE: u32 = MAX_RULE_IDS;

    /// `pol_stats` index: new flows allowed.
    pub const STAT_NEW: u32 = 0;
    /// Packets denied by a rule.
    pub const STAT_DENIED: u32 = 1;
    /// Packets denied by the default deny.
    pub const STAT_DEFAULT_DENIED: u32 = 2;
    /// New flows an audit policy would have denied.
    pub const STAT_AUDIT: u32 = 3;
    /// Packets of tracked flows (policy skipped).
    pub const STAT_ESTABLISHED: u32 = 4;
    /// ICMP errors about tracked flows.
    pub const STAT_RELATED: u32 = 5;
    /// New flows to a failsafe port of a host endpoint.
    pub const STAT_FAILSAFE: u32 = 6;
    /// Packets allowed without a conntrack entry (ICMP other than echo, neighbour discovery).
    pub const STAT_UNTRACKED: u32 = 7;
    /// Events written to `pol_events`.
    pub const STAT_EVENTS: u32 = 8;
    /// Events not written (rate limit or full ring).
    pub const STAT_EVENTS_LOST: u32 = 9;
    /// Conntrack entries that could not be created.
    pub const STAT_CT_FULL: u32 = 10;
    /// Entries of `pol_stats`.
    pub const STATS: u32 = 11;

    /// [`PolEvent::verdict`](crate::PolEvent): dropped.
    pub const EV_DENY: u8 = 1;
    /// A `log` rule matched.
    pub const EV_LOG: u8 = 2;
    /// An audit policy would have dropped it.
    pub const EV_AUDIT: u8 = 3;
    /// Event budget: one event costs this many nanoseconds of credit per CPU (1000/s).
    pub const EVENT_COST_NS: u32 = 1_000_000;
    /// Credit a CPU may save up, in events (a burst).
    pub const EVENT_BURST: u32 = 200;
    /// Bytes of the `pol_events` ring.
    pub const EVENT_RING_BYTES: u32 = 256 * 1024;

    /// The name of a `pol_stats` index.
    pub fn stat_name(index: u32) -> Option<&'static str> {
        Some(match index {
            STAT_NEW => "new-allowed",
            STAT_DENIED => "denied-by-rule",
            STAT_DEFAULT_DENIED => "denied-by-default",
            STAT_AUDIT => "audit-would-deny",
            STAT_ESTABLISHED => "established",
            STAT_RELATED => "related",
            STAT_FAILSAFE => "failsafe",
            STAT_UNTRACKED => "untracked",
            STAT_EVENTS => "events",
            STAT_EVENTS_LOST => "events-lost",
            STAT_CT_FULL => "conntrack-full",
            _ => return None,
        })
    }
}

/// A named integer constant shared by Rust and C (emitted as `#define`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Constant {
    /// C macro name, e.g. `"WEIR_HOOK_XDP"`.
    pub c_name: &'static str,
    /// Value.
    pub value: u32,
}

/// A documented group of [`Constant`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConstGroup {
    /// What the constants are for (emitted as a C comment).
    pub doc: &'static str,
    /// The constants.
    pub consts: &'static [Constant],
}

/// Every constant the C header defines.
pub const CONSTANTS: &[ConstGroup] = &[
    ConstGroup {
        doc: "IPv4 deny table slots (deny_v4_root, deny_v4_nodes): 0 empty, NODE|chunk, or entry id + 1.",
        consts: &[
            Constant {
                c_name: "WEIR_DIR_NODE",
                value: deny_dir::NODE,
            },
            Constant {
                c_name: "WEIR_DIR_ROOT_BITS",
                value: deny_dir::ROOT_BITS,
            },
            Constant {
                c_name: "WEIR_DIR_CHUNK_BITS",
                value: deny_dir::CHUNK_BITS,
            },
            Constant {
                c_name: "WEIR_DIR_LEVELS",
                value: deny_dir::LEVELS,
            },
        ],
    },
    ConstGroup {
        doc: "Hook ids: what an interface counter counts (struct weir_if_ctrs, from WEIR_IF_FIRST_HOOK).",
        consts: &[
            Constant {
                c_name: "WEIR_HOOK_XDP",
                value: hook::XDP,
            },
            Constant {
                c_name: "WEIR_HOOK_TC_INGRESS",
                value: hook::TC_INGRESS,
            },
            Constant {
                c_name: "WEIR_HOOK_TC_EGRESS",
                value: hook::TC_EGRESS,
            },
            Constant {
                c_name: "WEIR_HOOK_FASTPATH_IN",
                value: hook::FASTPATH_IN,
            },
            Constant {
                c_name: "WEIR_HOOK_FASTPATH_OUT",
                value: hook::FASTPATH_OUT,
            },
        ],
    },
    ConstGroup {
        doc: "Interface counter slots (if_counters, the slot field of struct weir_fp_endpoint).",
        consts: &[
            Constant {
                c_name: "WEIR_IF_SLOT_NONE",
                value: if_slot::NONE,
            },
            Constant {
                c_name: "WEIR_IF_SLOTS",
                value: if_slot::SLOTS,
            },
            Constant {
                c_name: "WEIR_IF_FIRST_HOOK",
                value: if_slot::FIRST_HOOK,
            },
            Constant {
                c_name: "WEIR_IF_HOOKS",
                value: if_slot::HOOKS,
            },
        ],
    },
    ConstGroup {
        doc: "Fast path endpoint flags (struct weir_fp_endpoint).",
        consts: &[
            Constant {
                c_name: "WEIR_FP_ON",
                value: fastpath::ON,
            },
            Constant {
                c_name: "WEIR_FP_WORKLOAD",
                value: fastpath::WORKLOAD,
            },
            Constant {
                c_name: "WEIR_FP_POLICY",
                value: fastpath::POLICY,
            },
        ],
    },
    ConstGroup {
        doc: "Socket hook ids: the key of sock_counters.",
        consts: &[
            Constant {
                c_name: "WEIR_SOCK_HOOK_CONNECT4",
                value: sock_hook::CONNECT4,
            },
            Constant {
                c_name: "WEIR_SOCK_HOOK_CONNECT6",
                value: sock_hook::CONNECT6,
            },
            Constant {
                c_name: "WEIR_SOCK_HOOK_SENDMSG4",
                value: sock_hook::SENDMSG4,
            },
            Constant {
                c_name: "WEIR_SOCK_HOOK_SENDMSG6",
                value: sock_hook::SENDMSG6,
            },
            Constant {
                c_name: "WEIR_SOCK_HOOK_RECVMSG4",
                value: sock_hook::RECVMSG4,
            },
            Constant {
                c_name: "WEIR_SOCK_HOOK_RECVMSG6",
                value: sock_hook::RECVMSG6,
            },
            Constant {
                c_name: "WEIR_SOCK_HOOK_GETPEERNAME4",
                value: sock_hook::GETPEERNAME4,
            },
            Constant {
                c_name: "WEIR_SOCK_HOOK_GETPEERNAME6",
                value: sock_hook::GETPEERNAME6,
            },
            Constant {
                c_name: "WEIR_SOCK_HOOK_SOCK_RELEASE",
                value: sock_hook::SOCK_RELEASE,
            },
        ],
    },
    ConstGroup {
        doc: "Connect-time load balancing: service and backend flags, limits.",
        consts: &[
            Constant {
                c_name: "WEIR_LB_SVC_AFFINITY",
                value: lb::SVC_AFFINITY,
            },
            Constant {
                c_name: "WEIR_LB_SVC_EXCLUDED",
                value: lb::SVC_EXCLUDED,
            },
            Constant {
                c_name: "WEIR_LB_SVC_CHECK_CGROUPS",
                value: lb::SVC_CHECK_CGROUPS,
            },
            Constant {
                c_name: "WEIR_LB_BACKEND_DRAINED",
                value: lb::BACKEND_DRAINED as u32,
            },
            Constant {
                c_name: "WEIR_LB_MAX_SLOTS",
                value: lb::MAX_SLOTS,
            },
            Constant {
                c_name: "WEIR_LB_MAX_CGROUP_DEPTH",
                value: lb::MAX_CGROUP_DEPTH,
            },
        ],
    },
    ConstGroup {
        doc: "Service-mesh redirect: mesh_cgroups flags, mesh_counters slots, the SO_ORIGINAL_DST option name.",
        consts: &[
            Constant {
                c_name: "WEIR_MESH_MESHED",
                value: mesh::MESHED,
            },
            Constant {
                c_name: "WEIR_MESH_PROXY",
                value: mesh::PROXY,
            },
            Constant {
                c_name: "WEIR_MESH_PROXY_UID",
                value: mesh::PROXY_UID,
            },
            Constant {
                c_name: "WEIR_MESH_COUNT_REDIRECT4",
                value: mesh::COUNT_REDIRECT4,
            },
            Constant {
                c_name: "WEIR_MESH_COUNT_REDIRECT6",
                value: mesh::COUNT_REDIRECT6,
            },
            Constant {
                c_name: "WEIR_MESH_COUNT_RECORDED",
                value: mesh::COUNT_RECORDED,
            },
            Constant {
                c_name: "WEIR_MESH_COUNT_ANSWERED",
                value: mesh::COUNT_ANSWERED,
            },
            Constant {
                c_name: "WEIR_MESH_COUNT_UNKNOWN",
                value: mesh::COUNT_UNKNOWN,
            },
            Constant {
                c_name: "WEIR_MESH_COUNT_INBOUND",
                value: mesh::COUNT_INBOUND,
            },
            Constant {
                c_name: "WEIR_MESH_COUNT_INBOUND_REFUSED",
                value: mesh::COUNT_INBOUND_REFUSED,
            },
            Constant {
                c_name: "WEIR_MESH_COUNT_INBOUND_ANSWERED",
                value: mesh::COUNT_INBOUND_ANSWERED,
            },
            Constant {
                c_name: "WEIR_SO_ORIGINAL_DST",
                value: mesh::SO_ORIGINAL_DST,
            },
        ],
    },
    ConstGroup {
        doc: "Prefilter verdict reasons: the key of prefilter_stats.",
        consts: &[
            Constant {
                c_name: "WEIR_PREFILTER_PASSED",
                value: prefilter_reason::PASSED,
            },
            Constant {
                c_name: "WEIR_PREFILTER_DROPPED",
                value: prefilter_reason::DROPPED,
            },
            Constant {
                c_name: "WEIR_PREFILTER_FAILSAFE",
                value: prefilter_reason::FAILSAFE,
            },
            Constant {
                c_name: "WEIR_PREFILTER_UNPARSED",
                value: prefilter_reason::UNPARSED,
            },
            Constant {
                c_name: "WEIR_PREFILTER_REASONS",
                value: prefilter_reason::COUNT,
            },
        ],
    },
    ConstGroup {
        doc: "failsafe_in: port p of protocol slot s is bit p % 64 of word s * WEIR_FAILSAFE_WORDS_PER_SLOT + p / 64.",
        consts: &[
            Constant {
                c_name: "WEIR_FAILSAFE_SLOT_TCP",
                value: failsafe::TCP,
            },
            Constant {
                c_name: "WEIR_FAILSAFE_SLOT_UDP",
                value: failsafe::UDP,
            },
            Constant {
                c_name: "WEIR_FAILSAFE_SLOT_SCTP",
                value: failsafe::SCTP,
            },
            Constant {
                c_name: "WEIR_FAILSAFE_WORDS_PER_SLOT",
                value: failsafe::WORDS_PER_SLOT,
            },
        ],
    },
    ConstGroup {
        doc: "Network policy at TC: endpoints, rule sets, classifier tables, actions, conntrack, statistics, events.",
        consts: &[
            Constant {
                c_name: "WEIR_POL_DIR_INGRESS",
                value: pol::DIR_INGRESS,
            },
            Constant {
                c_name: "WEIR_POL_DIR_EGRESS",
                value: pol::DIR_EGRESS,
            },
            Constant {
                c_name: "WEIR_POL_EP_HOST",
                value: pol::EP_HOST as u32,
            },
            Constant {
                c_name: "WEIR_POL_NO_RULESET",
                value: pol::NO_RULESET,
            },
            Constant {
                c_name: "WEIR_POL_RS_ENFORCED",
                value: pol::RS_ENFORCED,
            },
            Constant {
                c_name: "WEIR_POL_RS_AUDITED",
                value: pol::RS_AUDITED,
            },
            Constant {
                c_name: "WEIR_POL_TABLES_PER_SET",
                value: pol::TABLES_PER_SET,
            },
            Constant {
                c_name: "WEIR_POL_T_PROTO",
                value: pol::T_PROTO,
            },
            Constant {
                c_name: "WEIR_POL_T_V4",
                value: pol::T_V4,
            },
            Constant {
                c_name: "WEIR_POL_T_V6",
                value: pol::T_V6,
            },
            Constant {
                c_name: "WEIR_POL_T_SPORT",
                value: pol::T_SPORT,
            },
            Constant {
                c_name: "WEIR_POL_T_DPORT",
                value: pol::T_DPORT,
            },
            Constant {
                c_name: "WEIR_POL_T_ICMP",
                value: pol::T_ICMP,
            },
            Constant {
                c_name: "WEIR_POL_ROOT_BITS",
                value: pol::ROOT_BITS,
            },
            Constant {
                c_name: "WEIR_POL_CHUNK_BITS",
                value: pol::CHUNK_BITS,
            },
            Constant {
                c_name: "WEIR_POL_NODE",
                value: pol::NODE,
            },
            Constant {
                c_name: "WEIR_POL_MAX_RULES",
                value: pol::MAX_RULES,
            },
            Constant {
                c_name: "WEIR_POL_ACT_ALLOW",
                value: pol::ACT_ALLOW as u32,
            },
            Constant {
                c_name: "WEIR_POL_ACT_DENY",
                value: pol::ACT_DENY as u32,
            },
            Constant {
                c_name: "WEIR_POL_ACT_LOG",
                value: pol::ACT_LOG as u32,
            },
            Constant {
                c_name: "WEIR_POL_ACT_PASS",
                value: pol::ACT_PASS as u32,
            },
            Constant {
                c_name: "WEIR_POL_NONE",
                value: pol::NONE,
            },
            Constant {
                c_name: "WEIR_CT_TCP_SYN",
                value: pol::CT_TCP_SYN as u32,
            },
            Constant {
                c_name: "WEIR_CT_TCP_EST",
                value: pol::CT_TCP_EST as u32,
            },
            Constant {
                c_name: "WEIR_CT_TCP_FIN",
                value: pol::CT_TCP_FIN as u32,
            },
            Constant {
                c_name: "WEIR_CT_TCP_CLOSED",
                value: pol::CT_TCP_CLOSED as u32,
            },
            Constant {
                c_name: "WEIR_CT_OPEN",
                value: pol::CT_OPEN as u32,
            },
            Constant {
                c_name: "WEIR_CT_REPLIED",
                value: pol::CT_REPLIED as u32,
            },
            Constant {
                c_name: "WEIR_CT_F_OPENED_EGRESS",
                value: pol::CT_F_OPENED_EGRESS as u32,
            },
            Constant {
                c_name: "WEIR_CT_F_FIN_LOCAL",
                value: pol::CT_F_FIN_LOCAL as u32,
            },
            Constant {
                c_name: "WEIR_CT_F_FIN_REMOTE",
                value: pol::CT_F_FIN_REMOTE as u32,
            },
            Constant {
                c_name: "WEIR_CT_TIMEOUT_SYN",
                value: pol::CT_TIMEOUT_SYN,
            },
            Constant {
                c_name: "WEIR_CT_TIMEOUT_EST",
                value: pol::CT_TIMEOUT_EST,
            },
            Constant {
                c_name: "WEIR_CT_TIMEOUT_FIN",
                value: pol::CT_TIMEOUT_FIN,
            },
            Constant {
                c_name: "WEIR_CT_TIMEOUT_CLOSED",
                value: pol::CT_TIMEOUT_CLOSED,
            },
            Constant {
                c_name: "WEIR_CT_TIMEOUT_OPEN",
                value: pol::CT_TIMEOUT_OPEN,
            },
            Constant {
                c_name: "WEIR_CT_TIMEOUT_REPLIED",
                value: pol::CT_TIMEOUT_REPLIED,
            },
            Constant {
                c_name: "WEIR_POL_MAX_RULE_IDS",
                value: pol::MAX_RULE_IDS,
            },
            Constant {
                c_name: "WEIR_POL_MAX_POLICY_IDS",
                value: pol::MAX_POLICY_IDS,
            },
            Constant {
                c_name: "WEIR_POL_STAT_NEW",
                value: pol::STAT_NEW,
            },
            Constant {
                c_name: "WEIR_POL_STAT_DENIED",
                value: pol::STAT_DENIED,
            },
            Constant {
                c_name: "WEIR_POL_STAT_DEFAULT_DENIED",
                value: pol::STAT_DEFAULT_DENIED,
            },
            Constant {
                c_name: "WEIR_POL_STAT_AUDIT",
                value: pol::STAT_AUDIT,
            },
            Constant {
                c_name: "WEIR_POL_STAT_ESTABLISHED",
                value: pol::STAT_ESTABLISHED,
            },
            Constant {
                c_name: "WEIR_POL_STAT_RELATED",
                value: pol::STAT_RELATED,
            },
            Constant {
                c_name: "WEIR_POL_STAT_FAILSAFE",
                value: pol::STAT_FAILSAFE,
            },
            Constant {
                c_name: "WEIR_POL_STAT_UNTRACKED",
                value: pol::STAT_UNTRACKED,
            },
            Constant {
                c_name: "WEIR_POL_STAT_EVENTS",
                value: pol::STAT_EVENTS,
            },
            Constant {
                c_name: "WEIR_POL_STAT_EVENTS_LOST",
                value: pol::STAT_EVENTS_LOST,
            },
            Constant {
                c_name: "WEIR_POL_STAT_CT_FULL",
                value: pol::STAT_CT_FULL,
            },
            Constant {
                c_name: "WEIR_POL_STATS",
                value: pol::STATS,
            },
            Constant {
                c_name: "WEIR_POL_EV_DENY",
                value: pol::EV_DENY as u32,
            },
            Constant {
                c_name: "WEIR_POL_EV_LOG",
                value: pol::EV_LOG as u32,
            },
            Constant {
                c_name: "WEIR_POL_EV_AUDIT",
                value: pol::EV_AUDIT as u32,
            },
            Constant {
                c_name: "WEIR_POL_EVENT_COST_NS",
                value: pol::EVENT_COST_NS,
            },
            Constant {
                c_name: "WEIR_POL_EVENT_BURST",
                value: pol::EVENT_BURST,
            },
        ],
    },
];

/// Every weir map.
pub const MAPS: &[MapDef] = &[
    MapDef {
        name: "if_counters",
        map_type: MapType::PerCpuArray,
        key: <u32 as Codec>::LAYOUT,
        value: IfCounters::LAYOUT,
        max_entries: if_slot::SLOTS,
        flags: 0,
        layout_version: 2,
        doc: "Packets and bytes per interface and TC hook, per CPU, by the interface's slot (WEIR_IF_SLOT_*; fp_endpoints names it).",
    },
    MapDef {
        name: "sock_counters",
        map_type: MapType::PerCpuArray,
        key: <u32 as Codec>::LAYOUT,
        value: Counter::LAYOUT,
        max_entries: 16,
        flags: 0,
        layout_version: 1,
        doc: "Calls per socket hook (index: WEIR_SOCK_HOOK_*), per CPU; bytes stays 0.",
    },
    // Connect-time load balancing. Every address is 16 bytes: IPv6 as is, IPv4 v4-mapped
    // (::ffff:a.b.c.d), so one layout serves both families and v4-mapped destinations on IPv6
    // sockets. The maps user space alone writes are NO_PREALLOC (they are mostly empty).
    MapDef {
        name: "lb_services",
        map_type: MapType::Hash,
        key: LbServiceKey::LAYOUT,
        value: LbService::LAYOUT,
        max_entries: lb::DEFAULT_SERVICES,
        flags: map_flags::NO_PREALLOC,
        layout_version: 1,
        doc: "Load-balanced services: (VIP, port, protocol) -> id, slot count (0: refuse), flags, affinity timeout.",
    },
    MapDef {
        name: "lb_slots",
        map_type: MapType::Hash,
        key: LbSlotKey::LAYOUT,
        value: <u32 as Codec>::LAYOUT,
        max_entries: lb::DEFAULT_SLOTS,
        flags: map_flags::NO_PREALLOC,
        layout_version: 1,
        doc: "Weighted backend tables: (service id, slot 0..slots-1) -> backend id; a random slot is a weighted pick.",
    },
    MapDef {
        name: "lb_backends",
        map_type: MapType::Hash,
        key: <u32 as Codec>::LAYOUT,
        value: LbBackend::LAYOUT,
        max_entries: lb::DEFAULT_BACKENDS,
        flags: map_flags::NO_PREALLOC,
        layout_version: 1,
        doc: "Backends by id (one per service and backend address): address, port, owning service, drained flag.",
    },
    MapDef {
        name: "lb_revnat",
        map_type: MapType::LruHash,
        key: LbRevNatKey::LAYOUT,
        value: LbRevNat::LAYOUT,
        max_entries: 65_536,
        flags: 0,
        layout_version: 1,
        doc: "Reverse translation by socket cookie and backend address: the VIP recvmsg and getpeername report.",
    },
    MapDef {
        name: "lb_conn",
        map_type: MapType::Hash,
        key: <u64 as Codec>::LAYOUT,
        value: LbSock::LAYOUT,
        max_entries: lb::DEFAULT_CONNECTIONS,
        flags: map_flags::NO_PREALLOC,
        layout_version: 1,
        doc: "Per connected socket (TCP, connected UDP), by socket cookie: the backend connect() chose and the VIP it stands for; deleted by cgroup/sock_release when the socket closes (lb_sock takes over when full).",
    },
    MapDef {
        name: "lb_sock",
        map_type: MapType::SkStorage,
        key: <u32 as Codec>::LAYOUT,
        value: LbSock::LAYOUT,
        max_entries: 0,
        flags: map_flags::NO_PREALLOC,
        layout_version: 1,
        doc: "Per connected socket (TCP, connected UDP): the backend connect() chose and the VIP it stands for; freed with the socket.",
    },
    MapDef {
        name: "lb_affinity",
        map_type: MapType::LruHash,
        key: LbAffinityKey::LAYOUT,
        value: LbAffinity::LAYOUT,
        max_entries: 65_536,
        flags: 0,
        layout_version: 1,
        doc: "Session affinity: (client netns cookie, service id) -> backend id and when it was last used.",
    },
    MapDef {
        name: "lb_exclude",
        map_type: MapType::Hash,
        key: <u64 as Codec>::LAYOUT,
        value: <u32 as Codec>::LAYOUT,
        max_entries: 4096,
        flags: map_flags::NO_PREALLOC,
        layout_version: 1,
        doc: "Cgroup ids (value 1) whose processes, and their descendants, are never load-balanced.",
    },
    MapDef {
        name: "lb_stats",
        map_type: MapType::PerCpuHash,
        key: <u32 as Codec>::LAYOUT,
        value: Counter::LAYOUT,
        max_entries: lb::DEFAULT_BACKENDS,
        flags: map_flags::NO_PREALLOC,
        layout_version: 2,
        doc: "Connections and datagrams rewritten to each backend (key: backend id; user space creates the entry with the backend), per CPU; bytes stays 0.",
    },
    // Service-mesh redirect (mesh.c). Addresses are 16 bytes, IPv4 v4-mapped, as for the LB.
    MapDef {
        name: "mesh_cgroups",
        map_type: MapType::Hash,
        key: <u64 as Codec>::LAYOUT,
        value: MeshCgroup::LAYOUT,
        max_entries: mesh::MAX_CGROUPS,
        flags: map_flags::NO_PREALLOC,
        layout_version: 1,
        doc: "Meshed and proxy cgroups by cgroup id (a cgroup counts for its descendants): role flags, proxy port and uid.",
    },
    MapDef {
        name: "mesh_ports",
        map_type: MapType::Hash,
        key: MeshPortKey::LAYOUT,
        value: <u32 as Codec>::LAYOUT,
        max_entries: mesh::MAX_PORTS,
        flags: map_flags::NO_PREALLOC,
        layout_version: 1,
        doc: "Destination ports (value 1) a meshed cgroup's connections keep: never redirected to the proxy.",
    },
    MapDef {
        name: "mesh_clients",
        map_type: MapType::LruHash,
        key: <u64 as Codec>::LAYOUT,
        value: MeshOrigDst::LAYOUT,
        max_entries: 65_536,
        flags: 0,
        layout_version: 1,
        doc: "Redirected client sockets by socket cookie: the destination they asked for (getpeername reports it).",
    },
    MapDef {
        name: "mesh_origdst",
        map_type: MapType::LruHash,
        key: MeshTuple::LAYOUT,
        value: MeshOrigDst::LAYOUT,
        max_entries: 65_536,
        flags: 0,
        layout_version: 1,
        doc: "Established redirected connections by (netns, client, proxy) address pair: the original destination SO_ORIGINAL_DST reports.",
    },
    MapDef {
        name: "mesh_stats",
        map_type: MapType::PerCpuHash,
        key: <u64 as Codec>::LAYOUT,
        value: Counter::LAYOUT,
        max_entries: mesh::MAX_CGROUPS,
        flags: map_flags::NO_PREALLOC,
        layout_version: 1,
        doc: "Connections redirected per meshed cgroup id (user space creates the entry with the mesh), per CPU; bytes stays 0.",
    },
    MapDef {
        name: "mesh_counters",
        map_type: MapType::PerCpuArray,
        key: <u32 as Codec>::LAYOUT,
        value: Counter::LAYOUT,
        max_entries: mesh::COUNTERS,
        flags: 0,
        layout_version: 1,
        doc: "Service-mesh events (index: WEIR_MESH_COUNT_*), per CPU; bytes stays 0.",
    },
    MapDef {
        name: "mesh_inbound",
        map_type: MapType::Hash,
        key: <u64 as Codec>::LAYOUT,
        value: MeshInbound::LAYOUT,
        max_entries: mesh::MAX_INBOUND,
        flags: map_flags::NO_PREALLOC,
        layout_version: 1,
        doc: "Inbound capture by network namespace cookie: the proxy's inbound and outbound ports (never captured themselves).",
    },
    MapDef {
        name: "mesh_in_ports",
        map_type: MapType::Hash,
        key: MeshInboundPortKey::LAYOUT,
        value: <u32 as Codec>::LAYOUT,
        max_entries: mesh::MAX_PORTS,
        flags: map_flags::NO_PREALLOC,
        layout_version: 1,
        doc: "Local ports (value 1) of a captured network namespace that are never captured.",
    },
    MapDef {
        name: "mesh_listeners",
        map_type: MapType::SockHash,
        key: MeshListenerKey::LAYOUT,
        value: <u64 as Codec>::LAYOUT,
        max_entries: mesh::MAX_LISTENERS,
        flags: 0,
        layout_version: 1,
        doc: "The proxy's inbound listening sockets by (netns cookie, port, family), added by mesh_sockops when they start listening.",
    },
    MapDef {
        name: "prefilter_v4",
        map_type: MapType::Array,
        key: <u32 as Codec>::LAYOUT,
        value: DenyV4::LAYOUT,
        max_entries: 65_536,
        flags: 0,
        layout_version: 2,
        doc: "XDP prefilter IPv4 deny entries by id (the leaves of deny_v4_root/_nodes): the prefix and its hits.",
    },
    MapDef {
        name: "deny_v4_root",
        map_type: MapType::Array,
        key: <u32 as Codec>::LAYOUT,
        value: <u32 as Codec>::LAYOUT,
        max_entries: deny_dir::ROOT_SLOTS,
        flags: 0,
        layout_version: 1,
        doc: "XDP prefilter IPv4 table, first level: one slot (see deny_dir) per /16, indexed by the address's top 16 bits.",
    },
    MapDef {
        name: "deny_v4_nodes",
        map_type: MapType::Array,
        key: <u32 as Codec>::LAYOUT,
        value: DirChunk::LAYOUT,
        max_entries: 65_536,
        flags: 0,
        layout_version: 1,
        doc: "XDP prefilter IPv4 table, deeper levels: chunks of 16 slots, each level 4 more address bits (chunk 0 is never used).",
    },
    MapDef {
        name: "fp_routes_v4",
        map_type: MapType::LpmTrie,
        key: LpmV4Key::LAYOUT,
        value: FpRoute::LAYOUT,
        max_entries: fastpath::DEFAULT_ROUTES,
        flags: map_flags::NO_PREALLOC,
        layout_version: 1,
        doc: "Fast path IPv4 routes: local workload prefixes -> the workload's host-side interface.",
    },
    MapDef {
        name: "fp_routes_v6",
        map_type: MapType::LpmTrie,
        key: LpmV6Key::LAYOUT,
        value: FpRoute::LAYOUT,
        max_entries: fastpath::DEFAULT_ROUTES,
        flags: map_flags::NO_PREALLOC,
        layout_version: 1,
        doc: "Fast path IPv6 routes: local workload prefixes -> the workload's host-side interface.",
    },
    MapDef {
        name: "fp_endpoints",
        map_type: MapType::Hash,
        key: <u32 as Codec>::LAYOUT,
        value: FpEndpoint::LAYOUT,
        max_entries: fastpath::MAX_ENDPOINTS,
        flags: 0,
        layout_version: 1,
        doc: "Fast path interfaces by ifindex: flags (WEIR_FP_*) and the interface's own MAC.",
    },
    MapDef {
        name: "fp_macs",
        map_type: MapType::Hash,
        key: <u32 as Codec>::LAYOUT,
        value: MacAddr::LAYOUT,
        max_entries: fastpath::MAX_ENDPOINTS,
        flags: 0,
        layout_version: 1,
        doc: "Fast path: each workload's own MAC, learned by the TC program from what the workload sends.",
    },
    MapDef {
        name: "prefilter_v6",
        map_type: MapType::LpmTrie,
        key: LpmV6Key::LAYOUT,
        value: DenyEntry::LAYOUT,
        max_entries: 65_536,
        flags: map_flags::NO_PREALLOC,
        layout_version: 1,
        doc: "XDP prefilter IPv6 deny list: source prefixes whose packets are dropped, with hits.",
    },
    MapDef {
        name: "prefilter_stats",
        map_type: MapType::PerCpuArray,
        key: <u32 as Codec>::LAYOUT,
        value: Counter::LAYOUT,
        max_entries: prefilter_reason::COUNT,
        flags: 0,
        layout_version: 1,
        doc: "XDP prefilter packets and frame bytes per verdict reason (index: WEIR_PREFILTER_*), per CPU.",
    },
    MapDef {
        name: "failsafe_in",
        map_type: MapType::Array,
        key: <u32 as Codec>::LAYOUT,
        value: <u64 as Codec>::LAYOUT,
        max_entries: failsafe::SLOTS * failsafe::WORDS_PER_SLOT,
        flags: 0,
        layout_version: 1,
        doc: "Inbound failsafe destination ports, a bitmap per protocol slot (WEIR_FAILSAFE_*): never dropped by the prefilter.",
    },
    // Network policy at TC. The classifier arrays hold two banks (each half); pol_active
    // names the one packets read.
    MapDef {
        name: "pol_active",
        map_type: MapType::Array,
        key: <u32 as Codec>::LAYOUT,
        value: <u32 as Codec>::LAYOUT,
        max_entries: 1,
        flags: 0,
        layout_version: 1,
        doc: "Policy: the bank (0 or 1) packets read; written last by an apply.",
    },
    MapDef {
        name: "pol_endpoints",
        map_type: MapType::Hash,
        key: PolEndpointKey::LAYOUT,
        value: PolEndpoint::LAYOUT,
        max_entries: 8192,
        flags: map_flags::NO_PREALLOC,
        layout_version: 1,
        doc: "Policy endpoints: (bank, ifindex, TC hook) -> rule set (or none: tracked, allowed), direction, flags.",
    },
    MapDef {
        name: "pol_rulesets",
        map_type: MapType::Array,
        key: <u32 as Codec>::LAYOUT,
        value: PolRuleSet::LAYOUT,
        max_entries: 2 * pol::DEFAULT_RULE_SETS,
        flags: 0,
        layout_version: 1,
        doc: "Policy rule sets by id (two banks): flags, first table, bitmaps for packets without ports or ICMP, log and audit bitmaps.",
    },
    MapDef {
        name: "pol_root",
        map_type: MapType::Array,
        key: <u32 as Codec>::LAYOUT,
        value: <u32 as Codec>::LAYOUT,
        max_entries: 2 * pol::DEFAULT_RULE_SETS * pol::TABLES_PER_SET * pol::ROOT_SLOTS,
        flags: 0,
        layout_version: 1,
        doc: "Policy classifier tables, first level: table * 256 + the key's first byte -> slot (empty, NODE|chunk, bitmap id + 1).",
    },
    MapDef {
        name: "pol_nodes",
        map_type: MapType::Array,
        key: <u32 as Codec>::LAYOUT,
        value: DirChunk::LAYOUT,
        max_entries: 2 * pol::DEFAULT_CHUNKS,
        flags: 0,
        layout_version: 1,
        doc: "Policy classifier tables, deeper levels: chunks of 16 slots, 4 key bits per level (two banks).",
    },
    MapDef {
        name: "pol_bitmaps",
        map_type: MapType::Array,
        key: <u32 as Codec>::LAYOUT,
        value: PolBitmap::LAYOUT,
        max_entries: 2 * pol::DEFAULT_BITMAPS,
        flags: 0,
        layout_version: 1,
        doc: "Policy rule bitmaps by id (two banks): 256 bits, bit i = rule i of a rule set.",
    },
    MapDef {
        name: "pol_rules",
        map_type: MapType::Array,
        key: <u32 as Codec>::LAYOUT,
        value: PolRule::LAYOUT,
        max_entries: 2 * pol::DEFAULT_RULE_SETS * pol::MAX_RULES,
        flags: 0,
        layout_version: 1,
        doc: "Policy rules by rule set * 256 + bit: config rule and policy ids, action, audit, last bit of its policy.",
    },
    MapDef {
        name: "pol_ct",
        map_type: MapType::LruHash,
        key: CtKey::LAYOUT,
        value: Ct::LAYOUT,
        max_entries: pol::DEFAULT_CT_ENTRIES,
        flags: 0,
        layout_version: 1,
        doc: "Conntrack per endpoint: (ifindex, local and remote address and port, protocol, family) -> state, last packet time, allowing rule.",
    },
    MapDef {
        name: "pol_rule_ctrs",
        map_type: MapType::PerCpuArray,
        key: <u32 as Codec>::LAYOUT,
        value: Counter::LAYOUT,
        max_entries: pol::MAX_RULE_IDS,
        flags: 0,
        layout_version: 1,
        doc: "Packets and bytes per config rule id (denied packets, and every packet of the flows a rule allowed), per CPU.",
    },
    MapDef {
        name: "pol_pol_ctrs",
        map_type: MapType::PerCpuArray,
        key: <u32 as Codec>::LAYOUT,
        value: PolCounts::LAYOUT,
        max_entries: pol::MAX_POLICY_IDS,
        flags: 0,
        layout_version: 1,
        doc: "Packets denied and flows an audit policy would deny, per config policy id, per CPU.",
    },
    MapDef {
        name: "pol_stats",
        map_type: MapType::PerCpuArray,
        key: <u32 as Codec>::LAYOUT,
        value: Counter::LAYOUT,
        max_entries: pol::STATS,
        flags: 0,
        layout_version: 1,
        doc: "Policy packets and bytes per outcome (index: WEIR_POL_STAT_*), per CPU.",
    },
    MapDef {
        name: "pol_ev_rate",
        map_type: MapType::PerCpuArray,
        key: <u32 as Codec>::LAYOUT,
        value: PolRate::LAYOUT,
        max_entries: 1,
        flags: 0,
        layout_version: 1,
        doc: "Policy event token bucket per CPU: saved credit and the time it was computed.",
    },
    MapDef {
        name: "pol_events",
        map_type: MapType::RingBuf,
        key: NO_LAYOUT,
        value: NO_LAYOUT,
        max_entries: pol::EVENT_RING_BYTES,
        flags: 0,
        layout_version: 1,
        doc: "Policy events (struct weir_pol_event records): denied, logged and audited packets, rate-limited per CPU.",
    },
    MapDef {
        name: "pol_set_meta",
        map_type: MapType::Array,
        key: <u32 as Codec>::LAYOUT,
        value: PolSetMeta::LAYOUT,
        max_entries: 1,
        flags: 0,
        layout_version: 1,
        doc: "Policy set index (loader only, for `weir set`): the bank it describes, the bank's next free chunk and bitmap id.",
    },
    MapDef {
        name: "pol_sets",
        map_type: MapType::Hash,
        key: <u32 as Codec>::LAYOUT,
        value: PolSet::LAYOUT,
        max_entries: pol::MAX_SETS,
        flags: map_flags::NO_PREALLOC,
        layout_version: 1,
        doc: "Policy set index (loader only): set id -> name, member prefix lengths, the rule sets referencing it.",
    },
    MapDef {
        name: "pol_set_rs",
        map_type: MapType::Hash,
        key: <u32 as Codec>::LAYOUT,
        value: PolSetRs::LAYOUT,
        max_entries: 2 * pol::DEFAULT_RULE_SETS,
        flags: map_flags::NO_PREALLOC,
        layout_version: 1,
        doc: "Policy set index (loader only): rule set id -> remote-unconstrained rules, inline prefix lengths, the sets it references with their rule bits.",
    },
    MapDef {
        name: "pol_set_members",
        map_type: MapType::Hash,
        key: PolPrefixKey::LAYOUT,
        value: <u32 as Codec>::LAYOUT,
        max_entries: pol::SET_MEMBERS_PER_CHUNK * pol::DEFAULT_CHUNKS,
        flags: map_flags::NO_PREALLOC,
        layout_version: 1,
        doc: "Policy set index (loader only): the members of the policy in force, 32 networks an entry: (set id, family, length, network with its 5 lowest bits clear) -> bit i set when the i-th network is a member.",
    },
    MapDef {
        name: "pol_set_inline",
        map_type: MapType::Hash,
        key: PolPrefixKey::LAYOUT,
        value: PolMark::LAYOUT,
        max_entries: pol::MAX_INLINE_MARKS,
        flags: map_flags::NO_PREALLOC,
        layout_version: 1,
        doc: "Policy set index (loader only): (table, family, prefix) -> rules naming the prefix inline in remote=, and negated.",
    },
    MapDef {
        name: "pol_bm_ids",
        map_type: MapType::Hash,
        key: PolBitmap::LAYOUT,
        value: <u32 as Codec>::LAYOUT,
        max_entries: pol::DEFAULT_BITMAPS,
        flags: map_flags::NO_PREALLOC,
        layout_version: 1,
        doc: "Policy set index (loader only): bitmap -> its id in the bank in force (interning for `weir set`).",
    },
    MapDef {
        name: "pol_names",
        map_type: MapType::Hash,
        key: <u32 as Codec>::LAYOUT,
        value: PolName::LAYOUT,
        max_entries: pol::MAX_RULE_IDS + pol::MAX_POLICY_IDS,
        flags: map_flags::NO_PREALLOC,
        layout_version: 1,
        doc: "Names for `weir status` and `weir events` (loader only): config rule id -> `POLICY#N` (its policy's Nth rule), NAME_POLICY_BASE + policy id -> the policy's name.",
    },
];

/// The map named `name`, if the schema has one.
pub fn find(name: &str) -> Option<&'static MapDef> {
    MAPS.iter().find(|m| m.name == name)
}

/// Bytes did not have the length a type's layout requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The C name of the type being decoded.
    pub type_name: &'static str,
    /// Bytes required.
    pub expected: usize,
    /// Bytes given.
    pub got: usize,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "decoding {}: expected {} bytes, got {}",
            self.type_name, self.expected, self.got
        )
    }
}

impl std::error::Error for DecodeError {}

/// Conversion between a Rust key/value type and the bytes the kernel stores.
pub trait Codec: Sized {
    /// The type's layout, as in [`MapDef::key`] / [`MapDef::value`].
    const LAYOUT: Layout;

    /// The value's bytes, exactly `LAYOUT.size` long (padding zeroed).
    fn encode(&self) -> Vec<u8>;

    /// Parses exactly `LAYOUT.size` bytes. Never panics.
    ///
    /// # Errors
    /// [`DecodeError`] when `bytes` has any other length.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;
}

/// A fixed-size integer (or integer array) usable as a schema struct field.
trait FieldType: Sized {
    const C_TYPE: &'static str;
    const SIZE: usize;
    /// Writes `SIZE` bytes at the start of `out` (no-op if `out` is too short).
    fn write(&self, out: &mut [u8]);
    /// Reads `SIZE` bytes at the start of `bytes`, `None` if it is too short.
    fn read(bytes: &[u8]) -> Option<Self>;
}

macro_rules! int_field_type {
    ($($t:ty => $c:literal),* $(,)?) => {$(
        impl FieldType for $t {
            const C_TYPE: &'static str = $c;
            const SIZE: usize = std::mem::size_of::<$t>();
            fn write(&self, out: &mut [u8]) {
                if let Some(dst) = out.get_mut(..Self::SIZE) {
                    dst.copy_from_slice(&self.to_ne_bytes());
                }
            }
            fn read(bytes: &[u8]) -> Option<Self> {
                let src = bytes.get(..Self::SIZE)?;
                Some(<$t>::from_ne_bytes(src.try_into().ok()?))
            }
        }
    )*};
}

int_field_type!(
    u8 => "__u8", u16 => "__u16", u32 => "__u32", u64 => "__u64",
    i8 => "__s8", i16 => "__s16", i32 => "__s32", i64 => "__s64",
);

// Arrays need their C spelling spelled out (no const string formatting); add sizes as needed.
macro_rules! array_field_type {
    ($($t:ty, $n:literal => $c:literal),* $(,)?) => {$(
        impl FieldType for [$t; $n] {
            const C_TYPE: &'static str = $c;
            const SIZE: usize = <$t as FieldType>::SIZE * $n;
            fn write(&self, out: &mut [u8]) {
                for (i, v) in self.iter().enumerate() {
                    if let Some(dst) = out.get_mut(i * <$t as FieldType>::SIZE..) {
                        v.write(dst);
                    }
                }
            }
            fn read(bytes: &[u8]) -> Option<Self> {
                let mut out = [<$t>::default(); $n];
                for (i, v) in out.iter_mut().enumerate() {
                    *v = <$t as FieldType>::read(bytes.get(i * <$t as FieldType>::SIZE..)?)?;
                }
                Some(out)
            }
        }
    )*};
}

array_field_type!(
    u8, 2 => "__u8[2]", u8, 4 => "__u8[4]", u8, 6 => "__u8[6]", u8, 16 => "__u8[16]",
    u32, 4 => "__u32[4]", u32, 16 => "__u32[16]", u64, 4 => "__u64[4]",
    u32, 8 => "__u32[8]", u64, 32 => "__u64[32]",
);

macro_rules! scalar_codec {
    ($($t:ty),*) => {$(
        impl Codec for $t {
            const LAYOUT: Layout = Layout {
                c_name: <$t as FieldType>::C_TYPE,
                size: <$t as FieldType>::SIZE as u32,
                fields: &[],
            };
            fn encode(&self) -> Vec<u8> {
                self.to_ne_bytes().to_vec()
            }
            fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
                let err = DecodeError {
                    type_name: Self::LAYOUT.c_name,
                    expected: <$t as FieldType>::SIZE,
                    got: bytes.len(),
                };
                if bytes.len() != <$t as FieldType>::SIZE {
                    return Err(err);
                }
                <$t as FieldType>::read(bytes).ok_or(err)
            }
        }
    )*};
}

scalar_codec!(u32, u64);

/// Declares a `#[repr(C)]` struct shared with C, its [`Layout`] (sizes and offsets taken from the
/// compiler, so they cannot be mistyped) and its [`Codec`].
macro_rules! schema_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident as $c_name:literal {
            $( $(#[$fmeta:meta])* pub $field:ident : $fty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $fty, )*
        }

        impl Codec for $name {
            const LAYOUT: Layout = Layout {
                c_name: concat!("struct ", $c_name),
                size: std::mem::size_of::<$name>() as u32,
                fields: &[$(
                    Field {
                        name: stringify!($field),
                        offset: std::mem::offset_of!($name, $field) as u32,
                        size: <$fty as FieldType>::SIZE as u32,
                        c_type: <$fty as FieldType>::C_TYPE,
                    },
                )*],
            };

            fn encode(&self) -> Vec<u8> {
                let mut out = vec![0u8; std::mem::size_of::<$name>()];
                $(
                    if let Some(dst) = out.get_mut(std::mem::offset_of!($name, $field)..) {
                        self.$field.write(dst);
                    }
                )*
                out
            }

            fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
                let err = DecodeError {
                    type_name: Self::LAYOUT.c_name,
                    expected: std::mem::size_of::<$name>(),
                    got: bytes.len(),
                };
                if bytes.len() != err.expected {
                    return Err(err);
                }
                Ok($name {
                    $(
                        $field: bytes
                            .get(std::mem::offset_of!($name, $field)..)
                            .and_then(<$fty as FieldType>::read)
                            .ok_or_else(|| err.clone())?,
                    )*
                })
            }
        }
    };
}

schema_struct! {
    /// An (interface, hook) pair: what an interface counter of `weir status` belongs to. (The
    /// key of `if_counters` up to layout 1, a hash; no map's key now.)
    pub struct IfKey as "weir_if_key" {
        /// Interface index.
        pub ifindex: u32,
        /// Hook id (see [`hook`]).
        pub hook: u32,
    }
}

schema_struct! {
    /// A packet/byte counter: C `struct weir_counter`.
    pub struct Counter as "weir_counter" {
        /// Packets (or calls, for socket hooks).
        pub packets: u64,
        /// Bytes (0 for socket hooks).
        pub bytes: u64,
    }
}

schema_struct! {
    /// Value of `if_counters`: C `struct weir_if_ctrs`, one interface's counters by hook (index
    /// `hook - if_slot::FIRST_HOOK`), one copy per CPU.
    pub struct IfCounters as "weir_if_ctrs" {
        /// The interface the slot was last assigned to, written by the loader (on every CPU's
        /// copy) when it assigns the slot; 0 for a slot never assigned.
        pub ifindex: u32,
        /// Always 0.
        pub pad: u32,
        /// Packets per hook.
        pub packets: [u64; 4],
        /// Bytes per hook.
        pub bytes: [u64; 4],
    }
}

impl IfCounters {
    /// The counter of hook id `hook` (one of the [`if_slot::HOOKS`] from
    /// [`if_slot::FIRST_HOOK`]), or `None` for a hook that has none.
    pub fn hook(&self, hook: u32) -> Option<Counter> {
        let i = usize::try_from(hook.checked_sub(if_slot::FIRST_HOOK)?).ok()?;
        Some(Counter {
            packets: *self.packets.get(i)?,
            bytes: *self.bytes.get(i)?,
        })
    }
}

impl Counter {
    /// The total over the per-CPU values of one entry (wrapping, as the kernel counters do).
    pub fn sum(per_cpu: &[Counter]) -> Counter {
        per_cpu.iter().fold(Counter::default(), |acc, c| Counter {
            packets: acc.packets.wrapping_add(c.packets),
            bytes: acc.bytes.wrapping_add(c.bytes),
        })
    }
}

schema_struct! {
    /// Key of `prefilter_v4`: C `struct weir_lpm_v4`, an LPM trie key (prefix length, then the
    /// address in network byte order).
    pub struct LpmV4Key as "weir_lpm_v4" {
        /// Prefix length in bits, 0..=32 (native byte order, as the kernel's LPM trie wants).
        pub prefixlen: u32,
        /// IPv4 address, network byte order.
        pub addr: [u8; 4],
    }
}

impl LpmV4Key {
    /// The key for `addr/prefixlen`, host bits cleared (so a key read back from the map compares
    /// equal to the one written). `None` when `prefixlen` exceeds 32.
    pub fn new(addr: std::net::Ipv4Addr, prefixlen: u32) -> Option<LpmV4Key> {
        Some(LpmV4Key {
            prefixlen,
            addr: mask_prefix(addr.octets(), prefixlen)?,
        })
    }
}

schema_struct! {
    /// Key of `prefilter_v6`: C `struct weir_lpm_v6`, an LPM trie key (prefix length, then the
    /// address in network byte order).
    pub struct LpmV6Key as "weir_lpm_v6" {
        /// Prefix length in bits, 0..=128 (native byte order).
        pub prefixlen: u32,
        /// IPv6 address, network byte order.
        pub addr: [u8; 16],
    }
}

impl LpmV6Key {
    /// The key for `addr/prefixlen`, host bits cleared. `None` when `prefixlen` exceeds 128.
    pub fn new(addr: std::net::Ipv6Addr, prefixlen: u32) -> Option<LpmV6Key> {
        Some(LpmV6Key {
            prefixlen,
            addr: mask_prefix(addr.octets(), prefixlen)?,
        })
    }
}

/// `addr` with every bit after the first `prefixlen` cleared; `None` if `prefixlen` is too long.
fn mask_prefix<const N: usize>(mut addr: [u8; N], prefixlen: u32) -> Option<[u8; N]> {
    let bits = usize::try_from(prefixlen).ok()?;
    if bits > N * 8 {
        return None;
    }
    for (i, b) in addr.iter_mut().enumerate() {
        let keep = bits.saturating_sub(i * 8).min(8);
        // keep = 0..=8 leading bits of this byte survive.
        *b &= !(0xffu16 >> keep) as u8;
    }
    Some(addr)
}

schema_struct! {
    /// Value of `prefilter_v4` and `prefilter_v6`: C `struct weir_deny_entry`.
    pub struct DenyEntry as "weir_deny_entry" {
        /// Packets this entry has dropped (shared by all CPUs, incremented atomically by the
        /// program; it restarts at 0 whenever user space rewrites the entry).
        pub hits: u64,
    }
}

schema_struct! {
    /// Value of `prefilter_v4` (index: the entry id a table leaf names): C `struct weir_deny_v4`.
    pub struct DenyV4 as "weir_deny_v4" {
        /// Packets this entry has dropped (shared by all CPUs, incremented atomically by the
        /// program; it restarts at 0 when user space gives the id to another prefix).
        pub hits: u64,
        /// The prefix's address, network byte order, host bits cleared.
        pub addr: [u8; 4],
        /// Prefix length, 0..=32.
        pub prefixlen: u8,
        /// 1 when this id holds a deny entry, 0 for a free id.
        pub in_use: u8,
        /// Zero.
        pub pad: [u8; 2],
    }
}

schema_struct! {
    /// Value of `deny_v4_nodes`: C `struct weir_dir_chunk`, 16 slots (see [`deny_dir`]).
    pub struct DirChunk as "weir_dir_chunk" {
        /// Slot `i` covers the addresses whose next 4 bits (below the parent's) equal `i`.
        pub slot: [u32; 16],
    }
}

schema_struct! {
    /// Key of `lb_services`: C `struct weir_lb_svc_key`, a service's VIP, port and protocol.
    pub struct LbServiceKey as "weir_lb_svc_key" {
        /// VIP, network order; IPv4 as v4-mapped IPv6 (`::ffff:a.b.c.d`).
        pub addr: [u8; 16],
        /// Port, network byte order (as `bpf_sock_addr.user_port` holds it).
        pub port: u16,
        /// IP protocol: 6 (TCP) or 17 (UDP).
        pub proto: u8,
        /// Always 0.
        pub pad: u8,
    }
}

schema_struct! {
    /// Value of `lb_services`: C `struct weir_lb_svc`.
    pub struct LbService as "weir_lb_svc" {
        /// Service id (>= 1), stable across applies while the service stays.
        pub id: u32,
        /// Entries of this service in `lb_slots` (0: no usable backend, connections are refused).
        pub slots: u32,
        /// [`lb::SVC_AFFINITY`], [`lb::SVC_EXCLUDED`], [`lb::SVC_CHECK_CGROUPS`].
        pub flags: u32,
        /// Affinity timeout in seconds (with [`lb::SVC_AFFINITY`]).
        pub affinity_timeout_s: u32,
    }
}

schema_struct! {
    /// Key of `lb_slots`: C `struct weir_lb_slot_key`.
    pub struct LbSlotKey as "weir_lb_slot_key" {
        /// Service id.
        pub service: u32,
        /// Slot, 0..slots-1.
        pub slot: u32,
    }
}

schema_struct! {
    /// Value of `lb_backends` (key: backend id): C `struct weir_lb_backend`.
    pub struct LbBackend as "weir_lb_backend" {
        /// Backend address, network order; IPv4 v4-mapped.
        pub addr: [u8; 16],
        /// Backend port, network byte order.
        pub port: u16,
        /// [`lb::BACKEND_DRAINED`].
        pub flags: u16,
        /// The id of the service this backend belongs to.
        pub service: u32,
    }
}

schema_struct! {
    /// Key of `lb_revnat`: C `struct weir_lb_revnat_key`.
    pub struct LbRevNatKey as "weir_lb_revnat_key" {
        /// `bpf_get_socket_cookie` of the client socket.
        pub cookie: u64,
        /// The backend address the socket was sent to, IPv4 v4-mapped.
        pub addr: [u8; 16],
        /// The backend port, network byte order.
        pub port: u16,
        /// Always 0.
        pub pad: [u8; 6],
    }
}

schema_struct! {
    /// Value of `lb_revnat`: C `struct weir_lb_revnat`, the VIP the client asked for.
    pub struct LbRevNat as "weir_lb_revnat" {
        /// VIP, IPv4 v4-mapped.
        pub addr: [u8; 16],
        /// VIP port, network byte order.
        pub port: u16,
        /// Always 0.
        pub pad: u16,
    }
}

schema_struct! {
    /// Value of `fp_routes_v4` / `fp_routes_v6`: C `struct weir_fp_route`.
    pub struct FpRoute as "weir_fp_route" {
        /// The workload's host-side interface.
        pub ifindex: u32,
        /// Always 0.
        pub pad: u32,
    }
}

schema_struct! {
    /// Value of `fp_endpoints`: C `struct weir_fp_endpoint`.
    pub struct FpEndpoint as "weir_fp_endpoint" {
        /// `fastpath::*` flags.
        pub flags: u32,
        /// The interface's own MAC: the source of frames the fast path sends out of it.
        pub mac: [u8; 6],
        /// The interface's counter slot in `if_counters` ([`if_slot::NONE`]: none). Older
        /// versions wrote 0 here (padding), which reads as no slot.
        pub slot: u16,
    }
}

schema_struct! {
    /// Value of `fp_macs`: C `struct weir_mac`.
    pub struct MacAddr as "weir_mac" {
        /// The address.
        pub addr: [u8; 6],
        /// Always 0.
        pub pad: [u8; 2],
    }
}

schema_struct! {
    /// Value of `lb_sock`: C `struct weir_lb_sock`, what a connected socket's peer stands for.
    pub struct LbSock as "weir_lb_sock" {
        /// The backend address connect() was rewritten to, IPv4 v4-mapped.
        pub backend_addr: [u8; 16],
        /// The VIP the client asked for, IPv4 v4-mapped.
        pub vip_addr: [u8; 16],
        /// The backend port, network byte order.
        pub backend_port: u16,
        /// The VIP port, network byte order.
        pub vip_port: u16,
    }
}

schema_struct! {
    /// Key of `lb_affinity`: C `struct weir_lb_affinity_key`.
    pub struct LbAffinityKey as "weir_lb_affinity_key" {
        /// `bpf_get_netns_cookie` of the client socket's network namespace.
        pub netns_cookie: u64,
        /// Service id.
        pub service: u32,
        /// Always 0.
        pub pad: u32,
    }
}

schema_struct! {
    /// Value of `lb_affinity`: C `struct weir_lb_affinity`.
    pub struct LbAffinity as "weir_lb_affinity" {
        /// The backend id last picked.
        pub backend: u32,
        /// Always 0.
        pub pad: u32,
        /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) when it was last used.
        pub last_ns: u64,
    }
}

/// The key or value layout of a map that has none (ring buffers).
pub const NO_LAYOUT: Layout = Layout {
    c_name: "",
    size: 0,
    fields: &[],
};

/// Structs the programs and the loader share that are no map's key or value (ring buffer
/// records); the C header declares them too.
pub const RECORDS: &[Layout] = &[PolEvent::LAYOUT];

schema_struct! {
    /// Key of `pol_endpoints`: C `struct weir_pol_ep_key`.
    pub struct PolEndpointKey as "weir_pol_ep_key" {
        /// The bank (0 or 1).
        pub bank: u32,
        /// Interface index.
        pub ifindex: u32,
        /// The TC hook ([`hook::TC_INGRESS`] or [`hook::TC_EGRESS`]).
        pub hook: u32,
    }
}

schema_struct! {
    /// Value of `pol_endpoints`: C `struct weir_pol_ep`.
    pub struct PolEndpoint as "weir_pol_ep" {
        /// Rule set id (in the bank's half of `pol_rulesets`), or [`pol::NO_RULESET`].
        pub ruleset: u32,
        /// [`pol::DIR_INGRESS`] or [`pol::DIR_EGRESS`]: what this hook is for the endpoint.
        pub direction: u32,
        /// [`pol::EP_HOST`].
        pub flags: u16,
        /// The interface's counter slot in `if_counters` (as its `fp_endpoints` entry has it),
        /// so the TC egress program counts without another lookup. Older versions had `flags`
        /// as a `u32` here: on a little-endian machine this was its upper half, always 0
        /// ([`if_slot::NONE`]), and their programs read the new entries' flags unchanged.
        pub slot: u16,
    }
}

schema_struct! {
    /// Value of `pol_rulesets`: C `struct weir_pol_ruleset`.
    pub struct PolRuleSet as "weir_pol_ruleset" {
        /// [`pol::RS_ENFORCED`], [`pol::RS_AUDITED`].
        pub flags: u32,
        /// The first of its [`pol::TABLES_PER_SET`] tables.
        pub table: u32,
        /// Rules in the set.
        pub nrules: u32,
        /// Bitmap id: rules without port conditions (for packets without ports).
        pub no_ports_bm: u32,
        /// Bitmap id: rules without an ICMP condition (for packets that are not ICMP).
        pub no_icmp_bm: u32,
        /// Bitmap id: the `log` rules.
        pub log_bm: u32,
        /// Bitmap id: the rules of audit policies.
        pub audit_bm: u32,
        /// Zero.
        pub pad: u32,
    }
}

schema_struct! {
    /// Value of `pol_bitmaps`: C `struct weir_pol_bitmap`, 256 rule bits.
    pub struct PolBitmap as "weir_pol_bitmap" {
        /// Bit i is bit i % 64 of word i / 64.
        pub w: [u64; 4],
    }
}

schema_struct! {
    /// Value of `pol_set_meta`: C `struct weir_pol_set_meta`.
    pub struct PolSetMeta as "weir_pol_set_meta" {
        /// [`pol::SET_META_VALID`] when the set index describes bank `bank`; anything else: it
        /// does not (an apply is writing it, or none has).
        pub valid: u32,
        /// The bank the index describes.
        pub bank: u32,
        /// The bank's next free chunk (global index in `pol_nodes`).
        pub next_chunk: u32,
        /// The bank's next free bitmap id (global index in `pol_bitmaps`).
        pub next_bitmap: u32,
    }
}

schema_struct! {
    /// Value of `pol_sets`: C `struct weir_pol_set`.
    pub struct PolSet as "weir_pol_set" {
        /// Bit `l` set: some IPv4 member is a /`l`.
        pub lengths_v4: u64,
        /// Bit `l` (of 129) set: some IPv6 member is a /`l`.
        pub lengths_v6: [u64; 4],
        /// The members' digest: the wrapping sum of a 64-bit hash of each member's key in
        /// `pol_set_members` (an apply skips the members of sets whose digest and count match).
        pub digest: u64,
        /// Rule sets (global ids) referencing the set: `nrulesets` of `rulesets`, or
        /// [`pol::SET_REFS_OVER`].
        pub nrulesets: u32,
        /// See `nrulesets`.
        pub rulesets: [u32; 16],
        /// Members.
        pub members: u32,
        /// The set's name, NUL-padded bytes (4 per word, in memory order).
        pub name: [u32; 16],
    }
}

schema_struct! {
    /// Value of `pol_set_rs`: C `struct weir_pol_set_rs`.
    pub struct PolSetRs as "weir_pol_set_rs" {
        /// Rules without a positive `remote=` item (they match every remote address).
        pub unconstrained: [u64; 4],
        /// Bit `l` set: an inline IPv4 `remote=` prefix of a rule here is a /`l`.
        pub inline_v4: u64,
        /// The same for IPv6 (129 bits).
        pub inline_v6: [u64; 4],
        /// Sets referenced: `nsets` of `sets` (set ids).
        pub nsets: u32,
        /// See `nsets`.
        pub sets: [u32; 8],
        /// Zero.
        pub pad: u32,
        /// For `sets[i]`: the rules naming it (words `4 i .. 4 i + 4`).
        pub pos: [u64; 32],
        /// For `sets[i]`: the rules naming it negated.
        pub neg: [u64; 32],
    }
}

schema_struct! {
    /// Key of `pol_set_members` and `pol_set_inline`: C `struct weir_pol_prefix_key`.
    pub struct PolPrefixKey as "weir_pol_prefix_key" {
        /// Set id (`pol_set_members`) or table (`pol_set_inline`).
        pub owner: u32,
        /// 4 or 6.
        pub family: u16,
        /// Prefix length.
        pub len: u16,
        /// The network, network byte order, host bits zero (IPv4 in the first 4 bytes).
        pub addr: [u8; 16],
    }
}

schema_struct! {
    /// Value of `pol_set_inline`: C `struct weir_pol_mark`.
    pub struct PolMark as "weir_pol_mark" {
        /// Rules naming the prefix.
        pub pos: [u64; 4],
        /// Rules naming it negated.
        pub neg: [u64; 4],
    }
}

schema_struct! {
    /// Value of `pol_rules`: C `struct weir_pol_rule`.
    pub struct PolRule as "weir_pol_rule" {
        /// The rule's index in the config (counters, events).
        pub rule_id: u32,
        /// Its policy's index in the config.
        pub policy_id: u16,
        /// [`pol::ACT_ALLOW`] and the others.
        pub action: u8,
        /// 1 when its policy is in audit mode.
        pub audit: u8,
        /// The bit of the last rule of the same policy in this rule set.
        pub policy_last: u16,
        /// Zero.
        pub pad: u16,
    }
}

schema_struct! {
    /// Key of `pol_ct`: C `struct weir_ct_key`, a flow as one endpoint sees it (both directions
    /// give the same key).
    pub struct CtKey as "weir_ct_key" {
        /// The endpoint's interface.
        pub ifindex: u32,
        /// The endpoint-side address (IPv4 in the first 4 bytes), network order.
        pub local: [u8; 16],
        /// The other side's address, network order.
        pub remote: [u8; 16],
        /// The endpoint-side port (ICMP echo: the identifier), host order.
        pub lport: u16,
        /// The other side's port, host order.
        pub rport: u16,
        /// IP protocol.
        pub proto: u8,
        /// 4 or 6.
        pub family: u8,
        /// Zero.
        pub pad: u16,
    }
}

schema_struct! {
    /// Value of `pol_ct`: C `struct weir_ct`.
    pub struct Ct as "weir_ct" {
        /// `bpf_ktime_get_coarse_ns` (CLOCK_MONOTONIC_COARSE, one tick's resolution) of the
        /// flow's last packet; older versions wrote `bpf_ktime_get_ns`, up to a tick later.
        pub last_ns: u64,
        /// The config rule id that allowed the flow, or [`pol::NONE`].
        pub rule: u32,
        /// `pol::CT_*` state.
        pub state: u8,
        /// `pol::CT_F_*` flags.
        pub flags: u8,
        /// Zero.
        pub pad: u16,
    }
}

schema_struct! {
    /// Value of `pol_names`: C `struct weir_pol_name`.
    pub struct PolName as "weir_pol_name" {
        /// The name, NUL-padded bytes (4 per word, in memory order), at most 63 of them.
        pub name: [u32; 16],
    }
}

schema_struct! {
    /// Value of `pol_pol_ctrs`: C `struct weir_pol_counts`.
    pub struct PolCounts as "weir_pol_counts" {
        /// Packets a rule of the policy denied.
        pub denied: u64,
        /// New flows the (audit) policy would have denied.
        pub audited: u64,
    }
}

impl PolCounts {
    /// The total over per-CPU values.
    pub fn sum(per_cpu: &[PolCounts]) -> PolCounts {
        per_cpu.iter().fold(PolCounts::default(), |a, c| PolCounts {
            denied: a.denied.wrapping_add(c.denied),
            audited: a.audited.wrapping_add(c.audited),
        })
    }
}

schema_struct! {
    /// Value of `pol_ev_rate`: C `struct weir_pol_rate`.
    pub struct PolRate as "weir_pol_rate" {
        /// Saved credit in nanoseconds (one event costs [`pol::EVENT_COST_NS`]).
        pub credit_ns: u64,
        /// When the credit was last computed.
        pub last_ns: u64,
    }
}

schema_struct! {
    /// A `pol_events` record: C `struct weir_pol_event`.
    pub struct PolEvent as "weir_pol_event" {
        /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC).
        pub ts_ns: u64,
        /// The endpoint's interface.
        pub ifindex: u32,
        /// The config rule id, or [`pol::NONE`] (default deny).
        pub rule: u32,
        /// The config policy id, or [`pol::NONE`].
        pub policy: u32,
        /// Packet length.
        pub len: u32,
        /// Source address (IPv4 in the first 4 bytes), network order.
        pub src: [u8; 16],
        /// Destination address.
        pub dst: [u8; 16],
        /// Source port (ICMP: type), host order.
        pub sport: u16,
        /// Destination port (ICMP: code), host order.
        pub dport: u16,
        /// 4 or 6.
        pub family: u8,
        /// IP protocol.
        pub proto: u8,
        /// [`pol::DIR_INGRESS`] or [`pol::DIR_EGRESS`].
        pub direction: u8,
        /// [`pol::EV_DENY`], [`pol::EV_LOG`] or [`pol::EV_AUDIT`].
        pub verdict: u8,
    }
}

schema_struct! {
    /// Value of `mesh_cgroups`: C `struct weir_mesh_cgroup`.
    pub struct MeshCgroup as "weir_mesh_cgroup" {
        /// [`mesh::MESHED`], [`mesh::PROXY`], [`mesh::PROXY_UID`].
        pub flags: u32,
        /// The proxy's uid (with [`mesh::PROXY_UID`]).
        pub proxy_uid: u32,
        /// The proxy's outbound port on loopback, network byte order (meshed cgroups).
        pub proxy_port: u16,
        /// Always 0.
        pub pad: u16,
    }
}

schema_struct! {
    /// Key of `mesh_ports`: C `struct weir_mesh_port_key`.
    pub struct MeshPortKey as "weir_mesh_port_key" {
        /// The meshed cgroup's id (the `mesh_cgroups` key that matched).
        pub cgroup: u64,
        /// Destination port, network byte order.
        pub port: u16,
        /// Always 0.
        pub pad: [u8; 6],
    }
}

schema_struct! {
    /// Value of `mesh_inbound`: C `struct weir_mesh_inbound`.
    pub struct MeshInbound as "weir_mesh_inbound" {
        /// The proxy's inbound port, host byte order.
        pub inbound_port: u16,
        /// The proxy's outbound port, host byte order (never captured either).
        pub proxy_port: u16,
        /// Always 0.
        pub flags: u32,
    }
}

schema_struct! {
    /// Key of `mesh_in_ports`: C `struct weir_mesh_inbound_port_key`.
    pub struct MeshInboundPortKey as "weir_mesh_inbound_port_key" {
        /// The captured network namespace's cookie.
        pub netns_cookie: u64,
        /// Local port, host byte order.
        pub port: u16,
        /// Always 0.
        pub pad: [u8; 6],
    }
}

schema_struct! {
    /// Key of `mesh_listeners`: C `struct weir_mesh_listener_key`.
    pub struct MeshListenerKey as "weir_mesh_listener_key" {
        /// The listener's network namespace cookie.
        pub netns_cookie: u64,
        /// Its port, host byte order.
        pub port: u16,
        /// 4 (AF_INET socket) or 6 (AF_INET6, dual-stack unless IPV6_V6ONLY).
        pub family: u16,
        /// Always 0.
        pub pad: u32,
    }
}

schema_struct! {
    /// Value of `mesh_clients` and `mesh_origdst`: C `struct weir_mesh_origdst`.
    pub struct MeshOrigDst as "weir_mesh_origdst" {
        /// The destination the client asked for, IPv4 v4-mapped.
        pub addr: [u8; 16],
        /// Its port, network byte order.
        pub port: u16,
        /// Always 0.
        pub pad: u16,
    }
}

schema_struct! {
    /// Key of `mesh_origdst`: C `struct weir_mesh_tuple`, one redirected connection as both
    /// ends see it (the client's local address is the proxy's peer).
    pub struct MeshTuple as "weir_mesh_tuple" {
        /// `bpf_get_netns_cookie` of the connection's network namespace.
        pub netns_cookie: u64,
        /// The client's address, IPv4 v4-mapped.
        pub client: [u8; 16],
        /// The proxy's (loopback) address, IPv4 v4-mapped.
        pub proxy: [u8; 16],
        /// The client's port, network byte order.
        pub client_port: u16,
        /// The proxy's port, network byte order.
        pub proxy_port: u16,
        /// Always 0.
        pub pad: u32,
    }
}

/// Bytes per CPU slot for a per-CPU value of `value_size` bytes: the kernel rounds each up to 8.
pub fn percpu_slot_size(value_size: usize) -> usize {
    value_size.div_ceil(8).saturating_mul(8)
}

/// Splits a per-CPU value buffer (as `BPF_MAP_LOOKUP_ELEM` returns it for per-CPU maps) into one
/// value per CPU. Each CPU's slot is `T::LAYOUT.size` rounded up to 8 bytes. Never panics.
///
/// # Errors
/// [`DecodeError`] when `bytes` is not exactly `ncpus` slots long.
pub fn decode_per_cpu<T: Codec>(bytes: &[u8], ncpus: usize) -> Result<Vec<T>, DecodeError> {
    let size = T::LAYOUT.size as usize;
    let slot = percpu_slot_size(size);
    let expected = slot.saturating_mul(ncpus);
    if bytes.len() != expected || slot == 0 {
        return Err(DecodeError {
            type_name: T::LAYOUT.c_name,
            expected,
            got: bytes.len(),
        });
    }
    bytes
        .chunks_exact(slot)
        .map(|chunk| T::decode(chunk.get(..size).unwrap_or(chunk)))
        .collect()
}

/// Encodes one value per CPU into the buffer `BPF_MAP_UPDATE_ELEM` expects for per-CPU maps
/// (each value padded with zeros to an 8-byte slot).
pub fn encode_per_cpu<T: Codec>(values: &[T]) -> Vec<u8> {
    let slot = percpu_slot_size(T::LAYOUT.size as usize);
    let mut out = Vec::with_capacity(slot * values.len());
    for v in values {
        let start = out.len();
        out.extend_from_slice(&v.encode());
        out.resize(start + slot, 0);
    }
    out
}

/// Renders a layout as C-ish text for error messages, e.g. `struct weir_if_key (8 bytes)`.
pub fn describe(layout: &Layout) -> String {
    let mut s = format!("{} ({} bytes", layout.c_name, layout.size);
    for f in layout.fields {
        let _ = write!(s, "; {} {}@{}", f.c_type, f.name, f.offset);
    }
    s.push(')');
    s
}

#[cfg(test)]
mod tests;
