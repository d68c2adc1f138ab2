//! Bounds a compiled program must keep, whoever produced its bytes: the
//! compiler guarantees them, and [`validate`] checks them again on every
//! program a node decodes (a hand-made program can claim anything). The
//! decoder itself refuses nesting deeper than [`MAX_DECODE_NESTING`] before
//! it can exhaust the stack ([`NestingGuard`]).

use std::cell::Cell;

use crate::check::SourceMap;
use crate::diagnostic::{Code, Diagnostic};
use crate::program::{Expr, Place, Program, SlotId, Stmt};

/// Deepest nesting of expressions, statements, values and types the decoder
/// accepts, counted together along one path.
pub const MAX_DECODE_NESTING: u32 = 1024;
/// Deepest expression the compiler produces (E008 beyond).
pub const MAX_EXPR_DEPTH: u32 = 512;
/// Deepest statement nesting (`if`, `for`) of a body.
pub const MAX_STMT_DEPTH: u32 = 256;
/// Most local slots of one body.
pub const MAX_SLOTS: u32 = 4096;
/// Longest declared list bound (`list<T, N>`).
pub const MAX_LIST_BOUND: u32 = 1 << 20;

thread_local! {
    static NESTING: Cell<u32> = const { Cell::new(0) };
}

/// Counts one level of nesting while a recursive value is decoded; fails
/// past [`MAX_DECODE_NESTING`]. The level is released when the guard drops.
pub struct NestingGuard(());

impl NestingGuard {
    /// Enters one level.
    pub fn enter<E: serde::de::Error>() -> Result<NestingGuard, E> {
        NestingGuard::enter_within(MAX_DECODE_NESTING)
    }

    /// Enters one level of a type that nests no deeper than `limit` (an
    /// entry holds a batch, which holds entries: a few levels at most).
    pub fn enter_within<E: serde::de::Error>(limit: u32) -> Result<NestingGuard, E> {
        NESTING.with(|n| {
            let level = n.get() + 1;
            if level > limit.min(MAX_DECODE_NESTING) {
                return Err(E::custom(format!("nested deeper than {limit} levels")));
            }
            n.set(level);
            Ok(NestingGuard(()))
        })
    }
}

impl Drop for NestingGuard {
    fn drop(&mut self) {
        NESTING.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// Depth of an expression tree (a leaf is 1).
pub fn expr_depth(e: &Expr) -> u32 {
    let children: Vec<&Expr> = match e {
        Expr::Lit(_) | Expr::Field(_) | Expr::Slot(_) | Expr::Key | Expr::Aggregate { .. } => Vec::new(),
        Expr::List(items) | Expr::Call(_, items) => items.iter().collect(),
        Expr::Unary(_, a) | Expr::Lookup { key: a, .. } => vec![a],
        Expr::Binary(_, a, b) => vec![a, b],
        Expr::Quantified { list, body, .. } => vec![list, body],
    };
    1 + children.into_iter().map(expr_depth).max().unwrap_or(0)
}

/// Visits every expression and statement of a body with its statement depth.
fn visit_stmts<'p>(stmts: &'p [Stmt], depth: u32, f: &mut dyn FnMut(Option<&'p Expr>, &'p Stmt, u32)) {
    for s in stmts {
        match s {
            Stmt::Let { value, .. } | Stmt::Assign { value, .. } => f(Some(value), s, depth),
            Stmt::If { cond, then, otherwise } => {
                f(Some(cond), s, depth);
                visit_stmts(then, depth + 1, f);
                visit_stmts(otherwise, depth + 1, f);
            }
            Stmt::For { list, body, .. } => {
                f(Some(list), s, depth);
                visit_stmts(body, depth + 1, f);
            }
            Stmt::Emit { args, .. } | Stmt::Send { args, .. } => {
                f(None, s, depth);
                for a in args {
                    f(Some(a), s, depth);
                }
            }
        }
    }
}

/// Every expression of a statement list (conditions, values, arguments),
/// nested blocks included, appended to `out`.
pub fn body_exprs<'p>(stmts: &'p [Stmt], out: &mut Vec<&'p Expr>) {
    visit_stmts(stmts, 1, &mut |e, _, _| out.extend(e));
}

/// Every slot an expression reads or binds.
fn expr_slots(e: &Expr, out: &mut Vec<SlotId>) {
    match e {
        Expr::Slot(s) => out.push(*s),
        Expr::Lit(_) | Expr::Field(_) | Expr::Key | Expr::Aggregate { .. } => {}
        Expr::List(items) | Expr::Call(_, items) => items.iter().for_each(|i| expr_slots(i, out)),
        Expr::Unary(_, a) | Expr::Lookup { key: a, .. } => expr_slots(a, out),
        Expr::Binary(_, a, b) => {
            expr_slots(a, out);
            expr_slots(b, out);
        }
        Expr::Quantified { slot, list, body, .. } => {
            out.push(*slot);
            expr_slots(list, out);
            expr_slots(body, out);
        }
    }
}

/// Checks one body: its slot count, every slot it names, and its depths.
fn check_body(what: &str, slots: u32, exprs: &[&Expr], stmts: &[Stmt]) -> Result<(), String> {
    if slots > MAX_SLOTS {
        return Err(format!("{what} declares {slots} local slots, over {MAX_SLOTS}"));
    }
    let mut all: Vec<&Expr> = exprs.to_vec();
    let mut named = Vec::new();
    let mut deepest = 0;
    visit_stmts(stmts, 1, &mut |e, s, depth| {
        deepest = deepest.max(depth);
        all.extend(e);
        match s {
            Stmt::Let { slot, .. } | Stmt::For { slot, .. } => named.push(*slot),
            Stmt::Assign { place: Place::Slot(slot), .. } => named.push(*slot),
            Stmt::Emit { bind: Some(slot), .. } => named.push(*slot),
            _ => {}
        }
    });
    if deepest > MAX_STMT_DEPTH {
        return Err(format!("{what} nests statements deeper than {MAX_STMT_DEPTH}"));
    }
    for e in all {
        if expr_depth(e) > MAX_EXPR_DEPTH {
            return Err(format!("{what} has an expression deeper than {MAX_EXPR_DEPTH}"));
        }
        expr_slots(e, &mut named);
    }
    match named.iter().find(|s| s.0 >= slots) {
        Some(s) => Err(format!("{what} names local slot {} of {slots}", s.0)),
        None => Ok(()),
    }
}

/// A body of a compiled program, by its table and index.
#[derive(Clone, Copy)]
enum Body {
    Goal(usize),
    Invariant(usize),
    Transition(usize),
    Handler(usize),
}

/// Checks each body (a transition with its guard and slices) and hands
/// every result to `f`.
fn check_bodies(p: &Program, mut f: impl FnMut(Body, Result<(), String>)) {
    for (i, g) in p.goals.iter().enumerate() {
        f(Body::Goal(i), check_body(&format!("goal `{}`", g.name), g.slots, &[&g.predicate], &[]));
    }
    for (i, inv) in p.invariants.iter().enumerate() {
        let result = check_body(&format!("invariant `{}`", inv.name), inv.slots, &[&inv.predicate], &[]);
        f(Body::Invariant(i), result);
    }
    for (i, t) in p.transitions.iter().enumerate() {
        let guard: Vec<&Expr> = t.when.iter().collect();
        let mut result = check_body(&format!("transition `{}`", t.name), t.slots, &guard, &[]);
        for s in &t.slices {
            result = result.and_then(|()| check_body(&format!("slice `{}.{}`", t.name, s.name), t.slots, &[], &s.body));
        }
        f(Body::Transition(i), result);
    }
    for (i, h) in p.handlers.iter().enumerate() {
        let result = if (h.params.len() as u64) > u64::from(h.slots) {
            Err(format!("handler `{}` has more parameters than slots", h.name))
        } else {
            check_body(&format!("handler `{}`", h.name), h.slots, &[], &h.body)
        };
        f(Body::Handler(i), result);
    }
}

/// Checks every bound a compiled program must keep (see the module docs).
pub fn validate(p: &Program) -> Result<(), String> {
    if let Some(f) = p.fields.iter().find(|f| f.max_len.is_some_and(|n| n > MAX_LIST_BOUND)) {
        return Err(format!("field `{}` declares a list bound over {MAX_LIST_BOUND}", f.name));
    }
    let mut first = Ok(());
    check_bodies(p, |_, result| {
        if first.is_ok() {
            first = result;
        }
    });
    first?;
    let mut exprs: Vec<&Expr> = p.goals.iter().map(|g| &g.predicate).collect();
    exprs.extend(p.invariants.iter().map(|i| &i.predicate));
    exprs.extend(p.transitions.iter().filter_map(|t| t.when.as_ref()));
    let bodies =
        p.transitions.iter().flat_map(|t| t.slices.iter().map(|s| &s.body)).chain(p.handlers.iter().map(|h| &h.body));
    for body in bodies {
        body_exprs(body, &mut exprs);
    }
    exprs.into_iter().try_for_each(|e| kind_refs(p, e))
}

/// Checks that every aggregate and lookup names a kind and one of its fields
/// (the engine indexes its instance tables by them).
fn kind_refs(p: &Program, e: &Expr) -> Result<(), String> {
    let names_kind_field = |kind: crate::program::DomainId, field: Option<crate::program::FieldId>| {
        let is_kind = p.domains.get(kind.index()).is_some_and(|d| d.key.is_some());
        let own_field = field.is_none_or(|f| p.fields.get(f.index()).is_some_and(|f| f.domain == kind));
        if is_kind && own_field {
            Ok(())
        } else {
            Err("an aggregate or lookup names something other than a kind's field".to_string())
        }
    };
    match e {
        Expr::Aggregate { kind, field, .. } => names_kind_field(*kind, *field),
        Expr::Lookup { kind, key, field } => {
            names_kind_field(*kind, Some(*field))?;
            kind_refs(p, key)
        }
        Expr::Lit(_) | Expr::Field(_) | Expr::Slot(_) | Expr::Key => Ok(()),
        Expr::List(items) | Expr::Call(_, items) => items.iter().try_for_each(|i| kind_refs(p, i)),
        Expr::Unary(_, a) => kind_refs(p, a),
        Expr::Binary(_, a, b) | Expr::Quantified { list: a, body: b, .. } => {
            kind_refs(p, a)?;
            kind_refs(p, b)
        }
    }
}

/// E008 for each body of a compiled program over a bound (too deep an
/// expression or statement nesting, too many locals): what [`validate`]
/// would refuse, reported where it was written.
pub fn diagnose(p: &Program, map: &SourceMap, diags: &mut Vec<Diagnostic>) {
    check_bodies(p, |body, result| {
        let Err(message) = result else { return };
        let span = match body {
            Body::Goal(i) => map.goals.get(i),
            Body::Invariant(i) => map.invariants.get(i),
            Body::Transition(i) => map.transitions.get(i),
            Body::Handler(i) => map.handlers.get(i),
        };
        diags.push(
            Diagnostic::new(Code::E008, span.copied().unwrap_or_default(), message)
                .with_hint("split the expression with `let`, or the body into smaller slices"),
        );
    });
}
