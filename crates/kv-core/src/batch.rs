//! [`WriteBatch`]: puts and deletes applied atomically.

use crate::error::{Error, Result};
use crate::format::record_len;

/// Puts and deletes applied atomically by a store's `write`: after a crash, all of them or
/// none. Later operations on the same key win.
///
/// ```
/// let mut batch = kv_core::WriteBatch::new();
/// batch.put(b"a", b"1");
/// batch.delete(b"b");
/// assert_eq!(batch.len(), 2);
/// let ops: Vec<_> = batch.iter().collect();
/// assert_eq!(ops, vec![(&b"a"[..], Some(&b"1"[..])), (&b"b"[..], None)]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// `(key, Some(value))` for a put, `(key, None)` for a delete.
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put (an empty value is a value, not a delete).
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.ops.push((key.to_vec(), Some(value.to_vec())));
    }

    /// Adds a delete.
    pub fn delete(&mut self, key: &[u8]) {
        self.ops.push((key.to_vec(), None));
    }

    /// Operations in the batch.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations in order: `(key, Some(value))` for a put, `(key, None)` for a delete.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.ops.iter().map(|(k, v)| (k.as_slice(), v.as_deref()))
    }

    /// The operations, owned.
    pub fn into_ops(self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.ops
    }

    /// Bytes the batch takes on disk (record headers included).
    pub fn encoded_len(&self) -> u64 {
        self.iter()
            .map(|(k, v)| record_len(k.len(), v.map_or(0, <[u8]>::len)))
            .sum()
    }

    /// Checks every key and value against the limits, and the whole batch against
    /// `max_batch` (a batch goes into one file, whose offsets are 32-bit).
    pub fn check_sizes(&self, max_key: u32, max_value: u32, max_batch: u64) -> Result<()> {
        let total = self.encoded_len();
        if total > max_batch {
            return Err(Error::TooLarge {
                what: "batch",
                len: total,
                max: max_batch,
            });
        }
        for (k, v) in self.iter() {
            if k.len() as u64 > u64::from(max_key) {
                return Err(Error::TooLarge {
                    what: "key",
                    len: k.len() as u64,
                    max: max_key.into(),
                });
            }
            if let Some(v) = v
                && v.len() as u64 > u64::from(max_value)
            {
                return Err(Error::TooLarge {
                    what: "value",
                    len: v.len() as u64,
                    max: max_value.into(),
                });
            }
        }
        Ok(())
    }
}

impl FromIterator<(Vec<u8>, Option<Vec<u8>>)> for WriteBatch {
    fn from_iter<I: IntoIterator<Item = (Vec<u8>, Option<Vec<u8>>)>>(iter: I) -> Self {
        WriteBatch {
            ops: iter.into_iter().collect(),
        }
    }
}
