//! Test-only fault switches: bugs `lexumd` can be told to have, so that
//! the fault tests (`jepsen/run --bug`) show each checker catching the
//! class of bug it claims to catch. Never for production: a node refuses
//! `--test-fault` unless `LEXUM_ALLOW_TEST_FAULTS=1` is set in its
//! environment, and warns at start about every fault it was given
//! (docs/operations.md, Test-only faults).
//!
//! A fault acts in one place, which is handed the node's [`TestFaults`]:
//! - `ack-before-commit`: `service/client.rs` answers `Mutate` and
//!   `CreateInstances` as soon as the entry is handed to group commit,
//!   without waiting for it to commit. An entry a leader acknowledged and
//!   then lost (killed before replicating it, or cut off from its peers)
//!   is gone although its client was told it was written.
//! - `read-without-read-index`: `service/client.rs` answers every read
//!   from this node's replica as it is, without openraft's read index
//!   (`ensure_linearizable`), on followers and on a deposed leader too.
//! - `leader-forgets-retry-counts`: [`forget_retry_counts`] runs beside
//!   the dispatcher and re-arms goals whose effect ran out of retries
//!   unless this node itself counted the attempts, so every new leader
//!   grants a failing effect a fresh budget.

use crate::cluster::Cluster;
use lexum_engine::entry::Entry;
use lexum_engine::{Engine, Event, EventKind};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::broadcast;

/// The environment variable that must be `1` for `--test-fault` to be accepted.
pub const ALLOW_ENV: &str = "LEXUM_ALLOW_TEST_FAULTS";

/// One test-only bug a node can be switched into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TestFault {
    /// Acknowledge client writes before they commit.
    AckBeforeCommit,
    /// Serve reads from the local replica without a read index.
    ReadWithoutReadIndex,
    /// Count effect attempts in the leader's memory, so a new leader
    /// re-arms goals whose effect ran out of retries.
    LeaderForgetsRetryCounts,
}

impl TestFault {
    /// Every fault.
    pub const ALL: [TestFault; 3] =
        [TestFault::AckBeforeCommit, TestFault::ReadWithoutReadIndex, TestFault::LeaderForgetsRetryCounts];

    /// The name after `--test-fault`.
    pub fn name(self) -> &'static str {
        match self {
            TestFault::AckBeforeCommit => "ack-before-commit",
            TestFault::ReadWithoutReadIndex => "read-without-read-index",
            TestFault::LeaderForgetsRetryCounts => "leader-forgets-retry-counts",
        }
    }

    /// What the node does wrong, for the warning at start.
    fn what(self) -> &'static str {
        match self {
            TestFault::AckBeforeCommit => "acknowledges writes before they commit, so acknowledged writes can be lost",
            TestFault::ReadWithoutReadIndex => {
                "answers reads from its own replica without a read index, on followers too, so reads can be stale"
            }
            TestFault::LeaderForgetsRetryCounts => {
                "as leader re-arms goals whose effect ran out of retries, so effects run past their retry limit"
            }
        }
    }
}

impl fmt::Display for TestFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TestFault {
    type Err = TestFaultError;
    fn from_str(name: &str) -> Result<TestFault, TestFaultError> {
        TestFault::ALL.into_iter().find(|f| f.name() == name).ok_or_else(|| TestFaultError::Unknown(name.to_string()))
    }
}

/// Why test faults were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TestFaultError {
    /// No fault has this name.
    #[error(
        "unknown test fault `{0}` (expected ack-before-commit, read-without-read-index or leader-forgets-retry-counts)"
    )]
    Unknown(String),
    /// A fault was asked for without the environment allowing it.
    #[error("--test-fault {0} makes this node wrong on purpose and is for fault tests only; it is refused unless {ALLOW_ENV}=1 is set")]
    NotAllowed(TestFault),
}

/// Whether this process may switch test faults on: only when its
/// environment says so, never by a flag or the config file alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// `LEXUM_ALLOW_TEST_FAULTS=1`.
    Granted,
    /// Anything else.
    Refused,
}

impl Permission {
    /// The permission the value of [`ALLOW_ENV`] gives (`None` when unset).
    pub fn from_value(value: Option<&str>) -> Permission {
        if value == Some("1") {
            Permission::Granted
        } else {
            Permission::Refused
        }
    }

    /// The permission of this process's environment.
    pub fn from_env() -> Permission {
        Permission::from_value(std::env::var(ALLOW_ENV).ok().as_deref())
    }
}

/// The faults a node runs with; empty unless permitted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TestFaults {
    on: BTreeSet<TestFault>,
}

impl TestFaults {
    /// No faults: a correct node.
    pub fn none() -> TestFaults {
        TestFaults::default()
    }

    /// The `requested` faults, if `permission` allows any; an empty request
    /// needs no permission.
    pub fn new(requested: &[TestFault], permission: Permission) -> Result<TestFaults, TestFaultError> {
        match (requested.first(), permission) {
            (Some(first), Permission::Refused) => Err(TestFaultError::NotAllowed(*first)),
            _ => Ok(TestFaults { on: requested.iter().copied().collect() }),
        }
    }

    /// Whether `fault` is switched on.
    pub fn contains(&self, fault: TestFault) -> bool {
        self.on.contains(&fault)
    }

    /// Whether no fault is switched on.
    pub fn is_empty(&self) -> bool {
        self.on.is_empty()
    }

    /// The warnings to log at start, one per fault.
    pub fn warnings(&self) -> Vec<String> {
        self.on
            .iter()
            .map(|f| format!("TEST FAULT {f} is ON: this node {}. Never run this in production.", f.what()))
            .collect()
    }
}

/// How often the forgetful leader looks at the goals.
const FORGETFUL_TICK: Duration = Duration::from_millis(50);

/// `leader-forgets-retry-counts`: the bookkeeping of a leader that counts
/// effect attempts in its own memory instead of trusting the replicated
/// journal. While this node leads, it counts the attempts dispatched in
/// its term, per goal. A goal FAILED because its effect ran out of retries
/// (E010), for which it counted fewer attempts than the transition allows,
/// looks to it like a goal with budget left, so it re-arms the goal
/// (`Entry::Retry`), once per failure. A leader that dispatched every
/// attempt itself leaves the goal FAILED; a new leader, whose count starts
/// at zero, re-arms it and the effect gets another full budget of attempts.
/// Runs until the process exits.
pub async fn forget_retry_counts(cluster: Cluster) {
    let mut memory: Option<Memory> = None;
    loop {
        tokio::time::sleep(FORGETFUL_TICK).await;
        if !cluster.is_leader() {
            memory = None;
            continue;
        }
        let term = cluster.raft.metrics().borrow().current_term;
        let memory = match &mut memory {
            Some(memory) if memory.term == term => memory,
            slot => match Memory::start(&cluster, term) {
                Some(fresh) => slot.insert(fresh),
                None => continue,
            },
        };
        // The goals first, then the events: every dispatch applied before
        // the goals were read has been sent to the receiver by then.
        let exhausted = cluster.replica.with_engine(exhausted_goals);
        memory.count_dispatches();
        for goal in exhausted {
            if !memory.forgets(&goal) {
                continue;
            }
            tracing::warn!(
                domain = %goal.domain,
                goal = %goal.goal,
                counted = memory.counted(&goal),
                allowed = goal.max_attempts,
                "test fault leader-forgets-retry-counts: re-arming a goal whose effect ran out of retries"
            );
            let retry = Entry::Retry { domain: goal.domain.clone(), goal: goal.goal.clone() };
            if let Err(error) = cluster.propose(retry).await {
                tracing::warn!("test fault leader-forgets-retry-counts: re-arming failed: {error}");
            }
        }
    }
}

/// A goal FAILED with E010, as the forgetful leader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Exhausted {
    domain: String,
    goal: String,
    /// Index of the entry that made it FAILED: one failure.
    since: u64,
    /// The most attempts its transitions allow an effect.
    max_attempts: u32,
}

/// Every goal FAILED because an effect ran out of retries, with its budget.
fn exhausted_goals(engine: &Engine) -> Vec<Exhausted> {
    let Some(program) = engine.program() else { return Vec::new() };
    let mut budgets: BTreeMap<(&str, &str), u32> = BTreeMap::new();
    for transition in &program.transitions {
        let goal = &program.goals[transition.goal.index()];
        let domain = program.domains[goal.domain.index()].name.as_str();
        let budget = budgets.entry((domain, goal.name.as_str())).or_default();
        *budget = (*budget).max(transition.retry.max_attempts);
    }
    let (failed, _) = engine.goals_page(None, Some(lexum_engine::GoalStatus::Failed), 0, u64::MAX);
    failed
        .into_iter()
        .filter(|g| g.code.as_deref() == Some(lexum_engine::codes::RETRIES_EXHAUSTED))
        .filter_map(|g| {
            let max_attempts = *budgets.get(&(g.domain.as_str(), g.goal.as_str()))?;
            Some(Exhausted { domain: g.domain, goal: g.goal, since: g.since_index, max_attempts })
        })
        .collect()
}

/// What one term of leadership remembers: attempts it saw dispatched, per
/// goal, and the failures it already re-armed.
struct Memory {
    term: u64,
    events: broadcast::Receiver<Event>,
    attempts: BTreeMap<(String, String), u32>,
    rearmed: BTreeSet<(String, String, u64)>,
}

impl Memory {
    /// Starts counting with the next applied entry.
    fn start(cluster: &Cluster, term: u64) -> Option<Memory> {
        let next = cluster.replica.applied_index() + 1;
        let (_, events) = cluster.replica.subscribe_events(next).ok()?;
        Some(Memory { term, events, attempts: BTreeMap::new(), rearmed: BTreeSet::new() })
    }

    /// Counts the dispatches applied since the last call (events lost to
    /// a lagging receiver are simply not counted: the memory is the bug).
    fn count_dispatches(&mut self) {
        loop {
            match self.events.try_recv() {
                Ok(event) if event.kind == EventKind::EffectDispatched => {
                    if let (Some(domain), Some(goal)) = (event.domain, event.goal) {
                        *self.attempts.entry((domain, goal)).or_default() += 1;
                    }
                }
                Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
    }

    /// The attempts this term counted for `goal`.
    fn counted(&self, goal: &Exhausted) -> u32 {
        self.attempts.get(&(goal.domain.clone(), goal.goal.clone())).copied().unwrap_or(0)
    }

    /// Whether this leader, by its own count, would grant `goal` more
    /// attempts (once per failure).
    fn forgets(&mut self, goal: &Exhausted) -> bool {
        self.counted(goal) < goal.max_attempts
            && self.rearmed.insert((goal.domain.clone(), goal.goal.clone(), goal.since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for fault in TestFault::ALL {
            assert_eq!(fault.name().parse::<TestFault>(), Ok(fault));
        }
        assert_eq!("stale-reads".parse::<TestFault>(), Err(TestFaultError::Unknown("stale-reads".into())));
    }

    #[test]
    fn faults_need_the_environment_variable() {
        let asked = [TestFault::AckBeforeCommit];
        assert_eq!(
            TestFaults::new(&asked, Permission::Refused),
            Err(TestFaultError::NotAllowed(TestFault::AckBeforeCommit))
        );
        for value in [None, Some(""), Some("0"), Some("true"), Some("yes")] {
            assert_eq!(Permission::from_value(value), Permission::Refused, "{value:?}");
        }
        assert_eq!(Permission::from_value(Some("1")), Permission::Granted);
        let faults = TestFaults::new(&asked, Permission::Granted).expect("allowed");
        assert!(faults.contains(TestFault::AckBeforeCommit));
        assert!(!faults.contains(TestFault::ReadWithoutReadIndex));
        assert_eq!(faults.warnings().len(), 1);
        assert!(faults.warnings()[0].contains("ack-before-commit"), "{:?}", faults.warnings());
    }

    #[test]
    fn no_faults_need_no_permission() {
        assert_eq!(TestFaults::new(&[], Permission::Refused), Ok(TestFaults::none()));
        assert!(TestFaults::none().is_empty());
    }

    fn exhausted(since: u64) -> Exhausted {
        Exhausted { domain: "Doomed".into(), goal: "Applied".into(), since, max_attempts: 3 }
    }

    #[test]
    fn a_leader_that_counted_every_attempt_leaves_the_goal_failed_and_a_new_one_rearms_it_once() {
        let replica_events = broadcast::channel::<Event>(16);
        let mut memory =
            Memory { term: 1, events: replica_events.1, attempts: BTreeMap::new(), rearmed: BTreeSet::new() };
        let dispatched = Event {
            domain: Some("Doomed".into()),
            goal: Some("Applied".into()),
            ..Event::new(1, EventKind::EffectDispatched, String::new())
        };
        for _ in 0..3 {
            replica_events.0.send(dispatched.clone()).expect("a receiver");
        }
        memory.count_dispatches();
        assert!(!memory.forgets(&exhausted(9)), "it saw all three attempts");
        let (_, fresh) = broadcast::channel::<Event>(16);
        let mut new_leader = Memory { term: 2, events: fresh, attempts: BTreeMap::new(), rearmed: BTreeSet::new() };
        assert!(new_leader.forgets(&exhausted(9)));
        assert!(!new_leader.forgets(&exhausted(9)), "one re-arm per failure");
        assert!(new_leader.forgets(&exhausted(20)), "a later failure is another");
    }
}
