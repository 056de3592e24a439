//! Proves: a three-node `durable raft serve` cluster keeps every acknowledged write through
//! SIGKILLs of any node. Each cycle writes through the client while it SIGKILLs the leader,
//! keeps writing through the survivors, restarts the killed node, then SIGKILLs all three in
//! the middle of writes and restarts them; every write the client saw acknowledged is then
//! read back, linearizably through the cluster and from each node's own state once it has
//! caught up. Also checks the command line's contract (init twice, put, get, del, status).
//!
//! Size: `RAFT_KILL_CYCLES` (default 2).
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use durable_raft::net::Client;

fn durable(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_durable"))
        .args(args)
        .output()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Cluster {
    root: PathBuf,
    addrs: Vec<String>,
    children: Vec<Option<Child>>,
}

impl Cluster {
    fn new(root: &Path) -> Cluster {
        let addrs = (0..3)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        Cluster {
            root: root.to_path_buf(),
            addrs,
            children: vec![None, None, None],
        }
    }

    fn peers(&self) -> String {
        self.addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn start(&mut self, i: usize) {
        // The node's log goes to stderr: set RAFT_KILL_LOGS=1 to see it.
        let stderr = if std::env::var_os("RAFT_KILL_LOGS").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        let child = Command::new(env!("CARGO_BIN_EXE_durable"))
            .args(["raft", "serve", "--id", &(i + 1).to_string()])
            .arg("--dir")
            .arg(self.root.join(format!("n{}", i + 1)))
            .args(["--listen", &self.addrs[i], "--peers", &self.peers()])
            // Snapshots and purges every 40 entries: a restarted node catches up from one.
            .args(["--snapshot-every", "40"])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        self.children[i] = Some(child);
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }

    fn client(&self) -> Client {
        Client::new(self.addrs.clone(), "durable", Duration::from_secs(20))
    }

    fn node(&self, i: usize) -> Client {
        Client::new(
            vec![self.addrs[i].clone()],
            "durable",
            Duration::from_secs(20),
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill(i);
        }
    }
}

/// What the writer learned of one put.
#[derive(Clone, Debug)]
enum Outcome {
    /// `ok`: committed and applied.
    Acked,
    /// Failed after it was sent, or timed out: it may or may not have been applied.
    Maybe,
}

type History = Arc<Mutex<Vec<(String, String, Outcome)>>>;

/// Writes keys `prefix-0 .. prefix-29` over and over (each value unique) until told to
/// stop, recording every put's outcome in order.
fn writer(
    client: Client,
    prefix: String,
    log: History,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut n = 0u64;
        while !stop.load(Ordering::Acquire) {
            let (k, v) = (format!("{prefix}-{}", n % 30), format!("v-{prefix}-{n}"));
            let outcome = match rt.block_on(client.put(k.as_bytes(), v.as_bytes())) {
                Ok(()) => Outcome::Acked,
                Err(_) => Outcome::Maybe,
            };
            log.lock().unwrap().push((k, v, outcome));
            n += 1;
        }
    })
}

fn acked(log: &Mutex<Vec<(String, String, Outcome)>>) -> usize {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(_, _, o)| matches!(o, Outcome::Acked))
        .count()
}

/// Per key: the values it may hold now: the last acknowledged value, or one written after
/// it whose outcome is unknown. An earlier acknowledged value coming back (a retried copy
/// applied behind a later write), or a lost one, fails.
fn allowed(log: &[(String, String, Outcome)]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v, o) in log {
        let e = out.entry(k.clone()).or_default();
        if matches!(o, Outcome::Acked) {
            e.clear();
        }
        e.push(v.clone());
    }
    out
}

fn wait_for(log: &Mutex<Vec<(String, String, Outcome)>>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked(log) < n {
        assert!(
            Instant::now() < deadline,
            "writes stalled at {}",
            acked(log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn leader(rt: &tokio::runtime::Runtime, c: &Cluster) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for i in 0..3 {
            if c.children[i].is_none() {
                continue;
            }
            if let Ok(s) = rt.block_on(c.node(i).status())
                && s.leader == Some(s.id)
            {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no leader");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn raft_cluster_keeps_every_acknowledged_write_through_sigkill() {
    let cycles: u64 = std::env::var("RAFT_KILL_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cluster::new(tmp.path());
    for i in 0..3 {
        c.start(i);
    }
    // The contract: init once, a second init exits 2.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = durable(&["raft", "init", "--addr", &c.addrs[0]]);
        if o.status.code() == Some(0) {
            assert_eq!(String::from_utf8_lossy(&o.stdout), "ok\n");
            break;
        }
        assert!(Instant::now() < deadline, "init: {o:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let again = durable(&["raft", "init", "--addr", &c.addrs[1]]);
    assert_eq!(again.status.code(), Some(2), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already initialized"));
    let all = c.addrs.join(",");
    let o = durable(&["raft", "put", "--addr", &all, "apple", "red"]);
    assert_eq!(
        (o.status.code(), o.stdout.as_slice()),
        (Some(0), &b"ok\n"[..]),
        "{o:?}"
    );
    let o = durable(&["raft", "get", "--addr", &c.addrs[2], "apple"]);
    assert_eq!(
        (o.status.code(), o.stdout.as_slice()),
        (Some(0), &b"red\n"[..]),
        "{o:?}"
    );
    let o = durable(&["raft", "del", "--addr", &all, "apple"]);
    assert_eq!(
        (o.status.code(), o.stdout.as_slice()),
        (Some(0), &b"ok\n"[..]),
        "{o:?}"
    );
    let o = durable(&["raft", "get", "--addr", &all, "apple"]);
    assert_eq!(
        (o.status.code(), o.stdout.as_slice()),
        (Some(1), &b""[..]),
        "{o:?}"
    );
    let o = durable(&["raft", "status", "--addr", &c.addrs[1]]);
    let status = String::from_utf8_lossy(&o.stdout).to_string();
    let words: Vec<&str> = status.split_whitespace().collect();
    assert_eq!(
        (words[0], words[1], words[2], words[4], words[6], words[8]),
        ("id", "2", "leader", "term", "last_log", "applied"),
        "{status}"
    );
    let o = durable(&[
        "raft",
        "status",
        "--addr",
        &c.addrs[1],
        "--cluster",
        "other",
    ]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "another cluster's frame was answered: {o:?}"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let log: History = Arc::new(Mutex::new(Vec::new()));
    for cycle in 0..cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Client::new(c.addrs.clone(), "durable", Duration::from_secs(5));
        let w = writer(
            writes,
            format!("c{cycle}"),
            Arc::clone(&log),
            Arc::clone(&stop),
        );
        let base = acked(&log);
        wait_for(&log, base + 40);
        // The leader dies mid-stream; the survivors elect another and the writes go on.
        let l = leader(&rt, &c);
        c.kill(l);
        wait_for(&log, base + 80);
        // It comes back and catches up (from a snapshot: the log behind it was purged);
        // then every node dies in the middle of writes.
        c.start(l);
        wait_for(&log, base + 120);
        for i in 0..3 {
            c.kill(i);
        }
        stop.store(true, Ordering::Release);
        w.join().unwrap();
        for i in 0..3 {
            c.start(i);
        }
        let history = log.lock().unwrap().clone();
        let allowed = allowed(&history);
        // Linearizable reads through the cluster.
        let client = c.client();
        for (k, vs) in &allowed {
            let got = rt.block_on(client.get(k.as_bytes())).unwrap();
            let got = got.map(|v| String::from_utf8(v).unwrap());
            assert!(
                got.as_ref().is_some_and(|g| vs.contains(g)),
                "cycle {cycle}: {k} reads {got:?}, acknowledged/possible values {vs:?}"
            );
        }
        // Every node, from its own state, once it has applied what the leader has.
        let l = leader(&rt, &c);
        let last = rt.block_on(c.node(l).status()).unwrap().last_log;
        for i in 0..3 {
            let deadline = Instant::now() + Duration::from_secs(30);
            while rt.block_on(c.node(i).status()).unwrap().applied < last {
                assert!(Instant::now() < deadline, "node {} did not catch up", i + 1);
                std::thread::sleep(Duration::from_millis(50));
            }
            for (k, vs) in &allowed {
                let got = rt.block_on(c.node(i).local_get(k.as_bytes())).unwrap();
                let got = got.map(|v| String::from_utf8(v).unwrap());
                assert!(
                    got.as_ref().is_some_and(|g| vs.contains(g)),
                    "node {}: {k} holds {got:?}, acknowledged/possible values {vs:?}",
                    i + 1
                );
            }
        }
        eprintln!(
            "cycle {cycle}: {} acknowledged writes ({} keys), each key's value the last acknowledged (or a later unknown) on every node",
            acked(&log),
            allowed.len()
        );
    }
}
