//! Aggregates over a kind (`count`, `sum`, `min`, `max`, `all`, `any` of
//! `Pool[*]`) and lookups by a computed key (`Pool[primary].nodes`): kept
//! incrementally, equal to a recomputation under random creates, deletes
//! and sets, and checked by invariants before anything changes.

mod common;

use common::{echo_count, Sim};
use lexum_compiler::program::Value;
use lexum_engine::{Engine, EngineConfig, Entry, FieldWrite, GoalStatus, NewInstance};
use proptest::prelude::*;

const FLEET: &str = include_str!("fleet_aggregates.lxm");

fn create(keys: &[&str]) -> Entry {
    let instances = keys.iter().map(|key| NewInstance { key: key.to_string(), values: vec![] }).collect();
    Entry::CreateInstances { kind: "Pool".into(), instances, upsert: false, principal: "test".into() }
}

fn delete(keys: &[&str]) -> Entry {
    Entry::DeleteInstances { kind: "Pool".into(), keys: keys.iter().map(|k| k.to_string()).collect() }
}

fn set(domain: &str, field: &str, value: Value) -> Entry {
    Entry::mutation(vec![FieldWrite { domain: domain.into(), field: field.into(), value }], "test")
}

fn ok(sim: &mut Sim, entry: Entry) {
    let applied = sim.propose(entry);
    assert_eq!(applied.outcome, Ok(()), "{:?}", applied.events);
}

fn refused(sim: &mut Sim, entry: Entry) -> String {
    let before = (sim.engine.goals(), sim.engine.state_hash());
    let applied = sim.propose(entry);
    let rejection = applied.outcome.expect_err("refused");
    assert_eq!(sim.engine.goals(), before.0, "nothing changed");
    rejection.message
}

fn holds(sim: &Sim, goal: &str) -> bool {
    sim.goal("Fleet", goal).holds
}

#[test]
fn aggregates_follow_creates_repairs_and_deletes() {
    let mut sim = Sim::new(FLEET);
    // Over no instances: all holds, any does not, min has no value.
    assert!(holds(&sim, "AllReady") && !holds(&sim, "SomeReady") && !holds(&sim, "Smallest"));
    ok(&mut sim, create(&["web", "db"]));
    assert!(!holds(&sim, "AllReady") && !holds(&sim, "ReadyCount"));
    sim.drive(300, &mut echo_count());
    assert!(holds(&sim, "AllReady") && holds(&sim, "SomeReady") && holds(&sim, "Smallest"));
    assert!(holds(&sim, "ReadyCount"));
    // A new instance is not ready yet: the fleet goal is violated again.
    ok(&mut sim, create(&["cache"]));
    assert!(!holds(&sim, "AllReady"));
    assert_eq!(sim.status("Fleet", "Smallest").0, GoalStatus::Violated, "min counts the new instance's 1");
    ok(&mut sim, delete(&["cache"]));
    assert!(holds(&sim, "AllReady") && holds(&sim, "Smallest"));
    assert!(sim.engine.aggregates_consistent());
}

#[test]
fn an_aggregate_over_its_own_kind_reevaluates_every_instance() {
    let mut sim = Sim::new(FLEET);
    ok(&mut sim, create(&["web", "db"]));
    sim.drive(300, &mut echo_count());
    assert!(sim.goal("Pool[db]", "NoOutlier").holds);
    // Lowering web's want alone leaves max(want) at db's 3; lowering db's
    // too breaks both goals through max(), before any repair.
    ok(&mut sim, set("Pool[web]", "want", Value::Int(2)));
    assert!(sim.goal("Pool[web]", "NoOutlier").holds);
    let writes =
        ["web", "db"].map(|k| FieldWrite { domain: format!("Pool[{k}]"), field: "want".into(), value: Value::Int(2) });
    ok(&mut sim, Entry::mutation(writes.to_vec(), "test"));
    assert!(!sim.goal("Pool[db]", "NoOutlier").holds && !sim.goal("Pool[web]", "NoOutlier").holds);
    sim.drive(300, &mut echo_count());
    assert!(sim.goal("Pool[db]", "NoOutlier").holds, "repaired down to 2");
    assert_eq!(
        sim.engine.goals().into_iter().map(|g| g.holds).collect::<Vec<_>>(),
        sim.engine.evaluate_all().into_iter().map(|(_, _, h)| h).collect::<Vec<_>>()
    );
}

#[test]
fn invariants_over_aggregates_refuse_creates_sets_and_deletes_whole() {
    let mut sim = Sim::new(FLEET);
    ok(&mut sim, create(&["a", "b", "c", "d"]));
    let message = refused(&mut sim, create(&["e", "f"]));
    assert!(message.contains("Fleet.Capacity"), "{message}");
    assert!(sim.engine.read("Pool[e]", "nodes").is_none(), "no instance of the batch was created");
    ok(&mut sim, create(&["e"]));
    // Five pools want 15 of a budget of 40; 30 more is over it.
    let message = refused(&mut sim, set("Pool[a]", "want", Value::Int(33)));
    assert!(message.contains("Fleet.Budget"), "{message}");
    ok(&mut sim, set("Pool[a]", "want", Value::Int(28)));
    let message = refused(&mut sim, set("Fleet", "budget", Value::Int(39)));
    assert!(message.contains("Fleet.Budget"), "{message}");
    assert!(sim.engine.aggregates_consistent());
}

#[test]
fn a_lookup_by_a_computed_key_reads_that_instance_and_a_missing_one_does_not_hold() {
    let mut sim = Sim::new(FLEET);
    assert_eq!(sim.status("Fleet", "PrimaryBig").0, GoalStatus::Violated, "no Pool[web] yet");
    ok(&mut sim, create(&["web"]));
    sim.drive(300, &mut echo_count());
    assert!(holds(&sim, "PrimaryBig"));
    ok(&mut sim, set("Fleet", "primary", Value::Str("nope".into())));
    assert!(!holds(&sim, "PrimaryBig"));
    ok(&mut sim, set("Fleet", "primary", Value::Str("web".into())));
    assert!(holds(&sim, "PrimaryBig"));
    ok(&mut sim, delete(&["web"]));
    assert!(!holds(&sim, "PrimaryBig"), "a deleted instance is missing");
}

/// One step of a random run.
#[derive(Clone, Debug)]
enum Op {
    Create(usize),
    Delete(usize),
    Want(usize, i64),
    Nodes(usize, i64),
    Ready(usize, bool),
    Lead,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0usize..6).prop_map(Op::Create),
        1 => (0usize..6).prop_map(Op::Delete),
        2 => (0usize..6, -3i64..12).prop_map(|(k, v)| Op::Want(k, v)),
        2 => (0usize..6, -3i64..12).prop_map(|(k, v)| Op::Nodes(k, v)),
        1 => (0usize..6, any::<bool>()).prop_map(|(k, b)| Op::Ready(k, b)),
        4 => Just(Op::Lead),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]
    #[test]
    fn aggregates_equal_a_full_recomputation_under_random_creates_deletes_and_sets(ops in proptest::collection::vec(op(), 1..80)) {
        let mut sim = Sim::new(FLEET);
        let keys = ["a", "b", "c", "d", "e", "f"];
        let mut worker = echo_count();
        for op in &ops {
            let pool = |k: &usize| format!("Pool[{}]", keys[*k]);
            match op {
                Op::Create(k) => { sim.propose(create(&[keys[*k]])); }
                Op::Delete(k) => { sim.propose(delete(&[keys[*k]])); }
                Op::Want(k, v) => { sim.propose(set(&pool(k), "want", Value::Int(*v))); }
                Op::Nodes(k, v) => { sim.propose(set(&pool(k), "nodes", Value::Int(*v))); }
                Op::Ready(k, b) => { sim.propose(set(&pool(k), "ready", Value::Bool(*b))); }
                Op::Lead => { sim.step(&mut worker, true); }
            }
            prop_assert!(sim.engine.aggregates_consistent(), "after {:?}", op);
            let incremental: Vec<(String, String, bool)> =
                sim.engine.goals().into_iter().map(|g| (g.domain, g.goal, g.holds)).collect();
            prop_assert_eq!(incremental, sim.engine.evaluate_all());
        }
        let replica = Sim::replay(EngineConfig::default(), &sim.log);
        prop_assert_eq!(replica.engine.state_hash(), sim.engine.state_hash());
        let restored = Engine::restore(&sim.engine.snapshot()).expect("restores");
        prop_assert!(restored.aggregates_consistent());
        prop_assert_eq!(restored.goals(), sim.engine.goals());
    }
}
