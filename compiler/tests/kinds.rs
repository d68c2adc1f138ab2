//! Kinds (`domain Pool[name]`): a domain whose instances are created at run
//! time. Inside a kind `key` is the instance's key, and `Kind[key]` names
//! the instance of another kind with the same key.

use lexum_compiler::program::{Expr, Stmt};
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
fn key_exists_only_in_kinds_and_other_indexes_are_not_yet_language() {
    let in_singleton =
        FLEET.replace("state { cap: int = 5000 }", "state { cap: int = 5000 }\n  goal G { key == \"x\" }");
    assert!(codes(&in_singleton).iter().any(|(c, _)| c == "E002"), "{:?}", codes(&in_singleton));
    let star = FLEET.replace("Pool[key].nodes >= min", "Pool[*].nodes >= min");
    assert!(codes(&star).iter().any(|(c, _)| c == "E001"), "{:?}", codes(&star));
    let field_named_key = FLEET.replace("state { min: int = 2 }", "state { min: int = 2  key: int = 0 }");
    assert!(codes(&field_named_key).iter().any(|(c, m)| c == "E002" && m.contains("named `key`")));
}
