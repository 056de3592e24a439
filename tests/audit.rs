//! Proves: `durable audit` finds the directory-fsync bug in programs it has never seen, and
//! nothing where there is none. Runs real programs under strace (CI installs it): the seed
//! bug as a shell script and as a Python script (exactly two findings, on the two segments
//! created after the first) and their fixed versions (none); SQLite through Python's
//! `sqlite3` at `synchronous=FULL` (the journal's unlink acknowledged before the directory
//! is fsynced, at every commit) and at `EXTRA` (clean, as SQLite documents); our own `durable
//! wal append`, `durable kv load` with a merge and `durable wal truncate` (clean); a saved
//! trace audited again with --from-trace; and the refusals (nothing acknowledged or synced:
//! "not measured", exit 2).
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn demo(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/audit")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn audit(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_durable"))
        .arg("audit")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn findings(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with('D'))
        .map(str::to_owned)
        .collect()
}

const LINES: &[u8] = b"a\nb\nc\nd\ne\nf\ng\n";

fn seed(script: &[&str], fixed: bool) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = vec!["--watch", "w", "--"];
    args.extend_from_slice(script);
    args.extend_from_slice(&["append", "w"]);
    if fixed {
        args.push("--fixed");
    }
    audit(tmp.path(), &args, LINES)
}

#[test]
fn the_seed_bug_in_shell_and_python_gives_exactly_two_findings_and_the_fix_none() {
    let sh = demo("seedwal.sh");
    let py = demo("seedwal.py");
    for script in [vec!["sh", sh.as_str()], vec!["python3", py.as_str()]] {
        let o = seed(&script, false);
        assert_eq!(o.status.code(), Some(1), "{script:?}: {o:?}");
        let f = findings(&o);
        assert_eq!(f.len(), 2, "{script:?}: {f:#?}");
        assert!(
            f[0].starts_with("D001 create of \"000002.wal\""),
            "{}",
            f[0]
        );
        assert!(f[0].contains("\"ack 4\""), "{}", f[0]);
        assert!(
            f[1].starts_with("D001 create of \"000003.wal\""),
            "{}",
            f[1]
        );
        let o = seed(&script, true);
        assert_eq!(o.status.code(), Some(0), "{script:?} --fixed: {o:?}");
        assert!(findings(&o).is_empty());
    }
}

#[test]
fn sqlite_full_is_flagged_at_every_commit_and_extra_is_clean() {
    let script = demo("sqlite_commit.py");
    for (mode, want) in [("FULL", 3), ("EXTRA", 0)] {
        let tmp = tempfile::tempdir().unwrap();
        durable_fs::DurableFs::real()
            .create_dir_all(&tmp.path().join("db"))
            .unwrap();
        let o = audit(
            tmp.path(),
            &["--watch", "db", "--", "python3", &script, mode],
            b"",
        );
        let f = findings(&o);
        assert_eq!(f.len(), want, "{mode}: {o:?}");
        for line in &f {
            assert!(
                line.starts_with("D001 unlink of \"t.db-journal\""),
                "{line}"
            );
        }
        assert_eq!(o.status.code(), Some(i32::from(want > 0)), "{mode}: {o:?}");
    }
}

#[test]
fn our_own_commands_are_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_durable");
    let lines: Vec<u8> = (1..=200)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    let runs: [(&[&str], &[u8]); 4] = [
        (
            &[
                "--watch",
                "log",
                "--",
                bin,
                "wal",
                "append",
                "--dir",
                "log",
                "--segment-bytes",
                "4096",
            ],
            &lines,
        ),
        (
            &[
                "--watch", "kv", "--", bin, "kv", "--engine", "bitcask", "--dir", "kv", "load",
            ],
            b"put a 1\nput b 2\nput a 3\nmerge\ndel b\nput c 4\n",
        ),
        (
            &[
                "--watch", "log", "--", bin, "wal", "truncate", "--dir", "log", "--before", "150",
            ],
            b"",
        ),
        (
            &[
                "--watch", "log", "--", bin, "wal", "truncate", "--dir", "log", "--after", "180",
            ],
            b"",
        ),
    ];
    // An fsync that fails (the 5th, the 12th): the log stops, acknowledging nothing after it.
    for n in ["5", "12"] {
        let dir = format!("eio-{n}");
        let o = audit(
            tmp.path(),
            &[
                "--watch",
                &dir,
                "--inject-fsync-eio",
                n,
                "--",
                bin,
                "wal",
                "append",
                "--dir",
                &dir,
            ],
            &lines,
        );
        assert!(findings(&o).is_empty(), "EIO at fsync {n}: {o:?}");
    }
    for (args, stdin) in runs {
        let o = audit(tmp.path(), args, stdin);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {o:?}");
        assert!(findings(&o).is_empty(), "{args:?}: {o:?}");
    }
}

#[test]
fn a_saved_trace_audits_the_same_and_silence_is_not_a_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let sh = demo("seedwal.sh");
    let o = audit(
        tmp.path(),
        &[
            "--watch",
            "w",
            "--save-trace",
            "t.strace",
            "--",
            "sh",
            &sh,
            "append",
            "w",
        ],
        LINES,
    );
    assert_eq!(findings(&o).len(), 2);
    let again = audit(
        tmp.path(),
        &["--from-trace", "t.strace", "--format", "json"],
        b"",
    );
    assert_eq!(again.status.code(), Some(1));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&again.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "two findings and a summary");
    assert_eq!(rows[0]["rule"], "D001");
    assert_eq!(rows[0]["name"], "000002.wal");
    assert_eq!(rows[2]["summary"]["findings"], 2);
    // Nothing acknowledged and nothing synced: not measured.
    let o = audit(tmp.path(), &["--watch", "w", "--", "true"], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not measured"),
        "{o:?}"
    );
    // A damaged saved trace is an error naming the line.
    durable_fs::DurableFs::real()
        .atomic_replace(&tmp.path().join("bad.strace"), b"12 fsync(3\n")
        .unwrap();
    let o = audit(tmp.path(), &["--from-trace", "bad.strace"], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("trace line 1"),
        "{o:?}"
    );
}

#[test]
fn an_ack_after_a_failed_fsync_is_d005_and_fail_stop_is_clean() {
    let script = demo("fsync_retry.py");
    for (mode, code, rules) in [("retry", 1, vec!["D005"]), ("failstop", 0, vec![])] {
        let tmp = tempfile::tempdir().unwrap();
        let o = audit(
            tmp.path(),
            &[
                "--watch",
                "r",
                "--inject-fsync-eio",
                "3",
                "--",
                "python3",
                &script,
                "r",
                mode,
            ],
            b"",
        );
        let got: Vec<String> = findings(&o).iter().map(|l| l[..4].to_owned()).collect();
        assert_eq!(got, rules, "{mode}: {o:?}");
        assert_eq!(o.status.code(), Some(code), "{mode}: {o:?}");
    }
}

#[test]
fn an_in_place_rewrite_is_a_d006_warning_and_a_replace_is_clean() {
    let script = demo("rewrite.py");
    for (mode, rules) in [("in-place", vec!["D006"]), ("replace", vec![])] {
        let tmp = tempfile::tempdir().unwrap();
        let fs = durable_fs::DurableFs::real();
        fs.create_dir_all(&tmp.path().join("s")).unwrap();
        fs.atomic_replace(&tmp.path().join("s/state"), b"old")
            .unwrap();
        let o = audit(
            tmp.path(),
            &["--watch", "s", "--", "python3", &script, "s", mode],
            b"",
        );
        let got: Vec<String> = findings(&o).iter().map(|l| l[..4].to_owned()).collect();
        assert_eq!(got, rules, "{mode}: {o:?}");
        // A warning: exit 0.
        assert_eq!(o.status.code(), Some(0), "{mode}: {o:?}");
    }
}

#[test]
fn data_acknowledged_before_its_fsync_is_a_d002_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let sh = demo("unsynced_ack.sh");
    let o = audit(tmp.path(), &["--watch", "d", "--", "sh", &sh, "d"], b"");
    let got: Vec<String> = findings(&o).iter().map(|l| l[..4].to_owned()).collect();
    assert_eq!(got, ["D002"], "{o:?}");
}

#[test]
fn relative_names_after_chdir_are_followed_and_harmless_failures_are_not_findings() {
    let script = demo("chdir_rename.py");
    // Unfixed: each round's create of x.tmp and rename to x, acknowledged with DIR unsynced.
    let d001 = vec!["D001"; 4];
    for (fixed, want) in [(false, d001), (true, vec![])] {
        let tmp = tempfile::tempdir().unwrap();
        let mut args = vec!["--watch", "d", "--", "python3", &script, "d"];
        if fixed {
            args.push("--fixed");
        }
        let o = audit(tmp.path(), &args, b"");
        let got: Vec<String> = findings(&o).iter().map(|l| l[..4].to_owned()).collect();
        assert_eq!(got, want, "fixed {fixed}: {o:?}");
    }
}

#[test]
fn acknowledgements_can_be_the_exit_a_descriptor_or_a_pattern() {
    let sh = demo("seedwal.sh");
    let four = b"a\nb\nc\nd\n";
    let tmp = tempfile::tempdir().unwrap();
    // At exit: the second segment's entry was never made durable.
    let o = audit(
        tmp.path(),
        &[
            "--watch", "w", "--ack", "exit", "--", "sh", &sh, "append", "w",
        ],
        four,
    );
    let f = findings(&o);
    assert_eq!(f.len(), 1, "{o:?}");
    assert!(
        f[0].contains("\"000002.wal\"") && f[0].contains("\"exit 0\""),
        "{}",
        f[0]
    );
    // A pattern that never matches, and no exit: nothing is acknowledged; the syncs remain,
    // so the run is measured, and the D004 at the end names the file fsynced without its
    // directory.
    let tmp = tempfile::tempdir().unwrap();
    let o = audit(
        tmp.path(),
        &[
            "--watch",
            "w",
            "--ack",
            "line:^never$",
            "--",
            "sh",
            &sh,
            "append",
            "w",
        ],
        four,
    );
    let f = findings(&o);
    assert_eq!(f.len(), 1, "{o:?}");
    assert!(f[0].starts_with("D004 \"000002.wal\""), "{}", f[0]);
    // A bad spec is a usage error.
    let o = audit(tmp.path(), &["--ack", "line:(", "--", "true"], b"");
    assert_eq!(o.status.code(), Some(2));
}

/// The explore flags for the seed demo's check (`seedwal_check.sh`).
fn seed_explore(script: &[&str], fixed: bool, extra: &[&str]) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    let check = format!(
        "sh {} {{dir}} {}",
        demo("seedwal_check.sh"),
        script.join(" ")
    );
    let mut args = vec!["--watch", "w", "--explore", "--check", &check];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(script);
    args.extend_from_slice(&["append", "w"]);
    if fixed {
        args.push("--fixed");
    }
    audit(tmp.path(), &args, LINES)
}

fn crashes(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .split("\nCRASH ")
        .skip(1)
        .map(str::to_owned)
        .collect()
}

#[test]
fn explore_loses_acknowledged_lines_in_the_seed_bug_and_none_in_the_fix() {
    let sh = demo("seedwal.sh");
    let py = demo("seedwal.py");
    for script in [vec!["sh", sh.as_str()], vec!["python3", py.as_str()]] {
        // Strict crashes right after each acknowledgement: from "ack 4" on, the second
        // segment's create was never made durable, and its lines are gone.
        let o = seed_explore(&script, false, &[]);
        assert_eq!(o.status.code(), Some(1), "{script:?}: {o:?}");
        let c = crashes(&o);
        assert_eq!(c.len(), 4, "{script:?}: {c:#?}");
        assert!(c[0].starts_with("after trace line"), "{}", c[0]);
        assert!(c[0].contains("(ack \"ack 4\"), strict"), "{}", c[0]);
        assert!(c[0].contains("acknowledged 4 lines"), "{}", c[0]);
        assert!(
            c[0].contains("000002.wal, directory not fsynced")
                && c[0].contains("(lost in this state)"),
            "{}",
            c[0]
        );
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.contains("4 failed"), "{stdout}");
        // The fix loses nothing: every operation a crash point, in every mode.
        let o = seed_explore(
            &script,
            true,
            &["--points", "all", "--crash", "strict,torn,reordered"],
        );
        assert_eq!(o.status.code(), Some(0), "{script:?} --fixed: {o:?}");
        assert!(crashes(&o).is_empty());
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.contains(", 0 failed"), "{stdout}");
    }
}

#[test]
fn explore_shows_sqlite_full_losing_acknowledged_commits_and_extra_none() {
    let script = demo("sqlite_commit.py");
    let check = format!("python3 {} {{dir}}", demo("sqlite_check.py"));
    for (mode, want) in [("FULL", 3), ("EXTRA", 0)] {
        let tmp = tempfile::tempdir().unwrap();
        durable_fs::DurableFs::real()
            .create_dir_all(&tmp.path().join("db"))
            .unwrap();
        let o = audit(
            tmp.path(),
            &[
                "--watch",
                "db",
                "--explore",
                "--check",
                &check,
                "--crash",
                "strict,torn",
                "--points",
                "syncs",
                "--format",
                "json",
                "--",
                "python3",
                &script,
                mode,
            ],
            b"",
        );
        assert_eq!(o.status.code(), Some(i32::from(want > 0)), "{mode}: {o:?}");
        let objects: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let crashes: Vec<&serde_json::Value> =
            objects.iter().filter_map(|v| v.get("crash")).collect();
        // FULL: a crash right after each acknowledged commit brings the journal back (its
        // unlink was not durable), and opening the database rolls the commit back.
        let strict: Vec<&&serde_json::Value> =
            crashes.iter().filter(|c| c["mode"] == "strict").collect();
        assert_eq!(strict.len(), want, "{mode}: {crashes:#?}");
        for c in &strict {
            let pending = c["pending"].as_array().unwrap();
            assert!(
                pending.iter().any(|p| p["op"] == "unlink"
                    && p["path"].as_str().unwrap().ends_with("t.db-journal")
                    && p["lost"] == true),
                "{c}"
            );
            assert!(
                c["output"]
                    .as_str()
                    .unwrap()
                    .contains("missing after the crash")
            );
        }
        let summary = objects.iter().find_map(|v| v.get("explore")).unwrap();
        assert!(summary["checked"].as_u64().unwrap() > 3, "{summary}");
        if want == 0 {
            assert!(crashes.is_empty(), "{crashes:#?}");
        }
    }
}

#[test]
fn explore_of_our_own_wal_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_durable");
    let lines: Vec<u8> = (1..=120)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    // Every acknowledged record is there, in order, whatever the crash left.
    let check = format!(
        "n=$DURABLE_AUDIT_ACKS; [ $n = 0 ] || [ \"$({bin} wal dump --dir {{dir}} | head -n $n | cut -d' ' -f2)\" = \"$(seq 1 $n)\" ]"
    );
    let o = audit(
        tmp.path(),
        &[
            "--watch",
            "log",
            "--explore",
            "--check",
            &check,
            "--points",
            "all",
            "--crash",
            "strict,torn,reordered",
            "--seeds",
            "2",
            "--",
            bin,
            "wal",
            "append",
            "--dir",
            "log",
            "--segment-bytes",
            "4096",
        ],
        &lines,
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(stdout.contains("120 acks"), "{stdout}");
    assert!(stdout.contains(", 0 failed"), "{stdout}");
}

#[test]
fn acknowledgements_are_seen_whatever_our_stderr_is() {
    // The program's stdout is a pipe of ours, copied to our stderr: sending that to
    // /dev/null must not hide the acknowledgements (which would leave only "not measured").
    let tmp = tempfile::tempdir().unwrap();
    let sh = demo("seedwal.sh");
    let mut child = Command::new(env!("CARGO_BIN_EXE_durable"))
        .args(["audit", "--watch", "w", "--", "sh", &sh, "append", "w"])
        .current_dir(tmp.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(LINES).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let f = findings(&o);
    assert_eq!(f.len(), 2, "{o:?}");
    // D001 at "ack 4" (without the acknowledgements it would be D004 at the end).
    assert!(
        f[0].starts_with("D001 create of \"000002.wal\""),
        "{}",
        f[0]
    );
    assert!(f[0].contains("\"ack 4\""), "{}", f[0]);
}

#[test]
fn explore_needs_a_check_and_one_watched_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let o = audit(tmp.path(), &["--explore", "--", "true"], b"");
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let o = audit(tmp.path(), &["--check", "true", "--", "true"], b"");
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let sh = demo("seedwal.sh");
    let o = audit(
        tmp.path(),
        &[
            "--watch",
            "w",
            "--watch",
            "v",
            "--explore",
            "--check",
            "true",
            "--",
            "sh",
            &sh,
            "append",
            "w",
        ],
        LINES,
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not measured: explore takes exactly one"),
        "{o:?}"
    );
    // A trace captured for the lint alone lacks what places writes (lseek, dup, ...).
    let o = audit(
        tmp.path(),
        &[
            "--watch",
            "x",
            "--save-trace",
            "lint.strace",
            "--",
            "sh",
            &sh,
            "append",
            "x",
        ],
        LINES,
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let o = audit(
        tmp.path(),
        &[
            "--from-trace",
            "lint.strace",
            "--explore",
            "--check",
            "true",
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not captured with --explore"),
        "{o:?}"
    );
}

#[test]
fn a_watched_directory_named_through_a_symlink_is_the_one_the_kernel_names() {
    // strace names files by their real paths: a --watch through a symlink must match them
    // (compared lexically, it matched nothing, and nothing was ever found).
    let tmp = tempfile::tempdir().unwrap();
    durable_fs::DurableFs::real()
        .create_dir_all(&tmp.path().join("real"))
        .unwrap();
    let ln = Command::new("ln")
        .args(["-s", "real", "link"])
        .current_dir(tmp.path())
        .status()
        .unwrap();
    assert!(ln.success());
    let sh = demo("seedwal.sh");
    let check = format!("sh {} {{dir}} sh {sh}", demo("seedwal_check.sh"));
    let o = audit(
        tmp.path(),
        &[
            "--watch",
            "link/w",
            "--explore",
            "--check",
            &check,
            "--",
            "sh",
            &sh,
            "append",
            "link/w",
        ],
        LINES,
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let f = findings(&o);
    assert_eq!(f.len(), 2, "{o:?}");
    assert!(f[0].contains("/real/w"), "{}", f[0]);
    assert!(!crashes(&o).is_empty(), "{o:?}");
    // A symlink inside the watched directory at the start: explore cannot model it.
    let ln = Command::new("ln")
        .args(["-s", "elsewhere", "real/w/current"])
        .current_dir(tmp.path())
        .status()
        .unwrap();
    assert!(ln.success());
    let o = audit(
        tmp.path(),
        &[
            "--watch",
            "link/w",
            "--explore",
            "--check",
            "true",
            "--",
            "sh",
            &sh,
            "append",
            "link/w",
        ],
        LINES,
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("neither a file nor a directory"),
        "{o:?}"
    );
}
