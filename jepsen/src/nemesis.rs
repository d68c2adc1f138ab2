//! Carries out a [`crate::schedule`] against a running cluster and its
//! worker processes: each planned fault starts at its time and is undone
//! when its hold ends, faults of different lanes overlapping. What was done
//! is returned as fault windows (for the store and the plots' shading).

use crate::cluster::LocalCluster;
use crate::schedule::{Fault, Planned};
use serde::Serialize;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One fault as it happened.
#[derive(Clone, Debug, Serialize)]
pub struct FaultWindow {
    /// The nemesis (`partition`, `kill`, ...).
    pub nemesis: String,
    /// What was done, with its targets and outcome.
    pub label: String,
    /// Start, in seconds from the start of the workload.
    pub start: f64,
    /// End (the fault undone), in seconds from the start of the workload.
    pub end: f64,
    /// Whether the fault could not be applied (no leader, refused).
    pub skipped: bool,
}

/// Worker processes (`jepsen-worker`), one per slot; each replacement gets
/// a new name and log. Dropping this kills them all.
pub struct Workers {
    binary: PathBuf,
    endpoints: Vec<String>,
    log_dir: PathBuf,
    namespace: Option<String>,
    ignore_deadline: bool,
    slots: Vec<Option<(Child, bool)>>,
    started: usize,
}

impl Workers {
    /// Starts `count` workers (in network namespace `namespace`, if any),
    /// logging into `log_dir`.
    pub fn start(
        binary: PathBuf,
        endpoints: Vec<String>,
        log_dir: PathBuf,
        namespace: Option<String>,
        count: usize,
        ignore_deadline: bool,
    ) -> std::io::Result<Workers> {
        std::fs::create_dir_all(&log_dir)?;
        let mut workers =
            Workers { binary, endpoints, log_dir, namespace, ignore_deadline, slots: Vec::new(), started: 0 };
        for _ in 0..count {
            workers.slots.push(None);
        }
        for slot in 0..count {
            workers.spawn(slot)?;
        }
        Ok(workers)
    }

    fn spawn(&mut self, slot: usize) -> std::io::Result<()> {
        let name = format!("w{slot}-{}", self.started);
        self.started += 1;
        let mut command = match &self.namespace {
            Some(namespace) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", namespace]).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        command
            .arg("--endpoints")
            .arg(self.endpoints.join(","))
            .arg("--name")
            .arg(&name)
            .arg("--log")
            .arg(self.log_dir.join(format!("{name}.jsonl")));
        if self.ignore_deadline {
            command.arg("--ignore-deadline");
        }
        let stderr = std::fs::File::create(self.log_dir.join(format!("{name}.stderr")))?;
        let child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr).spawn()?;
        self.slots[slot] = Some((child, false));
        Ok(())
    }

    /// The number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// `kill -9` the worker in `slot`; returns its pid.
    pub fn kill(&mut self, slot: usize) -> Option<u32> {
        let (mut child, _) = self.slots.get_mut(slot)?.take()?;
        let pid = child.id();
        signal(pid, libc::SIGCONT);
        let _ = child.kill();
        let _ = child.wait();
        Some(pid)
    }

    /// Starts a new worker in an empty `slot`.
    pub fn replace(&mut self, slot: usize) -> std::io::Result<()> {
        if self.slots.get(slot).is_some_and(Option::is_none) {
            self.spawn(slot)?;
        }
        Ok(())
    }

    /// SIGSTOP (`pause`) or SIGCONT the worker in `slot`; returns its pid.
    pub fn pause(&mut self, slot: usize, pause: bool) -> Option<u32> {
        let (child, paused) = self.slots.get_mut(slot)?.as_mut()?;
        signal(child.id(), if pause { libc::SIGSTOP } else { libc::SIGCONT });
        *paused = pause;
        Some(child.id())
    }

    /// Resumes every paused worker and restarts every killed one.
    pub fn heal(&mut self) -> std::io::Result<()> {
        for slot in 0..self.slots.len() {
            self.pause(slot, false);
            self.replace(slot)?;
        }
        Ok(())
    }

    /// Stops every worker (SIGTERM, then kill -9 after a grace period).
    pub fn stop(&mut self) {
        for (child, _) in self.slots.iter_mut().flatten() {
            signal(child.id(), libc::SIGCONT);
            signal(child.id(), libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (mut child, _) in self.slots.iter_mut().filter_map(Option::take) {
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for (mut child, _) in self.slots.iter_mut().filter_map(Option::take) {
            signal(child.id(), libc::SIGCONT);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: plain kill(2) on a child process we own.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
}

/// What an active fault must undo when it ends.
enum Undo {
    Nothing,
    Heal,
    Restart(u64),
    Resume(u64),
    RestoreLinks,
    AddBack(u64),
    ReplaceWorker(usize),
    ResumeWorker(usize),
}

/// The nemesis's view of the cluster while it acts.
pub struct Nemesis<'a> {
    /// The cluster.
    pub cluster: &'a mut LocalCluster,
    /// The worker processes.
    pub workers: &'a mut Workers,
    /// When the workload started.
    pub start: Instant,
    /// Nodes removed from the membership (or maybe removed: a call that
    /// gave up may still have committed) and not added back yet.
    pub removed: Vec<u64>,
    /// How long a remove call may take before the nemesis gives up on it.
    pub remove_timeout: Duration,
}

impl<'a> Nemesis<'a> {
    /// A nemesis over `cluster` and `workers` for a workload that started
    /// at `start`.
    pub fn new(cluster: &'a mut LocalCluster, workers: &'a mut Workers, start: Instant) -> Nemesis<'a> {
        Nemesis { cluster, workers, start, removed: Vec::new(), remove_timeout: Duration::from_secs(5) }
    }
}

impl Nemesis<'_> {
    fn seconds(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    async fn leader(&self) -> Option<u64> {
        self.cluster.wait_for_leader(Duration::from_secs(3)).await.ok()
    }

    fn ids(&self) -> Vec<u64> {
        self.cluster.nodes.keys().copied().filter(|id| !self.removed.contains(id)).collect()
    }

    /// Starts `fault`; returns what to undo and a label (`Err` when it
    /// could not be applied).
    async fn begin(&mut self, planned: &Planned) -> Result<(Undo, String), String> {
        let ids = self.ids();
        let pick = planned.pick;
        let choose = |from: &[u64]| from.get((pick % from.len().max(1) as u64) as usize).copied();
        let net_fault = matches!(planned.fault, Fault::IsolateLeader | Fault::Halves | Fault::OneLink | Fault::Bridge);
        let leader = match planned.fault {
            Fault::IsolateLeader | Fault::OneLink | Fault::Bridge | Fault::Membership | Fault::KillLeader => {
                Some(self.leader().await.ok_or("no leader")?)
            }
            _ => None,
        };
        let followers: Vec<u64> = ids.iter().copied().filter(|id| Some(*id) != leader).collect();
        if net_fault && self.cluster.network().is_none() {
            return Err("no network namespaces".into());
        }
        match planned.fault {
            Fault::IsolateLeader => {
                let leader = leader.ok_or("no leader")?;
                let network = self.cluster.network().ok_or("no network")?;
                network.isolate(leader).map_err(|e| e.to_string())?;
                Ok((Undo::Heal, format!("leader {leader} isolated")))
            }
            Fault::Halves => {
                let node = choose(&ids).ok_or("no node")?;
                let network = self.cluster.network().ok_or("no network")?;
                network.isolate(node).map_err(|e| e.to_string())?;
                let rest: Vec<String> = ids.iter().filter(|id| **id != node).map(u64::to_string).collect();
                Ok((Undo::Heal, format!("halves [{node}] | [{}]", rest.join(","))))
            }
            Fault::OneLink => {
                let (leader, follower) = (leader.ok_or("no leader")?, choose(&followers).ok_or("no follower")?);
                let network = self.cluster.network().ok_or("no network")?;
                network.cut(leader, follower).map_err(|e| e.to_string())?;
                Ok((Undo::Heal, format!("link {leader}-{follower} cut")))
            }
            Fault::Bridge => {
                let leader = leader.ok_or("no leader")?;
                let [a, b] = followers[..] else { return Err("not two followers".into()) };
                let network = self.cluster.network().ok_or("no network")?;
                network.cut(a, b).map_err(|e| e.to_string())?;
                Ok((Undo::Heal, format!("bridge: {a}-{b} cut, {leader} reaches both")))
            }
            Fault::Kill => {
                let node = choose(&ids).ok_or("no node")?;
                self.cluster.kill(node).map_err(|e| e.to_string())?;
                Ok((Undo::Restart(node), format!("kill -9 node {node}")))
            }
            Fault::KillLeader => {
                let leader = leader.ok_or("no leader")?;
                self.cluster.kill(leader).map_err(|e| e.to_string())?;
                Ok((Undo::Restart(leader), format!("kill -9 leader {leader}, restarted at once")))
            }
            Fault::Pause => {
                let node = choose(&ids).ok_or("no node")?;
                self.cluster.pause(node, true).map_err(|e| e.to_string())?;
                Ok((Undo::Resume(node), format!("SIGSTOP node {node}")))
            }
            Fault::Netem { delay_ms, jitter_ms, loss_permille } => {
                let network = self.cluster.network().ok_or("no network namespaces")?;
                let mut how = None;
                for id in ids {
                    how = Some(network.degrade(id, delay_ms, jitter_ms, loss_permille).map_err(|e| e.to_string())?);
                }
                let how = match how {
                    Some(crate::netns::Shaping::Netem) => "netem".to_string(),
                    Some(crate::netns::Shaping::TokenBucket { random_loss }) => {
                        format!("tbf{}, no netem in this kernel", if random_loss { "+nft loss" } else { "" })
                    }
                    None => "no node".into(),
                };
                let loss = format!("{}.{}%", loss_permille / 10, loss_permille % 10);
                Ok((Undo::RestoreLinks, format!("delay {delay_ms}ms ±{jitter_ms}ms loss {loss} ({how})")))
            }
            Fault::Membership if !self.removed.is_empty() => {
                // Never two members out at once: bring the last one back first.
                let node = self.removed[0];
                let note = self.add_back(node, Duration::from_secs(5)).await;
                if self.removed.contains(&node) {
                    return Err(note);
                }
                Ok((Undo::Nothing, note))
            }
            Fault::Membership => {
                let node = choose(&followers).ok_or("no follower")?;
                let leader = leader.ok_or("no leader")?;
                let mut client = self.cluster.client(leader).await.map_err(|e| e.to_string())?;
                let call = client.remove_member(lexum_proto::v1::RemoveMemberRequest { id: node });
                let failed = match tokio::time::timeout(self.remove_timeout, call).await {
                    Ok(Ok(_)) => None,
                    Ok(Err(status)) => Some(format!("remove {node} refused: {}", status.message())),
                    Err(_) => Some(format!("remove {node} timed out")),
                };
                if let Some(failed) = failed {
                    // A call that gave up (or a refusal after an earlier one
                    // went through) may leave the node out: the next
                    // membership fault and the heal add it back if so.
                    self.removed.push(node);
                    return Err(failed);
                }
                self.removed.push(node);
                self.cluster.restart_empty(node).map_err(|e| e.to_string())?;
                Ok((Undo::AddBack(node), format!("node {node} removed, wiped")))
            }
            Fault::WorkerKill => {
                let slot = (pick % self.workers.len().max(1) as u64) as usize;
                let pid = self.workers.kill(slot).ok_or("no worker")?;
                Ok((Undo::ReplaceWorker(slot), format!("kill -9 worker {slot} (pid {pid})")))
            }
            Fault::WorkerPause => {
                let slot = (pick % self.workers.len().max(1) as u64) as usize;
                let pid = self.workers.pause(slot, true).ok_or("no worker")?;
                Ok((Undo::ResumeWorker(slot), format!("SIGSTOP worker {slot} (pid {pid})")))
            }
        }
    }

    /// Undoes a fault; returns what happened when it says more than "done".
    async fn undo(&mut self, undo: Undo) -> Option<String> {
        match undo {
            Undo::Nothing => None,
            Undo::Heal => self.cluster.network().and_then(|n| n.heal().err()).map(|e| e.to_string()),
            Undo::Restart(node) => self.cluster.restart(node).err().map(|e| e.to_string()),
            Undo::Resume(node) => self.cluster.pause(node, false).err().map(|e| e.to_string()),
            Undo::RestoreLinks => self.cluster.network().and_then(|n| n.restore_links().err()).map(|e| e.to_string()),
            // Bounded short: other faults' ends wait behind it. A node not back
            // yet is retried by the next membership fault and by the heal.
            Undo::AddBack(node) => Some(self.add_back(node, Duration::from_secs(5)).await),
            Undo::ReplaceWorker(slot) => self.workers.replace(slot).err().map(|e| e.to_string()),
            Undo::ResumeWorker(slot) => {
                self.workers.pause(slot, false);
                None
            }
        }
    }

    /// Adds a removed node back as a voter (retrying within `limit`).
    async fn add_back(&mut self, node: u64, limit: Duration) -> String {
        let Some(address) = self.cluster.nodes.get(&node).map(|n| n.addr.clone()) else { return "unknown node".into() };
        let deadline = Instant::now() + limit;
        let mut last = String::from("no leader");
        while Instant::now() < deadline {
            if let Some(leader) = self.leader().await {
                if let Ok(mut client) = self.cluster.client(leader).await {
                    // An earlier call that timed out here may have gone through.
                    let members = client.members(lexum_proto::v1::MembersRequest {});
                    if let Ok(Ok(members)) = tokio::time::timeout(Duration::from_secs(2), members).await {
                        if members.get_ref().members.iter().any(|m| m.id == node && m.voter) {
                            self.removed.retain(|id| *id != node);
                            return format!("node {node} added back");
                        }
                    }
                    let request = lexum_proto::v1::AddMemberRequest { id: node, address: address.clone() };
                    match tokio::time::timeout(Duration::from_secs(4), client.add_member(request)).await {
                        Ok(Ok(_)) => {
                            self.removed.retain(|id| *id != node);
                            return format!("node {node} added back");
                        }
                        Ok(Err(status)) => last = status.message().to_string(),
                        Err(_) => last = "timed out".into(),
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        format!("node {node} not added back yet: {last}")
    }

    /// Runs `plan` to its end; returns the fault windows.
    pub async fn run(&mut self, plan: &[Planned]) -> Vec<FaultWindow> {
        // (time, is_end, index): ends first at equal times.
        let mut events: Vec<(Duration, bool, usize)> = Vec::new();
        for (i, p) in plan.iter().enumerate() {
            events.push((p.at, false, i));
            events.push((p.at + p.hold, true, i));
        }
        events.sort_by_key(|(at, is_end, i)| (*at, !*is_end, *i));
        let mut active: Vec<Option<(Undo, usize)>> = (0..plan.len()).map(|_| None).collect();
        let mut windows: Vec<FaultWindow> = Vec::new();
        for (at, is_end, i) in events {
            tokio::time::sleep_until((self.start + at).into()).await;
            let planned = &plan[i];
            if !is_end {
                let started = self.seconds();
                let nemesis = planned.fault.nemesis().to_string();
                match self.begin(planned).await {
                    Ok((undo, label)) => {
                        active[i] = Some((undo, windows.len()));
                        windows.push(FaultWindow { nemesis, label, start: started, end: started, skipped: false });
                    }
                    Err(why) => windows.push(FaultWindow {
                        nemesis,
                        label: format!("{:?}: {why}", planned.fault),
                        start: started,
                        end: started,
                        skipped: true,
                    }),
                }
            } else if let Some((undo, window)) = active[i].take() {
                let note = self.undo(undo).await;
                let end = self.seconds();
                if let Some(w) = windows.get_mut(window) {
                    w.end = end;
                    if let Some(note) = note {
                        w.label = format!("{}; {note}", w.label);
                    }
                }
            }
        }
        windows
    }

    /// Undoes whatever may be left: heals the network, restores links,
    /// resumes and restarts nodes and workers, adds removed nodes back.
    pub async fn heal_all(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(network) = self.cluster.network() {
            if let Err(error) = network.heal() {
                problems.push(format!("heal: {error}"));
            }
            if let Err(error) = network.restore_links() {
                problems.push(format!("restore links: {error}"));
            }
        }
        let ids: Vec<u64> = self.cluster.nodes.keys().copied().collect();
        for id in ids {
            if self.cluster.pid(id).is_none() {
                if let Err(error) = self.cluster.restart(id) {
                    problems.push(format!("restart {id}: {error}"));
                }
            } else {
                let _ = self.cluster.pause(id, false);
            }
        }
        if let Err(error) = self.workers.heal() {
            problems.push(format!("workers: {error}"));
        }
        for node in self.removed.clone() {
            let note = self.add_back(node, Duration::from_secs(60)).await;
            if !note.ends_with("added back") {
                problems.push(note);
            }
        }
        problems
    }
}
