//! `jepsen-run`'s checkers catch what they claim: with a test-only bug
//! switched on, the matching checker fails the run (exit 1) and names the
//! anomaly in the store's verdicts. The worker bug is real (the worker
//! processes keep working past their deadline); lost appends and stale
//! reads are simulated in the harness's clients, since the node has no
//! such switches. (`deploy/test.sh` runs the passing
//! two-minute run with every nemesis and workload.)

use lexum_jepsen::cluster::workspace_binary;
use std::process::Command;

/// Runs `jepsen-run ARGS` with a fresh store; returns its exit code, its
/// output and the verdicts it stored.
fn run(args: &[&str]) -> (Option<i32>, String, serde_json::Value) {
    let store = tempfile::tempdir().expect("store");
    let binary = workspace_binary("jepsen-run").expect("jepsen-run is built");
    let output = Command::new(binary).args(args).arg("--store").arg(store.path()).output().expect("jepsen-run");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let run_dir = std::fs::read_dir(store.path()).expect("store dir").filter_map(Result::ok).next().expect("a run dir");
    let verdicts = std::fs::read_to_string(run_dir.path().join("verdicts.json")).unwrap_or_else(|_| "[]".into());
    (output.status.code(), text, serde_json::from_str(&verdicts).expect("verdicts.json"))
}

fn verdict<'a>(verdicts: &'a serde_json::Value, checker: &str) -> &'a serde_json::Value {
    verdicts
        .as_array()
        .and_then(|all| all.iter().find(|v| v["checker"] == checker))
        .unwrap_or_else(|| panic!("no {checker} verdict in {verdicts}"))
}

#[test]
fn a_worker_that_ignores_its_deadline_fails_the_effects_checker() {
    let args = ["--time-limit", "25", "--nemesis", "worker", "--workload", "effects", "--seed", "11"];
    let (code, output, verdicts) = run(&[&args[..], &["--bug", "worker-ignores-deadline"]].concat());
    assert_eq!(code, Some(1), "the run fails:\n{output}");
    let effects = verdict(&verdicts, "effects");
    assert_eq!(effects["valid"], false, "{effects}");
    assert!(effects["detail"]["overlaps"].as_u64().unwrap_or(0) > 0, "{effects}");
    let last = output.lines().rev().find(|l| l.starts_with("ops=")).unwrap_or_default();
    assert!(!last.contains("duplicate_effects=0 "), "the summary counts them: {last}");
}

#[test]
fn appends_acknowledged_but_never_made_fail_the_set_checker() {
    let args = ["--time-limit", "10", "--nemesis", "kill", "--workload", "set", "--seed", "12", "--bug", "lost-appends"];
    let (code, output, verdicts) = run(&args);
    assert_eq!(code, Some(1), "the run fails:\n{output}");
    let set = verdict(&verdicts, "set");
    assert_eq!(set["valid"], false, "{set}");
    assert!(set["detail"]["lost"].as_u64().unwrap_or(0) > 0, "{set}");
    let last = output.lines().rev().find(|l| l.starts_with("ops=")).unwrap_or_default();
    assert!(!last.contains(" lost=0 "), "the summary counts them: {last}");
}

#[test]
fn stale_reads_fail_the_linearizability_checker() {
    let args = ["--time-limit", "10", "--nemesis", "pause", "--workload", "registers", "--seed", "13", "--bug", "stale-reads"];
    let (code, output, verdicts) = run(&args);
    assert_eq!(code, Some(1), "the run fails:\n{output}");
    let registers = verdict(&verdicts, "registers");
    assert_eq!(registers["valid"], false, "{registers}");
    assert!(registers["anomalies"].to_string().contains("not linearizable"), "{registers}");
}

#[test]
fn bad_arguments_exit_2_before_anything_starts() {
    let binary = workspace_binary("jepsen-run").expect("jepsen-run is built");
    for args in [&["--time-limit", "0"][..], &["--time-limit", "5", "--nemesis", "fire"], &["--time-limit", "5", "--workload", "x"]] {
        let output = Command::new(&binary).args(args).output().expect("jepsen-run");
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
}
