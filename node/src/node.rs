//! Assembles and runs one node: storage, Raft, services, dispatcher, HTTP.

use crate::cluster::Cluster;
use crate::config::Settings;
use crate::dispatcher::Dispatcher;
use crate::group_commit::GroupCommit;
use crate::network::Network;
use crate::raft_types::Raft;
use crate::read_batch::ReadBatcher;
use crate::service::auth::{Guard, Tokens};
use crate::service::client::ClientApi;
use crate::service::limits::{Limited, Limits};
use crate::service::raft::RaftTransport;
use crate::service::worker::WorkerApi;
use crate::service::RAFT_MESSAGE_LIMIT;
use crate::test_faults::TestFault;
use anyhow::Context;
use lexum_proto::v1::lexum_server::LexumServer;
use lexum_proto::v1::raft_server::RaftServer;
use lexum_proto::v1::worker_server::WorkerServer;
use lexum_proto::MAX_MESSAGE_BYTES;
use openraft::BasicNode;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, Server, ServerTlsConfig};

/// Runs the node until SIGINT or SIGTERM.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data directory {}", settings.data_dir.display()))?;
    let (log_store, state_machine) = crate::store::open(&settings.data_dir, settings.id)
        .await
        .with_context(|| format!("opening storage in {}", settings.data_dir.display()))?;
    let replica = state_machine.replica();
    log_store.time_syncs_into(replica.metrics().wal_sync_seconds.clone());
    let (server_tls, client_tls) = tls_configs(&settings)?;
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    for warning in settings.test_faults.warnings() {
        tracing::warn!("{warning}");
    }
    let network = Network::new(settings.auth.peer_token.clone(), client_tls.clone());
    let raft =
        Raft::new(settings.id, Arc::new(settings.raft_config()?), network, log_store.clone(), state_machine.clone())
            .await
            .context("starting raft")?;
    let reads = Arc::new(ReadBatcher::recording_into(replica.metrics().reads_per_check.clone()));
    let cluster = Cluster {
        id: settings.id,
        raft: raft.clone(),
        replica,
        propose_timeout: Duration::from_secs(10),
        quorum_timeout: Duration::from_millis(2 * settings.raft.election_timeout_max_ms),
        peer_token: settings.auth.peer_token.clone(),
        peer_tls: client_tls,
        reads,
    };
    bootstrap(&settings, &raft).await?;

    let commits = GroupCommit::start(cluster.clone());
    let dispatcher = Dispatcher::new(cluster.clone(), settings.engine_config(), commits.clone());
    commits.dispatch_armed_with(&dispatcher);
    let sender = Arc::downgrade(&dispatcher);
    state_machine.on_dispatched(Box::new(move |entry| {
        if let Some(dispatcher) = sender.upgrade() {
            dispatcher.send_applied_dispatches(entry);
        }
    }));
    tokio::spawn(dispatcher.clone().run());
    if settings.test_faults.contains(TestFault::LeaderForgetsRetryCounts) {
        tokio::spawn(crate::test_faults::forget_retry_counts(cluster.clone()));
    }
    let tokens = Arc::new(Tokens::new(&settings.auth.tokens, settings.auth.peer_token.as_deref()));
    if let Some(addr) = settings.metrics_listen {
        let (cluster, tokens) = (cluster.clone(), tokens.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::http::serve(addr, cluster, tokens).await {
                tracing::error!("metrics server stopped: {e:#}");
            }
        });
    }

    let client_api = ClientApi::new(cluster.clone(), commits, log_store, state_machine, settings.test_faults.clone());
    let client_api = LexumServer::new(client_api).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let worker_api = WorkerServer::new(WorkerApi::new(dispatcher)).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let raft_api = RaftServer::new(RaftTransport::new(raft.clone()))
        .max_decoding_message_size(RAFT_MESSAGE_LIMIT)
        .max_encoding_message_size(RAFT_MESSAGE_LIMIT);
    let limits = Limits::new(settings.limits.clone());
    let mut server = Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .max_concurrent_streams(settings.limits.max_streams_per_connection());
    if let Some(tls) = server_tls {
        server = server.tls_config(tls)?;
    }
    tracing::info!(
        id = settings.id,
        listen = %settings.listen,
        advertise = %settings.advertise,
        tokens = settings.auth.tokens.len(),
        tls = settings.tls.is_some(),
        "lexumd serving"
    );
    server
        .add_service(Guard::new(Limited::new(client_api, limits.clone()), tokens.clone()))
        .add_service(Guard::new(Limited::new(worker_api, limits), tokens.clone()))
        .add_service(Guard::new(raft_api, tokens))
        .serve_with_shutdown(settings.listen, shutdown_signal())
        .await
        .context("gRPC server")?;
    raft.shutdown().await.ok();
    Ok(())
}

/// Initializes a new cluster from the configured peers. Only the member with
/// the lowest id does it, and only on an empty log; restarts skip it.
async fn bootstrap(settings: &Settings, raft: &Raft) -> anyhow::Result<()> {
    let Some((&lowest, _)) = settings.peers.iter().next() else {
        tracing::info!("no peers configured: waiting to be added to a cluster");
        return Ok(());
    };
    if lowest != settings.id || raft.is_initialized().await? {
        return Ok(());
    }
    let members: BTreeMap<u64, BasicNode> =
        settings.peers.iter().map(|(id, addr)| (*id, BasicNode { addr: addr.clone() })).collect();
    match raft.initialize(members).await {
        Ok(()) => tracing::info!(peers = ?settings.peers, "initialized a new cluster"),
        Err(e) => tracing::warn!("cluster initialization skipped: {e}"),
    }
    Ok(())
}

/// Server and peer-client TLS from the `[tls]` section.
fn tls_configs(settings: &Settings) -> anyhow::Result<(Option<ServerTlsConfig>, Option<ClientTlsConfig>)> {
    let Some(tls) = &settings.tls else { return Ok((None, None)) };
    let read = |path: &std::path::Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let identity = Identity::from_pem(read(&tls.cert)?, read(&tls.key)?);
    let mut server = ServerTlsConfig::new().identity(identity.clone());
    let mut client = ClientTlsConfig::new().identity(identity);
    if let Some(ca) = &tls.ca {
        let ca = Certificate::from_pem(read(ca)?);
        client = client.ca_certificate(ca.clone());
        if tls.client_auth {
            server = server.client_ca_root(ca);
        }
    }
    Ok((Some(server), Some(client)))
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
