//! Sync puts from one thread into a fresh store for a few seconds; prints puts/s and the
//! p50/p99 latency. For before/after comparisons of the write path (`farm-bench`).
//! `cargo run --release -p durable-bitcask --example put_sync -- DIR [SECONDS]`
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "a measuring tool"
)]

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).cloned().unwrap_or("/tmp/put_sync".into()));
    let secs: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let fs = durable_fs::DurableFs::real();
    let _ = fs.remove_dir_all(&dir);
    let db = bitcask::Bitcask::open(&dir, bitcask::Options::default()).unwrap();
    let mut lat = Vec::new();
    let start = std::time::Instant::now();
    let mut i = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let mut k = [0u8; 16];
        durable_fs::sim::Rng::new(i).fill(&mut k);
        let mut v = [0u8; 100];
        durable_fs::sim::Rng::new(!i).fill(&mut v);
        let t = std::time::Instant::now();
        db.put(&k, &v).unwrap();
        lat.push(t.elapsed());
        i += 1;
    }
    let rate = i as f64 / start.elapsed().as_secs_f64();
    db.close().unwrap();
    let _ = fs.remove_dir_all(&dir);
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "puts/s {rate:.0} p50 {:?} p99 {:?} p999 {:?}",
        p(0.5),
        p(0.99),
        p(0.999)
    );
}
