//! The register workload of the fault tests: concurrent clients write
//! unique values to three registers (fields of one domain `Reg`) and read
//! them back through any node; afterwards each register's history must be
//! linearizable ([`crate::linearizable`]), which also means that no
//! acknowledged write was lost and no read was stale.

use crate::cluster::{connect, LocalCluster};
use crate::linearizable::{check_register, first_unexplained_read, Op, OpKind};
use crate::worker::int_value;
use lexum_proto::v1 as pb;
use lexum_proto::v1::lexum_client::LexumClient;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// The program the workload runs against.
pub const PROGRAM: &str = "domain Reg {\n  state {\n    k0: int = 0\n    k1: int = 0\n    k2: int = 0\n  }\n}\n";
/// The registers: fields of `Reg`.
pub const KEYS: [&str; 3] = ["k0", "k1", "k2"];
/// An answer later than this counts as no answer.
const OP_TIMEOUT: Duration = Duration::from_secs(3);
/// Upper bound on one client's operations.
const MAX_OPS: usize = 5_000_000;

/// One operation on one register.
#[derive(Clone, Copy, Debug)]
struct Record {
    /// Index into [`KEYS`].
    key: usize,
    /// The operation and its timing.
    op: Op,
}

/// A small deterministic generator (no dependency needed for a coin flip).
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    /// The next pseudo-random number.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Nanoseconds since the run started (the histories' clock).
pub(crate) fn nanos_since(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

/// Refusals that happen before an entry reaches the log (not the leader,
/// the engine or the auth guard refused it): the write certainly did not
/// take effect.
pub(crate) fn certainly_not_applied(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::FailedPrecondition
            | tonic::Code::InvalidArgument
            | tonic::Code::NotFound
            | tonic::Code::AlreadyExists
            | tonic::Code::PermissionDenied
    )
}

/// The registers' values in a read of `Reg`, by key index.
pub(crate) fn read_ints(response: &pb::ReadResponse) -> Vec<(usize, i64)> {
    response
        .fields
        .iter()
        .filter_map(|field| {
            let key = KEYS.iter().position(|k| *k == field.name)?;
            match field.value.as_ref()?.kind {
                Some(pb::value::Kind::Int(n)) => Some((key, n)),
                _ => None,
            }
        })
        .collect()
}

/// Connections to every node, dropped on transport errors; writes stick
/// to one node (the leader, once found).
pub(crate) struct Nodes {
    pub(crate) addrs: Vec<String>,
    clients: Vec<Option<LexumClient<Channel>>>,
    pub(crate) writer: usize,
}

impl Nodes {
    pub(crate) fn new(addrs: Vec<String>, first: usize) -> Nodes {
        let clients = vec![None; addrs.len()];
        Nodes { writer: first % addrs.len().max(1), addrs, clients }
    }

    /// A connection to node `index`, opened if needed.
    pub(crate) async fn client(&mut self, index: usize) -> Option<LexumClient<Channel>> {
        if self.clients[index].is_none() {
            let opened = tokio::time::timeout(OP_TIMEOUT, connect(&self.addrs[index])).await;
            self.clients[index] = opened.ok().and_then(Result::ok);
        }
        self.clients[index].clone()
    }

    /// Drops the connection to node `index` (reopened on next use).
    pub(crate) fn drop_client(&mut self, index: usize) {
        if let Some(slot) = self.clients.get_mut(index) {
            *slot = None;
        }
    }

    /// Writes go to the next node from now on; `broken` drops the
    /// connection to the current one.
    pub(crate) fn next_writer(&mut self, broken: bool) {
        if broken {
            self.clients[self.writer] = None;
        }
        self.writer = (self.writer + 1) % self.addrs.len();
    }
}

/// One client: writes of unique values (to the node that last took one)
/// and whole-domain reads (from any node, chosen at random, so a node that
/// wrongly believes it still leads is asked too), half and half, until
/// `stop`.
async fn run_client(id: usize, addrs: Vec<String>, start: Instant, stop: Instant) -> Vec<Record> {
    let mut records = Vec::new();
    let mut nodes = Nodes::new(addrs, id);
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1));
    let mut written = 0i64;
    for _ in 0..MAX_OPS {
        if Instant::now() >= stop {
            break;
        }
        let key = (rng.next() % KEYS.len() as u64) as usize;
        if rng.next() % 2 == 0 {
            let Some(mut client) = nodes.client(nodes.writer).await else {
                nodes.next_writer(false);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            written += 1;
            let value = (id as i64 + 1) * 1_000_000 + written;
            let write = pb::FieldWrite { domain: "Reg".into(), field: KEYS[key].into(), value: Some(int_value(value)) };
            let invoke = nanos_since(start);
            let answer = tokio::time::timeout(
                OP_TIMEOUT,
                client.mutate(pb::MutateRequest { writes: vec![write], ..Default::default() }),
            )
            .await;
            let complete = nanos_since(start);
            let kind = OpKind::Write(value);
            match answer {
                Ok(Ok(_)) => records.push(Record { key, op: Op { kind, invoke, complete: Some(complete) } }),
                Ok(Err(status)) if certainly_not_applied(&status) => nodes.next_writer(false),
                _ => {
                    records.push(Record { key, op: Op { kind, invoke, complete: None } });
                    nodes.next_writer(true);
                }
            }
        } else {
            let reader = (rng.next() % nodes.addrs.len() as u64) as usize;
            let Some(mut client) = nodes.client(reader).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let invoke = nanos_since(start);
            let answer = tokio::time::timeout(
                OP_TIMEOUT,
                client.read(pb::ReadRequest { domain: "Reg".into(), ..Default::default() }),
            )
            .await;
            let complete = nanos_since(start);
            match answer {
                Ok(Ok(response)) => {
                    for (key, value) in read_ints(response.get_ref()) {
                        records.push(Record {
                            key,
                            op: Op { kind: OpKind::Read(value), invoke, complete: Some(complete) },
                        });
                    }
                }
                Ok(Err(status)) if status.code() == tonic::Code::FailedPrecondition => {}
                _ => nodes.drop_client(reader),
            }
        }
    }
    records
}

/// Reads every register once more through the leader after the faults.
async fn final_reads(cluster: &LocalCluster, start: Instant) -> Vec<Record> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(leader) = cluster.wait_for_leader(Duration::from_secs(10)).await {
            if let Ok(mut client) = cluster.client(leader).await {
                let invoke = nanos_since(start);
                if let Ok(response) = client.read(pb::ReadRequest { domain: "Reg".into(), ..Default::default() }).await
                {
                    let complete = nanos_since(start);
                    return read_ints(response.get_ref())
                        .into_iter()
                        .map(|(key, value)| Record {
                            key,
                            op: Op { kind: OpKind::Read(value), invoke, complete: Some(complete) },
                        })
                        .collect();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no final read within 30 s after the faults healed");
}

/// Submits [`PROGRAM`] through the leader.
async fn submit_program(cluster: &LocalCluster) -> anyhow::Result<()> {
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await?;
    let mut client = cluster.client(leader).await?;
    let program = pb::SubmitProgramRequest {
        program: Some(pb::submit_program_request::Program::Source(PROGRAM.into())),
        file_name: "registers.lxm".into(),
    };
    client.submit_program(program).await?;
    Ok(())
}

/// One whole run: submits [`PROGRAM`], runs `clients` clients against every
/// node for `run` while `nemesis` acts (it gets the cluster and the time
/// to stop by, and says what it did), reads every register once more, and
/// checks the history. Panics with the violation when a register's history
/// is not linearizable.
pub async fn run_with_nemesis(
    cluster: &mut LocalCluster,
    clients: usize,
    run: Duration,
    nemesis: impl AsyncFnOnce(&mut LocalCluster, Instant) -> Vec<String>,
) -> (Vec<String>, Summary) {
    if let Err(error) = submit_program(cluster).await {
        panic!("submitting the register program: {error:#}");
    }
    let addrs: Vec<String> = cluster.nodes.values().map(|n| n.addr.clone()).collect();
    let start = Instant::now();
    let stop = start + run;
    let running = spawn_clients(clients, addrs, start, stop);
    let faults = nemesis(cluster, stop).await;
    let mut history = running.await.unwrap_or_default();
    history.extend(final_reads(cluster, start).await);
    let summary = check(&history).unwrap_or_else(|violation| panic!("{violation}"));
    (faults, summary)
}

/// Runs `clients` clients against `addrs` until `stop`, concurrently with
/// whatever the caller does meanwhile; await the handle for the history.
fn spawn_clients(
    clients: usize,
    addrs: Vec<String>,
    start: Instant,
    stop: Instant,
) -> tokio::task::JoinHandle<Vec<Record>> {
    let running: Vec<_> = (0..clients).map(|id| tokio::spawn(run_client(id, addrs.clone(), start, stop))).collect();
    tokio::spawn(async move {
        let mut history = Vec::new();
        for client in running {
            history.extend(client.await.unwrap_or_default());
        }
        history
    })
}

/// Counts of one run's history.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    /// Writes that were acknowledged.
    pub acknowledged: usize,
    /// Writes whose outcome is unknown (timeout, broken connection).
    pub unknown: usize,
    /// Register values read.
    pub reads: usize,
}

/// Checks every register's history for linearizability (from initial
/// value 0); the error names the register, the violation and its history.
fn check(history: &[Record]) -> Result<Summary, String> {
    let summary = Summary {
        acknowledged: history
            .iter()
            .filter(|r| matches!(r.op.kind, OpKind::Write(_)) && r.op.complete.is_some())
            .count(),
        unknown: history.iter().filter(|r| r.op.complete.is_none()).count(),
        reads: history.iter().filter(|r| matches!(r.op.kind, OpKind::Read(_))).count(),
    };
    for (key, name) in KEYS.iter().enumerate() {
        let ops: Vec<Op> = history.iter().filter(|r| r.key == key).map(|r| r.op).collect();
        check_register(0, &ops).map_err(|violation| {
            let witness = first_unexplained_read(0, &ops).map(|w| format!("\n{w}")).unwrap_or_default();
            format!("register {name}: {violation}{witness}\nhistory: {ops:?}")
        })?;
    }
    Ok(summary)
}
