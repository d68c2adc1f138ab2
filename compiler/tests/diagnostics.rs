//! One short test per diagnostic: the code and the line it points at.

use lexum_compiler::diagnostic::line_col;
use lexum_compiler::{compile, render, CompileOptions};

/// Compiles `src` and compares `CODE@line` of every diagnostic, in order.
fn check(src: &str, expected: &str) {
    let c = compile("t.lxm", src, &CompileOptions::default());
    let got: Vec<String> =
        c.diagnostics.iter().map(|d| format!("{}@{}", d.code, line_col(src, d.span.start).0)).collect();
    assert_eq!(got.join(" "), expected, "\n{}", render(&c.diagnostics, "t.lxm", src, false));
    assert_eq!(c.program.is_some(), !c.has_errors());
}

const OK: &str = "
effect Cloud.Set(pool: string, count: int) -> int
domain Pool {
  state { nodes: int = 3 }
  goal Big { nodes >= 3 }
  transition Grow for Big {
    slice s { emit Cloud.Set(pool: \"web\", count: 3) -> got }
    slice r { nodes = got }
  }
}
";

#[test]
fn clean_program_has_no_diagnostics() {
    check(OK, "");
}

/// A domain `D` with one field `n`, its goals `goals`, and transitions that
/// repair every goal named in `fix` (so W002 stays quiet).
fn with_goals(goals: &str, fix: &[&str]) -> String {
    let mut s = String::from("domain D {\n  state { n: int = 0  flag: bool  mode: string  xs: list<int, 8> }\n");
    s.push_str(goals);
    for g in fix {
        s.push_str(&format!(
            "  transition Fix{g} for {g} {{ slice s {{ n = 1  flag = true  mode = \"x\"  xs = [1] }} }}\n"
        ));
    }
    s.push_str("}\n");
    s
}

#[test]
fn e001_missing_brace() {
    check("domain D {\n  state { n: int }\n  goal G { n > 1 \n", "E001@4");
}

#[test]
fn e001_several_in_one_run() {
    check("domain D {\n  state { n int }\n  goal G { n > }\n}\n", "E001@2 E001@3");
}

#[test]
fn e001_bad_character() {
    check("domain D { state { n: int } }\n#\n", "E001@2");
}

#[test]
fn e001_bad_duration_unit() {
    check("domain D { state { n: int = 5x } }\n", "E001@1");
}

#[test]
fn e001_unterminated_string() {
    check("domain D {\n state { s: string = \"abc }\n}\n", "E001@2 E001@4");
}

#[test]
fn e001_transition_without_slices() {
    check(&with_goals("  goal G { n > 1 }\n  transition T for G { }\n", &[]), "E001@4");
}

#[test]
fn e002_unknown_field() {
    check(&with_goals("  goal G { m > 1 }\n", &["G"]), "E002@3");
}

#[test]
fn e002_unknown_domain_in_reads() {
    check("domain D {\n  reads Nope\n}\n", "E002@2");
}

#[test]
fn e002_unknown_effect() {
    check(
        &with_goals("  goal G { n > 1 }\n  transition T for G { slice s { emit Cloud.Nope(a: 1) } }\n", &[]),
        "E002@4",
    );
}

#[test]
fn e002_unknown_effect_param() {
    check(
        &format!(
            "effect Cloud.Set(pool: string)\n{}",
            with_goals(
                "  goal G { n > 1 }\n  transition T for G { slice s { emit Cloud.Set(pool: \"a\", size: 2) } }\n",
                &[]
            )
        ),
        "E002@5",
    );
}

#[test]
fn e002_unknown_handler() {
    check(
        &with_goals("  goal G { n > 1 }\n  transition T for G { slice s { send D.Resize(count: 1) } }\n", &[]),
        "E002@4",
    );
}

#[test]
fn e002_transition_for_unknown_goal() {
    check(&with_goals("  goal G { n > 1 }\n  transition T for H { slice s { n = 2 } }\n", &["G"]), "E002@4");
}

#[test]
fn e002_unknown_function() {
    check(&with_goals("  goal G { frobnicate(n) > 1 }\n", &["G"]), "E002@3");
}

#[test]
fn e002_duplicate_field() {
    check("domain D {\n  state { n: int\n n: int }\n}\n", "E002@3");
}

#[test]
fn e003_compare_int_with_string() {
    check(&with_goals("  goal G { n > \"x\" }\n", &["G"]), "E003@3");
}

#[test]
fn e003_goal_not_bool() {
    check(&with_goals("  goal G { n + 1 }\n", &["G"]), "E003@3");
}

#[test]
fn e003_wrong_effect_argument_type() {
    check(
        &format!(
            "effect Cloud.Set(count: int)\n{}",
            with_goals("  goal G { n > 1 }\n  transition T for G { slice s { emit Cloud.Set(count: \"3\") } }\n", &[])
        ),
        "E003@5",
    );
}

#[test]
fn e003_missing_effect_argument() {
    check(
        &format!(
            "effect Cloud.Set(pool: string, count: int)\n{}",
            with_goals("  goal G { n > 1 }\n  transition T for G { slice s { emit Cloud.Set(pool: \"a\") } }\n", &[])
        ),
        "E003@5",
    );
}

#[test]
fn e003_positional_effect_argument() {
    check(
        &format!(
            "effect Cloud.Set(count: int)\n{}",
            with_goals("  goal G { n > 1 }\n  transition T for G { slice s { emit Cloud.Set(3) } }\n", &[])
        ),
        "E003@5",
    );
}

#[test]
fn e003_bad_builtin_arguments() {
    check(&with_goals("  goal G { len(n) > 1 }\n", &["G"]), "E003@3");
}

#[test]
fn e003_assign_wrong_type() {
    check(&with_goals("  goal G { n > 1 }\n  transition T for G { slice s { n = true } }\n", &[]), "E003@4");
}

#[test]
fn e003_backoff_reversed() {
    check(
        &with_goals("  goal G { n > 1 }\n  transition T for G retry 3 backoff 2s..1s { slice s { n = 2 } }\n", &[]),
        "E003@4",
    );
}

#[test]
fn e004_assignment_in_goal_suggests_eq() {
    let src = with_goals("  goal G { n = 5 }\n", &["G"]);
    check(&src, "E004@3");
    let c = compile("t.lxm", &src, &CompileOptions::default());
    assert_eq!(c.diagnostics[0].hint.as_deref(), Some("did you mean `==`?"));
}

#[test]
fn e004_emit_in_goal() {
    check(
        &format!("effect Cloud.Set(count: int)\n{}", with_goals("  goal G { emit Cloud.Set(count: 1) }\n", &["G"])),
        "E004@4",
    );
}

#[test]
fn e004_send_in_invariant() {
    check(&with_goals("  invariant I { send D.H(x: 1) }\n  on H(x: int) { n = x }\n", &[]), "E004@3");
}

#[test]
fn e004_if_in_goal() {
    check(&with_goals("  goal G { if n > 1 { n = 2 } }\n", &["G"]), "E004@3");
}

#[test]
fn e006_now_in_goal() {
    check(&with_goals("  goal G { n < now() }\n", &["G"]), "E006@3");
}

#[test]
fn e006_random_in_slice() {
    check(&with_goals("  goal G { n > 1 }\n  transition T for G { slice s { n = random() } }\n", &[]), "E006@4");
}

#[test]
fn e006_namespaced_clock() {
    check(
        &with_goals("  goal G { n > 1 }\n  transition T for G when Clock.now() > 3 { slice s { n = 2 } }\n", &[]),
        "E006@4",
    );
}

#[test]
fn e006_read_file_in_handler() {
    check("domain D {\n  state { s: string }\n  on Load(p: string) {\n    s = read_file(p)\n  }\n}\n", "E006@4");
}

#[test]
fn e007_write_other_domain() {
    check(
        "domain A { state { n: int } }\ndomain B {\n  state { m: int }\n  goal G { m > 1 }\n  transition T for G { slice s { A.n = 2\n m = 2 } }\n}\n",
        "E007@5",
    );
}

#[test]
fn e007_read_undeclared_domain() {
    check(
        "domain A { state { n: int } }\ndomain B {\n  state { m: int }\n  goal G { A.n > m }\n  transition T for G { slice s { m = 0 } }\n}\n",
        "E007@4",
    );
}

#[test]
fn e008_nested_quantifiers_over_budget() {
    let src =
        with_goals("  goal G { all a in xs: all b in xs: all c in xs: all d in xs: all e in xs: a < e }\n", &["G"]);
    check(&src, "E008@3");
}

#[test]
fn e008_default_list_max_counts() {
    let src = "domain D {\n  state { xs: list<int> }\n  invariant I { all a in xs: all b in xs: all c in xs: a <= b + c }\n}\n";
    check(src, "E008@3");
}

#[test]
fn e008_respects_configured_budget() {
    let src = with_goals("  goal G { all a in xs: a > 0 }\n", &["G"]);
    let c = compile("t.lxm", &src, &CompileOptions { cost_budget: 5, ..CompileOptions::default() });
    assert_eq!(c.diagnostics.iter().map(|d| d.code.as_str()).collect::<Vec<_>>(), ["E008"]);
}

#[test]
fn e009_intervals_conflict() {
    check(&with_goals("  goal Hi { n >= 5 }\n  goal Lo { n <= 4 }\n", &["Hi", "Lo"]), "E009@4");
}

#[test]
fn e009_linear_conflict_needs_solver() {
    let src = "domain D {\n  state { a: int  b: int }\n  goal P { a + b >= 10 && a <= 2 }\n  goal Q { b <= 3 && a - b >= 0 }\n  transition TP for P { slice s { a = 1 } }\n  transition TQ for Q { slice s { b = 1 } }\n}\n";
    check(src, "E009@4");
}

#[test]
fn e009_string_modes_conflict() {
    check(&with_goals("  goal A { mode == \"on\" }\n  goal B { mode == \"off\" }\n", &["A", "B"]), "E009@4");
}

#[test]
fn e009_opaque_atoms_conflict() {
    check(&with_goals("  goal A { contains(xs, 3) }\n  goal B { !contains(xs, 3) }\n", &["A", "B"]), "E009@4");
}

#[test]
fn no_conflict_when_satisfiable_together() {
    check(&with_goals("  goal A { n >= 2 }\n  goal B { n <= 4 || flag }\n", &["A", "B"]), "");
}

#[test]
fn no_conflict_with_disjunction_escape() {
    check(&with_goals("  goal A { n > 5 }\n  goal B { n < 3 || n == 7 }\n", &["A", "B"]), "");
}

#[test]
fn w001_different_priorities() {
    let src = with_goals("  goal Hi priority critical { n >= 5 }\n  goal Lo priority low { n <= 4 }\n", &["Hi", "Lo"]);
    check(&src, "W001@4");
    let p = compile("t.lxm", &src, &CompileOptions::default()).program.expect("compiles");
    assert_eq!(p.dominance.len(), 1);
    assert_eq!(p.goals[p.dominance[0].higher.index()].name, "Hi");
}

#[test]
fn w002_goal_without_transition() {
    check(&with_goals("  goal G { n > 1 }\n", &[]), "W002@3");
}

#[test]
fn w002_transition_cannot_reach_goal() {
    check(&with_goals("  goal G { n > 1 }\n  transition T for G { slice s { flag = true } }\n", &[]), "W002@3");
}

#[test]
fn emit_counts_as_reaching_the_goal() {
    let src = format!(
        "effect X.Go(n: int)\n{}",
        with_goals("  goal G { n > 1 }\n  transition T for G { slice s { emit X.Go(n: 2) } }\n", &[])
    );
    check(&src, "");
}

#[test]
fn send_closure_reaches_goal_through_handlers() {
    let src = "domain A {\n  state { n: int }\n  on Set(v: int) { n = v }\n}\ndomain B {\n  reads A\n  goal G { A.n > 1 }\n  transition T for G { slice s { send A.Set(v: 2) } }\n}\n";
    check(src, "");
    let p = compile("t.lxm", src, &CompileOptions::default()).program.expect("compiles");
    assert!(p.transitions[0].reaches_goal);
    assert_eq!(p.transitions[0].write_set, vec![lexum_compiler::program::FieldId(0)]);
}

#[test]
fn e002_duplicate_invariant_and_slice() {
    check(
        &with_goals("  invariant I { n >= 0 }\n  invariant I { n < 9 }\n  goal G { n > 1 }\n  transition T for G { slice s { n = 2 }\n slice s { n = 3 } }\n", &[]),
        "E002@4 E002@7",
    );
}
