//! Engine cost per applied client mutation as the number of goals grows.
//!
//! Each program has `n / 10` domains of ten goals over one field; every
//! mutation writes one domain's field and flips four of its goals, so the
//! work that must be done is the same for 100 and 100,000 goals.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use lexum_compiler::program::{
    BinaryOp, Domain, DomainId, Expr, Field, FieldId, Goal, GoalId, Priority, Program, Type, Value,
};
use lexum_engine::{Engine, EngineConfig, Entry, FieldWrite};
use std::hint::black_box;

const GOALS_PER_DOMAIN: u32 = 10;

fn program(goals: u32) -> Program {
    let domains = goals / GOALS_PER_DOMAIN;
    let mut p = Program {
        effects: vec![],
        domains: vec![],
        fields: vec![],
        goals: vec![],
        invariants: vec![],
        transitions: vec![],
        handlers: vec![],
        dominance: vec![],
    };
    for d in 0..domains {
        let field = FieldId(d);
        p.fields.push(Field {
            name: "x".into(),
            domain: DomainId(d),
            ty: Type::Int,
            default: Value::Int(0),
            max_len: None,
        });
        let mut ids = Vec::new();
        for k in 0..GOALS_PER_DOMAIN {
            ids.push(GoalId(p.goals.len() as u32));
            p.goals.push(Goal {
                name: format!("G{k}"),
                domain: DomainId(d),
                priority: Priority::Normal,
                predicate: Expr::Binary(
                    BinaryOp::Ge,
                    Box::new(Expr::Field(field)),
                    Box::new(Expr::Lit(Value::Int(k as i64))),
                ),
                slots: 0,
                read_set: vec![field],
                cost: 3,
                transitions: vec![],
            });
        }
        p.domains.push(Domain {
            key: None,
            name: format!("D{d}"),
            priority: Priority::Normal,
            reads: vec![],
            fields: vec![field],
            goals: ids,
            invariants: vec![],
            transitions: vec![],
            handlers: vec![],
        });
    }
    p
}

fn mutation(domain: u32, value: i64) -> Entry {
    Entry::mutation(
        vec![FieldWrite { domain: format!("D{domain}"), field: "x".into(), value: Value::Int(value) }],
        "bench",
    )
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply_mutation");
    for goals in [100u32, 100_000] {
        let mut engine = Engine::new(EngineConfig::default());
        let applied = engine.apply(1, &Entry::SubmitProgram { bytes: program(goals).encode() });
        assert!(applied.outcome.is_ok());
        let domain = goals / GOALS_PER_DOMAIN / 2;
        let entries = [mutation(domain, 3), mutation(domain, 7)];
        let mut index = 1u64;
        group.bench_function(BenchmarkId::from_parameter(goals), |b| {
            b.iter(|| {
                index += 1;
                black_box(engine.apply(index, &entries[(index % 2) as usize]))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
