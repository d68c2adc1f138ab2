//! The Lexum compiler: `.lxm` source in, a checked [`program::Program`] and
//! diagnostics out.

pub mod program;
