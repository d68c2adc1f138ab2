//! Who may call what. Every request names a token (`authorization: Bearer
//! <token>`); the token has a name and a role. [`RPC_ROLES`] says which
//! roles may call each RPC, and [`Guard`] enforces it in front of every
//! service before a request reaches its handler: a missing or unknown token
//! is UNAUTHENTICATED, a known token of the wrong role PERMISSION_DENIED.
//!
//! Peers are apart from clients: Raft RPCs accept only the peer token, and
//! the peer token opens nothing else but `NodeInfo` (how the leader gathers
//! `Status`). A node without tokens (`--insecure`, or loopback only) checks
//! nothing and records its writers as `anonymous`.
//!
//! **Invariant:** a method missing from [`RPC_ROLES`] is refused to every
//! token; a test holds the table against the `.proto` files and the table
//! in `docs/operations.md`.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::Status;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads: get, goals, watch, history, status, why, explain, members.
    Read,
    /// Reads and writes: `set`, `create`, `delete`.
    Write,
    /// The worker service only.
    Worker,
    /// Everything a writer may, plus submit, release, retry, membership
    /// and replay (not the worker service, not Raft).
    Admin,
    /// Another node: Raft RPCs and `NodeInfo`.
    Peer,
}

impl Role {
    /// The role's name as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Worker => "worker",
            Role::Admin => "admin",
            Role::Peer => "peer",
        }
    }
}

const READERS: &[Role] = &[Role::Read, Role::Write, Role::Admin];
const WRITERS: &[Role] = &[Role::Write, Role::Admin];
const ADMINS: &[Role] = &[Role::Admin];
const WORKERS: &[Role] = &[Role::Worker];
const PEERS: &[Role] = &[Role::Peer];
const READERS_AND_PEERS: &[Role] = &[Role::Read, Role::Write, Role::Admin, Role::Peer];

/// Every RPC a node serves (its gRPC path) and the roles that may call it.
/// `docs/operations.md` (Security) shows the same table.
pub const RPC_ROLES: &[(&str, &[Role])] = &[
    ("/lexum.v1.Lexum/SubmitProgram", ADMINS),
    ("/lexum.v1.Lexum/Mutate", WRITERS),
    ("/lexum.v1.Lexum/Read", READERS),
    ("/lexum.v1.Lexum/ListGoals", READERS),
    ("/lexum.v1.Lexum/Watch", READERS),
    ("/lexum.v1.Lexum/History", READERS),
    ("/lexum.v1.Lexum/Status", READERS),
    ("/lexum.v1.Lexum/NodeInfo", READERS_AND_PEERS),
    ("/lexum.v1.Lexum/Release", ADMINS),
    ("/lexum.v1.Lexum/Retry", ADMINS),
    ("/lexum.v1.Lexum/Members", READERS),
    ("/lexum.v1.Lexum/AddMember", ADMINS),
    ("/lexum.v1.Lexum/RemoveMember", ADMINS),
    ("/lexum.v1.Lexum/Replay", ADMINS),
    ("/lexum.v1.Lexum/Why", READERS),
    ("/lexum.v1.Lexum/Explain", READERS),
    ("/lexum.v1.Lexum/CreateInstances", WRITERS),
    ("/lexum.v1.Lexum/DeleteInstances", WRITERS),
    ("/lexum.v1.Lexum/EngineSnapshot", READERS),
    ("/lexum.v1.Worker/Attach", WORKERS),
    ("/lexum.v1.Raft/AppendEntries", PEERS),
    ("/lexum.v1.Raft/AppendStream", PEERS),
    ("/lexum.v1.Raft/Vote", PEERS),
    ("/lexum.v1.Raft/InstallSnapshot", PEERS),
];

/// The roles that may see the live web view (`/ui`, `/ui/state`,
/// `/ui/events` on the HTTP port): those that may read.
pub const UI_ROLES: &[Role] = READERS;

/// The roles that may call the RPC at `path` (none for an unknown path).
pub fn roles_for(path: &str) -> &'static [Role] {
    RPC_ROLES.iter().find(|(p, _)| *p == path).map_or(&[], |(_, roles)| roles)
}

/// One configured token.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedToken {
    /// The principal recorded with this token's writes.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The secret.
    pub token: String,
}

/// The authenticated identity of a request: the token's name (the
/// principal of its writes) and role; `anonymous` on a node without tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Principal name.
    pub name: Arc<str>,
    /// Role, `None` on a node that checks nothing.
    pub role: Option<Role>,
}

impl Identity {
    /// The principal name a request carries (`anonymous` when none was set).
    pub fn of<T>(request: &tonic::Request<T>) -> Arc<str> {
        request.extensions().get::<Identity>().map_or_else(|| Arc::from("anonymous"), |i| i.name.clone())
    }
}

/// The tokens a node accepts.
#[derive(Debug)]
pub struct Tokens {
    /// `Bearer <token>` and who it is.
    known: Vec<(Vec<u8>, Identity)>,
}

impl Tokens {
    /// Accepts `tokens` from clients and workers and `peer` from other nodes.
    /// With neither, every request is let through as `anonymous`.
    pub fn new(tokens: &[NamedToken], peer: Option<&str>) -> Tokens {
        let mut known: Vec<(Vec<u8>, Identity)> = tokens
            .iter()
            .map(|t| {
                let identity = Identity { name: Arc::from(t.name.as_str()), role: Some(t.role) };
                (format!("Bearer {}", t.token).into_bytes(), identity)
            })
            .collect();
        if let Some(peer) = peer {
            let identity = Identity { name: Arc::from("peer"), role: Some(Role::Peer) };
            known.push((format!("Bearer {peer}").into_bytes(), identity));
        }
        Tokens { known }
    }

    /// Whether requests are checked at all.
    pub fn enabled(&self) -> bool {
        !self.known.is_empty()
    }

    /// Who may call `path` with this `authorization` header value.
    pub fn authorize(&self, path: &str, header: Option<&[u8]>) -> Result<Identity, Status> {
        self.authorize_roles(path, roles_for(path), header)
    }

    /// Who may see the live web view (`/ui` on the HTTP port): the roles
    /// that may read ([`UI_ROLES`]).
    pub fn authorize_view(&self, header: Option<&[u8]>) -> Result<Identity, Status> {
        self.authorize_roles("/ui", UI_ROLES, header)
    }

    fn authorize_roles(&self, path: &str, allowed: &[Role], header: Option<&[u8]>) -> Result<Identity, Status> {
        if !self.enabled() {
            return Ok(Identity { name: Arc::from("anonymous"), role: None });
        }
        let header = header.ok_or_else(|| Status::unauthenticated("missing token"))?;
        // Compare with every token, so the time taken says nothing about
        // which matched. One secret has two identities only as the legacy
        // single token (admin and peer); either may open the call.
        let (mut granted, mut known) = (None, None);
        for (expected, identity) in &self.known {
            if constant_time_eq(header, expected) {
                known.get_or_insert(identity);
                if identity.role.is_some_and(|role| allowed.contains(&role)) {
                    granted.get_or_insert(identity);
                }
            }
        }
        match (granted, known) {
            (Some(identity), _) => Ok(identity.clone()),
            (None, Some(identity)) => Err(Status::permission_denied(format!(
                "token `{}` has role {}, which may not call {path}",
                identity.name,
                identity.role.map_or("none", Role::as_str)
            ))),
            (None, None) => Err(Status::unauthenticated("invalid token")),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks [`Tokens`] against [`RPC_ROLES`] in front of a gRPC service and
/// records the caller's [`Identity`] in the request's extensions.
#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    tokens: Arc<Tokens>,
}

impl<S> Guard<S> {
    /// Guards `inner` with `tokens`.
    pub fn new(inner: S, tokens: Arc<Tokens>) -> Guard<S> {
        Guard { inner, tokens }
    }
}

type Ready = futures::future::Ready<Result<http::Response<Body>, Infallible>>;

impl<S> tonic::codegen::Service<http::Request<Body>> for Guard<S>
where
    S: tonic::codegen::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = futures::future::Either<S::Future, Ready>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let header = request.headers().get(lexum_proto::AUTH_METADATA_KEY).map(|v| v.as_bytes());
        match self.tokens.authorize(request.uri().path(), header) {
            Ok(identity) => {
                request.extensions_mut().insert(identity);
                futures::future::Either::Left(self.inner.call(request))
            }
            Err(status) => futures::future::Either::Right(futures::future::ready(Ok(status.into_http()))),
        }
    }
}

impl<S: NamedService> NamedService for Guard<S> {
    const NAME: &'static str = S::NAME;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        let token = |name: &str, role, token: &str| NamedToken { name: name.into(), role, token: token.into() };
        Tokens::new(
            &[
                token("viewer", Role::Read, "r"),
                token("bridge", Role::Write, "w"),
                token("fleet", Role::Worker, "k"),
                token("ops", Role::Admin, "a"),
            ],
            Some("p"),
        )
    }

    fn check(path: &str, token: &str) -> Result<String, tonic::Code> {
        let header = format!("Bearer {token}");
        tokens().authorize(path, Some(header.as_bytes())).map(|i| i.name.to_string()).map_err(|s| s.code())
    }

    #[test]
    fn the_live_view_takes_a_reading_role() {
        let view = |token: &str| {
            let header = format!("Bearer {token}");
            tokens().authorize_view(Some(header.as_bytes())).map(|i| i.name.to_string()).map_err(|s| s.code())
        };
        assert_eq!(view("r"), Ok("viewer".into()));
        assert_eq!(view("a"), Ok("ops".into()));
        assert_eq!(view("k"), Err(tonic::Code::PermissionDenied));
        assert_eq!(view("p"), Err(tonic::Code::PermissionDenied));
        assert_eq!(view("nope"), Err(tonic::Code::Unauthenticated));
        assert_eq!(tokens().authorize_view(None).map_err(|s| s.code()).err(), Some(tonic::Code::Unauthenticated));
    }

    #[test]
    fn each_role_reaches_only_its_rows() {
        use tonic::Code::PermissionDenied as Denied;
        assert_eq!(check("/lexum.v1.Lexum/Read", "r"), Ok("viewer".into()));
        assert_eq!(check("/lexum.v1.Lexum/Mutate", "r"), Err(Denied));
        assert_eq!(check("/lexum.v1.Lexum/Mutate", "w"), Ok("bridge".into()));
        assert_eq!(check("/lexum.v1.Lexum/SubmitProgram", "w"), Err(Denied));
        assert_eq!(check("/lexum.v1.Lexum/SubmitProgram", "a"), Ok("ops".into()));
        assert_eq!(check("/lexum.v1.Worker/Attach", "a"), Err(Denied));
        assert_eq!(check("/lexum.v1.Worker/Attach", "k"), Ok("fleet".into()));
        assert_eq!(check("/lexum.v1.Lexum/Read", "k"), Err(Denied));
        for client in ["r", "w", "k", "a"] {
            assert_eq!(check("/lexum.v1.Raft/Vote", client), Err(Denied));
        }
        assert_eq!(check("/lexum.v1.Raft/Vote", "p"), Ok("peer".into()));
        assert_eq!(check("/lexum.v1.Lexum/NodeInfo", "p"), Ok("peer".into()));
        assert_eq!(check("/lexum.v1.Lexum/Mutate", "p"), Err(Denied));
    }

    #[test]
    fn unknown_tokens_and_methods_are_refused() {
        assert_eq!(check("/lexum.v1.Lexum/Read", "nope"), Err(tonic::Code::Unauthenticated));
        assert_eq!(
            tokens().authorize("/lexum.v1.Lexum/Read", None).map_err(|s| s.code()).err(),
            Some(tonic::Code::Unauthenticated)
        );
        assert_eq!(check("/lexum.v1.Lexum/Shiny", "a"), Err(tonic::Code::PermissionDenied));
    }

    #[test]
    fn the_legacy_token_is_an_admin_and_the_peer_token() {
        let legacy = NamedToken { name: "token".into(), role: Role::Admin, token: "old".into() };
        let tokens = Tokens::new(std::slice::from_ref(&legacy), Some("old"));
        let check =
            |path: &str| tokens.authorize(path, Some(b"Bearer old")).map(|i| i.name.to_string()).map_err(|s| s.code());
        assert_eq!(check("/lexum.v1.Lexum/SubmitProgram"), Ok("token".into()));
        assert_eq!(check("/lexum.v1.Lexum/NodeInfo"), Ok("token".into()));
        assert_eq!(check("/lexum.v1.Raft/Vote"), Ok("peer".into()));
        assert_eq!(check("/lexum.v1.Worker/Attach"), Err(tonic::Code::PermissionDenied));
    }

    #[test]
    fn a_node_without_tokens_lets_everyone_in_as_anonymous() {
        let open = Tokens::new(&[], None);
        let identity = open.authorize("/lexum.v1.Raft/Vote", None).expect("open");
        assert_eq!(&*identity.name, "anonymous");
    }

    /// Every `rpc` of the `.proto` files has a row, and nothing else does.
    #[test]
    fn the_table_covers_every_rpc_of_the_protos() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto/lexum/v1");
        let mut from_protos = Vec::new();
        for file in ["client.proto", "worker.proto", "raft.proto"] {
            let text = std::fs::read_to_string(dir.join(file)).expect("proto file");
            let mut service = "";
            for line in text.lines().map(str::trim) {
                if let Some(rest) = line.strip_prefix("service ") {
                    service = rest.split_whitespace().next().unwrap_or_default();
                }
                if let Some(rest) = line.strip_prefix("rpc ") {
                    let method = rest.split('(').next().unwrap_or_default().trim();
                    from_protos.push(format!("/lexum.v1.{service}/{method}"));
                }
            }
        }
        let mut from_table: Vec<String> = RPC_ROLES.iter().map(|(p, _)| p.to_string()).collect();
        from_protos.sort();
        from_table.sort();
        assert_eq!(from_protos, from_table);
    }

    /// The Security chapter's table says what the code does.
    #[test]
    fn the_operations_guide_shows_the_same_table() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md");
        let text = std::fs::read_to_string(path).expect("docs/operations.md");
        for (path, roles) in RPC_ROLES {
            let method = path.rsplit('/').next().unwrap_or_default();
            let row = text
                .lines()
                .find(|l| l.starts_with(&format!("| `{method}` ")))
                .unwrap_or_else(|| panic!("no row for `{method}` in the Security table"));
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let documented: Vec<&str> = cells.get(3).copied().unwrap_or_default().split(", ").collect();
            let actual: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            assert_eq!(documented, actual, "roles of `{method}` in docs/operations.md");
        }
    }
}
