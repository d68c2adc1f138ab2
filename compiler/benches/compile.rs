//! Compile benchmark: checks a generated program of 10,000 domains and
//! 100,000 goals and prints the time of each stage run (`compile` end to end).
//! Run with `cargo bench -p lexum-compiler --bench compile` (release mode).
//! Optional arguments: `DOMAINS GOALS_PER_DOMAIN`. It uses the allocator
//! `lexumctl` uses, so run 0 (a fresh process) is what `lexumctl check` sees.

use lexum_compiler::synth::synthetic_program;
use lexum_compiler::{compile, CompileOptions};
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let nums: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    // `cargo bench` passes `--bench`; under `cargo test` run a small smoke size.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let domains = nums.first().copied().unwrap_or(if benchmarking { 10_000 } else { 100 });
    let per = nums.get(1).copied().unwrap_or(10);
    let source = synthetic_program(domains, per);
    println!("source: {} domains, {} goals, {} bytes", domains, domains * per, source.len());
    let mut best = f64::MAX;
    let mut best_cpu = f64::MAX;
    for run in 0..3 {
        let start = Instant::now();
        let cpu_start = cpu_seconds();
        let c = compile("synthetic.lxm", &source, &CompileOptions::default());
        let secs = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu_start;
        best = best.min(secs);
        best_cpu = best_cpu.min(cpu);
        let errors = c.diagnostics.iter().filter(|d| d.is_error()).count();
        let Some(p) = c.program else {
            eprintln!("synthetic program failed to compile: {errors} errors");
            std::process::exit(1);
        };
        let start = Instant::now();
        let bytes = p.encode();
        let encode = start.elapsed().as_secs_f64();
        println!(
            "run {run}: compile {secs:.3} s wall, {cpu:.2} s cpu, {} diagnostics, encode {encode:.3} s ({} bytes)",
            c.diagnostics.len(),
            bytes.len()
        );
    }
    println!("best compile time: {best:.3} s wall, {best_cpu:.2} s cpu (budget 2 s)");
    stages(&source);
}

/// Times each stage once, to show where the time goes.
fn stages(source: &str) {
    use lexum_compiler::{check, livelock, lower, resolve, syntax};
    let options = CompileOptions::default();
    let mut diags = Vec::new();
    let t = Instant::now();
    let tokens = lexum_compiler::lexer::lex(source, &mut diags);
    let lex = t.elapsed().as_secs_f64();
    drop(tokens);
    let t = Instant::now();
    let file = syntax::parse_outline(source, &mut diags);
    let outline = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let syms = resolve::declare(&file, options.default_list_max, &mut diags);
    let declare = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (mut program, map) = check::check(file, source, &syms, &options, &mut diags);
    let checked = t.elapsed().as_secs_f64();
    let t = Instant::now();
    lower::fill_sets(&mut program, &map, true, &mut diags);
    let lowered = t.elapsed().as_secs_f64();
    let t = Instant::now();
    livelock::analyse(&mut program, &map, &mut diags);
    let live = t.elapsed().as_secs_f64();
    let t = Instant::now();
    drop((syms, map));
    let dropped = t.elapsed().as_secs_f64();
    let t = Instant::now();
    drop(program);
    let dropped_program = t.elapsed().as_secs_f64();
    println!(
        "stages: lex {lex:.3} s, outline parse {outline:.3} s, declare {declare:.3} s, check {checked:.3} s, sets {lowered:.3} s, \
         livelock {live:.3} s, drop of symbol tables {dropped:.3} s, drop of program {dropped_program:.3} s"
    );
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat`
/// (0 where that is unavailable). Wall time suffers on a shared machine.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
