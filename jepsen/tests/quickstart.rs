//! Runs `deploy/quickstart.sh` from a clean clone in a temporary directory,
//! as a new user would, and checks what it promises: the fleet converges and
//! the tug-of-war is trapped with E005. Then tears the cluster down.
//!
//! The quick start uses the fixed local ports 7101-7103 and 9101-9103. It
//! runs the binaries `cargo test` already built (`LEXUM_BIN_DIR`): building
//! the clone in the shared target dir would overwrite this checkout's test
//! binaries (cargo names them by the path inside the workspace), and a
//! separate target dir would compile RocksDB again.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The cargo target dir this test was built in (`…/target/debug/deps/x` → `…/target`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors().nth(3).expect("target dir").to_path_buf()
}

struct TearDown(PathBuf);

impl Drop for TearDown {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg("deploy/local-cluster.sh").arg("down").current_dir(&self.0).status();
        let pid_file = self.0.join(".lexum-local/worker.pid");
        if let Ok(pid) = std::fs::read_to_string(pid_file) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

fn clone_repo(into: &Path) -> PathBuf {
    let clone = into.join("lexum");
    let status = Command::new("git")
        .args(["clone", "--quiet", "--no-hardlinks"])
        .arg(repo())
        .arg(&clone)
        .status()
        .expect("git clone");
    assert!(status.success(), "git clone failed");
    // Uncommitted work is part of what is under test when run by hand. One
    // file per cp: GNU cp 9.1 refuses a second file of the same name
    // (README.md and examples/worker/README.md) in one --parents call.
    let status = Command::new("bash")
        .arg("-c")
        .arg("git ls-files -mo --exclude-standard -z | xargs -0 -r -n1 cp --parents -t \"$0\"")
        .arg(&clone)
        .current_dir(repo())
        .status()
        .expect("copy working tree changes");
    assert!(status.success());
    clone
}

#[test]
fn quickstart_converges_the_fleet_and_traps_the_tug_of_war() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let clone = clone_repo(scratch.path());
    let _teardown = TearDown(clone.clone());
    let output = Command::new("bash")
        .arg("deploy/quickstart.sh")
        .current_dir(&clone)
        .env("CARGO_TARGET_DIR", target_dir())
        .env("LEXUM_PROFILE", "debug")
        .env("LEXUM_BIN_DIR", target_dir().join("debug"))
        .env("CARGO_TERM_COLOR", "never")
        .output()
        .expect("run quickstart");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "quickstart failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("fleet converged"), "{stdout}");
    assert!(stdout.contains("TRAPPED"), "{stdout}");
    assert!(stdout.contains("E005"), "{stdout}");

    let ctl = target_dir().join("debug/lexumctl");
    let goals = Command::new(ctl)
        .args(["--endpoints", "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103", "goals", "--output", "json"])
        .output()
        .expect("lexumctl goals");
    let goals: serde_json::Value = serde_json::from_slice(&goals.stdout).expect("goals JSON");
    let status_of = |domain: &str, name: &str| {
        goals
            .as_array()
            .and_then(|all| all.iter().find(|g| g["domain"] == domain && g["goal"] == name))
            .map(|g| (g["status"].as_str().unwrap_or_default().to_string(), g["code"].clone()))
    };
    // The fleet is three instances of the kind Pool, each repaired on its own.
    for pool in ["Pool[web]", "Pool[db]", "Pool[cache]"] {
        assert_eq!(status_of(pool, "Sized").map(|s| s.0), Some("SATISFIED".into()), "{pool}");
    }
    assert_eq!(status_of("Firewall", "InSync").map(|s| s.0), Some("SATISFIED".into()));
    for (domain, goal) in [("Warm", "Heating"), ("Chill", "Cooling")] {
        let (status, code) = status_of(domain, goal).expect("tug-of-war goal listed");
        assert_eq!(status, "TRAPPED");
        assert_eq!(code, "E005");
    }
}
