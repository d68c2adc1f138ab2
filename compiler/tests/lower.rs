//! The IR the engine runs: slots, sets and closures, checked on small programs.

use lexum_compiler::program::*;
use lexum_compiler::{compile, render, CompileOptions};

/// Compiles `src`, which must have no errors, and returns the program.
fn check(src: &str) -> Program {
    let c = compile("t.lxm", src, &CompileOptions::default());
    c.program.unwrap_or_else(|| panic!("{}", render(&c.diagnostics, "t.lxm", src, false)))
}

const FLEET: &str = include_str!("../../examples/fleet.lxm");

#[test]
fn effect_result_binds_a_slot_read_by_the_next_slice() {
    let p = check(FLEET);
    let t = &p.transitions[0];
    assert_eq!(t.name, "Resize");
    let Stmt::Emit { bind: Some(slot), args, .. } = &t.slices[0].body[0] else { panic!("emit expected") };
    assert_eq!(args.len(), 2);
    let Stmt::Assign { place: Place::Field(_), value: Expr::Slot(read), .. } = &t.slices[1].body[0] else {
        panic!("assignment expected")
    };
    assert_eq!(slot, read);
    assert_eq!(t.slots, 1);
    assert_eq!(t.retry, RetryPolicy { max_attempts: 5, initial_backoff_ms: 500, max_backoff_ms: 30_000 });
}

#[test]
fn default_retry_policy() {
    let p = check(FLEET);
    let t = &p.transitions[1];
    assert_eq!(t.retry, RetryPolicy { max_attempts: 8, initial_backoff_ms: 1000, max_backoff_ms: 60_000 });
    let p = check("domain D { state { n: int } goal G { n > 0 } transition T for G { slice s { n = 1 } } }");
    assert_eq!(p.transitions[0].retry, RetryPolicy::default());
}

#[test]
fn arguments_are_stored_in_parameter_order() {
    let p = check(
        "effect Cloud.Set(pool: string, count: int)\ndomain D { state { n: int } goal G { n > 0 }\n transition T for G { slice s { emit Cloud.Set(count: 3, pool: \"web\") } } }",
    );
    let Stmt::Emit { args, .. } = &p.transitions[0].slices[0].body[0] else { panic!("emit expected") };
    assert_eq!(args, &vec![Expr::Lit(Value::Str("web".into())), Expr::Lit(Value::Int(3))]);
}

#[test]
fn handler_parameters_are_the_first_slots() {
    let p = check("domain D { state { n: int } on Set(a: int, b: int) { let c = a + b\n n = c } }");
    let h = &p.handlers[0];
    assert_eq!(h.slots, 3);
    assert_eq!(
        h.body[0],
        Stmt::Let {
            slot: SlotId(2),
            value: Expr::Binary(BinaryOp::Add, Box::new(Expr::Slot(SlotId(0))), Box::new(Expr::Slot(SlotId(1))))
        }
    );
    assert_eq!(h.write_set, vec![FieldId(0)]);
}

#[test]
fn goal_lets_are_inlined_and_quantifiers_use_slots() {
    let p = check(
        "domain D { state { xs: list<int, 4>  m: int } goal G { let lo = m + 1\n all x in xs: x >= lo }\n transition T for G { slice s { m = 0 } } }",
    );
    let g = &p.goals[0];
    assert_eq!(g.slots, 1);
    assert_eq!(g.read_set, vec![FieldId(0), FieldId(1)]);
    assert_eq!(g.cost, 1 + 4 * ((1 + 3 + 1) + 1) + 1);
    assert_eq!(p.fields[0].max_len, Some(4));
    assert_eq!(p.fields[0].ty, Type::List(Box::new(Type::Int)));
}

#[test]
fn defaults_are_evaluated() {
    let p = check(
        "domain D { state { a: int = 60 * 1000  s: string = \"x\" + \"y\"  l: list<int, 3> = [1, -2]  z: bool } }",
    );
    let defaults: Vec<&Value> = p.fields.iter().map(|f| &f.default).collect();
    assert_eq!(
        defaults,
        [
            &Value::Int(60_000),
            &Value::Str("xy".into()),
            &Value::List(vec![Value::Int(1), Value::Int(-2)]),
            &Value::Bool(false)
        ]
    );
}

#[test]
fn sends_close_transitively_over_handlers() {
    let p = check(
        "effect X.Go()\ndomain A { state { a: int } on One() { a = 1\n send B.Two() } }\ndomain B { state { b: int } on Two() { b = 2\n emit X.Go()\n send A.One() } }\ndomain C { reads A\n goal G { A.a > 0 }\n transition T for G { slice s { send A.One() } } }",
    );
    let t = &p.transitions[0];
    assert_eq!(t.write_set, vec![FieldId(0), FieldId(1)]);
    assert_eq!(t.emits, vec![EffectId(0)]);
    assert_eq!(t.slices[0].sends, vec![HandlerId(0)]);
    assert!(t.reaches_goal);
    assert_eq!(p.goals[0].transitions, vec![TransitionId(0)]);
}

#[test]
fn priorities_are_inherited() {
    let p = check(
        "domain D priority high { state { n: int } goal A { n > 0 } goal B priority low { n < 100 }\n transition TA for A { slice s { n = 1 } }\n transition TB for B { slice s { n = 1 } } }",
    );
    assert_eq!(p.domains[0].priority, Priority::High);
    assert_eq!(p.goals[0].priority, Priority::High);
    assert_eq!(p.goals[1].priority, Priority::Low);
}

#[test]
fn reads_are_recorded() {
    let p = check("domain A { state { a: int } }\ndomain B { reads A, A\n state { b: int } invariant I { A.a >= b } }");
    assert_eq!(p.domains[1].reads, vec![DomainId(0)]);
    assert_eq!(p.invariants[0].read_set, vec![FieldId(0), FieldId(1)]);
}
