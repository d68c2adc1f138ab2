//! Statements: goal and invariant bodies (purity, E004), slice and handler
//! statements, `emit`/`send` arguments and assignment targets (ownership, E007).

use super::{Body, Kind, Local, T};
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::program::*;
use crate::resolve::ParamSig;
use crate::syntax::ast::{self, ExprKind, Name};
use crate::types::Ty;

impl Body<'_> {
    /// Goal and invariant bodies: optional `let`s then one boolean expression.
    pub(super) fn pure_body(&mut self, what: &str, name: &Name, body: &[ast::Stmt], body_span: Span) -> T {
        let mut result: Option<(T, Span)> = None;
        let mut impure = false;
        for stmt in body {
            match stmt {
                ast::Stmt::Let { name: n, value, .. } => {
                    let t = self.expr(value);
                    if let Some(scope) = self.scopes.last_mut() {
                        scope.push((n.text.to_string(), Local::Inline(Box::new(t))));
                    }
                }
                ast::Stmt::Assign { op, value, span, .. } => {
                    impure = true;
                    let mut d = Diagnostic::new(
                        Code::E004,
                        *span,
                        format!("assignment in {what} `{}`: {what}s are pure predicates", name.text),
                    );
                    d = if *op == AssignOp::Set {
                        d.with_hint("did you mean `==`?")
                    } else {
                        d.with_hint(format!("change state in a transition's slice, not in a {what}"))
                    };
                    self.diags.push(d);
                    self.expr(value);
                }
                ast::Stmt::Emit { span, args, .. } => {
                    impure = true;
                    self.diags.push(
                        Diagnostic::new(
                            Code::E004,
                            *span,
                            format!("{what} `{}` emits an effect: {what}s are pure", name.text),
                        )
                        .with_hint("emit effects from a transition's slice"),
                    );
                    for a in args {
                        self.expr(&a.value);
                    }
                }
                ast::Stmt::Send { span, args, .. } => {
                    impure = true;
                    self.diags.push(
                        Diagnostic::new(
                            Code::E004,
                            *span,
                            format!("{what} `{}` sends a message: {what}s are pure", name.text),
                        )
                        .with_hint("send messages from a transition's slice"),
                    );
                    for a in args {
                        self.expr(&a.value);
                    }
                }
                ast::Stmt::If { span, .. } | ast::Stmt::For { span, .. } => {
                    impure = true;
                    self.diags.push(
                        Diagnostic::new(
                            Code::E004,
                            *span,
                            format!("statements are not allowed in {what} `{}`", name.text),
                        )
                        .with_hint("write one boolean expression; use `all x in xs: ...` instead of a loop"),
                    );
                }
                ast::Stmt::Expr(e) if e.kind == ExprKind::Error => {
                    if result.is_none() {
                        result = Some((T::error(), e.span));
                    }
                }
                ast::Stmt::Expr(e) => {
                    if let Some((_, first)) = &result {
                        let d = Diagnostic::new(
                            Code::E001,
                            e.span,
                            format!("{what} `{}` has more than one expression", name.text),
                        )
                        .with_label(*first, "first expression")
                        .with_hint("combine them with `&&`");
                        self.diags.push(d);
                    } else {
                        let t = self.expr(e);
                        result = Some((t, e.span));
                    }
                }
            }
        }
        match result {
            Some((t, span)) => {
                self.expect_bool(&t, span, &format!("{what} `{}`", name.text));
                t
            }
            None => {
                if !impure {
                    self.err(Code::E003, body_span, format!("{what} `{}` has no predicate", name.text));
                }
                T::error()
            }
        }
    }

    pub(super) fn stmts(&mut self, stmts: &[ast::Stmt], top: bool) -> Vec<Stmt> {
        let mut out = Vec::with_capacity(stmts.len());
        for s in stmts {
            if let Some(st) = self.stmt(s, top) {
                out.push(st);
            }
        }
        out
    }

    pub(super) fn block(&mut self, stmts: &[ast::Stmt]) -> Vec<Stmt> {
        self.scopes.push(Vec::new());
        let out = self.stmts(stmts, false);
        self.scopes.pop();
        out
    }

    pub(super) fn stmt(&mut self, s: &ast::Stmt, top: bool) -> Option<Stmt> {
        match s {
            ast::Stmt::Let { name, value, .. } => {
                let t = self.expr(value);
                let slot = self.alloc();
                self.scopes.last_mut()?.push((name.text.to_string(), Local::Slot(slot, t.ty)));
                Some(Stmt::Let { slot, value: t.expr })
            }
            ast::Stmt::Assign { target, op, op_span, value, .. } => {
                let v = self.expr(value);
                let (place, ty) = self.place(target)?;
                match op {
                    AssignOp::Set => {
                        if !v.ty.compatible(&ty) {
                            self.err(Code::E003, value.span, format!("cannot assign {} to {}", v.ty, ty));
                        }
                    }
                    AssignOp::Add | AssignOp::Sub => {
                        let ok = match (&ty, op) {
                            (Ty::Int | Ty::Unknown, _) => v.ty.compatible(&Ty::Int),
                            (Ty::Str | Ty::List(..), AssignOp::Add) => v.ty.compatible(&ty),
                            _ => false,
                        };
                        if !ok {
                            self.err(Code::E003, *op_span, format!("cannot apply this operator to {ty} and {}", v.ty));
                        }
                    }
                }
                Some(Stmt::Assign { place, op: *op, value: v.expr })
            }
            ast::Stmt::If { cond, then, otherwise, .. } => {
                let c = self.expr(cond);
                self.expect_bool(&c, cond.span, "an `if` condition");
                let then = self.block(then);
                let otherwise = self.block(otherwise);
                Some(Stmt::If { cond: c.expr, then, otherwise })
            }
            ast::Stmt::For { name, list, body, .. } => {
                let l = self.expr(list);
                let elem = self.element_type(&l.ty, list.span);
                let slot = self.alloc();
                self.scopes.push(vec![(name.text.to_string(), Local::Slot(slot, elem))]);
                let body = self.stmts(body, false);
                self.scopes.pop();
                Some(Stmt::For { slot, list: l.expr, body })
            }
            ast::Stmt::Emit { namespace, name, args, bind, span } => {
                let key = (namespace.text.to_string(), name.text.to_string());
                let Some(&eid) = self.syms.effect_index.get(&key) else {
                    self.diags.push(
                        Diagnostic::new(
                            Code::E002,
                            namespace.span.to(name.span),
                            format!("unknown effect `{}.{}`", namespace.text, name.text),
                        )
                        .with_hint("declare it with `effect Namespace.Name(param: type, ...)`"),
                    );
                    for a in args {
                        self.expr(&a.value);
                    }
                    return None;
                };
                let sig = &self.syms.effects[eid as usize];
                let what = format!("effect `{}.{}`", sig.namespace, sig.name);
                let args = self.match_args(&what, &sig.params, args, *span);
                let bind = match bind {
                    None => None,
                    Some(b) => {
                        let returns = self.syms.effects[eid as usize].returns.clone();
                        match (self.kind, top, returns) {
                            (Kind::Slice, true, Some(ty)) => {
                                let slot = self.alloc();
                                self.pending.push((b.text.to_string(), Local::Slot(slot, ty)));
                                Some(slot)
                            }
                            (_, _, None) => {
                                self.diags.push(
                                    Diagnostic::new(Code::E003, b.span, format!("{what} returns nothing"))
                                        .with_hint("declare a result type: `effect Ns.Name(...) -> type`"),
                                );
                                None
                            }
                            (Kind::Slice, false, Some(_)) => {
                                self.err(Code::E003, b.span, "`-> name` is only allowed at the top level of a slice");
                                None
                            }
                            _ => {
                                self.diags.push(
                                    Diagnostic::new(
                                        Code::E003,
                                        b.span,
                                        "`-> name` is only allowed in transition slices",
                                    )
                                    .with_hint("a handler runs in one step, so nothing could read the result"),
                                );
                                None
                            }
                        }
                    }
                };
                Some(Stmt::Emit { effect: EffectId(eid), args, bind })
            }
            ast::Stmt::Send { domain, keyed, key, name, args, span } => {
                let Some(&did) = self.syms.domain_index.get(domain.text) else {
                    self.err(Code::E002, domain.span, format!("unknown domain `{}`", domain.text));
                    for a in args {
                        self.expr(&a.value);
                    }
                    return None;
                };
                let own_kind = self.syms.domains[self.domain as usize].kind;
                let target_kind = self.syms.domains[did as usize].kind;
                let key = match key {
                    // `Kind[expr]`: any instance, named by a string.
                    Some(key) => {
                        let k = self.expr(key);
                        if !target_kind {
                            let message = format!("`{}` is not a kind: send to it without a key", domain.text);
                            self.err(Code::E002, domain.span, message);
                        } else if !k.ty.compatible(&Ty::Str) {
                            self.err(Code::E003, key.span, format!("an instance's key is a string, found {}", k.ty));
                        }
                        Some(k.expr)
                    }
                    None => {
                        if let Some(diag) = crate::resolve::instance_address(domain, target_kind, *keyed, own_kind) {
                            self.diags.push(diag);
                        }
                        None
                    }
                };
                let Some(&hid) = self.syms.domains[did as usize].handlers.get(name.text) else {
                    self.diags.push(
                        Diagnostic::new(
                            Code::E002,
                            name.span,
                            format!("domain `{}` has no handler `{}`", domain.text, name.text),
                        )
                        .with_hint(format!("declare it in `{}` with `on {}(...) {{ ... }}`", domain.text, name.text)),
                    );
                    for a in args {
                        self.expr(&a.value);
                    }
                    return None;
                };
                let what = format!("handler `{}.{}`", domain.text, name.text);
                let params = self.syms.handlers[hid as usize].params.clone();
                let args = self.match_args(&what, &params, args, *span);
                Some(Stmt::Send { handler: HandlerId(hid), args, key })
            }
            ast::Stmt::Expr(ast::Expr { kind: ExprKind::Error, .. }) => None,
            ast::Stmt::Expr(e) => {
                let before = self.diags.len();
                self.expr(e);
                if self.diags.len() == before {
                    self.diags.push(
                        Diagnostic::new(Code::E001, e.span, "expected a statement, found an expression")
                            .with_hint("bind it with `let name = ...` or assign it to a field"),
                    );
                }
                None
            }
        }
    }

    pub(super) fn match_args(&mut self, what: &str, params: &[ParamSig], args: &[ast::Arg], span: Span) -> Vec<Expr> {
        let mut given: Vec<Option<Expr>> = vec![None; params.len()];
        let mut positional = false;
        for a in args {
            let v = self.expr(&a.value);
            let Some(n) = &a.name else {
                positional = true;
                self.diags.push(
                    Diagnostic::new(Code::E003, a.value.span, format!("arguments of {what} must be named"))
                        .with_hint("write `param: value`"),
                );
                continue;
            };
            let Some(i) = params.iter().position(|p| p.name == n.text) else {
                let names: Vec<String> = params.iter().map(|p| format!("{}: {}", p.name, p.ty)).collect();
                self.diags.push(
                    Diagnostic::new(Code::E002, n.span, format!("{what} has no parameter `{}`", n.text))
                        .with_hint(format!("its parameters are ({})", names.join(", "))),
                );
                continue;
            };
            if given[i].is_some() {
                self.err(Code::E003, n.span, format!("argument `{}` is given twice", n.text));
                continue;
            }
            if !v.ty.compatible(&params[i].ty) {
                self.err(
                    Code::E003,
                    a.value.span,
                    format!("argument `{}` of {what} must be {}, found {}", n.text, params[i].ty, v.ty),
                );
            }
            given[i] = Some(v.expr);
        }
        let mut out = Vec::new();
        for (i, g) in given.into_iter().enumerate() {
            match g {
                Some(e) => out.push(e),
                None => {
                    if !positional {
                        self.err(
                            Code::E003,
                            span,
                            format!("missing argument `{}: {}` of {what}", params[i].name, params[i].ty),
                        );
                    }
                    out.push(Expr::Lit(Value::zero(&params[i].ty.to_type())));
                }
            }
        }
        out
    }

    pub(super) fn place(&mut self, target: &ast::Expr) -> Option<(Place, Ty)> {
        let ExprKind::Path(path) = &target.kind else { return None };
        let segs = path.segments();
        let own = self.domain;
        match segs {
            [n] => {
                if let Some(local) = self.lookup(n.text) {
                    return match local {
                        Local::Slot(s, ty) => Some((Place::Slot(s), ty)),
                        Local::Inline(_) => None,
                    };
                }
                match self.syms.domains[own as usize].fields.get(n.text) {
                    Some(&f) => Some((Place::Field(FieldId(f)), self.syms.fields[f as usize].ty.clone())),
                    None => {
                        let dn = self.domain_name().to_string();
                        self.err(
                            Code::E002,
                            n.span,
                            format!("unknown name `{}` (no local and no field of `{dn}`)", n.text),
                        );
                        None
                    }
                }
            }
            [d, f] => {
                let Some(&did) = self.syms.domain_index.get(d.text) else {
                    self.err(Code::E002, d.span, format!("unknown domain `{}`", d.text));
                    return None;
                };
                let field = self.syms.domains[did as usize].fields.get(f.text).copied();
                if did != own {
                    let dn = self.domain_name().to_string();
                    self.diags.push(
                        Diagnostic::new(
                            Code::E007,
                            target.span,
                            format!("domain `{dn}` writes `{}.{}`, which belongs to `{}`", d.text, f.text, d.text),
                        )
                        .with_hint(format!("send a message to one of `{}`'s `on` handlers instead", d.text)),
                    );
                    return None;
                }
                match field {
                    Some(fid) => Some((Place::Field(FieldId(fid)), self.syms.fields[fid as usize].ty.clone())),
                    None => {
                        self.err(Code::E002, f.span, format!("domain `{}` has no field `{}`", d.text, f.text));
                        None
                    }
                }
            }
            _ => {
                self.err(Code::E002, target.span, "only `field` or `Domain.field` can be assigned");
                None
            }
        }
    }
}
