#![doc = include_str!("../README.md")]

mod commit;
mod format;
mod handles;
mod image;
mod inner;
mod keydir;
mod merge;
mod options;
mod recovery;
mod store;
#[cfg(feature = "sim")]
pub mod torture;

pub use commit::MERGE_MARKER;
pub use format::STORE_KIND;
pub use kv_core::{
    CompactionReport, CorruptionKind, Damage, Error, KvStore, RecoveryMode, Result, Stats,
    SyncPolicy, WriteBatch,
};
pub use options::{MergeTriggers, Options, Regressions};
pub use recovery::RecoveryReport;
pub use store::{Bitcask, Iter};

// The handles are shared across threads (`Arc<Bitcask>`): checked at compile time.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Bitcask>();
    send_sync::<Iter>();
};
