//! Fault-injection tests and benchmarks for Lexum: real `lexumd` processes
//! on loopback ([`cluster`], on ports from [`ports`]) or in network
//! namespaces that can be partitioned ([`netns`]), a wire-level test
//! worker ([`worker`]), the register workload ([`registers`]), and checkers
//! for the histories the tests record: linearizability ([`linearizable`])
//! and no effect run by two workers at once ([`exclusive`]); and the
//! benchmark's anchor, a three-member etcd ([`etcd`]).

pub mod cluster;
pub mod etcd;
pub mod exclusive;
pub mod linearizable;
pub mod netns;
pub mod ports;
pub mod registers;
pub mod worker;
