//! # durable-fs: the filesystem door
//!
//! The only crate in the workspace that touches the filesystem. Engines (`wal`, `bitcask`,
//! `lsm-hash`) do all their file work through a [`DurableFs`], which guarantees that a
//! namespace change has reached the disk before the call returns:
//!
//! | call | durable when it returns |
//! |---|---|
//! | [`DurableFs::create_new`] | the new (empty) file and its directory entry: file `fsync`, parent `fsync` |
//! | [`DurableFs::rename`] | the file's data, the new name, the old name's removal: file `fsync`, destination directory `fsync` (and the source's when different) |
//! | [`DurableFs::remove_file`] | the removal: parent `fsync` |
//! | [`DurableFs::create_dir_all`] | every new directory: each new directory's parent `fsync`ed |
//! | [`DurableFs::atomic_replace`] | the new content, all or nothing: temp file, `fsync`, rename, directory `fsync` |
//! | [`File::sync_data`] / [`File::sync_all`] | the file's data and size (plus metadata for `sync_all`) |
//! | [`File::append`], [`File::write_all_at`], [`File::set_len`] | nothing: page cache only, until a sync |
//!
//! Why: a file whose data was `fsync`ed can still vanish after a power cut if its directory
//! entry was never `fsync`ed. PostgreSQL, SQLite and LevelDB sync the parent directory; many
//! small engines forget. Here the recipe is written once, in [`DurableFs`].
//!
//! **Fail-stop.** The first failed write or sync poisons the [`File`] (and a failed directory
//! sync poisons the directory): every later write or sync reports the original error as
//! [`Error::Poisoned`]. Nothing is retried, because after a failed `fsync` Linux may have
//! dropped the dirty pages and a retry can "succeed" without the data.
//!
//! **Group commit.** [`GroupCommit`] lets concurrent writers share one fsync (leader and
//! followers), and keeps failing once an fsync failed; every engine's `SyncPolicy::Always`
//! uses it.
//!
//! **Background work.** [`Ticker`] runs an engine's background threads (interval syncs,
//! merges, compactions): each wakes every interval or when kicked, and all stop and are
//! joined when the engine closes. [`random_salt`] draws the per-file salt that keeps stale
//! bytes of an older file from validating in a newer one.
//!
//! **Exclusive lock.** [`DurableFs::lock_dir`] takes a `flock`-style lock on `DIR/LOCK`; a
//! second writer, in this or another process, gets [`Error::Locked`].
//!
//! **Layers.** [`Fs`] and [`RawFile`] are the primitives an implementation provides:
//! [`StdFs`] (real), `sim::SimFs` (simulated, loses what was not synced: strict, torn or
//! reordered crash images), [`RecordingFs`] (logs calls for tests). `sim::harness` crashes a
//! workload at every operation and checks that nothing acknowledged was lost.
//!
//! **Features.** `sim` (off by default) compiles the simulator, the crash harness and the
//! torture support (`durable_fs::sim`); tests and the `durable torture` command turn it on,
//! a shipped engine does not build it.
//!
//! # Example (feature `sim`)
//! ```
//! use std::path::Path;
//! use durable_fs::DurableFs;
//! use durable_fs::sim::{CrashMode, SimFs};
//!
//! # fn main() -> Result<(), durable_fs::Error> {
//! // The same code runs on the real disk (`DurableFs::real()`) and on the simulation.
//! let sim = SimFs::new();
//! let fs: DurableFs = sim.durable();
//! fs.create_dir_all(Path::new("/db"))?;
//! let seg = fs.create_new(Path::new("/db/000001.log"))?;
//! seg.append(b"record")?;
//! seg.sync_data()?;
//!
//! // Power cut: what was synced survives, including the new directory entries.
//! let after = sim.crash(CrashMode::Strict, 42).durable();
//! assert_eq!(after.read(Path::new("/db/000001.log"))?, b"record");
//! # Ok(()) }
//! ```

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
