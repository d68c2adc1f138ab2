//! `lexumctl replay`: recompute the state hash from the stored snapshot and
//! log, and compare it with the live engine's.

use crate::cluster::Cluster;
use crate::store::log_store::LogStore;
use crate::store::state_machine::{SnapshotPayload, StateMachine};
use anyhow::{bail, Context};
use lexum_engine::{Engine, EngineConfig};
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftLogReader};

/// One replay at a time per process: each holds a second engine in memory
/// and a blocking thread; another caller is told to come back later.
pub static RUNNING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Both hashes at the same applied index.
pub struct ReplayOutcome {
    /// Index of the last engine entry both hashes cover.
    pub applied_index: u64,
    /// The live engine's state hash.
    pub live: [u8; 32],
    /// The hash recomputed from snapshot and log.
    pub replayed: [u8; 32],
}

/// Rebuilds the engine from the latest snapshot (or from nothing) plus the
/// log, up to the live engine's last applied entry. Reading is async; the
/// decoding and applying run on a blocking thread, off the async runtime.
pub async fn replay(cluster: &Cluster, mut store: LogStore, mut sm: StateMachine) -> anyhow::Result<ReplayOutcome> {
    let snapshot = sm.get_current_snapshot().await.context("reading snapshot")?;
    // Decoding copies the engine's bytes; restoring them is the work, and
    // it waits for the blocking thread.
    let payload = match snapshot {
        Some(snapshot) => {
            Some(postcard::from_bytes::<SnapshotPayload>(snapshot.snapshot.get_ref()).context("decoding snapshot")?)
        }
        None => None,
    };
    let start = payload.as_ref().and_then(|p| p.last_applied).map(|l| l.index + 1).unwrap_or(1);
    let (target, live) = cluster.replica.with_engine(|e| (e.last_applied(), e.state_hash()));
    let entries = if target >= start {
        let entries = store.try_get_log_entries(start..=target).await.context("reading log")?;
        match entries.first() {
            Some(first) if first.log_id.index == start => {}
            _ => bail!("the log moved past the snapshot while replaying; try again"),
        }
        entries
    } else {
        Vec::new()
    };
    let replayed = tokio::task::spawn_blocking(move || -> anyhow::Result<[u8; 32]> {
        let mut engine = match payload {
            Some(payload) => Engine::restore(&payload.engine).context("restoring snapshot")?,
            None => Engine::new(EngineConfig::default()),
        };
        for entry in entries {
            if let EntryPayload::Normal(request) = &entry.payload {
                let _ = engine.apply(entry.log_id.index, request);
            }
        }
        Ok(engine.state_hash())
    })
    .await
    .context("the replay thread stopped")??;
    Ok(ReplayOutcome { applied_index: target, live, replayed })
}
