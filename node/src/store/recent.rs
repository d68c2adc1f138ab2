//! The newest log entries, kept in memory as they are appended.
//!
//! openraft reads back what was just appended, on every node and for every
//! entry: the leader's replication tasks to send it to each follower, and
//! every Raft core to hand it to the state machine. From RocksDB that is a
//! seek and a decode per entry, on the Raft core's own task when it applies.
//! [`RecentEntries`] answers those reads from memory.
//!
//! Invariant: the entries held are consecutive and end at the log's last
//! entry. Every append, truncation and purge of the log store passes
//! through here after RocksDB, so an append that does not follow the last
//! entry held (a follower overwriting a conflicting suffix) drops what
//! it replaces, and a node that restarts starts empty. A read that is not
//! wholly inside what is held goes to RocksDB.

use crate::raft_types::LogEntry;
use std::collections::VecDeque;

/// Most entries held.
const MAX_ENTRIES: usize = 4096;
/// Most encoded bytes held (a submitted program or a large creation of
/// instances makes a large entry).
const MAX_BYTES: usize = 16 * 1024 * 1024;

/// The newest entries of the log, with their encoded sizes.
#[derive(Debug, Default)]
pub struct RecentEntries {
    entries: VecDeque<(LogEntry, usize)>,
    bytes: usize,
}

impl RecentEntries {
    /// Records `entry` (of `bytes` encoded bytes) as the log's new last entry.
    pub fn append(&mut self, entry: LogEntry, bytes: usize) {
        let index = entry.log_id.index;
        match self.last_index() {
            Some(last) if index <= last => self.truncate(index),
            Some(last) if index != last + 1 => self.clear(),
            _ => {}
        }
        self.bytes += bytes;
        self.entries.push_back((entry, bytes));
        while self.entries.len() > MAX_ENTRIES || (self.bytes > MAX_BYTES && self.entries.len() > 1) {
            self.pop_front();
        }
    }

    /// Drops the entries from `index` on (the log was truncated there).
    pub fn truncate(&mut self, index: u64) {
        while self.last_index().is_some_and(|last| last >= index) {
            if let Some((_, bytes)) = self.entries.pop_back() {
                self.bytes -= bytes;
            }
        }
    }

    /// Drops the entries up to and including `index` (the log was purged).
    pub fn purge(&mut self, index: u64) {
        while self.entries.front().is_some_and(|(e, _)| e.log_id.index <= index) {
            self.pop_front();
        }
    }

    /// The entries from `start` up to, not including, `end` (`None`: to the
    /// last), when every one of them that the log has is held here.
    pub fn get(&self, start: u64, end: Option<u64>) -> Option<Vec<LogEntry>> {
        let first = self.entries.front()?.0.log_id.index;
        if start < first {
            return None;
        }
        let skip = usize::try_from(start - first).ok()?;
        let wanted = end.map_or(usize::MAX, |end| usize::try_from(end.saturating_sub(start)).unwrap_or(usize::MAX));
        Some(self.entries.iter().skip(skip).take(wanted).map(|(e, _)| e.clone()).collect())
    }

    fn last_index(&self) -> Option<u64> {
        self.entries.back().map(|(e, _)| e.log_id.index)
    }

    fn pop_front(&mut self) {
        if let Some((_, bytes)) = self.entries.pop_front() {
            self.bytes -= bytes;
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    fn entry(term: u64, index: u64) -> LogEntry {
        LogEntry { log_id: LogId::new(CommittedLeaderId::new(term, 1), index), payload: EntryPayload::Blank }
    }

    fn ids(entries: Option<Vec<LogEntry>>) -> Option<Vec<(u64, u64)>> {
        entries.map(|es| es.iter().map(|e| (e.log_id.leader_id.term, e.log_id.index)).collect())
    }

    fn held(from: u64, to: u64) -> RecentEntries {
        let mut recent = RecentEntries::default();
        for index in from..=to {
            recent.append(entry(1, index), 10);
        }
        recent
    }

    #[test]
    fn reads_inside_what_is_held_are_answered_and_others_go_to_the_database() {
        let recent = held(5, 9);
        assert_eq!(ids(recent.get(6, Some(8))), Some(vec![(1, 6), (1, 7)]));
        assert_eq!(ids(recent.get(5, None)), Some((5..=9).map(|i| (1, i)).collect()));
        assert_eq!(ids(recent.get(8, Some(100))), Some(vec![(1, 8), (1, 9)]), "the log ends at 9");
        assert_eq!(ids(recent.get(10, None)), Some(vec![]), "nothing after the last entry");
        assert_eq!(recent.get(4, Some(6)), None, "4 is not held");
        assert_eq!(RecentEntries::default().get(1, None), None);
    }

    #[test]
    fn an_append_over_held_entries_replaces_them_and_one_after_a_gap_starts_afresh() {
        let mut recent = held(5, 9);
        recent.append(entry(2, 7), 10);
        assert_eq!(ids(recent.get(5, None)), Some(vec![(1, 5), (1, 6), (2, 7)]));
        recent.append(entry(2, 12), 10);
        assert_eq!(recent.get(5, None), None);
        assert_eq!(ids(recent.get(12, None)), Some(vec![(2, 12)]));
    }

    #[test]
    fn truncation_and_purge_drop_their_entries() {
        let mut recent = held(5, 9);
        recent.truncate(8);
        assert_eq!(ids(recent.get(5, None)), Some(vec![(1, 5), (1, 6), (1, 7)]));
        recent.purge(6);
        assert_eq!(recent.get(5, None), None);
        assert_eq!(ids(recent.get(7, None)), Some(vec![(1, 7)]));
        recent.purge(20);
        assert_eq!(recent.get(7, None), None);
        assert_eq!(recent.bytes, 0);
    }

    #[test]
    fn the_oldest_entries_go_first_past_the_limits() {
        let mut recent = held(1, MAX_ENTRIES as u64 + 3);
        assert_eq!(recent.entries.len(), MAX_ENTRIES);
        assert_eq!(recent.get(3, Some(4)), None);
        assert_eq!(ids(recent.get(4, Some(5))), Some(vec![(1, 4)]));
        recent.append(entry(1, MAX_ENTRIES as u64 + 4), MAX_BYTES);
        assert_eq!(ids(recent.get(MAX_ENTRIES as u64 + 4, None)), Some(vec![(1, MAX_ENTRIES as u64 + 4)]));
        assert_eq!(recent.entries.len(), 1, "one entry larger than the budget is still held alone");
    }
}
