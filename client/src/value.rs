//! Lexum values: parsing the `lexumctl set` syntax, printing, JSON, and the
//! conversion to and from the wire (the only place that knows both).
//!
//! Syntax: `5`, `-3` (int), `true`/`false` (bool), `"quoted"` (string with
//! `\"`, `\\`, `\n`, `\t` escapes) or a bare word (string), and lists
//! `[1, 2]`, `["a", "b"]`, `[]`.

pub use lexum_compiler::program::Value;
use lexum_proto::v1 as pb;

/// Deepest list nesting accepted by [`parse_value`] and [`from_wire`].
pub const MAX_DEPTH: usize = 8;

/// Why a value or assignment could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// Parses a value in the `set` syntax.
///
/// ```
/// use lexum_client::{parse_value, Value};
/// assert_eq!(parse_value("-3").unwrap(), Value::Int(-3));
/// assert_eq!(parse_value("web").unwrap(), Value::Str("web".into()));
/// assert_eq!(parse_value("[1,2]").unwrap(), Value::List(vec![Value::Int(1), Value::Int(2)]));
/// ```
pub fn parse_value(text: &str) -> Result<Value, ParseError> {
    let mut parser = Parser { chars: text.char_indices().peekable(), text };
    parser.skip_ws();
    if parser.chars.peek().is_none() {
        return Err(ParseError("empty value (quote an empty string as \"\")".into()));
    }
    let value = parser.value(0, true)?;
    parser.skip_ws();
    match parser.chars.peek() {
        None => Ok(value),
        Some((i, _)) => Err(ParseError(format!("unexpected `{}` after the value", &text[*i..]))),
    }
}

/// One `Domain.field=value` assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// Domain name.
    pub domain: String,
    /// Field name.
    pub field: String,
    /// New value.
    pub value: Value,
}

/// Parses `Domain.field=value`.
///
/// ```
/// use lexum_client::{parse_assignment, Value};
/// let a = parse_assignment("Pool.nodes=5").unwrap();
/// assert_eq!((a.domain.as_str(), a.field.as_str(), a.value), ("Pool", "nodes", Value::Int(5)));
/// assert!(parse_assignment("Pool.nodes").is_err());
/// ```
pub fn parse_assignment(text: &str) -> Result<Assignment, ParseError> {
    let malformed =
        || ParseError(format!("malformed assignment `{text}`: expected Domain.field=value or Kind[key].field=value"));
    let (target, value) = text.split_once('=').ok_or_else(malformed)?;
    let (domain, field) = split_target(target.trim()).ok_or_else(malformed)?;
    if !is_domain_name(domain) || !is_ident(field) {
        return Err(malformed());
    }
    let value = parse_value(value).map_err(|e| ParseError(format!("bad value in `{text}`: {e}")))?;
    Ok(Assignment { domain: domain.to_string(), field: field.to_string(), value })
}

/// `Domain.rest` or `Kind[key].rest` split after the domain (a key may
/// contain dots).
pub fn split_target(text: &str) -> Option<(&str, &str)> {
    match text.find('[') {
        Some(open) if text[..open].find('.').is_none() => {
            let close = open + text[open..].find(']')?;
            let rest = text[close + 1..].strip_prefix('.')?;
            Some((&text[..=close], rest))
        }
        _ => text.split_once('.'),
    }
}

/// Whether `s` names a domain: `Domain`, or an instance `Kind[key]`.
pub fn is_domain_name(s: &str) -> bool {
    match s.strip_suffix(']').and_then(|s| s.split_once('[')) {
        Some((kind, key)) => is_ident(kind) && is_key(key),
        None => is_ident(s),
    }
}

/// Whether `s` may be an instance key: 1 to 128 letters, digits or `-_.:`.
pub fn is_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// Parses `Kind/key` (an instance on the command line).
///
/// ```
/// use lexum_client::value::parse_instance;
/// assert_eq!(parse_instance("Pool/web").unwrap(), ("Pool".to_string(), "web".to_string()));
/// assert!(parse_instance("Pool").is_err());
/// ```
pub fn parse_instance(text: &str) -> Result<(String, String), ParseError> {
    let malformed = || ParseError(format!("malformed instance `{text}`: expected Kind/key"));
    let (kind, key) = text.split_once('/').ok_or_else(malformed)?;
    if !is_ident(kind) || !is_key(key) {
        return Err(malformed());
    }
    Ok((kind.to_string(), key.to_string()))
}

/// Whether `s` is a Lexum identifier.
pub fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

struct Parser<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    text: &'a str,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while matches!(self.chars.peek(), Some((_, c)) if c.is_whitespace()) {
            self.chars.next();
        }
    }

    fn value(&mut self, depth: usize, top: bool) -> Result<Value, ParseError> {
        if depth > MAX_DEPTH {
            return Err(ParseError(format!("lists nested deeper than {MAX_DEPTH}")));
        }
        self.skip_ws();
        match self.chars.peek().copied() {
            Some((_, '[')) => {
                self.chars.next();
                self.list(depth)
            }
            Some((_, '"')) => {
                self.chars.next();
                self.quoted().map(Value::Str)
            }
            Some((start, _)) => {
                let mut end = self.text.len();
                while let Some((i, c)) = self.chars.peek().copied() {
                    if !top && (c == ',' || c == ']') {
                        end = i;
                        break;
                    }
                    if c == '[' || c == ']' || c == '"' {
                        return Err(ParseError(format!("unexpected `{c}` in `{}`", &self.text[start..])));
                    }
                    self.chars.next();
                }
                let word = self.text[start..end].trim();
                if word.is_empty() {
                    return Err(ParseError("empty list element".into()));
                }
                Ok(scalar(word))
            }
            None => Err(ParseError("missing value".into())),
        }
    }

    fn list(&mut self, depth: usize) -> Result<Value, ParseError> {
        let mut items = Vec::new();
        self.skip_ws();
        if let Some((_, ']')) = self.chars.peek() {
            self.chars.next();
            return Ok(Value::List(items));
        }
        loop {
            self.skip_ws();
            if self.chars.peek().is_none() {
                return Err(ParseError("unterminated list: missing `]`".into()));
            }
            let item = self.value(depth + 1, false)?;
            items.push(item);
            self.skip_ws();
            match self.chars.next() {
                Some((_, ',')) => continue,
                Some((_, ']')) => return Ok(Value::List(items)),
                Some((_, c)) => return Err(ParseError(format!("expected `,` or `]`, found `{c}`"))),
                None => return Err(ParseError("unterminated list: missing `]`".into())),
            }
        }
    }

    fn quoted(&mut self) -> Result<String, ParseError> {
        let mut out = String::new();
        while let Some((_, c)) = self.chars.next() {
            match c {
                '"' => return Ok(out),
                '\\' => match self.chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, c @ ('"' | '\\'))) => out.push(c),
                    Some((_, c)) => return Err(ParseError(format!("unknown escape `\\{c}`"))),
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err(ParseError("unterminated string: missing `\"`".into()))
    }
}

fn scalar(word: &str) -> Value {
    match word {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => match word.parse::<i64>() {
            Ok(n) => Value::Int(n),
            Err(_) => Value::Str(word.to_string()),
        },
    }
}

/// Prints a value for humans: strings quoted, lists bracketed.
pub fn display(value: &Value) -> String {
    value.to_string()
}

/// Serializes a value as plain JSON (for `#[serde(serialize_with)]`).
pub fn serialize_plain<S: serde::Serializer>(value: &Value, serializer: S) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&to_json(value), serializer)
}

/// A value as plain JSON (`5`, `true`, `"web"`, `[1, 2]`).
pub fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Int(n) => serde_json::Value::from(*n),
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Str(s) => serde_json::Value::String(s.clone()),
        Value::List(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
    }
}

/// A value to the wire.
pub fn to_wire(value: &Value) -> pb::Value {
    let kind = match value {
        Value::Int(n) => pb::value::Kind::Int(*n),
        Value::Bool(b) => pb::value::Kind::Bool(*b),
        Value::Str(s) => pb::value::Kind::Str(s.clone()),
        Value::List(items) => pb::value::Kind::List(pb::ValueList { items: items.iter().map(to_wire).collect() }),
    };
    pb::Value { kind: Some(kind) }
}

/// A wire value, `None` when it has no kind or is nested too deeply.
pub fn from_wire(value: &pb::Value) -> Option<Value> {
    from_wire_at(value, 0)
}

fn from_wire_at(value: &pb::Value, depth: usize) -> Option<Value> {
    if depth > MAX_DEPTH {
        return None;
    }
    Some(match value.kind.as_ref()? {
        pb::value::Kind::Int(n) => Value::Int(*n),
        pb::value::Kind::Bool(b) => Value::Bool(*b),
        pb::value::Kind::Str(s) => Value::Str(s.clone()),
        pb::value::Kind::List(list) => {
            Value::List(list.items.iter().map(|v| from_wire_at(v, depth + 1)).collect::<Option<_>>()?)
        }
    })
}

/// Named wire values (fields, arguments) as pairs; kind-less values are skipped.
pub fn named_from_wire(values: &[pb::NamedValue]) -> Vec<(String, Value)> {
    values.iter().filter_map(|nv| Some((nv.name.clone(), from_wire(nv.value.as_ref()?)?))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Value) {
        assert_eq!(parse_value(input), Ok(expected), "{input}");
    }

    fn check_err(input: &str) {
        assert!(parse_value(input).is_err(), "{input} should not parse");
    }

    fn s(x: &str) -> Value {
        Value::Str(x.into())
    }

    #[test]
    fn ints() {
        check("5", Value::Int(5));
        check("-3", Value::Int(-3));
    }

    #[test]
    fn bools() {
        check("true", Value::Bool(true));
        check("false", Value::Bool(false));
    }

    #[test]
    fn strings() {
        check("\"quoted value\"", s("quoted value"));
        check("bare", s("bare"));
        check("\"5\"", s("5"));
        check("\"\"", s(""));
        check(r#""a\"b""#, s("a\"b"));
    }

    #[test]
    fn lists() {
        check("[1,2]", Value::List(vec![Value::Int(1), Value::Int(2)]));
        check("[\"a\", \"b\"]", Value::List(vec![s("a"), s("b")]));
        check("[]", Value::List(vec![]));
        check(
            "[[1],[2, 3]]",
            Value::List(vec![Value::List(vec![Value::Int(1)]), Value::List(vec![Value::Int(2), Value::Int(3)])]),
        );
        check("[a, b c]", Value::List(vec![s("a"), s("b c")]));
    }

    #[test]
    fn malformed_values() {
        check_err("");
        check_err("[1,2");
        assert_eq!(parse_value("[1,"), Err(ParseError("unterminated list: missing `]`".into())));
        check_err("[1,,2]");
        check_err("\"open");
        check_err("1]");
        check_err("[1] 2");
        check_err(&format!("{}1{}", "[".repeat(20), "]".repeat(20)));
    }

    #[test]
    fn assignments() {
        let a = parse_assignment("Pool.nodes=[1, 2]").unwrap();
        assert_eq!(a.value, Value::List(vec![Value::Int(1), Value::Int(2)]));
        assert!(parse_assignment("Pool=5").is_err());
        assert!(parse_assignment("Pool.nodes").is_err());
        assert!(parse_assignment(".nodes=1").is_err());
        assert!(parse_assignment("Pool.no des=1").is_err());
        assert!(parse_assignment("Pool.nodes=").is_err());
    }

    #[test]
    fn wire_round_trip() {
        let v = Value::List(vec![Value::Int(-1), s("x"), Value::Bool(true)]);
        assert_eq!(from_wire(&to_wire(&v)), Some(v));
    }

    #[test]
    fn json() {
        assert_eq!(to_json(&Value::List(vec![Value::Int(1), s("a")])), serde_json::json!([1, "a"]));
    }
}
