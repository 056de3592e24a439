//! A segment: one log file of records plus its own in-memory hash index (DDIA's "each
//! segment now has its own in-memory hash table").
//!
//! Segment files use the `bitcask` record format with their own magic
//! (`89 4C 53 48 0D 0A 1A 0A`, "\x89LSH\r\n\x1a\n"): a 32-byte header (magic, version, salt,
//! id, reserved, header CRC), then records (CRC, seq, key length, value length, flags, key,
//! value). A frozen segment's index is snapshotted to `<id>.idx` in the `bitcask` hint
//! format, so open need not scan it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bitcask::format::{
    FILE_HEADER_LEN, FileHeader, HintEntry, RECORD_HEADER_LEN, TOMBSTONE, decode_hint,
    decode_record, scan_records,
};
use durable_fs::{Access, DurableFs, File};
use parking_lot::RwLock;

use crate::error::{CorruptionKind, Error, Result};

/// Segment file magic.
pub const SEGMENT_MAGIC: [u8; 8] = *b"\x89LSH\r\n\x1a\n";

/// The name of segment `id`.
pub fn segment_name(id: u64) -> String {
    format!("{id:010}.seg")
}

/// The name of segment `id`'s index snapshot.
pub fn index_name(id: u64) -> String {
    format!("{id:010}.idx")
}

/// Where a key's latest record in a segment is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub seq: u64,
    pub offset: u32,
    pub value_len: u32,
    pub tombstone: bool,
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub id: u64,
    pub path: PathBuf,
    pub file: Arc<File>,
    pub salt: u32,
    pub index: RwLock<HashMap<Box<[u8]>, Entry>>,
}

/// What loading a segment found.
pub(crate) struct LoadedSegment {
    pub segment: Segment,
    pub max_seq: u64,
    /// Where the records end (zeros after it are preallocated space).
    pub end: u64,
    pub from_snapshot: bool,
    /// A torn tail that was cut: (offset, bytes dropped, why).
    pub torn_tail: Option<(u64, u64, CorruptionKind)>,
}

pub(crate) fn index_from(entries: &[HintEntry]) -> (HashMap<Box<[u8]>, Entry>, u64) {
    let mut index = HashMap::with_capacity(entries.len());
    let mut max_seq = 0;
    for e in entries {
        max_seq = max_seq.max(e.seq);
        // Entries are in file order, so a later one for the same key is newer.
        index.insert(
            e.key.clone().into_boxed_slice(),
            Entry {
                seq: e.seq,
                offset: e.offset as u32,
                value_len: e.value_len,
                tombstone: e.flags & TOMBSTONE != 0,
            },
        );
    }
    (index, max_seq)
}

/// The index as hint entries, for a snapshot.
pub(crate) fn snapshot_entries(index: &HashMap<Box<[u8]>, Entry>) -> Vec<HintEntry> {
    let mut entries: Vec<HintEntry> = index
        .iter()
        .map(|(k, e)| HintEntry {
            seq: e.seq,
            offset: u64::from(e.offset),
            value_len: e.value_len,
            flags: if e.tombstone { TOMBSTONE } else { 0 },
            key: k.to_vec(),
        })
        .collect();
    entries.sort_by_key(|e| e.offset);
    entries
}

/// Loads segment `id`: from its index snapshot if that is intact and covers the file, else by
/// scanning; `newest` (the active segment at a crash) may have a torn tail, cut if `repair`.
pub(crate) fn load(fs: &DurableFs, dir: &Path, id: u64, newest: bool) -> Result<LoadedSegment> {
    let path = dir.join(segment_name(id));
    let file = fs.open(
        &path,
        if newest {
            Access::ReadWrite
        } else {
            Access::Read
        },
    )?;
    let bytes = file.read_all()?;
    let corrupt = |offset: u64, kind| Error::Corruption {
        path: path.clone(),
        offset,
        kind,
    };
    let header = FileHeader::decode(&bytes, &SEGMENT_MAGIC).map_err(|k| corrupt(0, k))?;
    if header.file_id != id {
        return Err(corrupt(
            16,
            CorruptionKind::NameMismatch {
                name_id: id,
                header_id: header.file_id,
            },
        ));
    }
    let snapshot = fs
        .read(&dir.join(index_name(id)))
        .ok()
        .and_then(|b| decode_hint(&b, header.salt, id, u32::MAX))
        .filter(|entries| {
            let end = entries
                .iter()
                .map(|e| {
                    e.offset + (RECORD_HEADER_LEN + e.key.len()) as u64 + u64::from(e.value_len)
                })
                .max()
                .unwrap_or(FILE_HEADER_LEN as u64);
            end == bytes.len() as u64
        });
    let (entries, end, from_snapshot, torn_tail) = match snapshot {
        Some(entries) => (entries, bytes.len() as u64, true, None),
        None => {
            let scanned = scan_records(&bytes, header.salt, u32::MAX, u32::MAX, newest, false)
                .map_err(|(offset, kind)| corrupt(offset, kind))?;
            let torn = scanned
                .torn_tail
                .map(|(offset, kind)| (offset, bytes.len() as u64 - offset, kind));
            if let Some((offset, _, _)) = torn {
                file.set_len(offset)?;
            }
            if newest {
                // What the scan read may have come from the page cache after a process crash:
                // make it durable before it counts as durable.
                file.sync_data()?;
            }
            (scanned.entries, scanned.end, false, torn)
        }
    };
    let (index, max_seq) = index_from(&entries);
    Ok(LoadedSegment {
        segment: Segment {
            id,
            path,
            file: Arc::new(file),
            salt: header.salt,
            index: RwLock::new(index),
        },
        max_seq,
        end,
        from_snapshot,
        torn_tail,
    })
}

impl Segment {
    /// Reads and verifies the record at `e` for `key`; returns its value.
    pub fn read_value(&self, key: &[u8], e: Entry) -> Result<Vec<u8>> {
        let len = RECORD_HEADER_LEN + key.len() + e.value_len as usize;
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, u64::from(e.offset))?;
        let corrupt = |kind| Error::Corruption {
            path: self.path.clone(),
            offset: u64::from(e.offset),
            kind,
        };
        let r = decode_record(&buf, self.salt, u32::MAX, u32::MAX).map_err(|d| {
            corrupt(match d {
                bitcask::format::DecodeError::Truncated => CorruptionKind::TruncatedRecord,
                bitcask::format::DecodeError::Corrupt(k) => k,
            })
        })?;
        if r.key != key || r.seq != e.seq {
            return Err(corrupt(CorruptionKind::ChecksumMismatch {
                expected: 0,
                actual: 0,
            }));
        }
        Ok(r.value.to_vec())
    }
}
