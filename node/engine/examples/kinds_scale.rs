//! Engine-level scale of kinds: creates N instances of a kind with ten goals
//! each (in requests of 1,000), then measures a mutation's cost and a
//! filtered goal listing. `cargo run --release -p lexum-engine --example
//! kinds_scale -- 10000`.

use std::time::Instant;

use lexum_compiler::program::Value;
use lexum_compiler::{compile, CompileOptions};
use lexum_engine::{Engine, EngineConfig, Entry, FieldWrite, NewInstance};

fn source() -> String {
    let goals: String = (0..10).map(|k| format!("  goal G{k} {{ x >= {k} }}\n")).collect();
    format!("domain Pool[name] {{\n  state {{ x: int = 0 }}\n{goals}}}\n")
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let program = compile("scale.lxm", &source(), &CompileOptions::default()).program.expect("compiles");
    let mut engine = Engine::new(EngineConfig::default());
    let mut index = 1;
    engine.apply(index, &Entry::SubmitProgram { bytes: program.encode() });
    let started = Instant::now();
    for chunk in 0..n.div_ceil(1000) {
        let instances = (chunk * 1000..((chunk + 1) * 1000).min(n))
            .map(|i| NewInstance { key: format!("p{i}"), values: vec![] })
            .collect();
        index += 1;
        let applied = engine.apply(
            index,
            &Entry::CreateInstances { kind: "Pool".into(), instances, upsert: false, principal: "bench".into() },
        );
        assert!(applied.outcome.is_ok(), "{:?}", applied.outcome);
    }
    println!("created {n} instances ({} goals) in {:.2} s", n * 10, started.elapsed().as_secs_f64());
    let started = Instant::now();
    let rounds = 20_000;
    // As the apply benchmark: one instance's field, alternating 2 and 9,
    // so each mutation flips the same goals whatever the fleet's size.
    let domain = format!("Pool[p{}]", n / 2);
    for r in 0..rounds {
        index += 1;
        let write = FieldWrite { domain: domain.clone(), field: "x".into(), value: Value::Int((r % 2) as i64 * 7 + 2) };
        engine.apply(index, &Entry::mutation(vec![write], "bench"));
    }
    println!("mutation: {:.2} µs each", started.elapsed().as_secs_f64() * 1e6 / rounds as f64);
    let started = Instant::now();
    let (page, total) = engine.goals_page(None, Some(lexum_engine::GoalStatus::Violated), 0, 100);
    println!(
        "goals --status VIOLATED --limit 100: {} of {total} in {:.1} ms",
        page.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
    let started = Instant::now();
    let snapshot = engine.snapshot();
    println!("snapshot: {:.1} MB in {:.2} s", snapshot.len() as f64 / 1e6, started.elapsed().as_secs_f64());
    let started = Instant::now();
    let restored = Engine::restore(&snapshot).expect("restores");
    println!("restore: {:.2} s ({} goals)", started.elapsed().as_secs_f64(), restored.goals().len());
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss = status.lines().find(|l| l.starts_with("VmHWM")).unwrap_or("VmHWM: ?");
    println!("peak RSS {}", rss.trim_start_matches("VmHWM:").trim());
}
