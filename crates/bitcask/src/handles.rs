//! A bounded cache of open read handles, so thousands of data files do not exhaust file
//! descriptors.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use durable_fs::{Access, DurableFs};
use kv_core::{DataFile, Result};

use crate::format::{DATA_MAGIC, data_name, merge_name};

#[derive(Debug)]
pub(crate) struct HandleCache {
    capacity: usize,
    tick: u64,
    /// Shared with readers: a get clones the `Arc`, not the path.
    open: HashMap<u64, (Arc<DataFile>, u64)>,
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
            tick: 0,
            open: HashMap::new(),
            staged,
        }
    }

    /// The handle of data file `id`, opening it (and evicting the least recently used one)
    /// if needed.
    pub fn get(&mut self, fs: &DurableFs, dir: &Path, id: u64) -> Result<Arc<DataFile>> {
        self.tick += 1;
        if let Some((h, used)) = self.open.get_mut(&id) {
            *used = self.tick;
            return Ok(Arc::clone(h));
        }
        let h = Arc::new(if self.staged.contains(&id) {
            open_staged(fs, dir, id)?
        } else {
            open_data(fs, dir, id)?
        });
        if self.open.len() >= self.capacity
            && let Some(oldest) = self
                .open
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
        {
            self.open.remove(&oldest);
        }
        self.open.insert(id, (Arc::clone(&h), self.tick));
        Ok(h)
    }

    /// Forgets `id` (its file is being removed).
    pub fn evict(&mut self, id: u64) {
        self.open.remove(&id);
    }

    /// Handles currently open.
    pub fn len(&self) -> usize {
        self.open.len()
    }
}
