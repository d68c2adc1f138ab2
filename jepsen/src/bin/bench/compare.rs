//! `bench --compare etcd`: the same load and the same fault against Lexum
//! and a three-member etcd on loopback in one run, printed as one table
//! with the ratios (Lexum / etcd).
//!
//! Both clusters run at once. Each client count's time is cut into
//! one-second slices that alternate between the two sides (etcd first in
//! even slices, Lexum first in odd ones), so a slow or fast spell of this
//! shared machine falls on both alike instead of on whichever side ran
//! then. The idle side meanwhile only sends its heartbeats.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use lexum_jepsen::etcd::{EtcdClient, EtcdCluster};

use crate::under_load::{Probe, Probed, UnderLoad};
use crate::{drive, percentile_ms, Sample, Writer};

/// One side's numbers: per client count the rate and latencies, and the
/// failover samples.
#[derive(Default)]
pub struct Side {
    /// `(clients, writes/s, p50 ms, p99 ms)`.
    pub rates: Vec<(usize, f64, f64, f64)>,
    /// Kill -9 of the leader to the first acknowledged write.
    pub failovers: Vec<Duration>,
    /// One write at a time beside a background load, when measured.
    pub under_load: Option<UnderLoad>,
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

/// The length of one slice of [`interleaved`] in a comparison.
pub const SLICE: Duration = Duration::from_secs(1);

/// Drives `a` and `b` for `period` each, alternating in slices of `slice`
/// (the last one shorter when `period` is not a whole number of them), and
/// returns each side's samples summed.
pub async fn interleaved<A: Writer, B: Writer>(
    mut a: Vec<A>,
    mut b: Vec<B>,
    period: Duration,
    slice_length: Duration,
) -> anyhow::Result<(Sample, Sample)> {
    let (mut a_total, mut b_total) = (Sample::default(), Sample::default());
    let mut left = period;
    let mut slice = 0u32;
    while !left.is_zero() {
        let length = left.min(slice_length);
        // `b` first in even slices: neither side always follows the other.
        if slice % 2 == 0 {
            b = drive_into(b, length, &mut b_total).await?;
            a = drive_into(a, length, &mut a_total).await?;
        } else {
            a = drive_into(a, length, &mut a_total).await?;
            b = drive_into(b, length, &mut b_total).await?;
        }
        left -= length;
        slice += 1;
    }
    Ok((a_total, b_total))
}

/// [`drive`]s `writers` for `length`, adds their sample to `total` and
/// hands them back.
async fn drive_into<W: Writer>(writers: Vec<W>, length: Duration, total: &mut Sample) -> anyhow::Result<Vec<W>> {
    let (sample, writers) = drive(writers, length).await?;
    total.add(sample);
    Ok(writers)
}

/// The etcd cluster of a comparison and the value its writers put.
pub struct EtcdSide {
    cluster: EtcdCluster,
    value: Vec<u8>,
}

impl EtcdSide {
    /// Starts a fresh three-member etcd whose writers put `value_size` bytes.
    pub async fn start(value_size: usize) -> anyhow::Result<EtcdSide> {
        let cluster = EtcdCluster::start().await?;
        println!("etcd: 3 members on loopback ({}), its defaults (fsync on)", cluster.log_dir().display());
        Ok(EtcdSide { cluster, value: vec![b'v'; value_size] })
    }

    /// `clients` connections to the leader, each putting its own key.
    pub async fn writers(&self, clients: usize) -> anyhow::Result<Vec<EtcdWriter>> {
        let leader = self.cluster.wait_for_leader(Duration::from_secs(30)).await?;
        let addr = self.cluster.client_addrs()[leader].clone();
        let mut writers = Vec::with_capacity(clients);
        for c in 0..clients {
            let client = EtcdClient::connect(&addr).await?;
            writers.push(EtcdWriter { client, key: format!("k{c}").into_bytes(), value: self.value.clone() });
        }
        Ok(writers)
    }

    /// A probe putting its own key through the leader.
    pub async fn probe(&self) -> anyhow::Result<EtcdProbe> {
        let leader = self.cluster.wait_for_leader(Duration::from_secs(30)).await?;
        let client = EtcdClient::connect(&self.cluster.client_addrs()[leader]).await?;
        Ok(EtcdProbe { client, value: self.value.clone() })
    }

    /// `count` leader kills, each timed to the first acknowledged put.
    pub async fn failovers(&mut self, count: usize) -> anyhow::Result<Vec<Duration>> {
        let mut samples = Vec::with_capacity(count);
        for _ in 0..count {
            samples.push(failover(&mut self.cluster, &self.value).await?);
        }
        Ok(samples)
    }
}

/// An etcd client putting one key.
pub struct EtcdWriter {
    client: EtcdClient,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl Writer for EtcdWriter {
    async fn write(&mut self, _n: u64) -> bool {
        self.client.put(&self.key, &self.value).await.is_ok()
    }
}

/// One put of the probe key at a time, timed to its acknowledgement.
pub struct EtcdProbe {
    client: EtcdClient,
    value: Vec<u8>,
}

impl Probe for EtcdProbe {
    async fn probe(&mut self, n: u64) -> anyhow::Result<Probed> {
        let started = Instant::now();
        self.client.put(b"probe", &self.value).await.with_context(|| format!("etcd probe {n}"))?;
        Ok(Probed { ack: started.elapsed(), task: None })
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
    if let (Some(ours), Some(theirs)) = (&lexum.under_load, &etcd.under_load) {
        let p = |s: &[Duration], q| percentile_ms(s, q);
        println!(
            "{:<28} {:>26} {:>26} {:>9.2}x",
            format!("1 write, {:.0}/s beside", (ours.background + theirs.background) / 2.0),
            format!("p50 {:.2} p99 {:.2} ms", p(&theirs.acks, 0.5), p(&theirs.acks, 0.99)),
            format!("p50 {:.2} p99 {:.2} ms", p(&ours.acks, 0.5), p(&ours.acks, 0.99)),
            p(&ours.acks, 0.99) / p(&theirs.acks, 0.99)
        );
        println!(
            "{:<28} {:>26} {:>26}",
            "  its task at the worker",
            "-",
            format!("p50 {:.2} p99 {:.2} ms", p(&ours.tasks, 0.5), p(&ours.tasks, 0.99)),
        );
        println!(
            "  ({} probes a side, {:.0} and {:.0} background writes/s reached; the ratio is of p99)",
            ours.acks.len(),
            theirs.background,
            ours.background
        );
    }
    if lexum.failovers.is_empty() && etcd.failovers.is_empty() {
        return;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer that logs which side wrote, one write a millisecond.
    struct Logged {
        side: char,
        log: Arc<Mutex<Vec<char>>>,
    }

    impl Writer for Logged {
        async fn write(&mut self, _n: u64) -> bool {
            tokio::time::sleep(Duration::from_millis(1)).await;
            self.log.lock().map(|mut l| l.push(self.side)).is_ok()
        }
    }

    #[tokio::test]
    async fn the_sides_alternate_slice_by_slice_and_each_gets_its_period() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let writers = |side| vec![Logged { side, log: log.clone() }];
        let (a, b) = interleaved(writers('a'), writers('b'), Duration::from_millis(100), Duration::from_millis(25))
            .await
            .expect("run");
        let log = log.lock().expect("log").clone();
        let mut runs: Vec<char> = log.clone();
        runs.dedup();
        // Four slices, b a | a b | b a | a b: neither side always goes
        // first, and consecutive slices of one side run back to back.
        assert_eq!(runs.iter().collect::<String>(), "babab", "{log:?}");
        assert_eq!(a.ok, log.iter().filter(|&&s| s == 'a').count());
        assert_eq!(b.ok, log.iter().filter(|&&s| s == 'b').count());
        assert!(a.ok > 20 && b.ok > 20, "each side wrote for about 100 ms: {} and {}", a.ok, b.ok);
        assert_eq!(a.latencies.len(), a.ok);
    }
}
