//! No effect is executed by two workers at once, and every goal converges
//! once the faults stop.
//!
//! Three SDK workers serve one effect for several domains whose targets a
//! client keeps moving. A third of the attempts run longer than the effect
//! timeout, so the leader times them out and hands them to another worker
//! while the old handler must already be cancelled. Meanwhile a nemesis
//! kills the leader, pauses it (SIGSTOP) and kills a worker (its process
//! dies with its handlers: here the worker's future is dropped). Every
//! handler records its execution interval; afterwards no two executions of
//! one effect (one idempotency key) may overlap.
//!
//! CI runs it for 20 s; `LEXUM_JEPSEN_SECONDS` runs it longer (at most an
//! hour), like the linearizability test.

use lexum_client::{Client, ClientConfig, EffectError, EffectOutput, EffectTask, Value, Worker};
use lexum_jepsen::cluster::{run_length, ClusterOptions, LocalCluster};
use lexum_jepsen::exclusive::{overlaps, ExecutionLog};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Domains with a goal each, so several effects run at once.
const DOMAINS: usize = 6;
/// Workers serving the effect at any time.
const WORKERS: usize = 3;
/// The cluster's per-attempt deadline.
const EFFECT_TIMEOUT: Duration = Duration::from_millis(400);
const RUN: Duration = Duration::from_secs(20);

fn program() -> String {
    let mut source = String::from("effect Ops.Apply(n: int) -> int\n");
    for d in 0..DOMAINS {
        source.push_str(&format!(
            "\ndomain Job{d} {{\n  state {{\n    done: int = 0\n    want: int = 1\n  }}\n  goal Applied {{ done == want }}\n  \
             transition Apply for Applied retry 100 backoff 20ms..100ms {{\n    \
             slice call {{ emit Ops.Apply(n: want) -> got }}\n    slice record {{ done = got }}\n  }}\n}}\n"
        ));
    }
    source
}

/// How long an attempt's handler runs: a deterministic function of the
/// effect and attempt, over the timeout for about a third of them.
fn work_time(effect_id: u64, attempt: u32) -> Duration {
    let mut x = effect_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(attempt).wrapping_mul(0xD1B5_4A32_D192_ED03);
    x ^= x >> 29;
    let roll = x % 100;
    if roll < 33 {
        EFFECT_TIMEOUT + Duration::from_millis(100 + roll * 10)
    } else {
        Duration::from_millis(roll * 2)
    }
}

/// Starts a worker named `name` that records every execution in `log`.
fn start_worker(endpoints: &[String], name: String, log: ExecutionLog) -> JoinHandle<()> {
    let config = ClientConfig::new(endpoints.iter().cloned()).with_deadline(Duration::from_secs(120));
    let client = Client::new_lazy(config).expect("client config");
    let worker_name = name.clone();
    let worker = Worker::new(client).worker_id(name).concurrency(2).handle("Ops.Apply", move |task: EffectTask| {
        let log = log.clone();
        let worker_name = worker_name.clone();
        async move {
            let _running = log.begin(&task.idempotency_key, &worker_name, task.attempt);
            tokio::time::sleep(work_time(task.effect_id, task.attempt)).await;
            let n = task.int_arg("n").ok_or_else(|| EffectError::new("n missing"))?;
            Ok(EffectOutput::value(Value::Int(n)))
        }
    });
    tokio::spawn(async move {
        if let Err(error) = worker.run().await {
            eprintln!("worker stopped: {error}");
        }
    })
}

/// Moves the domains' targets until `stop`; returns how many writes were acknowledged.
async fn move_targets(client: Client, stop: Instant) -> u64 {
    let mut acknowledged = 0;
    for round in 0..100_000u64 {
        if Instant::now() >= stop {
            break;
        }
        let domain = format!("Job{}", round % DOMAINS as u64);
        let write = client.set(&domain, "want", Value::Int(round as i64 + 2));
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(3), write).await {
            acknowledged += 1;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    acknowledged
}

/// Kills or pauses the leader and kills workers until `stop`.
async fn nemesis(
    cluster: &mut LocalCluster,
    workers: &mut [JoinHandle<()>],
    endpoints: &[String],
    log: &ExecutionLog,
    stop: Instant,
) -> Vec<String> {
    let mut done = Vec::new();
    for round in 0..10_000usize {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        if Instant::now() + Duration::from_secs(2) >= stop {
            break;
        }
        let leader = cluster.wait_for_leader(Duration::from_secs(10)).await.ok();
        match (round % 3, leader) {
            (0, Some(victim)) => {
                cluster.kill(victim).expect("kill");
                tokio::time::sleep(Duration::from_millis(800)).await;
                cluster.restart(victim).expect("restart");
                done.push(format!("kill -9 leader {victim}, restart"));
            }
            (1, Some(victim)) => {
                cluster.pause(victim, true).expect("pause");
                tokio::time::sleep(Duration::from_millis(1500)).await;
                cluster.pause(victim, false).expect("resume");
                done.push(format!("SIGSTOP leader {victim} for 1.5 s"));
            }
            _ => {
                let slot = (round / 3) % workers.len();
                workers[slot].abort();
                tokio::time::sleep(Duration::from_millis(300)).await;
                workers[slot] = start_worker(endpoints, format!("w{slot}-{round}"), log.clone());
                done.push(format!("kill worker {slot}, start a new one"));
            }
        }
    }
    done
}

/// Waits (bounded) until every goal holds.
async fn wait_for_convergence(client: &Client, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut unsatisfied = vec!["no answer".to_string()];
    while Instant::now() < deadline {
        if let Ok(goals) = client.goals().await {
            unsatisfied = goals
                .iter()
                .filter(|g| g.status != "SATISFIED")
                .map(|g| format!("{}.{} {}", g.domain, g.goal, g.status))
                .collect();
            if unsatisfied.is_empty() && goals.len() == DOMAINS {
                return unsatisfied;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    unsatisfied
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_effect_runs_on_two_workers_at_once_under_timeouts_and_faults() {
    let options = ClusterOptions { effect_timeout_ms: EFFECT_TIMEOUT.as_millis() as u64, ..ClusterOptions::default() };
    let mut cluster = LocalCluster::start(options).await.expect("cluster");
    let endpoints: Vec<String> = cluster.nodes.values().map(|n| n.addr.clone()).collect();
    let client = Client::new_lazy(ClientConfig::new(endpoints.iter().cloned())).expect("client config");
    client.submit_source("jobs.lxm", &program()).await.expect("submit");

    let log = ExecutionLog::default();
    let mut workers: Vec<JoinHandle<()>> =
        (0..WORKERS).map(|slot| start_worker(&endpoints, format!("w{slot}"), log.clone())).collect();
    let stop = Instant::now() + run_length(RUN);
    let mover = tokio::spawn(move_targets(client.clone(), stop));
    let faults = nemesis(&mut cluster, &mut workers, &endpoints, &log, stop).await;
    let moved = mover.await.expect("target mover");

    let unsatisfied = wait_for_convergence(&client, Duration::from_secs(90)).await;
    for worker in &workers {
        worker.abort();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let executions = log.executions();
    let retried = executions.iter().filter(|e| e.attempt > 1).count();
    eprintln!("faults: {faults:?}; {moved} target moves, {} executions, {retried} retries", executions.len());

    assert!(unsatisfied.is_empty(), "goals did not converge after the faults: {unsatisfied:?}");
    assert!(faults.len() >= 3, "the nemesis acted: {faults:?}");
    assert!(moved >= 20, "too few target moves to mean anything: {moved}");
    assert!(retried >= 5, "too few timed-out attempts were retried ({retried}) to test re-dispatch");
    let found = overlaps(&executions);
    let shown: Vec<String> = found.iter().take(5).map(ToString::to_string).collect();
    assert!(found.is_empty(), "{} effect executions overlapped, e.g.:\n{}", found.len(), shown.join("\n"));
}
