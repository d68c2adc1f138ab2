//! Offline simulation (`lexumctl plan`): the engine run on a copy of a
//! live state, acting as its own leader with simulated workers, to predict
//! what a program version will do before anything is submitted.
//!
//! [`simulate`] takes an [`Engine`] (restored from a live snapshot), an
//! optional new program and [`SimulationOptions`], and returns a
//! [`Prediction`]: the fields the new version keeps, adds or drops, the
//! goals it makes violated, the dispatch sequence in the order the leader
//! would follow, and a predicted verdict per goal. It is deterministic and
//! performs no I/O: the same state, program and options give the same
//! prediction. Time passes instantly (retry and backoff timers fire at
//! once), except that damping never decays: an outside principal that
//! contends a goal now is assumed to keep writing.
//!
//! ```
//! use lexum_engine::simulate::{simulate, SimulationOptions};
//! use lexum_engine::{Engine, EngineConfig};
//! let source = "domain D { state { n: int = 0 } goal G { n >= 2 } \
//!               transition T for G { slice s { n = 2 } } }";
//! let program = lexum_compiler::compile("d.lxm", source, &Default::default()).program.unwrap();
//! let prediction = simulate(Engine::new(EngineConfig::default()), Some(&program.encode()),
//!                           &SimulationOptions::default());
//! assert_eq!(prediction.verdicts[0].status, lexum_engine::GoalStatus::Satisfied);
//! assert!(!prediction.gates());
//! ```

use std::collections::{BTreeMap, BTreeSet};

use lexum_compiler::program::{Priority, Program, Value};
use serde::{Deserialize, Serialize};

use crate::report::{ContentionReport, GoalStatus, VectorEntry};
use crate::state::{Cycle, StepKind, TimerKind};
use crate::{EffectKey, EffectOutcome, Engine, Entry, PendingEffect, StepId};

/// Entries a simulation proposes at most by default.
pub const DEFAULT_MAX_ENTRIES: u64 = 1_000;

/// How the simulated workers answer, and how long to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimulationOptions {
    /// Entries to propose at most (the install of a new version included).
    pub max_entries: u64,
    /// `Namespace.Name` → the value every success of that effect returns
    /// (otherwise the first `int` argument, else the first argument, else
    /// nothing, as `lexumctl worker` does).
    pub results: BTreeMap<String, Value>,
    /// `Namespace.Name`s whose every attempt fails.
    pub failures: BTreeSet<String>,
    /// Name of the simulated worker in `Dispatched` entries.
    pub worker: String,
}

impl Default for SimulationOptions {
    fn default() -> Self {
        SimulationOptions {
            max_entries: DEFAULT_MAX_ENTRIES,
            results: BTreeMap::new(),
            failures: BTreeSet::new(),
            worker: "plan".into(),
        }
    }
}

/// What a new version does to one state field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldFate {
    /// Same domain, name and type: the value is carried over.
    Migrated,
    /// New: starts at its default.
    Added,
    /// Gone from the new version: its value is dropped.
    Dropped,
    /// Same name, another type: the old value is dropped, the field starts
    /// at its default.
    Retyped,
}

/// One field's fate under a new version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// `Domain.field` (`Kind[*].field` for a kind's template).
    pub field: String,
    /// What happens to it.
    pub fate: FieldFate,
    /// The type in the new version (the old one when dropped).
    pub ty: String,
    /// The value before the install (none for an added field or a kind's
    /// template).
    pub before: Option<Value>,
    /// The value after the install (none when dropped).
    pub after: Option<Value>,
}

/// A goal that is violated at the start of the simulation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViolatedGoal {
    /// `Domain.Goal`.
    pub goal: String,
    /// Effective level.
    pub priority: Priority,
    /// Its status before the new version (none for a new goal, or the
    /// current status when no version is installed).
    pub before: Option<GoalStatus>,
}

/// How a simulated effect attempt ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum SimulatedOutcome {
    /// Succeeded with this value (if any).
    Succeeded {
        /// The value returned.
        value: Option<Value>,
    },
    /// Failed (`--fail`).
    Failed,
    /// Not answered before the simulation stopped.
    Unanswered,
}

/// One thing the leader would do, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Dispatch {
    /// A slice of a transition runs.
    Slice {
        /// Simulated log index.
        index: u64,
        /// The level it runs at.
        priority: Priority,
        /// `Domain.Goal` repaired.
        goal: String,
        /// Transition.
        transition: String,
        /// Slice name.
        slice: String,
    },
    /// A message is delivered to a handler.
    Delivery {
        /// Simulated log index.
        index: u64,
        /// The level it runs at.
        priority: Priority,
        /// `Domain.Handler`.
        handler: String,
        /// Arguments by parameter name.
        args: Vec<(String, Value)>,
    },
    /// An effect attempt goes to a (simulated) worker.
    Effect {
        /// Simulated log index of the dispatch.
        index: u64,
        /// The level it runs at.
        priority: Priority,
        /// `Domain.Goal` whose cycle emitted it, if any.
        goal: Option<String>,
        /// `Namespace.Name`.
        effect: String,
        /// Arguments by parameter name.
        args: Vec<(String, Value)>,
        /// Attempt number.
        attempt: u32,
        /// The simulated answer.
        outcome: SimulatedOutcome,
    },
}

/// The predicted end state of one goal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoalVerdict {
    /// `Domain.Goal`.
    pub goal: String,
    /// Effective level.
    pub priority: Priority,
    /// Predicted status when the simulation stopped.
    pub status: GoalStatus,
    /// `E005`, `E010`, `E011`, `E012` or `E016`.
    pub code: Option<String>,
    /// The engine's evidence.
    pub evidence: Option<String>,
    /// For a trap: every goal whose cycles wrote its inputs (itself
    /// included), as `Domain.Goal`, sorted.
    pub goals: Vec<String>,
    /// For a trap: the contested fields (inputs with attributed writes).
    pub fields: Vec<String>,
    /// For a trap: the oscillation vector over its inputs.
    pub vector: Vec<VectorEntry>,
    /// Higher-priority goals that dominate it.
    pub dominated_by: Vec<String>,
    /// Outside principals that contend it now (from the live state).
    pub contention: Vec<ContentionReport>,
}

/// How many goals end in each status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PredictionSummary {
    /// SATISFIED.
    pub satisfied: u32,
    /// VIOLATED or REPAIRING when the simulation stopped.
    pub unsettled: u32,
    /// DOMINATED.
    pub dominated: u32,
    /// TRAPPED.
    pub trapped: u32,
    /// FAILED.
    pub failed: u32,
    /// CONTESTED.
    pub contested: u32,
}

/// What [`simulate`] predicts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prediction {
    /// Log index of the live state the simulation started from.
    pub from_index: u64,
    /// Hex content hash of the program simulated.
    pub program_hash: Option<String>,
    /// Whether a new version was installed (otherwise the current one ran).
    pub new_version: bool,
    /// Fields migrated, added, retyped or dropped (empty without a new
    /// version), in the new program's order, dropped ones last.
    pub fields: Vec<FieldChange>,
    /// An install that the engine refused, with its code and message.
    pub rejected: Option<String>,
    /// Goals violated at the start.
    pub violated: Vec<ViolatedGoal>,
    /// What the leader would do, in order.
    pub dispatch: Vec<Dispatch>,
    /// Every goal's predicted verdict, in program order.
    pub verdicts: Vec<GoalVerdict>,
    /// Entries proposed.
    pub entries: u64,
    /// Whether the simulation ran until nothing was left to do (false:
    /// stopped at `max_entries`).
    pub quiet: bool,
    /// Counts per status.
    pub summary: PredictionSummary,
}

impl Prediction {
    /// Whether something would be trapped or fail (the install refused
    /// included): `lexumctl plan` exits 3 then.
    pub fn gates(&self) -> bool {
        self.rejected.is_some() || self.summary.trapped > 0 || self.summary.failed > 0
    }
}

/// Runs `engine` (a copy of a live state) with `program` installed (or its
/// current version) until nothing is left to do or `options.max_entries`
/// entries were proposed, and reports what happened.
pub fn simulate(mut engine: Engine, program: Option<&[u8]>, options: &SimulationOptions) -> Prediction {
    let from_index = engine.last_applied();
    let mut sim = Driver { index: from_index, entries: 0, dispatch: Vec::new(), in_flight: BTreeMap::new() };
    let before_goals: BTreeMap<String, GoalStatus> =
        engine.goals().into_iter().map(|g| (format!("{}.{}", g.domain, g.goal), g.status)).collect();
    let contention: BTreeMap<String, Vec<ContentionReport>> = contention_of(&engine);
    let old_program = engine.program.clone();
    let old_values = engine.values.clone();
    let mut rejected = None;
    let mut fields = Vec::new();
    if let Some(bytes) = program {
        let applied = sim.propose(&mut engine, Entry::SubmitProgram { bytes: bytes.to_vec() });
        match applied.outcome.map_err(|r| r.to_string()) {
            Ok(()) => {
                if let Some(new) = engine.program.clone() {
                    fields = field_changes(old_program.as_deref(), &old_values, &new, &engine.values);
                }
            }
            Err(r) => rejected = Some(r),
        }
    }
    let violated = engine
        .goals()
        .into_iter()
        .filter(|g| !g.holds)
        .filter_map(|g| {
            let path = format!("{}.{}", g.domain, g.goal);
            let before = before_goals.get(&path).copied();
            let became = program.is_none() || before.is_none_or(|s| s == GoalStatus::Satisfied);
            became.then_some(ViolatedGoal { goal: path, priority: g.priority, before })
        })
        .collect();
    let quiet = if rejected.is_none() {
        loop {
            if sim.entries >= options.max_entries {
                break engine_is_quiet(&engine);
            }
            if !sim.step(&mut engine, options) {
                break true;
            }
        }
    } else {
        true
    };
    let verdicts = verdicts(&engine, &contention);
    let mut summary = PredictionSummary::default();
    for v in &verdicts {
        let count = match v.status {
            GoalStatus::Satisfied => &mut summary.satisfied,
            GoalStatus::Violated | GoalStatus::Repairing => &mut summary.unsettled,
            GoalStatus::Dominated => &mut summary.dominated,
            GoalStatus::Trapped => &mut summary.trapped,
            GoalStatus::Failed => &mut summary.failed,
            GoalStatus::Contested => &mut summary.contested,
        };
        *count += 1;
    }
    Prediction {
        from_index,
        program_hash: engine.program_hash(),
        new_version: program.is_some() && rejected.is_none(),
        fields,
        rejected,
        violated,
        dispatch: sim.dispatch,
        verdicts,
        entries: sim.entries,
        quiet,
        summary,
    }
}

/// The simulated leader.
struct Driver {
    index: u64,
    entries: u64,
    dispatch: Vec<Dispatch>,
    /// (effect, attempt) → its `Dispatch::Effect` in `dispatch`.
    in_flight: BTreeMap<(u64, u32), usize>,
}

impl Driver {
    fn propose(&mut self, engine: &mut Engine, entry: Entry) -> crate::Applied {
        self.index += 1;
        self.entries += 1;
        engine.apply(self.index, &entry)
    }

    /// Proposes what a leader would propose next: steps first, then
    /// dispatches, then results, then timers (damping excepted). False when
    /// nothing is left to do.
    fn step(&mut self, engine: &mut Engine, options: &SimulationOptions) -> bool {
        let pending = engine.pending();
        if let Some(step) = pending.steps.first() {
            if let Some(d) = describe_step(engine, step.step, self.index + 1) {
                self.dispatch.push(d);
            }
            let _ = self.propose(engine, Entry::RunStep { step: step.step });
            return true;
        }
        if let Some(e) = pending.effects.iter().find(|e| e.in_flight.is_none()) {
            let goal = effect_goal(engine, e.key);
            self.in_flight.insert((e.key.0, e.attempt), self.dispatch.len());
            self.dispatch.push(Dispatch::Effect {
                index: self.index + 1,
                priority: e.priority,
                goal,
                effect: e.effect.clone(),
                args: e.args.clone(),
                attempt: e.attempt,
                outcome: SimulatedOutcome::Unanswered,
            });
            let entry = Entry::Dispatched { effect: e.key, attempt: e.attempt, worker: options.worker.clone() };
            let _ = self.propose(engine, entry);
            return true;
        }
        if let Some(e) = pending.effects.first() {
            let answer = answer(e, options);
            let recorded = match &answer {
                EffectOutcome::Succeeded { value } => SimulatedOutcome::Succeeded { value: value.clone() },
                EffectOutcome::Failed { .. } => SimulatedOutcome::Failed,
            };
            let at = self.in_flight.remove(&(e.key.0, e.attempt));
            if let Some(Dispatch::Effect { outcome, .. }) = at.and_then(|i| self.dispatch.get_mut(i)) {
                *outcome = recorded;
            }
            let fencing = e.in_flight.unwrap_or_default();
            let next = describe_continuation(engine, e.key, self.index + 1);
            let applied = self.propose(engine, Entry::EffectResult { effect: e.key, fencing, outcome: answer });
            if let Some(next) = next.filter(|_| !applied.continued.is_empty()) {
                self.dispatch.push(next);
            }
            return true;
        }
        let timer = engine
            .timers
            .iter()
            .filter(|(_, t)| !matches!(t.kind, TimerKind::Damping { .. }))
            .min_by_key(|(id, t)| (t.delay_ms, **id))
            .map(|(id, _)| crate::TimerId(*id));
        match timer {
            Some(timer) => {
                let _ = self.propose(engine, Entry::TimerFired { timer });
                true
            }
            None => false,
        }
    }
}

/// Whether nothing but damping timers is left.
fn engine_is_quiet(engine: &Engine) -> bool {
    let pending = engine.pending();
    pending.steps.is_empty()
        && pending.effects.is_empty()
        && engine.timers.values().all(|t| matches!(t.kind, TimerKind::Damping { .. }))
}

/// The simulated worker's answer.
fn answer(e: &PendingEffect, options: &SimulationOptions) -> EffectOutcome {
    if options.failures.contains(&e.effect) {
        return EffectOutcome::Failed { error: format!("simulated failure of {}", e.effect) };
    }
    let value = match options.results.get(&e.effect) {
        Some(v) => Some(v.clone()),
        None => {
            e.args.iter().find(|(_, v)| matches!(v, Value::Int(_))).or_else(|| e.args.first()).map(|(_, v)| v.clone())
        }
    };
    EffectOutcome::Succeeded { value }
}

fn effect_goal(engine: &Engine, key: EffectKey) -> Option<String> {
    let program = engine.program.as_ref()?;
    let record = engine.effects.get(&key.0)?;
    let goal = record.goal?;
    (goal.index() < program.goals.len()).then(|| program.goal_path(goal))
}

/// What running `step` will do, before it runs.
fn describe_step(engine: &Engine, step: StepId, index: u64) -> Option<Dispatch> {
    let program = engine.program.as_ref()?;
    let s = engine.steps.get(&step.0)?;
    match &s.kind {
        StepKind::Slice { cycle } => describe_next_slice(program, engine.cycles.get(cycle)?, s.priority, index),
        StepKind::Deliver { message } => {
            let m = engine.messages.get(message)?;
            let h = program.handlers.get(m.handler.index())?;
            let domain = match &m.create {
                Some(key) => crate::instances::instance_name(&program.domains.get(h.domain.index())?.name, key),
                None => program.domains.get(h.domain.index())?.name.clone(),
            };
            let args = h.params.iter().map(|p| p.name.clone()).zip(m.args.iter().cloned()).collect();
            Some(Dispatch::Delivery { index, priority: m.priority, handler: format!("{domain}.{}", h.name), args })
        }
    }
}

/// The slice a result for `key` would run in its own entry (when it is
/// the last effect its slice waits for), before the result is applied.
fn describe_continuation(engine: &Engine, key: EffectKey, index: u64) -> Option<Dispatch> {
    let program = engine.program.as_ref()?;
    let record = engine.effects.get(&key.0)?;
    let c = engine.cycles.get(&record.cycle?)?;
    if !record.from_slice || c.waiting.len() != 1 || !c.waiting.contains(&key.0) {
        return None;
    }
    describe_next_slice(program, c, c.priority, index)
}

/// The next slice of cycle `c`, run at `priority` in the entry at `index`.
fn describe_next_slice(program: &Program, c: &Cycle, priority: Priority, index: u64) -> Option<Dispatch> {
    let t = program.transitions.get(c.transition.index())?;
    let slice = t.slices.get(c.next_slice as usize)?;
    Some(Dispatch::Slice {
        index,
        priority,
        goal: program.goal_path(c.goal),
        transition: t.name.clone(),
        slice: slice.name.clone(),
    })
}

/// Outside contention per goal in the live state.
fn contention_of(engine: &Engine) -> BTreeMap<String, Vec<ContentionReport>> {
    let mut out = BTreeMap::new();
    for g in engine.goals() {
        if let Some(explanation) = engine.explain(&g.domain, &g.goal) {
            if !explanation.contention.is_empty() {
                out.insert(format!("{}.{}", g.domain, g.goal), explanation.contention);
            }
        }
    }
    out
}

fn verdicts(engine: &Engine, contention: &BTreeMap<String, Vec<ContentionReport>>) -> Vec<GoalVerdict> {
    engine
        .goals()
        .into_iter()
        .map(|g| {
            let path = format!("{}.{}", g.domain, g.goal);
            let explanation = engine.explain(&g.domain, &g.goal);
            let contention = match contention.get(&path) {
                Some(live) => live.clone(),
                None => explanation.as_ref().map(|e| e.contention.clone()).unwrap_or_default(),
            };
            let (goals, fields, vector) = match (&explanation, g.status) {
                (Some(e), GoalStatus::Trapped) => {
                    let goals: BTreeSet<String> =
                        e.vector.iter().map(|v| v.writer.clone()).chain([path.clone()]).collect();
                    let mut fields: Vec<String> = Vec::new();
                    for v in &e.vector {
                        if !fields.contains(&v.field) {
                            fields.push(v.field.clone());
                        }
                    }
                    (goals.into_iter().collect(), fields, e.vector.clone())
                }
                _ => (Vec::new(), Vec::new(), Vec::new()),
            };
            GoalVerdict {
                dominated_by: match g.status {
                    GoalStatus::Dominated => explanation.as_ref().map(|e| e.dominated_by.clone()).unwrap_or_default(),
                    _ => Vec::new(),
                },
                goal: path,
                priority: g.priority,
                status: g.status,
                code: g.code,
                evidence: g.evidence,
                goals,
                fields,
                vector,
                contention,
            }
        })
        .collect()
}

/// What installing `new` does to each field of `old`.
fn field_changes(old: Option<&Program>, old_values: &[Value], new: &Program, new_values: &[Value]) -> Vec<FieldChange> {
    let path = |p: &Program, f: &lexum_compiler::program::Field| -> Option<String> {
        let d = p.domains.get(f.domain.index())?;
        if d.name.contains('[') {
            return None; // an instance: its kind's template stands for it
        }
        Some(match d.key {
            Some(_) => format!("{}[*].{}", d.name, f.name),
            None => format!("{}.{}", d.name, f.name),
        })
    };
    let mut old_fields: BTreeMap<String, (String, Option<Value>)> = BTreeMap::new();
    if let Some(old) = old {
        for (i, f) in old.fields.iter().enumerate() {
            if let Some(p) = path(old, f) {
                let template = old.domains.get(f.domain.index()).is_some_and(|d| d.key.is_some());
                let value = if template { None } else { old_values.get(i).cloned() };
                old_fields.insert(p, (f.ty.to_string(), value));
            }
        }
    }
    let mut changes = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, f) in new.fields.iter().enumerate() {
        let Some(p) = path(new, f) else { continue };
        let template = new.domains.get(f.domain.index()).is_some_and(|d| d.key.is_some());
        let after = if template { None } else { new_values.get(i).cloned() };
        let ty = f.ty.to_string();
        let (fate, before) = match old_fields.get(&p) {
            Some((old_ty, before)) if *old_ty == ty => (FieldFate::Migrated, before.clone()),
            Some((_, before)) => (FieldFate::Retyped, before.clone()),
            None => (FieldFate::Added, None),
        };
        seen.insert(p.clone());
        changes.push(FieldChange { field: p, fate, ty, before, after });
    }
    for (p, (ty, before)) in old_fields {
        if !seen.contains(&p) {
            changes.push(FieldChange { field: p, fate: FieldFate::Dropped, ty, before, after: None });
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EngineConfig, FieldWrite};
    use lexum_compiler::{compile, CompileOptions};

    fn bytes(source: &str) -> Vec<u8> {
        let compiled = compile("plan.lxm", source, &CompileOptions::default());
        match compiled.program {
            Some(p) => p.encode(),
            None => panic!("does not compile: {:?}", compiled.diagnostics),
        }
    }

    /// A fresh cluster's engine with `source` submitted at index 1.
    fn live(source: &str) -> Engine {
        let mut engine = Engine::new(EngineConfig::default());
        let applied = engine.apply(1, &Entry::SubmitProgram { bytes: bytes(source) });
        assert_eq!(applied.outcome, Ok(()));
        engine
    }

    fn plan(engine: Engine, source: Option<&str>, options: &SimulationOptions) -> Prediction {
        let program = source.map(bytes);
        simulate(engine, program.as_deref(), options)
    }

    fn statuses(p: &Prediction) -> Vec<(String, GoalStatus)> {
        p.verdicts.iter().map(|v| (v.goal.clone(), v.status)).collect()
    }

    fn slices(p: &Prediction) -> Vec<String> {
        p.dispatch
            .iter()
            .map(|d| match d {
                Dispatch::Slice { goal, transition, slice, .. } => format!("{goal} {transition}.{slice}"),
                Dispatch::Delivery { handler, .. } => format!("deliver {handler}"),
                Dispatch::Effect { effect, attempt, outcome, .. } => format!("{effect}#{attempt} {outcome:?}"),
            })
            .collect()
    }

    const TUG: &str = include_str!("../../../examples/tugofwar.lxm");
    const PRIORITIES: &str = include_str!("../../../examples/priorities.lxm");

    const POOL: &str = r#"
effect Cloud.SetNodeCount(pool: string, count: int) -> int
domain Pool {
  state { nodes: int = 3  target: int = 5 }
  goal Big { nodes >= target }
  transition Grow for Big retry 3 backoff 100ms..1s {
    slice request { emit Cloud.SetNodeCount(pool: "web", count: target) -> got }
    slice record { nodes = got }
  }
}
"#;

    #[test]
    fn the_tug_of_war_is_trapped_with_both_goals_the_field_and_the_vector() {
        let p = plan(Engine::new(EngineConfig::default()), Some(TUG), &SimulationOptions::default());
        assert!(p.quiet && p.new_version);
        assert_eq!(
            statuses(&p),
            [("Warm.Heating".to_string(), GoalStatus::Trapped), ("Chill.Cooling".to_string(), GoalStatus::Trapped)]
        );
        let heating = &p.verdicts[0];
        assert_eq!(heating.code.as_deref(), Some("E005"));
        assert_eq!(heating.goals, ["Chill.Cooling", "Warm.Heating"]);
        assert_eq!(heating.fields, ["Thermostat.heater"]);
        let writers: BTreeSet<&str> = heating.vector.iter().map(|v| v.writer.as_str()).collect();
        assert_eq!(writers, BTreeSet::from(["Chill.Cooling", "Warm.Heating"]));
        assert!(heating.vector.iter().any(|v| v.delta > 0) && heating.vector.iter().any(|v| v.delta < 0));
        assert_eq!(p.summary.trapped, 2);
        assert!(p.gates());
        let added: Vec<&str> = p.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(added, ["Thermostat.heater", "Thermostat.cooler"]);
        assert!(p.fields.iter().all(|f| f.fate == FieldFate::Added));
        assert_eq!(p.violated.len(), 2);
    }

    #[test]
    fn a_converging_program_is_satisfied_with_its_dispatch_order() {
        let p = plan(Engine::new(EngineConfig::default()), Some(POOL), &SimulationOptions::default());
        assert_eq!(statuses(&p), [("Pool.Big".to_string(), GoalStatus::Satisfied)]);
        assert_eq!(
            slices(&p),
            ["Pool.Big Grow.request", "Cloud.SetNodeCount#1 Succeeded { value: Some(Int(5)) }", "Pool.Big Grow.record",]
        );
        assert!(!p.gates());
        assert_eq!(p.violated, [ViolatedGoal { goal: "Pool.Big".into(), priority: Priority::Normal, before: None }]);
    }

    #[test]
    fn a_priority_pair_is_dominated_not_trapped() {
        let p = plan(Engine::new(EngineConfig::default()), Some(PRIORITIES), &SimulationOptions::default());
        assert!(p.quiet);
        let by_goal: BTreeMap<String, &GoalVerdict> = p.verdicts.iter().map(|v| (v.goal.clone(), v)).collect();
        assert_eq!(by_goal["Quota.UnderQuota"].status, GoalStatus::Satisfied);
        assert_eq!(by_goal["Batch.Throughput"].status, GoalStatus::Dominated);
        assert_eq!(by_goal["Batch.Throughput"].dominated_by, ["Quota.UnderQuota"]);
        assert!(!p.gates());
    }

    #[test]
    fn a_failing_effect_exhausts_its_retries() {
        let options = SimulationOptions {
            failures: BTreeSet::from(["Cloud.SetNodeCount".to_string()]),
            ..SimulationOptions::default()
        };
        let p = plan(Engine::new(EngineConfig::default()), Some(POOL), &options);
        assert_eq!(p.verdicts[0].status, GoalStatus::Failed);
        assert_eq!(p.verdicts[0].code.as_deref(), Some("E010"));
        let attempts = p.dispatch.iter().filter(|d| matches!(d, Dispatch::Effect { .. })).count();
        assert_eq!(attempts, 3, "retry 3");
        assert!(p.gates());
    }

    #[test]
    fn a_forced_result_is_what_the_effect_returns() {
        let options = SimulationOptions {
            results: BTreeMap::from([("Cloud.SetNodeCount".to_string(), Value::Int(9))]),
            ..SimulationOptions::default()
        };
        let p = plan(Engine::new(EngineConfig::default()), Some(POOL), &options);
        assert_eq!(p.verdicts[0].status, GoalStatus::Satisfied);
        assert!(slices(&p).contains(&"Cloud.SetNodeCount#1 Succeeded { value: Some(Int(9)) }".to_string()));
    }

    #[test]
    fn a_new_version_migrates_keeps_and_drops_fields() {
        let mut engine = live("domain Pool { state { nodes: int = 3  old: int = 1  size: int = 2 } }");
        let writes = vec![FieldWrite { domain: "Pool".into(), field: "nodes".into(), value: Value::Int(7) }];
        let applied = engine.apply(2, &Entry::Mutate { writes, principal: "ops".into(), caused_by: vec![] });
        assert_eq!(applied.outcome, Ok(()));
        let next =
            "domain Pool { state { nodes: int = 3  size: string = \"s\"  fresh: bool } goal Many { nodes >= 5 } }";
        let p = plan(engine, Some(next), &SimulationOptions::default());
        let fates: Vec<(&str, FieldFate)> = p.fields.iter().map(|f| (f.field.as_str(), f.fate)).collect();
        assert_eq!(
            fates,
            [
                ("Pool.nodes", FieldFate::Migrated),
                ("Pool.size", FieldFate::Retyped),
                ("Pool.fresh", FieldFate::Added),
                ("Pool.old", FieldFate::Dropped)
            ]
        );
        assert_eq!(p.fields[0].after, Some(Value::Int(7)), "the live value is carried over");
        assert_eq!(p.from_index, 2);
        assert!(p.violated.is_empty(), "Many holds with the live value");
    }

    #[test]
    fn without_a_file_the_current_version_runs_from_the_live_state() {
        let mut engine = live(POOL);
        let before = engine.state_hash();
        let p = plan(engine.clone(), None, &SimulationOptions::default());
        assert!(!p.new_version && p.fields.is_empty());
        assert_eq!(p.violated.len(), 1);
        assert_eq!(p.verdicts[0].status, GoalStatus::Satisfied);
        // The live engine is a copy: untouched.
        assert_eq!(engine.state_hash(), before);
        assert_eq!(engine.apply(2, &Entry::Noop).outcome, Ok(()));
    }

    #[test]
    fn a_step_limit_stops_the_simulation_unsettled() {
        let options = SimulationOptions { max_entries: 2, ..SimulationOptions::default() };
        let p = plan(Engine::new(EngineConfig::default()), Some(POOL), &options);
        assert_eq!(p.entries, 2);
        assert!(!p.quiet);
        assert_eq!(p.summary.unsettled, 1);
    }

    #[test]
    fn a_program_the_engine_refuses_gates() {
        let p = simulate(Engine::new(EngineConfig::default()), Some(b"not a program"), &SimulationOptions::default());
        assert!(p.rejected.as_deref().is_some_and(|r| r.starts_with("E014")), "{:?}", p.rejected);
        assert!(p.gates());
    }

    #[test]
    fn the_simulation_is_deterministic_and_survives_a_snapshot() {
        let engine = live(POOL);
        let restored = Engine::restore(&engine.snapshot()).expect("restores");
        let a = plan(engine, Some(TUG), &SimulationOptions::default());
        let b = plan(restored, Some(TUG), &SimulationOptions::default());
        assert_eq!(a, b);
    }
}
