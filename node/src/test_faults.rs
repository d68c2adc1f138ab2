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

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// The environment variable that must be `1` for `--test-fault` to be accepted.
pub const ALLOW_ENV: &str = "LEXUM_ALLOW_TEST_FAULTS";

/// One test-only bug a node can be switched into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TestFault {
    /// Acknowledge client writes before they commit.
    AckBeforeCommit,
    /// Serve reads from the local replica without a read index.
    ReadWithoutReadIndex,
}

impl TestFault {
    /// Every fault.
    pub const ALL: [TestFault; 2] = [TestFault::AckBeforeCommit, TestFault::ReadWithoutReadIndex];

    /// The name after `--test-fault`.
    pub fn name(self) -> &'static str {
        match self {
            TestFault::AckBeforeCommit => "ack-before-commit",
            TestFault::ReadWithoutReadIndex => "read-without-read-index",
        }
    }

    /// What the node does wrong, for the warning at start.
    fn what(self) -> &'static str {
        match self {
            TestFault::AckBeforeCommit => "acknowledges writes before they commit, so acknowledged writes can be lost",
            TestFault::ReadWithoutReadIndex => {
                "answers reads from its own replica without a read index, on followers too, so reads can be stale"
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
    #[error("unknown test fault `{0}` (expected ack-before-commit or read-without-read-index)")]
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
}
