//! The running state hash (SPEC §3.6): a blake3 chain over every applied
//! entry, its outcome and its events, identical on every replica.

use crate::{Entry, Event, Rejection};

/// Extends the chain: `blake3(prev ‖ index ‖ entry ‖ outcome ‖ events)`.
pub(crate) fn chain(
    prev: &[u8; 32],
    index: u64,
    entry: &Entry,
    outcome: &Result<(), Rejection>,
    events: &[Event],
) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(prev);
    hasher.update(&index.to_le_bytes());
    hasher.update(&postcard::to_stdvec(entry).unwrap_or_default());
    match outcome {
        Ok(()) => hasher.update(b"ok"),
        Err(r) => hasher.update(r.code.as_bytes()),
    };
    hasher.update(&(events.len() as u64).to_le_bytes());
    for e in events {
        hasher.update(&postcard::to_stdvec(e).unwrap_or_default());
    }
    *hasher.finalize().as_bytes()
}
