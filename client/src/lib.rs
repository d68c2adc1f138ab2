//! The Lexum Rust SDK: a [`Client`] for the cluster's client API and a
//! [`Worker`] that executes effects, plus the value syntax `lexumctl` uses.
//!
//! The client discovers the leader, follows `lexum-leader` redirects,
//! retries transient failures with exponential backoff within a deadline,
//! and speaks TLS and bearer tokens when configured ([`ClientConfig`]).
//! Errors are [`ClientError`]s that say whether the request was at fault
//! ([`ClientError::is_user_error`]) or the cluster was unreachable
//! ([`ClientError::is_unavailable`]).
//!
//! ```no_run
//! use futures::StreamExt;
//! use lexum_client::{Client, Value};
//!
//! # async fn demo() -> Result<(), lexum_client::ClientError> {
//! let client = Client::connect(["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"]).await?;
//! client.submit_source("pool.lxm", "domain Pool { state { nodes: int = 3 } }").await?;
//! client.set("Pool", "nodes", Value::Int(5)).await?;
//! assert_eq!(client.read("Pool").await?.get("nodes"), Some(&Value::Int(5)));
//! for goal in client.goals().await? {
//!     println!("{}.{} {}", goal.domain, goal.goal, goal.status);
//! }
//! let mut events = client.watch(0);
//! while let Some(event) = events.next().await {
//!     println!("{:?}", event?);
//! }
//! # Ok(()) }
//! ```
//!
//! Workers register one handler per effect; see [`Worker`].

#![warn(missing_docs)]

pub mod client;
pub mod error;
pub mod history;
pub mod provenance;
pub mod value;
pub mod worker;

pub use client::{
    Client, ClientConfig, ClusterStatus, DomainState, EngineSnapshot, Event, EventStream, FieldWrite, Goal, GoalFilter,
    GoalPage, InstancePage, Member, MemberStatus, Membership, NodeInfo, ReplayReport, RetryPolicy, Submitted,
    TlsOptions, WriteOptions, DEFAULT_ENDPOINTS,
};
pub use error::ClientError;
pub use history::{Cycle, FieldDelta, GoalAfter};
pub use provenance::{Cause, Explanation, WriteRecord};
pub use value::{parse_assignment, parse_value, Assignment, ParseError, Value};
pub use worker::{EffectError, EffectOutput, EffectTask, Worker, WorkerOptions, WorkerStats};
