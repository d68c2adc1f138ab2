//! The effects workload's records. Worker processes (`jepsen-worker`, one
//! OS process each, so kill -9 and SIGSTOP hit real processes) run the
//! effect `Ops.Apply(n)` in small steps; before each step they append an
//! *act* line to their own log, and a *done* line when the effect
//! succeeded. Lines carry the system-wide monotonic clock, so the logs of
//! all processes share one time line.
//!
//! An execution is the acts of one (idempotency key, worker, attempt): it
//! runs from its first act to its last. A frozen process acts not at all,
//! so a worker paused past its deadline is harmless as long as it checks
//! the deadline before acting again; one that ignores it acts after
//! another worker took over, and [`crate::exclusive::overlaps`] sees two
//! executions of one key at once.
//!
//! The logs also say how often an effect was tried: [`attempts_per_intent`]
//! gathers the attempts of every intent (an effect with its argument),
//! under whatever idempotency keys they ran, for the retry-limit check.

use crate::exclusive::Execution;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// Nanoseconds of `CLOCK_MONOTONIC`, the same clock in every process.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(now.tv_nsec as u64)
}

/// One line of a worker's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActLine {
    /// `act` (a step of work) or `done` (the effect succeeded).
    pub ev: String,
    /// The effect, `Namespace.Name`.
    pub effect: String,
    /// The effect instance's idempotency key.
    pub key: String,
    /// The worker process's name.
    pub worker: String,
    /// The task's attempt number.
    pub attempt: u32,
    /// The argument `n`.
    pub n: i64,
    /// [`monotonic_ns`] when it happened.
    pub t: u64,
}

/// Every line of every `*.jsonl` file in `dir` (a line cut short by a
/// kill -9 is skipped).
pub fn read_logs(dir: &Path) -> std::io::Result<Vec<ActLine>> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            let text = std::fs::read_to_string(&path)?;
            lines.extend(text.lines().filter_map(|line| serde_json::from_str::<ActLine>(line).ok()));
        }
    }
    lines.sort_by_key(|l| l.t);
    Ok(lines)
}

/// The executions in `lines`: per (key, worker, attempt), first to last
/// act, placed on `base` (the [`Instant`] taken when [`monotonic_ns`] was
/// `base_ns`).
pub fn executions(lines: &[ActLine], base: Instant, base_ns: u64) -> Vec<Execution> {
    let mut spans: BTreeMap<(&str, &str, u32), (u64, u64)> = BTreeMap::new();
    for line in lines.iter().filter(|l| l.ev == "act") {
        let span = spans.entry((&line.key, &line.worker, line.attempt)).or_insert((line.t, line.t));
        span.0 = span.0.min(line.t);
        span.1 = span.1.max(line.t);
    }
    let at = |t: u64| base + Duration::from_nanos(t.saturating_sub(base_ns));
    spans
        .into_iter()
        .map(|((key, worker, attempt), (first, last))| Execution {
            key: key.to_string(),
            worker: worker.to_string(),
            attempt,
            start: at(first),
            end: at(last),
        })
        .collect()
}

/// The attempts of every intent of `effect` (one per argument `n`): each
/// distinct (idempotency key, attempt) a worker started. A retried effect
/// keeps its key; a goal re-armed after it failed plans the effect again
/// under a new key, with the same argument.
pub fn attempts_per_intent(lines: &[ActLine], effect: &str) -> BTreeMap<i64, BTreeSet<(String, u32)>> {
    let mut intents: BTreeMap<i64, BTreeSet<(String, u32)>> = BTreeMap::new();
    for line in lines.iter().filter(|l| l.ev == "act" && l.effect == effect) {
        intents.entry(line.n).or_default().insert((line.key.clone(), line.attempt));
    }
    intents
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exclusive::overlaps;

    fn line(ev: &str, key: &str, worker: &str, attempt: u32, t: u64) -> ActLine {
        ActLine { ev: ev.into(), effect: "Ops.Apply".into(), key: key.into(), worker: worker.into(), attempt, n: 1, t }
    }

    #[test]
    fn attempts_are_counted_per_intent_across_keys_and_workers() {
        let fail = |key: &str, worker: &str, attempt: u32, n: i64| ActLine {
            effect: "Ops.Fail".into(),
            n,
            ..line("act", key, worker, attempt, 0)
        };
        let lines = [
            fail("k", "a", 1, 1),
            fail("k", "a", 1, 1),
            fail("k", "b", 2, 1),
            fail("k", "a", 3, 1),
            fail("r", "b", 1, 1),
            fail("x", "a", 1, 7),
            line("act", "k", "a", 4, 0),
        ];
        let intents = attempts_per_intent(&lines, "Ops.Fail");
        assert_eq!(intents[&1].len(), 4, "three attempts under k and one under r, steps of one attempt once");
        assert_eq!(intents[&7].len(), 1);
        assert_eq!(intents.len(), 2, "other effects are not counted");
    }

    #[test]
    fn acts_of_two_workers_that_interleave_overlap() {
        let lines = [
            line("act", "k", "a", 1, 100),
            line("act", "k", "b", 2, 150),
            line("act", "k", "a", 1, 200),
            line("act", "j", "a", 1, 120),
            line("done", "k", "b", 2, 300),
        ];
        let found = overlaps(&executions(&lines, Instant::now(), 0));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].later.worker, "b");
    }

    #[test]
    fn a_handover_after_the_last_act_is_clean() {
        let lines = [line("act", "k", "a", 1, 100), line("act", "k", "a", 1, 200), line("act", "k", "b", 2, 201)];
        assert!(overlaps(&executions(&lines, Instant::now(), 0)).is_empty());
    }

    #[test]
    fn the_monotonic_clock_moves_forward() {
        let a = monotonic_ns();
        std::thread::sleep(Duration::from_millis(2));
        assert!(monotonic_ns() >= a + 2_000_000);
    }
}
