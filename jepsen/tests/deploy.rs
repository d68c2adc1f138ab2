//! The deployment files cannot run here (no container engine, no
//! Kubernetes), so they are parsed and cross-checked: every flag they pass
//! exists in `lexumd --help` / `lexumctl --help`, ports agree, embedded
//! node configurations parse as `lexumd` configuration files, and every one
//! is secure by default: TLS and tokens from the credentials that
//! `deploy/credentials.sh` makes (which is run here), never `--insecure`.

use lexum_jepsen::cluster::workspace_binary;
use lexum_node::config::{FileConfig, Flags, Settings};
use lexum_node::service::auth::Role;
use std::collections::BTreeSet;
use std::path::PathBuf;
use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Long flags printed by `BINARY [SUBCOMMAND] --help`.
fn flags_of(binary: &str, subcommand: Option<&str>) -> BTreeSet<String> {
    let path = workspace_binary(binary).expect("binary built");
    let mut command = std::process::Command::new(path);
    if let Some(sub) = subcommand {
        command.arg(sub);
    }
    let output = command.arg("--help").output().expect("run --help");
    let text = String::from_utf8_lossy(&output.stdout);
    text.split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[' || c == '<')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.trim_end_matches(|c: char| !c.is_alphanumeric() && c != '-').to_string())
        .collect()
}

fn long_flags(args: &[String]) -> Vec<String> {
    args.iter().filter(|a| a.starts_with("--")).map(|a| a.split('=').next().unwrap_or(a).to_string()).collect()
}

/// Where deployments mount the credentials directory.
const CREDENTIALS: &str = "/etc/lexum/credentials";

/// A node configuration that uses TLS and a tokens file, all under `dir`.
fn assert_secure(what: &str, config: &FileConfig, dir: &str) {
    let auth = config.auth.as_ref().unwrap_or_else(|| panic!("{what}: no [auth]"));
    let tokens_file = auth.tokens_file.as_ref().unwrap_or_else(|| panic!("{what}: no [auth] tokens_file"));
    let tls = config.tls.as_ref().unwrap_or_else(|| panic!("{what}: no [tls]"));
    for path in [tokens_file, &tls.cert, &tls.key, tls.ca.as_ref().unwrap_or_else(|| panic!("{what}: no [tls] ca"))] {
        assert!(path.starts_with(dir), "{what}: {} is not under the credentials mount {dir}", path.display());
    }
}

fn strings(yaml: &Yaml) -> Vec<String> {
    yaml.as_vec().map(|v| v.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
}

#[test]
fn compose_passes_only_real_flags_and_publishes_each_nodes_ports() {
    let lexumd = flags_of("lexumd", None);
    let lexumctl = flags_of("lexumctl", None);
    let worker = flags_of("lexumctl", Some("worker"));
    let text = read("deploy/docker/compose.yaml");
    assert!(text.contains("deploy/credentials.sh --shared --prefix /etc/lexum/credentials deploy/docker/credentials"));
    let node_config: FileConfig = toml::from_str(&read("deploy/docker/lexumd.toml")).expect("lexumd.toml parses");
    assert_secure("deploy/docker/lexumd.toml", &node_config, CREDENTIALS);
    let docs = YamlLoader::load_from_str(&text).expect("compose parses");
    let services = docs[0]["services"].as_hash().expect("services");
    let mut nodes = 0;
    for (name, service) in services {
        let name = name.as_str().unwrap_or_default();
        let command = strings(&service["command"]);
        let volumes = strings(&service["volumes"]);
        assert!(volumes.contains(&format!("./credentials:{CREDENTIALS}:ro")), "{name} mounts the credentials");
        assert!(!command.iter().any(|a| a == "--insecure"), "{name} runs --insecure");
        if name.starts_with("lexum-") {
            nodes += 1;
            let config = command.iter().skip_while(|a| *a != "--config").nth(1).expect("--config");
            assert!(volumes.contains(&format!("./lexumd.toml:{config}:ro")), "{name} mounts lexumd.toml at {config}");
            for flag in long_flags(&command) {
                assert!(lexumd.contains(&flag), "{name}: lexumd has no {flag}");
            }
            let listen = command.iter().skip_while(|a| *a != "--listen").nth(1).expect("--listen");
            let port = listen.rsplit(':').next().unwrap_or_default();
            let ports = strings(&service["ports"]);
            assert!(ports.iter().any(|p| p.ends_with(&format!(":{port}"))), "{name} publishes its gRPC port");
            let peers = command.iter().filter(|a| *a == "--peer").count();
            assert_eq!(peers, 3, "{name} lists three peers");
        } else {
            for flag in long_flags(&command) {
                assert!(lexumctl.contains(&flag) || worker.contains(&flag), "{name}: lexumctl has no {flag}");
            }
            assert_eq!(strings(&service["env_file"]), ["./credentials/worker.env"], "{name} has the worker token");
        }
    }
    assert_eq!(nodes, 3);
}

#[test]
fn kubernetes_statefulset_matches_its_config_and_lexumd_flags() {
    let lexumd = flags_of("lexumd", None);
    let docs = YamlLoader::load_from_str(&read("deploy/k8s/lexum.yaml")).expect("manifest parses");
    let kind = |doc: &Yaml| doc["kind"].as_str().unwrap_or_default().to_string();
    let config_map = docs.iter().find(|d| kind(d) == "ConfigMap").expect("ConfigMap");
    let toml_text = config_map["data"]["lexumd.toml"].as_str().expect("lexumd.toml");
    let config: FileConfig = toml::from_str(toml_text).expect("ConfigMap holds a valid lexumd config");
    assert_secure("the ConfigMap", &config, CREDENTIALS);
    assert!(read("deploy/k8s/lexum.yaml").contains("kubectl create secret generic lexum-credentials"));
    let set = docs.iter().find(|d| kind(d) == "StatefulSet").expect("StatefulSet");
    let replicas = set["spec"]["replicas"].as_i64().expect("replicas");
    assert_eq!(replicas as usize, config.peers.len(), "one peer per replica");
    let container = &set["spec"]["template"]["spec"]["containers"][0];
    let args = strings(&container["args"]).join(" ");
    for flag in args.split_whitespace().filter(|w| w.starts_with("--")) {
        assert!(lexumd.contains(flag), "StatefulSet passes unknown flag {flag}");
        assert_ne!(flag, "--insecure", "the StatefulSet runs --insecure");
    }
    let pod = &set["spec"]["template"]["spec"];
    let mount_of = |volume: &str| {
        let mounts = container["volumeMounts"].as_vec().expect("volumeMounts");
        let mount = mounts.iter().find(|m| m["name"].as_str() == Some(volume)).expect("a mount per volume");
        mount["mountPath"].as_str().unwrap_or_default().to_string()
    };
    let volumes = pod["volumes"].as_vec().expect("volumes");
    let secret = volumes.iter().find(|v| v["name"].as_str() == Some("credentials")).expect("credentials volume");
    assert_eq!(secret["secret"]["secretName"].as_str(), Some("lexum-credentials"));
    assert_eq!(mount_of("credentials"), CREDENTIALS);
    let config_arg = args.split_whitespace().skip_while(|w| *w != "--config").nth(1).expect("--config");
    assert_eq!(config_arg, format!("{}/lexumd.toml", mount_of("config")), "--config is the ConfigMap's file");
    assert!(pod["securityContext"]["fsGroup"].as_i64().is_some(), "the lexum user can read the Secret");
    let ports: Vec<i64> =
        container["ports"].as_vec().expect("ports").iter().filter_map(|p| p["containerPort"].as_i64()).collect();
    assert_eq!(Some(ports[0] as u16), config.listen.map(|a| a.port()), "gRPC port matches listen");
    assert_eq!(Some(ports[1] as u16), config.metrics_listen.map(|a| a.port()), "metrics port matches");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"].as_str(), Some("/readyz"));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"].as_str(), Some("/healthz"));
    let service = docs.iter().find(|d| kind(d) == "Service").expect("headless Service");
    assert_eq!(service["spec"]["clusterIP"].as_str(), Some("None"));
    assert_eq!(set["spec"]["serviceName"].as_str(), service["metadata"]["name"].as_str());
    assert!(docs.iter().any(|d| kind(d) == "PodDisruptionBudget"));
}

#[test]
fn systemd_units_and_sample_config_agree_with_the_binaries() {
    let lexumd = flags_of("lexumd", None);
    let unit = read("deploy/systemd/lexumd.service");
    let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).expect("ExecStart");
    for flag in exec.split_whitespace().filter(|w| w.starts_with("--")) {
        assert!(lexumd.contains(flag), "lexumd.service passes unknown flag {flag}");
    }
    let sample_text = read("deploy/systemd/lexumd.toml");
    let sample: FileConfig = toml::from_str(&sample_text).expect("sample config parses");
    assert_eq!(sample.peers.len(), 3);
    assert_secure("deploy/systemd/lexumd.toml", &sample, CREDENTIALS);
    assert!(sample_text.contains("deploy/credentials.sh --group lexum /etc/lexum/credentials"));
    assert!(!exec.contains("--insecure"));
    let worker_flags = flags_of("lexumctl", Some("worker"));
    let worker = read("deploy/systemd/lexum-worker.service");
    let exec = worker.lines().find(|l| l.starts_with("ExecStart=")).expect("ExecStart");
    for flag in exec.split_whitespace().filter(|w| w.starts_with("--")) {
        assert!(worker_flags.contains(flag), "lexum-worker.service passes unknown flag {flag}");
    }
    assert!(worker.lines().any(|l| l == format!("EnvironmentFile={CREDENTIALS}/worker.env")), "worker token");
}

/// `deploy/credentials.sh` makes what the deployment files point at: a CA
/// that signs the node certificate, a tokens file `lexumd` accepts on a
/// public address (one token per role and a peer token), and the
/// environment files for clients and workers.
#[test]
fn the_credentials_script_makes_a_configuration_lexumd_accepts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_dir = dir.path().join("credentials");
    let out = std::process::Command::new(repo().join("deploy/credentials.sh"))
        .arg(&out_dir)
        .args(["lexum-1", "127.0.0.1"])
        .output()
        .expect("run deploy/credentials.sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config: FileConfig =
        toml::from_str(&std::fs::read_to_string(out_dir.join("auth.toml")).expect("auth.toml")).expect("parses");
    assert_secure("auth.toml", &config, &out_dir.display().to_string());
    let flags = <Flags as clap::Parser>::parse_from(["lexumd", "--id", "1", "--listen", "0.0.0.0:7000"]);
    let settings = Settings::merge(flags, config).expect("lexumd accepts the credentials on a public address");
    assert!(settings.warnings.is_empty(), "{:?}", settings.warnings);
    let mut roles: Vec<Role> = settings.auth.tokens.iter().map(|t| t.role).collect();
    roles.sort();
    assert_eq!(roles, [Role::Read, Role::Write, Role::Worker, Role::Admin]);
    assert!(settings.auth.peer_token.is_some());
    let env = std::fs::read_to_string(out_dir.join("tokens.env")).expect("tokens.env");
    for var in ["LEXUM_TOKEN_READ", "LEXUM_TOKEN_WRITE", "LEXUM_TOKEN_WORKER", "LEXUM_TOKEN_ADMIN", "LEXUM_CA"] {
        assert!(env.contains(&format!("export {var}=")), "tokens.env sets {var}");
    }
    let worker = std::fs::read_to_string(out_dir.join("worker.env")).expect("worker.env");
    let worker_token = settings.auth.tokens.iter().find(|t| t.role == Role::Worker).expect("worker token");
    assert!(worker.contains(&format!("LEXUM_TOKEN={}", worker_token.token)));
    let verify = std::process::Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(out_dir.join("ca.pem"))
        .arg(out_dir.join("node.pem"))
        .output()
        .expect("openssl");
    assert!(verify.status.success(), "the CA signs the node certificate");
    assert!(!out_dir.join("ca.key").exists() && out_dir.join("ca/ca.key").exists(), "the CA key is kept aside");
    let again = std::process::Command::new(repo().join("deploy/credentials.sh"))
        .arg(&out_dir)
        .arg("127.0.0.1")
        .output()
        .expect("run again");
    assert!(again.status.success());
    assert_eq!(std::fs::read_to_string(out_dir.join("tokens.env")).expect("tokens.env"), env, "kept on a second run");
}

#[test]
fn dockerfile_builds_and_ships_both_binaries() {
    let dockerfile = read("deploy/docker/Dockerfile");
    assert!(dockerfile.contains("-p lexum-node") && dockerfile.contains("-p lexum-client"));
    for binary in ["lexumd", "lexumctl"] {
        assert!(dockerfile.contains(&format!("/usr/local/bin/{binary}")), "image ships {binary}");
    }
    assert!(dockerfile.contains("libclang-dev"), "the build stage installs libclang for RocksDB");
}
