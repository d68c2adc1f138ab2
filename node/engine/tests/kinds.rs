//! Kinds and instances (issue 12): each instance of a kind has its own
//! state, goals, cycles and verdicts, is created and deleted by replicated
//! entries, survives a new program version, and is rebuilt identically on
//! every replica.

mod common;

use common::{echo_count, program_bytes, Sim};
use lexum_compiler::program::Value;
use lexum_engine::{Engine, EngineConfig, Entry, FieldWrite, GoalStatus, NewInstance};
use proptest::prelude::*;

const FLEET: &str = r#"
effect Cloud.SetNodeCount(pool: string, count: int) -> int

domain Pool[name] {
  state {
    nodes: int = 1
    want: int = 3
  }
  invariant Sane { want >= 0 && want <= 100 }
  goal Sized { nodes == want }
  transition Resize for Sized {
    slice call { emit Cloud.SetNodeCount(pool: key, count: want) -> got }
    slice record { nodes = got }
  }
  on Grow(by: int) { want += by }
}

domain Autoscaler[name] {
  reads Pool[key]
  state { min: int = 5 }
  goal Enough { Pool[key].want >= min }
  transition Ask for Enough { slice s { send Pool[key].Grow(by: 1) } }
}
"#;

/// Two controllers of one room fighting, per room.
const ROOMS: &str = r#"
domain Room[name] {
  state { temp: int = 18 }
  on Set(t: int) { temp = t }
}
domain Heater[name] {
  reads Room[key]
  goal Warm { Room[key].temp >= 20 }
  transition Heat for Warm { slice go { send Room[key].Set(t: 25) } }
}
domain Cooler[name] {
  reads Room[key]
  goal Cool { Room[key].temp <= 22 }
  transition Chill for Cool { slice go { send Room[key].Set(t: 15) } }
}
"#;

fn create(kind: &str, keys: &[(&str, &[(&str, i64)])]) -> Entry {
    let instances = keys
        .iter()
        .map(|(key, values)| NewInstance {
            key: key.to_string(),
            values: values.iter().map(|(f, v)| (f.to_string(), Value::Int(*v))).collect(),
        })
        .collect();
    Entry::CreateInstances { kind: kind.into(), instances, upsert: false, principal: "test".into() }
}

fn delete(kind: &str, keys: &[&str]) -> Entry {
    Entry::DeleteInstances { kind: kind.into(), keys: keys.iter().map(|k| k.to_string()).collect() }
}

fn ok(sim: &mut Sim, entry: Entry) {
    let applied = sim.propose(entry);
    assert_eq!(applied.outcome, Ok(()), "{:?}", applied.events);
}

fn refused(sim: &mut Sim, entry: Entry) -> String {
    let before = sim.engine.goals();
    let valid = sim.engine.validate(&entry);
    let applied = sim.propose(entry);
    let rejection = applied.outcome.expect_err("refused");
    assert_eq!(valid.map_err(|r| r.code), Err(rejection.code.clone()), "validate and apply agree");
    assert_eq!(sim.engine.goals(), before, "nothing changed");
    rejection.message
}

#[test]
fn instances_are_created_repaired_and_named_by_key() {
    let mut sim = Sim::new(FLEET);
    assert!(sim.engine.goals().is_empty(), "a kind alone has no goals");
    ok(&mut sim, create("Pool", &[("web", &[("want", 4)]), ("db", &[])]));
    let names: Vec<String> = sim.engine.goals().iter().map(|g| format!("{}.{}", g.domain, g.goal)).collect();
    assert_eq!(names, ["Pool[web].Sized", "Pool[db].Sized"]);
    let pending = sim.engine.pending();
    assert_eq!(pending.steps.len(), 2);
    sim.drive(200, &mut echo_count());
    assert_eq!(sim.engine.read("Pool[web]", "nodes"), Some(Value::Int(4)));
    assert_eq!(sim.engine.read("Pool[db]", "nodes"), Some(Value::Int(3)));
    assert_eq!(sim.status("Pool[web]", "Sized").0, GoalStatus::Satisfied);
    let history = sim.engine.history(10);
    assert!(history.iter().any(|c| c.domain == "Pool[web]" && c.goal == "Sized"));
}

#[test]
fn an_instance_reads_and_sends_to_the_instance_with_its_key() {
    let mut sim = Sim::new(FLEET);
    let refusal = refused(&mut sim, create("Autoscaler", &[("web", &[])]));
    assert!(refusal.contains("create that instance first"), "{refusal}");
    ok(&mut sim, create("Pool", &[("web", &[]), ("db", &[])]));
    ok(&mut sim, create("Autoscaler", &[("web", &[("min", 6)])]));
    sim.drive(500, &mut echo_count());
    // Autoscaler[web] grew Pool[web] (not Pool[db]) until its goal held.
    assert_eq!(sim.engine.read("Pool[web]", "want"), Some(Value::Int(6)));
    assert_eq!(sim.engine.read("Pool[db]", "want"), Some(Value::Int(3)));
    assert_eq!(sim.status("Autoscaler[web]", "Enough").0, GoalStatus::Satisfied);
    let refusal = refused(&mut sim, delete("Pool", &["web"]));
    assert!(refusal.contains("Autoscaler[web] reads Pool[web]"), "{refusal}");
}

#[test]
fn a_tug_of_war_in_one_instance_traps_that_instance_only() {
    let mut sim = Sim::new(ROOMS);
    ok(&mut sim, create("Room", &[("a", &[]), ("b", &[])]));
    ok(&mut sim, create("Heater", &[("a", &[]), ("b", &[])]));
    ok(&mut sim, create("Cooler", &[("a", &[])]));
    sim.drive(500, &mut echo_count());
    assert_eq!(sim.status("Heater[a]", "Warm"), (GoalStatus::Trapped, Some("E005".into())));
    assert_eq!(sim.status("Cooler[a]", "Cool"), (GoalStatus::Trapped, Some("E005".into())));
    assert_eq!(sim.status("Heater[b]", "Warm"), (GoalStatus::Satisfied, None));
    let evidence = sim.goal("Heater[a]", "Warm").evidence.unwrap_or_default();
    assert!(evidence.contains("Room[a].temp") && !evidence.contains("Room[b]"), "{evidence}");
    // Releasing the kind releases every instance's trap.
    ok(&mut sim, Entry::Release { domain: "Heater".into(), goal: None });
    assert_ne!(sim.status("Heater[a]", "Warm").0, GoalStatus::Trapped);
}

#[test]
fn deleting_an_instance_cancels_its_work_and_keeps_its_history() {
    let mut sim = Sim::new(FLEET);
    ok(&mut sim, create("Pool", &[("web", &[("want", 7)])]));
    // Run the slice and dispatch its effect, then delete mid-flight.
    let step = sim.engine.pending().steps[0].step;
    sim.propose(Entry::RunStep { step });
    let effect = sim.engine.pending().effects[0].clone();
    sim.propose(Entry::Dispatched { effect: effect.key, attempt: effect.attempt, worker: "w".into() });
    let fencing = sim.index;
    ok(&mut sim, delete("Pool", &["web"]));
    let pending = sim.engine.pending();
    assert!(pending.steps.is_empty() && pending.effects.is_empty() && pending.timers.is_empty(), "{pending:?}");
    let late = Entry::EffectResult {
        effect: effect.key,
        fencing,
        outcome: lexum_engine::EffectOutcome::Succeeded { value: Some(Value::Int(7)) },
    };
    assert!(sim.propose(late).outcome.is_err(), "a late result changes nothing");
    assert!(sim.engine.goals().is_empty());
    let write = FieldWrite { domain: "Pool[web]".into(), field: "want".into(), value: Value::Int(1) };
    assert!(refused(&mut sim, Entry::mutation(vec![write], "t")).contains("deleted"));
    let why = sim.engine.why("Pool[web]", "want", 10).expect("history kept");
    assert_eq!(why.len(), 1, "{why:?}");
    // The key can be used again: a new instance.
    ok(&mut sim, create("Pool", &[("web", &[])]));
    assert_eq!(sim.engine.read("Pool[web]", "want"), Some(Value::Int(3)));
}

#[test]
fn status_counts_and_pages_by_status_match_the_listing() {
    let mut sim = Sim::new(ROOMS);
    ok(&mut sim, create("Room", &[("a", &[]), ("b", &[]), ("c", &[])]));
    ok(&mut sim, create("Heater", &[("a", &[]), ("b", &[]), ("c", &[])]));
    ok(&mut sim, create("Cooler", &[("a", &[])]));
    sim.drive(500, &mut echo_count());
    ok(&mut sim, delete("Heater", &["b"]));
    let listing = sim.engine.goals();
    let counts = sim.engine.status_counts();
    assert_eq!(counts.map(|(s, _)| s), GoalStatus::ALL);
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), listing.len() as u64, "deleted instances not counted");
    assert!(counts.contains(&(GoalStatus::Trapped, 2)) && counts.contains(&(GoalStatus::Satisfied, 1)), "{counts:?}");
    for (status, count) in counts {
        let (page, total) = sim.engine.goals_page(None, Some(status), 0, 0);
        assert_eq!(total, count, "{status}");
        let expected: Vec<_> = listing.iter().filter(|g| g.status == status).cloned().collect();
        assert_eq!(page, expected, "{status}");
        assert_eq!(status.name().parse::<GoalStatus>(), Ok(status));
    }
    let trapped = sim.engine.goals_page(Some("Heater"), Some(GoalStatus::Trapped), 0, 1);
    assert_eq!((trapped.0.len(), trapped.1), (1, 1), "{trapped:?}");
    let unknown = "Trapped".parse::<GoalStatus>().expect_err("names are upper case");
    assert!(unknown.to_string().contains("unknown status `Trapped`"), "{unknown}");
}

#[test]
fn bad_creations_are_refused_whole() {
    let mut sim = Sim::new(FLEET);
    ok(&mut sim, create("Pool", &[("web", &[])]));
    assert!(refused(&mut sim, create("Pool", &[("db", &[]), ("web", &[])])).contains("exists"));
    assert!(sim.engine.read("Pool[db]", "nodes").is_none(), "all or none");
    assert!(refused(&mut sim, create("Pool", &[("x", &[("want", 500)])])).contains("Sane"));
    assert!(refused(&mut sim, create("Pool", &[("bad key", &[])])).contains("bad key"));
    assert!(refused(&mut sim, create("Pool", &[("x", &[("nope", 1)])])).contains("unknown field"));
    assert!(refused(&mut sim, create("Nope", &[("x", &[])])).contains("unknown kind"));
    let write = FieldWrite { domain: "Pool".into(), field: "want".into(), value: Value::Int(1) };
    assert!(refused(&mut sim, Entry::mutation(vec![write], "t")).contains("is a kind"));
    // Upsert writes the values of an instance that exists.
    let upsert = Entry::CreateInstances {
        kind: "Pool".into(),
        instances: vec![NewInstance { key: "web".into(), values: vec![("want".into(), Value::Int(9))] }],
        upsert: true,
        principal: "t".into(),
    };
    ok(&mut sim, upsert);
    assert_eq!(sim.engine.read("Pool[web]", "want"), Some(Value::Int(9)));
}

#[test]
fn a_new_version_keeps_instances_whose_kind_remains() {
    let mut sim = Sim::new(FLEET);
    ok(&mut sim, create("Pool", &[("web", &[("want", 8)]), ("db", &[])]));
    sim.drive(200, &mut echo_count());
    let v2 = FLEET.replace("domain Autoscaler[name]", "domain Scaler[name]").replace("min: int = 5", "min: int = 4");
    ok(&mut sim, Entry::SubmitProgram { bytes: program_bytes(&v2) });
    assert_eq!(sim.engine.read("Pool[web]", "nodes"), Some(Value::Int(8)), "values migrate");
    assert_eq!(sim.status("Pool[web]", "Sized").0, GoalStatus::Satisfied);
    let without = "domain Other { state { x: int = 0 } }";
    ok(&mut sim, Entry::SubmitProgram { bytes: program_bytes(without) });
    assert!(sim.engine.read("Pool[web]", "nodes").is_none(), "the kind is gone, so are its instances");
}

#[test]
fn replicas_and_restored_snapshots_rebuild_the_same_instances() {
    let mut sim = Sim::new(FLEET);
    ok(&mut sim, create("Pool", &[("a", &[]), ("b", &[]), ("c", &[])]));
    ok(&mut sim, create("Autoscaler", &[("b", &[])]));
    sim.drive(300, &mut echo_count());
    ok(&mut sim, delete("Pool", &["a"]));
    ok(&mut sim, create("Pool", &[("a", &[("want", 2)])]));
    sim.drive(300, &mut echo_count());
    let replica = Sim::replay(EngineConfig::default(), &sim.log);
    assert_eq!(replica.engine.state_hash(), sim.engine.state_hash());
    let restored = Engine::restore(&sim.engine.snapshot()).expect("restores");
    assert_eq!(restored.goals(), sim.engine.goals());
    assert_eq!(restored.read("Pool[a]", "nodes"), sim.engine.read("Pool[a]", "nodes"));
    assert_eq!(restored.pending(), sim.engine.pending());
}

/// One step of a random run over instances.
#[derive(Clone, Debug)]
enum Op {
    Create(usize),
    Delete(usize),
    Set(usize, i64),
    Lead,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0usize..6).prop_map(Op::Create),
        1 => (0usize..6).prop_map(Op::Delete),
        3 => (0usize..6, 0i64..12).prop_map(|(k, v)| Op::Set(k, v)),
        6 => Just(Op::Lead),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
    #[test]
    fn random_creates_deletes_and_sets_keep_replicas_equal_and_evaluation_incremental(ops in proptest::collection::vec(op(), 1..80)) {
        let mut sim = Sim::new(FLEET);
        let keys = ["a", "b", "c", "d", "e", "f"];
        let mut worker = echo_count();
        for op in &ops {
            match op {
                Op::Create(k) => { sim.propose(create("Pool", &[(keys[*k], &[])])); }
                Op::Delete(k) => { sim.propose(delete("Pool", &[keys[*k]])); }
                Op::Set(k, v) => {
                    let write = FieldWrite { domain: format!("Pool[{}]", keys[*k]), field: "want".into(), value: Value::Int(*v) };
                    sim.propose(Entry::mutation(vec![write], "t"));
                }
                Op::Lead => { sim.step(&mut worker, true); }
            }
            let incremental: Vec<(String, String, bool)> =
                sim.engine.goals().into_iter().map(|g| (g.domain, g.goal, g.holds)).collect();
            prop_assert_eq!(incremental, sim.engine.evaluate_all());
        }
        let replica = Sim::replay(EngineConfig::default(), &sim.log);
        prop_assert_eq!(replica.engine.state_hash(), sim.engine.state_hash());
        let restored = Engine::restore(&sim.engine.snapshot()).expect("restores");
        prop_assert_eq!(restored.goals(), sim.engine.goals());
    }
}

#[test]
fn an_upsert_that_breaks_an_invariant_creates_nothing_either() {
    let mut sim = Sim::new(FLEET);
    ok(&mut sim, create("Pool", &[("a", &[])]));
    let entry = Entry::CreateInstances {
        kind: "Pool".into(),
        instances: vec![
            NewInstance { key: "b".into(), values: vec![] },
            NewInstance { key: "a".into(), values: vec![("want".into(), Value::Int(500))] },
        ],
        upsert: true,
        principal: "t".into(),
    };
    assert!(refused(&mut sim, entry).contains("Sane"));
    assert!(sim.engine.read("Pool[b]", "nodes").is_none(), "all or none");
    // A new version right after in the same batch finds no stale goal.
    let batch = Entry::Batch {
        entries: vec![
            create("Pool", &[("c", &[("want", 500)])]),
            Entry::SubmitProgram { bytes: program_bytes("domain Other { state { x: int = 0 } }") },
        ],
    };
    assert_eq!(sim.propose(batch).outcome, Ok(()));
}

#[test]
fn deleting_the_instance_a_cycle_sent_to_releases_that_cycle() {
    let source = r#"
domain Agent[name] {
  state { hellos: int = 0 }
  on Hello() { hellos += 1 }
}
domain Pool[name] {
  state { sent: int = 0 }
  goal Sent { sent >= 1 }
  transition Greet for Sent { slice s { sent = 1  send Agent[key].Hello() } }
}
"#;
    let mut sim = Sim::new(source);
    ok(&mut sim, create("Agent", &[("a", &[])]));
    ok(&mut sim, create("Pool", &[("a", &[])]));
    // Run Pool[a]'s slice only: its message to Agent[a] is queued.
    let slice = sim.engine.pending().steps[0].step;
    sim.propose(Entry::RunStep { step: slice });
    assert_eq!(sim.engine.pending().steps.len(), 1, "the delivery");
    ok(&mut sim, delete("Agent", &["a"]));
    assert!(sim.engine.pending().steps.is_empty());
    let judged: Vec<String> =
        sim.engine.history(10).into_iter().map(|c| format!("{}:{}", c.domain, c.verdict)).collect();
    assert_eq!(judged, ["Pool[a]:converged"], "the cycle no longer waits for the message");
}

#[test]
fn a_static_pair_across_a_kind_holds_per_instance_and_ends_with_it() {
    let source = r#"
domain Cluster priority low {
  state { x: int = 0 }
  goal Idle { x == 0 }
  transition Calm for Idle { slice s { x = 0 } }
  on Set(v: int) { x = v }
}
domain Pool[name] priority high {
  reads Cluster
  goal Busy { Cluster.x >= 5 }
  transition Load for Busy { slice s { send Cluster.Set(v: 5) } }
}
"#;
    let mut sim = Sim::new(source);
    let mut worker = echo_count();
    sim.drive(100, &mut worker);
    assert_eq!(sim.status("Cluster", "Idle").0, GoalStatus::Satisfied, "no instance: nothing dominates");
    ok(&mut sim, create("Pool", &[("a", &[])]));
    sim.drive(100, &mut worker);
    assert_eq!(sim.status("Pool[a]", "Busy").0, GoalStatus::Satisfied);
    assert_eq!(sim.status("Cluster", "Idle").0, GoalStatus::Dominated);
    ok(&mut sim, delete("Pool", &["a"]));
    sim.drive(100, &mut worker);
    assert_eq!(sim.status("Cluster", "Idle").0, GoalStatus::Satisfied, "the dominator is gone");
}

/// A fleet that creates its nodes through their kind's `on create`.
const CREATES: &str = r#"
effect Cloud.Boot(node: string, count: int) -> int

domain Node[name] {
  state {
    owner: string = ""
    booted: int = 0
  }
  on create(by: string) { owner = by }
  goal Booted { booted > 0 }
  transition Boot for Booted {
    slice call { emit Cloud.Boot(node: key, count: 1) -> id }
    slice record { booted = id }
  }
}

domain Pool[name] {
  state { size: int = 1 }
  on Grow(by: int) { size += by }
}

domain Fleet {
  reads Node[*]
  state {
    names: list<string> = ["a", "b", "c"]
    grow: string = ""
  }
  goal Enough { count(Node[*]) >= len(names) }
  transition Add for Enough {
    slice s {
      for n in names { send Node[n].create(by: "fleet") }
    }
  }
  goal Grown { grow == "" }
  transition GrowPool for Grown {
    slice s {
      send Pool[grow].Grow(by: 1)
      grow = ""
    }
  }
}
"#;

#[test]
fn a_transition_creates_instances_through_on_create() {
    let compiled = lexum_compiler::compile("creates.lxm", CREATES, &lexum_compiler::CompileOptions::default());
    assert!(compiled.diagnostics.iter().all(|d| d.code.as_str() != "W002"), "{:?}", compiled.diagnostics);
    let mut sim = Sim::new(CREATES);
    assert_eq!(sim.status("Fleet", "Enough").0, GoalStatus::Repairing, "armed at install");
    sim.drive(500, &mut echo_count());
    assert_eq!(sim.status("Fleet", "Enough").0, GoalStatus::Satisfied);
    for key in ["a", "b", "c"] {
        let node = format!("Node[{key}]");
        assert_eq!(sim.engine.read(&node, "owner"), Some(Value::Str("fleet".into())), "{node}");
        assert_eq!(sim.status(&node, "Booted").0, GoalStatus::Satisfied, "{node} repaired its own goal");
    }
    // Naming one more node creates it; the others' `on create` runs again
    // and changes nothing.
    let names = Value::List(["a", "b", "c", "d"].map(|n| Value::Str(n.into())).to_vec());
    ok(
        &mut sim,
        Entry::mutation(vec![FieldWrite { domain: "Fleet".into(), field: "names".into(), value: names }], "t"),
    );
    sim.drive(500, &mut echo_count());
    assert_eq!(sim.engine.read("Node[d]", "booted"), Some(Value::Int(1)));
    assert_eq!(sim.engine.goals().iter().filter(|g| g.domain.starts_with("Node[")).count(), 4);
    let replica = Sim::replay(EngineConfig::default(), &sim.log);
    assert_eq!(replica.engine.state_hash(), sim.engine.state_hash());
}

#[test]
fn a_send_by_key_to_a_kind_without_on_create_reaches_only_live_instances() {
    let mut sim = Sim::new(CREATES);
    ok(&mut sim, create("Pool", &[("web", &[])]));
    let grow = |pool: &str| {
        Entry::mutation(
            vec![FieldWrite { domain: "Fleet".into(), field: "grow".into(), value: Value::Str(pool.into()) }],
            "t",
        )
    };
    ok(&mut sim, grow("web"));
    sim.drive(500, &mut echo_count());
    assert_eq!(sim.engine.read("Pool[web]", "size"), Some(Value::Int(2)));
    ok(&mut sim, grow("nope"));
    sim.drive(500, &mut echo_count());
    assert!(sim.engine.read("Pool[nope]", "size").is_none(), "no instance is created without `on create`");
    assert_eq!(sim.engine.read("Pool[web]", "size"), Some(Value::Int(2)));
}
