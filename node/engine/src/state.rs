//! Typed state: program installation and migration, client mutations,
//! invariant checks and incremental goal re-evaluation.

use lexum_compiler::lower::expr_fields;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use lexum_compiler::program::{
    DomainId, EffectId, FieldId, GoalId, HandlerId, InvariantId, Priority, Program, RetryPolicy, SlotId, TransitionId,
    Value,
};
use serde::{Deserialize, Serialize};

use crate::eval::{self, Slots};
use crate::provenance::{Author, CycleTag, WriteCause};
use crate::{codes, Cx, Engine, EventKind, FieldWrite, GoalStatus, Rejection};

/// Runtime state of one goal.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct GoalState {
    /// Cached predicate value.
    pub holds: bool,
    /// Last reported status.
    pub status: GoalStatus,
    /// Diagnostic code (E005, E010, E011, E012) of a trap or failure.
    pub code: Option<String>,
    /// Evidence of a trap, failure or dominance.
    pub evidence: Option<String>,
    /// Index at which the status last changed.
    pub since_index: u64,
    /// Index at which the goal last became violated (scheduling order).
    pub violated_since: u64,
    /// Cycles judged since the program version or the last release.
    pub cycles: u32,
    /// Consecutive cycles that ended violated without progress.
    pub no_progress: u32,
    /// Consecutive cycles that left the inputs unchanged (backoff exponent).
    pub unchanged: u32,
    /// Hashes of the input vectors seen since the goal last held.
    pub seen_inputs: Vec<[u8; 32]>,
    /// TRAPPED until released or a new program version.
    pub trapped: bool,
    /// FAILED until its inputs change or `retry`.
    pub failed: bool,
    /// Cycle backoff timer, if armed.
    pub backoff: Option<u64>,
    /// The open cycle repairing it, if any.
    pub open_cycle: Option<u64>,
    /// Whether it was reported DOMINATED (evidence already recorded).
    pub dominated_by: Option<u32>,
    /// Own cycles judged since the goal last held (the non-convergence bound).
    pub unheld_cycles: u32,
    /// Outside principals that undid it, with their damping penalties.
    pub contention: BTreeMap<String, Contention>,
    /// The principal whose writes suspend its repairs (CONTESTED), if any.
    pub suppressed_by: Option<String>,
    /// The timer that halves the damping penalties, if armed.
    pub damping_timer: Option<u64>,
    /// A goal of a kind's template or of a deleted instance: never
    /// evaluated, listed or repaired.
    pub inert: bool,
}

/// Outside contention of one goal by one principal (SPEC §3.7).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Contention {
    /// Times this principal's writes undid the goal.
    pub undos: u32,
    /// Damping penalty: grows by a fixed amount per undo, halves every
    /// half-life.
    pub penalty: u32,
    /// Fields the principal wrote when it undid the goal.
    pub fields: BTreeSet<FieldId>,
    /// Index of the last undo.
    pub last_index: u64,
}

impl GoalState {
    pub(crate) fn new(holds: bool, index: u64) -> GoalState {
        GoalState {
            holds,
            status: if holds { GoalStatus::Satisfied } else { GoalStatus::Violated },
            code: None,
            evidence: None,
            since_index: index,
            violated_since: index,
            cycles: 0,
            no_progress: 0,
            unchanged: 0,
            seen_inputs: Vec::new(),
            trapped: false,
            failed: false,
            backoff: None,
            open_cycle: None,
            dominated_by: None,
            unheld_cycles: 0,
            contention: BTreeMap::new(),
            suppressed_by: None,
            damping_timer: None,
            inert: false,
        }
    }
}

/// One transition instance and what it caused, until judged.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Cycle {
    pub goal: GoalId,
    pub transition: TransitionId,
    pub domain: DomainId,
    pub priority: Priority,
    pub start_index: u64,
    /// Outside-input epoch when the cycle started.
    pub epoch: u64,
    /// Values of the goal's read set when the cycle started.
    pub inputs_before: Vec<Value>,
    /// Whether each goal touched by the cycle held before its first write.
    pub held_before: BTreeMap<GoalId, bool>,
    /// Value of each written field before the cycle's first write to it.
    pub before_values: BTreeMap<FieldId, Value>,
    /// Next slice to run.
    pub next_slice: u32,
    /// Slots shared by the guard and all slices.
    pub slots: Slots,
    /// Effects of the current slice not yet succeeded.
    pub waiting: BTreeSet<u64>,
    /// The queued step for the next slice.
    pub step: Option<u64>,
    /// Messages and effects caused and not yet applied.
    pub outstanding: u32,
    /// All slices ran.
    pub slices_done: bool,
    /// Preempted at a slice boundary: resumes at `next_slice`, with the
    /// same idempotency keys, once its domain is free.
    pub suspended: bool,
}

impl Cycle {
    /// The tag that attributes the cycle's writes, messages and effects.
    pub(crate) fn tag(&self, id: u64) -> CycleTag {
        CycleTag { cycle: id, goal: self.goal, started_at: self.start_index }
    }
}

/// Where a queued step leads.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum StepKind {
    /// Run the next slice of a cycle.
    Slice { cycle: u64 },
    /// Deliver a message.
    Deliver { message: u64 },
}

/// An entry of the ready queue.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Step {
    pub kind: StepKind,
    pub priority: Priority,
    /// Index at which the causing goal became violated.
    pub since: u64,
    pub domain: DomainId,
    pub goal: Option<GoalId>,
}

/// A message waiting in a domain's mailbox.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Message {
    pub handler: HandlerId,
    pub args: Vec<Value>,
    /// The open cycle waiting for it, if any.
    pub cycle: Option<u64>,
    /// The cycle its handler's writes are attributed to (also after that
    /// cycle ended).
    pub tag: Option<CycleTag>,
    pub priority: Priority,
    /// For a message to a kind's `on create` whose instance does not exist
    /// yet: its key (created just before delivery; `handler` is then the
    /// template's).
    pub create: Option<String>,
}

/// Where an effect stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum EffectState {
    /// May be dispatched (attempt `attempts + 1`).
    Ready,
    /// Dispatched at `token`, awaiting a result.
    InFlight { token: u64 },
    /// Waiting for a retry timer.
    Backoff { timer: u64 },
}

/// One effect intent of the journal.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct EffectRecord {
    pub effect: EffectId,
    pub args: Vec<Value>,
    pub idempotency_key: String,
    /// Attempts dispatched so far.
    pub attempts: u32,
    pub state: EffectState,
    /// The open cycle waiting for it, if any.
    pub cycle: Option<u64>,
    /// The domain whose slice or handler emitted it.
    pub domain: DomainId,
    /// The goal whose cycle caused it, if any (also after the cycle ended).
    pub goal: Option<GoalId>,
    /// Emitted by a slice (the cycle waits for it) rather than a handler.
    pub from_slice: bool,
    pub bind: Option<SlotId>,
    pub priority: Priority,
    pub since: u64,
    pub retry: RetryPolicy,
    pub last_error: Option<String>,
}

impl EffectRecord {
    /// This effect, named `name`, at its latest attempt, as events name it.
    pub(crate) fn reference(&self, name: &str) -> crate::EffectRef {
        crate::EffectRef {
            name: name.to_string(),
            idempotency_key: self.idempotency_key.clone(),
            attempt: self.attempts,
        }
    }
}

/// What a timer does when it fires.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum TimerKind {
    /// An effect may be retried.
    EffectRetry { effect: u64 },
    /// A goal may start its next cycle.
    CycleBackoff { goal: GoalId },
    /// A CONTESTED goal's damping penalties halve.
    Damping { goal: GoalId },
    /// Learnt dominance of `higher` over `lower` expires.
    DominanceExpiry { higher: GoalId, lower: GoalId },
}

/// One signed change of an oscillation vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VectorPoint {
    /// The goal whose cycle wrote.
    pub goal: u32,
    /// Signed change (1 for a change of a non-int field).
    pub delta: i64,
    /// Index of the write.
    pub index: u64,
}

/// Dominance learnt from attributed cycles.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct LearntDominance {
    /// Times the lower goal's cycles undid the higher one (the expiry
    /// delay doubles with each).
    pub times: u32,
    /// In force (suppressing the lower goal) until its expiry timer fires.
    pub active: bool,
    /// The expiry timer.
    pub timer: Option<u64>,
}

/// An armed timer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Timer {
    pub kind: TimerKind,
    pub delay_ms: u64,
}

/// Evidence that two equal-priority goals undo each other.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct TugState {
    /// Consecutive cycles of either goal that undid the other.
    pub rounds: u32,
    /// Fingerprints of the contested state after each round → epoch.
    pub seen: BTreeMap<[u8; 32], u64>,
    /// Contested fields seen so far.
    pub fields: BTreeSet<FieldId>,
}

impl TugState {
    /// Records the contested state `fingerprint` after a round in `epoch`;
    /// true when the same state was already seen in that epoch (it recurred
    /// with no outside input in between). Keeps at most `limit` states:
    /// first those of earlier epochs go, which can never match again, then
    /// the smallest fingerprints.
    pub fn record_state(&mut self, fingerprint: [u8; 32], epoch: u64, limit: usize) -> bool {
        let closed = self.seen.get(&fingerprint) == Some(&epoch);
        self.seen.insert(fingerprint, epoch);
        if self.seen.len() > limit {
            self.seen.retain(|_, seen_in| *seen_in == epoch);
        }
        while self.seen.len() > limit {
            self.seen.pop_first();
        }
        closed
    }
}

/// Lookup tables derived from the program (not serialized).
#[derive(Clone, Debug, Default)]
pub(crate) struct Index {
    pub domains: BTreeMap<String, DomainId>,
    /// Per domain: field name → id.
    pub fields: Vec<BTreeMap<String, FieldId>>,
    /// Per field: goals reading it.
    pub field_goals: Vec<Vec<GoalId>>,
    /// Per field: invariants reading it.
    pub field_invariants: Vec<Vec<InvariantId>>,
    /// Per field: domains with a transition guard (`when`) reading it.
    pub field_guards: Vec<Vec<DomainId>>,
    /// Per goal: higher goals that dominate it (static and learnt).
    pub dominators: Vec<Vec<GoalId>>,
    /// Per goal: lower goals it dominates.
    pub dominates: Vec<Vec<GoalId>>,
    /// Live instances by `(kind's template domain, key)`.
    pub instances: BTreeMap<(u32, String), u32>,
    /// The kinds' template domains.
    pub kinds: Vec<DomainId>,
    /// Each instance's key, by its domain.
    pub key_of: BTreeMap<u32, String>,
    /// Deleted instances' domains.
    pub deleted: BTreeSet<u32>,
    /// Per field of a live instance: the template field it copies.
    pub template_field: Vec<Option<FieldId>>,
    /// Each instance's kind (template domain), by its domain.
    pub instance_kind: BTreeMap<u32, u32>,
    /// What reads kinds through aggregates and lookups.
    pub kind_readers: crate::aggregates::KindReaders,
}

/// Checks that every id in the program's tables is in range, so the rest of
/// the engine may index them.
pub(crate) fn check_program(p: &Program) -> Result<(), String> {
    let (nd, nf, ng, ni, nt, nh, ne) = (
        p.domains.len(),
        p.fields.len(),
        p.goals.len(),
        p.invariants.len(),
        p.transitions.len(),
        p.handlers.len(),
        p.effects.len(),
    );
    let ok = |cond: bool, what: &str| if cond { Ok(()) } else { Err(format!("{what} refers to a missing item")) };
    for d in &p.domains {
        ok(d.reads.iter().all(|x| x.index() < nd), "domain reads")?;
        ok(d.fields.iter().all(|x| x.index() < nf), "domain fields")?;
        ok(d.goals.iter().all(|x| x.index() < ng), "domain goals")?;
        ok(d.invariants.iter().all(|x| x.index() < ni), "domain invariants")?;
        ok(d.transitions.iter().all(|x| x.index() < nt), "domain transitions")?;
        ok(d.handlers.iter().all(|x| x.index() < nh), "domain handlers")?;
    }
    for f in &p.fields {
        ok(f.domain.index() < nd, "field")?;
    }
    for g in &p.goals {
        ok(g.domain.index() < nd && g.read_set.iter().all(|x| x.index() < nf), "goal")?;
        ok(g.transitions.iter().all(|x| x.index() < nt), "goal transitions")?;
    }
    for i in &p.invariants {
        ok(i.domain.index() < nd && i.read_set.iter().all(|x| x.index() < nf), "invariant")?;
    }
    for t in &p.transitions {
        ok(t.domain.index() < nd && t.goal.index() < ng && t.write_set.iter().all(|x| x.index() < nf), "transition")?;
        for s in &t.slices {
            ok(s.write_set.iter().all(|x| x.index() < nf), "slice")?;
        }
    }
    for s in p.transitions.iter().flat_map(|t| &t.slices) {
        ok(s.sends.iter().all(|x| x.index() < nh) && s.emits.iter().all(|x| x.index() < ne), "slice")?;
    }
    for h in &p.handlers {
        ok(h.domain.index() < nd && h.sends.iter().all(|x| x.index() < nh), "handler")?;
        ok(h.emits.iter().all(|x| x.index() < ne) && h.write_set.iter().all(|x| x.index() < nf), "handler")?;
    }
    for d in &p.dominance {
        ok(d.higher.index() < ng && d.lower.index() < ng, "dominance")?;
    }
    // Slot counts, slot references, depths and list bounds: a program made
    // by hand can claim anything, and evaluation allocates from them.
    lexum_compiler::bounds::validate(p)
}

/// Decodes and checks program bytes (E014 when they are not a usable program).
pub(crate) fn decode_program(bytes: &[u8]) -> Result<Program, Rejection> {
    let program = Program::decode(bytes).map_err(|e| Rejection::new(codes::PROGRAM, e.to_string()))?;
    check_program(&program).map_err(|e| Rejection::new(codes::PROGRAM, format!("program is inconsistent: {e}")))?;
    Ok(program)
}

impl Engine {
    /// Rebuilds the derived lookup tables from the program and learnt dominance.
    pub(crate) fn rebuild_index(&mut self) {
        let mut index = Index::default();
        if let Some(p) = &self.program {
            for (i, d) in p.domains.iter().enumerate() {
                index.domains.insert(d.name.clone(), DomainId(i as u32));
                index.fields.push(d.fields.iter().map(|f| (p.fields[f.index()].name.clone(), *f)).collect());
            }
            index.field_goals = vec![Vec::new(); p.fields.len()];
            index.field_invariants = vec![Vec::new(); p.fields.len()];
            for (i, g) in p.goals.iter().enumerate() {
                for f in &g.read_set {
                    index.field_goals[f.index()].push(GoalId(i as u32));
                }
            }
            for (i, inv) in p.invariants.iter().enumerate() {
                for f in &inv.read_set {
                    index.field_invariants[f.index()].push(InvariantId(i as u32));
                }
            }
            index.field_guards = vec![Vec::new(); p.fields.len()];
            for t in &p.transitions {
                let mut fields = Vec::new();
                if let Some(when) = &t.when {
                    expr_fields(when, &mut fields);
                }
                for f in fields {
                    if let Some(ds) = index.field_guards.get_mut(f.index()) {
                        if !ds.contains(&t.domain) {
                            ds.push(t.domain);
                        }
                    }
                }
            }
            index.dominators = vec![Vec::new(); p.goals.len()];
            index.dominates = vec![Vec::new(); p.goals.len()];
            let pairs = p.dominance.iter().map(|d| (d.higher, d.lower)).chain(
                self.runtime_dominance.iter().filter(|(_, d)| d.active).map(|(&(h, l), _)| (GoalId(h), GoalId(l))),
            );
            for (h, l) in pairs {
                if h.index() < p.goals.len() && l.index() < p.goals.len() && !index.dominators[l.index()].contains(&h) {
                    index.dominators[l.index()].push(h);
                    index.dominates[h.index()].push(l);
                }
            }
            (index.instances, index.key_of, index.deleted) = crate::instances::instance_tables(p, &self.instances);
            index.kinds =
                (0..p.domains.len() as u32).map(DomainId).filter(|d| p.domains[d.index()].key.is_some()).collect();
            let live: Vec<(u32, u32)> = index.instances.iter().map(|(&(kind, _), &d)| (kind, d)).collect();
            for (kind, d) in live {
                index.map_instance(p, DomainId(kind), DomainId(d));
            }
            for r in &self.instances {
                if let Some(&kind) = index.domains.get(&r.kind) {
                    index.instance_kind.entry(r.domain).or_insert(kind.0);
                }
            }
            for d in 0..p.domains.len() as u32 {
                index.add_kind_readers(p, DomainId(d));
            }
            self.aggregates = crate::aggregates::Aggregates::recompute(p, &index, &self.values);
        }
        self.index = Arc::new(index);
    }

    /// Installs a new program version (already checked by `decode_program`),
    /// keeping fields with the same domain, name and type; everything in
    /// flight is dropped and traps are cleared.
    pub(crate) fn install(&mut self, cx: &mut Cx, template: Program, bytes: Vec<u8>) {
        // Every live instance whose kind still exists is kept (re-created
        // from the new template, its fields migrated like a singleton's).
        let mut records: Vec<crate::instances::InstanceRecord> =
            self.instances.iter().filter(|r| !r.deleted).cloned().collect();
        let (program, dropped) = match crate::instances::expand(&template, &mut records, false) {
            Ok(expanded) => expanded,
            Err(_) => (template, Vec::new()),
        };
        for r in &dropped {
            let name = crate::instances::instance_name(&r.kind, &r.key);
            cx.event(
                EventKind::Deleted,
                Some(name.clone()),
                None,
                None,
                format!("instance {name} dropped: its kind or a read is gone"),
            );
        }
        // Ids of the old program mean nothing in the new one.
        cx.touched.clear();
        cx.status_dirty.clear();
        cx.dirty_domains.clear();
        let mut values = Vec::with_capacity(program.fields.len());
        let mut moved = BTreeMap::new();
        for (new_id, f) in program.fields.iter().enumerate() {
            let domain = &program.domains[f.domain.index()].name;
            let kept = self
                .index
                .domains
                .get(domain)
                .and_then(|d| self.index.fields.get(d.index())?.get(&f.name))
                .filter(|id| {
                    let old_field = self.program.as_ref().and_then(|p| p.fields.get(id.index()));
                    old_field.is_some_and(|old| old.ty == f.ty)
                })
                .copied();
            let old = kept.and_then(|id| self.values.get(id.index()).cloned());
            if let Some(id) = kept {
                moved.insert(id.0, new_id as u32);
            }
            values.push(old.unwrap_or_else(|| f.default.clone()));
        }
        self.values = values;
        self.migrate_write_log(&moved);
        let hash = program.hash().to_hex();
        self.version += 1;
        self.epoch += 1;
        cx.event(
            EventKind::Program,
            None,
            None,
            None,
            format!("program version {} installed ({})", self.version, &hash[..16]),
        );
        self.program_hash = Some(hash);
        self.program_bytes = Some(bytes);
        self.running.clear();
        self.cycles.clear();
        self.steps.clear();
        self.messages.clear();
        self.effects.clear();
        self.timers.clear();
        self.vectors.clear();
        self.tugs.clear();
        self.runtime_dominance.clear();
        self.effect_origins.clear();
        self.effect_origin_order.clear();
        self.instances = records;
        self.program = Some(Arc::new(program));
        self.rebuild_index();
        let program = self.program.clone();
        let Some(program) = program else { return };
        self.goal_states = program
            .goals
            .iter()
            .map(|g| {
                let mut gs = GoalState::new(
                    eval::holds(&g.predicate, g.slots, &self.world(&program)).unwrap_or(false),
                    cx.index,
                );
                gs.inert = program.domains[g.domain.index()].key.is_some();
                gs
            })
            .collect();
        for (i, g) in program.goals.iter().enumerate() {
            if self.goal_states[i].inert {
                continue;
            }
            let id = GoalId(i as u32);
            cx.status_dirty.insert(id);
            let status = self.goal_states[i].status;
            let domain = program.domains[g.domain.index()].name.clone();
            cx.goal_status_event(domain, g.name.clone(), None, status);
        }
        for i in 0..program.domains.len() {
            cx.dirty_domains.insert(DomainId(i as u32));
        }
    }

    /// A domain that can be written and released: a singleton or a live
    /// instance (a kind's template and a deleted instance are refused).
    pub(crate) fn domain_id(&self, name: &str) -> Result<DomainId, Rejection> {
        let d = self.any_domain_id(name)?;
        if self.index.deleted.contains(&d.0) {
            return Err(Rejection::new(codes::UNKNOWN, format!("instance `{name}` was deleted")));
        }
        if self.program.as_ref().is_some_and(|p| p.domains[d.index()].key.is_some()) {
            return Err(Rejection::new(
                codes::UNKNOWN,
                format!("`{name}` is a kind: name an instance, `{name}[key]` (`lexumctl create {name}/KEY` makes one)"),
            ));
        }
        Ok(d)
    }

    /// Any domain by name: a singleton, a kind's template or an instance.
    pub(crate) fn any_domain_id(&self, name: &str) -> Result<DomainId, Rejection> {
        if self.program.is_none() {
            return Err(Rejection::new(codes::PROGRAM, "no program has been submitted yet"));
        }
        self.index
            .domains
            .get(name)
            .copied()
            .ok_or_else(|| Rejection::new(codes::UNKNOWN, format!("unknown domain `{name}`")))
    }

    pub(crate) fn goal_id(&self, domain: DomainId, name: &str) -> Result<GoalId, Rejection> {
        let program =
            self.program.as_ref().ok_or_else(|| Rejection::new(codes::PROGRAM, "no program has been submitted yet"))?;
        program.goal_by_name(domain, name).ok_or_else(|| {
            Rejection::new(codes::UNKNOWN, format!("unknown goal `{}.{name}`", program.domains[domain.index()].name))
        })
    }

    /// Resolves and type-checks client writes, then checks the invariants
    /// they touch. Returns the resolved writes.
    pub(crate) fn check_mutation(&self, writes: &[FieldWrite]) -> Result<BTreeMap<FieldId, Value>, Rejection> {
        let program =
            self.program.as_ref().ok_or_else(|| Rejection::new(codes::PROGRAM, "no program has been submitted yet"))?;
        let mut resolved = BTreeMap::new();
        for w in writes {
            let d = self.domain_id(&w.domain)?;
            let f =
                self.index.fields.get(d.index()).and_then(|m| m.get(&w.field)).copied().ok_or_else(|| {
                    Rejection::new(codes::UNKNOWN, format!("unknown field `{}.{}`", w.domain, w.field))
                })?;
            let field = &program.fields[f.index()];
            if !w.value.has_type(&field.ty) {
                return Err(Rejection::new(
                    codes::TYPE,
                    format!("`{}.{}` is {} but the value {} is not", w.domain, w.field, field.ty, w.value),
                ));
            }
            eval::check_len(&w.value, field.max_len)
                .map_err(|e| Rejection::new(codes::TYPE, format!("`{}.{}`: {e}", w.domain, w.field)))?;
            resolved.insert(f, w.value.clone());
        }
        self.check_invariants(&resolved)?;
        Ok(resolved)
    }

    /// Evaluates the invariants over the written fields on the state the
    /// writes would produce.
    pub(crate) fn check_invariants(&self, writes: &BTreeMap<FieldId, Value>) -> Result<(), Rejection> {
        let Some(program) = self.program.as_ref() else { return Ok(()) };
        let mut checked = BTreeSet::new();
        let overlay = self.world(program).with_writes(writes);
        for f in writes.keys() {
            let own = self.index.field_invariants.get(f.index()).into_iter().flatten();
            let kind = self.index.template_of(*f).and_then(|_| self.index.kind_of(program.fields[f.index()].domain));
            let readers = kind.and_then(|k| self.index.kind_readers.invariants.get(&k.0)).into_iter().flatten();
            for inv in own.chain(readers) {
                if !self.invariant_live(program, *inv) || !checked.insert(*inv) {
                    continue;
                }
                let i = &program.invariants[inv.index()];
                let domain = &program.domains[i.domain.index()].name;
                match eval::holds(&i.predicate, i.slots, &overlay) {
                    Ok(true) => {}
                    Ok(false) => {
                        return Err(Rejection::new(
                            codes::INVARIANT,
                            format!("invariant {domain}.{} would be violated", i.name),
                        ))
                    }
                    Err(e) => {
                        return Err(Rejection::new(
                            codes::INVARIANT,
                            format!("invariant {domain}.{} cannot be evaluated: {e}", i.name),
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether an invariant is checked: not a kind's template's, nor a
    /// deleted instance's.
    pub(crate) fn invariant_live(&self, program: &Program, i: InvariantId) -> bool {
        let d = program.invariants[i.index()].domain;
        program.domains[d.index()].key.is_none() && !self.index.deleted.contains(&d.0)
    }

    pub(crate) fn mutate(
        &mut self,
        cx: &mut Cx,
        writes: &[FieldWrite],
        principal: &str,
        caused_by: &[String],
    ) -> Result<(), Rejection> {
        let resolved = self.check_mutation(writes)?;
        let Some(program) = self.program.clone() else { return Ok(()) };
        let cause = self.client_write_cause(&program, principal, caused_by);
        // Only input from outside the program breaks a closed loop: a write
        // that observed a cycle's effect is that cycle's doing.
        if matches!(cause.author, Author::Outside(_)) {
            self.epoch += 1;
        }
        let fields: Vec<String> = writes.iter().map(|w| format!("{}.{}", w.domain, w.field)).collect();
        let summary: Vec<String> = fields.iter().zip(writes).map(|(f, w)| format!("{f} = {}", w.value)).collect();
        let domain = writes.first().map(|w| w.domain.clone());
        let event = cx.event(EventKind::Mutation, domain, None, None, format!("{} by {principal}", summary.join(", ")));
        event.principal = Some(principal.to_string());
        event.fields = fields;
        for (f, v) in resolved {
            self.write_field(cx, f, v, &cause);
        }
        Ok(())
    }

    /// Writes one field (already checked) with its cause: recorded in the
    /// field's history, the cycle's before-values and, for attributed
    /// writes, the field's oscillation vector.
    pub(crate) fn write_field(&mut self, cx: &mut Cx, field: FieldId, value: Value, cause: &WriteCause) {
        let Some(slot) = self.values.get_mut(field.index()) else { return };
        if *slot == value {
            return;
        }
        let old = std::mem::replace(slot, value.clone());
        if let Some(tf) = self.index.template_of(field) {
            self.aggregates.write(tf, &old, &value);
        }
        if let Author::Cycle(tag) = &cause.author {
            if let Some(c) = self.cycles.get_mut(&tag.cycle) {
                c.before_values.entry(field).or_insert_with(|| old.clone());
                for g in self.index.field_goals.get(field.index()).map(Vec::as_slice).unwrap_or(&[]) {
                    if let Some(gs) = self.goal_states.get(g.index()) {
                        c.held_before.entry(*g).or_insert(gs.holds);
                    }
                }
            }
            self.push_vector(field, tag.goal, &old, &value, cx.index);
        }
        self.log_write(cx.index, field, old, value, cause.cause.clone());
        cx.touched.insert(field, cause.author.clone());
    }

    /// Re-evaluates the goals reading the fields written since the last
    /// flush: the cost follows the goals affected, not the goals that exist.
    pub(crate) fn flush(&mut self, cx: &mut Cx) {
        if cx.touched.is_empty() && cx.kinds_changed.is_empty() {
            return;
        }
        let Some(program) = self.program.clone() else { return };
        let index = self.index.clone();
        let touched = std::mem::take(&mut cx.touched);
        let mut kinds = std::mem::take(&mut cx.kinds_changed);
        let mut goals = BTreeSet::new();
        for f in touched.keys() {
            goals.extend(index.field_goals.get(f.index()).into_iter().flatten().copied());
            // A guard may now hold: those domains may arm.
            cx.dirty_domains.extend(index.field_guards.get(f.index()).into_iter().flatten().copied());
            if index.template_of(*f).is_some() {
                kinds.extend(index.kind_of(program.fields[f.index()].domain).map(|k| k.0));
            }
        }
        // Aggregates and lookups over a kind whose instances changed.
        for k in kinds {
            goals.extend(index.kind_readers.goals.get(&k).into_iter().flatten().copied());
            cx.dirty_domains.extend(index.kind_readers.guards.get(&k).into_iter().flatten().copied());
        }
        let (mut became_true, mut undone) = (Vec::new(), Vec::new());
        for g in goals {
            if self.goal_states[g.index()].inert {
                continue;
            }
            let goal = &program.goals[g.index()];
            let holds = eval::holds(&goal.predicate, goal.slots, &self.world(&program)).unwrap_or(false);
            let gs = &mut self.goal_states[g.index()];
            if gs.failed {
                gs.failed = false;
                gs.code = None;
                gs.evidence = None;
            }
            // New inputs end a cycle backoff: the next cycle may see a
            // different world.
            if let Some(timer) = gs.backoff.take() {
                self.timers.remove(&timer);
                cx.dirty_domains.insert(goal.domain);
            }
            cx.status_dirty.insert(g);
            if holds != gs.holds {
                gs.holds = holds;
                if holds {
                    gs.no_progress = 0;
                    gs.unchanged = 0;
                    gs.unheld_cycles = 0;
                    gs.seen_inputs.clear();
                    became_true.push(g);
                } else {
                    gs.violated_since = cx.index;
                    undone.push(g);
                }
                cx.status_dirty.extend(index.dominates[g.index()].iter().copied());
            }
        }
        self.judge_writes(cx, &program, &touched, &became_true, &undone);
    }

    /// The status a goal should have now.
    pub(crate) fn compute_status(&self, g: GoalId) -> GoalStatus {
        let gs = &self.goal_states[g.index()];
        if gs.trapped {
            GoalStatus::Trapped
        } else if gs.holds {
            GoalStatus::Satisfied
        } else if gs.failed {
            GoalStatus::Failed
        } else if gs.suppressed_by.is_some() {
            GoalStatus::Contested
        } else if gs.open_cycle.is_some() {
            GoalStatus::Repairing
        } else if self.dominator(g).is_some() {
            GoalStatus::Dominated
        } else {
            GoalStatus::Violated
        }
    }

    /// The first (by id, so independent of the order pairs were learnt) higher
    /// goal that holds and dominates `g`, if any.
    pub(crate) fn dominator(&self, g: GoalId) -> Option<GoalId> {
        let dominates = |h: &GoalId| self.goal_states.get(h.index()).is_some_and(|hs| hs.holds && !hs.inert);
        self.index.dominators.get(g.index())?.iter().copied().filter(dominates).min()
    }

    /// Brings every dirty goal's status up to date, emitting events.
    pub(crate) fn update_statuses(&mut self, cx: &mut Cx) {
        let Some(program) = self.program.clone() else { return };
        let dirty = std::mem::take(&mut cx.status_dirty);
        for g in dirty {
            let status = self.compute_status(g);
            let dominator = if status == GoalStatus::Dominated { self.dominator(g) } else { None };
            let goal = &program.goals[g.index()];
            let domain = program.domains[goal.domain.index()].name.clone();
            let gs = &mut self.goal_states[g.index()];
            if status == GoalStatus::Dominated && gs.dominated_by != dominator.map(|h| h.0) {
                if let Some(h) = dominator {
                    let evidence = format!("dominated by higher-priority goal {} while it holds", program.goal_path(h));
                    gs.evidence = Some(evidence.clone());
                    cx.event(EventKind::Dominated, Some(domain.clone()), Some(goal.name.clone()), None, evidence);
                }
            }
            gs.dominated_by = dominator.map(|h| h.0);
            if status != gs.status {
                gs.status = status;
                gs.since_index = cx.index;
                let code = gs.code.clone();
                cx.goal_status_event(domain, goal.name.clone(), code.as_deref(), status);
                cx.dirty_domains.insert(goal.domain);
            }
        }
    }

    /// Values of a goal's read set, in read-set order.
    pub(crate) fn inputs(&self, program: &Program, g: GoalId) -> Vec<Value> {
        program.goals[g.index()].read_set.iter().filter_map(|f| self.values.get(f.index()).cloned()).collect()
    }

    fn clear_trap(&mut self, cx: &mut Cx, g: GoalId) {
        let gs = &mut self.goal_states[g.index()];
        gs.trapped = false;
        gs.code = None;
        gs.evidence = None;
        gs.no_progress = 0;
        gs.unchanged = 0;
        gs.cycles = 0;
        gs.unheld_cycles = 0;
        gs.seen_inputs.clear();
        let g32 = g.0;
        self.tugs.retain(|(a, b), _| *a != g32 && *b != g32);
        cx.status_dirty.insert(g);
    }

    /// The domains an operator command names: a singleton or an instance
    /// itself, or every live instance of a kind.
    pub(crate) fn command_domains(&self, name: &str) -> Result<Vec<DomainId>, Rejection> {
        if let Ok(k) = self.kind_id(name) {
            return Ok(self.live_instances(k).collect());
        }
        Ok(vec![self.domain_id(name)?])
    }

    /// The goals an operator command names (`goal` in each domain, or all
    /// of them); an unknown goal is refused.
    pub(crate) fn command_goals(&self, name: &str, goal: Option<&str>) -> Result<Vec<GoalId>, Rejection> {
        let Some(program) = self.program.as_ref() else {
            return Err(Rejection::new(codes::PROGRAM, "no program has been submitted yet"));
        };
        if let Ok(k) = self.kind_id(name) {
            if let Some(g) = goal {
                self.goal_id(k, g)?;
            }
        }
        let mut goals = Vec::new();
        for d in self.command_domains(name)? {
            match goal {
                Some(g) => goals.push(self.goal_id(d, g)?),
                None => goals.extend(program.domains[d.index()].goals.iter().copied()),
            }
        }
        Ok(goals)
    }

    pub(crate) fn release(&mut self, cx: &mut Cx, domain: &str, goal: Option<&str>) -> Result<(), Rejection> {
        let targets = self.command_goals(domain, goal)?;
        self.epoch += 1;
        let program = self.program.clone();
        let Some(program) = program else { return Ok(()) };
        for g in targets {
            self.forget_dominance(cx, g);
            self.end_damping(cx, g);
            let decl = &program.goals[g.index()];
            if self.goal_states[g.index()].trapped {
                self.clear_trap(cx, g);
                let domain = program.domains[decl.domain.index()].name.clone();
                cx.event(EventKind::Release, Some(domain), Some(decl.name.clone()), None, "trap released".to_string());
            }
            cx.dirty_domains.insert(decl.domain);
        }
        Ok(())
    }

    pub(crate) fn retry(&mut self, cx: &mut Cx, domain: &str, goal: &str) -> Result<(), Rejection> {
        let targets = self.command_goals(domain, Some(goal))?;
        self.epoch += 1;
        let program = self.program.clone();
        let Some(program) = program else { return Ok(()) };
        for g in targets {
            self.forget_dominance(cx, g);
            self.end_damping(cx, g);
            let decl = &program.goals[g.index()];
            let gs = &mut self.goal_states[g.index()];
            if gs.failed {
                gs.failed = false;
                gs.code = None;
                gs.evidence = None;
                let domain = program.domains[decl.domain.index()].name.clone();
                cx.event(EventKind::Retry, Some(domain), Some(goal.to_string()), None, "goal re-armed".to_string());
            }
            cx.status_dirty.insert(g);
            cx.dirty_domains.insert(decl.domain);
        }
        Ok(())
    }

    /// Re-evaluation, statuses, then arming and preemption: run after every
    /// accepted entry.
    pub(crate) fn settle(&mut self, cx: &mut Cx) {
        self.flush(cx);
        self.update_statuses(cx);
        let mut rounds = 0;
        while !cx.dirty_domains.is_empty() && rounds < 4 {
            rounds += 1;
            let domains = std::mem::take(&mut cx.dirty_domains);
            for d in domains {
                self.schedule_domain(cx, d);
            }
            self.flush(cx);
            self.update_statuses(cx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(n: u8) -> [u8; 32] {
        let mut fp = [0u8; 32];
        fp[0] = n;
        fp
    }

    #[test]
    fn a_recurring_state_is_caught_even_when_earlier_epochs_filled_the_memory() {
        let mut tug = TugState::default();
        // A long tug in epoch 1 fills the memory with states that sort
        // after the ones to come.
        for n in 100..164 {
            assert!(!tug.record_state(fingerprint(n), 1, 64));
        }
        // Outside input (epoch 2), then a cycle of three states.
        let rounds: Vec<bool> = [1, 2, 3, 1].iter().map(|&n| tug.record_state(fingerprint(n), 2, 64)).collect();
        assert_eq!(rounds, [false, false, false, true], "the cycle back to state 1 was missed");
        assert_eq!(tug.seen.len(), 3, "the states of epoch 1 are kept: {:?}", tug.seen);
    }

    #[test]
    fn a_state_of_an_earlier_epoch_is_not_a_recurrence_and_the_memory_stays_bounded() {
        let mut tug = TugState::default();
        assert!(!tug.record_state(fingerprint(1), 1, 4));
        assert!(!tug.record_state(fingerprint(1), 2, 4), "outside input came in between");
        assert!(tug.record_state(fingerprint(1), 2, 4));
        for n in 10..20 {
            tug.record_state(fingerprint(n), 2, 4);
        }
        assert_eq!(tug.seen.len(), 4);
    }
}
