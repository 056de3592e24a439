//! The snapshot format (the bytes openraft sends, and the file kept on disk) and the state
//! machine's `MANIFEST`. Byte by byte in `docs/FORMAT-raft.md`, tested against this code.
//!
//! Snapshot (little-endian):
//!
//! | size | field |
//! |---|---|
//! | 8 | magic `\x89RSN\r\n\x1a\n` |
//! | 4 | format version, 1 |
//! | 4 | `m`: length of the metadata |
//! | m | the [`SnapshotMeta`], postcard |
//! | 8 | `n`: number of pairs |
//! | n × | key length (4), key, value length (4), value |
//! | 4 | CRC-32 (IEEE) of every byte before it |
//!
//! MANIFEST (36 bytes): magic `\x89RSM\r\n\x1a\n` (8), version 1 (4), zero (4), the live
//! bitcask generation (8), the current snapshot's sequence number, 0 for none (8), CRC-32 of
//! bytes 0..32 (4).

use std::path::Path;

use durable_fs::{Access, DurableFs};

use crate::error::{Error, Result};
use crate::types::SnapshotMeta;

/// Snapshot magic bytes.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"\x89RSN\r\n\x1a\n";
/// Snapshot format version.
pub const SNAPSHOT_VERSION: u32 = 1;
/// The state machine's manifest file name.
pub const MANIFEST_FILE: &str = "MANIFEST";
/// Manifest magic bytes.
pub const MANIFEST_MAGIC: [u8; 8] = *b"\x89RSM\r\n\x1a\n";
/// Manifest format version.
pub const MANIFEST_VERSION: u32 = 1;
/// Manifest length.
pub const MANIFEST_LEN: usize = 36;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

fn len32(n: usize, what: &str) -> Result<[u8; 4]> {
    u32::try_from(n)
        .map(u32::to_le_bytes)
        .map_err(|_| Error::Invalid(format!("{what} of {n} bytes does not fit a snapshot")))
}

/// Writes snapshot bytes: the header and metadata first, then the pairs, then the CRC.
#[derive(Debug)]
pub struct SnapshotWriter {
    buf: Vec<u8>,
    count_at: usize,
    count: u64,
}

impl SnapshotWriter {
    /// Starts a snapshot with `meta`.
    pub fn new(meta: &SnapshotMeta) -> Result<Self> {
        let encoded = postcard::to_allocvec(meta).map_err(|source| Error::Encode {
            what: "snapshot meta",
            source,
        })?;
        let mut buf = Vec::with_capacity(64 + encoded.len());
        buf.extend_from_slice(&SNAPSHOT_MAGIC);
        buf.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        buf.extend_from_slice(&len32(encoded.len(), "snapshot meta")?);
        buf.extend_from_slice(&encoded);
        let count_at = buf.len();
        buf.extend_from_slice(&0u64.to_le_bytes());
        Ok(SnapshotWriter {
            buf,
            count_at,
            count: 0,
        })
    }

    /// Adds one pair.
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(&len32(key.len(), "key")?);
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(&len32(value.len(), "value")?);
        self.buf.extend_from_slice(value);
        self.count += 1;
        Ok(())
    }

    /// The finished bytes.
    pub fn finish(mut self) -> Vec<u8> {
        if let Some(dst) = self.buf.get_mut(self.count_at..self.count_at + 8) {
            dst.copy_from_slice(&self.count.to_le_bytes());
        }
        let crc = crc32fast::hash(&self.buf);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf
    }
}

/// Snapshot bytes, checked: the CRC, the header, and every length inside the bounds.
#[derive(Debug)]
pub struct SnapshotReader<'a> {
    /// The metadata stored in the snapshot.
    pub meta: SnapshotMeta,
    pairs: &'a [u8],
    /// Offset of `pairs` in the snapshot (for errors).
    at: u64,
    left: u64,
}

impl<'a> SnapshotReader<'a> {
    /// Checks `bytes`; `path` names the file (or the transfer) in errors.
    pub fn new(bytes: &'a [u8], path: &Path) -> Result<Self> {
        let body_len = bytes
            .len()
            .checked_sub(4)
            .filter(|&n| n >= 24)
            .ok_or_else(|| Error::corrupt(path, 0, format!("{} bytes: too short", bytes.len())))?;
        let (body, crc) = bytes.split_at(body_len);
        if u32_at(crc, 0) != Some(crc32fast::hash(body)) {
            return Err(Error::corrupt(path, body_len as u64, "checksum mismatch"));
        }
        if body.get(0..8) != Some(&SNAPSHOT_MAGIC[..]) {
            return Err(Error::corrupt(path, 0, "bad magic"));
        }
        let version = u32_at(body, 8).unwrap_or(0);
        if version != SNAPSHOT_VERSION {
            return Err(Error::corrupt(
                path,
                8,
                format!("format version {version}; this build reads {SNAPSHOT_VERSION}"),
            ));
        }
        let meta_len = u32_at(body, 12).unwrap_or(0) as usize;
        let meta_bytes = body
            .get(16..16usize.saturating_add(meta_len))
            .ok_or_else(|| {
                Error::corrupt(
                    path,
                    12,
                    format!("metadata of {meta_len} bytes past the end"),
                )
            })?;
        let meta: SnapshotMeta = postcard::from_bytes(meta_bytes)
            .map_err(|e| Error::corrupt(path, 16, format!("metadata: {e}")))?;
        let count_at = 16 + meta_len;
        let count = u64_at(body, count_at)
            .ok_or_else(|| Error::corrupt(path, count_at as u64, "pair count past the end"))?;
        let pairs = body.get(count_at + 8..).unwrap_or_default();
        // Each pair takes at least 8 bytes: a crafted count cannot promise more.
        if count > (pairs.len() / 8) as u64 {
            return Err(Error::corrupt(
                path,
                count_at as u64,
                format!("{count} pairs cannot fit in {} bytes", pairs.len()),
            ));
        }
        Ok(SnapshotReader {
            meta,
            pairs,
            at: (count_at + 8) as u64,
            left: count,
        })
    }

    /// The next pair, or an error naming the offset where a length runs past the end.
    #[allow(clippy::type_complexity)]
    pub fn next_pair(&mut self, path: &Path) -> Result<Option<(&'a [u8], &'a [u8])>> {
        if self.left == 0 {
            if !self.pairs.is_empty() {
                return Err(Error::corrupt(
                    path,
                    self.at,
                    format!("{} bytes after the last pair", self.pairs.len()),
                ));
            }
            return Ok(None);
        }
        let p = self.pairs;
        let at = self.at;
        let bad = || Error::corrupt(path, at, "a pair runs past the end of the snapshot");
        let klen = u32_at(p, 0).ok_or_else(bad)? as usize;
        let key = p.get(4..4 + klen).ok_or_else(bad)?;
        let vlen = u32_at(p, 4 + klen).ok_or_else(bad)? as usize;
        let value = p.get(8 + klen..8 + klen + vlen).ok_or_else(bad)?;
        self.pairs = p.get(8 + klen + vlen..).unwrap_or_default();
        self.at += (8 + klen + vlen) as u64;
        self.left -= 1;
        Ok(Some((key, value)))
    }
}

/// What the state machine's `MANIFEST` names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The live bitcask generation (`gen-<n>`).
    pub generation: u64,
    /// The current snapshot's sequence number (`snapshots/snap-<n>.snap`); 0 for none.
    pub snapshot: u64,
}

impl Manifest {
    /// Its bytes.
    pub fn encode(&self) -> [u8; MANIFEST_LEN] {
        let mut b = [0u8; MANIFEST_LEN];
        let mut v = Vec::with_capacity(MANIFEST_LEN);
        v.extend_from_slice(&MANIFEST_MAGIC);
        v.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&self.generation.to_le_bytes());
        v.extend_from_slice(&self.snapshot.to_le_bytes());
        let crc = crc32fast::hash(&v);
        v.extend_from_slice(&crc.to_le_bytes());
        b.copy_from_slice(&v);
        b
    }

    /// Decodes and checks its bytes.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Manifest> {
        if bytes.len() != MANIFEST_LEN {
            return Err(Error::corrupt(
                path,
                0,
                format!("{} bytes, expected {MANIFEST_LEN}", bytes.len()),
            ));
        }
        if u32_at(bytes, 32) != Some(crc32fast::hash(bytes.get(..32).unwrap_or_default())) {
            return Err(Error::corrupt(path, 32, "checksum mismatch"));
        }
        if bytes.get(..8) != Some(&MANIFEST_MAGIC[..]) {
            return Err(Error::corrupt(path, 0, "bad magic"));
        }
        let version = u32_at(bytes, 8).unwrap_or(0);
        if version != MANIFEST_VERSION || u32_at(bytes, 12) != Some(0) {
            return Err(Error::corrupt(
                path,
                8,
                format!("format version {version}; this build reads {MANIFEST_VERSION}"),
            ));
        }
        Ok(Manifest {
            generation: u64_at(bytes, 16).unwrap_or(0),
            snapshot: u64_at(bytes, 24).unwrap_or(0),
        })
    }

    /// Reads `dir/MANIFEST` (`None` when absent; damage is an error naming the file).
    pub fn load(fs: &DurableFs, dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST_FILE);
        if !fs.exists(&path)? {
            return Ok(None);
        }
        let file = fs.open(&path, Access::Read)?;
        let len = file.len()?;
        if len != MANIFEST_LEN as u64 {
            return Err(Error::corrupt(
                &path,
                0,
                format!("{len} bytes, expected {MANIFEST_LEN}"),
            ));
        }
        let mut buf = [0u8; MANIFEST_LEN];
        file.read_exact_at(&mut buf, 0)?;
        Manifest::decode(&buf, &path).map(Some)
    }

    /// Replaces `dir/MANIFEST` atomically and durably: the state machine's one switch point.
    pub fn store(&self, fs: &DurableFs, dir: &Path) -> Result<()> {
        fs.atomic_replace(&dir.join(MANIFEST_FILE), &self.encode())?;
        Ok(())
    }
}
