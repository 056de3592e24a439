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
use disk::{DirOp, Disk, FileNode, Ino, Node, PendingWrite, apply_write, components, err};
pub use faults::{Fault, FaultError, OpKind};
pub use rng::Rng;

/// What a simulated power cut keeps; see the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
        let f = s.disk.file_mut(ino)?;
        let i = usize::try_from(offset).unwrap_or(usize::MAX);
        let mask = 1u8 << (bit & 7);
        for buf in [&mut f.live, &mut f.durable] {
            let b = buf
                .get_mut(i)
                .ok_or_else(|| err(io::ErrorKind::InvalidInput, "offset past end of file"))?;
            *b ^= mask;
        }
        Ok(())
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
                let ino = s.disk.alloc(Node::File(FileNode::default()));
                s.disk.dir_change(dir, DirOp::Insert(name, ino))?;
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
                s.disk.dir_change(src, op)
            } else {
                // Across directories the two halves become durable separately.
                s.disk.dir_change(src, DirOp::Remove(from_name))?;
                s.disk.dir_change(dst, DirOp::Insert(to_name, ino))
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
            s.disk.dir_change(dir, DirOp::Remove(name))
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
            let ino = s.disk.alloc(Node::Dir(Default::default()));
            s.disk.dir_change(dir, DirOp::Insert(name, ino))
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
            s.disk.dir_change(dir, DirOp::Remove(name))
        })
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.with(|s| {
            s.begin_or_fail(OpKind::SyncDir, true)?;
            let ino = s.disk.resolve(path)?;
            let lying = s.lying_dir_sync;
            let d = s.disk.dir_mut(ino)?;
            if !lying {
                d.durable = d.live.clone();
                d.pending.clear();
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
                let ino = s.disk.alloc(Node::File(FileNode::default()));
                s.disk.dir_change(dir, DirOp::Insert(name, ino))?;
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
        self.with(|s, ino| {
            let fault = s.begin(OpKind::Sync, true)?;
            let f = s.disk.file_mut(ino)?;
            if let Some(fault) = fault {
                // The kernel failed to write the dirty pages back and dropped them.
                f.live = f.durable.clone();
                f.pending.clear();
                return Err(fault.to_io());
            }
            for w in std::mem::take(&mut f.pending) {
                apply_write(&mut f.durable, &w);
            }
            debug_assert!(f.durable == f.live, "sync must make durable equal live");
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
            let f = s.disk.file_mut(ino)?;
            let w = PendingWrite::Write {
                offset,
                data: buf.to_vec(),
            };
            apply_write(&mut f.live, &w);
            f.pending.push(w);
            Ok(())
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
            let f = s.disk.file_mut(ino)?;
            let w = PendingWrite::SetLen(len);
            apply_write(&mut f.live, &w);
            f.pending.push(w);
            Ok(())
        })
    }
}

/// The path a simulated workload uses for its store, so error messages look familiar.
pub fn sim_dir(name: &str) -> PathBuf {
    PathBuf::from("/sim").join(name)
}
