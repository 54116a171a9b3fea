//! The selector language of `policy … selector=EXPR`: boolean expressions over an endpoint's
//! labels, in the spirit of Calico's.
//!
//! ```text
//! app == 'web' && env != 'dev'
//! has(tier) || !has(legacy)
//! app in {'web', 'api'} && (env == 'prod' || env == 'staging')
//! all()
//! ```
//!
//! Grammar (`||` binds loosest, then `&&`, then `!`):
//!
//! ```text
//! expr    = and ( "||" and )*
//! and     = unary ( "&&" unary )*
//! unary   = "!" unary | "(" expr ")" | "all()" | "has(" KEY ")"
//!         | KEY ( "==" | "!=" ) VALUE | KEY [ "not" ] "in" "{" [ VALUE ( "," VALUE )* ] "}"
//! VALUE   = 'text' | a bare word
//! ```
//!
//! `k != 'v'` and `k not in {…}` are also true when the endpoint has no label `k` (as in Calico
//! and Kubernetes). Values are single-quoted (the config lexer owns double quotes) or bare words.

use std::fmt;

/// The longest label key, in bytes (a Kubernetes qualified name with its DNS prefix).
pub const MAX_LABEL_KEY: usize = 253;
/// The longest label value, in bytes (as in Kubernetes).
pub const MAX_LABEL_VALUE: usize = 63;

/// A parsed selector. Parsing flattens nested `&&` and `||`, so equal texts (up to spacing and
/// redundant parentheses) give equal values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selector {
    /// `all()`: every endpoint.
    All,
    /// `has(k)`: the endpoint has label `k` (any value).
    Has(String),
    /// `k == 'v'`.
    Eq(String, String),
    /// `k != 'v'` (true when `k` is absent).
    Ne(String, String),
    /// `k in {'a', 'b'}` (false when `k` is absent).
    In(String, Vec<String>),
    /// `k not in {'a', 'b'}` (true when `k` is absent).
    NotIn(String, Vec<String>),
    /// `!x`.
    Not(Box<Selector>),
    /// `x && y && …` (at least two operands, none itself an `And`).
    And(Vec<Selector>),
    /// `x || y || …` (at least two operands, none itself an `Or`).
    Or(Vec<Selector>),
}

/// Why a selector text does not parse: the char range of the offending token in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError {
    /// Char offset of the bad token (the text's length for "unexpected end").
    pub start: usize,
    /// Its length in chars (at least 1).
    pub len: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl Selector {
    /// Parses a selector.
    ///
    /// # Errors
    ///
    /// A [`SelectorError`] pointing at the first bad token.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let tokens = tokenize(text)?;
        let mut parser = Parser {
            tokens,
            pos: 0,
            end: text.chars().count(),
            depth: 0,
        };
        if parser.tokens.is_empty() {
            return Err(SelectorError {
                start: 0,
                len: 1,
                message: "empty selector".to_owned(),
                hint: "write all() to select every endpoint".to_owned(),
            });
        }
        let selector = parser.expr()?;
        if let Some(token) = parser.tokens.get(parser.pos) {
            return Err(parser.unexpected(token, "'&&', '||' or the end of the selector"));
        }
        Ok(selector)
    }

    /// Whether an endpoint with `labels` (key, value pairs; keys unique) is selected.
    #[must_use]
    pub fn matches(&self, labels: &[(String, String)]) -> bool {
        let get = |k: &str| labels.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        match self {
            Selector::All => true,
            Selector::Has(k) => get(k).is_some(),
            Selector::Eq(k, v) => get(k) == Some(v),
            Selector::Ne(k, v) => get(k) != Some(v),
            Selector::In(k, vs) => get(k).is_some_and(|v| vs.contains(v)),
            Selector::NotIn(k, vs) => !get(k).is_some_and(|v| vs.contains(v)),
            Selector::Not(x) => !x.matches(labels),
            Selector::And(xs) => xs.iter().all(|x| x.matches(labels)),
            Selector::Or(xs) => xs.iter().any(|x| x.matches(labels)),
        }
    }

    fn is_atom(&self) -> bool {
        !matches!(self, Selector::And(_) | Selector::Or(_))
    }
}

impl fmt::Display for Selector {
    /// The canonical text: single spaces around operators, values single-quoted, parentheses
    /// only where precedence needs them. [`Selector::parse`] gives the same value back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |vs: &[String]| {
            vs.iter()
                .map(|v| format!("'{v}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Selector::All => f.write_str("all()"),
            Selector::Has(k) => write!(f, "has({k})"),
            Selector::Eq(k, v) => write!(f, "{k} == '{v}'"),
            Selector::Ne(k, v) => write!(f, "{k} != '{v}'"),
            Selector::In(k, vs) => write!(f, "{k} in {{{}}}", set(vs)),
            Selector::NotIn(k, vs) => write!(f, "{k} not in {{{}}}", set(vs)),
            Selector::Not(x) if x.is_atom() => write!(f, "!{x}"),
            Selector::Not(x) => write!(f, "!({x})"),
            Selector::And(xs) => {
                for (i, x) in xs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" && ")?;
                    }
                    if matches!(x, Selector::Or(_)) {
                        write!(f, "({x})")?;
                    } else {
                        write!(f, "{x}")?;
                    }
                }
                Ok(())
            }
            Selector::Or(xs) => {
                for (i, x) in xs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" || ")?;
                    }
                    write!(f, "{x}")?;
                }
                Ok(())
            }
        }
    }
}

/// Why `key` is not a label key: 1 to 253 bytes of letters, digits, `.`, `_`, `-` and `/`,
/// starting with a letter or digit (`app`, `app.kubernetes.io/name`).
pub(crate) fn check_label_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("a label key may not be empty".to_owned());
    }
    if key.len() > MAX_LABEL_KEY {
        return Err(format!(
            "a label key is at most {MAX_LABEL_KEY} bytes, this one is {}",
            key.len()
        ));
    }
    if !key.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("a label key starts with a letter or digit".to_owned());
    }
    if let Some(c) = key.chars().find(|&c| !is_key_char(c)) {
        return Err(format!(
            "a label key may not contain '{}' (use letters, digits, '.', '_', '-', '/')",
            c.escape_default()
        ));
    }
    Ok(())
}

/// Why `value` is not a label value: up to 63 bytes of letters, digits, `.`, `_` and `-`
/// (empty is allowed).
pub(crate) fn check_label_value(value: &str) -> Result<(), String> {
    if value.len() > MAX_LABEL_VALUE {
        return Err(format!(
            "a label value is at most {MAX_LABEL_VALUE} bytes, this one is {}",
            value.len()
        ));
    }
    if let Some(c) = value.chars().find(|&c| !is_value_char(c)) {
        return Err(format!(
            "a label value may not contain '{}' (use letters, digits, '.', '_', '-')",
            c.escape_default()
        ));
    }
    Ok(())
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')
}

fn is_value_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A bare word (key, bare value, `in`, `not`, `has`, `all`).
    Word(String),
    /// A single-quoted string, quotes removed.
    Str(String),
    EqEq,
    NotEq,
    Bang,
    AndAnd,
    OrOr,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    start: usize,
    len: usize,
}

fn err(start: usize, len: usize, message: String, hint: &str) -> SelectorError {
    SelectorError {
        start,
        len: len.max(1),
        message,
        hint: hint.to_owned(),
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, SelectorError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).copied();
        let (tok, len) = match (c, next) {
            ('=', Some('=')) => (Tok::EqEq, 2),
            ('!', Some('=')) => (Tok::NotEq, 2),
            ('&', Some('&')) => (Tok::AndAnd, 2),
            ('|', Some('|')) => (Tok::OrOr, 2),
            ('!', _) => (Tok::Bang, 1),
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            ('{', _) => (Tok::LBrace, 1),
            ('}', _) => (Tok::RBrace, 1),
            (',', _) => (Tok::Comma, 1),
            ('\'', _) => {
                let Some(close) = chars.iter().skip(i + 1).position(|&c| c == '\'') else {
                    return Err(err(
                        i,
                        chars.len() - i,
                        "unterminated string in the selector".to_owned(),
                        "close it with a single quote: app == 'web'",
                    ));
                };
                let s: String = chars.iter().skip(i + 1).take(close).collect();
                (Tok::Str(s), close + 2)
            }
            (c, _) if is_key_char(c) => {
                let n = chars
                    .iter()
                    .skip(i)
                    .take_while(|&&c| is_key_char(c))
                    .count();
                (Tok::Word(chars.iter().skip(i).take(n).collect()), n)
            }
            ('=', _) => {
                return Err(err(
                    i,
                    1,
                    "'=' in a selector".to_owned(),
                    "compare with '==' (or '!=')",
                ))
            }
            ('&' | '|', _) => {
                return Err(err(
                    i,
                    1,
                    format!("'{c}' in a selector"),
                    "combine with '&&' and '||'",
                ))
            }
            ('"', _) => {
                return Err(err(
                    i,
                    1,
                    "double quote in a selector".to_owned(),
                    "quote selector values with single quotes: selector=\"app == 'web'\"",
                ))
            }
            _ => {
                return Err(err(
                    i,
                    1,
                    format!(
                        "unexpected character '{}' in the selector",
                        c.escape_default()
                    ),
                    "selectors use label keys, 'values', ==, !=, in, not in, has(), all(), !, \
                     &&, || and parentheses",
                ))
            }
        };
        tokens.push(Token { tok, start: i, len });
        i += len;
    }
    Ok(tokens)
}

/// Deeper nesting than this is refused: a fuzzer's `((((…` must not overflow the stack.
const MAX_DEPTH: usize = 64;

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// The text's length in chars, where "unexpected end" points.
    end: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|t| &t.tok)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += usize::from(t.is_some());
        t
    }

    fn unexpected(&self, token: &Token, wanted: &str) -> SelectorError {
        err(
            token.start,
            token.len,
            format!("unexpected {} in the selector", describe(&token.tok)),
            &format!("expected {wanted}"),
        )
    }

    fn end_error(&self, wanted: &str) -> SelectorError {
        err(
            self.end,
            1,
            "unexpected end of the selector".to_owned(),
            &format!("expected {wanted}"),
        )
    }

    /// The next token, which must be `want`.
    fn expect(&mut self, want: &Tok, wanted: &str) -> Result<Token, SelectorError> {
        match self.next() {
            Some(t) if t.tok == *want => Ok(t),
            Some(t) => Err(self.unexpected(&t, wanted)),
            None => Err(self.end_error(wanted)),
        }
    }

    fn expr(&mut self) -> Result<Selector, SelectorError> {
        let mut operands = vec![self.and()?];
        while self.peek() == Some(&Tok::OrOr) {
            self.pos += 1;
            operands.push(self.and()?);
        }
        Ok(join(operands, Selector::Or, |s| match s {
            Selector::Or(xs) => Ok(xs),
            other => Err(other),
        }))
    }

    fn and(&mut self) -> Result<Selector, SelectorError> {
        let mut operands = vec![self.unary()?];
        while self.peek() == Some(&Tok::AndAnd) {
            self.pos += 1;
            operands.push(self.unary()?);
        }
        Ok(join(operands, Selector::And, |s| match s {
            Selector::And(xs) => Ok(xs),
            other => Err(other),
        }))
    }

    fn unary(&mut self) -> Result<Selector, SelectorError> {
        const WANTED: &str = "a label key, '!', '(', has(KEY) or all()";
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let at = self.tokens.get(self.pos).map_or(self.end, |t| t.start);
            return Err(err(
                at,
                1,
                format!("selector nested deeper than {MAX_DEPTH} levels"),
                "simplify the selector",
            ));
        }
        let result = self.unary_inner(WANTED);
        self.depth -= 1;
        result
    }

    fn unary_inner(&mut self, wanted: &str) -> Result<Selector, SelectorError> {
        let Some(token) = self.next() else {
            return Err(self.end_error(wanted));
        };
        match &token.tok {
            Tok::Bang => Ok(Selector::Not(Box::new(self.unary()?))),
            Tok::LParen => {
                let inner = self.expr()?;
                self.expect(&Tok::RParen, "')'")?;
                Ok(inner)
            }
            Tok::Word(w) if self.peek() == Some(&Tok::LParen) && (w == "has" || w == "all") => {
                self.pos += 1;
                if w == "all" {
                    self.expect(&Tok::RParen, "')' (all() takes no argument)")?;
                    return Ok(Selector::All);
                }
                let key = self.key("a label key")?;
                self.expect(&Tok::RParen, "')'")?;
                Ok(Selector::Has(key))
            }
            Tok::Word(w) => {
                let key = w.clone();
                check_label_key(&key).map_err(|why| {
                    err(
                        token.start,
                        token.len,
                        format!("invalid label key '{key}'"),
                        &why,
                    )
                })?;
                self.comparison(key)
            }
            _ => Err(self.unexpected(&token, wanted)),
        }
    }

    /// What follows a key: `== v`, `!= v`, `in {…}`, `not in {…}`.
    fn comparison(&mut self, key: String) -> Result<Selector, SelectorError> {
        const WANTED: &str = "'==', '!=', 'in' or 'not in' after the label key";
        let Some(token) = self.next() else {
            return Err(self.end_error(WANTED));
        };
        match &token.tok {
            Tok::EqEq => Ok(Selector::Eq(key, self.value()?)),
            Tok::NotEq => Ok(Selector::Ne(key, self.value()?)),
            Tok::Word(w) if w == "in" => Ok(Selector::In(key, self.set()?)),
            Tok::Word(w) if w == "not" => {
                let next = self.next();
                match next {
                    Some(t) if t.tok == Tok::Word("in".to_owned()) => {
                        Ok(Selector::NotIn(key, self.set()?))
                    }
                    Some(t) => Err(self.unexpected(&t, "'in' after 'not'")),
                    None => Err(self.end_error("'in' after 'not'")),
                }
            }
            _ => Err(self.unexpected(&token, WANTED)),
        }
    }

    fn key(&mut self, wanted: &str) -> Result<String, SelectorError> {
        match self.next() {
            Some(Token {
                tok: Tok::Word(w),
                start,
                len,
            }) => {
                check_label_key(&w)
                    .map_err(|why| err(start, len, format!("invalid label key '{w}'"), &why))?;
                Ok(w)
            }
            Some(t) => Err(self.unexpected(&t, wanted)),
            None => Err(self.end_error(wanted)),
        }
    }

    fn value(&mut self) -> Result<String, SelectorError> {
        const WANTED: &str = "a label value: 'text' or a bare word";
        match self.next() {
            Some(Token {
                tok: Tok::Word(v) | Tok::Str(v),
                start,
                len,
            }) => {
                check_label_value(&v)
                    .map_err(|why| err(start, len, format!("invalid label value '{v}'"), &why))?;
                Ok(v)
            }
            Some(t) => Err(self.unexpected(&t, WANTED)),
            None => Err(self.end_error(WANTED)),
        }
    }

    /// `{ v, v, … }` (possibly empty).
    fn set(&mut self) -> Result<Vec<String>, SelectorError> {
        self.expect(&Tok::LBrace, "'{' starting the set of values")?;
        let mut values = Vec::new();
        if self.peek() == Some(&Tok::RBrace) {
            self.pos += 1;
            return Ok(values);
        }
        loop {
            values.push(self.value()?);
            match self.next() {
                Some(t) if t.tok == Tok::Comma => {}
                Some(t) if t.tok == Tok::RBrace => return Ok(values),
                Some(t) => return Err(self.unexpected(&t, "',' or '}'")),
                None => return Err(self.end_error("',' or '}'")),
            }
        }
    }
}

/// One operand as is; several as `make(flattened)`.
fn join(
    operands: Vec<Selector>,
    make: fn(Vec<Selector>) -> Selector,
    split: fn(Selector) -> Result<Vec<Selector>, Selector>,
) -> Selector {
    if operands.len() == 1 {
        return operands.into_iter().next().unwrap_or(Selector::All);
    }
    let mut flat = Vec::with_capacity(operands.len());
    for operand in operands {
        match split(operand) {
            Ok(inner) => flat.extend(inner),
            Err(other) => flat.push(other),
        }
    }
    make(flat)
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Word(w) => format!("'{w}'"),
        Tok::Str(s) => format!("'{s}' (a quoted value)"),
        Tok::EqEq => "'=='".to_owned(),
        Tok::NotEq => "'!='".to_owned(),
        Tok::Bang => "'!'".to_owned(),
        Tok::AndAnd => "'&&'".to_owned(),
        Tok::OrOr => "'||'".to_owned(),
        Tok::LParen => "'('".to_owned(),
        Tok::RParen => "')'".to_owned(),
        Tok::LBrace => "'{'".to_owned(),
        Tok::RBrace => "'}'".to_owned(),
        Tok::Comma => "','".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn sel(text: &str) -> Selector {
        Selector::parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}"))
    }

    #[test]
    fn evaluates_like_calico() {
        let web_prod = labels(&[("app", "web"), ("env", "prod")]);
        let db = labels(&[("app", "db")]);
        let none = labels(&[]);
        for (text, want) in [
            ("all()", [true, true, true]),
            ("app == 'web'", [true, false, false]),
            ("app != 'web'", [false, true, true]),
            ("env != 'dev'", [true, true, true]),
            ("has(env)", [true, false, false]),
            ("!has(env)", [false, true, true]),
            ("app in {'web', db}", [true, true, false]),
            ("app in {}", [false, false, false]),
            ("app not in {web}", [false, true, true]),
            ("app == 'web' && env != 'dev'", [true, false, false]),
            ("app == 'db' || has(env)", [true, true, false]),
            ("!(app == 'db' || has(env))", [false, false, true]),
            ("!app == 'db'", [true, false, true]),
            ("app==web&&env==prod", [true, false, false]),
        ] {
            let s = sel(text);
            let got = [s.matches(&web_prod), s.matches(&db), s.matches(&none)];
            assert_eq!(got, want, "{text}");
        }
    }

    #[test]
    fn renders_canonically_and_round_trips() {
        for (text, canonical) in [
            ("all()", "all()"),
            ("  app=='web'", "app == 'web'"),
            ("a==x&&(b==y&&c==z)", "a == 'x' && b == 'y' && c == 'z'"),
            ("(a==x||b==y)&&c==z", "(a == 'x' || b == 'y') && c == 'z'"),
            ("a==x||b==y&&c==z", "a == 'x' || b == 'y' && c == 'z'"),
            ("!(has(a) && has(b))", "!(has(a) && has(b))"),
            ("!!has(a)", "!!has(a)"),
            ("!(a == '')", "!a == ''"),
            ("k.io/x not in {a,'b-c'}", "k.io/x not in {'a', 'b-c'}"),
            ("((all()))", "all()"),
        ] {
            let s = sel(text);
            assert_eq!(s.to_string(), canonical, "{text}");
            assert_eq!(sel(canonical), s, "{text}");
        }
    }

    #[test]
    fn errors_point_at_the_token() {
        for (text, start, len, message) in [
            ("", 0, 1, "empty selector"),
            ("app = 'web'", 4, 1, "'=' in a selector"),
            ("app == 'web", 7, 4, "unterminated string in the selector"),
            ("app == 'web' &", 13, 1, "'&' in a selector"),
            ("app == 'web' && ", 16, 1, "unexpected end of the selector"),
            (
                "app == 'web' env",
                13,
                3,
                "unexpected 'env' in the selector",
            ),
            ("app", 3, 1, "unexpected end of the selector"),
            ("app in web", 7, 3, "unexpected 'web' in the selector"),
            ("app not web", 8, 3, "unexpected 'web' in the selector"),
            ("has(app", 7, 1, "unexpected end of the selector"),
            (
                "has('app')",
                4,
                5,
                "unexpected 'app' (a quoted value) in the selector",
            ),
            ("all(x)", 4, 1, "unexpected 'x' in the selector"),
            ("(app == x", 9, 1, "unexpected end of the selector"),
            ("app == 'a b'", 7, 5, "invalid label value 'a b'"),
            ("-app == x", 0, 4, "invalid label key '-app'"),
            ("app == \"x\"", 7, 1, "double quote in a selector"),
            (
                "app == x @",
                9,
                1,
                "unexpected character '@' in the selector",
            ),
            ("app in {a b}", 10, 1, "unexpected 'b' in the selector"),
        ] {
            let e = Selector::parse(text).unwrap_err();
            assert_eq!(
                (e.start, e.len, e.message.as_str()),
                (start, len, message),
                "{text}"
            );
        }
        let deep = format!("{}all(){}", "(".repeat(100), ")".repeat(100));
        assert!(Selector::parse(&deep)
            .unwrap_err()
            .message
            .contains("nested deeper"));
        let deep = format!("{}all()", "!".repeat(100));
        assert!(Selector::parse(&deep).is_err());
    }

    #[test]
    fn label_charsets() {
        assert!(check_label_key("app.kubernetes.io/name").is_ok());
        assert!(check_label_key("").is_err());
        assert!(check_label_key("_x").is_err());
        assert!(check_label_key(&"k".repeat(254)).is_err());
        assert!(check_label_value("").is_ok());
        assert!(check_label_value("v1.2_x-y").is_ok());
        assert!(check_label_value("a/b").is_err());
        assert!(check_label_value(&"v".repeat(64)).is_err());
    }
}
