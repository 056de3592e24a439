//! [`scan_records`]: reading a data file record by record at open (when no hint describes
//! it), keeping batches whole and telling a torn tail from corruption, in time linear in
//! the file's bytes whatever they hold.

use durable_fs::{Bytes, Source, each_chunk};

use crate::error::CorruptionKind;
use crate::format::{
    BATCH_CONTINUES, DecodeError, FILE_HEADER_LEN, HintEntry, RECORD_HEADER_LEN, SEAL, TOMBSTONE,
    claimed_len, decode_header, plausible_header,
};
use crate::options::RecoveryMode;

/// What [`scan_records`] found in a data file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Scanned {
    /// Every record of every complete batch, in file order (seals are not listed).
    pub entries: Vec<HintEntry>,
    /// Bytes of those records and of the file's seals.
    pub record_bytes: u64,
    /// Where the records end: after the last complete batch or seal (zeros after it are
    /// preallocated free space, not damage).
    pub end: u64,
    /// True when the last thing before `end` is a seal: the file was sealed and nothing was
    /// appended after.
    pub sealed: bool,
    /// Where to cut a torn tail (and why), for the newest file.
    pub torn_tail: Option<(u64, CorruptionKind)>,
    /// Damaged ranges skipped under [`RecoveryMode::SkipCorrupt`]: (offset, length, why).
    pub skipped: Vec<(u64, u64, CorruptionKind)>,
    /// Key and value bytes checksummed while looking for valid records after damage (0 for
    /// an undamaged file): at most [`RESCAN_FACTOR`] times the file's length plus
    /// [`RESCAN_SLACK`], whatever the file holds.
    pub rescan_bytes: u64,
}

/// The valid records after the first damage in a file, found in one forward pass (so a
/// file with many damaged places costs one pass, not one per place), with suffix maxima.
#[derive(Debug, Default)]
struct Later {
    /// Offsets of the valid records found, increasing.
    offsets: Vec<u64>,
    /// `max_synced[i]`: the highest `synced_seq` of records `i..`.
    max_synced: Vec<u64>,
    /// `min_seq[i]`: the lowest seq of records `i..`.
    min_seq: Vec<u64>,
    /// The work budget ran out before the end of the file: what lies after is unknown.
    exhausted: bool,
    /// Key and value bytes checksummed.
    checked: u64,
}

/// How many key and value bytes the forward pass after damage may checksum, per byte of
/// file (plus [`RESCAN_SLACK`]): what bounds the work a crafted file can cause (a candidate
/// offset is first checked in O(1), by its header CRC in format 2).
pub const RESCAN_FACTOR: u64 = 2;
/// Fixed allowance of the forward pass's budget, in bytes.
pub const RESCAN_SLACK: u64 = 1 << 20;

/// Offset in a record header of the flags field's most significant byte.
fn flags_top(version: u32) -> usize {
    let flags = if version == crate::format::VERSION_1 {
        crate::format::v1::RECORD_FLAGS
    } else {
        crate::format::RECORD_FLAGS
    };
    flags + 3
}

/// One record read from a [`Source`] at an offset: its header, and its key when asked.
struct Found {
    seq: u64,
    synced_seq: u64,
    flags: u32,
    key: Vec<u8>,
    value_len: u32,
    len: u64,
}

/// Decodes the record at `pos` of `src`, checking its CRC over key and value a chunk at a
/// time (memory: a chunk, and the key when `with_key`, read only once the record is valid).
fn decode_at(
    src: &mut dyn Source,
    pos: u64,
    salt: u32,
    version: u32,
    with_key: bool,
) -> durable_fs::Result<Result<Found, DecodeError>> {
    let mut h = [0u8; RECORD_HEADER_LEN];
    let got = src.get(pos, RECORD_HEADER_LEN)?;
    let Some(dst) = h.get_mut(..got.len()) else {
        return Ok(Err(DecodeError::Truncated));
    };
    dst.copy_from_slice(got);
    if got.len() < RECORD_HEADER_LEN {
        return Ok(Err(DecodeError::Truncated));
    }
    let hdr = match decode_header(&h, salt, version) {
        Ok(hdr) => hdr,
        Err(e) => return Ok(Err(e)),
    };
    let body = pos + RECORD_HEADER_LEN as u64;
    if body.saturating_add(hdr.body_len()) > src.len() {
        return Ok(Err(DecodeError::Truncated));
    }
    let mut hasher = hdr.crc_start(salt, &h);
    each_chunk(src, body, hdr.body_len(), |c| hasher.update(c))?;
    if let Err(e) = hdr.crc_matches(hasher) {
        return Ok(Err(e));
    }
    let key = if with_key {
        src.get(body, hdr.key_len as usize)?.to_vec()
    } else {
        Vec::new()
    };
    Ok(Ok(Found {
        seq: hdr.seq,
        synced_seq: hdr.synced_seq,
        flags: hdr.flags,
        key,
        value_len: hdr.value_len,
        len: hdr.encoded_len(),
    }))
}

/// The first byte at or after `from` that is not zero, or the end.
fn first_nonzero(src: &mut dyn Source, from: u64) -> durable_fs::Result<u64> {
    let mut p = from;
    while p < src.len() {
        let chunk = src.get_from(p)?;
        if let Some(i) = chunk.iter().position(|&b| b != 0) {
            return Ok(p + i as u64);
        }
        p += chunk.len().max(1) as u64;
    }
    Ok(src.len())
}

impl Later {
    /// Walks from `from` to the end: at each candidate offset an O(1) check, a full decode
    /// only where it passes, a jump over every valid record found, and zero runs skipped
    /// (no record header is all zeros: seqs start at 1). Reads a chunk at a time.
    fn find(src: &mut dyn Source, from: u64, salt: u32, version: u32) -> durable_fs::Result<Later> {
        let len = src.len();
        let mut out = Later::default();
        let mut found = Vec::new();
        let mut budget = len
            .saturating_mul(RESCAN_FACTOR)
            .saturating_add(RESCAN_SLACK);
        // A record's flags use the low byte only, so the flags field's top byte is 0: the
        // candidates are found with `memchr`, not tried at every offset.
        let top = flags_top(version) as u64;
        let header = RECORD_HEADER_LEN as u64;
        let mut p = from;
        while p + header <= len {
            let chunk = src.get_from(p + top)?;
            match memchr::memchr(0, chunk) {
                Some(i) => p += i as u64,
                None => {
                    p += chunk.len().max(1) as u64;
                    continue;
                }
            }
            if p + header > len {
                break;
            }
            let h = src.get(p, RECORD_HEADER_LEN)?;
            if h.first() == Some(&0) {
                let z = first_nonzero(src, p)? - p;
                if z >= header {
                    p += z - (header - 1);
                    continue;
                }
            }
            let h = src.get(p, RECORD_HEADER_LEN)?;
            if plausible_header(h, salt, version, len - p - header) {
                let cost = claimed_len(h, version).unwrap_or(0);
                if cost > budget {
                    out.exhausted = true;
                    break;
                }
                budget -= cost;
                out.checked += cost;
                if let Ok(r) = decode_at(src, p, salt, version, false)? {
                    found.push((p, r.seq, r.synced_seq));
                    p += r.len;
                    continue;
                }
            }
            p += 1;
        }
        out.offsets = found.iter().map(|f| f.0).collect();
        let (mut synced, mut lowest) = (0, u64::MAX);
        for &(_, seq, s) in found.iter().rev() {
            synced = synced.max(s);
            lowest = lowest.min(seq);
            out.max_synced.push(synced);
            out.min_seq.push(lowest);
        }
        out.max_synced.reverse();
        out.min_seq.reverse();
        Ok(out)
    }

    /// The first valid record after `pos`: its index and offset.
    fn after(&self, pos: u64) -> Option<(usize, u64)> {
        let i = self.offsets.partition_point(|&o| o <= pos);
        Some((i, *self.offsets.get(i)?))
    }
}

/// [`scan_file`] over bytes in memory.
pub fn scan_records(
    bytes: &[u8],
    salt: u32,
    version: u32,
    newest: bool,
    mode: RecoveryMode,
) -> Result<Scanned, (u64, CorruptionKind)> {
    match scan_file(&mut Bytes(bytes), salt, version, newest, mode) {
        Ok(r) => r,
        // Reading a slice cannot fail.
        Err(_) => Err((0, CorruptionKind::TruncatedRecord)),
    }
}

/// Scans the records of a data file of format `version` (`src`, header included), keeping
/// batches whole; reads it a chunk at a time (memory: a chunk, one key, the entries).
///
/// Damage in the `newest` file (the one being appended to at a crash) is a torn tail when
/// nothing after it proves it was durable: no valid record follows, or only records whose
/// `synced_seq` is below the damaged record's seq (unsynced pages written back out of
/// order). A seal or later record with `synced_seq` at or above it proves the damaged
/// record had been durable: corruption. A torn tail is reported in `torn_tail` (cut at the
/// start of an unfinished batch), unless `mode` is [`RecoveryMode::Strict`]. Other damage
/// is an error `(offset, kind)`, unless [`RecoveryMode::SkipCorrupt`], which skips to the
/// next valid record and reports the range. The outer error is a failed read.
///
/// Linear in the file's length: records are decoded once; after damage, one forward pass
/// finds the valid records that follow (an O(1) check per candidate offset, a bounded budget
/// of payload CRCs; past the budget the damage is [`CorruptionKind::RescanLimit`]). Total:
/// never panics.
pub fn scan_file(
    src: &mut dyn Source,
    salt: u32,
    version: u32,
    newest: bool,
    mode: RecoveryMode,
) -> durable_fs::Result<Result<Scanned, (u64, CorruptionKind)>> {
    let salvage = mode == RecoveryMode::SkipCorrupt;
    let tail_ok = newest && mode != RecoveryMode::Strict;
    let len = src.len();
    let mut out = Scanned {
        end: FILE_HEADER_LEN as u64,
        ..Scanned::default()
    };
    let mut pos = FILE_HEADER_LEN as u64;
    let mut batch: Vec<HintEntry> = Vec::new();
    let mut batch_start = pos;
    let mut last_seq = 0;
    let mut later: Option<Later> = None;
    while pos < len {
        let decoded = decode_at(src, pos, salt, version, true)?;
        if decoded.is_err() && first_nonzero(src, pos)? == len {
            break; // preallocated space
        }
        let kind = match decoded {
            Ok(r) if r.flags & SEAL != 0 && !batch.is_empty() => CorruptionKind::IncompleteBatch,
            Ok(r) if r.flags & SEAL != 0 => {
                last_seq = last_seq.max(r.seq);
                pos += r.len;
                out.record_bytes += r.len;
                out.end = pos;
                out.sealed = true;
                continue;
            }
            Ok(r) => {
                if batch.is_empty() {
                    batch_start = pos;
                }
                batch.push(HintEntry {
                    seq: r.seq,
                    offset: pos,
                    value_len: r.value_len,
                    flags: r.flags & TOMBSTONE,
                    key: r.key,
                });
                last_seq = last_seq.max(r.seq);
                pos += r.len;
                if r.flags & BATCH_CONTINUES == 0 {
                    out.record_bytes += pos - batch_start;
                    out.entries.append(&mut batch);
                    out.end = pos;
                    out.sealed = false;
                }
                continue;
            }
            Err(e @ (DecodeError::Truncated | DecodeError::Corrupt(_))) => CorruptionKind::from(e),
        };
        let damage_at = if batch.is_empty() { pos } else { batch_start };
        if later.is_none() {
            later = Some(Later::find(src, pos + 1, salt, version)?);
        }
        let Some(later) = later.as_ref() else {
            break;
        };
        out.rescan_bytes = later.checked;
        if later.exhausted {
            // Format 1 has no header CRC: a torn tail whose values hold small integers can
            // exhaust the budget without any crafting. In the newest file that stays a torn
            // tail (cut, the bytes kept in quarantine), as the format-1 code treated it;
            // anywhere else, and in format 2 (only a crafted file forges header CRCs), it is
            // refused.
            if version == crate::format::VERSION_1 && tail_ok && !salvage {
                out.torn_tail = Some((damage_at, kind));
                return Ok(Ok(out));
            }
            return Ok(Err((pos, CorruptionKind::RescanLimit)));
        }
        let next = later.after(pos);
        // Valid records after the damage still make a torn tail if none was written after
        // the damaged record was durable. Seqs in a writer's file are consecutive, so the
        // damaged record is `last_seq + 1`; at the start of a file, it is at most one below
        // the first valid record after the damage.
        let proven_durable = next.is_some_and(|(i, _)| {
            let max_synced = later.max_synced.get(i).copied().unwrap_or(0);
            let min_later = later.min_seq.get(i).copied().unwrap_or(u64::MAX);
            let damaged_seq = if last_seq > 0 {
                last_seq + 1
            } else {
                min_later.saturating_sub(1).max(1)
            };
            max_synced >= damaged_seq
        });
        batch.clear();
        if tail_ok && !proven_durable {
            out.torn_tail = Some((damage_at, kind));
            return Ok(Ok(out));
        }
        if !salvage {
            return Ok(Err((pos, kind)));
        }
        let next = next.map_or(len, |(_, at)| at);
        out.skipped.push((damage_at, next - damage_at, kind));
        pos = next;
    }
    if !batch.is_empty() {
        let kind = CorruptionKind::IncompleteBatch;
        if tail_ok {
            out.torn_tail = Some((batch_start, kind));
        } else if salvage {
            out.skipped.push((batch_start, len - batch_start, kind));
        } else {
            return Ok(Err((batch_start, kind)));
        }
    }
    Ok(Ok(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{FileHeader, VERSION, encode_record};

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
        let s = scan_records(&b, 4, VERSION, true, RecoveryMode::TolerateTornTail).unwrap();
        assert_eq!(s.entries.len(), 1);
        assert_eq!(
            s.torn_tail.map(|t| t.1),
            Some(CorruptionKind::TruncatedRecord)
        );
        assert!(scan_records(&b, 4, VERSION, false, RecoveryMode::TolerateTornTail).is_err());
        assert!(scan_records(&b, 4, VERSION, true, RecoveryMode::Strict).is_err());
    }

    #[test]
    fn an_unfinished_batch_is_dropped_whole() {
        let b = file(&[(1, 0, b"a", b"1"), (2, BATCH_CONTINUES, b"b", b"2")]);
        let s = scan_records(&b, 4, VERSION, true, RecoveryMode::TolerateTornTail).unwrap();
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
        let err = scan_records(&b, 4, VERSION, true, RecoveryMode::TolerateTornTail).unwrap_err();
        assert_eq!(
            err.0,
            (FILE_HEADER_LEN + 34) as u64,
            "the damaged record's offset"
        );
        let s = scan_records(&b, 4, VERSION, true, RecoveryMode::SkipCorrupt).unwrap();
        assert_eq!(s.entries.len(), 2);
        assert_eq!(s.skipped.len(), 1);
    }

    /// Finding 3 of the integrity issue, counted in work, not wall time: after damage, the
    /// rescan rejects offsets of garbage in O(1) (no payload checksummed), checksums about the
    /// file once when the rest is valid records, and a crafted file (forged headers, each
    /// claiming the rest of the file) exhausts a budget linear in the file's length and is
    /// refused, never quadratic.
    #[test]
    fn rescans_after_damage_are_linear_in_work() {
        // A valid header followed by 17 MiB of 0x01: unknown flag bits everywhere.
        let mut b = FileHeader::new(4, 1).encode(b"\x89TST\r\n\x1a\n").to_vec();
        b.resize(b.len() + (17 << 20), 1);
        let s = scan_records(&b, 4, VERSION, true, RecoveryMode::TolerateTornTail).unwrap();
        assert_eq!(s.torn_tail.map(|t| t.0), Some(FILE_HEADER_LEN as u64));
        assert_eq!(s.rescan_bytes, 0, "no payload checksummed");
        // 2 MiB of values made of u32 100000 with a flipped bit in the first record: the
        // rescan checksums each valid record once.
        let value: Vec<u8> = 100_000u32.to_le_bytes().repeat(256);
        let mut b = FileHeader::new(4, 1).encode(b"\x89TST\r\n\x1a\n").to_vec();
        for seq in 1..=2048u64 {
            encode_record(&mut b, 4, seq, 0, 0, &seq.to_le_bytes(), &value);
        }
        b[FILE_HEADER_LEN + 40] ^= 4;
        let s = scan_records(&b, 4, VERSION, true, RecoveryMode::TolerateTornTail).unwrap();
        assert_eq!(s.torn_tail.map(|t| t.0), Some(FILE_HEADER_LEN as u64));
        assert!(
            s.rescan_bytes <= b.len() as u64,
            "{} > {}",
            s.rescan_bytes,
            b.len()
        );
        // Crafted: a forged header at every 32 bytes, each claiming the rest of the file.
        let len = 4 << 20;
        let mut b = FileHeader::new(4, 1).encode(b"\x89TST\r\n\x1a\n").to_vec();
        b.resize(len, 0);
        let mut at = FILE_HEADER_LEN + 32;
        while at + RECORD_HEADER_LEN <= len {
            let rest = (len - at - RECORD_HEADER_LEN) as u32;
            let mut h = Vec::new();
            encode_record(&mut h, 4, 9, 0, 0, b"", &[]);
            h[crate::format::RECORD_VALUE_LEN..crate::format::RECORD_VALUE_LEN + 4]
                .copy_from_slice(&rest.to_le_bytes());
            let hcrc = {
                let mut c = crc32fast::Hasher::new();
                c.update(&4u32.to_le_bytes());
                c.update(&h[crate::format::RECORD_SEQ..RECORD_HEADER_LEN]);
                c.finalize()
            };
            h[crate::format::RECORD_HEADER_CRC..crate::format::RECORD_SEQ]
                .copy_from_slice(&hcrc.to_le_bytes());
            b[at..at + RECORD_HEADER_LEN].copy_from_slice(&h[..RECORD_HEADER_LEN]);
            at += RECORD_HEADER_LEN;
        }
        b[FILE_HEADER_LEN] = 0xFF; // damage where the first record would be
        let found = Later::find(&mut Bytes(&b), FILE_HEADER_LEN as u64 + 1, 4, VERSION).unwrap();
        assert!(found.exhausted);
        assert!(found.checked <= RESCAN_FACTOR * len as u64 + RESCAN_SLACK);
        for newest in [true, false] {
            let err = scan_records(&b, 4, VERSION, newest, RecoveryMode::TolerateTornTail);
            assert_eq!(err.map(|_| ()).unwrap_err().1, CorruptionKind::RescanLimit);
        }
        // Format 1 has no header CRC: small integers pass its O(1) check, and the budget
        // bounds the payload checksums instead.
        let mut b = FileHeader {
            version: crate::format::VERSION_1,
            ..FileHeader::new(4, 1)
        }
        .encode(b"\x89TST\r\n\x1a\n")
        .to_vec();
        b.extend(std::iter::repeat_n(0u8, 3).chain([1u8]).cycle().take(len));
        b[FILE_HEADER_LEN] = 0xFF;
        let found = Later::find(
            &mut Bytes(&b),
            FILE_HEADER_LEN as u64 + 1,
            4,
            crate::format::VERSION_1,
        )
        .unwrap();
        assert!(found.checked <= RESCAN_FACTOR * b.len() as u64 + RESCAN_SLACK);
    }

    /// Read from a file in chunks, a rescan after damage reads each byte about once: the
    /// forward search keeps to the bytes it holds instead of asking for a fresh chunk at
    /// every candidate (which made it read a chunk per record: quadratic in practice).
    #[test]
    fn a_rescan_from_a_file_reads_it_about_once() {
        let sim = durable_fs::sim::SimFs::new();
        let fs = sim.durable();
        let path = std::path::Path::new("/big.data");
        let mut b = FileHeader::new(4, 1).encode(b"\x89TST\r\n\x1a\n").to_vec();
        for seq in 1..=40_000u64 {
            encode_record(&mut b, 4, seq, 0, 0, &seq.to_le_bytes(), &[7u8; 92]);
        }
        b[FILE_HEADER_LEN + 40] ^= 1;
        let file = fs.create_new(path).unwrap();
        file.write_all_at(&b, 0).unwrap();
        let mut src = durable_fs::Chunks::new(&file, b.len() as u64);
        let s = scan_file(&mut src, 4, VERSION, true, RecoveryMode::TolerateTornTail)
            .unwrap()
            .unwrap();
        assert_eq!(s.torn_tail.map(|t| t.0), Some(FILE_HEADER_LEN as u64));
        assert!(
            src.bytes_read() <= 3 * b.len() as u64,
            "{} bytes read for a {}-byte file",
            src.bytes_read(),
            b.len()
        );
    }
}
