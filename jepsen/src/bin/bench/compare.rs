//! `bench --compare etcd`: the same load and the same fault against Lexum
//! and a three-member etcd on loopback, one after the other in one run,
//! printed as one table with the ratios (Lexum / etcd).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use lexum_jepsen::etcd::{EtcdClient, EtcdCluster};

use crate::{drive, percentile_ms, Sample, Writer};

/// One side's numbers: per client count the rate and latencies, and the
/// failover samples.
#[derive(Default)]
pub struct Side {
    /// `(clients, writes/s, p50 ms, p99 ms)`.
    pub rates: Vec<(usize, f64, f64, f64)>,
    /// Kill -9 of the leader to the first acknowledged write.
    pub failovers: Vec<Duration>,
}

impl Side {
    /// Records one throughput sample of `seconds`.
    pub fn record(&mut self, clients: usize, sample: &Sample, seconds: u64) {
        let rate = sample.ok as f64 / seconds as f64;
        self.rates.push((
            clients,
            rate,
            percentile_ms(&sample.latencies, 0.50),
            percentile_ms(&sample.latencies, 0.99),
        ));
    }
}

/// Runs the etcd side: a fresh three-member cluster, each client count for
/// `seconds` with `value_size`-byte values, then `failovers` leader kills.
pub async fn etcd_side(clients: &[usize], seconds: u64, failovers: usize, value_size: usize) -> anyhow::Result<Side> {
    let mut cluster = EtcdCluster::start().await?;
    println!("etcd: 3 members on loopback ({}), its defaults (fsync on)", cluster.log_dir().display());
    let mut side = Side::default();
    let value = vec![b'v'; value_size];
    for &n in clients {
        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        let addr = cluster.client_addrs()[leader].clone();
        let sample = throughput(&addr, n, Duration::from_secs(seconds), &value).await?;
        side.record(n, &sample, seconds);
        println!(
            "etcd puts, {n:>4} clients: {:>8.0} /s ({} ok, {} failed)",
            sample.ok as f64 / seconds as f64,
            sample.ok,
            sample.failed
        );
    }
    for _ in 0..failovers {
        side.failovers.push(failover(&mut cluster, &value).await?);
    }
    Ok(side)
}

/// `clients` connections put as fast as they are answered for `period`.
async fn throughput(addr: &str, clients: usize, period: Duration, value: &[u8]) -> anyhow::Result<Sample> {
    let mut writers = Vec::with_capacity(clients);
    for c in 0..clients {
        let client = EtcdClient::connect(addr).await?;
        writers.push(EtcdWriter { client, key: format!("k{c}").into_bytes(), value: value.to_vec() });
    }
    drive(writers, period).await
}

/// An etcd client putting one key.
struct EtcdWriter {
    client: EtcdClient,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl Writer for EtcdWriter {
    async fn write(&mut self, _n: u64) -> bool {
        self.client.put(&self.key, &self.value).await.is_ok()
    }
}

/// Kills the leader, times the first put a survivor acknowledges, then
/// restarts the killed member and waits for a leader again. A sample counts
/// only when the acknowledging member is in a newer term than the killed
/// leader was (the kill hit the leader).
async fn failover(cluster: &mut EtcdCluster, value: &[u8]) -> anyhow::Result<Duration> {
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let old = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        let mut leader = EtcdClient::connect(&cluster.client_addrs()[old]).await?;
        let term = leader.status().await?.raft_term;
        let (elapsed, acked_term) = failover_once(cluster, old, value).await?;
        if acked_term > term {
            return Ok(elapsed);
        }
    }
    bail!("five kills in a row did not hit etcd's leader")
}

/// One kill of member `old`: the time to the first acknowledged put and
/// the term it was acknowledged in.
async fn failover_once(cluster: &mut EtcdCluster, old: usize, value: &[u8]) -> anyhow::Result<(Duration, u64)> {
    let addrs = cluster.client_addrs();
    let others: Vec<&String> = addrs.iter().enumerate().filter(|(i, _)| *i != old).map(|(_, a)| a).collect();
    let mut clients: Vec<Option<EtcdClient>> = vec![None; others.len()];
    let killed = Instant::now();
    cluster.kill(old).context("killing the etcd leader")?;
    let deadline = killed + Duration::from_secs(30);
    let (elapsed, term) = 'outer: loop {
        for (addr, slot) in others.iter().zip(clients.iter_mut()) {
            if slot.is_none() {
                *slot = EtcdClient::connect(addr).await.ok();
            }
            let Some(client) = slot.as_mut() else { continue };
            match tokio::time::timeout(Duration::from_millis(500), client.put(b"failover", value)).await {
                Ok(Ok(put)) => break 'outer (killed.elapsed(), put.header.map_or(0, |h| h.raft_term)),
                Ok(Err(_)) => {}
                Err(_) => *slot = None,
            }
        }
        if Instant::now() > deadline {
            bail!("etcd acknowledged no write within 30 s of killing its leader");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    cluster.restart(old)?;
    let rejoined = Instant::now() + Duration::from_secs(30);
    while Instant::now() < rejoined {
        if let Ok(mut c) = EtcdClient::connect(&addrs[old]).await {
            if tokio::time::timeout(Duration::from_millis(500), c.status()).await.is_ok_and(|s| s.is_ok()) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.wait_for_leader(Duration::from_secs(30)).await?;
    Ok((elapsed, term))
}

fn median_ms(samples: &[Duration]) -> f64 {
    percentile_ms(samples, 0.5)
}

fn worst_ms(samples: &[Duration]) -> f64 {
    samples.iter().max().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

/// Prints both sides and the ratios.
pub fn print_table(lexum: &Side, etcd: &Side, value_size: usize) {
    println!();
    println!("compare: {value_size}-byte values, one connection per client, both sides on this machine in this run");
    println!("{:<28} {:>26} {:>26} {:>10}", "", "etcd", "lexum", "lexum/etcd");
    for ((clients, rate, p50, p99), (_, erate, ep50, ep99)) in lexum.rates.iter().zip(&etcd.rates) {
        println!(
            "{:<28} {:>26} {:>26} {:>9.2}x",
            format!("{clients} clients"),
            format!("{erate:.0}/s p50 {ep50:.2} p99 {ep99:.2} ms"),
            format!("{rate:.0}/s p50 {p50:.2} p99 {p99:.2} ms"),
            rate / erate
        );
    }
    let show = |s: &[Duration]| s.iter().map(|d| format!("{:.0}", d.as_secs_f64() * 1e3)).collect::<Vec<_>>().join(" ");
    println!(
        "{:<28} {:>26} {:>26} {:>9.2}x",
        format!("failover median ({} kills)", lexum.failovers.len()),
        format!("{:.0} ms", median_ms(&etcd.failovers)),
        format!("{:.0} ms", median_ms(&lexum.failovers)),
        median_ms(&lexum.failovers) / median_ms(&etcd.failovers)
    );
    println!(
        "{:<28} {:>26} {:>26} {:>9.2}x",
        "failover worst",
        format!("{:.0} ms", worst_ms(&etcd.failovers)),
        format!("{:.0} ms", worst_ms(&lexum.failovers)),
        worst_ms(&lexum.failovers) / worst_ms(&etcd.failovers)
    );
    println!("failover samples, ms: etcd [{}]  lexum [{}]", show(&etcd.failovers), show(&lexum.failovers));
}
