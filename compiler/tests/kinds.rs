//! Kinds (`domain Pool[name]`): a domain whose instances are created at run
//! time. Inside a kind `key` is the instance's key, and `Kind[key]` names
//! the instance of another kind with the same key.

use lexum_compiler::program::{Aggregate, Expr, Stmt};
use lexum_compiler::{compile, CompileOptions};

const FLEET: &str = r#"
effect Cloud.SetNodeCount(pool: string, count: int) -> int

domain Pool[name] priority high {
  state { nodes: int = 3  want: int = 3 }
  goal Sized { nodes == want }
  transition Resize for Sized {
    slice call { emit Cloud.SetNodeCount(pool: key, count: want) -> got }
    slice record { nodes = got }
  }
  on Grow(by: int) { want += by }
}

domain Autoscaler[name] {
  reads Pool[key]
  state { min: int = 2 }
  goal Enough { Pool[key].nodes >= min }
  transition Ask for Enough { slice s { send Pool[key].Grow(by: 1) } }
}

domain Budget {
  state { cap: int = 5000 }
}
"#;

fn codes(source: &str) -> Vec<(String, String)> {
    let c = compile("k.lxm", source, &CompileOptions::default());
    c.diagnostics.iter().map(|d| (d.code.as_str().to_string(), d.message.clone())).collect()
}

#[test]
fn kinds_compile_to_templates_with_keys() {
    let c = compile("fleet.lxm", FLEET, &CompileOptions::default());
    let program = c.program.unwrap_or_else(|| panic!("{:?}", c.diagnostics));
    let keys: Vec<Option<&str>> = program.domains.iter().map(|d| d.key.as_deref()).collect();
    assert_eq!(keys, [Some("name"), Some("name"), None]);
    let resize = &program.transitions[0];
    let Stmt::Emit { args, .. } = &resize.slices[0].body[0] else { panic!("emit") };
    assert_eq!(args[0], Expr::Key, "`key` is the instance's key");
    // Autoscaler's goal reads Pool's field: the instance with the same key
    // at run time, the template's field in the program.
    let enough = &program.goals[1];
    assert_eq!(program.fields[enough.read_set[0].index()].name, "nodes");
}

#[test]
fn a_kind_is_addressed_only_as_an_instance_and_only_from_one() {
    let unkeyed = FLEET.replace("Pool[key].nodes >= min", "Pool.nodes >= min");
    assert!(codes(&unkeyed).iter().any(|(c, m)| c == "E002" && m.contains("is a kind")), "{:?}", codes(&unkeyed));
    let unkeyed_read = FLEET.replace("reads Pool[key]", "reads Pool");
    assert!(codes(&unkeyed_read).iter().any(|(c, m)| c == "E002" && m.contains("is a kind")));
    let from_singleton = FLEET.replace("state { cap: int = 5000 }", "reads Pool[key]\n  state { cap: int = 5000 }");
    assert!(codes(&from_singleton).iter().any(|(c, m)| c == "E002" && m.contains("singleton has no key")));
    let keyed_singleton = FLEET.replace("state { min: int = 2 }", "reads Budget[key]\n  state { min: int = 2 }");
    assert!(codes(&keyed_singleton).iter().any(|(c, m)| c == "E002" && m.contains("not a kind")));
    let send_unkeyed = FLEET.replace("send Pool[key].Grow", "send Pool.Grow");
    assert!(codes(&send_unkeyed).iter().any(|(c, m)| c == "E002" && m.contains("is a kind")));
}

#[test]
fn key_exists_only_in_kinds_and_every_instance_only_in_aggregates() {
    let in_singleton =
        FLEET.replace("state { cap: int = 5000 }", "state { cap: int = 5000 }\n  goal G { key == \"x\" }");
    assert!(codes(&in_singleton).iter().any(|(c, _)| c == "E002"), "{:?}", codes(&in_singleton));
    let star = FLEET.replace("Pool[key].nodes >= min", "Pool[*].nodes >= min");
    assert!(codes(&star).iter().any(|(c, m)| c == "E003" && m.contains("every instance")), "{:?}", codes(&star));
    let field_named_key = FLEET.replace("state { min: int = 2 }", "state { min: int = 2  key: int = 0 }");
    assert!(codes(&field_named_key).iter().any(|(c, m)| c == "E002" && m.contains("named `key`")));
}

const AGGREGATES: &str = r#"
domain Pool[name] {
  state { nodes: int = 3  ready: bool = false }
}

domain Fleet {
  reads Pool[*]
  state { budget: int = 100  primary: string = "web" }
  invariant Budget { sum(Pool[*].nodes) <= budget }
  goal Ready { all(Pool[*].ready) && count(Pool[*]) >= 1 }
  goal Primary { Pool[primary].nodes >= min(Pool[*].nodes) }
}
"#;

#[test]
fn aggregates_and_lookups_compile_to_the_kinds_template() {
    let out = compile("agg.lxm", AGGREGATES, &CompileOptions::default());
    let program = out.program.unwrap_or_else(|| panic!("{:?}", out.diagnostics));
    let pool = program.domain_by_name("Pool").expect("kind");
    let nodes = program.field_by_name(pool, "nodes").expect("field");
    let fleet = program.domain_by_name("Fleet").expect("singleton");
    let budget = &program.invariants[program.domains[fleet.index()].invariants[0].index()];
    let Expr::Binary(_, sum, _) = &budget.predicate else { panic!("{:?}", budget.predicate) };
    assert_eq!(**sum, Expr::Aggregate { op: Aggregate::Sum, kind: pool, field: Some(nodes) });
    assert!(budget.read_set.contains(&nodes), "the template field stands for every instance's");
    let primary = program.goal_by_name(fleet, "Primary").expect("goal");
    let Expr::Binary(_, lookup, _) = &program.goals[primary.index()].predicate else { panic!() };
    assert!(matches!(**lookup, Expr::Lookup { kind, field, .. } if kind == pool && field == nodes), "{lookup:?}");
}

#[test]
fn aggregates_are_declared_typed_and_incremental() {
    let has = |source: &str, code: &str, text: &str| {
        let found = codes(source);
        assert!(found.iter().any(|(c, m)| c == code && m.contains(text)), "{code} {text}: {found:?}");
    };
    has(&AGGREGATES.replace("reads Pool[*]\n", ""), "E007", "reads Pool[*]");
    has(&AGGREGATES.replace("sum(Pool[*].nodes)", "sum(Pool[*].nodes * 2)"), "E008", "incrementally");
    has(&AGGREGATES.replace("sum(Pool[*].nodes)", "sum(Pool[*].ready)"), "E003", "cannot aggregate bool");
    has(&AGGREGATES.replace("all(Pool[*].ready)", "all(Pool[*].nodes)"), "E003", "cannot aggregate int");
    has(&AGGREGATES.replace("count(Pool[*])", "count(Fleet[*])"), "E002", "not a kind");
    has(&AGGREGATES.replace("sum(Pool[*].nodes)", "sum(Pool[*].size)"), "E002", "no field `size`");
    has(&AGGREGATES.replace("Pool[primary].nodes", "Pool[budget].nodes"), "E003", "key is a string");
    has(&AGGREGATES.replace("reads Pool[*]", "reads Fleet[*]"), "E002", "not a kind");
    has(&AGGREGATES.replace("budget: int = 100", "budget: int = sum(Pool[*].nodes)"), "E003", "constant");
}
