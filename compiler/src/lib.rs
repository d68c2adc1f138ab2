//! The Lexum compiler: `.lxm` source in, a checked [`program::Program`] and
//! diagnostics out. The language is described in `docs/language.md`.
//!
//! The stages never fail: each returns its result plus diagnostics, so one run
//! reports many errors. [`compile`] runs them in order:
//!
//! - [`lexer`]: bytes to tokens (tokens borrow nothing and own nothing);
//! - [`syntax`]: the recovering parser and the AST (names borrow the source);
//!   `compile` keeps only an outline of each domain (its declarations) and
//!   parses a domain again, bodies included, just before checking it, so
//!   the whole tree of a large file is never in memory;
//! - [`resolve`]: declarations and symbol tables;
//! - [`check`]: bodies to IR with names, types, purity, clock/I/O and
//!   ownership checks, computing [`cost`] on the way;
//! - [`lower`]: read-sets, write-sets, send closures, `reaches_goal`, W002;
//! - [`livelock`]: goal pairs that share fields, E009/W001 and dominance.
//!
//! *Architecture invariant:* the compiler performs no I/O, reads no clock
//! and never panics on any input; the same source always gives the same
//! program bytes. *Architecture invariant:* no pass compares all pairs of
//! anything; the livelock pass visits only goals that share a field.
//!
//! ```
//! use lexum_compiler::{compile, render, CompileOptions};
//! let src = "domain Pool { state { nodes: int = 3 } invariant Sane { nodes >= 0 } }";
//! let c = compile("pool.lxm", src, &CompileOptions::default());
//! assert!(c.program.is_some());
//! print!("{}", render(&c.diagnostics, "pool.lxm", src, false));
//! ```

#![warn(missing_docs)]

pub mod bounds;
pub mod check;
pub mod cost;
pub mod diagnostic;
pub mod lexer;
pub mod livelock;
pub mod lower;
pub mod program;
pub mod resolve;
pub mod syntax;
pub mod synth;
pub mod types;

pub use diagnostic::{render, to_json, Code, Diagnostic, JsonDiagnostic, Severity, Span};
pub use program::Program;

/// Knobs of one compilation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileOptions {
    /// Maximum length of a list whose type does not declare one (`list<T>`).
    pub default_list_max: u32,
    /// Maximum static cost (evaluation steps) of one goal or invariant.
    pub cost_budget: u64,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions { default_list_max: 64, cost_budget: 10_000 }
    }
}

/// The result of [`compile`].
#[derive(Clone, Debug)]
pub struct Compilation {
    /// The program, `None` iff any diagnostic is an error.
    pub program: Option<Program>,
    /// Errors and warnings, in source order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Compilation {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Compiles one source file. Diagnostics carry byte spans; `file_name` is
/// what [`render`] and [`to_json`] print, and is not otherwise used here.
pub fn compile(file_name: &str, source: &str, options: &CompileOptions) -> Compilation {
    let _ = file_name;
    let mut diags = Vec::new();
    let outline = syntax::parse_outline(source, &mut diags);
    let syms = resolve::declare(&outline, options.default_list_max, &mut diags);
    let (mut program, map) = check::check(outline, source, &syms, options, &mut diags);
    drop(syms);
    let clean = !diags.iter().any(Diagnostic::is_error);
    lower::fill_sets(&mut program, &map, clean, &mut diags);
    if clean {
        bounds::diagnose(&program, &map, &mut diags);
    }
    if !diags.iter().any(Diagnostic::is_error) {
        livelock::analyse(&mut program, &map, &mut diags);
    }
    diags.sort_by_key(|d| (d.span.start, d.span.end));
    let failed = diags.iter().any(Diagnostic::is_error);
    Compilation { program: if failed { None } else { Some(program) }, diagnostics: diags }
}
