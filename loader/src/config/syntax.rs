//! The generic statement layer: `keyword arg... key=value...`, independent of what the keyword
//! means. The typed layer (`parse.rs`) looks statements up in its table and interprets them.

use super::diag::Span;
use super::lexer::{Opt, Token, Word};

/// One statement: its keyword, positional arguments and options, in source order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Statement {
    pub keyword: Word,
    pub args: Vec<Word>,
    pub options: Vec<Opt>,
    /// From the keyword to the end of the last token.
    pub span: Span,
}

impl Statement {
    /// The first option called `name` (duplicates are reported separately).
    pub(crate) fn option(&self, name: &str) -> Option<&Opt> {
        self.options.iter().find(|o| o.key.text == name)
    }
}

/// Groups a line's tokens. Options may appear anywhere after the keyword.
///
/// # Errors
///
/// When the line starts with an option instead of a keyword: the span and text of that option.
pub(crate) fn group(tokens: Vec<Token>) -> Result<Option<Statement>, Opt> {
    let mut tokens = tokens.into_iter();
    let keyword = match tokens.next() {
        None => return Ok(None),
        Some(Token::Opt(opt)) => return Err(opt),
        Some(Token::Word(word)) => word,
    };
    let mut span = keyword.span;
    let mut args = Vec::new();
    let mut options = Vec::new();
    for token in tokens {
        span = span.to(token.span());
        match token {
            Token::Word(w) => args.push(w),
            Token::Opt(o) => options.push(o),
        }
    }
    Ok(Some(Statement {
        keyword,
        args,
        options,
        span,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::lexer::lex_line;

    #[test]
    fn groups_keyword_args_and_options() {
        let st = group(lex_line("svc a k=v b", 1).unwrap()).unwrap().unwrap();
        assert_eq!(st.keyword.text, "svc");
        let args: Vec<_> = st.args.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(args, ["a", "b"]);
        assert_eq!(st.option("k").unwrap().value.text, "v");
        assert!(st.option("x").is_none());
        assert_eq!(st.span, Span::new(1, 1, 11));
    }

    #[test]
    fn empty_and_option_first() {
        assert_eq!(group(Vec::new()), Ok(None));
        let err = group(lex_line("role=host x", 1).unwrap()).unwrap_err();
        assert_eq!(err.span, Span::new(1, 1, 9));
    }
}
