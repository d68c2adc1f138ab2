//! Prometheus metrics of one node. Counters and histograms are updated on
//! the apply path; gauges that describe engine state are computed at scrape
//! time from the replica, so they are never stale.

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use std::time::Duration;

/// The node's metric registry and the metrics updated as entries apply.
pub struct Metrics {
    registry: Registry,
    apply_seconds: Histogram,
    rejected_total: IntCounter,
    traps_total: IntCounter,
    /// Raft commit index (set by the status watcher).
    pub commit_index: IntGauge,
    /// Last applied log index.
    pub applied_index: IntGauge,
    /// Raft term.
    pub term: IntGauge,
    /// 1 on the leader, 0 elsewhere.
    pub is_leader: IntGauge,
    /// Goals by status (`status` label).
    pub goals: IntGaugeVec,
    /// Effects waiting for a worker, by priority level (`level` label).
    pub dispatch_queue: IntGaugeVec,
    /// Connected workers.
    pub workers: IntGauge,
    /// Requests (client mutations, worker results) group-committed in each
    /// entry the leader proposed.
    pub requests_per_entry: Histogram,
    /// Duration of each WAL sync (fed by the log store's sync thread).
    pub wal_sync_seconds: Histogram,
    /// Linearizable reads answered by each leadership check (leader).
    pub reads_per_check: Histogram,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let apply_seconds = histogram(
            "lexum_apply_seconds",
            "Time to apply one entry to the engine",
            vec![0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05],
        );
        let rejected_total =
            IntCounter::new("lexum_rejected_entries_total", "Entries (or mutations of a batch) the engine rejected")
                .expect("valid");
        let traps_total = IntCounter::new("lexum_e005_total", "Oscillation traps (E005) recorded").expect("valid");
        let commit_index = IntGauge::new("lexum_commit_index", "Raft commit index").expect("valid");
        let applied_index = IntGauge::new("lexum_applied_index", "Last applied log index").expect("valid");
        let term = IntGauge::new("lexum_term", "Current Raft term").expect("valid");
        let is_leader = IntGauge::new("lexum_is_leader", "1 when this node is the leader").expect("valid");
        let goals = IntGaugeVec::new(Opts::new("lexum_goals", "Goals by status"), &["status"]).expect("valid");
        let dispatch_queue =
            IntGaugeVec::new(Opts::new("lexum_dispatch_queue", "Effects waiting for dispatch by level"), &["level"])
                .expect("valid");
        let workers = IntGauge::new("lexum_workers", "Workers connected to this node").expect("valid");
        let requests_per_entry = histogram(
            "lexum_requests_per_entry",
            "Client mutations and worker results group-committed in one entry (leader)",
            count_buckets(),
        );
        let wal_sync_seconds = histogram(
            "lexum_wal_sync_seconds",
            "Time of one WAL sync (fdatasync), which every acknowledged write waits for on a quorum",
            vec![0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128],
        );
        let reads_per_check = histogram(
            "lexum_reads_per_check",
            "Linearizable reads answered by one leadership check (read index round) on the leader",
            count_buckets(),
        );
        for collector in [
            Box::new(apply_seconds.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(rejected_total.clone()),
            Box::new(traps_total.clone()),
            Box::new(commit_index.clone()),
            Box::new(applied_index.clone()),
            Box::new(term.clone()),
            Box::new(is_leader.clone()),
            Box::new(goals.clone()),
            Box::new(dispatch_queue.clone()),
            Box::new(workers.clone()),
            Box::new(requests_per_entry.clone()),
            Box::new(wal_sync_seconds.clone()),
            Box::new(reads_per_check.clone()),
        ] {
            registry.register(collector).expect("metric names are unique");
        }
        Metrics {
            registry,
            apply_seconds,
            rejected_total,
            traps_total,
            commit_index,
            applied_index,
            term,
            is_leader,
            goals,
            dispatch_queue,
            workers,
            requests_per_entry,
            wal_sync_seconds,
            reads_per_check,
        }
    }

    /// Records one applied entry and how many of its changes (the entry,
    /// or each mutation of a batch) the engine rejected.
    pub fn observe_apply(&self, elapsed: Duration, rejected: u64) {
        self.apply_seconds.observe(elapsed.as_secs_f64());
        self.rejected_total.inc_by(rejected);
    }

    /// Records oscillation traps seen in applied events.
    pub fn observe_traps(&self, count: u64) {
        self.traps_total.inc_by(count);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// A histogram with `buckets` (its name and help are fixed strings, so
/// creating it cannot fail).
fn histogram(name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).expect("valid histogram")
}

/// Buckets for how many requests one round carried: powers of two to 256.
fn count_buckets() -> Vec<f64> {
    (0..=8).map(|power| f64::from(1u32 << power)).collect()
}
impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
