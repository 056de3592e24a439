//! Operator safety of the `durable` command line (shared/DESIGN.md, the `wal` and `kv`
//! sections): every read command (`kv get|dump|verify|stats`, `wal dump|verify`), for every
//! engine, leaves the directory exactly as it was (names, sizes and contents, snapshotted
//! before and after) on: a healthy store, a store with a torn tail, a store held by a running
//! writer, every crash state of an interrupted merge / compaction / truncation, an empty
//! directory, a directory of other files, a store of another engine, and a directory that
//! does not exist. What they print and their exit codes are checked too: stores answer (a torn
//! tail is a note, exit 0), everything that is not a store of that engine is exit 2.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use durable_fs::sim::{CrashMode, SimFs};
use durable_fs::{Access, DurableFs, EntryKind};
use kv_core::KvStore;

fn durable(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_durable"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every entry under `dir`, recursively: path, and for files their bytes. `None` when `dir`
/// does not exist.
fn snapshot(dir: &Path) -> Option<BTreeMap<PathBuf, Option<Vec<u8>>>> {
    let fs = DurableFs::real();
    fs.kind(dir).unwrap()?;
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for n in fs.list(&d).unwrap() {
            let p = d.join(n);
            match fs.kind(&p).unwrap() {
                Some(EntryKind::Dir) => {
                    out.insert(p.clone(), None);
                    todo.push(p);
                }
                _ => {
                    out.insert(p.clone(), Some(fs.read(&p).unwrap()));
                }
            }
        }
    }
    Some(out)
}

/// Copies the simulated directory `from` of `sim` (a crash image) to the real `to`.
fn materialize(sim: &SimFs, from: &Path, to: &Path) {
    let (sfs, real) = (sim.durable(), DurableFs::real());
    real.create_dir_all(to).unwrap();
    for n in sfs.list(from).unwrap() {
        let (src, dst) = (from.join(&n), to.join(&n));
        match sfs.kind(&src).unwrap() {
            Some(EntryKind::Dir) => materialize(sim, &src, &dst),
            _ => {
                let bytes = sfs.read(&src).unwrap();
                let f = real.create_new(&dst).unwrap();
                f.write_all_at(&bytes, 0).unwrap();
            }
        }
    }
}

/// The engines, as the command line names them.
const ENGINES: [&str; 3] = ["wal", "bitcask", "lsm-hash"];

/// The read commands of `engine` on `dir`: with the engine named, and (kv) detected.
fn read_commands(engine: &str, dir: &str) -> Vec<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    if engine == "wal" {
        return vec![
            s(&["wal", "dump", "--dir", dir]),
            s(&["wal", "verify", "--dir", dir]),
        ];
    }
    let mut out = Vec::new();
    for cmd in [&["get", "k1"][..], &["dump"], &["verify"], &["stats"]] {
        out.push([s(&["kv", "--engine", engine, "--dir", dir]), s(cmd)].concat());
        out.push([s(&["kv", "--dir", dir]), s(cmd)].concat());
    }
    out
}

/// Runs every read command of `engine` on `dir`, checks that none changed anything, and
/// returns their outputs.
fn run_reads(engine: &str, dir: &Path, what: &str) -> Vec<(Vec<String>, Output)> {
    let d = dir.to_str().unwrap();
    let mut outs = Vec::new();
    for cmd in read_commands(engine, d) {
        let before = snapshot(dir);
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let o = durable(&args);
        assert_eq!(
            snapshot(dir),
            before,
            "{what}: `durable {}` changed the directory",
            cmd.join(" ")
        );
        outs.push((cmd, o));
    }
    outs
}

/// Writes a store of `engine` in `dir` through the library: keys k0..k{n}, value `v<i>` (for
/// the WAL: records `r<i>`), closed cleanly.
fn build(engine: &str, dir: &Path, n: u32) {
    match engine {
        "wal" => {
            let log = open_wal(dir);
            for i in 0..n {
                log.append(format!("r{i}").as_bytes()).unwrap();
            }
            log.close().unwrap();
        }
        _ => {
            let db = open_writer(engine, dir);
            for i in 0..n {
                put(&*db, format!("k{i}").as_bytes(), format!("v{i}").as_bytes());
            }
            db.close().unwrap();
        }
    }
}

fn put(db: &dyn KvStore, k: &[u8], v: &[u8]) {
    let mut b = kv_core::WriteBatch::new();
    b.put(k, v);
    db.write(b).unwrap();
}

/// Opens the WAL in `dir`, retrying `Locked` as [`open_writer`] does.
fn open_wal(dir: &Path) -> wal::Wal {
    for _ in 0..100 {
        match wal::Wal::open(dir, wal::Options::default()) {
            Err(wal::Error::Locked { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other.unwrap(),
        }
    }
    panic!("{}: still locked after a second", dir.display());
}

/// Opens a writer, retrying `Locked` for up to a second: the tests of this file spawn `durable`
/// processes from parallel threads, and a process forked while this one held a store's lock
/// keeps the lock's open file (and so the `flock`) until it execs, a moment after this
/// process closed the store. Any other error fails at once.
fn open_writer(engine: &str, dir: &Path) -> Box<dyn KvStore> {
    for _ in 0..100 {
        let opened: Result<Box<dyn KvStore>, kv_core::Error> = match engine {
            "bitcask" => bitcask::Bitcask::open(dir, bitcask::Options::default())
                .map(|d| Box::new(d) as Box<dyn KvStore>),
            _ => lsm_hash::LsmHash::open(dir, lsm_hash::Options::default())
                .map(|d| Box::new(d) as Box<dyn KvStore>),
        };
        match opened {
            Err(kv_core::Error::Locked { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other.unwrap(),
        }
    }
    panic!("{}: still locked after a second", dir.display());
}

/// The file a torn tail would be in: the WAL's last segment, the kv stores' newest data file.
fn newest_file(engine: &str, dir: &Path) -> PathBuf {
    let ext = match engine {
        "wal" => ".wal",
        "bitcask" => ".data",
        _ => ".seg",
    };
    let mut names: Vec<String> = DurableFs::real()
        .list(dir)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(ext))
        .collect();
    names.sort();
    dir.join(names.pop().unwrap())
}

/// Where a record's bytes end in a preallocated file: the last non-zero byte, plus one.
fn end_of_data(path: &Path) -> u64 {
    let bytes = DurableFs::real().read(path).unwrap();
    bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i as u64 + 1)
}

fn expect_ok(outs: &[(Vec<String>, Output)], what: &str) {
    for (cmd, o) in outs {
        assert_eq!(
            o.status.code(),
            Some(0),
            "{what}: `durable {}`: {}",
            cmd.join(" "),
            text(&o.stderr)
        );
    }
}

fn expect_refused(outs: &[(Vec<String>, Output)], what: &str) {
    for (cmd, o) in outs {
        assert_eq!(
            o.status.code(),
            Some(2),
            "{what}: `durable {}` was not refused: {} {}",
            cmd.join(" "),
            text(&o.stdout),
            text(&o.stderr)
        );
        assert!(o.stdout.is_empty(), "{what}: stdout on a refusal");
    }
}

#[test]
fn healthy_store_torn_tail_and_a_running_writer() {
    for engine in ENGINES {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        build(engine, &dir, 20);
        let outs = run_reads(engine, &dir, &format!("{engine} healthy"));
        expect_ok(&outs, &format!("{engine} healthy"));
        for (cmd, o) in &outs {
            assert!(
                o.stderr.is_empty(),
                "{engine} healthy: `durable {}` said {}",
                cmd.join(" "),
                text(&o.stderr)
            );
        }

        // Garbage where the next record would go: a torn tail, left out (nothing cut) by the
        // readers, a note (exit 0) from verify naming the file and offset.
        let newest = newest_file(engine, &dir);
        let at = end_of_data(&newest);
        let f = DurableFs::real().open(&newest, Access::ReadWrite).unwrap();
        f.write_all_at(&[0x5A; 9], at).unwrap();
        f.sync_data().unwrap();
        let what = format!("{engine} torn tail");
        let outs = run_reads(engine, &dir, &what);
        expect_ok(&outs, &what);
        for (cmd, o) in &outs {
            let err = text(&o.stderr);
            assert!(
                err.contains(&newest.display().to_string()),
                "{what}: `durable {}` did not name the tail: {err:?}",
                cmd.join(" ")
            );
            if cmd.contains(&"verify".to_owned()) {
                assert!(err.contains("note: torn tail"), "{what}: {err}");
                assert!(text(&o.stdout).starts_with("ok "), "{what}");
            }
        }

        // Beside a running writer, which keeps writing between the commands.
        let tmp2 = tempfile::tempdir().unwrap();
        let dir = tmp2.path().join("s");
        build(engine, &dir, 5);
        let what = format!("{engine} held by a writer");
        if engine == "wal" {
            let log = open_wal(&dir);
            log.append(b"more").unwrap();
            let outs = run_reads(engine, &dir, &what);
            expect_ok(&outs, &what);
            assert!(text(&outs[0].1.stdout).contains("6 more\n"), "{what}");
            log.close().unwrap();
        } else {
            let db = open_writer(engine, &dir);
            put(&*db, b"k1", b"new");
            let outs = run_reads(engine, &dir, &what);
            expect_ok(&outs, &what);
            assert_eq!(text(&outs[0].1.stdout), "new\n", "{what}");
            db.close().unwrap();
        }
    }
}

#[test]
fn not_a_store_of_this_engine_is_refused_and_left_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = DurableFs::real();
    let empty = tmp.path().join("empty");
    fs.create_dir_all(&empty).unwrap();
    let other_files = tmp.path().join("other");
    fs.create_dir_all(&other_files).unwrap();
    fs.atomic_replace(&other_files.join("draft.tmp"), b"mine")
        .unwrap();
    fs.atomic_replace(&other_files.join("0000000001.data"), b"a user's file")
        .unwrap();
    let missing = tmp.path().join("missing");
    let stores: Vec<(&str, PathBuf)> = ENGINES
        .iter()
        .map(|e| {
            let d = tmp.path().join(format!("store-{e}"));
            build(e, &d, 3);
            (*e, d)
        })
        .collect();
    // A store with a user's file in it is no longer only a store.
    let mixed = tmp.path().join("mixed");
    build("bitcask", &mixed, 3);
    fs.atomic_replace(&mixed.join("notes.txt"), b"mine")
        .unwrap();
    for engine in ENGINES {
        for (what, dir) in [
            ("an empty directory", &empty),
            ("a directory of other files", &other_files),
            ("a missing directory", &missing),
            ("a store with a user's file", &mixed),
        ] {
            let outs = run_reads(engine, dir, &format!("{engine} on {what}"));
            expect_refused(&outs, &format!("{engine} on {what}"));
        }
        assert!(!fs.exists(&missing).unwrap());
        for (other, dir) in &stores {
            if *other == engine {
                continue;
            }
            // With the engine named: refused. Without it (kv): detected, so only a kv
            // command on the WAL (or `wal` on a kv store) is refused.
            let what = format!("{engine} on a {other} store");
            let outs = run_reads(engine, dir, &what);
            for (cmd, o) in &outs {
                let named = cmd.contains(&"--engine".to_owned()) || engine == "wal";
                if named || *other == "wal" {
                    assert_eq!(o.status.code(), Some(2), "{what}: `{}`", cmd.join(" "));
                    assert!(
                        text(&o.stderr).contains(other),
                        "{what}: {}",
                        text(&o.stderr)
                    );
                } else {
                    assert_eq!(o.status.code(), Some(0), "{what}: `{}`", cmd.join(" "));
                }
            }
        }
    }
    // And the writers refuse too, without creating anything.
    for (dir, engine) in [(&other_files, "bitcask"), (&mixed, "lsm-hash")] {
        let before = snapshot(dir);
        let d = dir.to_str().unwrap();
        let o = durable(&["kv", "--engine", engine, "--dir", d, "put", "a", "1"]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
        let o = durable(&["wal", "truncate", "--dir", d, "--before", "1"]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
        assert_eq!(snapshot(dir), before, "a refused writer changed {d}");
    }
    let d = stores[0].1.to_str().unwrap();
    let o = durable(&["kv", "--engine", "bitcask", "--dir", d, "put", "a", "1"]);
    assert_eq!(o.status.code(), Some(2), "kv put on a WAL");
    // Only `load` and `put` (and `wal append`) create a store: `del`, `merge` and
    // `wal truncate` on a missing or empty directory are refused and create nothing.
    let m = missing.to_str().unwrap();
    for cmd in [&["del", "k"][..], &["merge"]] {
        let o = durable(&[&["kv", "--engine", "bitcask", "--dir", m][..], cmd].concat());
        assert_eq!(o.status.code(), Some(2), "{cmd:?} on a missing directory");
        assert!(!fs.exists(&missing).unwrap(), "{cmd:?} created {m}");
    }
    let e = empty.to_str().unwrap();
    let before = snapshot(&empty);
    let o = durable(&["wal", "truncate", "--dir", e, "--before", "1"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "wal truncate on an empty directory"
    );
    let o = durable(&["kv", "--engine", "lsm-hash", "--dir", e, "del", "k"]);
    assert_eq!(o.status.code(), Some(2), "kv del on an empty directory");
    assert_eq!(
        snapshot(&empty),
        before,
        "a refused writer changed the empty directory"
    );
}

/// Every crash state (strict and torn) of a bitcask merge, an lsm-hash compaction and a WAL
/// rotation + truncation, copied to a real directory: every read command answers (exit 0),
/// with every record, and changes nothing.
#[test]
fn every_crash_state_of_a_merge_compaction_or_truncation_reads_and_stays_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let mut states = 0u64;
    for engine in ENGINES {
        let sim = SimFs::new();
        let journal = match engine {
            "wal" => {
                let o = wal::Options::default()
                    .with_fs(sim.durable())
                    .with_max_segment_bytes(4096)
                    .with_preallocate_bytes(0);
                let log = wal::Wal::open("/db", o).unwrap();
                for i in 0..60u32 {
                    log.append(format!("r{i}-{}", "x".repeat(100)).as_bytes())
                        .unwrap();
                }
                sim.start_journal();
                for i in 60..80u32 {
                    log.append(format!("r{i}-{}", "x".repeat(100)).as_bytes())
                        .unwrap();
                }
                log.truncate_before(40).unwrap();
                log.close().unwrap();
                sim.journal().unwrap()
            }
            _ => {
                let db: Box<dyn KvStore> = if engine == "bitcask" {
                    let o = bitcask::Options::default()
                        .with_fs(sim.durable())
                        .with_max_file_bytes(4096)
                        .with_preallocate_bytes(0);
                    Box::new(bitcask::Bitcask::open("/db", o).unwrap())
                } else {
                    let o = lsm_hash::Options::default()
                        .with_fs(sim.durable())
                        .with_max_file_bytes(4096)
                        .with_preallocate_bytes(0);
                    Box::new(lsm_hash::LsmHash::open("/db", o).unwrap())
                };
                for round in 0..3 {
                    for i in 0..30u32 {
                        let v = format!("v{round}-{i}");
                        put(&*db, format!("k{i}").as_bytes(), v.as_bytes());
                    }
                }
                sim.start_journal();
                db.compact().unwrap();
                db.close().unwrap();
                sim.journal().unwrap()
            }
        };
        let want_dump: String = if engine == "wal" {
            String::new()
        } else {
            let mut keys: Vec<String> = (0..30).map(|i| format!("k{i} v2-{i}\n")).collect();
            keys.sort();
            keys.concat()
        };
        let points: Vec<u64> = (0..=journal.len()).collect();
        for mode in [CrashMode::Strict, CrashMode::Torn] {
            journal.for_each_crash(
                &points,
                mode,
                |k| k,
                |k, image| {
                    states += 1;
                    let dir = tmp.path().join(format!("{engine}-{mode:?}-{k}"));
                    materialize(&image, Path::new("/db"), &dir);
                    let what = format!("{engine} {mode:?} crash state {k}");
                    let outs = run_reads(engine, &dir, &what);
                    expect_ok(&outs, &what);
                    for (cmd, o) in &outs {
                        let out = text(&o.stdout);
                        if cmd.contains(&"dump".to_owned()) && engine != "wal" {
                            assert_eq!(out, want_dump, "{what}: `{}`", cmd.join(" "));
                        }
                        if engine == "wal" && cmd[1] == "dump" {
                            // Consecutive LSNs from at most 40 (truncate_before(40) keeps
                            // it) through every record acknowledged before the journal.
                            let lsns: Vec<u64> = out
                                .lines()
                                .map(|l| {
                                    let (lsn, payload) = l.split_once(' ').unwrap();
                                    let lsn: u64 = lsn.parse().unwrap();
                                    assert!(payload.starts_with(&format!("r{}-", lsn - 1)));
                                    lsn
                                })
                                .collect();
                            assert!(lsns[0] <= 40 && *lsns.last().unwrap() >= 60, "{what}");
                            assert!(lsns.windows(2).all(|w| w[1] == w[0] + 1), "{what}");
                        }
                    }
                    DurableFs::real().remove_dir_all(&dir).unwrap();
                },
            );
        }
    }
    assert!(states > 100, "only {states} crash states");
}

/// A read-write open of a new store writes its identity (engine and format), and a store
/// without one (written before identity files) gets it from its next read-write open only.
#[test]
fn read_write_opens_write_the_identity_and_readers_never_do() {
    let fs = DurableFs::real();
    for engine in ENGINES {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        build(engine, &dir, 3);
        let id = fs.read(&dir.join(durable_fs::IDENTITY_FILE)).unwrap();
        let id = durable_fs::Identity::decode(&id).unwrap();
        assert_eq!(id.engine, engine);
        assert_eq!(id.format, kv_core::format::VERSION);
        // As if written before identity files: readers leave it so, a writer adds it.
        fs.remove_file(&dir.join(durable_fs::IDENTITY_FILE))
            .unwrap();
        let outs = run_reads(engine, &dir, &format!("{engine} without identity"));
        expect_ok(&outs, &format!("{engine} without identity"));
        assert!(!fs.exists(&dir.join(durable_fs::IDENTITY_FILE)).unwrap());
        build(engine, &dir, 3);
        assert!(fs.exists(&dir.join(durable_fs::IDENTITY_FILE)).unwrap());
    }
}
