//! Rendering: rustc-style text and JSON records.

use lexum_compiler::{compile, render, to_json, CompileOptions};

const SRC: &str = "domain D {\n  state { x: int }\n  goal G { x = 5 }\n  transition T for G { slice s { x = 5 } }\n}\n";

/// Renders `src` without colour and checks that every `needle` appears.
fn check(src: &str, needles: &[&str]) {
    let c = compile("pool.lxm", src, &CompileOptions::default());
    let text = render(&c.diagnostics, "pool.lxm", src, false);
    for n in needles {
        assert!(text.contains(n), "missing {n:?} in:\n{text}");
    }
}

#[test]
fn text_has_code_location_line_underline_and_hint() {
    check(SRC, &["error[E004]", "pool.lxm:3:12", "goal G { x = 5 }", "^^^^^", "did you mean `==`?"]);
}

#[test]
fn text_shows_secondary_labels() {
    let src = "domain D {\n  state { n: int }\n  goal A { n >= 5 }\n  goal B { n <= 4 }\n  transition TA for A { slice s { n = 5 } }\n  transition TB for B { slice s { n = 4 } }\n}\n";
    check(src, &["error[E009]", "pool.lxm:4:8", "`D.A` conflicts with this goal", "`D.n`"]);
}

#[test]
fn color_output_has_escape_codes() {
    let c = compile("pool.lxm", SRC, &CompileOptions::default());
    assert!(render(&c.diagnostics, "pool.lxm", SRC, true).contains('\u{1b}'));
}

#[test]
fn json_records_are_one_based() {
    let c = compile("pool.lxm", SRC, &CompileOptions::default());
    let json = to_json(&c.diagnostics, "pool.lxm", SRC);
    assert_eq!(json.len(), 1);
    let j = &json[0];
    assert_eq!(
        (j.code.as_str(), j.severity.as_str(), j.file.as_str(), j.line, j.column),
        ("E004", "error", "pool.lxm", 3, 12)
    );
    assert!(j.message.contains("did you mean"));
    let text = serde_json::to_string(&json).expect("serializes");
    assert!(text.contains("\"line\":3"));
}

#[test]
fn spans_past_the_end_or_inside_characters_do_not_panic() {
    use lexum_compiler::{Code, Diagnostic, Span};
    let src = "é\n";
    let diags =
        vec![Diagnostic::new(Code::E001, Span::new(1, 99), "x"), Diagnostic::new(Code::E001, Span::new(50, 60), "y")];
    let _ = render(&diags, "f.lxm", src, false);
    let _ = to_json(&diags, "f.lxm", src);
}

#[test]
fn several_errors_in_one_run() {
    let src =
        "domain D {\n  state { x: int }\n  goal G { x = 5 }\n  goal H { now() > 1 }\n  invariant I { y > 0 }\n}\n";
    let c = compile("pool.lxm", src, &CompileOptions::default());
    let codes: Vec<&str> = c.diagnostics.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(codes, ["E004", "E006", "E002"]);
}
