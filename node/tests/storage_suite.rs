//! openraft's storage conformance suite (`openraft::testing::Suite`) run
//! against Lexum's RocksDB log store and state machine: votes, log reads,
//! purge, truncation, membership recovery, apply and snapshot transfer.

use lexum_node::raft_types::TypeConfig;
use lexum_node::store::log_store::LogStore;
use lexum_node::store::state_machine::StateMachine;
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

/// A fresh store in its own temporary directory (kept alive by the guard).
struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir()
            .map_err(|e| StorageError::from_io_error(openraft::ErrorSubject::Store, openraft::ErrorVerb::Write, e))?;
        let (log, sm) = lexum_node::store::open(dir.path(), 0).await.map_err(|e| {
            StorageError::from_io_error(
                openraft::ErrorSubject::Store,
                openraft::ErrorVerb::Read,
                std::io::Error::other(e.to_string()),
            )
        })?;
        Ok((dir, log, sm))
    }
}

#[test]
fn rocksdb_store_passes_the_openraft_storage_suite() {
    if let Err(error) = Suite::test_all(RocksBuilder) {
        panic!("storage suite failed: {error}");
    }
}
