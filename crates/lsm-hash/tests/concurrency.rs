//! Readers and writers while the background thread compacts. Proves: every read returns a
//! value its writer wrote (readers work from a snapshot of the segment list and never trip
//! over a segment compaction removed), background compaction actually runs and bounds the
//! segment count, and at the end every key holds its writer's last value, also after reopen.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use durable_fs::sim::SimFs;
use lsm_hash::{LsmHash, Options, SyncPolicy};

fn value(t: u32, k: u32, round: u32) -> Vec<u8> {
    format!(
        "t{t} k{k} r{round} {}",
        "x".repeat((round as usize * 7) % 90)
    )
    .into_bytes()
}

#[test]
fn readers_and_writers_run_while_compaction_runs() {
    let sim = SimFs::new();
    let opts = Options::default()
        .with_fs(sim.durable())
        .with_max_file_bytes(8192)
        .with_sync(SyncPolicy::Always)
        .with_compaction_min_segments(3)
        .with_compaction_check_interval(Duration::from_millis(2));
    let db = Arc::new(LsmHash::open("/db", opts.clone()).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let max_segments = Arc::new(AtomicUsize::new(0));
    let (writers, keys, rounds) = (3u32, 20u32, 40u32);
    let handles: Vec<_> = (0..writers)
        .map(|t| {
            let db = Arc::clone(&db);
            std::thread::spawn(move || {
                for r in 0..rounds {
                    for k in 0..keys {
                        db.put(format!("t{t}-k{k}").as_bytes(), &value(t, k, r))
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (db, done, max) = (
                Arc::clone(&db),
                Arc::clone(&done),
                Arc::clone(&max_segments),
            );
            std::thread::spawn(move || {
                while !done.load(Ordering::Acquire) {
                    max.fetch_max(db.segments().len(), Ordering::Relaxed);
                    for t in 0..writers {
                        for k in 0..keys {
                            if let Some(v) = db.get(format!("t{t}-k{k}").as_bytes()).unwrap() {
                                let s = String::from_utf8(v).unwrap();
                                assert!(s.starts_with(&format!("t{t} k{k} r")), "{s}");
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    done.store(true, Ordering::Release);
    for h in readers {
        h.join().unwrap();
    }
    // Ids are never reused; without compaction every id ever allocated would still be live.
    // Writers can outrun the background compaction on a busy machine: give it up to 10 s to
    // catch up (it runs every few milliseconds) before judging.
    let caught_up = || {
        let segments = db.segments();
        segments.len() * 2 < segments.last().unwrap().id as usize
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !caught_up() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let segments = db.segments();
    let allocated = segments.last().unwrap().id as usize;
    assert!(
        segments.len() * 2 < allocated,
        "background compaction ran: {} live segments of {allocated} ids (readers saw at most {})",
        segments.len(),
        max_segments.load(Ordering::Relaxed)
    );
    let check = |db: &LsmHash| {
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
    Arc::into_inner(db).unwrap().close().unwrap();
    check(&LsmHash::open("/db", opts).unwrap());
}
