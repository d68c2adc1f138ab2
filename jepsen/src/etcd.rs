//! The benchmark's anchor: a three-member etcd on loopback, and the two
//! calls of etcd's v3 gRPC API the comparison needs (`KV.Put` and
//! `Maintenance.Status`), declared by hand with their wire field numbers so
//! no etcd client library (and no second gRPC stack) is pulled in.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

use crate::ports::loopback_port;

/// `etcdserverpb.ResponseHeader`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseHeader {
    /// The cluster's id.
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    /// The member that answered.
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
    /// The store's revision.
    #[prost(int64, tag = "3")]
    pub revision: i64,
    /// The member's Raft term.
    #[prost(uint64, tag = "4")]
    pub raft_term: u64,
}

/// `etcdserverpb.PutRequest` (key and value only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    /// The key.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// The value.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `etcdserverpb.PutResponse` (header only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutResponse {
    /// The answering member's header.
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
}

/// `etcdserverpb.StatusRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusRequest {}

/// `etcdserverpb.StatusResponse` (the fields used here).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusResponse {
    /// The answering member's header (its `member_id`).
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    /// The leader's member id as this member sees it (0: none).
    #[prost(uint64, tag = "4")]
    pub leader: u64,
    /// The member's Raft term.
    #[prost(uint64, tag = "6")]
    pub raft_term: u64,
}

/// A connection to one etcd member.
#[derive(Clone)]
pub struct EtcdClient {
    grpc: tonic::client::Grpc<Channel>,
}

impl EtcdClient {
    /// Connects to `http://addr`.
    pub async fn connect(addr: &str) -> Result<EtcdClient, EtcdError> {
        let endpoint = Channel::from_shared(format!("http://{addr}")).map_err(|_| EtcdError::Address(addr.into()))?;
        let channel = endpoint.connect_timeout(Duration::from_secs(2)).connect().await?;
        Ok(EtcdClient { grpc: tonic::client::Grpc::new(channel) })
    }

    async fn unary<Q, R>(&mut self, path: &'static str, request: Q) -> Result<R, tonic::Status>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        self.grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let codec = tonic_prost::ProstCodec::<Q, R>::default();
        let response = self.grpc.unary(tonic::Request::new(request), PathAndQuery::from_static(path), codec).await?;
        Ok(response.into_inner())
    }

    /// `KV.Put`: acknowledged once committed by a quorum.
    pub async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<PutResponse, tonic::Status> {
        let request = PutRequest { key: key.to_vec(), value: value.to_vec() };
        self.unary("/etcdserverpb.KV/Put", request).await
    }

    /// `Maintenance.Status` of the member this client is connected to.
    pub async fn status(&mut self) -> Result<StatusResponse, tonic::Status> {
        self.unary("/etcdserverpb.Maintenance/Status", StatusRequest {}).await
    }
}

/// Why the etcd cluster could not be run.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No `etcd` on PATH.
    #[error("etcd is not installed (deploy/setup.sh --bench installs Debian's etcd-server)")]
    NotInstalled,
    /// A port, a directory or a process.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// No loopback port.
    #[error(transparent)]
    Port(#[from] crate::ports::PortError),
    /// Not an address a channel can be made for.
    #[error("bad etcd address `{0}`")]
    Address(String),
    /// The connection failed.
    #[error("connecting to etcd: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The cluster did not elect a leader in time.
    #[error("etcd elected no leader within {0:?}")]
    NoLeader(Duration),
}

/// One member: its name, ports and process.
struct Member {
    name: String,
    client_addr: String,
    peer_url: String,
    process: Option<Child>,
}

/// Three etcd members on loopback, each with its own data directory under
/// a temporary directory (fsync on, etcd's defaults otherwise).
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    initial_cluster: String,
}

impl EtcdCluster {
    /// Starts three members and waits until they have a leader.
    pub async fn start() -> Result<EtcdCluster, EtcdError> {
        if Command::new("etcd").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
            return Err(EtcdError::NotInstalled);
        }
        let dir = tempfile::tempdir()?;
        let mut members = Vec::new();
        for i in 1..=3 {
            let client_addr = format!("127.0.0.1:{}", loopback_port()?);
            let peer_url = format!("http://127.0.0.1:{}", loopback_port()?);
            members.push(Member { name: format!("e{i}"), client_addr, peer_url, process: None });
        }
        let initial_cluster =
            members.iter().map(|m| format!("{}={}", m.name, m.peer_url)).collect::<Vec<_>>().join(",");
        let mut cluster = EtcdCluster { dir, members, initial_cluster };
        for i in 0..cluster.members.len() {
            cluster.spawn(i)?;
        }
        cluster.wait_for_leader(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.members[i].name)
    }

    fn spawn(&mut self, i: usize) -> Result<(), EtcdError> {
        let data_dir = self.data_dir(i);
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", self.members[i].name)))?;
        let m = &self.members[i];
        let child = Command::new("etcd")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen-client-urls", &format!("http://{}", m.client_addr)])
            .args(["--advertise-client-urls", &format!("http://{}", m.client_addr)])
            .args(["--listen-peer-urls", &m.peer_url])
            .args(["--initial-advertise-peer-urls", &m.peer_url])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", "new", "--initial-cluster-token", "lexum-bench"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.members[i].process = Some(child);
        Ok(())
    }

    /// Client addresses (`127.0.0.1:port`), one per member.
    pub fn client_addrs(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_addr.clone()).collect()
    }

    /// The index of the leader among the members, once a live member names
    /// one and the leader answers too.
    pub async fn wait_for_leader(&self, limit: Duration) -> Result<usize, EtcdError> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(i) = self.leader().await {
                return Ok(i);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(EtcdError::NoLeader(limit))
    }

    async fn leader(&self) -> Option<usize> {
        let mut ids = Vec::new();
        let mut named = 0;
        for m in &self.members {
            if m.process.is_none() {
                ids.push(None);
                continue;
            }
            let status = match EtcdClient::connect(&m.client_addr).await {
                Ok(mut c) => {
                    tokio::time::timeout(Duration::from_millis(500), c.status()).await.ok().and_then(Result::ok)
                }
                Err(_) => None,
            };
            ids.push(status.as_ref().and_then(|s| s.header.as_ref()).map(|h| h.member_id));
            if let Some(s) = status.filter(|s| s.leader != 0) {
                named = s.leader;
            }
        }
        ids.iter().position(|id| *id == Some(named) && named != 0)
    }

    /// `kill -9` of member `i`.
    pub fn kill(&mut self, i: usize) -> std::io::Result<()> {
        if let Some(mut child) = self.members[i].process.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Restarts member `i` on its data directory (it rejoins as itself).
    pub fn restart(&mut self, i: usize) -> Result<(), EtcdError> {
        self.spawn(i)
    }

    /// Where the members' logs are.
    pub fn log_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            let _ = self.kill(i);
        }
    }
}
