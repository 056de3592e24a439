//! # bitcask: a crash-safe Bitcask key-value store
//!
//! The design of the Bitcask paper (Sheehy and Smith, Basho 2010): writes are appended to
//! the active data file; an in-memory *keydir* maps each live key to the file, offset and size
//! of its latest value, so a read is one positional read; full files become immutable and get
//! a *hint file* that makes the next open fast; *merge* rewrites live records and drops the
//! rest.
//!
//! Without Riak's durability gaps:
//! - every new file is created through `durable-fs` (its directory entry is fsynced), so an
//!   acknowledged write never vanishes with the file that holds it;
//! - a merge commits with one atomic marker file and only then removes its inputs, so a crash
//!   at any point leaves the old set or the new set: no lost key, no resurrected delete;
//! - a torn tail (a crash mid-write) is truncated at open and reported; damage elsewhere is
//!   refused with file and offset ([`Error::Corruption`]) unless [`Options::recovery`] says
//!   [`RecoveryMode::SkipCorrupt`];
//! - under [`SyncPolicy::Always`] a write is visible to other threads only once it is
//!   durable (readers never see a value a power cut could take back), and a merge racing
//!   writers never drops a record before the write that replaced it is durable;
//! - a failed write or fsync poisons the store: nothing after it is acknowledged, and every
//!   call that reads or writes data returns [`Error::Poisoned`] ([`Bitcask::poisoned`] and
//!   [`Bitcask::stats`] keep answering).
//!
//! Records carry a CRC over header, key and value, salted per file; a delete is a tombstone
//! flag, so an empty value is a legal value. Batches ([`WriteBatch`]) are all-or-nothing after
//! a crash. The record, header and hint formats are shared with lsm-hash through `kv-core`
//! (`docs/FORMAT-kv-record.md`); the directory and the merge marker are in
//! `docs/FORMAT-bitcask.md`. The store implements [`KvStore`], the one face of both engines.
//!
//! **Open.** Close writes a *keydir image* (`KEYDIR`) of a store of at least
//! [`Options::image_min_keys`] keys: the whole keydir, checksummed and bound to the id, salt
//! and length of every data file it describes. The next open loads it with a few large reads
//! and applies the files written since on top; anything changed, damaged or doubtful and it
//! falls back to hints and scans ([`RecoveryReport::from_image`] says which happened).
//!
//! **Features.** `sim` adds `bitcask::torture`: the store's crash-torture workloads
//! (it turns on `durable-fs/sim`); a default build compiles no simulator.
//!
//! **Memory.** Every live key is in memory: key length + about 42 bytes each (58.5 bytes for
//! a 16-byte key; see BENCHMARKS.md), so the key set must fit in RAM, as in Bitcask.
//!
//! ```
//! use bitcask::{Bitcask, Options, WriteBatch};
//!
//! # fn main() -> Result<(), bitcask::Error> {
//! # let tmp = tempfile::tempdir().unwrap();
//! let db = Bitcask::open(tmp.path(), Options::default())?; // SyncPolicy::Always by default
//! db.put(b"apple", b"red")?;                             // durable when it returns
//! db.put(b"empty", b"")?;                                // an empty value is a value
//! let mut batch = WriteBatch::new();
//! batch.put(b"pear", b"green");
//! batch.delete(b"apple");
//! db.write(batch)?;                                      // all or nothing
//! assert_eq!(db.get(b"apple")?, None);
//! assert_eq!(db.get(b"empty")?, Some(Vec::new()));
//! db.compact()?;                                         // merge: reclaim dead bytes
//! assert_eq!(db.get(b"pear")?, Some(b"green".to_vec()));
//! db.close()?;
//! # Ok(()) }
//! ```

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
