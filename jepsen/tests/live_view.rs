//! The live view (`/ui`) in a real browser: headless Chromium (Debian's
//! `chromium`, installed by `deploy/setup.sh --browser`) opens the page of a
//! three-node cluster running `examples/tugofwar.lxm`, waits for the trap,
//! checks that both goals show TRAPPED and that the oscillation vector is
//! drawn, and saves a screenshot under the test's output directory
//! (`$CARGO_TARGET_TMPDIR/live_view/live-view.png`). Every wait is bounded.

use lexum_jepsen::cluster::{ClusterOptions, LocalCluster};
use lexum_proto::v1 as pb;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const TUG: &str = include_str!("../../examples/tugofwar.lxm");

/// Submits `source` through whichever node leads (bounded).
async fn submit(cluster: &LocalCluster, source: &str) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        for id in cluster.nodes.keys() {
            let Ok(mut client) = cluster.client(*id).await else { continue };
            let request = pb::SubmitProgramRequest {
                program: Some(pb::submit_program_request::Program::Source(source.into())),
                file_name: "tugofwar.lxm".into(),
            };
            if client.submit_program(request).await.is_ok() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no node accepted the program");
}

fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("chromium is missing: run deploy/setup.sh --browser")
}

/// Runs headless Chromium on `url` with `args` (bounded), returning stdout.
fn browse(profile: &Path, url: &str, args: &[&str]) -> String {
    let mut child = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--window-size=1400,1100")
        .args(args)
        .arg(url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().expect("chromium output");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The numbers in `data-points="N"` attributes of drawn vectors.
fn vector_points(dom: &str) -> Vec<usize> {
    dom.split("class=\"vector\"")
        .skip(1)
        .filter_map(|rest| {
            let at = rest.find("data-points=\"")? + "data-points=\"".len();
            rest[at..].split('"').next()?.parse().ok()
        })
        .collect()
}

#[test]
fn the_live_view_shows_the_tug_of_war_trapped_with_its_vector_drawn() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let cluster = runtime.block_on(LocalCluster::start(ClusterOptions::default())).expect("cluster");
    runtime.block_on(submit(&cluster, TUG));
    let id = *cluster.nodes.keys().next().expect("a node");
    let url = format!("http://{}/ui", cluster.nodes[&id].http_addr);

    // The engine traps both goals; the node's own JSON says so first.
    let started = Instant::now();
    loop {
        let (code, body) = runtime.block_on(cluster.http_get(id, "/ui/state")).expect("GET /ui/state");
        assert_eq!(code, 200, "{body}");
        if body.contains("\"goal\":\"Warm.Heating\"") && body.contains("\"goal\":\"Chill.Cooling\"") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no trap in /ui/state: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }

    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("live_view");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("output dir");
    let profile = tempfile::tempdir().expect("profile dir");
    let started = Instant::now();
    let dom = loop {
        let dom = browse(profile.path(), &url, &["--dump-dom"]);
        let trapped = ["Warm.Heating", "Chill.Cooling"]
            .iter()
            .all(|g| dom.contains(&format!("data-goal=\"{g}\" data-status=\"TRAPPED\"")));
        if trapped && vector_points(&dom).iter().any(|n| *n >= 2) {
            break dom;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "the page never showed the trap:\n{dom}");
        std::thread::sleep(Duration::from_millis(500));
    };
    std::fs::write(out.join("live-view.html"), &dom).expect("save the DOM");
    for g in ["Warm.Heating", "Chill.Cooling"] {
        assert!(dom.contains(&format!("data-trap=\"{g}\"")), "no trap card for {g}");
    }
    assert!(dom.contains("class=\"segment\""), "no vector segment drawn");
    assert!(dom.contains("data-writer=\"Warm.Heating\"") && dom.contains("data-writer=\"Chill.Cooling\""));
    assert!(dom.contains("data-lane=\"normal\""), "no priority lanes");

    let shot = out.join("live-view.png");
    browse(profile.path(), &url, &[&format!("--screenshot={}", shot.display()), "--hide-scrollbars"]);
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "screenshot {} missing or empty ({size} bytes)", shot.display());
}
