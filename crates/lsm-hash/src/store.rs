//! [`LsmHash`]: open, reads, writes, freezing segments, compaction.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use bitcask::format::{
    BATCH_CONTINUES, FILE_HEADER_LEN, FileHeader, RECORD_HEADER_LEN, TOMBSTONE, encode_hint,
    encode_record, parse_name,
};
use durable_fs::{DirLock, DurableFs, GroupCommit, TEMP_SUFFIX};
use parking_lot::{Condvar, Mutex, RwLock};

use crate::error::{CorruptionKind, Error, Result};
use crate::manifest::{self, MANIFEST};
use crate::options::{Options, SyncPolicy};
use crate::segment::{
    self, Entry, SEGMENT_MAGIC, Segment, index_name, segment_name, snapshot_entries,
};

/// A batch of puts and deletes, applied atomically by [`LsmHash::write`].
pub type WriteBatch = bitcask::WriteBatch;

/// What [`LsmHash::open`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Segments in the manifest.
    pub segments: usize,
    /// Segments whose index came from a snapshot.
    pub from_snapshots: usize,
    /// Segments scanned record by record.
    pub scanned: usize,
    /// A torn tail cut from the active segment: (file, offset, bytes, why).
    pub truncated_tail: Option<(PathBuf, u64, u64, CorruptionKind)>,
    /// Files not named by the manifest (leftovers of an interrupted change), removed.
    pub removed_files: Vec<String>,
}

/// One segment in [`LsmHash::segments`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Its id (file `<id>.seg`).
    pub id: u64,
    /// Keys in its index (tombstones included).
    pub keys: usize,
    /// File size.
    pub bytes: u64,
    /// False for the active segment.
    pub frozen: bool,
}

/// What [`LsmHash::compact_now`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Segments merged (and removed).
    pub inputs: Vec<u64>,
    /// The merged segments (more than one when the live data exceeds `max_segment_bytes`;
    /// none when nothing was live).
    pub outputs: Vec<u64>,
    /// Live records written.
    pub records: u64,
}

struct Writer {
    active: Arc<Segment>,
    offset: u64,
    /// Allocated size of the active segment file.
    file_len: u64,
    seq: u64,
    buf: Vec<u8>,
}

/// A written batch whose index entries are not visible yet (see [`Inner::publish_upto`]).
struct PendingBatch {
    last_seq: u64,
    /// The segment its records are in.
    segment: Arc<Segment>,
    entries: Vec<(Box<[u8]>, Entry)>,
}

pub(crate) struct Inner {
    dir: PathBuf,
    opts: Options,
    /// Oldest first; the last is the active segment. Readers clone the `Arc` and never block
    /// on writers or compaction.
    segments: RwLock<Arc<Vec<Arc<Segment>>>>,
    writer: Mutex<Writer>,
    group: GroupCommit<Arc<Error>>,
    /// Batches written but not yet visible, in sequence order (`Always` only).
    pending: Mutex<VecDeque<PendingBatch>>,
    next_id: AtomicU64,
    compaction: Mutex<()>,
    stop: AtomicBool,
    stop_lock: Mutex<()>,
    stop_cv: Condvar,
    report: OpenReport,
    _lock: DirLock,
}

/// The log-structured hash table. `Send + Sync`; reads never block on writes or compaction.
pub struct LsmHash {
    inner: Arc<Inner>,
    background: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for LsmHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LsmHash")
            .field("dir", &self.inner.dir)
            .field("segments", &self.inner.segments.read().len())
            .finish_non_exhaustive()
    }
}

fn random_salt(id: u64) -> u32 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(id);
    h.finish() as u32
}

/// Creates segment file `id` durably with its header.
fn create_segment(fs: &DurableFs, dir: &Path, id: u64) -> Result<Segment> {
    let path = dir.join(segment_name(id));
    let file = fs.create_new(&path)?;
    let salt = random_salt(id);
    file.write_all_at(&FileHeader { salt, file_id: id }.encode(&SEGMENT_MAGIC), 0)?;
    file.sync_data()?;
    Ok(Segment {
        id,
        path,
        file: Arc::new(file),
        salt,
        index: RwLock::new(HashMap::new()),
    })
}

/// Puts a batch's entries into its segment's index.
fn apply_batch(batch: PendingBatch) {
    let mut index = batch.segment.index.write();
    for (k, e) in batch.entries {
        index.insert(k, e);
    }
}

impl Inner {
    fn check_poison(&self) -> Result<()> {
        match self.group.failure() {
            Some(e) => Err(Error::Poisoned(e)),
            None => Ok(()),
        }
    }

    /// Poisons the store with `e` (fail-stop) and returns the first failure as `Poisoned`.
    fn fail(&self, e: Error) -> Error {
        Error::Poisoned(self.group.poison(Arc::new(e)))
    }

    fn write_manifest(&self, list: &[Arc<Segment>]) -> Result<()> {
        let ids: Vec<u64> = list.iter().map(|s| s.id).collect();
        self.opts
            .fs
            .atomic_replace(&self.dir.join(MANIFEST), &manifest::encode(&ids))?;
        Ok(())
    }

    /// Writes a frozen segment's index snapshot. Best effort: without it, open scans.
    fn snapshot(&self, seg: &Segment) {
        // A frozen segment was synced whole: make its last batches visible, or the
        // snapshot would leave them out.
        self.publish_upto(self.group.durable());
        let entries = snapshot_entries(&seg.index.read());
        let bytes = encode_hint(
            FileHeader {
                salt: seg.salt,
                file_id: seg.id,
            },
            &entries,
        );
        let _ = self
            .opts
            .fs
            .atomic_replace(&self.dir.join(index_name(seg.id)), &bytes);
    }

    /// Freezes the active segment: sync it, create the next one, switch the manifest.
    /// Returns the frozen segment (for its snapshot, written after the lock is released).
    fn freeze(&self, w: &mut Writer) -> Result<Arc<Segment>> {
        if w.file_len > w.offset {
            // Frozen segments end exactly at their records.
            w.active.file.set_len(w.offset)?;
        }
        w.active.file.sync_data()?;
        self.group.advance(w.seq);
        let id = self.next_id.fetch_add(1, Ordering::AcqRel);
        let fresh = Arc::new(create_segment(&self.opts.fs, &self.dir, id)?);
        let mut list: Vec<Arc<Segment>> = self.segments.read().iter().cloned().collect();
        list.push(Arc::clone(&fresh));
        self.write_manifest(&list)?;
        *self.segments.write() = Arc::new(list);
        let frozen = std::mem::replace(&mut w.active, fresh);
        w.offset = FILE_HEADER_LEN as u64;
        w.file_len = FILE_HEADER_LEN as u64;
        Ok(frozen)
    }

    fn check_sizes(&self, ops: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<()> {
        // A batch goes into one segment, whose offsets are 32-bit.
        let total: u64 = ops
            .iter()
            .map(|(k, v)| (RECORD_HEADER_LEN + k.len() + v.as_ref().map_or(0, Vec::len)) as u64)
            .sum();
        let max_batch = self.opts.max_segment_bytes.max(u64::from(u32::MAX) / 2);
        if total > max_batch {
            return Err(Error::TooLarge {
                what: "batch",
                len: total,
                max: max_batch,
            });
        }
        for (k, v) in ops {
            if k.len() as u64 > u64::from(self.opts.max_key_bytes) {
                return Err(Error::TooLarge {
                    what: "key",
                    len: k.len() as u64,
                    max: self.opts.max_key_bytes.into(),
                });
            }
            if let Some(v) = v
                && v.len() as u64 > u64::from(self.opts.max_value_bytes)
            {
                return Err(Error::TooLarge {
                    what: "value",
                    len: v.len() as u64,
                    max: self.opts.max_value_bytes.into(),
                });
            }
        }
        Ok(())
    }

    /// Appends a batch; returns its last sequence number.
    fn append(&self, ops: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<u64> {
        self.check_poison()?;
        self.check_sizes(&ops)?;
        let mut frozen = None;
        let mut w = self.writer.lock();
        self.check_poison()?;
        let total: u64 = ops
            .iter()
            .map(|(k, v)| (RECORD_HEADER_LEN + k.len() + v.as_ref().map_or(0, Vec::len)) as u64)
            .sum();
        if w.offset > FILE_HEADER_LEN as u64 && w.offset + total > self.opts.max_segment_bytes {
            frozen = Some(self.freeze(&mut w).map_err(|e| self.fail(e))?);
        }
        let mut buf = std::mem::take(&mut w.buf);
        buf.clear();
        let n = ops.len();
        let synced = self.group.durable();
        let mut entries = Vec::with_capacity(n);
        for (i, (k, v)) in ops.iter().enumerate() {
            let seq = w.seq + 1 + i as u64;
            let cont = if i + 1 < n { BATCH_CONTINUES } else { 0 };
            let offset = (w.offset + buf.len() as u64) as u32;
            let flags = cont | if v.is_none() { TOMBSTONE } else { 0 };
            encode_record(
                &mut buf,
                w.active.salt,
                seq,
                synced,
                flags,
                k,
                v.as_deref().unwrap_or_default(),
            );
            entries.push(Entry {
                seq,
                offset,
                value_len: v.as_ref().map_or(0, |v| v.len() as u32),
                tombstone: v.is_none(),
            });
        }
        let end = w.offset + buf.len() as u64;
        if self.opts.preallocate_bytes > 0 && end > w.file_len {
            let step = (w.file_len + self.opts.preallocate_bytes).min(self.opts.max_segment_bytes);
            w.file_len = end.max(step);
            if let Err(e) = w.active.file.set_len(w.file_len) {
                w.buf = buf;
                return Err(self.fail(e.into()));
            }
        }
        if let Err(e) = w.active.file.write_all_at(&buf, w.offset) {
            w.buf = buf;
            return Err(self.fail(e.into()));
        }
        w.offset += buf.len() as u64;
        w.seq += n as u64;
        let last = w.seq;
        w.buf = buf;
        let batch = PendingBatch {
            last_seq: last,
            segment: Arc::clone(&w.active),
            entries: ops
                .into_iter()
                .map(|(k, _)| k.into_boxed_slice())
                .zip(entries)
                .collect(),
        };
        if self.opts.sync != SyncPolicy::Always || self.opts.regressions.visible_before_durable {
            // Readers see the page cache (as documented for `Never` and `Interval`).
            apply_batch(batch);
        } else {
            // Queued under the writer lock, so the queue is in sequence order.
            self.pending.lock().push_back(batch);
        }
        drop(w);
        if let Some(seg) = frozen {
            self.snapshot(&seg);
        }
        Ok(last)
    }

    fn sync_once(&self) -> Result<u64> {
        let (file, seq) = {
            let w = self.writer.lock();
            (Arc::clone(&w.active.file), w.seq)
        };
        file.sync_data()?;
        Ok(seq)
    }

    /// Returns once `seq` is durable, with every batch up to the durable mark visible.
    fn wait_durable(&self, seq: u64) -> Result<()> {
        self.group
            .wait(seq, || self.sync_once().map_err(Arc::new))
            .map_err(Error::Poisoned)?;
        self.publish_upto(self.group.durable());
        Ok(())
    }

    /// Makes every queued batch up to `durable` visible, oldest first: under `Always` a
    /// write enters its segment's index only once it is durable, so no reader, snapshot or
    /// compaction sees a value a power cut could take back. Applied under the queue lock,
    /// so a caller that returns from here knows every batch up to `durable` is applied.
    fn publish_upto(&self, durable: u64) {
        let mut queue = self.pending.lock();
        while queue.front().is_some_and(|b| b.last_seq <= durable) {
            if let Some(batch) = queue.pop_front() {
                apply_batch(batch);
            }
        }
    }

    fn lookup(&self, key: &[u8]) -> Option<(Arc<Segment>, Entry)> {
        let snapshot = Arc::clone(&self.segments.read());
        snapshot.iter().rev().find_map(|seg| {
            seg.index
                .read()
                .get(key)
                .copied()
                .map(|e| (Arc::clone(seg), e))
        })
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_poison()?;
        match self.lookup(key) {
            None => Ok(None),
            Some((_, e)) if e.tombstone => Ok(None),
            Some((seg, e)) => {
                let v = seg.read_value(key, e);
                // A failure while reading makes the value suspect: fail-stop.
                self.check_poison()?;
                v.map(Some)
            }
        }
    }

    /// One compaction; see the crate docs.
    fn compact(&self) -> Result<CompactionReport> {
        let _one = self.compaction.lock();
        self.check_poison()?;
        let snapshot = Arc::clone(&self.segments.read());
        let Some((_, frozen)) = snapshot.split_last() else {
            return Ok(CompactionReport::default());
        };
        if frozen.is_empty() {
            return Ok(CompactionReport::default());
        }
        let inputs: Vec<Arc<Segment>> = frozen.to_vec();
        // Every frozen segment was synced whole when it was frozen; make its last batches
        // visible before reading its index (under `Always` they wait for their writers).
        self.publish_upto(self.group.durable());
        // Every frozen segment is an input, the oldest included: no older segment remains
        // that a tombstone would have to hide, so tombstones are dropped.
        let drop_tombstones = true;
        let mut report = CompactionReport {
            inputs: inputs.iter().map(|s| s.id).collect(),
            outputs: Vec::new(),
            records: 0,
        };
        // Outputs are cut at `max_segment_bytes` (offsets are 32-bit). Each key is in exactly
        // one of them, so their order in the segment list does not matter.
        let mut outputs: Vec<Segment> = Vec::new();
        let written = self.write_compacted(&inputs, drop_tombstones, &mut outputs);
        if let Err(e) = written {
            for out in &outputs {
                let _ = self.opts.fs.remove_file(&out.path);
            }
            return Err(e);
        }
        let outputs: Vec<Arc<Segment>> = outputs.into_iter().map(Arc::new).collect();
        report.records = outputs.iter().map(|o| o.index.read().len() as u64).sum();
        report.outputs = outputs.iter().map(|o| o.id).collect();
        // The switch: the new set in the manifest, then in memory. Serialised with freezes,
        // which also change the set; writers wait only for this manifest write.
        {
            let _w = self.writer.lock();
            // Fail-stop: a store poisoned while the outputs were written does not switch.
            if let Err(e) = self.check_poison() {
                drop(_w);
                for out in &outputs {
                    let _ = self.opts.fs.remove_file(&out.path);
                }
                return Err(e);
            }
            let current = Arc::clone(&self.segments.read());
            let mut list: Vec<Arc<Segment>> = outputs.clone();
            list.extend(current.iter().skip(inputs.len()).cloned());
            // If this fails, the manifest on disk may name either set: fail-stop, and let
            // open sort it out from the manifest (both sets are complete on disk).
            self.write_manifest(&list).map_err(|e| self.fail(e))?;
            *self.segments.write() = Arc::new(list);
        }
        // The inputs are no longer named by the manifest: remove them (a crash here leaves
        // files that open removes). Readers with an older snapshot keep their open handles.
        for seg in &inputs {
            self.opts
                .fs
                .remove_file(&seg.path)
                .map_err(|e| self.fail(e.into()))?;
            let idx = self.dir.join(index_name(seg.id));
            if self.opts.fs.exists(&idx).map_err(|e| self.fail(e.into()))? {
                self.opts
                    .fs
                    .remove_file(&idx)
                    .map_err(|e| self.fail(e.into()))?;
            }
        }
        for out in &outputs {
            self.snapshot(out);
        }
        Ok(report)
    }

    /// Writes the latest live record of every key of `inputs` (newest input first) into new
    /// segments, each synced; pushes them to `outputs` as they are created.
    fn write_compacted(
        &self,
        inputs: &[Arc<Segment>],
        drop_tombstones: bool,
        outputs: &mut Vec<Segment>,
    ) -> Result<()> {
        let mut seen: HashSet<Box<[u8]>> = HashSet::new();
        let mut buf = Vec::new();
        let mut offset = FILE_HEADER_LEN as u64;
        let mut index: HashMap<Box<[u8]>, Entry> = HashMap::new();
        for seg in inputs.iter().rev() {
            let entries: Vec<(Box<[u8]>, Entry)> = seg
                .index
                .read()
                .iter()
                .map(|(k, e)| (k.clone(), *e))
                .collect();
            for (key, e) in entries {
                if !seen.insert(key.clone()) || (e.tombstone && drop_tombstones) {
                    continue;
                }
                let value = if e.tombstone {
                    Vec::new()
                } else {
                    seg.read_value(&key, e)?
                };
                let len = (RECORD_HEADER_LEN + key.len() + value.len()) as u64;
                let full = offset + buf.len() as u64 + len > self.opts.max_segment_bytes
                    && offset + buf.len() as u64 > FILE_HEADER_LEN as u64;
                if outputs.is_empty() || full {
                    if let Some(out) = outputs.last() {
                        out.file.write_all_at(&buf, offset)?;
                        out.file.sync_data()?;
                        *out.index.write() = std::mem::take(&mut index);
                    }
                    buf.clear();
                    offset = FILE_HEADER_LEN as u64;
                    let id = self.next_id.fetch_add(1, Ordering::AcqRel);
                    outputs.push(create_segment(&self.opts.fs, &self.dir, id)?);
                }
                let Some(out) = outputs.last() else {
                    continue;
                };
                let start = offset + buf.len() as u64;
                let flags = if e.tombstone { TOMBSTONE } else { 0 };
                encode_record(&mut buf, out.salt, e.seq, e.seq, flags, &key, &value);
                index.insert(
                    key,
                    Entry {
                        seq: e.seq,
                        offset: start as u32,
                        value_len: value.len() as u32,
                        tombstone: e.tombstone,
                    },
                );
                if buf.len() >= 1 << 20 {
                    out.file.write_all_at(&buf, offset)?;
                    offset += buf.len() as u64;
                    buf.clear();
                }
            }
        }
        if let Some(out) = outputs.last() {
            out.file.write_all_at(&buf, offset)?;
            out.file.sync_data()?;
            *out.index.write() = index;
        }
        Ok(())
    }

    fn frozen_count(&self) -> usize {
        self.segments.read().len().saturating_sub(1)
    }
}

fn open_inner(dir: &Path, opts: Options) -> Result<Inner> {
    opts.validate()?;
    let fs = opts.fs.clone();
    fs.create_dir_all(dir)?;
    let lock = fs.lock_dir(dir)?;
    let mut report = OpenReport::default();
    let names = fs.list(dir)?;
    let manifest_path = dir.join(MANIFEST);
    let ids = if names.iter().any(|n| n == MANIFEST) {
        manifest::decode(&fs.read(&manifest_path)?).ok_or(Error::Corruption {
            path: manifest_path.clone(),
            offset: 0,
            kind: CorruptionKind::BadManifest,
        })?
    } else {
        Vec::new()
    };
    let mut max_id = ids.iter().copied().max().unwrap_or(0);
    // Leftovers of interrupted changes: files the manifest does not name. Without a manifest
    // only a store whose creation was interrupted qualifies (segments holding no record);
    // segments with records but no manifest are a damaged store, not leftovers.
    if ids.is_empty() {
        for n in &names {
            if matches!(parse_name(n), Some((_, "seg")))
                && fs.open(&dir.join(n), durable_fs::Access::Read)?.len()? > FILE_HEADER_LEN as u64
            {
                return Err(Error::Corruption {
                    path: manifest_path,
                    offset: 0,
                    kind: CorruptionKind::BadManifest,
                });
            }
        }
    }
    for n in &names {
        let named = match parse_name(n) {
            Some((id, "seg" | "idx")) => {
                max_id = max_id.max(id);
                ids.contains(&id)
            }
            _ => !n.ends_with(TEMP_SUFFIX),
        };
        if !named {
            fs.remove_file(&dir.join(n))?;
            report.removed_files.push(n.clone());
        }
    }
    let mut list = Vec::new();
    let mut max_seq = 0;
    let mut active_end = FILE_HEADER_LEN as u64;
    let count = ids.len();
    for (i, &id) in ids.iter().enumerate() {
        let loaded = segment::load(&fs, dir, id, i + 1 == count)?;
        max_seq = max_seq.max(loaded.max_seq);
        active_end = loaded.end;
        if loaded.from_snapshot {
            report.from_snapshots += 1;
        } else {
            report.scanned += 1;
        }
        if let Some((offset, len, kind)) = loaded.torn_tail {
            report.truncated_tail = Some((loaded.segment.path.clone(), offset, len, kind));
        }
        list.push(Arc::new(loaded.segment));
    }
    let next_id = AtomicU64::new(max_id + 1);
    if list.is_empty() {
        let id = next_id.fetch_add(1, Ordering::AcqRel);
        list.push(Arc::new(create_segment(&fs, dir, id)?));
        let ids: Vec<u64> = list.iter().map(|s| s.id).collect();
        fs.atomic_replace(&manifest_path, &manifest::encode(&ids))?;
    }
    report.segments = list.len();
    let active = Arc::clone(
        list.last()
            .ok_or_else(|| Error::InvalidOptions("no segment".into()))?,
    );
    let file_len = active.file.len()?;
    let offset = active_end.min(file_len);
    Ok(Inner {
        dir: dir.to_path_buf(),
        segments: RwLock::new(Arc::new(list)),
        writer: Mutex::new(Writer {
            active,
            offset,
            file_len,
            seq: max_seq,
            buf: Vec::new(),
        }),
        group: GroupCommit::new(max_seq, |m| Arc::new(Error::Internal(m))),
        pending: Mutex::new(VecDeque::new()),
        next_id,
        compaction: Mutex::new(()),
        stop: AtomicBool::new(false),
        stop_lock: Mutex::new(()),
        stop_cv: Condvar::new(),
        report,
        _lock: lock,
        opts,
    })
}

impl LsmHash {
    /// Opens (creating if needed) the store in `dir`: takes the directory lock, reads the
    /// manifest, removes files it does not name, loads each segment's index (from its
    /// snapshot or by a CRC-checked scan), cuts a torn tail of the active segment, and starts
    /// the background compaction thread.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<LsmHash> {
        let inner = Arc::new(open_inner(dir.as_ref(), opts)?);
        let mut background = Vec::new();
        let threads: [(&str, Option<std::time::Duration>); 2] = [
            (
                "lsm-hash-sync",
                match inner.opts.sync {
                    SyncPolicy::Interval(d) => Some(d),
                    _ => None,
                },
            ),
            (
                "lsm-hash-compact",
                (inner.opts.compaction_min_segments > 0)
                    .then_some(inner.opts.compaction_check_interval),
            ),
        ];
        for (name, every) in threads {
            let Some(every) = every else { continue };
            let i = Arc::clone(&inner);
            let compact = name == "lsm-hash-compact";
            let h = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    loop {
                        {
                            let mut g = i.stop_lock.lock();
                            if !i.stop.load(Ordering::Acquire) {
                                let _ = i.stop_cv.wait_for(&mut g, every);
                            }
                        }
                        if i.stop.load(Ordering::Acquire) || i.check_poison().is_err() {
                            return;
                        }
                        if compact {
                            if i.frozen_count() >= i.opts.compaction_min_segments {
                                // A failed compaction leaves the old segments in place.
                                let _ = i.compact();
                            }
                        } else {
                            let last = i.writer.lock().seq;
                            if i.group.durable() < last && i.wait_durable(last).is_err() {
                                return;
                            }
                        }
                    }
                })
                .map_err(Error::Thread)?;
            background.push(h);
        }
        Ok(LsmHash { inner, background })
    }

    /// What open found and repaired.
    pub fn open_report(&self) -> &OpenReport {
        &self.inner.report
    }

    /// The value of `key`: the newest segment that has it decides (DDIA: "check the most
    /// recent segment's hash map; if the key is not present, check the second-most-recent").
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }

    /// True if `key` is live (no disk read). Fails with [`Error::Poisoned`] after a failed
    /// write or sync, like every call that reads data.
    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        self.inner.check_poison()?;
        Ok(matches!(self.inner.lookup(key), Some((_, e)) if !e.tombstone))
    }

    /// The failure that poisoned the store, if one did: after it every call that reads or
    /// writes data returns [`Error::Poisoned`] with it, until the store is reopened.
    /// [`LsmHash::segments`] keeps answering.
    pub fn poisoned(&self) -> Option<Arc<Error>> {
        self.inner.group.failure()
    }

    /// The highest sequence number known durable (diagnostics; answers when poisoned too).
    pub fn durable_seq(&self) -> u64 {
        self.inner.group.durable()
    }

    /// Sets `key` to `value`.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.apply(vec![(key.to_vec(), Some(value.to_vec()))])
    }

    /// Deletes `key`; returns whether it was live (a missing key writes nothing).
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        if !self.contains(key)? {
            // Absent perhaps because of another thread's delete not yet durable: under
            // `Always`, report it only once it is.
            if self.inner.opts.sync == SyncPolicy::Always {
                let last = self.inner.writer.lock().seq;
                self.inner.wait_durable(last)?;
            }
            return Ok(false);
        }
        self.apply(vec![(key.to_vec(), None)])?;
        Ok(true)
    }

    /// Applies a batch atomically (all or nothing after a crash).
    pub fn write(&self, batch: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<()> {
        self.inner.check_poison()?;
        if batch.is_empty() {
            return Ok(());
        }
        self.apply(batch.to_vec())
    }

    fn apply(&self, ops: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<()> {
        let inner = &self.inner;
        let _w = (inner.opts.sync == SyncPolicy::Always).then(|| inner.group.writer());
        let seq = inner.append(ops)?;
        if inner.opts.sync == SyncPolicy::Always {
            inner.wait_durable(seq)?;
        }
        Ok(())
    }

    /// Makes every write so far durable.
    pub fn sync(&self) -> Result<()> {
        let last = self.inner.writer.lock().seq;
        self.inner.wait_durable(last)
    }

    /// Every live `(key, value)`, sorted by key, from one snapshot of the segment list.
    /// After a failure poisons the store, the next item is the [`Error::Poisoned`] error and
    /// the iteration ends (also for iterators created before the failure).
    pub fn iter(&self) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + use<> {
        let inner = Arc::clone(&self.inner);
        let snapshot = Arc::clone(&self.inner.segments.read());
        let mut latest: HashMap<Box<[u8]>, (usize, Entry)> = HashMap::new();
        for (i, seg) in snapshot.iter().enumerate() {
            for (k, e) in seg.index.read().iter() {
                latest.insert(k.clone(), (i, *e)); // later segments overwrite older ones
            }
        }
        let mut live: Vec<(Box<[u8]>, usize, Entry)> = latest
            .into_iter()
            .filter(|(_, (_, e))| !e.tombstone)
            .map(|(k, (i, e))| (k, i, e))
            .collect();
        live.sort_by(|a, b| a.0.cmp(&b.0));
        let mut done = false;
        live.into_iter()
            .map(Some)
            .chain(std::iter::once(None))
            .map_while(move |item| {
                if done {
                    return None;
                }
                let r = match inner.check_poison() {
                    Err(e) => Err(e),
                    Ok(()) => {
                        let (k, i, e) = item?;
                        snapshot
                            .get(i)
                            .ok_or_else(|| Error::Internal(format!("segment {i} vanished")))
                            .and_then(|seg| seg.read_value(&k, e))
                            .and_then(|v| inner.check_poison().map(|()| (k.into_vec(), v)))
                    }
                };
                done = r.is_err();
                Some(r)
            })
    }

    /// Merges every frozen segment into one (only the latest live record of each key), makes
    /// it durable, switches the manifest, then deletes the inputs. Reads and writes continue.
    pub fn compact_now(&self) -> Result<CompactionReport> {
        self.inner.compact()
    }

    /// The segments, oldest first (the last is the active one).
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let snapshot = Arc::clone(&self.inner.segments.read());
        let n = snapshot.len();
        snapshot
            .iter()
            .enumerate()
            .map(|(i, s)| SegmentInfo {
                id: s.id,
                keys: s.index.read().len(),
                bytes: s.file.len().unwrap_or(0),
                frozen: i + 1 < n,
            })
            .collect()
    }

    /// Syncs and closes. Dropping does the same, ignoring errors.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        let inner = &self.inner;
        inner.stop.store(true, Ordering::Release);
        {
            let _g = inner.stop_lock.lock();
            inner.stop_cv.notify_all();
        }
        for h in self.background.drain(..) {
            let _ = h.join();
        }
        inner.check_poison()?;
        let last = inner.writer.lock().seq;
        inner.wait_durable(last)
    }
}

impl Drop for LsmHash {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
