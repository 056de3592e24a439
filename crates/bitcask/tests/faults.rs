//! Faults and limits. Proves: an fsync error poisons the store and nothing after it is
//! acknowledged; ENOSPC is an error and a reopen finds everything acknowledged before it;
//! a second writer gets `Locked`; oversized keys and values get `TooLarge` and do not poison;
//! read-only opens refuse writes; the handle cache stays bounded with many files.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::collections::HashMap;

use bitcask::{Bitcask, Error, Options};
use durable_fs::sim::{CrashMode, Fault, FaultError, OpKind, SimFs};

fn opts(sim: &SimFs) -> Options {
    Options::default()
        .with_fs(sim.durable())
        .with_max_file_bytes(4096)
}

fn reopened(sim: &SimFs) -> HashMap<Vec<u8>, Vec<u8>> {
    let after = sim.crash(CrashMode::Strict, 0);
    let db = Bitcask::open("/db", opts(&after)).unwrap();
    db.iter().collect::<Result<_, _>>().unwrap()
}

#[test]
fn fsync_error_poisons_and_nothing_after_it_is_acknowledged() {
    let sim = SimFs::new();
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    let mut acked = HashMap::new();
    for i in 0..30u32 {
        let (k, v) = (format!("k{i}").into_bytes(), vec![i as u8; 50]);
        db.put(&k, &v).unwrap();
        acked.insert(k, v);
    }
    sim.inject(Fault::once(
        OpKind::Sync,
        sim.ops_of(OpKind::Sync) + 1,
        FaultError::Eio,
    ));
    assert!(matches!(db.put(b"doomed", b"x"), Err(Error::Poisoned(_))));
    assert!(
        matches!(db.put(b"later", b"x"), Err(Error::Poisoned(_))),
        "no retry"
    );
    assert!(matches!(db.sync(), Err(Error::Poisoned(_))));
    drop(db);
    let got = reopened(&sim);
    for (k, v) in &acked {
        assert_eq!(got.get(k), Some(v));
    }
    assert!(!got.contains_key(&b"later"[..]));
}

#[test]
fn enospc_is_an_error_and_acknowledged_writes_survive() {
    let sim = SimFs::new();
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    for i in 0..30u32 {
        db.put(format!("k{i}").as_bytes(), &[1u8; 64]).unwrap();
    }
    sim.inject(Fault::from_nth(
        OpKind::Write,
        sim.ops_of(OpKind::Write) + 1,
        FaultError::Enospc,
    ));
    let err = db.put(b"k-full", &[2u8; 64]).unwrap_err();
    assert!(
        matches!(&err, Error::Poisoned(e) if matches!(&**e, Error::Fs(f) if f.io_kind() == std::io::ErrorKind::StorageFull)),
        "{err:?}"
    );
    drop(db);
    sim.clear_faults();
    let got = reopened(&sim);
    assert_eq!(got.len(), 30);
}

#[test]
fn second_writer_is_locked_and_read_only_refuses_writes() {
    let sim = SimFs::new();
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    db.put(b"a", b"1").unwrap();
    assert!(matches!(
        Bitcask::open("/db", opts(&sim)),
        Err(Error::Locked { .. })
    ));
    let ro = Bitcask::open("/db", opts(&sim).with_read_only(true)).unwrap();
    assert_eq!(ro.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert!(matches!(ro.put(b"b", b"2"), Err(Error::ReadOnly)));
    assert!(matches!(ro.compact(), Err(Error::ReadOnly)));
}

#[test]
fn oversized_keys_and_values_are_refused_without_poisoning() {
    let sim = SimFs::new();
    let db = Bitcask::open(
        "/db",
        opts(&sim).with_max_key_bytes(8).with_max_value_bytes(16),
    )
    .unwrap();
    assert!(matches!(
        db.put(&[0; 9], b"v"),
        Err(Error::TooLarge {
            what: "key",
            len: 9,
            max: 8
        })
    ));
    assert!(matches!(
        db.put(b"k", &[0; 17]),
        Err(Error::TooLarge { what: "value", .. })
    ));
    db.put(b"k", &[0; 16]).unwrap();
    db.put(b"e", b"").unwrap();
    assert_eq!(
        db.get(b"e").unwrap(),
        Some(Vec::new()),
        "an empty value is a value"
    );
    assert!(db.delete(b"e").unwrap());
    assert!(
        !db.delete(b"e").unwrap(),
        "deleting a missing key reports it"
    );
}

#[test]
fn handle_cache_stays_bounded_across_many_files() {
    let sim = SimFs::new();
    let db = Bitcask::open("/db", opts(&sim).with_max_open_files(3)).unwrap();
    for i in 0..400u32 {
        db.put(format!("k{i}").as_bytes(), &[7u8; 200]).unwrap();
    }
    assert!(db.stats().files > 20, "{:?}", db.stats());
    for i in 0..400u32 {
        assert_eq!(
            db.get(format!("k{i}").as_bytes()).unwrap().unwrap().len(),
            200
        );
        assert!(db.stats().open_handles <= 3);
    }
}

#[test]
fn merge_reclaims_dead_bytes_and_keeps_every_live_key() {
    let sim = SimFs::new();
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    for round in 0..5u8 {
        for i in 0..50u32 {
            db.put(format!("k{i}").as_bytes(), &[round; 100]).unwrap();
        }
    }
    for i in 0..10u32 {
        db.delete(format!("k{i}").as_bytes()).unwrap();
    }
    let before = db.stats();
    assert!(before.fragmentation() > 0.7, "{before:?}");
    let r = db.compact().unwrap();
    assert_eq!(r.records, 40);
    let after = db.stats();
    assert!(
        after.total_bytes < before.total_bytes / 3,
        "{before:?} -> {after:?}"
    );
    assert_eq!(after.keys, 40);
    for i in 10..50u32 {
        assert_eq!(
            db.get(format!("k{i}").as_bytes()).unwrap(),
            Some(vec![4u8; 100])
        );
    }
    drop(db);
    let got = reopened(&sim);
    assert_eq!(got.len(), 40);
    assert!(
        !got.contains_key(&b"k3"[..]),
        "deleted keys stay deleted after merge and reopen"
    );
}

#[test]
fn automatic_merge_runs_when_fragmentation_crosses_the_trigger() {
    let sim = SimFs::new();
    let triggers = bitcask::MergeTriggers::default()
        .with_fragmentation(0.5)
        .with_dead_bytes(u64::MAX)
        .with_check_interval(std::time::Duration::from_millis(5));
    let db = Bitcask::open("/db", opts(&sim).with_auto_merge(Some(triggers))).unwrap();
    for round in 0..4u8 {
        for i in 0..40u32 {
            db.put(format!("k{i}").as_bytes(), &[round; 100]).unwrap();
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while db.stats().fragmentation() > 0.5 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let s = db.stats();
    assert!(s.fragmentation() <= 0.5, "the background merge ran: {s:?}");
    for i in 0..40u32 {
        assert_eq!(
            db.get(format!("k{i}").as_bytes()).unwrap(),
            Some(vec![3u8; 100])
        );
    }
}

#[test]
fn open_syncs_what_recovery_read_before_calling_it_durable() {
    // After a process crash (not a power cut) the newest file's tail is in the page cache
    // only; open reads it, so it must fsync it before treating it as durable.
    let sim = SimFs::new();
    // No preallocation: no zero tail to trim, so only the sync under test can appear.
    let o = || {
        opts(&sim)
            .with_sync(bitcask::SyncPolicy::Never)
            .with_preallocate_bytes(0)
    };
    let db = Bitcask::open("/db", o()).unwrap();
    db.put(b"k", b"unsynced").unwrap();
    std::mem::forget(db); // the process dies: no close, no sync
    sim.release_locks();
    let rec = durable_fs::RecordingFs::new(std::sync::Arc::new(sim.clone()));
    let fs = durable_fs::DurableFs::new(std::sync::Arc::new(rec.clone()));
    let db = Bitcask::open("/db", o().with_fs(fs)).unwrap();
    let newest = std::path::Path::new("/db").join("0000000001.data");
    assert!(
        rec.events().contains(&durable_fs::Event::SyncData(newest)),
        "{:?}",
        rec.events()
    );
    drop(db);
    let after = sim.crash(CrashMode::Strict, 0);
    let db = Bitcask::open("/db", opts(&after)).unwrap();
    assert_eq!(db.get(b"k").unwrap(), Some(b"unsynced".to_vec()));
}
