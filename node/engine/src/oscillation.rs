//! Cycles, oscillation vectors, verdicts and dominance (SPEC §3.5).
//!
//! A cycle is one transition instance plus the messages it sent (and their
//! handlers) and the effects it caused; it is judged once all of them are
//! applied. Judging decides, in this order:
//! - **dominance**: the cycle made a higher-priority goal stop holding →
//!   the pair is learnt; the lower goal is DOMINATED while the higher holds;
//! - **tug-of-war**: the cycle made an equal-priority goal stop holding →
//!   one round for that pair; trap both at the threshold, or at once when
//!   the contested state recurs with no outside input in between;
//! - **non-convergence**: the goal is still violated and its inputs reached
//!   no new value → no progress; trap at the threshold, or at once when the
//!   transition cannot reach the goal's inputs. Unchanged inputs also arm a
//!   cycle backoff timer.

use std::sync::Arc;

use lexum_compiler::program::{FieldId, GoalId, Program, Value};

use crate::effects::backoff_ms;
use crate::report::{CycleRecord, FieldDelta};
use crate::state::{Cycle, Timer, TimerKind};
use crate::{codes, Cx, Engine};

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

    fn record(&mut self, program: &Program, cx: &Cx, id: u64, c: &Cycle, verdict: &str, code: Option<&str>) {
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
            verdict: verdict.to_string(),
            code: code.map(str::to_string),
        });
    }

    /// Ends a cycle early (preemption, trap, failure): its queued step and
    /// live effects are dropped; messages already sent stay deliverable.
    pub(crate) fn abort_cycle(&mut self, cx: &mut Cx, id: u64, verdict: &str, code: Option<&str>) {
        let Some(program) = self.program.clone() else { return };
        let Some(c) = self.cycles.remove(&id) else { return };
        if self.running.get(&c.domain.0) == Some(&id) {
            self.running.remove(&c.domain.0);
        }
        if let Some(step) = c.step {
            self.steps.remove(&step);
        }
        let dropped: Vec<u64> = self.effects.iter().filter(|(_, e)| e.cycle == Some(id)).map(|(k, _)| *k).collect();
        for key in dropped {
            if let Some(e) = self.effects.remove(&key) {
                if let crate::state::EffectState::Backoff { timer } = e.state {
                    self.timers.remove(&timer);
                }
            }
        }
        for m in self.messages.values_mut().filter(|m| m.cycle == Some(id)) {
            m.cycle = None;
        }
        self.flush(cx);
        self.goal_states[c.goal.index()].open_cycle = None;
        self.record(&program, cx, id, &c, verdict, code);
        let goal = &program.goals[c.goal.index()];
        cx.event(
            "cycle",
            Some(program.domains[c.domain.index()].name.clone()),
            Some(goal.name.clone()),
            code,
            format!("cycle {id} of {} ended: {verdict}", program.transitions[c.transition.index()].name),
        );
        cx.status_dirty.insert(c.goal);
        cx.dirty_domains.insert(c.domain);
    }

    /// Ends a cycle and marks its goal FAILED with `code`.
    pub(crate) fn fail_cycle(&mut self, cx: &mut Cx, id: u64, code: &str, message: String) {
        let Some(goal) = self.cycles.get(&id).map(|c| c.goal) else { return };
        self.abort_cycle(cx, id, "failed", Some(code));
        let gs = &mut self.goal_states[goal.index()];
        gs.failed = true;
        gs.code = Some(code.to_string());
        gs.evidence = Some(message.clone());
        let program = self.program.clone();
        if let Some(p) = program {
            let g = &p.goals[goal.index()];
            cx.event(
                "goal_failed",
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
            self.abort_cycle(cx, id, "cancelled", Some(codes::OSCILLATION));
        }
        let goal = &program.goals[g.index()];
        cx.event(
            "trap",
            Some(program.domains[goal.domain.index()].name.clone()),
            Some(goal.name.clone()),
            Some(codes::OSCILLATION),
            evidence,
        );
        cx.status_dirty.insert(g);
    }

    fn learn_dominance(&mut self, cx: &mut Cx, program: &Program, higher: GoalId, lower: GoalId) {
        if !self.runtime_dominance.insert((higher.0, lower.0)) {
            return;
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
            "dominance",
            Some(program.domains[l.domain.index()].name.clone()),
            Some(l.name.clone()),
            None,
            format!("a cycle of {} undid higher-priority goal {}", program.goal_path(lower), program.goal_path(higher)),
        );
        cx.status_dirty.insert(lower);
    }

    fn vector_text(&self, program: &Program, fields: impl Iterator<Item = FieldId>) -> String {
        let mut parts = Vec::new();
        for f in fields {
            let entries = self.vectors.get(&f.0).map(|v| {
                v.iter().map(|(g, d)| format!("{} {d:+}", program.goal_path(GoalId(*g)))).collect::<Vec<_>>().join(", ")
            });
            parts.push(format!("{}: [{}]", program.field_path(f), entries.unwrap_or_default()));
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
        let holds = self.goal_states[g.index()].holds;
        self.cycles_judged += 1;
        {
            let gs = &mut self.goal_states[g.index()];
            gs.cycles = gs.cycles.saturating_add(1);
            gs.open_cycle = None;
        }
        let deltas = self.deltas(&program, &c);
        for (f, d) in &deltas {
            let v = self.vectors.entry(f.0).or_default();
            v.push_back((g.0, d.delta.unwrap_or(1)));
            while v.len() > 2 * threshold as usize {
                v.pop_front();
            }
        }
        let changed: Vec<FieldId> = deltas.iter().map(|(f, _)| *f).collect();

        let mut undone_equal = Vec::new();
        for (&g2, &before) in &c.held_before {
            if g2 == g || !before || self.goal_states[g2.index()].holds {
                continue;
            }
            let p2 = program.goals[g2.index()].priority;
            if p2 == goal.priority {
                undone_equal.push(g2);
            } else if p2 > goal.priority {
                self.learn_dominance(cx, &program, g2, g);
            }
        }
        if undone_equal.is_empty() {
            self.tugs.retain(|(a, b), _| *a != g.0 && *b != g.0);
        }

        let mut trap: Option<(Vec<GoalId>, String)> = None;
        let mut verdict = if holds { "converged" } else { "progress" };
        for g2 in undone_equal {
            verdict = "tug_of_war";
            let key = (g.0.min(g2.0), g.0.max(g2.0));
            let mut scope: Vec<FieldId> = program.goals[g.index()].read_set.clone();
            scope.extend(program.goals[g2.index()].read_set.iter().copied());
            for t in program.goals[g.index()].transitions.iter().chain(&program.goals[g2.index()].transitions) {
                scope.extend(program.transitions[t.index()].write_set.iter().copied());
            }
            scope.sort();
            scope.dedup();
            let values: Vec<&Value> = scope.iter().filter_map(|f| self.values.get(f.index())).collect();
            let fp = fingerprint(&values);
            let epoch = self.epoch;
            let read2 = &program.goals[g2.index()].read_set;
            let tug = self.tugs.entry(key).or_default();
            tug.rounds += 1;
            tug.fields.extend(changed.iter().filter(|f| read2.contains(f)).copied());
            let closed = tug.seen.get(&fp) == Some(&epoch);
            tug.seen.insert(fp, epoch);
            let rounds = tug.rounds;
            if trap.is_none() && (closed || rounds >= threshold) {
                let why = if closed {
                    "an identical state recurred with no outside input in between".to_string()
                } else {
                    format!("{rounds} cycles undid each other")
                };
                let (goals, fields) = self.tug_group(g, g2);
                let evidence = format!(
                    "tug-of-war between {} ({why}); contested fields {}; oscillation vector {}",
                    goals.iter().map(|g| program.goal_path(*g)).collect::<Vec<_>>().join(" and "),
                    fields.iter().map(|f| program.field_path(*f)).collect::<Vec<_>>().join(", "),
                    self.vector_text(&program, fields.iter().copied()),
                );
                trap = Some((goals, evidence));
            }
        }

        if trap.is_none() && !holds {
            let transition = &program.transitions[c.transition.index()];
            let inputs = self.inputs(&program, g);
            let unchanged = inputs == c.inputs_before;
            let before_fp = fingerprint(&c.inputs_before.iter().collect::<Vec<_>>());
            let after_fp = fingerprint(&inputs.iter().collect::<Vec<_>>());
            let gs = &mut self.goal_states[g.index()];
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
                verdict = "no_progress";
            }
            let no_progress = gs.no_progress;
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
            } else if unchanged {
                gs.unchanged += 1;
                let delay_ms = backoff_ms(&transition.retry, gs.unchanged);
                let timer = self.fresh_id();
                self.goal_states[g.index()].backoff = Some(timer);
                self.timers.insert(timer, Timer { kind: TimerKind::CycleBackoff { goal: g }, delay_ms });
                cx.event(
                    "backoff",
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
            verdict = "trapped";
        }
        self.record(&program, cx, id, &c, verdict, code);
        cx.event(
            "cycle",
            Some(program.domains[c.domain.index()].name.clone()),
            Some(goal.name.clone()),
            code,
            format!("cycle {id} of {} judged: {verdict}", program.transitions[c.transition.index()].name),
        );
        if let Some((goals, evidence)) = trap {
            for t in goals {
                self.trap_goal(cx, t, evidence.clone());
            }
        }
        cx.status_dirty.insert(g);
        cx.dirty_domains.insert(c.domain);
    }
}
