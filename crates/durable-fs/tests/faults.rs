//! Proves fail-stop: a failed fsync poisons the handle for good (later writes and syncs report
//! the original error, nothing is retried), the failed sync loses the dirty data as a kernel
//! would, and a failed directory sync poisons the directory. Also that injected ENOSPC and EIO
//! reach the caller with their real error kinds and the path.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::io::ErrorKind;
use std::path::Path;

use durable_fs::sim::{CrashMode, Fault, FaultError, OpKind, SimFs};
use durable_fs::{Error, Op};

#[test]
fn failed_fsync_poisons_the_handle_and_loses_the_dirty_data() {
    let sim = SimFs::new();
    let fs = sim.durable();
    let f = fs.create_new(Path::new("/log")).unwrap(); // 1st file sync
    f.append(b"acked").unwrap();
    f.sync_data().unwrap(); // 2nd
    f.append(b"doomed").unwrap();
    sim.inject(Fault::once(OpKind::Sync, 3, FaultError::Eio));
    let first = f.sync_data().unwrap_err();
    assert!(
        matches!(
            first,
            Error::Io {
                op: Op::SyncData,
                ..
            }
        ),
        "{first:?}"
    );
    assert_eq!(first.raw_os_error(), Some(5));
    assert_eq!(first.path(), Path::new("/log"));

    // The fault fired once; a retry would now "succeed" at the disk. The handle must not.
    for later in [
        f.sync_data(),
        f.sync_all(),
        f.append(b"more").map(|_| ()),
        f.set_len(0),
    ] {
        match later.unwrap_err() {
            Error::Poisoned { op, path, source } => {
                assert_eq!(op, Op::SyncData);
                assert_eq!(path, Path::new("/log"));
                assert_eq!(source.raw_os_error(), Some(5), "carries the original EIO");
            }
            other => panic!("expected Poisoned, got {other:?}"),
        }
    }
    assert!(f.is_poisoned());
    // Reads still work, and show the kernel dropped the unsynced pages.
    assert_eq!(f.read_all().unwrap(), b"acked");
    let after = sim.crash(CrashMode::Strict, 0).durable();
    assert_eq!(after.read(Path::new("/log")).unwrap(), b"acked");
}

#[test]
fn enospc_on_write_reports_storage_full_and_writes_nothing() {
    let sim = SimFs::new();
    let fs = sim.durable();
    let f = fs.create_new(Path::new("/log")).unwrap();
    f.append(b"ok").unwrap();
    sim.inject(Fault::from_nth(OpKind::Write, 2, FaultError::Enospc));
    let err = f.append(b"no room").unwrap_err();
    assert_eq!(err.io_kind(), ErrorKind::StorageFull);
    assert!(err.to_string().contains("/log"), "{err}");
    assert_eq!(f.read_all().unwrap(), b"ok");
    assert!(matches!(
        f.sync_data(),
        Err(Error::Poisoned { op: Op::Write, .. })
    ));
    // A new file hits the sticky full disk too.
    let g = fs.create_new(Path::new("/other")).unwrap();
    assert_eq!(
        g.append(b"x").unwrap_err().io_kind(),
        ErrorKind::StorageFull
    );
}

#[test]
fn failed_directory_sync_poisons_the_directory() {
    let sim = SimFs::new();
    let fs = sim.durable();
    fs.create_dir_all(Path::new("/db")).unwrap(); // syncs "/" once
    sim.inject(Fault::once(OpKind::SyncDir, 2, FaultError::Eio));
    let err = fs.create_new(Path::new("/db/a")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Io {
                op: Op::SyncDir,
                ..
            }
        ),
        "{err:?}"
    );
    // The fault was one-shot, but the directory stays failed: no silent success on retry.
    let again = fs.sync_dir(Path::new("/db")).unwrap_err();
    assert!(
        matches!(
            again,
            Error::Poisoned {
                op: Op::SyncDir,
                ..
            }
        ),
        "{again:?}"
    );
    assert!(matches!(
        fs.create_new(Path::new("/db/b")),
        Err(Error::Poisoned { .. })
    ));
    // Other directories are unaffected.
    fs.create_new(Path::new("/c")).unwrap();
}

#[test]
fn eio_on_create_rename_and_remove_is_reported_with_the_path() {
    let sim = SimFs::new();
    let fs = sim.durable();
    fs.create_new(Path::new("/a")).unwrap();
    sim.inject(Fault::once(OpKind::Rename, 1, FaultError::Eio));
    sim.inject(Fault::once(OpKind::Remove, 1, FaultError::Eio));
    sim.inject(Fault::once(OpKind::Create, 2, FaultError::Eio));
    let e = fs.rename(Path::new("/a"), Path::new("/b")).unwrap_err();
    assert!(matches!(&e, Error::Io { op: Op::Rename, path, .. } if path == Path::new("/a")));
    let e = fs.remove_file(Path::new("/a")).unwrap_err();
    assert!(matches!(e, Error::Io { op: Op::Remove, .. }));
    let e = fs.create_new(Path::new("/c")).unwrap_err();
    assert!(matches!(&e, Error::Io { op: Op::Create, path, .. } if path == Path::new("/c")));
    assert_eq!(e.raw_os_error(), Some(5));
    assert_eq!(fs.list(Path::new("/")).unwrap(), ["a"]);
}

#[test]
fn simulated_lock_is_exclusive() {
    let sim = SimFs::new();
    let fs = sim.durable();
    fs.create_dir_all(Path::new("/db")).unwrap();
    let held = fs.lock_dir(Path::new("/db")).unwrap();
    assert!(matches!(
        fs.lock_dir(Path::new("/db")),
        Err(Error::Locked { .. })
    ));
    drop(held);
    fs.lock_dir(Path::new("/db")).unwrap();
}
