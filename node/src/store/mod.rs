//! Durable storage: the Raft log on RocksDB ([`log_store`], with its newest
//! entries also in memory, [`recent`]) and the state
//! machine ([`state_machine`]) with its latest snapshot in a file of its
//! own beside the database ([`snapshot_file`]).
//!
//! One database per node, three column families: `log` (entries by index,
//! big-endian keys so iteration is in log order), `meta` (vote, committed,
//! last purged) and `sm` (empty: earlier releases kept the snapshot there,
//! and opening moves it to the snapshot file).
//!
//! The write-ahead log is recycled: RocksDB reuses an old WAL file by
//! overwriting it, and a sync of a write that lands on blocks the file
//! already has need not update the inode (on ext4 that is a journal commit
//! per sync). [`open_db`] leaves the database writing into such a file from
//! the start. It is also flushed by hand: writes wait in RocksDB's buffer
//! until the next sync writes the WAL and syncs it.

// The helpers of both return openraft's `StorageIOError` by value, as its
// storage traits do; boxing it there would only move the allocation.
#[allow(clippy::result_large_err)]
pub mod log_store;
pub mod recent;
pub mod snapshot_file;
#[allow(clippy::result_large_err)]
pub mod state_machine;

use crate::raft_types::NodeId;
use anyhow::Context;
use rocksdb::{ColumnFamilyDescriptor, FlushOptions, Options, WriteBatch, DB};
use std::path::Path;
use std::sync::Arc;

/// Column family of log entries.
pub(crate) const CF_LOG: &str = "log";
/// Column family of vote, committed and purge markers.
pub(crate) const CF_META: &str = "meta";
/// Column family where earlier releases kept the state machine snapshot.
pub(crate) const CF_SM: &str = "sm";

/// Opens (creating if needed) the node's database under `dir`.
pub fn open_db(dir: &Path) -> Result<Arc<DB>, rocksdb::Error> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts.set_recycle_log_file_num(RECYCLED_WALS);
    // A WAL can be reused only when no column family still needs it. `meta`
    // is written into every WAL but fills its memtable slowly; flushing it
    // with `log` frees each WAL as soon as `log` moves on.
    opts.set_atomic_flush(true);
    // Writes stay in RocksDB's WAL buffer until the WAL sync thread (or a
    // synced meta write) writes and syncs them in one go, so neither an
    // append on the Raft core's task nor a committed marker costs a write
    // system call of its own. Nothing unsynced is ever promised durable.
    opts.set_manual_wal_flush(true);
    let mut log_opts = Options::default();
    log_opts.set_write_buffer_size(WAL_BYTES);
    let cfs = [
        ColumnFamilyDescriptor::new(CF_LOG, log_opts),
        ColumnFamilyDescriptor::new(CF_META, Options::default()),
        ColumnFamilyDescriptor::new(CF_SM, Options::default()),
    ];
    let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
    start_in_a_recycled_wal(&db)?;
    Ok(Arc::new(db))
}

/// Old WAL files RocksDB keeps to overwrite instead of deleting them.
const RECYCLED_WALS: usize = 4;

/// Bytes of log entries per memtable: a WAL file is switched (and the old
/// one recycled) about this often, so this is also a recycled file's length.
const WAL_BYTES: usize = 16 << 20;

/// Keys of the filler written by [`start_in_a_recycled_wal`], in `meta`.
const FILLER_KEYS: std::ops::Range<&[u8]> = b"wal-filler/".as_slice()..b"wal-filler0".as_slice();

/// Makes the current WAL a recycled file of [`WAL_BYTES`], so that syncs
/// overwrite allocated blocks from the first write on, rather than only
/// after the first memtable's worth of traffic.
///
/// Writes [`WAL_BYTES`] of filler and flushes every column family: that WAL
/// is now obsolete and kept for reuse. Then the filler is deleted and the
/// column families flushed again, which switches to a new WAL: the recycled
/// one. About 25 ms on a fresh database.
fn start_in_a_recycled_wal(db: &DB) -> Result<(), rocksdb::Error> {
    // The column families are created in `open_db`; their absence is a bug.
    let meta = db.cf_handle(CF_META).expect("column family `meta` exists");
    let chunk = vec![0u8; 1 << 20];
    let mut batch = WriteBatch::default();
    for i in 0..WAL_BYTES / chunk.len() {
        let mut key = FILLER_KEYS.start.to_vec();
        key.extend_from_slice(&(i as u64).to_be_bytes());
        batch.put_cf(meta, key, &chunk);
    }
    db.write(batch)?;
    flush_all(db)?;
    db.delete_range_cf(meta, FILLER_KEYS.start, FILLER_KEYS.end)?;
    flush_all(db)
}

/// Flushes every column family's memtable and waits for it.
fn flush_all(db: &DB) -> Result<(), rocksdb::Error> {
    let cfs: Vec<_> = [CF_LOG, CF_META, CF_SM].iter().filter_map(|name| db.cf_handle(name)).collect();
    let mut wait = FlushOptions::default();
    wait.set_wait(true);
    db.flush_cfs_opt(&cfs, &wait)
}

/// Opens node `id`'s log store and state machine over one database. The
/// node will start as a follower even if it led when it stopped
/// ([`log_store::LogStore::resign_leadership`]).
pub async fn open(dir: &Path, id: NodeId) -> anyhow::Result<(log_store::LogStore, state_machine::StateMachine)> {
    let db = open_db(dir)?;
    let log = log_store::LogStore::new(db.clone()).context("starting the WAL sync thread")?;
    log.resign_leadership(id).context("saving the vote as a follower's")?;
    let sm = state_machine::StateMachine::open(&db, dir)?;
    Ok((log, sm))
}

/// Big-endian key of a log index, so RocksDB's byte order is log order.
pub(crate) fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// Inverse of [`index_key`].
pub(crate) fn key_index(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The WAL files in `dir`, by number (RocksDB names them `<number>.log`).
    fn wal_lengths(dir: &Path) -> Vec<(u64, u64)> {
        let mut wals: Vec<(u64, u64)> = std::fs::read_dir(dir)
            .expect("read the database directory")
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let number = entry.file_name().to_str()?.strip_suffix(".log")?.parse().ok()?;
                Some((number, entry.metadata().ok()?.len()))
            })
            .collect();
        wals.sort();
        wals
    }

    #[test]
    fn a_database_writes_into_a_recycled_wal_from_its_first_write() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open_db(dir.path()).expect("open");
        let wals = wal_lengths(dir.path());
        let (_, current) = wals.last().copied().expect("a WAL file");
        assert!(current >= WAL_BYTES as u64, "the current WAL is a new file, not a recycled one: {wals:?}");
        assert!(wals.len() <= RECYCLED_WALS + 1, "more WAL files than the recycled ones and the current: {wals:?}");
        drop(db);
    }

    /// The newest WAL file's number.
    fn current_wal(dir: &Path) -> u64 {
        wal_lengths(dir).last().map(|(number, _)| *number).expect("a WAL file")
    }

    #[test]
    fn a_wal_is_freed_for_reuse_once_the_log_is_flushed_even_with_meta_writes_in_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open_db(dir.path()).expect("open");
        let (log, meta) = (db.cf_handle(CF_LOG).expect("log"), db.cf_handle(CF_META).expect("meta"));
        let first = current_wal(dir.path());
        // Three memtables' worth of entries, each batch followed by a
        // committed marker in `meta`, as a running node writes them.
        let entry = vec![7u8; 4096];
        let batches = 3 * WAL_BYTES / (entry.len() * 16);
        for b in 0..batches {
            let mut batch = WriteBatch::default();
            for i in 0..16 {
                batch.put_cf(log, index_key((b * 16 + i) as u64), &entry);
            }
            db.write(batch).expect("append");
            db.put_cf(meta, b"committed", (b as u64).to_be_bytes()).expect("committed");
            db.flush_wal(true).expect("sync");
        }
        let current = current_wal(dir.path());
        assert!(current > first, "three memtables of entries switched no WAL");
        // The last switch's flush runs in the background: give it 5 s.
        let min_kept = || db.property_int_value("rocksdb.min-log-number-to-keep").expect("property").expect("a number");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while min_kept() < current && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(
            min_kept(),
            current,
            "older WALs are still needed, so none is recycled: {:?}",
            wal_lengths(dir.path())
        );
    }

    #[test]
    fn the_filler_is_gone_and_log_entries_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open_db(dir.path()).expect("open");
        let log = db.cf_handle(CF_LOG).expect("log");
        for index in 0..100u64 {
            db.put_cf(log, index_key(index), index.to_le_bytes()).expect("put");
        }
        db.flush_wal(true).expect("sync");
        drop(db);

        let db = open_db(dir.path()).expect("reopen");
        let log = db.cf_handle(CF_LOG).expect("log");
        let meta = db.cf_handle(CF_META).expect("meta");
        for index in 0..100u64 {
            let value = db.get_cf(log, index_key(index)).expect("get");
            assert_eq!(value.as_deref(), Some(index.to_le_bytes().as_slice()), "entry {index}");
        }
        let filler = db.iterator_cf(meta, rocksdb::IteratorMode::Start).filter_map(Result::ok).count();
        assert_eq!(filler, 0, "meta holds filler keys after a reopen");
        let wals = wal_lengths(dir.path());
        assert!(wals.len() <= RECYCLED_WALS + 1, "recycled WALs pile up across opens: {wals:?}");
    }
}
