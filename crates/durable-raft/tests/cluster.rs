//! An in-process three-node cluster on the durable stores (openraft's router pattern:
//! RPCs are direct calls on the target's `Raft` handle): writes, restarts from disk of a
//! follower, of the leader and of every node, a snapshot-driven purge, and a new learner
//! that can only catch up from the snapshot.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions: a panic is the failure report"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durable_raft::sm::SmCore;
use durable_raft::{LogStore, NodeId, Request, StateMachine, TypeConfig};
use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Config, SnapshotPolicy};

type Raft = openraft::Raft<TypeConfig>;

#[derive(Clone, Default)]
struct Router {
    nodes: Arc<Mutex<BTreeMap<NodeId, Raft>>>,
}

impl Router {
    fn get(&self, id: NodeId) -> Option<Raft> {
        self.nodes.lock().unwrap().get(&id).cloned()
    }
}

struct Net {
    target: NodeId,
    router: Router,
}

fn down() -> Unreachable {
    Unreachable::new(&std::io::Error::other("node is down"))
}

impl RaftNetworkFactory<TypeConfig> for Router {
    type Network = Net;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Net {
        Net {
            target,
            router: self.clone(),
        }
    }
}

impl RaftNetwork<TypeConfig> for Net {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let raft = self
            .router
            .get(self.target)
            .ok_or_else(|| RPCError::Unreachable(down()))?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let raft = self
            .router
            .get(self.target)
            .ok_or_else(|| RPCError::Unreachable(down()))?;
        raft.install_snapshot(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let raft = self
            .router
            .get(self.target)
            .ok_or_else(|| RPCError::Unreachable(down()))?;
        raft.vote(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

struct Cluster {
    root: PathBuf,
    router: Router,
    config: Arc<Config>,
    sms: BTreeMap<NodeId, SmCore>,
}

impl Cluster {
    fn new(root: &Path) -> Cluster {
        let config = Config {
            cluster_name: "test".into(),
            heartbeat_interval: 50,
            election_timeout_min: 200,
            election_timeout_max: 400,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(40),
            max_in_snapshot_log_to_keep: 0,
            purge_batch_size: 1,
            ..Default::default()
        };
        Cluster {
            root: root.to_path_buf(),
            router: Router::default(),
            config: Arc::new(config.validate().unwrap()),
            sms: BTreeMap::new(),
        }
    }

    async fn start(&mut self, id: NodeId) -> Raft {
        let dir = self.root.join(format!("node-{id}"));
        let log = LogStore::<TypeConfig>::open(dir.join("log")).unwrap();
        let sm = StateMachine::open(dir.join("sm")).unwrap();
        self.sms.insert(id, sm.core().clone());
        let raft = Raft::new(id, Arc::clone(&self.config), self.router.clone(), log, sm)
            .await
            .unwrap();
        self.router.nodes.lock().unwrap().insert(id, raft.clone());
        raft
    }

    async fn stop(&mut self, id: NodeId) {
        let raft = self.router.nodes.lock().unwrap().remove(&id);
        if let Some(raft) = raft {
            raft.shutdown().await.unwrap();
        }
        self.sms.remove(&id);
    }

    async fn leader(&self) -> Raft {
        for _ in 0..200 {
            let nodes: Vec<Raft> = self
                .router
                .nodes
                .lock()
                .unwrap()
                .values()
                .cloned()
                .collect();
            for raft in nodes {
                let m = raft.metrics().borrow().clone();
                if m.current_leader == Some(m.id) {
                    return raft;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no leader within 5 s");
    }

    /// Writes through the leader, retrying on a leader change; returns the log index.
    async fn put(&self, key: &str, value: &str) -> u64 {
        for _ in 0..50 {
            let leader = self.leader().await;
            let req = Request::Put {
                key: key.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
            };
            match leader.client_write(req).await {
                Ok(r) => return r.log_id.index,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        panic!("cannot write {key}");
    }

    async fn wait_applied(&self, id: NodeId, index: u64) {
        let raft = self.router.get(id).unwrap();
        raft.wait(Some(Duration::from_secs(10)))
            .applied_index_at_least(Some(index), "applied")
            .await
            .unwrap();
    }

    fn check(&self, id: NodeId, expected: &BTreeMap<String, String>) {
        let sm = &self.sms[&id];
        let pairs: BTreeMap<String, String> = sm
            .pairs()
            .unwrap()
            .into_iter()
            .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
            .collect();
        assert_eq!(&pairs, expected, "node {id}");
    }
}

/// Writes keys `k000..k069` (overwriting as `n` grows); returns the last log index.
async fn write(
    c: &Cluster,
    expected: &mut BTreeMap<String, String>,
    n: std::ops::Range<u32>,
) -> u64 {
    let mut last = 0;
    for i in n {
        let (k, v) = (format!("k{:03}", i % 70), format!("v{i}"));
        last = c.put(&k, &v).await;
        expected.insert(k, v);
    }
    last
}

fn members(ids: &[NodeId]) -> BTreeMap<NodeId, BasicNode> {
    ids.iter()
        .map(|&i| (i, BasicNode::new(format!("node-{i}"))))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_restart_purge_and_catch_up_a_learner_from_a_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cluster::new(tmp.path());
    for id in 1..=3 {
        c.start(id).await;
    }
    c.router
        .get(1)
        .unwrap()
        .initialize(members(&[1, 2, 3]))
        .await
        .unwrap();
    let mut expected = BTreeMap::new();
    let mut last = 0;
    last = last.max(write(&c, &mut expected, 0..30).await);
    for id in 1..=3 {
        c.wait_applied(id, last).await;
        c.check(id, &expected);
    }

    // A follower restarts from disk and catches up.
    let leader_id = c.leader().await.metrics().borrow().id;
    let follower = (1..=3).find(|&i| i != leader_id).unwrap();
    c.stop(follower).await;
    last = last.max(write(&c, &mut expected, 30..60).await);
    c.start(follower).await;
    c.wait_applied(follower, last).await;
    c.check(follower, &expected);

    // The leader restarts from disk; a new one is elected and the old one catches up.
    c.stop(leader_id).await;
    last = last.max(write(&c, &mut expected, 60..90).await);
    c.start(leader_id).await;
    c.wait_applied(leader_id, last).await;
    c.check(leader_id, &expected);

    // A snapshot, and the log purged behind it (max_in_snapshot_log_to_keep = 0).
    let leader = c.leader().await;
    leader.trigger().snapshot().await.unwrap();
    let m = leader
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= last) && m.purged.is_some(),
            "snapshot and purge",
        )
        .await
        .unwrap();
    let purged = m.purged.unwrap().index;
    assert!(purged > 0, "nothing purged");

    // A new learner cannot get the purged entries: it must install the snapshot.
    c.start(4).await;
    leader
        .add_learner(4, BasicNode::new("node-4"), true)
        .await
        .unwrap();
    c.wait_applied(4, last).await;
    c.check(4, &expected);
    let m4 = c.router.get(4).unwrap().metrics().borrow().clone();
    assert!(
        m4.snapshot.is_some(),
        "the learner caught up without a snapshot: {m4:?}"
    );

    // Every node stops; every node restarts from disk with everything.
    for id in 1..=4 {
        c.stop(id).await;
    }
    for id in 1..=4 {
        c.start(id).await;
    }
    last = last.max(write(&c, &mut expected, 90..100).await);
    for id in 1..=4 {
        c.wait_applied(id, last).await;
        c.check(id, &expected);
    }
    for id in 1..=4 {
        c.stop(id).await;
    }
}
