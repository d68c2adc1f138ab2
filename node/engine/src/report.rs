//! Read-only views for clients: goal reports and cycle history.

use std::fmt;
use std::str::FromStr;

use lexum_compiler::program::{GoalId, Priority, Program, Value};
use serde::{Deserialize, Serialize};

use crate::{CycleVerdict, Engine};

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
    /// Undone again and again by the same outside principal (E016): its
    /// repairs are damped until the penalty decays.
    Contested,
}

impl GoalStatus {
    /// Every status, in the order listings and metrics name them.
    pub const ALL: [GoalStatus; 7] = [
        GoalStatus::Satisfied,
        GoalStatus::Violated,
        GoalStatus::Repairing,
        GoalStatus::Failed,
        GoalStatus::Dominated,
        GoalStatus::Trapped,
        GoalStatus::Contested,
    ];

    /// The status as clients and metrics name it (`TRAPPED`, ...).
    pub fn name(self) -> &'static str {
        match self {
            GoalStatus::Satisfied => "SATISFIED",
            GoalStatus::Violated => "VIOLATED",
            GoalStatus::Repairing => "REPAIRING",
            GoalStatus::Failed => "FAILED",
            GoalStatus::Dominated => "DOMINATED",
            GoalStatus::Trapped => "TRAPPED",
            GoalStatus::Contested => "CONTESTED",
        }
    }
}

impl fmt::Display for GoalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A status name that is none of [`GoalStatus::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown status `{0}` (one of SATISFIED, VIOLATED, REPAIRING, FAILED, DOMINATED, TRAPPED, CONTESTED)")]
pub struct UnknownStatus(pub String);

impl FromStr for GoalStatus {
    type Err = UnknownStatus;

    /// Parses a status by its exact name (`TRAPPED`).
    fn from_str(name: &str) -> Result<GoalStatus, UnknownStatus> {
        GoalStatus::ALL.into_iter().find(|s| s.name() == name).ok_or_else(|| UnknownStatus(name.to_owned()))
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

/// One signed change of an oscillation vector: an attributed write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorEntry {
    /// `Domain.field`.
    pub field: String,
    /// `Domain.Goal` whose cycle wrote (directly or through `caused_by`).
    pub writer: String,
    /// Signed change (1 for a change of a non-int field).
    pub delta: i64,
    /// Index of the write.
    pub index: u64,
}

/// Outside contention of a goal by one principal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentionReport {
    /// The outside principal.
    pub principal: String,
    /// Times its writes undid the goal.
    pub undos: u32,
    /// `Domain.field`s it wrote when it did.
    pub fields: Vec<String>,
    /// Current damping penalty (1000 per undo, halved every half-life).
    pub penalty: u32,
    /// Whether the goal's repairs are suspended because of it.
    pub suppressing: bool,
    /// Index of its last undo.
    pub last_index: u64,
}

/// What a violated goal's repair waits for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Waiting {
    /// Nothing: the goal holds.
    Nothing,
    /// Trapped (E005) until `lexumctl release` or a new version.
    Trap,
    /// Failed (E010, E011, E012) until its inputs change or `lexumctl retry`.
    Failure,
    /// Damped by outside contention (E016) until the penalty decays.
    Damping {
        /// The principal.
        principal: String,
    },
    /// Suppressed while a higher-priority goal holds.
    Dominance {
        /// `Domain.Goal` of the higher goal.
        higher: String,
    },
    /// A cycle backoff timer (inputs unchanged by the last cycle).
    Backoff {
        /// Delay of the armed timer.
        delay_ms: u64,
    },
    /// Its cycle runs: the next step, an effect, or a free worker.
    Cycle {
        /// Cycle id.
        cycle: u64,
        /// Transition.
        transition: String,
        /// Next slice to run (0-based).
        next_slice: u32,
        /// Effects of the current slice not yet succeeded, as `Namespace.Name`.
        effects: Vec<String>,
        /// Preempted by a higher-priority goal of its domain.
        suspended: bool,
    },
    /// Its domain runs another goal's cycle.
    Domain {
        /// `Domain.Goal` being repaired there.
        busy_with: String,
    },
    /// No transition's `when` holds.
    NoTransition,
}

/// Why a goal is in its status (`lexumctl explain`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// The goal's report.
    pub goal: GoalReport,
    /// The latest writes of its inputs, oldest first: what violated it.
    pub writes: Vec<crate::WriteRecord>,
    /// For a violated goal, the transition that would run (the first whose
    /// `when` holds), if any.
    pub armed_transition: Option<String>,
    /// What it waits for.
    pub waiting: Waiting,
    /// Outside principals contending it.
    pub contention: Vec<ContentionReport>,
    /// The oscillation vector over its inputs (attributed writes only).
    pub vector: Vec<VectorEntry>,
    /// Higher-priority goals that dominate it (static and learnt).
    pub dominated_by: Vec<String>,
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
    /// How it ended.
    pub verdict: CycleVerdict,
    /// Diagnostic code attached to the verdict.
    pub code: Option<String>,
}

impl Engine {
    /// Every goal in program order.
    pub fn goals(&self) -> Vec<GoalReport> {
        self.goals_page(None, None, 0, 0).0
    }

    /// How many goals are in each status, in [`GoalStatus::ALL`]'s order
    /// (goals of deleted instances not counted).
    pub fn status_counts(&self) -> [(GoalStatus, u64); 7] {
        let mut counts = GoalStatus::ALL.map(|s| (s, 0));
        for gs in self.goal_states.iter().filter(|gs| !gs.inert) {
            if let Some(count) = counts.iter_mut().find(|(s, _)| *s == gs.status) {
                count.1 += 1;
            }
        }
        counts
    }

    /// A page of goals in program order: of one domain (a singleton, an
    /// instance, or every instance of a kind) or all, with one status
    /// (`TRAPPED`, ...) or any; `offset` matches skipped, at most `limit`
    /// returned (0: all). Also returns how many match in all. Unknown
    /// domains match nothing.
    pub fn goals_page(
        &self,
        domain: Option<&str>,
        status: Option<GoalStatus>,
        offset: u64,
        limit: u64,
    ) -> (Vec<GoalReport>, u64) {
        let Some(program) = self.program.as_ref() else { return (Vec::new(), 0) };
        let candidates: Vec<GoalId> = match domain {
            None => (0..program.goals.len() as u32).map(GoalId).collect(),
            Some(name) => match self.index.domains.get(name) {
                None => Vec::new(),
                Some(d) if program.domains[d.index()].key.is_some() => {
                    let mut domains: Vec<lexum_compiler::program::DomainId> = self.live_instances(*d).collect();
                    domains.sort_unstable();
                    domains.iter().flat_map(|i| program.domains[i.index()].goals.iter().copied()).collect()
                }
                Some(d) => program.domains[d.index()].goals.clone(),
            },
        };
        let mut total = 0u64;
        let mut page = Vec::new();
        for g in candidates {
            let Some(gs) = self.goal_states.get(g.index()) else { continue };
            if gs.inert || status.is_some_and(|s| gs.status != s) {
                continue;
            }
            total += 1;
            if total > offset && (limit == 0 || (page.len() as u64) < limit) {
                page.extend(self.report(program, g));
            }
        }
        (page, total)
    }

    /// One goal's report.
    pub fn goal(&self, domain: &str, goal: &str) -> Option<GoalReport> {
        let program = self.program.as_ref()?;
        let d = *self.index.domains.get(domain)?;
        self.report(program, program.goal_by_name(d, goal)?)
    }

    pub(crate) fn report(&self, program: &Program, id: GoalId) -> Option<GoalReport> {
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
