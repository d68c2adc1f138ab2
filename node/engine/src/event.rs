//! What happened while an entry was applied, as data: [`Event`] with a
//! typed [`EventKind`], and a cycle's [`CycleVerdict`]. Callers match on
//! these; the `message` text is for people.
//!
//! Both enums serialize as their names (`goal_status`, `tug_of_war`), so
//! cycle records in snapshots written before they were typed still decode.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::report::GoalStatus;

/// Something that happened while applying an entry: the watch stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Index of the entry that caused it.
    pub index: u64,
    /// What happened.
    pub kind: EventKind,
    /// Domain concerned, if any.
    pub domain: Option<String>,
    /// Goal concerned, if any.
    pub goal: Option<String>,
    /// Diagnostic code, if any.
    pub code: Option<String>,
    /// The goal's new status, on [`EventKind::GoalStatus`].
    pub status: Option<GoalStatus>,
    /// How the cycle ended, on [`EventKind::Cycle`].
    pub verdict: Option<CycleVerdict>,
    /// The effect, on `effect_planned`, `effect_dispatched`,
    /// `effect_succeeded` and `effect_failed`.
    pub effect: Option<EffectRef>,
    /// Who wrote, on [`EventKind::Mutation`].
    pub principal: Option<String>,
    /// The fields written (`Pool[web].want`), on [`EventKind::Mutation`].
    pub fields: Vec<String>,
    /// Human-readable description.
    pub message: String,
}

impl Event {
    /// An event of `kind` at `index` about nothing in particular; the
    /// caller fills in what it concerns.
    pub fn new(index: u64, kind: EventKind, message: String) -> Event {
        Event {
            index,
            kind,
            domain: None,
            goal: None,
            code: None,
            status: None,
            verdict: None,
            effect: None,
            principal: None,
            fields: Vec::new(),
            message,
        }
    }
}

/// The effect an event is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectRef {
    /// Its declared name (`Cloud.SetNodeCount`).
    pub name: String,
    /// The key its worker receives and an observer names in `caused_by`.
    pub idempotency_key: String,
    /// The attempt concerned (0 while none was dispatched).
    pub attempt: u32,
}

/// Declares a fieldless enum whose values serialize as, display as and
/// parse from the given names.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(into = "&'static str", try_from = "String")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name clients see.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl From<$name> for &'static str {
            fn from(value: $name) -> &'static str {
                value.name()
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(name: String) -> Result<$name, String> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.name() == name)
                    .ok_or_else(|| format!(concat!("unknown ", stringify!($name), " `{}`"), name))
            }
        }
    };
}

named_enum! {
    /// The kinds of [`Event`].
    EventKind {
        /// A client mutation was applied.
        Mutation => "mutation",
        /// A goal's status changed ([`Event::status`]).
        GoalStatus => "goal_status",
        /// A goal failed (E010, E011, E012).
        GoalFailed => "goal_failed",
        /// A transition was armed for a violated goal.
        Armed => "armed",
        /// A slice ran.
        Slice => "slice",
        /// A cycle ended ([`Event::verdict`]).
        Cycle => "cycle",
        /// A cycle's inputs did not change: its next one waits.
        Backoff => "backoff",
        /// Goals were trapped (E005).
        Trap => "trap",
        /// A trap was released.
        Release => "release",
        /// A failed goal was re-armed.
        Retry => "retry",
        /// A goal is suppressed by a higher-priority goal it conflicts with.
        Dominated => "dominated",
        /// A dominance was learnt.
        Dominance => "dominance",
        /// A learnt dominance expired.
        DominanceExpired => "dominance_expired",
        /// An outside principal keeps undoing a goal (E016).
        Contested => "contested",
        /// A contested goal's penalty decayed.
        ContestEnded => "contest_ended",
        /// A cycle was suspended by a higher level.
        Suspended => "suspended",
        /// A suspended cycle resumed.
        Resumed => "resumed",
        /// An effect was planned.
        EffectPlanned => "effect_planned",
        /// An effect was handed to a worker.
        EffectDispatched => "effect_dispatched",
        /// An effect's worker reported success.
        EffectSucceeded => "effect_succeeded",
        /// An effect failed (to be retried, or for good).
        EffectFailed => "effect_failed",
        /// A message was delivered to its handler.
        Message => "message",
        /// A timer fired.
        Timer => "timer",
        /// Instances were created.
        Created => "created",
        /// Instances were deleted.
        Deleted => "deleted",
        /// A program version was installed.
        Program => "program",
        /// The engine configuration changed.
        Configured => "configured",
        /// An entry (or part of a batch) was refused and changed nothing.
        Rejected => "rejected",
        /// An entry referred to work already done or gone.
        Stale => "stale",
    }
}

named_enum! {
    /// How a cycle ended, as its [`crate::CycleRecord`] records it.
    CycleVerdict {
        /// Its goal holds.
        Converged => "converged",
        /// Its goal does not hold yet, but its inputs moved to a new state.
        Progress => "progress",
        /// Its goal does not hold and its inputs are where they were.
        NoProgress => "no_progress",
        /// It undid an equal-priority goal.
        TugOfWar => "tug_of_war",
        /// It was judged an oscillation (E005).
        Trapped => "trapped",
        /// A slice or its effects failed, or retries ran out.
        Failed => "failed",
        /// Its goal was trapped by another cycle.
        Cancelled => "cancelled",
        /// Its instance was deleted.
        Deleted => "deleted",
        /// It was suspended, and its goal held before it resumed.
        Dropped => "dropped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_distinct() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::try_from(kind.name().to_string()), Ok(*kind));
        }
        for verdict in CycleVerdict::ALL {
            assert_eq!(CycleVerdict::try_from(verdict.name().to_string()), Ok(*verdict));
        }
        let mut names: Vec<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EventKind::ALL.len());
        assert!(EventKind::try_from("goal-status".to_string()).is_err());
    }

    #[test]
    fn a_verdict_encodes_as_its_name_as_before_it_was_typed() {
        let typed = postcard::to_stdvec(&CycleVerdict::TugOfWar).expect("encodes");
        let text = postcard::to_stdvec("tug_of_war").expect("encodes");
        assert_eq!(typed, text);
        assert_eq!(postcard::from_bytes::<CycleVerdict>(&text), Ok(CycleVerdict::TugOfWar));
        assert_eq!(serde_json::to_string(&CycleVerdict::NoProgress).ok().as_deref(), Some("\"no_progress\""));
    }
}
