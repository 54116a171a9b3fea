//! Prints a [`Config`] in canonical form: every option spelled out, `pin-dir` first, then
//! interfaces, then cgroups, each in model order. Parsing the output gives the same settings.

use std::fmt::Write as _;

use super::lexer::is_space;
use super::model::Config;

/// The canonical text of `config`.
///
/// For a `Config` produced by [`parse`](fn@super::parse), `parse(render_config(&c))` yields the same
/// settings (see [`Config::eq_ignoring_spans`]).
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
