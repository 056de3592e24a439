//! [`scan_records`]: reading a data file record by record at open (when no hint describes
//! it), keeping batches whole and telling a torn tail from corruption.

use crate::error::CorruptionKind;
use crate::format::{
    BATCH_CONTINUES, DecodeError, FILE_HEADER_LEN, HintEntry, RECORD_HEADER_LEN, RECORD_KEY_LEN,
    RECORD_VALUE_LEN, TOMBSTONE, decode_record, u32_at,
};
use crate::options::RecoveryMode;

/// What [`scan_records`] found in a data file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Scanned {
    /// Every record of every complete batch, in file order.
    pub entries: Vec<HintEntry>,
    /// Bytes of those records.
    pub record_bytes: u64,
    /// Where the records end: after the last complete batch (zeros after it are
    /// preallocated free space, not damage).
    pub end: u64,
    /// Where to cut a torn tail (and why), for the newest file.
    pub torn_tail: Option<(u64, CorruptionKind)>,
    /// Damaged ranges skipped under [`RecoveryMode::SkipCorrupt`]: (offset, length, why).
    pub skipped: Vec<(u64, u64, CorruptionKind)>,
}

/// Any valid record after `from` with a sequence number above `min_seq`?
fn valid_record_after(b: &[u8], from: usize, salt: u32, min_seq: u64) -> Option<usize> {
    let last = b.len().checked_sub(RECORD_HEADER_LEN)?;
    (from..=last).find(|&p| {
        let rest = b.get(p..).unwrap_or_default();
        // Cheap length checks first: a record must fit in what is left of the file.
        let fits = |at| u32_at(rest, at).is_some_and(|n| (n as usize) <= rest.len());
        fits(RECORD_KEY_LEN)
            && fits(RECORD_VALUE_LEN)
            && matches!(decode_record(rest, salt, u32::MAX, u32::MAX), Ok(r) if r.seq > min_seq)
    })
}

/// The highest `synced_seq` and the lowest seq among valid records after `from` with a seq
/// above `min_seq`.
fn synced_after(b: &[u8], from: usize, salt: u32, min_seq: u64) -> (u64, u64) {
    let (mut synced, mut lowest) = (0, u64::MAX);
    let mut p = from;
    while let Some(found) = valid_record_after(b, p, salt, min_seq) {
        if let Ok(r) = decode_record(b.get(found..).unwrap_or_default(), salt, u32::MAX, u32::MAX) {
            synced = synced.max(r.synced_seq);
            lowest = lowest.min(r.seq);
        }
        p = found + 1;
    }
    (synced, lowest)
}

/// Scans the records of a data file (`bytes`, header included), keeping batches whole.
///
/// Damage with no valid record after it, in the `newest` file (the one being appended to at
/// a crash), is a torn tail: reported in `torn_tail` (cut at the start of an unfinished
/// batch), unless `mode` is [`RecoveryMode::Strict`]. Other damage is an error
/// `(offset, kind)`, unless [`RecoveryMode::SkipCorrupt`], which skips to the next valid
/// record and reports the range. Total: never panics.
pub fn scan_records(
    bytes: &[u8],
    salt: u32,
    newest: bool,
    mode: RecoveryMode,
) -> Result<Scanned, (u64, CorruptionKind)> {
    let salvage = mode == RecoveryMode::SkipCorrupt;
    let tail_ok = newest && mode != RecoveryMode::Strict;
    let mut out = Scanned {
        end: FILE_HEADER_LEN as u64,
        ..Scanned::default()
    };
    let mut pos = FILE_HEADER_LEN;
    let mut batch: Vec<HintEntry> = Vec::new();
    let mut batch_start = pos;
    let mut last_seq = 0;
    while pos < bytes.len() {
        let rest = bytes.get(pos..).unwrap_or_default();
        let decoded = decode_record(rest, salt, u32::MAX, u32::MAX);
        if decoded.is_err() && rest.iter().all(|&b| b == 0) {
            break; // preallocated space
        }
        let kind = match decoded {
            Ok(r) => {
                if batch.is_empty() {
                    batch_start = pos;
                }
                batch.push(HintEntry {
                    seq: r.seq,
                    offset: pos as u64,
                    value_len: r.value.len() as u32,
                    flags: r.flags & TOMBSTONE,
                    key: r.key.to_vec(),
                });
                last_seq = last_seq.max(r.seq);
                pos += r.encoded_len();
                if r.flags & BATCH_CONTINUES == 0 {
                    out.record_bytes += (pos - batch_start) as u64;
                    out.entries.append(&mut batch);
                    out.end = pos as u64;
                }
                continue;
            }
            Err(e @ (DecodeError::Truncated | DecodeError::Corrupt(_))) => CorruptionKind::from(e),
        };
        let damage_at = if batch.is_empty() { pos } else { batch_start };
        let later = valid_record_after(bytes, pos + 1, salt, last_seq);
        // Valid records after the damage still make a torn tail if none was written after
        // the damaged record was durable (unsynced pages written back out of order). Seqs in a
        // writer's file are consecutive, so the damaged record is `last_seq + 1`; at the start
        // of a file, it is at most one below the first valid record after the damage.
        let proven_durable = later.is_some() && {
            let (max_synced, min_later) = synced_after(bytes, pos + 1, salt, last_seq);
            let damaged_seq = if last_seq > 0 {
                last_seq + 1
            } else {
                min_later.saturating_sub(1).max(1)
            };
            max_synced >= damaged_seq
        };
        batch.clear();
        if tail_ok && !proven_durable {
            out.torn_tail = Some((damage_at as u64, kind));
            return Ok(out);
        }
        if !salvage {
            return Err((pos as u64, kind));
        }
        let next = later.unwrap_or(bytes.len());
        out.skipped
            .push((damage_at as u64, (next - damage_at) as u64, kind));
        pos = next;
    }
    if !batch.is_empty() {
        let kind = CorruptionKind::IncompleteBatch;
        if tail_ok {
            out.torn_tail = Some((batch_start as u64, kind));
        } else if salvage {
            out.skipped
                .push((batch_start as u64, (bytes.len() - batch_start) as u64, kind));
        } else {
            return Err((batch_start as u64, kind));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{FileHeader, encode_record};

    fn file(records: &[(u64, u32, &[u8], &[u8])]) -> Vec<u8> {
        let mut b = FileHeader::new(4, 1).encode(b"\x89TST\r\n\x1a\n").to_vec();
        for &(seq, flags, k, v) in records {
            encode_record(&mut b, 4, seq, seq.saturating_sub(1), flags, k, v);
        }
        b
    }

    #[test]
    fn torn_tail_is_cut_only_in_the_newest_file_and_never_when_strict() {
        let mut b = file(&[(1, 0, b"a", b"1"), (2, 0, b"b", b"2")]);
        let whole = b.len();
        b.truncate(whole - 3);
        let s = scan_records(&b, 4, true, RecoveryMode::TolerateTornTail).unwrap();
        assert_eq!(s.entries.len(), 1);
        assert_eq!(
            s.torn_tail.map(|t| t.1),
            Some(CorruptionKind::TruncatedRecord)
        );
        assert!(scan_records(&b, 4, false, RecoveryMode::TolerateTornTail).is_err());
        assert!(scan_records(&b, 4, true, RecoveryMode::Strict).is_err());
    }

    #[test]
    fn an_unfinished_batch_is_dropped_whole() {
        let b = file(&[(1, 0, b"a", b"1"), (2, BATCH_CONTINUES, b"b", b"2")]);
        let s = scan_records(&b, 4, true, RecoveryMode::TolerateTornTail).unwrap();
        assert_eq!(s.entries.len(), 1);
        assert_eq!(
            s.torn_tail.map(|t| t.1),
            Some(CorruptionKind::IncompleteBatch)
        );
    }

    #[test]
    fn damage_before_a_proven_durable_record_is_corruption_or_skipped() {
        let mut b = file(&[(1, 0, b"a", b"1"), (2, 0, b"b", b"2"), (3, 0, b"c", b"3")]);
        // Record 2 flipped; record 3 says 2 was durable when it was written.
        b[FILE_HEADER_LEN + 34 + 33] ^= 1;
        let err = scan_records(&b, 4, true, RecoveryMode::TolerateTornTail).unwrap_err();
        assert_eq!(
            err.0,
            (FILE_HEADER_LEN + 34) as u64,
            "the damaged record's offset"
        );
        let s = scan_records(&b, 4, true, RecoveryMode::SkipCorrupt).unwrap();
        assert_eq!(s.entries.len(), 2);
        assert_eq!(s.skipped.len(), 1);
    }
}
