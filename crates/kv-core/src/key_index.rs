//! A compact index of byte-string keys: what bitcask's keydir and each lsm-hash segment's
//! index are built on.
//!
//! Laid out for memory: keys live back to back in one arena, each key's location in a
//! 32-byte slot of one vector, and the hash table holds only 4-byte slot indices. For 1M
//! 16-byte keys that is about 16 (key) + 32 (slot) + ~10 (table) bytes per key, where a
//! `HashMap<Box<[u8]>, Loc>` costs about 155 (a heap allocation per key, 40-byte buckets).

use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::format::record_len;

/// Where a key's latest value lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loc {
    /// Logical timestamp of the write (orders records across files at open).
    pub seq: u64,
    /// The owner's tag: bitcask's data file id (ids stay below 2^32 in practice); for an
    /// lsm-hash segment index (one file), its flags (1: a tombstone).
    pub file: u32,
    /// Offset of the record in the file (files are at most 4 GiB).
    pub offset: u32,
    /// Length of the value.
    pub value_len: u32,
}

impl Loc {
    /// Bytes of the whole record for `key_len`.
    pub fn record_len(&self, key_len: usize) -> u64 {
        record_len(key_len, self.value_len as usize)
    }
}

/// One key's slot: where its bytes are in the arena, and its location. 32 bytes.
#[derive(Clone, Copy, Debug)]
struct Slot {
    key_off: u64,
    seq: u64,
    file: u32,
    offset: u32,
    value_len: u32,
    /// `FREE` marks an unused slot.
    key_len: u32,
}

const FREE: u32 = u32::MAX;
const _: () = assert!(std::mem::size_of::<Slot>() == 32);

impl Slot {
    fn loc(&self) -> Loc {
        Loc {
            seq: self.seq,
            file: self.file,
            offset: self.offset,
            value_len: self.value_len,
        }
    }

    fn set(&mut self, loc: Loc) {
        self.seq = loc.seq;
        self.file = loc.file;
        self.offset = loc.offset;
        self.value_len = loc.value_len;
    }
}

/// Key -> [`Loc`], compactly; see the module docs.
///
/// ```
/// use kv_core::key_index::{KeyIndex, Loc};
/// let mut idx = KeyIndex::default();
/// let loc = Loc { seq: 7, file: 1, offset: 64, value_len: 5 };
/// assert_eq!(idx.insert(b"key", loc), None);
/// assert_eq!(idx.get(b"key"), Some(loc));
/// assert_eq!(idx.remove(b"key"), Some(loc));
/// assert!(idx.is_empty());
/// ```
#[derive(Debug, Default)]
pub struct KeyIndex {
    table: HashTable<u32>,
    slots: Vec<Slot>,
    arena: Vec<u8>,
    free: Vec<u32>,
    /// Arena bytes of removed keys, reclaimed when they are half of it.
    garbage: usize,
    hasher: foldhash::fast::RandomState,
}

fn key_of<'a>(slots: &[Slot], arena: &'a [u8], i: u32) -> &'a [u8] {
    let s = slots.get(i as usize);
    s.and_then(|s| arena.get(s.key_off as usize..s.key_off as usize + s.key_len as usize))
        .unwrap_or_default()
}

impl KeyIndex {
    /// Live keys.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when it holds no key.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Bytes it holds on the heap (arena, slots, table, free list): what a store reports as
    /// index memory.
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity()
            + self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.table.capacity() * (std::mem::size_of::<u32>() + 1)
            + self.free.capacity() * std::mem::size_of::<u32>()
    }

    /// Room for `keys` more keys totalling `key_bytes`.
    pub fn reserve(&mut self, keys: usize, key_bytes: usize) {
        let Self {
            table,
            slots,
            arena,
            hasher,
            ..
        } = self;
        table.reserve(keys, |&i| hasher.hash_one(key_of(slots, arena, i)));
        slots.reserve_exact(keys);
        arena.reserve_exact(key_bytes);
    }

    fn find(&self, key: &[u8]) -> Option<u32> {
        let h = self.hasher.hash_one(key);
        self.table
            .find(h, |&i| key_of(&self.slots, &self.arena, i) == key)
            .copied()
    }

    /// The location of `key`.
    pub fn get(&self, key: &[u8]) -> Option<Loc> {
        self.find(key)
            .and_then(|i| self.slots.get(i as usize))
            .map(Slot::loc)
    }

    /// True if `key` is present.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.find(key).is_some()
    }

    /// Sets `key` to `loc`; returns the previous location.
    pub fn insert(&mut self, key: &[u8], loc: Loc) -> Option<Loc> {
        if let Some(i) = self.find(key)
            && let Some(slot) = self.slots.get_mut(i as usize)
        {
            let old = slot.loc();
            slot.set(loc);
            return Some(old);
        }
        let mut slot = Slot {
            key_off: self.arena.len() as u64,
            seq: 0,
            file: 0,
            offset: 0,
            value_len: 0,
            key_len: u32::try_from(key.len()).unwrap_or(FREE - 1),
        };
        slot.set(loc);
        self.arena.extend_from_slice(key);
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(s) = self.slots.get_mut(i as usize) {
                    *s = slot;
                }
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        let h = self.hasher.hash_one(key);
        let Self {
            table,
            slots,
            arena,
            hasher,
            ..
        } = self;
        table.insert_unique(h, i, |&j| hasher.hash_one(key_of(slots, arena, j)));
        None
    }

    /// Removes `key`; returns its location.
    pub fn remove(&mut self, key: &[u8]) -> Option<Loc> {
        let h = self.hasher.hash_one(key);
        let Self {
            table,
            slots,
            arena,
            ..
        } = self;
        let entry = table
            .find_entry(h, |&i| key_of(slots, arena, i) == key)
            .ok()?;
        let (i, _) = entry.remove();
        let slot = self.slots.get_mut(i as usize)?;
        let loc = slot.loc();
        self.garbage += slot.key_len as usize;
        slot.key_len = FREE;
        self.free.push(i);
        if self.garbage > 1 << 16 && self.garbage * 2 > self.arena.len() {
            self.compact_arena();
        }
        Some(loc)
    }

    /// Rewrites the arena without the keys of removed slots.
    fn compact_arena(&mut self) {
        let mut arena = Vec::with_capacity(self.arena.len() - self.garbage);
        for s in self.slots.iter_mut().filter(|s| s.key_len != FREE) {
            let start = s.key_off as usize;
            arena.extend_from_slice(
                self.arena
                    .get(start..start + s.key_len as usize)
                    .unwrap_or_default(),
            );
            s.key_off = (arena.len() - s.key_len as usize) as u64;
        }
        self.arena = arena;
        self.garbage = 0;
    }

    /// Every `(key, location)`, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Loc)> {
        self.slots.iter().filter(|s| s.key_len != FREE).map(|s| {
            let start = s.key_off as usize;
            (
                self.arena
                    .get(start..start + s.key_len as usize)
                    .unwrap_or_default(),
                s.loc(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn behaves_like_a_hashmap_through_inserts_removes_and_arena_compaction() {
        let mut idx = KeyIndex::default();
        let mut model: HashMap<Vec<u8>, Loc> = HashMap::new();
        let mut rng = durable_fs::sim::Rng::new(5);
        for step in 0..200_000u64 {
            let key = format!("key-{}", rng.below(5000)).into_bytes();
            let loc = Loc {
                seq: step,
                file: step as u32 % 7,
                offset: step as u32,
                value_len: 3,
            };
            if rng.chance(1, 3) {
                assert_eq!(idx.remove(&key), model.remove(&key));
            } else {
                assert_eq!(idx.insert(&key, loc), model.insert(key.clone(), loc));
            }
            assert_eq!(idx.len(), model.len());
        }
        for (k, v) in &model {
            assert_eq!(idx.get(k), Some(*v));
        }
        let mut seen: Vec<_> = idx.iter().map(|(k, l)| (k.to_vec(), l)).collect();
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        let mut want: Vec<_> = model.into_iter().collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(seen, want);
    }
}
