//! The keydir: every live key and where its latest value is, plus per-file byte accounting
//! for merge triggers.

use std::collections::{BTreeMap, HashMap};

use crate::format::RECORD_HEADER_LEN;

/// Where a key's latest value lives. 24 bytes; see `docs/FORMAT-bitcask.md` for the memory
/// cost per key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    /// Logical timestamp of the write (orders records across files at open).
    pub seq: u64,
    /// Data file id. Ids are below 2^32 in practice; stored as u32 to keep the entry small.
    pub file: u32,
    /// Offset of the record in the file (files are at most 4 GiB).
    pub offset: u32,
    /// Length of the value.
    pub value_len: u32,
}

impl Loc {
    /// Bytes of the whole record for `key_len`.
    pub fn record_len(&self, key_len: usize) -> u64 {
        (RECORD_HEADER_LEN + key_len) as u64 + u64::from(self.value_len)
    }
}

/// Bytes written to a data file and bytes of it no longer live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FileStats {
    pub total: u64,
    pub dead: u64,
}

/// The keydir's hash map: foldhash, seeded per process (fast, and resistant enough to
/// flooding for an embedded store whose keys come from its own application).
pub(crate) type KeyMap<V> = HashMap<Box<[u8]>, V, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
pub(crate) struct Keydir {
    pub map: KeyMap<Loc>,
    pub files: BTreeMap<u32, FileStats>,
}

impl Keydir {
    /// Records a put: the old version (if any) becomes dead.
    pub fn put(&mut self, key: &[u8], loc: Loc) {
        let len = loc.record_len(key.len());
        self.files.entry(loc.file).or_default().total += len;
        if let Some(old) = self.map.insert(key.into(), loc) {
            self.files.entry(old.file).or_default().dead += old.record_len(key.len());
        }
    }

    /// Records a delete whose tombstone (of `tomb_len` bytes) went to `file`; returns whether
    /// the key existed.
    pub fn delete(&mut self, key: &[u8], file: u32, tomb_len: u64) -> bool {
        let stats = self.files.entry(file).or_default();
        stats.total += tomb_len;
        stats.dead += tomb_len; // a tombstone is dead weight from the start
        match self.map.remove(key) {
            Some(old) => {
                self.files.entry(old.file).or_default().dead += old.record_len(key.len());
                true
            }
            None => false,
        }
    }
}
