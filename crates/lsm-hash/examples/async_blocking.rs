//! lsm-hash from async code: every call does file I/O and, under `SyncPolicy::Always`, waits
//! for its fsync, so async code calls it through `spawn_blocking`, never on an executor
//! thread. The store is `Send + Sync`: one `Arc` serves every task.
//!
//! `cargo run --release -p durable-lsm-hash --example async_blocking`
#![allow(clippy::print_stdout, reason = "an example")]

use std::sync::Arc;

use lsm_hash::{LsmHash, Options};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let db = Arc::new(LsmHash::open(tmp.path(), Options::default())?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()?;
    let total = rt.block_on(async {
        let tasks: Vec<_> = (0..16u32)
            .map(|t| {
                let db = Arc::clone(&db);
                tokio::task::spawn_blocking(move || -> Result<u32, lsm_hash::Error> {
                    for i in 0..50u32 {
                        db.put(format!("task{t}-{i}").as_bytes(), &i.to_le_bytes())?;
                    }
                    Ok(50)
                })
            })
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        }
        let db = Arc::clone(&db);
        let got = tokio::task::spawn_blocking(move || db.get(b"task3-7"))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        assert_eq!(got, Some(7u32.to_le_bytes().to_vec()));
        Ok::<u32, String>(total)
    })?;
    println!(
        "{total} durable puts from 16 async tasks; {} keys",
        db.len()?
    );
    Ok(())
}
