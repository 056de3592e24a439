//! # wal: a segmented write-ahead log
//!
//! Records are appended to segment files, numbered with LSNs (1, 2, 3, ...), checksummed, and
//! made durable according to a [`SyncPolicy`]. All file work goes through `durable-fs`, so a
//! new segment's directory entry is durable before any record in it is acknowledged.
//!
//! Guarantees:
//! - **Durability.** With [`SyncPolicy::Always`], `append` returns only after the fsync that
//!   covers the record; concurrent appenders share one fsync (group commit). With other
//!   policies, everything up to [`Wal::durable_lsn`] survives a power cut.
//! - **Prefix.** After a crash the log is a prefix of what was appended: no hole, no
//!   reordering, and a batch ([`Wal::append_batch`]) is there whole or not at all.
//! - **No LSN reuse.** A durable record's LSN is never handed out again: not after
//!   [`Wal::truncate_after`], not after truncating everything, not after reopening. (LSNs of
//!   records that never became durable, lost in a crash under `Never`/`Interval`, were never
//!   acknowledged and may be handed out again.)
//! - **Recovery.** A torn tail (a crash mid-append) is truncated, durably, and reported in
//!   [`Wal::recovery_report`]; damage followed by valid records is refused with
//!   [`Error::Corruption`] naming the file and offset ([`RecoveryMode`] chooses).
//! - **Fail-stop.** After a failed write or fsync the log is poisoned: every later call
//!   returns [`Error::Poisoned`] with the original error; nothing after it is acknowledged.
//!
//! The format is documented byte by byte in [`mod@format`].
//!
//! **Features.** `sim` adds `wal::torture` and `wal::torture_mt`: the log's crash-torture
//! workloads (it turns on `durable-fs/sim`); a default build compiles no simulator.
//!
//! ```
//! use wal::{Options, SyncPolicy, Wal};
//!
//! # fn main() -> Result<(), wal::Error> {
//! # let tmp = tempfile::tempdir().unwrap();
//! let wal = Wal::open(tmp.path(), Options::default().with_sync(SyncPolicy::Always))?;
//! let a = wal.append(b"first")?;                 // durable when it returns
//! let (b, c) = wal.append_batch(&[b"second", b"third"])?; // all or nothing
//! assert_eq!((a, b, c), (1, 2, 3));
//! let records: Vec<_> = wal.iter_from(2)?.collect::<Result<_, _>>()?;
//! assert_eq!(records, vec![(2, b"second".to_vec()), (3, b"third".to_vec())]);
//! wal.truncate_after(2)?;                        // drop LSN 3 durably
//! assert_eq!(wal.append(b"fourth")?, 4);         // LSN 3 is not reused
//! wal.close()?;
//! # Ok(()) }
//! ```

mod chain;
mod error;
pub mod format;
mod options;
mod reader;
mod recovery;
#[cfg(feature = "sim")]
pub mod torture;
#[cfg(feature = "sim")]
pub mod torture_mt;
mod verify;
mod wal;

pub use error::{CorruptionKind, Error, Result};
pub use format::{Lsn, STORE_KIND};
pub use options::{Options, RecoveryMode, SyncPolicy};
pub use reader::Iter;
pub use recovery::{Damage, RecoveryReport};
pub use verify::{VerifyReport, read_only_iter, read_only_open, verify};
pub use wal::{Wal, WalStats};

// The handles are shared across threads (`Arc<Wal>`): checked at compile time.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Wal>();
    send_sync::<Iter>();
};
