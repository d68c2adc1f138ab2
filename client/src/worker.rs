//! The worker SDK: serve effects for the cluster.
//!
//! A [`Worker`] opens one stream to the leader (following `Redirect`s from
//! followers), says which effects it serves and how many tasks it runs at
//! once, runs a registered handler for each task and sends the result back.
//! When the leader changes the old leader closes the stream; the worker
//! reconnects and continues. Handlers keep running across a lost stream and
//! their results go to the next leader, which accepts them while their
//! fencing token is current.
//!
//! A handler runs at most until its task's deadline: the effect timeout the
//! cluster sent, counted from the moment the task arrived (waiting for a
//! free slot included). At the deadline, and when the worker stops, the
//! handler's future is dropped at its next `.await`. The leader hands an
//! attempt to another worker only after the same timeout plus a margin,
//! counted from before it sent the task, so two workers never run one effect
//! at once (as long as a handler does not block its thread past the deadline
//! and delivery takes less than the margin).
//!
//! Graceful shutdown ([`Worker::run_until`]): tasks already running finish
//! (within [`WorkerOptions::shutdown_grace`]) and their results are sent;
//! tasks that arrive after shutdown began are answered with an error so the
//! leader hands them to another worker at once.

use crate::client::{describe, Client};
use crate::error::{is_transient, ClientError};
use crate::value::{self, Value};
use futures::future::{BoxFuture, FusedFuture};
use futures::FutureExt;
use lexum_proto::v1 as pb;
use lexum_proto::v1::worker_client::WorkerClient;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::Request;

/// One effect execution handed to a handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectTask {
    /// Effect instance id (unique in the cluster).
    pub effect_id: u64,
    /// Effect name, `Namespace.Name`.
    pub effect: String,
    /// Stays the same across retries and failovers: use it to make the
    /// real operation idempotent.
    pub idempotency_key: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Named arguments, in declaration order.
    pub args: Vec<(String, Value)>,
    /// Fencing token the result must carry (handled by the SDK).
    pub fencing_token: u64,
    /// How long the cluster waits for this attempt, if it said.
    pub timeout: Option<Duration>,
    /// When the handler is cancelled: `timeout` after the task arrived.
    pub deadline: Option<Instant>,
}

impl EffectTask {
    /// An argument by name.
    pub fn arg(&self, name: &str) -> Option<&Value> {
        self.args.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// An `int` argument by name.
    pub fn int_arg(&self, name: &str) -> Option<i64> {
        match self.arg(name) {
            Some(Value::Int(n)) => Some(*n),
            _ => None,
        }
    }

    /// A `string` argument by name.
    pub fn str_arg(&self, name: &str) -> Option<&str> {
        match self.arg(name) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// Writes what the handler observed in the world, naming this task's
    /// effect as the cause (`caused_by` its idempotency key): the cluster
    /// then attributes the writes to the cycle that issued the effect.
    pub async fn observe(&self, client: &crate::Client, writes: &[crate::FieldWrite]) -> Result<u64, ClientError> {
        let options = crate::WriteOptions { as_name: None, caused_by: vec![self.idempotency_key.clone()] };
        client.mutate_with(writes, &options).await
    }

    fn from_wire(task: pb::Task) -> EffectTask {
        let timeout = (task.timeout_ms > 0).then(|| Duration::from_millis(task.timeout_ms));
        EffectTask {
            effect_id: task.effect_id,
            effect: task.effect,
            idempotency_key: task.idempotency_key,
            attempt: task.attempt,
            args: value::named_from_wire(&task.args),
            fencing_token: task.fencing_token,
            timeout,
            deadline: timeout.and_then(|t| Instant::now().checked_add(t)),
        }
    }
}

/// A successful effect's result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EffectOutput {
    /// The value bound by `emit ... -> name`; `None` for effects that
    /// return nothing.
    pub value: Option<Value>,
}

impl EffectOutput {
    /// No value.
    pub fn none() -> EffectOutput {
        EffectOutput { value: None }
    }

    /// A value.
    pub fn value(value: Value) -> EffectOutput {
        EffectOutput { value: Some(value) }
    }
}

impl From<Value> for EffectOutput {
    fn from(value: Value) -> Self {
        EffectOutput::value(value)
    }
}

/// A failed effect; the cluster retries it with backoff.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EffectError(pub String);

impl EffectError {
    /// An error with a message.
    pub fn new(message: impl Into<String>) -> EffectError {
        EffectError(message.into())
    }
}

type Handler = Arc<dyn Fn(EffectTask) -> BoxFuture<'static, Result<EffectOutput, EffectError>> + Send + Sync>;

/// Worker settings.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Name shown in the cluster's logs.
    pub worker_id: String,
    /// Tasks run at once (declared to the leader and enforced here).
    pub concurrency: u32,
    /// How long running tasks may take to finish after shutdown begins.
    pub shutdown_grace: Duration,
    /// How long to keep trying to reach a leader before giving up.
    pub reconnect_window: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            worker_id: format!("worker-{}", std::process::id()),
            concurrency: 4,
            shutdown_grace: Duration::from_secs(10),
            reconnect_window: Duration::from_secs(60),
        }
    }
}

/// Counters of a worker run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Tasks received.
    pub tasks: u64,
    /// Handler successes.
    pub succeeded: u64,
    /// Handler failures (including timeouts and panics).
    pub failed: u64,
    /// Results the leader refused (stale fencing token or unknown task).
    pub refused: u64,
    /// Streams opened to a leader.
    pub sessions: u64,
}

#[derive(Default)]
struct Counters {
    tasks: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    sessions: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> WorkerStats {
        WorkerStats {
            tasks: self.tasks.load(Ordering::Relaxed),
            succeeded: self.succeeded.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            sessions: self.sessions.load(Ordering::Relaxed),
        }
    }
}

/// A worker: handlers per effect plus a connection to the cluster.
///
/// ```no_run
/// use lexum_client::{Client, ClientConfig, EffectError, EffectOutput, EffectTask, Value, Worker};
///
/// async fn set_node_count(task: EffectTask) -> Result<EffectOutput, EffectError> {
///     let count = task.int_arg("count").ok_or_else(|| EffectError::new("count missing"))?;
///     // Call the cloud API here, passing task.idempotency_key along.
///     Ok(EffectOutput::value(Value::Int(count)))
/// }
///
/// # async fn demo() -> Result<(), lexum_client::ClientError> {
/// let client = Client::new_lazy(ClientConfig::new(["127.0.0.1:7101", "127.0.0.1:7102"]))?;
/// let stats = Worker::new(client)
///     .concurrency(8)
///     .handle("Cloud.SetNodeCount", set_node_count)
///     .run_until(async { let _ = tokio::signal::ctrl_c().await; })
///     .await?;
/// println!("{} tasks", stats.tasks);
/// # Ok(()) }
/// ```
pub struct Worker {
    client: Client,
    options: WorkerOptions,
    handlers: BTreeMap<String, Handler>,
    counters: Arc<Counters>,
}

enum SessionEnd {
    Shutdown,
    Redirect(String),
    Lost { served: bool, error: String },
}

impl Worker {
    /// A worker with default options and no handlers.
    pub fn new(client: Client) -> Worker {
        Worker { client, options: WorkerOptions::default(), handlers: BTreeMap::new(), counters: Arc::default() }
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: WorkerOptions) -> Worker {
        self.options = options;
        self
    }

    /// Sets how many tasks run at once (at least 1).
    pub fn concurrency(mut self, concurrency: u32) -> Worker {
        self.options.concurrency = concurrency.max(1);
        self
    }

    /// Sets the worker id.
    pub fn worker_id(mut self, worker_id: impl Into<String>) -> Worker {
        self.options.worker_id = worker_id.into();
        self
    }

    /// Registers the handler of one effect (`Namespace.Name`).
    pub fn handle<F, Fut>(mut self, effect: &str, handler: F) -> Worker
    where
        F: Fn(EffectTask) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<EffectOutput, EffectError>> + Send + 'static,
    {
        self.handlers.insert(effect.to_string(), Arc::new(move |task| handler(task).boxed()));
        self
    }

    /// Counters so far (also returned by [`Worker::run_until`]).
    pub fn stats(&self) -> WorkerStats {
        self.counters.snapshot()
    }

    /// Serves until the process ends or no leader can be reached for
    /// [`WorkerOptions::reconnect_window`].
    pub async fn run(self) -> Result<WorkerStats, ClientError> {
        self.run_until(std::future::pending()).await
    }

    /// Serves until `shutdown` completes, then finishes running tasks and
    /// returns. Fails when no handler is registered, on a non-transient
    /// error (bad token), or when no leader can be reached for
    /// [`WorkerOptions::reconnect_window`].
    pub async fn run_until<S>(self, shutdown: S) -> Result<WorkerStats, ClientError>
    where
        S: Future<Output = ()>,
    {
        if self.handlers.is_empty() {
            return Err(ClientError::Config("a worker needs at least one effect handler".into()));
        }
        let shutdown = shutdown.fuse();
        tokio::pin!(shutdown);
        let retry = self.client.config().retry.clone();
        let mut tasks = Tasks::new(self.options.concurrency);
        let mut cursor = 0usize;
        let mut backoff = retry.initial_backoff;
        let mut failing_since: Option<Instant> = None;
        let mut last_error = String::from("no attempt made");
        loop {
            if let Some(since) = failing_since {
                if since.elapsed() > self.options.reconnect_window {
                    return Err(ClientError::Unavailable(format!(
                        "no leader reachable within {:?}; last error: {last_error}",
                        self.options.reconnect_window
                    )));
                }
            }
            let address = self.client.pick(true, cursor);
            let end = self.session(&address, &mut tasks, shutdown.as_mut()).await?;
            match end {
                SessionEnd::Shutdown => return Ok(self.counters.snapshot()),
                SessionEnd::Redirect(leader) => {
                    tracing::debug!(from = %address, to = %leader, "worker redirected");
                    last_error = format!("{address}: redirected to `{leader}`");
                    if !self.client.follow_redirect(&address, &leader) {
                        cursor += 1;
                    }
                    failing_since.get_or_insert_with(Instant::now);
                    if sleep_or_shutdown(retry.initial_backoff, shutdown.as_mut()).await {
                        return Ok(self.counters.snapshot());
                    }
                    continue;
                }
                SessionEnd::Lost { served, error } => {
                    tracing::info!(node = %address, %error, "worker stream lost; reconnecting");
                    last_error = format!("{address}: {error}");
                    if served {
                        failing_since = None;
                        backoff = retry.initial_backoff;
                    }
                    failing_since.get_or_insert_with(Instant::now);
                    self.client.follow_redirect(&address, "");
                    cursor += 1;
                }
            }
            if sleep_or_shutdown(backoff, shutdown.as_mut()).await {
                return Ok(self.counters.snapshot());
            }
            backoff = (backoff * 2).min(retry.max_backoff);
        }
    }

    /// One stream to one node.
    async fn session<S>(
        &self,
        address: &str,
        tasks: &mut Tasks,
        mut shutdown: Pin<&mut futures::future::Fuse<S>>,
    ) -> Result<SessionEnd, ClientError>
    where
        S: Future<Output = ()>,
    {
        let config = self.client.config();
        let (out_tx, out_rx) = mpsc::channel::<pb::WorkerMessage>(256);
        let hello = pb::Hello {
            worker_id: self.options.worker_id.clone(),
            effects: self.handlers.keys().cloned().collect(),
            concurrency: self.options.concurrency.max(1),
        };
        let _ = out_tx.send(pb::WorkerMessage { kind: Some(pb::worker_message::Kind::Hello(hello)) }).await;
        let mut request = Request::new(ReceiverStream::new(out_rx));
        self.client.authorize(&mut request);
        let mut worker = WorkerClient::new(self.client.channel(address)?)
            .max_decoding_message_size(lexum_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(lexum_proto::MAX_MESSAGE_BYTES);
        let opened = tokio::select! {
            _ = &mut shutdown => return Ok(SessionEnd::Shutdown),
            opened = tokio::time::timeout(config.request_timeout, worker.attach(request)) => opened,
        };
        let mut inbound = match opened {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) if !is_transient(&status) => return Err(ClientError::from_status(&status)),
            Ok(Err(status)) => return Ok(SessionEnd::Lost { served: false, error: describe(&status) }),
            Err(_) => return Ok(SessionEnd::Lost { served: false, error: "no answer to hello".into() }),
        };
        let mut served = false;
        let mut counted = false;
        loop {
            let message = tokio::select! {
                _ = &mut shutdown => break,
                Some(_) = tasks.running.join_next(), if !tasks.running.is_empty() => continue,
                Some(result) = tasks.results.recv() => {
                    let _ = out_tx.send(result).await;
                    continue;
                }
                message = inbound.next() => message,
            };
            let command = match message {
                Some(Ok(command)) => command,
                Some(Err(status)) if !is_transient(&status) && !served => {
                    return Err(ClientError::from_status(&status))
                }
                Some(Err(status)) => return Ok(SessionEnd::Lost { served, error: describe(&status) }),
                None => return Ok(SessionEnd::Lost { served, error: "stream closed by the node".into() }),
            };
            match command.kind {
                Some(pb::worker_command::Kind::Redirect(redirect)) => return Ok(SessionEnd::Redirect(redirect.leader)),
                Some(pb::worker_command::Kind::Task(task)) => {
                    served = true;
                    if !counted {
                        counted = true;
                        self.counters.sessions.fetch_add(1, Ordering::Relaxed);
                    }
                    self.counters.tasks.fetch_add(1, Ordering::Relaxed);
                    let mut task = EffectTask::from_wire(task);
                    // After a freeze the task may have waited in the socket
                    // since the freeze began: count its deadline from then.
                    let arrived = tasks.clock.arrival(Instant::now());
                    task.deadline = task.timeout.and_then(|t| arrived.checked_add(t));
                    let (key, attempt) = (task.idempotency_key.clone(), task.attempt);
                    if tasks.has_newer(&key, attempt) {
                        let refused = Err(EffectError::new("a newer attempt of this effect runs here"));
                        let _ =
                            tasks.results_tx.send(result_message(task.effect_id, task.fencing_token, refused)).await;
                        continue;
                    }
                    let lock = tasks.exclusive(&key);
                    let run = self.execute(task, lock, tasks.slots.clone(), tasks.results_tx.clone());
                    let handle = tasks.running.spawn(run);
                    tasks.supersede(key, attempt, handle);
                }
                Some(pb::worker_command::Kind::Ack(ack)) if !ack.accepted => {
                    self.counters.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(effect_id = ack.effect_id, reason = %ack.reason, "result refused by the leader");
                }
                Some(pb::worker_command::Kind::Ack(_)) | None => {}
            }
        }
        self.drain(tasks, out_tx, inbound).await;
        Ok(SessionEnd::Shutdown)
    }

    /// After shutdown: finish running tasks and send their results, answer
    /// new ones with an error, read acks, then close the stream. Bounded by
    /// the shutdown grace; handlers still running then are cancelled.
    async fn drain(
        &self,
        tasks: &mut Tasks,
        out_tx: mpsc::Sender<pb::WorkerMessage>,
        mut inbound: tonic::Streaming<pb::WorkerCommand>,
    ) {
        let grace = tokio::time::sleep(self.options.shutdown_grace);
        tokio::pin!(grace);
        let mut out_tx = Some(out_tx);
        loop {
            if tasks.running.is_empty() {
                if let Some(tx) = out_tx.take() {
                    while let Ok(result) = tasks.results.try_recv() {
                        let _ = tx.send(result).await;
                    }
                    if self.options.shutdown_grace.is_zero() {
                        break;
                    }
                }
            }
            tokio::select! {
                _ = &mut grace => break,
                Some(_) = tasks.running.join_next(), if !tasks.running.is_empty() => {}
                Some(result) = tasks.results.recv(), if out_tx.is_some() => {
                    if let Some(tx) = &out_tx {
                        let _ = tx.send(result).await;
                    }
                }
                message = inbound.next() => match message {
                    Some(Ok(pb::WorkerCommand { kind: Some(pb::worker_command::Kind::Task(task)) })) => {
                        if let Some(tx) = &out_tx {
                            let result = result_message(task.effect_id, task.fencing_token, Err(EffectError::new("worker is shutting down")));
                            let _ = tx.send(result).await;
                        }
                    }
                    Some(Ok(pb::WorkerCommand { kind: Some(pb::worker_command::Kind::Ack(ack)) })) if !ack.accepted => {
                        self.counters.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                },
            }
            if tasks.running.is_empty() && out_tx.is_none() {
                let linger = tokio::time::sleep(Duration::from_millis(200));
                tokio::pin!(linger);
                loop {
                    tokio::select! {
                        _ = &mut linger => return,
                        message = inbound.next() => match message {
                            Some(Ok(pb::WorkerCommand { kind: Some(pb::worker_command::Kind::Ack(ack)) })) if !ack.accepted => {
                                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                            }
                            Some(Ok(_)) => {}
                            _ => return,
                        },
                    }
                }
            }
        }
        tasks.running.abort_all();
    }

    /// Runs one task in a free slot until its deadline, and queues its
    /// result for whichever stream to the leader is open.
    fn execute(
        &self,
        task: EffectTask,
        exclusive: Arc<tokio::sync::Mutex<()>>,
        slots: Arc<Semaphore>,
        results: mpsc::Sender<pb::WorkerMessage>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let handler = self.handlers.get(&task.effect).cloned();
        let counters = self.counters.clone();
        async move {
            let (effect_id, fencing_token, deadline) = (task.effect_id, task.fencing_token, task.deadline);
            let outcome = match handler {
                None => Err(EffectError::new(format!("this worker has no handler for `{}`", task.effect))),
                Some(handler) => {
                    let run = async move {
                        let _slot = slots.acquire_owned().await;
                        let alone = exclusive.lock_owned().await;
                        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                            return Err(EffectError::new("handler timed out"));
                        }
                        let handling = handler(task);
                        let mut running = AbortOnDrop(tokio::spawn(async move {
                            // A tuple drops its fields in order: the handler
                            // (finished or cancelled) goes before the lock.
                            let mut handler_then_lock = (handling, alone);
                            (&mut handler_then_lock.0).await
                        }));
                        match (&mut running.0).await {
                            Ok(outcome) => outcome,
                            Err(_) => Err(EffectError::new("handler panicked")),
                        }
                    };
                    match deadline {
                        Some(deadline) => tokio::time::timeout_at(deadline.into(), run)
                            .await
                            .unwrap_or_else(|_| Err(EffectError::new("handler timed out"))),
                        None => run.await,
                    }
                }
            };
            let counter = if outcome.is_ok() { &counters.succeeded } else { &counters.failed };
            counter.fetch_add(1, Ordering::Relaxed);
            let _ = results.send(result_message(effect_id, fencing_token, outcome)).await;
        }
    }
}

/// Results a worker holds while no stream to the leader is open.
const RESULT_BACKLOG: usize = 1024;

/// The tasks of one worker run, across streams: running handlers, the slots
/// that bound them, and results waiting for a stream to the leader.
struct Tasks {
    running: JoinSet<()>,
    slots: Arc<Semaphore>,
    results_tx: mpsc::Sender<pb::WorkerMessage>,
    results: mpsc::Receiver<pb::WorkerMessage>,
    /// The latest attempt received per idempotency key, to cancel.
    latest: BTreeMap<String, (u32, tokio::task::AbortHandle)>,
    /// A lock per effect while an attempt of it is here (see [`Tasks::exclusive`]).
    exclusive: BTreeMap<String, Weak<tokio::sync::Mutex<()>>>,
    /// Notices when this process was frozen.
    clock: Arc<FreezeClock>,
    ticker: tokio::task::JoinHandle<()>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}

/// How often [`FreezeClock`] ticks.
const TICK: Duration = Duration::from_millis(50);
/// A gap between ticks longer than this is taken for a freeze (SIGSTOP, a
/// paused VM, a starved process).
const FREEZE: Duration = Duration::from_millis(250);

/// Notices when this process was frozen. A task read from the stream right
/// after a freeze may have waited in the socket since the freeze began, so
/// its arrival is taken to be then: the leader counts its timeout from
/// before it sent the task, and a late-read task must not outlive it.
struct FreezeClock {
    origin: Instant,
    /// Nanoseconds from `origin` to the last tick.
    last_tick: AtomicU64,
    /// The latest freeze seen: when it began and when it ended.
    freeze: std::sync::Mutex<Option<(Instant, Instant)>>,
}

impl FreezeClock {
    fn new() -> FreezeClock {
        FreezeClock { origin: Instant::now(), last_tick: AtomicU64::new(0), freeze: std::sync::Mutex::new(None) }
    }

    fn last_tick(&self) -> Instant {
        self.origin + Duration::from_nanos(self.last_tick.load(Ordering::Relaxed))
    }

    fn tick(&self, now: Instant) {
        let last = self.last_tick();
        if now.saturating_duration_since(last) > FREEZE {
            *self.freeze.lock().unwrap_or_else(|p| p.into_inner()) = Some((last, now));
        }
        self.last_tick.store(now.saturating_duration_since(self.origin).as_nanos() as u64, Ordering::Relaxed);
    }

    /// The earliest moment a task read at `now` may have arrived.
    fn arrival(&self, now: Instant) -> Instant {
        let last = self.last_tick();
        if now.saturating_duration_since(last) > FREEZE {
            return last;
        }
        match *self.freeze.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((began, ended)) if now.saturating_duration_since(ended) < FREEZE => began,
            _ => now,
        }
    }
}

impl Tasks {
    fn new(concurrency: u32) -> Tasks {
        let (results_tx, results) = mpsc::channel(RESULT_BACKLOG);
        let slots = Arc::new(Semaphore::new(concurrency.max(1) as usize));
        let clock = Arc::new(FreezeClock::new());
        let ticking = clock.clone();
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                ticking.tick(Instant::now());
            }
        });
        Tasks {
            running: JoinSet::new(),
            slots,
            results_tx,
            results,
            latest: BTreeMap::new(),
            exclusive: BTreeMap::new(),
            clock,
            ticker,
        }
    }

    /// The lock an attempt of effect `key` holds while its handler runs,
    /// until the handler is dropped. A newer attempt cancels an older one
    /// running here ([`Tasks::supersede`]), but a cancelled handler stops
    /// only when its task is next polled, on any runtime thread; waiting for
    /// this lock, the newer one starts only after that.
    fn exclusive(&mut self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.exclusive.retain(|_, lock| lock.strong_count() > 0);
        if let Some(lock) = self.exclusive.get(key).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        self.exclusive.insert(key.to_string(), Arc::downgrade(&lock));
        lock
    }

    /// Whether a newer attempt of `key` than `attempt` is running here.
    fn has_newer(&mut self, key: &str, attempt: u32) -> bool {
        self.latest.retain(|_, (_, running)| !running.is_finished());
        self.latest.get(key).is_some_and(|(newer, _)| *newer > attempt)
    }

    /// Records `handle` as the running attempt of `key`. An older attempt
    /// of the same effect still running here is cancelled: the leader sends
    /// a new attempt only after giving up on the old one (whose result it
    /// would refuse), so the two must not run at once. This happens when a
    /// worker was frozen (SIGSTOP, a VM pause) with both tasks delivered.
    fn supersede(&mut self, key: String, attempt: u32, handle: tokio::task::AbortHandle) {
        self.latest.retain(|_, (_, running)| !running.is_finished());
        match self.latest.get(&key) {
            Some((newer, _)) if *newer > attempt => handle.abort(),
            _ => {
                if let Some((_, older)) = self.latest.insert(key, (attempt, handle)) {
                    older.abort();
                }
            }
        }
    }
}

/// A spawned handler that is cancelled when its owner stops waiting for it
/// (deadline passed, worker stopped).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn result_message(effect_id: u64, fencing_token: u64, outcome: Result<EffectOutput, EffectError>) -> pb::WorkerMessage {
    let outcome = match outcome {
        Ok(output) => pb::task_result::Outcome::Ok(pb::Success { value: output.value.as_ref().map(value::to_wire) }),
        Err(error) => pb::task_result::Outcome::Error(error.0),
    };
    pb::WorkerMessage {
        kind: Some(pb::worker_message::Kind::Result(pb::TaskResult {
            effect_id,
            fencing_token,
            outcome: Some(outcome),
        })),
    }
}

/// Sleeps; returns true when shutdown came first.
async fn sleep_or_shutdown<S: Future<Output = ()>>(
    duration: Duration,
    mut shutdown: Pin<&mut futures::future::Fuse<S>>,
) -> bool {
    if shutdown.is_terminated() {
        return true;
    }
    tokio::select! {
        _ = &mut shutdown => true,
        _ = tokio::time::sleep(duration) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientConfig;

    fn task(args: Vec<(&str, Value)>) -> EffectTask {
        EffectTask::from_wire(pb::Task {
            effect_id: 7,
            effect: "Cloud.SetNodeCount".into(),
            idempotency_key: "k".into(),
            attempt: 1,
            args: args
                .into_iter()
                .map(|(n, v)| pb::NamedValue { name: n.into(), value: Some(value::to_wire(&v)) })
                .collect(),
            fencing_token: 3,
            timeout_ms: 0,
        })
    }

    #[test]
    fn task_arguments_are_typed() {
        let t = task(vec![("pool", Value::Str("web".into())), ("count", Value::Int(5))]);
        assert_eq!(t.int_arg("count"), Some(5));
        assert_eq!(t.str_arg("pool"), Some("web"));
        assert_eq!(t.int_arg("pool"), None);
        assert_eq!(t.timeout, None);
    }

    #[tokio::test]
    async fn handlers_run_and_panics_become_errors() {
        let client = Client::new_lazy(ClientConfig::new(["127.0.0.1:1"])).unwrap();
        let worker = Worker::new(client)
            .handle("Cloud.SetNodeCount", |t: EffectTask| async move {
                Ok(EffectOutput::from(Value::Int(t.attempt as i64)))
            })
            .handle("Cloud.Panic", |_t: EffectTask| async move { panic!("boom") });
        let (tx, mut rx) = mpsc::channel(4);
        worker.execute(task(vec![]), Arc::default(), Arc::new(Semaphore::new(1)), tx.clone()).await;
        let mut panicking = task(vec![]);
        panicking.effect = "Cloud.Panic".into();
        worker.execute(panicking, Arc::default(), Arc::new(Semaphore::new(1)), tx).await;
        let first = rx.recv().await.unwrap();
        let second = rx.recv().await.unwrap();
        let outcome = |m: pb::WorkerMessage| match m.kind {
            Some(pb::worker_message::Kind::Result(r)) => r.outcome,
            _ => None,
        };
        assert!(matches!(outcome(first), Some(pb::task_result::Outcome::Ok(_))));
        assert_eq!(outcome(second), Some(pb::task_result::Outcome::Error("handler panicked".into())));
        assert_eq!(worker.stats().failed, 1);
    }

    /// A worker whose `Slow.Op` handler sleeps `sleep` and then sets the flag.
    fn slow_worker(sleep: Duration) -> (Worker, Arc<std::sync::atomic::AtomicBool>) {
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = finished.clone();
        let client = Client::new_lazy(ClientConfig::new(["127.0.0.1:1"])).unwrap();
        let worker = Worker::new(client).handle("Slow.Op", move |_t: EffectTask| {
            let flag = flag.clone();
            async move {
                tokio::time::sleep(sleep).await;
                flag.store(true, Ordering::SeqCst);
                Ok(EffectOutput::none())
            }
        });
        (worker, finished)
    }

    fn slow_task(timeout_ms: u64) -> EffectTask {
        let mut task = task(vec![]);
        task.effect = "Slow.Op".into();
        task.timeout = Some(Duration::from_millis(timeout_ms));
        task.deadline = Some(Instant::now() + Duration::from_millis(timeout_ms));
        task
    }

    fn error_of(message: pb::WorkerMessage) -> Option<String> {
        match message.kind {
            Some(pb::worker_message::Kind::Result(pb::TaskResult {
                outcome: Some(pb::task_result::Outcome::Error(error)),
                ..
            })) => Some(error),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_newer_attempt_of_an_effect_cancels_the_older_one_running_here() {
        // Both attempts delivered at once, as to a worker resumed after a
        // SIGSTOP longer than the effect timeout: only the newer may run.
        let (worker, finished) = slow_worker(Duration::from_millis(300));
        let mut tasks = Tasks::new(4);
        for attempt in [1, 2] {
            let mut task = slow_task(5_000);
            task.attempt = attempt;
            let lock = tasks.exclusive(&task.idempotency_key);
            let handle = tasks.running.spawn(worker.execute(task, lock, tasks.slots.clone(), tasks.results_tx.clone()));
            tasks.supersede(task_key(), attempt, handle);
        }
        let mut late = slow_task(5_000);
        late.attempt = 1;
        let lock = tasks.exclusive(&late.idempotency_key);
        let handle = tasks.running.spawn(worker.execute(late, lock, tasks.slots.clone(), tasks.results_tx.clone()));
        tasks.supersede(task_key(), 1, handle);
        let mut outcomes = 0;
        while let Some(joined) = tasks.running.join_next().await {
            outcomes += usize::from(joined.is_ok());
        }
        assert_eq!(outcomes, 1, "only attempt 2 ran to its end");
        assert!(finished.load(Ordering::SeqCst));
    }

    fn task_key() -> String {
        slow_task(1).idempotency_key
    }

    /// Counts handlers running now; dropped with its handler.
    struct Running(Arc<std::sync::atomic::AtomicUsize>);

    impl Drop for Running {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_newer_attempt_starts_only_once_the_older_one_it_cancels_has_stopped() {
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let overlapped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (count, flag) = (running.clone(), overlapped.clone());
        let client = Client::new_lazy(ClientConfig::new(["127.0.0.1:1"])).expect("client config");
        let worker = Worker::new(client).handle("Slow.Op", move |_t: EffectTask| {
            let (count, flag) = (count.clone(), flag.clone());
            async move {
                if count.fetch_add(1, Ordering::SeqCst) > 0 {
                    flag.store(true, Ordering::SeqCst);
                }
                let _running = Running(count);
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok(EffectOutput::none())
            }
        });
        for _ in 0..20 {
            let mut tasks = Tasks::new(4);
            for attempt in [1, 2] {
                let mut task = slow_task(5_000);
                task.attempt = attempt;
                let lock = tasks.exclusive(&task.idempotency_key);
                let handle =
                    tasks.running.spawn(worker.execute(task, lock, tasks.slots.clone(), tasks.results_tx.clone()));
                tasks.supersede(task_key(), attempt, handle);
                for _ in 0..100 {
                    if running.load(Ordering::SeqCst) > 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            while tasks.running.join_next().await.is_some() {}
        }
        assert!(!overlapped.load(Ordering::SeqCst), "a newer attempt ran while the older one had not stopped");
    }

    #[test]
    fn a_task_read_right_after_a_freeze_counts_from_the_freeze() {
        let clock = FreezeClock::new();
        let start = clock.origin;
        clock.tick(start + Duration::from_millis(50));
        assert_eq!(clock.arrival(start + Duration::from_millis(60)), start + Duration::from_millis(60), "no freeze");
        // Frozen from 50 ms to 3 s; a task read before the ticker ran again:
        assert_eq!(clock.arrival(start + Duration::from_secs(3)), start + Duration::from_millis(50));
        // The ticker saw the gap; a task read just after it still counts from 50 ms.
        clock.tick(start + Duration::from_secs(3));
        assert_eq!(clock.arrival(start + Duration::from_millis(3_100)), start + Duration::from_millis(50));
        // Long after the freeze, arrival is now again.
        for ms in (3_050..=3_400).step_by(50) {
            clock.tick(start + Duration::from_millis(ms));
        }
        let later = start + Duration::from_millis(3_410);
        assert_eq!(clock.arrival(later), later);
    }

    #[tokio::test]
    async fn a_handler_past_its_deadline_is_cancelled_not_left_running() {
        let (worker, finished) = slow_worker(Duration::from_millis(300));
        let (tx, mut rx) = mpsc::channel(4);
        worker.execute(slow_task(50), Arc::default(), Arc::new(Semaphore::new(1)), tx).await;
        assert_eq!(error_of(rx.recv().await.unwrap()).as_deref(), Some("handler timed out"));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!finished.load(Ordering::SeqCst), "the handler kept running after its deadline");
    }

    #[tokio::test]
    async fn the_deadline_counts_from_arrival_including_the_wait_for_a_slot() {
        let (worker, finished) = slow_worker(Duration::ZERO);
        let slots = Arc::new(Semaphore::new(1));
        let _busy = slots.clone().acquire_owned().await.unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let bounded =
            tokio::time::timeout(Duration::from_secs(2), worker.execute(slow_task(100), Arc::default(), slots, tx))
                .await;
        assert!(bounded.is_ok(), "the wait for a slot did not count toward the deadline");
        assert_eq!(error_of(rx.recv().await.unwrap()).as_deref(), Some("handler timed out"));
        assert!(!finished.load(Ordering::SeqCst), "the handler ran after its deadline");
    }

    #[tokio::test]
    async fn stopping_the_worker_cancels_its_handlers() {
        let (worker, finished) = slow_worker(Duration::from_millis(300));
        let (tx, _rx) = mpsc::channel(4);
        let mut running = JoinSet::new();
        running.spawn(worker.execute(slow_task(5_000), Arc::default(), Arc::new(Semaphore::new(1)), tx));
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(running);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!finished.load(Ordering::SeqCst), "the handler outlived its worker");
    }

    #[tokio::test]
    async fn a_worker_without_handlers_is_refused() {
        let client = Client::new_lazy(ClientConfig::new(["127.0.0.1:1"])).unwrap();
        assert!(Worker::new(client).run_until(async {}).await.is_err());
    }

    #[tokio::test]
    async fn shutdown_stops_a_worker_that_cannot_connect() {
        let client = Client::new_lazy(ClientConfig::new(["127.0.0.1:1"])).unwrap();
        let worker = Worker::new(client).handle("A.B", |_t: EffectTask| async { Ok(EffectOutput::none()) });
        let stats = tokio::time::timeout(
            Duration::from_secs(5),
            worker.run_until(tokio::time::sleep(Duration::from_millis(300))),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(stats.tasks, 0);
    }
}
