//! Node configuration in two layers: raw flags ([`Flags`], parsed by clap)
//! and an optional TOML file ([`FileConfig`]) are merged into validated
//! [`Settings`]. Flags win over the file; the file wins over defaults.

use anyhow::{bail, Context};
use clap::Parser;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `lexumd` command-line flags.
#[derive(Debug, Parser)]
#[command(name = "lexumd", version, about = "Run one node of a Lexum reconciliation cluster")]
pub struct Flags {
    /// TOML configuration file (flags override its values).
    #[arg(long, short = 'c', env = "LEXUMD_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's id (non-zero, unique in the cluster).
    #[arg(long)]
    pub id: Option<u64>,
    /// Address the gRPC server (client, worker and Raft APIs) listens on.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Address other nodes and clients use to reach this node (default: --listen).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Directory for the RocksDB database.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Initial cluster member as ID=HOST:PORT (repeat for each member).
    /// The member with the lowest id initializes a new cluster.
    #[arg(long = "peer")]
    pub peers: Vec<String>,
    /// Bearer token required from clients, workers and peers.
    #[arg(long, env = "LEXUM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Log format: text or json.
    #[arg(long)]
    pub log_format: Option<String>,
}

/// The TOML file's shape; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See [`Flags::id`].
    pub id: Option<u64>,
    /// See [`Flags::listen`].
    pub listen: Option<SocketAddr>,
    /// See [`Flags::advertise`].
    pub advertise: Option<String>,
    /// See [`Flags::metrics_listen`].
    pub metrics_listen: Option<SocketAddr>,
    /// See [`Flags::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// Initial members, `id -> address` (keys are ids as strings).
    #[serde(default)]
    pub peers: BTreeMap<String, String>,
    /// See [`Flags::token`].
    pub token: Option<String>,
    /// See [`Flags::log_format`].
    pub log_format: Option<String>,
    /// Raft timing and log compaction.
    #[serde(default)]
    pub raft: RaftSection,
    /// Engine behaviour.
    #[serde(default)]
    pub engine: EngineSection,
    /// TLS for the gRPC server and peer connections.
    pub tls: Option<TlsSection>,
}

/// `[raft]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSection {
    /// Leader heartbeat interval.
    pub heartbeat_ms: u64,
    /// Lower bound of the election timeout.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the election timeout.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_logs: u64,
    /// Entries kept in the log behind the snapshot (for slow followers).
    pub keep_logs: u64,
}

impl Default for RaftSection {
    fn default() -> Self {
        RaftSection {
            heartbeat_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            snapshot_logs: 5000,
            keep_logs: 1000,
        }
    }
}

/// `[engine]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSection {
    /// Cycles without progress before E005.
    pub oscillation_threshold: u32,
    /// How long a worker may take on one attempt.
    pub effect_timeout_ms: u64,
    /// Cycles a goal may go without holding before E005, whatever its orbit.
    pub non_convergence_bound: u32,
    /// Writes kept per field for `lexumctl why`.
    pub write_history: u32,
    /// Half-life of a CONTESTED goal's damping penalty.
    pub damping_half_life_ms: u64,
}

impl Default for EngineSection {
    fn default() -> Self {
        let defaults = lexum_engine::EngineConfig::default();
        EngineSection {
            oscillation_threshold: defaults.oscillation_threshold,
            effect_timeout_ms: defaults.effect_timeout_ms,
            non_convergence_bound: defaults.non_convergence_bound,
            write_history: defaults.write_history,
            damping_half_life_ms: defaults.damping_half_life_ms,
        }
    }
}

/// `[tls]` section: PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Server certificate chain.
    pub cert: PathBuf,
    /// Server private key.
    pub key: PathBuf,
    /// CA that signs peer and (with `client_auth`) client certificates.
    pub ca: Option<PathBuf>,
    /// Require client certificates signed by `ca` (mutual TLS).
    #[serde(default)]
    pub client_auth: bool,
}

/// Validated settings of one node.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Node id.
    pub id: u64,
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Advertised gRPC address.
    pub advertise: String,
    /// HTTP listen address.
    pub metrics_listen: Option<SocketAddr>,
    /// Database directory.
    pub data_dir: PathBuf,
    /// Initial members.
    pub peers: BTreeMap<u64, String>,
    /// Bearer token.
    pub token: Option<String>,
    /// `json` logs when true.
    pub json_logs: bool,
    /// Raft section.
    pub raft: RaftSection,
    /// Engine section.
    pub engine: EngineSection,
    /// TLS section.
    pub tls: Option<TlsSection>,
}

impl Settings {
    /// Merges flags over the config file (if any) and validates.
    pub fn load(flags: Flags) -> anyhow::Result<Settings> {
        let file = match &flags.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                toml::from_str::<FileConfig>(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        Settings::merge(flags, file)
    }

    /// Merges already-parsed layers and validates.
    pub fn merge(flags: Flags, file: FileConfig) -> anyhow::Result<Settings> {
        let id = flags.id.or(file.id).context("a node id is required (--id or `id` in the config file)")?;
        if id == 0 {
            bail!("node id must be non-zero");
        }
        let listen =
            flags.listen.or(file.listen).unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7100 + id as u16)));
        let advertise = flags.advertise.or(file.advertise).unwrap_or_else(|| listen.to_string());
        let data_dir = flags.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from(format!("lexum-data-{id}")));
        let mut peers = BTreeMap::new();
        for (key, addr) in file.peers {
            let peer_id: u64 = key.parse().with_context(|| format!("peer id `{key}` is not a number"))?;
            peers.insert(peer_id, addr);
        }
        for peer in &flags.peers {
            let (peer_id, addr) =
                peer.split_once('=').with_context(|| format!("--peer `{peer}` is not ID=HOST:PORT"))?;
            let peer_id: u64 = peer_id.parse().with_context(|| format!("peer id `{peer_id}` is not a number"))?;
            peers.insert(peer_id, addr.to_string());
        }
        if peers.contains_key(&0) {
            bail!("peer ids must be non-zero");
        }
        if !peers.is_empty() && !peers.contains_key(&id) {
            bail!("the peer list must include this node (id {id})");
        }
        let log_format = flags.log_format.or(file.log_format).unwrap_or_else(|| "text".into());
        let json_logs = match log_format.as_str() {
            "text" => false,
            "json" => true,
            other => bail!("log format `{other}` is not text or json"),
        };
        let raft = file.raft;
        if raft.election_timeout_min_ms <= raft.heartbeat_ms
            || raft.election_timeout_max_ms <= raft.election_timeout_min_ms
        {
            bail!("raft timeouts must satisfy heartbeat < election_timeout_min < election_timeout_max");
        }
        let e = &file.engine;
        if e.oscillation_threshold == 0
            || e.effect_timeout_ms == 0
            || e.non_convergence_bound == 0
            || e.write_history == 0
            || e.damping_half_life_ms == 0
        {
            bail!("every [engine] setting must be positive");
        }
        Ok(Settings {
            id,
            listen,
            advertise,
            metrics_listen: flags.metrics_listen.or(file.metrics_listen),
            data_dir,
            peers,
            token: flags.token.or(file.token).filter(|t| !t.is_empty()),
            json_logs,
            raft,
            engine: file.engine,
            tls: file.tls,
        })
    }

    /// The openraft configuration.
    pub fn raft_config(&self) -> anyhow::Result<openraft::Config> {
        let config = openraft::Config {
            cluster_name: "lexum".into(),
            heartbeat_interval: self.raft.heartbeat_ms,
            election_timeout_min: self.raft.election_timeout_min_ms,
            election_timeout_max: self.raft.election_timeout_max_ms,
            install_snapshot_timeout: 5_000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.raft.snapshot_logs),
            max_in_snapshot_log_to_keep: self.raft.keep_logs,
            ..Default::default()
        };
        Ok(config.validate()?)
    }

    /// The engine settings this node makes the cluster's while it leads
    /// (they are replicated, never applied locally on their own).
    pub fn engine_config(&self) -> lexum_engine::EngineConfig {
        lexum_engine::EngineConfig {
            oscillation_threshold: self.engine.oscillation_threshold,
            effect_timeout_ms: self.engine.effect_timeout_ms,
            non_convergence_bound: self.engine.non_convergence_bound,
            write_history: self.engine.write_history,
            damping_half_life_ms: self.engine.damping_half_life_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        Flags::parse_from(std::iter::once("lexumd").chain(args.iter().copied()))
    }

    #[test]
    fn flags_override_file() {
        let file: FileConfig =
            toml::from_str("id = 2\nlisten = \"127.0.0.1:9000\"\n[peers]\n1 = \"a:1\"\n2 = \"b:2\"").unwrap();
        let settings = Settings::merge(flags(&["--listen", "127.0.0.1:9100"]), file).unwrap();
        assert_eq!(settings.id, 2);
        assert_eq!(settings.listen.port(), 9100);
        assert_eq!(settings.peers.len(), 2);
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(Settings::merge(flags(&[]), FileConfig::default()).is_err());
        assert!(Settings::merge(flags(&["--id", "0"]), FileConfig::default()).is_err());
        assert!(Settings::merge(flags(&["--id", "1", "--peer", "nonsense"]), FileConfig::default()).is_err());
        assert!(Settings::merge(flags(&["--id", "3", "--peer", "1=a:1"]), FileConfig::default()).is_err());
        assert!(toml::from_str::<FileConfig>("idd = 1").is_err());
    }
}
