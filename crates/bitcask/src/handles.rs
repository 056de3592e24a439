//! A bounded cache of open read handles, so thousands of data files do not exhaust file
//! descriptors.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use durable_fs::{Access, DurableFs, File};

use crate::error::{CorruptionKind, Error, Result};
use crate::format::{DATA_MAGIC, FILE_HEADER_LEN, FileHeader, data_name};

/// An open data file and its CRC salt.
#[derive(Clone, Debug)]
pub(crate) struct Handle {
    pub file: Arc<File>,
    pub salt: u32,
}

#[derive(Debug)]
pub(crate) struct HandleCache {
    capacity: usize,
    tick: u64,
    open: HashMap<u64, (Handle, u64)>,
}

/// Opens data file `id` and reads its header.
pub(crate) fn open_data(fs: &DurableFs, dir: &Path, id: u64) -> Result<Handle> {
    let path = dir.join(data_name(id));
    let file = fs.open(&path, Access::Read)?;
    let mut header = [0u8; FILE_HEADER_LEN];
    file.read_exact_at(&mut header, 0)?;
    let h = FileHeader::decode(&header, &DATA_MAGIC).map_err(|kind| Error::Corruption {
        path: path.clone(),
        offset: 0,
        kind,
    })?;
    if h.file_id != id {
        return Err(Error::Corruption {
            path,
            offset: 16,
            kind: CorruptionKind::NameMismatch {
                name_id: id,
                header_id: h.file_id,
            },
        });
    }
    Ok(Handle {
        file: Arc::new(file),
        salt: h.salt,
    })
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
    pub fn get(&mut self, fs: &DurableFs, dir: &Path, id: u64) -> Result<Handle> {
        self.tick += 1;
        if let Some((h, used)) = self.open.get_mut(&id) {
            *used = self.tick;
            return Ok(h.clone());
        }
        let h = open_data(fs, dir, id)?;
        if self.open.len() >= self.capacity
            && let Some(oldest) = self
                .open
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
        {
            self.open.remove(&oldest);
        }
        self.open.insert(id, (h.clone(), self.tick));
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
