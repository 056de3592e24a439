//! The state machine on bitcask, synchronous: the core behind
//! [`StateMachine`](crate::StateMachine), also driven directly by the crash torture.
//!
//! Directory layout:
//!
//! ```text
//! MANIFEST                  the live generation and the current snapshot (atomic replace)
//! gen-<n>/                  the live bitcask store: user keys under `u`, `m:applied`, `m:membership`
//! snapshots/snap-<n>.snap   the current snapshot (format in crate::snapshot)
//! ```
//!
//! - `apply` writes the entries' effects, the last applied log id and the membership in
//!   one atomic bitcask batch: after a crash the applied state is exactly the durable effects.
//! - A snapshot is taken from a point-in-time view (the keydir copied while no apply runs;
//!   records are immutable, and merges wait for the view), written to a temporary file,
//!   synced and renamed durably, and published in `MANIFEST` only if it is newer than the
//!   current one.
//! - Installing a snapshot fills a fresh generation, syncs it, and switches with one
//!   `MANIFEST` replace; a crash at any point leaves the old or the new state. Open removes
//!   what no `MANIFEST` names (a half-filled generation, an unpublished snapshot).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bitcask::{Bitcask, WriteBatch};
use durable_fs::DurableFs;
use openraft::EntryPayload;
use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::snapshot::{Manifest, SnapshotReader, SnapshotWriter};
use crate::types::{Entry, LogId, Request, Response, SnapshotMeta, StoredMembership};

const USER: u8 = b'u';
const APPLIED_KEY: &[u8] = b"m:applied";
const MEMBERSHIP_KEY: &[u8] = b"m:membership";
/// The snapshots' directory.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// Options of the state machine.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SmOptions {
    /// The filesystem door. Default: the real filesystem.
    pub fs: DurableFs,
    /// Data file size of the bitcask store. Default: 64 MiB.
    pub max_file_bytes: u64,
    /// An apply's batch is split (each piece with its own applied id) past this many bytes;
    /// snapshot installs write batches of this size. Default: 8 MiB.
    pub max_batch_bytes: u64,
    /// Merge the store in the background once this many bytes are dead and they are over
    /// half of it. Default: 64 MiB; `u64::MAX` never.
    pub merge_dead_bytes: u64,
    /// Test support only: puts known bugs back (all off by default).
    #[doc(hidden)]
    pub regressions: SmRegressions,
}

/// Bugs a test can put back, to show that the crash torture catches them. Never set
/// outside tests.
#[derive(Clone, Copy, Debug, Default)]
#[doc(hidden)]
pub struct SmRegressions {
    /// Write an apply's effects and its applied id in two batches.
    pub split_meta: bool,
    /// Remove the old generation before the `MANIFEST` names the new one.
    pub remove_before_switch: bool,
}

impl Default for SmOptions {
    fn default() -> Self {
        SmOptions {
            fs: DurableFs::real(),
            max_file_bytes: 64 << 20,
            max_batch_bytes: 8 << 20,
            merge_dead_bytes: 64 << 20,
            regressions: SmRegressions::default(),
        }
    }
}

impl SmOptions {
    /// Uses `fs` for every file.
    pub fn with_fs(mut self, fs: DurableFs) -> Self {
        self.fs = fs;
        self
    }

    /// Sets the bitcask data file size.
    pub fn with_max_file_bytes(mut self, n: u64) -> Self {
        self.max_file_bytes = n;
        self
    }

    /// Sets the batch split size.
    pub fn with_max_batch_bytes(mut self, n: u64) -> Self {
        self.max_batch_bytes = n;
        self
    }

    /// Sets the background merge threshold.
    pub fn with_merge_dead_bytes(mut self, n: u64) -> Self {
        self.merge_dead_bytes = n;
        self
    }
}

/// Readers (snapshot views) and writers (merges, installs) of the store's files: a view's
/// keydir copy stays valid while it is held. A guard that can move to another thread.
#[derive(Debug, Default)]
struct Epoch {
    /// (views held, a writer inside)
    state: Mutex<(usize, bool)>,
    changed: Condvar,
}

#[derive(Debug)]
struct EpochRead(Arc<Epoch>);

struct EpochWrite<'a>(&'a Epoch);

impl Epoch {
    fn read(this: &Arc<Epoch>) -> EpochRead {
        let mut s = this.state.lock();
        while s.1 {
            this.changed.wait(&mut s);
        }
        s.0 += 1;
        EpochRead(Arc::clone(this))
    }

    fn write(&self) -> EpochWrite<'_> {
        let mut s = self.state.lock();
        while s.1 || s.0 > 0 {
            self.changed.wait(&mut s);
        }
        s.1 = true;
        EpochWrite(self)
    }
}

impl Drop for EpochRead {
    fn drop(&mut self) {
        let mut s = self.0.state.lock();
        s.0 = s.0.saturating_sub(1);
        self.0.changed.notify_all();
    }
}

impl Drop for EpochWrite<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state.lock();
        s.1 = false;
        self.0.changed.notify_all();
    }
}

#[derive(Debug)]
struct State {
    db: Arc<Bitcask>,
    manifest: Manifest,
    /// The current snapshot's metadata (the file is `snap-<manifest.snapshot>.snap`).
    snapshot: Option<SnapshotMeta>,
    next_seq: u64,
}

#[derive(Debug)]
struct Shared {
    fs: DurableFs,
    dir: PathBuf,
    opts: SmOptions,
    state: Mutex<State>,
    /// Snapshot views hold it shared; merges and installs take it exclusively, so a view's
    /// records stay where its keydir copy says.
    epoch: Arc<Epoch>,
    merging: AtomicBool,
    poison: Mutex<Option<Arc<Error>>>,
}

/// The state machine: a bitcask store, a `MANIFEST` and the current snapshot.
///
/// ```
/// use durable_raft::sm::{SmCore, SmOptions};
/// use durable_raft::{Entry, LogId, Request};
/// use openraft::{CommittedLeaderId, EntryPayload};
///
/// # let tmp = tempfile::tempdir().unwrap();
/// let sm = SmCore::open(tmp.path(), SmOptions::default())?;
/// let id = LogId::new(CommittedLeaderId::new(1, 1), 1);
/// let put = Request::Put { key: b"k".to_vec(), value: b"v".to_vec() };
/// sm.apply(vec![Entry { log_id: id, payload: EntryPayload::Normal(put) }])?;
/// assert_eq!(sm.get(b"k")?, Some(b"v".to_vec()));
/// assert_eq!(sm.applied_state()?.0, Some(id));
/// # Ok::<(), durable_raft::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SmCore {
    shared: Arc<Shared>,
}

fn gen_dir(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("gen-{n}"))
}

fn snapshot_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(SNAPSHOT_DIR).join(format!("snap-{seq}.snap"))
}

fn user_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(USER);
    k.extend_from_slice(key);
    k
}

fn encode<T: serde::Serialize>(what: &'static str, v: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(v).map_err(|source| Error::Encode { what, source })
}

/// A point-in-time view of the state machine, for a snapshot; see [`SmCore::view`].
pub struct SnapshotView {
    _epoch: EpochRead,
    applied: Option<LogId>,
    membership: StoredMembership,
    items: bitcask::Iter,
}

impl std::fmt::Debug for SnapshotView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotView")
            .field("applied", &self.applied)
            .finish_non_exhaustive()
    }
}

impl SmCore {
    /// Opens (or creates) the state machine in `dir`; removes what `MANIFEST` does not name.
    pub fn open(dir: impl AsRef<Path>, opts: SmOptions) -> Result<SmCore> {
        let dir = dir.as_ref().to_path_buf();
        let fs = opts.fs.clone();
        fs.create_dir_all(&dir)?;
        fs.create_dir_all(&dir.join(SNAPSHOT_DIR))?;
        let manifest_path = dir.join(crate::snapshot::MANIFEST_FILE);
        let mut manifest = match Manifest::load(&fs, &dir)? {
            Some(m) => m,
            None => {
                // Nothing is applied before a MANIFEST names a generation, so a directory
                // without one holds no state; anything that looks like state is refused
                // rather than overwritten (a MANIFEST deleted by hand, say).
                if let Some(name) = fs.list(&dir)?.into_iter().find(|n| n.starts_with("gen-")) {
                    return Err(Error::corrupt(
                        dir.join(&name),
                        0,
                        "a state machine generation without a MANIFEST",
                    ));
                }
                // Generation 0: created, no generation yet.
                let m = Manifest {
                    generation: 0,
                    snapshot: 0,
                };
                m.store(&fs, &dir)?;
                m
            }
        };
        if manifest.generation == 0 {
            // The first generation is created before a MANIFEST names it, so a MANIFEST
            // never names a missing one; what a crash left of an earlier try goes first.
            for name in fs.list(&dir)?.into_iter().filter(|n| n.starts_with("gen-")) {
                fs.remove_dir_all(&dir.join(&name))?;
            }
            Bitcask::open(gen_dir(&dir, 1), bitcask_options(&opts))?.close()?;
            manifest.generation = 1;
            manifest.store(&fs, &dir)?;
        } else if !fs.exists(&gen_dir(&dir, manifest.generation))? {
            return Err(Error::corrupt(
                &manifest_path,
                16,
                format!(
                    "names generation gen-{} which is missing",
                    manifest.generation
                ),
            ));
        }
        // Leftovers: generations and snapshots the MANIFEST does not name.
        for name in fs.list(&dir)? {
            if let Some(n) = name.strip_prefix("gen-")
                && n.parse::<u64>().ok() != Some(manifest.generation)
            {
                log::info!("state machine {}: removing leftover {name}", dir.display());
                fs.remove_dir_all(&dir.join(&name))?;
            }
        }
        // Every other snapshot file goes below, so numbers after the current one are free.
        let max_seq = manifest.snapshot;
        let snap_dir = dir.join(SNAPSHOT_DIR);
        for name in fs.list(&snap_dir)? {
            let seq = name
                .strip_prefix("snap-")
                .and_then(|s| s.strip_suffix(".snap"))
                .and_then(|s| s.parse::<u64>().ok());
            if seq != Some(manifest.snapshot) || manifest.snapshot == 0 {
                log::info!(
                    "state machine {}: removing leftover snapshot {name}",
                    dir.display()
                );
                fs.remove_file(&snap_dir.join(&name))?;
            }
        }
        let snapshot = if manifest.snapshot == 0 {
            None
        } else {
            let path = snapshot_path(&dir, manifest.snapshot);
            if !fs.exists(&path)? {
                return Err(Error::corrupt(
                    dir.join(crate::snapshot::MANIFEST_FILE),
                    24,
                    format!("names snapshot {} which is missing", path.display()),
                ));
            }
            let bytes = fs.read(&path)?;
            Some(SnapshotReader::new(&bytes, &path)?.meta)
        };
        let next_seq = max_seq.checked_add(1).ok_or_else(|| {
            Error::corrupt(
                &snap_dir,
                0,
                "a snapshot sequence number at the end of the range",
            )
        })?;
        let db = Bitcask::open(gen_dir(&dir, manifest.generation), bitcask_options(&opts))?;
        Ok(SmCore {
            shared: Arc::new(Shared {
                fs,
                dir,
                opts,
                state: Mutex::new(State {
                    db: Arc::new(db),
                    manifest,
                    snapshot,
                    next_seq,
                }),
                epoch: Arc::new(Epoch::default()),
                merging: AtomicBool::new(false),
                poison: Mutex::new(None),
            }),
        })
    }

    fn check_poison(&self) -> Result<()> {
        match &*self.shared.poison.lock() {
            Some(e) => Err(Error::Poisoned(Arc::clone(e))),
            None => Ok(()),
        }
    }

    fn fail(&self, e: Error) -> Error {
        let mut p = self.shared.poison.lock();
        let first = p.get_or_insert_with(|| Arc::new(e));
        log::error!(
            "state machine in {} poisoned: {first}",
            self.shared.dir.display()
        );
        Error::Poisoned(Arc::clone(first))
    }

    fn db(&self) -> Arc<Bitcask> {
        Arc::clone(&self.shared.state.lock().db)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_poison()?;
        Ok(self.db().get(&user_key(key))?)
    }

    /// Every user pair, sorted by key.
    pub fn pairs(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.check_poison()?;
        let mut out = Vec::new();
        for item in self.db().iter() {
            let (k, v) = item?;
            if let Some((&USER, key)) = k.split_first() {
                out.push((key.to_vec(), v));
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    fn read_meta(db: &Bitcask, path: &Path) -> Result<(Option<LogId>, StoredMembership)> {
        let applied = match db.get(APPLIED_KEY)? {
            Some(b) => postcard::from_bytes(&b)
                .map_err(|e| Error::corrupt(path, 0, format!("m:applied does not decode: {e}")))?,
            None => None,
        };
        let membership = match db.get(MEMBERSHIP_KEY)? {
            Some(b) => postcard::from_bytes(&b).map_err(|e| {
                Error::corrupt(path, 0, format!("m:membership does not decode: {e}"))
            })?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }

    fn read_meta_of(&self, db: &Bitcask) -> Result<(Option<LogId>, StoredMembership)> {
        let generation = self.shared.state.lock().manifest.generation;
        Self::read_meta(db, &gen_dir(&self.shared.dir, generation))
    }

    /// The last applied log id and the membership in effect.
    pub fn applied_state(&self) -> Result<(Option<LogId>, StoredMembership)> {
        self.check_poison()?;
        self.read_meta_of(&self.db())
    }

    /// Applies `entries` in order, durably: the effects and the applied id together.
    pub fn apply(&self, entries: Vec<Entry>) -> Result<Vec<Response>> {
        self.check_poison()?;
        let db = self.db();
        let (_, mut membership) = self.read_meta_of(&db)?;
        let mut responses = Vec::with_capacity(entries.len());
        let mut batch = WriteBatch::new();
        // (response index) of each delete in `batch`, in order.
        let mut deletes: Vec<usize> = Vec::new();
        let mut last: Option<LogId> = None;
        let mut membership_changed = false;
        let limit = self.shared.opts.max_batch_bytes;
        for entry in entries {
            if !batch.is_empty() && batch.encoded_len() >= limit {
                self.commit(
                    &db,
                    &mut batch,
                    &mut deletes,
                    last,
                    &membership,
                    membership_changed,
                    &mut responses,
                )?;
                membership_changed = false;
            }
            responses.push(Response::default());
            if let EntryPayload::Normal(req) = &entry.payload
                && let Some(why) = self.refusal(req)
            {
                // Committed, so every replica applies it: as the same no-op everywhere.
                if let Some(r) = responses.last_mut() {
                    r.refused = Some(why);
                }
                last = Some(entry.log_id);
                continue;
            }
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(Request::Put { key, value }) => {
                    batch.put(&user_key(&key), &value)
                }
                EntryPayload::Normal(Request::Delete { key }) => {
                    deletes.push(responses.len() - 1);
                    batch.delete(&user_key(&key));
                }
                EntryPayload::Membership(m) => {
                    membership = StoredMembership::new(Some(entry.log_id), m);
                    membership_changed = true;
                }
            }
            last = Some(entry.log_id);
        }
        if last.is_some() {
            self.commit(
                &db,
                &mut batch,
                &mut deletes,
                last,
                &membership,
                membership_changed,
                &mut responses,
            )?;
        }
        self.maybe_merge(&db);
        Ok(responses)
    }

    /// Why `req` cannot be applied (a key or value over the store's limits), if so. A
    /// deterministic answer, the same on every replica; a client can ask before proposing.
    pub fn refusal(&self, req: &Request) -> Option<String> {
        let o = bitcask_options(&self.shared.opts);
        let (key, value) = match req {
            Request::Put { key, value } => (key, value.len()),
            Request::Delete { key } => (key, 0),
        };
        // The stored key is the user key behind a one-byte prefix.
        if key.len() as u64 + 1 > u64::from(o.max_key_bytes) {
            return Some(format!(
                "a key of {} bytes (the limit is {})",
                key.len(),
                o.max_key_bytes.saturating_sub(1)
            ));
        }
        if value as u64 > u64::from(o.max_value_bytes) {
            return Some(format!(
                "a value of {value} bytes (the limit is {})",
                o.max_value_bytes
            ));
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn commit(
        &self,
        db: &Bitcask,
        batch: &mut WriteBatch,
        deletes: &mut Vec<usize>,
        last: Option<LogId>,
        membership: &StoredMembership,
        membership_changed: bool,
        responses: &mut [Response],
    ) -> Result<()> {
        let mut b = std::mem::take(batch);
        let mut meta = WriteBatch::new();
        meta.put(APPLIED_KEY, &encode("applied log id", &last)?);
        if membership_changed {
            meta.put(MEMBERSHIP_KEY, &encode("membership", membership)?);
        }
        let existed = if self.shared.opts.regressions.split_meta {
            let existed = if b.is_empty() {
                Vec::new()
            } else {
                db.write(b).map_err(|e| self.fail(e.into()))?
            };
            db.write(meta).map_err(|e| self.fail(e.into()))?;
            existed
        } else {
            for (k, v) in meta.iter() {
                if let Some(v) = v {
                    b.put(k, v);
                }
            }
            db.write(b).map_err(|e| self.fail(e.into()))?
        };
        for (i, e) in deletes.drain(..).zip(existed) {
            if let Some(r) = responses.get_mut(i) {
                r.existed = e;
            }
        }
        Ok(())
    }

    /// Starts a background merge when the store is mostly dead bytes (and none runs).
    fn maybe_merge(&self, db: &Arc<Bitcask>) {
        let s = db.stats();
        let dead = s.dead_bytes;
        if dead < self.shared.opts.merge_dead_bytes || dead.saturating_mul(2) < s.total_bytes {
            return;
        }
        if self.shared.merging.swap(true, Ordering::AcqRel) {
            return;
        }
        let db = Arc::clone(db);
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("raft-sm-merge".into())
            .spawn(move || {
                {
                    let _w = shared.epoch.write();
                    if let Err(e) = db.compact() {
                        log::error!(
                            "state machine merge in {} failed: {e}",
                            shared.dir.display()
                        );
                    }
                }
                shared.merging.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.shared.merging.store(false, Ordering::Release);
        }
    }

    /// Merges the store now (its dead records go), after any snapshot view is dropped.
    pub fn compact(&self) -> Result<()> {
        self.check_poison()?;
        let _w = self.shared.epoch.write();
        let db = self.db();
        db.compact().map_err(|e| self.fail(e.into()))?;
        Ok(())
    }

    /// A point-in-time view for a snapshot: the applied id, the membership and a copy of
    /// the keydir, taken now (call it while no apply runs, as openraft does). Applies may go
    /// on while the view is read; merges and installs wait until it is dropped.
    pub fn view(&self) -> Result<SnapshotView> {
        self.check_poison()?;
        let guard = Epoch::read(&self.shared.epoch);
        let db = self.db();
        let (applied, membership) = self.read_meta_of(&db)?;
        Ok(SnapshotView {
            _epoch: guard,
            applied,
            membership,
            items: db.iter(),
        })
    }

    /// Builds a snapshot from `view`: writes it to `snapshots/` (temporary file, sync,
    /// durable rename) and publishes it in `MANIFEST` if it is newer than the current one.
    /// Returns its metadata and bytes (returned even when a newer snapshot won).
    pub fn build(&self, view: SnapshotView) -> Result<(SnapshotMeta, Vec<u8>)> {
        self.check_poison()?;
        let seq = {
            let mut st = self.shared.state.lock();
            let s = st.next_seq;
            st.next_seq = s.checked_add(1).ok_or_else(|| {
                Error::Invalid("snapshot sequence numbers are exhausted".to_owned())
            })?;
            s
        };
        let meta = SnapshotMeta {
            last_log_id: view.applied,
            last_membership: view.membership.clone(),
            snapshot_id: format!("{}-{seq}", view.applied.map_or(0, |l| l.index)),
        };
        let mut w = SnapshotWriter::new(&meta)?;
        let mut pairs = Vec::new();
        for item in view.items {
            let (k, v) = item?;
            if let Some((&USER, key)) = k.split_first() {
                pairs.push((key.to_vec(), v));
            }
        }
        drop(view._epoch);
        pairs.sort_unstable();
        for (k, v) in &pairs {
            w.push(k, v)?;
        }
        drop(pairs);
        let bytes = w.finish();
        let path = snapshot_path(&self.shared.dir, seq);
        self.shared
            .fs
            .atomic_replace(&path, &bytes)
            .map_err(|e| self.fail(e.into()))?;
        let mut st = self.shared.state.lock();
        let newer = st
            .snapshot
            .as_ref()
            .is_none_or(|cur| cur.last_log_id < meta.last_log_id);
        if newer {
            let next = Manifest {
                snapshot: seq,
                ..st.manifest
            };
            next.store(&self.shared.fs, &self.shared.dir)
                .map_err(|e| self.fail(e))?;
            let old = std::mem::replace(&mut st.manifest, next);
            st.snapshot = Some(meta.clone());
            if old.snapshot != 0 {
                self.shared
                    .fs
                    .remove_file(&snapshot_path(&self.shared.dir, old.snapshot))
                    .map_err(|e| self.fail(e.into()))?;
            }
        } else {
            self.shared
                .fs
                .remove_file(&path)
                .map_err(|e| self.fail(e.into()))?;
        }
        Ok((meta, bytes))
    }

    /// The current snapshot: its metadata and bytes (checked).
    pub fn current_snapshot(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>> {
        self.check_poison()?;
        let st = self.shared.state.lock();
        let Some(meta) = st.snapshot.clone() else {
            return Ok(None);
        };
        let path = snapshot_path(&self.shared.dir, st.manifest.snapshot);
        let bytes = self.shared.fs.read(&path)?;
        drop(st);
        let r = SnapshotReader::new(&bytes, &path)?;
        if r.meta != meta {
            return Err(Error::corrupt(
                &path,
                16,
                "its metadata is not the one published",
            ));
        }
        Ok(Some((meta, bytes)))
    }

    /// Replaces the whole state with the snapshot `bytes` (whose stored metadata must be
    /// `meta`): keeps the bytes as the current snapshot, fills a fresh generation, and
    /// switches to both with one `MANIFEST` replace.
    pub fn install(&self, meta: &SnapshotMeta, bytes: &[u8]) -> Result<()> {
        self.check_poison()?;
        let dir = &self.shared.dir;
        let fs = &self.shared.fs;
        let transfer = PathBuf::from(format!("snapshot {} (received)", meta.snapshot_id));
        let mut reader = SnapshotReader::new(bytes, &transfer)?;
        if reader.meta != *meta {
            return Err(Error::corrupt(
                &transfer,
                16,
                format!(
                    "stored metadata {:?} is not the metadata sent, {meta:?}",
                    reader.meta
                ),
            ));
        }
        let (seq, generation) = {
            let mut st = self.shared.state.lock();
            let s = st.next_seq;
            st.next_seq = s.checked_add(1).ok_or_else(|| {
                Error::Invalid("snapshot sequence numbers are exhausted".to_owned())
            })?;
            let g = st.manifest.generation.checked_add(1).ok_or_else(|| {
                Error::corrupt(
                    dir.join(crate::snapshot::MANIFEST_FILE),
                    16,
                    "the generation number is at the end of the range",
                )
            })?;
            (s, g)
        };
        let path = snapshot_path(dir, seq);
        fs.atomic_replace(&path, bytes)
            .map_err(|e| self.fail(e.into()))?;
        let new_dir = gen_dir(dir, generation);
        if fs.exists(&new_dir)? {
            fs.remove_dir_all(&new_dir)?;
        }
        let db = Bitcask::open(&new_dir, bitcask_options(&self.shared.opts))?;
        let mut batch = WriteBatch::new();
        while let Some((k, v)) = reader.next_pair(&transfer)? {
            batch.put(&user_key(k), v);
            if batch.encoded_len() >= self.shared.opts.max_batch_bytes {
                db.write(std::mem::take(&mut batch))?;
            }
        }
        batch.put(APPLIED_KEY, &encode("applied log id", &meta.last_log_id)?);
        batch.put(
            MEMBERSHIP_KEY,
            &encode("membership", &meta.last_membership)?,
        );
        db.write(batch)?;
        db.sync()?;
        let _w = self.shared.epoch.write();
        let mut st = self.shared.state.lock();
        let old_manifest = st.manifest;
        let next = Manifest {
            generation,
            snapshot: seq,
        };
        let old_dir = gen_dir(dir, old_manifest.generation);
        let old_db = if self.shared.opts.regressions.remove_before_switch {
            let old_db = std::mem::replace(&mut st.db, Arc::new(db));
            close_store(old_db, &old_dir, fs);
            next.store(fs, dir).map_err(|e| self.fail(e))?;
            None
        } else {
            next.store(fs, dir).map_err(|e| self.fail(e))?;
            Some(std::mem::replace(&mut st.db, Arc::new(db)))
        };
        st.manifest = next;
        st.snapshot = Some(meta.clone());
        drop(st);
        if let Some(old_db) = old_db {
            close_store(old_db, &old_dir, fs);
        }
        if old_manifest.snapshot != 0 {
            fs.remove_file(&snapshot_path(dir, old_manifest.snapshot))
                .map_err(|e| self.fail(e.into()))?;
        }
        Ok(())
    }
}

/// Closes a replaced generation and removes its directory; if a reader still holds it, or
/// the removal fails, the directory stays for the next open to remove.
fn close_store(db: Arc<Bitcask>, dir: &Path, fs: &DurableFs) {
    match Arc::try_unwrap(db) {
        Ok(db) => {
            if let Err(e) = db.close() {
                log::warn!("state machine: closing {}: {e}", dir.display());
            }
            if let Err(e) = fs.remove_dir_all(dir) {
                log::warn!("state machine: cannot remove {}: {e}", dir.display());
            }
        }
        Err(_) => log::info!(
            "state machine: {} is still read; the next open removes it",
            dir.display()
        ),
    }
}

fn bitcask_options(opts: &SmOptions) -> bitcask::Options {
    bitcask::Options::default()
        .with_fs(opts.fs.clone())
        .with_max_file_bytes(opts.max_file_bytes)
        .with_sync(bitcask::SyncPolicy::Always)
        .with_auto_merge(None)
}
