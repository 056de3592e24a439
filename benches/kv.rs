//! Key-value benchmarks: bitcask and lsm-hash side by side with fjall, redb and sled on the
//! same disk, in one run. Results and how to read them: BENCHMARKS.md.
//!
//! - `put_nosync/<engine>/threads=N`: random 16 B keys, random (incompressible) 100 B values, no
//!   fsync per write
//!   (ours: `SyncPolicy::Never`; fjall: no persist; redb: `Durability::None`; sled: no flush).
//! - `put_sync/<engine>/threads=N`: the same, durable when the call returns (ours: `Always`,
//!   group commit; fjall: `persist(SyncData)`; redb: `Durability::Immediate`; sled: `flush`).
//! - `get/<engine>/<N>k` and `get/<engine>/<N>k/threads=16`: random gets of present keys
//!   (each checked) on a warm store of `GET_KEYS` keys (default 100k and 1M, as `durable
//!   bench`), from one thread and from 16.
//! - `open/bitcask_image`, `open/bitcask_hints`, `open/bitcask_scan`, `open/lsm_hash`: open a
//!   store of `BENCH_KEYS` keys (default 1M) read-only from the keydir image close wrote,
//!   then without it (hints), then without hints either (scans); `open_cold/*` the same after
//!   dropping the page cache (root only).
//! - `merge/bitcask`: merge a store whose data is half dead; throughput in input bytes.
//! - `lsm_get_during_compaction`: get latency while another thread compacts nonstop.
//!
//! `BENCH_DIR` picks the disk (default: the system temp dir).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    missing_docs,
    reason = "benchmark code: a panic is a failed run"
)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use durable::peers::{self, ENGINES, Kv, key, value};
use durable_fs::sim::Rng;

fn tempdir() -> tempfile::TempDir {
    match std::env::var_os("BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(PathBuf::from(d)).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn open(engine: &str, dir: &Path, sync: bool) -> Arc<dyn Kv> {
    peers::open(engine, dir, sync).unwrap()
}

/// `iters` puts of fresh random keys spread over `threads` threads; wall time.
fn threaded_puts(
    db: &Arc<dyn Kv>,
    counter: &Arc<AtomicU64>,
    iters: u64,
    threads: usize,
) -> Duration {
    let per = (iters / threads as u64).max(1);
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (db, counter, barrier) =
                (Arc::clone(db), Arc::clone(counter), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..per {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    db.put(&key(n), &value(n));
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().unwrap();
    }
    start
        .elapsed()
        .mul_f64(iters as f64 / (per * threads as u64) as f64)
}

fn puts(c: &mut Criterion, sync: bool) {
    let mut g = c.benchmark_group(if sync { "put_sync" } else { "put_nosync" });
    g.throughput(Throughput::Elements(1))
        .sample_size(10)
        .measurement_time(Duration::from_secs(if sync { 4 } else { 2 }));
    for engine in ENGINES {
        for threads in [1usize, 16] {
            let tmp = tempdir();
            let db = open(engine, tmp.path(), sync);
            let counter = Arc::new(AtomicU64::new(0));
            g.bench_with_input(
                BenchmarkId::new(engine, format!("threads={threads}")),
                &threads,
                |b, &t| b.iter_custom(|iters| threaded_puts(&db, &counter, iters, t)),
            );
        }
    }
    g.finish();
}

fn put_sync(c: &mut Criterion) {
    puts(c, true);
}

fn put_nosync(c: &mut Criterion) {
    puts(c, false);
}

fn get(c: &mut Criterion) {
    let mut g = c.benchmark_group("get");
    g.throughput(Throughput::Elements(1))
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for n in get_keys() {
        for engine in ENGINES {
            let tmp = tempdir();
            let db = open(engine, tmp.path(), false);
            for i in 0..n {
                db.put(&key(i), &value(i));
            }
            let mut rng = Rng::new(7);
            let id = BenchmarkId::new(engine, format!("{}k", n / 1000));
            g.bench_function(id, |b| {
                b.iter(|| {
                    let i = rng.below(n);
                    assert!(db.get(&key(i)).is_some_and(|v| v == value(i)));
                })
            });
            let id = BenchmarkId::new(engine, format!("{}k/threads=16", n / 1000));
            g.bench_function(id, |b| {
                b.iter_custom(|iters| threaded_gets(&db, n, iters, 16))
            });
        }
    }
    g.finish();
}

/// `iters` random gets of present keys (each checked) spread over `threads` threads; wall
/// time.
fn threaded_gets(db: &Arc<dyn Kv>, n: u64, iters: u64, threads: usize) -> Duration {
    let per = (iters / threads as u64).max(1);
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (db, barrier) = (Arc::clone(db), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let mut rng = Rng::new(t as u64 + 100);
                barrier.wait();
                for _ in 0..per {
                    let i = rng.below(n);
                    assert!(db.get(&key(i)).is_some_and(|v| v == value(i)));
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().unwrap();
    }
    start
        .elapsed()
        .mul_f64(iters as f64 / (per * threads as u64) as f64)
}

/// Store sizes of the get benchmarks: `GET_KEYS` (comma-separated), default 100k and 1M, the
/// sizes `durable bench` uses.
fn get_keys() -> Vec<u64> {
    std::env::var("GET_KEYS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100_000, 1_000_000])
}

/// Empties the page cache (needs root); false if that is not possible here.
fn drop_caches() -> bool {
    // Not in criterion's `--test` smoke run (CI): it would empty the whole machine's cache.
    if std::env::args().any(|a| a == "--test") {
        return false;
    }
    std::process::Command::new("sh")
        .args(["-c", "sync && echo 3 > /proc/sys/vm/drop_caches"])
        .status()
        .is_ok_and(|s| s.success())
}

fn bench_keys() -> u64 {
    std::env::var("BENCH_KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
}

fn open_time(c: &mut Criterion) {
    let mut g = c.benchmark_group("open");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    let n = bench_keys();
    let bc_dir = tempdir();
    {
        // An image whatever the key count (BENCH_KEYS may be small in CI's smoke run).
        let db = bitcask::Bitcask::open(
            bc_dir.path(),
            bitcask::Options::default()
                .with_sync(bitcask::SyncPolicy::Never)
                .with_image_min_keys(0),
        )
        .unwrap();
        for i in 0..n {
            db.put(&key(i), &value(i)).unwrap();
        }
        db.close().unwrap();
    }
    let ro = || bitcask::Options::default().with_read_only(true);
    g.throughput(Throughput::Elements(n));
    let fs = durable_fs::DurableFs::real();
    let image = bc_dir.path().join("KEYDIR");
    // The keydir image close wrote; then without it (hints); then without hints (scans).
    g.bench_function("bitcask_image", |b| {
        b.iter(|| {
            let db = bitcask::Bitcask::open(bc_dir.path(), ro()).unwrap();
            assert!(db.recovery_report().from_image);
            assert_eq!(db.len().unwrap() as u64, n)
        })
    });
    fs.remove_file(&image).unwrap();
    g.bench_function("bitcask_hints", |b| {
        b.iter(|| {
            assert_eq!(
                bitcask::Bitcask::open(bc_dir.path(), ro())
                    .unwrap()
                    .len()
                    .unwrap() as u64,
                n
            )
        })
    });
    for name in fs.list(bc_dir.path()).unwrap() {
        if name.ends_with(".hint") {
            fs.remove_file(&bc_dir.path().join(name)).unwrap();
        }
    }
    g.bench_function("bitcask_scan", |b| {
        b.iter(|| {
            assert_eq!(
                bitcask::Bitcask::open(bc_dir.path(), ro())
                    .unwrap()
                    .len()
                    .unwrap() as u64,
                n
            )
        })
    });
    g.finish();
    // After a reboot the page cache is empty: open then has to read hints or data from disk.
    if drop_caches() {
        let mut g = c.benchmark_group("open_cold");
        g.sample_size(10)
            .measurement_time(Duration::from_secs(10))
            .throughput(Throughput::Elements(n));
        let cold = |b: &mut criterion::Bencher<'_>, dir: &Path| {
            b.iter_custom(|iters| {
                let mut t = Duration::ZERO;
                for _ in 0..iters {
                    drop_caches();
                    let start = Instant::now();
                    assert_eq!(
                        bitcask::Bitcask::open(dir, ro()).unwrap().len().unwrap() as u64,
                        n
                    );
                    t += start.elapsed();
                }
                t
            })
        };
        g.bench_function("bitcask_scan", |b| cold(b, bc_dir.path()));
        // Hints again, for the cold run with them.
        let o = bitcask::Options::default().with_image_min_keys(0);
        let db = bitcask::Bitcask::open(bc_dir.path(), o).unwrap();
        db.compact().unwrap(); // rewrites every file with a hint
        db.close().unwrap(); // and writes a keydir image
        g.bench_function("bitcask_image", |b| cold(b, bc_dir.path()));
        fs.remove_file(&image).unwrap();
        g.bench_function("bitcask_hints", |b| cold(b, bc_dir.path()));
        g.finish();
    }
    let mut g = c.benchmark_group("open");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(n));
    let lsm_dir = tempdir();
    {
        let o = lsm_hash::Options::default()
            .with_sync(bitcask::SyncPolicy::Never)
            .with_compaction_min_segments(0);
        let db = lsm_hash::LsmHash::open(lsm_dir.path(), o).unwrap();
        for i in 0..n {
            db.put(&key(i), &value(i)).unwrap();
        }
        db.close().unwrap();
    }
    g.bench_function("lsm_hash", |b| {
        b.iter(|| {
            let o = lsm_hash::Options::default().with_compaction_min_segments(0);
            lsm_hash::LsmHash::open(lsm_dir.path(), o).unwrap()
        })
    });
    g.finish();
}

fn merge(c: &mut Criterion) {
    let mut g = c.benchmark_group("merge");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    let n = 200_000u64;
    let record = (24 + 16 + 100) as u64;
    g.throughput(Throughput::Bytes(2 * n * record));
    g.bench_function("bitcask", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let tmp = tempdir();
                let opts = bitcask::Options::default()
                    .with_sync(bitcask::SyncPolicy::Never)
                    .with_max_file_bytes(16 << 20);
                let db = bitcask::Bitcask::open(tmp.path(), opts).unwrap();
                for round in 0..2 {
                    for i in 0..n {
                        db.put(&key(i), &[round; 100]).unwrap();
                    }
                }
                db.sync().unwrap();
                let start = Instant::now();
                let r = db.compact().unwrap();
                total += start.elapsed();
                assert_eq!(r.records, n);
            }
            total
        })
    });
    g.finish();
}

fn lsm_get_during_compaction(c: &mut Criterion) {
    let mut g = c.benchmark_group("lsm_get_during_compaction");
    g.throughput(Throughput::Elements(1))
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    let tmp = tempdir();
    let o = lsm_hash::Options::default()
        .with_sync(bitcask::SyncPolicy::Never)
        .with_max_file_bytes(1 << 20)
        .with_compaction_min_segments(0);
    let db = Arc::new(lsm_hash::LsmHash::open(tmp.path(), o).unwrap());
    let n = 50_000u64;
    for i in 0..n {
        db.put(&key(i), &value(i)).unwrap();
    }
    for (label, compacting) in [("idle", false), ("compacting", true)] {
        let stop = Arc::new(AtomicBool::new(false));
        let bg = compacting.then(|| {
            let (db, stop) = (Arc::clone(&db), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..5_000 {
                        db.put(&key(i % n), &value(i % n)).unwrap();
                        i += 1;
                    }
                    db.compact().unwrap();
                }
            })
        });
        let mut rng = Rng::new(3);
        g.bench_function(label, |b| {
            b.iter(|| assert!(db.get(&key(rng.below(n))).unwrap().is_some()))
        });
        stop.store(true, Ordering::Relaxed);
        if let Some(h) = bg {
            h.join().unwrap();
        }
    }
    g.finish();
}

criterion_group!(
    benches,
    put_sync,
    put_nosync,
    get,
    open_time,
    merge,
    lsm_get_during_compaction
);
criterion_main!(benches);
