//! The `service` and `lb exclude` statements: connect-time load balancing.
//!
//! ```text
//! service web 198.51.100.10:80/tcp backends=192.0.2.1:8080@3,192.0.2.2:8080 affinity=30
//! service dns [2001:db8::53]:53/udp backends=[2001:db8::1]:53,[2001:db8::2]:53
//! service gone 198.51.100.11:80/tcp backends=none       # refuses connections
//! lb exclude mesh/sidecars
//! ```

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use super::diag::{show, Sink, Span};
use super::lexer::Word;
use super::model::{Backend, L4Proto, LbCapacity, LbExclude, Service};
use super::parse::{normalize_cgroup_path, Builder};
use super::syntax::Statement;

/// The largest backend weight.
pub const MAX_WEIGHT: u32 = 65_535;
/// The longest affinity timeout, in seconds (one day).
pub const MAX_AFFINITY_S: u32 = 86_400;
/// The most backends one service may list (one slot each at least: the kernel side's table is
/// at most `maps_schema::lb::MAX_SLOTS` slots).
pub const MAX_BACKENDS: usize = maps_schema::lb::MAX_SLOTS as usize;
/// The longest service name, in bytes.
pub const MAX_NAME: usize = 63;

/// What the `service` and `lb exclude` statements remember between lines.
#[derive(Default)]
pub(crate) struct ServiceState {
    /// (VIP, protocol) → line of the service that declared it.
    vips: HashMap<(SocketAddr, L4Proto), u32>,
    /// Normalised excluded cgroup path → line.
    excluded: HashMap<String, u32>,
    /// Line of the `lb capacity` statement.
    capacity_line: Option<u32>,
}

/// The span of chars `start..start + len` of `word`'s text; the whole word when it was quoted
/// (then text offsets and source columns differ).
fn sub_span(word: &Word, start: usize, len: usize) -> Span {
    if word.text.chars().count() != word.span.len as usize {
        return word.span;
    }
    let start = u32::try_from(start).unwrap_or(u32::MAX);
    let len = u32::try_from(len.max(1)).unwrap_or(u32::MAX);
    Span::new(word.span.line, word.span.column.saturating_add(start), len)
}

pub(super) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".to_owned());
    }
    if name.len() > MAX_NAME {
        return Err(format!(
            "it is {} bytes long, the limit is {MAX_NAME}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "it contains '{}'; use letters, digits, '.', '_' and '-'",
            c.escape_default()
        ));
    }
    Ok(())
}

/// `ADDR:PORT` (IPv6 in brackets) with a port other than 0 and no v4-mapped IPv6 address.
fn parse_socket_addr(text: &str) -> Result<SocketAddr, (String, String)> {
    let addr = SocketAddr::from_str(text).map_err(|_| {
        (
            format!("invalid address '{}'", show(text)),
            "write IPv4:PORT or [IPv6]:PORT, e.g. 192.0.2.1:80 or [2001:db8::1]:80".to_owned(),
        )
    })?;
    if addr.port() == 0 {
        return Err((
            format!("port 0 in '{}'", show(text)),
            "ports are 1 to 65535".to_owned(),
        ));
    }
    if let IpAddr::V6(v6) = addr.ip() {
        if let Some(v4) = v6.to_ipv4_mapped() {
            return Err((
                format!("'{}' is a v4-mapped IPv6 address", show(text)),
                format!(
                    "write the IPv4 address, {v4}:{}: IPv6 sockets reach IPv4 services through \
                     their v4-mapped form anyway",
                    addr.port()
                ),
            ));
        }
    }
    if addr.ip().is_unspecified() {
        return Err((
            format!("'{}' is the unspecified address", show(text)),
            "name a real address".to_owned(),
        ));
    }
    Ok(addr)
}

fn family(addr: &SocketAddr) -> &'static str {
    if addr.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// Parses `backends=` (`none`, or comma-separated `ADDR:PORT[@WEIGHT]`); reports every bad item.
fn backends(value: &Word, vip: Option<SocketAddr>, sink: &mut Sink<'_>) -> Option<Vec<Backend>> {
    if value.text == "none" {
        return Some(Vec::new());
    }
    if value.text.is_empty() {
        sink.error(
            value.span,
            "option 'backends' needs a value".to_owned(),
            Some("write backends=IP:PORT[@WEIGHT],... or backends=none".to_owned()),
        );
        return None;
    }
    let mut out: Vec<Backend> = Vec::new();
    let mut ok = true;
    let mut at = 0usize; // char offset of the current item
    for item in value.text.split(',') {
        let len = item.chars().count();
        let span = sub_span(value, at, len);
        at += len + 1;
        let (addr_text, weight_text) = match item.rsplit_once('@') {
            Some((a, w)) => (a, Some(w)),
            None => (item, None),
        };
        if item.is_empty() {
            sink.error(
                span,
                "empty backend in the list".to_owned(),
                Some("separate backends with single commas, no spaces".to_owned()),
            );
            ok = false;
            continue;
        }
        let addr = match parse_socket_addr(addr_text) {
            Ok(a) => a,
            Err((message, hint)) => {
                sink.error(span, format!("backend: {message}"), Some(hint));
                ok = false;
                continue;
            }
        };
        let weight = match weight_text {
            None => 1,
            Some(w) => match w.parse::<u32>() {
                Ok(n) if n <= MAX_WEIGHT && !w.starts_with('+') => n,
                _ => {
                    sink.error(
                        span,
                        format!("invalid weight '{}'", show(w)),
                        Some(format!(
                            "a weight is a number from 0 (drained) to {MAX_WEIGHT}"
                        )),
                    );
                    ok = false;
                    continue;
                }
            },
        };
        if let Some(vip) = vip {
            if vip.is_ipv4() != addr.is_ipv4() {
                sink.error(
                    span,
                    format!(
                        "backend {addr} is {} but the service address {vip} is {}",
                        family(&addr),
                        family(&vip)
                    ),
                    Some("a service's backends have the address family of its VIP".to_owned()),
                );
                ok = false;
                continue;
            }
        }
        if out.iter().any(|b| b.addr == addr) {
            sink.error(
                span,
                format!("backend {addr} is listed twice"),
                Some("list each backend once, with its weight".to_owned()),
            );
            ok = false;
            continue;
        }
        out.push(Backend { addr, weight });
    }
    if out.len() > MAX_BACKENDS {
        sink.error(
            value.span,
            format!("{} backends, more than {MAX_BACKENDS}", out.len()),
            Some("split the backends over fewer, larger ones or several VIPs".to_owned()),
        );
        ok = false;
    }
    ok.then_some(out)
}

/// `service NAME VIP:PORT/PROTO backends=... [affinity=SECONDS|off] [excluded]`.
pub(crate) fn service(statement: &Statement, builder: &mut Builder, sink: &mut Sink<'_>) {
    let (Some(name), Some(vip_word)) = (statement.args.first(), statement.args.get(1)) else {
        return;
    };
    let mut ok = true;
    if let Err(why) = check_name(&name.text) {
        sink.error(
            name.span,
            format!("invalid service name '{}': {why}", show(&name.text)),
            None,
        );
        ok = false;
    }

    let vip = match vip_word.text.rsplit_once('/') {
        None => {
            sink.error(
                vip_word.span,
                format!(
                    "'{}' has no protocol: write VIP:PORT/tcp or VIP:PORT/udp",
                    show(&vip_word.text)
                ),
                Some("e.g. 198.51.100.10:80/tcp or [2001:db8::10]:53/udp".to_owned()),
            );
            None
        }
        Some((addr_text, proto_text)) => {
            let proto_at = addr_text.chars().count() + 1;
            let proto = match proto_text {
                "tcp" => Some(L4Proto::Tcp),
                "udp" => Some(L4Proto::Udp),
                other => {
                    sink.error(
                        sub_span(vip_word, proto_at, other.chars().count()),
                        format!("invalid service protocol '{}'", show(other)),
                        Some("valid protocols are tcp, udp".to_owned()),
                    );
                    None
                }
            };
            let addr = match parse_socket_addr(addr_text) {
                Ok(a) => Some(a),
                Err((message, hint)) => {
                    sink.error(
                        sub_span(vip_word, 0, addr_text.chars().count()),
                        format!("service address: {message}"),
                        Some(hint),
                    );
                    None
                }
            };
            addr.zip(proto)
        }
    };
    ok &= vip.is_some();

    let mut excluded = false;
    for extra in statement.args.iter().skip(2) {
        if extra.text == "excluded" && !excluded {
            excluded = true;
            continue;
        }
        let message = if extra.text == "excluded" {
            "'excluded' given twice".to_owned()
        } else {
            format!("unexpected argument '{}'", show(&extra.text))
        };
        sink.error(
            extra.span,
            message,
            Some(
                "usage: service NAME VIP:PORT/PROTO backends=IP:PORT[@WEIGHT],... \
                 [affinity=SECONDS|off] [excluded]"
                    .to_owned(),
            ),
        );
        ok = false;
    }

    let affinity = match statement.option("affinity") {
        None => None,
        Some(opt) if opt.value.text == "off" => None,
        Some(opt) => match opt.value.text.parse::<u32>() {
            Ok(n) if (1..=MAX_AFFINITY_S).contains(&n) && !opt.value.text.starts_with('+') => {
                Some(n)
            }
            _ => {
                sink.error(
                    opt.value.span,
                    format!("invalid affinity '{}'", show(&opt.value.text)),
                    Some(format!(
                        "affinity is a timeout in seconds, 1 to {MAX_AFFINITY_S}, or off"
                    )),
                );
                ok = false;
                None
            }
        },
    };

    let backend_list = match statement.option("backends") {
        None => {
            sink.error(
                Span::new(statement.span.line, statement.span.end(), 1),
                format!("service '{}' needs backends=", show(&name.text)),
                Some(
                    "write backends=IP:PORT[@WEIGHT],... (or backends=none to refuse connections)"
                        .to_owned(),
                ),
            );
            None
        }
        Some(opt) => backends(&opt.value, vip.map(|(a, _)| a), sink),
    };

    let (Some((vip, proto)), Some(backend_list), true) = (vip, backend_list, ok) else {
        return;
    };
    if let Some(first) = builder.lb.vips.get(&(vip, proto)) {
        sink.error(
            vip_word.span,
            format!("duplicate service address {vip}/{proto} (first declared on line {first})"),
            Some("each VIP:PORT/PROTO belongs to one service line".to_owned()),
        );
        return;
    }
    builder.lb.vips.insert((vip, proto), name.span.line);
    builder.config.services.push(Service {
        name: name.text.clone(),
        vip,
        proto,
        backends: backend_list,
        affinity,
        excluded,
        span: name.span,
    });
}

/// `lb exclude CGROUP-PATH...`.
pub(crate) fn lb_exclude(statement: &Statement, builder: &mut Builder, sink: &mut Sink<'_>) {
    for path in &statement.args {
        let normalized = match normalize_cgroup_path(&path.text) {
            Ok(n) => n,
            Err((message, hint)) => {
                sink.error(path.span, message, Some(hint));
                continue;
            }
        };
        if let Some(first) = builder.lb.excluded.get(&normalized) {
            sink.error(
                path.span,
                format!(
                    "cgroup '{}' is already excluded (line {first})",
                    show(&normalized)
                ),
                Some("list each cgroup once".to_owned()),
            );
            continue;
        }
        builder
            .lb
            .excluded
            .insert(normalized.clone(), path.span.line);
        builder.config.lb_exclude.push(LbExclude {
            path: normalized,
            span: path.span,
        });
    }
}

/// `lb capacity [services=N] [backends=N] [slots=N] [connections=N]`.
pub(crate) fn lb_capacity(statement: &Statement, builder: &mut Builder, sink: &mut Sink<'_>) {
    let d = LbCapacity::default();
    let cap = &mut builder.config.lb_capacity;
    super::prefilter::capacity_statement(
        statement,
        sink,
        &mut builder.lb.capacity_line,
        &mut [
            ("services", &mut cap.services, d.services),
            ("backends", &mut cap.backends, d.backends),
            ("slots", &mut cap.slots, d.slots),
            ("connections", &mut cap.connections, d.connections),
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["web", "a.b_c-1", &"x".repeat(63)] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a b", "a/b", "é", &"x".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn socket_addrs() {
        assert_eq!(
            parse_socket_addr("192.0.2.1:80"),
            Ok("192.0.2.1:80".parse().unwrap())
        );
        assert_eq!(
            parse_socket_addr("[2001:db8::1]:53"),
            Ok("[2001:db8::1]:53".parse().unwrap())
        );
        for bad in [
            "192.0.2.1",
            "192.0.2.1:0",
            "2001:db8::1:80",
            "[::ffff:192.0.2.1]:80",
            "0.0.0.0:80",
            "192.0.2.1:65536",
        ] {
            assert!(parse_socket_addr(bad).is_err(), "{bad}");
        }
    }
}
