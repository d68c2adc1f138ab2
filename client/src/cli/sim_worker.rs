//! `lexumctl worker`: a simulated worker. Each task waits `--delay`, fails
//! with probability `--fail-rate`, and otherwise returns `--result` if
//! given, else the first int argument (e.g. `count` of
//! `Cloud.SetNodeCount`), else the first argument, else no value.

use super::args::WorkerFlags;
use super::output;
use super::settings::{parse_duration, Settings};
use super::Failure;
use lexum_client::{parse_value, value, Client, EffectError, EffectOutput, EffectTask, Value, Worker, WorkerOptions};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// The value a simulated task returns.
pub fn simulated_result(task: &EffectTask, forced: Option<&Value>) -> Option<Value> {
    if let Some(value) = forced {
        return Some(value.clone());
    }
    task.args.iter().find(|(_, v)| matches!(v, Value::Int(_))).or_else(|| task.args.first()).map(|(_, v)| v.clone())
}

/// A small deterministic generator (splitmix64) for the failure dice.
struct Dice(u64);

impl Dice {
    fn next_unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Runs the simulated worker until `--count` successes, `--for`, Ctrl-C, or
/// the cluster stays unreachable.
pub async fn run(settings: &Settings, client: Client, flags: WorkerFlags) -> Result<(), Failure> {
    let delay = parse_duration(&flags.delay).map_err(|e| Failure::User(format!("--delay: {e}")))?;
    if !(0.0..=1.0).contains(&flags.fail_rate) {
        return Err(Failure::User(format!("--fail-rate must be between 0 and 1, not {}", flags.fail_rate)));
    }
    let forced = match &flags.result {
        Some(text) => Some(parse_value(text).map_err(|e| Failure::User(format!("--result: {e}")))?),
        None => None,
    };
    let limit = match &flags.duration {
        Some(text) => Some(parse_duration(text).map_err(|e| Failure::User(format!("--for: {e}")))?),
        None => None,
    };
    for effect in &flags.effects {
        let valid = effect.split_once('.').is_some_and(|(ns, name)| value::is_ident(ns) && value::is_ident(name));
        if !valid {
            return Err(Failure::User(format!("--effect `{effect}` is not Namespace.Name")));
        }
    }
    if flags.count == Some(0) {
        return Ok(());
    }
    let seed = flags.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    let dice = Arc::new(Mutex::new(Dice(seed)));
    let done = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(Notify::new());
    let json = settings.json();
    let fail_rate = flags.fail_rate;
    let forced = Arc::new(forced);
    let count = flags.count;

    let options = WorkerOptions {
        worker_id: flags.id.clone().unwrap_or_else(|| format!("lexumctl-sim-{}", std::process::id())),
        concurrency: flags.concurrency.max(1),
        shutdown_grace: Duration::from_secs(5),
        reconnect_window: client.config().deadline.max(Duration::from_secs(30)),
    };
    let mut worker = Worker::new(client).with_options(options);
    for effect in &flags.effects {
        let (dice, done, finished, forced) = (dice.clone(), done.clone(), finished.clone(), forced.clone());
        worker = worker.handle(effect, move |task: EffectTask| {
            let (dice, done, finished, forced) = (dice.clone(), done.clone(), finished.clone(), forced.clone());
            async move {
                tokio::time::sleep(delay).await;
                let roll = dice.lock().map(|mut d| d.next_unit()).unwrap_or(1.0);
                let outcome = if roll < fail_rate {
                    Err(EffectError::new("simulated failure"))
                } else {
                    Ok(EffectOutput { value: simulated_result(&task, forced.as_ref().as_ref()) })
                };
                report(json, &task, &outcome);
                if outcome.is_ok() {
                    let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                    if count.is_some_and(|c| n >= c) {
                        finished.notify_one();
                    }
                }
                outcome
            }
        });
    }
    let shutdown = async move {
        let limit = tokio::time::sleep(limit.unwrap_or(Duration::MAX / 4));
        tokio::select! {
            _ = finished.notified() => {}
            _ = limit => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    let stats = worker.run_until(shutdown).await?;
    if !json {
        eprintln!(
            "worker stopped: {} tasks, {} succeeded, {} failed, {} results refused",
            stats.tasks, stats.succeeded, stats.failed, stats.refused
        );
    }
    Ok(())
}

fn report(json: bool, task: &EffectTask, outcome: &Result<EffectOutput, EffectError>) {
    let args: Vec<String> = task.args.iter().map(|(n, v)| format!("{n}: {}", value::display(v))).collect();
    if json {
        let (ok, result, error) = match outcome {
            Ok(out) => (true, out.value.as_ref().map(value::to_json), None),
            Err(e) => (false, None, Some(e.0.clone())),
        };
        let args: serde_json::Map<String, serde_json::Value> =
            task.args.iter().map(|(n, v)| (n.clone(), value::to_json(v))).collect();
        output::json_line(&serde_json::json!({
            "effect_id": task.effect_id,
            "effect": task.effect,
            "idempotency_key": task.idempotency_key,
            "attempt": task.attempt,
            "args": args,
            "ok": ok,
            "result": result,
            "error": error,
        }));
    } else {
        let result = match outcome {
            Ok(EffectOutput { value: Some(v) }) => format!("ok {}", value::display(v)),
            Ok(EffectOutput { value: None }) => "ok".to_string(),
            Err(e) => format!("error: {e}"),
        };
        outln!(
            "{}({}) #{} attempt {} key {} -> {result}",
            task.effect,
            args.join(", "),
            task.effect_id,
            task.attempt,
            task.idempotency_key
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(args: Vec<(&str, Value)>) -> EffectTask {
        EffectTask {
            effect_id: 1,
            effect: "Cloud.SetNodeCount".into(),
            idempotency_key: "k".into(),
            attempt: 1,
            args: args.into_iter().map(|(n, v)| (n.to_string(), v)).collect(),
            fencing_token: 1,
            timeout: None,
            deadline: None,
        }
    }

    #[test]
    fn results_follow_the_documented_rule() {
        let both = task(vec![("pool", Value::Str("web".into())), ("count", Value::Int(5))]);
        assert_eq!(simulated_result(&both, None), Some(Value::Int(5)));
        let text = task(vec![("message", Value::Str("hi".into()))]);
        assert_eq!(simulated_result(&text, None), Some(Value::Str("hi".into())));
        assert_eq!(simulated_result(&task(vec![]), None), None);
        assert_eq!(simulated_result(&both, Some(&Value::Bool(true))), Some(Value::Bool(true)));
    }

    #[test]
    fn dice_are_uniform_enough() {
        let mut dice = Dice(42);
        let rolls: Vec<f64> = (0..1000).map(|_| dice.next_unit()).collect();
        assert!(rolls.iter().all(|r| (0.0..1.0).contains(r)));
        let low = rolls.iter().filter(|r| **r < 0.1).count();
        assert!((50..150).contains(&low), "{low}");
    }
}
