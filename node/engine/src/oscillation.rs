//! Cycles, oscillation vectors, verdicts, dominance and outside contention
//! (SPEC §3.5, §3.7).
//!
//! Verdicts rest on causes. Whenever a write makes a goal stop holding, the
//! write's author decides what it means (`judge_writes`):
//! - a cycle of an **equal**-priority goal (directly, or through an
//!   observer's `caused_by`): one tug-of-war round for the pair; both are
//!   trapped at the threshold, or at once when the contested state recurs
//!   with no outside input in between;
//! - a cycle of a **lower**-priority goal: dominance is learnt; the lower
//!   goal is DOMINATED while the higher holds, until the pair expires (its
//!   delay doubles each time it is learnt again), `release`, `retry` or a
//!   new version;
//! - an **outside** principal that changes a field the goal's own
//!   transitions write (it undoes the repair, rather than setting a new
//!   target): contention. A damping penalty grows per undo and halves every
//!   half-life; above a threshold the goal is CONTESTED (E016) and its
//!   repairs wait until the penalty falls below a lower one.
//!
//! A cycle (one transition instance plus the messages it sent and the
//! effects it caused) is judged once all of them are applied: no progress
//! in its goal's inputs traps at the threshold (or at once when the
//! transition cannot reach them), and a goal that has not held for the
//! non-convergence bound of its own cycles traps whatever its orbit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use lexum_compiler::program::{FieldId, GoalId, Program, RetryPolicy, Value};

use crate::effects::backoff_ms;
use crate::provenance::Author;
use crate::report::{CycleRecord, FieldDelta, VectorEntry};
use crate::state::{Cycle, EffectState, Timer, TimerKind, VectorPoint};
use crate::{codes, Cx, CycleVerdict, Engine, EventKind};

/// Damping penalty added per outside undo.
const PENALTY_PER_UNDO: u32 = 1000;
/// Penalty at which repairs are suspended (the third undo in a row).
const SUPPRESS_PENALTY: u32 = 3000;
/// Penalty below which suspended repairs resume.
const REUSE_PENALTY: u32 = 750;
/// Largest penalty (bounds how long a suspension lasts after the writer stops).
const MAX_PENALTY: u32 = 16_000;
/// Fingerprints of contested states kept per pair of goals.
const TUG_STATES_LIMIT: usize = 64;

/// A trap to set: the goals and the evidence.
type Trap = (Vec<GoalId>, String);

/// A trap found at a write: the cycle whose write closed the fight (its
/// verdict is `trapped`), the goals and the evidence.
type WriteTrap = (u64, Vec<GoalId>, String);

/// Maximum history kept.
const HISTORY_LIMIT: usize = 1024;

fn fingerprint(values: &[&Value]) -> [u8; 32] {
    let bytes = postcard::to_stdvec(values).unwrap_or_default();
    *blake3::hash(&bytes).as_bytes()
}

impl Engine {
    /// Judges a cycle when its slices ran and everything it caused is applied.
    pub(crate) fn maybe_close(&mut self, cx: &mut Cx, id: u64) {
        if self.cycles.get(&id).is_some_and(|c| c.slices_done && c.outstanding == 0) {
            self.judge(cx, id);
        }
    }

    fn deltas(&self, program: &Program, c: &Cycle) -> Vec<(FieldId, FieldDelta)> {
        c.before_values
            .iter()
            .filter_map(|(f, before)| {
                let after = self.values.get(f.index())?;
                if after == before {
                    return None;
                }
                let delta = match (before, after) {
                    (Value::Int(a), Value::Int(b)) => Some(b.saturating_sub(*a)),
                    _ => None,
                };
                Some((
                    *f,
                    FieldDelta { field: program.field_path(*f), before: before.clone(), after: after.clone(), delta },
                ))
            })
            .collect()
    }

    fn record(&mut self, program: &Program, cx: &Cx, id: u64, c: &Cycle, verdict: CycleVerdict, code: Option<&str>) {
        let deltas = self.deltas(program, c).into_iter().map(|(_, d)| d).collect();
        let mut goals_after = vec![(program.goal_path(c.goal), self.goal_states[c.goal.index()].holds)];
        for g in c.held_before.keys().filter(|g| **g != c.goal) {
            goals_after.push((program.goal_path(*g), self.goal_states[g.index()].holds));
        }
        if self.history.len() >= HISTORY_LIMIT {
            self.history.pop_front();
        }
        self.history.push_back(CycleRecord {
            cycle: id,
            domain: program.domains[c.domain.index()].name.clone(),
            goal: program.goals[c.goal.index()].name.clone(),
            transition: program.transitions[c.transition.index()].name.clone(),
            priority: c.priority,
            start_index: c.start_index,
            end_index: cx.index,
            deltas,
            goals_after,
            verdict,
            code: code.map(str::to_string),
        });
    }

    /// Ends a cycle early (trap, failure, or a suspended cycle whose goal
    /// holds by now): its queued step and its own slice effects are
    /// dropped; messages already sent stay deliverable and effects that
    /// handlers committed run on.
    pub(crate) fn abort_cycle(&mut self, cx: &mut Cx, id: u64, verdict: CycleVerdict, code: Option<&str>) {
        let Some(program) = self.program.clone() else { return };
        let Some(c) = self.cycles.remove(&id) else { return };
        if self.running.get(&c.domain.0) == Some(&id) {
            self.running.remove(&c.domain.0);
        }
        if let Some(step) = c.step {
            self.steps.remove(&step);
        }
        // The cycle's own slice effects end with it; effects that handlers
        // (in other domains too) committed run on, detached from the cycle.
        let owned: Vec<(u64, bool)> =
            self.effects.iter().filter(|(_, e)| e.cycle == Some(id)).map(|(k, e)| (*k, e.from_slice)).collect();
        for (key, from_slice) in owned {
            if !from_slice {
                if let Some(e) = self.effects.get_mut(&key) {
                    e.cycle = None;
                }
                continue;
            }
            if let Some(e) = self.effects.remove(&key) {
                if let EffectState::Backoff { timer } = e.state {
                    self.timers.remove(&timer);
                }
            }
        }
        for m in self.messages.values_mut().filter(|m| m.cycle == Some(id)) {
            m.cycle = None;
        }
        self.flush(cx);
        let gs = &mut self.goal_states[c.goal.index()];
        gs.open_cycle = None;
        if verdict == CycleVerdict::Trapped {
            // The cycle whose write closed a fight ran in full: it counts.
            gs.cycles = gs.cycles.saturating_add(1);
            self.cycles_judged += 1;
        }
        self.record(&program, cx, id, &c, verdict, code);
        let goal = &program.goals[c.goal.index()];
        cx.event(
            EventKind::Cycle,
            Some(program.domains[c.domain.index()].name.clone()),
            Some(goal.name.clone()),
            code,
            format!("cycle {id} of {} ended: {verdict}", program.transitions[c.transition.index()].name),
        )
        .verdict = Some(verdict);
        cx.status_dirty.insert(c.goal);
        cx.dirty_domains.insert(c.domain);
    }

    /// Ends a cycle and marks its goal FAILED with `code`.
    pub(crate) fn fail_cycle(&mut self, cx: &mut Cx, id: u64, code: &str, message: String) {
        let Some(goal) = self.cycles.get(&id).map(|c| c.goal) else { return };
        self.abort_cycle(cx, id, CycleVerdict::Failed, Some(code));
        self.fail_goal(cx, goal, code, message);
    }

    /// Marks a goal FAILED with `code` (its cycle already ended).
    pub(crate) fn fail_goal(&mut self, cx: &mut Cx, goal: GoalId, code: &str, message: String) {
        let Some(gs) = self.goal_states.get_mut(goal.index()) else { return };
        if gs.trapped {
            return;
        }
        gs.failed = true;
        gs.code = Some(code.to_string());
        gs.evidence = Some(message.clone());
        let program = self.program.clone();
        if let Some(p) = program {
            let g = &p.goals[goal.index()];
            cx.event(
                EventKind::GoalFailed,
                Some(p.domains[g.domain.index()].name.clone()),
                Some(g.name.clone()),
                Some(code),
                message,
            );
        }
        cx.status_dirty.insert(goal);
    }

    /// Marks a goal TRAPPED (once) and stops its repair.
    pub(crate) fn trap_goal(&mut self, cx: &mut Cx, g: GoalId, evidence: String) {
        let Some(program) = self.program.clone() else { return };
        let gs = &mut self.goal_states[g.index()];
        if gs.trapped {
            return;
        }
        gs.trapped = true;
        gs.code = Some(codes::OSCILLATION.to_string());
        gs.evidence = Some(evidence.clone());
        let open = gs.open_cycle;
        if let Some(timer) = gs.backoff.take() {
            self.timers.remove(&timer);
        }
        if let Some(id) = open {
            self.abort_cycle(cx, id, CycleVerdict::Cancelled, Some(codes::OSCILLATION));
        }
        let goal = &program.goals[g.index()];
        cx.event(
            EventKind::Trap,
            Some(program.domains[goal.domain.index()].name.clone()),
            Some(goal.name.clone()),
            Some(codes::OSCILLATION),
            evidence,
        );
        cx.status_dirty.insert(g);
    }

    /// The lower goal's cycle undid the higher goal: the lower goal is
    /// DOMINATED until the pair expires; each time it is learnt again the
    /// expiry delay doubles (the lower goal's retry backoff).
    fn learn_dominance(&mut self, cx: &mut Cx, program: &Program, higher: GoalId, lower: GoalId) {
        let retry = goal_retry(program, lower);
        let learnt = self.runtime_dominance.entry((higher.0, lower.0)).or_default();
        if learnt.active {
            return;
        }
        learnt.times = learnt.times.saturating_add(1);
        learnt.active = true;
        // Confirmed as often as the oscillation threshold, it lasts until
        // release, retry or a new version; before that it expires.
        let lasting = learnt.times >= self.config.oscillation_threshold.max(1);
        let delay_ms = backoff_ms(&retry, learnt.times);
        if !lasting {
            let timer = self.fresh_id();
            if let Some(learnt) = self.runtime_dominance.get_mut(&(higher.0, lower.0)) {
                learnt.timer = Some(timer);
            }
            self.timers.insert(timer, Timer { kind: TimerKind::DominanceExpiry { higher, lower }, delay_ms });
        }
        let index = Arc::make_mut(&mut self.index);
        if let (Some(ds), Some(dd)) = (index.dominators.get_mut(lower.index()), index.dominates.get_mut(higher.index()))
        {
            if !ds.contains(&higher) {
                ds.push(higher);
                dd.push(lower);
            }
        }
        let l = &program.goals[lower.index()];
        cx.event(
            EventKind::Dominance,
            Some(program.domains[l.domain.index()].name.clone()),
            Some(l.name.clone()),
            None,
            format!(
                "a cycle of {} undid higher-priority goal {}; suppressed while it holds {}",
                program.goal_path(lower),
                program.goal_path(higher),
                if lasting { "until released".to_string() } else { format!("for {delay_ms} ms") }
            ),
        );
        cx.status_dirty.insert(lower);
    }

    /// A learnt dominance pair's expiry timer fired: the lower goal re-arms.
    pub(crate) fn dominance_expired(&mut self, cx: &mut Cx, timer: u64, higher: GoalId, lower: GoalId) {
        let Some(learnt) = self.runtime_dominance.get_mut(&(higher.0, lower.0)) else { return };
        if learnt.timer != Some(timer) {
            return;
        }
        learnt.active = false;
        learnt.timer = None;
        self.rebuild_index();
        self.rearm(cx, lower);
        if let Some(p) = self.program.clone() {
            let l = &p.goals[lower.index()];
            cx.event(
                EventKind::DominanceExpired,
                Some(p.domains[l.domain.index()].name.clone()),
                Some(l.name.clone()),
                None,
                format!("learnt dominance of {} over {} expired", p.goal_path(higher), p.goal_path(lower)),
            );
        }
    }

    /// Forgets learnt dominance involving `g` (release, retry).
    pub(crate) fn forget_dominance(&mut self, cx: &mut Cx, g: GoalId) {
        let pairs: Vec<(u32, u32)> =
            self.runtime_dominance.keys().filter(|(h, l)| *h == g.0 || *l == g.0).copied().collect();
        if pairs.is_empty() {
            return;
        }
        for pair in pairs {
            if let Some(learnt) = self.runtime_dominance.remove(&pair) {
                if let Some(timer) = learnt.timer {
                    self.timers.remove(&timer);
                }
            }
            self.rearm(cx, GoalId(pair.1));
        }
        self.rebuild_index();
    }

    /// Marks a goal and its domain for re-evaluation of status and arming.
    fn rearm(&self, cx: &mut Cx, g: GoalId) {
        cx.status_dirty.insert(g);
        if let Some(goal) = self.program.as_ref().and_then(|p| p.goals.get(g.index())) {
            cx.dirty_domains.insert(goal.domain);
        }
    }

    /// An outside principal's writes undid `g`: add a damping penalty and
    /// suspend the goal's repairs (CONTESTED) above the threshold.
    fn contend(&mut self, cx: &mut Cx, program: &Program, g: GoalId, principal: &str, fields: &[FieldId]) {
        let half_life = self.config.damping_half_life_ms.max(1);
        let arm_timer = self.goal_states[g.index()].damping_timer.is_none();
        let timer = if arm_timer { Some(self.fresh_id()) } else { None };
        let gs = &mut self.goal_states[g.index()];
        let c = gs.contention.entry(principal.to_string()).or_default();
        c.undos = c.undos.saturating_add(1);
        c.penalty = c.penalty.saturating_add(PENALTY_PER_UNDO).min(MAX_PENALTY);
        c.fields.extend(fields.iter().copied());
        c.last_index = cx.index;
        let (undos, penalty, contested) = (c.undos, c.penalty, c.fields.clone());
        if let Some(timer) = timer {
            gs.damping_timer = Some(timer);
            self.timers.insert(timer, Timer { kind: TimerKind::Damping { goal: g }, delay_ms: half_life });
        }
        let gs = &mut self.goal_states[g.index()];
        if gs.suppressed_by.is_some() || penalty < SUPPRESS_PENALTY || gs.trapped {
            return;
        }
        let fields: Vec<String> = contested.iter().map(|f| program.field_path(*f)).collect();
        let evidence = format!(
            "undone {undos} times by outside principal {principal} writing {}; repairs are damped (penalty {penalty}, \
             resumed below {REUSE_PENALTY}, halved every {half_life} ms)",
            fields.join(", ")
        );
        gs.suppressed_by = Some(principal.to_string());
        if !gs.failed {
            gs.code = Some(codes::CONTESTED.to_string());
            gs.evidence = Some(evidence.clone());
        }
        let goal = &program.goals[g.index()];
        cx.event(
            EventKind::Contested,
            Some(program.domains[goal.domain.index()].name.clone()),
            Some(goal.name.clone()),
            Some(codes::CONTESTED),
            evidence,
        );
        cx.status_dirty.insert(g);
    }

    /// The damping timer fired: every penalty of the goal halves; repairs
    /// resume once the suppressing principal's penalty is below the reuse
    /// threshold; the timer re-arms while a penalty remains.
    pub(crate) fn damping_decayed(&mut self, cx: &mut Cx, timer: u64, g: GoalId) {
        let half_life = self.config.damping_half_life_ms.max(1);
        let Some(gs) = self.goal_states.get_mut(g.index()) else { return };
        if gs.damping_timer != Some(timer) {
            return;
        }
        gs.damping_timer = None;
        for c in gs.contention.values_mut() {
            c.penalty /= 2;
        }
        gs.contention.retain(|_, c| c.penalty > 0);
        let resume =
            gs.suppressed_by.as_ref().is_some_and(|p| gs.contention.get(p).is_none_or(|c| c.penalty < REUSE_PENALTY));
        let again = !gs.contention.is_empty();
        if resume {
            self.end_suppression(cx, g, "damping ended: repairs resume");
        }
        if again {
            let next = self.fresh_id();
            self.goal_states[g.index()].damping_timer = Some(next);
            self.timers.insert(next, Timer { kind: TimerKind::Damping { goal: g }, delay_ms: half_life });
        }
    }

    fn end_suppression(&mut self, cx: &mut Cx, g: GoalId, why: &str) {
        let gs = &mut self.goal_states[g.index()];
        if gs.suppressed_by.take().is_none() {
            return;
        }
        if gs.code.as_deref() == Some(codes::CONTESTED) {
            gs.code = None;
            gs.evidence = None;
        }
        if let Some(p) = self.program.clone() {
            let goal = &p.goals[g.index()];
            cx.event(
                EventKind::ContestEnded,
                Some(p.domains[goal.domain.index()].name.clone()),
                Some(goal.name.clone()),
                None,
                why.to_string(),
            );
        }
        self.rearm(cx, g);
    }

    /// Forgets a goal's contention and damping (release, retry).
    pub(crate) fn end_damping(&mut self, cx: &mut Cx, g: GoalId) {
        let gs = &mut self.goal_states[g.index()];
        gs.contention.clear();
        if let Some(timer) = gs.damping_timer.take() {
            self.timers.remove(&timer);
        }
        self.end_suppression(cx, g, "contention cleared");
    }

    /// Records an attributed write in the field's oscillation vector.
    pub(crate) fn push_vector(&mut self, field: FieldId, goal: GoalId, old: &Value, new: &Value, index: u64) {
        let delta = match (old, new) {
            (Value::Int(a), Value::Int(b)) => b.saturating_sub(*a),
            _ => 1,
        };
        let limit = 2 * self.config.oscillation_threshold.max(1) as usize;
        let v = self.vectors.entry(field.0).or_default();
        v.push_back(VectorPoint { goal: goal.0, delta, index });
        while v.len() > limit {
            v.pop_front();
        }
    }

    /// The oscillation vector of `fields` as data.
    pub(crate) fn vector_entries(&self, program: &Program, fields: &[FieldId]) -> Vec<VectorEntry> {
        fields
            .iter()
            .flat_map(|f| {
                self.vectors.get(&f.0).into_iter().flatten().map(move |p| VectorEntry {
                    field: program.field_path(*f),
                    writer: program.goal_path(GoalId(p.goal)),
                    delta: p.delta,
                    index: p.index,
                })
            })
            .collect()
    }

    /// Verdicts on the writes of one re-evaluation: each goal that stopped
    /// holding is judged by the authors of the writes to its inputs (an
    /// outside write never counts as a goal's own change).
    pub(crate) fn judge_writes(
        &mut self,
        cx: &mut Cx,
        program: &Program,
        touched: &BTreeMap<FieldId, Author>,
        became_true: &[GoalId],
        undone: &[GoalId],
    ) {
        let mut undoers = BTreeSet::new();
        let mut traps: Vec<WriteTrap> = Vec::new();
        for &g in undone {
            let goal = &program.goals[g.index()];
            let mut authors: BTreeMap<&Author, Vec<FieldId>> = BTreeMap::new();
            for f in &goal.read_set {
                if let Some(author) = touched.get(f) {
                    authors.entry(author).or_default().push(*f);
                }
            }
            for (author, fields) in authors {
                match author {
                    Author::Cycle(tag) if tag.goal == g => {}
                    Author::Cycle(tag) => {
                        let writer = program.goals[tag.goal.index()].priority;
                        if writer == goal.priority {
                            undoers.insert(tag.goal);
                            if let Some((goals, evidence)) = self.tug_round(program, tag.goal, g, &fields) {
                                traps.push((tag.cycle, goals, evidence));
                            }
                        } else if writer < goal.priority {
                            self.learn_dominance(cx, program, g, tag.goal);
                        }
                    }
                    // Contention is an outside write that undoes the goal's
                    // own repair: it changes a field the goal's transitions
                    // write. A new target (an operator raising `want`) is
                    // not a fight.
                    Author::Outside(principal) => {
                        let repaired: Vec<FieldId> = fields
                            .iter()
                            .copied()
                            .filter(|f| {
                                goal.transitions.iter().any(|t| program.transitions[t.index()].write_set.contains(f))
                            })
                            .collect();
                        if !repaired.is_empty() {
                            self.contend(cx, program, g, principal, &repaired);
                        }
                    }
                    Author::Untracked => {}
                }
            }
        }
        // A goal restored by its own cycle without undoing an equal goal
        // ends the tug-of-war evidence it was part of.
        for &g in became_true {
            let own = program.goals[g.index()]
                .read_set
                .iter()
                .any(|f| matches!(touched.get(f), Some(Author::Cycle(t)) if t.goal == g));
            if own && !undoers.contains(&g) {
                self.tugs.retain(|(a, b), _| *a != g.0 && *b != g.0);
            }
        }
        for (cycle, goals, evidence) in traps {
            if self.cycles.contains_key(&cycle) {
                self.abort_cycle(cx, cycle, CycleVerdict::Trapped, Some(codes::OSCILLATION));
            }
            for t in goals {
                self.trap_goal(cx, t, evidence.clone());
            }
        }
    }

    /// One round of a tug-of-war: `writer`'s cycle undid `undone`, of the
    /// same level. Returns the trap when the pair has fought `threshold`
    /// rounds, or at once when the contested state recurred with no
    /// outside input in between.
    fn tug_round(&mut self, program: &Program, writer: GoalId, undone: GoalId, fields: &[FieldId]) -> Option<Trap> {
        let threshold = self.config.oscillation_threshold.max(1);
        let key = (writer.0.min(undone.0), writer.0.max(undone.0));
        let mut scope: Vec<FieldId> = program.goals[writer.index()].read_set.clone();
        scope.extend(program.goals[undone.index()].read_set.iter().copied());
        for t in program.goals[writer.index()].transitions.iter().chain(&program.goals[undone.index()].transitions) {
            scope.extend(program.transitions[t.index()].write_set.iter().copied());
        }
        scope.sort();
        scope.dedup();
        let values: Vec<&Value> = scope.iter().filter_map(|f| self.values.get(f.index())).collect();
        let fp = fingerprint(&values);
        let epoch = self.epoch;
        let tug = self.tugs.entry(key).or_default();
        tug.rounds += 1;
        tug.fields.extend(fields.iter().copied());
        let closed = tug.record_state(fp, epoch, TUG_STATES_LIMIT);
        let rounds = tug.rounds;
        if !(closed || rounds >= threshold) {
            return None;
        }
        let why = if closed {
            "an identical state recurred with no outside input in between".to_string()
        } else {
            format!("{rounds} cycles undid each other")
        };
        let (goals, fields) = self.tug_group(writer, undone);
        let evidence = format!(
            "tug-of-war between {} ({why}); contested fields {}; oscillation vector {}",
            goals.iter().map(|g| program.goal_path(*g)).collect::<Vec<_>>().join(" and "),
            fields.iter().map(|f| program.field_path(*f)).collect::<Vec<_>>().join(", "),
            self.vector_text(program, &fields),
        );
        Some((goals, evidence))
    }

    fn vector_text(&self, program: &Program, fields: &[FieldId]) -> String {
        let mut parts = Vec::new();
        for f in fields {
            let entries = self.vectors.get(&f.0).map(|v| {
                v.iter()
                    .map(|p| format!("{} {:+}@{}", program.goal_path(GoalId(p.goal)), p.delta, p.index))
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            parts.push(format!("{}: [{}]", program.field_path(*f), entries.unwrap_or_default()));
        }
        parts.join("; ")
    }

    /// Every goal linked to `a` and `b` by ongoing tug-of-war evidence (so a
    /// three-way fight names all three), and their contested fields.
    fn tug_group(&self, a: GoalId, b: GoalId) -> (Vec<GoalId>, Vec<FieldId>) {
        let mut goals = vec![a.0, b.0];
        let mut fields = std::collections::BTreeSet::new();
        let mut grown = true;
        while grown {
            grown = false;
            for ((x, y), tug) in &self.tugs {
                if goals.contains(x) || goals.contains(y) {
                    fields.extend(tug.fields.iter().copied());
                    for g in [x, y] {
                        if !goals.contains(g) {
                            goals.push(*g);
                            grown = true;
                        }
                    }
                }
            }
        }
        (goals.into_iter().map(GoalId).collect(), fields.into_iter().collect())
    }

    fn judge(&mut self, cx: &mut Cx, id: u64) {
        self.flush(cx);
        let Some(program) = self.program.clone() else { return };
        let Some(c) = self.cycles.remove(&id) else { return };
        let g = c.goal;
        let goal = &program.goals[g.index()];
        let threshold = self.config.oscillation_threshold.max(1);
        let bound = self.config.non_convergence_bound.max(1);
        let holds = self.goal_states[g.index()].holds;
        self.cycles_judged += 1;
        {
            let gs = &mut self.goal_states[g.index()];
            gs.cycles = gs.cycles.saturating_add(1);
            gs.open_cycle = None;
        }
        let undid_equal = c.held_before.iter().any(|(&g2, &before)| {
            g2 != g
                && before
                && !self.goal_states[g2.index()].holds
                && program.goals[g2.index()].priority == goal.priority
        });
        let mut trap: Option<Trap> = None;
        let mut verdict = match (holds, undid_equal) {
            (_, true) => CycleVerdict::TugOfWar,
            (true, false) => CycleVerdict::Converged,
            (false, false) => CycleVerdict::Progress,
        };

        if !holds {
            let transition = &program.transitions[c.transition.index()];
            let inputs = self.inputs(&program, g);
            let unchanged = inputs == c.inputs_before;
            let before_fp = fingerprint(&c.inputs_before.iter().collect::<Vec<_>>());
            let after_fp = fingerprint(&inputs.iter().collect::<Vec<_>>());
            let gs = &mut self.goal_states[g.index()];
            gs.unheld_cycles = gs.unheld_cycles.saturating_add(1);
            if !gs.seen_inputs.contains(&before_fp) {
                gs.seen_inputs.push(before_fp);
            }
            let progress = !unchanged && !gs.seen_inputs.contains(&after_fp);
            if progress {
                gs.no_progress = 0;
                gs.seen_inputs.push(after_fp);
                if gs.seen_inputs.len() > 4 * threshold as usize {
                    gs.seen_inputs.remove(0);
                }
            } else {
                gs.no_progress += 1;
                verdict = CycleVerdict::NoProgress;
            }
            let (no_progress, unheld) = (gs.no_progress, gs.unheld_cycles);
            if !transition.reaches_goal && !progress {
                trap = Some((
                    vec![g],
                    format!(
                        "transition {} cannot change the inputs of goal {}: the goal is still violated after its cycle",
                        transition.name,
                        program.goal_path(g)
                    ),
                ));
            } else if no_progress >= threshold {
                trap = Some((
                    vec![g],
                    format!(
                        "non-convergent transition {}: {no_progress} cycles left goal {} violated without progress in its inputs",
                        transition.name,
                        program.goal_path(g)
                    ),
                ));
            } else if unheld >= bound {
                trap = Some((
                    vec![g],
                    format!(
                        "non-convergent goal {}: it has not held for {unheld} cycles of transition {} (bound {bound})",
                        program.goal_path(g),
                        transition.name
                    ),
                ));
            } else if unchanged {
                gs.unchanged += 1;
                let delay_ms = backoff_ms(&transition.retry, gs.unchanged);
                let timer = self.fresh_id();
                self.goal_states[g.index()].backoff = Some(timer);
                self.timers.insert(timer, Timer { kind: TimerKind::CycleBackoff { goal: g }, delay_ms });
                cx.event(
                    EventKind::Backoff,
                    Some(program.domains[goal.domain.index()].name.clone()),
                    Some(goal.name.clone()),
                    None,
                    format!("inputs unchanged after cycle {id}; next cycle in {delay_ms} ms"),
                );
            } else {
                gs.unchanged = 0;
            }
        }
        let code = trap.as_ref().map(|_| codes::OSCILLATION);
        if trap.is_some() {
            verdict = CycleVerdict::Trapped;
        }
        self.record(&program, cx, id, &c, verdict, code);
        cx.event(
            EventKind::Cycle,
            Some(program.domains[c.domain.index()].name.clone()),
            Some(goal.name.clone()),
            code,
            format!("cycle {id} of {} judged: {verdict}", program.transitions[c.transition.index()].name),
        )
        .verdict = Some(verdict);
        if let Some((goals, evidence)) = trap {
            for t in goals {
                self.trap_goal(cx, t, evidence.clone());
            }
        }
        cx.status_dirty.insert(g);
        cx.dirty_domains.insert(c.domain);
    }
}

/// The retry policy a goal's repairs back off with (its first transition's).
pub(crate) fn goal_retry(program: &Program, g: GoalId) -> RetryPolicy {
    program.goals[g.index()].transitions.first().map(|t| program.transitions[t.index()].retry).unwrap_or_default()
}
