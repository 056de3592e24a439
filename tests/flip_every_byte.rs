//! Proves: bit rot in synced data is never taken for a torn write. Small stores of each
//! engine are written with `SyncPolicy::Never` and closed cleanly (so everything in them is
//! durable and acknowledged), then one bit of one byte is flipped, for every byte of every
//! file in turn, and the store is reopened with default options. Each flip must either
//! refuse (at open, or at the read of the damaged record) with `Corruption` naming the
//! flipped file, or open and return every acknowledged value exactly. A key that reads as
//! absent, or a wrong value, fails the test: that is the silent loss of the old "torn tail"
//! rule, which cut everything after a flipped byte in the newest file.
//!
//! Negative control: with `Appender::seal` writing no seal (or the WAL's close writing no
//! seal record), these tests fail on the first flip in the last file's records.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use durable_fs::Access;
use durable_fs::sim::{CrashMode, SimFs};
use kv_core::{Error, KvStore, SyncPolicy};

type Open = dyn Fn(&SimFs) -> Result<Box<dyn KvStore>, Error>;

fn files(sim: &SimFs) -> Vec<(PathBuf, u64)> {
    let fs = sim.durable();
    let mut out = Vec::new();
    for name in fs.list(Path::new("/db")).unwrap() {
        let path = Path::new("/db").join(&name);
        if name == "LOCK" || fs.list(&path).is_ok() {
            continue;
        }
        let len = fs.open(&path, Access::Read).unwrap().len().unwrap();
        out.push((path, len));
    }
    out
}

/// Writes `model` (with overwrites and deletes) into a fresh store and closes it.
fn build(open: &Open) -> (SimFs, BTreeMap<Vec<u8>, Vec<u8>>) {
    let sim = SimFs::new();
    let db = open(&sim).unwrap();
    let mut model = BTreeMap::new();
    for i in 0..60u32 {
        let key = format!("k{:02}", i % 30).into_bytes();
        let value = format!("value-{i}-{}", "x".repeat(200 + i as usize % 7)).into_bytes();
        let mut b = kv_core::WriteBatch::new();
        b.put(&key, &value);
        db.write(b).unwrap();
        model.insert(key, value);
        if i % 9 == 4 {
            let gone = format!("k{:02}", i / 2).into_bytes();
            db.delete(&gone).unwrap();
            model.remove(&gone);
        }
    }
    db.close().unwrap();
    (sim, model)
}

/// Flips one bit of every byte of every file of the built store, one flip per reopen, and
/// checks the rule above. Returns (flips, refused at open, refused at a read).
fn flip_every_byte(open: &Open, without: &[&str]) -> (u64, u64, u64) {
    let (base, model) = build(open);
    for (path, _) in files(&base) {
        if without
            .iter()
            .any(|ext| path.to_string_lossy().ends_with(ext))
        {
            base.durable().remove_file(&path).unwrap();
        }
    }
    let (mut flips, mut at_open, mut at_read) = (0, 0, 0);
    for (path, len) in files(&base) {
        for offset in 0..len {
            let img = base.crash_image(CrashMode::Strict, 0);
            img.flip_bit(&path, offset, (offset % 8) as u8).unwrap();
            flips += 1;
            let what = || format!("bit {} of byte {offset} of {}", offset % 8, path.display());
            let db = match open(&img) {
                Ok(db) => db,
                Err(Error::Corruption { path: named, .. }) => {
                    assert_eq!(named, path, "{}: refused naming another file", what());
                    at_open += 1;
                    continue;
                }
                Err(e) => panic!("{}: open failed without naming damage: {e}", what()),
            };
            let mut refused = false;
            for (k, v) in &model {
                match db.get(k) {
                    Ok(Some(got)) => assert_eq!(&got, v, "{}: wrong value", what()),
                    Ok(None) => panic!(
                        "{}: acknowledged key {} lost silently",
                        what(),
                        String::from_utf8_lossy(k)
                    ),
                    Err(Error::Corruption { path: named, .. }) => {
                        let stem = |p: &Path| p.with_extension("");
                        assert_eq!(stem(&named), stem(&path), "{}: named another file", what());
                        refused = true;
                    }
                    Err(e) => panic!("{}: get failed without naming damage: {e}", what()),
                }
            }
            at_read += u64::from(refused);
        }
    }
    (flips, at_open, at_read)
}

fn bitcask(sim: &SimFs) -> Result<Box<dyn KvStore>, Error> {
    let opts = bitcask::Options::default()
        .with_fs(sim.durable())
        .with_sync(SyncPolicy::Never)
        .with_max_file_bytes(4096)
        .with_preallocate_bytes(0)
        .with_auto_merge(None);
    Ok(Box::new(bitcask::Bitcask::open("/db", opts)?))
}

/// Bitcask with a keydir image written at close (whatever the key count).
fn bitcask_image(sim: &SimFs) -> Result<Box<dyn KvStore>, Error> {
    let opts = bitcask::Options::default()
        .with_fs(sim.durable())
        .with_sync(SyncPolicy::Never)
        .with_max_file_bytes(4096)
        .with_preallocate_bytes(0)
        .with_image_min_keys(0)
        .with_auto_merge(None);
    Ok(Box::new(bitcask::Bitcask::open("/db", opts)?))
}

fn lsm_hash(sim: &SimFs) -> Result<Box<dyn KvStore>, Error> {
    let opts = lsm_hash::Options::default()
        .with_fs(sim.durable())
        .with_sync(SyncPolicy::Never)
        .with_max_file_bytes(4096)
        .with_preallocate_bytes(0)
        .with_compaction_min_segments(1000);
    Ok(Box::new(lsm_hash::LsmHash::open("/db", opts)?))
}

#[test]
fn bitcask_every_flipped_byte_is_refused_or_harmless() {
    let (flips, at_open, at_read) = flip_every_byte(&bitcask, &[]);
    eprintln!("bitcask: {flips} flips, {at_open} refused at open, {at_read} at a read");
    assert!(flips > 1000 && at_read > 0);
}

/// The keydir image is bound to the files and checksummed: a flip in it falls back to the
/// hints, a flip in a data file it covers is refused at the read of that record (or at open,
/// in a header, where the binding fails and the scan refuses it).
#[test]
fn bitcask_with_a_keydir_image_every_flipped_byte_is_refused_or_harmless() {
    let (base, _) = build(&bitcask_image);
    assert!(
        files(&base).iter().any(|(p, _)| p.ends_with("KEYDIR")),
        "close wrote the image"
    );
    let (flips, at_open, at_read) = flip_every_byte(&bitcask_image, &[]);
    eprintln!("bitcask with image: {flips} flips, {at_open} refused at open, {at_read} at a read");
    assert!(flips > 1000 && at_read > 0);
}

/// Hints are best effort (a crash between a rotation and its hint leaves none): without
/// them every data file is scanned, the newest one under the torn-tail rule.
#[test]
fn bitcask_without_hints_every_flipped_byte_is_refused_or_harmless() {
    let (flips, at_open, _) = flip_every_byte(&bitcask, &[".hint"]);
    eprintln!("bitcask without hints: {flips} flips, {at_open} refused at open");
    assert!(flips > 1000 && at_open > flips / 2);
}

#[test]
fn lsm_hash_every_flipped_byte_is_refused_or_harmless() {
    let (flips, at_open, at_read) = flip_every_byte(&lsm_hash, &[]);
    eprintln!("lsm-hash: {flips} flips, {at_open} refused at open, {at_read} at a read");
    assert!(flips > 1000 && at_open > 0);
}

#[test]
fn lsm_hash_without_index_snapshots_every_flipped_byte_is_refused_or_harmless() {
    let (flips, at_open, _) = flip_every_byte(&lsm_hash, &[".idx"]);
    eprintln!("lsm-hash without snapshots: {flips} flips, {at_open} refused at open");
    assert!(flips > 1000 && at_open > flips / 2);
}

/// The WAL: 60 records over several segments under `SyncPolicy::Never`, closed. Each flip is
/// refused naming the segment, or the log reads back every record exactly and hands out no
/// used LSN again.
#[test]
fn wal_every_flipped_byte_is_refused_or_harmless() {
    let wal_opts = |sim: &SimFs| {
        wal::Options::default()
            .with_fs(sim.durable())
            .with_max_segment_bytes(4096)
            .with_preallocate_bytes(0)
            .with_sync(wal::SyncPolicy::Never)
    };
    let base = SimFs::new();
    let log = wal::Wal::open("/db", wal_opts(&base)).unwrap();
    let mut recs = Vec::new();
    for i in 0..60u64 {
        let p = vec![b'a' + (i % 26) as u8; 90 + (i as usize * 37) % 100];
        recs.push((log.append(&p).unwrap(), p));
    }
    log.close().unwrap();
    let (mut flips, mut refused) = (0u64, 0u64);
    for (path, len) in files(&base) {
        for offset in 0..len {
            let img = base.crash_image(CrashMode::Strict, 0);
            img.flip_bit(&path, offset, (offset % 8) as u8).unwrap();
            flips += 1;
            let what = format!("bit {} of byte {offset} of {}", offset % 8, path.display());
            match wal::Wal::open("/db", wal_opts(&img)) {
                Err(wal::Error::Corruption { path: named, .. }) => {
                    assert_eq!(named, path, "{what}: named another file");
                    refused += 1;
                }
                Err(e) => panic!("{what}: open failed without naming damage: {e}"),
                Ok(log) => {
                    let got: Vec<_> = log.iter_from(0).unwrap().map(Result::unwrap).collect();
                    assert_eq!(got, recs, "{what}: the log changed silently");
                    let next = log.append(b"next").unwrap();
                    assert!(next > recs.len() as u64, "{what}: LSN {next} reused");
                }
            }
        }
    }
    eprintln!("wal: {flips} flips, {refused} refused at open");
    assert!(flips > 4000 && refused > flips / 2);
}

/// After a crash, the records of the last fsync carry no proof of durability, so bit rot
/// in them would look like a torn write. The first open after the crash syncs what it
/// recovered and seals it: from then on, a flipped bit in those records is refused.
/// (Negative control, lsm-hash and the WAL: without the seal at open, these flips are cut as
/// torn tails and the keys read back absent. Bitcask passes either way: its open starts a
/// new file, which makes the old one immutable, where damage is always corruption.)
#[test]
fn the_open_after_a_crash_seals_what_it_recovered() {
    type OpenDyn = fn(&SimFs) -> Result<Box<dyn KvStore>, Error>;
    for (name, open, ext) in [
        ("bitcask", bitcask as OpenDyn, ".data"),
        ("lsm-hash", lsm_hash as OpenDyn, ".seg"),
    ] {
        let sim = SimFs::new();
        let db = open(&sim).unwrap();
        for i in 0..20u32 {
            let mut b = kv_core::WriteBatch::new();
            b.put(format!("k{i}").as_bytes(), &[i as u8; 50]);
            db.write(b).unwrap();
        }
        db.sync().unwrap();
        let crashed = sim.crash_image(CrashMode::Strict, 0);
        drop(db);
        let reopened = open(&crashed).unwrap();
        let after = crashed.crash_image(CrashMode::Strict, 0);
        drop(reopened);
        let newest = files(&after)
            .into_iter()
            .filter(|(p, len)| p.to_string_lossy().ends_with(ext) && *len > 200)
            .map(|(p, _)| p)
            .max()
            .unwrap();
        after.flip_bit(&newest, 32 + 40, 1).unwrap();
        // Refused at open (a scan), or at the read of the damaged record (bitcask wrote a
        // hint with the seal, so its open need not scan): never a key read as absent.
        match open(&after).map(|db| db.get(b"k0")) {
            Err(Error::Corruption { path, .. }) | Ok(Err(Error::Corruption { path, .. })) => {
                assert_eq!(path, newest, "{name}");
            }
            Ok(got) => panic!("{name}: opened, k0 = {got:?} (the flip was cut as a torn tail)"),
            Err(e) => panic!("{name}: {e}"),
        }
    }
    // The WAL.
    let sim = SimFs::new();
    let o = |s: &SimFs| {
        wal::Options::default()
            .with_fs(s.durable())
            .with_preallocate_bytes(0)
            .with_sync(wal::SyncPolicy::Never)
    };
    let log = wal::Wal::open("/db", o(&sim)).unwrap();
    for i in 0..20u8 {
        log.append(&[i; 50]).unwrap();
    }
    log.sync().unwrap();
    let crashed = sim.crash_image(CrashMode::Strict, 0);
    drop(log);
    let reopened = wal::Wal::open("/db", o(&crashed)).unwrap();
    let after = crashed.crash_image(CrashMode::Strict, 0);
    drop(reopened);
    let seg = files(&after)
        .into_iter()
        .find(|(p, _)| p.to_string_lossy().ends_with(".wal"))
        .unwrap()
        .0;
    after.flip_bit(&seg, 32 + 40, 1).unwrap();
    assert!(matches!(
        wal::Wal::open("/db", o(&after)),
        Err(wal::Error::Corruption { .. })
    ));
}
