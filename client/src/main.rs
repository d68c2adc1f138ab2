//! `lexumctl`: placeholder.
fn main() {}
