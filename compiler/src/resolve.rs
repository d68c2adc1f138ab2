//! Declarations: the first checking pass. It builds the symbol tables
//! (effects, domains, fields, goals, handlers) and their types, so bodies can
//! be checked in any order. Duplicate names and unknown types or domains in
//! declarations are reported here (E002).

use crate::diagnostic::{Code, Diagnostic, Span};
use crate::syntax::ast::{self, TypeExpr};
use crate::types::Ty;
use std::collections::HashMap as StdHashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// FNV-1a: names are short, and the standard SipHash is a measurable part of
/// checking a program with a hundred thousand goals.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A hash map keyed by names.
pub type HashMap<K, V> = StdHashMap<K, V, BuildHasherDefault<Fnv>>;

/// A declared parameter (of an effect or a handler).
#[derive(Clone, Debug)]
pub struct ParamSig {
    /// Name.
    pub name: String,
    /// Type.
    pub ty: Ty,
}

/// A declared effect.
#[derive(Clone, Debug)]
pub struct EffectSig {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Parameters.
    pub params: Vec<ParamSig>,
    /// Result type.
    pub returns: Option<Ty>,
}

/// A declared handler.
#[derive(Clone, Debug)]
pub struct HandlerSig {
    /// Owning domain index.
    pub domain: u32,
    /// Name.
    pub name: String,
    /// Parameters.
    pub params: Vec<ParamSig>,
}

/// A declared field.
#[derive(Clone, Debug)]
pub struct FieldSig {
    /// Owning domain index.
    pub domain: u32,
    /// Name.
    pub name: String,
    /// Type with bounds.
    pub ty: Ty,
}

/// Per-domain name tables.
#[derive(Clone, Debug, Default)]
pub struct DomainSyms {
    /// Name.
    pub name: String,
    /// Field name → global field index.
    pub fields: HashMap<String, u32>,
    /// Goal name → global goal index.
    pub goals: HashMap<String, u32>,
    /// Handler name → global handler index.
    pub handlers: HashMap<String, u32>,
    /// Domains read (indices, deduplicated, in order).
    pub reads: Vec<u32>,
    /// Kinds whose every instance it reads (`reads Kind[*]`).
    pub all_reads: Vec<u32>,
    /// A kind: instances are created at run time, each with its own state.
    pub kind: bool,
}

/// All declarations of a file.
#[derive(Clone, Debug, Default)]
pub struct Symbols {
    /// Effects in source order.
    pub effects: Vec<EffectSig>,
    /// `(namespace, name)` → effect index.
    pub effect_index: HashMap<(String, String), u32>,
    /// Domains in source order.
    pub domains: Vec<DomainSyms>,
    /// Domain name → index.
    pub domain_index: HashMap<String, u32>,
    /// Fields of all domains, in source order.
    pub fields: Vec<FieldSig>,
    /// Handlers of all domains, in source order.
    pub handlers: Vec<HandlerSig>,
    /// Number of goals of all domains.
    pub goal_count: u32,
}

fn dup(diags: &mut Vec<Diagnostic>, what: &str, name: &ast::Name, first: Span) {
    diags.push(
        Diagnostic::new(Code::E002, name.span, format!("{what} `{}` is defined twice", name.text))
            .with_label(first, "first defined here"),
    );
}

/// Resolves a written type; unbounded lists get `default_list_max`.
pub fn resolve_type(t: &TypeExpr, default_list_max: u32, diags: &mut Vec<Diagnostic>) -> Ty {
    match t {
        TypeExpr::Int => Ty::Int,
        TypeExpr::Bool => Ty::Bool,
        TypeExpr::String => Ty::Str,
        TypeExpr::List(inner, max) => {
            Ty::List(Box::new(resolve_type(inner, default_list_max, diags)), max.unwrap_or(default_list_max))
        }
        TypeExpr::Unknown(name) => {
            diags.push(
                Diagnostic::new(Code::E002, name.span, format!("unknown type `{}`", name.text))
                    .with_hint("types are int, bool, string and list<T, N>"),
            );
            Ty::Unknown
        }
    }
}

fn params(ps: &[ast::ParamDecl], what: &str, max: u32, diags: &mut Vec<Diagnostic>) -> Vec<ParamSig> {
    let mut seen: HashMap<&str, Span> = HashMap::default();
    let mut out = Vec::new();
    for p in ps {
        if let Some(first) = seen.get(p.name.text) {
            dup(diags, what, &p.name, *first);
        } else {
            seen.insert(p.name.text, p.name.span);
        }
        out.push(ParamSig { name: p.name.text.to_string(), ty: resolve_type(&p.ty, max, diags) });
    }
    out
}

/// Builds the symbol tables.
pub fn declare(file: &ast::File, default_list_max: u32, diags: &mut Vec<Diagnostic>) -> Symbols {
    let mut s = Symbols::default();
    let mut effect_spans: HashMap<(String, String), Span> = HashMap::default();
    for e in &file.effects {
        let key = (e.namespace.text.to_string(), e.name.text.to_string());
        if let Some(first) = effect_spans.get(&key) {
            dup(diags, "effect", &e.name, *first);
        } else {
            effect_spans.insert(key.clone(), e.name.span);
            s.effect_index.insert(key, s.effects.len() as u32);
        }
        s.effects.push(EffectSig {
            namespace: e.namespace.text.to_string(),
            name: e.name.text.to_string(),
            params: params(&e.params, "parameter", default_list_max, diags),
            returns: e.returns.as_ref().map(|t| resolve_type(t, default_list_max, diags)),
        });
    }
    let mut domain_spans: HashMap<&str, Span> = HashMap::default();
    for (di, d) in file.domains.iter().enumerate() {
        if let Some(first) = domain_spans.get(d.name.text) {
            dup(diags, "domain", &d.name, *first);
        } else {
            domain_spans.insert(d.name.text, d.name.span);
            s.domain_index.insert(d.name.text.to_string(), di as u32);
        }
    }
    for (di, d) in file.domains.iter().enumerate() {
        let mut syms = DomainSyms { name: d.name.text.to_string(), kind: d.key.is_some(), ..DomainSyms::default() };
        if d.key.is_some() && d.fields.iter().any(|f| f.name.text == "key") {
            if let Some(f) = d.fields.iter().find(|f| f.name.text == "key") {
                diags.push(
                    Diagnostic::new(Code::E002, f.name.span, "a kind cannot have a field named `key`")
                        .with_hint("inside a kind, `key` is the instance's key"),
                );
            }
        }
        let mut spans: HashMap<&str, Span> = HashMap::default();
        for f in &d.fields {
            if let Some(first) = spans.get(f.name.text) {
                dup(diags, "field", &f.name, *first);
            } else {
                spans.insert(f.name.text, f.name.span);
                syms.fields.insert(f.name.text.to_string(), s.fields.len() as u32);
            }
            let ty = resolve_type(&f.ty, default_list_max, diags);
            s.fields.push(FieldSig { domain: di as u32, name: f.name.text.to_string(), ty });
        }
        let mut goal_spans: HashMap<&str, Span> = HashMap::default();
        for g in &d.goals {
            if let Some(first) = goal_spans.get(g.name.text) {
                dup(diags, "goal", &g.name, *first);
            } else {
                goal_spans.insert(g.name.text, g.name.span);
                syms.goals.insert(g.name.text.to_string(), s.goal_count);
            }
            s.goal_count += 1;
        }
        let mut invariant_spans: HashMap<&str, Span> = HashMap::default();
        for inv in &d.invariants {
            if let Some(first) = invariant_spans.get(inv.name.text) {
                dup(diags, "invariant", &inv.name, *first);
            } else {
                invariant_spans.insert(inv.name.text, inv.name.span);
            }
        }
        let mut handler_spans: HashMap<&str, Span> = HashMap::default();
        for h in &d.handlers {
            if let Some(first) = handler_spans.get(h.name.text) {
                dup(diags, "handler", &h.name, *first);
            } else {
                handler_spans.insert(h.name.text, h.name.span);
                syms.handlers.insert(h.name.text.to_string(), s.handlers.len() as u32);
            }
            s.handlers.push(HandlerSig {
                domain: di as u32,
                name: h.name.text.to_string(),
                params: params(&h.params, "parameter", default_list_max, diags),
            });
        }
        for r in &d.reads {
            let keyed = d.keyed_reads.iter().any(|k| k.span == r.span);
            match s.domain_index.get(r.text) {
                Some(&rd) => {
                    let read_kind = file.domains.get(rd as usize).is_some_and(|o| o.key.is_some());
                    if let Some(diag) = instance_address(r, read_kind, keyed, d.key.is_some()) {
                        diags.push(diag);
                    }
                    if rd as usize != di && !syms.reads.contains(&rd) {
                        syms.reads.push(rd);
                    }
                }
                None => diags.push(Diagnostic::new(Code::E002, r.span, format!("unknown domain `{}`", r.text))),
            }
        }
        for r in &d.all_reads {
            match s.domain_index.get(r.text) {
                Some(&rd) if file.domains.get(rd as usize).is_some_and(|o| o.key.is_some()) => {
                    if !syms.all_reads.contains(&rd) {
                        syms.all_reads.push(rd);
                    }
                }
                Some(_) => diags.push(
                    Diagnostic::new(
                        Code::E002,
                        r.span,
                        format!("`{}` is not a kind: write `reads {}`", r.text, r.text),
                    )
                    .with_hint("`Kind[*]` reads every instance of a kind"),
                ),
                None => diags.push(Diagnostic::new(Code::E002, r.span, format!("unknown domain `{}`", r.text))),
            }
        }
        s.domains.push(syms);
    }
    s
}

/// Checks how a domain is addressed: a kind only as `Kind[key]` and only
/// from an instance (which has a key), a singleton never with `[key]`.
pub fn instance_address(name: &ast::Name, is_kind: bool, keyed: bool, from_kind: bool) -> Option<Diagnostic> {
    let text = name.text;
    match (is_kind, keyed, from_kind) {
        (true, false, _) => Some(
            Diagnostic::new(Code::E002, name.span, format!("`{text}` is a kind: name an instance, `{text}[key]`"))
                .with_hint(format!("`{text}[key]` is the instance with the same key as the one evaluating")),
        ),
        (true, true, false) => Some(
            Diagnostic::new(Code::E002, name.span, format!("a singleton has no key to address `{text}[key]` with"))
                .with_hint("only a kind's instances (`domain D[name]`) can name another kind's instance"),
        ),
        (false, true, _) => Some(
            Diagnostic::new(Code::E002, name.span, format!("`{text}` is not a kind: write `{text}` without `[key]`"))
                .with_hint(format!("declare `domain {text}[name]` to make it a kind")),
        ),
        _ => None,
    }
}
