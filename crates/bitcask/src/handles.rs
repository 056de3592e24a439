//! A bounded cache of open read handles, so thousands of data files do not exhaust file
//! descriptors.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use durable_fs::{Access, DurableFs};
use kv_core::{DataFile, Result};

use crate::format::{DATA_MAGIC, data_name};

#[derive(Debug)]
pub(crate) struct HandleCache {
    capacity: usize,
    tick: u64,
    /// Shared with readers: a get clones the `Arc`, not the path.
    open: HashMap<u64, (Arc<DataFile>, u64)>,
}

/// Opens data file `id` and checks its header.
pub(crate) fn open_data(fs: &DurableFs, dir: &Path, id: u64) -> Result<DataFile> {
    let path = dir.join(data_name(id));
    DataFile::open(fs, path, &DATA_MAGIC, id, Access::Read).map(|(data, _)| data)
}

impl HandleCache {
    pub fn new(capacity: usize) -> Self {
        HandleCache {
            capacity,
            tick: 0,
            open: HashMap::new(),
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
        let h = Arc::new(open_data(fs, dir, id)?);
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
