//! [`LsmHash`]: open, reads, writes, freezing segments, compaction.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use durable_fs::{DirLock, DurableFs, GroupCommit, Ticker};
use kv_core::format::{
    FILE_HEADER_LEN, FileHeader, FileKind, MAX_FILE_ID, TOMBSTONE, VERSION, encode_hint,
    encode_record, is_own_temp, parse_name, record_len,
};
use kv_core::{
    Appender, CompactionReport, CorruptionKind, Damage, DataFile, Error, KvStore, Pairs, Result,
    Stats, SyncPolicy, WriteBatch, max_batch_bytes, offset32,
};
use parking_lot::{Mutex, RwLock};

use crate::manifest::{self, MANIFEST};
use crate::options::Options;
use crate::segment::{
    self, Entry, INDEX_MAGIC, Index, LoadMode, SEGMENT_MAGIC, Segment, index_name, segment_name,
    snapshot_entries,
};

/// A snapshot of the segment list, oldest first.
type Snapshot = Arc<Vec<Arc<Segment>>>;
/// Live keys with the index (in a [`Snapshot`]) of the segment holding their latest record.
type Live = Vec<(Box<[u8]>, usize, Entry)>;

/// What [`LsmHash::open`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Segments in the manifest.
    pub segments: usize,
    /// Segments whose index came from a snapshot.
    pub from_snapshots: usize,
    /// Segments scanned record by record.
    pub scanned: usize,
    /// A torn tail of the active segment: cut (left on disk when read-only).
    pub truncated_tail: Option<Damage>,
    /// Damaged ranges skipped (only with
    /// [`RecoveryMode::SkipCorrupt`](kv_core::RecoveryMode::SkipCorrupt)).
    pub skipped: Vec<Damage>,
    /// Files not named by the manifest (leftovers of an interrupted change): removed
    /// (left on disk when read-only).
    pub removed_files: Vec<String>,
    /// Where the bytes of a cut torn tail were kept (`quarantine/<segment>.<offset>.<crc32>`) before
    /// the cut: recovery never destroys what it cannot prove is garbage. Empty when only
    /// zeros were cut, and for a read-only open (which cuts nothing).
    pub quarantined: Vec<PathBuf>,
    /// Live keys: counted by [`LsmHash::verify`] (an open leaves it 0; see [`LsmHash::len`]).
    pub keys: u64,
    /// Index snapshots checked against a scan of their segment and found to match (only
    /// [`LsmHash::verify`] checks them; opens use or skip them).
    pub snapshots_checked: usize,
    /// Intact index snapshots describing another segment or length (crash leftovers opens
    /// never use), found by [`LsmHash::verify`].
    pub stale_snapshots: Vec<PathBuf>,
}

/// One segment in [`LsmHash::segments`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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

struct Writer {
    /// The active segment's write path (its `DataFile` is the segment's).
    app: Appender,
    active: Arc<Segment>,
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
    /// Verified values by record (seq and key).
    cache: kv_core::ValueCache,
    /// `None` when opened read-only.
    writer: Option<Mutex<Writer>>,
    /// The highest seq on disk at open (what a read-only store reports as written), and where
    /// the active segment's records ended then.
    opened_seq: u64,
    opened_end: u64,
    group: GroupCommit<Arc<Error>>,
    /// Batches written but not yet visible, in sequence order (`Always` only).
    pending: Mutex<VecDeque<PendingBatch>>,
    next_id: AtomicU64,
    compaction: Mutex<()>,
    /// Serialises changes of the segment set with their manifest writes: a freeze (under
    /// the writer, which takes this after it) and a compaction's switch (which takes only
    /// this, so puts that do not freeze go on while its manifest is written and synced).
    set_lock: Mutex<()>,
    snapshot_failures: AtomicU64,
    /// Compactions done and failed, and the last failure (for `stats`).
    compactions: kv_core::Jobs,
    report: RecoveryReport,
    _lock: Option<DirLock>,
}

/// The log-structured hash table. `Send + Sync`; reads never block on writes or compaction.
pub struct LsmHash {
    inner: Arc<Inner>,
    /// The interval syncer and the background compaction, if configured.
    ticker: Ticker,
}

impl std::fmt::Debug for LsmHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LsmHash")
            .field("dir", &self.inner.dir)
            .field("segments", &self.inner.segments.read().len())
            .finish_non_exhaustive()
    }
}

/// Bytes of records in `seg`: its file without the header (frozen segments and compaction
/// outputs end exactly at their records), or up to `end` for the active segment, whose file
/// holds preallocated zeros after them.
fn record_bytes(seg: &Segment, end: Option<u64>) -> u64 {
    let len = end.unwrap_or_else(|| seg.data.file.len().unwrap_or(0));
    len.saturating_sub(FILE_HEADER_LEN as u64)
}

/// Creates segment file `id` durably with its header.
fn create_segment(fs: &DurableFs, dir: &Path, id: u64) -> Result<Segment> {
    let path = dir.join(segment_name(id));
    let data = DataFile::create(fs, path, &SEGMENT_MAGIC, id, FileKind::Written)?;
    Ok(Segment {
        data,
        index: RwLock::new(Index::default()),
    })
}

/// Puts a batch's entries into its segment's index.
fn apply_batch(batch: PendingBatch) {
    let mut index = batch.segment.index.write();
    for (k, e) in batch.entries {
        index.insert(&k, e);
    }
}

impl Inner {
    fn check_poison(&self) -> Result<()> {
        self.group.check().map_err(Error::Poisoned)
    }

    /// A fresh segment id; past the ten digits of a name it is an error, never a file the
    /// next open would not recognise.
    fn new_id(&self) -> Result<u64> {
        let id = self.next_id.fetch_add(1, Ordering::AcqRel);
        if id > MAX_FILE_ID {
            return Err(Error::Internal(format!(
                "segment id {id}: the ten-digit segment ids are used up"
            )));
        }
        Ok(id)
    }

    /// Where the active segment's records end (its file may be preallocated past that).
    fn active_end(&self) -> u64 {
        self.writer
            .as_ref()
            .map_or(self.opened_end, |w| w.lock().app.offset)
    }

    fn writer(&self) -> Result<&Mutex<Writer>> {
        self.writer.as_ref().ok_or(Error::ReadOnly)
    }

    fn last_seq(&self) -> u64 {
        self.writer
            .as_ref()
            .map_or(self.opened_seq, |w| w.lock().app.seq)
    }

    /// Poisons the store with `e` (fail-stop) and returns the first failure as `Poisoned`.
    fn fail(&self, e: Error) -> Error {
        log::error!("{}: poisoned (fail-stop): {e}", self.dir.display());
        Error::Poisoned(self.group.poison(Arc::new(e)))
    }

    fn write_manifest(&self, list: &[Arc<Segment>]) -> Result<()> {
        let ids: Vec<u64> = list.iter().map(|s| s.id()).collect();
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
        let header = FileHeader::new(seg.data.salt, seg.id());
        let path = self.dir.join(index_name(seg.id()));
        let written = seg.data.file.len().map_err(Error::from).and_then(|len| {
            let bytes = encode_hint(header, &INDEX_MAGIC, &entries, len);
            Ok(self.opts.fs.atomic_replace(&path, &bytes)?)
        });
        if written.is_err() {
            self.snapshot_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Freezes the active segment: sync it, create the next one, switch the manifest.
    /// Returns the frozen segment (for its snapshot, written after the lock is released).
    fn freeze(&self, w: &mut Writer) -> Result<Arc<Segment>> {
        // Frozen segments end exactly at their records, synced.
        w.app.seal()?;
        self.group.advance(w.app.seq);
        let id = self.new_id()?;
        let fresh = Arc::new(create_segment(&self.opts.fs, &self.dir, id)?);
        let _set = self.set_lock.lock();
        let mut list: Vec<Arc<Segment>> = self.segments.read().iter().cloned().collect();
        list.push(Arc::clone(&fresh));
        self.write_manifest(&list)?;
        *self.segments.write() = Arc::new(list);
        w.app.start_file(fresh.data.clone());
        let frozen = std::mem::replace(&mut w.active, fresh);
        Ok(frozen)
    }

    /// Appends a batch; returns its last sequence number.
    fn append(&self, batch: WriteBatch) -> Result<u64> {
        self.check_poison()?;
        let mut frozen = None;
        let mut w = self.writer()?.lock();
        self.check_poison()?;
        if w.app.is_full(batch.encoded_len(), self.opts.max_file_bytes) {
            frozen = Some(self.freeze(&mut w).map_err(|e| self.fail(e))?);
        }
        // The indexes' 32-bit offsets are checked before anything is written (the limits and
        // the freeze keep them in range; a failure here is a bug).
        let end = w.app.offset + batch.encoded_len();
        if end > u64::from(u32::MAX) {
            return Err(Error::Internal(format!(
                "a batch would end at {end}, past 4 GiB"
            )));
        }
        let synced = self.group.durable();
        let (prealloc, max) = (self.opts.preallocate_bytes, self.opts.max_file_bytes);
        let appended = w
            .app
            .append(&batch, synced, prealloc, max)
            .map_err(|e| self.fail(e.into()))?;
        let mut entries = Vec::with_capacity(appended.len());
        for ((key, _), a) in batch.into_ops().into_iter().zip(&appended) {
            let offset = offset32(&w.app.data.path, a.offset).map_err(|e| self.fail(e))?;
            let e = Entry {
                seq: a.seq,
                offset,
                value_len: a.value_len,
                tombstone: a.tombstone,
            };
            entries.push((key.into_boxed_slice(), e));
        }
        let last = w.app.seq;
        let batch = PendingBatch {
            last_seq: last,
            segment: Arc::clone(&w.active),
            entries,
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
            let w = self.writer()?.lock();
            (Arc::clone(w.app.file()), w.app.seq)
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
        snapshot
            .iter()
            .rev()
            .find_map(|seg| seg.index.read().get(key).map(|e| (Arc::clone(seg), e)))
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_poison()?;
        match self.lookup(key) {
            None => Ok(None),
            Some((_, e)) if e.tombstone => Ok(None),
            Some((seg, e)) => {
                if let Some(v) = self.cache.get(e.seq, key) {
                    return Ok(Some(v));
                }
                let v = seg.read_value(key, e);
                // A failure while reading makes the value suspect: fail-stop.
                self.check_poison()?;
                let v = v?;
                self.cache.insert(e.seq, key, &v);
                Ok(Some(v))
            }
        }
    }

    /// One compaction, counted (and its failure kept) for `stats`.
    fn compact_counted(&self) -> Result<CompactionReport> {
        let r = self.compact();
        self.compactions.record(&r);
        r
    }

    /// One compaction; see the crate docs.
    fn compact(&self) -> Result<CompactionReport> {
        let _one = self.compaction.lock();
        self.check_poison()?;
        self.writer()?;
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
        let mut report = CompactionReport::default();
        report.inputs = inputs.iter().map(|s| s.id()).collect();
        report.bytes_before = inputs.iter().map(|s| record_bytes(s, None)).sum();
        // Outputs are cut at `max_file_bytes` (offsets are 32-bit). Each key is in exactly
        // one of them, so their order in the segment list does not matter.
        let mut outputs: Vec<Segment> = Vec::new();
        let written = self.write_compacted(&inputs, drop_tombstones, &mut outputs);
        if let Err(e) = written {
            for out in &outputs {
                let _ = self.opts.fs.remove_file(&out.data.path);
            }
            return Err(e);
        }
        let outputs: Vec<Arc<Segment>> = outputs.into_iter().map(Arc::new).collect();
        report.records = outputs.iter().map(|o| o.index.read().len() as u64).sum();
        report.outputs = outputs.iter().map(|o| o.id()).collect();
        report.bytes_after = outputs.iter().map(|o| record_bytes(o, None)).sum();
        // The switch: the new set in the manifest, then in memory. Serialised with freezes,
        // which also change the set; only a writer that freezes meanwhile waits for it.
        {
            let set = self.set_lock.lock();
            // Fail-stop: a store poisoned while the outputs were written does not switch.
            if let Err(e) = self.check_poison() {
                drop(set);
                for out in &outputs {
                    let _ = self.opts.fs.remove_file(&out.data.path);
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
                .remove_file(&seg.data.path)
                .map_err(|e| self.fail(e.into()))?;
            let idx = self.dir.join(index_name(seg.id()));
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
        let mut index = Index::default();
        for seg in inputs.iter().rev() {
            let entries: Vec<(Box<[u8]>, Entry)> = seg
                .index
                .read()
                .iter()
                .map(|(k, e)| (Box::from(k), e))
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
                let len = record_len(key.len(), value.len());
                let full = offset + buf.len() as u64 + len > self.opts.max_file_bytes
                    && offset + buf.len() as u64 > FILE_HEADER_LEN as u64;
                if outputs.is_empty() || full {
                    if let Some(out) = outputs.last() {
                        out.data.file.write_all_at(&buf, offset)?;
                        out.data.file.sync_data()?;
                        *out.index.write() = std::mem::take(&mut index);
                    }
                    buf.clear();
                    offset = FILE_HEADER_LEN as u64;
                    let id = self.new_id()?;
                    outputs.push(create_segment(&self.opts.fs, &self.dir, id)?);
                }
                let Some(out) = outputs.last() else {
                    continue;
                };
                let start = offset + buf.len() as u64;
                let flags = if e.tombstone { TOMBSTONE } else { 0 };
                encode_record(&mut buf, out.data.salt, e.seq, e.seq, flags, &key, &value);
                index.insert(
                    &key,
                    Entry {
                        seq: e.seq,
                        offset: offset32(&out.data.path, start)?,
                        value_len: value.len() as u32,
                        tombstone: e.tombstone,
                    },
                );
                if buf.len() >= 1 << 20 {
                    out.data.file.write_all_at(&buf, offset)?;
                    offset += buf.len() as u64;
                    buf.clear();
                }
            }
        }
        if let Some(out) = outputs.last() {
            out.data.file.write_all_at(&buf, offset)?;
            out.data.file.sync_data()?;
            *out.index.write() = index;
        }
        Ok(())
    }

    fn frozen_count(&self) -> usize {
        self.segments.read().len().saturating_sub(1)
    }
}

/// The segment ids the manifest names (oldest first), after checking that a store without a
/// manifest holds no record.
fn read_manifest(fs: &DurableFs, dir: &Path, names: &[String]) -> Result<Vec<u64>> {
    let manifest_path = dir.join(MANIFEST);
    if names.iter().any(|n| n == MANIFEST) {
        return kv_core::read_at_most(fs, &manifest_path, kv_core::MAX_MARKER_LEN)?
            .and_then(|b| manifest::decode(&b))
            .ok_or_else(|| Error::corrupt(manifest_path, 0, CorruptionKind::BadManifest));
    }
    // Without a manifest only a store whose creation was interrupted qualifies (segments
    // holding no record); segments with records but no manifest are a damaged store.
    for n in names {
        if matches!(parse_name(n), Some((_, "seg")))
            && fs.open(&dir.join(n), durable_fs::Access::Read)?.len()? > FILE_HEADER_LEN as u64
        {
            return Err(Error::corrupt(
                manifest_path,
                0,
                CorruptionKind::BadManifest,
            ));
        }
    }
    Ok(Vec::new())
}

/// A read-only recovery: it takes no lock, so a writer may freeze, compact (switch the
/// manifest, remove inputs) while it reads. An error seen while the manifest or the
/// directory changed is retried, with a short wait, up to 20 times before it is believed.
fn recover_beside_writer(
    fs: &DurableFs,
    dir: &Path,
    opts: &Options,
    verify: bool,
) -> Result<Recovered> {
    let state = || {
        let mut names = fs.list(dir).unwrap_or_default();
        names.sort();
        let manifest = kv_core::read_at_most(fs, &dir.join(MANIFEST), kv_core::MAX_MARKER_LEN);
        (manifest.ok().flatten(), names)
    };
    let mut attempts = 0u32;
    loop {
        let before = state();
        let r = recover(fs, dir, opts, verify);
        attempts += 1;
        if r.is_ok() || attempts >= 20 || state() == before {
            return r;
        }
        std::thread::sleep(std::time::Duration::from_millis(u64::from(attempts)));
    }
}

/// What [`recover`] hands to the store.
struct Recovered {
    list: Vec<Arc<Segment>>,
    max_seq: u64,
    /// Where the active segment's records end.
    active_end: u64,
    /// The active segment's records end with a seal.
    active_sealed: bool,
    max_id: u64,
    report: RecoveryReport,
}

/// Reads the manifest, removes (unless read-only) the files it does not name, and loads
/// every segment it names.
/// `verify`: scan every segment (index snapshots are not used but checked against the scan).
fn recover(fs: &DurableFs, dir: &Path, opts: &Options, verify: bool) -> Result<Recovered> {
    let mut report = RecoveryReport::default();
    let names = fs.list(dir)?;
    let ids = read_manifest(fs, dir, &names)?;
    // The next id comes from segments (named or leftover); an index snapshot alone (an
    // orphan, or a stray name) never advances it. Checked before anything is removed or cut.
    let mut max_id = ids.iter().copied().max().unwrap_or(0);
    for n in &names {
        if let Some((id, "seg")) = parse_name(n) {
            max_id = max_id.max(id);
        }
    }
    if max_id >= MAX_FILE_ID && !opts.read_only {
        let kind = CorruptionKind::OutOfRange {
            what: "segment id",
            value: max_id.saturating_add(1),
            max: MAX_FILE_ID,
        };
        return Err(Error::corrupt(dir.join(segment_name(max_id)), 0, kind));
    }
    // Every segment the manifest names must be there: a lost one is corruption naming it,
    // found before anything is removed or cut.
    let present: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    for &id in &ids {
        let name = segment_name(id);
        if !present.contains(name.as_str()) {
            return Err(Error::corrupt(
                dir.join(name),
                0,
                CorruptionKind::MissingFile,
            ));
        }
    }
    for n in &names {
        let named = match parse_name(n) {
            Some((id, "seg" | "idx")) => ids.contains(&id),
            // Only the store's own temporaries: a user's `draft.tmp` is not the store's.
            _ => !is_own_temp(n, &[MANIFEST], &["idx"]),
        };
        if !named {
            if !opts.read_only {
                fs.remove_file(&dir.join(n))?;
            }
            report.removed_files.push(n.clone());
        }
    }
    let mut out = Recovered {
        list: Vec::new(),
        max_seq: 0,
        active_end: FILE_HEADER_LEN as u64,
        active_sealed: false,
        max_id,
        report,
    };
    for (i, &id) in ids.iter().enumerate() {
        let mode = LoadMode {
            newest: i + 1 == ids.len(),
            read_only: opts.read_only,
            recovery: opts.recovery,
            verify,
        };
        let loaded = segment::load(fs, dir, id, mode)?;
        out.max_seq = out.max_seq.max(loaded.max_seq);
        out.active_end = loaded.end;
        out.active_sealed = loaded.sealed;
        if loaded.from_snapshot {
            out.report.from_snapshots += 1;
        } else {
            out.report.scanned += 1;
        }
        match loaded.snapshot_check {
            Some(kv_core::format::HintCheck::Matches) => out.report.snapshots_checked += 1,
            Some(_) => out
                .report
                .stale_snapshots
                .push(dir.join(crate::segment::index_name(id))),
            None => {}
        }
        let path = &loaded.segment.data.path;
        if let Some((offset, len, kind)) = loaded.torn_tail {
            out.report.truncated_tail = Some(Damage::new(path.clone(), offset, len, kind));
        }
        out.report.quarantined.extend(loaded.quarantined);
        for (offset, len, kind) in loaded.skipped {
            out.report
                .skipped
                .push(Damage::new(path.clone(), offset, len, kind));
        }
        out.list.push(Arc::new(loaded.segment));
    }
    Ok(out)
}

fn open_inner(dir: &Path, opts: Options) -> Result<Inner> {
    opts.validate()?;
    let fs = opts.fs.clone();
    // Only an lsm-hash store (or, read-write, an empty or new directory): anything else is
    // refused before anything is created, read or removed.
    let lock = if opts.read_only {
        fs.require_store(dir, &crate::segment::STORE_KIND)??;
        None
    } else {
        Some(fs.open_store(dir, &crate::segment::STORE_KIND)??)
    };
    let mut r = if opts.read_only {
        recover_beside_writer(&fs, dir, &opts, false)?
    } else {
        recover(&fs, dir, &opts, false)?
    };
    let next_id = AtomicU64::new(r.max_id + 1);
    // New records go to a segment of the current format: an empty store, or one whose
    // active segment was written in format 1 (its records cannot be mixed with format 2
    // ones), gets a fresh active segment.
    let stale = r.list.last().is_none_or(|s| s.data.version != VERSION);
    if stale && !opts.read_only {
        let id = next_id.fetch_add(1, Ordering::AcqRel);
        r.list.push(Arc::new(create_segment(&fs, dir, id)?));
        let ids: Vec<u64> = r.list.iter().map(|s| s.id()).collect();
        fs.atomic_replace(&dir.join(MANIFEST), &manifest::encode(&ids))?;
        r.active_end = FILE_HEADER_LEN as u64;
        r.active_sealed = false;
    }
    r.report.segments = r.list.len();
    let writer = match r.list.last() {
        Some(active) if !opts.read_only => {
            let file_len = active.data.file.len()?;
            let offset = r.active_end.min(file_len);
            let mut app = Appender::new(active.data.clone(), offset, file_len, r.max_seq);
            if r.active_sealed {
                app.mark_sealed();
            }
            // What recovery read of the active segment is durable now (it synced it): sealed,
            // so bit rot in those records is corruption at later opens, not a torn tail. Not
            // after a salvage: what `SkipCorrupt` kept is not claimed durable for it.
            if r.report.skipped.is_empty() {
                app.seal()?;
            }
            Some(Mutex::new(Writer {
                app,
                active: Arc::clone(active),
            }))
        }
        _ => None,
    };
    Ok(Inner {
        dir: dir.to_path_buf(),
        segments: RwLock::new(Arc::new(r.list)),
        cache: kv_core::ValueCache::new(opts.cache_bytes),
        writer,
        opened_seq: r.max_seq,
        opened_end: r.active_end,
        group: GroupCommit::new(r.max_seq, |m| Arc::new(Error::Internal(m))),
        pending: Mutex::new(VecDeque::new()),
        next_id,
        compaction: Mutex::new(()),
        set_lock: Mutex::new(()),
        snapshot_failures: AtomicU64::new(0),
        compactions: kv_core::Jobs::default(),
        report: r.report,
        _lock: lock,
        opts,
    })
}

impl LsmHash {
    /// Checks every byte of the store in `dir` and changes nothing (a read-only open's rules,
    /// without the lock, beside a running writer too): the identity file, the manifest,
    /// every record of every segment it names, live or overwritten, tombstones and seals
    /// included, and every index snapshot against a scan of its segment. Damage is
    /// [`Error::Corruption`] naming the file and offset; a torn tail that an open would cut
    /// is not damage: it is in the report's `truncated_tail`, as a read-only open reports it.
    /// Files the manifest does not name (leftovers a read-write open removes) are listed in
    /// `removed_files` and not read.
    ///
    /// ```
    /// use lsm_hash::{LsmHash, Options};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let dir = tmp.path().join("db");
    /// let db = LsmHash::open(&dir, Options::default())?;
    /// db.put(b"k", b"v")?;
    /// db.close()?;
    /// let report = LsmHash::verify(&dir, Options::default())?;
    /// assert_eq!(report.scanned, report.segments);
    /// assert!(report.truncated_tail.is_none());
    /// # Ok::<(), lsm_hash::Error>(())
    /// ```
    pub fn verify(dir: impl AsRef<Path>, opts: Options) -> Result<RecoveryReport> {
        // What an open would do, without doing it: a torn tail is reported, damage refused
        // (never skipped, whatever recovery mode the caller's options carry).
        let opts = opts
            .with_read_only(true)
            .with_recovery(kv_core::RecoveryMode::TolerateTornTail);
        opts.validate()?;
        let dir = dir.as_ref();
        opts.fs.require_store(dir, &crate::segment::STORE_KIND)??;
        let mut r = recover_beside_writer(&opts.fs, dir, &opts, true)?;
        r.report.segments = r.list.len();
        // Live keys: the newest entry of each key, newest segment first, is not a tombstone.
        let mut newest: std::collections::HashMap<Box<[u8]>, bool> = Default::default();
        for seg in r.list.iter().rev() {
            for (k, e) in seg.index.read().iter() {
                newest.entry(Box::from(k)).or_insert(!e.tombstone);
            }
        }
        r.report.keys = newest.values().filter(|live| **live).count() as u64;
        Ok(r.report)
    }

    /// Opens (creating if needed) the store in `dir`: takes the directory lock, reads the
    /// manifest, removes files it does not name, loads each segment's index (from its
    /// snapshot or by a CRC-checked scan), cuts a torn tail of the active segment, and starts
    /// the background threads. With [`Options::read_only`] it takes no lock and writes
    /// nothing (a torn tail is only left out in memory).
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let db = lsm_hash::LsmHash::open(tmp.path().join("db"), lsm_hash::Options::default())?;
    /// assert!(db.is_empty()?);
    /// # Ok::<(), lsm_hash::Error>(())
    /// ```
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<LsmHash> {
        let inner = Arc::new(open_inner(dir.as_ref(), opts)?);
        let mut ticker = Ticker::new();
        if inner.writer.is_some() {
            if let SyncPolicy::Interval(every) = inner.opts.sync {
                let i = Arc::clone(&inner);
                ticker
                    .spawn("lsm-hash-sync", every, move || {
                        let last = i.last_seq();
                        i.check_poison().is_ok()
                            && (i.group.durable() >= last || i.wait_durable(last).is_ok())
                    })
                    .map_err(Error::Thread)?;
            }
            if inner.opts.compaction_min_segments > 0 {
                let i = Arc::clone(&inner);
                let every = inner.opts.compaction_check_interval;
                ticker
                    .spawn("lsm-hash-compact", every, move || {
                        if i.check_poison().is_err() {
                            return false;
                        }
                        if i.frozen_count() >= i.opts.compaction_min_segments {
                            // A failed compaction leaves the old segments in place.
                            if let Err(e) = i.compact_counted() {
                                log::error!(
                                    "{}: background compaction failed: {e}",
                                    i.dir.display()
                                );
                            }
                        }
                        true
                    })
                    .map_err(Error::Thread)?;
            }
        }
        Ok(LsmHash { inner, ticker })
    }

    /// What open found and repaired.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = lsm_hash::LsmHash::open(tmp.path(), lsm_hash::Options::default())?;
    /// assert_eq!(db.recovery_report().keys, 0);
    /// # Ok::<(), lsm_hash::Error>(())
    /// ```
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// The value of `key`: the newest segment that has it decides (DDIA: "check the most
    /// recent segment's hash map; if the key is not present, check the second-most-recent").
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = lsm_hash::LsmHash::open(tmp.path(), lsm_hash::Options::default())?;
    /// db.put(b"k", b"v")?;
    /// assert_eq!(db.get(b"k")?, Some(b"v".to_vec()));
    /// assert_eq!(db.get(b"absent")?, None);
    /// # Ok::<(), lsm_hash::Error>(())
    /// ```
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }

    /// True if `key` is live (no disk read). Fails with [`Error::Poisoned`] after a failed
    /// write or sync, like every call that reads data.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = lsm_hash::LsmHash::open(tmp.path(), lsm_hash::Options::default())?;
    /// db.put(b"k", b"v")?;
    /// assert!(db.contains(b"k")?);
    /// assert!(!db.contains(b"absent")?);
    /// # Ok::<(), lsm_hash::Error>(())
    /// ```
    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        self.inner.check_poison()?;
        Ok(matches!(self.inner.lookup(key), Some((_, e)) if !e.tombstone))
    }

    /// The failure that poisoned the store, if one did: after it every call that reads or
    /// writes data returns [`Error::Poisoned`] with it, until the store is reopened.
    /// [`LsmHash::segments`] and [`LsmHash::stats`] keep answering.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = lsm_hash::LsmHash::open(tmp.path(), lsm_hash::Options::default())?;
    /// assert!(db.poisoned().is_none()); // healthy
    /// # Ok::<(), lsm_hash::Error>(())
    /// ```
    pub fn poisoned(&self) -> Option<Arc<Error>> {
        self.inner.group.failure()
    }

    /// The highest sequence number known durable (diagnostics; answers when poisoned too).
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = lsm_hash::LsmHash::open(tmp.path(), lsm_hash::Options::default())?;
    /// db.put(b"k", b"v")?;
    /// assert!(db.durable_seq() >= 1);
    /// # Ok::<(), lsm_hash::Error>(())
    /// ```
    pub fn durable_seq(&self) -> u64 {
        self.inner.group.durable()
    }

    /// Sets `key` to `value` (an empty value is a value, not a delete).
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = lsm_hash::LsmHash::open(tmp.path(), lsm_hash::Options::default())?;
    /// db.put(b"k", b"v")?; // durable when it returns (SyncPolicy::Always)
    /// db.put(b"empty", b"")?; // an empty value is a value
    /// assert_eq!(db.get(b"empty")?, Some(Vec::new()));
    /// # Ok::<(), lsm_hash::Error>(())
    /// ```
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut b = WriteBatch::new();
        b.put(key, value);
        self.write(b)
    }

    /// Deletes `key`; returns whether it was live (a missing key writes nothing).
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = lsm_hash::LsmHash::open(tmp.path(), lsm_hash::Options::default())?;
    /// db.put(b"k", b"v")?;
    /// assert!(db.delete(b"k")?);
    /// assert!(!db.delete(b"k")?); // already gone
    /// # Ok::<(), lsm_hash::Error>(())
    /// ```
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        self.inner.writer()?;
        if !self.contains(key)? {
            // Absent perhaps because of another thread's delete not yet durable: under
            // `Always`, report it only once it is.
            if self.inner.opts.sync == SyncPolicy::Always {
                self.inner.wait_durable(self.inner.last_seq())?;
            }
            return Ok(false);
        }
        let mut b = WriteBatch::new();
        b.delete(key);
        self.write(b)?;
        Ok(true)
    }

    /// Applies a batch atomically (all or nothing after a crash). Durable on return under
    /// [`SyncPolicy::Always`], and visible to other threads only from then on.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = lsm_hash::LsmHash::open(tmp.path(), lsm_hash::Options::default())?;
    /// let mut batch = lsm_hash::WriteBatch::new();
    /// batch.put(b"a", b"1");
    /// batch.delete(b"b");
    /// db.write(batch)?; // all or nothing, after a crash too
    /// assert_eq!(db.get(b"a")?, Some(b"1".to_vec()));
    /// # Ok::<(), lsm_hash::Error>(())
    /// ```
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        let inner = &self.inner;
        inner.check_poison()?;
        inner.writer()?;
        if batch.is_empty() {
            return Ok(());
        }
        let o = &inner.opts;
        let max_batch = max_batch_bytes(o.max_file_bytes);
        batch.check_sizes(o.max_key_bytes, o.max_value_bytes, max_batch)?;
        let _w = (o.sync == SyncPolicy::Always).then(|| inner.group.writer());
        let seq = inner.append(batch)?;
        if o.sync == SyncPolicy::Always {
            inner.wait_durable(seq)?;
        }
        Ok(())
    }

    /// Makes every write so far durable.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # use lsm_hash::{LsmHash, Options, SyncPolicy};
    /// let db = LsmHash::open(tmp.path(), Options::default().with_sync(SyncPolicy::Never))?;
    /// db.put(b"k", b"v")?;
    /// db.sync()?; // durable from here
    /// assert!(db.durable_seq() >= 1);
    /// # Ok::<(), lsm_hash::Error>(())
    /// ```
    pub fn sync(&self) -> Result<()> {
        self.inner.writer()?;
        self.inner.wait_durable(self.inner.last_seq())
    }

    /// The live keys with where their latest record is, from one snapshot of the segment
    /// list, sorted by key.
    fn live(&self) -> (Snapshot, Live) {
        let snapshot = Arc::clone(&self.inner.segments.read());
        let mut latest: HashMap<Box<[u8]>, (usize, Entry)> = HashMap::new();
        for (i, seg) in snapshot.iter().enumerate() {
            for (k, e) in seg.index.read().iter() {
                latest.insert(Box::from(k), (i, e)); // later segments overwrite older ones
            }
        }
        let mut live: Live = latest
            .into_iter()
            .filter(|(_, (_, e))| !e.tombstone)
            .map(|(k, (i, e))| (k, i, e))
            .collect();
        live.sort_by(|a, b| a.0.cmp(&b.0));
        (snapshot, live)
    }

    /// Number of live keys (no disk read).
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = lsm_hash::LsmHash::open(tmp.path(), lsm_hash::Options::default())?;
    /// db.put(b"a", b"1")?;
    /// db.put(b"a", b"2")?;
    /// assert_eq!(db.len()?, 1);
    /// # Ok::<(), lsm_hash::Error>(())
    /// ```
    pub fn len(&self) -> Result<usize> {
        self.inner.check_poison()?;
        Ok(self.live().1.len())
    }

    /// True when no key is live.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = lsm_hash::LsmHash::open(tmp.path(), lsm_hash::Options::default())?;
    /// assert!(db.is_empty()?);
    /// db.put(b"a", b"1")?;
    /// assert!(!db.is_empty()?);
    /// # Ok::<(), lsm_hash::Error>(())
    /// ```
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Live keys, sorted (a snapshot; no disk read).
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = lsm_hash::LsmHash::open(tmp.path(), lsm_hash::Options::default())?;
    /// db.put(b"b", b"1")?;
    /// db.put(b"a", b"2")?;
    /// let mut keys = db.keys()?;
    /// keys.sort();
    /// assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec()]);
    /// # Ok::<(), lsm_hash::Error>(())
    /// ```
    pub fn keys(&self) -> Result<Vec<Vec<u8>>> {
        self.inner.check_poison()?;
        Ok(self
            .live()
            .1
            .into_iter()
            .map(|(k, _, _)| k.into_vec())
            .collect())
    }

    /// Folds over every live pair, in key order.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = lsm_hash::LsmHash::open(tmp.path(), lsm_hash::Options::default())?;
    /// db.put(b"a", b"12")?;
    /// db.put(b"b", b"345")?;
    /// let value_bytes = db.fold(0, |n, _key, value| n + value.len())?;
    /// assert_eq!(value_bytes, 5);
    /// # Ok::<(), lsm_hash::Error>(())
    /// ```
    pub fn fold<A>(&self, init: A, mut f: impl FnMut(A, &[u8], &[u8]) -> A) -> Result<A> {
        let mut acc = init;
        for item in self.iter() {
            let (k, v) = item?;
            acc = f(acc, &k, &v);
        }
        Ok(acc)
    }

    /// Every live `(key, value)`, sorted by key, from one snapshot of the segment list.
    /// After a failure poisons the store, the next item is the [`Error::Poisoned`] error and
    /// the iteration ends (also for iterators created before the failure).
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = lsm_hash::LsmHash::open(tmp.path(), lsm_hash::Options::default())?;
    /// db.put(b"k", b"v")?;
    /// let all: Vec<_> = db.iter().collect::<Result<_, _>>()?;
    /// assert_eq!(all, vec![(b"k".to_vec(), b"v".to_vec())]);
    /// # Ok::<(), lsm_hash::Error>(())
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + use<> {
        let inner = Arc::clone(&self.inner);
        let (snapshot, live) = self.live();
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
                        // `i` indexes the snapshot the entries were read from.
                        let seg = snapshot.get(i).ok_or_else(|| {
                            Error::Internal(format!(
                                "segment {i} of a snapshot of {}",
                                snapshot.len()
                            ))
                        });
                        seg.and_then(|seg| seg.read_value(&k, e))
                            .and_then(|v| inner.check_poison().map(|()| (k.into_vec(), v)))
                    }
                };
                done = r.is_err();
                Some(r)
            })
    }

    /// Compacts and merges every frozen segment into new ones (only the latest live record
    /// of each key), makes them durable, switches the manifest, then deletes the inputs.
    /// Reads and writes continue.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = lsm_hash::LsmHash::open(tmp.path(), lsm_hash::Options::default())?;
    /// db.put(b"k", b"old")?;
    /// db.put(b"k", b"new")?;
    /// db.compact()?; // the old value's space is reclaimed
    /// assert_eq!(db.get(b"k")?, Some(b"new".to_vec()));
    /// # Ok::<(), lsm_hash::Error>(())
    /// ```
    pub fn compact(&self) -> Result<CompactionReport> {
        self.inner.compact_counted()
    }

    /// The segments, oldest first (the last is the active one).
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = lsm_hash::LsmHash::open(tmp.path(), lsm_hash::Options::default())?;
    /// db.put(b"k", b"v")?;
    /// let segs = db.segments();
    /// assert_eq!(segs.len(), 1); // the active segment
    /// # Ok::<(), lsm_hash::Error>(())
    /// ```
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let snapshot = Arc::clone(&self.inner.segments.read());
        let n = snapshot.len();
        snapshot
            .iter()
            .enumerate()
            .map(|(i, s)| SegmentInfo {
                id: s.id(),
                keys: s.index.read().len(),
                bytes: s.data.file.len().unwrap_or(0),
                frozen: i + 1 < n,
            })
            .collect()
    }

    /// Counts and sizes (answers on a poisoned store too). `total_bytes` counts the records
    /// of every segment; `dead_bytes` those no live key needs (overwritten values,
    /// tombstones, records shadowed by a newer segment).
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = lsm_hash::LsmHash::open(tmp.path(), lsm_hash::Options::default())?;
    /// db.put(b"k", b"v")?;
    /// let s = db.stats();
    /// assert_eq!(s.keys, 1);
    /// assert!(s.total_bytes > 0);
    /// # Ok::<(), lsm_hash::Error>(())
    /// ```
    pub fn stats(&self) -> Stats {
        let (snapshot, live) = self.live();
        let mut stats = Stats::default();
        stats.keys = live.len() as u64;
        stats.files = snapshot.len() as u64;
        stats.open_handles = snapshot.len() as u64;
        let active_end = self.inner.active_end();
        let n = snapshot.len();
        stats.total_bytes = snapshot
            .iter()
            .enumerate()
            .map(|(i, s)| record_bytes(s, (i + 1 == n).then_some(active_end)))
            .sum();
        let live_bytes: u64 = live
            .iter()
            .map(|(k, _, e)| record_len(k.len(), e.value_len as usize))
            .sum();
        stats.dead_bytes = stats.total_bytes.saturating_sub(live_bytes);
        stats.hint_write_failures = self.inner.snapshot_failures.load(Ordering::Relaxed);
        let poison = self.inner.group.failure();
        self.inner.compactions.fill(
            &mut stats,
            poison.as_ref().map(|e| e as &dyn std::fmt::Display),
        );
        stats
    }

    /// Syncs and closes. Dropping does the same, ignoring errors.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = lsm_hash::LsmHash::open(tmp.path(), lsm_hash::Options::default())?;
    /// db.put(b"k", b"v")?;
    /// db.close()?; // syncs and releases the lock
    /// # Ok::<(), lsm_hash::Error>(())
    /// ```
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        self.ticker.stop();
        let inner = &self.inner;
        if inner.writer.is_none() {
            return Ok(());
        }
        inner.check_poison()?;
        inner.wait_durable(inner.last_seq())?;
        // Sealed: damage in what was written before is corruption at the next open, never a
        // torn tail (the next open appends after the seal).
        let mut w = inner.writer()?.lock();
        w.app.seal().map_err(|e| inner.fail(e.into()))
    }
}

impl Drop for LsmHash {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

impl KvStore for LsmHash {
    fn write(&self, batch: WriteBatch) -> Result<()> {
        LsmHash::write(self, batch)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        LsmHash::get(self, key)
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        LsmHash::delete(self, key)
    }

    fn sync(&self) -> Result<()> {
        LsmHash::sync(self)
    }

    fn compact(&self) -> Result<()> {
        LsmHash::compact(self).map(|_| ())
    }

    fn pairs(&self) -> Result<Pairs> {
        self.iter().collect()
    }

    fn stats(&self) -> Result<Stats> {
        Ok(LsmHash::stats(self))
    }

    fn close(self: Box<Self>) -> Result<()> {
        LsmHash::close(*self)
    }
}
