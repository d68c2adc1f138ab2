//! The compiled program: the contract between the compiler and the engine.
//!
//! Everything here is resolved: names became indices, types were checked,
//! read-sets and write-sets were computed. The engine never sees source text.
//! The binary form ([`Program::encode`]) is versioned and deterministic: the
//! same source always gives the same bytes and so the same [`ProgramHash`].

use serde::{Deserialize, Serialize};
use std::fmt;

/// Leading bytes of every encoded program.
pub const MAGIC: [u8; 4] = *b"LXMP";
/// Version of the binary layout; bumped on any incompatible change.
pub const FORMAT_VERSION: u16 = 3;
/// Bytes before the payload: magic, format version, payload length.
const HEADER_LEN: usize = 4 + 2 + 8;

/// The five priority levels, ordered so that `Critical > Background`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Priority {
    /// Lowest: runs only when nothing else is ready.
    Background,
    /// Below the default.
    Low,
    /// The default level.
    Normal,
    /// Above the default.
    High,
    /// Highest: always dispatched first.
    Critical,
}

impl Priority {
    /// All levels from highest to lowest, the order in which work is dispatched.
    pub const DESCENDING: [Priority; 5] =
        [Priority::Critical, Priority::High, Priority::Normal, Priority::Low, Priority::Background];

    /// The keyword used in source (`critical`, `high`, ...).
    pub fn keyword(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
            Priority::Background => "background",
        }
    }

    /// Parses a level keyword.
    pub fn from_keyword(word: &str) -> Option<Priority> {
        Priority::DESCENDING.into_iter().find(|p| p.keyword() == word)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub u32);

        impl $name {
            /// The index into the program's table of this kind.
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
    };
}

id_type!(
    /// Index into [`Program::domains`].
    DomainId
);
id_type!(
    /// Index into [`Program::fields`] (fields of all domains share one table).
    FieldId
);
id_type!(
    /// Index into [`Program::goals`].
    GoalId
);
id_type!(
    /// Index into [`Program::invariants`].
    InvariantId
);
id_type!(
    /// Index into [`Program::transitions`].
    TransitionId
);
id_type!(
    /// Index into [`Program::handlers`].
    HandlerId
);
id_type!(
    /// Index into [`Program::effects`].
    EffectId
);
id_type!(
    /// A local variable of one body (goal, invariant, transition or handler):
    /// `let` bindings, loop and quantifier variables, handler parameters and
    /// `-> name` effect results. Slots of a transition are shared by all its
    /// slices, so a result bound in one slice is readable in the next.
    SlotId
);

/// A static type.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Type {
    /// 64-bit signed integer.
    Int,
    /// Boolean.
    Bool,
    /// UTF-8 string.
    String,
    /// Homogeneous list.
    List(Box<Type>),
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Int => f.write_str("int"),
            Type::Bool => f.write_str("bool"),
            Type::String => f.write_str("string"),
            Type::List(inner) => write!(f, "list<{inner}>"),
        }
    }
}

/// A runtime value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Value {
    /// An `int`.
    Int(i64),
    /// A `bool`.
    Bool(bool),
    /// A `string`.
    Str(String),
    /// A `list<T>`.
    List(Vec<Value>),
}

impl Value {
    /// Whether this value inhabits `ty` (lists are checked element by element).
    pub fn has_type(&self, ty: &Type) -> bool {
        match (self, ty) {
            (Value::Int(_), Type::Int) | (Value::Bool(_), Type::Bool) | (Value::Str(_), Type::String) => true,
            (Value::List(items), Type::List(inner)) => items.iter().all(|v| v.has_type(inner)),
            _ => false,
        }
    }

    /// The zero value of a type: `0`, `false`, `""`, `[]`.
    pub fn zero(ty: &Type) -> Value {
        match ty {
            Type::Int => Value::Int(0),
            Type::Bool => Value::Bool(false),
            Type::String => Value::Str(String::new()),
            Type::List(_) => Value::List(Vec::new()),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// A whole compiled program. Tables are in source order; ids index them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    /// Declared effects.
    pub effects: Vec<Effect>,
    /// Domains.
    pub domains: Vec<Domain>,
    /// State fields of every domain.
    pub fields: Vec<Field>,
    /// Goals of every domain.
    pub goals: Vec<Goal>,
    /// Invariants of every domain.
    pub invariants: Vec<Invariant>,
    /// Transitions of every domain.
    pub transitions: Vec<Transition>,
    /// Message handlers (`on`) of every domain.
    pub handlers: Vec<Handler>,
    /// Pairs of goals of different priority that cannot hold together
    /// (W001): the engine marks the lower one DOMINATED while the higher holds.
    pub dominance: Vec<Dominance>,
}

/// `effect Namespace.Name(params) -> returns`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effect {
    /// `Cloud` in `Cloud.SetNodeCount`.
    pub namespace: String,
    /// `SetNodeCount` in `Cloud.SetNodeCount`.
    pub name: String,
    /// Parameters, in declaration order (arguments are stored in this order).
    pub params: Vec<Param>,
    /// Type of the result a worker returns, if any.
    pub returns: Option<Type>,
}

impl Effect {
    /// `Namespace.Name`, the name workers register under.
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }
}

/// A named, typed parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Param {
    /// Parameter name.
    pub name: String,
    /// Parameter type.
    pub ty: Type,
}

/// A domain: state it owns and the goals, invariants, transitions and
/// handlers over it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    /// Domain name.
    pub name: String,
    /// For a kind (`domain Pool[name]`), what its key names: the domain is
    /// then a template, and its instances are created at run time.
    pub key: Option<String>,
    /// The domain's level, inherited by goals without their own.
    pub priority: Priority,
    /// Domains declared with `reads`.
    pub reads: Vec<DomainId>,
    /// Fields in declaration order.
    pub fields: Vec<FieldId>,
    /// Goals in source order.
    pub goals: Vec<GoalId>,
    /// Invariants in source order.
    pub invariants: Vec<InvariantId>,
    /// Transitions in source order.
    pub transitions: Vec<TransitionId>,
    /// Handlers in source order.
    pub handlers: Vec<HandlerId>,
}

/// One state field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// Field name (unique within its domain).
    pub name: String,
    /// Owning domain.
    pub domain: DomainId,
    /// Declared type.
    pub ty: Type,
    /// Initial value (the declared default, or the type's zero).
    pub default: Value,
    /// Maximum length for list fields (declared, or the configured default).
    pub max_len: Option<u32>,
}

/// `goal Name priority level { predicate }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Goal {
    /// Goal name (unique within its domain).
    pub name: String,
    /// Owning domain.
    pub domain: DomainId,
    /// Effective level (own, else the domain's).
    pub priority: Priority,
    /// The pure predicate.
    pub predicate: Expr,
    /// Number of local slots the predicate uses (quantifier variables).
    pub slots: u32,
    /// Every field the predicate may read, sorted and deduplicated.
    pub read_set: Vec<FieldId>,
    /// Static worst-case evaluation cost (abstract steps).
    pub cost: u64,
    /// Transitions declared `for` this goal, in source order.
    pub transitions: Vec<TransitionId>,
}

/// `invariant Name { predicate }`: must hold after every mutation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invariant {
    /// Invariant name (unique within its domain).
    pub name: String,
    /// Owning domain.
    pub domain: DomainId,
    /// The pure predicate.
    pub predicate: Expr,
    /// Number of local slots the predicate uses.
    pub slots: u32,
    /// Every field the predicate may read, sorted and deduplicated.
    pub read_set: Vec<FieldId>,
    /// Static worst-case evaluation cost.
    pub cost: u64,
}

/// Retry policy of a transition's effects (SPEC §3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts before the goal is FAILED (E010).
    pub max_attempts: u32,
    /// First backoff, in milliseconds.
    pub initial_backoff_ms: u64,
    /// Backoff cap, in milliseconds (the factor is 2).
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 8, initial_backoff_ms: 500, max_backoff_ms: 30_000 }
    }
}

/// `transition Name for Goal when cond retry N backoff A..B { slice+ }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// Transition name (unique within its domain).
    pub name: String,
    /// Owning domain.
    pub domain: DomainId,
    /// The goal it repairs (same domain).
    pub goal: GoalId,
    /// Guard: the transition is armed only when this holds.
    pub when: Option<Expr>,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Slices in order.
    pub slices: Vec<Slice>,
    /// Local slots shared by the guard and all slices.
    pub slots: u32,
    /// Fields written by its slices and, transitively, by the handlers of the
    /// messages they send. Sorted and deduplicated.
    pub write_set: Vec<FieldId>,
    /// Effects emitted by its slices and, transitively, by handlers reached.
    pub emits: Vec<EffectId>,
    /// Whether anything it writes, sends or emits can reach its goal's
    /// read-set (false means W002 and an immediate trap at the first
    /// non-convergent cycle).
    pub reaches_goal: bool,
}

/// `slice name { stmt* }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slice {
    /// Slice name.
    pub name: String,
    /// Statements.
    pub body: Vec<Stmt>,
    /// Fields this slice writes directly (sorted, deduplicated).
    pub write_set: Vec<FieldId>,
    /// Handlers this slice sends to directly.
    pub sends: Vec<HandlerId>,
    /// Effects this slice emits directly.
    pub emits: Vec<EffectId>,
}

/// `on Name(params) { stmt* }`: the only way other domains change this one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handler {
    /// Handler name (unique within its domain).
    pub name: String,
    /// Owning domain.
    pub domain: DomainId,
    /// Parameters; parameter `i` is bound to `SlotId(i)`.
    pub params: Vec<Param>,
    /// Statements.
    pub body: Vec<Stmt>,
    /// Local slots (parameters first).
    pub slots: u32,
    /// Fields it writes directly (sorted, deduplicated).
    pub write_set: Vec<FieldId>,
    /// Handlers it sends to directly.
    pub sends: Vec<HandlerId>,
    /// Effects it emits directly.
    pub emits: Vec<EffectId>,
}

/// Two goals of different priority that cannot hold at the same time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dominance {
    /// The higher-priority goal, which wins.
    pub higher: GoalId,
    /// The lower-priority goal, DOMINATED while `higher` holds.
    pub lower: GoalId,
    /// Fields both predicates read.
    pub fields: Vec<FieldId>,
}

/// Unary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnaryOp {
    /// `!b`
    Not,
    /// `-n`
    Neg,
}

/// Binary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinaryOp {
    /// `*`
    Mul,
    /// `/` (integer division; division by zero is an evaluation error)
    Div,
    /// `%`
    Rem,
    /// `+` (ints; also concatenates strings and lists)
    Add,
    /// `-`
    Sub,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `&&` (short-circuit)
    And,
    /// `||` (short-circuit)
    Or,
}

/// Pure builtin functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Builtin {
    /// `len(xs)` of a list or string.
    Len,
    /// `min(a, b, ...)` of ints, or `min(xs)` of a non-empty `list<int>`.
    Min,
    /// `max(a, b, ...)` of ints, or `max(xs)` of a non-empty `list<int>`.
    Max,
    /// `abs(n)`.
    Abs,
    /// `contains(xs, x)` for lists, `contains(s, sub)` for strings.
    Contains,
}

/// `all x in xs: body` or `any x in xs: body`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Quantifier {
    /// True when the body holds for every element (true on an empty list).
    All,
    /// True when the body holds for some element (false on an empty list).
    Any,
}

/// A typed, resolved expression.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Expr {
    /// A literal.
    Lit(Value),
    /// A state field (of the evaluating domain or one it reads).
    Field(FieldId),
    /// A local slot.
    Slot(SlotId),
    /// `[a, b, c]`.
    List(Vec<Expr>),
    /// `!e`, `-e`.
    Unary(UnaryOp, Box<Expr>),
    /// `a op b`.
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `builtin(args)`.
    Call(Builtin, Vec<Expr>),
    /// `all|any slot in list: body`.
    Quantified {
        /// `all` or `any`.
        kind: Quantifier,
        /// The bound variable.
        slot: SlotId,
        /// The list iterated.
        list: Box<Expr>,
        /// The predicate.
        body: Box<Expr>,
    },
    /// `key`: the key of the instance evaluating (a string; only in kinds).
    Key,
    /// `count(Kind[*])`, `sum(Kind[*].field)`, ...: over every live
    /// instance of a kind, maintained incrementally by the engine.
    Aggregate {
        /// What is computed.
        op: Aggregate,
        /// The kind's template domain.
        kind: DomainId,
        /// The template's field aggregated (`None` for `count(Kind[*])`).
        field: Option<FieldId>,
    },
    /// `Kind[expr].field`: a field of the instance whose key `expr`
    /// evaluates to (an evaluation error when there is none).
    Lookup {
        /// The kind's template domain.
        kind: DomainId,
        /// The key (a string).
        key: Box<Expr>,
        /// The template's field read.
        field: FieldId,
    },
}

/// What an aggregate over a kind's instances computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Aggregate {
    /// `count(Kind[*])`: live instances; `count(Kind[*].flag)`: those whose
    /// bool field holds.
    Count,
    /// `sum(Kind[*].n)` of an int field (0 over none).
    Sum,
    /// `min(Kind[*].n)` of an int field (an evaluation error over none).
    Min,
    /// `max(Kind[*].n)` of an int field (an evaluation error over none).
    Max,
    /// `all(Kind[*].flag)` of a bool field (true over none).
    All,
    /// `any(Kind[*].flag)` of a bool field (false over none).
    Any,
}

impl Aggregate {
    /// The function's name in source.
    pub fn name(self) -> &'static str {
        match self {
            Aggregate::Count => "count",
            Aggregate::Sum => "sum",
            Aggregate::Min => "min",
            Aggregate::Max => "max",
            Aggregate::All => "all",
            Aggregate::Any => "any",
        }
    }

    /// Parses a function name.
    pub fn from_name(name: &str) -> Option<Aggregate> {
        [Aggregate::Count, Aggregate::Sum, Aggregate::Min, Aggregate::Max, Aggregate::All, Aggregate::Any]
            .into_iter()
            .find(|a| a.name() == name)
    }
}

/// Assignment operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AssignOp {
    /// `=`
    Set,
    /// `+=`
    Add,
    /// `-=`
    Sub,
}

/// What an assignment writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Place {
    /// A field of the executing domain.
    Field(FieldId),
    /// A local slot.
    Slot(SlotId),
}

/// A resolved statement of a slice or handler.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Stmt {
    /// `let slot = value`.
    Let {
        /// Bound slot.
        slot: SlotId,
        /// Value.
        value: Expr,
    },
    /// `place op= value`.
    Assign {
        /// Target.
        place: Place,
        /// `=`, `+=` or `-=`.
        op: AssignOp,
        /// Value.
        value: Expr,
    },
    /// `if cond { then } else { otherwise }`.
    If {
        /// Condition.
        cond: Expr,
        /// Taken branch.
        then: Vec<Stmt>,
        /// Else branch (may be empty).
        otherwise: Vec<Stmt>,
    },
    /// `for slot in list { body }`.
    For {
        /// Loop variable.
        slot: SlotId,
        /// The (bounded) list.
        list: Expr,
        /// Body.
        body: Vec<Stmt>,
    },
    /// `emit Ns.Name(args) -> bind`.
    Emit {
        /// The effect.
        effect: EffectId,
        /// Arguments in the effect's parameter order.
        args: Vec<Expr>,
        /// Slot receiving the result, readable in later slices.
        bind: Option<SlotId>,
    },
    /// `send Domain.Handler(args)`, or `send Kind[expr].Handler(args)`.
    Send {
        /// The handler (a kind's template handler when addressed by key).
        handler: HandlerId,
        /// Arguments in the handler's parameter order.
        args: Vec<Expr>,
        /// The key of the instance addressed, when computed (`Kind[expr]`);
        /// `None` for a singleton or the instance with the sender's key.
        key: Option<Expr>,
    },
}

/// The blake3 hash of an encoded program.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProgramHash(pub [u8; 32]);

impl ProgramHash {
    /// Hashes encoded program bytes.
    pub fn of(bytes: &[u8]) -> ProgramHash {
        ProgramHash(*blake3::hash(bytes).as_bytes())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for ProgramHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProgramHash({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for ProgramHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why bytes could not be decoded as a program.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Too short or wrong magic.
    #[error("not a compiled Lexum program (bad magic)")]
    BadMagic,
    /// Written by an incompatible compiler.
    #[error("compiled program format {found} is not supported (expected {expected})")]
    UnsupportedVersion {
        /// Version in the header.
        found: u16,
        /// Version this build reads.
        expected: u16,
    },
    /// Header length disagrees with the bytes.
    #[error("compiled program is truncated or has trailing bytes")]
    BadLength,
    /// Payload did not decode.
    #[error("compiled program payload is corrupt: {0}")]
    Corrupt(String),
}

impl Program {
    /// Encodes to the versioned binary form: `LXMP`, format version (u16 LE),
    /// payload length (u64 LE), then the postcard payload.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain data structures to a Vec cannot fail.
        let payload = postcard::to_stdvec(self).unwrap_or_default();
        let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&payload);
        bytes
    }

    /// Decodes bytes written by [`Program::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Program, DecodeError> {
        if bytes.len() < HEADER_LEN || bytes[..4] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion { found: version, expected: FORMAT_VERSION });
        }
        let mut len_bytes = [0u8; 8];
        len_bytes.copy_from_slice(&bytes[6..HEADER_LEN]);
        let len = u64::from_le_bytes(len_bytes);
        if (bytes.len() - HEADER_LEN) as u64 != len {
            return Err(DecodeError::BadLength);
        }
        postcard::from_bytes(&bytes[HEADER_LEN..]).map_err(|e| DecodeError::Corrupt(e.to_string()))
    }

    /// The content hash of [`Program::encode`]'s bytes.
    pub fn hash(&self) -> ProgramHash {
        ProgramHash::of(&self.encode())
    }

    /// Looks a domain up by name.
    pub fn domain_by_name(&self, name: &str) -> Option<DomainId> {
        self.domains.iter().position(|d| d.name == name).map(|i| DomainId(i as u32))
    }

    /// Looks a field of a domain up by name.
    pub fn field_by_name(&self, domain: DomainId, name: &str) -> Option<FieldId> {
        self.domains.get(domain.index())?.fields.iter().copied().find(|f| self.fields[f.index()].name == name)
    }

    /// Looks a goal of a domain up by name.
    pub fn goal_by_name(&self, domain: DomainId, name: &str) -> Option<GoalId> {
        self.domains.get(domain.index())?.goals.iter().copied().find(|g| self.goals[g.index()].name == name)
    }

    /// `Domain.field` for messages and evidence.
    pub fn field_path(&self, field: FieldId) -> String {
        let f = &self.fields[field.index()];
        format!("{}.{}", self.domains[f.domain.index()].name, f.name)
    }

    /// `Domain.Goal` for messages and evidence.
    pub fn goal_path(&self, goal: GoalId) -> String {
        let g = &self.goals[goal.index()];
        format!("{}.{}", self.domains[g.domain.index()].name, g.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Program {
        Program {
            effects: vec![],
            domains: vec![Domain {
                key: None,
                name: "Pool".into(),
                priority: Priority::Normal,
                reads: vec![],
                fields: vec![FieldId(0)],
                goals: vec![],
                invariants: vec![],
                transitions: vec![],
                handlers: vec![],
            }],
            fields: vec![Field {
                name: "nodes".into(),
                domain: DomainId(0),
                ty: Type::Int,
                default: Value::Int(3),
                max_len: None,
            }],
            goals: vec![],
            invariants: vec![],
            transitions: vec![],
            handlers: vec![],
            dominance: vec![],
        }
    }

    #[test]
    fn encode_round_trips_and_is_deterministic() {
        let p = tiny();
        let bytes = p.encode();
        assert_eq!(bytes, tiny().encode());
        assert_eq!(Program::decode(&bytes), Ok(p.clone()));
        assert_eq!(p.hash(), ProgramHash::of(&bytes));
    }

    #[test]
    fn decode_rejects_garbage() {
        assert_eq!(Program::decode(b"nope"), Err(DecodeError::BadMagic));
        let mut bytes = tiny().encode();
        bytes[4] = 9;
        assert!(matches!(Program::decode(&bytes), Err(DecodeError::UnsupportedVersion { .. })));
        let mut bytes = tiny().encode();
        bytes.pop();
        assert_eq!(Program::decode(&bytes), Err(DecodeError::BadLength));
    }

    #[test]
    fn priorities_order_from_background_to_critical() {
        assert!(Priority::Critical > Priority::High);
        assert!(Priority::Low > Priority::Background);
        assert_eq!(Priority::from_keyword("normal"), Some(Priority::Normal));
        assert_eq!(Priority::from_keyword("urgent"), None);
    }
}

/// Decoding of the recursive types: each level is counted by a
/// [`NestingGuard`](crate::bounds::NestingGuard), so hostile bytes cannot
/// nest deeper than the decoder's bound and exhaust the stack. The `Repr`
/// enums mirror the derived layout of the real ones variant for variant.
mod nested_decode {
    use super::*;
    use crate::bounds::NestingGuard;
    use serde::Deserializer;

    #[derive(Deserialize)]
    enum TypeRepr {
        Int,
        Bool,
        String,
        List(Box<Type>),
    }

    impl<'de> Deserialize<'de> for Type {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Type, D::Error> {
            let _level = NestingGuard::enter::<D::Error>()?;
            Ok(match TypeRepr::deserialize(d)? {
                TypeRepr::Int => Type::Int,
                TypeRepr::Bool => Type::Bool,
                TypeRepr::String => Type::String,
                TypeRepr::List(inner) => Type::List(inner),
            })
        }
    }

    #[derive(Deserialize)]
    enum ValueRepr {
        Int(i64),
        Bool(bool),
        Str(String),
        List(Vec<Value>),
    }

    impl<'de> Deserialize<'de> for Value {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
            let _level = NestingGuard::enter::<D::Error>()?;
            Ok(match ValueRepr::deserialize(d)? {
                ValueRepr::Int(n) => Value::Int(n),
                ValueRepr::Bool(b) => Value::Bool(b),
                ValueRepr::Str(s) => Value::Str(s),
                ValueRepr::List(items) => Value::List(items),
            })
        }
    }

    #[derive(Deserialize)]
    enum ExprRepr {
        Lit(Value),
        Field(FieldId),
        Slot(SlotId),
        List(Vec<Expr>),
        Unary(UnaryOp, Box<Expr>),
        Binary(BinaryOp, Box<Expr>, Box<Expr>),
        Call(Builtin, Vec<Expr>),
        Quantified { kind: Quantifier, slot: SlotId, list: Box<Expr>, body: Box<Expr> },
        Key,
        Aggregate { op: Aggregate, kind: DomainId, field: Option<FieldId> },
        Lookup { kind: DomainId, key: Box<Expr>, field: FieldId },
    }

    impl<'de> Deserialize<'de> for Expr {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Expr, D::Error> {
            let _level = NestingGuard::enter::<D::Error>()?;
            Ok(match ExprRepr::deserialize(d)? {
                ExprRepr::Lit(v) => Expr::Lit(v),
                ExprRepr::Field(f) => Expr::Field(f),
                ExprRepr::Slot(s) => Expr::Slot(s),
                ExprRepr::List(items) => Expr::List(items),
                ExprRepr::Unary(op, a) => Expr::Unary(op, a),
                ExprRepr::Binary(op, a, b) => Expr::Binary(op, a, b),
                ExprRepr::Call(f, args) => Expr::Call(f, args),
                ExprRepr::Quantified { kind, slot, list, body } => Expr::Quantified { kind, slot, list, body },
                ExprRepr::Key => Expr::Key,
                ExprRepr::Aggregate { op, kind, field } => Expr::Aggregate { op, kind, field },
                ExprRepr::Lookup { kind, key, field } => Expr::Lookup { kind, key, field },
            })
        }
    }

    #[derive(Deserialize)]
    enum StmtRepr {
        Let { slot: SlotId, value: Expr },
        Assign { place: Place, op: AssignOp, value: Expr },
        If { cond: Expr, then: Vec<Stmt>, otherwise: Vec<Stmt> },
        For { slot: SlotId, list: Expr, body: Vec<Stmt> },
        Emit { effect: EffectId, args: Vec<Expr>, bind: Option<SlotId> },
        Send { handler: HandlerId, args: Vec<Expr>, key: Option<Expr> },
    }

    impl<'de> Deserialize<'de> for Stmt {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Stmt, D::Error> {
            let _level = NestingGuard::enter::<D::Error>()?;
            Ok(match StmtRepr::deserialize(d)? {
                StmtRepr::Let { slot, value } => Stmt::Let { slot, value },
                StmtRepr::Assign { place, op, value } => Stmt::Assign { place, op, value },
                StmtRepr::If { cond, then, otherwise } => Stmt::If { cond, then, otherwise },
                StmtRepr::For { slot, list, body } => Stmt::For { slot, list, body },
                StmtRepr::Emit { effect, args, bind } => Stmt::Emit { effect, args, bind },
                StmtRepr::Send { handler, args, key } => Stmt::Send { handler, args, key },
            })
        }
    }
}
