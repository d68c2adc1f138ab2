//! `jepsen-run`'s checkers catch what they claim: with a test-only bug
//! switched on, the matching checker fails the run (exit 1) and names the
//! anomaly in the store's verdicts. Every bug is real: three are
//! `lexumd --test-fault` switches (`ack-before-commit`,
//! `read-without-read-index`, `leader-forgets-retry-counts`), one a switch
//! of the worker processes (`worker-ignores-deadline`). Each seed is
//! chosen so that its faults make the anomaly certain, not likely (see
//! each test). (`deploy/test.sh` runs the passing two-minute run with
//! every nemesis and workload.)

use lexum_jepsen::cluster::workspace_binary;
use lexum_jepsen::soak::Bug;
use lexum_node::test_faults::TestFault;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// Runs `args` with `--bug bug`; asserts the run failed (exit 1) because
/// `checker` failed; returns that verdict and the summary line.
fn caught(args: &[&str], bug: &str, checker: &str) -> (serde_json::Value, String) {
    let (code, output, verdicts) = run(&[args, &["--bug", bug]].concat());
    assert_eq!(code, Some(1), "the run fails:\n{output}");
    let found = verdict(&verdicts, checker).clone();
    assert_eq!(found["valid"], false, "{checker} catches {bug}: {found}\n{output}");
    let summary = output.lines().rev().find(|l| l.starts_with("ops=")).unwrap_or_default().to_string();
    (found, summary)
}

/// The leader acknowledges appends before they commit. The seed's one
/// fault cuts the leader off from its peers for 3 s while clients still
/// reach it (the first fault of seed 26): it goes on acknowledging every
/// append, none of which can commit, and the new leader's log replaces
/// them after the heal. (Under `kill` the loss is luck: an append is
/// acknowledged and committed within a few milliseconds, so a kill -9
/// rarely falls in between.)
#[test]
fn acknowledging_appends_before_they_commit_fails_the_set_checker() {
    let args = ["--time-limit", "12", "--nemesis", "partition", "--workload", "set", "--seed", "26"];
    let (set, summary) = caught(&args, "ack-before-commit", "set");
    assert!(set["detail"]["lost"].as_u64().unwrap_or(0) > 0, "{set}");
    assert!(set["anomalies"].to_string().contains("acknowledged append"), "{set}");
    assert!(!summary.contains(" lost=0 "), "the summary counts them: {summary}");
}

/// Reads are answered from whichever node the client asks, without a read
/// index: a follower a commit behind, and a node thawing from SIGSTOP
/// (seed 13 pauses node 2 for 1.3 s), answer with values older than
/// writes already acknowledged.
#[test]
fn reads_without_a_read_index_fail_the_linearizability_checker() {
    let args = ["--time-limit", "10", "--nemesis", "pause", "--workload", "registers", "--seed", "13"];
    let (registers, _) = caught(&args, "read-without-read-index", "registers");
    assert!(registers["anomalies"].to_string().contains("not linearizable"), "{registers}");
}

#[test]
fn a_worker_that_ignores_its_deadline_fails_the_effects_checker() {
    let args = ["--time-limit", "25", "--nemesis", "worker", "--workload", "effects", "--seed", "11"];
    let (effects, summary) = caught(&args, "worker-ignores-deadline", "effects");
    assert!(effects["detail"]["overlaps"].as_u64().unwrap_or(0) > 0, "{effects}");
    assert!(!summary.contains("duplicate_effects=0 "), "the summary counts them: {summary}");
}

/// A new leader re-arms the goal whose always-failing effect ran out of
/// its three attempts, so the effect runs three more. Seed 335 kills node
/// 1, then 3, then 2 (each restarted before the next), so whichever node
/// leads once `Doomed` has failed is killed and another takes over.
#[test]
fn a_leader_that_forgets_retry_counts_fails_the_effects_checker() {
    let args = ["--time-limit", "16", "--nemesis", "kill", "--workload", "effects", "--seed", "335"];
    let (effects, _) = caught(&args, "leader-forgets-retry-counts", "effects");
    let attempts = effects["detail"]["failing_attempts"].as_u64().unwrap_or(0);
    assert!(attempts > 3, "more attempts than Doomed.Applied's retry 3: {effects}");
    assert!(effects["anomalies"].to_string().contains("Doomed.Applied allows 3"), "{effects}");
}

#[test]
fn every_node_bug_is_a_test_fault_of_lexumd() {
    for bug in Bug::ALL {
        if let Some(name) = bug.node_fault() {
            assert_eq!(name.parse::<TestFault>().map(TestFault::name), Ok(name), "{bug:?}");
        }
    }
    assert_eq!(Bug::ALL.iter().filter(|b| b.node_fault().is_some()).count(), TestFault::ALL.len());
}

/// Runs `command` to its exit (killed past `limit`, a node that wrongly
/// started serving); its exit code and stderr.
fn exit_within(mut command: Command, limit: Duration) -> (Option<i32>, String) {
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn");
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let output = child.wait_with_output().expect("wait");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn lexumd_refuses_a_test_fault_without_the_environment_variable() {
    let binary = workspace_binary("lexumd").expect("lexumd is built");
    let data = tempfile::tempdir().expect("data dir");
    for allow in [None, Some("0"), Some("yes")] {
        let mut command = Command::new(&binary);
        command.args(["--id", "1", "--test-fault", "ack-before-commit", "--data-dir"]).arg(data.path());
        command.env_remove("LEXUM_ALLOW_TEST_FAULTS");
        if let Some(value) = allow {
            command.env("LEXUM_ALLOW_TEST_FAULTS", value);
        }
        let (code, stderr) = exit_within(command, Duration::from_secs(20));
        assert_eq!(code, Some(2), "{allow:?}: {stderr}");
        assert!(stderr.contains("LEXUM_ALLOW_TEST_FAULTS=1"), "{allow:?}: {stderr}");
    }
    let help = Command::new(&binary).arg("--help").output().expect("lexumd --help");
    assert!(!String::from_utf8_lossy(&help.stdout).contains("test-fault"), "hidden from --help");
}

#[test]
fn bad_arguments_exit_2_before_anything_starts() {
    let binary = workspace_binary("jepsen-run").expect("jepsen-run is built");
    let bad: [&[&str]; 4] = [
        &["--time-limit", "0"],
        &["--time-limit", "5", "--nemesis", "fire"],
        &["--time-limit", "5", "--workload", "x"],
        &["--time-limit", "5", "--bug", "lost-appends"],
    ];
    for args in bad {
        let output = Command::new(&binary).args(args).output().expect("jepsen-run");
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
}
