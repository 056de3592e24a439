//! Random gets over a store of N keys (built on the first run) for a few seconds, with a given
//! value cache size: gets/s. For sizing `cache_bytes` (see BENCHMARKS.md).
//! `cargo run --release -p durable-bitcask --example get_mix -- DIR N CACHE_BYTES [SECONDS]`
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "a measuring tool"
)]

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    durable_fs::sim::Rng::new(i).fill(&mut k);
    k
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).cloned().unwrap_or("/tmp/get_mix".into()));
    let n: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let cache: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(32 << 20);
    let secs: f64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let fs = durable_fs::DurableFs::real();
    if !fs.exists(&dir).unwrap() {
        let o = bitcask::Options::default().with_sync(bitcask::SyncPolicy::Never);
        let db = bitcask::Bitcask::open(&dir, o).unwrap();
        for i in 0..n {
            let mut v = [0u8; 100];
            durable_fs::sim::Rng::new(!i).fill(&mut v);
            db.put(&key(i), &v).unwrap();
        }
        db.close().unwrap();
    }
    let o = bitcask::Options::default()
        .with_read_only(true)
        .with_cache_bytes(cache);
    let db = bitcask::Bitcask::open(&dir, o).unwrap();
    let mut rng = durable_fs::sim::Rng::new(7);
    // Warm-up: one pass's worth of gets.
    for _ in 0..n {
        db.get(&key(rng.below(n))).unwrap();
    }
    let start = std::time::Instant::now();
    let mut done = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..1000 {
            assert!(db.get(&key(rng.below(n))).unwrap().is_some());
        }
        done += 1000;
    }
    println!(
        "keys {n} cache_bytes {cache} gets/s {:.0}",
        done as f64 / start.elapsed().as_secs_f64()
    );
}
