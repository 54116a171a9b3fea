//! Network policy statements: endpoint `addrs=` / `labels=` (options of `interface`), `ipset`,
//! `ipset-file`, `policy` and `rule`, and the whole-file checks that tie rules to policies and
//! sets.
//!
//! ```text
//! interface veth-web role=workload addrs=10.0.0.2,fd00::2 labels=app:web,env:prod
//! ipset blocked 192.0.2.0/24 2001:db8:bad::/48
//! ipset-file partners partners.txt
//! policy web order=100 selector="app == 'web' && env != 'dev'"
//! rule web ingress allow proto=tcp dport=80,443 remote=10.0.0.0/8,!set:blocked
//! rule web ingress allow proto=icmp icmp-type=8
//! policy trial order=200 selector=all() audit
//! rule trial egress deny proto=udp dport=53 remote=!set:partners
//! ```

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use super::diag::{show, Diagnostic, Sink, Span};
use super::lexer::{text_columns, Opt, Word};
use super::model::{
    has_ports, is_icmp, proto_name, Cidr, Direction, IpSet, Origin, Policy, Remote, RemoteTarget,
    Rule, RuleAction, PROTO_NAMES,
};
use super::parse::Builder;
use super::prefilter::{cidr_problem, open_list, read_list};
use super::selector::{check_label_key, check_label_value, Selector};
use super::service::check_name;
use super::suggest::did_you_mean;
use super::syntax::Statement;

/// What the policy statements remember between lines.
#[derive(Default)]
pub(crate) struct PolicyState {
    /// Set name → index in `Config::ipsets`.
    sets: HashMap<String, usize>,
    /// The networks of each set (same index), for de-duplication.
    set_seen: Vec<HashSet<Cidr>>,
    /// Policy name → (index in `Config::policies`, whether `types=` was given).
    policies: HashMap<String, (usize, bool)>,
    /// Policies declared with errors: their rules are not reported again as naming an
    /// unknown policy.
    broken_policies: HashSet<String>,
    /// Every accepted rule, for the checks that need the whole file.
    rules: Vec<PendingRule>,
    /// Every `set:NAME` a rule names.
    set_refs: Vec<Reference>,
    /// Line of the `conntrack capacity` statement.
    conntrack_line: Option<u32>,
    /// Line of the `classifier capacity` statement.
    classifier_line: Option<u32>,
}

/// `conntrack capacity entries=N`.
pub(crate) fn conntrack_capacity(
    statement: &Statement,
    builder: &mut Builder,
    sink: &mut Sink<'_>,
) {
    super::prefilter::capacity_statement(
        statement,
        sink,
        &mut builder.policy.conntrack_line,
        &mut [(
            "entries",
            &mut builder.config.conntrack_capacity,
            maps_schema::pol::DEFAULT_CT_ENTRIES,
        )],
    );
}

/// `classifier capacity [rule-sets=N] [chunks=N] [bitmaps=N]`.
pub(crate) fn classifier_capacity(
    statement: &Statement,
    builder: &mut Builder,
    sink: &mut Sink<'_>,
) {
    let d = super::model::ClassifierCapacity::default();
    let cap = &mut builder.config.classifier_capacity;
    super::prefilter::capacity_statement(
        statement,
        sink,
        &mut builder.policy.classifier_line,
        &mut [
            ("rule-sets", &mut cap.rule_sets, d.rule_sets),
            ("chunks", &mut cap.chunks, d.chunks),
            ("bitmaps", &mut cap.bitmaps, d.bitmaps),
        ],
    );
    if cap.rule_sets > super::model::ClassifierCapacity::MAX_RULE_SETS {
        if let Some(o) = statement.option("rule-sets") {
            sink.error(
                o.value.span,
                format!("capacity {} for 'rule-sets' is out of range", cap.rule_sets),
                Some(format!(
                    "a number of rule sets from 1 to {}",
                    super::model::ClassifierCapacity::MAX_RULE_SETS
                )),
            );
        }
        cap.rule_sets = d.rule_sets;
    }
}

/// Where a rule named its policy and direction, for errors found after the last line.
struct PendingRule {
    policy: Reference,
    direction: Span,
}

/// A name used on some line, with what an error there needs.
struct Reference {
    name: String,
    span: Span,
    line_text: String,
}

/// The span of chars `start..start + len` of `word`'s text, exact even inside quotes; an
/// offset at the end points just after the text.
fn span_in(word: &Word, line: &str, start: usize, len: usize) -> Span {
    if word.text.is_empty() {
        return word.span;
    }
    let columns = text_columns(line, word.span);
    if columns.len() != word.text.chars().count() {
        return word.span;
    }
    match columns.get(start) {
        Some(&first) => {
            let last = columns
                .get(start + len.max(1) - 1)
                .copied()
                .unwrap_or(first);
            Span::new(word.span.line, first, last.saturating_sub(first) + 1)
        }
        None => Span::new(
            word.span.line,
            columns
                .last()
                .map_or(word.span.column, |c| c.saturating_add(1)),
            1,
        ),
    }
}

/// The comma-separated items of `word`'s text with their char offsets.
fn items(text: &str) -> Vec<(&str, usize)> {
    let mut at = 0;
    text.split(',')
        .map(|item| {
            let start = at;
            at += item.chars().count() + 1;
            (item, start)
        })
        .collect()
}

fn item_error(sink: &mut Sink<'_>, word: &Word, at: (usize, usize), message: String, hint: &str) {
    let span = span_in(word, sink.line_text(), at.0, at.1);
    sink.error(span, message, Some(hint.to_owned()));
}

/// A decimal number up to `max` (no sign, no leading `+`).
fn number(text: &str, max: u32) -> Option<u32> {
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u64>()
        .ok()
        .filter(|&n| n <= u64::from(max))
        .and_then(|n| u32::try_from(n).ok())
}

/// `addrs=ADDR-OR-CIDR,...` of an `interface`.
pub(super) fn endpoint_addrs(opt: &Opt, sink: &mut Sink<'_>) -> Vec<Cidr> {
    let value = &opt.value;
    let mut out: Vec<Cidr> = Vec::new();
    if value.text.is_empty() {
        sink.error(
            value.span,
            "option 'addrs' needs a value".to_owned(),
            Some(
                "write addrs=10.0.0.2,fd00::2 (addresses or networks, commas, no spaces)"
                    .to_owned(),
            ),
        );
        return out;
    }
    for (item, start) in items(&value.text) {
        match Cidr::parse(item) {
            Ok(cidr) if out.contains(&cidr) => item_error(
                sink,
                value,
                (start, item.chars().count()),
                format!("address {cidr} is listed twice"),
                "list each address once",
            ),
            Ok(cidr) => out.push(cidr),
            Err(e) => {
                let p = cidr_problem(item, e);
                item_error(sink, value, (start + p.start, p.len), p.message, &p.hint);
            }
        }
    }
    out
}

/// `labels=KEY:VALUE,...` of an `interface`.
pub(super) fn endpoint_labels(opt: &Opt, sink: &mut Sink<'_>) -> Vec<(String, String)> {
    let value = &opt.value;
    let mut out: Vec<(String, String)> = Vec::new();
    if value.text.is_empty() {
        sink.error(
            value.span,
            "option 'labels' needs a value".to_owned(),
            Some("write labels=app:web,env:prod".to_owned()),
        );
        return out;
    }
    for (item, start) in items(&value.text) {
        let len = item.chars().count();
        let Some((key, val)) = item.split_once(':') else {
            item_error(
                sink,
                value,
                (start, len),
                format!("label '{}' has no value", show(item)),
                "write KEY:VALUE, e.g. app:web (an empty value is KEY:)",
            );
            continue;
        };
        let key_len = key.chars().count();
        let problem = match (check_label_key(key), check_label_value(val)) {
            (Err(why), _) => Some((why, start, key_len)),
            (Ok(()), Err(why)) => Some((why, start + key_len + 1, val.chars().count())),
            (Ok(()), Ok(())) => None,
        };
        if let Some((why, at, n)) = problem {
            item_error(
                sink,
                value,
                (at, n),
                format!("invalid label '{}'", show(item)),
                &why,
            );
            continue;
        }
        if out.iter().any(|(k, _)| k == key) {
            item_error(
                sink,
                value,
                (start, len),
                format!("label key '{key}' is given twice"),
                "give each label key once",
            );
            continue;
        }
        out.push((key.to_owned(), val.to_owned()));
    }
    out
}

/// The set called `name`, created at its first mention.
fn set_index(builder: &mut Builder, name: &Word) -> usize {
    if let Some(&i) = builder.policy.sets.get(&name.text) {
        return i;
    }
    let i = builder.config.ipsets.len();
    builder.config.ipsets.push(IpSet {
        name: name.text.clone(),
        entries: Vec::new(),
        files: Vec::new(),
        span: name.span,
    });
    builder.policy.sets.insert(name.text.clone(), i);
    builder.policy.set_seen.push(HashSet::new());
    i
}

fn check_set_name(name: &Word, sink: &mut Sink<'_>) -> bool {
    match check_name(&name.text) {
        Ok(()) => true,
        Err(why) => {
            sink.error(
                name.span,
                format!("invalid set name '{}': {why}", show(&name.text)),
                None,
            );
            false
        }
    }
}

fn add_to_set(builder: &mut Builder, set: usize, cidr: Cidr, origin: impl FnOnce() -> Origin) {
    let (Some(seen), Some(ipset)) = (
        builder.policy.set_seen.get_mut(set),
        builder.config.ipsets.get_mut(set),
    ) else {
        return;
    };
    if seen.insert(cidr) {
        ipset.entries.push((cidr, origin()));
    }
}

/// `ipset NAME CIDR...`
pub(super) fn ipset(statement: &Statement, builder: &mut Builder, sink: &mut Sink<'_>) {
    let Some(name) = statement.args.first() else {
        return;
    };
    if !check_set_name(name, sink) {
        return;
    }
    let set = set_index(builder, name);
    let shared: Arc<str> = builder.source.as_str().into();
    for word in statement.args.iter().skip(1) {
        match Cidr::parse(&word.text) {
            Ok(cidr) => add_to_set(builder, set, cidr, || Origin {
                source: shared.clone(),
                line: word.span.line,
                column: word.span.column,
            }),
            Err(e) => {
                let p = cidr_problem(&word.text, e);
                item_error(sink, word, (p.start, p.len), p.message, &p.hint);
            }
        }
    }
}

/// `ipset-file NAME PATH`
pub(super) fn ipset_file(statement: &Statement, builder: &mut Builder, sink: &mut Sink<'_>) {
    let (Some(name), Some(path)) = (statement.args.first(), statement.args.get(1)) else {
        return;
    };
    if !check_set_name(name, sink) {
        return;
    }
    let set = set_index(builder, name);
    if let Some(ipset) = builder.config.ipsets.get_mut(set) {
        ipset.files.push((PathBuf::from(&path.text), path.span));
    }
    let Some((bytes, list_source)) = open_list(
        path,
        "ipset file",
        "what the policies match",
        &builder.source,
        builder.base_dir.as_deref(),
        sink,
    ) else {
        return;
    };
    let shared: Arc<str> = list_source.as_str().into();
    let note = format!(
        "included by 'ipset-file' at {}:{}:{}",
        builder.source, path.span.line, path.span.column
    );
    let mut lines = 0;
    read_list(
        &bytes,
        |cidr, line, column| {
            add_to_set(builder, set, cidr, || Origin {
                source: shared.clone(),
                line,
                column,
            });
        },
        |span, message, hint, line_text| {
            sink.error_elsewhere(Diagnostic {
                source: list_source.clone(),
                span,
                message,
                hint: Some(hint),
                note: Some(note.clone()),
                line_text: String::from_utf8_lossy(line_text).into_owned(),
            });
            !sink.is_full()
        },
        &mut lines,
    );
    log::debug!(
        "ipset file {list_source}: {lines} line(s) for set {}",
        name.text
    );
}

const POLICY_USAGE: &str = "usage: policy NAME selector=EXPR [order=N] \
                            [types=ingress|egress|ingress,egress] [audit]";

/// `policy NAME selector=EXPR [order=N] [types=…] [audit]`
pub(super) fn policy(statement: &Statement, builder: &mut Builder, sink: &mut Sink<'_>) {
    let Some(name) = statement.args.first() else {
        return;
    };
    let mut ok = true;
    if let Err(why) = check_name(&name.text) {
        sink.error(
            name.span,
            format!("invalid policy name '{}': {why}", show(&name.text)),
            None,
        );
        ok = false;
    }
    let mut audit = false;
    for extra in statement.args.iter().skip(1) {
        let message = if extra.text == "audit" && !audit {
            audit = true;
            continue;
        } else if extra.text == "audit" {
            "'audit' given twice".to_owned()
        } else {
            format!("unexpected argument '{}'", show(&extra.text))
        };
        sink.error(extra.span, message, Some(POLICY_USAGE.to_owned()));
        ok = false;
    }
    let order = match statement.option("order") {
        None => Policy::DEFAULT_ORDER,
        Some(opt) => number(&opt.value.text, u32::MAX).unwrap_or_else(|| {
            sink.error(
                opt.value.span,
                format!("invalid order '{}'", show(&opt.value.text)),
                Some(format!(
                    "the order is a number from 0 to {}; lower orders apply first",
                    u32::MAX
                )),
            );
            ok = false;
            0
        }),
    };
    let types = statement.option("types").map(|opt| {
        let mut ingress = false;
        let mut egress = false;
        for (item, start) in items(&opt.value.text) {
            let (flag, other) = match item {
                "ingress" => (&mut ingress, "ingress"),
                "egress" => (&mut egress, "egress"),
                _ => {
                    let message = if opt.value.text.is_empty() {
                        "option 'types' needs a value".to_owned()
                    } else {
                        format!("invalid policy type '{}'", show(item))
                    };
                    item_error(
                        sink,
                        &opt.value,
                        (start, item.chars().count()),
                        message,
                        &format!(
                            "types are ingress, egress or ingress,egress{}",
                            did_you_mean(item, &["ingress", "egress"])
                        ),
                    );
                    ok = false;
                    continue;
                }
            };
            if *flag {
                item_error(
                    sink,
                    &opt.value,
                    (start, item.chars().count()),
                    format!("'{other}' is given twice"),
                    "give each type once",
                );
                ok = false;
            }
            *flag = true;
        }
        (ingress, egress)
    });
    let selector = match statement.option("selector") {
        None => {
            sink.error(
                Span::new(statement.span.line, statement.span.end(), 1),
                format!("policy '{}' needs selector=", show(&name.text)),
                Some(
                    "write e.g. selector=\"app == 'web'\", or selector=all() for every endpoint"
                        .to_owned(),
                ),
            );
            None
        }
        Some(opt) => match Selector::parse(&opt.value.text) {
            Ok(s) => Some(s),
            Err(e) => {
                let span = span_in(&opt.value, sink.line_text(), e.start, e.len);
                sink.error(span, e.message, Some(e.hint));
                None
            }
        },
    };
    let (Some(selector), true) = (selector, ok) else {
        builder.policy.broken_policies.insert(name.text.clone());
        return;
    };
    if let Some(&(first, _)) = builder.policy.policies.get(&name.text) {
        let line = builder
            .config
            .policies
            .get(first)
            .map_or(0, |p| p.span.line);
        sink.error(
            name.span,
            format!(
                "duplicate policy '{}' (first declared on line {line})",
                show(&name.text)
            ),
            Some("declare each policy once; its rules name it".to_owned()),
        );
        return;
    }
    let (ingress, egress) = types.unwrap_or((true, false));
    builder.policy.policies.insert(
        name.text.clone(),
        (builder.config.policies.len(), types.is_some()),
    );
    builder.config.policies.push(Policy {
        name: name.text.clone(),
        order,
        selector,
        ingress,
        egress,
        audit,
        span: name.span,
    });
}

/// `proto=` value: a name, `any` or a number 0..=255.
fn parse_proto(opt: &Opt, sink: &mut Sink<'_>) -> Result<Option<u8>, ()> {
    let text = opt.value.text.as_str();
    if text == "any" {
        return Ok(None);
    }
    if let Some(&(_, p)) = PROTO_NAMES.iter().find(|(n, _)| *n == text) {
        return Ok(Some(p));
    }
    if let Some(n) = number(text, 255) {
        // A named protocol is written by name, so the canonical form is unique.
        if let Some(name) = proto_name(n as u8) {
            sink.error(
                opt.value.span,
                format!("write protocol {n} as '{name}'"),
                Some(format!("proto={name}")),
            );
            return Err(());
        }
        return Ok(Some(n as u8));
    }
    let mut names: Vec<&str> = PROTO_NAMES.iter().map(|(n, _)| *n).collect();
    names.push("any");
    sink.error(
        opt.value.span,
        if text.is_empty() {
            "option 'proto' needs a value".to_owned()
        } else {
            format!("invalid protocol '{}'", show(text))
        },
        Some(format!(
            "valid protocols are {}, or an IP protocol number 0 to 255{}",
            names.join(", "),
            did_you_mean(text, &names)
        )),
    );
    Err(())
}

/// `sport=` / `dport=`: `P` or `LO-HI` items, 0 to 65535.
fn parse_ports(opt: &Opt, sink: &mut Sink<'_>) -> Result<Vec<(u16, u16)>, ()> {
    const HINT: &str = "ports are PORT or LOW-HIGH (0 to 65535), separated by commas";
    let value = &opt.value;
    let mut out = Vec::new();
    let mut ok = true;
    for (item, start) in items(&value.text) {
        let len = item.chars().count();
        let (lo_text, hi_text) = item.split_once('-').unwrap_or((item, item));
        let port = |t: &str| number(t, 65_535).and_then(|n| u16::try_from(n).ok());
        match (port(lo_text), port(hi_text)) {
            (Some(lo), Some(hi)) if lo <= hi => out.push((lo, hi)),
            (Some(lo), Some(hi)) => {
                item_error(
                    sink,
                    value,
                    (start, len),
                    format!("port range {lo}-{hi} is reversed"),
                    &format!("write {hi}-{lo}"),
                );
                ok = false;
            }
            _ => {
                let message = if item.is_empty() {
                    format!("empty item in '{}='", opt.key.text)
                } else {
                    format!("invalid port '{}'", show(item))
                };
                item_error(sink, value, (start, len), message, HINT);
                ok = false;
            }
        }
    }
    if ok {
        Ok(out)
    } else {
        Err(())
    }
}

/// `remote=` items: `CIDR`, `set:NAME`, each optionally prefixed with `!`.
fn parse_remote(
    opt: &Opt,
    sink: &mut Sink<'_>,
    refs: &mut Vec<Reference>,
) -> Result<Vec<Remote>, ()> {
    let value = &opt.value;
    let mut out = Vec::new();
    let mut ok = true;
    for (item, start) in items(&value.text) {
        let (negated, body, at) = match item.strip_prefix('!') {
            Some(rest) => (true, rest, start + 1),
            None => (false, item, start),
        };
        let len = body.chars().count();
        if body.is_empty() {
            item_error(
                sink,
                value,
                (start, item.chars().count()),
                "empty item in 'remote='".to_owned(),
                "write CIDR, set:NAME, !CIDR or !set:NAME items separated by single commas",
            );
            ok = false;
            continue;
        }
        let target = if let Some(name) = body.strip_prefix("set:") {
            if let Err(why) = check_name(name) {
                item_error(
                    sink,
                    value,
                    (at + 4, name.chars().count()),
                    format!("invalid set name '{}': {why}", show(name)),
                    "sets are declared with 'ipset NAME …' or 'ipset-file NAME PATH'",
                );
                ok = false;
                continue;
            }
            refs.push(Reference {
                name: name.to_owned(),
                span: span_in(value, sink.line_text(), at + 4, name.chars().count()),
                line_text: sink.line_text().to_owned(),
            });
            RemoteTarget::Set(name.to_owned())
        } else {
            match Cidr::parse(body) {
                Ok(cidr) => RemoteTarget::Net(cidr),
                Err(e) => {
                    let p = cidr_problem(body, e);
                    item_error(
                        sink,
                        value,
                        (at + p.start, p.len.min(len)),
                        p.message,
                        &p.hint,
                    );
                    ok = false;
                    continue;
                }
            }
        };
        out.push(Remote { negated, target });
    }
    if ok {
        Ok(out)
    } else {
        Err(())
    }
}

/// `rule POLICY DIRECTION ACTION [options]`
pub(super) fn rule(statement: &Statement, builder: &mut Builder, sink: &mut Sink<'_>) {
    let (Some(policy), Some(dir_word), Some(action_word)) = (
        statement.args.first(),
        statement.args.get(1),
        statement.args.get(2),
    ) else {
        return;
    };
    let mut ok = true;
    if let Err(why) = check_name(&policy.text) {
        sink.error(
            policy.span,
            format!("invalid policy name '{}': {why}", show(&policy.text)),
            None,
        );
        ok = false;
    }
    let direction = match dir_word.text.as_str() {
        "ingress" => Some(Direction::Ingress),
        "egress" => Some(Direction::Egress),
        other => {
            sink.error(
                dir_word.span,
                format!("invalid direction '{}'", show(other)),
                Some(format!(
                    "the direction is ingress or egress{}",
                    did_you_mean(other, &["ingress", "egress"])
                )),
            );
            None
        }
    };
    let actions = [
        ("allow", RuleAction::Allow),
        ("deny", RuleAction::Deny),
        ("log", RuleAction::Log),
        ("pass", RuleAction::Pass),
    ];
    let action = actions
        .iter()
        .find(|(n, _)| *n == action_word.text)
        .map(|(_, a)| *a);
    if action.is_none() {
        let names: Vec<&str> = actions.iter().map(|(n, _)| *n).collect();
        sink.error(
            action_word.span,
            format!("invalid action '{}'", show(&action_word.text)),
            Some(format!(
                "the action is allow, deny, log or pass{}",
                did_you_mean(&action_word.text, &names)
            )),
        );
    }
    let proto = match statement.option("proto") {
        None => Ok(None),
        Some(opt) => parse_proto(opt, sink),
    };
    let mut refs = Vec::new();
    let remote = statement
        .option("remote")
        .map_or(Ok(Vec::new()), |opt| parse_remote(opt, sink, &mut refs));
    let sport = statement
        .option("sport")
        .map_or(Ok(Vec::new()), |opt| parse_ports(opt, sink));
    let dport = statement
        .option("dport")
        .map_or(Ok(Vec::new()), |opt| parse_ports(opt, sink));
    let byte = |name: &str, sink: &mut Sink<'_>| -> Result<Option<u8>, ()> {
        let Some(opt) = statement.option(name) else {
            return Ok(None);
        };
        match number(&opt.value.text, 255) {
            Some(n) => Ok(Some(n as u8)),
            None => {
                sink.error(
                    opt.value.span,
                    format!("invalid {name} '{}'", show(&opt.value.text)),
                    Some(format!("the {name} is a number from 0 to 255")),
                );
                Err(())
            }
        }
    };
    let icmp_type = byte("icmp-type", sink);
    let icmp_code = byte("icmp-code", sink);
    // Conditions that need a protocol.
    if let Ok(proto) = proto {
        for key in ["sport", "dport"] {
            if let Some(opt) = statement.option(key) {
                if !proto.is_some_and(has_ports) {
                    sink.error(
                        opt.key.span,
                        format!("'{key}=' needs a protocol with ports"),
                        Some("add proto=tcp, proto=udp or proto=sctp".to_owned()),
                    );
                    ok = false;
                }
            }
        }
        if let Some(opt) = statement.option("icmp-type") {
            if !proto.is_some_and(is_icmp) {
                sink.error(
                    opt.key.span,
                    "'icmp-type=' needs proto=icmp or proto=icmpv6".to_owned(),
                    Some("add proto=icmp (IPv4) or proto=icmpv6 (IPv6)".to_owned()),
                );
                ok = false;
            }
        }
    }
    if let (Some(opt), None) = (statement.option("icmp-code"), statement.option("icmp-type")) {
        sink.error(
            opt.key.span,
            "'icmp-code=' needs icmp-type=".to_owned(),
            Some("a code belongs to a type, e.g. icmp-type=3 icmp-code=4".to_owned()),
        );
        ok = false;
    }
    let (
        Some(direction),
        Some(action),
        Ok(proto),
        Ok(remote),
        Ok(sport),
        Ok(dport),
        Ok(icmp_type),
        Ok(icmp_code),
        true,
    ) = (
        direction, action, proto, remote, sport, dport, icmp_type, icmp_code, ok,
    )
    else {
        return;
    };
    let line_text = sink.line_text().to_owned();
    builder.policy.set_refs.extend(refs);
    builder.policy.rules.push(PendingRule {
        policy: Reference {
            name: policy.text.clone(),
            span: policy.span,
            line_text,
        },
        direction: dir_word.span,
    });
    builder.config.rules.push(Rule {
        policy: policy.text.clone(),
        direction,
        action,
        proto,
        remote,
        sport,
        dport,
        icmp: icmp_type.map(|t| (t, icmp_code)),
        span: policy.span,
    });
}

/// Whole-file checks after the last line: every rule names a declared policy that applies in
/// the rule's direction, every `set:NAME` a declared set; policies without `types=` get the
/// directions their rules have (ingress when they have none, as in Calico and Kubernetes).
pub(super) fn finish(builder: &mut Builder, sink: &mut Sink<'_>) {
    let state = &builder.policy;
    let config = &mut builder.config;
    let names: Vec<&str> = config.policies.iter().map(|p| p.name.as_str()).collect();
    let mut has = vec![(false, false); config.policies.len()];
    for (pending, rule) in state.rules.iter().zip(&config.rules) {
        let Some(&(index, explicit)) = state.policies.get(&rule.policy) else {
            if state.broken_policies.contains(&rule.policy) {
                continue;
            }
            sink.error_elsewhere(Diagnostic {
                source: builder.source.clone(),
                span: pending.policy.span,
                message: format!("unknown policy '{}'", show(&pending.policy.name)),
                hint: Some(format!(
                    "declare it with 'policy {} selector=…'{}",
                    show(&pending.policy.name),
                    did_you_mean(&pending.policy.name, &names)
                )),
                note: None,
                line_text: pending.policy.line_text.clone(),
            });
            continue;
        };
        if let (Some(flags), Some(policy)) = (has.get_mut(index), config.policies.get(index)) {
            match rule.direction {
                Direction::Ingress => flags.0 = true,
                Direction::Egress => flags.1 = true,
            }
            if explicit && !policy.applies(rule.direction) {
                sink.error_elsewhere(Diagnostic {
                    source: builder.source.clone(),
                    span: pending.direction,
                    message: format!(
                        "policy '{}' has types={} (line {}): an {} rule would never apply",
                        policy.name,
                        if policy.ingress { "ingress" } else { "egress" },
                        policy.span.line,
                        rule.direction
                    ),
                    hint: Some(format!(
                        "add {} to the policy's types=, or drop the rule",
                        rule.direction
                    )),
                    note: None,
                    line_text: pending.policy.line_text.clone(),
                });
            }
        }
    }
    for reference in &state.set_refs {
        if !state.sets.contains_key(&reference.name) {
            let sets: Vec<&str> = config.ipsets.iter().map(|s| s.name.as_str()).collect();
            sink.error_elsewhere(Diagnostic {
                source: builder.source.clone(),
                span: reference.span,
                message: format!("unknown set '{}'", show(&reference.name)),
                hint: Some(format!(
                    "declare it with 'ipset {} CIDR…' or 'ipset-file {} PATH'{}",
                    reference.name,
                    reference.name,
                    did_you_mean(&reference.name, &sets)
                )),
                note: None,
                line_text: reference.line_text.clone(),
            });
        }
    }
    for (policy, (ingress_rules, egress_rules)) in config.policies.iter_mut().zip(has) {
        let explicit = state.policies.get(&policy.name).is_some_and(|&(_, e)| e);
        if !explicit {
            policy.ingress = ingress_rules || !egress_rules;
            policy.egress = egress_rules;
        }
    }
}
