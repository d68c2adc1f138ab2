//! Kinds and instances (SPEC §2.4): a kind (`domain Pool[name]`) is a
//! template in the installed program; creating `Pool[web]` appends a copy of
//! the template to the engine's program — fields, goals, invariants,
//! transitions and handlers with fresh ids, `key` written in as `"web"`, and
//! each `Kind[key]` read pointed at that kind's instance with the same key.
//! Everything else in the engine (indexes, scheduling, verdicts, histories)
//! then works on instances as on singletons, and names them `Pool[web].Sized`.
//!
//! The instance list is replicated state; the expanded program is rebuilt
//! from the template and that list (on restore and on a new version), so
//! every replica allocates the same ids.

use std::collections::BTreeMap;
use std::sync::Arc;

use lexum_compiler::program::{
    Domain, DomainId, Dominance, Expr, FieldId, GoalId, HandlerId, InvariantId, Place, Program, Stmt, TransitionId,
    Value,
};
use serde::{Deserialize, Serialize};

use crate::eval;
use crate::provenance::{Cause, WriteCause};
use crate::state::{GoalState, Index};

/// The instance tables of [`Index`]: live instances by `(kind, key)`, each
/// instance's key by its domain, and the deleted instances' domains.
pub(crate) type InstanceTables = (BTreeMap<(u32, String), u32>, BTreeMap<u32, String>, std::collections::BTreeSet<u32>);

/// Builds [`InstanceTables`] from the instance records.
pub(crate) fn instance_tables(p: &Program, records: &[InstanceRecord]) -> InstanceTables {
    let kinds: BTreeMap<&str, u32> = p
        .domains
        .iter()
        .enumerate()
        .filter(|(_, d)| d.key.is_some())
        .map(|(i, d)| (d.name.as_str(), i as u32))
        .collect();
    let mut live = BTreeMap::new();
    let mut key_of = BTreeMap::new();
    let mut deleted = std::collections::BTreeSet::new();
    for r in records {
        key_of.insert(r.domain, r.key.clone());
        if r.deleted {
            deleted.insert(r.domain);
        } else if let Some(&k) = kinds.get(r.kind.as_str()) {
            live.insert((k, r.key.clone()), r.domain);
        }
    }
    (live, key_of, deleted)
}
use crate::{codes, Cx, CycleVerdict, Engine, EventKind, GoalStatus, Rejection};

/// The handler a kind declares to let transitions create its instances.
pub const CREATE: &str = "create";

/// Where a message goes (see [`Engine::route_send`]).
pub(crate) enum Route {
    /// This (singleton's or live instance's) handler.
    To(HandlerId),
    /// The kind's `on create`, after creating the instance with this key.
    Create(String),
    /// Nowhere: no live instance has the key.
    Missing,
}

/// Longest instance key.
pub const MAX_KEY_LEN: usize = 128;

/// One instance ever created, in creation order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InstanceRecord {
    /// The kind's name.
    pub kind: String,
    /// The key.
    pub key: String,
    /// The instance's domain in the expanded program.
    pub domain: u32,
    /// Index of the entry that created it.
    pub created_at: u64,
    /// Deleted: its work was cancelled; its history stays for queries.
    pub deleted: bool,
}

/// An instance to create: its key and initial field values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewInstance {
    /// The key (`web` in `Pool[web]`).
    pub key: String,
    /// Initial values by field name; other fields take their defaults.
    pub values: Vec<(String, Value)>,
}

/// `Kind[key]`, the name an instance's domain has.
pub fn instance_name(kind: &str, key: &str) -> String {
    format!("{kind}[{key}]")
}

/// Whether `key` may name an instance: 1 to 128 bytes of letters, digits
/// and `-_.:`, so that `Kind[key].field` and `Kind/key` parse back.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// Maps a template's ids to an instance's.
#[derive(Default)]
struct IdMap {
    fields: BTreeMap<FieldId, FieldId>,
    handlers: BTreeMap<HandlerId, HandlerId>,
    goals: BTreeMap<GoalId, GoalId>,
    transitions: BTreeMap<TransitionId, TransitionId>,
    key: String,
}

impl IdMap {
    fn field(&self, f: FieldId) -> FieldId {
        self.fields.get(&f).copied().unwrap_or(f)
    }

    fn expr(&self, e: &Expr) -> Expr {
        match e {
            Expr::Key => Expr::Lit(Value::Str(self.key.clone())),
            Expr::Field(f) => Expr::Field(self.field(*f)),
            // Aggregates and lookups name the kind's template: every
            // instance's copy reads the same instances.
            Expr::Lit(_) | Expr::Slot(_) | Expr::Aggregate { .. } => e.clone(),
            Expr::Lookup { kind, key, field } => {
                Expr::Lookup { kind: *kind, key: Box::new(self.expr(key)), field: *field }
            }
            Expr::List(items) => Expr::List(items.iter().map(|i| self.expr(i)).collect()),
            Expr::Call(b, items) => Expr::Call(*b, items.iter().map(|i| self.expr(i)).collect()),
            Expr::Unary(op, a) => Expr::Unary(*op, Box::new(self.expr(a))),
            Expr::Binary(op, a, b) => Expr::Binary(*op, Box::new(self.expr(a)), Box::new(self.expr(b))),
            Expr::Quantified { kind, slot, list, body } => Expr::Quantified {
                kind: *kind,
                slot: *slot,
                list: Box::new(self.expr(list)),
                body: Box::new(self.expr(body)),
            },
        }
    }

    fn stmts(&self, body: &[Stmt]) -> Vec<Stmt> {
        body.iter()
            .map(|s| match s {
                Stmt::Let { slot, value } => Stmt::Let { slot: *slot, value: self.expr(value) },
                Stmt::Assign { place, op, value } => {
                    let place = match place {
                        Place::Field(f) => Place::Field(self.field(*f)),
                        Place::Slot(slot) => Place::Slot(*slot),
                    };
                    Stmt::Assign { place, op: *op, value: self.expr(value) }
                }
                Stmt::If { cond, then, otherwise } => {
                    Stmt::If { cond: self.expr(cond), then: self.stmts(then), otherwise: self.stmts(otherwise) }
                }
                Stmt::For { slot, list, body } => {
                    Stmt::For { slot: *slot, list: self.expr(list), body: self.stmts(body) }
                }
                Stmt::Emit { effect, args, bind } => {
                    Stmt::Emit { effect: *effect, args: args.iter().map(|a| self.expr(a)).collect(), bind: *bind }
                }
                // A send to another kind's template handler stays one: it is
                // resolved to the instance with the sender's key when sent.
                Stmt::Send { handler, args, key } => Stmt::Send {
                    handler: self.handlers.get(handler).copied().unwrap_or(*handler),
                    args: args.iter().map(|a| self.expr(a)).collect(),
                    key: key.as_ref().map(|k| self.expr(k)),
                },
            })
            .collect()
    }
}

/// Appends an instance of template `kind` to `p` and returns its domain.
/// `instances` resolves `(kind, key)` to an existing instance's domain for
/// the kinds the template reads as `Kind[key]`; a missing one is an error.
fn instantiate(
    p: &mut Program,
    kind: DomainId,
    key: &str,
    instances: &BTreeMap<(u32, String), u32>,
) -> Result<DomainId, String> {
    let t: Domain = p.domains[kind.index()].clone();
    let d = DomainId(p.domains.len() as u32);
    let mut map = IdMap { key: key.to_string(), ..IdMap::default() };
    let mut reads = Vec::new();
    for r in &t.reads {
        if p.domains[r.index()].key.is_none() {
            reads.push(*r);
            continue;
        }
        let Some(&other) = instances.get(&(r.0, key.to_string())) else {
            return Err(format!(
                "{} reads {}: create that instance first",
                instance_name(&t.name, key),
                instance_name(&p.domains[r.index()].name, key)
            ));
        };
        let (template_fields, instance_fields) =
            (p.domains[r.index()].fields.clone(), p.domains[other as usize].fields.clone());
        map.fields.extend(template_fields.into_iter().zip(instance_fields));
        reads.push(DomainId(other));
    }
    let fields: Vec<FieldId> = t
        .fields
        .iter()
        .map(|f| {
            let id = FieldId(p.fields.len() as u32);
            let mut field = p.fields[f.index()].clone();
            field.domain = d;
            p.fields.push(field);
            map.fields.insert(*f, id);
            id
        })
        .collect();
    let handler_base = p.handlers.len() as u32;
    for (i, h) in t.handlers.iter().enumerate() {
        map.handlers.insert(*h, HandlerId(handler_base + i as u32));
    }
    let goal_base = p.goals.len() as u32;
    for (i, g) in t.goals.iter().enumerate() {
        map.goals.insert(*g, GoalId(goal_base + i as u32));
    }
    let transition_base = p.transitions.len() as u32;
    for (i, tr) in t.transitions.iter().enumerate() {
        map.transitions.insert(*tr, TransitionId(transition_base + i as u32));
    }
    let handlers_of =
        |ids: &[HandlerId], map: &IdMap| ids.iter().map(|h| map.handlers.get(h).copied().unwrap_or(*h)).collect();
    let fields_of = |ids: &[FieldId], map: &IdMap| ids.iter().map(|f| map.field(*f)).collect::<Vec<_>>();
    for h in &t.handlers {
        let mut handler = p.handlers[h.index()].clone();
        handler.domain = d;
        handler.body = map.stmts(&handler.body);
        handler.write_set = fields_of(&handler.write_set, &map);
        handler.sends = handlers_of(&handler.sends, &map);
        p.handlers.push(handler);
    }
    for g in &t.goals {
        let mut goal = p.goals[g.index()].clone();
        goal.domain = d;
        goal.predicate = map.expr(&goal.predicate);
        goal.read_set = fields_of(&goal.read_set, &map);
        goal.transitions = goal.transitions.iter().map(|tr| map.transitions.get(tr).copied().unwrap_or(*tr)).collect();
        p.goals.push(goal);
    }
    let invariants: Vec<InvariantId> = t
        .invariants
        .iter()
        .map(|i| {
            let id = InvariantId(p.invariants.len() as u32);
            let mut invariant = p.invariants[i.index()].clone();
            invariant.domain = d;
            invariant.predicate = map.expr(&invariant.predicate);
            invariant.read_set = fields_of(&invariant.read_set, &map);
            p.invariants.push(invariant);
            id
        })
        .collect();
    for tr in &t.transitions {
        let mut transition = p.transitions[tr.index()].clone();
        transition.domain = d;
        transition.goal = map.goals.get(&transition.goal).copied().unwrap_or(transition.goal);
        transition.when = transition.when.as_ref().map(|w| map.expr(w));
        transition.write_set = fields_of(&transition.write_set, &map);
        for slice in &mut transition.slices {
            slice.body = map.stmts(&slice.body);
            slice.write_set = fields_of(&slice.write_set, &map);
            slice.sends = handlers_of(&slice.sends, &map);
        }
        p.transitions.push(transition);
    }
    // A static pair with one side or both in the template holds for the
    // instance: the template's side is mapped, the other kept.
    let pairs: Vec<Dominance> = p
        .dominance
        .iter()
        .filter(|pair| map.goals.contains_key(&pair.higher) || map.goals.contains_key(&pair.lower))
        .map(|pair| Dominance {
            higher: map.goals.get(&pair.higher).copied().unwrap_or(pair.higher),
            lower: map.goals.get(&pair.lower).copied().unwrap_or(pair.lower),
            fields: pair.fields.iter().map(|f| map.field(*f)).collect(),
        })
        .collect();
    p.dominance.extend(pairs);
    p.domains.push(Domain {
        name: instance_name(&t.name, key),
        key: None,
        priority: t.priority,
        reads,
        fields,
        goals: (0..t.goals.len() as u32).map(|i| GoalId(goal_base + i)).collect(),
        invariants,
        transitions: (0..t.transitions.len() as u32).map(|i| TransitionId(transition_base + i)).collect(),
        handlers: (0..t.handlers.len() as u32).map(|i| HandlerId(handler_base + i)).collect(),
    });
    Ok(d)
}

/// The program with every recorded instance appended, in creation order
/// (deleted ones too: their ids stay allocated), and the live instances by
/// `(kind, key)`.
/// With `keep_all` (a restore) every record must instantiate; otherwise (a
/// new program version) records that cannot are dropped and returned.
pub(crate) fn expand(
    template: &Program,
    records: &mut Vec<InstanceRecord>,
    keep_all: bool,
) -> Result<(Program, Vec<InstanceRecord>), String> {
    let mut p = template.clone();
    let mut latest: BTreeMap<(u32, String), u32> = BTreeMap::new();
    let kinds: BTreeMap<String, u32> = template
        .domains
        .iter()
        .enumerate()
        .filter(|(_, d)| d.key.is_some())
        .map(|(i, d)| (d.name.clone(), i as u32))
        .collect();
    let mut dropped = Vec::new();
    let mut kept = Vec::with_capacity(records.len());
    for mut record in records.drain(..) {
        let made = match kinds.get(record.kind.as_str()) {
            Some(&kind) => instantiate(&mut p, DomainId(kind), &record.key, &latest).map(|d| (kind, d)),
            None => Err(format!("kind `{}` is not in the program", record.kind)),
        };
        match made {
            Ok((kind, d)) => {
                record.domain = d.0;
                latest.insert((kind, record.key.clone()), d.0);
                kept.push(record);
            }
            Err(e) if keep_all => return Err(e),
            Err(_) => dropped.push(record),
        }
    }
    *records = kept;
    Ok((p, dropped))
}

impl Engine {
    /// The template domain of kind `name` (E002 when there is no such kind).
    pub(crate) fn kind_id(&self, name: &str) -> Result<DomainId, Rejection> {
        let program =
            self.program.as_ref().ok_or_else(|| Rejection::new(codes::PROGRAM, "no program has been submitted yet"))?;
        let d = self.index.domains.get(name).copied().filter(|d| program.domains[d.index()].key.is_some());
        d.ok_or_else(|| Rejection::new(codes::UNKNOWN, format!("unknown kind `{name}`")))
    }

    /// Checks a creation without applying it: the initial values of each
    /// new instance by field id, or why not.
    fn check_create(
        &self,
        kind: &str,
        instances: &[NewInstance],
        upsert: bool,
    ) -> Result<Vec<Option<BTreeMap<FieldId, Value>>>, Rejection> {
        let k = self.kind_id(kind)?;
        let program = self.program.as_ref().ok_or_else(|| Rejection::new(codes::PROGRAM, "no program"))?;
        let template = &program.domains[k.index()];
        let mut planned = std::collections::BTreeSet::new();
        let mut out = Vec::with_capacity(instances.len());
        let mut created: Vec<crate::aggregates::Created> = Vec::new();
        let mut views = Vec::new();
        for new in instances {
            if !valid_key(&new.key) {
                return Err(Rejection::new(
                    codes::UNKNOWN,
                    format!("bad key `{}`: 1 to {MAX_KEY_LEN} letters, digits or -_.:", new.key),
                ));
            }
            if !planned.insert(new.key.clone()) {
                return Err(Rejection::new(
                    codes::UNKNOWN,
                    format!("{} is created twice", instance_name(kind, &new.key)),
                ));
            }
            let exists = self.index.instances.contains_key(&(k.0, new.key.clone()));
            if exists && !upsert {
                return Err(Rejection::new(
                    codes::UNKNOWN,
                    format!("{} exists already", instance_name(kind, &new.key)),
                ));
            }
            let mut values = BTreeMap::new();
            for (name, value) in &new.values {
                let f = template
                    .fields
                    .iter()
                    .copied()
                    .find(|f| program.fields[f.index()].name == *name)
                    .ok_or_else(|| Rejection::new(codes::UNKNOWN, format!("unknown field `{kind}.{name}`")))?;
                let field = &program.fields[f.index()];
                if !value.has_type(&field.ty) {
                    return Err(Rejection::new(
                        codes::TYPE,
                        format!("`{kind}.{name}` is {} but the value {value} is not", field.ty),
                    ));
                }
                eval::check_len(value, field.max_len)
                    .map_err(|e| Rejection::new(codes::TYPE, format!("`{kind}.{name}`: {e}")))?;
                values.insert(f, value.clone());
            }
            if exists {
                // An upsert writes an existing instance: checked as the
                // mutation it becomes, so the entry is all or none.
                let domain = instance_name(kind, &new.key);
                let writes: Vec<crate::FieldWrite> = new
                    .values
                    .iter()
                    .map(|(field, value)| crate::FieldWrite {
                        domain: domain.clone(),
                        field: field.clone(),
                        value: value.clone(),
                    })
                    .collect();
                self.check_mutation(&writes)?;
                out.push(None);
                continue;
            }
            for r in &template.reads {
                let read = &program.domains[r.index()];
                if read.key.is_some() && !self.index.instances.contains_key(&(r.0, new.key.clone())) {
                    return Err(Rejection::new(
                        codes::UNKNOWN,
                        format!(
                            "{} reads {}: create that instance first",
                            instance_name(kind, &new.key),
                            instance_name(&read.name, &new.key)
                        ),
                    ));
                }
            }
            let mut view = values.clone();
            for f in &template.fields {
                view.entry(*f).or_insert_with(|| program.fields[f.index()].default.clone());
            }
            for r in &template.reads {
                if let Some(&other) = self.index.instances.get(&(r.0, new.key.clone())) {
                    let read = &program.domains[r.index()];
                    for (tf, inf) in read.fields.iter().zip(&program.domains[other as usize].fields) {
                        if let Some(v) = self.values.get(inf.index()) {
                            view.insert(*tf, v.clone());
                        }
                    }
                }
            }
            created.push((k, values.clone()));
            views.push((new.key.as_str(), view));
            out.push(Some(values));
        }
        // Each new instance's invariants, and those reading the kind
        // through aggregates, see the whole batch created.
        let world = crate::aggregates::World { created: &created, ..self.world(program) };
        for (key, view) in &views {
            let fields = crate::aggregates::World { writes: Some(view), key: Some(key), ..world };
            for i in &template.invariants {
                let inv = &program.invariants[i.index()];
                if !matches!(eval::holds(&inv.predicate, inv.slots, &fields), Ok(true)) {
                    return Err(Rejection::new(
                        codes::INVARIANT,
                        format!("invariant {}.{} would be violated", instance_name(kind, key), inv.name),
                    ));
                }
            }
        }
        if !created.is_empty() {
            self.check_kind_invariants(program, k, world)?;
        }
        Ok(out)
    }

    /// Dry run of a creation.
    pub(crate) fn validate_create(&self, kind: &str, instances: &[NewInstance], upsert: bool) -> Result<(), Rejection> {
        self.check_create(kind, instances, upsert).map(|_| ())
    }

    /// Creates instances (and, with `upsert`, writes the given values of
    /// those that exist), all or none.
    pub(crate) fn create_instances(
        &mut self,
        cx: &mut Cx,
        kind: &str,
        instances: &[NewInstance],
        upsert: bool,
        principal: &str,
    ) -> Result<(), Rejection> {
        let plan = self.check_create(kind, instances, upsert)?;
        let k = self.kind_id(kind)?;
        self.epoch += 1;
        let cause = WriteCause {
            author: crate::provenance::Author::Outside(principal.to_string()),
            cause: Cause::Client { principal: principal.to_string(), caused_by: Vec::new(), observed: Vec::new() },
        };
        for (new, values) in instances.iter().zip(plan) {
            match values {
                None => {
                    let writes: Vec<crate::FieldWrite> = new
                        .values
                        .iter()
                        .map(|(field, value)| crate::FieldWrite {
                            domain: instance_name(kind, &new.key),
                            field: field.clone(),
                            value: value.clone(),
                        })
                        .collect();
                    if !writes.is_empty() {
                        self.mutate(cx, &writes, principal, &[])?;
                    }
                }
                Some(values) => self.create_one(cx, k, kind, &new.key, values, &cause),
            }
        }
        Ok(())
    }

    fn create_one(
        &mut self,
        cx: &mut Cx,
        kind: DomainId,
        kind_name: &str,
        key: &str,
        values: BTreeMap<FieldId, Value>,
        cause: &WriteCause,
    ) {
        let Some(program) = self.program.as_mut() else { return };
        let expanded = Arc::make_mut(program);
        let (goals_before, fields_before) = (expanded.goals.len(), expanded.fields.len());
        let d = match instantiate(expanded, kind, key, &self.index.instances) {
            Ok(d) => d,
            Err(message) => {
                cx.event(EventKind::Rejected, Some(instance_name(kind_name, key)), None, Some(codes::UNKNOWN), message);
                return;
            }
        };
        let domain = expanded.domains[d.index()].clone();
        let template_fields = expanded.domains[kind.index()].fields.clone();
        for (i, f) in expanded.fields[fields_before..].iter().enumerate() {
            let template = template_fields.get(i).copied();
            let value = template.and_then(|t| values.get(&t).cloned()).unwrap_or_else(|| f.default.clone());
            self.values.push(value);
        }
        self.instances.push(InstanceRecord {
            kind: kind_name.to_string(),
            key: key.to_string(),
            domain: d.0,
            created_at: cx.index,
            deleted: false,
        });
        let program = self.program.clone();
        let Some(program) = program else { return };
        let index = Arc::make_mut(&mut self.index);
        index.add_domain(&program, d);
        index.instances.insert((kind.0, key.to_string()), d.0);
        index.key_of.insert(d.0, key.to_string());
        index.map_instance(&program, kind, d);
        index.add_kind_readers(&program, d);
        self.aggregates.add_instance(&program, kind, d, &self.values);
        cx.kinds_changed.insert(kind.0);
        for g in goals_before..program.goals.len() {
            let goal = &program.goals[g];
            let holds = eval::holds(&goal.predicate, goal.slots, &self.world(&program)).unwrap_or(false);
            self.goal_states.push(GoalState::new(holds, cx.index));
            cx.status_dirty.insert(GoalId(g as u32));
            let status = if holds { GoalStatus::Satisfied } else { GoalStatus::Violated };
            cx.goal_status_event(domain.name.clone(), goal.name.clone(), None, status);
        }
        for (i, f) in domain.fields.iter().enumerate() {
            let default = program.fields[f.index()].default.clone();
            let value = self.values[f.index()].clone();
            if value != default || template_fields.get(i).is_some_and(|t| values.contains_key(t)) {
                self.log_write(cx.index, *f, default, value, cause.cause.clone());
            }
        }
        cx.event(
            EventKind::Created,
            Some(domain.name.clone()),
            None,
            None,
            format!("instance {} created", domain.name),
        );
        cx.dirty_domains.insert(d);
    }

    /// Deletes instances: their work is cancelled (cycles, effects, steps,
    /// messages, timers) and their goals leave the listing; their fields'
    /// histories stay for `why`.
    pub(crate) fn delete_instances(&mut self, cx: &mut Cx, kind: &str, keys: &[String]) -> Result<(), Rejection> {
        let domains = self.check_delete(kind, keys)?;
        self.epoch += 1;
        for (key, d) in keys.iter().zip(domains) {
            self.delete_one(cx, kind, key, d);
        }
        Ok(())
    }

    /// A cycle elsewhere no longer waits for a message or an effect (of a
    /// deleted instance): it may advance or be judged.
    fn release_outstanding(&mut self, cx: &mut Cx, cycle: u64, effect: Option<u64>) {
        let Some(c) = self.cycles.get_mut(&cycle) else { return };
        c.outstanding = c.outstanding.saturating_sub(1);
        if let Some(key) = effect {
            if c.waiting.remove(&key) && c.waiting.is_empty() && c.step.is_none() && !c.slices_done && !c.suspended {
                self.advance(cx, cycle);
                return;
            }
        }
        self.maybe_close(cx, cycle);
    }

    /// Dry run of a deletion.
    pub(crate) fn validate_delete(&self, kind: &str, keys: &[String]) -> Result<(), Rejection> {
        self.check_delete(kind, keys).map(|_| ())
    }

    /// The live instances to delete, or why not (a missing one, or one that
    /// another live instance reads).
    fn check_delete(&self, kind: &str, keys: &[String]) -> Result<Vec<DomainId>, Rejection> {
        let k = self.kind_id(kind)?;
        let program = self.program.as_ref().ok_or_else(|| Rejection::new(codes::PROGRAM, "no program"))?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let d =
                self.index.instances.get(&(k.0, key.clone())).copied().ok_or_else(|| {
                    Rejection::new(codes::UNKNOWN, format!("no instance {}", instance_name(kind, key)))
                })?;
            // Another kind's instance with the same key that reads this one.
            let reader = self.index.kinds.iter().map(|r| &program.domains[r.index()]).zip(&self.index.kinds).find(
                |(other, r)| {
                    **r != k && other.reads.contains(&k) && self.index.instances.contains_key(&(r.0, key.clone()))
                },
            );
            if let Some((reader, _)) = reader {
                return Err(Rejection::new(
                    codes::UNKNOWN,
                    format!("{} reads {}: delete it first", instance_name(&reader.name, key), instance_name(kind, key)),
                ));
            }
            out.push(DomainId(d));
        }
        let world = crate::aggregates::World { deleted: &out, ..self.world(program) };
        self.check_kind_invariants(program, k, world)?;
        Ok(out)
    }

    /// The invariants reading kind `k`'s instances through aggregates or
    /// lookups, on a state with instances being created or deleted.
    fn check_kind_invariants(
        &self,
        program: &Program,
        k: DomainId,
        world: crate::aggregates::World<'_>,
    ) -> Result<(), Rejection> {
        for i in self.index.kind_readers.invariants.get(&k.0).into_iter().flatten() {
            if !self.invariant_live(program, *i) || world.deleted.contains(&program.invariants[i.index()].domain) {
                continue;
            }
            let inv = &program.invariants[i.index()];
            if !matches!(eval::holds(&inv.predicate, inv.slots, &world), Ok(true)) {
                let domain = &program.domains[inv.domain.index()].name;
                return Err(Rejection::new(
                    codes::INVARIANT,
                    format!("invariant {domain}.{} would be violated", inv.name),
                ));
            }
        }
        Ok(())
    }

    fn delete_one(&mut self, cx: &mut Cx, kind: &str, key: &str, d: DomainId) {
        let Some(program) = self.program.clone() else { return };
        let domain = &program.domains[d.index()];
        let open: Vec<u64> = self.cycles.iter().filter(|(_, c)| c.domain == d).map(|(id, _)| *id).collect();
        for id in open {
            self.abort_cycle(cx, id, CycleVerdict::Deleted, None);
        }
        let goals: Vec<GoalId> = domain.goals.clone();
        // Effects its slices and handlers emitted, and messages to its
        // handlers, go; a cycle elsewhere that waited for them is released.
        let dropped: Vec<u64> = self
            .effects
            .iter()
            .filter(|(_, e)| e.domain == d || e.goal.is_some_and(|g| goals.contains(&g)))
            .map(|(k, _)| *k)
            .collect();
        let mut released = Vec::new();
        for key in dropped {
            if let Some(e) = self.effects.remove(&key) {
                if let crate::state::EffectState::Backoff { timer } = e.state {
                    self.timers.remove(&timer);
                }
                released.extend(e.cycle.map(|c| (c, Some(key))));
            }
        }
        let handlers = domain.handlers.clone();
        let messages: Vec<u64> =
            self.messages.iter().filter(|(_, m)| handlers.contains(&m.handler)).map(|(id, _)| *id).collect();
        for m in messages {
            if let Some(message) = self.messages.remove(&m) {
                released.extend(message.cycle.map(|c| (c, None)));
            }
        }
        for (cycle, effect) in released {
            self.release_outstanding(cx, cycle, effect);
        }
        // What its cycles caused elsewhere is no longer theirs: messages
        // still to deliver and observers naming its effects are untracked.
        for m in self.messages.values_mut() {
            if m.tag.is_some_and(|t| goals.contains(&t.goal)) {
                m.tag = None;
            }
        }
        let origins: Vec<String> =
            self.effect_origins.iter().filter(|(_, o)| goals.contains(&o.tag.goal)).map(|(k, _)| k.clone()).collect();
        for key in origins {
            self.effect_origins.remove(&key);
        }
        self.effect_origin_order.retain(|k| self.effect_origins.contains_key(k));
        for g in &goals {
            self.forget_dominance(cx, *g);
            self.end_damping(cx, *g);
            // Goals it dominated are free again.
            let freed: Vec<GoalId> = self.index.dominates.get(g.index()).cloned().unwrap_or_default();
            for lower in freed {
                cx.status_dirty.insert(lower);
                if let Some(goal) = program.goals.get(lower.index()) {
                    cx.dirty_domains.insert(goal.domain);
                }
            }
        }
        self.steps.retain(|_, s| s.domain != d);
        self.timers.retain(|_, t| match t.kind {
            crate::state::TimerKind::CycleBackoff { goal } | crate::state::TimerKind::Damping { goal } => {
                !goals.contains(&goal)
            }
            crate::state::TimerKind::DominanceExpiry { higher, lower } => {
                !goals.contains(&higher) && !goals.contains(&lower)
            }
            crate::state::TimerKind::EffectRetry { .. } => true,
        });
        for g in &goals {
            let gs = &mut self.goal_states[g.index()];
            gs.inert = true;
            gs.open_cycle = None;
            gs.backoff = None;
            gs.damping_timer = None;
            self.tugs.retain(|(a, b), _| *a != g.0 && *b != g.0);
        }
        self.running.remove(&d.0);
        if let Some(record) = self.instances.iter_mut().rev().find(|r| r.domain == d.0) {
            record.deleted = true;
        }
        let k = self.kind_id(kind).ok();
        if let Some(k) = k {
            self.aggregates.remove_instance(&program, k, d, &self.values);
            cx.kinds_changed.insert(k.0);
        }
        let index = Arc::make_mut(&mut self.index);
        if let Some(k) = k {
            index.instances.remove(&(k.0, key.to_string()));
        }
        index.unmap_instance(&program, d);
        index.deleted.insert(d.0);
        cx.event(
            EventKind::Deleted,
            Some(domain.name.clone()),
            None,
            None,
            format!("instance {} deleted", domain.name),
        );
    }

    /// The live instances of kind `k`.
    pub(crate) fn live_instances(&self, k: DomainId) -> impl Iterator<Item = DomainId> + '_ {
        let live = self.index.instances.range((k.0, String::new())..);
        live.take_while(move |((kind, _), _)| *kind == k.0).map(|(_, d)| DomainId(*d))
    }

    /// Where a send from domain `from` to handler `h` goes: a singleton's
    /// handler as is; a kind's template handler to the live instance with
    /// `key` (computed, `Kind[expr]`) or else `from`'s key (`Kind[key]`).
    pub(crate) fn route_send(&self, program: &Program, from: DomainId, h: HandlerId, key: Option<&str>) -> Route {
        let Some(handler) = program.handlers.get(h.index()) else { return Route::Missing };
        let Some(target) = program.domains.get(handler.domain.index()) else { return Route::Missing };
        if target.key.is_none() {
            return Route::To(h);
        }
        let Some(key) = key.or_else(|| self.index.key_of.get(&from.0).map(String::as_str)) else {
            return Route::Missing;
        };
        match self.index.instances.get(&(handler.domain.0, key.to_string())) {
            Some(&instance) => {
                let position = target.handlers.iter().position(|x| *x == h);
                let routed = position.and_then(|i| program.domains.get(instance as usize)?.handlers.get(i).copied());
                routed.map_or(Route::Missing, Route::To)
            }
            None if handler.name == CREATE => Route::Create(key.to_string()),
            None => Route::Missing,
        }
    }

    /// Creates the instance a message to a kind's `on create` names, just
    /// before the message is delivered, and points the message at it.
    /// Returns why not when it cannot (it exists by now, or the creation
    /// is refused).
    pub(crate) fn create_for_message(
        &mut self,
        cx: &mut Cx,
        message: &mut crate::state::Message,
    ) -> Result<(), Rejection> {
        let Some(key) = message.create.clone() else { return Ok(()) };
        let program = self.program.clone().ok_or_else(|| Rejection::new(codes::PROGRAM, "no program"))?;
        let kind = program
            .handlers
            .get(message.handler.index())
            .map(|h| h.domain)
            .ok_or_else(|| Rejection::new(codes::UNKNOWN, "no such handler"))?;
        // Created since the message was sent: `on create` runs on it, as an
        // apply would.
        if let Route::To(h) = self.route_send(&program, kind, message.handler, Some(&key)) {
            message.handler = h;
            message.create = None;
            return Ok(());
        }
        let kind_name = program.domains[kind.index()].name.clone();
        drop(program);
        self.check_create(&kind_name, &[NewInstance { key: key.clone(), values: Vec::new() }], false)?;
        let cause = match message.tag {
            Some(tag) => self.cycle_write_cause(
                self.program.as_deref().ok_or_else(|| Rejection::new(codes::PROGRAM, "no program"))?,
                tag,
                format!("{kind_name}.{CREATE}"),
            ),
            None => WriteCause {
                author: crate::provenance::Author::Untracked,
                cause: Cause::Handler { handler: format!("{kind_name}.{CREATE}") },
            },
        };
        // The sending cycle's doing, not outside input: no new epoch.
        self.create_one(cx, kind, &kind_name, &key, BTreeMap::new(), &cause);
        let program = self.program.clone().ok_or_else(|| Rejection::new(codes::PROGRAM, "no program"))?;
        match self.route_send(&program, kind, message.handler, Some(&key)) {
            Route::To(h) => {
                message.handler = h;
                message.create = None;
                Ok(())
            }
            _ => Err(Rejection::new(codes::UNKNOWN, format!("{} was not created", instance_name(&kind_name, &key)))),
        }
    }
}

impl Index {
    /// Adds one domain's entries (an instance just appended).
    pub(crate) fn add_domain(&mut self, p: &Program, d: DomainId) {
        let domain = &p.domains[d.index()];
        self.domains.insert(domain.name.clone(), d);
        self.fields.push(domain.fields.iter().map(|f| (p.fields[f.index()].name.clone(), *f)).collect());
        let fields = p.fields.len();
        self.field_goals.resize(fields, Vec::new());
        self.field_invariants.resize(fields, Vec::new());
        self.field_guards.resize(fields, Vec::new());
        for g in &domain.goals {
            for f in &p.goals[g.index()].read_set {
                if let Some(goals) = self.field_goals.get_mut(f.index()) {
                    goals.push(*g);
                }
            }
        }
        for i in &domain.invariants {
            for f in &p.invariants[i.index()].read_set {
                if let Some(invariants) = self.field_invariants.get_mut(f.index()) {
                    invariants.push(*i);
                }
            }
        }
        for t in &domain.transitions {
            let mut fields = Vec::new();
            if let Some(when) = &p.transitions[t.index()].when {
                lexum_compiler::lower::expr_fields(when, &mut fields);
            }
            for f in fields {
                if let Some(ds) = self.field_guards.get_mut(f.index()) {
                    if !ds.contains(&d) {
                        ds.push(d);
                    }
                }
            }
        }
        self.dominators.resize(p.goals.len(), Vec::new());
        self.dominates.resize(p.goals.len(), Vec::new());
        let new_goal = |g: &GoalId| domain.goals.contains(g);
        for pair in p.dominance.iter().filter(|pair| new_goal(&pair.lower) || new_goal(&pair.higher)) {
            if !self.dominators[pair.lower.index()].contains(&pair.higher) {
                self.dominators[pair.lower.index()].push(pair.higher);
                self.dominates[pair.higher.index()].push(pair.lower);
            }
        }
    }
}
