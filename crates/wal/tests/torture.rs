//! Crash torture of the WAL on the simulated filesystem: seeded workloads with 4 KiB segments
//! (constant rotation), batches, `truncate_before`, `truncate_after` and reopen cycles, crashed
//! before every operation in strict and torn mode. Proves: every acknowledged record survives,
//! the log is a prefix (no hole, no reordering, no partial batch), truncated records stay
//! gone, LSNs are not reused, and recovery twice agrees. With the lying directory sync the
//! same run must report lost acknowledged records: the test would catch a missing directory
//! fsync in segment creation.
//!
//! Size: `TORTURE_SEEDS` seeds per mode (default 64).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use durable_fs::sim::CrashMode;
use durable_fs::sim::harness::{self, Config};
use wal::torture::WalWorkload;

fn seeds() -> u64 {
    std::env::var("TORTURE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

#[test]
fn no_acknowledged_record_is_lost_at_any_crash_point_strict() {
    let report = harness::run(
        &WalWorkload::default(),
        &Config::new(0..seeds(), CrashMode::Strict),
        &mut |_, _| {},
    );
    assert!(report.is_clean(), "{report:?}");
    assert!(report.crash_states > 500, "{report:?}");
}

#[test]
fn no_acknowledged_record_is_lost_at_any_crash_point_torn() {
    let report = harness::run(
        &WalWorkload::default(),
        &Config::new(0..seeds(), CrashMode::Torn),
        &mut |_, _| {},
    );
    assert!(report.is_clean(), "{report:?}");
    assert!(report.acked_checked > 1000, "{report:?}");
}

#[test]
fn unsynced_pages_written_back_out_of_order_are_a_torn_tail_not_corruption() {
    // Real disks write back dirty pages in any order: after a crash the unsynced window may
    // hold a hole followed by valid records. Recovery must open (cutting the window), lose
    // nothing acknowledged, and still refuse real mid-log corruption (corruption tests).
    let report = harness::run(
        &WalWorkload::default(),
        &Config::new(0..seeds(), CrashMode::Reordered),
        &mut |_, _| {},
    );
    assert!(report.is_clean(), "{report:?}");
    assert!(report.crash_states > 500, "{report:?}");
}

#[test]
fn lying_directory_sync_loses_acknowledged_records() {
    for mode in [CrashMode::Strict, CrashMode::Torn] {
        let mut cfg = Config::new(0..4, mode);
        cfg.lying_dir_sync = true;
        let report = harness::run(&WalWorkload::default(), &cfg, &mut |_, _| {});
        // A lost segment or chain entry: acknowledged records gone, or (since the segment
        // chain) the loss detected and the open refused, naming what is missing.
        assert!(report.lost + report.recovery_errors > 0, "{report:?}");
        let failure = report.first_failure.unwrap();
        let replayed = harness::replay(&WalWorkload::default(), &failure);
        assert!(replayed.is_err() || !replayed.unwrap().is_clean());
    }
}
