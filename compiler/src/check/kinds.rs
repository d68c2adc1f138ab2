//! Expressions over a kind's instances: aggregates (`count(Pool[*])`,
//! `sum(Pool[*].nodes)`, ...) and lookups by a computed key
//! (`Pool[name].nodes`). Both need `reads Kind[*]` from another domain
//! (E007); an aggregate the engine could not maintain incrementally, one
//! over an expression rather than a field, is E008.

use super::{Body, Kind, T};
use crate::cost;
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::program::{Aggregate, DomainId, Expr, FieldId};
use crate::syntax::ast::{self, ExprKind, Name};
use crate::types::Ty;

impl Body<'_> {
    /// `op(Kind[*])` or `op(Kind[*].field)`.
    pub(super) fn aggregate(&mut self, op: Aggregate, path: &ast::Path, span: Span) -> T {
        let segs = path.segments();
        let Some(kind) = self.every_kind(&segs[0], span) else { return T::error() };
        let field = match segs.get(1) {
            None => None,
            Some(f) => match self.syms.domains[kind as usize].fields.get(f.text) {
                Some(&fid) => Some(fid),
                None => {
                    self.err(Code::E002, f.span, format!("kind `{}` has no field `{}`", segs[0].text, f.text));
                    return T::error();
                }
            },
        };
        let field_ty = field.map(|f| self.syms.fields[f as usize].ty.clone());
        let (fits, ty, usage) = match op {
            Aggregate::Count => (
                field_ty.as_ref().is_none_or(|t| t.compatible(&Ty::Bool)),
                Ty::Int,
                "count(Kind[*]) or count(Kind[*].flag) of a bool field",
            ),
            Aggregate::Sum | Aggregate::Min | Aggregate::Max => (
                field_ty.as_ref().is_some_and(|t| t.compatible(&Ty::Int)),
                Ty::Int,
                "sum/min/max(Kind[*].n) of an int field",
            ),
            Aggregate::All | Aggregate::Any => (
                field_ty.as_ref().is_some_and(|t| t.compatible(&Ty::Bool)),
                Ty::Bool,
                "all/any(Kind[*].flag) of a bool field",
            ),
        };
        if !fits {
            let found = field_ty.map_or_else(|| "the instances themselves".to_string(), |t| t.to_string());
            self.diags.push(
                Diagnostic::new(Code::E003, span, format!("`{}` cannot aggregate {found}", op.name())).with_hint(usage),
            );
        }
        T { expr: Expr::Aggregate { op, kind: DomainId(kind), field: field.map(FieldId) }, ty, cost: cost::LEAF }
    }

    /// `Kind[expr].field`.
    pub(super) fn instance_lookup(&mut self, kind: &Name, key: &ast::Expr, field: &Name, span: Span) -> T {
        let k = self.expr(key);
        let Some(kid) = self.every_kind(kind, span) else { return T::error() };
        if !k.ty.compatible(&Ty::Str) {
            self.err(Code::E003, key.span, format!("an instance's key is a string, found {}", k.ty));
        }
        let Some(&fid) = self.syms.domains[kid as usize].fields.get(field.text) else {
            self.err(Code::E002, field.span, format!("kind `{}` has no field `{}`", kind.text, field.text));
            return T::error();
        };
        T {
            expr: Expr::Lookup { kind: DomainId(kid), key: Box::new(k.expr), field: FieldId(fid) },
            ty: self.syms.fields[fid as usize].ty.clone(),
            cost: k.cost.saturating_add(cost::LEAF),
        }
    }

    /// The kind named before `[*]` or `[expr]`, when it is one this body may
    /// read: its own, or one its domain declares `reads Kind[*]`.
    fn every_kind(&mut self, name: &Name, span: Span) -> Option<u32> {
        if self.kind == Kind::Const {
            self.diags.push(
                Diagnostic::new(Code::E003, span, "a default must be a constant")
                    .with_hint("defaults cannot read fields; set the field from a transition or a client"),
            );
            return None;
        }
        let Some(&did) = self.syms.domain_index.get(name.text) else {
            self.err(Code::E002, name.span, format!("unknown domain `{}`", name.text));
            return None;
        };
        if !self.syms.domains[did as usize].kind {
            self.diags.push(
                Diagnostic::new(Code::E002, name.span, format!("`{}` is not a kind: it has no instances", name.text))
                    .with_hint(format!("declare `domain {}[name]` to make it a kind", name.text)),
            );
            return None;
        }
        let own = self.domain;
        if did != own && !self.syms.domains[own as usize].all_reads.contains(&did) {
            let dn = self.domain_name().to_string();
            self.diags.push(
                Diagnostic::new(
                    Code::E007,
                    span,
                    format!(
                        "domain `{dn}` reads instances of `{}` but does not declare `reads {}[*]`",
                        name.text, name.text
                    ),
                )
                .with_hint(format!("add `reads {}[*]` to domain `{dn}`", name.text)),
            );
        }
        Some(did)
    }

    /// E008 for an aggregate over something other than `Kind[*]` or
    /// `Kind[*].field` that mentions every instance: its value would have to
    /// be recomputed over all instances at each mutation.
    pub(super) fn not_incremental(&mut self, op: Aggregate, span: Span) {
        self.diags.push(
            Diagnostic::new(
                Code::E008,
                span,
                format!("`{}` over an expression of every instance cannot be maintained incrementally", op.name()),
            )
            .with_hint(format!(
                "aggregate a field, `{}(Kind[*].field)`; keep the per-instance value in a field the kind's transitions write",
                op.name()
            )),
        );
    }
}

/// Whether an expression mentions `Kind[*]` anywhere.
pub(super) fn mentions_every(e: &ast::Expr) -> bool {
    match &e.kind {
        ExprKind::Path(p) => p.every_instance(),
        ExprKind::Int(_) | ExprKind::Bool(_) | ExprKind::Str(_) | ExprKind::Error => false,
        ExprKind::List(items) => items.iter().any(mentions_every),
        ExprKind::Unary(_, a) => mentions_every(a),
        ExprKind::Binary(_, a, b) | ExprKind::Quantified(_, _, a, b) => mentions_every(a) || mentions_every(b),
        ExprKind::Call(p, args) => p.every_instance() || args.iter().any(|a| mentions_every(&a.value)),
        ExprKind::Lookup(_, key, _) => mentions_every(key),
    }
}
