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
