//! Read-only opens at every crash state of a merge. Proves: a power cut at any point of a
//! merge (outputs written, marker committed, outputs renamed, inputs removed, marker removed)
//! leaves a store a read-only open reads completely, with every acknowledged value, changing
//! nothing on disk (an interrupted, committed merge is rolled forward in memory only); and it
//! reads exactly what a read-write open then recovers.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::collections::BTreeMap;
use std::path::Path;

use bitcask::{Bitcask, Options};
use durable_fs::sim::{CrashMode, SimFs};

fn opts(sim: &SimFs) -> Options {
    Options::default()
        .with_fs(sim.durable())
        .with_max_file_bytes(4096)
        .with_preallocate_bytes(0)
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn contents(db: &Bitcask) -> Model {
    db.iter().collect::<Result<_, _>>().unwrap()
}

/// Every file's name and bytes: what "changed nothing" compares.
fn snapshot(sim: &SimFs) -> Vec<(String, Vec<u8>)> {
    let fs = sim.durable();
    let mut names = fs.list(Path::new("/db")).unwrap();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let p = Path::new("/db").join(&n);
            let bytes = match fs.kind(&p).unwrap() {
                Some(durable_fs::EntryKind::File) => fs.read(&p).unwrap(),
                _ => Vec::new(),
            };
            (n, bytes)
        })
        .collect()
}

#[test]
fn read_only_opens_read_every_crash_state_of_a_merge_and_change_nothing() {
    let sim = SimFs::new();
    let db = Bitcask::open("/db", opts(&sim)).unwrap();
    let mut model = Model::new();
    for round in 0..3u8 {
        for i in 0..40u32 {
            let k = format!("key{i:02}").into_bytes();
            if (i + u32::from(round)) % 7 == 0 {
                db.delete(&k).unwrap();
                model.remove(&k);
            } else {
                let v = vec![round.wrapping_mul(31).wrapping_add(i as u8); 150];
                db.put(&k, &v).unwrap();
                model.insert(k, v);
            }
        }
    }
    sim.start_journal();
    db.compact().unwrap();
    db.close().unwrap();
    let journal = sim.journal().unwrap();
    let points: Vec<u64> = (0..=journal.len()).collect();
    let mut merging_states = 0;
    for mode in [CrashMode::Strict, CrashMode::Torn] {
        journal.for_each_crash(
            &points,
            mode,
            |k| k,
            |k, image| {
                let names = image.durable().list(Path::new("/db")).unwrap();
                merging_states += u64::from(names.iter().any(|n| n == bitcask::MERGE_MARKER));
                let before = snapshot(&image);
                let ro = Bitcask::open("/db", opts(&image).with_read_only(true))
                    .unwrap_or_else(|e| panic!("{mode:?} state {k}: read-only open: {e}"));
                assert_eq!(
                    contents(&ro),
                    model,
                    "{mode:?} state {k}: read-only contents"
                );
                drop(ro);
                assert_eq!(
                    snapshot(&image),
                    before,
                    "{mode:?} state {k}: a reader wrote"
                );
                let rw = Bitcask::open("/db", opts(&image)).unwrap();
                assert_eq!(
                    contents(&rw),
                    model,
                    "{mode:?} state {k}: read-write contents"
                );
            },
        );
    }
    assert!(
        merging_states > 0,
        "no crash state had an interrupted, committed merge"
    );
}
