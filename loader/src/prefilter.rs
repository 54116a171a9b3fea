//! The XDP prefilter's map contents, computed from the config: the deny lists (an IPv4 multibit
//! table, see [`table`], and an IPv6 LPM trie) and the inbound failsafe port bitmap.

pub mod table;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use maps_schema::{Codec, DenyV4, DirChunk};

use crate::config::{Cidr, Config, L4Proto, PortRange};
use crate::contents::{self, SetChange, Undo};
use crate::error::Error;
use crate::maps::{MapSet, OpenMap};

/// Map names (as in maps-schema): the IPv4 deny entries (id → prefix, hits).
pub const MAP_V4: &str = "prefilter_v4";
/// The IPv4 deny table's root (one slot per /16).
pub const MAP_V4_ROOT: &str = "deny_v4_root";
/// The IPv4 deny table's chunks.
pub const MAP_V4_NODES: &str = "deny_v4_nodes";
/// IPv6 deny list.
pub const MAP_V6: &str = "prefilter_v6";
/// Failsafe bitmap.
pub const MAP_FAILSAFE: &str = "failsafe_in";
/// Per-reason counters.
pub const MAP_STATS: &str = "prefilter_stats";

/// The LPM trie key of a CIDR: prefix length (host order) then the address (network order).
pub fn lpm_key(cidr: &Cidr) -> Vec<u8> {
    let mut key = u32::from(cidr.prefix_len).to_ne_bytes().to_vec();
    match cidr.addr {
        IpAddr::V4(a) => key.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => key.extend_from_slice(&a.octets()),
    }
    key
}

/// The CIDR an LPM trie key stands for (the inverse of [`lpm_key`]).
pub fn cidr_of_key(key: &[u8]) -> Option<Cidr> {
    let prefix = u32::from_ne_bytes(key.get(..4)?.try_into().ok()?);
    let addr: IpAddr = match key.len() {
        8 => <[u8; 4]>::try_from(&key[4..8]).ok()?.into(),
        20 => <[u8; 16]>::try_from(&key[4..20]).ok()?.into(),
        _ => return None,
    };
    let prefix_len = u8::try_from(prefix).ok()?;
    Some(Cidr { addr, prefix_len })
}

fn proto_slot(p: L4Proto) -> u32 {
    match p {
        L4Proto::Tcp => maps_schema::failsafe::TCP,
        L4Proto::Udp => maps_schema::failsafe::UDP,
        L4Proto::Sctp => maps_schema::failsafe::SCTP,
    }
}

/// The failsafe bitmap: word `slot * 1024 + port / 64`, bit `port % 64`.
pub fn failsafe_words(ranges: &[PortRange]) -> Vec<u64> {
    use maps_schema::failsafe;
    let mut words = vec![0u64; (failsafe::SLOTS * failsafe::WORDS_PER_SLOT) as usize];
    for r in ranges {
        for port in r.low..=r.high {
            // The one formula the program uses too (maps-schema generates its constants).
            let (word, mask) = failsafe::position(proto_slot(r.proto), port);
            words[word as usize] |= mask;
        }
    }
    words
}

/// What applying the prefilter changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PrefilterChange {
    /// IPv4 deny list.
    pub v4: SetChange,
    /// IPv6 deny list.
    pub v6: SetChange,
    /// Failsafe bitmap words rewritten.
    pub failsafe_words: usize,
}

impl std::fmt::Display for PrefilterChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "prefilter: deny v4 +{} -{} ({} entries), deny v6 +{} -{} ({} entries), failsafe words rewritten: {}",
            self.v4.added, self.v4.removed, self.v4.total, self.v6.added, self.v6.removed, self.v6.total, self.failsafe_words
        )
    }
}

impl PrefilterChange {
    /// True when nothing was written.
    pub fn is_noop(&self) -> bool {
        self.v4.added + self.v4.removed + self.v6.added + self.v6.removed + self.failsafe_words == 0
    }
}

/// Writes the prefilter maps' contents for `cfg`: only the difference against what they hold.
/// Maps the loaded objects do not use are skipped.
///
/// # Errors
/// A capacity problem (nothing written) or a write error (earlier writes are in `undo`).
pub fn apply(maps: &MapSet, cfg: &Config, undo: &mut Undo) -> Result<PrefilterChange, Error> {
    let mut change = PrefilterChange::default();
    let (mut v4, mut v6) = (BTreeSet::new(), BTreeSet::new());
    for (cidr, _) in &cfg.prefilter.deny {
        match cidr.addr {
            IpAddr::V4(a) => {
                let len = cidr.prefix_len.min(32);
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                v4.insert((u32::from(a) & mask, len));
            }
            IpAddr::V6(_) => {
                v6.insert(lpm_key(cidr));
            }
        }
    }
    // Check every capacity before writing anything.
    let v4_plan = match V4Maps::of(maps)? {
        Some(v4_maps) => Some((v4_maps.plan(&v4)?, v4_maps)),
        None => None,
    };
    if let Some(m) = maps.get(MAP_V6) {
        let cap = max_entries(m)? as usize;
        if v6.len() > cap {
            return Err(over_capacity(MAP_V6, "IPv6", "v6", v6.len(), cap));
        }
    }
    if let Some((plan, v4_maps)) = v4_plan {
        change.v4 = v4_maps.write(plan, undo)?;
    }
    if let Some(m) = maps.get(MAP_V6) {
        let initial = maps_schema::DenyEntry { hits: 0 }.encode();
        change.v6 = contents::sync_set(m, &v6, &initial, undo)?;
    }
    if let Some(m) = maps.get(MAP_FAILSAFE) {
        let words: Vec<Vec<u8>> = failsafe_words(&cfg.failsafe_in)
            .iter()
            .map(|w| w.to_ne_bytes().to_vec())
            .collect();
        change.failsafe_words = contents::sync_array(m, &words, undo)?;
    }
    Ok(change)
}

/// Makes the IPv4 deny list of `maps` hold exactly `prefixes` (`(address in host order,
/// prefix length)`, host bits clear), writing only the difference: what [`apply`] does for
/// IPv4, for callers with a list rather than a config (tests, benchmarks).
///
/// # Errors
/// A capacity problem (nothing written), missing maps, or a write error (earlier writes are in
/// `undo`).
pub fn apply_v4(
    maps: &MapSet,
    prefixes: &BTreeSet<(u32, u8)>,
    undo: &mut Undo,
) -> Result<SetChange, Error> {
    let v4_maps = V4Maps::of(maps)?
        .ok_or_else(|| Error::map(MAP_V4, "the loaded objects have no IPv4 deny list"))?;
    let plan = v4_maps.plan(prefixes)?;
    v4_maps.write(plan, undo)
}

/// The error for a deny list of `n` networks in a map of `capacity` entries.
fn over_capacity(map: &str, family: &str, option: &str, n: usize, capacity: usize) -> Error {
    Error::map(
        map,
        format!(
            "the config denies {n} {family} networks, more than the capacity of {capacity}; nothing was changed. \
             Raise it with `prefilter capacity {option}=N` (a pinned map cannot grow: `weir unload` first)"
        ),
    )
}

fn max_entries(m: &OpenMap) -> Result<u32, Error> {
    crate::sys::bpf::map_info(std::os::fd::AsFd::as_fd(&m.fd))
        .map(|i| i.max_entries)
        .map_err(|e| Error::bpf(format!("map '{}'", m.def.name), e))
}

/// The three maps of the IPv4 deny list.
struct V4Maps<'a> {
    entries: &'a OpenMap,
    root: &'a OpenMap,
    nodes: &'a OpenMap,
}

/// What [`V4Maps::plan`] decided, to be written by [`V4Maps::write`].
struct V4Plan {
    /// The entry rows as they are.
    rows: Vec<DenyV4>,
    /// The table as it is.
    table: table::Table,
    /// Rows to fill before the table points to them: `(id, row)`.
    new_rows: Vec<(u32, DenyV4)>,
    /// Rows to clear once nothing points to them.
    old_rows: Vec<u32>,
    /// The table writes.
    table_plan: table::Plan,
    /// Entries after the change.
    total: usize,
}

impl<'a> V4Maps<'a> {
    /// The maps, if the loaded objects use the IPv4 deny list.
    fn of(maps: &'a MapSet) -> Result<Option<V4Maps<'a>>, Error> {
        match (maps.get(MAP_V4), maps.get(MAP_V4_ROOT), maps.get(MAP_V4_NODES)) {
            (Some(entries), Some(root), Some(nodes)) => Ok(Some(V4Maps {
                entries,
                root,
                nodes,
            })),
            (None, None, None) => Ok(None),
            _ => Err(Error::map(
                MAP_V4,
                format!(
                    "the loaded objects use only some of {MAP_V4}, {MAP_V4_ROOT} and {MAP_V4_NODES}; \
                     the IPv4 deny list needs all three"
                ),
            )),
        }
    }

    /// Reads what the maps hold and plans the change to `want` (address in host order, prefix
    /// length), checking every capacity: an error here means nothing was written.
    fn plan(&self, want: &BTreeSet<(u32, u8)>) -> Result<V4Plan, Error> {
        let capacity = max_entries(self.entries)? as usize;
        if want.len() > capacity {
            return Err(over_capacity(MAP_V4, "IPv4", "v4", want.len(), capacity));
        }
        let rows: Vec<DenyV4> = if self.entries.reused {
            decode_all(self.entries)?
        } else {
            vec![DenyV4::default(); capacity]
        };
        let table = if self.root.reused || self.nodes.reused {
            let root = decode_all::<u32>(self.root)?;
            let chunks = decode_all::<DirChunk>(self.nodes)?
                .into_iter()
                .map(|c| c.slot)
                .collect();
            table::Table { root, chunks }
        } else {
            table::Table::empty(max_entries(self.nodes)?)
        };
        // Entries that stay keep their id (and hits); new ones take ids free before this change,
        // so no packet still judged by the old table counts against a new entry.
        let mut kept: BTreeMap<(u32, u8), u32> = BTreeMap::new();
        let mut old_rows = Vec::new();
        for (id, row) in rows.iter().enumerate() {
            if row.in_use == 0 {
                continue;
            }
            let key = (u32::from_be_bytes(row.addr), row.prefixlen);
            if want.contains(&key) && !kept.contains_key(&key) {
                kept.insert(key, id as u32);
            } else {
                old_rows.push(id as u32);
            }
        }
        let mut free = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.in_use == 0)
            .map(|(id, _)| id as u32);
        let mut new_rows = Vec::new();
        let mut prefixes = Vec::with_capacity(want.len());
        for &(addr, len) in want {
            let id = match kept.get(&(addr, len)) {
                Some(id) => *id,
                None => {
                    let Some(id) = free.next() else {
                        return Err(Error::map(
                            MAP_V4,
                            format!(
                                "no free entry for {}/{len} while {} entries are being replaced; nothing was changed. \
                                 Apply the change in two steps, or raise `prefilter capacity v4=N`",
                                Ipv4Addr::from(addr),
                                old_rows.len()
                            ),
                        ));
                    };
                    new_rows.push((
                        id,
                        DenyV4 {
                            hits: 0,
                            addr: addr.to_be_bytes(),
                            prefixlen: len,
                            in_use: 1,
                            pad: [0; 2],
                        },
                    ));
                    id
                }
            };
            prefixes.push(table::Prefix { addr, len, id });
        }
        let table_plan = table::plan(&table, &prefixes).map_err(|no| {
            Error::map(
                MAP_V4_NODES,
                format!(
                    "the IPv4 deny list needs {} table chunks, {} of them new, and only {} are free \
                     (of {}); nothing was changed. Raise it with `prefilter capacity v4-chunks=N`, \
                     e.g. v4-chunks={} (a pinned map cannot grow: `weir unload` first)",
                    no.needed,
                    no.new,
                    no.free,
                    table.chunks.len(),
                    (no.needed * 2).next_multiple_of(1024)
                ),
            )
        })?;
        Ok(V4Plan {
            rows,
            table,
            new_rows,
            old_rows,
            table_plan,
            total: want.len(),
        })
    }

    /// Makes the planned writes, in the order that keeps every packet's verdict either the old
    /// or the new one: new rows, the table (see [`table`]), then the rows nothing points to.
    fn write(&self, plan: V4Plan, undo: &mut Undo) -> Result<SetChange, Error> {
        let V4Plan {
            rows,
            table,
            new_rows,
            old_rows,
            table_plan,
            total,
        } = plan;
        let row_bytes = |id: u32| rows.get(id as usize).copied().unwrap_or_default().encode();
        let writes: Vec<(u32, Vec<u8>)> =
            new_rows.iter().map(|(id, r)| (*id, r.encode())).collect();
        contents::write_array(self.entries, &writes, row_bytes, undo)?;
        let writes: Vec<(u32, Vec<u8>)> = table_plan
            .chunks
            .iter()
            .map(|(c, slots)| (*c, DirChunk { slot: *slots }.encode()))
            .collect();
        let chunk_bytes = |c: u32| {
            DirChunk {
                slot: table.chunks.get(c as usize).copied().unwrap_or_default(),
            }
            .encode()
        };
        contents::write_array(self.nodes, &writes, chunk_bytes, undo)?;
        let writes: Vec<(u32, Vec<u8>)> = table_plan
            .root
            .iter()
            .map(|(i, v)| (*i, v.encode()))
            .collect();
        let root_bytes = |i: u32| table.root.get(i as usize).copied().unwrap_or(0).encode();
        contents::write_array(self.root, &writes, root_bytes, undo)?;
        let writes: Vec<(u32, Vec<u8>)> = old_rows
            .iter()
            .map(|id| (*id, DenyV4::default().encode()))
            .collect();
        contents::write_array(self.entries, &writes, row_bytes, undo)?;
        log::debug!(
            "map '{MAP_V4_NODES}': {} chunks in use, {} written; {} root slots written",
            table_plan.chunks_used,
            table_plan.chunks.len(),
            table_plan.root.len()
        );
        Ok(SetChange {
            added: new_rows.len(),
            removed: old_rows.len(),
            total,
        })
    }
}

/// Every value of an array map, decoded (a value that does not decode reads as the default).
fn decode_all<T: Codec + Default + Clone>(m: &OpenMap) -> Result<Vec<T>, Error> {
    let bytes = contents::read_array(m)?;
    let size = T::LAYOUT.size as usize;
    Ok(bytes
        .chunks_exact(size)
        .map(|b| T::decode(b).unwrap_or_default())
        .collect())
}

/// The IPv4 deny entries a `prefilter_v4` map holds: `(prefix, hits)` by id order.
///
/// # Errors
/// Returns an error when the map cannot be read.
pub fn v4_entries(m: &OpenMap) -> Result<Vec<(Cidr, u64)>, Error> {
    Ok(decode_all::<DenyV4>(m)?
        .into_iter()
        .filter(|r| r.in_use != 0 && r.prefixlen <= 32)
        .map(|r| {
            (
                Cidr {
                    addr: IpAddr::V4(Ipv4Addr::from(r.addr)),
                    prefix_len: r.prefixlen,
                },
                r.hits,
            )
        })
        .collect())
}

/// Sets the deny-list capacities from the config on a map set (before the maps are created).
pub fn set_capacities(maps: &mut MapSet, cfg: &Config) {
    maps.set_capacity(MAP_V4, cfg.prefilter.capacity_v4);
    maps.set_capacity(MAP_V4_NODES, cfg.prefilter.chunks_v4);
    maps.set_capacity(MAP_V6, cfg.prefilter.capacity_v6);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        Cidr::parse(s).unwrap()
    }

    #[test]
    fn lpm_keys_round_trip_and_match_the_schema_sizes() {
        for s in [
            "10.0.0.0/8",
            "192.0.2.1/32",
            "0.0.0.0/0",
            "2001:db8::/32",
            "::1/128",
        ] {
            let c = cidr(s);
            let key = lpm_key(&c);
            let want = if c.addr.is_ipv4() {
                maps_schema::LpmV4Key::LAYOUT.size
            } else {
                maps_schema::find("prefilter_v6").unwrap().key.size
            };
            assert_eq!(key.len() as u32, want, "{s}");
            assert_eq!(cidr_of_key(&key), Some(c), "{s}");
        }
        assert_eq!(&lpm_key(&cidr("10.1.0.0/16"))[4..], &[10, 1, 0, 0]);
        assert_eq!(cidr_of_key(&[1, 2, 3]), None);
    }

    #[test]
    fn failsafe_bitmap_sets_exactly_the_listed_ports() {
        let ranges = [
            PortRange {
                proto: L4Proto::Tcp,
                low: 22,
                high: 22,
            },
            PortRange {
                proto: L4Proto::Udp,
                low: 60,
                high: 70,
            },
            PortRange {
                proto: L4Proto::Sctp,
                low: 65535,
                high: 65535,
            },
        ];
        let w = failsafe_words(&ranges);
        assert_eq!(w.len(), 3072);
        let bit = |slot: usize, port: usize| w[slot * 1024 + port / 64] >> (port % 64) & 1 == 1;
        assert!(bit(0, 22) && !bit(0, 21) && !bit(0, 23) && !bit(1, 22));
        assert!((60..=70).all(|p| bit(1, p)) && !bit(1, 59) && !bit(1, 71));
        assert!(bit(2, 65535));
        assert_eq!(w.iter().map(|x| x.count_ones()).sum::<u32>(), 1 + 11 + 1);
    }
}
