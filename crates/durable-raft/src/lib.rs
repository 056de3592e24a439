#![doc = include_str!("../README.md")]

pub mod adapter;
mod error;
pub mod log;
pub mod meta;
pub mod net;
pub mod sm;
pub mod snapshot;
#[cfg(feature = "sim")]
pub mod torture;
#[cfg(feature = "sim")]
pub mod torture_mt;
mod types;

/// The openraft this crate implements the storage of (0.9, `serde` + `storage-v2`), for
/// callers who want exactly the matching version.
pub use openraft;

pub use adapter::{LogReader, LogStore, SnapshotBuilder, StateMachine};
pub use error::{Error, Result};
pub use types::{
    Entry, LogId, NodeId, Request, Response, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig, Vote,
};

// The stores are shared with openraft's tasks: checked at compile time.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<LogStore<TypeConfig>>();
    send_sync::<LogReader<TypeConfig>>();
    send_sync::<StateMachine>();
    send_sync::<SnapshotBuilder>();
};
