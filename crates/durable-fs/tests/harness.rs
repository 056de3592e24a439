//! Proves the crash harness catches what it must: on the small durable-fs workload (numbered
//! files of records, an atomically replaced CURRENT, removals), crashing at every operation in
//! strict and torn mode loses nothing acknowledged; with the lying directory sync the same
//! run reports lost writes and a replayable first failure. That is the seed bug, caught.
//!
//! Size: `TORTURE_SEEDS` (default 6) seeds per mode.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use durable_fs::sim::CrashMode;
use durable_fs::sim::files_workload::FilesWorkload;
use durable_fs::sim::harness::{self, Config};

fn seeds() -> u64 {
    std::env::var("TORTURE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6)
}

#[test]
fn no_acknowledged_write_is_lost_at_any_crash_point() {
    let w = FilesWorkload::default();
    for mode in [CrashMode::Strict, CrashMode::Torn] {
        let report = harness::run(&w, &Config::new(0..seeds(), mode), &mut |_, _| {});
        assert!(report.is_clean(), "{report:?}");
        assert!(report.crash_states > 100, "{report:?}");
        assert!(report.acked_checked > 100, "{report:?}");
    }
}

#[test]
fn lying_directory_sync_is_caught_and_replayable() {
    let w = FilesWorkload::default();
    for mode in [CrashMode::Strict, CrashMode::Torn] {
        let mut cfg = Config::new(0..seeds(), mode);
        cfg.lying_dir_sync = true;
        let report = harness::run(&w, &cfg, &mut |_, _| {});
        assert!(
            report.lost > 0,
            "the missing directory fsync must lose data: {report:?}"
        );
        let failure = report.first_failure.expect("a failure is reported");
        let verdict = harness::replay(&w, &failure).expect("recovery itself works");
        assert!(
            !verdict.is_clean(),
            "replay reproduces the loss: {verdict:?}"
        );
    }
}

#[test]
fn sampled_crash_points_include_the_end() {
    let w = FilesWorkload::default();
    let mut cfg = Config::new([3], CrashMode::Strict);
    cfg.max_points_per_seed = Some(5);
    let report = harness::run(&w, &cfg, &mut |_, _| {});
    assert!(
        report.crash_states <= 5 && report.crash_states >= 1,
        "{report:?}"
    );
    assert!(report.is_clean());
}
