//! [`Bitcask`]: the public face of the store (open, reads, writes, merge, close) and [`Iter`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use durable_fs::Ticker;
use kv_core::{
    CompactionReport, Error, KvStore, Pairs, Result, Stats, SyncPolicy, WriteBatch, max_batch_bytes,
};

use crate::inner::{HintJob, Inner, Published};
use crate::keydir::Loc;
use crate::options::Options;
use crate::recovery::{RecoveryReport, recover};

/// A Bitcask key-value store. `Send + Sync`: share it (in an `Arc`) between threads; reads
/// run concurrently with writes and merges.
///
/// See the [crate docs](crate) for the guarantees and an example.
pub struct Bitcask {
    inner: Arc<Inner>,
    /// The interval syncer and the automatic merge, if configured.
    ticker: Ticker,
}

impl std::fmt::Debug for Bitcask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bitcask")
            .field("dir", &self.inner.dir)
            .field("keys", &self.inner.keydir.read().map.len())
            .finish_non_exhaustive()
    }
}

impl Bitcask {
    /// Opens (creating if needed) the store in `dir`: takes the directory lock (unless
    /// read-only), finishes or abandons an interrupted merge, loads the keydir from hint
    /// files (or CRC-checked scans), truncates a torn tail, and starts a new active file.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let db = bitcask::Bitcask::open(tmp.path().join("db"), bitcask::Options::default())?;
    /// assert!(db.is_empty()?);
    /// # Ok::<(), bitcask::Error>(())
    /// ```
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Bitcask> {
        let dir = dir.as_ref();
        let recovered = recover(dir, &opts, false)?;
        let inner = Arc::new(Inner::new(dir.to_path_buf(), opts, recovered));
        let mut ticker = Ticker::new();
        if inner.writer.is_some() {
            if let SyncPolicy::Interval(every) = inner.opts.sync {
                let i = Arc::clone(&inner);
                ticker
                    .spawn("bitcask-sync", every, move || {
                        let last = i.last_seq();
                        i.check_poison().is_ok()
                            && (i.group.durable() >= last || i.wait_durable(last).is_ok())
                    })
                    .map_err(Error::Thread)?;
            }
            if let Some(t) = inner.opts.auto_merge {
                let i = Arc::clone(&inner);
                ticker
                    .spawn("bitcask-merge", t.check_interval, move || {
                        if i.check_poison().is_err() {
                            return false;
                        }
                        if crate::merge::should_merge(&i, &t) {
                            // A failed merge leaves the old files in place; try again later
                            // (a poisoned store stops at the next tick).
                            if let Err(e) = i.merge() {
                                log::error!("{}: background merge failed: {e}", i.dir.display());
                            }
                        }
                        true
                    })
                    .map_err(Error::Thread)?;
            }
        }
        Ok(Bitcask { inner, ticker })
    }

    /// Checks every byte of the store in `dir` and changes nothing (a read-only open's rules,
    /// without the lock, beside a running writer too): the identity file, the files list, a
    /// merge marker, every record of every data file, live or overwritten, tombstones and
    /// seals included, and every hint against a scan of its data file. Damage is
    /// [`Error::Corruption`] naming the file and offset; a torn tail that an open would cut
    /// is not damage: it is in the report's `truncated_tail`, as a read-only open reports it.
    ///
    /// ```
    /// use bitcask::{Bitcask, Options};
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let dir = tmp.path().join("db");
    /// let db = Bitcask::open(&dir, Options::default())?;
    /// db.put(b"k", b"v")?;
    /// db.close()?;
    /// let report = Bitcask::verify(&dir, Options::default())?;
    /// assert_eq!(report.keys, 1);
    /// assert!(report.truncated_tail.is_none());
    /// # Ok::<(), bitcask::Error>(())
    /// ```
    pub fn verify(dir: impl AsRef<Path>, opts: Options) -> Result<RecoveryReport> {
        // What an open would do, without doing it: a torn tail is reported, damage refused
        // (never skipped, whatever recovery mode the caller's options carry).
        let opts = opts
            .with_read_only(true)
            .with_recovery(kv_core::RecoveryMode::TolerateTornTail);
        Ok(recover(dir.as_ref(), &opts, true)?.report)
    }

    /// What open found and repaired.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = bitcask::Bitcask::open(tmp.path(), bitcask::Options::default())?;
    /// assert_eq!(db.recovery_report().keys, 0);
    /// # Ok::<(), bitcask::Error>(())
    /// ```
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// The value of `key`, if it is live. One positional read, checksum verified.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = bitcask::Bitcask::open(tmp.path(), bitcask::Options::default())?;
    /// db.put(b"k", b"v")?;
    /// assert_eq!(db.get(b"k")?, Some(b"v".to_vec()));
    /// assert_eq!(db.get(b"absent")?, None);
    /// # Ok::<(), bitcask::Error>(())
    /// ```
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }

    /// True if `key` is live (no disk read). Fails with [`Error::Poisoned`] after a failed
    /// write or sync, like every call that reads data.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = bitcask::Bitcask::open(tmp.path(), bitcask::Options::default())?;
    /// db.put(b"k", b"v")?;
    /// assert!(db.contains(b"k")?);
    /// assert!(!db.contains(b"absent")?);
    /// # Ok::<(), bitcask::Error>(())
    /// ```
    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        self.inner.check_poison()?;
        Ok(self.inner.keydir.read().map.contains_key(key))
    }

    /// Sets `key` to `value` (an empty value is a value, not a delete).
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = bitcask::Bitcask::open(tmp.path(), bitcask::Options::default())?;
    /// db.put(b"k", b"v")?; // durable when it returns (SyncPolicy::Always)
    /// db.put(b"empty", b"")?; // an empty value is a value
    /// assert_eq!(db.get(b"empty")?, Some(Vec::new()));
    /// # Ok::<(), bitcask::Error>(())
    /// ```
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut b = WriteBatch::new();
        b.put(key, value);
        self.write(b).map(|_| ())
    }

    /// Deletes `key`; returns whether it was live. Deleting a missing key writes nothing.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = bitcask::Bitcask::open(tmp.path(), bitcask::Options::default())?;
    /// db.put(b"k", b"v")?;
    /// assert!(db.delete(b"k")?);
    /// assert!(!db.delete(b"k")?); // already gone
    /// # Ok::<(), bitcask::Error>(())
    /// ```
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        self.inner.writer()?;
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
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = bitcask::Bitcask::open(tmp.path(), bitcask::Options::default())?;
    /// let mut batch = bitcask::WriteBatch::new();
    /// batch.put(b"a", b"1");
    /// batch.delete(b"b");
    /// db.write(batch)?; // all or nothing, after a crash too
    /// assert_eq!(db.get(b"a")?, Some(b"1".to_vec()));
    /// # Ok::<(), bitcask::Error>(())
    /// ```
    pub fn write(&self, batch: WriteBatch) -> Result<Vec<bool>> {
        let inner = &self.inner;
        inner.check_poison()?;
        inner.writer()?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let o = &inner.opts;
        let max_batch = max_batch_bytes(o.max_file_bytes);
        batch.check_sizes(o.max_key_bytes, o.max_value_bytes, max_batch)?;
        let _writer = (inner.opts.sync == SyncPolicy::Always).then(|| inner.group.writer());
        let (seq, published) = inner.append(batch)?;
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
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # use bitcask::{Bitcask, Options, SyncPolicy};
    /// let db = Bitcask::open(tmp.path(), Options::default().with_sync(SyncPolicy::Never))?;
    /// db.put(b"k", b"v")?;
    /// db.sync()?; // durable from here
    /// assert!(db.durable_seq() >= 1);
    /// # Ok::<(), bitcask::Error>(())
    /// ```
    pub fn sync(&self) -> Result<()> {
        let inner = &self.inner;
        inner.writer()?;
        let last = inner.last_seq();
        inner.wait_durable(last)
    }

    /// Live keys, in no particular order (a snapshot).
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = bitcask::Bitcask::open(tmp.path(), bitcask::Options::default())?;
    /// db.put(b"b", b"1")?;
    /// db.put(b"a", b"2")?;
    /// let mut keys = db.keys()?;
    /// keys.sort();
    /// assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec()]);
    /// # Ok::<(), bitcask::Error>(())
    /// ```
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
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = bitcask::Bitcask::open(tmp.path(), bitcask::Options::default())?;
    /// db.put(b"a", b"1")?;
    /// db.put(b"a", b"2")?;
    /// assert_eq!(db.len()?, 1);
    /// # Ok::<(), bitcask::Error>(())
    /// ```
    pub fn len(&self) -> Result<usize> {
        self.inner.check_poison()?;
        Ok(self.inner.keydir.read().map.len())
    }

    /// True when no key is live.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = bitcask::Bitcask::open(tmp.path(), bitcask::Options::default())?;
    /// assert!(db.is_empty()?);
    /// db.put(b"a", b"1")?;
    /// assert!(!db.is_empty()?);
    /// # Ok::<(), bitcask::Error>(())
    /// ```
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The failure that poisoned the store, if one did: after it every call that reads or
    /// writes data returns [`Error::Poisoned`] with it, until the store is reopened.
    /// [`Bitcask::stats`] keeps answering.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = bitcask::Bitcask::open(tmp.path(), bitcask::Options::default())?;
    /// assert!(db.poisoned().is_none()); // healthy
    /// # Ok::<(), bitcask::Error>(())
    /// ```
    pub fn poisoned(&self) -> Option<Arc<Error>> {
        self.inner.group.failure()
    }

    /// The highest sequence number known durable (diagnostics; answers when poisoned too).
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = bitcask::Bitcask::open(tmp.path(), bitcask::Options::default())?;
    /// db.put(b"k", b"v")?;
    /// assert!(db.durable_seq() >= 1);
    /// # Ok::<(), bitcask::Error>(())
    /// ```
    pub fn durable_seq(&self) -> u64 {
        self.inner.group.durable()
    }

    /// Iterates `(key, value)` over a snapshot of the live keys, reading each value lazily.
    /// After a failure poisons the store, the next item is the [`Error::Poisoned`] error and
    /// the iteration ends (also for iterators created before the failure).
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = bitcask::Bitcask::open(tmp.path(), bitcask::Options::default())?;
    /// db.put(b"k", b"v")?;
    /// let all: Vec<_> = db.iter().collect::<Result<_, _>>()?;
    /// assert_eq!(all, vec![(b"k".to_vec(), b"v".to_vec())]);
    /// # Ok::<(), bitcask::Error>(())
    /// ```
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
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = bitcask::Bitcask::open(tmp.path(), bitcask::Options::default())?;
    /// db.put(b"a", b"12")?;
    /// db.put(b"b", b"345")?;
    /// let value_bytes = db.fold(0, |n, _key, value| n + value.len())?;
    /// assert_eq!(value_bytes, 5);
    /// # Ok::<(), bitcask::Error>(())
    /// ```
    pub fn fold<A>(&self, init: A, mut f: impl FnMut(A, &[u8], &[u8]) -> A) -> Result<A> {
        self.inner.check_poison()?;
        let mut acc = init;
        for item in self.iter() {
            let (k, v) = item?;
            acc = f(acc, &k, &v);
        }
        Ok(acc)
    }

    /// Merges (Bitcask's compaction): rewrites the live records of every immutable file into
    /// new files and removes the old ones; crash-safe at every step. Reads and writes continue
    /// meanwhile.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = bitcask::Bitcask::open(tmp.path(), bitcask::Options::default())?;
    /// db.put(b"k", b"old")?;
    /// db.put(b"k", b"new")?;
    /// db.compact()?; // the old value's space is reclaimed
    /// assert_eq!(db.get(b"k")?, Some(b"new".to_vec()));
    /// # Ok::<(), bitcask::Error>(())
    /// ```
    pub fn compact(&self) -> Result<CompactionReport> {
        self.inner.writer()?;
        self.inner.merge()
    }

    /// Counts and sizes (answers on a poisoned store too).
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = bitcask::Bitcask::open(tmp.path(), bitcask::Options::default())?;
    /// db.put(b"k", b"v")?;
    /// let s = db.stats();
    /// assert_eq!(s.keys, 1);
    /// assert!(s.total_bytes > 0);
    /// # Ok::<(), bitcask::Error>(())
    /// ```
    pub fn stats(&self) -> Stats {
        let inner = &self.inner;
        let kd = inner.keydir.read();
        let (total, dead) = kd
            .files
            .values()
            .fold((0, 0), |(t, d), s| (t + s.total, d + s.dead));
        let mut stats = Stats::default();
        stats.keys = kd.map.len() as u64;
        stats.files = inner.files.lock().len() as u64;
        stats.total_bytes = total;
        stats.dead_bytes = dead;
        stats.open_handles = inner.handles.len() as u64;
        stats.hint_write_failures = inner.hint_failures.load(Ordering::Relaxed);
        let poison = inner.group.failure();
        inner.merges.fill(
            &mut stats,
            poison.as_ref().map(|e| e as &dyn std::fmt::Display),
        );
        stats
    }

    /// Syncs, writes the active file's hint, and closes. Dropping does the same, ignoring
    /// errors.
    ///
    /// ```
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let db = bitcask::Bitcask::open(tmp.path(), bitcask::Options::default())?;
    /// db.put(b"k", b"v")?;
    /// db.close()?; // syncs and releases the lock
    /// # Ok::<(), bitcask::Error>(())
    /// ```
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        self.ticker.stop();
        let inner = &self.inner;
        let Some(writer) = &inner.writer else {
            return Ok(());
        };
        inner.check_poison()?;
        let last = inner.last_seq();
        inner.wait_durable(last)?;
        let mut w = writer.lock();
        w.app.seal()?;
        if !w.hint.is_empty() {
            let job = HintJob {
                id: w.app.data.id,
                salt: w.app.data.salt,
                entries: std::mem::take(&mut w.hint),
                len: w.app.offset,
            };
            inner.write_hint(job);
        }
        // Under the writer: nothing is appended while the image is taken.
        inner.write_image(w.app.seq);
        drop(w);
        Ok(())
    }
}

impl Drop for Bitcask {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
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
            // Not cached on the way: a scan of the whole store would push out the hot values.
            let cached = self.inner.cache.get(loc.seq, &key);
            let read = cached.map_or_else(|| self.inner.read_value_from_disk(&key, loc), Ok);
            let value = match read {
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

impl KvStore for Bitcask {
    fn write(&self, batch: WriteBatch) -> Result<()> {
        Bitcask::write(self, batch).map(|_| ())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Bitcask::get(self, key)
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        Bitcask::delete(self, key)
    }

    fn sync(&self) -> Result<()> {
        Bitcask::sync(self)
    }

    fn compact(&self) -> Result<()> {
        Bitcask::compact(self).map(|_| ())
    }

    fn pairs(&self) -> Result<Pairs> {
        let mut pairs: Pairs = self.iter().collect::<Result<_>>()?;
        pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(pairs)
    }

    fn stats(&self) -> Result<Stats> {
        Ok(Bitcask::stats(self))
    }

    fn close(self: Box<Self>) -> Result<()> {
        Bitcask::close(*self)
    }
}
