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
            span: Span::new(1, 11, 5),
        }]
    );
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
        "valid statements are interface, cgroup, pin-dir (did you mean 'interface'?)"
    );
    assert!(hint(&one_error("pindir /x")).ends_with("(did you mean 'pin-dir'?)"));
}

#[test]
fn unknown_statement_without_suggestion() {
    let d = one_error("   route 10.0.0.0/8");
    assert_eq!(at(&d), (1, 4, 5));
    assert_eq!(hint(&d), "valid statements are interface, cgroup, pin-dir");
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
         \x20 hint: valid options are role, xdp, tc, attach (did you mean 'xdp'?)"
    );
}

#[test]
fn unknown_option_without_suggestion_and_on_optionless_statement() {
    let d = one_error("interface a color=red");
    assert_eq!(at(&d), (1, 13, 5));
    assert_eq!(hint(&d), "valid options are role, xdp, tc, attach");
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
         cgroup weir/other attach=link\n"
    );
    assert_eq!(render_config(&Config::default()), "");
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

/// The example, its canonical form and the error report in the README stay true.
#[test]
fn readme_example_parses_and_renders_as_documented() {
    let readme = include_str!("../../../README.md");
    let block_after = |marker: &str| {
        let rest = &readme[readme.find(marker).expect(marker) + marker.len()..];
        let rest = &rest[rest.find("```\n").unwrap() + 4..];
        rest[..rest.find("```").unwrap()].to_owned()
    };
    let example = block_after("### Example");
    let canonical = block_after("canonical form:");
    assert_eq!(render_config(&ok(&example)), canonical);
    let report = block_after("### Error reports");
    let err = parse("weir.conf", "# weir\n\ninterface veth0 xpd=native\n").unwrap_err();
    assert_eq!(format!("{err}\n"), report);
}
