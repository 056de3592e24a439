//! Concurrent crash torture of the WAL: appender threads, `truncate_before` checkpoints and
//! `truncate_after` suffix drops run at once on one simulated disk; every prefix of what they
//! did is a crash state (strict, torn, reordered), and each seed runs again with EIO at a
//! seeded fsync. Proves no acknowledged record is lost and no dropped record comes back
//! (`tests/concurrency.rs` shows a waiting append dropped by `truncate_after` fails). Sizes:
//! `TORTURE_SEEDS` (default 6 per mode).

#![allow(clippy::unwrap_used, reason = "test code: a panic is a failed test")]

use durable_fs::sim::CrashMode;
use durable_fs::sim::concurrent::{Config, run};
use wal::torture_mt::ConcurrentWal;

#[test]
fn concurrent_appends_and_truncations_lose_nothing_in_any_crash_mode() {
    let seeds: u64 = std::env::var("TORTURE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let w = ConcurrentWal::default();
    for mode in [CrashMode::Strict, CrashMode::Torn, CrashMode::Reordered] {
        let r = run(&w, &Config::new(1..=seeds, mode), &mut |_, _| {});
        eprintln!(
            "{mode}: {} crash states, {} acked checked",
            r.crash_states, r.acked_checked
        );
        assert!(r.is_clean(), "{mode}: {:?}", r.first_failure);
        assert!(r.crash_states > 0 && r.acked_checked > 0, "{r:?}");
    }
}
