//! `durable raft`: a replicated key-value store on openraft, durable-raft's storage and its
//! TCP transport. `serve` runs a node; `init`, `put`, `del`, `get` and `status` are clients.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use durable_raft::net::{self, Client, ClientError, NodeConfig};

use crate::out::{Fail, Outcome, out};

/// What a client command needs besides its addresses.
#[derive(Args, Debug, Clone)]
pub struct ClientOpts {
    /// The cluster's name (every frame carries it; a node refuses another cluster's).
    #[arg(long, default_value = net::DEFAULT_CLUSTER)]
    cluster: String,
    /// Give up (exit 2) when no leader has answered within this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
}

/// `durable raft ...`.
#[derive(Subcommand, Debug)]
pub enum RaftCommand {
    /// Runs node N in the foreground until SIGINT/SIGTERM; its state is under DIR.
    Serve {
        /// This node's id (one of the ids in --peers).
        #[arg(long)]
        id: u64,
        /// Where its state lives (DIR/log, DIR/sm).
        #[arg(long)]
        dir: PathBuf,
        /// Where it listens, HOST:PORT.
        #[arg(long)]
        listen: String,
        /// Every member, this one included: `1=HOST:PORT,2=HOST:PORT,3=HOST:PORT`.
        #[arg(long, value_parser = parse_peers)]
        peers: Peers,
        /// The cluster's name (every frame carries it; frames of another are refused).
        #[arg(long, default_value = net::DEFAULT_CLUSTER)]
        cluster: String,
        /// Take a snapshot every N entries and purge the log behind it at once (default:
        /// every 5000, keeping 1000 entries behind it). For tests that need snapshots.
        #[arg(long, hide = true)]
        snapshot_every: Option<u64>,
    },
    /// Once: makes every node in that node's --peers a voter (a second init exits 2).
    Init {
        /// The node to ask, HOST:PORT.
        #[arg(long)]
        addr: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Sets KEY to VALUE; prints `ok` once the write is committed and applied.
    Put {
        /// Nodes to try, in turn: A[,B,...] (leader hints are followed).
        #[arg(long, value_delimiter = ',', required = true)]
        addr: Vec<String>,
        /// The key.
        #[arg(allow_hyphen_values = true)]
        key: String,
        /// The value.
        #[arg(allow_hyphen_values = true)]
        value: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Removes KEY; prints `ok` once committed and applied (also when it was absent).
    Del {
        /// Nodes to try, in turn: A[,B,...].
        #[arg(long, value_delimiter = ',', required = true)]
        addr: Vec<String>,
        /// The key.
        #[arg(allow_hyphen_values = true)]
        key: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// A linearizable read: prints the value; exit 1 if absent.
    Get {
        /// Nodes to try, in turn: A[,B,...].
        #[arg(long, value_delimiter = ',', required = true)]
        addr: Vec<String>,
        /// The key.
        #[arg(allow_hyphen_values = true)]
        key: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Prints `id N leader L term T last_log I applied A` (`leader none` while there is none).
    Status {
        /// The node to ask, HOST:PORT.
        #[arg(long)]
        addr: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

/// `--peers`, parsed.
#[derive(Clone, Debug)]
pub struct Peers(BTreeMap<u64, String>);

fn parse_peers(s: &str) -> Result<Peers, String> {
    let mut peers = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("{id:?} is not a node id"))?;
        if peers.insert(id, addr.trim().to_owned()).is_some() {
            return Err(format!("node {id} is listed twice"));
        }
    }
    if peers.is_empty() {
        return Err("no peers".to_owned());
    }
    Ok(Peers(peers))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (10s, 500ms)"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("{s:?} is not a duration (10s, 500ms)")),
    }
}

impl RaftCommand {
    /// Whether the command only reads (its stdout closing early is not an error).
    pub fn reads_only(&self) -> bool {
        matches!(self, RaftCommand::Get { .. } | RaftCommand::Status { .. })
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Fail> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Fail::Msg(format!("cannot start the runtime: {e}")))
}

fn client_err(e: ClientError) -> Fail {
    Fail::Msg(e.to_string())
}

fn print(line: &[u8]) -> Result<(), Fail> {
    let mut stdout = std::io::stdout().lock();
    out(stdout
        .write_all(line)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush()))
}

/// Waits for SIGINT or SIGTERM.
async fn signalled() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        log::error!("cannot listen for signals; stop with SIGKILL");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = int.recv() => log::info!("SIGINT: shutting down"),
        _ = term.recv() => log::info!("SIGTERM: shutting down"),
    }
}

/// Runs `durable raft ...`.
pub fn run(cmd: RaftCommand) -> Outcome {
    let rt = runtime()?;
    match cmd {
        RaftCommand::Serve {
            id,
            dir,
            listen,
            peers,
            cluster,
            snapshot_every,
        } => {
            if !peers.0.contains_key(&id) {
                return Err(Fail::Msg(format!("--peers does not list this node ({id})")));
            }
            let mut cfg = NodeConfig::new(id, dir, listen);
            cfg.peers = peers.0;
            cfg.cluster = cluster;
            if let Some(n) = snapshot_every {
                cfg.raft.snapshot_policy = durable_raft::openraft::SnapshotPolicy::LogsSinceLast(n);
                cfg.raft.max_in_snapshot_log_to_keep = 0;
            }
            rt.block_on(net::serve(cfg, signalled()))
                .map_err(|e| Fail::Msg(e.to_string()))?;
            Ok(ExitCode::SUCCESS)
        }
        RaftCommand::Init { addr, opts } => {
            let c = Client::new(vec![addr], opts.cluster, opts.timeout);
            rt.block_on(c.init()).map_err(client_err)?;
            print(b"ok")?;
            Ok(ExitCode::SUCCESS)
        }
        RaftCommand::Put {
            addr,
            key,
            value,
            opts,
        } => {
            let c = Client::new(addr, opts.cluster, opts.timeout);
            rt.block_on(c.put(key.as_bytes(), value.as_bytes()))
                .map_err(client_err)?;
            print(b"ok")?;
            Ok(ExitCode::SUCCESS)
        }
        RaftCommand::Del { addr, key, opts } => {
            let c = Client::new(addr, opts.cluster, opts.timeout);
            rt.block_on(c.delete(key.as_bytes())).map_err(client_err)?;
            print(b"ok")?;
            Ok(ExitCode::SUCCESS)
        }
        RaftCommand::Get { addr, key, opts } => {
            let c = Client::new(addr, opts.cluster, opts.timeout);
            match rt.block_on(c.get(key.as_bytes())).map_err(client_err)? {
                Some(v) => {
                    print(&v)?;
                    Ok(ExitCode::SUCCESS)
                }
                None => Ok(ExitCode::from(1)),
            }
        }
        RaftCommand::Status { addr, opts } => {
            let c = Client::new(vec![addr], opts.cluster, opts.timeout);
            let s = rt.block_on(c.status()).map_err(client_err)?;
            print(s.to_string().as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
