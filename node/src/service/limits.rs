//! Resource limits in front of the client and worker services, so that no
//! client can take a node's time, memory or write path from the others:
//!
//! - a **deadline** on every call: the client's `grpc-timeout` capped at
//!   `max_deadline_ms`, or `default_deadline_ms` when it sets none. For the
//!   streaming calls (`Watch`, `Attach`) it bounds the handshake only; the
//!   stream itself lives as long as the client keeps it;
//! - a cap on **calls in flight**, per node and per connection;
//! - a cap on **watchers** (open `Watch` streams) and on **workers** (open
//!   `Attach` streams), per node and per connection; the permit travels
//!   with the stream and is given back when the stream ends;
//! - a **write rate** per principal (the token's name the auth
//!   [`Guard`](super::auth::Guard) resolved): a token bucket over `Mutate`,
//!   `CreateInstances`, `DeleteInstances` and `SubmitProgram`.
//!
//! Whatever is over a limit is refused at once with RESOURCE_EXHAUSTED and
//! a `retry-after-ms` hint ([`lexum_proto::RETRY_AFTER_METADATA_KEY`]) that
//! the SDKs wait for before trying again. Raft RPCs never pass through
//! here: client load must not starve heartbeats.
//!
//! [`Limited`] sits inside the [`Guard`](super::auth::Guard), so it sees
//! the caller's [`Identity`].

use super::Identity;
use serde::Deserialize;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;

/// The RPCs that count against the write rate of their principal.
pub const RATE_LIMITED: &[&str] = &[
    "/lexum.v1.Lexum/Mutate",
    "/lexum.v1.Lexum/CreateInstances",
    "/lexum.v1.Lexum/DeleteInstances",
    "/lexum.v1.Lexum/SubmitProgram",
];

/// The RPC whose streams count as watchers.
pub const WATCH: &str = "/lexum.v1.Lexum/Watch";
/// The RPC whose streams count as workers.
pub const ATTACH: &str = "/lexum.v1.Worker/Attach";

/// How long a caller refused for a full node or connection should wait.
const BUSY_RETRY_AFTER: Duration = Duration::from_millis(100);

/// `[limits]` section of the node configuration (`docs/operations.md`,
/// Security, "Limits and how to tune them").
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Deadline of a call whose client sets none.
    pub default_deadline_ms: u64,
    /// Longest deadline a client may ask for; longer ones are cut to this.
    pub max_deadline_ms: u64,
    /// Calls in flight on the node (client and worker APIs, streams while
    /// they start; open watchers are counted apart).
    pub max_requests: u32,
    /// Calls in flight on one connection.
    pub max_requests_per_connection: u32,
    /// Open `Watch` streams on the node.
    pub max_watchers: u32,
    /// Open `Watch` streams on one connection.
    pub max_watchers_per_connection: u32,
    /// Open worker `Attach` streams on the node.
    pub max_workers: u32,
    /// Open worker `Attach` streams on one connection.
    pub max_workers_per_connection: u32,
    /// Sustained writes per second of one principal (a write is one call of
    /// `Mutate`, `CreateInstances`, `DeleteInstances` or `SubmitProgram`).
    pub writes_per_second: u32,
    /// Writes one principal may make at once before the rate applies.
    pub write_burst: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            default_deadline_ms: 60_000,
            max_deadline_ms: 300_000,
            max_requests: 4096,
            max_requests_per_connection: 256,
            max_watchers: 1024,
            max_watchers_per_connection: 32,
            max_workers: 256,
            max_workers_per_connection: 16,
            writes_per_second: 20_000,
            write_burst: 40_000,
        }
    }
}

/// A `[limits]` value that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitsError {
    /// A limit of zero would refuse everything.
    #[error("[limits] {0} must be positive")]
    Zero(&'static str),
    /// The default deadline is over the cap.
    #[error("[limits] default_deadline_ms must not exceed max_deadline_ms")]
    DefaultOverMax,
    /// A per-connection cap over the node's cap is never reached.
    #[error("[limits] {0}_per_connection must not exceed {0}")]
    ConnectionOverNode(&'static str),
}

impl LimitsConfig {
    /// Checks that every limit can be met.
    pub fn validate(&self) -> Result<(), LimitsError> {
        let positive = [
            ("default_deadline_ms", self.default_deadline_ms),
            ("max_deadline_ms", self.max_deadline_ms),
            ("max_requests", u64::from(self.max_requests)),
            ("max_requests_per_connection", u64::from(self.max_requests_per_connection)),
            ("max_watchers", u64::from(self.max_watchers)),
            ("max_watchers_per_connection", u64::from(self.max_watchers_per_connection)),
            ("max_workers", u64::from(self.max_workers)),
            ("max_workers_per_connection", u64::from(self.max_workers_per_connection)),
            ("writes_per_second", u64::from(self.writes_per_second)),
            ("write_burst", u64::from(self.write_burst)),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(LimitsError::Zero(name));
        }
        if self.default_deadline_ms > self.max_deadline_ms {
            return Err(LimitsError::DefaultOverMax);
        }
        if self.max_requests_per_connection > self.max_requests {
            return Err(LimitsError::ConnectionOverNode("max_requests"));
        }
        if self.max_watchers_per_connection > self.max_watchers {
            return Err(LimitsError::ConnectionOverNode("max_watchers"));
        }
        if self.max_workers_per_connection > self.max_workers {
            return Err(LimitsError::ConnectionOverNode("max_workers"));
        }
        Ok(())
    }

    /// The deadline of a call whose client asked for `requested`.
    pub fn deadline(&self, requested: Option<Duration>) -> Duration {
        let max = Duration::from_millis(self.max_deadline_ms);
        requested.map_or(Duration::from_millis(self.default_deadline_ms), |d| d.min(max))
    }

    /// HTTP/2 streams one connection may open: its calls, watchers and
    /// workers (`SETTINGS_MAX_CONCURRENT_STREAMS`, a backstop behind the
    /// counts).
    pub fn max_streams_per_connection(&self) -> u32 {
        self.max_requests_per_connection
            .saturating_add(self.max_watchers_per_connection)
            .saturating_add(self.max_workers_per_connection)
    }
}

/// What a refused call is told: the status and how long to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Why, for the status message.
    pub reason: String,
    /// When a retry may succeed.
    pub retry_after: Duration,
}

impl Refusal {
    /// RESOURCE_EXHAUSTED with the `retry-after-ms` metadata.
    pub fn into_status(self) -> Status {
        let millis = self.retry_after.as_millis().max(1);
        let mut status = Status::resource_exhausted(format!("{}; retry after {millis} ms", self.reason));
        if let Ok(value) = millis.to_string().parse() {
            status.metadata_mut().insert(lexum_proto::RETRY_AFTER_METADATA_KEY, value);
        }
        status
    }
}

/// A token bucket: `burst` tokens, refilled at `rate` per second.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug, Default)]
struct Counts {
    requests: u32,
    watchers: u32,
    workers: u32,
}

impl Counts {
    fn of(&mut self, slot: Slot) -> &mut u32 {
        match slot {
            Slot::Request => &mut self.requests,
            Slot::Watcher => &mut self.watchers,
            Slot::Worker => &mut self.workers,
        }
    }

    fn is_empty(&self) -> bool {
        self.requests == 0 && self.watchers == 0 && self.workers == 0
    }
}

#[derive(Debug, Default)]
struct State {
    node: Counts,
    connections: HashMap<SocketAddr, Counts>,
    buckets: HashMap<Arc<str>, Bucket>,
}

/// The limits of one node and what is in use against them.
#[derive(Debug)]
pub struct Limits {
    config: LimitsConfig,
    state: Mutex<State>,
}

/// What a [`Permit`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A call in flight.
    Request,
    /// An open `Watch` stream.
    Watcher,
    /// An open worker `Attach` stream.
    Worker,
}

/// A call's, watcher's or worker's place under the caps, given back when
/// the last clone is dropped. A `Watch` or `Attach` handler takes its
/// permit out of the request's extensions ([`Permit::take`]) and keeps it
/// as long as the stream lives.
#[derive(Debug, Clone)]
pub struct Permit(#[allow(dead_code)] Arc<Held>);

#[derive(Debug)]
struct Held {
    limits: Arc<Limits>,
    connection: Option<SocketAddr>,
    slot: Slot,
}

impl Permit {
    /// Takes the watcher or worker permit [`Limited`] put in `request`'s
    /// extensions.
    pub fn take<T>(request: &mut tonic::Request<T>) -> Option<Permit> {
        request.extensions_mut().remove::<Permit>()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut state = self.limits.lock();
        let used = state.node.of(self.slot);
        *used = used.saturating_sub(1);
        if let Some(addr) = self.connection {
            if let Some(counts) = state.connections.get_mut(&addr) {
                let used = counts.of(self.slot);
                *used = used.saturating_sub(1);
                if counts.is_empty() {
                    state.connections.remove(&addr);
                }
            }
        }
    }
}

impl Limits {
    /// Limits with nothing in use.
    pub fn new(config: LimitsConfig) -> Arc<Limits> {
        Arc::new(Limits { config, state: Mutex::new(State::default()) })
    }

    /// The configuration.
    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The critical sections cannot panic; recover rather than refuse all.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A place for a call or watcher from `connection`, or a refusal when
    /// the node or the connection is full.
    pub fn admit(self: &Arc<Self>, connection: Option<SocketAddr>, slot: Slot) -> Result<Permit, Refusal> {
        let c = &self.config;
        let (node_cap, conn_cap, what) = match slot {
            Slot::Request => (c.max_requests, c.max_requests_per_connection, "calls in flight"),
            Slot::Watcher => (c.max_watchers, c.max_watchers_per_connection, "watchers"),
            Slot::Worker => (c.max_workers, c.max_workers_per_connection, "workers"),
        };
        let mut state = self.lock();
        let refuse = |scope: &str, cap: u32| Refusal {
            reason: format!("{scope} already has {cap} {what} (limit `[limits]`)"),
            retry_after: BUSY_RETRY_AFTER,
        };
        if *state.node.of(slot) >= node_cap {
            return Err(refuse("this node", node_cap));
        }
        if let Some(addr) = connection {
            let counts = state.connections.entry(addr).or_default();
            if *counts.of(slot) >= conn_cap {
                return Err(refuse("this connection", conn_cap));
            }
            *counts.of(slot) += 1;
        }
        *state.node.of(slot) += 1;
        Ok(Permit(Arc::new(Held { limits: self.clone(), connection, slot })))
    }

    /// Takes one write from `principal`'s bucket at `now`, or says how long
    /// until there is one.
    pub fn take_write(&self, principal: &Arc<str>, now: Instant) -> Result<(), Refusal> {
        let rate = f64::from(self.config.writes_per_second);
        let burst = f64::from(self.config.write_burst);
        let mut state = self.lock();
        let bucket = state.buckets.entry(principal.clone()).or_insert(Bucket { tokens: burst, at: now });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at = now.max(bucket.at);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = Duration::from_secs_f64((1.0 - bucket.tokens) / rate);
        Err(Refusal {
            reason: format!(
                "`{principal}` is over its write rate ({} per second, bursts of {})",
                self.config.writes_per_second, self.config.write_burst
            ),
            retry_after: wait.max(Duration::from_millis(1)),
        })
    }

    /// Watchers open on the node.
    pub fn watchers(&self) -> u32 {
        self.lock().node.watchers
    }

    /// Workers attached to the node.
    pub fn workers(&self) -> u32 {
        self.lock().node.workers
    }

    /// Calls in flight on the node.
    pub fn requests(&self) -> u32 {
        self.lock().node.requests
    }
}

/// The remote address of the connection a request came on.
fn connection_of<B>(request: &http::Request<B>) -> Option<SocketAddr> {
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| extensions.get::<TlsConnectInfo<TcpConnectInfo>>().and_then(|i| i.get_ref().remote_addr()))
}

/// The `grpc-timeout` a client sent, if it is well formed.
pub fn requested_deadline(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    if value.is_empty() || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Enforces [`Limits`] in front of a gRPC service (inside the auth guard).
#[derive(Clone)]
pub struct Limited<S> {
    inner: S,
    limits: Arc<Limits>,
}

impl<S> Limited<S> {
    /// Limits `inner` by `limits` (shared by every service of a node).
    pub fn new(inner: S, limits: Arc<Limits>) -> Limited<S> {
        Limited { inner, limits }
    }
}

type Reply = Result<http::Response<Body>, Infallible>;

fn refuse(status: Status) -> Pin<Box<dyn Future<Output = Reply> + Send>> {
    Box::pin(futures::future::ready(Ok(status.into_http())))
}

impl<S> tonic::codegen::Service<http::Request<Body>> for Limited<S>
where
    S: tonic::codegen::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Reply> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path();
        if RATE_LIMITED.contains(&path) {
            let principal =
                request.extensions().get::<Identity>().map_or_else(|| Arc::from("anonymous"), |i| i.name.clone());
            if let Err(refusal) = self.limits.take_write(&principal, Instant::now()) {
                return refuse(refusal.into_status());
            }
        }
        let connection = connection_of(&request);
        let deadline = self.limits.config.deadline(requested_deadline(request.headers()));
        let stream = match path {
            WATCH => Some(Slot::Watcher),
            ATTACH => Some(Slot::Worker),
            _ => None,
        };
        let permit = if let Some(slot) = stream {
            match self.limits.admit(connection, slot) {
                // The handler moves it into the stream.
                Ok(permit) => {
                    request.extensions_mut().insert(permit);
                    None
                }
                Err(refusal) => return refuse(refusal.into_status()),
            }
        } else {
            match self.limits.admit(connection, Slot::Request) {
                Ok(permit) => Some(permit),
                Err(refusal) => return refuse(refusal.into_status()),
            }
        };
        let call = self.inner.call(request);
        Box::pin(async move {
            let _permit = permit;
            match tokio::time::timeout(deadline, call).await {
                Ok(reply) => reply,
                Err(_) => Ok(Status::deadline_exceeded(format!(
                    "no answer within the call's deadline of {} ms (`[limits]` caps it)",
                    deadline.as_millis()
                ))
                .into_http()),
            }
        })
    }
}

impl<S: NamedService> NamedService for Limited<S> {
    const NAME: &'static str = S::NAME;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(edit: impl FnOnce(&mut LimitsConfig)) -> Arc<Limits> {
        let mut config = LimitsConfig::default();
        edit(&mut config);
        config.validate().expect("valid limits");
        Limits::new(config)
    }

    fn addr(port: u16) -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn the_defaults_are_valid_and_bad_values_are_refused() {
        assert_eq!(LimitsConfig::default().validate(), Ok(()));
        let bad = |edit: fn(&mut LimitsConfig)| {
            let mut config = LimitsConfig::default();
            edit(&mut config);
            config.validate().is_err()
        };
        assert!(bad(|c| c.write_burst = 0));
        assert!(bad(|c| c.max_watchers = 0));
        assert!(bad(|c| c.default_deadline_ms = c.max_deadline_ms + 1));
        assert!(bad(|c| c.max_requests_per_connection = c.max_requests + 1));
        assert!(bad(|c| c.max_watchers_per_connection = c.max_watchers + 1));
        assert!(bad(|c| c.max_workers = 0));
        assert!(bad(|c| c.max_workers_per_connection = c.max_workers + 1));
    }

    /// The `[limits]` shown in docs/operations.md and in the systemd
    /// sample are the defaults.
    #[test]
    fn the_documented_limits_are_the_defaults() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for file in ["docs/operations.md", "deploy/systemd/lexumd.toml"] {
            let text = std::fs::read_to_string(root.join(file)).expect(file);
            let section: String = text
                .lines()
                .skip_while(|l| *l != "[limits]")
                .skip(1)
                .take_while(|l| l.contains('='))
                .map(|l| format!("{l}\n"))
                .collect();
            let documented: LimitsConfig = toml::from_str(&section).expect(file);
            assert_eq!(documented, LimitsConfig::default(), "[limits] in {file}");
            assert_eq!(section.lines().count(), 10, "every limit is shown in {file}");
        }
    }

    #[test]
    fn deadlines_default_when_unset_and_are_capped_when_longer() {
        let config = LimitsConfig { default_deadline_ms: 1000, max_deadline_ms: 5000, ..LimitsConfig::default() };
        assert_eq!(config.deadline(None), Duration::from_millis(1000));
        assert_eq!(config.deadline(Some(Duration::from_millis(200))), Duration::from_millis(200));
        assert_eq!(config.deadline(Some(Duration::from_secs(3600))), Duration::from_millis(5000));
    }

    #[test]
    fn grpc_timeouts_parse_and_garbage_is_ignored() {
        let parse = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("grpc-timeout", value.parse().expect("header"));
            requested_deadline(&headers)
        };
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse("99999999H"), Some(Duration::from_secs(99_999_999 * 3600)));
        assert_eq!(parse("12"), None);
        assert_eq!(parse("m"), None);
        assert_eq!(parse("1234567890S"), None);
        assert_eq!(requested_deadline(&http::HeaderMap::new()), None);
    }

    #[test]
    fn a_burst_past_the_rate_is_refused_with_a_hint_then_admitted_after_it() {
        let limits = limits(|c| {
            c.writes_per_second = 10;
            c.write_burst = 3;
        });
        let (alice, bob) = (Arc::from("alice"), Arc::from("bob"));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limits.take_write(&alice, t0), Ok(()));
        }
        let refusal = limits.take_write(&alice, t0).expect_err("over the burst");
        assert_eq!(refusal.retry_after, Duration::from_millis(100));
        assert_eq!(limits.take_write(&bob, t0), Ok(()), "each principal has its own bucket");
        assert!(limits.take_write(&alice, t0 + Duration::from_millis(60)).is_err());
        assert_eq!(limits.take_write(&alice, t0 + refusal.retry_after), Ok(()));
        let status = limits.take_write(&alice, t0 + refusal.retry_after).expect_err("empty again").into_status();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        let hint = status.metadata().get(lexum_proto::RETRY_AFTER_METADATA_KEY).expect("hint");
        assert_eq!(hint.to_str().ok(), Some("100"));
    }

    #[test]
    fn watchers_are_capped_per_connection_and_per_node_and_given_back_on_drop() {
        let limits = limits(|c| {
            c.max_watchers = 3;
            c.max_watchers_per_connection = 2;
        });
        let a1 = limits.admit(addr(1), Slot::Watcher).expect("first");
        let a2 = limits.admit(addr(1), Slot::Watcher).expect("second");
        let refused = limits.admit(addr(1), Slot::Watcher).expect_err("third on one connection");
        assert!(refused.reason.contains("this connection"), "{}", refused.reason);
        let b1 = limits.admit(addr(2), Slot::Watcher).expect("another connection");
        let refused = limits.admit(addr(3), Slot::Watcher).expect_err("node full");
        assert!(refused.reason.contains("this node"), "{}", refused.reason);
        assert_eq!(limits.watchers(), 3);
        drop(a1);
        let _a3 = limits.admit(addr(1), Slot::Watcher).expect("room again");
        drop((a2, b1));
        assert_eq!(limits.watchers(), 1);
        assert!(limits.admit(addr(1), Slot::Request).is_ok(), "calls are counted apart");
    }

    #[test]
    fn workers_are_capped_apart_from_watchers_and_given_back_on_drop() {
        let limits = limits(|c| {
            c.max_workers = 2;
            c.max_workers_per_connection = 1;
        });
        let a = limits.admit(addr(1), Slot::Worker).expect("first worker");
        let refused = limits.admit(addr(1), Slot::Worker).expect_err("a second on one connection");
        assert!(refused.reason.contains("1 workers"), "{}", refused.reason);
        let _b = limits.admit(addr(2), Slot::Worker).expect("another connection");
        let refused = limits.admit(addr(3), Slot::Worker).expect_err("node full");
        assert!(refused.reason.contains("this node"), "{}", refused.reason);
        let _watcher = limits.admit(addr(3), Slot::Watcher).expect("watchers are counted apart");
        assert_eq!((limits.workers(), limits.watchers()), (2, 1));
        drop(a);
        assert_eq!(limits.workers(), 1);
        assert!(limits.admit(addr(1), Slot::Worker).is_ok(), "room again");
    }

    #[test]
    fn calls_in_flight_are_capped() {
        let limits = limits(|c| {
            c.max_requests = 2;
            c.max_requests_per_connection = 1;
        });
        let a = limits.admit(addr(1), Slot::Request).expect("first");
        assert!(limits.admit(addr(1), Slot::Request).is_err());
        let _b = limits.admit(addr(2), Slot::Request).expect("other connection");
        assert!(limits.admit(None, Slot::Request).is_err(), "node full");
        drop(a);
        assert_eq!(limits.requests(), 1);
        assert!(!limits.lock().connections.contains_key(&SocketAddr::from(([127, 0, 0, 1], 1))));
    }

    /// A stand-in service: answers OK after `delay`, or never.
    #[derive(Clone)]
    struct Slow(Option<Duration>);

    impl tonic::codegen::Service<http::Request<Body>> for Slow {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Reply> + Send>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<Body>) -> Self::Future {
            let delay = self.0;
            Box::pin(async move {
                match delay {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => futures::future::pending::<()>().await,
                }
                Ok(http::Response::new(Body::empty()))
            })
        }
    }

    fn grpc_status(response: &http::Response<Body>) -> Option<String> {
        response.headers().get("grpc-status").and_then(|v| v.to_str().ok()).map(str::to_string)
    }

    fn request(path: &str, timeout: Option<&str>, principal: &str) -> http::Request<Body> {
        let mut request = http::Request::builder().uri(path).body(Body::empty()).expect("request");
        if let Some(timeout) = timeout {
            request.headers_mut().insert("grpc-timeout", timeout.parse().expect("header"));
        }
        request.extensions_mut().insert(Identity { name: Arc::from(principal), role: None });
        request
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_is_cut_at_the_default_or_the_cap() {
        use tonic::codegen::Service;
        let limits = limits(|c| {
            c.default_deadline_ms = 50;
            c.max_deadline_ms = 100;
        });
        let mut service = Limited::new(Slow(None), limits.clone());
        let started = Instant::now();
        let reply = service.call(request("/lexum.v1.Lexum/Read", None, "a")).await.expect("reply");
        assert_eq!(grpc_status(&reply).as_deref(), Some("4"), "DEADLINE_EXCEEDED");
        let reply = service.call(request("/lexum.v1.Lexum/Read", Some("1H"), "a")).await.expect("reply");
        assert_eq!(grpc_status(&reply).as_deref(), Some("4"));
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert_eq!(limits.requests(), 0, "the permits are given back");
        let mut quick = Limited::new(Slow(Some(Duration::from_millis(1))), limits);
        let reply = quick.call(request("/lexum.v1.Lexum/Read", Some("20m"), "a")).await.expect("reply");
        assert_eq!(grpc_status(&reply), None, "answered in time");
    }

    #[tokio::test]
    async fn writes_over_the_rate_are_refused_before_the_handler() {
        use tonic::codegen::Service;
        let limits = limits(|c| {
            c.writes_per_second = 1;
            c.write_burst = 2;
        });
        let mut service = Limited::new(Slow(Some(Duration::ZERO)), limits);
        for _ in 0..2 {
            let reply = service.call(request("/lexum.v1.Lexum/Mutate", None, "w")).await.expect("reply");
            assert_eq!(grpc_status(&reply), None);
        }
        let reply = service.call(request("/lexum.v1.Lexum/Mutate", None, "w")).await.expect("reply");
        assert_eq!(grpc_status(&reply).as_deref(), Some("8"), "RESOURCE_EXHAUSTED");
        let hint = reply.headers().get(lexum_proto::RETRY_AFTER_METADATA_KEY).and_then(|v| v.to_str().ok());
        assert!(hint.and_then(|h| h.parse::<u64>().ok()).is_some_and(|ms| ms > 0 && ms <= 1000), "{hint:?}");
        let reply = service.call(request("/lexum.v1.Lexum/Read", None, "w")).await.expect("reply");
        assert_eq!(grpc_status(&reply), None, "reads are not rate limited");
    }
}
