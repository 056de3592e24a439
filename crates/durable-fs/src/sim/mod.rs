//! The simulated filesystem: deterministic, in memory, and it loses what was not synced.
//!
//! [`SimFs`] keeps two states of every file and directory: what the running process sees
//! (*live*) and what would survive a power cut (*durable*). A file's data and size become
//! durable at its `sync_data`/`sync_all`; a directory's entries (create, rename, remove, mkdir)
//! become durable only at a sync of *that directory*, in order. [`SimFs::crash`] returns the
//! filesystem a power cut leaves:
//!
//! - [`CrashMode::Strict`]: exactly the durable state. Unsynced appends vanish; unsynced
//!   creates, renames and removes are undone.
//! - [`CrashMode::Torn`] (seeded): each file keeps a random prefix of its unsynced writes, and
//!   the write it stopped in may be cut, the rest of that sector holding garbage or zeros; each
//!   directory keeps a random prefix of its unsynced entry changes.
//! - [`CrashMode::Reordered`] (seeded): each file keeps a random *subset* of its unsynced
//!   512-byte sectors, as a disk that writes dirty pages back in any order would; directories
//!   as in torn mode.
//!
//! Every mutating or syncing operation is counted ([`SimFs::op_count`]); a crash can be
//! scheduled before operation `k` ([`SimFs::schedule_crash_at`]), after which every call fails
//! as if the machine were gone. Faults ([`Fault`]) inject EIO or ENOSPC at the n-th operation
//! of a kind; [`SimFs::flip_bit`] damages stored bytes; [`SimFs::set_lying_dir_sync`] turns
//! directory syncs into no-ops, the bug the whole workspace exists to prevent, so tests can
//! show they would catch it.
//!
//! ```
//! use std::path::Path;
//! use durable_fs::sim::{CrashMode, SimFs};
//!
//! let sim = SimFs::new();
//! let fs = sim.durable();
//! let f = fs.create_new(Path::new("/a")).unwrap(); // entry synced
//! f.append(b"kept").unwrap();
//! f.sync_data().unwrap();
//! f.append(b" lost").unwrap();                    // never synced
//!
//! let after = sim.crash(CrashMode::Strict, 0);
//! assert_eq!(after.durable().read(Path::new("/a")).unwrap(), b"kept");
//! ```

pub mod concurrent;
mod disk;
mod faults;
pub mod files_workload;
pub mod harness;
mod rng;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::durable::DurableFs;
use crate::fs::{EntryKind, Fs, LockToken, OpenMode, RawFile};
use disk::{Change, DirOp, Disk, Ino, Node, PendingWrite, components, err};
pub use faults::{Fault, FaultError, OpKind};
pub use rng::Rng;

/// What a simulated power cut keeps; see the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CrashMode {
    /// Exactly what was synced.
    Strict,
    /// What was synced, plus a seeded random prefix of what was not, with torn sectors.
    Torn,
    /// What was synced, plus a seeded random *subset* of the unsynced sectors of each file
    /// (a disk may write back dirty pages in any order), and a random prefix of each
    /// directory's unsynced entry changes.
    Reordered,
}

impl fmt::Display for CrashMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CrashMode::Strict => "strict",
            CrashMode::Torn => "torn",
            CrashMode::Reordered => "reordered",
        })
    }
}

#[derive(Debug)]
struct State {
    disk: Disk,
    ops: u64,
    crash_at: Option<u64>,
    crashed: bool,
    lying_dir_sync: bool,
    faults: Vec<Fault>,
    counts: HashMap<OpKind, u64>,
    locks: HashSet<Vec<String>>,
    /// Every change since [`SimFs::start_journal`], with the disk as it was then.
    journal: Option<(Disk, Vec<Change>)>,
    /// How long each file sync takes (widens race windows in tests).
    sync_delay: Option<std::time::Duration>,
}

fn power_cut() -> io::Error {
    io::Error::other("simulated power cut: the machine is off")
}

impl State {
    /// Every call starts here: refuses after a crash, triggers a scheduled crash, counts the
    /// operation (when `counted`: mutating and syncing operations), and fires faults.
    fn begin(&mut self, kind: OpKind, counted: bool) -> io::Result<Option<FaultError>> {
        if self.crashed {
            return Err(power_cut());
        }
        if counted {
            if self.crash_at == Some(self.ops) {
                self.crashed = true;
                return Err(power_cut());
            }
            self.ops += 1;
        }
        let count = self.counts.entry(kind).or_insert(0);
        *count += 1;
        let count = *count;
        Ok(self
            .faults
            .iter()
            .find(|f| f.fires(kind, count))
            .map(|f| f.error))
    }

    /// Applies a change to the disk, and records it when a journal is running.
    fn change(&mut self, c: Change) -> io::Result<Ino> {
        let ino = self.disk.apply(&c)?;
        if let Some((_, changes)) = &mut self.journal {
            changes.push(c);
        }
        Ok(ino)
    }

    fn begin_or_fail(&mut self, kind: OpKind, counted: bool) -> io::Result<()> {
        match self.begin(kind, counted)? {
            Some(fault) => Err(fault.to_io()),
            None => Ok(()),
        }
    }
}

/// The simulated filesystem. Cloning gives another handle to the same disk. See the
/// [module docs](self).
#[derive(Clone)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for SimFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.lock();
        f.debug_struct("SimFs")
            .field("ops", &s.ops)
            .field("crashed", &s.crashed)
            .finish()
    }
}

impl Default for SimFs {
    fn default() -> Self {
        Self::new()
    }
}

impl SimFs {
    /// An empty filesystem (just the root directory).
    pub fn new() -> Self {
        Self::from_disk(Disk::new())
    }

    fn from_disk(disk: Disk) -> Self {
        SimFs {
            state: Arc::new(Mutex::new(State {
                disk,
                ops: 0,
                crash_at: None,
                crashed: false,
                lying_dir_sync: false,
                faults: Vec::new(),
                counts: HashMap::new(),
                locks: HashSet::new(),
                journal: None,
                sync_delay: None,
            })),
        }
    }

    /// A [`DurableFs`] over this simulation.
    pub fn durable(&self) -> DurableFs {
        DurableFs::new(Arc::new(self.clone()))
    }

    /// When `lying`, directory syncs succeed and do nothing: the missing-directory-fsync bug.
    pub fn set_lying_dir_sync(&self, lying: bool) {
        self.state.lock().lying_dir_sync = lying;
    }

    /// Schedules a power cut *before* the mutating operation numbered `k` (0-based): it and
    /// every later call fail. `k` equal to the number of operations a workload makes means
    /// "after its last one".
    pub fn schedule_crash_at(&self, k: u64) {
        self.state.lock().crash_at = Some(k);
    }

    /// Mutating and syncing operations so far.
    pub fn op_count(&self) -> u64 {
        self.state.lock().ops
    }

    /// Operations of `kind` so far (what [`Fault::nth`] counts): a fault on the next one is
    /// `Fault::once(kind, sim.ops_of(kind) + 1, ...)`.
    pub fn ops_of(&self, kind: OpKind) -> u64 {
        self.state.lock().counts.get(&kind).copied().unwrap_or(0)
    }

    /// True once a scheduled crash happened (or [`SimFs::crash`] was called).
    pub fn has_crashed(&self) -> bool {
        self.state.lock().crashed
    }

    /// A process crash, as opposed to a power cut: the kernel releases the dead process's
    /// locks, and everything it wrote stays in the page cache (nothing is lost, nothing
    /// becomes durable). Use it when handles were leaked with `std::mem::forget`.
    pub fn release_locks(&self) {
        self.state.lock().locks.clear();
    }

    /// Makes every file sync take `delay` (slept without holding the disk's lock, so other
    /// threads run meanwhile): a slow disk, which widens the windows in which races happen.
    pub fn set_sync_delay(&self, delay: Option<std::time::Duration>) {
        self.state.lock().sync_delay = delay;
    }

    /// Starts recording every change to the disk, from the disk as it is now. Threads may
    /// then run freely; the recorded order is the order in which they changed the disk (one
    /// lock serialises every change). See [`Journal`].
    pub fn start_journal(&self) {
        let mut s = self.state.lock();
        s.journal = Some((s.disk.clone(), Vec::new()));
    }

    /// Changes recorded so far since [`SimFs::start_journal`] (0 without a journal): a
    /// position in the journal. Read it before a call to know that none of the call's
    /// changes come earlier, and after the call returns to know that all of them do.
    pub fn journal_len(&self) -> u64 {
        self.state
            .lock()
            .journal
            .as_ref()
            .map_or(0, |(_, c)| c.len() as u64)
    }

    /// A copy of the journal so far, if one was started.
    pub fn journal(&self) -> Option<Journal> {
        let s = self.state.lock();
        s.journal.as_ref().map(|(base, changes)| Journal {
            base: base.clone(),
            changes: changes.clone(),
        })
    }

    /// Adds a fault.
    pub fn inject(&self, fault: Fault) {
        self.state.lock().faults.push(fault);
    }

    /// Removes all faults (the disk was replaced, space was freed).
    pub fn clear_faults(&self) {
        self.state.lock().faults.clear();
    }

    /// Cuts the power: this filesystem refuses every later call, and the returned one is
    /// what survived (in `mode`, with torn choices drawn from `seed`).
    pub fn crash(&self, mode: CrashMode, seed: u64) -> SimFs {
        let mut s = self.state.lock();
        s.crashed = true;
        let image = s.disk.crash_image(mode, &mut Rng::new(seed));
        SimFs::from_disk(image)
    }

    /// What a power cut now would leave, without cutting it: this filesystem keeps running.
    /// Lets a test look at many possible crash images of one moment.
    pub fn crash_image(&self, mode: CrashMode, seed: u64) -> SimFs {
        let s = self.state.lock();
        SimFs::from_disk(s.disk.crash_image(mode, &mut Rng::new(seed)))
    }

    /// Flips bit `bit` (0-7) of the byte at `offset` of the file at `path`, in both the live
    /// and the durable content: damage on the medium. `InvalidInput` past the end.
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> io::Result<()> {
        let mut s = self.state.lock();
        let ino = s.disk.resolve(path)?;
        let f = s.disk.file(ino)?;
        if usize::try_from(offset).map_or(true, |i| i >= f.live.len() || i >= f.durable.len()) {
            return Err(err(io::ErrorKind::InvalidInput, "offset past end of file"));
        }
        let mask = 1u8 << (bit & 7);
        s.change(Change::Flip { ino, offset, mask }).map(drop)
    }

    /// Gives the file at `existing` a second name, `new` (a hard link). Like a create, the
    /// new entry is durable only once its directory is synced. Not part of [`Fs`]: the
    /// engines never link; `durable audit`'s model of other programs does.
    ///
    /// ```
    /// use std::path::Path;
    /// use durable_fs::sim::{CrashMode, SimFs};
    ///
    /// let sim = SimFs::new();
    /// let fs = sim.durable();
    /// fs.atomic_replace(Path::new("/a"), b"x").unwrap(); // durable, entry and data
    /// sim.hard_link(Path::new("/a"), Path::new("/b")).unwrap();
    /// assert_eq!(fs.read(Path::new("/b")).unwrap(), b"x");
    /// let after = sim.crash_image(CrashMode::Strict, 0); // "/" never synced since
    /// assert!(after.durable().kind(Path::new("/b")).unwrap().is_none());
    /// ```
    pub fn hard_link(&self, existing: &Path, new: &Path) -> io::Result<()> {
        self.with(|s| {
            s.begin_or_fail(OpKind::Create, true)?;
            let ino = s.disk.resolve(existing)?;
            s.disk.file(ino)?;
            let (dir, name) = s.disk.parent_of(new)?;
            if s.disk.dir(dir)?.live.contains_key(&name) {
                return Err(err(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists", new.display()),
                ));
            }
            s.change(Change::Dir(dir, DirOp::Insert(name, ino)))
                .map(drop)
        })
    }

    /// The inode behind `path` (an opaque number, stable while the simulation runs,
    /// whatever names the file gets or loses).
    pub fn inode(&self, path: &Path) -> io::Result<u64> {
        self.state.lock().disk.resolve(path)
    }

    /// A mark of the changes made so far to inode `ino` (writes and size changes of a file,
    /// entry changes of a directory), and how many of them are not yet durable. With
    /// [`SimFs::sync_through`] it models a sync that ran while other threads kept changing
    /// the file: it covers only what came before it started.
    pub fn sync_mark(&self, ino: u64) -> io::Result<(u64, usize)> {
        let s = self.state.lock();
        match s.disk.nodes.get(&ino) {
            Some(Node::File(f)) => Ok((f.made, f.pending.len())),
            Some(Node::Dir(d)) => Ok((d.made, d.pending.len())),
            None => Err(err(io::ErrorKind::NotFound, "no such inode")),
        }
    }

    /// Makes the changes to inode `ino` made before `mark` durable (those still pending:
    /// a sync since may have taken some), and leaves the later ones unsynced.
    ///
    /// ```
    /// use std::path::Path;
    /// use durable_fs::sim::{CrashMode, SimFs};
    ///
    /// let sim = SimFs::new();
    /// let fs = sim.durable();
    /// let f = fs.create_new(Path::new("/log")).unwrap();
    /// f.append(b"r1").unwrap();
    /// let ino = sim.inode(Path::new("/log")).unwrap();
    /// let (mark, _) = sim.sync_mark(ino).unwrap(); // an fsync starts here
    /// f.append(b"r2").unwrap();                     // another thread writes
    /// sim.sync_through(ino, mark).unwrap();         // the fsync returns
    /// let after = sim.crash_image(CrashMode::Strict, 0);
    /// assert_eq!(after.durable().read(Path::new("/log")).unwrap(), b"r1");
    /// ```
    pub fn sync_through(&self, ino: u64, mark: u64) -> io::Result<()> {
        self.with(|s| {
            let kind = match s.disk.nodes.get(&ino) {
                Some(Node::Dir(_)) => OpKind::SyncDir,
                _ => OpKind::Sync,
            };
            s.begin_or_fail(kind, true)?;
            if kind == OpKind::SyncDir && s.lying_dir_sync {
                return Ok(());
            }
            s.change(Change::SyncThrough(ino, mark)).map(drop)
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> io::Result<T>) -> io::Result<T> {
        f(&mut self.state.lock())
    }
}

#[derive(Debug)]
struct SimFile {
    state: Arc<Mutex<State>>,
    ino: Ino,
    writable: bool,
}

#[derive(Debug)]
struct SimLock {
    state: Arc<Mutex<State>>,
    key: Vec<String>,
}

impl LockToken for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.state.lock().locks.remove(&self.key);
    }
}

impl Fs for SimFs {
    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn RawFile>> {
        let ino = self.with(|s| match mode {
            OpenMode::Read | OpenMode::ReadWrite => {
                s.begin_or_fail(OpKind::Open, false)?;
                let ino = s.disk.resolve(path)?;
                s.disk.file(ino)?;
                Ok(ino)
            }
            OpenMode::CreateNew => {
                s.begin_or_fail(OpKind::Create, true)?;
                let (dir, name) = s.disk.parent_of(path)?;
                if s.disk.dir(dir)?.live.contains_key(&name) {
                    return Err(err(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists", path.display()),
                    ));
                }
                let ino = s.change(Change::Alloc { dir: false })?;
                s.change(Change::Dir(dir, DirOp::Insert(name, ino)))?;
                Ok(ino)
            }
        })?;
        Ok(Box::new(SimFile {
            state: Arc::clone(&self.state),
            ino,
            writable: mode != OpenMode::Read,
        }))
    }

    fn rename_entry(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.with(|s| {
            s.begin_or_fail(OpKind::Rename, true)?;
            let (src, from_name) = s.disk.parent_of(from)?;
            let (dst, to_name) = s.disk.parent_of(to)?;
            let ino = *s.disk.dir(src)?.live.get(&from_name).ok_or_else(|| {
                err(
                    io::ErrorKind::NotFound,
                    format!("{} not found", from.display()),
                )
            })?;
            if let Some(&old) = s.disk.dir(dst)?.live.get(&to_name)
                && matches!(s.disk.nodes.get(&old), Some(Node::Dir(_)))
            {
                return Err(err(
                    io::ErrorKind::IsADirectory,
                    "destination is a directory",
                ));
            }
            if src == dst {
                let op = DirOp::Rename {
                    from: from_name,
                    to: to_name,
                    ino,
                };
                s.change(Change::Dir(src, op)).map(drop)
            } else {
                // Across directories the two halves become durable separately.
                s.change(Change::Dir(src, DirOp::Remove(from_name)))?;
                s.change(Change::Dir(dst, DirOp::Insert(to_name, ino)))
                    .map(drop)
            }
        })
    }

    fn remove_entry(&self, path: &Path) -> io::Result<()> {
        self.with(|s| {
            s.begin_or_fail(OpKind::Remove, true)?;
            let (dir, name) = s.disk.parent_of(path)?;
            let ino = *s.disk.dir(dir)?.live.get(&name).ok_or_else(|| {
                err(
                    io::ErrorKind::NotFound,
                    format!("{} not found", path.display()),
                )
            })?;
            s.disk.file(ino)?;
            s.change(Change::Dir(dir, DirOp::Remove(name))).map(drop)
        })
    }

    fn create_dir_entry(&self, path: &Path) -> io::Result<()> {
        self.with(|s| {
            s.begin_or_fail(OpKind::CreateDir, true)?;
            let (dir, name) = s.disk.parent_of(path)?;
            if s.disk.dir(dir)?.live.contains_key(&name) {
                return Err(err(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists", path.display()),
                ));
            }
            let ino = s.change(Change::Alloc { dir: true })?;
            s.change(Change::Dir(dir, DirOp::Insert(name, ino)))
                .map(drop)
        })
    }

    fn remove_dir_entry(&self, path: &Path) -> io::Result<()> {
        self.with(|s| {
            s.begin_or_fail(OpKind::Remove, true)?;
            let (dir, name) = s.disk.parent_of(path)?;
            let ino = *s.disk.dir(dir)?.live.get(&name).ok_or_else(|| {
                err(
                    io::ErrorKind::NotFound,
                    format!("{} not found", path.display()),
                )
            })?;
            if !s.disk.dir(ino)?.live.is_empty() {
                return Err(err(
                    io::ErrorKind::DirectoryNotEmpty,
                    format!("{} is not empty", path.display()),
                ));
            }
            s.change(Change::Dir(dir, DirOp::Remove(name))).map(drop)
        })
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.with(|s| {
            s.begin_or_fail(OpKind::SyncDir, true)?;
            let ino = s.disk.resolve(path)?;
            s.disk.dir(ino)?;
            if !s.lying_dir_sync {
                s.change(Change::DirSync(ino))?;
            }
            Ok(())
        })
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.with(|s| {
            s.begin_or_fail(OpKind::Read, false)?;
            let ino = s.disk.resolve(path)?;
            Ok(s.disk.dir(ino)?.live.keys().cloned().collect())
        })
    }

    fn entry_kind(&self, path: &Path) -> io::Result<Option<EntryKind>> {
        self.with(|s| {
            s.begin_or_fail(OpKind::Read, false)?;
            match s.disk.resolve(path) {
                Ok(ino) => Ok(match s.disk.nodes.get(&ino) {
                    Some(Node::Dir(_)) => Some(EntryKind::Dir),
                    Some(Node::File(_)) => Some(EntryKind::File),
                    None => None,
                }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn LockToken>> {
        self.with(|s| {
            s.begin_or_fail(OpKind::Open, false)?;
            let key = components(path);
            // Like the real lock file: created if missing, its entry never synced.
            let (dir, name) = s.disk.parent_of(path)?;
            if !s.disk.dir(dir)?.live.contains_key(&name) {
                let ino = s.change(Change::Alloc { dir: false })?;
                s.change(Change::Dir(dir, DirOp::Insert(name, ino)))?;
            }
            if !s.locks.insert(key.clone()) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(Box::new(SimLock {
                state: Arc::clone(&self.state),
                key,
            }) as Box<dyn LockToken>)
        })
    }
}

impl SimFile {
    fn with<T>(&self, f: impl FnOnce(&mut State, Ino) -> io::Result<T>) -> io::Result<T> {
        f(&mut self.state.lock(), self.ino)
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(9)) // EBADF, as for a write to a read-only fd
        }
    }

    fn sync(&self) -> io::Result<()> {
        let delay = self.state.lock().sync_delay;
        if let Some(d) = delay {
            // The disk is slow; other threads run meanwhile (the lock is not held).
            std::thread::sleep(d);
        }
        self.with(|s, ino| {
            let fault = s.begin(OpKind::Sync, true)?;
            s.disk.file(ino)?;
            if let Some(fault) = fault {
                // The kernel failed to write the dirty pages back and dropped them.
                s.change(Change::SyncLost(ino))?;
                return Err(fault.to_io());
            }
            s.change(Change::Sync(ino))?;
            Ok(())
        })
    }
}

impl RawFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with(|s, ino| {
            s.begin_or_fail(OpKind::Read, false)?;
            let data = &s.disk.file(ino)?.live;
            let start = usize::try_from(offset)
                .unwrap_or(usize::MAX)
                .min(data.len());
            let src = data.get(start..).unwrap_or_default();
            let n = src.len().min(buf.len());
            if let (Some(d), Some(s)) = (buf.get_mut(..n), src.get(..n)) {
                d.copy_from_slice(s);
            }
            Ok(n)
        })
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check_writable()?;
        self.with(|s, ino| {
            s.begin_or_fail(OpKind::Write, true)?;
            s.disk.file(ino)?;
            let w = PendingWrite::Write {
                offset,
                data: buf.to_vec(),
            };
            s.change(Change::File(ino, w)).map(drop)
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.sync()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync()
    }

    fn len(&self) -> io::Result<u64> {
        self.with(|s, ino| {
            s.begin_or_fail(OpKind::Read, false)?;
            Ok(s.disk.file(ino)?.live.len() as u64)
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check_writable()?;
        self.with(|s, ino| {
            s.begin_or_fail(OpKind::SetLen, true)?;
            s.disk.file(ino)?;
            s.change(Change::File(ino, PendingWrite::SetLen(len)))
                .map(drop)
        })
    }
}

/// The changes a run made to a [`SimFs`], in order, from the disk as it was when
/// [`SimFs::start_journal`] was called: every prefix of it is a moment a power cut could
/// have come, and [`Journal::for_each_crash`] rebuilds them in one pass.
///
/// ```
/// use std::path::Path;
/// use durable_fs::sim::{CrashMode, SimFs};
///
/// let sim = SimFs::new();
/// sim.start_journal();
/// let fs = sim.durable();
/// let f = fs.create_new(Path::new("/a")).unwrap(); // alloc, insert, directory sync
/// f.append(b"x").unwrap();
/// f.sync_data().unwrap();
/// let journal = sim.journal().unwrap();
/// let mut sizes = Vec::new();
/// journal.for_each_crash(&[0, journal.len()], CrashMode::Strict, |_| 0, |_, image| {
///     let len = image.durable().read(Path::new("/a")).map(|d| d.len()).ok();
///     sizes.push(len);
/// });
/// assert_eq!(sizes, vec![None, Some(1)]);
/// ```
#[derive(Clone, Debug)]
pub struct Journal {
    base: Disk,
    changes: Vec<Change>,
}

impl Journal {
    /// Changes recorded.
    pub fn len(&self) -> u64 {
        self.changes.len() as u64
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// For each `k` of `points` (ascending; at most [`Journal::len`]), calls `f(k, image)`
    /// with what a power cut after the first `k` changes leaves, in `mode`, with torn choices
    /// drawn from `seed_of(k)`. One pass over the journal: linear in its length.
    pub fn for_each_crash(
        &self,
        points: &[u64],
        mode: CrashMode,
        seed_of: impl Fn(u64) -> u64,
        mut f: impl FnMut(u64, SimFs),
    ) {
        let mut disk = self.base.clone();
        let mut applied = 0u64;
        for &k in points {
            while applied < k {
                let Some(c) = self.changes.get(applied as usize) else {
                    break;
                };
                // Each change applied cleanly when it was recorded, so it does again.
                let _ = disk.apply(c);
                applied += 1;
            }
            let image = disk.crash_image(mode, &mut Rng::new(seed_of(k)));
            f(k, SimFs::from_disk(image));
        }
    }

    /// What a process crash at the end leaves (kill -9, no power cut): everything written,
    /// synced or not.
    pub fn live_image(&self) -> SimFs {
        let mut disk = self.base.clone();
        for c in &self.changes {
            let _ = disk.apply(c);
        }
        SimFs::from_disk(disk.live_image())
    }
}

/// The path a simulated workload uses for its store, so error messages look familiar.
pub fn sim_dir(name: &str) -> PathBuf {
    PathBuf::from("/sim").join(name)
}
