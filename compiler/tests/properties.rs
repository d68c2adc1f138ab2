//! Properties: `compile` and `render` never panic, on random bytes or on
//! mutated valid programs; compilation is deterministic; the outline that
//! `compile` parses reports what the full parse reports and gives every
//! domain back whole.

use lexum_compiler::program::Program;
use lexum_compiler::syntax::{parse, parse_outline, reparse_domain};
use lexum_compiler::{compile, render, to_json, CompileOptions};
use proptest::prelude::*;

const SEEDS: &[&str] = &[
    include_str!("../../examples/fleet.lxm"),
    include_str!("../../examples/autoscaler.lxm"),
    include_str!("../../examples/drift.lxm"),
    include_str!("../../examples/priorities.lxm"),
    include_str!("../../examples/tugofwar.lxm"),
];

/// Compiles and renders; returns whether it produced a program.
fn check(source: &str) -> bool {
    let c = compile("fuzz.lxm", source, &CompileOptions::default());
    let _ = render(&c.diagnostics, "fuzz.lxm", source, false);
    let _ = render(&c.diagnostics, "fuzz.lxm", source, true);
    let _ = to_json(&c.diagnostics, "fuzz.lxm", source);
    if let Some(p) = &c.program {
        assert_eq!(Program::decode(&p.encode()).as_ref(), Ok(p));
    }
    c.program.is_some()
}

/// The outline parse reports exactly the full parse's diagnostics; its
/// domains are the full domains without bodies, and each one parses again
/// into the full domain.
fn outline_agrees(source: &str) {
    let (mut full_diags, mut outline_diags) = (Vec::new(), Vec::new());
    let full = parse(source, &mut full_diags);
    let outline = parse_outline(source, &mut outline_diags);
    assert_eq!(outline_diags, full_diags);
    assert_eq!(outline.effects, full.effects);
    assert_eq!(outline.domains.len(), full.domains.len());
    for (whole, outlined) in full.domains.iter().zip(&outline.domains) {
        let mut stripped = whole.clone();
        stripped.strip_bodies();
        assert_eq!(outlined, &stripped);
        assert_eq!(reparse_domain(source, outlined.span).as_ref(), Some(whole));
    }
}

/// A mutation of a valid program: delete, duplicate or insert a slice of it.
fn mutate(seed: &str, at: usize, len: usize, kind: u8, insert: &str) -> String {
    let bytes = seed.as_bytes();
    let at = at % (bytes.len() + 1);
    let end = (at + len).min(bytes.len());
    let mut out = bytes[..at].to_vec();
    match kind % 3 {
        0 => {}
        1 => {
            out.extend_from_slice(&bytes[at..end]);
            out.extend_from_slice(&bytes[at..end]);
        }
        _ => out.extend_from_slice(insert.as_bytes()),
    }
    out.extend_from_slice(&bytes[end..]);
    String::from_utf8_lossy(&out).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_tokens_never_panic(words in proptest::collection::vec(
        prop::sample::select(vec!["domain", "D", "{", "}", "(", ")", "goal", "G", "state", "x", ":", "int", "list", "<", ">",
            "=", "==", "emit", "send", ".", "->", "all", "in", "any", "transition", "for", "slice", "s", "1", "2s", "..",
            "\"a\"", ",", "&&", "!", "-", "on", "reads", "retry", "backoff", "now", "[", "]", "let", "if", "else"]),
        0..120)) {
        check(&words.join(" "));
        outline_agrees(&words.join(" "));
    }

    #[test]
    fn mutated_programs_never_panic(
        seed in 0..SEEDS.len(), at in 0usize..3000, len in 0usize..40, kind in any::<u8>(),
        insert in "[ -~\n]{0,12}",
    ) {
        let source = mutate(SEEDS[seed], at, len, kind, &insert);
        check(&source);
        outline_agrees(&source);
    }
}

#[test]
fn seeds_outline_and_reparse_whole() {
    for src in SEEDS {
        outline_agrees(src);
    }
}

#[test]
fn deeply_nested_input_does_not_overflow() {
    let mut s = String::from("domain D { state { x: int } goal G { ");
    s.push_str(&"(".repeat(5000));
    s.push_str(&"!".repeat(5000));
    s.push_str(" }}");
    assert!(!check(&s));
}

#[test]
fn long_operator_chains_do_not_overflow() {
    let s = format!("domain D {{ state {{ x: int }} goal G {{ x > 0{} }} }}", " + 1".repeat(100_000));
    assert!(!check(&s));
}

#[test]
fn same_source_gives_same_bytes_and_hash() {
    for src in SEEDS {
        let a = compile("a.lxm", src, &CompileOptions::default()).program.expect("compiles");
        let b = compile("b.lxm", src, &CompileOptions::default()).program.expect("compiles");
        assert_eq!(a.encode(), b.encode());
        assert_eq!(a.hash(), b.hash());
    }
}

#[test]
fn different_sources_give_different_hashes() {
    let a = compile("a.lxm", SEEDS[0], &CompileOptions::default()).program.expect("compiles");
    let changed = SEEDS[0].replace("want: int = 3", "want: int = 4");
    let b = compile("a.lxm", &changed, &CompileOptions::default()).program.expect("compiles");
    assert_ne!(a.hash(), b.hash());
}
