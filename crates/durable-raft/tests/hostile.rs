//! Hostile inputs and races: failed fsyncs, crafted or damaged files, a stale snapshot
//! build racing an install, a snapshot taken while applies and a merge go on.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use durable_fs::sim::{Fault, FaultError, OpKind, SimFs, sim_dir};
use durable_fs::{Access, DurableFs};
use durable_raft::log::{FlushMode, LogCore, LogOptions};
use durable_raft::meta::META_FILE;
use durable_raft::sm::{SmCore, SmOptions};
use durable_raft::snapshot::{MANIFEST_FILE, SnapshotWriter};
use durable_raft::{Entry, Error, LogId, Request, SnapshotMeta, TypeConfig, Vote};
use openraft::{CommittedLeaderId, EntryPayload};

fn id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn put(index: u64, key: &str, value: &str) -> Entry {
    Entry {
        log_id: id(1, index),
        payload: EntryPayload::Normal(Request::Put {
            key: key.into(),
            value: value.into(),
        }),
    }
}

fn log_opts(fs: &DurableFs) -> LogOptions {
    LogOptions::default().with_fs(fs.clone())
}

fn sm_opts(fs: &DurableFs) -> SmOptions {
    SmOptions::default().with_fs(fs.clone())
}

/// Appends and waits for the callback's answer.
fn append(log: &LogCore<TypeConfig>, entries: Vec<Entry>) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    log.append(
        entries,
        Box::new(move |r| tx.send(r.map_err(|e| e.to_string())).unwrap()),
    )
    .map_err(|e| e.to_string())?;
    rx.recv().unwrap()
}

fn corrupt_path(e: &Error) -> Option<PathBuf> {
    match e {
        Error::Corruption { path, .. } => Some(path.clone()),
        _ => None,
    }
}

#[test]
fn a_failed_fsync_fails_the_callback_and_every_later_call() {
    let sim = SimFs::new();
    let fs = sim.durable();
    let dir = sim_dir("raft");
    let log = LogCore::<TypeConfig>::open(&dir, log_opts(&fs)).unwrap();
    append(&log, vec![put(1, "a", "1")]).unwrap();
    sim.inject(Fault::once(
        OpKind::Sync,
        sim.ops_of(OpKind::Sync) + 1,
        FaultError::Eio,
    ));
    let err = append(&log, vec![put(2, "b", "2")]).unwrap_err();
    assert!(err.contains("EIO") || err.contains("Input/output"), "{err}");
    // Fail-stop: nothing after the failure is acknowledged, not even after the fault is gone.
    sim.clear_faults();
    assert!(append(&log, vec![put(3, "c", "3")]).is_err());
    assert!(matches!(
        log.save_vote(&Vote::new(2, 1)),
        Err(Error::Poisoned(_))
    ));
    assert!(matches!(log.truncate(1), Err(Error::Poisoned(_))));
    assert!(matches!(log.purge(id(1, 1)), Err(Error::Poisoned(_))));
    drop(log);
    // Reopened (after a power cut), entry 1 is there.
    let after = sim.crash(durable_fs::sim::CrashMode::Strict, 0);
    let log = LogCore::<TypeConfig>::open(&dir, log_opts(&after.durable())).unwrap();
    assert_eq!(log.entries(1..2).unwrap().len(), 1);
}

#[test]
fn a_failed_fsync_in_the_flusher_thread_is_reported_the_same_way() {
    let sim = SimFs::new();
    let fs = sim.durable();
    let dir = sim_dir("raft");
    let log =
        LogCore::<TypeConfig>::open(&dir, log_opts(&fs).with_flush(FlushMode::Thread)).unwrap();
    sim.inject(Fault::from_nth(
        OpKind::Sync,
        sim.ops_of(OpKind::Sync) + 1,
        FaultError::Eio,
    ));
    assert!(append(&log, vec![put(1, "a", "1")]).is_err());
    assert!(append(&log, vec![put(2, "b", "2")]).is_err());
}

#[test]
fn crafted_raft_meta_is_refused_naming_the_file_without_reading_it_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = DurableFs::real();
    let dir = tmp.path();
    LogCore::<TypeConfig>::open(dir, log_opts(&fs))
        .unwrap()
        .save_vote(&Vote::new(1, 1))
        .unwrap();
    let meta = dir.join(META_FILE);
    // Every byte flipped: refused, naming the file.
    let good = fs.read(&meta).unwrap();
    for at in 0..good.len() {
        let mut bad = good.clone();
        bad[at] ^= 0x40;
        fs.atomic_replace(&meta, &bad).unwrap();
        let e = LogCore::<TypeConfig>::open(dir, log_opts(&fs)).unwrap_err();
        assert_eq!(
            corrupt_path(&e).as_deref(),
            Some(meta.as_path()),
            "byte {at}: {e}"
        );
    }
    // A huge file at the name: refused by its size.
    fs.atomic_replace(&meta, b"").unwrap();
    fs.open(&meta, Access::ReadWrite)
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    let e = LogCore::<TypeConfig>::open(dir, log_opts(&fs)).unwrap_err();
    assert_eq!(corrupt_path(&e).as_deref(), Some(meta.as_path()), "{e}");
}

fn raw_wal(dir: &Path, fs: &DurableFs) -> wal::Wal {
    wal::Wal::open(
        dir.join(durable_raft::log::LOG_SUBDIR),
        wal::Options::default().with_fs(fs.clone()),
    )
    .unwrap()
}

#[test]
fn crafted_entry_records_are_refused_naming_the_lsn() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = DurableFs::real();
    let dir = tmp.path();
    // A record of an unknown version.
    {
        let w = raw_wal(dir, &fs);
        w.append(&[7, 1, 2, 3]).unwrap();
        w.close().unwrap();
    }
    let e = LogCore::<TypeConfig>::open(dir, log_opts(&fs)).unwrap_err();
    assert!(matches!(e, Error::Corruption { offset: 1, .. }), "{e}");
    assert!(e.to_string().contains("version 7"), "{e}");

    // Indexes going back: entry 1, entry 2, then entry 1 again.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let w = raw_wal(dir, &fs);
        for i in [1, 2, 1] {
            let rec = durable_raft::log::encode_entry(&put(i, "k", "v")).unwrap();
            w.append(&rec).unwrap();
        }
        w.close().unwrap();
    }
    let e = LogCore::<TypeConfig>::open(dir, log_opts(&fs)).unwrap_err();
    assert!(matches!(e, Error::Corruption { offset: 3, .. }), "{e}");

    // A log id that does not decode.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let w = raw_wal(dir, &fs);
        w.append(&[
            1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ])
        .unwrap();
        w.close().unwrap();
    }
    let e = LogCore::<TypeConfig>::open(dir, log_opts(&fs)).unwrap_err();
    assert!(matches!(e, Error::Corruption { offset: 1, .. }), "{e}");
}

#[test]
fn the_state_machine_refuses_damage_and_never_overwrites_state() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = DurableFs::real();
    let dir = tmp.path();
    {
        let sm = SmCore::open(dir, sm_opts(&fs)).unwrap();
        sm.apply(vec![put(1, "k", "v")]).unwrap();
        let view = sm.view().unwrap();
        sm.build(view).unwrap();
    }
    let manifest = dir.join(MANIFEST_FILE);
    let good = fs.read(&manifest).unwrap();
    for at in 0..good.len() {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        fs.atomic_replace(&manifest, &bad).unwrap();
        let e = SmCore::open(dir, sm_opts(&fs)).unwrap_err();
        assert_eq!(
            corrupt_path(&e).as_deref(),
            Some(manifest.as_path()),
            "byte {at}: {e}"
        );
    }
    // Without a MANIFEST, a generation directory is refused, not wiped.
    fs.remove_file(&manifest).unwrap();
    let e = SmCore::open(dir, sm_opts(&fs)).unwrap_err();
    assert!(e.to_string().contains("without a MANIFEST"), "{e}");
    assert!(
        fs.exists(&dir.join("gen-1")).unwrap(),
        "the state was removed"
    );
    fs.atomic_replace(&manifest, &good).unwrap();
    // Every byte of the current snapshot flipped: refused naming it.
    let snap = dir.join("snapshots").join("snap-1.snap");
    let good_snap = fs.read(&snap).unwrap();
    for at in (0..good_snap.len()).step_by(3) {
        let mut bad = good_snap.clone();
        bad[at] ^= 0x10;
        fs.atomic_replace(&snap, &bad).unwrap();
        let e = SmCore::open(dir, sm_opts(&fs)).unwrap_err();
        assert_eq!(
            corrupt_path(&e).as_deref(),
            Some(snap.as_path()),
            "byte {at}: {e}"
        );
    }
    // The snapshot the MANIFEST names is gone: refused.
    fs.remove_file(&snap).unwrap();
    assert!(SmCore::open(dir, sm_opts(&fs)).is_err());
    fs.atomic_replace(&snap, &good_snap).unwrap();
    let sm = SmCore::open(dir, sm_opts(&fs)).unwrap();
    assert_eq!(sm.get(b"k").unwrap(), Some(b"v".to_vec()));
}

fn snapshot_bytes(meta: &SnapshotMeta, pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut w = SnapshotWriter::new(meta).unwrap();
    for (k, v) in pairs {
        w.push(k.as_bytes(), v.as_bytes()).unwrap();
    }
    w.finish()
}

fn meta_at(index: u64) -> SnapshotMeta {
    SnapshotMeta {
        last_log_id: Some(id(2, index)),
        last_membership: Default::default(),
        snapshot_id: format!("s{index}"),
    }
}

fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

#[test]
fn crafted_snapshots_are_refused_and_leave_the_state_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = DurableFs::real();
    let sm = SmCore::open(tmp.path(), sm_opts(&fs)).unwrap();
    sm.apply(vec![put(1, "k", "old")]).unwrap();
    let meta = meta_at(10);
    let good = snapshot_bytes(&meta, &[("k", "new")]);
    let body = &good[..good.len() - 4];
    let count_at = body.len() - (8 + 4 + 1 + 4 + 3);
    // A pair count that promises 2^60 pairs, with a valid CRC.
    let mut huge = body.to_vec();
    huge[count_at..count_at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    // A key length past the end.
    let mut long_key = body.to_vec();
    long_key[count_at + 8..count_at + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    // Bytes after the last pair.
    let mut trailing = body.to_vec();
    trailing.push(0);
    let cases = [
        ("huge count", with_crc(huge)),
        ("key past the end", with_crc(long_key)),
        ("trailing bytes", with_crc(trailing)),
        ("cut short", good[..good.len() - 3].to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in cases {
        let e = sm.install(&meta, &bytes).unwrap_err();
        assert!(corrupt_path(&e).is_some(), "{what}: {e}");
        assert_eq!(sm.get(b"k").unwrap(), Some(b"old".to_vec()), "{what}");
    }
    // Metadata that is not the one inside.
    let e = sm.install(&meta_at(11), &good).unwrap_err();
    assert!(e.to_string().contains("not the metadata sent"), "{e}");
    assert_eq!(sm.get(b"k").unwrap(), Some(b"old".to_vec()));
    sm.install(&meta, &good).unwrap();
    assert_eq!(sm.get(b"k").unwrap(), Some(b"new".to_vec()));
    assert_eq!(sm.applied_state().unwrap().0, meta.last_log_id);
}

#[test]
fn a_stale_build_never_replaces_a_newer_installed_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = DurableFs::real();
    let dir = tmp.path();
    let sm = SmCore::open(dir, sm_opts(&fs)).unwrap();
    sm.apply(vec![put(1, "k", "1")]).unwrap();
    let view = sm.view().unwrap();
    // The install waits for the view (it replaces the files the view reads): run it beside.
    let sm2 = sm.clone();
    let newer = meta_at(20);
    let bytes = snapshot_bytes(&newer, &[("k", "20")]);
    let (n2, b2) = (newer.clone(), bytes.clone());
    let install = std::thread::spawn(move || sm2.install(&n2, &b2));
    let (built, _) = sm.build(view).unwrap();
    install.join().unwrap().unwrap();
    assert_eq!(built.last_log_id, Some(id(1, 1)));
    let (current, _) = sm.current_snapshot().unwrap().unwrap();
    assert_eq!(
        current, newer,
        "the stale build replaced the installed snapshot"
    );
    drop(sm);
    let sm = SmCore::open(dir, sm_opts(&fs)).unwrap();
    assert_eq!(sm.current_snapshot().unwrap().unwrap().0, newer);
    assert_eq!(
        fs.list(&dir.join("snapshots")).unwrap().len(),
        1,
        "a leftover snapshot"
    );
    assert_eq!(sm.get(b"k").unwrap(), Some(b"20".to_vec()));
}

#[test]
fn a_snapshot_is_the_state_at_its_view_while_applies_and_a_merge_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = DurableFs::real();
    let sm = SmCore::open(tmp.path(), sm_opts(&fs).with_max_file_bytes(4096)).unwrap();
    let mut index = 0;
    for round in 0..20 {
        let entries = (0..50)
            .map(|k| {
                index += 1;
                put(index, &format!("k{k}"), &format!("r{round}"))
            })
            .collect();
        sm.apply(entries).unwrap();
    }
    let at_view = sm.pairs().unwrap();
    let view = sm.view().unwrap();
    let (sm2, sm3) = (sm.clone(), sm.clone());
    let start = index;
    let writer = std::thread::spawn(move || {
        let mut index = start;
        for round in 20..60 {
            let entries = (0..50)
                .map(|k| {
                    index += 1;
                    put(index, &format!("k{k}"), &format!("r{round}"))
                })
                .collect();
            sm2.apply(entries).unwrap();
        }
    });
    let merger = std::thread::spawn(move || sm3.compact().unwrap());
    let (meta, bytes) = sm.build(view).unwrap();
    writer.join().unwrap();
    merger.join().unwrap();
    assert_eq!(meta.last_log_id, Some(id(1, start)));
    let mut r = durable_raft::snapshot::SnapshotReader::new(&bytes, Path::new("s")).unwrap();
    let mut got = Vec::new();
    while let Some((k, v)) = r.next_pair(Path::new("s")).unwrap() {
        got.push((k.to_vec(), v.to_vec()));
    }
    assert_eq!(got, at_view, "the snapshot is not the state at its view");
    assert_ne!(
        sm.pairs().unwrap(),
        at_view,
        "no apply ran beside the build"
    );
}

#[test]
fn a_request_the_store_cannot_hold_is_the_same_no_op_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = DurableFs::real();
    let sm = SmCore::open(tmp.path(), sm_opts(&fs)).unwrap();
    let big_key = "k".repeat(70_000);
    let r = sm
        .apply(vec![
            put(1, "a", "1"),
            put(2, &big_key, "x"),
            put(3, "b", "2"),
        ])
        .unwrap();
    assert!(r[0].refused.is_none() && r[2].refused.is_none());
    assert!(r[1].refused.as_deref().unwrap().contains("70000"), "{r:?}");
    assert_eq!(sm.applied_state().unwrap().0, Some(id(1, 3)));
    assert_eq!(sm.pairs().unwrap().len(), 2);
    // Not poisoned: the next apply works.
    sm.apply(vec![put(4, "c", "3")]).unwrap();
    assert_eq!(sm.get(b"c").unwrap(), Some(b"3".to_vec()));
}

#[test]
fn a_refused_append_changes_nothing_and_poisons_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = DurableFs::real();
    let opts = log_opts(&fs).with_max_entry_bytes(1024);
    let log = LogCore::<TypeConfig>::open(tmp.path(), opts.clone()).unwrap();
    // Indexes that go back inside one batch, on an empty log.
    let e = append(&log, vec![put(5, "a", "1"), put(3, "b", "2")]).unwrap_err();
    assert!(e.contains("indexes must grow"), "{e}");
    // An entry over the limit.
    let e = append(&log, vec![put(1, "a", &"v".repeat(2000))]).unwrap_err();
    assert!(e.contains("over the limit"), "{e}");
    assert_eq!(log.log_state().unwrap(), (None, None));
    append(&log, vec![put(1, "a", "1"), put(2, "b", "2")]).unwrap();
    // An older leader over existing entries is refused before the truncation it implies.
    let older = Entry {
        log_id: LogId::new(CommittedLeaderId::new(0, 1), 2),
        payload: EntryPayload::Blank,
    };
    assert!(append(&log, vec![older]).is_err());
    assert_eq!(
        log.entries(1..3).unwrap().len(),
        2,
        "the refused append truncated"
    );
    drop(log);
    let log = LogCore::<TypeConfig>::open(tmp.path(), opts).unwrap();
    assert_eq!(log.log_state().unwrap().1, Some(id(1, 2)));
}

#[test]
fn a_missing_generation_or_an_exhausted_counter_is_corruption_not_a_reset() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = DurableFs::real();
    let dir = tmp.path();
    {
        let sm = SmCore::open(dir, sm_opts(&fs)).unwrap();
        sm.apply(vec![put(1, "k", "v")]).unwrap();
    }
    fs.remove_dir_all(&dir.join("gen-1")).unwrap();
    let e = SmCore::open(dir, sm_opts(&fs)).unwrap_err();
    assert_eq!(
        corrupt_path(&e).as_deref(),
        Some(dir.join(MANIFEST_FILE).as_path()),
        "{e}"
    );

    // A MANIFEST (valid CRC) naming snapshot u64::MAX, which exists: no overflow.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    SmCore::open(dir, sm_opts(&fs)).unwrap();
    let seq = u64::MAX;
    let bytes = snapshot_bytes(&meta_at(1), &[]);
    fs.atomic_replace(
        &dir.join("snapshots").join(format!("snap-{seq}.snap")),
        &bytes,
    )
    .unwrap();
    let m = durable_raft::snapshot::Manifest {
        generation: 1,
        snapshot: seq,
    };
    m.store(&fs, dir).unwrap();
    let e = SmCore::open(dir, sm_opts(&fs)).unwrap_err();
    assert!(corrupt_path(&e).is_some(), "{e}");
}

#[test]
fn a_crash_while_creating_the_state_machine_is_finished_at_the_next_open() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = DurableFs::real();
    let dir = tmp.path();
    fs.create_dir_all(dir).unwrap();
    // What a crash after the first MANIFEST (generation 0) and a half-made gen-1 leaves.
    durable_raft::snapshot::Manifest::default()
        .store(&fs, dir)
        .unwrap();
    fs.create_dir_all(&dir.join("gen-1")).unwrap();
    fs.atomic_replace(&dir.join("gen-1").join("junk"), b"half")
        .unwrap();
    let sm = SmCore::open(dir, sm_opts(&fs)).unwrap();
    sm.apply(vec![put(1, "k", "v")]).unwrap();
    drop(sm);
    let sm = SmCore::open(dir, sm_opts(&fs)).unwrap();
    assert_eq!(sm.get(b"k").unwrap(), Some(b"v".to_vec()));
}
