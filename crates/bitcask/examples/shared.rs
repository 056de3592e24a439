//! One `Bitcask` shared by many threads through an `Arc`: writers group-commit their fsyncs,
//! readers never block on them, and a merge runs beside both.
//!
//! `cargo run --release -p durable-bitcask --example shared`
#![allow(clippy::print_stdout, reason = "an example")]

use std::sync::Arc;

use bitcask::{Bitcask, Options};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let db = Arc::new(Bitcask::open(tmp.path(), Options::default())?);
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let db = Arc::clone(&db);
            std::thread::spawn(move || -> Result<(), bitcask::Error> {
                for i in 0..200 {
                    // Durable when it returns; concurrent writers share the fsync.
                    db.put(format!("t{t}-k{i}").as_bytes(), format!("v{i}").as_bytes())?;
                }
                Ok(())
            })
        })
        .collect();
    let reader = {
        let db = Arc::clone(&db);
        // Reads while the writers write: a key is visible once its put returned (durable).
        std::thread::spawn(move || -> Result<usize, bitcask::Error> {
            let mut reads = 0;
            while db.get(b"t0-k199")?.is_none() {
                reads += 1;
                std::thread::yield_now();
            }
            Ok(reads)
        })
    };
    let merger = {
        let db = Arc::clone(&db);
        std::thread::spawn(move || db.compact().map(|r| r.inputs.len()))
    };
    for w in writers {
        w.join().map_err(|_| "a writer panicked")??;
    }
    let seen = reader.join().map_err(|_| "the reader panicked")??;
    let merged = merger.join().map_err(|_| "the merge panicked")??;
    let stats = db.stats();
    println!(
        "{} keys; the reader read {seen} times before writer 0 finished; the merge took {merged} \
         files; {} merges",
        stats.keys, stats.compactions
    );
    assert_eq!(stats.keys, 8 * 200);
    Ok(())
}
