//! Durable storage on RocksDB: the Raft log ([`log_store`]) and the state
//! machine with its snapshots ([`state_machine`]).
//!
//! One database per node, three column families: `log` (entries by index,
//! big-endian keys so iteration is in log order), `meta` (vote, committed,
//! last purged) and `sm` (the latest snapshot).

pub mod log_store;
pub mod state_machine;

use anyhow::Context;
use rocksdb::{ColumnFamilyDescriptor, Options, DB};
use std::path::Path;
use std::sync::Arc;

/// Column family of log entries.
pub(crate) const CF_LOG: &str = "log";
/// Column family of vote, committed and purge markers.
pub(crate) const CF_META: &str = "meta";
/// Column family of the state machine snapshot.
pub(crate) const CF_SM: &str = "sm";

/// Opens (creating if needed) the node's database under `dir`.
pub fn open_db(dir: &Path) -> Result<Arc<DB>, rocksdb::Error> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    let cfs = [CF_LOG, CF_META, CF_SM].map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    DB::open_cf_descriptors(&opts, dir, cfs).map(Arc::new)
}

/// Opens the log store and the state machine over one database.
pub async fn open(dir: &Path) -> anyhow::Result<(log_store::LogStore, state_machine::StateMachine)> {
    let db = open_db(dir)?;
    let log = log_store::LogStore::new(db.clone()).context("starting the WAL sync thread")?;
    let sm = state_machine::StateMachine::open(db)?;
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
