//! The Raft log on the WAL, synchronous: the storage core behind
//! [`LogStore`](crate::LogStore), also driven directly by the crash torture.
//!
//! One WAL record per entry (`[version 1][postcard LogId][postcard EntryPayload]`). Raft
//! indexes are not LSNs (the WAL never reuses an LSN after `truncate_after`), so the core keeps
//! `index -> (LSN, LogId)` in memory (32 bytes an entry), rebuilt by one scan at open. The vote
//! and the last purged id live in `RAFT-META` beside the log ([`crate::meta`]).
//!
//! Durability rules (openraft's, and what its users got wrong):
//! - [`LogCore::append`] returns once the entries are readable; its callback runs only after
//!   the fsync that covers them, on the flusher (one thread, group commit).
//! - [`LogCore::save_vote`], [`LogCore::truncate`] and [`LogCore::purge`] first wait for every
//!   append before them to be durable (a barrier through the flusher), and are durable on
//!   return: nothing is reordered across them.
//! - `purge` writes the last purged id *before* it removes segments, so a crash in between
//!   leaves entries that open skips, never a log that starts after a hole.
//! - Any failed write or fsync poisons the core: every later call fails (fail-stop).

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use durable_fs::DurableFs;
use openraft::{EntryPayload, RaftTypeConfig};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use serde::de::DeserializeOwned;
use wal::{Lsn, Wal};

use crate::error::{Error, Result};
use crate::meta::Meta;
use crate::types::{LogId, Vote};

/// The WAL's directory under a log directory.
pub const LOG_SUBDIR: &str = "log";
/// The version byte that starts every entry record.
pub const ENTRY_VERSION: u8 = 1;

/// What runs when an append is durable (or failed): `Ok` only after its fsync.
pub type Callback = Box<dyn FnOnce(std::result::Result<(), std::io::Error>) + Send>;

/// Where append callbacks run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlushMode {
    /// One background thread syncs the WAL for every append queued since its last sync
    /// (group commit) and then runs their callbacks in order. The default.
    Thread,
    /// Nothing runs in the background: callbacks wait for [`LogCore::flush`] (or the barrier
    /// of a vote, truncate or purge). Deterministic, for the crash torture.
    Inline,
}

/// Options of the Raft log.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LogOptions {
    /// The filesystem door. Default: the real filesystem.
    pub fs: DurableFs,
    /// WAL segment size. Default: 64 MiB.
    pub max_segment_bytes: u64,
    /// Largest encoded entry. Default: 16 MiB.
    pub max_entry_bytes: u32,
    /// The WAL's preallocation step ([`wal::Options::preallocate_bytes`]). Default: 1 MiB.
    pub preallocate_bytes: u64,
    /// The WAL's write buffer ([`wal::Options::write_buffer_bytes`]). Default: 1 MiB.
    pub write_buffer_bytes: usize,
    /// Where callbacks run. Default: [`FlushMode::Thread`].
    pub flush: FlushMode,
    /// Test support only: puts known bugs back (all off by default).
    #[doc(hidden)]
    pub regressions: LogRegressions,
}

/// Bugs a test can put back, to show that the crash torture catches them (negative
/// controls). Never set outside tests.
#[derive(Clone, Copy, Debug, Default)]
#[doc(hidden)]
pub struct LogRegressions {
    /// Run append callbacks before the fsync that covers their entries.
    pub ack_before_sync: bool,
    /// Remove purged segments before the last purged id is written.
    pub purge_before_meta: bool,
    /// Save a vote without waiting for the appends before it to be durable.
    pub vote_without_barrier: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            fs: DurableFs::real(),
            max_segment_bytes: 64 << 20,
            max_entry_bytes: 16 << 20,
            preallocate_bytes: 1 << 20,
            write_buffer_bytes: 1 << 20,
            flush: FlushMode::Thread,
            regressions: LogRegressions::default(),
        }
    }
}

impl LogOptions {
    /// Uses `fs` for every file.
    pub fn with_fs(mut self, fs: DurableFs) -> Self {
        self.fs = fs;
        self
    }

    /// Sets the WAL segment size.
    pub fn with_max_segment_bytes(mut self, n: u64) -> Self {
        self.max_segment_bytes = n;
        self
    }

    /// Sets the largest encoded entry.
    pub fn with_max_entry_bytes(mut self, n: u32) -> Self {
        self.max_entry_bytes = n;
        self
    }

    /// Sets the WAL's preallocation step and write buffer.
    pub fn with_wal_buffers(mut self, preallocate_bytes: u64, write_buffer_bytes: usize) -> Self {
        self.preallocate_bytes = preallocate_bytes;
        self.write_buffer_bytes = write_buffer_bytes;
        self
    }

    /// Sets where callbacks run.
    pub fn with_flush(mut self, flush: FlushMode) -> Self {
        self.flush = flush;
        self
    }
}

/// `index -> (LSN, LogId)` of the live entries, in index order. openraft appends without
/// holes, but its test suite appends sparse logs, so lookups search instead of assuming a
/// dense run.
#[derive(Debug, Default)]
struct Index {
    ids: VecDeque<(Lsn, LogId)>,
}

impl Index {
    fn last(&self) -> Option<LogId> {
        self.ids.back().map(|(_, id)| *id)
    }

    /// Position of the first entry with an index at or above `index`.
    fn position(&self, index: u64) -> usize {
        self.ids.partition_point(|(_, id)| id.index < index)
    }
}

enum Job {
    Flush(Lsn, Callback),
    Barrier(mpsc::SyncSender<Result<()>>),
}

struct Shared {
    wal: Wal,
    fs: DurableFs,
    dir: PathBuf,
    index: RwLock<Index>,
    meta: Mutex<Meta>,
    poison: Mutex<Option<Arc<Error>>>,
    regressions: LogRegressions,
    max_entry_bytes: u32,
}

impl Shared {
    fn check_poison(&self) -> Result<()> {
        match &*self.poison.lock() {
            Some(e) => Err(Error::Poisoned(Arc::clone(e))),
            None => Ok(()),
        }
    }

    /// Poisons the core with `e` (the first failure wins) and returns it.
    fn fail(&self, e: Error) -> Error {
        let mut p = self.poison.lock();
        let first = p.get_or_insert_with(|| Arc::new(e));
        log::error!("raft log in {} poisoned: {first}", self.dir.display());
        Error::Poisoned(Arc::clone(first))
    }

    /// Syncs the WAL for every flush in `jobs`, then runs their callbacks and answers their
    /// barriers, in order.
    fn process(&self, jobs: Vec<Job>) {
        let high = jobs
            .iter()
            .filter_map(|j| match j {
                Job::Flush(lsn, _) => Some(*lsn),
                Job::Barrier(_) => None,
            })
            .max();
        let early = self.regressions.ack_before_sync;
        let sync = |high: Option<Lsn>| -> Result<()> {
            self.check_poison()?;
            match high {
                Some(lsn) => self.wal.sync_to(lsn).map_err(|e| self.fail(e.into())),
                None => Ok(()),
            }
        };
        let result = if early { Ok(()) } else { sync(high) };
        for job in jobs {
            match job {
                Job::Flush(_, cb) => cb(result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| std::io::Error::other(e.to_string()))),
                Job::Barrier(tx) => {
                    // Every failure poisons: a barrier answers with the poison.
                    let answer = match &result {
                        Ok(()) => Ok(()),
                        Err(e) => self
                            .check_poison()
                            .and(Err(Error::Internal(format!("flush failed: {e}")))),
                    };
                    let _ = tx.send(answer);
                }
            }
        }
        if early {
            let _ = sync(high);
        }
    }
}

enum Flusher {
    Thread {
        tx: Mutex<Option<mpsc::Sender<Job>>>,
        handle: Mutex<Option<JoinHandle<()>>>,
    },
    Inline(Mutex<Vec<Job>>),
}

/// The Raft log: entries in a WAL, the vote and last purged id in `RAFT-META`.
///
/// ```
/// use durable_raft::log::{LogCore, LogOptions};
/// use durable_raft::{Entry, LogId, TypeConfig, Vote};
/// use openraft::{CommittedLeaderId, EntryPayload};
///
/// # let tmp = tempfile::tempdir().unwrap();
/// let log = LogCore::<TypeConfig>::open(tmp.path(), LogOptions::default())?;
/// let id = LogId::new(CommittedLeaderId::new(1, 1), 1);
/// let (tx, rx) = std::sync::mpsc::channel();
/// let blank = Entry { log_id: id, payload: EntryPayload::Blank };
/// log.append(vec![blank], Box::new(move |r| tx.send(r.is_ok()).unwrap()))?;
/// assert!(rx.recv().unwrap()); // durable now
/// log.save_vote(&Vote::new(1, 1))?;
/// assert_eq!(log.log_state()?.1, Some(id));
/// # Ok::<(), durable_raft::Error>(())
/// ```
pub struct LogCore<C> {
    shared: Arc<Shared>,
    flusher: Flusher,
    /// Serializes the writes (openraft issues them one at a time anyway).
    write: Mutex<()>,
    _c: PhantomData<fn() -> C>,
}

impl<C> std::fmt::Debug for LogCore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogCore")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

/// Encodes an entry as its WAL record.
pub fn encode_entry<C>(entry: &openraft::Entry<C>) -> Result<Vec<u8>>
where
    C: RaftTypeConfig<NodeId = u64>,
    EntryPayload<C>: Serialize,
{
    let buf = vec![ENTRY_VERSION];
    let buf = postcard::to_extend(&entry.log_id, buf).map_err(|source| Error::Encode {
        what: "log id",
        source,
    })?;
    postcard::to_extend(&entry.payload, buf).map_err(|source| Error::Encode {
        what: "entry payload",
        source,
    })
}

/// Decodes the log id at the start of a WAL record (what recovery needs of each entry).
pub fn decode_log_id<'a>(record: &'a [u8], dir: &Path, lsn: Lsn) -> Result<(LogId, &'a [u8])> {
    match record.split_first() {
        Some((&ENTRY_VERSION, rest)) => postcard::take_from_bytes::<LogId>(rest)
            .map_err(|e| Error::corrupt(dir, lsn, format!("entry record's log id: {e}"))),
        Some((v, _)) => Err(Error::corrupt(
            dir,
            lsn,
            format!("entry record version {v}; this build reads {ENTRY_VERSION}"),
        )),
        None => Err(Error::corrupt(dir, lsn, "empty entry record")),
    }
}

/// Decodes a whole entry record.
pub fn decode_entry<C>(record: &[u8], dir: &Path, lsn: Lsn) -> Result<openraft::Entry<C>>
where
    C: RaftTypeConfig<NodeId = u64>,
    EntryPayload<C>: DeserializeOwned,
{
    let (log_id, rest) = decode_log_id(record, dir, lsn)?;
    let (payload, tail) = postcard::take_from_bytes::<EntryPayload<C>>(rest)
        .map_err(|e| Error::corrupt(dir, lsn, format!("entry payload: {e}")))?;
    if !tail.is_empty() {
        return Err(Error::corrupt(
            dir,
            lsn,
            format!("{} bytes after the entry payload", tail.len()),
        ));
    }
    Ok(openraft::Entry { log_id, payload })
}

impl<C> LogCore<C>
where
    C: RaftTypeConfig<NodeId = u64, Entry = openraft::Entry<C>>,
    EntryPayload<C>: Serialize + DeserializeOwned,
{
    /// Opens (or creates) the log in `dir`: reads `RAFT-META`, recovers the WAL in
    /// `dir/log` and rebuilds the index from one scan of it. Entries at or below the last
    /// purged index are skipped; a live entry whose index or leader goes back is
    /// [`Error::Corruption`] naming the LSN.
    pub fn open(dir: impl AsRef<Path>, opts: LogOptions) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let fs = opts.fs.clone();
        fs.create_dir_all(&dir)?;
        let meta = Meta::load(&fs, &dir)?;
        let wal_dir = dir.join(LOG_SUBDIR);
        let wal_opts = wal::Options::default()
            .with_fs(fs.clone())
            .with_sync(wal::SyncPolicy::Never)
            .with_max_segment_bytes(opts.max_segment_bytes)
            .with_max_record_bytes(opts.max_entry_bytes)
            .with_preallocate_bytes(opts.preallocate_bytes)
            .with_write_buffer_bytes(opts.write_buffer_bytes);
        let wal = Wal::open(&wal_dir, wal_opts)?;
        let mut index = Index::default();
        let purged = meta.last_purged;
        for rec in wal.iter_from(0)? {
            let (lsn, payload) = rec?;
            let (id, _) = decode_log_id(&payload, &wal_dir, lsn)?;
            if purged.is_some_and(|p| id.index <= p.index) {
                continue;
            }
            if let Some((_, last)) = index.ids.back() {
                if id.index <= last.index {
                    return Err(Error::corrupt(
                        &wal_dir,
                        lsn,
                        format!("entry {id} does not come after the entry before it ({last})"),
                    ));
                }
                if id.leader_id < last.leader_id {
                    return Err(Error::corrupt(
                        &wal_dir,
                        lsn,
                        format!("entry {id} has an older leader than the entry before it ({last})"),
                    ));
                }
            }
            index.ids.push_back((lsn, id));
        }
        let shared = Arc::new(Shared {
            wal,
            fs,
            dir,
            index: RwLock::new(index),
            meta: Mutex::new(meta),
            poison: Mutex::new(None),
            regressions: opts.regressions,
            max_entry_bytes: opts.max_entry_bytes,
        });
        let flusher = match opts.flush {
            FlushMode::Inline => Flusher::Inline(Mutex::new(Vec::new())),
            FlushMode::Thread => {
                let (tx, rx) = mpsc::channel::<Job>();
                let s = Arc::clone(&shared);
                let handle = std::thread::Builder::new()
                    .name("raft-log-flush".into())
                    .spawn(move || {
                        while let Ok(job) = rx.recv() {
                            let mut jobs = vec![job];
                            jobs.extend(rx.try_iter());
                            s.process(jobs);
                        }
                    })
                    .map_err(|e| Error::Internal(format!("cannot start the flusher: {e}")))?;
                Flusher::Thread {
                    tx: Mutex::new(Some(tx)),
                    handle: Mutex::new(Some(handle)),
                }
            }
        };
        Ok(LogCore {
            shared,
            flusher,
            write: Mutex::new(()),
            _c: PhantomData,
        })
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// What the WAL's recovery cut or quarantined at open.
    pub fn recovery_report(&self) -> &wal::RecoveryReport {
        self.shared.wal.recovery_report()
    }

    /// `(last purged id, last log id)`; the last log id is the last purged one when no entry
    /// is left.
    pub fn log_state(&self) -> Result<(Option<LogId>, Option<LogId>)> {
        self.shared.check_poison()?;
        // Both under the meta lock (purge's order: meta, then index): one moment's view.
        let meta = self.shared.meta.lock();
        let purged = meta.last_purged;
        let last = self.shared.index.read().last().or(purged);
        Ok((purged, last))
    }

    /// The last vote saved.
    pub fn vote(&self) -> Result<Option<Vote>> {
        self.shared.check_poison()?;
        Ok(self.shared.meta.lock().vote)
    }

    fn queue(&self, job: Job) -> Result<()> {
        match &self.flusher {
            Flusher::Inline(q) => {
                q.lock().push(job);
                Ok(())
            }
            Flusher::Thread { tx, .. } => match &*tx.lock() {
                Some(tx) => tx.send(job).map_err(|_| Error::FlusherGone),
                None => Err(Error::FlusherGone),
            },
        }
    }

    /// Waits until every append before this call is durable and its callback has run.
    pub fn flush(&self) -> Result<()> {
        match &self.flusher {
            Flusher::Inline(q) => {
                let jobs = std::mem::take(&mut *q.lock());
                let (tx, rx) = mpsc::sync_channel(1);
                let mut jobs = jobs;
                jobs.push(Job::Barrier(tx));
                self.shared.process(jobs);
                rx.recv().map_err(|_| Error::FlusherGone)?
            }
            Flusher::Thread { .. } => {
                let (tx, rx) = mpsc::sync_channel(1);
                self.queue(Job::Barrier(tx))?;
                rx.recv().map_err(|_| Error::FlusherGone)?
            }
        }?;
        self.shared.check_poison()
    }

    /// Appends `entries` (indexes growing; an append at or below the last entry replaces the
    /// entries from there on, durably) and returns once they are readable; `callback` runs after the fsync that makes them
    /// durable, or with the error that stopped it. An error returned here means the
    /// callback will never run.
    pub fn append(&self, entries: Vec<openraft::Entry<C>>, callback: Callback) -> Result<()> {
        let mut entries = entries;
        let _w = self.write.lock();
        self.shared.check_poison()?;
        let purged = self.shared.meta.lock().last_purged;
        // Entries at or below the last purged index are already covered by a snapshot:
        // appending them is appending and purging at once, so they are not written.
        // (openraft never does this; its test suite does, after its initial-state check
        // purged the log up to what the state machine had applied.)
        if let Some(p) = purged {
            entries.retain(|e| e.log_id.index > p.index);
        }
        let Some(first) = entries.first() else {
            return self.queue_flush_of_last(callback);
        };
        let first_id = first.log_id;
        // Everything is checked and encoded before anything changes: a refused append
        // leaves the log as it was, and does not poison it (nothing failed on disk).
        let mut records = Vec::with_capacity(entries.len());
        let mut prev: Option<LogId> = None;
        for e in &entries {
            if let Some(p) = prev {
                if e.log_id.index <= p.index {
                    return Err(Error::Invalid(format!(
                        "append of entry {} after {p}: indexes must grow",
                        e.log_id
                    )));
                }
                if e.log_id.leader_id < p.leader_id {
                    return Err(Error::Invalid(format!(
                        "append of entry {} after {p}: its leader is older",
                        e.log_id
                    )));
                }
            }
            prev = Some(e.log_id);
            let rec = encode_entry(e)?;
            if rec.len() as u64 > u64::from(self.shared.max_entry_bytes) {
                return Err(Error::Invalid(format!(
                    "entry {} encodes to {} bytes, over the limit of {}",
                    e.log_id,
                    rec.len(),
                    self.shared.max_entry_bytes
                )));
            }
            records.push(rec);
        }
        let before = {
            let index = self.shared.index.read();
            let pos = index.position(first_id.index);
            pos.checked_sub(1)
                .and_then(|p| index.ids.get(p))
                .map(|(_, id)| *id)
                .or(purged)
        };
        if before.is_some_and(|b| first_id.leader_id < b.leader_id) {
            return Err(Error::Invalid(format!(
                "append of entry {first_id} after {before:?}: its leader is older"
            )));
        }
        // An append over existing entries replaces them from its first index on (openraft
        // truncates first; this keeps the log a log if a caller does not).
        if self
            .shared
            .index
            .read()
            .last()
            .is_some_and(|l| l.index >= first_id.index)
        {
            self.flush()?;
            self.truncate_unlocked(first_id.index)?;
        }
        let mut index = self.shared.index.write();
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let (first_lsn, last_lsn) = self
            .shared
            .wal
            .append_batch_nowait(&refs)
            .map_err(|e| self.shared.fail(e.into()))?;
        for (i, e) in entries.iter().enumerate() {
            index.ids.push_back((first_lsn + i as u64, e.log_id));
        }
        drop(index);
        self.queue(Job::Flush(last_lsn, callback))
    }

    /// `callback` runs once everything appended so far is durable.
    fn queue_flush_of_last(&self, callback: Callback) -> Result<()> {
        let last = self.shared.wal.last_lsn();
        if last == 0 {
            callback(Ok(()));
            Ok(())
        } else {
            self.queue(Job::Flush(last, callback))
        }
    }

    /// Reads the entries with indexes in `range` that the log holds, in order (fewer than
    /// asked when the range reaches past the last entry or before the first live one).
    pub fn entries(&self, range: Range<u64>) -> Result<Vec<openraft::Entry<C>>> {
        read_entries::<C>(&self.shared, range)
    }

    /// Saves `vote` durably, after every append before it is durable.
    pub fn save_vote(&self, vote: &Vote) -> Result<()> {
        let _w = self.write.lock();
        if !self.shared.regressions.vote_without_barrier {
            self.flush()?;
        }
        let mut meta = self.shared.meta.lock();
        let next = Meta {
            vote: Some(*vote),
            ..meta.clone()
        };
        next.store(&self.shared.fs, &self.shared.dir)
            .map_err(|e| self.shared.fail(e))?;
        *meta = next;
        Ok(())
    }

    /// Deletes the entries from `index` on, durably (a follower dropping a conflicting
    /// suffix). Indexes at or below the last purged one cannot be truncated.
    pub fn truncate(&self, index: u64) -> Result<()> {
        let _w = self.write.lock();
        self.flush()?;
        self.truncate_unlocked(index)
    }

    fn truncate_unlocked(&self, index: u64) -> Result<()> {
        let purged = self.shared.meta.lock().last_purged;
        if purged.is_some_and(|p| index <= p.index) {
            return Err(Error::Invalid(format!(
                "truncate at {index}, at or below the last purged entry {purged:?}"
            )));
        }
        let mut idx = self.shared.index.write();
        let pos = idx.position(index);
        if pos >= idx.ids.len() {
            return Ok(());
        }
        let keep_lsn = match pos.checked_sub(1) {
            Some(p) => idx.ids.get(p).map(|(lsn, _)| *lsn),
            None => idx.ids.front().map(|(lsn, _)| lsn.saturating_sub(1)),
        }
        .ok_or_else(|| Error::Internal(format!("no LSN for index {index}")))?;
        self.shared
            .wal
            .truncate_after(keep_lsn)
            .map_err(|e| self.shared.fail(e.into()))?;
        idx.ids.truncate(pos);
        Ok(())
    }

    /// Deletes the entries up to and including `log_id`, after writing it as the last
    /// purged id (so the purge never goes back, and open never sees a hole). Purging past
    /// the last entry empties the log; the next entry then follows `log_id`.
    pub fn purge(&self, log_id: LogId) -> Result<()> {
        let _w = self.write.lock();
        self.flush()?;
        let mut meta = self.shared.meta.lock();
        if meta.last_purged.is_some_and(|p| p.index >= log_id.index) {
            return Ok(());
        }
        let next = Meta {
            last_purged: Some(log_id),
            ..meta.clone()
        };
        let late_meta = self.shared.regressions.purge_before_meta;
        if !late_meta {
            next.store(&self.shared.fs, &self.shared.dir)
                .map_err(|e| self.shared.fail(e))?;
            // Published before the index shrinks: log_state never sees the last id go back.
            *meta = next.clone();
        }
        let cut = {
            let mut idx = self.shared.index.write();
            while idx
                .ids
                .front()
                .is_some_and(|(_, id)| id.index <= log_id.index)
            {
                idx.ids.pop_front();
            }
            idx.ids.front().map(|(lsn, _)| *lsn)
        };
        let wal = &self.shared.wal;
        let cut = cut.unwrap_or_else(|| wal.last_lsn() + 1);
        wal.truncate_before(cut)
            .map_err(|e| self.shared.fail(e.into()))?;
        if late_meta {
            next.store(&self.shared.fs, &self.shared.dir)
                .map_err(|e| self.shared.fail(e))?;
        }
        *meta = next;
        Ok(())
    }

    /// Makes everything durable and stops the flusher (after it ran every queued callback).
    /// Dropping the log does the same, without reporting an error.
    pub fn close(self) -> Result<()> {
        self.flush()
    }

    /// A handle for reads only, sharing this log (openraft's log reader).
    pub fn reader(&self) -> LogReaderCore<C> {
        LogReaderCore {
            shared: Arc::clone(&self.shared),
            _c: PhantomData,
        }
    }
}

impl<C> Drop for LogCore<C> {
    fn drop(&mut self) {
        if let Flusher::Thread { tx, handle } = &self.flusher {
            drop(tx.lock().take());
            if let Some(h) = handle.lock().take() {
                let _ = h.join();
            }
        }
    }
}

fn read_entries<C>(shared: &Shared, range: Range<u64>) -> Result<Vec<openraft::Entry<C>>>
where
    C: RaftTypeConfig<NodeId = u64>,
    EntryPayload<C>: DeserializeOwned,
{
    shared.check_poison()?;
    let lsns: Vec<(u64, Lsn)> = {
        let index = shared.index.read();
        let from = index.position(range.start);
        index
            .ids
            .range(from..)
            .take_while(|(_, id)| id.index < range.end)
            .map(|(lsn, id)| (id.index, *lsn))
            .collect()
    };
    let wal_dir = shared.dir.join(LOG_SUBDIR);
    let mut out = Vec::with_capacity(lsns.len());
    for (i, lsn) in lsns {
        // None: truncated or purged meanwhile; what was read so far is still a run.
        let Some(rec) = shared.wal.read(lsn)? else {
            break;
        };
        let entry = decode_entry::<C>(&rec, &wal_dir, lsn)?;
        if entry.log_id.index != i {
            return Err(Error::corrupt(
                &wal_dir,
                lsn,
                format!(
                    "record holds entry {} where index {i} was expected",
                    entry.log_id
                ),
            ));
        }
        out.push(entry);
    }
    Ok(out)
}

/// A read-only handle on a [`LogCore`]'s entries (it sees later appends too).
pub struct LogReaderCore<C> {
    shared: Arc<Shared>,
    _c: PhantomData<fn() -> C>,
}

impl<C> Clone for LogReaderCore<C> {
    fn clone(&self) -> Self {
        LogReaderCore {
            shared: Arc::clone(&self.shared),
            _c: PhantomData,
        }
    }
}

impl<C> LogReaderCore<C>
where
    C: RaftTypeConfig<NodeId = u64>,
    EntryPayload<C>: DeserializeOwned,
{
    /// See [`LogCore::entries`].
    pub fn entries(&self, range: Range<u64>) -> Result<Vec<openraft::Entry<C>>> {
        read_entries::<C>(&self.shared, range)
    }
}
