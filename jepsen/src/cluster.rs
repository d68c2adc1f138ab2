//! A cluster of real `lexumd` processes, on loopback or each in its own
//! network namespace, for tests and benchmarks: start, kill -9, pause,
//! restart, partition, and talk to each node.
//!
//! Every wait is bounded; dropping the cluster kills every process.

use crate::netns::Network;
use anyhow::{bail, Context};
use lexum_proto::v1 as pb;
use lexum_proto::v1::lexum_client::LexumClient;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// How a test cluster is configured.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Number of nodes.
    pub nodes: u64,
    /// Snapshot after this many entries.
    pub snapshot_logs: u64,
    /// Entries kept behind a snapshot.
    pub keep_logs: u64,
    /// Cycles without progress before E005.
    pub oscillation_threshold: u32,
    /// Per-attempt deadline for workers.
    pub effect_timeout_ms: u64,
    /// Bearer token every node demands from clients, workers and peers.
    pub token: Option<String>,
    /// Mutual TLS between nodes and with clients.
    pub tls: Option<TlsFiles>,
    /// Named tokens with roles and a peer token (`[auth]`); the harness's
    /// own calls use the first admin token.
    pub auth: Option<AuthTokens>,
    /// `(heartbeat, election min, election max)` in ms; `None` keeps
    /// lexumd's defaults (what the benchmark measures).
    pub raft_timeouts: Option<(u64, u64, u64)>,
    /// Test-only bugs every node runs with (`lexumd --test-fault NAME`,
    /// with `LEXUM_ALLOW_TEST_FAULTS=1`); empty for a correct cluster.
    pub test_faults: Vec<String>,
}

/// The `[auth]` section of every node.
#[derive(Clone, Debug)]
pub struct AuthTokens {
    /// The token nodes send each other.
    pub peer_token: String,
    /// Client and worker tokens.
    pub tokens: Vec<TestToken>,
}

/// One `[[auth.tokens]]` entry.
#[derive(Clone, Debug)]
pub struct TestToken {
    /// Principal name.
    pub name: String,
    /// `read`, `write`, `worker` or `admin`.
    pub role: String,
    /// The secret.
    pub token: String,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            snapshot_logs: 5000,
            keep_logs: 1000,
            oscillation_threshold: 10,
            effect_timeout_ms: 10_000,
            token: None,
            tls: None,
            auth: None,
            raft_timeouts: Some((100, 500, 1000)),
            test_faults: Vec::new(),
        }
    }
}

/// PEM files of a test CA and of the one identity every node and client
/// uses (a certificate for IP 127.0.0.1, good for server and client auth).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The identity's certificate.
    pub cert: PathBuf,
    /// The identity's private key.
    pub key: PathBuf,
}

/// One node's process and addresses.
pub struct NodeProcess {
    /// Node id.
    pub id: u64,
    /// gRPC address.
    pub addr: String,
    /// HTTP (metrics) address.
    pub http_addr: String,
    /// The node's network namespace, when the cluster runs in [`Network`].
    namespace: Option<String>,
    child: Option<Child>,
    paused: bool,
}

/// A running test cluster.
pub struct LocalCluster {
    /// Scratch directory with data, configs and logs.
    pub dir: tempfile::TempDir,
    /// Nodes by id.
    pub nodes: BTreeMap<u64, NodeProcess>,
    binary: PathBuf,
    options: ClusterOptions,
    /// The namespaces the nodes run in (dropped after the processes).
    network: Option<Network>,
}

/// Writes `node<ID>.toml`; an empty `peers` makes a node that waits to be added.
fn write_config(dir: &Path, node: &NodeProcess, peers: &str, options: &ClusterOptions) -> anyhow::Result<()> {
    let token = options.token.as_ref().map(|t| format!("token = {t:?}\n")).unwrap_or_default();
    let tls = options
        .tls
        .as_ref()
        .map(|tls| {
            format!(
                "[tls]\ncert = {:?}\nkey = {:?}\nca = {:?}\nclient_auth = true\n",
                tls.cert.display().to_string(),
                tls.key.display().to_string(),
                tls.ca.display().to_string()
            )
        })
        .unwrap_or_default();
    let auth = options
        .auth
        .as_ref()
        .map(|auth| {
            let tokens: String = auth
                .tokens
                .iter()
                .map(|t| format!("[[auth.tokens]]\nname = {:?}\nrole = {:?}\ntoken = {:?}\n", t.name, t.role, t.token))
                .collect();
            format!("[auth]\npeer_token = {:?}\n{tokens}", auth.peer_token)
        })
        .unwrap_or_default();
    let config = format!(
        "{token}id = {id}\nlisten = \"{addr}\"\nmetrics_listen = \"{http}\"\ndata_dir = \"{data}\"\n\
         [peers]\n{peers}\n[raft]\n{timeouts}snapshot_logs = {snap}\nkeep_logs = {keep}\n\
         [engine]\noscillation_threshold = {osc}\neffect_timeout_ms = {timeout}\n{tls}{auth}",
        id = node.id,
        addr = node.addr,
        http = node.http_addr,
        data = dir.join(format!("node{}", node.id)).display(),
        snap = options.snapshot_logs,
        keep = options.keep_logs,
        osc = options.oscillation_threshold,
        timeout = options.effect_timeout_ms,
        timeouts = options
            .raft_timeouts
            .map(|(beat, min, max)| format!(
                "heartbeat_ms = {beat}\nelection_timeout_min_ms = {min}\nelection_timeout_max_ms = {max}\n"
            ))
            .unwrap_or_default(),
    );
    std::fs::write(dir.join(format!("node{}.toml", node.id)), config)?;
    Ok(())
}

/// Path of a workspace binary next to the running test executable
/// (`target/<profile>/deps/test-…` → `target/<profile>/<name>`).
pub fn workspace_binary(name: &str) -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var(format!("{}_BIN", name.to_uppercase())) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().context("test executable has no directory")?;
    if dir.ends_with("deps") {
        dir = dir.parent().context("deps has no parent")?;
    }
    let candidate = dir.join(name);
    if candidate.exists() {
        return Ok(candidate);
    }
    bail!("{} not found; build it first (cargo build -p lexum-node -p lexum-client)", candidate.display())
}

/// How long a fault test runs: `default`, or `LEXUM_JEPSEN_SECONDS` when
/// set (at most an hour).
pub fn run_length(default: Duration) -> Duration {
    const MAX_RUN: Duration = Duration::from_secs(3600);
    std::env::var("LEXUM_JEPSEN_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(default, |seconds| Duration::from_secs(seconds).min(MAX_RUN))
}

/// A loopback address on a port from [`crate::ports`].
fn loopback_addr() -> anyhow::Result<String> {
    Ok(format!("127.0.0.1:{}", crate::ports::loopback_port()?))
}

impl LocalCluster {
    /// Starts `options.nodes` nodes on loopback and waits (bounded) for a leader.
    pub async fn start(options: ClusterOptions) -> anyhow::Result<LocalCluster> {
        LocalCluster::start_on(options, None).await
    }

    /// Starts the nodes of `network` (ids 1..=`options.nodes`), each in its
    /// namespace, and waits for a leader. The caller must run in the
    /// network's client namespace ([`crate::netns::run_as_client`]).
    pub async fn start_in(options: ClusterOptions, network: Network) -> anyhow::Result<LocalCluster> {
        LocalCluster::start_on(options, Some(network)).await
    }

    async fn start_on(options: ClusterOptions, network: Option<Network>) -> anyhow::Result<LocalCluster> {
        let dir = tempfile::tempdir()?;
        let binary = workspace_binary("lexumd")?;
        let mut nodes = BTreeMap::new();
        for id in 1..=options.nodes {
            let (addr, http_addr, namespace) = match &network {
                Some(network) => {
                    let ip = Network::address(id);
                    (format!("{ip}:7000"), format!("{ip}:9000"), Some(network.namespace(id)))
                }
                None => (loopback_addr()?, loopback_addr()?, None),
            };
            nodes.insert(id, NodeProcess { id, addr, http_addr, namespace, child: None, paused: false });
        }
        let peers: String = nodes.values().map(|n| format!("{} = \"{}\"\n", n.id, n.addr)).collect();
        for node in nodes.values() {
            write_config(dir.path(), node, &peers, &options)?;
        }
        let mut cluster = LocalCluster { dir, nodes, binary, options, network };
        let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
        for id in ids {
            cluster.spawn(id)?;
        }
        cluster.wait_for_leader(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    fn spawn(&mut self, id: u64) -> anyhow::Result<()> {
        let config = self.dir.path().join(format!("node{id}.toml"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node{id}.log")))?;
        let namespace = self.nodes.get(&id).context("no such node")?.namespace.clone();
        let public = namespace.is_some();
        let mut command = match namespace {
            Some(namespace) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", &namespace]).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        if public && self.options.token.is_none() && self.options.auth.is_none() {
            // Namespace addresses are not loopback: say so explicitly.
            command.arg("--insecure");
        }
        for fault in &self.options.test_faults {
            command.arg("--test-fault").arg(fault).env("LEXUM_ALLOW_TEST_FAULTS", "1");
        }
        let child = command
            .arg("--config")
            .arg(&config)
            .env("LEXUM_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        let node = self.nodes.get_mut(&id).context("no such node")?;
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    /// Starts a new, empty node `id` that is not a member yet (for
    /// `AddMember`); returns its address.
    pub fn start_joiner(&mut self, id: u64) -> anyhow::Result<String> {
        if self.network.is_some() {
            bail!("joiners are not supported in a network of namespaces");
        }
        let node = NodeProcess {
            id,
            addr: loopback_addr()?,
            http_addr: loopback_addr()?,
            namespace: None,
            child: None,
            paused: false,
        };
        write_config(self.dir.path(), &node, "", &self.options)?;
        let addr = node.addr.clone();
        self.nodes.insert(id, node);
        self.spawn(id)?;
        Ok(addr)
    }

    /// Kills node `id`, deletes its data, and starts it again empty and
    /// waiting to be added (for a membership change that removes a node
    /// and adds it back); works on loopback and in namespaces.
    pub fn restart_empty(&mut self, id: u64) -> anyhow::Result<()> {
        self.kill(id)?;
        let data = self.dir.path().join(format!("node{id}"));
        if data.exists() {
            std::fs::remove_dir_all(&data).with_context(|| format!("removing {}", data.display()))?;
        }
        let node = self.nodes.get(&id).context("no such node")?;
        write_config(self.dir.path(), node, "", &self.options)?;
        self.spawn(id)
    }

    /// The process id of a running node.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.nodes.get(&id)?.child.as_ref().map(Child::id)
    }

    /// The path of a node's log file.
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}.log"))
    }

    /// `kill -9` a node.
    pub fn kill(&mut self, id: u64) -> anyhow::Result<()> {
        let node = self.nodes.get_mut(&id).context("no such node")?;
        if let Some(mut child) = node.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Restarts a killed node from its data directory.
    pub fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        self.kill(id)?;
        self.spawn(id)
    }

    /// SIGSTOP (`pause = true`) or SIGCONT a node.
    pub fn pause(&mut self, id: u64, pause: bool) -> anyhow::Result<()> {
        let node = self.nodes.get_mut(&id).context("no such node")?;
        let Some(child) = &node.child else { bail!("node {id} is not running") };
        let signal = if pause { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: plain kill(2) on a child we own.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        if rc != 0 {
            bail!("signal to node {id} failed");
        }
        node.paused = pause;
        Ok(())
    }

    /// All gRPC endpoints, comma-separated (for `lexumctl --endpoints`).
    pub fn endpoints(&self) -> String {
        self.nodes.values().map(|n| n.addr.clone()).collect::<Vec<_>>().join(",")
    }

    /// A client connected to node `id` (over TLS when the cluster uses it;
    /// requests need [`LocalCluster::authorize`] when it uses a token).
    pub async fn client(&self, id: u64) -> anyhow::Result<LexumClient<Channel>> {
        Ok(LexumClient::new(self.channel(id).await?))
    }

    /// A channel to node `id`, for any of its services.
    pub async fn channel(&self, id: u64) -> anyhow::Result<Channel> {
        let node = self.nodes.get(&id).context("no such node")?;
        channel_to(&node.addr, self.options.tls.as_ref()).await
    }

    /// Adds the cluster's admin token, if any, to `request`.
    pub fn authorize<T>(&self, request: &mut tonic::Request<T>) {
        if let Some(token) = self.admin_token() {
            authorize_with(request, token);
        }
    }

    /// The token the harness uses: the single `token`, else the first admin
    /// token of `auth`.
    pub fn admin_token(&self) -> Option<&str> {
        self.options.token.as_deref().or_else(|| {
            let auth = self.options.auth.as_ref()?;
            auth.tokens.iter().find(|t| t.role == "admin").map(|t| t.token.as_str())
        })
    }

    /// `GET path` on node `id`'s HTTP (metrics) port: status code and body.
    pub async fn http_get(&self, id: u64, path: &str) -> anyhow::Result<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let node = self.nodes.get(&id).context("no such node")?;
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(&node.http_addr).await?;
            let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", node.http_addr);
            stream.write_all(request.as_bytes()).await?;
            let mut response = String::new();
            stream.read_to_string(&mut response).await?;
            anyhow::Ok(response)
        };
        let response = tokio::time::timeout(Duration::from_secs(5), exchange).await.context("HTTP timed out")??;
        let (head, body) = response.split_once("\r\n\r\n").context("no HTTP header end")?;
        let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).context("no HTTP status")?;
        Ok((status, body.to_string()))
    }

    /// Every running node's own view.
    pub async fn node_infos(&self) -> BTreeMap<u64, pb::NodeInfoResponse> {
        let mut infos = BTreeMap::new();
        for node in self.nodes.values().filter(|n| n.child.is_some() && !n.paused) {
            if let Ok(mut client) = self.client(node.id).await {
                let mut request = tonic::Request::new(pb::NodeInfoRequest {});
                self.authorize(&mut request);
                let call = client.node_info(request);
                if let Ok(Ok(info)) = tokio::time::timeout(Duration::from_secs(1), call).await {
                    infos.insert(node.id, info.into_inner());
                }
            }
        }
        infos
    }

    /// Waits until a running node reports itself leader; returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> anyhow::Result<u64> {
        self.wait_for_leader_other_than(None, timeout).await
    }

    /// Waits for a leader that is not `old`.
    pub async fn wait_for_leader_other_than(&self, old: Option<u64>, timeout: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            for (id, info) in self.node_infos().await {
                if info.role == "leader" && Some(id) != old {
                    return Ok(id);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("no leader within {timeout:?}; logs in {}", self.dir.path().display())
    }

    /// Waits until every running node has applied at least `index`.
    pub async fn wait_for_applied(
        &self,
        index: u64,
        timeout: Duration,
    ) -> anyhow::Result<BTreeMap<u64, pb::NodeInfoResponse>> {
        let deadline = Instant::now() + timeout;
        let running = self.nodes.values().filter(|n| n.child.is_some() && !n.paused).count();
        loop {
            let infos = self.node_infos().await;
            if infos.len() == running && infos.values().all(|i| i.applied_index >= index) {
                return Ok(infos);
            }
            if Instant::now() >= deadline {
                bail!("nodes did not all apply index {index} within {timeout:?}: {infos:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The namespaces the nodes run in, to partition them; `None` on loopback.
    pub fn network(&mut self) -> Option<&mut Network> {
        self.network.as_mut()
    }

    /// Scratch directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                if node.paused {
                    // SAFETY: plain kill(2) on a child we own.
                    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGCONT) };
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Adds `authorization: Bearer <token>` to `request`.
pub fn authorize_with<T>(request: &mut tonic::Request<T>, token: &str) {
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert(lexum_proto::AUTH_METADATA_KEY, value);
    }
}

/// Connects to one node (bounded), over TLS with the cluster's identity
/// when `tls` is given.
async fn channel_to(addr: &str, tls: Option<&TlsFiles>) -> anyhow::Result<Channel> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let endpoint = match tls {
        Some(tls) => {
            let (ca, cert, key) = (std::fs::read(&tls.ca)?, std::fs::read(&tls.cert)?, std::fs::read(&tls.key)?);
            let config = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .identity(Identity::from_pem(cert, key))
                .domain_name("127.0.0.1");
            Endpoint::from_shared(format!("https://{addr}"))?.tls_config(config)?
        }
        None => Endpoint::from_shared(format!("http://{addr}"))?,
    };
    Ok(endpoint.connect_timeout(Duration::from_millis(500)).timeout(Duration::from_secs(15)).connect().await?)
}

/// Connects to one node over plain HTTP/2 (bounded).
pub async fn connect(addr: &str) -> anyhow::Result<LexumClient<Channel>> {
    Ok(LexumClient::new(channel_to(addr, None).await?))
}
