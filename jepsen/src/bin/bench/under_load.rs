//! One write at a time under a steady background load: the reaction sample
//! on Lexum, and the same probe against the anchor in `--compare`, so the
//! floor this machine sets under load is measured beside Lexum's number.
//!
//! A [`Background`] paces its writers at a fixed total rate; a [`Probe`]
//! makes one timed write, waits for whatever it waits for, and then the
//! probe pauses for [`GAP`] so no sample queues behind the last one.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::Writer;

/// The pause after each probe.
pub const GAP: Duration = Duration::from_millis(20);

/// Writers paced so that together they write `rate` times a second.
pub struct Background {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<u64>>,
    started: Instant,
}

impl Background {
    /// Starts `writers`, each at its share of `rate` (a writer whose share
    /// is zero stays idle).
    pub fn start<W: Writer>(writers: Vec<W>, rate: u64) -> Background {
        let (stop, done) = watch::channel(false);
        let count = writers.len() as u64;
        let tasks = writers
            .into_iter()
            .enumerate()
            .filter_map(|(i, writer)| {
                let share = rate / count.max(1) + u64::from((i as u64) < rate % count.max(1));
                (share > 0).then(|| tokio::spawn(paced(writer, share, done.clone())))
            })
            .collect();
        Background { stop, tasks, started: Instant::now() }
    }

    /// Stops the writers; the rate they reached, in writes a second.
    pub async fn stop(self) -> f64 {
        let _ = self.stop.send(true);
        let mut written = 0u64;
        for task in self.tasks {
            written += task.await.unwrap_or(0);
        }
        written as f64 / self.started.elapsed().as_secs_f64()
    }
}

/// Writes with `writer` `rate` times a second until `stop` changes; how
/// many writes were acknowledged.
async fn paced<W: Writer>(mut writer: W, rate: u64, mut stop: watch::Receiver<bool>) -> u64 {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut done = 0u64;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {
                if writer.write(done).await {
                    done += 1;
                }
            }
        }
    }
    done
}

/// What one probe saw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Probed {
    /// From the write to its acknowledgement.
    pub ack: Duration,
    /// From the write to the task it caused reaching a worker, for a probe
    /// that waits for one.
    pub task: Option<Duration>,
}

/// One timed write and what follows it.
pub trait Probe: Send {
    /// Makes the `n`th probe write (`n` counts from 1 and never repeats).
    fn probe(&mut self, n: u64) -> impl std::future::Future<Output = anyhow::Result<Probed>> + Send;
}

/// The probes of one stretch under load.
#[derive(Debug, Default)]
pub struct UnderLoad {
    /// When each probe started.
    pub started: Vec<Instant>,
    /// Every probe's acknowledgement latency.
    pub acks: Vec<Duration>,
    /// Every probe's task latency (empty for a probe without tasks).
    pub tasks: Vec<Duration>,
    /// Background writes a second reached, averaged over the stretches.
    pub background: f64,
    stretches: u32,
}

impl UnderLoad {
    /// Runs probes `first..first + count` with `background` running at
    /// `rate`, after 300 ms of background alone, and adds them to `self`.
    pub async fn run<W: Writer, P: Probe>(
        &mut self,
        background: Vec<W>,
        rate: u64,
        probe: &mut P,
        first: u64,
        count: u64,
    ) -> anyhow::Result<()> {
        let load = Background::start(background, rate);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut result = Ok(());
        for n in first..first + count {
            let started = Instant::now();
            match probe.probe(n).await {
                Ok(probed) => {
                    self.started.push(started);
                    self.acks.push(probed.ack);
                    self.tasks.extend(probed.task);
                }
                Err(error) => {
                    result = Err(error);
                    break;
                }
            }
            tokio::time::sleep(GAP).await;
        }
        let reached = load.stop().await;
        self.background = (self.background * f64::from(self.stretches) + reached) / f64::from(self.stretches + 1);
        self.stretches += 1;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// Counts its writes.
    struct Counted(Arc<AtomicU64>);

    impl Writer for Counted {
        async fn write(&mut self, _n: u64) -> bool {
            self.0.fetch_add(1, Ordering::Relaxed);
            true
        }
    }

    /// Answers at once and records which probes it made.
    struct Recorded(Vec<u64>);

    impl Probe for Recorded {
        async fn probe(&mut self, n: u64) -> anyhow::Result<Probed> {
            self.0.push(n);
            let task = (n % 2 == 0).then_some(Duration::from_millis(n));
            Ok(Probed { ack: Duration::from_micros(n), task })
        }
    }

    #[tokio::test]
    async fn the_background_writes_at_its_rate_while_the_probes_run_in_order() {
        let written = Arc::new(AtomicU64::new(0));
        let writers = (0..3).map(|_| Counted(written.clone())).collect();
        let mut probe = Recorded(Vec::new());
        let mut stretch = UnderLoad::default();
        stretch.run(writers, 200, &mut probe, 5, 10).await.expect("run");
        assert_eq!(probe.0, (5..15).collect::<Vec<_>>());
        assert_eq!(stretch.acks.len(), 10);
        assert_eq!(stretch.tasks, vec![6, 8, 10, 12, 14].into_iter().map(Duration::from_millis).collect::<Vec<_>>());
        // 300 ms alone, then ten probes and their gaps: at least 0.5 s at
        // 200/s. Timers only ever fire late, so the count is bounded above.
        let count = written.load(Ordering::Relaxed);
        assert!((40..=200).contains(&count), "{count} background writes");
        assert!(stretch.background > 50.0 && stretch.background <= 205.0, "{}", stretch.background);
    }

    #[tokio::test]
    async fn a_zero_rate_leaves_the_writers_idle_and_a_failing_probe_ends_the_stretch() {
        struct Failing;
        impl Probe for Failing {
            async fn probe(&mut self, n: u64) -> anyhow::Result<Probed> {
                anyhow::ensure!(n < 3, "probe {n} failed");
                Ok(Probed { ack: Duration::ZERO, task: None })
            }
        }
        let written = Arc::new(AtomicU64::new(0));
        let mut stretch = UnderLoad::default();
        let error = stretch.run(vec![Counted(written.clone())], 0, &mut Failing, 1, 10).await.expect_err("fails");
        assert!(error.to_string().contains("probe 3"), "{error}");
        assert_eq!(stretch.acks.len(), 2);
        assert_eq!(written.load(Ordering::Relaxed), 0);
    }
}
