//! Connect-time load balancing: the `service` and `lb exclude` statements compiled into the
//! contents of the `lb_*` maps, written as a difference against what they hold, and read back
//! for `weir status`.
//!
//! Ids are kept stable across applies: a service keeps its id while its VIP:port/protocol stays,
//! and a backend keeps its id while it stays in its service, so affinity entries and per-backend
//! counters survive a `weir apply` that changes other things. Ids are derived from the maps
//! themselves (the pins are the state): new ones are the smallest ids the maps do not use.
//!
//! Writes are ordered so a program running meanwhile only sees consistent tables: backends,
//! then slot tables, then services (the index pointing into them), exclusions first of all;
//! removals go the other way round.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::path::Path;

use maps_schema::{lb, Codec, Counter, LbBackend, LbService, LbServiceKey, LbSlotKey, MapDef};

use crate::config::{Config, L4Proto};
use crate::contents::{self, Undo};
use crate::error::Error;
use crate::maps::{MapSet, MAPS_DIR};
use crate::sys::{bpf, cgroup};

/// The service index.
pub const MAP_SERVICES: &str = "lb_services";
/// Weighted slot tables.
pub const MAP_SLOTS: &str = "lb_slots";
/// Backends by id.
pub const MAP_BACKENDS: &str = "lb_backends";
/// Excluded cgroup ids.
pub const MAP_EXCLUDE: &str = "lb_exclude";
/// Connected sockets' VIPs by socket cookie.
pub const MAP_CONN: &str = "lb_conn";
/// Per-backend rewrite counters.
pub const MAP_STATS: &str = "lb_stats";

/// Sets the load-balancing map capacities from the config on a map set (before the maps are
/// created or reopened).
pub fn set_capacities(maps: &mut MapSet, cfg: &Config) {
    let cap = cfg.lb_capacity;
    maps.set_capacity(MAP_SERVICES, cap.services);
    maps.set_capacity(MAP_BACKENDS, cap.backends);
    maps.set_capacity(MAP_STATS, cap.backends);
    maps.set_capacity(MAP_SLOTS, cap.slots);
    maps.set_capacity(MAP_CONN, cap.connections);
}

/// The 16 bytes the maps hold for an address: IPv6 as is, IPv4 v4-mapped.
pub fn addr16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// The address 16 map bytes stand for (v4-mapped → IPv4).
pub fn ip_of16(bytes: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

fn ip_proto(p: L4Proto) -> u8 {
    match p {
        L4Proto::Tcp => 6,
        L4Proto::Udp => 17,
        L4Proto::Sctp => 132,
    }
}

fn proto_name(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        other => format!("proto {other}"),
    }
}

/// The `lb_services` key of a VIP.
pub fn service_key(vip: SocketAddr, proto: L4Proto) -> LbServiceKey {
    LbServiceKey {
        addr: addr16(vip.ip()),
        port: vip.port().to_be(),
        proto: ip_proto(proto),
        pad: 0,
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The weighted slot table of one service: indexes into `weights`, each repeated in proportion
/// to its weight, at most [`lb::MAX_SLOTS`] long. Weight 0 (drained) gets no slot; every other
/// weight at least one. Weights are reduced by their greatest common divisor (1:3 is 4 slots);
/// when they still need too many slots, each live backend gets one slot and the rest is shared
/// by weight (largest remainders).
pub fn slot_table(weights: &[u32]) -> Vec<usize> {
    let live: Vec<(usize, u64)> = weights
        .iter()
        .enumerate()
        .filter(|(_, w)| **w > 0)
        .map(|(i, w)| (i, u64::from(*w)))
        .collect();
    if live.is_empty() {
        return Vec::new();
    }
    let g = live.iter().fold(0, |g, (_, w)| gcd(g, *w));
    let mut counts: Vec<(usize, u64)> = live.iter().map(|(i, w)| (*i, w / g)).collect();
    let max = u64::from(lb::MAX_SLOTS);
    let total: u64 = counts.iter().map(|(_, c)| c).sum();
    if total > max {
        let n = live.len() as u64;
        let extra = max.saturating_sub(n);
        let sum: u64 = live.iter().map(|(_, w)| w).sum();
        let mut rems: Vec<(u64, usize)> = Vec::new();
        let mut given = 0;
        for (k, (_, w)) in live.iter().enumerate() {
            let share = w * extra / sum;
            counts[k].1 = 1 + share;
            given += share;
            rems.push((w * extra % sum, k));
        }
        // Largest remainder first, ties to the earlier backend.
        rems.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, k) in rems.into_iter().take((extra - given) as usize) {
            counts[k].1 += 1;
        }
    }
    let mut out = Vec::new();
    for (i, c) in counts {
        out.extend(std::iter::repeat_n(i, c as usize));
    }
    out
}

/// The contents every LB map should hold for a config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// `lb_services`.
    pub services: Vec<(LbServiceKey, LbService)>,
    /// `lb_slots`.
    pub slots: Vec<(LbSlotKey, u32)>,
    /// `lb_backends` (key: backend id).
    pub backends: Vec<(u32, LbBackend)>,
    /// `lb_exclude` keys (cgroup ids).
    pub exclude: Vec<u64>,
}

/// Hands out the smallest ids (from 1) that `used` does not hold, in increasing order: one pass
/// over the id space however many are taken (a fresh scan per id made 30k services a
/// quadratic two minutes).
struct FreeIds<'a> {
    used: &'a BTreeSet<u32>,
    next: u32,
}

impl<'a> FreeIds<'a> {
    fn new(used: &'a BTreeSet<u32>) -> Self {
        Self { used, next: 1 }
    }

    fn take(&mut self) -> Option<u32> {
        while self.next < u32::MAX {
            let id = self.next;
            self.next += 1;
            if !self.used.contains(&id) {
                return Some(id);
            }
        }
        None
    }
}

/// Compiles `cfg` into map contents. `current_services` and `current_backends` are what the
/// maps hold now (their ids are kept for what stays); `excluded` the cgroup ids of the
/// `lb exclude` paths. Pure: no kernel needed.
///
/// # Errors
/// When the services need more ids than the maps have.
pub fn compile(
    cfg: &Config,
    current_services: &HashMap<LbServiceKey, LbService>,
    current_backends: &BTreeMap<u32, LbBackend>,
    excluded: &[u64],
) -> Result<Desired, Error> {
    let used_service_ids: BTreeSet<u32> = current_services.values().map(|s| s.id).collect();
    let used_backend_ids: BTreeSet<u32> = current_backends.keys().copied().collect();
    let backend_index: HashMap<(u32, [u8; 16], u16), u32> = current_backends
        .iter()
        .map(|(id, b)| ((b.service, b.addr, b.port), *id))
        .collect();
    let (mut service_ids, mut backend_ids) = (
        FreeIds::new(&used_service_ids),
        FreeIds::new(&used_backend_ids),
    );
    let mut out = Desired::default();
    for svc in &cfg.services {
        let key = service_key(svc.vip, svc.proto);
        let id = match current_services.get(&key) {
            Some(s) => s.id,
            None => service_ids
                .take()
                .ok_or_else(|| Error::map(MAP_SERVICES, "no free service id"))?,
        };
        let mut ids = Vec::new();
        for b in &svc.backends {
            let (addr, port) = (addr16(b.addr.ip()), b.addr.port().to_be());
            let bid = match backend_index.get(&(id, addr, port)) {
                Some(bid) => *bid,
                None => backend_ids
                    .take()
                    .ok_or_else(|| Error::map(MAP_BACKENDS, "no free backend id"))?,
            };
            ids.push(bid);
            out.backends.push((
                bid,
                LbBackend {
                    addr,
                    port,
                    flags: if b.weight == 0 {
                        lb::BACKEND_DRAINED
                    } else {
                        0
                    },
                    service: id,
                },
            ));
        }
        let weights: Vec<u32> = svc.backends.iter().map(|b| b.weight).collect();
        let table = slot_table(&weights);
        for (slot, index) in table.iter().enumerate() {
            out.slots.push((
                LbSlotKey {
                    service: id,
                    slot: slot as u32,
                },
                ids[*index],
            ));
        }
        let mut flags = 0;
        if svc.affinity.is_some() {
            flags |= lb::SVC_AFFINITY;
        }
        if svc.excluded {
            flags |= lb::SVC_EXCLUDED;
        }
        if !excluded.is_empty() {
            flags |= lb::SVC_CHECK_CGROUPS;
        }
        out.services.push((
            key,
            LbService {
                id,
                slots: table.len() as u32,
                flags,
                affinity_timeout_s: svc.affinity.unwrap_or(0),
            },
        ));
    }
    out.exclude = excluded.to_vec();
    out.exclude.sort_unstable();
    out.exclude.dedup();
    Ok(out)
}

/// What applying the LB maps changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LbChange {
    /// Services written (new or changed) and removed; services afterwards.
    pub services: (usize, usize, usize),
    /// Backends written and removed; backends afterwards.
    pub backends: (usize, usize, usize),
    /// Slot entries written and removed.
    pub slots: (usize, usize),
    /// Excluded cgroups added and removed.
    pub exclude: (usize, usize),
}

impl LbChange {
    /// True when nothing was written.
    pub fn is_noop(&self) -> bool {
        self.services.0
            + self.services.1
            + self.backends.0
            + self.backends.1
            + self.slots.0
            + self.slots.1
            + self.exclude.0
            + self.exclude.1
            == 0
    }
}

impl fmt::Display for LbChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lb: services {} written {} removed ({} in all), backends {} written {} removed ({} in all), \
             slots {} written {} removed, excluded cgroups {} written {} removed",
            self.services.0,
            self.services.1,
            self.services.2,
            self.backends.0,
            self.backends.1,
            self.backends.2,
            self.slots.0,
            self.slots.1,
            self.exclude.0,
            self.exclude.1
        )
    }
}

/// The cgroup ids of the `lb exclude` paths and of the meshes' cgroups (each must exist).
///
/// # Errors
/// When the cgroup v2 mount cannot be found or an excluded cgroup does not exist.
pub fn excluded_ids(cfg: &Config) -> Result<Vec<u64>, Error> {
    // `lb exclude` paths, and the mesh's cgroups (meshed and proxy ones).
    let excluded = cfg.lb_excluded_cgroups();
    if excluded.is_empty() {
        return Ok(Vec::new());
    }
    let root = cgroup::cgroup2_mount()
        .map_err(|e| Error::io("finding the cgroup v2 mount in /proc/mounts", e))?;
    excluded
        .iter()
        .map(|(path, statement, span)| {
            let dir = root.join(path);
            cgroup::cgroup_id(&dir).map_err(|err| {
                Error::io(
                    format!(
                        "{statement} {path} (line {}): reading the id of cgroup {}",
                        span.line,
                        dir.display()
                    ),
                    err,
                )
            })
        })
        .collect()
}

use contents::Bytes;

fn encode_all<K: Codec, V: Codec>(entries: &[(K, V)]) -> Bytes {
    entries
        .iter()
        .map(|(k, v)| (k.encode(), v.encode()))
        .collect()
}

/// Writes the LB maps' contents for `cfg`: only the difference against what they hold. Does
/// nothing when the loaded objects have no LB maps.
///
/// # Errors
/// An excluded cgroup that does not exist, too many ids, or a map error (earlier writes are in
/// `undo` for the caller to roll back).
pub fn apply(maps: &MapSet, cfg: &Config, undo: &mut Undo) -> Result<LbChange, Error> {
    let Some(services) = maps.get(MAP_SERVICES) else {
        if !cfg.services.is_empty() {
            log::warn!(
                "the config has services but the connect-time programs are not loaded: \
                 no service is balanced"
            );
        }
        return Ok(LbChange::default());
    };
    let get = |name: &str| {
        maps.get(name)
            .ok_or_else(|| Error::map(name.to_owned(), "missing beside lb_services"))
    };
    let (slots, backends, exclude, stats) = (
        get(MAP_SLOTS)?,
        get(MAP_BACKENDS)?,
        get(MAP_EXCLUDE)?,
        get(MAP_STATS)?,
    );
    let cur_services = contents::entries(services)?;
    let cur_backends = contents::entries(backends)?;
    let cur_slots = contents::entries(slots)?;
    let cur_exclude = contents::entries(exclude)?;
    let typed_services: HashMap<LbServiceKey, LbService> = cur_services
        .iter()
        .filter_map(|(k, v)| Some((LbServiceKey::decode(k).ok()?, LbService::decode(v).ok()?)))
        .collect();
    let typed_backends: BTreeMap<u32, LbBackend> = cur_backends
        .iter()
        .filter_map(|(k, v)| Some((u32::decode(k).ok()?, LbBackend::decode(v).ok()?)))
        .collect();
    let desired = compile(cfg, &typed_services, &typed_backends, &excluded_ids(cfg)?)?;
    let want_services = encode_all(&desired.services);
    let want_slots = encode_all(&desired.slots);
    let want_backends = encode_all(&desired.backends);
    let one = 1u32.encode();
    let want_exclude: Bytes = desired
        .exclude
        .iter()
        .map(|id| (id.encode(), one.clone()))
        .collect();

    // Every capacity before any write: a config that does not fit changes nothing. New
    // entries are written before old ones are removed (a service never points at a missing
    // backend), so a map must hold both at once.
    for (m, current, want, option) in [
        (services, &cur_services, &want_services, "services"),
        (backends, &cur_backends, &want_backends, "backends"),
        (slots, &cur_slots, &want_slots, "slots"),
    ] {
        let cap = bpf::map_info(m.fd.as_fd())
            .map_err(|e| Error::bpf(format!("map '{}'", m.def.name), e))?
            .max_entries as usize;
        let peak = want.len() + current.keys().filter(|k| !want.contains_key(*k)).count();
        if peak > cap {
            let during = if peak > want.len() {
                format!(
                    " while the change is applied ({} new beside {} that go)",
                    want.keys().filter(|k| !current.contains_key(*k)).count(),
                    peak - want.len()
                )
            } else {
                String::new()
            };
            return Err(Error::map(
                m.def.name,
                format!(
                    "the services need {peak} entries{during}, more than its capacity of {cap}; nothing was changed. \
                     Raise it with `lb capacity {option}=N` (a pinned map cannot grow: `weir unload` first), \
                     or apply the change in smaller steps"
                ),
            ));
        }
    }

    let mut change = LbChange::default();
    change.exclude.0 = contents::write_diff(exclude, &cur_exclude, &want_exclude, undo)?;
    // A new backend id starts its counter at 0 (the id may have counted for a removed backend).
    let zero = vec![0u8; value_len(stats.def)?];
    let fresh: Vec<(Vec<u8>, Vec<u8>)> = desired
        .backends
        .iter()
        .filter(|(id, _)| !typed_backends.contains_key(id))
        .map(|(id, _)| (id.encode(), zero.clone()))
        .collect();
    // A counter left by a backend that is gone is overwritten; undo then removes it.
    contents::put_entries(stats, &fresh, 0, |_| None, undo)?;
    change.backends.0 = contents::write_diff(backends, &cur_backends, &want_backends, undo)?;
    change.slots.0 = contents::write_diff(slots, &cur_slots, &want_slots, undo)?;
    change.services.0 = contents::write_diff(services, &cur_services, &want_services, undo)?;
    change.services.1 = contents::delete_diff(services, &cur_services, &want_services, undo)?;
    change.slots.1 = contents::delete_diff(slots, &cur_slots, &want_slots, undo)?;
    change.backends.1 = contents::delete_diff(backends, &cur_backends, &want_backends, undo)?;
    // A removed backend's counter goes with it.
    let kept: BTreeSet<u32> = desired.backends.iter().map(|(id, _)| *id).collect();
    if typed_backends.keys().any(|id| !kept.contains(id)) {
        let counters = contents::entries(stats)?;
        let gone: Vec<(Vec<u8>, Vec<u8>)> = counters
            .into_iter()
            .filter(|(k, _)| u32::decode(k).is_ok_and(|id| !kept.contains(&id)))
            .collect();
        contents::remove_entries(stats, &gone, undo)?;
    }
    change.exclude.1 = contents::delete_diff(exclude, &cur_exclude, &want_exclude, undo)?;
    change.services.2 = want_services.len();
    change.backends.2 = want_backends.len();
    Ok(change)
}

fn value_len(def: &MapDef) -> Result<usize, Error> {
    bpf::value_len(def.map_type as u32, def.value.size)
        .map_err(|e| Error::io(format!("map '{}': value size", def.name), e))
}

/// One backend as `weir status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendStatus {
    /// Backend id.
    pub id: u32,
    /// Address and port.
    pub addr: SocketAddr,
    /// Weight 0: no new connections.
    pub drained: bool,
    /// Slots it has in its service's table (its share of new connections is slots / total).
    pub slots: u32,
    /// Connections and datagrams rewritten to it (since its id was assigned).
    pub rewritten: u64,
}

/// One service as `weir status` shows it (from the maps: the name is not stored there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    /// Service id.
    pub id: u32,
    /// VIP and port.
    pub vip: SocketAddr,
    /// `tcp` or `udp`.
    pub proto: String,
    /// Affinity timeout in seconds, if on.
    pub affinity: Option<u32>,
    /// Never rewritten.
    pub excluded: bool,
    /// Its backends, by id.
    pub backends: Vec<BackendStatus>,
}

impl fmt::Display for ServiceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} (id {})", self.vip, self.proto, self.id)?;
        if let Some(s) = self.affinity {
            write!(f, " affinity {s}s")?;
        }
        if self.excluded {
            f.write_str(" excluded")?;
        }
        if self.backends.is_empty() && !self.excluded {
            f.write_str(" no backends: connections refused")?;
        }
        Ok(())
    }
}

fn open_def(
    pin_dir: &Path,
    name: &str,
) -> Result<Option<(std::os::fd::OwnedFd, &'static MapDef)>, Error> {
    let def = maps_schema::find(name).ok_or_else(|| Error::map(name, "not in maps-schema"))?;
    let path = pin_dir.join(MAPS_DIR).join(crate::maps::pin_name(def));
    Ok(crate::attach::open_pin(&path)?.map(|fd| (fd, def)))
}

/// Reads the services, their backends and per-backend counters from the maps pinned under
/// `pin_dir` (empty when the LB maps are not pinned).
///
/// # Errors
/// When a pinned map cannot be read.
pub fn read_status(pin_dir: &Path) -> Result<Vec<ServiceStatus>, Error> {
    let (Some((sfd, sdef)), Some((bfd, bdef)), Some((lfd, ldef))) = (
        open_def(pin_dir, MAP_SERVICES)?,
        open_def(pin_dir, MAP_BACKENDS)?,
        open_def(pin_dir, MAP_SLOTS)?,
    ) else {
        return Ok(Vec::new());
    };
    let stats = open_def(pin_dir, MAP_STATS)?;
    let mut slot_counts: HashMap<u32, u32> = HashMap::new();
    for v in contents::entries_of(lfd.as_fd(), ldef)?.values() {
        if let Ok(id) = u32::decode(v) {
            *slot_counts.entry(id).or_default() += 1;
        }
    }
    let mut by_service: HashMap<u32, Vec<BackendStatus>> = HashMap::new();
    for (k, v) in contents::entries_of(bfd.as_fd(), bdef)? {
        let (Ok(id), Ok(b)) = (u32::decode(&k), LbBackend::decode(&v)) else {
            continue;
        };
        let rewritten = match &stats {
            Some((fd, def)) => {
                let mut buf = vec![0u8; value_len(def)?];
                let ncpus = bpf::possible_cpus()
                    .map_err(|e| Error::io("reading /sys/devices/system/cpu/possible", e))?;
                if bpf::map_lookup(fd.as_fd(), &k, &mut buf)
                    .map_err(|e| Error::bpf(format!("map '{MAP_STATS}'"), e))?
                {
                    maps_schema::decode_per_cpu::<Counter>(&buf, ncpus as usize)
                        .map(|c| Counter::sum(&c).packets)
                        .unwrap_or(0)
                } else {
                    0
                }
            }
            None => 0,
        };
        by_service
            .entry(b.service)
            .or_default()
            .push(BackendStatus {
                id,
                addr: SocketAddr::new(ip_of16(b.addr), u16::from_be(b.port)),
                drained: b.flags & lb::BACKEND_DRAINED != 0,
                slots: slot_counts.get(&id).copied().unwrap_or(0),
                rewritten,
            });
    }
    let mut out = Vec::new();
    for (k, v) in contents::entries_of(sfd.as_fd(), sdef)? {
        let (Ok(key), Ok(svc)) = (LbServiceKey::decode(&k), LbService::decode(&v)) else {
            continue;
        };
        let mut backends = by_service.remove(&svc.id).unwrap_or_default();
        backends.sort_by_key(|b| b.id);
        out.push(ServiceStatus {
            id: svc.id,
            vip: SocketAddr::new(ip_of16(key.addr), u16::from_be(key.port)),
            proto: proto_name(key.proto),
            affinity: (svc.flags & lb::SVC_AFFINITY != 0).then_some(svc.affinity_timeout_s),
            excluded: svc.flags & lb::SVC_EXCLUDED != 0,
            backends,
        });
    }
    out.sort_by_key(|s| s.id);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        crate::config::parse("t.conf", text).unwrap()
    }

    #[test]
    fn services_without_a_cgroup_attach_at_the_cgroup2_root() {
        use crate::attach::AttachPoint;
        let points = |text: &str| -> Vec<String> {
            crate::Dataplane::desired(&cfg(text))
                .into_iter()
                .map(|d| d.point.pin_name())
                .collect()
        };
        let root = points("service a 192.0.2.1:80/tcp backends=none\n");
        assert_eq!(root.len(), crate::embedded::PROGS_SOCK.len() + 1);
        assert!(root.contains(&"connect4@%2F".to_owned()), "{root:?}");
        assert_eq!(root[0], "sock-release@%2F", "attached before connect");
        // The pin names parse back, so unload and reload find them.
        for name in &root {
            let cgroup = match AttachPoint::from_pin_name(name) {
                Some(AttachPoint::Cgroup { cgroup, .. } | AttachPoint::SockRelease { cgroup }) => {
                    cgroup
                }
                other => panic!("{name} does not parse back: {other:?}"),
            };
            assert_eq!(cgroup, "/");
        }
        assert!(points("").is_empty());
        let named = points("cgroup a/b\nservice a 192.0.2.1:80/tcp backends=none\n");
        assert!(named.iter().all(|p| p.ends_with("@a%2Fb")), "{named:?}");
        assert_eq!(named.len(), crate::embedded::PROGS_SOCK.len() + 1);
    }

    #[test]
    fn addresses_are_16_bytes_v4_mapped() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let b = addr16(v4);
        assert_eq!(&b[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(&b[12..], &[192, 0, 2, 1]);
        assert_eq!(ip_of16(b), v4);
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(ip_of16(addr16(v6)), v6);
        let k = service_key("192.0.2.1:80".parse().unwrap(), L4Proto::Udp);
        assert_eq!(k.port.to_ne_bytes(), [0, 80]);
        assert_eq!(k.proto, 17);
    }

    #[test]
    fn slot_tables_follow_weights() {
        let count = |t: &[usize], i| t.iter().filter(|x| **x == i).count();
        assert_eq!(slot_table(&[1, 1, 1]), vec![0, 1, 2]);
        let t = slot_table(&[2, 6]);
        assert_eq!((t.len(), count(&t, 0), count(&t, 1)), (4, 1, 3));
        assert_eq!(slot_table(&[0, 5]), vec![1]);
        assert!(slot_table(&[0, 0]).is_empty());
        assert!(slot_table(&[]).is_empty());
        // Too many slots: scaled to the limit, every live backend keeps one.
        let t = slot_table(&[65_535, 1, 1000]);
        assert_eq!(t.len(), lb::MAX_SLOTS as usize);
        assert!(count(&t, 1) >= 1 && count(&t, 2) > count(&t, 1));
        let many: Vec<u32> = (1..=1024).collect();
        let t = slot_table(&many);
        assert_eq!(t.len(), 1024);
        assert!((0..1024).all(|i| count(&t, i) == 1));
    }

    #[test]
    fn compile_assigns_ids_and_keeps_them() {
        let c = cfg("service web 198.51.100.1:80/tcp backends=192.0.2.1:8080@1,192.0.2.2:8080@3 affinity=5\n\
                     service dns [2001:db8::53]:53/udp backends=none excluded\n");
        let d = compile(&c, &HashMap::new(), &BTreeMap::new(), &[7, 7]).unwrap();
        assert_eq!(d.exclude, vec![7]);
        assert_eq!(d.services.len(), 2);
        let (k, web) = d.services[0];
        assert_eq!(
            k,
            service_key("198.51.100.1:80".parse().unwrap(), L4Proto::Tcp)
        );
        assert_eq!(
            web,
            LbService {
                id: 1,
                slots: 4,
                // Excluded cgroups exist: every service asks for the cgroup walk.
                flags: lb::SVC_AFFINITY | lb::SVC_CHECK_CGROUPS,
                affinity_timeout_s: 5
            }
        );
        assert_eq!(d.services[1].1.id, 2);
        assert_eq!(d.services[1].1.slots, 0);
        assert_eq!(
            d.services[1].1.flags,
            lb::SVC_EXCLUDED | lb::SVC_CHECK_CGROUPS
        );
        // Without excluded cgroups nothing walks them.
        let plain = compile(&c, &HashMap::new(), &BTreeMap::new(), &[]).unwrap();
        assert!(plain
            .services
            .iter()
            .all(|(_, s)| s.flags & lb::SVC_CHECK_CGROUPS == 0));
        assert_eq!(
            d.backends.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(d.backends.iter().all(|(_, b)| b.service == 1));
        let to_2 = d.slots.iter().filter(|(_, b)| *b == 2).count();
        assert_eq!((d.slots.len(), to_2), (4, 3));

        // Second compile against the first's result: the web service is removed, a new one
        // and a drained backend added; ids of what stays are kept, new ids do not reuse them.
        let services: HashMap<_, _> = d.services.iter().copied().collect();
        let backends: BTreeMap<_, _> = d.backends.iter().copied().collect();
        let c2 = cfg("service new 198.51.100.9:80/tcp backends=192.0.2.9:80\n\
                      service dns [2001:db8::53]:53/udp backends=[2001:db8::1]:53@0,[2001:db8::2]:53\n");
        let d2 = compile(&c2, &services, &backends, &[]).unwrap();
        assert_eq!(d2.services[0].1.id, 3, "a new service gets an unused id");
        assert_eq!(d2.services[1].1.id, 2, "dns keeps its id");
        assert_eq!(d2.backends[0].0, 3);
        let dns: Vec<_> = d2.backends[1..].to_vec();
        assert_eq!(dns.len(), 2);
        assert_eq!(dns[0].1.flags, lb::BACKEND_DRAINED);
        assert_eq!(d2.services[1].1.slots, 1);
        assert_eq!(
            d2.slots
                .iter()
                .filter(|(k, _)| k.service == 2)
                .map(|(_, b)| *b)
                .collect::<Vec<_>>(),
            [dns[1].0]
        );
        // And the same config again changes nothing.
        let s2: HashMap<_, _> = d2.services.iter().copied().collect();
        let b2: BTreeMap<_, _> = d2.backends.iter().copied().collect();
        assert_eq!(compile(&c2, &s2, &b2, &[]).unwrap(), d2);
    }
}
