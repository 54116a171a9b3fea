//! Service-mesh redirect: the `mesh` statements compiled into the contents of `mesh_cgroups`,
//! `mesh_ports` and `mesh_stats`, written as a difference against what they hold, and read back
//! for `weir status`.
//!
//! A meshed cgroup's entry carries its proxy port (and the proxy's uid, when given); a proxy
//! cgroup's entry only says "never redirect". The LB side (`lb_exclude`) gets both kinds of
//! cgroups from [`Config::lb_excluded_cgroups`], written by `lb::apply`.
//!
//! Writes are ordered so a program running meanwhile never redirects what should stay: proxy
//! entries and port exclusions first, then meshed cgroups; removals the other way round.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::os::fd::AsFd;
use std::path::Path;

use maps_schema::{mesh, Codec, Counter, MeshCgroup, MeshInbound, MeshInboundPortKey, MeshPortKey};

use crate::config::Config;
use crate::contents::{self, Undo};
use crate::error::Error;
use crate::maps::{MapSet, OpenMap, MAPS_DIR};
use crate::sys::{bpf, cgroup};

/// Meshed and proxy cgroups.
pub const MAP_CGROUPS: &str = "mesh_cgroups";
/// Excluded destination ports per meshed cgroup.
pub const MAP_PORTS: &str = "mesh_ports";
/// Redirected connections per meshed cgroup.
pub const MAP_STATS: &str = "mesh_stats";
/// Global mesh event counters.
pub const MAP_COUNTERS: &str = "mesh_counters";
/// Inbound capture per network namespace cookie.
pub const MAP_INBOUND: &str = "mesh_inbound";
/// Local ports a captured network namespace keeps.
pub const MAP_INBOUND_PORTS: &str = "mesh_in_ports";
/// The proxies' inbound listeners (filled by `mesh_sockops`).
pub const MAP_LISTENERS: &str = "mesh_listeners";

/// The contents the mesh maps should hold for a config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// `mesh_cgroups`, by cgroup id.
    pub cgroups: BTreeMap<u64, MeshCgroup>,
    /// `mesh_ports` keys, sorted by (cgroup, port).
    pub ports: Vec<MeshPortKey>,
    /// `mesh_inbound`, by network namespace cookie.
    pub inbound: BTreeMap<u64, MeshInbound>,
    /// `mesh_inbound_ports` keys, sorted by (netns cookie, port).
    pub inbound_ports: Vec<MeshInboundPortKey>,
}

/// Compiles the `mesh` statements of `cfg` into map contents; `ids` maps every meshed and
/// proxy cgroup path to its cgroup id, `cookies` every captured network namespace (as the
/// config names it) to its cookie. Pure: no kernel needed.
///
/// # Errors
/// When a path has no id in `ids` or a namespace no cookie in `cookies`, or the entries
/// exceed the maps' capacities.
pub fn compile(
    cfg: &Config,
    ids: &HashMap<String, u64>,
    cookies: &HashMap<String, u64>,
) -> Result<Desired, Error> {
    let id_of = |path: &str, line: u32| {
        ids.get(path).copied().ok_or_else(|| {
            Error::map(
                MAP_CGROUPS,
                format!("mesh (line {line}): no cgroup id for '{path}'"),
            )
        })
    };
    let mut out = Desired::default();
    // Proxies first: a cgroup that is a proxy is never meshed (the config refuses both).
    for m in &cfg.meshes {
        if let Some(p) = &m.proxy_cgroup {
            out.cgroups.insert(
                id_of(p, m.span.line)?,
                MeshCgroup {
                    flags: mesh::PROXY,
                    ..MeshCgroup::default()
                },
            );
        }
    }
    let mut ports: Vec<MeshPortKey> = Vec::new();
    for m in &cfg.meshes {
        let id = id_of(&m.cgroup, m.span.line)?;
        let mut flags = mesh::MESHED;
        if m.proxy_uid.is_some() {
            flags |= mesh::PROXY_UID;
        }
        out.cgroups.insert(
            id,
            MeshCgroup {
                flags,
                proxy_uid: m.proxy_uid.unwrap_or(0),
                proxy_port: m.proxy_port.to_be(),
                pad: 0,
            },
        );
        for (lo, hi) in &m.exclude_ports {
            for port in *lo..=*hi {
                ports.push(MeshPortKey {
                    cgroup: id,
                    port: port.to_be(),
                    pad: [0; 6],
                });
            }
        }
    }
    ports.sort_by_key(|k| (k.cgroup, u16::from_be(k.port)));
    ports.dedup();
    out.ports = ports;
    for m in &cfg.meshes {
        let Some(i) = &m.inbound else { continue };
        let cookie = cookies.get(&i.netns).copied().ok_or_else(|| {
            Error::map(
                MAP_INBOUND,
                format!(
                    "mesh (line {}): no cookie for network namespace '{}'",
                    m.span.line, i.netns
                ),
            )
        })?;
        out.inbound.insert(
            cookie,
            MeshInbound {
                inbound_port: i.port,
                proxy_port: m.proxy_port,
                flags: 0,
            },
        );
        for (lo, hi) in &i.exclude_ports {
            for port in *lo..=*hi {
                out.inbound_ports.push(MeshInboundPortKey {
                    netns_cookie: cookie,
                    port,
                    pad: [0; 6],
                });
            }
        }
    }
    out.inbound_ports.sort_by_key(|k| (k.netns_cookie, k.port));
    out.inbound_ports.dedup();
    if out.inbound.len() > mesh::MAX_INBOUND as usize
        || out.inbound_ports.len() > mesh::MAX_PORTS as usize
    {
        return Err(Error::map(
            MAP_INBOUND,
            format!(
                "{} captured network namespaces with {} excluded ports, more than the capacities \
                 of {} and {}",
                out.inbound.len(),
                out.inbound_ports.len(),
                mesh::MAX_INBOUND,
                mesh::MAX_PORTS
            ),
        ));
    }
    if out.cgroups.len() > mesh::MAX_CGROUPS as usize {
        return Err(Error::map(
            MAP_CGROUPS,
            format!(
                "{} meshed and proxy cgroups, more than its capacity of {}",
                out.cgroups.len(),
                mesh::MAX_CGROUPS
            ),
        ));
    }
    if out.ports.len() > mesh::MAX_PORTS as usize {
        return Err(Error::map(
            MAP_PORTS,
            format!(
                "{} excluded ports over all meshes, more than its capacity of {}",
                out.ports.len(),
                mesh::MAX_PORTS
            ),
        ));
    }
    Ok(out)
}

/// The cgroup ids of every meshed and proxy cgroup of `cfg` (each must exist).
///
/// # Errors
/// When the cgroup v2 mount cannot be found or a cgroup does not exist.
pub fn cgroup_ids(cfg: &Config) -> Result<HashMap<String, u64>, Error> {
    let mut out = HashMap::new();
    if cfg.meshes.is_empty() {
        return Ok(out);
    }
    let root = cgroup::cgroup2_mount()
        .map_err(|e| Error::io("finding the cgroup v2 mount in /proc/mounts", e))?;
    for m in &cfg.meshes {
        for (what, path) in [
            ("cgroup", Some(&m.cgroup)),
            ("proxy-cgroup", m.proxy_cgroup.as_ref()),
        ] {
            let Some(path) = path else { continue };
            if out.contains_key(path) {
                continue;
            }
            let dir = root.join(path);
            let id = cgroup::cgroup_id(&dir).map_err(|err| {
                Error::io(
                    format!(
                        "mesh {} (line {}): reading the id of the {what} {}",
                        m.cgroup,
                        m.span.line,
                        dir.display()
                    ),
                    err,
                )
            })?;
            out.insert(path.clone(), id);
        }
    }
    Ok(out)
}

/// The cookie of every network namespace the meshes of `cfg` capture inbound (each must exist).
///
/// # Errors
/// When a namespace cannot be opened or entered.
pub fn netns_cookies(cfg: &Config) -> Result<HashMap<String, u64>, Error> {
    let mut out = HashMap::new();
    for m in &cfg.meshes {
        if let Some(i) = &m.inbound {
            let (cookie, _) =
                crate::attach::mesh_inbound::netns_identity(&i.netns).map_err(|e| {
                    Error::map(
                        MAP_INBOUND,
                        format!("mesh {} (line {}): {e}", m.cgroup, m.span.line),
                    )
                })?;
            out.insert(i.netns.clone(), cookie);
        }
    }
    Ok(out)
}

/// What applying the mesh maps changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MeshChange {
    /// Cgroup entries (meshed and proxy) written and removed; meshed cgroups afterwards.
    pub cgroups: (usize, usize, usize),
    /// Excluded-port entries written and removed.
    pub ports: (usize, usize),
    /// Inbound capture entries (namespaces, then their excluded ports) written and removed.
    pub inbound: (usize, usize),
}

impl MeshChange {
    /// True when nothing was written.
    pub fn is_noop(&self) -> bool {
        self.cgroups.0
            + self.cgroups.1
            + self.ports.0
            + self.ports.1
            + self.inbound.0
            + self.inbound.1
            == 0
    }
}

impl fmt::Display for MeshChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mesh: cgroups {} written {} removed ({} meshed), excluded ports {} written {} removed, \
             inbound capture entries {} written {} removed",
            self.cgroups.0,
            self.cgroups.1,
            self.cgroups.2,
            self.ports.0,
            self.ports.1,
            self.inbound.0,
            self.inbound.1
        )
    }
}

fn value_len(def: &maps_schema::MapDef) -> Result<usize, Error> {
    bpf::value_len(def.map_type as u32, def.value.size)
        .map_err(|e| Error::io(format!("map '{}': value size", def.name), e))
}

/// Writes the mesh maps' contents for `cfg`: only the difference against what they hold. Does
/// nothing when the mesh programs are not loaded.
///
/// # Errors
/// A meshed or proxy cgroup that does not exist, too many entries, or a map error (earlier
/// writes are in `undo` for the caller to roll back).
pub fn apply(maps: &MapSet, cfg: &Config, undo: &mut Undo) -> Result<MeshChange, Error> {
    let Some(cgroups) = maps.get(MAP_CGROUPS) else {
        if !cfg.meshes.is_empty() {
            log::warn!("the config meshes cgroups but the mesh programs are not loaded");
        }
        return Ok(MeshChange::default());
    };
    let get = |name: &str| {
        maps.get(name)
            .ok_or_else(|| Error::map(name.to_owned(), "missing beside mesh_cgroups"))
    };
    let (ports, stats) = (get(MAP_PORTS)?, get(MAP_STATS)?);
    let (inbound, inbound_ports) = (get(MAP_INBOUND)?, get(MAP_INBOUND_PORTS)?);
    let desired = compile(cfg, &cgroup_ids(cfg)?, &netns_cookies(cfg)?)?;

    let cur_cgroups = contents::entries(cgroups)?;
    let cur_ports = contents::entries(ports)?;
    let cur_stats = contents::entries(stats)?;
    let want_cgroups: BTreeMap<Vec<u8>, Vec<u8>> = desired
        .cgroups
        .iter()
        .map(|(id, c)| (id.encode(), c.encode()))
        .collect();
    let one = 1u32.encode();
    let want_ports: BTreeMap<Vec<u8>, Vec<u8>> = desired
        .ports
        .iter()
        .map(|k| (k.encode(), one.clone()))
        .collect();
    let meshed: BTreeSet<Vec<u8>> = desired
        .cgroups
        .iter()
        .filter(|(_, c)| c.flags & mesh::MESHED != 0)
        .map(|(id, _)| id.encode())
        .collect();

    let mut change = MeshChange::default();
    // A meshed cgroup's counter exists before its first redirect (and starts at 0).
    let zero = vec![0u8; value_len(stats.def)?];
    for key in &meshed {
        if !cur_stats.contains_key(key) {
            contents::write_entry(stats, key, &zero, undo)?;
        }
    }
    change.ports.0 = upserts(ports, &cur_ports, &want_ports, undo)?;
    // Proxy entries before meshed ones: a proxy inside a newly meshed cgroup is never caught.
    let (proxies, workloads): (BTreeMap<_, _>, BTreeMap<_, _>) = want_cgroups
        .clone()
        .into_iter()
        .partition(|(k, _)| !meshed.contains(k));
    change.cgroups.0 = upserts(cgroups, &cur_cgroups, &proxies, undo)?
        + upserts(cgroups, &cur_cgroups, &workloads, undo)?;
    change.cgroups.1 = deletes(cgroups, &cur_cgroups, &want_cgroups, undo)?;
    change.ports.1 = deletes(ports, &cur_ports, &want_ports, undo)?;
    for key in cur_stats.keys() {
        if !meshed.contains(key) {
            contents::delete_entry(stats, key, undo)?;
        }
    }
    change.cgroups.2 = meshed.len();

    // Inbound: excluded ports before the capture that honours them; removals the other way.
    let cur_in = contents::entries(inbound)?;
    let cur_in_ports = contents::entries(inbound_ports)?;
    let want_in: Bytes = desired
        .inbound
        .iter()
        .map(|(c, v)| (c.encode(), v.encode()))
        .collect();
    let want_in_ports: Bytes = desired
        .inbound_ports
        .iter()
        .map(|k| (k.encode(), one.clone()))
        .collect();
    change.inbound.0 = upserts(inbound_ports, &cur_in_ports, &want_in_ports, undo)?
        + upserts(inbound, &cur_in, &want_in, undo)?;
    change.inbound.1 = deletes(inbound, &cur_in, &want_in, undo)?
        + deletes(inbound_ports, &cur_in_ports, &want_in_ports, undo)?;
    Ok(change)
}

type Bytes = BTreeMap<Vec<u8>, Vec<u8>>;

fn upserts(m: &OpenMap, current: &Bytes, desired: &Bytes, undo: &mut Undo) -> Result<usize, Error> {
    let mut n = 0;
    for (k, v) in desired {
        if current.get(k) != Some(v) {
            contents::write_entry(m, k, v, undo)?;
            n += 1;
        }
    }
    Ok(n)
}

fn deletes(m: &OpenMap, current: &Bytes, desired: &Bytes, undo: &mut Undo) -> Result<usize, Error> {
    let mut n = 0;
    for k in current.keys() {
        if !desired.contains_key(k) && contents::delete_entry(m, k, undo)? {
            n += 1;
        }
    }
    Ok(n)
}

/// One meshed or proxy cgroup as `weir status` shows it (from the maps: paths are found by
/// walking the cgroup v2 tree for the id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshCgroupStatus {
    /// The cgroup id.
    pub id: u64,
    /// Its path relative to the cgroup v2 mount, when it still exists.
    pub path: Option<String>,
    /// True for a proxy's cgroup (never redirected).
    pub proxy: bool,
    /// The proxy port (meshed cgroups).
    pub proxy_port: u16,
    /// The proxy uid, if given.
    pub proxy_uid: Option<u32>,
    /// Destination ports excluded from the redirect.
    pub excluded_ports: usize,
    /// Connections redirected to the proxy (meshed cgroups).
    pub redirected: u64,
}

impl fmt::Display for MeshCgroupStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self
            .path
            .clone()
            .unwrap_or_else(|| format!("cgroup id {} (gone)", self.id));
        if self.proxy {
            return write!(f, "{path:<40} proxy: never redirected");
        }
        write!(f, "{path:<40} -> proxy port {}", self.proxy_port)?;
        if let Some(uid) = self.proxy_uid {
            write!(f, " (uid {uid} not redirected)")?;
        }
        if self.excluded_ports > 0 {
            write!(f, ", {} ports excluded", self.excluded_ports)?;
        }
        write!(f, ", {} connections redirected", self.redirected)
    }
}

/// One captured network namespace as `weir status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundStatus {
    /// The namespace as the config names it (from the link's pin name).
    pub netns: String,
    /// Its cookie, when it still exists.
    pub cookie: Option<u64>,
    /// The capture in force: (inbound port, proxy's outbound port); `None` when the link is
    /// attached but the capture is off (removed by `weir apply`).
    pub ports: Option<(u16, u16)>,
    /// Local ports never captured.
    pub excluded_ports: usize,
    /// The proxy's inbound listening sockets weir knows (0: connections are refused).
    pub listeners: usize,
}

impl fmt::Display for InboundStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "netns {:<34}", self.netns)?;
        match (self.cookie, self.ports) {
            (None, _) => write!(f, " (gone)"),
            (Some(_), None) => write!(f, " inbound capture off"),
            (Some(_), Some((port, outbound))) => {
                write!(
                    f,
                    " inbound TCP -> proxy port {port} (ports {port} and {outbound} not captured"
                )?;
                if self.excluded_ports > 0 {
                    write!(f, ", {} more excluded", self.excluded_ports)?;
                }
                write!(f, "), {} proxy listeners", self.listeners)
            }
        }
    }
}

/// The mesh section of `weir status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshStatus {
    /// Meshed and proxy cgroups, meshed first, then by path.
    pub cgroups: Vec<MeshCgroupStatus>,
    /// Captured network namespaces (inbound capture), by name.
    pub inbound: Vec<InboundStatus>,
    /// Event counters: (name, count).
    pub counters: Vec<(&'static str, u64)>,
}

fn counter_name(slot: u32) -> Option<&'static str> {
    match slot {
        mesh::COUNT_REDIRECT4 => Some("redirected (IPv4)"),
        mesh::COUNT_REDIRECT6 => Some("redirected (IPv6)"),
        mesh::COUNT_RECORDED => Some("established and recorded"),
        mesh::COUNT_ANSWERED => Some("original destinations answered"),
        mesh::COUNT_UNKNOWN => Some("original destination asked, unknown"),
        mesh::COUNT_INBOUND => Some("inbound connections to the proxy"),
        mesh::COUNT_INBOUND_REFUSED => Some("inbound connections refused (no proxy listener)"),
        mesh::COUNT_INBOUND_ANSWERED => Some("original destinations answered (inbound)"),
        _ => None,
    }
}

/// Finds the path (relative to `root`) of the cgroup directories whose inode is in `ids`.
fn paths_of(root: &Path, ids: &BTreeSet<u64>) -> HashMap<u64, String> {
    let mut out = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    // Bounded: a status call must not walk a huge tree forever.
    let mut budget = 100_000usize;
    while let Some(dir) = stack.pop() {
        if out.len() == ids.len() || budget == 0 {
            break;
        }
        budget -= 1;
        if let Ok(id) = cgroup::cgroup_id(&dir) {
            if ids.contains(&id) {
                let rel = dir
                    .strip_prefix(root)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                out.insert(id, rel);
            }
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
    out
}

fn open_def(
    pin_dir: &Path,
    name: &str,
) -> Result<Option<(std::os::fd::OwnedFd, &'static maps_schema::MapDef)>, Error> {
    let def = maps_schema::find(name).ok_or_else(|| Error::map(name, "not in maps-schema"))?;
    let path = pin_dir.join(MAPS_DIR).join(crate::maps::pin_name(def));
    Ok(crate::attach::open_pin(&path)?.map(|fd| (fd, def)))
}

fn sum_percpu(
    fd: std::os::fd::BorrowedFd<'_>,
    def: &maps_schema::MapDef,
    key: &[u8],
) -> Result<u64, Error> {
    let mut buf = vec![0u8; value_len(def)?];
    let ncpus = bpf::possible_cpus()
        .map_err(|e| Error::io("reading /sys/devices/system/cpu/possible", e))?;
    if !bpf::map_lookup(fd, key, &mut buf)
        .map_err(|e| Error::bpf(format!("map '{}'", def.name), e))?
    {
        return Ok(0);
    }
    Ok(maps_schema::decode_per_cpu::<Counter>(&buf, ncpus as usize)
        .map(|c| Counter::sum(&c).packets)
        .unwrap_or(0))
}

/// Reads the meshed and proxy cgroups, their redirect counts and the mesh counters from the
/// maps pinned under `pin_dir` (empty when the mesh maps are not pinned).
///
/// # Errors
/// When a pinned map cannot be read.
pub fn read_status(pin_dir: &Path) -> Result<MeshStatus, Error> {
    let mut st = MeshStatus::default();
    let Some((cfd, cdef)) = open_def(pin_dir, MAP_CGROUPS)? else {
        return Ok(st);
    };
    let ports = match open_def(pin_dir, MAP_PORTS)? {
        Some((fd, def)) => contents::entries_of(fd.as_fd(), def)?,
        None => BTreeMap::new(),
    };
    let mut excluded: HashMap<u64, usize> = HashMap::new();
    for k in ports.keys() {
        if let Ok(k) = MeshPortKey::decode(k) {
            *excluded.entry(k.cgroup).or_default() += 1;
        }
    }
    let stats = open_def(pin_dir, MAP_STATS)?;
    let entries: Vec<(u64, MeshCgroup)> = contents::entries_of(cfd.as_fd(), cdef)?
        .iter()
        .filter_map(|(k, v)| Some((u64::decode(k).ok()?, MeshCgroup::decode(v).ok()?)))
        .collect();
    let ids: BTreeSet<u64> = entries.iter().map(|(id, _)| *id).collect();
    let paths = match cgroup::cgroup2_mount() {
        Ok(root) if !ids.is_empty() => paths_of(&root, &ids),
        _ => HashMap::new(),
    };
    for (id, c) in entries {
        let redirected = match &stats {
            Some((fd, def)) if c.flags & mesh::MESHED != 0 => {
                sum_percpu(fd.as_fd(), def, &id.encode())?
            }
            _ => 0,
        };
        st.cgroups.push(MeshCgroupStatus {
            id,
            path: paths.get(&id).cloned(),
            proxy: c.flags & mesh::PROXY != 0,
            proxy_port: u16::from_be(c.proxy_port),
            proxy_uid: (c.flags & mesh::PROXY_UID != 0).then_some(c.proxy_uid),
            excluded_ports: excluded.get(&id).copied().unwrap_or(0),
            redirected,
        });
    }
    st.cgroups
        .sort_by(|a, b| (a.proxy, &a.path, a.id).cmp(&(b.proxy, &b.path, b.id)));
    st.inbound = read_inbound(pin_dir)?;
    if let Some((fd, def)) = open_def(pin_dir, MAP_COUNTERS)? {
        for slot in 0..mesh::COUNTERS {
            let Some(name) = counter_name(slot) else {
                continue;
            };
            st.counters
                .push((name, sum_percpu(fd.as_fd(), def, &slot.encode())?));
        }
    }
    Ok(st)
}

/// The captured namespaces: one per `mesh-inbound@` link pin, with the maps' view of them.
fn read_inbound(pin_dir: &Path) -> Result<Vec<InboundStatus>, Error> {
    let mut out = Vec::new();
    let names = crate::dataplane::list_dir(&pin_dir.join(crate::attach::LINKS_DIR))?;
    let captured: Vec<String> = names
        .iter()
        .filter_map(|n| match crate::attach::AttachPoint::from_pin_name(n) {
            Some(crate::attach::AttachPoint::MeshInbound { netns }) => Some(netns),
            _ => None,
        })
        .collect();
    if captured.is_empty() {
        return Ok(out);
    }
    let entries = |name: &str| -> Result<BTreeMap<Vec<u8>, Vec<u8>>, Error> {
        match open_def(pin_dir, name)? {
            Some((fd, def)) => contents::entries_of(fd.as_fd(), def),
            None => Ok(BTreeMap::new()),
        }
    };
    let inbound = entries(MAP_INBOUND)?;
    let ports = entries(MAP_INBOUND_PORTS)?;
    // A sockhash's values are socket cookies; only its keys matter here.
    let mut listeners: Vec<u64> = Vec::new();
    if let Some((fd, def)) = open_def(pin_dir, MAP_LISTENERS)? {
        let mut key: Option<Vec<u8>> = None;
        let mut next = vec![0u8; def.key.size as usize];
        while bpf::map_next_key(fd.as_fd(), key.as_deref(), &mut next)
            .map_err(|e| Error::bpf(format!("map '{MAP_LISTENERS}'"), e))?
        {
            if let Ok(k) = maps_schema::MeshListenerKey::decode(&next) {
                listeners.push(k.netns_cookie);
            }
            key = Some(next.clone());
        }
    }
    for netns in captured {
        let cookie = crate::attach::mesh_inbound::netns_identity(&netns)
            .ok()
            .map(|(c, _)| c);
        let ports_in = cookie
            .and_then(|c| inbound.get(&c.encode()))
            .and_then(|v| MeshInbound::decode(v).ok())
            .map(|v| (v.inbound_port, v.proxy_port));
        let excluded = ports
            .keys()
            .filter_map(|k| MeshInboundPortKey::decode(k).ok())
            .filter(|k| Some(k.netns_cookie) == cookie)
            .count();
        out.push(InboundStatus {
            netns,
            cookie,
            ports: ports_in,
            excluded_ports: excluded,
            listeners: listeners.iter().filter(|c| Some(**c) == cookie).count(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        crate::config::parse("t.conf", text).unwrap()
    }

    #[test]
    fn compile_meshed_and_proxy_cgroups() {
        let c = cfg("cgroup pods\n\
                     mesh pods/web proxy-port=15001 proxy-cgroup=pods/web/envoy exclude-ports=22,8125-8126\n\
                     mesh pods/api proxy-port=15002 proxy-uid=1337 proxy-cgroup=pods/web/envoy\n");
        let ids: HashMap<String, u64> = [
            ("pods/web".to_owned(), 10),
            ("pods/web/envoy".to_owned(), 11),
            ("pods/api".to_owned(), 20),
        ]
        .into_iter()
        .collect();
        let d = compile(&c, &ids, &HashMap::new()).unwrap();
        assert_eq!(d.cgroups.len(), 3);
        assert_eq!(
            d.cgroups[&10],
            MeshCgroup {
                flags: mesh::MESHED,
                proxy_uid: 0,
                proxy_port: 15001u16.to_be(),
                pad: 0
            }
        );
        assert_eq!(d.cgroups[&11].flags, mesh::PROXY);
        assert_eq!(
            d.cgroups[&20],
            MeshCgroup {
                flags: mesh::MESHED | mesh::PROXY_UID,
                proxy_uid: 1337,
                proxy_port: 15002u16.to_be(),
                pad: 0
            }
        );
        let ports: Vec<(u64, u16)> = d
            .ports
            .iter()
            .map(|k| (k.cgroup, u16::from_be(k.port)))
            .collect();
        assert_eq!(ports, [(10, 22), (10, 8125), (10, 8126)]);
        // The same config compiles the same; a missing id is an error naming the line.
        assert_eq!(compile(&c, &ids, &HashMap::new()).unwrap(), d);
        let mut partial = ids.clone();
        partial.remove("pods/api");
        let e = compile(&c, &partial, &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("pods/api"), "{e}");
        assert_eq!(
            compile(&cfg(""), &HashMap::new(), &HashMap::new()).unwrap(),
            Desired::default()
        );
    }

    #[test]
    fn the_mesh_object_has_every_program_the_attach_list_names() {
        use crate::object::{CgroupSockHook, ProgKind, SockAddrHook};
        let o = crate::object::parse_and_verify("mesh.o", include_bytes!("../../programs/mesh.o"))
            .unwrap_or_else(|e| panic!("{e}"));
        let kind = |name: &str| {
            o.programs
                .iter()
                .find(|p| p.name == name)
                .map(|p| p.kind)
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        assert_eq!(
            kind("mesh_sockops"),
            ProgKind::CgroupSock(CgroupSockHook::SockOps)
        );
        assert_eq!(
            kind("mesh_getsockopt"),
            ProgKind::CgroupSock(CgroupSockHook::GetSockopt)
        );
        assert_eq!(
            kind("mesh_connect6"),
            ProgKind::SockAddr(SockAddrHook::Connect6)
        );
        for (name, hook) in crate::embedded::PROGS_MESH {
            let want = kind(name).expected_attach_type();
            assert_eq!(want, Some(hook.attach_type()), "{name}");
        }
        assert_eq!(kind(crate::embedded::PROG_MESH_INBOUND), ProgKind::SkLookup);
        assert_eq!(o.programs.len(), crate::embedded::PROGS_MESH.len() + 1);
    }

    #[test]
    fn meshes_and_proxies_are_excluded_from_load_balancing() {
        let c = cfg("lb exclude other\n\
                     mesh pods/web proxy-port=15001 proxy-cgroup=sidecars\n\
                     mesh pods/api proxy-port=15001 proxy-uid=1337\n");
        let paths: Vec<&str> = c.lb_excluded_cgroups().iter().map(|e| e.0).collect();
        assert_eq!(paths, ["other", "pods/web", "sidecars", "pods/api"]);
    }

    #[test]
    fn mesh_programs_attach_beside_the_lb_ones() {
        let points = |text: &str| -> Vec<String> {
            crate::Dataplane::desired(&cfg(text))
                .into_iter()
                .map(|d| d.point.pin_name())
                .collect()
        };
        let p = points("cgroup pods\nmesh pods/web proxy-port=15001 proxy-uid=1\n");
        assert_eq!(
            p.len(),
            crate::embedded::PROGS_SOCK.len() + 1 + crate::embedded::PROGS_MESH.len()
        );
        for name in [
            "connect4@pods",
            "mesh-connect4@pods",
            "mesh-sockops@pods",
            "mesh-getsockopt@pods",
        ] {
            assert!(p.contains(&name.to_owned()), "{name} in {p:?}");
        }
        // Without a cgroup statement: the cgroup2 root, as for services.
        let root = points("mesh pods/web proxy-port=15001 proxy-uid=1\n");
        assert!(root.contains(&"mesh-connect6@%2F".to_owned()), "{root:?}");
        // No mesh: no mesh programs.
        let lb = points("cgroup pods\n");
        assert!(lb.iter().all(|n| !n.starts_with("mesh-")), "{lb:?}");
    }
}
