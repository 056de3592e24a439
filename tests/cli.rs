//! Proves the `durable` command-line contract (shared/DESIGN.md): stdout carries only results,
//! exit 0 on success, 1 when a check fails, 2 on bad usage or an error. `durable torture` is
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
