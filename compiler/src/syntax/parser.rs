//! A recursive-descent parser with error recovery. It never panics and never
//! stops at the first error: a bad item, member or statement is reported as
//! E001 and skipped, and parsing resumes at the next thing that looks like a
//! start.

use super::ast::*;
use crate::diagnostic::{Code, Diagnostic, Span};
use crate::lexer::{unescape, Lexer, Tok, Token};
use crate::program::{AssignOp, Priority};

/// Deepest expression or block nesting accepted (protects the stack).
const MAX_DEPTH: u32 = 256;

/// Parses a whole file, appending diagnostics.
pub fn parse<'s>(source: &'s str, diags: &mut Vec<Diagnostic>) -> File<'s> {
    parse_file(source, diags, false)
}

/// Parses a whole file and reports exactly what [`parse`] reports, but keeps
/// only the outline of each domain: every body is dropped as soon as its
/// domain is parsed ([`DomainDecl::strip_bodies`]), so the tree of a large
/// file is never held whole. [`reparse_domain`] brings one domain back.
/// A large file is outlined in two halves on two threads when both halves
/// are clean (see [`outline_in_halves`]).
pub fn parse_outline<'s>(source: &'s str, diags: &mut Vec<Diagnostic>) -> File<'s> {
    if source.len() >= PARALLEL_OUTLINE_BYTES {
        if let Some(file) = outline_in_halves(source) {
            return file;
        }
    }
    parse_file(source, diags, true)
}

/// Source size from which [`parse_outline`] tries two threads.
const PARALLEL_OUTLINE_BYTES: usize = 1 << 20;

/// Outlines `source` as two halves split before a `domain` at the start of
/// a line near the middle, each half on its own thread. `None` when there is
/// no such line or either half reports anything, and the caller parses the
/// whole file in one go. A half without diagnostics consists of complete
/// items, so the sequential parser reaches the split point at top level
/// with the same items behind it: the halves give exactly its outline.
fn outline_in_halves(source: &str) -> Option<File<'_>> {
    let split = split_point(source)?;
    let (head, tail) = std::thread::scope(|scope| {
        let tail = std::thread::Builder::new().spawn_scoped(scope, || clean_outline(source, split)).ok()?;
        let head = clean_outline(source.get(..split)?, 0);
        Some((head?, tail.join().ok()??))
    })?;
    if tail.domains.first().map(|d| d.span.start as usize) != Some(split) {
        return None;
    }
    let mut file = head;
    file.effects.extend(tail.effects);
    file.domains.extend(tail.domains);
    Some(file)
}

/// The start of the first line at or after the middle of `source` that
/// begins with `domain` and a space or tab.
fn split_point(source: &str) -> Option<usize> {
    let bytes = source.as_bytes();
    let mut at = bytes.len() / 2;
    while let Some(offset) = bytes.get(at..)?.windows(7).position(|w| w == b"\ndomain") {
        let line = at + offset + 1;
        if matches!(bytes.get(line + 6), Some(b' ' | b'\t')) {
            return Some(line);
        }
        at = line;
    }
    None
}

/// The outline of `source` from byte `start`, if it parses without any
/// diagnostic.
fn clean_outline(source: &str, start: usize) -> Option<File<'_>> {
    let mut diags = Vec::new();
    let mut p = Parser::new(source, start, &mut diags);
    let file = p.file(true);
    let lexed = p.lexer.take_diagnostics();
    (diags.is_empty() && lexed.is_empty()).then_some(file)
}

/// Parses again, bodies included, the domain that [`parse`] or
/// [`parse_outline`] found at `span` of the same source. Diagnostics are not
/// reported again. `None` when no domain with exactly that span parses
/// there (never for a span taken from the outline of this source).
pub fn reparse_domain(source: &str, span: Span) -> Option<DomainDecl<'_>> {
    let mut ignored = Vec::new();
    let mut p = Parser::new(source, span.start as usize, &mut ignored);
    let domain = p.domain().ok()?;
    (domain.span == span).then_some(domain)
}

fn parse_file<'s>(source: &'s str, diags: &mut Vec<Diagnostic>, outline: bool) -> File<'s> {
    let mut p = Parser::new(source, 0, diags);
    let file = p.file(outline);
    let lexed = p.lexer.take_diagnostics();
    diags.extend(lexed);
    file
}

/// Tokens the parser sees (the current one and two more); `bump` shifts them.
const LOOKAHEAD: usize = 3;

struct Parser<'s, 'd> {
    source: &'s str,
    lexer: Lexer<'s>,
    /// The current token and the next ones.
    ahead: [Token; LOOKAHEAD],
    /// Number of tokens consumed.
    pos: usize,
    /// Span of the last consumed token.
    prev: Span,
    diags: &'d mut Vec<Diagnostic>,
    depth: u32,
    /// Token index of the last reported error (one report per position).
    last_error: usize,
}

fn is_member_keyword(s: &str) -> bool {
    matches!(s, "reads" | "state" | "invariant" | "goal" | "transition" | "on")
}

/// Marker: an error was reported and the caller should recover.
struct Failed;

/// How a kind's instance is addressed after its name.
enum InstanceKey<'s> {
    /// `Kind[key]`: the instance with the same key as the one evaluating.
    Same,
    /// `Kind[*]`: every instance.
    Every,
    /// `Kind[expr]`: the instance whose key `expr` evaluates to.
    Computed(Expr<'s>),
}

type PResult<T> = Result<T, Failed>;

impl<'s, 'd> Parser<'s, 'd> {
    /// A parser whose first token starts at byte `start` (a token boundary).
    fn new(source: &'s str, start: usize, diags: &'d mut Vec<Diagnostic>) -> Parser<'s, 'd> {
        let mut lexer = Lexer::starting_at(source, start);
        let ahead = [lexer.next_token(), lexer.next_token(), lexer.next_token()];
        Parser { source, lexer, ahead, pos: 0, prev: Span::default(), diags, depth: 0, last_error: usize::MAX }
    }

    /// Source text of the token `n` ahead.
    fn text_at(&self, n: usize) -> &'s str {
        let span = self.ahead[n.min(LOOKAHEAD - 1)].span;
        self.source.get(span.start as usize..span.end as usize).unwrap_or("")
    }

    /// Source text of the current token.
    fn text(&self) -> &'s str {
        self.text_at(0)
    }

    fn peek(&self) -> &Tok {
        &self.ahead[0].tok
    }

    fn peek_at(&self, n: usize) -> &Tok {
        &self.ahead[n.min(LOOKAHEAD - 1)].tok
    }

    fn span(&self) -> Span {
        self.ahead[0].span
    }

    fn prev_span(&self) -> Span {
        self.prev
    }

    /// Consumes the current token (the end of input is never consumed).
    fn bump(&mut self) -> Token {
        let t = self.ahead[0];
        if t.tok != Tok::Eof {
            self.ahead[0] = self.ahead[1];
            self.ahead[1] = self.ahead[2];
            self.ahead[2] = self.lexer.next_token();
            self.pos += 1;
            self.prev = t.span;
        }
        t
    }

    fn at(&self, t: &Tok) -> bool {
        self.peek() == t
    }

    fn at_kw(&self, kw: &str) -> bool {
        *self.peek() == Tok::Ident && self.text() == kw
    }

    fn eat(&mut self, t: &Tok) -> bool {
        if self.at(t) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.at_kw(kw) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn error_here(&mut self, expected: &str) -> Failed {
        let found = self.peek().describe(self.text());
        let span = self.span();
        if *self.peek() != Tok::Error && self.last_error != self.pos {
            self.last_error = self.pos;
            self.diags.push(Diagnostic::new(Code::E001, span, format!("expected {expected}, found {found}")));
        }
        Failed
    }

    /// An E001 at `span` (a construct parsed whole but not allowed there).
    fn error_at(&mut self, span: Span, message: &str) -> Failed {
        self.last_error = self.pos;
        self.diags.push(Diagnostic::new(Code::E001, span, format!("expected {message}")));
        Failed
    }

    fn expect(&mut self, t: &Tok, what: &str) -> PResult<Span> {
        if self.at(t) {
            Ok(self.bump().span)
        } else {
            Err(self.error_here(what))
        }
    }

    fn expect_kw(&mut self, kw: &str) -> PResult<Span> {
        if self.at_kw(kw) {
            Ok(self.bump().span)
        } else {
            Err(self.error_here(&format!("`{kw}`")))
        }
    }

    fn ident(&mut self, what: &str) -> PResult<Name<'s>> {
        if *self.peek() == Tok::Ident {
            let text = self.text();
            let span = self.bump().span;
            Ok(Name { text, span })
        } else {
            Err(self.error_here(what))
        }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let span = self.span();
            self.diags.push(Diagnostic::new(Code::E001, span, "nesting is too deep"));
            return Err(Failed);
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Skips tokens until `stop` says so or a closing brace at this level.
    /// Always consumes at least one token unless already at end or at `}`.
    fn recover(&mut self, stop: impl Fn(&Tok, &str) -> bool) {
        let mut depth = 0i32;
        let mut first = true;
        loop {
            let t = *self.peek();
            match t {
                Tok::Eof => return,
                Tok::RBrace if depth == 0 => return,
                _ if depth == 0 && !first && stop(&t, self.text()) => return,
                Tok::LBrace => depth += 1,
                Tok::RBrace => depth -= 1,
                _ => {}
            }
            first = false;
            self.bump();
        }
    }

    /// The whole file; with `outline`, each domain without its bodies.
    fn file(&mut self, outline: bool) -> File<'s> {
        let mut file = File::default();
        let item_start = |t: &Tok, s: &str| *t == Tok::Ident && (s == "domain" || s == "effect");
        while !self.at(&Tok::Eof) {
            if self.at_kw("effect") {
                match self.effect_decl() {
                    Ok(e) => file.effects.push(e),
                    Err(Failed) => self.recover(item_start),
                }
            } else if self.at_kw("domain") {
                match self.domain() {
                    Ok(mut d) => {
                        if outline {
                            d.strip_bodies();
                        }
                        file.domains.push(d);
                    }
                    Err(Failed) => self.recover(item_start),
                }
            } else {
                self.error_here("`domain` or `effect`");
                self.recover(item_start);
                self.eat(&Tok::RBrace);
            }
        }
        file
    }

    fn effect_decl(&mut self) -> PResult<EffectDecl<'s>> {
        let start = self.expect_kw("effect")?;
        let namespace = self.ident("an effect namespace")?;
        self.expect(&Tok::Dot, "`.` between namespace and effect name")?;
        let name = self.ident("an effect name")?;
        let params = self.params()?;
        let returns = if self.eat(&Tok::Arrow) { Some(self.type_expr()?.0) } else { None };
        Ok(EffectDecl { namespace, name, params, returns, span: start.to(self.prev_span()) })
    }

    fn params(&mut self) -> PResult<Vec<ParamDecl<'s>>> {
        self.expect(&Tok::LParen, "`(`")?;
        let mut params = Vec::new();
        while !self.at(&Tok::RParen) {
            let name = self.ident("a parameter name")?;
            self.expect(&Tok::Colon, "`:` and a type")?;
            let (ty, ty_span) = self.type_expr()?;
            params.push(ParamDecl { name, ty, ty_span });
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.expect(&Tok::RParen, "`)`")?;
        Ok(params)
    }

    fn type_expr(&mut self) -> PResult<(TypeExpr<'s>, Span)> {
        self.enter()?;
        let r = self.type_inner();
        self.leave();
        r
    }

    fn type_inner(&mut self) -> PResult<(TypeExpr<'s>, Span)> {
        let name = self.ident("a type")?;
        let ty = match name.text {
            "int" => TypeExpr::Int,
            "bool" => TypeExpr::Bool,
            "string" => TypeExpr::String,
            "list" => {
                self.expect(&Tok::Lt, "`<` after `list`")?;
                let (inner, _) = self.type_expr()?;
                let mut max = None;
                if self.eat(&Tok::Comma) {
                    let span = self.span();
                    match *self.peek() {
                        Tok::Int(n) if n >= 0 && n <= u32::MAX as i64 => {
                            self.bump();
                            max = Some(n as u32);
                        }
                        _ => {
                            self.diags.push(
                                Diagnostic::new(Code::E001, span, "expected the list's maximum length")
                                    .with_hint("write `list<int, 16>`"),
                            );
                            return Err(Failed);
                        }
                    }
                }
                self.expect(&Tok::Gt, "`>` closing the list type")?;
                TypeExpr::List(Box::new(inner), max)
            }
            _ => TypeExpr::Unknown(name),
        };
        Ok((ty, name.span.to(self.prev_span())))
    }

    fn priority(&mut self) -> PResult<Option<PriorityDecl>> {
        if !self.eat_kw("priority") {
            return Ok(None);
        }
        let name = self.ident("a priority level")?;
        match Priority::from_keyword(name.text) {
            Some(level) => Ok(Some(PriorityDecl { level, span: name.span })),
            None => {
                self.diags.push(
                    Diagnostic::new(Code::E001, name.span, format!("unknown priority level `{}`", name.text))
                        .with_hint("levels are critical, high, normal, low, background"),
                );
                Ok(None)
            }
        }
    }

    fn domain(&mut self) -> PResult<DomainDecl<'s>> {
        let start = self.expect_kw("domain")?;
        let name = self.ident("a domain name")?;
        let key = if self.eat(&Tok::LBracket) {
            let key = self.ident("the name of the kind's key (`domain Pool[name]`)")?;
            self.expect(&Tok::RBracket, "`]`")?;
            Some(key)
        } else {
            None
        };
        let priority = self.priority()?;
        self.expect(&Tok::LBrace, "`{`")?;
        let mut d = DomainDecl {
            name,
            key,
            priority,
            reads: vec![],
            keyed_reads: vec![],
            all_reads: vec![],
            fields: vec![],
            goals: vec![],
            invariants: vec![],
            transitions: vec![],
            handlers: vec![],
            span: start,
        };
        let member_start = |t: &Tok, s: &str| *t == Tok::Ident && is_member_keyword(s);
        while !self.at(&Tok::RBrace) && !self.at(&Tok::Eof) {
            if self.member(&mut d).is_err() {
                self.recover(member_start);
                if self.at(&Tok::RBrace) && self.closes_member() {
                    self.bump();
                }
            }
        }
        self.expect(&Tok::RBrace, "`}` closing the domain")?;
        d.span = start.to(self.prev_span());
        Ok(d)
    }

    /// After a kind's name: `[key]` (the instance with the same key as the
    /// one evaluating), `[*]` (every instance) or `[expr]` (the instance
    /// whose key `expr` evaluates to), when one is there.
    fn instance_key(&mut self) -> PResult<Option<InstanceKey<'s>>> {
        if !self.eat(&Tok::LBracket) {
            return Ok(None);
        }
        let key = if *self.peek() == Tok::Ident && self.text() == "key" && *self.peek_at(1) == Tok::RBracket {
            self.bump();
            InstanceKey::Same
        } else if self.eat(&Tok::Star) {
            InstanceKey::Every
        } else {
            InstanceKey::Computed(self.expr()?)
        };
        self.expect(&Tok::RBracket, "`]` after an instance's key")?;
        Ok(Some(key))
    }

    /// After recovering inside a member, a `}` may close that member rather
    /// than the domain: it does when a member keyword or `}` follows.
    fn closes_member(&self) -> bool {
        (*self.peek_at(1) == Tok::Ident && is_member_keyword(self.text_at(1))) || *self.peek_at(1) == Tok::RBrace
    }

    fn member(&mut self, d: &mut DomainDecl<'s>) -> PResult<()> {
        if *self.peek() != Tok::Ident {
            return Err(self.error_here("a domain member (`state`, `goal`, `invariant`, `transition`, `on`, `reads`)"));
        }
        let kw = self.text();
        match kw {
            "reads" => {
                self.bump();
                loop {
                    let name = self.ident("a domain name")?;
                    match self.instance_key()? {
                        None => d.reads.push(name),
                        Some(InstanceKey::Same) => {
                            d.keyed_reads.push(name);
                            d.reads.push(name);
                        }
                        Some(InstanceKey::Every) => d.all_reads.push(name),
                        Some(InstanceKey::Computed(_)) => {
                            return Err(self.error_at(
                                name.span,
                                "`reads Kind[key]` (the instance with the same key) or `reads Kind[*]` (any instance)",
                            ))
                        }
                    }
                    if !self.eat(&Tok::Comma) {
                        break;
                    }
                }
                self.eat(&Tok::Semi);
            }
            "state" => {
                self.bump();
                self.expect(&Tok::LBrace, "`{`")?;
                while !self.at(&Tok::RBrace) && !self.at(&Tok::Eof) {
                    let name = self.ident("a field name")?;
                    self.expect(&Tok::Colon, "`:` and a type")?;
                    let (ty, ty_span) = self.type_expr()?;
                    let default = if self.eat(&Tok::Assign) { Some(self.expr()?) } else { None };
                    d.fields.push(FieldDecl { name, ty, ty_span, default });
                    while self.eat(&Tok::Comma) || self.eat(&Tok::Semi) {}
                }
                self.expect(&Tok::RBrace, "`}`")?;
            }
            "goal" | "invariant" => {
                self.bump();
                let name = self.ident("a name")?;
                let priority = if kw == "goal" { self.priority()? } else { None };
                let open = self.span();
                let body = self.block()?;
                let g = GoalDecl { name, priority, body, body_span: open.to(self.prev_span()) };
                if kw == "goal" {
                    d.goals.push(g);
                } else {
                    d.invariants.push(g);
                }
            }
            "transition" => {
                self.bump();
                let name = self.ident("a transition name")?;
                self.expect_kw("for")?;
                let goal = self.ident("the goal this transition repairs")?;
                let when = if self.eat_kw("when") { Some(self.expr()?) } else { None };
                let retry = if self.at_kw("retry") { Some(self.retry()?) } else { None };
                let open = self.expect(&Tok::LBrace, "`{`")?;
                let mut slices = Vec::new();
                while !self.at(&Tok::RBrace) && !self.at(&Tok::Eof) {
                    self.expect_kw("slice")?;
                    let sname = self.ident("a slice name")?;
                    let body = self.block()?;
                    slices.push(SliceDecl { name: sname, body });
                }
                self.expect(&Tok::RBrace, "`}`")?;
                if slices.is_empty() {
                    self.diags.push(
                        Diagnostic::new(Code::E001, open.to(self.prev_span()), "a transition needs at least one slice")
                            .with_hint("write `slice name { ... }` inside the transition"),
                    );
                }
                d.transitions.push(TransitionDecl { name, goal, when, retry, slices });
            }
            "on" => {
                self.bump();
                let name = self.ident("a handler name")?;
                let params = self.params()?;
                let body = self.block()?;
                d.handlers.push(HandlerDecl { name, params, body });
            }
            _ => {
                return Err(
                    self.error_here("a domain member (`state`, `goal`, `invariant`, `transition`, `on`, `reads`)")
                )
            }
        }
        Ok(())
    }

    fn retry(&mut self) -> PResult<RetryDecl> {
        let start = self.expect_kw("retry")?;
        let attempts = match *self.peek() {
            Tok::Int(n) => {
                self.bump();
                n
            }
            _ => return Err(self.error_here("the number of attempts")),
        };
        let mut backoff = None;
        if self.eat_kw("backoff") {
            let a = self.duration()?;
            self.expect(&Tok::DotDot, "`..` between the initial and the maximum backoff")?;
            let b = self.duration()?;
            backoff = Some((a, b));
        }
        Ok(RetryDecl { attempts, backoff, span: start.to(self.prev_span()) })
    }

    fn duration(&mut self) -> PResult<u64> {
        match *self.peek() {
            Tok::Duration(ms) => {
                self.bump();
                Ok(ms)
            }
            Tok::Int(_) => {
                let span = self.span();
                self.diags.push(
                    Diagnostic::new(Code::E001, span, "expected a duration")
                        .with_hint("add a unit: `250ms`, `2s` or `1m`"),
                );
                self.bump();
                Err(Failed)
            }
            _ => Err(self.error_here("a duration such as `500ms`")),
        }
    }

    /// `{ stmt* }` with statement-level recovery.
    fn block(&mut self) -> PResult<Vec<Stmt<'s>>> {
        self.expect(&Tok::LBrace, "`{`")?;
        self.enter()?;
        let mut stmts = Vec::new();
        let stmt_start =
            |t: &Tok, s: &str| *t == Tok::Ident && matches!(s, "let" | "if" | "for" | "emit" | "send" | "slice");
        while !self.at(&Tok::RBrace) && !self.at(&Tok::Eof) {
            match self.stmt() {
                Ok(s) => stmts.push(s),
                Err(Failed) => {
                    stmts.push(Stmt::Expr(Expr { kind: ExprKind::Error, span: self.span() }));
                    if self.depth > MAX_DEPTH {
                        self.leave();
                        return Err(Failed);
                    }
                    self.recover(stmt_start);
                    if self.at_kw("slice") {
                        break;
                    }
                }
            }
            while self.eat(&Tok::Semi) {}
        }
        self.leave();
        self.expect(&Tok::RBrace, "`}`")?;
        // Most blocks hold one or two statements; a large file keeps
        // hundreds of thousands of them, so do not keep growth slack.
        stmts.shrink_to_fit();
        Ok(stmts)
    }

    fn stmt(&mut self) -> PResult<Stmt<'s>> {
        let start = self.span();
        if self.eat_kw("let") {
            let name = self.ident("a name")?;
            self.expect(&Tok::Assign, "`=`")?;
            let value = self.expr()?;
            return Ok(Stmt::Let { name, value, span: start.to(self.prev_span()) });
        }
        if self.eat_kw("if") {
            let cond = self.expr()?;
            let then = self.block()?;
            let otherwise = if self.eat_kw("else") {
                if self.at_kw("if") {
                    vec![self.stmt()?]
                } else {
                    self.block()?
                }
            } else {
                vec![]
            };
            return Ok(Stmt::If { cond, then, otherwise, span: start });
        }
        if self.at_kw("for")
            && *self.peek_at(1) == Tok::Ident
            && *self.peek_at(2) == Tok::Ident
            && self.text_at(2) == "in"
        {
            self.bump();
            let name = self.ident("a loop variable")?;
            self.expect_kw("in")?;
            let list = self.expr()?;
            let body = self.block()?;
            return Ok(Stmt::For { name, list, body, span: start });
        }
        if self.eat_kw("emit") {
            let namespace = self.ident("an effect namespace")?;
            self.expect(&Tok::Dot, "`.`")?;
            let name = self.ident("an effect name")?;
            let args = self.args()?;
            let bind = if self.eat(&Tok::Arrow) { Some(self.ident("a name for the result")?) } else { None };
            return Ok(Stmt::Emit { namespace, name, args, bind, span: start.to(self.prev_span()) });
        }
        if self.eat_kw("send") {
            let domain = self.ident("a domain name")?;
            let (keyed, key) = match self.instance_key()? {
                None => (false, None),
                Some(InstanceKey::Same) => (true, None),
                Some(InstanceKey::Computed(key)) => (false, Some(Box::new(key))),
                Some(InstanceKey::Every) => {
                    return Err(self.error_at(domain.span, "one instance to send to: `Kind[key]` or `Kind[expr]`"))
                }
            };
            self.expect(&Tok::Dot, "`.`")?;
            let name = self.ident("a handler name")?;
            let args = self.args()?;
            return Ok(Stmt::Send { domain, keyed, key, name, args, span: start.to(self.prev_span()) });
        }
        let e = self.expr()?;
        let op = match self.peek() {
            Tok::Assign => Some(AssignOp::Set),
            Tok::PlusAssign => Some(AssignOp::Add),
            Tok::MinusAssign => Some(AssignOp::Sub),
            _ => None,
        };
        if let Some(op) = op {
            let op_span = self.bump().span;
            if !matches!(e.kind, ExprKind::Path(_)) {
                self.diags.push(Diagnostic::new(Code::E001, e.span, "only a field or a local can be assigned"));
            }
            let value = self.expr()?;
            return Ok(Stmt::Assign { target: e, op, op_span, value, span: start.to(self.prev_span()) });
        }
        Ok(Stmt::Expr(e))
    }

    fn args(&mut self) -> PResult<Vec<Arg<'s>>> {
        self.expect(&Tok::LParen, "`(`")?;
        let mut args = Vec::new();
        while !self.at(&Tok::RParen) {
            let name = if *self.peek() == Tok::Ident && *self.peek_at(1) == Tok::Colon {
                let n = self.ident("an argument name")?;
                self.bump();
                Some(n)
            } else {
                None
            };
            let value = self.expr()?;
            args.push(Arg { name, value });
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        self.expect(&Tok::RParen, "`)`")?;
        args.shrink_to_fit();
        Ok(args)
    }

    /// Parses an expression.
    fn expr(&mut self) -> PResult<Expr<'s>> {
        self.enter()?;
        let r = self.binary(0);
        self.leave();
        r
    }

    fn binop(&self) -> Option<(BinaryOp, u8)> {
        Some(match self.peek() {
            Tok::OrOr => (BinaryOp::Or, 1),
            Tok::AndAnd => (BinaryOp::And, 2),
            Tok::EqEq => (BinaryOp::Eq, 3),
            Tok::Ne => (BinaryOp::Ne, 3),
            Tok::Lt => (BinaryOp::Lt, 4),
            Tok::Le => (BinaryOp::Le, 4),
            Tok::Gt => (BinaryOp::Gt, 4),
            Tok::Ge => (BinaryOp::Ge, 4),
            Tok::Plus => (BinaryOp::Add, 5),
            Tok::Minus => (BinaryOp::Sub, 5),
            Tok::Star => (BinaryOp::Mul, 6),
            Tok::Slash => (BinaryOp::Div, 6),
            Tok::Percent => (BinaryOp::Rem, 6),
            _ => return None,
        })
    }

    /// A chain `a + b + c` nests to the left, so each operator counts as one
    /// level of depth until the chain ends.
    fn binary(&mut self, min_prec: u8) -> PResult<Expr<'s>> {
        let saved = self.depth;
        let r = self.binary_chain(min_prec);
        self.depth = saved;
        r
    }

    fn binary_chain(&mut self, min_prec: u8) -> PResult<Expr<'s>> {
        let mut lhs = self.unary()?;
        while let Some((op, prec)) = self.binop() {
            if prec < min_prec {
                break;
            }
            self.bump();
            self.enter()?;
            self.enter()?;
            let rhs = self.binary(prec + 1);
            self.leave();
            let rhs = rhs?;
            let span = lhs.span.to(rhs.span);
            lhs = Expr { kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)), span };
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> PResult<Expr<'s>> {
        let start = self.span();
        let op = match self.peek() {
            Tok::Bang => Some(UnaryOp::Not),
            Tok::Minus => Some(UnaryOp::Neg),
            _ => None,
        };
        if let Some(op) = op {
            self.bump();
            self.enter()?;
            let inner = self.unary();
            self.leave();
            let inner = inner?;
            let span = start.to(inner.span);
            return Ok(Expr { kind: ExprKind::Unary(op, Box::new(inner)), span });
        }
        self.primary()
    }

    fn primary(&mut self) -> PResult<Expr<'s>> {
        let start = self.span();
        let kind = match *self.peek() {
            Tok::Int(n) => {
                self.bump();
                ExprKind::Int(n)
            }
            Tok::Duration(ms) => {
                self.bump();
                ExprKind::Int(ms.min(i64::MAX as u64) as i64)
            }
            Tok::Str => {
                let value = unescape(self.text());
                self.bump();
                ExprKind::Str(value)
            }
            Tok::LParen => {
                self.bump();
                let e = self.expr()?;
                self.expect(&Tok::RParen, "`)`")?;
                return Ok(Expr { kind: e.kind, span: start.to(self.prev_span()) });
            }
            Tok::LBracket => {
                self.bump();
                let mut items = Vec::new();
                while !self.at(&Tok::RBracket) {
                    items.push(self.expr()?);
                    if !self.eat(&Tok::Comma) {
                        break;
                    }
                }
                self.expect(&Tok::RBracket, "`]`")?;
                ExprKind::List(items)
            }
            Tok::Ident => {
                let word = self.text();
                if word == "true" || word == "false" {
                    self.bump();
                    ExprKind::Bool(word == "true")
                } else if (word == "all" || word == "any")
                    && *self.peek_at(1) == Tok::Ident
                    && *self.peek_at(2) == Tok::Ident
                    && self.text_at(2) == "in"
                {
                    self.bump();
                    let var = self.ident("a variable")?;
                    self.expect_kw("in")?;
                    let list = self.expr()?;
                    self.expect(&Tok::Colon, "`:` before the quantifier's body")?;
                    let body = self.expr()?;
                    let q = if word == "all" { Quantifier::All } else { Quantifier::Any };
                    ExprKind::Quantified(q, var, Box::new(list), Box::new(body))
                } else {
                    let first = self.ident("a name")?;
                    let address = self.instance_key()?;
                    if matches!(address, Some(InstanceKey::Same | InstanceKey::Computed(_))) && !self.at(&Tok::Dot) {
                        return Err(self.error_here("`.` and a field after `Kind[key]`"));
                    }
                    let keyed = matches!(address, Some(InstanceKey::Same));
                    if let Some(InstanceKey::Every) = address {
                        let field =
                            if self.eat(&Tok::Dot) { Some(self.ident("a field after `Kind[*].`")?) } else { None };
                        return Ok(Expr {
                            kind: ExprKind::Path(Path::every(first, field)),
                            span: start.to(self.prev_span()),
                        });
                    }
                    if let Some(InstanceKey::Computed(key)) = address {
                        self.expect(&Tok::Dot, "`.`")?;
                        let field = self.ident("a field after `Kind[key].`")?;
                        return Ok(Expr {
                            kind: ExprKind::Lookup(first, Box::new(key), field),
                            span: start.to(self.prev_span()),
                        });
                    }
                    let path = if self.eat(&Tok::Dot) {
                        let second = self.ident("a name after `.`")?;
                        if self.at(&Tok::Dot) {
                            return Err(self.error_here("no third part: a name is `field` or `Domain.field`"));
                        }
                        Path::pair(first, second, keyed)
                    } else {
                        Path::single(first)
                    };
                    if self.at(&Tok::LParen) {
                        let args = self.args()?;
                        ExprKind::Call(path, args)
                    } else {
                        ExprKind::Path(path)
                    }
                }
            }
            _ => return Err(self.error_here("an expression")),
        };
        Ok(Expr { kind, span: start.to(self.prev_span()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::synthetic_program;

    fn sequential_outline(source: &str) -> (File<'_>, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        let file = parse_file(source, &mut diags, true);
        (file, diags)
    }

    #[test]
    fn clean_halves_give_the_sequential_outline() {
        let source = synthetic_program(40, 3);
        let split = split_point(&source).expect("a domain starts a line after the middle");
        assert!(split >= source.len() / 2 && source[split..].starts_with("domain "));
        let (sequential, diags) = sequential_outline(&source);
        assert!(diags.is_empty());
        assert_eq!(outline_in_halves(&source), Some(sequential));
    }

    #[test]
    fn effects_after_the_split_keep_their_order() {
        let mut source = synthetic_program(20, 2);
        source.push_str("effect Late.Thing(n: int)\n");
        let (sequential, _) = sequential_outline(&source);
        let halves = outline_in_halves(&source).expect("clean");
        assert_eq!(halves.effects.len(), 2);
        assert_eq!(halves, sequential);
    }

    #[test]
    fn a_half_with_errors_is_not_used() {
        let mut source = synthetic_program(20, 2);
        source.push_str("domain Broken { goal G { x = } }\n");
        assert_eq!(outline_in_halves(&source), None);
        let mut head_error = synthetic_program(20, 2);
        head_error.insert_str(0, "domain Broken { state { x: } }\n");
        assert_eq!(outline_in_halves(&head_error), None);
    }

    #[test]
    fn a_split_inside_a_domain_is_not_used() {
        // The only `domain` line after the middle is inside a string that
        // spans it: the head half then ends in an unterminated string.
        let mut source = String::from("domain A { state { s: string = \"");
        source.push_str(&"x".repeat(200));
        source.push_str("\ndomain B {\" } }\n");
        assert_eq!(outline_in_halves(&source), None);
        let mut diags = Vec::new();
        let _ = parse_outline(&source, &mut diags);
        let mut full_diags = Vec::new();
        let _ = parse(&source, &mut full_diags);
        assert_eq!(diags, full_diags);
    }

    #[test]
    fn no_domain_line_after_the_middle_means_no_split() {
        assert_eq!(split_point("domain A { }\n// domain\n"), None);
        assert_eq!(split_point("domain A { }  domain B { }"), None);
    }

    #[test]
    fn reparse_refuses_a_span_that_is_not_a_domain() {
        let source = "domain A { state { x: int } }";
        assert!(reparse_domain(source, Span::new(0, source.len())).is_some());
        assert!(reparse_domain(source, Span::new(0, 5)).is_none());
        assert!(reparse_domain(source, Span::new(7, source.len())).is_none());
        assert!(reparse_domain("domain Ä { }", Span::new(8, 12)).is_none());
    }
}
