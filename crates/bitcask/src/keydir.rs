//! The keydir: every live key and where its latest value is ([`kv_core::key_index`], compact),
//! plus per-file byte accounting for merge triggers.

use std::collections::{BTreeMap, HashMap};

pub(crate) use kv_core::key_index::{KeyIndex, Loc};

/// Bytes written to a data file and bytes of it no longer live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FileStats {
    pub total: u64,
    pub dead: u64,
}

/// A small `HashMap` keyed by byte strings (used at open for tombstones).
pub(crate) type KeyMap<V> = HashMap<Box<[u8]>, V, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
pub(crate) struct Keydir {
    pub map: KeyIndex,
    pub files: BTreeMap<u32, FileStats>,
}

impl Keydir {
    /// Records a put: the old version (if any) becomes dead.
    pub fn put(&mut self, key: &[u8], loc: Loc) {
        let len = loc.record_len(key.len());
        self.files.entry(loc.file).or_default().total += len;
        if let Some(old) = self.map.insert(key, loc) {
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
