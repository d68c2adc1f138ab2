//! The effect journal (SPEC §3.4): dispatch with fencing tokens, results,
//! retries with exponential backoff counted in replicated state, and timers.

use lexum_compiler::program::RetryPolicy;

use crate::state::{EffectState, Timer, TimerKind};
use crate::{codes, Cx, EffectKey, EffectOutcome, EffectRef, Engine, EventKind, Rejection, TimerId};

/// Backoff before attempt `attempt + 1` after `attempt` failures:
/// initial × 2^(attempt−1), capped.
pub(crate) fn backoff_ms(policy: &RetryPolicy, attempt: u32) -> u64 {
    let shift = attempt.saturating_sub(1).min(62);
    policy.initial_backoff_ms.saturating_mul(1u64 << shift).min(policy.max_backoff_ms.max(policy.initial_backoff_ms))
}

impl Engine {
    /// Applies `Entry::Dispatched`: the entry's index becomes the fencing token.
    pub(crate) fn dispatched(
        &mut self,
        cx: &mut Cx,
        key: EffectKey,
        attempt: u32,
        worker: &str,
    ) -> Result<(), Rejection> {
        let name = self.effect_name(key);
        let (domain, goal) = self.effect_scope(key);
        let Some(record) = self.effects.get_mut(&key.0) else {
            return Err(Rejection::new(codes::STALE, format!("effect {} is not in the journal", key.0)));
        };
        if record.state != EffectState::Ready || attempt != record.attempts + 1 {
            return Err(Rejection::new(
                codes::STALE,
                format!("effect {} attempt {attempt} is not dispatchable (stale or duplicate)", key.0),
            ));
        }
        record.attempts = attempt;
        record.state = EffectState::InFlight { token: cx.index };
        let effect = record.reference(&name);
        let message =
            format!("{name} (effect {}) attempt {attempt} dispatched to {worker}, fencing token {}", key.0, cx.index);
        self.note_dispatch(cx, effect, (domain, goal), worker, message);
        Ok(())
    }

    /// Remembers the worker an attempt went to and reports the dispatch.
    pub(crate) fn note_dispatch(
        &mut self,
        cx: &mut Cx,
        effect: EffectRef,
        scope: (Option<String>, Option<String>),
        worker: &str,
        message: String,
    ) {
        self.remember_worker(&effect.idempotency_key, worker);
        let (domain, goal) = scope;
        cx.event(EventKind::EffectDispatched, domain, goal, None, message).effect = Some(effect);
    }

    /// Domain and goal of the cycle an effect belongs to, for events.
    fn effect_scope(&self, key: EffectKey) -> (Option<String>, Option<String>) {
        self.cycle_names(self.effects.get(&key.0).and_then(|e| e.cycle))
    }

    fn effect_name(&self, key: EffectKey) -> String {
        let effect = self.effects.get(&key.0).map(|e| e.effect);
        self.program
            .as_ref()
            .zip(effect)
            .and_then(|(p, e)| p.effects.get(e.index()))
            .map(|e| e.full_name())
            .unwrap_or_default()
    }

    /// Whether `fencing` is the current dispatch of `key` (E013 otherwise).
    pub(crate) fn check_fencing(&self, key: EffectKey, fencing: u64) -> Result<(), Rejection> {
        let Some(record) = self.effects.get(&key.0) else {
            return Err(Rejection::new(codes::STALE, format!("effect {} is not in the journal", key.0)));
        };
        if record.state != (EffectState::InFlight { token: fencing }) {
            return Err(Rejection::new(
                codes::STALE,
                format!("stale fencing token {fencing}: not the current dispatch of effect {}", key.0),
            ));
        }
        Ok(())
    }

    /// Applies `Entry::EffectResult`: a result whose fencing token is not the
    /// current dispatch is rejected and changes nothing.
    pub(crate) fn effect_result(
        &mut self,
        cx: &mut Cx,
        key: EffectKey,
        fencing: u64,
        outcome: &EffectOutcome,
    ) -> Result<(), Rejection> {
        let name = self.effect_name(key);
        let (domain, goal) = self.effect_scope(key);
        let program = self.program.clone();
        self.check_fencing(key, fencing)?;
        let Some(record) = self.effects.get(&key.0) else {
            return Err(Rejection::new(codes::STALE, format!("effect {} is not in the journal", key.0)));
        };
        let returns =
            program.as_ref().and_then(|p| p.effects.get(record.effect.index())).and_then(|e| e.returns.clone());
        let error = match outcome {
            EffectOutcome::Succeeded { value } => match (value, &returns) {
                (None, None) => None,
                (Some(v), Some(ty)) if v.has_type(ty) => None,
                (Some(_), None) => None,
                (v, ty) => Some(format!(
                    "result {} does not have the declared type {}",
                    v.as_ref().map_or("nothing".to_string(), |v| v.to_string()),
                    ty.as_ref().map_or("none".to_string(), |t| t.to_string())
                )),
            },
            EffectOutcome::Failed { error } => Some(error.clone()),
        };
        match error {
            None => {
                let Some(record) = self.effects.remove(&key.0) else { return Ok(()) };
                let value = match outcome {
                    EffectOutcome::Succeeded { value } if returns.is_some() => value.clone(),
                    _ => None,
                };
                let effect = record.reference(&name);
                cx.event(
                    EventKind::EffectSucceeded,
                    domain,
                    goal,
                    None,
                    format!("{name} (effect {}) succeeded", key.0),
                )
                .effect = Some(effect);
                self.effect_done(cx, key.0, &record, value);
            }
            Some(error) => self.effect_failed(cx, key.0, error, &name, (domain, goal)),
        }
        Ok(())
    }

    fn effect_failed(
        &mut self,
        cx: &mut Cx,
        key: u64,
        error: String,
        name: &str,
        scope: (Option<String>, Option<String>),
    ) {
        let (domain, goal) = scope;
        let Some(record) = self.effects.get_mut(&key) else { return };
        record.last_error = Some(error.clone());
        let effect = record.reference(name);
        if record.attempts >= record.retry.max_attempts {
            let cycle = record.cycle;
            let attempts = record.attempts;
            self.effects.remove(&key);
            cx.event(
                EventKind::EffectFailed,
                domain,
                goal,
                Some(codes::RETRIES_EXHAUSTED),
                format!("{name} (effect {key}) failed after {attempts} attempts: {error}"),
            )
            .effect = Some(effect);
            if let Some(id) = cycle {
                self.fail_cycle(
                    cx,
                    id,
                    codes::RETRIES_EXHAUSTED,
                    format!("{name} failed after {attempts} attempts; last error: {error}"),
                );
            }
            return;
        }
        let delay_ms = backoff_ms(&record.retry, record.attempts);
        let attempt = record.attempts;
        let timer = self.fresh_id();
        if let Some(record) = self.effects.get_mut(&key) {
            record.state = EffectState::Backoff { timer };
        }
        self.timers.insert(timer, Timer { kind: TimerKind::EffectRetry { effect: key }, delay_ms });
        cx.event(
            EventKind::EffectFailed,
            domain,
            goal,
            None,
            format!("{name} (effect {key}) attempt {attempt} failed: {error}; retry in {delay_ms} ms"),
        )
        .effect = Some(effect);
    }

    /// Applies `Entry::TimerFired`; unknown timers are no-ops.
    pub(crate) fn timer_fired(&mut self, cx: &mut Cx, timer: TimerId) {
        let Some(t) = self.timers.remove(&timer.0) else {
            cx.event(EventKind::Stale, None, None, None, format!("timer {} is not armed", timer.0));
            return;
        };
        match t.kind {
            TimerKind::EffectRetry { effect } => {
                if let Some(record) = self.effects.get_mut(&effect) {
                    if record.state == (EffectState::Backoff { timer: timer.0 }) {
                        record.state = EffectState::Ready;
                    }
                }
            }
            TimerKind::Damping { goal } => self.damping_decayed(cx, timer.0, goal),
            TimerKind::DominanceExpiry { higher, lower } => self.dominance_expired(cx, timer.0, higher, lower),
            TimerKind::CycleBackoff { goal } => {
                if let Some(gs) = self.goal_states.get_mut(goal.index()) {
                    if gs.backoff == Some(timer.0) {
                        gs.backoff = None;
                    }
                }
                if let Some(d) = self.program.as_ref().and_then(|p| p.goals.get(goal.index())).map(|g| g.domain) {
                    cx.dirty_domains.insert(d);
                }
                cx.status_dirty.insert(goal);
            }
        }
        cx.event(EventKind::Timer, None, None, None, format!("timer {} fired", timer.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::default();
        let delays: Vec<u64> = (1..=8).map(|a| backoff_ms(&p, a)).collect();
        assert_eq!(delays, vec![500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    }
}
