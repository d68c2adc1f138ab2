//! The client API (`lexum.v1.Lexum`): programs, mutations, reads, goals,
//! events, status, membership and replay.

use crate::cluster::{Cluster, ProposeError};
use crate::convert::{cycle_to_wire, explanation_to_wire, goal_to_wire, write_record_to_wire};
use crate::convert::{named_to_wire, propose_error_to_status, value_from_wire};
use crate::group_commit::GroupCommit;
use crate::replay;
use crate::test_faults::{TestFault, TestFaults};
use lexum_compiler::program::Program;
use lexum_compiler::{compile, render, CompileOptions, Severity};
use lexum_engine::entry::{Entry, FieldWrite};
use lexum_engine::{GoalStatus, NewInstance};
use lexum_proto::v1 as pb;
use lexum_proto::v1::lexum_server::Lexum;
use openraft::BasicNode;
use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::time::Duration;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

/// Most field writes accepted in one `Mutate`.
pub const MAX_WRITES_PER_MUTATION: usize = 1024;
/// Largest program source accepted, in bytes.
pub const MAX_PROGRAM_BYTES: usize = 1024 * 1024;

/// The client API of one node.
pub struct ClientApi {
    cluster: Cluster,
    commits: GroupCommit,
    store: crate::store::log_store::LogStore,
    sm: crate::store::state_machine::StateMachine,
    compile_options: CompileOptions,
    faults: TestFaults,
}

impl ClientApi {
    /// Serves `cluster`, committing mutations through `commits`; `store`
    /// and `sm` are read by `Replay`. `faults` is empty except in fault
    /// tests (`ack-before-commit`, `read-without-read-index` act here).
    pub fn new(
        cluster: Cluster,
        commits: GroupCommit,
        store: crate::store::log_store::LogStore,
        sm: crate::store::state_machine::StateMachine,
        faults: TestFaults,
    ) -> ClientApi {
        ClientApi { cluster, commits, store, sm, compile_options: CompileOptions::default(), faults }
    }

    /// Commits a client's entry through group commit and returns its
    /// index. Under the test fault `ack-before-commit` the entry is handed
    /// to group commit and the answer comes at once (with the index
    /// applied so far), whether or not the entry ever commits.
    async fn commit_client_entry(&self, entry: Entry, bytes: usize) -> Result<u64, Status> {
        if self.faults.contains(TestFault::AckBeforeCommit) {
            let commits = self.commits.clone();
            tokio::spawn(async move { commits.commit(entry, bytes).await });
            return Ok(self.cluster.replica.applied_index());
        }
        self.commits.commit(entry, bytes).await.map_err(propose_error_to_status)
    }

    /// Makes a read linearizable: this node must lead and have applied
    /// everything committed before the call (openraft's read index). Under
    /// the test fault `read-without-read-index` it returns at once, so any
    /// node answers from its replica as it is.
    async fn read_index(&self) -> Result<(), Status> {
        if self.faults.contains(TestFault::ReadWithoutReadIndex) {
            return Ok(());
        }
        self.cluster.linearize().await.map_err(propose_error_to_status)
    }

    fn compile_request(&self, request: pb::SubmitProgramRequest) -> Result<(Vec<u8>, Vec<String>), Status> {
        let file_name = if request.file_name.is_empty() { "program.lxm".to_string() } else { request.file_name };
        match request.program {
            Some(pb::submit_program_request::Program::Source(source)) => {
                if source.len() > MAX_PROGRAM_BYTES {
                    return Err(Status::invalid_argument(format!("program source over {MAX_PROGRAM_BYTES} bytes")));
                }
                let compilation = compile(&file_name, &source, &self.compile_options);
                let warnings = compilation
                    .diagnostics
                    .iter()
                    .filter(|d| d.severity == Severity::Warning)
                    .map(|d| render(std::slice::from_ref(d), &file_name, &source, false))
                    .collect();
                match compilation.program {
                    Some(program) => Ok((program.encode(), warnings)),
                    None => {
                        let mut status =
                            Status::invalid_argument(render(&compilation.diagnostics, &file_name, &source, false));
                        if let Some(code) = compilation.diagnostics.iter().find(|d| d.severity == Severity::Error) {
                            if let Ok(value) = code.code.as_str().parse() {
                                status.metadata_mut().insert(crate::convert::CODE_METADATA_KEY, value);
                            }
                        }
                        Err(status)
                    }
                }
            }
            Some(pb::submit_program_request::Program::Compiled(bytes)) => {
                Program::decode(&bytes).map_err(|e| Status::invalid_argument(e.to_string()))?;
                Ok((bytes, Vec::new()))
            }
            None => Err(Status::invalid_argument("no program given (source or compiled)")),
        }
    }

    async fn command(&self, entry: Entry) -> Result<Response<pb::CommandResponse>, Status> {
        let index = self.cluster.propose_validated(entry).await.map_err(propose_error_to_status)?;
        Ok(Response::new(pb::CommandResponse { index }))
    }

    async fn node_info_of(&self, id: u64, address: &str) -> Option<pb::NodeInfoResponse> {
        if id == self.cluster.id {
            return Some(local_node_info(&self.cluster));
        }
        let scheme = if self.cluster.peer_tls.is_some() { "https" } else { "http" };
        let mut endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{address}")).ok()?;
        if let Some(tls) = &self.cluster.peer_tls {
            endpoint = endpoint.tls_config(tls.clone()).ok()?;
        }
        let call = async {
            let channel = endpoint.connect_timeout(Duration::from_millis(300)).connect().await.ok()?;
            let mut client = pb::lexum_client::LexumClient::new(channel);
            let mut request = tonic::Request::new(pb::NodeInfoRequest {});
            if let Some(value) = self.cluster.peer_token.as_ref().and_then(|t| format!("Bearer {t}").parse().ok()) {
                request.metadata_mut().insert(lexum_proto::AUTH_METADATA_KEY, value);
            }
            client.node_info(request).await.ok().map(|r| r.into_inner())
        };
        tokio::time::timeout(Duration::from_millis(800), call).await.ok().flatten()
    }

    fn members(&self) -> pb::MembersResponse {
        let metrics = self.cluster.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| pb::Member { id: *id, address: node.addr.clone(), voter: voters.contains(id) })
            .collect();
        pb::MembersResponse { members, leader: metrics.current_leader.unwrap_or(0) }
    }
}

/// This node's own view, for `NodeInfo` and `Status`.
pub fn local_node_info(cluster: &Cluster) -> pb::NodeInfoResponse {
    let metrics = cluster.raft.metrics().borrow().clone();
    let (applied_index, state_hash) =
        cluster.replica.with_engine(|engine| (engine.last_applied(), hex(&engine.state_hash())));
    pb::NodeInfoResponse {
        id: cluster.id,
        role: format!("{:?}", metrics.state).to_lowercase(),
        term: metrics.current_term,
        leader: metrics.current_leader.unwrap_or(0),
        commit_index: cluster.commit_index().max(applied_index),
        applied_index,
        state_hash,
    }
}

/// Lowercase hex of a hash.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;
type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::EngineSnapshotChunk, Status>> + Send>>;

/// Bytes per `EngineSnapshot` chunk (well under the message limit).
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

fn event_to_wire(event: &lexum_engine::Event) -> pb::Event {
    pb::Event {
        index: event.index,
        kind: event.kind.name().to_string(),
        domain: event.domain.clone().unwrap_or_default(),
        goal: event.goal.clone().unwrap_or_default(),
        code: event.code.clone().unwrap_or_default(),
        message: event.message.clone(),
        status: event.status.map(|s| s.name().to_string()).unwrap_or_default(),
        verdict: event.verdict.map(|v| v.name().to_string()).unwrap_or_default(),
        effect: event.effect.as_ref().map(|e| e.name.clone()).unwrap_or_default(),
        idempotency_key: event.effect.as_ref().map(|e| e.idempotency_key.clone()).unwrap_or_default(),
        attempt: event.effect.as_ref().map_or(0, |e| e.attempt),
        principal: event.principal.clone().unwrap_or_default(),
        fields: event.fields.clone(),
    }
}

#[tonic::async_trait]
impl Lexum for ClientApi {
    async fn submit_program(
        &self,
        request: Request<pb::SubmitProgramRequest>,
    ) -> Result<Response<pb::SubmitProgramResponse>, Status> {
        self.cluster.ensure_leader().await.map_err(propose_error_to_status)?;
        let (bytes, warnings) = self.compile_request(request.into_inner())?;
        let index =
            self.cluster.propose_validated(Entry::SubmitProgram { bytes }).await.map_err(propose_error_to_status)?;
        let (version, program_hash) =
            self.cluster.replica.with_engine(|e| (e.program_version(), e.program_hash().unwrap_or_default()));
        Ok(Response::new(pb::SubmitProgramResponse { index, version, program_hash, warnings }))
    }

    async fn mutate(&self, request: Request<pb::MutateRequest>) -> Result<Response<pb::MutateResponse>, Status> {
        let identity = super::Identity::of(&request);
        let request = request.into_inner();
        let principal = principal(&identity, &request.as_name)?;
        let caused_by = checked_caused_by(request.caused_by.clone())?;
        let bytes = prost::Message::encoded_len(&request);
        if request.writes.is_empty() {
            return Err(Status::invalid_argument("no writes given"));
        }
        if request.writes.len() > MAX_WRITES_PER_MUTATION {
            return Err(Status::invalid_argument(format!(
                "more than {MAX_WRITES_PER_MUTATION} writes in one mutation"
            )));
        }
        let writes = request
            .writes
            .iter()
            .map(|w| {
                let value = w.value.as_ref().ok_or_else(|| Status::invalid_argument("write without a value"))?;
                Ok(FieldWrite { domain: w.domain.clone(), field: w.field.clone(), value: value_from_wire(value)? })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        self.cluster.admit(|engine| engine.validate_mutation(&writes)).await.map_err(propose_error_to_status)?;
        let entry = Entry::Mutate { writes, principal, caused_by };
        let index = self.commit_client_entry(entry, bytes).await?;
        Ok(Response::new(pb::MutateResponse { index }))
    }

    async fn why(&self, request: Request<pb::WhyRequest>) -> Result<Response<pb::WhyResponse>, Status> {
        let request = request.into_inner();
        let last = match request.last {
            0 => usize::MAX,
            n => n as usize,
        };
        self.read_index().await?;
        let (index, writes) =
            self.cluster.replica.with_engine(|e| (e.last_applied(), e.why(&request.domain, &request.field, last)));
        let writes = writes.ok_or_else(|| unknown(format!("unknown field `{}.{}`", request.domain, request.field)))?;
        Ok(Response::new(pb::WhyResponse { index, writes: writes.iter().map(write_record_to_wire).collect() }))
    }

    async fn explain(&self, request: Request<pb::ExplainRequest>) -> Result<Response<pb::ExplainResponse>, Status> {
        let request = request.into_inner();
        self.read_index().await?;
        let (index, explanation) =
            self.cluster.replica.with_engine(|e| (e.last_applied(), e.explain(&request.domain, &request.goal)));
        let explanation =
            explanation.ok_or_else(|| unknown(format!("unknown goal `{}.{}`", request.domain, request.goal)))?;
        Ok(Response::new(explanation_to_wire(index, explanation)))
    }

    async fn read(&self, request: Request<pb::ReadRequest>) -> Result<Response<pb::ReadResponse>, Status> {
        let r = request.into_inner();
        self.read_index().await?;
        let (index, fields, page) = self.cluster.replica.with_engine(|e| {
            let page = e.instances_page(&r.domain, r.offset, u64::from(r.limit));
            let fields = if page.is_none() { e.domain_state(&r.domain) } else { None };
            (e.last_applied(), fields, page)
        });
        if let Some((instances, total)) = page {
            let instances = instances
                .into_iter()
                .map(|(domain, fields)| pb::InstanceFields { domain, fields: named_to_wire(&fields) })
                .collect();
            return Ok(Response::new(pb::ReadResponse { index, instances, total, ..Default::default() }));
        }
        let fields = fields.ok_or_else(|| unknown(format!("unknown domain `{}`", r.domain)))?;
        Ok(Response::new(pb::ReadResponse { index, fields: named_to_wire(&fields), ..Default::default() }))
    }

    async fn list_goals(
        &self,
        request: Request<pb::ListGoalsRequest>,
    ) -> Result<Response<pb::ListGoalsResponse>, Status> {
        let r = request.into_inner();
        self.read_index().await?;
        let domain = (!r.domain.is_empty()).then_some(r.domain.as_str());
        let status = match r.status.as_str() {
            "" => None,
            name => Some(name.parse::<GoalStatus>().map_err(|e| Status::invalid_argument(e.to_string()))?),
        };
        let (index, (goals, total)) = self
            .cluster
            .replica
            .with_engine(|e| (e.last_applied(), e.goals_page(domain, status, r.offset, u64::from(r.limit))));
        let goals = goals.into_iter().map(goal_to_wire).collect();
        Ok(Response::new(pb::ListGoalsResponse { index, goals, total }))
    }

    async fn create_instances(
        &self,
        request: Request<pb::CreateInstancesRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        let identity = super::Identity::of(&request);
        let request = request.into_inner();
        let bytes = prost::Message::encoded_len(&request);
        let principal = principal(&identity, &request.as_name)?;
        if request.instances.is_empty() || request.instances.len() > MAX_INSTANCES_PER_REQUEST {
            return Err(Status::invalid_argument(format!(
                "give 1 to {MAX_INSTANCES_PER_REQUEST} instances per request"
            )));
        }
        let instances = request
            .instances
            .iter()
            .map(|i| {
                let values = i
                    .values
                    .iter()
                    .map(|v| {
                        let value = v.value.as_ref().ok_or_else(|| Status::invalid_argument("value without a kind"))?;
                        Ok((v.name.clone(), value_from_wire(value)?))
                    })
                    .collect::<Result<Vec<_>, Status>>()?;
                Ok(NewInstance { key: i.key.clone(), values })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let entry = Entry::CreateInstances { kind: request.kind, instances, upsert: request.upsert, principal };
        self.cluster.admit(|engine| engine.validate(&entry)).await.map_err(propose_error_to_status)?;
        let index = self.commit_client_entry(entry, bytes).await?;
        Ok(Response::new(pb::CommandResponse { index }))
    }

    async fn delete_instances(
        &self,
        request: Request<pb::DeleteInstancesRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        let request = request.into_inner();
        if request.keys.is_empty() || request.keys.len() > MAX_INSTANCES_PER_REQUEST {
            return Err(Status::invalid_argument(format!("give 1 to {MAX_INSTANCES_PER_REQUEST} keys per request")));
        }
        self.command(Entry::DeleteInstances { kind: request.kind, keys: request.keys }).await
    }

    type EngineSnapshotStream = SnapshotStream;

    async fn engine_snapshot(&self, _: Request<pb::EngineSnapshotRequest>) -> Result<Response<SnapshotStream>, Status> {
        self.read_index().await?;
        let (index, bytes) = self.cluster.replica.with_engine(|e| (e.last_applied(), e.snapshot()));
        let total_bytes = bytes.len() as u64;
        let chunks: Vec<Result<pb::EngineSnapshotChunk, Status>> = if bytes.is_empty() {
            vec![Ok(pb::EngineSnapshotChunk { index, total_bytes, data: Vec::new() })]
        } else {
            bytes
                .chunks(SNAPSHOT_CHUNK_BYTES)
                .map(|data| Ok(pb::EngineSnapshotChunk { index, total_bytes, data: data.to_vec() }))
                .collect()
        };
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    type WatchStream = EventStream;

    async fn watch(&self, mut request: Request<pb::WatchRequest>) -> Result<Response<EventStream>, Status> {
        // The watcher's place under `[limits]`, held as long as the stream.
        let permit = super::limits::Permit::take(&mut request);
        let from_index = request.into_inner().from_index;
        let (backlog, receiver) = self.cluster.replica.subscribe_events(from_index).map_err(|floor| {
            Status::out_of_range(format!(
                "events before index {floor} are no longer kept here; watch from {floor} or later"
            ))
        })?;
        let backlog = tokio_stream::iter(backlog.into_iter().map(|e| Ok(event_to_wire(&e))));
        let live = BroadcastStream::new(receiver).map(|item| match item {
            Ok(event) => Ok(event_to_wire(&event)),
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                Err(Status::data_loss(format!("watcher fell {n} events behind; resume from a later index")))
            }
        });
        let stream = backlog.chain(live).map(move |item| {
            let _held = &permit;
            item
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn history(&self, request: Request<pb::HistoryRequest>) -> Result<Response<pb::HistoryResponse>, Status> {
        let limit = match request.into_inner().limit {
            0 => 100,
            n => n.min(10_000) as usize,
        };
        self.read_index().await?;
        let cycles = self.cluster.replica.with_engine(|e| e.history(limit));
        Ok(Response::new(pb::HistoryResponse { cycles: cycles.iter().map(cycle_to_wire).collect() }))
    }

    async fn status(&self, _: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let metrics = self.cluster.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        let nodes: BTreeMap<u64, String> = membership.nodes().map(|(id, n)| (*id, n.addr.clone())).collect();
        let infos = futures::future::join_all(nodes.iter().map(|(id, addr)| self.node_info_of(*id, addr))).await;
        let local = local_node_info(&self.cluster);
        let mut members = Vec::new();
        let mut commit_index = local.commit_index;
        let mut term = local.term;
        for ((id, address), info) in nodes.iter().zip(infos) {
            let member = match info {
                Some(info) => {
                    commit_index = commit_index.max(info.commit_index);
                    term = term.max(info.term);
                    pb::MemberStatus {
                        id: *id,
                        address: address.clone(),
                        role: info.role,
                        applied_index: info.applied_index,
                        state_hash: info.state_hash,
                        reachable: true,
                    }
                }
                None => pb::MemberStatus {
                    id: *id,
                    address: address.clone(),
                    role: "unreachable".into(),
                    applied_index: 0,
                    state_hash: String::new(),
                    reachable: false,
                },
            };
            members.push(member);
        }
        let (program_hash, program_version) =
            self.cluster.replica.with_engine(|e| (e.program_hash().unwrap_or_default(), e.program_version()));
        Ok(Response::new(pb::StatusResponse {
            leader: metrics.current_leader.unwrap_or(0),
            term,
            commit_index,
            members,
            program_hash,
            program_version,
        }))
    }

    async fn node_info(&self, _: Request<pb::NodeInfoRequest>) -> Result<Response<pb::NodeInfoResponse>, Status> {
        Ok(Response::new(local_node_info(&self.cluster)))
    }

    async fn release(&self, request: Request<pb::ReleaseRequest>) -> Result<Response<pb::CommandResponse>, Status> {
        let request = request.into_inner();
        let goal = (!request.goal.is_empty()).then_some(request.goal);
        self.command(Entry::Release { domain: request.domain, goal }).await
    }

    async fn retry(&self, request: Request<pb::RetryRequest>) -> Result<Response<pb::CommandResponse>, Status> {
        let request = request.into_inner();
        self.command(Entry::Retry { domain: request.domain, goal: request.goal }).await
    }

    async fn members(&self, _: Request<pb::MembersRequest>) -> Result<Response<pb::MembersResponse>, Status> {
        Ok(Response::new(self.members()))
    }

    async fn add_member(
        &self,
        request: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::MembersResponse>, Status> {
        let request = request.into_inner();
        if request.id == 0 || request.address.is_empty() {
            return Err(Status::invalid_argument("a member needs a non-zero id and an address"));
        }
        self.cluster.ensure_leader().await.map_err(propose_error_to_status)?;
        let raft = &self.cluster.raft;
        let add = raft.add_learner(request.id, BasicNode { addr: request.address }, true);
        membership_result(tokio::time::timeout(MEMBERSHIP_TIMEOUT, add).await, "adding learner")?;
        let mut voters: BTreeSet<u64> = raft.metrics().borrow().membership_config.membership().voter_ids().collect();
        voters.insert(request.id);
        let change = raft.change_membership(voters, false);
        membership_result(tokio::time::timeout(MEMBERSHIP_TIMEOUT, change).await, "changing membership")?;
        Ok(Response::new(self.members()))
    }

    async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::MembersResponse>, Status> {
        let id = request.into_inner().id;
        self.cluster.ensure_leader().await.map_err(propose_error_to_status)?;
        let raft = &self.cluster.raft;
        let mut voters: BTreeSet<u64> = raft.metrics().borrow().membership_config.membership().voter_ids().collect();
        if !voters.remove(&id) {
            return Err(Status::not_found(format!("node {id} is not a voter")));
        }
        if voters.is_empty() {
            return Err(Status::invalid_argument("cannot remove the last voter"));
        }
        let change = raft.change_membership(voters, false);
        membership_result(tokio::time::timeout(MEMBERSHIP_TIMEOUT, change).await, "changing membership")?;
        Ok(Response::new(self.members()))
    }

    async fn replay(&self, _: Request<pb::ReplayRequest>) -> Result<Response<pb::ReplayResponse>, Status> {
        let _running = replay::RUNNING.try_acquire().map_err(|_| {
            let reason = "a replay is already running on this node".to_string();
            super::limits::Refusal { reason, retry_after: Duration::from_secs(1) }.into_status()
        })?;
        let outcome = replay::replay(&self.cluster, self.store.clone(), self.sm.clone())
            .await
            .map_err(|e| Status::internal(format!("replay failed: {e:#}")))?;
        Ok(Response::new(pb::ReplayResponse {
            applied_index: outcome.applied_index,
            live_state_hash: hex(&outcome.live),
            replayed_state_hash: hex(&outcome.replayed),
            matches: outcome.live == outcome.replayed,
        }))
    }
}

/// How long adding a learner (including its catch-up) or changing
/// membership may take.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(60);

type MembershipOutcome<T> = Result<
    Result<T, openraft::error::RaftError<u64, openraft::error::ClientWriteError<u64, BasicNode>>>,
    tokio::time::error::Elapsed,
>;

/// Maps a membership call's outcome: redirects on a leader change, a clear
/// message otherwise.
fn membership_result<T>(outcome: MembershipOutcome<T>, what: &str) -> Result<T, Status> {
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => match err.forward_to_leader() {
            Some(forward) => Err(propose_error_to_status(ProposeError::NotLeader {
                leader: forward.leader_node.as_ref().map(|n| n.addr.clone()),
            })),
            None => Err(Status::failed_precondition(format!("{what}: {err}"))),
        },
        Err(_) => Err(Status::deadline_exceeded(format!("{what}: timed out; the change may still complete"))),
    }
}

impl From<ProposeError> for Status {
    fn from(err: ProposeError) -> Status {
        propose_error_to_status(err)
    }
}

/// Most instances one create or delete request may name.
const MAX_INSTANCES_PER_REQUEST: usize = 10_000;

/// Longest name a client may add to its identity (`--as`).
const MAX_AS_NAME: usize = 128;
/// Most effect keys one mutation may name in `caused_by`.
const MAX_CAUSED_BY: usize = 16;
/// Longest effect key accepted in `caused_by`.
const MAX_CAUSED_BY_KEY: usize = 512;

/// The principal of a client's writes: its token's name, and the name it
/// added (`ops/hpa-bridge`).
fn principal(identity: &str, as_name: &str) -> Result<String, Status> {
    if as_name.is_empty() {
        return Ok(identity.to_string());
    }
    if as_name.len() > MAX_AS_NAME || as_name.chars().any(|c| c.is_control() || c == '/') {
        return Err(Status::invalid_argument(format!(
            "`as` name must be at most {MAX_AS_NAME} bytes without `/` or control characters"
        )));
    }
    Ok(format!("{identity}/{as_name}"))
}

fn checked_caused_by(keys: Vec<String>) -> Result<Vec<String>, Status> {
    if keys.len() > MAX_CAUSED_BY {
        return Err(Status::invalid_argument(format!("more than {MAX_CAUSED_BY} keys in caused_by")));
    }
    if keys.iter().any(|k| k.is_empty() || k.len() > MAX_CAUSED_BY_KEY) {
        return Err(Status::invalid_argument(format!("caused_by keys must be 1 to {MAX_CAUSED_BY_KEY} bytes")));
    }
    Ok(keys)
}

/// NOT_FOUND with the E002 code.
fn unknown(message: String) -> Status {
    let mut status = Status::not_found(format!("E002: {message}"));
    status.metadata_mut().insert(crate::convert::CODE_METADATA_KEY, "E002".parse().expect("ascii"));
    status
}
