//! Loopback ports for test clusters that nothing else will take between
//! choosing a port and `lexumd` binding it.
//!
//! Asking the kernel for port 0 and closing the socket again hands out a
//! port from the ephemeral range, which every outgoing connection on the
//! machine draws from too: with tests opening hundreds of client
//! connections, one of them can land on a node's port before the node
//! binds it (CI saw "Address already in use" exactly so). The ports here
//! come from below the ephemeral range instead, which the kernel never
//! assigns by itself; a process-wide counter keeps two clusters of one test
//! binary apart, and an offset from the process id keeps two test processes
//! apart. Each port is still checked with a bind before it is handed out.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// Lowest port handed out: above the well-known and registered ports that
/// local services commonly use (and the quick start's 7101-7103, 9101-9103).
const FIRST_PORT: u32 = 20_000;

/// Where the kernel's ephemeral range starts when `/proc` does not say.
const DEFAULT_EPHEMERAL_START: u32 = 32_768;

/// How many ports this process has taken so far.
static TAKEN: AtomicU32 = AtomicU32::new(0);

/// Errors from [`loopback_port`].
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Every candidate was bound by someone else.
    #[error("no free loopback port in {first}..{end}")]
    Exhausted {
        /// First port tried.
        first: u32,
        /// One past the last port of the range.
        end: u32,
    },
}

/// A loopback port outside the ephemeral range that was free just now and
/// that this process has not handed out before.
pub fn loopback_port() -> Result<u16, PortError> {
    let end = ephemeral_start().clamp(FIRST_PORT + 1_000, u32::from(u16::MAX) + 1);
    let span = end - FIRST_PORT;
    let offset = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let taken = TAKEN.fetch_add(1, Ordering::Relaxed);
        let port = FIRST_PORT + (offset + taken) % span;
        let Ok(port) = u16::try_from(port) else { continue };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(PortError::Exhausted { first: FIRST_PORT, end })
}

/// First port of the kernel's ephemeral range.
fn ephemeral_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next().and_then(|low| low.parse().ok()))
        .unwrap_or(DEFAULT_EPHEMERAL_START)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let ports: Vec<u16> = (0..200).map(|_| loopback_port().expect("a port")).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
        let ephemeral = ephemeral_start();
        for port in ports {
            assert!(u32::from(port) >= FIRST_PORT, "{port} is below {FIRST_PORT}");
            if ephemeral > FIRST_PORT + 1_000 {
                assert!(u32::from(port) < ephemeral, "{port} is in the ephemeral range");
            }
            TcpListener::bind(("127.0.0.1", port)).expect("the port is still free");
        }
    }

    #[test]
    fn a_port_someone_holds_is_skipped() {
        let first = loopback_port().expect("a port");
        let neighbour = first.checked_add(1).expect("ports stay below the ephemeral range");
        let held = TcpListener::bind(("127.0.0.1", neighbour)).ok();
        let next = loopback_port().expect("a port");
        if held.is_some() {
            assert_ne!(next, neighbour, "handed out a port that is bound");
        }
        assert_ne!(next, first);
    }
}
