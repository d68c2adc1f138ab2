//! Generated gRPC types and services for the Lexum client, worker and Raft
//! APIs (`proto/lexum/v1/*.proto`). Conversions to engine and compiler types
//! live in the crates that own those types, not here.

/// Version 1 of the Lexum wire protocol.
pub mod v1 {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("lexum.v1");
}

/// Response metadata key carrying the leader's client address on redirects.
pub const LEADER_METADATA_KEY: &str = "lexum-leader";
/// Request metadata key carrying the bearer token (`authorization: Bearer ...`).
pub const AUTH_METADATA_KEY: &str = "authorization";
/// Metadata key of a RESOURCE_EXHAUSTED status saying how many
/// milliseconds to wait before trying again (a node's `[limits]`).
pub const RETRY_AFTER_METADATA_KEY: &str = "retry-after-ms";
/// Largest request a node accepts, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
