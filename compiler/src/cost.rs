//! The static cost model (E008). Every goal and invariant gets a worst-case
//! number of abstract evaluation steps; one over the budget is rejected.
//!
//! Each expression node costs one step plus its operands. Operations whose
//! work grows with a list cost the list's maximum length (declared with
//! `list<T, N>`, else `CompileOptions::default_list_max`): `==`/`!=` and `+`
//! on lists, `contains`, `min`/`max` of a list. A quantifier costs its list
//! plus `N * (body + 1)`, so nested quantifiers multiply. String operations
//! count one step each. Arithmetic saturates, so a huge cost stays huge.

use crate::diagnostic::{Code, Diagnostic, Span};
use crate::program::{BinaryOp, Builtin};
use crate::types::Ty;

/// Cost of a literal, field or local read.
pub const LEAF: u64 = 1;

/// Cost of a list literal with `n` items whose own costs add up to `items`.
pub fn list_literal(items: u64, n: usize) -> u64 {
    items.saturating_add(n as u64).saturating_add(1)
}

/// Cost of a unary operation.
pub fn unary(operand: u64) -> u64 {
    operand.saturating_add(1)
}

/// Cost of `l op r` where `l` has type `lty`.
pub fn binary(op: BinaryOp, l: u64, r: u64, lty: &Ty, rty: &Ty) -> u64 {
    let own = match (op, lty) {
        (BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Add, Ty::List(_, n)) => {
            u64::from(*n).saturating_add(u64::from(rty.list_bound().unwrap_or(0))).max(1)
        }
        _ => 1,
    };
    l.saturating_add(r).saturating_add(own)
}

/// Cost of a builtin call with argument costs `args` and types `tys`.
pub fn builtin(b: Builtin, args: u64, tys: &[Ty]) -> u64 {
    let first_bound = tys.first().and_then(Ty::list_bound).map(u64::from);
    let own = match b {
        Builtin::Len | Builtin::Abs => 1,
        Builtin::Contains => first_bound.unwrap_or(1).max(1),
        Builtin::Min | Builtin::Max => first_bound.unwrap_or(tys.len() as u64).max(1),
    };
    args.saturating_add(own)
}

/// Cost of `all|any x in list: body` over a list of at most `bound` items.
pub fn quantifier(list: u64, bound: u32, body: u64) -> u64 {
    list.saturating_add(u64::from(bound).saturating_mul(body.saturating_add(1))).saturating_add(1)
}

/// E008 if `cost` is over `budget`.
pub fn check_budget(kind: &str, name: &str, cost: u64, budget: u64, span: Span) -> Option<Diagnostic> {
    (cost > budget).then(|| {
        Diagnostic::new(
            Code::E008,
            span,
            format!("{kind} `{name}` may cost {cost} evaluation steps, over the budget of {budget}"),
        )
        .with_hint("declare smaller list bounds (`list<T, 16>`), or avoid nesting quantifiers over long lists")
    })
}
