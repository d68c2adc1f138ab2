//! `lexumctl explain`: why a goal is in its status, as data — the writes
//! that violated it, the transition that would run, and what its repair
//! waits for.

use lexum_compiler::program::{GoalId, Program};

use crate::report::{ContentionReport, Explanation, Waiting};
use crate::state::TimerKind;
use crate::Engine;

/// Writes of the goal's inputs listed by `explain`.
const EXPLAIN_WRITES: usize = 10;

impl Engine {
    /// Why `Domain.Goal` is in its status (`None` for an unknown goal).
    pub fn explain(&self, domain: &str, goal: &str) -> Option<Explanation> {
        let program = self.program.as_ref()?;
        let d = *self.index.domains.get(domain)?;
        let g = program.goal_by_name(d, goal)?;
        let report = self.report(program, g)?;
        let gs = self.goal_states.get(g.index())?;
        let decl = &program.goals[g.index()];
        let mut writes: Vec<crate::WriteRecord> =
            decl.read_set.iter().flat_map(|f| self.field_writes(program, *f)).collect();
        writes.sort_by_key(|w| w.index);
        let skip = writes.len().saturating_sub(EXPLAIN_WRITES);
        let writes = writes.into_iter().skip(skip).collect();
        let contention = gs
            .contention
            .iter()
            .map(|(principal, c)| ContentionReport {
                principal: principal.clone(),
                undos: c.undos,
                fields: c.fields.iter().map(|f| program.field_path(*f)).collect(),
                penalty: c.penalty,
                suppressing: gs.suppressed_by.as_deref() == Some(principal.as_str()),
                last_index: c.last_index,
            })
            .collect();
        let dominated_by =
            self.index.dominators.get(g.index()).into_iter().flatten().map(|h| program.goal_path(*h)).collect();
        Some(Explanation {
            goal: report,
            writes,
            armed_transition: if gs.holds {
                None
            } else {
                self.armed(program, g).map(|(t, _)| program.transitions[t.index()].name.clone())
            },
            waiting: self.waiting(program, g),
            contention,
            vector: self.vector_entries(program, &decl.read_set),
            dominated_by,
        })
    }

    fn waiting(&self, program: &Program, g: GoalId) -> Waiting {
        let gs = &self.goal_states[g.index()];
        if gs.trapped {
            return Waiting::Trap;
        }
        if gs.holds {
            return Waiting::Nothing;
        }
        if gs.failed {
            return Waiting::Failure;
        }
        if let Some(principal) = &gs.suppressed_by {
            return Waiting::Damping { principal: principal.clone() };
        }
        if let Some(id) = gs.open_cycle {
            if let Some(c) = self.cycles.get(&id) {
                let effects = c
                    .waiting
                    .iter()
                    .filter_map(|k| self.effects.get(k))
                    .filter_map(|e| program.effects.get(e.effect.index()))
                    .map(|e| e.full_name())
                    .collect();
                return Waiting::Cycle {
                    cycle: id,
                    transition: program.transitions[c.transition.index()].name.clone(),
                    next_slice: c.next_slice,
                    effects,
                    suspended: c.suspended,
                };
            }
        }
        if let Some(h) = self.dominator(g) {
            return Waiting::Dominance { higher: program.goal_path(h) };
        }
        if let Some(timer) = gs.backoff.and_then(|t| self.timers.get(&t)) {
            if matches!(timer.kind, TimerKind::CycleBackoff { .. }) {
                return Waiting::Backoff { delay_ms: timer.delay_ms };
            }
        }
        let domain = program.goals[g.index()].domain;
        if let Some(c) = self.running.get(&domain.0).and_then(|id| self.cycles.get(id)) {
            return Waiting::Domain { busy_with: program.goal_path(c.goal) };
        }
        Waiting::NoTransition
    }
}
