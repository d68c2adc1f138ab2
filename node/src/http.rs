//! The HTTP side of a node: Prometheus `/metrics`, `/healthz` (the process
//! is serving), `/readyz` (the node knows a leader and can serve) and the
//! live web view under `/ui` ([`crate::ui`], behind a reading role when
//! tokens are on).

use crate::cluster::Cluster;
use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use lexum_engine::GoalStatus;
use std::net::SocketAddr;
use std::sync::Arc;

/// Serves the HTTP endpoints until the process exits; `tokens` guard the
/// live view.
pub async fn serve(
    addr: SocketAddr,
    cluster: Cluster,
    tokens: Arc<crate::service::auth::Tokens>,
) -> anyhow::Result<()> {
    let ui = crate::ui::routes(crate::ui::UiState { cluster: cluster.clone(), tokens });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(cluster)
        .merge(ui);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn metrics(State(cluster): State<Cluster>) -> String {
    refresh(&cluster);
    cluster.replica.metrics().render()
}

async fn readyz(State(cluster): State<Cluster>) -> (StatusCode, String) {
    let metrics = cluster.raft.metrics().borrow().clone();
    match metrics.current_leader {
        Some(leader) => (StatusCode::OK, format!("ready: leader {leader}, term {}\n", metrics.current_term)),
        None => (StatusCode::SERVICE_UNAVAILABLE, "not ready: no known leader\n".into()),
    }
}

/// Updates the gauges that describe Raft and engine state.
pub fn refresh(cluster: &Cluster) {
    let raft = cluster.raft.metrics().borrow().clone();
    let metrics = cluster.replica.metrics();
    metrics.term.set(raft.current_term as i64);
    metrics.is_leader.set(i64::from(raft.current_leader == Some(cluster.id)));
    let applied = raft.last_applied.map(|l| l.index).unwrap_or(0);
    metrics.applied_index.set(applied as i64);
    metrics.commit_index.set(cluster.commit_index() as i64);
    let counts = cluster.replica.with_engine(|e| e.status_counts());
    set_goal_gauges(metrics, counts);
}

/// Sets `lexum_goals{status}` for every status, zero ones included.
fn set_goal_gauges(metrics: &Metrics, counts: [(GoalStatus, u64); 7]) {
    for (status, count) in counts {
        metrics.goals.with_label_values(&[status.name()]).set(count as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_a_goal_gauge_zero_ones_included() {
        let metrics = Metrics::new();
        set_goal_gauges(&metrics, GoalStatus::ALL.map(|s| (s, u64::from(s == GoalStatus::Contested) * 3)));
        let text = metrics.render();
        assert!(text.contains("lexum_goals{status=\"CONTESTED\"} 3"), "{text}");
        for status in GoalStatus::ALL.iter().filter(|s| **s != GoalStatus::Contested) {
            assert!(text.contains(&format!("lexum_goals{{status=\"{status}\"}} 0")), "{status}: {text}");
        }
    }
}
