//! Raft transport, server side: decodes openraft messages and hands them to
//! the local Raft.
//!
//! A leader sends AppendEntries on one long-lived stream per follower
//! (`AppendStream`); each request there is answered, in order, before the
//! next is read, by the task serving the stream. The unary
//! `AppendEntries` stays for peers that do not open the stream.

use crate::raft_types::Raft;
use futures::stream::BoxStream;
use futures::StreamExt;
use lexum_proto::v1::raft_server::Raft as RaftService;
use lexum_proto::v1::RaftPayload;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status, Streaming};

/// What a Raft RPC returns over the wire: the response or the remote Raft's error.
pub type RaftReply<T, E> = Result<T, E>;

/// The Raft gRPC service of one node.
pub struct RaftTransport {
    raft: Raft,
}

impl RaftTransport {
    /// Serves `raft`.
    pub fn new(raft: Raft) -> RaftTransport {
        RaftTransport { raft }
    }
}

fn decode<T: DeserializeOwned>(request: Request<RaftPayload>) -> Result<T, Status> {
    decode_payload(&request.into_inner())
}

fn decode_payload<T: DeserializeOwned>(payload: &RaftPayload) -> Result<T, Status> {
    postcard::from_bytes(&payload.data).map_err(|e| Status::invalid_argument(format!("bad raft payload: {e}")))
}

fn encode<T: Serialize>(reply: &T) -> Result<Response<RaftPayload>, Status> {
    encode_payload(reply).map(Response::new)
}

fn encode_payload<T: Serialize>(reply: &T) -> Result<RaftPayload, Status> {
    postcard::to_stdvec(reply)
        .map(|data| RaftPayload { data })
        .map_err(|e| Status::internal(format!("encoding raft reply: {e}")))
}

/// Answers one AppendEntries read from a stream.
async fn append_one(raft: &Raft, payload: &RaftPayload) -> Result<RaftPayload, Status> {
    let rpc = decode_payload(payload)?;
    encode_payload(&raft.append_entries(rpc).await)
}

#[tonic::async_trait]
impl RaftService for RaftTransport {
    type AppendStreamStream = BoxStream<'static, Result<RaftPayload, Status>>;

    async fn append_stream(
        &self,
        request: Request<Streaming<RaftPayload>>,
    ) -> Result<Response<Self::AppendStreamStream>, Status> {
        // The replies are produced as they are polled, so each request is
        // handled in the task that sends its reply, and strictly in order.
        // A bad request ends the stream with its error.
        let replies = futures::stream::unfold(Some((request.into_inner(), self.raft.clone())), |state| async move {
            let (mut requests, raft) = state?;
            let reply = match requests.message().await {
                Ok(Some(payload)) => append_one(&raft, &payload).await,
                Ok(None) => return None,
                Err(status) => Err(status),
            };
            let next = reply.is_ok().then_some((requests, raft));
            Some((reply, next))
        });
        Ok(Response::new(replies.boxed()))
    }

    async fn append_entries(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(request)?;
        encode(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(request)?;
        encode(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc = decode(request)?;
        encode(&self.raft.install_snapshot(rpc).await)
    }
}
