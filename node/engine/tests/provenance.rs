//! Verdicts that rest on causes (SPEC §3.7, issue 11): one scenario per
//! way the value-only detector went wrong, each driven entry by entry.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::{echo_count, Sim, Worker};
use lexum_compiler::program::Value;
use lexum_engine::{Cause, EffectOutcome, Entry, GoalStatus, PendingEffect, Waiting};

/// Two controllers that fight through the world: each emits an effect, and
/// an observer writes the replicas it sees back. Both goals hold at 5..6.
const WORLD_FIGHT: &str = r#"
effect Cloud.Scale(count: int)
domain World {
  state {
    replicas: int = 3
  }
}
domain Autoscaler {
  reads World
  goal Enough { World.replicas >= 5 }
  transition Up for Enough {
    slice go { emit Cloud.Scale(count: 8) }
  }
}
domain GitOps {
  reads World
  goal Pinned { World.replicas <= 6 }
  transition Sync for Pinned {
    slice go { emit Cloud.Scale(count: 3) }
  }
}
"#;

fn int(value: &Value) -> i64 {
    match value {
        Value::Int(i) => *i,
        _ => 0,
    }
}

/// A worker that records each effect's idempotency key and `count`.
fn recording_worker(seen: Rc<RefCell<Vec<(String, i64)>>>) -> Worker {
    Box::new(move |e: &PendingEffect| {
        let count = e.args.iter().find(|(n, _)| n == "count").map(|(_, v)| int(v)).unwrap_or_default();
        seen.borrow_mut().push((e.idempotency_key.clone(), count));
        EffectOutcome::Succeeded { value: None }
    })
}

/// Drives the engine; after every effect the observer writes what the
/// world now shows (`World.replicas = count`), naming the effect it saw
/// when `attributed`. Returns the number of observer writes.
fn fight_through_the_world(sim: &mut Sim, attributed: bool, rounds: usize) -> usize {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let mut worker = recording_worker(seen.clone());
    let mut observed = 0;
    for _ in 0..rounds * 20 {
        let progressed = sim.step(&mut worker, true);
        let news: Vec<(String, i64)> = seen.borrow_mut().drain(..).collect();
        for (key, count) in news {
            let caused_by: Vec<&str> = if attributed { vec![key.as_str()] } else { vec![] };
            sim.set_as("World", "replicas", Value::Int(count), "token/observer", &caused_by);
            observed += 1;
        }
        if !progressed || observed >= rounds {
            break;
        }
    }
    observed
}

#[test]
fn point1_a_fight_through_the_world_is_trapped_within_ten_rounds() {
    let mut sim = Sim::new(WORLD_FIGHT);
    let observed = fight_through_the_world(&mut sim, true, 200);
    assert!(observed <= 10, "trapped within 10 rounds, took {observed} observer writes");
    assert_eq!(sim.status("Autoscaler", "Enough"), (GoalStatus::Trapped, Some("E005".into())));
    assert_eq!(sim.status("GitOps", "Pinned"), (GoalStatus::Trapped, Some("E005".into())));
    let evidence = sim.goal("GitOps", "Pinned").evidence.unwrap_or_default();
    for needle in ["Autoscaler.Enough", "GitOps.Pinned", "World.replicas", "identical state"] {
        assert!(evidence.contains(needle), "{needle} missing from {evidence}");
    }
    assert_eq!(sim.e005_count(), 2, "both goals, each trapped once");
    // The vector credits the observed changes to the goals whose effects caused them.
    let explanation = sim.engine.explain("GitOps", "Pinned").expect("explain");
    let writers: Vec<&str> = explanation.vector.iter().map(|v| v.writer.as_str()).collect();
    assert!(writers.contains(&"Autoscaler.Enough") && writers.contains(&"GitOps.Pinned"), "{writers:?}");
    assert!(explanation.vector.iter().all(|v| v.field == "World.replicas"));
}

#[test]
fn point1_the_same_fight_without_caused_by_is_outside_input_never_a_trap() {
    let mut sim = Sim::new(WORLD_FIGHT);
    fight_through_the_world(&mut sim, false, 40);
    assert_eq!(sim.e005_count(), 0, "unattributed writes never trap");
    let writes = sim.engine.why("World", "replicas", 1).expect("known field");
    match &writes[0].cause {
        Cause::Client { principal, observed, .. } => {
            assert_eq!(principal, "token/observer");
            assert!(observed.is_empty(), "no effect named, none attributed");
        }
        other => panic!("unexpected cause {other:?}"),
    }
    let explanation = sim.engine.explain("GitOps", "Pinned").expect("explain");
    assert!(explanation.vector.is_empty(), "outside writes never enter the vector");
}

/// Two compatible goals (both hold at 21) and transitions of two slices.
const COMPATIBLE: &str = r#"
domain Room {
  state {
    temp: int = 21
  }
  on Set(t: int) { temp = t }
}
domain Heater {
  reads Room
  state {
    runs: int = 0
  }
  goal Warm { Room.temp >= 20 }
  transition Heat for Warm {
    slice set { send Room.Set(t: 21) }
    slice count { runs += 1 }
  }
}
domain Cooler {
  reads Room
  state {
    runs: int = 0
  }
  goal Cool { Room.temp <= 22 }
  transition Chill for Cool {
    slice set { send Room.Set(t: 21) }
    slice count { runs += 1 }
  }
}
"#;

/// Steps until `Room.temp` is 21 again (a handler delivered), at most `max` entries.
fn step_until_repaired(sim: &mut Sim, worker: &mut Worker, max: usize) {
    for _ in 0..max {
        if sim.engine.read("Room", "temp") == Some(Value::Int(21)) {
            return;
        }
        if !sim.step(worker, false) {
            return;
        }
    }
}

#[test]
fn point2_outside_writes_in_the_middle_of_cycles_never_make_a_tug_of_war() {
    let mut sim = Sim::new(COMPATIBLE);
    let mut worker = echo_count();
    for round in 0..12 {
        // Too cold: the heater repairs; before its second slice, an outside
        // write makes the room too hot (and the reverse next round).
        let (first, second) = if round % 2 == 0 { (10, 30) } else { (30, 10) };
        sim.set_as("Room", "temp", Value::Int(first), "token/thermostat", &[]);
        step_until_repaired(&mut sim, &mut worker, 50);
        sim.set_as("Room", "temp", Value::Int(second), "token/thermostat", &[]);
        sim.drive(200, &mut worker);
    }
    assert_eq!(sim.e005_count(), 0, "no trap from outside writes");
    for (domain, goal) in [("Heater", "Warm"), ("Cooler", "Cool")] {
        assert_ne!(sim.status(domain, goal).0, GoalStatus::Trapped);
        let explanation = sim.engine.explain(domain, goal).expect("explain");
        assert!(explanation.vector.iter().all(|v| v.delta.abs() <= 11), "outside changes never enter the vector");
        assert!(explanation.dominated_by.is_empty());
    }
    sim.drive(500, &mut worker);
    assert_eq!(sim.status("Heater", "Warm").0, GoalStatus::Satisfied);
    assert_eq!(sim.status("Cooler", "Cool").0, GoalStatus::Satisfied);
}

/// Heater (high) and Cooler (normal) that overshoot into each other.
const DOMINANCE: &str = r#"
domain Room {
  state {
    temp: int = 18
  }
  on Set(t: int) { temp = t }
}
domain Heater priority high {
  reads Room
  goal Warm { Room.temp >= 20 }
  transition Heat for Warm {
    slice go { send Room.Set(t: 25) }
  }
}
domain Cooler {
  reads Room
  goal Cool { Room.temp <= 22 }
  transition Chill for Cool retry 3 backoff 100ms..400ms {
    slice go { send Room.Set(t: 15) }
  }
}
"#;

#[test]
fn point3_dominance_is_never_learnt_from_an_outside_write() {
    // Compatible goals (the cooler sets 21, which the heater accepts).
    let mut sim = Sim::new(DOMINANCE.replace("t: 25", "t: 21").replace("t: 15", "t: 21").as_str());
    let mut worker = echo_count();
    sim.drive_without_timers(100, &mut worker);
    // The cooler is repairing when an outside write makes the heater's goal fail.
    sim.set_as("Room", "temp", Value::Int(30), "token/ops", &[]);
    sim.propose(Entry::RunStep { step: sim.engine.pending().steps[0].step });
    sim.set_as("Room", "temp", Value::Int(10), "token/ops", &[]);
    sim.drive_without_timers(200, &mut worker);
    assert_ne!(sim.status("Cooler", "Cool").0, GoalStatus::Dominated);
    assert!(sim.engine.explain("Cooler", "Cool").expect("explain").dominated_by.is_empty());
    assert_eq!(sim.status("Heater", "Warm").0, GoalStatus::Satisfied);
    assert_eq!(sim.status("Cooler", "Cool").0, GoalStatus::Satisfied);
}

#[test]
fn point3_learnt_dominance_is_cleared_by_release_and_retry_and_expires() {
    let mut sim = Sim::new(DOMINANCE);
    let mut worker = echo_count();
    sim.drive_without_timers(200, &mut worker);
    assert_eq!(sim.status("Cooler", "Cool").0, GoalStatus::Dominated, "the cooler's cycle undid the heater");
    // release clears it: the cooler repairs again (and is dominated again).
    sim.propose(Entry::Release { domain: "Cooler".into(), goal: Some("Cool".into()) });
    assert_ne!(sim.status("Cooler", "Cool").0, GoalStatus::Dominated);
    sim.drive_without_timers(200, &mut worker);
    assert_eq!(sim.status("Cooler", "Cool").0, GoalStatus::Dominated);
    // retry clears it too.
    sim.propose(Entry::Retry { domain: "Cooler".into(), goal: "Cool".into() });
    assert_ne!(sim.status("Cooler", "Cool").0, GoalStatus::Dominated);
    sim.drive_without_timers(200, &mut worker);
    assert_eq!(sim.status("Cooler", "Cool").0, GoalStatus::Dominated);
    // It expires: the timer fires and the lower goal re-arms.
    let timer = sim.engine.pending().timers.first().map(|t| t.timer).expect("an expiry timer");
    sim.propose(Entry::TimerFired { timer });
    assert_ne!(sim.status("Cooler", "Cool").0, GoalStatus::Dominated, "expired");
    // A dominance confirmed again and again becomes lasting: the run settles.
    let used = sim.drive(5_000, &mut worker);
    assert!(used < 5_000, "settles");
    assert_eq!(sim.status("Cooler", "Cool").0, GoalStatus::Dominated);
    assert_eq!(sim.status("Heater", "Warm").0, GoalStatus::Satisfied);
    assert_eq!(sim.e005_count(), 0);
}

#[test]
fn point4_a_long_orbit_traps_at_the_non_convergence_bound() {
    let source = r#"
effect Cloud.Probe(count: int) -> int
domain Pool {
  state {
    nodes: int = 0
  }
  goal Big { nodes >= 1000 }
  transition Grow for Big {
    slice ask { emit Cloud.Probe(count: nodes) -> got }
    slice keep { nodes = got }
  }
}
"#;
    let mut sim = Sim::new(source);
    // The result orbits through 41 values: more than the inputs memory holds.
    let mut worker: Worker = Box::new(|e: &PendingEffect| {
        let n = int(&e.args[0].1);
        EffectOutcome::Succeeded { value: Some(Value::Int((n + 1) % 41)) }
    });
    let used = sim.drive(20_000, &mut worker);
    assert!(used < 20_000, "settles");
    assert_eq!(sim.status("Pool", "Big"), (GoalStatus::Trapped, Some("E005".into())));
    assert_eq!(sim.goal("Pool", "Big").cycles, 100, "the default bound");
    assert!(sim.goal("Pool", "Big").evidence.unwrap_or_default().contains("has not held for 100 cycles"));
}

#[test]
fn point4_a_moving_goalpost_traps_at_the_non_convergence_bound() {
    let source = r#"
domain Pool {
  state {
    nodes: int = 0
    target: int = 5
  }
  goal Big { nodes >= target }
  transition Chase for Big {
    slice go {
      nodes = target
      target = target + 1
    }
  }
}
"#;
    let mut sim = Sim::new(source);
    let used = sim.drive(20_000, &mut echo_count());
    assert!(used < 20_000, "settles");
    assert_eq!(sim.status("Pool", "Big"), (GoalStatus::Trapped, Some("E005".into())));
    assert_eq!(sim.goal("Pool", "Big").cycles, 100);
}

#[test]
fn point5_preemption_suspends_and_resumes_with_the_same_idempotency_keys() {
    let source = r#"
effect Cloud.Work(count: int) -> int
domain Box {
  state {
    low_done: int = 0
    high_done: int = 0
    urgent: bool = false
  }
  goal Background priority low { low_done >= 1 }
  goal Urgent priority critical { !urgent || high_done >= 1 }
  transition Slow for Background {
    slice one { emit Cloud.Work(count: 1) -> a }
    slice two { emit Cloud.Work(count: 2) -> b }
    slice three { low_done = a + b }
  }
  transition Fast for Urgent {
    slice one { high_done = 1 }
  }
}
"#;
    let mut sim = Sim::new(source);
    let keys = Rc::new(RefCell::new(Vec::new()));
    let seen = keys.clone();
    let mut worker: Worker = Box::new(move |e: &PendingEffect| {
        seen.borrow_mut().push(e.idempotency_key.clone());
        EffectOutcome::Succeeded { value: e.args.first().map(|(_, v)| v.clone()) }
    });
    // Slice one runs and its effect completes; then the urgent goal breaks.
    for _ in 0..3 {
        sim.step(&mut worker, false);
    }
    assert_eq!(keys.borrow().len(), 1);
    sim.set("Box", "urgent", Value::Bool(true));
    sim.drive(1_000, &mut worker);
    assert_eq!(sim.status("Box", "Urgent").0, GoalStatus::Satisfied);
    assert_eq!(sim.status("Box", "Background").0, GoalStatus::Satisfied);
    assert_eq!(sim.engine.read("Box", "low_done"), Some(Value::Int(3)), "slice two and three after resuming");
    let keys = keys.borrow();
    assert_eq!(keys.len(), 2, "the completed effect is never issued again: {keys:?}");
    assert_ne!(keys[0], keys[1]);
    assert!(keys[0].contains("-Slow-") && keys[1].contains("-Slow-"));
    let cycle_of = |key: &str| key.split('-').nth(3).map(str::to_string);
    assert_eq!(cycle_of(&keys[0]), cycle_of(&keys[1]), "one cycle, resumed: {keys:?}");
    let verdicts: Vec<String> =
        sim.engine.history(10).iter().map(|c| format!("{}:{}", c.transition, c.verdict)).collect();
    assert_eq!(verdicts, ["Fast:converged", "Slow:converged"]);
}

#[test]
fn point5_ending_a_cycle_keeps_effects_that_another_domain_committed() {
    let source = r#"
effect Cloud.CreateVm(name: string)
domain Agent {
  on Provision(name: string) { emit Cloud.CreateVm(name: name) }
}
domain Zeta {
  state {
    done: int = 0
    zero: int = 0
  }
  goal Done { done >= 1 }
  transition Build for Done retry 1 backoff 100ms..100ms {
    slice ask { send Agent.Provision(name: "vm-1") }
    slice finish { done = 1 / zero }
  }
}
"#;
    let mut sim = Sim::new(source);
    // Run the slice and deliver the message (only steps, no dispatch yet).
    for _ in 0..4 {
        let pending = sim.engine.pending();
        let Some(step) = pending.steps.first() else { break };
        sim.propose(Entry::RunStep { step: step.step });
    }
    assert_eq!(sim.status("Zeta", "Done"), (GoalStatus::Failed, Some("E012".into())), "the cycle failed");
    let effects = sim.engine.pending().effects;
    assert_eq!(effects.len(), 1, "the committed CreateVm still runs");
    assert_eq!(effects[0].effect, "Cloud.CreateVm");
}

#[test]
fn point6_a_handler_write_that_breaks_an_invariant_fails_the_goal_with_e011() {
    let source = r#"
domain Room {
  state {
    temp: int = 18
  }
  invariant Safe { temp <= 100 }
  on Set(t: int) { temp = t }
}
domain Heater {
  reads Room
  goal Warm { Room.temp >= 20 }
  transition Heat for Warm {
    slice go { send Room.Set(t: 500) }
  }
}
"#;
    let mut sim = Sim::new(source);
    sim.drive(1_000, &mut echo_count());
    let report = sim.goal("Heater", "Warm");
    assert_eq!((report.status, report.code.as_deref()), (GoalStatus::Failed, Some("E011")));
    assert!(report.evidence.unwrap_or_default().contains("Room.Safe"));
    assert_eq!(sim.e005_count(), 0);
}

#[test]
fn an_operator_changing_a_target_is_not_contention() {
    let source = r#"
domain Pool {
  state {
    nodes: int = 0
    want: int = 3
  }
  goal Sized { nodes == want }
  transition Resize for Sized {
    slice go { nodes = want }
  }
}
"#;
    let mut sim = Sim::new(source);
    let mut worker = echo_count();
    for want in 4..12 {
        sim.set_as("Pool", "want", Value::Int(want), "token/operator", &[]);
        sim.drive_without_timers(50, &mut worker);
        assert_eq!(sim.status("Pool", "Sized"), (GoalStatus::Satisfied, None), "want={want}");
    }
    assert!(sim.engine.explain("Pool", "Sized").expect("explain").contention.is_empty());
}

/// A goal whose input an outside controller keeps resetting.
const CONTESTED: &str = r#"
domain Pool {
  state {
    replicas: int = 5
  }
  goal Enough { replicas >= 5 }
  transition Up for Enough {
    slice go { replicas = 5 }
  }
}
"#;

#[test]
fn an_outside_writer_that_keeps_undoing_a_goal_makes_it_contested_and_damped() {
    let mut sim = Sim::new(CONTESTED);
    let mut worker = echo_count();
    for _ in 0..3 {
        sim.set_as("Pool", "replicas", Value::Int(3), "token/gitops", &[]);
        sim.drive_without_timers(50, &mut worker);
    }
    let report = sim.goal("Pool", "Enough");
    assert_eq!((report.status, report.code.as_deref()), (GoalStatus::Contested, Some("E016")));
    let evidence = report.evidence.unwrap_or_default();
    for needle in ["token/gitops", "Pool.replicas", "3 times"] {
        assert!(evidence.contains(needle), "{needle} missing from {evidence}");
    }
    assert!(sim.engine.pending().steps.is_empty(), "repairs are suspended, not fought at full speed");
    let explanation = sim.engine.explain("Pool", "Enough").expect("explain");
    assert_eq!(explanation.waiting, Waiting::Damping { principal: "token/gitops".into() });
    assert_eq!(explanation.contention[0].undos, 3);
    // The writer stops: the penalty halves per half-life and the goal re-arms by itself.
    let used = sim.drive(200, &mut worker);
    assert!(used < 200);
    assert_eq!(sim.status("Pool", "Enough"), (GoalStatus::Satisfied, None));
    assert_eq!(sim.e005_count(), 0);
}

#[test]
fn why_lists_writes_with_their_cause_chains() {
    let mut sim = Sim::new(WORLD_FIGHT);
    fight_through_the_world(&mut sim, true, 2);
    let writes = sim.engine.why("World", "replicas", 10).expect("known field");
    assert_eq!(writes.len(), 2);
    assert_eq!((writes[0].old.clone(), writes[0].new.clone()), (Value::Int(3), Value::Int(8)));
    match &writes[0].cause {
        Cause::Client { principal, observed, .. } => {
            assert_eq!(principal, "token/observer");
            assert_eq!(observed.len(), 1);
            assert_eq!(observed[0].cycle.goal, "Autoscaler.Enough");
            assert_eq!(observed[0].effect, "Cloud.Scale");
            assert_eq!(observed[0].worker.as_deref(), Some("w1"));
        }
        other => panic!("unexpected cause {other:?}"),
    }
    assert!(sim.engine.why("World", "nope", 10).is_none());
}

#[test]
fn write_histories_are_bounded_and_follow_a_field_into_a_new_version() {
    let mut sim = Sim::new(CONTESTED);
    for n in 0..20 {
        sim.set_as("Pool", "replicas", Value::Int(100 + n), "token/ops", &[]);
    }
    let writes = sim.engine.why("Pool", "replicas", 100).expect("known field");
    assert_eq!(writes.len(), 16, "the default bound");
    assert_eq!(writes.last().map(|w| w.new.clone()), Some(Value::Int(119)));
    // A new version that keeps the field keeps its history; one that drops it does not.
    let kept = CONTESTED.replace("goal Enough", "state { extra: int = 0 }\n  goal Enough");
    sim.propose(Entry::SubmitProgram { bytes: common::program_bytes(&kept) });
    assert_eq!(sim.engine.why("Pool", "replicas", 100).map(|w| w.len()), Some(16));
    let renamed = CONTESTED.replace("replicas", "count");
    sim.propose(Entry::SubmitProgram { bytes: common::program_bytes(&renamed) });
    assert_eq!(sim.engine.why("Pool", "count", 100).map(|w| w.len()), Some(0));
    assert!(sim.engine.why("Pool", "replicas", 100).is_none());
}
