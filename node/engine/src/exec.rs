//! Slices and handlers (SPEC §3.2): each step computes a plan from
//! committed state and commits it — writes after invariant checks, effect
//! intents into the journal, messages into mailboxes (each delivery a
//! further step).

use crate::aggregates::World;
use crate::instances::Route;
use lexum_compiler::program::{DomainId, Priority, Program, RetryPolicy, Value};

use crate::eval::{self, Plan};
use crate::provenance::{Cause, CycleTag, EffectOrigin, WriteCause};
use crate::state::{EffectRecord, EffectState, Message, Step, StepKind};
use crate::{codes, Cx, EffectRef, Engine, EventKind, Rejection, StepId};

/// Where a plan came from, for attribution and idempotency keys.
struct Origin {
    /// The open cycle waiting for what the plan causes.
    cycle: Option<u64>,
    /// The cycle the plan's writes, messages and effects are attributed to.
    tag: Option<CycleTag>,
    /// The slice or handler, for write causes.
    step: String,
    /// The domain executing (an instance's key routes its sends).
    domain: DomainId,
    from_slice: bool,
    priority: Priority,
    since: u64,
    retry: RetryPolicy,
    /// `{domain}-{transition}-{instance}-{slice}` or `{domain}-{handler}-m{message}`.
    key_prefix: String,
    /// Dispatch the plan's effects at once, to this worker
    /// ([`crate::Entry::RunStepAndDispatch`]).
    dispatch: Option<String>,
}

impl Engine {
    /// Domain and goal names of a cycle, for events.
    pub(crate) fn cycle_names(&self, cycle: Option<u64>) -> (Option<String>, Option<String>) {
        let c = cycle.and_then(|id| self.cycles.get(&id));
        let program = self.program.as_ref();
        match (c, program) {
            (Some(c), Some(p)) => {
                (Some(p.domains[c.domain.index()].name.clone()), Some(p.goals[c.goal.index()].name.clone()))
            }
            _ => (None, None),
        }
    }

    /// Applies `Entry::RunStep` (and `RunStepAndDispatch` with the worker
    /// in `dispatch`): stale or duplicate steps are no-ops.
    pub(crate) fn run_step(&mut self, cx: &mut Cx, step: StepId, dispatch: Option<String>) {
        let Some(entry) = self.steps.remove(&step.0) else {
            cx.event(
                EventKind::Stale,
                None,
                None,
                None,
                format!("step {} is not ready (already run or cancelled)", step.0),
            );
            return;
        };
        match entry.kind {
            StepKind::Slice { cycle } => self.run_slice(cx, cycle, step.0, dispatch),
            StepKind::Deliver { message } => self.deliver(cx, message, dispatch),
        }
    }

    fn run_slice(&mut self, cx: &mut Cx, cycle_id: u64, step: u64, dispatch: Option<String>) {
        let Some(program) = self.program.clone() else { return };
        let Some(c) = self.cycles.get_mut(&cycle_id) else { return };
        if c.step != Some(step) || !c.waiting.is_empty() {
            cx.event(EventKind::Stale, None, None, None, format!("step {step} does not match cycle {cycle_id}"));
            return;
        }
        c.step = None;
        let transition = &program.transitions[c.transition.index()];
        let Some(slice) = transition.slices.get(c.next_slice as usize) else {
            self.advance(cx, cycle_id);
            return;
        };
        let goal = &program.goals[c.goal.index()];
        let domain = program.domains[c.domain.index()].name.clone();
        let mut plan = Plan::default();
        let mut slots = std::mem::take(&mut c.slots);
        let result = eval::exec(
            &program,
            &slice.body,
            World::committed(&self.values, &program, &self.index, &self.aggregates),
            &mut slots,
            &mut plan,
        );
        c.slots = slots;
        c.next_slice += 1;
        let origin = Origin {
            cycle: Some(cycle_id),
            tag: Some(c.tag(cycle_id)),
            step: slice.name.clone(),
            domain: c.domain,
            from_slice: true,
            priority: c.priority,
            since: self.goal_states[c.goal.index()].violated_since,
            retry: transition.retry,
            key_prefix: format!("{domain}-{}-{cycle_id}-{}", transition.name, slice.name),
            dispatch,
        };
        let outcome = match result {
            Err(e) => {
                Err(Rejection::new(eval::failure_code(&e), format!("slice {}.{}: {e}", transition.name, slice.name)))
            }
            Ok(()) => self.commit_plan(cx, &program, plan, &origin),
        };
        match outcome {
            Ok(()) => {
                cx.event(
                    EventKind::Slice,
                    Some(domain),
                    Some(goal.name.clone()),
                    None,
                    format!("slice {}.{} committed (cycle {cycle_id})", transition.name, slice.name),
                );
                if self.cycles.get(&cycle_id).is_some_and(|c| c.waiting.is_empty()) {
                    self.advance(cx, cycle_id);
                }
            }
            Err(r) => self.fail_cycle(cx, cycle_id, &r.code, r.message),
        }
    }

    /// Moves a cycle past a completed slice: queues the next one or marks
    /// the slices done and frees the domain.
    pub(crate) fn advance(&mut self, cx: &mut Cx, cycle_id: u64) {
        let Some(program) = self.program.clone() else { return };
        let Some(c) = self.cycles.get_mut(&cycle_id) else { return };
        let slices = program.transitions[c.transition.index()].slices.len() as u32;
        if c.next_slice < slices {
            // A slice boundary: a higher-level goal of the domain may preempt.
            cx.dirty_domains.insert(c.domain);
            self.queue_slice(cycle_id);
            return;
        }
        c.slices_done = true;
        let domain = c.domain;
        if self.running.get(&domain.0) == Some(&cycle_id) {
            self.running.remove(&domain.0);
        }
        cx.dirty_domains.insert(domain);
        self.maybe_close(cx, cycle_id);
    }

    fn deliver(&mut self, cx: &mut Cx, message_id: u64, dispatch: Option<String>) {
        let Some(mut message) = self.messages.remove(&message_id) else { return };
        // `on create`: the instance is created now, then receives the message.
        let created = self.create_for_message(cx, &mut message);
        let Some(program) = self.program.clone() else { return };
        let Some(handler) = program.handlers.get(message.handler.index()) else { return };
        let domain = program.domains[handler.domain.index()].name.clone();
        let cycle = message.cycle.filter(|c| self.cycles.contains_key(c));
        let mut slots = eval::new_slots(handler.slots);
        for (i, v) in message.args.iter().enumerate() {
            if let Some(s) = slots.get_mut(i) {
                *s = Some(v.clone());
            }
        }
        let mut plan = Plan::default();
        let result = match created {
            Ok(()) => eval::exec(&program, &handler.body, self.world(&program), &mut slots, &mut plan)
                .map_err(|e| Rejection::new(eval::failure_code(&e), format!("handler {domain}.{}: {e}", handler.name))),
            Err(r) => Err(r),
        };
        let (retry, since) = match cycle.and_then(|c| self.cycles.get(&c)) {
            Some(c) => {
                (program.transitions[c.transition.index()].retry, self.goal_states[c.goal.index()].violated_since)
            }
            None => (RetryPolicy::default(), cx.index),
        };
        let origin = Origin {
            cycle,
            tag: message.tag,
            step: format!("{domain}.{}", handler.name),
            domain: handler.domain,
            from_slice: false,
            priority: message.priority,
            since,
            retry,
            key_prefix: format!("{domain}-{}-m{message_id}", handler.name),
            dispatch,
        };
        let outcome = result.and_then(|()| self.commit_plan(cx, &program, plan, &origin));
        let failure = match outcome {
            Ok(()) => {
                cx.event(EventKind::Message, Some(domain), None, None, format!("{} delivered", handler.name));
                None
            }
            Err(r) => {
                let message = format!("handler {domain}.{} of a message it sent: {}", handler.name, r.message);
                cx.event(
                    EventKind::Rejected,
                    Some(domain),
                    None,
                    Some(&r.code),
                    format!("message {} dropped: {}", handler.name, r.message),
                );
                Some((r.code, message))
            }
        };
        if let Some(id) = cycle {
            if let Some(c) = self.cycles.get_mut(&id) {
                c.outstanding = c.outstanding.saturating_sub(1);
            }
        }
        // A handler that breaks an invariant or fails to evaluate fails the
        // cycle that sent its message (E011, E012), with the cause kept.
        match (failure, cycle, message.tag) {
            (Some((code, message)), Some(id), _) => self.fail_cycle(cx, id, &code, message),
            (Some((code, message)), None, Some(tag)) => self.fail_goal(cx, tag.goal, &code, message),
            (None, Some(id), _) => self.maybe_close(cx, id),
            _ => {}
        }
    }

    /// Commits a plan: invariants first (E011 leaves state untouched), then
    /// writes, effect intents and messages.
    fn commit_plan(&mut self, cx: &mut Cx, program: &Program, plan: Plan, origin: &Origin) -> Result<(), Rejection> {
        self.check_invariants(&plan.writes)?;
        let cause = match origin.tag {
            Some(tag) => self.cycle_write_cause(program, tag, origin.step.clone()),
            None => WriteCause {
                author: crate::provenance::Author::Untracked,
                cause: Cause::Handler { handler: origin.step.clone() },
            },
        };
        for (f, v) in plan.writes {
            self.write_field(cx, f, v, &cause);
        }
        let hash8: String = self.program_hash.as_deref().unwrap_or("").chars().take(8).collect();
        for (n, (effect, args, bind)) in plan.effects.into_iter().enumerate() {
            let key = self.fresh_id();
            let idempotency_key = format!("{hash8}-{}-{n}", origin.key_prefix);
            let name = program.effects.get(effect.index()).map(|e| e.full_name()).unwrap_or_default();
            let (domain, goal) = self.cycle_names(origin.cycle);
            cx.event(
                EventKind::EffectPlanned,
                domain.clone(),
                goal.clone(),
                None,
                format!("{name} planned as effect {key} ({idempotency_key})"),
            )
            .effect = Some(EffectRef { name: name.clone(), idempotency_key: idempotency_key.clone(), attempt: 0 });
            if let Some(tag) = origin.tag {
                let remembered = EffectOrigin { tag, effect: name.clone(), worker: None };
                self.remember_effect(idempotency_key.clone(), remembered);
            }
            // Dispatched with its step: attempt 1 in flight, fenced by this entry.
            let (attempts, state) = match &origin.dispatch {
                Some(worker) => {
                    let message = format!(
                        "{name} (effect {key}) attempt 1 dispatched to {worker} with its step, fencing token {}",
                        cx.index
                    );
                    let effect = EffectRef { name: name.clone(), idempotency_key: idempotency_key.clone(), attempt: 1 };
                    self.note_dispatch(cx, effect, (domain, goal), worker, message);
                    cx.dispatched = true;
                    (1, EffectState::InFlight { token: cx.index })
                }
                None => (0, EffectState::Ready),
            };
            self.effects.insert(
                key,
                EffectRecord {
                    effect,
                    args,
                    idempotency_key,
                    attempts,
                    state,
                    cycle: origin.cycle,
                    domain: origin.domain,
                    goal: origin.tag.map(|t| t.goal),
                    from_slice: origin.from_slice,
                    bind: if origin.from_slice { bind } else { None },
                    priority: origin.priority,
                    since: origin.since,
                    retry: origin.retry,
                    last_error: None,
                },
            );
            if let Some(c) = origin.cycle.and_then(|id| self.cycles.get_mut(&id)) {
                c.outstanding += 1;
                if origin.from_slice {
                    c.waiting.insert(key);
                }
            }
        }
        for (handler, args, key) in plan.sends {
            // A send to a kind reaches the instance with the sender's key,
            // or the computed one; `on create` creates it first.
            let (handler, create) = match self.route_send(program, origin.domain, handler, key.as_deref()) {
                Route::To(h) => (h, None),
                Route::Create(key) => (handler, Some(key)),
                Route::Missing => {
                    let name = program.handlers.get(handler.index()).map(|h| h.name.clone()).unwrap_or_default();
                    let to =
                        program.handlers.get(handler.index()).map(|h| program.domains[h.domain.index()].name.clone());
                    cx.event(
                        EventKind::Rejected,
                        Some(program.domains[origin.domain.index()].name.clone()),
                        None,
                        Some(codes::UNKNOWN),
                        format!("{name} not sent: no instance of {} with this key", to.unwrap_or_default()),
                    );
                    continue;
                }
            };
            let Some(target) = program.handlers.get(handler.index()).map(|h| h.domain) else { continue };
            let id = self.fresh_id();
            let message =
                Message { handler, args, cycle: origin.cycle, tag: origin.tag, priority: origin.priority, create };
            self.messages.insert(id, message);
            let goal = origin.cycle.and_then(|c| self.cycles.get(&c)).map(|c| c.goal);
            self.queue_delivery(id, target, goal, origin.priority, origin.since);
            if let Some(c) = origin.cycle.and_then(|id| self.cycles.get_mut(&id)) {
                c.outstanding += 1;
            }
        }
        Ok(())
    }

    fn queue_delivery(
        &mut self,
        message: u64,
        domain: DomainId,
        goal: Option<lexum_compiler::program::GoalId>,
        priority: Priority,
        since: u64,
    ) {
        let step = self.fresh_id();
        self.steps.insert(step, Step { kind: StepKind::Deliver { message }, priority, since, domain, goal });
    }

    /// Binds a succeeded slice effect's result and continues the cycle.
    pub(crate) fn effect_done(&mut self, cx: &mut Cx, key: u64, record: &EffectRecord, value: Option<Value>) {
        let Some(id) = record.cycle else { return };
        let Some(c) = self.cycles.get_mut(&id) else { return };
        c.outstanding = c.outstanding.saturating_sub(1);
        if record.from_slice && c.waiting.remove(&key) {
            if let (Some(slot), Some(v)) = (record.bind, value) {
                if c.slots.len() <= slot.index() {
                    c.slots.resize(slot.index() + 1, None);
                }
                c.slots[slot.index()] = Some(v);
            }
            if c.waiting.is_empty() && c.step.is_none() && !c.slices_done {
                self.advance(cx, id);
                cx.continue_step = self.cycles.get(&id).and_then(|c| c.step);
                return;
            }
        }
        self.maybe_close(cx, id);
    }
}
