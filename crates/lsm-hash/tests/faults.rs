//! Faults, damage and leftovers. Proves: an fsync error poisons the store and nothing after it
//! is acknowledged; a second writer gets `Locked`; oversized keys get `TooLarge`; a flipped bit
//! in a frozen segment is refused at open with file and offset; a damaged index snapshot falls
//! back to a scan; segment files the manifest does not name are removed at open; a damaged
//! manifest is an error, not an empty store.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::path::Path;

use durable_fs::sim::{CrashMode, Fault, FaultError, OpKind, SimFs};
use lsm_hash::{CorruptionKind, Error, LsmHash, Options, index_name, segment_name};

fn opts(sim: &SimFs) -> Options {
    Options::default()
        .with_fs(sim.durable())
        .with_max_file_bytes(4096)
        .with_compaction_min_segments(0)
}

fn fill(db: &LsmHash, n: u32) {
    for i in 0..n {
        db.put(format!("key{i:03}").as_bytes(), &[i as u8; 100])
            .unwrap();
    }
}

#[test]
fn fsync_error_poisons_and_nothing_after_it_is_acknowledged() {
    let sim = SimFs::new();
    let db = LsmHash::open("/db", opts(&sim)).unwrap();
    fill(&db, 50);
    sim.inject(Fault::once(
        OpKind::Sync,
        sim.ops_of(OpKind::Sync) + 1,
        FaultError::Eio,
    ));
    assert!(matches!(db.put(b"doomed", b"x"), Err(Error::Poisoned(_))));
    assert!(matches!(db.put(b"later", b"x"), Err(Error::Poisoned(_))));
    drop(db);
    let after = sim.crash(CrashMode::Strict, 0);
    let db = LsmHash::open("/db", opts(&after)).unwrap();
    for i in 0..50u32 {
        assert_eq!(
            db.get(format!("key{i:03}").as_bytes()).unwrap(),
            Some(vec![i as u8; 100])
        );
    }
    assert_eq!(db.get(b"later").unwrap(), None);
}

#[test]
fn locked_and_too_large() {
    let sim = SimFs::new();
    let db = LsmHash::open("/db", opts(&sim)).unwrap();
    assert!(matches!(
        LsmHash::open("/db", opts(&sim)),
        Err(Error::Locked { .. })
    ));
    let big = vec![0u8; 70 << 10];
    assert!(matches!(
        db.put(&big, b"v"),
        Err(Error::TooLarge { what: "key", .. })
    ));
    db.put(b"k", b"").unwrap();
    assert_eq!(db.get(b"k").unwrap(), Some(Vec::new()));
}

#[test]
fn damaged_frozen_segment_is_refused_and_damaged_snapshot_is_rescanned() {
    let sim = SimFs::new();
    let db = LsmHash::open("/db", opts(&sim)).unwrap();
    fill(&db, 100);
    let segs = db.segments();
    assert!(segs.len() >= 3, "{segs:?}");
    db.close().unwrap();
    let first = Path::new("/db").join(segment_name(segs[0].id));
    // A damaged snapshot: open scans the segment instead and finds the same data.
    let img = sim.crash_image(CrashMode::Strict, 0);
    img.flip_bit(&Path::new("/db").join(index_name(segs[0].id)), 50, 3)
        .unwrap();
    let db = LsmHash::open("/db", opts(&img)).unwrap();
    assert!(
        db.recovery_report().scanned >= 2,
        "{:?}",
        db.recovery_report()
    );
    assert_eq!(db.get(b"key000").unwrap(), Some(vec![0u8; 100]));
    drop(db);
    // A damaged record in a frozen segment (snapshot removed so it must be scanned).
    let img = sim.crash_image(CrashMode::Strict, 0);
    img.durable()
        .remove_file(&Path::new("/db").join(index_name(segs[0].id)))
        .unwrap();
    img.flip_bit(&first, 32 + 24 + 6 + 10, 0).unwrap();
    match LsmHash::open("/db", opts(&img)) {
        Err(Error::Corruption { path, offset, kind }) => {
            assert_eq!((path, offset), (first, 32));
            assert!(matches!(kind, CorruptionKind::ChecksumMismatch { .. }));
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn files_outside_the_manifest_are_removed_and_a_damaged_manifest_is_an_error() {
    let sim = SimFs::new();
    let db = LsmHash::open("/db", opts(&sim)).unwrap();
    fill(&db, 10);
    db.close().unwrap();
    let fs = sim.durable();
    fs.create_new(&Path::new("/db").join(segment_name(999)))
        .unwrap();
    let db = LsmHash::open("/db", opts(&sim)).unwrap();
    assert_eq!(db.recovery_report().removed_files, vec![segment_name(999)]);
    assert_eq!(db.get(b"key009").unwrap(), Some(vec![9u8; 100]));
    db.close().unwrap();
    sim.flip_bit(&Path::new("/db").join("MANIFEST"), 5, 1)
        .unwrap();
    assert!(matches!(
        LsmHash::open("/db", opts(&sim)),
        Err(Error::Corruption { .. })
    ));
}

#[test]
fn compaction_keeps_live_keys_and_drops_dead_ones() {
    let sim = SimFs::new();
    let db = LsmHash::open("/db", opts(&sim)).unwrap();
    for _ in 0..5 {
        fill(&db, 30);
    }
    for i in 0..10u32 {
        db.delete(format!("key{i:03}").as_bytes()).unwrap();
    }
    let before: u64 = db.segments().iter().map(|s| s.bytes).sum();
    let r = db.compact().unwrap();
    assert!(r.inputs.len() >= 3);
    let after: u64 = db.segments().iter().map(|s| s.bytes).sum();
    assert!(after < before / 2, "{before} -> {after}");
    for i in 0..30u32 {
        let want = (i >= 10).then(|| vec![i as u8; 100]);
        assert_eq!(db.get(format!("key{i:03}").as_bytes()).unwrap(), want);
    }
    drop(db);
    let after = sim.crash(CrashMode::Strict, 0);
    let db = LsmHash::open("/db", opts(&after)).unwrap();
    assert_eq!(db.iter().count(), 20);
}

#[test]
fn segments_with_records_but_no_manifest_are_refused_not_deleted() {
    let sim = SimFs::new();
    let db = LsmHash::open("/db", opts(&sim)).unwrap();
    fill(&db, 10);
    db.close().unwrap();
    sim.durable()
        .remove_file(Path::new("/db/MANIFEST"))
        .unwrap();
    match LsmHash::open("/db", opts(&sim)) {
        Err(Error::Corruption {
            kind: CorruptionKind::BadManifest,
            ..
        }) => {}
        other => panic!("expected BadManifest, got {other:?}"),
    }
    assert!(
        sim.durable()
            .list(Path::new("/db"))
            .unwrap()
            .iter()
            .any(|n| n.ends_with(".seg")),
        "nothing deleted"
    );
}

#[test]
fn compaction_output_is_cut_at_the_segment_size() {
    let sim = SimFs::new();
    let db = LsmHash::open("/db", opts(&sim)).unwrap();
    fill(&db, 200); // ~27 KiB of live data, 4 KiB segments
    let r = db.compact().unwrap();
    assert!(r.outputs.len() >= 6, "{r:?}");
    for s in db.segments() {
        assert!(s.bytes <= 4096, "{s:?}");
    }
    for i in 0..200u32 {
        assert_eq!(
            db.get(format!("key{i:03}").as_bytes()).unwrap(),
            Some(vec![i as u8; 100])
        );
    }
    drop(db);
    let after = sim.crash(CrashMode::Strict, 0);
    let db = LsmHash::open("/db", opts(&after)).unwrap();
    assert_eq!(db.iter().count(), 200);
}

#[test]
fn open_syncs_what_recovery_read_before_calling_it_durable() {
    // After a process crash the active segment's tail is in the page cache only; open reads
    // it, so it must fsync it before treating it as durable.
    let sim = SimFs::new();
    let db = LsmHash::open("/db", opts(&sim).with_sync(lsm_hash::SyncPolicy::Never)).unwrap();
    db.put(b"k", b"unsynced").unwrap();
    std::mem::forget(db); // the process dies: no close, no sync
    sim.release_locks();
    let rec = durable_fs::RecordingFs::new(std::sync::Arc::new(sim.clone()));
    let fs = durable_fs::DurableFs::new(std::sync::Arc::new(rec.clone()));
    let db = LsmHash::open("/db", opts(&sim).with_fs(fs)).unwrap();
    let active = Path::new("/db").join(segment_name(1));
    assert!(
        rec.events().contains(&durable_fs::Event::SyncData(active)),
        "{:?}",
        rec.events()
    );
    drop(db);
    let after = sim.crash(CrashMode::Strict, 0);
    let db = LsmHash::open("/db", opts(&after)).unwrap();
    assert_eq!(db.get(b"k").unwrap(), Some(b"unsynced".to_vec()));
}

/// A segment the manifest names but the directory lost (first, middle or last) is
/// `MissingFile` naming it, for read-write and read-only opens alike, and nothing is
/// removed or created on the way.
#[test]
fn a_missing_segment_is_corruption_naming_it() {
    let sim = SimFs::new();
    let db = LsmHash::open("/db", opts(&sim)).unwrap();
    fill(&db, 120);
    db.close().unwrap();
    let fs = sim.durable();
    let mut segs: Vec<String> = fs
        .list(Path::new("/db"))
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".seg"))
        .collect();
    segs.sort();
    assert!(segs.len() >= 3, "{segs:?}");
    for victim in [&segs[0], &segs[1], &segs[segs.len() - 1]] {
        let img = sim.crash_image(CrashMode::Strict, 0);
        let path = Path::new("/db").join(victim);
        img.durable().remove_file(&path).unwrap();
        let before = img.durable().list(Path::new("/db")).unwrap();
        for read_only in [false, true] {
            match LsmHash::open("/db", opts(&img).with_read_only(read_only)) {
                Err(Error::Corruption {
                    path: named, kind, ..
                }) => {
                    assert_eq!((&named, kind), (&path, CorruptionKind::MissingFile));
                }
                other => panic!("{victim}: {other:?}"),
            }
        }
        assert_eq!(img.durable().list(Path::new("/db")).unwrap(), before);
    }
}
