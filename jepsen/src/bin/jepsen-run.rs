//! `jepsen-run`: the binary behind `jepsen/run`. One soak run of every
//! enabled workload under every enabled nemesis (see `lexum_jepsen::soak`);
//! its last line is the summary.
//!
//! Exit codes: 0 every checker passed; 1 a checker failed; 2 bad
//! arguments; 3 the run could not be carried out (setup failed).

use clap::Parser;
use lexum_jepsen::schedule::{parse_list, Nemesis};
use lexum_jepsen::soak::{self, Bug, Settings, Workload};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The raw command line.
#[derive(Parser, Debug)]
#[command(name = "jepsen/run", about = "Run Lexum's workloads against real lexumd processes under combined faults")]
struct Args {
    /// How long the workloads run while the faults act (heal, quiet
    /// period and final checks come after).
    #[arg(long, value_name = "SECONDS")]
    time_limit: u64,
    /// Comma-separated nemeses (partition, kill, pause, netem, membership,
    /// worker) or `all`.
    #[arg(long, default_value = "all")]
    nemesis: String,
    /// Comma-separated workloads (registers, set, effects, convergence,
    /// traps, replicas) or `all`.
    #[arg(long, default_value = "all")]
    workload: String,
    /// Seed of the fault schedule (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Where run directories go.
    #[arg(long, default_value = "store")]
    store: PathBuf,
    /// Test-only: a bug the checkers must catch (`ack-before-commit`,
    /// `read-without-read-index`, `leader-forgets-retry-counts`: lexumd's
    /// `--test-fault`; `worker-ignores-deadline`: the worker processes').
    #[arg(long, hide = true)]
    bug: Option<String>,
}

/// Turns the raw flags into settings, or says what is wrong.
fn settings(args: Args) -> Result<Settings, String> {
    if args.time_limit == 0 || args.time_limit > 24 * 3600 {
        return Err("--time-limit must be between 1 and 86400 seconds".into());
    }
    let nemeses = parse_list(&args.nemesis, &Nemesis::ALL).map_err(|e| e.to_string())?;
    let workloads = parse_list(&args.workload, &Workload::ALL).map_err(|e| e.to_string())?;
    let bug = match args.bug.as_deref() {
        None => None,
        Some(name) => Some(Bug::from_name(name).ok_or_else(|| format!("unknown --bug `{name}`"))?),
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(1)
    });
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    Ok(Settings {
        time_limit: Duration::from_secs(args.time_limit),
        nemeses,
        workloads,
        seed,
        store: args.store,
        ci,
        bug,
    })
}

fn main() -> ExitCode {
    let settings = match settings(Args::parse()) {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("jepsen/run: {message}");
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "jepsen: seed {} time limit {:?} nemeses {:?} workloads {:?}{}",
        settings.seed,
        settings.time_limit,
        settings.nemeses,
        settings.workloads,
        if settings.ci { " (CI: a skipped nemesis fails)" } else { "" }
    );
    match soak::run(&settings) {
        Ok(report) => {
            for verdict in &report.verdicts {
                let state = if verdict.valid { "ok" } else { "FAILED" };
                println!("{:<12} {state} {}", verdict.checker, verdict.detail);
                for anomaly in verdict.anomalies.iter().take(10) {
                    println!("    {anomaly}");
                }
            }
            println!("store: {}", report.store.display());
            println!("{}", report.summary);
            if report.valid() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => {
            eprintln!("jepsen/run: {error}");
            ExitCode::from(3)
        }
    }
}
