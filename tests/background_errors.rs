//! Background work is visible. Proves, for both key-value engines: an ENOSPC injected into a
//! background merge / compaction shows in `stats()` (`compaction_failures`, `last_error`) and
//! in the log (an `error` record naming the store), the store is not poisoned by it (the old
//! files stay), and once space is back the next background run succeeds (`compactions`) with
//! every value intact. Negative control: the old ticker dropped the error (`let _ = ...`), and
//! `stats()` had no such fields.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use durable_fs::sim::{Fault, FaultError, OpKind, SimFs};
use kv_core::{KvStore, Stats, WriteBatch};

/// Every log record, as `LEVEL message`.
static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        LINES
            .lock()
            .unwrap()
            .push(format!("{} {}", r.level(), r.args()));
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

fn capture_logs() {
    let _ = log::set_logger(&CAPTURE);
    log::set_max_level(log::LevelFilter::Trace);
}

fn open(engine: &str, sim: &SimFs, background: bool) -> Box<dyn KvStore> {
    let every = Duration::from_millis(30);
    match engine {
        "bitcask" => {
            let triggers = bitcask::MergeTriggers::default()
                .with_fragmentation(0.1)
                .with_dead_bytes(1)
                .with_check_interval(every);
            let o = bitcask::Options::default()
                .with_fs(sim.durable())
                .with_max_file_bytes(4096)
                .with_auto_merge(background.then_some(triggers));
            Box::new(bitcask::Bitcask::open("/db", o).unwrap())
        }
        _ => {
            let o = lsm_hash::Options::default()
                .with_fs(sim.durable())
                .with_max_file_bytes(4096)
                .with_compaction_min_segments(if background { 2 } else { 0 })
                .with_compaction_check_interval(every);
            Box::new(lsm_hash::LsmHash::open("/db", o).unwrap())
        }
    }
}

fn wait_for(db: &dyn KvStore, what: &str, done: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = db.stats().unwrap();
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: {s:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_failed_background_merge_shows_in_stats_and_the_log_and_the_next_one_succeeds() {
    capture_logs();
    for engine in ["bitcask", "lsm-hash"] {
        let sim = SimFs::new();
        // Overwrites over many files, written with no background work.
        let db = open(engine, &sim, false);
        for round in 0..6u8 {
            for i in 0..40u32 {
                let mut b = WriteBatch::new();
                b.put(format!("k{i:02}").as_bytes(), &[round; 100]);
                db.write(b).unwrap();
            }
        }
        db.close().unwrap();
        // Reopened with background work; the disk is full from the next write on.
        let db = open(engine, &sim, true);
        sim.inject(Fault::from_nth(
            OpKind::Write,
            sim.ops_of(OpKind::Write) + 1,
            FaultError::Enospc,
        ));
        let s = wait_for(&*db, engine, |s| s.compaction_failures > 0);
        let err = s.last_error.clone().unwrap();
        assert!(err.to_lowercase().contains("space"), "{engine}: {err}");
        assert!(db.get(b"k07").unwrap().is_some(), "{engine}: not poisoned");
        let logged = LINES.lock().unwrap().clone();
        assert!(
            logged
                .iter()
                .any(|l| l.starts_with("ERROR") && l.contains("/db") && l.contains("failed")),
            "{engine}: {logged:?}"
        );
        // Space again: the next background run succeeds.
        sim.clear_faults();
        let s = wait_for(&*db, engine, |s| s.compactions > 0);
        assert!(s.compaction_failures >= 1);
        for i in 0..40u32 {
            assert_eq!(
                db.get(format!("k{i:02}").as_bytes()).unwrap(),
                Some(vec![5u8; 100]),
                "{engine}"
            );
        }
        db.close().unwrap();
    }
}
