//! Group commit of proposals from many callers (client mutations, worker
//! results).
//!
//! openraft appends each proposal on its own, and every node syncs each
//! append, so one proposal per request caps a cluster at one WAL sync per
//! request. Here concurrent entries queue up while up to [`IN_FLIGHT`]
//! proposals are in flight, and each proposal takes everything that queued
//! meanwhile as one [`Entry::Batch`]: one append, one sync and one
//! replication round for the whole group. A lone entry still goes out
//! at once, as itself.
//!
//! The engine applies a batch part by part, so every caller gets its own
//! outcome; they share the entry's log index.
//!
//! While this node leads and its workers have room, each group ends with
//! an [`Entry::DispatchArmed`] part naming them and their room: the steps the group
//! arms run and dispatch their effects in the same entry, and the
//! dispatcher sends the tasks as soon as the leader applies it (before
//! the callers hear back). A mutation that violates a goal then reaches a
//! worker after one commit instead of two.

use crate::cluster::{Cluster, ProposeError};
use crate::dispatcher::Dispatcher;
use lexum_engine::entry::Entry;
use std::sync::{Arc, OnceLock, Weak};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Proposals of batches in flight at once. The leader no longer waits for
/// its own sync, so an entry proposed at once is in the log for the next
/// AppendEntries; one that waits for a slot (a proposal ends only after its
/// commit and apply) misses it and waits a round more. 4 measured 3.2–3.7k
/// writes/s at 16 clients and a reaction p99 of 7–10 ms under 1,000
/// writes/s; 32 measured 4.6k/s and 6.0–7.1 ms; 128 no better than 32.
/// Beyond the cap, entries still queue up into batches.
const IN_FLIGHT: usize = 32;
/// Most entries in one batch.
const MAX_ENTRIES: usize = 256;
/// A batch stops taking entries once it holds this many request bytes.
const MAX_BYTES: usize = 1024 * 1024;
/// Entries waiting for a proposal before callers wait to enqueue.
const QUEUE: usize = 4096;

/// A validated entry waiting to be proposed.
struct Queued {
    entry: Entry,
    bytes: usize,
    done: oneshot::Sender<Result<u64, ProposeError>>,
}

/// The dispatcher that gives groups their room (set once, after both
/// exist; it sends what a group dispatched when the entry is applied).
type DispatcherHook = Arc<OnceLock<Weak<Dispatcher>>>;

/// The queue in front of Raft.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Queued>,
    dispatcher: DispatcherHook,
}

impl GroupCommit {
    /// Starts the proposer task for `cluster`.
    pub fn start(cluster: Cluster) -> GroupCommit {
        let (queue, waiting) = mpsc::channel(QUEUE);
        let dispatcher = DispatcherHook::default();
        tokio::spawn(propose_batches(cluster, waiting, dispatcher.clone()));
        GroupCommit { queue, dispatcher }
    }

    /// Lets groups dispatch the steps they arm to `dispatcher`'s workers.
    pub fn dispatch_armed_with(&self, dispatcher: &Arc<Dispatcher>) {
        let _ = self.dispatcher.set(Arc::downgrade(dispatcher));
    }

    /// Commits `entry` (already validated; `bytes` is roughly its request's
    /// size) and returns the index of the entry that carried it, or why
    /// the engine rejected it when it was applied.
    pub async fn commit(&self, entry: Entry, bytes: usize) -> Result<u64, ProposeError> {
        let (done, outcome) = oneshot::channel();
        self.queue
            .send(Queued { entry, bytes, done })
            .await
            .map_err(|_| ProposeError::Unavailable("the node is shutting down".into()))?;
        // A dropped sender means the proposer stopped mid-proposal.
        outcome.await.unwrap_or(Err(ProposeError::Unknown))
    }
}

/// Takes what has queued, up to the limits, whenever a proposal slot is free.
async fn propose_batches(cluster: Cluster, mut waiting: mpsc::Receiver<Queued>, dispatcher: DispatcherHook) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = waiting.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < MAX_ENTRIES && bytes < MAX_BYTES {
            let Ok(next) = waiting.try_recv() else { break };
            bytes += next.bytes;
            batch.push(next);
        }
        let cluster = cluster.clone();
        let dispatcher = dispatcher.get().and_then(Weak::upgrade);
        tokio::spawn(async move {
            propose(&cluster, batch, dispatcher).await;
            drop(slot);
        });
    }
}

/// Proposes one batch (ending with the room for what it arms, when the
/// dispatcher has any) and answers each of its callers.
async fn propose(cluster: &Cluster, batch: Vec<Queued>, dispatcher: Option<Arc<Dispatcher>>) {
    cluster.replica.metrics().requests_per_entry.observe(batch.len() as f64);
    let (mut entries, callers): (Vec<Entry>, Vec<_>) = batch.into_iter().map(|q| (q.entry, q.done)).unzip();
    let room = dispatcher.as_ref().map(|d| d.room()).unwrap_or_default();
    if !room.is_empty() {
        entries.push(Entry::DispatchArmed { workers: room });
    }
    let outcomes: Vec<Result<u64, ProposeError>> = match cluster.propose(Entry::grouped(entries)).await {
        Ok(response) => {
            response.outcomes(callers.len()).into_iter().map(|o| o.map_err(ProposeError::Rejected)).collect()
        }
        Err(error) => vec![Err(error); callers.len()],
    };
    for (caller, outcome) in callers.into_iter().zip(outcomes) {
        let _ = caller.send(outcome);
    }
}
