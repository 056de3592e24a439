//! The on-disk format, byte by byte (also in `docs/FORMAT-wal.md`). All integers are
//! little-endian and fixed width.
//!
//! A segment file is named `<first LSN, 20 decimal digits>.wal` and holds:
//!
//! ```text
//! segment header (32 bytes)
//!   0..8    magic            89 57 41 4C 0D 0A 1A 0A   ("\x89WAL\r\n\x1a\n", PNG-style)
//!   8..12   version          u32 = 1
//!   12..16  salt             u32, random per segment; mixed into every record CRC
//!   16..24  first_lsn        u64, the LSN the first record of this segment would have
//!   24..28  reserved         u32 = 0
//!   28..32  header_crc       u32, crc32 of bytes 0..28
//! records, back to back, each:
//!   0..4    len              u32, payload length (<= MAX_RECORD_LIMIT, 1 GiB)
//!   4..8    crc              u32, crc32(salt ++ bytes 0..4 ++ bytes 8..28 ++ payload)
//!   8..16   lsn              u64, exactly previous record's LSN + 1 (first_lsn for the first)
//!   16..24  synced_lsn       u64, the highest LSN known durable (fsync returned) when this
//!                            record was written
//!   24..28  flags            u32; bit 0 = BATCH_CONTINUES (more records of the same batch
//!                            follow); other bits must be 0
//!   28..    payload          len bytes
//! ```
//!
//! `synced_lsn` lets recovery tell a torn tail from corruption even when the disk persisted
//! unsynced pages out of order: damage at LSN `m` followed by valid records whose `synced_lsn`
//! is below `m` lies in the window that was never synced (nothing there was acknowledged);
//! a later record with `synced_lsn >= m` proves `m` had been durable, so its damage is
//! corruption.
//!
//! The CRC covers the length, the LSN and the flags as well as the payload, and is salted per
//! segment, so bytes left from anything else never validate. A batch is the run of records
//! with `BATCH_CONTINUES` up to and including the first record without it; recovery keeps a
//! batch whole or drops it whole.

/// Segment file magic.
pub const MAGIC: [u8; 8] = *b"\x89WAL\r\n\x1a\n";
/// Current format version.
pub const VERSION: u32 = 1;
/// Bytes in a segment header.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Bytes in a record header.
pub const RECORD_HEADER_LEN: usize = 28;
/// Record flag: the next record belongs to the same batch.
pub const BATCH_CONTINUES: u32 = 1;
/// The largest payload the format allows (and the most `Options::max_record_bytes` may be).
/// Readers bound lengths by this, not by the options of the day, so a log written with a
/// larger limit still reads after the limit is lowered.
pub const MAX_RECORD_LIMIT: u32 = 1 << 30;
/// Suffix of segment file names.
pub const SEGMENT_SUFFIX: &str = ".wal";

/// Segment header: the magic, 8 bytes.
pub const HEADER_MAGIC: usize = 0;
/// Segment header: the version, u32.
pub const HEADER_VERSION: usize = 8;
/// Segment header: the salt, u32.
pub const HEADER_SALT: usize = 12;
/// Segment header: the first LSN, u64.
pub const HEADER_FIRST_LSN: usize = 16;
/// Segment header: reserved, u32 = 0.
pub const HEADER_RESERVED: usize = 24;
/// Segment header: the CRC of the bytes before it, u32.
pub const HEADER_CRC: usize = 28;
/// Record: the payload length, u32.
pub const RECORD_LEN: usize = 0;
/// Record: the CRC, u32.
pub const RECORD_CRC: usize = 4;
/// Record: the LSN, u64.
pub const RECORD_LSN: usize = 8;
/// Record: synced_lsn, u64.
pub const RECORD_SYNCED_LSN: usize = 16;
/// Record: flags, u32.
pub const RECORD_FLAGS: usize = 24;

const _: () = assert!(HEADER_VERSION == HEADER_MAGIC + 8);
const _: () = assert!(HEADER_SALT == HEADER_VERSION + 4);
const _: () = assert!(HEADER_FIRST_LSN == HEADER_SALT + 4);
const _: () = assert!(HEADER_RESERVED == HEADER_FIRST_LSN + 8);
const _: () = assert!(HEADER_CRC == HEADER_RESERVED + 4);
const _: () = assert!(SEGMENT_HEADER_LEN == HEADER_CRC + 4);
const _: () = assert!(RECORD_CRC == RECORD_LEN + 4);
const _: () = assert!(RECORD_LSN == RECORD_CRC + 4);
const _: () = assert!(RECORD_SYNCED_LSN == RECORD_LSN + 8);
const _: () = assert!(RECORD_FLAGS == RECORD_SYNCED_LSN + 8);
const _: () = assert!(RECORD_HEADER_LEN == RECORD_FLAGS + 4);

/// The LSN field of the record header at the start of `b`, without checking the record
/// (recovery uses it to skip candidates cheaply before a full decode).
pub fn peek_lsn(b: &[u8]) -> Option<Lsn> {
    u64_at(b, RECORD_LSN)
}

/// A log sequence number: records are numbered 1, 2, 3, ... and numbers are never reused
/// for records that were durable.
pub type Lsn = u64;

/// A parsed segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version.
    pub version: u32,
    /// The per-segment CRC salt.
    pub salt: u32,
    /// LSN of the segment's first record.
    pub first_lsn: Lsn,
}

/// Why a segment header did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// Fewer than [`SEGMENT_HEADER_LEN`] bytes.
    Short,
    /// Not a WAL segment.
    BadMagic,
    /// The header's checksum does not match.
    BadChecksum,
    /// Written by a newer (or unknown) format version.
    UnsupportedVersion(u32),
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(*b.get(at..at + 4)?.first_chunk::<4>()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(*b.get(at..at + 8)?.first_chunk::<8>()?))
}

impl SegmentHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        let mut put = |at: usize, bytes: &[u8]| {
            if let Some(dst) = out.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        };
        put(HEADER_MAGIC, &MAGIC);
        put(HEADER_VERSION, &self.version.to_le_bytes());
        put(HEADER_SALT, &self.salt.to_le_bytes());
        put(HEADER_FIRST_LSN, &self.first_lsn.to_le_bytes());
        put(HEADER_RESERVED, &0u32.to_le_bytes());
        let crc = crc32fast::hash(out.get(..HEADER_CRC).unwrap_or_default());
        if let Some(dst) = out.get_mut(HEADER_CRC..SEGMENT_HEADER_LEN) {
            dst.copy_from_slice(&crc.to_le_bytes());
        }
        out
    }

    /// Decodes a header; total over any input.
    pub fn decode(b: &[u8]) -> Result<SegmentHeader, HeaderError> {
        let b = b.get(..SEGMENT_HEADER_LEN).ok_or(HeaderError::Short)?;
        if b.get(HEADER_MAGIC..HEADER_VERSION) != Some(&MAGIC[..]) {
            return Err(HeaderError::BadMagic);
        }
        let stored = u32_at(b, HEADER_CRC).ok_or(HeaderError::Short)?;
        if crc32fast::hash(b.get(..HEADER_CRC).unwrap_or_default()) != stored {
            return Err(HeaderError::BadChecksum);
        }
        let version = u32_at(b, HEADER_VERSION).ok_or(HeaderError::Short)?;
        if version != VERSION {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        Ok(SegmentHeader {
            version,
            salt: u32_at(b, HEADER_SALT).ok_or(HeaderError::Short)?,
            first_lsn: u64_at(b, HEADER_FIRST_LSN).ok_or(HeaderError::Short)?,
        })
    }
}

/// The segment file name for `first_lsn`.
pub fn segment_name(first_lsn: Lsn) -> String {
    format!("{first_lsn:020}{SEGMENT_SUFFIX}")
}

/// The first LSN encoded in a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn record_crc(salt: u32, len: &[u8], rest: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&salt.to_le_bytes());
    h.update(len);
    h.update(rest);
    h.update(payload);
    h.finalize()
}

/// Appends the encoding of one record to `out`; `synced_lsn` is the highest LSN known
/// durable as it is written.
pub fn encode_record(
    out: &mut Vec<u8>,
    salt: u32,
    lsn: Lsn,
    synced_lsn: Lsn,
    flags: u32,
    payload: &[u8],
) {
    let len = u32::try_from(payload.len())
        .expect("payload length is checked against max_record_bytes (a u32) before encoding")
        .to_le_bytes();
    // The header from the LSN on (the CRC covers the length and these, not itself).
    let mut rest = [0u8; RECORD_HEADER_LEN - RECORD_LSN];
    let mut put = |at: usize, bytes: &[u8]| {
        let at = at - RECORD_LSN;
        if let Some(dst) = rest.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    };
    put(RECORD_LSN, &lsn.to_le_bytes());
    put(RECORD_SYNCED_LSN, &synced_lsn.to_le_bytes());
    put(RECORD_FLAGS, &flags.to_le_bytes());
    let crc = record_crc(salt, &len, &rest, payload);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&rest);
    out.extend_from_slice(payload);
}

/// A record decoded from a buffer, borrowing its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Its LSN.
    pub lsn: Lsn,
    /// The highest LSN known durable when it was written.
    pub synced_lsn: Lsn,
    /// Its flags.
    pub flags: u32,
    /// Its payload.
    pub payload: &'a [u8],
}

impl RecordRef<'_> {
    /// Bytes the record occupies on disk.
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_LEN + self.payload.len()
    }
}

/// Why bytes are not a valid record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The buffer ends inside the record; `need` bytes would hold it, if the header is right.
    Truncated {
        /// Total bytes the record claims.
        need: u64,
    },
    /// The length field is over the limit.
    LengthTooLarge {
        /// The length found.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// The CRC does not match.
    ChecksumMismatch {
        /// CRC stored in the record.
        expected: u32,
        /// CRC of the bytes found.
        actual: u32,
    },
    /// Unknown flag bits are set.
    BadFlags(u32),
}

/// Decodes the record at the start of `b`. Total: any bytes give a record or an error. The
/// length is bounded by `max_len` before anything is read past the header.
pub fn decode_record(b: &[u8], salt: u32, max_len: u32) -> Result<RecordRef<'_>, DecodeError> {
    let Some(header) = b.first_chunk::<RECORD_HEADER_LEN>() else {
        return Err(DecodeError::Truncated {
            need: RECORD_HEADER_LEN as u64,
        });
    };
    let len = u32_at(header, RECORD_LEN).unwrap_or(0);
    if len > max_len {
        return Err(DecodeError::LengthTooLarge { len, max: max_len });
    }
    let total = RECORD_HEADER_LEN + len as usize;
    let Some(payload) = b.get(RECORD_HEADER_LEN..total) else {
        return Err(DecodeError::Truncated { need: total as u64 });
    };
    let expected = u32_at(header, RECORD_CRC).unwrap_or(0);
    let actual = record_crc(
        salt,
        header.get(RECORD_LEN..RECORD_CRC).unwrap_or_default(),
        header.get(8..RECORD_HEADER_LEN).unwrap_or_default(),
        payload,
    );
    if expected != actual {
        return Err(DecodeError::ChecksumMismatch { expected, actual });
    }
    let flags = u32_at(header, RECORD_FLAGS).unwrap_or(0);
    if flags & !BATCH_CONTINUES != 0 {
        return Err(DecodeError::BadFlags(flags));
    }
    Ok(RecordRef {
        lsn: u64_at(header, RECORD_LSN).unwrap_or(0),
        synced_lsn: u64_at(header, RECORD_SYNCED_LSN).unwrap_or(0),
        flags,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let h = SegmentHeader {
            version: VERSION,
            salt: 0xDEAD_BEEF,
            first_lsn: 42,
        };
        let bytes = h.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(h));
        for i in 0..SEGMENT_HEADER_LEN {
            let mut b = bytes;
            b[i] ^= 0x10;
            assert!(SegmentHeader::decode(&b).is_err(), "flip at {i}");
        }
        assert_eq!(SegmentHeader::decode(&bytes[..10]), Err(HeaderError::Short));
    }

    #[test]
    fn record_round_trips_and_every_bit_flip_is_caught() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 7, 9, 4, BATCH_CONTINUES, b"payload");
        let r = decode_record(&buf, 7, 1024).unwrap();
        assert_eq!(
            (r.lsn, r.synced_lsn, r.flags, r.payload),
            (9, 4, BATCH_CONTINUES, &b"payload"[..])
        );
        assert_eq!(r.encoded_len(), buf.len());
        assert!(
            decode_record(&buf, 8, 1024).is_err(),
            "another segment's salt"
        );
        for i in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(decode_record(&b, 7, 1024).is_err(), "bit {i}");
        }
    }

    #[test]
    fn segment_names_sort_and_parse() {
        assert_eq!(segment_name(1), "00000000000000000001.wal");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_name("1.wal"), None);
        assert_eq!(parse_segment_name("0000000000000000000x.wal"), None);
        assert!(segment_name(9) < segment_name(10));
    }
}
