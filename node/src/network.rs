//! Raft transport, client side: openraft messages as postcard bytes over
//! tonic.
//!
//! A node keeps two lazily connected HTTP/2 connections per peer, shared by
//! every client openraft makes for that peer: `control` for messages
//! without log entries (votes, heartbeats, the leadership check behind
//! every linearizable read) and `bulk` for entries and snapshots. openraft
//! 0.9 makes a new client for each leadership check, so without the
//! sharing every read cost a TCP and HTTP/2 handshake per follower and left
//! a socket in TIME_WAIT; a read-heavy client could run the leader out of
//! ephemeral ports. Keeping heartbeats off the bulk connection means a
//! snapshot or a large append never holds one up behind it. HTTP/2 pings
//! (every 5 s, also while idle; 5 s to answer) close a connection that died
//! without a reset, and the next call connects again.
//!
//! AppendEntries go over one long-lived `AppendStream` per peer: a request
//! and its reply are one message each way on a stream that already exists.
//! A client's first AppendEntries is a unary call and the stream opens on
//! the second: openraft's leadership check (behind every linearizable read)
//! makes a client for a single heartbeat, and opening a stream first would
//! cost that heartbeat a round trip more within its timeout.
//!
//! Any failure, timeout or cancellation mid-call drops the stream (a late
//! reply must never answer the next request), and the next call opens a
//! new one. A peer that does not know the stream (`Unimplemented`, an
//! older version) gets unary calls from then on.
//!
//! Transport failures map to `Unreachable` (openraft backs off); a reply
//! that times out maps to a network error (openraft sends again at once); an error
//! returned by the remote Raft maps to `RemoteError`; entries that would not
//! fit in one message map to `PayloadTooLarge`, so openraft sends fewer at
//! a time instead of failing the same way forever.

use crate::raft_types::{NodeId, TypeConfig};
use crate::service::raft::RaftReply;
use lexum_proto::v1::raft_client::RaftClient;
use lexum_proto::v1::RaftPayload;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// Bytes the protobuf wrapper adds around a payload (a tag and a length).
const PROTOBUF_FRAMING: usize = 16;

/// Creates [`PeerClient`]s; the clients of one peer share its connections.
#[derive(Clone)]
pub struct Network {
    token: Option<String>,
    tls: Option<ClientTlsConfig>,
    peers: Arc<Mutex<HashMap<NodeId, PeerChannels>>>,
}

impl Network {
    /// A network that sends `token` (the peer token, if the cluster has
    /// one) and connects with `tls` (if set).
    pub fn new(token: Option<String>, tls: Option<ClientTlsConfig>) -> Network {
        Network { token, tls, peers: Arc::default() }
    }

    /// The connections to `target` at `addr`: the existing ones, unless the
    /// peer's address changed.
    fn channels(&self, target: NodeId, addr: &str) -> PeerChannels {
        let mut peers = self.peers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match peers.get(&target) {
            Some(channels) if channels.addr == addr => channels.clone(),
            _ => {
                let channels = PeerChannels {
                    addr: addr.to_string(),
                    control: self.connect_lazy(addr),
                    bulk: self.connect_lazy(addr),
                };
                peers.insert(target, channels.clone());
                channels
            }
        }
    }

    /// A channel that connects on first use and again after a failure.
    /// A bad address or TLS setting gives none: every RPC to this peer then
    /// reports it unreachable, with the reason.
    fn connect_lazy(&self, addr: &str) -> Option<Channel> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .ok()?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let endpoint = match &self.tls {
            Some(tls) => endpoint.tls_config(tls.clone()).ok()?,
            None => endpoint,
        };
        Some(endpoint.connect_lazy())
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        let channels = self.channels(target, &node.addr);
        PeerClient { target, channels, token: self.token.clone(), append: AppendTransport::Unused }
    }
}

/// The two connections to one peer (see the module documentation).
#[derive(Clone)]
struct PeerChannels {
    /// The address they connect to.
    addr: String,
    /// Messages without log entries: votes and heartbeats.
    control: Option<Channel>,
    /// Log entries (the AppendStream among them) and snapshots.
    bulk: Option<Channel>,
}

/// Which of a peer's connections a message takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    /// [`PeerChannels::control`].
    Control,
    /// [`PeerChannels::bulk`].
    Bulk,
}

impl Lane {
    /// The lane of a `method` call carrying `entries` log entries.
    fn of(method: RaftMethod, entries: usize) -> Lane {
        match method {
            RaftMethod::Vote => Lane::Control,
            RaftMethod::AppendEntries if entries == 0 => Lane::Control,
            RaftMethod::AppendEntries | RaftMethod::InstallSnapshot => Lane::Bulk,
        }
    }
}

/// openraft's client for one peer.
pub struct PeerClient {
    target: NodeId,
    channels: PeerChannels,
    token: Option<String>,
    append: AppendTransport,
}

/// How AppendEntries reach the peer.
enum AppendTransport {
    /// None sent yet: the first goes unary.
    Unused,
    /// On a stream; `None` until opened, and while a call holds it.
    Stream(Option<Box<AppendStream>>),
    /// One unary call each: the peer does not serve the stream.
    Unary,
}

/// An open `AppendStream`: requests go out on `requests`, replies come
/// back on `replies` in the same order.
struct AppendStream {
    requests: mpsc::Sender<RaftPayload>,
    replies: tonic::Streaming<RaftPayload>,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

/// A transport failure as openraft sees it.
type TransportError = RPCError<NodeId, BasicNode, openraft::error::Infallible>;

impl PeerClient {
    /// Sends `request` (carrying `entries` log entries) and decodes the reply.
    async fn call<Req, Resp, E>(
        &mut self,
        method: RaftMethod,
        request: &Req,
        entries: usize,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let data = postcard::to_stdvec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if data.len() + PROTOBUF_FRAMING > crate::service::RAFT_MESSAGE_LIMIT {
            if let Some(too_large) = fewer_entries(method, entries) {
                return Err(RPCError::PayloadTooLarge(too_large));
            }
        }
        let payload = RaftPayload { data };
        let streamed = method == RaftMethod::AppendEntries && matches!(self.append, AppendTransport::Stream(_));
        if method == RaftMethod::AppendEntries && matches!(self.append, AppendTransport::Unused) {
            self.append = AppendTransport::Stream(None);
        }
        let reply = if streamed {
            match tokio::time::timeout(option.hard_ttl(), self.call_on_stream(payload)).await {
                Ok(Err(StreamCall::Unimplemented(payload))) => {
                    tracing::info!(peer = self.target, "peer has no AppendStream: unary AppendEntries from now on");
                    self.append = AppendTransport::Unary;
                    self.call_unary(method, Lane::of(method, entries), payload, option).await
                }
                Ok(Err(StreamCall::Failed(error))) => Err(error),
                Ok(Ok(reply)) => Ok(reply),
                // The peer answers, only late (a slow sync): not
                // `Unreachable`, after which openraft would leave it alone
                // for half a second. The stream went with the dropped call.
                Err(_) => Err(RPCError::Network(NetworkError::new(&std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "AppendStream reply timed out",
                )))),
            }
        } else {
            self.call_unary(method, Lane::of(method, entries), payload, option).await
        };
        let reply: RaftReply<Resp, RaftError<NodeId, E>> =
            postcard::from_bytes(&reply.map_err(widen)?.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        match reply {
            Ok(resp) => Ok(resp),
            Err(err) => Err(RPCError::RemoteError(RemoteError::new(self.target, err))),
        }
    }

    /// A client on the peer's connection for `lane`, or why there is none.
    // The error is openraft's RPCError, which the caller returns as is.
    #[allow(clippy::result_large_err)]
    fn client(&self, lane: Lane) -> Result<RaftClient<Channel>, TransportError> {
        let channel = match lane {
            Lane::Control => &self.channels.control,
            Lane::Bulk => &self.channels.bulk,
        };
        let Some(channel) = channel.clone() else {
            let err = std::io::Error::other(format!("bad address or TLS settings for node {}", self.target));
            return Err(RPCError::Unreachable(Unreachable::new(&err)));
        };
        Ok(RaftClient::new(channel)
            .max_decoding_message_size(crate::service::RAFT_MESSAGE_LIMIT)
            .max_encoding_message_size(crate::service::RAFT_MESSAGE_LIMIT))
    }

    /// `message` with the peer token, if the cluster has one.
    fn with_token<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            if let Ok(value) = format!("Bearer {token}").parse() {
                request.metadata_mut().insert(lexum_proto::AUTH_METADATA_KEY, value);
            }
        }
        request
    }

    /// One unary call on the connection for `lane`.
    async fn call_unary(
        &self,
        method: RaftMethod,
        lane: Lane,
        payload: RaftPayload,
        option: &RPCOption,
    ) -> Result<RaftPayload, TransportError> {
        let mut client = self.client(lane)?;
        let mut request = self.with_token(payload);
        request.set_timeout(option.hard_ttl());
        let reply = match method {
            RaftMethod::AppendEntries => client.append_entries(request).await,
            RaftMethod::Vote => client.vote(request).await,
            RaftMethod::InstallSnapshot => client.install_snapshot(request).await,
        };
        reply.map(tonic::Response::into_inner).map_err(status_to_error)
    }

    /// One request and its reply on the AppendStream, opened first if need
    /// be. The stream is put back only after a whole exchange, so a call
    /// that fails or is dropped half-way leaves none behind.
    async fn call_on_stream(&mut self, payload: RaftPayload) -> Result<RaftPayload, StreamCall> {
        let open = match &mut self.append {
            AppendTransport::Stream(open) => open.take(),
            AppendTransport::Unused | AppendTransport::Unary => None,
        };
        let mut stream = match open {
            Some(stream) => stream,
            None => match self.open_stream().await {
                Ok(stream) => stream,
                Err(Opening::Unimplemented) => return Err(StreamCall::Unimplemented(payload)),
                Err(Opening::Failed(error)) => return Err(StreamCall::Failed(error)),
            },
        };
        stream.requests.send(payload).await.map_err(|_| closed())?;
        let reply = match stream.replies.message().await {
            Ok(Some(reply)) => reply,
            Ok(None) => return Err(closed()),
            Err(status) => return Err(StreamCall::Failed(status_to_error(status))),
        };
        self.append = AppendTransport::Stream(Some(stream));
        Ok(reply)
    }

    async fn open_stream(&self) -> Result<Box<AppendStream>, Opening> {
        let mut client = self.client(Lane::Bulk).map_err(Opening::Failed)?;
        let (requests, outgoing) = mpsc::channel(1);
        let replies = match client.append_stream(self.with_token(ReceiverStream::new(outgoing))).await {
            Ok(replies) => replies.into_inner(),
            Err(status) if status.code() == tonic::Code::Unimplemented => return Err(Opening::Unimplemented),
            Err(status) => return Err(Opening::Failed(status_to_error(status))),
        };
        Ok(Box::new(AppendStream { requests, replies }))
    }
}

/// Why a call on the AppendStream did not get its reply.
enum StreamCall {
    /// The peer does not serve the stream; the request, unsent.
    Unimplemented(RaftPayload),
    /// The stream or connection failed.
    Failed(TransportError),
}

/// Why an AppendStream could not be opened.
enum Opening {
    /// The peer does not serve the stream.
    Unimplemented,
    /// The connection failed or the peer refused.
    Failed(TransportError),
}

fn closed() -> StreamCall {
    let err = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "AppendStream closed by the peer");
    StreamCall::Failed(RPCError::Unreachable(Unreachable::new(&err)))
}

fn status_to_error(status: tonic::Status) -> TransportError {
    match status.code() {
        // Connection-level failures: openraft backs off before retrying.
        tonic::Code::Unavailable | tonic::Code::Unauthenticated => RPCError::Unreachable(Unreachable::new(&status)),
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

/// A transport failure as the error type of any Raft RPC.
fn widen<E: std::error::Error>(error: TransportError) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
    match error {
        RPCError::Unreachable(e) => RPCError::Unreachable(e),
        RPCError::Network(e) => RPCError::Network(e),
        RPCError::PayloadTooLarge(e) => RPCError::PayloadTooLarge(e),
        RPCError::Timeout(e) => RPCError::Timeout(e),
        RPCError::RemoteError(e) => match e.source {},
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RaftMethod {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(RaftMethod::AppendEntries, &rpc, rpc.entries.len(), &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(RaftMethod::InstallSnapshot, &rpc, 0, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(RaftMethod::Vote, &rpc, 0, &option).await
    }
}

/// For an `AppendEntries` of `entries` entries that is over the message
/// limit: ask openraft to send half as many. `None` when fewer is not
/// possible (one entry, or another method).
fn fewer_entries(method: RaftMethod, entries: usize) -> Option<PayloadTooLarge> {
    (method == RaftMethod::AppendEntries && entries > 1).then(|| PayloadTooLarge::new_entries_hint(entries as u64 / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_and_votes_take_the_control_lane_and_entries_the_bulk_one() {
        assert_eq!(Lane::of(RaftMethod::AppendEntries, 0), Lane::Control);
        assert_eq!(Lane::of(RaftMethod::Vote, 0), Lane::Control);
        assert_eq!(Lane::of(RaftMethod::AppendEntries, 1), Lane::Bulk);
        assert_eq!(Lane::of(RaftMethod::InstallSnapshot, 0), Lane::Bulk);
    }

    #[test]
    fn an_oversized_append_asks_for_half_the_entries() {
        let hint = fewer_entries(RaftMethod::AppendEntries, 300).map(|t| t.entries_hint());
        assert_eq!(hint, Some(150));
        assert_eq!(fewer_entries(RaftMethod::AppendEntries, 3).map(|t| t.entries_hint()), Some(1));
        assert!(fewer_entries(RaftMethod::AppendEntries, 1).is_none(), "one entry cannot be split");
        assert!(fewer_entries(RaftMethod::Vote, 0).is_none());
    }
}
