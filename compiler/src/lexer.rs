//! The lexer: source text to tokens. It never fails; bad input becomes
//! [`Tok::Error`] tokens plus E001 diagnostics, and lexing continues.

use crate::diagnostic::{Code, Diagnostic, Span};

/// Token kinds. Keywords are plain identifiers; the parser decides by context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tok {
    /// Identifier or keyword (its text is the source under the span).
    Ident,
    /// Integer literal.
    Int(i64),
    /// String literal (see [`unescape`] for its value).
    Str,
    /// Duration literal in milliseconds (`250ms`, `2s`, `1m`, `1h`).
    Duration(u64),
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `,`
    Comma,
    /// `.`
    Dot,
    /// `..`
    DotDot,
    /// `:`
    Colon,
    /// `->`
    Arrow,
    /// `=`
    Assign,
    /// `+=`
    PlusAssign,
    /// `-=`
    MinusAssign,
    /// `==`
    EqEq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Star,
    /// `/`
    Slash,
    /// `%`
    Percent,
    /// `!`
    Bang,
    /// `&&`
    AndAnd,
    /// `||`
    OrOr,
    /// `;` (accepted as an optional statement separator)
    Semi,
    /// Unrecognised input (already reported).
    Error,
    /// End of input.
    Eof,
}

impl Tok {
    /// How the token is shown in "expected X, found Y" messages; `text` is
    /// the source under its span.
    pub fn describe(&self, text: &str) -> String {
        match self {
            Tok::Ident => format!("`{text}`"),
            Tok::Int(n) => format!("`{n}`"),
            Tok::Str => "a string".into(),
            Tok::Duration(_) => "a duration".into(),
            Tok::Eof => "end of file".into(),
            Tok::Error => "invalid input".into(),
            other => format!("`{}`", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Comma => ",",
            Tok::Dot => ".",
            Tok::DotDot => "..",
            Tok::Colon => ":",
            Tok::Arrow => "->",
            Tok::Assign => "=",
            Tok::PlusAssign => "+=",
            Tok::MinusAssign => "-=",
            Tok::EqEq => "==",
            Tok::Ne => "!=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::Percent => "%",
            Tok::Bang => "!",
            Tok::AndAnd => "&&",
            Tok::OrOr => "||",
            Tok::Semi => ";",
            _ => "?",
        }
    }
}

/// A token and where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    /// Kind and payload.
    pub tok: Tok,
    /// Byte range.
    pub span: Span,
}

/// A streaming lexer: [`Lexer::next_token`] scans one token at a time, so
/// the parser never holds more than a few.
#[derive(Debug)]
pub struct Lexer<'s> {
    source: &'s str,
    pos: usize,
    diags: Vec<Diagnostic>,
}

impl<'s> Lexer<'s> {
    /// A lexer at the start of `source`.
    pub fn new(source: &'s str) -> Lexer<'s> {
        Lexer::starting_at(source, 0)
    }

    /// A lexer that starts at byte `start`, which should begin a token (as
    /// the start of a token's span does); a start past the end or inside a
    /// character yields no tokens.
    pub fn starting_at(source: &'s str, start: usize) -> Lexer<'s> {
        let pos = if source.is_char_boundary(start) { start } else { source.len() };
        Lexer { source, pos, diags: Vec::new() }
    }

    /// Diagnostics reported so far (taken).
    pub fn take_diagnostics(&mut self) -> Vec<Diagnostic> {
        std::mem::take(&mut self.diags)
    }

    /// The next token; [`Tok::Eof`] forever at the end.
    pub fn next_token(&mut self) -> Token {
        scan(self.source, &mut self.pos, &mut self.diags)
    }
}

/// Scans one token of `source` from `*pos`, advancing it.
fn scan(source: &str, pos: &mut usize, diags: &mut Vec<Diagnostic>) -> Token {
    let bytes = source.as_bytes();
    let mut i = *pos;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            *pos = i;
            return Token { tok: Tok::Ident, span: Span::new(start, i) };
        }
        if c.is_ascii_digit() {
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'_') {
                i += 1;
            }
            let digits: String = source[start..i].chars().filter(|c| *c != '_').collect();
            let suffix_start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let span = Span::new(start, i);
            let Ok(n) = digits.parse::<i64>() else {
                diags.push(
                    Diagnostic::new(Code::E001, span, "integer literal is too large")
                        .with_hint("integers are 64-bit signed"),
                );
                *pos = i;
                return Token { tok: Tok::Error, span };
            };
            let tok = match &source[suffix_start..i] {
                "" => Tok::Int(n),
                "ms" => Tok::Duration(n as u64),
                "s" => Tok::Duration((n as u64).saturating_mul(1000)),
                "m" => Tok::Duration((n as u64).saturating_mul(60_000)),
                "h" => Tok::Duration((n as u64).saturating_mul(3_600_000)),
                other => {
                    diags.push(
                        Diagnostic::new(Code::E001, span, format!("unknown number suffix `{other}`"))
                            .with_hint("durations are written `250ms`, `2s`, `1m` or `1h`"),
                    );
                    Tok::Error
                }
            };
            *pos = i;
            return Token { tok, span };
        }
        if c == b'"' {
            i += 1;
            let mut closed = false;
            while i < bytes.len() {
                let ch = bytes[i];
                if ch == b'"' {
                    i += 1;
                    closed = true;
                    break;
                }
                if ch == b'\n' {
                    break;
                }
                if ch == b'\\' {
                    let esc = bytes.get(i + 1).copied();
                    match esc {
                        Some(b'n' | b't' | b'\\' | b'"') => {}
                        _ => {
                            diags.push(
                                Diagnostic::new(
                                    Code::E001,
                                    Span::new(i, (i + 2).min(bytes.len())),
                                    "unknown escape in string",
                                )
                                .with_hint("the escapes are \\n, \\t, \\\\ and \\\""),
                            );
                        }
                    }
                    let known = matches!(esc, Some(b'n' | b't' | b'\\' | b'"'));
                    i += if known { 2 } else { 1 };
                    continue;
                }
                i += 1;
            }
            let span = Span::new(start, i);
            if !closed {
                diags.push(
                    Diagnostic::new(Code::E001, span, "unterminated string")
                        .with_hint("close it with `\"` on the same line"),
                );
            }
            *pos = i;
            return Token { tok: Tok::Str, span };
        }
        let two = |a: u8, b: u8| c == a && bytes.get(i + 1) == Some(&b);
        let (tok, len) = if two(b'.', b'.') {
            (Tok::DotDot, 2)
        } else if two(b'-', b'>') {
            (Tok::Arrow, 2)
        } else if two(b'+', b'=') {
            (Tok::PlusAssign, 2)
        } else if two(b'-', b'=') {
            (Tok::MinusAssign, 2)
        } else if two(b'=', b'=') {
            (Tok::EqEq, 2)
        } else if two(b'!', b'=') {
            (Tok::Ne, 2)
        } else if two(b'<', b'=') {
            (Tok::Le, 2)
        } else if two(b'>', b'=') {
            (Tok::Ge, 2)
        } else if two(b'&', b'&') {
            (Tok::AndAnd, 2)
        } else if two(b'|', b'|') {
            (Tok::OrOr, 2)
        } else {
            let t = match c {
                b'{' => Tok::LBrace,
                b'}' => Tok::RBrace,
                b'(' => Tok::LParen,
                b')' => Tok::RParen,
                b'[' => Tok::LBracket,
                b']' => Tok::RBracket,
                b',' => Tok::Comma,
                b'.' => Tok::Dot,
                b':' => Tok::Colon,
                b'=' => Tok::Assign,
                b'<' => Tok::Lt,
                b'>' => Tok::Gt,
                b'+' => Tok::Plus,
                b'-' => Tok::Minus,
                b'*' => Tok::Star,
                b'/' => Tok::Slash,
                b'%' => Tok::Percent,
                b'!' => Tok::Bang,
                b';' => Tok::Semi,
                _ => Tok::Error,
            };
            (t, 1)
        };
        if tok == Tok::Error {
            let ch_len = source[i..].chars().next().map(char::len_utf8).unwrap_or(1);
            let span = Span::new(i, i + ch_len);
            let shown = &source[i..i + ch_len];
            diags.push(Diagnostic::new(Code::E001, span, format!("unexpected character `{shown}`")));
            i += ch_len;
            *pos = i;
            return Token { tok, span };
        }
        i += len;
        *pos = i;
        return Token { tok, span: Span::new(start, i) };
    }
    *pos = i;
    Token { tok: Tok::Eof, span: Span::new(source.len(), source.len()) }
}

/// Splits `source` into tokens (always ending with [`Tok::Eof`]).
pub fn lex(source: &str, diags: &mut Vec<Diagnostic>) -> Vec<Token> {
    let mut lexer = Lexer::new(source);
    let mut out = Vec::new();
    loop {
        let t = lexer.next_token();
        let eof = t.tok == Tok::Eof;
        out.push(t);
        if eof {
            break;
        }
    }
    diags.extend(lexer.take_diagnostics());
    out
}

/// The value of a string literal token's text (quotes included or not),
/// with escapes resolved; unknown escapes were reported by [`lex`].
pub fn unescape(text: &str) -> String {
    let inner = text.strip_prefix('"').unwrap_or(text);
    let inner = inner.strip_suffix('"').unwrap_or(inner);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}
