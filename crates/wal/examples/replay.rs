//! Replays one crash point of the WAL torture workload and prints what happened:
//! `cargo run -p durable-wal --example replay -- SEED CRASH_POINT [strict|torn] [lying]`.
#![allow(clippy::indexing_slicing, reason = "a debugging tool; a panic is fine")]

use durable_fs::sim::harness::Workload;
use durable_fs::sim::{CrashMode, Rng, SimFs};
use wal::torture::WalWorkload;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let (seed, k) = (arg(1), arg(2));
    let mode = if args.get(3).map(String::as_str) == Some("torn") {
        CrashMode::Torn
    } else {
        CrashMode::Strict
    };
    let lying = args.get(4).is_some();
    let w = WalWorkload::default();
    let sim = SimFs::new();
    w.prepare(&sim.durable())
        .unwrap_or_else(|e| panic!("prepare: {e}"));
    sim.set_lying_dir_sync(lying);
    sim.schedule_crash_at(sim.op_count() + k);
    let mut events = Vec::new();
    let r = w.run(&sim.durable(), seed, &mut events);
    eprintln!("run: {r:?}");
    for e in &events {
        match e {
            wal::torture::WalEvent::Acked { lsn, payload } => {
                eprintln!(
                    "acked {lsn} {}",
                    String::from_utf8_lossy(&payload[..payload.len().min(20)])
                )
            }
            other => eprintln!("{other:?}"),
        }
    }
    let image = sim.crash(mode, Rng::derive(seed, k));
    image.set_lying_dir_sync(lying);
    let fs = image.durable();
    eprintln!("files: {:?}", fs.list(&w.dir));
    match w.recover(&fs) {
        Ok(state) => {
            for (lsn, p) in &state {
                eprintln!(
                    "recovered {lsn} {}",
                    String::from_utf8_lossy(&p[..p.len().min(20)])
                );
            }
            eprintln!("{:?}", w.check(seed, &events, &state));
        }
        Err(e) => eprintln!("recovery failed: {e}"),
    }
}
