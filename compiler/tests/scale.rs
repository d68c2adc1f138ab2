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
