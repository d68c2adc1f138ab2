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
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::{broadcast, watch};

/// How many recent events are kept for `watch` to resume from (give or
/// take one chunk).
const EVENT_BACKLOG: usize = 50_000;
/// Events per chunk of the backlog.
const CHUNK: usize = 1024;
/// Events a live watcher may fall behind before its stream ends with
/// DATA_LOSS: several times what one entry of a large fleet makes (a
/// mutation of 1,024 goals and the steps it dispatches make about 4,000).
const LIVE_LAG: usize = 16_384;

/// Recent events in shared chunks, so a watcher's catch-up takes a few
/// reference counts under the lock and copies its events after letting go.
#[derive(Default)]
struct Backlog {
    /// Full chunks, oldest first.
    sealed: VecDeque<Arc<Vec<Event>>>,
    /// The chunk being filled; a watcher holding it makes the next push
    /// copy it (at most [`CHUNK`] events, once per subscription).
    open: Arc<Vec<Event>>,
    len: usize,
    /// Events before this index are no longer in the backlog.
    floor: u64,
}

impl Backlog {
    fn push(&mut self, event: Event) {
        Arc::make_mut(&mut self.open).push(event);
        self.len += 1;
        if self.open.len() >= CHUNK {
            let full = std::mem::take(&mut self.open);
            self.sealed.push_back(full);
        }
        while self.len > EVENT_BACKLOG {
            let Some(oldest) = self.sealed.pop_front() else { break };
            self.len -= oldest.len();
            if let Some(last) = oldest.last() {
                self.floor = last.index + 1;
            }
        }
    }

    fn clear(&mut self, floor: u64) {
        *self = Backlog { floor, ..Backlog::default() };
    }

    /// The chunks that may hold events from `from_index` on.
    fn since(&self, from_index: u64) -> CatchUp {
        let chunks = self
            .sealed
            .iter()
            .filter(|chunk| chunk.last().is_some_and(|e| e.index >= from_index))
            .chain(std::iter::once(&self.open))
            .cloned()
            .collect();
        CatchUp { chunks, from_index }
    }
}

/// The backlogged events a new watcher catches up with, copied one by one
/// as it is iterated (outside the replica's lock).
pub struct CatchUp {
    chunks: Vec<Arc<Vec<Event>>>,
    from_index: u64,
}

impl CatchUp {
    /// No events.
    fn empty() -> CatchUp {
        CatchUp { chunks: Vec::new(), from_index: 0 }
    }
}

impl IntoIterator for CatchUp {
    type Item = Event;
    type IntoIter = Box<dyn Iterator<Item = Event> + Send>;

    fn into_iter(self) -> Self::IntoIter {
        let from_index = self.from_index;
        Box::new(self.chunks.into_iter().flat_map(move |chunk| {
            let start = chunk.partition_point(|e| e.index < from_index);
            (start..chunk.len()).filter_map(move |i| chunk.get(i).cloned())
        }))
    }
}

struct Inner {
    engine: Engine,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    backlog: Backlog,
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
        let (events, _) = broadcast::channel(LIVE_LAG);
        let (applied, _) = watch::channel(0);
        Replica {
            inner: Mutex::new(Inner {
                engine,
                last_applied: None,
                membership: StoredMembership::default(),
                backlog: Backlog::default(),
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
                inner.backlog.push(event.clone());
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
        ApplyResponse {
            index: log_id.index,
            outcome: applied.outcome,
            parts: applied.parts,
            dispatched: applied.dispatched,
        }
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
            inner.backlog.clear(index + 1);
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
    /// Subscribing under the lock guarantees no event falls between the two;
    /// the lock is held for a few reference counts, never while events are
    /// copied (that happens as the [`CatchUp`] is iterated).
    /// Fails with the oldest index still held when `from_index` is older.
    pub fn subscribe_events(&self, from_index: u64) -> Result<(CatchUp, broadcast::Receiver<Event>), u64> {
        let inner = self.lock();
        if from_index != 0 && from_index < inner.backlog.floor {
            return Err(inner.backlog.floor);
        }
        let receiver = self.events.subscribe();
        let backlog = if from_index == 0 { CatchUp::empty() } else { inner.backlog.since(from_index) };
        Ok((backlog, receiver))
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lexum_engine::EventKind;

    fn event(index: u64) -> Event {
        Event::new(index, EventKind::Mutation, String::new())
    }

    fn indexes(backlog: &Backlog, from: u64) -> Vec<u64> {
        backlog.since(from).into_iter().map(|e| e.index).collect()
    }

    #[test]
    fn the_backlog_keeps_the_latest_events_in_chunks_and_raises_its_floor() {
        let mut backlog = Backlog::default();
        let total = EVENT_BACKLOG as u64 + 3 * CHUNK as u64;
        for index in 1..=total {
            backlog.push(event(index));
        }
        assert!(backlog.len <= EVENT_BACKLOG && backlog.len > EVENT_BACKLOG - CHUNK, "{}", backlog.len);
        assert_eq!(backlog.floor, total - backlog.len as u64 + 1);
        assert_eq!(indexes(&backlog, total - 2), [total - 2, total - 1, total]);
        assert_eq!(indexes(&backlog, 1).len(), backlog.len);
        assert_eq!(indexes(&backlog, total + 1), Vec::<u64>::new());
    }

    #[test]
    fn a_catch_up_is_a_snapshot_unchanged_by_later_pushes() {
        let mut backlog = Backlog::default();
        for index in 1..=10 {
            backlog.push(event(index));
        }
        let catch_up = backlog.since(5);
        for index in 11..=(CHUNK as u64 + 20) {
            backlog.push(event(index));
        }
        let seen: Vec<u64> = catch_up.into_iter().map(|e| e.index).collect();
        assert_eq!(seen, (5..=10).collect::<Vec<_>>());
        assert_eq!(indexes(&backlog, CHUNK as u64 + 19), [CHUNK as u64 + 19, CHUNK as u64 + 20]);
    }

    #[test]
    fn events_sharing_an_index_are_all_caught_up() {
        let mut backlog = Backlog::default();
        for index in [1, 2, 2, 2, 3] {
            backlog.push(event(index));
        }
        assert_eq!(indexes(&backlog, 2), [2, 2, 2, 3]);
    }
}
