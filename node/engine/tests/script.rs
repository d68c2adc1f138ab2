//! Data-driven engine scenarios: `tests/testdata/*.txt` scripts in the
//! etcd/raft-rs style. Each block is a command line, an optional body, a
//! `----` line and the expected output, ended by a blank line. Run with
//! `REWRITE=1` to regenerate the expected outputs after a deliberate change.
//!
//! Commands: `program` (body: `.lxm` source), `set Domain.field value`,
//! `drive echo|const:N|fail`, `goals`, `history`, `release Domain [Goal]`,
//! `retry Domain Goal`.

mod common;

use common::{constant, echo_count, program_bytes, Sim, Worker};
use lexum_compiler::program::Value;
use lexum_engine::{Applied, EffectOutcome, Engine, EngineConfig, Entry, FieldWrite};

struct Block {
    comments: Vec<String>,
    command: String,
    body: Vec<String>,
    expected: Vec<String>,
}

fn parse(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().peekable();
    let mut comments = Vec::new();
    while let Some(line) = lines.next() {
        if line.starts_with('#') {
            comments.push(line.to_string());
        }
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let comments = std::mem::take(&mut comments);
        let mut block = Block { comments, command: line.to_string(), body: Vec::new(), expected: Vec::new() };
        for l in lines.by_ref() {
            if l == "----" {
                break;
            }
            block.body.push(l.to_string());
        }
        while let Some(l) = lines.next_if(|l| !l.trim().is_empty()) {
            block.expected.push(l.to_string());
        }
        blocks.push(block);
    }
    blocks
}

fn value(text: &str) -> Value {
    match text {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        t if t.starts_with('"') => Value::Str(t.trim_matches('"').to_string()),
        t => Value::Int(t.parse().unwrap_or_else(|_| panic!("bad value {t}"))),
    }
}

fn outcome(applied: &Applied) -> Vec<String> {
    match &applied.outcome {
        Ok(()) => vec!["ok".into()],
        Err(r) => vec![format!("rejected {}", r.code)],
    }
}

fn goals(engine: &Engine) -> Vec<String> {
    engine
        .goals()
        .into_iter()
        .map(|g| {
            let code = g.code.map(|c| format!(" {c}")).unwrap_or_default();
            format!("{}.{} {}{code} cycles={}", g.domain, g.goal, g.status, g.cycles)
        })
        .collect()
}

fn run(sim: &mut Option<Sim>, block: &Block) -> Vec<String> {
    let words: Vec<&str> = block.command.split_whitespace().collect();
    if words[0] == "program" {
        let source = block.body.join("\n");
        let bytes = program_bytes(&source);
        return match sim {
            None => {
                *sim = Some(Sim::with_config(&source, EngineConfig::default()));
                vec!["ok".into()]
            }
            Some(s) => outcome(&s.propose(Entry::SubmitProgram { bytes })),
        };
    }
    let sim = sim.as_mut().expect("`program` comes first");
    match words.as_slice() {
        ["set", path, v] => {
            let (domain, field) = path.split_once('.').expect("Domain.field");
            let write = FieldWrite { domain: domain.into(), field: field.into(), value: value(v) };
            outcome(&sim.propose(Entry::mutation(vec![write], "test")))
        }
        ["drive", worker] => {
            let mut w: Worker = match *worker {
                "echo" => echo_count(),
                "fail" => Box::new(|_| EffectOutcome::Failed { error: "unavailable".into() }),
                w => constant(w.trim_start_matches("const:").parse().expect("const:N")),
            };
            sim.drive(10_000, &mut w);
            goals(&sim.engine)
        }
        ["goals"] => goals(&sim.engine),
        ["history"] => sim
            .engine
            .history(usize::MAX)
            .into_iter()
            .map(|c| {
                format!(
                    "{}.{} {}{}",
                    c.domain,
                    c.transition,
                    c.verdict,
                    c.code.map(|c| format!(" {c}")).unwrap_or_default()
                )
            })
            .collect(),
        ["release", domain, rest @ ..] => outcome(
            &sim.propose(Entry::Release { domain: (*domain).into(), goal: rest.first().map(|g| g.to_string()) }),
        ),
        ["retry", domain, goal] => {
            outcome(&sim.propose(Entry::Retry { domain: (*domain).into(), goal: (*goal).into() }))
        }
        other => panic!("unknown command {other:?}"),
    }
}

#[test]
fn testdata_scripts() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testdata");
    let mut paths: Vec<_> =
        std::fs::read_dir(&dir).expect("testdata").filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let rewrite = std::env::var_os("REWRITE").is_some();
    let mut failures = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("readable");
        let mut sim = None;
        let mut out = String::new();
        for block in parse(&text) {
            let actual = run(&mut sim, &block);
            if actual != block.expected {
                failures.push(format!(
                    "{}: `{}`\nexpected:\n{}\nactual:\n{}",
                    path.display(),
                    block.command,
                    block.expected.join("\n"),
                    actual.join("\n")
                ));
            }
            for l in block.comments.iter().chain([&block.command]) {
                out.push_str(l);
                out.push('\n');
            }
            for l in &block.body {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str("----\n");
            for l in &actual {
                out.push_str(l);
                out.push('\n');
            }
            out.push('\n');
        }
        if rewrite {
            std::fs::write(&path, out).expect("writable");
        }
    }
    assert!(rewrite || failures.is_empty(), "{}", failures.join("\n\n"));
}
