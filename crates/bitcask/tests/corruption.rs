//! Damaged files. Proves: a flipped bit in an immutable data file is refused at open with the
//! file and the record's offset, or salvaged (and reported) when asked; a damaged or foreign
//! hint file falls back to a CRC-checked scan with the right data; a torn tail of the newest
//! file is cut and reported; a record damaged after open is a `Corruption` error on `get`,
//! never a wrong value; random bytes never make open panic.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::path::{Path, PathBuf};

use bitcask::{Bitcask, CorruptionKind, Error, Options, RecoveryMode};
use durable_fs::Access;
use durable_fs::sim::{CrashMode, SimFs};
use kv_core::format::{FILE_HEADER_LEN, RECORD_HEADER_LEN};
use proptest::prelude::*;

/// Without preallocation, so that a file's length is the end of its records.
fn opts(sim: &SimFs) -> Options {
    Options::default()
        .with_fs(sim.durable())
        .with_max_file_bytes(4096)
        .with_preallocate_bytes(0)
}

/// 60 keys of 100-byte values over several files, closed cleanly (hints written).
fn build() -> SimFs {
    let sim = SimFs::new();
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    for i in 0..60u32 {
        db.put(format!("key{i:02}").as_bytes(), &[i as u8; 100])
            .unwrap();
    }
    db.close().unwrap();
    sim
}

fn files(sim: &SimFs, suffix: &str) -> Vec<PathBuf> {
    let fs = sim.durable();
    fs.list(Path::new("/db"))
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(suffix))
        .map(|n| Path::new("/db").join(n))
        .collect()
}

fn check_all(db: &Bitcask) {
    for i in 0..60u32 {
        assert_eq!(
            db.get(format!("key{i:02}").as_bytes()).unwrap(),
            Some(vec![i as u8; 100])
        );
    }
}

const REC: u64 = (RECORD_HEADER_LEN + 5 + 100) as u64;

#[test]
fn flipped_bit_in_an_immutable_file_names_file_and_offset() {
    let sim = build();
    for h in files(&sim, ".hint") {
        sim.durable().remove_file(&h).unwrap(); // force scans
    }
    let data = files(&sim, ".data");
    let victim = &data[1];
    let third = FILE_HEADER_LEN as u64 + 2 * REC;
    sim.flip_bit(victim, third + 30, 5).unwrap();
    match Bitcask::open("/db", opts(&sim)) {
        Err(Error::Corruption { path, offset, kind }) => {
            assert_eq!((&path, offset), (victim, third));
            assert!(
                matches!(kind, CorruptionKind::ChecksumMismatch { .. }),
                "{kind:?}"
            );
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    // Salvage: every other record is kept, the damage is reported.
    let db = Bitcask::open("/db", opts(&sim).with_recovery(RecoveryMode::SkipCorrupt)).unwrap();
    let skipped = &db.recovery_report().skipped;
    assert_eq!(skipped.len(), 1);
    assert_eq!((&skipped[0].path, skipped[0].offset), (victim, third));
    assert_eq!(db.len().unwrap(), 59);
}

#[test]
fn damaged_or_missing_hints_fall_back_to_a_scan() {
    let sim = build();
    let clean = Bitcask::open("/db", opts(&sim).with_read_only(true)).unwrap();
    let hinted = clean.recovery_report().from_hints;
    assert!(hinted >= 2, "{:?}", clean.recovery_report());
    drop(clean);
    let hints = files(&sim, ".hint");
    sim.flip_bit(&hints[0], 40, 1).unwrap();
    let db = Bitcask::open("/db", opts(&sim).with_read_only(true)).unwrap();
    assert_eq!(db.recovery_report().from_hints, hinted - 1);
    assert!(db.recovery_report().scanned >= 1);
    check_all(&db);
}

#[test]
fn torn_tail_of_the_newest_file_is_cut_and_reported() {
    let sim = SimFs::new();
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    for i in 0..20u32 {
        db.put(format!("key{i:02}").as_bytes(), &[i as u8; 100])
            .unwrap();
    }
    let newest = files(&sim, ".data").pop().unwrap();
    let len = sim
        .durable()
        .open(&newest, Access::Read)
        .unwrap()
        .len()
        .unwrap();
    std::mem::forget(db); // power cut: no close
    let after = sim.crash(CrashMode::Strict, 0);
    let f = after.durable().open(&newest, Access::ReadWrite).unwrap();
    f.set_len(len - 7).unwrap();
    f.sync_data().unwrap();
    let db = Bitcask::open("/db", opts(&after)).unwrap();
    let t = db.recovery_report().truncated_tail.clone().unwrap();
    assert_eq!((t.path, t.offset), (newest, len - REC));
    assert_eq!(db.len().unwrap(), 19, "only the torn record is gone");
}

#[test]
fn preallocated_zeros_are_free_space_and_garbage_in_them_is_a_torn_tail() {
    let sim = SimFs::new();
    let o = || {
        opts(&sim)
            .with_max_file_bytes(1 << 20)
            .with_preallocate_bytes(1 << 16)
    };
    let db = Bitcask::open("/db", o()).unwrap();
    for i in 0..20u32 {
        db.put(format!("key{i:02}").as_bytes(), &[i as u8; 100])
            .unwrap();
    }
    let newest = files(&sim, ".data").pop().unwrap();
    let fs = sim.durable();
    assert!(
        fs.open(&newest, Access::Read).unwrap().len().unwrap() >= 1 << 16,
        "preallocated"
    );
    std::mem::forget(db); // power cut: no close
    let end = FILE_HEADER_LEN as u64 + 20 * REC;
    // Zeros after the records: a clean end, not damage.
    let img = sim.crash_image(CrashMode::Strict, 0);
    let db = Bitcask::open("/db", o().with_fs(img.durable())).unwrap();
    assert_eq!(db.recovery_report().truncated_tail, None);
    assert_eq!(db.len().unwrap(), 20);
    drop(db);
    assert_eq!(
        img.durable()
            .open(&newest, Access::Read)
            .unwrap()
            .len()
            .unwrap(),
        end + RECORD_HEADER_LEN as u64,
        "trimmed and sealed: immutable files end at their records and the seal the open wrote"
    );
    // Garbage where the next record would go: a torn tail, cut and reported.
    let img = sim.crash_image(CrashMode::Strict, 0);
    img.flip_bit(&newest, end + 3, 1).unwrap();
    let db = Bitcask::open("/db", o().with_fs(img.durable())).unwrap();
    let t = db.recovery_report().truncated_tail.clone().unwrap();
    assert_eq!((t.path, t.offset), (newest, end));
    assert_eq!(db.len().unwrap(), 20);
}

#[test]
fn damage_after_open_is_an_error_on_get_not_a_wrong_value() {
    let sim = build();
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    let data = files(&sim, ".data");
    sim.flip_bit(
        &data[0],
        FILE_HEADER_LEN as u64 + RECORD_HEADER_LEN as u64 + 5 + 10,
        0,
    )
    .unwrap();
    let err = db.get(b"key00").unwrap_err();
    assert!(
        matches!(&err, Error::Corruption { path, offset, .. } if *path == data[0] && *offset == FILE_HEADER_LEN as u64),
        "{err:?}"
    );
    assert_eq!(db.get(b"key01").unwrap(), Some(vec![1u8; 100]));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn open_never_panics_on_damaged_files(
        flips in proptest::collection::vec((0usize..4, 0u64..4096, 0u8..8), 1..6),
        cut in proptest::option::of((0usize..4, 0u64..4096)),
    ) {
        let sim = build();
        let mut all = files(&sim, ".data");
        all.extend(files(&sim, ".hint"));
        let fs = sim.durable();
        for (f, at, bit) in flips {
            let path = &all[f % all.len()];
            let len = fs.open(path, Access::Read).unwrap().len().unwrap();
            if len > 0 {
                sim.flip_bit(path, at % len, bit).unwrap();
            }
        }
        if let Some((f, at)) = cut {
            let file = fs.open(&all[f % all.len()], Access::ReadWrite).unwrap();
            file.set_len(at).unwrap();
        }
        for mode in [RecoveryMode::TolerateTornTail, RecoveryMode::Strict, RecoveryMode::SkipCorrupt] {
            let img = sim.crash_image(CrashMode::Strict, 0);
            if let Ok(db) = Bitcask::open("/db", opts(&img).with_recovery(mode)) {
                // Whatever is returned was written: a value never changes silently.
                for (k, v) in db.iter().flatten() {
                    let i: u32 = std::str::from_utf8(&k[3..]).unwrap().parse().unwrap();
                    prop_assert_eq!(v, vec![i as u8; 100]);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn decoders_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300), salt: u32, newest: bool, salvage: bool, v1: bool, len: u64) {
        use kv_core::format::{decode_hint, decode_record, plausible_record, FileHeader, VERSION, VERSION_1};
        use kv_core::scan::scan_records;
        let magic = *b"\x89BCH\r\n\x1a\n";
        let version = if v1 { VERSION_1 } else { VERSION };
        let _ = decode_record(&bytes, salt, version);
        let _ = plausible_record(&bytes, salt, version);
        let _ = decode_hint(&bytes, &magic, salt, 1, len);
        let _ = FileHeader::decode(&bytes, &magic);
        let mode = if salvage { RecoveryMode::SkipCorrupt } else { RecoveryMode::TolerateTornTail };
        let _ = scan_records(&bytes, salt, version, newest, mode);
        let _ = kv_core::format::decode_header(&bytes, salt, version);
        // The text markers (MERGE, MANIFEST, FILES): total, and never more ids than bytes.
        for (title, tags) in [
            ("bitcask-merge 1", &["inputs", "outputs"][..]),
            ("bitcask-files 1", &["data"][..]),
            ("lsm-hash-manifest 1", &["segments"][..]),
        ] {
            if let Some(lists) = kv_core::marker::decode(&bytes, title, tags) {
                let ids: usize = lists.iter().map(Vec::len).sum();
                prop_assert!(ids <= bytes.len());
            }
        }
    }
}

/// A data file whose header never became durable (its creation was cut, or its header's
/// fsync failed and the store stopped) holds no record. Found below newer files (a reopen
/// made them), it is removed and reported, not refused as corruption.
#[test]
fn a_headerless_data_file_below_newer_ones_is_removed_and_reported() {
    let sim = durable_fs::sim::SimFs::new();
    let fs = sim.durable();
    let opts = bitcask::Options::default().with_fs(fs.clone());
    let db = bitcask::Bitcask::open("/db", opts.clone()).unwrap();
    db.put(b"k", b"v").unwrap();
    db.close().unwrap();
    let empty = std::path::Path::new("/db").join("0000000000.data");
    fs.create_new(&empty).unwrap();
    let db = bitcask::Bitcask::open("/db", opts).unwrap();
    assert_eq!(db.recovery_report().removed_torn_files, vec![empty.clone()]);
    assert_eq!(db.get(b"k").unwrap(), Some(b"v".to_vec()));
    assert!(!fs.exists(&empty).unwrap());
}

/// A hint that points a key at another record (intact, valid, but not the key's): the read
/// names the file and offset and says what it found (`KeyMismatch` with both seqs), instead of
/// inventing a checksum mismatch of zeros.
#[test]
fn an_index_pointing_at_another_record_is_a_key_mismatch_with_both_seqs() {
    use kv_core::format::{FileHeader, decode_hint, encode_hint};
    let sim = build();
    let fs = sim.durable();
    let hint = files(&sim, ".hint").into_iter().next().unwrap();
    let data = hint.with_extension("data");
    let bytes = fs.read(&hint).unwrap();
    let magic = *b"\x89BCH\r\n\x1a\n";
    let header = FileHeader::decode(&bytes, &magic).unwrap();
    let len = fs
        .open(&data, durable_fs::Access::Read)
        .unwrap()
        .len()
        .unwrap();
    let mut entries = decode_hint(&bytes, &magic, header.salt, header.file_id, len).unwrap();
    // The first entry's key now points at the second entry's record.
    let (first_seq, second) = (entries[0].seq, entries[1].clone());
    entries[0].offset = second.offset;
    fs.atomic_replace(&hint, &encode_hint(header, &magic, &entries, len))
        .unwrap();
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    match db.get(&entries[0].key) {
        Err(Error::Corruption { path, offset, kind }) => {
            assert_eq!((path, offset), (data, second.offset));
            assert_eq!(
                kind,
                CorruptionKind::KeyMismatch {
                    expected_seq: first_seq,
                    found_seq: second.seq
                }
            );
        }
        other => panic!("expected a key mismatch, got {other:?}"),
    }
}

/// `RecoveryMode::Strict` refuses even a torn tail, which the default mode cuts; neither
/// loses a record in the strict case (nothing is cut).
#[test]
fn strict_recovery_refuses_a_torn_tail_that_the_default_cuts() {
    let sim = SimFs::new();
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    db.put(b"a", b"1").unwrap();
    db.close().unwrap();
    let newest = files(&sim, ".data").into_iter().max().unwrap();
    let f = sim.durable().open(&newest, Access::ReadWrite).unwrap();
    let len = f.len().unwrap();
    f.write_all_at(&[0x55; 9], len).unwrap();
    f.sync_data().unwrap();
    let strict = opts(&sim).with_recovery(RecoveryMode::Strict);
    match Bitcask::open("/db", strict) {
        Err(Error::Corruption { path, offset, .. }) => assert_eq!((path, offset), (newest, len)),
        other => panic!("expected corruption, got {other:?}"),
    }
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    assert!(db.recovery_report().truncated_tail.is_some());
    assert_eq!(db.get(b"a").unwrap(), Some(b"1".to_vec()));
}

/// A stray hint name past the keydir's ids (`touch 9999999999.hint`) neither blocks the store
/// nor advances the next file id: an acknowledged put survives the reopen (it used to go to
/// `10000000000.data`, a name the next open ignored). A data file named past 32 bits is
/// refused with a typed error naming it, never aliased to another file's keydir id.
#[test]
fn stray_names_neither_lose_writes_nor_alias() {
    let sim = build();
    let fs = sim.durable();
    fs.atomic_replace(Path::new("/db/9999999999.hint"), b"")
        .unwrap();
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    db.put(b"b", b"2").unwrap();
    db.close().unwrap();
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    assert_eq!(db.get(b"b").unwrap(), Some(b"2".to_vec()));
    check_all(&db);
    db.close().unwrap();
    assert!(!fs.exists(Path::new("/db/10000000000.data")).unwrap());

    // A stray empty data file named past 32 bits: the files list does not name it, so it is
    // removed and reported (it can hold no record), and never becomes the next id.
    let huge = Path::new("/db/9999999999.data");
    fs.atomic_replace(huge, b"").unwrap();
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    assert_eq!(
        db.recovery_report().removed_torn_files,
        vec![huge.to_path_buf()]
    );
    db.put(b"c", b"3").unwrap();
    db.close().unwrap();
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    assert_eq!(db.get(b"c").unwrap(), Some(b"3".to_vec()));
    db.close().unwrap();
    // Listed (a list naming it, say restored from elsewhere), the same name is refused,
    // naming it: an id past 32 bits would alias another file's in the keydir.
    let list = Path::new("/db/FILES");
    let mut ids = kv_core::marker::decode(&fs.read(list).unwrap(), "bitcask-files 1", &["data"])
        .unwrap()
        .remove(0);
    ids.push(9_999_999_999);
    let bytes = kv_core::marker::encode("bitcask-files 1", &[("data", &ids)]);
    fs.atomic_replace(list, &bytes).unwrap();
    fs.atomic_replace(huge, b"").unwrap();
    match Bitcask::open("/db", opts(&sim)) {
        Err(Error::Corruption { path, kind, .. }) => {
            assert_eq!(path, huge);
            assert!(
                matches!(
                    kind,
                    CorruptionKind::OutOfRange {
                        what: "file id",
                        ..
                    }
                ),
                "{kind:?}"
            );
        }
        other => panic!("expected OutOfRange, got {other:?}"),
    }
}

/// A read-write open removes the store's own temporaries (a hint's, the marker's); a
/// directory that also holds a user's files (`draft.tmp`, `notes.data.tmp`) is not only a
/// store: every open refuses it, naming the file, and changes nothing.
#[test]
fn open_removes_only_the_stores_own_temporaries() {
    let sim = build();
    let fs = sim.durable();
    for name in [
        "draft.tmp",
        "0000000003.hint.tmp",
        "MERGE.tmp",
        "notes.data.tmp",
    ] {
        fs.atomic_replace(&Path::new("/db").join(name), b"x")
            .unwrap();
    }
    let mut before = fs.list(Path::new("/db")).unwrap();
    before.sort();
    for read_only in [false, true] {
        match Bitcask::open("/db", opts(&sim).with_read_only(read_only)) {
            Err(Error::Store(durable_fs::StoreError::ForeignFile { path, .. })) => {
                let name = path.file_name().unwrap().to_str().unwrap().to_owned();
                assert!(name == "draft.tmp" || name == "notes.data.tmp", "{name}");
            }
            other => panic!("expected ForeignFile, got {:?}", other.map(|_| ())),
        }
        let mut after = fs.list(Path::new("/db")).unwrap();
        after.sort();
        assert_eq!(after, before, "a refused open changed the directory");
    }
    for name in ["draft.tmp", "notes.data.tmp"] {
        fs.remove_file(&Path::new("/db").join(name)).unwrap();
    }
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    check_all(&db);
    db.close().unwrap();
    let names = fs.list(Path::new("/db")).unwrap();
    assert!(
        !names.contains(&"0000000003.hint.tmp".to_owned()),
        "{names:?}"
    );
    assert!(!names.contains(&"MERGE.tmp".to_owned()), "{names:?}");
}

/// Under `RecoveryMode::Strict` a headerless data file is an error, not removed; a read-only
/// store refuses `delete` like every write (also of a missing key, as lsm-hash does).
#[test]
fn strict_keeps_a_headerless_file_and_read_only_refuses_delete() {
    let sim = SimFs::new();
    let fs = sim.durable();
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    db.put(b"k", b"v").unwrap();
    db.close().unwrap();
    let empty = Path::new("/db").join("0000000000.data");
    fs.create_new(&empty).unwrap();
    let strict = opts(&sim).with_recovery(RecoveryMode::Strict);
    assert!(matches!(
        Bitcask::open("/db", strict),
        Err(Error::Corruption { .. })
    ));
    assert!(fs.exists(&empty).unwrap(), "Strict removed a file");
    let ro = Bitcask::open("/db", opts(&sim).with_read_only(true)).unwrap();
    assert!(matches!(ro.delete(b"missing"), Err(Error::ReadOnly)));
    assert!(matches!(ro.delete(b"k"), Err(Error::ReadOnly)));
    assert!(
        fs.exists(&empty).unwrap(),
        "a read-only open removed a file"
    );
}

/// Every data file accounted for: the store lists its data files (`FILES`), so a lost data
/// file (the oldest, one in the middle, or the newest) is `MissingFile` naming it, a lost
/// list is `BadManifest` naming it, and an unlisted data file holding records is
/// `UnlistedFile`; nothing is removed or created on the way.
#[test]
fn a_missing_data_file_or_files_list_is_corruption_naming_it() {
    let sim = build();
    let data = files(&sim, ".data");
    assert!(data.len() >= 3, "{data:?}");
    for victim in [&data[0], &data[data.len() / 2], &data[data.len() - 1]] {
        let img = sim.crash_image(CrashMode::Strict, 0);
        img.durable().remove_file(victim).unwrap();
        let before = img.durable().list(Path::new("/db")).unwrap();
        for read_only in [false, true] {
            match Bitcask::open("/db", opts(&img).with_read_only(read_only)) {
                Err(Error::Corruption { path, kind, .. }) => {
                    assert_eq!((&path, kind), (victim, CorruptionKind::MissingFile));
                }
                other => panic!("{}: {other:?}", victim.display()),
            }
        }
        assert_eq!(img.durable().list(Path::new("/db")).unwrap(), before);
    }
    let img = sim.crash_image(CrashMode::Strict, 0);
    let list = Path::new("/db/FILES");
    img.durable().remove_file(list).unwrap();
    match Bitcask::open("/db", opts(&img)) {
        Err(Error::Corruption { path, kind, .. }) => {
            assert_eq!((path.as_path(), kind), (list, CorruptionKind::BadManifest));
        }
        other => panic!("{other:?}"),
    }
    let img = sim.crash_image(CrashMode::Strict, 0);
    let stray = Path::new("/db/0000000099.data");
    let bytes = img.durable().read(&data[0]).unwrap();
    img.durable().atomic_replace(stray, &bytes).unwrap();
    assert!(matches!(
        Bitcask::open("/db", opts(&img)),
        Err(Error::Corruption {
            kind: CorruptionKind::UnlistedFile,
            ..
        })
    ));
}
