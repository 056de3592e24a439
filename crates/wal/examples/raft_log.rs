//! The WAL as a Raft log: entries appended without waiting and acknowledged after the fsync
//! that covers them, read back by index, a conflicting suffix truncated, and old entries
//! checkpointed away once a snapshot covers them.
//!
//! `cargo run --release -p durable-wal --example raft_log [DIR]`
#![allow(clippy::print_stdout, reason = "an example")]

use wal::{Options, Wal};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| tmp.path().join("raft-log"), std::path::PathBuf::from);
    let log = Wal::open(&dir, Options::default().with_max_segment_bytes(4096))?;

    // A leader appends a batch of entries: readable at once (it can replicate them), durable
    // (and so acknowledged to the consensus layer) only after `sync_to`.
    let entries: Vec<Vec<u8>> = (1..=1000)
        .map(|i| format!("term 1 entry {i}").into_bytes())
        .collect();
    let (mut first, mut last) = (0, 0);
    for batch in entries.chunks(10) {
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        let (a, b) = log.append_batch_nowait(&refs)?;
        assert_eq!(log.read(a)?.as_deref(), refs.first().copied()); // readable at once
        log.sync_to(b)?; // acknowledged from here on
        if first == 0 {
            first = a;
        }
        last = b;
    }
    println!(
        "entries {first}..={last} durable (durable_lsn {})",
        log.durable_lsn()
    );

    // A follower learns that entries after 900 conflict with the new leader's: they go, and
    // their LSNs are never handed out again (the Raft index lives in the payload or in a map
    // kept beside the log, not in the LSN).
    log.truncate_after(first + 899)?;
    let next = log.append(b"term 2 entry 901")?;
    assert!(next > last);
    assert_eq!(log.read(first + 900)?, None);

    // A snapshot now covers everything up to entry 500: whole segments below it go.
    let removed = log.truncate_before(first + 500)?;
    println!(
        "checkpoint: {removed} segments removed, first entry now {:?}",
        log.first_lsn()
    );

    // Replication reads a range.
    let sent: Vec<u64> = log
        .iter_range(first + 500..first + 505)?
        .map(|r| r.map(|(lsn, _)| lsn))
        .collect::<Result<_, _>>()?;
    println!("replicating {sent:?}");
    let stats = log.stats();
    println!(
        "{} segments, {} appends, {} fsyncs ({:.1} records per fsync)",
        stats.segments,
        stats.appends,
        stats.fsyncs,
        stats.records_per_fsync()
    );
    log.close()?;
    Ok(())
}
