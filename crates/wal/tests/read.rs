//! `Wal::read(lsn)`, `iter_range` and `append_batch_nowait`. Proves: every record the log
//! holds reads back exactly, by LSN, through rotations, batches, appends without waiting,
//! `truncate_before`, `truncate_after` and reopen, and every LSN it does not hold (never
//! written, truncated away) reads as `None`; a read of an indexed record is one positional
//! read; `iter_range` yields exactly the LSNs of its range; damage is `Corruption` naming the
//! segment, and the records before the damage stay readable.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::collections::BTreeMap;

use durable_fs::sim::{OpKind, Rng, SimFs};
use wal::{Error, Options, SyncPolicy, Wal};

const DIR: &str = "/db/wal";

fn opts(sim: &SimFs) -> Options {
    Options::default()
        .with_fs(sim.durable())
        .with_max_segment_bytes(4096)
        .with_sync(SyncPolicy::Never)
}

fn check(wal: &Wal, model: &BTreeMap<u64, Vec<u8>>, high: u64) {
    for lsn in 0..=high + 2 {
        assert_eq!(
            wal.read(lsn).unwrap().as_ref(),
            model.get(&lsn),
            "lsn {lsn}"
        );
    }
}

#[test]
fn every_record_reads_back_by_lsn_through_rotation_truncation_and_reopen() {
    let sim = SimFs::new();
    let mut rng = Rng::new(11);
    let mut model: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut wal = Wal::open(DIR, opts(&sim)).unwrap();
    let mut high = 0;
    for round in 0..12u64 {
        for i in 0..60u64 {
            let payload = format!("r{round}-{i}-{}", "x".repeat(rng.below(90) as usize));
            if rng.chance(1, 4) {
                let p2 = format!("{payload}-b");
                let (a, b) = wal
                    .append_batch_nowait(&[payload.as_bytes(), p2.as_bytes()])
                    .unwrap();
                model.insert(a, payload.into_bytes());
                model.insert(b, p2.into_bytes());
                high = b;
            } else {
                let lsn = wal.append(payload.as_bytes()).unwrap();
                model.insert(lsn, payload.into_bytes());
                high = lsn;
            }
            if rng.chance(1, 10) {
                // Reads interleaved with appends (the active segment's index kept up).
                let probe = rng.below(high) + 1;
                assert_eq!(wal.read(probe).unwrap().as_ref(), model.get(&probe));
            }
        }
        check(&wal, &model, high);
        match round % 4 {
            1 => {
                let at = high - 70;
                wal.truncate_after(at).unwrap();
                model.retain(|&l, _| l <= at);
            }
            2 => {
                let below = high / 3;
                wal.truncate_before(below).unwrap();
                // Whole segments below go; a record below may stay in a segment with later ones.
                let first = wal.first_lsn().unwrap();
                model.retain(|&l, _| l >= first);
            }
            3 => {
                wal.close().unwrap();
                wal = Wal::open(DIR, opts(&sim)).unwrap();
            }
            _ => {}
        }
        check(&wal, &model, high);
    }
    // A read of an indexed record is one positional read.
    let lsn = *model.keys().nth(model.len() / 2).unwrap();
    wal.read(lsn).unwrap();
    let before = sim.ops_of(OpKind::Read);
    assert_eq!(wal.read(lsn).unwrap().as_ref(), model.get(&lsn));
    assert_eq!(sim.ops_of(OpKind::Read) - before, 1);
}

#[test]
fn iter_range_yields_exactly_its_lsns() {
    let sim = SimFs::new();
    let wal = Wal::open(DIR, opts(&sim)).unwrap();
    for i in 1..=50u64 {
        assert_eq!(wal.append(format!("p{i}").as_bytes()).unwrap(), i);
    }
    let lsns = |it: Box<dyn Iterator<Item = wal::Result<(u64, Vec<u8>)>>>| -> Vec<u64> {
        it.map(|r| r.unwrap().0).collect()
    };
    assert_eq!(
        lsns(Box::new(wal.iter_range(10..13).unwrap())),
        [10, 11, 12]
    );
    assert_eq!(
        lsns(Box::new(wal.iter_range(10..=13).unwrap())),
        [10, 11, 12, 13]
    );
    assert_eq!(lsns(Box::new(wal.iter_range(48..).unwrap())), [48, 49, 50]);
    assert!(lsns(Box::new(wal.iter_range(20..20).unwrap())).is_empty());
    assert!(lsns(Box::new(wal.iter_range(0..0).unwrap())).is_empty());
    assert_eq!(lsns(Box::new(wal.iter_range(..3).unwrap())), [1, 2]);
}

#[test]
fn a_damaged_record_is_corruption_naming_its_segment() {
    let sim = SimFs::new();
    let wal = Wal::open(DIR, opts(&sim)).unwrap();
    for i in 1..=5u64 {
        wal.append(format!("payload-{i}").as_bytes()).unwrap();
    }
    wal.sync().unwrap();
    let seg = std::path::Path::new(DIR).join("00000000000000000001.wal");
    // Flip a byte in the third record's payload (segment header 32, records of 28 + 9 bytes).
    sim.flip_bit(&seg, 32 + 2 * 37 + 30, 1).unwrap();
    // Indexed by a scan that meets the damage: what precedes it is readable, the damaged
    // record and what follows are refused, naming the file and the damaged record's offset.
    assert_eq!(wal.read(2).unwrap().as_deref(), Some(&b"payload-2"[..]));
    for lsn in [3, 4] {
        match wal.read(lsn) {
            Err(Error::Corruption { path, offset, .. }) => {
                assert_eq!(path, seg);
                assert_eq!(offset, 32 + 2 * 37);
            }
            other => panic!("{lsn}: {other:?}"),
        }
    }
}

/// Reads racing appends (waiting and not), rotations, `truncate_after` and `truncate_before`:
/// every read returns the payload appended at that LSN or `None` (truncated away, or not yet
/// appended), never another record's, and never an error.
#[test]
fn reads_racing_appends_and_truncations_return_the_right_record_or_none() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let sim = SimFs::new();
    let wal = Arc::new(Wal::open(DIR, opts(&sim)).unwrap());
    let high = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    // A payload names its LSN: a read of `lsn` may only ever see `lsn`'s.
    let payload = |lsn: u64| format!("lsn={lsn};{}", "p".repeat((lsn % 40) as usize)).into_bytes();
    let writer = {
        let (wal, high) = (Arc::clone(&wal), Arc::clone(&high));
        std::thread::spawn(move || {
            for i in 0..3000u64 {
                // The next LSN is not known before the append: write, then check the echo.
                let lsn = if i % 3 == 0 {
                    let next = wal.last_lsn() + 1;
                    let (a, b) = wal
                        .append_batch_nowait(&[&payload(next), &payload(next + 1)])
                        .unwrap();
                    assert_eq!((a, b), (next, next + 1));
                    b
                } else {
                    let next = wal.last_lsn() + 1;
                    let got = wal.append(&payload(next)).unwrap();
                    assert_eq!(got, next);
                    got
                };
                high.store(lsn, Ordering::Release);
                if i % 500 == 250 {
                    wal.truncate_after(lsn.saturating_sub(20)).unwrap();
                }
                if i % 700 == 350 {
                    wal.truncate_before(lsn / 2).unwrap();
                }
            }
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|t| {
            let (wal, high, done) = (Arc::clone(&wal), Arc::clone(&high), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut rng = Rng::new(t + 5);
                let mut hits = 0u64;
                while !done.load(Ordering::Acquire) {
                    let h = high.load(Ordering::Acquire);
                    if h == 0 {
                        continue;
                    }
                    let lsn = rng.below(h + 5) + 1;
                    if let Some(p) = wal.read(lsn).unwrap() {
                        assert_eq!(p, payload(lsn), "lsn {lsn}");
                        hits += 1;
                    }
                }
                hits
            })
        })
        .collect();
    writer.join().unwrap();
    done.store(true, Ordering::Release);
    let hits: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(hits > 100, "the readers read: {hits}");
}
