//! The crash torture of the Raft log and state machine, with negative controls: each
//! regression (a step the code takes put back out of order) is caught.

use durable_fs::sim::CrashMode;
use durable_fs::sim::concurrent;
use durable_fs::sim::harness::{self, Config, Report, Workload};
use durable_raft::torture::{RaftLogWorkload, RaftSmWorkload};
use durable_raft::torture_mt::ConcurrentRaftLog;

fn run<W: Workload>(w: &W, seeds: std::ops::Range<u64>, mode: CrashMode) -> Report {
    harness::run(w, &Config::new(seeds, mode), &mut |_, _| {})
}

fn assert_clean(r: &Report) {
    assert!(r.is_clean(), "{r:?}");
    assert!(r.crash_states > 100, "too few crash states: {r:?}");
}

#[test]
fn raft_log_survives_every_crash_point() {
    let w = RaftLogWorkload::default();
    for mode in [CrashMode::Strict, CrashMode::Torn, CrashMode::Reordered] {
        assert_clean(&run(&w, 0..6, mode));
    }
}

#[test]
fn raft_sm_survives_every_crash_point() {
    let w = RaftSmWorkload::default();
    for mode in [CrashMode::Strict, CrashMode::Torn, CrashMode::Reordered] {
        assert_clean(&run(&w, 0..4, mode));
    }
}

#[test]
fn negative_control_callback_before_fsync_is_caught() {
    let mut w = RaftLogWorkload::default();
    w.regressions.ack_before_sync = true;
    let r = run(&w, 0..6, CrashMode::Strict);
    assert!(
        !r.is_clean(),
        "acking before the fsync went unnoticed: {r:?}"
    );
    eprintln!("caught: {:?}", r.first_failure);
}

#[test]
fn negative_control_purge_before_last_purged_is_caught() {
    let mut w = RaftLogWorkload::default();
    w.regressions.purge_before_meta = true;
    let r = run(&w, 0..12, CrashMode::Strict);
    assert!(
        !r.is_clean(),
        "removing purged segments first went unnoticed: {r:?}"
    );
    eprintln!("caught: {:?}", r.first_failure);
}

#[test]
fn negative_control_applied_id_in_its_own_batch_is_caught() {
    let mut w = RaftSmWorkload::default();
    w.regressions.split_meta = true;
    let r = run(&w, 0..6, CrashMode::Strict);
    assert!(!r.is_clean(), "a split apply went unnoticed: {r:?}");
    eprintln!("caught: {:?}", r.first_failure);
}

#[test]
fn negative_control_old_generation_removed_before_the_switch_is_caught() {
    let mut w = RaftSmWorkload::default();
    w.regressions.remove_before_switch = true;
    let r = run(&w, 0..6, CrashMode::Strict);
    assert!(
        !r.is_clean(),
        "removing the old state before the switch went unnoticed: {r:?}"
    );
    eprintln!("caught: {:?}", r.first_failure);
}

#[test]
fn raft_log_with_its_flusher_thread_survives_every_crash_point() {
    let w = ConcurrentRaftLog::default();
    for mode in [CrashMode::Strict, CrashMode::Torn, CrashMode::Reordered] {
        let r = concurrent::run(&w, &concurrent::Config::new(0..4, mode), &mut |_, _| {});
        assert_clean(&r);
    }
}

#[test]
fn negative_control_callback_before_fsync_on_the_flusher_thread_is_caught() {
    let mut w = ConcurrentRaftLog::default();
    w.base.regressions.ack_before_sync = true;
    let r = concurrent::run(
        &w,
        &concurrent::Config::new(0..6, CrashMode::Strict),
        &mut |_, _| {},
    );
    assert!(
        !r.is_clean(),
        "acking before the fsync went unnoticed: {r:?}"
    );
    eprintln!("caught: {:?}", r.first_failure);
}

#[test]
fn negative_control_vote_before_the_appends_it_follows_is_caught() {
    let mut w = RaftLogWorkload::default();
    w.regressions.vote_without_barrier = true;
    let r = run(&w, 0..12, CrashMode::Strict);
    assert!(
        !r.is_clean(),
        "a vote reordered before appends went unnoticed: {r:?}"
    );
    eprintln!("caught: {:?}", r.first_failure);
}
