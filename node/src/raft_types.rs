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
    /// A step dispatched effects with it: the leader has tasks to send.
    pub dispatched: bool,
}

impl ApplyResponse {
    /// The outcome of each of the `count` entries that [`Entry::grouped`]
    /// put into the applied entry, in order: each part's for a batch, the
    /// entry's own for a lone entry.
    pub fn outcomes(&self, count: usize) -> Vec<Result<u64, Rejection>> {
        let at_index = |outcome: &Result<(), Rejection>| outcome.clone().map(|()| self.index);
        if self.parts.is_empty() {
            vec![at_index(&self.outcome); count]
        } else {
            self.parts.iter().map(at_index).collect()
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_grouped_entry_gets_its_own_outcome_at_the_shared_index() {
        assert!(matches!(Entry::grouped(vec![Entry::Noop]), Entry::Noop));
        assert!(
            matches!(Entry::grouped(vec![Entry::Noop, Entry::Noop]), Entry::Batch { entries } if entries.len() == 2)
        );
        let refused = Rejection { code: "E011".into(), message: "no".into() };
        let batch =
            ApplyResponse { index: 7, outcome: Ok(()), parts: vec![Ok(()), Err(refused.clone())], dispatched: false };
        assert_eq!(batch.outcomes(2), vec![Ok(7), Err(refused.clone())]);
        let lone = ApplyResponse { index: 8, outcome: Err(refused.clone()), parts: Vec::new(), dispatched: false };
        assert_eq!(lone.outcomes(1), vec![Err(refused)]);
    }
}
