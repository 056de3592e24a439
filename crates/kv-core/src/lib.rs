//! # kv-core: what both key-value engines share
//!
//! `bitcask` and `lsm-hash` differ in their index (one keydir, or a hash index per segment)
//! and their compaction policy (merge every immutable file, or every frozen segment). The
//! rest is here, written once:
//!
//! - [`mod@format`]: the file header, the record and hint codecs, named offsets checked against
//!   `docs/FORMAT-kv-record.md` by a test; [`scan`]: reading a data file at open, keeping
//!   batches whole and telling a torn tail from corruption ([`RecoveryMode`]).
//! - [`DataFile`]: the data-file lifecycle (create durably, open and check the header, read
//!   a value and check it is the record the index meant); [`Appender`]: the active file's
//!   write path (encode, preallocate, one `pwrite`, seal).
//! - [`WriteBatch`], [`SyncPolicy`], [`RecoveryMode`], [`Error`] with [`CorruptionKind`],
//!   [`Stats`], [`Damage`], and [`marker`] (the text-plus-CRC codec of the merge marker and
//!   the manifest).
//! - [`KvStore`]: one face for both engines, used by the `durable` command line, the
//!   benchmarks and the crash torture.
//! - With the `sim` feature: `torture` and `torture_mt`, the single-threaded and
//!   concurrent key-value crash workloads and their oracles.
//!
//! What the WAL shares too (group commit, the background [`durable_fs::Ticker`], the salt)
//! lives one floor down, in `durable-fs`.
//!
//! ```
//! use kv_core::format::{FileHeader, decode_record, encode_record};
//!
//! let header = FileHeader::new(7, 1).encode(b"\x89BCD\r\n\x1a\n");
//! let mut file = header.to_vec();
//! encode_record(&mut file, 7, 1, 0, 0, b"key", b"value");
//! let r = decode_record(&file[header.len()..], 7, kv_core::format::VERSION).unwrap();
//! assert_eq!((r.key, r.value), (&b"key"[..], &b"value"[..]));
//! ```

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
