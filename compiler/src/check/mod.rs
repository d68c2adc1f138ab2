//! Body checking: names (E002), types (E003), purity (E004), clock, randomness
//! and I/O (E006) and ownership (E007). It turns every body into resolved IR
//! ([`crate::program::Expr`], [`crate::program::Stmt`]) and computes each
//! goal's and invariant's static cost on the way, because only here are the
//! list bounds of every subexpression known.

mod body;
mod expr;
mod kinds;

use crate::cost;
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::program::*;
use crate::resolve::Symbols;
use crate::syntax::ast;
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
    /// Handler names, by handler index.
    pub handlers: Vec<Span>,
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
/// livelock analysis come later). `file` may be an outline
/// ([`crate::syntax::parse_outline`] of `source`): each domain is parsed
/// again, bodies included, just before it is checked and freed right after,
/// so a large program's whole tree is never in memory.
pub fn check(
    file: ast::File,
    source: &str,
    syms: &Symbols,
    options: &CompileOptions,
    diags: &mut Vec<Diagnostic>,
) -> (Program, SourceMap) {
    let mut p = empty_program();
    let mut map = SourceMap::default();
    for e in &syms.effects {
        p.effects.push(Effect {
            namespace: e.namespace.clone(),
            name: e.name.clone(),
            params: e.params.iter().map(|q| Param { name: q.name.clone(), ty: q.ty.to_type() }).collect(),
            returns: e.returns.as_ref().map(Ty::to_type),
        });
    }
    let mut domains = file.domains;
    let n = domains.len();
    let parts = if n >= PARALLEL_DOMAINS {
        let mid = n / 2;
        let base = Offsets::of(&domains[..mid]);
        // The second thread takes its half out of the slot; if the thread
        // cannot start, this one checks that half afterwards.
        let second_half = std::sync::Mutex::new(Some(domains.split_off(mid)));
        let take = || second_half.lock().ok().and_then(|mut slot| slot.take()).unwrap_or_default();
        std::thread::scope(|scope| {
            let second = std::thread::Builder::new()
                .spawn_scoped(scope, || check_domains(take(), source, syms, options, mid, base));
            let first = check_domains(domains, source, syms, options, 0, Offsets::default());
            let second = match second {
                Ok(handle) => handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(_) => check_domains(take(), source, syms, options, mid, base),
            };
            vec![first, second]
        })
    } else {
        vec![check_domains(domains, source, syms, options, 0, Offsets::default())]
    };
    for part in parts {
        append(&mut p.domains, part.program.domains);
        append(&mut p.fields, part.program.fields);
        append(&mut p.goals, part.program.goals);
        append(&mut p.invariants, part.program.invariants);
        append(&mut p.transitions, part.program.transitions);
        append(&mut p.handlers, part.program.handlers);
        append(&mut map.goals, part.map.goals);
        append(&mut map.invariants, part.map.invariants);
        append(&mut map.transitions, part.map.transitions);
        append(&mut map.handlers, part.map.handlers);
        append(diags, part.diags);
    }
    (p, map)
}

/// Appends `from` to `into`, moving it whole when `into` is empty.
fn append<T>(into: &mut Vec<T>, mut from: Vec<T>) {
    if into.is_empty() {
        std::mem::swap(into, &mut from);
    }
    into.append(&mut from);
}

/// Number of domains from which the bodies are checked on two threads.
const PARALLEL_DOMAINS: usize = 512;

/// Table sizes before a domain: the ids its declarations start at.
#[derive(Clone, Copy, Debug, Default)]
struct Offsets {
    fields: usize,
    goals: usize,
    invariants: usize,
    transitions: usize,
    handlers: usize,
}

impl Offsets {
    /// Sizes of the tables of `domains`: the offsets of the domain after them.
    fn of(domains: &[ast::DomainDecl]) -> Offsets {
        let mut o = Offsets::default();
        for d in domains {
            o.fields += d.fields.len();
            o.goals += d.goals.len();
            o.invariants += d.invariants.len();
            o.transitions += d.transitions.len();
            o.handlers += d.handlers.len();
        }
        o
    }
}

/// What checking a range of domains produced.
struct Part {
    /// Tables of those domains only (ids are global).
    program: Program,
    map: SourceMap,
    diags: Vec<Diagnostic>,
}

/// Checks `domains`, the first of which is domain number `first` and whose
/// first declarations have the ids `base`. Each domain is parsed again from
/// `source` (its outline may lack bodies) and dropped once checked.
fn check_domains(
    domains: Vec<ast::DomainDecl>,
    source: &str,
    syms: &Symbols,
    options: &CompileOptions,
    first: usize,
    base: Offsets,
) -> Part {
    let mut p = empty_program();
    let sizes = Offsets::of(&domains);
    p.domains.reserve(domains.len());
    p.fields.reserve(sizes.fields);
    p.goals.reserve(sizes.goals);
    p.invariants.reserve(sizes.invariants);
    p.transitions.reserve(sizes.transitions);
    p.handlers.reserve(sizes.handlers);
    let mut map = SourceMap::default();
    let mut diags_vec = Vec::new();
    let diags = &mut diags_vec;
    for (k, outline) in domains.into_iter().enumerate() {
        let d = match crate::syntax::reparse_domain(source, outline.span) {
            Some(d) => d,
            None => {
                diags.push(Diagnostic::new(
                    Code::E001,
                    outline.span,
                    "internal compiler error: this domain could not be read a second time",
                ));
                outline
            }
        };
        let di = first + k;
        let di32 = di as u32;
        let dsyms = &syms.domains[di];
        let mut dom = Domain {
            name: d.name.text.to_string(),
            key: d.key.map(|k| k.text.to_string()),
            priority: d.priority.as_ref().map(|p| p.level).unwrap_or(Priority::Normal),
            reads: dsyms.reads.iter().map(|r| DomainId(*r)).collect(),
            fields: Vec::new(),
            goals: Vec::new(),
            invariants: Vec::new(),
            transitions: Vec::new(),
            handlers: Vec::new(),
        };
        for f in &d.fields {
            let fid = base.fields + p.fields.len();
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
            let gid = (base.goals + p.goals.len()) as u32;
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
            let iid = (base.invariants + p.invariants.len()) as u32;
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
            let tid = (base.transitions + p.transitions.len()) as u32;
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
            let mut slices = Vec::with_capacity(t.slices.len());
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
            if dsyms.goals.contains_key(t.goal.text) {
                if let Some(g) = goal.index().checked_sub(base.goals).and_then(|i| p.goals.get_mut(i)) {
                    g.transitions.push(TransitionId(tid));
                }
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
            let hid = base.handlers + p.handlers.len();
            let sig = &syms.handlers[hid];
            let mut b = new_body(syms, diags, di32, Kind::Handler);
            for param in &sig.params {
                let slot = b.alloc();
                b.scopes[0].push((param.name.clone(), Local::Slot(slot, param.ty.clone())));
            }
            let body = b.stmts(&h.body, false);
            let slots = b.slots;
            dom.handlers.push(HandlerId(hid as u32));
            map.handlers.push(h.name.span);
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
    Part { program: p, map, diags: diags_vec }
}

fn empty_program() -> Program {
    Program {
        effects: Vec::new(),
        domains: Vec::new(),
        fields: Vec::new(),
        goals: Vec::new(),
        invariants: Vec::new(),
        transitions: Vec::new(),
        handlers: Vec::new(),
        dominance: Vec::new(),
    }
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
}
