//! Memory per key of the bitcask keydir (target: key length + 48 bytes) and of lsm-hash's
//! per-segment indexes, measured with a counting allocator: bytes still allocated after
//! opening a store of `BENCH_KEYS` (default 1M) 16-byte keys, divided by the key count.
//! Prints one line per engine; results in BENCHMARKS.md. The value cache (bounded by
//! `cache_bytes`, filled only by gets) is off here: this counts the indexes.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    missing_docs,
    reason = "benchmark code: a panic is a failed run"
)]

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    durable_fs::sim::Rng::new(i).fill(&mut k);
    k
}

fn main() {
    let n: u64 = std::env::var("BENCH_KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let never = bitcask::SyncPolicy::Never;

    let dir = tmp.path().join("bitcask");
    let db = bitcask::Bitcask::open(&dir, bitcask::Options::default().with_sync(never)).unwrap();
    for i in 0..n {
        db.put(&key(i), &[1u8; 100]).unwrap();
    }
    db.close().unwrap();
    let region = Region::new(GLOBAL);
    let db = bitcask::Bitcask::open(
        &dir,
        bitcask::Options::default()
            .with_read_only(true)
            .with_cache_bytes(0),
    )
    .unwrap();
    let s = region.change();
    let net = s.bytes_allocated as i64 - s.bytes_deallocated as i64;
    assert_eq!(db.len().expect("healthy store") as u64, n);
    println!(
        "bitcask keydir: {:.1} bytes per key for 16-byte keys ({n} keys; target <= 64)",
        net as f64 / n as f64
    );
    drop(db);

    let dir = tmp.path().join("lsm");
    let o = || {
        lsm_hash::Options::default()
            .with_sync(never)
            .with_compaction_min_segments(0)
            .with_cache_bytes(0) // the value cache is bounded apart (cache_bytes)
    };
    let db = lsm_hash::LsmHash::open(&dir, o()).unwrap();
    for i in 0..n {
        db.put(&key(i), &[1u8; 100]).unwrap();
    }
    db.close().unwrap();
    let region = Region::new(GLOBAL);
    let db = lsm_hash::LsmHash::open(&dir, o()).unwrap();
    let s = region.change();
    let net = s.bytes_allocated as i64 - s.bytes_deallocated as i64;
    println!(
        "lsm-hash indexes: {:.1} bytes per key for 16-byte keys ({n} keys)",
        net as f64 / n as f64
    );
    drop(db);
}
