//! lsm-hash in the key-value crash torture (`kv_core::torture`, `kv_core::torture_mt`):
//! the same workloads and oracles as bitcask (overwrites, deletes, batches, `Always`/`Never`
//! sync, reopens), with compactions in place of merges and 4 KiB segments, so segments
//! freeze, snapshot and merge constantly. Crashes land inside freezes, compactions and
//! manifest switches.

use std::path::Path;

use durable_fs::DurableFs;
use durable_fs::sim::harness::BoxError;
use kv_core::SyncPolicy;
use kv_core::torture::KvWorkload;
use kv_core::torture_mt::ConcurrentKv;

use crate::{LsmHash, Options};

/// The options of the torture workloads.
pub fn options(fs: &DurableFs, sync: SyncPolicy) -> Options {
    Options::default()
        .with_fs(fs.clone())
        .with_max_file_bytes(4096)
        .with_sync(sync)
        // Compaction is driven by the workload, so runs are deterministic.
        .with_compaction_min_segments(0)
}

/// Opens the store with [`options`].
pub fn open(fs: &DurableFs, dir: &Path, sync: SyncPolicy) -> Result<LsmHash, BoxError> {
    Ok(LsmHash::open(dir, options(fs, sync))?)
}

/// The single-threaded workload (`lsm-hash` row of `durable torture`).
pub fn workload() -> KvWorkload<LsmHash> {
    KvWorkload::new("lsm-hash", open)
}

/// The concurrent workload (`lsm-hash-mt` row): writers, a reader and a compacting thread.
pub fn concurrent() -> ConcurrentKv<LsmHash> {
    ConcurrentKv::new("lsm-hash-mt", open)
}
