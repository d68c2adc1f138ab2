//! Hostile programs and entries (issue 13): bytes a client or a peer can
//! send that once aborted every replica. Each is refused with an error,
//! deterministically, and changes nothing.

mod common;

use common::program_bytes;
use lexum_compiler::program::{Expr, FieldId, Program, SlotId, Stmt, Value};
use lexum_engine::{Engine, EngineConfig, Entry};

const SOURCE: &str = r#"
domain Pool {
  state {
    nodes: int = 3
  }
  goal Big { !(nodes < 10) }
  transition Grow for Big {
    slice s { let n = nodes + 1  nodes = n }
  }
}
"#;

fn compiled() -> Program {
    Program::decode(&program_bytes(SOURCE)).expect("decodes")
}

/// Applies a program to a fresh engine: the outcome's code, and whether
/// anything but the hash changed.
fn submit(bytes: Vec<u8>) -> (Option<String>, bool) {
    let mut engine = Engine::new(EngineConfig::default());
    let validated = engine.validate(&Entry::SubmitProgram { bytes: bytes.clone() }).err().map(|r| r.code);
    let applied = engine.apply(1, &Entry::SubmitProgram { bytes });
    let code = applied.outcome.err().map(|r| r.code);
    assert_eq!(validated, code, "the leader's check and every replica agree");
    (code, engine.program().is_some())
}

/// Runs `f` on a thread with a tokio worker's stack (2 MiB), where the
/// node decodes programs and Raft payloads.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let handle = std::thread::Builder::new().stack_size(2 << 20).spawn(f).expect("spawn");
    handle.join().expect("no stack overflow, no panic")
}

#[test]
fn a_goal_claiming_u32_max_slots_is_refused_not_allocated() {
    let mut program = compiled();
    program.goals[0].slots = u32::MAX;
    assert_eq!(submit(program.encode()), (Some("E014".into()), false));
    let mut program = compiled();
    program.transitions[0].slots = u32::MAX;
    assert_eq!(submit(program.encode()), (Some("E014".into()), false));
}

#[test]
fn a_slot_reference_past_the_slot_count_is_refused() {
    let mut program = compiled();
    let stmt = Stmt::Let { slot: SlotId(u32::MAX), value: Expr::Field(FieldId(0)) };
    program.transitions[0].slices[0].body.push(stmt);
    assert_eq!(submit(program.encode()), (Some("E014".into()), false));
}

/// The compiled program with its goal's predicate wrapped in `depth` more
/// `!`: built by splicing bytes (encoding such a tree would itself recurse).
fn deeply_negated(depth: usize) -> Vec<u8> {
    let bytes = program_bytes(SOURCE);
    let program = compiled();
    let Expr::Unary(op, _) = &program.goals[0].predicate else { panic!("the goal is `!(...)`") };
    let shallow = Expr::Unary(*op, Box::new(Expr::Lit(Value::Bool(true))));
    let mut marker = postcard::to_stdvec(&shallow).expect("encode");
    marker.truncate(marker.len() - 3);
    let at = bytes.windows(marker.len()).position(|w| w == marker.as_slice()).expect("the predicate's bytes");
    let mut payload = bytes[14..at].to_vec();
    for _ in 0..depth {
        payload.extend_from_slice(&marker);
    }
    payload.extend_from_slice(&bytes[at..]);
    let mut out = bytes[..6].to_vec();
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

#[test]
fn forty_kilobytes_of_nested_negation_is_refused_without_exhausting_the_stack() {
    let shallow = deeply_negated(3);
    assert!(Program::decode(&shallow).is_ok(), "the splice itself is sound");
    let hostile = deeply_negated(20_000);
    assert!(hostile.len() > 40_000);
    let decoded = on_small_stack(move || Program::decode(&hostile).map(|_| ()).map_err(|e| e.to_string()));
    decoded.expect_err("refused");
    let (code, installed) = on_small_stack(move || submit(deeply_negated(20_000)));
    assert_eq!((code.as_deref(), installed), (Some("E014"), false));
}

#[test]
fn batches_nested_deep_in_a_raft_payload_are_refused_without_exhausting_the_stack() {
    // A batch holding a batch holding ... 100,000 deep, as postcard bytes:
    // variant `Batch`, one element, repeated, then a `Noop`.
    let batch = postcard::to_stdvec(&Entry::Batch { entries: vec![Entry::Noop] }).expect("encode");
    let noop = postcard::to_stdvec(&Entry::Noop).expect("encode");
    let prefix = &batch[..batch.len() - noop.len()];
    let mut bytes = Vec::new();
    for _ in 0..100_000 {
        bytes.extend_from_slice(prefix);
    }
    bytes.extend_from_slice(&noop);
    let decoded = on_small_stack(move || postcard::from_bytes::<Entry>(&bytes).map(|_| ()).map_err(|e| e.to_string()));
    assert!(decoded.is_err());
}

#[test]
fn an_entry_nested_as_deep_as_a_batch_allows_still_decodes() {
    let entry = Entry::Batch { entries: vec![Entry::Noop, Entry::Batch { entries: vec![Entry::Noop] }] };
    let bytes = postcard::to_stdvec(&entry).expect("encode");
    assert_eq!(postcard::from_bytes::<Entry>(&bytes).ok(), Some(entry));
}

/// A slice of three nested loops: 1,000 iterations of its body.
const SPIN: &str = r#"
domain Busy {
  state {
    xs: list<int> = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    n: int = 0
  }
  goal Done { n >= 1 }
  transition Spin for Done retry 2 {
    slice s {
      for a in xs { for b in xs { for c in xs { n += 1 } } }
    }
  }
}
"#;

fn spin(config: EngineConfig) -> common::Sim {
    let mut sim = common::Sim::with_config(SPIN, config);
    sim.drive(200, &mut common::echo_count());
    sim
}

#[test]
fn a_slice_over_the_runtime_step_budget_fails_its_cycle_with_e008() {
    let sim = spin(EngineConfig { step_budget: 2_000, ..EngineConfig::default() });
    assert_eq!(sim.engine.read("Busy", "n"), Some(Value::Int(0)), "nothing of the slice was committed");
    let history = sim.engine.history(10);
    assert!(
        history.iter().any(|c| c.verdict == lexum_engine::CycleVerdict::Failed && c.code.as_deref() == Some("E008")),
        "{history:?}"
    );
    let evidence = sim.goal("Busy", "Done").evidence.unwrap_or_default();
    assert!(evidence.contains("runtime budget of 2000"), "{evidence}");
    // The same program within the default budget completes.
    let sim = spin(EngineConfig::default());
    assert_eq!(sim.engine.read("Busy", "n"), Some(Value::Int(1000)));
}
