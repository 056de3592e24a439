//! Proves: nothing is destroyed on the way. When a read-write open cuts a torn tail from the
//! newest file, the cut bytes (not the preallocated zeros) are first kept, durably, in
//! `quarantine/<file>.<offset>.<crc32>` and reported in `RecoveryReport::quarantined`; every
//! acknowledged record is still there; a read-only open reports the tail but keeps nothing
//! and cuts nothing. The same for lsm-hash and the WAL is in their crates' tests.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::path::Path;

use bitcask::{Bitcask, Options};
use durable_fs::Access;
use durable_fs::sim::{CrashMode, SimFs};

#[test]
fn a_cut_torn_tail_is_kept_in_lost_and_found_first() {
    let sim = SimFs::new();
    let fs = sim.durable();
    let opts = || Options::default().with_fs(sim.durable());
    let db = Bitcask::open("/db", opts()).unwrap();
    for i in 0..20u32 {
        db.put(format!("k{i}").as_bytes(), &[i as u8; 50]).unwrap();
    }
    // Left open (no seal): the newest file keeps its preallocated zeros; garbage right after
    // the records, inside that space, is what a torn write leaves.
    std::mem::forget(db);
    let newest = fs
        .list(Path::new("/db"))
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".data"))
        .max()
        .unwrap();
    let path = Path::new("/db").join(&newest);
    let f = fs.open(&path, Access::ReadWrite).unwrap();
    // Keys k0..k9 are 2 bytes, k10..k19 are 3.
    let records_end = 32 + 10 * (32 + 2 + 50) + 10 * (32 + 3 + 50);
    let garbage = [0xC3u8; 13];
    f.write_all_at(&garbage, records_end as u64).unwrap();
    f.sync_data().unwrap();
    let image = sim.crash(CrashMode::Strict, 0);

    let ro = Bitcask::open("/db", opts_of(&image).with_read_only(true)).unwrap();
    assert!(ro.recovery_report().truncated_tail.is_some());
    assert!(ro.recovery_report().quarantined.is_empty());
    drop(ro);
    assert!(!image.durable().exists(Path::new("/db/quarantine")).unwrap());

    let db = Bitcask::open("/db", opts_of(&image)).unwrap();
    let report = db.recovery_report().clone();
    let crc = crc32fast::hash(&garbage);
    let kept = Path::new("/db/quarantine").join(format!("{newest}.{records_end}.{crc:08x}"));
    assert_eq!(report.quarantined, vec![kept.clone()]);
    assert_eq!(image.durable().read(&kept).unwrap(), garbage.to_vec());
    for i in 0..20u32 {
        assert_eq!(
            db.get(format!("k{i}").as_bytes()).unwrap(),
            Some(vec![i as u8; 50])
        );
    }
    db.close().unwrap();
    // It survives a power cut right after the open.
    let after = image.crash(CrashMode::Strict, 0).durable();
    assert_eq!(after.read(&kept).unwrap(), garbage.to_vec());
}

fn opts_of(sim: &SimFs) -> Options {
    Options::default().with_fs(sim.durable())
}
