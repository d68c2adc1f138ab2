//! The in-memory replica: the engine plus what Raft knows of it (last
//! applied log id, membership), and the fan-out of engine events.
//!
//! The state machine writes it; the gRPC services and the dispatcher read
//! it. The lock is never held across an `.await`.

use crate::raft_types::{ApplyResponse, LogId, StoredMembership};
use crate::store::state_machine::SnapshotPayload;
use lexum_engine::entry::Entry;
use lexum_engine::{Engine, Event};
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::{broadcast, watch};

/// How many recent events are kept for `watch` to resume from.
const EVENT_BACKLOG: usize = 50_000;

struct Inner {
    engine: Engine,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    backlog: VecDeque<Event>,
    /// Events before this index are no longer in the backlog.
    backlog_floor: u64,
}

/// The replica shared by the state machine, services and dispatcher.
pub struct Replica {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Event>,
    applied: watch::Sender<u64>,
    metrics: crate::metrics::Metrics,
}

impl Replica {
    /// A replica starting from `engine` with nothing applied.
    pub fn new(engine: Engine) -> Replica {
        let (events, _) = broadcast::channel(4096);
        let (applied, _) = watch::channel(0);
        Replica {
            inner: Mutex::new(Inner {
                engine,
                last_applied: None,
                membership: StoredMembership::default(),
                backlog: VecDeque::new(),
                backlog_floor: 0,
            }),
            events,
            applied,
            metrics: crate::metrics::Metrics::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock would already have crashed the
        // apply path; recover the data rather than poison every reader.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies one normal entry to the engine.
    pub fn apply(&self, log_id: LogId, entry: &Entry) -> ApplyResponse {
        let started = Instant::now();
        let applied = {
            let mut inner = self.lock();
            let applied = inner.engine.apply(log_id.index, entry);
            inner.last_applied = Some(log_id);
            for event in &applied.events {
                if inner.backlog.len() == EVENT_BACKLOG {
                    if let Some(dropped) = inner.backlog.pop_front() {
                        inner.backlog_floor = dropped.index + 1;
                    }
                }
                inner.backlog.push_back(event.clone());
                // Sent under the lock so `subscribe_events` sees each event
                // exactly once, in the backlog or on the channel. No
                // subscribers is fine.
                let _ = self.events.send(event.clone());
            }
            applied
        };
        let rejected = applied.parts.iter().chain(std::iter::once(&applied.outcome)).filter(|o| o.is_err()).count();
        self.metrics.observe_apply(started.elapsed(), rejected as u64);
        let traps = applied.events.iter().filter(|e| e.code.as_deref() == Some("E005")).count();
        self.metrics.observe_traps(traps as u64);
        self.applied.send_replace(log_id.index);
        ApplyResponse { index: log_id.index, outcome: applied.outcome, parts: applied.parts }
    }

    /// Records a Raft-only entry (blank or membership) as applied.
    pub fn note_applied(&self, log_id: LogId, membership: Option<StoredMembership>) {
        {
            let mut inner = self.lock();
            inner.last_applied = Some(log_id);
            if let Some(m) = membership {
                inner.membership = m;
            }
        }
        self.applied.send_replace(log_id.index);
    }

    /// Last applied log id and membership, for openraft.
    pub fn applied_state(&self) -> (Option<LogId>, StoredMembership) {
        let inner = self.lock();
        (inner.last_applied, inner.membership.clone())
    }

    /// A snapshot of the current state.
    pub fn snapshot_payload(&self) -> SnapshotPayload {
        let inner = self.lock();
        SnapshotPayload {
            last_applied: inner.last_applied,
            membership: inner.membership.clone(),
            engine: inner.engine.snapshot(),
        }
    }

    /// Replaces the state with a snapshot's.
    pub fn install(&self, payload: &SnapshotPayload) -> anyhow::Result<()> {
        let engine = Engine::restore(&payload.engine)?;
        let index = payload.last_applied.map(|l| l.index).unwrap_or(0);
        {
            let mut inner = self.lock();
            inner.engine = engine;
            inner.last_applied = payload.last_applied;
            inner.membership = payload.membership.clone();
            inner.backlog.clear();
            inner.backlog_floor = index + 1;
        }
        self.applied.send_replace(index);
        Ok(())
    }

    /// Runs `f` on the engine under the lock (keep `f` short).
    pub fn with_engine<T>(&self, f: impl FnOnce(&Engine) -> T) -> T {
        f(&self.lock().engine)
    }

    /// Index of the last applied entry (0 before any).
    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Subscribes to the applied index.
    pub fn subscribe_applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Backlogged events from `from_index` on, and a receiver for the rest.
    /// Subscribing under the lock guarantees no event falls between the two.
    /// Fails with the oldest index still held when `from_index` is older.
    pub fn subscribe_events(&self, from_index: u64) -> Result<(Vec<Event>, broadcast::Receiver<Event>), u64> {
        let inner = self.lock();
        if from_index != 0 && from_index < inner.backlog_floor {
            return Err(inner.backlog_floor);
        }
        let receiver = self.events.subscribe();
        let backlog = if from_index == 0 {
            Vec::new()
        } else {
            inner.backlog.iter().filter(|e| e.index >= from_index).cloned().collect()
        };
        Ok((backlog, receiver))
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }
}
