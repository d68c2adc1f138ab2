//! Lowering's last step: the sets the engine schedules by. Read-sets of goals
//! and invariants; write-sets, sends and emits of slices and handlers; each
//! transition's `write_set`/`emits` closed over the handlers its messages
//! reach (transitively); `reaches_goal`; and W002 for goals no transition can
//! repair.

use crate::check::SourceMap;
use crate::diagnostic::{Code, Diagnostic};
use crate::program::*;

/// Every field an expression may read, appended to `out`.
pub fn expr_fields(e: &Expr, out: &mut Vec<FieldId>) {
    match e {
        Expr::Lit(_) | Expr::Slot(_) | Expr::Key => {}
        Expr::Field(f) | Expr::Aggregate { field: Some(f), .. } => out.push(*f),
        Expr::Aggregate { field: None, .. } => {}
        Expr::Lookup { key, field, .. } => {
            out.push(*field);
            expr_fields(key, out);
        }
        Expr::List(items) | Expr::Call(_, items) => items.iter().for_each(|i| expr_fields(i, out)),
        Expr::Unary(_, x) => expr_fields(x, out),
        Expr::Binary(_, a, b) => {
            expr_fields(a, out);
            expr_fields(b, out);
        }
        Expr::Quantified { list, body, .. } => {
            expr_fields(list, out);
            expr_fields(body, out);
        }
    }
}

/// What an expression reads of a kind's instances, one entry per aggregate
/// or lookup: the kind, the template field (`None` for `count(Kind[*])`)
/// and whether it is an aggregate (else a `Kind[expr]` lookup).
pub fn kind_reads(e: &Expr, out: &mut Vec<(DomainId, Option<FieldId>, bool)>) {
    match e {
        Expr::Aggregate { kind, field, .. } => out.push((*kind, *field, true)),
        Expr::Lookup { kind, key, field } => {
            out.push((*kind, Some(*field), false));
            kind_reads(key, out);
        }
        Expr::Lit(_) | Expr::Slot(_) | Expr::Key | Expr::Field(_) => {}
        Expr::List(items) | Expr::Call(_, items) => items.iter().for_each(|i| kind_reads(i, out)),
        Expr::Unary(_, x) => kind_reads(x, out),
        Expr::Binary(_, a, b) | Expr::Quantified { list: a, body: b, .. } => {
            kind_reads(a, out);
            kind_reads(b, out);
        }
    }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v.dedup();
    v
}

/// Direct effects of a statement list: (writes, sends, emits).
fn stmt_sets(stmts: &[Stmt], w: &mut Vec<FieldId>, s: &mut Vec<HandlerId>, e: &mut Vec<EffectId>) {
    for st in stmts {
        match st {
            Stmt::Let { .. } => {}
            Stmt::Assign { place, .. } => {
                if let Place::Field(f) = place {
                    w.push(*f);
                }
            }
            Stmt::If { then, otherwise, .. } => {
                stmt_sets(then, w, s, e);
                stmt_sets(otherwise, w, s, e);
            }
            Stmt::For { body, .. } => stmt_sets(body, w, s, e),
            Stmt::Emit { effect, .. } => e.push(*effect),
            Stmt::Send { handler, .. } => s.push(*handler),
        }
    }
}

/// Fills every set in the program and reports W002 (only when `report` is
/// set: after other errors the sets are incomplete and the warning would mislead).
pub fn fill_sets(p: &mut Program, map: &SourceMap, report: bool, diags: &mut Vec<Diagnostic>) {
    for g in &mut p.goals {
        let mut v = Vec::new();
        expr_fields(&g.predicate, &mut v);
        g.read_set = sorted(v);
    }
    for i in &mut p.invariants {
        let mut v = Vec::new();
        expr_fields(&i.predicate, &mut v);
        i.read_set = sorted(v);
    }
    for h in &mut p.handlers {
        let (mut w, mut s, mut e) = (Vec::new(), Vec::new(), Vec::new());
        stmt_sets(&h.body, &mut w, &mut s, &mut e);
        h.write_set = sorted(w);
        h.sends = sorted(s);
        h.emits = sorted(e);
    }
    let handlers = &p.handlers;
    let domains = &p.domains;
    let mut visited = vec![u32::MAX; handlers.len()];
    // Per transition: the kinds whose instances it may create (it reaches
    // their `on create`).
    let mut creates: Vec<Vec<DomainId>> = vec![Vec::new(); p.transitions.len()];
    for (ti, t) in p.transitions.iter_mut().enumerate() {
        let (mut tw, mut te) = (Vec::new(), Vec::new());
        let mut stack = Vec::new();
        for sl in &mut t.slices {
            let (mut w, mut s, mut e) = (Vec::new(), Vec::new(), Vec::new());
            stmt_sets(&sl.body, &mut w, &mut s, &mut e);
            sl.write_set = sorted(w);
            sl.sends = sorted(s);
            sl.emits = sorted(e);
            tw.extend_from_slice(&sl.write_set);
            te.extend_from_slice(&sl.emits);
            stack.extend_from_slice(&sl.sends);
        }
        while let Some(h) = stack.pop() {
            let Some(slot) = visited.get_mut(h.index()) else { continue };
            if *slot == ti as u32 {
                continue;
            }
            *slot = ti as u32;
            let hd = &handlers[h.index()];
            if hd.name == "create" && domains.get(hd.domain.index()).is_some_and(|d| d.key.is_some()) {
                creates[ti].push(hd.domain);
            }
            tw.extend_from_slice(&hd.write_set);
            te.extend_from_slice(&hd.emits);
            stack.extend_from_slice(&hd.sends);
        }
        t.write_set = sorted(tw);
        t.emits = sorted(te);
    }
    for (ti, created) in creates.iter().enumerate() {
        let goal = p.transitions[ti].goal.index();
        let Some(g) = p.goals.get(goal) else { continue };
        let t = &p.transitions[ti];
        let mut reads = Vec::new();
        kind_reads(&g.predicate, &mut reads);
        let reaches = !t.emits.is_empty()
            || intersects(&t.write_set, &g.read_set)
            || created.iter().any(|k| reads.iter().any(|(kind, _, _)| kind == k));
        p.transitions[ti].reaches_goal = reaches;
    }
    if !report {
        return;
    }
    for (gi, g) in p.goals.iter().enumerate() {
        let span = map.goals.get(gi).copied().unwrap_or_default();
        if g.transitions.is_empty() {
            diags.push(
                Diagnostic::new(
                    Code::W002,
                    span,
                    format!("goal `{}` has no transition to repair it", p.goal_path(GoalId(gi as u32))),
                )
                .with_hint(format!("add `transition Name for {} {{ slice ... }}`", g.name)),
            );
        } else if !g.transitions.iter().any(|t| p.transitions[t.index()].reaches_goal) {
            diags.push(
                Diagnostic::new(
                    Code::W002,
                    span,
                    format!("no transition of goal `{}` can change what it reads", p.goal_path(GoalId(gi as u32))),
                )
                .with_hint(
                    "a transition must write a field the goal reads (directly or through a handler) or emit an effect",
                ),
            );
        }
    }
}

/// Whether two sorted slices share an element.
pub fn intersects<T: Ord>(a: &[T], b: &[T]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}
