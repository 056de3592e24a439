//! The keydir image (`KEYDIR`). Proves: close writes it and the next open (read-write or
//! read-only) loads the keydir from it; files written since are applied on top; an image
//! whose files changed (a merge), that is damaged, or that a crafted header makes unsound
//! (older records in the files written since, a key twice) is never used and the open falls
//! back to hints with every value right; `verify` checks it against the scans.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::collections::BTreeMap;
use std::path::Path;

use bitcask::{Bitcask, CorruptionKind, Error, Options};
use durable_fs::sim::SimFs;

const IMAGE: &str = "/db/KEYDIR";

fn opts(sim: &SimFs) -> Options {
    Options::default()
        .with_fs(sim.durable())
        .with_max_file_bytes(4096)
        .with_preallocate_bytes(0)
        .with_image_min_keys(10)
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Puts `n` keys from `from` (overwriting some), deletes a few, into `model` too.
fn write(db: &Bitcask, model: &mut Model, from: u32, n: u32) {
    for i in from..from + n {
        let key = format!("key{:03}", i % 70).into_bytes();
        let value = format!("value-{i}").repeat(3).into_bytes();
        db.put(&key, &value).unwrap();
        model.insert(key, value);
        if i % 11 == 3 {
            let gone = format!("key{:03}", (i / 2) % 70).into_bytes();
            db.delete(&gone).unwrap();
            model.remove(&gone);
        }
    }
}

fn check(db: &Bitcask, model: &Model) {
    assert_eq!(db.len().unwrap(), model.len());
    for (k, v) in model {
        assert_eq!(
            db.get(k).unwrap().as_ref(),
            Some(v),
            "{}",
            String::from_utf8_lossy(k)
        );
    }
}

fn exists(sim: &SimFs, path: &str) -> bool {
    sim.durable().exists(Path::new(path)).unwrap()
}

#[test]
fn close_writes_it_and_opens_load_it() {
    let sim = SimFs::new();
    let mut model = Model::new();
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    write(&db, &mut model, 0, 200);
    db.close().unwrap();
    assert!(exists(&sim, IMAGE));

    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    assert!(db.recovery_report().from_image);
    assert_eq!(db.recovery_report().scanned, 0);
    check(&db, &model);
    drop(db);
    let ro = Bitcask::open("/db", opts(&sim).with_read_only(true)).unwrap();
    assert!(ro.recovery_report().from_image);
    check(&ro, &model);
    drop(ro);
    let r = Bitcask::verify("/db", opts(&sim)).unwrap();
    assert!(r.image_checked && r.stale_image.is_none(), "{r:?}");
}

#[test]
fn files_written_since_the_image_are_applied_on_top() {
    let sim = SimFs::new();
    let fs = sim.durable();
    let mut model = Model::new();
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    write(&db, &mut model, 0, 200);
    db.close().unwrap();
    let old_image = fs.read(Path::new(IMAGE)).unwrap();
    // More overwrites and deletes in new files; then the older image is put back, as if the
    // second session had crashed before its close.
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    write(&db, &mut model, 200, 150);
    db.close().unwrap();
    fs.atomic_replace(Path::new(IMAGE), &old_image).unwrap();

    let r = Bitcask::verify("/db", opts(&sim)).unwrap();
    assert!(r.image_checked, "it covers a prefix of the files: {r:?}");
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    let r = db.recovery_report();
    assert!(r.from_image && r.files > 0 && r.from_hints > 0, "{r:?}");
    check(&db, &model);
}

#[test]
fn an_image_whose_files_were_merged_away_is_stale_unused_and_removed() {
    let sim = SimFs::new();
    let fs = sim.durable();
    let mut model = Model::new();
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    write(&db, &mut model, 0, 200);
    db.close().unwrap();
    let old_image = fs.read(Path::new(IMAGE)).unwrap();
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    write(&db, &mut model, 200, 50);
    db.compact().unwrap();
    db.close().unwrap();
    fs.atomic_replace(Path::new(IMAGE), &old_image).unwrap();

    let r = Bitcask::verify("/db", opts(&sim)).unwrap();
    assert_eq!(r.stale_image.as_deref(), Some(Path::new(IMAGE)));
    assert!(!r.image_checked);
    let ro = Bitcask::open("/db", opts(&sim).with_read_only(true)).unwrap();
    assert!(!ro.recovery_report().from_image);
    check(&ro, &model);
    drop(ro);
    assert!(exists(&sim, IMAGE), "a read-only open removes nothing");
    let db = Bitcask::open("/db", opts(&sim).with_image_min_keys(u64::MAX)).unwrap();
    assert!(!db.recovery_report().from_image);
    check(&db, &model);
    drop(db);
    assert!(
        !exists(&sim, IMAGE),
        "a read-write open removes a stale image"
    );
}

#[test]
fn a_damaged_image_is_not_used_and_verify_names_it() {
    let sim = SimFs::new();
    let mut model = Model::new();
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    write(&db, &mut model, 0, 200);
    db.close().unwrap();
    let len = sim.durable().read(Path::new(IMAGE)).unwrap().len() as u64;
    for offset in [0, 12, 45, len / 2, len - 1] {
        let img = sim.crash_image(durable_fs::sim::CrashMode::Strict, 0);
        img.flip_bit(Path::new(IMAGE), offset, 3).unwrap();
        match Bitcask::verify("/db", opts(&img)) {
            Err(Error::Corruption { path, kind, .. }) => {
                assert_eq!(path, Path::new(IMAGE), "offset {offset}");
                assert_eq!(kind, CorruptionKind::BadHint);
            }
            other => panic!("offset {offset}: verify said {other:?}"),
        }
        let db = Bitcask::open("/db", opts(&img).with_read_only(true)).unwrap();
        assert!(!db.recovery_report().from_image, "offset {offset}");
        check(&db, &model);
    }
}

/// Rewrites the image header's max seq (bytes 32..40) and its checksum (after the file
/// table, which starts at 48), as a crafted file would.
fn set_max_seq(image: &mut [u8], max_seq: u64) {
    image[32..40].copy_from_slice(&max_seq.to_le_bytes());
    let files = u32::from_le_bytes(image[12..16].try_into().unwrap()) as usize;
    let end = 48 + files * 40;
    let crc = crc32fast::hash(&image[..end]);
    image[end..end + 4].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn files_written_since_with_records_not_newer_than_the_image_make_it_unused() {
    let sim = SimFs::new();
    let fs = sim.durable();
    let mut model = Model::new();
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    write(&db, &mut model, 0, 200);
    db.close().unwrap();
    let mut old_image = fs.read(Path::new(IMAGE)).unwrap();
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    write(&db, &mut model, 200, 150);
    db.close().unwrap();
    // The old image claims to have seen every seq: the new files' records are not newer, so
    // the image cannot be ordered against them (it keeps no tombstones).
    set_max_seq(&mut old_image, u64::MAX);
    fs.atomic_replace(Path::new(IMAGE), &old_image).unwrap();
    let db = Bitcask::open("/db", opts(&sim).with_read_only(true)).unwrap();
    assert!(!db.recovery_report().from_image);
    check(&db, &model);
}

#[test]
fn a_key_twice_or_an_entry_outside_the_covered_files_makes_it_unused() {
    let sim = SimFs::new();
    let fs = sim.durable();
    let mut model = Model::new();
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    write(&db, &mut model, 0, 200);
    db.close().unwrap();
    let image = fs.read(Path::new(IMAGE)).unwrap();
    let files = u32::from_le_bytes(image[12..16].try_into().unwrap()) as usize;
    let entries = 48 + files * 40 + 4;
    let first_key_len = u32::from_le_bytes(image[entries + 20..entries + 24].try_into().unwrap());
    let first = entries..entries + 24 + first_key_len as usize;
    let second_key_len =
        u32::from_le_bytes(image[first.end + 20..first.end + 24].try_into().unwrap());
    assert_eq!(first_key_len, second_key_len, "keys of one length");
    let refix = |mut b: Vec<u8>| {
        let end = b.len() - 4;
        let crc = crc32fast::hash(&b[entries..end]);
        b[end..].copy_from_slice(&crc.to_le_bytes());
        b
    };
    // The second entry's key replaced by the first's: one key twice.
    let mut twice = image.clone();
    let key = image[first.start + 24..first.end].to_vec();
    twice[first.end + 24..first.end + 24 + key.len()].copy_from_slice(&key);
    // The first entry naming a file id no covered file has.
    let mut outside = image.clone();
    outside[entries + 8..entries + 12].copy_from_slice(&9999u32.to_le_bytes());
    // The first entry's record running past its file's covered length.
    let mut past = image.clone();
    past[entries + 12..entries + 16].copy_from_slice(&(u32::MAX - 8).to_le_bytes());
    for (what, bytes) in [("twice", twice), ("outside", outside), ("past", past)] {
        fs.atomic_replace(Path::new(IMAGE), &refix(bytes)).unwrap();
        let db = Bitcask::open("/db", opts(&sim).with_read_only(true)).unwrap();
        assert!(!db.recovery_report().from_image, "{what}");
        check(&db, &model);
        drop(db);
        assert!(
            matches!(
                Bitcask::verify("/db", opts(&sim)),
                Err(Error::Corruption {
                    kind: CorruptionKind::BadHint,
                    ..
                })
            ),
            "{what}"
        );
    }
}

#[test]
fn below_the_threshold_close_writes_none() {
    let sim = SimFs::new();
    let mut model = Model::new();
    let db = Bitcask::open("/db", opts(&sim).with_image_min_keys(1000)).unwrap();
    write(&db, &mut model, 0, 200);
    db.close().unwrap();
    assert!(!exists(&sim, IMAGE));
}

/// A salvage (`SkipCorrupt`) leaves damaged records out of the keydir; an image of that keydir
/// would let later opens skip the scan that refuses them (and serve an older value instead).
/// Negative control: without the guard in `write_image`, the last open succeeds from the image.
#[test]
fn a_salvaged_keydir_is_never_imaged() {
    let sim = SimFs::new();
    let fs = sim.durable();
    let mut model = Model::new();
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    write(&db, &mut model, 0, 200);
    db.close().unwrap();
    fs.remove_file(Path::new(IMAGE)).unwrap();
    // Bit rot in a record of an older data file whose hint is gone.
    let mut data: Vec<String> = fs
        .list(Path::new("/db"))
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".data"))
        .collect();
    data.sort();
    let victim = Path::new("/db").join(&data[1]);
    fs.remove_file(&victim.with_extension("hint")).unwrap();
    let img = sim.crash_image(durable_fs::sim::CrashMode::Strict, 0);
    img.flip_bit(&victim, 40, 2).unwrap();
    let refused = |img: &SimFs| {
        matches!(
            Bitcask::open("/db", opts(img)),
            Err(Error::Corruption { ref path, .. }) if path == &victim
        )
    };
    assert!(refused(&img), "the damage is refused");
    let db = Bitcask::open(
        "/db",
        opts(&img).with_recovery(bitcask::RecoveryMode::SkipCorrupt),
    )
    .unwrap();
    assert!(!db.recovery_report().skipped.is_empty());
    db.close().unwrap();
    assert!(
        !img.durable().exists(Path::new(IMAGE)).unwrap(),
        "no image of a salvage"
    );
    assert!(refused(&img), "still refused after the salvage's close");
}

/// A crafted image whose counts claim a billion keys (its length to match, sparse) is not
/// used, and nothing is allocated for it: the covered files could not hold that many.
#[test]
fn an_image_claiming_more_keys_than_its_files_hold_is_not_used() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = durable_fs::DurableFs::real();
    let o = || {
        Options::default()
            .with_max_file_bytes(4096)
            .with_preallocate_bytes(0)
            .with_image_min_keys(10)
    };
    let mut model = Model::new();
    let db = Bitcask::open(tmp.path(), o()).unwrap();
    write(&db, &mut model, 0, 200);
    db.close().unwrap();
    let path = tmp.path().join("KEYDIR");
    let mut image = fs.read(&path).unwrap();
    let files = u32::from_le_bytes(image[12..16].try_into().unwrap()) as usize;
    let keys: u64 = 1 << 30;
    image[16..24].copy_from_slice(&keys.to_le_bytes());
    let end = 48 + files * 40;
    let crc = crc32fast::hash(&image[..end]);
    image[end..end + 4].copy_from_slice(&crc.to_le_bytes());
    let key_bytes = u64::from_le_bytes(image[24..32].try_into().unwrap());
    let len = end as u64 + 4 + keys * 24 + key_bytes + 4;
    fs.atomic_replace_with(&path, |f| {
        f.write_all_at(&image[..end + 4], 0)?;
        f.set_len(len)
    })
    .unwrap();
    let db = Bitcask::open(tmp.path(), o().with_read_only(true)).unwrap();
    assert!(!db.recovery_report().from_image);
    check(&db, &model);
}
