//! The Raft transport's AppendEntries stream, against fake peers on
//! loopback: a client's first append is unary (openraft's leadership check
//! makes a client for one call, and opening a stream would cost it a round
//! trip more within a heartbeat's timeout); later ones share one stream; a
//! reply that comes too late is never taken for the next call's; a stream
//! the peer closed is reopened; a peer without the stream gets unary calls.
//!
//! Each fake peer answers an AppendEntries with `PartialSuccess` at the
//! request's `prev_log_id`, so every reply names the request it answers.

use futures::stream::BoxStream;
use futures::StreamExt;
use lexum_node::network::Network;
use lexum_node::raft_types::{LogId, NodeId, TypeConfig};
use lexum_proto::v1::raft_server::{Raft as RaftService, RaftServer};
use lexum_proto::v1::RaftPayload;
use openraft::error::{Infallible, RPCError, RaftError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use openraft::{BasicNode, CommittedLeaderId, Vote};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, Streaming};

/// How a fake peer behaves.
#[derive(Clone, Copy)]
enum Peer {
    /// Serves the stream and answers every request on it.
    Streaming,
    /// Answers the request at this `prev_log_id` index only after 500 ms.
    SlowAt(u64),
    /// Ends the stream after its first reply.
    ClosesAfterOne,
    /// Has no `AppendStream` (an older version): unary calls only.
    UnaryOnly,
}

/// What a fake peer saw.
#[derive(Default)]
struct Seen {
    streams: AtomicUsize,
    streamed: AtomicUsize,
    unary: AtomicUsize,
}

struct FakePeer {
    peer: Peer,
    seen: Arc<Seen>,
}

fn request(prev: u64) -> AppendEntriesRequest<TypeConfig> {
    AppendEntriesRequest {
        vote: Vote::new_committed(1, 1),
        prev_log_id: Some(log_id(prev)),
        leader_commit: None,
        entries: Vec::new(),
    }
}

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

/// The reply a fake peer sends to `payload`: success up to its `prev_log_id`.
fn answer(payload: &RaftPayload) -> Result<RaftPayload, Status> {
    let request: AppendEntriesRequest<TypeConfig> =
        postcard::from_bytes(&payload.data).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let reply: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId, Infallible>> =
        Ok(AppendEntriesResponse::PartialSuccess(request.prev_log_id));
    let data = postcard::to_stdvec(&reply).map_err(|e| Status::internal(e.to_string()))?;
    Ok(RaftPayload { data })
}

fn prev_index(payload: &RaftPayload) -> Option<u64> {
    let request: AppendEntriesRequest<TypeConfig> = postcard::from_bytes(&payload.data).ok()?;
    request.prev_log_id.map(|l| l.index)
}

#[tonic::async_trait]
impl RaftService for FakePeer {
    type AppendStreamStream = BoxStream<'static, Result<RaftPayload, Status>>;

    async fn append_stream(
        &self,
        request: Request<Streaming<RaftPayload>>,
    ) -> Result<Response<Self::AppendStreamStream>, Status> {
        if let Peer::UnaryOnly = self.peer {
            return Err(Status::unimplemented("no AppendStream here"));
        }
        self.seen.streams.fetch_add(1, Ordering::SeqCst);
        let (peer, seen) = (self.peer, self.seen.clone());
        let replies = futures::stream::unfold((request.into_inner(), 0usize), move |(mut requests, answered)| {
            let seen = seen.clone();
            async move {
                if matches!(peer, Peer::ClosesAfterOne) && answered == 1 {
                    return None;
                }
                let payload = requests.message().await.ok()??;
                seen.streamed.fetch_add(1, Ordering::SeqCst);
                if let Peer::SlowAt(index) = peer {
                    if prev_index(&payload) == Some(index) {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                Some((answer(&payload), (requests, answered + 1)))
            }
        });
        Ok(Response::new(replies.boxed()))
    }

    async fn append_entries(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        self.seen.unary.fetch_add(1, Ordering::SeqCst);
        answer(&request.into_inner()).map(Response::new)
    }

    async fn vote(&self, _: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn install_snapshot(&self, _: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

/// Starts a fake peer on loopback and returns its address and what it saw.
async fn start(peer: Peer) -> (String, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("local address").to_string();
    let seen = Arc::new(Seen::default());
    let service = RaftServer::new(FakePeer { peer, seen: seen.clone() });
    tokio::spawn(
        tonic::transport::Server::builder().add_service(service).serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (addr, seen)
}

async fn client(addr: &str) -> lexum_node::network::PeerClient {
    Network { token: None, tls: None }.new_client(2, &BasicNode { addr: addr.to_string() }).await
}

type AppendResult = Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, Infallible>>>;

async fn append(client: &mut lexum_node::network::PeerClient, prev: u64, ttl: Duration) -> AppendResult {
    client.append_entries(request(prev), RPCOption::new(ttl)).await
}

fn answered_at(result: &AppendResult) -> Option<u64> {
    match result {
        Ok(AppendEntriesResponse::PartialSuccess(Some(log_id))) => Some(log_id.index),
        _ => None,
    }
}

#[tokio::test]
async fn a_clients_first_append_is_unary_and_the_rest_share_one_stream() {
    let (addr, seen) = start(Peer::Streaming).await;
    let mut once = client(&addr).await;
    assert_eq!(answered_at(&append(&mut once, 1, Duration::from_secs(5)).await), Some(1));
    assert_eq!(seen.unary.load(Ordering::SeqCst), 1, "a client used once opens no stream");
    assert_eq!(seen.streams.load(Ordering::SeqCst), 0);

    let mut client = client(&addr).await;
    for prev in 1..=20 {
        let result = append(&mut client, prev, Duration::from_secs(5)).await;
        assert_eq!(answered_at(&result), Some(prev), "reply to the append at {prev}: {result:?}");
    }
    assert_eq!(seen.unary.load(Ordering::SeqCst), 2, "the new client's first append");
    assert_eq!(seen.streams.load(Ordering::SeqCst), 1, "one stream for all the others");
    assert_eq!(seen.streamed.load(Ordering::SeqCst), 19);
}

#[tokio::test]
async fn a_late_reply_never_answers_the_next_append() {
    let (addr, seen) = start(Peer::SlowAt(1)).await;
    let mut client = client(&addr).await;
    assert_eq!(answered_at(&append(&mut client, 0, Duration::from_secs(5)).await), Some(0), "unary");
    let late = append(&mut client, 1, Duration::from_millis(100)).await;
    assert!(late.is_err(), "the append at 1 times out: {late:?}");
    // The reply to the append at 1 arrives while this call waits; taking it
    // would tell the leader the follower matched index 1 when asked about 2.
    let next = append(&mut client, 2, Duration::from_secs(5)).await;
    assert_eq!(answered_at(&next), Some(2), "{next:?}");
    assert_eq!(seen.streams.load(Ordering::SeqCst), 2, "the timed-out call's stream was dropped");
}

#[tokio::test]
async fn a_stream_the_peer_closed_is_opened_again() {
    let (addr, seen) = start(Peer::ClosesAfterOne).await;
    let mut client = client(&addr).await;
    assert_eq!(answered_at(&append(&mut client, 0, Duration::from_secs(5)).await), Some(0), "unary");
    assert_eq!(answered_at(&append(&mut client, 1, Duration::from_secs(5)).await), Some(1));
    // The peer ended the stream: the next call fails (openraft retries it),
    // and the one after that goes out on a new stream.
    let mut answered = None;
    for _ in 0..3 {
        answered = answered_at(&append(&mut client, 2, Duration::from_secs(5)).await);
        if answered.is_some() {
            break;
        }
    }
    assert_eq!(answered, Some(2));
    assert_eq!(seen.streams.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_peer_without_the_stream_gets_unary_appends() {
    let (addr, seen) = start(Peer::UnaryOnly).await;
    let mut client = client(&addr).await;
    for prev in 1..=3 {
        let result = append(&mut client, prev, Duration::from_secs(5)).await;
        assert_eq!(answered_at(&result), Some(prev), "{result:?}");
    }
    assert_eq!(seen.unary.load(Ordering::SeqCst), 3, "the first append, then the two after the refusal");
    assert_eq!(seen.streams.load(Ordering::SeqCst), 0);
}
