//! The `mesh` statement: a cgroup's outbound TCP goes to a local proxy (a sidecar such as
//! Envoy), which finds the original destination with `getsockopt(SO_ORIGINAL_DST)` as it would
//! behind iptables `REDIRECT`.
//!
//! ```text
//! cgroup pods
//! mesh pods/web proxy-port=15001 proxy-cgroup=pods/web/envoy exclude-ports=22,8125-8126
//! mesh pods/api proxy-port=15001 proxy-uid=1337
//! ```
//!
//! The names follow Istio's sidecar settings: `proxy-port` is its outbound capture port
//! (15001), `proxy-uid` its `--proxy-uid` (1337), `exclude-ports` its
//! `excludeOutboundPorts`. The proxy is recognised by its cgroup (which may sit inside the meshed
//! one, as a sidecar's does) or its uid; one of them is required, so the proxy's own upstream
//! connections are never sent back to it.

use std::collections::HashMap;

use super::diag::{show, Diagnostic, Sink, Span};
use super::lexer::Word;
use super::model::{Mesh, MeshInbound};
use super::parse::{normalize_cgroup_path, Builder};
use super::syntax::Statement;

/// The most destination ports one `mesh` statement may exclude (ranges count every port).
pub const MAX_EXCLUDED_PORTS: u32 = 1024;

/// What the `mesh` statements remember between lines.
#[derive(Default)]
pub(crate) struct MeshState {
    /// Meshed cgroup → line of its statement.
    meshed: HashMap<String, u32>,
    /// Proxy cgroup → line of the first statement naming it.
    proxies: HashMap<String, u32>,
    /// The text of each mesh statement's line, for the whole-file checks, in statement order.
    lines: Vec<String>,
    /// Captured network namespace → line of the statement capturing it.
    netns: HashMap<String, u32>,
}

/// Parses `PORT` or `LOW-HIGH` (1..=65535, LOW <= HIGH).
fn port_range(text: &str) -> Option<(u16, u16)> {
    let port = |t: &str| -> Option<u16> {
        if t.is_empty() || t.starts_with('+') || (t.len() > 1 && t.starts_with('0')) {
            return None;
        }
        t.parse::<u16>().ok().filter(|p| *p != 0)
    };
    match text.split_once('-') {
        None => port(text).map(|p| (p, p)),
        Some((lo, hi)) => {
            let (lo, hi) = (port(lo)?, port(hi)?);
            (lo <= hi).then_some((lo, hi))
        }
    }
}

/// `exclude-ports=PORT|LOW-HIGH,...`: sorted, merged ranges.
fn exclude_ports(name: &str, value: &Word, sink: &mut Sink<'_>) -> Option<Vec<(u16, u16)>> {
    let mut out: Vec<(u16, u16)> = Vec::new();
    let mut ok = true;
    for item in value.text.split(',') {
        match port_range(item) {
            Some(r) => out.push(r),
            None => {
                sink.error(
                    value.span,
                    format!("invalid port or port range '{}' in {name}", show(item)),
                    Some(format!(
                        "write ports 1 to 65535 or LOW-HIGH ranges separated by commas, \
                         e.g. {name}=22,8125-8126"
                    )),
                );
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    out.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::new();
    for (lo, hi) in out {
        match merged.last_mut() {
            Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    let total: u32 = merged
        .iter()
        .map(|(lo, hi)| u32::from(*hi) - u32::from(*lo) + 1)
        .sum();
    if total > MAX_EXCLUDED_PORTS {
        sink.error(
            value.span,
            format!("{name} names {total} ports, more than {MAX_EXCLUDED_PORTS}"),
            Some(
                "exclude fewer ports (each one is a map entry); to leave most traffic alone, \
                 mesh a smaller cgroup instead"
                    .to_owned(),
            ),
        );
        return None;
    }
    Some(merged)
}

/// `mesh CGROUP proxy-port=PORT [proxy-cgroup=PATH] [proxy-uid=UID] [exclude-ports=...]`.
pub(crate) fn mesh(statement: &Statement, builder: &mut Builder, sink: &mut Sink<'_>) {
    let Some(path) = statement.args.first() else {
        return;
    };
    let mut ok = true;
    let cgroup = match normalize_cgroup_path(&path.text) {
        Ok(c) => Some(c),
        Err((message, hint)) => {
            sink.error(path.span, message, Some(hint));
            ok = false;
            None
        }
    };

    let proxy_port = match statement.option("proxy-port") {
        None => {
            sink.error(
                Span::new(statement.span.line, statement.span.end(), 1),
                "'mesh' needs proxy-port=".to_owned(),
                Some(
                    "the port the proxy accepts redirected connections on, on 127.0.0.1 and ::1 \
                     (Istio: 15001)"
                        .to_owned(),
                ),
            );
            ok = false;
            None
        }
        Some(opt) => match port_range(&opt.value.text) {
            Some((p, q)) if p == q => Some(p),
            _ => {
                sink.error(
                    opt.value.span,
                    format!("invalid proxy-port '{}'", show(&opt.value.text)),
                    Some("a port is a number from 1 to 65535".to_owned()),
                );
                ok = false;
                None
            }
        },
    };

    let proxy_uid = match statement.option("proxy-uid") {
        None => None,
        Some(opt) => match opt.value.text.parse::<u32>() {
            Ok(uid) if !opt.value.text.starts_with('+') && uid != u32::MAX => Some(uid),
            _ => {
                sink.error(
                    opt.value.span,
                    format!("invalid proxy-uid '{}'", show(&opt.value.text)),
                    Some("a numeric uid, e.g. proxy-uid=1337".to_owned()),
                );
                ok = false;
                None
            }
        },
    };

    let proxy_cgroup = match statement.option("proxy-cgroup") {
        None => None,
        Some(opt) => match normalize_cgroup_path(&opt.value.text) {
            Ok(p) => {
                if cgroup.as_deref() == Some(p.as_str()) {
                    sink.error(
                        opt.value.span,
                        format!("the proxy's cgroup '{p}' is the meshed cgroup itself"),
                        Some(
                            "the proxy is never redirected, so its cgroup cannot be the \
                             workload's: give the proxy a cgroup of its own (it may be below \
                             the meshed one), or name it by proxy-uid="
                                .to_owned(),
                        ),
                    );
                    ok = false;
                } else if let Some(line) = builder.mesh.meshed.get(&p) {
                    sink.error(
                        opt.value.span,
                        format!("cgroup '{p}' is meshed (line {line}), it cannot be a proxy's"),
                        Some("give the proxy a cgroup of its own".to_owned()),
                    );
                    ok = false;
                }
                Some(p)
            }
            Err((message, hint)) => {
                sink.error(opt.value.span, message, Some(hint));
                ok = false;
                None
            }
        },
    };

    if proxy_cgroup.is_none() && proxy_uid.is_none() && statement.option("proxy-cgroup").is_none() {
        sink.error(
            path.span,
            "'mesh' needs proxy-cgroup= or proxy-uid= to recognise the proxy".to_owned(),
            Some(
                "the proxy's own connections must not be redirected back to it: name its \
                 cgroup (proxy-cgroup=PATH) or its uid (proxy-uid=1337)"
                    .to_owned(),
            ),
        );
        ok = false;
    }

    let excluded = match statement.option("exclude-ports") {
        None => Some(Vec::new()),
        Some(opt) => exclude_ports("exclude-ports", &opt.value, sink),
    };
    ok &= excluded.is_some();
    let inbound = inbound(statement, builder, proxy_port, sink);
    ok &= inbound.is_ok();

    if let Some(c) = &cgroup {
        if let Some(line) = builder.mesh.meshed.get(c) {
            sink.error(
                path.span,
                format!("cgroup '{c}' is already meshed (line {line})"),
                Some("one mesh statement per cgroup".to_owned()),
            );
            ok = false;
        } else if let Some(line) = builder.mesh.proxies.get(c) {
            sink.error(
                path.span,
                format!("cgroup '{c}' is a proxy's cgroup (line {line}), it cannot be meshed"),
                Some("a proxy is never redirected".to_owned()),
            );
            ok = false;
        }
    }

    let (Some(cgroup), Some(proxy_port), Some(exclude_ports), Ok(inbound), true) =
        (cgroup, proxy_port, excluded, inbound, ok)
    else {
        return;
    };
    let line = path.span.line;
    builder.mesh.meshed.insert(cgroup.clone(), line);
    if let Some(i) = &inbound {
        builder.mesh.netns.insert(i.netns.clone(), line);
    }
    if let Some(p) = &proxy_cgroup {
        builder.mesh.proxies.entry(p.clone()).or_insert(line);
    }
    builder.mesh.lines.push(sink.line_text().to_owned());
    builder.config.meshes.push(Mesh {
        cgroup,
        proxy_port,
        proxy_cgroup,
        proxy_uid,
        exclude_ports,
        inbound,
        span: path.span,
    });
}

/// `inbound-port=PORT netns=NAME|PATH [exclude-inbound-ports=...]`: all three or none of the
/// first two. `Err(())` when something was reported.
fn inbound(
    statement: &Statement,
    builder: &Builder,
    proxy_port: Option<u16>,
    sink: &mut Sink<'_>,
) -> Result<Option<MeshInbound>, ()> {
    let port_opt = statement.option("inbound-port");
    let netns_opt = statement.option("netns");
    let excl_opt = statement.option("exclude-inbound-ports");
    let end = Span::new(statement.span.line, statement.span.end(), 1);
    let Some(port_opt) = port_opt else {
        // Without inbound-port the other two mean nothing: say so rather than ignore them.
        for opt in [netns_opt, excl_opt].into_iter().flatten() {
            sink.error(
                opt.key.span,
                format!("'{}' needs inbound-port=", opt.key.text),
                Some(
                    "inbound capture sends connections arriving in netns= to the proxy's \
                     inbound port (Istio: inbound-port=15006)"
                        .to_owned(),
                ),
            );
        }
        return if netns_opt.is_some() || excl_opt.is_some() {
            Err(())
        } else {
            Ok(None)
        };
    };
    let mut ok = true;
    let port = match port_range(&port_opt.value.text) {
        Some((p, q)) if p == q => {
            if Some(p) == proxy_port {
                sink.error(
                    port_opt.value.span,
                    format!("inbound-port {p} is the proxy-port too"),
                    Some(
                        "the proxy needs one listener for outbound and another for inbound \
                         connections (Istio: 15001 and 15006)"
                            .to_owned(),
                    ),
                );
                ok = false;
            }
            Some(p)
        }
        _ => {
            sink.error(
                port_opt.value.span,
                format!("invalid inbound-port '{}'", show(&port_opt.value.text)),
                Some("a port is a number from 1 to 65535".to_owned()),
            );
            ok = false;
            None
        }
    };
    let netns = match netns_opt {
        None => {
            sink.error(
                end,
                "inbound-port= needs netns=".to_owned(),
                Some(
                    "inbound capture works per network namespace: name the workload's, \
                     e.g. netns=web (/run/netns/web) or netns=/proc/1234/ns/net"
                        .to_owned(),
                ),
            );
            ok = false;
            None
        }
        Some(opt) => {
            let text = opt.value.text.as_str();
            let valid = !text.is_empty()
                && !text.contains('\0')
                && (text.contains('/') || !matches!(text, "." | ".."))
                && (!text.contains('/') || text.starts_with('/'));
            if !valid {
                sink.error(
                    opt.value.span,
                    format!("invalid netns '{}'", show(text)),
                    Some(
                        "a name in /run/netns (as `ip netns` makes) or an absolute path such \
                         as /proc/1234/ns/net"
                            .to_owned(),
                    ),
                );
                ok = false;
                None
            } else if let Some(line) = builder.mesh.netns.get(text) {
                sink.error(
                    opt.value.span,
                    format!("network namespace '{text}' is captured already (line {line})"),
                    Some("one inbound capture per network namespace".to_owned()),
                );
                ok = false;
                None
            } else {
                Some(text.to_owned())
            }
        }
    };
    let excluded = match excl_opt {
        None => Some(Vec::new()),
        Some(opt) => exclude_ports("exclude-inbound-ports", &opt.value, sink),
    };
    match (port, netns, excluded, ok) {
        (Some(port), Some(netns), Some(exclude_ports), true) => Ok(Some(MeshInbound {
            port,
            netns,
            exclude_ports,
        })),
        _ => Err(()),
    }
}

/// True when `path` is `attach` or below it.
fn below(path: &str, attach: &str) -> bool {
    path == attach
        || path
            .strip_prefix(attach)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Whole-file checks after the last line: the meshed and proxy cgroups lie below a `cgroup`
/// statement's path (the programs run only there; without `cgroup` statements they attach at
/// the cgroup2 root and see everything).
pub(super) fn finish(builder: &mut Builder, sink: &mut Sink<'_>) {
    let config = &builder.config;
    if config.cgroups.is_empty() {
        return;
    }
    let attach: Vec<&str> = config.cgroups.iter().map(|c| c.path.as_str()).collect();
    let covered = |p: &str| attach.iter().any(|a| below(p, a));
    for (m, line_text) in config.meshes.iter().zip(&builder.mesh.lines) {
        for (what, path) in [
            ("meshed", Some(&m.cgroup)),
            ("proxy", m.proxy_cgroup.as_ref()),
        ] {
            let Some(path) = path else { continue };
            if covered(path) {
                continue;
            }
            sink.error_elsewhere(Diagnostic {
                source: builder.source.clone(),
                span: m.span,
                message: format!(
                    "the {what} cgroup '{path}' is not below any cgroup statement ({}): the mesh \
                     programs would never see it",
                    attach.join(", ")
                ),
                hint: Some(format!(
                    "add `cgroup {}` or mesh a cgroup below one of them",
                    path.split('/').next().unwrap_or(path)
                )),
                note: None,
                line_text: line_text.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, render_config, Config};

    fn ok(text: &str) -> Config {
        parse("t.conf", text).unwrap_or_else(|e| panic!("unexpected errors:\n{e}"))
    }

    /// (line, column, len, message, hint) of every diagnostic.
    fn errors(text: &str) -> Vec<(u32, u32, u32, String, String)> {
        parse("t.conf", text)
            .expect_err("expected errors")
            .diagnostics
            .into_iter()
            .map(|d| {
                (
                    d.span.line,
                    d.span.column,
                    d.span.len,
                    d.message,
                    d.hint.unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn a_mesh_statement_parses_and_renders_back() {
        let text = "cgroup pods\n\
                    mesh /pods/web/ proxy-port=15001 proxy-cgroup=pods/web/envoy \
                    exclude-ports=8126,22,8125\n\
                    mesh pods/api proxy-port=15006 proxy-uid=1337\n";
        let c = ok(text);
        assert_eq!(c.meshes.len(), 2);
        let web = &c.meshes[0];
        assert_eq!(web.cgroup, "pods/web");
        assert_eq!(web.proxy_port, 15001);
        assert_eq!(web.proxy_cgroup.as_deref(), Some("pods/web/envoy"));
        assert_eq!(web.proxy_uid, None);
        assert_eq!(web.exclude_ports, [(22, 22), (8125, 8126)]);
        assert_eq!((web.span.line, web.span.column), (2, 6));
        assert_eq!(c.meshes[1].proxy_uid, Some(1337));
        let rendered = render_config(&c);
        assert!(
            rendered.contains(
                "mesh pods/web proxy-port=15001 proxy-cgroup=pods/web/envoy exclude-ports=22,8125-8126\n"
            ),
            "{rendered}"
        );
        let again = ok(&rendered);
        assert!(c.eq_ignoring_spans(&again), "{rendered}");
        assert_eq!(render_config(&again), rendered);
        // Paths that need quotes survive the round trip, as option values too.
        let quoted = ok("mesh \"a b\" proxy-port=1 proxy-cgroup=\"a b/c#d\"\n");
        let text = render_config(&quoted);
        assert!(ok(&text).eq_ignoring_spans(&quoted), "{text}");
        let mut changed = again.clone();
        changed.meshes[1].proxy_port = 1;
        assert!(!c.eq_ignoring_spans(&changed));
    }

    #[test]
    fn mesh_errors_point_at_the_problem() {
        let e = errors("mesh pods/web proxy-uid=1");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!((e[0].0, e[0].1), (1, 26));
        assert_eq!(e[0].3, "'mesh' needs proxy-port=");

        let e = errors("mesh pods/web proxy-port=15001");
        assert_eq!((e[0].0, e[0].1, e[0].2), (1, 6, 8));
        assert!(e[0].3.contains("proxy-cgroup= or proxy-uid="), "{e:?}");

        let e = errors("mesh pods/web proxy-port=0 proxy-uid=x proxy-cgroup=pods/web");
        let msgs: Vec<(u32, &str)> = e.iter().map(|d| (d.1, d.3.as_str())).collect();
        assert_eq!(
            msgs,
            [
                (26, "invalid proxy-port '0'"),
                (38, "invalid proxy-uid 'x'"),
                (
                    53,
                    "the proxy's cgroup 'pods/web' is the meshed cgroup itself"
                ),
            ]
        );

        let e = errors("mesh a proxy-port=1 proxy-uid=1 exclude-ports=22,70000");
        assert_eq!(
            (e[0].1, e[0].3.as_str()),
            (47, "invalid port or port range '70000' in exclude-ports")
        );
        let e = errors("mesh a proxy-port=1 proxy-uid=1 exclude-ports=1-2000");
        assert!(e[0].3.contains("2000 ports, more than 1024"), "{e:?}");

        // Duplicates and role clashes name the first line.
        let e = errors("mesh a proxy-port=1 proxy-uid=1\nmesh /a/ proxy-port=2 proxy-uid=1\n");
        assert_eq!(
            (e[0].0, e[0].3.as_str()),
            (2, "cgroup 'a' is already meshed (line 1)")
        );
        let e = errors("mesh a proxy-port=1 proxy-cgroup=p\nmesh p proxy-port=2 proxy-uid=1\n");
        assert!(e[0].3.contains("is a proxy's cgroup (line 1)"), "{e:?}");
        let e = errors("mesh a proxy-port=1 proxy-uid=1\nmesh b proxy-port=2 proxy-cgroup=a\n");
        assert!(e[0].3.contains("'a' is meshed (line 1)"), "{e:?}");
        let e = errors("mesh a proxy-port=1 proxy-uid=1 bogus=2");
        assert!(
            e[0].4
                .contains("proxy-port, proxy-cgroup, proxy-uid, exclude-ports"),
            "{e:?}"
        );
    }

    #[test]
    fn meshed_and_proxy_cgroups_must_be_below_an_attach_cgroup() {
        let e = errors("cgroup pods\nmesh other/web proxy-port=15001 proxy-cgroup=pods/p\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!((e[0].0, e[0].1), (2, 6));
        assert!(
            e[0].3.contains("meshed cgroup 'other/web' is not below"),
            "{e:?}"
        );
        let e = errors("mesh pods/web proxy-port=15001 proxy-cgroup=sidecars\ncgroup pods\n");
        assert!(e[0].3.contains("proxy cgroup 'sidecars'"), "{e:?}");
        ok("cgroup pods\nmesh pods proxy-port=1 proxy-cgroup=pods/envoy\n");
        ok("mesh anywhere proxy-port=1 proxy-cgroup=else\n");
    }

    #[test]
    fn inbound_capture_parses_renders_and_reports_errors() {
        let c = ok(
            "mesh w proxy-port=15001 proxy-uid=1337 inbound-port=15006 netns=web \
                    exclude-inbound-ports=15090,22\n",
        );
        let i = c.meshes[0].inbound.as_ref().unwrap();
        assert_eq!((i.port, i.netns.as_str()), (15006, "web"));
        assert_eq!(i.exclude_ports, [(22, 22), (15090, 15090)]);
        let text = render_config(&c);
        assert!(
            text.contains("inbound-port=15006 netns=web exclude-inbound-ports=22,15090"),
            "{text}"
        );
        assert!(ok(&text).eq_ignoring_spans(&c));
        assert!(
            ok("mesh w proxy-port=1 proxy-uid=1 inbound-port=2 netns=/proc/1/ns/net\n").meshes[0]
                .inbound
                .is_some()
        );

        let e = errors("mesh w proxy-port=1 proxy-uid=1 netns=web");
        assert_eq!(
            (e[0].1, e[0].3.as_str()),
            (33, "'netns' needs inbound-port=")
        );
        let e = errors("mesh w proxy-port=1 proxy-uid=1 inbound-port=2");
        assert_eq!(
            (e[0].1, e[0].3.as_str()),
            (47, "inbound-port= needs netns=")
        );
        let e = errors("mesh w proxy-port=1 proxy-uid=1 inbound-port=1 netns=a");
        assert_eq!(
            (e[0].1, e[0].3.as_str()),
            (46, "inbound-port 1 is the proxy-port too")
        );
        let e = errors("mesh w proxy-port=1 proxy-uid=1 inbound-port=2 netns=a/b");
        assert_eq!(e[0].3, "invalid netns 'a/b'");
        let e = errors(
            "mesh w proxy-port=1 proxy-uid=1 inbound-port=2 netns=a\n\
             mesh v proxy-port=1 proxy-uid=1 inbound-port=2 netns=a\n",
        );
        assert_eq!(
            (e[0].0, e[0].3.as_str()),
            (2, "network namespace 'a' is captured already (line 1)")
        );
        let e = errors(
            "mesh w proxy-port=1 proxy-uid=1 inbound-port=2 netns=a exclude-inbound-ports=0",
        );
        assert_eq!(
            e[0].3,
            "invalid port or port range '0' in exclude-inbound-ports"
        );
    }

    #[test]
    fn port_ranges() {
        assert_eq!(port_range("22"), Some((22, 22)));
        assert_eq!(port_range("8125-8126"), Some((8125, 8126)));
        assert_eq!(port_range("65535"), Some((65535, 65535)));
        for bad in ["", "0", "65536", "+5", "05", "9-8", "a", "1-", "-1"] {
            assert_eq!(port_range(bad), None, "{bad:?}");
        }
        assert!(below("a/b", "a") && below("a", "a") && !below("ab", "a"));
    }
}
