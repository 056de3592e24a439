//! Concurrent crash torture of lsm-hash: writer threads, a reader and a compacting thread
//! run at once on one simulated disk; every prefix of what they did is a crash state
//! (strict, torn, reordered), and each seed runs again with EIO at a seeded fsync. Proves no
//! acknowledged write is lost and no read sees a value a crash takes back; with writes made
//! visible before their fsync (a test-only switch), the torture finds phantom reads
//! (negative control). Sizes: `TORTURE_SEEDS` (default 6 per mode).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use durable_fs::sim::CrashMode;
use durable_fs::sim::concurrent::{Config, run};
use lsm_hash::{LsmHash, Options, Regressions, SyncPolicy};

fn seeds() -> u64 {
    std::env::var("TORTURE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6)
}

#[test]
fn concurrent_writers_readers_and_compactions_lose_nothing_in_any_crash_mode() {
    let w = lsm_hash::torture::concurrent();
    for mode in [CrashMode::Strict, CrashMode::Torn, CrashMode::Reordered] {
        let r = run(&w, &Config::new(1..=seeds(), mode), &mut |_, _| {});
        eprintln!(
            "{mode}: {} crash states, {} acked checked",
            r.crash_states, r.acked_checked
        );
        assert!(r.is_clean(), "{mode}: {:?}", r.first_failure);
        assert!(r.crash_states > 0 && r.acked_checked > 0, "{r:?}");
    }
}

#[test]
fn negative_control_writes_visible_before_their_fsync_give_phantom_reads() {
    let mut w = lsm_hash::torture::concurrent();
    w.sync = Some(SyncPolicy::Always);
    w.open = |fs, dir, sync| {
        let opts = Options::default()
            .with_fs(fs.clone())
            .with_max_file_bytes(4096)
            .with_sync(sync)
            .with_compaction_min_segments(0)
            .with_regressions(Regressions {
                visible_before_durable: true,
            });
        Ok(LsmHash::open(dir, opts)?)
    };
    for seed in 1..=200 {
        let r = run(&w, &Config::new([seed], CrashMode::Strict), &mut |_, _| {});
        if r.phantom_reads > 0 {
            eprintln!("found: {:?}", r.first_failure);
            return;
        }
    }
    panic!("the torture never found the phantom read in 200 seeds");
}
