//! `jepsen/run`: one run of every workload against a three-node cluster in
//! network namespaces while the nemeses of a seeded [`crate::schedule`]
//! act together ([`crate::nemesis`]); then heal, a quiet period, and the
//! final checks. Every op, fault and verdict goes to a store directory
//! with plots ([`crate::store`]); the summary line says it in one line.
//!
//! Workloads (all against the one program of [`crate::program`]):
//! registers (linearizability, [`crate::linearizable`]), set (unique
//! appends: every acknowledged one present, none twice, none invented),
//! effects (worker processes; no key on two workers at once, every final
//! target done, no intent of an always-failing effect tried more often
//! than its retry limit), convergence (every goal of the converging domains
//! SATISFIED within a bound after heal), traps (each tug-of-war armed
//! during the faults is trapped exactly once, with the evidence of a
//! fault-free run), replicas (one state hash at one applied index on every
//! member, and `replay` agrees).

use crate::cluster::{workspace_binary, ClusterOptions, LocalCluster};
use crate::effects;
use crate::exclusive::overlaps;
use crate::linearizable::{check_register, first_unexplained_read, Op, OpKind};
use crate::nemesis::{FaultWindow, Nemesis as Executor, Workers};
use crate::netns::{self, Network};
use crate::program::{self, FIGHTS, JOBS};
use crate::registers::{certainly_not_applied, nanos_since, read_ints, Nodes, XorShift, KEYS};
use crate::schedule::{self, Nemesis, Planned, UnknownName};
use crate::store::{Store, StoreError};
use crate::worker::int_value;
use lexum_proto::v1 as pb;
use lexum_proto::v1::lexum_client::LexumClient;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// A workload (with its checker) `jepsen/run --workload` can enable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Linearizable registers.
    Registers,
    /// Unique appends to a set.
    Set,
    /// Effects run by worker processes.
    Effects,
    /// Goals converge after heal.
    Convergence,
    /// Oscillations trapped exactly once, as without faults.
    Traps,
    /// Replicas agree on the state hash; replay agrees.
    Replicas,
}

impl Workload {
    /// Every workload, in the order `all` lists them.
    pub const ALL: [Workload; 6] = [
        Workload::Registers,
        Workload::Set,
        Workload::Effects,
        Workload::Convergence,
        Workload::Traps,
        Workload::Replicas,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Registers => "registers",
            Workload::Set => "set",
            Workload::Effects => "effects",
            Workload::Convergence => "convergence",
            Workload::Traps => "traps",
            Workload::Replicas => "replicas",
        }
    }
}

impl FromStr for Workload {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Workload, UnknownName> {
        Workload::ALL.into_iter().find(|w| w.name() == s).ok_or_else(|| UnknownName {
            what: "workload",
            name: s.to_string(),
            expected: Workload::ALL.map(Workload::name).join(", "),
        })
    }
}

/// Test-only bugs, one per class of bug a checker claims to catch. Each is
/// real: three are `lexumd --test-fault` switches (see `lexum_node::test_faults`),
/// one is a switch of the worker processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Bug {
    /// The leader acknowledges client writes before they commit, so an
    /// acknowledged append can be lost (the set checker).
    AckBeforeCommit,
    /// Every node answers reads from its own replica without a read index,
    /// so reads can be stale (the registers checker).
    ReadWithoutReadIndex,
    /// Worker processes keep working past a task's deadline, so two work
    /// on one effect at once (the effects checker's overlaps).
    WorkerIgnoresDeadline,
    /// A new leader re-arms goals whose effect ran out of retries, so an
    /// effect is tried more often than its retry limit (the effects
    /// checker's attempts).
    LeaderForgetsRetryCounts,
}

impl Bug {
    /// Every bug.
    pub const ALL: [Bug; 4] =
        [Bug::AckBeforeCommit, Bug::ReadWithoutReadIndex, Bug::WorkerIgnoresDeadline, Bug::LeaderForgetsRetryCounts];

    /// The name after `--bug`.
    pub fn name(self) -> &'static str {
        match self {
            Bug::AckBeforeCommit => "ack-before-commit",
            Bug::ReadWithoutReadIndex => "read-without-read-index",
            Bug::WorkerIgnoresDeadline => "worker-ignores-deadline",
            Bug::LeaderForgetsRetryCounts => "leader-forgets-retry-counts",
        }
    }

    /// The bug called `name`.
    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == name)
    }

    /// The `lexumd --test-fault` that is this bug, when it is the node's.
    pub fn node_fault(self) -> Option<&'static str> {
        match self {
            Bug::WorkerIgnoresDeadline => None,
            node => Some(node.name()),
        }
    }
}

/// A validated run configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// How long the workloads run while the nemeses act.
    pub time_limit: Duration,
    /// Enabled nemeses.
    pub nemeses: Vec<Nemesis>,
    /// Enabled workloads.
    pub workloads: Vec<Workload>,
    /// The schedule's seed.
    pub seed: u64,
    /// Where run directories go.
    pub store: std::path::PathBuf,
    /// Under CI a nemesis that cannot run is a failure, not a skip.
    pub ci: bool,
    /// A test-only bug to switch on.
    pub bug: Option<Bug>,
}

/// Errors that stop a run before it has a verdict.
#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    /// The network could not be set up.
    #[error(transparent)]
    Net(#[from] netns::NetError),
    /// Starting or talking to the cluster failed.
    #[error("cluster: {0}")]
    Cluster(String),
    /// Writing the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Starting the worker processes failed.
    #[error("worker processes: {0}")]
    Workers(std::io::Error),
}

fn cluster_error(error: anyhow::Error) -> SoakError {
    SoakError::Cluster(format!("{error:#}"))
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Acknowledged.
    Ok,
    /// Unknown (timeout, lost connection): it may or may not have happened.
    Info,
    /// Certainly refused.
    Fail,
}

/// One client operation of any workload.
#[derive(Clone, Debug, Serialize)]
pub struct OpRecord {
    /// The workload.
    pub workload: &'static str,
    /// `write`, `read`, `append`, `want`, `arm`.
    pub f: &'static str,
    /// Register, element, domain.
    pub key: String,
    /// The value written or read (0 when none).
    pub value: i64,
    /// Invocation, in nanoseconds from the start of the workload.
    pub invoke: u64,
    /// Completion (when an answer came).
    pub complete: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
    /// The node it was sent to (its id), when the workload records it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<usize>,
    /// What a whole-domain read returned, field by field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<(String, i64)>,
    /// The log index the answer named: a write's entry, the index a read
    /// was served at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
}

impl OpRecord {
    /// A record that names no node, values read or log index.
    pub fn new(
        workload: &'static str,
        f: &'static str,
        key: String,
        value: i64,
        invoke: u64,
        complete: Option<u64>,
        outcome: Outcome,
    ) -> OpRecord {
        OpRecord { workload, f, key, value, invoke, complete, outcome, node: None, read: Vec::new(), index: None }
    }
}

/// One checker's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// The checker (a workload's name, or `nemesis`).
    pub checker: String,
    /// Whether it passed.
    pub valid: bool,
    /// Anomalies found (empty when valid).
    pub anomalies: Vec<String>,
    /// What it counted.
    pub detail: serde_json::Value,
}

/// The numbers of the summary line.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Client operations.
    pub ops: usize,
    /// Acknowledged.
    pub ok: usize,
    /// Unknown outcome.
    pub info: usize,
    /// Refused.
    pub fail: usize,
    /// Anomalies over all checkers.
    pub anomalies: usize,
    /// Acknowledged appends missing after heal.
    pub lost: usize,
    /// Effect executions that overlapped another of the same key.
    pub duplicate_effects: usize,
    /// `armed/trapped-as-reference`, or `-` when the workload was off.
    pub traps_preserved: String,
    /// `true`, `false`, or `-` when the workload was off.
    pub hashes_agree: String,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ops={} ok={} info={} fail={} anomalies={} lost={} duplicate_effects={} traps_preserved={} hashes_agree={}",
            self.ops,
            self.ok,
            self.info,
            self.fail,
            self.anomalies,
            self.lost,
            self.duplicate_effects,
            self.traps_preserved,
            self.hashes_agree
        )
    }
}

/// The result of a run.
#[derive(Debug)]
pub struct Report {
    /// The summary line's numbers.
    pub summary: Summary,
    /// Every checker's verdict.
    pub verdicts: Vec<Verdict>,
    /// The run's store directory.
    pub store: std::path::PathBuf,
}

impl Report {
    /// Whether every checker passed.
    pub fn valid(&self) -> bool {
        self.verdicts.iter().all(|v| v.valid)
    }
}

/// An answer later than this counts as no answer.
const OP_TIMEOUT: Duration = Duration::from_secs(3);
/// Per-attempt effect deadline of the cluster.
const EFFECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Quiet period after the heal, before the final checks.
const QUIET: Duration = Duration::from_secs(5);
/// How long goals may take to converge after the heal.
const CONVERGENCE_BOUND: Duration = Duration::from_secs(120);
/// Worker processes.
const WORKERS: usize = 3;
/// Register clients.
const REGISTER_CLIENTS: usize = 3;
/// Set clients.
const SET_CLIENTS: usize = 2;
/// Most operations one client issues.
const MAX_OPS: usize = 2_000_000;
/// One register client: unique writes to the writer node, whole-domain
/// reads from random nodes.
async fn register_client(
    id: usize,
    addrs: Vec<String>,
    start: Instant,
    stop: Instant,
) -> (Vec<(usize, Op)>, Vec<OpRecord>) {
    let (mut ops, mut records) = (Vec::new(), Vec::new());
    let mut conns = Nodes::new(addrs, id);
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1));
    let mut written = 0i64;
    for _ in 0..MAX_OPS {
        if Instant::now() >= stop {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        let key = (rng.next() % KEYS.len() as u64) as usize;
        if rng.next() % 2 == 0 {
            let Some(mut client) = conns.client(conns.writer).await else {
                conns.next_writer(false);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            written += 1;
            let value = (id as i64 + 1) * 1_000_000_000 + written;
            let write = pb::FieldWrite { domain: "Reg".into(), field: KEYS[key].into(), value: Some(int_value(value)) };
            let writer = conns.writer;
            let invoke = nanos_since(start);
            let request = pb::MutateRequest { writes: vec![write], ..Default::default() };
            let answer = tokio::time::timeout(OP_TIMEOUT, client.mutate(request)).await;
            let complete = nanos_since(start);
            let index = answer.as_ref().ok().and_then(|a| a.as_ref().ok()).map(|r| r.get_ref().index);
            let outcome = match answer {
                Ok(Ok(_)) => Outcome::Ok,
                Ok(Err(status)) if certainly_not_applied(&status) => {
                    conns.next_writer(false);
                    Outcome::Fail
                }
                _ => {
                    conns.next_writer(true);
                    Outcome::Info
                }
            };
            let done = (outcome == Outcome::Ok).then_some(complete);
            if outcome != Outcome::Fail {
                ops.push((key, Op { kind: OpKind::Write(value), invoke, complete: done }));
            }
            records.push(OpRecord {
                node: Some(writer + 1),
                index,
                ..OpRecord::new("registers", "write", KEYS[key].to_string(), value, invoke, done, outcome)
            });
        } else {
            let reader = (rng.next() % conns.addrs.len() as u64) as usize;
            let Some(mut client) = conns.client(reader).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let invoke = nanos_since(start);
            let request = pb::ReadRequest { domain: "Reg".into(), ..Default::default() };
            let answer = tokio::time::timeout(OP_TIMEOUT, client.read(request)).await;
            let complete = nanos_since(start);
            let (mut read, mut index) = (Vec::new(), None);
            let outcome = match answer {
                Ok(Ok(response)) => {
                    index = Some(response.get_ref().index);
                    for (key, value) in read_ints(response.get_ref()) {
                        ops.push((key, Op { kind: OpKind::Read(value), invoke, complete: Some(complete) }));
                        read.push((KEYS[key].to_string(), value));
                    }
                    Outcome::Ok
                }
                Ok(Err(status)) if status.code() == tonic::Code::FailedPrecondition => Outcome::Fail,
                _ => {
                    conns.drop_client(reader);
                    Outcome::Info
                }
            };
            let done = (outcome == Outcome::Ok).then_some(complete);
            records.push(OpRecord {
                node: Some(reader + 1),
                read,
                index,
                ..OpRecord::new("registers", "read", "Reg".into(), 0, invoke, done, outcome)
            });
        }
    }
    (ops, records)
}

/// One set client: appends unique elements (`Item[c<id>-<n>]`).
async fn set_client(id: usize, addrs: Vec<String>, start: Instant, stop: Instant) -> Vec<OpRecord> {
    let mut records = Vec::new();
    let mut conns = Nodes::new(addrs, id);
    for n in 0..MAX_OPS {
        if Instant::now() >= stop {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        let Some(mut client) = conns.client(conns.writer).await else {
            conns.next_writer(false);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let key = format!("c{id}-{n}");
        let request = pb::CreateInstancesRequest {
            kind: "Item".into(),
            instances: vec![pb::InstanceSpec { key: key.clone(), values: Vec::new() }],
            ..Default::default()
        };
        let writer = conns.writer;
        let invoke = nanos_since(start);
        let answer = tokio::time::timeout(OP_TIMEOUT, client.create_instances(request)).await;
        let complete = nanos_since(start);
        let outcome = match answer {
            Ok(Ok(_)) => Outcome::Ok,
            Ok(Err(status)) if certainly_not_applied(&status) => {
                conns.next_writer(false);
                Outcome::Fail
            }
            _ => {
                conns.next_writer(true);
                Outcome::Info
            }
        };
        let done = (outcome == Outcome::Ok).then_some(complete);
        records.push(OpRecord {
            node: Some(writer + 1),
            ..OpRecord::new("set", "append", key, n as i64, invoke, done, outcome)
        });
    }
    records
}

/// Sets `Domain.field = value` through any node that takes it (bounded).
async fn set_field(conns: &mut Nodes, domain: &str, field: &str, value: i64) -> Result<(), Outcome> {
    let Some(mut client) = conns.client(conns.writer).await else {
        conns.next_writer(false);
        return Err(Outcome::Fail);
    };
    let write = pb::FieldWrite { domain: domain.into(), field: field.into(), value: Some(int_value(value)) };
    let request = pb::MutateRequest { writes: vec![write], ..Default::default() };
    match tokio::time::timeout(OP_TIMEOUT, client.mutate(request)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) if certainly_not_applied(&status) => {
            conns.next_writer(false);
            Err(Outcome::Fail)
        }
        _ => {
            conns.next_writer(true);
            Err(Outcome::Info)
        }
    }
}

/// Moves the jobs' targets (`want`) every 250 ms until `stop`.
async fn move_targets(addrs: Vec<String>, start: Instant, stop: Instant) -> Vec<OpRecord> {
    let mut records = Vec::new();
    let mut conns = Nodes::new(addrs, 0);
    for round in 0..MAX_OPS {
        if Instant::now() >= stop {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let domain = format!("Job{}", round % JOBS);
        let value = round as i64 + 2;
        let invoke = nanos_since(start);
        let outcome = match set_field(&mut conns, &domain, "want", value).await {
            Ok(()) => Outcome::Ok,
            Err(outcome) => outcome,
        };
        let complete = (outcome == Outcome::Ok).then(|| nanos_since(start));
        records.push(OpRecord::new("effects", "want", domain, value, invoke, complete, outcome));
    }
    records
}

/// Arms fight `i` (sets `Thermo<i>.armed = 1`), retrying until a write is
/// acknowledged (bounded).
async fn arm(addrs: Vec<String>, i: usize, start: Instant) -> Vec<OpRecord> {
    let mut records = Vec::new();
    let mut conns = Nodes::new(addrs, i);
    let domain = format!("Thermo{i}");
    for _ in 0..200 {
        let invoke = nanos_since(start);
        let result = set_field(&mut conns, &domain, "armed", 1).await;
        let outcome = result.err().unwrap_or(Outcome::Ok);
        let complete = (outcome == Outcome::Ok).then(|| nanos_since(start));
        records.push(OpRecord::new("traps", "arm", domain.clone(), 1, invoke, complete, outcome));
        if outcome == Outcome::Ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    records
}

/// Events seen by a watcher that follows the cluster from `from` across
/// faults (reconnecting to the next node), deduplicated.
async fn watch_events(
    addrs: Vec<String>,
    from: u64,
    stop: Arc<Mutex<bool>>,
) -> BTreeSet<(u64, String, String, String, String)> {
    use tokio_stream::StreamExt;
    let mut seen = BTreeSet::new();
    let mut last = from;
    for attempt in 0..1_000_000usize {
        if *stop.lock().unwrap_or_else(|p| p.into_inner()) {
            break;
        }
        let addr = &addrs[attempt % addrs.len()];
        let stream = async {
            let mut client = crate::cluster::connect(addr).await.ok()?;
            client.watch(pb::WatchRequest { from_index: last.max(1) }).await.ok().map(tonic::Response::into_inner)
        };
        if let Ok(Some(mut stream)) = tokio::time::timeout(OP_TIMEOUT, stream).await {
            loop {
                if *stop.lock().unwrap_or_else(|p| p.into_inner()) {
                    break;
                }
                match tokio::time::timeout(Duration::from_millis(500), stream.next()).await {
                    Ok(Some(Ok(event))) => {
                        last = last.max(event.index);
                        seen.insert((event.index, event.kind, event.domain, event.goal, event.code));
                    }
                    Ok(_) => break,
                    Err(_) => {}
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    seen
}

/// A client of the current leader (bounded).
async fn leader_client(cluster: &LocalCluster) -> Option<LexumClient<Channel>> {
    for _ in 0..30 {
        if let Ok(leader) = cluster.wait_for_leader(Duration::from_secs(5)).await {
            if let Ok(client) = cluster.client(leader).await {
                return Some(client);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    None
}

async fn submit(cluster: &LocalCluster) -> Result<u64, SoakError> {
    let mut last = String::new();
    for _ in 0..20 {
        if let Some(mut client) = leader_client(cluster).await {
            let request = pb::SubmitProgramRequest {
                program: Some(pb::submit_program_request::Program::Source(program::source())),
                file_name: "soak.lxm".into(),
            };
            match client.submit_program(request).await {
                Ok(response) => return Ok(response.into_inner().index),
                Err(status) => last = status.message().to_string(),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(SoakError::Cluster(format!("submitting the program failed: {last}")))
}

/// Every goal of `domain` (a singleton, or a kind: every instance), paged.
async fn goals_of(cluster: &LocalCluster, domain: &str) -> Option<Vec<pb::GoalInfo>> {
    let mut client = leader_client(cluster).await?;
    let mut goals = Vec::new();
    for _ in 0..10_000 {
        let request = pb::ListGoalsRequest {
            domain: domain.into(),
            limit: 1000,
            offset: goals.len() as u64,
            ..Default::default()
        };
        let page = tokio::time::timeout(Duration::from_secs(10), client.list_goals(request)).await.ok()?.ok()?;
        let page = page.into_inner();
        let done = page.goals.is_empty() || goals.len() + page.goals.len() >= page.total as usize;
        goals.extend(page.goals);
        if done {
            break;
        }
    }
    Some(goals)
}

/// What one fight's trapped goals show: (code, evidence shape), with the
/// fight's names mapped to fight 0's. (A goal that holds in the state the
/// fight stopped in may show SATISFIED; its verdict is in the events.)
type TrapShape = BTreeSet<(String, String)>;

async fn trap_shape(cluster: &LocalCluster, i: usize) -> TrapShape {
    let mut shape = TrapShape::new();
    for domain in [format!("Warm{i}"), format!("Chill{i}")] {
        for g in goals_of(cluster, &domain).await.unwrap_or_default().into_iter().filter(|g| g.status == "TRAPPED") {
            shape.insert((g.code, program::evidence_shape(&program::as_fight_zero(&g.evidence, i))));
        }
    }
    shape
}

/// The reference for the traps checker: the same program on a fault-free
/// loopback cluster, fight 0 armed until it is trapped.
async fn reference_trap() -> Result<(TrapShape, Vec<String>), SoakError> {
    let cluster = LocalCluster::start(ClusterOptions::default()).await.map_err(cluster_error)?;
    let from = submit(&cluster).await?;
    let addrs: Vec<String> = cluster.nodes.values().map(|n| n.addr.clone()).collect();
    let stop = Arc::new(Mutex::new(false));
    let watcher = tokio::spawn(watch_events(addrs.clone(), from, stop.clone()));
    arm(addrs, 0, Instant::now()).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut shape = TrapShape::new();
    while Instant::now() < deadline {
        shape = trap_shape(&cluster, 0).await;
        if !shape.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    *stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
    let events = watcher.await.unwrap_or_default();
    Ok((shape, trap_events(&events, 0)))
}

/// The trap verdicts (E005 `trap` events) of fight `i` among `events`:
/// the goal each names, mapped to fight 0's names, in log order.
fn trap_events(events: &BTreeSet<(u64, String, String, String, String)>, i: usize) -> Vec<String> {
    let domains = [format!("Warm{i}"), format!("Chill{i}")];
    events
        .iter()
        .filter(|(_, kind, domain, _, code)| code == "E005" && kind == "trap" && domains.contains(domain))
        .map(|(_, _, domain, goal, _)| program::as_fight_zero(&format!("{domain}.{goal}"), i))
        .collect()
}

/// Runs one whole soak: reference run, cluster in namespaces, workloads
/// under the nemeses, heal, quiet, final checks, store. `Ok` has the
/// verdicts (passing or not); `Err` is a run that could not be carried out.
pub fn run(settings: &Settings) -> Result<Report, SoakError> {
    let store = Store::create(&settings.store, settings.seed)?;
    store.write_json("settings.json", settings)?;
    let plan = schedule::schedule(settings.seed, &settings.nemeses, settings.time_limit, EFFECT_TIMEOUT);
    store.write_json("schedule.json", &plan.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>())?;
    let traps_on = settings.workloads.contains(&Workload::Traps);
    let reference = if traps_on {
        eprintln!("jepsen: fault-free reference run for the traps checker");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(SoakError::Workers)?;
        Some(runtime.block_on(reference_trap())?)
    } else {
        None
    };
    let mut verdicts = Vec::new();
    // Without namespaces the cluster runs on loopback and the partition and
    // netem faults are skipped (a failure under CI, see the nemesis verdict).
    let network = match netns::available() {
        Ok(()) => Some(Network::create(&[1, 2, 3])?),
        Err(why) => {
            eprintln!("jepsen: no network namespaces ({why}); running on loopback");
            None
        }
    };
    let settings_owned = settings.clone();
    let store_dir = store.dir().to_path_buf();
    let body = move |network: Option<Network>| async move {
        let mut run = Run::start(settings_owned, network, store_dir).await?;
        run.go(&plan, reference).await
    };
    let outcome = match network {
        Some(network) => netns::run_as_client(network, |network| body(Some(network)))?,
        None => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(SoakError::Workers)?;
            runtime.block_on(body(None))
        }
    }?;
    let Finished { mut checks, records, windows, summary_parts } = outcome;
    verdicts.append(&mut checks);
    let mut summary = summary_parts;
    summary.ops = records.len();
    summary.ok = records.iter().filter(|r| r.outcome == Outcome::Ok).count();
    summary.info = records.iter().filter(|r| r.outcome == Outcome::Info).count();
    summary.fail = records.iter().filter(|r| r.outcome == Outcome::Fail).count();
    summary.anomalies = verdicts.iter().map(|v| v.anomalies.len()).sum();
    store.write_lines("history.jsonl", &records)?;
    store.write_json("faults.json", &windows)?;
    store.write_json("verdicts.json", &verdicts)?;
    store.write_text("summary.txt", &format!("{summary}\n"))?;
    let length = settings.time_limit.as_secs_f64();
    store.plots(&records, &windows, length)?;
    Ok(Report { summary, verdicts, store: store.dir().to_path_buf() })
}

/// What the run inside the namespaces hands back.
struct Finished {
    checks: Vec<Verdict>,
    records: Vec<OpRecord>,
    windows: Vec<FaultWindow>,
    summary_parts: Summary,
}

/// A running soak: the cluster, its workers, the store directory.
struct Run {
    settings: Settings,
    cluster: LocalCluster,
    workers: Workers,
    store: std::path::PathBuf,
    addrs: Vec<String>,
    submitted: u64,
}

impl Run {
    async fn start(settings: Settings, network: Option<Network>, store: std::path::PathBuf) -> Result<Run, SoakError> {
        let test_faults = settings.bug.and_then(Bug::node_fault).map(String::from).into_iter().collect();
        let options = ClusterOptions {
            effect_timeout_ms: EFFECT_TIMEOUT.as_millis() as u64,
            test_faults,
            ..ClusterOptions::default()
        };
        let clients_namespace = network.as_ref().map(Network::client_namespace);
        let cluster = match network {
            Some(network) => LocalCluster::start_in(options, network).await,
            None => LocalCluster::start(options).await,
        }
        .map_err(cluster_error)?;
        let submitted = submit(&cluster).await?;
        let addrs: Vec<String> = cluster.nodes.values().map(|n| n.addr.clone()).collect();
        let count = if settings.workloads.contains(&Workload::Effects) { WORKERS } else { 0 };
        let binary = workspace_binary("jepsen-worker").map_err(cluster_error)?;
        let ignore = settings.bug == Some(Bug::WorkerIgnoresDeadline);
        let workers = Workers::start(binary, addrs.clone(), store.join("workers"), clients_namespace, count, ignore)
            .map_err(SoakError::Workers)?;
        Ok(Run { settings, cluster, workers, store, addrs, submitted })
    }

    fn on(&self, workload: Workload) -> bool {
        self.settings.workloads.contains(&workload)
    }

    async fn go(
        &mut self,
        plan: &[Planned],
        reference: Option<(TrapShape, Vec<String>)>,
    ) -> Result<Finished, SoakError> {
        let start = Instant::now();
        let start_ns = effects::monotonic_ns();
        let stop = start + self.settings.time_limit;
        let addrs = self.addrs.clone();
        let registers: Vec<_> = if self.on(Workload::Registers) {
            (0..REGISTER_CLIENTS).map(|id| tokio::spawn(register_client(id, addrs.clone(), start, stop))).collect()
        } else {
            Vec::new()
        };
        let sets: Vec<_> = if self.on(Workload::Set) {
            (0..SET_CLIENTS).map(|id| tokio::spawn(set_client(id, addrs.clone(), start, stop))).collect()
        } else {
            Vec::new()
        };
        let mover = (self.on(Workload::Effects) || self.on(Workload::Convergence))
            .then(|| tokio::spawn(move_targets(addrs.clone(), start, stop)));
        let watch_stop = Arc::new(Mutex::new(false));
        let watcher = self
            .on(Workload::Traps)
            .then(|| tokio::spawn(watch_events(addrs.clone(), self.submitted, watch_stop.clone())));
        let armers: Vec<_> = if self.on(Workload::Traps) {
            (0..FIGHTS)
                .map(|i| {
                    let addrs = addrs.clone();
                    let at = start + self.settings.time_limit.mul_f64((i + 1) as f64 / (FIGHTS + 1) as f64);
                    tokio::spawn(async move {
                        tokio::time::sleep_until(at.into()).await;
                        arm(addrs, i, start).await
                    })
                })
                .collect()
        } else {
            Vec::new()
        };

        eprintln!("jepsen: {} faults planned over {:?}", plan.len(), self.settings.time_limit);
        let mut executor = Executor::new(&mut self.cluster, &mut self.workers, start);
        let mut windows = executor.run(plan).await;
        tokio::time::sleep_until(stop.into()).await;
        let heal_at = start.elapsed().as_secs_f64();
        let problems = executor.heal_all().await;
        windows.push(FaultWindow {
            nemesis: "heal".into(),
            label: if problems.is_empty() { "healed".into() } else { problems.join("; ") },
            start: heal_at,
            end: start.elapsed().as_secs_f64(),
            skipped: !problems.is_empty(),
        });
        eprintln!("jepsen: healed; quiet for {QUIET:?}");
        tokio::time::sleep(QUIET).await;

        let mut records = Vec::new();
        let mut register_ops = Vec::new();
        for handle in registers {
            let (ops, recs) = handle.await.unwrap_or_default();
            register_ops.extend(ops);
            records.extend(recs);
        }
        for handle in sets {
            records.extend(handle.await.unwrap_or_default());
        }
        if let Some(mover) = mover {
            records.extend(mover.await.unwrap_or_default());
        }
        for handle in armers {
            records.extend(handle.await.unwrap_or_default());
        }

        let mut checks = Vec::new();
        let mut summary = Summary { traps_preserved: "-".into(), hashes_agree: "-".into(), ..Summary::default() };
        let skipped: Vec<&FaultWindow> = windows.iter().filter(|w| w.skipped && w.nemesis != "heal").collect();
        let ci_skips: Vec<String> =
            skipped.iter().filter(|w| w.label.contains("no network namespaces")).map(|w| w.label.clone()).collect();
        let heal_failed: Vec<String> =
            windows.iter().filter(|w| w.nemesis == "heal" && w.skipped).map(|w| w.label.clone()).collect();
        let mut anomalies = heal_failed.clone();
        if self.settings.ci {
            anomalies.extend(ci_skips);
        }
        checks.push(Verdict {
            checker: "nemesis".into(),
            valid: anomalies.is_empty(),
            anomalies,
            detail: serde_json::json!({
                "faults": windows.iter().filter(|w| !w.skipped && w.nemesis != "heal").count(),
                "skipped": skipped.iter().map(|w| w.label.clone()).collect::<Vec<_>>(),
            }),
        });
        if self.on(Workload::Registers) {
            checks.push(self.check_registers(register_ops, start, &mut records).await);
        }
        if self.on(Workload::Effects) || self.on(Workload::Convergence) {
            let (effects, convergence) = self.check_effects(start, start_ns, &mut records).await;
            summary.duplicate_effects = effects.detail["overlaps"].as_u64().unwrap_or(0) as usize;
            if self.on(Workload::Effects) {
                checks.push(effects);
            }
            if self.on(Workload::Convergence) {
                checks.push(convergence);
            }
        }
        if self.on(Workload::Set) {
            let set = self.check_set(&records).await;
            summary.lost = set.detail["lost"].as_u64().unwrap_or(0) as usize;
            checks.push(set);
        }
        if let (Some(watcher), Some(reference)) = (watcher, reference) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            *watch_stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
            let events = watcher.await.unwrap_or_default();
            let traps = self.check_traps(&events, &reference).await;
            summary.traps_preserved = traps.detail["preserved"].as_str().unwrap_or("-").to_string();
            checks.push(traps);
        }
        if self.on(Workload::Replicas) {
            let replicas = self.check_replicas().await;
            summary.hashes_agree = replicas.valid.to_string();
            checks.push(replicas);
        }
        self.workers.stop();
        for id in self.cluster.nodes.keys() {
            let from = self.cluster.log_path(*id);
            let _ = std::fs::copy(&from, self.store.join(format!("node{id}.log")));
        }
        Ok(Finished { checks, records, windows, summary_parts: summary })
    }

    async fn check_registers(&self, mut ops: Vec<(usize, Op)>, start: Instant, records: &mut Vec<OpRecord>) -> Verdict {
        // One more read of every register through the leader.
        let mut final_read = false;
        for _ in 0..20 {
            let Some(mut client) = leader_client(&self.cluster).await else { continue };
            let invoke = nanos_since(start);
            let request = pb::ReadRequest { domain: "Reg".into(), ..Default::default() };
            if let Ok(Ok(response)) = tokio::time::timeout(OP_TIMEOUT, client.read(request)).await {
                let complete = nanos_since(start);
                let mut read = Vec::new();
                for (key, value) in read_ints(response.get_ref()) {
                    ops.push((key, Op { kind: OpKind::Read(value), invoke, complete: Some(complete) }));
                    read.push((KEYS[key].to_string(), value));
                }
                records.push(OpRecord {
                    read,
                    index: Some(response.get_ref().index),
                    ..OpRecord::new("registers", "read", "Reg".into(), 0, invoke, Some(complete), Outcome::Ok)
                });
                final_read = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let mut anomalies = Vec::new();
        if !final_read {
            anomalies.push("no final read after the heal".into());
        }
        let (tx, rx) = std::sync::mpsc::channel();
        // The search can take a while: off the async runtime.
        std::thread::spawn(move || {
            let mut found = Vec::new();
            for (key, name) in KEYS.iter().enumerate() {
                let history: Vec<Op> = ops.iter().filter(|(k, _)| *k == key).map(|(_, op)| *op).collect();
                if let Err(violation) = check_register(0, &history) {
                    let witness = match first_unexplained_read(0, &history) {
                        Some(witness) => format!("; {witness}"),
                        None => String::new(),
                    };
                    found.push(format!("register {name}: {violation}{witness}"));
                }
            }
            let _ = tx.send((found, ops.len()));
        });
        let (found, checked) =
            tokio::task::spawn_blocking(move || rx.recv().unwrap_or((vec!["checker thread died".into()], 0)))
                .await
                .unwrap_or((vec!["checker task died".into()], 0));
        anomalies.extend(found);
        Verdict {
            checker: "registers".into(),
            valid: anomalies.is_empty(),
            anomalies,
            detail: serde_json::json!({ "register_ops": checked }),
        }
    }

    /// Sets a final target for every job (so goals that ran out of retries
    /// re-arm), waits for every Job and Item goal to hold, then checks the
    /// workers' logs. Returns the effects and the convergence verdicts.
    async fn check_effects(
        &mut self,
        start: Instant,
        start_ns: u64,
        records: &mut Vec<OpRecord>,
    ) -> (Verdict, Verdict) {
        let mut conns = Nodes::new(self.addrs.clone(), 0);
        let mut finals = BTreeMap::new();
        for d in 0..JOBS {
            let domain = format!("Job{d}");
            let value = 1_000_000 + d as i64;
            for _ in 0..50 {
                let invoke = nanos_since(start);
                let result = set_field(&mut conns, &domain, "want", value).await;
                let outcome = result.err().unwrap_or(Outcome::Ok);
                let complete = (outcome == Outcome::Ok).then(|| nanos_since(start));
                let key = domain.clone();
                records.push(OpRecord::new("effects", "want", key, value, invoke, complete, outcome));
                if outcome == Outcome::Ok {
                    finals.insert(domain.clone(), value);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        let began = Instant::now();
        let deadline = began + CONVERGENCE_BOUND;
        let mut pending = vec!["no answer".to_string()];
        while Instant::now() < deadline {
            let mut goals = Vec::new();
            for d in 0..JOBS {
                goals.extend(goals_of(&self.cluster, &format!("Job{d}")).await.unwrap_or_default());
            }
            goals.extend(goals_of(&self.cluster, "Item").await.unwrap_or_default());
            pending = goals
                .iter()
                .filter(|g| g.status != "SATISFIED")
                .map(|g| format!("{}.{} {} {}", g.domain, g.goal, g.status, g.evidence))
                .collect();
            if pending.is_empty() && goals.len() >= JOBS {
                break;
            }
            if goals.len() < JOBS {
                pending.push(format!("only {} goals listed", goals.len()));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let took = began.elapsed().as_secs_f64();
        let mut anomalies: Vec<String> =
            pending.iter().take(20).map(|p| format!("not converged within {CONVERGENCE_BOUND:?}: {p}")).collect();
        if finals.len() < JOBS {
            anomalies.push(format!("only {} of {JOBS} final targets acknowledged", finals.len()));
        }
        let convergence = Verdict {
            checker: "convergence".into(),
            valid: anomalies.is_empty(),
            anomalies,
            detail: serde_json::json!({ "seconds_to_converge": took }),
        };

        // Let the workers finish what they hold, then read their logs.
        tokio::time::sleep(Duration::from_secs(2)).await;
        self.workers.stop();
        let lines = effects::read_logs(&self.store.join("workers")).unwrap_or_default();
        let executions = effects::executions(&lines, start, start_ns);
        let found = overlaps(&executions);
        let mut anomalies: Vec<String> = found.iter().take(20).map(|o| format!("two workers at once: {o}")).collect();
        if found.len() > 20 {
            anomalies.push(format!("... {} overlaps in all", found.len()));
        }
        // Every final target was carried out by a worker, and recorded.
        let mut client = Nodes::new(self.addrs.clone(), 0);
        for (domain, want) in &finals {
            let done_by_worker = lines.iter().any(|l| l.ev == "done" && l.n == *want);
            let mut recorded = None;
            for index in 0..self.addrs.len() {
                if let Some(mut c) = client.client(index).await {
                    let request = pb::ReadRequest { domain: domain.clone(), ..Default::default() };
                    if let Ok(Ok(response)) = tokio::time::timeout(OP_TIMEOUT, c.read(request)).await {
                        recorded = response.get_ref().fields.iter().find(|f| f.name == "done").and_then(|f| {
                            match f.value.as_ref()?.kind {
                                Some(pb::value::Kind::Int(n)) => Some(n),
                                _ => None,
                            }
                        });
                        break;
                    }
                }
            }
            if !done_by_worker {
                anomalies.push(format!("{domain}: no worker completed Ops.Apply(n: {want})"));
            }
            if recorded != Some(*want) {
                anomalies.push(format!("{domain}.done is {recorded:?}, want {want}"));
            }
        }
        // No intent of the always-failing effect was tried more often than
        // its retry limit allows (a FAILED goal is never re-armed here).
        let failing = effects::attempts_per_intent(&lines, program::FAILING_EFFECT);
        for (n, attempts) in &failing {
            if attempts.len() > program::DOOMED_ATTEMPTS as usize {
                let keys: BTreeSet<&str> = attempts.iter().map(|(key, _)| key.as_str()).collect();
                anomalies.push(format!(
                    "{}(n: {n}) ran {} attempts under {} idempotency keys; Doomed.Applied allows {}",
                    program::FAILING_EFFECT,
                    attempts.len(),
                    keys.len(),
                    program::DOOMED_ATTEMPTS
                ));
            }
        }
        let retried = executions.iter().filter(|e| e.attempt > 1).count();
        let effects = Verdict {
            checker: "effects".into(),
            valid: anomalies.is_empty(),
            anomalies,
            detail: serde_json::json!({
                "executions": executions.len(),
                "retried_executions": retried,
                "overlaps": found.len(),
                "done_lines": lines.iter().filter(|l| l.ev == "done").count(),
                "failing_attempts": failing.values().map(BTreeSet::len).max().unwrap_or(0),
            }),
        };
        (effects, convergence)
    }

    async fn check_set(&self, records: &[OpRecord]) -> Verdict {
        let attempted: BTreeMap<&str, Outcome> =
            records.iter().filter(|r| r.workload == "set").map(|r| (r.key.as_str(), r.outcome)).collect();
        let mut anomalies = Vec::new();
        let Some(goals) = goals_of(&self.cluster, "Item").await else {
            return Verdict {
                checker: "set".into(),
                valid: false,
                anomalies: vec!["could not list the set after the heal".into()],
                detail: serde_json::json!({}),
            };
        };
        let mut present: BTreeMap<String, usize> = BTreeMap::new();
        for g in &goals {
            let key = g.domain.strip_prefix("Item[").and_then(|k| k.strip_suffix(']')).unwrap_or(&g.domain);
            *present.entry(key.to_string()).or_default() += 1;
        }
        let lost: Vec<&str> = attempted
            .iter()
            .filter(|(k, o)| **o == Outcome::Ok && !present.contains_key(**k))
            .map(|(k, _)| *k)
            .collect();
        let duplicated: Vec<&String> = present.iter().filter(|(_, n)| **n > 1).map(|(k, _)| k).collect();
        let invented: Vec<&String> = present
            .keys()
            .filter(|k| !matches!(attempted.get(k.as_str()), Some(Outcome::Ok | Outcome::Info)))
            .collect();
        for key in lost.iter().take(20) {
            anomalies.push(format!("acknowledged append {key} missing"));
        }
        for key in duplicated.iter().take(20) {
            anomalies.push(format!("element {key} listed more than once"));
        }
        for key in invented.iter().take(20) {
            anomalies.push(format!("element {key} present but never appended (or refused)"));
        }
        let info_present = attempted.iter().filter(|(k, o)| **o == Outcome::Info && present.contains_key(**k)).count();
        Verdict {
            checker: "set".into(),
            valid: lost.is_empty() && duplicated.is_empty() && invented.is_empty(),
            anomalies,
            detail: serde_json::json!({
                "acknowledged": attempted.values().filter(|o| **o == Outcome::Ok).count(),
                "unknown": attempted.values().filter(|o| **o == Outcome::Info).count(),
                "unknown_present": info_present,
                "present": present.len(),
                "lost": lost.len(),
                "duplicated": duplicated.len(),
            }),
        }
    }

    async fn check_traps(
        &self,
        events: &BTreeSet<(u64, String, String, String, String)>,
        reference: &(TrapShape, Vec<String>),
    ) -> Verdict {
        let (reference_shape, reference_events) = reference;
        let mut reference_goals = reference_events.clone();
        reference_goals.sort();
        let mut per_fight = Vec::new();
        let mut anomalies = Vec::new();
        if reference_shape.is_empty() || reference_goals.is_empty() {
            anomalies.push(format!("the fault-free run did not trap: {reference_shape:?}"));
        }
        let mut preserved = 0;
        for i in 0..FIGHTS {
            let mut shape = TrapShape::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                shape = trap_shape(&self.cluster, i).await;
                if !shape.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let verdicts = trap_events(events, i);
            let mut ok = true;
            if &shape != reference_shape {
                ok = false;
                anomalies.push(format!("fight {i}: {shape:?}, without faults {reference_shape:?}"));
            }
            let mut goals = verdicts.clone();
            goals.sort();
            if goals != reference_goals {
                ok = false;
                anomalies.push(format!("fight {i}: trap verdicts {verdicts:?}, without faults {reference_goals:?}"));
            }
            per_fight.push(verdicts);
            preserved += usize::from(ok);
        }
        Verdict {
            checker: "traps".into(),
            valid: anomalies.is_empty(),
            anomalies,
            detail: serde_json::json!({
                "preserved": format!("{preserved}/{FIGHTS}"),
                "reference": format!("{reference_shape:?}"),
                "reference_verdicts": reference_events,
                "verdicts": per_fight,
            }),
        }
    }

    async fn check_replicas(&self) -> Verdict {
        let members = self.cluster.nodes.len();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut infos = BTreeMap::new();
        let mut agree = false;
        while Instant::now() < deadline {
            infos = self.cluster.node_infos().await;
            let applied: BTreeSet<u64> = infos.values().map(|i| i.applied_index).collect();
            let hashes: BTreeSet<&String> = infos.values().map(|i| &i.state_hash).collect();
            if infos.len() == members && applied.len() == 1 {
                agree = hashes.len() == 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let mut anomalies = Vec::new();
        let shown: Vec<String> = infos
            .iter()
            .map(|(id, i)| format!("node {id}: applied {} hash {}", i.applied_index, i.state_hash))
            .collect();
        if !agree {
            anomalies.push(format!("replicas disagree or never reached one applied index: {}", shown.join(", ")));
        }
        let mut replays = Vec::new();
        for id in self.cluster.nodes.keys() {
            let replay = async {
                let mut client = self.cluster.client(*id).await.ok()?;
                client.replay(pb::ReplayRequest {}).await.ok().map(tonic::Response::into_inner)
            };
            match tokio::time::timeout(Duration::from_secs(60), replay).await {
                Ok(Some(report)) => {
                    if !report.matches {
                        anomalies.push(format!(
                            "node {id}: replay gives {} at {}, live {}",
                            report.replayed_state_hash, report.applied_index, report.live_state_hash
                        ));
                    }
                    replays.push(format!("node {id}: {} at {}", report.matches, report.applied_index));
                }
                _ => anomalies.push(format!("node {id}: no replay answer")),
            }
        }
        Verdict {
            checker: "replicas".into(),
            valid: anomalies.is_empty(),
            anomalies,
            detail: serde_json::json!({ "nodes": shown, "replay": replays }),
        }
    }
}
