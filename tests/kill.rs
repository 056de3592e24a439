//! Real processes, real disk, SIGKILL. A child `durable wal append --sync always` (or
//! `durable kv --engine bitcask|lsm-hash load --sync always`) applies stdin lines and prints an ack
//! once each is durable; the parent kills it with SIGKILL at random moments, again and again
//! on the same directory. Proves every acknowledged write is there after reopen, with its
//! payload, and that each restart recovers what the last kill left (a torn tail at most). A
//! kill cannot lose page-cache data, so this checks the process-crash half of the promise;
//! the power-cut half is the simulation's job.
//!
//! Size: `KILL_ROUNDS` (default 6); seed: `SEED` (default: from the clock, printed).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use durable_fs::sim::Rng;

fn rounds_and_seed() -> (u64, u64) {
    let env = |name: &str| std::env::var(name).ok().and_then(|s| s.parse().ok());
    let rounds = env("KILL_ROUNDS").unwrap_or(6);
    let seed = env("SEED").unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        t.as_nanos() as u64
    });
    eprintln!("kill test seed {seed} (replay with SEED={seed})");
    (rounds, seed)
}

/// Spawns `durable ARGS`, feeds it `line(round, i)` for i = 0.. on stdin, kills it with
/// SIGKILL after a random delay, and returns the ack lines it printed, in order.
fn run_and_kill(
    args: &[OsString],
    line: fn(u64, usize) -> String,
    round: u64,
    rng: &mut Rng,
) -> Vec<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_durable"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for i in 0.. {
            if writeln!(stdin, "{}", line(round, i)).is_err() {
                return; // the child is gone
            }
        }
    });
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let reader =
        std::thread::spawn(move || stdout.lines().map_while(Result::ok).collect::<Vec<_>>());
    std::thread::sleep(Duration::from_millis(20 + rng.below(150)));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let acks = reader.join().unwrap();
    writer.join().unwrap();
    acks
}

fn args(parts: &[&str], dir: &std::path::Path, rest: &[&str]) -> Vec<OsString> {
    parts
        .iter()
        .map(OsString::from)
        .chain([dir.as_os_str().to_owned()])
        .chain(rest.iter().map(OsString::from))
        .collect()
}

fn wal_line(round: u64, i: usize) -> String {
    format!("round {round} line {i} {}", "p".repeat(i % 300))
}

#[test]
fn acknowledged_records_survive_sigkill_at_random_moments() {
    let (rounds, seed) = rounds_and_seed();
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    for round in 0..rounds {
        let a = args(
            &[
                "wal",
                "append",
                "--sync",
                "always",
                "--segment-bytes",
                "8192",
                "--dir",
            ],
            &dir,
            &[],
        );
        let acks = run_and_kill(&a, wal_line, round, &mut rng);
        for (i, ack) in acks.iter().enumerate() {
            let lsn: u64 = ack.strip_prefix("ack ").unwrap().parse().unwrap();
            assert!(
                acked.insert(lsn, wal_line(round, i)).is_none(),
                "LSN {lsn} acknowledged twice"
            );
        }
        eprintln!("wal round {round}: {} acks", acks.len());
    }
    assert!(!acked.is_empty(), "the child acknowledged something");
    let wal = wal::Wal::open(&dir, wal::Options::default().with_max_segment_bytes(8192)).unwrap();
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

/// Reads a key from whichever engine the test runs.
type Getter = Box<dyn Fn(&[u8]) -> Option<Vec<u8>>>;

fn kv_line(round: u64, i: usize) -> String {
    if i % 7 == 6 {
        format!("del key{}", (i + 13) % 50)
    } else {
        format!("put key{} round{round}-line{i}", i % 50)
    }
}

fn kv_survives_sigkill(engine: &str) {
    let (rounds, seed) = rounds_and_seed();
    let mut rng = Rng::new(seed ^ 1);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kv");
    // Each key's state after the acknowledged lines of every round (None: deleted), and the
    // writes a kill may have caught between applying and acknowledging (one per round) that
    // came after it.
    let mut model: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut in_flight: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
    let parse = |line: &str| {
        let mut parts = line.splitn(3, ' ');
        let (cmd, key) = (parts.next().unwrap(), parts.next().unwrap().to_owned());
        (
            key,
            (cmd == "put").then(|| parts.next().unwrap().to_owned()),
        )
    };
    for round in 0..rounds {
        let a = args(
            &["kv", "--engine", engine, "--dir"],
            &dir,
            &["load", "--sync", "always", "--file-bytes", "16384"],
        );
        let acks = run_and_kill(&a, kv_line, round, &mut rng);
        for (i, ack) in acks.iter().enumerate() {
            assert_eq!(ack, &format!("ack {}", i + 1));
            let (key, value) = parse(&kv_line(round, i));
            in_flight.remove(&key); // an acknowledged write supersedes earlier maybes
            model.insert(key, value);
        }
        let (key, value) = parse(&kv_line(round, acks.len()));
        in_flight.entry(key).or_default().push(value);
        eprintln!("{engine} round {round}: {} acks", acks.len());
    }
    assert!(!model.is_empty());
    let get: Getter = if engine == "bitcask" {
        let db = bitcask::Bitcask::open(&dir, bitcask::Options::default()).unwrap();
        Box::new(move |k| db.get(k).unwrap())
    } else {
        let db = lsm_hash::LsmHash::open(&dir, lsm_hash::Options::default()).unwrap();
        Box::new(move |k| db.get(k).unwrap())
    };
    for (key, want) in &model {
        let got = get(key.as_bytes()).map(|v| String::from_utf8(v).unwrap());
        let maybe = in_flight.get(key).is_some_and(|m| m.contains(&got));
        assert!(
            &got == want || maybe,
            "{key}: got {got:?}, acknowledged {want:?} (seed {seed})"
        );
    }
}

#[test]
fn acknowledged_bitcask_writes_survive_sigkill_at_random_moments() {
    kv_survives_sigkill("bitcask");
}

#[test]
fn acknowledged_lsm_hash_writes_survive_sigkill_at_random_moments() {
    kv_survives_sigkill("lsm-hash");
}
