//! Committed writes per second of a three-node `durable raft` cluster on loopback TCP (all
//! three nodes in this process, each with its own stores and port; every write committed on
//! a majority and applied on the leader before it is acknowledged), at 1 and 16 client
//! threads, beside a single bitcask store (`SyncPolicy::Always`) at the same thread counts.
//! Prints one line per case; results in BENCHMARKS.md.
//!
//! `RAFT_BENCH_SECS` (default 5) seconds per case; `cargo bench --bench raft -- --test`
//! runs each case for a moment (CI's smoke run).

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::indexing_slicing,
    missing_docs,
    reason = "benchmark code: a panic is a failed run"
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_raft::net::{Client, Node, NodeConfig};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Run {
    ops: u64,
    secs: f64,
    lat_us: Vec<u64>,
}

impl Run {
    fn line(&mut self, name: &str) -> f64 {
        self.lat_us.sort_unstable();
        let q = |p: f64| {
            self.lat_us
                .get(((self.lat_us.len() as f64 - 1.0) * p) as usize)
                .copied()
                .unwrap_or(0)
        };
        let rate = self.ops as f64 / self.secs;
        println!(
            "{name:<28} {rate:>10.0} writes/s   p50 {:>6} us   p99 {:>6} us   ({} writes)",
            q(0.5),
            q(0.99),
            self.ops
        );
        rate
    }
}

fn value(i: u64) -> Vec<u8> {
    let mut v = vec![0u8; 100];
    durable_fs::sim::Rng::new(i).fill(&mut v);
    v
}

async fn cluster_run(addrs: &[String], threads: usize, secs: f64) -> Run {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..threads {
        let client = Client::new(addrs.to_vec(), "durable", Duration::from_secs(10));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let key = format!("t{t}-{i}");
                let t0 = Instant::now();
                client.put(key.as_bytes(), &value(i)).await.unwrap();
                lat.push(t0.elapsed().as_micros() as u64);
                i += 1;
            }
            lat
        }));
    }
    let mut lat_us = Vec::new();
    for t in tasks {
        lat_us.extend(t.await.unwrap());
    }
    Run {
        ops: lat_us.len() as u64,
        secs: start.elapsed().as_secs_f64(),
        lat_us,
    }
}

fn bitcask_run(dir: &std::path::Path, threads: usize, secs: f64) -> Run {
    let db = Arc::new(bitcask::Bitcask::open(dir, bitcask::Options::default()).unwrap());
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let db = Arc::clone(&db);
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let key = format!("t{t}-{i}");
                    let t0 = Instant::now();
                    db.put(key.as_bytes(), &value(i)).unwrap();
                    lat.push(t0.elapsed().as_micros() as u64);
                    i += 1;
                }
                lat
            })
        })
        .collect();
    let mut lat_us = Vec::new();
    for h in handles {
        lat_us.extend(h.join().unwrap());
    }
    Run {
        ops: lat_us.len() as u64,
        secs: start.elapsed().as_secs_f64(),
        lat_us,
    }
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--test");
    let secs: f64 = if smoke {
        0.3
    } else {
        std::env::var("RAFT_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5.0)
    };
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addrs: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let peers: BTreeMap<u64, String> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| (i as u64 + 1, a.clone()))
        .collect();
    let nodes: Vec<Node> = rt.block_on(async {
        let mut nodes = Vec::new();
        for (&id, addr) in &peers {
            let mut cfg = NodeConfig::new(id, tmp.path().join(format!("n{id}")), addr.clone());
            cfg.peers = peers.clone();
            nodes.push(Node::start(cfg).await.unwrap());
        }
        let init = Client::new(vec![addrs[0].clone()], "durable", Duration::from_secs(10));
        init.init().await.unwrap();
        // The first write waits for the election.
        let c = Client::new(addrs.clone(), "durable", Duration::from_secs(10));
        c.put(b"warm-up", b"x").await.unwrap();
        nodes
    });
    println!("durable raft: 3 nodes on loopback, 100-byte values, {secs} s per case");
    let mut rates = BTreeMap::new();
    for threads in [1usize, 16] {
        let mut r = rt.block_on(cluster_run(&addrs, threads, secs));
        rates.insert(
            ("raft", threads),
            r.line(&format!("raft 3 nodes, {threads} threads")),
        );
        let dir = tmp.path().join(format!("bitcask-{threads}"));
        let mut r = bitcask_run(&dir, threads, secs);
        rates.insert(
            ("bitcask", threads),
            r.line(&format!("bitcask alone, {threads} threads")),
        );
    }
    for threads in [1usize, 16] {
        println!(
            "raft / bitcask at {threads} threads: {:.2}",
            rates[&("raft", threads)] / rates[&("bitcask", threads)]
        );
    }
    rt.block_on(async {
        for n in nodes {
            n.shutdown().await.unwrap();
        }
    });
}
