//! The leader's fast paths: a step that dispatches its effects in the
//! entry that runs it, and a result that runs its cycle's next slice in its
//! own entry. Both keep "committed before anything leaves the cluster" and
//! the strict order of levels.

mod common;

use common::{echo_count, Sim};
use lexum_compiler::program::Value;
use lexum_engine::{codes, EffectOutcome, Entry, FieldWrite, GoalStatus, PendingEffect, WorkerRoom};

const POOL: &str = r#"
effect Cloud.SetNodeCount(pool: string, count: int) -> int
domain Pool {
  state {
    nodes: int = 3
    target: int = 3
  }
  goal Big priority low { nodes >= target }
  transition Grow for Big {
    slice request { emit Cloud.SetNodeCount(pool: "web", count: target) -> got }
    slice record { nodes = got }
  }
}
domain Cache {
  state {
    size: int = 0
    want: int = 0
  }
  goal Fits priority normal { size == want }
  transition Resize for Fits {
    slice call { emit Cloud.SetNodeCount(pool: "cache", count: want) -> got }
    slice record { size = got }
  }
}
domain Alarm {
  state {
    raised: bool = false
    handled: bool = false
  }
  goal Quiet priority critical { !raised || handled }
  transition Handle for Quiet {
    slice ack { handled = true }
  }
}
"#;

/// The one effect in the journal.
fn only_effect(sim: &Sim) -> PendingEffect {
    let effects = sim.engine.pending().effects;
    assert_eq!(effects.len(), 1, "{effects:?}");
    effects[0].clone()
}

#[test]
fn a_step_dispatches_its_effects_in_the_entry_that_runs_it() {
    let mut sim = Sim::new(POOL);
    sim.set("Pool", "target", Value::Int(5));
    let step = sim.engine.pending().steps[0].clone();
    assert_eq!(step.emits, ["Cloud.SetNodeCount"]);
    sim.propose(Entry::RunStepAndDispatch { step: step.step, worker: "w1".into() });
    let effect = only_effect(&sim);
    assert_eq!((effect.attempt, effect.in_flight), (1, Some(sim.index)), "attempt 1, fenced by the step's entry");
    let sent = sim.engine.dispatched_at(sim.index);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.as_deref(), Some("w1"), "the worker is in the history");
    // The attempt is in flight: a `Dispatched` of it is stale.
    let again = sim.propose(Entry::Dispatched { effect: effect.key, attempt: 1, worker: "w".into() });
    assert_eq!(again.outcome.map_err(|r| r.code), Err(codes::STALE.to_string()));
    let wrong = Entry::EffectResult {
        effect: effect.key,
        fencing: sim.index,
        outcome: EffectOutcome::Succeeded { value: Some(Value::Int(5)) },
    };
    assert_eq!(sim.propose(wrong).outcome.map_err(|r| r.code), Err(codes::STALE.to_string()));
    let result = Entry::EffectResult {
        effect: effect.key,
        fencing: effect.in_flight.unwrap_or_default(),
        outcome: EffectOutcome::Succeeded { value: Some(Value::Int(5)) },
    };
    assert_eq!(sim.propose(result).outcome, Ok(()));
    assert_eq!(sim.status("Pool", "Big").0, GoalStatus::Satisfied);
}

#[test]
fn a_result_runs_the_next_slice_in_its_own_entry() {
    let mut sim = Sim::new(POOL);
    sim.set("Pool", "target", Value::Int(5));
    sim.propose(Entry::RunStepAndDispatch { step: sim.engine.pending().steps[0].step, worker: "w1".into() });
    let effect = only_effect(&sim);
    let result = sim.propose(Entry::EffectResult {
        effect: effect.key,
        fencing: effect.in_flight.unwrap_or_default(),
        outcome: EffectOutcome::Succeeded { value: Some(Value::Int(5)) },
    });
    assert_eq!(result.continued.len(), 1, "the record slice ran with the result");
    assert_eq!(sim.engine.read("Pool", "nodes"), Some(Value::Int(5)));
    assert_eq!(sim.status("Pool", "Big").0, GoalStatus::Satisfied);
    assert!(sim.engine.pending().steps.is_empty());
    // Three entries repaired the goal after the mutation; a replica that
    // replays them agrees.
    let replica = Sim::replay(sim.engine.config().clone(), &sim.log);
    assert_eq!(replica.engine.state_hash(), sim.engine.state_hash());
}

#[test]
fn a_result_waits_behind_a_step_of_a_higher_level() {
    let mut sim = Sim::new(POOL);
    sim.set("Pool", "target", Value::Int(5));
    sim.propose(Entry::RunStepAndDispatch { step: sim.engine.pending().steps[0].step, worker: "w1".into() });
    let effect = only_effect(&sim);
    sim.set("Alarm", "raised", Value::Bool(true));
    let alarm = sim.engine.pending().steps[0].clone();
    assert!(alarm.emits.is_empty(), "the ack slice emits nothing");
    let result = sim.propose(Entry::EffectResult {
        effect: effect.key,
        fencing: effect.in_flight.unwrap_or_default(),
        outcome: EffectOutcome::Succeeded { value: Some(Value::Int(5)) },
    });
    assert!(result.continued.is_empty(), "the critical step goes first");
    let steps = sim.engine.pending().steps;
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0].step, alarm.step, "critical before low");
    sim.drive(10, &mut echo_count());
    assert_eq!(sim.status("Alarm", "Quiet").0, GoalStatus::Satisfied);
    assert_eq!(sim.status("Pool", "Big").0, GoalStatus::Satisfied);
}

/// A group of client writes as the leader proposes it, with `room` for
/// the steps it arms.
fn group(writes: &[(&str, &str, Value)], room: u32) -> Entry {
    let mut entries: Vec<Entry> = writes
        .iter()
        .map(|(d, f, v)| {
            Entry::mutation(vec![FieldWrite { domain: d.to_string(), field: f.to_string(), value: v.clone() }], "test")
        })
        .collect();
    let worker = WorkerRoom { worker: "w1".into(), effects: vec!["Cloud.SetNodeCount".into()], room };
    entries.push(Entry::DispatchArmed { workers: vec![worker] });
    Entry::Batch { entries }
}

#[test]
fn a_violating_mutation_reaches_a_worker_in_its_own_entry() {
    let mut sim = Sim::new(POOL);
    let applied = sim.propose(group(&[("Pool", "target", Value::Int(5))], 4));
    assert_eq!(applied.parts.len(), 2);
    assert!(applied.parts.iter().all(Result::is_ok));
    assert!(applied.dispatched, "the leader is told it has tasks to send");
    let effect = only_effect(&sim);
    assert_eq!((effect.attempt, effect.in_flight), (1, Some(sim.index)), "dispatched by the mutation's entry");
    assert_eq!(sim.engine.dispatched_at(sim.index)[0].1.as_deref(), Some("w1"));
    assert!(sim.engine.pending().steps.is_empty());
    sim.drive(10, &mut echo_count());
    assert_eq!(sim.status("Pool", "Big").0, GoalStatus::Satisfied);
}

#[test]
fn armed_steps_are_dispatched_in_order_while_room_lasts() {
    let mut sim = Sim::new(POOL);
    // Both goals violated by one group, with room for one task: the normal
    // level goes first, the low one waits for the leader.
    sim.propose(group(&[("Pool", "target", Value::Int(5)), ("Cache", "want", Value::Int(2))], 1));
    let effect = only_effect(&sim);
    assert_eq!(effect.in_flight, Some(sim.index));
    assert_eq!(effect.args[0].1, Value::Str("cache".into()));
    assert_eq!(sim.engine.pending().steps.len(), 1, "the pool's step waits");
    // No room: nothing runs.
    let mut empty = Sim::new(POOL);
    empty.propose(group(&[("Pool", "target", Value::Int(5))], 0));
    assert!(empty.engine.pending().effects.is_empty());
    assert_eq!(empty.engine.pending().steps.len(), 1);
}

#[test]
fn armed_steps_wait_behind_a_higher_level_queued_before() {
    let mut sim = Sim::new(POOL);
    sim.set("Alarm", "raised", Value::Bool(true));
    sim.propose(group(&[("Pool", "target", Value::Int(5))], 4));
    assert!(sim.engine.pending().effects.is_empty(), "the critical step was queued first");
    assert_eq!(sim.engine.pending().steps.len(), 2);
    // A replica that replays the log agrees.
    let replica = Sim::replay(sim.engine.config().clone(), &sim.log);
    assert_eq!(replica.engine.state_hash(), sim.engine.state_hash());
}
