//! The live view's data (`lexumd`'s `/ui`): domains with their goals and
//! running transitions, effects in flight with their workers, traps with
//! their vectors, dominance pairs and recent writes, as plain data. The
//! node renders it as JSON; nothing here knows HTTP.

use lexum_compiler::program::{Priority, Value};
use serde::Serialize;

use crate::report::{GoalReport, GoalStatus, VectorEntry, Waiting};
use crate::state::EffectState;
use crate::{Engine, WriteRecord};

/// One goal in the view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GoalView {
    /// The goal's report (status, code, evidence).
    pub report: GoalReport,
    /// The transition running for it and its next slice, if any.
    pub running: Option<RunningView>,
    /// Higher-priority goals that dominate it (`Domain.Goal`).
    pub dominated_by: Vec<String>,
}

/// A transition instance in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunningView {
    /// Transition name.
    pub transition: String,
    /// Name of the next slice to run (empty when all ran and what they
    /// caused is awaited).
    pub slice: String,
    /// Effects of the current slice not yet succeeded.
    pub effects: Vec<String>,
    /// Preempted by a higher-priority goal of its domain.
    pub suspended: bool,
}

/// One domain (a singleton or an instance) and its goals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DomainView {
    /// Name (`Pool`, `Pool[web]`).
    pub name: String,
    /// The domain's level (its lane).
    pub priority: Priority,
    /// Its fields and values.
    pub fields: Vec<(String, Value)>,
    /// Its goals in source order.
    pub goals: Vec<GoalView>,
}

/// An effect that is ready, in flight or waiting for a retry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EffectView {
    /// `Namespace.Name`.
    pub effect: String,
    /// Arguments by parameter name.
    pub args: Vec<(String, Value)>,
    /// Idempotency key.
    pub idempotency_key: String,
    /// Attempts dispatched so far.
    pub attempts: u32,
    /// `ready`, `in_flight` or `backoff`.
    pub state: String,
    /// The worker of the last dispatched attempt, if known.
    pub worker: Option<String>,
    /// `Domain.Goal` whose cycle emitted it, if any.
    pub goal: Option<String>,
    /// Its level.
    pub priority: Priority,
}

/// A trapped goal with its oscillation vector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TrapView {
    /// `Domain.Goal`.
    pub goal: String,
    /// `E005`.
    pub code: Option<String>,
    /// The engine's evidence.
    pub evidence: Option<String>,
    /// The vector over its inputs (attributed writes), oldest first.
    pub vector: Vec<VectorEntry>,
    /// Current value of each contested field.
    pub values: Vec<(String, Value)>,
    /// The latest writes of each contested field with their causes.
    pub writes: Vec<WriteRecord>,
}

/// Everything the live view shows of the engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LiveView {
    /// Log index of the state shown.
    pub index: u64,
    /// Program version and hash.
    pub version: u64,
    /// Hex hash of the installed program.
    pub program_hash: Option<String>,
    /// Hex state hash.
    pub state_hash: String,
    /// Domains with goals, in program order (at most the limit given).
    pub domains: Vec<DomainView>,
    /// Domains left out by the limit.
    pub domains_left_out: usize,
    /// Live effects.
    pub effects: Vec<EffectView>,
    /// Trapped goals with their vectors.
    pub traps: Vec<TrapView>,
    /// Dominance arrows `(higher, lower)` between goals shown.
    pub dominance: Vec<(String, String)>,
}

impl Engine {
    /// The live view: at most `max_domains` domains that have goals (kinds'
    /// templates left out), every live effect, every trap.
    pub fn live_view(&self, max_domains: usize) -> LiveView {
        let mut view = LiveView {
            index: self.last_applied,
            version: self.version,
            program_hash: self.program_hash.clone(),
            state_hash: self.hash.iter().map(|b| format!("{b:02x}")).collect(),
            domains: Vec::new(),
            domains_left_out: 0,
            effects: Vec::new(),
            traps: Vec::new(),
            dominance: Vec::new(),
        };
        let Some(program) = self.program.as_ref() else { return view };
        let mut by_domain: Vec<(String, Vec<GoalReport>)> = program
            .domains
            .iter()
            .filter(|d| d.key.is_none() && !d.name.contains('['))
            .map(|d| (d.name.clone(), Vec::new()))
            .collect();
        for r in self.goals() {
            match by_domain.iter_mut().find(|(d, _)| *d == r.domain) {
                Some((_, goals)) => goals.push(r),
                None => by_domain.push((r.domain.clone(), vec![r])),
            }
        }
        view.domains_left_out = by_domain.len().saturating_sub(max_domains);
        for (name, goals) in by_domain.into_iter().take(max_domains) {
            let priority = self
                .index
                .domains
                .get(&name)
                .and_then(|d| program.domains.get(d.index()))
                .map_or(Priority::Normal, |d| d.priority);
            let goals = goals
                .into_iter()
                .map(|report| {
                    let explanation = self.explain(&report.domain, &report.goal);
                    let running = explanation.as_ref().and_then(|e| match &e.waiting {
                        Waiting::Cycle { transition, next_slice, effects, suspended, .. } => {
                            let slice = program
                                .domains
                                .iter()
                                .find(|d| d.name == report.domain)
                                .and_then(|d| {
                                    d.transitions
                                        .iter()
                                        .map(|t| &program.transitions[t.index()])
                                        .find(|t| t.name == *transition)
                                })
                                .and_then(|t| t.slices.get(*next_slice as usize))
                                .map(|s| s.name.clone())
                                .unwrap_or_default();
                            Some(RunningView {
                                transition: transition.clone(),
                                slice,
                                effects: effects.clone(),
                                suspended: *suspended,
                            })
                        }
                        _ => None,
                    });
                    let dominated_by = explanation.as_ref().map(|e| e.dominated_by.clone()).unwrap_or_default();
                    for higher in &dominated_by {
                        view.dominance.push((higher.clone(), format!("{}.{}", report.domain, report.goal)));
                    }
                    if report.status == GoalStatus::Trapped {
                        if let Some(e) = &explanation {
                            let mut fields: Vec<String> = Vec::new();
                            for v in &e.vector {
                                if !fields.contains(&v.field) {
                                    fields.push(v.field.clone());
                                }
                            }
                            let split = |f: &String| f.rsplit_once('.').map(|(d, n)| (d.to_string(), n.to_string()));
                            let values = fields
                                .iter()
                                .filter_map(|f| {
                                    let (d, n) = split(f)?;
                                    Some((f.clone(), self.read(&d, &n)?))
                                })
                                .collect();
                            let writes = fields
                                .iter()
                                .filter_map(|f| {
                                    let (d, n) = split(f)?;
                                    self.why(&d, &n, 8)
                                })
                                .flatten()
                                .collect();
                            view.traps.push(TrapView {
                                goal: format!("{}.{}", report.domain, report.goal),
                                code: report.code.clone(),
                                evidence: report.evidence.clone(),
                                vector: e.vector.clone(),
                                values,
                                writes,
                            });
                        }
                    }
                    GoalView { report, running, dominated_by }
                })
                .collect();
            let fields = self.domain_state(&name).unwrap_or_default();
            view.domains.push(DomainView { name, priority, fields, goals });
        }
        view.effects = self
            .effects
            .values()
            .filter_map(|e| {
                let decl = program.effects.get(e.effect.index())?;
                let state = match e.state {
                    EffectState::Ready => "ready",
                    EffectState::InFlight { .. } => "in_flight",
                    EffectState::Backoff { .. } => "backoff",
                };
                Some(EffectView {
                    effect: decl.full_name(),
                    args: decl.params.iter().map(|p| p.name.clone()).zip(e.args.iter().cloned()).collect(),
                    idempotency_key: e.idempotency_key.clone(),
                    attempts: e.attempts,
                    state: state.into(),
                    worker: self.effect_origins.get(&e.idempotency_key).and_then(|o| o.worker.clone()),
                    goal: e.goal.filter(|g| g.index() < program.goals.len()).map(|g| program.goal_path(g)),
                    priority: e.priority,
                })
            })
            .collect();
        view
    }
}

#[cfg(test)]
mod tests {
    use crate::{Engine, EngineConfig, Entry};
    use lexum_compiler::{compile, CompileOptions};

    #[test]
    fn a_trapped_tug_of_war_shows_both_traps_with_their_vectors() {
        let source = include_str!("../../../examples/tugofwar.lxm");
        let program = compile("t.lxm", source, &CompileOptions::default()).program.map(|p| p.encode());
        let mut engine = Engine::new(EngineConfig::default());
        let bytes = program.unwrap_or_default();
        let prediction =
            crate::simulate::simulate(engine.clone(), Some(&bytes), &crate::simulate::SimulationOptions::default());
        assert_eq!(prediction.summary.trapped, 2);
        // Replay the same run on this engine through the public API.
        assert_eq!(engine.apply(1, &Entry::SubmitProgram { bytes }).outcome, Ok(()));
        for i in 2..200 {
            let Some(step) = engine.pending().steps.first().map(|s| s.step) else { break };
            engine.apply(i, &Entry::RunStep { step });
        }
        let view = engine.live_view(100);
        let traps: Vec<&str> = view.traps.iter().map(|t| t.goal.as_str()).collect();
        assert_eq!(traps, ["Warm.Heating", "Chill.Cooling"]);
        assert!(view.traps.iter().all(|t| t.vector.len() >= 2 && !t.writes.is_empty()));
        let lanes: Vec<&str> = view.domains.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(lanes, ["Thermostat", "Warm", "Chill"]);
        assert!(serde_json_like(&view));
    }

    /// The view serializes (the node sends it as JSON).
    fn serde_json_like(view: &super::LiveView) -> bool {
        postcard::to_stdvec(view).is_ok()
    }
}
