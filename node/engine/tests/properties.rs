//! Property tests: replicas applying the same random log agree on the state
//! hash, incremental goal evaluation always equals evaluating everything,
//! and a batch of mutations equals the same mutations one entry each.

mod common;

use common::{program_bytes, Sim};
use lexum_compiler::program::Value;
use lexum_engine::{EffectKey, EffectOutcome, Engine, EngineConfig, Entry, FieldWrite, StepId, TimerId};
use proptest::prelude::*;

const PROGRAM: &str = r#"
effect Cloud.SetNodeCount(pool: string, count: int) -> int
domain Room {
  state {
    temp: int = 18
  }
  invariant Sane { temp >= -50 && temp <= 200 }
  on Set(t: int) { temp = t }
}
domain Heater {
  reads Room
  state {
    pushes: int = 0
  }
  goal Warm { Room.temp >= 20 }
  transition Heat for Warm {
    slice go { pushes += 1 send Room.Set(t: 25) }
  }
}
domain Cooler {
  reads Room
  goal Cool { Room.temp <= 22 }
  transition Chill for Cool {
    slice go { send Room.Set(t: 15) }
  }
}
domain Pool priority high {
  state {
    nodes: int = 3
    target: int = 10
  }
  goal Big { nodes >= target }
  goal Cheap priority low { nodes <= 40 }
  transition Grow for Big retry 2 backoff 10ms..20ms {
    slice request { emit Cloud.SetNodeCount(pool: "web", count: nodes + 1) -> got }
    slice record { nodes = got }
  }
}
"#;

const FIELDS: [(&str, &str); 4] = [("Room", "temp"), ("Heater", "pushes"), ("Pool", "nodes"), ("Pool", "target")];

/// One action of the random run.
#[derive(Clone, Debug)]
enum Op {
    /// A client write (sometimes of the wrong type).
    Set(usize, i64, bool),
    /// Several client writes committed as one batch.
    Batch(Vec<(usize, i64, bool)>),
    /// The leader does the `n`th thing it could do now.
    Lead(usize),
    /// The leader does everything it could do now, as one batch (with a
    /// nested batch thrown in when `nested`).
    LeadAll(bool),
    /// The worker answers the `n`th in-flight effect.
    Answer(usize, Option<i64>),
    /// Garbage the leader should never propose (must be harmless).
    Junk(u8, u64),
    /// Release or retry a goal.
    Operator(bool),
    /// A write by one of three principals naming as its cause the `n`th
    /// effect pending now (or, past the end, a key nobody issued).
    Observe((usize, i64, bool), usize, Option<usize>),
}

/// A write of field `FIELDS[f]`: `v`, or a value of the wrong type.
fn set() -> impl Strategy<Value = (usize, i64, bool)> {
    (0..FIELDS.len(), -60i64..220, proptest::bool::weighted(0.05))
}

fn writes(&(f, v, wrong): &(usize, i64, bool)) -> Vec<FieldWrite> {
    let (domain, field) = FIELDS[f];
    let value = if wrong { Value::Bool(true) } else { Value::Int(v) };
    vec![FieldWrite { domain: domain.into(), field: field.into(), value }]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => set().prop_map(|(f, v, b)| Op::Set(f, v, b)),
        1 => proptest::collection::vec(set(), 2..6).prop_map(Op::Batch),
        8 => (0usize..4).prop_map(Op::Lead),
        2 => proptest::bool::weighted(0.1).prop_map(Op::LeadAll),
        3 => (0usize..2, proptest::option::weighted(0.8, 0i64..60)).prop_map(|(n, v)| Op::Answer(n, v)),
        1 => (0u8..4, 0u64..40).prop_map(|(k, n)| Op::Junk(k, n)),
        1 => any::<bool>().prop_map(Op::Operator),
        3 => (set(), 0usize..3, proptest::option::weighted(0.7, 0usize..3)).prop_map(|(w, p, n)| Op::Observe(w, p, n)),
    ]
}

/// Everything the leader could propose now: steps, dispatches, timers.
fn leader_options(pending: &lexum_engine::Pending) -> Vec<Entry> {
    let mut options: Vec<Entry> = pending.steps.iter().map(|s| Entry::RunStep { step: s.step }).collect();
    options.extend(pending.steps.iter().map(|s| Entry::RunStepAndDispatch { step: s.step, worker: "w".into() }));
    options.extend(pending.effects.iter().filter(|e| e.in_flight.is_none()).map(|e| Entry::Dispatched {
        effect: e.key,
        attempt: e.attempt,
        worker: "w".into(),
    }));
    options.extend(pending.timers.iter().map(|t| Entry::TimerFired { timer: t.timer }));
    options
}

/// Turns an op into an entry using the engine's current pending work.
fn entry_for(engine: &Engine, op: &Op) -> Entry {
    let pending = engine.pending();
    match op {
        Op::Set(f, v, wrong) => Entry::mutation(writes(&(*f, *v, *wrong)), "test"),
        Op::Observe(set, principal, effect) => {
            let caused_by = effect
                .map(|n| pending.effects.get(n).map_or_else(|| format!("unknown-{n}"), |e| e.idempotency_key.clone()))
                .into_iter()
                .collect();
            let principal = ["token/hpa", "token/gitops", "anonymous"][*principal].to_string();
            Entry::Mutate { writes: writes(set), principal, caused_by }
        }
        Op::Batch(sets) => {
            Entry::Batch { entries: sets.iter().map(|set| Entry::mutation(writes(set), "test")).collect() }
        }
        Op::Lead(n) => {
            let options = leader_options(&pending);
            if options.is_empty() {
                Entry::Noop
            } else {
                options[n % options.len()].clone()
            }
        }
        Op::LeadAll(nested) => {
            let mut entries = leader_options(&pending);
            if *nested {
                entries.push(Entry::Batch { entries: vec![Entry::Noop] });
            }
            Entry::Batch { entries }
        }
        Op::Answer(n, v) => {
            let in_flight: Vec<_> = pending.effects.iter().filter(|e| e.in_flight.is_some()).collect();
            match in_flight.get(n % in_flight.len().max(1)) {
                Some(e) => Entry::EffectResult {
                    effect: e.key,
                    fencing: e.in_flight.unwrap_or_default(),
                    outcome: match v {
                        Some(v) => EffectOutcome::Succeeded { value: Some(Value::Int(*v)) },
                        None => EffectOutcome::Failed { error: "timed out".into() },
                    },
                },
                None => Entry::Noop,
            }
        }
        Op::Junk(kind, n) => match kind {
            0 if n % 2 == 0 => Entry::RunStep { step: StepId(*n) },
            0 => Entry::RunStepAndDispatch { step: StepId(*n), worker: "rogue".into() },
            1 => Entry::Dispatched { effect: EffectKey(*n), attempt: 1, worker: "rogue".into() },
            2 => Entry::EffectResult {
                effect: EffectKey(*n),
                fencing: *n,
                outcome: EffectOutcome::Succeeded { value: None },
            },
            _ => Entry::TimerFired { timer: TimerId(*n) },
        },
        Op::Operator(release) => {
            if *release {
                Entry::Release { domain: "Heater".into(), goal: None }
            } else {
                Entry::Retry { domain: "Pool".into(), goal: "Big".into() }
            }
        }
    }
}

/// Runs ops on one engine, checking incremental == full evaluation after
/// every entry; returns the log.
fn run(ops: &[Op], threshold: u32) -> Sim {
    let config = EngineConfig { oscillation_threshold: threshold, ..EngineConfig::default() };
    let mut sim = Sim::with_config(PROGRAM, config);
    for op in ops {
        let entry = entry_for(&sim.engine, op);
        sim.propose(entry);
        let cached: Vec<(String, String, bool)> =
            sim.engine.goals().into_iter().map(|g| (g.domain, g.goal, g.holds)).collect();
        assert_eq!(cached, sim.engine.evaluate_all(), "incremental evaluation diverged after {op:?}");
    }
    sim
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn replicas_agree_on_the_state_hash(ops in proptest::collection::vec(op(), 1..120), threshold in 1u32..12, cut in 0usize..120) {
        let leader = run(&ops, threshold);
        let config = leader.engine.config().clone();
        let follower = Sim::replay(config.clone(), &leader.log);
        prop_assert_eq!(follower.engine.state_hash(), leader.engine.state_hash());
        prop_assert_eq!(follower.engine.snapshot(), leader.engine.snapshot());
        prop_assert_eq!(follower.engine.goals(), leader.engine.goals());
        // A replica that joins through a snapshot taken part-way.
        let cut = cut.min(leader.log.len());
        let early = Sim::replay(config, &leader.log[..cut]);
        let mut joined = Engine::restore(&early.engine.snapshot()).expect("snapshot restores");
        for (i, e) in &leader.log[cut..] {
            joined.apply(*i, e);
        }
        prop_assert_eq!(joined.state_hash(), leader.engine.state_hash());
        prop_assert_eq!(joined.pending(), leader.engine.pending());
    }

    #[test]
    fn incremental_evaluation_equals_full_evaluation(ops in proptest::collection::vec(op(), 1..150)) {
        run(&ops, 10);
    }

    #[test]
    fn a_batch_of_mutations_equals_the_same_mutations_one_entry_each(
        prefix in proptest::collection::vec(op(), 0..60),
        sets in proptest::collection::vec(set(), 2..8),
    ) {
        let base = run(&prefix, 10);
        let config = base.engine.config().clone();
        let batch: Vec<Vec<FieldWrite>> = sets.iter().map(writes).collect();
        let mut batched = Sim::replay(config.clone(), &base.log);
        let entries = batch.iter().map(|writes| Entry::mutation(writes.clone(), "test")).collect();
        let applied = batched.propose(Entry::Batch { entries });
        let mut single = Sim::replay(config.clone(), &base.log);
        let outcomes: Vec<_> = batch.into_iter().map(|writes| single.propose(Entry::mutation(writes, "test")).outcome).collect();
        prop_assert_eq!(applied.outcome, Ok(()));
        prop_assert_eq!(applied.parts, outcomes);
        prop_assert_eq!(observable(&batched.engine), observable(&single.engine));
        let goals: Vec<(String, String, bool)> =
            batched.engine.goals().into_iter().map(|g| (g.domain, g.goal, g.holds)).collect();
        prop_assert_eq!(goals, batched.engine.evaluate_all());
        let replica = Sim::replay(config, &batched.log);
        prop_assert_eq!(replica.engine.state_hash(), batched.engine.state_hash());
    }
}

/// What a replica exposes apart from log indexes (a batch shares one):
/// field values by domain, goal statuses, and the pending work.
type Observable = (Vec<Option<Vec<(String, Value)>>>, Vec<String>, String);

/// The [`Observable`] state of `engine`.
fn observable(engine: &Engine) -> Observable {
    let fields = ["Room", "Heater", "Cooler", "Pool"].iter().map(|d| engine.domain_state(d)).collect();
    let goals = engine
        .goals()
        .into_iter()
        .map(|g| format!("{}.{} {:?} holds={} {:?} cycles={}", g.domain, g.goal, g.status, g.holds, g.code, g.cycles))
        .collect();
    (fields, goals, format!("{:?}", engine.pending()))
}

#[test]
fn out_of_order_indices_change_nothing() {
    let mut engine = Engine::new(EngineConfig::default());
    engine.apply(5, &Entry::SubmitProgram { bytes: program_bytes(PROGRAM) });
    let hash = engine.state_hash();
    let applied = engine.apply(5, &Entry::Noop);
    assert_eq!(applied.outcome.map_err(|r| r.code), Err("E015".into()));
    assert_eq!(engine.state_hash(), hash);
    assert_eq!(engine.last_applied(), 5);
}

#[test]
fn garbage_snapshots_and_programs_are_errors_not_panics() {
    assert!(Engine::restore(b"\x01\x02\x03").is_err());
    let mut engine = Engine::new(EngineConfig::default());
    let mut bytes = program_bytes(PROGRAM);
    bytes.truncate(bytes.len() - 3);
    assert_eq!(engine.apply(1, &Entry::SubmitProgram { bytes }).outcome.map_err(|r| r.code), Err("E014".into()));
}

#[test]
fn a_batch_reports_each_part_and_refuses_a_batch_inside() {
    let mut sim = Sim::new(PROGRAM);
    let set = |v| {
        Entry::mutation(vec![FieldWrite { domain: "Room".into(), field: "temp".into(), value: Value::Int(v) }], "test")
    };
    let applied = sim.propose(Entry::Batch {
        entries: vec![Entry::Noop, Entry::Batch { entries: vec![set(30)] }, set(21), set(500)],
    });
    assert_eq!(applied.outcome, Ok(()));
    let codes: Vec<Option<String>> = applied.parts.iter().map(|p| p.as_ref().err().map(|r| r.code.clone())).collect();
    assert_eq!(codes, [None, Some("E015".into()), None, Some("E011".into())]);
    assert_eq!(sim.engine.read("Room", "temp"), Some(Value::Int(21)), "only the valid write applied");
    let replica = Sim::replay(sim.engine.config().clone(), &sim.log);
    assert_eq!(replica.engine.state_hash(), sim.engine.state_hash());
}
