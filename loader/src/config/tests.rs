//! End-to-end tests of the config language: text in, `Config` or diagnostics out.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

/// (line, column, len, message) of every diagnostic.
fn errors(text: &str) -> Vec<(u32, u32, u32, String)> {
    parse("t.conf", text)
        .expect_err("expected errors")
        .diagnostics
        .into_iter()
        .map(|d| (d.span.line, d.span.column, d.span.len, d.message))
        .collect()
}

/// The single diagnostic `text` produces.
fn one_error(text: &str) -> Diagnostic {
    let mut all = parse("t.conf", text)
        .expect_err("expected errors")
        .diagnostics;
    assert_eq!(all.len(), 1, "{all:#?}");
    all.remove(0)
}

fn at(d: &Diagnostic) -> (u32, u32, u32) {
    (d.span.line, d.span.column, d.span.len)
}

fn ok(text: &str) -> Config {
    match parse("t.conf", text) {
        Ok(c) => c,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

fn hint(d: &Diagnostic) -> &str {
    d.hint.as_deref().unwrap_or("")
}

#[test]
fn empty_blank_and_comment_only() {
    for text in [
        "",
        "\n\n",
        "   \t \n# just a comment\n   # indented\r\n",
        "\u{feff}# bom",
    ] {
        let c = ok(text);
        assert!(c.interfaces.is_empty() && c.cgroups.is_empty() && c.pin_dir.is_none());
        assert_eq!(c.source, "t.conf");
        assert_eq!(c.prefilter, Prefilter::default());
        assert_eq!(c.failsafe_in, DEFAULT_FAILSAFE_IN);
        assert!(c.eq_ignoring_spans(&Config::default()));
    }
}

#[test]
fn interface_defaults() {
    let c = ok("interface veth0");
    assert_eq!(
        c.interfaces,
        vec![Interface {
            name: "veth0".into(),
            role: Role::Host,
            xdp: XdpMode::Native,
            tc: true,
            attach: AttachPolicy::Auto,
            addrs: Vec::new(),
            labels: Vec::new(),
            fastpath: true,
            span: Span::new(1, 11, 5),
        }]
    );
}

#[test]
fn interface_fastpath() {
    assert!(ok("interface veth0 role=workload").interfaces[0].fastpath);
    assert!(!ok("interface veth0 fastpath=off").interfaces[0].fastpath);
    // tc=off leaves nothing to run the fast path: off, and asking for it is an error.
    assert!(!ok("interface veth0 tc=off").interfaces[0].fastpath);
    let d = one_error("interface veth0 tc=off fastpath=on");
    assert_eq!(at(&d), (1, 24, 11));
    assert!(d.message.contains("tc=off"), "{}", d.message);
    assert!(hint(&d).contains("set tc=on"), "{}", hint(&d));
    let d = one_error("interface veth0 fastpath=maybe");
    assert!(d.message.contains("fastpath"), "{}", d.message);
}

#[test]
fn interface_all_options_any_order() {
    let c = ok("\n  interface  attach=legacy eth1 tc=off xdp=generic role=workload # c\n");
    let i = &c.interfaces[0];
    assert_eq!(i.name, "eth1");
    assert_eq!(i.span, Span::new(2, 28, 4));
    assert_eq!(
        (i.role, i.xdp, i.tc, i.attach),
        (
            Role::Workload,
            XdpMode::Generic,
            false,
            AttachPolicy::Legacy
        )
    );
    let c = ok("interface a xdp=off attach=link tc=on");
    assert_eq!(
        (
            c.interfaces[0].xdp,
            c.interfaces[0].attach,
            c.interfaces[0].tc
        ),
        (XdpMode::Off, AttachPolicy::Link, true)
    );
}

#[test]
fn cgroup_and_pin_dir() {
    let c = ok("cgroup weir/demo\ncgroup /weir/other attach=link\npin-dir /sys/fs/bpf/weir\n");
    assert_eq!(c.cgroups.len(), 2);
    assert_eq!(c.cgroups[0].path, "weir/demo");
    assert_eq!(c.cgroups[0].attach, AttachPolicy::Auto);
    assert_eq!(c.cgroups[0].span, Span::new(1, 8, 9));
    assert_eq!(c.cgroups[1].path, "weir/other");
    assert_eq!(c.cgroups[1].attach, AttachPolicy::Link);
    assert_eq!(
        c.pin_dir,
        Some((PathBuf::from("/sys/fs/bpf/weir"), Span::new(3, 9, 16)))
    );
}

#[test]
fn quoting_and_comments() {
    let c = ok(concat!(
        "interface \"ve#th0\" # the name holds a '#'\n",
        "cgroup \"my group/with \\\"quotes\\\" and \\\\\" attach=\"link\"\n",
        "pin-dir \"/sys/fs/bpf/a b\"#no space before the comment\n",
        "\"interface\" quoted-keyword\n",
    ));
    assert_eq!(c.interfaces[0].name, "ve#th0");
    assert_eq!(c.interfaces[0].span, Span::new(1, 11, 8));
    assert_eq!(c.cgroups[0].path, "my group/with \"quotes\" and \\");
    assert_eq!(c.cgroups[0].attach, AttachPolicy::Link);
    assert_eq!(c.pin_dir.unwrap().0, PathBuf::from("/sys/fs/bpf/a b"));
    assert_eq!(c.interfaces[1].name, "quoted-keyword");
}

#[test]
fn crlf_and_tabs() {
    let c = ok("interface a\r\n\tinterface\tb\txdp=off\r\n");
    assert_eq!(c.interfaces[1].span, Span::new(2, 12, 1));
    let d = one_error("interface a\r\ninterface b xdp=nativ\r\n");
    assert_eq!(at(&d), (2, 17, 5));
    assert_eq!(d.line_text, "interface b xdp=nativ");
    // A lone CR inside a line separates words like any whitespace.
    assert_eq!(ok("interface\ra").interfaces[0].name, "a");
}

#[test]
fn columns_count_chars_not_bytes() {
    let d = one_error("cgroup é/ü attach=lenk");
    assert_eq!(at(&d), (1, 19, 4));
}

#[test]
fn unknown_statement_with_suggestion() {
    let d = one_error("interface a\ninterfce b");
    assert_eq!(at(&d), (2, 1, 8));
    assert_eq!(d.message, "unknown statement 'interfce'");
    assert_eq!(
        hint(&d),
        "valid statements are interface, cgroup, pin-dir, prefilter, failsafe, service, lb, mesh, conntrack, classifier, \
         ipset, ipset-file, policy, rule (did you mean 'interface'?)"
    );
    assert!(hint(&one_error("pindir /x")).ends_with("(did you mean 'pin-dir'?)"));
}

#[test]
fn unknown_statement_without_suggestion() {
    let d = one_error("   route 10.0.0.0/8");
    assert_eq!(at(&d), (1, 4, 5));
    assert_eq!(
        hint(&d),
        "valid statements are interface, cgroup, pin-dir, prefilter, failsafe, service, lb, mesh, conntrack, classifier, \
         ipset, ipset-file, policy, rule"
    );
}

#[test]
fn statement_starting_with_an_option() {
    let d = one_error("role=host eth0");
    assert_eq!(at(&d), (1, 1, 9));
    assert_eq!(
        d.message,
        "expected a statement keyword, found option 'role=host'"
    );
}

#[test]
fn missing_positional() {
    for (text, col, msg) in [
        ("interface", 10, "'interface' needs an interface name"),
        (
            "interface role=host",
            10,
            "'interface' needs an interface name",
        ),
        (
            "cgroup  # none",
            7,
            "'cgroup' needs a cgroup path (relative to the cgroup2 mount)",
        ),
        ("pin-dir", 8, "'pin-dir' needs an absolute directory path"),
    ] {
        let d = one_error(text);
        assert_eq!((at(&d), d.message.as_str()), ((1, col, 1), msg), "{text}");
        assert!(hint(&d).starts_with("usage: "), "{text}");
    }
}

#[test]
fn extra_positional() {
    let d = one_error("interface a b");
    assert_eq!(at(&d), (1, 13, 1));
    assert_eq!(
        d.message,
        "unexpected argument 'b': 'interface' takes 1 argument"
    );
    // `xdp native` instead of `xdp=native`: two extras, the first with a key=value hint.
    let all = parse("t", "interface a xdp native")
        .unwrap_err()
        .diagnostics;
    assert_eq!(all.len(), 2);
    assert_eq!((at(&all[0]), at(&all[1])), ((1, 13, 3), (1, 17, 6)));
    assert_eq!(
        hint(&all[0]),
        "options are written key=value: did you mean 'xdp=…'?"
    );
}

#[test]
fn unknown_option_matches_the_documented_report() {
    let text = "# weir\n\ninterface veth0 xpd=native\n";
    let err = parse("weir.conf", text).unwrap_err();
    assert_eq!(
        err.to_string(),
        "weir.conf:3:17: error: unknown option 'xpd' for 'interface'\n\
         \x20 interface veth0 xpd=native\n\
         \x20                 ^^^\n\
         \x20 hint: valid options are role, xdp, tc, attach, addrs, labels, fastpath (did you mean 'xdp'?)"
    );
}

#[test]
fn unknown_option_without_suggestion_and_on_optionless_statement() {
    let d = one_error("interface a color=red");
    assert_eq!(at(&d), (1, 13, 5));
    assert_eq!(
        hint(&d),
        "valid options are role, xdp, tc, attach, addrs, labels, fastpath"
    );
    let d = one_error("pin-dir /x mode=0700");
    assert_eq!(at(&d), (1, 12, 4));
    assert_eq!(d.message, "unknown option 'mode' for 'pin-dir'");
    assert_eq!(hint(&d), "'pin-dir' takes no options");
}

#[test]
fn duplicate_option() {
    let d = one_error("interface a xdp=off xdp=native");
    assert_eq!(at(&d), (1, 21, 3));
    assert_eq!(
        d.message,
        "duplicate option 'xdp' (first given at column 13)"
    );
    // The first occurrence is the one whose value counts (and is checked); reports come in
    // column order.
    let all = parse("t", "cgroup a attach=bad attach=link")
        .unwrap_err()
        .diagnostics;
    assert_eq!((at(&all[0]), at(&all[1])), ((1, 17, 3), (1, 21, 6)));
    assert_eq!(all[0].message, "invalid value 'bad' for option 'attach'");
}

#[test]
fn bad_values_list_the_valid_ones() {
    let d = one_error("interface a xdp=nativ");
    assert_eq!(at(&d), (1, 17, 5));
    assert_eq!(d.message, "invalid value 'nativ' for option 'xdp'");
    assert_eq!(
        hint(&d),
        "valid values are off, native, generic (did you mean 'native'?)"
    );
    let d = one_error("interface a role=Host");
    assert_eq!(
        hint(&d),
        "valid values are host, workload (did you mean 'host'?)"
    );
    let d = one_error("interface a tc=yes");
    assert_eq!((at(&d), hint(&d)), ((1, 16, 3), "valid values are on, off"));
    let d = one_error("interface a attach=\"\"");
    assert_eq!(at(&d), (1, 20, 2));
    assert_eq!(d.message, "option 'attach' needs a value");
}

#[test]
fn empty_value() {
    let d = one_error("interface a tc=");
    assert_eq!(at(&d), (1, 16, 0));
    assert_eq!(d.message, "option 'tc' needs a value");
    assert!(d
        .to_string()
        .contains("\n  interface a tc=\n                 ^"));
}

#[test]
fn cgroup_has_no_legacy_attach() {
    let d = one_error("cgroup weir attach=legacy");
    assert_eq!(at(&d), (1, 20, 6));
    assert_eq!(hint(&d), "valid values are auto, link");
}

#[test]
fn unterminated_quote() {
    let d = one_error("interface \"veth0");
    assert_eq!(at(&d), (1, 11, 6));
    assert_eq!(d.message, "unterminated quote");
    // The quote does not continue onto the next line, and the CR is not part of it.
    let all = errors("cgroup \"a\r\ninterface b\r\npin-dir x=\"y\\\"");
    assert_eq!(
        all.iter().map(|e| (e.0, e.1, e.2)).collect::<Vec<_>>(),
        vec![(1, 8, 2), (3, 11, 4)]
    );
}

#[test]
fn bad_escape_and_bad_option_names() {
    let d = one_error(r#"cgroup "a\tb""#);
    assert_eq!(at(&d), (1, 10, 2));
    assert_eq!(d.message, "unknown escape '\\t' in quoted text");
    let d = one_error("interface a =native");
    assert_eq!(
        (at(&d), d.message.as_str()),
        ((1, 13, 1), "missing option name before '='")
    );
    let d = one_error("interface a \"xdp\"=off");
    assert_eq!(
        (at(&d), d.message.as_str()),
        ((1, 13, 5), "option names cannot be quoted")
    );
}

#[test]
fn invalid_interface_names_say_why() {
    for (text, len, why) in [
        ("interface abcdefghijklmnop", 16, "it is 16 bytes long"),
        ("interface a/b", 3, "it contains '/'"),
        ("interface .", 1, "'.' is reserved"),
        ("interface ..", 2, "'..' is reserved"),
        ("interface \"\"", 2, "it is empty"),
        ("interface \"a b\"", 5, "it contains whitespace"),
        ("interface eth0:1", 6, "it contains ':'"),
        ("interface eth%d", 5, "it contains '%'"),
        ("interface a\0b", 3, "it contains a NUL byte"),
    ] {
        let d = one_error(text);
        assert_eq!(at(&d), (1, 11, len), "{text}");
        assert!(d.message.starts_with("invalid interface name '"), "{text}");
        assert!(d.message.contains(why), "{text}: {}", d.message);
    }
}

#[test]
fn duplicate_interface_points_at_the_second() {
    let d = one_error("interface a\n# x\ninterface b\n  interface a xdp=off");
    assert_eq!(at(&d), (4, 13, 1));
    assert_eq!(
        d.message,
        "duplicate interface 'a' (first declared on line 1)"
    );
}

#[test]
fn duplicate_cgroup_after_normalisation_and_duplicate_pin_dir() {
    let d = one_error("cgroup weir/demo\ncgroup /weir//demo/");
    assert_eq!(at(&d), (2, 8, 12));
    assert_eq!(
        d.message,
        "duplicate cgroup 'weir/demo' (first declared on line 1)"
    );
    let d = one_error("pin-dir /a\npin-dir /b");
    assert_eq!(at(&d), (2, 9, 2));
    assert_eq!(d.message, "duplicate 'pin-dir' (first set on line 1)");
}

#[test]
fn relative_pin_dir() {
    let d = one_error("pin-dir sys/fs/bpf/weir");
    assert_eq!(at(&d), (1, 9, 15));
    assert_eq!(
        d.message,
        "pin-dir must be an absolute path, got 'sys/fs/bpf/weir'"
    );
    assert_eq!(one_error("pin-dir \"\"").span, Span::new(1, 9, 2));
}

#[test]
fn bad_cgroup_paths() {
    for (text, span, msg) in [
        ("cgroup \"\"", (1, 8, 2), "empty cgroup path"),
        (
            "cgroup a/../b",
            (1, 8, 6),
            "cgroup path 'a/../b' contains '..'",
        ),
        ("cgroup ..", (1, 8, 2), "cgroup path '..' contains '..'"),
        (
            "cgroup /",
            (1, 8, 1),
            "cgroup path '/' names the root of the cgroup2 mount",
        ),
    ] {
        let d = one_error(text);
        assert_eq!((at(&d), d.message.as_str()), (span, msg), "{text}");
    }
}

#[test]
fn reports_every_error_in_the_file() {
    let text = concat!(
        "interfce a\n",                 // 1: unknown statement
        "interface b xdp=fast tc=no\n", // 2: two bad values
        "interface ok\n",
        "cgroup\n",                     // 4: missing path
        "pin-dir relative\n",           // 5: relative
        "interface ok\n",               // 6: duplicate
        "interface c \"unterminated\n", // 7
    );
    let got: Vec<_> = errors(text).into_iter().map(|e| (e.0, e.1)).collect();
    assert_eq!(
        got,
        vec![(1, 1), (2, 17), (2, 25), (4, 7), (5, 9), (6, 11), (7, 13)]
    );
    let err = parse("t.conf", text).unwrap_err();
    // Display lists them all, one report after the other.
    assert_eq!(err.to_string().matches(": error: ").count(), 7);
}

#[test]
fn nul_and_control_characters_do_not_break_anything() {
    let d = one_error("\0");
    assert_eq!(at(&d), (1, 1, 1));
    assert!(d.message.contains("\\u{0}"));
    assert!(!d.to_string().contains('\0'));
    // The NUL belongs to the word; the '#' right after it still starts a comment.
    let d = one_error("interface a\0# comment");
    assert_eq!(at(&d), (1, 11, 2));
    assert!(d.message.contains("NUL"));
}

#[test]
fn very_long_input_is_bounded() {
    let long = format!("interface {}", "x".repeat(1 << 20));
    assert!(one_error(&long).message.len() < 200);
    let many = "bogus=1 ".repeat(100_000);
    assert_eq!(errors(&many).len(), 1);
    let many = format!("interface a {}", "k=v ".repeat(100_000));
    let all = errors(&many);
    assert_eq!(all.len(), 100);
    assert!(all[99].3.starts_with("too many errors"));
    let lines = "nope\n".repeat(10_000);
    assert_eq!(errors(&lines).len(), 100);
}

const SAMPLE: &str = "\
# weir.conf
pin-dir /sys/fs/bpf/weir

interface eth0                              # uplink, all defaults
interface veth-demo role=workload xdp=generic tc=on attach=legacy
interface lab0 xdp=off attach=link
cgroup weir/demo
cgroup /weir/other attach=link
";

#[test]
fn render_is_canonical() {
    let c = ok(SAMPLE);
    assert_eq!(
        render_config(&c),
        "pin-dir /sys/fs/bpf/weir\n\
         interface eth0 role=host xdp=native tc=on attach=auto\n\
         interface veth-demo role=workload xdp=generic tc=on attach=legacy\n\
         interface lab0 role=host xdp=off tc=on attach=link\n\
         cgroup weir/demo attach=auto\n\
         cgroup weir/other attach=link\n\
         prefilter capacity v4=65536 v6=65536 v4-chunks=65536\n\
         failsafe in tcp/22 udp/68\n"
    );
    assert_eq!(
        render_config(&Config::default()),
        "prefilter capacity v4=65536 v6=65536 v4-chunks=65536\nfailsafe in tcp/22 udp/68\n"
    );
}

#[test]
fn round_trip() {
    for text in [
        SAMPLE,
        "interface \"a#b\"\ninterface \"x=y\"\ninterface \"q\\\"z\"\ninterface é\n",
        "cgroup \"a b/c\\\\d/e#f=g\"\npin-dir \"/x y/\\\"z\"\n",
        "",
    ] {
        let c = ok(text);
        let rendered = render_config(&c);
        let again = ok(&rendered);
        assert!(c.eq_ignoring_spans(&again), "{text:?} -> {rendered:?}");
        assert_eq!(render_config(&again), rendered);
    }
    // eq_ignoring_spans does notice a changed setting.
    let a = ok("interface a");
    assert!(!a.eq_ignoring_spans(&ok("interface a tc=off")));
    assert!(!a.eq_ignoring_spans(&ok("interface a\ncgroup x")));
}

/// A temp file removed on drop; the name is unique per process and call.
struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &[u8]) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "weir-config-test-{}-{}.conf",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn parse_file_reads_and_names_the_file() {
    let file = TempFile::new(SAMPLE.as_bytes());
    let c = parse_file(&file.0).unwrap();
    assert_eq!(c.source, file.0.display().to_string());
    assert_eq!(c.interfaces.len(), 3);
    let file = TempFile::new(b"interface a\ninterface a\n");
    let d = &parse_file(&file.0).unwrap_err().diagnostics[0];
    assert_eq!(d.source, file.0.display().to_string());
    assert_eq!(at(d), (2, 11, 1));
}

#[test]
fn parse_file_io_error_at_0_0() {
    let path = Path::new("/nonexistent/weir-config-test/weir.conf");
    let err = parse_file(path).unwrap_err();
    assert_eq!(err.diagnostics.len(), 1);
    let d = &err.diagnostics[0];
    assert_eq!(d.span, Span::default());
    assert!(d
        .message
        .contains("/nonexistent/weir-config-test/weir.conf"));
    assert!(d.message.contains("os error 2"), "{}", d.message);
    assert_eq!(
        err.to_string(),
        format!(
            "/nonexistent/weir-config-test/weir.conf:0:0: error: {}",
            d.message
        )
    );
}

#[test]
fn parse_file_rejects_invalid_utf8_with_position() {
    let file = TempFile::new(b"# ok\r\ninterface \xc3\x28\n");
    let d = &parse_file(&file.0).unwrap_err().diagnostics[0];
    assert_eq!(at(d), (2, 11, 1));
    assert_eq!(d.message, "config file is not valid UTF-8");
}

/// A small deterministic fuzz: random mixes of meaningful fragments must never panic, errors
/// must point into the text, and every accepted config must survive a render round trip.
#[test]
fn random_inputs_never_panic_and_round_trip() {
    const PIECES: &[&str] = &[
        "interface",
        "cgroup",
        "pin-dir",
        " ",
        " ",
        "\t",
        "\n",
        "\r\n",
        "\r",
        "#",
        "\"",
        "\\",
        "=",
        "role",
        "xdp",
        "tc",
        "attach",
        "host",
        "workload",
        "off",
        "native",
        "generic",
        "on",
        "link",
        "legacy",
        "auto",
        "eth0",
        "a",
        "/",
        "..",
        ".",
        ":",
        "%",
        "\0",
        "é",
        "\u{a0}",
        "\u{feff}",
        "/sys/fs/bpf/w",
        "weir/demo",
        "xpd",
        "\"a b\"",
        "\\\"",
        "\\\\",
        "prefilter",
        "deny",
        "deny-file",
        "capacity",
        "failsafe",
        "in",
        "none",
        "v4",
        "v6",
        "10.0.0.0/8",
        "10.1.2.3/8",
        "192.0.2.1",
        "::1",
        "2001:db8::/32",
        "::ffff:1.2.3.4",
        "/33",
        "tcp/22",
        "udp/67-68",
        "sctp/",
        "0",
        "65536",
        "-",
        "policy",
        "rule",
        "ipset",
        "ipset-file",
        "p",
        "selector=",
        "all()",
        "\"app == 'web' && has(env)\"",
        "has(",
        "'",
        "==",
        "&&",
        "||",
        "!",
        "{",
        "}",
        ",",
        "labels=app:web",
        "addrs=10.0.0.1",
        "ingress",
        "egress",
        "allow",
        "pass",
        "log",
        "audit",
        "order=1",
        "types=egress",
        "proto=tcp",
        "dport=80",
        "remote=",
        "set:",
        "icmp-type=8",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut accepted = 0;
    for _ in 0..20_000 {
        let n = next() % 24;
        let mut text = String::new();
        for _ in 0..n {
            let i = usize::try_from(next() % PIECES.len() as u64).unwrap();
            text.push_str(PIECES[i]);
        }
        let line_count = u32::try_from(text.split('\n').count()).unwrap();
        match parse("f", &text) {
            Ok(c) => {
                accepted += 1;
                let rendered = render_config(&c);
                let again = parse("f", &rendered)
                    .unwrap_or_else(|e| panic!("{text:?} rendered {rendered:?}: {e}"));
                assert!(c.eq_ignoring_spans(&again), "{text:?} -> {rendered:?}");
            }
            Err(e) => {
                assert!(!e.diagnostics.is_empty());
                for d in &e.diagnostics {
                    assert!((1..=line_count).contains(&d.span.line), "{text:?}: {d:?}");
                    assert!(d.span.column >= 1);
                    let _ = d.to_string();
                }
            }
        }
    }
    assert!(accepted > 100, "only {accepted} inputs were accepted");
}

/// The example (with its deny-list file), its canonical form and the error reports in the README
/// stay true.
#[test]
fn readme_example_parses_and_renders_as_documented() {
    let readme = include_str!("../../../README.md");
    let block_after = |marker: &str| {
        let rest = &readme[readme.find(marker).expect(marker) + marker.len()..];
        let rest = &rest[rest.find("```\n").unwrap() + 4..];
        rest[..rest.find("```").unwrap()].to_owned()
    };
    let example = block_after("### Example");
    let drop_list = block_after("with `/etc/weir/drop.txt`:");
    let canonical = block_after("canonical form:");
    let dir = TempDir::new();
    let conf = dir.write("weir.conf", example.as_bytes());
    dir.write("drop.txt", drop_list.as_bytes());
    let c = parse_file(&conf).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(render_config(&c), canonical);
    // 3 inline + 4 from the file, one of which repeats an inline network.
    assert_eq!(c.prefilter.deny.len(), 6);

    let report = block_after("### Error reports");
    let err = parse("weir.conf", "# weir\n\ninterface veth0 xpd=native\n").unwrap_err();
    assert_eq!(format!("{err}\n"), report);

    let report = block_after("reads `203.0.113.9/25`:");
    assert!(drop_list.contains("203.0.113.0/25"));
    dir.write(
        "drop.txt",
        drop_list
            .replace("203.0.113.0/25", "203.0.113.9/25")
            .as_bytes(),
    );
    let err = parse_file(&conf).unwrap_err();
    let shown = err
        .to_string()
        .replace(&format!("{}/", dir.0.display()), "");
    assert_eq!(format!("{shown}\n"), report);
}

/// A directory removed (with its contents) on drop; the name is unique per process and call.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "weir-config-dir-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&path).unwrap();
        Self(path)
    }

    fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cidr(text: &str) -> Cidr {
    Cidr::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// (cidr, origin line, origin column) of every deny entry.
fn denied(c: &Config) -> Vec<(String, u32, u32)> {
    c.prefilter
        .deny
        .iter()
        .map(|(cidr, o)| (cidr.to_string(), o.line, o.column))
        .collect()
}

#[test]
fn cidr_parse_and_display() {
    for (text, shown, v4) in [
        ("10.0.0.0/8", "10.0.0.0/8", true),
        ("192.0.2.1", "192.0.2.1/32", true),
        ("0.0.0.0/0", "0.0.0.0/0", true),
        ("255.255.255.255/32", "255.255.255.255/32", true),
        ("::", "::/128", false),
        ("::/0", "::/0", false),
        ("::1", "::1/128", false),
        ("2001:db8::/32", "2001:db8::/32", false),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1/128", false),
        // IPv4-mapped stays IPv6.
        ("::ffff:1.2.3.4", "::ffff:1.2.3.4/128", false),
        ("::ffff:0.0.0.0/96", "::ffff:0.0.0.0/96", false),
        ("10.0.0.0/008", "10.0.0.0/8", true),
    ] {
        let c = cidr(text);
        assert_eq!((c.to_string().as_str(), c.is_ipv4()), (shown, v4), "{text}");
        assert_eq!(c.network(), c);
        assert_eq!(text.parse::<Cidr>(), Ok(c));
    }
    assert_eq!(
        Cidr::parse("::ffff:1.2.3.4").unwrap().addr,
        "::ffff:1.2.3.4".parse::<std::net::Ipv6Addr>().unwrap()
    );
    for (text, want) in [
        ("", CidrError::Address),
        ("1.2.3", CidrError::Address),
        ("1.2.3.256", CidrError::Address),
        ("010.0.0.1", CidrError::Address),
        (" 1.2.3.4", CidrError::Address),
        ("[::1]", CidrError::Address),
        ("fe80::1%eth0", CidrError::Address),
        ("1.2.3.4/", CidrError::MissingPrefix),
        ("1.2.3.4/x", CidrError::Prefix),
        ("1.2.3.4/+8", CidrError::Prefix),
        ("1.2.3.4/1/2", CidrError::Prefix),
        ("1.2.3.4/33", CidrError::PrefixRange { len: 33, max: 32 }),
        ("::/129", CidrError::PrefixRange { len: 129, max: 128 }),
        (
            "1.2.3.4/99999999999",
            CidrError::PrefixRange {
                len: u32::MAX,
                max: 32,
            },
        ),
        (
            "10.1.2.3/8",
            CidrError::HostBits {
                network: cidr("10.0.0.0/8"),
            },
        ),
        (
            "2001:db8::1/32",
            CidrError::HostBits {
                network: cidr("2001:db8::/32"),
            },
        ),
    ] {
        assert_eq!(Cidr::parse(text), Err(want), "{text:?}");
    }
    // network() clears host bits of a hand-made value and clamps the prefix.
    let hand = Cidr {
        addr: "10.1.2.3".parse().unwrap(),
        prefix_len: 12,
    };
    assert_eq!(hand.network().to_string(), "10.0.0.0/12");
    let hand = Cidr {
        addr: "10.1.2.3".parse().unwrap(),
        prefix_len: 40,
    };
    assert_eq!(hand.network().to_string(), "10.1.2.3/32");
    let hand = Cidr {
        addr: "2001:db8:ffff::1".parse().unwrap(),
        prefix_len: 0,
    };
    assert_eq!(hand.network().to_string(), "::/0");
}

#[test]
fn prefilter_deny_inline_with_origins_and_dedup() {
    let c = ok(
        "prefilter deny 10.0.0.0/8 192.0.2.1 ::1\n  prefilter  deny  2001:db8::/32 10.0.0.0/8\n\
                prefilter deny :: ::ffff:1.2.3.4 # mapped stays v6\n",
    );
    assert_eq!(
        denied(&c),
        vec![
            ("10.0.0.0/8".into(), 1, 16),
            ("192.0.2.1/32".into(), 1, 27),
            ("::1/128".into(), 1, 37),
            ("2001:db8::/32".into(), 2, 20),
            ("::/128".into(), 3, 16),
            ("::ffff:1.2.3.4/128".into(), 3, 19),
        ]
    );
    assert!(c.prefilter.deny.iter().all(|(_, o)| &*o.source == "t.conf"));
    assert_eq!(c.prefilter.deny[0].1.to_string(), "t.conf:1:16");
    assert!(c.prefilter.files.is_empty());
    assert_eq!(
        (c.prefilter.capacity_v4, c.prefilter.capacity_v6),
        (65_536, 65_536)
    );
}

#[test]
fn prefilter_deny_errors() {
    let d = one_error("prefilter deny 10.1.2.3/8");
    assert_eq!(at(&d), (1, 16, 10));
    assert_eq!(d.message, "'10.1.2.3/8' has host bits set");
    assert_eq!(hint(&d), "did you mean 10.0.0.0/8?");
    let d = one_error("prefilter deny 2001:db8::1/32");
    assert_eq!(hint(&d), "did you mean 2001:db8::/32?");
    for (text, span, message) in [
        (
            "prefilter deny 1.2.3.0/33",
            (1, 24, 2),
            "prefix length 33 is out of range for IPv4",
        ),
        (
            "prefilter deny ::/129",
            (1, 19, 3),
            "prefix length 129 is out of range for IPv6",
        ),
        (
            "prefilter deny 1.2.3/24",
            (1, 16, 5),
            "invalid address '1.2.3'",
        ),
        (
            "prefilter deny 1.2.3.0/",
            (1, 23, 1),
            "missing prefix length after '/'",
        ),
        (
            "prefilter deny 1.2.3.0/x8",
            (1, 24, 2),
            "invalid prefix length 'x8'",
        ),
        // Quoted: the whole word is marked (text and source columns differ).
        (
            "prefilter deny \"1.2.3.0/33\"",
            (1, 16, 12),
            "prefix length 33 is out of range for IPv4",
        ),
        (
            "prefilter deny",
            (1, 15, 1),
            "'prefilter deny' needs at least one CIDR or address (e.g. 192.0.2.0/24, \
             2001:db8::/32, 198.51.100.7)",
        ),
    ] {
        let d = one_error(text);
        assert_eq!((at(&d), d.message.as_str()), (span, message), "{text}");
    }
    assert_eq!(
        hint(&one_error("prefilter deny 1.2.3.4,5.6.7.8")),
        "separate networks with spaces, not commas"
    );
    assert_eq!(
        hint(&one_error("prefilter deny 010.0.0.1")),
        "IPv4 octets may not have leading zeros (some tools read them as octal)"
    );
    assert_eq!(
        hint(&one_error("prefilter deny 1.2.3.0/33")),
        "IPv4 prefix lengths are 0 to 32"
    );
    // Every bad word of a statement is reported; options are unknown.
    let got: Vec<_> = errors("prefilter deny x 10.0.0.0/8 10.0.0.1/8 v4=1")
        .into_iter()
        .map(|e| (e.1, e.2, e.3))
        .collect();
    assert_eq!(
        got,
        vec![
            (16, 1, "invalid address 'x'".to_owned()),
            (29, 10, "'10.0.0.1/8' has host bits set".to_owned()),
            (40, 2, "unknown option 'v4' for 'prefilter deny'".to_owned()),
        ]
    );
}

#[test]
fn prefilter_family_errors() {
    let d = one_error("prefilter");
    assert_eq!(at(&d), (1, 10, 1));
    assert_eq!(
        d.message,
        "'prefilter' needs one of: deny, deny-file, capacity"
    );
    assert!(hint(&d).starts_with("usage: prefilter deny CIDR-OR-ADDRESS... | "));
    let d = one_error("prefilter v4=5");
    assert_eq!(at(&d), (1, 10, 1));
    let d = one_error("prefilter  denyfile x");
    assert_eq!(at(&d), (1, 12, 8));
    assert_eq!(d.message, "unknown statement 'prefilter denyfile'");
    assert_eq!(
        hint(&d),
        "valid 'prefilter' statements are prefilter deny, prefilter deny-file, \
         prefilter capacity (did you mean 'deny-file'?)"
    );
    let d = one_error("failsafe tcp/22");
    assert_eq!(at(&d), (1, 10, 6));
    assert_eq!(
        (d.message.as_str(), hint(&d)),
        (
            "unknown statement 'failsafe tcp/22'",
            "valid 'failsafe' statements are failsafe in"
        )
    );
    assert_eq!(
        hint(&one_error("prefiltr deny 1.2.3.4")),
        "valid statements are interface, cgroup, pin-dir, prefilter, failsafe, service, lb, mesh, conntrack, classifier, \
         ipset, ipset-file, policy, rule \
         (did you mean 'prefilter'?)"
    );
    // Extra arguments name the two-word keyword.
    let all = errors("prefilter deny-file /dev/null b");
    assert_eq!((all[1].0, all[1].1, all[1].2), (1, 31, 1));
    assert_eq!(
        all[1].3,
        "unexpected argument 'b': 'prefilter deny-file' takes 1 argument"
    );
}

#[test]
fn prefilter_capacity() {
    let c = ok("prefilter capacity v6=1 v4=16777216");
    assert_eq!(
        (c.prefilter.capacity_v4, c.prefilter.capacity_v6),
        (16_777_216, 1)
    );
    let c = ok("prefilter capacity v6=100");
    assert_eq!(
        (c.prefilter.capacity_v4, c.prefilter.capacity_v6),
        (65_536, 100)
    );
    for (text, span, message) in [
        (
            "prefilter capacity v4=0",
            (1, 23, 1),
            "capacity 0 for 'v4' is out of range",
        ),
        (
            "prefilter capacity v6=16777217",
            (1, 23, 8),
            "capacity 16777217 for 'v6' is out of range",
        ),
        (
            "prefilter capacity v4=99999999999999",
            (1, 23, 14),
            "capacity 99999999999999 for 'v4' is out of range",
        ),
        (
            "prefilter capacity v4=1k",
            (1, 23, 2),
            "invalid capacity '1k' for 'v4'",
        ),
        (
            "prefilter capacity v4=",
            (1, 23, 0),
            "option 'v4' needs a value",
        ),
        (
            "prefilter capacity",
            (1, 1, 18),
            "'prefilter capacity' needs v4=N, v6=N or v4-chunks=N",
        ),
        (
            "prefilter capacity v4=1\nprefilter capacity v6=1",
            (2, 1, 18),
            "duplicate 'prefilter capacity' (first set on line 1)",
        ),
        (
            "prefilter capacity 5 v4=1",
            (1, 20, 1),
            "unexpected argument '5': 'prefilter capacity' takes 0 arguments",
        ),
    ] {
        let d = one_error(text);
        assert_eq!((at(&d), d.message.as_str()), (span, message), "{text}");
    }
    assert_eq!(
        hint(&one_error("prefilter capacity v4=0")),
        "a number of entries from 1 to 16777216"
    );
    assert_eq!(
        hint(&one_error("prefilter capacity v5=1")),
        "valid options are v4, v6, v4-chunks (did you mean 'v4'?)"
    );
}

#[test]
fn deny_list_longer_than_its_capacity() {
    let text = "prefilter deny 10.0.0.0/8 ::1\nprefilter capacity v4=2 v6=5\n\
                prefilter deny 11.0.0.0/8 10.0.0.0/8\nprefilter deny 12.0.0.0/8 13.0.0.0/8\n\
                prefilter deny 14.0.0.0/8\n";
    let d = one_error(text);
    assert_eq!(at(&d), (4, 1, 36));
    assert_eq!(
        d.message,
        "the deny list exceeds the IPv4 capacity (2, set on line 2): it holds 4 IPv4 \
         networks here and 5 in all"
    );
    assert_eq!(hint(&d), "raise it, e.g. 'prefilter capacity v4=8'");
    assert_eq!(d.line_text, "prefilter deny 12.0.0.0/8 13.0.0.0/8");
    // Exactly full is fine.
    ok("prefilter capacity v4=2\nprefilter deny 10.0.0.0/8 11.0.0.0/8 10.0.0.0/8");
    // The whole-file check follows the line errors.
    let all = errors("prefilter capacity v6=1\nprefilter deny ::1 ::2\ninterface\n");
    assert_eq!(
        all.iter().map(|e| (e.0, e.1)).collect::<Vec<_>>(),
        vec![(3, 10), (2, 1)]
    );
    assert!(all[1].3.contains("IPv6 capacity (1, set on line 1)"));
}

#[test]
fn failsafe_default_accumulate_and_none() {
    let c = ok("");
    assert_eq!(
        c.failsafe_in,
        vec![
            PortRange {
                proto: L4Proto::Tcp,
                low: 22,
                high: 22
            },
            PortRange {
                proto: L4Proto::Udp,
                low: 68,
                high: 68
            }
        ]
    );
    let c = ok("failsafe in tcp/2222 udp/67-68\nfailsafe  in sctp/1-65535 tcp/2222");
    let shown: Vec<String> = c.failsafe_in.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["tcp/2222", "udp/67-68", "sctp/1-65535"]);
    assert!(ok("failsafe in none").failsafe_in.is_empty());
    assert!(ok("failsafe in \"none\" # quoted is the same word")
        .failsafe_in
        .is_empty());
}

#[test]
fn failsafe_errors() {
    for (text, span, message) in [
        (
            "failsafe in tcp/0",
            (1, 17, 1),
            "port 0 is not a valid port",
        ),
        (
            "failsafe in udp/70000",
            (1, 17, 5),
            "port 70000 is out of range",
        ),
        (
            "failsafe in tcp/100-10",
            (1, 17, 6),
            "port range 100-10 is reversed",
        ),
        ("failsafe in tpc/22", (1, 13, 3), "unknown protocol 'tpc'"),
        ("failsafe in 22", (1, 13, 2), "port '22' needs a protocol"),
        ("failsafe in tcp", (1, 13, 3), "'tcp' needs a port"),
        ("failsafe in udp/1-", (1, 19, 1), "missing port number"),
        (
            "failsafe in",
            (1, 12, 1),
            "'failsafe in' needs 'none' or at least one PROTO/PORT or PROTO/LOW-HIGH \
             (e.g. tcp/22, udp/67-68)",
        ),
        (
            "failsafe in tcp/22 none",
            (1, 20, 4),
            "'none' cannot be combined with failsafe ports",
        ),
        (
            "failsafe in none\nfailsafe in tcp/22",
            (2, 1, 11),
            "failsafe ports conflict with 'failsafe in none' on line 1",
        ),
        (
            "failsafe in tcp/22\n\nfailsafe in none",
            (3, 13, 4),
            "'failsafe in none' conflicts with the failsafe ports given on line 1",
        ),
        (
            "failsafe in none\nfailsafe in none",
            (2, 13, 4),
            "duplicate 'failsafe in none' (first on line 1)",
        ),
    ] {
        let d = one_error(text);
        assert_eq!((at(&d), d.message.as_str()), (span, message), "{text}");
    }
    assert_eq!(
        hint(&one_error("failsafe in tpc/22")),
        "valid protocols are tcp, udp, sctp (did you mean 'tcp'?)"
    );
    assert_eq!(
        hint(&one_error("failsafe in tcp/100-10")),
        "write tcp/10-100"
    );
    assert_eq!(
        hint(&one_error("failsafe in tcp/0")),
        "ports are numbers from 1 to 65535"
    );
    // All bad specs of a line are reported.
    let got: Vec<_> = errors("failsafe in tcp/0 tcp/22 udp/9-8 ssh")
        .into_iter()
        .map(|e| (e.1, e.2))
        .collect();
    assert_eq!(got, vec![(17, 1), (30, 3), (34, 3)]);
}

#[test]
fn deny_file_relative_to_the_config_with_both_comment_styles_and_crlf() {
    let dir = TempDir::new();
    dir.write(
        "drop.txt",
        b"; Spamhaus-style header\r\n198.51.100.0/24 ; SBL1\r\n\r\n  203.0.113.0/25\t# tab\r\n\
          2001:db8:dead::/48\r\n192.0.2.7\r\n10.0.0.0/8 ; repeated below\r\n10.0.0.0/8\r\n",
    );
    std::fs::create_dir(dir.0.join("lists")).unwrap();
    dir.write("lists/more.txt", b"192.0.2.0/24\n10.0.0.0/8\n");
    let conf = dir.write(
        "weir.conf",
        b"prefilter deny 10.0.0.0/8\r\nprefilter deny-file drop.txt\r\n\
          prefilter deny-file \"lists/more.txt\"\r\n",
    );
    let c = parse_file(&conf).unwrap_or_else(|e| panic!("{e}"));
    let drop = dir.0.join("drop.txt").display().to_string();
    let more = dir.0.join("lists/more.txt").display().to_string();
    let got: Vec<(String, String, u32, u32)> = c
        .prefilter
        .deny
        .iter()
        .map(|(cidr, o)| (cidr.to_string(), o.source.to_string(), o.line, o.column))
        .collect();
    let conf_name = conf.display().to_string();
    assert_eq!(
        got,
        vec![
            ("10.0.0.0/8".into(), conf_name.clone(), 1, 16),
            ("198.51.100.0/24".into(), drop.clone(), 2, 1),
            ("203.0.113.0/25".into(), drop.clone(), 4, 3),
            ("2001:db8:dead::/48".into(), drop.clone(), 5, 1),
            ("192.0.2.7/32".into(), drop, 6, 1),
            ("192.0.2.0/24".into(), more, 1, 1),
        ]
    );
    assert_eq!(
        c.prefilter.files,
        vec![
            (PathBuf::from("drop.txt"), Span::new(2, 21, 8)),
            (PathBuf::from("lists/more.txt"), Span::new(3, 21, 16)),
        ]
    );
    // Rendered as written; parsing the rendering in the same place gives the same settings.
    let rendered = render_config(&c);
    assert!(rendered.contains(
        "prefilter deny 10.0.0.0/8\nprefilter deny-file drop.txt\n\
         prefilter deny-file lists/more.txt\n"
    ));
    let again = parse_file(&dir.write("again.conf", rendered.as_bytes())).unwrap();
    assert!(c.eq_ignoring_spans(&again));
    assert_eq!(render_config(&again), rendered);
    // An absolute path works from anywhere.
    let text = format!(
        "prefilter deny-file {}",
        render::quote(&dir.0.join("lists/more.txt").display().to_string())
    );
    assert_eq!(ok(&text).prefilter.deny.len(), 2);
}

#[test]
fn parse_resolves_deny_files_against_the_current_directory() {
    let dir = TempDir::new();
    dir.write("cwd.txt", b"192.0.2.0/24\n");
    // A relative path from the current directory to the file, without changing directory
    // (tests run in parallel).
    let cwd = std::env::current_dir().unwrap();
    let up = "../".repeat(cwd.components().count() - 1);
    let relative = format!(
        "{up}{}",
        dir.0.join("cwd.txt").strip_prefix("/").unwrap().display()
    );
    let c = ok(&format!("prefilter deny-file {}", render::quote(&relative)));
    assert_eq!(&*c.prefilter.deny[0].1.source, relative.as_str());
    // A missing relative file: the hint says where relative paths start.
    let d = one_error("prefilter deny-file weir-no-such-deny-file.txt");
    assert_eq!(at(&d), (1, 21, 26));
    assert_eq!(
        d.message,
        "cannot read deny file 'weir-no-such-deny-file.txt': No such file or directory \
         (os error 2)"
    );
    assert_eq!(
        hint(&d),
        "a relative path starts at the current directory (the config text did not come from a file)"
    );
}

#[test]
fn deny_file_errors_name_the_list_file() {
    let dir = TempDir::new();
    dir.write(
        "drop.txt",
        b"# list\r\n10.0.0.0/8\r\n  10.1.2.3/8 ; bad\r\n1.2.3.4 junk\r\nfe80::1/129\r\n",
    );
    let conf = dir.write(
        "weir.conf",
        b"interface a b\nprefilter deny-file drop.txt\ncgroup\n",
    );
    let err = parse_file(&conf).unwrap_err();
    let drop = dir.0.join("drop.txt").display().to_string();
    let conf_name = conf.display().to_string();
    let got: Vec<_> = err
        .diagnostics
        .iter()
        .map(|d| (d.source.as_str(), at(d), d.message.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                conf_name.as_str(),
                (1, 13, 1),
                "unexpected argument 'b': 'interface' takes 1 argument"
            ),
            (drop.as_str(), (3, 3, 10), "'10.1.2.3/8' has host bits set"),
            (
                drop.as_str(),
                (4, 9, 4),
                "unexpected text after the address: 'junk'"
            ),
            (
                drop.as_str(),
                (5, 9, 3),
                "prefix length 129 is out of range for IPv6"
            ),
            (
                conf_name.as_str(),
                (3, 7, 1),
                "'cgroup' needs a cgroup path (relative to the cgroup2 mount)"
            ),
        ]
    );
    let d = &err.diagnostics[1];
    assert_eq!(
        d.to_string(),
        format!(
            "{drop}:3:3: error: '10.1.2.3/8' has host bits set\n\
             \x20   10.1.2.3/8 ; bad\n\
             \x20   ^^^^^^^^^^\n\
             \x20 hint: did you mean 10.0.0.0/8?\n\
             \x20 note: included by 'prefilter deny-file' at {conf_name}:2:21"
        )
    );
}

#[test]
fn deny_file_that_cannot_be_read() {
    let dir = TempDir::new();
    let conf = dir.write(
        "weir.conf",
        b"prefilter deny-file missing.txt\nprefilter deny-file .\nprefilter deny-file /dev/zero\n\
          prefilter deny-file \"\"\nprefilter deny-file weir.conf\n",
    );
    let err = parse_file(&conf).unwrap_err();
    let got: Vec<_> = err
        .diagnostics
        .iter()
        .map(|d| (at(d), d.message.clone()))
        .collect();
    let missing = dir.0.join("missing.txt").display().to_string();
    let dot = dir.0.join(".").display().to_string();
    assert_eq!(
        got,
        vec![
            (
                (1, 21, 11),
                format!(
                    "cannot read deny file '{missing}': No such file or directory (os error 2)"
                )
            ),
            (
                (2, 21, 1),
                format!("cannot read deny file '{dot}': not a regular file")
            ),
            (
                (3, 21, 9),
                "cannot read deny file '/dev/zero': not a regular file".to_owned()
            ),
            ((4, 21, 2), "empty deny file path".to_owned()),
            (
                (5, 21, 9),
                format!("deny file '{}' is this config file", conf.display())
            ),
        ]
    );
    assert_eq!(
        hint(&err.diagnostics[0]),
        format!(
            "a relative path starts at the config file's directory, {}",
            dir.0.display()
        )
    );
    assert_eq!(err.diagnostics[2].hint, None);
    // A huge (sparse) file is refused before reading.
    let huge = std::fs::File::create(dir.0.join("huge.txt")).unwrap();
    huge.set_len((1 << 30) + 1).unwrap();
    let d = one_error(&format!(
        "prefilter deny-file {}",
        render::quote(&dir.0.join("huge.txt").display().to_string())
    ));
    assert!(
        d.message
            .ends_with(": it is 1073741825 bytes long, the limit is 1073741824"),
        "{}",
        d.message
    );
}

#[test]
fn deny_file_with_many_errors_is_capped() {
    let dir = TempDir::new();
    dir.write("bad.txt", "x\n".repeat(10_000).as_bytes());
    let conf = dir.write("weir.conf", b"prefilter deny-file bad.txt\ninterface\n");
    let err = parse_file(&conf).unwrap_err();
    assert_eq!(err.diagnostics.len(), 100);
    assert!(err.diagnostics[99].message.starts_with("too many errors"));
}

/// 100,000 lines: v4 and v6, comments, CRLF. Prints the time (`--nocapture`), asserts only the
/// result.
#[test]
fn deny_file_with_100k_lines() {
    let dir = TempDir::new();
    let mut list = String::from("; generated\n");
    for i in 0u32..100_000 {
        match i % 10 {
            0 => list.push_str(&format!("2001:db8:{:x}::/48 ; v6\r\n", i / 10)),
            1 => list.push_str(&format!("# comment {i}\n")),
            _ => list.push_str(&format!(
                "{}.{}.{}.0/24\n",
                10 + (i >> 16),
                (i >> 8) & 0xff,
                i & 0xff
            )),
        }
    }
    dir.write("big.txt", list.as_bytes());
    let conf = dir.write(
        "weir.conf",
        b"prefilter capacity v4=1048576\nprefilter deny-file big.txt\n",
    );
    let started = std::time::Instant::now();
    let c = parse_file(&conf).unwrap_or_else(|e| panic!("{e}"));
    let took = started.elapsed();
    println!(
        "100k-line deny file ({} bytes): {took:?} (this build's profile)",
        list.len()
    );
    let v4 = c.prefilter.deny.iter().filter(|(c, _)| c.is_ipv4()).count();
    assert_eq!((v4, c.prefilter.deny.len() - v4), (80_000, 10_000));
    let last = c.prefilter.deny.last().unwrap();
    assert_eq!(last.0.to_string(), "11.134.159.0/24");
    assert_eq!((last.1.line, last.1.column), (100_001, 1));
}

#[test]
fn prefilter_and_failsafe_round_trip() {
    let text = "failsafe in udp/67-68 tcp/22\nprefilter deny 10.0.0.0/8 ::1 2001:DB8::/32\n\
                prefilter capacity v6=7\nfailsafe in sctp/9\n\
                prefilter deny 1.0.0.0/8 2.0.0.0/8 3.0.0.0/8 4.0.0.0/8 5.0.0.0/8 6.0.0.0/8 \
                7.0.0.0/8 8.0.0.0/8\n";
    let c = ok(text);
    let rendered = render_config(&c);
    assert_eq!(
        rendered,
        "prefilter capacity v4=65536 v6=7 v4-chunks=65536\n\
         prefilter deny 10.0.0.0/8 ::1/128 2001:db8::/32 1.0.0.0/8 2.0.0.0/8 3.0.0.0/8 4.0.0.0/8 \
         5.0.0.0/8\n\
         prefilter deny 6.0.0.0/8 7.0.0.0/8 8.0.0.0/8\n\
         failsafe in udp/67-68 tcp/22 sctp/9\n"
    );
    let again = ok(&rendered);
    assert!(c.eq_ignoring_spans(&again));
    assert_eq!(render_config(&again), rendered);
    let none = ok("failsafe in none");
    assert!(render_config(&none).ends_with("failsafe in none\n"));
    assert!(ok(&render_config(&none)).failsafe_in.is_empty());
    // eq_ignoring_spans notices prefilter and failsafe changes, not the deny order.
    let base = ok("prefilter deny 1.2.3.4 5.6.7.8");
    assert!(base.eq_ignoring_spans(&ok("prefilter deny 5.6.7.8\nprefilter deny 1.2.3.4")));
    assert!(!base.eq_ignoring_spans(&ok("prefilter deny 1.2.3.4")));
    assert!(!base.eq_ignoring_spans(&ok(
        "prefilter deny 1.2.3.4 5.6.7.8\nprefilter capacity v4=9"
    )));
    assert!(!base.eq_ignoring_spans(&ok("prefilter deny 1.2.3.4 5.6.7.8\nfailsafe in tcp/22")));
}

/// The hand-written IPv4 parser accepts exactly what std's does.
#[test]
fn ipv4_parser_matches_std() {
    const OCTETS: &[&str] = &[
        "0", "1", "9", "00", "01", "10", "99", "100", "199", "255", "256", "300", "999", "1000",
        "", "-1", "+1", " 1", "a", "1e", "é", "0x1", ":",
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut pick = move |n: usize| usize::try_from(next() % n as u64).unwrap();
    let mut accepted = 0;
    for _ in 0..100_000 {
        let parts = 3 + pick(3);
        let text = (0..parts)
            .map(|_| {
                let range = if pick(4) == 0 { OCTETS.len() } else { 10 };
                OCTETS[pick(range)]
            })
            .collect::<Vec<_>>()
            .join(".");
        let std = text.parse::<std::net::Ipv4Addr>().ok();
        assert_eq!(model::parse_ipv4(text.as_bytes()), std, "{text:?}");
        accepted += usize::from(std.is_some());
    }
    assert!(accepted > 1000, "{accepted}");
    for text in [
        "1.2.3.4",
        "0.0.0.0",
        "255.255.255.255",
        "1.2.3.04",
        "1.2.3",
        "1.2.3.4.",
    ] {
        let std = text.parse::<std::net::Ipv4Addr>().ok();
        assert_eq!(model::parse_ipv4(text.as_bytes()), std, "{text:?}");
    }
}

#[test]
fn services_parse_with_defaults_and_all_options() {
    let c = ok("cgroup weir/web\n\
                service web 198.51.100.10:80/tcp backends=192.0.2.1:8080@3,192.0.2.2:8080\n\
                service web 198.51.100.10:80/udp backends=none affinity=30 excluded\n\
                service dns6 [2001:db8::53]:53/udp excluded backends=[2001:db8::1]:53@0 affinity=off\n\
                lb exclude /mesh/sidecars weir//other/\n");
    assert_eq!(c.services.len(), 3);
    let web = &c.services[0];
    assert_eq!(web.name, "web");
    assert_eq!(web.vip, "198.51.100.10:80".parse().unwrap());
    assert_eq!(web.proto, L4Proto::Tcp);
    assert_eq!(
        web.backends,
        [
            Backend {
                addr: "192.0.2.1:8080".parse().unwrap(),
                weight: 3
            },
            Backend {
                addr: "192.0.2.2:8080".parse().unwrap(),
                weight: 1
            },
        ]
    );
    assert_eq!((web.affinity, web.excluded), (None, false));
    assert_eq!(web.span, Span::new(2, 9, 3));
    let udp = &c.services[1];
    assert!(udp.backends.is_empty());
    assert_eq!(
        (udp.proto, udp.affinity, udp.excluded),
        (L4Proto::Udp, Some(30), true)
    );
    let dns = &c.services[2];
    assert_eq!(dns.backends[0].weight, 0);
    assert_eq!((dns.affinity, dns.excluded), (None, true));
    let paths: Vec<&str> = c.lb_exclude.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["mesh/sidecars", "weir/other"]);

    // The canonical form spells every option out and parses back to the same settings.
    let text = render_config(&c);
    assert!(
        text.contains(
            "service web 198.51.100.10:80/tcp backends=192.0.2.1:8080@3,192.0.2.2:8080@1 affinity=off\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("service web 198.51.100.10:80/udp backends=none affinity=30 excluded\n"),
        "{text}"
    );
    assert!(
        text.contains("service dns6 [2001:db8::53]:53/udp backends=[2001:db8::1]:53@0 affinity=off excluded\n"),
        "{text}"
    );
    assert!(
        text.contains("lb exclude mesh/sidecars\nlb exclude weir/other\n"),
        "{text}"
    );
    assert!(ok(&text).eq_ignoring_spans(&c));
}

#[test]
fn service_errors() {
    // Duplicate VIP:port/proto names the first line; another protocol or port is fine.
    let d = one_error(
        "service a 192.0.2.1:80/tcp backends=none\n\
         service b 192.0.2.1:80/udp backends=none\n\
         service c 192.0.2.1:80/tcp backends=none\n",
    );
    assert_eq!(at(&d), (3, 11, 16));
    assert_eq!(
        d.message,
        "duplicate service address 192.0.2.1:80/tcp (first declared on line 1)"
    );

    let d = one_error("service a 192.0.2.1:80/tcp");
    assert_eq!(d.message, "service 'a' needs backends=");
    assert_eq!(at(&d), (1, 27, 1));

    // Each backend is reported at its own columns.
    let e = errors("service a 192.0.2.1:80/tcp backends=192.0.2.2:80,[2001:db8::1]:80,x,192.0.2.2:80,192.0.2.3:80@-1,,192.0.2.4:0");
    let msgs: Vec<(u32, u32, &str)> = e.iter().map(|(_, c, l, m)| (*c, *l, m.as_str())).collect();
    assert_eq!(
        msgs,
        [
            (
                50,
                16,
                "backend [2001:db8::1]:80 is IPv6 but the service address 192.0.2.1:80 is IPv4"
            ),
            (67, 1, "backend: invalid address 'x'"),
            (69, 12, "backend 192.0.2.2:80 is listed twice"),
            (82, 15, "invalid weight '-1'"),
            (98, 1, "empty backend in the list"),
            (99, 11, "backend: port 0 in '192.0.2.4:0'"),
        ]
    );

    let e = errors(
        "service a 192.0.2.1:80 backends=none\n\
         service b 192.0.2.1:80/sctp backends=none\n\
         service c [::ffff:192.0.2.1]:80/tcp backends=none\n\
         service d/x 192.0.2.1:81/tcp backends=none affinity=0\n\
         service e 192.0.2.1:82/tcp backends=none extra excluded excluded\n\
         service f 192.0.2.1:83/tcp backends=none affinity=86401 bogus=1\n",
    );
    let msgs: Vec<(u32, u32, &str)> = e.iter().map(|(l, c, _, m)| (*l, *c, m.as_str())).collect();
    assert_eq!(
        msgs,
        [
            (1, 11, "'192.0.2.1:80' has no protocol: write VIP:PORT/tcp or VIP:PORT/udp"),
            (2, 24, "invalid service protocol 'sctp'"),
            (3, 11, "service address: '[::ffff:192.0.2.1]:80' is a v4-mapped IPv6 address"),
            (4, 9, "invalid service name 'd/x': it contains '/'; use letters, digits, '.', '_' and '-'"),
            (4, 53, "invalid affinity '0'"),
            (5, 42, "unexpected argument 'extra'"),
            (5, 57, "'excluded' given twice"),
            (6, 51, "invalid affinity '86401'"),
            (6, 57, "unknown option 'bogus' for 'service'"),
        ]
    );
}

#[test]
fn lb_exclude_errors() {
    let e = errors("lb exclude a/b /a/b ../x /\nlb exclude\nlb include x\n");
    let msgs: Vec<(u32, u32, &str)> = e.iter().map(|(l, c, _, m)| (*l, *c, m.as_str())).collect();
    assert_eq!(
        msgs,
        [
            (1, 16, "cgroup 'a/b' is already excluded (line 1)"),
            (1, 21, "cgroup path '../x' contains '..'"),
            (1, 26, "cgroup path '/' names the root of the cgroup2 mount"),
            (
                2,
                11,
                "'lb exclude' needs at least one cgroup path (relative to the cgroup2 mount)"
            ),
            (3, 4, "unknown statement 'lb include'"),
        ]
    );
}

// ---- Network policy: endpoints, sets, policies, rules ----

#[test]
fn endpoints_have_addresses_and_labels() {
    let c = ok(
        "interface veth-web role=workload addrs=10.0.0.2,fd00::2,10.1.0.0/24 \
                labels=app:web,env:prod,app.kubernetes.io/tier:\n",
    );
    let i = &c.interfaces[0];
    let addrs: Vec<String> = i.addrs.iter().map(ToString::to_string).collect();
    assert_eq!(addrs, ["10.0.0.2/32", "fd00::2/128", "10.1.0.0/24"]);
    assert_eq!(
        i.labels,
        [
            ("app".to_owned(), "web".to_owned()),
            ("env".to_owned(), "prod".to_owned()),
            ("app.kubernetes.io/tier".to_owned(), String::new()),
        ]
    );
    assert_eq!(
        render_config(&c).lines().next().unwrap(),
        "interface veth-web role=workload xdp=native tc=on attach=auto \
         addrs=10.0.0.2/32,fd00::2/128,10.1.0.0/24 labels=app:web,env:prod,app.kubernetes.io/tier:"
    );
    assert!(ok(&render_config(&c)).eq_ignoring_spans(&c));
    assert!(!c.eq_ignoring_spans(&ok("interface veth-web role=workload")));
}

#[test]
fn endpoint_errors_point_into_the_value() {
    let got = errors(
        "interface a addrs=10.0.0.2,10.0.0.300,10.0.0.2,,fd00::1/129\n\
         interface b labels=app,env:prod,-x:1,k:a/b,env:dev\n\
         interface c addrs= labels=\n\
         interface d labels=\"app:web,env:a b\"\n",
    );
    let want: Vec<(u32, u32, u32, &str)> = vec![
        (1, 28, 10, "invalid address '10.0.0.300'"),
        (1, 39, 8, "address 10.0.0.2/32 is listed twice"),
        (1, 48, 1, "invalid address ''"),
        (1, 57, 3, "prefix length 129 is out of range for IPv6"),
        (2, 20, 3, "label 'app' has no value"),
        (2, 33, 2, "invalid label '-x:1'"),
        (2, 40, 3, "invalid label 'k:a/b'"),
        (2, 44, 7, "label key 'env' is given twice"),
        (3, 19, 0, "option 'addrs' needs a value"),
        (3, 27, 0, "option 'labels' needs a value"),
        (4, 33, 3, "invalid label 'env:a b'"),
    ];
    let got: Vec<(u32, u32, u32, &str)> = got
        .iter()
        .map(|(l, c, n, m)| (*l, *c, *n, m.as_str()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn ipsets_add_up_inline_and_from_files() {
    let dir = TempDir::new();
    dir.write(
        "partners.txt",
        b"; partners\n198.51.100.0/24\n2001:db8:beef::/48 # v6\n192.0.2.0/24\n",
    );
    let conf = dir.write(
        "weir.conf",
        b"ipset partners 192.0.2.0/24 203.0.113.7\n\
          ipset other 10.0.0.0/8\n\
          ipset-file partners partners.txt\n\
          ipset partners 203.0.113.7 2001:db8::1\n",
    );
    let c = parse_file(&conf).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.ipsets.len(), 2);
    let p = c.ipset("partners").unwrap();
    let nets: Vec<String> = p.entries.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        nets,
        [
            "192.0.2.0/24",
            "203.0.113.7/32",
            "198.51.100.0/24",
            "2001:db8:beef::/48",
            "2001:db8::1/128"
        ]
    );
    assert_eq!(
        p.files,
        [(PathBuf::from("partners.txt"), Span::new(3, 21, 12))]
    );
    assert_eq!(p.entries[2].1.line, 2);
    assert!(p.entries[2].1.source.ends_with("partners.txt"));
    // Inline entries render inline, files as files.
    let text = render_config(&c);
    assert!(
        text.contains(
            "ipset partners 192.0.2.0/24 203.0.113.7/32 2001:db8::1/128\n\
             ipset-file partners partners.txt\n\
             ipset other 10.0.0.0/8\n"
        ),
        "{text}"
    );
    let again = dir.write("again.conf", text.as_bytes());
    assert!(parse_file(&again).unwrap().eq_ignoring_spans(&c));

    // Errors in the file name the file and the including line.
    dir.write("partners.txt", b"198.51.100.1/24\n");
    let err = parse_file(&conf).unwrap_err();
    let d = &err.diagnostics[0];
    assert!(d.source.ends_with("partners.txt"));
    assert_eq!(
        (at(d), d.message.as_str()),
        ((1, 1, 15), "'198.51.100.1/24' has host bits set")
    );
    assert_eq!(
        d.note.as_deref(),
        Some(format!("included by 'ipset-file' at {}:3:21", conf.display()).as_str())
    );
    let d = one_error("ipset-file s /nonexistent/weir-test/x.txt");
    assert!(d
        .message
        .starts_with("cannot read ipset file '/nonexistent/weir-test/x.txt'"));
    assert_eq!(
        one_error("ipset bad/name 10.0.0.0/8").message,
        "invalid set name 'bad/name': it contains '/'; use letters, digits, '.', '_' and '-'"
    );
    assert_eq!(
        one_error("ipset s").message,
        "'ipset' needs at least one CIDR or address (e.g. 192.0.2.0/24, 2001:db8::/32)"
    );
    assert_eq!(at(&one_error("ipset s 10.0.0.1/8")), (1, 9, 10));
}

const POLICY_SAMPLE: &str = "\
interface veth-web role=workload labels=app:web,env:prod
ipset blocked 192.0.2.0/24
policy web order=100 selector=\"app == 'web' && env != 'dev'\"
rule web ingress allow proto=tcp dport=80,443,8000-8080 remote=10.0.0.0/8,!set:blocked
rule web ingress allow proto=icmp icmp-type=8 icmp-code=0
policy egress-dns selector=has(app) types=ingress,egress audit
rule egress-dns egress log proto=udp sport=1024-65535 dport=53 remote=!2001:db8::/32
rule web egress deny proto=47
policy quiet selector=\"app in {web, 'db'} || !has(env)\" order=0
rule egress-dns egress pass
";

#[test]
fn policies_and_rules_parse_with_defaults() {
    // Rule 'web egress deny' comes after the 'web' policy's ingress rules: egress is derived.
    let c = ok(POLICY_SAMPLE);
    assert_eq!(c.policies.len(), 3);
    let web = &c.policies[0];
    assert_eq!(
        (web.order, web.ingress, web.egress, web.audit),
        (100, true, true, false)
    );
    assert_eq!(web.selector.to_string(), "app == 'web' && env != 'dev'");
    let dns = &c.policies[1];
    assert_eq!(
        (dns.order, dns.ingress, dns.egress, dns.audit),
        (1000, true, true, true)
    );
    let quiet = &c.policies[2];
    assert_eq!((quiet.order, quiet.ingress, quiet.egress), (0, true, false));
    assert_eq!(
        quiet.selector.to_string(),
        "app in {'web', 'db'} || !has(env)"
    );
    assert_eq!(c.rules.len(), 5);
    let r = &c.rules[0];
    assert_eq!(
        (r.policy.as_str(), r.direction, r.action, r.proto),
        ("web", Direction::Ingress, RuleAction::Allow, Some(6))
    );
    assert_eq!(r.dport, [(80, 80), (443, 443), (8000, 8080)]);
    assert_eq!(r.remote.len(), 2);
    assert_eq!(r.remote[1].to_string(), "!set:blocked");
    assert_eq!(c.rules[1].icmp, Some((8, Some(0))));
    assert_eq!(c.rules[2].sport, [(1024, 65535)]);
    assert_eq!(c.rules[3].proto, Some(47));
    assert_eq!(c.rules[4].proto, None);

    let text = render_config(&c);
    let policy_part = &text[text.find("ipset").unwrap()..];
    assert_eq!(
        policy_part,
        "ipset blocked 192.0.2.0/24\n\
         policy web order=100 selector=\"app == 'web' && env != 'dev'\" types=ingress,egress\n\
         rule web ingress allow proto=tcp remote=10.0.0.0/8,!set:blocked dport=80,443,8000-8080\n\
         rule web ingress allow proto=icmp icmp-type=8 icmp-code=0\n\
         rule web egress deny proto=47\n\
         policy egress-dns order=1000 selector=has(app) types=ingress,egress audit\n\
         rule egress-dns egress log proto=udp remote=!2001:db8::/32 sport=1024-65535 dport=53\n\
         rule egress-dns egress pass proto=any\n\
         policy quiet order=0 selector=\"app in {'web', 'db'} || !has(env)\" types=ingress\n"
    );
    let again = ok(&text);
    assert!(again.eq_ignoring_spans(&c));
    assert_eq!(render_config(&again), text);
    // A changed rule or rule order is noticed.
    assert!(!c.eq_ignoring_spans(&ok(&POLICY_SAMPLE.replace("dport=53", "dport=54"))));
    let swapped = POLICY_SAMPLE.replace(
        "rule web ingress allow proto=icmp icmp-type=8 icmp-code=0\n",
        "",
    ) + "rule web ingress allow proto=icmp icmp-type=8 icmp-code=0\n";
    assert!(!c.eq_ignoring_spans(&ok(&swapped)));
}

#[test]
fn selector_errors_point_inside_the_quoted_value() {
    let d = one_error("policy p selector=\"app == 'web' && env = 'x'\"");
    assert_eq!(at(&d), (1, 40, 1));
    assert_eq!(d.message, "'=' in a selector");
    assert_eq!(hint(&d), "compare with '==' (or '!=')");
    // Escapes shift columns; the caret still lands on the token.
    let d = one_error(r#"policy p selector="\\ == x""#);
    assert_eq!(
        (at(&d), d.message.as_str()),
        ((1, 20, 1), "unexpected character '\\\\' in the selector")
    );
    let d = one_error("policy p selector=\"app == 'web' &&\"");
    assert_eq!(
        (at(&d), d.message.as_str()),
        ((1, 35, 1), "unexpected end of the selector")
    );
    let d = one_error("policy p selector=app==web)");
    assert_eq!(at(&d), (1, 27, 1));
    assert_eq!(one_error("policy p selector=").message, "empty selector");
}

#[test]
fn policy_errors() {
    for (text, want) in [
        ("policy p", (1, 9, 1, "policy 'p' needs selector=")),
        (
            "policy p selector=all() order=x",
            (1, 31, 1, "invalid order 'x'"),
        ),
        (
            "policy p selector=all() order=-1",
            (1, 31, 2, "invalid order '-1'"),
        ),
        (
            "policy p selector=all() order=4294967296",
            (1, 31, 10, "invalid order '4294967296'"),
        ),
        (
            "policy p selector=all() types=ingres",
            (1, 31, 6, "invalid policy type 'ingres'"),
        ),
        (
            "policy p selector=all() types=egress,egress",
            (1, 38, 6, "'egress' is given twice"),
        ),
        (
            "policy p selector=all() types=",
            (1, 31, 0, "option 'types' needs a value"),
        ),
        (
            "policy p selector=all() audit audit",
            (1, 31, 5, "'audit' given twice"),
        ),
        (
            "policy p selector=all() enforce",
            (1, 25, 7, "unexpected argument 'enforce'"),
        ),
        (
            "policy p:q selector=all()",
            (
                1,
                8,
                3,
                "invalid policy name 'p:q': it contains ':'; use letters, digits, '.', '_' and '-'",
            ),
        ),
        (
            "policy p selector=all()\npolicy p selector=all()",
            (2, 8, 1, "duplicate policy 'p' (first declared on line 1)"),
        ),
    ] {
        let d = one_error(text);
        assert_eq!(
            (d.span.line, d.span.column, d.span.len, d.message.as_str()),
            want,
            "{text}"
        );
    }
    assert_eq!(
        hint(&one_error("policy p selector=all() types=ingres")),
        "types are ingress, egress or ingress,egress (did you mean 'ingress'?)"
    );
}

#[test]
fn rule_errors() {
    let pre = "ipset s 10.0.0.0/8\npolicy p selector=all()\npolicy e selector=all() types=egress\n";
    for (rule, want) in [
        (
            "rule p inbound allow",
            (8, 7, "invalid direction 'inbound'"),
        ),
        ("rule p ingress accept", (16, 6, "invalid action 'accept'")),
        (
            "rule p ingress allow proto=tpc",
            (28, 3, "invalid protocol 'tpc'"),
        ),
        (
            "rule p ingress allow proto=6",
            (28, 1, "write protocol 6 as 'tcp'"),
        ),
        (
            "rule p ingress allow proto=256",
            (28, 3, "invalid protocol '256'"),
        ),
        (
            "rule p ingress allow dport=80",
            (22, 5, "'dport=' needs a protocol with ports"),
        ),
        (
            "rule p ingress allow proto=icmp sport=1",
            (33, 5, "'sport=' needs a protocol with ports"),
        ),
        (
            "rule p ingress allow proto=tcp dport=90-80",
            (38, 5, "port range 90-80 is reversed"),
        ),
        (
            "rule p ingress allow proto=tcp dport=80,,81",
            (41, 1, "empty item in 'dport='"),
        ),
        (
            "rule p ingress allow proto=tcp dport=65536",
            (38, 5, "invalid port '65536'"),
        ),
        (
            "rule p ingress allow proto=tcp icmp-type=8",
            (32, 9, "'icmp-type=' needs proto=icmp or proto=icmpv6"),
        ),
        (
            "rule p ingress allow proto=icmp icmp-code=1",
            (33, 9, "'icmp-code=' needs icmp-type="),
        ),
        (
            "rule p ingress allow proto=icmp icmp-type=256",
            (43, 3, "invalid icmp-type '256'"),
        ),
        (
            "rule p ingress allow remote=10.0.0.0/8,!10.1.2.3/16",
            (41, 11, "'10.1.2.3/16' has host bits set"),
        ),
        (
            "rule p ingress allow remote=10.0.0.0/8,!",
            (40, 1, "empty item in 'remote='"),
        ),
        (
            "rule p ingress allow remote=set:a/b",
            (
                33,
                3,
                "invalid set name 'a/b': it contains '/'; use letters, digits, '.', '_' and '-'",
            ),
        ),
        (
            "rule p ingress allow remote=!set:nope",
            (34, 4, "unknown set 'nope'"),
        ),
        ("rule q ingress allow", (6, 1, "unknown policy 'q'")),
        (
            "rule e ingress allow",
            (
                8,
                7,
                "policy 'e' has types=egress (line 3): an ingress rule would never apply",
            ),
        ),
        (
            "rule p ingress",
            (15, 1, "'rule' needs an action (allow, deny, log or pass)"),
        ),
    ] {
        let d = one_error(&format!("{pre}{rule}"));
        assert_eq!(
            (d.span.line, d.span.column, d.span.len, d.message.as_str()),
            (4, want.0, want.1, want.2),
            "{rule}"
        );
    }
    assert_eq!(
        hint(&one_error(&format!("{pre}rule pp ingress allow"))),
        "declare it with 'policy pp selector=…' (did you mean 'p'?)"
    );
    assert_eq!(
        hint(&one_error(&format!(
            "{pre}rule p ingress allow remote=set:ss"
        ))),
        "declare it with 'ipset ss CIDR…' or 'ipset-file ss PATH' (did you mean 's'?)"
    );
    // A policy with an error is not reported again at each of its rules.
    assert_eq!(
        errors("policy p selector=all() order=x\nrule p ingress allow\n").len(),
        1
    );
    // Rules may come before their policy and sets after their use.
    let c = ok("rule p ingress allow remote=set:s\npolicy p selector=all()\nipset s 10.0.0.0/8\n");
    assert_eq!(c.rules.len(), 1);
    assert!(c.policies[0].ingress && !c.policies[0].egress);
}

/// The README's policy example (with its IP set file) parses, renders as documented, and its
/// prose holds: checked against the compiled classifier.
#[test]
fn readme_policy_example_parses_and_renders_as_documented() {
    use crate::policy::{compile, Decision, Packet};
    let readme = include_str!("../../../README.md");
    let block_after = |marker: &str| {
        let rest = &readme[readme.find(marker).expect(marker) + marker.len()..];
        let rest = &rest[rest.find("```\n").unwrap() + 4..];
        rest[..rest.find("```").unwrap()].to_owned()
    };
    let example = block_after("A policy example:");
    let blocked = block_after("with the policy example's `blocked.txt`:");
    let canonical = block_after("`weir::config::render_config`, the policy example is:");
    let dir = TempDir::new();
    let conf = dir.write("weir.conf", example.as_bytes());
    dir.write("blocked.txt", blocked.as_bytes());
    let c = parse_file(&conf).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(render_config(&c), canonical);

    let compiled = compile(&c).unwrap();
    let endpoint = |name: &str| c.interfaces.iter().position(|i| i.name == name).unwrap();
    let (web, db, eth0) = (endpoint("veth-web"), endpoint("veth-db"), endpoint("eth0"));
    let tcp = |remote: &str, dport: u16| Packet {
        remote: remote.parse().unwrap(),
        proto: 6,
        sport: 40_000,
        dport,
        icmp_type: 0,
        icmp_code: 0,
    };
    let decide = |e: usize, d: Direction, p: &Packet| compiled.verdict(e, d, p);
    let allowed = |e, d, p: &Packet| decide(e, d, p).decision.allows();
    assert!(allowed(web, Direction::Ingress, &tcp("192.0.2.1", 443)));
    assert!(!allowed(web, Direction::Ingress, &tcp("203.0.113.1", 443)));
    assert!(!allowed(
        web,
        Direction::Ingress,
        &tcp("2001:db8:dead::1", 80)
    ));
    assert!(allowed(web, Direction::Ingress, &tcp("198.51.100.1", 22)));
    assert!(!allowed(
        web,
        Direction::Ingress,
        &tcp("198.51.100.129", 22)
    ));
    assert!(allowed(web, Direction::Egress, &tcp("10.0.0.3", 5432)));
    assert!(!allowed(web, Direction::Egress, &tcp("10.0.0.4", 5432)));
    assert!(allowed(db, Direction::Ingress, &tcp("fd00::2", 5432)));
    let v = decide(db, Direction::Ingress, &tcp("10.0.0.9", 5432));
    assert_eq!((v.decision, v.logged.count()), (Decision::DefaultDeny, 1));
    // db's egress is open, but lockdown reports what leaves 10/8 and fd00::/8.
    let v = decide(db, Direction::Egress, &tcp("192.0.2.1", 443));
    assert_eq!(
        (v.decision, v.audit),
        (Decision::Unselected, Some(Decision::DefaultDeny))
    );
    assert_eq!(
        decide(db, Direction::Egress, &tcp("10.9.9.9", 443)).audit,
        None
    );
    assert_eq!(
        decide(eth0, Direction::Ingress, &tcp("203.0.113.1", 1)).decision,
        Decision::Unselected
    );
}

#[test]
fn lb_capacity() {
    let c = ok("lb capacity services=131072 slots=300000 connections=1000");
    assert_eq!(
        (
            c.lb_capacity.services,
            c.lb_capacity.backends,
            c.lb_capacity.slots,
            c.lb_capacity.connections
        ),
        (131_072, maps_schema::lb::DEFAULT_BACKENDS, 300_000, 1000)
    );
    assert!(render_config(&c)
        .contains("lb capacity services=131072 backends=65536 slots=300000 connections=1000\n"));
    assert_eq!(
        one_error("lb capacity").message,
        "'lb capacity' needs services=N, backends=N, slots=N or connections=N"
    );
    assert_eq!(
        one_error("lb capacity backends=1\nlb capacity slots=2").message,
        "duplicate 'lb capacity' (first set on line 1)"
    );
    assert_eq!(
        one_error("lb capacity services=0").message,
        "capacity 0 for 'services' is out of range"
    );
}

#[test]
fn files_every_user_may_write_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new();
    let list = dir.write("drop.txt", b"192.0.2.0/24\n");
    let conf = dir.write("weir.conf", b"prefilter deny-file drop.txt\n");
    assert!(parse_file(&conf).is_ok());

    std::fs::set_permissions(&list, std::fs::Permissions::from_mode(0o666)).unwrap();
    let d = &parse_file(&conf).unwrap_err().diagnostics[0];
    assert_eq!(at(d), (1, 21, 8));
    assert_eq!(
        d.message,
        format!(
            "deny file '{}' is writable by every user (mode 666): anyone could change what is denied",
            list.display()
        )
    );
    assert_eq!(hint(d), format!("run `chmod o-w {}`", list.display()));

    // The same reader serves 'ipset-file'.
    let conf = dir.write("sets.conf", b"ipset-file partners drop.txt\n");
    let d = &parse_file(&conf).unwrap_err().diagnostics[0];
    assert_eq!(at(d), (1, 21, 8));
    assert_eq!(
        d.message,
        format!(
            "ipset file '{}' is writable by every user (mode 666): anyone could change what the policies match",
            list.display()
        )
    );
    assert_eq!(hint(d), format!("run `chmod o-w {}`", list.display()));

    std::fs::set_permissions(&list, std::fs::Permissions::from_mode(0o644)).unwrap();
    let conf = dir.write("weir.conf", b"prefilter deny-file drop.txt\n");
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o646)).unwrap();
    let d = &parse_file(&conf).unwrap_err().diagnostics[0];
    assert_eq!(d.span, Span::default());
    assert!(
        d.message.contains("is writable by every user (mode 646)"),
        "{}",
        d.message
    );
    assert_eq!(hint(d), format!("run `chmod o-w {}`", conf.display()));
}

#[test]
fn conntrack_and_classifier_capacity() {
    let c = ok("conntrack capacity entries=1000\nclassifier capacity rule-sets=8 bitmaps=100\n");
    assert_eq!(c.conntrack_capacity, 1000);
    assert_eq!(
        (
            c.classifier_capacity.rule_sets,
            c.classifier_capacity.chunks,
            c.classifier_capacity.bitmaps
        ),
        (8, maps_schema::pol::DEFAULT_CHUNKS, 100)
    );
    let text = render_config(&c);
    assert!(text.contains("conntrack capacity entries=1000\n"), "{text}");
    assert!(
        text.contains("classifier capacity rule-sets=8 chunks=32768 bitmaps=100\n"),
        "{text}"
    );
    assert!(ok(&text).eq_ignoring_spans(&c));
    assert_eq!(
        one_error("conntrack capacity").message,
        "'conntrack capacity' needs entries=N"
    );
    assert!(one_error("classifier capacity rule-sets=100000")
        .message
        .contains("out of range"));
}
