//! The XDP prefilter's map contents, computed from the config: the deny lists (one LPM trie for
//! IPv4 sources, one for IPv6) and the inbound failsafe port bitmap.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::config::{Cidr, Config, L4Proto, PortRange};
use crate::contents::{self, SetChange, Undo};
use crate::error::Error;
use crate::maps::MapSet;

/// Map names (as in maps-schema).
pub const MAP_V4: &str = "prefilter_v4";
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
        let set = if cidr.addr.is_ipv4() {
            &mut v4
        } else {
            &mut v6
        };
        set.insert(lpm_key(cidr));
    }
    let initial = maps_schema::Codec::encode(&maps_schema::DenyEntry { hits: 0 });
    // Check both capacities before writing either list.
    for (name, want) in [(MAP_V4, &v4), (MAP_V6, &v6)] {
        if let Some(m) = maps.get(name) {
            let cap = crate::sys::bpf::map_info(std::os::fd::AsFd::as_fd(&m.fd))
                .map_err(|e| Error::bpf(format!("map '{name}'"), e))?
                .max_entries as usize;
            if want.len() > cap {
                return Err(Error::map(
                    name,
                    format!(
                        "the config denies {} networks, more than the capacity of {cap}; nothing was changed. \
                         Raise it with `prefilter capacity {}=N` (a pinned map cannot grow: `weir unload` first)",
                        want.len(),
                        if name == MAP_V4 { "v4" } else { "v6" }
                    ),
                ));
            }
        }
    }
    if let Some(m) = maps.get(MAP_V4) {
        change.v4 = contents::sync_set(m, &v4, &initial, undo)?;
    }
    if let Some(m) = maps.get(MAP_V6) {
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

/// Sets the deny-list capacities from the config on a map set (before the maps are created).
pub fn set_capacities(maps: &mut MapSet, cfg: &Config) {
    maps.set_capacity(MAP_V4, cfg.prefilter.capacity_v4);
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
                "prefilter_v4"
            } else {
                "prefilter_v6"
            };
            assert_eq!(
                key.len() as u32,
                maps_schema::find(want).unwrap().key.size,
                "{s}"
            );
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
