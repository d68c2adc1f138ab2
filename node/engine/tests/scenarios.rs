//! Scenario tests: the engine driven entry by entry by a simulated leader
//! and simulated workers (see `common::Sim::drive`).

mod common;

use common::{constant, echo_count, program_bytes, Sim, Worker};
use lexum_compiler::program::Value;
use lexum_engine::{CycleVerdict, EffectOutcome, Engine, EngineConfig, Entry, EventKind, FieldWrite, GoalStatus};

/// Two equal-priority controllers fighting over `Room.temp`.
/// `{HEATER}` is replaced by the heater's header (e.g. with `priority high`)
/// and `{DRIFT}` by extra statements of the heater's slice.
const TUG: &str = r#"
domain Room {
  state {
    temp: int = 18
  }
  on Set(t: int) { temp = t }
}
domain Heater {HEATER}{
  reads Room
  state {
    pushes: int = 0
  }
  goal Warm { Room.temp >= 20 }
  transition Heat for Warm {
    slice go { {DRIFT} send Room.Set(t: 25 + pushes) }
  }
}
domain Cooler {
  reads Room
  goal Cool { Room.temp <= 22 }
  transition Chill for Cool {
    slice go { send Room.Set(t: 15) }
  }
}
"#;

fn tug(heater: &str, drift: &str) -> String {
    TUG.replace("{HEATER}", heater).replace("{DRIFT}", drift)
}

/// A pool resized through a cloud effect whose result is recorded.
const POOL: &str = r#"
effect Cloud.SetNodeCount(pool: string, count: int) -> int
domain Pool {
  state {
    nodes: int = 3
    target: int = 10
  }
  invariant Bounded { nodes >= 0 && nodes <= 100 }
  goal Big { nodes >= target }
  transition Grow for Big retry 3 backoff 100ms..1s {
    slice request { emit Cloud.SetNodeCount(pool: "web", count: nodes + 1) -> got }
    slice record { nodes = got }
  }
}
"#;

fn run(source: &str, worker: &mut Worker) -> Sim {
    let mut sim = Sim::new(source);
    let used = sim.drive(5_000, worker);
    assert!(used < 5_000, "the run did not settle");
    sim
}

#[test]
fn tug_of_war_with_a_closed_loop_traps_both_goals_at_the_first_recurrence() {
    let sim = run(&tug("", ""), &mut echo_count());
    assert_eq!(sim.status("Heater", "Warm"), (GoalStatus::Trapped, Some("E005".into())));
    assert_eq!(sim.status("Cooler", "Cool"), (GoalStatus::Trapped, Some("E005".into())));
    let verdicts: Vec<CycleVerdict> = sim.engine.history(10).into_iter().map(|c| c.verdict).collect();
    assert_eq!(
        verdicts,
        [CycleVerdict::TugOfWar, CycleVerdict::TugOfWar, CycleVerdict::Trapped],
        "25 → 15 → 25 recurs at the third cycle's write"
    );
    let evidence = sim.goal("Heater", "Warm").evidence.unwrap_or_default();
    for needle in ["Heater.Warm", "Cooler.Cool", "Room.temp", "identical state"] {
        assert!(evidence.contains(needle), "{needle} missing from {evidence}");
    }
    assert_eq!(
        sim.engine.history(100).iter().filter(|c| c.verdict == CycleVerdict::Trapped).count(),
        1,
        "verdict recorded once"
    );
}

#[test]
fn tug_of_war_with_drift_traps_by_the_tenth_cycle() {
    let sim = run(&tug("", "pushes += 1"), &mut echo_count());
    assert_eq!(sim.status("Heater", "Warm").0, GoalStatus::Trapped);
    assert_eq!(sim.status("Cooler", "Cool").0, GoalStatus::Trapped);
    let history = sim.engine.history(100);
    assert_eq!(history.len(), 10, "trapped at the tenth cycle's write");
    assert_eq!(history.last().map(|c| c.verdict), Some(CycleVerdict::Trapped));
    let evidence = sim.goal("Cooler", "Cool").evidence.unwrap_or_default();
    assert!(evidence.contains("10 cycles undid each other"), "{evidence}");
    assert!(evidence.contains("Heater.Warm +"), "vector in {evidence}");
}

#[test]
fn unequal_priorities_end_in_dominance_not_a_trap() {
    let sim = run(&tug("priority high ", ""), &mut echo_count());
    assert_eq!(sim.status("Heater", "Warm"), (GoalStatus::Satisfied, None));
    assert_eq!(sim.status("Cooler", "Cool").0, GoalStatus::Dominated);
    assert_eq!(sim.e005_count(), 0);
    assert!(sim.goal("Cooler", "Cool").evidence.unwrap_or_default().contains("Heater.Warm"));
    assert!(sim.engine.pending().steps.is_empty(), "the dominated transition is suppressed");
}

#[test]
fn a_transition_that_cannot_reach_its_goal_is_trapped_at_the_first_cycle() {
    let source = r#"
domain Pool {
  state {
    nodes: int = 3
    pokes: int = 0
  }
  goal Big { nodes >= 10 }
  transition Poke for Big {
    slice s { pokes += 1 }
  }
}
"#;
    let sim = run(source, &mut echo_count());
    assert_eq!(sim.status("Pool", "Big"), (GoalStatus::Trapped, Some("E005".into())));
    assert_eq!(sim.goal("Pool", "Big").cycles, 1);
}

#[test]
fn a_transition_that_never_moves_its_input_is_trapped_at_the_tenth_cycle() {
    let sim = run(POOL, &mut constant(3));
    assert_eq!(sim.status("Pool", "Big"), (GoalStatus::Trapped, Some("E005".into())));
    assert_eq!(sim.goal("Pool", "Big").cycles, 10);
    assert_eq!(sim.e005_count(), 1);
}

#[test]
fn a_configure_entry_sets_the_threshold_for_every_replica() {
    // A replica started from the default settings follows the log, not its
    // own: after `Configure` it traps at the third cycle, as the leader does.
    let mut sim = Sim::new(POOL);
    let config = EngineConfig {
        oscillation_threshold: 3,
        effect_timeout_ms: 250,
        non_convergence_bound: 7,
        write_history: 4,
        damping_half_life_ms: 1_000,
        step_budget: 50_000,
    };
    let applied = sim.propose(Entry::Configure { config: config.clone() });
    assert_eq!(applied.outcome, Ok(()));
    assert!(applied.events.iter().any(|e| e.kind == EventKind::Configured && e.message.contains("threshold 3")));
    assert_eq!(sim.engine.config(), &config);
    sim.drive(5_000, &mut constant(3));
    assert_eq!(sim.status("Pool", "Big"), (GoalStatus::Trapped, Some("E005".into())));
    assert_eq!(sim.goal("Pool", "Big").cycles, 3);

    let replica = Sim::replay(EngineConfig::default(), &sim.log);
    assert_eq!(replica.engine.config(), &config);
    assert_eq!(replica.engine.state_hash(), sim.engine.state_hash());
    let restored = Engine::restore(&sim.engine.snapshot()).expect("snapshot restores");
    assert_eq!(restored.config(), &config);

    let zeroes = EngineConfig {
        oscillation_threshold: 0,
        effect_timeout_ms: 0,
        non_convergence_bound: 0,
        write_history: 0,
        damping_half_life_ms: 0,
        step_budget: 0,
    };
    sim.propose(Entry::Configure { config: zeroes });
    let ones = EngineConfig {
        oscillation_threshold: 1,
        effect_timeout_ms: 1,
        non_convergence_bound: 1,
        write_history: 1,
        damping_half_life_ms: 1,
        step_budget: 1,
    };
    assert_eq!(sim.engine.config(), &ones);
}

#[test]
fn twenty_five_cycles_of_progress_converge_without_a_trap() {
    let mut sim = Sim::new(POOL);
    sim.set("Pool", "target", Value::Int(28));
    sim.drive(5_000, &mut echo_count());
    assert_eq!(sim.status("Pool", "Big"), (GoalStatus::Satisfied, None));
    assert_eq!(sim.engine.read("Pool", "nodes"), Some(Value::Int(28)));
    assert_eq!(sim.goal("Pool", "Big").cycles, 25);
    assert_eq!(sim.e005_count(), 0);
}

#[test]
fn failover_halfway_traps_at_the_same_cycle() {
    let unbroken = run(POOL, &mut constant(3));
    let trap_index = unbroken.goal("Pool", "Big").since_index;
    let half = unbroken.log.len() / 2;
    // The new leader's engine: a replica rebuilt from the first half of the
    // log, then moved through a snapshot as a lagging follower would be.
    let replica = Sim::replay(EngineConfig::default(), &unbroken.log[..half]);
    assert!(replica.goal("Pool", "Big").cycles < 10 && replica.goal("Pool", "Big").cycles > 0);
    let engine = Engine::restore(&replica.engine.snapshot()).expect("snapshot restores");
    let mut failover = Sim { engine, log: replica.log, index: replica.index };
    failover.drive(5_000, &mut constant(3));
    let report = failover.goal("Pool", "Big");
    assert_eq!((report.status, report.cycles, report.since_index), (GoalStatus::Trapped, 10, trap_index));
    assert_eq!(failover.engine.state_hash(), unbroken.engine.state_hash());
}

#[test]
fn invariants_and_types_reject_mutations_before_they_apply() {
    let mut sim = Sim::new(POOL);
    let hash = sim.engine.domain_state("Pool");
    let cases: &[(&str, &str, Value, &str)] = &[
        ("Pool", "nodes", Value::Int(-1), "E011"),
        ("Pool", "nodes", Value::Bool(true), "E003"),
        ("Pool", "size", Value::Int(1), "E002"),
        ("Lake", "nodes", Value::Int(1), "E002"),
    ];
    for (domain, field, value, code) in cases {
        let write = FieldWrite { domain: (*domain).into(), field: (*field).into(), value: value.clone() };
        let entry = Entry::mutation(vec![write], "test");
        assert_eq!(sim.engine.validate(&entry).map_err(|r| r.code), Err(code.to_string()));
        assert_eq!(sim.propose(entry).outcome.map_err(|r| r.code), Err(code.to_string()));
        assert_eq!(sim.engine.domain_state("Pool"), hash, "state untouched");
    }
    assert_eq!(
        sim.engine.validate(&Entry::SubmitProgram { bytes: b"junk".to_vec() }).map_err(|r| r.code),
        Err("E014".into())
    );
    assert_eq!(
        Engine::new(EngineConfig::default()).validate(&Entry::mutation(vec![], "test")).map_err(|r| r.code),
        Err("E014".into())
    );
}

#[test]
fn retries_keep_the_idempotency_key_and_reject_stale_tokens() {
    let mut sim = Sim::new(POOL);
    sim.set("Pool", "target", Value::Int(4));
    sim.propose(Entry::RunStep { step: sim.engine.pending().steps[0].step });
    let first = sim.engine.pending().effects[0].clone();
    assert_eq!(first.attempt, 1);
    assert_eq!(first.args, vec![("pool".into(), Value::Str("web".into())), ("count".into(), Value::Int(4))]);
    sim.propose(Entry::Dispatched { effect: first.key, attempt: 1, worker: "w1".into() });
    let token = sim.index;
    let failed = EffectOutcome::Failed { error: "timed out".into() };
    assert!(sim.propose(Entry::EffectResult { effect: first.key, fencing: token, outcome: failed }).outcome.is_ok());
    let late = Entry::EffectResult {
        effect: first.key,
        fencing: token,
        outcome: EffectOutcome::Succeeded { value: Some(Value::Int(4)) },
    };
    assert_eq!(
        sim.engine.validate(&late).map_err(|r| r.code),
        Err("E013".into()),
        "the leader refuses it before commit"
    );
    let stale = sim.propose(late);
    assert_eq!(stale.outcome.map_err(|r| r.code), Err("E013".into()));
    let timer = sim.engine.pending().timers[0].clone();
    assert_eq!(timer.delay_ms, 100);
    sim.propose(Entry::TimerFired { timer: timer.timer });
    let second = sim.engine.pending().effects[0].clone();
    assert_eq!((second.attempt, &second.idempotency_key), (2, &first.idempotency_key));
    let duplicate = sim.propose(Entry::RunStep { step: lexum_engine::StepId(1) });
    assert!(duplicate.outcome.is_ok() && duplicate.events.iter().any(|e| e.kind == EventKind::Stale));
    sim.drive(100, &mut echo_count());
    assert_eq!(sim.status("Pool", "Big"), (GoalStatus::Satisfied, None));
}

#[test]
fn exhausted_retries_fail_the_goal_until_its_inputs_change() {
    let mut sim = Sim::new(POOL);
    let mut broken: Worker = Box::new(|_| EffectOutcome::Failed { error: "quota exceeded".into() });
    sim.drive(100, &mut broken);
    let report = sim.goal("Pool", "Big");
    assert_eq!((report.status, report.code.as_deref()), (GoalStatus::Failed, Some("E010")));
    assert!(report.evidence.unwrap_or_default().contains("quota exceeded"));
    sim.set("Pool", "target", Value::Int(5));
    sim.drive(100, &mut echo_count());
    assert_eq!(sim.status("Pool", "Big"), (GoalStatus::Satisfied, None));
}

#[test]
fn release_and_new_versions_clear_traps_and_keep_matching_fields() {
    let mut sim = run(POOL, &mut constant(3));
    assert_eq!(sim.status("Pool", "Big").0, GoalStatus::Trapped);
    sim.propose(Entry::Release { domain: "Pool".into(), goal: Some("Big".into()) });
    assert_eq!(sim.status("Pool", "Big").0, GoalStatus::Repairing);
    sim.set("Pool", "target", Value::Int(7));
    let v2 = POOL.replace("target: int = 10", "target: int = 10\n    extra: bool = true");
    sim.propose(Entry::SubmitProgram { bytes: program_bytes(&v2) });
    assert_eq!(sim.engine.program_version(), 2);
    assert_eq!(sim.engine.read("Pool", "target"), Some(Value::Int(7)), "same name and type kept");
    assert_eq!(sim.engine.read("Pool", "extra"), Some(Value::Bool(true)), "new field defaulted");
    sim.drive(1_000, &mut echo_count());
    assert_eq!(sim.status("Pool", "Big").0, GoalStatus::Satisfied);
}

#[test]
fn higher_priority_goal_preempts_at_the_slice_boundary() {
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
    slice two { low_done = a }
  }
  transition Fast for Urgent {
    slice one { high_done = 1 }
  }
}
"#;
    let mut sim = Sim::new(source);
    sim.propose(Entry::RunStep { step: sim.engine.pending().steps[0].step });
    sim.set("Box", "urgent", Value::Bool(true));
    // The low transition waits on its effect: no preemption mid-slice.
    assert_eq!(sim.status("Box", "Urgent").0, GoalStatus::Violated);
    sim.drive(1_000, &mut echo_count());
    assert_eq!(sim.status("Box", "Urgent").0, GoalStatus::Satisfied);
    assert_eq!(sim.status("Box", "Background").0, GoalStatus::Satisfied);
    let verdicts: Vec<String> =
        sim.engine.history(10).iter().map(|c| format!("{}:{}", c.transition, c.verdict)).collect();
    // Suspended at its slice boundary, not ended: one cycle of Slow.
    assert_eq!(verdicts, ["Fast:converged", "Slow:converged"]);
}

#[test]
fn static_dominance_suppresses_the_lower_goal_before_it_ever_runs() {
    let source = tug("priority high ", "")
        .replace("Room.temp >= 20", "Room.temp >= 25")
        .replace("Room.temp <= 22", "Room.temp <= 20");
    let sim = run(&source, &mut echo_count());
    assert_eq!(sim.status("Heater", "Warm"), (GoalStatus::Satisfied, None));
    assert_eq!(sim.status("Cooler", "Cool").0, GoalStatus::Dominated);
    let transitions: Vec<String> = sim.engine.history(10).into_iter().map(|c| c.transition).collect();
    assert_eq!(transitions, ["Heat"], "Chill never ran");
}

#[test]
fn handler_effects_and_results_bound_in_later_slices_are_part_of_the_cycle() {
    let source = r#"
effect Cloud.SetNodeCount(pool: string, count: int) -> int
domain Pool {
  state {
    nodes: int = 3
  }
  on Resize(count: int) { emit Cloud.SetNodeCount(pool: "web", count: count) }
}
domain Autoscaler priority high {
  reads Pool
  state {
    min_nodes: int = 5
    asked: int = 0
  }
  goal Capacity { Pool.nodes >= min_nodes }
  transition ScaleUp for Capacity {
    slice request { asked += 1 send Pool.Resize(count: min_nodes) }
  }
}
"#;
    let mut sim = Sim::new(source);
    let mut reporter: Worker = Box::new(|_| EffectOutcome::Succeeded { value: Some(Value::Int(5)) });
    while sim.engine.cycles_judged() == 0 {
        assert_eq!(sim.drive(1, &mut reporter), 1);
    }
    // The cloud call succeeded but nothing observed it yet: the cycle ends
    // without progress and backs off.
    let p = sim.engine.pending();
    assert!(p.steps.is_empty() && p.effects.is_empty() && p.timers.len() == 1, "{p:?}");
    assert_eq!(sim.goal("Autoscaler", "Capacity").cycles, 1);
    // An observation (a client write) then satisfies the goal.
    sim.set("Pool", "nodes", Value::Int(5));
    assert_eq!(sim.status("Autoscaler", "Capacity").0, GoalStatus::Satisfied);
    let record = &sim.engine.history(1)[0];
    assert_eq!((record.transition.as_str(), record.verdict), ("ScaleUp", CycleVerdict::NoProgress));
    assert_eq!(
        record.deltas.iter().map(|d| (d.field.clone(), d.delta)).collect::<Vec<_>>(),
        [("Autoscaler.asked".to_string(), Some(1))]
    );
}

/// `request`'s result runs `note` in its own entry; `record` is a step of
/// its own (a slice with no effect queues the next one).
const POOL_NOTED: &str = r#"
effect Cloud.SetNodeCount(pool: string, count: int) -> int
domain Pool {
  state {
    nodes: int = 3
    target: int = 10
    asked: int = 0
  }
  goal Big { nodes >= target }
  transition Grow for Big {
    slice request { emit Cloud.SetNodeCount(pool: "web", count: nodes + 1) -> got }
    slice note { asked = got }
    slice record { nodes = asked }
  }
}
"#;

#[test]
fn a_crash_between_slices_resumes_at_the_next_slice() {
    let mut sim = Sim::new(POOL_NOTED);
    sim.set("Pool", "target", Value::Int(4));
    let mut worker = echo_count();
    // The request slice runs, its effect succeeds and its result runs the
    // note slice: three entries, with the record slice left to run.
    assert_eq!(sim.drive(3, &mut worker), 3);
    assert_eq!(sim.engine.read("Pool", "asked"), Some(Value::Int(4)));
    assert!(sim.engine.pending().effects.is_empty() && sim.engine.pending().steps.len() == 1);
    let before = sim.engine.state_hash();
    let mut resumed = Sim {
        engine: Engine::restore(&sim.engine.snapshot()).expect("restores"),
        log: sim.log.clone(),
        index: sim.index,
    };
    assert_eq!(resumed.engine.state_hash(), before);
    let mut planned = 0;
    while let Some(step) = resumed.engine.pending().steps.first().map(|s| s.step) {
        planned += resumed
            .propose(Entry::RunStep { step })
            .events
            .iter()
            .filter(|e| e.kind == EventKind::EffectPlanned)
            .count();
    }
    assert_eq!(planned, 0, "the completed request slice is not re-run");
    assert_eq!(resumed.engine.read("Pool", "nodes"), Some(Value::Int(4)));
    assert_eq!(resumed.status("Pool", "Big").0, GoalStatus::Satisfied);
}

#[test]
fn a_three_way_fight_traps_every_goal_involved() {
    // Each pair can hold together; the three transitions chase each other
    // round 3 → 1 → 2 → 3.
    let source = r#"
domain Dial {
  state {
    v: int = 3
  }
  on Set(to: int) { v = to }
}
domain A {
  reads Dial
  goal Low { Dial.v >= 1 && Dial.v <= 2 }
  transition Fix for Low { slice s { send Dial.Set(to: 1) } }
}
domain B {
  reads Dial
  goal Mid { Dial.v >= 2 }
  transition Fix for Mid { slice s { send Dial.Set(to: 2) } }
}
domain C {
  reads Dial
  goal High { Dial.v <= 1 || Dial.v >= 3 }
  transition Fix for High { slice s { send Dial.Set(to: 3) } }
}
"#;
    let sim = run(source, &mut echo_count());
    for (d, g) in [("A", "Low"), ("B", "Mid"), ("C", "High")] {
        assert_eq!(sim.status(d, g).0, GoalStatus::Trapped, "{d}.{g}");
    }
    let evidence = sim.goal("A", "Low").evidence.unwrap_or_default();
    for needle in ["A.Low", "B.Mid", "C.High", "Dial.v"] {
        assert!(evidence.contains(needle), "{needle} missing from {evidence}");
    }
    assert!(sim.engine.cycles_judged() <= 10);
}

#[test]
fn a_guard_over_other_fields_arms_when_it_starts_to_hold() {
    let source = r#"
domain Pool {
  state {
    nodes: int = 3
    enabled: bool = false
  }
  goal Big { nodes >= 5 }
  transition Grow for Big when enabled { slice s { nodes = 5 } }
}
"#;
    let mut sim = Sim::new(source);
    assert!(sim.engine.pending().steps.is_empty(), "guard does not hold");
    assert_eq!(sim.status("Pool", "Big").0, GoalStatus::Violated);
    sim.set("Pool", "enabled", Value::Bool(true));
    sim.drive(10, &mut echo_count());
    assert_eq!(sim.status("Pool", "Big").0, GoalStatus::Satisfied);
}

/// The soak's fight (`jepsen/src/program.rs`): two goals guarded by an
/// `armed` flag, each repaired by a message that also zeroes the other's
/// field. Armed, both are trapped and both stay listed TRAPPED.
const ARMED_FIGHT: &str = r#"
domain Thermo {
  state {
    armed: int = 0
    heater: int = 0
    cooler: int = 0
  }
  on Heat(level: int) {
    heater = level
    cooler = 0
  }
  on Cool(level: int) {
    cooler = level
    heater = 0
  }
}
domain Warm {
  reads Thermo
  goal Heating { Thermo.armed == 0 || Thermo.heater >= 5 }
  transition TurnUp for Heating {
    slice s { send Thermo.Heat(level: 5) }
  }
}
domain Chill {
  reads Thermo
  goal Cooling { Thermo.armed == 0 || Thermo.cooler >= 5 }
  transition TurnDown for Cooling {
    slice s { send Thermo.Cool(level: 5) }
  }
}
"#;

#[test]
fn both_goals_of_an_armed_fight_are_listed_trapped() {
    let mut sim = Sim::new(ARMED_FIGHT);
    sim.set("Thermo", "armed", Value::Int(1));
    let used = sim.drive(5_000, &mut echo_count());
    assert!(used < 5_000, "the run did not settle");
    assert_eq!(sim.status("Warm", "Heating"), (GoalStatus::Trapped, Some("E005".into())));
    assert_eq!(sim.status("Chill", "Cooling"), (GoalStatus::Trapped, Some("E005".into())));
}

#[test]
fn both_goals_of_an_armed_fight_are_listed_trapped_when_the_leader_runs_steps_in_batches() {
    let mut sim = Sim::new(ARMED_FIGHT);
    sim.set("Thermo", "armed", Value::Int(1));
    for _ in 0..200 {
        let steps: Vec<Entry> = sim.engine.pending().steps.iter().map(|s| Entry::RunStep { step: s.step }).collect();
        if steps.is_empty() {
            break;
        }
        sim.propose(Entry::grouped(steps));
    }
    assert!(sim.engine.pending().steps.is_empty(), "the run did not settle");
    assert_eq!(sim.status("Warm", "Heating"), (GoalStatus::Trapped, Some("E005".into())));
    assert_eq!(sim.status("Chill", "Cooling"), (GoalStatus::Trapped, Some("E005".into())));
}
