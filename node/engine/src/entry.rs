//! Entries the engine applies and the work it asks the leader to do.
//!
//! Every replica applies the same [`Entry`] sequence; the leader alone reads
//! [`Engine::pending`](crate::Engine::pending) and turns it into proposals,
//! worker RPCs and timers.

use lexum_compiler::program::Value;
use serde::{Deserialize, Serialize};

/// One write of an observation: `Domain.field = value`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldWrite {
    /// Domain name.
    pub domain: String,
    /// Field name.
    pub field: String,
    /// New value (must have the field's type).
    pub value: Value,
}

/// Identifies one effect intent: stable across retries and failovers, and
/// the basis of the idempotency key handed to workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EffectKey(pub u64);

/// Identifies one internal step the leader should propose (run a slice,
/// deliver a message). Stale steps are ignored when applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StepId(pub u64);

/// Identifies a replicated timer (retry backoff, cycle backoff).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TimerId(pub u64);

/// How an effect attempt ended, as reported by a worker (or by the leader
/// when the attempt timed out).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EffectOutcome {
    /// The effect succeeded; `value` must have the declared return type
    /// (`None` when the effect declares none).
    Succeeded {
        /// The result value.
        value: Option<Value>,
    },
    /// The attempt failed and may be retried.
    Failed {
        /// Human-readable reason.
        error: String,
    },
}

/// A worker connected to the leader, as [`Entry::DispatchArmed`] sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerRoom {
    /// The worker's name (history).
    pub worker: String,
    /// The effects it serves (`Namespace.Name`).
    pub effects: Vec<String>,
    /// Tasks it can take now.
    pub room: u32,
}

/// A committed log entry, applied in order by every replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Entry {
    /// Install a compiled program (bytes of `Program::encode`).
    SubmitProgram {
        /// Encoded program.
        bytes: Vec<u8>,
    },
    /// Observations written by a client, applied atomically.
    Mutate {
        /// The writes.
        writes: Vec<FieldWrite>,
        /// Who wrote them: the authenticated identity, and a name the client
        /// may add (`lexumctl --as hpa-bridge` gives `token/hpa-bridge`).
        principal: String,
        /// Idempotency keys of the effects whose outcome these writes
        /// observe (SPEC §3.7): the writes are then attributed to the cycles
        /// that issued those effects.
        caused_by: Vec<String>,
    },
    /// Run an internal step from the ready queue (a slice, a delivery).
    RunStep {
        /// The step.
        step: StepId,
    },
    /// The leader handed an effect attempt to a worker. The index of this
    /// entry is the attempt's fencing token.
    Dispatched {
        /// The effect.
        effect: EffectKey,
        /// Attempt number (1-based), as the engine announced it.
        attempt: u32,
        /// Worker identity, for history.
        worker: String,
    },
    /// A worker's answer (or a timeout) for a dispatched attempt.
    EffectResult {
        /// The effect.
        effect: EffectKey,
        /// Fencing token of the attempt (index of its `Dispatched` entry).
        fencing: u64,
        /// What happened.
        outcome: EffectOutcome,
    },
    /// A replicated timer expired.
    TimerFired {
        /// The timer.
        timer: TimerId,
    },
    /// `lexumctl release`: clear TRAPPED (one goal, or all of a domain).
    Release {
        /// Domain name.
        domain: String,
        /// Goal name, or every trapped goal of the domain.
        goal: Option<String>,
    },
    /// `lexumctl retry`: re-arm a FAILED goal.
    Retry {
        /// Domain name.
        domain: String,
        /// Goal name.
        goal: String,
    },
    /// Leader no-op (e.g. the blank entry of a new term).
    Noop,
    /// Cluster-wide engine settings. A leader proposes its configured
    /// values when they differ from the replicated ones, so every replica
    /// judges oscillation with the same threshold.
    Configure {
        /// The new settings (zeroes count as 1).
        config: crate::EngineConfig,
    },
    /// Several entries committed together (group commit: concurrent client
    /// mutations and worker results, and each round of the leader's own
    /// steps, dispatches and timeouts). Each is applied on its own, in
    /// order, exactly as if it were its own entry at this index: goals are
    /// evaluated after each, each has its own outcome, and a rejected one
    /// changes nothing and does not affect the others. Goals they violate
    /// rank among themselves by domain and goal name (they share the
    /// index). A batch inside a batch is rejected.
    Batch {
        /// The entries.
        entries: Vec<Entry>,
    },
    /// `lexumctl create Kind/key field=value ...`: instances of a kind, all
    /// or none. With `upsert`, an instance that exists gets the values
    /// written instead (`set Kind[key].f=v --create`).
    CreateInstances {
        /// The kind.
        kind: String,
        /// The instances, in order (one may read another created before it).
        instances: Vec<crate::NewInstance>,
        /// Write the values of instances that exist instead of refusing.
        upsert: bool,
        /// Who created them (the cause of their initial values).
        principal: String,
    },
    /// `lexumctl delete Kind/key`: cancels the instances' work; their
    /// histories stay.
    DeleteInstances {
        /// The kind.
        kind: String,
        /// Their keys.
        keys: Vec<String>,
    },
    /// Run a step like [`Entry::RunStep`] and dispatch the effects it
    /// intends at once: each becomes attempt 1 in flight, and this entry's
    /// index is its fencing token (one commit instead of a `RunStep` and a
    /// `Dispatched`). The leader proposes it only when it has a worker with
    /// room for every effect the step may emit, and picks the worker after
    /// the commit, so nothing leaves the cluster before the intent is
    /// committed.
    RunStepAndDispatch {
        /// The step.
        step: StepId,
        /// The worker the leader hands the step's effects to (history).
        worker: String,
    },
    /// The last part of a leader's group of client mutations and worker
    /// results: runs the steps the group's earlier parts queued, highest
    /// level first, as [`Entry::RunStepAndDispatch`] would, each that the
    /// first worker in `workers` serving all its effects has room for
    /// (less the attempts the journal holds ready), and none while a step
    /// queued before the group has a higher level. So a mutation that
    /// violates a goal reaches a worker after one commit; the other steps
    /// wait for the leader as usual.
    DispatchArmed {
        /// The leader's workers with room, in the order to fill them.
        workers: Vec<WorkerRoom>,
    },
}

impl Entry {
    /// A client mutation by `principal` that observed no effect.
    pub fn mutation(writes: Vec<FieldWrite>, principal: impl Into<String>) -> Entry {
        Entry::Mutate { writes, principal: principal.into(), caused_by: Vec::new() }
    }

    /// `entries` as one entry to propose: a lone entry as itself, several
    /// as an [`Entry::Batch`].
    pub fn grouped(entries: Vec<Entry>) -> Entry {
        match <[Entry; 1]>::try_from(entries) {
            Ok([only]) => only,
            Err(entries) => Entry::Batch { entries },
        }
    }
}

/// Decoding counts each level of [`Entry::Batch`] nesting, so hostile Raft
/// payloads cannot nest batches until the stack runs out. `EntryRepr`
/// mirrors the derived layout of [`Entry`] variant for variant.
mod nested_decode {
    use super::*;
    use lexum_compiler::bounds::NestingGuard;
    use serde::Deserializer;

    #[derive(Deserialize)]
    enum EntryRepr {
        SubmitProgram { bytes: Vec<u8> },
        Mutate { writes: Vec<FieldWrite>, principal: String, caused_by: Vec<String> },
        RunStep { step: StepId },
        Dispatched { effect: EffectKey, attempt: u32, worker: String },
        EffectResult { effect: EffectKey, fencing: u64, outcome: EffectOutcome },
        TimerFired { timer: TimerId },
        Release { domain: String, goal: Option<String> },
        Retry { domain: String, goal: String },
        Noop,
        Configure { config: crate::EngineConfig },
        Batch { entries: Vec<Entry> },
        CreateInstances { kind: String, instances: Vec<crate::NewInstance>, upsert: bool, principal: String },
        DeleteInstances { kind: String, keys: Vec<String> },
        RunStepAndDispatch { step: StepId, worker: String },
        DispatchArmed { workers: Vec<WorkerRoom> },
    }

    impl<'de> Deserialize<'de> for Entry {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Entry, D::Error> {
            // An entry, a batch, its parts: deeper is never valid.
            let _level = NestingGuard::enter_within::<D::Error>(4)?;
            Ok(match EntryRepr::deserialize(d)? {
                EntryRepr::SubmitProgram { bytes } => Entry::SubmitProgram { bytes },
                EntryRepr::Mutate { writes, principal, caused_by } => Entry::Mutate { writes, principal, caused_by },
                EntryRepr::RunStep { step } => Entry::RunStep { step },
                EntryRepr::Dispatched { effect, attempt, worker } => Entry::Dispatched { effect, attempt, worker },
                EntryRepr::EffectResult { effect, fencing, outcome } => {
                    Entry::EffectResult { effect, fencing, outcome }
                }
                EntryRepr::TimerFired { timer } => Entry::TimerFired { timer },
                EntryRepr::Release { domain, goal } => Entry::Release { domain, goal },
                EntryRepr::Retry { domain, goal } => Entry::Retry { domain, goal },
                EntryRepr::Noop => Entry::Noop,
                EntryRepr::Configure { config } => Entry::Configure { config },
                EntryRepr::Batch { entries } => Entry::Batch { entries },
                EntryRepr::CreateInstances { kind, instances, upsert, principal } => {
                    Entry::CreateInstances { kind, instances, upsert, principal }
                }
                EntryRepr::DeleteInstances { kind, keys } => Entry::DeleteInstances { kind, keys },
                EntryRepr::RunStepAndDispatch { step, worker } => Entry::RunStepAndDispatch { step, worker },
                EntryRepr::DispatchArmed { workers } => Entry::DispatchArmed { workers },
            })
        }
    }
}
