//! The worker API (`lexum.v1.Worker`): one bidirectional stream per worker.
//! Followers answer with a redirect; the leader registers the worker with
//! the dispatcher and relays its results.

use crate::dispatcher::{Dispatcher, RegisterError, MAX_WORKER_CONCURRENCY};
use lexum_proto::v1 as pb;
use lexum_proto::v1::worker_server::Worker;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// How long a new stream may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// The worker API of one node.
pub struct WorkerApi {
    dispatcher: Arc<Dispatcher>,
}

impl WorkerApi {
    /// Serves workers through `dispatcher`.
    pub fn new(dispatcher: Arc<Dispatcher>) -> WorkerApi {
        WorkerApi { dispatcher }
    }
}

type CommandStream = Pin<Box<dyn Stream<Item = Result<pb::WorkerCommand, Status>> + Send>>;

fn redirect(leader: Option<String>) -> Response<CommandStream> {
    let command = pb::WorkerCommand {
        kind: Some(pb::worker_command::Kind::Redirect(pb::Redirect { leader: leader.unwrap_or_default() })),
    };
    Response::new(Box::pin(tokio_stream::once(Ok(command))))
}

#[tonic::async_trait]
impl Worker for WorkerApi {
    type AttachStream = CommandStream;

    async fn attach(
        &self,
        mut request: Request<Streaming<pb::WorkerMessage>>,
    ) -> Result<Response<CommandStream>, Status> {
        // The worker's place under `[limits]` max_workers, held until its
        // stream ends.
        let permit = super::limits::Permit::take(&mut request);
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.next())
            .await
            .map_err(|_| Status::deadline_exceeded("no hello from worker"))?;
        let hello = match first {
            Some(Ok(pb::WorkerMessage { kind: Some(pb::worker_message::Kind::Hello(hello)) })) => hello,
            Some(Err(status)) => return Err(status),
            _ => return Err(Status::invalid_argument("the first worker message must be a hello")),
        };
        if hello.effects.is_empty() {
            return Err(Status::invalid_argument("a worker must serve at least one effect"));
        }
        // Room for every task the worker may hold and an ack for each, so a
        // healthy worker's stream never refuses a task the leader committed.
        let (commands, outbound) = mpsc::channel(command_capacity(hello.concurrency));
        let conn = match self.dispatcher.register(&hello, commands) {
            Ok(conn) => conn,
            Err(RegisterError::NotLeader(leader)) => return Ok(redirect(leader)),
        };
        let dispatcher = self.dispatcher.clone();
        tokio::spawn(async move {
            let _permit = permit;
            while let Some(message) = inbound.next().await {
                match message {
                    Ok(pb::WorkerMessage { kind: Some(pb::worker_message::Kind::Result(result)) }) => {
                        let dispatcher = dispatcher.clone();
                        tokio::spawn(async move {
                            let ack = dispatcher.report(conn, result).await;
                            let command = pb::WorkerCommand { kind: Some(pb::worker_command::Kind::Ack(ack)) };
                            dispatcher.send_to(conn, command);
                        });
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            dispatcher.unregister(conn);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(outbound).map(Ok))))
    }
}

/// Commands a worker's stream buffers: its tasks at the concurrency it
/// announced (clamped as the dispatcher clamps it), an ack for each, and a
/// little room for redirects.
fn command_capacity(concurrency: u32) -> usize {
    2 * concurrency.clamp(1, MAX_WORKER_CONCURRENCY) as usize + 16
}
