//! The public API on the real disk and the simulation: LSNs, batches, iteration across
//! segments, truncation at both ends, reopen, and the sync policies. Proves LSNs are never
//! reused (not after `truncate_after`, not after truncating everything, not after reopen) and
//! that `durable_lsn` only counts what a power cut would keep.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::time::{Duration, Instant};

use durable_fs::sim::{CrashMode, SimFs};
use wal::{Error, Options, SyncPolicy, Wal};

const DIR: &str = "/db/wal";

fn opts(sim: &SimFs, sync: SyncPolicy) -> Options {
    Options::default()
        .with_fs(sim.durable())
        .with_max_segment_bytes(4096)
        .with_sync(sync)
}

fn all(wal: &Wal) -> Vec<(u64, Vec<u8>)> {
    wal.iter_from(0)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn payload(i: u64) -> Vec<u8> {
    format!("record {i} {}", "x".repeat((i as usize * 13) % 200)).into_bytes()
}

#[test]
fn appends_rotate_and_iterate_in_order_from_any_lsn() {
    let sim = SimFs::new();
    let wal = Wal::open(DIR, opts(&sim, SyncPolicy::Always)).unwrap();
    for i in 1..=100 {
        assert_eq!(wal.append(&payload(i)).unwrap(), i);
    }
    let files = sim.durable().list(std::path::Path::new(DIR)).unwrap();
    assert!(files.len() > 4, "rotation at 4 KiB: {files:?}");
    for from in [0, 1, 37, 100, 101] {
        let got = wal
            .iter_from(from)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let expect: Vec<_> = (from.max(1)..=100).map(|i| (i, payload(i))).collect();
        assert_eq!(got, expect, "from {from}");
    }
    assert_eq!(
        (wal.first_lsn(), wal.last_lsn(), wal.durable_lsn()),
        (Some(1), 100, 100)
    );
}

#[test]
fn batches_get_consecutive_lsns_and_empty_batches_are_refused() {
    let sim = SimFs::new();
    let wal = Wal::open(DIR, opts(&sim, SyncPolicy::Always)).unwrap();
    assert_eq!(wal.append_batch(&[b"a", b"b", b"c"]).unwrap(), (1, 3));
    assert_eq!(wal.append(b"d").unwrap(), 4);
    assert!(matches!(
        wal.append_batch(&[]),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn a_batch_never_straddles_segments_and_may_exceed_one() {
    let sim = SimFs::new();
    let wal = Wal::open(DIR, opts(&sim, SyncPolicy::Always)).unwrap();
    let big = vec![7u8; 3000];
    wal.append(&big).unwrap();
    let (first, last) = wal.append_batch(&[&big, &big]).unwrap(); // 6 KiB: its own segment
    assert_eq!((first, last), (2, 3));
    let names = sim.durable().list(std::path::Path::new(DIR)).unwrap();
    assert!(
        names.contains(&"00000000000000000002.wal".to_owned()),
        "{names:?}"
    );
    assert_eq!(all(&wal).len(), 3);
}

#[test]
fn truncate_after_drops_a_suffix_durably_and_never_reuses_its_lsns() {
    let sim = SimFs::new();
    let wal = Wal::open(DIR, opts(&sim, SyncPolicy::Always)).unwrap();
    for i in 1..=60 {
        wal.append(&payload(i)).unwrap();
    }
    wal.truncate_after(25).unwrap();
    assert_eq!(all(&wal).last().unwrap().0, 25);
    assert_eq!(
        wal.append(b"new").unwrap(),
        61,
        "LSNs 26..=60 are not reused"
    );
    drop(wal);
    let after = sim.crash(CrashMode::Strict, 0);
    let wal = Wal::open(DIR, opts(&after, SyncPolicy::Always)).unwrap();
    let got = all(&wal);
    let expect: Vec<_> = (1..=25)
        .map(|i| (i, payload(i)))
        .chain([(61, b"new".to_vec())])
        .collect();
    assert_eq!(got, expect);
    assert_eq!(wal.append(b"next").unwrap(), 62);
}

#[test]
fn truncate_before_removes_whole_segments_and_truncating_everything_keeps_the_lsn() {
    let sim = SimFs::new();
    let wal = Wal::open(DIR, opts(&sim, SyncPolicy::Always)).unwrap();
    for i in 1..=60 {
        wal.append(&payload(i)).unwrap();
    }
    let removed = wal.truncate_before(50).unwrap();
    assert!(removed > 0);
    let got = all(&wal);
    assert!(
        got.first().unwrap().0 <= 50,
        "records at or above 50 are kept"
    );
    assert!(got.first().unwrap().0 > 1, "the first segment went");
    assert_eq!(got.last().unwrap().0, 60);
    assert!(wal.truncate_before(1000).unwrap() > 0);
    assert!(all(&wal).is_empty());
    assert_eq!(wal.first_lsn(), None);
    drop(wal);
    // Reopen after a crash: the log is empty, and LSNs continue past 60.
    let after = sim.crash(CrashMode::Strict, 0);
    let wal = Wal::open(DIR, opts(&after, SyncPolicy::Always)).unwrap();
    assert!(all(&wal).is_empty());
    assert_eq!(wal.append(b"x").unwrap(), 61);
}

#[test]
fn reopen_continues_the_sequence() {
    let sim = SimFs::new();
    for round in 0..3u64 {
        let wal = Wal::open(DIR, opts(&sim, SyncPolicy::Never)).unwrap();
        for i in 0..10 {
            assert_eq!(wal.append(b"r").unwrap(), round * 10 + i + 1);
        }
        wal.close().unwrap();
    }
}

#[test]
fn never_policy_loses_only_what_was_not_synced() {
    let sim = SimFs::new();
    let wal = Wal::open(DIR, opts(&sim, SyncPolicy::Never)).unwrap();
    for i in 1..=10 {
        wal.append(&payload(i)).unwrap();
    }
    assert_eq!(wal.durable_lsn(), 0);
    wal.sync_to(5).unwrap();
    assert!(wal.durable_lsn() >= 5);
    let durable = wal.durable_lsn();
    for i in 11..=20 {
        wal.append(&payload(i)).unwrap();
    }
    assert!(matches!(wal.sync_to(21), Err(Error::InvalidArgument(_))));
    let after = sim.crash(CrashMode::Strict, 0);
    std::mem::forget(wal); // the machine is off: no orderly close
    let wal = Wal::open(DIR, opts(&after, SyncPolicy::Never)).unwrap();
    let got = all(&wal);
    assert!(got.len() as u64 >= durable, "everything durable survived");
    assert_eq!(
        got,
        (1..=got.len() as u64)
            .map(|i| (i, payload(i)))
            .collect::<Vec<_>>()
    );
}

#[test]
fn interval_and_bytes_policies_sync_in_the_background() {
    for policy in [
        SyncPolicy::Interval(Duration::from_millis(5)),
        SyncPolicy::Bytes(1000),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let wal = Wal::open(tmp.path(), Options::default().with_sync(policy)).unwrap();
        let mut last = 0;
        for _ in 0..20 {
            last = wal.append(&[1u8; 100]).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while wal.durable_lsn() < last && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(wal.durable_lsn(), last, "{policy:?}");
        wal.close().unwrap();
    }
}

#[test]
fn invalid_options_are_refused() {
    let sim = SimFs::new();
    for o in [
        opts(&sim, SyncPolicy::Always).with_max_segment_bytes(10),
        opts(&sim, SyncPolicy::Bytes(0)),
        opts(&sim, SyncPolicy::Interval(Duration::ZERO)),
        opts(&sim, SyncPolicy::Always).with_write_buffer_bytes(1),
    ] {
        assert!(matches!(Wal::open(DIR, o), Err(Error::InvalidOptions(_))));
    }
}

#[test]
fn works_on_the_real_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let o = || Options::default().with_max_segment_bytes(8192);
    let wal = Wal::open(&dir, o()).unwrap();
    for i in 1..=200 {
        wal.append(&payload(i)).unwrap();
    }
    wal.close().unwrap();
    let wal = Wal::open(&dir, o()).unwrap();
    assert_eq!(
        all(&wal),
        (1..=200).map(|i| (i, payload(i))).collect::<Vec<_>>()
    );
    assert_eq!(
        wal::verify(&durable_fs::DurableFs::real(), &dir, 1 << 24)
            .unwrap()
            .records,
        200
    );
}
