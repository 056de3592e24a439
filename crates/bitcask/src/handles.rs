//! A bounded cache of open read handles, so thousands of data files do not exhaust file
//! descriptors.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use std::path::Path;
use std::sync::Arc;

use durable_fs::{Access, DurableFs};
use kv_core::{DataFile, Result};

use crate::format::{DATA_MAGIC, data_name, merge_name};

/// The open read handles: a get finds its file's handle under a shared lock and takes nothing
/// exclusive (an open or an eviction takes the write lock, at most once per miss).
#[derive(Debug)]
pub(crate) struct HandleCache {
    capacity: usize,
    /// Counts misses: the "time" an entry was last used, for evicting the least recently used.
    clock: AtomicU64,
    /// Shared with readers: a get clones the `Arc`, not the path.
    open: RwLock<HashMap<u64, (Arc<DataFile>, AtomicU64)>>,
    /// Outputs of a committed merge that a read-only open rolled forward in memory only:
    /// still under their staged name (`N.merge`) unless a writer has renamed them since.
    staged: BTreeSet<u64>,
}

/// Opens data file `id` and checks its header.
pub(crate) fn open_data(fs: &DurableFs, dir: &Path, id: u64) -> Result<DataFile> {
    let path = dir.join(data_name(id));
    DataFile::open(fs, path, &DATA_MAGIC, id, Access::Read).map(|(data, _)| data)
}

/// Opens data file `id`, or, for a staged merge output, its staged file (the data file if a
/// writer finished the merge since: it renames the one to the other).
fn open_staged(fs: &DurableFs, dir: &Path, id: u64) -> Result<DataFile> {
    let staged = dir.join(merge_name(id));
    match DataFile::open(fs, staged, &DATA_MAGIC, id, Access::Read) {
        Ok((data, _)) => Ok(data),
        Err(_) => open_data(fs, dir, id),
    }
}

impl HandleCache {
    pub fn new(capacity: usize, staged: BTreeSet<u64>) -> Self {
        HandleCache {
            capacity,
            clock: AtomicU64::new(0),
            open: RwLock::new(HashMap::new()),
            staged,
        }
    }

    /// The handle of data file `id`, opening it (and evicting the least recently used one)
    /// if needed.
    pub fn get(&self, fs: &DurableFs, dir: &Path, id: u64) -> Result<Arc<DataFile>> {
        let now = self.clock.load(Ordering::Relaxed);
        if let Some((h, used)) = self.open.read().get(&id) {
            // Written only when the clock moved (a miss happened): hits on a hot file do not
            // bounce its cache line between threads.
            if used.load(Ordering::Relaxed) != now {
                used.store(now, Ordering::Relaxed);
            }
            return Ok(Arc::clone(h));
        }
        let h = Arc::new(if self.staged.contains(&id) {
            open_staged(fs, dir, id)?
        } else {
            open_data(fs, dir, id)?
        });
        let mut open = self.open.write();
        let now = self.clock.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some((existing, _)) = open.get(&id) {
            return Ok(Arc::clone(existing)); // another thread opened it meanwhile
        }
        if open.len() >= self.capacity
            && let Some(oldest) = open
                .iter()
                .min_by_key(|(_, (_, used))| used.load(Ordering::Relaxed))
                .map(|(k, _)| *k)
        {
            open.remove(&oldest);
        }
        open.insert(id, (Arc::clone(&h), AtomicU64::new(now)));
        Ok(h)
    }

    /// Forgets `id` (its file is being removed).
    pub fn evict(&self, id: u64) {
        self.open.write().remove(&id);
    }

    /// Handles currently open.
    pub fn len(&self) -> usize {
        self.open.read().len()
    }
}
