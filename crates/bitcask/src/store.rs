//! [`Bitcask`]: open, reads, writes, rotation, group commit.

use std::collections::{BTreeSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use durable_fs::{DirLock, File, GroupCommit};
use parking_lot::{Condvar, Mutex, RwLock};

use crate::error::{Error, Result};
use crate::format::{
    BATCH_CONTINUES, DATA_MAGIC, FILE_HEADER_LEN, FileHeader, HintEntry, RECORD_HEADER_LEN,
    TOMBSTONE, data_name, decode_record, encode_hint, encode_record, hint_name,
};
use crate::handles::HandleCache;
use crate::keydir::{Keydir, Loc};
use crate::options::{Options, SyncPolicy};
use crate::recovery::{self, OpenReport};

/// One operation of a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// Puts and deletes applied atomically by [`Bitcask::write`]: after a crash, all of them or
/// none.
///
/// ```
/// let mut batch = bitcask::WriteBatch::new();
/// batch.put(b"a", b"1");
/// batch.delete(b"b");
/// assert_eq!(batch.len(), 2);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<Op>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.ops.push(Op::Put(key.to_vec(), value.to_vec()));
    }

    /// Adds a delete.
    pub fn delete(&mut self, key: &[u8]) {
        self.ops.push(Op::Delete(key.to_vec()));
    }

    /// Operations in the batch.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Store statistics ([`Bitcask::stats`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Live keys.
    pub keys: u64,
    /// Data files.
    pub files: u64,
    /// Bytes in data files (records).
    pub total_bytes: u64,
    /// Bytes of overwritten or deleted records, reclaimable by merge.
    pub dead_bytes: u64,
    /// `dead_bytes / total_bytes`.
    pub fragmentation: f64,
    /// Read handles open in the cache.
    pub open_handles: u64,
    /// Hint files that could not be written (the data is safe; open will scan instead).
    pub hint_write_failures: u64,
}

/// The active data file.
#[derive(Debug)]
pub(crate) struct Writer {
    pub file: Arc<File>,
    pub id: u64,
    pub salt: u32,
    pub offset: u64,
    /// Allocated size of the active file (records, then preallocated zeros).
    pub file_len: u64,
    /// Last sequence number used.
    pub seq: u64,
    /// Hint entries of the active file, written out when it becomes immutable.
    pub hint: Vec<HintEntry>,
    pub buf: Vec<u8>,
}

impl Writer {
    /// Trims the preallocated zeros and syncs: the file is complete and exact, ready to be
    /// immutable (and described by a hint that ends where it ends).
    pub fn seal(&mut self) -> Result<()> {
        if self.file_len > self.offset {
            self.file.set_len(self.offset)?;
            self.file_len = self.offset;
        }
        self.file.sync_data()?;
        Ok(())
    }
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
enum Published {
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
                existed.push(kd.delete(&key, batch.file, (RECORD_HEADER_LEN + key.len()) as u64));
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
}

pub(crate) struct Inner {
    pub dir: PathBuf,
    pub opts: Options,
    pub keydir: RwLock<Keydir>,
    pub writer: Option<Mutex<Writer>>,
    pub group: GroupCommit<Arc<Error>>,
    /// Batches written but not yet visible, in sequence order (`Always` only).
    pub pending: Mutex<VecDeque<PendingBatch>>,
    pub handles: Mutex<HandleCache>,
    /// Live data file ids (the active one included).
    pub files: Mutex<BTreeSet<u64>>,
    pub next_file_id: AtomicU64,
    pub merge_lock: Mutex<()>,
    pub stop: AtomicBool,
    pub stop_lock: Mutex<()>,
    pub stop_cv: Condvar,
    pub hint_failures: AtomicU64,
    pub report: OpenReport,
    pub _lock: Option<DirLock>,
}

/// A Bitcask key-value store. `Send + Sync`: share it (in an `Arc`) between threads; reads
/// run concurrently with writes and merges.
///
/// See the [crate docs](crate) for the guarantees and an example.
pub struct Bitcask {
    pub(crate) inner: Arc<Inner>,
    background: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Bitcask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bitcask")
            .field("dir", &self.inner.dir)
            .field("keys", &self.inner.keydir.read().map.len())
            .finish_non_exhaustive()
    }
}

pub(crate) fn random_salt(id: u64) -> u32 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(id);
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish() as u32
}

/// Creates data file `id` durably (entry and header) and returns it with its salt.
pub(crate) fn create_data_file(
    inner_fs: &durable_fs::DurableFs,
    path: &Path,
    id: u64,
    merged: bool,
) -> Result<(File, u32)> {
    let file = inner_fs.create_new(path)?;
    let salt = random_salt(id);
    let header = FileHeader { salt, file_id: id };
    let mut bytes = header.encode(&DATA_MAGIC);
    if merged {
        // Reserved field: 1 marks a merge output, which is complete and synced before it is
        // part of the store, so it can never have a torn tail.
        recovery::mark_merged(&mut bytes);
    }
    file.write_all_at(&bytes, 0)?;
    file.sync_data()?;
    Ok((file, salt))
}

impl Inner {
    pub fn check_poison(&self) -> Result<()> {
        match self.group.failure() {
            Some(e) => Err(Error::Poisoned(e)),
            None => Ok(()),
        }
    }

    /// Poisons the store with `e` (fail-stop) and returns the first failure as `Poisoned`.
    pub fn fail(&self, e: Error) -> Error {
        Error::Poisoned(self.group.poison(Arc::new(e)))
    }

    fn writer(&self) -> Result<&Mutex<Writer>> {
        self.writer.as_ref().ok_or(Error::ReadOnly)
    }

    /// Makes the active file immutable (synced) and starts a new one; returns the hint job
    /// of the old file.
    pub fn rotate(&self, w: &mut Writer) -> Result<HintJob> {
        w.seal()?;
        self.group.advance(w.seq);
        let id = self.next_file_id.fetch_add(1, Ordering::AcqRel);
        let (file, salt) =
            create_data_file(&self.opts.fs, &self.dir.join(data_name(id)), id, false)?;
        self.files.lock().insert(id);
        let job = HintJob {
            id: w.id,
            salt: w.salt,
            entries: std::mem::take(&mut w.hint),
        };
        w.file = Arc::new(file);
        w.id = id;
        w.salt = salt;
        w.offset = FILE_HEADER_LEN as u64;
        w.file_len = FILE_HEADER_LEN as u64;
        Ok(job)
    }

    /// Writes a hint file; failures are counted, not fatal (open falls back to a scan).
    pub fn write_hint(&self, job: HintJob) {
        let bytes = encode_hint(
            FileHeader {
                salt: job.salt,
                file_id: job.id,
            },
            &job.entries,
        );
        if self
            .opts
            .fs
            .atomic_replace(&self.dir.join(hint_name(job.id)), &bytes)
            .is_err()
        {
            self.hint_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn check_sizes(&self, ops: &[Op]) -> Result<()> {
        let (mk, mv) = (self.opts.max_key_bytes, self.opts.max_value_bytes);
        for op in ops {
            let (key, value) = match op {
                Op::Put(k, v) => (k, Some(v)),
                Op::Delete(k) => (k, None),
            };
            if key.len() as u64 > u64::from(mk) {
                return Err(Error::TooLarge {
                    what: "key",
                    len: key.len() as u64,
                    max: mk.into(),
                });
            }
            if let Some(v) = value
                && v.len() as u64 > u64::from(mv)
            {
                return Err(Error::TooLarge {
                    what: "value",
                    len: v.len() as u64,
                    max: mv.into(),
                });
            }
        }
        Ok(())
    }

    /// Appends `ops` as one batch; returns its last sequence number and how its effects
    /// reach the keydir (see [`Inner::publish_upto`]).
    fn append(&self, ops: Vec<Op>) -> Result<(u64, Published)> {
        self.check_poison()?;
        self.check_sizes(&ops)?;
        let mut hint_job = None;
        let mut w = self.writer()?.lock();
        self.check_poison()?;
        let total: u64 = ops
            .iter()
            .map(|op| match op {
                Op::Put(k, v) => (RECORD_HEADER_LEN + k.len() + v.len()) as u64,
                Op::Delete(k) => (RECORD_HEADER_LEN + k.len()) as u64,
            })
            .sum();
        if w.offset > FILE_HEADER_LEN as u64 && w.offset + total > self.opts.max_file_bytes {
            hint_job = Some(self.rotate(&mut w).map_err(|e| self.fail(e))?);
        }
        let mut buf = std::mem::take(&mut w.buf);
        buf.clear();
        let n = ops.len();
        let synced = self.group.durable();
        let file = u32::try_from(w.id).unwrap_or(u32::MAX);
        let mut effects = Vec::with_capacity(n);
        for (i, op) in ops.into_iter().enumerate() {
            let seq = w.seq + 1 + i as u64;
            let cont = if i + 1 < n { BATCH_CONTINUES } else { 0 };
            let offset = w.offset + buf.len() as u64;
            let (key, effect) = match op {
                Op::Put(k, v) => {
                    encode_record(&mut buf, w.salt, seq, synced, cont, &k, &v);
                    let loc = Loc {
                        seq,
                        file,
                        offset: offset as u32,
                        value_len: v.len() as u32,
                    };
                    (k, Effect::Put(loc))
                }
                Op::Delete(k) => {
                    encode_record(&mut buf, w.salt, seq, synced, cont | TOMBSTONE, &k, b"");
                    (k, Effect::Delete)
                }
            };
            w.hint.push(HintEntry {
                seq,
                offset,
                value_len: match effect {
                    Effect::Put(loc) => loc.value_len,
                    Effect::Delete => 0,
                },
                flags: match effect {
                    Effect::Put(_) => 0,
                    Effect::Delete => TOMBSTONE,
                },
                key: key.clone(),
            });
            effects.push((key, effect));
        }
        let end = w.offset + buf.len() as u64;
        if self.opts.preallocate_bytes > 0 && end > w.file_len {
            // Grow in steps, so most fdatasyncs have no file size to flush.
            let step = (w.file_len + self.opts.preallocate_bytes).min(self.opts.max_file_bytes);
            w.file_len = end.max(step);
            if let Err(e) = w.file.set_len(w.file_len) {
                w.buf = buf;
                return Err(self.fail(e.into()));
            }
        }
        if let Err(e) = w.file.write_all_at(&buf, w.offset) {
            w.buf = buf;
            return Err(self.fail(e.into()));
        }
        w.offset += buf.len() as u64;
        w.seq += n as u64;
        let last = w.seq;
        w.buf = buf;
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
            (Arc::clone(&w.file), w.seq)
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
        self.writer.as_ref().map_or(0, |w| w.lock().seq)
    }

    /// Reads the value at `loc` for `key`, verifying the record's checksum.
    pub fn read_value(&self, key: &[u8], loc: Loc) -> Result<Vec<u8>> {
        let handle = self
            .handles
            .lock()
            .get(&self.opts.fs, &self.dir, u64::from(loc.file))?;
        let len = usize::try_from(loc.record_len(key.len())).unwrap_or(usize::MAX);
        let mut buf = vec![0u8; len];
        let path = || self.dir.join(data_name(u64::from(loc.file)));
        handle.file.read_exact_at(&mut buf, u64::from(loc.offset))?;
        let r = decode_record(
            &buf,
            handle.salt,
            u32::MAX, // the format's bound; the options only limit new writes
            u32::MAX,
        )
        .map_err(|e| Error::Corruption {
            path: path(),
            offset: u64::from(loc.offset),
            kind: match e {
                crate::format::DecodeError::Truncated => crate::CorruptionKind::TruncatedRecord,
                crate::format::DecodeError::Corrupt(k) => k,
            },
        })?;
        if r.key != key || r.seq != loc.seq {
            return Err(Error::Corruption {
                path: path(),
                offset: u64::from(loc.offset),
                kind: crate::CorruptionKind::ChecksumMismatch {
                    expected: 0,
                    actual: 0,
                },
            });
        }
        Ok(r.value.to_vec())
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

impl Bitcask {
    /// Opens (creating if needed) the store in `dir`: takes the directory lock (unless
    /// read-only), finishes or abandons an interrupted merge, loads the keydir from hint
    /// files (or CRC-checked scans), truncates a torn tail, and starts a new active file.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Bitcask> {
        let inner = Arc::new(recovery::open(dir.as_ref(), opts)?);
        let mut background = Vec::new();
        if inner.writer.is_some() {
            if let SyncPolicy::Interval(every) = inner.opts.sync {
                background.push(spawn(&inner, "bitcask-sync", every, |i| {
                    let last = i.last_seq();
                    if i.group.durable() < last {
                        i.wait_durable(last).is_ok()
                    } else {
                        true
                    }
                })?);
            }
            if let Some(t) = inner.opts.auto_merge {
                background.push(spawn(
                    &inner,
                    "bitcask-merge",
                    t.check_interval,
                    move |i| {
                        if crate::merge::should_merge(i, &t) {
                            // A failed merge leaves the old files in place; try again later.
                            let _ = crate::merge::merge(i);
                        }
                        true
                    },
                )?);
            }
        }
        Ok(Bitcask { inner, background })
    }

    /// What open found and repaired.
    pub fn open_report(&self) -> &OpenReport {
        &self.inner.report
    }

    /// The value of `key`, if it is live. One positional read, checksum verified.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }

    /// True if `key` is live (no disk read). Fails with [`Error::Poisoned`] after a failed
    /// write or sync, like every call that reads data.
    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        self.inner.check_poison()?;
        Ok(self.inner.keydir.read().map.contains_key(key))
    }

    /// Sets `key` to `value` (an empty value is a value, not a delete).
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut b = WriteBatch::new();
        b.put(key, value);
        self.write(b).map(|_| ())
    }

    /// Deletes `key`; returns whether it was live. Deleting a missing key writes nothing.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        if !self.contains(key)? {
            // It may be absent because of another thread's delete that is not durable yet:
            // under `Always`, "deleted" is only reported once it is.
            if self.inner.opts.sync == SyncPolicy::Always && self.inner.writer.is_some() {
                let last = self.inner.last_seq();
                self.inner.wait_durable(last)?;
            }
            return Ok(false);
        }
        let mut b = WriteBatch::new();
        b.delete(key);
        Ok(self.write(b)?.first().copied().unwrap_or(false))
    }

    /// Applies a batch atomically; returns, for each delete in it, whether its key was live.
    /// Durable on return under [`SyncPolicy::Always`], and visible to other threads only
    /// from then on (never before it is durable).
    pub fn write(&self, batch: WriteBatch) -> Result<Vec<bool>> {
        let inner = &self.inner;
        inner.check_poison()?;
        inner.writer()?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let total: u64 = batch
            .ops
            .iter()
            .map(|op| match op {
                Op::Put(k, v) => (RECORD_HEADER_LEN + k.len() + v.len()) as u64,
                Op::Delete(k) => (RECORD_HEADER_LEN + k.len()) as u64,
            })
            .sum();
        if total > self.inner.opts.max_file_bytes.max(u64::from(u32::MAX) / 2) {
            return Err(Error::TooLarge {
                what: "batch",
                len: total,
                max: self.inner.opts.max_file_bytes.max(u64::from(u32::MAX) / 2),
            });
        }
        let _writer = (inner.opts.sync == SyncPolicy::Always).then(|| inner.group.writer());
        let (seq, published) = inner.append(batch.ops)?;
        if inner.opts.sync == SyncPolicy::Always {
            inner.wait_durable(seq)?;
        }
        match published {
            Published::Now(existed) => Ok(existed),
            Published::Later(None) => Ok(Vec::new()),
            // `wait_durable` published every batch up to the durable mark, this one included.
            Published::Later(Some(slot)) => slot.get().cloned().ok_or_else(|| {
                inner.fail(Error::Internal(format!(
                    "batch ending at seq {seq} is durable but was never published"
                )))
            }),
        }
    }

    /// Makes every write so far durable.
    pub fn sync(&self) -> Result<()> {
        let inner = &self.inner;
        inner.writer()?;
        let last = inner.last_seq();
        inner.wait_durable(last)
    }

    /// Live keys, in no particular order (a snapshot).
    pub fn keys(&self) -> Result<Vec<Vec<u8>>> {
        self.inner.check_poison()?;
        Ok(self
            .inner
            .keydir
            .read()
            .map
            .iter()
            .map(|(k, _)| k.to_vec())
            .collect())
    }

    /// Number of live keys.
    pub fn len(&self) -> Result<usize> {
        self.inner.check_poison()?;
        Ok(self.inner.keydir.read().map.len())
    }

    /// True when no key is live.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The failure that poisoned the store, if one did: after it every call that reads or
    /// writes data returns [`Error::Poisoned`] with it, until the store is reopened.
    /// [`Bitcask::stats`] keeps answering.
    pub fn poisoned(&self) -> Option<Arc<Error>> {
        self.inner.group.failure()
    }

    /// The highest sequence number known durable (diagnostics; answers when poisoned too).
    pub fn durable_seq(&self) -> u64 {
        self.inner.group.durable()
    }

    /// Iterates `(key, value)` over a snapshot of the live keys, reading each value lazily.
    /// After a failure poisons the store, the next item is the [`Error::Poisoned`] error and
    /// the iteration ends (also for iterators created before the failure).
    pub fn iter(&self) -> Iter {
        let snapshot: Vec<(Vec<u8>, Loc)> = self
            .inner
            .keydir
            .read()
            .map
            .iter()
            .map(|(k, l)| (k.to_vec(), l))
            .collect();
        Iter {
            inner: Arc::clone(&self.inner),
            items: snapshot.into_iter(),
            done: false,
        }
    }

    /// Folds over every live pair.
    pub fn fold<A>(&self, init: A, mut f: impl FnMut(A, &[u8], &[u8]) -> A) -> Result<A> {
        self.inner.check_poison()?;
        let mut acc = init;
        for item in self.iter() {
            let (k, v) = item?;
            acc = f(acc, &k, &v);
        }
        Ok(acc)
    }

    /// Rewrites the live records of every immutable file into new files and removes the old
    /// ones; crash-safe at every step. Reads and writes continue meanwhile.
    pub fn merge(&self) -> Result<crate::MergeReport> {
        self.inner.writer()?;
        crate::merge::merge(&self.inner)
    }

    /// Counts and sizes.
    pub fn stats(&self) -> Stats {
        let inner = &self.inner;
        let kd = inner.keydir.read();
        let (total, dead) = kd
            .files
            .values()
            .fold((0, 0), |(t, d), s| (t + s.total, d + s.dead));
        Stats {
            keys: kd.map.len() as u64,
            files: inner.files.lock().len() as u64,
            total_bytes: total,
            dead_bytes: dead,
            fragmentation: if total == 0 {
                0.0
            } else {
                dead as f64 / total as f64
            },
            open_handles: inner.handles.lock().len() as u64,
            hint_write_failures: inner.hint_failures.load(Ordering::Relaxed),
        }
    }

    /// Syncs, writes the active file's hint, and closes. Dropping does the same, ignoring
    /// errors.
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
        let Some(writer) = &inner.writer else {
            return Ok(());
        };
        inner.check_poison()?;
        let last = inner.last_seq();
        inner.wait_durable(last)?;
        let mut w = writer.lock();
        w.seal()?;
        if !w.hint.is_empty() {
            let job = HintJob {
                id: w.id,
                salt: w.salt,
                entries: std::mem::take(&mut w.hint),
            };
            drop(w);
            inner.write_hint(job);
        }
        Ok(())
    }
}

impl Drop for Bitcask {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Runs `tick` every `every` until the store closes or `tick` returns false.
fn spawn(
    inner: &Arc<Inner>,
    name: &str,
    every: Duration,
    tick: impl Fn(&Inner) -> bool + Send + 'static,
) -> Result<JoinHandle<()>> {
    let inner = Arc::clone(inner);
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            loop {
                {
                    let mut g = inner.stop_lock.lock();
                    if !inner.stop.load(Ordering::Acquire) {
                        let _ = inner.stop_cv.wait_for(&mut g, every);
                    }
                }
                if inner.stop.load(Ordering::Acquire)
                    || inner.check_poison().is_err()
                    || !tick(&inner)
                {
                    return;
                }
            }
        })
        .map_err(Error::Thread)
}

/// Iterator over live `(key, value)` pairs; see [`Bitcask::iter`].
pub struct Iter {
    inner: Arc<Inner>,
    items: std::vec::IntoIter<(Vec<u8>, Loc)>,
    /// Set after an error: the iteration is over.
    done: bool,
}

impl Iterator for Iter {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Err(e) = self.inner.check_poison() {
            self.done = true;
            return Some(Err(e));
        }
        loop {
            let (key, loc) = self.items.next()?;
            // The snapshot's location may have been merged away: fall back to a fresh get.
            let value = match self.inner.read_value(&key, loc) {
                Ok(v) => Ok(Some(v)),
                Err(Error::Fs(e)) if e.is_not_found() => self.inner.get(&key),
                Err(e) => Err(e),
            };
            // A failure while the value was read makes it suspect: fail-stop.
            let value = value.and_then(|v| self.inner.check_poison().map(|()| v));
            match value {
                Ok(Some(v)) => return Some(Ok((key, v))),
                Ok(None) => continue, // deleted since the snapshot
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
