#![doc = include_str!("../README.md")]

pub mod manifest;
mod options;
mod segment;
mod store;
#[cfg(feature = "sim")]
pub mod torture;

pub use kv_core::{
    CompactionReport, CorruptionKind, Damage, Error, KvStore, RecoveryMode, Result, Stats,
    SyncPolicy, WriteBatch,
};
pub use options::{Options, Regressions};
pub use segment::{SEGMENT_MAGIC, STORE_KIND, index_name, segment_name};
pub use store::{LsmHash, RecoveryReport, SegmentInfo};

// The handles are shared across threads (`Arc<LsmHash>`): checked at compile time.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<LsmHash>();
};
