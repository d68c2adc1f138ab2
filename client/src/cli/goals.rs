//! `goals`, `watch`, `history`, `release`, `retry`.

use super::output;
use super::settings::{parse_duration, Settings};
use super::Failure;
use futures::StreamExt;
use lexum_client::value::{self, is_domain_name, is_ident, parse_instance, split_target};
use lexum_client::{Client, Cycle, Event, GoalFilter};
use std::time::Duration;

/// Lists goals (all, of a domain, kind or instance, with a status, one
/// page); JSON is `[{domain, goal, priority, status, code, evidence}]`.
pub async fn list(settings: &Settings, client: &Client, flags: &GoalsFlags) -> Result<(), Failure> {
    let domain = match flags.target.as_deref() {
        None => None,
        Some(target) => Some(parse_target(target, false)?).and_then(|(d, goal)| goal.is_none().then_some(d)),
    };
    if flags.target.is_some() && domain.is_none() {
        return Err(Failure::User("goals takes a domain, a kind or an instance (Kind/key), not a goal".into()));
    }
    let status = flags.status.as_ref().map(|s| s.to_ascii_uppercase());
    let filter = GoalFilter { domain, status, limit: flags.limit, offset: flags.offset };
    let page = client.goals_page(&filter).await?;
    let goals = page.goals;
    if !settings.json() && (flags.limit > 0 || flags.offset > 0) {
        eprintln!("goals {}-{} of {}", flags.offset + 1, flags.offset + goals.len() as u64, page.total);
    }
    if settings.json() {
        let items: Vec<serde_json::Value> = goals
            .iter()
            .map(|g| {
                serde_json::json!({
                    "domain": g.domain,
                    "goal": g.goal,
                    "priority": g.priority,
                    "status": g.status,
                    "code": g.code,
                    "evidence": g.evidence,
                })
            })
            .collect();
        output::json(&serde_json::Value::Array(items));
    } else {
        let rows: Vec<Vec<String>> = goals
            .iter()
            .map(|g| {
                vec![
                    g.domain.clone(),
                    g.goal.clone(),
                    g.priority.clone(),
                    g.status.clone(),
                    g.code.clone().unwrap_or_else(|| "-".into()),
                    g.evidence.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let color = settings.color_stdout;
        output::table(&["DOMAIN", "GOAL", "PRIORITY", "STATUS", "CODE", "EVIDENCE"], &rows, |column, cell| {
            if color && column == 3 {
                output::status_color(cell)
            } else {
                None
            }
        });
    }
    Ok(())
}

/// `lexumctl goals` flags.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct GoalsFlags {
    /// Only this domain's goals: a singleton, a kind (every instance) or an
    /// instance (`Kind/key`).
    pub target: Option<String>,
    /// Only goals with this status (SATISFIED, VIOLATED, REPAIRING, FAILED,
    /// DOMINATED, TRAPPED, CONTESTED).
    #[arg(long)]
    pub status: Option<String>,
    /// At most this many goals (0: all).
    #[arg(long, default_value_t = 0)]
    pub limit: u32,
    /// Skip this many matching goals first.
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
}

/// Streams events (one JSON object per line with `--output json`) until
/// `count` events, `duration`, or the stream gives up.
pub async fn watch(
    settings: &Settings,
    client: &Client,
    from: u64,
    count: Option<u64>,
    duration: Option<String>,
) -> Result<(), Failure> {
    let limit = match duration {
        Some(text) => Some(parse_duration(&text).map_err(|e| Failure::User(format!("--for: {e}")))?),
        None => None,
    };
    if count == Some(0) {
        return Ok(());
    }
    let mut events = client.watch(from);
    let deadline = tokio::time::sleep(limit.unwrap_or(Duration::MAX / 4));
    tokio::pin!(deadline);
    let mut seen = 0u64;
    loop {
        let next = tokio::select! {
            _ = &mut deadline => return Ok(()),
            next = events.next() => next,
        };
        match next {
            Some(Ok(event)) => {
                print_event(settings, &event);
                seen += 1;
                if count.is_some_and(|c| seen >= c) {
                    return Ok(());
                }
            }
            Some(Err(e)) => return Err(e.into()),
            None => return Ok(()),
        }
    }
}

fn print_event(settings: &Settings, event: &Event) {
    if settings.json() {
        output::json_line(&serde_json::to_value(event).unwrap_or_default());
    } else {
        let target = match (&event.domain, &event.goal) {
            (Some(d), Some(g)) => format!("{d}.{g}"),
            (Some(d), None) => d.clone(),
            _ => "-".into(),
        };
        outln!(
            "{:>6}  {:<16}  {:<24}  {:<4}  {}",
            event.index,
            event.kind,
            target,
            event.code.as_deref().unwrap_or("-"),
            event.message
        );
    }
}

/// Shows the last `limit` judged cycles.
pub async fn history(settings: &Settings, client: &Client, limit: u32) -> Result<(), Failure> {
    let cycles = client.history(limit).await?;
    if settings.json() {
        output::json(&serde_json::to_value(&cycles).unwrap_or_default());
        return Ok(());
    }
    let rows: Vec<Vec<String>> = cycles
        .iter()
        .map(|c| {
            vec![
                c.cycle.to_string(),
                format!("{}.{}", c.domain, c.goal),
                c.transition.clone(),
                format!("{}..{}", c.start_index, c.end_index),
                c.verdict.clone(),
                c.code.clone().unwrap_or_else(|| "-".into()),
                unmet_after(c),
                changed(c),
            ]
        })
        .collect();
    let header = ["CYCLE", "GOAL", "TRANSITION", "INDEXES", "VERDICT", "CODE", "UNMET AFTER", "CHANGED"];
    output::table(&header, &rows, |_, _| None);
    Ok(())
}

/// The goals that did not hold after a cycle, for its history row.
fn unmet_after(cycle: &Cycle) -> String {
    let unmet: Vec<&str> = cycle.goals_after.iter().filter(|g| !g.holds).map(|g| g.goal.as_str()).collect();
    if unmet.is_empty() {
        "-".into()
    } else {
        unmet.join(", ")
    }
}

/// What a cycle changed, for its history row: `Stuck.y 0 → 1, ...`.
fn changed(cycle: &Cycle) -> String {
    if cycle.deltas.is_empty() {
        return "-".into();
    }
    let deltas: Vec<String> = cycle
        .deltas
        .iter()
        .map(|d| format!("{} {} → {}", d.field, value::display(&d.before), value::display(&d.after)))
        .collect();
    deltas.join(", ")
}

/// `Domain`, `Domain.Goal`, an instance `Kind[key]` or `Kind/key`, or
/// `Kind[key].Goal`; returns the domain as the cluster names it.
pub(super) fn parse_target(text: &str, goal_required: bool) -> Result<(String, Option<String>), Failure> {
    let wanted = if goal_required { "Domain.Goal or Kind[key].Goal" } else { "Domain, Kind/key or Domain.Goal" };
    let malformed = || Failure::User(format!("malformed target `{text}`: expected {wanted}"));
    if let Ok((kind, key)) = parse_instance(text) {
        if goal_required {
            return Err(malformed());
        }
        return Ok((format!("{kind}[{key}]"), None));
    }
    let (domain, goal) = match split_target(text) {
        Some((d, g)) => (d, Some(g)),
        None => (text, None),
    };
    if !is_domain_name(domain) || goal.is_some_and(|g| !is_ident(g)) || (goal_required && goal.is_none()) {
        return Err(malformed());
    }
    Ok((domain.to_string(), goal.map(str::to_string)))
}

/// Releases a trapped goal, or all of a domain's.
pub async fn release(settings: &Settings, client: &Client, target: &str) -> Result<(), Failure> {
    let (domain, goal) = parse_target(target, false)?;
    let index = client.release(&domain, goal.as_deref()).await?;
    report(settings, &format!("released {target}"), index);
    Ok(())
}

/// Re-arms a failed goal.
pub async fn retry(settings: &Settings, client: &Client, target: &str) -> Result<(), Failure> {
    let (domain, goal) = parse_target(target, true)?;
    let index = client.retry(&domain, goal.as_deref().unwrap_or_default()).await?;
    report(settings, &format!("re-armed {target}"), index);
    Ok(())
}

fn report(settings: &Settings, what: &str, index: u64) {
    if settings.json() {
        output::json(&serde_json::json!({ "index": index }));
    } else {
        outln!("{what} at index {index}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(parse_target("Pool", false).ok(), Some(("Pool".into(), None)));
        assert_eq!(parse_target("Pool.Cap", true).ok(), Some(("Pool".into(), Some("Cap".into()))));
        assert!(parse_target("Pool", true).is_err());
        assert!(parse_target("Pool.", false).is_err());
        assert!(parse_target("a.b.c", false).is_err());
    }
}
