//! Hostile bytes for every decoder a node runs on input it did not make
//! (issue 13): compiled programs, engine entries, engine snapshots, the
//! state machine's snapshot payload and log entries, and the three Raft
//! RPC payloads. Random bytes and small mutations of valid encodings are
//! decoded on a thread with a tokio worker's stack; whatever decodes is
//! validated and applied to a live engine. Nothing may panic, abort or
//! overflow the stack. Case counts keep the file to a few seconds in CI.

use lexum_compiler::program::Program;
use lexum_compiler::{compile, CompileOptions};
use lexum_engine::{Engine, EngineConfig, Entry, FieldWrite};
use lexum_node::raft_types::{LogEntry, TypeConfig};
use lexum_node::store::state_machine::SnapshotPayload;
use proptest::prelude::*;

const SOURCE: &str = r#"
domain Pool {
  state {
    nodes: int = 3
    name: string = "web"
  }
  goal Big { nodes >= 5 && !(nodes > 10) }
  transition Grow for Big {
    slice s { let n = nodes + 1  nodes = n }
  }
}
"#;

fn program_bytes() -> Vec<u8> {
    compile("hostile.lxm", SOURCE, &CompileOptions::default()).program.expect("compiles").encode()
}

/// An engine with the program installed and one mutation applied.
fn engine() -> Engine {
    let mut engine = Engine::new(EngineConfig::default());
    let _ = engine.apply(1, &Entry::SubmitProgram { bytes: program_bytes() });
    let write =
        FieldWrite { domain: "Pool".into(), field: "nodes".into(), value: lexum_compiler::program::Value::Int(4) };
    let _ = engine.apply(2, &Entry::Mutate { writes: vec![write], principal: "t".into(), caused_by: vec![] });
    engine
}

/// Runs `f` on a thread with a tokio worker's stack (2 MiB): a stack
/// overflow or panic fails the test instead of going unnoticed.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().stack_size(2 << 20).spawn(f).expect("spawn").join().expect("no panic, no overflow")
}

/// Edits of a valid encoding: overwrite, insert or delete a byte, truncate.
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Set(at, b)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Insert(at, b)),
        2 => any::<usize>().prop_map(Edit::Remove),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn mutated(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = bytes.len().max(1);
        match *edit {
            Edit::Set(at, b) => {
                if let Some(slot) = bytes.get_mut(at % len) {
                    *slot = b;
                }
            }
            Edit::Insert(at, b) => bytes.insert(at % (bytes.len() + 1), b),
            Edit::Remove(at) => {
                if !bytes.is_empty() {
                    bytes.remove(at % len);
                }
            }
            Edit::Truncate(at) => bytes.truncate(at % len),
        }
    }
    bytes
}

/// Bytes that are random, or a valid `seed` with a few edits.
fn hostile(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        proptest::collection::vec(edit(), 1..6).prop_map(move |edits| mutated(seed.clone(), &edits)),
    ]
}

/// What a replica does with an entry from the log: check it, apply it.
fn validate_and_apply(entry: Entry) {
    let mut engine = engine();
    let _ = engine.validate(&entry);
    let _ = engine.apply(3, &entry);
    let _ = engine.state_hash();
}

fn entries() -> Vec<Entry> {
    let write =
        FieldWrite { domain: "Pool".into(), field: "nodes".into(), value: lexum_compiler::program::Value::Int(7) };
    let mutate = Entry::Mutate { writes: vec![write], principal: "ops".into(), caused_by: vec!["k".into()] };
    vec![
        Entry::SubmitProgram { bytes: program_bytes() },
        mutate.clone(),
        Entry::Batch { entries: vec![mutate, Entry::Noop] },
        Entry::Release { domain: "Pool".into(), goal: Some("Big".into()) },
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn program_decode_survives_hostile_bytes(bytes in hostile(program_bytes())) {
        on_small_stack(move || {
            if let Ok(program) = Program::decode(&bytes) {
                validate_and_apply(Entry::SubmitProgram { bytes: program.encode() });
            }
            validate_and_apply(Entry::SubmitProgram { bytes });
        });
    }

    #[test]
    fn entry_decode_survives_hostile_bytes(
        seed in 0usize..4,
        edits in proptest::collection::vec(edit(), 1..6),
        random in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let valid = postcard::to_stdvec(&entries()[seed]).expect("encode");
        on_small_stack(move || {
            for bytes in [mutated(valid, &edits), random] {
                if let Ok(entry) = postcard::from_bytes::<Entry>(&bytes) {
                    validate_and_apply(entry);
                }
            }
        });
    }

    #[test]
    fn engine_restore_survives_hostile_snapshots(bytes in hostile(engine().snapshot())) {
        on_small_stack(move || {
            if let Ok(mut engine) = Engine::restore(&bytes) {
                let _ = engine.state_hash();
                let _ = engine.apply(engine.last_applied() + 1, &Entry::Noop);
                let _ = engine.snapshot();
            }
        });
    }

    #[test]
    fn snapshot_payloads_and_log_entries_survive_hostile_bytes(
        payload in hostile(postcard::to_stdvec(&SnapshotPayload {
            last_applied: None,
            membership: Default::default(),
            engine: engine().snapshot(),
        }).expect("encode")),
        log_entry in hostile(postcard::to_stdvec(&LogEntry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), 3),
            payload: openraft::EntryPayload::Normal(entries()[2].clone()),
        }).expect("encode")),
    ) {
        on_small_stack(move || {
            if let Ok(payload) = postcard::from_bytes::<SnapshotPayload>(&payload) {
                let _ = Engine::restore(&payload.engine);
            }
            if let Ok(LogEntry { payload: openraft::EntryPayload::Normal(entry), .. }) =
                postcard::from_bytes::<LogEntry>(&log_entry)
            {
                validate_and_apply(entry);
            }
        });
    }

    #[test]
    fn raft_rpc_payloads_survive_hostile_bytes(
        append in hostile(postcard::to_stdvec(&openraft::raft::AppendEntriesRequest::<TypeConfig> {
            vote: openraft::Vote::new_committed(2, 1),
            prev_log_id: None,
            entries: vec![LogEntry {
                log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(2, 1), 1),
                payload: openraft::EntryPayload::Normal(entries()[1].clone()),
            }],
            leader_commit: None,
        }).expect("encode")),
        other in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        on_small_stack(move || {
            if let Ok(request) = postcard::from_bytes::<openraft::raft::AppendEntriesRequest<TypeConfig>>(&append) {
                for entry in request.entries {
                    if let openraft::EntryPayload::Normal(entry) = entry.payload {
                        validate_and_apply(entry);
                    }
                }
            }
            let _ = postcard::from_bytes::<openraft::raft::VoteRequest<u64>>(&other);
            let _ = postcard::from_bytes::<openraft::raft::InstallSnapshotRequest<TypeConfig>>(&other);
        });
    }
}
