//! Linearizability under faults. Concurrent clients write unique values to
//! three registers (fields of one domain) and read them back through any
//! node, while a nemesis kills the leader, pauses a node (SIGSTOP) and kills
//! a follower, restarting each. Afterwards every register's history must be
//! linearizable (`lexum_jepsen::linearizable`), which also means that no
//! acknowledged write was lost and no read was stale.
//!
//! CI runs it for 20 s; `LEXUM_JEPSEN_SECONDS=600` runs it longer (at most
//! an hour).

use lexum_jepsen::cluster::{connect, ClusterOptions, LocalCluster};
use lexum_jepsen::linearizable::{check_register, Op, OpKind};
use lexum_jepsen::worker::int_value;
use lexum_proto::v1 as pb;
use lexum_proto::v1::lexum_client::LexumClient;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const PROGRAM: &str = "domain Reg {\n  state {\n    k0: int = 0\n    k1: int = 0\n    k2: int = 0\n  }\n}\n";
const KEYS: [&str; 3] = ["k0", "k1", "k2"];
const CLIENTS: usize = 4;
/// How long clients run while the nemesis acts, unless
/// `LEXUM_JEPSEN_SECONDS` says otherwise.
const RUN: Duration = Duration::from_secs(20);
/// The longest run `LEXUM_JEPSEN_SECONDS` may ask for.
const MAX_RUN: Duration = Duration::from_secs(3600);
/// An answer later than this counts as no answer.
const OP_TIMEOUT: Duration = Duration::from_secs(3);
/// Upper bound on one client's operations.
const MAX_OPS: usize = 5_000_000;

/// One operation on one register.
#[derive(Clone, Copy, Debug)]
struct Record {
    key: usize,
    op: Op,
}

/// A small deterministic generator (no dependency needed for a coin flip).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn nanos_since(start: Instant) -> u64 {
    start.elapsed().as_nanos() as u64
}

/// Refusals that happen before an entry reaches the log (not the leader,
/// or the engine refused it): the write certainly did not take effect.
fn certainly_not_applied(status: &tonic::Status) -> bool {
    matches!(status.code(), tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument | tonic::Code::NotFound)
}

fn read_ints(response: &pb::ReadResponse) -> Vec<(usize, i64)> {
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

/// Connections to every node, dropped on transport errors.
struct Nodes {
    addrs: Vec<String>,
    clients: Vec<Option<LexumClient<Channel>>>,
    target: usize,
}

impl Nodes {
    fn new(addrs: Vec<String>, first: usize) -> Nodes {
        let clients = vec![None; addrs.len()];
        Nodes { target: first % addrs.len(), addrs, clients }
    }

    async fn current(&mut self) -> Option<LexumClient<Channel>> {
        if self.clients[self.target].is_none() {
            self.clients[self.target] = connect(&self.addrs[self.target]).await.ok();
        }
        let client = self.clients[self.target].clone();
        if client.is_none() {
            self.move_on(false);
        }
        client
    }

    /// Tries the next node; `broken` drops the current connection.
    fn move_on(&mut self, broken: bool) {
        if broken {
            self.clients[self.target] = None;
        }
        self.target = (self.target + 1) % self.addrs.len();
    }
}

/// One client: writes of unique values and whole-domain reads, half and
/// half, until `stop`.
async fn run_client(id: usize, addrs: Vec<String>, start: Instant, stop: Instant) -> Vec<Record> {
    let mut records = Vec::new();
    let mut nodes = Nodes::new(addrs, id);
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1));
    let mut written = 0i64;
    for _ in 0..MAX_OPS {
        if Instant::now() >= stop {
            break;
        }
        let Some(mut client) = nodes.current().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let key = (rng.next() % KEYS.len() as u64) as usize;
        let invoke = nanos_since(start);
        if rng.next() % 2 == 0 {
            written += 1;
            let value = (id as i64 + 1) * 1_000_000 + written;
            let write = pb::FieldWrite { domain: "Reg".into(), field: KEYS[key].into(), value: Some(int_value(value)) };
            let answer =
                tokio::time::timeout(OP_TIMEOUT, client.mutate(pb::MutateRequest { writes: vec![write] })).await;
            let complete = nanos_since(start);
            let kind = OpKind::Write(value);
            match answer {
                Ok(Ok(_)) => records.push(Record { key, op: Op { kind, invoke, complete: Some(complete) } }),
                Ok(Err(status)) if certainly_not_applied(&status) => nodes.move_on(false),
                _ => {
                    records.push(Record { key, op: Op { kind, invoke, complete: None } });
                    nodes.move_on(true);
                }
            }
        } else {
            let answer = tokio::time::timeout(OP_TIMEOUT, client.read(pb::ReadRequest { domain: "Reg".into() })).await;
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
                Ok(Err(status)) => nodes.move_on(status.code() != tonic::Code::FailedPrecondition),
                Err(_) => nodes.move_on(true),
            }
        }
    }
    records
}

/// Kills, pauses and restarts nodes until `stop`; returns what it did.
async fn nemesis(cluster: &mut LocalCluster, stop: Instant) -> Vec<String> {
    let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
    let mut done = Vec::new();
    for round in 0..10_000u64 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        if Instant::now() + Duration::from_secs(3) >= stop {
            break;
        }
        let leader = cluster.wait_for_leader(Duration::from_secs(10)).await.ok();
        let follower = ids.iter().copied().find(|id| Some(*id) != leader);
        match (round % 3, leader, follower) {
            (0, Some(victim), _) => {
                cluster.kill(victim).expect("kill");
                tokio::time::sleep(Duration::from_millis(800)).await;
                cluster.restart(victim).expect("restart");
                done.push(format!("kill -9 leader {victim}, restart"));
            }
            (1, Some(victim), _) => {
                cluster.pause(victim, true).expect("pause");
                tokio::time::sleep(Duration::from_millis(1500)).await;
                cluster.pause(victim, false).expect("resume");
                done.push(format!("SIGSTOP leader {victim} for 1.5 s"));
            }
            (_, _, Some(victim)) => {
                cluster.kill(victim).expect("kill");
                tokio::time::sleep(Duration::from_millis(800)).await;
                cluster.restart(victim).expect("restart");
                done.push(format!("kill -9 follower {victim}, restart"));
            }
            _ => done.push("no leader: skipped".into()),
        }
    }
    done
}

/// Reads every register once more through the leader after the faults.
async fn final_reads(cluster: &LocalCluster, start: Instant) -> Vec<Record> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(leader) = cluster.wait_for_leader(Duration::from_secs(10)).await {
            if let Ok(mut client) = cluster.client(leader).await {
                let invoke = nanos_since(start);
                if let Ok(response) = client.read(pb::ReadRequest { domain: "Reg".into() }).await {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_stay_linearizable_while_nodes_are_killed_paused_and_restarted() {
    let mut cluster = LocalCluster::start(ClusterOptions::default()).await.expect("cluster");
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await.expect("leader");
    let mut client = cluster.client(leader).await.expect("client");
    let program = pb::SubmitProgramRequest {
        program: Some(pb::submit_program_request::Program::Source(PROGRAM.into())),
        file_name: "registers.lxm".into(),
    };
    client.submit_program(program).await.expect("submit");

    let addrs: Vec<String> = cluster.nodes.values().map(|n| n.addr.clone()).collect();
    let run = std::env::var("LEXUM_JEPSEN_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(RUN, |seconds| Duration::from_secs(seconds).min(MAX_RUN));
    let start = Instant::now();
    let stop = start + run;
    let clients: Vec<_> = (0..CLIENTS).map(|id| tokio::spawn(run_client(id, addrs.clone(), start, stop))).collect();
    let faults = nemesis(&mut cluster, stop).await;
    let mut history = Vec::new();
    for client in clients {
        history.extend(client.await.expect("client task"));
    }
    history.extend(final_reads(&cluster, start).await);

    let acknowledged = history.iter().filter(|r| matches!(r.op.kind, OpKind::Write(_)) && r.op.complete.is_some());
    let unknown = history.iter().filter(|r| r.op.complete.is_none()).count();
    let reads = history.iter().filter(|r| matches!(r.op.kind, OpKind::Read(_))).count();
    let acknowledged = acknowledged.count();
    eprintln!("faults: {faults:?}; {acknowledged} acknowledged writes, {unknown} of unknown outcome, {reads} reads");
    assert!(faults.len() >= 3, "the nemesis acted: {faults:?}");
    assert!(acknowledged >= 30 && reads >= 30, "too little traffic to mean anything");
    for (key, name) in KEYS.iter().enumerate() {
        let ops: Vec<Op> = history.iter().filter(|r| r.key == key).map(|r| r.op).collect();
        if let Err(violation) = check_register(0, &ops) {
            panic!("register {name}: {violation}\nhistory: {ops:?}");
        }
    }
}
