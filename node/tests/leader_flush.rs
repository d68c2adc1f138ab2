//! A leader's own log sync and the quorum (the openraft patch in
//! `vendor/openraft`, see its LEXUM-PATCH.md): the leader replicates an
//! entry while its own append is being synced, and counts itself towards a
//! commit only once that sync completes (Raft thesis §10.2.1); and a
//! read's leadership check waits for followers whose syncs are slow; and
//! the state machine worker answers each proposer once its entry is applied;
//! and a new commit index rides on the next AppendEntries, an empty one
//! carrying it only when none goes out within the commit propagation delay;
//! and an entry a follower has acknowledged is in its files, as a `kill -9`
//! would leave them (the store writes its WAL only when it syncs).
//!
//! Three in-process Raft nodes on Lexum's RocksDB store, joined by an
//! in-memory network a test can cut; `LogStore::hold_syncs` plays a slow
//! disk.

use lexum_engine::Entry;
use lexum_node::raft_types::{NodeId, Raft, TypeConfig};
use lexum_node::store::log_store::LogStore;
use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Every node's Raft handle, the nodes cut off from the rest, and how many
/// AppendEntries without entries each node has been sent.
#[derive(Default)]
struct Router {
    nodes: Mutex<BTreeMap<NodeId, Raft>>,
    cut: Mutex<BTreeSet<NodeId>>,
    empty_appends: Mutex<BTreeMap<NodeId, usize>>,
}

impl Router {
    fn reach(&self, from: NodeId, to: NodeId) -> Result<Raft, Unreachable> {
        let cut = self.cut.lock().expect("cut lock");
        if cut.contains(&from) || cut.contains(&to) {
            return Err(Unreachable::new(&std::io::Error::other(format!("{from} -> {to} is cut"))));
        }
        let nodes = self.nodes.lock().expect("nodes lock");
        nodes.get(&to).cloned().ok_or_else(|| Unreachable::new(&std::io::Error::other(format!("no node {to}"))))
    }
}

/// The network of one node: calls go straight to the target's Raft.
struct Net {
    from: NodeId,
    router: Arc<Router>,
}

impl RaftNetworkFactory<TypeConfig> for Net {
    type Network = Conn;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Conn {
        Conn { from: self.from, to: target, router: self.router.clone() }
    }
}

struct Conn {
    from: NodeId,
    to: NodeId,
    router: Arc<Router>,
}

type Rpc<T, E = openraft::error::Infallible> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl RaftNetwork<TypeConfig> for Conn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<NodeId>> {
        let raft = self.router.reach(self.from, self.to).map_err(RPCError::Unreachable)?;
        if rpc.entries.is_empty() {
            *self.router.empty_appends.lock().expect("count lock").entry(self.to).or_default() += 1;
        }
        raft.append_entries(rpc).await.map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let raft = self.router.reach(self.from, self.to).map_err(RPCError::Unreachable)?;
        raft.install_snapshot(rpc).await.map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)))
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, _option: RPCOption) -> Rpc<VoteResponse<NodeId>> {
        let raft = self.router.reach(self.from, self.to).map_err(RPCError::Unreachable)?;
        raft.vote(rpc).await.map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)))
    }
}

/// A 50 ms heartbeat and a 300-600 ms election timeout.
fn usual_timeouts() -> openraft::Config {
    openraft::Config {
        heartbeat_interval: 50,
        election_timeout_min: 300,
        election_timeout_max: 600,
        ..Default::default()
    }
}

/// Three nodes with an elected leader; the directories live as long as it.
struct Cluster {
    router: Arc<Router>,
    rafts: BTreeMap<NodeId, Raft>,
    logs: BTreeMap<NodeId, LogStore>,
    replicas: BTreeMap<NodeId, Arc<lexum_node::replica::Replica>>,
    leader: NodeId,
    dirs: BTreeMap<NodeId, tempfile::TempDir>,
    config: Arc<openraft::Config>,
}

impl Cluster {
    async fn start() -> Cluster {
        Cluster::start_with(usual_timeouts()).await
    }

    async fn start_with(config: openraft::Config) -> Cluster {
        Cluster::start_led_by(config, 1).await
    }

    /// Three nodes, node `first` initializing the cluster and so leading it.
    async fn start_led_by(config: openraft::Config, first: NodeId) -> Cluster {
        let router = Arc::new(Router::default());
        let config = Arc::new(config.validate().expect("valid Raft config"));
        let (mut rafts, mut logs, mut replicas, mut dirs) =
            (BTreeMap::new(), BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        for id in 1..=3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let (log, sm) = lexum_node::store::open(dir.path(), id).await.expect("open store");
            replicas.insert(id, sm.replica());
            let net = Net { from: id, router: router.clone() };
            let raft = Raft::new(id, config.clone(), net, log.clone(), sm).await.expect("start raft");
            router.nodes.lock().expect("nodes lock").insert(id, raft.clone());
            rafts.insert(id, raft);
            logs.insert(id, log);
            dirs.insert(id, dir);
        }
        let members: BTreeMap<NodeId, BasicNode> = (1..=3).map(|id| (id, BasicNode::new(format!("n{id}")))).collect();
        rafts[&first].initialize(members).await.expect("initialize");
        let metrics = rafts[&first]
            .wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.current_leader.is_some() && m.last_applied.is_some(), "a leader applied its first entry")
            .await
            .expect("a leader is elected");
        let leader = metrics.current_leader.expect("leader");
        Cluster { router, rafts, logs, replicas, leader, dirs, config }
    }

    fn followers(&self) -> Vec<NodeId> {
        self.rafts.keys().copied().filter(|id| *id != self.leader).collect()
    }

    /// Commits a no-op and returns its index.
    async fn write(&self) -> Result<u64, String> {
        let raft = &self.rafts[&self.leader];
        match tokio::time::timeout(Duration::from_secs(5), raft.client_write(Entry::Noop)).await {
            Ok(Ok(response)) => Ok(response.log_id.index),
            Ok(Err(e)) => Err(format!("write failed: {e}")),
            Err(_) => Err("write not committed within 5 s".into()),
        }
    }

    async fn stop(self) {
        for raft in self.rafts.values() {
            let _ = raft.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_commits_on_both_followers_syncs_while_its_own_sync_is_slow() {
    let cluster = Cluster::start().await;
    let slow_disk = cluster.logs[&cluster.leader].hold_syncs();

    // Unpatched openraft 0.9 waits for the leader's own sync before it
    // replicates, so this write would hang until the disk caught up.
    let written = cluster.write().await;

    drop(slow_disk);
    cluster.stop().await;
    assert!(written.is_ok(), "two synced followers are a quorum without the leader: {written:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_counts_itself_towards_a_quorum_only_after_its_own_sync() {
    let cluster = Cluster::start().await;
    let cut_off = cluster.followers()[0];
    cluster.router.cut.lock().expect("cut lock").insert(cut_off);
    let slow_disk = cluster.logs[&cluster.leader].hold_syncs();

    let raft = cluster.rafts[&cluster.leader].clone();
    let write = tokio::spawn(async move { raft.client_write(Entry::Noop).await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let committed_before_sync = write.is_finished();

    // The leader's entry is now durable: the leader plus the one reachable
    // follower are a quorum.
    drop(slow_disk);
    let after_sync = tokio::time::timeout(Duration::from_secs(5), write).await;

    cluster.stop().await;
    assert!(!committed_before_sync, "committed on one follower's sync and the leader's unsynced log");
    assert!(matches!(after_sync, Ok(Ok(Ok(())))), "not committed after the leader's sync: {after_sync:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linearizable_read_waits_for_followers_whose_disk_is_slower_than_a_heartbeat() {
    let cluster = Cluster::start().await;
    let slow_disks: Vec<_> = cluster.followers().iter().map(|id| cluster.logs[id].hold_syncs()).collect();

    // A write the followers have received but not yet synced: their Raft
    // cores await that sync before they answer anything else, the
    // leadership check's heartbeat included.
    let raft = cluster.rafts[&cluster.leader].clone();
    let write = tokio::spawn(async move { raft.client_write(Entry::Noop).await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let raft = cluster.rafts[&cluster.leader].clone();
    let read = tokio::spawn(async move { raft.ensure_linearizable().await.map(|_| ()) });

    // Longer than a heartbeat interval (50 ms), shorter than an election
    // timeout (300 ms): the disk is slow, and no one lost the leadership.
    tokio::time::sleep(Duration::from_millis(150)).await;
    drop(slow_disks);
    let read = tokio::time::timeout(Duration::from_secs(5), read).await;
    let write = tokio::time::timeout(Duration::from_secs(5), write).await;

    cluster.stop().await;
    assert!(matches!(read, Ok(Ok(Ok(())))), "the read gave up on a leader it still had: {read:?}");
    assert!(matches!(write, Ok(Ok(Ok(())))), "the write did not commit: {write:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_proposer_is_answered_with_its_own_entry_once_that_entry_is_applied() {
    let cluster = Cluster::start().await;
    let raft = cluster.rafts[&cluster.leader].clone();
    let replica = cluster.replicas[&cluster.leader].clone();
    // Slow follower disks: the writes pile up, then commit and are applied
    // many at a time, and each must still reach its own proposer.
    let slow_disks: Vec<_> = cluster.followers().iter().map(|id| cluster.logs[id].hold_syncs()).collect();
    let mut proposed = Vec::new();
    for _ in 0..64 {
        // Proposed one after another, so their entries are in this order.
        proposed.push(raft.client_write_ff(Entry::Noop).await.expect("proposed"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(slow_disks);
    let mut answers = Vec::new();
    for answer in proposed {
        let answer = tokio::time::timeout(Duration::from_secs(5), answer).await;
        let applied = replica.applied_state().0.map_or(0, |id| id.index);
        answers.push((answer, applied));
    }
    cluster.stop().await;
    let mut last = 0;
    for (answer, applied) in answers {
        let response = match answer {
            Ok(Ok(Ok(response))) => response,
            other => panic!("a write was not answered: {other:?}"),
        };
        let entry = response.log_id.index;
        assert!(entry > last, "the proposer of entry {last} and a later one were answered out of order ({entry})");
        assert_eq!(response.data.index, entry, "answered with another entry's result");
        assert!(applied >= entry, "answered before entry {entry} was applied (applied {applied})");
        last = entry;
    }
}

/// Three nodes that hold a new commit index `delay_ms` for the next
/// AppendEntries, with the leader's periodic heartbeats off (and elections
/// slow enough not to need them), so only commit propagation sends empty
/// AppendEntries.
async fn quiet_cluster(delay_ms: u64) -> Cluster {
    let cluster = Cluster::start_with(openraft::Config {
        heartbeat_interval: 50,
        election_timeout_min: 5_000,
        election_timeout_max: 10_000,
        commit_propagation_delay: delay_ms,
        ..Default::default()
    })
    .await;
    cluster.rafts[&cluster.leader].runtime_config().heartbeat(false);
    // A heartbeat already on its way is delivered before the counts start.
    tokio::time::sleep(Duration::from_millis(200)).await;
    cluster.router.empty_appends.lock().expect("count lock").clear();
    cluster
}

/// The last index `follower` applied, which it can do only once it knows the
/// entry is committed.
fn applied(cluster: &Cluster, follower: NodeId) -> u64 {
    cluster.rafts[&follower].metrics().borrow().last_applied.map_or(0, |id| id.index)
}

/// Waits up to 5 s for `follower` to apply `index`.
async fn until_applied(cluster: &Cluster, follower: NodeId, index: u64) -> bool {
    for _ in 0..500 {
        if applied(cluster, follower) >= index {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_commit_index_rides_on_the_next_append_entries() {
    let cluster = quiet_cluster(60_000).await;
    let follower = cluster.followers()[0];

    let first = cluster.write().await.expect("first write");
    // Released openraft 0.9 sends the follower the new commit index at once,
    // in an AppendEntries of its own.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let applied_before_next = applied(&cluster, follower);
    let second = cluster.write().await.expect("second write");
    let learned = until_applied(&cluster, follower, first).await;
    let empty = cluster.router.empty_appends.lock().expect("count lock").clone();

    cluster.stop().await;
    assert!(second > first);
    assert!(applied_before_next < first, "the follower applied {first} before the next entries were sent");
    assert!(learned, "the next AppendEntries did not tell the follower that {first} is committed");
    assert!(empty.is_empty(), "empty AppendEntries were sent: {empty:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_follower_is_sent_the_commit_index_once_the_delay_has_passed() {
    let cluster = quiet_cluster(100).await;

    let index = cluster.write().await.expect("write");
    let mut learned = Vec::new();
    for follower in cluster.followers() {
        learned.push((follower, until_applied(&cluster, follower, index).await));
    }
    let empty = cluster.router.empty_appends.lock().expect("count lock").clone();

    cluster.stop().await;
    for (follower, learned) in learned {
        assert!(learned, "follower {follower} never learned that {index} is committed");
    }
    // The follower whose acknowledgement committed the entry had it before
    // it was committed, so only an empty AppendEntries can tell it. (A
    // follower sent the entry late, after the commit, learns both at once.)
    assert!(empty.values().sum::<usize>() >= 1, "no empty AppendEntries carried it: {empty:?}");
}

/// Copies the files of the directory `from` into `to`: what the node has
/// written so far, which is all a `kill -9` leaves behind.
fn copy_files(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("make the copy's directory");
    for entry in std::fs::read_dir(from).expect("read the data directory") {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_files(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy a file");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_a_follower_acknowledged_is_in_its_files_as_a_kill_would_leave_them() {
    use openraft::storage::RaftLogStorage;
    use openraft::RaftLogReader;

    let cluster = Cluster::start().await;
    let index = cluster.write().await.expect("write");
    let vote = cluster.rafts[&cluster.leader].metrics().borrow().vote;
    // A follower answers an AppendEntries only after its append's callback,
    // so once the leader counts a follower as matching the entry, that
    // follower has promised it is durable.
    cluster.rafts[&cluster.leader]
        .wait(Some(Duration::from_secs(5)))
        .metrics(
            |m| {
                let replication = m.replication.clone().unwrap_or_default();
                cluster
                    .followers()
                    .iter()
                    .all(|f| replication.get(f).is_some_and(|id| id.map(|id| id.index) >= Some(index)))
            },
            "both followers matched the entry",
        )
        .await
        .expect("both followers acknowledged the entry");
    let copies = tempfile::tempdir().expect("temp dir");
    let followers = cluster.followers();
    for follower in &followers {
        copy_files(cluster.dirs[follower].path(), &copies.path().join(follower.to_string()));
    }
    cluster.stop().await;

    for follower in followers {
        let (mut log, _sm) =
            lexum_node::store::open(&copies.path().join(follower.to_string()), follower).await.expect("open the copy");
        let entries = log.try_get_log_entries(index..index + 1).await.expect("read the copy's log");
        assert_eq!(entries.len(), 1, "follower {follower}'s files lack entry {index} it acknowledged");
        assert_eq!(log.read_vote().await.expect("read the vote"), Some(vote), "follower {follower}'s vote");
    }
}

/// Proposes `entry` through whichever node leads, for up to 10 s; returns
/// the index it was committed at.
async fn write_through_any_leader(cluster: &Cluster, entry: Entry) -> Result<u64, String> {
    let mut last = String::from("no node took the write");
    for _ in 0..100 {
        for raft in cluster.rafts.values() {
            let write = raft.client_write(entry.clone());
            match tokio::time::timeout(Duration::from_secs(2), write).await {
                Ok(Ok(response)) => return Ok(response.log_id.index),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "timed out".into(),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last)
}

/// A Release entry naming `domain`: entries that differ, so two logs that
/// disagree at an index show it.
fn marked(domain: &str) -> Entry {
    Entry::Release { domain: domain.into(), goal: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_restarted_from_what_a_kill_leaves_never_writes_over_an_entry_of_its_term() {
    use openraft::RaftLogReader;

    let mut cluster = Cluster::start().await;
    let old = cluster.leader;
    // The leader's own appends stay unsynced: its entry commits on the two
    // followers' syncs alone and is not in the leader's files.
    let slow_disk = cluster.logs[&old].hold_syncs();
    let first = write_through_any_leader(&cluster, marked("first")).await.expect("first write");
    // kill -9 and restart at once, before a follower's election timeout:
    // the restarted node has its vote as leader, and a log without `first`.
    let files = kill(&mut cluster, old).await;
    drop(slow_disk);
    restart(&mut cluster, old, &files).await;

    let second = write_through_any_leader(&cluster, marked("second")).await;
    let mut at_first = BTreeMap::new();
    for (id, log) in &cluster.logs {
        let mut log = log.clone();
        let entries = log.try_get_log_entries(first..first + 1).await.expect("read a log");
        let mark = entries.first().map(|e| match &e.payload {
            openraft::EntryPayload::Normal(Entry::Release { domain, .. }) => domain.clone(),
            other => format!("{other:?}"),
        });
        at_first.insert(*id, mark);
    }
    cluster.stop().await;

    assert!(second.is_ok(), "no write after the restart: {second:?}");
    for (id, mark) in at_first {
        assert_eq!(mark.as_deref(), Some("first"), "node {id}'s entry {first} is not the committed one");
    }
}

/// Kills node `id` as `kill -9` would: a copy of its files as they are
/// now, then its Raft shut down and cut off. Returns the copy.
async fn kill(cluster: &mut Cluster, id: NodeId) -> tempfile::TempDir {
    let copy = tempfile::tempdir().expect("temp dir");
    copy_files(cluster.dirs[&id].path(), copy.path());
    cluster.router.nodes.lock().expect("nodes lock").remove(&id);
    let _ = cluster.rafts[&id].shutdown().await;
    copy
}

/// Starts node `id` again from `files` (what [`kill`] left).
async fn restart(cluster: &mut Cluster, id: NodeId, files: &tempfile::TempDir) {
    let (log, sm) = lexum_node::store::open(files.path(), id).await.expect("open the copy");
    let net = Net { from: id, router: cluster.router.clone() };
    let raft = Raft::new(id, cluster.config.clone(), net, log.clone(), sm).await.expect("restart raft");
    cluster.router.nodes.lock().expect("nodes lock").insert(id, raft.clone());
    cluster.rafts.insert(id, raft);
    cluster.logs.insert(id, log);
}

/// Waits up to 10 s for node `id` to see a leader other than `not` and
/// returns it with its term.
async fn new_leader(cluster: &Cluster, id: NodeId, not: NodeId) -> (NodeId, u64) {
    let metrics = cluster.rafts[&id]
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.current_leader.is_some_and(|l| l != not), "a new leader")
        .await
        .expect("a new leader is elected");
    (metrics.current_leader.expect("leader"), metrics.current_term)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_leader_leaves_the_leader_elected_meanwhile_in_place() {
    // Node 3 leads: its id is above both others', so a vote of its at the
    // next leader's term would outrank that leader's.
    // Election timeouts of 1-1.5 s, so the lease (1.5 s) plus one is far
    // longer than the leader's replication backs off (500 ms).
    let slow = openraft::Config { election_timeout_min: 1_000, election_timeout_max: 1_500, ..usual_timeouts() };
    let mut cluster = Cluster::start_led_by(slow, 3).await;
    assert_eq!(cluster.leader, 3, "node 3 initialized the cluster but does not lead it");
    write_through_any_leader(&cluster, marked("before")).await.expect("a write before the kill");
    let files = kill(&mut cluster, 3).await;
    let (leader, term) = new_leader(&cluster, 1, 3).await;
    // Restarted out of reach at first, as when the leader's replication to
    // it is still backing off after failing while it was down (500 ms).
    cluster.router.cut.lock().expect("cut lock").insert(3);
    restart(&mut cluster, 3, &files).await;
    let stored_term = cluster.rafts[&3].metrics().borrow().current_term;
    // Past an election timeout, short of the lease plus one (2.5-3 s): a
    // node that just heard from a leader would still wait.
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    let waited = cluster.rafts[&3].metrics().borrow().current_term;
    cluster.router.cut.lock().expect("cut lock").clear();
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let after = cluster.rafts[&leader].metrics().borrow().clone();
    let followed = cluster.rafts[&3].metrics().borrow().current_leader;
    cluster.stop().await;

    assert_eq!(waited, stored_term, "the restarted node campaigned before a leader could reach it");
    assert_eq!((after.current_leader, after.current_term), (Some(leader), term), "the restart moved the term");
    assert_eq!(followed, Some(leader), "the restarted node does not follow the new leader");
}
