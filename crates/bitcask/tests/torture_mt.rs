//! Concurrent crash torture of bitcask: writer threads, a reader and a merging thread run
//! at once on one simulated disk; every prefix of what they did is a crash state (strict,
//! torn, reordered), and each seed runs again with EIO at a seeded fsync. Proves that no
//! acknowledged write is lost and no read sees a value a crash takes back, and, with each fix
//! put back behind a test-only switch, that the torture finds the bug (negative controls):
//! a merge that commits before the overwrite that made its skipped record dead is durable
//! loses acknowledged data; writes visible before their fsync give phantom reads.
//! Sizes: `TORTURE_SEEDS` (default 6 per mode).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use bitcask::torture::concurrent;
use bitcask::{Bitcask, Options, Regressions, SyncPolicy};
use durable_fs::DurableFs;
use durable_fs::sim::CrashMode;
use durable_fs::sim::concurrent::{Config, run};
use durable_fs::sim::harness::{BoxError, Report};
use kv_core::torture_mt::ConcurrentKv;

fn seeds() -> u64 {
    std::env::var("TORTURE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6)
}

fn torture(w: &ConcurrentKv<Bitcask>, mode: CrashMode, seeds: u64, eio: bool) -> Report {
    let mut cfg = Config::new(1..=seeds, mode);
    cfg.eio = eio;
    run(w, &cfg, &mut |_, _| {})
}

fn assert_clean(r: &Report) {
    assert!(
        r.is_clean(),
        "{} {}: {:?}",
        r.workload,
        r.mode,
        r.first_failure
    );
    assert!(r.crash_states > 0 && r.acked_checked > 0, "{r:?}");
}

#[test]
fn concurrent_writers_readers_and_merges_lose_nothing_in_any_crash_mode() {
    let w = concurrent();
    for mode in [CrashMode::Strict, CrashMode::Torn, CrashMode::Reordered] {
        let r = torture(&w, mode, seeds(), true);
        eprintln!(
            "{mode}: {} crash states, {} acked checked",
            r.crash_states, r.acked_checked
        );
        assert_clean(&r);
    }
}

fn open_with(
    fs: &DurableFs,
    dir: &std::path::Path,
    sync: SyncPolicy,
    regressions: Regressions,
) -> Result<Bitcask, BoxError> {
    let opts = Options::default()
        .with_fs(fs.clone())
        .with_max_file_bytes(4096)
        .with_max_open_files(4)
        .with_sync(sync)
        .with_regressions(regressions);
    Ok(Bitcask::open(dir, opts)?)
}

/// Runs seeds until the torture reports a problem (at most `max`), for a negative control.
fn finds(w: &ConcurrentKv<Bitcask>, max: u64, found: impl Fn(&Report) -> bool) -> Report {
    let mut last = None;
    for seed in 1..=max {
        let mut cfg = Config::new([seed], CrashMode::Strict);
        cfg.eio = true;
        let r = run(w, &cfg, &mut |_, _| {});
        if found(&r) {
            return r;
        }
        last = Some(r);
    }
    panic!("the torture never found the bug in {max} seeds: {last:?}");
}

#[test]
fn negative_control_merge_committing_before_the_overwrite_is_durable_loses_data() {
    let mut w = concurrent();
    w.sync = Some(SyncPolicy::Never);
    w.open = |fs, dir, sync| {
        open_with(
            fs,
            dir,
            sync,
            Regressions {
                merge_commits_before_durable: true,
                ..Regressions::default()
            },
        )
    };
    let r = finds(&w, 200, |r| r.lost + r.resurrected > 0);
    eprintln!("found: {:?}", r.first_failure);
}

#[test]
fn negative_control_writes_visible_before_their_fsync_give_phantom_reads() {
    let mut w = concurrent();
    w.sync = Some(SyncPolicy::Always);
    w.open = |fs, dir, sync| {
        open_with(
            fs,
            dir,
            sync,
            Regressions {
                visible_before_durable: true,
                ..Regressions::default()
            },
        )
    };
    let r = finds(&w, 200, |r| r.phantom_reads > 0);
    eprintln!("found: {:?}", r.first_failure);
}
