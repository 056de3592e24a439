//! Builds a store of N keys (first run) and opens it read-only repeatedly: for profiling open.
//! `cargo run --release -p durable-bitcask --example open_profile -- DIR N [image|hints]`: `hints`
//! sets the keydir image aside (as `DIR.KEYDIR.off`) for the run, so open reads the hints.
#![allow(clippy::unwrap_used, clippy::print_stdout, reason = "a profiling tool")]

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).cloned().unwrap_or("/tmp/openprof/db".into()));
    let n: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let fs = durable_fs::DurableFs::real();
    if !fs.exists(&dir).unwrap() {
        let db = bitcask::Bitcask::open(
            &dir,
            bitcask::Options::default().with_sync(bitcask::SyncPolicy::Never),
        )
        .unwrap();
        for i in 0..n {
            let mut k = [0u8; 16];
            durable_fs::sim::Rng::new(i).fill(&mut k);
            db.put(&k, &[0x5A; 100]).unwrap();
        }
        db.close().unwrap();
    }
    let image = dir.join("KEYDIR");
    let aside = dir.with_extension("KEYDIR.off");
    let hints = args.get(3).is_some_and(|m| m == "hints");
    if hints && fs.exists(&image).unwrap() {
        fs.rename(&image, &aside).unwrap();
    }
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let db =
            bitcask::Bitcask::open(&dir, bitcask::Options::default().with_read_only(true)).unwrap();
        let opened = t.elapsed();
        let len = db.len().expect("a healthy store");
        let from_image = db.recovery_report().from_image;
        drop(db);
        println!(
            "open {opened:?} (with drop {:?}), {len} keys, from the image: {from_image}",
            t.elapsed()
        );
    }
    if hints && fs.exists(&aside).unwrap() {
        fs.rename(&aside, &image).unwrap();
    }
}
