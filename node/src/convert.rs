//! Conversions between wire (protobuf) types and engine/compiler types.
//! The only module of the node that knows both.

use crate::cluster::ProposeError;
use lexum_compiler::program::Value;
use lexum_proto::v1 as pb;
use tonic::Status;

/// Deepest list nesting accepted from the wire.
const MAX_VALUE_DEPTH: usize = 8;

/// Converts a wire value, refusing empty or too deeply nested ones.
pub fn value_from_wire(value: &pb::Value) -> Result<Value, Status> {
    value_from_wire_at(value, 0)
}

fn value_from_wire_at(value: &pb::Value, depth: usize) -> Result<Value, Status> {
    if depth > MAX_VALUE_DEPTH {
        return Err(Status::invalid_argument("value nested too deeply"));
    }
    match &value.kind {
        Some(pb::value::Kind::Int(n)) => Ok(Value::Int(*n)),
        Some(pb::value::Kind::Bool(b)) => Ok(Value::Bool(*b)),
        Some(pb::value::Kind::Str(s)) => Ok(Value::Str(s.clone())),
        Some(pb::value::Kind::List(list)) => {
            list.items.iter().map(|v| value_from_wire_at(v, depth + 1)).collect::<Result<_, _>>().map(Value::List)
        }
        None => Err(Status::invalid_argument("value has no kind")),
    }
}

/// Converts an engine value to the wire.
pub fn value_to_wire(value: &Value) -> pb::Value {
    let kind = match value {
        Value::Int(n) => pb::value::Kind::Int(*n),
        Value::Bool(b) => pb::value::Kind::Bool(*b),
        Value::Str(s) => pb::value::Kind::Str(s.clone()),
        Value::List(items) => pb::value::Kind::List(pb::ValueList { items: items.iter().map(value_to_wire).collect() }),
    };
    pb::Value { kind: Some(kind) }
}

/// `name = value` pairs to the wire.
pub fn named_to_wire(pairs: &[(String, Value)]) -> Vec<pb::NamedValue> {
    pairs.iter().map(|(name, value)| pb::NamedValue { name: name.clone(), value: Some(value_to_wire(value)) }).collect()
}

/// Metadata key carrying a diagnostic code (`E011`, ...) on errors.
pub const CODE_METADATA_KEY: &str = "lexum-code";

/// Maps a proposal failure to a gRPC status: redirects carry the leader's
/// address, rejections their diagnostic code.
pub fn propose_error_to_status(err: ProposeError) -> Status {
    match err {
        ProposeError::NotLeader { leader } => {
            let mut status = Status::failed_precondition(format!(
                "not the leader{}",
                leader.as_ref().map(|l| format!("; leader is {l}")).unwrap_or_default()
            ));
            if let Some(value) = leader.and_then(|l| l.parse().ok()) {
                status.metadata_mut().insert(lexum_proto::LEADER_METADATA_KEY, value);
            }
            status
        }
        ProposeError::Rejected(rejection) => {
            let mut status = Status::invalid_argument(format!("{}: {}", rejection.code, rejection.message));
            if let Ok(value) = rejection.code.parse() {
                status.metadata_mut().insert(CODE_METADATA_KEY, value);
            }
            status
        }
        ProposeError::Unavailable(message) => Status::unavailable(message),
        ProposeError::Unknown => Status::deadline_exceeded(ProposeError::Unknown.to_string()),
    }
}

/// A goal report to the wire.
pub fn goal_to_wire(g: lexum_engine::GoalReport) -> pb::GoalInfo {
    pb::GoalInfo {
        domain: g.domain,
        goal: g.goal,
        priority: g.priority.to_string(),
        status: g.status.to_string(),
        code: g.code.unwrap_or_default(),
        evidence: g.evidence.unwrap_or_default(),
        since_index: g.since_index,
        cycles: g.cycles,
    }
}

fn cycle_ref(c: &lexum_engine::CycleCause) -> pb::CycleRef {
    pb::CycleRef { cycle: c.cycle, goal: c.goal.clone(), started_at: c.started_at }
}

/// A field write and its cause to the wire.
pub fn write_record_to_wire(w: &lexum_engine::WriteRecord) -> pb::WriteRecord {
    use lexum_engine::Cause;
    let kind = match &w.cause {
        Cause::Cycle { cycle, step } => {
            pb::cause::Kind::Cycle(pb::CycleWriteCause { cycle: Some(cycle_ref(cycle)), step: step.clone() })
        }
        Cause::Handler { handler } => pb::cause::Kind::Handler(handler.clone()),
        Cause::Client { principal, caused_by, observed } => pb::cause::Kind::Client(pb::ClientCause {
            principal: principal.clone(),
            caused_by: caused_by.clone(),
            observed: observed
                .iter()
                .map(|o| pb::ObservedEffect {
                    idempotency_key: o.idempotency_key.clone(),
                    effect: o.effect.clone(),
                    cycle: Some(cycle_ref(&o.cycle)),
                    worker: o.worker.clone().unwrap_or_default(),
                })
                .collect(),
        }),
    };
    pb::WriteRecord {
        index: w.index,
        field: w.field.clone(),
        old: Some(value_to_wire(&w.old)),
        new: Some(value_to_wire(&w.new)),
        cause: Some(pb::Cause { kind: Some(kind) }),
    }
}

fn waiting_to_wire(waiting: lexum_engine::Waiting) -> pb::Waiting {
    use lexum_engine::Waiting;
    let of = |kind: &str| pb::Waiting { kind: kind.to_string(), ..Default::default() };
    match waiting {
        Waiting::Nothing => of("nothing"),
        Waiting::Trap => of("trap"),
        Waiting::Failure => of("failure"),
        Waiting::Damping { principal } => pb::Waiting { detail: principal, ..of("damping") },
        Waiting::Dominance { higher } => pb::Waiting { detail: higher, ..of("dominance") },
        Waiting::Backoff { delay_ms } => pb::Waiting { delay_ms, ..of("backoff") },
        Waiting::Cycle { cycle, transition, next_slice, effects, suspended } => {
            pb::Waiting { cycle, transition, next_slice, effects, suspended, ..of("cycle") }
        }
        Waiting::Domain { busy_with } => pb::Waiting { detail: busy_with, ..of("domain") },
        Waiting::NoTransition => of("no_transition"),
    }
}

/// An explanation to the wire.
pub fn explanation_to_wire(index: u64, e: lexum_engine::Explanation) -> pb::ExplainResponse {
    pb::ExplainResponse {
        index,
        goal: Some(goal_to_wire(e.goal)),
        writes: e.writes.iter().map(write_record_to_wire).collect(),
        armed_transition: e.armed_transition.unwrap_or_default(),
        waiting: Some(waiting_to_wire(e.waiting)),
        contention: e
            .contention
            .into_iter()
            .map(|c| pb::Contention {
                principal: c.principal,
                undos: c.undos,
                fields: c.fields,
                penalty: c.penalty,
                suppressing: c.suppressing,
                last_index: c.last_index,
            })
            .collect(),
        vector: e
            .vector
            .into_iter()
            .map(|v| pb::VectorEntry { field: v.field, writer: v.writer, delta: v.delta, index: v.index })
            .collect(),
        dominated_by: e.dominated_by,
    }
}

/// A cycle record to the wire.
pub fn cycle_to_wire(c: &lexum_engine::CycleRecord) -> pb::Cycle {
    pb::Cycle {
        cycle: c.cycle,
        domain: c.domain.clone(),
        goal: c.goal.clone(),
        transition: c.transition.clone(),
        priority: c.priority.to_string(),
        start_index: c.start_index,
        end_index: c.end_index,
        deltas: c
            .deltas
            .iter()
            .map(|d| pb::FieldDelta {
                field: d.field.clone(),
                before: Some(value_to_wire(&d.before)),
                after: Some(value_to_wire(&d.after)),
                delta: d.delta,
            })
            .collect(),
        goals_after: c
            .goals_after
            .iter()
            .map(|(goal, holds)| pb::GoalAfter { goal: goal.clone(), holds: *holds })
            .collect(),
        verdict: c.verdict.name().to_string(),
        code: c.code.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let value = Value::List(vec![Value::Int(-3), Value::Str("x".into())]);
        assert_eq!(value_from_wire(&value_to_wire(&value)).ok(), Some(value));
    }

    #[test]
    fn empty_and_deep_values_are_refused() {
        assert!(value_from_wire(&pb::Value { kind: None }).is_err());
        let mut deep = value_to_wire(&Value::Int(1));
        for _ in 0..20 {
            deep = pb::Value { kind: Some(pb::value::Kind::List(pb::ValueList { items: vec![deep] })) };
        }
        assert!(value_from_wire(&deep).is_err());
    }
}
