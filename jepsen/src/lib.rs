//! Fault-injection tests and benchmarks for Lexum: real `lexumd` processes
//! on loopback ([`cluster`], on ports from [`ports`]) or in network
//! namespaces that can be partitioned and degraded ([`netns`]), a
//! wire-level test worker ([`worker`]), the register workload
//! ([`registers`]), and checkers for the histories the tests record:
//! linearizability ([`linearizable`]) and no effect run by two workers at
//! once ([`exclusive`], [`effects`]); and the benchmark's anchor, a
//! three-member etcd ([`etcd`]).
//!
//! `jepsen/run` ([`soak`]) combines them: every workload at once under a
//! seeded schedule of every fault ([`schedule`], carried out by
//! [`nemesis`]), on the program of [`program`], with a store per run
//! ([`store`]).

pub mod cluster;
pub mod effects;
pub mod etcd;
pub mod exclusive;
pub mod linearizable;
pub mod nemesis;
pub mod netns;
pub mod ports;
pub mod program;
pub mod registers;
pub mod schedule;
pub mod soak;
pub mod store;
pub mod worker;
