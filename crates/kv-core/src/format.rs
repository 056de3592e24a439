//! The on-disk formats both key-value engines share, byte by byte (also in
//! `docs/FORMAT-kv-record.md`, whose offset tables a test compares with the constants here).
//! All integers are little-endian and fixed width; CRCs are CRC-32 (IEEE).
//!
//! ```text
//! file header (32 bytes), at the start of every data file, segment, hint and index snapshot
//!   0..8    magic        the engine's and the file type's (bitcask data, hint; lsm-hash segment)
//!   8..12   version      u32 = 2 (1: files written before format 2, still read)
//!   12..16  salt         u32, random per data file, mixed into every record CRC
//!                        (a hint carries the salt of the data file it describes)
//!   16..24  file_id      u64, equals the number in the name
//!   24..28  kind         u32: 0 written by the writer, 1 merge output (see FileKind)
//!   28..32  header_crc   u32, CRC of bytes 0..28
//! record (format 2), back to back after the header:
//!   0..4    crc          u32, CRC(salt ++ bytes 4..32 ++ key ++ value)
//!   4..8    header_crc   u32, CRC(salt ++ bytes 8..32): a candidate offset is rejected in O(1)
//!   8..16   seq          u64, the write's logical timestamp (unique, increasing)
//!   16..20  key_len      u32
//!   20..24  value_len    u32 (0 for a tombstone or a seal)
//!   24..28  flags        u32: bit 0 TOMBSTONE, bit 1 BATCH_CONTINUES, bit 2 SEAL; others 0
//!   28..32  synced_delta u32, seq - synced_seq (u32::MAX: synced_seq 0, nothing known);
//!                        synced_seq is the highest seq known durable when this was written
//!   32..    key, then value
//! record (format 1): 0..4 crc | 4..12 seq | 12..16 key_len | 16..20 value_len | 20..24 flags |
//!   24..32 synced_seq u64 | key | value; the crc covers salt ++ bytes 4..32 ++ key ++ value
//! hint entry, back to back after a hint header; then a trailer
//!   0..8 seq u64 | 8..16 offset u64 (of the record in the data file) | 16..20 key_len u32 |
//!   20..24 value_len u32 | 24..28 flags u32 | 28.. key
//!   trailer (format 2): data_len u64 (the described data file's length), entry_count u64,
//!   crc u32 = CRC of every byte before it. Format 1: entry_count u64, crc u32.
//! ```

use crate::error::CorruptionKind;

/// Format version of files written now.
pub const VERSION: u32 = 2;
/// The previous format version, still read: its records have no header CRC and no seals,
/// its hints no data length (see `docs/FORMAT-kv-record.md`).
pub const VERSION_1: u32 = 1;

/// Bytes in a file header.
pub const FILE_HEADER_LEN: usize = 32;
/// File header: the magic, 8 bytes.
pub const HEADER_MAGIC: usize = 0;
/// File header: the format version, u32.
pub const HEADER_VERSION: usize = 8;
/// File header: the salt, u32.
pub const HEADER_SALT: usize = 12;
/// File header: the file id, u64.
pub const HEADER_FILE_ID: usize = 16;
/// File header: the [`FileKind`], u32.
pub const HEADER_KIND: usize = 24;
/// File header: the CRC of the bytes before it, u32.
pub const HEADER_CRC: usize = 28;

/// Bytes in a record header (before the key), in both versions.
pub const RECORD_HEADER_LEN: usize = 32;
/// Record: CRC of the record, u32.
pub const RECORD_CRC: usize = 0;
/// Record: CRC of the header (format 2), u32.
pub const RECORD_HEADER_CRC: usize = 4;
/// Record: seq, u64.
pub const RECORD_SEQ: usize = 8;
/// Record: key length, u32.
pub const RECORD_KEY_LEN: usize = 16;
/// Record: value length, u32.
pub const RECORD_VALUE_LEN: usize = 20;
/// Record: flags, u32.
pub const RECORD_FLAGS: usize = 24;
/// Record: seq - synced_seq, u32.
pub const RECORD_SYNCED_DELTA: usize = 28;

/// `synced_delta` value meaning "no seq known durable" (`synced_seq` 0): what a gap wider
/// than 32 bits is stored as.
pub const NOTHING_SYNCED: u32 = u32::MAX;

/// Format 1's record layout (files written before format 2).
pub mod v1 {
    /// Record: CRC, u32.
    pub const RECORD_CRC: usize = 0;
    /// Record: seq, u64.
    pub const RECORD_SEQ: usize = 4;
    /// Record: key length, u32.
    pub const RECORD_KEY_LEN: usize = 12;
    /// Record: value length, u32.
    pub const RECORD_VALUE_LEN: usize = 16;
    /// Record: flags, u32.
    pub const RECORD_FLAGS: usize = 20;
    /// Record: synced_seq, u64.
    pub const RECORD_SYNCED_SEQ: usize = 24;
    /// Bytes in a hint trailer (entry count u64, CRC u32).
    pub const HINT_TRAILER_LEN: usize = 12;
}

/// Bytes in a hint entry before the key.
pub const HINT_ENTRY_LEN: usize = 28;
/// Hint entry: seq, u64.
pub const HINT_SEQ: usize = 0;
/// Hint entry: offset of the record, u64.
pub const HINT_OFFSET: usize = 8;
/// Hint entry: key length, u32.
pub const HINT_KEY_LEN: usize = 16;
/// Hint entry: value length, u32.
pub const HINT_VALUE_LEN: usize = 20;
/// Hint entry: flags, u32.
pub const HINT_FLAGS: usize = 24;
/// Bytes in the hint trailer (data length u64, entry count u64, CRC u32).
pub const HINT_TRAILER_LEN: usize = 20;

/// Record flag: a delete.
pub const TOMBSTONE: u32 = 1;
/// Record flag: the next record belongs to the same batch.
pub const BATCH_CONTINUES: u32 = 2;
/// Record flag (format 2): a seal, written after an fsync returned, with no key or value;
/// its `synced_seq` says every record before it in the file was durable. The writer seals a
/// file when it closes the store and when it rotates to a new file.
pub const SEAL: u32 = 4;

const _: () = assert!(HEADER_VERSION == HEADER_MAGIC + 8);
const _: () = assert!(HEADER_SALT == HEADER_VERSION + 4);
const _: () = assert!(HEADER_FILE_ID == HEADER_SALT + 4);
const _: () = assert!(HEADER_KIND == HEADER_FILE_ID + 8);
const _: () = assert!(HEADER_CRC == HEADER_KIND + 4);
const _: () = assert!(FILE_HEADER_LEN == HEADER_CRC + 4);
const _: () = assert!(RECORD_HEADER_CRC == RECORD_CRC + 4);
const _: () = assert!(RECORD_SEQ == RECORD_HEADER_CRC + 4);
const _: () = assert!(RECORD_KEY_LEN == RECORD_SEQ + 8);
const _: () = assert!(RECORD_VALUE_LEN == RECORD_KEY_LEN + 4);
const _: () = assert!(RECORD_FLAGS == RECORD_VALUE_LEN + 4);
const _: () = assert!(RECORD_SYNCED_DELTA == RECORD_FLAGS + 4);
const _: () = assert!(RECORD_HEADER_LEN == RECORD_SYNCED_DELTA + 4);
const _: () = assert!(v1::RECORD_SEQ == v1::RECORD_CRC + 4);
const _: () = assert!(v1::RECORD_KEY_LEN == v1::RECORD_SEQ + 8);
const _: () = assert!(v1::RECORD_VALUE_LEN == v1::RECORD_KEY_LEN + 4);
const _: () = assert!(v1::RECORD_FLAGS == v1::RECORD_VALUE_LEN + 4);
const _: () = assert!(v1::RECORD_SYNCED_SEQ == v1::RECORD_FLAGS + 4);
const _: () = assert!(RECORD_HEADER_LEN == v1::RECORD_SYNCED_SEQ + 8);
const _: () = assert!(HINT_OFFSET == HINT_SEQ + 8);
const _: () = assert!(HINT_KEY_LEN == HINT_OFFSET + 8);
const _: () = assert!(HINT_VALUE_LEN == HINT_KEY_LEN + 4);
const _: () = assert!(HINT_FLAGS == HINT_VALUE_LEN + 4);
const _: () = assert!(HINT_ENTRY_LEN == HINT_FLAGS + 4);

/// The little-endian u32 at `at`, if `b` is long enough.
pub(crate) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(*b.get(at..)?.first_chunk::<4>()?))
}

/// The little-endian u64 at `at`, if `b` is long enough.
pub(crate) fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(*b.get(at..)?.first_chunk::<8>()?))
}

/// Writes `bytes` at `at` in `out` (which the callers size with the constants above).
fn put(out: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = out.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// Who wrote a data file: header bytes 24..28.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// `0`: appended to by the writer (the newest such file may end in a torn write). Also
    /// hint files, index snapshots and lsm-hash compaction outputs.
    Written,
    /// `1`: a bitcask merge output, complete and synced before the merge committed, so never
    /// torn (it does not count as the newest written file at open).
    Merged,
}

impl FileKind {
    fn to_u32(self) -> u32 {
        match self {
            FileKind::Written => 0,
            FileKind::Merged => 1,
        }
    }

    fn from_u32(v: u32) -> Option<FileKind> {
        match v {
            0 => Some(FileKind::Written),
            1 => Some(FileKind::Merged),
            _ => None,
        }
    }
}

/// A file header (data file, segment, hint, index snapshot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// The format version ([`VERSION`] for files written now, [`VERSION_1`] for older ones).
    pub version: u32,
    /// The salt (of this data file, or of the data file a hint describes).
    pub salt: u32,
    /// The file id.
    pub file_id: u64,
    /// Who wrote it.
    pub kind: FileKind,
}

impl FileHeader {
    /// A header of the current version and kind [`FileKind::Written`].
    pub fn new(salt: u32, file_id: u64) -> FileHeader {
        FileHeader {
            version: VERSION,
            salt,
            file_id,
            kind: FileKind::Written,
        }
    }

    /// Encodes with `magic`.
    pub fn encode(&self, magic: &[u8; 8]) -> [u8; FILE_HEADER_LEN] {
        let mut out = [0u8; FILE_HEADER_LEN];
        put(&mut out, HEADER_MAGIC, magic);
        put(&mut out, HEADER_VERSION, &self.version.to_le_bytes());
        put(&mut out, HEADER_SALT, &self.salt.to_le_bytes());
        put(&mut out, HEADER_FILE_ID, &self.file_id.to_le_bytes());
        put(&mut out, HEADER_KIND, &self.kind.to_u32().to_le_bytes());
        let crc = crc32fast::hash(out.get(..HEADER_CRC).unwrap_or_default());
        put(&mut out, HEADER_CRC, &crc.to_le_bytes());
        out
    }

    /// The kind field of a header, read without checking anything else (at open, to tell
    /// merge outputs from written files even when a header is damaged). `None` for a short
    /// header or an unknown value.
    pub fn peek_kind(b: &[u8]) -> Option<FileKind> {
        FileKind::from_u32(u32_at(b, HEADER_KIND)?)
    }

    /// Decodes and checks a header with `magic`; total over any input.
    pub fn decode(b: &[u8], magic: &[u8; 8]) -> Result<FileHeader, CorruptionKind> {
        let b = b
            .get(..FILE_HEADER_LEN)
            .ok_or(CorruptionKind::ShortHeader)?;
        if b.get(HEADER_MAGIC..HEADER_VERSION) != Some(&magic[..]) {
            return Err(CorruptionKind::BadMagic);
        }
        let stored = u32_at(b, HEADER_CRC).ok_or(CorruptionKind::ShortHeader)?;
        if crc32fast::hash(b.get(..HEADER_CRC).unwrap_or_default()) != stored {
            return Err(CorruptionKind::BadHeaderChecksum);
        }
        let field = |at| u32_at(b, at).ok_or(CorruptionKind::ShortHeader);
        let version = field(HEADER_VERSION)?;
        if version != VERSION && version != VERSION_1 {
            return Err(CorruptionKind::UnsupportedVersion(version));
        }
        let kind = field(HEADER_KIND)?;
        Ok(FileHeader {
            version,
            salt: field(HEADER_SALT)?,
            file_id: u64_at(b, HEADER_FILE_ID).ok_or(CorruptionKind::ShortHeader)?,
            kind: FileKind::from_u32(kind).ok_or(CorruptionKind::BadFileKind(kind))?,
        })
    }
}

/// Where the fields of a record header are, in one format version.
#[derive(Clone, Copy)]
struct Layout {
    seq: usize,
    key_len: usize,
    value_len: usize,
    flags: usize,
    /// The CRC covers the header from here on.
    crc_from: usize,
    known_flags: u32,
}

impl Layout {
    fn of(version: u32) -> Layout {
        if version == VERSION_1 {
            Layout {
                seq: v1::RECORD_SEQ,
                key_len: v1::RECORD_KEY_LEN,
                value_len: v1::RECORD_VALUE_LEN,
                flags: v1::RECORD_FLAGS,
                crc_from: v1::RECORD_SEQ,
                known_flags: TOMBSTONE | BATCH_CONTINUES,
            }
        } else {
            Layout {
                seq: RECORD_SEQ,
                key_len: RECORD_KEY_LEN,
                value_len: RECORD_VALUE_LEN,
                flags: RECORD_FLAGS,
                crc_from: RECORD_HEADER_CRC,
                known_flags: TOMBSTONE | BATCH_CONTINUES | SEAL,
            }
        }
    }
}

fn salted_crc(salt: u32, parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&salt.to_le_bytes());
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// Bytes a record of `key_len` and `value_len` takes on disk (either version).
pub fn record_len(key_len: usize, value_len: usize) -> u64 {
    (RECORD_HEADER_LEN + key_len + value_len) as u64
}

/// Appends one record to `out` in the current format. Lengths must already be checked
/// against the limits (the engines check them before encoding; a longer key or value is a
/// caller's bug). `synced_seq` above `seq` is a caller's bug too; it is stored as `seq`.
pub fn encode_record(
    out: &mut Vec<u8>,
    salt: u32,
    seq: u64,
    synced_seq: u64,
    flags: u32,
    key: &[u8],
    value: &[u8],
) {
    let mut h = [0u8; RECORD_HEADER_LEN];
    let k = u32::try_from(key.len()).expect("key length checked against max_key_bytes");
    let v = u32::try_from(value.len()).expect("value length checked against max_value_bytes");
    // A gap too wide for 32 bits is stored as `u32::MAX`, read back as "nothing known
    // durable": a record never claims more was durable than was.
    let delta = u32::try_from(seq.saturating_sub(synced_seq)).unwrap_or(NOTHING_SYNCED);
    put(&mut h, RECORD_SEQ, &seq.to_le_bytes());
    put(&mut h, RECORD_KEY_LEN, &k.to_le_bytes());
    put(&mut h, RECORD_VALUE_LEN, &v.to_le_bytes());
    put(&mut h, RECORD_FLAGS, &flags.to_le_bytes());
    put(&mut h, RECORD_SYNCED_DELTA, &delta.to_le_bytes());
    let hcrc = salted_crc(salt, &[h.get(RECORD_SEQ..).unwrap_or_default()]);
    put(&mut h, RECORD_HEADER_CRC, &hcrc.to_le_bytes());
    let crc = salted_crc(
        salt,
        &[h.get(RECORD_HEADER_CRC..).unwrap_or_default(), key, value],
    );
    put(&mut h, RECORD_CRC, &crc.to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

/// Appends a seal to `out`: a record with flag [`SEAL`], no key or value, `seq` the file's
/// last record's, saying every record before it was durable. Write it only after the fsync
/// that made them durable has returned.
pub fn encode_seal(out: &mut Vec<u8>, salt: u32, seq: u64) {
    encode_record(out, salt, seq, seq, SEAL, b"", b"");
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

    /// True for a seal (not a write: no key, no value).
    pub fn is_seal(&self) -> bool {
        self.flags & SEAL != 0
    }
}

/// Why bytes are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The buffer ends inside the record.
    Truncated,
    /// A corrupt record.
    Corrupt(CorruptionKind),
}

impl From<DecodeError> for CorruptionKind {
    fn from(e: DecodeError) -> CorruptionKind {
        match e {
            DecodeError::Truncated => CorruptionKind::TruncatedRecord,
            DecodeError::Corrupt(k) => k,
        }
    }
}

/// True when a record of format `version` may start at the start of `b`, checked in O(1)
/// (no payload is read): known flags, lengths that fit in `b`, and in format 2 the header
/// CRC. Recovery tries a full decode only where this holds, so looking for the next valid
/// record after damage costs a few instructions per byte, not a payload CRC.
pub fn plausible_record(b: &[u8], salt: u32, version: u32) -> bool {
    let remaining = (b.len() as u64).saturating_sub(RECORD_HEADER_LEN as u64);
    plausible_header(b, salt, version, remaining)
}

/// [`plausible_record`] for a record header `b` followed by `remaining` bytes of file.
pub fn plausible_header(b: &[u8], salt: u32, version: u32, remaining: u64) -> bool {
    let l = Layout::of(version);
    let (Some(h), Some(flags), Some(k), Some(v)) = (
        b.get(..RECORD_HEADER_LEN),
        u32_at(b, l.flags),
        u32_at(b, l.key_len),
        u32_at(b, l.value_len),
    ) else {
        return false;
    };
    if flags & !l.known_flags != 0 || (k as u64 + v as u64) > remaining {
        return false;
    }
    version == VERSION_1
        || u32_at(h, RECORD_HEADER_CRC)
            == Some(salted_crc(salt, &[h.get(RECORD_SEQ..).unwrap_or_default()]))
}

/// The key and value bytes the record header at the start of `b` claims (what a full
/// decode would checksum), unchecked.
pub fn claimed_len(b: &[u8], version: u32) -> Option<u64> {
    let l = Layout::of(version);
    Some(u64::from(u32_at(b, l.key_len)?) + u64::from(u32_at(b, l.value_len)?))
}

/// A checked record header: what [`decode_header`] returns before the key and value are
/// read (their CRC is checked with [`RecordHeader::crc_start`] and
/// [`RecordHeader::crc_matches`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Logical timestamp.
    pub seq: u64,
    /// The highest seq known durable when the record was written.
    pub synced_seq: u64,
    /// Flags.
    pub flags: u32,
    /// Key length.
    pub key_len: u32,
    /// Value length.
    pub value_len: u32,
    /// The stored record CRC.
    crc: u32,
    /// The record CRC covers the header from here on.
    crc_from: usize,
}

impl RecordHeader {
    /// Key and value bytes after the header.
    pub fn body_len(&self) -> u64 {
        u64::from(self.key_len) + u64::from(self.value_len)
    }

    /// Bytes on disk.
    pub fn encoded_len(&self) -> u64 {
        RECORD_HEADER_LEN as u64 + self.body_len()
    }

    /// True for a seal.
    pub fn is_seal(&self) -> bool {
        self.flags & SEAL != 0
    }

    /// A hasher fed with what the record CRC covers of the header `h` (the one this was
    /// decoded from): feed it the key and value, then [`RecordHeader::crc_matches`].
    pub fn crc_start(&self, salt: u32, h: &[u8]) -> crc32fast::Hasher {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&salt.to_le_bytes());
        hasher.update(h.get(self.crc_from..RECORD_HEADER_LEN).unwrap_or_default());
        hasher
    }

    /// Checks the record CRC over what `hasher` was fed.
    pub fn crc_matches(&self, hasher: crc32fast::Hasher) -> Result<(), DecodeError> {
        let actual = hasher.finalize();
        if actual == self.crc {
            return Ok(());
        }
        Err(DecodeError::Corrupt(CorruptionKind::ChecksumMismatch {
            expected: self.crc,
            actual,
        }))
    }
}

/// Decodes and checks the record header of format `version` at the start of `h` (in format
/// 2 by its own CRC; known flags; a seal's shape); total. Nothing after the header is read.
pub fn decode_header(h: &[u8], salt: u32, version: u32) -> Result<RecordHeader, DecodeError> {
    let l = Layout::of(version);
    let h = h.get(..RECORD_HEADER_LEN).ok_or(DecodeError::Truncated)?;
    let field = |at| u32_at(h, at).ok_or(DecodeError::Truncated);
    if version != VERSION_1 {
        let expected = field(RECORD_HEADER_CRC)?;
        let actual = salted_crc(salt, &[h.get(RECORD_SEQ..).unwrap_or_default()]);
        if expected != actual {
            return Err(DecodeError::Corrupt(CorruptionKind::ChecksumMismatch {
                expected,
                actual,
            }));
        }
    }
    let flags = field(l.flags)?;
    let (k, v) = (field(l.key_len)?, field(l.value_len)?);
    let bad_seal = flags & SEAL != 0 && (flags != SEAL || k != 0 || v != 0);
    if flags & !l.known_flags != 0 || bad_seal {
        return Err(DecodeError::Corrupt(CorruptionKind::BadFlags(flags)));
    }
    let seq = u64_at(h, l.seq).ok_or(DecodeError::Truncated)?;
    let synced_seq = if version == VERSION_1 {
        u64_at(h, v1::RECORD_SYNCED_SEQ).ok_or(DecodeError::Truncated)?
    } else {
        match field(RECORD_SYNCED_DELTA)? {
            NOTHING_SYNCED => 0,
            delta => seq.saturating_sub(u64::from(delta)),
        }
    };
    Ok(RecordHeader {
        seq,
        synced_seq,
        flags,
        key_len: k,
        value_len: v,
        crc: field(RECORD_CRC)?,
        crc_from: l.crc_from,
    })
}

/// Decodes the record of format `version` at the start of `b`; total. The header is
/// checked (in format 2 by its own CRC) before any length is used, and lengths are bounded
/// by `b` before any read.
pub fn decode_record(b: &[u8], salt: u32, version: u32) -> Result<Record<'_>, DecodeError> {
    let h = b.get(..RECORD_HEADER_LEN).ok_or(DecodeError::Truncated)?;
    let hdr = decode_header(h, salt, version)?;
    let key_end = RECORD_HEADER_LEN + hdr.key_len as usize;
    let end = key_end + hdr.value_len as usize;
    let key = b
        .get(RECORD_HEADER_LEN..key_end)
        .ok_or(DecodeError::Truncated)?;
    let value = b.get(key_end..end).ok_or(DecodeError::Truncated)?;
    let mut hasher = hdr.crc_start(salt, h);
    hasher.update(key);
    hasher.update(value);
    hdr.crc_matches(hasher)?;
    Ok(Record {
        seq: hdr.seq,
        synced_seq: hdr.synced_seq,
        flags: hdr.flags,
        key,
        value,
    })
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

impl HintEntry {
    /// Where the described record ends in the data file (saturating: a hostile offset near
    /// `u64::MAX` gives an end no file has, so the hint is not used).
    pub fn end(&self) -> u64 {
        self.offset
            .saturating_add(record_len(self.key.len(), self.value_len as usize))
    }
}

/// True when `entries` describe a data file of `len` bytes to its last byte: how a format-1
/// hint (which does not record the data file's length) is checked before use.
pub fn hint_covers(entries: &[HintEntry], len: u64) -> bool {
    let end = entries
        .iter()
        .map(HintEntry::end)
        .max()
        .unwrap_or(FILE_HEADER_LEN as u64);
    end == len
}

/// Encodes a whole hint file (current format) describing a data file of `data_len` bytes.
pub fn encode_hint(
    header: FileHeader,
    magic: &[u8; 8],
    entries: &[HintEntry],
    data_len: u64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(FILE_HEADER_LEN + entries.len() * 48 + HINT_TRAILER_LEN);
    let header = FileHeader {
        version: VERSION,
        ..header
    };
    out.extend_from_slice(&header.encode(magic));
    for e in entries {
        let mut h = [0u8; HINT_ENTRY_LEN];
        let k = u32::try_from(e.key.len()).expect("key length checked against max_key_bytes");
        put(&mut h, HINT_SEQ, &e.seq.to_le_bytes());
        put(&mut h, HINT_OFFSET, &e.offset.to_le_bytes());
        put(&mut h, HINT_KEY_LEN, &k.to_le_bytes());
        put(&mut h, HINT_VALUE_LEN, &e.value_len.to_le_bytes());
        put(&mut h, HINT_FLAGS, &e.flags.to_le_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(&e.key);
    }
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a whole hint file (`magic`), checking its CRC, that it describes the data file
/// with `salt` and `file_id`, and that it covers that file's `data_len` bytes exactly (so
/// nothing was appended after it was written, and no tail is torn). `None` if anything is
/// off: the caller scans the data file.
pub fn decode_hint(
    b: &[u8],
    magic: &[u8; 8],
    salt: u32,
    file_id: u64,
    data_len: u64,
) -> Option<Vec<HintEntry>> {
    let mut entries = Vec::new();
    let whole = for_each_hint_entry(b, magic, (salt, file_id, data_len), |h| {
        entries.push(HintEntry {
            seq: h.seq,
            offset: h.offset,
            value_len: h.value_len,
            flags: h.flags,
            key: h.key.to_vec(),
        });
    });
    whole.then_some(entries)
}

/// One hint entry borrowed from the hint file's bytes (see [`for_each_hint_entry`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HintRef<'a> {
    /// The record's logical timestamp.
    pub seq: u64,
    /// Offset of the record in the data file.
    pub offset: u64,
    /// The value's length.
    pub value_len: u32,
    /// The record's flags.
    pub flags: u32,
    /// The key.
    pub key: &'a [u8],
}

/// Calls `f` with every entry of the hint file `b`, borrowed (no key is copied), if and only
/// if [`decode_hint`] would accept it: everything is checked first (CRC, header, structure,
/// count, coverage), then the entries are visited, so `f` never sees part of a bad hint.
/// Returns whether it did. For loading a keydir without a vector of owned entries.
///
/// ```
/// use kv_core::format::{FileHeader, HintEntry, encode_hint, for_each_hint_entry};
/// let magic = *b"\x89TST\r\n\x1a\n";
/// let e = HintEntry { seq: 1, offset: 32, value_len: 1, flags: 0, key: b"k".to_vec() };
/// let len = 32 + kv_core::format::record_len(1, 1);
/// let hint = encode_hint(FileHeader::new(7, 1), &magic, &[e], len);
/// let mut keys = Vec::new();
/// assert!(for_each_hint_entry(&hint, &magic, (7, 1, len), |h| keys.push(h.key.to_vec())));
/// assert_eq!(keys, [b"k".to_vec()]);
/// assert!(!for_each_hint_entry(&hint, &magic, (8, 1, len), |_| panic!("another file's")));
/// ```
pub fn for_each_hint_entry<'a>(
    b: &'a [u8],
    magic: &[u8; 8],
    (salt, file_id, data_len): (u32, u64, u64),
    mut f: impl FnMut(HintRef<'a>),
) -> bool {
    let walk = |f: &mut dyn FnMut(HintRef<'a>)| -> Option<()> {
        let header = FileHeader::decode(b, magic).ok()?;
        if header.salt != salt || header.file_id != file_id {
            return None;
        }
        let trailer = if header.version == VERSION_1 {
            v1::HINT_TRAILER_LEN
        } else {
            HINT_TRAILER_LEN
        };
        let body_end = b.len().checked_sub(trailer)?;
        let crc_at = b.len().checked_sub(4)?;
        if crc32fast::hash(b.get(..crc_at)?) != u32_at(b, crc_at)? {
            return None;
        }
        let count = u64_at(b, crc_at - 8)?;
        if header.version != VERSION_1 && u64_at(b, body_end)? != data_len {
            return None;
        }
        let (mut pos, mut n, mut end) = (FILE_HEADER_LEN, 0u64, FILE_HEADER_LEN as u64);
        while pos < body_end {
            let e = b.get(pos..pos + HINT_ENTRY_LEN)?;
            let k = u32_at(e, HINT_KEY_LEN)? as usize;
            let key = b.get(pos + HINT_ENTRY_LEN..pos + HINT_ENTRY_LEN + k)?;
            let h = HintRef {
                seq: u64_at(e, HINT_SEQ)?,
                offset: u64_at(e, HINT_OFFSET)?,
                value_len: u32_at(e, HINT_VALUE_LEN)?,
                flags: u32_at(e, HINT_FLAGS)?,
                key,
            };
            end = end.max(h.offset.saturating_add(record_len(k, h.value_len as usize)));
            f(h);
            n += 1;
            pos += HINT_ENTRY_LEN + k;
        }
        let covers = header.version != VERSION_1 || end == data_len;
        (pos == body_end && n == count && covers).then_some(())
    };
    // First everything checked, visiting nothing; then the entries.
    if walk(&mut |_| {}).is_none() {
        return false;
    }
    walk(&mut f).is_some()
}

/// What [`check_hint`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HintCheck {
    /// Intact, describing the data file, and listing exactly the records a scan found.
    Matches,
    /// Intact (its CRC holds) but describing another file (salt or id), or listing exactly the
    /// file's records under a shorter covered length: a crash leftover that opens never use
    /// (they scan the data file). Not damage.
    Stale,
    /// Damaged: its CRC or structure fails, it lists records the data file does not hold (or
    /// misses some), or it claims to cover more bytes than the file has.
    Damaged,
}

/// Checks a whole hint (or index snapshot) file `b` against the data file it would stand
/// for: `salt`, `file_id`, `data_len`, and `scanned`, the entries a CRC-checked scan of that
/// file found (in file order). What `verify` runs over every hint.
pub fn check_hint(
    b: &[u8],
    magic: &[u8; 8],
    (salt, file_id, data_len): (u32, u64, u64),
    scanned: &[HintEntry],
) -> HintCheck {
    let Ok(header) = FileHeader::decode(b, magic) else {
        return HintCheck::Damaged;
    };
    let intact = b.len().checked_sub(4).is_some_and(|at| {
        b.get(..at)
            .zip(u32_at(b, at))
            .is_some_and(|(body, crc)| crc32fast::hash(body) == crc)
    });
    if !intact {
        return HintCheck::Damaged;
    }
    if header.salt != salt || header.file_id != file_id {
        // Another file's hint (an id reused after a crash): opens never use it.
        return HintCheck::Stale;
    }
    // The length the hint says it covers (format 1 does not record one).
    let covered = if header.version == VERSION_1 {
        data_len
    } else {
        match b
            .len()
            .checked_sub(HINT_TRAILER_LEN)
            .and_then(|at| u64_at(b, at))
        {
            Some(len) => len,
            None => return HintCheck::Damaged,
        }
    };
    // Its entries must be exactly the records the file holds: a hint listing records a cut
    // file lost (or missing some) is damage, whatever lengths it records.
    match decode_hint(b, magic, salt, file_id, covered) {
        Some(mut entries) => {
            entries.sort_by_key(|e| e.offset);
            if entries != scanned || covered > data_len {
                HintCheck::Damaged
            } else if covered != data_len {
                HintCheck::Stale
            } else {
                HintCheck::Matches
            }
        }
        None => HintCheck::Damaged,
    }
}

/// The name of file `id` with extension `ext`: ten digits, a dot, the extension.
pub fn file_name(id: u64, ext: &str) -> String {
    format!("{id:010}.{ext}")
}

/// The largest file id a ten-digit name can carry.
pub const MAX_FILE_ID: u64 = 9_999_999_999;

/// True when `name` is the temporary file `DurableFs::atomic_replace` leaves (after a crash)
/// for one of the store's own names: one of `fixed` (`MERGE`, `MANIFEST`) or a file id with
/// one of `exts` (`hint`, `idx`), plus `.tmp`. A read-write open removes those and nothing
/// else: a user's `draft.tmp` in the same directory is not the store's to delete.
pub fn is_own_temp(name: &str, fixed: &[&str], exts: &[&str]) -> bool {
    let Some(stem) = name.strip_suffix(durable_fs::TEMP_SUFFIX) else {
        return false;
    };
    fixed.contains(&stem) || parse_name(stem).is_some_and(|(_, ext)| exts.contains(&ext))
}

/// The file id and extension of a store file name (ten digits, a dot, the extension).
pub fn parse_name(name: &str) -> Option<(u64, &str)> {
    let (digits, ext) = name.split_once('.')?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, ext))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: [u8; 8] = *b"\x89TST\r\n\x1a\n";

    #[test]
    fn record_round_trips_and_every_bit_flip_is_caught() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 9, 77, 70, TOMBSTONE, b"key", b"");
        encode_record(&mut buf, 9, 78, 77, 0, b"k2", b"value");
        let r = decode_record(&buf, 9, VERSION).unwrap();
        assert_eq!((r.seq, r.key, r.is_tombstone()), (77, &b"key"[..], true));
        assert_eq!(r.synced_seq, 70);
        let r2 = decode_record(&buf[r.encoded_len()..], 9, VERSION).unwrap();
        assert_eq!((r2.key, r2.value), (&b"k2"[..], &b"value"[..]));
        let one = r.encoded_len();
        for bit in 0..one * 8 {
            let mut b = buf.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_record(&b[..one], 9, VERSION).is_err(), "bit {bit}");
            if (32..RECORD_HEADER_LEN * 8).contains(&bit) {
                // Any flip in the header after the record CRC fails the O(1) check.
                assert!(!plausible_record(&b, 9, VERSION), "bit {bit}");
            }
        }
        assert!(plausible_record(&buf, 9, VERSION));
        assert_eq!(
            decode_record(&buf, 10, VERSION).map(|r| r.seq).ok(),
            None,
            "another salt"
        );
    }

    #[test]
    fn synced_seq_saturates_so_a_record_never_claims_more_than_was_durable() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 1, 10 + (1 << 33), 10, 0, b"k", b"v");
        let r = decode_record(&buf, 1, VERSION).unwrap();
        assert_eq!(r.synced_seq, 0);
        buf.clear();
        encode_record(&mut buf, 1, 5, 9, 0, b"k", b"v");
        assert_eq!(decode_record(&buf, 1, VERSION).unwrap().synced_seq, 5);
    }

    #[test]
    fn a_seal_has_no_key_or_value_and_other_flags_with_seal_are_refused() {
        let mut buf = Vec::new();
        encode_seal(&mut buf, 3, 41);
        let r = decode_record(&buf, 3, VERSION).unwrap();
        assert!(r.is_seal());
        assert_eq!(
            (r.seq, r.synced_seq, r.key, r.value),
            (41, 41, &b""[..], &b""[..])
        );
        buf.clear();
        encode_record(&mut buf, 3, 41, 41, SEAL | TOMBSTONE, b"", b"");
        assert!(decode_record(&buf, 3, VERSION).is_err());
        buf.clear();
        encode_record(&mut buf, 3, 41, 41, SEAL, b"k", b"");
        assert!(decode_record(&buf, 3, VERSION).is_err());
    }

    #[test]
    fn format_1_records_still_decode() {
        // Format 1, built by hand from the documented layout.
        let (salt, seq, synced) = (7u32, 12u64, 11u64);
        let mut h = [0u8; RECORD_HEADER_LEN];
        h[v1::RECORD_SEQ..v1::RECORD_SEQ + 8].copy_from_slice(&seq.to_le_bytes());
        h[v1::RECORD_KEY_LEN..v1::RECORD_KEY_LEN + 4].copy_from_slice(&1u32.to_le_bytes());
        h[v1::RECORD_VALUE_LEN..v1::RECORD_VALUE_LEN + 4].copy_from_slice(&2u32.to_le_bytes());
        h[v1::RECORD_SYNCED_SEQ..].copy_from_slice(&synced.to_le_bytes());
        let crc = salted_crc(salt, &[&h[v1::RECORD_SEQ..], b"k", b"vv"]);
        h[v1::RECORD_CRC..4].copy_from_slice(&crc.to_le_bytes());
        let mut b = h.to_vec();
        b.extend_from_slice(b"kvv");
        let r = decode_record(&b, salt, VERSION_1).unwrap();
        assert_eq!(
            (r.seq, r.synced_seq, r.key, r.value),
            (12, 11, &b"k"[..], &b"vv"[..])
        );
        assert!(plausible_record(&b, salt, VERSION_1));
        assert!(
            decode_record(&b, salt, VERSION).is_err(),
            "not a format 2 record"
        );
    }

    #[test]
    fn header_round_trips_with_its_kind_and_rejects_damage() {
        for kind in [FileKind::Written, FileKind::Merged] {
            let h = FileHeader {
                version: VERSION,
                salt: 3,
                file_id: 12,
                kind,
            };
            let b = h.encode(&MAGIC);
            assert_eq!(FileHeader::decode(&b, &MAGIC), Ok(h));
            for i in 0..b.len() {
                let mut d = b;
                d[i] ^= 0x10;
                assert!(FileHeader::decode(&d, &MAGIC).is_err(), "flip at {i}");
            }
        }
        assert_eq!(
            FileHeader::peek_kind(&FileHeader::new(1, 1).encode(&MAGIC)),
            Some(FileKind::Written)
        );
        // An unknown kind with a valid CRC is refused, not taken for a written file.
        let mut b = FileHeader::new(1, 1).encode(&MAGIC);
        b[HEADER_KIND] = 7;
        let crc = crc32fast::hash(&b[..HEADER_CRC]);
        b[HEADER_CRC..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            FileHeader::decode(&b, &MAGIC),
            Err(CorruptionKind::BadFileKind(7))
        );
        assert_eq!(
            FileHeader::decode(&b[..31], &MAGIC),
            Err(CorruptionKind::ShortHeader)
        );
    }

    #[test]
    fn hint_round_trips_and_rejects_damage_or_another_file() {
        let h = FileHeader::new(5, 3);
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
                offset: 69,
                value_len: 0,
                flags: TOMBSTONE,
                key: b"bb".to_vec(),
            },
        ];
        assert!(hint_covers(&entries, 103));
        assert!(!hint_covers(&entries, 104));
        // A hostile offset near u64::MAX neither panics nor wraps into a plausible end.
        let mut hostile = entries.clone();
        hostile[1].offset = u64::MAX - 10;
        assert_eq!(hostile[1].end(), u64::MAX);
        assert!(!hint_covers(&hostile, 103));
        // Format 2 records the data file's length: a seal after the last entry is covered.
        let bytes = encode_hint(h, &MAGIC, &entries, 135);
        assert_eq!(
            decode_hint(&bytes, &MAGIC, 5, 3, 135),
            Some(entries.clone())
        );
        assert_eq!(
            decode_hint(&bytes, &MAGIC, 5, 3, 103),
            None,
            "another length"
        );
        assert_eq!(
            decode_hint(&bytes, &MAGIC, 6, 3, 135),
            None,
            "another file's salt"
        );
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert_eq!(decode_hint(&b, &MAGIC, 5, 3, 135), None, "flip at {i}");
            let check = check_hint(&b, &MAGIC, (5, 3, 135), &entries);
            assert_eq!(check, HintCheck::Damaged, "check_hint: flip at {i}");
        }
        // What verify concludes. The file as the hint describes it: matches.
        let check =
            |salt, len, scanned: &[HintEntry]| check_hint(&bytes, &MAGIC, (salt, 3, len), scanned);
        assert_eq!(check(5, 135, &entries), HintCheck::Matches);
        // The file cut after its hint was written, losing its last record: damage, not a
        // stale hint (the hint lists a record the file lost).
        assert_eq!(check(5, 69, &entries[..1]), HintCheck::Damaged);
        // The file holding a record the hint does not list: damage.
        assert_eq!(check(5, 135, &entries[..1]), HintCheck::Damaged);
        // Longer than the hint covers, the same records (bytes after them): stale, never used.
        assert_eq!(check(5, 200, &entries), HintCheck::Stale);
        // Another file's hint (another salt): stale.
        assert_eq!(check(6, 135, &entries[..1]), HintCheck::Stale);
        assert_eq!(
            decode_hint(&bytes[..bytes.len() - 1], &MAGIC, 5, 3, 135),
            None
        );
    }

    #[test]
    fn only_the_stores_own_temporaries_are_its_own() {
        let own = |n| is_own_temp(n, &["MERGE"], &["hint"]);
        assert!(own("MERGE.tmp"));
        assert!(own("0000000007.hint.tmp"));
        assert!(!own("draft.tmp"));
        assert!(!own("0000000007.data.tmp"));
        assert!(!own("MERGE"));
        assert!(!own("7.hint.tmp"));
    }

    #[test]
    fn names_parse() {
        assert_eq!(parse_name(&file_name(12, "data")), Some((12, "data")));
        assert_eq!(parse_name("0000000001.hint"), Some((1, "hint")));
        assert_eq!(parse_name("MERGE"), None);
        assert_eq!(parse_name("12.data"), None);
    }
}
