//! Group commit of client mutations.
//!
//! openraft 0.9 appends and syncs each proposal on its own and waits for
//! the sync before it takes the next, so one proposal per client write caps
//! a cluster at one WAL sync per write. Here concurrent mutations queue up
//! while a few proposals are in flight, and each proposal takes everything
//! that queued meanwhile as one [`Entry::Mutations`]: one append, one sync
//! and one replication round for the whole group. A lone mutation still
//! goes out at once, as a plain [`Entry::Mutate`].
//!
//! The engine applies a batch mutation by mutation, so every client gets
//! its own outcome; they share the entry's log index.

use crate::cluster::{Cluster, ProposeError};
use lexum_engine::entry::{Entry, FieldWrite};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Proposals of batches in flight at once: enough to keep the leader's
/// sync and the followers' replication overlapping, few enough that
/// mutations queue up into batches.
const IN_FLIGHT: usize = 4;
/// Most mutations in one entry.
const MAX_MUTATIONS: usize = 256;
/// A batch stops taking mutations once it holds this many request bytes.
const MAX_BYTES: usize = 1024 * 1024;
/// Mutations waiting for a proposal before callers wait to enqueue.
const QUEUE: usize = 4096;

/// A validated mutation waiting to be proposed.
struct Queued {
    writes: Vec<FieldWrite>,
    bytes: usize,
    done: oneshot::Sender<Result<u64, ProposeError>>,
}

/// The queue in front of Raft for client mutations.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Queued>,
}

impl GroupCommit {
    /// Starts the proposer task for `cluster`.
    pub fn start(cluster: Cluster) -> GroupCommit {
        let (queue, waiting) = mpsc::channel(QUEUE);
        tokio::spawn(propose_batches(cluster, waiting));
        GroupCommit { queue }
    }

    /// Commits `writes` (already validated; `bytes` is the request's size)
    /// and returns the index of the entry that carried them.
    pub async fn commit(&self, writes: Vec<FieldWrite>, bytes: usize) -> Result<u64, ProposeError> {
        let (done, outcome) = oneshot::channel();
        self.queue
            .send(Queued { writes, bytes, done })
            .await
            .map_err(|_| ProposeError::Unavailable("the node is shutting down".into()))?;
        // A dropped sender means the proposer stopped mid-proposal.
        outcome.await.unwrap_or(Err(ProposeError::Unknown))
    }
}

/// Takes what has queued, up to the limits, whenever a proposal slot is free.
async fn propose_batches(cluster: Cluster, mut waiting: mpsc::Receiver<Queued>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = waiting.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < MAX_MUTATIONS && bytes < MAX_BYTES {
            let Ok(next) = waiting.try_recv() else { break };
            bytes += next.bytes;
            batch.push(next);
        }
        let cluster = cluster.clone();
        tokio::spawn(async move {
            propose(&cluster, batch).await;
            drop(slot);
        });
    }
}

/// Proposes one batch and answers each of its callers.
async fn propose(cluster: &Cluster, mut batch: Vec<Queued>) {
    cluster.replica.metrics().mutations_per_entry.observe(batch.len() as f64);
    let entry = match batch.as_mut_slice() {
        [single] => Entry::Mutate { writes: std::mem::take(&mut single.writes) },
        many => Entry::Mutations { batch: many.iter_mut().map(|q| std::mem::take(&mut q.writes)).collect() },
    };
    match cluster.propose(entry).await {
        Err(error) => {
            for queued in batch {
                let _ = queued.done.send(Err(error.clone()));
            }
        }
        Ok(response) if response.parts.is_empty() => {
            let outcome = response.outcome.map(|()| response.index).map_err(ProposeError::Rejected);
            for queued in batch {
                let _ = queued.done.send(outcome.clone());
            }
        }
        Ok(response) => {
            for (queued, part) in batch.into_iter().zip(response.parts) {
                let _ = queued.done.send(part.map(|()| response.index).map_err(ProposeError::Rejected));
            }
        }
    }
}
