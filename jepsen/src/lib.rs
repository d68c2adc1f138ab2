//! Fault-injection tests and benchmarks for Lexum: real `lexumd` processes
//! on loopback ([`cluster`], on ports from [`ports`]), a wire-level test
//! worker ([`worker`]) and a linearizability checker for the histories the
//! tests record ([`linearizable`]).

pub mod cluster;
pub mod linearizable;
pub mod ports;
pub mod worker;
