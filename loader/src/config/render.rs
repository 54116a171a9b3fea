//! Prints a [`Config`] in canonical form: every option spelled out, `pin-dir` first, then
//! interfaces, cgroups, the prefilter (capacity, inline deny entries, deny files), the
//! failsafe ports, the services, the `lb exclude` cgroups, the meshes, the IP sets and the
//! policies (each followed by its rules), each in model order. Parsing the output gives the
//! same settings.

use std::fmt::Write as _;

use super::lexer::is_space;
use super::model::{proto_name, Cidr, Config, Rule};

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
        let _ = write!(
            out,
            "interface {} role={} xdp={} tc={} attach={}",
            quote(&i.name),
            i.role,
            i.xdp,
            if i.tc { "on" } else { "off" },
            i.attach
        );
        if !i.addrs.is_empty() {
            let addrs: Vec<String> = i.addrs.iter().map(ToString::to_string).collect();
            let _ = write!(out, " addrs={}", addrs.join(","));
        }
        if !i.labels.is_empty() {
            let labels: Vec<String> = i.labels.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            let _ = write!(out, " labels={}", labels.join(","));
        }
        if !i.fastpath {
            out.push_str(" fastpath=off");
        }
        out.push('\n');
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
            "lb capacity services={} backends={} slots={} connections={}",
            cap.services, cap.backends, cap.slots, cap.connections
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
            let _ = write!(out, " exclude-ports={}", port_list(&m.exclude_ports));
        }
        if let Some(i) = &m.inbound {
            let _ = write!(out, " inbound-port={} netns={}", i.port, quote(&i.netns));
            if !i.exclude_ports.is_empty() {
                let _ = write!(
                    out,
                    " exclude-inbound-ports={}",
                    port_list(&i.exclude_ports)
                );
            }
        }
        out.push('\n');
    }
    if config.conntrack_capacity != maps_schema::pol::DEFAULT_CT_ENTRIES {
        let _ = writeln!(
            out,
            "conntrack capacity entries={}",
            config.conntrack_capacity
        );
    }
    let cc = config.classifier_capacity;
    if cc != crate::config::ClassifierCapacity::default() {
        let _ = writeln!(
            out,
            "classifier capacity rule-sets={} chunks={} bitmaps={}",
            cc.rule_sets, cc.chunks, cc.bitmaps
        );
    }
    render_policy(config, &mut out);
    out
}

/// `LOW-HIGH` ranges (a single port as itself), comma-separated.
fn port_list(ranges: &[(u16, u16)]) -> String {
    let items: Vec<String> = ranges
        .iter()
        .map(|(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect();
    items.join(",")
}

/// The sets (inline entries, then files), then each policy followed by its rules.
fn render_policy(config: &Config, out: &mut String) {
    for set in &config.ipsets {
        let inline: Vec<&Cidr> = set
            .entries
            .iter()
            .filter(|(_, origin)| *origin.source == *config.source)
            .map(|(cidr, _)| cidr)
            .collect();
        for chunk in inline.chunks(DENY_PER_LINE) {
            let _ = write!(out, "ipset {}", quote(&set.name));
            for cidr in chunk {
                let _ = write!(out, " {cidr}");
            }
            out.push('\n');
        }
        for (path, _) in &set.files {
            let _ = writeln!(
                out,
                "ipset-file {} {}",
                quote(&set.name),
                quote(&path.to_string_lossy())
            );
        }
    }
    for policy in &config.policies {
        let types = match (policy.ingress, policy.egress) {
            (true, true) => "ingress,egress",
            (false, true) => "egress",
            _ => "ingress",
        };
        let _ = writeln!(
            out,
            "policy {} order={} selector={} types={types}{}",
            quote(&policy.name),
            policy.order,
            quote(&policy.selector.to_string()),
            if policy.audit { " audit" } else { "" }
        );
        for rule in config.rules.iter().filter(|r| r.policy == policy.name) {
            render_rule(rule, out);
        }
    }
}

fn render_rule(rule: &Rule, out: &mut String) {
    let ports = |ranges: &[(u16, u16)]| {
        ranges
            .iter()
            .map(|&(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let _ = write!(
        out,
        "rule {} {} {}",
        quote(&rule.policy),
        rule.direction,
        rule.action
    );
    match rule.proto {
        None => out.push_str(" proto=any"),
        Some(p) => match proto_name(p) {
            Some(name) => {
                let _ = write!(out, " proto={name}");
            }
            None => {
                let _ = write!(out, " proto={p}");
            }
        },
    }
    if !rule.remote.is_empty() {
        let items: Vec<String> = rule.remote.iter().map(ToString::to_string).collect();
        let _ = write!(out, " remote={}", items.join(","));
    }
    if !rule.sport.is_empty() {
        let _ = write!(out, " sport={}", ports(&rule.sport));
    }
    if !rule.dport.is_empty() {
        let _ = write!(out, " dport={}", ports(&rule.dport));
    }
    if let Some((t, code)) = rule.icmp {
        let _ = write!(out, " icmp-type={t}");
        if let Some(c) = code {
            let _ = write!(out, " icmp-code={c}");
        }
    }
    out.push('\n');
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
