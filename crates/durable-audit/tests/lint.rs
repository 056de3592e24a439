//! The lint on saved traces: the seed bug (a shell WAL whose new segments are acknowledged
//! before their directory is fsynced) gives exactly two D001 findings, on the two segments
//! created after the first; the fixed script gives none; small synthetic traces for the
//! other rules.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::path::{Path, PathBuf};

use durable_audit::lint::{self, Config};
use durable_audit::trace;

fn golden(name: &str) -> Vec<trace::Event> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/traces")
        .join(name);
    let text = String::from_utf8(durable_fs::DurableFs::real().read(&path).unwrap()).unwrap();
    trace::parse(&text).unwrap()
}

fn watch(dir: &str) -> Config {
    Config {
        watch: vec![PathBuf::from(dir)],
        ..Config::default()
    }
}

#[test]
fn the_seed_bug_gives_exactly_two_d001_on_the_later_segments() {
    let r = lint::lint(&golden("seedwal-buggy.strace"), &watch("/tmp/aud/w"));
    let names: Vec<(&str, &str)> = r
        .findings
        .iter()
        .map(|f| (f.rule, f.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [("D001", "000002.wal"), ("D001", "000003.wal")],
        "{:#?}",
        r.findings
    );
    let f = &r.findings[0];
    assert_eq!(f.op, "create");
    assert_eq!(f.ack.as_ref().unwrap().1, "ack 4");
    assert_eq!(f.dir, Path::new("/tmp/aud/w"));
    assert_eq!(r.acks, 7);
    assert!(
        f.to_string()
            .starts_with(r#"D001 create of "000002.wal" in /tmp/aud/w"#),
        "{f}"
    );
}

#[test]
fn the_fixed_seed_script_is_clean() {
    let r = lint::lint(&golden("seedwal-fixed.strace"), &watch("/tmp/aud/w"));
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!(r.acks, 7);
    assert!(r.syncs >= 10);
}

#[test]
fn an_unwatched_directory_is_not_reported() {
    let r = lint::lint(&golden("seedwal-buggy.strace"), &watch("/tmp/elsewhere"));
    assert!(r.findings.is_empty());
}

fn lines(text: &str) -> Vec<trace::Event> {
    trace::parse(text).unwrap()
}

const D: &str = r"\x2f\x64"; // "/d"

#[test]
fn rename_of_unsynced_data_is_d003_and_a_missing_dir_sync_is_d001() {
    // write tmp, no fsync, rename over x, fsync the directory, ack.
    let t = format!(
        "1 openat(-100<{D}>, \"\\x74\", 0x241, 0644) = 3<{D}\\x2f\\x74>\n\
         1 write(3<{D}\\x2f\\x74>, \"\\x41\", 1) = 1\n\
         1 rename(\"\\x74\", \"\\x78\") = 0\n\
         1 write(1<\\x70>, \"\\x61\\x63\\x6b\\x0a\", 4) = 4\n"
    );
    let r = lint::lint(&lines(&t), &watch("/d"));
    let rules: Vec<&str> = r.findings.iter().map(|f| f.rule).collect();
    // D002 too: the data renamed into place was acknowledged never fsynced.
    assert_eq!(rules, ["D001", "D002", "D003", "D001"], "{:#?}", r.findings);
}

#[test]
fn a_file_fsynced_whose_directory_never_was_is_d004_without_an_ack() {
    let t = format!(
        "1 openat(-100<{D}>, \"\\x66\", 0x241, 0644) = 3<{D}\\x2f\\x66>\n\
         1 write(3<{D}\\x2f\\x66>, \"\\x41\", 1) = 1\n\
         1 fsync(3<{D}\\x2f\\x66>) = 0\n"
    );
    let r = lint::lint(&lines(&t), &watch("/d"));
    let rules: Vec<&str> = r.findings.iter().map(|f| f.rule).collect();
    assert_eq!(rules, ["D004"], "{:#?}", r.findings);
    // With the directory fsynced, nothing.
    let t = format!("{t}1 openat(-100<{D}>, \"\\x2e\", 0x10000) = 4<{D}>\n1 fsync(4<{D}>) = 0\n");
    assert!(lint::lint(&lines(&t), &watch("/d")).findings.is_empty());
}

#[test]
fn an_append_to_a_file_that_existed_is_not_a_create() {
    let t = format!(
        "1 openat(-100<{D}>, \"\\x66\", 0x441, 0644) = 3<{D}\\x2f\\x66>\n\
         1 write(1<\\x70>, \"\\x61\\x63\\x6b\\x0a\", 4) = 4\n"
    );
    let mut cfg = watch("/d");
    cfg.existing.insert(PathBuf::from("/d/f"));
    assert!(lint::lint(&lines(&t), &cfg).findings.is_empty());
    // Not known to exist: a create, acknowledged before the directory was synced.
    assert_eq!(lint::lint(&lines(&t), &watch("/d")).findings.len(), 1);
}
