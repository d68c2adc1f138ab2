//! The latest snapshot as a file of its own beside the database, written
//! the way etcd writes its snapshots: to a temporary file that is synced,
//! renamed over the old one, and made durable by syncing the directory.
//!
//! A snapshot is megabytes for a large fleet. Kept out of RocksDB, it does
//! not pass through the write-ahead log, so the sync that commits the next
//! Raft entries never carries it, and no memtable holds it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The snapshot's file name inside the node's data directory (a name
/// RocksDB does not use for any file of its own).
pub(crate) const FILE: &str = "lexum-snapshot";
/// Where a snapshot is written before it replaces [`FILE`].
const PARTIAL: &str = "lexum-snapshot.partial";

/// The snapshot file of one data directory.
#[derive(Clone, Debug)]
pub struct SnapshotFile {
    dir: PathBuf,
}

impl SnapshotFile {
    /// The snapshot file in `dir`, which must exist. A partial file left by
    /// a crash during a save is removed: the previous snapshot stands.
    pub fn open(dir: &Path) -> std::io::Result<SnapshotFile> {
        match std::fs::remove_file(dir.join(PARTIAL)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        Ok(SnapshotFile { dir: dir.to_path_buf() })
    }

    /// The bytes of the current snapshot, or `None` before the first save.
    pub fn load(&self) -> std::io::Result<Option<Vec<u8>>> {
        let mut file = match File::open(self.dir.join(FILE)) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(Some(bytes))
    }

    /// Replaces the current snapshot with `bytes`, durably: when this
    /// returns, a crash leaves `bytes`; a crash before it returns leaves
    /// either `bytes` or the previous snapshot, never a mix.
    pub fn save(&self, bytes: &[u8]) -> std::io::Result<()> {
        let partial = self.dir.join(PARTIAL);
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&partial)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&partial, self.dir.join(FILE))?;
        File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_snapshot_replaces_the_last_and_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = SnapshotFile::open(dir.path()).expect("open");
        assert_eq!(file.load().expect("load"), None);
        file.save(b"first").expect("save");
        file.save(b"second, longer").expect("save");
        let reopened = SnapshotFile::open(dir.path()).expect("reopen");
        assert_eq!(reopened.load().expect("load").as_deref(), Some(b"second, longer".as_slice()));
        assert!(!dir.path().join(PARTIAL).exists());
    }

    #[test]
    fn a_partial_file_from_a_crash_is_removed_and_the_previous_snapshot_stands() {
        let dir = tempfile::tempdir().expect("temp dir");
        SnapshotFile::open(dir.path()).expect("open").save(b"whole").expect("save");
        std::fs::write(dir.path().join(PARTIAL), b"half of a newer sn").expect("partial");
        let file = SnapshotFile::open(dir.path()).expect("reopen");
        assert!(!dir.path().join(PARTIAL).exists());
        assert_eq!(file.load().expect("load").as_deref(), Some(b"whole".as_slice()));
    }
}
