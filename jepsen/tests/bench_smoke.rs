//! The benchmark harness runs end to end (tiny sizes; the numbers are not
//! checked, only that every measurement is printed).

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn bench_prints_every_measurement() {
    let bench = lexum_jepsen::cluster::workspace_binary("bench").expect("bench binary built next to lexumd");
    let mut child = Command::new(bench)
        .args([
            "--clients",
            "1,4",
            "--seconds",
            "1",
            "--reactions",
            "3",
            "--fleet",
            "20",
            "--failovers",
            "1",
            "--kinds",
            "300",
            "--reads",
            "2",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start bench");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("bench did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for needle in [
        "mutations,    1 clients",
        "mutations,    4 clients",
        "linearizable reads,    2 clients",
        "reaction (mutation to worker task), 3 samples",
        "slowest reactions, ms:",
        "WAL syncs on the three nodes meanwhile:",
        "the bench's own 1 ms timer meanwhile:",
        "of which the timer was stalled over 1 ms late, ms:",
        "entries applied on the three nodes meanwhile:",
        "fleet repair, 20 goals violated by one mutation: all repaired in",
        "failover",
        "kinds: 300 instances x 10 goals created in",
        "peak RSS",
        "kinds: goals Scale --status VIOLATED --limit 100: 100 of",
        "kinds: a fresh fourth node caught up with 300 instances",
        "kinds: engine cost per mutation:",
        "with 3000 goals (ratio",
        "kinds: snapshot of 300 instances:",
    ] {
        assert!(stdout.contains(needle), "`{needle}` missing from:\n{stdout}");
    }
}

#[test]
fn bench_compares_with_etcd_side_by_side() {
    let installed = Command::new("etcd").arg("--version").output().is_ok_and(|o| o.status.success());
    if !installed {
        eprintln!("skipped: etcd is not installed (deploy/setup.sh --bench installs it; deploy/test.sh does)");
        return;
    }
    let bench = lexum_jepsen::cluster::workspace_binary("bench").expect("bench binary built next to lexumd");
    let mut child = Command::new(bench)
        .args(["--compare", "etcd", "--clients", "1,4", "--seconds", "1", "--failovers", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start bench --compare etcd");
    let deadline = Instant::now() + Duration::from_secs(180);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("bench --compare etcd did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "bench --compare failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for needle in [
        "lexum mutations,    1 clients",
        "etcd puts,    4 clients",
        "1 clients",
        "4 clients",
        "1 write, ",
        "its task at the worker",
        "(50 probes a side",
        "failover median (1 kills)",
        "failover worst",
    ] {
        assert!(stdout.contains(needle), "`{needle}` missing from:\n{stdout}");
    }
}
