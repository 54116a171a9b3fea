//! Splits one line into words and `key=value` options, with exact spans.
//!
//! Rules: words are separated by whitespace; `#` outside quotes ends the line; a double-quoted
//! segment may hold whitespace, `#` and `=` and knows two escapes, `\"` and `\\` (outside quotes a
//! backslash is an ordinary char, so paths need no escaping). Segments concatenate like in a
//! shell: `a"b c"d` is the single word `ab cd`. The first unquoted `=` makes the word an option.

use super::diag::Span;

/// A word after quote removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    /// The text with quotes removed and escapes resolved.
    pub text: String,
    /// The raw extent in the line, quotes included.
    pub span: Span,
}

/// A `key=value` word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Opt {
    pub key: Word,
    /// The value; its span starts just after `=` (length 0 for `key=`).
    pub value: Word,
    /// The whole `key=value` word.
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    Word(Word),
    Opt(Opt),
}

impl Token {
    pub(crate) fn span(&self) -> Span {
        match self {
            Token::Word(w) => w.span,
            Token::Opt(o) => o.span,
        }
    }
}

/// A lexical error on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LexError {
    pub span: Span,
    pub message: String,
    pub hint: Option<String>,
}

/// Separators. U+FEFF counts so a byte-order mark at the start of a file is harmless.
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace() || c == '\u{feff}'
}

/// A char iterator that knows the column of the next char.
struct Cursor<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    col: u32,
}

impl<'a> Cursor<'a> {
    fn new(line: &'a str) -> Self {
        Self {
            chars: line.chars().peekable(),
            col: 1,
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        self.col = self.col.saturating_add(1);
        Some(c)
    }
}

/// Lexes `line` (which must not contain `\n`) as line number `line_no`.
///
/// # Errors
///
/// Every lexical error on the line: an unterminated quote (which ends lexing), an unknown escape,
/// an option with an empty or quoted name.
pub(crate) fn lex_line(line: &str, line_no: u32) -> Result<Vec<Token>, Vec<LexError>> {
    let mut cur = Cursor::new(line);
    let mut tokens = Vec::new();
    let mut errors = Vec::new();
    'words: loop {
        while cur.peek().is_some_and(is_space) {
            cur.bump();
        }
        match cur.peek() {
            None | Some('#') => break,
            Some(_) => {}
        }
        let start = cur.col;
        let mut text = String::new();
        // Whether the current part (key, or the part after '=') contains a quoted segment.
        let mut quoted = false;
        // (key text, key was quoted, column of '=').
        let mut key: Option<(String, bool, u32)> = None;
        let mut comment = false;
        while let Some(c) = cur.peek() {
            if is_space(c) {
                break;
            }
            match c {
                '#' => {
                    comment = true;
                    break;
                }
                '"' => {
                    let open = cur.col;
                    cur.bump();
                    quoted = true;
                    loop {
                        let col = cur.col;
                        match cur.bump() {
                            None => {
                                errors.push(unterminated(line_no, open, col));
                                break 'words;
                            }
                            Some('"') => break,
                            Some('\\') => match cur.bump() {
                                Some(e @ ('"' | '\\')) => text.push(e),
                                Some(other) => errors.push(LexError {
                                    span: Span::new(line_no, col, 2),
                                    message: format!(
                                        "unknown escape '\\{}' in quoted text",
                                        other.escape_default()
                                    ),
                                    hint: Some(
                                        "inside quotes only \\\" and \\\\ are escapes; \
                                         write \\\\ for a literal backslash"
                                            .to_owned(),
                                    ),
                                }),
                                None => {
                                    errors.push(unterminated(line_no, open, cur.col));
                                    break 'words;
                                }
                            },
                            Some(other) => text.push(other),
                        }
                    }
                }
                '=' if key.is_none() => {
                    key = Some((std::mem::take(&mut text), quoted, cur.col));
                    quoted = false;
                    cur.bump();
                }
                _ => {
                    text.push(c);
                    cur.bump();
                }
            }
        }
        let end = cur.col;
        let span = Span::new(line_no, start, end.saturating_sub(start));
        match key {
            None => tokens.push(Token::Word(Word { text, span })),
            Some((key_text, key_quoted, eq_col)) => {
                if key_quoted {
                    errors.push(LexError {
                        span: Span::new(line_no, start, eq_col.saturating_sub(start)),
                        message: "option names cannot be quoted".to_owned(),
                        hint: Some(
                            "write key=\"value\", or quote the whole word to make it an argument"
                                .to_owned(),
                        ),
                    });
                } else if key_text.is_empty() {
                    errors.push(LexError {
                        span: Span::new(line_no, eq_col, 1),
                        message: "missing option name before '='".to_owned(),
                        hint: Some(
                            "options are written key=value; quote an argument that contains '='"
                                .to_owned(),
                        ),
                    });
                } else {
                    let value_col = eq_col.saturating_add(1);
                    tokens.push(Token::Opt(Opt {
                        key: Word {
                            text: key_text,
                            span: Span::new(line_no, start, eq_col.saturating_sub(start)),
                        },
                        value: Word {
                            text,
                            span: Span::new(line_no, value_col, end.saturating_sub(value_col)),
                        },
                        span,
                    }));
                }
            }
        }
        if comment {
            break;
        }
    }
    if errors.is_empty() {
        Ok(tokens)
    } else {
        Err(errors)
    }
}

fn unterminated(line_no: u32, open: u32, end: u32) -> LexError {
    LexError {
        span: Span::new(line_no, open, end.saturating_sub(open)),
        message: "unterminated quote".to_owned(),
        hint: Some("close the quoted text with '\"' on the same line".to_owned()),
    }
}

/// The source column of each char of a word's text (quotes removed, escapes resolved), given
/// the raw `line` and the word's `span`: lets a statement point inside a quoted value (e.g. at
/// the bad token of a selector). A quote char maps nowhere; an escape maps to its backslash.
pub(crate) fn text_columns(line: &str, span: Span) -> Vec<u32> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut col = span.column;
    let mut chars = line
        .chars()
        .skip(span.column.saturating_sub(1) as usize)
        .take(span.len as usize);
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => {
                out.push(col);
                chars.next();
                col = col.saturating_add(1);
            }
            _ => out.push(col),
        }
        col = col.saturating_add(1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<(String, u32, u32)> {
        lex_line(line, 1)
            .unwrap()
            .into_iter()
            .map(|t| match t {
                Token::Word(w) => (w.text, w.span.column, w.span.len),
                Token::Opt(o) => (
                    format!("{}={}", o.key.text, o.value.text),
                    o.span.column,
                    o.span.len,
                ),
            })
            .collect()
    }

    #[test]
    fn splits_on_whitespace_and_stops_at_comment() {
        assert_eq!(
            words("  a\tbb  c#d e"),
            vec![("a".into(), 3, 1), ("bb".into(), 5, 2), ("c".into(), 9, 1)]
        );
        assert!(words("# only a comment").is_empty());
        assert!(words("").is_empty());
    }

    #[test]
    fn quotes_hold_spaces_hash_and_equals() {
        assert_eq!(
            words(r#""a b#c=d" x="1 2""#),
            vec![("a b#c=d".into(), 1, 9), ("x=1 2".into(), 11, 7)]
        );
    }

    #[test]
    fn escapes_and_concatenation() {
        assert_eq!(words(r#"a"\"q\\"b"#), vec![("a\"q\\b".into(), 1, 9)]);
        // Outside quotes a backslash is literal.
        assert_eq!(words(r"c:\x"), vec![(r"c:\x".into(), 1, 4)]);
    }

    #[test]
    fn option_spans() {
        let toks = lex_line("k=v k2= k3=a=b", 7).unwrap();
        let Token::Opt(o) = &toks[0] else { panic!() };
        assert_eq!(o.key.span, Span::new(7, 1, 1));
        assert_eq!(o.value.span, Span::new(7, 3, 1));
        let Token::Opt(o) = &toks[1] else { panic!() };
        assert_eq!(o.value.text, "");
        assert_eq!(o.value.span, Span::new(7, 8, 0));
        let Token::Opt(o) = &toks[2] else { panic!() };
        assert_eq!((o.key.text.as_str(), o.value.text.as_str()), ("k3", "a=b"));
    }

    #[test]
    fn unterminated_quote() {
        let errs = lex_line(r#"a "bc"#, 2).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].span, Span::new(2, 3, 3));
        assert_eq!(errs[0].message, "unterminated quote");
        let errs = lex_line(r#"a "bc\"#, 2).unwrap_err();
        assert_eq!(errs[0].message, "unterminated quote");
    }

    #[test]
    fn bad_escape_and_bad_keys() {
        let errs = lex_line(r#""\n" =x "k"=v"#, 1).unwrap_err();
        assert_eq!(errs.len(), 3);
        assert_eq!(errs[0].span, Span::new(1, 2, 2));
        assert_eq!(errs[1].span, Span::new(1, 6, 1));
        assert_eq!(errs[1].message, "missing option name before '='");
        assert_eq!(errs[2].span, Span::new(1, 9, 3));
        assert_eq!(errs[2].message, "option names cannot be quoted");
    }

    #[test]
    fn text_columns_skip_quotes_and_escapes() {
        let line = r#"x k="a \"b" c"#;
        let toks = lex_line(line, 1).unwrap();
        let Token::Opt(o) = &toks[1] else { panic!() };
        assert_eq!(o.value.text, "a \"b");
        assert_eq!(text_columns(line, o.value.span), vec![6, 7, 8, 10]);
        let Token::Word(w) = &toks[2] else { panic!() };
        assert_eq!(text_columns(line, w.span), vec![13]);
    }

    #[test]
    fn multibyte_columns_count_chars() {
        assert_eq!(words("é ü"), vec![("é".into(), 1, 1), ("ü".into(), 3, 1)]);
    }
}
