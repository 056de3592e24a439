//! The on-disk formats, byte by byte (also in `docs/FORMAT-bitcask.md`). All integers are
//! little-endian and fixed width; CRCs are CRC-32 (IEEE).
//!
//! ```text
//! data file  <id, 10 digits>.data
//!   header (32 bytes)
//!     0..8    magic        89 42 43 44 0D 0A 1A 0A  ("\x89BCD\r\n\x1a\n")
//!     8..12   version      u32 = 1
//!     12..16  salt         u32, random per file, mixed into every record CRC
//!     16..24  file_id      u64, equals the number in the name
//!     24..28  reserved     u32 = 0
//!     28..32  header_crc   u32, CRC of bytes 0..28
//!   records, back to back:
//!     0..4    crc          u32, CRC(salt ++ bytes 4..32 ++ key ++ value)
//!     4..12   seq          u64, the write's logical timestamp (unique, increasing)
//!     12..16  key_len      u32 (<= max_key_bytes)
//!     16..20  value_len    u32 (<= max_value_bytes; 0 for a tombstone)
//!     20..24  flags        u32: bit 0 TOMBSTONE, bit 1 BATCH_CONTINUES; others 0
//!     24..32  synced_seq   u64, the highest seq known durable when this record was written
//!     32..    key, then value
//!
//! hint file  <id>.hint   (a summary of one immutable data file, for fast open)
//!   header (32 bytes): magic 89 42 43 48 0D 0A 1A 0A ("\x89BCH\r\n\x1a\n"), version u32 = 1,
//!     data_salt u32 (the salt of the data file it describes), file_id u64, reserved u32,
//!     header_crc u32 over bytes 0..28
//!   entries, back to back:
//!     0..8 seq u64 | 8..16 offset u64 (of the record in the data file) | 16..20 key_len u32 |
//!     20..24 value_len u32 | 24..28 flags u32 | 28.. key
//!   trailer (12 bytes): entry_count u64, crc u32 = CRC of every byte before it
//! ```

use crate::error::CorruptionKind;

/// Data file magic.
pub const DATA_MAGIC: [u8; 8] = *b"\x89BCD\r\n\x1a\n";
/// Hint file magic.
pub const HINT_MAGIC: [u8; 8] = *b"\x89BCH\r\n\x1a\n";
/// Format version of both.
pub const VERSION: u32 = 1;
/// Bytes in a file header.
pub const FILE_HEADER_LEN: usize = 32;
/// Bytes in a record header.
pub const RECORD_HEADER_LEN: usize = 32;
/// Bytes in a hint entry before the key.
pub const HINT_ENTRY_LEN: usize = 28;
/// Bytes in the hint trailer.
pub const HINT_TRAILER_LEN: usize = 12;
/// Record flag: a delete.
pub const TOMBSTONE: u32 = 1;
/// Record flag: the next record belongs to the same batch.
pub const BATCH_CONTINUES: u32 = 2;

const _: () = assert!(FILE_HEADER_LEN == 8 + 4 + 4 + 8 + 4 + 4);
const _: () = assert!(RECORD_HEADER_LEN == 4 + 8 + 4 + 4 + 4 + 8);
const _: () = assert!(HINT_ENTRY_LEN == 8 + 8 + 4 + 4 + 4);

pub(crate) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(*b.get(at..at + 4)?.first_chunk::<4>()?))
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(*b.get(at..at + 8)?.first_chunk::<8>()?))
}

/// A file header (data or hint).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// The salt (of this data file, or of the data file a hint describes).
    pub salt: u32,
    /// The file id.
    pub file_id: u64,
}

impl FileHeader {
    /// Encodes with `magic`.
    pub fn encode(&self, magic: &[u8; 8]) -> [u8; FILE_HEADER_LEN] {
        let mut out = [0u8; FILE_HEADER_LEN];
        let fields: [(usize, &[u8]); 4] = [
            (0, magic),
            (8, &VERSION.to_le_bytes()),
            (12, &self.salt.to_le_bytes()),
            (16, &self.file_id.to_le_bytes()),
        ];
        for (at, bytes) in fields {
            if let Some(dst) = out.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        }
        let crc = crc32fast::hash(out.get(..28).unwrap_or_default());
        if let Some(dst) = out.get_mut(28..32) {
            dst.copy_from_slice(&crc.to_le_bytes());
        }
        out
    }

    /// Decodes and checks a header with `magic`; total over any input.
    pub fn decode(b: &[u8], magic: &[u8; 8]) -> Result<FileHeader, CorruptionKind> {
        let b = b
            .get(..FILE_HEADER_LEN)
            .ok_or(CorruptionKind::ShortHeader)?;
        if b.get(..8) != Some(&magic[..]) {
            return Err(CorruptionKind::BadMagic);
        }
        if crc32fast::hash(b.get(..28).unwrap_or_default()) != u32_at(b, 28).unwrap_or(0) {
            return Err(CorruptionKind::BadHeaderChecksum);
        }
        let version = u32_at(b, 8).unwrap_or(0);
        if version != VERSION {
            return Err(CorruptionKind::UnsupportedVersion(version));
        }
        Ok(FileHeader {
            salt: u32_at(b, 12).unwrap_or(0),
            file_id: u64_at(b, 16).unwrap_or(0),
        })
    }
}

fn record_crc(salt: u32, header_rest: &[u8], key: &[u8], value: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&salt.to_le_bytes());
    h.update(header_rest);
    h.update(key);
    h.update(value);
    h.finalize()
}

/// Appends one record to `out`. Lengths must already be checked against the limits.
/// `synced_seq` is the highest seq known durable as the record is written.
pub fn encode_record(
    out: &mut Vec<u8>,
    salt: u32,
    seq: u64,
    synced_seq: u64,
    flags: u32,
    key: &[u8],
    value: &[u8],
) {
    let mut rest = [0u8; RECORD_HEADER_LEN - 4];
    let k = u32::try_from(key.len()).expect("key length checked against max_key_bytes");
    let v = u32::try_from(value.len()).expect("value length checked against max_value_bytes");
    let parts: [&[u8]; 5] = [
        &seq.to_le_bytes(),
        &k.to_le_bytes(),
        &v.to_le_bytes(),
        &flags.to_le_bytes(),
        &synced_seq.to_le_bytes(),
    ];
    let mut at = 0;
    for p in parts {
        if let Some(dst) = rest.get_mut(at..at + p.len()) {
            dst.copy_from_slice(p);
        }
        at += p.len();
    }
    let crc = record_crc(salt, &rest, key, value);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&rest);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

/// A decoded record, borrowing from the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Logical timestamp.
    pub seq: u64,
    /// The highest seq known durable when the record was written.
    pub synced_seq: u64,
    /// Flags.
    pub flags: u32,
    /// Key.
    pub key: &'a [u8],
    /// Value (empty for a tombstone).
    pub value: &'a [u8],
}

impl Record<'_> {
    /// Bytes on disk.
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_LEN + self.key.len() + self.value.len()
    }

    /// True for a delete.
    pub fn is_tombstone(&self) -> bool {
        self.flags & TOMBSTONE != 0
    }
}

/// Why bytes are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The buffer ends inside the record.
    Truncated,
    /// A corrupt record.
    Corrupt(CorruptionKind),
}

/// Decodes the record at the start of `b`; total. Lengths are bounded before any read.
pub fn decode_record(
    b: &[u8],
    salt: u32,
    max_key: u32,
    max_value: u32,
) -> Result<Record<'_>, DecodeError> {
    let h = b.get(..RECORD_HEADER_LEN).ok_or(DecodeError::Truncated)?;
    let (k, v) = (u32_at(h, 12).unwrap_or(0), u32_at(h, 16).unwrap_or(0));
    if k > max_key {
        return Err(DecodeError::Corrupt(CorruptionKind::LengthTooLarge {
            len: k,
            max: max_key,
        }));
    }
    if v > max_value {
        return Err(DecodeError::Corrupt(CorruptionKind::LengthTooLarge {
            len: v,
            max: max_value,
        }));
    }
    let key_end = RECORD_HEADER_LEN + k as usize;
    let end = key_end + v as usize;
    let key = b
        .get(RECORD_HEADER_LEN..key_end)
        .ok_or(DecodeError::Truncated)?;
    let value = b.get(key_end..end).ok_or(DecodeError::Truncated)?;
    let expected = u32_at(h, 0).unwrap_or(0);
    let actual = record_crc(salt, h.get(4..).unwrap_or_default(), key, value);
    if expected != actual {
        return Err(DecodeError::Corrupt(CorruptionKind::ChecksumMismatch {
            expected,
            actual,
        }));
    }
    let flags = u32_at(h, 20).unwrap_or(0);
    if flags & !(TOMBSTONE | BATCH_CONTINUES) != 0 {
        return Err(DecodeError::Corrupt(CorruptionKind::BadFlags(flags)));
    }
    Ok(Record {
        seq: u64_at(h, 4).unwrap_or(0),
        synced_seq: u64_at(h, 24).unwrap_or(0),
        flags,
        key,
        value,
    })
}

/// What [`scan_records`] found in a data file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
    /// Damaged ranges skipped in salvage mode: (offset, length, why).
    pub skipped: Vec<(u64, u64, CorruptionKind)>,
}

/// Any valid record after `from` with a sequence number above `min_seq`?
fn valid_record_after(
    b: &[u8],
    from: usize,
    salt: u32,
    max_key: u32,
    max_value: u32,
    min_seq: u64,
) -> Option<usize> {
    let last = b.len().checked_sub(RECORD_HEADER_LEN)?;
    (from..=last).find(|&p| {
        let rest = b.get(p..).unwrap_or_default();
        u32_at(rest, 12).is_some_and(|k| k <= max_key)
            && u32_at(rest, 16).is_some_and(|v| v <= max_value)
            && matches!(decode_record(rest, salt, max_key, max_value), Ok(r) if r.seq > min_seq)
    })
}

/// The highest `synced_seq` and the lowest seq among valid records after `from` with a seq
/// above `min_seq`.
fn synced_after(
    b: &[u8],
    from: usize,
    salt: u32,
    max_key: u32,
    max_value: u32,
    min_seq: u64,
) -> (u64, u64) {
    let (mut synced, mut lowest) = (0, u64::MAX);
    let mut p = from;
    while let Some(found) = valid_record_after(b, p, salt, max_key, max_value, min_seq) {
        if let Ok(r) = decode_record(b.get(found..).unwrap_or_default(), salt, max_key, max_value) {
            synced = synced.max(r.synced_seq);
            lowest = lowest.min(r.seq);
        }
        p = found + 1;
    }
    (synced, lowest)
}

/// Scans the records of a data file (`bytes`, header included), keeping batches whole.
///
/// Damage with no valid record after it, in the `newest` file (the one being appended to
/// at a crash), is a torn tail: reported in `torn_tail` (cut at the start of an unfinished
/// batch). Other damage is an error `(offset, kind)`, unless `salvage`, which skips to the
/// next valid record and reports the range. Total: never panics.
pub fn scan_records(
    bytes: &[u8],
    salt: u32,
    max_key: u32,
    max_value: u32,
    newest: bool,
    salvage: bool,
) -> Result<Scanned, (u64, CorruptionKind)> {
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
        let decoded = decode_record(rest, salt, max_key, max_value);
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
            Err(DecodeError::Truncated) => CorruptionKind::TruncatedRecord,
            Err(DecodeError::Corrupt(k)) => k,
        };
        let damage_at = if batch.is_empty() { pos } else { batch_start };
        let later = valid_record_after(bytes, pos + 1, salt, max_key, max_value, last_seq);
        // Valid records after the damage still make a torn tail if none was written after
        // the damaged record was durable (unsynced pages written back out of order). Seqs in a
        // writer's file are consecutive, so the damaged record is `last_seq + 1`; at the start
        // of a file, it is at most one below the first valid record after the damage.
        let proven_durable = later.is_some() && {
            let (max_synced, min_later) =
                synced_after(bytes, pos + 1, salt, max_key, max_value, last_seq);
            let damaged_seq = if last_seq > 0 {
                last_seq + 1
            } else {
                min_later.saturating_sub(1).max(1)
            };
            max_synced >= damaged_seq
        };
        batch.clear();
        if newest && !proven_durable {
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
        if newest {
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

/// One hint entry: where a key's record is in the data file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HintEntry {
    /// The record's logical timestamp.
    pub seq: u64,
    /// Offset of the record in the data file.
    pub offset: u64,
    /// The value's length.
    pub value_len: u32,
    /// The record's flags (tombstones are listed too: they shadow older files).
    pub flags: u32,
    /// The key.
    pub key: Vec<u8>,
}

/// Encodes a whole hint file.
pub fn encode_hint(header: FileHeader, entries: &[HintEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FILE_HEADER_LEN + entries.len() * 48 + HINT_TRAILER_LEN);
    out.extend_from_slice(&header.encode(&HINT_MAGIC));
    for e in entries {
        let k = u32::try_from(e.key.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&e.seq.to_le_bytes());
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&k.to_le_bytes());
        out.extend_from_slice(&e.value_len.to_le_bytes());
        out.extend_from_slice(&e.flags.to_le_bytes());
        out.extend_from_slice(&e.key);
    }
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a whole hint file, checking its CRC and that it describes the data file with
/// `salt` and `file_id`. `None` if anything is off: the caller scans the data file instead.
pub fn decode_hint(b: &[u8], salt: u32, file_id: u64, max_key: u32) -> Option<Vec<HintEntry>> {
    let header = FileHeader::decode(b, &HINT_MAGIC).ok()?;
    if header.salt != salt || header.file_id != file_id {
        return None;
    }
    let body_end = b.len().checked_sub(HINT_TRAILER_LEN)?;
    let stored = u32_at(b, b.len().checked_sub(4)?)?;
    if crc32fast::hash(b.get(..b.len() - 4)?) != stored {
        return None;
    }
    let count = u64_at(b, body_end)?;
    let mut entries = Vec::new();
    let mut pos = FILE_HEADER_LEN;
    while pos < body_end {
        let e = b.get(pos..pos + HINT_ENTRY_LEN)?;
        let k = u32_at(e, 16)?;
        if k > max_key {
            return None;
        }
        let key = b.get(pos + HINT_ENTRY_LEN..pos + HINT_ENTRY_LEN + k as usize)?;
        entries.push(HintEntry {
            seq: u64_at(e, 0)?,
            offset: u64_at(e, 8)?,
            value_len: u32_at(e, 20)?,
            flags: u32_at(e, 24)?,
            key: key.to_vec(),
        });
        pos += HINT_ENTRY_LEN + k as usize;
    }
    (pos == body_end && entries.len() as u64 == count).then_some(entries)
}

/// The name of data file `id`.
pub fn data_name(id: u64) -> String {
    format!("{id:010}.data")
}

/// The name of hint file `id`.
pub fn hint_name(id: u64) -> String {
    format!("{id:010}.hint")
}

/// The name of merge output `id` before the merge commits.
pub fn merge_name(id: u64) -> String {
    format!("{id:010}.merge")
}

/// The file id and suffix of a store file name.
pub fn parse_name(name: &str) -> Option<(u64, &str)> {
    let (digits, suffix) = name.split_once('.')?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_every_bit_flip_is_caught() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 9, 77, 70, TOMBSTONE, b"key", b"");
        encode_record(&mut buf, 9, 78, 77, 0, b"k2", b"value");
        let r = decode_record(&buf, 9, 100, 100).unwrap();
        assert_eq!((r.seq, r.key, r.is_tombstone()), (77, &b"key"[..], true));
        let r2 = decode_record(&buf[r.encoded_len()..], 9, 100, 100).unwrap();
        assert_eq!((r2.key, r2.value), (&b"k2"[..], &b"value"[..]));
        let one = r.encoded_len();
        for bit in 0..one * 8 {
            let mut b = buf.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_record(&b[..one], 9, 100, 100).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn hint_round_trips_and_rejects_damage_or_another_file() {
        let h = FileHeader {
            salt: 5,
            file_id: 3,
        };
        let entries = vec![
            HintEntry {
                seq: 1,
                offset: 32,
                value_len: 4,
                flags: 0,
                key: b"a".to_vec(),
            },
            HintEntry {
                seq: 2,
                offset: 61,
                value_len: 0,
                flags: TOMBSTONE,
                key: b"bb".to_vec(),
            },
        ];
        let bytes = encode_hint(h, &entries);
        assert_eq!(decode_hint(&bytes, 5, 3, 100), Some(entries));
        assert_eq!(
            decode_hint(&bytes, 6, 3, 100),
            None,
            "another data file's salt"
        );
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert_eq!(decode_hint(&b, 5, 3, 100), None, "flip at {i}");
        }
        assert_eq!(decode_hint(&bytes[..bytes.len() - 1], 5, 3, 100), None);
    }

    #[test]
    fn names_parse() {
        assert_eq!(parse_name(&data_name(12)), Some((12, "data")));
        assert_eq!(parse_name("0000000001.hint"), Some((1, "hint")));
        assert_eq!(parse_name("MERGE"), None);
        assert_eq!(parse_name("12.data"), None);
    }
}
