//! Raft transport, server side: decodes openraft messages and hands them to
//! the local Raft.

use crate::raft_types::Raft;
use lexum_proto::v1::raft_server::Raft as RaftService;
use lexum_proto::v1::RaftPayload;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

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
    postcard::from_bytes(&request.into_inner().data)
        .map_err(|e| Status::invalid_argument(format!("bad raft payload: {e}")))
}

fn encode<T: Serialize>(reply: &T) -> Result<Response<RaftPayload>, Status> {
    postcard::to_stdvec(reply)
        .map(|data| Response::new(RaftPayload { data }))
        .map_err(|e| Status::internal(format!("encoding raft reply: {e}")))
}

#[tonic::async_trait]
impl RaftService for RaftTransport {
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
