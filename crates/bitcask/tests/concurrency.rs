//! Reads, writes and merges at once. Proves: with writer threads on disjoint keys, readers
//! and a merging thread running alongside, every read returns a value some writer wrote for
//! that key (never a torn or foreign one), and at the end every key holds its writer's last
//! value, also after reopening.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bitcask::{Bitcask, Options, SyncPolicy};
use durable_fs::sim::SimFs;

fn value(t: u32, k: u32, round: u32) -> Vec<u8> {
    format!(
        "t{t} k{k} r{round} {}",
        "x".repeat((round as usize * 7) % 90)
    )
    .into_bytes()
}

#[test]
fn readers_writers_and_merges_run_together() {
    let sim = SimFs::new();
    let opts = Options::default()
        .with_fs(sim.durable())
        .with_max_file_bytes(8192)
        .with_max_open_files(4)
        .with_sync(SyncPolicy::Always);
    let db = Arc::new(Bitcask::open("/db", opts.clone()).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    // Merges completed so far: the writers' last round waits for the first one, so a merge
    // always overlaps the writes, however the threads are scheduled on a busy machine.
    let merged = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (writers, keys, rounds) = (4u32, 20u32, 30u32);
    let mut handles = Vec::new();
    for t in 0..writers {
        let (db, merged) = (Arc::clone(&db), Arc::clone(&merged));
        handles.push(std::thread::spawn(move || {
            for r in 0..rounds {
                if r + 1 == rounds {
                    let start = std::time::Instant::now();
                    while merged.load(Ordering::Acquire) == 0 {
                        let waited = start.elapsed();
                        assert!(waited.as_secs() < 60, "no merge finished in {waited:?}");
                        std::thread::yield_now();
                    }
                }
                for k in 0..keys {
                    db.put(format!("t{t}-k{k}").as_bytes(), &value(t, k, r))
                        .unwrap();
                }
            }
        }));
    }
    let mut side = Vec::new();
    for _ in 0..2 {
        let (db, done) = (Arc::clone(&db), Arc::clone(&done));
        side.push(std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                for t in 0..writers {
                    for k in 0..keys {
                        if let Some(v) = db.get(format!("t{t}-k{k}").as_bytes()).unwrap() {
                            let s = String::from_utf8(v).unwrap();
                            assert!(s.starts_with(&format!("t{t} k{k} r")), "{s}");
                        }
                    }
                }
            }
        }));
    }
    {
        let (db, done, merged) = (Arc::clone(&db), Arc::clone(&done), Arc::clone(&merged));
        side.push(std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                db.compact().unwrap();
                merged.fetch_add(1, Ordering::AcqRel);
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    done.store(true, Ordering::Release);
    for h in side {
        h.join().unwrap();
    }
    let check = |db: &Bitcask| {
        for t in 0..writers {
            for k in 0..keys {
                assert_eq!(
                    db.get(format!("t{t}-k{k}").as_bytes()).unwrap(),
                    Some(value(t, k, rounds - 1))
                );
            }
        }
    };
    check(&db);
    let db = Arc::into_inner(db).unwrap();
    db.close().unwrap();
    check(&Bitcask::open("/db", opts).unwrap());
}

/// Read-only opens beside a writer that rotates and merges: a file created, listed, merged
/// or removed between a reader's reading the files list and the directory is retried, never
/// reported as a missing or unlisted file; and every key reads a value its writer wrote.
#[test]
fn read_only_opens_beside_a_rotating_and_merging_writer_never_report_damage() {
    let sim = SimFs::new();
    let opts = Options::default()
        .with_fs(sim.durable())
        .with_max_file_bytes(4096)
        .with_preallocate_bytes(0)
        .with_sync(SyncPolicy::Never)
        .with_auto_merge(None);
    let db = Arc::new(Bitcask::open("/db", opts.clone()).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, done) = (Arc::clone(&db), Arc::clone(&done));
        std::thread::spawn(move || {
            for round in 0..40u32 {
                for k in 0..20u32 {
                    db.put(format!("k{k}").as_bytes(), &value(0, k, round))
                        .unwrap();
                }
                if round % 5 == 4 {
                    db.compact().unwrap();
                }
            }
            done.store(true, Ordering::Release);
        })
    };
    let mut opens = 0;
    while !done.load(Ordering::Acquire) || opens < 10 {
        let ro = match Bitcask::open("/db", opts.clone().with_read_only(true)) {
            Ok(ro) => ro,
            Err(e) => panic!("read-only open beside a writer: {e}"),
        };
        for k in 0..20u32 {
            match ro.get(format!("k{k}").as_bytes()) {
                Ok(Some(v)) => assert!(v.starts_with(format!("t0 k{k} ").as_bytes())),
                Ok(None) => {}
                // A file merged away after this open read the list: the read names it.
                Err(bitcask::Error::Fs(e)) if e.is_not_found() => {}
                Err(e) => panic!("read beside a writer: {e}"),
            }
        }
        opens += 1;
    }
    writer.join().unwrap();
}

/// An open that writes nothing leaves no file behind: the empty active files of such opens
/// are unlisted and removed by the next read-write open, so they never pile up.
#[test]
fn opens_that_write_nothing_do_not_pile_up_files() {
    let sim = SimFs::new();
    let opts = Options::default().with_fs(sim.durable());
    let db = Bitcask::open("/db", opts.clone()).unwrap();
    db.put(b"k", b"v").unwrap();
    db.close().unwrap();
    let count = || {
        sim.durable()
            .list(std::path::Path::new("/db"))
            .unwrap()
            .iter()
            .filter(|n| n.ends_with(".data"))
            .count()
    };
    let before = count();
    for _ in 0..5 {
        Bitcask::open("/db", opts.clone()).unwrap().close().unwrap();
    }
    assert_eq!(
        count(),
        before + 1,
        "the last open's empty active file, no more"
    );
    let db = Bitcask::open("/db", opts).unwrap();
    assert_eq!(db.get(b"k").unwrap(), Some(b"v".to_vec()));
}
