//! Every program in `examples/` compiles without errors.

use lexum_compiler::{compile, render, Compilation, CompileOptions, Severity};

/// Compiles `examples/<name>` and checks the codes of its warnings.
fn check(name: &str, expected_warnings: &str) -> Compilation {
    let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let c = compile(name, &source, &CompileOptions::default());
    let rendered = render(&c.diagnostics, name, &source, false);
    assert!(c.program.is_some(), "{name} has errors:\n{rendered}");
    let warnings: Vec<&str> =
        c.diagnostics.iter().filter(|d| d.severity == Severity::Warning).map(|d| d.code.as_str()).collect();
    assert_eq!(warnings.join(" "), expected_warnings, "{rendered}");
    c
}

#[test]
fn fleet() {
    check("fleet.lxm", "");
}

#[test]
fn autoscaler() {
    check("autoscaler.lxm", "");
}

#[test]
fn drift() {
    check("drift.lxm", "");
}

#[test]
fn priorities_records_dominance() {
    let c = check("priorities.lxm", "W001");
    let p = c.program.expect("compiles");
    assert_eq!(p.dominance.len(), 1);
    assert_eq!(p.goal_path(p.dominance[0].higher), "Quota.UnderQuota");
    assert_eq!(p.goal_path(p.dominance[0].lower), "Batch.Throughput");
}

#[test]
fn tugofwar_compiles_and_both_transitions_write_both_fields() {
    let p = check("tugofwar.lxm", "").program.expect("compiles");
    let heater = p.field_by_name(p.domain_by_name("Thermostat").expect("domain"), "heater").expect("field");
    let cooler = p.field_by_name(p.domain_by_name("Thermostat").expect("domain"), "cooler").expect("field");
    for t in &p.transitions {
        assert_eq!(t.write_set, vec![heater, cooler]);
        assert!(t.reaches_goal);
    }
}

#[test]
fn every_example_compiles() {
    let dir = format!("{}/../examples", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("examples dir").flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "lxm") {
            let name = path.file_name().and_then(|s| s.to_str()).unwrap_or_default().to_string();
            let source = std::fs::read_to_string(&path).expect("readable");
            let c = compile(&name, &source, &CompileOptions::default());
            assert!(c.program.is_some(), "{}", render(&c.diagnostics, &name, &source, false));
            n += 1;
        }
    }
    assert!(n >= 5);
}
