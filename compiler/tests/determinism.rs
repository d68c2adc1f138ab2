//! The compiler's verdicts do not depend on the machine: no analysis reads
//! a clock or sets a time budget (the livelock solver is bounded by a
//! number of branch-and-bound nodes), and a question the budget cuts short
//! gets the same conservative answer every time.

use lexum_compiler::{compile, CompileOptions};

/// Source files of the compiler, with their text.
fn sources() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read source");
                out.push((path.display().to_string(), text));
            }
        }
    }
    out
}

#[test]
fn no_analysis_reads_a_clock_or_sets_a_time_budget() {
    for (path, text) in sources() {
        for needle in ["Instant::now", "SystemTime", "set_time_limit", "time_limit ="] {
            assert!(!text.contains(needle), "{path} uses `{needle}`: compile verdicts would depend on machine speed");
        }
    }
}

#[test]
fn a_question_the_node_budget_cuts_short_gets_the_same_answer_every_time() {
    // 2a - 2b == 1 has no integer solution, but every linear relaxation
    // does: branch and bound would search the whole range of `a`.
    let source = r#"
domain Left {
  state { a: int = 0  b: int = 0 }
  goal Odd { 2 * a - 2 * b == 1 }
  goal Small { a <= 5 }
}
"#;
    let verdict = || {
        let c = compile("odd.lxm", source, &CompileOptions::default());
        c.diagnostics.iter().map(|d| d.code).collect::<Vec<_>>()
    };
    let first = verdict();
    for _ in 0..3 {
        assert_eq!(verdict(), first);
    }
}
