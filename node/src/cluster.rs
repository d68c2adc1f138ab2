//! The node's handle on the replicated log: propose entries, linearize
//! reads, find the leader. Services and the dispatcher go through it.

use crate::raft_types::{ApplyResponse, NodeId, Raft};
use crate::read_batch::ReadBatcher;
use crate::replica::Replica;
use lexum_engine::entry::Entry;
use lexum_engine::{Engine, Rejection};
use std::sync::Arc;
use std::time::Duration;

/// Why a proposal or a linearizable read did not happen.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the leader; the leader's address if known.
    #[error("not the leader{}", leader.as_ref().map(|l| format!(" (leader is {l})")).unwrap_or_default())]
    NotLeader {
        /// Client address of the current leader.
        leader: Option<String>,
    },
    /// The engine refused the entry; nothing changed.
    #[error("{0}")]
    Rejected(Rejection),
    /// Raft could not complete the request (no quorum, shutting down).
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// The entry was proposed but not seen committed in time: it may still
    /// commit, so retrying blindly could apply it twice.
    #[error("timed out waiting for commit; the outcome is unknown")]
    Unknown,
}

/// Shared handle: Raft plus the local replica.
#[derive(Clone)]
pub struct Cluster {
    /// This node's id.
    pub id: NodeId,
    /// The Raft instance.
    pub raft: Raft,
    /// The local replica of the engine.
    pub replica: Arc<Replica>,
    /// How long a proposal may take before it is reported unavailable.
    pub propose_timeout: Duration,
    /// A leader that has not heard from a quorum for this long stops acting
    /// (openraft 0.9 leaders step down only on seeing a higher term).
    pub quorum_timeout: Duration,
    /// Bearer token for calls to peers (status gathering).
    pub peer_token: Option<String>,
    /// TLS for calls to peers (status gathering), as Raft uses it.
    pub peer_tls: Option<tonic::transport::ClientTlsConfig>,
    /// Gathers concurrent linearizable reads into shared leadership checks.
    pub reads: Arc<ReadBatcher>,
}

impl Cluster {
    /// Validates `entry` against the local engine, then commits it and waits
    /// until it is applied here. Bad input is refused before it reaches the log.
    pub async fn propose_validated(&self, entry: Entry) -> Result<u64, ProposeError> {
        self.admit(|engine| engine.validate(&entry)).await?;
        let response = self.propose(entry).await?;
        response.outcome.map_err(ProposeError::Rejected)?;
        Ok(response.index)
    }

    /// Refuses a request unless this node leads and `check` (a dry run on
    /// the local engine) passes, so bad input never reaches the log.
    pub async fn admit(&self, check: impl FnOnce(&Engine) -> Result<(), Rejection>) -> Result<(), ProposeError> {
        self.ensure_leader().await?;
        self.replica.with_engine(check).map_err(ProposeError::Rejected)
    }

    /// Commits `entry` and returns the engine's answer.
    pub async fn propose(&self, entry: Entry) -> Result<ApplyResponse, ProposeError> {
        let write = self.raft.client_write(entry);
        match tokio::time::timeout(self.propose_timeout, write).await {
            Err(_) => Err(ProposeError::Unknown),
            Ok(Ok(response)) => Ok(response.data),
            Ok(Err(err)) => Err(self.classify(err.forward_to_leader().map(|f| f.leader_node.clone()), err.to_string())),
        }
    }

    /// Waits until this node, as leader, has applied everything committed
    /// before the call (read index). Fails on followers with the leader's
    /// address. Concurrent calls share one leadership check (see
    /// [`ReadBatcher`]).
    pub async fn linearize(&self) -> Result<(), ProposeError> {
        let cluster = self.clone();
        self.reads
            .read(move || {
                let cluster = cluster.clone();
                async move { cluster.check_leadership().await }
            })
            .await
    }

    /// One leadership check and wait for the read index, made now.
    async fn check_leadership(&self) -> Result<(), ProposeError> {
        let read = self.raft.ensure_linearizable();
        match tokio::time::timeout(self.propose_timeout, read).await {
            Err(_) => Err(ProposeError::Unavailable("timed out confirming leadership".into())),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(self.classify(err.forward_to_leader().map(|f| f.leader_node.clone()), err.to_string())),
        }
    }

    /// Fails with `NotLeader` unless this node currently believes it leads.
    pub async fn ensure_leader(&self) -> Result<(), ProposeError> {
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.current_leader == Some(self.id) {
            return Ok(());
        }
        Err(ProposeError::NotLeader { leader: self.leader_address() })
    }

    /// The commit index as far as this node knows. openraft 0.9 does not
    /// report it, so a leader derives it from replication progress (the
    /// highest index a quorum of every voter configuration has stored);
    /// anywhere else it is the last applied index, which is its floor.
    pub fn commit_index(&self) -> u64 {
        let metrics = self.raft.metrics().borrow().clone();
        let applied = metrics.last_applied.map_or(0, |l| l.index);
        let Some(replication) = &metrics.replication else { return applied };
        let stored = |id: NodeId| {
            if id == self.id {
                metrics.last_log_index.unwrap_or(0)
            } else {
                replication.get(&id).cloned().flatten().map_or(0, |l| l.index)
            }
        };
        quorum_index(metrics.membership_config.membership().get_joint_config(), stored).max(applied)
    }

    /// Whether this node leads now and has heard from a quorum recently.
    pub fn is_leader(&self) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let quorum_ms = self.quorum_timeout.as_millis() as u64;
        metrics.current_leader == Some(self.id) && metrics.millis_since_quorum_ack.is_none_or(|ms| ms <= quorum_ms)
    }

    /// The current leader's client address, if known.
    pub fn leader_address(&self) -> Option<String> {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        metrics.membership_config.membership().get_node(&leader).map(|n| n.addr.clone())
    }

    fn classify(&self, forward: Option<Option<openraft::BasicNode>>, message: String) -> ProposeError {
        match forward {
            Some(node) => ProposeError::NotLeader { leader: node.map(|n| n.addr).or_else(|| self.leader_address()) },
            None => ProposeError::Unavailable(message),
        }
    }
}

/// The highest index stored by a majority of every configuration (two
/// during a joint-consensus change), given each voter's stored index.
fn quorum_index(configs: &[std::collections::BTreeSet<NodeId>], stored: impl Fn(NodeId) -> u64) -> u64 {
    configs
        .iter()
        .map(|voters| {
            let mut indexes: Vec<u64> = voters.iter().map(|&id| stored(id)).collect();
            indexes.sort_unstable_by(|a, b| b.cmp(a));
            indexes.get(voters.len() / 2).copied().unwrap_or(0)
        })
        .min()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_commit_index_is_what_a_majority_of_every_configuration_stored() {
        let stored = |id: NodeId| [0, 10, 7, 3, 12][id as usize];
        let three: BTreeSet<NodeId> = [1, 2, 3].into();
        assert_eq!(quorum_index(std::slice::from_ref(&three), stored), 7);
        let joint = [three, [0, 3, 4].into()];
        assert_eq!(quorum_index(&joint, stored), 3, "both halves of a joint configuration must agree");
        assert_eq!(quorum_index(&[[1].into()], stored), 10, "a single voter commits alone");
        assert_eq!(quorum_index(&[], stored), 0);
    }
}
