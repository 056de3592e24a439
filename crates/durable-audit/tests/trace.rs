//! The strace parser against saved traces (golden files: a shell script with forks, Python
//! threads with interrupted calls and odd file names, our own `durable kv load`), line by
//! line cases, and a property test: no input makes it panic, and any call it is given in
//! strace's notation comes back exactly.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "test code: a panic is a failed test"
)]

use std::path::Path;

use durable_audit::trace::{self, Arg, Event, EventKind, Parser, Ret, Syscall};
use proptest::prelude::*;

fn golden(name: &str) -> Vec<Event> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/traces")
        .join(name);
    let text = String::from_utf8(durable_fs::DurableFs::real().read(&path).unwrap()).unwrap();
    trace::parse(&text).unwrap()
}

fn calls<'a>(evs: &'a [Event], name: &str) -> Vec<&'a Syscall> {
    evs.iter()
        .filter_map(|e| match &e.kind {
            EventKind::Syscall(c) if c.name == name => Some(c),
            _ => None,
        })
        .collect()
}

fn ends_with(path: &[u8], tail: &str) -> bool {
    path.ends_with(tail.as_bytes())
}

#[test]
fn the_seed_bug_trace_shows_its_creates_syncs_and_acks() {
    let evs = golden("seedwal-buggy.strace");
    let pids: std::collections::BTreeSet<u32> = evs.iter().map(|e| e.pid).collect();
    assert!(pids.len() > 5, "forked processes: {pids:?}");
    // Three segments created (`: > f`: O_CREAT 0x40 | O_TRUNC 0x200) and seven appends
    // (`>> f`: O_CREAT | O_APPEND 0x400): O_CREAT alone does not tell a create.
    let opens = |flag: i64| {
        calls(&evs, "openat")
            .into_iter()
            .filter(|c| c.int_arg(2).is_some_and(|f| f & 0x40 != 0 && f & flag != 0) && c.ok())
            .filter_map(|c| c.str_arg(1))
            .filter(|p| ends_with(p, ".wal"))
            .count()
    };
    assert_eq!((opens(0x200), opens(0x400)), (3, 7));
    let fsyncs = calls(&evs, "fsync");
    let dir_syncs = fsyncs
        .iter()
        .filter(|c| c.fd_path(0).is_some_and(|p| ends_with(p, "/w")))
        .count();
    assert_eq!(
        dir_syncs, 1,
        "the directory is synced once, after the first segment"
    );
    let file_syncs = fsyncs
        .iter()
        .filter(|c| c.fd_path(0).is_some_and(|p| ends_with(p, ".wal")))
        .count();
    assert_eq!(file_syncs, 7);
    let acks: Vec<&[u8]> = calls(&evs, "write")
        .into_iter()
        .filter_map(|c| c.str_arg(1))
        .filter(|d| d.starts_with(b"ack "))
        .collect();
    assert_eq!(acks.len(), 7);
    assert_eq!(acks[6], b"ack 7\n");
    // A resumed vfork returns the child's pid.
    assert!(
        calls(&evs, "vfork")
            .iter()
            .all(|c| matches!(c.ret, Ret::Value { value, .. } if value > 0))
    );
    // (-qq leaves out the +++ exited lines.)
    assert!(calls(&evs, "vfork").len() >= 9);
}

#[test]
fn threads_with_interrupted_calls_and_odd_names_parse_exactly() {
    let evs = golden("python-threads.strace");
    let renames = calls(&evs, "rename");
    assert_eq!(renames.len(), 18);
    for r in &renames {
        let from = r.str_arg(0).unwrap();
        assert!(
            from.ends_with(b" odd \"name\"\n.tmp"),
            "{:?}",
            String::from_utf8_lossy(from)
        );
        assert!(r.ok());
    }
    // The files written and fsynced carry their full odd path.
    let synced = calls(&evs, "fsync")
        .iter()
        .filter(|c| c.fd_path(0).is_some_and(|p| p.ends_with(b"\"name\"\n.tmp")))
        .count();
    assert_eq!(synced, 18);
    let pids: std::collections::BTreeSet<u32> = evs.iter().map(|e| e.pid).collect();
    assert_eq!(pids.len(), 4, "the main thread and three workers");
}

#[test]
fn our_own_kv_load_trace_parses() {
    let evs = golden("durable-kv-load.strace");
    assert!(calls(&evs, "renameat2").len() + calls(&evs, "rename").len() > 0);
    assert!(calls(&evs, "fdatasync").len() + calls(&evs, "fsync").len() > 3);
}

#[test]
fn lines_one_by_one() {
    let mut p = Parser::new();
    assert_eq!(p.feed(1, "12 fsync(3 <unfinished ...>").unwrap(), None);
    assert_eq!(
        p.feed(2, "13 +++ exited with 3 +++").unwrap().unwrap().kind,
        EventKind::Exited(3)
    );
    let ev = p
        .feed(3, "12 <... fsync resumed>)   = -1 EIO (Input/output error)")
        .unwrap()
        .unwrap();
    assert_eq!((ev.line, ev.pid), (3, 12));
    let EventKind::Syscall(c) = ev.kind else {
        panic!()
    };
    assert_eq!(c.args, vec![Arg::Int(3)]);
    assert_eq!(
        c.ret,
        Ret::Error {
            errno: "EIO".into()
        }
    );
    let ev = p
        .feed(
            4,
            r#"7 openat(-100<\x2f>, "\x61\x3e\x62"..., 0x241, 0644) = 5<\x2f\x61\x3e\x62>"#,
        )
        .unwrap()
        .unwrap();
    let EventKind::Syscall(c) = ev.kind else {
        panic!()
    };
    assert_eq!(
        c.args[0],
        Arg::Fd {
            fd: -100,
            path: b"/".to_vec()
        }
    );
    assert_eq!(
        c.args[1],
        Arg::Str {
            bytes: b"a>b".to_vec(),
            truncated: true
        }
    );
    assert_eq!(c.args[2], Arg::Int(0x241));
    assert_eq!(
        c.ret,
        Ret::Value {
            value: 5,
            path: Some(b"/a>b".to_vec())
        }
    );
    assert_eq!(
        p.feed(5, "9 --- SIGCHLD {si_signo=SIGCHLD} ---")
            .unwrap()
            .unwrap()
            .kind,
        EventKind::Signal("SIGCHLD".into())
    );
    assert_eq!(
        p.feed(6, "9 +++ killed by SIGKILL (core dumped) +++")
            .unwrap()
            .unwrap()
            .kind,
        EventKind::Killed("SIGKILL".into())
    );
    assert_eq!(p.feed(7, "exit_group(0) = ?").unwrap().unwrap().pid, 0);
    assert!(p.unfinished().is_empty());
    // Errors name the line.
    for (n, bad) in [
        (8, "5 <... fsync resumed>) = 0"),
        (9, "5 fsync(3"),
        (10, "5 fsync(3) 0"),
        (11, r#"5 write(1, "\x4", 1) = 1"#),
        (12, "5 fs ync(3) = 0"),
    ] {
        let e = p.feed(n, bad).unwrap_err();
        assert_eq!(e.line, n, "{e}");
    }
}

/// A call in strace's notation, and what it must parse to.
fn call_line() -> impl Strategy<Value = (String, Syscall)> {
    let arg = prop_oneof![
        (any::<i32>(), prop::collection::vec(any::<u8>(), 0..20)).prop_map(|(fd, path)| Arg::Fd {
            fd: i64::from(fd),
            path
        }),
        (prop::collection::vec(any::<u8>(), 0..40), any::<bool>())
            .prop_map(|(bytes, truncated)| Arg::Str { bytes, truncated }),
        any::<i64>().prop_map(Arg::Int),
    ];
    (
        "[a-z_][a-z0-9_]{0,12}",
        prop::collection::vec(arg, 0..5),
        prop_oneof![
            any::<i64>().prop_map(|v| Ret::Value {
                value: v,
                path: None
            }),
            "E[A-Z]{2,8}".prop_map(|errno| Ret::Error { errno }),
            Just(Ret::Unknown),
        ],
    )
        .prop_map(|(name, args, ret)| {
            let hex = |b: &[u8]| b.iter().map(|x| format!("\\x{x:02x}")).collect::<String>();
            let text: Vec<String> = args
                .iter()
                .map(|a| match a {
                    Arg::Fd { fd, path } => format!("{fd}<{}>", hex(path)),
                    Arg::Str { bytes, truncated } => {
                        format!("\"{}\"{}", hex(bytes), if *truncated { "..." } else { "" })
                    }
                    Arg::Int(v) => v.to_string(),
                    Arg::Other(s) => s.clone(),
                })
                .collect();
            let ret_text = match &ret {
                Ret::Value { value, .. } => value.to_string(),
                Ret::Error { errno } => format!("-1 {errno} (Some message)"),
                Ret::Unknown => "?".to_owned(),
            };
            let line = format!("{name}({}) = {ret_text}", text.join(", "));
            (line, Syscall { name, args, ret })
        })
}

proptest! {
    #[test]
    fn never_panics_on_any_line(line in any::<String>()) {
        let mut p = Parser::new();
        let _ = p.feed(1, &line);
        let _ = p.feed(2, &format!("1 {line}"));
        let _ = p.feed(3, &format!("1 <... x resumed>{line}"));
    }

    #[test]
    fn calls_come_back_exactly((line, want) in call_line(), pid in 1u32..100_000, cut in any::<prop::sample::Index>()) {
        let mut p = Parser::new();
        let ev = p.feed(1, &format!("{pid} {line}")).unwrap().unwrap();
        prop_assert_eq!(ev.pid, pid);
        prop_assert_eq!(&ev.kind, &EventKind::Syscall(want.clone()));
        // The same call interrupted at any point between its arguments and resumed.
        let open = line.find('(').unwrap();
        let close = line.rfind(')').unwrap();
        let at = open + 1 + cut.index(close - open);
        if line.is_char_boundary(at) {
            let mut p = Parser::new();
            prop_assert_eq!(p.feed(1, &format!("{pid} {} <unfinished ...>", &line[..at])).unwrap(), None);
            let ev = p.feed(2, &format!("{pid} <... {} resumed>{}", want.name, &line[at..])).unwrap().unwrap();
            prop_assert_eq!(ev.kind, EventKind::Syscall(want));
        }
    }

    #[test]
    fn mutated_golden_lines_never_panic(i in 0usize..128, pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/traces/python-threads.strace");
        let text = String::from_utf8(durable_fs::DurableFs::real().read(&path).unwrap()).unwrap();
        let line = text.lines().nth(i % text.lines().count()).unwrap();
        let mut bytes = line.as_bytes().to_vec();
        let at = pos.index(bytes.len().max(1)).min(bytes.len().saturating_sub(1));
        if let Some(b) = bytes.get_mut(at) { *b = byte; }
        let mutated = String::from_utf8_lossy(&bytes);
        let mut p = Parser::new();
        let _ = p.feed(1, &mutated);
    }
}

#[test]
fn deleted_files_detached_and_superseded_processes_parse() {
    let mut p = Parser::new();
    let ev = p
        .feed(1, r#"5 write(3<\x2f\x74>(deleted), "\x61", 1) = 1"#)
        .unwrap()
        .unwrap();
    let EventKind::Syscall(c) = ev.kind else {
        panic!()
    };
    assert_eq!(c.fd_path(0), Some(&b"/t"[..]));
    assert_eq!(
        p.feed(2, "6 +++ superseded by execve in pid 5 +++")
            .unwrap(),
        None
    );
    assert_eq!(p.feed(3, "7 fsync(3 <unfinished ...>").unwrap(), None);
    assert_eq!(p.feed(4, "7 fsync(3 <detached ...>").unwrap(), None);
    assert!(p.unfinished().is_empty());
}
