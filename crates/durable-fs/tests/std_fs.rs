//! Proves the real filesystem path issues the durability syscalls in the right order: each
//! `DurableFs` recipe, run over `StdFs` through `RecordingFs`, syncs the file and then the
//! parent directory (both directories for a cross-directory rename) before it returns. A
//! recipe that forgot the directory fsync fails these tests. Also: the directory lock is
//! exclusive, and works on a real disk.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::path::Path;
use std::sync::Arc;

use durable_fs::{Access, DurableFs, Error, Event, OpenMode, RecordingFs, StdFs};

fn recorded() -> (tempfile::TempDir, RecordingFs, DurableFs) {
    let tmp = tempfile::tempdir().unwrap();
    let rec = RecordingFs::new(Arc::new(StdFs));
    let fs = DurableFs::new(Arc::new(rec.clone()));
    (tmp, rec, fs)
}

#[test]
fn create_new_syncs_file_then_parent_directory() {
    let (tmp, rec, fs) = recorded();
    let path = tmp.path().join("a");
    fs.create_new(&path).unwrap();
    assert_eq!(
        rec.events(),
        [
            Event::Open(path.clone(), OpenMode::CreateNew),
            Event::SyncAll(path),
            Event::SyncDir(tmp.path().to_path_buf()),
        ]
    );
}

#[test]
fn create_new_refuses_an_existing_name() {
    let (tmp, _rec, fs) = recorded();
    let path = tmp.path().join("a");
    fs.create_new(&path).unwrap();
    let err = fs.create_new(&path).unwrap_err();
    assert_eq!(err.io_kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(err.path(), path);
}

#[test]
fn rename_syncs_file_then_destination_then_source_directory() {
    let (tmp, rec, fs) = recorded();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    fs.create_dir_all(&src).unwrap();
    fs.create_dir_all(&dst).unwrap();
    fs.create_new(&src.join("f")).unwrap();
    rec.clear();
    fs.rename(&src.join("f"), &dst.join("g")).unwrap();
    assert_eq!(
        rec.events(),
        [
            Event::Open(src.join("f"), OpenMode::Read),
            Event::SyncAll(src.join("f")),
            Event::Rename(src.join("f"), dst.join("g")),
            Event::SyncDir(dst.clone()),
            Event::SyncDir(src.clone()),
        ]
    );
    assert!(fs.exists(&dst.join("g")).unwrap());
    assert!(!fs.exists(&src.join("f")).unwrap());
}

#[test]
fn rename_within_a_directory_syncs_it_once() {
    let (tmp, rec, fs) = recorded();
    fs.create_new(&tmp.path().join("a")).unwrap();
    rec.clear();
    fs.rename(&tmp.path().join("a"), &tmp.path().join("b"))
        .unwrap();
    let syncs: Vec<_> = rec
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::SyncDir(_)))
        .collect();
    assert_eq!(syncs, [Event::SyncDir(tmp.path().to_path_buf())]);
}

#[test]
fn remove_syncs_parent_directory() {
    let (tmp, rec, fs) = recorded();
    let path = tmp.path().join("a");
    fs.create_new(&path).unwrap();
    rec.clear();
    fs.remove_file(&path).unwrap();
    assert_eq!(
        rec.events(),
        [
            Event::Remove(path.clone()),
            Event::SyncDir(tmp.path().to_path_buf())
        ]
    );
    assert!(!fs.exists(&path).unwrap());
}

#[test]
fn create_dir_all_syncs_each_new_directorys_parent() {
    let (tmp, rec, fs) = recorded();
    let a = tmp.path().join("a");
    let b = a.join("b");
    fs.create_dir_all(&b).unwrap();
    assert_eq!(
        rec.events(),
        [
            Event::CreateDir(a.clone()),
            Event::SyncDir(tmp.path().to_path_buf()),
            Event::CreateDir(b),
            Event::SyncDir(a),
        ]
    );
    rec.clear();
    fs.create_dir_all(&tmp.path().join("a/b")).unwrap();
    assert_eq!(rec.events(), [], "nothing to do when it exists");
}

#[test]
fn atomic_replace_writes_syncs_renames_and_syncs_directory() {
    let (tmp, rec, fs) = recorded();
    let path = tmp.path().join("MANIFEST");
    let tmp_path = tmp.path().join("MANIFEST.tmp");
    fs.atomic_replace(&path, b"one").unwrap();
    fs.atomic_replace(&path, b"two").unwrap();
    let events = rec.events();
    assert_eq!(
        events[events.len() - 5..],
        [
            Event::Open(tmp_path.clone(), OpenMode::CreateNew),
            Event::Write(tmp_path.clone(), 0, 3),
            Event::SyncAll(tmp_path.clone()),
            Event::Rename(tmp_path.clone(), path.clone()),
            Event::SyncDir(tmp.path().to_path_buf()),
        ]
    );
    assert_eq!(fs.read(&path).unwrap(), b"two");
    assert!(!fs.exists(&tmp_path).unwrap());
}

#[test]
fn file_handle_reads_writes_and_truncates() {
    let fs = DurableFs::real();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("f");
    let f = fs.create_new(&path).unwrap();
    assert_eq!(f.append(b"hello").unwrap(), 0);
    assert_eq!(f.append(b" world").unwrap(), 5);
    f.write_all_at(b"J", 0).unwrap();
    f.sync_data().unwrap();
    assert_eq!(f.read_all().unwrap(), b"Jello world");
    f.set_len(5).unwrap();
    f.sync_all().unwrap();
    assert_eq!(f.len().unwrap(), 5);
    assert_eq!(f.append(b"!").unwrap(), 5);
    let r = fs.open(&path, Access::Read).unwrap();
    let mut buf = [0u8; 10];
    let err = r.read_exact_at(&mut buf, 0).unwrap_err();
    assert_eq!(err.io_kind(), std::io::ErrorKind::UnexpectedEof);
    assert!(r.append(b"x").is_err(), "a read-only handle refuses writes");
}

#[test]
fn second_lock_of_a_directory_is_refused_until_the_first_is_dropped() {
    let fs = DurableFs::real();
    let tmp = tempfile::tempdir().unwrap();
    let first = fs.lock_dir(tmp.path()).unwrap();
    match fs.lock_dir(tmp.path()) {
        Err(Error::Locked { path }) => assert_eq!(path, tmp.path().join("LOCK")),
        other => panic!("expected Locked, got {other:?}"),
    }
    // Another DurableFs (as another engine instance would have) is refused too.
    assert!(matches!(
        DurableFs::real().lock_dir(tmp.path()),
        Err(Error::Locked { .. })
    ));
    drop(first);
    fs.lock_dir(tmp.path()).unwrap();
}

#[test]
fn missing_paths_give_errors_naming_them() {
    let fs = DurableFs::real();
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let err = fs.open(&missing, Access::Read).unwrap_err();
    assert!(err.is_not_found());
    assert!(err.to_string().contains("nope"), "{err}");
    assert!(fs.remove_file(&missing).unwrap_err().is_not_found());
    assert!(fs.list(&missing).unwrap_err().is_not_found());
    assert!(!fs.exists(Path::new(&missing)).unwrap());
}
