//! `durable bench`: a quick side-by-side run of our engines and their peers on one disk, with
//! the raw fsync floor measured in the same run, printed as one table of ratios. The criterion
//! benchmarks (`cargo bench`) are the detailed, statistically careful version.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use durable_fs::DurableFs;
use durable_fs::sim::Rng;

use crate::peers::{self, ENGINES, key, value};

/// How long and how often to measure.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the stores go (one subdirectory each).
    pub dir: PathBuf,
    /// Length of one timed round.
    pub round: Duration,
    /// Rounds per case; the median is reported.
    pub rounds: usize,
    /// Store sizes (keys preloaded) of the get cases.
    pub get_keys: Vec<u64>,
}

impl Config {
    /// Every case once, briefly (a few seconds): for CI, so a benchmark that panics fails
    /// the build. Its figures mean nothing.
    pub fn smoke(dir: PathBuf) -> Self {
        Config {
            dir,
            round: Duration::from_millis(20),
            rounds: 1,
            get_keys: vec![2_000],
        }
    }

    /// About a minute in all.
    pub fn quick(dir: PathBuf) -> Self {
        Config {
            dir,
            round: Duration::from_millis(500),
            rounds: 3,
            get_keys: vec![100_000],
        }
    }

    /// Several minutes, steadier numbers.
    pub fn full(dir: PathBuf) -> Self {
        Config {
            dir,
            round: Duration::from_secs(2),
            rounds: 5,
            get_keys: vec![100_000, 1_000_000],
        }
    }
}

/// One measured case.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// What was measured (`put sync 16t`, ...).
    pub case: String,
    /// Whose code.
    pub engine: String,
    /// Ours (as opposed to a peer or the floor).
    pub ours: bool,
    /// Median operations per second.
    pub ops_per_sec: f64,
    /// Latency percentiles (p50, p99, p999) of one thread's operations, over every counted
    /// round; measured for the 1-thread cases.
    pub latency: Option<[Duration; 3]>,
}

type Op = Arc<dyn Fn(u64) + Send + Sync>;

/// Median ops/s of `rounds` rounds in which `threads` threads call `op` until time is up,
/// after one warm-up round that is not counted.
fn measure(cfg: &Config, threads: usize, op: &Op) -> f64 {
    let counter = Arc::new(AtomicU64::new(0));
    let mut rates: Vec<f64> = (0..=cfg.rounds)
        .map(|_| {
            let stop = Arc::new(AtomicBool::new(false));
            let done = Arc::new(AtomicU64::new(0));
            let barrier = Arc::new(Barrier::new(threads + 1));
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let (op, stop, done, barrier, counter) = (
                        Arc::clone(op),
                        Arc::clone(&stop),
                        Arc::clone(&done),
                        Arc::clone(&barrier),
                        Arc::clone(&counter),
                    );
                    std::thread::spawn(move || {
                        barrier.wait();
                        while !stop.load(Ordering::Relaxed) {
                            op(counter.fetch_add(1, Ordering::Relaxed));
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            barrier.wait();
            let start = Instant::now();
            std::thread::sleep(cfg.round);
            stop.store(true, Ordering::Relaxed);
            for h in handles {
                let _ = h.join();
            }
            done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
        })
        .skip(1) // the warm-up round
        .collect();
    rates.sort_by(f64::total_cmp);
    rates.get(rates.len() / 2).copied().unwrap_or(0.0)
}

/// Latency samples kept, at most: past this many calls, each later one replaces a random kept
/// one (reservoir sampling), so memory stays bounded and the percentiles unbiased.
const SAMPLES: usize = 1 << 20;

/// One thread calling `op` for `rounds` rounds after a warm-up round: ops/s over the counted
/// rounds, and the p50, p99 and p999 of the counted calls' latency.
fn measure_latency(cfg: &Config, op: &Op) -> (f64, [Duration; 3]) {
    let mut lat: Vec<u64> = Vec::with_capacity(SAMPLES);
    let mut rng = Rng::new(0x1A7E);
    let (mut n, mut counted) = (0u64, 0u64);
    let mut spent = Duration::ZERO;
    for round in 0..=cfg.rounds {
        let start = Instant::now();
        while start.elapsed() < cfg.round {
            let t = Instant::now();
            op(n);
            let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
            n += 1;
            if round == 0 {
                continue;
            }
            counted += 1;
            if lat.len() < SAMPLES {
                lat.push(ns);
            } else if let Some(slot) = lat.get_mut(rng.below(counted) as usize) {
                *slot = ns;
            }
        }
        if round > 0 {
            spent += start.elapsed();
        }
    }
    lat.sort_unstable();
    let p = |q: f64| {
        let i = ((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1));
        Duration::from_nanos(lat.get(i).copied().unwrap_or_default())
    };
    let rate = counted as f64 / spent.as_secs_f64().max(1e-9);
    (rate, [p(0.5), p(0.99), p(0.999)])
}

/// A writer beside the measured thread: puts over `keys` keys (each the value a get checks)
/// and merges / compacts nonstop, until `stop`; its first error ends it and is returned.
fn churn(
    db: Arc<dyn kv_core::KvStore>,
    keys: u64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<(), String>> {
    std::thread::spawn(move || {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..2_000 {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let k = Rng::new(i ^ 0xC0FFEE).below(keys);
                let mut b = kv_core::WriteBatch::new();
                b.put(&key(k), &value(k));
                db.write(b).map_err(|e| format!("churn write: {e}"))?;
                i += 1;
            }
            db.compact().map_err(|e| format!("churn merge: {e}"))?;
        }
        Ok(())
    })
}

/// Stops a churn thread and hands back its error, if it had one.
fn stop_churn(
    stop: &AtomicBool,
    bg: std::thread::JoinHandle<Result<(), String>>,
) -> Result<(), String> {
    stop.store(true, Ordering::Relaxed);
    bg.join().map_err(|_| "churn thread panicked".to_owned())?
}

/// One of our engines with small files (so the churn rotates files and every merge has
/// inputs), for the during-merge rows.
fn small_files_store(
    engine: &str,
    dir: &Path,
    sync: kv_core::SyncPolicy,
) -> Result<Arc<dyn kv_core::KvStore>, String> {
    let e = |x: kv_core::Error| format!("{engine}: {x}");
    Ok(match engine {
        "bitcask" => Arc::new(
            bitcask::Bitcask::open(
                dir,
                bitcask::Options::default()
                    .with_sync(sync)
                    .with_max_file_bytes(1 << 20),
            )
            .map_err(e)?,
        ),
        _ => Arc::new(
            lsm_hash::LsmHash::open(
                dir,
                lsm_hash::Options::default()
                    .with_sync(sync)
                    .with_max_file_bytes(1 << 20),
            )
            .map_err(e)?,
        ),
    })
}

fn sub(cfg: &Config, name: &str) -> Result<PathBuf, String> {
    let d = cfg.dir.join(name);
    DurableFs::real()
        .create_dir_all(&d)
        .map_err(|e| e.to_string())?;
    Ok(d)
}

#[expect(
    clippy::unwrap_used,
    reason = "benchmark operations: an error ends the run"
)]
fn cases(cfg: &Config, progress: &mut dyn FnMut(&str)) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let push =
        |rows: &mut Vec<Row>, case: &str, engine: &str, ours: bool, threads: usize, op: Op| {
            let (ops_per_sec, latency) = if threads == 1 {
                let (rate, lat) = measure_latency(cfg, &op);
                (rate, Some(lat))
            } else {
                (measure(cfg, threads, &op), None)
            };
            rows.push(Row {
                case: case.to_owned(),
                engine: engine.to_owned(),
                ours,
                ops_per_sec,
                latency,
            });
        };
    progress("floor");
    let floor = DurableFs::real()
        .create_new(&sub(cfg, "floor")?.join("floor"))
        .map_err(|e| e.to_string())?;
    let floor = Arc::new(floor);
    let block = [0xABu8; 4096];
    push(
        &mut rows,
        "fsync floor (4 KiB + fdatasync)",
        "disk",
        false,
        1,
        Arc::new(move |_| {
            floor.append(&block).unwrap();
            floor.sync_data().unwrap();
        }),
    );
    // The second floor: overwriting blocks already allocated (and synced) needs no block
    // allocation or size change on the sync path: what a preallocated file reaches.
    progress("overwrite floor");
    let over = DurableFs::real()
        .create_new(&sub(cfg, "floor")?.join("overwrite"))
        .map_err(|e| e.to_string())?;
    const OVERWRITE_SPAN: u64 = 16 << 20;
    over.allocate(OVERWRITE_SPAN).map_err(|e| e.to_string())?;
    over.sync_data().map_err(|e| e.to_string())?;
    let over = Arc::new(over);
    push(
        &mut rows,
        "fsync floor, preallocated (4 KiB overwrite + fdatasync)",
        "disk",
        false,
        1,
        Arc::new(move |i| {
            over.write_all_at(&block, (i * 4096) % OVERWRITE_SPAN)
                .unwrap();
            over.sync_data().unwrap();
        }),
    );
    for threads in [1usize, 16] {
        let case = format!("append sync {threads}t");
        progress(&case);
        let w = wal::Wal::open(
            sub(cfg, &format!("wal-{threads}"))?,
            wal::Options::default(),
        )
        .map_err(|e| e.to_string())?;
        let w = Arc::new(w);
        push(
            &mut rows,
            &case,
            "wal",
            true,
            threads,
            Arc::new(move |_| {
                w.append(&[7u8; 128]).unwrap();
            }),
        );
        let log = okaywal::WriteAheadLog::recover(
            sub(cfg, &format!("okaywal-{threads}"))?,
            okaywal::LogVoid,
        )
        .map_err(|e| e.to_string())?;
        let log = Arc::new(log);
        push(
            &mut rows,
            &case,
            "okaywal",
            false,
            threads,
            Arc::new(move |_| {
                let mut e = log.begin_entry().unwrap();
                e.write_chunk(&[7u8; 128]).unwrap();
                e.commit().unwrap();
            }),
        );
    }
    for threads in [1usize, 16] {
        let case = format!("put sync {threads}t");
        for engine in ENGINES {
            progress(&format!("{case} {engine}"));
            let db = peers::open(
                engine,
                &sub(cfg, &format!("{engine}-sync-{threads}"))?,
                true,
            )?;
            let ours = matches!(engine, "bitcask" | "lsm-hash");
            push(
                &mut rows,
                &case,
                engine,
                ours,
                threads,
                Arc::new(move |n| db.put(&key(n), &value(n))),
            );
        }
    }
    for &n in &cfg.get_keys {
        for engine in ENGINES {
            progress(&format!("get {n} keys {engine}"));
            let db = peers::open(engine, &sub(cfg, &format!("{engine}-get-{n}"))?, false)?;
            for i in 0..n {
                db.put(&key(i), &value(i));
            }
            let ours = matches!(engine, "bitcask" | "lsm-hash");
            for threads in [1usize, 16] {
                let db = Arc::clone(&db);
                push(
                    &mut rows,
                    &format!("get warm {}k keys {threads}t", n / 1000),
                    engine,
                    ours,
                    threads,
                    Arc::new(move |i| {
                        let k = Rng::new(i).below(n);
                        assert!(db.get(&key(k)).is_some_and(|v| v == value(k)));
                    }),
                );
            }
        }
    }
    // Our engines while another thread writes and merges / compacts nonstop: latency next
    // to the same engine's idle row (the "x idle p99" column).
    for engine in ["bitcask", "lsm-hash"] {
        let n = cfg.get_keys.first().copied().unwrap_or(100_000);
        progress(&format!("during merge {engine}"));
        let db = small_files_store(
            engine,
            &sub(cfg, &format!("{engine}-merge-get"))?,
            kv_core::SyncPolicy::Never,
        )?;
        for i in 0..n {
            let mut b = kv_core::WriteBatch::new();
            b.put(&key(i), &value(i));
            db.write(b).map_err(|e| e.to_string())?;
        }
        let (idle_case, busy_case) = (
            format!("get 1t, {}k keys, small files", n / 1000),
            format!("get 1t, {}k keys, small files, during merge", n / 1000),
        );
        let get: Op = {
            let db = Arc::clone(&db);
            Arc::new(move |i| {
                let k = Rng::new(i).below(n);
                assert!(db.get(&key(k)).unwrap().is_some_and(|v| v == value(k)));
            })
        };
        push(&mut rows, &idle_case, engine, true, 1, Arc::clone(&get));
        let stop = Arc::new(AtomicBool::new(false));
        let bg = churn(Arc::clone(&db), n, Arc::clone(&stop));
        push(&mut rows, &busy_case, engine, true, 1, get);
        stop_churn(&stop, bg)?;

        let db = small_files_store(
            engine,
            &sub(cfg, &format!("{engine}-merge-put"))?,
            kv_core::SyncPolicy::Always,
        )?;
        let put: Op = {
            let db = Arc::clone(&db);
            Arc::new(move |i| {
                let mut b = kv_core::WriteBatch::new();
                b.put(&key(i), &value(i));
                db.write(b).unwrap();
            })
        };
        push(
            &mut rows,
            "put sync 1t, small files",
            engine,
            true,
            1,
            Arc::clone(&put),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let bg = churn(Arc::clone(&db), 20_000, Arc::clone(&stop));
        push(
            &mut rows,
            "put sync 1t, small files, during merge",
            engine,
            true,
            1,
            put,
        );
        stop.store(true, Ordering::Relaxed);
        let _ = bg.join();
    }
    Ok(rows)
}

/// Runs every case; `progress` hears the name of each case as it starts.
pub fn run(cfg: &Config, progress: &mut dyn FnMut(&str)) -> Result<Vec<Row>, String> {
    cases(cfg, progress)
}

/// The table: each row's ops/s, its ratio to the fsync floor, and for our rows the ratio to
/// the best peer in the same case.
pub fn table(rows: &[Row]) -> String {
    let floor = rows
        .iter()
        .find(|r| r.engine == "disk")
        .map_or(0.0, |r| r.ops_per_sec);
    let mut out = format!(
        "{:<46} {:<9} {:>11} {:>8} {:>7} {:>9} {:>9} {:>9} {:>7}\n",
        "case", "engine", "ops/s", "x floor", "x best", "p50 us", "p99 us", "p999 us", "x idle"
    );
    let us = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1e6);
    for r in rows {
        let best_peer = rows
            .iter()
            .filter(|p| p.case == r.case && !p.ours && p.engine != "disk")
            .map(|p| p.ops_per_sec)
            .fold(0.0, f64::max);
        let vs_floor = if floor > 0.0 {
            format!("{:.1}", r.ops_per_sec / floor)
        } else {
            "-".into()
        };
        let vs_peer = if r.ours && best_peer > 0.0 {
            format!("{:.2}", r.ops_per_sec / best_peer)
        } else {
            String::new()
        };
        let [p50, p99, p999] = r
            .latency
            .map_or([String::new(), String::new(), String::new()], |l| l.map(us));
        // A during-merge row: its p99 over the same engine's idle row's.
        let vs_idle = r
            .case
            .strip_suffix(", during merge")
            .and_then(|idle| rows.iter().find(|i| i.case == idle && i.engine == r.engine))
            .and_then(|i| Some((r.latency?[1], i.latency?[1])))
            .map_or(String::new(), |(busy, idle)| {
                format!("{:.2}", busy.as_secs_f64() / idle.as_secs_f64().max(1e-9))
            });
        out.push_str(&format!(
            "{:<46} {:<9} {:>11.0} {:>8} {:>7} {:>9} {:>9} {:>9} {:>7}\n",
            r.case, r.engine, r.ops_per_sec, vs_floor, vs_peer, p50, p99, p999, vs_idle
        ));
    }
    out
}

/// The rows as JSON lines, one object a row, with the table's figures (schema in README.md,
/// "durable bench --format json"): `case`, `engine`, `ours`, `ops_per_sec`, `x_floor`,
/// `x_best_peer`, `p50_us`, `p99_us`, `p999_us`, `x_idle_p99`; absent figures are `null`.
pub fn json_lines(rows: &[Row]) -> String {
    let floor = rows
        .iter()
        .find(|r| r.engine == "disk")
        .map_or(0.0, |r| r.ops_per_sec);
    let mut out = String::new();
    for r in rows {
        let best_peer = rows
            .iter()
            .filter(|p| p.case == r.case && !p.ours && p.engine != "disk")
            .map(|p| p.ops_per_sec)
            .fold(0.0, f64::max);
        let us = |i: usize| {
            r.latency
                .and_then(|l| l.get(i).map(|d| d.as_secs_f64() * 1e6))
        };
        let idle_p99 = r
            .case
            .strip_suffix(", during merge")
            .and_then(|idle| rows.iter().find(|i| i.case == idle && i.engine == r.engine))
            .and_then(|i| Some((r.latency?[1], i.latency?[1])))
            .map(|(busy, idle)| busy.as_secs_f64() / idle.as_secs_f64().max(1e-9));
        let obj = serde_json::json!({
            "case": r.case,
            "engine": r.engine,
            "ours": r.ours,
            "ops_per_sec": r.ops_per_sec,
            "x_floor": (floor > 0.0).then(|| r.ops_per_sec / floor),
            "x_best_peer": (r.ours && best_peer > 0.0).then(|| r.ops_per_sec / best_peer),
            "p50_us": us(0),
            "p99_us": us(1),
            "p999_us": us(2),
            "x_idle_p99": idle_p99,
        });
        out.push_str(&obj.to_string());
        out.push('\n');
    }
    out
}

/// The filesystem type holding `dir` (from `/proc/self/mountinfo`, the longest mount point
/// that contains it), if it can be told.
pub fn filesystem_of(dir: &Path) -> Option<String> {
    // A /proc file reports length 0: read until a read returns nothing (at most 1 MiB).
    let file = DurableFs::real()
        .open(Path::new("/proc/self/mountinfo"), durable_fs::Access::Read)
        .ok()?;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 8192];
    while bytes.len() < 1 << 20 {
        let n = file.read_at(&mut chunk, bytes.len() as u64).ok()?;
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(chunk.get(..n)?);
    }
    let info = String::from_utf8_lossy(&bytes);
    let mut best: Option<(usize, String)> = None;
    for line in info.lines() {
        // `id parent major:minor root mountpoint opts... - fstype source superopts`
        let mut fields = line.split(' ');
        let mount = fields.nth(4)?;
        let fstype = line.split(" - ").nth(1)?.split(' ').next()?;
        let mount = mount.replace("\\040", " ");
        if dir.starts_with(&mount) && best.as_ref().is_none_or(|(len, _)| mount.len() > *len) {
            best = Some((mount.len(), fstype.to_owned()));
        }
    }
    best.map(|(_, t)| t)
}

/// A warning when `dir` is on a filesystem where fsync costs (almost) nothing, so that the
/// sync rows measure memory, not durability.
pub fn fsync_warning(dir: &Path) -> Option<String> {
    let fs = filesystem_of(dir)?;
    matches!(fs.as_str(), "tmpfs" | "ramfs" | "overlay" | "9p" | "fuse.lxcfs")
        .then(|| format!("warning: {} is on {fs}: fsync there may cost nothing, so the sync rows do not measure a disk (give --dir on a real disk)", dir.display()))
}

/// A directory for a run when none is given: under the system temp dir.
pub fn default_dir() -> PathBuf {
    std::env::temp_dir().join(format!("durable-bench-{}", std::process::id()))
}

/// Removes a run's directory tree (best effort).
pub fn cleanup(dir: &Path) {
    let _ = DurableFs::real().remove_dir_all(dir);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn row(case: &str, engine: &str, ours: bool, ops: f64, p99_us: u64) -> Row {
        Row {
            case: case.into(),
            engine: engine.into(),
            ours,
            ops_per_sec: ops,
            latency: Some([
                Duration::from_micros(1),
                Duration::from_micros(p99_us),
                Duration::from_micros(p99_us * 2),
            ]),
        }
    }

    /// The JSON lines carry the table's ratios: to the floor, to the best peer of the same
    /// case, and a during-merge row's p99 over its idle row's.
    #[test]
    fn json_lines_carry_the_tables_ratios() {
        let rows = vec![
            row("floor", "disk", false, 100.0, 10),
            row("get", "ours", true, 300.0, 4),
            row("get", "peer", false, 200.0, 5),
            row("get, during merge", "ours", true, 150.0, 6),
        ];
        let lines: Vec<serde_json::Value> = json_lines(&rows)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[1]["x_floor"], 3.0);
        assert_eq!(lines[1]["x_best_peer"], 1.5);
        assert!(lines[2]["x_best_peer"].is_null());
        assert_eq!(lines[3]["x_idle_p99"], 1.5);
        assert_eq!(lines[1]["p99_us"], 4.0);
        let table = table(&rows);
        assert!(table.contains("1.50"), "{table}");
    }

    #[test]
    fn the_root_filesystem_is_found_and_tmpfs_is_warned_about() {
        assert!(filesystem_of(Path::new("/")).is_some());
        if filesystem_of(Path::new("/dev/shm/x")).as_deref() == Some("tmpfs") {
            assert!(fsync_warning(Path::new("/dev/shm/x")).is_some());
        }
    }
}
