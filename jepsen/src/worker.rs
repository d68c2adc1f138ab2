//! A minimal worker for tests, speaking the wire protocol directly: it
//! follows redirects, runs a handler per task after an optional delay, and
//! records every task and ack so checkers can inspect them.

use lexum_proto::v1 as pb;
use lexum_proto::v1::worker_client::WorkerClient;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

/// What the worker saw.
#[derive(Default, Debug)]
pub struct WorkerLog {
    /// Every task received.
    pub tasks: Vec<pb::Task>,
    /// Every ack received.
    pub acks: Vec<pb::ResultAck>,
    /// Every redirect received.
    pub redirects: Vec<String>,
    /// Address of the node whose stream delivered tasks, per task.
    pub served_by: Vec<String>,
    /// When each task arrived, per task.
    pub arrived: Vec<std::time::Instant>,
}

/// Decides a task's result: `Ok(value)` or `Err(message)`.
pub type Handler = Arc<dyn Fn(&pb::Task) -> Result<Option<pb::Value>, String> + Send + Sync>;

/// Test worker settings.
#[derive(Clone)]
pub struct TestWorker {
    /// Identity reported in `Hello`.
    pub id: String,
    /// Effects served.
    pub effects: Vec<String>,
    /// Delay before answering each task.
    pub delay: Duration,
    /// Tasks the leader may hand it at once (each runs on its own task).
    pub concurrency: u32,
    /// Result of each task.
    pub handler: Handler,
}

/// An int argument of a task, by name.
pub fn int_arg(task: &pb::Task, name: &str) -> Option<i64> {
    task.args.iter().find(|a| a.name == name).and_then(|a| match a.value.as_ref()?.kind {
        Some(pb::value::Kind::Int(n)) => Some(n),
        _ => None,
    })
}

/// An int value for results.
pub fn int_value(n: i64) -> pb::Value {
    pb::Value { kind: Some(pb::value::Kind::Int(n)) }
}

impl TestWorker {
    /// Runs until `stop` flips to true, reconnecting (to `endpoints` in turn
    /// or to a redirect target) whenever the stream ends. Bounded by `max_runtime`.
    pub async fn run(
        self,
        endpoints: Vec<String>,
        log: Arc<Mutex<WorkerLog>>,
        stop: tokio::sync::watch::Receiver<bool>,
        max_runtime: Duration,
    ) {
        let deadline = tokio::time::Instant::now() + max_runtime;
        let mut next: Option<String> = None;
        let mut turn = 0usize;
        while !*stop.borrow() && tokio::time::Instant::now() < deadline {
            let addr = next.take().unwrap_or_else(|| {
                turn += 1;
                endpoints[turn % endpoints.len()].clone()
            });
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(remaining, self.session(&addr, &log, stop.clone())).await {
                Ok(Some(redirect)) if !redirect.is_empty() => next = Some(redirect),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// One stream; returns the redirect target if told to go elsewhere.
    async fn session(
        &self,
        addr: &str,
        log: &Arc<Mutex<WorkerLog>>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Option<String> {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).ok()?;
        let channel = endpoint.connect_timeout(Duration::from_millis(500)).connect().await.ok()?;
        let mut client = WorkerClient::new(channel);
        let (tx, rx) = mpsc::channel(64);
        let hello =
            pb::Hello { worker_id: self.id.clone(), effects: self.effects.clone(), concurrency: self.concurrency };
        tx.send(pb::WorkerMessage { kind: Some(pb::worker_message::Kind::Hello(hello)) }).await.ok()?;
        let mut inbound = client.attach(ReceiverStream::new(rx)).await.ok()?.into_inner();
        loop {
            let message = tokio::select! {
                m = inbound.next() => m,
                _ = stop.changed() => return None,
            };
            let command = match message {
                Some(Ok(command)) => command,
                _ => return None,
            };
            match command.kind {
                Some(pb::worker_command::Kind::Redirect(r)) => {
                    if let Ok(mut log) = log.lock() {
                        log.redirects.push(r.leader.clone());
                    }
                    return Some(r.leader);
                }
                Some(pb::worker_command::Kind::Ack(ack)) => {
                    if let Ok(mut log) = log.lock() {
                        log.acks.push(ack);
                    }
                }
                Some(pb::worker_command::Kind::Task(task)) => {
                    if let Ok(mut log) = log.lock() {
                        log.tasks.push(task.clone());
                        log.served_by.push(addr.to_string());
                        log.arrived.push(std::time::Instant::now());
                    }
                    let (tx, handler, delay) = (tx.clone(), self.handler.clone(), self.delay);
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let outcome = match handler(&task) {
                            Ok(value) => pb::task_result::Outcome::Ok(pb::Success { value }),
                            Err(error) => pb::task_result::Outcome::Error(error),
                        };
                        let result = pb::TaskResult {
                            effect_id: task.effect_id,
                            fencing_token: task.fencing_token,
                            outcome: Some(outcome),
                        };
                        let _ =
                            tx.send(pb::WorkerMessage { kind: Some(pb::worker_message::Kind::Result(result)) }).await;
                    });
                }
                None => {}
            }
        }
    }
}
