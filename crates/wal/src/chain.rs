//! The segment chain: a small file, `CHAIN`, listing every segment the log holds, oldest
//! first, with its salt and (for every segment but the last) its last LSN. It is replaced
//! atomically (`DurableFs::atomic_replace`) whenever the list changes: a rotation, a
//! `truncate_before`, a `truncate_after`. Recovery checks the directory against it, so a
//! missing first, middle or last segment, a segment swapped for another log's, or a sealed
//! segment that lost records at its end is `Corruption`, while what `truncate_before` and
//! `truncate_after` removed on purpose (and a crash left behind) is told apart and finished.
//!
//! ```text
//! CHAIN
//!   0..8    magic      89 57 4C 43 0D 0A 1A 0A   ("\x89WLC\r\n\x1a\n")
//!   8..12   version    u32 = 1
//!   12..16  count      u32, number of entries
//!   16..    entries, count x 24 bytes:
//!             0..8   first_lsn  u64, the segment's first LSN (its name)
//!             8..12  salt       u32, the segment header's salt
//!             12..16 reserved   u32 = 0
//!             16..24 last_lsn   u64, its last record's LSN (first_lsn - 1 when it holds
//!                               none); u64::MAX for the last segment (still appended to)
//!   end-4.. crc        u32, CRC-32 of every byte before it
//! ```

use std::path::Path;

use durable_fs::DurableFs;

use crate::error::{CorruptionKind, Error, Result};
use crate::format::Lsn;

/// The chain file's name in the log directory.
pub const CHAIN_FILE: &str = "CHAIN";
/// The chain file's magic.
pub const CHAIN_MAGIC: [u8; 8] = *b"\x89WLC\r\n\x1a\n";
/// The chain file's format version.
pub const CHAIN_VERSION: u32 = 1;
/// Bytes before the entries.
pub const CHAIN_HEADER_LEN: usize = 16;
/// Bytes per entry.
pub const CHAIN_ENTRY_LEN: usize = 24;
/// The longest chain file read (about 2.8 million segments); a longer one is corrupt.
pub const MAX_CHAIN_LEN: u64 = 64 << 20;
/// `last_lsn` of the segment still appended to.
const OPEN: u64 = u64::MAX;

/// One segment as the chain lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Link {
    pub first_lsn: Lsn,
    pub salt: u32,
    /// The last LSN of a sealed segment (`first_lsn - 1` if empty); `None` for the last.
    pub last_lsn: Option<Lsn>,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(*b.get(at..)?.first_chunk::<4>()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(*b.get(at..)?.first_chunk::<8>()?))
}

/// Encodes a chain.
pub(crate) fn encode(links: &[Link]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHAIN_HEADER_LEN + links.len() * CHAIN_ENTRY_LEN + 4);
    out.extend_from_slice(&CHAIN_MAGIC);
    out.extend_from_slice(&CHAIN_VERSION.to_le_bytes());
    let count = u32::try_from(links.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&count.to_le_bytes());
    for l in links.iter().take(count as usize) {
        out.extend_from_slice(&l.first_lsn.to_le_bytes());
        out.extend_from_slice(&l.salt.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&l.last_lsn.unwrap_or(OPEN).to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a chain; total over any input. `None` if anything is off.
pub(crate) fn decode(b: &[u8]) -> Option<Vec<Link>> {
    let crc_at = b.len().checked_sub(4)?;
    if crc32fast::hash(b.get(..crc_at)?) != u32_at(b, crc_at)? {
        return None;
    }
    if b.get(..8)? != CHAIN_MAGIC || u32_at(b, 8)? != CHAIN_VERSION {
        return None;
    }
    let count = u32_at(b, 12)? as usize;
    if crc_at != CHAIN_HEADER_LEN + count.checked_mul(CHAIN_ENTRY_LEN)? {
        return None;
    }
    let mut links = Vec::with_capacity(count);
    for i in 0..count {
        let e = b.get(CHAIN_HEADER_LEN + i * CHAIN_ENTRY_LEN..)?;
        let last = u64_at(e, 16)?;
        links.push(Link {
            first_lsn: u64_at(e, 0)?,
            salt: u32_at(e, 8)?,
            last_lsn: (last != OPEN).then_some(last),
        });
    }
    // Increasing first LSNs; only the last one open.
    let ordered = links.windows(2).all(|w| match w {
        [a, b] => a.first_lsn < b.first_lsn && a.last_lsn.is_some_and(|l| l < b.first_lsn),
        _ => true,
    });
    (ordered && links.last().is_none_or(|l| l.last_lsn.is_none())).then_some(links)
}

/// Reads the chain of the log in `dir`: `None` if there is no chain file (a log written
/// before format 2, or one whose creation a crash cut before its chain was written).
pub(crate) fn load(fs: &DurableFs, dir: &Path) -> Result<Option<Vec<Link>>> {
    let path = dir.join(CHAIN_FILE);
    if !fs.exists(&path)? {
        return Ok(None);
    }
    let file = fs.open(&path, durable_fs::Access::Read)?;
    let bad = || Error::Corruption {
        path: path.clone(),
        offset: 0,
        kind: CorruptionKind::BadChain,
    };
    if file.len()? > MAX_CHAIN_LEN {
        return Err(bad());
    }
    decode(&file.read_all()?).map(Some).ok_or_else(bad)
}

/// Replaces the chain of the log in `dir` with `links`, durably.
pub(crate) fn store(fs: &DurableFs, dir: &Path, links: &[Link]) -> Result<()> {
    fs.atomic_replace(&dir.join(CHAIN_FILE), &encode(links))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage_and_disorder() {
        let links = vec![
            Link {
                first_lsn: 1,
                salt: 7,
                last_lsn: Some(42),
            },
            Link {
                first_lsn: 43,
                salt: 9,
                last_lsn: None,
            },
        ];
        let b = encode(&links);
        assert_eq!(decode(&b), Some(links.clone()));
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x08;
            assert_eq!(decode(&d), None, "flip at {i}");
        }
        assert_eq!(decode(&b[..b.len() - 1]), None);
        let mut overlapping = links.clone();
        overlapping[0].last_lsn = Some(43);
        assert_eq!(decode(&encode(&overlapping)), None);
        let mut two_open = links;
        two_open[0].last_lsn = None;
        assert_eq!(decode(&encode(&two_open)), None);
        assert_eq!(decode(&encode(&[])), Some(vec![]));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Any bytes: no panic, and never more entries than the bytes could hold.
        #[test]
        fn decode_is_total_and_bounded(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            if let Some(links) = decode(&bytes) {
                proptest::prop_assert!(links.len() * CHAIN_ENTRY_LEN <= bytes.len());
                proptest::prop_assert_eq!(encode(&links), bytes);
            }
        }
    }
}
