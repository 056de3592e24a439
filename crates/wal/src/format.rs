//! The on-disk format, byte by byte (also in `docs/FORMAT-wal.md`). All integers are
//! little-endian and fixed width.
//!
//! A segment file is named `<first LSN, 20 decimal digits>.wal` and holds:
//!
//! ```text
//! segment header (32 bytes)
//!   0..8    magic            89 57 41 4C 0D 0A 1A 0A   ("\x89WAL\r\n\x1a\n", PNG-style)
//!   8..12   version          u32 = 2 (1: segments written before format 2, still read)
//!   12..16  salt             u32, random per segment; mixed into every record CRC
//!   16..24  first_lsn        u64, the LSN the first record of this segment would have
//!   24..28  reserved         u32 = 0
//!   28..32  header_crc       u32, crc32 of bytes 0..28
//! records (format 2), back to back, each:
//!   0..4    len              u32, payload length (<= MAX_RECORD_LIMIT, 1 GiB)
//!   4..8    crc              u32, crc32(salt ++ bytes 0..4 ++ bytes 8..28 ++ payload)
//!   8..12   header_crc       u32, crc32(salt ++ bytes 0..4 ++ bytes 12..28): a candidate
//!                            offset is rejected in O(1)
//!   12..20  lsn              u64, exactly previous record's LSN + 1 (first_lsn for the first);
//!                            a seal repeats the LSN of the record before it
//!   20..24  synced_delta     u32, lsn - synced_lsn (u32::MAX: synced_lsn 0, nothing known):
//!                            synced_lsn is the highest LSN known durable (fsync returned)
//!                            when this record was written
//!   24..28  flags            u32; bit 0 = BATCH_CONTINUES (more records of the same batch
//!                            follow); bit 1 = SEAL (no payload: written after an fsync
//!                            returned, it says every record before it is durable)
//!   28..    payload          len bytes
//! records (format 1): 0..4 len | 4..8 crc (same coverage) | 8..16 lsn | 16..24 synced_lsn u64 |
//!   24..28 flags (bit 0 only) | payload
//! ```
//!
//! `synced_lsn` lets recovery tell a torn tail from corruption even when the disk persisted
//! unsynced pages out of order: damage at LSN `m` followed by valid records whose `synced_lsn`
//! is below `m` lies in the window that was never synced (nothing there was acknowledged);
//! a later record or seal with `synced_lsn >= m` proves `m` had been durable, so its damage is
//! corruption.
//!
//! The CRC covers the length, the LSN and the flags as well as the payload, and is salted per
//! segment, so bytes left from anything else never validate. A batch is the run of records
//! with `BATCH_CONTINUES` up to and including the first record without it; recovery keeps a
//! batch whole or drops it whole.

/// Segment file magic.
pub const MAGIC: [u8; 8] = *b"\x89WAL\r\n\x1a\n";
/// Format version of segments written now.
pub const VERSION: u32 = 2;
/// The previous format version, still read (no header CRC, no seals).
pub const VERSION_1: u32 = 1;
/// Bytes in a segment header.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Bytes in a record header.
pub const RECORD_HEADER_LEN: usize = 28;
/// Record flag: the next record belongs to the same batch.
pub const BATCH_CONTINUES: u32 = 1;
/// Record flag (format 2): a seal, with no payload and the LSN of the record before it,
/// written after an fsync returned: every record before it in the segment is durable. The
/// log seals its last segment when it closes.
pub const SEAL: u32 = 2;
/// `synced_delta` value meaning "no LSN known durable" (`synced_lsn` 0).
pub const NOTHING_SYNCED: u32 = u32::MAX;
/// The largest payload the format allows (and the most `Options::max_record_bytes` may be).
/// Readers bound lengths by this, not by the options of the day, so a log written with a
/// larger limit still reads after the limit is lowered.
pub const MAX_RECORD_LIMIT: u32 = 1 << 30;
/// The longest segment the format allows (4 GiB): writers keep `max_segment_bytes` and any
/// one batch within it, and a reader refuses a longer file as corruption before reading or
/// allocating anything for it, whatever its options.
pub const MAX_SEGMENT_LEN: u64 = 1 << 32;
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
/// Record: the header CRC, u32.
pub const RECORD_HEADER_CRC: usize = 8;
/// Record: the LSN, u64.
pub const RECORD_LSN: usize = 12;
/// Record: lsn - synced_lsn, u32.
pub const RECORD_SYNCED_DELTA: usize = 20;
/// Record: flags, u32.
pub const RECORD_FLAGS: usize = 24;

/// Format 1's record layout (segments written before format 2).
pub mod v1 {
    /// Record: the LSN, u64.
    pub const RECORD_LSN: usize = 8;
    /// Record: synced_lsn, u64.
    pub const RECORD_SYNCED_LSN: usize = 16;
    /// Record: flags, u32.
    pub const RECORD_FLAGS: usize = 24;
}

const _: () = assert!(HEADER_VERSION == HEADER_MAGIC + 8);
const _: () = assert!(HEADER_SALT == HEADER_VERSION + 4);
const _: () = assert!(HEADER_FIRST_LSN == HEADER_SALT + 4);
const _: () = assert!(HEADER_RESERVED == HEADER_FIRST_LSN + 8);
const _: () = assert!(HEADER_CRC == HEADER_RESERVED + 4);
const _: () = assert!(SEGMENT_HEADER_LEN == HEADER_CRC + 4);
const _: () = assert!(RECORD_CRC == RECORD_LEN + 4);
const _: () = assert!(RECORD_HEADER_CRC == RECORD_CRC + 4);
const _: () = assert!(RECORD_LSN == RECORD_HEADER_CRC + 4);
const _: () = assert!(RECORD_SYNCED_DELTA == RECORD_LSN + 8);
const _: () = assert!(RECORD_FLAGS == RECORD_SYNCED_DELTA + 4);
const _: () = assert!(RECORD_HEADER_LEN == RECORD_FLAGS + 4);
const _: () = assert!(v1::RECORD_LSN == RECORD_CRC + 4);
const _: () = assert!(v1::RECORD_SYNCED_LSN == v1::RECORD_LSN + 8);
const _: () = assert!(v1::RECORD_FLAGS == v1::RECORD_SYNCED_LSN + 8);
const _: () = assert!(RECORD_HEADER_LEN == v1::RECORD_FLAGS + 4);

/// The LSN field of the record header (format `version`) at the start of `b`, without
/// checking the record (recovery uses it to skip candidates cheaply before a full decode).
pub fn peek_lsn(b: &[u8], version: u32) -> Option<Lsn> {
    u64_at(
        b,
        if version == VERSION_1 {
            v1::RECORD_LSN
        } else {
            RECORD_LSN
        },
    )
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
        if version != VERSION && version != VERSION_1 {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        Ok(SegmentHeader {
            version,
            salt: u32_at(b, HEADER_SALT).ok_or(HeaderError::Short)?,
            first_lsn: u64_at(b, HEADER_FIRST_LSN).ok_or(HeaderError::Short)?,
        })
    }
}

/// What the log tells [`durable_fs::DurableFs::inspect_store`] about its directories: its
/// name (`wal`), its format, and the files it owns (segments, the chain, their temporaries).
pub const STORE_KIND: durable_fs::StoreKind = durable_fs::StoreKind {
    engine: "wal",
    format: VERSION,
    owns,
    magic: |name| parse_segment_name(name).map(|_| &MAGIC[..]),
};

/// True for the names of the log's own files.
fn owns(name: &str) -> bool {
    let stem = name.strip_suffix(durable_fs::TEMP_SUFFIX).unwrap_or(name);
    parse_segment_name(stem).is_some() || stem == crate::chain::CHAIN_FILE
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

fn salted_crc(salt: u32, parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&salt.to_le_bytes());
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// The header CRC of a format-2 record header `h`.
fn header_crc(salt: u32, h: &[u8]) -> u32 {
    salted_crc(
        salt,
        &[
            h.get(RECORD_LEN..RECORD_CRC).unwrap_or_default(),
            h.get(RECORD_LSN..RECORD_HEADER_LEN).unwrap_or_default(),
        ],
    )
}

/// Appends the encoding of one record (current format) to `out`; `synced_lsn` is the highest
/// LSN known durable as it is written (above `lsn` it is stored as `lsn`).
pub fn encode_record(
    out: &mut Vec<u8>,
    salt: u32,
    lsn: Lsn,
    synced_lsn: Lsn,
    flags: u32,
    payload: &[u8],
) {
    let len = u32::try_from(payload.len())
        .expect("payload length is checked against max_record_bytes (a u32) before encoding");
    // A gap too wide for 32 bits reads back as "nothing known durable": a record never
    // claims more was durable than was.
    let delta = u32::try_from(lsn.saturating_sub(synced_lsn)).unwrap_or(NOTHING_SYNCED);
    fn put(h: &mut [u8; RECORD_HEADER_LEN], at: usize, bytes: &[u8]) {
        if let Some(dst) = h.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }
    let mut h = [0u8; RECORD_HEADER_LEN];
    put(&mut h, RECORD_LEN, &len.to_le_bytes());
    put(&mut h, RECORD_LSN, &lsn.to_le_bytes());
    put(&mut h, RECORD_SYNCED_DELTA, &delta.to_le_bytes());
    put(&mut h, RECORD_FLAGS, &flags.to_le_bytes());
    let hcrc = header_crc(salt, &h);
    put(&mut h, RECORD_HEADER_CRC, &hcrc.to_le_bytes());
    let crc = salted_crc(
        salt,
        &[
            h.get(RECORD_LEN..RECORD_CRC).unwrap_or_default(),
            h.get(RECORD_HEADER_CRC..).unwrap_or_default(),
            payload,
        ],
    );
    put(&mut h, RECORD_CRC, &crc.to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
}

/// Appends a seal to `out`: no payload, `lsn` the last record's, saying every record before
/// it is durable. Write it only after the fsync that made them durable returned.
pub fn encode_seal(out: &mut Vec<u8>, salt: u32, lsn: Lsn) {
    encode_record(out, salt, lsn, lsn, SEAL, b"");
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

    /// True for a seal (not a record of the log: no payload, the LSN of the one before).
    pub fn is_seal(&self) -> bool {
        self.flags & SEAL != 0
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

/// The payload length the record header at the start of `b` claims, unchecked.
pub fn claimed_len(b: &[u8]) -> u32 {
    u32_at(b, RECORD_LEN).unwrap_or(0)
}

/// True when a record of format `version` may start at the start of `b`, checked in O(1)
/// (no payload is read): known flags, a length within `max_len` that fits in `b`, and in
/// format 2 the header CRC. Recovery tries a full decode only where this holds.
pub fn plausible_record(b: &[u8], salt: u32, version: u32, max_len: u32) -> bool {
    let remaining = (b.len() as u64).saturating_sub(RECORD_HEADER_LEN as u64);
    plausible_header(b, salt, version, max_len, remaining)
}

/// [`plausible_record`] for a record header `b` followed by `remaining` bytes of segment.
pub fn plausible_header(b: &[u8], salt: u32, version: u32, max_len: u32, remaining: u64) -> bool {
    let Some(h) = b.first_chunk::<RECORD_HEADER_LEN>() else {
        return false;
    };
    let (len, flags) = (
        u32_at(h, RECORD_LEN).unwrap_or(0),
        u32_at(h, RECORD_FLAGS).unwrap_or(0),
    );
    let known = if version == VERSION_1 {
        BATCH_CONTINUES
    } else {
        BATCH_CONTINUES | SEAL
    };
    if flags & !known != 0 || len > max_len || u64::from(len) > remaining {
        return false;
    }
    version == VERSION_1 || u32_at(h, RECORD_HEADER_CRC) == Some(header_crc(salt, h))
}

/// A checked record header: what [`decode_header`] returns before the payload is read (its
/// CRC is checked with [`RecordHeader::crc_start`] and [`RecordHeader::crc_matches`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Payload length.
    pub len: u32,
    /// Its LSN.
    pub lsn: Lsn,
    /// The highest LSN known durable when it was written.
    pub synced_lsn: Lsn,
    /// Its flags.
    pub flags: u32,
    /// The stored record CRC.
    crc: u32,
}

impl RecordHeader {
    /// Bytes the record occupies on disk.
    pub fn encoded_len(&self) -> u64 {
        RECORD_HEADER_LEN as u64 + u64::from(self.len)
    }

    /// True for a seal.
    pub fn is_seal(&self) -> bool {
        self.flags & SEAL != 0
    }

    /// A hasher fed with what the record CRC covers of the header `h` (the one this was
    /// decoded from): feed it the payload, then [`RecordHeader::crc_matches`].
    pub fn crc_start(&self, salt: u32, h: &[u8]) -> crc32fast::Hasher {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&salt.to_le_bytes());
        hasher.update(h.get(RECORD_LEN..RECORD_CRC).unwrap_or_default());
        hasher.update(h.get(RECORD_CRC + 4..RECORD_HEADER_LEN).unwrap_or_default());
        hasher
    }

    /// Checks the record CRC over what `hasher` was fed.
    pub fn crc_matches(&self, hasher: crc32fast::Hasher) -> Result<(), DecodeError> {
        let actual = hasher.finalize();
        if actual == self.crc {
            return Ok(());
        }
        Err(DecodeError::ChecksumMismatch {
            expected: self.crc,
            actual,
        })
    }
}

/// Decodes and checks the record header of format `version` at the start of `b` (in format
/// 2 by its own CRC; the length bounded by `max_len`; known flags; a seal's shape); total.
/// Nothing after the header is read.
pub fn decode_header(
    b: &[u8],
    salt: u32,
    version: u32,
    max_len: u32,
) -> Result<RecordHeader, DecodeError> {
    let Some(header) = b.first_chunk::<RECORD_HEADER_LEN>() else {
        return Err(DecodeError::Truncated {
            need: RECORD_HEADER_LEN as u64,
        });
    };
    let v1 = version == VERSION_1;
    if !v1 {
        let expected = u32_at(header, RECORD_HEADER_CRC).unwrap_or(0);
        let actual = header_crc(salt, header);
        if expected != actual {
            return Err(DecodeError::ChecksumMismatch { expected, actual });
        }
    }
    let len = u32_at(header, RECORD_LEN).unwrap_or(0);
    if len > max_len {
        return Err(DecodeError::LengthTooLarge { len, max: max_len });
    }
    let flags = u32_at(header, RECORD_FLAGS).unwrap_or(0);
    let known = if v1 {
        BATCH_CONTINUES
    } else {
        BATCH_CONTINUES | SEAL
    };
    if flags & !known != 0 || (flags & SEAL != 0 && (flags != SEAL || len != 0)) {
        return Err(DecodeError::BadFlags(flags));
    }
    let (lsn, synced_lsn) = if v1 {
        let lsn = u64_at(header, v1::RECORD_LSN).unwrap_or(0);
        (lsn, u64_at(header, v1::RECORD_SYNCED_LSN).unwrap_or(0))
    } else {
        let lsn = u64_at(header, RECORD_LSN).unwrap_or(0);
        let synced = match u32_at(header, RECORD_SYNCED_DELTA).unwrap_or(NOTHING_SYNCED) {
            NOTHING_SYNCED => 0,
            d => lsn.saturating_sub(u64::from(d)),
        };
        (lsn, synced)
    };
    Ok(RecordHeader {
        len,
        lsn,
        synced_lsn,
        flags,
        crc: u32_at(header, RECORD_CRC).unwrap_or(0),
    })
}

/// Decodes the record of format `version` at the start of `b`. Total: any bytes give a record
/// or an error. In format 2 the header is checked by its own CRC first; the length is
/// bounded by `max_len` before anything is read past the header.
pub fn decode_record(
    b: &[u8],
    salt: u32,
    version: u32,
    max_len: u32,
) -> Result<RecordRef<'_>, DecodeError> {
    let hdr = decode_header(b, salt, version, max_len)?;
    let total = RECORD_HEADER_LEN + hdr.len as usize;
    let Some(payload) = b.get(RECORD_HEADER_LEN..total) else {
        return Err(DecodeError::Truncated { need: total as u64 });
    };
    let mut hasher = hdr.crc_start(salt, b);
    hasher.update(payload);
    hdr.crc_matches(hasher)?;
    Ok(RecordRef {
        lsn: hdr.lsn,
        synced_lsn: hdr.synced_lsn,
        flags: hdr.flags,
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
        let r = decode_record(&buf, 7, VERSION, 1024).unwrap();
        assert_eq!(
            (r.lsn, r.synced_lsn, r.flags, r.payload),
            (9, 4, BATCH_CONTINUES, &b"payload"[..])
        );
        assert_eq!(r.encoded_len(), buf.len());
        assert!(plausible_record(&buf, 7, VERSION, 1024));
        assert!(
            decode_record(&buf, 8, VERSION, 1024).is_err(),
            "another segment's salt"
        );
        for i in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(decode_record(&b, 7, VERSION, 1024).is_err(), "bit {i}");
            let in_header =
                i / 8 < RECORD_HEADER_LEN && !(RECORD_CRC..RECORD_HEADER_CRC).contains(&(i / 8));
            if in_header {
                assert!(!plausible_record(&b, 7, VERSION, 1024), "bit {i}");
            }
        }
    }

    #[test]
    fn seals_and_synced_deltas() {
        let mut buf = Vec::new();
        encode_seal(&mut buf, 3, 41);
        let r = decode_record(&buf, 3, VERSION, 0).unwrap();
        assert!(r.is_seal());
        assert_eq!((r.lsn, r.synced_lsn, r.payload), (41, 41, &b""[..]));
        buf.clear();
        encode_record(&mut buf, 3, 41, 41, SEAL, b"x");
        assert!(
            decode_record(&buf, 3, VERSION, 10).is_err(),
            "a seal with a payload"
        );
        buf.clear();
        encode_record(&mut buf, 3, 10 + (1 << 33), 10, 0, b"x");
        let r = decode_record(&buf, 3, VERSION, 10).unwrap();
        assert_eq!(r.synced_lsn, 0, "a gap past 32 bits claims nothing");
    }

    #[test]
    fn format_1_records_still_decode() {
        let (salt, lsn, synced) = (5u32, 12u64, 11u64);
        let mut h = [0u8; RECORD_HEADER_LEN];
        h[RECORD_LEN..4].copy_from_slice(&2u32.to_le_bytes());
        h[v1::RECORD_LSN..v1::RECORD_LSN + 8].copy_from_slice(&lsn.to_le_bytes());
        h[v1::RECORD_SYNCED_LSN..v1::RECORD_SYNCED_LSN + 8].copy_from_slice(&synced.to_le_bytes());
        let crc = salted_crc(salt, &[&h[0..4], &h[8..], b"ab"]);
        h[RECORD_CRC..RECORD_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        let mut b = h.to_vec();
        b.extend_from_slice(b"ab");
        let r = decode_record(&b, salt, VERSION_1, 10).unwrap();
        assert_eq!((r.lsn, r.synced_lsn, r.payload), (12, 11, &b"ab"[..]));
        assert_eq!(peek_lsn(&b, VERSION_1), Some(12));
        assert!(decode_record(&b, salt, VERSION, 10).is_err());
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
