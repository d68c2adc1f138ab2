//! `bench`: measures a local three-node cluster of real `lexumd` processes
//! on loopback and prints the numbers (a harness, not a test).
//!
//! - mutation throughput and latency (p50, p99) at several client counts,
//!   each client a gRPC connection to the leader writing one field;
//! - linearizable reads (`--reads`): throughput and latency of `Read` on
//!   the leader at the given client counts;
//! - reaction latency: from a mutation that violates a goal to the worker
//!   receiving the repairing effect, with the slowest samples, the nodes'
//!   WAL syncs meanwhile (how much of the tail the disk explains) and how
//!   late a timer of the bench's own woke (how much the machine stalled);
//! - fleet repair: one mutation violates the goals of many domains at once;
//!   the time until a worker has repaired them all;
//! - failover: from `kill -9` of the leader to the first acknowledged write
//!   on the new one;
//! - a fleet as a kind (`--kinds N`): N instances of a kind with ten goals
//!   created through the API, each node's peak RSS, a mutation's latency
//!   with them, a filtered page of goals, and a fresh node's catch-up; and
//!   in process, the engine's cost per mutation with 100 goals beside
//!   10 × N, and the size of a snapshot of N instances.
//!
//! - `--compare etcd`: the same client counts, 256-byte values (a string
//!   field for Lexum) and leader kills against Lexum and a three-member
//!   etcd on loopback, printed as one table with the ratios. Both clusters
//!   run at once and each client count's time alternates between them in
//!   one-second slices, so the machine's drift falls on both alike. Then
//!   one write at a time beside a background load on each side, in
//!   alternating stretches: the floor this machine sets under the reaction
//!   sample, with etcd's put where Lexum has its violating mutation.
//!
//! Build everything with the one cargo selection of `deploy/test.sh`, then
//! run the binary next to `lexumd`:
//! `cargo build --release --workspace --all-targets && target/release/bench`.

mod compare;
mod hiccups;
mod histograms;
mod under_load;

use anyhow::{bail, Context};
use clap::Parser;
use lexum_jepsen::cluster::{ClusterOptions, LocalCluster};
use lexum_jepsen::worker::{int_arg, int_value, TestWorker, WorkerLog};
use lexum_proto::v1 as pb;
use lexum_proto::v1::lexum_client::LexumClient;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// The benchmark program; `{FLEET}` becomes the fleet's domains.
const PROGRAM: &str = r#"
effect Bench.Apply(value: int) -> int
{FLEET}

domain Load {
  state {
    n: int = 0
    s: string = ""
  }
}

domain Scale[name] {
  state {
    x: int = 0
  }
  goal G0 { x >= 0 }
  goal G1 { x >= 1 }
  goal G2 { x >= 2 }
  goal G3 { x >= 3 }
  goal G4 { x >= 4 }
  goal G5 { x >= 5 }
  goal G6 { x >= 6 }
  goal G7 { x >= 7 }
  goal G8 { x >= 8 }
  goal G9 { x >= 9 }
}

domain React {
  state {
    want: int = 0
    have: int = 0
  }
  goal Caught { have == want }
  transition Catch for Caught {
    slice call { emit Bench.Apply(value: want) -> got }
    slice record { have = got }
  }
}
"#;

/// What to measure.
#[derive(Parser, Debug)]
#[command(about = "Throughput, latency, reaction and failover of a local three-node Lexum cluster")]
struct Args {
    /// Client counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// Seconds per client count.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Mutations for the reaction-latency sample.
    #[arg(long, default_value_t = 50)]
    reactions: usize,
    /// Leader kills for the failover sample.
    #[arg(long, default_value_t = 3)]
    failovers: usize,
    /// Domains whose goals one mutation violates at once (0: skip).
    #[arg(long, default_value_t = 500)]
    fleet: usize,
    /// Instances of a kind with ten goals to create and measure (0: skip).
    #[arg(long, default_value_t = 0)]
    kinds: usize,
    /// Measure an anchor beside Lexum with the same load and faults
    /// (`etcd`: needs etcd installed, see `deploy/setup.sh --bench`):
    /// throughput, one write at a time beside `--background` writes a second
    /// (`--reactions` of them a side), and failover.
    #[arg(long)]
    compare: Option<String>,
    /// Bytes per written value with `--compare` (a string field for Lexum).
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Background mutations per second while reaction latency is sampled.
    #[arg(long, default_value_t = 1000)]
    background: u64,
    /// Client counts for linearizable reads (`Read` of one domain on the
    /// leader), comma-separated; none by default.
    #[arg(long, value_delimiter = ',')]
    reads: Vec<usize>,
    /// Seconds of load (64 clients) with no fault, printing the Raft term
    /// before and after: a leader change under load shows as a new term.
    #[arg(long, default_value_t = 0)]
    steady: u64,
}

/// One domain of the fleet: a goal repaired by one effect.
fn fleet_domain(i: usize) -> String {
    format!(
        "domain Fleet{i} {{\n  state {{\n    want: int = 0\n    have: int = 0\n  }}\n  goal Caught {{ have == want }}\n  \
         transition Catch for Caught {{\n    slice call {{ emit Bench.Apply(value: want) -> got }}\n    \
         slice record {{ have = got }}\n  }}\n}}\n"
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let counts = args.clients.iter().chain(&args.reads);
    if args.seconds == 0 || args.seconds > 3600 || counts.into_iter().any(|c| *c == 0 || *c > 1024) {
        bail!("--seconds must be 1..=3600 and every client count 1..=1024");
    }
    if args.kinds > 100_000 {
        bail!("--kinds must be at most 100000");
    }
    if args.fleet > 1024 {
        bail!("--fleet must be at most 1024 (one mutation writes them all)");
    }
    let fleet: String = (0..args.fleet).map(fleet_domain).collect();
    let program = PROGRAM.replace("{FLEET}", &fleet);
    // lexumd's own Raft timeouts: the failover measured is the shipped one.
    let options = ClusterOptions { raft_timeouts: None, ..ClusterOptions::default() };
    let mut cluster = bench_cluster(options, &program).await?;
    println!("cluster: 3 lexumd on loopback ({}), fsync on every append", cluster.path().display());
    if args.steady > 0 {
        return steady(&cluster, args.steady).await;
    }
    if let Some(anchor) = args.compare.as_deref() {
        if anchor != "etcd" {
            bail!("--compare knows only `etcd`");
        }
        return compare_with_etcd(&args, &mut cluster).await;
    }

    for &clients in &args.clients {
        let addr = leader_addr(&cluster).await?;
        let sample = throughput(&addr, clients, Duration::from_secs(args.seconds)).await?;
        print_sample("mutations", clients, args.seconds, &sample);
    }

    for &clients in &args.reads {
        let addr = leader_addr(&cluster).await?;
        let mut readers = Vec::with_capacity(clients);
        for _ in 0..clients {
            readers.push(LexumReader { client: connect(&addr).await? });
        }
        let (sample, _) = drive(readers, Duration::from_secs(args.seconds)).await?;
        print_sample("linearizable reads", clients, args.seconds, &sample);
    }

    let syncs_before = histograms::Histogram::of(&cluster, histograms::WAL_SYNCS).await;
    let applies_before = histograms::Histogram::of(&cluster, histograms::APPLIES).await;
    let meter = hiccups::Meter::start();
    let reaction = reaction_latency(&cluster, args.reactions, args.background).await?;
    let hiccups = meter.stop();
    let syncs = histograms::Histogram::of(&cluster, histograms::WAL_SYNCS).await.since(&syncs_before);
    let applies = histograms::Histogram::of(&cluster, histograms::APPLIES).await.since(&applies_before);
    println!(
        "reaction (mutation to worker task), {} samples: p50 {:.2} ms   p99 {:.2} ms   (background {:.0} mutations/s; the same mutations acknowledged: p50 {:.2} ms   p99 {:.2} ms)",
        reaction.tasks.len(),
        percentile_ms(&reaction.tasks, 0.50),
        percentile_ms(&reaction.tasks, 0.99),
        reaction.background,
        percentile_ms(&reaction.acks, 0.50),
        percentile_ms(&reaction.acks, 0.99),
    );
    if args.reactions > 0 {
        let slowest = slowest_ms(&reaction.tasks, 8);
        println!("  slowest reactions, ms: {slowest:?}; {}", syncs.sync_summary());
        println!("  {}", hiccups.summary());
        println!(
            "  entries applied on the three nodes meanwhile: {:.0}, {:.0} over 1 ms, {:.0} over 5 ms",
            applies.total(),
            applies.over(0.001),
            applies.over(0.005)
        );
        let stalled = slowest_stalls(&reaction, &hiccups, 8);
        println!("  of which the timer was stalled over 1 ms late, ms: {stalled:?}");
    }

    if args.fleet > 0 {
        let repaired = fleet_repair(&cluster, args.fleet).await?;
        println!(
            "fleet repair, {} goals violated by one mutation: all repaired in {:.0} ms ({:.0} repairs/s)",
            args.fleet,
            repaired.as_secs_f64() * 1e3,
            args.fleet as f64 / repaired.as_secs_f64()
        );
    }

    let mut failovers = Vec::new();
    for _ in 0..args.failovers {
        failovers.push(failover(&mut cluster).await?);
    }
    println!(
        "failover (kill -9 leader to first acknowledged write), {} samples: {}",
        failovers.len(),
        failovers.iter().map(|d| format!("{:.0} ms", d.as_secs_f64() * 1e3)).collect::<Vec<_>>().join(", ")
    );
    if args.kinds > 0 {
        drop(cluster);
        kinds_at_scale(&program, args.kinds).await?;
    }
    Ok(())
}

/// Three nodes with `options`, running `program`.
async fn bench_cluster(options: ClusterOptions, program: &str) -> anyhow::Result<LocalCluster> {
    let cluster = LocalCluster::start(options).await?;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
    let mut client = cluster.client(leader).await?;
    client
        .submit_program(pb::SubmitProgramRequest {
            program: Some(pb::submit_program_request::Program::Source(program.to_string())),
            file_name: "bench.lxm".into(),
        })
        .await
        .context("submitting the benchmark program")?;
    Ok(cluster)
}

/// Peak and current resident memory of a process, in MiB (`VmHWM`, `VmRSS`).
fn memory_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse::<f64>().ok()
    };
    Some((kib("VmHWM:")? / 1024.0, kib("VmRSS:")? / 1024.0))
}

/// Creates `n` instances of the kind `Scale` (ten goals each) through the
/// API of a fresh cluster, then measures memory, a mutation's latency, a
/// filtered page of goals and the catch-up of a fresh node. That cluster
/// snapshots every 100 entries and keeps no log behind a snapshot, so the
/// fresh node catches up from a snapshot, not by replaying the log.
async fn kinds_at_scale(program: &str, n: usize) -> anyhow::Result<()> {
    let options = ClusterOptions { raft_timeouts: None, snapshot_logs: 100, keep_logs: 0, ..ClusterOptions::default() };
    let mut cluster = bench_cluster(options, program).await?;
    let cluster = &mut cluster;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
    let mut client = cluster.client(leader).await?;
    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let instances = chunk.iter().map(|i| pb::InstanceSpec { key: format!("s{i}"), values: vec![] }).collect();
        let request = pb::CreateInstancesRequest { kind: "Scale".into(), instances, ..Default::default() };
        client.create_instances(request).await.context("creating instances")?;
    }
    println!("kinds: {n} instances x 10 goals created in {:.2} s (requests of 1,000)", started.elapsed().as_secs_f64());
    for (id, _) in cluster.nodes.iter() {
        if let Some((peak, now)) = cluster.pid(*id).and_then(memory_mib) {
            println!("kinds: node {id} peak RSS {peak:.0} MiB (now {now:.0} MiB)");
        }
    }
    let mut latencies = Vec::new();
    for v in 0..200 {
        let write = pb::FieldWrite {
            domain: format!("Scale[s{}]", n / 2),
            field: "x".into(),
            value: Some(int_value(if v % 2 == 0 { 2 } else { 9 })),
        };
        let one = Instant::now();
        client.mutate(pb::MutateRequest { writes: vec![write], ..Default::default() }).await?;
        latencies.push(one.elapsed());
    }
    println!(
        "kinds: one client writing an instance among {} goals: p50 {:.2} ms   p99 {:.2} ms",
        n * 10,
        percentile_ms(&latencies, 0.50),
        percentile_ms(&latencies, 0.99)
    );
    let request = pb::ListGoalsRequest { domain: "Scale".into(), status: "VIOLATED".into(), limit: 100, offset: 0 };
    let listed = Instant::now();
    let page = client.list_goals(request).await?.into_inner();
    println!(
        "kinds: goals Scale --status VIOLATED --limit 100: {} of {} in {:.1} ms",
        page.goals.len(),
        page.total,
        listed.elapsed().as_secs_f64() * 1e3
    );
    let applied = cluster.node_infos().await.get(&leader).map(|i| i.applied_index).context("leader's index")?;
    let joined = Instant::now();
    let addr = cluster.start_joiner(4)?;
    client.add_member(pb::AddMemberRequest { id: 4, address: addr }).await.context("adding node 4")?;
    cluster.wait_for_applied(applied, Duration::from_secs(120)).await?;
    println!(
        "kinds: a fresh fourth node caught up with {n} instances from a snapshot in {:.2} s",
        joined.elapsed().as_secs_f64()
    );
    client.remove_member(pb::RemoveMemberRequest { id: 4 }).await.context("removing node 4")?;
    cluster.kill(4)?;
    let (small, _) = engine_cost(10)?;
    let (large, snapshot) = engine_cost(n)?;
    println!(
        "kinds: engine cost per mutation: {:.2} us with 100 goals, {:.2} us with {} goals (ratio {:.2})",
        small,
        large,
        n * 10,
        large / small
    );
    println!("kinds: snapshot of {n} instances: {:.1} MB", snapshot as f64 / 1e6);
    Ok(())
}

/// The engine alone (no Raft, no I/O) with `n` instances of `Scale`: the
/// mean time to apply a mutation that flips one instance's goals, and the
/// size of its snapshot.
fn engine_cost(n: usize) -> anyhow::Result<(f64, usize)> {
    use lexum_engine::{Engine, EngineConfig, Entry, FieldWrite, NewInstance};
    let source = PROGRAM.replace("{FLEET}", "");
    let compiled = lexum_compiler::compile("bench.lxm", &source, &lexum_compiler::CompileOptions::default());
    let program = compiled.program.context("the bench program compiles")?;
    let mut engine = Engine::new(EngineConfig::default());
    let mut index = 1;
    engine.apply(index, &Entry::SubmitProgram { bytes: program.encode() }).outcome?;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        index += 1;
        let instances = chunk.iter().map(|i| NewInstance { key: format!("s{i}"), values: vec![] }).collect();
        let entry =
            Entry::CreateInstances { kind: "Scale".into(), instances, upsert: false, principal: "bench".into() };
        engine.apply(index, &entry).outcome?;
    }
    let rounds = 20_000;
    let domain = format!("Scale[s{}]", n / 2);
    let started = Instant::now();
    for r in 0..rounds {
        index += 1;
        let value = lexum_compiler::program::Value::Int(if r % 2 == 0 { 2 } else { 9 });
        let write = FieldWrite { domain: domain.clone(), field: "x".into(), value };
        engine.apply(index, &Entry::mutation(vec![write], "bench"));
    }
    let micros = started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    Ok((micros, engine.snapshot().len()))
}

/// `bench --compare etcd`: both clusters up at once, each client count
/// alternating between them in slices, then the leader kills of each.
async fn compare_with_etcd(args: &Args, cluster: &mut LocalCluster) -> anyhow::Result<()> {
    if args.value_size == 0 || args.value_size > 1 << 20 {
        bail!("--value-size must be 1..=1048576");
    }
    let payload = Payload::Bytes(args.value_size);
    let mut etcd_cluster = compare::EtcdSide::start(args.value_size).await?;
    let (mut lexum, mut etcd) = (compare::Side::default(), compare::Side::default());
    for &clients in &args.clients {
        let addr = leader_addr(cluster).await?;
        let mut writers = Vec::with_capacity(clients);
        for c in 0..clients {
            writers.push(LexumWriter { client: connect(&addr).await?, payload, base: (c as i64) << 32 });
        }
        let etcd_writers = etcd_cluster.writers(clients).await?;
        let (lexum_sample, etcd_sample) =
            compare::interleaved(writers, etcd_writers, Duration::from_secs(args.seconds), compare::SLICE).await?;
        for (name, side, sample) in
            [("lexum mutations", &mut lexum, lexum_sample), ("etcd puts", &mut etcd, etcd_sample)]
        {
            side.record(clients, &sample, args.seconds);
            println!(
                "{name}, {clients:>4} clients: {:>8.0} /s ({} ok, {} failed)",
                sample.ok as f64 / args.seconds as f64,
                sample.ok,
                sample.failed
            );
        }
    }
    if args.reactions > 0 {
        let (lexum_probes, etcd_probes) = probes_under_load(args, cluster, &etcd_cluster).await?;
        lexum.under_load = Some(lexum_probes);
        etcd.under_load = Some(etcd_probes);
    }
    for _ in 0..args.failovers {
        lexum.failovers.push(failover(cluster).await?);
    }
    etcd.failovers = etcd_cluster.failovers(args.failovers).await?;
    compare::print_table(&lexum, &etcd, args.value_size);
    Ok(())
}

/// `--reactions` probes on each side with `--background` writes a second
/// of `--value-size` bytes beside them, in eight stretches that alternate
/// between the sides (etcd first in even ones): on Lexum the reaction
/// sample's violating mutation and its task, on etcd a put.
async fn probes_under_load(
    args: &Args,
    cluster: &LocalCluster,
    etcd: &compare::EtcdSide,
) -> anyhow::Result<(under_load::UnderLoad, under_load::UnderLoad)> {
    const STRETCHES: u64 = 8;
    let payload = Payload::Bytes(args.value_size);
    let (mut reaction, stop_worker) = ReactionProbe::start(cluster).await?;
    let mut etcd_probe = etcd.probe().await?;
    let (mut lexum_side, mut etcd_side) = (under_load::UnderLoad::default(), under_load::UnderLoad::default());
    let total = args.reactions as u64;
    let result: anyhow::Result<()> = async {
        let mut first = 1;
        for stretch in 0..STRETCHES {
            let per_stretch = total / STRETCHES + u64::from(stretch < total % STRETCHES);
            for lexum_turn in [stretch % 2 == 1, stretch % 2 == 0] {
                if lexum_turn {
                    let writers = background_writers(&leader_addr(cluster).await?, payload).await?;
                    lexum_side.run(writers, args.background, &mut reaction, first, per_stretch).await?;
                } else {
                    let writers = etcd.writers(8).await?;
                    etcd_side.run(writers, args.background, &mut etcd_probe, first, per_stretch).await?;
                }
            }
            first += per_stretch;
        }
        Ok(())
    }
    .await;
    let _ = stop_worker.send(true);
    result.map(|()| (lexum_side, etcd_side))
}

/// Load without faults for `seconds`: the leader's term before and after
/// (equal when no election happened), and the throughput per minute.
async fn steady(cluster: &LocalCluster, seconds: u64) -> anyhow::Result<()> {
    if seconds > 24 * 3600 {
        bail!("--steady must be at most a day");
    }
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
    let term = |infos: &std::collections::BTreeMap<u64, pb::NodeInfoResponse>| infos.get(&leader).map(|i| i.term);
    let before = term(&cluster.node_infos().await).context("the leader's term")?;
    let addr = cluster.nodes.get(&leader).map(|n| n.addr.clone()).context("leader address")?;
    println!("steady: 64 clients for {seconds} s, leader {leader}, term {before}");
    let mut left = seconds;
    while left > 0 {
        let chunk = left.min(60);
        let sample = throughput(&addr, 64, Duration::from_secs(chunk)).await?;
        println!(
            "steady: {:>8.0} /s   p99 {:>7.2} ms   ({} failed)",
            sample.ok as f64 / chunk as f64,
            percentile_ms(&sample.latencies, 0.99),
            sample.failed
        );
        left -= chunk;
    }
    let infos = cluster.node_infos().await;
    let after = term(&infos).context("the leader's term after the run")?;
    let still = infos.get(&leader).is_some_and(|i| i.leader == leader);
    println!("steady: term {before} -> {after}; leader {leader} {}", if still { "kept" } else { "lost" });
    if after != before || !still {
        bail!("the leader changed under load without a fault");
    }
    Ok(())
}

/// What each benchmark write carries.
#[derive(Clone, Copy)]
enum Payload {
    /// An int (`Load.n`).
    Int,
    /// A string of this many bytes (`Load.s`).
    Bytes(usize),
}

fn write_payload(payload: Payload, value: i64) -> pb::MutateRequest {
    match payload {
        Payload::Int => write(value),
        Payload::Bytes(size) => {
            let mut text = format!("{value:020}");
            text.extend(std::iter::repeat_n('v', size.saturating_sub(text.len())));
            text.truncate(size);
            let value = pb::Value { kind: Some(pb::value::Kind::Str(text)) };
            pb::MutateRequest {
                writes: vec![pb::FieldWrite { domain: "Load".into(), field: "s".into(), value: Some(value) }],
                ..Default::default()
            }
        }
    }
}

/// Acknowledged mutations and their latencies.
#[derive(Default)]
pub(crate) struct Sample {
    /// Acknowledged writes.
    pub(crate) ok: usize,
    /// Refused or failed writes.
    pub(crate) failed: usize,
    /// Latency of each acknowledged write.
    pub(crate) latencies: Vec<Duration>,
}

impl Sample {
    /// Adds `other`'s counts and latencies to these.
    pub(crate) fn add(&mut self, other: Sample) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.latencies.extend(other.latencies);
    }
}

async fn connect(addr: &str) -> anyhow::Result<LexumClient<Channel>> {
    lexum_jepsen::cluster::connect(addr).await
}

fn write(value: i64) -> pb::MutateRequest {
    pb::MutateRequest {
        writes: vec![pb::FieldWrite { domain: "Load".into(), field: "n".into(), value: Some(int_value(value)) }],
        ..Default::default()
    }
}

/// `clients` connections write as fast as they are answered for `period`.
async fn throughput(addr: &str, clients: usize, period: Duration) -> anyhow::Result<Sample> {
    throughput_of(addr, clients, period, Payload::Int).await
}

/// [`throughput`] with the given payload.
async fn throughput_of(addr: &str, clients: usize, period: Duration, payload: Payload) -> anyhow::Result<Sample> {
    let mut writers = Vec::with_capacity(clients);
    for c in 0..clients {
        writers.push(LexumWriter { client: connect(addr).await?, payload, base: (c as i64) << 32 });
    }
    Ok(drive(writers, period).await?.0)
}

/// One client's connection, writing one value after another.
pub(crate) trait Writer: Send + 'static {
    /// Writes the `n`th value; true when it was acknowledged.
    fn write(&mut self, n: u64) -> impl std::future::Future<Output = bool> + Send;
}

/// A Lexum client writing `Load`.
struct LexumWriter {
    client: LexumClient<Channel>,
    payload: Payload,
    base: i64,
}

impl Writer for LexumWriter {
    async fn write(&mut self, n: u64) -> bool {
        self.client.mutate(write_payload(self.payload, self.base + n as i64)).await.is_ok()
    }
}

/// A Lexum client reading `Load` (the leader confirms its leadership with
/// a quorum first): [`drive`] times a read as it would a write.
struct LexumReader {
    client: LexumClient<Channel>,
}

impl Writer for LexumReader {
    async fn write(&mut self, _: u64) -> bool {
        self.client.read(pb::ReadRequest { domain: "Load".into(), ..Default::default() }).await.is_ok()
    }
}

/// Each writer writes as fast as it is answered for `period`, on its own
/// task; their samples summed, and the writers handed back.
pub(crate) async fn drive<W: Writer>(writers: Vec<W>, period: Duration) -> anyhow::Result<(Sample, Vec<W>)> {
    let stop = Instant::now() + period;
    let tasks: Vec<_> = writers
        .into_iter()
        .map(|mut writer| {
            tokio::spawn(async move {
                let mut sample = Sample { ok: 0, failed: 0, latencies: Vec::new() };
                let mut n = 0;
                while Instant::now() < stop {
                    n += 1;
                    let started = Instant::now();
                    if writer.write(n).await {
                        sample.ok += 1;
                        sample.latencies.push(started.elapsed());
                    } else {
                        sample.failed += 1;
                    }
                }
                (sample, writer)
            })
        })
        .collect();
    let mut total = Sample { ok: 0, failed: 0, latencies: Vec::new() };
    let mut writers = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (sample, writer) = task.await?;
        total.add(sample);
        writers.push(writer);
    }
    Ok((total, writers))
}

/// Starts a worker that answers every `Bench.Apply` at once with its
/// `value`, taking up to `concurrency` tasks; send `true` to stop it.
fn start_echo_worker(
    cluster: &LocalCluster,
    id: &str,
    concurrency: u32,
) -> (Arc<Mutex<WorkerLog>>, tokio::sync::watch::Sender<bool>) {
    let endpoints: Vec<String> = cluster.nodes.values().map(|n| n.addr.clone()).collect();
    let log = Arc::new(Mutex::new(WorkerLog::default()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let handler: lexum_jepsen::worker::Handler = Arc::new(|task| Ok(int_arg(task, "value").map(int_value)));
    let worker =
        TestWorker { id: id.into(), effects: vec!["Bench.Apply".into()], delay: Duration::ZERO, handler, concurrency };
    tokio::spawn(worker.run(endpoints, log.clone(), stop_rx, Duration::from_secs(600)));
    (log, stop_tx)
}

/// Sets `want` of every fleet domain in one mutation and times how long
/// until every goal holds again (a worker answers each effect at once).
async fn fleet_repair(cluster: &LocalCluster, size: usize) -> anyhow::Result<Duration> {
    let (_log, stop_tx) = start_echo_worker(cluster, "fleet-worker", 1024);
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
    let mut client = cluster.client(leader).await?;
    // Let the worker register before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let writes = (0..size)
        .map(|i| pb::FieldWrite { domain: format!("Fleet{i}"), field: "want".into(), value: Some(int_value(1)) })
        .collect();
    // The engine's own events tell when each goal holds again: no polling.
    let mut events = client.watch(pb::WatchRequest { from_index: 0 }).await.context("watch")?.into_inner();
    let started = Instant::now();
    client.mutate(pb::MutateRequest { writes, ..Default::default() }).await.context("fleet mutation")?;
    let deadline = started + Duration::from_secs(120);
    let mut repaired = std::collections::BTreeSet::new();
    while repaired.len() < size {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = match tokio::time::timeout(left, events.message()).await {
            Ok(Ok(Some(event))) => event,
            Ok(Ok(None)) | Ok(Err(_)) => bail!("the watch ended with {} of {size} repaired", repaired.len()),
            Err(_) => bail!("{} fleet goals still unrepaired after 120 s", size - repaired.len()),
        };
        if event.kind == "goal_status" && event.domain.starts_with("Fleet") && event.status == "SATISFIED" {
            repaired.insert(event.domain);
        }
    }
    let elapsed = started.elapsed();
    let _ = stop_tx.send(true);
    Ok(elapsed)
}

/// A violating mutation (`React.want = n`) and the task it causes: the
/// probe of the reaction sample.
struct ReactionProbe {
    client: LexumClient<Channel>,
    log: Arc<Mutex<WorkerLog>>,
}

impl ReactionProbe {
    /// A probe through the current leader, with a worker answering its
    /// tasks at once; send `true` on the second value to stop the worker.
    async fn start(cluster: &LocalCluster) -> anyhow::Result<(ReactionProbe, tokio::sync::watch::Sender<bool>)> {
        let (log, stop) = start_echo_worker(cluster, "bench-worker", 4);
        let client = connect(&leader_addr(cluster).await?).await?;
        Ok((ReactionProbe { client, log }, stop))
    }
}

impl under_load::Probe for ReactionProbe {
    async fn probe(&mut self, n: u64) -> anyhow::Result<under_load::Probed> {
        let seen = self.log.lock().map(|l| l.tasks.len()).unwrap_or(0);
        let started = Instant::now();
        let request = pb::MutateRequest {
            writes: vec![pb::FieldWrite {
                domain: "React".into(),
                field: "want".into(),
                value: Some(int_value(n as i64)),
            }],
            ..Default::default()
        };
        self.client.mutate(request).await.context("reaction mutation")?;
        let ack = started.elapsed();
        let deadline = started + Duration::from_secs(10);
        // Polled, but timed by when the worker logged the task's arrival.
        let arrived = loop {
            if let Some(at) = self.log.lock().ok().and_then(|l| l.arrived.get(seen).copied()) {
                break at;
            }
            if Instant::now() > deadline {
                bail!("the worker got no task within 10 s of mutation {n}");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        // Let the repair finish (result acknowledged, record slice run)
        // before the next sample, so no sample waits behind the last one.
        while self.log.lock().map(|l| l.acks.len() < l.tasks.len()).unwrap_or(false) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(under_load::Probed { ack, task: Some(arrived.saturating_duration_since(started)) })
    }
}

/// Eight connections writing `payload` to `Load`, for the background of a
/// sample.
async fn background_writers(addr: &str, payload: Payload) -> anyhow::Result<Vec<LexumWriter>> {
    let mut writers = Vec::with_capacity(8);
    for c in 0..8 {
        writers.push(LexumWriter { client: connect(addr).await?, payload, base: (c as i64) << 40 });
    }
    Ok(writers)
}

/// Sets `React.want` and times how long the worker takes to get the task,
/// while `background` other mutations a second are written (`Load.n`, 8
/// connections).
async fn reaction_latency(
    cluster: &LocalCluster,
    samples: usize,
    background: u64,
) -> anyhow::Result<under_load::UnderLoad> {
    let (mut probe, stop_worker) = ReactionProbe::start(cluster).await?;
    let writers = background_writers(&leader_addr(cluster).await?, Payload::Int).await?;
    let mut sample = under_load::UnderLoad::default();
    let result = sample.run(writers, background, &mut probe, 1, samples as u64).await;
    let _ = stop_worker.send(true);
    result.map(|()| sample)
}

/// The address of the current leader (waiting up to 30 s for one).
async fn leader_addr(cluster: &LocalCluster) -> anyhow::Result<String> {
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
    cluster.nodes.get(&leader).map(|n| n.addr.clone()).context("leader address")
}

/// One line of a throughput sample: `what` by `clients` clients over
/// `seconds`.
fn print_sample(what: &str, clients: usize, seconds: u64, sample: &Sample) {
    println!(
        "{what}, {clients:>4} clients: {:>8.0} /s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} ok, {} failed)",
        sample.ok as f64 / seconds as f64,
        percentile_ms(&sample.latencies, 0.50),
        percentile_ms(&sample.latencies, 0.99),
        sample.ok,
        sample.failed
    );
}

/// The `count` largest of `samples` in milliseconds, largest first, to a
/// tenth of a millisecond.
fn slowest_ms(samples: &[Duration], count: usize) -> Vec<f64> {
    let mut ms: Vec<f64> = samples.iter().copied().map(tenths_of_ms).collect();
    ms.sort_by(|a, b| b.total_cmp(a));
    ms.truncate(count);
    ms
}

/// For the `count` slowest probes (slowest first), how long the stall meter
/// was stalled while each one ran, in milliseconds to a tenth.
fn slowest_stalls(sample: &under_load::UnderLoad, hiccups: &hiccups::Hiccups, count: usize) -> Vec<f64> {
    let mut order: Vec<usize> = (0..sample.tasks.len().min(sample.started.len())).collect();
    order.sort_by(|a, b| sample.tasks[*b].cmp(&sample.tasks[*a]));
    order
        .into_iter()
        .take(count)
        .map(|i| {
            let from = sample.started[i];
            tenths_of_ms(hiccups.stalled_during(from, from + sample.tasks[i]))
        })
        .collect()
}

/// `d` in milliseconds, rounded to a tenth.
fn tenths_of_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// Kills the leader, restarts it, and returns the time to the first write
/// acknowledged by any other node. A sample counts only when every member
/// agreed on the leader before the kill and the term moved after it (a
/// leader that changed just before the kill would time a follower's death).
async fn failover(cluster: &mut LocalCluster) -> anyhow::Result<Duration> {
    for _ in 0..5 {
        let (old, term) = settled_leader(cluster).await?;
        let elapsed = failover_once(cluster, old).await?;
        let moved = cluster.node_infos().await.values().any(|i| i.term > term && i.role == "leader");
        if moved {
            return Ok(elapsed);
        }
    }
    bail!("five kills in a row did not hit the leader")
}

/// A leader every live member names, with its term, once that has held for
/// half a second.
async fn settled_leader(cluster: &LocalCluster) -> anyhow::Result<(u64, u64)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut previous = None;
    while Instant::now() < deadline {
        let infos = cluster.node_infos().await;
        let leaders: std::collections::BTreeSet<(u64, u64)> = infos.values().map(|i| (i.leader, i.term)).collect();
        let agreed = infos.len() == cluster.nodes.len() && leaders.len() == 1;
        let current = leaders.into_iter().next().filter(|(leader, _)| agreed && *leader != 0);
        if current.is_some() && current == previous {
            return current.context("a leader");
        }
        previous = current;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("the members did not agree on a leader within 30 s")
}

/// One kill of `old`: the time to the first acknowledged write elsewhere.
async fn failover_once(cluster: &mut LocalCluster, old: u64) -> anyhow::Result<Duration> {
    let others: Vec<String> = cluster.nodes.values().filter(|n| n.id != old).map(|n| n.addr.clone()).collect();
    let mut clients: Vec<Option<LexumClient<Channel>>> = vec![None; others.len()];
    let killed = Instant::now();
    cluster.kill(old)?;
    let deadline = killed + Duration::from_secs(30);
    let elapsed = 'outer: loop {
        for (addr, slot) in others.iter().zip(clients.iter_mut()) {
            if slot.is_none() {
                *slot = connect(addr).await.ok();
            }
            let Some(client) = slot.as_mut() else { continue };
            match tokio::time::timeout(Duration::from_millis(500), client.mutate(write(-1))).await {
                Ok(Ok(_)) => break 'outer killed.elapsed(),
                Ok(Err(status)) if status.code() == tonic::Code::FailedPrecondition => {}
                _ => *slot = None,
            }
        }
        if Instant::now() > deadline {
            bail!("no write acknowledged within 30 s of killing the leader");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    cluster.restart(old)?;
    // The restarted node rejoins before the next sample starts.
    let infos_deadline = Instant::now() + Duration::from_secs(30);
    while cluster.node_infos().await.len() < cluster.nodes.len() && Instant::now() < infos_deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.wait_for_leader(Duration::from_secs(30)).await?;
    Ok(elapsed)
}

pub(crate) fn percentile_ms(latencies: &[Duration], q: f64) -> f64 {
    if latencies.is_empty() {
        return f64::NAN;
    }
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let rank = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1e3
}
