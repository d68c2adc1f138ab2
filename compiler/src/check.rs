//! Body checking: names (E002), types (E003), purity (E004), clock, randomness
//! and I/O (E006) and ownership (E007). It turns every body into resolved IR
//! ([`crate::program::Expr`], [`crate::program::Stmt`]) and computes each
//! goal's and invariant's static cost on the way, because only here are the
//! list bounds of every subexpression known.

use crate::cost;
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::program::*;
use crate::resolve::{ParamSig, Symbols};
use crate::syntax::ast::{self, ExprKind, Name};
use crate::types::Ty;
use crate::CompileOptions;

/// Spans of declarations, for diagnostics of the later passes.
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    /// Goal names, by goal index.
    pub goals: Vec<Span>,
    /// Invariant names, by invariant index.
    pub invariants: Vec<Span>,
    /// Transition names, by transition index.
    pub transitions: Vec<Span>,
}

/// Names that ask for a clock, randomness or I/O (E006), lowercase.
const FORBIDDEN: &[&str] = &[
    "now",
    "time",
    "clock",
    "today",
    "timestamp",
    "date",
    "datetime",
    "instant",
    "systemtime",
    "epoch",
    "millis",
    "nanos",
    "unix_time",
    "wall_clock",
    "uptime",
    "random",
    "rand",
    "randint",
    "rng",
    "shuffle",
    "uuid",
    "uuid4",
    "nonce",
    "read_file",
    "write_file",
    "open",
    "file",
    "fs",
    "http",
    "https",
    "fetch",
    "request",
    "curl",
    "socket",
    "connect",
    "dns",
    "sleep",
    "wait",
    "env",
    "getenv",
    "exec",
    "system",
    "shell",
    "spawn",
    "print",
    "println",
    "log",
    "stdin",
    "readline",
    "input",
    "hostname",
];

/// Whether calling `name` would read a clock, randomness or do I/O.
pub fn is_forbidden(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    FORBIDDEN.contains(&lower.as_str())
        || lower.starts_with("random")
        || lower.starts_with("http")
        || lower.ends_with("_file")
        || lower.starts_with("read_")
        || lower.starts_with("write_")
}

fn builtin_of(name: &str) -> Option<Builtin> {
    Some(match name {
        "len" => Builtin::Len,
        "min" => Builtin::Min,
        "max" => Builtin::Max,
        "abs" => Builtin::Abs,
        "contains" => Builtin::Contains,
        _ => return None,
    })
}

/// A checked expression: IR, type and worst-case cost.
#[derive(Clone, Debug)]
struct T {
    expr: Expr,
    ty: Ty,
    cost: u64,
}

impl T {
    fn error() -> T {
        T { expr: Expr::Lit(Value::Int(0)), ty: Ty::Unknown, cost: cost::LEAF }
    }
}

#[derive(Clone, Debug)]
enum Local {
    Slot(SlotId, Ty),
    /// A `let` inside a goal: inlined where used.
    Inline(Box<T>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A goal, invariant or guard: pure.
    Pure,
    /// A field default: constant.
    Const,
    /// A transition slice.
    Slice,
    /// A message handler.
    Handler,
}

struct Body<'a> {
    syms: &'a Symbols,
    diags: &'a mut Vec<Diagnostic>,
    domain: u32,
    kind: Kind,
    scopes: Vec<Vec<(String, Local)>>,
    slots: u32,
    /// `-> name` results bound in the current slice, visible from the next.
    pending: Vec<(String, Local)>,
}

/// Checks all bodies and builds the program (sets, cost checks and the
/// livelock analysis come later).
pub fn check(
    file: &ast::File,
    syms: &Symbols,
    options: &CompileOptions,
    diags: &mut Vec<Diagnostic>,
) -> (Program, SourceMap) {
    let mut p = Program {
        effects: Vec::new(),
        domains: Vec::new(),
        fields: Vec::new(),
        goals: Vec::new(),
        invariants: Vec::new(),
        transitions: Vec::new(),
        handlers: Vec::new(),
        dominance: Vec::new(),
    };
    let mut map = SourceMap::default();
    for e in &syms.effects {
        p.effects.push(Effect {
            namespace: e.namespace.clone(),
            name: e.name.clone(),
            params: e.params.iter().map(|q| Param { name: q.name.clone(), ty: q.ty.to_type() }).collect(),
            returns: e.returns.as_ref().map(Ty::to_type),
        });
    }
    for (di, d) in file.domains.iter().enumerate() {
        let di32 = di as u32;
        let dsyms = &syms.domains[di];
        let mut dom = Domain {
            name: d.name.text.to_string(),
            priority: d.priority.as_ref().map(|p| p.level).unwrap_or(Priority::Normal),
            reads: dsyms.reads.iter().map(|r| DomainId(*r)).collect(),
            fields: Vec::new(),
            goals: Vec::new(),
            invariants: Vec::new(),
            transitions: Vec::new(),
            handlers: Vec::new(),
        };
        for f in &d.fields {
            let fid = p.fields.len();
            let ty = syms.fields[fid].ty.clone();
            let default = match &f.default {
                None => Value::zero(&ty.to_type()),
                Some(e) => {
                    let mut b = new_body(syms, diags, di32, Kind::Const);
                    let before = b.diags.len();
                    let t = b.expr(e);
                    let value = const_eval(&t.expr);
                    let reported = b.diags.len() > before;
                    if !reported && !t.ty.compatible(&ty) {
                        diags.push(Diagnostic::new(
                            Code::E003,
                            e.span,
                            format!("default of `{}` has type {}, but the field is {}", f.name.text, t.ty, ty),
                        ));
                    }
                    match value {
                        Some(v) => {
                            if let (Value::List(items), Some(max)) = (&v, ty.list_bound()) {
                                if items.len() > max as usize {
                                    diags.push(Diagnostic::new(
                                        Code::E003,
                                        e.span,
                                        format!(
                                            "default of `{}` has {} items, over the maximum length {max}",
                                            f.name.text,
                                            items.len()
                                        ),
                                    ));
                                }
                            }
                            v
                        }
                        None => {
                            if !reported {
                                diags.push(
                                    Diagnostic::new(
                                        Code::E003,
                                        e.span,
                                        format!("default of `{}` is not a constant", f.name.text),
                                    )
                                    .with_hint("defaults are literals, lists of literals and arithmetic on them"),
                                );
                            }
                            Value::zero(&ty.to_type())
                        }
                    }
                }
            };
            dom.fields.push(FieldId(fid as u32));
            p.fields.push(Field {
                name: f.name.text.to_string(),
                domain: DomainId(di32),
                max_len: ty.list_bound(),
                ty: ty.to_type(),
                default,
            });
        }
        for g in &d.goals {
            let gid = p.goals.len() as u32;
            let mut b = new_body(syms, diags, di32, Kind::Pure);
            let t = b.pure_body("goal", &g.name, &g.body, g.body_span);
            let slots = b.slots;
            if let Some(diag) = cost::check_budget("goal", g.name.text, t.cost, options.cost_budget, g.name.span) {
                diags.push(diag);
            }
            dom.goals.push(GoalId(gid));
            map.goals.push(g.name.span);
            p.goals.push(Goal {
                name: g.name.text.to_string(),
                domain: DomainId(di32),
                priority: g.priority.as_ref().map(|p| p.level).unwrap_or(dom.priority),
                predicate: t.expr,
                slots,
                read_set: Vec::new(),
                cost: t.cost,
                transitions: Vec::new(),
            });
        }
        for inv in &d.invariants {
            let iid = p.invariants.len() as u32;
            let mut b = new_body(syms, diags, di32, Kind::Pure);
            let t = b.pure_body("invariant", &inv.name, &inv.body, inv.body_span);
            let slots = b.slots;
            if let Some(diag) =
                cost::check_budget("invariant", inv.name.text, t.cost, options.cost_budget, inv.name.span)
            {
                diags.push(diag);
            }
            dom.invariants.push(InvariantId(iid));
            map.invariants.push(inv.name.span);
            p.invariants.push(Invariant {
                name: inv.name.text.to_string(),
                domain: DomainId(di32),
                predicate: t.expr,
                slots,
                read_set: Vec::new(),
                cost: t.cost,
            });
        }
        let mut seen_transitions: crate::resolve::HashMap<&str, Span> = Default::default();
        for t in &d.transitions {
            if let Some(first) = seen_transitions.get(t.name.text) {
                diags.push(
                    Diagnostic::new(Code::E002, t.name.span, format!("transition `{}` is defined twice", t.name.text))
                        .with_label(*first, "first defined here"),
                );
            } else {
                seen_transitions.insert(t.name.text, t.name.span);
            }
            let tid = p.transitions.len() as u32;
            let goal = match dsyms.goals.get(t.goal.text) {
                Some(g) => GoalId(*g),
                None => {
                    let elsewhere =
                        syms.domains.iter().find(|o| o.goals.contains_key(t.goal.text)).map(|o| o.name.clone());
                    let mut diag = Diagnostic::new(
                        Code::E002,
                        t.goal.span,
                        format!("domain `{}` has no goal `{}`", d.name.text, t.goal.text),
                    );
                    diag = match elsewhere {
                        Some(o) => diag.with_hint(format!(
                            "`{}` is a goal of `{o}`; a transition repairs a goal of its own domain",
                            t.goal.text
                        )),
                        None => diag.with_hint("a transition is declared `for` a goal of its own domain"),
                    };
                    diags.push(diag);
                    GoalId(0)
                }
            };
            let retry = retry_policy(t.retry.as_ref(), diags);
            let mut b = new_body(syms, diags, di32, Kind::Pure);
            let when = t.when.as_ref().map(|w| {
                let c = b.expr(w);
                b.expect_bool(&c, w.span, "a `when` guard");
                c.expr
            });
            b.kind = Kind::Slice;
            let mut slices = Vec::new();
            for (si, s) in t.slices.iter().enumerate() {
                if let Some(first) = t.slices[..si].iter().find(|o| o.name.text == s.name.text) {
                    b.diags.push(
                        Diagnostic::new(Code::E002, s.name.span, format!("slice `{}` is defined twice", s.name.text))
                            .with_label(first.name.span, "first defined here"),
                    );
                }
                b.scopes.push(Vec::new());
                let body = b.stmts(&s.body, true);
                b.scopes.pop();
                let pending = std::mem::take(&mut b.pending);
                b.scopes[0].extend(pending);
                slices.push(Slice {
                    name: s.name.text.to_string(),
                    body,
                    write_set: vec![],
                    sends: vec![],
                    emits: vec![],
                });
            }
            let slots = b.slots;
            if (goal.index()) < p.goals.len() && dsyms.goals.contains_key(t.goal.text) {
                p.goals[goal.index()].transitions.push(TransitionId(tid));
            }
            dom.transitions.push(TransitionId(tid));
            map.transitions.push(t.name.span);
            p.transitions.push(Transition {
                name: t.name.text.to_string(),
                domain: DomainId(di32),
                goal,
                when,
                retry,
                slices,
                slots,
                write_set: vec![],
                emits: vec![],
                reaches_goal: false,
            });
        }
        for h in &d.handlers {
            let hid = p.handlers.len();
            let sig = &syms.handlers[hid];
            let mut b = new_body(syms, diags, di32, Kind::Handler);
            for param in &sig.params {
                let slot = b.alloc();
                b.scopes[0].push((param.name.clone(), Local::Slot(slot, param.ty.clone())));
            }
            let body = b.stmts(&h.body, false);
            let slots = b.slots;
            dom.handlers.push(HandlerId(hid as u32));
            p.handlers.push(Handler {
                name: h.name.text.to_string(),
                domain: DomainId(di32),
                params: sig.params.iter().map(|q| Param { name: q.name.clone(), ty: q.ty.to_type() }).collect(),
                body,
                slots,
                write_set: vec![],
                sends: vec![],
                emits: vec![],
            });
        }
        p.domains.push(dom);
    }
    (p, map)
}

fn new_body<'a>(syms: &'a Symbols, diags: &'a mut Vec<Diagnostic>, domain: u32, kind: Kind) -> Body<'a> {
    Body { syms, diags, domain, kind, scopes: vec![Vec::new()], slots: 0, pending: Vec::new() }
}

fn retry_policy(r: Option<&ast::RetryDecl>, diags: &mut Vec<Diagnostic>) -> RetryPolicy {
    let mut policy = RetryPolicy::default();
    let Some(r) = r else { return policy };
    if r.attempts < 1 || r.attempts > u32::MAX as i64 {
        diags.push(Diagnostic::new(Code::E003, r.span, "`retry` needs at least 1 attempt"));
    } else {
        policy.max_attempts = r.attempts as u32;
    }
    if let Some((a, b)) = r.backoff {
        if a > b {
            diags.push(
                Diagnostic::new(Code::E003, r.span, "the initial backoff is longer than the maximum")
                    .with_hint("write `backoff initial..max`, e.g. `backoff 500ms..30s`"),
            );
        }
        policy.initial_backoff_ms = a;
        policy.max_backoff_ms = b;
    }
    policy
}

/// Evaluates a constant expression (field defaults).
fn const_eval(e: &Expr) -> Option<Value> {
    Some(match e {
        Expr::Lit(v) => v.clone(),
        Expr::List(items) => Value::List(items.iter().map(const_eval).collect::<Option<Vec<_>>>()?),
        Expr::Unary(UnaryOp::Neg, x) => match const_eval(x)? {
            Value::Int(n) => Value::Int(n.checked_neg()?),
            _ => return None,
        },
        Expr::Unary(UnaryOp::Not, x) => match const_eval(x)? {
            Value::Bool(b) => Value::Bool(!b),
            _ => return None,
        },
        Expr::Binary(op, a, b) => {
            let (a, b) = (const_eval(a)?, const_eval(b)?);
            match (op, a, b) {
                (BinaryOp::Add, Value::Int(x), Value::Int(y)) => Value::Int(x.checked_add(y)?),
                (BinaryOp::Sub, Value::Int(x), Value::Int(y)) => Value::Int(x.checked_sub(y)?),
                (BinaryOp::Mul, Value::Int(x), Value::Int(y)) => Value::Int(x.checked_mul(y)?),
                (BinaryOp::Div, Value::Int(x), Value::Int(y)) => Value::Int(x.checked_div(y)?),
                (BinaryOp::Rem, Value::Int(x), Value::Int(y)) => Value::Int(x.checked_rem(y)?),
                (BinaryOp::Add, Value::Str(x), Value::Str(y)) => Value::Str(x + &y),
                (BinaryOp::Add, Value::List(mut x), Value::List(y)) => {
                    x.extend(y);
                    Value::List(x)
                }
                _ => return None,
            }
        }
        _ => return None,
    })
}

impl Body<'_> {
    fn alloc(&mut self) -> SlotId {
        let s = SlotId(self.slots);
        self.slots += 1;
        s
    }

    fn err(&mut self, code: Code, span: Span, msg: impl Into<String>) {
        self.diags.push(Diagnostic::new(code, span, msg));
    }

    fn lookup(&self, name: &str) -> Option<Local> {
        for scope in self.scopes.iter().rev() {
            if let Some((_, l)) = scope.iter().rev().find(|(n, _)| n == name) {
                return Some(l.clone());
            }
        }
        None
    }

    fn domain_name(&self) -> &str {
        &self.syms.domains[self.domain as usize].name
    }

    fn expect_bool(&mut self, t: &T, span: Span, what: &str) {
        if !t.ty.compatible(&Ty::Bool) {
            self.err(Code::E003, span, format!("{what} must be a bool, found {}", t.ty));
        }
    }

    /// Goal and invariant bodies: optional `let`s then one boolean expression.
    fn pure_body(&mut self, what: &str, name: &Name, body: &[ast::Stmt], body_span: Span) -> T {
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

    fn stmts(&mut self, stmts: &[ast::Stmt], top: bool) -> Vec<Stmt> {
        let mut out = Vec::new();
        for s in stmts {
            if let Some(st) = self.stmt(s, top) {
                out.push(st);
            }
        }
        out
    }

    fn block(&mut self, stmts: &[ast::Stmt]) -> Vec<Stmt> {
        self.scopes.push(Vec::new());
        let out = self.stmts(stmts, false);
        self.scopes.pop();
        out
    }

    fn stmt(&mut self, s: &ast::Stmt, top: bool) -> Option<Stmt> {
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
            ast::Stmt::Send { domain, name, args, span } => {
                let Some(&did) = self.syms.domain_index.get(domain.text) else {
                    self.err(Code::E002, domain.span, format!("unknown domain `{}`", domain.text));
                    for a in args {
                        self.expr(&a.value);
                    }
                    return None;
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
                Some(Stmt::Send { handler: HandlerId(hid), args })
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

    fn match_args(&mut self, what: &str, params: &[ParamSig], args: &[ast::Arg], span: Span) -> Vec<Expr> {
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

    fn place(&mut self, target: &ast::Expr) -> Option<(Place, Ty)> {
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

    fn element_type(&mut self, ty: &Ty, span: Span) -> Ty {
        match ty {
            Ty::List(inner, _) => (**inner).clone(),
            Ty::Unknown => Ty::Unknown,
            other => {
                self.err(Code::E003, span, format!("expected a list, found {other}"));
                Ty::Unknown
            }
        }
    }

    fn expr(&mut self, e: &ast::Expr) -> T {
        match &e.kind {
            ExprKind::Int(n) => T { expr: Expr::Lit(Value::Int(*n)), ty: Ty::Int, cost: cost::LEAF },
            ExprKind::Bool(b) => T { expr: Expr::Lit(Value::Bool(*b)), ty: Ty::Bool, cost: cost::LEAF },
            ExprKind::Str(s) => T { expr: Expr::Lit(Value::Str(s.clone())), ty: Ty::Str, cost: cost::LEAF },
            ExprKind::Error => T::error(),
            ExprKind::Path(path) => self.path(path.segments(), e.span),
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

    fn field_ref(&self, fid: u32) -> T {
        T { expr: Expr::Field(FieldId(fid)), ty: self.syms.fields[fid as usize].ty.clone(), cost: cost::LEAF }
    }

    fn path(&mut self, segs: &[Name], span: Span) -> T {
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

    fn binary(&mut self, op: BinaryOp, l: &ast::Expr, r: &ast::Expr, span: Span) -> T {
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

    fn call(&mut self, path: &[Name], args: &[ast::Arg], span: Span) -> T {
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
                    .with_hint("the builtins are len, min, max, abs and contains; effects are called with `emit`"),
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
