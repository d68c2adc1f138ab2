//! Fixture files: `tests/fixtures/{valid,invalid}/*.lxm`. Each file lists
//! the diagnostics it expects in header comments (`// expect: E003 @ 7`); a
//! valid file lists none (or only warnings). Beside each invalid file, a
//! `.stderr` snapshot holds the rendered diagnostics; run with
//! `LEXUM_BLESS=1` to rewrite the snapshots.

use lexum_compiler::diagnostic::line_col;
use lexum_compiler::{compile, render, CompileOptions};
use std::path::Path;

fn expectations(source: &str) -> Vec<String> {
    source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("// expect:"))
        .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// Compiles one fixture and compares it with its expectations and snapshot.
fn check(path: &Path, valid: bool) {
    let source = std::fs::read_to_string(path).expect("readable fixture");
    let name = path.file_name().and_then(|s| s.to_str()).unwrap_or_default();
    let c = compile(name, &source, &CompileOptions::default());
    let rendered = render(&c.diagnostics, name, &source, false);
    let got: Vec<String> =
        c.diagnostics.iter().map(|d| format!("{} @ {}", d.code, line_col(&source, d.span.start).0)).collect();
    assert_eq!(got, expectations(&source), "{name}:\n{rendered}");
    assert_eq!(c.program.is_some(), valid, "{name}:\n{rendered}");
    if !valid {
        let snap = path.with_extension("stderr");
        if std::env::var_os("LEXUM_BLESS").is_some() {
            std::fs::write(&snap, &rendered).expect("writable snapshot");
        } else {
            let want = std::fs::read_to_string(&snap).unwrap_or_else(|_| panic!("missing snapshot {}", snap.display()));
            assert_eq!(rendered, want, "{name}: snapshot differs (LEXUM_BLESS=1 rewrites it)");
        }
    }
}

fn run_dir(dir: &str, valid: bool) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "lxm"))
        .collect();
    paths.sort();
    for p in &paths {
        check(p, valid);
    }
    paths.len()
}

#[test]
fn fixtures() {
    assert!(run_dir("valid", true) >= 3);
    assert!(run_dir("invalid", false) >= 5);
}
