//! Aggregates over a kind's instances (`count(Pool[*])`, `sum(Pool[*].n)`,
//! `min`, `max`, `all`, `any`) and lookups by a computed key
//! (`Pool[name].n`), and the [`World`] every expression is evaluated in.
//!
//! Aggregates are maintained incrementally: per kind the number of live
//! instances, and per aggregated template field the sum, the number of
//! instances where it holds and a multiset of its values (for `min` and
//! `max`). A write, create or delete updates them in O(log n); evaluating
//! one is O(log n) plus the writes still pending (a slice's plan, a
//! mutation's check). They are derived state: rebuilt from the field values
//! and the instance list on restore and on a new program version, so they
//! are never serialized.

use std::collections::{BTreeMap, BTreeSet};

use lexum_compiler::program::{Aggregate, DomainId, FieldId, Program, Value};

use crate::eval::{EvalError, Fields};
use crate::state::Index;

/// Running totals of one aggregated template field over the live instances.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct FieldTotals {
    /// Sum of an int field (wide, so no order of writes can overflow it).
    sum: i128,
    /// Instances where a bool field holds.
    trues: u64,
    /// Multiset of an int field's values: value → instances holding it.
    ints: BTreeMap<i64, u64>,
}

impl FieldTotals {
    fn add(&mut self, v: &Value) {
        match v {
            Value::Int(n) => {
                self.sum += i128::from(*n);
                *self.ints.entry(*n).or_insert(0) += 1;
            }
            Value::Bool(true) => self.trues += 1,
            _ => {}
        }
    }

    fn remove(&mut self, v: &Value) {
        match v {
            Value::Int(n) => {
                self.sum -= i128::from(*n);
                if let Some(count) = self.ints.get_mut(n) {
                    *count -= 1;
                    if *count == 0 {
                        self.ints.remove(n);
                    }
                }
            }
            Value::Bool(true) => self.trues = self.trues.saturating_sub(1),
            _ => {}
        }
    }
}

/// The incremental aggregates of every kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Aggregates {
    /// Live instances per kind (template domain).
    counts: BTreeMap<u32, u64>,
    /// Totals per aggregated template field.
    fields: BTreeMap<u32, FieldTotals>,
}

impl Aggregates {
    /// Computes every aggregate from scratch.
    pub(crate) fn recompute(program: &Program, index: &Index, values: &[Value]) -> Aggregates {
        let mut out = Aggregates::default();
        for tf in &index.kind_readers.aggregated {
            out.fields.insert(tf.0, FieldTotals::default());
        }
        for (&(kind, _), &d) in &index.instances {
            out.add_instance(program, DomainId(kind), DomainId(d), values);
        }
        out
    }

    /// Counts a live instance in.
    pub(crate) fn add_instance(&mut self, program: &Program, kind: DomainId, d: DomainId, values: &[Value]) {
        *self.counts.entry(kind.0).or_insert(0) += 1;
        for (tf, f) in instance_fields(program, kind, d) {
            if let (Some(totals), Some(v)) = (self.fields.get_mut(&tf.0), values.get(f.index())) {
                totals.add(v);
            }
        }
    }

    /// Counts an instance out (it is being deleted).
    pub(crate) fn remove_instance(&mut self, program: &Program, kind: DomainId, d: DomainId, values: &[Value]) {
        if let Some(count) = self.counts.get_mut(&kind.0) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.counts.remove(&kind.0);
            }
        }
        for (tf, f) in instance_fields(program, kind, d) {
            if let (Some(totals), Some(v)) = (self.fields.get_mut(&tf.0), values.get(f.index())) {
                totals.remove(v);
            }
        }
    }

    /// Follows a committed write of a live instance's field.
    pub(crate) fn write(&mut self, template: FieldId, old: &Value, new: &Value) {
        if let Some(totals) = self.fields.get_mut(&template.0) {
            totals.remove(old);
            totals.add(new);
        }
    }

    /// The aggregate's value with `pending` changes applied on top.
    fn value(
        &self,
        op: Aggregate,
        kind: DomainId,
        field: Option<FieldId>,
        pending: &Pending,
    ) -> Result<Value, EvalError> {
        let count = i128::from(self.counts.get(&kind.0).copied().unwrap_or(0)) + pending.instances;
        let empty = FieldTotals::default();
        let totals = field.map(|f| self.fields.get(&f.0).unwrap_or(&empty));
        let trues = |t: &FieldTotals| i128::from(t.trues) + count_true(&pending.added) - count_true(&pending.removed);
        let int = |n: i128| i64::try_from(n).map(Value::Int).map_err(|_| EvalError::Overflow);
        match (op, totals) {
            (Aggregate::Count, None) => int(count),
            (Aggregate::Count, Some(t)) => int(trues(t)),
            (Aggregate::All, Some(t)) => Ok(Value::Bool(trues(t) == count)),
            (Aggregate::Any, Some(t)) => Ok(Value::Bool(trues(t) > 0)),
            (Aggregate::Sum, Some(t)) => int(t.sum + sum_ints(&pending.added) - sum_ints(&pending.removed)),
            (Aggregate::Min, Some(t)) => extreme(t.ints.iter(), pending, |a, b| a < b),
            (Aggregate::Max, Some(t)) => extreme(t.ints.iter().rev(), pending, |a, b| a > b),
            _ => Err(EvalError::Type("aggregate")),
        }
    }
}

fn count_true(values: &[Value]) -> i128 {
    values.iter().filter(|v| **v == Value::Bool(true)).count() as i128
}

fn sum_ints(values: &[Value]) -> i128 {
    values.iter().map(|v| if let Value::Int(n) = v { i128::from(*n) } else { 0 }).sum()
}

/// The least (or greatest) value of the multiset, walked from that end,
/// after the pending removals and additions: the walk skips at most as many
/// entries as there are removals.
fn extreme<'a>(
    walk: impl Iterator<Item = (&'a i64, &'a u64)>,
    pending: &Pending,
    better: impl Fn(i64, i64) -> bool,
) -> Result<Value, EvalError> {
    let mut removed: BTreeMap<i64, u64> = BTreeMap::new();
    for v in &pending.removed {
        if let Value::Int(n) = v {
            *removed.entry(*n).or_insert(0) += 1;
        }
    }
    let mut best = walk.map(|(v, n)| (*v, *n)).find(|(v, n)| removed.get(v).copied().unwrap_or(0) < *n).map(|(v, _)| v);
    for v in &pending.added {
        if let Value::Int(n) = v {
            if best.is_none_or(|b| better(*n, b)) {
                best = Some(*n);
            }
        }
    }
    best.map(Value::Int).ok_or(EvalError::Empty)
}

/// Changes to one aggregate not committed yet: values leaving and entering
/// it, and instances created (positive) or deleted (negative).
#[derive(Default)]
struct Pending {
    removed: Vec<Value>,
    added: Vec<Value>,
    instances: i128,
}

/// `(template field, instance field)` pairs of an instance.
pub(crate) fn instance_fields(
    program: &Program,
    kind: DomainId,
    d: DomainId,
) -> impl Iterator<Item = (FieldId, FieldId)> + '_ {
    let template = program.domains.get(kind.index()).map(|t| t.fields.as_slice()).unwrap_or(&[]);
    let instance = program.domains.get(d.index()).map(|i| i.fields.as_slice()).unwrap_or(&[]);
    template.iter().copied().zip(instance.iter().copied())
}

/// Instances a creation check adds: their kind and their template fields'
/// initial values.
pub(crate) type Created = (DomainId, BTreeMap<FieldId, Value>);

/// The state an expression is evaluated in: committed values, writes not
/// committed yet, instances being created or deleted, and the key of the
/// instance evaluating when a kind's template is evaluated for one.
#[derive(Clone, Copy)]
pub(crate) struct World<'a> {
    pub values: &'a [Value],
    pub program: &'a Program,
    pub index: &'a Index,
    pub aggregates: &'a Aggregates,
    /// Pending writes; fields of a kind's template stand for the instance
    /// being created (see `key`).
    pub writes: Option<&'a BTreeMap<FieldId, Value>>,
    pub created: &'a [Created],
    pub deleted: &'a [DomainId],
    pub key: Option<&'a str>,
}

impl<'a> World<'a> {
    /// The committed state.
    pub(crate) fn committed(
        values: &'a [Value],
        program: &'a Program,
        index: &'a Index,
        aggregates: &'a Aggregates,
    ) -> World<'a> {
        World { values, program, index, aggregates, writes: None, created: &[], deleted: &[], key: None }
    }

    /// The same state with `writes` pending on top.
    pub(crate) fn with_writes(self, writes: &'a BTreeMap<FieldId, Value>) -> World<'a> {
        World { writes: Some(writes), ..self }
    }

    /// What is pending for one aggregate.
    fn pending(&self, kind: DomainId, field: Option<FieldId>) -> Pending {
        let mut p = Pending::default();
        if let (Some(writes), Some(tf)) = (self.writes, field) {
            for (f, new) in writes {
                let live = self.index.template_of(*f) == Some(tf)
                    && !self.deleted.iter().any(|d| self.program.fields.get(f.index()).is_some_and(|x| x.domain == *d));
                if let (true, Some(old)) = (live, self.values.get(f.index())) {
                    p.removed.push(old.clone());
                    p.added.push(new.clone());
                }
            }
        }
        for (k, values) in self.created {
            if *k == kind {
                p.instances += 1;
                if let Some(tf) = field {
                    let default = self.program.fields.get(tf.index()).map(|f| f.default.clone());
                    p.added.extend(values.get(&tf).cloned().or(default));
                }
            }
        }
        for d in self.deleted {
            if self.index.kind_of(*d) != Some(kind) {
                continue;
            }
            p.instances -= 1;
            if let Some(f) = field.and_then(|tf| self.index.instance_field(self.program, *d, tf)) {
                // The value it leaves with: a pending write's, else the committed one.
                let current = self.writes.and_then(|w| w.get(&f)).or_else(|| self.values.get(f.index()));
                p.removed.extend(current.cloned());
            }
        }
        p
    }
}

impl Fields for World<'_> {
    fn field(&self, field: FieldId) -> Option<&Value> {
        self.writes.and_then(|w| w.get(&field)).or_else(|| self.values.get(field.index()))
    }

    fn key(&self) -> Option<&str> {
        self.key
    }

    fn aggregate(&self, op: Aggregate, kind: DomainId, field: Option<FieldId>) -> Result<Value, EvalError> {
        self.aggregates.value(op, kind, field, &self.pending(kind, field))
    }

    fn lookup(&self, kind: DomainId, key: &str, field: FieldId) -> Result<Value, EvalError> {
        let d = self.index.instances.get(&(kind.0, key.to_string())).copied().map(DomainId);
        let d = d.filter(|d| !self.deleted.contains(d)).ok_or_else(|| EvalError::NoInstance(key.to_string()))?;
        let f = self.index.instance_field(self.program, d, field).ok_or(EvalError::UnknownField(field.0))?;
        self.field(f).cloned().ok_or(EvalError::UnknownField(f.0))
    }
}

/// Template fields that some aggregate reads, and per kind the goals,
/// invariants and guarded domains that read its instances through an
/// aggregate or lookup (they are re-evaluated when instances come and go).
#[derive(Clone, Debug, Default)]
pub(crate) struct KindReaders {
    pub aggregated: BTreeSet<FieldId>,
    pub goals: BTreeMap<u32, Vec<lexum_compiler::program::GoalId>>,
    pub invariants: BTreeMap<u32, Vec<lexum_compiler::program::InvariantId>>,
    pub guards: BTreeMap<u32, Vec<DomainId>>,
}

impl Index {
    /// The template field an instance's field copies (`None` for fields of
    /// singletons, templates and deleted instances).
    pub(crate) fn template_of(&self, f: FieldId) -> Option<FieldId> {
        self.template_field.get(f.index()).copied().flatten()
    }

    /// The kind of an instance's domain (deleted ones too).
    pub(crate) fn kind_of(&self, d: DomainId) -> Option<DomainId> {
        self.instance_kind.get(&d.0).copied().map(DomainId)
    }

    /// The instance `d`'s copy of template field `tf`.
    pub(crate) fn instance_field(&self, program: &Program, d: DomainId, tf: FieldId) -> Option<FieldId> {
        let kind = self.kind_of(d)?;
        instance_fields(program, kind, d).find(|(t, _)| *t == tf).map(|(_, f)| f)
    }

    /// Records a live instance's fields as copies of its kind's template.
    pub(crate) fn map_instance(&mut self, program: &Program, kind: DomainId, d: DomainId) {
        self.instance_kind.insert(d.0, kind.0);
        if self.template_field.len() < program.fields.len() {
            self.template_field.resize(program.fields.len(), None);
        }
        for (tf, f) in instance_fields(program, kind, d) {
            self.template_field[f.index()] = Some(tf);
        }
    }

    /// Forgets a deleted instance's fields as copies (its values leave the
    /// aggregates).
    pub(crate) fn unmap_instance(&mut self, program: &Program, d: DomainId) {
        if let Some(domain) = program.domains.get(d.index()) {
            for f in &domain.fields {
                if let Some(slot) = self.template_field.get_mut(f.index()) {
                    *slot = None;
                }
            }
        }
    }

    /// Registers the goals, invariants and guards of domain `d` that read
    /// kinds through aggregates or lookups.
    pub(crate) fn add_kind_readers(&mut self, program: &Program, d: DomainId) {
        let Some(domain) = program.domains.get(d.index()) else { return };
        let reads = |e: &lexum_compiler::program::Expr| {
            let mut out = Vec::new();
            lexum_compiler::lower::kind_reads(e, &mut out);
            out
        };
        let readers = &mut self.kind_readers;
        for g in &domain.goals {
            for (kind, field, aggregated) in reads(&program.goals[g.index()].predicate) {
                push_unique(readers.goals.entry(kind.0).or_default(), *g);
                if let (true, Some(f)) = (aggregated, field) {
                    readers.aggregated.insert(f);
                }
            }
        }
        for i in &domain.invariants {
            for (kind, field, aggregated) in reads(&program.invariants[i.index()].predicate) {
                push_unique(readers.invariants.entry(kind.0).or_default(), *i);
                if let (true, Some(f)) = (aggregated, field) {
                    readers.aggregated.insert(f);
                }
            }
        }
        for t in &domain.transitions {
            let transition = &program.transitions[t.index()];
            let mut exprs: Vec<&lexum_compiler::program::Expr> = transition.when.iter().collect();
            for s in &transition.slices {
                lexum_compiler::bounds::body_exprs(&s.body, &mut exprs);
            }
            for e in exprs {
                for (kind, field, aggregated) in reads(e) {
                    if transition.when.as_ref().is_some_and(|w| std::ptr::eq(w, e)) {
                        push_unique(readers.guards.entry(kind.0).or_default(), d);
                    }
                    if let (true, Some(f)) = (aggregated, field) {
                        readers.aggregated.insert(f);
                    }
                }
            }
        }
        for h in &domain.handlers {
            let mut exprs = Vec::new();
            lexum_compiler::bounds::body_exprs(&program.handlers[h.index()].body, &mut exprs);
            for e in exprs {
                for (_, field, aggregated) in reads(e) {
                    if let (true, Some(f)) = (aggregated, field) {
                        readers.aggregated.insert(f);
                    }
                }
            }
        }
    }
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}
