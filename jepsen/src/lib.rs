//! Fault-injection tests and benchmarks for Lexum: real `lexumd` processes
//! on loopback ([`cluster`]), a wire-level test worker ([`worker`]).

pub mod cluster;
pub mod worker;
