//! `jepsen-worker`: an SDK worker process for `jepsen/run`'s effects
//! workload. It serves `Ops.Apply(n) -> int` in 20 ms steps and appends
//! one JSON line per step (and one when done) to its log (see
//! `lexum_jepsen::effects`), and `Ops.Fail(n)`, which logs one step and
//! fails every attempt. Before every step it checks the task's
//! deadline and gives up past it; `--ignore-deadline` (a test-only bug
//! switch) keeps working in a detached task the SDK cannot cancel.
//!
//! Exit codes: 0 when stopped by SIGTERM/Ctrl-C, 1 on an error.

use anyhow::Context;
use clap::Parser;
use lexum_client::{Client, ClientConfig, EffectError, EffectOutput, EffectTask, Value, Worker, WorkerOptions};
use lexum_jepsen::effects::{monotonic_ns, ActLine};
use lexum_jepsen::program::FAILING_EFFECT;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long one step of work takes.
const STEP: Duration = Duration::from_millis(20);

#[derive(Parser, Debug)]
#[command(about = "A worker process for jepsen/run's effects workload")]
struct Args {
    /// Node addresses, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    /// This worker's name (in its log lines and the cluster's).
    #[arg(long)]
    name: String,
    /// The JSON-lines log to append to.
    #[arg(long)]
    log: PathBuf,
    /// Tasks run at once.
    #[arg(long, default_value_t = 2)]
    concurrency: u32,
    /// Test-only bug: keep working past a task's deadline.
    #[arg(long)]
    ignore_deadline: bool,
}

/// The log file, one `write` per line so a kill -9 loses at most a line.
#[derive(Clone)]
struct Log {
    file: Arc<Mutex<std::fs::File>>,
    worker: String,
}

impl Log {
    fn write(&self, ev: &str, task: &EffectTask, n: i64) {
        let line = ActLine {
            ev: ev.into(),
            effect: task.effect.clone(),
            key: task.idempotency_key.clone(),
            worker: self.worker.clone(),
            attempt: task.attempt,
            n,
            t: monotonic_ns(),
        };
        if let Ok(mut text) = serde_json::to_string(&line) {
            text.push('\n');
            let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
            let _ = file.write_all(text.as_bytes());
        }
    }
}

/// Steps an attempt takes: a deterministic function of the effect and the
/// attempt; about one in ten outlasts a one-second effect timeout.
fn steps(effect_id: u64, attempt: u32) -> u32 {
    let mut x = effect_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(attempt).wrapping_mul(0xD1B5_4A32_D192_ED03);
    x ^= x >> 29;
    let roll = (x % 100) as u32;
    if roll < 10 {
        70 + roll
    } else {
        2 + roll / 8
    }
}

/// Runs the steps of `task`; `honour` checks the deadline before each.
async fn work(log: Log, task: EffectTask, n: i64, honour: bool) -> Result<EffectOutput, EffectError> {
    for _ in 0..steps(task.effect_id, task.attempt) {
        if honour && task.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(EffectError::new("past the deadline"));
        }
        log.write("act", &task, n);
        tokio::time::sleep(STEP).await;
    }
    log.write("done", &task, n);
    Ok(EffectOutput::value(Value::Int(n)))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.log)
        .with_context(|| format!("opening {}", args.log.display()))?;
    let log = Log { file: Arc::new(Mutex::new(file)), worker: args.name.clone() };
    let config = ClientConfig::new(args.endpoints.iter().cloned()).with_deadline(Duration::from_secs(10));
    let client = Client::new_lazy(config).context("client configuration")?;
    let options = WorkerOptions {
        worker_id: args.name.clone(),
        concurrency: args.concurrency,
        shutdown_grace: Duration::from_secs(2),
        reconnect_window: Duration::from_secs(3600),
    };
    let ignore = args.ignore_deadline;
    let fail_log = log.clone();
    let worker = Worker::new(client).with_options(options).handle("Ops.Apply", move |task: EffectTask| {
        let log = log.clone();
        async move {
            let n = task.int_arg("n").ok_or_else(|| EffectError::new("n missing"))?;
            if ignore {
                // The bug: the work goes on in a task the SDK cannot cancel.
                let detached = tokio::spawn(work(log, task, n, false));
                return detached.await.map_err(|e| EffectError::new(e.to_string()))?;
            }
            work(log, task, n, true).await
        }
    });
    let worker = worker.handle(FAILING_EFFECT, move |task: EffectTask| {
        let log = fail_log.clone();
        async move {
            let n = task.int_arg("n").ok_or_else(|| EffectError::new("n missing"))?;
            log.write("act", &task, n);
            Err::<EffectOutput, _>(EffectError::new("Ops.Fail fails every attempt"))
        }
    });
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    };
    worker.run_until(stop).await.context("worker")?;
    Ok(())
}
