//! The syntax tree, as written: names are strings, nothing is resolved.

use crate::diagnostic::Span;

/// A name and where it is; the text borrows from the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Name<'s> {
    /// The text.
    pub text: &'s str,
    /// Where.
    pub span: Span,
}

/// A whole file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct File<'s> {
    /// Effect declarations.
    pub effects: Vec<EffectDecl<'s>>,
    /// Domains.
    pub domains: Vec<DomainDecl<'s>>,
}

/// A written type. `list<T, N>` carries its maximum length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeExpr<'s> {
    /// `int`
    Int,
    /// `bool`
    Bool,
    /// `string`
    String,
    /// `list<T>` or `list<T, N>`.
    List(Box<TypeExpr<'s>>, Option<u32>),
    /// An unknown type name (E002 later).
    Unknown(Name<'s>),
}

/// `name: type`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamDecl<'s> {
    /// Name.
    pub name: Name<'s>,
    /// Type.
    pub ty: TypeExpr<'s>,
    /// Span of the type.
    pub ty_span: Span,
}

/// `effect Ns.Name(params) -> type`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectDecl<'s> {
    /// Namespace.
    pub namespace: Name<'s>,
    /// Name.
    pub name: Name<'s>,
    /// Parameters.
    pub params: Vec<ParamDecl<'s>>,
    /// Result type.
    pub returns: Option<TypeExpr<'s>>,
    /// Whole declaration.
    pub span: Span,
}

/// A priority keyword and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriorityDecl {
    /// The level.
    pub level: crate::program::Priority,
    /// Where.
    pub span: Span,
}

/// `domain Name priority level { members }`, or `domain Name[key] ...`
/// for a kind whose instances are created at run time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainDecl<'s> {
    /// Name.
    pub name: Name<'s>,
    /// For a kind, what its key names (`name` in `domain Pool[name]`).
    pub key: Option<Name<'s>>,
    /// Declared level.
    pub priority: Option<PriorityDecl>,
    /// `reads` names.
    pub reads: Vec<Name<'s>>,
    /// Those of them read as `Kind[key]` (the instance with the same key).
    pub keyed_reads: Vec<Name<'s>>,
    /// Kinds read as `Kind[*]` (every instance: aggregates and lookups).
    pub all_reads: Vec<Name<'s>>,
    /// State fields.
    pub fields: Vec<FieldDecl<'s>>,
    /// Goals.
    pub goals: Vec<GoalDecl<'s>>,
    /// Invariants.
    pub invariants: Vec<GoalDecl<'s>>,
    /// Transitions.
    pub transitions: Vec<TransitionDecl<'s>>,
    /// Handlers.
    pub handlers: Vec<HandlerDecl<'s>>,
    /// From `domain` to the closing brace.
    pub span: Span,
}

impl DomainDecl<'_> {
    /// Drops what only body checking needs (field defaults, goal and
    /// invariant bodies, `when` guards, slices, handler bodies) and keeps
    /// every declaration: names, types, parameters, priorities, `reads`.
    /// Spare capacity goes too: an outline is kept for every domain.
    pub fn strip_bodies(&mut self) {
        for field in &mut self.fields {
            field.default = None;
        }
        for goal in self.goals.iter_mut().chain(&mut self.invariants) {
            goal.body = Vec::new();
        }
        for transition in &mut self.transitions {
            transition.when = None;
            transition.slices = Vec::new();
        }
        for handler in &mut self.handlers {
            handler.body = Vec::new();
        }
        self.reads.shrink_to_fit();
        self.keyed_reads.shrink_to_fit();
        self.all_reads.shrink_to_fit();
        self.fields.shrink_to_fit();
        self.goals.shrink_to_fit();
        self.invariants.shrink_to_fit();
        self.transitions.shrink_to_fit();
        self.handlers.shrink_to_fit();
    }
}

/// `name: type = default`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldDecl<'s> {
    /// Name.
    pub name: Name<'s>,
    /// Type.
    pub ty: TypeExpr<'s>,
    /// Span of the type.
    pub ty_span: Span,
    /// Default.
    pub default: Option<Expr<'s>>,
}

/// A goal or an invariant: a name and a body of statements that must be a
/// pure expression (the parser accepts any statements so the checker can say
/// precisely what is wrong).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoalDecl<'s> {
    /// Name.
    pub name: Name<'s>,
    /// Own level (goals only).
    pub priority: Option<PriorityDecl>,
    /// Body.
    pub body: Vec<Stmt<'s>>,
    /// The braces.
    pub body_span: Span,
}

/// `retry N backoff A..B`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryDecl {
    /// Attempts.
    pub attempts: i64,
    /// Backoff range in ms.
    pub backoff: Option<(u64, u64)>,
    /// Where.
    pub span: Span,
}

/// `transition Name for Goal when cond retry ... { slices }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransitionDecl<'s> {
    /// Name.
    pub name: Name<'s>,
    /// The goal repaired.
    pub goal: Name<'s>,
    /// Guard.
    pub when: Option<Expr<'s>>,
    /// Retry policy.
    pub retry: Option<RetryDecl>,
    /// Slices.
    pub slices: Vec<SliceDecl<'s>>,
}

/// `slice name { stmts }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceDecl<'s> {
    /// Name.
    pub name: Name<'s>,
    /// Statements.
    pub body: Vec<Stmt<'s>>,
}

/// `on Name(params) { stmts }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerDecl<'s> {
    /// Name.
    pub name: Name<'s>,
    /// Parameters.
    pub params: Vec<ParamDecl<'s>>,
    /// Statements.
    pub body: Vec<Stmt<'s>>,
}

/// A call argument, named (`pool: "web"`) or positional.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arg<'s> {
    /// Name, when named.
    pub name: Option<Name<'s>>,
    /// Value.
    pub value: Expr<'s>,
}

/// A statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stmt<'s> {
    /// `let name = value`.
    Let {
        /// Bound name.
        name: Name<'s>,
        /// Value.
        value: Expr<'s>,
        /// Whole statement.
        span: Span,
    },
    /// `target op value`.
    Assign {
        /// Target (a path expression).
        target: Expr<'s>,
        /// Operator.
        op: crate::program::AssignOp,
        /// Span of the operator.
        op_span: Span,
        /// Value.
        value: Expr<'s>,
        /// Whole statement.
        span: Span,
    },
    /// `if cond { } else { }`.
    If {
        /// Condition.
        cond: Expr<'s>,
        /// Then branch.
        then: Vec<Stmt<'s>>,
        /// Else branch.
        otherwise: Vec<Stmt<'s>>,
        /// Keyword span.
        span: Span,
    },
    /// `for name in list { }`.
    For {
        /// Loop variable.
        name: Name<'s>,
        /// List.
        list: Expr<'s>,
        /// Body.
        body: Vec<Stmt<'s>>,
        /// Keyword span.
        span: Span,
    },
    /// `emit Ns.Name(args) -> bind`.
    Emit {
        /// Namespace.
        namespace: Name<'s>,
        /// Effect name.
        name: Name<'s>,
        /// Arguments.
        args: Vec<Arg<'s>>,
        /// Result binding.
        bind: Option<Name<'s>>,
        /// Whole statement.
        span: Span,
    },
    /// `send Domain.Handler(args)`.
    Send {
        /// Domain.
        domain: Name<'s>,
        /// Addressed as `Kind[key]`: the instance with the sender's key.
        keyed: bool,
        /// Addressed as `Kind[expr]`: the instance with that key.
        key: Option<Box<Expr<'s>>>,
        /// Handler.
        name: Name<'s>,
        /// Arguments.
        args: Vec<Arg<'s>>,
        /// Whole statement.
        span: Span,
    },
    /// A bare expression (the body of goals and invariants).
    Expr(Expr<'s>),
}

/// Binary operators as written.
pub use crate::program::BinaryOp;
/// Quantifier kinds as written.
pub use crate::program::Quantifier;
/// Unary operators as written.
pub use crate::program::UnaryOp;

/// A name of one or two parts: `x`, `Domain.x`, or `Kind[key].x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Path<'s> {
    /// The parts: the first, and the second when there is one.
    parts: [Name<'s>; 2],
    /// 1 or 2.
    len: u8,
    /// The first part was written `Kind[key]`.
    keyed: bool,
    /// The first part was written `Kind[*]` (every instance).
    all: bool,
}

impl<'s> Path<'s> {
    /// A one-part name.
    pub fn single(name: Name<'s>) -> Path<'s> {
        Path { parts: [name, name], len: 1, keyed: false, all: false }
    }

    /// `Kind[*]` alone (`count(Kind[*])`), or `Kind[*].field`.
    pub fn every(kind: Name<'s>, field: Option<Name<'s>>) -> Path<'s> {
        match field {
            Some(f) => Path { parts: [kind, f], len: 2, keyed: false, all: true },
            None => Path { parts: [kind, kind], len: 1, keyed: false, all: true },
        }
    }

    /// Whether the first part was written `Kind[*]`.
    pub fn every_instance(&self) -> bool {
        self.all
    }

    /// `first.second`, or `first[key].second` when `keyed`.
    pub fn pair(first: Name<'s>, second: Name<'s>, keyed: bool) -> Path<'s> {
        Path { parts: [first, second], len: 2, keyed, all: false }
    }

    /// Whether the first part was written `Kind[key]`.
    pub fn keyed(&self) -> bool {
        self.keyed
    }

    /// The parts in order.
    pub fn segments(&self) -> &[Name<'s>] {
        &self.parts[..usize::from(self.len)]
    }
}

/// An expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expr<'s> {
    /// What it is.
    pub kind: ExprKind<'s>,
    /// Where.
    pub span: Span,
}

/// Expression forms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExprKind<'s> {
    /// Integer (durations are integers of milliseconds).
    Int(i64),
    /// Boolean.
    Bool(bool),
    /// String.
    Str(String),
    /// `x` or `Domain.x`.
    Path(Path<'s>),
    /// `[a, b]`.
    List(Vec<Expr<'s>>),
    /// `!e`, `-e`.
    Unary(UnaryOp, Box<Expr<'s>>),
    /// `a op b`.
    Binary(BinaryOp, Box<Expr<'s>>, Box<Expr<'s>>),
    /// `f(args)` or `A.f(args)`.
    Call(Path<'s>, Vec<Arg<'s>>),
    /// `all|any x in xs: body`.
    Quantified(Quantifier, Name<'s>, Box<Expr<'s>>, Box<Expr<'s>>),
    /// `Kind[expr].field`: a field of the instance with a computed key.
    Lookup(Name<'s>, Box<Expr<'s>>, Name<'s>),
    /// A parse error placeholder (already reported).
    Error,
}
