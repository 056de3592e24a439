//! Crash torture of the store on the simulated filesystem: seeded workloads with 4 KiB data
//! files (rotation and hint files all the time), overwrites, deletes, batches, merges and
//! reopens, crashed before every operation in strict and torn mode. Proves: acknowledged puts
//! and deletes survive, no deleted key comes back (even across merges), no value appears that
//! was never written, batches are all or nothing, recovery twice agrees. With the lying
//! directory sync the same run must report losses.
//!
//! Size: `TORTURE_SEEDS` seeds per mode (default 32).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use bitcask::torture::workload;
use durable_fs::sim::CrashMode;
use durable_fs::sim::harness::{self, Config};

fn seeds() -> u64 {
    std::env::var("TORTURE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32)
}

#[test]
fn nothing_acknowledged_is_lost_or_resurrected_strict() {
    let report = harness::run(
        &workload(),
        &Config::new(0..seeds(), CrashMode::Strict),
        &mut |_, _| {},
    );
    assert!(report.is_clean(), "{report:?}");
    assert!(report.crash_states > 1000, "{report:?}");
}

#[test]
fn nothing_acknowledged_is_lost_or_resurrected_torn() {
    let report = harness::run(
        &workload(),
        &Config::new(0..seeds(), CrashMode::Torn),
        &mut |_, _| {},
    );
    assert!(report.is_clean(), "{report:?}");
    assert!(report.acked_checked > 1000, "{report:?}");
}

#[test]
fn unsynced_pages_written_back_out_of_order_are_a_torn_tail_not_corruption() {
    // Records carry the seq known durable when they were written, so a hole in the unsynced
    // window followed by valid records is cut as a torn tail instead of refusing to open.
    let report = harness::run(
        &workload(),
        &Config::new(0..seeds(), CrashMode::Reordered),
        &mut |_, _| {},
    );
    assert!(report.is_clean(), "{report:?}");
    assert!(report.crash_states > 1000, "{report:?}");
}

#[test]
fn lying_directory_sync_loses_acknowledged_writes() {
    for mode in [CrashMode::Strict, CrashMode::Torn] {
        let mut cfg = Config::new(0..4, mode);
        cfg.lying_dir_sync = true;
        let report = harness::run(&workload(), &cfg, &mut |_, _| {});
        // Lost writes, or (since the files list) the loss detected and the open refused,
        // naming the missing file.
        let bad = report.lost + report.resurrected + report.recovery_errors;
        assert!(bad > 0, "{report:?}");
        let replayed = harness::replay(&workload(), &report.first_failure.unwrap());
        assert!(replayed.is_err() || !replayed.unwrap().is_clean());
    }
}
