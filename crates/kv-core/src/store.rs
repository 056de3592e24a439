//! [`KvStore`]: the one face of both key-value engines, used by the command line, the
//! benchmarks and the crash torture; [`Stats`] and [`Damage`], which both report.

use std::path::PathBuf;

use crate::batch::WriteBatch;
use crate::error::{CorruptionKind, Result};

/// Every live `(key, value)` of a store.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// What every key-value engine offers, object safe (`Box<dyn KvStore>`).
///
/// Each engine implements it with its own methods of the same names (which say more: the
/// engines' `compact` returns a report, bitcask's `write` which deletes found their key).
pub trait KvStore: Send + Sync {
    /// Applies a batch atomically (durable on return under `SyncPolicy::Always`).
    fn write(&self, batch: WriteBatch) -> Result<()>;
    /// The value of `key`, checksum verified.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Deletes `key`; whether it was live.
    fn delete(&self, key: &[u8]) -> Result<bool>;
    /// Makes every write so far durable.
    fn sync(&self) -> Result<()>;
    /// Merges / compacts now (reclaims the space of overwritten and deleted records).
    fn compact(&self) -> Result<()>;
    /// Every live pair, sorted by key, each value read and checksum verified.
    fn pairs(&self) -> Result<Pairs>;
    /// Counts and sizes.
    fn stats(&self) -> Result<Stats>;
    /// Syncs and closes.
    fn close(self: Box<Self>) -> Result<()>;
}

/// Counts and sizes of a store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Live keys.
    pub keys: u64,
    /// Data files (bitcask) or segments (lsm-hash), the active one included.
    pub files: u64,
    /// Bytes of records in them.
    pub total_bytes: u64,
    /// Bytes of overwritten or deleted records (and tombstones), reclaimable by compaction.
    pub dead_bytes: u64,
    /// Read handles open (bitcask's bounded cache; lsm-hash keeps one per segment).
    pub open_handles: u64,
    /// Hint files or index snapshots that could not be written (the data is safe; the next
    /// open scans instead).
    pub hint_write_failures: u64,
    /// Merges (bitcask) or compactions (lsm-hash) finished since open, background or asked.
    pub compactions: u64,
    /// Merges or compactions that failed since open (the old files stay; a background one
    /// is tried again at its next check; each failure is logged at `error`).
    pub compaction_failures: u64,
    /// The error that poisoned the store, else the last failed merge or compaction's.
    pub last_error: Option<String>,
}

/// Counts a store's merges or compactions and keeps the last failure, for [`Stats`]: shared
/// by both engines so that background work is visible the same way.
///
/// ```
/// let jobs = kv_core::Jobs::default();
/// jobs.record(&Ok::<(), String>(()));
/// jobs.record(&Err::<(), _>("disk full"));
/// let mut stats = kv_core::Stats::default();
/// jobs.fill(&mut stats, None);
/// assert_eq!((stats.compactions, stats.compaction_failures), (1, 1));
/// assert_eq!(stats.last_error.as_deref(), Some("disk full"));
/// ```
#[derive(Debug, Default)]
pub struct Jobs {
    done: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
    last_error: parking_lot::Mutex<Option<String>>,
}

impl Jobs {
    /// Counts one finished job, or one failure (and keeps its error).
    pub fn record<T, E: std::fmt::Display>(&self, r: &std::result::Result<T, E>) {
        use std::sync::atomic::Ordering;
        match r {
            Ok(_) => {
                self.done.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock() = Some(e.to_string());
            }
        }
    }

    /// Puts the counts in `stats`; `poison`, the error that poisoned the store, if any, comes
    /// before the last failure.
    pub fn fill(&self, stats: &mut Stats, poison: Option<&dyn std::fmt::Display>) {
        use std::sync::atomic::Ordering;
        stats.compactions = self.done.load(Ordering::Relaxed);
        stats.compaction_failures = self.failed.load(Ordering::Relaxed);
        stats.last_error = poison
            .map(|p| p.to_string())
            .or_else(|| self.last_error.lock().clone());
    }
}

impl Stats {
    /// `dead_bytes / total_bytes` (0 for an empty store).
    pub fn fragmentation(&self) -> f64 {
        if self.total_bytes == 0 {
            0.0
        } else {
            self.dead_bytes as f64 / self.total_bytes as f64
        }
    }
}

/// What one compaction (a bitcask merge, an lsm-hash compaction) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionReport {
    /// Files merged (and removed).
    pub inputs: Vec<u64>,
    /// Files written (none when nothing was live).
    pub outputs: Vec<u64>,
    /// Live records copied.
    pub records: u64,
    /// Record bytes in the inputs.
    pub bytes_before: u64,
    /// Record bytes in the outputs.
    pub bytes_after: u64,
}

/// A damaged byte range that recovery cut or skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Damage {
    /// The file.
    pub path: PathBuf,
    /// Where the damage starts.
    pub offset: u64,
    /// Bytes dropped or skipped.
    pub len: u64,
    /// What was wrong there.
    pub kind: CorruptionKind,
}

impl Damage {
    /// A damaged range.
    pub fn new(path: PathBuf, offset: u64, len: u64, kind: CorruptionKind) -> Damage {
        Damage {
            path,
            offset,
            len,
            kind,
        }
    }
}
