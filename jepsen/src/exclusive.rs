//! Checker for "no effect is executed by two workers at once".
//!
//! Test handlers open an [`ExecutionLog::begin`] guard when they start; the
//! guard records the end of the execution when it is dropped, which is also
//! what happens when the SDK cancels the handler (timeout, lost worker). The
//! checker then looks, per idempotency key (one per effect instance, the same
//! across retries and failovers), for two executions whose intervals overlap.

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One execution of an effect attempt by one worker.
#[derive(Clone, Debug)]
pub struct Execution {
    /// The effect instance's idempotency key.
    pub key: String,
    /// Which worker ran it.
    pub worker: String,
    /// The attempt number the task carried.
    pub attempt: u32,
    /// When the handler started.
    pub start: Instant,
    /// When the handler returned or was cancelled.
    pub end: Instant,
}

/// Two executions of the same effect that ran at the same time.
#[derive(Clone, Debug)]
pub struct Overlap {
    /// The execution that started first.
    pub earlier: Execution,
    /// The one that started while `earlier` was still running.
    pub later: Execution,
}

impl std::fmt::Display for Overlap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (earlier, later) = (&self.earlier, &self.later);
        let ms = |at: Instant| at.saturating_duration_since(earlier.start).as_millis();
        write!(
            f,
            "{}: {} (attempt {}) ran 0..{} ms, {} (attempt {}) ran {}..{} ms",
            earlier.key,
            earlier.worker,
            earlier.attempt,
            ms(earlier.end),
            later.worker,
            later.attempt,
            ms(later.start),
            ms(later.end)
        )
    }
}

/// Executions recorded by test handlers, shared between workers.
#[derive(Clone, Default)]
pub struct ExecutionLog {
    finished: Arc<Mutex<Vec<Execution>>>,
}

/// An execution in progress; recorded when dropped.
pub struct ExecutionGuard {
    log: ExecutionLog,
    execution: Option<Execution>,
}

impl ExecutionLog {
    /// Starts recording an execution of `key` by `worker`.
    pub fn begin(&self, key: &str, worker: &str, attempt: u32) -> ExecutionGuard {
        let now = Instant::now();
        let execution = Execution { key: key.to_string(), worker: worker.to_string(), attempt, start: now, end: now };
        ExecutionGuard { log: self.clone(), execution: Some(execution) }
    }

    /// Every finished execution so far.
    pub fn executions(&self) -> Vec<Execution> {
        self.finished.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for ExecutionGuard {
    fn drop(&mut self) {
        if let Some(mut execution) = self.execution.take() {
            execution.end = Instant::now();
            self.log.finished.lock().unwrap_or_else(|p| p.into_inner()).push(execution);
        }
    }
}

/// Every pair of executions of one effect whose intervals overlap (an
/// execution that starts exactly when another ends does not overlap it).
pub fn overlaps(executions: &[Execution]) -> Vec<Overlap> {
    let mut sorted: Vec<&Execution> = executions.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key).then(a.start.cmp(&b.start)));
    let mut found = Vec::new();
    let mut running: Option<&Execution> = None;
    for execution in sorted {
        match running {
            Some(previous) if previous.key == execution.key && execution.start < previous.end => {
                found.push(Overlap { earlier: previous.clone(), later: execution.clone() });
                if execution.end > previous.end {
                    running = Some(execution);
                }
            }
            Some(previous) if previous.key == execution.key && execution.end <= previous.end => {}
            _ => running = Some(execution),
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(base: Instant, key: &str, worker: &str, from_ms: u64, to_ms: u64) -> Execution {
        Execution {
            key: key.into(),
            worker: worker.into(),
            attempt: 1,
            start: base + Duration::from_millis(from_ms),
            end: base + Duration::from_millis(to_ms),
        }
    }

    #[test]
    fn back_to_back_executions_do_not_overlap() {
        let base = Instant::now();
        let runs = [at(base, "k", "a", 0, 10), at(base, "k", "b", 10, 20), at(base, "j", "a", 5, 15)];
        assert!(overlaps(&runs).is_empty());
    }

    #[test]
    fn an_execution_that_starts_before_another_ends_is_reported() {
        let base = Instant::now();
        let runs = [at(base, "k", "b", 9, 20), at(base, "k", "a", 0, 10), at(base, "j", "a", 0, 100)];
        let found = overlaps(&runs);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].earlier.worker.as_str(), found[0].later.worker.as_str()), ("a", "b"));
        assert_eq!(found[0].to_string(), "k: a (attempt 1) ran 0..10 ms, b (attempt 1) ran 9..20 ms");
    }

    #[test]
    fn a_long_execution_overlaps_every_later_one_it_spans() {
        let base = Instant::now();
        let runs = [at(base, "k", "a", 0, 100), at(base, "k", "b", 10, 20), at(base, "k", "c", 30, 40)];
        assert_eq!(overlaps(&runs).len(), 2);
    }

    #[test]
    fn the_guard_records_on_drop() {
        let log = ExecutionLog::default();
        let guard = log.begin("k", "w", 2);
        assert!(log.executions().is_empty());
        drop(guard);
        let recorded = log.executions();
        assert_eq!(recorded.len(), 1);
        assert_eq!((recorded[0].key.as_str(), recorded[0].attempt), ("k", 2));
        assert!(recorded[0].end >= recorded[0].start);
    }
}
