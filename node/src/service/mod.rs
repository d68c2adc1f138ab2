//! gRPC services of a node: client API, worker API and Raft transport,
//! with the token check and size limits they share.

pub mod client;
pub mod raft;
pub mod worker;

use tonic::{Request, Status};

/// Largest Raft message (entries batches and snapshot chunks).
pub const RAFT_MESSAGE_LIMIT: usize = 64 * 1024 * 1024;

/// Checks `authorization: Bearer <token>` when the node has a token.
#[derive(Clone)]
pub struct TokenCheck {
    expected: Option<String>,
}

impl TokenCheck {
    /// Checks against `token`; `None` accepts every request.
    pub fn new(token: Option<String>) -> TokenCheck {
        TokenCheck { expected: token.map(|t| format!("Bearer {t}")) }
    }
}

/// The authenticated identity of a request, recorded as the principal of
/// the writes it makes: `token` when the node checks a token, `anonymous`
/// when it does not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity(pub &'static str);

impl Identity {
    /// The identity a request carries (`anonymous` when none was set).
    pub fn of<T>(request: &Request<T>) -> &'static str {
        request.extensions().get::<Identity>().map_or("anonymous", |i| i.0)
    }
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else { return Ok(request) };
        match request.metadata().get(lexum_proto::AUTH_METADATA_KEY).map(|v| v.as_bytes()) {
            Some(given) if constant_time_eq(given, expected.as_bytes()) => {
                request.extensions_mut().insert(Identity("token"));
                Ok(request)
            }
            Some(_) => Err(Status::unauthenticated("invalid token")),
            None => Err(Status::unauthenticated("missing token")),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
