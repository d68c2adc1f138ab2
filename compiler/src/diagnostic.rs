//! Diagnostics: the one [`Diagnostic`] type every stage produces, its codes,
//! and the two renderers (rustc-style text and JSON records).

use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A byte range `start..end` into the source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// A span from byte offsets.
    pub fn new(start: usize, end: usize) -> Span {
        Span { start: start as u32, end: end.max(start) as u32 }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span { start: self.start.min(other.start), end: self.end.max(other.end) }
    }
}

/// Stable diagnostic codes (SPEC §2.3). Their meanings never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Code {
    /// Syntax error.
    E001,
    /// Unknown name.
    E002,
    /// Type mismatch.
    E003,
    /// Impure goal or invariant.
    E004,
    /// Oscillation detected (runtime).
    E005,
    /// Wall clock, randomness or I/O requested.
    E006,
    /// Ownership violation.
    E007,
    /// Cost over budget.
    E008,
    /// Static livelock between equal-priority goals.
    E009,
    /// Transition retries exhausted (runtime).
    E010,
    /// Invariant would be violated: mutation rejected (runtime).
    E011,
    /// Lower-priority goal dominated by a conflicting higher one.
    W001,
    /// Goal has no transition that can repair it.
    W002,
}

impl Code {
    /// `"E001"` etc.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::E001 => "E001",
            Code::E002 => "E002",
            Code::E003 => "E003",
            Code::E004 => "E004",
            Code::E005 => "E005",
            Code::E006 => "E006",
            Code::E007 => "E007",
            Code::E008 => "E008",
            Code::E009 => "E009",
            Code::E010 => "E010",
            Code::E011 => "E011",
            Code::W001 => "W001",
            Code::W002 => "W002",
        }
    }

    /// The severity a code always has (`W` codes are warnings).
    pub fn severity(self) -> Severity {
        match self {
            Code::W001 | Code::W002 => Severity::Warning,
            _ => Severity::Error,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error or warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Severity {
    /// Compilation fails.
    Error,
    /// Reported; the program still compiles.
    Warning,
}

/// One finding about the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Stable code.
    pub code: Code,
    /// Error or warning.
    pub severity: Severity,
    /// One-line message.
    pub message: String,
    /// Primary location.
    pub span: Span,
    /// Secondary locations with their own messages.
    pub labels: Vec<(Span, String)>,
    /// A suggestion, rendered as a note.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A diagnostic with the code's severity and no labels or hint.
    pub fn new(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic { code, severity: code.severity(), message: message.into(), span, labels: Vec::new(), hint: None }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a secondary label.
    pub fn with_label(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push((span, message.into()));
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Renders diagnostics in rustc style: code, `file:line:col`, the source line
/// with the span underlined, labels, and the hint as a note.
pub fn render(diags: &[Diagnostic], file_name: &str, source: &str, color: bool) -> String {
    let file = SimpleFile::new(file_name, source);
    let config = term::Config::default();
    let mut out = String::new();
    for d in diags {
        let cs_diag = to_codespan(d, source);
        if color {
            let mut buf = term::termcolor::Buffer::ansi();
            if term::emit_to_write_style(&mut buf, &config, &file, &cs_diag).is_ok() {
                out.push_str(&String::from_utf8_lossy(buf.as_slice()));
            }
        } else {
            let mut s = String::new();
            if term::emit_to_string(&mut s, &config, &file, &cs_diag).is_ok() {
                out.push_str(&s);
            }
        }
    }
    out
}

fn clamp(span: Span, source: &str) -> std::ops::Range<usize> {
    let mut start = (span.start as usize).min(source.len());
    while !source.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (span.end as usize).clamp(start, source.len());
    while !source.is_char_boundary(end) {
        end += 1;
    }
    start..end
}

fn to_codespan(d: &Diagnostic, source: &str) -> cs::Diagnostic<()> {
    let base = match d.severity {
        Severity::Error => cs::Diagnostic::error(),
        Severity::Warning => cs::Diagnostic::warning(),
    };
    let mut labels = vec![cs::Label::primary((), clamp(d.span, source))];
    for (span, msg) in &d.labels {
        labels.push(cs::Label::secondary((), clamp(*span, source)).with_message(msg.clone()));
    }
    let mut diag = base.with_code(d.code.as_str()).with_message(d.message.clone()).with_labels(labels);
    if let Some(h) = &d.hint {
        diag = diag.with_notes(vec![format!("hint: {h}")]);
    }
    diag
}

/// A diagnostic as a flat JSON record for tools (`lexumctl check --output json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonDiagnostic {
    /// `"E003"`.
    pub code: String,
    /// `"error"` or `"warning"`.
    pub severity: String,
    /// The file name given to the compiler.
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
    /// The message (with the hint appended after ` — hint: ` when present).
    pub message: String,
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: u32) -> (u32, u32) {
    let mut off = (offset as usize).min(source.len());
    while off > 0 && !source.is_char_boundary(off) {
        off -= 1;
    }
    let before = &source[..off];
    let line = before.bytes().filter(|b| *b == b'\n').count() as u32 + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = source[line_start..off].chars().count() as u32 + 1;
    (line, column)
}

/// Converts diagnostics to JSON records.
pub fn to_json(diags: &[Diagnostic], file_name: &str, source: &str) -> Vec<JsonDiagnostic> {
    diags
        .iter()
        .map(|d| {
            let (line, column) = line_col(source, d.span.start);
            let message = match &d.hint {
                Some(h) => format!("{} — hint: {h}", d.message),
                None => d.message.clone(),
            };
            JsonDiagnostic {
                code: d.code.as_str().to_string(),
                severity: match d.severity {
                    Severity::Error => "error".into(),
                    Severity::Warning => "warning".into(),
                },
                file: file_name.to_string(),
                line,
                column,
                message,
            }
        })
        .collect()
}
