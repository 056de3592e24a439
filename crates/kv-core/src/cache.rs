//! The read cache: values already read from disk and verified, by the record they are in.
//!
//! A record is named by its seq and its key: every record a store handle writes gets a seq
//! of its own, above every seq on disk when it opened, and a merge or compaction copies a
//! record with its seq, so a cached value never goes stale and survives the move of its
//! record (gets stay hits through a merge; overwritten and deleted values age out). The key
//! is in the name too, hashed with a seed drawn at random for each cache (so a crafted store
//! cannot choose colliding keys), so that a damaged store holding two records of one seq
//! still does not serve one key's value for another. Only values whose record passed its CRC and key
//! check are cached, so a hit is as good as a verified read; a miss reads and verifies from
//! disk as always. Bounded in bytes (`cache_bytes` in each engine's options; 0 turns it off),
//! with the eviction policy of `quick_cache` (S3-FIFO-like, as fjall uses).

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Bytes counted for an entry besides its value: the key, the `Arc`'s header, the table slot.
const ENTRY_OVERHEAD: u64 = 64;

#[derive(Clone, Copy)]
struct ByLen;

impl quick_cache::Weighter<(u64, u64), Arc<[u8]>> for ByLen {
    fn weight(&self, _key: &(u64, u64), value: &Arc<[u8]>) -> u64 {
        value.len() as u64 + ENTRY_OVERHEAD
    }
}

/// Once the cache is full, one miss in this many is admitted (see [`ValueCache::insert`]).
const ADMIT_ONE_IN: u64 = 8;

/// True for one call in [`ADMIT_ONE_IN`], at random (a per-thread xorshift: no shared state).
fn admit() -> bool {
    thread_local! {
        static STATE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    STATE.with(|s| {
        let mut x = s.get();
        if x == 0 {
            // Seeded per thread from the address of its state (distinct per thread).
            x = (s as *const std::cell::Cell<u64> as u64) | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x % ADMIT_ONE_IN == 0
    })
}

/// The table: (seq, hash of the key) -> the value, weighted by its length.
type Table = quick_cache::sync::Cache<(u64, u64), Arc<[u8]>, ByLen>;

/// A bounded cache of verified values, keyed by their record (seq and key).
///
/// ```
/// let cache = kv_core::ValueCache::new(1 << 20);
/// assert_eq!(cache.get(7, b"key"), None);
/// cache.insert(7, b"key", b"value");
/// assert_eq!(cache.get(7, b"key").as_deref(), Some(&b"value"[..]));
/// assert_eq!(cache.get(7, b"other"), None); // another key
/// assert_eq!(kv_core::ValueCache::new(0).get(7, b"key"), None); // off
/// ```
pub struct ValueCache {
    cache: Option<Table>,
    /// Bytes admitted so far, until they pass the capacity: from then on the cache counts
    /// as full (evictions keep it so) and admits one miss in [`ADMIT_ONE_IN`].
    admitted: AtomicU64,
    full: AtomicBool,
    capacity: u64,
    /// Hashes keys into cache keys; seeded at random per cache.
    hasher: foldhash::fast::RandomState,
}

impl std::fmt::Debug for ValueCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (entries, bytes) = self
            .cache
            .as_ref()
            .map_or((0, 0), |c| (c.len(), c.weight()));
        f.debug_struct("ValueCache")
            .field("entries", &entries)
            .field("bytes", &bytes)
            .finish()
    }
}

impl ValueCache {
    /// A cache of at most `bytes` (values plus a small per-entry overhead); 0: no cache.
    pub fn new(bytes: u64) -> Self {
        let cache = (bytes > 0).then(|| {
            // quick_cache sizes its tables from an estimate of the entry count.
            let estimated = usize::try_from(bytes / (ENTRY_OVERHEAD + 128)).unwrap_or(1 << 20);
            quick_cache::sync::Cache::with_weighter(estimated.max(16), bytes, ByLen)
        });
        ValueCache {
            cache,
            admitted: AtomicU64::new(0),
            full: AtomicBool::new(false),
            capacity: bytes,
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// The value of `key`'s record of seq `seq`, if cached: one allocation, the returned
    /// `Vec`.
    pub fn get(&self, seq: u64, key: &[u8]) -> Option<Vec<u8>> {
        self.cache
            .as_ref()?
            .get(&(seq, self.hasher.hash_one(key)))
            .map(|v| v.to_vec())
    }

    /// Remembers the verified value of `key`'s record of seq `seq`: always while
    /// the cache has room, then for one miss in eight (chosen at random). A
    /// working set that fits is still cached after a few misses of each value; one much larger
    /// than the cache (where most gets miss whatever is kept) no longer pays an allocation
    /// and an eviction on every miss.
    pub fn insert(&self, seq: u64, key: &[u8], value: &[u8]) {
        if let Some(c) = &self.cache {
            let full = self.full.load(Ordering::Relaxed);
            if full && !admit() {
                return;
            }
            if !full {
                let w = value.len() as u64 + ENTRY_OVERHEAD;
                if self.admitted.fetch_add(w, Ordering::Relaxed) + w > self.capacity {
                    self.full.store(true, Ordering::Relaxed);
                }
            }
            c.insert((seq, self.hasher.hash_one(key)), Arc::from(value));
        }
    }

    /// Bytes held (values plus overhead).
    pub fn bytes(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.weight())
    }
}
