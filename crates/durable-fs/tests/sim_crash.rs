//! Proves the simulated filesystem models durability, not only errors: for each namespace
//! operation, the change survives a strict power cut when `DurableFs` syncs the directory,
//! and is undone when the directory sync lies (the bug this workspace exists to prevent).
//! Also proves torn mode really produces partial appends and garbage or zeroed tails, so the
//! engines' torture tests face them.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::path::Path;

use durable_fs::DurableFs;
use durable_fs::sim::{CrashMode, SimFs};

fn sim(lying: bool) -> (SimFs, DurableFs) {
    let sim = SimFs::new();
    let fs = sim.durable();
    fs.create_dir_all(Path::new("/db")).unwrap();
    sim.set_lying_dir_sync(lying);
    (sim, fs)
}

fn write_synced(fs: &DurableFs, path: &str, data: &[u8]) {
    let f = fs.create_new(Path::new(path)).unwrap();
    f.append(data).unwrap();
    f.sync_data().unwrap();
}

#[test]
fn created_file_survives_strict_crash_only_with_directory_sync() {
    for lying in [false, true] {
        let (sim, fs) = sim(lying);
        write_synced(&fs, "/db/a", b"data");
        let after = sim.crash(CrashMode::Strict, 1).durable();
        let got = after.read(Path::new("/db/a"));
        if lying {
            assert!(
                got.unwrap_err().is_not_found(),
                "without the dir sync the file must be gone"
            );
        } else {
            assert_eq!(got.unwrap(), b"data");
        }
    }
}

#[test]
fn renamed_file_survives_only_with_directory_sync() {
    for lying in [false, true] {
        let (sim, fs) = sim(false);
        write_synced(&fs, "/db/old", b"v1");
        sim.set_lying_dir_sync(lying);
        fs.rename(Path::new("/db/old"), Path::new("/db/new"))
            .unwrap();
        let after = sim.crash(CrashMode::Strict, 1).durable();
        let names = after.list(Path::new("/db")).unwrap();
        if lying {
            assert_eq!(names, ["old"], "an unsynced rename is undone");
        } else {
            assert_eq!(names, ["new"]);
            assert_eq!(after.read(Path::new("/db/new")).unwrap(), b"v1");
        }
    }
}

#[test]
fn removed_file_stays_removed_only_with_directory_sync() {
    for lying in [false, true] {
        let (sim, fs) = sim(false);
        write_synced(&fs, "/db/gone", b"x");
        sim.set_lying_dir_sync(lying);
        fs.remove_file(Path::new("/db/gone")).unwrap();
        let after = sim.crash(CrashMode::Strict, 1).durable();
        assert_eq!(
            after.exists(Path::new("/db/gone")).unwrap(),
            lying,
            "lying={lying}"
        );
    }
}

#[test]
fn created_directories_survive_only_with_directory_sync() {
    for lying in [false, true] {
        let sim = SimFs::new();
        sim.set_lying_dir_sync(lying);
        sim.durable().create_dir_all(Path::new("/a/b/c")).unwrap();
        let after = sim.crash(CrashMode::Strict, 1).durable();
        assert_eq!(after.exists(Path::new("/a/b/c")).unwrap(), !lying);
    }
}

#[test]
fn atomic_replace_gives_old_or_new_never_a_mix() {
    for lying in [false, true] {
        let (sim, fs) = sim(false);
        fs.atomic_replace(Path::new("/db/M"), b"old").unwrap();
        sim.set_lying_dir_sync(lying);
        fs.atomic_replace(Path::new("/db/M"), b"new").unwrap();
        for mode in [CrashMode::Strict, CrashMode::Torn] {
            for seed in 0..20 {
                let after = sim.crash_image(mode, seed);
                let got = after.durable().read(Path::new("/db/M")).unwrap();
                if lying {
                    assert!(got == b"old" || got == b"new", "{got:?}");
                } else {
                    assert_eq!(got, b"new");
                }
            }
        }
    }
}

#[test]
fn unsynced_appends_vanish_in_strict_mode() {
    let (sim, fs) = sim(false);
    let f = fs.create_new(Path::new("/db/log")).unwrap();
    f.append(b"synced").unwrap();
    f.sync_data().unwrap();
    f.append(b"-not-synced").unwrap();
    let after = sim.crash(CrashMode::Strict, 1).durable();
    assert_eq!(after.read(Path::new("/db/log")).unwrap(), b"synced");
}

#[test]
fn torn_mode_keeps_partial_appends_with_garbage_or_zero_tails() {
    let mut saw_prefix_only = false;
    let mut saw_all = false;
    let mut saw_cut = false;
    let mut saw_garbage = false;
    let mut saw_zeros = false;
    let record = vec![0xAAu8; 1000];
    for seed in 0..200 {
        let (sim, fs) = sim(false);
        let f = fs.create_new(Path::new("/db/log")).unwrap();
        f.append(b"synced").unwrap();
        f.sync_data().unwrap();
        for _ in 0..3 {
            f.append(&record).unwrap();
        }
        let got = sim
            .crash(CrashMode::Torn, seed)
            .durable()
            .read(Path::new("/db/log"))
            .unwrap();
        assert_eq!(&got[..6], b"synced", "synced data always survives");
        let tail = &got[6..];
        assert!(tail.len() <= 3000);
        if tail.is_empty() {
            saw_prefix_only = true;
        } else if tail.len() == 3000 && tail.iter().all(|&b| b == 0xAA) {
            saw_all = true;
        }
        if tail.len() % 1000 != 0 {
            saw_cut = true;
            let last = tail.iter().rposition(|&b| b == 0xAA).unwrap_or(0);
            let after_cut = &tail[last + 1..];
            if after_cut.iter().any(|&b| b != 0 && b != 0xAA) {
                saw_garbage = true;
            }
            if !after_cut.is_empty() && after_cut.iter().all(|&b| b == 0) {
                saw_zeros = true;
            }
        }
    }
    assert!(
        saw_prefix_only && saw_all && saw_cut,
        "{saw_prefix_only} {saw_all} {saw_cut}"
    );
    assert!(
        saw_garbage && saw_zeros,
        "garbage {saw_garbage} zeros {saw_zeros}"
    );
}

#[test]
fn torn_mode_keeps_a_prefix_of_directory_changes() {
    let mut counts = std::collections::BTreeSet::new();
    for seed in 0..100 {
        let (sim, fs) = sim(true);
        for name in ["/db/1", "/db/2", "/db/3"] {
            write_synced(&fs, name, b"x");
        }
        let after = sim.crash(CrashMode::Torn, seed).durable();
        let names = after.list(Path::new("/db")).unwrap();
        let expect: Vec<String> = (1..=names.len()).map(|i| i.to_string()).collect();
        assert_eq!(names, expect, "a prefix, in order");
        counts.insert(names.len());
    }
    assert_eq!(
        counts.len(),
        4,
        "every prefix length 0..=3 appears: {counts:?}"
    );
}

#[test]
fn crash_at_operation_k_stops_everything_after_it() {
    // create_new is three counted operations: create, file fsync, parent fsync.
    for (k, survives) in [(0, false), (1, false), (2, false), (3, true)] {
        let (sim, fs) = sim(false);
        sim.schedule_crash_at(sim.op_count() + k);
        let created = fs.create_new(Path::new("/db/f"));
        assert_eq!(created.is_ok(), survives, "k={k}");
        if let Ok(f) = &created {
            assert!(
                f.append(b"x").is_err(),
                "the op after the crash point fails"
            );
        }
        assert!(sim.has_crashed());
        assert!(fs.list(Path::new("/db")).is_err(), "the machine is off");
        let after = sim.crash(CrashMode::Strict, 0).durable();
        assert_eq!(after.exists(Path::new("/db/f")).unwrap(), survives, "k={k}");
    }
}

#[test]
fn bit_flip_damages_stored_bytes() {
    let (sim, fs) = sim(false);
    write_synced(&fs, "/db/f", &[0u8; 4]);
    sim.flip_bit(Path::new("/db/f"), 2, 3).unwrap();
    assert_eq!(fs.read(Path::new("/db/f")).unwrap(), [0, 0, 8, 0]);
    let after = sim.crash(CrashMode::Strict, 0).durable();
    assert_eq!(after.read(Path::new("/db/f")).unwrap(), [0, 0, 8, 0]);
    assert!(
        sim.flip_bit(Path::new("/db/f"), 4, 0).is_err(),
        "past the end"
    );
}

#[test]
fn same_seed_gives_same_torn_image() {
    let build = || {
        let (sim, fs) = sim(true);
        let f = fs.create_new(Path::new("/db/f")).unwrap();
        for i in 0..50u8 {
            f.append(&[i; 100]).unwrap();
        }
        sim
    };
    for seed in 0..10 {
        let a = build().crash(CrashMode::Torn, seed).durable();
        let b = build().crash(CrashMode::Torn, seed).durable();
        assert_eq!(
            a.list(Path::new("/db")).unwrap(),
            b.list(Path::new("/db")).unwrap()
        );
        if a.exists(Path::new("/db/f")).unwrap() {
            assert_eq!(
                a.read(Path::new("/db/f")).unwrap(),
                b.read(Path::new("/db/f")).unwrap()
            );
        }
    }
}

/// `DurableFs::quarantine` keeps the cut bytes without their trailing zeros, durably (they
/// survive a strict power cut right after it returns), names them by file, offset and CRC,
/// keeps nothing for zeros only, rewrites the same cut identically, and never overwrites an
/// earlier, different cut at the same offset.
#[test]
fn quarantine_keeps_cut_bytes_durably_and_never_overwrites_another_cut() {
    let sim = SimFs::new();
    let fs = sim.durable();
    fs.create_dir_all(Path::new("/db")).unwrap();
    let file = Path::new("/db/0000000003.data");
    assert_eq!(
        fs.quarantine(Path::new("/db"), file, 40, &[0, 0, 0])
            .unwrap(),
        None
    );
    let kept = fs
        .quarantine(Path::new("/db"), file, 40, &[7, 0, 9, 0, 0])
        .unwrap()
        .unwrap();
    let crc = crc32fast::hash(&[7, 0, 9]);
    let want = format!("/db/quarantine/0000000003.data.40.{crc:08x}");
    assert_eq!(kept, Path::new(&want));
    let again = fs
        .quarantine(Path::new("/db"), file, 40, &[7, 0, 9])
        .unwrap();
    assert_eq!(again.as_deref(), Some(kept.as_path()));
    let other = fs
        .quarantine(Path::new("/db"), file, 40, &[5, 5])
        .unwrap()
        .unwrap();
    assert_ne!(other, kept);
    let after = sim.crash(CrashMode::Strict, 1).durable();
    assert_eq!(after.read(&kept).unwrap(), vec![7, 0, 9]);
    assert_eq!(after.read(&other).unwrap(), vec![5, 5]);
}
