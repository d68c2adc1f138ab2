//! Static livelock analysis (E009, W001).

use crate::check::SourceMap;
use crate::diagnostic::Diagnostic;
use crate::program::Program;

/// Compares goals that share fields.
pub fn analyse(_p: &mut Program, _map: &SourceMap, _diags: &mut Vec<Diagnostic>) {}
