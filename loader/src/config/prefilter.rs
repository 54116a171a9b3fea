//! The `prefilter deny`, `prefilter deny-file`, `prefilter capacity` and `failsafe in`
//! statements, the deny-list file reader, and the whole-file capacity check.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::diag::{show, Diagnostic, Sink, Span};
use super::lexer::{Opt, Word};
use super::model::{Cidr, CidrError, L4Proto, Origin, PortRange, Prefilter};
use super::parse::Builder;
use super::suggest::did_you_mean;
use super::syntax::Statement;

/// What the prefilter statements need to remember between lines.
#[derive(Default)]
pub(crate) struct PrefilterState {
    /// Every network in `Prefilter::deny` (as [`dedup_key`]), for de-duplication.
    seen: HashSet<(u128, u16), KeyedFold>,
    /// IPv4 and IPv6 networks in `Prefilter::deny`.
    v4: usize,
    v6: usize,
    /// After each `prefilter deny` / `deny-file`: the running totals, for the capacity check.
    checkpoints: Vec<Checkpoint>,
    /// Line of the `prefilter capacity` statement.
    capacity_line: Option<u32>,
    /// The first `failsafe in` statement: its line and whether it was `none`.
    failsafe_first: Option<(u32, bool)>,
    /// Every range in `Config::failsafe_in`, for de-duplication.
    failsafe_seen: HashSet<PortRange>,
}

/// A keyed multiply-fold hash for the de-duplication set: SipHash took longer than parsing the
/// address, and a random per-process key keeps a crafted block list from forcing collisions.
#[derive(Clone)]
struct KeyedFold {
    seed: u64,
    multiplier: u64,
}

impl Default for KeyedFold {
    fn default() -> Self {
        let random = RandomState::new();
        Self {
            seed: random.hash_one(0x7765_6972_u64),
            multiplier: random.hash_one(0x6465_6e79_u64) | 1,
        }
    }
}

impl BuildHasher for KeyedFold {
    type Hasher = FoldHasher;

    fn build_hasher(&self) -> FoldHasher {
        FoldHasher {
            state: self.seed,
            multiplier: self.multiplier,
        }
    }
}

struct FoldHasher {
    state: u64,
    multiplier: u64,
}

impl FoldHasher {
    fn mix(&mut self, word: u64) {
        let product = u128::from(self.state ^ word) * u128::from(self.multiplier);
        #[allow(clippy::cast_possible_truncation)] // Folding the halves is the point.
        let folded = (product as u64) ^ ((product >> 64) as u64);
        self.state = folded;
    }
}

impl Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            for (w, b) in word.iter_mut().zip(chunk) {
                *w = *b;
            }
            self.mix(u64::from_le_bytes(word));
        }
    }

    fn write_u16(&mut self, n: u16) {
        self.mix(u64::from(n));
    }

    #[allow(clippy::cast_possible_truncation)] // The two halves.
    fn write_u128(&mut self, n: u128) {
        self.mix(n as u64);
        self.mix((n >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        // One more round so the last word's bits reach the top bits hashbrown uses.
        let product = u128::from(self.state) * u128::from(self.multiplier);
        #[allow(clippy::cast_possible_truncation)]
        let folded = (product as u64) ^ ((product >> 64) as u64);
        folded
    }
}

/// The address bits and (prefix length, family) of `cidr`: cheap to hash.
fn dedup_key(cidr: &Cidr) -> (u128, u16) {
    match cidr.addr {
        IpAddr::V4(a) => (u128::from(u32::from(a)), u16::from(cidr.prefix_len)),
        IpAddr::V6(a) => (u128::from(a), u16::from(cidr.prefix_len) | 0x100),
    }
}

struct Checkpoint {
    span: Span,
    line_text: String,
    v4: usize,
    v6: usize,
}

/// A problem inside one word: char offset and length within the word's text, message, hint.
pub(super) struct Problem {
    pub(super) start: usize,
    pub(super) len: usize,
    pub(super) message: String,
    pub(super) hint: String,
}

/// The span of chars `start..start + len` of `word`'s text; the whole word when it was quoted
/// (then text offsets and source columns differ).
fn sub_span(word: &Word, start: usize, len: usize) -> Span {
    if word.text.chars().count() != word.span.len as usize {
        return word.span;
    }
    let start = u32::try_from(start).unwrap_or(u32::MAX);
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    Span::new(word.span.line, word.span.column.saturating_add(start), len)
}

pub(super) fn report(sink: &mut Sink<'_>, word: &Word, problem: Problem) {
    sink.error(
        sub_span(word, problem.start, problem.len),
        problem.message,
        Some(problem.hint),
    );
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

/// Explains why `text` is not a CIDR.
pub(super) fn cidr_problem(text: &str, error: CidrError) -> Problem {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr_len = chars(addr);
    let prefix_at = addr_len + 1;
    let prefix_len = prefix.map_or(0, chars);
    let family = if addr.contains(':') { "IPv6" } else { "IPv4" };
    match error {
        CidrError::Address => Problem {
            start: 0,
            len: addr_len,
            message: format!("invalid address '{}'", show(addr)),
            hint: address_hint(addr).to_owned(),
        },
        CidrError::MissingPrefix => Problem {
            start: addr_len,
            len: 1,
            message: "missing prefix length after '/'".to_owned(),
            hint: "write e.g. 192.0.2.0/24, or the address alone for a single host".to_owned(),
        },
        CidrError::Prefix => Problem {
            start: prefix_at,
            len: prefix_len,
            message: format!(
                "invalid prefix length '{}'",
                show(prefix.unwrap_or_default())
            ),
            hint: "the prefix length is a number: 0 to 32 for IPv4, 0 to 128 for IPv6".to_owned(),
        },
        CidrError::PrefixRange { len, max } => Problem {
            start: prefix_at,
            len: prefix_len,
            message: format!("prefix length {len} is out of range for {family}"),
            hint: format!("{family} prefix lengths are 0 to {max}"),
        },
        CidrError::HostBits { network } => Problem {
            start: 0,
            len: chars(text),
            message: format!("'{}' has host bits set", show(text)),
            hint: format!("did you mean {network}?"),
        },
    }
}

fn address_hint(addr: &str) -> &'static str {
    if addr.contains(',') {
        "separate networks with spaces, not commas"
    } else if addr.contains('-') {
        "address ranges are not supported: write the range as CIDRs"
    } else if addr.contains('%') {
        "zone ids (%eth0) are not allowed"
    } else if addr.starts_with('[') {
        "write the IPv6 address without brackets"
    } else if addr.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && addr
            .split('.')
            .any(|octet| octet.len() > 1 && octet.starts_with('0'))
    {
        "IPv4 octets may not have leading zeros (some tools read them as octal)"
    } else {
        "write an IPv4 address (192.0.2.1), an IPv6 address (2001:db8::1) or a network \
         (192.0.2.0/24, 2001:db8::/32)"
    }
}

/// Adds `cidr` unless it is already denied (the first origin is kept).
fn add(
    state: &mut PrefilterState,
    prefilter: &mut Prefilter,
    cidr: Cidr,
    origin: impl FnOnce() -> Origin,
) {
    if state.seen.insert(dedup_key(&cidr)) {
        if cidr.is_ipv4() {
            state.v4 += 1;
        } else {
            state.v6 += 1;
        }
        prefilter.deny.push((cidr, origin()));
    }
}

fn checkpoint(state: &mut PrefilterState, span: Span, line_text: &str) {
    state.checkpoints.push(Checkpoint {
        span,
        line_text: line_text.to_owned(),
        v4: state.v4,
        v6: state.v6,
    });
}

/// `prefilter deny CIDR...`
pub(super) fn deny(statement: &Statement, builder: &mut Builder, sink: &mut Sink<'_>) {
    let Builder {
        config,
        source,
        prefilter: state,
        ..
    } = builder;
    let shared: std::sync::Arc<str> = source.as_str().into();
    for word in &statement.args {
        match Cidr::parse(&word.text) {
            Ok(cidr) => add(state, &mut config.prefilter, cidr, || Origin {
                source: shared.clone(),
                line: word.span.line,
                column: word.span.column,
            }),
            Err(e) => report(sink, word, cidr_problem(&word.text, e)),
        }
    }
    checkpoint(state, statement.span, sink.line_text());
}

/// `prefilter deny-file PATH`
pub(super) fn deny_file(statement: &Statement, builder: &mut Builder, sink: &mut Sink<'_>) {
    let Some(path) = statement.args.first() else {
        return;
    };
    builder
        .config
        .prefilter
        .files
        .push((PathBuf::from(&path.text), path.span));
    let Some((bytes, list_source)) = open_list(
        path,
        "deny file",
        "what is denied",
        &builder.source,
        builder.base_dir.as_deref(),
        sink,
    ) else {
        return;
    };
    let shared_source: std::sync::Arc<str> = list_source.as_str().into();
    let note = format!(
        "included by 'prefilter deny-file' at {}:{}:{}",
        builder.source, path.span.line, path.span.column
    );
    let Builder {
        config,
        prefilter: state,
        ..
    } = builder;
    let before = (state.v4, state.v6);
    // At most one entry per line: growing the list and the set step by step costs more than
    // parsing.
    let most = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
    config.prefilter.deny.reserve(most);
    state.seen.reserve(most);
    let mut lines = 0;
    read_list(
        &bytes,
        |cidr, line, column| {
            add(state, &mut config.prefilter, cidr, || Origin {
                source: shared_source.clone(),
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
        "deny file {list_source}: {lines} line(s), {} new IPv4 and {} new IPv6 network(s)",
        state.v4 - before.0,
        state.v6 - before.1
    );
    checkpoint(state, path.span, sink.line_text());
}

/// Checks, resolves and reads the list file a statement names (`what`: "deny file", "ipset
/// file"): a relative path starts at `base_dir` (the config file's directory), or the current
/// directory when the text did not come from a file. Returns the bytes and the resolved path as
/// diagnostics show it; reports a bad path, a file every user may write (`stake` says what such
/// a user could change, e.g. "what is denied") or an unreadable file at `path` and returns
/// `None`.
pub(super) fn open_list(
    path: &Word,
    what: &str,
    stake: &str,
    source: &str,
    base_dir: Option<&Path>,
    sink: &mut Sink<'_>,
) -> Option<(Vec<u8>, String)> {
    let problem = if path.text.is_empty() {
        Some(format!("empty {what} path"))
    } else if path.text.contains('\0') {
        Some(format!(
            "{what} path '{}' contains a NUL byte",
            show(&path.text)
        ))
    } else {
        None
    };
    if let Some(message) = problem {
        sink.error(
            path.span,
            message,
            Some("give the path of a file with one CIDR or address per line".to_owned()),
        );
        return None;
    }
    let resolved = match base_dir {
        Some(dir) => dir.join(&path.text),
        None => PathBuf::from(&path.text),
    };
    let list_source = resolved.display().to_string();
    if list_source == source {
        sink.error(
            path.span,
            format!("{what} '{}' is this config file", show(&list_source)),
            Some("name a separate file with one CIDR or address per line".to_owned()),
        );
        return None;
    }
    if let Some(mode) = super::parse::world_writable(&resolved) {
        sink.error(
            path.span,
            format!(
                "{what} '{}' is writable by every user (mode {mode:o}): anyone could change {stake}",
                show(&list_source)
            ),
            Some(format!("run `chmod o-w {}`", resolved.display())),
        );
        return None;
    }
    match read_regular_file(&resolved) {
        Ok(bytes) => Some((bytes, list_source)),
        Err(why) => {
            let hint = if Path::new(&path.text).is_absolute() {
                None
            } else {
                Some(match base_dir {
                    Some(dir) if dir.as_os_str().is_empty() => {
                        "a relative path starts at the config file's directory (here the \
                         current directory)"
                            .to_owned()
                    }
                    Some(dir) => format!(
                        "a relative path starts at the config file's directory, {}",
                        dir.display()
                    ),
                    None => "a relative path starts at the current directory (the config \
                             text did not come from a file)"
                        .to_owned(),
                })
            };
            sink.error(
                path.span,
                format!("cannot read {what} '{}': {why}", show(&list_source)),
                hint,
            );
            None
        }
    }
}

/// The largest deny-list file we read: far more than [`Prefilter::MAX_CAPACITY`] lines need.
const MAX_LIST_BYTES: u64 = 1 << 30;

/// Reads `path` if it is a regular file of sane size: a FIFO or a device (`/dev/zero`) would
/// block or never end, and `/proc/kcore` claims a size no allocation can hold.
fn read_regular_file(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".to_owned());
    }
    if meta.len() > MAX_LIST_BYTES {
        return Err(format!(
            "it is {} bytes long, the limit is {MAX_LIST_BYTES}",
            meta.len()
        ));
    }
    std::fs::read(path).map_err(|e| e.to_string())
}

const fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | 0x0b | 0x0c)
}

/// Scans a deny-list file: one CIDR or address per line; `#` and `;` start a comment; blank
/// lines and surrounding whitespace are ignored; `\n` or `\r\n` line ends; a UTF-8 byte-order
/// mark is skipped. Comments may hold any bytes (published lists are not always UTF-8).
///
/// Calls `entry(cidr, line, column)` for each entry and `error(span, message, hint, line)` for
/// each bad line; stops when `error` returns false. `lines` receives the number of lines read.
/// Works on the bytes in place: no allocation per line.
pub(super) fn read_list(
    bytes: &[u8],
    mut entry: impl FnMut(Cidr, u32, u32),
    mut error: impl FnMut(Span, String, String, &[u8]) -> bool,
    lines: &mut u32,
) {
    const BOM: &[u8] = "\u{feff}".as_bytes();
    let is_comment = |b: u8| b == b'#' || b == b';';
    let mut line_no: u32 = 0;
    for raw in bytes.split(|&b| b == b'\n') {
        line_no = line_no.saturating_add(1);
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        // The BOM is one char (one column) before the content.
        let (content, skipped_chars) = match line.strip_prefix(BOM) {
            Some(rest) if line_no == 1 => (rest, 1),
            _ => (line, 0),
        };
        let Some(start) = content.iter().position(|&b| !is_blank(b)) else {
            continue;
        };
        let rest = content.get(start..).unwrap_or_default();
        if rest.first().is_some_and(|&b| is_comment(b)) {
            continue;
        }
        let len = rest
            .iter()
            .position(|&b| is_blank(b) || is_comment(b))
            .unwrap_or(rest.len());
        let word = rest.get(..len).unwrap_or_default();
        // Everything before `start` is ASCII, so bytes are columns.
        let column = u32::try_from(start + skipped_chars + 1).unwrap_or(u32::MAX);
        let span_in = |problem: &Problem| {
            Span::new(
                line_no,
                column.saturating_add(u32::try_from(problem.start).unwrap_or(u32::MAX)),
                u32::try_from(problem.len).unwrap_or(u32::MAX),
            )
        };
        match Cidr::parse_bytes(word) {
            Ok(cidr) => entry(cidr, line_no, column),
            Err(e) => {
                let problem = cidr_problem(&String::from_utf8_lossy(word), e);
                if !error(span_in(&problem), problem.message, problem.hint, line) {
                    break;
                }
            }
        }
        // Only blanks and a comment may follow.
        let after = rest.get(len..).unwrap_or_default();
        let skip = after.iter().take_while(|&&b| is_blank(b)).count();
        let tail = after.get(skip..).unwrap_or_default();
        if tail.first().is_some_and(|&b| !is_comment(b)) {
            let end = tail
                .iter()
                .position(|&b| is_comment(b))
                .unwrap_or(tail.len());
            let extra = tail.get(..end).unwrap_or_default();
            let trimmed = extra.len() - extra.iter().rev().take_while(|&&b| is_blank(b)).count();
            let extra = String::from_utf8_lossy(extra.get(..trimmed).unwrap_or_default());
            let problem = Problem {
                start: chars(&String::from_utf8_lossy(word)) + skip,
                len: chars(&extra),
                message: format!("unexpected text after the address: '{}'", show(&extra)),
                hint: "one CIDR or address per line; comments start with '#' or ';'".to_owned(),
            };
            if !error(span_in(&problem), problem.message, problem.hint, line) {
                break;
            }
        }
    }
    *lines = line_no;
}

/// `prefilter capacity [v4=N] [v6=N] [v4-chunks=N]`
pub(super) fn capacity(statement: &Statement, builder: &mut Builder, sink: &mut Sink<'_>) {
    let prefilter = &mut builder.config.prefilter;
    capacity_statement(
        statement,
        sink,
        &mut builder.prefilter.capacity_line,
        &mut [
            (
                "v4",
                &mut prefilter.capacity_v4,
                Prefilter::DEFAULT_CAPACITY_V4,
            ),
            (
                "v6",
                &mut prefilter.capacity_v6,
                Prefilter::DEFAULT_CAPACITY_V6,
            ),
            (
                "v4-chunks",
                &mut prefilter.chunks_v4,
                Prefilter::DEFAULT_CHUNKS_V4,
            ),
        ],
    );
}

/// A `… capacity NAME=N…` statement (`prefilter capacity`, `lb capacity`): given once
/// (`first_line` remembers where), with at least one of `fields` (option, value set, default).
pub(super) fn capacity_statement(
    statement: &Statement,
    sink: &mut Sink<'_>,
    first_line: &mut Option<u32>,
    fields: &mut [(&str, &mut u32, u32)],
) {
    let keyword = statement.keyword.span;
    let name = &statement.keyword.text;
    let names: Vec<String> = fields.iter().map(|(o, _, _)| format!("{o}=")).collect();
    if let Some(first) = *first_line {
        sink.error(
            keyword,
            format!("duplicate '{name}' (first set on line {first})"),
            Some(format!("set {} in one statement", names.join(", "))),
        );
        return;
    }
    *first_line = Some(keyword.line);
    // Unknown options are reported already; this is for a statement without any.
    if statement.options.is_empty() {
        let mut needs: Vec<String> = fields.iter().map(|(o, _, _)| format!("{o}=N")).collect();
        let last = needs.pop().unwrap_or_default();
        let needs = if needs.is_empty() {
            last
        } else {
            format!("{} or {last}", needs.join(", "))
        };
        let defaults: Vec<String> = fields.iter().map(|(o, _, d)| format!("{o}={d}")).collect();
        sink.error(
            keyword,
            format!("'{name}' needs {needs}"),
            Some(format!("the defaults are {}", defaults.join(" "))),
        );
        return;
    }
    for (option, value, _) in fields.iter_mut() {
        if let Some(n) = statement
            .option(option)
            .and_then(|o| capacity_value(o, sink))
        {
            **value = n;
        }
    }
}

pub(super) fn capacity_value(opt: &Opt, sink: &mut Sink<'_>) -> Option<u32> {
    let (key, value) = (&opt.key.text, &opt.value);
    let range = format!("a number of entries from 1 to {}", Prefilter::MAX_CAPACITY);
    let message = if value.text.is_empty() {
        format!("option '{key}' needs a value")
    } else if !value.text.bytes().all(|b| b.is_ascii_digit()) {
        format!("invalid capacity '{}' for '{key}'", show(&value.text))
    } else {
        let n = value.text.bytes().fold(0u32, |n, b| {
            n.saturating_mul(10).saturating_add(u32::from(b - b'0'))
        });
        if (1..=Prefilter::MAX_CAPACITY).contains(&n) {
            return Some(n);
        }
        format!("capacity {} for '{key}' is out of range", show(&value.text))
    };
    sink.error(value.span, message, Some(range));
    None
}

/// `failsafe in SPEC...` / `failsafe in none`
pub(super) fn failsafe_in(statement: &Statement, builder: &mut Builder, sink: &mut Sink<'_>) {
    let line = statement.keyword.span.line;
    let state = &mut builder.prefilter;
    let conflict_hint = "'failsafe in none' turns every failsafe port off: remove it, or the \
                         statements that list ports";
    if let Some(none) = statement.args.iter().find(|w| w.text == "none") {
        if statement.args.len() > 1 {
            sink.error(
                none.span,
                "'none' cannot be combined with failsafe ports".to_owned(),
                Some(
                    "write 'failsafe in none' on a line of its own, or list ports only".to_owned(),
                ),
            );
            return;
        }
        match state.failsafe_first {
            Some((first, true)) => sink.error(
                none.span,
                format!("duplicate 'failsafe in none' (first on line {first})"),
                Some("give it once".to_owned()),
            ),
            Some((first, false)) => sink.error(
                none.span,
                format!(
                    "'failsafe in none' conflicts with the failsafe ports given on line {first}"
                ),
                Some(conflict_hint.to_owned()),
            ),
            None => {
                state.failsafe_first = Some((line, true));
                builder.config.failsafe_in.clear();
            }
        }
        return;
    }
    match state.failsafe_first {
        Some((first, true)) => {
            sink.error(
                statement.keyword.span,
                format!("failsafe ports conflict with 'failsafe in none' on line {first}"),
                Some(conflict_hint.to_owned()),
            );
            return;
        }
        Some((_, false)) => {}
        None => {
            // The first statement replaces the default set.
            state.failsafe_first = Some((line, false));
            builder.config.failsafe_in.clear();
        }
    }
    for word in &statement.args {
        match parse_port_range(&word.text) {
            Ok(range) => {
                if state.failsafe_seen.insert(range) {
                    builder.config.failsafe_in.push(range);
                }
            }
            Err(problem) => report(sink, word, problem),
        }
    }
}

const PROTOCOLS: &[(&str, L4Proto)] = &[
    ("tcp", L4Proto::Tcp),
    ("udp", L4Proto::Udp),
    ("sctp", L4Proto::Sctp),
];

/// `PROTO/PORT` or `PROTO/LOW-HIGH`.
fn parse_port_range(text: &str) -> Result<PortRange, Problem> {
    let usage = "write PROTO/PORT or PROTO/LOW-HIGH, e.g. tcp/22 or udp/67-68 (PROTO is tcp, \
                 udp or sctp), or 'none' alone";
    let names: Vec<&str> = PROTOCOLS.iter().map(|(n, _)| *n).collect();
    let Some((proto_text, ports)) = text.split_once('/') else {
        let (message, hint) = if names.contains(&text) {
            (
                format!("'{text}' needs a port"),
                format!("write {text}/PORT or {text}/LOW-HIGH"),
            )
        } else if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            (
                format!("port '{text}' needs a protocol"),
                format!("write tcp/{text}, udp/{text} or sctp/{text}"),
            )
        } else {
            (
                format!("invalid failsafe port '{}'", show(text)),
                usage.to_owned(),
            )
        };
        return Err(Problem {
            start: 0,
            len: chars(text),
            message,
            hint,
        });
    };
    let Some(&(_, proto)) = PROTOCOLS.iter().find(|(n, _)| *n == proto_text) else {
        let message = if proto_text.is_empty() {
            "missing protocol before '/'".to_owned()
        } else {
            format!("unknown protocol '{}'", show(proto_text))
        };
        return Err(Problem {
            start: 0,
            len: chars(proto_text),
            message,
            hint: format!(
                "valid protocols are {}{}",
                names.join(", "),
                did_you_mean(proto_text, &names)
            ),
        });
    };
    let ports_at = chars(proto_text) + 1;
    let (low_text, high_text) = match ports.split_once('-') {
        Some((l, h)) => (l, Some(h)),
        None => (ports, None),
    };
    let low = port(low_text, ports_at)?;
    let high = match high_text {
        Some(h) => port(h, ports_at + chars(low_text) + 1)?,
        None => low,
    };
    if low > high {
        return Err(Problem {
            start: ports_at,
            len: chars(ports),
            message: format!("port range {low}-{high} is reversed"),
            hint: format!("write {proto_text}/{high}-{low}"),
        });
    }
    Ok(PortRange { proto, low, high })
}

/// One port number 1..=65535; `at` is its char offset in the word.
fn port(text: &str, at: usize) -> Result<u16, Problem> {
    let hint = "ports are numbers from 1 to 65535".to_owned();
    let message = if text.is_empty() {
        "missing port number".to_owned()
    } else if !text.bytes().all(|b| b.is_ascii_digit()) {
        format!("invalid port '{}'", show(text))
    } else {
        let n = text.bytes().fold(0u32, |n, b| {
            n.saturating_mul(10).saturating_add(u32::from(b - b'0'))
        });
        match u16::try_from(n) {
            Ok(0) => "port 0 is not a valid port".to_owned(),
            Ok(p) => return Ok(p),
            Err(_) => format!("port {} is out of range", show(text)),
        }
    };
    Err(Problem {
        start: at,
        len: chars(text).max(usize::from(text.is_empty())),
        message,
        hint,
    })
}

/// Whole-file checks after the last line: each deny list fits its map.
pub(super) fn finish(builder: &mut Builder, sink: &mut Sink<'_>) {
    let state = &builder.prefilter;
    let prefilter = &builder.config.prefilter;
    /// Picks one family's running total from a checkpoint.
    type Count = fn(&Checkpoint) -> usize;
    let families: [(&str, &str, usize, u32, Count); 2] = [
        ("IPv4", "v4", state.v4, prefilter.capacity_v4, |c| c.v4),
        ("IPv6", "v6", state.v6, prefilter.capacity_v6, |c| c.v6),
    ];
    for (family, key, total, capacity, count) in families {
        if total <= capacity as usize {
            continue;
        }
        let Some(at) = state
            .checkpoints
            .iter()
            .find(|c| count(c) > capacity as usize)
        else {
            continue;
        };
        let set_where = state
            .capacity_line
            .map_or_else(|| "the default".to_owned(), |l| format!("set on line {l}"));
        let hint = if total > Prefilter::MAX_CAPACITY as usize {
            format!(
                "at most {} networks fit; merge the list into shorter prefixes",
                Prefilter::MAX_CAPACITY
            )
        } else {
            let suggest = u32::try_from(total)
                .unwrap_or(u32::MAX)
                .checked_next_power_of_two()
                .unwrap_or(u32::MAX)
                .min(Prefilter::MAX_CAPACITY);
            format!("raise it, e.g. 'prefilter capacity {key}={suggest}'")
        };
        sink.error_elsewhere(Diagnostic {
            source: builder.source.clone(),
            span: at.span,
            message: format!(
                "the deny list exceeds the {family} capacity ({capacity}, {set_where}): it holds \
                 {} {family} networks here and {total} in all",
                count(at)
            ),
            hint: Some(hint),
            note: None,
            line_text: at.line_text.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (cidr, line, column) of the entries and (span, message) of the errors.
    type Scanned = (Vec<(String, u32, u32)>, Vec<(Span, String)>);

    fn scan(text: &[u8]) -> Scanned {
        let mut entries = Vec::new();
        let mut errors = Vec::new();
        let mut lines = 0;
        read_list(
            text,
            |c, l, col| entries.push((c.to_string(), l, col)),
            |span, message, _, _| {
                errors.push((span, message));
                true
            },
            &mut lines,
        );
        (entries, errors)
    }

    #[test]
    fn list_lines_comments_and_whitespace() {
        let (entries, errors) = scan(
            "\u{feff}1.2.3.0/24 ; SBL123\r\n  # full-line comment\n\t2001:db8::/32#x\n\n;\n\
             192.0.2.1\u{b}\r\n"
                .as_bytes(),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            entries,
            vec![
                ("1.2.3.0/24".into(), 1, 2),
                ("2001:db8::/32".into(), 3, 2),
                ("192.0.2.1/32".into(), 6, 1)
            ]
        );
    }

    #[test]
    fn list_errors_point_into_the_line() {
        let (_, errors) = scan(b"  10.1.2.3/8\n1.2.3.4/33\n1.2.3.4 junk ; c\nx\xff");
        let got: Vec<_> = errors
            .iter()
            .map(|(s, m)| (s.line, s.column, s.len, m.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 3, 10, "'10.1.2.3/8' has host bits set"),
                (2, 9, 2, "prefix length 33 is out of range for IPv4"),
                (3, 9, 4, "unexpected text after the address: 'junk'"),
                (4, 1, 2, "invalid address 'x\u{fffd}'"),
            ]
        );
    }

    #[test]
    fn list_comments_may_be_any_bytes() {
        let mut n = 0;
        let mut lines = 0;
        read_list(
            b"10.0.0.0/8 # caf\xe9\n",
            |_, _, _| n += 1,
            |_, _, _, _| panic!("no error expected"),
            &mut lines,
        );
        assert_eq!((n, lines), (1, 2));
    }

    #[test]
    fn port_ranges() {
        let ok = |t: &str| parse_port_range(t).map_err(|p| p.message).unwrap();
        assert_eq!(ok("tcp/22").to_string(), "tcp/22");
        assert_eq!(ok("udp/67-68").to_string(), "udp/67-68");
        assert_eq!(ok("sctp/1-65535").to_string(), "sctp/1-65535");
        assert_eq!(ok("tcp/5-5").to_string(), "tcp/5");
        for (bad, start, len, message) in [
            ("tcp/0", 4, 1, "port 0 is not a valid port"),
            ("tcp/65536", 4, 5, "port 65536 is out of range"),
            ("tcp/2-1", 4, 3, "port range 2-1 is reversed"),
            ("tcp/", 4, 1, "missing port number"),
            ("tcp/1-", 6, 1, "missing port number"),
            ("tcp/x", 4, 1, "invalid port 'x'"),
            ("tcp/-5", 4, 1, "missing port number"),
            ("tcp/1-2-3", 6, 3, "invalid port '2-3'"),
            ("TCP/22", 0, 3, "unknown protocol 'TCP'"),
            ("/22", 0, 0, "missing protocol before '/'"),
            ("22", 0, 2, "port '22' needs a protocol"),
            ("tcp", 0, 3, "'tcp' needs a port"),
            ("ssh", 0, 3, "invalid failsafe port 'ssh'"),
        ] {
            let p = parse_port_range(bad).err().unwrap();
            assert_eq!((p.start, p.len, p.message.as_str()), (start, len, message));
        }
        let p = parse_port_range("TCP/22").err().unwrap();
        assert_eq!(
            p.hint,
            "valid protocols are tcp, udp, sctp (did you mean 'tcp'?)"
        );
    }
}
