//! The Raft log on RocksDB (openraft storage v2 `RaftLogStorage`).
//!
//! Durability contract: `append` calls openraft's callback only after the
//! WAL is flushed and synced; `save_vote` syncs before returning;
//! `purge` persists `last_purged` before deleting entries.
//!
//! `append` writes the entries into the database (so the replication tasks
//! can read them at once; the WAL is flushed by hand, so they wait in its
//! buffer) and hands the rest to one background thread ([`WalSyncer`]),
//! which writes out and syncs the WAL once for every append queued since
//! its last sync and then completes their callbacks in order. A follower
//! awaits that callback before it acknowledges; a leader replicates
//! meanwhile and counts itself towards a quorum only when it fires (the
//! openraft patch in `vendor/openraft`).
//!
//! Reads of the newest entries, which openraft makes for every entry it
//! replicates and applies, come from memory ([`RecentEntries`]); each
//! change to the log updates both under one lock, so a read sees the two
//! agree.

use super::recent::RecentEntries;
use super::{index_key, key_index, CF_LOG, CF_META};
use crate::raft_types::{LogEntry, LogId, NodeId, StorageError, TypeConfig};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader, StorageIOError, Vote};
use prometheus::Histogram;
use rocksdb::{WriteBatch, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::Instant;

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// The Raft log of one node. Cheap to clone: clones share the database,
/// the WAL syncer and the newest entries.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    syncer: WalSyncer,
    recent: Arc<Mutex<RecentEntries>>,
}

impl LogStore {
    /// A log store over an opened database, with its sync thread started.
    pub fn new(db: Arc<DB>) -> std::io::Result<LogStore> {
        let syncer = WalSyncer::start(&db)?;
        Ok(LogStore { db, syncer, recent: Arc::default() })
    }

    /// Makes sure node `id` starts as a follower, never as the leader it
    /// may have been when it stopped: a vote of its own that is committed
    /// (it led that term) is saved again as not committed.
    ///
    /// A leader sends its entries while its own append is still being
    /// synced, and they may commit on the followers' syncs alone (the
    /// openraft patch), so a crash can take entries from the leader's log
    /// that the followers hold. openraft 0.9 starts a node whose saved vote
    /// says it leads as leader of that term at once, and it would then
    /// propose new entries under the log ids of the lost ones, which the
    /// followers take as entries they already have: two logs that differ
    /// at an index they agree on. Its committed marker, which is not
    /// synced, may also be older than what it acknowledged, so its first
    /// reads would be stale. Without leadership it waits for a new term's
    /// election, whose leader holds every committed entry and proposes
    /// under new log ids. Only the committed flag of the node's own vote
    /// changes, so it judges other nodes' vote requests as before.
    pub fn resign_leadership(&self, id: NodeId) -> Result<(), StorageError> {
        let vote: Option<Vote<NodeId>> = self.get_meta(KEY_VOTE).map_err(|e| StorageIOError::read_vote(&e))?;
        let Some(vote) = vote.filter(|v| v.is_committed() && v.leader_id().voted_for() == Some(id)) else {
            return Ok(());
        };
        let resigned = Vote { committed: false, ..vote };
        self.put_meta(KEY_VOTE, &resigned, true).map_err(|e| StorageIOError::write_vote(&e).into())
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, RecentEntries> {
        self.recent.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cf_log(&self) -> &rocksdb::ColumnFamily {
        // The column families are created in `open_db`; their absence is a bug.
        self.db.cf_handle(CF_LOG).expect("column family `log` exists")
    }

    fn cf_meta(&self) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(CF_META).expect("column family `meta` exists")
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageIOError<NodeId>> {
        let bytes = self.db.get_cf(self.cf_meta(), key).map_err(|e| StorageIOError::read(&e))?;
        bytes.map(|b| postcard::from_bytes(&b).map_err(|e| StorageIOError::read(&e))).transpose()
    }

    fn put_meta<T: Serialize>(&self, key: &[u8], value: &T, sync: bool) -> Result<(), StorageIOError<NodeId>> {
        let bytes = postcard::to_stdvec(value).map_err(|e| StorageIOError::write(&e))?;
        self.db.put_cf(self.cf_meta(), key, bytes).map_err(|e| StorageIOError::write(&e))?;
        if sync {
            self.db.flush_wal(true).map_err(|e| StorageIOError::write(&e))?;
        }
        Ok(())
    }

    fn last_log_id_in_log(&self) -> Result<Option<LogId>, StorageIOError<NodeId>> {
        let mut iter = self.db.iterator_cf(self.cf_log(), rocksdb::IteratorMode::End);
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (_, value) = item.map_err(|e| StorageIOError::read_logs(&e))?;
                let entry: LogEntry = postcard::from_bytes(&value).map_err(|e| StorageIOError::read_logs(&e))?;
                Ok(Some(entry.log_id))
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<LogEntry>, StorageError> {
        let start = match range.start_bound() {
            std::ops::Bound::Included(i) => *i,
            std::ops::Bound::Excluded(i) => i + 1,
            std::ops::Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            std::ops::Bound::Included(i) => Some(i.saturating_add(1)),
            std::ops::Bound::Excluded(i) => Some(*i),
            std::ops::Bound::Unbounded => None,
        };
        if let Some(entries) = self.recent().get(start, end) {
            return Ok(entries);
        }
        let mode = rocksdb::IteratorMode::From(&index_key(start), rocksdb::Direction::Forward);
        let mut entries = Vec::new();
        for item in self.db.iterator_cf(self.cf_log(), mode) {
            let (key, value) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            let Some(index) = key_index(&key) else { continue };
            if !range.contains(&index) {
                break;
            }
            let entry: LogEntry = postcard::from_bytes(&value).map_err(|e| StorageIOError::read_logs(&e))?;
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.get_meta(KEY_LAST_PURGED)?;
        let last_log_id = self.last_log_id_in_log()?.or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.put_meta(KEY_VOTE, vote, true).map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(KEY_VOTE).map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        Ok(self.put_meta(KEY_COMMITTED, &committed, false)?)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = LogEntry> + Send,
        I::IntoIter: Send,
    {
        let mut batch = WriteBatch::default();
        let mut appended = Vec::new();
        for entry in entries {
            let bytes = postcard::to_stdvec(&entry).map_err(|e| StorageIOError::write_log_entry(entry.log_id, &e))?;
            batch.put_cf(self.cf_log(), index_key(entry.log_id.index), &bytes);
            appended.push((entry, bytes.len()));
        }
        let mut recent = self.recent();
        self.db.write(batch).map_err(|e| StorageIOError::write_logs(&e))?;
        for (entry, bytes) in appended {
            recent.append(entry, bytes);
        }
        drop(recent);
        // The callback promises durability: it fires after the next sync.
        self.syncer.after_next_sync(callback);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let from = index_key(log_id.index);
        let to = index_key(u64::MAX);
        let mut recent = self.recent();
        // Dropped first: if a delete fails, a read goes to the database.
        recent.truncate(log_id.index);
        self.db.delete_range_cf(self.cf_log(), from, to).map_err(|e| StorageIOError::write_logs(&e))?;
        self.db.delete_cf(self.cf_log(), to).map_err(|e| StorageIOError::write_logs(&e))?;
        drop(recent);
        self.db.flush_wal(true).map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point before deleting, so a crash in between never
        // leaves a log that starts after an unrecorded gap.
        self.put_meta(KEY_LAST_PURGED, &log_id, true)?;
        let mut recent = self.recent();
        recent.purge(log_id.index);
        self.db
            .delete_range_cf(self.cf_log(), index_key(0), index_key(log_id.index + 1))
            .map_err(|e| StorageIOError::write_logs(&e))?;
        drop(recent);
        Ok(())
    }
}

/// One thread that writes out and syncs the WAL for every append queued
/// since its last sync, then completes their callbacks in the order they
/// were queued.
///
/// The thread holds the database weakly, so it never keeps the database
/// open after the node lets go of it; it ends when every [`LogStore`] clone
/// (the senders) is gone.
#[derive(Clone)]
struct WalSyncer {
    queue: mpsc::Sender<LogFlushed<TypeConfig>>,
    holds: Arc<SyncHolds>,
    timings: Arc<OnceLock<Histogram>>,
}

/// How many [`SyncHold`]s are alive; the sync thread waits while any is.
#[derive(Default)]
struct SyncHolds {
    count: Mutex<usize>,
    released: Condvar,
}

impl SyncHolds {
    fn wait_until_released(&self) {
        let count = self.count.lock().unwrap_or_else(|p| p.into_inner());
        drop(self.released.wait_while(count, |count| *count > 0).unwrap_or_else(|p| p.into_inner()));
    }

    fn change(&self, by: isize) {
        let mut count = self.count.lock().unwrap_or_else(|p| p.into_inner());
        *count = count.saturating_add_signed(by);
        self.released.notify_all();
    }
}

/// While alive, appends stay written but unsynced and their callbacks wait
/// (see [`LogStore::hold_syncs`]).
pub struct SyncHold {
    holds: Arc<SyncHolds>,
}

impl Drop for SyncHold {
    fn drop(&mut self) {
        self.holds.change(-1);
    }
}

impl LogStore {
    /// Records how long each WAL sync takes from now on in `histogram`
    /// (the node's `lexum_wal_sync_seconds`). Only the first call counts.
    pub fn time_syncs_into(&self, histogram: Histogram) {
        let _ = self.syncer.timings.set(histogram);
    }

    /// Holds back every append's sync, and so its callback, until the
    /// returned guard is dropped. For tests of what a cluster does while a
    /// node's log is written but not yet durable (a slow disk).
    pub fn hold_syncs(&self) -> SyncHold {
        self.syncer.holds.change(1);
        SyncHold { holds: self.syncer.holds.clone() }
    }
}

impl WalSyncer {
    fn start(db: &Arc<DB>) -> std::io::Result<WalSyncer> {
        let (queue, pending) = mpsc::channel();
        let holds = Arc::new(SyncHolds::default());
        let db = Arc::downgrade(db);
        let thread_holds = holds.clone();
        let timings = Arc::new(OnceLock::new());
        let thread_timings = timings.clone();
        std::thread::Builder::new()
            .name("lexum-wal-sync".into())
            .spawn(move || sync_loop(&db, &pending, &thread_holds, &thread_timings))?;
        Ok(WalSyncer { queue, holds, timings })
    }

    /// Completes `callback` after a sync that covers every write made so far.
    fn after_next_sync(&self, callback: LogFlushed<TypeConfig>) {
        if let Err(mpsc::SendError(callback)) = self.queue.send(callback) {
            callback.log_io_completed(Err(std::io::Error::other("the WAL sync thread is gone")));
        }
    }
}

fn sync_loop(
    db: &Weak<DB>,
    pending: &mpsc::Receiver<LogFlushed<TypeConfig>>,
    holds: &SyncHolds,
    timings: &OnceLock<Histogram>,
) {
    while let Ok(first) = pending.recv() {
        holds.wait_until_released();
        // Everything queued now was written into the WAL buffer before it
        // was queued, so one flush and sync after draining the queue covers
        // all of it.
        let mut batch = vec![first];
        batch.extend(pending.try_iter());
        let started = Instant::now();
        let synced = match db.upgrade() {
            Some(db) => db.flush_wal(true).map_err(|e| e.to_string()),
            None => Err("the database is closed".to_string()),
        };
        if let Some(histogram) = timings.get() {
            histogram.observe(started.elapsed().as_secs_f64());
        }
        for callback in batch {
            callback.log_io_completed(synced.clone().map_err(std::io::Error::other));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn vote_after_resigning(saved: Vote<NodeId>, id: NodeId) -> Option<Vote<NodeId>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = LogStore::new(crate::store::open_db(dir.path()).expect("open")).expect("store");
        store.save_vote(&saved).await.expect("save the vote");
        store.resign_leadership(id).expect("resign");
        store.read_vote().await.expect("read the vote")
    }

    #[tokio::test]
    async fn a_node_that_led_keeps_its_vote_but_not_its_leadership() {
        let led = Vote::new_committed(4, 1);
        assert_eq!(vote_after_resigning(led, 1).await, Some(Vote::new(4, 1)));
        assert!(Vote::new(4, 1) < led, "the vote is lower only against its own committed form");
        assert!(Vote::new(4, 1) > Vote::new_committed(4, 0), "and orders as before against other leaders");
    }

    #[tokio::test]
    async fn other_votes_are_left_as_they_are() {
        let followed = Vote::new_committed(4, 2);
        assert_eq!(vote_after_resigning(followed, 1).await, Some(followed));
        let candidate = Vote::new(5, 1);
        assert_eq!(vote_after_resigning(candidate, 1).await, Some(candidate));
    }
}
