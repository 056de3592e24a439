//! Proves: a file longer than its format allows is refused as corruption, naming it, before
//! anything is allocated for it. A bitcask data file or an lsm-hash segment extended (sparse)
//! to 64 GiB used to make open allocate 64 GiB and abort the process; a 2 MiB manifest or
//! merge marker is refused the same way (their format is a short text).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::path::Path;

use durable_fs::{Access, DurableFs};
use kv_core::{CorruptionKind, Error};

const HUGE: u64 = 64 << 30;

fn extend(fs: &DurableFs, dir: &Path, ext: &str) -> std::path::PathBuf {
    let name = fs
        .list(dir)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(ext))
        .max()
        .unwrap();
    let path = dir.join(name);
    let f = fs.open(&path, Access::ReadWrite).unwrap();
    f.set_len(HUGE).unwrap();
    f.sync_data().unwrap();
    path
}

fn assert_refused(r: Result<(), Error>, want: &Path) {
    match r {
        Err(Error::Corruption { path, kind, .. }) => {
            assert_eq!(path, want);
            assert!(
                matches!(
                    kind,
                    CorruptionKind::OutOfRange {
                        what: "file length",
                        value: HUGE,
                        ..
                    }
                ),
                "{kind:?}"
            );
        }
        other => panic!("expected the file length refused, got {other:?}"),
    }
}

#[test]
fn a_data_file_or_segment_past_4_gib_is_refused_without_reading_it() {
    let fs = DurableFs::real();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bc");
    let db = bitcask::Bitcask::open(&dir, bitcask::Options::default()).unwrap();
    db.put(b"k", b"v").unwrap();
    db.close().unwrap();
    let huge = extend(&fs, &dir, ".data");
    for read_only in [true, false] {
        let opts = bitcask::Options::default().with_read_only(read_only);
        assert_refused(bitcask::Bitcask::open(&dir, opts).map(drop), &huge);
    }

    let dir = tmp.path().join("lsm");
    let db = lsm_hash::LsmHash::open(&dir, lsm_hash::Options::default()).unwrap();
    db.put(b"k", b"v").unwrap();
    db.close().unwrap();
    let huge = extend(&fs, &dir, ".seg");
    for read_only in [true, false] {
        let opts = lsm_hash::Options::default().with_read_only(read_only);
        assert_refused(lsm_hash::LsmHash::open(&dir, opts).map(drop), &huge);
    }
}

#[test]
fn an_oversized_manifest_or_merge_marker_is_refused_not_read() {
    let fs = DurableFs::real();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lsm");
    lsm_hash::LsmHash::open(&dir, lsm_hash::Options::default())
        .unwrap()
        .close()
        .unwrap();
    let f = fs.open(&dir.join("MANIFEST"), Access::ReadWrite).unwrap();
    f.set_len(2 << 20).unwrap();
    f.sync_data().unwrap();
    match lsm_hash::LsmHash::open(&dir, lsm_hash::Options::default()) {
        Err(Error::Corruption { kind, .. }) => assert_eq!(kind, CorruptionKind::BadManifest),
        other => panic!("expected BadManifest, got {other:?}"),
    }
    let dir = tmp.path().join("bc");
    fs.create_dir_all(&dir).unwrap();
    fs.atomic_replace(&dir.join("MERGE"), &vec![b'x'; 2 << 20])
        .unwrap();
    match bitcask::Bitcask::open(&dir, bitcask::Options::default()) {
        Err(Error::Corruption { kind, .. }) => assert_eq!(kind, CorruptionKind::BadMergeMarker),
        other => panic!("expected BadMergeMarker, got {other:?}"),
    }
}
