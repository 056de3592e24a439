#![doc = include_str!("../README.md")]

mod appender;
mod batch;
mod cache;
mod data_file;
mod error;
pub mod format;
pub mod key_index;
pub mod marker;
mod options;
pub mod scan;
mod store;
#[cfg(feature = "sim")]
pub mod torture;
#[cfg(feature = "sim")]
pub mod torture_mt;

pub use appender::{Appended, Appender};
pub use batch::WriteBatch;
pub use cache::ValueCache;
pub use data_file::{DataFile, MAX_FILE_LEN, MAX_MARKER_LEN, ValueRef, offset32, read_at_most};
pub use error::{CorruptionKind, Error, Result};
pub use options::{RecoveryMode, SyncPolicy, check_limits, max_batch_bytes};
pub use store::{CompactionReport, Damage, Jobs, KvStore, Pairs, Stats};
