//! Proves: stores written by earlier releases of the code still open and read back exactly.
//!
//! `tests/fixtures/<engine>-v<format>/` holds one store per engine and on-disk format version,
//! written once by the code of that version (format 1: commit c09ad54, before the kv-core
//! split) with [`write_golden_fixtures`] and committed. Each test copies a fixture into a
//! temporary directory (opening a store may repair or extend it), opens it with today's code,
//! and compares every record with the model the generator followed. A change to a codec, a
//! magic, a header field or a file name that breaks stores already on users' disks fails here.
//!
//! The fixtures cover: several sealed files or segments; hint files and index snapshots
//! (and, for bitcask, one data file whose hint was removed, so it is scanned); merge and
//! compaction outputs (bitcask's merged header kind); tombstones that hide older values;
//! batches; empty values; a WAL with a truncated prefix and several segments.
//!
//! Regenerate (only when a new format version is introduced, into a new directory):
//! `cargo test --release --test golden -- --ignored write_golden_fixtures`.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use durable_fs::DurableFs;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;
/// `(key, Some(value))` puts and `(key, None)` deletes, applied atomically.
type Batch = Vec<(Vec<u8>, Option<Vec<u8>>)>;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Copies a fixture directory (flat) into a fresh temporary directory.
fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let fs = DurableFs::real();
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join(name);
    fs.create_dir_all(&dst).unwrap();
    let src = fixture(name);
    let mut names = fs.list(&src).unwrap();
    names.sort();
    assert!(!names.is_empty(), "fixture {name} is missing");
    for n in names {
        let bytes = fs.read(&src.join(&n)).unwrap();
        fs.atomic_replace(&dst.join(&n), &bytes).unwrap();
    }
    (tmp, dst)
}

/// The key-value workload both engines' fixtures were written with, as a sequence of
/// batches (`None`: delete) with a compaction after batch 120; returns the final model.
fn kv_batches() -> Vec<Batch> {
    let mut out = Vec::new();
    for i in 0u32..240 {
        let key = |j: u32| format!("key{:03}", j % 47).into_bytes();
        let mut batch = Vec::new();
        if i % 9 == 4 {
            batch.push((key(i * 7), None));
        } else {
            let len = (i * 37 % 150) as usize;
            let value: Vec<u8> = (0..len)
                .map(|n| b'a' + ((i as usize + n) % 26) as u8)
                .collect();
            batch.push((key(i), Some(value)));
        }
        if i % 10 == 3 {
            batch.push((key(i + 1), Some(format!("batch-{i}").into_bytes())));
            batch.push((format!("empty{}", i % 4).into_bytes(), Some(Vec::new())));
        }
        out.push(batch);
    }
    out
}

fn kv_model() -> Model {
    let mut m = Model::new();
    for batch in kv_batches() {
        for (k, v) in batch {
            match v {
                Some(v) => m.insert(k, v),
                None => m.remove(&k),
            };
        }
    }
    m
}

fn wal_records() -> Vec<Vec<u8>> {
    (0u32..300)
        .map(|i| {
            let mut p = format!("record {i} ").into_bytes();
            p.extend(std::iter::repeat_n(b'x', (i * 13 % 90) as usize));
            p
        })
        .collect()
}

/// The fixture was written with `truncate_before(WAL_TRUNCATE_BEFORE)`, which removes whole
/// segments only: the first segment (LSNs 1..=51) went, the one holding 52..=99 stayed.
const WAL_TRUNCATE_BEFORE: u64 = 60;
const WAL_FIRST_KEPT: u64 = 52;

#[test]
#[ignore = "writes the fixtures; run by hand only when a format version is added"]
fn write_golden_fixtures() {
    let fs = DurableFs::real();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");

    // bitcask, format 1.
    let dir = root.join("bitcask-v1");
    assert!(!fs.exists(&dir).unwrap(), "{} exists", dir.display());
    let opts = bitcask::Options::default()
        .with_max_file_bytes(4096)
        .with_preallocate_bytes(0);
    let db = bitcask::Bitcask::open(&dir, opts.clone()).unwrap();
    for (i, batch) in kv_batches().into_iter().enumerate() {
        let mut b = bitcask::WriteBatch::new();
        for (k, v) in &batch {
            match v {
                Some(v) => b.put(k, v),
                None => b.delete(k),
            }
        }
        db.write(b).unwrap();
        if i == 120 {
            db.compact().unwrap();
        }
    }
    db.close().unwrap();
    // One sealed file is described by no hint: the next open scans it.
    let mut hints: Vec<String> = fs
        .list(&dir)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".hint"))
        .collect();
    hints.sort();
    fs.remove_file(&dir.join(&hints[hints.len() / 2])).unwrap();
    fs.remove_file(&dir.join("LOCK")).unwrap();

    // lsm-hash, format 1.
    let dir = root.join("lsm-hash-v1");
    assert!(!fs.exists(&dir).unwrap(), "{} exists", dir.display());
    let opts = lsm_hash::Options::default()
        .with_max_file_bytes(4096)
        .with_compaction_min_segments(0)
        .with_preallocate_bytes(0);
    let db = lsm_hash::LsmHash::open(&dir, opts).unwrap();
    for (i, batch) in kv_batches().into_iter().enumerate() {
        db.write(batch.into_iter().collect()).unwrap();
        if i == 120 {
            db.compact().unwrap();
        }
    }
    db.close().unwrap();
    fs.remove_file(&dir.join("LOCK")).unwrap();

    // wal, format 1.
    let dir = root.join("wal-v1");
    assert!(!fs.exists(&dir).unwrap(), "{} exists", dir.display());
    let opts = wal::Options::default()
        .with_max_segment_bytes(4096)
        .with_preallocate_bytes(0);
    let log = wal::Wal::open(&dir, opts).unwrap();
    for p in wal_records() {
        log.append(&p).unwrap();
    }
    log.truncate_before(WAL_TRUNCATE_BEFORE).unwrap();
    log.close().unwrap();
    fs.remove_file(&dir.join("LOCK")).unwrap();
}

#[test]
fn bitcask_v1_store_opens_and_reads_back() {
    let (_tmp, dir) = copy_fixture("bitcask-v1");
    let want = kv_model();
    for read_only in [true, false] {
        let opts = bitcask::Options::default().with_read_only(read_only);
        let db = bitcask::Bitcask::open(&dir, opts).unwrap();
        let got: Model = db.iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(got, want, "read_only {read_only}");
        db.close().unwrap();
    }
    // Still writable, and the write survives a reopen.
    let db = bitcask::Bitcask::open(&dir, bitcask::Options::default()).unwrap();
    db.put(b"new", b"value").unwrap();
    db.compact().unwrap();
    db.close().unwrap();
    let db = bitcask::Bitcask::open(&dir, bitcask::Options::default()).unwrap();
    let mut want = want;
    want.insert(b"new".to_vec(), b"value".to_vec());
    let got: Model = db.iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(got, want);
}

#[test]
fn lsm_hash_v1_store_opens_and_reads_back() {
    let (_tmp, dir) = copy_fixture("lsm-hash-v1");
    let want = kv_model();
    let ro = lsm_hash::Options::default().with_read_only(true);
    let db = lsm_hash::LsmHash::open(&dir, ro).unwrap();
    let got: Model = db.iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(got, want, "read-only");
    db.close().unwrap();
    let db = lsm_hash::LsmHash::open(&dir, lsm_hash::Options::default()).unwrap();
    let got: Model = db.iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(got, want);
    db.put(b"new", b"value").unwrap();
    db.compact().unwrap();
    db.close().unwrap();
    let db = lsm_hash::LsmHash::open(&dir, lsm_hash::Options::default()).unwrap();
    let mut want = want;
    want.insert(b"new".to_vec(), b"value".to_vec());
    let got: Model = db.iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(got, want);
}

#[test]
fn wal_v1_log_opens_and_reads_back() {
    let (_tmp, dir) = copy_fixture("wal-v1");
    let records = wal_records();
    let want: Vec<(u64, Vec<u8>)> = (WAL_FIRST_KEPT..=records.len() as u64)
        .map(|lsn| (lsn, records[(lsn - 1) as usize].clone()))
        .collect();
    let got: Vec<(u64, Vec<u8>)> = wal::read_only_iter(&DurableFs::real(), &dir, 0, u32::MAX)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, want);
    let log = wal::Wal::open(&dir, wal::Options::default()).unwrap();
    assert_eq!(log.first_lsn(), Some(WAL_FIRST_KEPT));
    let got: Vec<(u64, Vec<u8>)> = log.iter_from(0).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(got, want);
    assert_eq!(log.append(b"next").unwrap(), records.len() as u64 + 1);
    log.close().unwrap();
}

/// A format-1 log whose last segment is empty (checkpointed to its end, or never written):
/// the first read-write open swaps that segment for an empty format-2 one of the same name
/// (it records the high-water mark), so new records are never written into a format-1
/// segment; every old record and the new ones read back after a reopen, in order.
#[test]
fn wal_v1_log_with_an_empty_last_segment_takes_new_records_in_format_2() {
    let (_tmp, dir) = copy_fixture("wal-v1");
    let records = wal_records();
    let next = records.len() as u64 + 1;
    let fs = DurableFs::real();
    let empty = wal::format::SegmentHeader {
        version: wal::format::VERSION_1,
        salt: 99,
        first_lsn: next,
    };
    let path = dir.join(wal::format::segment_name(next));
    fs.atomic_replace(&path, &empty.encode()).unwrap();
    let log = wal::Wal::open(&dir, wal::Options::default()).unwrap();
    assert_eq!(log.append(b"new one").unwrap(), next);
    assert_eq!(log.append(b"new two").unwrap(), next + 1);
    log.close().unwrap();
    let header = wal::format::SegmentHeader::decode(&fs.read(&path).unwrap()).unwrap();
    assert_eq!(header.version, wal::format::VERSION);
    let log = wal::Wal::open(&dir, wal::Options::default()).unwrap();
    let got: Vec<(u64, Vec<u8>)> = log.iter_from(0).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(got.len() as u64, next + 2 - WAL_FIRST_KEPT);
    assert_eq!(
        got[got.len() - 2..],
        [(next, b"new one".to_vec()), (next + 1, b"new two".to_vec())]
    );
    assert!(log.recovery_report().truncated_tail.is_none());
}
