//! `lexumctl check FILE...`: compile locally, diagnostics in rustc style on
//! stderr (or one JSON array on stdout), exit 1 when any file has errors.

use super::settings::Settings;
use super::Failure;
use lexum_compiler::{compile, render, to_json, CompileOptions, Diagnostic};
use std::path::Path;

/// Checks every file; reports all of them before failing.
pub fn run(settings: &Settings, files: &[std::path::PathBuf]) -> Result<(), Failure> {
    let mut failed = false;
    let mut records = Vec::new();
    for path in files {
        let name = path.display().to_string();
        let source = match read_source(path) {
            Ok(source) => source,
            Err(message) => {
                eprintln!("lexumctl: error: {message}");
                failed = true;
                continue;
            }
        };
        let diagnostics = compile_file(&name, &source);
        failed |= diagnostics.iter().any(Diagnostic::is_error);
        if settings.json() {
            records.extend(to_json(&diagnostics, &name, &source));
        } else {
            eprint!("{}", render(&diagnostics, &name, &source, settings.color_stderr));
        }
    }
    if settings.json() {
        outln!("{}", serde_json::to_string_pretty(&records).unwrap_or_else(|_| "[]".into()));
    }
    if failed {
        Err(Failure::Reported)
    } else {
        Ok(())
    }
}

/// Reads a source file with a one-line error.
pub fn read_source(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))
}

/// Compiles with default options; a compiler panic becomes an internal-error
/// diagnostic instead of a crash.
pub fn compile_file(name: &str, source: &str) -> Vec<Diagnostic> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(|| compile(name, source, &CompileOptions::default()));
    std::panic::set_hook(previous);
    match outcome {
        Ok(compilation) => compilation.diagnostics,
        Err(_) => vec![Diagnostic::new(
            lexum_compiler::Code::E001,
            lexum_compiler::Span::new(0, 0),
            "internal compiler error while checking this file",
        )],
    }
}
