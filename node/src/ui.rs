//! The live view: a read-only web page on the HTTP port (`/ui`, beside
//! `/metrics`). Its files are embedded in the binary (`ui/`); the page
//! downloads nothing else. The state is [`lexum_engine::view::LiveView`]
//! plus the cluster (members, leader, term, commit index, state hashes),
//! as JSON: written into the page itself (so it shows at once), at
//! `/ui/state`, and pushed as server-sent events on `/ui/events` whenever
//! the engine applies entries (coalesced, a few times a second), with the
//! engine's events beside it.
//!
//! With tokens configured the view needs a token of a reading role (read,
//! write or admin), as `Authorization: Bearer`, or once as `/ui?token=...`,
//! which sets an HTTP-only cookie for `/ui` and redirects to the page.

use crate::cluster::Cluster;
use crate::service::auth::Tokens;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::Stream;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// Domains shown at most (a fleet's instances beyond are counted, not drawn).
const MAX_DOMAINS: usize = 200;
/// The cookie that carries a token given once as `/ui?token=...`.
const COOKIE: &str = "lexum_ui_token";

/// What the `/ui` routes share.
#[derive(Clone)]
pub struct UiState {
    /// The node.
    pub cluster: Cluster,
    /// The tokens the node accepts.
    pub tokens: Arc<Tokens>,
}

/// The `/ui` routes.
pub fn routes(state: UiState) -> Router {
    Router::new()
        .route("/ui", get(page))
        .route("/ui/", get(page))
        .route("/ui/app.js", get(script))
        .route("/ui/app.css", get(style))
        .route("/ui/state", get(state_json))
        .route("/ui/events", get(events))
        .with_state(state)
}

/// The bearer token of a request: the `Authorization` header, else the
/// view's cookie.
fn token_of(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return Some(value.to_string());
    }
    let cookies = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok());
    for cookie in cookies.flat_map(|c| c.split(';')) {
        if let Some((name, value)) = cookie.trim().split_once('=') {
            if name == COOKIE {
                return Some(format!("Bearer {value}"));
            }
        }
    }
    None
}

/// Whether the request may see the view (a reading role when tokens are on).
// The refusal is axum's `Response`, returned as a handler would.
#[allow(clippy::result_large_err)]
fn check(state: &UiState, headers: &HeaderMap) -> Result<(), Response> {
    let header = token_of(headers);
    state.tokens.authorize_view(header.as_deref().map(str::as_bytes)).map(|_| ()).map_err(|status| {
        let code = match status.code() {
            tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        };
        (code, format!("{}\n", status.message())).into_response()
    })
}

/// The `token` parameter of a query string, if any.
fn query_token(uri: &Uri) -> Option<&str> {
    uri.query()?.split('&').find_map(|pair| pair.strip_prefix("token="))
}

async fn page(State(state): State<UiState>, uri: Uri, headers: HeaderMap) -> Response {
    if let Some(token) = query_token(&uri) {
        // Only a token of the right shape becomes a cookie.
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic() && b != b';' && b != b',') {
            return (StatusCode::BAD_REQUEST, "malformed token\n").into_response();
        }
        let cookie = format!("{COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict");
        return (StatusCode::SEE_OTHER, [(header::SET_COOKIE, cookie), (header::LOCATION, "/ui".to_string())])
            .into_response();
    }
    if let Err(denied) = check(&state, &headers) {
        return denied;
    }
    let view = snapshot(&state.cluster).await;
    // Inside <script>, `<` is escaped so no value can close the element.
    let json = view.to_string().replace('<', "\\u003c");
    let html = INDEX.replace("/*INITIAL_STATE*/null", &json);
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], html).into_response()
}

async fn script(State(state): State<UiState>, headers: HeaderMap) -> Response {
    if let Err(denied) = check(&state, &headers) {
        return denied;
    }
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT).into_response()
}

async fn style(State(state): State<UiState>, headers: HeaderMap) -> Response {
    if let Err(denied) = check(&state, &headers) {
        return denied;
    }
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

async fn state_json(State(state): State<UiState>, headers: HeaderMap) -> Response {
    if let Err(denied) = check(&state, &headers) {
        return denied;
    }
    let view = snapshot(&state.cluster).await;
    ([(header::CONTENT_TYPE, "application/json")], view.to_string()).into_response()
}

/// Server-sent events: `state` (the whole view) at once and after applied
/// entries, at most every 250 ms; `event` for each engine event.
async fn events(State(state): State<UiState>, headers: HeaderMap) -> Response {
    if let Err(denied) = check(&state, &headers) {
        return denied;
    }
    Sse::new(event_stream(state.cluster)).keep_alive(KeepAlive::new().interval(Duration::from_secs(10))).into_response()
}

fn event_stream(cluster: Cluster) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(64);
    tokio::spawn(async move {
        let mut applied = cluster.replica.subscribe_applied();
        let from = cluster.replica.applied_index() + 1;
        let mut engine_events = cluster.replica.subscribe_events(from).ok().map(|(_, receiver)| receiver);
        loop {
            let view = snapshot(&cluster).await;
            if tx.send(SseEvent::default().event("state").data(view.to_string())).await.is_err() {
                return;
            }
            if let Some(receiver) = engine_events.as_mut() {
                loop {
                    match receiver.try_recv() {
                        Ok(e) => {
                            let data = serde_json::json!({
                                "index": e.index, "kind": e.kind, "domain": e.domain, "goal": e.goal,
                                "code": e.code, "status": e.status, "verdict": e.verdict, "effect": e.effect,
                                "principal": e.principal, "fields": e.fields, "message": e.message,
                            });
                            if tx.send(SseEvent::default().event("event").data(data.to_string())).await.is_err() {
                                return;
                            }
                        }
                        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => continue,
                        Err(_) => break,
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            // Wait for the next applied entry, or refresh the members' view
            // every few seconds.
            let _ = tokio::time::timeout(Duration::from_secs(3), applied.changed()).await;
            if tx.is_closed() {
                return;
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) })
}

/// The whole view as JSON: the engine's [`lexum_engine::view::LiveView`]
/// and the cluster.
pub async fn snapshot(cluster: &Cluster) -> serde_json::Value {
    let raft = cluster.raft.metrics().borrow().clone();
    let membership = raft.membership_config.membership().clone();
    let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
    let nodes: Vec<(u64, String)> = membership.nodes().map(|(id, n)| (*id, n.addr.clone())).collect();
    let infos = futures::future::join_all(nodes.iter().map(|(id, addr)| member_info(cluster, *id, addr))).await;
    let members: Vec<serde_json::Value> = nodes
        .iter()
        .zip(infos)
        .map(|((id, address), info)| {
            let (applied, hash, reachable) = match info {
                Some((applied, hash)) => (Some(applied), Some(hash), true),
                None => (None, None, false),
            };
            serde_json::json!({
                "id": id, "address": address, "voter": voters.contains(id),
                "leader": raft.current_leader == Some(*id), "applied_index": applied,
                "state_hash": hash, "reachable": reachable,
            })
        })
        .collect();
    let view = cluster.replica.with_engine(|e| e.live_view(MAX_DOMAINS));
    serde_json::json!({
        "node": cluster.id,
        "leader": raft.current_leader,
        "term": raft.current_term,
        "commit_index": cluster.commit_index(),
        "members": members,
        "engine": serde_json::to_value(&view).unwrap_or(serde_json::Value::Null),
    })
}

/// A member's applied index and state hash (this node's own directly,
/// another's through `NodeInfo` with the peer token).
async fn member_info(cluster: &Cluster, id: u64, address: &str) -> Option<(u64, String)> {
    if id == cluster.id {
        let (applied, hash) = cluster.replica.with_engine(|e| (e.last_applied(), e.state_hash()));
        return Some((applied, hex(&hash)));
    }
    let scheme = if cluster.peer_tls.is_some() { "https" } else { "http" };
    let mut endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{address}")).ok()?;
    if let Some(tls) = &cluster.peer_tls {
        endpoint = endpoint.tls_config(tls.clone()).ok()?;
    }
    let call = async {
        let channel = endpoint.connect_timeout(Duration::from_millis(300)).connect().await.ok()?;
        let mut client = lexum_proto::v1::lexum_client::LexumClient::new(channel);
        let mut request = tonic::Request::new(lexum_proto::v1::NodeInfoRequest {});
        if let Some(value) = cluster.peer_token.as_ref().and_then(|t| format!("Bearer {t}").parse().ok()) {
            request.metadata_mut().insert(lexum_proto::AUTH_METADATA_KEY, value);
        }
        client.node_info(request).await.ok().map(|r| r.into_inner())
    };
    let info = tokio::time::timeout(Duration::from_millis(800), call).await.ok().flatten()?;
    Some((info.applied_index, info.state_hash))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
