//! An example worker that simulates a small cloud (node pools and firewall
//! rules), serves the effects of `examples/fleet.lxm` and
//! `examples/worker/cloud.lxm`, and reports observations back to the
//! cluster. See `examples/worker/README.md`.
//!
//! ```sh
//! cargo run -p lexum-client --example fleet_worker -- --endpoints 127.0.0.1:7101,127.0.0.1:7102
//! ```

use lexum_client::{
    Client, ClientConfig, EffectError, EffectOutput, EffectTask, FieldWrite, Value, Worker, DEFAULT_ENDPOINTS,
};
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The simulated cloud.
#[derive(Default)]
struct Cloud {
    pools: BTreeMap<String, i64>,
    firewall: Vec<String>,
    executed: BTreeSet<String>,
}

/// Shared state of the handlers.
#[derive(Clone)]
struct Sim {
    cloud: Arc<Mutex<Cloud>>,
    client: Client,
    delay: Duration,
}

impl Sim {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Cloud>, EffectError> {
        self.cloud.lock().map_err(|_| EffectError::new("simulated cloud state poisoned"))
    }

    /// `Cloud.SetNodeCount(pool, count)`: resize, then report `Pool[pool].nodes`.
    async fn set_node_count(self, task: EffectTask) -> Result<EffectOutput, EffectError> {
        let pool = task.str_arg("pool").ok_or_else(|| EffectError::new("missing string argument `pool`"))?.to_string();
        let count = task.int_arg("count").ok_or_else(|| EffectError::new("missing int argument `count`"))?;
        if !(0..=1000).contains(&count) {
            return Err(EffectError::new(format!("the cloud refuses {count} nodes")));
        }
        tokio::time::sleep(self.delay).await;
        let nodes = {
            let mut cloud = self.lock()?;
            if cloud.executed.insert(task.idempotency_key.clone()) {
                cloud.pools.insert(pool.clone(), count);
            }
            cloud.pools.get(&pool).copied().unwrap_or(count)
        };
        println!("pool {pool}: {nodes} nodes (task {} attempt {})", task.effect_id, task.attempt);
        // Pools are instances of the kind `Pool`, keyed by the pool's name.
        self.observe(&task, vec![FieldWrite::new(format!("Pool[{pool}]"), "nodes", Value::Int(nodes))]).await?;
        // Also answer with the count, for programs that declare `-> int`
        // and record it themselves (examples/fleet.lxm).
        Ok(EffectOutput::value(Value::Int(nodes)))
    }

    /// `Firewall.Apply(rule)`: add the rule, then report `Firewall.applied`.
    async fn apply_rule(self, task: EffectTask) -> Result<EffectOutput, EffectError> {
        let rule = task.str_arg("rule").ok_or_else(|| EffectError::new("missing string argument `rule`"))?.to_string();
        tokio::time::sleep(self.delay).await;
        let applied = {
            let mut cloud = self.lock()?;
            if cloud.executed.insert(task.idempotency_key.clone()) && !cloud.firewall.contains(&rule) {
                cloud.firewall.push(rule.clone());
            }
            cloud.firewall.clone()
        };
        println!("firewall: applied {rule:?} ({} rules)", applied.len());
        let list = Value::List(applied.into_iter().map(Value::Str).collect());
        self.observe(&task, vec![FieldWrite::new("Firewall", "applied", list)]).await?;
        Ok(EffectOutput::value(Value::Bool(true)))
    }

    /// Writes observations caused by `task`'s effect (the cluster attributes
    /// them to the cycle that issued it); a failure fails the task so the
    /// cluster retries.
    async fn observe(&self, task: &EffectTask, writes: Vec<FieldWrite>) -> Result<(), EffectError> {
        task.observe(&self.client, &writes)
            .await
            .map(|_| ())
            .map_err(|e| EffectError::new(format!("reporting observation: {e}")))
    }
}

struct Flags {
    endpoints: Vec<String>,
    token: Option<String>,
    delay: Duration,
    concurrency: u32,
}

fn parse_flags() -> Result<Flags, String> {
    let mut flags = Flags {
        endpoints: match std::env::var("LEXUM_ENDPOINTS") {
            Ok(list) => list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect(),
            Err(_) => DEFAULT_ENDPOINTS.iter().map(|e| e.to_string()).collect(),
        },
        token: std::env::var("LEXUM_TOKEN").ok().filter(|t| !t.is_empty()),
        delay: Duration::from_millis(200),
        concurrency: 4,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--endpoints" => flags.endpoints = value()?.split(',').map(str::trim).map(String::from).collect(),
            "--token" => flags.token = Some(value()?),
            "--delay-ms" => {
                flags.delay = Duration::from_millis(value()?.parse().map_err(|_| "--delay-ms takes a number")?)
            }
            "--concurrency" => flags.concurrency = value()?.parse().map_err(|_| "--concurrency takes a number")?,
            other => return Err(format!("unknown flag `{other}`")),
        }
    }
    Ok(flags)
}

#[tokio::main]
async fn main() -> ExitCode {
    let flags = match parse_flags() {
        Ok(flags) => flags,
        Err(e) => {
            eprintln!("fleet_worker: {e}");
            return ExitCode::from(1);
        }
    };
    let mut config = ClientConfig::new(flags.endpoints);
    config.token = flags.token;
    let client = match Client::new_lazy(config) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("fleet_worker: {e}");
            return ExitCode::from(1);
        }
    };
    let sim = Sim { cloud: Arc::default(), client: client.clone(), delay: flags.delay };
    let (resize, firewall) = (sim.clone(), sim);
    let worker = Worker::new(client)
        .worker_id(format!("fleet-worker-{}", std::process::id()))
        .concurrency(flags.concurrency)
        .handle("Cloud.SetNodeCount", move |task| resize.clone().set_node_count(task))
        .handle("Firewall.Apply", move |task| firewall.clone().apply_rule(task));
    println!("fleet worker serving Cloud.SetNodeCount and Firewall.Apply; Ctrl-C to stop");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match worker.run_until(shutdown).await {
        Ok(stats) => {
            println!("stopped after {} tasks ({} ok, {} failed)", stats.tasks, stats.succeeded, stats.failed);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fleet_worker: {e}");
            ExitCode::from(if e.is_unavailable() { 2 } else { 1 })
        }
    }
}
