//! `status`, `cluster members|add|remove`, `replay`.

use super::output;
use super::settings::Settings;
use super::Failure;
use lexum_client::{Client, Membership};

/// Shows leader, term, commit index and every member; JSON is
/// `{leader, term, commit_index, members:[{id, address, role, applied_index, state_hash}]}`.
pub async fn status(settings: &Settings, client: &Client) -> Result<(), Failure> {
    let status = client.status().await?;
    if settings.json() {
        output::json(&serde_json::json!({
            "leader": status.leader,
            "term": status.term,
            "commit_index": status.commit_index,
            "members": status.members,
        }));
        return Ok(());
    }
    let leader = if status.leader == 0 { "none (election running)".to_string() } else { status.leader.to_string() };
    let program = if status.program_version == 0 {
        "none".to_string()
    } else {
        format!("version {} ({})", status.program_version, short(&status.program_hash))
    };
    outln!("leader: {leader}   term: {}   commit index: {}   program: {program}", status.term, status.commit_index);
    let rows: Vec<Vec<String>> = status
        .members
        .iter()
        .map(|m| {
            vec![m.id.to_string(), m.address.clone(), m.role.clone(), m.applied_index.to_string(), m.state_hash.clone()]
        })
        .collect();
    output::table(&["ID", "ADDRESS", "ROLE", "APPLIED", "STATE HASH"], &rows, |_, _| None);
    Ok(())
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn print_members(settings: &Settings, membership: &Membership) {
    if settings.json() {
        output::json(&serde_json::json!({ "leader": membership.leader, "members": membership.members }));
        return;
    }
    let rows: Vec<Vec<String>> = membership
        .members
        .iter()
        .map(|m| {
            let kind = if m.voter { "voter" } else { "learner" };
            let leader = if m.id == membership.leader { "yes" } else { "" };
            vec![m.id.to_string(), m.address.clone(), kind.to_string(), leader.to_string()]
        })
        .collect();
    output::table(&["ID", "ADDRESS", "KIND", "LEADER"], &rows, |_, _| None);
}

/// Lists members.
pub async fn members(settings: &Settings, client: &Client) -> Result<(), Failure> {
    print_members(settings, &client.members().await?);
    Ok(())
}

/// Adds a member.
pub async fn add(settings: &Settings, client: &Client, id: u64, address: &str) -> Result<(), Failure> {
    if id == 0 {
        return Err(Failure::User("member ids are non-zero".into()));
    }
    print_members(settings, &client.add_member(id, address).await?);
    Ok(())
}

/// Removes a member.
pub async fn remove(settings: &Settings, client: &Client, id: u64) -> Result<(), Failure> {
    print_members(settings, &client.remove_member(id).await?);
    Ok(())
}

/// Asks every configured node to replay its log; exit 1 when a node's
/// replayed hash differs from its live one, 2 when no node answers.
pub async fn replay(settings: &Settings, client: &Client) -> Result<(), Failure> {
    let mut reports = Vec::new();
    let mut unreachable = Vec::new();
    for endpoint in &client.config().endpoints {
        let node = client.only(endpoint)?;
        match node.replay().await {
            Ok(report) => reports.push((endpoint.clone(), report)),
            Err(e) if e.is_unavailable() => unreachable.push(format!("{endpoint}: {e}")),
            Err(e) => return Err(e.into()),
        }
    }
    if reports.is_empty() {
        return Err(Failure::Unavailable(unreachable.join("; ")));
    }
    for line in &unreachable {
        eprintln!("lexumctl: warning: skipped {line}");
    }
    if settings.json() {
        let items: Vec<serde_json::Value> = reports
            .iter()
            .map(|(endpoint, r)| {
                serde_json::json!({
                    "endpoint": endpoint,
                    "applied_index": r.applied_index,
                    "live_state_hash": r.live_state_hash,
                    "replayed_state_hash": r.replayed_state_hash,
                    "matches": r.matches,
                })
            })
            .collect();
        output::json(&serde_json::Value::Array(items));
    } else {
        let rows: Vec<Vec<String>> = reports
            .iter()
            .map(|(endpoint, r)| {
                vec![
                    endpoint.clone(),
                    r.applied_index.to_string(),
                    r.live_state_hash.clone(),
                    r.replayed_state_hash.clone(),
                    if r.matches { "yes".into() } else { "NO".into() },
                ]
            })
            .collect();
        output::table(&["NODE", "APPLIED", "LIVE HASH", "REPLAYED HASH", "MATCH"], &rows, |_, _| None);
    }
    let mismatched: Vec<&str> = reports.iter().filter(|(_, r)| !r.matches).map(|(e, _)| e.as_str()).collect();
    if mismatched.is_empty() {
        Ok(())
    } else {
        Err(Failure::User(format!("replayed state hash differs from the live one on {}", mismatched.join(", "))))
    }
}
