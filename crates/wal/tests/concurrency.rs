//! Many threads appending with `SyncPolicy::Always` share fsyncs (group commit). Proves every
//! LSN returned is unique and durable: after a power cut right after the last append returns,
//! every acknowledged record is recovered with its payload. Readers iterating concurrently
//! see a consistent prefix.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::collections::BTreeMap;
use std::sync::Arc;

use durable_fs::sim::{CrashMode, OpKind, SimFs};
use wal::{Options, SyncPolicy, Wal};

const DIR: &str = "/db/wal";

#[test]
fn concurrent_always_appends_are_unique_durable_and_share_fsyncs() {
    let sim = SimFs::new();
    let opts = Options::default()
        .with_fs(sim.durable())
        .with_max_segment_bytes(64 * 1024)
        .with_sync(SyncPolicy::Always);
    let wal = Arc::new(Wal::open(DIR, opts.clone()).unwrap());
    let syncs_before = sim.ops_of(OpKind::Sync);
    let (threads, per_thread) = (16, 200);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                (0..per_thread)
                    .map(|i| {
                        let p = format!("t{t} i{i}").into_bytes();
                        let lsn = wal.append(&p).unwrap();
                        assert!(wal.durable_lsn() >= lsn, "acknowledged means durable");
                        (lsn, p)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    // A reader running meanwhile sees an in-order, gap-free prefix.
    for _ in 0..20 {
        let seen: Vec<u64> = wal.iter_from(0).unwrap().map(|r| r.unwrap().0).collect();
        assert!(seen.iter().enumerate().all(|(i, l)| *l == i as u64 + 1));
    }
    let mut acked = BTreeMap::new();
    for h in handles {
        for (lsn, p) in h.join().unwrap() {
            assert!(acked.insert(lsn, p).is_none(), "LSN {lsn} returned twice");
        }
    }
    assert_eq!(acked.len(), threads * per_thread);
    let syncs = sim.ops_of(OpKind::Sync) - syncs_before;
    eprintln!("{} appends, {syncs} fsyncs", acked.len());
    // Each leader's fsync covers at least its own record; each segment adds three (the
    // old segment's, the new file's and its header's). On the simulated disk an fsync takes no
    // time, so groups are small here; the benchmarks measure real group sizes.
    let segments = sim.durable().list(std::path::Path::new(DIR)).unwrap().len() as u64;
    assert!(syncs <= acked.len() as u64 + 3 * segments, "{syncs} fsyncs");
    // Power cut now: no close, no drop-time sync.
    let after = sim.crash(CrashMode::Strict, 0);
    let wal2 = Wal::open(DIR, opts.with_fs(after.durable())).unwrap();
    let got: BTreeMap<u64, Vec<u8>> = wal2.iter_from(0).unwrap().map(|r| r.unwrap()).collect();
    assert_eq!(got, acked);
}

/// An append still waiting for its fsync when `truncate_after` drops its record fails with
/// the typed `Truncated` error, instead of returning an LSN that is not in the log; and the
/// durable mark is lowered before any later append can be acknowledged.
#[test]
fn truncate_after_fails_the_waiting_appends_it_drops() {
    let sim = SimFs::new();
    let opts = Options::default()
        .with_fs(sim.durable())
        .with_sync(SyncPolicy::Always);
    let wal = Arc::new(Wal::open("/wal", opts).unwrap());
    for i in 0..5 {
        wal.append(format!("r{i}").as_bytes()).unwrap();
    }
    // A slow disk: the append below is still waiting when the truncation runs.
    sim.set_sync_delay(Some(std::time::Duration::from_millis(100)));
    let w = Arc::clone(&wal);
    let appender = std::thread::spawn(move || w.append(b"dropped"));
    while wal.last_lsn() < 6 {
        std::thread::yield_now(); // until the append is enqueued (its fsync takes 100 ms)
    }
    wal.truncate_after(5).unwrap();
    let got = appender.join().unwrap();
    assert!(
        matches!(got, Err(wal::Error::Truncated { lsn: 6, after: 5 })),
        "{got:?}"
    );
    sim.set_sync_delay(None);
    let next = wal.append(b"after").unwrap();
    assert!(next > 6, "LSNs are not reused");
    assert_eq!(wal.durable_lsn(), next);
    let records: Vec<_> = wal.iter_from(0).unwrap().map(|r| r.unwrap().0).collect();
    assert_eq!(records, vec![1, 2, 3, 4, 5, next]);
}

/// `verify` and `read_only_iter` beside a running writer that rotates and truncates: a
/// rotation or truncation between their reading the directory and the segment chain is
/// retried, never reported as a missing or unlisted segment.
#[test]
fn read_only_checks_beside_a_rotating_and_truncating_writer_never_report_damage() {
    let sim = SimFs::new();
    let fs = sim.durable();
    let opts = Options::default()
        .with_fs(fs.clone())
        .with_max_segment_bytes(4096)
        .with_preallocate_bytes(0)
        .with_sync(SyncPolicy::Never);
    let wal = Arc::new(Wal::open(DIR, opts).unwrap());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (wal, done) = (Arc::clone(&wal), Arc::clone(&done));
        std::thread::spawn(move || {
            for i in 0..3000u64 {
                let lsn = wal.append(&[i as u8; 200]).unwrap();
                if i % 97 == 0 {
                    wal.truncate_before(lsn.saturating_sub(40)).unwrap();
                }
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        })
    };
    let mut checks = 0;
    while !done.load(std::sync::atomic::Ordering::Acquire) || checks < 20 {
        let dir = std::path::Path::new(DIR);
        if let Err(e) = wal::verify(&fs, dir, 1 << 20) {
            panic!("verify beside a writer: {e}");
        }
        let it = wal::read_only_iter(&fs, dir, 0, 1 << 20).unwrap();
        let mut last = 0;
        for r in it {
            match r {
                Ok((lsn, _)) => {
                    assert!(lsn > last, "in order");
                    last = lsn;
                }
                // A segment removed by truncate_before while iterating: the iterator stops
                // with the error (it read a snapshot of the list); nothing else is allowed.
                Err(wal::Error::Fs(e)) if e.io_kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => panic!("read_only_iter beside a writer: {e}"),
            }
        }
        checks += 1;
    }
    writer.join().unwrap();
    assert!(checks >= 20);
}
