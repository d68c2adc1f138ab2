//! Read-only views for clients: goal reports and cycle history.

use std::fmt;

use lexum_compiler::program::{GoalId, Priority, Program, Value};
use serde::{Deserialize, Serialize};

use crate::Engine;

/// A goal's status (SPEC §3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum GoalStatus {
    /// The predicate holds.
    Satisfied,
    /// The predicate does not hold and no repair is running.
    Violated,
    /// A transition instance is repairing it.
    Repairing,
    /// Retries exhausted (E010) or the repair broke an invariant or failed to
    /// evaluate; re-armed when its inputs change or on retry.
    Failed,
    /// A higher-priority goal that conflicts with it holds; its transition is
    /// suppressed.
    Dominated,
    /// Oscillation detected (E005); no dispatching until released.
    Trapped,
}

impl fmt::Display for GoalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GoalStatus::Satisfied => "SATISFIED",
            GoalStatus::Violated => "VIOLATED",
            GoalStatus::Repairing => "REPAIRING",
            GoalStatus::Failed => "FAILED",
            GoalStatus::Dominated => "DOMINATED",
            GoalStatus::Trapped => "TRAPPED",
        })
    }
}

/// One goal as `lexumctl goals` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoalReport {
    /// Domain name.
    pub domain: String,
    /// Goal name.
    pub goal: String,
    /// Effective level.
    pub priority: Priority,
    /// Current status.
    pub status: GoalStatus,
    /// Whether the predicate holds right now.
    pub holds: bool,
    /// `E005`, `E010`, `E011` or `E012` for a trap or failure.
    pub code: Option<String>,
    /// Why it is trapped, failed or dominated.
    pub evidence: Option<String>,
    /// Index of the entry at which the status last changed.
    pub since_index: u64,
    /// Cycles judged since the program version or the last release.
    pub cycles: u32,
}

/// A field change attributed to a cycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDelta {
    /// `Domain.field`.
    pub field: String,
    /// Value before the cycle's first write.
    pub before: Value,
    /// Value when the cycle was judged.
    pub after: Value,
    /// Signed change for `int` fields.
    pub delta: Option<i64>,
}

/// One judged (or cut short) cycle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleRecord {
    /// Cycle (transition instance) id.
    pub cycle: u64,
    /// Domain name.
    pub domain: String,
    /// `Goal` repaired.
    pub goal: String,
    /// Transition that ran.
    pub transition: String,
    /// Its level.
    pub priority: Priority,
    /// Index at which it was armed.
    pub start_index: u64,
    /// Index at which it was judged.
    pub end_index: u64,
    /// Fields it changed.
    pub deltas: Vec<FieldDelta>,
    /// `Domain.Goal` → holds afterwards, for its goal and every goal it touched.
    pub goals_after: Vec<(String, bool)>,
    /// `converged`, `progress`, `no_progress`, `tug_of_war`, `trapped` (the
    /// verdict, recorded once), or for a cycle cut short `failed`,
    /// `preempted`, `cancelled` (its goal was trapped by another cycle).
    pub verdict: String,
    /// Diagnostic code attached to the verdict.
    pub code: Option<String>,
}

impl Engine {
    /// Every goal in program order.
    pub fn goals(&self) -> Vec<GoalReport> {
        let Some(program) = self.program.as_ref() else { return Vec::new() };
        (0..program.goals.len()).filter_map(|i| self.report(program, GoalId(i as u32))).collect()
    }

    /// One goal's report.
    pub fn goal(&self, domain: &str, goal: &str) -> Option<GoalReport> {
        let program = self.program.as_ref()?;
        let d = *self.index.domains.get(domain)?;
        self.report(program, program.goal_by_name(d, goal)?)
    }

    fn report(&self, program: &Program, id: GoalId) -> Option<GoalReport> {
        let g = program.goals.get(id.index())?;
        let s = self.goal_states.get(id.index())?;
        Some(GoalReport {
            domain: program.domains[g.domain.index()].name.clone(),
            goal: g.name.clone(),
            priority: g.priority,
            status: s.status,
            holds: s.holds,
            code: s.code.clone(),
            evidence: s.evidence.clone(),
            since_index: s.since_index,
            cycles: s.cycles,
        })
    }

    /// The most recent `limit` cycles, oldest first.
    pub fn history(&self, limit: usize) -> Vec<CycleRecord> {
        let skip = self.history.len().saturating_sub(limit);
        self.history.iter().skip(skip).cloned().collect()
    }

    /// Number of cycles judged since the engine started.
    pub fn cycles_judged(&self) -> u64 {
        self.cycles_judged
    }
}
