//! A node's `[limits]` against a real single-node `lexumd` on loopback, and
//! the SDK's answer to them: a burst of writes past a principal's rate is
//! refused with RESOURCE_EXHAUSTED and a `retry-after-ms` hint, then
//! admitted after it; the SDK waits as asked and its writes all succeed; a
//! connection (a slow client that never reads) holds no more watchers than
//! its cap, and gets its place back when a stream ends; the same for
//! attached workers; a call is cut at the node's deadline.

use lexum_client::{Client, ClientConfig, Value};
use lexum_jepsen::cluster::workspace_binary;
use lexum_jepsen::ports::loopback_port;
use lexum_proto::v1 as pb;
use lexum_proto::v1::lexum_client::LexumClient;
use lexum_proto::v1::worker_client::WorkerClient;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::Code;

const PROGRAM: &str = r#"
domain Pool {
  state {
    nodes: int = 3
  }
  goal Small { nodes < 1000 }
}
"#;

/// One `lexumd` that is killed when dropped.
struct Node {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// Starts a single-node cluster with `limits` as its `[limits]` section
    /// and waits (bounded) until it leads.
    async fn start(limits: &str) -> Node {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = loopback_port().expect("port");
        let addr = format!("127.0.0.1:{port}");
        let config = format!(
            "id = 1\nlisten = \"{addr}\"\ndata_dir = {data:?}\n[peers]\n1 = \"{addr}\"\n[limits]\n{limits}\n",
            data = dir.path().join("data").display().to_string(),
        );
        let path = dir.path().join("node.toml");
        std::fs::write(&path, config).expect("config");
        let log = std::fs::File::create(dir.path().join("node.log")).expect("log");
        let child = Command::new(workspace_binary("lexumd").expect("lexumd built"))
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("lexumd starts");
        let node = Node { child, addr, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline, "no leader within 20 s");
            if let Ok(mut client) = node.raw().await {
                if let Ok(info) = client.node_info(pb::NodeInfoRequest {}).await {
                    if info.into_inner().role == "leader" {
                        return node;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new connection to the node.
    async fn channel(&self) -> anyhow::Result<Channel> {
        Ok(Channel::from_shared(format!("http://{}", self.addr))?
            .connect_timeout(Duration::from_secs(1))
            .connect()
            .await?)
    }

    /// A raw gRPC client on its own connection.
    async fn raw(&self) -> anyhow::Result<LexumClient<Channel>> {
        Ok(LexumClient::new(self.channel().await?))
    }

    /// A raw worker client on its own connection.
    async fn raw_worker(&self) -> anyhow::Result<WorkerClient<Channel>> {
        Ok(WorkerClient::new(self.channel().await?))
    }

    fn sdk(&self) -> Client {
        let config = ClientConfig::new([self.addr.as_str()]).with_deadline(Duration::from_secs(20));
        Client::new_lazy(config).expect("client")
    }
}

fn mutate(nodes: i64) -> pb::MutateRequest {
    let value = lexum_client::value::to_wire(&Value::Int(nodes));
    pb::MutateRequest {
        writes: vec![pb::FieldWrite { domain: "Pool".into(), field: "nodes".into(), value: Some(value) }],
        ..Default::default()
    }
}

/// Retries `open` while it is refused as over a limit, for up to 5 s: a
/// place freed by a stream that ended comes back once the node sees it end.
async fn admitted_again<T, F: std::future::Future<Output = Result<T, tonic::Status>>>(mut open: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match open().await {
            Ok(_) => return,
            Err(status) if status.code() == Code::ResourceExhausted && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("the place was not given back: {status:?}"),
        }
    }
}

fn retry_after_ms(status: &tonic::Status) -> Option<u64> {
    status.metadata().get(lexum_proto::RETRY_AFTER_METADATA_KEY)?.to_str().ok()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_the_write_rate_is_refused_with_a_hint_then_admitted_and_the_sdk_waits_for_it() {
    let node = Node::start("writes_per_second = 4\nwrite_burst = 3\n").await;
    let sdk = node.sdk();
    sdk.submit_source("limits.lxm", PROGRAM).await.expect("program (one write)");
    tokio::time::sleep(Duration::from_millis(800)).await;

    // The bucket is full again (3): three writes pass, the fourth is refused.
    let mut raw = node.raw().await.expect("connect");
    for n in 0..3 {
        raw.mutate(mutate(n)).await.expect("within the burst");
    }
    let refused = raw.mutate(mutate(9)).await.expect_err("past the burst");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    let hint = retry_after_ms(&refused).expect("a retry-after-ms hint");
    assert!(hint > 0 && hint <= 250, "one write at 4/s: at most 250 ms, got {hint}");
    tokio::time::sleep(Duration::from_millis(hint)).await;
    raw.mutate(mutate(10)).await.expect("admitted after the hint");

    // The SDK meets the same limit and waits it out: ten writes at 4/s.
    let started = Instant::now();
    for n in 0..10 {
        sdk.set("Pool", "nodes", Value::Int(n)).await.expect("the SDK honours the hint");
    }
    assert!(started.elapsed() >= Duration::from_millis(1500), "{:?}: the rate was not applied", started.elapsed());
    assert_eq!(sdk.read("Pool").await.expect("read").get("nodes"), Some(&Value::Int(9)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_holds_no_more_watchers_than_its_cap() {
    let node = Node::start("max_watchers_per_connection = 2\nmax_watchers = 3\n").await;
    // A slow client: opens streams on one connection and never reads them.
    let raw = node.raw().await.expect("connect");
    let watch =
        |mut client: LexumClient<Channel>| async move { client.watch(pb::WatchRequest { from_index: 1 }).await };
    let first = watch(raw.clone()).await.expect("first watcher");
    let _second = watch(raw.clone()).await.expect("second watcher");
    let refused = watch(raw.clone()).await.expect_err("a third on the same connection");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(retry_after_ms(&refused).is_some(), "{refused:?}");

    // Another connection has its own cap, under the node's.
    let other = node.raw().await.expect("connect");
    let _third = watch(other.clone()).await.expect("another connection");
    let refused = watch(other.clone()).await.expect_err("the node is full");
    assert!(refused.message().contains("this node"), "{refused:?}");

    // Ending a stream gives its place back.
    drop(first);
    admitted_again(|| watch(raw.clone())).await;
}

/// Attaches a worker on `client`'s connection with its hello; the stream of
/// commands while it is attached, or why it was refused.
async fn attach(
    mut client: WorkerClient<Channel>,
) -> Result<(tonic::Streaming<pb::WorkerCommand>, tokio::sync::mpsc::Sender<pb::WorkerMessage>), tonic::Status> {
    let (messages, outgoing) = tokio::sync::mpsc::channel(4);
    let hello = pb::Hello { worker_id: "capped".into(), effects: vec!["Pool.Scale".into()], concurrency: 1 };
    let hello = pb::WorkerMessage { kind: Some(pb::worker_message::Kind::Hello(hello)) };
    messages.send(hello).await.map_err(|_| tonic::Status::internal("channel"))?;
    let commands = client.attach(tokio_stream::wrappers::ReceiverStream::new(outgoing)).await?.into_inner();
    Ok((commands, messages))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_and_a_node_hold_no_more_workers_than_their_caps() {
    let node = Node::start("max_workers_per_connection = 1\nmax_workers = 2\n").await;
    let raw = node.raw_worker().await.expect("connect");
    let first = attach(raw.clone()).await.expect("first worker");
    let refused = attach(raw.clone()).await.expect_err("a second on the same connection");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("this connection"), "{refused:?}");
    assert!(retry_after_ms(&refused).is_some(), "{refused:?}");

    let other = node.raw_worker().await.expect("connect");
    let _second = attach(other).await.expect("another connection");
    let third = node.raw_worker().await.expect("connect");
    let refused = attach(third.clone()).await.expect_err("the node is full");
    assert!(refused.message().contains("this node"), "{refused:?}");

    // A worker that goes away gives its place back.
    drop(first);
    admitted_again(|| attach(third.clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_cut_at_the_nodes_deadline_and_the_node_keeps_serving() {
    let node = Node::start("default_deadline_ms = 500\nmax_deadline_ms = 800\n").await;
    let mut raw = node.raw().await.expect("connect");
    // Adding a member nobody runs waits for its catch-up (a minute inside
    // the node); the call's deadline ends it first.
    let add = |id: u64| pb::AddMemberRequest { id, address: "127.0.0.1:9".into() };
    let started = Instant::now();
    let cut = raw.add_member(add(7)).await.expect_err("no member at that address");
    assert_eq!(cut.code(), Code::DeadlineExceeded, "{cut:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "default deadline: {:?}", started.elapsed());
    // A client asking for an hour gets the cap.
    let mut request = tonic::Request::new(add(8));
    request.set_timeout(Duration::from_secs(3600));
    let started = Instant::now();
    let cut = raw.add_member(request).await.expect_err("no member at that address");
    assert!(matches!(cut.code(), Code::DeadlineExceeded | Code::FailedPrecondition), "{cut:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "capped deadline: {:?}", started.elapsed());
    let info = raw.node_info(pb::NodeInfoRequest {}).await.expect("the node still serves");
    assert_eq!(info.into_inner().role, "leader");
}
