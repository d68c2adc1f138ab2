//! The leader's dispatcher: turns the engine's pending work into proposals,
//! worker tasks and timers. It decides nothing the engine has not already
//! decided in replicated state; everything here is leader-local and is
//! rebuilt from the engine after a failover.
//!
//! - Steps (`RunStep`) are proposed in the engine's priority order; all of
//!   a round's proposals, timers included, go out as one [`Entry::Batch`]
//!   (one WAL sync).
//! - Effects go to connected workers that serve them and have free
//!   capacity, highest priority first; each dispatch is committed
//!   (`Dispatched`) before the task leaves, and its index is the fencing token.
//! - A step whose effects one worker serves and has room for is proposed
//!   as `RunStepAndDispatch` naming it: the entry that runs it also
//!   dispatches what it emits (one commit less). The tasks leave as soon as
//!   this node applies the entry ([`Dispatcher::send_applied_dispatches`],
//!   called by the state machine), to that worker (or another with room if
//!   it has none left). A task no worker has room for by then waits here,
//!   unsent, and its deadline starts when it is sent.
//! - Attempts that outlive their deadline are reported as failures so the
//!   engine retries them elsewhere. The deadline is the replicated effect
//!   timeout plus a margin, counted from before the task is sent; the
//!   worker SDK cancels the handler at the timeout counted from the task's
//!   arrival, so the old handler has stopped before another worker gets the
//!   effect. A worker that disconnects keeps its attempts until then too:
//!   the leader may see the stream break before the worker does.
//! - Replicated timers (backoff) are slept here and reported as `TimerFired`.
//! - When the replicated engine settings differ from this node's configured
//!   ones, the leader proposes `Configure`: like a Kubernetes controller
//!   manager, the leader's settings apply, but they reach every replica
//!   through the log, so all of them judge oscillation alike.

use crate::cluster::Cluster;
use crate::convert::{named_to_wire, value_from_wire};
use crate::group_commit::GroupCommit;
use crate::raft_types::{LogId, NodeId};
use lexum_engine::entry::{EffectKey, EffectOutcome, Entry, StepId, TimerId};
use lexum_engine::{EngineConfig, Pending, PendingEffect, WorkerRoom};
use lexum_proto::v1 as pb;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};

/// How often the dispatcher looks again even when nothing was applied.
const TICK: Duration = Duration::from_millis(50);

/// Most tasks one worker may hold at once, whatever it announces.
pub const MAX_WORKER_CONCURRENCY: u32 = 1024;

/// Most of the leader's entries committed as one batch.
const MAX_BATCH: usize = 512;

/// Most tasks per effect one group of client writes may dispatch
/// (`Entry::DispatchArmed`); the steps beyond wait for the leader's rounds.
const MAX_ARMED: u32 = 256;

/// Bounds of the margin the leader adds to the effect timeout before it
/// gives an attempt up: it covers the task's delivery and the difference
/// between the two machines' clock rates.
const MARGIN_MIN: Duration = Duration::from_millis(200);
const MARGIN_MAX: Duration = Duration::from_secs(2);

/// When the leader gives up an attempt handed out at `sent` (or inherited
/// then): the effect timeout plus a quarter of it, at least 200 ms and at
/// most 2 s.
fn give_up_at(sent: Instant, effect_timeout: Duration) -> Instant {
    sent + effect_timeout + (effect_timeout / 4).clamp(MARGIN_MIN, MARGIN_MAX)
}

/// A worker connected to this node.
struct WorkerSlot {
    name: String,
    effects: BTreeSet<String>,
    concurrency: u32,
    active: u32,
    commands: mpsc::Sender<pb::WorkerCommand>,
}

/// An attempt handed to a worker (or inherited from a previous leader).
struct InFlight {
    fencing: u64,
    conn: Option<u64>,
    deadline: Instant,
    reported: bool,
}

#[derive(Default)]
struct State {
    next_conn: u64,
    workers: BTreeMap<u64, WorkerSlot>,
    steps_proposed: BTreeSet<StepId>,
    dispatching: BTreeSet<EffectKey>,
    in_flight: BTreeMap<EffectKey, InFlight>,
    /// Attempts a `RunStepAndDispatch` of this leader committed that no
    /// worker had room for yet.
    unsent: BTreeMap<EffectKey, pb::Task>,
    timers: BTreeSet<TimerId>,
    /// Timers that expired, proposed with the next round.
    fired: Vec<TimerId>,
    leading: bool,
    /// A `Configure` proposal is in flight.
    configuring: bool,
}

/// Why a worker could not register.
#[derive(Debug)]
pub enum RegisterError {
    /// Not the leader; the leader's address if known.
    NotLeader(Option<String>),
}

/// The dispatcher of one node (active only while it leads).
pub struct Dispatcher {
    cluster: Cluster,
    /// Where workers' results are committed (grouped with others).
    commits: GroupCommit,
    state: Mutex<State>,
    wake: Notify,
    /// The engine settings of this node's configuration.
    settings: EngineConfig,
}

impl Dispatcher {
    /// A dispatcher over `cluster` that, while it leads, makes `settings`
    /// the replicated engine settings and commits workers' results through
    /// `commits`.
    pub fn new(cluster: Cluster, settings: EngineConfig, commits: GroupCommit) -> Arc<Dispatcher> {
        Arc::new(Dispatcher { cluster, commits, state: Mutex::new(State::default()), wake: Notify::new(), settings })
    }

    /// The replicated per-attempt deadline.
    fn effect_timeout(&self) -> Duration {
        Duration::from_millis(self.cluster.replica.with_engine(|e| e.config().effect_timeout_ms))
    }

    /// Whether `entry` was proposed by this node in the term it leads now.
    fn proposed_in_this_term(&self, entry: LogId) -> bool {
        let metrics = self.cluster.raft.metrics();
        let metrics = metrics.borrow();
        proposed_by_the_current_leader(entry, self.cluster.id, metrics.current_term, metrics.current_leader)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs until the process exits.
    pub async fn run(self: Arc<Self>) {
        let mut applied = self.cluster.replica.subscribe_applied();
        loop {
            tokio::select! {
                _ = applied.changed() => {}
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
            }
            if self.cluster.is_leader() {
                self.reconcile().await;
            } else {
                self.step_down();
            }
        }
    }

    /// Forgets all leader-local state and disconnects workers (they follow
    /// the redirect to the new leader).
    fn step_down(&self) {
        let mut state = self.lock();
        if state.leading || !state.workers.is_empty() {
            tracing::info!("not the leader: releasing workers and in-flight bookkeeping");
            *state = State { next_conn: state.next_conn, ..State::default() };
            self.cluster.replica.metrics().workers.set(0);
        }
    }

    async fn reconcile(self: &Arc<Self>) {
        let now = Instant::now();
        let mut proposals: Vec<(Entry, Completion)> = Vec::new();
        {
            let mut guard = self.lock();
            let state = &mut *guard;
            // Read under the dispatcher lock, so a completion that records a
            // new dispatch cannot fall between this view and the bookkeeping.
            let (pending, replicated) = self.cluster.replica.with_engine(|e| (e.pending(), e.config().clone()));
            let effect_timeout = Duration::from_millis(replicated.effect_timeout_ms);
            state.leading = true;
            self.update_queue_metrics(&pending);

            if replicated != self.settings && !state.configuring {
                tracing::info!(?replicated, configured = ?self.settings, "proposing this node's engine settings");
                state.configuring = true;
                proposals.push((Entry::Configure { config: self.settings.clone() }, Completion::Configure));
            }

            let pending_steps: BTreeSet<StepId> = pending.steps.iter().map(|s| s.step).collect();
            state.steps_proposed.retain(|s| pending_steps.contains(s));
            let mut rooms = free_rooms(state, &pending);
            for step in &pending.steps {
                if state.steps_proposed.insert(step.step) {
                    let need = step.emits.len() as u32;
                    let serving =
                        rooms.iter_mut().find(|w| w.room >= need && step.emits.iter().all(|e| w.effects.contains(e)));
                    let entry = match serving.filter(|_| need > 0) {
                        Some(worker) => {
                            worker.room -= need;
                            Entry::RunStepAndDispatch { step: step.step, worker: worker.worker.clone() }
                        }
                        None => Entry::RunStep { step: step.step },
                    };
                    proposals.push((entry, Completion::Step(step.step)));
                }
            }

            let in_flight_now: BTreeMap<EffectKey, u64> =
                pending.effects.iter().filter_map(|e| e.in_flight.map(|f| (e.key, f))).collect();
            let finished: Vec<EffectKey> = state
                .in_flight
                .iter()
                .filter(|(key, flight)| in_flight_now.get(key) != Some(&flight.fencing))
                .map(|(key, _)| *key)
                .collect();
            for key in finished {
                if let Some(flight) = state.in_flight.remove(&key) {
                    release_capacity(state, flight.conn);
                }
            }
            state.unsent.retain(|key, task| in_flight_now.get(key) == Some(&task.fencing_token));
            for (key, fencing) in in_flight_now.iter().filter(|(key, _)| !state.unsent.contains_key(key)) {
                state.in_flight.entry(*key).or_insert_with(|| InFlight {
                    fencing: *fencing,
                    conn: None,
                    deadline: give_up_at(now, effect_timeout),
                    reported: false,
                });
            }

            let unsent: Vec<EffectKey> = state.unsent.keys().copied().collect();
            for key in unsent {
                let Some(conn) = state.unsent.get(&key).and_then(|task| pick_worker(state, &task.effect)) else {
                    continue;
                };
                if let Some(task) = state.unsent.remove(&key) {
                    send_task(state, conn, task, effect_timeout);
                }
            }

            for effect in pending.effects.iter().filter(|e| e.in_flight.is_none()) {
                if state.dispatching.contains(&effect.key) {
                    continue;
                }
                let Some(conn) = pick_worker(state, &effect.effect) else { continue };
                let worker = match state.workers.get_mut(&conn) {
                    Some(slot) => {
                        slot.active += 1;
                        slot.name.clone()
                    }
                    None => continue,
                };
                state.dispatching.insert(effect.key);
                // The fencing token is the `Dispatched` entry's index, known once committed.
                let task = task_of(effect, 0, effect_timeout);
                proposals.push((
                    Entry::Dispatched { effect: effect.key, attempt: effect.attempt, worker },
                    Completion::Dispatch { conn, task },
                ));
            }

            for (key, flight) in state.in_flight.iter_mut() {
                if !flight.reported && flight.deadline <= now {
                    flight.reported = true;
                    proposals.push((
                        Entry::EffectResult {
                            effect: *key,
                            fencing: flight.fencing,
                            outcome: EffectOutcome::Failed { error: "timed out".into() },
                        },
                        Completion::Timeout { key: *key, fencing: flight.fencing },
                    ));
                }
            }

            let pending_timers: BTreeSet<TimerId> = pending.timers.iter().map(|t| t.timer).collect();
            state.timers.retain(|t| pending_timers.contains(t));
            for timer in &pending.timers {
                if state.timers.insert(timer.timer) {
                    let this = self.clone();
                    let (id, delay) = (timer.timer, Duration::from_millis(timer.delay_ms));
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        if this.cluster.is_leader() {
                            this.lock().fired.push(id);
                        }
                        this.wake.notify_one();
                    });
                }
            }
            for timer in std::mem::take(&mut state.fired) {
                proposals.push((Entry::TimerFired { timer }, Completion::Timer(timer)));
            }
        }
        let mut proposals = proposals.into_iter().peekable();
        while proposals.peek().is_some() {
            let group: Vec<(Entry, Completion)> = proposals.by_ref().take(MAX_BATCH).collect();
            self.submit(group).await;
        }
    }

    /// Enqueues one round's proposals into Raft as one entry (an
    /// [`Entry::Batch`] when there are several: one append and one WAL sync
    /// for all of them), then handles each one's outcome in the background.
    async fn submit(self: &Arc<Self>, group: Vec<(Entry, Completion)>) {
        let (entries, completions): (Vec<Entry>, Vec<Completion>) = group.into_iter().unzip();
        let receiver = match self.cluster.raft.client_write_ff(Entry::grouped(entries)).await {
            Ok(receiver) => receiver,
            Err(_) => {
                for completion in completions {
                    self.complete(completion, None);
                }
                return;
            }
        };
        let this = self.clone();
        tokio::spawn(async move {
            let indexes: Vec<Option<u64>> = match receiver.await {
                Ok(Ok(response)) => response.data.outcomes(completions.len()).into_iter().map(Result::ok).collect(),
                _ => Vec::new(),
            };
            for (i, completion) in completions.into_iter().enumerate() {
                this.complete(completion, indexes.get(i).copied().flatten());
            }
            this.wake.notify_one();
        });
    }

    /// Finishes a proposal: `index` is its log index when the engine accepted it.
    fn complete(&self, completion: Completion, index: Option<u64>) {
        let mut guard = self.lock();
        let state = &mut *guard;
        match completion {
            Completion::Configure => state.configuring = false,
            Completion::Timeout { key, fencing } => {
                // Not committed: report the timeout again on the next round.
                if index.is_none() {
                    if let Some(flight) = state.in_flight.get_mut(&key).filter(|f| f.fencing == fencing) {
                        flight.reported = false;
                    }
                }
            }
            Completion::Step(step) => {
                if index.is_none() {
                    state.steps_proposed.remove(&step);
                }
            }
            Completion::Timer(timer) => {
                state.timers.remove(&timer);
            }
            Completion::Dispatch { conn, mut task } => {
                let key = EffectKey(task.effect_id);
                state.dispatching.remove(&key);
                let Some(fencing) = index else {
                    release_capacity(state, Some(conn));
                    return;
                };
                task.fencing_token = fencing;
                // The capacity was taken when the dispatch was proposed.
                release_capacity(state, Some(conn));
                send_task(state, conn, task, self.effect_timeout());
            }
        }
    }

    /// Room for the steps a group of client writes arms
    /// (`Entry::DispatchArmed`): the connected workers with room (at most
    /// [`MAX_ARMED`] each), less the tasks waiting here unsent. Empty
    /// unless leading.
    pub fn room(&self) -> Vec<WorkerRoom> {
        let state = self.lock();
        if !state.leading || !self.cluster.is_leader() {
            return Vec::new();
        }
        worker_rooms(&state)
            .into_iter()
            .filter(|w| w.room > 0)
            .map(|w| WorkerRoom { room: w.room.min(MAX_ARMED), ..w })
            .collect()
    }

    /// Sends the attempts a `RunStepAndDispatch` or `DispatchArmed` entry
    /// dispatched, right after this node applied it (so it is committed),
    /// when this node proposed it as the leader it still is: each to the
    /// worker the entry named (the least busy of its connections), to
    /// another with room when that one has none left or is gone, or into
    /// the unsent queue until one has room. An entry of an earlier
    /// leadership, this node's or another's, is left to the deadlines: its
    /// tasks may have been sent already, and a task is sent once.
    pub fn send_applied_dispatches(&self, entry: LogId) {
        if !self.proposed_in_this_term(entry) {
            return;
        }
        let effects = self.cluster.replica.with_engine(|e| e.dispatched_at(entry.index));
        let effect_timeout = self.effect_timeout();
        let mut guard = self.lock();
        let state = &mut *guard;
        if !state.leading {
            return;
        }
        for (effect, named) in effects {
            if state.in_flight.get(&effect.key).is_some_and(|f| f.conn.is_some()) {
                continue;
            }
            let task = task_of(&effect, entry.index, effect_timeout);
            let named = named.and_then(|name| pick_named_worker(state, &name, &effect.effect));
            match named.or_else(|| pick_worker(state, &effect.effect)) {
                Some(conn) => send_task(state, conn, task, effect_timeout),
                None => {
                    // Not sent, so not timed: the deadline starts when it leaves.
                    state.in_flight.remove(&effect.key);
                    state.unsent.insert(effect.key, task);
                }
            }
        }
    }

    /// Registers a worker stream; tasks and acks are sent on `commands`.
    pub fn register(&self, hello: &pb::Hello, commands: mpsc::Sender<pb::WorkerCommand>) -> Result<u64, RegisterError> {
        if !self.cluster.is_leader() {
            return Err(RegisterError::NotLeader(self.cluster.leader_address()));
        }
        let mut state = self.lock();
        state.next_conn += 1;
        let conn = state.next_conn;
        state.workers.insert(
            conn,
            WorkerSlot {
                name: if hello.worker_id.is_empty() { format!("worker-{conn}") } else { hello.worker_id.clone() },
                effects: hello.effects.iter().cloned().collect(),
                concurrency: hello.concurrency.clamp(1, MAX_WORKER_CONCURRENCY),
                active: 0,
                commands,
            },
        );
        self.cluster.replica.metrics().workers.set(state.workers.len() as i64);
        tracing::info!(conn, worker = %hello.worker_id, effects = ?hello.effects, "worker registered");
        drop(state);
        self.wake.notify_one();
        Ok(conn)
    }

    /// Removes a worker. Its unfinished attempts keep their deadline: the
    /// worker may still be running them (a broken stream is not a dead
    /// worker) and may report them on a new stream.
    pub fn unregister(&self, conn: u64) {
        let mut state = self.lock();
        if state.workers.remove(&conn).is_none() {
            return;
        }
        for flight in state.in_flight.values_mut().filter(|f| f.conn == Some(conn)) {
            flight.conn = None;
        }
        self.cluster.replica.metrics().workers.set(state.workers.len() as i64);
        tracing::info!(conn, "worker disconnected");
        drop(state);
        self.wake.notify_one();
    }

    /// Commits a worker's result; the engine rejects stale fencing tokens.
    pub async fn report(&self, conn: u64, result: pb::TaskResult) -> pb::ResultAck {
        let key = EffectKey(result.effect_id);
        let outcome = match result.outcome {
            Some(pb::task_result::Outcome::Ok(success)) => {
                match success.value.as_ref().map(value_from_wire).transpose() {
                    Ok(value) => EffectOutcome::Succeeded { value },
                    Err(status) => EffectOutcome::Failed { error: format!("bad result value: {}", status.message()) },
                }
            }
            Some(pb::task_result::Outcome::Error(error)) => EffectOutcome::Failed { error },
            None => EffectOutcome::Failed { error: "worker sent no outcome".into() },
        };
        let entry = Entry::EffectResult { effect: key, fencing: result.fencing_token, outcome };
        let committed = match self.cluster.admit(|engine| engine.validate(&entry)).await {
            Ok(()) => self.commits.commit(entry, 0).await,
            Err(refused) => Err(refused),
        };
        let ack = match committed {
            Ok(_) => pb::ResultAck { effect_id: key.0, accepted: true, reason: String::new() },
            Err(err) => pb::ResultAck { effect_id: key.0, accepted: false, reason: err.to_string() },
        };
        {
            let mut guard = self.lock();
            let state = &mut *guard;
            let ours =
                state.in_flight.get(&key).is_some_and(|f| f.fencing == result.fencing_token && f.conn == Some(conn));
            if ours {
                if let Some(flight) = state.in_flight.remove(&key) {
                    release_capacity(state, flight.conn);
                }
            }
        }
        self.wake.notify_one();
        ack
    }

    /// Sends an ack to a worker if it is still connected.
    pub fn send_to(&self, conn: u64, command: pb::WorkerCommand) {
        if let Some(slot) = self.lock().workers.get(&conn) {
            let _ = slot.commands.try_send(command);
        }
    }

    fn update_queue_metrics(&self, pending: &Pending) {
        let metrics = self.cluster.replica.metrics();
        for level in lexum_compiler::program::Priority::DESCENDING {
            let depth = pending.effects.iter().filter(|e| e.priority == level && e.in_flight.is_none()).count();
            metrics.dispatch_queue.with_label_values(&[level.keyword()]).set(depth as i64);
        }
    }
}

/// What to do when a proposal finishes.
enum Completion {
    Timeout { key: EffectKey, fencing: u64 },
    Step(StepId),
    Timer(TimerId),
    Dispatch { conn: u64, task: pb::Task },
    Configure,
}

/// The task a worker gets for an attempt of `effect` fenced by `fencing`.
fn task_of(effect: &PendingEffect, fencing: u64, effect_timeout: Duration) -> pb::Task {
    pb::Task {
        effect_id: effect.key.0,
        effect: effect.effect.clone(),
        idempotency_key: effect.idempotency_key.clone(),
        attempt: effect.attempt,
        args: named_to_wire(&effect.args),
        fencing_token: fencing,
        timeout_ms: effect_timeout.as_millis() as u64,
    }
}

/// Hands `task` (committed, with its fencing token) to the worker on
/// `conn`, which takes one more of its capacity, and starts its deadline.
fn send_task(state: &mut State, conn: u64, task: pb::Task, effect_timeout: Duration) {
    let key = EffectKey(task.effect_id);
    let fencing = task.fencing_token;
    let sent = state.workers.get_mut(&conn).map(|slot| {
        slot.active += 1;
        slot.commands.try_send(pb::WorkerCommand { kind: Some(pb::worker_command::Kind::Task(task)) })
    });
    // A worker that is gone or jammed: the deadline fails the attempt soon.
    let deadline = match sent {
        Some(Ok(())) => give_up_at(Instant::now(), effect_timeout),
        _ => Instant::now(),
    };
    state.in_flight.insert(key, InFlight { fencing, conn: Some(conn), deadline, reported: false });
}

/// Whether `entry` was proposed by node `me` as the leader of `term`, and
/// `me` still leads it (`leader`): only then may `me` send the tasks the
/// entry dispatched, and no other leader has sent them.
fn proposed_by_the_current_leader(entry: LogId, me: NodeId, term: u64, leader: Option<NodeId>) -> bool {
    entry.leader_id.node_id == me && entry.leader_id.term == term && leader == Some(me)
}

/// The room each connected worker has for more tasks, in connection order,
/// less the tasks waiting here unsent (those being dispatched took theirs).
fn worker_rooms(state: &State) -> Vec<WorkerRoom> {
    let mut rooms: Vec<WorkerRoom> = state
        .workers
        .values()
        .map(|slot| WorkerRoom {
            worker: slot.name.clone(),
            effects: slot.effects.iter().cloned().collect(),
            room: slot.concurrency.saturating_sub(slot.active),
        })
        .collect();
    for task in state.unsent.values() {
        take_room(&mut rooms, &task.effect);
    }
    rooms
}

/// [`worker_rooms`] less the attempts ready in the journal, waiting for them.
fn free_rooms(state: &State, pending: &Pending) -> Vec<WorkerRoom> {
    let mut rooms = worker_rooms(state);
    let waiting = pending.effects.iter().filter(|e| e.in_flight.is_none() && !state.dispatching.contains(&e.key));
    for effect in waiting {
        take_room(&mut rooms, &effect.effect);
    }
    rooms
}

/// Takes one task's room for `effect` from the first worker serving it.
fn take_room(rooms: &mut [WorkerRoom], effect: &str) {
    if let Some(worker) = rooms.iter_mut().find(|w| w.room > 0 && w.effects.iter().any(|e| e == effect)) {
        worker.room -= 1;
    }
}

/// The least busy connection of the worker called `name` that serves
/// `effect` and has capacity.
fn pick_named_worker(state: &State, name: &str, effect: &str) -> Option<u64> {
    state
        .workers
        .iter()
        .filter(|(_, slot)| slot.name == name && slot.effects.contains(effect) && slot.active < slot.concurrency)
        .min_by_key(|(conn, slot)| (slot.active, **conn))
        .map(|(conn, _)| *conn)
}

/// The least busy connected worker that serves `effect` and has capacity.
fn pick_worker(state: &State, effect: &str) -> Option<u64> {
    state
        .workers
        .iter()
        .filter(|(_, slot)| slot.effects.contains(effect) && slot.active < slot.concurrency)
        .min_by_key(|(conn, slot)| (slot.active, **conn))
        .map(|(conn, _)| *conn)
}

fn release_capacity(state: &mut State, conn: Option<u64>) {
    if let Some(slot) = conn.and_then(|c| state.workers.get_mut(&c)) {
        slot.active = slot.active.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_leader_that_proposed_an_entry_sends_its_tasks_and_only_in_its_term() {
        let entry = LogId::new(openraft::CommittedLeaderId::new(3, 1), 40);
        assert!(proposed_by_the_current_leader(entry, 1, 3, Some(1)));
        assert!(!proposed_by_the_current_leader(entry, 2, 3, Some(2)), "another node's entry");
        assert!(!proposed_by_the_current_leader(entry, 1, 4, Some(1)), "an earlier term of this node");
        assert!(!proposed_by_the_current_leader(entry, 1, 3, Some(2)), "no longer the leader");
        assert!(!proposed_by_the_current_leader(entry, 1, 3, None), "no leader known");
    }

    #[test]
    fn an_attempt_is_given_up_a_bounded_margin_after_the_timeout() {
        let sent = Instant::now();
        let after = |timeout_ms: u64| give_up_at(sent, Duration::from_millis(timeout_ms)) - sent;
        assert_eq!(after(400), Duration::from_millis(600));
        assert_eq!(after(2_000), Duration::from_millis(2_500));
        assert_eq!(after(10_000), Duration::from_millis(12_000));
        assert_eq!(after(60_000), Duration::from_millis(62_000));
    }
}
