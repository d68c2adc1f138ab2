//! Writes the benchmark's synthetic program to stdout, so a one-shot
//! `lexumctl check` can be timed on it:
//! `cargo run --release -p lexum-compiler --example synth -- 10000 10 > big.lxm`.

use lexum_compiler::synth::synthetic_program;
use std::io::Write;

fn main() -> std::io::Result<()> {
    let nums: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let domains = nums.first().copied().unwrap_or(10_000);
    let goals_per_domain = nums.get(1).copied().unwrap_or(10);
    std::io::stdout().lock().write_all(synthetic_program(domains, goals_per_domain).as_bytes())
}
