//! Node configuration in two layers: raw flags ([`Flags`], parsed by clap)
//! and an optional TOML file ([`FileConfig`]) are merged into validated
//! [`Settings`]. Flags win over the file; the file wins over defaults.

use crate::service::auth::{NamedToken, Role};
use crate::test_faults::{Permission, TestFault, TestFaults};
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
    /// Legacy single token: an admin token named `token` that is also the
    /// peer token unless `[auth] peer_token` is set. Prefer `[auth]`.
    #[arg(long, env = "LEXUM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Serve without tokens on a non-loopback address (refused otherwise).
    #[arg(long)]
    pub insecure: bool,
    /// Log format: text or json.
    #[arg(long)]
    pub log_format: Option<String>,
    /// Test-only: a bug to switch on (repeatable; see `test_faults`).
    /// Refused unless `LEXUM_ALLOW_TEST_FAULTS=1`; not in `--help`.
    #[arg(long = "test-fault", value_name = "NAME", hide = true)]
    pub test_faults: Vec<TestFault>,
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
    /// Named tokens with roles, and the peer token.
    pub auth: Option<AuthSection>,
    /// Deadlines, caps on calls and watchers, and the write rate.
    #[serde(default)]
    pub limits: crate::service::limits::LimitsConfig,
}

/// `[auth]` section: who may call what (`docs/operations.md`, Security).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// A TOML file with more `[[tokens]]` and the `peer_token`, in the
    /// shape of this section (kept out of the main config, e.g. a Secret).
    pub tokens_file: Option<PathBuf>,
    /// The token nodes send each other; the only one Raft RPCs accept.
    pub peer_token: Option<String>,
    /// Client and worker tokens, each with a name and a role.
    #[serde(default)]
    pub tokens: Vec<NamedToken>,
}

/// The file `[auth] tokens_file` names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensFile {
    /// See [`AuthSection::peer_token`].
    pub peer_token: Option<String>,
    /// See [`AuthSection::tokens`].
    #[serde(default)]
    pub tokens: Vec<NamedToken>,
}

/// The validated tokens of a node.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// Client and worker tokens.
    pub tokens: Vec<NamedToken>,
    /// The peer token (sent to peers, accepted by Raft RPCs).
    pub peer_token: Option<String>,
}

impl AuthSettings {
    /// Whether the node checks tokens at all.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty() || self.peer_token.is_some()
    }
}

/// Shortest token accepted in `[auth]` (the legacy `token` has no minimum).
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest token name.
const MAX_TOKEN_NAME: usize = 64;

/// How long a leader lets a new commit index wait for the next AppendEntries
/// to a follower before an empty one carries it (the openraft patch in
/// `vendor/openraft/LEXUM-PATCH.md`). Under load the next entries come
/// sooner and carry it, which saves each follower a message, a Raft core
/// turn and a round trip per write; an idle follower applies at most this
/// much later.
const COMMIT_PROPAGATION_DELAY_MS: u64 = 5;

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
            heartbeat_ms: 50,
            election_timeout_min_ms: 250,
            election_timeout_max_ms: 400,
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
    /// Evaluation steps one slice, handler, predicate or guard may take (E008 over it).
    pub step_budget: u64,
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
            step_budget: defaults.step_budget,
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
    /// Tokens and roles.
    pub auth: AuthSettings,
    /// Serving without tokens on a non-loopback address was asked for.
    pub insecure: bool,
    /// What the operator should hear about once logging runs.
    pub warnings: Vec<String>,
    /// `json` logs when true.
    pub json_logs: bool,
    /// Raft section.
    pub raft: RaftSection,
    /// Engine section.
    pub engine: EngineSection,
    /// TLS section.
    pub tls: Option<TlsSection>,
    /// Limits section.
    pub limits: crate::service::limits::LimitsConfig,
    /// Test-only bugs switched on (empty in production).
    pub test_faults: TestFaults,
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

    /// Merges already-parsed layers and validates; test faults only with
    /// this process's environment's permission.
    pub fn merge(flags: Flags, file: FileConfig) -> anyhow::Result<Settings> {
        Settings::merge_with(flags, file, Permission::from_env())
    }

    /// Merges already-parsed layers and validates, with `permission` for
    /// `--test-fault`.
    pub fn merge_with(flags: Flags, file: FileConfig, permission: Permission) -> anyhow::Result<Settings> {
        let test_faults = TestFaults::new(&flags.test_faults, permission)?;
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
            || e.step_budget == 0
        {
            bail!("every [engine] setting must be positive");
        }
        file.limits.validate()?;
        let legacy = flags.token.or(file.token).filter(|t| !t.is_empty());
        let (auth, mut warnings) = auth_settings(legacy, file.auth.unwrap_or_default())?;
        if !listen.ip().is_loopback() {
            if !auth.enabled() && !flags.insecure {
                bail!(
                    "refusing to listen on {listen} without tokens: configure [auth] \
                     (docs/operations.md, Security) or pass --insecure"
                );
            }
            if !auth.enabled() {
                warnings.push(format!(
                    "--insecure: serving {listen} without tokens; anyone who reaches it controls the cluster"
                ));
            } else if file.tls.is_none() {
                warnings.push(format!("serving {listen} without TLS: tokens cross the network in plain text"));
            }
        }
        Ok(Settings {
            id,
            listen,
            advertise,
            metrics_listen: flags.metrics_listen.or(file.metrics_listen),
            data_dir,
            peers,
            auth,
            insecure: flags.insecure,
            warnings,
            json_logs,
            raft,
            engine: file.engine,
            tls: file.tls,
            limits: file.limits,
            test_faults,
        })
    }

    /// The openraft configuration.
    pub fn raft_config(&self) -> anyhow::Result<openraft::Config> {
        let config = openraft::Config {
            cluster_name: "lexum".into(),
            heartbeat_interval: self.raft.heartbeat_ms,
            commit_propagation_delay: COMMIT_PROPAGATION_DELAY_MS,
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
            step_budget: self.engine.step_budget,
        }
    }
}

/// Gathers `[auth]`, its tokens file and the legacy `token` into checked
/// settings, with warnings for the operator.
fn auth_settings(legacy: Option<String>, section: AuthSection) -> anyhow::Result<(AuthSettings, Vec<String>)> {
    let mut warnings = Vec::new();
    let mut tokens = section.tokens;
    let mut peer_token = section.peer_token;
    if let Some(path) = &section.tokens_file {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: TokensFile = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        tokens.extend(file.tokens);
        match (&peer_token, file.peer_token) {
            (Some(_), Some(_)) => bail!("peer_token is set both in [auth] and in {}", path.display()),
            (None, from_file) => peer_token = from_file,
            (Some(_), None) => {}
        }
    }
    for t in &tokens {
        if t.name.is_empty()
            || t.name.len() > MAX_TOKEN_NAME
            || t.name.chars().any(|c| c.is_control() || c == '/' || c.is_whitespace())
        {
            bail!(
                "token name `{}` must be 1 to {MAX_TOKEN_NAME} bytes without `/`, spaces or control characters",
                t.name
            );
        }
        if t.name == "anonymous" || t.name == "peer" {
            bail!("token name `{}` is reserved", t.name);
        }
        if t.role == Role::Peer {
            bail!("token `{}`: nodes use [auth] peer_token, not a token with role peer", t.name);
        }
        check_secret(&format!("token `{}`", t.name), &t.token)?;
    }
    if let Some(peer) = &peer_token {
        check_secret("peer_token", peer)?;
    }
    let mut peer_is_legacy = false;
    if let Some(legacy) = legacy {
        if legacy.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
            bail!("token must be printable ASCII without spaces");
        }
        if peer_token.is_none() {
            warnings.push(
                "the single `token` setting is deprecated: it is an admin token and also the peer token, so its \
                 holders can call Raft RPCs; move to [auth] with a peer_token (docs/operations.md, Security)"
                    .to_string(),
            );
            peer_token = Some(legacy.clone());
            peer_is_legacy = true;
        }
        tokens.push(NamedToken { name: "token".into(), role: Role::Admin, token: legacy });
    } else if !tokens.is_empty() && peer_token.is_none() {
        bail!("[auth] has tokens but no peer_token: nodes need their own token to reach each other");
    }
    let mut names = std::collections::BTreeSet::new();
    let mut secrets = std::collections::BTreeSet::new();
    for t in &tokens {
        if !names.insert(t.name.as_str()) {
            bail!("two tokens are named `{}`", t.name);
        }
        if !secrets.insert(t.token.as_str()) {
            bail!("token `{}` has the same secret as another token", t.name);
        }
    }
    if let Some(peer) = &peer_token {
        if secrets.contains(peer.as_str()) && !peer_is_legacy {
            bail!("peer_token must differ from every client token");
        }
    }
    Ok((AuthSettings { tokens, peer_token }, warnings))
}

fn check_secret(what: &str, secret: &str) -> anyhow::Result<()> {
    if secret.len() < MIN_TOKEN_LEN {
        bail!("{what} must be at least {MIN_TOKEN_LEN} characters");
    }
    if secret.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
        bail!("{what} must be printable ASCII without spaces");
    }
    Ok(())
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

    #[test]
    fn limits_are_read_and_checked() {
        let file: FileConfig = toml::from_str("id = 1\n[limits]\nwrites_per_second = 5\nwrite_burst = 7\n").unwrap();
        let settings = Settings::merge(flags(&[]), file).unwrap();
        assert_eq!((settings.limits.writes_per_second, settings.limits.write_burst), (5, 7));
        assert_eq!(settings.limits.max_watchers, crate::service::limits::LimitsConfig::default().max_watchers);
        let file: FileConfig = toml::from_str("id = 1\n[limits]\nmax_watchers = 0\n").unwrap();
        assert!(Settings::merge(flags(&[]), file).is_err());
        assert!(toml::from_str::<FileConfig>("id = 1\n[limits]\nwatchers = 1\n").is_err());
    }

    const AUTH: &str = "[auth]\npeer_token = \"pppppppppppppppppppp\"\n\
        [[auth.tokens]]\nname = \"ops\"\nrole = \"admin\"\ntoken = \"aaaaaaaaaaaaaaaaaaaa\"\n\
        [[auth.tokens]]\nname = \"fleet\"\nrole = \"worker\"\ntoken = \"kkkkkkkkkkkkkkkkkkkk\"\n";

    fn with_auth(extra: &str, args: &[&str]) -> anyhow::Result<Settings> {
        let file: FileConfig = toml::from_str(&format!("id = 1\n{AUTH}{extra}"))?;
        Settings::merge(flags(args), file)
    }

    #[test]
    fn named_tokens_with_roles_and_a_peer_token() {
        let settings = with_auth("", &[]).expect("valid");
        let names: Vec<(&str, Role)> = settings.auth.tokens.iter().map(|t| (t.name.as_str(), t.role)).collect();
        assert_eq!(names, [("ops", Role::Admin), ("fleet", Role::Worker)]);
        assert_eq!(settings.auth.peer_token.as_deref(), Some("pppppppppppppppppppp"));
        assert!(settings.warnings.is_empty(), "{:?}", settings.warnings);
    }

    #[test]
    fn tokens_come_from_a_tokens_file_too() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("tokens.toml");
        let tokens = "peer_token = \"pppppppppppppppppppp\"\n[[tokens]]\nname = \"viewer\"\nrole = \"read\"\n\
                      token = \"rrrrrrrrrrrrrrrrrrrr\"\n";
        std::fs::write(&path, tokens).expect("write");
        let file: FileConfig =
            toml::from_str(&format!("id = 1\n[auth]\ntokens_file = {:?}\n", path.display().to_string())).expect("toml");
        let settings = Settings::merge(flags(&[]), file).expect("valid");
        assert_eq!(settings.auth.tokens.len(), 1);
        assert_eq!(settings.auth.tokens[0].role, Role::Read);
        assert!(settings.auth.peer_token.is_some());
    }

    #[test]
    fn the_legacy_token_is_an_admin_named_token_and_the_peer_token_with_a_warning() {
        let settings =
            Settings::merge(flags(&["--id", "1", "--token", "old-secret"]), FileConfig::default()).expect("ok");
        assert_eq!(
            settings.auth.tokens,
            [NamedToken { name: "token".into(), role: Role::Admin, token: "old-secret".into() }]
        );
        assert_eq!(settings.auth.peer_token.as_deref(), Some("old-secret"));
        assert!(settings.warnings.iter().any(|w| w.contains("deprecated")));
        // Beside [auth], it is one more admin token and the peer token stays apart.
        let settings = with_auth("", &["--token", "old-secret"]).expect("ok");
        assert_eq!(settings.auth.peer_token.as_deref(), Some("pppppppppppppppppppp"));
        assert!(settings.warnings.is_empty());
    }

    #[test]
    fn bad_auth_is_refused() {
        let bad = |text: &str| match toml::from_str::<FileConfig>(&format!("id = 1\n{text}")) {
            Ok(file) => Settings::merge(flags(&[]), file).is_err(),
            Err(_) => true,
        };
        let token = |name: &str, role: &str, secret: &str| {
            format!("[[auth.tokens]]\nname = {name:?}\nrole = {role:?}\ntoken = {secret:?}\n")
        };
        let peer = "[auth]\npeer_token = \"pppppppppppppppppppp\"\n";
        assert!(bad(&token("ops", "admin", "aaaaaaaaaaaaaaaaaaaa")), "tokens without a peer token");
        assert!(bad(&format!("{peer}{}", token("ops", "admin", "short"))), "short token");
        assert!(bad(&format!("{peer}{}", token("o/ps", "admin", "aaaaaaaaaaaaaaaaaaaa"))), "slash in a name");
        assert!(bad(&format!("{peer}{}", token("ops", "peer", "aaaaaaaaaaaaaaaaaaaa"))), "role peer");
        assert!(bad(&format!("{peer}{}", token("ops", "root", "aaaaaaaaaaaaaaaaaaaa"))), "unknown role");
        assert!(bad(&format!("{peer}{}", token("ops", "admin", "pppppppppppppppppppp"))), "client token = peer");
        let twice = format!(
            "{}{}",
            token("ops", "admin", "aaaaaaaaaaaaaaaaaaaa"),
            token("ops", "read", "bbbbbbbbbbbbbbbbbbbb")
        );
        assert!(bad(&format!("{peer}{twice}")), "two tokens with one name");
        let same =
            format!("{}{}", token("a", "admin", "aaaaaaaaaaaaaaaaaaaa"), token("b", "read", "aaaaaaaaaaaaaaaaaaaa"));
        assert!(bad(&format!("{peer}{same}")), "two names with one secret");
    }

    #[test]
    fn test_faults_are_refused_without_the_environment_variable() {
        let asked = ["--id", "1", "--test-fault", "ack-before-commit"];
        let refused = Settings::merge_with(flags(&asked), FileConfig::default(), Permission::Refused);
        let error = format!("{:#}", refused.expect_err("no permission"));
        assert!(error.contains("LEXUM_ALLOW_TEST_FAULTS=1"), "{error}");
        let allowed = Settings::merge_with(flags(&asked), FileConfig::default(), Permission::Granted).expect("allowed");
        assert!(allowed.test_faults.contains(TestFault::AckBeforeCommit));
        let plain = Settings::merge_with(flags(&["--id", "1"]), FileConfig::default(), Permission::Refused);
        assert!(plain.expect("no faults asked").test_faults.is_empty());
        let unknown = Flags::try_parse_from(["lexumd", "--test-fault", "lost-appends"]);
        assert!(unknown.is_err(), "an unknown fault is a usage error");
        let help = <Flags as clap::CommandFactory>::command().render_long_help().to_string();
        assert!(!help.contains("test-fault"), "hidden from --help");
    }

    #[test]
    fn a_public_address_needs_tokens_or_insecure() {
        let public = ["--id", "1", "--listen", "0.0.0.0:7000"];
        let err = Settings::merge(flags(&public), FileConfig::default()).expect_err("refused");
        assert!(format!("{err}").contains("--insecure"), "{err}");
        let mut insecure = public.to_vec();
        insecure.push("--insecure");
        let settings = Settings::merge(flags(&insecure), FileConfig::default()).expect("explicitly insecure");
        assert!(settings.warnings.iter().any(|w| w.contains("without tokens")), "{:?}", settings.warnings);
        let settings = with_auth("", &["--listen", "0.0.0.0:7000"]).expect("tokens suffice");
        assert!(settings.warnings.iter().any(|w| w.contains("without TLS")), "{:?}", settings.warnings);
        assert!(Settings::merge(flags(&["--id", "1", "--listen", "127.0.0.1:7000"]), FileConfig::default()).is_ok());
    }
}
