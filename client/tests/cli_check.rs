//! `lexumctl` without a cluster: `check`, argument errors, an unreachable
//! cluster, completion. Each test is one `check(...)` call.

use std::path::Path;
use std::process::{Command, Output};

const VALID: &str = "domain Pool {\n  state { nodes: int = 3 }\n  invariant Sane { nodes >= 0 }\n}\n";
const WARNING_ONLY: &str = "domain Pool {\n  state { nodes: int = 3 }\n  goal Big { nodes >= 5 }\n}\n";
const SYNTAX_ERROR: &str = "domain Pool {\n  state { nodes: int = }\n}\n";
const TYPE_ERROR: &str = "domain Pool {\n  state { nodes: int = true }\n}\n";
const CLOCK: &str = "domain Pool {\n  state { nodes: int = 3 }\n  invariant Now { now() > 0 }\n}\n";

fn lexumctl(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lexumctl"))
        .args(args)
        .current_dir(dir)
        .env_remove("LEXUM_ENDPOINTS")
        .env_remove("LEXUM_TOKEN")
        .env_remove("LEXUM_CONFIG")
        .env("XDG_CONFIG_HOME", dir)
        .output()
        .expect("lexumctl runs")
}

/// Writes `files` into a temp dir, runs `lexumctl args`, checks the exit
/// code, and returns (stdout, stderr).
fn check(files: &[(&str, &[u8])], args: &[&str], code: i32) -> (String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).expect("write fixture");
    }
    let out = lexumctl(args, dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "args {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    (stdout, stderr)
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

#[test]
fn valid_program_passes() {
    let (_, stderr) = check(&[("ok.lxm", VALID.as_bytes())], &["check", "ok.lxm"], 0);
    assert!(!stderr.contains("error"), "{stderr}");
}

#[test]
fn warnings_do_not_fail() {
    let (_, stderr) = check(&[("w.lxm", WARNING_ONLY.as_bytes())], &["check", "w.lxm"], 0);
    assert!(stderr.contains("warning[W002]"), "{stderr}");
}

#[test]
fn syntax_error_is_rendered_rustc_style() {
    let (stdout, stderr) = check(&[("bad.lxm", SYNTAX_ERROR.as_bytes())], &["check", "bad.lxm"], 1);
    assert!(stdout.is_empty());
    assert!(stderr.contains("error[E001]"), "{stderr}");
    assert!(stderr.contains("bad.lxm:2:"), "{stderr}");
}

#[test]
fn clock_is_refused() {
    let (_, stderr) = check(&[("c.lxm", CLOCK.as_bytes())], &["check", "c.lxm"], 1);
    assert!(stderr.contains("E006"), "{stderr}");
}

#[test]
fn json_is_one_array_for_all_files() {
    let files: &[(&str, &[u8])] =
        &[("a.lxm", SYNTAX_ERROR.as_bytes()), ("b.lxm", TYPE_ERROR.as_bytes()), ("c.lxm", VALID.as_bytes())];
    let (stdout, _) = check(files, &["check", "--output", "json", "a.lxm", "b.lxm", "c.lxm"], 1);
    let records = json(&stdout);
    let records = records.as_array().expect("an array");
    assert!(records.len() >= 2, "{stdout}");
    for r in records {
        for key in ["code", "severity", "file", "line", "column", "message"] {
            assert!(r.get(key).is_some(), "missing {key} in {r}");
        }
    }
    let files: Vec<&str> = records.iter().filter_map(|r| r["file"].as_str()).collect();
    assert!(files.contains(&"a.lxm") && files.contains(&"b.lxm"), "{files:?}");
    assert!(records.iter().any(|r| r["code"] == "E003" && r["line"] == 2), "{stdout}");
}

#[test]
fn json_for_a_clean_file_is_an_empty_array() {
    let (stdout, _) = check(&[("ok.lxm", VALID.as_bytes())], &["check", "-o", "json", "ok.lxm"], 0);
    assert_eq!(json(&stdout), serde_json::json!([]));
}

#[test]
fn json_warnings_exit_zero() {
    let (stdout, _) = check(&[("w.lxm", WARNING_ONLY.as_bytes())], &["check", "-o", "json", "w.lxm"], 0);
    assert!(json(&stdout).as_array().is_some_and(|a| a.iter().any(|r| r["severity"] == "warning")), "{stdout}");
}

#[test]
fn missing_file_is_one_line() {
    let (_, stderr) = check(&[], &["check", "nope.lxm"], 1);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("nope.lxm"), "{stderr}");
}

#[test]
fn binary_file_is_refused() {
    let (_, stderr) = check(&[("bin.lxm", &[0xff, 0xfe, 0x00, 0x80])], &["check", "bin.lxm"], 1);
    assert!(stderr.contains("UTF-8"), "{stderr}");
}

#[test]
fn garbage_never_panics() {
    let nested = format!("domain D {{ invariant I {{ {}1{} }} }}", "(".repeat(2000), ")".repeat(2000));
    let inputs: [&[u8]; 5] =
        [b"}}}}{{{{", b"domain", b"effect .(", b"domain D { state { x: list<list<int>> = [[[[ } }", nested.as_bytes()];
    for input in inputs {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("g.lxm"), input).expect("write");
        let out = lexumctl(&["check", "g.lxm"], dir.path());
        assert!(matches!(out.status.code(), Some(0 | 1)), "{:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn check_needs_a_file() {
    check(&[], &["check"], 1);
}

#[test]
fn unknown_subcommand_is_a_user_error() {
    check(&[], &["frobnicate"], 1);
}

#[test]
fn help_exits_zero() {
    let (stdout, _) = check(&[], &["--help"], 0);
    assert!(stdout.contains("submit"), "{stdout}");
}

#[test]
fn malformed_set_fails_before_any_call() {
    let (_, stderr) = check(&[], &["--endpoints", "127.0.0.1:1", "set", "Pool.nodes"], 1);
    assert!(stderr.contains("malformed assignment `Pool.nodes`"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn malformed_value_fails_before_any_call() {
    let (_, stderr) = check(&[], &["--endpoints", "127.0.0.1:1", "set", "Pool.nodes=[1,2"], 1);
    assert!(stderr.contains("unterminated list"), "{stderr}");
}

#[test]
fn malformed_retry_target() {
    check(&[], &["--endpoints", "127.0.0.1:1", "retry", "Pool"], 1);
}

#[test]
fn unreachable_cluster_exits_two_with_one_line() {
    for args in [&["goals"][..], &["get", "Pool"], &["set", "Pool.nodes=5"], &["status"], &["replay"]] {
        let mut full = vec!["--endpoints", "127.0.0.1:1,127.0.0.1:2", "--timeout", "1s"];
        full.extend_from_slice(args);
        let (_, stderr) = check(&[], &full, 2);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("unavailable"), "{stderr}");
    }
}

#[test]
fn submit_with_compile_errors_never_reaches_the_cluster() {
    let (_, stderr) =
        check(&[("bad.lxm", SYNTAX_ERROR.as_bytes())], &["--endpoints", "127.0.0.1:1", "submit", "bad.lxm"], 1);
    assert!(stderr.contains("error[E001]"), "{stderr}");
}

#[test]
fn endpoints_from_the_config_file() {
    let config = b"endpoints = [\"127.0.0.1:1\"]\ntimeout = \"500ms\"\n";
    let (_, stderr) = check(&[("ctl.toml", config)], &["--config", "ctl.toml", "goals"], 2);
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
}

#[test]
fn bad_config_file_is_a_user_error() {
    check(&[("ctl.toml", b"endpoint = 1\n")], &["--config", "ctl.toml", "goals"], 1);
}

#[test]
fn bad_worker_flags() {
    check(&[], &["--endpoints", "127.0.0.1:1", "worker", "--effect", "Cloud.X", "--fail-rate", "2"], 1);
    check(&[], &["--endpoints", "127.0.0.1:1", "worker", "--effect", "nodot"], 1);
    check(&[], &["--endpoints", "127.0.0.1:1", "worker", "--effect", "Cloud.X", "--delay", "soon"], 1);
}

#[test]
fn completion_scripts() {
    for shell in ["bash", "zsh", "fish"] {
        let (stdout, _) = check(&[], &["completion", shell], 0);
        assert!(stdout.contains("lexumctl"), "{shell}");
    }
}

#[test]
fn a_reader_that_stops_reading_ends_lexumctl_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    let dir = tempfile::tempdir().expect("temp dir");
    // The bash completion script is larger than a pipe's buffer, so
    // lexumctl is still writing when the reader goes away (`| head -1`).
    let mut child = Command::new(env!("CARGO_BIN_EXE_lexumctl"))
        .args(["completion", "bash"])
        .env("XDG_CONFIG_HOME", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lexumctl runs");
    let mut first = [0u8; 16];
    child.stdout.take().expect("stdout").read_exact(&mut first).expect("some output");
    let output = child.wait_with_output().expect("lexumctl ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {:?}, stderr: {stderr}", output.status.code());
    assert!(stderr.is_empty(), "stderr: {stderr}");
}
