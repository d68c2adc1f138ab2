//! The bounds every compiled program keeps (`lexum_compiler::bounds`):
//! nothing the compiler accepts is refused by a node's decoder or
//! validator (the parser refuses deep nesting first; a body over a bound
//! that got past it would be E008 where it was written).

use lexum_compiler::program::Program;
use lexum_compiler::{bounds, compile, CompileOptions};

fn chain(terms: usize) -> String {
    let sum = vec!["nodes"; terms].join(" + ");
    format!("domain Pool {{\n  state {{ nodes: int = 1 }}\n  invariant Sane {{ nodes >= 0 }}\n  transition Grow for Big {{ slice s {{ nodes = {sum} }} }}\n  goal Big {{ nodes >= 10 }}\n}}\n")
}

/// The longest `+` chain the parser accepts (it refuses deeper nesting
/// with E001 before any bound of the program is reached).
fn longest_accepted_chain() -> usize {
    (1..1000)
        .rev()
        .step_by(10)
        .find(|n| compile("c.lxm", &chain(*n), &CompileOptions::default()).program.is_some())
        .expect("some chain compiles")
}

#[test]
fn the_deepest_program_the_parser_accepts_is_within_the_bounds() {
    let n = longest_accepted_chain();
    assert!(n >= 100, "chains of {n} terms");
    let c = compile("deep.lxm", &chain(n + 20), &CompileOptions::default());
    assert!(c.program.is_none(), "just past it is refused: {:?}", c.diagnostics);
    let program = compile("ok.lxm", &chain(n), &CompileOptions::default()).program.expect("compiles");
    let decoded = Program::decode(&program.encode()).expect("decodes");
    assert_eq!(bounds::validate(&decoded), Ok(()));
}

#[test]
fn what_the_compiler_accepts_decodes_and_validates() {
    let source = chain(100);
    let c = compile("ok.lxm", &source, &CompileOptions::default());
    let program = c.program.expect("compiles");
    let decoded = Program::decode(&program.encode()).expect("decodes");
    assert_eq!(bounds::validate(&decoded), Ok(()));
}
