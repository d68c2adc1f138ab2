//! A linearizability checker for registers (one per key): the search of
//! Wing and Gong with Lowe's memoization of `(linearized set, value)`. The
//! set is remembered by a 128-bit Zobrist hash, updated in O(1) per step, so
//! long histories cost 24 bytes per state visited.
//!
//! A history is the operations clients invoked, each with the time it was
//! invoked and the time its answer arrived. A write whose answer never came
//! (a timeout, a dropped connection) may or may not have taken effect: it
//! has no completion time and the checker may place it anywhere after its
//! invocation, or nowhere. Reads without an answer tell nothing and are left
//! out by the caller; so are operations refused before they reached the log.

use std::collections::HashSet;

/// What an operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Set the register to this value.
    Write(i64),
    /// Read this value.
    Read(i64),
}

/// One operation on one register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// What it did.
    pub kind: OpKind,
    /// When it was invoked (any monotonic unit, shared by all clients).
    pub invoke: u64,
    /// When its answer arrived; `None` for a write of unknown outcome.
    pub complete: Option<u64>,
}

/// Why a history is not linearizable (or could not be decided).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// No order of the operations respects real time and register semantics.
    #[error("not linearizable: no order explains these {ops} operations (a read the writes before it cannot give)")]
    NotLinearizable {
        /// Operations checked.
        ops: usize,
    },
    /// A read without a completion time was passed in.
    #[error("a read without an answer cannot be checked; leave it out")]
    UnansweredRead,
    /// The search visited more states than allowed.
    #[error("undecided after {0} search states")]
    TooLarge(usize),
    /// The search thread could not start or panicked.
    #[error("the search thread could not run")]
    NoThread,
}

/// Most search states visited before giving up.
const MAX_STATES: usize = 20_000_000;

/// Checks one register that starts at `initial`.
pub fn check_register(initial: i64, ops: &[Op]) -> Result<(), Violation> {
    if ops.iter().any(|op| matches!(op.kind, OpKind::Read(_)) && op.complete.is_none()) {
        return Err(Violation::UnansweredRead);
    }
    // A write of unknown outcome whose value nobody read can always be left
    // out: nothing after it in any order reads its value, so dropping it
    // keeps every read explained. Dropping them keeps the search small.
    let read_values: HashSet<i64> = ops
        .iter()
        .filter_map(|op| match op.kind {
            OpKind::Read(v) => Some(v),
            OpKind::Write(_) => None,
        })
        .collect();
    let mut ops: Vec<Op> = ops
        .iter()
        .copied()
        .filter(|op| match op.kind {
            OpKind::Write(v) => op.complete.is_some() || read_values.contains(&v),
            OpKind::Read(_) => true,
        })
        .collect();
    ops.sort_by_key(|op| op.invoke);
    let required = ops.iter().filter(|op| op.complete.is_some()).count();
    // The search recurses once per operation placed: give it a stack sized
    // to the history.
    let stack = (1 << 20) + ops.len() * 512;
    let found = std::thread::scope(|scope| {
        let search = std::thread::Builder::new().stack_size(stack).spawn_scoped(scope, || {
            let mut search = Search { ops: &ops, zobrist: zobrist_keys(ops.len()), seen: HashSet::new() };
            let mut done = vec![0u64; ops.len().div_ceil(64)];
            search.run(&mut done, 0, initial, required)
        });
        search.ok().and_then(|handle| handle.join().ok())
    });
    match found {
        Some(Some(true)) => Ok(()),
        Some(Some(false)) => Err(Violation::NotLinearizable { ops: ops.len() }),
        Some(None) => Err(Violation::TooLarge(MAX_STATES)),
        None => Err(Violation::NoThread),
    }
}

/// The evidence of a violation: the first read no order explains, and the
/// writes around it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Witness {
    /// The read that ends the shortest history prefix that is not
    /// linearizable.
    pub read: Op,
    /// The write of the value it read (`None` for the initial value or a
    /// value nobody wrote).
    pub source: Option<Op>,
    /// The last writes acknowledged before the read was invoked (at most
    /// three, oldest first).
    pub before: Vec<Op>,
    /// Writes whose span overlaps the read's.
    pub concurrent: Vec<Op>,
}

/// Finds the earliest read that makes the history not linearizable: the
/// shortest prefix (writes invoked and reads answered by some time) that
/// fails ends with it. A prefix is a history of its own, and once one fails
/// every longer one does, so a binary search over the reads' answer times
/// finds it. `None` when the whole history is linearizable or undecided.
pub fn first_unexplained_read(initial: i64, ops: &[Op]) -> Option<Witness> {
    let mut reads: Vec<Op> = ops.iter().copied().filter(|op| matches!(op.kind, OpKind::Read(_))).collect();
    reads.sort_by_key(|op| op.complete);
    let prefix = |t: u64| -> Vec<Op> {
        ops.iter()
            .copied()
            .filter(|op| match op.kind {
                OpKind::Write(_) => op.invoke <= t,
                OpKind::Read(_) => op.complete.is_some_and(|c| c <= t),
            })
            .collect()
    };
    let fails = |read: &Op| {
        let t = read.complete.unwrap_or(u64::MAX);
        matches!(check_register(initial, &prefix(t)), Err(Violation::NotLinearizable { .. }))
    };
    // The first read whose prefix fails, if the whole history fails.
    let first = reads.partition_point(|read| !fails(read));
    let read = *reads.get(first)?;
    let writes = || ops.iter().copied().filter(|op| matches!(op.kind, OpKind::Write(_)));
    let source = match read.kind {
        OpKind::Read(v) => writes().find(|w| w.kind == OpKind::Write(v)),
        OpKind::Write(_) => None,
    };
    let mut before: Vec<Op> = writes().filter(|w| w.complete.is_some_and(|c| c < read.invoke)).collect();
    before.sort_by_key(|w| w.complete);
    let before = before.split_off(before.len().saturating_sub(3));
    let ends = read.complete.unwrap_or(u64::MAX);
    let concurrent = writes().filter(|w| w.invoke <= ends && w.complete.is_none_or(|c| c >= read.invoke)).collect();
    Some(Witness { read, source, before, concurrent })
}

impl std::fmt::Display for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let span = |op: &Op| match op.complete {
            Some(c) => format!("[{:.3} s, {:.3} s]", op.invoke as f64 / 1e9, c as f64 / 1e9),
            None => format!("[{:.3} s, no answer]", op.invoke as f64 / 1e9),
        };
        let value = |op: &Op| match op.kind {
            OpKind::Write(v) | OpKind::Read(v) => v,
        };
        let list = |ops: &[Op]| {
            let items: Vec<String> = ops.iter().map(|w| format!("{} {}", value(w), span(w))).collect();
            if items.is_empty() {
                "none".to_string()
            } else {
                items.join(", ")
            }
        };
        write!(f, "first unexplained: read of {} {}", value(&self.read), span(&self.read))?;
        match &self.source {
            Some(w) => write!(f, "; written {}", span(w))?,
            None => write!(f, "; no write of that value")?,
        }
        write!(f, "; acknowledged before it: {}; concurrent: {}", list(&self.before), list(&self.concurrent))
    }
}

/// A random 128-bit key per operation (splitmix64, fixed seed).
fn zobrist_keys(n: usize) -> Vec<u128> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..n).map(|_| (u128::from(next()) << 64) | u128::from(next())).collect()
}

struct Search<'a> {
    /// Sorted by invocation time.
    ops: &'a [Op],
    /// One key per operation; a set's hash is the xor of its members' keys.
    zobrist: Vec<u128>,
    /// States (set hash, value) already explored without success.
    seen: HashSet<(u128, i64)>,
}

impl Search<'_> {
    /// Whether the operations not in `done` (whose hash is `hash`) can
    /// follow, from `value`, with `required` answered ones among them;
    /// `None` when over the budget.
    fn run(&mut self, done: &mut [u64], hash: u128, value: i64, required: usize) -> Option<bool> {
        if required == 0 {
            return Some(true);
        }
        if self.seen.len() >= MAX_STATES {
            return None;
        }
        if !self.seen.insert((hash, value)) {
            return Some(false);
        }
        let is_done = |done: &[u64], i: usize| done[i / 64] & (1 << (i % 64)) != 0;
        // An operation can come next only if no other pending operation was
        // answered before it was invoked.
        let horizon = (0..self.ops.len())
            .filter(|&i| !is_done(done, i))
            .filter_map(|i| self.ops[i].complete)
            .min()
            .unwrap_or(u64::MAX);
        for i in 0..self.ops.len() {
            let op = self.ops[i];
            if op.invoke > horizon {
                break;
            }
            if is_done(done, i) {
                continue;
            }
            let next = match op.kind {
                OpKind::Write(v) => v,
                OpKind::Read(v) if v == value => value,
                OpKind::Read(_) => continue,
            };
            done[i / 64] |= 1 << (i % 64);
            let found = self.run(done, hash ^ self.zobrist[i], next, required - usize::from(op.complete.is_some()));
            done[i / 64] &= !(1 << (i % 64));
            if found != Some(false) {
                return found;
            }
        }
        Some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: OpKind, invoke: u64, complete: u64) -> Op {
        Op { kind, invoke, complete: Some(complete) }
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = [op(OpKind::Write(1), 0, 1), op(OpKind::Read(1), 2, 3), op(OpKind::Write(2), 4, 5)];
        assert_eq!(check_register(0, &h), Ok(()));
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_caught() {
        let h = [op(OpKind::Write(1), 0, 1), op(OpKind::Read(0), 2, 3)];
        assert_eq!(check_register(0, &h), Err(Violation::NotLinearizable { ops: 2 }));
    }

    #[test]
    fn concurrent_operations_may_take_either_order() {
        let h = [op(OpKind::Write(1), 0, 10), op(OpKind::Read(0), 1, 2), op(OpKind::Read(1), 3, 4)];
        assert_eq!(check_register(0, &h), Ok(()));
    }

    #[test]
    fn reads_cannot_go_back_in_time() {
        // Both reads overlap the write, but once one read saw 1 a later read
        // cannot see 0.
        let h = [op(OpKind::Write(1), 0, 10), op(OpKind::Read(1), 1, 2), op(OpKind::Read(0), 3, 4)];
        assert!(check_register(0, &h).is_err());
    }

    #[test]
    fn an_unknown_write_may_have_happened_or_not() {
        let unknown = Op { kind: OpKind::Write(7), invoke: 0, complete: None };
        assert_eq!(check_register(0, &[unknown, op(OpKind::Read(7), 50, 51)]), Ok(()));
        assert_eq!(check_register(0, &[unknown, op(OpKind::Read(0), 50, 51)]), Ok(()));
        // ...but not before it was invoked.
        let late = Op { kind: OpKind::Write(7), invoke: 60, complete: None };
        assert!(check_register(0, &[late, op(OpKind::Read(7), 50, 51)]).is_err());
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught() {
        let h = [op(OpKind::Write(1), 0, 1), op(OpKind::Write(2), 2, 3), op(OpKind::Read(1), 10, 11)];
        assert!(check_register(0, &h).is_err());
    }

    #[test]
    fn the_witness_is_the_first_read_no_order_explains() {
        let h = [
            op(OpKind::Write(1), 0, 10),
            op(OpKind::Read(1), 12, 14),
            op(OpKind::Write(2), 20, 30),
            op(OpKind::Read(1), 32, 34),
            op(OpKind::Read(2), 40, 44),
            op(OpKind::Read(0), 50, 54),
        ];
        let witness = first_unexplained_read(0, &h).expect("a violation");
        assert_eq!(witness.read, h[3]);
        assert_eq!(witness.source, Some(h[0]));
        assert_eq!(witness.before, vec![h[0], h[2]]);
        assert!(witness.concurrent.is_empty());
        assert_eq!(first_unexplained_read(0, &h[..3]), None);
    }

    #[test]
    fn a_read_without_an_answer_is_refused() {
        let read = Op { kind: OpKind::Read(1), invoke: 0, complete: None };
        assert_eq!(check_register(0, &[read]), Err(Violation::UnansweredRead));
    }

    #[test]
    fn long_concurrent_histories_are_decided_quickly() {
        // Four clients, 2,000 operations, writes of unique values and reads
        // of the latest acknowledged one, overlapping in pairs.
        let mut h = Vec::new();
        let mut last = 0;
        for n in 0..1_000u64 {
            let t = n * 10;
            h.push(op(OpKind::Write(n as i64 + 1), t, t + 15));
            h.push(op(OpKind::Read(last), t + 1, t + 4));
            last = n as i64 + 1;
        }
        assert_eq!(check_register(0, &h), Ok(()));
    }
}
