//! The `lxm` code blocks of `docs/language.md` compile as the page says:
//! plain blocks without errors, `lxm,error CODE` blocks with that error,
//! `lxm,warning CODE` blocks without errors and with that warning.

use lexum_compiler::{compile, render, CompileOptions};

struct Block {
    info: String,
    line: usize,
    source: String,
}

fn blocks(doc: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    for (i, line) in doc.lines().enumerate() {
        if let Some(b) = current.as_mut() {
            if line.trim_start().starts_with("```") {
                out.extend(current.take());
            } else {
                b.source.push_str(line);
                b.source.push('\n');
            }
        } else if let Some(info) = line.trim_start().strip_prefix("```") {
            if info.starts_with("lxm") {
                current = Some(Block { info: info.to_string(), line: i + 1, source: String::new() });
            } else if !info.is_empty() {
                current = Some(Block { info: "skip".into(), line: i + 1, source: String::new() });
            }
        }
    }
    out.into_iter().filter(|b| b.info != "skip").collect()
}

/// Checks one block against its info string.
fn check(b: &Block) {
    let c = compile("language.md", &b.source, &CompileOptions::default());
    let codes: Vec<&str> = c.diagnostics.iter().map(|d| d.code.as_str()).collect();
    let shown = render(&c.diagnostics, "language.md", &b.source, false);
    let parts: Vec<&str> = b.info.split(|ch: char| ch == ',' || ch.is_whitespace()).filter(|s| !s.is_empty()).collect();
    match parts.as_slice() {
        ["lxm"] => assert!(c.program.is_some(), "block at line {} has errors:\n{shown}", b.line),
        ["lxm", "error", code] => {
            assert!(
                c.program.is_none() && codes.contains(code),
                "block at line {} should give {code}:\n{shown}",
                b.line
            )
        }
        ["lxm", "warning", code] => assert!(
            c.program.is_some() && codes.contains(code),
            "block at line {} should compile with {code}:\n{shown}",
            b.line
        ),
        other => panic!("block at line {}: unknown info string {other:?}", b.line),
    }
}

#[test]
fn language_reference_blocks_compile_as_documented() {
    let doc = include_str!("../../docs/language.md");
    let all = blocks(doc);
    assert!(all.len() >= 15, "found only {} blocks", all.len());
    for b in &all {
        check(b);
    }
}

#[test]
fn every_diagnostic_code_is_documented() {
    let doc = include_str!("../../docs/language.md");
    for code in ["E001", "E002", "E003", "E004", "E005", "E006", "E007", "E008", "E009", "E010", "E011", "W001", "W002"]
    {
        assert!(doc.contains(&format!("**{code} ")), "{code} has no section");
    }
}
