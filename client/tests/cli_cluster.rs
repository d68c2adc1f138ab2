//! `lexumctl` against real three-node clusters of `lexumd` processes on
//! loopback ports, in temp dirs (`lexum_jepsen::cluster::LocalCluster`).
//!
//! The tests need the `lexumd` binary next to this test's target directory
//! (`target/debug/lexumd`): run `cargo build -p lexum-node` first, or
//! `cargo test --workspace`, which builds every binary of the workspace.
//! Every wait is bounded in time; every process is killed when the
//! [`Cluster`] is dropped.

use lexum_jepsen::cluster::{ClusterOptions, LocalCluster, TlsFiles};
use serde_json::Value as Json;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PROGRAM: &str = r#"
effect Cloud.SetNodeCount(pool: string, count: int) -> int
effect Ops.Attempt(n: int) -> int

domain Pool {
  state {
    nodes: int = 1
    want: int = 3
    tags: list<string, 8>
    paused: bool = false
  }
  invariant Sane { nodes >= 0 && want >= 0 && want <= 100 }
  goal Sized { nodes == want }
  transition Resize for Sized retry 3 backoff 100ms..200ms {
    slice request { emit Cloud.SetNodeCount(pool: "web", count: want) -> got }
    slice record { nodes = got }
  }
}

domain Stuck {
  state {
    x: int = 0
    y: int = 0
  }
  goal Positive { x >= 1 }
  transition Nudge for Positive {
    slice bump { y = y + 1 }
  }
}

domain Flaky {
  state {
    done: int = 0
    want: int = 1
  }
  goal Done { done >= want }
  transition Try for Done retry 2 backoff 100ms..200ms {
    slice call { emit Ops.Attempt(n: want) -> r }
    slice record { done = r }
  }
}
"#;

/// Three `lexumd` processes; killed on drop.
struct Cluster {
    local: LocalCluster,
    endpoints: Vec<String>,
    security: Security,
}

/// How the nodes are guarded; `lexumctl` gets the matching flags.
#[derive(Clone, Default)]
struct Security {
    token: Option<String>,
    tls: Option<TlsFiles>,
}

/// Makes a test CA and the identity with the `openssl` command, in `dir`.
fn generate_tls(dir: &std::path::Path) -> TlsFiles {
    let files = TlsFiles { ca: dir.join("ca.pem"), cert: dir.join("node.pem"), key: dir.join("node.key") };
    let path = |name: &str| dir.join(name).display().to_string();
    let (ca, ca_key, cert, key, csr, ext) =
        (path("ca.pem"), path("ca.key"), path("node.pem"), path("node.key"), path("node.csr"), path("node.ext"));
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n").expect("ext");
    let new_key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let steps = [
        format!("req -x509 {new_key} -keyout {ca_key} -out {ca} -days 2 -subj /CN=lexum-test-ca"),
        format!("req {new_key} -keyout {key} -out {csr} -subj /CN=lexum-node"),
        format!("x509 -req -in {csr} -CA {ca} -CAkey {ca_key} -CAcreateserial -out {cert} -days 2 -extfile {ext}"),
    ];
    for step in steps {
        let args: Vec<&str> = step.split_whitespace().collect();
        let out = Command::new("openssl").args(&args).output().expect("run openssl (deploy/setup.sh installs it)");
        assert!(out.status.success(), "openssl {step}: {}", String::from_utf8_lossy(&out.stderr));
    }
    files
}

impl Cluster {
    fn start() -> Cluster {
        Cluster::start_guarded(Security::default())
    }

    /// Starts nodes that demand `security` from clients and from each
    /// other, and waits for a leader.
    fn start_guarded(security: Security) -> Cluster {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let options =
            ClusterOptions { token: security.token.clone(), tls: security.tls.clone(), ..ClusterOptions::default() };
        let local = runtime.block_on(LocalCluster::start(options)).unwrap_or_else(|e| panic!("cluster: {e:#}"));
        let endpoints = local.nodes.values().map(|n| n.addr.clone()).collect();
        Cluster { local, endpoints, security }
    }

    fn dir(&self) -> &std::path::Path {
        self.local.path()
    }

    /// Endpoints as one flag value, listed from the last node so that most
    /// calls start at a follower and follow a redirect.
    fn endpoints_flag(&self) -> String {
        let mut endpoints = self.endpoints.clone();
        endpoints.reverse();
        endpoints.join(",")
    }

    fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_with(&self.security, args)
    }

    /// Runs lexumctl with the flags for `security` (which may differ from
    /// what the nodes demand).
    fn ctl_with(&self, security: &Security, args: &[&str]) -> Output {
        let mut full: Vec<String> = Vec::new();
        if let Some(token) = &security.token {
            full.push(format!("--token={token}"));
        }
        if let Some(tls) = &security.tls {
            full.push(format!("--tls-ca={}", tls.ca.display()));
            full.push(format!("--tls-cert={}", tls.cert.display()));
            full.push(format!("--tls-key={}", tls.key.display()));
        }
        full.extend(args.iter().map(|a| a.to_string()));
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        lexumctl(&self.endpoints_flag(), &full)
    }

    /// Runs lexumctl, asserts the exit code, returns stdout.
    fn check(&self, args: &[&str], code: i32) -> String {
        let out = self.ctl(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "lexumctl {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}\n{}",
            self.logs()
        );
        stdout
    }

    /// Runs lexumctl expecting failure `code` with a one-line message
    /// containing `needle`.
    fn check_error(&self, args: &[&str], code: i32, needle: &str) {
        let out = self.ctl(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "lexumctl {args:?}\nstderr:\n{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "lexumctl {args:?}: not one line:\n{stderr}");
        assert!(stderr.contains(needle), "lexumctl {args:?}: `{needle}` not in:\n{stderr}");
        assert!(out.stdout.is_empty(), "lexumctl {args:?} printed to stdout");
    }

    fn json(&self, args: &[&str]) -> Json {
        let mut full = vec!["--output", "json"];
        full.extend_from_slice(args);
        let stdout = self.check(&full, 0);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("lexumctl {args:?}: not JSON ({e}):\n{stdout}"))
    }

    fn goal_status(&self, domain: &str, goal: &str) -> String {
        let goals = self.json(&["goals"]);
        goals
            .as_array()
            .and_then(|gs| gs.iter().find(|g| g["domain"] == domain && g["goal"] == goal))
            .and_then(|g| g["status"].as_str())
            .unwrap_or("MISSING")
            .to_string()
    }

    fn wait_for_status(&self, domain: &str, goal: &str, status: &str) {
        let ok = wait_until(Duration::from_secs(30), || self.goal_status(domain, goal) == status);
        assert!(ok, "{domain}.{goal} never became {status} (now {})", self.goal_status(domain, goal));
    }

    fn field(&self, domain: &str, field: &str) -> Json {
        self.json(&["get", domain])[field].clone()
    }

    fn kill(&mut self, id: u64) {
        self.local.kill(id).expect("kill a node");
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for id in self.local.nodes.keys() {
            let text = std::fs::read_to_string(self.local.log_path(*id)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("--- node {id} log (last lines)\n"));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

/// `lexumctl --endpoints ENDPOINTS ARGS...`, blind to the caller's token
/// and config files.
fn lexumctl_command(endpoints: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lexumctl"));
    command
        .arg("--endpoints")
        .arg(endpoints)
        .args(args)
        .env_remove("LEXUM_TOKEN")
        .env_remove("LEXUM_CONFIG")
        .env("XDG_CONFIG_HOME", "/nonexistent");
    command
}

fn lexumctl(endpoints: &str, args: &[&str]) -> Output {
    lexumctl_command(endpoints, args).output().expect("run lexumctl")
}

fn spawn_lexumctl(endpoints: &str, args: &[&str]) -> Child {
    lexumctl_command(endpoints, args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start lexumctl")
}

/// Waits for a child with a bound; kills it if it overruns.
fn finish(mut child: Child, limit: Duration) -> Output {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            return child.wait_with_output().expect("collect output");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("collect output");
    panic!(
        "lexumctl still running after {limit:?}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn write_program(cluster: &Cluster, name: &str, source: &str) -> String {
    let path = cluster.dir().join(name);
    std::fs::write(&path, source).expect("write program");
    path.display().to_string()
}

fn json_lines(bytes: &[u8]) -> Vec<Json> {
    String::from_utf8_lossy(bytes).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// The whole operator workflow on one cluster, step by step.
#[test]
fn operator_workflow() {
    let cluster = Cluster::start();
    let program = write_program(&cluster, "t.lxm", PROGRAM);

    // submit, with a watcher started first that must see the program event
    let watcher =
        spawn_lexumctl(&cluster.endpoints_flag(), &["--output", "json", "watch", "--count", "3", "--for", "30s"]);
    std::thread::sleep(Duration::from_millis(500));
    let submitted = cluster.json(&["submit", &program]);
    assert_eq!(submitted["version"], 1, "{submitted}");
    let out = finish(watcher, Duration::from_secs(40));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events = json_lines(&out.stdout);
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events.iter().all(|e| e["index"].as_u64().is_some() && e["kind"].is_string()), "{events:?}");

    // watch --from replays the backlog, starting with the program entry
    let backlog = spawn_lexumctl(
        &cluster.endpoints_flag(),
        &["-o", "json", "watch", "--from", "1", "--count", "1", "--for", "20s"],
    );
    let out = finish(backlog, Duration::from_secs(30));
    let events = json_lines(&out.stdout);
    assert_eq!(events.first().map(|e| e["kind"].clone()), Some(Json::from("program")), "{events:?}");

    // get: the domain's fields as an object
    let pool = cluster.json(&["get", "Pool"]);
    assert_eq!(pool, serde_json::json!({"nodes": 1, "want": 3, "tags": [], "paused": false}));

    // set: several types in one atomic mutation
    cluster.check(&["set", "Pool.want=5", "Pool.tags=[\"a\", \"b c\"]", "Pool.paused=true"], 0);
    let pool = cluster.json(&["get", "Pool"]);
    assert_eq!(pool["want"], 5);
    assert_eq!(pool["tags"], serde_json::json!(["a", "b c"]));
    assert_eq!(pool["paused"], true);
    cluster.check(&["set", "Pool.paused=false", "Pool.tags=[]"], 0);

    // why: each write with its cause; --as names the writer, --caused-by
    // the effects it observed (here one the cluster never issued)
    cluster.check(&["--as", "hpa-bridge", "set", "--caused-by", "never-issued", "Pool.want=6"], 0);
    let writes = cluster.json(&["why", "Pool.want", "--last", "2"]);
    let writes = writes.as_array().expect("why is an array");
    assert_eq!(writes.len(), 2, "{writes:?}");
    let last = &writes[1];
    assert_eq!((last["old"].clone(), last["new"].clone()), (Json::from(5), Json::from(6)), "{last}");
    assert_eq!(last["cause"]["kind"], "client");
    assert_eq!(last["cause"]["principal"], "anonymous/hpa-bridge");
    assert_eq!(last["cause"]["caused_by"], serde_json::json!(["never-issued"]));
    assert_eq!(last["cause"]["observed"], serde_json::json!([]));
    let table = cluster.check(&["why", "Pool.want"], 0);
    assert!(table.contains("anonymous/hpa-bridge") && table.contains("5 → 6"), "{table}");
    cluster.check(&["set", "Pool.want=5"], 0);
    // explain: status, the transition that would run, what it waits for
    let explained = cluster.json(&["explain", "Stuck.Positive"]);
    assert_eq!(explained["goal"]["goal"], "Positive", "{explained}");
    assert!(explained["waiting"]["kind"].is_string(), "{explained}");
    let text = cluster.check(&["explain", "Pool.Sized"], 0);
    assert!(text.starts_with("Pool.Sized is ") && text.contains("waits for:"), "{text}");
    cluster.check_error(&["why", "Pool.nope"], 1, "E002");
    cluster.check_error(&["explain", "Pool.Nope"], 1, "E002");
    cluster.check_error(&["why", "Pool"], 1, "malformed");

    // goals JSON shape
    let goals = cluster.json(&["goals"]);
    let goals = goals.as_array().expect("goals is an array");
    assert_eq!(goals.len(), 3, "{goals:?}");
    for goal in goals {
        let mut keys: Vec<&str> = goal.as_object().expect("object").keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["code", "domain", "evidence", "goal", "priority", "status"]);
    }

    // bad input: a one-line message, exit 1, nothing committed
    let before = cluster.json(&["get", "Pool"]);
    cluster.check_error(&["get", "Nope"], 1, "E002");
    cluster.check_error(&["set", "Nope.x=1"], 1, "E002");
    cluster.check_error(&["set", "Pool.nope=1"], 1, "E002");
    cluster.check_error(&["set", "Pool.want=true"], 1, "E003");
    cluster.check_error(&["set", "Pool.want=\"five\""], 1, "E003");
    cluster.check_error(&["set", "Pool.want=1000"], 1, "E011");
    cluster.check_error(&["set", "Pool.want=7", "Pool.nope=1"], 1, "E002");
    cluster.check_error(&["set", "Pool.want"], 1, "malformed assignment");
    cluster.check_error(&["set", "Pool.want=[1,"], 1, "unterminated list");
    cluster.check_error(&["release", "Nope.Goal"], 1, "Nope");
    cluster.check_error(&["retry", "Pool"], 1, "malformed target");
    assert_eq!(cluster.json(&["get", "Pool"]), before, "a rejected request changed state");
    cluster.check(&["--output", "json", "check", &program], 0);

    // a trap: Stuck.Positive's transition cannot change x, so it traps; the
    // trap stays after x is fixed, and release clears it
    cluster.wait_for_status("Stuck", "Positive", "TRAPPED");
    let goals = cluster.json(&["goals"]);
    let stuck = goals.as_array().and_then(|gs| gs.iter().find(|g| g["domain"] == "Stuck")).cloned().unwrap_or_default();
    assert_eq!(stuck["code"], "E005", "{stuck}");
    assert!(stuck["evidence"].as_str().is_some_and(|e| !e.is_empty()), "{stuck}");
    cluster.check(&["set", "Stuck.x=1"], 0);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(cluster.goal_status("Stuck", "Positive"), "TRAPPED");
    cluster.check(&["release", "Stuck.Positive"], 0);
    cluster.wait_for_status("Stuck", "Positive", "SATISFIED");

    // a failing worker exhausts Flaky's retries: FAILED with E010
    let failing = spawn_lexumctl(
        &cluster.endpoints_flag(),
        &["worker", "--effect", "Ops.Attempt", "--fail-rate", "1", "--for", "4s", "--seed", "1"],
    );
    cluster.wait_for_status("Flaky", "Done", "FAILED");
    let out = finish(failing, Duration::from_secs(20));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("simulated failure"));

    // retry re-arms it; the simulated worker then completes every effect
    cluster.check(&["retry", "Flaky.Done"], 0);
    assert_ne!(cluster.goal_status("Flaky", "Done"), "FAILED");
    // (Pool's first cycle was planned with want=3, so it takes two cycles)
    let mut worker = spawn_lexumctl(
        &cluster.endpoints_flag(),
        &[
            "-o",
            "json",
            "worker",
            "--effect",
            "Ops.Attempt",
            "--effect",
            "Cloud.SetNodeCount",
            "--delay",
            "50ms",
            "--for",
            "60s",
        ],
    );
    cluster.wait_for_status("Flaky", "Done", "SATISFIED");
    cluster.wait_for_status("Pool", "Sized", "SATISFIED");
    let _ = worker.kill();
    let out = worker.wait_with_output().expect("worker output");
    let tasks = json_lines(&out.stdout);
    assert!(
        tasks.iter().any(|t| t["effect"] == "Cloud.SetNodeCount" && t["ok"] == true && t["result"] == 5),
        "{tasks:?}"
    );
    assert!(tasks.iter().any(|t| t["effect"] == "Ops.Attempt" && t["ok"] == true && t["result"] == 1), "{tasks:?}");
    assert!(tasks.iter().all(|t| t["idempotency_key"].as_str().is_some_and(|k| !k.is_empty())), "{tasks:?}");
    assert_eq!(cluster.field("Pool", "nodes"), 5);
    assert_eq!(cluster.field("Flaky", "done"), 1);

    // history records the cycles and their verdicts
    let history = cluster.json(&["history"]);
    let verdicts: Vec<&str> =
        history.as_array().map(|h| h.iter().filter_map(|c| c["verdict"].as_str()).collect()).unwrap_or_default();
    assert!(
        verdicts.contains(&"trapped") && verdicts.contains(&"failed") && verdicts.contains(&"converged"),
        "{history}"
    );
    // the table shows what each cycle changed, and which goals still did
    // not hold after it: the trap's cycle left its own goal unmet
    let table = cluster.check(&["history"], 0);
    assert!(table.lines().next().is_some_and(|h| h.contains("UNMET AFTER") && h.ends_with("CHANGED")), "{table}");
    let stuck_row = table.lines().find(|l| l.contains("Stuck.Positive") && l.contains("trapped")).unwrap_or_default();
    assert!(stuck_row.contains("Stuck.y ") && stuck_row.contains(" → "), "{table}");
    let after_code = stuck_row.split_once("E005").map(|(_, rest)| rest).unwrap_or_default();
    assert!(after_code.contains("Stuck.Positive"), "the trap's row names no unmet goal after the code: {table}");
    // each cycle is typed evidence: the trap's cycle bumped Stuck.y without
    // making Stuck.Positive hold; Pool's converging cycle set nodes to 5
    let cycles = history.as_array().cloned().unwrap_or_default();
    let trapped = cycles.iter().find(|c| c["verdict"] == "trapped").cloned().unwrap_or_default();
    assert_eq!(
        (&trapped["domain"], &trapped["code"], &trapped["priority"]),
        (&"Stuck".into(), &"E005".into(), &"normal".into()),
        "{trapped}"
    );
    let bumped = trapped["deltas"].as_array().and_then(|ds| ds.iter().find(|d| d["field"] == "Stuck.y")).cloned();
    let bumped = bumped.unwrap_or_default();
    assert!(bumped["after"].as_i64() > bumped["before"].as_i64(), "{trapped}");
    assert_eq!(
        bumped["delta"].as_i64(),
        Some(bumped["after"].as_i64().unwrap_or(0) - bumped["before"].as_i64().unwrap_or(0))
    );
    assert!(
        trapped["goals_after"]
            .as_array()
            .is_some_and(|gs| gs.contains(&serde_json::json!({"goal": "Stuck.Positive", "holds": false}))),
        "{trapped}"
    );
    let converged =
        cycles.iter().rev().find(|c| c["domain"] == "Pool" && c["verdict"] == "converged").cloned().unwrap_or_default();
    assert!(
        converged["deltas"]
            .as_array()
            .is_some_and(|ds| ds.iter().any(|d| d["field"] == "Pool.nodes" && d["after"] == 5)),
        "{converged}"
    );
    assert!(
        converged["goals_after"]
            .as_array()
            .is_some_and(|gs| gs.contains(&serde_json::json!({"goal": "Pool.Sized", "holds": true}))),
        "{converged}"
    );
    assert!(
        cycles.iter().all(|c| c["end_index"].as_u64() >= c["start_index"].as_u64() && c["cycle"].is_u64()),
        "{history}"
    );

    // status JSON shape; every member converges on the same state hash
    let converged = wait_until(Duration::from_secs(20), || {
        let status = cluster.json(&["status"]);
        let members = status["members"].as_array().cloned().unwrap_or_default();
        let hashes: std::collections::BTreeSet<String> =
            members.iter().filter_map(|m| m["state_hash"].as_str().map(String::from)).collect();
        members.len() == 3 && hashes.len() == 1
    });
    assert!(converged, "members never agreed on a state hash");
    let status = cluster.json(&["status"]);
    for key in ["leader", "term", "commit_index"] {
        assert!(status[key].as_u64().is_some_and(|v| v > 0), "{key} in {status}");
    }
    for member in status["members"].as_array().expect("members") {
        for key in ["id", "address", "role", "applied_index", "state_hash"] {
            assert!(!member[key].is_null(), "{key} missing in {member}");
        }
    }

    // replay recomputes the hash from each node's log and matches
    let replay = cluster.json(&["replay"]);
    let reports = replay.as_array().expect("one report per node");
    assert_eq!(reports.len(), 3, "{replay}");
    assert!(reports.iter().all(|r| r["matches"] == true), "{replay}");

    // membership listing
    let members = cluster.json(&["cluster", "members"]);
    assert_eq!(members["members"].as_array().map(Vec::len), Some(3), "{members}");

    // a program with errors is refused locally and changes nothing
    let bad = write_program(&cluster, "bad.lxm", "domain Pool { state { nodes: int = } }");
    let out = cluster.ctl(&["submit", &bad]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("E001"));
    assert_eq!(cluster.json(&["get", "Pool"])["want"], 5);
}

/// The leader dies: a watch resumes on another node without losing or
/// repeating events, the worker reconnects to the new leader, and the CLI
/// finds it.
const KINDS: &str = r#"
effect Cloud.SetNodeCount(pool: string, count: int) -> int

domain Pool[name] {
  state {
    nodes: int = 1
    want: int = 3
  }
  invariant Sane { want >= 0 && want <= 100 }
  goal Sized { nodes == want }
  transition Resize for Sized retry 3 backoff 100ms..200ms {
    slice call { emit Cloud.SetNodeCount(pool: key, count: want) -> got }
    slice record { nodes = got }
  }
}
"#;

/// `Domain.Goal` of every listed goal.
fn goal_names(goals: &Json) -> Vec<String> {
    let goals = goals.as_array().expect("goals is an array");
    goals
        .iter()
        .map(|g| format!("{}.{}", g["domain"].as_str().unwrap_or(""), g["goal"].as_str().unwrap_or("")))
        .collect()
}

#[test]
fn kinds_workflow() {
    let cluster = Cluster::start();
    let program = write_program(&cluster, "kinds.lxm", KINDS);
    cluster.check(&["submit", &program], 0);
    assert_eq!(goal_names(&cluster.json(&["goals"])), Vec::<String>::new(), "a kind alone has no goals");
    // create: several instances with initial values, one request per kind
    let out = cluster.check(&["create", "Pool/web", "want=5", "Pool/db"], 0);
    assert!(out.contains("created Pool[web], Pool[db]"), "{out}");
    assert_eq!(goal_names(&cluster.json(&["goals", "Pool"])), ["Pool[web].Sized", "Pool[db].Sized"]);
    assert_eq!(goal_names(&cluster.json(&["goals", "Pool/db"])), ["Pool[db].Sized"]);
    assert_eq!(cluster.field("Pool[web]", "want"), 5);
    // set an instance's field; --create makes a missing one with the values
    cluster.check(&["set", "Pool[web].want=7"], 0);
    assert_eq!(cluster.field("Pool[web]", "want"), 7);
    cluster.check(&["set", "--create", "Pool[cache].want=2"], 0);
    assert_eq!(cluster.field("Pool[cache]", "want"), 2);
    // filters and pages
    let violated = cluster.json(&["goals", "--status", "repairing", "--limit", "2"]);
    assert_eq!(goal_names(&violated).len(), 2, "{violated}");
    let rest = cluster.json(&["goals", "--status", "REPAIRING", "--offset", "2"]);
    assert_eq!(goal_names(&rest).len(), 1, "{rest}");
    // get: an instance's fields, or a page of a kind's instances in key order
    assert_eq!(cluster.json(&["get", "Pool/web"])["want"], 7);
    let page = cluster.json(&["get", "Pool", "--limit", "2"]);
    assert_eq!(page["total"], 3, "{page}");
    let listed: Vec<&str> =
        page["instances"].as_array().into_iter().flatten().filter_map(|i| i["domain"].as_str()).collect();
    assert_eq!(listed, ["Pool[cache]", "Pool[db]"], "{page}");
    assert_eq!(cluster.json(&["get", "Pool", "--offset", "2"])["instances"][0]["fields"]["want"], 7);
    // delete: gone from the listing, its history kept for why
    cluster.check(&["delete", "Pool/db"], 0);
    assert_eq!(goal_names(&cluster.json(&["goals", "Pool"])), ["Pool[web].Sized", "Pool[cache].Sized"]);
    let history = cluster.json(&["why", "Pool[web].want"]);
    assert_eq!(history.as_array().map(Vec::len), Some(2), "{history}");
    // bad input: one line, exit 1, nothing changed
    cluster.check_error(&["create", "Pool/web"], 1, "exists");
    cluster.check_error(&["create", "Pool/x", "want=500"], 1, "E011");
    cluster.check_error(&["set", "Pool.want=1"], 1, "is a kind");
    cluster.check_error(&["set", "Pool[db].want=1"], 1, "deleted");
    cluster.check_error(&["create", "Nope/x"], 1, "unknown kind");
    cluster.check_error(&["create", "want=1"], 1, "before any Kind/key");
    cluster.check_error(&["goals", "--status", "broken"], 1, "unknown status `BROKEN`");
    cluster.check(&["release", "Pool"], 0);
    cluster.check(&["release", "Pool/web"], 0);
}

#[test]
fn failover_keeps_watch_and_worker_going() {
    let mut cluster = Cluster::start();
    let program = write_program(&cluster, "t.lxm", PROGRAM);
    cluster.check(&["submit", &program], 0);
    let watcher = spawn_lexumctl(&cluster.endpoints_flag(), &["-o", "json", "watch", "--from", "1", "--for", "25s"]);
    let worker = spawn_lexumctl(
        &cluster.endpoints_flag(),
        &["worker", "--effect", "Cloud.SetNodeCount", "--effect", "Ops.Attempt", "--delay", "100ms", "--for", "25s"],
    );
    cluster.wait_for_status("Pool", "Sized", "SATISFIED");

    let leader = cluster.json(&["status"])["leader"].as_u64().expect("a leader");
    cluster.kill(leader);
    let survivors: Vec<String> =
        (1..=3).filter(|id| *id != leader).map(|id| cluster.endpoints[id as usize - 1].clone()).collect();
    let survivors = survivors.join(",");
    let elected = wait_until(Duration::from_secs(30), || {
        let out = lexumctl(&survivors, &["-o", "json", "--timeout", "2s", "status"]);
        serde_json::from_slice::<Json>(&out.stdout)
            .is_ok_and(|s| s["leader"].as_u64().is_some_and(|l| l != 0 && l != leader))
    });
    assert!(elected, "no new leader\n{}", cluster.logs());

    // the CLI (given all three endpoints, one dead) reaches the new leader
    let set_index = cluster.json(&["set", "Pool.want=6"])["index"].as_u64().expect("an index");
    cluster.wait_for_status("Pool", "Sized", "SATISFIED");
    assert_eq!(cluster.field("Pool", "nodes"), 6);

    let worker_out = finish(worker, Duration::from_secs(40));
    assert!(worker_out.status.success(), "{}", String::from_utf8_lossy(&worker_out.stderr));
    let watch_out = finish(watcher, Duration::from_secs(40));
    assert!(watch_out.status.success(), "{}", String::from_utf8_lossy(&watch_out.stderr));
    let events = json_lines(&watch_out.stdout);
    let indexes: Vec<u64> = events.iter().filter_map(|e| e["index"].as_u64()).collect();
    assert!(indexes.windows(2).all(|w| w[0] <= w[1]), "events out of order: {indexes:?}");
    let mut keys: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    let total = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), total, "an event was delivered twice");
    assert!(indexes.first() == Some(&1) || indexes.first() == Some(&2), "backlog missing: {indexes:?}");
    let followed = events.iter().any(|e| e["domain"] == "Pool" && e["index"].as_u64().is_some_and(|i| i > set_index));
    assert!(followed, "the watch did not follow the cluster after failover (set at {set_index}): {indexes:?}");
    // statuses and verdicts are fields of their events, not text to parse
    let repaired =
        events.iter().any(|e| e["kind"] == "goal_status" && e["domain"] == "Pool" && e["status"] == "SATISFIED");
    assert!(repaired, "no goal_status event with status SATISFIED for Pool: {events:?}");
    assert!(events.iter().all(|e| (e["kind"] == "goal_status") == e["status"].is_string()), "{events:?}");
    assert!(events.iter().any(|e| e["kind"] == "cycle" && e["verdict"] == "converged"), "{events:?}");
    assert!(events.iter().all(|e| (e["kind"] == "cycle") == e["verdict"].is_string()), "{events:?}");
    let is_effect = |e: &Json| e["kind"].as_str().is_some_and(|k| k.starts_with("effect_"));
    let named = |e: &Json| e["effect"].is_string() && e["idempotency_key"].is_string();
    assert!(events.iter().all(|e| is_effect(e) == named(e)), "{events:?}");
    let dispatched = events.iter().find(|e| e["kind"] == "effect_dispatched" && e["effect"] == "Cloud.SetNodeCount");
    assert!(dispatched.is_some_and(|e| e["attempt"].as_u64() >= Some(1)), "{events:?}");
    let set = events.iter().find(|e| e["kind"] == "mutation" && e["index"].as_u64() == Some(set_index));
    assert!(
        set.is_some_and(|e| e["fields"] == serde_json::json!(["Pool.want"]) && e["principal"].is_string()),
        "{set:?}"
    );
    assert!(events.iter().all(|e| (e["kind"] == "mutation") == e["principal"].is_string()), "{events:?}");
}

/// Token and mutual TLS guard clients and peers alike: with both, the
/// cluster elects a leader, commits and serves reads; a missing token, a
/// plain-text client or a client without a certificate gets nothing.
#[test]
fn token_and_mutual_tls_guard_every_call() {
    let certs = tempfile::tempdir().expect("temp dir");
    let tls = generate_tls(certs.path());
    let security = Security { token: Some("s3cret-token".into()), tls: Some(tls.clone()) };
    let cluster = Cluster::start_guarded(security.clone());
    let program = write_program(&cluster, "t.lxm", PROGRAM);
    cluster.check(&["submit", &program], 0);
    cluster.check(&["set", "Pool.want=7"], 0);
    assert_eq!(cluster.field("Pool", "want"), 7);
    // The leader gathers every member's applied index and state hash over
    // the peers' TLS connections with the token.
    let agreed = wait_until(Duration::from_secs(20), || {
        let status = cluster.json(&["status"]);
        let members = status["members"].as_array().cloned().unwrap_or_default();
        let hashes: std::collections::BTreeSet<String> =
            members.iter().filter_map(|m| m["state_hash"].as_str().map(String::from)).collect();
        members.len() == 3 && hashes.len() == 1 && !hashes.contains("")
    });
    assert!(agreed, "members never reported one state hash: {}", cluster.json(&["status"]));

    let no_token = Security { token: None, ..security.clone() };
    let out = cluster.ctl_with(&no_token, &["--timeout", "3s", "get", "Pool"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "missing token: {stderr}");
    assert!(stderr.contains("not authenticated"), "{stderr}");

    let wrong_token = Security { token: Some("guess".into()), ..security.clone() };
    let out = cluster.ctl_with(&wrong_token, &["--timeout", "3s", "set", "Pool.want=9"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));

    let plain_text = Security { tls: None, ..security.clone() };
    let out = cluster.ctl_with(&plain_text, &["--timeout", "3s", "get", "Pool"]);
    assert_eq!(out.status.code(), Some(2), "plain text to a TLS node: {}", String::from_utf8_lossy(&out.stderr));

    let ca_only = [
        format!("--tls-ca={}", tls.ca.display()),
        "--token=s3cret-token".to_string(),
        "--timeout=3s".to_string(),
        "get".to_string(),
        "Pool".to_string(),
    ];
    let out = lexumctl(&cluster.endpoints_flag(), &ca_only.iter().map(String::as_str).collect::<Vec<_>>());
    assert_ne!(out.status.code(), Some(0), "no client certificate: {}", String::from_utf8_lossy(&out.stdout));

    assert_eq!(cluster.field("Pool", "want"), 7, "refused calls changed nothing");
}
