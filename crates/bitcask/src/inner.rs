//! [`Inner`]: the state a [`Bitcask`](crate::Bitcask) shares with its readers, its merge and
//! its background threads, and the write path (append, group commit, publish).

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use durable_fs::{DirLock, GroupCommit};
use kv_core::format::{FileHeader, FileKind, HintEntry, TOMBSTONE, encode_hint, record_len};
use kv_core::{Appender, DataFile, Error, Result, SyncPolicy, ValueRef, WriteBatch, offset32};
use parking_lot::{Mutex, RwLock};

use crate::format::{DATA_MAGIC, HINT_MAGIC, data_name, file_id32, hint_name};
use crate::handles::HandleCache;
use crate::keydir::{Keydir, Loc};
use crate::options::Options;
use crate::recovery::{Recovered, RecoveryReport};

/// The active data file: its appender, and the hint entries of its records.
#[derive(Debug)]
pub(crate) struct Writer {
    pub app: Appender,
    /// Hint entries of the active file, written out when it becomes immutable.
    pub hint: Vec<HintEntry>,
}

/// What a written record does to the keydir once it is visible.
#[derive(Clone, Copy, Debug)]
enum Effect {
    Put(Loc),
    Delete,
}

/// A written batch whose effects are not in the keydir yet (see [`Inner::publish_upto`]).
#[derive(Debug)]
pub(crate) struct PendingBatch {
    last_seq: u64,
    /// The data file its records are in.
    file: u32,
    effects: Vec<(Vec<u8>, Effect)>,
    /// Whether each delete found its key, for the writer (only when the batch has deletes).
    existed: Option<Arc<OnceLock<Vec<bool>>>>,
}

/// How a batch reached the keydir: at once, or later through the queue.
pub(crate) enum Published {
    Now(Vec<bool>),
    Later(Option<Arc<OnceLock<Vec<bool>>>>),
}

/// Applies a batch's effects to the keydir; returns whether each delete found its key.
fn apply_batch(kd: &mut Keydir, batch: PendingBatch) -> Vec<bool> {
    let mut existed = Vec::new();
    for (key, effect) in batch.effects {
        match effect {
            Effect::Put(loc) => kd.put(&key, loc),
            Effect::Delete => {
                existed.push(kd.delete(&key, batch.file, record_len(key.len(), 0)));
            }
        }
    }
    existed
}

/// A hint file to write once the writer lock is released.
pub(crate) struct HintJob {
    pub id: u64,
    pub salt: u32,
    pub entries: Vec<HintEntry>,
    /// The data file's length (its records end there).
    pub len: u64,
}

pub(crate) struct Inner {
    pub dir: PathBuf,
    pub opts: Options,
    pub keydir: RwLock<Keydir>,
    /// `None` when opened read-only.
    pub writer: Option<Mutex<Writer>>,
    pub group: GroupCommit<Arc<Error>>,
    /// Batches written but not yet visible, in sequence order (`Always` only).
    pending: Mutex<VecDeque<PendingBatch>>,
    pub handles: HandleCache,
    /// Verified values by place (file, offset).
    pub cache: kv_core::ValueCache,
    /// Live data file ids (the active one included).
    pub files: Mutex<BTreeSet<u64>>,
    next_file_id: AtomicU64,
    pub merge_lock: Mutex<()>,
    pub hint_failures: AtomicU64,
    /// Merges done and failed, and the last failure (for `stats`).
    pub merges: kv_core::Jobs,
    pub report: RecoveryReport,
    /// The files the keydir image loaded at open covered (close rewrites it only if they
    /// changed).
    pub image_files: Option<Vec<crate::image::Covered>>,
    _lock: Option<DirLock>,
}

impl Inner {
    /// The store's state from what recovery found.
    pub fn new(dir: PathBuf, opts: Options, r: Recovered) -> Inner {
        Inner {
            dir,
            keydir: RwLock::new(r.keydir),
            writer: r.writer.map(|app| {
                Mutex::new(Writer {
                    app,
                    hint: Vec::new(),
                })
            }),
            group: GroupCommit::new(r.max_seq, |m| Arc::new(Error::Internal(m))),
            pending: Mutex::new(VecDeque::new()),
            handles: HandleCache::new(opts.max_open_files, r.staged),
            cache: kv_core::ValueCache::new(opts.cache_bytes),
            files: Mutex::new(r.files),
            next_file_id: AtomicU64::new(r.next_id),
            merge_lock: Mutex::new(()),
            hint_failures: AtomicU64::new(0),
            merges: kv_core::Jobs::default(),
            report: r.report,
            image_files: r.image_files,
            _lock: r.lock,
            opts,
        }
    }

    pub fn check_poison(&self) -> Result<()> {
        self.group.check().map_err(Error::Poisoned)
    }

    /// Poisons the store with `e` (fail-stop) and returns the first failure as `Poisoned`.
    pub fn fail(&self, e: Error) -> Error {
        log::error!("{}: poisoned (fail-stop): {e}", self.dir.display());
        Error::Poisoned(self.group.poison(Arc::new(e)))
    }

    /// One merge, counted (and its failure kept) for `stats`.
    pub fn merge(&self) -> Result<kv_core::CompactionReport> {
        let r = crate::merge::merge(self);
        self.merges.record(&r);
        r
    }

    pub fn writer(&self) -> Result<&Mutex<Writer>> {
        self.writer.as_ref().ok_or(Error::ReadOnly)
    }

    /// A fresh file id, checked to fit the keydir.
    pub fn next_id(&self) -> Result<(u64, u32)> {
        let id = self.next_file_id.fetch_add(1, Ordering::AcqRel);
        // Four billion rotations and merges: a limit no store reaches in practice.
        let small = file_id32(id).ok_or_else(|| {
            Error::Internal(format!(
                "file id {id}: the keydir's 32-bit file ids are used up"
            ))
        })?;
        Ok((id, small))
    }

    /// Creates data file `id` (kind `kind`) at `name` durably.
    pub fn create_file(&self, name: String, id: u64, kind: FileKind) -> Result<DataFile> {
        DataFile::create(&self.opts.fs, self.dir.join(name), &DATA_MAGIC, id, kind)
    }

    /// Makes the active file immutable (synced) and starts a new one; returns the hint job
    /// of the old file.
    pub fn rotate(&self, w: &mut Writer) -> Result<HintJob> {
        w.app.seal()?;
        self.group.advance(w.app.seq);
        let (id, _) = self.next_id()?;
        let data = self.create_file(data_name(id), id, FileKind::Written)?;
        {
            // Listed before anything is written to it.
            let mut files = self.files.lock();
            files.insert(id);
            self.store_files(&files)?;
        }
        let job = HintJob {
            id: w.app.data.id,
            salt: w.app.data.salt,
            entries: std::mem::take(&mut w.hint),
            len: w.app.offset,
        };
        w.app.start_file(data);
        Ok(job)
    }

    /// Replaces the files list with `files`, durably. Callers hold the `files` lock, so the
    /// list on disk follows the set's changes in order.
    pub fn store_files(&self, files: &BTreeSet<u64>) -> Result<()> {
        let path = self.dir.join(crate::commit::FILES);
        self.opts
            .fs
            .atomic_replace(&path, &crate::commit::encode_files(files))?;
        Ok(())
    }

    /// Writes a hint file; failures are counted, not fatal (open falls back to a scan).
    pub fn write_hint(&self, job: HintJob) {
        let header = FileHeader::new(job.salt, job.id);
        let bytes = encode_hint(header, &HINT_MAGIC, &job.entries, job.len);
        let path = self.dir.join(hint_name(job.id));
        if self.opts.fs.atomic_replace(&path, &bytes).is_err() {
            self.hint_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes the keydir image at close (see [`crate::image`]), best effort like a hint: a
    /// store below [`Options::image_min_keys`] keys writes none (and removes one it no longer
    /// matches), one whose open skipped damaged records writes none (and removes any), and
    /// one whose files are those of the image open loaded keeps that one.
    /// Callers hold the writer, with everything written durable and the active file sealed;
    /// `max_seq` is its last seq.
    pub fn write_image(&self, max_seq: u64) {
        let fs = &self.opts.fs;
        if !self.report.skipped.is_empty() {
            // This keydir left damaged records out (a salvage): an image of it would let
            // later opens skip the scans that find and refuse them. None, and not an older one
            // either.
            let path = self.dir.join(crate::image::IMAGE);
            if fs.exists(&path).unwrap_or(false) {
                let _ = fs.remove_file(&path);
            }
            return;
        }
        // The merge's lock order: keydir, then files.
        let keydir = self.keydir.read();
        let files = self.files.lock();
        let mut covered = Vec::with_capacity(files.len());
        for &id in files.iter() {
            let Some(small) = file_id32(id) else { return };
            let path = self.dir.join(data_name(id));
            let header = fs.open(&path, durable_fs::Access::Read).and_then(|f| {
                let mut h = [0u8; kv_core::format::FILE_HEADER_LEN];
                let len = f.len()?;
                if len > h.len() as u64 {
                    f.read_exact_at(&mut h, 0)?;
                }
                Ok((len, h))
            });
            let Ok((len, h)) = header else { return };
            if len <= kv_core::format::FILE_HEADER_LEN as u64 {
                continue; // holds no record (the active file of an open that wrote nothing)
            }
            let Ok(h) = FileHeader::decode(&h, &DATA_MAGIC) else {
                return;
            };
            let stats = keydir.files.get(&small).copied().unwrap_or_default();
            covered.push(crate::image::Covered {
                id: small,
                salt: h.salt,
                len,
                stats,
            });
        }
        let path = self.dir.join(crate::image::IMAGE);
        if self.image_files.as_ref() == Some(&covered) {
            return; // the image open loaded describes these very files
        }
        if (keydir.map.len() as u64) < self.opts.image_min_keys {
            if fs.exists(&path).unwrap_or(false) {
                let _ = fs.remove_file(&path);
            }
            return;
        }
        // Every key in a covered file, or no image (a keydir entry in a file the image does
        // not bind would make the next open refuse it anyway).
        let ids: std::collections::BTreeSet<u32> = covered.iter().map(|c| c.id).collect();
        if keydir.map.iter().any(|(_, loc)| !ids.contains(&loc.file)) {
            log::warn!(
                "{}: keydir image not written: the keydir names a file no longer listed",
                path.display()
            );
            return;
        }
        if let Err(e) = crate::image::write(fs, &self.dir, &keydir, &covered, max_seq) {
            log::warn!(
                "{}: keydir image not written ({e}); the next open reads the hints",
                path.display()
            );
            self.hint_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Appends `batch`; returns its last sequence number and how its effects reach the
    /// keydir (see [`Inner::publish_upto`]).
    pub fn append(&self, batch: WriteBatch) -> Result<(u64, Published)> {
        self.check_poison()?;
        let mut hint_job = None;
        let mut w = self.writer()?.lock();
        self.check_poison()?;
        if w.app.is_full(batch.encoded_len(), self.opts.max_file_bytes) {
            hint_job = Some(self.rotate(&mut w).map_err(|e| self.fail(e))?);
        }
        // The keydir's 32-bit ids and offsets are checked before anything is written (the
        // limits and the rotation keep them in range; a failure here is a bug).
        let file = file_id32(w.app.data.id)
            .ok_or_else(|| Error::Internal("the active file's id is past 32 bits".into()))?;
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
        let mut effects = Vec::with_capacity(appended.len());
        for ((key, _), a) in batch.into_ops().into_iter().zip(&appended) {
            let offset = offset32(&w.app.data.path, a.offset).map_err(|e| self.fail(e))?;
            w.hint.push(HintEntry {
                seq: a.seq,
                offset: a.offset,
                value_len: a.value_len,
                flags: if a.tombstone { TOMBSTONE } else { 0 },
                key: key.clone(),
            });
            let effect = if a.tombstone {
                Effect::Delete
            } else {
                Effect::Put(Loc {
                    seq: a.seq,
                    file,
                    offset,
                    value_len: a.value_len,
                })
            };
            effects.push((key, effect));
        }
        let last = w.app.seq;
        let batch = PendingBatch {
            last_seq: last,
            file,
            existed: effects
                .iter()
                .any(|(_, e)| matches!(e, Effect::Delete))
                .then(|| Arc::new(OnceLock::new())),
            effects,
        };
        let published = if self.visible_on_write() {
            // Readers see the page cache (as documented for `Never` and `Interval`).
            Published::Now(apply_batch(&mut self.keydir.write(), batch))
        } else {
            // Queued under the writer lock, so the queue is in sequence order.
            let slot = batch.existed.clone();
            self.pending.lock().push_back(batch);
            Published::Later(slot)
        };
        drop(w);
        if let Some(job) = hint_job {
            self.write_hint(job);
        }
        Ok((last, published))
    }

    /// True when writes become visible as soon as they are written (not `Always`).
    fn visible_on_write(&self) -> bool {
        self.opts.sync != SyncPolicy::Always || self.opts.regressions.visible_before_durable
    }

    /// Makes every queued batch with sequence numbers up to `durable` visible, oldest first.
    ///
    /// Under [`SyncPolicy::Always`] a write reaches the keydir only once it is durable, so no
    /// reader (and no merge deciding what is live) ever sees a value a power cut could take
    /// back. Whoever learns that the durable mark moved calls this: the writer whose wait
    /// returned, a merge after its rotation. Batches are applied under the queue lock, so a
    /// caller that returns from here knows that every batch up to `durable` is applied.
    pub fn publish_upto(&self, durable: u64) {
        let mut queue = self.pending.lock();
        if queue.front().is_none_or(|b| b.last_seq > durable) {
            return;
        }
        let mut kd = self.keydir.write();
        while queue.front().is_some_and(|b| b.last_seq <= durable) {
            if let Some(batch) = queue.pop_front() {
                let slot = batch.existed.clone();
                let existed = apply_batch(&mut kd, batch);
                if let Some(slot) = slot {
                    let _ = slot.set(existed);
                }
            }
        }
    }

    /// The group-commit sync: fsync the active file; everything up to the returned seq is
    /// durable (earlier files were synced when they were rotated away).
    fn sync_once(&self) -> Result<u64> {
        let (file, seq) = {
            let w = self.writer()?.lock();
            (Arc::clone(w.app.file()), w.app.seq)
        };
        file.sync_data()?;
        Ok(seq)
    }

    /// Returns once `seq` is durable (sharing the fsync with concurrent writers), with every
    /// batch up to the new durable mark visible.
    pub fn wait_durable(&self, seq: u64) -> Result<()> {
        self.group
            .wait(seq, || self.sync_once().map_err(Arc::new))
            .map_err(Error::Poisoned)?;
        self.publish_upto(self.group.durable());
        Ok(())
    }

    pub fn last_seq(&self) -> u64 {
        self.writer.as_ref().map_or(0, |w| w.lock().app.seq)
    }

    /// Reads the value at `loc` for `key`, verifying the record's checksum, key and seq.
    pub fn read_value(&self, key: &[u8], loc: Loc) -> Result<Vec<u8>> {
        if let Some(v) = self.cache.get(loc.seq, key) {
            return Ok(v);
        }
        let v = self.read_value_from_disk(key, loc)?;
        self.cache.insert(loc.seq, key, &v);
        Ok(v)
    }

    /// Reads and verifies the record at `loc` (CRC, key, seq).
    pub fn read_value_from_disk(&self, key: &[u8], loc: Loc) -> Result<Vec<u8>> {
        let data = self
            .handles
            .get(&self.opts.fs, &self.dir, u64::from(loc.file))?;
        let at = ValueRef {
            seq: loc.seq,
            offset: u64::from(loc.offset),
            value_len: loc.value_len,
        };
        data.read_value(key, at)
    }

    /// `get` with a retry: a merge may remove the file a location pointed to between reading
    /// the keydir and opening the file; the keydir then already points to the new file.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        // Fail-stop for reads too: after a failed write the keydir may hold a value that
        // was never acknowledged.
        self.check_poison()?;
        let mut attempts = 0;
        loop {
            let Some(loc) = self.keydir.read().map.get(key) else {
                return Ok(None);
            };
            match self.read_value(key, loc) {
                // A failure while reading makes the value suspect: fail-stop.
                Ok(v) => return self.check_poison().map(|()| Some(v)),
                Err(Error::Fs(e)) if e.is_not_found() && attempts < 3 => attempts += 1,
                Err(e) => return Err(e),
            }
        }
    }
}
