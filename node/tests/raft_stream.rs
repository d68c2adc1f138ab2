//! The Raft transport's AppendEntries stream, against fake peers on
//! loopback: a client's first append is unary (openraft's leadership check
//! makes a client for one call, and opening a stream would cost it a round
//! trip more within a heartbeat's timeout); later ones share one stream; a
//! reply that comes too late is never taken for the next call's, nor for an
//! unreachable peer; a stream the peer closed is reopened; a peer without
//! the stream gets unary calls.
//! And the clients of one peer share two connections, which reconnect
//! after the peer restarts.
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
    connections: AtomicUsize,
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
    tokio::spawn(serve(listener, peer, seen.clone()));
    (addr, seen)
}

/// Serves a fake peer on `listener`, counting its connections in `seen`.
async fn serve(listener: tokio::net::TcpListener, peer: Peer, seen: Arc<Seen>) {
    let service = RaftServer::new(FakePeer { peer, seen: seen.clone() });
    let incoming = TcpListenerStream::new(listener).inspect(move |_| {
        seen.connections.fetch_add(1, Ordering::SeqCst);
    });
    let _ = tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming).await;
}

/// A fake peer at `addr` in a runtime of its own, which the test shuts
/// down to kill the peer: its listener and every connection close at once.
fn start_apart(addr: &str, peer: Peer) -> (Arc<Seen>, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the peer");
    let listener = {
        let _inside = runtime.enter();
        rebind(addr)
    };
    let seen = Arc::new(Seen::default());
    runtime.spawn(serve(listener, peer, seen.clone()));
    (seen, runtime)
}

/// A listener on `addr`, which a peer killed a moment ago may still hold
/// (its runtime shuts down in the background): tried for up to 5 s.
fn rebind(addr: &str) -> tokio::net::TcpListener {
    let addr: std::net::SocketAddr = addr.parse().expect("a socket address");
    let mut tries = 0;
    loop {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        match socket.bind(addr).and_then(|()| socket.listen(128)) {
            Ok(listener) => return listener,
            Err(_) if tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(error) => panic!("bind {addr}: {error}"),
        }
    }
}

fn node(addr: &str) -> BasicNode {
    BasicNode { addr: addr.to_string() }
}

async fn client(addr: &str) -> lexum_node::network::PeerClient {
    Network::new(None, None).new_client(2, &node(addr)).await
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

/// The reply to a timed-out append must neither answer the next one nor
/// read as an unreachable peer: openraft backs a follower off for half a
/// second after `Unreachable`, so a reply held up by a slow sync (a disk
/// stall on every node at once) would stop commits for that half second.
#[tokio::test]
async fn a_late_reply_never_answers_the_next_append_nor_reads_as_an_unreachable_peer() {
    let (addr, seen) = start(Peer::SlowAt(1)).await;
    let mut client = client(&addr).await;
    assert_eq!(answered_at(&append(&mut client, 0, Duration::from_secs(5)).await), Some(0), "unary");
    let late = append(&mut client, 1, Duration::from_millis(100)).await;
    assert!(late.is_err(), "the append at 1 times out: {late:?}");
    assert!(
        matches!(late, Err(RPCError::Network(_)) | Err(RPCError::Timeout(_))),
        "a slow reply on the stream is a timeout, not an unreachable peer: {late:?}"
    );
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

#[tokio::test]
async fn every_client_of_a_peer_shares_one_control_and_one_bulk_connection() {
    let (addr, seen) = start(Peer::Streaming).await;
    let mut network = Network::new(None, None);
    // Twenty leadership checks: openraft makes a client for each one.
    for prev in 0..20 {
        let mut check = network.new_client(2, &node(&addr)).await;
        assert_eq!(answered_at(&append(&mut check, prev, Duration::from_secs(5)).await), Some(prev));
    }
    let mut replication = network.new_client(2, &node(&addr)).await;
    for prev in 0..5 {
        assert_eq!(answered_at(&append(&mut replication, prev, Duration::from_secs(5)).await), Some(prev));
    }
    assert_eq!(seen.unary.load(Ordering::SeqCst), 21, "each check, and the replication's first append");
    assert_eq!(seen.streams.load(Ordering::SeqCst), 1);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2, "a connection per check instead of one for all");
}

#[tokio::test]
async fn a_peer_that_restarted_is_reached_again_on_the_shared_connections() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|free| free.local_addr())
        .expect("a free loopback port")
        .to_string();
    let (_, first) = start_apart(&addr, Peer::Streaming);
    let mut network = Network::new(None, None);
    let mut client = network.new_client(2, &node(&addr)).await;
    for prev in 0..3 {
        assert_eq!(answered_at(&append(&mut client, prev, Duration::from_secs(5)).await), Some(prev));
    }

    first.shutdown_background();
    let (seen, second) = start_apart(&addr, Peer::Streaming);

    // openraft retries through new clients from the same network, and the
    // replication client's own retries; neither may stay on a dead connection.
    let mut answered = (None, None);
    for _ in 0..20 {
        let mut check = network.new_client(2, &node(&addr)).await;
        answered.0 = answered.0.or(answered_at(&append(&mut check, 7, Duration::from_secs(1)).await));
        answered.1 = answered.1.or(answered_at(&append(&mut client, 8, Duration::from_secs(1)).await));
        if answered.0.is_some() && answered.1.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    second.shutdown_background();
    assert_eq!(answered, (Some(7), Some(8)), "the restarted peer was not reached again");
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2, "control and bulk connected again");
}
