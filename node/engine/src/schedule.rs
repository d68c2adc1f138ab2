//! Scheduling (SPEC §3.3): arming transitions, one instance per domain,
//! preemption at slice boundaries and the ready queue the leader reads.

use std::cmp::Reverse;

use lexum_compiler::program::{DomainId, GoalId, Priority, Program, TransitionId};

use crate::eval::{self, Slots};
use crate::state::{Cycle, EffectRecord, EffectState, Step, StepKind};
use crate::{
    Cx, CycleVerdict, EffectKey, Engine, EventKind, Pending, PendingEffect, PendingStep, PendingTimer, StepId, TimerId,
    WorkerRoom,
};

impl Engine {
    /// Whether a goal may start a cycle now (ignoring whether its domain is busy).
    fn armable(&self, g: GoalId) -> bool {
        let gs = &self.goal_states[g.index()];
        !gs.holds
            && !gs.inert
            && !gs.trapped
            && !gs.failed
            && gs.open_cycle.is_none()
            && gs.backoff.is_none()
            && gs.suppressed_by.is_none()
            && self.dominator(g).is_none()
    }

    /// The goal of a domain to repair next and the transition that would run:
    /// strictly by level, then the index at which the goal became violated,
    /// then goal name; the first transition in source order whose guard holds.
    fn best_armable(&self, program: &Program, d: DomainId) -> Option<(GoalId, TransitionId, Slots)> {
        let domain = program.domains.get(d.index())?;
        let mut candidates: Vec<GoalId> = domain.goals.iter().copied().filter(|g| self.armable(*g)).collect();
        candidates.sort_by_key(|g| {
            let goal = &program.goals[g.index()];
            (Reverse(goal.priority), self.goal_states[g.index()].violated_since, goal.name.clone())
        });
        candidates.into_iter().find_map(|g| self.armed(program, g).map(|(t, slots)| (g, t, slots)))
    }

    /// The transition a violated goal arms now: the first in source order
    /// whose `when` holds, with the slots its guard bound.
    pub(crate) fn armed(&self, program: &Program, g: GoalId) -> Option<(TransitionId, Slots)> {
        program.goals[g.index()].transitions.iter().find_map(|t| {
            let transition = &program.transitions[t.index()];
            let mut slots = eval::new_slots(transition.slots);
            let guard = match &transition.when {
                None => true,
                Some(expr) => {
                    matches!(
                        eval::guard(expr, &self.world(program), &mut slots),
                        Ok(lexum_compiler::program::Value::Bool(true))
                    )
                }
            };
            guard.then_some((*t, slots))
        })
    }

    /// The suspended cycle of a domain to resume first: highest level, then
    /// oldest. Suspended cycles whose goal holds by now are dropped.
    fn best_suspended(&mut self, cx: &mut Cx, d: DomainId) -> Option<(u64, lexum_compiler::program::Priority)> {
        let suspended: Vec<(u64, GoalId)> =
            self.cycles.iter().filter(|(_, c)| c.suspended && c.domain == d).map(|(id, c)| (*id, c.goal)).collect();
        let mut best = None;
        for (id, g) in suspended {
            if self.goal_states[g.index()].holds {
                self.abort_cycle(cx, id, CycleVerdict::Dropped, None);
                continue;
            }
            let waits = self.goal_states[g.index()].suppressed_by.is_some() || self.dominator(g).is_some();
            let Some(c) = self.cycles.get(&id) else { continue };
            let key = (c.priority, Reverse(c.start_index));
            if !waits && best.as_ref().is_none_or(|(_, k)| key > *k) {
                best = Some((id, key));
            }
        }
        best.map(|(id, (priority, _))| (id, priority))
    }

    /// Arms the best goal of a free domain or resumes a suspended cycle
    /// there (whichever ranks higher; a tie resumes), or suspends a
    /// lower-level instance that sits at a slice boundary.
    pub(crate) fn schedule_domain(&mut self, cx: &mut Cx, d: DomainId) {
        let Some(program) = self.program.clone() else { return };
        let candidate = self.best_armable(&program, d);
        if let Some(&running) = self.running.get(&d.0) {
            let Some((g, _, _)) = &candidate else { return };
            let Some(c) = self.cycles.get(&running) else { return };
            let at_boundary = c.waiting.is_empty() && c.step.is_some();
            if !(at_boundary && program.goals[g.index()].priority > c.priority) {
                return;
            }
            self.suspend(cx, &program, running);
        }
        let resume = self.best_suspended(cx, d);
        match (candidate, resume) {
            (Some((g, t, slots)), Some((_, priority))) if program.goals[g.index()].priority > priority => {
                self.arm(cx, &program, g, t, slots)
            }
            (_, Some((cycle, _))) => self.resume(cx, &program, cycle),
            (Some((g, t, slots)), None) => self.arm(cx, &program, g, t, slots),
            (None, None) => {}
        }
    }

    /// Preemption (SPEC §3.3, §3.7): the running cycle stops at its slice
    /// boundary and keeps its slots, next slice and idempotency keys.
    fn suspend(&mut self, cx: &mut Cx, program: &Program, id: u64) {
        let Some(c) = self.cycles.get_mut(&id) else { return };
        if let Some(step) = c.step.take() {
            self.steps.remove(&step);
        }
        c.suspended = true;
        let (domain, goal, next) = (c.domain, c.goal, c.next_slice);
        if self.running.get(&domain.0) == Some(&id) {
            self.running.remove(&domain.0);
        }
        cx.event(
            EventKind::Suspended,
            Some(program.domains[domain.index()].name.clone()),
            Some(program.goals[goal.index()].name.clone()),
            None,
            format!("cycle {id} preempted before slice {}; it resumes there", next + 1),
        );
    }

    /// Resumes a suspended cycle at its next slice.
    fn resume(&mut self, cx: &mut Cx, program: &Program, id: u64) {
        let Some(c) = self.cycles.get_mut(&id) else { return };
        c.suspended = false;
        let (domain, goal, next) = (c.domain, c.goal, c.next_slice);
        self.running.insert(domain.0, id);
        cx.event(
            EventKind::Resumed,
            Some(program.domains[domain.index()].name.clone()),
            Some(program.goals[goal.index()].name.clone()),
            None,
            format!("cycle {id} resumes at slice {}", next + 1),
        );
        self.queue_slice(id);
    }

    fn arm(&mut self, cx: &mut Cx, program: &Program, g: GoalId, t: TransitionId, slots: Slots) {
        let goal = &program.goals[g.index()];
        let id = self.fresh_id();
        let cycle = Cycle {
            goal: g,
            transition: t,
            domain: goal.domain,
            priority: goal.priority,
            start_index: cx.index,
            epoch: self.epoch,
            inputs_before: self.inputs(program, g),
            held_before: Default::default(),
            before_values: Default::default(),
            next_slice: 0,
            slots,
            waiting: Default::default(),
            step: None,
            outstanding: 0,
            slices_done: false,
            suspended: false,
        };
        self.cycles.insert(id, cycle);
        self.running.insert(goal.domain.0, id);
        self.goal_states[g.index()].open_cycle = Some(id);
        cx.status_dirty.insert(g);
        cx.event(
            EventKind::Armed,
            Some(program.domains[goal.domain.index()].name.clone()),
            Some(goal.name.clone()),
            None,
            format!("transition {} armed (cycle {id})", program.transitions[t.index()].name),
        );
        self.queue_slice(id);
    }

    /// Queues the step that runs the next slice of a cycle.
    pub(crate) fn queue_slice(&mut self, cycle: u64) {
        let step = self.fresh_id();
        let Some(c) = self.cycles.get_mut(&cycle) else { return };
        let since = self.goal_states.get(c.goal.index()).map_or(0, |gs| gs.violated_since);
        c.step = Some(step);
        let entry =
            Step { kind: StepKind::Slice { cycle }, priority: c.priority, since, domain: c.domain, goal: Some(c.goal) };
        self.steps.insert(step, entry);
    }

    /// What the leader should do now. Steps and effects come strictly by
    /// level, then by the index at which the causing goal became violated,
    /// then domain and goal name.
    pub fn pending(&self) -> Pending {
        let Some(program) = self.program.as_ref() else { return Pending::default() };
        let names = |goal: Option<GoalId>, domain: DomainId| names(program, goal, domain);
        let mut steps: Vec<_> = self.steps.iter().map(|(id, s)| (step_rank(program, *id, s), s)).collect();
        steps.sort_by(|a, b| a.0.cmp(&b.0));
        let mut effects: Vec<_> = self
            .effects
            .iter()
            .filter_map(|(key, e)| {
                let pending = self.pending_effect(program, *key, e)?;
                let (domain, goal) = e
                    .cycle
                    .and_then(|c| self.cycles.get(&c))
                    .map(|c| names(Some(c.goal), c.domain))
                    .unwrap_or_default();
                Some(((Reverse(e.priority), e.since, domain, goal, *key), pending))
            })
            .collect();
        effects.sort_by(|a, b| a.0.cmp(&b.0));
        Pending {
            steps: steps
                .into_iter()
                .map(|(k, s)| PendingStep { step: StepId(k.3), priority: s.priority, emits: self.emits(program, s) })
                .collect(),
            effects: effects.into_iter().map(|(_, e)| e).collect(),
            timers: self
                .timers
                .iter()
                .map(|(id, t)| PendingTimer { timer: TimerId(*id), delay_ms: t.delay_ms })
                .collect(),
        }
    }

    /// Applies `Entry::DispatchArmed`: runs the steps this entry queued, in
    /// the leader's order, dispatching their effects to the first worker
    /// that serves them all and has room, while room lasts.
    pub(crate) fn dispatch_armed(&mut self, cx: &mut Cx, workers: &[WorkerRoom]) {
        let Some(program) = self.program.clone() else { return };
        let mut workers = workers.to_vec();
        for e in self.effects.values().filter(|e| e.state == EffectState::Ready) {
            let name = program.effects.get(e.effect.index()).map(|d| d.full_name()).unwrap_or_default();
            if let Some(w) = workers.iter_mut().find(|w| w.room > 0 && w.effects.contains(&name)) {
                w.room -= 1;
            }
        }
        let waiting = self.steps.range(..cx.first_id).map(|(_, s)| s.priority).max();
        let mut armed: Vec<_> = self.steps.range(cx.first_id..).map(|(id, s)| step_rank(&program, *id, s)).collect();
        armed.sort();
        for (_, _, _, id) in armed {
            let Some(step) = self.steps.get(&id) else { continue };
            if waiting.is_some_and(|level| level > step.priority) {
                continue;
            }
            let emits = self.emits(&program, step);
            let need = emits.len() as u32;
            let serving = workers.iter_mut().find(|w| w.room >= need && emits.iter().all(|e| w.effects.contains(e)));
            let Some(worker) = serving.filter(|_| need > 0) else { continue };
            worker.room -= need;
            let name = worker.worker.clone();
            self.run_step(cx, StepId(id), Some(name));
            self.settle(cx);
        }
    }

    /// The effects in flight with fencing token `token`: those a
    /// [`crate::Entry::RunStepAndDispatch`] or [`crate::Entry::DispatchArmed`]
    /// at that index dispatched (and any `Dispatched` entry of the same
    /// batch), each with the worker named for it when it is known, for the
    /// leader to send.
    pub fn dispatched_at(&self, token: u64) -> Vec<(PendingEffect, Option<String>)> {
        let Some(program) = self.program.as_ref() else { return Vec::new() };
        self.effects
            .iter()
            .filter(|(_, e)| e.state == EffectState::InFlight { token })
            .filter_map(|(key, e)| {
                let worker = self.effect_origins.get(&e.idempotency_key).and_then(|o| o.worker.clone());
                Some((self.pending_effect(program, *key, e)?, worker))
            })
            .collect()
    }

    /// An effect of the journal as the leader sees it; `None` while it
    /// backs off before its next attempt.
    fn pending_effect(&self, program: &Program, key: u64, e: &EffectRecord) -> Option<PendingEffect> {
        let in_flight = match e.state {
            EffectState::Ready => None,
            EffectState::InFlight { token } => Some(token),
            EffectState::Backoff { .. } => return None,
        };
        let decl = program.effects.get(e.effect.index())?;
        let args = decl.params.iter().map(|p| p.name.clone()).zip(e.args.iter().cloned()).collect();
        Some(PendingEffect {
            key: EffectKey(key),
            effect: decl.full_name(),
            args,
            idempotency_key: e.idempotency_key.clone(),
            attempt: if in_flight.is_some() { e.attempts } else { e.attempts + 1 },
            priority: e.priority,
            in_flight,
        })
    }

    /// The effects a step's slice or handler may emit directly, by name.
    fn emits(&self, program: &Program, step: &Step) -> Vec<String> {
        let emits = match step.kind {
            StepKind::Slice { cycle } => self.cycles.get(&cycle).and_then(|c| {
                let slices = &program.transitions.get(c.transition.index())?.slices;
                Some(&slices.get(c.next_slice as usize)?.emits)
            }),
            StepKind::Deliver { message } => {
                self.messages.get(&message).and_then(|m| program.handlers.get(m.handler.index())).map(|h| &h.emits)
            }
        };
        let mut names: Vec<String> =
            emits.into_iter().flatten().filter_map(|e| program.effects.get(e.index()).map(|d| d.full_name())).collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Domain and goal names, for ordering.
fn names(program: &Program, goal: Option<GoalId>, domain: DomainId) -> (String, String) {
    let d = program.domains.get(domain.index()).map(|d| d.name.clone()).unwrap_or_default();
    let g = goal.and_then(|g| program.goals.get(g.index())).map(|g| g.name.clone()).unwrap_or_default();
    (d, g)
}

/// The leader's order of steps: level, then the index at which the goal
/// became violated, then domain and goal name, then id.
fn step_rank(program: &Program, id: u64, s: &Step) -> (Reverse<Priority>, u64, (String, String), u64) {
    (Reverse(s.priority), s.since, names(program, s.goal, s.domain), id)
}
