//! The deployment files cannot run here (no container engine, no
//! Kubernetes), so they are parsed and cross-checked: every flag they pass
//! exists in `lexumd --help` / `lexumctl --help`, ports agree, and embedded
//! node configurations parse as `lexumd` configuration files.

use lexum_jepsen::cluster::workspace_binary;
use lexum_node::config::FileConfig;
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

fn strings(yaml: &Yaml) -> Vec<String> {
    yaml.as_vec().map(|v| v.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
}

#[test]
fn compose_passes_only_real_flags_and_publishes_each_nodes_ports() {
    let lexumd = flags_of("lexumd", None);
    let lexumctl = flags_of("lexumctl", None);
    let worker = flags_of("lexumctl", Some("worker"));
    let docs = YamlLoader::load_from_str(&read("deploy/docker/compose.yaml")).expect("compose parses");
    let services = docs[0]["services"].as_hash().expect("services");
    let mut nodes = 0;
    for (name, service) in services {
        let name = name.as_str().unwrap_or_default();
        let command = strings(&service["command"]);
        if name.starts_with("lexum-") {
            nodes += 1;
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
    let set = docs.iter().find(|d| kind(d) == "StatefulSet").expect("StatefulSet");
    let replicas = set["spec"]["replicas"].as_i64().expect("replicas");
    assert_eq!(replicas as usize, config.peers.len(), "one peer per replica");
    let container = &set["spec"]["template"]["spec"]["containers"][0];
    let args = strings(&container["args"]).join(" ");
    for flag in args.split_whitespace().filter(|w| w.starts_with("--")) {
        assert!(lexumd.contains(flag), "StatefulSet passes unknown flag {flag}");
    }
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
    let sample: FileConfig = toml::from_str(&read("deploy/systemd/lexumd.toml")).expect("sample config parses");
    assert_eq!(sample.peers.len(), 3);
    let worker_flags = flags_of("lexumctl", Some("worker"));
    let worker = read("deploy/systemd/lexum-worker.service");
    let exec = worker.lines().find(|l| l.starts_with("ExecStart=")).expect("ExecStart");
    for flag in exec.split_whitespace().filter(|w| w.starts_with("--")) {
        assert!(worker_flags.contains(flag), "lexum-worker.service passes unknown flag {flag}");
    }
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
