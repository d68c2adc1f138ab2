//! Validated settings: flags, environment and config file merged (flags and
//! environment win over the file, the file over defaults).

use super::args::{ColorChoice, GlobalFlags, OutputFormat};
use super::Failure;
use lexum_client::{ClientConfig, TlsOptions, DEFAULT_ENDPOINTS};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The config file's shape; every key is optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Node addresses.
    pub endpoints: Option<Vec<String>>,
    /// Bearer token.
    pub token: Option<String>,
    /// Default output format.
    pub output: Option<OutputFormat>,
    /// Call deadline, e.g. `"10s"`.
    pub timeout: Option<String>,
    /// TLS files.
    pub tls: Option<FileTls>,
}

/// `[tls]` of the config file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    /// CA certificate (PEM).
    pub ca: PathBuf,
    /// Server name to verify.
    pub domain: Option<String>,
    /// Client certificate (PEM).
    pub cert: Option<PathBuf>,
    /// Client key (PEM).
    pub key: Option<PathBuf>,
}

/// Everything a subcommand needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How to reach the cluster.
    pub client: ClientConfig,
    /// Output format.
    pub output: OutputFormat,
    /// Colour stdout.
    pub color_stdout: bool,
    /// Colour stderr.
    pub color_stderr: bool,
}

impl Settings {
    /// Merges and validates.
    pub fn load(flags: &GlobalFlags) -> Result<Settings, Failure> {
        let file = match config_path(flags.config.as_deref()) {
            Some(path) => read_config(&path)?,
            None => FileConfig::default(),
        };
        let endpoints: Vec<String> = if !flags.endpoints.is_empty() {
            flags.endpoints.iter().map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect()
        } else if let Some(endpoints) = file.endpoints {
            endpoints
        } else {
            DEFAULT_ENDPOINTS.iter().map(|e| e.to_string()).collect()
        };
        if endpoints.is_empty() {
            return Err(Failure::User("no endpoints given".into()));
        }
        let mut client = ClientConfig::new(endpoints);
        client.token = flags.token.clone().or(file.token).filter(|t| !t.is_empty());
        client.as_name = flags.as_name.clone().filter(|n| !n.is_empty());
        if let Some(timeout) = flags.timeout.as_deref().or(file.timeout.as_deref()) {
            let deadline = parse_duration(timeout).map_err(|e| Failure::User(format!("--timeout: {e}")))?;
            if deadline.is_zero() {
                return Err(Failure::User("--timeout must be positive".into()));
            }
            client.deadline = deadline;
            client.request_timeout = client.request_timeout.min(deadline);
        } else {
            client.deadline = Duration::from_secs(10);
        }
        let tls = match (&flags.tls_ca, file.tls) {
            (Some(ca), _) => {
                Some((ca.clone(), flags.tls_domain.clone(), flags.tls_cert.clone(), flags.tls_key.clone()))
            }
            (None, Some(t)) => Some((t.ca, flags.tls_domain.clone().or(t.domain), t.cert, t.key)),
            (None, None) => None,
        };
        if let Some((ca, domain, cert, key)) = tls {
            let identity = match (cert, key) {
                (Some(cert), Some(key)) => Some((read_file(&cert)?, read_file(&key)?)),
                (None, None) => None,
                _ => return Err(Failure::User("TLS client certificate and key go together".into())),
            };
            client.tls = Some(TlsOptions { ca_pem: read_file(&ca)?, domain, identity });
        }
        let output = flags.output.or(file.output).unwrap_or(OutputFormat::Table);
        let color = |terminal: bool| match flags.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => terminal && std::env::var_os("NO_COLOR").is_none(),
        };
        Ok(Settings {
            client,
            output,
            color_stdout: color(std::io::stdout().is_terminal()),
            color_stderr: color(std::io::stderr().is_terminal()),
        })
    }

    /// Whether output is JSON.
    pub fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }
}

fn config_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_path_buf());
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    let path = base.join("lexum").join("lexumctl.toml");
    path.is_file().then_some(path)
}

fn read_config(path: &Path) -> Result<FileConfig, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::User(format!("cannot read config file {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        let first = e.message().lines().next().unwrap_or_default().to_string();
        Failure::User(format!("bad config file {}: {first}", path.display()))
    })
}

fn read_file(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::User(format!("cannot read {}: {e}", path.display())))
}

/// Parses `250ms`, `2s`, `1m`, `1h` (a bare number is milliseconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("bad duration `{text}` (examples: 250ms, 2s, 1m)"))?;
    let ms = match unit {
        "" | "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(format!("bad duration `{text}` (units: ms, s, m, h)")),
    };
    ms.map(Duration::from_millis).ok_or_else(|| format!("duration `{text}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_millis(15)));
        assert!(parse_duration("2 days").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn config_files() {
        let file: FileConfig =
            toml::from_str("endpoints = [\"127.0.0.1:1\"]\ntoken = \"t\"\noutput = \"json\"").unwrap();
        assert_eq!(file.output, Some(OutputFormat::Json));
        assert!(toml::from_str::<FileConfig>("endpoint = []").is_err());
    }
}
