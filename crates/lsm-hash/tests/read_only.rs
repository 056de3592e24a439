//! Proves: a read-only open (`Options::read_only`) writes nothing and still reads everything:
//! on a store with a compaction behind it, a torn tail in the active segment, a leftover
//! segment the manifest does not name and a temporary file, the open changes not one byte
//! of the simulated disk (its journal of changes stays empty), reports what a read-write
//! open would repair, leaves the damage where it is, refuses writes with `ReadOnly`, and
//! works beside a running writer (it takes no lock). Also: `len`, `keys`, `fold` and
//! `stats` agree with `iter` (the API parity with bitcask).

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::collections::BTreeMap;
use std::path::Path;

use durable_fs::Access;
use durable_fs::sim::SimFs;
use lsm_hash::{Error, LsmHash, Options, SyncPolicy, WriteBatch, segment_name};

fn opts(sim: &SimFs) -> Options {
    Options::default()
        .with_fs(sim.durable())
        .with_max_file_bytes(4096)
        .with_compaction_min_segments(0)
}

/// A store with frozen segments, a compaction behind it, deletes, and `want` as its content.
fn store(sim: &SimFs) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let db = LsmHash::open("/db", opts(sim)).unwrap();
    let mut want = BTreeMap::new();
    for i in 0..120u32 {
        let k = format!("key{:02}", i % 40).into_bytes();
        let v = vec![i as u8; 90];
        db.put(&k, &v).unwrap();
        want.insert(k, v);
        if i == 60 {
            db.compact().unwrap();
        }
    }
    for k in ["key03", "key17"] {
        assert!(db.delete(k.as_bytes()).unwrap());
        want.remove(k.as_bytes());
    }
    db.close().unwrap();
    want
}

#[test]
fn read_only_open_changes_nothing_and_reads_everything() {
    let sim = SimFs::new();
    let fs = sim.durable();
    let want = store(&sim);
    // Damage a read-write open would repair: a torn tail, a leftover segment, a temp file.
    let active = {
        let db = LsmHash::open("/db", opts(&sim).with_read_only(true)).unwrap();
        db.segments().last().unwrap().id
    };
    let active_path = Path::new("/db").join(segment_name(active));
    let f = fs.open(&active_path, Access::ReadWrite).unwrap();
    let len = f.len().unwrap();
    f.write_all_at(&[0xAB; 7], len).unwrap();
    f.sync_data().unwrap();
    let stray = Path::new("/db").join(segment_name(999));
    fs.atomic_replace(&stray, b"leftover").unwrap();

    sim.start_journal();
    let db = LsmHash::open("/db", opts(&sim).with_read_only(true)).unwrap();
    let got: BTreeMap<Vec<u8>, Vec<u8>> = db.iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(got, want);
    let report = db.recovery_report().clone();
    assert!(report.truncated_tail.is_some(), "{report:?}");
    assert!(
        report.removed_files.contains(&segment_name(999)),
        "{report:?}"
    );
    assert!(matches!(db.put(b"k", b"v"), Err(Error::ReadOnly)));
    assert!(matches!(db.delete(b"key01"), Err(Error::ReadOnly)));
    assert!(matches!(db.write(WriteBatch::new()), Err(Error::ReadOnly)));
    assert!(matches!(db.sync(), Err(Error::ReadOnly)));
    assert!(matches!(db.compact(), Err(Error::ReadOnly)));
    db.close().unwrap();
    assert_eq!(sim.journal_len(), 0, "a read-only open changed the disk");
    assert_eq!(
        fs.open(&active_path, Access::Read).unwrap().len().unwrap(),
        len + 7
    );
    assert!(fs.exists(&stray).unwrap());

    // A read-write open repairs the same things and reads the same content, keeping the cut
    // bytes (not the preallocated zeros before them) in quarantine/ first.
    let db = LsmHash::open("/db", opts(&sim)).unwrap();
    let got: BTreeMap<Vec<u8>, Vec<u8>> = db.iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(got, want);
    assert!(!fs.exists(&stray).unwrap());
    let kept = &db.recovery_report().quarantined;
    assert_eq!(kept.len(), 1, "{kept:?}");
    let bytes = fs.read(&kept[0]).unwrap();
    assert!(bytes.ends_with(&[0xAB; 7]), "{} bytes", bytes.len());
    assert!(kept[0].starts_with("/db/quarantine"));
}

#[test]
fn read_only_open_works_beside_a_running_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let writer = LsmHash::open(tmp.path(), Options::default()).unwrap();
    writer.put(b"a", b"1").unwrap();
    let reader = LsmHash::open(tmp.path(), Options::default().with_read_only(true)).unwrap();
    assert_eq!(reader.get(b"a").unwrap(), Some(b"1".to_vec()));
    writer.put(b"b", b"2").unwrap();
    reader.close().unwrap();
    writer.close().unwrap();
}

/// Read-only opens beside a writer that freezes segments and compacts: a manifest switch
/// and input removal between a reader's reading the manifest and the directory is retried,
/// never reported as a missing segment.
#[test]
fn read_only_opens_beside_a_compacting_writer_never_report_damage() {
    let sim = SimFs::new();
    let o = Options::default()
        .with_fs(sim.durable())
        .with_max_file_bytes(4096)
        .with_preallocate_bytes(0)
        .with_compaction_min_segments(1000)
        .with_sync(SyncPolicy::Never);
    let db = std::sync::Arc::new(LsmHash::open("/db", o.clone()).unwrap());
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (db, done) = (db.clone(), done.clone());
        std::thread::spawn(move || {
            for round in 0..40u32 {
                for k in 0..20u32 {
                    db.put(format!("k{k}").as_bytes(), format!("v{round}").as_bytes())
                        .unwrap();
                }
                if round % 5 == 4 {
                    db.compact().unwrap();
                }
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        })
    };
    let mut opens = 0;
    while !done.load(std::sync::atomic::Ordering::Acquire) || opens < 10 {
        match LsmHash::open("/db", o.clone().with_read_only(true)) {
            Ok(_) => {}
            Err(e) => panic!("read-only open beside a writer: {e}"),
        }
        opens += 1;
    }
    writer.join().unwrap();
}

#[test]
fn len_keys_fold_and_stats_agree_with_iter() {
    let sim = SimFs::new();
    let want = store(&sim);
    let db = LsmHash::open("/db", opts(&sim)).unwrap();
    assert_eq!(db.len().unwrap(), want.len());
    assert!(!db.is_empty().unwrap());
    assert_eq!(db.keys().unwrap(), want.keys().cloned().collect::<Vec<_>>());
    let bytes = db.fold(0, |n, k, v| n + k.len() + v.len()).unwrap();
    assert_eq!(
        bytes,
        want.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
    );
    let s = db.stats();
    assert_eq!(s.keys, want.len() as u64);
    assert_eq!(s.files, db.segments().len() as u64);
    assert!(s.dead_bytes > 0 && s.dead_bytes < s.total_bytes, "{s:?}");
    db.compact().unwrap();
    let after = db.stats();
    assert_eq!(after.keys, want.len() as u64);
    assert!(after.dead_bytes < s.dead_bytes, "{s:?} -> {after:?}");
}

/// `stats` counts record bytes: the active segment's preallocated zeros are neither total nor
/// dead bytes (one small key in a fresh store is not "1 MiB dead, fragmentation 1.0").
#[test]
fn stats_count_records_not_preallocated_space() {
    let sim = SimFs::new();
    let db = LsmHash::open("/db", Options::default().with_fs(sim.durable())).unwrap();
    db.put(b"k", b"v").unwrap();
    let s = db.stats();
    assert_eq!((s.total_bytes, s.dead_bytes), (32 + 1 + 1, 0), "{s:?}");
    db.put(b"k", b"w").unwrap();
    let s = db.stats();
    assert_eq!((s.total_bytes, s.dead_bytes), (2 * 34, 34), "{s:?}");
    assert!((s.fragmentation() - 0.5).abs() < 1e-9);
    db.close().unwrap();
    let ro = LsmHash::open(
        "/db",
        Options::default()
            .with_fs(sim.durable())
            .with_read_only(true),
    );
    let s = ro.unwrap().stats();
    assert_eq!(
        (s.total_bytes, s.dead_bytes),
        (2 * 34 + 32, 34 + 32),
        "read-only: the same records, and the seal `close` wrote (not a live record)"
    );
}

/// A read-write open removes the store's own temporaries (the manifest's, an index's) and
/// leftover segments; a directory that also holds a user's file is refused by every open,
/// naming it, with nothing changed; a stray index name never advances the segment ids (new
/// segments keep ten-digit names the next open reads).
#[test]
fn open_removes_only_the_stores_own_files_and_stray_names_do_not_advance_ids() {
    let sim = SimFs::new();
    let fs = sim.durable();
    let want = store(&sim);
    for name in [
        "draft.tmp",
        "MANIFEST.tmp",
        "0000000002.idx.tmp",
        "9999999999.idx",
    ] {
        fs.atomic_replace(&Path::new("/db").join(name), b"x")
            .unwrap();
    }
    let mut before = fs.list(Path::new("/db")).unwrap();
    before.sort();
    for read_only in [false, true] {
        match LsmHash::open("/db", opts(&sim).with_read_only(read_only)) {
            Err(Error::Store(durable_fs::StoreError::ForeignFile { path, .. })) => {
                assert!(path.ends_with("draft.tmp"), "{}", path.display());
            }
            other => panic!("expected ForeignFile, got {:?}", other.map(|_| ())),
        }
        let mut after = fs.list(Path::new("/db")).unwrap();
        after.sort();
        assert_eq!(after, before, "a refused open changed the directory");
    }
    fs.remove_file(Path::new("/db/draft.tmp")).unwrap();
    let db = LsmHash::open("/db", opts(&sim)).unwrap();
    for i in 0..60u32 {
        db.put(format!("new{i:02}").as_bytes(), &[7; 90]).unwrap(); // freezes segments
    }
    db.close().unwrap();
    let names = fs.list(Path::new("/db")).unwrap();
    for gone in ["MANIFEST.tmp", "0000000002.idx.tmp", "9999999999.idx"] {
        assert!(
            !names.contains(&gone.to_owned()),
            "{gone} stayed: {names:?}"
        );
    }
    let segments: Vec<&String> = names.iter().filter(|n| n.ends_with(".seg")).collect();
    assert!(
        segments.iter().all(|n| n.len() == 14),
        "ten-digit ids: {names:?}"
    );
    let db = LsmHash::open("/db", opts(&sim)).unwrap();
    let got: BTreeMap<Vec<u8>, Vec<u8>> = db.iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(got.len(), want.len() + 60);
    assert_eq!(db.get(b"new59").unwrap(), Some(vec![7; 90]));
}

/// A segment named at the ten-digit limit is refused by a read-write open before anything is
/// removed or cut (the stray file is still there to inspect); a read-only open, which
/// allocates no id, still reads the store.
#[test]
fn a_segment_id_at_the_limit_is_refused_before_anything_changes() {
    let sim = SimFs::new();
    let fs = sim.durable();
    let want = store(&sim);
    let stray = Path::new("/db").join(segment_name(9_999_999_999));
    fs.atomic_replace(&stray, b"not a segment").unwrap();
    match LsmHash::open("/db", opts(&sim)) {
        Err(Error::Corruption { path, .. }) => assert_eq!(path, stray),
        other => panic!("expected OutOfRange, got {other:?}"),
    }
    assert!(fs.exists(&stray).unwrap(), "removed before refusing");
    let db = LsmHash::open("/db", opts(&sim).with_read_only(true)).unwrap();
    let got: BTreeMap<Vec<u8>, Vec<u8>> = db.iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(got, want);
}
