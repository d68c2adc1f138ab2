//! Static livelock analysis (E009, W001).
//!
//! Two goals conflict when both read a field and their predicates cannot
//! hold at the same time. Only goals that share a field are compared: an
//! index from field to goals yields the candidate pairs, so the pass follows
//! the number of sharing pairs, not the square of the number of goals.
//!
//! Each predicate becomes a bounded DNF (at most [`MAX_TERMS`] conjunctions;
//! larger ones are "unknown" and never reported) over atoms:
//! linear integer constraints over int fields and `len(list)`, boolean
//! fields, string fields compared with literals, and opaque atoms (anything
//! else, matched syntactically, so `p` and `!p` conflict). A conjunction is
//! decided by interval reasoning when every constraint has one variable, and
//! by the microlp MILP solver (integer variables) otherwise. Anything the
//! analysis cannot decide counts as satisfiable: it reports only proven
//! conflicts.

use crate::check::SourceMap;
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::lower::intersects;
use crate::program::*;
use std::collections::{BTreeMap, HashMap};

/// Largest DNF kept per predicate (and per pair product).
pub const MAX_TERMS: usize = 64;
/// Largest constant magnitude handed to the solver (beyond it: "unknown").
const MAX_SOLVER_CONST: i128 = 1_000_000_000;
/// Branch-and-bound nodes one satisfiability question may explore: the
/// deterministic bound on the solver's work.
pub const SOLVER_NODE_LIMIT: u64 = 2_000;

/// A variable of the constraint system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Var {
    /// An int field.
    Field(FieldId),
    /// `len(field)` of a list or string field.
    Len(FieldId),
}

/// `sum(coeff * var) + konst`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Lin {
    coeffs: BTreeMap<Var, i128>,
    konst: i128,
}

impl Lin {
    fn constant(k: i128) -> Lin {
        Lin { coeffs: BTreeMap::new(), konst: k }
    }

    fn scale(mut self, k: i128) -> Option<Lin> {
        for c in self.coeffs.values_mut() {
            *c = c.checked_mul(k)?;
        }
        self.konst = self.konst.checked_mul(k)?;
        self.coeffs.retain(|_, c| *c != 0);
        Some(self)
    }

    fn add(mut self, other: Lin) -> Option<Lin> {
        for (v, c) in other.coeffs {
            let e = self.coeffs.entry(v).or_insert(0);
            *e = e.checked_add(c)?;
        }
        self.coeffs.retain(|_, c| *c != 0);
        self.konst = self.konst.checked_add(other.konst)?;
        Some(self)
    }
}

/// One literal of a conjunction.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Atom<'p> {
    /// `lin <= 0`.
    Le(Lin),
    /// `lin == 0`.
    Eq(Lin),
    /// A bool field has this value.
    Bool(FieldId, bool),
    /// A string field equals (or not) a literal.
    Str(FieldId, String, bool),
    /// Anything else, compared structurally, with polarity.
    Opaque(&'p Expr, bool),
}

type Conj<'p> = Vec<Atom<'p>>;
/// `None` = unknown (too large).
type Dnf<'p> = Option<Vec<Conj<'p>>>;

struct Analyzer<'p> {
    p: &'p Program,
}

impl<'p> Analyzer<'p> {
    fn field_ty(&self, f: FieldId) -> Option<&Type> {
        self.p.fields.get(f.index()).map(|x| &x.ty)
    }

    fn lin(&self, e: &Expr) -> Option<Lin> {
        match e {
            Expr::Lit(Value::Int(n)) => Some(Lin::constant(*n as i128)),
            Expr::Field(f) if self.field_ty(*f) == Some(&Type::Int) => {
                Some(Lin { coeffs: BTreeMap::from([(Var::Field(*f), 1)]), konst: 0 })
            }
            Expr::Call(Builtin::Len, args) => match args.as_slice() {
                [Expr::Field(f)] => Some(Lin { coeffs: BTreeMap::from([(Var::Len(*f), 1)]), konst: 0 }),
                _ => None,
            },
            Expr::Unary(UnaryOp::Neg, x) => self.lin(x)?.scale(-1),
            Expr::Binary(BinaryOp::Add, a, b) => self.lin(a)?.add(self.lin(b)?),
            Expr::Binary(BinaryOp::Sub, a, b) => self.lin(a)?.add(self.lin(b)?.scale(-1)?),
            Expr::Binary(BinaryOp::Mul, a, b) => {
                let (a, b) = (self.lin(a)?, self.lin(b)?);
                if a.coeffs.is_empty() {
                    b.scale(a.konst)
                } else if b.coeffs.is_empty() {
                    a.scale(b.konst)
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    fn opaque(e: &'p Expr, positive: bool) -> Dnf<'p> {
        Some(vec![vec![Atom::Opaque(e, positive)]])
    }

    /// The DNF of `e` (or of `!e` when `positive` is false).
    fn dnf(&self, e: &'p Expr, positive: bool) -> Dnf<'p> {
        match e {
            Expr::Lit(Value::Bool(b)) => Some(if *b == positive { vec![vec![]] } else { vec![] }),
            Expr::Unary(UnaryOp::Not, x) => self.dnf(x, !positive),
            Expr::Binary(op @ (BinaryOp::And | BinaryOp::Or), a, b) => {
                let conj = (*op == BinaryOp::And) == positive;
                let (a, b) = (self.dnf(a, positive)?, self.dnf(b, positive)?);
                if conj {
                    if a.len().saturating_mul(b.len()) > MAX_TERMS {
                        return None;
                    }
                    let mut out = Vec::new();
                    for x in &a {
                        for y in &b {
                            let mut c = x.clone();
                            c.extend(y.iter().cloned());
                            out.push(c);
                        }
                    }
                    Some(out)
                } else {
                    if a.len() + b.len() > MAX_TERMS {
                        return None;
                    }
                    let mut out = a;
                    out.extend(b);
                    Some(out)
                }
            }
            Expr::Field(f) if self.field_ty(*f) == Some(&Type::Bool) => Some(vec![vec![Atom::Bool(*f, positive)]]),
            Expr::Binary(op, a, b) if is_comparison(*op) => self.comparison(*op, a, b, positive, e),
            _ => Self::opaque(e, positive),
        }
    }

    fn comparison(&self, op: BinaryOp, a: &'p Expr, b: &'p Expr, positive: bool, whole: &'p Expr) -> Dnf<'p> {
        let op = if positive { op } else { negate(op) };
        if let (Some(x), Some(y)) = (self.lin(a), self.lin(b)) {
            let Some(d) = x.add(y.scale(-1).unwrap_or(Lin::constant(0))) else { return Self::opaque(whole, positive) };
            let lt = |l: Lin| l.add(Lin::constant(1));
            let atoms: Option<Vec<Conj>> = match op {
                BinaryOp::Le => Some(vec![vec![Atom::Le(d)]]),
                BinaryOp::Lt => lt(d).map(|l| vec![vec![Atom::Le(l)]]),
                BinaryOp::Ge => d.scale(-1).map(|l| vec![vec![Atom::Le(l)]]),
                BinaryOp::Gt => d.scale(-1).and_then(lt).map(|l| vec![vec![Atom::Le(l)]]),
                BinaryOp::Eq => Some(vec![vec![Atom::Eq(d)]]),
                BinaryOp::Ne => {
                    let below = lt(d.clone());
                    let above = d.scale(-1).and_then(lt);
                    match (below, above) {
                        (Some(l), Some(g)) => Some(vec![vec![Atom::Le(l)], vec![Atom::Le(g)]]),
                        _ => None,
                    }
                }
                _ => None,
            };
            return atoms.or_else(|| Self::opaque(whole, positive));
        }
        let eq = match op {
            BinaryOp::Eq => true,
            BinaryOp::Ne => false,
            _ => return Self::opaque(whole, positive),
        };
        match (a, b) {
            (Expr::Field(f), Expr::Lit(Value::Str(s))) | (Expr::Lit(Value::Str(s)), Expr::Field(f)) => {
                Some(vec![vec![Atom::Str(*f, s.clone(), eq)]])
            }
            (Expr::Field(f), Expr::Lit(Value::Bool(v))) | (Expr::Lit(Value::Bool(v)), Expr::Field(f)) => {
                Some(vec![vec![Atom::Bool(*f, *v == eq)]])
            }
            _ => Self::opaque(whole, positive),
        }
    }

    fn var_bounds(&self, v: Var) -> (i128, i128) {
        match v {
            Var::Field(_) => (i64::MIN as i128, i64::MAX as i128),
            Var::Len(f) => {
                let max =
                    self.p.fields.get(f.index()).and_then(|x| x.max_len).map(i128::from).unwrap_or(i64::MAX as i128);
                (0, max)
            }
        }
    }

    /// Whether a conjunction can hold (true when unsure).
    /// Whether the conjunction of `x` and `y` can hold (true when unsure).
    /// Conjunctions are small, so atoms are compared pairwise; `s` holds
    /// reusable buffers, so checking a pair allocates nothing.
    fn sat(&self, x: &[Atom<'p>], y: &[Atom<'p>], s: &mut Scratch) -> bool {
        let at = |k: usize| if k < x.len() { &x[k] } else { &y[k - x.len()] };
        s.lins.clear();
        for i in 0..x.len() + y.len() {
            let a = at(i);
            for j in 0..i {
                let clash = match (a, at(j)) {
                    (Atom::Bool(f, v), Atom::Bool(g, w)) => f == g && v != w,
                    (Atom::Str(f, s, true), Atom::Str(g, t, true)) => f == g && s != t,
                    (Atom::Str(f, s, p), Atom::Str(g, t, q)) => f == g && s == t && p != q,
                    (Atom::Opaque(x, p), Atom::Opaque(y, q)) => p != q && x == y,
                    _ => false,
                };
                if clash {
                    return false;
                }
            }
            if matches!(a, Atom::Le(_) | Atom::Eq(_)) {
                s.lins.push(i);
            }
        }
        if s.lins.is_empty() {
            return true;
        }
        let lin = |k: usize| match at(k) {
            Atom::Eq(l) => Some((l, true)),
            Atom::Le(l) => Some((l, false)),
            _ => None,
        };
        self.linear_sat(&lin, s)
    }

    /// Intervals first; when constraints couple variables, a few candidate
    /// points inside the intervals are tried before the MILP solver runs.
    fn linear_sat<'a>(&self, lin: &dyn Fn(usize) -> Option<(&'a Lin, bool)>, s: &mut Scratch) -> bool {
        s.bounds.clear();
        let mut coupled = false;
        for &k in &s.lins {
            let Some((l, is_eq)) = lin(k) else { continue };
            if l.coeffs.len() > 1 {
                coupled = true;
                continue;
            }
            if !self.narrow(&mut s.bounds, l, is_eq) {
                return false;
            }
        }
        if s.bounds.iter().any(|(_, (lo, hi))| lo > hi) {
            return false;
        }
        if !coupled {
            return true;
        }
        for &k in &s.lins {
            if let Some((l, _)) = lin(k) {
                for v in l.coeffs.keys() {
                    bound_of(&mut s.bounds, *v, || self.var_bounds(*v));
                }
            }
        }
        let pickers: [fn((i128, i128)) -> i128; 3] = [|(lo, hi)| 0i128.clamp(lo, hi), |(lo, _)| lo, |(_, hi)| hi];
        for pick in pickers {
            let holds = s.lins.iter().filter_map(|&k| lin(k)).filter(|(l, _)| l.coeffs.len() > 1).all(|(l, is_eq)| {
                let mut sum = l.konst;
                for (v, c) in &l.coeffs {
                    let x = s.bounds.iter().find(|(w, _)| w == v).map(|(_, b)| pick(*b)).unwrap_or(0);
                    sum = sum.saturating_add(c.saturating_mul(x));
                }
                if is_eq {
                    sum == 0
                } else {
                    sum <= 0
                }
            });
            if holds {
                return true;
            }
        }
        let all: Vec<(&Lin, bool)> = s.lins.iter().filter_map(|&k| lin(k)).collect();
        self.solver_sat(&all)
    }

    /// Narrows the interval of the one variable of `l` (`l <= 0`, or `l == 0`
    /// when `is_eq`); false when a constant constraint fails.
    fn narrow(&self, bounds: &mut Vec<(Var, (i128, i128))>, l: &Lin, is_eq: bool) -> bool {
        let Some((&v, &a)) = l.coeffs.iter().next() else {
            return if is_eq { l.konst == 0 } else { l.konst <= 0 };
        };
        let k = l.konst;
        let b = bound_of(bounds, v, || self.var_bounds(v));
        if is_eq {
            if (-k) % a != 0 {
                return false;
            }
            let x = -k / a;
            b.0 = b.0.max(x);
            b.1 = b.1.min(x);
        } else if a > 0 {
            b.1 = b.1.min(div_floor(-k, a));
        } else {
            b.0 = b.0.max(div_ceil(k, -a));
        }
        true
    }

    fn solver_sat(&self, lins: &[(&Lin, bool)]) -> bool {
        use microlp::{ComparisonOp, LinearExpr, OptimizationDirection, Problem};
        let too_big = |x: i128| x.abs() > MAX_SOLVER_CONST;
        if lins.iter().any(|(l, _)| too_big(l.konst) || l.coeffs.values().any(|c| too_big(*c))) {
            return true;
        }
        let mut problem = Problem::new(OptimizationDirection::Minimize);
        let mut vars = HashMap::new();
        for (l, _) in lins {
            for v in l.coeffs.keys() {
                vars.entry(*v).or_insert_with(|| {
                    let (lo, hi) = self.var_bounds(*v);
                    let clamp = |x: i128| x.clamp(i32::MIN as i128, i32::MAX as i128) as i32;
                    problem.add_integer_var(0.0, (clamp(lo), clamp(hi)))
                });
            }
        }
        for (l, is_eq) in lins {
            let mut e = LinearExpr::empty();
            for (v, c) in &l.coeffs {
                if let Some(var) = vars.get(v) {
                    e.add(*var, *c as f64);
                }
            }
            let op = if *is_eq { ComparisonOp::Eq } else { ComparisonOp::Le };
            problem.add_constraint(e, op, -(l.konst as f64));
        }
        // A budget of branch-and-bound nodes, not of time: the same verdict
        // on every machine. A search cut short counts as satisfiable (the
        // analysis stays conservative).
        let mut options = microlp::SolveOptions::default();
        options.node_limit = Some(SOLVER_NODE_LIMIT);
        !matches!(problem.solve_with(options), Err(microlp::Error::Infeasible))
    }

    /// Whether some conjunction of `a` and some of `b` can hold together.
    /// Whether some conjunction of `a` and some of `b` can hold together.
    fn pair_sat(&self, a: &[Conj<'p>], b: &[Conj<'p>], s: &mut Scratch) -> bool {
        a.iter().any(|x| b.iter().any(|y| self.sat(x, y, s)))
    }

    fn alone_sat(&self, a: &[Conj<'p>], s: &mut Scratch) -> bool {
        a.iter().any(|c| self.sat(c, &[], s))
    }
}

/// Buffers reused across satisfiability checks.
#[derive(Default)]
struct Scratch {
    /// Indices of the linear atoms of the conjunction being checked.
    lins: Vec<usize>,
    /// Variable intervals.
    bounds: Vec<(Var, (i128, i128))>,
}

/// The interval of `v`, created by `init` on first use.
fn bound_of(bounds: &mut Vec<(Var, (i128, i128))>, v: Var, init: impl FnOnce() -> (i128, i128)) -> &mut (i128, i128) {
    let i = match bounds.iter().position(|(w, _)| *w == v) {
        Some(i) => i,
        None => {
            bounds.push((v, init()));
            bounds.len() - 1
        }
    };
    &mut bounds[i].1
}

fn div_floor(a: i128, b: i128) -> i128 {
    let q = a / b;
    if (a % b != 0) && ((a < 0) != (b < 0)) {
        q - 1
    } else {
        q
    }
}

fn div_ceil(a: i128, b: i128) -> i128 {
    -div_floor(-a, b)
}

fn is_comparison(op: BinaryOp) -> bool {
    matches!(op, BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge | BinaryOp::Eq | BinaryOp::Ne)
}

fn negate(op: BinaryOp) -> BinaryOp {
    match op {
        BinaryOp::Lt => BinaryOp::Ge,
        BinaryOp::Le => BinaryOp::Gt,
        BinaryOp::Gt => BinaryOp::Le,
        BinaryOp::Ge => BinaryOp::Lt,
        BinaryOp::Eq => BinaryOp::Ne,
        BinaryOp::Ne => BinaryOp::Eq,
        other => other,
    }
}

/// Compares every pair of goals that share a field; reports E009 (equal
/// priority) or W001 and records a [`Dominance`] (different priorities).
pub fn analyse(p: &mut Program, map: &SourceMap, diags: &mut Vec<Diagnostic>) {
    let conflicts = find_conflicts(p);
    report(p, &conflicts, map, diags);
}

/// Pairs `(a, b)`, `a < b`, of goals that share a field and cannot both hold.
fn find_conflicts(p: &Program) -> Vec<(usize, usize)> {
    let an = Analyzer { p };
    let mut scratch = Scratch::default();
    let dnfs: Vec<Dnf> =
        p.goals.iter().map(|g| an.dnf(&g.predicate, true).filter(|d| an.alone_sat(d, &mut scratch))).collect();
    let mut by_field: Vec<Vec<u32>> = vec![Vec::new(); p.fields.len()];
    for (gi, g) in p.goals.iter().enumerate() {
        if dnfs[gi].is_some() {
            for f in &g.read_set {
                if let Some(list) = by_field.get_mut(f.index()) {
                    list.push(gi as u32);
                }
            }
        }
    }
    let mut seen = vec![u32::MAX; p.goals.len()];
    let mut conflicts = Vec::new();
    for (gi, g) in p.goals.iter().enumerate() {
        let Some(dg) = &dnfs[gi] else { continue };
        for f in &g.read_set {
            let Some(list) = by_field.get(f.index()) else { continue };
            let start = list.partition_point(|h| *h as usize <= gi);
            for &h in &list[start..] {
                let hi = h as usize;
                if seen[hi] == gi as u32 {
                    continue;
                }
                seen[hi] = gi as u32;
                let Some(dh) = &dnfs[hi] else { continue };
                if dg.len().saturating_mul(dh.len()) > MAX_TERMS * MAX_TERMS {
                    continue;
                }
                if !an.pair_sat(dg, dh, &mut scratch) {
                    conflicts.push((gi, hi));
                }
            }
        }
    }
    conflicts
}

fn report(p: &mut Program, conflicts: &[(usize, usize)], map: &SourceMap, diags: &mut Vec<Diagnostic>) {
    for &(a, b) in conflicts {
        let (ga, gb) = (&p.goals[a], &p.goals[b]);
        let shared: Vec<FieldId> =
            ga.read_set.iter().copied().filter(|f| gb.read_set.binary_search(f).is_ok()).collect();
        debug_assert!(intersects(&ga.read_set, &gb.read_set));
        let names: Vec<String> = shared.iter().map(|f| format!("`{}`", p.field_path(*f))).collect();
        let span_of = |i: usize| map.goals.get(i).copied().unwrap_or(Span::default());
        let (pa, pb) = (p.goal_path(GoalId(a as u32)), p.goal_path(GoalId(b as u32)));
        if ga.priority == gb.priority {
            diags.push(
                Diagnostic::new(
                    Code::E009,
                    span_of(b),
                    format!("goals `{pa}` and `{pb}` can never hold together (both read {}): their transitions would fight forever", names.join(", ")),
                )
                .with_label(span_of(a), format!("`{pa}` conflicts with this goal"))
                .with_hint("give one goal a higher priority, or change a predicate so both can hold"),
            );
        } else {
            let (higher, lower) = if ga.priority > gb.priority { (a, b) } else { (b, a) };
            let (ph, pl) = (p.goal_path(GoalId(higher as u32)), p.goal_path(GoalId(lower as u32)));
            diags.push(
                Diagnostic::new(
                    Code::W001,
                    span_of(lower),
                    format!(
                        "goal `{pl}` is dominated by `{ph}`: they can never hold together (both read {})",
                        names.join(", ")
                    ),
                )
                .with_label(span_of(higher), format!("`{ph}` has the higher priority and wins"))
                .with_hint(format!("`{pl}` is suspended while `{ph}` holds")),
            );
            p.dominance.push(Dominance { higher: GoalId(higher as u32), lower: GoalId(lower as u32), fields: shared });
        }
    }
}
