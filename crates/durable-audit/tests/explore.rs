//! Explore on saved and hand-written traces (no strace needed; the checks run with `sh`).
//!
//! Proves: the seed bug's trace loses acknowledged lines at exactly the acknowledgements
//! after the first unsynced segment (each failure explained by that segment's create, lost),
//! and the fixed trace loses none in any mode at any operation (the negative control: the
//! only difference is the directory fsync); a check that always fails fails everywhere and
//! one that always passes nowhere (the checks really run); the replay puts bytes where the
//! program did (lseek, pwrite, O_APPEND through dup2, a description shared across fork,
//! threads sharing a table, writes following a file through a rename, hard links, truncate);
//! a failed fsync drops the data even when a retry succeeds (fsyncgate); what the model
//! cannot reproduce is refused as not measured.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use durable_audit::explore::{self, ExploreError, Initial, Options, Outcome, Points};
use durable_audit::lint::Config;
use durable_audit::{capture, trace};
use durable_fs::sim::CrashMode;

const ALL: [CrashMode; 3] = [CrashMode::Strict, CrashMode::Torn, CrashMode::Reordered];

fn opts(check: &str, points: Points, modes: &[CrashMode], scratch: &Path) -> Options {
    Options {
        check: check.to_owned(),
        points,
        modes: modes.to_vec(),
        seeds: 4,
        max_states: 10_000,
        jobs: 2,
        timeout: Duration::from_secs(60),
        scratch: scratch.to_path_buf(),
        keep_failed: 0,
    }
}

/// Explores a saved trace (its header names the watched directory and its contents).
fn golden(name: &str, o: &Options) -> Result<Outcome, ExploreError> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/traces")
        .join(name);
    let text = String::from_utf8(durable_fs::DurableFs::real().read(&path).unwrap()).unwrap();
    let mut cfg = Config::default();
    capture::read_header(&text, &mut cfg).unwrap();
    let events = trace::parse(&text).unwrap();
    let initial = explore::initial(&cfg)?;
    explore::explore(&events, &cfg, &initial, o)
}

/// strace's `-xx` form of a string.
fn x(s: &str) -> String {
    s.bytes().map(|b| format!("\\x{b:02x}")).collect()
}

/// A hand-written trace: `{name}` becomes `"HEX"` for a string and `<HEX>` after a
/// descriptor is written `fd{name}`.
fn synth(lines: &[&str]) -> Vec<trace::Event> {
    let mut text = String::new();
    for l in lines {
        let mut out = String::new();
        let mut rest = *l;
        while let Some(open) = rest.find('{') {
            let close = rest[open..].find('}').unwrap() + open;
            let before = &rest[..open];
            let name = &rest[open + 1..close];
            if before.ends_with(|c: char| c.is_ascii_digit()) {
                out.push_str(&format!("{before}<{}>", x(name)));
            } else {
                out.push_str(&format!("{before}\"{}\"", x(name)));
            }
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        text.push_str(&out);
        text.push('\n');
    }
    trace::parse(&text).unwrap()
}

fn run(lines: &[&str], check: &str, points: Points) -> Result<Outcome, ExploreError> {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = Config {
        watch: vec![PathBuf::from("/w")],
        ..Config::default()
    };
    let initial = BTreeMap::from([(PathBuf::from("/w"), Initial::Dir)]);
    explore::explore(
        &synth(lines),
        &cfg,
        &initial,
        &opts(check, points, &[CrashMode::Strict], tmp.path()),
    )
}

#[test]
fn the_seed_bug_loses_acknowledged_lines_and_the_fix_none() {
    let tmp = tempfile::tempdir().unwrap();
    // Every acknowledged line a..g is in the state, in order.
    let check = r#"n=$DURABLE_AUDIT_ACKS; got=$(cat {dir}/*.wal 2>/dev/null | head -n "$n");
        want=$(printf 'a\nb\nc\nd\ne\nf\ng\n' | head -n "$n"); [ "$got" = "$want" ]"#;
    let o = golden(
        "seedwal-explore-buggy.strace",
        &opts(check, Points::Acks, &[CrashMode::Strict], tmp.path()),
    )
    .unwrap();
    assert_eq!(o.points, 7, "{o:#?}");
    let acks: Vec<&str> = o.failures.iter().map(|f| f.point.what.as_str()).collect();
    assert_eq!(
        acks,
        [
            "ack \"ack 4\"",
            "ack \"ack 5\"",
            "ack \"ack 6\"",
            "ack \"ack 7\""
        ]
    );
    for f in &o.failures {
        let lost: Vec<String> = f
            .pending
            .iter()
            .filter(|(_, lost)| *lost == Some(true))
            .map(|(p, _)| format!("{} {}", p.op, p.path.display()))
            .collect();
        assert!(
            lost.first()
                .is_some_and(|l| l == "create /tmp/ex1/w/000002.wal"),
            "{f}"
        );
    }
    // The fix: the same program with the directory fsynced after each new segment.
    for points in [Points::Acks, Points::Syncs, Points::All] {
        let o = golden(
            "seedwal-explore-fixed.strace",
            &opts(check, points, &ALL, tmp.path()),
        )
        .unwrap();
        assert!(o.failures.is_empty(), "{points:?}: {:#?}", o.failures);
        assert!(o.checked >= 7, "{o:#?}");
    }
    // And the buggy one fails in every mode, not only strict.
    for mode in ALL {
        let o = golden(
            "seedwal-explore-buggy.strace",
            &opts(check, Points::All, &[mode], tmp.path()),
        )
        .unwrap();
        assert!(!o.failures.is_empty(), "{mode}");
    }
}

#[test]
fn the_checks_really_run() {
    let tmp = tempfile::tempdir().unwrap();
    let o = golden(
        "seedwal-explore-buggy.strace",
        &opts("exit 3", Points::All, &[CrashMode::Strict], tmp.path()),
    )
    .unwrap();
    assert!(o.checked > 7);
    assert_eq!(o.failures.len() as u64, o.checked);
    assert!(o.failures.iter().all(|f| f.exit == Some(3)));
    let o = golden(
        "seedwal-explore-buggy.strace",
        &opts("true", Points::All, &ALL, tmp.path()),
    )
    .unwrap();
    assert!(o.failures.is_empty());
    assert!(
        o.states > o.distinct,
        "identical states are checked once: {o:#?}"
    );
    // A bound on the states checked.
    let mut capped = opts("true", Points::All, &ALL, tmp.path());
    capped.max_states = 3;
    let o = golden("seedwal-explore-buggy.strace", &capped).unwrap();
    assert_eq!(o.checked, 3);
    assert!(o.skipped > 0);
    // A check that hangs is killed and counted as failed.
    let mut slow = opts("sleep 30", Points::Acks, &[CrashMode::Strict], tmp.path());
    slow.timeout = Duration::from_millis(300);
    slow.max_states = 1;
    let o = golden("seedwal-explore-buggy.strace", &slow).unwrap();
    assert_eq!(o.failures.len(), 1);
    assert_eq!(o.failures[0].exit, None);
    // A check that leaves a child holding its output is killed with it, group and all.
    let mut bg = opts(
        "sleep 30 & sleep 30",
        Points::Acks,
        &[CrashMode::Strict],
        tmp.path(),
    );
    bg.timeout = Duration::from_millis(300);
    bg.max_states = 1;
    let t = std::time::Instant::now();
    let o = golden("seedwal-explore-buggy.strace", &bg).unwrap();
    assert_eq!(o.failures.len(), 1);
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    // {dir} quoted by the user would be quoted twice.
    let r = golden(
        "seedwal-explore-buggy.strace",
        &opts(
            "test -d \"{dir}\"",
            Points::Acks,
            &[CrashMode::Strict],
            tmp.path(),
        ),
    );
    assert!(matches!(r, Err(ExploreError::Usage(_))), "{r:?}");
    // Nothing is left in the scratch directory.
    let left = durable_fs::DurableFs::real().list(tmp.path()).unwrap();
    assert!(left.is_empty(), "{left:?}");
}

const DIR_SYNC: [&str; 2] = [
    "1 openat(-100{/}, {/w}, 0x10000) = 9{/w}",
    "1 fsync(9{/w}) = 0",
];
const ACK: &str = "1 write(1{pipe:[7]}, {ack\n}, 4) = 4";

/// The check passes when, after the first acknowledgement, `file` holds `want` exactly.
fn holds(file: &str, want: &str) -> String {
    let want: String = want.bytes().map(|b| format!("\\{b:03o}")).collect();
    format!("[ \"$DURABLE_AUDIT_ACKS\" = 0 ] || {{ printf '{want}' | cmp - {{dir}}/{file}; }}")
}

fn lines<'a>(body: &[&'a str]) -> Vec<&'a str> {
    let mut v = body.to_vec();
    v.extend_from_slice(&DIR_SYNC);
    v.push(ACK);
    v
}

#[test]
fn bytes_go_where_the_program_put_them() {
    // lseek and pwrite (which does not move the position).
    let o = run(
        &lines(&[
            "1 openat(-100{/}, {/w/f}, 0x41, 0644) = 3{/w/f}",
            "1 write(3{/w/f}, {abc}, 3) = 3",
            "1 lseek(3{/w/f}, 1, 0) = 1",
            "1 write(3{/w/f}, {X}, 1) = 1",
            "1 pwrite64(3{/w/f}, {Z}, 1, 5) = 1",
            "1 write(3{/w/f}, {Y}, 1) = 1",
            "1 fsync(3{/w/f}) = 0",
        ]),
        &holds("f", "aXY\0\0Z"),
        Points::Acks,
    )
    .unwrap();
    assert!(o.failures.is_empty(), "{:#?}", o.failures);
    // O_APPEND through dup2 into a forked child (appending after an lseek to 0, and
    // pwrite's offset ignored, as Linux does) and a thread sharing the table: a descriptor
    // the thread opens is the parent's too.
    let o = run(
        &lines(&[
            "1 openat(-100{/}, {/w/g}, 0x441, 0644) = 3{/w/g}",
            "1 write(3{/w/g}, {zero\n}, 5) = 5",
            "1 dup2(3{/w/g}, 7) = 7{/w/g}",
            "1 close(3{/w/g}) = 0",
            "1 clone(child_stack=NULL, flags=0x1200011, child_tidptr=0x7f00) = 2",
            "2 lseek(7{/w/g}, 0, 0) = 0",
            "2 write(7{/w/g}, {one\n}, 4) = 4",
            "2 pwrite64(7{/w/g}, {1}, 1, 0) = 1",
            "1 clone(child_stack=0x7f00, flags=0x3d0f00, parent_tid=0x1, tls=0x2, child_tidptr=0x3) = 3",
            "3 write(7{/w/g}, {two\n}, 4) = 4",
            "3 openat(-100{/}, {/w/g2}, 0x41, 0644) = 8{/w/g2}",
            "1 write(8{/w/g2}, {shared}, 6) = 6",
            "3 fsync(7{/w/g}) = 0",
            "1 fsync(8{/w/g2}) = 0",
        ]),
        &format!("{} && {}", holds("g", "zero\none\n1two\n"), holds("g2", "shared")),
        Points::Acks,
    )
    .unwrap();
    assert!(o.failures.is_empty(), "{:#?}", o.failures);
    // A forked child's own calls printed before its parent's clone returned (strace -f
    // does that): its table is still a copy of the parent's.
    let o = run(
        &lines(&[
            "1 openat(-100{/}, {/w/a}, 0x41, 0644) = 3{/w/a}",
            "1 openat(-100{/}, {/w/b}, 0x41, 0644) = 4{/w/b}",
            "2 close(3{/w/a}) = 0",
            "2 dup2(4{/w/b}, 3) = 3{/w/b}",
            "1 clone(child_stack=NULL, flags=0x1200011, child_tidptr=0x7f00) = 2",
            "2 write(3{/w/b}, {B}, 1) = 1",
            "1 write(3{/w/a}, {A}, 1) = 1",
            "2 fsync(3{/w/b}) = 0",
            "1 fsync(3{/w/a}) = 0",
        ]),
        &format!("{} && {}", holds("a", "A"), holds("b", "B")),
        Points::Acks,
    )
    .unwrap();
    assert!(o.failures.is_empty(), "{:#?}", o.failures);
    // A forked child shares the parent's file description: one position for both.
    let o = run(
        &lines(&[
            "1 openat(-100{/}, {/w/h}, 0x41, 0644) = 3{/w/h}",
            "1 clone(child_stack=NULL, flags=0x1200011, child_tidptr=0x7f00) = 2",
            "2 write(3{/w/h}, {ab}, 2) = 2",
            "1 write(3{/w/h}, {cd}, 2) = 2",
            "1 fsync(3{/w/h}) = 0",
        ]),
        &holds("h", "abcd"),
        Points::Acks,
    )
    .unwrap();
    assert!(o.failures.is_empty(), "{:#?}", o.failures);
    // Writes follow the file through a rename; a hard link names the same bytes; O_TRUNC
    // and ftruncate.
    let o = run(
        &lines(&[
            "1 openat(-100{/}, {/w/t.tmp}, 0x41, 0644) = 3{/w/t.tmp}",
            "1 write(3{/w/t.tmp}, {v1}, 2) = 2",
            "1 rename({/w/t.tmp}, {/w/t}) = 0",
            "1 write(3{/w/t}, {+}, 1) = 1",
            "1 fsync(3{/w/t}) = 0",
            "1 link({/w/t}, {/w/u}) = 0",
            "1 openat(-100{/}, {/w/k}, 0x41, 0644) = 4{/w/k}",
            "1 write(4{/w/k}, {long content}, 12) = 12",
            "1 ftruncate(4{/w/k}, 4) = 0",
            "1 fsync(4{/w/k}) = 0",
        ]),
        &format!(
            "{} && {} && {}",
            holds("t", "v1+"),
            holds("u", "v1+"),
            holds("k", "long")
        ),
        Points::Acks,
    )
    .unwrap();
    assert!(o.failures.is_empty(), "{:#?}", o.failures);
}

#[test]
fn every_operation_is_a_crash_point_and_unsynced_work_is_lost_in_strict_mode() {
    // At every point before the directory fsync the new file may be missing: the check
    // (which demands it from the start) fails there and is explained by the create.
    let o = run(
        &lines(&[
            "1 openat(-100{/}, {/w/f}, 0x41, 0644) = 3{/w/f}",
            "1 write(3{/w/f}, {abc}, 3) = 3",
            "1 fsync(3{/w/f}) = 0",
        ]),
        "test -f {dir}/f",
        Points::All,
    )
    .unwrap();
    // Strict states: no file (after the open, the write, the fsync: one state, checked
    // once), and the file with the acknowledgement (the directory fsync's point is the
    // acknowledgement's: nothing changed between them, so one point with more acks).
    assert_eq!(o.points, 4, "{o:#?}");
    assert_eq!(o.failures.len(), 1, "{:#?}", o.failures);
    assert_eq!(o.checked, 2, "{o:#?}");
    for f in &o.failures {
        let (p, lost) = &f.pending[0];
        assert_eq!((p.op, *lost), ("create", Some(true)), "{f}");
    }
}

#[test]
fn a_failed_fsync_drops_the_data_even_when_a_retry_succeeds() {
    let body = [
        "1 openat(-100{/}, {/w/e}, 0x41, 0644) = 3{/w/e}",
        "1 openat(-100{/}, {/w}, 0x10000) = 9{/w}",
        "1 fsync(9{/w}) = 0",
        "1 write(3{/w/e}, {data}, 4) = 4",
        "1 fsync(3{/w/e}) = -1 EIO (Input/output error)",
        "1 fsync(3{/w/e}) = 0",
        ACK,
    ];
    let o = run(&body, &holds("e", "data"), Points::Acks).unwrap();
    assert_eq!(o.failures.len(), 1, "{:#?}", o.failures);
    // Without the failure the same program keeps its data (the control).
    let mut ok = body.to_vec();
    ok.remove(4);
    let o = run(&ok, &holds("e", "data"), Points::Acks).unwrap();
    assert!(o.failures.is_empty(), "{:#?}", o.failures);
}

fn refused(lines: &[&str], what: &str) {
    match run(lines, "true", Points::Acks) {
        Err(ExploreError::NotMeasured(m)) => assert!(m.contains(what), "{m}"),
        other => panic!("expected not measured ({what}), got {other:?}"),
    }
}

#[test]
fn what_the_model_cannot_reproduce_is_not_measured() {
    refused(
        &[
            "1 openat(-100{/}, {/w/f}, 0x41, 0644) = 3{/w/f}",
            "1 write(3{/w/f}, {ab}..., 5) = 5",
        ],
        "strace kept 2",
    );
    refused(
        &["1 openat(-100{/}, {/w}, 0x410002, 0600) = 3{/w/#1}"],
        "O_TMPFILE",
    );
    refused(&["1 symlink({x}, {/w/s}) = 0"], "symlink");
    refused(&["1 rename({/tmp/x}, {/w/x}) = 0"], "from outside");
    refused(&["1 link({/tmp/x}, {/w/x}) = 0"], "from outside");
    refused(&["1 write(5{/w/f}, {a}, 1) = 1"], "before the trace");
    refused(
        &[
            "1 openat(-100{/}, {/w/a}, 0x41, 0644) = 3{/w/a}",
            "1 openat(-100{/}, {/w/b}, 0x41, 0644) = 4{/w/b}",
            "1 renameat2(-100{/}, {/w/a}, -100{/}, {/w/b}, 0x2) = 0",
        ],
        "RENAME_EXCHANGE",
    );
    refused(
        &["1 openat(-100{/}, {/w/nope}, 0x2) = 3{/w/nope}"],
        "no such file",
    );
    refused(
        &[
            "1 openat(-100{/}, {/w/f}, 0x41, 0644) = 3{/w/f}",
            "1 fallocate(3{/w/f}, 0x3, 0, 4096) = 0",
        ],
        "fallocate mode",
    );
    refused(
        &[
            "1 openat(-100{/}, {/tmp/src}, 0) = 3{/tmp/src}",
            "1 openat(-100{/}, {/w/f}, 0x41, 0644) = 4{/w/f}",
            "1 copy_file_range(3{/tmp/src}, NULL, 4{/w/f}, NULL, 10, 0) = 10",
        ],
        "copy_file_range",
    );
    refused(&["1 rename({/w}, {/v}) = 0"], "was renamed");
    // A descriptor the kernel shows as another watched file than the model's.
    refused(
        &[
            "1 openat(-100{/}, {/w/a}, 0x41, 0644) = 3{/w/a}",
            "1 openat(-100{/}, {/w/b}, 0x41, 0644) = 4{/w/b}",
            "1 write(3{/w/b}, {x}, 1) = 1",
        ],
        "to the kernel",
    );
    // Flags strace printed symbolically (a trace without -X raw).
    refused(
        &["1 openat(-100{/}, {/w/a}, O_WRONLY|O_CREAT, 0644) = 3{/w/a}"],
        "not a number",
    );
    refused(
        &["1 mmap(NULL, 4096, 0x3, 0x1, 3{/w/a}, 0) = 0x7f00"],
        "mmap",
    );
    refused(&["1 io_uring_setup(8, 0x7ffd) = 3"], "io_uring");
    // Sizes a crafted trace could use to exhaust memory.
    for big in [
        "1 ftruncate(3{/w/f}, 1099511627776) = 0",
        "1 pwrite64(3{/w/f}, {a}, 1, 9223372036854775000) = 1",
        "1 fallocate(3{/w/f}, 0, 0, 1099511627776) = 0",
    ] {
        refused(
            &["1 openat(-100{/}, {/w/f}, 0x41, 0644) = 3{/w/f}", big],
            "more than the model holds",
        );
    }
    // Two watched directories, and a trace saved without the directory's contents.
    let cfg = Config {
        watch: vec![PathBuf::from("/w"), PathBuf::from("/v")],
        ..Config::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let r = explore::explore(
        &synth(&[ACK]),
        &cfg,
        &BTreeMap::new(),
        &opts("true", Points::Acks, &[CrashMode::Strict], tmp.path()),
    );
    assert!(matches!(r, Err(ExploreError::NotMeasured(m)) if m.contains("exactly one")));
    let mut cfg = Config::default();
    cfg.existing.insert(PathBuf::from("/w/old"));
    let r = explore::initial(&cfg);
    assert!(
        matches!(r, Err(ExploreError::NotMeasured(m)) if m.contains("capture it with --explore"))
    );
}

#[test]
fn an_fsync_covers_only_what_completed_before_it_started() {
    // A thread's write that completes while another's fsync of the same file is running
    // (strace shows the fsync interrupted) may not be covered by it: acknowledging it
    // after that fsync alone loses it.
    let racing = [
        "1 openat(-100{/}, {/w/log}, 0x41, 0644) = 3{/w/log}",
        "1 openat(-100{/}, {/w}, 0x10000) = 9{/w}",
        "1 fsync(9{/w}) = 0",
        "1 clone(child_stack=0x7f00, flags=0x3d0f00, parent_tid=0x1, tls=0x2, child_tidptr=0x3) = 2",
        "1 write(3{/w/log}, {r1}, 2) = 2",
        "1 fsync(3{/w/log} <unfinished ...>",
        "2 pwrite64(3{/w/log}, {r2}, 2, 2) = 2",
        "1 <... fsync resumed>) = 0",
        "2 write(1{pipe:[7]}, {ack 2\n}, 6) = 6",
    ];
    let o = run(&racing, &holds("log", "r1r2"), Points::Acks).unwrap();
    assert_eq!(o.failures.len(), 1, "{:#?}", o.failures);
    // The control: the write completes before the fsync starts.
    let mut ordered = racing.to_vec();
    ordered.swap(5, 6);
    ordered[5] = "2 pwrite64(3{/w/log}, {r2}, 2, 2) = 2";
    ordered[6] = "1 fsync(3{/w/log}) = 0";
    ordered.remove(7);
    let o = run(&ordered, &holds("log", "r1r2"), Points::Acks).unwrap();
    assert!(o.failures.is_empty(), "{:#?}", o.failures);
}

#[test]
fn an_acknowledgement_counts_from_its_start() {
    // The ack's write started before the fsync and finished after it: a reader may have
    // seen it before the data was durable.
    let o = run(
        &[
            "1 openat(-100{/}, {/w/f}, 0x41, 0644) = 3{/w/f}",
            DIR_SYNC[0],
            DIR_SYNC[1],
            "1 clone(child_stack=0x7f00, flags=0x3d0f00, parent_tid=0x1, tls=0x2, child_tidptr=0x3) = 2",
            "1 write(3{/w/f}, {data}, 4) = 4",
            "2 write(1{pipe:[7]}, {ack\n}, 4 <unfinished ...>",
            "1 fsync(3{/w/f}) = 0",
            "2 <... write resumed>) = 4",
        ],
        &holds("f", "data"),
        Points::Acks,
    )
    .unwrap();
    assert_eq!(o.failures.len(), 1, "{:#?}", o.failures);
}

#[test]
fn every_acknowledged_line_counts_and_the_exit_acknowledges_when_it_happens() {
    // Three acknowledgements in one write (a buffered stdout): the check is told three.
    let o = run(
        &["1 write(1{pipe:[7]}, {ack 1\nack 2\nack 3\n}, 18) = 18"],
        "exit 1",
        Points::Acks,
    )
    .unwrap();
    assert_eq!(o.failures.iter().map(|f| f.point.acks).max(), Some(3));
    // `--ack exit`: the first process's exit acknowledges what was durable then, not what
    // a child made durable later.
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = Config {
        watch: vec![PathBuf::from("/w")],
        ..Config::default()
    };
    cfg.ack = durable_audit::lint::AckSpec::parse(&["exit".to_owned()]).unwrap();
    let trace = [
        "1 openat(-100{/}, {/w/f}, 0x41, 0644) = 3{/w/f}",
        DIR_SYNC[0],
        DIR_SYNC[1],
        "1 write(3{/w/f}, {x}, 1) = 1",
        "1 clone(child_stack=NULL, flags=0x1200011, child_tidptr=0x7f00) = 2",
        "1 exit_group(0) = ?",
        "2 fsync(3{/w/f}) = 0",
    ];
    let initial = BTreeMap::from([(PathBuf::from("/w"), Initial::Dir)]);
    let o = explore::explore(
        &synth(&trace),
        &cfg,
        &initial,
        &opts(
            &holds("f", "x"),
            Points::Acks,
            &[CrashMode::Strict],
            tmp.path(),
        ),
    )
    .unwrap();
    assert_eq!(o.failures.len(), 1, "{:#?}", o.failures);
}

#[test]
fn sync_writes_and_appends_after_a_failed_fsync() {
    // O_DSYNC: each write is durable when it returns; without it, the same program loses.
    let dsync = [
        "1 openat(-100{/}, {/w/f}, 0x1041, 0644) = 3{/w/f}",
        DIR_SYNC[0],
        DIR_SYNC[1],
        "1 write(3{/w/f}, {data}, 4) = 4",
        ACK,
    ];
    let o = run(&dsync, &holds("f", "data"), Points::Acks).unwrap();
    assert!(o.failures.is_empty(), "{:#?}", o.failures);
    let mut plain = dsync.to_vec();
    plain[0] = "1 openat(-100{/}, {/w/f}, 0x41, 0644) = 3{/w/f}";
    let o = run(&plain, &holds("f", "data"), Points::Acks).unwrap();
    assert_eq!(o.failures.len(), 1, "{:#?}", o.failures);
    // After a failed fsync the file keeps its size: an append lands after it.
    let o = run(
        &[
            "1 openat(-100{/}, {/w/f}, 0x441, 0644) = 3{/w/f}",
            DIR_SYNC[0],
            DIR_SYNC[1],
            "1 write(3{/w/f}, {data}, 4) = 4",
            "1 fsync(3{/w/f}) = -1 EIO (Input/output error)",
            "1 write(3{/w/f}, {more}, 4) = 4",
            "1 fsync(3{/w/f}) = 0",
            ACK,
        ],
        &holds("f", "\0\0\0\0more"),
        Points::Acks,
    )
    .unwrap();
    assert!(o.failures.is_empty(), "{:#?}", o.failures);
}

#[test]
fn overlapping_fsyncs_each_cover_what_came_before_they_started() {
    let threads = [
        "1 clone(child_stack=0x7f00, flags=0x3d0f00, parent_tid=0x1, tls=0x2, child_tidptr=0x3) = 2",
        "1 clone(child_stack=0x7f00, flags=0x3d0f00, parent_tid=0x1, tls=0x2, child_tidptr=0x3) = 3",
    ];
    let mut lines = vec![
        "1 openat(-100{/}, {/w/f}, 0x41, 0644) = 3{/w/f}",
        DIR_SYNC[0],
        DIR_SYNC[1],
    ];
    lines.extend_from_slice(&threads);
    lines.extend_from_slice(&[
        "1 fsync(3{/w/f} <unfinished ...>",
        "2 pwrite64(3{/w/f}, {v1}, 2, 0) = 2",
        "3 fsync(3{/w/f} <unfinished ...>",
        "2 pwrite64(3{/w/f}, {v2}, 2, 0) = 2",
        "3 <... fsync resumed>) = 0",
        "1 <... fsync resumed>) = 0",
    ]);
    // v1 completed before the second fsync started: durable; v2 after both started: not.
    let mut acked = lines.clone();
    acked.push("2 write(1{pipe:[7]}, {ack\n}, 4) = 4");
    let o = run(&acked, &holds("f", "v1"), Points::Acks).unwrap();
    assert!(o.failures.is_empty(), "{:#?}", o.failures);
    let o = run(&acked, &holds("f", "v2"), Points::Acks).unwrap();
    assert_eq!(o.failures.len(), 1, "{:#?}", o.failures);
    // One more fsync, after both writes: v2 is durable.
    let mut synced = lines.clone();
    synced.push("2 fsync(3{/w/f}) = 0");
    synced.push("2 write(1{pipe:[7]}, {ack\n}, 4) = 4");
    let o = run(&synced, &holds("f", "v2"), Points::Acks).unwrap();
    assert!(o.failures.is_empty(), "{:#?}", o.failures);
}

#[test]
fn what_syncs_and_what_does_not() {
    let base = [
        "1 openat(-100{/}, {/w/f}, 0x41, 0644) = 3{/w/f}",
        DIR_SYNC[0],
        DIR_SYNC[1],
        "1 write(3{/w/f}, {data}, 4) = 4",
    ];
    let with = |extra: &[&'static str]| {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        v.push(ACK);
        run(&v, &holds("f", "data"), Points::Acks)
            .unwrap()
            .failures
            .len()
    };
    // syncfs of the watched directory's filesystem syncs; of another one, nothing.
    assert_eq!(with(&["1 syncfs(9{/w}) = 0"]), 0);
    assert_eq!(
        with(&[
            "1 openat(-100{/}, {/tmp}, 0x10000) = 5{/tmp}",
            "1 syncfs(5{/tmp}) = 0"
        ]),
        1
    );
    assert_eq!(with(&["1 sync() = 0"]), 0);
    // A sync that a write interrupted counts for nothing (the model cannot split it).
    assert_eq!(
        with(&[
            "1 clone(child_stack=0x7f00, flags=0x3d0f00, parent_tid=0x1, tls=0x2, child_tidptr=0x3) = 2",
            "2 sync( <unfinished ...>",
            "1 write(3{/w/f}, {more}, 4) = 4",
            "2 <... sync resumed>) = 0",
        ]),
        1
    );
    // fdatasync is an fsync here.
    assert_eq!(with(&["1 fdatasync(3{/w/f}) = 0"]), 0);
    // An O_DSYNC write to a file with other unsynced writes: the model cannot sync a range.
    refused(
        &[
            "1 openat(-100{/}, {/w/f}, 0x41, 0644) = 3{/w/f}",
            "1 write(3{/w/f}, {a}, 1) = 1",
            "1 openat(-100{/}, {/w/f}, 0x1001) = 4{/w/f}",
            "1 write(4{/w/f}, {b}, 1) = 1",
        ],
        "O_DSYNC",
    );
}

#[test]
fn acknowledgement_lines_are_read_whole() {
    // A line written in pieces is one acknowledgement, complete at its last piece.
    let o = run(
        &[
            "1 write(1{pipe:[7]}, {ac}, 2) = 2",
            "1 write(1{pipe:[7]}, {k 7\nack}, 7) = 7",
            "1 write(1{pipe:[7]}, { 8\n}, 3) = 3",
        ],
        "exit 1",
        Points::Acks,
    )
    .unwrap();
    // (Nothing changed between them: one crash point, holding both.)
    let what: Vec<(&str, usize)> = o
        .failures
        .iter()
        .map(|f| (f.point.what.as_str(), f.point.acks))
        .collect();
    assert_eq!(what, [("ack \"ack 8\"", 2)]);
    // A write strace cut short: an acknowledgement may be in what it did not keep.
    refused(
        &["1 write(1{pipe:[7]}, {ack 1}..., 4000) = 4000"],
        "raise --max-write",
    );
    // A write the process died in still acknowledges (it may have been read).
    let o = run(
        &[
            "1 openat(-100{/}, {/w/f}, 0x41, 0644) = 3{/w/f}",
            "2 write(1{pipe:[7]}, {ack\n}, 4 <unfinished ...>",
        ],
        "test -f {dir}/f || [ \"$DURABLE_AUDIT_ACKS\" = 0 ]",
        Points::Acks,
    )
    .unwrap();
    assert_eq!(o.failures.len(), 1, "{:#?}", o.failures);
    // Nothing acknowledged at all: nothing to verify, not a pass.
    refused(
        &["1 openat(-100{/}, {/w/f}, 0x41, 0644) = 3{/w/f}"],
        "nothing was acknowledged",
    );
}

#[test]
fn an_interrupted_fsync_covers_its_inode_as_it_was() {
    let thread = "1 clone(child_stack=0x7f00, flags=0x3d0f00, parent_tid=0x1, tls=0x2, child_tidptr=0x3) = 2";
    // Another sync in the middle took what this one would have covered: a write made after
    // this one started is still not covered by it.
    let o = run(
        &[
            "1 openat(-100{/}, {/w/log}, 0x41, 0644) = 3{/w/log}",
            DIR_SYNC[0],
            DIR_SYNC[1],
            thread,
            "1 write(3{/w/log}, {W1}, 2) = 2",
            "1 fsync(3{/w/log} <unfinished ...>",
            "2 fdatasync(3{/w/log}) = 0",
            "2 pwrite64(3{/w/log}, {W3}, 2, 2) = 2",
            "1 <... fsync resumed>) = 0",
            "2 write(1{pipe:[7]}, {ack\n}, 4) = 4",
        ],
        &holds("log", "W1W3"),
        Points::Acks,
    )
    .unwrap();
    assert_eq!(o.failures.len(), 1, "{:#?}", o.failures);
    // The name it synced was replaced meanwhile: the new file's data is not covered.
    let o = run(
        &[
            "1 openat(-100{/}, {/w/a}, 0x41, 0644) = 3{/w/a}",
            DIR_SYNC[0],
            DIR_SYNC[1],
            thread,
            "1 write(3{/w/a}, {old}, 3) = 3",
            "1 fsync(3{/w/a} <unfinished ...>",
            "2 openat(-100{/}, {/w/tmp}, 0x41, 0644) = 4{/w/tmp}",
            "2 write(4{/w/tmp}, {new}, 3) = 3",
            "2 rename({/w/tmp}, {/w/a}) = 0",
            "1 <... fsync resumed>) = 0",
            "2 fsync(9{/w}) = 0",
            "2 write(1{pipe:[7]}, {ack\n}, 4) = 4",
        ],
        &holds("a", "new"),
        Points::Acks,
    )
    .unwrap();
    assert_eq!(o.failures.len(), 1, "{:#?}", o.failures);
    // An O_DSYNC write through one name while the file has unsynced writes through another.
    refused(
        &[
            "1 openat(-100{/}, {/w/a}, 0x41, 0644) = 3{/w/a}",
            "1 link({/w/a}, {/w/b}) = 0",
            "1 openat(-100{/}, {/w/b}, 0x1) = 4{/w/b}",
            "1 write(4{/w/b}, {X}, 1) = 1",
            "1 openat(-100{/}, {/w/a}, 0x1001) = 5{/w/a}",
            "1 pwrite64(5{/w/a}, {Y}, 1, 1) = 1",
        ],
        "O_DSYNC",
    );
    // The last acknowledgement, written without a newline, counts.
    let o = run(
        &["1 write(1{pipe:[7]}, {ack 5}, 5) = 5"],
        "exit 1",
        Points::Acks,
    )
    .unwrap();
    assert_eq!(o.failures.iter().map(|f| f.point.acks).max(), Some(1));
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    const PATHS: [&str; 7] = ["/w/a", "/w/b", "/w/d", "/w/d/c", "/w", "/x/y", "/"];
    const FLAGS: [&str; 6] = ["0", "0x41", "0x241", "0x441", "0x10000", "0x410002"];

    /// One line of a random trace: calls the replay models, with arbitrary descriptors,
    /// paths, sizes and results.
    fn line() -> impl Strategy<Value = String> {
        (
            0usize..21,
            1u32..4,
            0usize..PATHS.len(),
            0usize..PATHS.len(),
            0i64..4,
            0u64..5000,
            0usize..FLAGS.len(),
            proptest::bool::ANY,
        )
            .prop_map(|(kind, pid, a, b, other, n, fl, fail)| {
                let (pa, pb, flags) = (x(PATHS[a]), x(PATHS[b]), FLAGS[fl]);
                // Mostly the descriptor the prologue opened for that path, sometimes not.
                let fd = if other == 0 { 20 } else { 3 + a as i64 };
                let ret = if fail {
                    "-1 EIO (Input/output error)"
                } else {
                    "0"
                };
                let data = x(&"z".repeat((n % 40) as usize));
                let len = n % 40;
                match kind {
                    0 => format!(
                        "{pid} openat(-100<{}>, \"{pa}\", {flags}, 0644) = {fd}<{pa}>",
                        x("/")
                    ),
                    1 => format!("{pid} write({fd}<{pa}>, \"{data}\", {len}) = {len}"),
                    2 => format!("{pid} pwrite64({fd}<{pa}>, \"{data}\", {len}, {n}) = {len}"),
                    3 => format!("{pid} lseek({fd}<{pa}>, {n}, 0) = {n}"),
                    4 => format!("{pid} ftruncate({fd}<{pa}>, {n}) = {ret}"),
                    5 => format!("{pid} fsync({fd}<{pa}>) = {ret}"),
                    6 => format!("{pid} rename(\"{pa}\", \"{pb}\") = {ret}"),
                    7 => format!("{pid} unlink(\"{pa}\") = {ret}"),
                    8 => format!("{pid} mkdir(\"{pa}\", 0755) = {ret}"),
                    9 => format!("{pid} link(\"{pa}\", \"{pb}\") = {ret}"),
                    10 => format!("{pid} dup2({fd}<{pa}>, {}) = {}<{pa}>", fd + 1, fd + 1),
                    11 => format!("{pid} close({fd}<{pa}>) = 0"),
                    12 => format!("{pid} clone(child_stack=NULL, flags={flags}) = {}", pid + 1),
                    13 => format!("{pid} write(1<pipe:[3]>, \"{}\", 4) = 4", x("ack\n")),
                    14 => format!("{pid} rmdir(\"{pa}\") = {ret}"),
                    // An fsync another process's write interrupted.
                    16 => format!(
                        "{pid} fsync({fd}<{pa}> <unfinished ...>\n{} pwrite64({fd}<{pa}>, \"{data}\", {len}, {n}) = {len}\n{pid} <... fsync resumed>) = {ret}",
                        pid + 1
                    ),
                    17 => format!("{pid} read({fd}<{pa}>, \"{data}\", {len}) = {len}"),
                    18 => format!(
                        "{pid} fcntl({fd}<{pa}>, {}, {n}) = {}",
                        [0, 2, 4, 1030][(n % 4) as usize],
                        fd + 1
                    ),
                    19 => format!("{pid} execve(\"{}\", [], 0x0) = 0", x("/bin/x")),
                    20 => format!("{pid} write(1<pipe:[3]>, \"{}\", 3 <unfinished ...>", x("ack")),
                    _ => format!("{pid} sync() = 0"),
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the trace says, the replay answers (a result or "not measured"),
        /// never panics, and checks nothing when told to check nothing.
        #[test]
        fn the_replay_never_panics(lines in proptest::collection::vec(line(), 0..40)) {
            // A prologue that opens every path (3 + its index), so the random calls that
            // follow reach deep into the replay rather than stopping at the first unknown.
            let mut text = format!("1 mkdir(\"{}\", 0755) = 0\n", x("/w/d"));
            for (i, p) in PATHS.iter().enumerate() {
                let flags = if matches!(*p, "/w/d" | "/w" | "/") { "0x10000" } else { "0x41" };
                text.push_str(&format!(
                    "1 openat(-100<{}>, \"{}\", {flags}, 0644) = {}<{}>\n",
                    x("/"), x(p), 3 + i, x(p)
                ));
            }
            text.push_str(&(lines.join("\n") + "\n"));
            let Ok(events) = trace::parse(&text) else { return Ok(()); };
            let tmp = tempfile::tempdir().unwrap();
            let cfg = Config { watch: vec![PathBuf::from("/w")], ..Config::default() };
            let initial = BTreeMap::from([(PathBuf::from("/w"), Initial::Dir)]);
            let mut o = opts("exit 1", Points::All, &ALL, tmp.path());
            o.max_states = 0;
            let r = explore::explore(&events, &cfg, &initial, &o);
            if let Ok(out) = r {
                prop_assert_eq!(out.checked, 0);
                prop_assert!(out.failures.is_empty());
            }
        }
    }
}
