//! The nemesis schedule of a soak run: which faults exist, and one seeded
//! timeline that combines them. The schedule is pure data made from the
//! seed alone (no clock, no cluster), so a seed names a run's faults; which
//! node a fault hits is decided when it starts (the leader is only known
//! then) from the fault's own random `pick`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A class of fault `jepsen/run --nemesis` can enable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Nemesis {
    /// Network partitions: the leader isolated, random halves, one link, a bridge.
    Partition,
    /// `kill -9` a node, restart it from its data.
    Kill,
    /// SIGSTOP a node, SIGCONT it.
    Pause,
    /// Packet delay, jitter and loss on the namespace links (`tc`).
    Netem,
    /// Remove a node from the membership and add it back empty.
    Membership,
    /// `kill -9` or SIGSTOP (past the effect timeout) a worker process.
    Worker,
}

impl Nemesis {
    /// Every nemesis, in the order `all` lists them.
    pub const ALL: [Nemesis; 6] =
        [Nemesis::Partition, Nemesis::Kill, Nemesis::Pause, Nemesis::Netem, Nemesis::Membership, Nemesis::Worker];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Nemesis::Partition => "partition",
            Nemesis::Kill => "kill",
            Nemesis::Pause => "pause",
            Nemesis::Netem => "netem",
            Nemesis::Membership => "membership",
            Nemesis::Worker => "worker",
        }
    }
}

impl fmt::Display for Nemesis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name on the command line that is no nemesis or workload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{name}` (expected one of: {expected}, or all)")]
pub struct UnknownName {
    /// `nemesis` or `workload`.
    pub what: &'static str,
    /// The name given.
    pub name: String,
    /// The names that exist.
    pub expected: String,
}

impl FromStr for Nemesis {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Nemesis, UnknownName> {
        Nemesis::ALL.into_iter().find(|n| n.name() == s).ok_or_else(|| UnknownName {
            what: "nemesis",
            name: s.to_string(),
            expected: Nemesis::ALL.map(Nemesis::name).join(", "),
        })
    }
}

/// Parses `all` or a comma-separated list of names (duplicates collapse;
/// the result is sorted).
pub fn parse_list<T: FromStr<Err = UnknownName> + Ord + Copy>(list: &str, all: &[T]) -> Result<Vec<T>, UnknownName> {
    if list.trim() == "all" {
        return Ok(all.to_vec());
    }
    let mut parsed = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        parsed.push(name.parse()?);
    }
    parsed.sort();
    parsed.dedup();
    Ok(parsed)
}

/// One concrete fault of the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Cut the leader off from every peer (clients still reach it).
    IsolateLeader,
    /// Cut one random node off from the others (a minority and a majority).
    Halves,
    /// Cut the link between the leader and one follower.
    OneLink,
    /// Cut the followers from each other; only the leader bridges them.
    Bridge,
    /// `kill -9` one node; restart it when the fault ends.
    Kill,
    /// `kill -9` the leader and restart it at once, before a follower's
    /// election timeout: it comes back with its vote as leader and must not
    /// lead that term again.
    KillLeader,
    /// SIGSTOP one node; SIGCONT it when the fault ends.
    Pause,
    /// Delay, jitter and loss on every node's link.
    Netem {
        /// Added delay.
        delay_ms: u32,
        /// Jitter around the delay.
        jitter_ms: u32,
        /// Loss in tenths of a percent.
        loss_permille: u32,
    },
    /// Remove a follower from the membership, wipe it, add it back at the end.
    Membership,
    /// `kill -9` one worker process; a new one starts when the fault ends.
    WorkerKill,
    /// SIGSTOP one worker process past the effect timeout.
    WorkerPause,
}

impl Fault {
    /// The nemesis this fault belongs to.
    pub fn nemesis(self) -> Nemesis {
        match self {
            Fault::IsolateLeader | Fault::Halves | Fault::OneLink | Fault::Bridge => Nemesis::Partition,
            Fault::Kill | Fault::KillLeader => Nemesis::Kill,
            Fault::Pause => Nemesis::Pause,
            Fault::Netem { .. } => Nemesis::Netem,
            Fault::Membership => Nemesis::Membership,
            Fault::WorkerKill | Fault::WorkerPause => Nemesis::Worker,
        }
    }

    /// Faults that may not overlap share a lane: one partition, one node
    /// fault (kill, pause, membership), one netem, one worker fault at a time.
    fn lane(self) -> usize {
        match self.nemesis() {
            Nemesis::Partition => 0,
            Nemesis::Kill | Nemesis::Pause | Nemesis::Membership => 1,
            Nemesis::Netem => 2,
            Nemesis::Worker => 3,
        }
    }
}

/// A fault at its place in the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planned {
    /// When it starts, from the start of the workload.
    pub at: Duration,
    /// How long it lasts.
    pub hold: Duration,
    /// What it is.
    pub fault: Fault,
    /// A random number the fault uses to choose its target when it starts.
    pub pick: u64,
}

/// splitmix64: a small seeded generator, enough for a schedule.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }
}

/// Every concrete fault of the enabled nemeses, drawn with `rng`.
fn draw(rng: &mut Rng, nemeses: &[Nemesis]) -> Fault {
    let nemesis = nemeses[(rng.next_u64() % nemeses.len() as u64) as usize];
    match nemesis {
        Nemesis::Partition => {
            [Fault::IsolateLeader, Fault::Halves, Fault::OneLink, Fault::Bridge][(rng.next_u64() % 4) as usize]
        }
        Nemesis::Kill => {
            if rng.next_u64() % 2 == 0 {
                Fault::Kill
            } else {
                Fault::KillLeader
            }
        }
        Nemesis::Pause => Fault::Pause,
        Nemesis::Netem => Fault::Netem {
            delay_ms: rng.range(5, 80) as u32,
            jitter_ms: rng.range(0, 30) as u32,
            loss_permille: rng.range(0, 50) as u32,
        },
        Nemesis::Membership => Fault::Membership,
        Nemesis::Worker => {
            if rng.next_u64() % 2 == 0 {
                Fault::WorkerKill
            } else {
                Fault::WorkerPause
            }
        }
    }
}

/// How long the fault phase keeps clear at its end so that every fault has
/// ended before the heal.
const TAIL: Duration = Duration::from_secs(2);

/// The faults of a run of `length` with `nemeses`, from `seed`: a new fault
/// every 1–4 s, each held 1–6 s (a worker pause longer than the effect
/// timeout `effect_timeout`, a leader's kill 50–300 ms), skipped when its
/// lane is still busy, so faults of different lanes overlap. Every fault
/// ends before `length`.
pub fn schedule(seed: u64, nemeses: &[Nemesis], length: Duration, effect_timeout: Duration) -> Vec<Planned> {
    let mut rng = Rng::new(seed);
    let mut planned = Vec::new();
    if nemeses.is_empty() {
        return planned;
    }
    let mut busy_until = [Duration::ZERO; 4];
    let mut at = Duration::from_secs(3);
    for _ in 0..100_000 {
        at += Duration::from_millis(rng.range(1000, 4000));
        let fault = draw(&mut rng, nemeses);
        let hold = match fault {
            Fault::WorkerPause => effect_timeout + Duration::from_millis(rng.range(1000, 3000)),
            Fault::WorkerKill => Duration::from_millis(rng.range(300, 1500)),
            Fault::Membership => Duration::from_millis(rng.range(2000, 6000)),
            Fault::KillLeader => Duration::from_millis(rng.range(50, 300)),
            _ => Duration::from_millis(rng.range(1000, 6000)),
        };
        if at + hold + TAIL > length {
            break;
        }
        let pick = rng.next_u64();
        let lane = fault.lane();
        if busy_until[lane] > at {
            continue;
        }
        busy_until[lane] = at + hold + Duration::from_millis(500);
        planned.push(Planned { at, hold, fault, pick });
    }
    planned
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);
    const TIMEOUT: Duration = Duration::from_secs(1);

    #[test]
    fn a_seed_gives_the_same_schedule() {
        let a = schedule(7, &Nemesis::ALL, MINUTE, TIMEOUT);
        assert_eq!(a, schedule(7, &Nemesis::ALL, MINUTE, TIMEOUT));
        assert_ne!(a, schedule(8, &Nemesis::ALL, MINUTE, TIMEOUT));
    }

    #[test]
    fn faults_of_one_lane_never_overlap_and_all_end_in_time() {
        let planned = schedule(1, &Nemesis::ALL, 10 * MINUTE, TIMEOUT);
        for (i, a) in planned.iter().enumerate() {
            assert!(a.at + a.hold + TAIL <= 10 * MINUTE);
            for b in &planned[i + 1..] {
                if a.fault.lane() == b.fault.lane() {
                    assert!(a.at + a.hold <= b.at, "{a:?} overlaps {b:?}");
                }
            }
        }
    }

    #[test]
    fn all_nemeses_show_up_and_overlap_in_a_long_run() {
        let planned = schedule(3, &Nemesis::ALL, 2 * MINUTE, TIMEOUT);
        for nemesis in Nemesis::ALL {
            assert!(planned.iter().any(|p| p.fault.nemesis() == nemesis), "{nemesis} missing: {planned:?}");
        }
        let overlapping = planned.windows(2).filter(|w| w[0].at + w[0].hold > w[1].at).count();
        assert!(overlapping > 0, "faults are combined");
    }

    #[test]
    fn only_enabled_nemeses_are_scheduled() {
        let planned = schedule(5, &[Nemesis::Kill], MINUTE, TIMEOUT);
        assert!(!planned.is_empty());
        assert!(planned.iter().all(|p| p.fault.nemesis() == Nemesis::Kill));
        for fault in [Fault::Kill, Fault::KillLeader] {
            assert!(planned.iter().any(|p| p.fault == fault), "no {fault:?} in {planned:?}");
        }
        assert!(schedule(5, &[], MINUTE, TIMEOUT).is_empty());
    }

    #[test]
    fn lists_parse() {
        assert_eq!(parse_list("all", &Nemesis::ALL), Ok(Nemesis::ALL.to_vec()));
        assert_eq!(parse_list("pause,kill,kill", &Nemesis::ALL), Ok(vec![Nemesis::Kill, Nemesis::Pause]));
        let error = parse_list::<Nemesis>("kill,fire", &Nemesis::ALL).expect_err("unknown");
        assert_eq!(error.name, "fire");
    }
}
