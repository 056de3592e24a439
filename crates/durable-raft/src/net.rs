//! A small TCP transport and key-value service for a cluster of these nodes (`durable raft
//! serve` and its client commands): tokio, length-prefixed postcard frames of bounded size,
//! every frame carrying the cluster's name. No encryption and no authentication: run it on
//! loopback or a private network.
//!
//! Frame: a 4-byte little-endian length (at most [`MAX_FRAME`]), then a postcard
//! [`Frame`]: the cluster name and the body. A node answers each request frame on the same
//! connection with one response frame; a frame of another cluster is answered with
//! [`Answer::Refused`] and the connection closed (and logged).
//!
//! Client requests sent to a follower are answered with a hint, [`Answer::NotLeader`],
//! which [`Client`] follows.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{
    CheckIsLeaderError, ClientWriteError, InitializeError, InstallSnapshotError, NetworkError,
    RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Config, Raft};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::sm::SmCore;
use crate::types::{NodeId, Request, Response, TypeConfig};
use crate::{LogStore, StateMachine};

/// Largest frame accepted, in bytes (a length above it closes the connection).
pub const MAX_FRAME: u32 = 64 << 20;
/// Largest client write (key and value, encoded) a node accepts: with at most
/// [`MAX_PAYLOAD_ENTRIES`] entries in one replication message, a message stays well under
/// [`MAX_FRAME`].
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// Replication messages above this many bytes are split (openraft's `PayloadTooLarge`).
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Largest snapshot a node accepts (it is held in memory while it arrives).
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 30;
/// Connections a node serves at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 256;
/// A connection that sends nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Entries per replication message (openraft's `max_payload_entries`).
pub const MAX_PAYLOAD_ENTRIES: u64 = 32;
/// The cluster name when none is given.
pub const DEFAULT_CLUSTER: &str = "durable";

/// What travels on the wire.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Frame<B> {
    /// The sender's cluster name.
    pub cluster: String,
    /// The request or the answer.
    pub body: B,
}

/// A request to a node.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum Call {
    /// Raft: replicate entries.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Raft: a chunk of a snapshot.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Raft: a vote.
    Vote(VoteRequest<NodeId>),
    /// A client write; answered once committed and applied.
    Write(Request),
    /// A client read; `linearizable` confirms leadership and waits for the apply first.
    Read {
        /// The key.
        key: Vec<u8>,
        /// Linearizable (through the leader) or this node's own state.
        linearizable: bool,
    },
    /// Make every node of this node's peers a voter (once).
    Init,
    /// This node's view.
    Status,
}

/// A node's view of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// The leader it knows, if any.
    pub leader: Option<NodeId>,
    /// Its current term.
    pub term: u64,
    /// Index of its last log entry (0: none).
    pub last_log: u64,
    /// Index of its last applied entry (0: none).
    pub applied: u64,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let leader = self.leader.map_or("none".to_owned(), |l| l.to_string());
        write!(
            f,
            "id {} leader {leader} term {} last_log {} applied {}",
            self.id, self.term, self.last_log, self.applied
        )
    }
}

/// A node's answer.
#[derive(Debug, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum Answer {
    /// Raft: replication answer.
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// Raft: snapshot chunk answer.
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    /// Raft: vote answer.
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// The write is committed and applied.
    Written(Response),
    /// The value read (`None`: absent).
    Value(Option<Vec<u8>>),
    /// This node is not the leader; the leader it knows, if any.
    NotLeader {
        /// Its id.
        leader: Option<NodeId>,
        /// Its address.
        addr: Option<String>,
    },
    /// `Init` made the cluster.
    Initialized,
    /// `Init` found the cluster made already.
    AlreadyInitialized,
    /// A status.
    Status(Status),
    /// The request was refused (another cluster, a request the store cannot hold).
    Refused(String),
    /// The request failed.
    Error(String),
}

fn encode<T: Serialize>(v: &T) -> std::io::Result<Vec<u8>> {
    postcard::to_allocvec(v).map_err(std::io::Error::other)
}

/// Reads one frame's bytes; `None` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = u32::from_le_bytes(len);
    if n > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a frame of {n} bytes is over the limit of {MAX_FRAME}"),
        ));
    }
    let mut buf = vec![0u8; n as usize];
    r.read_exact(&mut buf).await?;
    Ok(Some(buf))
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    let n = u32::try_from(bytes.len())
        .ok()
        .filter(|&n| n <= MAX_FRAME)
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "a frame of {} bytes is over the limit of {MAX_FRAME}",
                    bytes.len()
                ),
            )
        })?;
    w.write_all(&n.to_le_bytes()).await?;
    w.write_all(bytes).await?;
    w.flush().await
}

/// One connection to a node, reopened after an error; one call at a time.
///
/// Cancellation-safe: the stream is taken out for the whole call and put back only after a
/// complete answer was read, so a call dropped halfway (openraft wraps each RPC in its own
/// timeout) closes its connection instead of leaving an unread answer for the next call.
#[derive(Debug)]
pub struct Conn {
    addr: String,
    cluster: String,
    stream: Option<TcpStream>,
    /// Whether the last call's request reached the socket (a failure after that leaves its
    /// outcome unknown: a write may have been applied).
    sent: bool,
}

/// Whether an I/O error happened before anything was sent (a connect failure).
fn connect_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | AddrNotAvailable | NotFound | HostUnreachable | NetworkUnreachable
    )
}

impl Conn {
    /// A connection (opened at the first call) to `addr`, as a member of `cluster`.
    pub fn new(addr: impl Into<String>, cluster: impl Into<String>) -> Conn {
        Conn {
            addr: addr.into(),
            cluster: cluster.into(),
            stream: None,
            sent: false,
        }
    }

    /// Whether the last call's request was handed to the socket (after that, a failure
    /// leaves its outcome unknown).
    pub fn sent(&self) -> bool {
        self.sent
    }

    /// Sends `call` and waits for the answer, at most `timeout`.
    pub async fn call(&mut self, call: Call, timeout: Duration) -> std::io::Result<Answer> {
        self.sent = false;
        let addr = self.addr.clone();
        let r = tokio::time::timeout(timeout, self.call_inner(call)).await;
        r.unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{addr} did not answer within {timeout:?}"),
            ))
        })
    }

    async fn call_inner(&mut self, call: Call) -> std::io::Result<Answer> {
        let mut stream = match self.stream.take() {
            Some(s) => s,
            None => {
                let s = TcpStream::connect(&self.addr).await?;
                s.set_nodelay(true)?;
                s
            }
        };
        let frame = encode(&Frame {
            cluster: self.cluster.clone(),
            body: call,
        })?;
        self.sent = true;
        write_frame(&mut stream, &frame).await?;
        let bytes = read_frame(&mut stream).await?.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the node closed the connection",
            )
        })?;
        let frame: Frame<Answer> = postcard::from_bytes(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        if frame.cluster != self.cluster {
            if let Answer::Refused(why) = frame.body {
                return Ok(Answer::Refused(why)); // said so: no point in retrying
            }
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} answers for cluster {:?}, not {:?}",
                    self.addr, frame.cluster, self.cluster
                ),
            ));
        }
        self.stream = Some(stream); // a whole answer was read: the stream is in step
        Ok(frame.body)
    }
}

/// openraft's network over [`Conn`]s.
#[derive(Clone, Debug)]
pub struct TcpNetwork {
    cluster: String,
}

impl TcpNetwork {
    /// The network of `cluster`.
    pub fn new(cluster: impl Into<String>) -> TcpNetwork {
        TcpNetwork {
            cluster: cluster.into(),
        }
    }
}

/// openraft's connection to one peer.
#[derive(Debug)]
pub struct Peer {
    target: NodeId,
    conn: Conn,
}

impl RaftNetworkFactory<TypeConfig> for TcpNetwork {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            target,
            conn: Conn::new(node.addr.clone(), self.cluster.clone()),
        }
    }
}

/// A peer that cannot be connected to is `Unreachable` (openraft backs off); any other
/// failure (a slow answer, a dropped connection) is a `Network` error, retried at once, so
/// one slow fsync on a follower does not silence the leader's heartbeats.
fn unreachable<E: std::error::Error>(e: &std::io::Error) -> RPCError<NodeId, BasicNode, E> {
    if connect_error(e) {
        RPCError::Unreachable(Unreachable::new(e))
    } else {
        RPCError::Network(NetworkError::new(e))
    }
}

fn unexpected<E: std::error::Error>(a: &Answer) -> RPCError<NodeId, BasicNode, E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(format!(
        "unexpected answer: {a:?}"
    ))))
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        // A message that would take long to send and sync is split: openraft retries at
        // once with at most the hinted number of entries.
        let size = postcard::experimental::serialized_size(&rpc).unwrap_or(usize::MAX);
        if size > MAX_MESSAGE_BYTES && rpc.entries.len() > 1 {
            let hint = (rpc.entries.len() as u64 / 2).max(1);
            return Err(RPCError::PayloadTooLarge(
                openraft::error::PayloadTooLarge::new_entries_hint(hint),
            ));
        }
        match self
            .conn
            .call(Call::AppendEntries(rpc), option.hard_ttl())
            .await
        {
            Ok(Answer::AppendEntries(r)) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(other) => Err(unexpected(&other)),
            Err(e) => Err(unreachable(&e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self
            .conn
            .call(Call::InstallSnapshot(rpc), option.hard_ttl())
            .await
        {
            Ok(Answer::InstallSnapshot(r)) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(other) => Err(unexpected(&other)),
            Err(e) => Err(unreachable(&e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.conn.call(Call::Vote(rpc), option.hard_ttl()).await {
            Ok(Answer::Vote(r)) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(other) => Err(unexpected(&other)),
            Err(e) => Err(unreachable(&e)),
        }
    }
}

/// How to run one node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's id.
    pub id: NodeId,
    /// Its state: `DIR/log` and `DIR/sm`.
    pub dir: PathBuf,
    /// Where it listens (`HOST:PORT`).
    pub listen: String,
    /// Every member's id and address (this node's included); `init` makes them voters.
    pub peers: BTreeMap<NodeId, String>,
    /// The cluster's name, carried by every frame.
    pub cluster: String,
    /// openraft's timing and snapshot settings.
    pub raft: Config,
}

impl NodeConfig {
    /// Defaults for a small cluster on one network: heartbeat 100 ms, elections after
    /// 300-600 ms, a snapshot every 5000 entries, at most [`MAX_PAYLOAD_ENTRIES`] entries
    /// a replication message.
    pub fn new(id: NodeId, dir: impl Into<PathBuf>, listen: impl Into<String>) -> NodeConfig {
        NodeConfig {
            id,
            dir: dir.into(),
            listen: listen.into(),
            peers: BTreeMap::new(),
            cluster: DEFAULT_CLUSTER.to_owned(),
            raft: Config {
                heartbeat_interval: 100,
                election_timeout_min: 300,
                election_timeout_max: 600,
                snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5000),
                max_payload_entries: MAX_PAYLOAD_ENTRIES,
                ..Config::default()
            },
        }
    }
}

/// A running node; see [`Node::start`].
pub struct Node {
    /// The Raft handle.
    pub raft: Raft<TypeConfig>,
    /// The state machine (for local reads).
    pub sm: SmCore,
    /// The address it listens on.
    pub addr: std::net::SocketAddr,
    server: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

struct Shared {
    raft: Raft<TypeConfig>,
    sm: SmCore,
    cluster: String,
    peers: BTreeMap<NodeId, BasicNode>,
}

impl Node {
    /// Opens the stores under `cfg.dir`, starts Raft and listens (call inside a tokio
    /// runtime).
    pub async fn start(cfg: NodeConfig) -> crate::Result<Node> {
        let log = LogStore::<TypeConfig>::open(cfg.dir.join("log"))?;
        let sm = StateMachine::open(cfg.dir.join("sm"))?;
        let sm_core = sm.core().clone();
        let config = Arc::new(
            cfg.raft
                .clone()
                .validate()
                .map_err(|e| crate::Error::Invalid(format!("raft config: {e}")))?,
        );
        let raft = Raft::new(
            cfg.id,
            config,
            TcpNetwork::new(cfg.cluster.clone()),
            log,
            sm,
        )
        .await
        .map_err(|e| crate::Error::Internal(format!("raft did not start: {e}")))?;
        let listener = TcpListener::bind(&cfg.listen)
            .await
            .map_err(|e| crate::Error::Invalid(format!("cannot listen on {}: {e}", cfg.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| crate::Error::Internal(e.to_string()))?;
        let shared = Arc::new(Shared {
            raft: raft.clone(),
            sm: sm_core.clone(),
            cluster: cfg.cluster.clone(),
            peers: cfg
                .peers
                .iter()
                .map(|(&id, a)| (id, BasicNode::new(a.clone())))
                .collect(),
        });
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        let server = tokio::spawn(async move {
            loop {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    break;
                };
                tokio::select! {
                    r = listener.accept() => match r {
                        Ok((stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            let shared = Arc::clone(&shared);
                            tokio::spawn(async move {
                                serve_conn(shared, stream).await;
                                drop(slot);
                            });
                        }
                        Err(e) => {
                            // Out of descriptors, say: do not spin.
                            log::warn!("accept: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    },
                    _ = stopped.changed() => break,
                }
            }
        });
        Ok(Node {
            raft,
            sm: sm_core,
            addr,
            server,
            stop,
        })
    }

    /// Stops listening and shuts Raft down (its stores close and flush).
    pub async fn shutdown(self) -> crate::Result<()> {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        self.raft
            .shutdown()
            .await
            .map_err(|e| crate::Error::Internal(format!("raft shutdown: {e}")))
    }
}

async fn serve_conn(shared: Arc<Shared>, mut stream: TcpStream) {
    loop {
        let bytes = match tokio::time::timeout(IDLE_TIMEOUT, read_frame(&mut stream)).await {
            Ok(Ok(Some(b))) => b,
            Ok(Ok(None)) | Err(_) => return,
            Ok(Err(e)) => {
                log::warn!("connection: {e}");
                return;
            }
        };
        // The cluster name first: another cluster's frame is refused before its body is
        // decoded (a body can decode to far more memory than its bytes).
        let (answer, close) = match postcard::take_from_bytes::<String>(&bytes) {
            Err(e) => (
                Answer::Refused(format!("a frame that does not decode: {e}")),
                true,
            ),
            Ok((cluster, _)) if cluster != shared.cluster => {
                log::warn!(
                    "refused a frame of cluster {cluster:?} (this is {:?})",
                    shared.cluster
                );
                (
                    Answer::Refused(format!(
                        "this node is in cluster {:?}, not {cluster:?}",
                        shared.cluster
                    )),
                    true,
                )
            }
            Ok((_, body)) => match postcard::from_bytes::<Call>(body) {
                Ok(call) => (answer(&shared, call).await, false),
                Err(e) => (
                    Answer::Refused(format!("a frame that does not decode: {e}")),
                    true,
                ),
            },
        };
        let Ok(out) = encode(&Frame {
            cluster: shared.cluster.clone(),
            body: answer,
        }) else {
            return;
        };
        if write_frame(&mut stream, &out).await.is_err() || close {
            return;
        }
    }
}

fn not_leader(f: &openraft::error::ForwardToLeader<NodeId, BasicNode>) -> Answer {
    Answer::NotLeader {
        leader: f.leader_id,
        addr: f.leader_node.as_ref().map(|n| n.addr.clone()),
    }
}

async fn answer(shared: &Shared, call: Call) -> Answer {
    let raft = &shared.raft;
    match call {
        Call::AppendEntries(r) => Answer::AppendEntries(raft.append_entries(r).await),
        Call::InstallSnapshot(r) => {
            // The snapshot is assembled in memory at the offsets given: bounded.
            if r.offset.saturating_add(r.data.len() as u64) > MAX_SNAPSHOT_BYTES {
                return Answer::Refused(format!(
                    "a snapshot chunk past {MAX_SNAPSHOT_BYTES} bytes"
                ));
            }
            Answer::InstallSnapshot(raft.install_snapshot(r).await)
        }
        Call::Vote(r) => Answer::Vote(raft.vote(r).await),
        Call::Write(req) => {
            if let Some(why) = shared.sm.refusal(&req) {
                return Answer::Refused(why);
            }
            let size = postcard::experimental::serialized_size(&req).unwrap_or(usize::MAX);
            if size > MAX_REQUEST_BYTES {
                return Answer::Refused(format!(
                    "a write of {size} bytes (the limit is {MAX_REQUEST_BYTES})"
                ));
            }
            match raft.client_write(req).await {
                Ok(r) => Answer::Written(r.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => not_leader(&f),
                Err(e) => Answer::Error(e.to_string()),
            }
        }
        Call::Read { key, linearizable } => {
            if linearizable {
                match raft.ensure_linearizable().await {
                    Ok(_) => {}
                    Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                        return not_leader(&f);
                    }
                    Err(e) => return Answer::Error(e.to_string()),
                }
            }
            let sm = shared.sm.clone();
            match tokio::task::spawn_blocking(move || sm.get(&key)).await {
                Ok(Ok(v)) => Answer::Value(v),
                Ok(Err(e)) => Answer::Error(e.to_string()),
                Err(e) => Answer::Error(e.to_string()),
            }
        }
        Call::Init => {
            // openraft refuses a second init only on a node that has seen a vote or an
            // entry: ask every peer first, so that an init sent to a node that has not
            // heard from the others yet cannot make a second cluster.
            let me = raft.metrics().borrow().id;
            for (&id, node) in &shared.peers {
                if id == me {
                    continue;
                }
                let mut c = Conn::new(node.addr.clone(), shared.cluster.clone());
                match c.call(Call::Status, Duration::from_secs(2)).await {
                    Ok(Answer::Status(st)) if st.term > 0 || st.last_log > 0 => {
                        return Answer::AlreadyInitialized;
                    }
                    Ok(Answer::Status(_)) => {}
                    Ok(other) => return Answer::Error(format!("node {id}: {other:?}")),
                    Err(e) => {
                        return Answer::Error(format!(
                            "node {id} at {} does not answer ({e}): start every node before init",
                            node.addr
                        ));
                    }
                }
            }
            init(raft, shared).await
        }
        Call::Status => {
            let m = raft.metrics().borrow().clone();
            Answer::Status(Status {
                id: m.id,
                leader: m.current_leader,
                term: m.current_term,
                last_log: m.last_log_index.unwrap_or(0),
                applied: m.last_applied.map_or(0, |l| l.index),
            })
        }
    }
}

async fn init(raft: &Raft<TypeConfig>, shared: &Shared) -> Answer {
    match raft.initialize(shared.peers.clone()).await {
        Ok(()) => Answer::Initialized,
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Answer::AlreadyInitialized,
        Err(e) => Answer::Error(e.to_string()),
    }
}

/// Runs a node until `shutdown` resolves (the CLI passes SIGINT/SIGTERM), then shuts it
/// down cleanly.
pub async fn serve(cfg: NodeConfig, shutdown: impl Future<Output = ()>) -> crate::Result<()> {
    let node = Node::start(cfg).await?;
    log::info!("listening on {}", node.addr);
    // A Raft that stopped on its own (a storage error: fail-stop) ends the process too, so
    // that clients do not keep talking to a node that can only answer errors.
    let mut metrics = node.raft.metrics();
    let died = async move {
        loop {
            if let Err(e) = &metrics.borrow().running_state {
                return e.to_string();
            }
            if metrics.changed().await.is_err() {
                return "stopped".to_owned();
            }
        }
    };
    tokio::select! {
        () = shutdown => node.shutdown().await,
        why = died => {
            let _ = node.shutdown().await;
            Err(crate::Error::Internal(format!("raft stopped: {why}")))
        }
    }
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No node answered as (or named) a leader in time.
    #[error("no leader answered within {waited:?} (last: {})", last.as_deref().unwrap_or("no answer"))]
    Timeout {
        /// How long the client tried.
        waited: Duration,
        /// The last thing it heard.
        last: Option<String>,
    },
    /// The cluster refused the request.
    #[error("refused: {0}")]
    Refused(String),
    /// The request failed on the node.
    #[error("failed: {0}")]
    Failed(String),
    /// `init` on a cluster made already.
    #[error("already initialized")]
    AlreadyInitialized,
    /// The request was sent, and then the answer was lost (a timeout, a node that died, a
    /// leader that lost its place): it may or may not have been applied.
    #[error("the outcome is unknown (the request may have been applied): {0}")]
    Unknown(String),
}

/// A client of a cluster: tries its addresses in turn and follows leader hints until
/// `timeout`.
#[derive(Clone, Debug)]
pub struct Client {
    addrs: Vec<String>,
    cluster: String,
    timeout: Duration,
}

impl Client {
    /// A client of the nodes at `addrs`, in cluster `cluster`, giving up after `timeout`.
    pub fn new(addrs: Vec<String>, cluster: impl Into<String>, timeout: Duration) -> Client {
        Client {
            addrs,
            cluster: cluster.into(),
            timeout,
        }
    }

    /// Sends `call` until a node answers it (not with a leader hint), or the time is up.
    ///
    /// Reads and status are retried after any failure. A write or an init is retried only
    /// when it was certainly not carried out: the connection could not be made, or a node
    /// answered that it is not the leader (openraft says so only for a write it never
    /// proposed, or whose entry was truncated). After a failure once the request was sent
    /// (a timeout, a dropped connection, an error from the leader), it may have been
    /// applied: [`ClientError::Unknown`], never a second copy behind a later write.
    pub async fn call(&self, call: Call) -> Result<Answer, ClientError> {
        let at_most_once = matches!(call, Call::Write(_) | Call::Init);
        let deadline = Instant::now() + self.timeout;
        let mut queue: std::collections::VecDeque<String> = self.addrs.iter().cloned().collect();
        let mut last: Option<String> = None;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(ClientError::Timeout {
                    waited: self.timeout,
                    last,
                });
            }
            let Some(addr) = queue.pop_front() else {
                // Every address tried: wait a little (an election may be under way).
                tokio::time::sleep(Duration::from_millis(100)).await;
                queue.extend(self.addrs.iter().cloned());
                continue;
            };
            // A fresh connection per attempt: a failure after sending then means the node
            // had the request, not that a pooled connection had gone stale.
            let mut conn = Conn::new(addr.clone(), self.cluster.clone());
            let left = deadline.saturating_duration_since(now);
            match conn
                .call(call.clone(), left.min(Duration::from_secs(5)))
                .await
            {
                Ok(Answer::NotLeader { addr: Some(a), .. }) if a != addr => {
                    last = Some(format!("{addr}: the leader is {a}"));
                    queue.push_front(a);
                }
                Ok(Answer::NotLeader { .. }) => {
                    last = Some(format!("{addr}: no leader"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(Answer::Error(e)) if at_most_once => {
                    return Err(ClientError::Unknown(format!("{addr}: {e}")));
                }
                Ok(Answer::Error(e)) => {
                    last = Some(format!("{addr}: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(Answer::Refused(why)) => return Err(ClientError::Refused(why)),
                Ok(a) => return Ok(a),
                Err(e) if at_most_once && conn.sent() && !connect_error(&e) => {
                    return Err(ClientError::Unknown(format!("{addr}: {e}")));
                }
                Err(e) => last = Some(format!("{addr}: {e}")),
            }
        }
    }

    /// Sets `key` to `value`; returns once committed and applied.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<(), ClientError> {
        self.write(Request::Put {
            key: key.to_vec(),
            value: value.to_vec(),
        })
        .await
        .map(|_| ())
    }

    /// Removes `key`; returns once committed and applied.
    pub async fn delete(&self, key: &[u8]) -> Result<(), ClientError> {
        self.write(Request::Delete { key: key.to_vec() })
            .await
            .map(|_| ())
    }

    async fn write(&self, req: Request) -> Result<Response, ClientError> {
        match self.call(Call::Write(req)).await? {
            Answer::Written(r) => match r.refused {
                Some(why) => Err(ClientError::Refused(why)),
                None => Ok(r),
            },
            other => Err(ClientError::Failed(format!("unexpected answer {other:?}"))),
        }
    }

    /// A linearizable read of `key`.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ClientError> {
        self.read(key, true).await
    }

    /// A read of `key` from the first node that answers, from its own state (may be stale).
    pub async fn local_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ClientError> {
        self.read(key, false).await
    }

    async fn read(&self, key: &[u8], linearizable: bool) -> Result<Option<Vec<u8>>, ClientError> {
        let call = Call::Read {
            key: key.to_vec(),
            linearizable,
        };
        match self.call(call).await? {
            Answer::Value(v) => Ok(v),
            other => Err(ClientError::Failed(format!("unexpected answer {other:?}"))),
        }
    }

    /// Makes the cluster (once).
    pub async fn init(&self) -> Result<(), ClientError> {
        match self.call(Call::Init).await? {
            Answer::Initialized => Ok(()),
            Answer::AlreadyInitialized => Err(ClientError::AlreadyInitialized),
            other => Err(ClientError::Failed(format!("unexpected answer {other:?}"))),
        }
    }

    /// The first answering node's status.
    pub async fn status(&self) -> Result<Status, ClientError> {
        match self.call(Call::Status).await? {
            Answer::Status(s) => Ok(s),
            other => Err(ClientError::Failed(format!("unexpected answer {other:?}"))),
        }
    }
}
