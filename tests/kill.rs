//! Real processes, real disk, SIGKILL. A child `durable wal append --sync always` appends
//! stdin lines and prints `ack <lsn>` once each is durable; the parent kills it with SIGKILL
//! at random moments, again and again on the same directory. Proves every acknowledged record
//! is there after reopen, with its payload, and that each restart recovers what the last kill
//! left (a torn tail at most). A kill cannot lose page-cache data, so this checks the
//! process-crash half of the promise; the power-cut half is the simulation's job.
//!
//! Size: `KILL_ROUNDS` (default 6); seed: `SEED` (default: from the clock, printed).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use durable_fs::sim::Rng;
use wal::{Options, Wal};

#[test]
fn acknowledged_records_survive_sigkill_at_random_moments() {
    let rounds: u64 = std::env::var("KILL_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let seed: u64 = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("kill test seed {seed} (replay with SEED={seed})");
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    for round in 0..rounds {
        let mut child = Command::new(env!("CARGO_BIN_EXE_durable"))
            .args([
                "wal",
                "append",
                "--sync",
                "always",
                "--segment-bytes",
                "8192",
                "--dir",
            ])
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            for i in 0.. {
                if writeln!(stdin, "round {round} line {i} {}", "p".repeat(i % 300)).is_err() {
                    return; // the child is gone
                }
            }
        });
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let reader = std::thread::spawn(move || {
            stdout
                .lines()
                .map_while(Result::ok)
                .map(|l| l.strip_prefix("ack ").unwrap().parse::<u64>().unwrap())
                .collect::<Vec<u64>>()
        });
        std::thread::sleep(Duration::from_millis(20 + rng.below(150)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let lsns = reader.join().unwrap();
        writer.join().unwrap();
        for (i, lsn) in lsns.iter().enumerate() {
            let line = format!("round {round} line {i} {}", "p".repeat(i % 300));
            assert!(
                acked.insert(*lsn, line).is_none(),
                "LSN {lsn} acknowledged twice"
            );
        }
        eprintln!("round {round}: {} acks", lsns.len());
    }
    assert!(!acked.is_empty(), "the child acknowledged something");
    let wal = Wal::open(&dir, Options::default().with_max_segment_bytes(8192)).unwrap();
    let got: BTreeMap<u64, String> = wal
        .iter_from(0)
        .unwrap()
        .map(|r| {
            let (lsn, p) = r.unwrap();
            (lsn, String::from_utf8(p).unwrap())
        })
        .collect();
    for (lsn, line) in &acked {
        assert_eq!(
            got.get(lsn),
            Some(line),
            "acknowledged LSN {lsn} (seed {seed})"
        );
    }
}
