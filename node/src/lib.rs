//! `lexumd`, the Lexum cluster node: the deterministic engine
//! (`lexum-engine`) replicated with openraft, stored in RocksDB and served
//! over tonic.
//!
//! The binary (`main.rs`) is glue: it parses [`config::Flags`], loads
//! [`config::Settings`] and calls [`node::run`].

pub mod cluster;
pub mod config;
pub mod convert;
pub mod dispatcher;
pub mod group_commit;
pub mod http;
pub mod metrics;
pub mod network;
pub mod node;
pub mod raft_types;
pub mod read_batch;
pub mod replay;
pub mod replica;
pub mod service;
pub mod store;
pub mod test_faults;
pub mod ui;
