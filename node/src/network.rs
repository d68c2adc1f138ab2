//! Raft transport, client side: openraft messages as postcard bytes over
//! tonic, one lazily connected channel per peer.
//!
//! Transport failures map to `Unreachable` (openraft backs off); an error
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
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// Bytes the protobuf wrapper adds around a payload (a tag and a length).
const PROTOBUF_FRAMING: usize = 16;

/// Creates one [`PeerClient`] per target node.
#[derive(Clone)]
pub struct Network {
    /// Bearer token sent to peers, if the cluster uses one.
    pub token: Option<String>,
    /// TLS settings for outgoing peer connections.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let channel = Endpoint::from_shared(format!("{scheme}://{}", node.addr)).ok().and_then(|endpoint| {
            let endpoint = endpoint
                .connect_timeout(Duration::from_millis(500))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(5));
            // A bad address or TLS setting leaves no channel: every RPC to
            // this peer then reports it unreachable, with the reason.
            let endpoint = match &self.tls {
                Some(tls) => endpoint.tls_config(tls.clone()).ok()?,
                None => endpoint,
            };
            Some(endpoint.connect_lazy())
        });
        PeerClient { target, channel, token: self.token.clone() }
    }
}

/// The connection to one peer.
pub struct PeerClient {
    target: NodeId,
    channel: Option<Channel>,
    token: Option<String>,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerClient {
    /// Sends `request` (carrying `entries` log entries) and decodes the reply.
    async fn call<Req, Resp, E>(
        &self,
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
        let Some(channel) = self.channel.clone() else {
            let err = std::io::Error::other(format!("bad address or TLS settings for node {}", self.target));
            return Err(RPCError::Unreachable(Unreachable::new(&err)));
        };
        let data = postcard::to_stdvec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if data.len() + PROTOBUF_FRAMING > crate::service::RAFT_MESSAGE_LIMIT {
            if let Some(too_large) = fewer_entries(method, entries) {
                return Err(RPCError::PayloadTooLarge(too_large));
            }
        }
        let mut grpc_request = tonic::Request::new(RaftPayload { data });
        grpc_request.set_timeout(option.hard_ttl());
        if let Some(token) = &self.token {
            if let Ok(value) = format!("Bearer {token}").parse() {
                grpc_request.metadata_mut().insert(lexum_proto::AUTH_METADATA_KEY, value);
            }
        }
        let mut client = RaftClient::new(channel)
            .max_decoding_message_size(crate::service::RAFT_MESSAGE_LIMIT)
            .max_encoding_message_size(crate::service::RAFT_MESSAGE_LIMIT);
        let reply = match method {
            RaftMethod::AppendEntries => client.append_entries(grpc_request).await,
            RaftMethod::Vote => client.vote(grpc_request).await,
            RaftMethod::InstallSnapshot => client.install_snapshot(grpc_request).await,
        };
        let payload = reply
            .map_err(|status| match status.code() {
                // Connection-level failures: openraft backs off before retrying.
                tonic::Code::Unavailable | tonic::Code::Unauthenticated => {
                    RPCError::Unreachable(Unreachable::new(&status))
                }
                _ => RPCError::Network(NetworkError::new(&status)),
            })?
            .into_inner();
        let reply: RaftReply<Resp, RaftError<NodeId, E>> =
            postcard::from_bytes(&payload.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        match reply {
            Ok(resp) => Ok(resp),
            Err(err) => Err(RPCError::RemoteError(RemoteError::new(self.target, err))),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
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
    fn an_oversized_append_asks_for_half_the_entries() {
        let hint = fewer_entries(RaftMethod::AppendEntries, 300).map(|t| t.entries_hint());
        assert_eq!(hint, Some(150));
        assert_eq!(fewer_entries(RaftMethod::AppendEntries, 3).map(|t| t.entries_hint()), Some(1));
        assert!(fewer_entries(RaftMethod::AppendEntries, 1).is_none(), "one entry cannot be split");
        assert!(fewer_entries(RaftMethod::Vote, 0).is_none());
    }
}
