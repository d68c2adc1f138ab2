//! `lexumd`: placeholder until the node lands.
fn main() {}
