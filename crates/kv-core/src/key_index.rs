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

/// What [`KeyIndex::upsert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upsert {
    /// The key was absent: added.
    Inserted,
    /// The key was there at this location: replaced.
    Replaced(Loc),
    /// The key was there, and the caller chose to keep it (its location is unchanged).
    Kept,
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
#[derive(Debug)]
pub struct KeyIndex {
    table: HashTable<u32>,
    slots: Vec<Slot>,
    arena: Vec<u8>,
    free: Vec<u32>,
    /// Arena bytes of removed keys, reclaimed when they are half of it.
    garbage: usize,
    /// Seeded per index, randomly unless given ([`KeyIndex::with_seed`]): the same seed
    /// hashes keys the same way in another process, which is what
    /// [`KeyIndex::iter_in_load_order`] relies on.
    hasher: foldhash::fast::FixedState,
    seed: u64,
}

impl Default for KeyIndex {
    /// An empty index with a random seed.
    fn default() -> Self {
        KeyIndex::with_seed(foldhash::fast::RandomState::default().hash_one(0u64))
    }
}

fn key_of<'a>(slots: &[Slot], arena: &'a [u8], i: u32) -> &'a [u8] {
    let s = slots.get(i as usize);
    s.and_then(|s| arena.get(s.key_off as usize..s.key_off as usize + s.key_len as usize))
        .unwrap_or_default()
}

/// Stores `key` at `loc` in a free slot (or a new one); returns the slot's index.
fn push_slot(
    slots: &mut Vec<Slot>,
    arena: &mut Vec<u8>,
    free: &mut Vec<u32>,
    key: &[u8],
    loc: Loc,
) -> u32 {
    let mut slot = Slot {
        key_off: arena.len() as u64,
        seq: 0,
        file: 0,
        offset: 0,
        value_len: 0,
        key_len: u32::try_from(key.len()).unwrap_or(FREE - 1),
    };
    slot.set(loc);
    arena.extend_from_slice(key);
    match free.pop() {
        Some(i) => {
            if let Some(s) = slots.get_mut(i as usize) {
                *s = slot;
            }
            i
        }
        None => {
            slots.push(slot);
            (slots.len() - 1) as u32
        }
    }
}

impl KeyIndex {
    /// An empty index hashing with `seed`.
    pub fn with_seed(seed: u64) -> Self {
        KeyIndex {
            table: HashTable::new(),
            slots: Vec::new(),
            arena: Vec::new(),
            free: Vec::new(),
            garbage: 0,
            hasher: foldhash::fast::FixedState::with_seed(seed),
            seed,
        }
    }

    /// The seed it hashes with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Every `(key, location)` in the order that fills a table of exactly their number,
    /// hashed with this index's seed, front to back: an index created
    /// [`with_seed`](KeyIndex::with_seed) of this seed and
    /// [`reserve`](KeyIndex::reserve)d for them then takes them with sequential writes,
    /// not one cache miss each (what makes loading a saved index fast). Any order loads
    /// correctly; this one loads fastest. Takes 12 bytes a key while it runs.
    pub fn iter_in_load_order(&self) -> impl Iterator<Item = (&[u8], Loc)> {
        // The table the loader's `reserve(len)` makes: hashbrown's 7/8 load factor, rounded
        // up to a power of two (a different table only makes the order less sequential).
        let buckets = (self.len().max(16).saturating_mul(8) / 7).next_power_of_two() as u64;
        let mut order: Vec<(u64, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.key_len != FREE)
            .map(|(i, _)| {
                let key = key_of(&self.slots, &self.arena, i as u32);
                (self.hasher.hash_one(key) & (buckets - 1), i as u32)
            })
            .collect();
        order.sort_unstable();
        order.into_iter().filter_map(move |(_, i)| {
            let s = self.slots.get(i as usize)?;
            Some((key_of(&self.slots, &self.arena, i), s.loc()))
        })
    }

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

    /// [`KeyIndex::reserve`] that reports an allocation it cannot make (false) instead of
    /// aborting: for sizes read from a file.
    pub fn try_reserve(&mut self, keys: usize, key_bytes: usize) -> bool {
        let Self {
            table,
            slots,
            arena,
            hasher,
            ..
        } = self;
        table
            .try_reserve(keys, |&i| hasher.hash_one(key_of(slots, arena, i)))
            .is_ok()
            && slots.try_reserve_exact(keys).is_ok()
            && arena.try_reserve_exact(key_bytes).is_ok()
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
        match self.upsert(key, loc, |_| true) {
            Upsert::Replaced(old) => Some(old),
            Upsert::Inserted | Upsert::Kept => None,
        }
    }

    /// Adds `key` at `loc` if it is absent, in one probe of the table (loading an index
    /// known to hold each key once); returns false, changing nothing, if it is present.
    ///
    /// ```
    /// use kv_core::key_index::{KeyIndex, Loc};
    /// let mut idx = KeyIndex::default();
    /// let loc = Loc { seq: 1, file: 1, offset: 64, value_len: 5 };
    /// assert!(idx.insert_new(b"key", loc));
    /// assert!(!idx.insert_new(b"key", Loc { seq: 2, ..loc }));
    /// assert_eq!(idx.get(b"key"), Some(loc));
    /// ```
    pub fn insert_new(&mut self, key: &[u8], loc: Loc) -> bool {
        self.upsert(key, loc, |_| false) == Upsert::Inserted
    }

    /// Sets `key` to `loc` if it is absent, or if `replace` says so of its current
    /// location; in one probe of the table (where a `get` then an `insert` take three).
    ///
    /// ```
    /// use kv_core::key_index::{KeyIndex, Loc, Upsert};
    /// let mut idx = KeyIndex::default();
    /// let at = |seq| Loc { seq, file: 1, offset: 64, value_len: 5 };
    /// let newer = |new: Loc| move |cur: Loc| cur.seq <= new.seq;
    /// assert_eq!(idx.upsert(b"k", at(5), newer(at(5))), Upsert::Inserted);
    /// assert_eq!(idx.upsert(b"k", at(3), newer(at(3))), Upsert::Kept);
    /// assert_eq!(idx.upsert(b"k", at(9), newer(at(9))), Upsert::Replaced(at(5)));
    /// assert_eq!(idx.get(b"k"), Some(at(9)));
    /// ```
    pub fn upsert(&mut self, key: &[u8], loc: Loc, replace: impl FnOnce(Loc) -> bool) -> Upsert {
        let h = self.hasher.hash_one(key);
        let Self {
            table,
            slots,
            arena,
            free,
            hasher,
            ..
        } = self;
        let hash = |&j: &u32| hasher.hash_one(key_of(slots, arena, j));
        match table.entry(h, |&i| key_of(slots, arena, i) == key, hash) {
            hashbrown::hash_table::Entry::Occupied(e) => {
                let Some(slot) = slots.get_mut(*e.get() as usize) else {
                    return Upsert::Kept;
                };
                let old = slot.loc();
                if replace(old) {
                    slot.set(loc);
                    Upsert::Replaced(old)
                } else {
                    Upsert::Kept
                }
            }
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(push_slot(slots, arena, free, key, loc));
                Upsert::Inserted
            }
        }
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
            } else if rng.chance(1, 2) {
                // Upsert keeping the location with the larger offset.
                let want = match model.get(&key).copied() {
                    None => Upsert::Inserted,
                    Some(cur) if cur.offset <= loc.offset => Upsert::Replaced(cur),
                    Some(_) => Upsert::Kept,
                };
                let got = idx.upsert(&key, loc, |cur| cur.offset <= loc.offset);
                assert_eq!(got, want);
                if got != Upsert::Kept {
                    model.insert(key.clone(), loc);
                }
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
