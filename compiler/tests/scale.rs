//! Synthetic programs check clean, and their analyses stay linear-ish.

use lexum_compiler::synth::synthetic_program;
use lexum_compiler::{compile, render, CompileOptions};

/// Compiles a synthetic program and expects no diagnostics at all.
fn check(domains: usize, goals: usize) {
    let src = synthetic_program(domains, goals);
    let c = compile("synthetic.lxm", &src, &CompileOptions::default());
    assert!(c.diagnostics.is_empty(), "{}", render(&c.diagnostics, "synthetic.lxm", &src, false));
    let p = c.program.expect("compiles");
    assert_eq!(p.goals.len(), domains * goals);
    assert!(p.transitions.iter().all(|t| t.reaches_goal));
}

#[test]
fn small_synthetic_program_is_clean() {
    check(3, 4);
}

#[test]
fn wider_synthetic_program_is_clean() {
    check(40, 12);
}

/// Over a megabyte, the outline is parsed in two halves on two threads; it
/// must equal the full parse without bodies, and the file compiles clean.
#[test]
fn large_file_outlined_in_halves_matches_the_full_parse() {
    use lexum_compiler::syntax::{parse, parse_outline};
    let src = synthetic_program(1200, 5);
    assert!(src.len() > 1 << 20, "large enough to be split: {} bytes", src.len());
    let (mut full_diags, mut outline_diags) = (Vec::new(), Vec::new());
    let full = parse(&src, &mut full_diags);
    let outline = parse_outline(&src, &mut outline_diags);
    assert!(full_diags.is_empty() && outline_diags.is_empty());
    assert_eq!(outline.domains.len(), 1200);
    for (whole, outlined) in full.domains.iter().zip(&outline.domains) {
        let mut stripped = whole.clone();
        stripped.strip_bodies();
        assert_eq!(outlined, &stripped);
    }
    assert_eq!(outline.effects, full.effects);
    check(1200, 5);
}

#[test]
fn one_field_read_by_many_goals() {
    let mut src = String::from("domain D {\n  state { n: int }\n");
    for i in 0..400 {
        src.push_str(&format!(
            "  goal G{i} {{ n >= {} || n == -{i} }}\n  transition T{i} for G{i} {{ slice s {{ n = {i} }} }}\n",
            i % 7
        ));
    }
    src.push_str("}\n");
    let c = compile("hot.lxm", &src, &CompileOptions::default());
    assert!(c.diagnostics.is_empty(), "{}", render(&c.diagnostics, "hot.lxm", &src, false));
}

#[test]
fn ids_are_consistent_when_checked_on_two_threads() {
    let src = synthetic_program(700, 3);
    let p = compile("synthetic.lxm", &src, &CompileOptions::default()).program.expect("compiles");
    for (di, d) in p.domains.iter().enumerate() {
        assert_eq!(d.name, format!("D{di}"));
        for f in &d.fields {
            assert_eq!(p.fields[f.index()].domain.index(), di);
        }
        for g in &d.goals {
            assert_eq!(p.goals[g.index()].domain.index(), di);
            for t in &p.goals[g.index()].transitions {
                assert_eq!(p.transitions[t.index()].goal, *g);
            }
        }
        for t in &d.transitions {
            assert_eq!(p.transitions[t.index()].domain.index(), di);
        }
        for h in &d.handlers {
            assert_eq!(p.handlers[h.index()].domain.index(), di);
        }
    }
    let again = compile("synthetic.lxm", &src, &CompileOptions::default()).program.expect("compiles");
    assert_eq!(p.hash(), again.hash());
}

#[test]
fn errors_in_the_second_half_are_reported() {
    let mut src = synthetic_program(600, 2);
    src.push_str("domain Last {\n  state { n: int }\n  goal G { n = 1 }\n}\n");
    let c = compile("synthetic.lxm", &src, &CompileOptions::default());
    let codes: Vec<&str> = c.diagnostics.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(codes, ["E004"]);
}
