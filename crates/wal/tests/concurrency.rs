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
