//! A timer's lateness over a stretch of the bench: a thread that sleeps a
//! millisecond again and again and counts how late it wakes. On an
//! idle machine it is late by microseconds; when the machine itself stalls
//! (a virtual CPU descheduled by its host, every core busy) no process on
//! it runs, so a latency tail that the timer shares is not Lexum's own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the thread sleeps each time.
const TICK: Duration = Duration::from_millis(1);

/// The longest a meter runs if it is never stopped.
const LIMIT: Duration = Duration::from_secs(3600);

/// A wake-up later than this is kept as a stall, with its time.
const STALL: Duration = Duration::from_millis(1);

/// The most stalls kept (the counts go on past it).
const STALLS_KEPT: usize = 100_000;

/// Counts of late wake-ups, and when the late ones were due.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hiccups {
    /// Sleeps made.
    pub ticks: u64,
    /// Wake-ups later than 2 ms, 4 ms and 16 ms.
    pub over: [u64; 3],
    /// The latest wake-up.
    pub worst: Duration,
    /// Wake-ups later than [`STALL`]: when each was due and how late it was.
    stalls: Vec<(Instant, Duration)>,
}

impl Hiccups {
    /// Counts one wake-up due at `due` and `late` after it.
    fn record(&mut self, due: Instant, late: Duration) {
        self.ticks += 1;
        for (count, bound) in self.over.iter_mut().zip([2, 4, 16]) {
            *count += u64::from(late > Duration::from_millis(bound));
        }
        self.worst = self.worst.max(late);
        if late > STALL && self.stalls.len() < STALLS_KEPT {
            self.stalls.push((due, late));
        }
    }

    /// How long the timer was stalled (late past [`STALL`]) between `from`
    /// and `to`: the overlap of each stall with that stretch, summed.
    pub fn stalled_during(&self, from: Instant, to: Instant) -> Duration {
        self.stalls
            .iter()
            .map(|&(due, late)| {
                let (start, end) = (due.max(from), (due + late).min(to));
                end.saturating_duration_since(start)
            })
            .sum()
    }

    /// One line for the bench's output.
    pub fn summary(&self) -> String {
        format!(
            "the bench's own {} ms timer meanwhile: {} wake-ups, {} over 2 ms late, {} over 4 ms, {} over 16 ms, worst {:.1} ms",
            TICK.as_millis(),
            self.ticks,
            self.over[0],
            self.over[1],
            self.over[2],
            self.worst.as_secs_f64() * 1e3
        )
    }
}

/// A running meter; [`Meter::stop`] returns what it counted.
pub struct Meter {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Hiccups>,
}

impl Meter {
    /// Starts the meter's thread.
    pub fn start() -> Meter {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut hiccups = Hiccups::default();
            let started = Instant::now();
            while !flag.load(Ordering::Relaxed) && started.elapsed() < LIMIT {
                let due = Instant::now() + TICK;
                std::thread::sleep(TICK);
                hiccups.record(due, Instant::now().saturating_duration_since(due));
            }
            hiccups
        });
        Meter { stop, thread }
    }

    /// Stops the thread and returns its counts.
    pub fn stop(self) -> Hiccups {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_wake_ups_are_counted_by_bound_and_the_worst_is_kept() {
        let mut hiccups = Hiccups::default();
        let now = Instant::now();
        for ms in [0, 1, 3, 5, 20, 2] {
            hiccups.record(now, Duration::from_millis(ms));
        }
        assert_eq!(hiccups.ticks, 6);
        assert_eq!(hiccups.over, [3, 2, 1], "over 2: 3, 5, 20; over 4: 5, 20; over 16: 20");
        assert_eq!(hiccups.worst, Duration::from_millis(20));
    }

    #[test]
    fn the_stall_within_a_stretch_is_the_overlap_of_each_late_wake_up_with_it() {
        let mut hiccups = Hiccups::default();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        hiccups.record(t0, ms(5)); // t0 .. t0+5
        hiccups.record(t0 + ms(10), ms(1)); // not a stall: only 1 ms late
        hiccups.record(t0 + ms(20), ms(8)); // t0+20 .. t0+28
        assert_eq!(hiccups.stalled_during(t0 + ms(3), t0 + ms(22)), ms(2) + ms(2));
        assert_eq!(hiccups.stalled_during(t0 + ms(6), t0 + ms(19)), Duration::ZERO);
        assert_eq!(hiccups.stalled_during(t0, t0 + ms(40)), ms(13));
    }

    #[test]
    fn a_meter_counts_its_ticks_until_stopped() {
        let meter = Meter::start();
        std::thread::sleep(Duration::from_millis(50));
        let hiccups = meter.stop();
        // 50 ms of one-millisecond sleeps: at most 50, and at least one
        // even on a loaded machine.
        assert!((1..=50).contains(&hiccups.ticks), "{hiccups:?}");
    }
}
