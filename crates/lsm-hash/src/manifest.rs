//! The MANIFEST: which segments are live, oldest first (the last is the active one).
//!
//! ```text
//! lsm-hash-manifest 1
//! segments <id> <id> ...
//! crc <crc32 of the lines above, 8 hex digits>
//! ```
//!
//! Replaced with `DurableFs::atomic_replace` (temp file, fsync, rename, directory fsync)
//! whenever the segment set changes, so after a crash it names either the old set or the new
//! one. Segment files it does not name are leftovers of an interrupted change and are removed
//! at open.

/// The manifest's file name.
pub const MANIFEST: &str = "MANIFEST";

/// The manifest's first line (format 1).
const TITLE: &str = "lsm-hash-manifest 1";

/// Encodes the segment list (the text-plus-CRC codec of `kv_core::marker`).
pub fn encode(ids: &[u64]) -> Vec<u8> {
    kv_core::marker::encode(TITLE, &[("segments", ids)])
}

/// Decodes the segment list; `None` if damaged.
pub fn decode(b: &[u8]) -> Option<Vec<u64>> {
    kv_core::marker::decode(b, TITLE, &["segments"])?.pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let b = encode(&[1, 4, 9]);
        assert!(b.starts_with(b"lsm-hash-manifest 1\nsegments 1 4 9\ncrc "));
        assert_eq!(decode(&b), Some(vec![1, 4, 9]));
        assert_eq!(decode(&encode(&[])), Some(vec![]));
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x02;
            assert_eq!(decode(&d), None, "flip at {i}");
        }
    }
}
