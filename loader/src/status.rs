//! `weir status`: what is attached where (program ids, link ids), the maps with their fill levels,
//! and the counters, read from the pins and the kernel, never from a record weir keeps itself.

use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use maps_schema::{if_slot, Codec, Counter, IfCounters, MapType};

use crate::attach::{open_pin, AttachPoint, LEGACY_DIR, LINKS_DIR};
use crate::dataplane::list_dir;
use crate::error::Error;
use crate::maps::{parse_pin_name, MAPS_DIR};
use crate::sys::bpf;
use crate::sys::netlink::Netlink;

/// One attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentStatus {
    /// Its pin name, e.g. `tc-ingress@veth0`.
    pub pin: String,
    /// `link` (pinned bpf_link) or `netlink`.
    pub via: &'static str,
    /// The link id, for bpf_link attachments.
    pub link_id: Option<u32>,
    /// The program id.
    pub prog_id: u32,
    /// The program name.
    pub prog_name: String,
    /// How often the program ran (needs `kernel.bpf_stats_enabled=1`, else 0).
    pub run_cnt: u64,
}

/// One pinned map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapStatus {
    /// Map name.
    pub name: String,
    /// Layout version from its pin name.
    pub version: u32,
    /// Kernel map id.
    pub id: u32,
    /// Kernel map type name.
    pub kind: String,
    /// Entries present (for arrays: the capacity, every slot exists); `None` for maps whose
    /// keys cannot be walked (socket storage: one value per socket, freed with it).
    pub entries: Option<u32>,
    /// Capacity.
    pub max_entries: u32,
}

/// Per-interface packet counters (XDP / TC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfCounter {
    /// Interface name (or `ifindex N` when it is not in this namespace).
    pub interface: String,
    /// `xdp`, `tc-ingress`, `tc-egress`.
    pub hook: String,
    /// The counter, summed over CPUs.
    pub counter: Counter,
}

/// Everything `weir status` shows.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// The pin directory.
    pub pin_dir: String,
    /// True when a dataplane is loaded there.
    pub loaded: bool,
    /// Attachments.
    pub attachments: Vec<AttachmentStatus>,
    /// Maps.
    pub maps: Vec<MapStatus>,
    /// Interface counters.
    pub if_counters: Vec<IfCounter>,
    /// Connect-time hook call counters: (hook, calls).
    pub sock_counters: Vec<(String, u64)>,
    /// XDP prefilter verdicts by reason (`passed`, `dropped`, `failsafe`, `unparsed`).
    pub prefilter: Vec<(String, Counter)>,
    /// Deny-list entries with their hit counts, most hits first.
    pub deny_hits: Vec<(String, u64)>,
    /// Load-balanced services with their backends and per-backend counts, by service id.
    pub services: Vec<crate::lb::ServiceStatus>,
    /// Network policy: flows in the conntrack table, when the TC programs are loaded.
    pub conntrack_entries: Option<u32>,
    /// Network policy outcomes (`pol_stats`): (name, packets and bytes).
    pub policy_stats: Vec<(String, Counter)>,
    /// Per-rule counters by config rule index (rules with packets only).
    pub rule_counters: Vec<(u32, Counter)>,
    /// Per-policy counts by config policy index (policies with counts only).
    pub policy_counts: Vec<(u32, maps_schema::PolCounts)>,
    /// Names of rule ids (`POLICY#N`) and, at `pol::NAME_POLICY_BASE + id`, of policy ids.
    pub policy_names: std::collections::BTreeMap<u32, String>,
    /// Meshed and proxy cgroups with their redirect counts, and the mesh's event counters.
    pub mesh: crate::mesh::MeshStatus,
}

impl Status {
    /// The name of config rule id `rule` (`POLICY#N`), or `#id` when the loaded objects keep no
    /// names.
    pub fn rule_name(&self, rule: u32) -> String {
        self.policy_names
            .get(&rule)
            .cloned()
            .unwrap_or_else(|| format!("#{rule}"))
    }

    /// The name of config policy id `policy`, or `#id`.
    pub fn policy_name(&self, policy: u32) -> String {
        self.policy_names
            .get(&(maps_schema::pol::NAME_POLICY_BASE + policy))
            .cloned()
            .unwrap_or_else(|| format!("#{policy}"))
    }
}

fn hook_name(hook: u32) -> String {
    match hook {
        maps_schema::hook::XDP => "xdp".into(),
        maps_schema::hook::TC_INGRESS => "tc-ingress".into(),
        maps_schema::hook::TC_EGRESS => "tc-egress".into(),
        maps_schema::hook::FASTPATH_IN => "fastpath-in".into(),
        maps_schema::hook::FASTPATH_OUT => "fastpath-out".into(),
        other => format!("hook {other}"),
    }
}

fn sock_hook_name(index: u32) -> String {
    match index {
        maps_schema::sock_hook::CONNECT4 => "connect4".into(),
        maps_schema::sock_hook::CONNECT6 => "connect6".into(),
        maps_schema::sock_hook::SENDMSG4 => "sendmsg4".into(),
        maps_schema::sock_hook::SENDMSG6 => "sendmsg6".into(),
        maps_schema::sock_hook::RECVMSG4 => "recvmsg4".into(),
        maps_schema::sock_hook::RECVMSG6 => "recvmsg6".into(),
        maps_schema::sock_hook::GETPEERNAME4 => "getpeername4".into(),
        maps_schema::sock_hook::GETPEERNAME6 => "getpeername6".into(),
        maps_schema::sock_hook::SOCK_RELEASE => "sock-release".into(),
        other => format!("sock hook {other}"),
    }
}

/// Counts the keys of a map by walking them.
fn count_entries(fd: BorrowedFd<'_>, key_size: u32) -> Result<u32, bpf::BpfError> {
    let mut key: Option<Vec<u8>> = None;
    let mut next = vec![0u8; key_size as usize];
    let mut n = 0u32;
    while bpf::map_next_key(fd, key.as_deref(), &mut next)? {
        n += 1;
        key = Some(next.clone());
        if n == u32::MAX {
            break;
        }
    }
    Ok(n)
}

/// Reads one per-CPU value and sums it.
fn read_percpu_counter(
    fd: BorrowedFd<'_>,
    key: &[u8],
    ncpus: u32,
) -> Result<Option<Counter>, Error> {
    let slot = (Counter::LAYOUT.size as usize).div_ceil(8) * 8;
    let mut value = vec![0u8; slot * ncpus as usize];
    if !bpf::map_lookup(fd, key, &mut value).map_err(|e| Error::bpf("reading counters", e))? {
        return Ok(None);
    }
    let per_cpu = maps_schema::decode_per_cpu::<Counter>(&value, ncpus as usize)
        .map_err(|e| Error::map("counters", e.to_string()))?;
    Ok(Some(Counter::sum(&per_cpu)))
}

/// The interface counters of `if_counters` (by slot, each labelled with its interface): one
/// row per interface and hook that counted packets, summed over CPUs (and over slots, should two
/// carry the same interface).
fn read_if_counters(
    fd: BorrowedFd<'_>,
    def: &maps_schema::MapDef,
    ncpus: u32,
    mut nl: Option<&mut Netlink>,
    out: &mut Vec<IfCounter>,
) -> Result<(), Error> {
    let mut sums: BTreeMap<(u32, u32), Counter> = BTreeMap::new();
    for (_, value) in crate::contents::entries_of(fd, def)? {
        let per_cpu = maps_schema::decode_per_cpu::<IfCounters>(&value, ncpus as usize)
            .map_err(|e| Error::map(def.name, e.to_string()))?;
        let Some(ifindex) = per_cpu.first().map(|c| c.ifindex).filter(|i| *i != 0) else {
            continue; // never assigned (or slot NONE)
        };
        for hook in if_slot::FIRST_HOOK..if_slot::FIRST_HOOK + if_slot::HOOKS {
            let hooks: Vec<Counter> = per_cpu.iter().filter_map(|c| c.hook(hook)).collect();
            let c = Counter::sum(&hooks);
            if c.packets > 0 {
                let sum = sums.entry((ifindex, hook)).or_default();
                *sum = Counter::sum(&[*sum, c]);
            }
        }
    }
    for ((ifindex, hook), counter) in sums {
        let interface = nl
            .as_mut()
            .and_then(|nl| nl.link_name(ifindex).ok().flatten())
            .unwrap_or_else(|| format!("ifindex {ifindex}"));
        out.push(IfCounter {
            interface,
            hook: hook_name(hook),
            counter,
        });
    }
    Ok(())
}

/// Reads the status of the dataplane pinned at `pin_dir`.
///
/// # Errors
/// Returns an error when a pin exists but cannot be read.
pub fn read(pin_dir: &Path) -> Result<Status, Error> {
    let mut st = Status {
        pin_dir: pin_dir.display().to_string(),
        ..Status::default()
    };
    if !pin_dir.is_dir() {
        return Ok(st);
    }
    st.loaded = true;
    for (sub, via) in [(LINKS_DIR, "link"), (LEGACY_DIR, "netlink")] {
        for name in list_dir(&pin_dir.join(sub))? {
            if AttachPoint::from_pin_name(&name).is_none() {
                continue;
            }
            let Some(fd) = open_pin(&pin_dir.join(sub).join(&name))? else {
                continue;
            };
            let (link_id, prog_id) = if via == "link" {
                let info = bpf::link_info(fd.as_fd())
                    .map_err(|e| Error::bpf(format!("link {name}"), e))?;
                (Some(info.id), info.prog_id)
            } else {
                (
                    None,
                    bpf::prog_info(fd.as_fd())
                        .map_err(|e| Error::bpf(format!("prog {name}"), e))?
                        .id,
                )
            };
            let info = bpf::prog_fd_by_id(prog_id)
                .and_then(|p| bpf::prog_info(p.as_fd()))
                .ok();
            st.attachments.push(AttachmentStatus {
                pin: name,
                via,
                link_id,
                prog_id,
                prog_name: info.as_ref().map(|i| i.name.clone()).unwrap_or_default(),
                run_cnt: info.map(|i| i.run_cnt).unwrap_or(0),
            });
        }
    }
    let ncpus = bpf::possible_cpus()
        .map_err(|e| Error::io("reading /sys/devices/system/cpu/possible", e))?;
    let mut nl = Netlink::open().ok();
    for file in list_dir(&pin_dir.join(MAPS_DIR))? {
        let Some((name, version)) = parse_pin_name(&file) else {
            continue;
        };
        let Some(fd) = open_pin(&pin_dir.join(MAPS_DIR).join(&file))? else {
            continue;
        };
        let info = bpf::map_info(fd.as_fd()).map_err(|e| Error::bpf(format!("map '{name}'"), e))?;
        let kind = MapType::from_u32(info.map_type)
            .map(|t| t.name().to_owned())
            .unwrap_or_else(|| format!("type {}", info.map_type));
        let map_type = MapType::from_u32(info.map_type);
        let entries = if map_type.is_some_and(MapType::is_array) {
            Some(info.max_entries)
        } else if map_type.is_some_and(|t| !t.has_keys()) {
            None
        } else {
            Some(
                count_entries(fd.as_fd(), info.key_size)
                    .map_err(|e| Error::bpf(format!("map '{name}'"), e))?,
            )
        };
        st.maps.push(MapStatus {
            name: name.to_owned(),
            version,
            id: info.id,
            kind,
            entries,
            max_entries: info.max_entries,
        });
        // A pin of another layout version (left by an older or newer weir) is listed, but its
        // contents are not read with this version's layout.
        if maps_schema::find(name).map(|d| d.layout_version) != Some(version) {
            continue;
        }
        match name {
            "if_counters" => {
                let def =
                    maps_schema::find(name).ok_or_else(|| Error::map(name, "not in the schema"))?;
                read_if_counters(fd.as_fd(), def, ncpus, nl.as_mut(), &mut st.if_counters)?;
            }
            "sock_counters" => {
                for index in 0..info.max_entries {
                    let Some(c) = read_percpu_counter(fd.as_fd(), &index.encode(), ncpus)? else {
                        continue;
                    };
                    if c.packets > 0 {
                        st.sock_counters.push((sock_hook_name(index), c.packets));
                    }
                }
            }
            "prefilter_stats" => {
                for reason in 0..info.max_entries {
                    let Some(c) = read_percpu_counter(fd.as_fd(), &reason.encode(), ncpus)? else {
                        continue;
                    };
                    let name = maps_schema::prefilter_reason::name(reason)
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("reason {reason}"));
                    st.prefilter.push((name, c));
                }
            }
            "prefilter_v4" => {
                let def = maps_schema::find(name)
                    .ok_or_else(|| Error::map(name, "not in maps-schema"))?;
                let m = crate::maps::OpenMap {
                    def,
                    fd,
                    reused: true,
                    pin: None,
                };
                let list = crate::prefilter::v4_entries(&m)?;
                if let Some(last) = st.maps.last_mut() {
                    last.entries = Some(list.len() as u32);
                }
                for (cidr, hits) in list {
                    st.deny_hits.push((cidr.to_string(), hits));
                }
            }
            "prefilter_v6" => {
                let def = maps_schema::find(name)
                    .ok_or_else(|| Error::map(name, "not in maps-schema"))?;
                for (key, value) in crate::contents::entries_of(fd.as_fd(), def)? {
                    let Some(cidr) = crate::prefilter::cidr_of_key(&key) else {
                        continue;
                    };
                    let hits = maps_schema::DenyEntry::decode(&value)
                        .map(|d| d.hits)
                        .unwrap_or(0);
                    st.deny_hits.push((cidr.to_string(), hits));
                }
            }
            "pol_ct" => st.conntrack_entries = entries,
            "pol_stats" => {
                for index in 0..info.max_entries {
                    let Some(c) = read_percpu_counter(fd.as_fd(), &index.encode(), ncpus)? else {
                        continue;
                    };
                    let name = maps_schema::pol::stat_name(index)
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("outcome {index}"));
                    st.policy_stats.push((name, c));
                }
            }
            "pol_rule_ctrs" | "pol_pol_ctrs" => {
                let def = maps_schema::find(name)
                    .ok_or_else(|| Error::map(name, "not in maps-schema"))?;
                for (key, value) in crate::contents::entries_of(fd.as_fd(), def)? {
                    let Ok(index) = u32::decode(&key) else {
                        continue;
                    };
                    if name == "pol_rule_ctrs" {
                        let c = maps_schema::decode_per_cpu::<Counter>(&value, ncpus as usize)
                            .map(|v| Counter::sum(&v))
                            .unwrap_or_default();
                        if c.packets > 0 {
                            st.rule_counters.push((index, c));
                        }
                    } else {
                        let c = maps_schema::decode_per_cpu::<maps_schema::PolCounts>(
                            &value,
                            ncpus as usize,
                        )
                        .map(|v| maps_schema::PolCounts::sum(&v))
                        .unwrap_or_default();
                        if c.denied > 0 || c.audited > 0 {
                            st.policy_counts.push((index, c));
                        }
                    }
                }
            }
            "pol_names" => {
                let def = maps_schema::find(name)
                    .ok_or_else(|| Error::map(name, "not in maps-schema"))?;
                for (key, value) in crate::contents::entries_of(fd.as_fd(), def)? {
                    if let (Ok(id), Ok(n)) =
                        (u32::decode(&key), maps_schema::PolName::decode(&value))
                    {
                        let name = crate::policy::incremental::decode_name(&n.name);
                        st.policy_names.insert(id, name);
                    }
                }
            }
            _ => {}
        }
    }
    st.services = crate::lb::read_status(pin_dir)?;
    // Mesh maps stay pinned when a later load drops every mesh statement (and detaches the
    // programs): only attached programs make their contents current.
    if st.attachments.iter().any(|a| a.pin.starts_with("mesh-")) {
        st.mesh = crate::mesh::read_status(pin_dir)?;
    }
    st.deny_hits
        .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    st.if_counters
        .sort_by(|a, b| (&a.interface, &a.hook).cmp(&(&b.interface, &b.hook)));
    Ok(st)
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.loaded {
            return writeln!(f, "weir is not loaded (no pin dir at {})", self.pin_dir);
        }
        writeln!(f, "pin dir: {}", self.pin_dir)?;
        writeln!(f, "attachments:")?;
        if self.attachments.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for a in &self.attachments {
            let link = a
                .link_id
                .map(|id| format!(" link {id}"))
                .unwrap_or_default();
            writeln!(
                f,
                "  {:<28} via {:<7} prog {} '{}'{link}",
                a.pin, a.via, a.prog_id, a.prog_name
            )?;
        }
        writeln!(f, "maps:")?;
        for m in &self.maps {
            let (name, version, id, kind) = (&m.name, m.version, m.id, &m.kind);
            match m.entries {
                Some(n) => writeln!(
                    f,
                    "  {name:<16} v{version} id {id:<6} {kind:<14} {n}/{} entries",
                    m.max_entries
                )?,
                None => {
                    let what = match kind.as_str() {
                        "sk_storage" => "one value per socket",
                        "ringbuf" => "records, read by `weir events`",
                        _ => "not countable",
                    };
                    writeln!(f, "  {name:<16} v{version} id {id:<6} {kind:<14} {what}")?;
                }
            }
        }
        if !self.if_counters.is_empty() {
            writeln!(f, "interface counters:")?;
            for c in &self.if_counters {
                writeln!(
                    f,
                    "  {:<16} {:<11} {} packets, {} bytes",
                    c.interface, c.hook, c.counter.packets, c.counter.bytes
                )?;
            }
        }
        if !self.prefilter.is_empty() {
            writeln!(f, "xdp prefilter:")?;
            for (reason, c) in &self.prefilter {
                writeln!(f, "  {reason:<16} {} packets, {} bytes", c.packets, c.bytes)?;
            }
            let hit: Vec<_> = self.deny_hits.iter().filter(|(_, h)| *h > 0).collect();
            writeln!(
                f,
                "  deny list: {} entries, {} with hits{}",
                self.deny_hits.len(),
                hit.len(),
                if hit.is_empty() {
                    ""
                } else {
                    " (most hits first):"
                }
            )?;
            for (cidr, hits) in hit.iter().take(20) {
                writeln!(f, "    {cidr:<43} {hits} packets dropped")?;
            }
            if hit.len() > 20 {
                writeln!(f, "    ... {} more", hit.len() - 20)?;
            }
        }
        if !self.services.is_empty() {
            writeln!(f, "services:")?;
            for s in &self.services {
                writeln!(f, "  {s}")?;
                for b in &s.backends {
                    writeln!(
                        f,
                        "    {:<45} {}{} rewritten to it",
                        b.addr.to_string(),
                        if b.drained {
                            "drained, ".to_owned()
                        } else {
                            format!("{} slot{}, ", b.slots, if b.slots == 1 { "" } else { "s" })
                        },
                        b.rewritten
                    )?;
                }
            }
        }
        if let Some(n) = self.conntrack_entries {
            writeln!(f, "network policy:")?;
            writeln!(f, "  conntrack: {n} flows")?;
            for (name, c) in self.policy_stats.iter().filter(|(_, c)| c.packets > 0) {
                writeln!(f, "  {name:<18} {} packets, {} bytes", c.packets, c.bytes)?;
            }
            for (rule, c) in &self.rule_counters {
                let name = self.rule_name(*rule);
                writeln!(
                    f,
                    "  rule {name:<18} {} packets, {} bytes",
                    c.packets, c.bytes
                )?;
            }
            for (policy, c) in &self.policy_counts {
                let name = self.policy_name(*policy);
                writeln!(
                    f,
                    "  policy {name:<16} {} denied, {} would deny (audit)",
                    c.denied, c.audited
                )?;
            }
        }
        if !self.mesh.cgroups.is_empty() {
            writeln!(f, "mesh (outbound TCP redirected to a local proxy):")?;
            for c in &self.mesh.cgroups {
                writeln!(f, "  {c}")?;
            }
            for i in &self.mesh.inbound {
                writeln!(f, "  {i}")?;
            }
            for (what, n) in self.mesh.counters.iter().filter(|(_, n)| *n > 0) {
                writeln!(f, "  {what}: {n}")?;
            }
        }
        if !self.sock_counters.is_empty() {
            writeln!(f, "connect-time counters:")?;
            for (hook, n) in &self.sock_counters {
                writeln!(f, "  {hook:<16} {n} calls")?;
            }
        }
        Ok(())
    }
}
