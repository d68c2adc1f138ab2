//! Causes of writes (SPEC §3.7): every committed field write carries who
//! or what made it, the write history kept per field for `why`, and the
//! map from effect idempotency keys back to the cycles that issued them, so
//! an observer's write (`caused_by`) is attributed to the cycle whose
//! effect it observed.

use std::collections::BTreeMap;

use lexum_compiler::program::{FieldId, GoalId, Program, Value};
use serde::{Deserialize, Serialize};

use crate::Engine;

/// Completed or live effects remembered for attributing observers' writes.
const EFFECT_ORIGINS_LIMIT: usize = 4096;

/// Identifies the cycle a write, message or effect belongs to. It outlives
/// the cycle: a message delivered or an effect observed after its cycle
/// was judged is still attributed to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct CycleTag {
    /// Cycle id.
    pub cycle: u64,
    /// The goal the cycle repairs.
    pub goal: GoalId,
    /// Index at which the cycle was armed.
    pub started_at: u64,
}

/// Who wrote a field, as the verdicts see it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Author {
    /// A cycle, directly (slice, handler) or through an observer's `caused_by`.
    Cycle(CycleTag),
    /// A client write that observed no known effect: outside the program.
    Outside(String),
    /// A handler of a message no cycle is known for: neither a cycle's
    /// change nor outside contention.
    Untracked,
}

/// A cycle as a write's cause names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleCause {
    /// Cycle id.
    pub cycle: u64,
    /// `Domain.Goal` the cycle repairs.
    pub goal: String,
    /// Index at which the cycle was armed.
    pub started_at: u64,
}

/// An effect whose outcome a client write observed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedEffect {
    /// The idempotency key the client named.
    pub idempotency_key: String,
    /// `Namespace.Name` of the effect.
    pub effect: String,
    /// The cycle that issued it.
    pub cycle: CycleCause,
    /// The worker of its last dispatched attempt, if it was dispatched.
    pub worker: Option<String>,
}

/// What caused one committed field write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cause {
    /// A cycle's own write: a slice (`step` is the slice name) or the
    /// handler of a message the cycle sent (`step` is `Domain.Handler`).
    Cycle {
        /// The cycle.
        cycle: CycleCause,
        /// The slice or handler that wrote.
        step: String,
    },
    /// A handler of a message whose cycle is unknown (sent before a new
    /// program version, or by no cycle).
    Handler {
        /// `Domain.Handler`.
        handler: String,
    },
    /// A client mutation.
    Client {
        /// The authenticated identity (and the name the client added).
        principal: String,
        /// Idempotency keys the client said it observed.
        caused_by: Vec<String>,
        /// Those of them the engine knows, with their cycles: the write is
        /// attributed to the first one's cycle.
        observed: Vec<ObservedEffect>,
    },
}

/// One committed write of a field, for `lexumctl why`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteRecord {
    /// Index of the entry that wrote it.
    pub index: u64,
    /// `Domain.field`.
    pub field: String,
    /// Value before.
    pub old: Value,
    /// Value written.
    pub new: Value,
    /// Why.
    pub cause: Cause,
}

/// One kept write of a field (the field is the key of its history).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LoggedWrite {
    pub index: u64,
    pub old: Value,
    pub new: Value,
    pub cause: Cause,
}

/// Where an effect came from, kept by idempotency key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct EffectOrigin {
    pub tag: CycleTag,
    pub effect: String,
    pub worker: Option<String>,
}

/// A write's cause before it is rendered: the author for verdicts, the
/// cause for history.
#[derive(Clone, Debug)]
pub(crate) struct WriteCause {
    pub author: Author,
    pub cause: Cause,
}

impl Engine {
    pub(crate) fn cycle_cause(&self, program: &Program, tag: CycleTag) -> CycleCause {
        CycleCause { cycle: tag.cycle, goal: program.goal_path(tag.goal), started_at: tag.started_at }
    }

    /// The cause of a write by a cycle's slice or by the handler of one of its messages.
    pub(crate) fn cycle_write_cause(&self, program: &Program, tag: CycleTag, step: String) -> WriteCause {
        WriteCause { author: Author::Cycle(tag), cause: Cause::Cycle { cycle: self.cycle_cause(program, tag), step } }
    }

    /// The cause of a client mutation: attributed to the cycle of the first
    /// observed effect the engine knows, otherwise outside the program.
    pub(crate) fn client_write_cause(&self, program: &Program, principal: &str, caused_by: &[String]) -> WriteCause {
        let observed: Vec<(CycleTag, ObservedEffect)> = caused_by
            .iter()
            .filter_map(|key| {
                let origin = self.effect_origins.get(key)?;
                Some((
                    origin.tag,
                    ObservedEffect {
                        idempotency_key: key.clone(),
                        effect: origin.effect.clone(),
                        cycle: self.cycle_cause(program, origin.tag),
                        worker: origin.worker.clone(),
                    },
                ))
            })
            .collect();
        let author = match observed.first() {
            Some((tag, _)) => Author::Cycle(*tag),
            None => Author::Outside(principal.to_string()),
        };
        WriteCause {
            author,
            cause: Cause::Client {
                principal: principal.to_string(),
                caused_by: caused_by.to_vec(),
                observed: observed.into_iter().map(|(_, o)| o).collect(),
            },
        }
    }

    /// Remembers where an effect came from, forgetting the oldest beyond the limit.
    pub(crate) fn remember_effect(&mut self, idempotency_key: String, origin: EffectOrigin) {
        if self.effect_origins.insert(idempotency_key.clone(), origin).is_none() {
            self.effect_origin_order.push_back(idempotency_key);
        }
        while self.effect_origin_order.len() > EFFECT_ORIGINS_LIMIT {
            if let Some(old) = self.effect_origin_order.pop_front() {
                self.effect_origins.remove(&old);
            }
        }
    }

    /// Records the worker an effect was last dispatched to.
    pub(crate) fn remember_worker(&mut self, idempotency_key: &str, worker: &str) {
        if let Some(origin) = self.effect_origins.get_mut(idempotency_key) {
            origin.worker = Some(worker.to_string());
        }
    }

    /// Appends a write to the field's bounded history.
    pub(crate) fn log_write(&mut self, index: u64, field: FieldId, old: Value, new: Value, cause: Cause) {
        let limit = self.config.write_history.max(1) as usize;
        let log = self.write_log.entry(field.0).or_default();
        log.push_back(LoggedWrite { index, old, new, cause });
        while log.len() > limit {
            log.pop_front();
        }
    }

    /// The kept writes of a field as records, oldest first.
    pub(crate) fn field_writes(&self, program: &Program, field: FieldId) -> Vec<WriteRecord> {
        let path = program.field_path(field);
        let log = self.write_log.get(&field.0).into_iter().flatten();
        log.map(|w| WriteRecord {
            index: w.index,
            field: path.clone(),
            old: w.old.clone(),
            new: w.new.clone(),
            cause: w.cause.clone(),
        })
        .collect()
    }

    /// The latest `last` writes of `Domain.field`, oldest first (`None` for
    /// an unknown field).
    pub fn why(&self, domain: &str, field: &str, last: usize) -> Option<Vec<WriteRecord>> {
        let program = self.program.as_ref()?;
        let d = *self.index.domains.get(domain)?;
        let f = *self.index.fields.get(d.index())?.get(field)?;
        let mut records = self.field_writes(program, f);
        let skip = records.len().saturating_sub(last);
        records.drain(..skip);
        Some(records)
    }

    /// Carries the write histories over a new program version: a field
    /// keeps its history when the new version keeps the field (same
    /// domain, name and type), like its value.
    pub(crate) fn migrate_write_log(&mut self, moved: &BTreeMap<u32, u32>) {
        let old = std::mem::take(&mut self.write_log);
        self.write_log = old.into_iter().filter_map(|(f, log)| Some((*moved.get(&f)?, log))).collect();
    }
}
