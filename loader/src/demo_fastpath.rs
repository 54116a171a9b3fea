//! `weir demo`, the fast path part: a routed node (a host forwarding between two workloads and
//! an outside network, [`Routed`]), TCP and UDP between all three with the fast path on, then
//! off. Whether the host routed a packet is read from the kernel's own counters in the host
//! namespace (`Ip: ForwDatagrams` in /proc/net/snmp, `Ip6OutForwDatagrams` in
//! /proc/net/snmp6), not from weir's: with the fast path on they stay still.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use crate::config;
use crate::dataplane::Dataplane;
use crate::error::Error;
use crate::status::Status;
use crate::topology::Routed;

/// Echo exchanges per flow.
const EXCHANGES: usize = 20;
/// Ports of the demo's flows (one per flow, so every listener is fresh).
const BASE_PORT: u16 = 7400;

/// The kernel's count of datagrams the host namespace forwarded (IPv4 + IPv6).
fn forwarded(node: &Routed) -> Result<u64, Error> {
    node.run_in(&node.host, || -> Result<u64, Error> {
        let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp")
            .map_err(|e| Error::io("reading /proc/thread-self/net/snmp", e))?;
        let snmp6 = std::fs::read_to_string("/proc/thread-self/net/snmp6")
            .map_err(|e| Error::io("reading /proc/thread-self/net/snmp6", e))?;
        Ok(snmp_field(&snmp, "Ip:", "ForwDatagrams").unwrap_or(0)
            + snmp6_field(&snmp6, "Ip6OutForwDatagrams").unwrap_or(0))
    })?
}

/// A field of /proc/net/snmp: a header line and a value line with the same prefix.
fn snmp_field(text: &str, prefix: &str, field: &str) -> Option<u64> {
    let mut lines = text.lines().filter(|l| l.starts_with(prefix));
    let names = lines.next()?;
    let values = lines.next()?;
    let at = names.split_whitespace().position(|n| n == field)?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// A field of /proc/net/snmp6: `name value` lines.
fn snmp6_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next()? == field).then(|| w.next()?.parse().ok())?
    })
}

/// One TCP flow of `EXCHANGES` echoes from namespace `from` to `to`, served in `server_ns`.
fn tcp_flow(node: &Routed, from: &str, server_ns: &str, to: SocketAddr) -> Result<(), String> {
    let listener = node
        .run_in(server_ns, || TcpListener::bind(to))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("listening on {to}: {e}"))?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        let mut buf = [0u8; 512];
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            s.write_all(&buf[..n])?;
        }
    });
    let client = node
        .run_in(from, || -> std::io::Result<()> {
            let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            let mut buf = [0u8; 512];
            for i in 0..EXCHANGES {
                let msg = [i as u8; 512];
                s.write_all(&msg)?;
                s.read_exact(&mut buf)?;
                if buf != msg {
                    return Err(std::io::Error::other("echo differs"));
                }
            }
            s.shutdown(std::net::Shutdown::Write)
        })
        .map_err(|e| e.to_string())?;
    client.map_err(|e| format!("tcp {to}: {e}"))?;
    server
        .join()
        .map_err(|_| "server thread panicked".to_owned())?
        .map_err(|e| format!("tcp server {to}: {e}"))
}

/// One UDP flow of `EXCHANGES` request/replies; every reply must come from `to`.
fn udp_flow(node: &Routed, from: &str, server_ns: &str, to: SocketAddr) -> Result<(), String> {
    let server = node
        .run_in(server_ns, || UdpSocket::bind(to))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("binding {to}: {e}"))?;
    server
        .set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    let t = std::thread::spawn(move || -> std::io::Result<()> {
        let mut buf = [0u8; 512];
        for _ in 0..EXCHANGES {
            let (n, peer) = server.recv_from(&mut buf)?;
            server.send_to(&buf[..n], peer)?;
        }
        Ok(())
    });
    let client = node
        .run_in(from, || -> std::io::Result<()> {
            let any: SocketAddr = if to.is_ipv4() {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let c = UdpSocket::bind(any)?;
            c.set_read_timeout(Some(Duration::from_secs(3)))?;
            let mut buf = [0u8; 512];
            for i in 0..EXCHANGES {
                c.send_to(&[i as u8; 200], to)?;
                let (n, src) = c.recv_from(&mut buf)?;
                if n != 200 || src != to {
                    return Err(std::io::Error::other(format!(
                        "reply of {n} bytes from {src}"
                    )));
                }
            }
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    client.map_err(|e| format!("udp {to}: {e}"))?;
    t.join()
        .map_err(|_| "server thread panicked".to_owned())?
        .map_err(|e| format!("udp server {to}: {e}"))
}

/// workload ↔ workload, outside → workload, workload → outside; TCP and UDP, v4 and v6.
fn traffic(node: &Routed, round: u16) -> Result<usize, String> {
    let (w1, w2, o) = (&node.w1, &node.w2, &node.out);
    let port = |i: u16| BASE_PORT + round * 16 + i;
    let sa = |ip: IpAddr, p| SocketAddr::new(ip, p);
    let flows: [(&str, &str, SocketAddr, bool); 6] = [
        (&w1.netns, &w2.netns, sa(w2.v4.into(), port(0)), true),
        (&o.netns, &w1.netns, sa(w1.v6.into(), port(1)), true),
        (&w2.netns, &o.netns, sa(o.v4.into(), port(2)), true),
        (&w1.netns, &w2.netns, sa(w2.v6.into(), port(3)), false),
        (&o.netns, &w2.netns, sa(w2.v4.into(), port(4)), false),
        (&w1.netns, &o.netns, sa(o.v6.into(), port(5)), false),
    ];
    for (from, server, to, tcp) in flows {
        if tcp {
            tcp_flow(node, from, server, to)?;
        } else {
            udp_flow(node, from, server, to)?;
        }
    }
    Ok(flows.len())
}

/// Network policy on the same node: w2 becomes a database that takes TCP on one port from w1's
/// network only; the fast path stays on. The denied connection shows up in `weir events` (read
/// here through the library's reader thread) and in the counters.
fn policy_part(
    out: &mut dyn Write,
    node: &Routed,
    dp: &Dataplane,
    failed: &mut Vec<&'static str>,
) -> Result<(), Error> {
    let port = BASE_PORT + 100;
    let w1 = node.w1.v4.octets();
    let w2_line = format!("interface {} ", node.w2.host_if);
    let text = format!(
        "{}policy db selector=\"app == 'db'\"\n\
         rule db ingress allow proto=tcp dport={port} remote={}.{}.{}.0/24\n",
        node.config("")
            .replace(&w2_line, &format!("{w2_line}labels=app:db ")),
        w1[0],
        w1[1],
        w1[2],
    );
    let _ = writeln!(
        out,
        "weir apply (a policy for w2):\n{}",
        super::demo::indent(&text)
    );
    let cfg = config::parse("<demo policy>", &text)?;
    let change = node.run_in(&node.host, || dp.apply_report(&cfg))??;
    let _ = writeln!(out, "  {change}");
    let (events, reader) = crate::events::spawn(&node.pin_dir)?;
    let to = SocketAddr::new(node.w2.v4.into(), port);
    let allowed = tcp_flow(node, &node.w1.netns, &node.w2.netns, to);
    let denied = node.run_in(&node.out.netns, || {
        TcpStream::connect_timeout(&to, Duration::from_secs(1)).is_err()
    })?;
    let _ = writeln!(
        out,
        "  {} -> {to}: {}",
        node.w1.v4,
        match &allowed {
            Ok(()) => "allowed, 20 echo exchanges".to_owned(),
            Err(e) => format!("FAILED: {e}"),
        }
    );
    let _ = writeln!(
        out,
        "  {} -> {to}: {}",
        node.out.v4,
        if denied {
            "denied (no answer)"
        } else {
            "CONNECTED"
        }
    );
    let mut seen = Vec::new();
    while let Ok(e) = events.recv_timeout(Duration::from_millis(500)) {
        seen.push(e);
    }
    drop(reader);
    let _ = writeln!(out, "weir events:");
    for e in seen.iter().take(3) {
        let _ = writeln!(out, "  {e}");
    }
    let st = node.run_in(&node.host, || dp.status())??;
    let default_denied = st
        .policy_stats
        .iter()
        .find(|(n, _)| n == "denied-by-default")
        .map_or(0, |(_, c)| c.packets);
    let _ = writeln!(
        out,
        "weir status: {} flows in conntrack, {default_denied} packets denied by default",
        st.conntrack_entries.unwrap_or(0)
    );
    let checks = [
        (
            "the policy let w1's connection through (on the fast path)",
            allowed.is_ok(),
        ),
        ("the policy denied the outside's connection", denied),
        (
            "the deny was reported as an event with its 5-tuple",
            seen.iter().any(|e| {
                e.verdict == "deny" && e.src == IpAddr::from(node.out.v4) && e.dport == port
            }),
        ),
        ("the deny was counted", default_denied > 0),
    ];
    for (what, ok) in checks {
        let _ = writeln!(out, "  [{}] {what}", if ok { "ok" } else { "FAILED" });
        if !ok {
            failed.push(what);
        }
    }
    Ok(())
}

fn fastpath_packets(st: &Status) -> u64 {
    st.if_counters
        .iter()
        .filter(|c| c.hook.starts_with("fastpath"))
        .map(|c| c.counter.packets)
        .sum()
}

/// Runs the fast path part, writing what it does to `out` and the names of failed checks to
/// `failed`.
///
/// # Errors
/// The node cannot be built, or weir cannot load or apply there.
pub fn run(out: &mut dyn Write, failed: &mut Vec<&'static str>) -> Result<(), Error> {
    let node = Routed::new("dfp")?;
    let _ = writeln!(
        out,
        "fast path: routed node {} forwarding between workloads {} ({}, {}) and {} ({}, {}) \
         and the outside {} ({}, {})",
        node.host,
        node.w1.netns,
        node.w1.v4,
        node.w1.v6,
        node.w2.netns,
        node.w2.v4,
        node.w2.v6,
        node.out.netns,
        node.out.v4,
        node.out.v6
    );
    let text = node.config("");
    let _ = writeln!(out, "config:\n{}", super::demo::indent(&text));
    let dp = Dataplane::new(node.pin_dir.clone());
    let cfg = config::parse("<demo fastpath>", &text)?;
    let report = node.run_in(&node.host, || dp.load(&cfg))??;
    let _ = writeln!(
        out,
        "weir load:\n{}",
        super::demo::indent(&report.to_string())
    );

    // The first exchange teaches weir each workload's MAC (and the host its neighbours).
    let warm = traffic(&node, 0);
    let (fwd0, st0) = (forwarded(&node)?, node.run_in(&node.host, || dp.status())??);
    let on = traffic(&node, 1);
    let (fwd1, st1) = (forwarded(&node)?, node.run_in(&node.host, || dp.status())??);
    let on_ok = warm.is_ok() && on.is_ok();
    if let Err(e) = warm.and(on.clone()) {
        let _ = writeln!(out, "  traffic: {e}");
    }
    let fast = fastpath_packets(&st1) - fastpath_packets(&st0);
    let _ = writeln!(
        out,
        "fast path on: {} flows (TCP and UDP, IPv4 and IPv6, workload <-> workload, outside <-> workload): \
         {fast} packets redirected by weir, {} forwarded by the host's stack",
        on.as_ref().map_or(0, |n| *n),
        fwd1 - fwd0
    );

    let off_text = node.config("fastpath=off");
    let off_cfg = config::parse("<demo fastpath>", &off_text)?;
    let change = node.run_in(&node.host, || dp.apply_report(&off_cfg))??;
    let _ = writeln!(out, "weir apply (fastpath=off): {}", change.fastpath);
    let off = traffic(&node, 2);
    let (fwd2, st2) = (forwarded(&node)?, node.run_in(&node.host, || dp.status())??);
    if let Err(e) = &off {
        let _ = writeln!(out, "  traffic: {e}");
    }
    let _ = writeln!(
        out,
        "fast path off: the same flows: {} packets redirected by weir, {} forwarded by the host's stack",
        fastpath_packets(&st2) - fastpath_packets(&st1),
        fwd2 - fwd1
    );
    let checks = [
        ("with the fast path on, every flow worked", on_ok),
        (
            "with the fast path on, weir redirected the packets and the host's stack forwarded none",
            fast > 0 && fwd1 == fwd0,
        ),
        (
            "with the fast path off, every flow worked through the host's routing",
            off.is_ok() && fwd2 > fwd1 && fastpath_packets(&st2) == fastpath_packets(&st1),
        ),
    ];
    for (what, ok) in checks {
        let _ = writeln!(out, "  [{}] {what}", if ok { "ok" } else { "FAILED" });
        if !ok {
            failed.push(what);
        }
    }
    policy_part(out, &node, &dp, failed)?;

    let removed = node.run_in(&node.host, || dp.unload())??;
    let _ = writeln!(out, "weir unload (routed node): removed {}", removed.len());
    drop(node);
    let _ = writeln!(out, "routed node removed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snmp_counters_are_read_by_name() {
        let snmp = "Ip: Forwarding DefaultTTL InReceives ForwDatagrams\nIp: 1 64 10 7\n\
                    Icmp: InMsgs\nIcmp: 3\n";
        assert_eq!(snmp_field(snmp, "Ip:", "ForwDatagrams"), Some(7));
        assert_eq!(snmp_field(snmp, "Ip:", "Nope"), None);
        let snmp6 = "Ip6InReceives                   \t12\nIp6OutForwDatagrams             \t5\n";
        assert_eq!(snmp6_field(snmp6, "Ip6OutForwDatagrams"), Some(5));
        assert_eq!(snmp6_field(snmp6, "Ip6Missing"), None);
    }
}
