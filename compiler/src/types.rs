//! Checker types: like [`Type`] but lists carry their maximum length, which
//! the cost analysis needs. `Unknown` stands for "already reported" and
//! matches anything, so one mistake gives one diagnostic.

use crate::program::Type;
use std::fmt;

/// A type with list bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ty {
    /// `int`
    Int,
    /// `bool`
    Bool,
    /// `string`
    Str,
    /// `list<T, N>`: elements and maximum length.
    List(Box<Ty>, u32),
    /// Not known because of an earlier error.
    Unknown,
}

impl Ty {
    /// Whether values of `self` can be used where `other` is expected
    /// (list bounds are not compared: lengths are checked at runtime).
    pub fn compatible(&self, other: &Ty) -> bool {
        match (self, other) {
            (Ty::Unknown, _) | (_, Ty::Unknown) => true,
            (Ty::List(a, _), Ty::List(b, _)) => a.compatible(b),
            (a, b) => a == b,
        }
    }

    /// The program type (unknown parts become `int`; such programs have errors).
    pub fn to_type(&self) -> Type {
        match self {
            Ty::Int | Ty::Unknown => Type::Int,
            Ty::Bool => Type::Bool,
            Ty::Str => Type::String,
            Ty::List(inner, _) => Type::List(Box::new(inner.to_type())),
        }
    }

    /// The maximum length of a list type, `None` for other types.
    pub fn list_bound(&self) -> Option<u32> {
        match self {
            Ty::List(_, n) => Some(*n),
            _ => None,
        }
    }

    /// The more informative of two compatible types (for list literals).
    pub fn join(&self, other: &Ty) -> Ty {
        match (self, other) {
            (Ty::Unknown, t) | (t, Ty::Unknown) => t.clone(),
            (Ty::List(a, n), Ty::List(b, m)) => Ty::List(Box::new(a.join(b)), (*n).max(*m)),
            (a, _) => a.clone(),
        }
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Int => f.write_str("int"),
            Ty::Bool => f.write_str("bool"),
            Ty::Str => f.write_str("string"),
            Ty::List(inner, n) => write!(f, "list<{inner}, {n}>"),
            Ty::Unknown => f.write_str("{unknown}"),
        }
    }
}
