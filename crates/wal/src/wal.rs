//! [`Wal`]: appends, group commit, rotation, truncation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use durable_fs::{Access, Chunks, DirLock, File, GroupCommit, Source, Ticker, Waker};
use parking_lot::Mutex;

use crate::chain;
use crate::error::{CorruptionKind, Error, Result};
use crate::format::{
    BATCH_CONTINUES, Lsn, MAX_RECORD_LIMIT, MAX_SEGMENT_LEN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
    SegmentHeader, VERSION, decode_header, encode_record, encode_seal, segment_name,
};
use crate::options::{Options, SyncPolicy};
use crate::reader::Iter;
use crate::recovery::{Extent, RecoveryReport, SegmentMeta, chain_of, recover};

/// A segmented write-ahead log. `Send + Sync`: share it (in an `Arc`) between threads.
///
/// See the [crate docs](crate) for the guarantees and an example.
pub struct Wal {
    inner: Arc<Inner>,
    /// The background syncer of the `Interval` and `Bytes` policies.
    ticker: Ticker,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    opts: Options,
    log: Mutex<Log>,
    /// Group commit over LSNs; its failure is the log's poison.
    group: GroupCommit<Arc<Error>>,
    /// Wakes the background syncer early (`Bytes` policy).
    waker: Waker,
    /// Bytes written into the log since open, and up to the last completed sync.
    appended_bytes: AtomicU64,
    synced_bytes: AtomicU64,
    /// Records appended and fsyncs that made appends durable, since open (`stats`).
    appends: AtomicU64,
    fsyncs: AtomicU64,
    report: RecoveryReport,
    _lock: DirLock,
}

/// The writer's state, under one lock.
#[derive(Debug)]
struct Log {
    /// Oldest first; the last is the active segment.
    segments: Vec<SegmentMeta>,
    /// Encoded records not yet written; they belong at `buf_at` in the active segment.
    buf: Vec<u8>,
    buf_at: u64,
    /// LSN of the next record.
    next_lsn: Lsn,
    /// Size of the active segment file (records, then preallocated zeros).
    file_len: u64,
    /// `Options::preallocate_bytes`.
    prealloc: u64,
    /// Appends between `enqueue` and the end of their wait for durability (`Always`).
    waiting: usize,
    /// The active segment ends with a seal (nothing appended since).
    sealed: bool,
    /// LSN ranges `(after, high]` dropped by `truncate_after` while appends were waiting:
    /// such an append fails with [`Error::Truncated`] instead of returning its LSN. Emptied
    /// whenever no append waits, so it only grows while waits overlap truncations.
    dropped: Vec<(Lsn, Lsn)>,
    /// Record offsets per segment (by first LSN), for [`Wal::read`]: built on the first read
    /// of a segment, kept up to date by appends to the active one.
    index: BTreeMap<Lsn, SegIndex>,
}

/// A segment index's parts: first LSN, record starts, end of the last record.
pub(crate) type SegIndexParts = (Lsn, Vec<u64>, u64);

/// Where each record of one segment starts: record `first + i` spans `starts[i]` to
/// `starts[i + 1]` (the last one to `end`). Only for segments whose LSNs are contiguous.
#[derive(Debug, Default)]
struct SegIndex {
    first: Lsn,
    starts: Vec<u64>,
    end: u64,
}

impl SegIndex {
    /// The byte range of record `lsn`, if indexed.
    fn span(&self, lsn: Lsn) -> Option<(u64, u64)> {
        let i = usize::try_from(lsn.checked_sub(self.first)?).ok()?;
        let start = *self.starts.get(i)?;
        let end = self.starts.get(i + 1).copied().unwrap_or(self.end);
        Some((start, end))
    }
}

impl Log {
    fn active(&self) -> Result<&SegmentMeta> {
        self.segments
            .last()
            .ok_or_else(|| Error::InvalidArgument("the log has no segment".into()))
    }

    fn active_mut(&mut self) -> Result<&mut SegmentMeta> {
        self.segments
            .last_mut()
            .ok_or_else(|| Error::InvalidArgument("the log has no segment".into()))
    }

    /// Logical end of the active segment, counting buffered bytes.
    fn active_len(&self) -> u64 {
        self.buf_at + self.buf.len() as u64
    }

    /// Writes the buffered records to the active segment (no sync).
    fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let at = self.buf_at;
        let end = at + self.buf.len() as u64;
        let file = Arc::clone(&self.active()?.file);
        file.write_all_at(&self.buf, at)?;
        if self.prealloc > 0 && end > self.file_len {
            // Grow in steps, so most fdatasyncs have no file size to flush; with zeros
            // written, not a sparse hole, so they overwrite allocated blocks. A failed zero
            // write (ENOSPC) fails the append, fail-stop, though the records before it may be
            // found by the next open: a failed call is "maybe written", never acknowledged.
            self.file_len = (end.div_ceil(self.prealloc) * self.prealloc)
                .min(MAX_SEGMENT_LEN)
                .max(end);
            file.allocate(self.file_len)?;
        }
        self.buf_at += self.buf.len() as u64;
        self.buf.clear();
        let end = self.buf_at;
        extend_last_extent(self.active_mut()?, end);
        Ok(())
    }
}

/// Drops the indexes of segments the log no longer holds.
fn prune_index(log: &mut Log) {
    let Log {
        index, segments, ..
    } = log;
    index.retain(|first, _| segments.iter().any(|s| s.first_lsn == *first));
}

fn extend_last_extent(seg: &mut SegmentMeta, end: u64) {
    match seg.extents.last_mut() {
        Some(e) => e.end = end,
        None => seg.extents.push(Extent {
            start: SEGMENT_HEADER_LEN as u64,
            end,
        }),
    }
}

impl Inner {
    fn check_poison(&self) -> Result<()> {
        self.group.check().map_err(Error::Poisoned)
    }

    /// Fail-stop: the first failure is kept and reported by every later call.
    fn fail(&self, e: Error) -> Error {
        log::error!("{}: poisoned (fail-stop): {e}", self.dir.display());
        Error::Poisoned(self.group.poison(Arc::new(e)))
    }

    /// Creates, durably, a new active segment starting at `log.next_lsn`, after syncing the
    /// current one completely (so only the last segment can ever have a torn tail).
    fn rotate(&self, log: &mut Log) -> Result<()> {
        let empty_at_next = log
            .segments
            .last()
            .filter(|s| s.first_lsn == log.next_lsn && log.buf.is_empty());
        match empty_at_next {
            // The active segment is empty and already starts at the next LSN.
            Some(s) if s.version == VERSION => return Ok(()),
            // An empty format-1 segment there (a log written before format 2, checkpointed
            // or never written): swapped in one step for an empty format-2 one of the same
            // name, so the high-water mark it records is never absent from the directory.
            Some(s) => {
                let header = SegmentHeader {
                    version: VERSION,
                    salt: durable_fs::random_salt(s.first_lsn),
                    first_lsn: s.first_lsn,
                };
                // Only logs written before format 2 have format-1 segments, and those have
                // no chain yet: nothing names the old salt, so the new one needs no chain
                // entry first (the chain is written right after, naming it).
                let path = s.path.clone();
                self.opts.fs.atomic_replace(&path, &header.encode())?;
                let file = self.opts.fs.open(&path, Access::ReadWrite)?;
                log.segments.pop();
                return self.start_segment(log, path, file, header);
            }
            None => {}
        }
        log.flush()?;
        if let Some(old) = log.segments.last() {
            // Sealed segments end at their records: preallocated zeros after them would be
            // bytes a bit flip could turn into "damage" in a segment that cannot be cut.
            if log.file_len > log.buf_at {
                old.file.set_len(log.buf_at)?;
            }
            old.file.sync_data()?;
            self.group.advance(log.next_lsn - 1);
            // The old segment is now read-only; keep its handle for readers.
        }
        let first_lsn = log.next_lsn;
        let path = self.dir.join(segment_name(first_lsn));
        let file = self.opts.fs.create_new(&path)?;
        let header = SegmentHeader {
            version: VERSION,
            salt: durable_fs::random_salt(first_lsn),
            first_lsn,
        };
        file.write_all_at(&header.encode(), 0)?;
        file.sync_data()?;
        self.start_segment(log, path, file, header)
    }

    /// Makes the new, durable, empty segment `path` the active one and names it in the chain.
    fn start_segment(
        &self,
        log: &mut Log,
        path: PathBuf,
        file: File,
        header: SegmentHeader,
    ) -> Result<()> {
        log.segments.push(SegmentMeta {
            first_lsn: header.first_lsn,
            path,
            salt: header.salt,
            version: header.version,
            file: Arc::new(file),
            extents: Vec::new(),
            last_lsn: None,
        });
        log.buf_at = SEGMENT_HEADER_LEN as u64;
        log.file_len = SEGMENT_HEADER_LEN as u64;
        log.sealed = false;
        // The indexes of segments no longer in the log go (a segment is indexed only once
        // something reads it).
        prune_index(log);
        // The chain names the new segment (and the old one's last LSN) before anything is
        // appended to it: from now on, losing either is corruption, not a shorter log.
        self.store_chain(log)
    }

    /// Replaces the segment chain with the segments `log` holds, durably.
    fn store_chain(&self, log: &Log) -> Result<()> {
        chain::store(&self.opts.fs, &self.dir, &chain_of(&log.segments))
    }

    /// Seals the active segment once everything in it is durable: appends a seal record (its
    /// `synced_lsn` is the last LSN, true because that fsync already returned) and syncs it.
    /// After this, damage anywhere in the segment's records is corruption at the next open,
    /// never a torn tail. Nothing to do for a segment without records or already sealed.
    fn seal(&self) -> Result<()> {
        let mut log = self.log.lock();
        let last = log.next_lsn - 1;
        let active = log.active()?;
        let has_records = active.last_lsn.is_some_and(|l| l >= active.first_lsn);
        if !has_records || log.sealed || self.group.durable() < last || !log.buf.is_empty() {
            return Ok(());
        }
        let (salt, file) = (active.salt, Arc::clone(&active.file));
        encode_seal(&mut log.buf, salt, last);
        log.flush()?;
        file.sync_data()?;
        log.sealed = true;
        Ok(())
    }

    /// Adds records to the log (buffered); returns the first and last LSN. With `wait`, the
    /// caller will wait for them to become durable and then call [`Inner::finish_wait`].
    fn enqueue(&self, payloads: &[&[u8]], wait: bool) -> Result<(Lsn, Lsn)> {
        self.check_poison()?;
        let max = u64::from(self.opts.max_record_bytes);
        let mut total = 0u64;
        for p in payloads {
            if p.len() as u64 > max {
                return Err(Error::TooLarge {
                    len: p.len() as u64,
                    max,
                });
            }
            total += (RECORD_HEADER_LEN + p.len()) as u64;
        }
        // A segment may not be longer than the format allows: a batch must fit in one, with
        // its header and the seal that closes it.
        let room = MAX_SEGMENT_LEN - (SEGMENT_HEADER_LEN + RECORD_HEADER_LEN) as u64;
        if total > room {
            return Err(Error::TooLarge {
                len: total,
                max: room,
            });
        }
        let mut log = self.log.lock();
        self.check_poison()?;
        let has_records = log.active_len() > SEGMENT_HEADER_LEN as u64;
        // Room for the seal too, so a sealed segment stays within `max_segment_bytes`.
        let sealed_len = log.active_len() + total + RECORD_HEADER_LEN as u64;
        if has_records && sealed_len > self.opts.max_segment_bytes {
            self.rotate(&mut log).map_err(|e| self.fail(e))?;
        }
        let first = log.next_lsn;
        let salt = log.active()?.salt;
        let synced = self.group.durable();
        let n = payloads.len();
        let active_first = log.active()?.first_lsn;
        for (i, p) in payloads.iter().enumerate() {
            let flags = if i + 1 < n { BATCH_CONTINUES } else { 0 };
            let lsn = log.next_lsn;
            let at = log.active_len();
            encode_record(&mut log.buf, salt, lsn, synced, flags, p);
            log.next_lsn += 1;
            let end = log.active_len();
            // Keep the active segment's index (if it has one, complete up to here).
            if let Some(ix) = log.index.get_mut(&active_first)
                && ix.first + ix.starts.len() as u64 == lsn
            {
                ix.starts.push(at);
                ix.end = end;
            }
        }
        log.sealed = false;
        let last = log.next_lsn - 1;
        if let Ok(seg) = log.active_mut() {
            seg.last_lsn = Some(last);
        }
        if wait {
            log.waiting += 1;
        }
        if log.buf.len() >= self.opts.write_buffer_bytes {
            log.flush().map_err(|e| self.fail(e))?;
        }
        drop(log);
        self.appended_bytes.fetch_add(total, Ordering::Relaxed);
        self.appends.fetch_add(n as u64, Ordering::Relaxed);
        Ok((first, last))
    }

    /// Ends the wait of an append whose records end at `last`: fails it with
    /// [`Error::Truncated`] when a `truncate_after` dropped them meanwhile.
    fn finish_wait(&self, last: Lsn, waited: Result<()>) -> Result<()> {
        let mut log = self.log.lock();
        log.waiting = log.waiting.saturating_sub(1);
        let dropped = log
            .dropped
            .iter()
            .find(|(after, high)| last > *after && last <= *high)
            .map(|(after, _)| *after);
        if log.waiting == 0 {
            log.dropped.clear();
        }
        drop(log);
        match dropped {
            Some(after) => Err(Error::Truncated { lsn: last, after }),
            None => waited,
        }
    }

    /// Returns once `lsn` is durable, sharing the fsync with concurrent callers (see
    /// [`GroupCommit`]).
    fn wait_durable(&self, lsn: Lsn) -> Result<()> {
        self.group
            .wait(lsn, || self.sync_once().map_err(Arc::new))
            .map_err(Error::Poisoned)
    }

    /// Writes the buffer and fsyncs the active segment; returns the LSN now durable.
    fn sync_once(&self) -> Result<Lsn> {
        let bytes = self.appended_bytes.load(Ordering::Relaxed);
        let (file, target) = {
            let mut log = self.log.lock();
            log.flush()?;
            (Arc::clone(&log.active()?.file), log.next_lsn - 1)
        };
        // Outside the log lock: appenders keep filling the buffer while the disk works.
        file.sync_data()?;
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.synced_bytes.fetch_max(bytes, Ordering::Relaxed);
        Ok(target)
    }

    fn last_lsn(&self) -> Lsn {
        self.log.lock().next_lsn - 1
    }

    /// Under [`SyncPolicy::Bytes`], wakes the background syncer once enough is unsynced.
    fn kick_if_due(&self) {
        if let SyncPolicy::Bytes(n) = self.opts.sync {
            let unsynced = self
                .appended_bytes
                .load(Ordering::Relaxed)
                .saturating_sub(self.synced_bytes.load(Ordering::Relaxed));
            if unsynced >= n {
                self.waker.kick();
            }
        }
    }
}

impl Wal {
    /// Opens (creating if needed) the log in `dir`, taking its exclusive lock and recovering
    /// it according to `opts.recovery`. See [`Wal::recovery_report`] for what was found.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let wal = wal::Wal::open(tmp.path().join("log"), wal::Options::default())?;
    /// assert_eq!(wal.last_lsn(), 0); // a new, empty log
    /// # Ok::<(), wal::Error>(())
    /// ```
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Wal> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let fs = opts.fs.clone();
        // A directory holding anything but a log is refused before anything is created.
        let lock = fs.open_store(&dir, &crate::format::STORE_KIND)??;
        let recovered = recover(&fs, &dir, MAX_RECORD_LIMIT, opts.recovery, true)?;
        // What recovery read may have come from the page cache after a process crash: make
        // it durable before calling it durable.
        if let Some(last) = recovered.segments.last() {
            last.file.sync_data()?;
        }
        let last_lsn = recovered.next_lsn - 1;
        let mut log = Log {
            buf_at: recovered
                .segments
                .last()
                .and_then(|s| s.extents.last().map(|e| e.end))
                .unwrap_or(SEGMENT_HEADER_LEN as u64),
            file_len: match recovered.segments.last() {
                Some(s) => s.file.len()?,
                None => 0,
            },
            segments: recovered.segments,
            buf: Vec::with_capacity(opts.write_buffer_bytes),
            next_lsn: recovered.next_lsn,
            prealloc: opts.preallocate_bytes,
            sealed: recovered.last_sealed,
            waiting: 0,
            dropped: Vec::new(),
            index: BTreeMap::new(),
        };
        let mut ticker = Ticker::new();
        let inner = Arc::new(Inner {
            dir,
            log: Mutex::new(Log {
                segments: Vec::new(),
                buf: Vec::new(),
                buf_at: 0,
                next_lsn: 0,
                file_len: 0,
                prealloc: 0,
                sealed: false,
                waiting: 0,
                dropped: Vec::new(),
                index: BTreeMap::new(),
            }),
            group: GroupCommit::new(last_lsn, |m| Arc::new(Error::Internal(m))),
            waker: ticker.waker(),
            appended_bytes: AtomicU64::new(0),
            synced_bytes: AtomicU64::new(0),
            appends: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            report: recovered.report,
            _lock: lock,
            opts,
        });
        if recovered.needs_new_segment {
            inner.rotate(&mut log)?; // also writes the chain
        } else if !recovered.chained {
            inner.store_chain(&log)?;
        }
        *inner.log.lock() = log;
        // What recovery read is durable now (synced above): sealed, so bit rot in the last
        // fsync's records before the crash is corruption at later opens, not a torn tail.
        // Not after a salvage: what `SkipCorrupt` kept around damage it could not prove
        // durable is not claimed durable for it.
        if inner.report.skipped.is_empty() {
            inner.seal()?;
        }
        let every = match inner.opts.sync {
            SyncPolicy::Interval(every) => Some(every),
            SyncPolicy::Bytes(_) => Some(Duration::from_millis(100)),
            SyncPolicy::Always | SyncPolicy::Never => None,
        };
        if let Some(every) = every {
            spawn_syncer(&mut ticker, &inner, every)?;
        }
        Ok(Wal { inner, ticker })
    }

    /// What recovery found and repaired when this log was opened.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let wal = wal::Wal::open(tmp.path(), wal::Options::default())?;
    /// assert!(wal.recovery_report().truncated_tail.is_none());
    /// # Ok::<(), wal::Error>(())
    /// ```
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// The directory of this log.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let wal = wal::Wal::open(tmp.path(), wal::Options::default())?;
    /// assert_eq!(wal.dir(), tmp.path());
    /// # Ok::<(), wal::Error>(())
    /// ```
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Appends one record and returns its LSN. With [`SyncPolicy::Always`] the record is
    /// durable when this returns. Payloads over `max_record_bytes` get [`Error::TooLarge`].
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let wal = wal::Wal::open(tmp.path(), wal::Options::default())?;
    /// assert_eq!(wal.append(b"set x = 1")?, 1);
    /// # Ok::<(), wal::Error>(())
    /// ```
    pub fn append(&self, payload: &[u8]) -> Result<Lsn> {
        let (_, last) = self.append_batch(&[payload])?;
        Ok(last)
    }

    /// Appends records as one batch: after a crash either all of them are in the log or none.
    /// Returns the first and last LSN (an empty batch appends nothing and returns
    /// `InvalidArgument`).
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let wal = wal::Wal::open(tmp.path(), wal::Options::default())?;
    /// assert_eq!(wal.append_batch(&[b"a", b"b"])?, (1, 2));
    /// # Ok::<(), wal::Error>(())
    /// ```
    pub fn append_batch(&self, payloads: &[&[u8]]) -> Result<(Lsn, Lsn)> {
        if payloads.is_empty() {
            return Err(Error::InvalidArgument("empty batch".into()));
        }
        let inner = &self.inner;
        let always = inner.opts.sync == SyncPolicy::Always;
        let _writer = always.then(|| inner.group.writer());
        let (first, last) = inner.enqueue(payloads, always)?;
        match inner.opts.sync {
            SyncPolicy::Always => {
                let waited = inner.wait_durable(last);
                inner.finish_wait(last, waited)?;
            }
            SyncPolicy::Bytes(_) => inner.kick_if_due(),
            SyncPolicy::Interval(_) | SyncPolicy::Never => {}
        }
        Ok((first, last))
    }

    /// Makes every record appended so far durable (sharing the fsync with concurrent callers).
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # use wal::{Options, SyncPolicy, Wal};
    /// let wal = Wal::open(tmp.path(), Options::default().with_sync(SyncPolicy::Never))?;
    /// wal.append(b"x")?;
    /// wal.sync()?;
    /// assert_eq!(wal.durable_lsn(), 1);
    /// # Ok::<(), wal::Error>(())
    /// ```
    pub fn sync(&self) -> Result<()> {
        let last = self.inner.last_lsn();
        self.inner.wait_durable(last)
    }

    /// Makes every record up to `lsn` durable. (Records a [`Wal::truncate_after`] dropped
    /// meanwhile are gone, durably: `sync_to` returning for their LSN does not bring them back;
    /// [`Wal::read`] says which are there.)
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # use wal::{Options, SyncPolicy, Wal};
    /// let wal = Wal::open(tmp.path(), Options::default().with_sync(SyncPolicy::Never))?;
    /// wal.append(b"x")?;
    /// wal.append(b"y")?;
    /// wal.sync_to(1)?;
    /// assert!(wal.durable_lsn() >= 1);
    /// # Ok::<(), wal::Error>(())
    /// ```
    pub fn sync_to(&self, lsn: Lsn) -> Result<()> {
        let last = self.inner.last_lsn();
        if lsn > last {
            return Err(Error::InvalidArgument(format!(
                "sync_to({lsn}) is beyond the last LSN {last}"
            )));
        }
        self.inner.wait_durable(lsn)
    }

    /// The payload of record `lsn`, or `None` if the log does not hold it (never written, or
    /// truncated away). A record is readable once its append returned, durable or not. One
    /// positional read of exactly that record, its checksum and LSN verified: each segment keeps the offsets of its records
    /// (8 bytes a record), built by one scan of the segment on its first read and kept up to
    /// date by appends. Damage is [`Error::Corruption`] naming the file and offset.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let wal = wal::Wal::open(tmp.path(), wal::Options::default())?;
    /// let a = wal.append(b"first")?;
    /// let b = wal.append(b"second")?;
    /// assert_eq!(wal.read(b)?.as_deref(), Some(&b"second"[..]));
    /// assert_eq!(wal.read(a)?.as_deref(), Some(&b"first"[..]));
    /// assert_eq!(wal.read(b + 1)?, None);
    /// # Ok::<(), wal::Error>(())
    /// ```
    pub fn read(&self, lsn: Lsn) -> Result<Option<Vec<u8>>> {
        let inner = &self.inner;
        inner.check_poison()?;
        let (seg, span) = {
            let mut log = inner.log.lock();
            let Some(i) = log.segments.iter().rposition(|s| s.first_lsn <= lsn) else {
                return Ok(None);
            };
            let holds = log
                .segments
                .get(i)
                .is_some_and(|s| s.last_lsn.is_some_and(|l| l >= lsn));
            if !holds {
                return Ok(None);
            }
            if i + 1 == log.segments.len() {
                // The active segment: buffered records are written to the OS first.
                log.flush().map_err(|e| inner.fail(e))?;
            }
            let Some(seg) = log.segments.get(i).cloned() else {
                return Ok(None);
            };
            let active = i + 1 == log.segments.len();
            if active && !log.index.contains_key(&seg.first_lsn) {
                // The active segment is scanned under the lock, once: appends wait for it,
                // and then keep its index up to date.
                let (first, starts, end) = crate::reader::offsets(&seg, MAX_RECORD_LIMIT);
                log.index.insert(first, SegIndex { first, starts, end });
            }
            let span = log.index.get(&seg.first_lsn).map(|ix| ix.span(lsn));
            (seg, span)
        };
        let span = match span {
            Some(span) => span,
            None => {
                // An immutable segment is scanned without the lock (appends go on), then its
                // index is kept if the segment is still in the log.
                let (first, starts, end) = crate::reader::offsets(&seg, MAX_RECORD_LIMIT);
                let ix = SegIndex { first, starts, end };
                let span = ix.span(lsn);
                let mut log = inner.log.lock();
                if log.segments.iter().any(|s| s.first_lsn == first) {
                    log.index.entry(first).or_insert(ix);
                }
                span
            }
        };
        let Some((start, end)) = span else {
            // Not indexed (LSNs with gaps, after a salvage): read forward from the segment.
            let it = Iter::new(vec![seg], lsn, MAX_RECORD_LIMIT);
            for r in it {
                let (l, payload) = r?;
                if l == lsn {
                    return Ok(Some(payload));
                }
                if l > lsn {
                    break;
                }
            }
            return Ok(None);
        };
        let corrupt = |kind| Error::Corruption {
            path: seg.path.clone(),
            offset: start,
            kind,
        };
        let len = usize::try_from(end - start).map_err(|_| {
            corrupt(CorruptionKind::LengthTooLarge {
                len: u32::MAX,
                max: MAX_RECORD_LIMIT,
            })
        })?;
        let mut buf = vec![0u8; len];
        let read = seg.file.read_exact_at(&mut buf, start).map_err(Error::from);
        let decoded = read.and_then(|()| {
            let r = crate::format::decode_record(&buf, seg.salt, seg.version, MAX_RECORD_LIMIT)
                .map_err(|e| corrupt(CorruptionKind::from(e)))?;
            if r.lsn != lsn {
                return Err(corrupt(CorruptionKind::LsnMismatch {
                    expected: lsn,
                    found: r.lsn,
                }));
            }
            Ok(r.payload.to_vec())
        });
        match decoded {
            Ok(payload) => Ok(Some(payload)),
            // A `truncate_after` that cut the record while it was read: gone, not damaged.
            Err(e) => {
                let log = inner.log.lock();
                let still = log
                    .segments
                    .iter()
                    .any(|s| s.first_lsn == seg.first_lsn && s.last_lsn.is_some_and(|l| l >= lsn));
                if still { Err(e) } else { Ok(None) }
            }
        }
    }

    /// Iterates `(lsn, payload)` for every record with LSN in `range` (`a..b`, `a..=b`,
    /// `a..`), in order, as of now: [`Wal::iter_from`] stopped at the end of the range.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let wal = wal::Wal::open(tmp.path(), wal::Options::default())?;
    /// for p in [b"a", b"b", b"c", b"d"] {
    ///     wal.append(p)?;
    /// }
    /// let lsns: Vec<u64> = wal.iter_range(2..4)?.map(|r| r.map(|(l, _)| l)).collect::<Result<_, _>>()?;
    /// assert_eq!(lsns, [2, 3]);
    /// # Ok::<(), wal::Error>(())
    /// ```
    pub fn iter_range(
        &self,
        range: impl std::ops::RangeBounds<Lsn>,
    ) -> Result<impl Iterator<Item = Result<(Lsn, Vec<u8>)>>> {
        use std::ops::Bound;
        let from = match range.start_bound() {
            Bound::Included(&a) => a,
            Bound::Excluded(&a) => a.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&b) => Some(b),
            Bound::Excluded(&b) => Some(b.saturating_sub(1)).filter(|_| b > 0),
            Bound::Unbounded => None,
        };
        let empty = matches!(range.end_bound(), Bound::Excluded(&0));
        let it = self.iter_from(from)?;
        Ok(it
            .take_while(move |r| {
                !empty
                    && r.as_ref()
                        .map_or(true, |(l, _)| end.is_none_or(|e| *l <= e))
            })
            .fuse())
    }

    /// Appends records as one batch and returns at once, whatever the sync policy: the
    /// records are readable (and iterated) now, durable once [`Wal::sync_to`] (or
    /// [`Wal::sync`]) returns for their last LSN. How a caller gets per-call durability:
    /// a Raft log appends entries, answers once they are readable, and acknowledges them
    /// after the `sync_to` that covers them.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let wal = wal::Wal::open(tmp.path(), wal::Options::default())?;
    /// let (first, last) = wal.append_batch_nowait(&[b"e1", b"e2"])?;
    /// assert_eq!(wal.read(first)?.as_deref(), Some(&b"e1"[..])); // readable at once
    /// wal.sync_to(last)?;                                          // durable from here
    /// assert!(wal.durable_lsn() >= last);
    /// # Ok::<(), wal::Error>(())
    /// ```
    pub fn append_batch_nowait(&self, payloads: &[&[u8]]) -> Result<(Lsn, Lsn)> {
        if payloads.is_empty() {
            return Err(Error::InvalidArgument("empty batch".into()));
        }
        let inner = &self.inner;
        let r = inner.enqueue(payloads, false)?;
        inner.kick_if_due();
        Ok(r)
    }

    /// Every record up to this LSN is durable (0: none yet).
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let wal = wal::Wal::open(tmp.path(), wal::Options::default())?;
    /// wal.append(b"x")?; // SyncPolicy::Always
    /// assert_eq!(wal.durable_lsn(), 1);
    /// # Ok::<(), wal::Error>(())
    /// ```
    pub fn durable_lsn(&self) -> Lsn {
        self.inner.group.durable()
    }

    /// The LSN of the last record appended (durable or not); 0 if none ever was.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let wal = wal::Wal::open(tmp.path(), wal::Options::default())?;
    /// assert_eq!(wal.last_lsn(), 0);
    /// wal.append(b"x")?;
    /// assert_eq!(wal.last_lsn(), 1);
    /// # Ok::<(), wal::Error>(())
    /// ```
    pub fn last_lsn(&self) -> Lsn {
        self.inner.last_lsn()
    }

    /// Counts and sizes (answers on a poisoned log too).
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let wal = wal::Wal::open(tmp.path(), wal::Options::default())?;
    /// wal.append(b"one")?;
    /// wal.append(b"two")?;
    /// let s = wal.stats();
    /// assert_eq!((s.segments, s.appends, s.last_lsn), (1, 2, 2));
    /// assert!(s.fsyncs >= 1 && s.records_per_fsync() <= 2.0);
    /// # Ok::<(), wal::Error>(())
    /// ```
    pub fn stats(&self) -> WalStats {
        let inner = &self.inner;
        let (segments, segment_bytes, last_lsn) = {
            let log = inner.log.lock();
            let bytes = log.segments.iter().map(|s| s.file.len().unwrap_or(0)).sum();
            (log.segments.len() as u64, bytes, log.next_lsn - 1)
        };
        WalStats {
            segments,
            segment_bytes,
            last_lsn,
            durable_lsn: inner.group.durable(),
            appends: inner.appends.load(Ordering::Relaxed),
            appended_bytes: inner.appended_bytes.load(Ordering::Relaxed),
            fsyncs: inner.fsyncs.load(Ordering::Relaxed),
            last_error: inner.group.failure().map(|e| e.to_string()),
        }
    }

    /// The LSN of the oldest record still in the log, if any.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let wal = wal::Wal::open(tmp.path(), wal::Options::default())?;
    /// assert_eq!(wal.first_lsn(), None);
    /// wal.append(b"x")?;
    /// assert_eq!(wal.first_lsn(), Some(1));
    /// # Ok::<(), wal::Error>(())
    /// ```
    pub fn first_lsn(&self) -> Option<Lsn> {
        let log = self.inner.log.lock();
        log.segments
            .iter()
            .find(|s| s.last_lsn.is_some())
            .and_then(|s| {
                let ext = s.extents.first()?;
                let mut head = [0u8; RECORD_HEADER_LEN];
                s.file.read_exact_at(&mut head, ext.start).ok()?;
                crate::format::peek_lsn(&head, s.version)
            })
    }

    /// Iterates `(lsn, payload)` for every record with LSN `>= from`, in order, as of now.
    /// Buffered records are written to the OS first so the iterator sees them.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let wal = wal::Wal::open(tmp.path(), wal::Options::default())?;
    /// wal.append(b"a")?;
    /// wal.append(b"b")?;
    /// let tail: Vec<_> = wal.iter_from(2)?.collect::<Result<_, _>>()?;
    /// assert_eq!(tail, vec![(2, b"b".to_vec())]);
    /// # Ok::<(), wal::Error>(())
    /// ```
    pub fn iter_from(&self, from: Lsn) -> Result<Iter> {
        let inner = &self.inner;
        inner.check_poison()?;
        let mut log = inner.log.lock();
        log.flush().map_err(|e| inner.fail(e))?;
        Ok(Iter::new(log.segments.clone(), from, MAX_RECORD_LIMIT))
    }

    /// Removes, durably and oldest first, every segment whose records are all below `lsn`
    /// (checkpointing). Returns how many segments were removed. Records at or above `lsn` are
    /// kept; some below it may remain in a segment that also holds later ones.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # use wal::{Options, Wal};
    /// let wal = Wal::open(tmp.path(), Options::default().with_max_segment_bytes(4096))?;
    /// for _ in 0..200 {
    ///     wal.append(&[7u8; 100])?;
    /// }
    /// let removed = wal.truncate_before(150)?; // a checkpoint covers 1..150
    /// assert!(removed > 0);
    /// assert!(wal.first_lsn().is_some_and(|f| f <= 150));
    /// # Ok::<(), wal::Error>(())
    /// ```
    pub fn truncate_before(&self, lsn: Lsn) -> Result<usize> {
        let inner = &self.inner;
        inner.check_poison()?;
        let mut log = inner.log.lock();
        let mut run = || -> Result<usize> {
            // Everything below lsn, including the active segment's records: start a fresh
            // segment so the active one can go too, and the next LSN stays recorded on disk.
            let active_first = log.active()?.first_lsn;
            if lsn >= log.next_lsn && log.next_lsn > active_first {
                inner.rotate(&mut log)?;
            }
            let mut gone = Vec::new();
            while log.segments.len() > 1 {
                let next_first = log.segments.get(1).map_or(Lsn::MAX, |s| s.first_lsn);
                if next_first > lsn {
                    break;
                }
                gone.push(log.segments.remove(0));
            }
            if gone.is_empty() {
                return Ok(0);
            }
            // The chain forgets them first: a crash before they are all gone leaves
            // leftovers the next open removes, never a "missing segment".
            inner.store_chain(&log)?;
            prune_index(&mut log);
            for seg in &gone {
                inner.opts.fs.remove_file(&seg.path)?;
            }
            Ok(gone.len())
        };
        run().map_err(|e| inner.fail(e))
    }

    /// Drops every record after `lsn`, durably (for example a Raft log discarding a
    /// conflicting suffix). LSNs above `lsn` that were used are not reused: the next append
    /// gets a fresh LSN past every one handed out so far. Appends still waiting for
    /// durability (under [`SyncPolicy::Always`]) whose records it drops fail with
    /// [`Error::Truncated`]; an append that had already returned its LSN was acknowledged,
    /// and this call removes its record on purpose.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let wal = wal::Wal::open(tmp.path(), wal::Options::default())?;
    /// wal.append(b"a")?;
    /// wal.append(b"b")?;
    /// wal.truncate_after(1)?;
    /// assert_eq!(wal.read(2)?, None);
    /// assert_eq!(wal.append(b"c")?, 3); // LSN 2 is never reused
    /// # Ok::<(), wal::Error>(())
    /// ```
    pub fn truncate_after(&self, lsn: Lsn) -> Result<()> {
        let inner = &self.inner;
        inner.check_poison()?;
        let mut log = inner.log.lock();
        let high = log.next_lsn.saturating_sub(1);
        if lsn >= high {
            return Ok(());
        }
        let mut run = || -> Result<()> {
            // First a fresh segment at the high-water mark, so that it is on disk before any
            // record goes: a crash at any later point can never lead to LSN reuse.
            inner.rotate(&mut log)?;
            // Then the segments wholly after `lsn` leave the chain (not the fresh one), and
            // the one holding `lsn` is listed as ending there: once the chain says so, a
            // crash before the files are removed or cut leaves what the next open finishes.
            let fresh = log.segments.pop();
            let mut gone = Vec::new();
            while log.segments.last().is_some_and(|s| s.first_lsn > lsn) {
                gone.extend(log.segments.pop());
            }
            let mut cut = None;
            if let Some(seg) = log.segments.last_mut()
                && seg.last_lsn.is_some_and(|l| l > lsn)
            {
                let at = offset_of(seg, lsn.saturating_add(1), MAX_RECORD_LIMIT)?;
                seg.extents.retain(|e| e.start < at);
                if let Some(e) = seg.extents.last_mut() {
                    e.end = e.end.min(at);
                }
                seg.last_lsn = (lsn >= seg.first_lsn).then_some(lsn);
                cut = Some((seg.path.clone(), at));
            }
            log.segments.extend(fresh);
            inner.store_chain(&log)?;
            prune_index(&mut log);
            for seg in &gone {
                inner.opts.fs.remove_file(&seg.path)?;
            }
            if let Some((path, at)) = cut {
                let rw = inner.opts.fs.open(&path, Access::ReadWrite)?;
                rw.set_len(at)?;
                rw.sync_data()?;
            }
            Ok(())
        };
        run().map_err(|e| inner.fail(e))?;
        if log.waiting > 0 {
            // Only once the records are gone (a failed truncation poisons the log, and its
            // waiters get that error), and under the log lock, which a waiting append takes
            // to check this list.
            match log.dropped.last_mut() {
                Some(last) if last.1 >= lsn => *last = (last.0.min(lsn), high),
                _ => log.dropped.push((lsn, high)),
            }
        }
        // Under the log lock, so no append acknowledged after this truncation (with a fresh
        // LSN above `high`) is ever reported below the durable mark.
        inner.group.lower_to(lsn);
        drop(log);
        Ok(())
    }

    /// Syncs everything and closes the log. Dropping it does the same, ignoring errors.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let wal = wal::Wal::open(tmp.path(), wal::Options::default())?;
    /// wal.append(b"x")?;
    /// wal.close()?;
    /// # Ok::<(), wal::Error>(())
    /// ```
    pub fn close(mut self) -> Result<()> {
        self.stop_background();
        self.sync()?;
        let inner = &self.inner;
        inner.seal().map_err(|e| inner.fail(e))
    }

    fn stop_background(&mut self) {
        // A panic in the syncer cannot have left data half-written: it only calls sync.
        self.ticker.stop();
    }
}

/// The background syncer of the `Interval` and `Bytes` policies: sleeps until kicked or the
/// interval passes, then syncs through the same group commit as everyone else. A failure
/// poisons the log (the next append reports it) and ends the thread.
fn spawn_syncer(ticker: &mut Ticker, inner: &Arc<Inner>, every: Duration) -> Result<()> {
    let inner = Arc::clone(inner);
    ticker
        .spawn("wal-sync", every, move || {
            let last = inner.last_lsn();
            inner.check_poison().is_ok()
                && (inner.group.durable() >= last || inner.wait_durable(last).is_ok())
        })
        .map_err(Error::Thread)
}

/// The byte offset of record `lsn` in `seg` (or the end of its records), walking the headers
/// of the records its extents hold (checked when the log was opened or written), a chunk at
/// a time.
fn offset_of(seg: &SegmentMeta, lsn: Lsn, max: u32) -> Result<u64> {
    let mut src = Chunks::new(&seg.file, seg.file.len()?);
    for e in &seg.extents {
        let mut pos = e.start;
        while pos < e.end {
            let h = src.get(pos, RECORD_HEADER_LEN)?;
            let Ok(r) = decode_header(h, seg.salt, seg.version, max) else {
                break;
            };
            if r.lsn >= lsn && !r.is_seal() {
                return Ok(pos);
            }
            pos += r.encoded_len();
        }
    }
    Ok(seg
        .extents
        .last()
        .map_or(SEGMENT_HEADER_LEN as u64, |e| e.end))
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.inner.dir)
            .field("last_lsn", &self.last_lsn())
            .field("durable_lsn", &self.durable_lsn())
            .finish_non_exhaustive()
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.stop_background();
        if self.sync().is_ok() {
            let _ = self.inner.seal();
        }
    }
}

/// What [`Wal::stats`] reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WalStats {
    /// Segments in the log (the active one included).
    pub segments: u64,
    /// Bytes of the segment files, preallocated zeros included.
    pub segment_bytes: u64,
    /// The LSN of the last record appended (0 if none ever was).
    pub last_lsn: Lsn,
    /// Every record up to this LSN is durable.
    pub durable_lsn: Lsn,
    /// Records appended since open.
    pub appends: u64,
    /// Bytes appended since open (records with their headers).
    pub appended_bytes: u64,
    /// fsyncs that made appends durable since open: fewer than the appends when concurrent
    /// appenders share them (group commit).
    pub fsyncs: u64,
    /// The error that poisoned the log, if one did.
    pub last_error: Option<String>,
}

impl WalStats {
    /// Appends per fsync since open (0 before the first fsync): above 1 when group commit
    /// shares fsyncs between concurrent appenders.
    pub fn records_per_fsync(&self) -> f64 {
        if self.fsyncs == 0 {
            0.0
        } else {
            self.appends as f64 / self.fsyncs as f64
        }
    }
}
