//! [`Client`]: typed calls to a Lexum cluster with leader discovery,
//! follow-the-redirect, retries with backoff, deadlines, TLS and a token.
//!
//! Every call is bounded: at most [`RetryPolicy::max_attempts`] attempts and
//! at most [`ClientConfig::deadline`] in total, each attempt at most
//! [`ClientConfig::request_timeout`]. Writes and linearizable reads go to the
//! leader (learned from `lexum-leader` redirects); `Status`, `Watch`,
//! `Replay` and `NodeInfo` go to any node.
//!
//! Retrying a write after a lost response is safe for observations
//! (`Mutate` sets absolute values), `Release` and `Retry`; a retried
//! `SubmitProgram` may install the same program as two versions.

use crate::error::{is_transient, retry_after, ClientError};
use crate::history::{cycle_from_wire, Cycle};
use crate::provenance::{Explanation, WriteRecord};
use crate::value::{self, Value};
use lexum_proto::v1 as pb;
use lexum_proto::v1::lexum_client::LexumClient;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};

/// The three nodes of the local cluster (`deploy/local-cluster.sh`).
pub const DEFAULT_ENDPOINTS: [&str; 3] = ["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"];

/// TLS settings (PEM bytes).
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// CA certificate that signs the nodes' certificates.
    pub ca_pem: Vec<u8>,
    /// Name to verify in the nodes' certificates (default: the endpoint host).
    pub domain: Option<String>,
    /// Client certificate and key, for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// How failed attempts are retried.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Pause after the first transient failure.
    pub initial_backoff: Duration,
    /// Largest pause (the pause doubles up to this).
    pub max_backoff: Duration,
    /// Attempts per call, redirects included.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            max_attempts: 12,
        }
    }
}

/// Everything a [`Client`] (or [`crate::Worker`]) needs to reach a cluster.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Node addresses, `host:port` or `http(s)://host:port`.
    pub endpoints: Vec<String>,
    /// Bearer token sent as `authorization: Bearer <token>`.
    pub token: Option<String>,
    /// TLS; `None` for plain HTTP/2.
    pub tls: Option<TlsOptions>,
    /// Time allowed to open a connection to one node.
    pub connect_timeout: Duration,
    /// Time allowed for one attempt.
    pub request_timeout: Duration,
    /// Time allowed for a whole call, retries included; also how long a
    /// watch or worker keeps trying to reconnect before giving up.
    pub deadline: Duration,
    /// Retry behaviour.
    pub retry: RetryPolicy,
    /// A name added to the authenticated identity in the cause of every
    /// write (`lexumctl --as hpa-bridge`).
    pub as_name: Option<String>,
}

impl ClientConfig {
    /// Defaults for `endpoints`: no token, no TLS, 1 s connect timeout,
    /// 5 s per attempt, 15 s per call.
    pub fn new<I, S>(endpoints: I) -> ClientConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            token: None,
            tls: None,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            deadline: Duration::from_secs(15),
            retry: RetryPolicy::default(),
            as_name: None,
        }
    }

    /// Names this client in the causes of its writes (`TOKEN-NAME/NAME`).
    pub fn with_as_name(mut self, name: impl Into<String>) -> ClientConfig {
        self.as_name = Some(name.into());
        self
    }

    /// Sets the bearer token.
    pub fn with_token(mut self, token: impl Into<String>) -> ClientConfig {
        self.token = Some(token.into());
        self
    }

    /// Sets TLS options.
    pub fn with_tls(mut self, tls: TlsOptions) -> ClientConfig {
        self.tls = Some(tls);
        self
    }

    /// Sets the per-call deadline.
    pub fn with_deadline(mut self, deadline: Duration) -> ClientConfig {
        self.deadline = deadline;
        self
    }
}

/// A connection pool to one cluster. Cheap to clone; clones share the
/// connections and the leader hint.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    auth: Option<MetadataValue<tonic::metadata::Ascii>>,
    tls: Option<ClientTlsConfig>,
    channels: Mutex<HashMap<String, Channel>>,
    leader: Mutex<Option<String>>,
}

/// Which nodes may answer a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Leader,
    Any,
}

/// Result of installing a program.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Submitted {
    /// Log index of the program entry.
    pub index: u64,
    /// Program version now installed.
    pub version: u64,
    /// Content hash of the installed program.
    pub program_hash: String,
    /// Rendered warnings.
    pub warnings: Vec<String>,
}

/// One field write of a mutation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldWrite {
    /// Domain name.
    pub domain: String,
    /// Field name.
    pub field: String,
    /// New value.
    pub value: Value,
}

impl FieldWrite {
    /// `domain.field = value`.
    pub fn new(domain: impl Into<String>, field: impl Into<String>, value: Value) -> FieldWrite {
        FieldWrite { domain: domain.into(), field: field.into(), value }
    }
}

/// The engine state at one read index ([`Client::engine_snapshot`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineSnapshot {
    /// Log index of the state.
    pub index: u64,
    /// `Engine::snapshot` bytes.
    pub bytes: Vec<u8>,
}

/// A domain's state as read from the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainState {
    /// Applied index the read reflects.
    pub index: u64,
    /// Fields in declaration order.
    pub fields: Vec<(String, Value)>,
}

impl DomainState {
    /// A field's value.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.fields.iter().find(|(name, _)| name == field).map(|(_, v)| v)
    }
}

/// A page of a kind's live instances, in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstancePage {
    /// Applied index the read reflects.
    pub index: u64,
    /// `Kind[key]` with its fields, for each instance of the page.
    pub instances: Vec<(String, Vec<(String, Value)>)>,
    /// Live instances of the kind, across all pages.
    pub total: u64,
}

/// A goal and its status.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Goal {
    /// Domain name.
    pub domain: String,
    /// Goal name.
    pub goal: String,
    /// `critical` .. `background`.
    pub priority: String,
    /// `SATISFIED`, `VIOLATED`, `REPAIRING`, `FAILED`, `DOMINATED`, `TRAPPED`, `CONTESTED`.
    pub status: String,
    /// Diagnostic code (`E005`, `E010`), if any.
    pub code: Option<String>,
    /// Why (trap evidence, last error), if any.
    pub evidence: Option<String>,
    /// Log index at which the status began.
    pub since_index: u64,
    /// Repair cycles run.
    pub cycles: u32,
}

/// An engine event from [`Client::watch`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    /// Log index of the entry that caused it.
    pub index: u64,
    /// Event kind, as the engine names it (`mutation`, `goal_status`, `trap`, ...).
    pub kind: String,
    /// Domain, when the event concerns one.
    pub domain: Option<String>,
    /// Goal, when the event concerns one.
    pub goal: Option<String>,
    /// Diagnostic code, when there is one.
    pub code: Option<String>,
    /// On `goal_status`: the goal's new status (`SATISFIED`, `TRAPPED`, ...).
    pub status: Option<String>,
    /// On `cycle`: how it ended (`converged`, `tug_of_war`, `trapped`, ...).
    pub verdict: Option<String>,
    /// On `effect_*` events: the effect's name (`Cloud.SetNodeCount`).
    pub effect: Option<String>,
    /// On `effect_*` events: the key its worker receives and an observer
    /// names in `caused_by`.
    pub idempotency_key: Option<String>,
    /// On `effect_*` events: the attempt (0 while none was dispatched).
    pub attempt: u32,
    /// On `mutation`: who wrote.
    pub principal: Option<String>,
    /// On `mutation`: the fields written (`Pool[web].want`).
    pub fields: Vec<String>,
    /// Human description; match on the fields above, not on this text.
    pub message: String,
}

/// One member's view, from [`Client::status`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MemberStatus {
    /// Node id.
    pub id: u64,
    /// Client address.
    pub address: String,
    /// `leader`, `follower`, `learner`, `candidate` or `unreachable`.
    pub role: String,
    /// Last applied log index.
    pub applied_index: u64,
    /// Running state hash at `applied_index` (hex).
    pub state_hash: String,
}

/// Cluster status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterStatus {
    /// Leader's id, 0 when unknown.
    pub leader: u64,
    /// Current term.
    pub term: u64,
    /// Commit index.
    pub commit_index: u64,
    /// Every member.
    pub members: Vec<MemberStatus>,
    /// Installed program's hash (empty: none).
    pub program_hash: String,
    /// Installed program's version (0: none).
    pub program_version: u64,
}

/// A cluster member.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    /// Node id.
    pub id: u64,
    /// Client address.
    pub address: String,
    /// Voter (true) or learner.
    pub voter: bool,
}

/// Membership and leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    /// Members.
    pub members: Vec<Member>,
    /// Leader's id, 0 when unknown.
    pub leader: u64,
}

/// Outcome of a log replay on one node.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReplayReport {
    /// Index replayed up to.
    pub applied_index: u64,
    /// Hash the node holds.
    pub live_state_hash: String,
    /// Hash recomputed from the log.
    pub replayed_state_hash: String,
    /// Whether they agree.
    pub matches: bool,
}

/// One node's own view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node id.
    pub id: u64,
    /// Role.
    pub role: String,
    /// Term.
    pub term: u64,
    /// Leader id as this node sees it.
    pub leader: u64,
    /// Applied index.
    pub applied_index: u64,
}

/// A stream of events that survives reconnects; see [`Client::watch`].
pub type EventStream = ReceiverStream<Result<Event, ClientError>>;

/// Lowercase-host `scheme://host:port` for an endpoint.
fn endpoint_uri(address: &str, tls: bool) -> String {
    if address.contains("://") {
        address.to_string()
    } else if tls {
        format!("https://{address}")
    } else {
        format!("http://{address}")
    }
}

/// `None` for the empty string the wire uses for "absent".
pub(crate) fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// A goal from the wire.
pub(crate) fn goal_from_wire(g: pb::GoalInfo) -> Goal {
    Goal {
        domain: g.domain,
        goal: g.goal,
        priority: g.priority,
        status: g.status,
        code: non_empty(g.code),
        evidence: non_empty(g.evidence),
        since_index: g.since_index,
        cycles: g.cycles,
    }
}

/// Which goals [`Client::goals_page`] lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoalFilter {
    /// A singleton, an instance (`Pool[web]`) or a kind (every instance).
    pub domain: Option<String>,
    /// One status (`TRAPPED`, ...).
    pub status: Option<String>,
    /// At most this many (0: all).
    pub limit: u32,
    /// Matches skipped first.
    pub offset: u64,
}

/// One page of goals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoalPage {
    /// The goals, in program order.
    pub goals: Vec<Goal>,
    /// How many goals match the filter in all.
    pub total: u64,
}

/// How a mutation names its causes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// A name added to this client's identity (`hpa-bridge`), overriding
    /// [`ClientConfig::with_as_name`].
    pub as_name: Option<String>,
    /// Idempotency keys of the effects whose outcome the writes observe.
    pub caused_by: Vec<String>,
}

impl Client {
    /// Connects to a cluster: validates the endpoints, then discovers the
    /// leader (asking each node in turn, within the default deadline).
    ///
    /// Fails with [`ClientError::Unavailable`] when no node answers.
    pub async fn connect<I, S>(endpoints: I) -> Result<Client, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Client::connect_with(ClientConfig::new(endpoints)).await
    }

    /// Like [`Client::connect`] with full configuration.
    pub async fn connect_with(config: ClientConfig) -> Result<Client, ClientError> {
        let client = Client::new_lazy(config)?;
        client.discover_leader().await?;
        Ok(client)
    }

    /// A client that connects on first use (no call is made here).
    pub fn new_lazy(config: ClientConfig) -> Result<Client, ClientError> {
        if config.endpoints.is_empty() {
            return Err(ClientError::Config("no endpoints given".into()));
        }
        for address in &config.endpoints {
            Endpoint::from_shared(endpoint_uri(address, config.tls.is_some()))
                .map_err(|e| ClientError::Config(format!("bad endpoint `{address}`: {e}")))?;
        }
        let auth = match &config.token {
            Some(token) => Some(
                format!("Bearer {token}")
                    .parse()
                    .map_err(|_| ClientError::Config("the token has characters not allowed in a header".into()))?,
            ),
            None => None,
        };
        let tls = config.tls.as_ref().map(|t| {
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&t.ca_pem));
            if let Some(domain) = &t.domain {
                tls = tls.domain_name(domain.clone());
            }
            if let Some((cert, key)) = &t.identity {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            tls
        });
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                auth,
                tls,
                channels: Mutex::new(HashMap::new()),
                leader: Mutex::new(None),
            }),
        })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The address currently believed to be the leader's.
    pub fn leader_hint(&self) -> Option<String> {
        self.inner.leader.lock().ok().and_then(|l| l.clone())
    }

    fn set_leader_hint(&self, leader: Option<String>) {
        if let Ok(mut hint) = self.inner.leader.lock() {
            *hint = leader;
        }
    }

    fn forget_leader(&self, address: &str) {
        if let Ok(mut hint) = self.inner.leader.lock() {
            if hint.as_deref() == Some(address) {
                *hint = None;
            }
        }
    }

    /// A (lazily connecting) channel to one node.
    pub(crate) fn channel(&self, address: &str) -> Result<Channel, ClientError> {
        let mut channels = self.inner.channels.lock().map_err(|_| ClientError::Rpc("channel pool poisoned".into()))?;
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let config = &self.inner.config;
        let mut endpoint = Endpoint::from_shared(endpoint_uri(address, self.inner.tls.is_some()))
            .map_err(|e| ClientError::Config(format!("bad endpoint `{address}`: {e}")))?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true);
        if let Some(tls) = &self.inner.tls {
            endpoint = endpoint.tls_config(tls.clone()).map_err(|e| ClientError::Config(format!("TLS: {e}")))?;
        }
        let channel = endpoint.connect_lazy();
        channels.insert(address.to_string(), channel.clone());
        Ok(channel)
    }

    /// Adds the token to a request.
    pub(crate) fn authorize<T>(&self, request: &mut Request<T>) {
        if let Some(auth) = &self.inner.auth {
            request.metadata_mut().insert(lexum_proto::AUTH_METADATA_KEY, auth.clone());
        }
    }

    fn lexum(&self, channel: Channel) -> LexumClient<Channel> {
        LexumClient::new(channel)
            .max_decoding_message_size(lexum_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(lexum_proto::MAX_MESSAGE_BYTES)
    }

    /// The address to try at attempt `cursor`.
    pub(crate) fn pick(&self, leader_first: bool, cursor: usize) -> String {
        if leader_first {
            if let Some(leader) = self.leader_hint() {
                return leader;
            }
        }
        let endpoints = &self.inner.config.endpoints;
        endpoints[cursor % endpoints.len()].clone()
    }

    /// Notes a leader redirect; returns whether there is somewhere new to go.
    pub(crate) fn follow_redirect(&self, from: &str, leader: &str) -> bool {
        if leader.is_empty() || leader == from {
            self.forget_leader(from);
            return false;
        }
        self.set_leader_hint(Some(leader.to_string()));
        true
    }

    /// Runs one RPC with redirects, retries and the deadline.
    async fn call<Req, Resp, F, Fut>(&self, target: Target, message: Req, rpc: F) -> Result<Resp, ClientError>
    where
        Req: Clone,
        F: Fn(LexumClient<Channel>, Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let config = &self.inner.config;
        let started = Instant::now();
        let mut backoff = config.retry.initial_backoff;
        let mut cursor = 0usize;
        let mut last_error = String::from("no attempt made");
        for _ in 0..config.retry.max_attempts.max(1) {
            let remaining = config.deadline.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                break;
            }
            let address = self.pick(target == Target::Leader, cursor);
            let attempt_timeout = config.request_timeout.min(remaining);
            let mut request = Request::new(message.clone());
            self.authorize(&mut request);
            request.set_timeout(attempt_timeout);
            let client = self.lexum(self.channel(&address)?);
            let status = match tokio::time::timeout(attempt_timeout, rpc(client, request)).await {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) => status,
                Err(_) => Status::deadline_exceeded(format!("no answer within {attempt_timeout:?}")),
            };
            last_error = format!("{address}: {}", describe(&status));
            if status.code() == Code::FailedPrecondition {
                let leader = status
                    .metadata()
                    .get(lexum_proto::LEADER_METADATA_KEY)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                if self.follow_redirect(&address, &leader) {
                    continue;
                }
            }
            if !is_transient(&status) {
                return Err(ClientError::from_status(&status));
            }
            let remaining = config.deadline.saturating_sub(started.elapsed());
            if let Some(wait) = retry_after(&status) {
                // The node is up but over a limit: wait as it asks, then
                // try it again (it refused the call before running it).
                if wait > remaining {
                    return Err(ClientError::from_status(&status));
                }
                tokio::time::sleep(wait).await;
                continue;
            }
            self.forget_leader(&address);
            cursor += 1;
            tokio::time::sleep(backoff.min(remaining)).await;
            backoff = (backoff * 2).min(config.retry.max_backoff);
        }
        Err(ClientError::Unavailable(format!(
            "no node of {} answered within {:?}; last error: {last_error}",
            config.endpoints.join(","),
            config.deadline.min(started.elapsed().max(Duration::from_millis(1)))
        )))
    }

    /// Finds the leader by asking the nodes for the membership.
    pub async fn discover_leader(&self) -> Result<Option<String>, ClientError> {
        let membership = self.members_from(Target::Any).await?;
        let leader = membership.members.iter().find(|m| m.id == membership.leader).map(|m| m.address.clone());
        if leader.is_some() {
            self.set_leader_hint(leader.clone());
        }
        Ok(leader)
    }

    /// Compiles (on the node) and installs a program from source.
    pub async fn submit_source(&self, file_name: &str, source: &str) -> Result<Submitted, ClientError> {
        let request = pb::SubmitProgramRequest {
            program: Some(pb::submit_program_request::Program::Source(source.to_string())),
            file_name: file_name.to_string(),
        };
        self.submit(request).await
    }

    /// Installs an already compiled program (`Program::encode` bytes).
    pub async fn submit_compiled(&self, bytes: Vec<u8>) -> Result<Submitted, ClientError> {
        let request = pb::SubmitProgramRequest {
            program: Some(pb::submit_program_request::Program::Compiled(bytes)),
            file_name: String::new(),
        };
        self.submit(request).await
    }

    async fn submit(&self, request: pb::SubmitProgramRequest) -> Result<Submitted, ClientError> {
        let r = self.call(Target::Leader, request, |mut c, r| async move { c.submit_program(r).await }).await?;
        Ok(Submitted { index: r.index, version: r.version, program_hash: r.program_hash, warnings: r.warnings })
    }

    /// Writes observations atomically; returns the log index of the entry
    /// that carried them (mutations committed together share one).
    pub async fn mutate(&self, writes: &[FieldWrite]) -> Result<u64, ClientError> {
        self.mutate_with(writes, &WriteOptions::default()).await
    }

    /// Like [`Client::mutate`], with the name added to this client's
    /// identity and the effects the writes observe (their causes).
    pub async fn mutate_with(&self, writes: &[FieldWrite], options: &WriteOptions) -> Result<u64, ClientError> {
        let writes = writes
            .iter()
            .map(|w| pb::FieldWrite {
                domain: w.domain.clone(),
                field: w.field.clone(),
                value: Some(value::to_wire(&w.value)),
            })
            .collect();
        let as_name = options.as_name.clone().or_else(|| self.config().as_name.clone()).unwrap_or_default();
        let request = pb::MutateRequest { writes, as_name, caused_by: options.caused_by.clone() };
        let r = self.call(Target::Leader, request, |mut c, r| async move { c.mutate(r).await }).await?;
        Ok(r.index)
    }

    /// The latest `last` writes of `Domain.field` with their causes, oldest
    /// first (0: every write the cluster keeps).
    pub async fn why(&self, domain: &str, field: &str, last: u32) -> Result<Vec<WriteRecord>, ClientError> {
        let request = pb::WhyRequest { domain: domain.to_string(), field: field.to_string(), last };
        let r = self.call(Target::Leader, request, |mut c, r| async move { c.why(r).await }).await?;
        Ok(r.writes.into_iter().map(crate::provenance::write_from_wire).collect())
    }

    /// Why `Domain.Goal` is in its status and what its repair waits for.
    pub async fn explain(&self, domain: &str, goal: &str) -> Result<Explanation, ClientError> {
        let request = pb::ExplainRequest { domain: domain.to_string(), goal: goal.to_string() };
        let r = self.call(Target::Leader, request, |mut c, r| async move { c.explain(r).await }).await?;
        Ok(crate::provenance::explanation_from_wire(r))
    }

    /// The whole engine state at one linearizable read index, as
    /// `Engine::snapshot` bytes (what `lexumctl plan` simulates on).
    pub async fn engine_snapshot(&self) -> Result<EngineSnapshot, ClientError> {
        let request = pb::EngineSnapshotRequest {};
        let mut stream =
            self.call(Target::Leader, request, |mut c, r| async move { c.engine_snapshot(r).await }).await?;
        let mut snapshot: Option<(u64, u64)> = None;
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(|s| ClientError::from_status(&s))? {
            let (index, total) = *snapshot.get_or_insert((chunk.index, chunk.total_bytes));
            let fits = bytes.len() as u64 + chunk.data.len() as u64 <= total;
            if chunk.index != index || chunk.total_bytes != total || !fits {
                return Err(ClientError::Rpc("engine snapshot chunks do not agree".into()));
            }
            bytes.extend_from_slice(&chunk.data);
        }
        match snapshot {
            Some((index, total)) if bytes.len() as u64 == total => Ok(EngineSnapshot { index, bytes }),
            _ => Err(ClientError::Rpc("engine snapshot cut short".into())),
        }
    }

    /// Writes one observation; returns the log index.
    pub async fn set(&self, domain: &str, field: &str, value: Value) -> Result<u64, ClientError> {
        self.mutate(&[FieldWrite::new(domain, field, value)]).await
    }

    /// Linearizable read of a domain's state.
    pub async fn read(&self, domain: &str) -> Result<DomainState, ClientError> {
        let request = pb::ReadRequest { domain: domain.to_string(), ..Default::default() };
        let r = self.call(Target::Leader, request, |mut c, r| async move { c.read(r).await }).await?;
        Ok(DomainState { index: r.index, fields: value::named_from_wire(&r.fields) })
    }

    /// A page of a kind's live instances with their fields (linearizable);
    /// `limit` 0 reads them all. Empty for a domain that is not a kind.
    pub async fn instances(&self, kind: &str, offset: u64, limit: u32) -> Result<InstancePage, ClientError> {
        let request = pb::ReadRequest { domain: kind.to_string(), limit, offset };
        let r = self.call(Target::Leader, request, |mut c, r| async move { c.read(r).await }).await?;
        let instances = r.instances.iter().map(|i| (i.domain.clone(), value::named_from_wire(&i.fields))).collect();
        Ok(InstancePage { index: r.index, instances, total: r.total })
    }

    /// Every goal with its status (linearizable).
    pub async fn goals(&self) -> Result<Vec<Goal>, ClientError> {
        Ok(self.goals_page(&GoalFilter::default()).await?.goals)
    }

    /// The goals a filter selects, one page (linearizable).
    pub async fn goals_page(&self, filter: &GoalFilter) -> Result<GoalPage, ClientError> {
        let request = pb::ListGoalsRequest {
            domain: filter.domain.clone().unwrap_or_default(),
            status: filter.status.clone().unwrap_or_default(),
            limit: filter.limit,
            offset: filter.offset,
        };
        let r = self.call(Target::Leader, request, |mut c, r| async move { c.list_goals(r).await }).await?;
        Ok(GoalPage { goals: r.goals.into_iter().map(goal_from_wire).collect(), total: r.total })
    }

    /// Creates instances of a kind, each with initial values (all or none);
    /// with `upsert`, writes the values of those that exist instead.
    pub async fn create_instances(
        &self,
        kind: &str,
        instances: &[(String, Vec<(String, Value)>)],
        upsert: bool,
    ) -> Result<u64, ClientError> {
        let instances = instances
            .iter()
            .map(|(key, values)| pb::InstanceSpec {
                key: key.clone(),
                values: values
                    .iter()
                    .map(|(name, v)| pb::NamedValue { name: name.clone(), value: Some(value::to_wire(v)) })
                    .collect(),
            })
            .collect();
        let as_name = self.config().as_name.clone().unwrap_or_default();
        let request = pb::CreateInstancesRequest { kind: kind.to_string(), instances, upsert, as_name };
        let r = self.call(Target::Leader, request, |mut c, r| async move { c.create_instances(r).await }).await?;
        Ok(r.index)
    }

    /// Deletes instances of a kind: their work is cancelled, their history kept.
    pub async fn delete_instances(&self, kind: &str, keys: &[String]) -> Result<u64, ClientError> {
        let request = pb::DeleteInstancesRequest { kind: kind.to_string(), keys: keys.to_vec() };
        let r = self.call(Target::Leader, request, |mut c, r| async move { c.delete_instances(r).await }).await?;
        Ok(r.index)
    }

    /// The last `limit` judged cycles (0: the node's default), oldest first.
    pub async fn history(&self, limit: u32) -> Result<Vec<Cycle>, ClientError> {
        let r = self
            .call(Target::Leader, pb::HistoryRequest { limit }, |mut c, r| async move { c.history(r).await })
            .await?;
        Ok(r.cycles.into_iter().map(cycle_from_wire).collect())
    }

    /// Cluster status as seen by the first node that answers.
    pub async fn status(&self) -> Result<ClusterStatus, ClientError> {
        let r = self.call(Target::Any, pb::StatusRequest {}, |mut c, r| async move { c.status(r).await }).await?;
        Ok(ClusterStatus {
            leader: r.leader,
            term: r.term,
            commit_index: r.commit_index,
            members: r
                .members
                .into_iter()
                .map(|m| MemberStatus {
                    id: m.id,
                    address: m.address,
                    role: m.role,
                    applied_index: m.applied_index,
                    state_hash: m.state_hash,
                })
                .collect(),
            program_hash: r.program_hash,
            program_version: r.program_version,
        })
    }

    /// Clears a TRAPPED goal, or every trapped goal of `domain` when `goal`
    /// is `None`; returns the log index.
    pub async fn release(&self, domain: &str, goal: Option<&str>) -> Result<u64, ClientError> {
        let request = pb::ReleaseRequest { domain: domain.to_string(), goal: goal.unwrap_or_default().to_string() };
        let r = self.call(Target::Leader, request, |mut c, r| async move { c.release(r).await }).await?;
        Ok(r.index)
    }

    /// Re-arms a FAILED goal; returns the log index.
    pub async fn retry(&self, domain: &str, goal: &str) -> Result<u64, ClientError> {
        let request = pb::RetryRequest { domain: domain.to_string(), goal: goal.to_string() };
        let r = self.call(Target::Leader, request, |mut c, r| async move { c.retry(r).await }).await?;
        Ok(r.index)
    }

    /// Current membership.
    pub async fn members(&self) -> Result<Membership, ClientError> {
        self.members_from(Target::Any).await
    }

    async fn members_from(&self, target: Target) -> Result<Membership, ClientError> {
        let r = self.call(target, pb::MembersRequest {}, |mut c, r| async move { c.members(r).await }).await?;
        Ok(membership(r))
    }

    /// Adds a node (as learner, then voter).
    pub async fn add_member(&self, id: u64, address: &str) -> Result<Membership, ClientError> {
        let request = pb::AddMemberRequest { id, address: address.to_string() };
        let r = self.call(Target::Leader, request, |mut c, r| async move { c.add_member(r).await }).await?;
        Ok(membership(r))
    }

    /// Removes a voter.
    pub async fn remove_member(&self, id: u64) -> Result<Membership, ClientError> {
        let r = self
            .call(Target::Leader, pb::RemoveMemberRequest { id }, |mut c, r| async move { c.remove_member(r).await })
            .await?;
        Ok(membership(r))
    }

    /// Replays the log of the first node that answers and compares hashes.
    pub async fn replay(&self) -> Result<ReplayReport, ClientError> {
        let r = self.call(Target::Any, pb::ReplayRequest {}, |mut c, r| async move { c.replay(r).await }).await?;
        Ok(ReplayReport {
            applied_index: r.applied_index,
            live_state_hash: r.live_state_hash,
            replayed_state_hash: r.replayed_state_hash,
            matches: r.matches,
        })
    }

    /// A client bound to one node only (for per-node calls such as replay).
    pub fn only(&self, address: &str) -> Result<Client, ClientError> {
        let mut config = self.inner.config.clone();
        config.endpoints = vec![address.to_string()];
        Client::new_lazy(config)
    }

    /// The node's own view (any node).
    pub async fn node_info(&self) -> Result<NodeInfo, ClientError> {
        let r = self.call(Target::Any, pb::NodeInfoRequest {}, |mut c, r| async move { c.node_info(r).await }).await?;
        Ok(NodeInfo { id: r.id, role: r.role, term: r.term, leader: r.leader, applied_index: r.applied_index })
    }

    /// Engine events from log index `from_index` on (0: only new ones), as
    /// a stream that reconnects (to any node) when its node goes away and
    /// resumes after the last event it delivered, without duplicates.
    ///
    /// The stream ends with an error after [`ClientConfig::deadline`] of
    /// failed reconnects, or on a non-transient error (bad token).
    /// Dropping it stops the background task.
    pub fn watch(&self, from_index: u64) -> EventStream {
        let (tx, rx) = mpsc::channel(256);
        let client = self.clone();
        tokio::spawn(async move { client.watch_loop(from_index, tx).await });
        ReceiverStream::new(rx)
    }

    async fn watch_loop(&self, from_index: u64, tx: mpsc::Sender<Result<Event, ClientError>>) {
        let config = &self.inner.config;
        let mut resume = from_index;
        let mut skip_at_resume = 0usize;
        let mut last_delivered: Option<(u64, usize)> = None;
        let mut failing_since: Option<Instant> = None;
        let mut backoff = config.retry.initial_backoff;
        let mut cursor = 0usize;
        let mut last_error = String::new();
        loop {
            if tx.is_closed() {
                return;
            }
            if let Some(since) = failing_since {
                if since.elapsed() > config.deadline {
                    let message =
                        format!("watch could not reconnect within {:?}; last error: {last_error}", config.deadline);
                    let _ = tx.send(Err(ClientError::Unavailable(message))).await;
                    return;
                }
            }
            let address = self.pick(false, cursor);
            cursor += 1;
            match self.watch_once(&address, &mut resume, &mut skip_at_resume, &mut last_delivered, &tx).await {
                Ok(delivered) => {
                    if delivered {
                        failing_since = None;
                        backoff = config.retry.initial_backoff;
                    }
                    last_error = format!("{address}: stream ended");
                }
                Err(status) => {
                    if !is_transient(&status) {
                        let _ = tx.send(Err(ClientError::from_status(&status))).await;
                        return;
                    }
                    last_error = format!("{address}: {}", describe(&status));
                    if let Some(wait) = retry_after(&status) {
                        failing_since.get_or_insert_with(Instant::now);
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                }
            }
            failing_since.get_or_insert_with(Instant::now);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(config.retry.max_backoff);
        }
    }

    /// One watch stream on one node; returns whether it delivered anything.
    async fn watch_once(
        &self,
        address: &str,
        resume: &mut u64,
        skip_at_resume: &mut usize,
        last_delivered: &mut Option<(u64, usize)>,
        tx: &mpsc::Sender<Result<Event, ClientError>>,
    ) -> Result<bool, Status> {
        let config = &self.inner.config;
        let mut client = self.lexum(self.channel(address).map_err(|e| Status::invalid_argument(e.to_string()))?);
        if *resume == 0 {
            let mut request = Request::new(pb::NodeInfoRequest {});
            self.authorize(&mut request);
            request.set_timeout(config.request_timeout);
            let info = tokio::time::timeout(config.request_timeout, client.node_info(request))
                .await
                .map_err(|_| Status::deadline_exceeded("node info timed out"))??;
            *resume = info.into_inner().applied_index + 1;
            *skip_at_resume = 0;
        }
        let mut request = Request::new(pb::WatchRequest { from_index: *resume });
        self.authorize(&mut request);
        let mut stream = tokio::time::timeout(config.request_timeout, client.watch(request))
            .await
            .map_err(|_| Status::deadline_exceeded("watch did not start"))??
            .into_inner();
        let mut skip = *skip_at_resume;
        let mut delivered = false;
        loop {
            let event = match stream.next().await {
                Some(Ok(event)) => event,
                Some(Err(status)) => {
                    return if delivered && is_transient(&status) { Ok(true) } else { Err(status) };
                }
                None => return Ok(delivered),
            };
            if event.index < *resume {
                continue;
            }
            if event.index == *resume && skip > 0 {
                skip -= 1;
                continue;
            }
            let count = match *last_delivered {
                Some((index, n)) if index == event.index => n + 1,
                _ => 1,
            };
            *last_delivered = Some((event.index, count));
            *resume = event.index;
            *skip_at_resume = count;
            skip = 0;
            delivered = true;
            let event = Event {
                index: event.index,
                kind: event.kind,
                domain: non_empty(event.domain),
                goal: non_empty(event.goal),
                code: non_empty(event.code),
                status: non_empty(event.status),
                verdict: non_empty(event.verdict),
                effect: non_empty(event.effect),
                idempotency_key: non_empty(event.idempotency_key),
                attempt: event.attempt,
                principal: non_empty(event.principal),
                fields: event.fields,
                message: event.message,
            };
            if tx.send(Ok(event)).await.is_err() {
                return Ok(true);
            }
        }
    }
}

fn membership(r: pb::MembersResponse) -> Membership {
    Membership {
        members: r.members.into_iter().map(|m| Member { id: m.id, address: m.address, voter: m.voter }).collect(),
        leader: r.leader,
    }
}

/// A short description of a status for error messages.
pub(crate) fn describe(status: &Status) -> String {
    let message = status.message().lines().next().unwrap_or_default();
    if message.is_empty() {
        format!("{:?}", status.code())
    } else {
        message.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_a_scheme() {
        assert_eq!(endpoint_uri("127.0.0.1:7101", false), "http://127.0.0.1:7101");
        assert_eq!(endpoint_uri("127.0.0.1:7101", true), "https://127.0.0.1:7101");
        assert_eq!(endpoint_uri("http://a:1", true), "http://a:1");
    }

    #[test]
    fn config_is_validated() {
        assert!(Client::new_lazy(ClientConfig::new(Vec::<String>::new())).is_err());
        assert!(Client::new_lazy(ClientConfig::new(["bad host:1"])).is_err());
        assert!(Client::new_lazy(ClientConfig::new(["127.0.0.1:1"]).with_token("a\nb")).is_err());
        assert!(Client::new_lazy(ClientConfig::new(DEFAULT_ENDPOINTS)).is_ok());
    }

    #[tokio::test]
    async fn unreachable_cluster_is_unavailable_within_the_deadline() {
        let config = ClientConfig::new(["127.0.0.1:1"]).with_deadline(Duration::from_millis(500));
        let client = Client::new_lazy(config).unwrap();
        let started = Instant::now();
        let err = client.goals().await.unwrap_err();
        assert!(err.is_unavailable(), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn redirects_move_the_hint() {
        let client = Client::new_lazy(ClientConfig::new(DEFAULT_ENDPOINTS)).unwrap();
        assert!(client.follow_redirect("127.0.0.1:7101", "127.0.0.1:7102"));
        assert_eq!(client.pick(true, 0), "127.0.0.1:7102");
        assert!(!client.follow_redirect("127.0.0.1:7102", ""));
        assert_eq!(client.pick(true, 2), "127.0.0.1:7103");
    }
}
