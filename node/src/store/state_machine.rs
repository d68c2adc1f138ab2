//! The replicated state machine: the deterministic engine behind openraft's
//! `RaftStateMachine`, with its latest snapshot in a file of its own
//! ([`SnapshotFile`]).
//!
//! The engine lives in memory; the latest snapshot is on disk, so a restart
//! restores it and openraft re-applies only the entries after it.

use super::snapshot_file::{SnapshotFile, FILE};
use super::CF_SM;
use crate::raft_types::{
    ApplyResponse, LogEntry, LogId, NodeId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::replica::Replica;
use anyhow::Context;
use lexum_engine::{Engine, EngineConfig};
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, Snapshot, StorageIOError};
use rocksdb::DB;
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

/// Where releases before the snapshot file kept the snapshot, in `sm`.
const LEGACY_KEY_SNAPSHOT: &[u8] = b"snapshot";

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

/// What runs right after an entry that dispatched effects is applied,
/// with that entry's id (see [`StateMachine::on_dispatched`]).
pub type DispatchedHook = Box<dyn Fn(LogId) + Send + Sync>;

/// The state machine half of a node's storage. Clones share state.
#[derive(Clone)]
pub struct StateMachine {
    replica: Arc<Replica>,
    file: SnapshotFile,
    /// The saved snapshot's metadata. Its lock serializes saves: openraft
    /// builds snapshots in a separate task that may race with installing a
    /// newer one.
    saved: Arc<Mutex<Option<SnapshotMeta>>>,
    dispatched: Arc<OnceLock<DispatchedHook>>,
}

impl StateMachine {
    /// Opens the state machine of the node whose database is `db` in
    /// `dir`, restoring the latest snapshot. Without one, the engine starts
    /// from the default settings, as on every other replica;
    /// `Entry::Configure` entries in the log change them.
    ///
    /// A snapshot that an earlier release kept in the database is moved to
    /// the snapshot file first.
    pub fn open(db: &DB, dir: &Path) -> anyhow::Result<StateMachine> {
        let replica = Arc::new(Replica::new(Engine::new(EngineConfig::default())));
        let file = SnapshotFile::open(dir)?;
        move_legacy_snapshot(db, &file)?;
        let sm = StateMachine { replica, file, saved: Arc::default(), dispatched: Arc::default() };
        if let Some(stored) = sm.load_snapshot()? {
            let restore = || -> anyhow::Result<()> {
                let payload: SnapshotPayload = postcard::from_bytes(&stored.data)?;
                sm.replica.install(&payload)
            };
            restore().with_context(|| {
                format!(
                    "restoring snapshot {} from {} (written by another release? restore the backup with its binary)",
                    stored.meta.snapshot_id,
                    dir.join(FILE).display()
                )
            })?;
            *sm.saved.lock().unwrap_or_else(|p| p.into_inner()) = Some(stored.meta);
        }
        Ok(sm)
    }

    /// The shared replica (engine, membership, events) this state machine feeds.
    pub fn replica(&self) -> Arc<Replica> {
        self.replica.clone()
    }

    /// Calls `hook` on every entry applied from now on whose effects it
    /// dispatched (`RunStepAndDispatch`, `DispatchArmed`), as soon as it is
    /// applied: the leader's dispatcher sends their tasks from there rather
    /// than once the proposer hears back through the Raft core. Only the
    /// first hook counts.
    pub fn on_dispatched(&self, hook: DispatchedHook) {
        let _ = self.dispatched.set(hook);
    }

    fn load_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageIOError<NodeId>> {
        let bytes = self.file.load().map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        bytes.map(|b| postcard::from_bytes(&b).map_err(|e| StorageIOError::read_snapshot(None, &e))).transpose()
    }

    /// Persists `stored` unless a snapshot at least as new is already on
    /// disk; returns whether it was written.
    fn save_snapshot(&self, stored: &StoredSnapshot) -> Result<bool, StorageIOError<NodeId>> {
        let mut saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = saved.as_ref() {
            if existing.last_log_id >= stored.meta.last_log_id && existing.snapshot_id != stored.meta.snapshot_id {
                return Ok(false);
            }
        }
        let bytes = postcard::to_stdvec(stored).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        self.file.save(&bytes).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        *saved = Some(stored.meta.clone());
        Ok(true)
    }

    /// [`StateMachine::save_snapshot`] on a blocking thread: its syncs (the
    /// file's and the directory's) must not hold up a runtime worker that
    /// the Raft core and the client calls run on. Hands `stored` back.
    async fn persist(&self, stored: StoredSnapshot) -> Result<StoredSnapshot, StorageIOError<NodeId>> {
        let this = self.clone();
        on_blocking_thread(move || this.save_snapshot(&stored).map(|_| stored)).await
    }
}

/// Moves a snapshot kept in the database's `sm` column family (releases
/// before the snapshot file) into `file`, then deletes it. When the file
/// has one too (a crash between the move and the delete, or a node run on
/// an earlier release again after it), the newer of the two is kept: the
/// log before the newer one may already be purged.
fn move_legacy_snapshot(db: &DB, file: &SnapshotFile) -> anyhow::Result<()> {
    let sm = db.cf_handle(CF_SM).context("column family `sm`")?;
    let Some(legacy) = db.get_cf(sm, LEGACY_KEY_SNAPSHOT)? else {
        return Ok(());
    };
    let last_log_id = |bytes: &[u8]| -> anyhow::Result<Option<LogId>> {
        let stored: StoredSnapshot = postcard::from_bytes(bytes).context("decoding a stored snapshot")?;
        Ok(stored.meta.last_log_id)
    };
    let keep_file = match file.load()? {
        Some(current) => last_log_id(&current)? >= last_log_id(&legacy)?,
        None => false,
    };
    if !keep_file {
        file.save(&legacy)?;
    }
    db.delete_cf(sm, LEGACY_KEY_SNAPSHOT)?;
    db.flush_wal(true)?;
    tracing::info!(bytes = legacy.len(), "moved the snapshot from the database to its own file");
    Ok(())
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let this = self.clone();
        let built = on_blocking_thread(move || this.build_and_save()).await?;
        Ok(Snapshot { meta: built.meta, snapshot: Box::new(Cursor::new(built.data)) })
    }
}

impl StateMachine {
    /// Encodes the engine and saves it. Runs on a blocking thread: encoding
    /// a large fleet takes milliseconds, and the saves sync a file and its
    /// directory, none of which may hold up a runtime worker that the Raft
    /// core and the client calls run on.
    fn build_and_save(&self) -> Result<StoredSnapshot, StorageIOError<NodeId>> {
        let started = std::time::Instant::now();
        let payload = self.replica.snapshot_payload();
        let data = postcard::to_stdvec(&payload).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let snapshot_id = match payload.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, data.len()),
            None => format!("empty-{}", data.len()),
        };
        let meta = SnapshotMeta { last_log_id: payload.last_applied, last_membership: payload.membership, snapshot_id };
        let stored = StoredSnapshot { meta, data };
        self.save_snapshot(&stored)?;
        tracing::debug!(snapshot = %stored.meta.snapshot_id, bytes = stored.data.len(), took = ?started.elapsed(), "built snapshot");
        Ok(stored)
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
                EntryPayload::Normal(ref request) => {
                    let response = self.replica.apply(entry.log_id, request);
                    if let Some(hook) = self.dispatched.get().filter(|_| response.dispatched) {
                        hook(entry.log_id);
                    }
                    response
                }
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
        self.persist(StoredSnapshot { meta: meta.clone(), data }).await?;
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

/// Runs snapshot work `f` on tokio's blocking threads; a panic in it is a
/// failed snapshot write.
async fn on_blocking_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageIOError<NodeId>> + Send + 'static,
) -> Result<T, StorageIOError<NodeId>> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageIOError::write_snapshot(None, &std::io::Error::other(e.to_string())))?
}

fn anyhow_to_io(e: anyhow::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, Entry};

    /// A state machine that has applied blank entries up to `index`.
    async fn applied_up_to(db: &DB, dir: &Path, index: u64) -> StateMachine {
        let mut sm = StateMachine::open(db, dir).expect("open");
        let entries = (1..=index).map(|i| Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
            payload: EntryPayload::<TypeConfig>::Blank,
        });
        sm.apply(entries).await.expect("apply");
        sm
    }

    /// A new node database in its own temporary directory.
    fn fresh_database() -> (tempfile::TempDir, Arc<DB>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = super::super::open_db(dir.path()).expect("db");
        (dir, db)
    }

    fn legacy_key(db: &DB) -> Option<Vec<u8>> {
        db.get_cf(db.cf_handle(CF_SM).expect("sm"), LEGACY_KEY_SNAPSHOT).expect("get")
    }

    #[tokio::test]
    async fn the_dispatch_hook_hears_of_each_applied_entry_that_dispatched_and_of_no_other() {
        use lexum_engine::entry::{Entry as Command, FieldWrite};
        use lexum_engine::WorkerRoom;
        const PROGRAM: &str = "effect Cloud.Resize(count: int) -> int\n\
            domain Pool { state { nodes: int = 1  want: int = 1 }\n\
            goal Sized { nodes == want }\n\
            transition Resize for Sized { slice call { emit Cloud.Resize(count: want) -> got } slice record { nodes = got } } }";
        let compiled = lexum_compiler::compile("pool.lxm", PROGRAM, &lexum_compiler::CompileOptions::default());
        let program = compiled.program.expect("the program compiles");
        let write = |want: i64| {
            Command::mutation(
                vec![FieldWrite {
                    domain: "Pool".into(),
                    field: "want".into(),
                    value: lexum_compiler::program::Value::Int(want),
                }],
                "test",
            )
        };
        let room = WorkerRoom { worker: "w1".into(), effects: vec!["Cloud.Resize".into()], room: 4 };
        let at = |index: u64, command: Command| Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::<TypeConfig>::Normal(command),
        };

        let (dir, db) = fresh_database();
        let mut sm = StateMachine::open(&db, dir.path()).expect("open");
        let heard = Arc::new(Mutex::new(Vec::new()));
        let sink = heard.clone();
        sm.on_dispatched(Box::new(move |id| sink.lock().expect("lock").push(id.index)));
        let responses = sm
            .apply([
                at(1, Command::SubmitProgram { bytes: program.encode() }),
                // Violates Sized, with room: its step is dispatched here.
                at(
                    2,
                    Command::Batch { entries: vec![write(3), Command::DispatchArmed { workers: vec![room.clone()] }] },
                ),
                // Sized is already being repaired: nothing new to dispatch.
                at(3, Command::Batch { entries: vec![write(4), Command::DispatchArmed { workers: vec![room] }] }),
                Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), 4), payload: EntryPayload::Blank },
            ])
            .await
            .expect("apply");
        let dispatched: Vec<u64> = responses.iter().filter(|r| r.dispatched).map(|r| r.index).collect();
        assert_eq!(dispatched, [2]);
        assert_eq!(*heard.lock().expect("lock"), dispatched);
    }

    #[tokio::test]
    async fn a_snapshot_that_does_not_decode_stops_the_node_and_says_where_it_is() {
        let (dir, db) = fresh_database();
        let mut sm = applied_up_to(&db, dir.path(), 3).await;
        let mut built = sm.build_snapshot().await.expect("build");
        let meta = built.meta.clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut built.snapshot, &mut data).expect("read");
        data.truncate(data.len() / 2);
        let stored = postcard::to_stdvec(&StoredSnapshot { meta, data }).expect("encode");
        SnapshotFile::open(dir.path()).expect("file").save(&stored).expect("save");
        let error = StateMachine::open(&db, dir.path()).err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(error.contains("written by another release") && error.contains(FILE), "{error}");
    }

    #[tokio::test]
    async fn a_snapshot_goes_to_its_own_file_and_not_through_the_database() {
        let (dir, db) = fresh_database();
        let mut sm = applied_up_to(&db, dir.path(), 7).await;
        let built = sm.build_snapshot().await.expect("build");
        assert_eq!(built.meta.last_log_id.map(|id| id.index), Some(7));
        assert_eq!(legacy_key(&db), None, "the snapshot was written into the database");
        assert!(SnapshotFile::open(dir.path()).expect("file").load().expect("load").is_some());
        let current = sm.get_current_snapshot().await.expect("current").expect("a snapshot");
        assert_eq!(current.meta, built.meta);

        let mut reopened = StateMachine::open(&db, dir.path()).expect("reopen");
        let (applied, _) = reopened.applied_state().await.expect("applied");
        assert_eq!(applied.map(|id| id.index), Some(7), "the engine is restored from the file");
    }

    #[tokio::test]
    async fn an_older_snapshot_does_not_replace_a_newer_one() {
        let (dir, db) = fresh_database();
        let mut newer = applied_up_to(&db, dir.path(), 9).await;
        let built = newer.build_snapshot().await.expect("build");
        let older = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), 4)),
                last_membership: built.meta.last_membership.clone(),
                snapshot_id: "older".into(),
            },
            data: Vec::new(),
        };
        assert!(!newer.save_snapshot(&older).expect("save"), "an older snapshot was saved");
        let current = newer.get_current_snapshot().await.expect("current").expect("a snapshot");
        assert_eq!(current.meta.snapshot_id, built.meta.snapshot_id);
    }

    #[tokio::test]
    async fn a_snapshot_an_earlier_release_kept_in_the_database_moves_to_the_file() {
        let (dir, db) = fresh_database();
        let built = applied_up_to(&db, dir.path(), 5).await.build_snapshot().await.expect("build");
        // Where earlier releases kept it: the database, and no file.
        let file = SnapshotFile::open(dir.path()).expect("file");
        let bytes = file.load().expect("load").expect("saved");
        std::fs::remove_file(dir.path().join("lexum-snapshot")).expect("remove the file");
        db.put_cf(db.cf_handle(CF_SM).expect("sm"), LEGACY_KEY_SNAPSHOT, &bytes).expect("put");

        let mut moved = StateMachine::open(&db, dir.path()).expect("open");
        assert_eq!(legacy_key(&db), None, "the database still holds the snapshot");
        assert_eq!(file.load().expect("load"), Some(bytes));
        let (applied, _) = moved.applied_state().await.expect("applied");
        assert_eq!(applied, built.meta.last_log_id);
    }

    #[tokio::test]
    async fn of_a_snapshot_in_the_database_and_one_in_the_file_the_newer_is_kept() {
        let (dir, db) = fresh_database();
        let file = SnapshotFile::open(dir.path()).expect("file");
        let mut sm = applied_up_to(&db, dir.path(), 5).await;
        sm.build_snapshot().await.expect("build at 5");
        let older = file.load().expect("load").expect("saved");
        let mut sm = applied_up_to(&db, dir.path(), 8).await;
        let newer = sm.build_snapshot().await.expect("build at 8");
        let newer_bytes = file.load().expect("load").expect("saved");
        let put = |bytes: &[u8]| db.put_cf(db.cf_handle(CF_SM).expect("sm"), LEGACY_KEY_SNAPSHOT, bytes).expect("put");

        // An older one in the database (a crash between move and delete):
        // the file's stands.
        put(&older);
        let (applied, _) = StateMachine::open(&db, dir.path()).expect("open").applied_state().await.expect("applied");
        assert_eq!(applied, newer.meta.last_log_id);
        assert_eq!(legacy_key(&db), None);

        // A newer one in the database (an earlier release ran again after
        // the move and snapshotted further): it replaces the file's.
        file.save(&older).expect("older file");
        put(&newer_bytes);
        let (applied, _) = StateMachine::open(&db, dir.path()).expect("open").applied_state().await.expect("applied");
        assert_eq!(applied, newer.meta.last_log_id);
        assert_eq!(file.load().expect("load"), Some(newer_bytes));
        assert_eq!(legacy_key(&db), None);
    }
}
