//! gRPC services of a node: client API, worker API and Raft transport,
//! with the token and role check (`auth.rs`), the resource limits behind
//! it (`limits.rs`) and size limits they share.

pub mod auth;
pub mod client;
pub mod limits;
pub mod raft;
pub mod worker;

pub use auth::Identity;

/// Largest Raft message (entries batches and snapshot chunks).
pub const RAFT_MESSAGE_LIMIT: usize = 64 * 1024 * 1024;
