//! Linearizability under faults. Concurrent clients write unique values to
//! three registers (fields of one domain) and read them back through any
//! node, while a nemesis kills the leader, pauses a node (SIGSTOP), kills
//! a follower (restarting each), and changes the membership (a fourth node
//! joins as a voter, later leaves). Afterwards every register's history must be
//! linearizable (`lexum_jepsen::registers`), which also means that no
//! acknowledged write was lost and no read was stale.
//!
//! CI runs it for 20 s; `LEXUM_JEPSEN_SECONDS=600` runs it longer (at most
//! an hour).

use lexum_jepsen::cluster::{run_length, ClusterOptions, LocalCluster};
use lexum_jepsen::registers;
use lexum_proto::v1 as pb;
use std::time::{Duration, Instant};

const CLIENTS: usize = 4;
/// How long clients run while the nemesis acts, unless
/// `LEXUM_JEPSEN_SECONDS` says otherwise.
const RUN: Duration = Duration::from_secs(20);

/// Kills, pauses and restarts nodes and changes the membership until
/// `stop`; returns what it did.
async fn nemesis(cluster: &mut LocalCluster, stop: Instant) -> Vec<String> {
    let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
    let mut done = Vec::new();
    let mut joiner = Joiner::default();
    for round in 0..10_000u64 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        if Instant::now() + Duration::from_secs(3) >= stop {
            break;
        }
        let leader = cluster.wait_for_leader(Duration::from_secs(10)).await.ok();
        let follower = ids.iter().copied().find(|id| Some(*id) != leader);
        match (round % 4, leader, follower) {
            (0, Some(victim), _) => {
                cluster.kill(victim).expect("kill");
                tokio::time::sleep(Duration::from_millis(800)).await;
                cluster.restart(victim).expect("restart");
                done.push(format!("kill -9 leader {victim}, restart"));
            }
            (1, Some(victim), _) => {
                cluster.pause(victim, true).expect("pause");
                tokio::time::sleep(Duration::from_millis(1500)).await;
                cluster.pause(victim, false).expect("resume");
                done.push(format!("SIGSTOP leader {victim} for 1.5 s"));
            }
            (2, _, Some(victim)) => {
                cluster.kill(victim).expect("kill");
                tokio::time::sleep(Duration::from_millis(800)).await;
                cluster.restart(victim).expect("restart");
                done.push(format!("kill -9 follower {victim}, restart"));
            }
            (3, Some(_), _) => done.push(joiner.change(cluster).await),
            _ => done.push("no leader: skipped".into()),
        }
    }
    done
}

/// Node 4, which the nemesis adds as a voter and removes in turn.
#[derive(Default)]
struct Joiner {
    started: bool,
    member: bool,
}

impl Joiner {
    const ID: u64 = 4;

    /// Adds node 4 (starting it) or removes it (then stops it); says what happened.
    async fn change(&mut self, cluster: &mut LocalCluster) -> String {
        let Ok(leader) = cluster.wait_for_leader(Duration::from_secs(10)).await else {
            return "no leader: membership unchanged".into();
        };
        let Ok(mut client) = cluster.client(leader).await else { return "leader unreachable".into() };
        if self.member {
            let removed = client.remove_member(pb::RemoveMemberRequest { id: Self::ID }).await;
            self.member = removed.is_err();
            if !self.member {
                cluster.kill(Self::ID).expect("stop node 4");
            }
            return format!("remove node 4: {}", outcome(&removed));
        }
        let address = if self.started {
            cluster.restart(Self::ID).expect("restart node 4");
            cluster.nodes.get(&Self::ID).map(|n| n.addr.clone()).unwrap_or_default()
        } else {
            self.started = true;
            cluster.start_joiner(Self::ID).expect("start node 4")
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster.node_infos().await.contains_key(&Self::ID) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let added = client.add_member(pb::AddMemberRequest { id: Self::ID, address }).await;
        self.member = added.is_ok();
        format!("add node 4 as a voter: {}", outcome(&added))
    }
}

fn outcome<T>(result: &Result<T, tonic::Status>) -> String {
    match result {
        Ok(_) => "done".into(),
        Err(status) => format!("refused ({})", status.message()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_stay_linearizable_while_nodes_are_killed_paused_restarted_added_and_removed() {
    let mut cluster = LocalCluster::start(ClusterOptions::default()).await.expect("cluster");
    let (faults, summary) = registers::run_with_nemesis(&mut cluster, CLIENTS, run_length(RUN), nemesis).await;
    eprintln!("faults: {faults:?}; {summary:?}");
    assert!(faults.len() >= 4, "the nemesis acted: {faults:?}");
    assert!(faults.iter().any(|f| f == "add node 4 as a voter: done"), "the membership changed: {faults:?}");
    assert!(summary.acknowledged >= 30 && summary.reads >= 30, "too little traffic to mean anything: {summary:?}");
}
