//! The security boundary against three real `lexumd` processes on loopback
//! that use `[auth]`: a token per role and a peer token. Every row of the
//! RPC → role table (`lexum_node::service::auth::RPC_ROLES`, the same table
//! as in docs/operations.md) is called with every credential; Raft RPCs
//! take only the peer token; a token's name is the principal of its writes.

use lexum_jepsen::cluster::{authorize_with, AuthTokens, ClusterOptions, LocalCluster, TestToken};
use lexum_jepsen::worker::int_value;
use lexum_node::service::auth::{Role, RPC_ROLES};
use lexum_proto::v1 as pb;
use std::time::Duration;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Code;

/// Clusters are started one test at a time: three nodes per test already
/// fill a two-core machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PEER: &str = "peer-token-0123456789abcdef";

/// The credentials of the test cluster, by role.
fn credentials() -> Vec<(Role, &'static str, &'static str)> {
    vec![
        (Role::Read, "viewer", "read-token-0123456789abcdef"),
        (Role::Write, "bridge", "write-token-0123456789abcdef"),
        (Role::Worker, "fleet", "worker-token-0123456789abcdef"),
        (Role::Admin, "ops", "admin-token-0123456789abcdef"),
        (Role::Peer, "peer", PEER),
    ]
}

fn token_of(role: Role) -> &'static str {
    credentials().into_iter().find(|(r, _, _)| *r == role).map(|(_, _, t)| t).expect("a token per role")
}

async fn start() -> LocalCluster {
    let tokens = credentials()
        .into_iter()
        .filter(|(role, _, _)| *role != Role::Peer)
        .map(|(role, name, token)| TestToken { name: name.into(), role: role.as_str().into(), token: token.into() })
        .collect();
    let auth = AuthTokens { peer_token: PEER.into(), tokens };
    let options = ClusterOptions { auth: Some(auth), ..ClusterOptions::default() };
    // A leader is elected only if peers reach each other's Raft with the peer token.
    LocalCluster::start(options).await.expect("cluster with [auth]")
}

/// Sends and reads nothing: every request is the empty message (the
/// default of every request type), and the test only looks at the status.
#[derive(Clone, Copy, Default)]
struct Empty;

impl Codec for Empty {
    type Encode = ();
    type Decode = ();
    type Encoder = Empty;
    type Decoder = Empty;
    fn encoder(&mut self) -> Empty {
        Empty
    }
    fn decoder(&mut self) -> Empty {
        Empty
    }
}

impl Encoder for Empty {
    type Item = ();
    type Error = tonic::Status;
    fn encode(&mut self, _: (), _: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        Ok(())
    }
}

impl Decoder for Empty {
    type Item = ();
    type Error = tonic::Status;
    fn decode(&mut self, _: &mut DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        Ok(None)
    }
}

/// Calls the RPC at `path` on node `id` with one empty message and `token`;
/// returns the status it ends with (`Ok` for a stream that opened, or a
/// call still running after a few seconds: neither was refused).
async fn call(cluster: &LocalCluster, id: u64, path: &'static str, token: &str) -> Code {
    let channel = cluster.channel(id).await.expect("channel");
    let mut grpc = tonic::client::Grpc::new(channel);
    let attempt = async {
        grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut request = tonic::Request::new(tokio_stream::once(()));
        authorize_with(&mut request, token);
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
        grpc.streaming(request, path, Empty).await.map(|_| ())
    };
    match tokio::time::timeout(Duration::from_secs(5), attempt).await {
        Ok(Ok(())) | Err(_) => Code::Ok,
        Ok(Err(status)) => status.code(),
    }
}

/// One test per row would start 22 clusters; one cluster walks the table,
/// and every failure names its row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_each_role_its_row_leaves_out() {
    let _serial = SERIAL.lock().await;
    let cluster = start().await;
    // A follower: nothing here depends on leading, and no row's allowed call
    // can change the cluster there.
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await.expect("leader");
    let follower = *cluster.nodes.keys().find(|id| **id != leader).expect("a follower");
    let mut failures = Vec::new();
    for (path, allowed) in RPC_ROLES {
        for (role, name, token) in credentials() {
            let code = call(&cluster, follower, path, token).await;
            let refused = matches!(code, Code::PermissionDenied | Code::Unauthenticated);
            if allowed.contains(&role) && refused {
                failures.push(format!("{path}: {name} ({}) was refused: {code:?}", role.as_str()));
            }
            if !allowed.contains(&role) && code != Code::PermissionDenied {
                failures.push(format!("{path}: {name} ({}) got {code:?}, not PermissionDenied", role.as_str()));
            }
        }
        let code = call(&cluster, follower, path, "not-a-token-0123456789").await;
        if code != Code::Unauthenticated {
            failures.push(format!("{path}: an unknown token got {code:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Raft RPCs take the peer token and nothing else: no client or worker
/// credential reaches AppendEntries, Vote or InstallSnapshot, and the
/// cluster keeps its leader and term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_or_worker_token_reaches_raft() {
    let _serial = SERIAL.lock().await;
    let cluster = start().await;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await.expect("leader");
    let before = cluster.node_infos().await;
    for path in ["/lexum.v1.Raft/AppendEntries", "/lexum.v1.Raft/Vote", "/lexum.v1.Raft/InstallSnapshot"] {
        for role in [Role::Read, Role::Write, Role::Worker, Role::Admin] {
            for id in cluster.nodes.keys() {
                let code = call(&cluster, *id, path, token_of(role)).await;
                assert_eq!(code, Code::PermissionDenied, "{path} on node {id} with the {} token", role.as_str());
            }
        }
        // The peer token reaches the handler, which refuses the empty payload.
        assert_eq!(call(&cluster, leader, path, PEER).await, Code::InvalidArgument, "{path} with the peer token");
    }
    let after = cluster.node_infos().await;
    let terms = |infos: &std::collections::BTreeMap<u64, pb::NodeInfoResponse>| {
        infos.values().map(|i| (i.id, i.term, i.leader)).collect::<Vec<_>>()
    };
    assert_eq!(terms(&before), terms(&after), "refused Raft calls changed no term or leader");
    // And the peer token is no client credential.
    let mut client = cluster.client(leader).await.expect("client");
    let mut request = tonic::Request::new(pb::ReadRequest { domain: "Pool".into(), ..Default::default() });
    authorize_with(&mut request, PEER);
    let status = client.read(request).await.expect_err("the peer token cannot read");
    assert_eq!(status.code(), Code::PermissionDenied);
}

/// A token's name is the principal recorded with its writes (and the
/// `--as` name is added to it), so `why` says who wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokens_name_is_the_principal_of_its_writes() {
    let _serial = SERIAL.lock().await;
    let cluster = start().await;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await.expect("leader");
    let mut client = cluster.client(leader).await.expect("client");
    let source = "domain Pool {\n  state {\n    nodes: int = 1\n  }\n}\n";
    let mut submit = tonic::Request::new(pb::SubmitProgramRequest {
        program: Some(pb::submit_program_request::Program::Source(source.into())),
        file_name: "t.lxm".into(),
    });
    authorize_with(&mut submit, token_of(Role::Write));
    let refused = client.submit_program(submit).await.expect_err("a writer cannot submit");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let mut submit = tonic::Request::new(pb::SubmitProgramRequest {
        program: Some(pb::submit_program_request::Program::Source(source.into())),
        file_name: "t.lxm".into(),
    });
    authorize_with(&mut submit, token_of(Role::Admin));
    client.submit_program(submit).await.expect("admin submits");
    for (value, as_name) in [(2, ""), (3, "hpa")] {
        let write = pb::FieldWrite { domain: "Pool".into(), field: "nodes".into(), value: Some(int_value(value)) };
        let mut mutate = tonic::Request::new(pb::MutateRequest {
            writes: vec![write],
            as_name: as_name.into(),
            ..Default::default()
        });
        authorize_with(&mut mutate, token_of(Role::Write));
        client.mutate(mutate).await.expect("writer sets");
    }
    let mut why = tonic::Request::new(pb::WhyRequest { domain: "Pool".into(), field: "nodes".into(), last: 0 });
    authorize_with(&mut why, token_of(Role::Read));
    let writes = client.why(why).await.expect("reader asks why").into_inner().writes;
    let principals: Vec<String> = writes
        .iter()
        .filter_map(|w| match w.cause.as_ref().and_then(|c| c.kind.as_ref()) {
            Some(pb::cause::Kind::Client(client)) => Some(client.principal.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(principals, ["bridge", "bridge/hpa"]);
}

/// `lexumd` will not serve a non-loopback address without tokens unless
/// told `--insecure` (the check runs before anything binds).
#[test]
fn lexumd_refuses_a_public_address_without_tokens() {
    let binary = lexum_jepsen::cluster::workspace_binary("lexumd").expect("lexumd built");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = std::process::Command::new(binary)
        .args(["--id", "1", "--listen", "0.0.0.0:1", "--data-dir"])
        .arg(dir.path().join("data"))
        .env_remove("LEXUM_TOKEN")
        .env_remove("LEXUMD_CONFIG")
        .output()
        .expect("run lexumd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--insecure") && stderr.contains("0.0.0.0:1"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "nothing was opened");
}

/// `deploy/local-cluster.sh` run with its state and ports moved (never the
/// default ones); `down --wipe` when dropped.
struct ScriptCluster {
    dir: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
    endpoints: String,
}

impl ScriptCluster {
    fn script(&self, args: &[&str]) -> std::process::Output {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local-cluster.sh");
        let mut command = std::process::Command::new(script);
        command.args(args).envs(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        command.output().expect("run deploy/local-cluster.sh")
    }

    /// `lexumctl` with only the variables given (no token or CA of the caller's).
    fn ctl(&self, vars: &[(&str, &str)], args: &[&str]) -> std::process::Output {
        let binary = lexum_jepsen::cluster::workspace_binary("lexumctl").expect("lexumctl built");
        let mut command = std::process::Command::new(binary);
        command.args(["--endpoints", &self.endpoints]);
        if !args.contains(&"--timeout") {
            command.args(["--timeout", "10s"]);
        }
        command
            .args(args)
            .env_remove("LEXUM_TOKEN")
            .env_remove("LEXUM_CA")
            .env_remove("LEXUM_CONFIG")
            .env("XDG_CONFIG_HOME", "/nonexistent")
            .envs(vars.iter().copied());
        command.output().expect("run lexumctl")
    }
}

impl Drop for ScriptCluster {
    fn drop(&mut self) {
        let _ = self.script(&["down", "--wipe"]);
    }
}

/// `deploy/local-cluster.sh up --secure` end to end: it makes a CA, the
/// nodes' certificate and a token per role in its state directory, the
/// nodes come up with TLS and `[auth]`, and `lexumctl` with `LEXUM_CA` and
/// each role's token from `tokens.env` can do what the role allows and no
/// more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secure_local_cluster_gives_each_role_its_rights() {
    let _serial = SERIAL.lock().await;
    let port = || lexum_jepsen::ports::loopback_port().expect("free port").to_string();
    let grpc = [port(), port(), port()];
    let metrics = [port(), port(), port()];
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("local");
    let lexumd = lexum_jepsen::cluster::workspace_binary("lexumd").expect("lexumd built");
    let bin_dir = lexumd.parent().expect("bin dir").display().to_string();
    let env = vec![
        ("LEXUM_LOCAL_DIR", state.display().to_string()),
        ("LEXUM_LOCAL_PORTS", grpc.join(" ")),
        ("LEXUM_LOCAL_METRICS_PORTS", metrics.join(" ")),
        ("LEXUM_BIN_DIR", bin_dir),
    ];
    let endpoints = grpc.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let cluster = ScriptCluster { dir, env, endpoints };
    let up = tokio::task::block_in_place(|| cluster.script(&["up", "--secure"]));
    assert!(
        up.status.success(),
        "up --secure: {}{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );

    let tokens_env = std::fs::read_to_string(state.join("tokens.env")).expect("tokens.env");
    let var = |name: &str| {
        let prefix = format!("export {name}=");
        tokens_env
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{name} in tokens.env"))
            .to_string()
    };
    let ca = var("LEXUM_CA");
    assert_eq!(std::path::Path::new(&ca), state.join("ca.pem"));
    let (read, write, worker, admin) =
        (var("LEXUM_TOKEN_READ"), var("LEXUM_TOKEN_WRITE"), var("LEXUM_TOKEN_WORKER"), var("LEXUM_TOKEN_ADMIN"));
    let program = cluster.dir.path().join("pool.lxm");
    std::fs::write(&program, "domain Pool {\n  state {\n    nodes: int = 1\n  }\n}\n").expect("program");
    let program = program.display().to_string();
    let run = |token: &str, args: &[&str]| {
        tokio::task::block_in_place(|| cluster.ctl(&[("LEXUM_CA", ca.as_str()), ("LEXUM_TOKEN", token)], args))
    };
    let expect = |out: std::process::Output, code: i32, what: &str| {
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(code), "{what}: {text}");
        text
    };
    let denied = expect(run(&read, &["submit", &program]), 1, "a reader submits");
    assert!(denied.contains("permission denied"), "{denied}");
    expect(run(&admin, &["submit", &program]), 0, "the admin submits");
    expect(run(&read, &["set", "Pool.nodes=2"]), 1, "a reader sets");
    expect(run(&worker, &["get", "Pool"]), 1, "a worker reads");
    expect(run(&write, &["set", "Pool.nodes=2"]), 0, "a writer sets");
    let got = expect(run(&read, &["--output", "json", "get", "Pool"]), 0, "a reader reads");
    assert!(got.contains("\"nodes\": 2") || got.contains("\"nodes\":2"), "{got}");
    let why = expect(run(&read, &["--output", "json", "why", "Pool.nodes"]), 0, "a reader asks why");
    assert!(why.contains("\"writer\""), "the token's name is the principal: {why}");
    // The leader gathers every member's state over the peers' TLS with the
    // peer token, for a reader's `status`.
    let mut reachable = 0;
    for _ in 0..30 {
        let status = expect(run(&read, &["--output", "json", "status"]), 0, "a reader asks for status");
        reachable =
            ["leader", "follower"].iter().map(|role| status.matches(&format!("\"role\": \"{role}\"")).count()).sum();
        if reachable == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(reachable, 3, "every member answers the leader's NodeInfo with the peer token");
    // Workers attach with the worker token only.
    let attach = ["worker", "--effect", "Cloud.SetNodeCount", "--for", "1s"];
    let refused = expect(run(&admin, &attach), 1, "a worker with the admin token");
    assert!(refused.contains("permission denied"), "{refused}");
    expect(run(&worker, &attach), 0, "a worker with the worker token");
    // `--ca` works as well as LEXUM_CA; without the CA there is no connection.
    let out =
        tokio::task::block_in_place(|| cluster.ctl(&[("LEXUM_TOKEN", read.as_str())], &["--ca", &ca, "get", "Pool"]));
    expect(out, 0, "--ca");
    let out = tokio::task::block_in_place(|| {
        cluster.ctl(&[("LEXUM_TOKEN", admin.as_str())], &["--timeout", "3s", "get", "Pool"])
    });
    expect(out, 2, "plain text to TLS nodes");
}
