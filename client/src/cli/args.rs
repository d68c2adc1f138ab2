//! Raw command-line flags as clap parses them; [`super::settings`] turns
//! them into validated settings.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// The `lexumctl` command line.
#[derive(Debug, Parser)]
#[command(
    name = "lexumctl",
    version,
    about = "Control a Lexum reconciliation cluster",
    after_help = "Exit codes: 0 success, 1 user error (bad program or input, rejected mutation), 2 cluster unavailable, \
                  3 `plan` predicts a trap or a failure."
)]
pub struct Cli {
    /// Connection and output flags shared by every subcommand.
    #[command(flatten)]
    pub global: GlobalFlags,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags shared by every subcommand.
#[derive(Debug, Args)]
pub struct GlobalFlags {
    /// Node addresses, comma-separated (default: the three local nodes).
    #[arg(long, global = true, env = "LEXUM_ENDPOINTS", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Bearer token for the cluster (its role decides what may be called).
    #[arg(long, global = true, env = "LEXUM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A name added to this client's identity in the cause of its writes
    /// (e.g. `--as hpa-bridge` with the token named `ops` records `ops/hpa-bridge`).
    #[arg(long = "as", global = true, env = "LEXUM_AS", value_name = "NAME")]
    pub as_name: Option<String>,
    /// Config file (TOML: endpoints, token, timeout, [tls]); default
    /// `$XDG_CONFIG_HOME/lexum/lexumctl.toml` or `~/.config/lexum/lexumctl.toml` if present.
    #[arg(long, global = true, env = "LEXUM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum)]
    pub output: Option<OutputFormat>,
    /// Colour: auto (when on a terminal), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Deadline of each cluster call, retries included (e.g. 10s, 500ms).
    #[arg(long, global = true)]
    pub timeout: Option<String>,
    /// CA certificate (PEM) that signs the nodes' certificates; enables TLS
    /// (`deploy/local-cluster.sh up --secure` writes `.lexum-local/ca.pem`).
    #[arg(long, visible_alias = "ca", global = true, env = "LEXUM_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Server name to verify in the nodes' certificates.
    #[arg(long, global = true)]
    pub tls_domain: Option<String>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, global = true, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[arg(long, global = true, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// `--output`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Human-readable tables.
    Table,
    /// JSON for scripts.
    Json,
}

/// `--color`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when writing to a terminal.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compile programs locally and report diagnostics (no cluster needed).
    Check {
        /// `.lxm` files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Compile a program locally, then install it on the cluster.
    Submit {
        /// The `.lxm` file.
        file: PathBuf,
    },
    /// Predict what a program version would do, offline, from the live state.
    ///
    /// Reads one linearizable snapshot of the cluster's engine, installs
    /// FILE (or keeps the current version) on a copy here and runs the
    /// deterministic engine with simulated workers: fields migrated, added
    /// or dropped, goals that become violated, the dispatch sequence, the
    /// predicted verdicts, a summary. Nothing is proposed. Exit 3 when
    /// something would be trapped or fail.
    Plan(PlanFlags),
    /// Write observations atomically: `Domain.field=value ...`.
    ///
    /// Values: 5, -3 (int), true/false (bool), "quoted" or bare words (string),
    /// [1,2] or ["a","b"] (lists).
    Set {
        /// `Domain.field=value` assignments.
        #[arg(required = true, allow_hyphen_values = true)]
        assignments: Vec<String>,
        /// Idempotency key of an effect whose outcome these writes observe
        /// (repeat for several; give it before the assignments): the writes
        /// are attributed to its cycle.
        #[arg(long = "caused-by", value_name = "KEY")]
        caused_by: Vec<String>,
        /// Create each instance written (`Kind[key].field=value`) that does
        /// not exist yet, with these values.
        #[arg(long)]
        create: bool,
    },
    /// Show the latest writes of a field with their causes.
    Why {
        /// `Domain.field`.
        target: String,
        /// How many of the latest writes.
        #[arg(long, default_value_t = 10)]
        last: u32,
    },
    /// Say why a goal is in its status and what its repair waits for.
    Explain {
        /// `Domain.Goal`.
        target: String,
    },
    /// Show a domain's fields, an instance's (`Kind/key`), or a page of a
    /// kind's instances (`Kind`).
    Get {
        /// A singleton, an instance (`Kind/key` or `Kind[key]`) or a kind.
        domain: String,
        /// For a kind: at most this many instances (0: all).
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// For a kind: skip this many instances first (in key order).
        #[arg(long, default_value_t = 0)]
        offset: u64,
    },
    /// List goals with their status (all, or a domain's, a kind's or an instance's).
    Goals(super::goals::GoalsFlags),
    /// Create instances of kinds: `Kind/key field=value ... Kind/key2 ...`.
    Create {
        /// `Kind/key` starts an instance; `field=value` sets its initial values.
        #[arg(required = true, allow_hyphen_values = true)]
        items: Vec<String>,
    },
    /// Delete instances (`Kind/key ...`): their work is cancelled, their history kept.
    Delete {
        /// `Kind/key`.
        #[arg(required = true)]
        instances: Vec<String>,
    },
    /// Stream engine events.
    Watch {
        /// First log index of interest (default: only new events).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this long (e.g. 30s).
        #[arg(long = "for")]
        duration: Option<String>,
    },
    /// Show cycle history (the oscillation evidence).
    History {
        /// Most recent cycles to show.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show leader, term, commit index and every member's state hash.
    Status,
    /// Release a TRAPPED goal (`Domain.Goal`) or all of a domain's (`Domain`).
    Release {
        /// `Domain` or `Domain.Goal`.
        target: String,
    },
    /// Re-arm a FAILED goal.
    Retry {
        /// `Domain.Goal`.
        target: String,
    },
    /// Cluster membership.
    Cluster {
        /// What to do.
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Recompute the state hash from each node's log and compare it with the live one.
    Replay,
    /// Run a simulated worker for trying programs without real infrastructure.
    ///
    /// Each task succeeds after --delay with the --result value if given, else
    /// the first int argument, else the first argument, else no value; it fails
    /// with probability --fail-rate.
    Worker(WorkerFlags),
    /// Print a shell completion script.
    Completion {
        /// Shell.
        shell: clap_complete::Shell,
    },
}

/// `lexumctl cluster ...`.
#[derive(Debug, Subcommand)]
pub enum ClusterAction {
    /// List members.
    Members,
    /// Add a node (learner, then voter).
    Add {
        /// Node id.
        id: u64,
        /// Its address, host:port.
        address: String,
    },
    /// Remove a voter.
    Remove {
        /// Node id.
        id: u64,
    },
}

/// `lexumctl worker ...`.
#[derive(Debug, Args)]
pub struct WorkerFlags {
    /// Effect to serve, `Namespace.Name` (repeat for several).
    #[arg(long = "effect", required = true)]
    pub effects: Vec<String>,
    /// Time each task takes (e.g. 200ms).
    #[arg(long, default_value = "0ms")]
    pub delay: String,
    /// Probability (0..=1) that a task fails.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Value every successful task returns (same syntax as `set`).
    #[arg(long, allow_hyphen_values = true)]
    pub result: Option<String>,
    /// Tasks run at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: u32,
    /// Stop after this many successful tasks.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this long.
    #[arg(long = "for")]
    pub duration: Option<String>,
    /// Seed for the failure dice (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Worker id shown in the cluster's logs.
    #[arg(long)]
    pub id: Option<String>,
}

/// `lexumctl plan ...`.
#[derive(Debug, Args)]
pub struct PlanFlags {
    /// The new `.lxm` version (default: the current version, from the current state).
    pub file: Option<PathBuf>,
    /// What every success of an effect returns, `Effect.Name=VALUE` (repeat
    /// for several; default: the first int argument, else the first argument).
    #[arg(long = "result", value_name = "EFFECT=VALUE", allow_hyphen_values = true)]
    pub results: Vec<String>,
    /// An effect whose every attempt fails, `Effect.Name` (repeat for several).
    #[arg(long = "fail", value_name = "EFFECT")]
    pub fail: Vec<String>,
    /// Entries to simulate at most.
    #[arg(long, default_value_t = 1_000)]
    pub steps: u64,
}
