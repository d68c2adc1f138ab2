//! The deterministic Lexum engine (SPEC §3): goal evaluation, scheduling,
//! retries and oscillation traps, driven only by committed [`Entry`] values.
//!
//! The engine performs no I/O, reads no clock, draws no random numbers and
//! spawns no threads. Every replica applies the same entries with
//! [`Engine::apply`] and reaches the same state and the same
//! [`Engine::state_hash`]. The leader alone reads [`Engine::pending`] and turns
//! it into proposals ([`Entry::RunStep`], [`Entry::Dispatched`],
//! [`Entry::TimerFired`]) and worker RPCs; the engine never loops without an
//! entry.
//!
//! # Code map
//!
//! - `entry.rs`: [`Entry`], the contract with the Raft node.
//! - `state.rs`: typed field values, program install and migration (a new
//!   version keeps fields with the same domain, name and type), client
//!   mutations, invariant checks (E011 before anything is written), and
//!   incremental re-evaluation through field → goal / invariant indexes.
//! - `eval.rs`: expression evaluation and statement execution into a plan;
//!   checked arithmetic, errors are values.
//! - `schedule.rs`: arming (first transition whose `when` holds), one
//!   instance per domain, preemption at slice boundaries, [`Engine::pending`].
//! - `exec.rs`: slices and message deliveries, each one committed step.
//! - `effects.rs`: the effect journal, fencing tokens, retries and timers.
//! - `oscillation.rs`: cycles, vectors, verdicts (E005) and dominance.
//! - `report.rs`: [`GoalReport`], [`CycleRecord`]; `event.rs`: [`Event`],
//!   [`EventKind`], [`CycleVerdict`]; `hash.rs`: the hash chain.
//! - `simulate.rs`: [`simulate::simulate`], the engine run offline on a copy
//!   of a live state with simulated workers (`lexumctl plan`); `view.rs`:
//!   [`view::LiveView`], the data of `lexumd`'s live web view.
//!
//! **Architecture invariant:** the engine performs no I/O, reads no clock,
//! uses no randomness and no hash-map iteration order; time enters only as
//! `delay_ms` in [`PendingTimer`], which the leader waits for before it
//! proposes [`Entry::TimerFired`].
//!
//! **Architecture invariant:** every loop is bounded by one entry. A step
//! (a slice, a delivery) runs in an entry the leader proposes: its own
//! (`RunStep`, `RunStepAndDispatch`), or the group of client writes that
//! armed it (`DispatchArmed`, as many as the room the entry carries); and
//! at most one more runs with a worker's result (the next slice of the
//! cycle whose effects it completed, when no higher level waits). State
//! is re-evaluated after each, and a crash between entries resumes at the
//! next step.
//!
//! - `provenance.rs`: the cause of every write ([`Cause`]), field write
//!   histories ([`Engine::why`]) and effect keys → cycles for `caused_by`.
//! - `explain.rs`: [`Engine::explain`].
//! - `instances.rs`: instances of kinds, each a copy of its kind's template
//!   appended to the engine's program ([`Entry::CreateInstances`],
//!   [`Entry::DeleteInstances`]); rebuilt from the template and the
//!   instance list on restore and on a new version.
//!
//! # Causes and verdicts
//!
//! Every write has a cause: a cycle (its slice, the handler of a message it
//! sent, or an observer that named one of its effects in `caused_by`) or an
//! outside principal. When a write makes a goal stop holding, its author
//! decides the verdict: an equal-priority goal's cycle is a tug-of-war
//! round (trapped at the tenth round, or at once when the contested state
//! recurs with no outside input in between), a lower goal's cycle teaches
//! dominance (the lower goal is DOMINATED while the higher holds, until
//! the pair expires), and an outside principal is contention (damped,
//! CONTESTED `E016` above a threshold). An outside write never traps.
//!
//! A cycle is one transition instance plus what it caused; it is judged once
//! all of it is applied. A cycle makes *progress* when its goal's inputs end
//! at a value not seen since the goal last held. Ten cycles in a row without
//! progress (configurable) trap the goal with E005; a transition that cannot
//! reach its goal (`reaches_goal == false`) traps at the first such cycle;
//! a goal that has not held for the non-convergence bound (100) of its own
//! cycles traps whatever its orbit. A cycle that leaves the inputs unchanged
//! arms a backoff timer before the next. Static [`Program::dominance`]
//! pairs suppress the lower goal from the start.
//!
//! ```
//! use lexum_engine::{Engine, EngineConfig, Entry};
//! let mut engine = Engine::new(EngineConfig::default());
//! let applied = engine.apply(1, &Entry::Noop);
//! assert!(applied.outcome.is_ok());
//! assert_eq!(engine.last_applied(), 1);
//! ```

#![warn(missing_docs)]

mod aggregates;
mod effects;
pub mod entry;
pub mod eval;
mod event;
mod exec;
mod explain;
mod hash;
pub mod instances;
mod oscillation;
pub mod provenance;
mod report;
mod schedule;
pub mod simulate;
mod state;
pub mod view;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use lexum_compiler::program::{DomainId, FieldId, GoalId, Priority, Program, Value};
use serde::{Deserialize, Serialize};

pub use entry::{EffectKey, EffectOutcome, Entry, FieldWrite, StepId, TimerId, WorkerRoom};
pub use event::{CycleVerdict, EffectRef, Event, EventKind};
pub use instances::NewInstance;
pub use provenance::{Cause, CycleCause, ObservedEffect, WriteRecord};
pub use report::{
    ContentionReport, CycleRecord, Explanation, FieldDelta, GoalReport, GoalStatus, UnknownStatus, VectorEntry, Waiting,
};

use provenance::{Author, EffectOrigin, LoggedWrite};
use state::{Cycle, EffectRecord, GoalState, Index, LearntDominance, Message, Step, Timer, TugState, VectorPoint};

/// Diagnostic codes the engine produces besides those of SPEC §2.3.
pub mod codes {
    /// Unknown domain, field or goal.
    pub const UNKNOWN: &str = "E002";
    /// Value of the wrong type (or a list over its maximum length).
    pub const TYPE: &str = "E003";
    /// Oscillation detected.
    pub const OSCILLATION: &str = "E005";
    /// Retries exhausted.
    pub const RETRIES_EXHAUSTED: &str = "E010";
    /// An invariant would be violated; the mutation was rejected.
    pub const INVARIANT: &str = "E011";
    /// A slice or handler failed to evaluate (overflow, division by zero...).
    pub const EVALUATION: &str = "E012";
    /// A slice or handler went over the runtime step budget.
    pub const COST: &str = "E008";
    /// A stale fencing token, attempt or duplicate dispatch: nothing changed.
    pub const STALE: &str = "E013";
    /// No program installed, or program bytes that do not decode.
    pub const PROGRAM: &str = "E014";
    /// An entry index not greater than the last applied one.
    pub const ORDER: &str = "E015";
    /// Outside contention: a goal undone again and again by the same
    /// outside principal; its repairs are damped.
    pub const CONTESTED: &str = "E016";
}

/// Engine tunables; part of the replicated state (every replica must use
/// the same values). [`Engine::new`] takes the initial values; afterwards
/// only [`Entry::Configure`] changes them, so a node that starts from an
/// empty log must start from the same values as every other node (the
/// default).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineConfig {
    /// Cycles without progress (or tug-of-war rounds) before E005.
    pub oscillation_threshold: u32,
    /// How long the leader waits for an effect result before reporting
    /// `Failed { "timed out" }`.
    pub effect_timeout_ms: u64,
    /// A goal that has not held for this many of its own cycles traps
    /// E005, whatever the orbit of its inputs (SPEC §3.7).
    pub non_convergence_bound: u32,
    /// Writes kept per field for `why` (older ones are forgotten).
    pub write_history: u32,
    /// Half-life of a CONTESTED goal's damping penalty.
    pub damping_half_life_ms: u64,
    /// Evaluation steps one body may take (a slice, a handler, a predicate,
    /// a guard); a slice or handler over it fails its cycle with E008.
    pub step_budget: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            oscillation_threshold: 10,
            effect_timeout_ms: 10_000,
            non_convergence_bound: 100,
            write_history: 16,
            damping_half_life_ms: 30_000,
            step_budget: eval::DEFAULT_STEP_BUDGET,
        }
    }
}

impl EngineConfig {
    /// The same settings with zeroes raised to 1 (every setting counts at
    /// least one cycle, write or millisecond).
    pub fn normalized(&self) -> EngineConfig {
        EngineConfig {
            oscillation_threshold: self.oscillation_threshold.max(1),
            effect_timeout_ms: self.effect_timeout_ms.max(1),
            non_convergence_bound: self.non_convergence_bound.max(1),
            write_history: self.write_history.max(1),
            damping_half_life_ms: self.damping_half_life_ms.max(1),
            step_budget: self.step_budget.max(1),
        }
    }
}

/// Why an entry was rejected (state unchanged).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    /// Diagnostic code (`E011`, `E002`, ... see [`codes`]).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl Rejection {
    pub(crate) fn new(code: &str, message: impl Into<String>) -> Rejection {
        Rejection { code: code.to_string(), message: message.into() }
    }
}

/// The result of [`Engine::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// `Err` when the entry was rejected and changed nothing but the hash.
    pub outcome: Result<(), Rejection>,
    /// Events, in the order they happened.
    pub events: Vec<Event>,
    /// For an [`Entry::Batch`], each part's outcome,
    /// in order (the entry's own `outcome` is then `Ok`); empty for every
    /// other entry.
    pub parts: Vec<Result<(), Rejection>>,
    /// Steps a worker's result ran in this entry: the next slice of a
    /// cycle whose effects the result completed.
    pub continued: Vec<StepId>,
    /// Whether a step dispatched effects with it ([`Entry::RunStepAndDispatch`],
    /// [`Entry::DispatchArmed`]): the leader has tasks fenced by this index
    /// to send ([`Engine::dispatched_at`]).
    pub dispatched: bool,
}

/// The rejection of a batch found inside a batch.
fn nested_batch() -> Rejection {
    Rejection::new(codes::ORDER, "a batch cannot contain another batch")
}

/// What the leader should do now, each list in dispatch order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// Steps to propose as [`Entry::RunStep`].
    pub steps: Vec<PendingStep>,
    /// Effects to dispatch (or awaiting a result).
    pub effects: Vec<PendingEffect>,
    /// Timers to start; propose [`Entry::TimerFired`] after `delay_ms`.
    pub timers: Vec<PendingTimer>,
}

/// A ready step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingStep {
    /// The step to propose.
    pub step: StepId,
    /// Its level.
    pub priority: Priority,
    /// The effects (`Namespace.Name`) its slice or handler may emit
    /// directly: the leader proposes [`Entry::RunStepAndDispatch`] when one
    /// worker serves them all and has room for them.
    pub emits: Vec<String>,
}

/// An effect that is ready for dispatch or in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingEffect {
    /// Journal key.
    pub key: EffectKey,
    /// `Namespace.Name`.
    pub effect: String,
    /// Arguments by parameter name, in declaration order.
    pub args: Vec<(String, Value)>,
    /// Stable across retries and failovers.
    pub idempotency_key: String,
    /// The attempt number to dispatch next (or the one in flight).
    pub attempt: u32,
    /// Level of the transition that caused it.
    pub priority: Priority,
    /// Fencing token when dispatched and awaiting a result.
    pub in_flight: Option<u64>,
}

/// A timer the leader should run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingTimer {
    /// Timer to fire.
    pub timer: TimerId,
    /// Delay after which to propose [`Entry::TimerFired`].
    pub delay_ms: u64,
}

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    /// The bytes are not an engine snapshot.
    #[error("snapshot does not decode: {0}")]
    Decode(String),
    /// The program inside the snapshot does not decode.
    #[error("program in snapshot does not decode: {0}")]
    Program(String),
}

/// One instance of a kind in a page: its key and its fields by name.
pub type InstanceFields = (String, Vec<(String, Value)>);

/// The whole replicated state of the engine.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Engine {
    pub(crate) config: EngineConfig,
    pub(crate) last_applied: u64,
    pub(crate) hash: [u8; 32],
    /// Encoded program (the decoded form is rebuilt on restore).
    pub(crate) program_bytes: Option<Vec<u8>>,
    pub(crate) program_hash: Option<String>,
    pub(crate) version: u64,
    /// Field values, indexed by `FieldId`.
    pub(crate) values: Vec<Value>,
    /// Per-goal runtime state, indexed by `GoalId`.
    pub(crate) goal_states: Vec<GoalState>,
    /// Domain → cycle whose slices are running there.
    pub(crate) running: BTreeMap<u32, u64>,
    /// Open cycles (running or awaiting what they caused).
    pub(crate) cycles: BTreeMap<u64, Cycle>,
    /// The ready queue.
    pub(crate) steps: BTreeMap<u64, Step>,
    /// Undelivered messages by id (each has a step).
    pub(crate) messages: BTreeMap<u64, Message>,
    /// The effect journal of live effects.
    pub(crate) effects: BTreeMap<u64, EffectRecord>,
    /// Armed timers.
    pub(crate) timers: BTreeMap<u64, Timer>,
    /// Judged cycles, oldest first (bounded).
    pub(crate) history: VecDeque<CycleRecord>,
    /// Number of cycles ever judged.
    pub(crate) cycles_judged: u64,
    /// Counter for all ids (steps, effects, timers, cycles, messages).
    pub(crate) next_id: u64,
    /// Bumped by every outside input (client mutation, program, release, retry).
    pub(crate) epoch: u64,
    /// Oscillation vectors: field → signed changes of attributed writes,
    /// with the writing goal and the index (bounded).
    pub(crate) vectors: BTreeMap<u32, VecDeque<VectorPoint>>,
    /// Tug-of-war evidence per pair of equal-priority goals.
    pub(crate) tugs: BTreeMap<(u32, u32), TugState>,
    /// Dominance learnt from attributed cycles: (higher, lower).
    pub(crate) runtime_dominance: BTreeMap<(u32, u32), LearntDominance>,
    /// Recent writes per field with their causes (bounded).
    pub(crate) write_log: BTreeMap<u32, VecDeque<LoggedWrite>>,
    /// Effects by idempotency key: the cycles observers' writes are
    /// attributed to (bounded, oldest forgotten first).
    pub(crate) effect_origins: BTreeMap<String, EffectOrigin>,
    pub(crate) effect_origin_order: VecDeque<String>,
    /// Every instance of a kind ever created, in creation order.
    pub(crate) instances: Vec<instances::InstanceRecord>,
    #[serde(skip)]
    pub(crate) program: Option<Arc<Program>>,
    #[serde(skip)]
    pub(crate) index: Arc<Index>,
    /// Aggregates over kinds' instances (derived, rebuilt with the index).
    #[serde(skip)]
    pub(crate) aggregates: aggregates::Aggregates,
}

/// Per-entry scratch: events and what needs re-evaluation.
pub(crate) struct Cx {
    pub(crate) index: u64,
    pub(crate) events: Vec<Event>,
    /// Fields written and not yet re-evaluated, with their last author.
    pub(crate) touched: BTreeMap<FieldId, Author>,
    /// Goals whose status may have changed.
    pub(crate) status_dirty: BTreeSet<GoalId>,
    /// Domains that may need arming or preemption.
    pub(crate) dirty_domains: BTreeSet<DomainId>,
    /// Kinds whose instances were created or deleted (their aggregates and
    /// lookups changed).
    pub(crate) kinds_changed: BTreeSet<u32>,
    /// The next slice a result just queued, to run in the same entry.
    pub(crate) continue_step: Option<u64>,
    /// The steps run that way so far.
    pub(crate) continued: Vec<StepId>,
    /// The first id this entry allotted: steps with this id or a later one
    /// were queued by this entry.
    pub(crate) first_id: u64,
    /// A step dispatched effects with it.
    pub(crate) dispatched: bool,
}

impl Cx {
    /// Records an event of this entry; the caller may set its typed
    /// status or verdict on the returned event.
    pub(crate) fn event(
        &mut self,
        kind: EventKind,
        domain: Option<String>,
        goal: Option<String>,
        code: Option<&str>,
        message: String,
    ) -> &mut Event {
        self.events.push(Event {
            domain,
            goal,
            code: code.map(str::to_string),
            ..Event::new(self.index, kind, message)
        });
        let last = self.events.len() - 1;
        &mut self.events[last]
    }

    /// Records that `domain`'s `goal` is now in `status`.
    pub(crate) fn goal_status_event(&mut self, domain: String, goal: String, code: Option<&str>, status: GoalStatus) {
        self.event(EventKind::GoalStatus, Some(domain), Some(goal), code, status.to_string()).status = Some(status);
    }
}

impl Engine {
    /// An engine with no program.
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            config,
            last_applied: 0,
            hash: [0; 32],
            program_bytes: None,
            program_hash: None,
            version: 0,
            values: Vec::new(),
            goal_states: Vec::new(),
            running: BTreeMap::new(),
            cycles: BTreeMap::new(),
            steps: BTreeMap::new(),
            messages: BTreeMap::new(),
            effects: BTreeMap::new(),
            timers: BTreeMap::new(),
            history: VecDeque::new(),
            cycles_judged: 0,
            next_id: 1,
            epoch: 0,
            vectors: BTreeMap::new(),
            tugs: BTreeMap::new(),
            runtime_dominance: BTreeMap::new(),
            write_log: BTreeMap::new(),
            effect_origins: BTreeMap::new(),
            effect_origin_order: VecDeque::new(),
            instances: Vec::new(),
            program: None,
            index: Arc::new(Index::default()),
            aggregates: aggregates::Aggregates::default(),
        }
    }

    /// Applies one committed entry. Never panics; `index` must be greater
    /// than [`Engine::last_applied`] (otherwise the entry is rejected with
    /// E015 and nothing changes, not even the hash).
    pub fn apply(&mut self, index: u64, entry: &Entry) -> Applied {
        eval::set_step_budget(self.config.step_budget);
        let mut cx = Cx {
            index,
            events: Vec::new(),
            touched: BTreeMap::new(),
            status_dirty: BTreeSet::new(),
            dirty_domains: BTreeSet::new(),
            kinds_changed: BTreeSet::new(),
            continue_step: None,
            continued: Vec::new(),
            first_id: self.next_id,
            dispatched: false,
        };
        if index <= self.last_applied {
            let rejection = Rejection::new(
                codes::ORDER,
                format!("entry index {index} is not after the last applied index {}", self.last_applied),
            );
            return Applied {
                outcome: Err(rejection),
                events: Vec::new(),
                parts: Vec::new(),
                continued: Vec::new(),
                dispatched: false,
            };
        }
        // Each change checks what `validate` checks before it changes anything.
        let (outcome, parts) = match entry {
            Entry::Batch { entries } => {
                let parts = entries
                    .iter()
                    .map(|entry| match entry {
                        Entry::Batch { .. } => Err(nested_batch()),
                        single => self.apply_part(&mut cx, single),
                    })
                    .collect();
                (Ok(()), parts)
            }
            single => (self.apply_part(&mut cx, single), Vec::new()),
        };
        self.last_applied = index;
        self.hash = hash::chain(&self.hash, index, entry, &outcome, &cx.events);
        Applied { outcome, events: cx.events, parts, continued: cx.continued, dispatched: cx.dispatched }
    }

    /// Applies one change and evaluates what it touched. A result that
    /// completes a slice's effects runs the cycle's next slice in the same
    /// entry (one commit less per repair) unless a step of a higher level
    /// waits or the cycle was preempted at that boundary.
    fn apply_part(&mut self, cx: &mut Cx, entry: &Entry) -> Result<(), Rejection> {
        cx.continue_step = None;
        let outcome = self.apply_entry(cx, entry);
        self.conclude(cx, &outcome);
        if let Some(step) = cx.continue_step.take().filter(|s| outcome.is_ok() && self.may_continue(*s)) {
            cx.continued.push(StepId(step));
            self.run_step(cx, StepId(step), None);
            self.settle(cx);
        }
        outcome
    }

    /// Whether a queued step may run now, ahead of the leader's queue: it
    /// is still queued and no step of a higher level waits.
    fn may_continue(&self, step: u64) -> bool {
        self.steps.get(&step).is_some_and(|s| !self.steps.values().any(|other| other.priority > s.priority))
    }

    /// After one change: evaluate what it touched, or record why it was
    /// rejected.
    fn conclude(&mut self, cx: &mut Cx, outcome: &Result<(), Rejection>) {
        match outcome {
            Ok(()) => self.settle(cx),
            Err(r) => {
                cx.event(EventKind::Rejected, None, None, Some(&r.code), r.message.clone());
            }
        }
    }

    fn apply_entry(&mut self, cx: &mut Cx, entry: &Entry) -> Result<(), Rejection> {
        match entry {
            Entry::SubmitProgram { bytes } => {
                let program = state::decode_program(bytes)?;
                self.install(cx, program, bytes.clone());
                Ok(())
            }
            Entry::Mutate { writes, principal, caused_by } => self.mutate(cx, writes, principal, caused_by),
            // `apply` splits a batch into its parts.
            Entry::Batch { .. } => Ok(()),
            Entry::RunStep { step } => {
                self.run_step(cx, *step, None);
                Ok(())
            }
            Entry::RunStepAndDispatch { step, worker } => {
                self.run_step(cx, *step, Some(worker.clone()));
                Ok(())
            }
            Entry::DispatchArmed { workers } => {
                self.dispatch_armed(cx, workers);
                Ok(())
            }
            Entry::Dispatched { effect, attempt, worker } => self.dispatched(cx, *effect, *attempt, worker),
            Entry::EffectResult { effect, fencing, outcome } => self.effect_result(cx, *effect, *fencing, outcome),
            Entry::TimerFired { timer } => {
                self.timer_fired(cx, *timer);
                Ok(())
            }
            Entry::Release { domain, goal } => self.release(cx, domain, goal.as_deref()),
            Entry::Retry { domain, goal } => self.retry(cx, domain, goal),
            Entry::Noop => Ok(()),
            Entry::Configure { config } => {
                self.configure(cx, config);
                Ok(())
            }
            Entry::CreateInstances { kind, instances, upsert, principal } => {
                self.create_instances(cx, kind, instances, *upsert, principal)
            }
            Entry::DeleteInstances { kind, keys } => self.delete_instances(cx, kind, keys),
        }
    }

    /// Installs new settings (zeroes become 1) and reports them.
    fn configure(&mut self, cx: &mut Cx, config: &EngineConfig) {
        self.config = config.normalized();
        let c = &self.config;
        cx.event(
            EventKind::Configured,
            None,
            None,
            None,
            format!(
                "oscillation threshold {} cycles, effect timeout {} ms, non-convergence bound {} cycles, \
                 {} writes kept per field, damping half-life {} ms",
                c.oscillation_threshold,
                c.effect_timeout_ms,
                c.non_convergence_bound,
                c.write_history,
                c.damping_half_life_ms
            ),
        );
    }

    /// Dry run: whether `entry` would be accepted now. The leader calls it
    /// before proposing a client request so bad input is never committed.
    pub fn validate(&self, entry: &Entry) -> Result<(), Rejection> {
        match entry {
            Entry::SubmitProgram { bytes } => state::decode_program(bytes).map(|_| ()),
            Entry::Mutate { writes, .. } => self.validate_mutation(writes),
            Entry::Batch { entries } => entries.iter().try_for_each(|entry| match entry {
                Entry::Batch { .. } => Err(nested_batch()),
                single => self.validate(single),
            }),
            Entry::Release { domain, goal } => self.command_goals(domain, goal.as_deref()).map(|_| ()),
            Entry::Retry { domain, goal } => self.command_goals(domain, Some(goal)).map(|_| ()),
            Entry::EffectResult { effect, fencing, .. } => self.check_fencing(*effect, *fencing),
            Entry::CreateInstances { kind, instances, upsert, .. } => self.validate_create(kind, instances, *upsert),
            Entry::DeleteInstances { kind, keys } => self.validate_delete(kind, keys),
            Entry::RunStep { .. }
            | Entry::RunStepAndDispatch { .. }
            | Entry::DispatchArmed { .. }
            | Entry::Dispatched { .. }
            | Entry::TimerFired { .. }
            | Entry::Noop
            | Entry::Configure { .. } => Ok(()),
        }
    }

    /// Dry run of one mutation (the writes of an `Entry::Mutate`), without
    /// building the entry.
    pub fn validate_mutation(&self, writes: &[FieldWrite]) -> Result<(), Rejection> {
        self.check_mutation(writes).map(|_| ())
    }

    /// The running hash chain over every applied entry and its outcome.
    pub fn state_hash(&self) -> [u8; 32] {
        self.hash
    }

    /// Index of the last applied entry (0 before any).
    pub fn last_applied(&self) -> u64 {
        self.last_applied
    }

    /// The engine configuration (replicated: see [`Entry::Configure`]).
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The whole state as bytes (postcard).
    pub fn snapshot(&self) -> Vec<u8> {
        // Plain owned data; postcard serialization into a Vec cannot fail.
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Rebuilds an engine from [`Engine::snapshot`] bytes.
    pub fn restore(bytes: &[u8]) -> Result<Engine, SnapshotError> {
        let mut engine: Engine = postcard::from_bytes(bytes).map_err(|e| SnapshotError::Decode(e.to_string()))?;
        if let Some(program_bytes) = &engine.program_bytes {
            let template = state::decode_program(program_bytes).map_err(|e| SnapshotError::Program(e.message))?;
            let (program, _) =
                instances::expand(&template, &mut engine.instances, true).map_err(SnapshotError::Program)?;
            engine.program = Some(Arc::new(program));
        }
        engine.rebuild_index();
        Ok(engine)
    }

    /// The installed program, if any.
    pub fn program(&self) -> Option<&Program> {
        self.program.as_deref()
    }

    /// Number of programs installed so far (0 before the first).
    pub fn program_version(&self) -> u64 {
        self.version
    }

    /// Hex content hash of the installed program.
    pub fn program_hash(&self) -> Option<String> {
        self.program_hash.clone()
    }

    /// A domain's fields in declaration order.
    pub fn domain_state(&self, domain: &str) -> Option<Vec<(String, Value)>> {
        let program = self.program.as_ref()?;
        self.fields_of(program, *self.index.domains.get(domain)?)
    }

    /// A domain's fields with their values, in declaration order.
    fn fields_of(&self, program: &Program, d: DomainId) -> Option<Vec<(String, Value)>> {
        let fields = &program.domains.get(d.index())?.fields;
        Some(
            fields
                .iter()
                .filter_map(|f| {
                    Some((program.fields.get(f.index())?.name.clone(), self.values.get(f.index())?.clone()))
                })
                .collect(),
        )
    }

    /// A page of a kind's live instances in key order, each with its
    /// fields, and how many are live; `None` when `kind` is not a kind.
    pub fn instances_page(&self, kind: &str, offset: u64, limit: u64) -> Option<(Vec<InstanceFields>, u64)> {
        let program = self.program.as_ref()?;
        let k = *self.index.domains.get(kind)?;
        program.domains.get(k.index())?.key.as_ref()?;
        let total = self.live_instances(k).count() as u64;
        let take = if limit == 0 { usize::MAX } else { limit as usize };
        let page = self
            .live_instances(k)
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(take)
            .filter_map(|d| Some((program.domains.get(d.index())?.name.clone(), self.fields_of(program, d)?)))
            .collect();
        Some((page, total))
    }

    /// One field's value.
    pub fn read(&self, domain: &str, field: &str) -> Option<Value> {
        let d = *self.index.domains.get(domain)?;
        let f = *self.index.fields.get(d.index())?.get(field)?;
        self.values.get(f.index()).cloned()
    }

    /// Evaluates every goal from scratch (ignoring the incremental cache):
    /// `(domain, goal, holds)` in program order. Used by replay checks and
    /// the incremental-equals-full property test.
    pub fn evaluate_all(&self) -> Vec<(String, String, bool)> {
        let Some(program) = self.program.as_ref() else { return Vec::new() };
        program
            .goals
            .iter()
            .zip(&self.goal_states)
            .filter(|(_, gs)| !gs.inert)
            .map(|(g, _)| {
                let holds = eval::holds(&g.predicate, g.slots, &self.world(program)).unwrap_or(false);
                (program.domains[g.domain.index()].name.clone(), g.name.clone(), holds)
            })
            .collect()
    }

    /// Whether the incremental aggregates equal a recomputation from every
    /// instance's fields (a consistency check for tests and replay).
    pub fn aggregates_consistent(&self) -> bool {
        let Some(program) = self.program.as_ref() else { return true };
        aggregates::Aggregates::recompute(program, &self.index, &self.values) == self.aggregates
    }

    /// The committed state, for evaluating expressions.
    pub(crate) fn world<'a>(&'a self, program: &'a Program) -> aggregates::World<'a> {
        aggregates::World::committed(&self.values, program, &self.index, &self.aggregates)
    }

    pub(crate) fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}
