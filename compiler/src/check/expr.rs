//! Expressions: names (E002, E007 for undeclared reads), types (E003),
//! builtins, quantifiers, clock/random/I/O calls (E006), and their cost.

use super::{builtin_of, is_forbidden, Body, Kind, Local, T};
use crate::cost;
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::program::*;
use crate::syntax::ast::{self, ExprKind, Name};
use crate::types::Ty;

impl Body<'_> {
    pub(super) fn expr(&mut self, e: &ast::Expr) -> T {
        match &e.kind {
            ExprKind::Int(n) => T { expr: Expr::Lit(Value::Int(*n)), ty: Ty::Int, cost: cost::LEAF },
            ExprKind::Bool(b) => T { expr: Expr::Lit(Value::Bool(*b)), ty: Ty::Bool, cost: cost::LEAF },
            ExprKind::Str(s) => T { expr: Expr::Lit(Value::Str(s.clone())), ty: Ty::Str, cost: cost::LEAF },
            ExprKind::Error => T::error(),
            ExprKind::Path(path) if path.every_instance() => {
                let kind = path.segments()[0].text;
                self.diags.push(
                    Diagnostic::new(
                        Code::E003,
                        e.span,
                        format!("`{kind}[*]` stands for every instance, not one value"),
                    )
                    .with_hint(format!(
                        "aggregate it: count({kind}[*]), sum/min/max({kind}[*].n), all/any({kind}[*].flag)"
                    )),
                );
                T::error()
            }
            ExprKind::Path(path) => self.path(path.segments(), path.keyed(), e.span),
            ExprKind::Lookup(kind, key, field) => self.instance_lookup(kind, key, field, e.span),
            ExprKind::List(items) => {
                let mut elem = Ty::Unknown;
                let mut exprs = Vec::new();
                let mut total = 0u64;
                for it in items {
                    let t = self.expr(it);
                    if !t.ty.compatible(&elem) {
                        self.err(
                            Code::E003,
                            it.span,
                            format!("list items must have one type: expected {elem}, found {}", t.ty),
                        );
                    } else {
                        elem = elem.join(&t.ty);
                    }
                    total = total.saturating_add(t.cost);
                    exprs.push(t.expr);
                }
                let n = items.len();
                T {
                    expr: Expr::List(exprs),
                    ty: Ty::List(Box::new(elem), n as u32),
                    cost: cost::list_literal(total, n),
                }
            }
            ExprKind::Unary(op, inner) => {
                let t = self.expr(inner);
                let want = match op {
                    UnaryOp::Not => Ty::Bool,
                    UnaryOp::Neg => Ty::Int,
                };
                if !t.ty.compatible(&want) {
                    self.err(Code::E003, inner.span, format!("expected {want}, found {}", t.ty));
                }
                T { expr: Expr::Unary(*op, Box::new(t.expr)), ty: want, cost: cost::unary(t.cost) }
            }
            ExprKind::Binary(op, l, r) => self.binary(*op, l, r, e.span),
            ExprKind::Call(path, args) => self.call(path.segments(), args, e.span),
            ExprKind::Quantified(q, var, list, body) => {
                let l = self.expr(list);
                let elem = self.element_type(&l.ty, list.span);
                let bound = l.ty.list_bound().unwrap_or(0);
                let slot = self.alloc();
                self.scopes.push(vec![(var.text.to_string(), Local::Slot(slot, elem))]);
                let b = self.expr(body);
                self.scopes.pop();
                self.expect_bool(&b, body.span, "a quantifier's body");
                T {
                    cost: cost::quantifier(l.cost, bound, b.cost),
                    expr: Expr::Quantified { kind: *q, slot, list: Box::new(l.expr), body: Box::new(b.expr) },
                    ty: Ty::Bool,
                }
            }
        }
    }

    pub(super) fn field_ref(&self, fid: u32) -> T {
        T { expr: Expr::Field(FieldId(fid)), ty: self.syms.fields[fid as usize].ty.clone(), cost: cost::LEAF }
    }

    pub(super) fn path(&mut self, segs: &[Name], keyed: bool, span: Span) -> T {
        let own = self.domain;
        if self.kind == Kind::Const && !(segs.len() == 1 && self.lookup(segs[0].text).is_some()) {
            self.diags.push(
                Diagnostic::new(Code::E003, span, "a default must be a constant")
                    .with_hint("defaults cannot read fields; set the field from a transition or a client"),
            );
            return T::error();
        }
        match segs {
            [n] => {
                if let Some(local) = self.lookup(n.text) {
                    return match local {
                        Local::Slot(s, ty) => T { expr: Expr::Slot(s), ty, cost: cost::LEAF },
                        Local::Inline(t) => *t,
                    };
                }
                if let Some(&f) = self.syms.domains[own as usize].fields.get(n.text) {
                    return self.field_ref(f);
                }
                if n.text == "key" && self.syms.domains[own as usize].kind {
                    return T { expr: Expr::Key, ty: Ty::Str, cost: cost::LEAF };
                }
                if self.syms.domain_index.contains_key(n.text) {
                    self.err(Code::E003, n.span, format!("`{}` is a domain, not a value", n.text));
                    return T::error();
                }
                let dn = self.domain_name().to_string();
                let mut d = Diagnostic::new(Code::E002, n.span, format!("unknown name `{}`", n.text));
                if let Some(other) = self.syms.domains.iter().find(|o| o.fields.contains_key(n.text)) {
                    d = d.with_hint(format!(
                        "`{}` is a field of `{}`: write `{}.{}`",
                        n.text, other.name, other.name, n.text
                    ));
                } else {
                    d = d.with_hint(format!("`{dn}` has no field or local named `{}`", n.text));
                }
                self.diags.push(d);
                T::error()
            }
            [d, f] => {
                let Some(&did) = self.syms.domain_index.get(d.text) else {
                    self.err(Code::E002, d.span, format!("unknown domain `{}`", d.text));
                    return T::error();
                };
                let is_kind = self.syms.domains[did as usize].kind;
                let own_kind = self.syms.domains[own as usize].kind;
                if let Some(diag) = crate::resolve::instance_address(d, is_kind, keyed, own_kind) {
                    self.diags.push(diag);
                    return T::error();
                }
                let Some(&fid) = self.syms.domains[did as usize].fields.get(f.text) else {
                    self.err(Code::E002, f.span, format!("domain `{}` has no field `{}`", d.text, f.text));
                    return T::error();
                };
                if did != own && !self.syms.domains[own as usize].reads.contains(&did) {
                    let dn = self.domain_name().to_string();
                    self.diags.push(
                        Diagnostic::new(
                            Code::E007,
                            span,
                            format!(
                                "domain `{dn}` reads `{}.{}` but does not declare `reads {}`",
                                d.text, f.text, d.text
                            ),
                        )
                        .with_hint(format!("add `reads {}` to domain `{dn}`", d.text)),
                    );
                }
                self.field_ref(fid)
            }
            _ => {
                self.err(Code::E002, span, "a name is `field` or `Domain.field`");
                T::error()
            }
        }
    }

    pub(super) fn binary(&mut self, op: BinaryOp, l: &ast::Expr, r: &ast::Expr, span: Span) -> T {
        let a = self.expr(l);
        let b = self.expr(r);
        let cost = cost::binary(op, a.cost, b.cost, &a.ty, &b.ty);
        let mismatch = |s: &mut Self, want: &str| {
            s.err(Code::E003, span, format!("`{}` expects {want}, found {} and {}", op_symbol(op), a.ty, b.ty));
        };
        let ty = match op {
            BinaryOp::Add => match (&a.ty, &b.ty) {
                (Ty::Unknown, t) | (t, Ty::Unknown) => t.clone(),
                (Ty::Int, Ty::Int) => Ty::Int,
                (Ty::Str, Ty::Str) => Ty::Str,
                (Ty::List(x, n), Ty::List(y, m)) if x.compatible(y) => {
                    Ty::List(Box::new(x.join(y)), n.saturating_add(*m))
                }
                _ => {
                    mismatch(self, "two ints, two strings or two lists of one type");
                    Ty::Unknown
                }
            },
            BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => {
                if !(a.ty.compatible(&Ty::Int) && b.ty.compatible(&Ty::Int)) {
                    mismatch(self, "ints");
                }
                Ty::Int
            }
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                let ok = (a.ty.compatible(&Ty::Int) && b.ty.compatible(&Ty::Int))
                    || (a.ty.compatible(&Ty::Str) && b.ty.compatible(&Ty::Str));
                if !ok {
                    mismatch(self, "two ints or two strings");
                }
                Ty::Bool
            }
            BinaryOp::Eq | BinaryOp::Ne => {
                if !a.ty.compatible(&b.ty) {
                    mismatch(self, "two values of one type");
                }
                Ty::Bool
            }
            BinaryOp::And | BinaryOp::Or => {
                if !(a.ty.compatible(&Ty::Bool) && b.ty.compatible(&Ty::Bool)) {
                    mismatch(self, "bools");
                }
                Ty::Bool
            }
        };
        T { expr: Expr::Binary(op, Box::new(a.expr), Box::new(b.expr)), ty, cost }
    }

    pub(super) fn call(&mut self, path: &[Name], args: &[ast::Arg], span: Span) -> T {
        if let (Some(op), [arg]) =
            (path.first().filter(|_| path.len() == 1).and_then(|n| Aggregate::from_name(n.text)), args)
        {
            if let ExprKind::Path(every) = &arg.value.kind {
                if every.every_instance() {
                    return self.aggregate(op, every, span);
                }
            }
            if super::kinds::mentions_every(&arg.value) {
                self.not_incremental(op, span);
                return T::error();
            }
        }
        let checked: Vec<T> = args.iter().map(|a| self.expr(&a.value)).collect();
        if let Some(bad) = path.iter().find(|n| is_forbidden(n.text)) {
            self.diags.push(
                Diagnostic::new(Code::E006, span, format!("`{}` asks for a wall clock, randomness or I/O, which Lexum does not have", bad.text))
                    .with_hint("time is logical (the log index); bring outside facts in as state written by a client or an effect's result"),
            );
            return T::error();
        }
        let builtin = match path {
            [n] => builtin_of(n.text),
            _ => None,
        };
        let Some(b) = builtin else {
            let shown: Vec<&str> = path.iter().map(|n| n.text).collect();
            self.diags.push(
                Diagnostic::new(Code::E002, span, format!("unknown function `{}`", shown.join(".")))
                    .with_hint("the builtins are len, min, max, abs and contains; count, sum, min, max, all and any aggregate `Kind[*]`; effects are called with `emit`"),
            );
            return T::error();
        };
        let tys: Vec<Ty> = checked.iter().map(|t| t.ty.clone()).collect();
        let arg_cost = checked.iter().fold(0u64, |acc, t| acc.saturating_add(t.cost));
        let cost = cost::builtin(b, arg_cost, &tys);
        let name = path[0].text;
        let ok = match (b, tys.as_slice()) {
            (Builtin::Len, [t]) => matches!(t, Ty::List(..) | Ty::Str | Ty::Unknown),
            (Builtin::Abs, [t]) => t.compatible(&Ty::Int),
            (Builtin::Min | Builtin::Max, [t]) => {
                matches!(t, Ty::List(inner, _) if inner.compatible(&Ty::Int)) || *t == Ty::Unknown
            }
            (Builtin::Min | Builtin::Max, ts) if ts.len() >= 2 => ts.iter().all(|t| t.compatible(&Ty::Int)),
            (Builtin::Contains, [Ty::List(inner, _), x]) => inner.compatible(x),
            (Builtin::Contains, [a, x]) => (a.compatible(&Ty::Str) && x.compatible(&Ty::Str)) || *a == Ty::Unknown,
            _ => false,
        };
        if !ok {
            let shown: Vec<String> = tys.iter().map(|t| t.to_string()).collect();
            let sig = match b {
                Builtin::Len => "len(list or string) -> int",
                Builtin::Abs => "abs(int) -> int",
                Builtin::Min | Builtin::Max => "min/max(int, int, ...) or min/max(list<int>) -> int",
                Builtin::Contains => "contains(list<T>, T) or contains(string, string) -> bool",
            };
            self.diags.push(
                Diagnostic::new(Code::E003, span, format!("`{name}` cannot take ({})", shown.join(", ")))
                    .with_hint(sig),
            );
        }
        let ty = if b == Builtin::Contains { Ty::Bool } else { Ty::Int };
        T { expr: Expr::Call(b, checked.into_iter().map(|t| t.expr).collect()), ty, cost }
    }
}

fn op_symbol(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Mul => "*",
        BinaryOp::Div => "/",
        BinaryOp::Rem => "%",
        BinaryOp::Add => "+",
        BinaryOp::Sub => "-",
        BinaryOp::Lt => "<",
        BinaryOp::Le => "<=",
        BinaryOp::Gt => ">",
        BinaryOp::Ge => ">=",
        BinaryOp::Eq => "==",
        BinaryOp::Ne => "!=",
        BinaryOp::And => "&&",
        BinaryOp::Or => "||",
    }
}
