//! `why` and `explain`: the causes of writes and the reasons of statuses.

use super::goals::parse_target;
use super::output;
use super::settings::Settings;
use super::Failure;
use lexum_client::provenance::{Cause, Waiting};
use lexum_client::{value, Client, WriteRecord};

/// Lists the latest writes of `Domain.field` with their cause chains.
pub async fn why(settings: &Settings, client: &Client, target: &str, last: u32) -> Result<(), Failure> {
    let (domain, field) = parse_target(target, true)?;
    let field = field.unwrap_or_default();
    let writes = client.why(&domain, &field, last.max(1)).await?;
    if settings.json() {
        output::json(&serde_json::to_value(&writes).unwrap_or_default());
        return Ok(());
    }
    if writes.is_empty() {
        outln!("{target} has not been written since the cluster keeps its writes");
    }
    print_writes(&writes);
    Ok(())
}

fn print_writes(writes: &[WriteRecord]) {
    let rows: Vec<Vec<String>> = writes
        .iter()
        .map(|w| {
            vec![
                w.index.to_string(),
                w.field.clone(),
                format!("{} → {}", value::display(&w.old), value::display(&w.new)),
                cause_chain(&w.cause),
            ]
        })
        .collect();
    output::table(&["INDEX", "FIELD", "CHANGE", "CAUSE"], &rows, |_, _| None);
}

/// `Goal cycle N (slice)`, or `principal; observing Effect KEY of Goal
/// cycle N on worker W`.
fn cause_chain(cause: &Cause) -> String {
    match cause {
        Cause::Cycle { cycle, step } => format!("{} cycle {} ({step})", cycle.goal, cycle.cycle),
        Cause::Handler { handler } => format!("handler {handler}"),
        Cause::Client { principal, caused_by, observed } => {
            let mut chain = vec![principal.clone()];
            for o in observed {
                let worker = o.worker.as_deref().map(|w| format!(" on worker {w}")).unwrap_or_default();
                chain.push(format!(
                    "observing {} {} of {} cycle {}{worker}",
                    o.effect, o.idempotency_key, o.cycle.goal, o.cycle.cycle
                ));
            }
            let unknown: Vec<&String> =
                caused_by.iter().filter(|k| !observed.iter().any(|o| &o.idempotency_key == *k)).collect();
            if !unknown.is_empty() {
                chain.push(format!(
                    "unknown effects {}",
                    unknown.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
            chain.join("; ")
        }
    }
}

fn waiting_text(waiting: &Waiting) -> String {
    match waiting {
        Waiting::Nothing => "nothing: the goal holds".into(),
        Waiting::Trap => "release: it is TRAPPED (E005) until `lexumctl release` or a new version".into(),
        Waiting::Failure => "new inputs or `lexumctl retry`: its repair FAILED".into(),
        Waiting::Damping { principal } => {
            format!("damping to decay: outside principal {principal} keeps undoing it (E016)")
        }
        Waiting::Dominance { higher } => {
            format!("higher-priority goal {higher} to stop holding or the dominance to expire")
        }
        Waiting::Backoff { delay_ms } => {
            format!("a backoff of {delay_ms} ms: its last cycle left the inputs unchanged")
        }
        Waiting::Cycle { cycle, transition, next_slice, effects, suspended } => {
            let state = if *suspended {
                "suspended by a higher-priority goal of its domain".to_string()
            } else if effects.is_empty() {
                format!("ready to run slice {}", next_slice + 1)
            } else {
                format!("effects {} (a free worker, then their results)", effects.join(", "))
            };
            format!("its cycle {cycle} of {transition}: {state}")
        }
        Waiting::Domain { busy_with } => format!("its domain, busy repairing {busy_with}"),
        Waiting::NoTransition => "a transition whose `when` holds".into(),
    }
}

/// Says why `Domain.Goal` is in its status.
pub async fn explain(settings: &Settings, client: &Client, target: &str) -> Result<(), Failure> {
    let (domain, goal) = parse_target(target, true)?;
    let goal = goal.unwrap_or_default();
    let e = client.explain(&domain, &goal).await?;
    if settings.json() {
        output::json(&serde_json::to_value(&e).unwrap_or_default());
        return Ok(());
    }
    let code = e.goal.code.as_deref().map(|c| format!(" {c}")).unwrap_or_default();
    outln!("{target} is {}{code} (priority {}, since index {})", e.goal.status, e.goal.priority, e.goal.since_index);
    if let Some(evidence) = &e.goal.evidence {
        outln!("  evidence: {evidence}");
    }
    if let Some(transition) = &e.armed_transition {
        outln!("  armed transition: {transition}");
    }
    outln!("  waits for: {}", waiting_text(&e.waiting));
    for c in &e.contention {
        outln!(
            "  contested by {}: {} undos of {}, penalty {}{}",
            c.principal,
            c.undos,
            c.fields.join(", "),
            c.penalty,
            if c.suppressing { " (repairs suspended)" } else { "" }
        );
    }
    if !e.dominated_by.is_empty() {
        outln!("  dominated by: {}", e.dominated_by.join(", "));
    }
    if !e.vector.is_empty() {
        let parts: Vec<String> =
            e.vector.iter().map(|v| format!("{} {} {:+}@{}", v.field, v.writer, v.delta, v.index)).collect();
        outln!("  oscillation vector: {}", parts.join(", "));
    }
    if !e.writes.is_empty() {
        outln!("  latest writes of its inputs:");
        print_writes(&e.writes);
    }
    Ok(())
}
