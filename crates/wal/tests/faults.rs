//! Fault injection on the simulated filesystem. Proves fail-stop: an fsync error reaches every
//! appender waiting on it and nothing is acknowledged after it; ENOSPC is an error and the log
//! stays recoverable with everything acknowledged before; a second writer is refused.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::path::Path;
use std::sync::{Arc, Barrier};

use durable_fs::sim::{CrashMode, Fault, FaultError, OpKind, SimFs};
use wal::{Error, Options, Wal};

const DIR: &str = "/db/wal";

fn opts(sim: &SimFs) -> Options {
    Options::default()
        .with_fs(sim.durable())
        .with_max_segment_bytes(4096)
}

fn recovered(sim: &SimFs) -> Vec<(u64, Vec<u8>)> {
    let after = sim.crash(CrashMode::Strict, 0);
    let wal = Wal::open(DIR, opts(&after)).unwrap();
    wal.iter_from(0)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

#[test]
fn fsync_error_poisons_the_log_and_nothing_after_it_is_acknowledged() {
    let sim = SimFs::new();
    let wal = Wal::open(DIR, opts(&sim)).unwrap();
    let mut acked = Vec::new();
    for i in 0..5u32 {
        acked.push((
            wal.append(&i.to_le_bytes()).unwrap(),
            i.to_le_bytes().to_vec(),
        ));
    }
    sim.inject(Fault::once(
        OpKind::Sync,
        sim.ops_of(OpKind::Sync) + 1,
        FaultError::Eio,
    ));
    let err = wal.append(b"doomed").unwrap_err();
    assert!(matches!(err, Error::Poisoned(_)), "{err:?}");
    assert!(
        err.to_string().contains("fdatasync"),
        "names the failed op: {err}"
    );
    // The fault was one-shot; the log must still refuse (no retry that "succeeds").
    assert!(matches!(wal.append(b"later"), Err(Error::Poisoned(_))));
    assert!(matches!(wal.sync(), Err(Error::Poisoned(_))));
    assert_eq!(wal.durable_lsn(), 5);
    drop(wal);
    let got = recovered(&sim);
    assert_eq!(got, acked, "exactly the acknowledged records");
}

#[test]
fn fsync_error_reaches_every_waiting_appender() {
    let sim = SimFs::new();
    let wal = Arc::new(Wal::open(DIR, opts(&sim)).unwrap());
    wal.append(b"before").unwrap();
    sim.inject(Fault::from_nth(
        OpKind::Sync,
        sim.ops_of(OpKind::Sync) + 1,
        FaultError::Eio,
    ));
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (wal, barrier) = (Arc::clone(&wal), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                wal.append(format!("t{t}").as_bytes())
            })
        })
        .collect();
    for h in handles {
        assert!(
            h.join().unwrap().is_err(),
            "no appender is acknowledged after the failure"
        );
    }
    assert_eq!(wal.durable_lsn(), 1);
    drop(wal);
    assert_eq!(recovered(&sim), vec![(1, b"before".to_vec())]);
}

#[test]
fn enospc_is_an_error_and_the_log_stays_recoverable() {
    let sim = SimFs::new();
    let wal = Wal::open(DIR, opts(&sim)).unwrap();
    let mut acked = Vec::new();
    for i in 0..40u32 {
        let p = vec![i as u8; 100];
        acked.push((wal.append(&p).unwrap(), p));
    }
    sim.inject(Fault::from_nth(
        OpKind::Write,
        sim.ops_of(OpKind::Write) + 1,
        FaultError::Enospc,
    ));
    let err = wal.append(&[7u8; 100]).unwrap_err();
    let Error::Poisoned(inner) = &err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(&**inner, Error::Fs(e) if e.io_kind() == std::io::ErrorKind::StorageFull),
        "{inner:?}"
    );
    drop(wal);
    sim.clear_faults();
    assert_eq!(recovered(&sim), acked);
}

#[test]
fn second_writer_gets_locked() {
    let sim = SimFs::new();
    let _first = Wal::open(DIR, opts(&sim)).unwrap();
    match Wal::open(DIR, opts(&sim)) {
        Err(Error::Locked { lock_file, .. }) => assert_eq!(lock_file, Path::new("/db/wal/LOCK")),
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn oversized_record_is_refused_and_nothing_is_written() {
    let sim = SimFs::new();
    let wal = Wal::open(DIR, opts(&sim).with_max_record_bytes(1000)).unwrap();
    let err = wal.append(&[0u8; 1001]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                len: 1001,
                max: 1000
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        wal.append(&[0u8; 1000]).unwrap(),
        1,
        "the log is not poisoned by it"
    );
}

#[test]
fn open_syncs_what_recovery_read_before_calling_it_durable() {
    // A process crash (not a power cut) leaves unsynced records in the page cache; recovery
    // reads them, so it must fsync them before `durable_lsn` covers them.
    let sim = SimFs::new();
    let wal = Wal::open(DIR, opts(&sim).with_sync(wal::SyncPolicy::Never)).unwrap();
    wal.append(b"unsynced").unwrap();
    wal.iter_from(0).unwrap(); // writes the buffer to the file, without a sync
    std::mem::forget(wal); // the process dies: no close, no sync
    sim.release_locks();
    let seg = std::path::Path::new(DIR).join("00000000000000000001.wal");
    let rec = durable_fs::RecordingFs::new(Arc::new(sim.clone()));
    let wal = Wal::open(
        DIR,
        opts(&sim).with_fs(durable_fs::DurableFs::new(Arc::new(rec.clone()))),
    )
    .unwrap();
    assert_eq!(wal.durable_lsn(), 1);
    assert!(
        rec.events().contains(&durable_fs::Event::SyncData(seg)),
        "{:?}",
        rec.events()
    );
    // And so a power cut now keeps it.
    drop(wal);
    let after = sim.crash(CrashMode::Strict, 0);
    let wal = Wal::open(DIR, opts(&after)).unwrap();
    assert_eq!(wal.iter_from(0).unwrap().count(), 1);
}
