//! Proves the `durable` command-line contract (shared/DESIGN.md) for every subcommand:
//! stdout carries exactly the documented lines, exit 0 on success, 1 when a check fails
//! (verify on a damaged file, naming file and offset; get of a missing key), 2 on bad usage or
//! an error (missing directory, locked directory, bad input line). `durable torture` is
//! the project's promise in one command: 0 with real directory syncs, 1 (with the losses in
//! its table) when directory syncs lie.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::process::{Command, Output};

fn durable(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_durable"))
        .args(args)
        .env_remove("SEED")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn help_and_version_succeed() {
    let o = durable(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("torture"));
    let o = durable(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("durable "));
}

#[test]
fn bad_usage_exits_2_with_a_message_on_stderr() {
    for args in [
        &["no-such-command"][..],
        &["torture", "--mode", "sideways"],
        &["torture", "--engine", "no-such-engine"],
        &["torture", "--seeds", "0"],
    ] {
        let o = durable(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(!o.stderr.is_empty(), "{args:?}");
        assert!(o.stdout.is_empty(), "{args:?}: {}", stdout(&o));
    }
}

/// Parses the torture table: one row per engine and mode, columns by header name.
fn rows(out: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut lines = out.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split_whitespace().map(String::from))
                .collect()
        })
        .collect()
}

#[test]
fn torture_passes_with_real_directory_syncs() {
    let o = durable(&["torture", "--seeds", "2"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let rows = rows(&stdout(&o));
    assert!(rows.len() >= 2, "strict and torn rows for every engine");
    for r in &rows {
        assert_eq!(r["lost"], "0", "{r:?}");
        assert_eq!(r["recovery-errors"], "0", "{r:?}");
        assert!(r["crash-states"].parse::<u64>().unwrap() > 10, "{r:?}");
        assert!(r["acked-checked"].parse::<u64>().unwrap() > 10, "{r:?}");
    }
}

/// Bit rot after the last sync (`--mode rot`): one row per engine; every crash state either
/// recovers everything acknowledged, refuses naming the damaged file (`rot-refused`), or cuts
/// the damage and keeps it in quarantine (`rot-cut-kept`); nothing is lost silently.
#[test]
fn torture_bit_rot_rows_refuse_or_keep_the_damage_and_lose_nothing() {
    let o = durable(&["torture", "--seeds", "3", "--mode", "rot"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let rows = rows(&stdout(&o));
    let engines: Vec<&str> = rows.iter().map(|r| r["engine"].as_str()).collect();
    assert_eq!(
        engines,
        ["wal", "bitcask", "lsm-hash", "raft-log", "raft-sm"]
    );
    for r in &rows {
        assert_eq!(r["mode"], "rot");
        for col in ["lost", "wrong", "resurrected", "recovery-errors"] {
            assert_eq!(r[col], "0", "{col}: {r:?}");
        }
        assert!(r["rot-refused"].parse::<u64>().unwrap() > 10, "{r:?}");
    }
}

#[test]
fn torture_with_lying_directory_sync_reports_losses_and_exits_1() {
    let o = durable(&["torture", "--seeds", "2", "--lying-dir-sync"]);
    assert_eq!(o.status.code(), Some(1));
    let rows = rows(&stdout(&o));
    for r in &rows {
        assert_eq!(r["dir-sync"], "lying");
        assert!(r["lost"].parse::<u64>().unwrap() > 0, "{r:?}");
    }
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("replay: durable torture"), "{err}");
}

fn run_with_stdin(args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_durable"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The child may exit before reading (a locked directory, a bad line): not our failure.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn flip_byte(path: &std::path::Path, offset: u64) {
    let fs = durable_fs::DurableFs::real();
    let f = fs.open(path, durable_fs::Access::ReadWrite).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0x20], offset).unwrap();
    f.sync_data().unwrap();
}

#[test]
fn wal_append_dump_verify_truncate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let d = dir.to_str().unwrap();
    let lines: String = (0..200)
        .map(|i| format!("record {i} {}\n", "z".repeat(i % 50)))
        .collect();
    let o = run_with_stdin(
        &["wal", "append", "--dir", d, "--segment-bytes", "4096"],
        &lines,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let acks: Vec<String> = (1..=200).map(|i| format!("ack {i}")).collect();
    assert_eq!(stdout(&o).lines().collect::<Vec<_>>(), acks);
    let o = durable(&["wal", "dump", "--dir", d]);
    assert_eq!(o.status.code(), Some(0));
    let dump = stdout(&o);
    assert_eq!(dump.lines().next(), Some("1 record 0 "));
    assert_eq!(dump.lines().count(), 200);
    let o = durable(&["wal", "verify", "--dir", d]);
    let v = stdout(&o);
    assert!(
        v.starts_with("ok segments ") && v.ends_with(" records 200 first 1 last 200\n"),
        "{v}"
    );
    let o = durable(&["wal", "truncate", "--dir", d, "--before", "100"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("removed "), "{}", stdout(&o));
    let first: u64 = stdout(&durable(&["wal", "dump", "--dir", d]))
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(first > 1 && first <= 100, "{first}");
    // Damage in the first segment: verify names the file and the offset, exit 1.
    let names = durable_fs::DurableFs::real().list(&dir).unwrap();
    let first_seg = dir.join(names.iter().find(|n| n.ends_with(".wal")).unwrap());
    flip_byte(&first_seg, 32 + 25);
    let o = durable(&["wal", "verify", "--dir", d]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).starts_with(&format!("corrupt {} offset 32:", first_seg.display())),
        "{}",
        stdout(&o)
    );
}

#[test]
fn wal_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let o = durable(&["wal", "dump", "--dir", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such directory"));
    let dir = tmp.path().join("wal");
    let _held = wal::Wal::open(&dir, wal::Options::default()).unwrap();
    let o = run_with_stdin(&["wal", "append", "--dir", dir.to_str().unwrap()], "x\n");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("locked"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn kv_commands_for_every_engine() {
    for engine in ["bitcask", "lsm-hash"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("kv");
        let d = dir.to_str().unwrap();
        let kv =
            |args: &[&str]| durable(&[&["kv", "--engine", engine, "--dir", d][..], args].concat());
        let o = run_with_stdin(
            &[
                "kv",
                "--engine",
                engine,
                "--dir",
                d,
                "load",
                "--file-bytes",
                "4096",
            ],
            "put a 1\nput b hello world\ndel a\nput c \nmerge\nput d 4\n",
        );
        assert_eq!(
            stdout(&o),
            "ack 1\nack 2\nack 3\nack 4\nmerged\nack 5\n",
            "{engine}"
        );
        assert_eq!(
            stdout(&kv(&["dump"])),
            "b hello world\nc \nd 4\n",
            "{engine}"
        );
        assert_eq!(stdout(&kv(&["get", "b"])), "hello world\n");
        assert_eq!(
            kv(&["get", "a"]).status.code(),
            Some(1),
            "{engine}: missing key exits 1"
        );
        assert_eq!(kv(&["put", "e", "five"]).status.code(), Some(0));
        assert_eq!(kv(&["del", "b"]).status.code(), Some(0));
        assert_eq!(stdout(&kv(&["dump"])), "c \nd 4\ne five\n", "{engine}");
        assert_eq!(stdout(&kv(&["merge"])), "merged\n");
        assert_eq!(stdout(&kv(&["verify"])), "ok keys 3\n", "{engine}");
        assert!(stdout(&kv(&["stats"])).starts_with("keys 3\n"), "{engine}");
        let o = run_with_stdin(
            &["kv", "--engine", engine, "--dir", d, "load"],
            "frobnicate x\n",
        );
        assert_eq!(o.status.code(), Some(2), "{engine}: bad line");
        assert!(String::from_utf8_lossy(&o.stderr).contains("bad line"));
        // `put KEY` without the space before a value is a truncated line, not an empty
        // value: refused (exit 2), nothing stored, no ack. (`put c ` above stored "".)
        let o = run_with_stdin(
            &["kv", "--engine", engine, "--dir", d, "load"],
            "put onlykey
",
        );
        assert_eq!(o.status.code(), Some(2), "{engine}: put without a value");
        assert_eq!(stdout(&o), "", "{engine}: no ack");
        assert!(String::from_utf8_lossy(&o.stderr).contains("bad line"));
        assert_eq!(kv(&["get", "onlykey"]).status.code(), Some(1), "{engine}");
    }
}

#[test]
fn kv_verify_names_damaged_file_and_offset() {
    for (engine, suffix) in [("bitcask", ".data"), ("lsm-hash", ".seg")] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("kv");
        let d = dir.to_str().unwrap();
        let lines: String = (0..100)
            .map(|i| format!("put key{i:03} {}\n", "v".repeat(80)))
            .collect();
        let o = run_with_stdin(
            &[
                "kv",
                "--engine",
                engine,
                "--dir",
                d,
                "load",
                "--file-bytes",
                "4096",
            ],
            &lines,
        );
        assert_eq!(o.status.code(), Some(0));
        let names = durable_fs::DurableFs::real().list(&dir).unwrap();
        let first = dir.join(names.iter().find(|n| n.ends_with(suffix)).unwrap());
        flip_byte(&first, 32 + 24 + 6 + 40); // inside the first record's value
        let o = durable(&["kv", "--engine", engine, "--dir", d, "verify"]);
        assert_eq!(o.status.code(), Some(1), "{engine}: {}", stdout(&o));
        assert!(
            stdout(&o).starts_with(&format!("corrupt {} offset 32:", first.display())),
            "{engine}: {}",
            stdout(&o)
        );
    }
}

#[test]
fn kv_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    for engine in ["bitcask", "lsm-hash"] {
        let o = durable(&[
            "kv",
            "--engine",
            engine,
            "--dir",
            missing.to_str().unwrap(),
            "dump",
        ]);
        assert_eq!(o.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&o.stderr).contains("no such directory"));
    }
    let dir = tmp.path().join("kv");
    let _held = bitcask::Bitcask::open(&dir, bitcask::Options::default()).unwrap();
    let o = durable(&[
        "kv",
        "--engine",
        "bitcask",
        "--dir",
        dir.to_str().unwrap(),
        "put",
        "k",
        "v",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("locked"));
    let o = durable(&[
        "kv",
        "--engine",
        "nosuch",
        "--dir",
        dir.to_str().unwrap(),
        "dump",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

/// The read commands of both engines open read-only: beside a running writer they answer
/// (no `Locked`), and a directory that is not a store is refused (exit 2) with nothing
/// created or removed (a user's `draft.tmp` stays; no `LOCK`, `MANIFEST` or data file appears).
#[test]
fn kv_read_commands_never_write_for_either_engine() {
    let fs = durable_fs::DurableFs::real();
    for engine in ["bitcask", "lsm-hash"] {
        let tmp = tempfile::tempdir().unwrap();
        let plain = tmp.path().join("plain");
        fs.create_dir_all(&plain).unwrap();
        fs.atomic_replace(&plain.join("draft.tmp"), b"mine")
            .unwrap();
        let p = plain.to_str().unwrap();
        for cmd in [
            &["dump"][..],
            &["get", "k"],
            &["verify"],
            &["stats"],
            &["files"],
        ] {
            let o = durable(&[&["kv", "--engine", engine, "--dir", p][..], cmd].concat());
            // Not a store: refused (exit 2), and nothing created or removed.
            assert_eq!(o.status.code(), Some(2), "{engine} {cmd:?}: {o:?}");
            let mut names = fs.list(&plain).unwrap();
            names.sort();
            assert_eq!(
                names,
                vec!["draft.tmp".to_owned()],
                "{engine} {cmd:?} wrote"
            );
        }

        let dir = tmp.path().join("kv");
        let d = dir.to_str().unwrap();
        let kv =
            |args: &[&str]| durable(&[&["kv", "--engine", engine, "--dir", d][..], args].concat());
        assert_eq!(kv(&["put", "a", "1"]).status.code(), Some(0));
        let writer: Box<dyn kv_core::KvStore> = match engine {
            "bitcask" => {
                Box::new(bitcask::Bitcask::open(&dir, bitcask::Options::default()).unwrap())
            }
            _ => Box::new(lsm_hash::LsmHash::open(&dir, lsm_hash::Options::default()).unwrap()),
        };
        assert_eq!(
            stdout(&kv(&["get", "a"])),
            "1\n",
            "{engine} beside a writer"
        );
        assert_eq!(stdout(&kv(&["dump"])), "a 1\n", "{engine} beside a writer");
        assert_eq!(
            stdout(&kv(&["verify"])),
            "ok keys 1\n",
            "{engine} beside a writer"
        );
        let files = kv(&["files"]);
        assert_eq!(
            files.status.code(),
            Some(0),
            "{engine} files beside a writer"
        );
        assert!(stdout(&files).contains("IDENTITY "), "{engine}");
        writer.close().unwrap();
    }
}

/// A default build carries no peer database: `durable bench` says how to get them (exit 2),
/// rather than failing to link or running without the peers it compares against.
#[test]
fn bench_without_the_bench_feature_says_how_to_enable_it() {
    if cfg!(feature = "bench") {
        return; // this build has the peers; `durable bench` would run for real
    }
    let o = durable(&["bench", "--quick"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--features bench"));
}
