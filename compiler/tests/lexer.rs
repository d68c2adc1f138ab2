//! The lexer: tokens of short inputs, and the diagnostics of bad ones.

use lexum_compiler::lexer::{lex, unescape};

/// Lexes `src` and compares the token kinds (and diagnostic codes) with `expected`.
fn check(src: &str, expected: &str) {
    let mut diags = Vec::new();
    let toks = lex(src, &mut diags);
    let mut got: Vec<String> = toks.iter().map(|t| format!("{:?}", t.tok)).collect();
    got.extend(diags.iter().map(|d| d.code.as_str().to_string()));
    assert_eq!(got.join(" "), expected);
}

#[test]
fn durations() {
    check("250ms 2s 1m 1h", "Duration(250) Duration(2000) Duration(60000) Duration(3600000) Eof");
}

#[test]
fn backoff_range() {
    check("500ms..30s", "Duration(500) DotDot Duration(30000) Eof");
}

#[test]
fn integers_with_separators() {
    check("1_000 42", "Int(1000) Int(42) Eof");
}

#[test]
fn bad_suffix() {
    check("5x", "Error Eof E001");
}

#[test]
fn too_large_integer() {
    check("99999999999999999999", "Error Eof E001");
}

#[test]
fn operators() {
    check(
        "== != <= >= && || -> += -= = < > ! .",
        "EqEq Ne Le Ge AndAnd OrOr Arrow PlusAssign MinusAssign Assign Lt Gt Bang Dot Eof",
    );
}

#[test]
fn comments_are_skipped() {
    check("a // b c\nd", "Ident Ident Eof");
}

#[test]
fn strings_and_escapes() {
    check(r#""a\"b" "c"#, "Str Str Eof E001");
    assert_eq!(unescape(r#""a\"b\n""#), "a\"b\n");
}

#[test]
fn unknown_escape_in_multibyte_text() {
    check("\"\\é\"", "Str Eof E001");
}

#[test]
fn unexpected_character() {
    check("a # b", "Ident Error Ident Eof E001");
}
