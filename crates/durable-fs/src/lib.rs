#![doc = include_str!("../README.md")]

mod chunks;
mod durable;
mod error;
mod file;
mod fs;
mod group;
mod recording;
mod salt;
#[cfg(feature = "sim")]
pub mod sim;
mod std_fs;
mod store;
mod ticker;

pub use chunks::{Bytes, CHUNK, Chunks, Source, each_chunk, end_of_nonzero};
pub use durable::{
    Access, DirLock, DurableFs, LOCK_FILE_NAME, QUARANTINE_DIR, TEMP_SUFFIX, parent_dir,
};
pub use error::{Error, Op, Result};
pub use file::File;
pub use fs::{EntryKind, Fs, LockToken, OpenMode, RawFile};
pub use group::{GroupCommit, WriterGuard};
pub use recording::{Event, RecordingFs};
pub use salt::random_salt;
pub use std_fs::StdFs;
pub use store::{Found, IDENTITY_FILE, IDENTITY_MAX_LEN, Identity, StoreError, StoreKind};
pub use ticker::{Ticker, Waker};
