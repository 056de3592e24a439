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

/// Encodes the segment list.
pub fn encode(ids: &[u64]) -> Vec<u8> {
    let list: Vec<String> = ids.iter().map(u64::to_string).collect();
    let body = format!("lsm-hash-manifest 1\nsegments {}\n", list.join(" "));
    let crc = crc32fast::hash(body.as_bytes());
    format!("{body}crc {crc:08x}\n").into_bytes()
}

/// Decodes the segment list; `None` if damaged.
pub fn decode(b: &[u8]) -> Option<Vec<u64>> {
    let s = std::str::from_utf8(b).ok()?;
    let (body, crc_line) = s.strip_suffix('\n')?.rsplit_once('\n')?;
    let body = format!("{body}\n");
    let crc = u32::from_str_radix(crc_line.strip_prefix("crc ")?, 16).ok()?;
    if crc32fast::hash(body.as_bytes()) != crc {
        return None;
    }
    let mut lines = body.lines();
    if lines.next()? != "lsm-hash-manifest 1" {
        return None;
    }
    let ids = lines.next()?.strip_prefix("segments")?;
    ids.split_whitespace().map(|t| t.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let b = encode(&[1, 4, 9]);
        assert_eq!(decode(&b), Some(vec![1, 4, 9]));
        assert_eq!(decode(&encode(&[])), Some(vec![]));
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x02;
            assert_eq!(decode(&d), None, "flip at {i}");
        }
    }
}
