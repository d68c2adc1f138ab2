//! Fault-injection tests and benchmarks for Lexum: real `lexumd` processes
//! on loopback ([`cluster`]), a wire-level test worker ([`worker`]) and a
//! linearizability checker for the histories the tests record
//! ([`linearizable`]).

pub mod cluster;
pub mod linearizable;
pub mod worker;
