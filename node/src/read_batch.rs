//! Batched read index: concurrent linearizable reads share one leadership
//! check, as etcd's reads share one ReadIndex round.
//!
//! A check ([`crate::cluster::Cluster::linearize`]) sends every follower a
//! heartbeat, waits for a quorum, then waits until the node has applied the
//! commit index it saw. Made once per read, that is a round of heartbeats
//! per read. Here a read joins the next round instead: a round starts only
//! after every read it answers had arrived, so its check proves leadership
//! and reads the commit index after each of them was called, which is all a
//! linearizable read needs. Reads that arrive while a round is under way
//! gather for the one after it, so at most one check runs at a time and a
//! read waits for at most two.

use crate::cluster::ProposeError;
use futures::FutureExt;
use prometheus::Histogram;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

/// The outcome of one round, shared by the reads it answers.
type Outcome = Option<Result<(), ProposeError>>;

/// Gathers concurrent reads into rounds of one check each.
#[derive(Default)]
pub struct ReadBatcher {
    state: Mutex<State>,
    /// Where the number of reads each round answers is recorded, if anywhere.
    sizes: Option<Histogram>,
}

#[derive(Default)]
struct State {
    /// A task is running rounds.
    running: bool,
    /// The round that reads arriving now join; it starts after the
    /// running one ends.
    gathering: Option<watch::Sender<Outcome>>,
    /// Rounds started so far.
    rounds: u64,
}

impl ReadBatcher {
    /// A batcher that records how many reads each round answers in
    /// `sizes` (the node's `lexum_reads_per_check`).
    pub fn recording_into(sizes: Histogram) -> ReadBatcher {
        ReadBatcher { state: Mutex::default(), sizes: Some(sizes) }
    }

    /// Waits for a round that started after this call and returns its
    /// check's outcome. `check` runs the rounds if none is running; every
    /// caller must pass an equivalent check.
    pub async fn read<F, Fut>(self: &Arc<Self>, check: F) -> Result<(), ProposeError>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), ProposeError>> + Send + 'static,
    {
        let (mut outcome, start) = {
            let mut state = self.lock();
            let round = state.gathering.get_or_insert_with(|| watch::channel(None).0);
            let outcome = round.subscribe();
            let start = !state.running;
            state.running = true;
            (outcome, start)
        };
        if start {
            tokio::spawn(self.clone().run_rounds(check));
        }
        let result = match outcome.wait_for(Option::is_some).await {
            Ok(done) => done.clone().unwrap_or_else(|| Err(abandoned())),
            Err(_) => Err(abandoned()),
        };
        result
    }

    /// Rounds started so far (each one leadership check).
    pub fn rounds(&self) -> u64 {
        self.lock().rounds
    }

    /// Runs one round per gathered group until no read is waiting.
    async fn run_rounds<F, Fut>(self: Arc<Self>, check: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), ProposeError>>,
    {
        loop {
            let round = {
                let mut state = self.lock();
                match state.gathering.take() {
                    Some(round) => {
                        state.rounds += 1;
                        round
                    }
                    None => {
                        state.running = false;
                        return;
                    }
                }
            };
            let outcome = AssertUnwindSafe(check())
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(ProposeError::Unavailable("the leadership check panicked".into())));
            if let Some(sizes) = &self.sizes {
                sizes.observe(round.receiver_count() as f64);
            }
            round.send_replace(Some(outcome));
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn abandoned() -> ProposeError {
    ProposeError::Unavailable("the leadership check was abandoned (node shutting down)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;
    use tokio::sync::Semaphore;

    /// A check that counts its calls and waits for a permit from `gate`
    /// before it answers `Ok`.
    fn gated(
        gate: Arc<Semaphore>,
        calls: Arc<AtomicU64>,
    ) -> impl Fn() -> futures::future::BoxFuture<'static, Result<(), ProposeError>> {
        move || {
            let (gate, calls) = (gate.clone(), calls.clone());
            Box::pin(async move {
                calls.fetch_add(1, Ordering::SeqCst);
                gate.acquire().await.map(|permit| permit.forget()).map_err(|_| abandoned())
            })
        }
    }

    /// Polls until `f` holds (at most 5 s).
    async fn until(mut f: impl FnMut() -> bool) {
        for _ in 0..500 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached within 5 s");
    }

    #[tokio::test]
    async fn reads_that_arrive_during_a_check_share_the_next_one() {
        let batcher = Arc::new(ReadBatcher::default());
        let (gate, calls) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicU64::new(0)));
        let first = tokio::spawn({
            let (batcher, check) = (batcher.clone(), gated(gate.clone(), calls.clone()));
            async move { batcher.read(check).await }
        });
        until(|| calls.load(Ordering::SeqCst) == 1).await;
        let mut later = Vec::new();
        for _ in 0..100 {
            let (batcher, check) = (batcher.clone(), gated(gate.clone(), calls.clone()));
            later.push(tokio::spawn(async move { batcher.read(check).await }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1, "a second check started while the first was under way");

        gate.add_permits(1);
        assert!(first.await.expect("first read").is_ok());
        until(|| calls.load(Ordering::SeqCst) == 2).await;
        assert!(later.iter().all(|read| !read.is_finished()), "a read was answered by a check that began before it");

        gate.add_permits(1);
        for read in later {
            assert!(read.await.expect("later read").is_ok());
        }
        assert_eq!(batcher.rounds(), 2, "101 reads in two waves take exactly two checks");
    }

    #[tokio::test]
    async fn each_round_records_how_many_reads_it_answered() {
        let sizes = Histogram::with_opts(prometheus::HistogramOpts::new("sizes", "test")).expect("histogram");
        let batcher = Arc::new(ReadBatcher::recording_into(sizes.clone()));
        let (gate, calls) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicU64::new(0)));
        let mut reads = vec![tokio::spawn({
            let (batcher, check) = (batcher.clone(), gated(gate.clone(), calls.clone()));
            async move { batcher.read(check).await }
        })];
        until(|| calls.load(Ordering::SeqCst) == 1).await;
        for _ in 0..9 {
            let (batcher, check) = (batcher.clone(), gated(gate.clone(), calls.clone()));
            reads.push(tokio::spawn(async move { batcher.read(check).await }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        gate.add_permits(2);
        for read in reads {
            assert!(read.await.expect("read").is_ok());
        }
        assert_eq!(sizes.get_sample_count(), 2);
        assert_eq!(sizes.get_sample_sum(), 10.0, "the two rounds answered 1 and 9 reads");
    }

    #[tokio::test]
    async fn a_failed_check_fails_its_reads_and_the_next_read_checks_again() {
        let batcher = Arc::new(ReadBatcher::default());
        let failing = || async { Err::<(), _>(ProposeError::NotLeader { leader: Some("n2:7000".into()) }) };
        match batcher.read(failing).await {
            Err(ProposeError::NotLeader { leader }) => assert_eq!(leader.as_deref(), Some("n2:7000")),
            other => panic!("expected NotLeader, got {other:?}"),
        }
        assert!(batcher.read(|| async { Ok(()) }).await.is_ok());
        assert_eq!(batcher.rounds(), 2);
    }

    async fn broken_check() -> Result<(), ProposeError> {
        panic!("check broke")
    }

    #[tokio::test]
    async fn a_check_that_panics_fails_its_reads_and_rounds_go_on() {
        let batcher = Arc::new(ReadBatcher::default());
        assert!(matches!(batcher.read(broken_check).await, Err(ProposeError::Unavailable(_))));
        assert!(batcher.read(|| async { Ok(()) }).await.is_ok(), "the batcher stopped after a panic");
    }
}
