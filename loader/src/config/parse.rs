//! The typed layer: a table of statements, generic shape checks (arity, known and unique
//! options), and one handler per statement that builds the [`Config`].
//!
//! To add a statement: write a handler `fn(&Statement, &mut Builder, &mut Sink)`, add a
//! [`StatementSpec`] row to [`STATEMENTS`], and a field to [`Config`] (and to `render_config`).
//!
//! A keyword may be two words (`prefilter deny`): the first word names a family, the first
//! positional picks the member, and the handler sees the pair as the keyword (its span covers
//! both words) and the remaining positionals as its arguments.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::diag::{show, ConfigError, Diagnostic, Sink, Span};
use super::lexer::{lex_line, Opt, Word};
use super::mesh::{self, MeshState};
use super::model::{AttachPolicy, CgroupAttach, Config, Interface, Role, XdpMode};
use super::policy::{self, PolicyState};
use super::prefilter::{self, PrefilterState};
use super::service::{self, ServiceState};
use super::suggest::did_you_mean;
use super::syntax::{group, Statement};

/// How one statement looks and what it does.
pub(crate) struct StatementSpec {
    pub keyword: &'static str,
    /// One-line synopsis for hints.
    pub usage: &'static str,
    /// Required positional arguments, described for "needs …" messages (e.g. "an interface name").
    pub args: &'static [&'static str],
    /// `Some(description)` when any number of further positionals is allowed.
    pub rest: Option<&'static str>,
    /// Option names the statement accepts.
    pub options: &'static [&'static str],
    /// Interprets a statement whose required positionals are all present (shape errors such as
    /// unknown or duplicate options have already been reported; `Statement::option` gives the
    /// first occurrence of each).
    pub apply: fn(&Statement, &mut Builder, &mut Sink<'_>),
}

/// Every statement the language knows, in the order hints list them.
pub(crate) const STATEMENTS: &[StatementSpec] = &[
    StatementSpec {
        keyword: "interface",
        usage:
            "interface NAME [role=host|workload] [xdp=off|native|generic] [tc=on|off] \
                [attach=auto|link|legacy] [addrs=ADDR,...] [labels=KEY:VALUE,...] [fastpath=on|off]",
        args: &["an interface name"],
        rest: None,
        options: &["role", "xdp", "tc", "attach", "addrs", "labels", "fastpath"],
        apply: interface,
    },
    StatementSpec {
        keyword: "cgroup",
        usage: "cgroup PATH [attach=auto|link]",
        args: &["a cgroup path (relative to the cgroup2 mount)"],
        rest: None,
        options: &["attach"],
        apply: cgroup,
    },
    StatementSpec {
        keyword: "pin-dir",
        usage: "pin-dir ABSOLUTE-PATH",
        args: &["an absolute directory path"],
        rest: None,
        options: &[],
        apply: pin_dir,
    },
    StatementSpec {
        keyword: "prefilter deny",
        usage: "prefilter deny CIDR-OR-ADDRESS...",
        args: &["at least one CIDR or address (e.g. 192.0.2.0/24, 2001:db8::/32, 198.51.100.7)"],
        rest: Some("more CIDRs or addresses"),
        options: &[],
        apply: prefilter::deny,
    },
    StatementSpec {
        keyword: "prefilter deny-file",
        usage: "prefilter deny-file PATH",
        args: &["the path of a file with one CIDR or address per line"],
        rest: None,
        options: &[],
        apply: prefilter::deny_file,
    },
    StatementSpec {
        keyword: "prefilter capacity",
        usage: "prefilter capacity [v4=N] [v6=N] [v4-chunks=N]",
        args: &[],
        rest: None,
        options: &["v4", "v6", "v4-chunks"],
        apply: prefilter::capacity,
    },
    StatementSpec {
        keyword: "failsafe in",
        usage: "failsafe in PROTO/PORT|PROTO/LOW-HIGH... | failsafe in none",
        args: &["'none' or at least one PROTO/PORT or PROTO/LOW-HIGH (e.g. tcp/22, udp/67-68)"],
        rest: Some("more port specs"),
        options: &[],
        apply: prefilter::failsafe_in,
    },
    StatementSpec {
        keyword: "service",
        usage: "service NAME VIP:PORT/PROTO backends=IP:PORT[@WEIGHT],...|none \
                [affinity=SECONDS|off] [excluded]",
        args: &[
            "a service name",
            "the service address VIP:PORT/PROTO (e.g. 198.51.100.10:80/tcp, [2001:db8::10]:53/udp)",
        ],
        rest: Some("'excluded'"),
        options: &["backends", "affinity"],
        apply: service::service,
    },
    StatementSpec {
        keyword: "lb exclude",
        usage: "lb exclude CGROUP-PATH...",
        args: &["at least one cgroup path (relative to the cgroup2 mount)"],
        rest: Some("more cgroup paths"),
        options: &[],
        apply: service::lb_exclude,
    },
    StatementSpec {
        keyword: "lb capacity",
        usage: "lb capacity [services=N] [backends=N] [slots=N] [connections=N]",
        args: &[],
        rest: None,
        options: &["services", "backends", "slots", "connections"],
        apply: service::lb_capacity,
    },
    StatementSpec {
        keyword: "mesh",
        usage: "mesh CGROUP-PATH proxy-port=PORT [proxy-cgroup=PATH] [proxy-uid=UID] \
                [exclude-ports=PORT|LOW-HIGH,...] [inbound-port=PORT netns=NAME|PATH \
                [exclude-inbound-ports=PORT|LOW-HIGH,...]]",
        args: &["the meshed cgroup's path (relative to the cgroup2 mount)"],
        rest: None,
        options: &[
            "proxy-port",
            "proxy-cgroup",
            "proxy-uid",
            "exclude-ports",
            "inbound-port",
            "netns",
            "exclude-inbound-ports",
        ],
        apply: mesh::mesh,
    },
    StatementSpec {
        keyword: "conntrack capacity",
        usage: "conntrack capacity entries=N",
        args: &[],
        rest: None,
        options: &["entries"],
        apply: policy::conntrack_capacity,
    },
    StatementSpec {
        keyword: "classifier capacity",
        usage: "classifier capacity [rule-sets=N] [chunks=N] [bitmaps=N]",
        args: &[],
        rest: None,
        options: &["rule-sets", "chunks", "bitmaps"],
        apply: policy::classifier_capacity,
    },
    StatementSpec {
        keyword: "ipset",
        usage: "ipset NAME CIDR-OR-ADDRESS...",
        args: &[
            "a set name",
            "at least one CIDR or address (e.g. 192.0.2.0/24, 2001:db8::/32)",
        ],
        rest: Some("more CIDRs or addresses"),
        options: &[],
        apply: policy::ipset,
    },
    StatementSpec {
        keyword: "ipset-file",
        usage: "ipset-file NAME PATH",
        args: &[
            "a set name",
            "the path of a file with one CIDR or address per line",
        ],
        rest: None,
        options: &[],
        apply: policy::ipset_file,
    },
    StatementSpec {
        keyword: "policy",
        usage: "policy NAME selector=EXPR [order=N] [types=ingress|egress|ingress,egress] [audit]",
        args: &["a policy name"],
        rest: Some("'audit'"),
        options: &["selector", "order", "types"],
        apply: policy::policy,
    },
    StatementSpec {
        keyword: "rule",
        usage: "rule POLICY ingress|egress allow|deny|log|pass \
                [proto=tcp|udp|icmp|icmpv6|sctp|any|N] [remote=CIDR|set:NAME|!CIDR|!set:NAME,...] \
                [sport=P|LO-HI,...] [dport=P|LO-HI,...] [icmp-type=T] [icmp-code=C]",
        args: &[
            "a policy name",
            "a direction (ingress or egress)",
            "an action (allow, deny, log or pass)",
        ],
        rest: None,
        options: &[
            "proto",
            "remote",
            "sport",
            "dport",
            "icmp-type",
            "icmp-code",
        ],
        apply: policy::rule,
    },
];

/// The config under construction plus what duplicate checks need.
pub(crate) struct Builder {
    pub(super) config: Config,
    /// The name diagnostics and origins give the config text.
    pub(super) source: String,
    /// The directory relative `prefilter deny-file` paths start from; `None`: the current
    /// directory (the text did not come from a file).
    pub(super) base_dir: Option<PathBuf>,
    /// Interface name → line of its first declaration.
    interface_lines: HashMap<String, u32>,
    /// Normalised cgroup path → line of its first declaration.
    cgroup_lines: HashMap<String, u32>,
    pub(super) prefilter: PrefilterState,
    pub(super) lb: ServiceState,
    pub(super) policy: PolicyState,
    pub(super) mesh: MeshState,
}

/// The permission bits of `path` when it is a regular file every user may write (a file weir
/// must not trust). Other kinds of file are left to the reader's own checks.
pub(crate) fn world_writable(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.permissions().mode() & 0o7777;
    (meta.is_file() && mode & 0o002 != 0).then_some(mode)
}

/// Parses config `text`; `source` names it in diagnostics (a file name, or e.g. `"<embedded>"`).
///
/// Parsing never panics and does not stop at the first error: each line is checked on its own,
/// so the error lists every problem in the file (up to 100).
///
/// # Errors
///
/// A [`ConfigError`] with one [`Diagnostic`] per problem, in source order, when the text has any
/// lexical, syntactic or semantic error. Errors in a deny-list file follow the errors of the
/// line that includes it (their `source` is the list file's path, their `note` names the
/// including line); a deny list longer than its capacity is reported last.
///
/// `prefilter deny-file` paths are read relative to the current directory; [`parse_file`] reads
/// them relative to the config file's directory.
pub fn parse(source: &str, text: &str) -> Result<Config, ConfigError> {
    parse_in(source, text, None)
}

fn parse_in(source: &str, text: &str, base_dir: Option<PathBuf>) -> Result<Config, ConfigError> {
    let mut sink = Sink::new(source);
    let mut builder = Builder {
        config: Config::default(),
        source: source.to_owned(),
        base_dir,
        interface_lines: HashMap::new(),
        cgroup_lines: HashMap::new(),
        prefilter: PrefilterState::default(),
        lb: ServiceState::default(),
        policy: PolicyState::default(),
        mesh: MeshState::default(),
    };
    for (index, raw) in text.split('\n').enumerate() {
        if sink.is_full() {
            break;
        }
        let line_no = u32::try_from(index.saturating_add(1)).unwrap_or(u32::MAX);
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        sink.set_line(line);
        parse_line(line, line_no, &mut builder, &mut sink);
    }
    policy::finish(&mut builder, &mut sink);
    prefilter::finish(&mut builder, &mut sink);
    mesh::finish(&mut builder, &mut sink);
    if sink.count() > 0 {
        log::debug!("config {source}: {} error(s)", sink.count());
        return Err(ConfigError {
            diagnostics: sink.into_diagnostics(),
        });
    }
    let mut config = builder.config;
    source.clone_into(&mut config.source);
    log::debug!(
        "config {source}: {} interface(s), {} cgroup(s), pin-dir {:?}, {} denied network(s) \
         from {} file(s), {} failsafe port range(s), {} set(s), {} policies, {} rule(s)",
        config.interfaces.len(),
        config.cgroups.len(),
        config.pin_dir.as_ref().map(|(p, _)| p),
        config.prefilter.deny.len(),
        config.prefilter.files.len(),
        config.failsafe_in.len(),
        config.ipsets.len(),
        config.policies.len(),
        config.rules.len()
    );
    Ok(config)
}

/// Reads and parses the config file at `path`; diagnostics name the file as `path` displays.
/// Relative `prefilter deny-file` paths are relative to the directory of `path`.
///
/// # Errors
///
/// A [`ConfigError`] as from [`parse`]; also when the file cannot be read (one diagnostic at
/// 0:0 naming the path and the OS error) or is not UTF-8 (one diagnostic at the first bad byte).
pub fn parse_file(path: &Path) -> Result<Config, ConfigError> {
    let source = path.display().to_string();
    if let Some(mode) = world_writable(path) {
        return Err(ConfigError {
            diagnostics: vec![Diagnostic {
                source: source.clone(),
                span: Span::default(),
                message: format!(
                    "config file '{source}' is writable by every user (mode {mode:o}): anyone could \
                     change what weir loads into the kernel; refused"
                ),
                hint: Some(format!("run `chmod o-w {source}`")),
                note: None,
                line_text: String::new(),
            }],
        });
    }
    let bytes = std::fs::read(path).map_err(|e| ConfigError {
        diagnostics: vec![Diagnostic {
            source: source.clone(),
            span: Span::default(),
            message: format!("cannot read config file '{source}': {e}"),
            hint: None,
            note: None,
            line_text: String::new(),
        }],
    })?;
    match String::from_utf8(bytes) {
        Ok(text) => parse_in(
            &source,
            &text,
            Some(path.parent().unwrap_or(Path::new("")).to_path_buf()),
        ),
        Err(e) => Err(ConfigError {
            diagnostics: vec![utf8_diagnostic(
                &source,
                e.as_bytes(),
                e.utf8_error().valid_up_to(),
            )],
        }),
    }
}

/// Points at the first invalid byte; `valid` bytes before it are UTF-8.
fn utf8_diagnostic(source: &str, bytes: &[u8], valid: usize) -> Diagnostic {
    let prefix = bytes.get(..valid).unwrap_or_default();
    let line_start = prefix
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line_no = prefix
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        .saturating_add(1);
    let before = std::str::from_utf8(prefix.get(line_start..).unwrap_or_default())
        .map_or(0, |s| s.chars().count());
    let rest = bytes.get(line_start..).unwrap_or_default();
    let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let line = String::from_utf8_lossy(rest.get(..line_end).unwrap_or_default());
    Diagnostic {
        source: source.to_owned(),
        span: Span::new(
            u32::try_from(line_no).unwrap_or(u32::MAX),
            u32::try_from(before.saturating_add(1)).unwrap_or(u32::MAX),
            1,
        ),
        message: "config file is not valid UTF-8".to_owned(),
        hint: Some("save the file as UTF-8".to_owned()),
        note: None,
        line_text: line.strip_suffix('\r').unwrap_or(&line).to_owned(),
    }
}

/// The statement families (first keyword words), in table order, each once.
fn keywords() -> Vec<&'static str> {
    let mut heads: Vec<&'static str> = Vec::new();
    for spec in STATEMENTS {
        let head = head_of(spec.keyword);
        if !heads.contains(&head) {
            heads.push(head);
        }
    }
    heads
}

fn head_of(keyword: &'static str) -> &'static str {
    keyword.split(' ').next().unwrap_or(keyword)
}

fn parse_line(line: &str, line_no: u32, builder: &mut Builder, sink: &mut Sink<'_>) {
    let tokens = match lex_line(line, line_no) {
        Ok(tokens) => tokens,
        Err(errors) => {
            for e in errors {
                sink.error(e.span, e.message, e.hint);
            }
            return;
        }
    };
    let statement = match group(tokens) {
        Ok(Some(statement)) => statement,
        Ok(None) => return,
        Err(opt) => {
            sink.error(
                opt.span,
                format!(
                    "expected a statement keyword, found option '{}={}'",
                    show(&opt.key.text),
                    show(&opt.value.text)
                ),
                Some(format!(
                    "a statement starts with one of: {}",
                    keywords().join(", ")
                )),
            );
            return;
        }
    };
    let Some((spec, statement)) = resolve(statement, sink) else {
        return;
    };
    check_args(spec, &statement, sink);
    check_options(spec, &statement, sink);
    if statement.args.len() >= spec.args.len() {
        (spec.apply)(&statement, builder, sink);
    }
}

/// Finds the table row for `statement`; for a two-word keyword, moves the second word from the
/// arguments into the keyword. Reports an unknown keyword or member.
fn resolve(
    mut statement: Statement,
    sink: &mut Sink<'_>,
) -> Option<(&'static StatementSpec, Statement)> {
    let keyword = &statement.keyword;
    let family: Vec<&'static StatementSpec> = STATEMENTS
        .iter()
        .filter(|s| head_of(s.keyword) == keyword.text)
        .collect();
    let Some(&first) = family.first() else {
        let all = keywords();
        sink.error(
            keyword.span,
            format!("unknown statement '{}'", show(&keyword.text)),
            Some(format!(
                "valid statements are {}{}",
                all.join(", "),
                did_you_mean(&keyword.text, &all)
            )),
        );
        return None;
    };
    if !first.keyword.contains(' ') {
        return Some((first, statement));
    }
    let members: Vec<&'static str> = family
        .iter()
        .map(|s| s.keyword.split_once(' ').map_or("", |(_, m)| m))
        .collect();
    let forms = family
        .iter()
        .map(|s| s.keyword)
        .collect::<Vec<_>>()
        .join(", ");
    if statement.args.is_empty() {
        sink.error(
            Span::new(keyword.span.line, keyword.span.end(), 1),
            format!("'{}' needs one of: {}", keyword.text, members.join(", ")),
            Some(format!(
                "usage: {}",
                family
                    .iter()
                    .map(|s| s.usage)
                    .collect::<Vec<_>>()
                    .join(" | ")
            )),
        );
        return None;
    }
    let member = statement.args.remove(0);
    let Some(spec) = family.iter().copied().find(|s| {
        s.keyword
            .split_once(' ')
            .is_some_and(|(_, m)| m == member.text)
    }) else {
        sink.error(
            member.span,
            format!(
                "unknown statement '{} {}'",
                keyword.text,
                show(&member.text)
            ),
            Some(format!(
                "valid '{}' statements are {forms}{}",
                keyword.text,
                did_you_mean(&member.text, &members)
            )),
        );
        return None;
    };
    statement.keyword = Word {
        text: spec.keyword.to_owned(),
        span: statement.keyword.span.to(member.span),
    };
    Some((spec, statement))
}

/// Reports a missing required positional (once) and every surplus one.
fn check_args(spec: &StatementSpec, statement: &Statement, sink: &mut Sink<'_>) {
    let given = statement.args.len();
    if let Some(missing) = spec.args.get(given) {
        // Point just after the last positional (or the keyword): where the argument belongs.
        let anchor = statement.args.last().unwrap_or(&statement.keyword).span;
        sink.error(
            Span::new(anchor.line, anchor.end(), 1),
            format!("'{}' needs {missing}", spec.keyword),
            Some(format!("usage: {}", spec.usage)),
        );
        return;
    }
    if spec.rest.is_some() {
        return;
    }
    let takes = spec.args.len();
    for extra in statement.args.iter().skip(takes) {
        let hint = if spec.options.contains(&extra.text.as_str()) {
            format!(
                "options are written key=value: did you mean '{}=…'?",
                extra.text
            )
        } else {
            format!("usage: {}", spec.usage)
        };
        sink.error(
            extra.span,
            format!(
                "unexpected argument '{}': '{}' takes {takes} argument{}",
                show(&extra.text),
                spec.keyword,
                if takes == 1 { "" } else { "s" }
            ),
            Some(hint),
        );
    }
}

/// Reports unknown options and repeated ones.
fn check_options(spec: &StatementSpec, statement: &Statement, sink: &mut Sink<'_>) {
    let mut seen: HashMap<&str, u32> = HashMap::new();
    for opt in &statement.options {
        let key = opt.key.text.as_str();
        if !spec.options.contains(&key) {
            let hint = if spec.options.is_empty() {
                format!("'{}' takes no options", spec.keyword)
            } else {
                format!(
                    "valid options are {}{}",
                    spec.options.join(", "),
                    did_you_mean(key, spec.options)
                )
            };
            sink.error(
                opt.key.span,
                format!("unknown option '{}' for '{}'", show(key), spec.keyword),
                Some(hint),
            );
        } else if let Some(first) = seen.get(key) {
            sink.error(
                opt.key.span,
                format!("duplicate option '{key}' (first given at column {first})"),
                Some("give each option once".to_owned()),
            );
        } else {
            seen.insert(key, opt.key.span.column);
        }
    }
}

/// The value of option `name` among `choices`, or `default` when absent; reports a bad value
/// (and returns `default` so the rest of the statement is still checked).
fn choice<T: Copy>(
    statement: &Statement,
    sink: &mut Sink<'_>,
    name: &str,
    choices: &[(&'static str, T)],
    default: T,
) -> T {
    let Some(Opt { value, .. }) = statement.option(name) else {
        return default;
    };
    if let Some(&(_, v)) = choices.iter().find(|(text, _)| *text == value.text) {
        return v;
    }
    let names: Vec<&str> = choices.iter().map(|(text, _)| *text).collect();
    let message = if value.text.is_empty() {
        format!("option '{name}' needs a value")
    } else {
        format!("invalid value '{}' for option '{name}'", show(&value.text))
    };
    sink.error(
        value.span,
        message,
        Some(format!(
            "valid values are {}{}",
            names.join(", "),
            did_you_mean(&value.text, &names)
        )),
    );
    default
}

/// The one required positional of a statement; `apply` only runs when it is present.
fn first_arg(statement: &Statement) -> Option<&Word> {
    statement.args.first()
}

fn interface(statement: &Statement, builder: &mut Builder, sink: &mut Sink<'_>) {
    let Some(name) = first_arg(statement) else {
        return;
    };
    let role = choice(
        statement,
        sink,
        "role",
        &[("host", Role::Host), ("workload", Role::Workload)],
        Role::Host,
    );
    let xdp = choice(
        statement,
        sink,
        "xdp",
        &[
            ("off", XdpMode::Off),
            ("native", XdpMode::Native),
            ("generic", XdpMode::Generic),
        ],
        XdpMode::Native,
    );
    let tc = choice(statement, sink, "tc", &[("on", true), ("off", false)], true);
    let fastpath = choice(
        statement,
        sink,
        "fastpath",
        &[("on", true), ("off", false)],
        true,
    );
    let attach = choice(
        statement,
        sink,
        "attach",
        &[
            ("auto", AttachPolicy::Auto),
            ("link", AttachPolicy::Link),
            ("legacy", AttachPolicy::Legacy),
        ],
        AttachPolicy::Auto,
    );
    let addrs = statement
        .option("addrs")
        .map(|opt| policy::endpoint_addrs(opt, sink))
        .unwrap_or_default();
    let labels = statement
        .option("labels")
        .map(|opt| policy::endpoint_labels(opt, sink))
        .unwrap_or_default();
    if let Err(why) = check_ifname(&name.text) {
        sink.error(
            name.span,
            format!("invalid interface name '{}': {why}", show(&name.text)),
            Some("use the name `ip link` shows".to_owned()),
        );
        return;
    }
    if let Some(first) = builder.interface_lines.get(&name.text) {
        sink.error(
            name.span,
            format!(
                "duplicate interface '{}' (first declared on line {first})",
                show(&name.text)
            ),
            Some("declare each interface once, with all its options".to_owned()),
        );
        return;
    }
    if fastpath && !tc {
        if let Some(opt) = statement.option("fastpath") {
            sink.error(
                opt.span,
                format!(
                    "interface '{}': fastpath=on needs the TC programs, and this interface has tc=off",
                    show(&name.text)
                ),
                Some("drop fastpath=on, or set tc=on".to_owned()),
            );
            return;
        }
    }
    builder
        .interface_lines
        .insert(name.text.clone(), name.span.line);
    builder.config.interfaces.push(Interface {
        name: name.text.clone(),
        role,
        xdp,
        tc,
        attach,
        addrs,
        labels,
        // Without TC programs there is nothing to take the fast path.
        fastpath: fastpath && tc,
        span: name.span,
    });
}

/// Why `name` cannot be a Linux interface name (the kernel's `dev_valid_name` rules, plus '%'
/// which the kernel expands as a name template, so no existing interface has it).
pub(crate) fn check_ifname(name: &str) -> Result<(), String> {
    /// IFNAMSIZ (16) minus the terminating NUL.
    const MAX_BYTES: usize = 15;
    if name.is_empty() {
        return Err("it is empty".to_owned());
    }
    if name.len() > MAX_BYTES {
        return Err(format!(
            "it is {} bytes long, the limit is {MAX_BYTES} (IFNAMSIZ 16 with the NUL)",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("'{name}' is reserved"));
    }
    for b in name.bytes() {
        let why = match b {
            b'/' => "it contains '/'",
            b':' => "it contains ':' (reserved for address labels)",
            b'%' => "it contains '%' (the kernel treats it as a name template)",
            0 => "it contains a NUL byte",
            // The kernel's isspace() (ASCII only: on 6.18 a name with byte 0xA0 is accepted).
            b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' => "it contains whitespace",
            _ => continue,
        };
        return Err(why.to_owned());
    }
    Ok(())
}

fn cgroup(statement: &Statement, builder: &mut Builder, sink: &mut Sink<'_>) {
    let Some(path) = first_arg(statement) else {
        return;
    };
    let attach = choice(
        statement,
        sink,
        "attach",
        &[("auto", AttachPolicy::Auto), ("link", AttachPolicy::Link)],
        AttachPolicy::Auto,
    );
    let normalized = match normalize_cgroup_path(&path.text) {
        Ok(normalized) => normalized,
        Err((message, hint)) => {
            sink.error(path.span, message, Some(hint));
            return;
        }
    };
    if let Some(first) = builder.cgroup_lines.get(&normalized) {
        sink.error(
            path.span,
            format!(
                "duplicate cgroup '{}' (first declared on line {first})",
                show(&normalized)
            ),
            Some("'/a/b', 'a/b' and 'a//b/' all name the same cgroup".to_owned()),
        );
        return;
    }
    builder
        .cgroup_lines
        .insert(normalized.clone(), path.span.line);
    builder.config.cgroups.push(CgroupAttach {
        path: normalized,
        attach,
        span: path.span,
    });
}

/// `a/b`, `/a/b`, `a//b/` and `./a/b` all become `a/b` (relative to the cgroup2 mount).
///
/// # Errors
///
/// (message, hint) when the path is empty, names the mount's root, contains a `..` component
/// or a NUL byte.
pub(crate) fn normalize_cgroup_path(raw: &str) -> Result<String, (String, String)> {
    if raw.is_empty() {
        return Err((
            "empty cgroup path".to_owned(),
            "give a path relative to the cgroup2 mount, e.g. weir/demo".to_owned(),
        ));
    }
    if raw.contains('\0') {
        return Err((
            format!("cgroup path '{}' contains a NUL byte", show(raw)),
            "remove it".to_owned(),
        ));
    }
    let parts: Vec<&str> = raw
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err((
            format!("cgroup path '{}' contains '..'", show(raw)),
            "the path is relative to the cgroup2 mount and may not leave it".to_owned(),
        ));
    }
    if parts.is_empty() {
        return Err((
            format!(
                "cgroup path '{}' names the root of the cgroup2 mount",
                show(raw)
            ),
            "name a cgroup below the root, e.g. weir/demo".to_owned(),
        ));
    }
    Ok(parts.join("/"))
}

fn pin_dir(statement: &Statement, builder: &mut Builder, sink: &mut Sink<'_>) {
    let Some(dir) = first_arg(statement) else {
        return;
    };
    if let Some((_, first)) = &builder.config.pin_dir {
        sink.error(
            dir.span,
            format!("duplicate 'pin-dir' (first set on line {})", first.line),
            Some("give pin-dir once".to_owned()),
        );
        return;
    }
    let problem = if dir.text.contains('\0') {
        Some(format!("pin-dir '{}' contains a NUL byte", show(&dir.text)))
    } else if !dir.text.starts_with('/') {
        Some(format!(
            "pin-dir must be an absolute path, got '{}'",
            show(&dir.text)
        ))
    } else {
        None
    };
    if let Some(message) = problem {
        sink.error(
            dir.span,
            message,
            Some("pins live on a bpffs mount, e.g. pin-dir /sys/fs/bpf/weir".to_owned()),
        );
        return;
    }
    builder.config.pin_dir = Some((PathBuf::from(&dir.text), dir.span));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        let mut kws: Vec<&str> = STATEMENTS.iter().map(|s| s.keyword).collect();
        kws.sort_unstable();
        kws.dedup();
        assert_eq!(
            kws.len(),
            STATEMENTS.len(),
            "duplicate keyword in STATEMENTS"
        );
        for spec in STATEMENTS {
            assert!(spec.usage.starts_with(spec.keyword));
            // A family is all one-word or all two-word keywords, so lookups are unambiguous.
            let head = head_of(spec.keyword);
            let two_words = spec.keyword.contains(' ');
            assert!(STATEMENTS
                .iter()
                .filter(|s| head_of(s.keyword) == head)
                .all(|s| s.keyword.contains(' ') == two_words));
        }
        assert_eq!(
            keywords(),
            [
                "interface",
                "cgroup",
                "pin-dir",
                "prefilter",
                "failsafe",
                "service",
                "lb",
                "mesh",
                "conntrack",
                "classifier",
                "ipset",
                "ipset-file",
                "policy",
                "rule"
            ]
        );
    }

    #[test]
    fn interface_names() {
        for ok in [
            "eth0",
            "veth-a.b_c",
            "a",
            "x".repeat(15).as_str(),
            "é",
            "@#\"",
            "a\u{a0}b",
        ] {
            assert_eq!(check_ifname(ok), Ok(()), "{ok:?}");
        }
        for bad in ["", ".", "..", "a/b", "a:0", "a b", "a\tb", "a\0", "eth%d"] {
            assert!(check_ifname(bad).is_err(), "{bad:?}");
        }
        assert!(check_ifname(&"x".repeat(16))
            .unwrap_err()
            .contains("16 bytes"));
        // 8 chars but 16 bytes.
        assert!(check_ifname("éééééééé").is_err());
    }

    #[test]
    fn cgroup_paths() {
        for (raw, want) in [
            ("weir/demo", "weir/demo"),
            ("/weir/demo", "weir/demo"),
            ("//weir//demo/", "weir/demo"),
            ("./weir/./demo", "weir/demo"),
            ("a..b/c", "a..b/c"),
        ] {
            assert_eq!(normalize_cgroup_path(raw).as_deref(), Ok(want), "{raw}");
        }
        for bad in ["", "/", "//", ".", "..", "a/../b", "/..", "a\0"] {
            assert!(normalize_cgroup_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn utf8_position() {
        let bytes = b"interface a\r\ncgroup x\xffy\n";
        let d = utf8_diagnostic("f", bytes, 21);
        assert_eq!(d.span, Span::new(2, 9, 1));
        assert_eq!(d.line_text, "cgroup x\u{fffd}y");
    }
}
