//! Expression evaluation and statement execution.
//!
//! Arithmetic is checked: overflow, division by zero and similar faults are
//! [`EvalError`] values, never panics. Statements never touch engine state
//! directly; they produce a [`Plan`] (writes, effects, messages) that the
//! caller checks against invariants and then commits.

use std::cell::Cell;
use std::collections::BTreeMap;

use crate::aggregates::World;

use lexum_compiler::program::{
    Aggregate, AssignOp, BinaryOp, Builtin, DomainId, EffectId, Expr, FieldId, HandlerId, Place, Program, Quantifier,
    SlotId, Stmt, UnaryOp, Value,
};

/// Why an expression or statement could not be evaluated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// Integer arithmetic overflowed.
    #[error("integer overflow")]
    Overflow,
    /// Division or remainder by zero.
    #[error("division by zero")]
    DivByZero,
    /// A value of the wrong shape reached an operator (a compiler bug or a
    /// corrupt program).
    #[error("type error in {0}")]
    Type(&'static str),
    /// `min`/`max` of an empty list.
    #[error("min or max of an empty list")]
    Empty,
    /// A local slot was read before it was bound.
    #[error("local slot {0} read before it was bound")]
    UnsetSlot(u32),
    /// A field id outside the program.
    #[error("unknown field {0}")]
    UnknownField(u32),
    /// `key` evaluated outside an instance of a kind.
    #[error("`key` outside an instance")]
    NoKey,
    /// `Kind[k].field` where no live instance has key `k`.
    #[error("no instance with key {0:?}")]
    NoInstance(String),
    /// The body took more evaluation steps than the runtime budget allows.
    #[error("over the runtime budget of {0} evaluation steps")]
    OverBudget(u64),
    /// A list field would exceed its maximum length.
    #[error("list of {len} items exceeds the maximum length {max}")]
    TooLong {
        /// Attempted length.
        len: usize,
        /// Declared maximum.
        max: u32,
    },
}

/// Read access to field values.
pub trait Fields {
    /// The current value of `field`.
    fn field(&self, field: FieldId) -> Option<&Value>;

    /// The key of the instance evaluating, when a kind's template is
    /// evaluated for one (instances have their key written in).
    fn key(&self) -> Option<&str> {
        None
    }

    /// An aggregate over a kind's live instances.
    fn aggregate(&self, _op: Aggregate, _kind: DomainId, _field: Option<FieldId>) -> Result<Value, EvalError> {
        Err(EvalError::Type("aggregate outside the engine"))
    }

    /// A template field of the live instance of `kind` with key `key`.
    fn lookup(&self, _kind: DomainId, key: &str, _field: FieldId) -> Result<Value, EvalError> {
        Err(EvalError::NoInstance(key.to_string()))
    }
}

impl Fields for Vec<Value> {
    fn field(&self, field: FieldId) -> Option<&Value> {
        self.get(field.index())
    }
}

/// Evaluation steps a body may take unless the engine is configured otherwise.
pub const DEFAULT_STEP_BUDGET: u64 = 1_000_000;

thread_local! {
    /// Steps each body may take (the engine sets it from its replicated
    /// configuration before applying an entry).
    static STEP_BUDGET: Cell<u64> = const { Cell::new(DEFAULT_STEP_BUDGET) };
    /// Steps left for the body being evaluated.
    static FUEL: Cell<u64> = const { Cell::new(DEFAULT_STEP_BUDGET) };
}

/// Sets the steps each body may take on this thread.
pub(crate) fn set_step_budget(steps: u64) {
    STEP_BUDGET.with(|b| b.set(steps));
}

/// Gives a body its whole budget; called where a body starts.
fn refuel() {
    FUEL.with(|f| f.set(STEP_BUDGET.with(Cell::get)));
}

/// Takes one step, or fails when the body has none left.
fn burn() -> Result<(), EvalError> {
    FUEL.with(|f| match f.get() {
        0 => Err(EvalError::OverBudget(STEP_BUDGET.with(Cell::get))),
        n => {
            f.set(n - 1);
            Ok(())
        }
    })
}

/// Local slots of one body: `None` until bound.
pub type Slots = Vec<Option<Value>>;

/// Fresh, unbound slots.
pub fn new_slots(count: u32) -> Slots {
    vec![None; count as usize]
}

fn set_slot(slots: &mut Slots, slot: SlotId, value: Value) {
    if slots.len() <= slot.index() {
        slots.resize(slot.index() + 1, None);
    }
    slots[slot.index()] = Some(value);
}

/// Evaluates a predicate to a boolean.
pub fn holds(expr: &Expr, slots: u32, fields: &dyn Fields) -> Result<bool, EvalError> {
    refuel();
    let mut locals = if slots == 0 { Vec::new() } else { new_slots(slots) };
    match eval(expr, fields, &mut locals)? {
        Value::Bool(b) => Ok(b),
        _ => Err(EvalError::Type("predicate")),
    }
}

fn int(v: &Value, what: &'static str) -> Result<i64, EvalError> {
    match v {
        Value::Int(n) => Ok(*n),
        _ => Err(EvalError::Type(what)),
    }
}

fn boolean(v: &Value, what: &'static str) -> Result<bool, EvalError> {
    match v {
        Value::Bool(b) => Ok(*b),
        _ => Err(EvalError::Type(what)),
    }
}

/// Evaluates an expression.
pub fn eval(expr: &Expr, fields: &dyn Fields, slots: &mut Slots) -> Result<Value, EvalError> {
    burn()?;
    match expr {
        Expr::Lit(v) => Ok(v.clone()),
        Expr::Key => fields.key().map(|k| Value::Str(k.to_string())).ok_or(EvalError::NoKey),
        Expr::Aggregate { op, kind, field } => fields.aggregate(*op, *kind, *field),
        Expr::Lookup { kind, key, field } => match eval(key, fields, slots)? {
            Value::Str(k) => fields.lookup(*kind, &k, *field),
            _ => Err(EvalError::Type("instance key")),
        },
        Expr::Field(f) => fields.field(*f).cloned().ok_or(EvalError::UnknownField(f.0)),
        Expr::Slot(s) => slots.get(s.index()).cloned().flatten().ok_or(EvalError::UnsetSlot(s.0)),
        Expr::List(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(eval(item, fields, slots)?);
            }
            Ok(Value::List(out))
        }
        Expr::Unary(op, inner) => {
            let v = eval(inner, fields, slots)?;
            match op {
                UnaryOp::Not => Ok(Value::Bool(!boolean(&v, "!")?)),
                UnaryOp::Neg => int(&v, "-")?.checked_neg().map(Value::Int).ok_or(EvalError::Overflow),
            }
        }
        Expr::Binary(op, a, b) => {
            let left = eval(a, fields, slots)?;
            match op {
                BinaryOp::And => {
                    if !boolean(&left, "&&")? {
                        return Ok(Value::Bool(false));
                    }
                    Ok(Value::Bool(boolean(&eval(b, fields, slots)?, "&&")?))
                }
                BinaryOp::Or => {
                    if boolean(&left, "||")? {
                        return Ok(Value::Bool(true));
                    }
                    Ok(Value::Bool(boolean(&eval(b, fields, slots)?, "||")?))
                }
                _ => {
                    let right = eval(b, fields, slots)?;
                    binary(*op, left, right)
                }
            }
        }
        Expr::Call(builtin, args) => {
            let mut vals = Vec::with_capacity(args.len());
            for a in args {
                vals.push(eval(a, fields, slots)?);
            }
            call(*builtin, vals)
        }
        Expr::Quantified { kind, slot, list, body } => {
            let items = match eval(list, fields, slots)? {
                Value::List(items) => items,
                _ => return Err(EvalError::Type("quantifier")),
            };
            for item in items {
                set_slot(slots, *slot, item);
                let b = boolean(&eval(body, fields, slots)?, "quantifier body")?;
                match kind {
                    Quantifier::All if !b => return Ok(Value::Bool(false)),
                    Quantifier::Any if b => return Ok(Value::Bool(true)),
                    _ => {}
                }
            }
            Ok(Value::Bool(matches!(kind, Quantifier::All)))
        }
    }
}

/// Applies a binary operator other than the short-circuit ones.
pub fn binary(op: BinaryOp, left: Value, right: Value) -> Result<Value, EvalError> {
    use BinaryOp::*;
    Ok(match op {
        Add => match (left, right) {
            (Value::Int(a), Value::Int(b)) => Value::Int(a.checked_add(b).ok_or(EvalError::Overflow)?),
            (Value::Str(a), Value::Str(b)) => Value::Str(a + &b),
            (Value::List(mut a), Value::List(b)) => {
                a.extend(b);
                Value::List(a)
            }
            _ => return Err(EvalError::Type("+")),
        },
        Sub => Value::Int(int(&left, "-")?.checked_sub(int(&right, "-")?).ok_or(EvalError::Overflow)?),
        Mul => Value::Int(int(&left, "*")?.checked_mul(int(&right, "*")?).ok_or(EvalError::Overflow)?),
        Div | Rem => {
            let (a, b) = (int(&left, "/")?, int(&right, "/")?);
            if b == 0 {
                return Err(EvalError::DivByZero);
            }
            let r = if op == Div { a.checked_div(b) } else { a.checked_rem(b) };
            Value::Int(r.ok_or(EvalError::Overflow)?)
        }
        Eq => Value::Bool(left == right),
        Ne => Value::Bool(left != right),
        Lt | Le | Gt | Ge => {
            if std::mem::discriminant(&left) != std::mem::discriminant(&right) {
                return Err(EvalError::Type("comparison"));
            }
            let ord = left.cmp(&right);
            Value::Bool(match op {
                Lt => ord.is_lt(),
                Le => ord.is_le(),
                Gt => ord.is_gt(),
                _ => ord.is_ge(),
            })
        }
        And | Or => Value::Bool(boolean(&left, "&&")? && boolean(&right, "&&")?),
    })
}

fn call(builtin: Builtin, args: Vec<Value>) -> Result<Value, EvalError> {
    match builtin {
        Builtin::Len => match args.first() {
            Some(Value::List(xs)) => Ok(Value::Int(xs.len() as i64)),
            Some(Value::Str(s)) => Ok(Value::Int(s.chars().count() as i64)),
            _ => Err(EvalError::Type("len")),
        },
        Builtin::Abs => int(args.first().ok_or(EvalError::Type("abs"))?, "abs")?
            .checked_abs()
            .map(Value::Int)
            .ok_or(EvalError::Overflow),
        Builtin::Min | Builtin::Max => {
            let items: Vec<Value> = match args.as_slice() {
                [Value::List(xs)] => xs.clone(),
                _ => args,
            };
            let mut best: Option<i64> = None;
            for v in &items {
                let n = int(v, "min/max")?;
                best = Some(match best {
                    None => n,
                    Some(b) if builtin == Builtin::Min => b.min(n),
                    Some(b) => b.max(n),
                });
            }
            best.map(Value::Int).ok_or(EvalError::Empty)
        }
        Builtin::Contains => match args.as_slice() {
            [Value::List(xs), x] => Ok(Value::Bool(xs.contains(x))),
            [Value::Str(s), Value::Str(sub)] => Ok(Value::Bool(s.contains(sub.as_str()))),
            _ => Err(EvalError::Type("contains")),
        },
    }
}

/// What a slice or handler body decided: committed as one unit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Field writes (final value per field).
    pub writes: BTreeMap<FieldId, Value>,
    /// Effects to emit, in order: effect, arguments, result slot.
    pub effects: Vec<(EffectId, Vec<Value>, Option<SlotId>)>,
    /// Messages to send, in order: handler, arguments, and the key of the
    /// instance addressed as `Kind[expr]`.
    pub sends: Vec<(HandlerId, Vec<Value>, Option<String>)>,
}

/// Runs statements against committed state, collecting a [`Plan`]; each
/// statement sees the plan's earlier writes.
pub(crate) fn exec(
    program: &Program,
    body: &[Stmt],
    base: World<'_>,
    slots: &mut Slots,
    plan: &mut Plan,
) -> Result<(), EvalError> {
    refuel();
    for stmt in body {
        exec_stmt(program, stmt, base, slots, plan)?;
    }
    Ok(())
}

/// Evaluates a transition's guard (a body of its own, with its budget).
pub(crate) fn guard(expr: &Expr, fields: &dyn Fields, slots: &mut Slots) -> Result<Value, EvalError> {
    refuel();
    eval(expr, fields, slots)
}

/// The code of a slice's or handler's evaluation failure: E008 over the
/// step budget, E012 otherwise.
pub(crate) fn failure_code(e: &EvalError) -> &'static str {
    match e {
        EvalError::OverBudget(_) => crate::codes::COST,
        _ => crate::codes::EVALUATION,
    }
}

fn eval_in(expr: &Expr, base: World<'_>, plan: &Plan, slots: &mut Slots) -> Result<Value, EvalError> {
    eval(expr, &base.with_writes(&plan.writes), slots)
}

fn exec_stmt(
    program: &Program,
    stmt: &Stmt,
    base: World<'_>,
    slots: &mut Slots,
    plan: &mut Plan,
) -> Result<(), EvalError> {
    burn()?;
    match stmt {
        Stmt::Let { slot, value } => {
            let v = eval_in(value, base, plan, slots)?;
            set_slot(slots, *slot, v);
        }
        Stmt::Assign { place, op, value } => {
            let v = eval_in(value, base, plan, slots)?;
            let current = || -> Result<Value, EvalError> {
                match place {
                    Place::Field(f) => plan
                        .writes
                        .get(f)
                        .or_else(|| base.values.get(f.index()))
                        .cloned()
                        .ok_or(EvalError::UnknownField(f.0)),
                    Place::Slot(s) => slots.get(s.index()).cloned().flatten().ok_or(EvalError::UnsetSlot(s.0)),
                }
            };
            let new = match op {
                AssignOp::Set => v,
                AssignOp::Add => binary(BinaryOp::Add, current()?, v)?,
                AssignOp::Sub => binary(BinaryOp::Sub, current()?, v)?,
            };
            match place {
                Place::Field(f) => {
                    let field = program.fields.get(f.index()).ok_or(EvalError::UnknownField(f.0))?;
                    if !new.has_type(&field.ty) {
                        return Err(EvalError::Type("assignment"));
                    }
                    check_len(&new, field.max_len)?;
                    plan.writes.insert(*f, new);
                }
                Place::Slot(s) => set_slot(slots, *s, new),
            }
        }
        Stmt::If { cond, then, otherwise } => {
            let c = boolean(&eval_in(cond, base, plan, slots)?, "if")?;
            let branch = if c { then } else { otherwise };
            for s in branch {
                exec_stmt(program, s, base, slots, plan)?;
            }
        }
        Stmt::For { slot, list, body } => {
            let items = match eval_in(list, base, plan, slots)? {
                Value::List(items) => items,
                _ => return Err(EvalError::Type("for")),
            };
            for item in items {
                set_slot(slots, *slot, item);
                for s in body {
                    exec_stmt(program, s, base, slots, plan)?;
                }
            }
        }
        Stmt::Emit { effect, args, bind } => {
            let mut vals = Vec::with_capacity(args.len());
            for a in args {
                vals.push(eval_in(a, base, plan, slots)?);
            }
            plan.effects.push((*effect, vals, *bind));
        }
        Stmt::Send { handler, args, key } => {
            let key = match key {
                None => None,
                Some(k) => match eval_in(k, base, plan, slots)? {
                    Value::Str(k) => Some(k),
                    _ => return Err(EvalError::Type("instance key")),
                },
            };
            let mut vals = Vec::with_capacity(args.len());
            for a in args {
                vals.push(eval_in(a, base, plan, slots)?);
            }
            plan.sends.push((*handler, vals, key));
        }
    }
    Ok(())
}

/// Checks a list value against a field's maximum length.
pub fn check_len(value: &Value, max_len: Option<u32>) -> Result<(), EvalError> {
    if let (Value::List(items), Some(max)) = (value, max_len) {
        if items.len() > max as usize {
            return Err(EvalError::TooLong { len: items.len(), max });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(n: i64) -> Expr {
        Expr::Lit(Value::Int(n))
    }

    fn check(expr: Expr, expected: Result<Value, EvalError>) {
        let fields: Vec<Value> = vec![Value::Int(7)];
        assert_eq!(eval(&expr, &fields, &mut Vec::new()), expected);
    }

    #[test]
    fn arithmetic_is_checked() {
        check(Expr::Binary(BinaryOp::Add, Box::new(lit(i64::MAX)), Box::new(lit(1))), Err(EvalError::Overflow));
        check(Expr::Binary(BinaryOp::Div, Box::new(lit(1)), Box::new(lit(0))), Err(EvalError::DivByZero));
        check(Expr::Binary(BinaryOp::Div, Box::new(lit(i64::MIN)), Box::new(lit(-1))), Err(EvalError::Overflow));
        check(Expr::Unary(UnaryOp::Neg, Box::new(lit(i64::MIN))), Err(EvalError::Overflow));
        check(Expr::Binary(BinaryOp::Sub, Box::new(Expr::Field(FieldId(0))), Box::new(lit(2))), Ok(Value::Int(5)));
    }

    #[test]
    fn builtins_and_quantifiers() {
        let xs = Expr::List(vec![lit(3), lit(-4), lit(9)]);
        check(Expr::Call(Builtin::Max, vec![xs.clone()]), Ok(Value::Int(9)));
        check(Expr::Call(Builtin::Min, vec![lit(2), lit(1)]), Ok(Value::Int(1)));
        check(Expr::Call(Builtin::Min, vec![Expr::List(vec![])]), Err(EvalError::Empty));
        check(Expr::Call(Builtin::Len, vec![xs.clone()]), Ok(Value::Int(3)));
        check(Expr::Call(Builtin::Contains, vec![xs.clone(), lit(9)]), Ok(Value::Bool(true)));
        let positive = Expr::Binary(BinaryOp::Gt, Box::new(Expr::Slot(SlotId(0))), Box::new(lit(0)));
        let q = |kind| Expr::Quantified {
            kind,
            slot: SlotId(0),
            list: Box::new(xs.clone()),
            body: Box::new(positive.clone()),
        };
        check(q(Quantifier::All), Ok(Value::Bool(false)));
        check(q(Quantifier::Any), Ok(Value::Bool(true)));
        check(Expr::Slot(SlotId(3)), Err(EvalError::UnsetSlot(3)));
    }
}
