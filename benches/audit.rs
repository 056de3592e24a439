//! `durable audit`'s lint over a trace of 100k system calls (`AUDIT_CALLS`): a program that
//! creates files in a watched directory (and fsyncs it), writes, fsyncs and acknowledges,
//! correctly (no finding), in strace's
//! notation; parse and lint timed separately. Then explore over a WAL-shaped trace of the
//! same size (replay and every crash state built and hashed, no check run). Prints two
//! lines; results in BENCHMARKS.md.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    missing_docs,
    reason = "benchmark code: a panic is a failed run"
)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use durable_audit::{explore, lint, trace};

fn hex(s: &str) -> String {
    s.bytes().fold(String::new(), |mut o, b| {
        let _ = write!(o, "\\x{b:02x}");
        o
    })
}

fn main() {
    let calls: usize = std::env::var("AUDIT_CALLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let smoke = std::env::args().any(|a| a == "--test");
    let calls = if smoke { 1000 } else { calls };
    let dir = hex("/data");
    let mut text = String::new();
    let mut n = 0;
    let mut file = 0;
    while n < calls {
        let name = hex(&format!("/data/{file:06}.log"));
        let rel = hex(&format!("{file:06}.log"));
        let _ = writeln!(
            text,
            "100 openat(-100<{dir}>, \"{rel}\", 0x441, 0644) = 3<{name}>"
        );
        let _ = writeln!(text, "100 fsync(4<{dir}>) = 0");
        for i in 0..8 {
            let _ = writeln!(text, "100 write(3<{name}>, \"\\x78\\x0a\", 2) = 2");
            let _ = writeln!(text, "100 fdatasync(3<{name}>) = 0");
            let _ = writeln!(
                text,
                "100 write(1<\\x70>, \"{}\", 6) = 6",
                hex(&format!("ack {i}\n"))
            );
        }
        n += 26;
        file += 1;
    }
    let t = Instant::now();
    let events = trace::parse(&text).unwrap();
    let parse = t.elapsed();
    let cfg = lint::Config {
        watch: vec![PathBuf::from("/data")],
        ..lint::Config::default()
    };
    let t = Instant::now();
    let report = lint::lint(&events, &cfg);
    let lint_time = t.elapsed();
    assert_eq!(report.syscalls as usize, events.len());
    assert!(report.findings.is_empty(), "{:?}", report.findings.first());
    // Explore over a trace of the same size shaped like a WAL (a new segment every 1000
    // calls, so ~100 files): the replay into the simulator, and every strict crash state
    // after each acknowledgement built and hashed (no check run: --max-states 0). A crash
    // state is a copy of the watched directory: the cost is points x files (the lint's
    // trace above, a new file every 26 calls, takes ~100x longer; BENCHMARKS.md).
    let mut wal = String::new();
    let (mut n, mut seg) = (0, 0);
    while n < calls {
        let name = hex(&format!("/data/{seg:06}.wal"));
        let rel = hex(&format!("{seg:06}.wal"));
        let _ = writeln!(
            wal,
            "100 openat(-100<{dir}>, \"{rel}\", 0x441, 0644) = 3<{name}>"
        );
        let _ = writeln!(wal, "100 fsync(4<{dir}>) = 0");
        n += 2;
        for i in 0..333 {
            let _ = writeln!(wal, "100 write(3<{name}>, \"\\x78\\x0a\", 2) = 2");
            let _ = writeln!(wal, "100 fdatasync(3<{name}>) = 0");
            let _ = writeln!(
                wal,
                "100 write(1<\\x70>, \"{}\", 6) = 6",
                hex(&format!("ack {}\n", i % 10))
            );
            n += 3;
        }
        seg += 1;
    }
    let wal_events = trace::parse(&wal).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let opts = explore::Options {
        check: "true".to_owned(),
        points: explore::Points::Acks,
        modes: vec![durable_fs::sim::CrashMode::Strict],
        seeds: 1,
        max_states: 0,
        jobs: 1,
        timeout: std::time::Duration::from_secs(60),
        scratch: tmp.path().to_path_buf(),
        keep_failed: 0,
    };
    let initial =
        std::collections::BTreeMap::from([(PathBuf::from("/data"), explore::Initial::Dir)]);
    let t = Instant::now();
    let out = explore::explore(&wal_events, &cfg, &initial, &opts).unwrap();
    let explore_time = t.elapsed();
    println!(
        "audit explore: {} calls, {} segments, {} crash points, {} distinct states built and hashed in {:.0} ms ({:.1} us a call)",
        wal_events.len(),
        seg,
        out.points,
        out.distinct,
        explore_time.as_secs_f64() * 1e3,
        explore_time.as_secs_f64() * 1e6 / wal_events.len() as f64
    );
    println!(
        "audit lint: {} calls ({} MB of trace): parse {:.0} ms, lint {:.0} ms ({:.2} us a call), {} findings",
        events.len(),
        text.len() / 1_000_000,
        parse.as_secs_f64() * 1e3,
        lint_time.as_secs_f64() * 1e3,
        (parse + lint_time).as_secs_f64() * 1e6 / events.len() as f64,
        report.findings.len()
    );
}
