//! WAL benchmarks, ours and okaywal's side by side on the same disk, with the raw fsync floor
//! measured in the same run. Results and how to read them: BENCHMARKS.md.
//!
//! - `floor/write4k_fdatasync`: append 4 KiB + `fdatasync`, the disk's durable-write rate.
//! - `wal_always/threads=N`: 128 B appends with `SyncPolicy::Always` from N threads (group
//!   commit); throughput is acknowledged (durable) appends per second.
//! - `okaywal_commit/threads=N`: okaywal's entry with one 128 B chunk, committed (fsynced).
//! - `wal_never/bytes=N`: appends with `SyncPolicy::Never` (memory and CRC speed).
//! - `wal_recovery/scan`: open (recover) a 100k-record log and iterate it all.
//! - `wal_read/random_lsn`: `Wal::read` of a random LSN of a 100k-record log (warm).
//!
//! Set `BENCH_DIR` to put the files on a particular disk (default: the system temp dir).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    missing_docs,
    reason = "benchmark code: a panic is a failed run"
)]

use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use durable_fs::DurableFs;
use wal::{Options, SyncPolicy, Wal};

fn tempdir() -> tempfile::TempDir {
    match std::env::var_os("BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(PathBuf::from(d)).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

/// Runs `per_thread` operations on each of `threads` threads; returns the wall time scaled to
/// `iters` operations.
fn threaded(iters: u64, threads: usize, op: impl Fn(usize) + Send + Sync + 'static) -> Duration {
    let per = (iters / threads as u64).max(1);
    let op = Arc::new(op);
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (op, barrier) = (Arc::clone(&op), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..per {
                    op(t);
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().unwrap();
    }
    let total = per * threads as u64;
    start.elapsed().mul_f64(iters as f64 / total as f64)
}

fn floor(c: &mut Criterion) {
    let mut g = c.benchmark_group("floor");
    g.throughput(Throughput::Elements(1))
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    let tmp = tempdir();
    let f = DurableFs::real()
        .create_new(&tmp.path().join("floor"))
        .unwrap();
    let block = vec![0xABu8; 4096];
    g.bench_function("write4k_fdatasync", |b| {
        b.iter(|| {
            f.append(&block).unwrap();
            f.sync_data().unwrap();
        })
    });
    g.finish();
}

fn wal_always(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_always");
    g.throughput(Throughput::Elements(1))
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for threads in [1usize, 4, 16, 64] {
        let tmp = tempdir();
        let wal = Arc::new(Wal::open(tmp.path(), Options::default()).unwrap());
        g.bench_with_input(
            BenchmarkId::new("threads", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    let wal = Arc::clone(&wal);
                    threaded(iters, threads, move |_| {
                        wal.append(&[7u8; 128]).unwrap();
                    })
                })
            },
        );
    }
    g.finish();
}

fn okaywal_commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("okaywal_commit");
    g.throughput(Throughput::Elements(1))
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for threads in [1usize, 16] {
        let tmp = tempdir();
        let log = Arc::new(okaywal::WriteAheadLog::recover(tmp.path(), okaywal::LogVoid).unwrap());
        g.bench_with_input(
            BenchmarkId::new("threads", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    let log = Arc::clone(&log);
                    threaded(iters, threads, move |_| {
                        let mut e = log.begin_entry().unwrap();
                        e.write_chunk(&[7u8; 128]).unwrap();
                        e.commit().unwrap();
                    })
                })
            },
        );
    }
    g.finish();
}

fn wal_never(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_never");
    g.measurement_time(Duration::from_secs(3));
    for size in [128usize, 4096] {
        let tmp = tempdir();
        let wal = Wal::open(tmp.path(), Options::default().with_sync(SyncPolicy::Never)).unwrap();
        let payload = vec![3u8; size];
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("bytes", size), &size, |b, _| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    wal.append(&payload).unwrap();
                }
                let t = start.elapsed();
                // Keep the disk bounded: drop what this sample wrote (not timed).
                wal.truncate_before(wal.last_lsn() + 1).unwrap();
                t
            })
        });
    }
    g.finish();
}

fn wal_recovery(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_recovery");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    let tmp = tempdir();
    let n = 100_000u64;
    {
        let wal = Wal::open(tmp.path(), Options::default().with_sync(SyncPolicy::Never)).unwrap();
        for i in 0..n {
            wal.append(&i.to_le_bytes().repeat(16)).unwrap();
        }
        wal.close().unwrap();
    }
    g.throughput(Throughput::Bytes(n * (20 + 128)));
    g.bench_function("scan", |b| {
        b.iter(|| {
            let wal = Wal::open(tmp.path(), Options::default()).unwrap();
            let count = wal.iter_from(0).unwrap().count() as u64;
            assert_eq!(count, n);
        })
    });
    g.finish();
}

/// `Wal::read(lsn)` of random records of a 100k-record log (page cache warm): one
/// positional read each once its segment is indexed.
fn wal_read(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_read");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    let tmp = tempdir();
    let n = 100_000u64;
    let wal = Wal::open(tmp.path(), Options::default().with_sync(SyncPolicy::Never)).unwrap();
    for i in 0..n {
        wal.append(&i.to_le_bytes().repeat(16)).unwrap();
    }
    wal.sync().unwrap();
    for lsn in (1..=n).step_by(1000) {
        wal.read(lsn).unwrap(); // index every segment once
    }
    let mut x = 88172645463325252u64;
    g.throughput(Throughput::Elements(1));
    g.bench_function("random_lsn", |b| {
        b.iter(|| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let lsn = x % n + 1;
            let got = wal.read(lsn).unwrap().unwrap();
            assert_eq!(got.len(), 128);
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    floor,
    wal_always,
    okaywal_commit,
    wal_never,
    wal_recovery,
    wal_read
);
criterion_main!(benches);
