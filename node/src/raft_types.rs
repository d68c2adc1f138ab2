//! The openraft type configuration: what a log entry carries and what
//! applying it returns.

use lexum_engine::entry::Entry;
use lexum_engine::Rejection;
use serde::{Deserialize, Serialize};
use std::io::Cursor;

/// What applying one entry returned to the proposer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyResponse {
    /// Log index of the entry.
    pub index: u64,
    /// `Err` when the engine rejected the entry (state unchanged).
    pub outcome: Result<(), Rejection>,
    /// For a batch of mutations, each one's outcome, in order; empty otherwise.
    pub parts: Vec<Result<(), Rejection>>,
}

openraft::declare_raft_types!(
    /// Lexum's Raft types: engine entries in, apply outcomes out.
    pub TypeConfig:
        D = Entry,
        R = ApplyResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// The Raft handle of a Lexum node.
pub type Raft = openraft::Raft<TypeConfig>;
/// A node id.
pub type NodeId = u64;
/// A log id.
pub type LogId = openraft::LogId<NodeId>;
/// A replicated log entry.
pub type LogEntry = openraft::Entry<TypeConfig>;
/// A storage error.
pub type StorageError = openraft::StorageError<NodeId>;
/// The stored membership.
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
/// A snapshot's metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
