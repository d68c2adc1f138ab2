//! The replicated state machine: the deterministic engine behind openraft's
//! `RaftStateMachine`, with snapshots persisted in RocksDB.
//!
//! The engine lives in memory; the latest snapshot is on disk, so a restart
//! restores it and openraft re-applies only the entries after it.

use super::CF_SM;
use crate::raft_types::{
    ApplyResponse, LogEntry, LogId, NodeId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::replica::Replica;
use lexum_engine::{Engine, EngineConfig};
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, Snapshot, StorageIOError};
use rocksdb::DB;
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::Arc;

const KEY_SNAPSHOT: &[u8] = b"snapshot";

/// What a snapshot holds: the engine's state and Raft's view of it.
#[derive(Serialize, Deserialize)]
pub struct SnapshotPayload {
    /// Last entry applied to the engine.
    pub last_applied: Option<LogId>,
    /// Membership as of `last_applied`.
    pub membership: StoredMembership,
    /// `Engine::snapshot` bytes.
    pub engine: Vec<u8>,
}

/// The snapshot as stored on disk.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// The state machine half of a node's storage. Clones share state.
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<DB>,
    replica: Arc<Replica>,
    /// Serializes snapshot writes: openraft builds snapshots in a separate
    /// task that may race with installing a newer one.
    snapshot_write: Arc<std::sync::Mutex<()>>,
}

impl StateMachine {
    /// Opens the state machine, restoring the latest persisted snapshot.
    /// Without one, the engine starts from the default settings, as on
    /// every other replica; `Entry::Configure` entries in the log change them.
    pub fn open(db: Arc<DB>) -> anyhow::Result<StateMachine> {
        let replica = Arc::new(Replica::new(Engine::new(EngineConfig::default())));
        let sm = StateMachine { db, replica, snapshot_write: Arc::default() };
        if let Some(stored) = sm.load_snapshot()? {
            let payload: SnapshotPayload = postcard::from_bytes(&stored.data)?;
            sm.replica.install(&payload)?;
        }
        Ok(sm)
    }

    /// The shared replica (engine, membership, events) this state machine feeds.
    pub fn replica(&self) -> Arc<Replica> {
        self.replica.clone()
    }

    fn cf(&self) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(CF_SM).expect("column family `sm` exists")
    }

    fn load_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageIOError<NodeId>> {
        let bytes = self.db.get_cf(self.cf(), KEY_SNAPSHOT).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        bytes.map(|b| postcard::from_bytes(&b).map_err(|e| StorageIOError::read_snapshot(None, &e))).transpose()
    }

    /// Persists `stored` unless a snapshot at least as new is already on
    /// disk; returns whether it was written.
    fn save_snapshot(&self, stored: &StoredSnapshot) -> Result<bool, StorageIOError<NodeId>> {
        let _guard = self.snapshot_write.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = self.load_snapshot()? {
            if existing.meta.last_log_id >= stored.meta.last_log_id
                && existing.meta.snapshot_id != stored.meta.snapshot_id
            {
                return Ok(false);
            }
        }
        let bytes = postcard::to_stdvec(stored).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        self.db.put_cf(self.cf(), KEY_SNAPSHOT, bytes).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        self.db.flush_wal(true).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        Ok(true)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let started = std::time::Instant::now();
        let payload = self.replica.snapshot_payload();
        let data = postcard::to_stdvec(&payload).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let snapshot_id = match payload.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, data.len()),
            None => format!("empty-{}", data.len()),
        };
        let meta = SnapshotMeta { last_log_id: payload.last_applied, last_membership: payload.membership, snapshot_id };
        let stored = StoredSnapshot { meta: meta.clone(), data };
        self.save_snapshot(&stored)?;
        tracing::debug!(snapshot = %meta.snapshot_id, bytes = stored.data.len(), took = ?started.elapsed(), "built snapshot");
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(stored.data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok(self.replica.applied_state())
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyResponse>, StorageError>
    where
        I: IntoIterator<Item = LogEntry> + Send,
        I::IntoIter: Send,
    {
        let mut responses = Vec::new();
        for entry in entries {
            let response = match entry.payload {
                EntryPayload::Blank => {
                    self.replica.note_applied(entry.log_id, None);
                    ApplyResponse { index: entry.log_id.index, outcome: Ok(()), parts: Vec::new(), dispatched: false }
                }
                EntryPayload::Membership(membership) => {
                    self.replica
                        .note_applied(entry.log_id, Some(StoredMembership::new(Some(entry.log_id), membership)));
                    ApplyResponse { index: entry.log_id.index, outcome: Ok(()), parts: Vec::new(), dispatched: false }
                }
                EntryPayload::Normal(ref request) => self.replica.apply(entry.log_id, request),
            };
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> StateMachine {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let payload: SnapshotPayload =
            postcard::from_bytes(&data).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        // Persist first: a crash after swapping the engine but before saving
        // would restart from an older snapshot whose log was already purged.
        self.save_snapshot(&StoredSnapshot { meta: meta.clone(), data })?;
        self.replica
            .install(&payload)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &anyhow_to_io(e)))?;
        tracing::info!(snapshot = %meta.snapshot_id, last = ?meta.last_log_id, "installed snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self
            .load_snapshot()?
            .map(|stored| Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(stored.data)) }))
    }
}

fn anyhow_to_io(e: anyhow::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}
