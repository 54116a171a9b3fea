//! Prints a [`Config`] in canonical form: every option spelled out, `pin-dir` first, then
//! interfaces, cgroups, the prefilter (capacity, inline deny entries, deny files), the
//! failsafe ports, the services, the `lb exclude` cgroups and the meshes, each in model order. Parsing the output gives the same settings.

use std::fmt::Write as _;

use super::lexer::is_space;
use super::model::{Cidr, Config};

/// Inline deny entries per rendered `prefilter deny` line.
const DENY_PER_LINE: usize = 8;

/// The canonical text of `config`.
///
/// For a `Config` produced by [`parse`](fn@super::parse), `parse(render_config(&c))` yields the same
/// settings (see [`Config::eq_ignoring_spans`]), as long as the deny files still hold what they
/// held: `prefilter deny-file` statements are printed as written, not the files' contents. The
/// inline deny entries are those whose origin is `config.source`; an inline entry that a file
/// listed first belongs to that file. The prefilter capacities and the failsafe ports are always
/// printed, defaults included (`failsafe in none` for an empty list).
#[must_use]
pub fn render_config(config: &Config) -> String {
    let mut out = String::new();
    if let Some((dir, _)) = &config.pin_dir {
        out.push_str("pin-dir ");
        out.push_str(&quote(&dir.to_string_lossy()));
        out.push('\n');
    }
    for i in &config.interfaces {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "interface {} role={} xdp={} tc={} attach={}",
            quote(&i.name),
            i.role,
            i.xdp,
            if i.tc { "on" } else { "off" },
            i.attach
        );
    }
    for c in &config.cgroups {
        let _ = writeln!(out, "cgroup {} attach={}", quote(&c.path), c.attach);
    }
    let prefilter = &config.prefilter;
    let _ = writeln!(
        out,
        "prefilter capacity v4={} v6={} v4-chunks={}",
        prefilter.capacity_v4, prefilter.capacity_v6, prefilter.chunks_v4
    );
    let inline: Vec<&Cidr> = prefilter
        .deny
        .iter()
        .filter(|(_, origin)| *origin.source == *config.source)
        .map(|(cidr, _)| cidr)
        .collect();
    for chunk in inline.chunks(DENY_PER_LINE) {
        out.push_str("prefilter deny");
        for cidr in chunk {
            let _ = write!(out, " {cidr}");
        }
        out.push('\n');
    }
    for (path, _) in &prefilter.files {
        let _ = writeln!(
            out,
            "prefilter deny-file {}",
            quote(&path.to_string_lossy())
        );
    }
    out.push_str("failsafe in");
    if config.failsafe_in.is_empty() {
        out.push_str(" none");
    }
    for range in &config.failsafe_in {
        let _ = write!(out, " {range}");
    }
    out.push('\n');
    for svc in &config.services {
        let backends = if svc.backends.is_empty() {
            "none".to_owned()
        } else {
            svc.backends
                .iter()
                .map(|b| format!("{}@{}", b.addr, b.weight))
                .collect::<Vec<_>>()
                .join(",")
        };
        let affinity = svc
            .affinity
            .map_or_else(|| "off".to_owned(), |s| s.to_string());
        let _ = writeln!(
            out,
            "service {} {}/{} backends={backends} affinity={affinity}{}",
            quote(&svc.name),
            svc.vip,
            svc.proto,
            if svc.excluded { " excluded" } else { "" }
        );
    }
    for e in &config.lb_exclude {
        let _ = writeln!(out, "lb exclude {}", quote(&e.path));
    }
    let cap = config.lb_capacity;
    if cap != crate::config::LbCapacity::default() || !config.services.is_empty() {
        let _ = writeln!(
            out,
            "lb capacity services={} backends={} slots={}",
            cap.services, cap.backends, cap.slots
        );
    }
    for m in &config.meshes {
        let _ = write!(out, "mesh {} proxy-port={}", quote(&m.cgroup), m.proxy_port);
        if let Some(p) = &m.proxy_cgroup {
            let _ = write!(out, " proxy-cgroup={}", quote(p));
        }
        if let Some(uid) = m.proxy_uid {
            let _ = write!(out, " proxy-uid={uid}");
        }
        if !m.exclude_ports.is_empty() {
            let ports: Vec<String> = m
                .exclude_ports
                .iter()
                .map(|(lo, hi)| {
                    if lo == hi {
                        lo.to_string()
                    } else {
                        format!("{lo}-{hi}")
                    }
                })
                .collect();
            let _ = write!(out, " exclude-ports={}", ports.join(","));
        }
        out.push('\n');
    }
    out
}

/// `text` as one positional word: bare when that is unambiguous, else double-quoted.
pub(crate) fn quote(text: &str) -> String {
    let bare = !text.is_empty()
        && text
            .chars()
            .all(|c| !is_space(c) && !c.is_control() && !matches!(c, '#' | '"' | '=' | '\\'));
    if bare {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("veth0"), "veth0");
        assert_eq!(quote("/sys/fs/bpf/weir"), "/sys/fs/bpf/weir");
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("a#b"), "\"a#b\"");
        assert_eq!(quote("a=b"), "\"a=b\"");
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
