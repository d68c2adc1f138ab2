//! Test support: compile `.lxm` source, drive an engine with a simulated
//! leader and workers, and keep the log for replays.

#![allow(dead_code)]

use lexum_compiler::program::Value;
use lexum_compiler::{compile, render, CompileOptions};
use lexum_engine::{
    Applied, EffectOutcome, Engine, EngineConfig, Entry, FieldWrite, GoalReport, GoalStatus, PendingEffect,
};

/// Compiles source into program bytes, panicking with rendered diagnostics.
pub fn program_bytes(source: &str) -> Vec<u8> {
    let c = compile("test.lxm", source, &CompileOptions::default());
    match c.program {
        Some(p) => p.encode(),
        None => panic!("program does not compile:\n{}", render(&c.diagnostics, "test.lxm", source, false)),
    }
}

/// A simulated worker: answers one dispatched effect.
pub type Worker = Box<dyn FnMut(&PendingEffect) -> EffectOutcome>;

/// A worker that succeeds and returns the `count` argument (or nothing).
pub fn echo_count() -> Worker {
    Box::new(|e: &PendingEffect| EffectOutcome::Succeeded {
        value: e.args.iter().find(|(n, _)| n == "count").map(|(_, v)| v.clone()),
    })
}

/// A worker that always returns `value`.
pub fn constant(value: i64) -> Worker {
    Box::new(move |_| EffectOutcome::Succeeded { value: Some(Value::Int(value)) })
}

/// One engine plus the log it applied.
pub struct Sim {
    pub engine: Engine,
    pub log: Vec<(u64, Entry)>,
    pub index: u64,
}

impl Sim {
    /// A fresh engine with `source` installed.
    pub fn new(source: &str) -> Sim {
        Sim::with_config(source, EngineConfig::default())
    }

    /// A fresh engine with a configuration and `source` installed.
    pub fn with_config(source: &str, config: EngineConfig) -> Sim {
        let mut sim = Sim { engine: Engine::new(config), log: Vec::new(), index: 0 };
        let applied = sim.propose(Entry::SubmitProgram { bytes: program_bytes(source) });
        assert_eq!(applied.outcome, Ok(()));
        sim
    }

    /// Replays `log` into a fresh engine (a new replica).
    pub fn replay(config: EngineConfig, log: &[(u64, Entry)]) -> Sim {
        let mut engine = Engine::new(config);
        for (index, entry) in log {
            engine.apply(*index, entry);
        }
        Sim { engine, log: log.to_vec(), index: log.last().map_or(0, |(i, _)| *i) }
    }

    /// Commits one entry at the next index.
    pub fn propose(&mut self, entry: Entry) -> Applied {
        self.index += 1;
        self.log.push((self.index, entry.clone()));
        self.engine.apply(self.index, &entry)
    }

    /// A client observation write.
    pub fn set(&mut self, domain: &str, field: &str, value: Value) -> Applied {
        self.set_as(domain, field, value, "test", &[])
    }

    /// A client write by `principal` that observed the effects `caused_by`.
    pub fn set_as(&mut self, domain: &str, field: &str, value: Value, principal: &str, caused_by: &[&str]) -> Applied {
        let writes = vec![FieldWrite { domain: domain.into(), field: field.into(), value }];
        let caused_by = caused_by.iter().map(|k| k.to_string()).collect();
        self.propose(Entry::Mutate { writes, principal: principal.into(), caused_by })
    }

    /// Acts as the leader until nothing is pending or `max` entries were
    /// proposed: steps first, then dispatches, then results, then timers
    /// (time passes instantly). Returns the number of entries proposed.
    pub fn drive(&mut self, max: usize, worker: &mut Worker) -> usize {
        (0..max).find(|_| !self.step(worker, true)).unwrap_or(max)
    }

    /// Like [`Sim::drive`], but no timer fires (no time passes).
    pub fn drive_without_timers(&mut self, max: usize, worker: &mut Worker) -> usize {
        (0..max).find(|_| !self.step(worker, false)).unwrap_or(max)
    }

    /// Proposes the one entry the leader would propose next (timers only
    /// when `timers`); false when there is nothing to do.
    pub fn step(&mut self, worker: &mut Worker, timers: bool) -> bool {
        let pending = self.engine.pending();
        let entry = if let Some(step) = pending.steps.first() {
            Entry::RunStep { step: step.step }
        } else if let Some(e) = pending.effects.iter().find(|e| e.in_flight.is_none()) {
            Entry::Dispatched { effect: e.key, attempt: e.attempt, worker: "w1".into() }
        } else if let Some(e) = pending.effects.first() {
            let fencing = e.in_flight.unwrap_or_default();
            Entry::EffectResult { effect: e.key, fencing, outcome: worker(e) }
        } else if let Some(t) = pending.timers.first().filter(|_| timers) {
            Entry::TimerFired { timer: t.timer }
        } else {
            return false;
        };
        self.propose(entry);
        true
    }

    /// The report of one goal.
    pub fn goal(&self, domain: &str, goal: &str) -> GoalReport {
        self.engine.goal(domain, goal).unwrap_or_else(|| panic!("no goal {domain}.{goal}"))
    }

    /// `(status, code)` of one goal.
    pub fn status(&self, domain: &str, goal: &str) -> (GoalStatus, Option<String>) {
        let r = self.goal(domain, goal);
        (r.status, r.code)
    }

    /// Whether any event so far carried E005 (checked on the replayed log).
    pub fn e005_count(&self) -> usize {
        let mut engine = Engine::new(self.engine.config().clone());
        let mut n = 0;
        for (i, e) in &self.log {
            n += engine.apply(*i, e).events.iter().filter(|ev| ev.kind == lexum_engine::EventKind::Trap).count();
        }
        n
    }
}
