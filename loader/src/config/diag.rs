//! Source positions and error reports (rustc/clang style).

use std::fmt;

/// Where a token sits in the config text.
///
/// `line` and `column` are 1-based; `column` and `len` count Unicode scalar values (chars), so a
/// tab is one column. A span at line 0 means "no position" (e.g. the file could not be read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// 1-based line number (0: no position).
    pub line: u32,
    /// 1-based column, in chars.
    pub column: u32,
    /// Length in chars (0 for a point between chars, e.g. an empty value).
    pub len: u32,
}

impl Span {
    /// A span of `len` chars starting at `line:column`.
    #[must_use]
    pub const fn new(line: u32, column: u32, len: u32) -> Self {
        Self { line, column, len }
    }

    /// The column just after the span.
    #[must_use]
    pub(crate) const fn end(self) -> u32 {
        self.column.saturating_add(self.len)
    }

    /// The span from the start of `self` to the end of `other` (same line).
    #[must_use]
    pub(crate) fn to(self, other: Span) -> Span {
        Span::new(
            self.line,
            self.column,
            other.end().saturating_sub(self.column),
        )
    }
}

/// One error in a config file, with enough context to print it like a compiler does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name, or whatever name the caller gave the text (e.g. `"<embedded>"`).
    pub source: String,
    /// Where the error is.
    pub span: Span,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when we can tell.
    pub hint: Option<String>,
    /// Context, e.g. for an error in a deny-list file, the config line that included it.
    pub note: Option<String>,
    /// The text of the offending line (without its line terminator); empty for line 0.
    pub line_text: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.source, self.span.line, self.span.column, self.message
        )?;
        if self.span.line > 0 {
            // Replace control characters so the report cannot drive the terminal; one char in,
            // one char out keeps the carets aligned. Tabs stay tabs in both lines for the same reason.
            let shown: String = self.line_text.chars().map(printable).collect();
            let line_chars = u32::try_from(shown.chars().count()).unwrap_or(u32::MAX);
            let before = self.span.column.saturating_sub(1);
            let mut pad: String = shown
                .chars()
                .take(before as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let missing = before.saturating_sub(line_chars) as usize;
            pad.extend(std::iter::repeat_n(' ', missing));
            // At least one caret; never (much) more than the line is long.
            let room = line_chars.saturating_sub(before).max(1);
            let carets = self.span.len.clamp(1, room) as usize;
            write!(f, "\n  {shown}\n  {pad}{}", "^".repeat(carets))?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        if let Some(note) = &self.note {
            write!(f, "\n  note: {note}")?;
        }
        Ok(())
    }
}

/// A terminal-safe stand-in for `c` that still occupies one column.
fn printable(c: char) -> char {
    if c == '\t' {
        c
    } else if c.is_control() || c == '\u{feff}' {
        '\u{fffd}'
    } else {
        c
    }
}

/// All errors found in a config file. It is never empty when returned by the parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The errors, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Quotes user text for a message: control characters escaped, very long text shortened.
pub(crate) fn show(text: &str) -> String {
    const MAX: usize = 48;
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if c.is_control() || c == '\u{feff}' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The most diagnostics one parse reports; a fuzzer's megabyte of garbage must not turn into
/// gigabytes of copies of the same line.
pub(crate) const MAX_DIAGNOSTICS: usize = 100;

/// Collects diagnostics for the line being parsed.
pub(crate) struct Sink<'a> {
    source: &'a str,
    line_text: &'a str,
    diagnostics: Vec<Diagnostic>,
    /// Index of the current line's first diagnostic.
    line_first: usize,
    full: bool,
}

impl<'a> Sink<'a> {
    pub(crate) fn new(source: &'a str) -> Self {
        Self {
            source,
            line_text: "",
            diagnostics: Vec::new(),
            line_first: 0,
            full: false,
        }
    }

    /// Sets the text that later diagnostics quote.
    pub(crate) fn set_line(&mut self, line_text: &'a str) {
        self.sort_line();
        self.line_text = line_text;
        self.line_first = self.diagnostics.len();
    }

    /// Puts the current line's diagnostics in column order (checks run by kind, not by
    /// position); the "too many errors" note stays last.
    fn sort_line(&mut self) {
        let end = self
            .diagnostics
            .len()
            .saturating_sub(usize::from(self.full));
        if let Some(line) = self.diagnostics.get_mut(self.line_first..end) {
            line.sort_by_key(|d| d.span.column);
        }
    }

    /// Records an error on the current line.
    pub(crate) fn error(&mut self, span: Span, message: String, hint: Option<String>) {
        let diagnostic = Diagnostic {
            source: self.source.to_owned(),
            span,
            message,
            hint,
            note: None,
            line_text: self.line_text.to_owned(),
        };
        self.push(diagnostic);
    }

    /// Records a diagnostic with its own source and line text: an error in a deny-list file the
    /// current line includes, or one from a whole-file check after the last line. It follows the
    /// current line's errors and keeps the order of such calls (it is not sorted by column).
    pub(crate) fn error_elsewhere(&mut self, diagnostic: Diagnostic) {
        self.sort_line();
        self.push(diagnostic);
        self.line_first = self.diagnostics.len();
    }

    fn push(&mut self, diagnostic: Diagnostic) {
        if self.full {
            return;
        }
        if self.diagnostics.len() + 1 >= MAX_DIAGNOSTICS {
            self.full = true;
            let message = format!("too many errors; stopped after {}", self.diagnostics.len());
            self.diagnostics.push(Diagnostic {
                message,
                hint: Some("fix the errors above and run again".to_owned()),
                ..diagnostic
            });
            return;
        }
        self.diagnostics.push(diagnostic);
    }

    /// The text of the current line.
    pub(crate) fn line_text(&self) -> &'a str {
        self.line_text
    }

    /// True once [`MAX_DIAGNOSTICS`] is reached; parsing should stop.
    pub(crate) fn is_full(&self) -> bool {
        self.full
    }

    pub(crate) fn count(&self) -> usize {
        self.diagnostics.len()
    }

    pub(crate) fn into_diagnostics(mut self) -> Vec<Diagnostic> {
        self.sort_line();
        self.diagnostics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(span: Span, line_text: &str) -> Diagnostic {
        Diagnostic {
            source: "weir.conf".into(),
            span,
            message: "unknown option 'xpd' for 'interface'".into(),
            hint: Some("valid options are role, xdp, tc, attach (did you mean 'xdp'?)".into()),
            note: None,
            line_text: line_text.into(),
        }
    }

    #[test]
    fn display_matches_compiler_style() {
        let d = diag(Span::new(3, 17, 3), "interface veth0 xpd=native");
        assert_eq!(
            d.to_string(),
            "weir.conf:3:17: error: unknown option 'xpd' for 'interface'\n\
             \x20 interface veth0 xpd=native\n\
             \x20                 ^^^\n\
             \x20 hint: valid options are role, xdp, tc, attach (did you mean 'xdp'?)"
        );
    }

    #[test]
    fn display_keeps_tabs_and_hides_control_chars() {
        let d = diag(Span::new(1, 4, 2), "\t\u{1b}[x");
        let text = d.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "  \t\u{fffd}[x");
        assert_eq!(lines[2], "  \t  ^");
    }

    #[test]
    fn display_ends_with_the_note() {
        let mut d = diag(Span::new(2, 1, 3), "1.2");
        d.hint = None;
        d.note = Some("included from weir.conf:4:21".into());
        assert_eq!(
            d.to_string(),
            "weir.conf:2:1: error: unknown option 'xpd' for 'interface'\n\
             \x20 1.2\n\
             \x20 ^^^\n\
             \x20 note: included from weir.conf:4:21"
        );
    }

    #[test]
    fn display_without_position_has_no_snippet() {
        let mut d = diag(Span::default(), "");
        d.hint = None;
        assert_eq!(
            d.to_string(),
            "weir.conf:0:0: error: unknown option 'xpd' for 'interface'"
        );
    }

    #[test]
    fn display_past_end_of_line() {
        let mut d = diag(Span::new(1, 10, 1), "interface");
        d.hint = None;
        assert!(d.to_string().ends_with("\n  interface\n           ^"));
    }

    #[test]
    fn show_escapes_and_truncates() {
        assert_eq!(show("a\0b"), "a\\u{0}b");
        assert_eq!(show(&"x".repeat(100)).chars().count(), 49);
    }

    #[test]
    fn sink_caps_the_number_of_diagnostics() {
        let mut sink = Sink::new("s");
        sink.set_line("x");
        for _ in 0..1000 {
            sink.error(Span::new(1, 1, 1), "e".into(), None);
        }
        assert!(sink.is_full());
        let all = sink.into_diagnostics();
        assert_eq!(all.len(), MAX_DIAGNOSTICS);
        assert!(all[MAX_DIAGNOSTICS - 1]
            .message
            .starts_with("too many errors"));
    }
}
