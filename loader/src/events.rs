//! `weir events`: the policy's deny, log and audit events, read from the `pol_events` ring
//! buffer by a reader thread (epoll on the map fd, no async runtime) and handed over a
//! crossbeam channel, one [`Event`] per record.
//!
//! The program rate-limits events per CPU (`maps_schema::pol::EVENT_COST_NS`,
//! `EVENT_BURST`); what it could not write is counted in `weir status` as `events-lost`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use maps_schema::{pol, Codec, PolEvent};

use crate::error::Error;
use crate::maps::{pin_name, MAPS_DIR};
use crate::sys::bpf;
use crate::sys::ringbuf::RingBuf;

/// The ring buffer map.
pub const MAP_EVENTS: &str = "pol_events";

/// One decoded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// CLOCK_MONOTONIC nanoseconds when the program saw the packet.
    pub ts_ns: u64,
    /// The endpoint's interface index.
    pub ifindex: u32,
    /// Its name, when the reader could resolve it (in the reader's network namespace).
    pub interface: Option<String>,
    /// `deny`, `log` or `audit`.
    pub verdict: &'static str,
    /// `ingress` or `egress` (the endpoint's view).
    pub direction: &'static str,
    /// Config rule index; `None` for the default deny.
    pub rule: Option<u32>,
    /// Config policy index.
    pub policy: Option<u32>,
    /// The rule's name (`POLICY#N`), when the reader could resolve it.
    pub rule_name: Option<String>,
    /// The policy's name, when the reader could resolve it.
    pub policy_name: Option<String>,
    /// IP protocol.
    pub proto: u8,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (ICMP: type; ICMP echo: identifier).
    pub sport: u16,
    /// Destination port (ICMP: code; ICMP echo: identifier).
    pub dport: u16,
    /// Packet length.
    pub len: u32,
}

fn addr(family: u8, b: [u8; 16]) -> IpAddr {
    if family == 4 {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(b))
    }
}

impl Event {
    /// Decodes one ring buffer record; `None` when it is not a `struct weir_pol_event`.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<Event> {
        let e = PolEvent::decode(bytes).ok()?;
        let id = |v: u32| (v != pol::NONE).then_some(v);
        Some(Event {
            ts_ns: e.ts_ns,
            ifindex: e.ifindex,
            interface: None,
            verdict: match e.verdict {
                pol::EV_DENY => "deny",
                pol::EV_LOG => "log",
                pol::EV_AUDIT => "audit",
                _ => "unknown",
            },
            direction: if u32::from(e.direction) == pol::DIR_EGRESS {
                "egress"
            } else {
                "ingress"
            },
            rule: id(e.rule),
            policy: id(e.policy),
            rule_name: None,
            policy_name: None,
            proto: e.proto,
            src: addr(e.family, e.src),
            dst: addr(e.family, e.dst),
            sport: e.sport,
            dport: e.dport,
            len: e.len,
        })
    }

    /// One JSON object on one line.
    #[must_use]
    pub fn json(&self) -> String {
        let opt = |v: Option<u32>| v.map_or_else(|| "null".to_owned(), |v| v.to_string());
        let string = |v: Option<&str>| {
            v.map_or_else(
                || "null".to_owned(),
                |n| format!("\"{}\"", n.replace('\\', "\\\\").replace('"', "\\\"")),
            )
        };
        format!(
            "{{\"ts_ns\":{},\"ifindex\":{},\"interface\":{},\"verdict\":\"{}\",\"direction\":\"{}\",\
             \"rule\":{},\"rule_name\":{},\"policy\":{},\"policy_name\":{},\"proto\":{},\"src\":\"{}\",\
             \"dst\":\"{}\",\"sport\":{},\"dport\":{},\"len\":{}}}",
            self.ts_ns,
            self.ifindex,
            // The kernel allows quotes and backslashes in interface names: escaped.
            string(self.interface.as_deref()),
            self.verdict,
            self.direction,
            opt(self.rule),
            string(self.rule_name.as_deref()),
            opt(self.policy),
            string(self.policy_name.as_deref()),
            self.proto,
            self.src,
            self.dst,
            self.sport,
            self.dport,
            self.len
        )
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = crate::config::proto_name(self.proto)
            .map_or_else(|| self.proto.to_string(), str::to_owned);
        let ep = |a: IpAddr, p: u16| match a {
            IpAddr::V4(_) => format!("{a}:{p}"),
            IpAddr::V6(_) => format!("[{a}]:{p}"),
        };
        write!(
            f,
            "{} {} {} {proto} {} -> {} len {} rule {} policy {}",
            self.verdict,
            self.direction,
            self.interface.as_deref().map_or_else(
                || format!("ifindex {}", self.ifindex),
                |n| format!("interface {n}")
            ),
            ep(self.src, self.sport),
            ep(self.dst, self.dport),
            self.len,
            match (&self.rule_name, self.rule) {
                (Some(n), _) => n.clone(),
                (None, Some(r)) => format!("#{r}"),
                (None, None) => "default-deny".to_owned(),
            },
            match (&self.policy_name, self.policy) {
                (Some(n), _) => n.clone(),
                (None, Some(p)) => format!("#{p}"),
                (None, None) => "-".to_owned(),
            },
        )
    }
}

/// Opens the ring buffer pinned under `pin_dir`.
///
/// # Errors
/// When weir (with its TC programs) is not loaded there, or mapping the ring fails.
pub fn open(pin_dir: &Path) -> Result<RingBuf, Error> {
    let def = maps_schema::find(MAP_EVENTS)
        .ok_or_else(|| Error::map(MAP_EVENTS, "not in maps-schema"))?;
    let path = pin_dir.join(MAPS_DIR).join(pin_name(def));
    let fd = bpf::obj_get(&path).map_err(|e| {
        Error::bpf(
            format!(
                "map '{MAP_EVENTS}': opening pin {} (is weir loaded with an interface that has tc on?)",
                path.display()
            ),
            e,
        )
    })?;
    let info =
        bpf::map_info(fd.as_fd()).map_err(|e| Error::bpf(format!("map '{MAP_EVENTS}'"), e))?;
    RingBuf::open(fd, info.max_entries)
        .map_err(|e| Error::io(format!("map '{MAP_EVENTS}': mapping the ring buffer"), e))
}

/// The name `pol_names` holds for `id`, if any.
fn name_of(fd: std::os::fd::BorrowedFd<'_>, id: u32) -> Option<String> {
    let mut value = vec![0u8; maps_schema::PolName::LAYOUT.size as usize];
    match bpf::map_lookup(fd, &id.to_ne_bytes(), &mut value) {
        Ok(true) => maps_schema::PolName::decode(&value)
            .ok()
            .map(|n| crate::policy::incremental::decode_name(&n.name)),
        _ => None,
    }
}

/// A running reader thread; dropping it stops the thread.
#[derive(Debug)]
pub struct Reader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts a thread that reads events from the ring buffer at `pin_dir` and sends them on the
/// returned channel until the [`Reader`] is dropped (or the receiver is).
///
/// # Errors
/// As [`open`].
pub fn spawn(pin_dir: &Path) -> Result<(crossbeam_channel::Receiver<Event>, Reader), Error> {
    let mut ring = open(pin_dir)?;
    // Rule and policy names (objects without the map show ids).
    let names_map = maps_schema::find(crate::policy_maps::MAP_NAMES)
        .and_then(|def| bpf::obj_get(&pin_dir.join(MAPS_DIR).join(pin_name(def))).ok());
    let (tx, rx) = crossbeam_channel::bounded(4096);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("weir-events".into())
        .spawn(move || {
            let mut open = true;
            // Interface names by index, asked once each (the thread runs in the namespace the
            // command entered).
            let mut names: std::collections::HashMap<u32, Option<String>> =
                std::collections::HashMap::new();
            let mut nl = crate::sys::netlink::Netlink::open().ok();
            // Rule and policy names by `pol_names` key, asked once each.
            let mut ids: std::collections::HashMap<u32, Option<String>> =
                std::collections::HashMap::new();
            while open && !flag.load(Ordering::Relaxed) {
                // A short wait, so a stop request is seen promptly.
                let r = ring.poll(100, |bytes| {
                    if let Some(mut e) = Event::decode(bytes) {
                        e.interface = names
                            .entry(e.ifindex)
                            .or_insert_with(|| {
                                nl.as_mut()
                                    .and_then(|nl| nl.link_name(e.ifindex).ok().flatten())
                            })
                            .clone();
                        if let Some(m) = &names_map {
                            let base = pol::NAME_POLICY_BASE;
                            e.rule_name = e.rule.and_then(|r| {
                                ids.entry(r)
                                    .or_insert_with(|| name_of(m.as_fd(), r))
                                    .clone()
                            });
                            e.policy_name = e.policy.and_then(|p| {
                                ids.entry(base + p)
                                    .or_insert_with(|| name_of(m.as_fd(), base + p))
                                    .clone()
                            });
                        }
                        open = open && tx.send(e).is_ok();
                    }
                });
                if let Err(e) = r {
                    log::error!("reading policy events: {e}");
                    return;
                }
            }
        })
        .map_err(|e| Error::io("starting the event reader thread", e))?;
    Ok((
        rx,
        Reader {
            stop,
            thread: Some(thread),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_renders() {
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[198, 18, 0, 1]);
        let mut dst = [0u8; 16];
        dst[..4].copy_from_slice(&[198, 19, 1, 2]);
        let raw = PolEvent {
            ts_ns: 5,
            ifindex: 7,
            rule: pol::NONE,
            policy: pol::NONE,
            len: 74,
            src,
            dst,
            sport: 40000,
            dport: 81,
            family: 4,
            proto: 6,
            direction: pol::DIR_INGRESS as u8,
            verdict: pol::EV_DENY,
        };
        let e = Event::decode(&raw.encode()).unwrap();
        assert_eq!(
            e.to_string(),
            "deny ingress ifindex 7 tcp 198.18.0.1:40000 -> 198.19.1.2:81 len 74 rule default-deny policy -"
        );
        assert_eq!(
            e.json(),
            "{\"ts_ns\":5,\"ifindex\":7,\"interface\":null,\"verdict\":\"deny\",\"direction\":\"ingress\",\
             \"rule\":null,\"rule_name\":null,\"policy\":null,\"policy_name\":null,\"proto\":6,\
             \"src\":\"198.18.0.1\",\"dst\":\"198.19.1.2\",\"sport\":40000,\"dport\":81,\"len\":74}"
        );
        let named = Event {
            interface: Some("veth\"1".into()),
            ..e
        };
        assert!(named
            .to_string()
            .starts_with("deny ingress interface veth\"1 tcp"));
        assert!(named
            .json()
            .contains("\"ifindex\":7,\"interface\":\"veth\\\"1\","));
        let by_rule = Event {
            rule: Some(3),
            rule_name: Some("web#2".into()),
            policy: Some(1),
            policy_name: Some("web".into()),
            ..named.clone()
        };
        assert!(by_rule
            .to_string()
            .ends_with("len 74 rule web#2 policy web"));
        assert!(by_rule
            .json()
            .contains("\"rule\":3,\"rule_name\":\"web#2\",\"policy\":1,\"policy_name\":\"web\","));
        assert_eq!(Event::decode(&[0u8; 3]), None);
    }
}
