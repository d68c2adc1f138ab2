//! Syntax: the tree ([`ast`]) and the recovering parser ([`parser`]).

pub mod ast;
pub mod parser;

pub use parser::{parse, parse_outline, reparse_domain};
