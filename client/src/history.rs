//! Judged repair cycles, as `Client::history` returns them: the evidence
//! behind a verdict (what a cycle changed and which goals held after it).

use lexum_proto::v1 as pb;
use serde::Serialize;

use crate::client::non_empty;
use crate::value::{self, Value};

/// One judged (or cut short) repair cycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cycle {
    /// Cycle id.
    pub cycle: u64,
    /// Domain name (`Pool`, `Pool[web]`).
    pub domain: String,
    /// The goal it repaired.
    pub goal: String,
    /// The transition that ran.
    pub transition: String,
    /// `critical` .. `background`.
    pub priority: String,
    /// Log index at which it was armed.
    pub start_index: u64,
    /// Log index at which it was judged.
    pub end_index: u64,
    /// Fields it changed.
    pub deltas: Vec<FieldDelta>,
    /// Its goal and every goal it touched, and whether each held afterwards.
    pub goals_after: Vec<GoalAfter>,
    /// How it ended: `converged`, `progress`, `no_progress`, `tug_of_war`,
    /// `trapped`, `failed`, `cancelled`, `deleted` or `dropped`.
    pub verdict: String,
    /// Diagnostic code attached to the verdict (`E005`), if any.
    pub code: Option<String>,
}

/// A field a cycle changed, from before its first write to when it was judged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldDelta {
    /// `Domain.field`.
    pub field: String,
    /// Value before the cycle's first write.
    #[serde(serialize_with = "value::serialize_plain")]
    pub before: Value,
    /// Value when the cycle was judged.
    #[serde(serialize_with = "value::serialize_plain")]
    pub after: Value,
    /// Signed change, for `int` fields.
    pub delta: Option<i64>,
}

/// Whether a goal held after a cycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GoalAfter {
    /// `Domain.Goal`.
    pub goal: String,
    /// Whether it held.
    pub holds: bool,
}

/// A cycle from the wire; a delta whose value is missing or malformed is
/// dropped rather than shown with a made-up value.
pub(crate) fn cycle_from_wire(c: pb::Cycle) -> Cycle {
    let deltas = c
        .deltas
        .into_iter()
        .filter_map(|d| {
            let before = value::from_wire(d.before.as_ref()?)?;
            let after = value::from_wire(d.after.as_ref()?)?;
            Some(FieldDelta { field: d.field, before, after, delta: d.delta })
        })
        .collect();
    Cycle {
        cycle: c.cycle,
        domain: c.domain,
        goal: c.goal,
        transition: c.transition,
        priority: c.priority,
        start_index: c.start_index,
        end_index: c.end_index,
        deltas,
        goals_after: c.goals_after.into_iter().map(|g| GoalAfter { goal: g.goal, holds: g.holds }).collect(),
        verdict: c.verdict,
        code: non_empty(c.code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_reads_from_the_wire_with_plain_values_in_json() {
        let wire = pb::Cycle {
            cycle: 7,
            domain: "Pool[web]".into(),
            goal: "Sized".into(),
            transition: "Scale".into(),
            priority: "high".into(),
            start_index: 10,
            end_index: 14,
            deltas: vec![
                pb::FieldDelta {
                    field: "Pool[web].nodes".into(),
                    before: Some(value::to_wire(&Value::Int(3))),
                    after: Some(value::to_wire(&Value::Int(5))),
                    delta: Some(2),
                },
                pb::FieldDelta { field: "Pool[web].broken".into(), before: None, after: None, delta: None },
            ],
            goals_after: vec![pb::GoalAfter { goal: "Pool[web].Sized".into(), holds: true }],
            verdict: "converged".into(),
            code: String::new(),
        };
        let cycle = cycle_from_wire(wire);
        assert_eq!(cycle.deltas.len(), 1, "the delta without values is dropped");
        assert_eq!(cycle.code, None);
        let json = serde_json::to_value(&cycle).expect("serializes");
        assert_eq!(json["deltas"][0]["before"], 3);
        assert_eq!(json["deltas"][0]["after"], 5);
        assert_eq!(json["deltas"][0]["delta"], 2);
        assert_eq!(json["goals_after"][0]["holds"], true);
        assert_eq!(json["priority"], "high");
        assert_eq!(json["verdict"], "converged");
    }
}
