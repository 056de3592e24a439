//! Bitcask in the key-value crash torture (`kv_core::torture`, `kv_core::torture_mt`):
//! 4 KiB data files (constant rotation, so hint files are written often) and at most 4 open
//! read handles, so crashes land inside rotations, hint writes and merges; every close writes
//! a keydir image (whatever the key count), so reopens load it, catch up on it, or find it
//! stale.

use std::path::Path;

use durable_fs::DurableFs;
use durable_fs::sim::harness::BoxError;
use kv_core::SyncPolicy;
use kv_core::torture::KvWorkload;
use kv_core::torture_mt::ConcurrentKv;

use crate::{Bitcask, Options};

/// The options of the torture workloads.
pub fn options(fs: &DurableFs, sync: SyncPolicy) -> Options {
    Options::default()
        .with_fs(fs.clone())
        .with_max_file_bytes(4096)
        .with_max_open_files(4)
        .with_image_min_keys(0)
        .with_sync(sync)
}

/// Opens the store with [`options`].
pub fn open(fs: &DurableFs, dir: &Path, sync: SyncPolicy) -> Result<Bitcask, BoxError> {
    Ok(Bitcask::open(dir, options(fs, sync))?)
}

/// The single-threaded workload (`bitcask` row of `durable torture`).
pub fn workload() -> KvWorkload<Bitcask> {
    KvWorkload::new("bitcask", open)
}

/// The concurrent workload (`bitcask-mt` row): writers, a reader and a merging thread.
pub fn concurrent() -> ConcurrentKv<Bitcask> {
    ConcurrentKv::new("bitcask-mt", open)
}
