//! The command line for machines and pipes (shared/DESIGN.md's contract). Proves: readers end
//! with exit 0 and nothing on stderr when their stdout is closed early, writers exit 2; `--hex`
//! carries any bytes in and out, and without it `put` refuses what the line format cannot
//! carry and `dump` stops (exit 2) naming `--hex`; `wal dump --from/--limit`, `wal truncate
//! --after`, `kv dump --prefix/--limit`; `wal files` and `kv files`; `--format json` from
//! torture, verify, stats and the dumps parses, one object a line; sizes like `64KiB`.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::io::{BufRead, Read, Write};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_durable"));
    c.env_remove("SEED").env_remove("RUST_LOG");
    c
}

fn durable(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Fed from a thread: the child's acks fill the stdout pipe while it reads.
    let mut input = child.stdin.take().unwrap();
    let bytes = stdin.as_bytes().to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let o = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    o
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Each stdout line parsed as one JSON object.
fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    text(&o.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{l}: {e}"))
        })
        .inspect(|v| assert!(v.is_object(), "{v}"))
        .collect()
}

/// A log of `n` records `record <i>` in `dir`.
fn wal_of(dir: &str, n: usize) {
    let lines: String = (1..=n).map(|i| format!("record {i}\n")).collect();
    let o = with_stdin(&["wal", "append", "--dir", dir, "--sync", "never"], &lines);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}

/// Runs a reader, reads one line of its stdout, closes the pipe, and returns its exit code
/// and stderr.
fn read_one_line_then_close(args: &[&str]) -> (Option<i32>, String) {
    let mut child = bin()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty(), "{args:?}: printed nothing");
    // The reader is dropped here: the pipe is closed with most of the output unread.
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (child.wait().unwrap().code(), err)
}

/// The first file of `dir` (by name) ending with `ext`.
fn first_file(dir: &str, ext: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(dir);
    let mut names = durable_fs::DurableFs::real().list(dir).unwrap();
    names.sort();
    dir.join(names.into_iter().find(|n| n.ends_with(ext)).unwrap())
}

/// Flips bits of the byte at `offset` of `path`, durably.
fn flip(path: &std::path::Path, offset: u64) {
    let fs = durable_fs::DurableFs::real();
    let f = fs.open(path, durable_fs::Access::ReadWrite).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0x20], offset).unwrap();
    f.sync_data().unwrap();
}

#[test]
fn readers_end_quietly_when_stdout_closes_and_writers_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let log = log.to_str().unwrap();
    wal_of(log, 30_000); // far more than a pipe's buffer
    let kv = tmp.path().join("kv");
    let kv = kv.to_str().unwrap();
    let puts: String = (0..20_000)
        .map(|i| format!("put key{i:05} value-{i}\n"))
        .collect();
    let o = with_stdin(
        &[
            "kv", "--engine", "bitcask", "--dir", kv, "load", "--sync", "never",
        ],
        &puts,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    for args in [
        &["wal", "dump", "--dir", log][..],
        &["wal", "dump", "--dir", log, "--format", "json"],
        &["kv", "--dir", kv, "dump"],
        &["kv", "--dir", kv, "dump", "--hex", "--format", "json"],
    ] {
        let (code, err) = read_one_line_then_close(args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: stderr {err:?}");
    }
    // A writer whose acks can no longer be delivered: exit 2, and it says why.
    let mut child = bin()
        .args(["wal", "append", "--dir", log])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let lines: String = (0..1000).map(|i| format!("more {i}\n")).collect();
    let _ = child.stdin.take().unwrap().write_all(lines.as_bytes());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("stdout was closed"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn hex_carries_any_bytes_and_the_line_format_refuses_what_it_cannot_carry() {
    let tmp = tempfile::tempdir().unwrap();
    let kv = tmp.path().join("kv");
    let kv = kv.to_str().unwrap();
    // Without --hex: a key with a space, a value with a newline: refused, nothing created.
    for (k, v) in [("a b", "c"), ("k", "line\nbreak"), ("", "v")] {
        let o = durable(&["kv", "--engine", "bitcask", "--dir", kv, "put", k, v]);
        assert_eq!(o.status.code(), Some(2), "{k:?} {v:?}");
        assert!(text(&o.stderr).contains("--hex"), "{}", text(&o.stderr));
        assert!(
            !durable_fs::DurableFs::real()
                .exists(&tmp.path().join("kv"))
                .unwrap(),
            "a refused put created the store"
        );
    }
    // With --hex (before or after the subcommand): "a b" -> "x\ny", round trip.
    let (key, value) = ("612062", "780a79");
    let o = durable(&[
        "kv", "--engine", "bitcask", "--dir", kv, "--hex", "put", key, value,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = durable(&["kv", "--dir", kv, "get", "--hex", key]);
    assert_eq!(text(&o.stdout), format!("{value}\n"));
    let o = durable(&["kv", "--dir", kv, "--hex", "dump"]);
    assert_eq!(text(&o.stdout), format!("{key} {value}\n"));
    // load --hex.
    let o = with_stdin(
        &["kv", "--dir", kv, "--hex", "load"],
        "put 00ff 0a0d\nput 6b 76\ndel 612062\n",
    );
    assert_eq!(
        text(&o.stdout),
        "ack 1\nack 2\nack 3\n",
        "{}",
        text(&o.stderr)
    );
    let o = durable(&["kv", "--dir", kv, "--hex", "dump"]);
    assert_eq!(text(&o.stdout), "00ff 0a0d\n6b 76\n");
    // Without --hex, dump stops at the first pair it cannot print unambiguously.
    let o = durable(&["kv", "--dir", kv, "dump"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("--hex"), "{}", text(&o.stderr));
    // JSON without --hex refuses bytes that are not UTF-8; with it, hex fields.
    let o = durable(&["kv", "--dir", kv, "dump", "--format", "json"]);
    assert_eq!(o.status.code(), Some(2));
    let o = durable(&["kv", "--dir", kv, "dump", "--format", "json", "--hex"]);
    let rows = json_lines(&o);
    assert_eq!(rows[0]["key_hex"], "00ff");
    assert_eq!(rows[0]["value_hex"], "0a0d");
    // Bad hex: exit 2.
    let o = durable(&["kv", "--dir", kv, "--hex", "get", "xyz"]);
    assert_eq!(o.status.code(), Some(2));

    // The WAL: a payload with a newline needs --hex to be dumped.
    let log = tmp.path().join("log");
    let log = log.to_str().unwrap();
    let o = with_stdin(
        &["wal", "append", "--dir", log, "--hex"],
        "6f6e650a74776f\n7468726565\n",
    );
    assert_eq!(text(&o.stdout), "ack 1\nack 2\n", "{}", text(&o.stderr));
    let o = durable(&["wal", "dump", "--dir", log]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("--hex"));
    let o = durable(&["wal", "dump", "--dir", log, "--hex"]);
    assert_eq!(text(&o.stdout), "1 6f6e650a74776f\n2 7468726565\n");
}

#[test]
fn bounds_truncate_after_and_files() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let log = log.to_str().unwrap();
    wal_of(log, 100);
    let o = durable(&["wal", "dump", "--dir", log, "--from", "40", "--limit", "3"]);
    assert_eq!(
        text(&o.stdout),
        "40 record 40\n41 record 41\n42 record 42\n"
    );
    let o = durable(&["wal", "truncate", "--dir", log, "--after", "60"]);
    assert_eq!(
        text(&o.stdout),
        "truncated after 60\n",
        "{}",
        text(&o.stderr)
    );
    let o = durable(&["wal", "dump", "--dir", log, "--from", "59"]);
    assert_eq!(text(&o.stdout), "59 record 59\n60 record 60\n");
    // The next append gets an LSN past every one handed out: never reused.
    let o = with_stdin(&["wal", "append", "--dir", log], "after\n");
    assert_eq!(text(&o.stdout), "ack 101\n");
    let o = durable(&["wal", "truncate", "--dir", log]);
    assert_eq!(o.status.code(), Some(2), "--before or --after is required");
    let o = durable(&["wal", "files", "--dir", log]);
    assert_eq!(o.status.code(), Some(0));
    let out = text(&o.stdout);
    let seg = out.lines().find(|l| l.contains(" segment ")).unwrap();
    assert!(
        seg.contains("first_lsn 1") && seg.contains("version 2"),
        "{out}"
    );
    assert!(out.lines().any(|l| l.starts_with("CHAIN ")), "{out}");
    let rows = json_lines(&durable(&[
        "wal", "files", "--dir", log, "--format", "json",
    ]));
    assert!(
        rows.iter()
            .any(|r| r["kind"] == "segment" && r["first_lsn"] == 1)
    );

    for engine in ["bitcask", "lsm-hash"] {
        let kv = tmp.path().join(engine);
        let kv = kv.to_str().unwrap();
        let puts: String = ["apple", "apricot", "banana", "avocado", "cherry"]
            .iter()
            .map(|k| format!("put {k} {k}-value\n"))
            .collect();
        let o = with_stdin(&["kv", "--engine", engine, "--dir", kv, "load"], &puts);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        let o = durable(&["kv", "--dir", kv, "dump", "--prefix", "a", "--limit", "2"]);
        assert_eq!(
            text(&o.stdout),
            "apple apple-value\napricot apricot-value\n",
            "{engine}"
        );
        let o = durable(&["kv", "--dir", kv, "--hex", "dump", "--prefix", "63"]);
        assert_eq!(
            text(&o.stdout),
            "636865727279 6368657272792d76616c7565\n",
            "{engine}"
        );
        let o = durable(&["kv", "--dir", kv, "files"]);
        assert_eq!(o.status.code(), Some(0), "{engine}: {}", text(&o.stderr));
        let out = text(&o.stdout);
        assert!(
            out.lines().any(|l| l.contains(" version 2 ")),
            "{engine}: {out}"
        );
        assert!(
            out.lines().any(|l| l.starts_with("IDENTITY ")),
            "{engine}: {out}"
        );
        let rows = json_lines(&durable(&["kv", "--dir", kv, "files", "--format", "json"]));
        assert!(rows.iter().any(|r| r["version"] == 2), "{engine}");
    }
}

#[test]
fn json_from_torture_verify_stats_and_dumps_parses() {
    let o = durable(&["torture", "--seeds", "1", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let rows = json_lines(&o);
    assert_eq!(rows.len(), 20, "ten rows, strict and torn");
    for r in &rows {
        assert_eq!(r["lost"], 0);
        assert_eq!(r["clean"], true);
        assert!(r["crash_states"].as_u64().unwrap() > 0);
    }
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let log = log.to_str().unwrap();
    wal_of(log, 10);
    let v = json_lines(&durable(&[
        "wal", "verify", "--dir", log, "--format", "json",
    ]));
    assert_eq!(v[0]["status"], "ok");
    assert_eq!(v[0]["records"], 10);
    let d = json_lines(&durable(&["wal", "dump", "--dir", log, "--format", "json"]));
    assert_eq!(d.len(), 10);
    assert_eq!(d[3]["lsn"], 4);
    assert_eq!(d[3]["payload"], "record 4");
    let kv = tmp.path().join("kv");
    let kv = kv.to_str().unwrap();
    let o = with_stdin(
        &["kv", "--engine", "lsm-hash", "--dir", kv, "load"],
        "put a 1\nput b 2\nput a 3\n",
    );
    assert_eq!(o.status.code(), Some(0));
    let s = json_lines(&durable(&["kv", "--dir", kv, "stats", "--format", "json"]));
    assert_eq!(s[0]["keys"], 2);
    assert!(s[0]["total_bytes"].as_u64().unwrap() > 0);
    let v = json_lines(&durable(&["kv", "--dir", kv, "--format", "json", "verify"]));
    assert_eq!(v[0]["status"], "ok");
    assert_eq!(v[0]["keys"], 2);
    let d = json_lines(&durable(&["kv", "--dir", kv, "dump", "--format", "json"]));
    assert_eq!(
        d,
        vec![
            serde_json::json!({"key": "a", "value": "3"}),
            serde_json::json!({"key": "b", "value": "2"}),
        ]
    );
    // Damage: verify's JSON says corrupt, with file and offset, exit 1.
    let seg = first_file(kv, ".seg");
    flip(&seg, 40);
    let o = durable(&["kv", "--dir", kv, "verify", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let v = json_lines(&o);
    assert_eq!(v[0]["status"], "corrupt");
    assert!(
        v[0]["path"]
            .as_str()
            .unwrap()
            .ends_with(seg.file_name().unwrap().to_str().unwrap())
    );
    assert!(v[0]["offset"].is_u64());
}

#[test]
fn help_lists_engines_and_examples_and_sizes_take_units() {
    let o = durable(&["--help"]);
    assert!(text(&o.stdout).contains("Examples:"));
    let o = durable(&["torture", "--help"]);
    let help = text(&o.stdout);
    for engine in ["durable-fs", "wal-mt", "bitcask-mt", "lsm-hash-mt"] {
        assert!(help.contains(engine), "{engine} not in:\n{help}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let log = log.to_str().unwrap();
    let lines: String = (0..2000).map(|i| format!("{i:0>100}\n")).collect();
    let o = with_stdin(
        &[
            "wal",
            "append",
            "--dir",
            log,
            "--segment-bytes",
            "64KiB",
            "--sync",
            "never",
        ],
        &lines,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let o = durable(&["wal", "files", "--dir", log]);
    let segments = text(&o.stdout)
        .lines()
        .filter(|l| l.contains(" segment "))
        .count();
    assert!(segments >= 3, "64 KiB segments rotate: {}", text(&o.stdout));
    let o = durable(&["wal", "append", "--dir", log, "--segment-bytes", "lots"]);
    assert_eq!(o.status.code(), Some(2));
}

/// A failed check keeps its exit code when nobody reads stdout any more: torture's losses are
/// exit 1 and verify's damage is exit 1, not the quiet exit 0 of a reader whose pipe closed.
#[test]
fn a_failed_check_is_exit_1_even_with_stdout_closed() {
    let closed = |args: &[&str]| {
        let mut child = bin()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        child.wait().unwrap().code()
    };
    let lying = [
        "torture",
        "--engine",
        "wal",
        "--seeds",
        "2",
        "--lying-dir-sync",
    ];
    assert_eq!(closed(&lying), Some(1));
    let tmp = tempfile::tempdir().unwrap();
    let kv = tmp.path().join("kv");
    let kv = kv.to_str().unwrap();
    let o = with_stdin(
        &["kv", "--engine", "lsm-hash", "--dir", kv, "load"],
        "put a 1\nput b 2\n",
    );
    assert_eq!(o.status.code(), Some(0));
    flip(&first_file(kv, ".seg"), 40);
    assert_eq!(closed(&["kv", "--dir", kv, "verify"]), Some(1));
}

#[test]
fn files_name_directories_and_load_refuses_what_dump_could_not_print() {
    let tmp = tempfile::tempdir().unwrap();
    let kv = tmp.path().join("kv");
    let k = kv.to_str().unwrap();
    let o = with_stdin(
        &["kv", "--engine", "bitcask", "--dir", k, "load"],
        "put a 1\n",
    );
    assert_eq!(o.status.code(), Some(0));
    durable_fs::DurableFs::real()
        .create_dir_all(&kv.join("quarantine"))
        .unwrap();
    let o = durable(&["kv", "--dir", k, "files"]);
    assert!(
        text(&o.stdout)
            .lines()
            .any(|l| l == "quarantine - directory"),
        "{}",
        text(&o.stdout)
    );
    let rows = json_lines(&durable(&["kv", "--dir", k, "files", "--format", "json"]));
    let q = rows.iter().find(|r| r["name"] == "quarantine").unwrap();
    assert!(q["bytes"].is_null() && q["kind"] == "directory", "{q}");
    // A carriage return inside a value: `put` refuses it, and so does `load` (no ack).
    let o = with_stdin(&["kv", "--dir", k, "load"], "put b x\ry\n");
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    assert!(text(&o.stderr).contains("--hex"));
}
