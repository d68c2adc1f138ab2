//! `lexumctl plan` against a real three-node cluster: what it predicts is
//! what the cluster then does. The tests need `target/debug/lexumd` (built
//! by `cargo build --workspace`); every wait is bounded, every process is
//! killed on drop.

use lexum_jepsen::cluster::{ClusterOptions, LocalCluster};
use serde_json::Value as Json;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

struct Cluster {
    local: LocalCluster,
    _runtime: tokio::runtime::Runtime,
}

impl Cluster {
    fn start() -> Cluster {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let local = runtime
            .block_on(LocalCluster::start(ClusterOptions::default()))
            .unwrap_or_else(|e| panic!("cluster: {e:#}"));
        Cluster { local, _runtime: runtime }
    }

    fn ctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_lexumctl"))
            .arg("--endpoints")
            .arg(self.local.endpoints())
            .args(args)
            .env_remove("LEXUM_TOKEN")
            .env_remove("LEXUM_CONFIG")
            .env("XDG_CONFIG_HOME", "/nonexistent")
            .output()
            .expect("run lexumctl")
    }

    /// Runs lexumctl with `--output json`, expecting exit `code`.
    fn json(&self, args: &[&str], code: i32) -> Json {
        let mut full = vec!["--output", "json"];
        full.extend_from_slice(args);
        let out = self.ctl(&full);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(code),
            "lexumctl {args:?}\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("lexumctl {args:?}: not JSON ({e}):\n{stdout}"))
    }

    fn status(&self, domain: &str, goal: &str) -> String {
        let goals = self.json(&["goals"], 0);
        goals
            .as_array()
            .and_then(|gs| gs.iter().find(|g| g["domain"] == domain && g["goal"] == goal))
            .and_then(|g| g["status"].as_str())
            .unwrap_or("MISSING")
            .to_string()
    }

    fn wait_for(&self, domain: &str, goal: &str, status: &str) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if self.status(domain, goal) == status {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("{domain}.{goal} never became {status} (now {})", self.status(domain, goal));
    }
}

fn example(name: &str) -> String {
    format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `(field, writer, delta)` of a vector, without the indexes (the plan's
/// indexes are simulated ones).
fn vector(entries: &Json) -> Vec<(String, String, i64)> {
    entries
        .as_array()
        .map(|es| {
            es.iter()
                .map(|e| {
                    let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                    (s("field"), s("writer"), e["delta"].as_i64().unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn verdict<'a>(plan: &'a Json, goal: &str) -> &'a Json {
    plan["verdicts"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["goal"] == goal))
        .unwrap_or_else(|| panic!("no verdict for {goal} in {plan}"))
}

#[test]
fn plan_predicts_the_tug_of_war_trap_the_cluster_then_reports() {
    let cluster = Cluster::start();
    let file = example("tugofwar.lxm");
    let plan = cluster.json(&["plan", &file], 3);
    assert_eq!(plan["exit_code"], 3);
    for goal in ["Warm.Heating", "Chill.Cooling"] {
        let v = verdict(&plan, goal);
        assert_eq!(v["verdict"], "TRAPPED", "{v}");
        assert_eq!(v["code"], "E005");
        assert_eq!(v["goals"], serde_json::json!(["Chill.Cooling", "Warm.Heating"]));
    }
    // Nothing was proposed: the cluster still has no program.
    let goals = cluster.json(&["goals"], 0);
    assert_eq!(goals.as_array().map(Vec::len), Some(0), "plan changed the cluster: {goals}");

    let out = cluster.ctl(&["submit", &file]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    cluster.wait_for("Warm", "Heating", "TRAPPED");
    cluster.wait_for("Chill", "Cooling", "TRAPPED");
    for (domain, goal) in [("Warm", "Heating"), ("Chill", "Cooling")] {
        let explained = cluster.json(&["explain", &format!("{domain}.{goal}")], 0);
        let predicted = verdict(&plan, &format!("{domain}.{goal}"));
        assert_eq!(vector(&explained["vector"]), vector(&predicted["vector"]), "{domain}.{goal}");
        let fields: Vec<String> = vector(&explained["vector"]).into_iter().map(|(f, _, _)| f).collect();
        assert!(fields.iter().all(|f| predicted["fields"].as_array().is_some_and(|p| p.iter().any(|x| x == f))));
    }
    // With the trap in place, a preview of the current version predicts it
    // stays trapped and proposes nothing.
    let again = cluster.json(&["plan"], 3);
    assert_eq!(again["new_version"], false);
    assert_eq!(again["dispatch"].as_array().map(Vec::len), Some(0));
}

#[test]
fn plan_predicts_dominance_and_a_converging_dispatch_order() {
    let cluster = Cluster::start();
    let plan = cluster.json(&["plan", &example("priorities.lxm")], 0);
    assert_eq!(verdict(&plan, "Quota.UnderQuota")["verdict"], "SATISFIED");
    assert_eq!(verdict(&plan, "Batch.Throughput")["verdict"], "DOMINATED");
    assert_eq!(verdict(&plan, "Batch.Throughput")["dominated_by"], serde_json::json!(["Quota.UnderQuota"]));

    // A converging program: the dispatch order predicted is the one the
    // cluster's history then shows.
    let plan = cluster.json(&["plan", &example("autoscaler.lxm")], 0);
    assert_eq!(verdict(&plan, "Autoscaler.Capacity")["verdict"], "SATISFIED");
    let predicted: Vec<String> = plan["dispatch"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["kind"] == "slice")
        .map(|d| format!("{} {}", d["goal"].as_str().unwrap_or_default(), d["transition"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(predicted, ["Autoscaler.Capacity ScaleUp"]);
    let out = cluster.ctl(&["submit", &example("autoscaler.lxm")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut worker = Command::new(env!("CARGO_BIN_EXE_lexumctl"))
        .args(["--endpoints", &cluster.local.endpoints(), "worker", "--effect", "Cloud.SetNodeCount", "--effect"])
        .args(["Pager.Notify", "--for", "30s"])
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start the simulated worker");
    cluster.wait_for("Autoscaler", "Capacity", "SATISFIED");
    // A cycle is judged once all it caused has ended, which may be an
    // entry after its goal holds again: wait for the history to show it.
    let ran = |history: &serde_json::Value| -> Vec<String> {
        history
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "{}.{} {}",
                    c["domain"].as_str().unwrap_or_default(),
                    c["goal"].as_str().unwrap_or_default(),
                    c["transition"].as_str().unwrap_or_default()
                )
            })
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut history = cluster.json(&["history"], 0);
    while ran(&history).len() < predicted.len() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        history = cluster.json(&["history"], 0);
    }
    let _ = worker.kill();
    let _ = worker.wait();
    assert_eq!(ran(&history), predicted);
}
