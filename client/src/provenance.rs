//! Causes of writes and explanations of goals, as `Client::why` and
//! `Client::explain` return them (SPEC §3.7).

use lexum_proto::v1 as pb;
use serde::Serialize;

use crate::client::{non_empty, Goal};
use crate::value::{self, Value};

/// A cycle as a cause names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CycleRef {
    /// Cycle id.
    pub cycle: u64,
    /// `Domain.Goal` the cycle repairs.
    pub goal: String,
    /// Log index at which it was armed.
    pub started_at: u64,
}

/// An effect whose outcome a client write observed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObservedEffect {
    /// The effect's idempotency key.
    pub idempotency_key: String,
    /// `Namespace.Name`.
    pub effect: String,
    /// The cycle that issued it.
    pub cycle: CycleRef,
    /// The worker of its last dispatched attempt.
    pub worker: Option<String>,
}

/// What caused a write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    /// A cycle's slice (`step` is the slice) or the handler of a message it
    /// sent (`step` is `Domain.Handler`).
    Cycle {
        /// The cycle.
        cycle: CycleRef,
        /// Slice or handler.
        step: String,
    },
    /// A client mutation.
    Client {
        /// Authenticated identity, with the name the client added.
        principal: String,
        /// Effect keys the client said it observed.
        caused_by: Vec<String>,
        /// Those the cluster knew, with their cycles.
        observed: Vec<ObservedEffect>,
    },
    /// The handler of a message no cycle is known for.
    Handler {
        /// `Domain.Handler`.
        handler: String,
    },
}

/// One committed write of a field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WriteRecord {
    /// Log index.
    pub index: u64,
    /// `Domain.field`.
    pub field: String,
    /// Value before.
    #[serde(serialize_with = "value::serialize_plain")]
    pub old: Value,
    /// Value written.
    #[serde(serialize_with = "value::serialize_plain")]
    pub new: Value,
    /// Why.
    pub cause: Cause,
}

/// What a violated goal's repair waits for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Waiting {
    /// Nothing: the goal holds.
    Nothing,
    /// A trap (E005): `lexumctl release` or a new version.
    Trap,
    /// A failure (E010, E011, E012): new inputs or `lexumctl retry`.
    Failure,
    /// Damping of outside contention (E016).
    Damping {
        /// The outside principal.
        principal: String,
    },
    /// A higher-priority goal that holds.
    Dominance {
        /// `Domain.Goal`.
        higher: String,
    },
    /// A cycle backoff timer.
    Backoff {
        /// Its delay.
        delay_ms: u64,
    },
    /// Its own cycle: the next step, an effect, or a free worker.
    Cycle {
        /// Cycle id.
        cycle: u64,
        /// Transition.
        transition: String,
        /// Next slice (0-based).
        next_slice: u32,
        /// Effects awaited.
        effects: Vec<String>,
        /// Preempted by a higher-priority goal of its domain.
        suspended: bool,
    },
    /// Another goal's cycle in the same domain.
    Domain {
        /// `Domain.Goal` being repaired there.
        busy_with: String,
    },
    /// No transition whose `when` holds.
    NoTransition,
}

/// Outside contention of a goal by one principal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Contention {
    /// The principal.
    pub principal: String,
    /// Times its writes undid the goal.
    pub undos: u32,
    /// Fields it wrote.
    pub fields: Vec<String>,
    /// Damping penalty now.
    pub penalty: u32,
    /// Whether it suspends the goal's repairs.
    pub suppressing: bool,
    /// Index of its last undo.
    pub last_index: u64,
}

/// One signed change of an oscillation vector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VectorEntry {
    /// `Domain.field`.
    pub field: String,
    /// `Domain.Goal` whose cycle wrote.
    pub writer: String,
    /// Signed change.
    pub delta: i64,
    /// Log index.
    pub index: u64,
}

/// Why a goal is in its status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// Log index the answer reflects.
    pub index: u64,
    /// The goal.
    pub goal: Goal,
    /// The latest writes of its inputs, oldest first.
    pub writes: Vec<WriteRecord>,
    /// The transition that would run now.
    pub armed_transition: Option<String>,
    /// What its repair waits for.
    pub waiting: Waiting,
    /// Outside contention.
    pub contention: Vec<Contention>,
    /// Oscillation vector over its inputs.
    pub vector: Vec<VectorEntry>,
    /// Higher goals that dominate it.
    pub dominated_by: Vec<String>,
}

fn cycle_from_wire(c: Option<pb::CycleRef>) -> CycleRef {
    let c = c.unwrap_or_default();
    CycleRef { cycle: c.cycle, goal: c.goal, started_at: c.started_at }
}

/// A write record from the wire.
pub(crate) fn write_from_wire(w: pb::WriteRecord) -> WriteRecord {
    let cause = match w.cause.and_then(|c| c.kind) {
        Some(pb::cause::Kind::Cycle(c)) => Cause::Cycle { cycle: cycle_from_wire(c.cycle), step: c.step },
        Some(pb::cause::Kind::Client(c)) => Cause::Client {
            principal: c.principal,
            caused_by: c.caused_by,
            observed: c
                .observed
                .into_iter()
                .map(|o| ObservedEffect {
                    idempotency_key: o.idempotency_key,
                    effect: o.effect,
                    cycle: cycle_from_wire(o.cycle),
                    worker: non_empty(o.worker),
                })
                .collect(),
        },
        Some(pb::cause::Kind::Handler(handler)) => Cause::Handler { handler },
        None => Cause::Handler { handler: String::new() },
    };
    let value = |v: Option<pb::Value>| v.as_ref().and_then(value::from_wire).unwrap_or(Value::Int(0));
    WriteRecord { index: w.index, field: w.field, old: value(w.old), new: value(w.new), cause }
}

fn waiting_from_wire(w: pb::Waiting) -> Waiting {
    match w.kind.as_str() {
        "trap" => Waiting::Trap,
        "failure" => Waiting::Failure,
        "damping" => Waiting::Damping { principal: w.detail },
        "dominance" => Waiting::Dominance { higher: w.detail },
        "backoff" => Waiting::Backoff { delay_ms: w.delay_ms },
        "cycle" => Waiting::Cycle {
            cycle: w.cycle,
            transition: w.transition,
            next_slice: w.next_slice,
            effects: w.effects,
            suspended: w.suspended,
        },
        "domain" => Waiting::Domain { busy_with: w.detail },
        "no_transition" => Waiting::NoTransition,
        _ => Waiting::Nothing,
    }
}

/// An explanation from the wire.
pub(crate) fn explanation_from_wire(r: pb::ExplainResponse) -> Explanation {
    Explanation {
        index: r.index,
        goal: crate::client::goal_from_wire(r.goal.unwrap_or_default()),
        writes: r.writes.into_iter().map(write_from_wire).collect(),
        armed_transition: non_empty(r.armed_transition),
        waiting: waiting_from_wire(r.waiting.unwrap_or_default()),
        contention: r
            .contention
            .into_iter()
            .map(|c| Contention {
                principal: c.principal,
                undos: c.undos,
                fields: c.fields,
                penalty: c.penalty,
                suppressing: c.suppressing,
                last_index: c.last_index,
            })
            .collect(),
        vector: r
            .vector
            .into_iter()
            .map(|v| VectorEntry { field: v.field, writer: v.writer, delta: v.delta, index: v.index })
            .collect(),
        dominated_by: r.dominated_by,
    }
}
