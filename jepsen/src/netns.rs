//! Linux network namespaces for partition tests: every node gets its own
//! namespace and address, and the tests' clients run in one more; all of
//! them hang off a bridge in a hub namespace. Nothing touches the host's
//! own network: every interface, address and route lives in namespaces
//! this module creates and deletes.
//!
//! A partition between two nodes routes each one's traffic for the other
//! into a sink (a veth whose other end is down, with a fixed neighbour
//! entry), so packets vanish silently, as on a real broken network: new
//! connections time out rather than fail fast. Clients keep reaching every
//! node, so an isolated old leader is still asked to serve.
//!
//! Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and the `ip` command
//! (iproute2), with veth and bridge support in the kernel; [`available`]
//! checks all of that by building a throwaway network.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The subnet every namespace set uses; sets are isolated from each other,
/// so they may share it.
const SUBNET: [u8; 3] = [10, 77, 0];
/// Host part of the clients' address.
const CLIENT_HOST: u8 = 250;
/// Namespace sets made by this process so far (keeps names unique).
static SETS: AtomicU32 = AtomicU32::new(0);

/// Errors from setting up or changing the network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// An `ip` command failed.
    #[error("`ip {args}` failed: {stderr}")]
    Command {
        /// The arguments.
        args: String,
        /// What it printed.
        stderr: String,
    },
    /// `ip` could not be run at all.
    #[error("cannot run `ip`: {0}")]
    Spawn(std::io::Error),
    /// Entering a namespace failed.
    #[error("cannot enter network namespace {name}: {source}")]
    Enter {
        /// The namespace.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// A node id that has no namespace here.
    #[error("node {0} has no namespace in this network")]
    UnknownNode(u64),
}

/// A set of namespaces: a hub with a bridge, one per node, one for clients.
pub struct Network {
    prefix: String,
    nodes: BTreeSet<u64>,
    cut: BTreeSet<(u64, u64)>,
    degraded: BTreeSet<u64>,
}

/// How [`Network::degrade`] changed a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shaping {
    /// `tc netem`: delay, jitter and loss as asked.
    Netem,
    /// No netem in this kernel: a token bucket's queueing delay and drops,
    /// with random loss from `nft` when `random_loss`.
    TokenBucket {
        /// Whether `nft` added the random loss.
        random_loss: bool,
    },
}

/// Whether this process can build a [`Network`] here: it runs as root,
/// `ip` exists, and a throwaway network (namespaces, bridge, veth pairs)
/// can be created and deleted. A container without the capabilities or the
/// kernel support fails the last step. `Err` says why not.
pub fn available() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not running as root".into());
    }
    if !Command::new("ip").arg("-V").output().is_ok_and(|o| o.status.success()) {
        return Err("the `ip` command (iproute2) is missing".into());
    }
    Network::create(&[1]).map(drop).map_err(|e| e.to_string())
}

/// For a test that needs namespaces: `true` when they are available;
/// otherwise says why and returns `false` (the test then passes as
/// skipped), except under CI (`CI=true`), where a skipped network test
/// would hide a broken machine: there it panics.
pub fn available_or_skip(test: &str) -> bool {
    match available() {
        Ok(()) => true,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
            panic!("{test} needs network namespaces and CI=true forbids skipping it: {why}")
        }
        Err(why) => {
            eprintln!("skipped {test}: no network namespaces here ({why})");
            false
        }
    }
}

/// Runs `ip ARGS`; fails with its stderr.
fn ip(args: &[&str]) -> Result<(), NetError> {
    let output = Command::new("ip").args(args).output().map_err(NetError::Spawn)?;
    if output.status.success() {
        Ok(())
    } else {
        Err(NetError::Command {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

impl Network {
    /// Creates the namespaces for nodes `ids` (ids 1..=200) and the clients.
    pub fn create(ids: &[u64]) -> Result<Network, NetError> {
        let set = SETS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("lexum-{}-{set}", std::process::id());
        let mut network = Network { prefix, nodes: BTreeSet::new(), cut: BTreeSet::new(), degraded: BTreeSet::new() };
        let hub = network.hub();
        ip(&["netns", "add", &hub])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        network.attach(&network.client_namespace(), "bc", CLIENT_HOST)?;
        for &id in ids {
            let host = u8::try_from(id).ok().filter(|h| (1..=200).contains(h)).ok_or(NetError::UnknownNode(id))?;
            network.nodes.insert(id);
            let namespace = network.namespace(id);
            network.attach(&namespace, &format!("b{id}"), host)?;
            ip(&["-n", &namespace, "link", "add", "sink", "type", "veth", "peer", "name", "sink-peer"])?;
            ip(&["-n", &namespace, "link", "set", "sink", "up"])?;
        }
        Ok(network)
    }

    /// Makes namespace `name`, links it to the bridge through `port`, and
    /// gives it address `host` in the subnet.
    fn attach(&self, name: &str, port: &str, host: u8) -> Result<(), NetError> {
        let hub = self.hub();
        let address = format!("{}/24", Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], host));
        ip(&["netns", "add", name])?;
        ip(&["-n", &hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", name])?;
        ip(&["-n", &hub, "link", "set", port, "master", "br0"])?;
        ip(&["-n", &hub, "link", "set", port, "up"])?;
        ip(&["-n", name, "addr", "add", &address, "dev", "eth0"])?;
        ip(&["-n", name, "link", "set", "eth0", "up"])?;
        ip(&["-n", name, "link", "set", "lo", "up"])
    }

    fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    /// The namespace of node `id`.
    pub fn namespace(&self, id: u64) -> String {
        format!("{}-n{id}", self.prefix)
    }

    /// The namespace the clients run in.
    pub fn client_namespace(&self) -> String {
        format!("{}-clients", self.prefix)
    }

    /// The address of node `id`.
    pub fn address(id: u64) -> Ipv4Addr {
        Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], u8::try_from(id).unwrap_or(0))
    }

    /// Cuts every packet between nodes `a` and `b`, both ways.
    pub fn cut(&mut self, a: u64, b: u64) -> Result<(), NetError> {
        if let Some(unknown) = [a, b].into_iter().find(|id| !self.nodes.contains(id)) {
            return Err(NetError::UnknownNode(unknown));
        }
        for (from, to) in [(a, b), (b, a)] {
            if self.cut.insert((from, to)) {
                let namespace = self.namespace(from);
                let peer = Self::address(to).to_string();
                ip(&["-n", &namespace, "route", "replace", &format!("{peer}/32"), "dev", "sink"])?;
                ip(&["-n", &namespace, "neigh", "replace", &peer, "lladdr", "02:00:00:00:00:01", "dev", "sink"])?;
            }
        }
        Ok(())
    }

    /// Cuts `node` off from every other node (clients still reach it).
    pub fn isolate(&mut self, node: u64) -> Result<(), NetError> {
        let others: Vec<u64> = self.nodes.iter().copied().filter(|&id| id != node).collect();
        for other in others {
            self.cut(node, other)?;
        }
        Ok(())
    }

    /// Restores every cut link.
    pub fn heal(&mut self) -> Result<(), NetError> {
        for (from, to) in std::mem::take(&mut self.cut) {
            let peer = format!("{}/32", Self::address(to));
            ip(&["-n", &self.namespace(from), "route", "del", &peer, "dev", "sink"])?;
        }
        Ok(())
    }

    /// Degrades node `id`'s link (every packet it sends): `delay` plus or
    /// minus `jitter` and `loss_permille` tenths of a percent lost, with
    /// `tc netem`. A kernel without netem (`sch_netem`) gets the closest
    /// thing it has: a token bucket (`tc tbf`) slow enough that packets
    /// queue for up to `delay` (and are dropped past it), plus random loss
    /// with `nft` where it exists. Returns how it was done.
    pub fn degrade(&mut self, id: u64, delay_ms: u32, jitter_ms: u32, loss_permille: u32) -> Result<Shaping, NetError> {
        if !self.nodes.contains(&id) {
            return Err(NetError::UnknownNode(id));
        }
        let namespace = self.namespace(id);
        self.degraded.insert(id);
        let (delay, jitter) = (format!("{delay_ms}ms"), format!("{jitter_ms}ms"));
        let loss = format!("{}.{}%", loss_permille / 10, loss_permille % 10);
        let netem = ["-n", &namespace, "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", &delay, &jitter];
        let netem: Vec<&str> = netem.into_iter().chain(["loss", loss.as_str()]).collect();
        match tc(&netem) {
            Ok(()) => return Ok(Shaping::Netem),
            Err(NetError::Command { stderr, .. }) if stderr.contains("unknown") => {}
            Err(error) => return Err(error),
        }
        let latency = format!("{}ms", delay_ms.max(1));
        tc(&[
            "-n", &namespace, "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", "2mbit", "burst", "8kb",
            "latency", &latency,
        ])?;
        if loss_permille == 0 {
            return Ok(Shaping::TokenBucket { random_loss: false });
        }
        let rule = format!(
            "table inet lexum {{ chain out {{ type filter hook output priority 0; numgen random mod 1000 < {loss_permille} drop; }} }}"
        );
        let nft = Command::new("ip").args(["netns", "exec", &namespace, "nft", &rule]).output();
        let random_loss = nft.is_ok_and(|o| o.status.success());
        Ok(Shaping::TokenBucket { random_loss })
    }

    /// Restores every degraded link.
    pub fn restore_links(&mut self) -> Result<(), NetError> {
        for id in std::mem::take(&mut self.degraded) {
            let namespace = self.namespace(id);
            let _ = Command::new("ip")
                .args(["netns", "exec", &namespace, "nft", "delete", "table", "inet", "lexum"])
                .output();
            match tc(&["-n", &namespace, "qdisc", "del", "dev", "eth0", "root"]) {
                Ok(()) => {}
                // Nothing to delete: the link was never changed.
                Err(NetError::Command { stderr, .. })
                    if stderr.contains("No such") || stderr.contains("handle of zero") => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Moves the calling thread into the clients' namespace: sockets it
    /// (and threads it starts afterwards) opens belong there.
    pub fn enter_clients(&self) -> Result<(), NetError> {
        enter(&self.client_namespace())
    }
}

/// Runs `body` on a new runtime whose threads all live in the clients'
/// namespace (a thread's sockets belong to the namespace it is in, and the
/// threads it starts inherit it). A panic in `body` is re-raised here.
pub fn run_as_client<F, Fut, T>(network: Network, body: F) -> Result<T, NetError>
where
    F: FnOnce(Network) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    let thread = std::thread::spawn(move || {
        network.enter_clients()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|source| NetError::Enter { name: network.client_namespace(), source })?;
        Ok(runtime.block_on(body(network)))
    });
    thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Runs `tc ARGS`; fails with its stderr.
fn tc(args: &[&str]) -> Result<(), NetError> {
    let output = Command::new("tc").args(args).output().map_err(NetError::Spawn)?;
    if output.status.success() {
        Ok(())
    } else {
        Err(NetError::Command {
            args: format!("tc {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// Moves the calling thread into network namespace `name`.
fn enter(name: &str) -> Result<(), NetError> {
    let error = |source| NetError::Enter { name: name.to_string(), source };
    let file = std::fs::File::open(format!("/run/netns/{name}")).map_err(error)?;
    // SAFETY: setns on a file descriptor we hold open; CLONE_NEWNET only
    // changes this thread's network namespace.
    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(error(std::io::Error::last_os_error()));
    }
    Ok(())
}

impl Drop for Network {
    fn drop(&mut self) {
        let mut names: Vec<String> = self.nodes.iter().map(|&id| self.namespace(id)).collect();
        names.push(self.client_namespace());
        names.push(self.hub());
        for name in names {
            let _ = ip(&["netns", "delete", &name]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_are_in_the_subnet() {
        assert_eq!(Network::address(3), Ipv4Addr::new(10, 77, 0, 3));
    }

    #[test]
    fn namespaces_are_created_cut_healed_and_deleted() {
        if !available_or_skip("namespaces_are_created_cut_healed_and_deleted") {
            return;
        }
        let mut network = Network::create(&[1, 2]).expect("namespaces");
        let names = [network.namespace(1), network.namespace(2), network.client_namespace(), network.hub()];
        network.isolate(1).expect("isolate");
        let routes = Command::new("ip").args(["-n", &names[0], "route"]).output().expect("ip route");
        assert!(String::from_utf8_lossy(&routes.stdout).contains("10.77.0.2 dev sink"), "{routes:?}");
        assert!(network.cut(1, 9).is_err(), "an unknown node is refused");
        network.heal().expect("heal");
        let routes = Command::new("ip").args(["-n", &names[0], "route"]).output().expect("ip route");
        assert!(!String::from_utf8_lossy(&routes.stdout).contains("sink"), "{routes:?}");
        drop(network);
        let listed = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
        let listed = String::from_utf8_lossy(&listed.stdout);
        for name in names {
            assert!(!listed.contains(&name), "{name} left behind");
        }
    }
}
