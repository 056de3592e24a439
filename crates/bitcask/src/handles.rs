//! A bounded cache of open read handles, so thousands of data files do not exhaust file
//! descriptors.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use std::path::Path;
use std::sync::Arc;

use durable_fs::{Access, DurableFs};
use kv_core::{DataFile, Result};

use crate::format::{DATA_MAGIC, data_name, merge_name};

/// The handles, and the ids of files removed (never cached again: a reader that opened one
/// just before its removal must not keep it, and its disk space, alive in the cache).
#[derive(Debug, Default)]
struct Table {
    handles: HashMap<u64, (Arc<DataFile>, AtomicU64)>,
    removed: HashSet<u64>,
}

/// The open read handles: a get finds its file's handle under a shared lock and takes nothing
/// exclusive (an open or an eviction takes the write lock, at most once per miss).
#[derive(Debug)]
pub(crate) struct HandleCache {
    capacity: usize,
    /// Counts misses: the "time" an entry was last used, for evicting the least recently used.
    clock: AtomicU64,
    /// Shared with readers: a get clones the `Arc`, not the path.
    open: RwLock<Table>,
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
            open: RwLock::new(Table::default()),
            staged,
        }
    }

    /// The handle of data file `id`, opening it (and evicting the least recently used one)
    /// if needed.
    pub fn get(&self, fs: &DurableFs, dir: &Path, id: u64) -> Result<Arc<DataFile>> {
        let now = self.clock.load(Ordering::Relaxed);
        if let Some((h, used)) = self.open.read().handles.get(&id) {
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
        let mut t = self.open.write();
        let now = self.clock.fetch_add(1, Ordering::Relaxed) + 1;
        if t.removed.contains(&id) {
            return Ok(h); // used once by this reader, never kept
        }
        if let Some((existing, _)) = t.handles.get(&id) {
            return Ok(Arc::clone(existing)); // another thread opened it meanwhile
        }
        if t.handles.len() >= self.capacity
            && let Some(oldest) = t
                .handles
                .iter()
                .min_by_key(|(_, (_, used))| used.load(Ordering::Relaxed))
                .map(|(k, _)| *k)
        {
            t.handles.remove(&oldest);
        }
        t.handles.insert(id, (Arc::clone(&h), AtomicU64::new(now)));
        Ok(h)
    }

    /// Forgets `id` for good (its file is being removed).
    pub fn evict(&self, id: u64) {
        let mut t = self.open.write();
        t.handles.remove(&id);
        t.removed.insert(id);
    }

    /// Handles currently open.
    pub fn len(&self) -> usize {
        self.open.read().handles.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use kv_core::format::FileKind;

    /// A file evicted because it is being removed is never cached again: a reader that
    /// opened it just before the removal uses its handle once and does not keep it (and the
    /// file's disk space) alive in the cache.
    #[test]
    fn an_evicted_file_is_never_cached_again() {
        let sim = durable_fs::sim::SimFs::new();
        let fs = sim.durable();
        let dir = Path::new("/db");
        fs.create_dir_all(dir).unwrap();
        for id in [1, 2] {
            DataFile::create(
                &fs,
                dir.join(data_name(id)),
                &DATA_MAGIC,
                id,
                FileKind::Written,
            )
            .unwrap();
        }
        let cache = HandleCache::new(8, BTreeSet::new());
        cache.get(&fs, dir, 1).unwrap();
        assert_eq!(cache.len(), 1);
        cache.evict(1);
        assert_eq!(cache.len(), 0);
        cache.get(&fs, dir, 1).unwrap(); // a reader racing the removal
        assert_eq!(cache.len(), 0, "a removed file's handle was cached");
        cache.get(&fs, dir, 2).unwrap();
        assert_eq!(cache.len(), 1);
    }
}
