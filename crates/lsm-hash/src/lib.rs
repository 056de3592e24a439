//! # lsm-hash: the log-structured hash table of DDIA chapter 3
//!
//! "Hash Indexes", built to survive power cuts. Writes are appended to the *active segment*;
//! every segment has its own in-memory hash index (key -> offset); a lookup checks the newest
//! segment first, then older ones. At `max_file_bytes` the active segment is frozen (synced,
//! its index snapshotted to `<id>.idx`) and a new one starts. A background thread *compacts and
//! merges* the frozen segments into one holding only each key's latest live record, while
//! reads and writes go on.
//!
//! The set of live segments is the `MANIFEST`, replaced atomically through `durable-fs`
//! (temp file, fsync, rename, directory fsync) whenever it changes: after a crash it names
//! either the old set or the new one, and files it does not name are removed at open. Readers
//! hold a snapshot of the segment list (with open file handles), so they never block on a
//! compaction and never see a deleted file.
//!
//! Records use the record format both key-value engines share through `kv-core`
//! (`docs/FORMAT-kv-record.md`: CRC over header, key and value, salted per file; tombstone
//! flag; batches all-or-nothing); the store implements [`KvStore`], the one face of both
//! engines, and opens read-only ([`Options::read_only`]) without writing anything. A torn tail of the active segment is cut at open;
//! damage elsewhere is [`Error::Corruption`] naming the file and offset. Under
//! [`SyncPolicy::Always`] a write enters its segment's index only once it is durable, so no
//! reader sees a value a power cut could take back. A failed write or fsync poisons the
//! store: every call that reads or writes data returns [`Error::Poisoned`] with the first
//! error ([`LsmHash::poisoned`] and [`LsmHash::segments`] keep answering).
//!
//! ```
//! use lsm_hash::{LsmHash, Options};
//!
//! # fn main() -> Result<(), lsm_hash::Error> {
//! # let tmp = tempfile::tempdir().unwrap();
//! let db = LsmHash::open(tmp.path(), Options::default().with_max_file_bytes(4096))?;
//! for i in 0..300u32 {
//!     db.put(format!("key{}", i % 10).as_bytes(), &i.to_le_bytes())?; // durable on return
//! }
//! db.delete(b"key3")?;
//! assert!(db.segments().len() > 1);
//! db.compact()?;                           // merged segments + the active one
//! assert_eq!(db.get(b"key9")?, Some(299u32.to_le_bytes().to_vec()));
//! assert_eq!(db.get(b"key3")?, None);
//! db.close()?;
//! # Ok(()) }
//! ```
//!
//! **Features.** `sim` adds `lsm_hash::torture`: the store's crash-torture workloads (it
//! turns on `durable-fs/sim`); a default build compiles no simulator.

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
