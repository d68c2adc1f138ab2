//! The nodes' WAL syncs and entry applies over a stretch of the bench, from
//! the `lexum_wal_sync_seconds` and `lexum_apply_seconds` histograms on
//! `/metrics`: how much of a latency tail the disk, or the engine, explains.

use lexum_jepsen::cluster::LocalCluster;

/// The WAL syncs' histogram.
pub const WAL_SYNCS: &str = "lexum_wal_sync_seconds";
/// The entry applies' histogram.
pub const APPLIES: &str = "lexum_apply_seconds";

/// Cumulative counts of one histogram by bucket bound (seconds), summed over
/// nodes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// `(bound, observations of at most bound)`, bounds ascending; the last
    /// bound is infinite.
    buckets: Vec<(f64, f64)>,
}

impl Histogram {
    /// The buckets of histogram `metric` in one node's metrics text.
    pub fn parse(text: &str, metric: &str) -> Histogram {
        let prefix = format!("{metric}_bucket{{le=\"");
        let buckets = text
            .lines()
            .filter_map(|line| {
                let (bound, count) = line.strip_prefix(&prefix)?.split_once("\"} ")?;
                let bound = if bound == "+Inf" { f64::INFINITY } else { bound.parse().ok()? };
                Some((bound, count.trim().parse().ok()?))
            })
            .collect();
        Histogram { buckets }
    }

    /// Every node's histogram `metric` so far, summed (a node that does
    /// not answer counts none).
    pub async fn of(cluster: &LocalCluster, metric: &str) -> Histogram {
        let mut total = Histogram::default();
        for id in cluster.nodes.keys() {
            if let Ok((200, text)) = cluster.http_get(*id, "/metrics").await {
                total = total.plus(&Histogram::parse(&text, metric), 1.0);
            }
        }
        total
    }

    /// `self + factor × other`, bucket by bucket (a missing side is zero).
    fn plus(&self, other: &Histogram, factor: f64) -> Histogram {
        let bounds = if self.buckets.len() >= other.buckets.len() { &self.buckets } else { &other.buckets };
        let count = |histogram: &Histogram, i: usize| histogram.buckets.get(i).map_or(0.0, |(_, n)| *n);
        let buckets = bounds
            .iter()
            .enumerate()
            .map(|(i, (bound, _))| (*bound, count(self, i) + factor * count(other, i)))
            .collect();
        Histogram { buckets }
    }

    /// The syncs made since `before`.
    pub fn since(&self, before: &Histogram) -> Histogram {
        self.plus(before, -1.0)
    }

    /// How many syncs there were.
    pub fn total(&self) -> f64 {
        self.buckets.last().map_or(0.0, |(_, n)| *n)
    }

    /// How many took longer than `bound` seconds (a bucket bound).
    pub fn over(&self, bound: f64) -> f64 {
        let within = self.buckets.iter().find(|(b, _)| *b >= bound).map_or(0.0, |(_, n)| *n);
        self.total() - within
    }

    /// The smallest bucket bound that at least `q` of the syncs stayed within.
    pub fn quantile_bound(&self, q: f64) -> f64 {
        let wanted = q * self.total();
        self.buckets.iter().find(|(_, n)| *n >= wanted).map_or(f64::INFINITY, |(bound, _)| *bound)
    }

    /// One line for the bench's output, for the WAL syncs.
    pub fn sync_summary(&self) -> String {
        format!(
            "WAL syncs on the three nodes meanwhile: {:.0}, p50 ≤ {} ms, p99 ≤ {} ms, {:.0} over 4 ms, {:.0} over 16 ms",
            self.total(),
            self.quantile_bound(0.50) * 1e3,
            self.quantile_bound(0.99) * 1e3,
            self.over(0.004),
            self.over(0.016),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "# HELP lexum_wal_sync_seconds x\n\
        lexum_wal_sync_seconds_bucket{le=\"0.001\"} 90\n\
        lexum_wal_sync_seconds_bucket{le=\"0.004\"} 98\n\
        lexum_wal_sync_seconds_bucket{le=\"0.016\"} 99\n\
        lexum_wal_sync_seconds_bucket{le=\"+Inf\"} 100\n\
        lexum_wal_sync_seconds_sum 0.5\n\
        lexum_wal_sync_seconds_count 100\n";

    #[test]
    fn the_syncs_of_a_stretch_are_the_difference_of_two_scrapes() {
        let before = Histogram::parse(METRICS, WAL_SYNCS);
        let after = before.plus(&Histogram::parse(METRICS, WAL_SYNCS), 2.0);
        assert_eq!(Histogram::parse(METRICS, APPLIES).total(), 0.0, "another histogram's lines are not this one's");
        let stretch = after.since(&before);
        assert_eq!(stretch.total(), 200.0);
        assert_eq!(stretch.over(0.004), 4.0, "two syncs over 4 ms per scrape");
        assert_eq!(stretch.over(0.016), 2.0);
        assert_eq!(stretch.quantile_bound(0.5), 0.001);
        assert_eq!(stretch.quantile_bound(0.95), 0.004);
        assert_eq!(stretch.quantile_bound(0.99), 0.016);
        assert_eq!(stretch.quantile_bound(0.995), f64::INFINITY, "one sync in 200 over the last bound");
        assert_eq!(Histogram::default().since(&Histogram::default()).total(), 0.0);
    }
}
