//! The syntax tree, as written: names are strings, nothing is resolved.

use crate::diagnostic::Span;

/// A name and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name {
    /// The text.
    pub text: String,
    /// Where.
    pub span: Span,
}

/// A whole file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct File {
    /// Effect declarations.
    pub effects: Vec<EffectDecl>,
    /// Domains.
    pub domains: Vec<DomainDecl>,
}

/// A written type. `list<T, N>` carries its maximum length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeExpr {
    /// `int`
    Int,
    /// `bool`
    Bool,
    /// `string`
    String,
    /// `list<T>` or `list<T, N>`.
    List(Box<TypeExpr>, Option<u32>),
    /// An unknown type name (E002 later).
    Unknown(Name),
}

/// `name: type`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamDecl {
    /// Name.
    pub name: Name,
    /// Type.
    pub ty: TypeExpr,
    /// Span of the type.
    pub ty_span: Span,
}

/// `effect Ns.Name(params) -> type`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectDecl {
    /// Namespace.
    pub namespace: Name,
    /// Name.
    pub name: Name,
    /// Parameters.
    pub params: Vec<ParamDecl>,
    /// Result type.
    pub returns: Option<TypeExpr>,
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

/// `domain Name priority level { members }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainDecl {
    /// Name.
    pub name: Name,
    /// Declared level.
    pub priority: Option<PriorityDecl>,
    /// `reads` names.
    pub reads: Vec<Name>,
    /// State fields.
    pub fields: Vec<FieldDecl>,
    /// Goals.
    pub goals: Vec<GoalDecl>,
    /// Invariants.
    pub invariants: Vec<GoalDecl>,
    /// Transitions.
    pub transitions: Vec<TransitionDecl>,
    /// Handlers.
    pub handlers: Vec<HandlerDecl>,
}

/// `name: type = default`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldDecl {
    /// Name.
    pub name: Name,
    /// Type.
    pub ty: TypeExpr,
    /// Span of the type.
    pub ty_span: Span,
    /// Default.
    pub default: Option<Expr>,
}

/// A goal or an invariant: a name and a body of statements that must be a
/// pure expression (the parser accepts any statements so the checker can say
/// precisely what is wrong).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoalDecl {
    /// Name.
    pub name: Name,
    /// Own level (goals only).
    pub priority: Option<PriorityDecl>,
    /// Body.
    pub body: Vec<Stmt>,
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
pub struct TransitionDecl {
    /// Name.
    pub name: Name,
    /// The goal repaired.
    pub goal: Name,
    /// Guard.
    pub when: Option<Expr>,
    /// Retry policy.
    pub retry: Option<RetryDecl>,
    /// Slices.
    pub slices: Vec<SliceDecl>,
}

/// `slice name { stmts }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceDecl {
    /// Name.
    pub name: Name,
    /// Statements.
    pub body: Vec<Stmt>,
}

/// `on Name(params) { stmts }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerDecl {
    /// Name.
    pub name: Name,
    /// Parameters.
    pub params: Vec<ParamDecl>,
    /// Statements.
    pub body: Vec<Stmt>,
}

/// A call argument, named (`pool: "web"`) or positional.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arg {
    /// Name, when named.
    pub name: Option<Name>,
    /// Value.
    pub value: Expr,
}

/// A statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stmt {
    /// `let name = value`.
    Let {
        /// Bound name.
        name: Name,
        /// Value.
        value: Expr,
        /// Whole statement.
        span: Span,
    },
    /// `target op value`.
    Assign {
        /// Target (a path expression).
        target: Expr,
        /// Operator.
        op: crate::program::AssignOp,
        /// Span of the operator.
        op_span: Span,
        /// Value.
        value: Expr,
        /// Whole statement.
        span: Span,
    },
    /// `if cond { } else { }`.
    If {
        /// Condition.
        cond: Expr,
        /// Then branch.
        then: Vec<Stmt>,
        /// Else branch.
        otherwise: Vec<Stmt>,
        /// Keyword span.
        span: Span,
    },
    /// `for name in list { }`.
    For {
        /// Loop variable.
        name: Name,
        /// List.
        list: Expr,
        /// Body.
        body: Vec<Stmt>,
        /// Keyword span.
        span: Span,
    },
    /// `emit Ns.Name(args) -> bind`.
    Emit {
        /// Namespace.
        namespace: Name,
        /// Effect name.
        name: Name,
        /// Arguments.
        args: Vec<Arg>,
        /// Result binding.
        bind: Option<Name>,
        /// Whole statement.
        span: Span,
    },
    /// `send Domain.Handler(args)`.
    Send {
        /// Domain.
        domain: Name,
        /// Handler.
        name: Name,
        /// Arguments.
        args: Vec<Arg>,
        /// Whole statement.
        span: Span,
    },
    /// A bare expression (the body of goals and invariants).
    Expr(Expr),
}

/// Binary operators as written.
pub use crate::program::BinaryOp;
/// Unary operators as written.
pub use crate::program::UnaryOp;
/// Quantifier kinds as written.
pub use crate::program::Quantifier;

/// An expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where.
    pub span: Span,
}

/// Expression forms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExprKind {
    /// Integer (durations are integers of milliseconds).
    Int(i64),
    /// Boolean.
    Bool(bool),
    /// String.
    Str(String),
    /// `x` or `Domain.x` (segments).
    Path(Vec<Name>),
    /// `[a, b]`.
    List(Vec<Expr>),
    /// `!e`, `-e`.
    Unary(UnaryOp, Box<Expr>),
    /// `a op b`.
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `f(args)` or `A.f(args)`.
    Call(Vec<Name>, Vec<Arg>),
    /// `all|any x in xs: body`.
    Quantified(Quantifier, Name, Box<Expr>, Box<Expr>),
    /// A parse error placeholder (already reported).
    Error,
}
