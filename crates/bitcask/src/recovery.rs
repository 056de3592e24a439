//! Opening a store: finish or abandon an interrupted merge, load the keydir from hint files
//! or CRC-checked scans, repair a torn tail, start a new active file.
//!
//! Only the newest file written by the writer can have a torn tail: a data file is synced
//! completely before the next one is created, and merge outputs are synced before the merge
//! commits. Damage anywhere else is corruption, refused with file and offset unless
//! `Options::salvage` asks to skip it.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use durable_fs::{Access, DurableFs, GroupCommit, TEMP_SUFFIX};
use parking_lot::{Condvar, Mutex, RwLock};

use crate::error::{CorruptionKind, Error, Result};
use crate::format::{
    DATA_MAGIC, FILE_HEADER_LEN, FileHeader, HintEntry, RECORD_HEADER_LEN, TOMBSTONE, data_name,
    decode_hint, hint_name, parse_name, scan_records, u32_at,
};
use crate::handles::HandleCache;
use crate::keydir::{KeyMap, Keydir, Loc};
use crate::merge::{MERGE_MARKER, MergeMarker};
use crate::options::Options;
use crate::store::{Inner, Writer, create_data_file};

/// What [`Bitcask::open`](crate::Bitcask::open) found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Data files loaded.
    pub files: usize,
    /// Files whose entries came from a valid hint file.
    pub from_hints: usize,
    /// Files scanned record by record (no hint, or a damaged one).
    pub scanned: usize,
    /// Live keys.
    pub keys: u64,
    /// A torn tail cut from the newest file, if there was one.
    pub truncated_tail: Option<Damage>,
    /// Damaged ranges skipped (only with `Options::salvage`).
    pub skipped: Vec<Damage>,
    /// An interrupted merge that had committed was finished.
    pub merge_completed: bool,
    /// Output files of an interrupted, uncommitted merge that were removed.
    pub merge_abandoned_files: usize,
    /// Files removed because their creation was torn (shorter than a header).
    pub removed_torn_files: Vec<PathBuf>,
}

/// A damaged byte range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The file.
    pub path: PathBuf,
    /// Where the damage starts.
    pub offset: u64,
    /// Bytes dropped or skipped.
    pub len: u64,
    /// What was wrong there.
    pub kind: CorruptionKind,
}

/// Marks a data file header as a merge output (reserved field = 1) and fixes its CRC.
pub(crate) fn mark_merged(header: &mut [u8; FILE_HEADER_LEN]) {
    if let Some(f) = header.get_mut(24..28) {
        f.copy_from_slice(&1u32.to_le_bytes());
    }
    let crc = crc32fast::hash(header.get(..28).unwrap_or_default());
    if let Some(c) = header.get_mut(28..32) {
        c.copy_from_slice(&crc.to_le_bytes());
    }
}

/// What one data file contributed.
struct Loaded {
    entries: Vec<HintEntry>,
    /// Bytes of valid records.
    record_bytes: u64,
}

/// Removes `path` if it exists.
fn remove_if_exists(fs: &DurableFs, path: &Path) -> Result<()> {
    if fs.exists(path)? {
        fs.remove_file(path)?;
    }
    Ok(())
}

pub(crate) fn open(dir: &Path, opts: Options) -> Result<Inner> {
    opts.validate()?;
    let fs = opts.fs.clone();
    let read_only = opts.read_only;
    let lock = if read_only {
        None
    } else {
        fs.create_dir_all(dir)?;
        Some(fs.lock_dir(dir)?)
    };
    let mut report = OpenReport::default();

    // 1. An interrupted merge: finish it if it committed, else drop its outputs.
    let names = fs.list(dir)?;
    if names.iter().any(|n| n == MERGE_MARKER) {
        let marker_path = dir.join(MERGE_MARKER);
        let marker = MergeMarker::decode(&fs.read(&marker_path)?).ok_or(Error::Corruption {
            path: marker_path,
            offset: 0,
            kind: CorruptionKind::BadMergeMarker,
        })?;
        if read_only {
            return Err(Error::InvalidOptions(
                "an interrupted merge must be finished by a read-write open first".into(),
            ));
        }
        crate::merge::roll_forward(&fs, dir, &marker)?;
        report.merge_completed = true;
    } else if !read_only {
        for n in &names {
            if matches!(parse_name(n), Some((_, "merge"))) {
                fs.remove_file(&dir.join(n))?;
                report.merge_abandoned_files += 1;
            }
        }
    }
    if !read_only {
        for n in &names {
            if n.ends_with(TEMP_SUFFIX) {
                remove_if_exists(&fs, &dir.join(n))?;
            }
        }
    }

    // 2. Data files, and which one the writer was appending to.
    let names = fs.list(dir)?;
    let mut max_id = 0;
    let mut ids = Vec::new();
    let mut hints = BTreeSet::new();
    for n in &names {
        match parse_name(n) {
            Some((id, "data")) => {
                ids.push(id);
                max_id = max_id.max(id);
            }
            Some((id, "hint")) => {
                hints.insert(id);
                // Ids are never reused, not even those of orphaned hints.
                max_id = max_id.max(id);
            }
            _ => {}
        }
    }
    ids.sort_unstable();
    let mut headers = HashMap::new();
    let mut newest_writer_file = None;
    for &id in &ids {
        let path = dir.join(data_name(id));
        let file = fs.open(&path, Access::Read)?;
        let mut h = [0u8; FILE_HEADER_LEN];
        let len = file.len()?;
        if len >= FILE_HEADER_LEN as u64 {
            file.read_exact_at(&mut h, 0)?;
        }
        let merged = u32_at(&h, 24) == Some(1);
        if !merged {
            newest_writer_file = Some(id);
        }
        headers.insert(id, (h, len));
    }

    // 3. Load.
    let mut keydir = Keydir::default();
    // Newest tombstone seen per key: hides values of that key with a lower seq, whatever file
    // comes later (merged files carry old seqs under new ids).
    let mut tombs: KeyMap<u64> = KeyMap::default();
    let mut all_loaded = Vec::new();
    let mut max_seq = 0;
    let mut live_ids = BTreeSet::new();
    for &id in &ids {
        let path = dir.join(data_name(id));
        let Some(&(h, len)) = headers.get(&id) else {
            continue;
        };
        let newest = Some(id) == newest_writer_file;
        let header = match FileHeader::decode(&h, &DATA_MAGIC) {
            Ok(header) => header,
            Err(_) if len <= FILE_HEADER_LEN as u64 => {
                // Created, then the crash came before its header was synced (or the header's
                // fsync failed and the store stopped, fail-stop, while later files were made
                // by a reopen): it cannot hold a record, so nothing is lost with it.
                if !read_only {
                    fs.remove_file(&path)?;
                }
                report.removed_torn_files.push(path);
                continue;
            }
            Err(kind) => {
                return Err(Error::Corruption {
                    path,
                    offset: 0,
                    kind,
                });
            }
        };
        if header.file_id != id {
            return Err(Error::Corruption {
                path,
                offset: 16,
                kind: CorruptionKind::NameMismatch {
                    name_id: id,
                    header_id: header.file_id,
                },
            });
        }
        // A hint is used only if it is intact, describes this very file (salt and id), and
        // covers it to the last byte (so nothing was appended after it, and no tail is torn).
        let from_hint = if hints.contains(&id) {
            fs.read(&dir.join(hint_name(id)))
                .ok()
                .and_then(|b| decode_hint(&b, header.salt, id, u32::MAX))
                .filter(|entries| {
                    let end = entries
                        .iter()
                        .map(|e| {
                            e.offset
                                + (RECORD_HEADER_LEN + e.key.len()) as u64
                                + u64::from(e.value_len)
                        })
                        .max()
                        .unwrap_or(FILE_HEADER_LEN as u64);
                    end == len
                })
        } else {
            None
        };
        let loaded = match from_hint {
            Some(entries) => {
                report.from_hints += 1;
                Loaded {
                    entries,
                    record_bytes: len - FILE_HEADER_LEN as u64,
                }
            }
            None => {
                report.scanned += 1;
                // Read-write unless read-only: any file may need its zero tail trimmed.
                let access = if read_only {
                    Access::Read
                } else {
                    Access::ReadWrite
                };
                let file = fs.open(&path, access)?;
                let bytes = file.read_all()?;
                let scanned = scan_records(
                    &bytes,
                    header.salt,
                    u32::MAX,
                    u32::MAX,
                    newest,
                    opts.salvage,
                )
                .map_err(|(offset, kind)| Error::Corruption {
                    path: path.clone(),
                    offset,
                    kind,
                })?;
                let salvaged = !scanned.skipped.is_empty();
                for (offset, len, kind) in scanned.skipped {
                    report.skipped.push(Damage {
                        path: path.clone(),
                        offset,
                        len,
                        kind,
                    });
                }
                if let Some((offset, kind)) = scanned.torn_tail {
                    report.truncated_tail = Some(Damage {
                        path: path.clone(),
                        offset,
                        len: bytes.len() as u64 - offset,
                        kind,
                    });
                }
                // Trim a torn tail or preallocated zeros: immutable files end at their records.
                // (Under salvage, only a torn tail is cut: skipped ranges stay for inspection.)
                let cut = match scanned.torn_tail {
                    Some((offset, _)) => Some(offset),
                    None => (scanned.end < bytes.len() as u64 && !salvaged).then_some(scanned.end),
                };
                let loaded = Loaded {
                    entries: scanned.entries,
                    record_bytes: scanned.record_bytes,
                };
                if let Some(at) = cut
                    && !read_only
                {
                    file.set_len(at)?;
                    file.sync_data()?;
                    // Its hint (if any) described the bytes just cut.
                    remove_if_exists(&fs, &dir.join(hint_name(id)))?;
                } else if newest && !read_only {
                    // What the scan read may have come from the page cache after a process
                    // crash: make it durable before it counts as durable, and before a newer
                    // file makes this one immutable.
                    file.sync_data()?;
                }
                loaded
            }
        };
        live_ids.insert(id);
        let file_id = u32::try_from(id).unwrap_or(u32::MAX);
        keydir.files.entry(file_id).or_default().total = loaded.record_bytes;
        all_loaded.push((file_id, loaded));
    }
    // One allocation for the whole keydir, then one pass over every entry.
    let (keys, key_bytes) = all_loaded
        .iter()
        .flat_map(|(_, l)| l.entries.iter())
        .fold((0, 0), |(n, b), e| (n + 1, b + e.key.len()));
    keydir.map.reserve(keys, key_bytes);
    for (file_id, loaded) in all_loaded {
        for e in loaded.entries {
            max_seq = max_seq.max(e.seq);
            let loc = Loc {
                seq: e.seq,
                file: file_id,
                offset: e.offset as u32,
                value_len: e.value_len,
            };
            let len = loc.record_len(e.key.len());
            if e.flags & TOMBSTONE != 0 {
                keydir.files.entry(file_id).or_default().dead += len;
                if keydir
                    .map
                    .get(e.key.as_slice())
                    .is_some_and(|v| v.seq > e.seq)
                {
                    continue; // an older delete
                }
                if let Some(old) = keydir.map.remove(e.key.as_slice()) {
                    keydir.files.entry(old.file).or_default().dead += old.record_len(e.key.len());
                }
                let seq = tombs.entry(e.key.into_boxed_slice()).or_insert(0);
                *seq = (*seq).max(e.seq);
                continue;
            }
            if tombs.get(e.key.as_slice()).is_some_and(|&t| t > e.seq) {
                keydir.files.entry(file_id).or_default().dead += len;
                continue; // deleted later
            }
            match keydir.map.get(&e.key) {
                Some(cur) if cur.seq > loc.seq => {
                    keydir.files.entry(file_id).or_default().dead += len;
                }
                _ => {
                    if let Some(old) = keydir.map.insert(&e.key, loc) {
                        keydir.files.entry(old.file).or_default().dead +=
                            old.record_len(e.key.len());
                    }
                }
            }
        }
    }
    report.files = live_ids.len();
    report.keys = keydir.map.len() as u64;

    // 4. A new active file.
    let next_id = max_id + 1;
    let writer = if read_only {
        None
    } else {
        let (file, salt) = create_data_file(&fs, &dir.join(data_name(next_id)), next_id, false)?;
        live_ids.insert(next_id);
        Some(Mutex::new(Writer {
            file: Arc::new(file),
            id: next_id,
            salt,
            offset: FILE_HEADER_LEN as u64,
            file_len: FILE_HEADER_LEN as u64,
            seq: max_seq,
            hint: Vec::new(),
            buf: Vec::new(),
        }))
    };
    Ok(Inner {
        dir: dir.to_path_buf(),
        keydir: RwLock::new(keydir),
        writer,
        group: GroupCommit::new(max_seq, |m| Arc::new(Error::Internal(m))),
        pending: Mutex::new(std::collections::VecDeque::new()),
        handles: Mutex::new(HandleCache::new(opts.max_open_files)),
        files: Mutex::new(live_ids),
        next_file_id: AtomicU64::new(next_id + 1),
        merge_lock: Mutex::new(()),
        stop: AtomicBool::new(false),
        stop_lock: Mutex::new(()),
        stop_cv: Condvar::new(),
        hint_failures: AtomicU64::new(0),
        report,
        _lock: lock,
        opts,
    })
}
