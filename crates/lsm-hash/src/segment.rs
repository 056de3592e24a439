//! A segment: one log file of records plus its own in-memory hash index (DDIA's "each
//! segment now has its own in-memory hash table").
//!
//! Segment files use the shared record format of `kv-core` (`docs/FORMAT-kv-record.md`)
//! with their own magic (`89 4C 53 48 0D 0A 1A 0A`, "\x89LSH\r\n\x1a\n"). A frozen segment's
//! index is snapshotted to `<id>.idx` in the shared hint format, with the hint magic
//! `89 42 43 48 0D 0A 1A 0A` (as format 1 wrote it), so open need not scan it.

use std::path::Path;

use durable_fs::{Access, DurableFs, Source};
use kv_core::format::{HintCheck, HintEntry, TOMBSTONE, check_hint, decode_hint, file_name};
use kv_core::key_index::{KeyIndex, Loc};
use kv_core::scan::scan_file;
use kv_core::{CorruptionKind, DataFile, Error, RecoveryMode, Result, ValueRef};
use parking_lot::RwLock;

/// What lsm-hash tells [`durable_fs::DurableFs::inspect_store`] about its directories: its
/// name (`lsm-hash`), its format, and the files it owns (segments, index snapshots, the
/// manifest, and their temporaries).
pub const STORE_KIND: durable_fs::StoreKind = durable_fs::StoreKind {
    engine: "lsm-hash",
    format: kv_core::format::VERSION,
    owns: |name| {
        use crate::manifest::MANIFEST;
        matches!(kv_core::format::parse_name(name), Some((_, "seg" | "idx")))
            || name == MANIFEST
            || kv_core::format::is_own_temp(name, &[MANIFEST], &["idx"])
    },
    magic: |name| match kv_core::format::parse_name(name) {
        Some((_, "seg")) => Some(&SEGMENT_MAGIC),
        Some((_, "idx")) => Some(&INDEX_MAGIC),
        _ => None,
    },
};

/// Segment file magic.
pub const SEGMENT_MAGIC: [u8; 8] = *b"\x89LSH\r\n\x1a\n";
/// Index snapshot magic: the shared hint format's (format 1 wrote `\x89BCH\r\n\x1a\n`).
pub(crate) const INDEX_MAGIC: [u8; 8] = *b"\x89BCH\r\n\x1a\n";

/// The name of segment `id`.
pub fn segment_name(id: u64) -> String {
    file_name(id, "seg")
}

/// The name of segment `id`'s index snapshot.
pub fn index_name(id: u64) -> String {
    file_name(id, "idx")
}

/// Where a key's latest record in a segment is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub seq: u64,
    pub offset: u32,
    pub value_len: u32,
    pub tombstone: bool,
}

impl Entry {
    fn loc(self) -> Loc {
        Loc {
            seq: self.seq,
            file: u32::from(self.tombstone),
            offset: self.offset,
            value_len: self.value_len,
        }
    }

    fn from_loc(l: Loc) -> Entry {
        Entry {
            seq: l.seq,
            offset: l.offset,
            value_len: l.value_len,
            tombstone: l.file & 1 != 0,
        }
    }

    fn at(&self) -> ValueRef {
        ValueRef {
            seq: self.seq,
            offset: u64::from(self.offset),
            value_len: self.value_len,
        }
    }
}

/// A segment's hash index: key -> its latest record in the segment. Compact
/// ([`kv_core::key_index::KeyIndex`], as bitcask's keydir: keys in one arena, 32-byte slots,
/// 4-byte table entries); the slot's tag holds the tombstone flag.
#[derive(Debug, Default)]
pub(crate) struct Index(KeyIndex);

impl Index {
    pub fn with_capacity(keys: usize, key_bytes: usize) -> Index {
        let mut idx = KeyIndex::default();
        idx.reserve(keys, key_bytes);
        Index(idx)
    }

    pub fn get(&self, key: &[u8]) -> Option<Entry> {
        self.0.get(key).map(Entry::from_loc)
    }

    pub fn insert(&mut self, key: &[u8], e: Entry) {
        self.0.insert(key, e.loc());
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Every `(key, entry)`, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Entry)> {
        self.0.iter().map(|(k, l)| (k, Entry::from_loc(l)))
    }
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub data: DataFile,
    pub index: RwLock<Index>,
}

/// What loading a segment found.
pub(crate) struct LoadedSegment {
    pub segment: Segment,
    pub max_seq: u64,
    /// Where the records end (zeros after it are preallocated space).
    pub end: u64,
    pub from_snapshot: bool,
    /// The scan found the records ending with a seal.
    pub sealed: bool,
    /// A torn tail (cut unless read-only): (offset, bytes dropped, why).
    pub torn_tail: Option<(u64, u64, CorruptionKind)>,
    /// Damaged ranges skipped under [`RecoveryMode::SkipCorrupt`]: (offset, length, why).
    pub skipped: Vec<(u64, u64, CorruptionKind)>,
    /// Where the cut torn tail's bytes were kept.
    pub quarantined: Option<std::path::PathBuf>,
    /// For `verify`: what checking its index snapshot found (`None`: it has none).
    pub snapshot_check: Option<HintCheck>,
}

/// The index of a segment from its entries (in file order), and the highest seq; an offset
/// past 4 GiB (a crafted snapshot or file) is refused, naming `path`.
pub(crate) fn index_from(path: &Path, entries: &[HintEntry]) -> Result<(Index, u64)> {
    let key_bytes = entries.iter().map(|e| e.key.len()).sum();
    let mut index = Index::with_capacity(entries.len(), key_bytes);
    let mut max_seq = 0;
    for e in entries {
        max_seq = max_seq.max(e.seq);
        // Entries are in file order, so a later one for the same key is newer.
        index.insert(
            &e.key,
            Entry {
                seq: e.seq,
                offset: kv_core::offset32(path, e.offset)?,
                value_len: e.value_len,
                tombstone: e.flags & TOMBSTONE != 0,
            },
        );
    }
    Ok((index, max_seq))
}

/// The index as hint entries, for a snapshot.
pub(crate) fn snapshot_entries(index: &Index) -> Vec<HintEntry> {
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

/// How a segment is loaded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LoadMode {
    /// The active segment at a crash: it may have a torn tail.
    pub newest: bool,
    /// Never write (a torn tail is left on disk and only left out in memory).
    pub read_only: bool,
    pub recovery: RecoveryMode,
    /// For `verify`: scan even with a snapshot, and check the snapshot against the scan.
    pub verify: bool,
}

/// Loads segment `id`: from its index snapshot if that is intact and covers the file, else by
/// scanning; a torn tail of the newest segment is cut (unless read-only) and synced.
pub(crate) fn load(fs: &DurableFs, dir: &Path, id: u64, mode: LoadMode) -> Result<LoadedSegment> {
    let path = dir.join(segment_name(id));
    let access = if mode.newest && !mode.read_only {
        Access::ReadWrite
    } else {
        Access::Read
    };
    let (data, header) = DataFile::open(fs, path.clone(), &SEGMENT_MAGIC, id, access)?;
    // Read a chunk at a time: memory is bounded whatever the segment's length.
    let mut src = data.chunks()?;
    let file_len = src.len();
    let index_path = dir.join(index_name(id));
    let snapshot = if mode.verify {
        None
    } else {
        kv_core::read_at_most(fs, &index_path, kv_core::MAX_FILE_LEN)
            .ok()
            .flatten()
            .and_then(|b| decode_hint(&b, &INDEX_MAGIC, header.salt, id, file_len))
    };
    let mut snapshot_check = None;
    let mut quarantined = None;
    let mut sealed = false;
    let (entries, end, from_snapshot, torn_tail, skipped) = match snapshot {
        Some(entries) => (entries, file_len, true, None, Vec::new()),
        None => {
            let (salt, version) = (header.salt, header.version);
            let scanned = scan_file(&mut src, salt, version, mode.newest, mode.recovery)?
                .map_err(|(offset, kind)| Error::corrupt(&path, offset, kind))?;
            let torn = scanned
                .torn_tail
                .map(|(offset, kind)| (offset, file_len - offset, kind));
            if let Some((offset, len, kind)) = torn {
                log::warn!(
                    "{}: torn tail at offset {offset}: {len} bytes ({kind})",
                    path.display()
                );
            }
            if !mode.read_only {
                if let Some((offset, _, _)) = torn {
                    // Nothing destroyed: the cut bytes go to quarantine/ first, durably.
                    quarantined = fs.quarantine_tail(dir, &path, &mut src, offset)?;
                    if let Some(kept) = &quarantined {
                        log::warn!(
                            "{}: the cut bytes are kept in {}",
                            path.display(),
                            kept.display()
                        );
                    }
                    data.file.set_len(offset)?;
                }
                if mode.newest {
                    // What the scan read may have come from the page cache after a process
                    // crash: make it durable before it counts as durable.
                    data.file.sync_data()?;
                }
            }
            if mode.verify && fs.exists(&index_path)? {
                // Every byte of every file: the snapshot too, against what the scan found.
                let bytes = kv_core::read_at_most(fs, &index_path, kv_core::MAX_FILE_LEN)?;
                let about = (header.salt, id, file_len);
                match bytes.map(|b| check_hint(&b, &INDEX_MAGIC, about, &scanned.entries)) {
                    Some(HintCheck::Damaged) | None => {
                        return Err(Error::corrupt(&index_path, 0, CorruptionKind::BadHint));
                    }
                    check => snapshot_check = check,
                }
            }
            let end = scanned.end;
            sealed = scanned.sealed && torn.is_none();
            (scanned.entries, end, false, torn, scanned.skipped)
        }
    };
    let (index, max_seq) = index_from(&path, &entries)?;
    Ok(LoadedSegment {
        segment: Segment {
            data,
            index: RwLock::new(index),
        },
        max_seq,
        end,
        from_snapshot,
        sealed,
        torn_tail,
        skipped,
        quarantined,
        snapshot_check,
    })
}

impl Segment {
    /// Reads and verifies the record at `e` for `key`; returns its value.
    pub fn read_value(&self, key: &[u8], e: Entry) -> Result<Vec<u8>> {
        self.data.read_value(key, e.at())
    }

    pub fn id(&self) -> u64 {
        self.data.id
    }
}
