//! Explore: replays a trace into durable-fs's simulated filesystem, cuts the power at chosen
//! points, writes each crash state into a scratch directory and runs the user's check on it.
//!
//! The replay drives [`SimFs`] through the same [`Fs`] door the engines use: a descriptor
//! the program opens becomes a handle on the simulated inode (so writes follow the file
//! through renames and unlinks), `write`/`pwrite`/`writev` write the traced bytes at the
//! position the program's descriptor had (tracked through `lseek`, `read`, `O_APPEND`, `dup`
//! and forks), `fsync` makes a file's data durable, an fsync of a directory its entries;
//! creates, renames, unlinks, mkdirs and links are durable only once their directory is
//! synced. The simulator then gives what a power cut keeps ([`CrashMode`]): strict (exactly
//! what was synced), torn (a random prefix of what was not, with torn sectors) or reordered
//! (a random subset of the unsynced sectors).
//!
//! Only the watched directory is modelled. The watched directory itself and its ancestors
//! are taken as durable (their entries are outside the audit's scope, as in the lint); what
//! happens elsewhere is ignored. What the model cannot reproduce is refused, never guessed:
//! a write whose bytes strace cut, a write through a descriptor opened before the trace,
//! `O_TMPFILE`, symlinks, `RENAME_EXCHANGE`, a file renamed in from outside, data copied in
//! by `sendfile`/`splice`/`copy_file_range`, `fallocate` modes that change content.
//!
//! Each crash point is the moment right after an acknowledgement (or a sync, or every
//! operation). The check gets the crash state's copy of the watched directory as `{dir}`,
//! and the acknowledgements given so far in the file named by `DURABLE_AUDIT_ACKED` (one a
//! line; their count in `DURABLE_AUDIT_ACKS`); it exits 0 when the state holds what was
//! acknowledged. A failure is explained by the operations that were pending (not yet
//! durable) at that point, each marked when this crash state lost it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use durable_fs::sim::{CrashMode, Fault, FaultError, OpKind, SimFs};
use durable_fs::{DurableFs, EntryKind, Fs, OpenMode, RawFile};

use crate::lint::{
    AckReader, Config, Cwd, MAP_SHARED, O_ACCMODE, O_CREAT, O_DIRECTORY, O_TMPFILE, O_TRUNC,
    PROT_WRITE, bytes_path, normalize, written,
};
use crate::trace::{Arg, Event, EventKind, Ret, Syscall};

/// Where crash points are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Points {
    /// Right after each acknowledgement (and at the end).
    Acks,
    /// Right after each acknowledgement and each sync.
    Syncs,
    /// Right after every operation the model replays.
    All,
}

/// How to explore.
#[derive(Debug, Clone)]
pub struct Options {
    /// The check, run with `sh -c`; `{dir}` is replaced by the crash state's copy of the
    /// watched directory (shell-quoted).
    pub check: String,
    /// Where crash points are taken.
    pub points: Points,
    /// The crash modes, each run at every point.
    pub modes: Vec<CrashMode>,
    /// Seeds per point for the torn and reordered modes (strict has one state a point).
    pub seeds: u64,
    /// Most crash states checked (distinct ones; the rest are counted, not checked).
    pub max_states: usize,
    /// Checks run at once.
    pub jobs: usize,
    /// A check running longer is killed and counted as failed.
    pub timeout: Duration,
    /// A directory in which a new scratch directory is made for the crash states.
    pub scratch: PathBuf,
    /// Failed states kept on disk for inspection (the rest are removed).
    pub keep_failed: usize,
}

/// Why the exploration could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExploreError {
    /// The model cannot reproduce what the program did: no verdict.
    #[error("not measured: {0}")]
    NotMeasured(String),
    /// The filesystem door failed (writing crash states).
    #[error(transparent)]
    Fs(#[from] durable_fs::Error),
    /// The check could not be started.
    #[error("running the check: {0}")]
    Check(std::io::Error),
    /// The options cannot work.
    #[error("{0}")]
    Usage(String),
}

fn refuse(line: u64, what: impl std::fmt::Display) -> ExploreError {
    ExploreError::NotMeasured(format!("trace line {line}: {what}"))
}

/// What the run had in the watched directory when it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Initial {
    /// A directory.
    Dir,
    /// A regular file and its bytes.
    File(Vec<u8>),
}

/// An operation not yet durable at a crash point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Its trace line.
    pub line: u64,
    /// Its process.
    pub pid: u32,
    /// Its system call.
    pub syscall: String,
    /// `create`, `rename`, `unlink`, `mkdir`, `link` (an entry of `path`'s directory), or
    /// `write` (data of `path`).
    pub op: &'static str,
    /// The path it concerns (for a rename, the new name; `from` is the old).
    pub path: PathBuf,
    /// A rename's old name.
    pub from: Option<PathBuf>,
}

/// A moment the power may be cut.
#[derive(Debug, Clone)]
pub struct Point {
    /// Position in the simulator's journal.
    journal: u64,
    /// The trace line just before the cut.
    pub line: u64,
    /// What happened there.
    pub what: String,
    /// Acknowledgements given so far.
    pub acks: usize,
    /// Operations not yet durable then (in the watched directory), the earliest
    /// [`MAX_PENDING`].
    pub pending: Vec<Pending>,
    /// How many more were pending.
    pub more: usize,
}

/// Most pending operations kept per crash point (to explain a failure; the rest counted).
pub const MAX_PENDING: usize = 32;

/// A crash state the check refused.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Where the power was cut.
    pub point: Point,
    /// In which mode.
    pub mode: CrashMode,
    /// With which seed (torn and reordered).
    pub seed: u64,
    /// The check's exit code (`None`: killed, or timed out).
    pub exit: Option<i32>,
    /// The start of what the check printed (stdout then stderr).
    pub output: String,
    /// Each pending operation, and whether this state lost it (`Some(true)`: the entry is
    /// not as the program left it; `None`: data, not compared).
    pub pending: Vec<(Pending, Option<bool>)>,
    /// Where the state was kept, if it was.
    pub kept: Option<PathBuf>,
}

/// What the exploration did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Crash points taken.
    pub points: usize,
    /// Crash states generated (points x modes x seeds).
    pub states: u64,
    /// Of those, distinct ones (same files, same acknowledgements: checked once).
    pub distinct: u64,
    /// Checks run.
    pub checked: u64,
    /// States not checked because `max_states` was reached.
    pub skipped: u64,
    /// The states the check refused, in order.
    pub failures: Vec<Failure>,
    /// Scratch directories that could not be removed (the check left something there).
    pub leftovers: Vec<PathBuf>,
}

const O_APPEND: i64 = 0o2000;
const O_DSYNC: i64 = 0o10000;
const O_CLOEXEC: i64 = 0o2_000_000;
const CLONE_FILES: i64 = 0x400;
const AT_REMOVEDIR: i64 = 0x200;
const AT_EMPTY_PATH: i64 = 0x1000;
const RENAME_EXCHANGE: i64 = 2;
const F_DUPFD: i64 = 0;
const F_SETFD: i64 = 2;
const F_SETFL: i64 = 4;
const F_DUPFD_CLOEXEC: i64 = 1030;
const FD_CLOEXEC: i64 = 1;
const FALLOC_FL_KEEP_SIZE: i64 = 1;
const RWF_DSYNC: i64 = 0x2;
const RWF_SYNC: i64 = 0x4;
const RWF_APPEND: i64 = 0x10;
/// Most bytes the watched directory may hold at the start (copied into every state).
pub const MAX_INITIAL_BYTES: u64 = 64 << 20;
/// Most bytes the replay writes into the model, and the largest file it makes (the model
/// is in memory: a bigger run is refused as not measured rather than exhausting memory).
pub const MAX_MODEL_BYTES: u64 = 1 << 30;

/// An open file description: shared by `dup`s and forks, as the kernel's is.
struct Desc {
    path: PathBuf,
    file: Option<Arc<dyn RawFile>>,
    dir: bool,
    append: bool,
    /// `O_SYNC`/`O_DSYNC`: each write is durable when it returns.
    sync: bool,
    pos: u64,
}

/// A process's descriptor table: descriptor -> (description, close-on-exec).
#[derive(Default, Clone)]
struct Table {
    fds: HashMap<i64, (usize, bool)>,
}

struct Replay<'a> {
    cfg: &'a Config,
    watch: PathBuf,
    sim: SimFs,
    cwd: Cwd,
    /// pid -> its descriptor table (threads share one)
    tables: HashMap<u32, usize>,
    /// child -> (parent, shares the parent's table), from every clone's result: a child's
    /// own calls can come before that result in the trace
    parents: HashMap<u32, (u32, bool)>,
    table_list: Vec<Table>,
    descs: Vec<Desc>,
    /// Every operation not yet durable, by (line, sequence): the earliest explain a loss.
    pending: BTreeMap<(u64, u64), Pending>,
    seq: u64,
    /// directory -> its entry changes since its last sync (keys into `pending`)
    pending_dir: BTreeMap<PathBuf, Vec<(u64, u64)>>,
    /// file -> its first write since its last sync (a key into `pending`)
    pending_data: BTreeMap<PathBuf, (u64, u64)>,
    /// fsyncs other processes' lines interrupted, by start: (start, end, path)
    windows: Vec<(u64, u64, PathBuf)>,
    /// windows whose start has been passed
    windows_seen: usize,
    /// end line of an interrupted fsync -> the unsynced changes its file or directory had
    /// when it started: its inode and that inode's change mark (what it covers)
    covers: HashMap<u64, (u64, u64)>,
    /// sync/syncfs calls interrupted: (start, end)
    global_windows: HashSet<(u64, u64)>,
    /// lines of the modelled changes, in order
    change_lines: Vec<u64>,
    acks: Vec<String>,
    points: Vec<Point>,
    mode: Points,
    /// Bytes written into the model so far.
    written: u64,
    first_pid: Option<u32>,
    reader: AckReader,
}

fn fd_of(a: Option<&Arg>) -> Option<i64> {
    match a {
        Some(Arg::Fd { fd, .. }) => Some(*fd),
        Some(Arg::Int(v)) => Some(*v),
        _ => None,
    }
}

fn ret_value(c: &Syscall) -> Option<i64> {
    match c.ret {
        Ret::Value { value, .. } => Some(value),
        _ => None,
    }
}

/// `NAME=0x...` inside a structure argument (`clone3`'s and `openat2`'s flags).
fn field(c: &Syscall, name: &str) -> Option<Result<i64, String>> {
    for a in &c.args {
        if let Arg::Other(s) = a
            && let Some(at) = s.find(&format!("{name}="))
        {
            let rest = s.get(at + name.len() + 1..).unwrap_or("");
            let end = rest
                .find(|ch: char| !ch.is_ascii_alphanumeric())
                .unwrap_or(rest.len());
            let v = rest.get(..end).unwrap_or("");
            let parsed = match v.strip_prefix("0x") {
                Some(h) => i64::from_str_radix(h, 16).ok(),
                None => v.parse().ok(),
            };
            return Some(parsed.ok_or_else(|| format!("{name}={v}")));
        }
    }
    None
}

/// Number argument `i` (absent: 0). A flags argument strace printed symbolically (a trace
/// not taken with `-X raw`) cannot be trusted to mean what the model reads: refused.
fn num(line: u64, c: &Syscall, i: usize) -> Result<i64, ExploreError> {
    match c.args.get(i) {
        None => Ok(0),
        Some(Arg::Int(v)) => Ok(*v),
        Some(Arg::Fd { fd, .. }) => Ok(*fd),
        Some(other) => Err(refuse(
            line,
            format!(
                "{} argument {} is {other:?}, not a number (take the trace with -X raw)",
                c.name,
                i + 1
            ),
        )),
    }
}

fn io_err(line: u64, what: &str, e: std::io::Error) -> ExploreError {
    refuse(
        line,
        format!("the model could not replay {what}: {e} (it diverged from the program)"),
    )
}

impl Replay<'_> {
    /// Strictly under the watched directory: modelled.
    fn inside(&self, p: &Path) -> bool {
        p.starts_with(&self.watch) && p != self.watch
    }

    /// The watched directory or one of its ancestors: taken as durable.
    fn scaffold(&self, p: &Path) -> bool {
        self.watch.starts_with(p)
    }

    /// A path a call named, resolved; refused when the working directory is unknown.
    fn path(&self, line: u64, p: Option<PathBuf>) -> Result<Option<PathBuf>, ExploreError> {
        match p {
            Some(p) if p.is_relative() => Err(refuse(
                line,
                format!(
                    "{} is relative to a working directory the trace never showed",
                    p.display()
                ),
            )),
            other => Ok(other),
        }
    }

    /// Refuses a change that would make a file end past `end`, or the bytes written into
    /// the model pass [`MAX_MODEL_BYTES`].
    fn room(&mut self, line: u64, end: u64, added: u64) -> Result<(), ExploreError> {
        self.written = self.written.saturating_add(added);
        if end > MAX_MODEL_BYTES || self.written > MAX_MODEL_BYTES {
            return Err(refuse(
                line,
                format!("the run writes more than the model holds ({MAX_MODEL_BYTES} bytes)"),
            ));
        }
        Ok(())
    }

    /// The table of `pid`: made at its first call, its parent's (threads) or a copy of it
    /// (the parent is inside the clone until the child exists: its table is as it was).
    fn table(&mut self, pid: u32) -> usize {
        if let Some(t) = self.tables.get(&pid) {
            return *t;
        }
        // The ancestors without a table yet, nearest first (a crafted trace may loop).
        let mut chain = vec![pid];
        let mut seen = HashSet::from([pid]);
        let mut at = pid;
        while let Some(&(parent, _)) = self.parents.get(&at) {
            if self.tables.contains_key(&parent) || !seen.insert(parent) {
                break;
            }
            chain.push(parent);
            at = parent;
        }
        for &p in chain.iter().rev() {
            let t = match self.parents.get(&p).copied() {
                Some((parent, share)) if let Some(&pt) = self.tables.get(&parent) => {
                    if share {
                        pt
                    } else {
                        let copy = self.table_list.get(pt).cloned().unwrap_or_default();
                        self.table_list.push(copy);
                        self.table_list.len() - 1
                    }
                }
                _ => {
                    self.table_list.push(Table::default());
                    self.table_list.len() - 1
                }
            };
            self.tables.insert(p, t);
        }
        self.tables.get(&pid).copied().unwrap_or(0)
    }

    fn set_fd(&mut self, pid: u32, fd: i64, entry: Option<(usize, bool)>) {
        let t = self.table(pid);
        if let Some(table) = self.table_list.get_mut(t) {
            match entry {
                Some(e) => table.fds.insert(fd, e),
                None => table.fds.remove(&fd),
            };
        }
    }

    fn get_fd(&mut self, pid: u32, fd: i64) -> Option<(usize, bool)> {
        let t = self.table(pid);
        self.table_list.get(t).and_then(|x| x.fds.get(&fd).copied())
    }

    /// The description behind descriptor argument 0 of `c`, checked against the path
    /// strace showed for it. A mismatch outside the watched directory means the number was
    /// reused by a call the trace does not show (a pipe, a socket): forgotten. Inside, the
    /// model diverged: refused.
    fn desc_of(&mut self, ev: &Event, c: &Syscall) -> Result<Option<usize>, ExploreError> {
        let Some(fd) = fd_of(c.args.first()) else {
            return Ok(None);
        };
        let shown = c.fd_path(0).map(|p| normalize(&bytes_path(p)));
        match self.get_fd(ev.pid, fd) {
            Some((d, _)) => {
                let Some(desc) = self.descs.get(d) else {
                    return Ok(None);
                };
                match &shown {
                    Some(p) if *p != desc.path => {
                        if self.inside(p) {
                            return Err(refuse(
                                ev.line,
                                format!(
                                    "descriptor {fd} is {} to the model and {} to the kernel",
                                    desc.path.display(),
                                    p.display()
                                ),
                            ));
                        }
                        self.set_fd(ev.pid, fd, None);
                        Ok(None)
                    }
                    _ => Ok(Some(d)),
                }
            }
            None => {
                if let Some(p) = &shown
                    && self.inside(p)
                    && !matches!(c.name.as_str(), "fsync" | "fdatasync" | "close")
                {
                    return Err(refuse(
                        ev.line,
                        format!(
                            "{} of {} through descriptor {fd}, opened before the trace began",
                            c.name,
                            p.display()
                        ),
                    ));
                }
                Ok(None)
            }
        }
    }

    fn point(&mut self, line: u64, what: String) {
        let pending: Vec<Pending> = self.pending.values().take(MAX_PENDING).cloned().collect();
        let more = self.pending.len() - pending.len();
        let journal = self.sim.journal_len();
        // Points at one position give the same states: keep the first, unless a later
        // one holds more acknowledgements (a stricter check).
        if let Some(last) = self.points.last()
            && last.journal == journal
        {
            if last.acks == self.acks.len() {
                return;
            }
            self.points.pop();
        }
        self.points.push(Point {
            journal,
            line,
            what,
            acks: self.acks.len(),
            pending,
            more,
        });
    }

    fn op_done(&mut self, line: u64, c: &Syscall, sync: bool) {
        if self.mode == Points::All || (sync && self.mode == Points::Syncs) {
            self.point(line, c.name.clone());
        }
    }

    fn pend_dir(
        &mut self,
        ev: &Event,
        c: &Syscall,
        op: &'static str,
        path: &Path,
        from: Option<&Path>,
    ) {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let key = self.add_pending(ev, c, op, path, from);
        self.pending_dir.entry(dir).or_default().push(key);
        self.change_lines.push(ev.line);
    }

    /// Records an operation not yet durable; returns its key in `pending`.
    fn add_pending(
        &mut self,
        ev: &Event,
        c: &Syscall,
        op: &'static str,
        path: &Path,
        from: Option<&Path>,
    ) -> (u64, u64) {
        self.seq += 1;
        let key = (ev.line, self.seq);
        self.pending.insert(
            key,
            Pending {
                line: ev.line,
                pid: ev.pid,
                syscall: c.name.clone(),
                op,
                path: path.to_path_buf(),
                from: from.map(Path::to_path_buf),
            },
        );
        key
    }

    /// `dir`'s entry changes are durable but its last `left`.
    fn dir_synced(&mut self, dir: &Path, left: usize) {
        if let Some(keys) = self.pending_dir.get_mut(dir) {
            let done = keys.len().saturating_sub(left);
            for key in keys.drain(..done) {
                self.pending.remove(&key);
            }
            if keys.is_empty() {
                self.pending_dir.remove(dir);
            }
        }
    }

    /// How many changes of what is at `path` are not durable (0 when nothing is there).
    fn unsynced(&self, path: &Path) -> usize {
        self.sim
            .inode(path)
            .and_then(|ino| self.sim.sync_mark(ino))
            .map_or(0, |(_, n)| n)
    }

    /// `file`'s data is durable (or lost: it is no longer pending either way).
    fn data_synced(&mut self, file: &Path) {
        if let Some(key) = self.pending_data.remove(file) {
            self.pending.remove(&key);
        }
    }

    fn pend_data(&mut self, ev: &Event, c: &Syscall, path: &Path) {
        self.change_lines.push(ev.line);
        if self.pending_data.contains_key(path) {
            return;
        }
        let key = self.add_pending(ev, c, "write", path, None);
        self.pending_data.insert(path.to_path_buf(), key);
    }

    fn sync_everything(&mut self, line: u64) -> Result<(), ExploreError> {
        let mut stack = vec![self.watch.clone()];
        while let Some(dir) = stack.pop() {
            if self
                .sim
                .entry_kind(&dir)
                .map_err(|e| io_err(line, "sync", e))?
                != Some(EntryKind::Dir)
            {
                continue;
            }
            for name in self
                .sim
                .list_dir(&dir)
                .map_err(|e| io_err(line, "sync", e))?
            {
                let p = dir.join(name);
                match self
                    .sim
                    .entry_kind(&p)
                    .map_err(|e| io_err(line, "sync", e))?
                {
                    Some(EntryKind::Dir) => stack.push(p),
                    Some(_) => {
                        let f = self
                            .sim
                            .open_file(&p, OpenMode::Read)
                            .map_err(|e| io_err(line, "sync", e))?;
                        f.sync_data().map_err(|e| io_err(line, "sync", e))?;
                    }
                    None => {}
                }
            }
            self.sim
                .sync_dir(&dir)
                .map_err(|e| io_err(line, "sync", e))?;
        }
        // Descriptors of unlinked files: their data is unreachable, nothing to keep.
        self.pending.clear();
        self.pending_dir.clear();
        self.pending_data.clear();
        Ok(())
    }

    fn open(&mut self, ev: &Event, c: &Syscall) -> Result<(), ExploreError> {
        let (dirfd, name, flags) = match c.name.as_str() {
            "open" => (None, c.str_arg(0), num(ev.line, c, 1)?),
            "creat" => (None, c.str_arg(0), O_CREAT | 1 | O_TRUNC),
            "openat2" => {
                let flags = match field(c, "flags") {
                    Some(Ok(f)) => f,
                    _ => return Err(refuse(ev.line, "openat2 without numeric flags")),
                };
                (c.args.first(), c.str_arg(1), flags)
            }
            _ => (c.args.first(), c.str_arg(1), num(ev.line, c, 2)?),
        };
        let (
            Some(name),
            Ret::Value {
                value: fd,
                path: rpath,
            },
        ) = (name, &c.ret)
        else {
            return Ok(());
        };
        let path = match rpath {
            Some(p) => normalize(&bytes_path(p)),
            None => self.cwd.resolve(ev.pid, dirfd, name),
        };
        let inside = self.inside(&path);
        if path.is_relative() {
            return Err(refuse(
                ev.line,
                format!(
                    "{} is relative to an unknown working directory",
                    path.display()
                ),
            ));
        }
        let mut desc = Desc {
            path: path.clone(),
            file: None,
            dir: false,
            append: flags & O_APPEND != 0,
            sync: flags & O_DSYNC != 0,
            pos: 0,
        };
        if inside || self.scaffold(&path) {
            if flags & O_TMPFILE == O_TMPFILE {
                return Err(refuse(ev.line, "O_TMPFILE in the watched directory"));
            }
            let kind = self
                .sim
                .entry_kind(&path)
                .map_err(|e| io_err(ev.line, "open", e))?;
            match kind {
                Some(EntryKind::Dir) => desc.dir = true,
                _ if flags & O_DIRECTORY != 0 => desc.dir = true,
                Some(_) => {
                    let f = self
                        .sim
                        .open_file(&path, OpenMode::ReadWrite)
                        .map_err(|e| io_err(ev.line, "open", e))?;
                    if flags & O_TRUNC != 0
                        && flags & O_ACCMODE != 0
                        && f.len().map_err(|e| io_err(ev.line, "open", e))? > 0
                    {
                        f.set_len(0).map_err(|e| io_err(ev.line, "O_TRUNC", e))?;
                        self.pend_data(ev, c, &path);
                    }
                    desc.file = Some(Arc::from(f));
                }
                None if inside && flags & O_CREAT != 0 => {
                    let f = self
                        .sim
                        .open_file(&path, OpenMode::CreateNew)
                        .map_err(|e| io_err(ev.line, "create", e))?;
                    desc.file = Some(Arc::from(f));
                    self.pend_dir(ev, c, "create", &path, None);
                    self.op_done(ev.line, c, false);
                }
                None if inside => {
                    return Err(refuse(
                        ev.line,
                        format!(
                            "{} opened, but the model has no such file (it diverged from the \
                             program, or the trace was saved without the directory's contents)",
                            path.display()
                        ),
                    ));
                }
                None => {}
            }
        }
        self.descs.push(desc);
        let d = self.descs.len() - 1;
        self.set_fd(ev.pid, *fd, Some((d, flags & O_CLOEXEC != 0)));
        Ok(())
    }

    /// Applies a write or size change.
    fn change(
        &mut self,
        ev: &Event,
        c: &Syscall,
        file: &Arc<dyn RawFile>,
        path: &Path,
        offset: u64,
        data: Option<&[u8]>,
    ) -> Result<(), ExploreError> {
        match data {
            Some(d) => file.write_all_at(d, offset),
            None => file.set_len(offset),
        }
        .map_err(|e| io_err(ev.line, &c.name, e))?;
        self.pend_data(ev, c, path);
        Ok(())
    }

    fn write(&mut self, ev: &Event, c: &Syscall) -> Result<(), ExploreError> {
        let Some(n) = ret_value(c).and_then(|v| u64::try_from(v).ok()) else {
            return Ok(());
        };
        let Some(d) = self.desc_of(ev, c)? else {
            return Ok(());
        };
        let Some(desc) = self.descs.get(d) else {
            return Ok(());
        };
        let Some(file) = desc.file.clone() else {
            if self.inside(&desc.path) && !desc.dir {
                return Err(refuse(ev.line, "a write the model cannot place"));
            }
            return Ok(());
        };
        let (path, append, pos, dsync) = (desc.path.clone(), desc.append, desc.pos, desc.sync);
        let data = written(c);
        let len = usize::try_from(n).unwrap_or(usize::MAX);
        let Some(data) = data.get(..len) else {
            return Err(refuse(
                ev.line,
                format!(
                    "{} wrote {n} bytes and strace kept {} (raise --max-write)",
                    c.name,
                    data.len()
                ),
            ));
        };
        let rwf = if c.name == "pwritev2" {
            num(ev.line, c, 4)?
        } else {
            0
        };
        let explicit = match c.name.as_str() {
            "pwrite64" | "pwritev" => Some(num(ev.line, c, 3)?),
            "pwritev2" => Some(num(ev.line, c, 3)?).filter(|o| *o >= 0),
            _ => None,
        };
        // O_APPEND (or RWF_APPEND) appends whatever offset pwrite was given (pwrite(2), BUGS).
        let appends = append || rwf & RWF_APPEND != 0;
        let offset = match explicit {
            _ if appends => file.len().map_err(|e| io_err(ev.line, "a length", e))?,
            Some(o) => u64::try_from(o).unwrap_or(0),
            None => pos,
        };
        self.room(ev.line, offset.saturating_add(n), n)?;
        let dsync = dsync || rwf & (RWF_DSYNC | RWF_SYNC) != 0;
        if dsync && self.unsynced(&path) > 0 {
            // The kernel syncs only this write's range; the model syncs whole files.
            return Err(refuse(
                ev.line,
                format!(
                    "an O_DSYNC write to {} while it has other unsynced writes (the model \
                     cannot sync one range)",
                    path.display()
                ),
            ));
        }
        self.change(ev, c, &file, &path, offset, Some(data))?;
        if explicit.is_none()
            && let Some(desc) = self.descs.get_mut(d)
        {
            desc.pos = offset + n;
        }
        if dsync {
            // Durable when the call returned (the entry itself still needs its directory).
            file.sync_data()
                .map_err(|e| io_err(ev.line, "O_DSYNC", e))?;
            self.data_synced(&path);
            self.op_done(ev.line, c, true);
        } else {
            self.op_done(ev.line, c, false);
        }
        Ok(())
    }

    fn fsync(&mut self, ev: &Event, c: &Syscall) -> Result<(), ExploreError> {
        let failed = match &c.ret {
            Ret::Value { .. } => false,
            Ret::Error { errno } if matches!(errno.as_str(), "EIO" | "ENOSPC" | "EDQUOT") => true,
            _ => return Ok(()),
        };
        let (path, file, dir) = match self.desc_of(ev, c)?.and_then(|d| self.descs.get(d)) {
            Some(d) => (d.path.clone(), d.file.clone(), d.dir),
            None => {
                // A descriptor from before the trace: an fsync needs no position.
                let Some(p) = c.fd_path(0) else {
                    return Ok(());
                };
                let p = normalize(&bytes_path(p));
                if !(self.inside(&p) || self.scaffold(&p)) {
                    return Ok(());
                }
                match self
                    .sim
                    .entry_kind(&p)
                    .map_err(|e| io_err(ev.line, "fsync", e))?
                {
                    Some(EntryKind::Dir) => (p, None, true),
                    Some(_) => {
                        let f = self
                            .sim
                            .open_file(&p, OpenMode::Read)
                            .map_err(|e| io_err(ev.line, "fsync", e))?;
                        (p, Some(Arc::from(f)), false)
                    }
                    None => return Ok(()),
                }
            }
        };
        // An fsync other lines interrupted covers only what was unsynced when it started.
        let covers = self.covers.remove(&ev.line);
        if dir {
            if !failed && (self.inside(&path) || path == self.watch) {
                match covers {
                    Some((ino, mark)) => self.sim.sync_through(ino, mark),
                    None => self.sim.sync_dir(&path),
                }
                .map_err(|e| io_err(ev.line, "a directory fsync", e))?;
                let left = self.unsynced(&path);
                self.dir_synced(&path, left);
            }
        } else if let Some(f) = file {
            if failed {
                // The kernel failed to write the pages back and dropped them (fsyncgate);
                // the file keeps its size (appends go on after it).
                let len = f.len().map_err(|e| io_err(ev.line, "fsync", e))?;
                let nth = self.sim.ops_of(OpKind::Sync) + 1;
                self.sim
                    .inject(Fault::once(OpKind::Sync, nth, FaultError::Eio));
                let _ = f.sync_data();
                self.sim.clear_faults();
                if f.len().map_err(|e| io_err(ev.line, "fsync", e))? < len {
                    f.set_len(len).map_err(|e| io_err(ev.line, "fsync", e))?;
                }
            } else {
                match covers {
                    // The inode it started on, whatever names it has now.
                    Some((ino, mark)) => self
                        .sim
                        .sync_through(ino, mark)
                        .map_err(|e| io_err(ev.line, "fsync", e))?,
                    None => f.sync_data().map_err(|e| io_err(ev.line, "fsync", e))?,
                }
                if self.unsynced(&path) == 0 {
                    self.data_synced(&path);
                }
            }
        } else {
            return Ok(());
        }
        self.op_done(ev.line, c, true);
        Ok(())
    }

    fn names(&self, ev: &Event, c: &Syscall) -> (Option<PathBuf>, Option<PathBuf>) {
        let pid = ev.pid;
        match c.name.as_str() {
            "rename" | "link" | "symlink" => (
                c.str_arg(0).map(|n| self.cwd.resolve(pid, None, n)),
                c.str_arg(1).map(|n| self.cwd.resolve(pid, None, n)),
            ),
            "renameat" | "renameat2" | "linkat" => (
                c.str_arg(1)
                    .map(|n| self.cwd.resolve(pid, c.args.first(), n)),
                c.str_arg(3)
                    .map(|n| self.cwd.resolve(pid, c.args.get(2), n)),
            ),
            "symlinkat" => (
                c.str_arg(0).map(bytes_path),
                c.str_arg(2)
                    .map(|n| self.cwd.resolve(pid, c.args.get(1), n)),
            ),
            "unlinkat" | "mkdirat" => (
                None,
                c.str_arg(1)
                    .map(|n| self.cwd.resolve(pid, c.args.first(), n)),
            ),
            _ => (None, c.str_arg(0).map(|n| self.cwd.resolve(pid, None, n))),
        }
    }

    fn namespace(&mut self, ev: &Event, c: &Syscall) -> Result<(), ExploreError> {
        let (from, to) = self.names(ev, c);
        let line = ev.line;
        let Some(to) = self.path(line, to)? else {
            return Ok(());
        };
        let from = if c.name.starts_with("symlink") {
            from
        } else {
            self.path(line, from)?
        };
        match c.name.as_str() {
            "rename" | "renameat" | "renameat2" => {
                let Some(from) = from else {
                    return Ok(());
                };
                let (fi, ti) = (self.inside(&from), self.inside(&to));
                if self.scaffold(&from) || (self.scaffold(&to) && !ti) {
                    return Err(refuse(
                        line,
                        "the watched directory (or a directory above it) was renamed",
                    ));
                }
                if !fi && !ti {
                    return Ok(());
                }
                if c.name == "renameat2" && num(line, c, 4)? & RENAME_EXCHANGE != 0 {
                    return Err(refuse(line, "RENAME_EXCHANGE in the watched directory"));
                }
                if !fi {
                    return Err(refuse(
                        line,
                        format!(
                            "{} renamed in from outside the watched directory (its contents \
                             are unknown to the model)",
                            to.display()
                        ),
                    ));
                }
                if ti {
                    self.sim
                        .rename_entry(&from, &to)
                        .map_err(|e| io_err(line, "rename", e))?;
                    // What was pending on the name replaced is unreachable now.
                    self.data_synced(&to);
                    if let Some(key) = self.pending_data.remove(&from) {
                        if let Some(p) = self.pending.get_mut(&key) {
                            p.path = to.clone();
                        }
                        self.pending_data.insert(to.clone(), key);
                    }
                    for d in &mut self.descs {
                        if d.path.starts_with(&from) {
                            let rest = d.path.strip_prefix(&from).map(Path::to_path_buf);
                            d.path = to.join(rest.unwrap_or_default());
                        }
                    }
                    self.pend_dir(ev, c, "rename", &to, Some(&from));
                    if from.parent() != to.parent() {
                        self.pend_dir(ev, c, "unlink", &from, None);
                    }
                } else {
                    self.remove(line, &from, false)?;
                    self.data_synced(&from);
                    self.pend_dir(ev, c, "unlink", &from, None);
                }
            }
            "unlink" | "unlinkat" | "rmdir" => {
                if !self.inside(&to) {
                    if self.scaffold(&to) {
                        return Err(refuse(line, "the watched directory itself was removed"));
                    }
                    return Ok(());
                }
                let rmdir = c.name == "rmdir"
                    || (c.name == "unlinkat" && num(line, c, 2)? & AT_REMOVEDIR != 0);
                self.remove(line, &to, rmdir)?;
                self.data_synced(&to);
                self.pend_dir(ev, c, "unlink", &to, None);
            }
            "mkdir" | "mkdirat" => {
                if self.inside(&to) {
                    self.sim
                        .create_dir_entry(&to)
                        .map_err(|e| io_err(line, "mkdir", e))?;
                    self.pend_dir(ev, c, "mkdir", &to, None);
                } else if self.scaffold(&to) {
                    // The watched directory (or an ancestor) made by the program: outside
                    // the audit's scope, so taken as durable.
                    self.scaffold_dir(&to)
                        .map_err(|e| io_err(line, "mkdir", e))?;
                    return Ok(());
                } else {
                    return Ok(());
                }
            }
            "link" | "linkat" => {
                let Some(from) = from else {
                    return Ok(());
                };
                if !self.inside(&to) {
                    return Ok(());
                }
                if c.name == "linkat" && num(line, c, 4)? & AT_EMPTY_PATH != 0 {
                    return Err(refuse(line, "linkat of a descriptor (AT_EMPTY_PATH)"));
                }
                if !self.inside(&from) {
                    return Err(refuse(
                        line,
                        format!(
                            "{} linked in from outside the watched directory",
                            to.display()
                        ),
                    ));
                }
                self.sim
                    .hard_link(&from, &to)
                    .map_err(|e| io_err(line, "link", e))?;
                self.pend_dir(ev, c, "link", &to, None);
            }
            "symlink" | "symlinkat" => {
                if self.inside(&to) {
                    return Err(refuse(line, "a symlink in the watched directory"));
                }
                return Ok(());
            }
            _ => return Ok(()),
        }
        self.op_done(line, c, false);
        Ok(())
    }

    fn remove(&mut self, line: u64, p: &Path, rmdir: bool) -> Result<(), ExploreError> {
        let r = if rmdir {
            self.sim.remove_dir_entry(p)
        } else {
            self.sim.remove_entry(p)
        };
        r.map_err(|e| io_err(line, "a remove", e))
    }

    /// Makes `p` (the watched directory or an ancestor) and syncs its parent: durable.
    fn scaffold_dir(&self, p: &Path) -> std::io::Result<()> {
        if self.sim.entry_kind(p)?.is_some() {
            return Ok(());
        }
        self.sim.create_dir_entry(p)?;
        self.sim.sync_dir(p.parent().unwrap_or(Path::new("/")))
    }

    fn ack(&mut self, line: u64, texts: Vec<String>) {
        let what = match texts.as_slice() {
            [one] => format!("ack {one:?}"),
            many => format!(
                "{} acks, the last {:?}",
                many.len(),
                many.last().cloned().unwrap_or_default()
            ),
        };
        self.acks.extend(texts);
        self.point(line, what);
    }

    fn call(&mut self, ev: &Event, c: &Syscall) -> Result<(), ExploreError> {
        if self.first_pid.is_none() {
            self.first_pid = Some(ev.pid);
            if let Some(cwd) = &self.cfg.start_cwd {
                self.cwd.start(ev.pid, cwd.clone());
            }
        }
        self.cwd.observe(ev, c);
        if self.cfg.channel(c) {
            let acks = self.reader.feed(self.cfg, ev.line, c);
            if let Some((line, n, kept)) = self.reader.truncated {
                return Err(refuse(
                    line,
                    format!(
                        "a write of {n} bytes to the acknowledgement channel of which strace \
                         kept {kept} (raise --max-write)"
                    ),
                ));
            }
            if !acks.is_empty() {
                self.ack(ev.line, acks);
            }
        }
        if c.name == "exit_group"
            && self.cfg.ack.exit
            && Some(ev.pid) == self.first_pid
            && c.int_arg(0) == Some(0)
        {
            self.ack(ev.line, vec!["exit 0".to_owned()]);
        }
        if c.ok() || matches!(c.name.as_str(), "fsync" | "fdatasync") {
            self.dispatch(ev, c)?;
        }
        Ok(())
    }

    /// Before the event ordered at `key`: what each interrupted fsync that started before
    /// it covers (the unsynced changes of its file or directory then).
    fn pass(&mut self, key: u64) {
        while let Some((start, end, path)) = self.windows.get(self.windows_seen).cloned() {
            if start >= key {
                break;
            }
            self.windows_seen += 1;
            if let Ok(ino) = self.sim.inode(&path)
                && let Ok((mark, _)) = self.sim.sync_mark(ino)
            {
                self.covers.insert(end, (ino, mark));
            }
        }
    }

    fn dispatch(&mut self, ev: &Event, c: &Syscall) -> Result<(), ExploreError> {
        match c.name.as_str() {
            "open" | "openat" | "openat2" | "creat" => self.open(ev, c)?,
            "write" | "pwrite64" | "writev" | "pwritev" | "pwritev2" => self.write(ev, c)?,
            "fsync" | "fdatasync" => self.fsync(ev, c)?,
            "sync" | "syncfs" => {
                // syncfs syncs one filesystem: the watched directory's, if its descriptor is
                // there (taken as the same filesystem up to the root).
                let here = c.name == "sync"
                    || c.fd_path(0).is_some_and(|p| {
                        let p = normalize(&bytes_path(p));
                        self.inside(&p) || self.scaffold(&p)
                    });
                // One that other lines interrupted, while the model changed: what changed
                // meanwhile may not be covered, and the model cannot split a sync of
                // everything, so it counts for nothing (conservative).
                let raced = self.global_windows.contains(&(ev.start, ev.line))
                    && self
                        .change_lines
                        .iter()
                        .rev()
                        .take_while(|l| **l > ev.start)
                        .any(|l| *l < ev.line);
                if here && !raced {
                    self.sync_everything(ev.line)?;
                }
                self.op_done(ev.line, c, true);
            }
            "rename" | "renameat" | "renameat2" | "unlink" | "unlinkat" | "rmdir" | "mkdir"
            | "mkdirat" | "link" | "linkat" | "symlink" | "symlinkat" => self.namespace(ev, c)?,
            "ftruncate" | "fallocate" | "truncate" => self.resize(ev, c)?,
            "lseek" | "read" | "readv" => {
                if let Some(v) = ret_value(c)
                    && let Some(d) = self.desc_of(ev, c)?
                    && let Some(desc) = self.descs.get_mut(d)
                {
                    let v = u64::try_from(v).unwrap_or(0);
                    desc.pos = if c.name == "lseek" {
                        v
                    } else {
                        desc.pos.saturating_add(v)
                    };
                }
            }
            "dup" | "dup2" | "dup3" | "fcntl" => {
                let Some(old) = fd_of(c.args.first()) else {
                    return Ok(());
                };
                let cmd = if c.name == "fcntl" {
                    num(ev.line, c, 1)?
                } else {
                    -1
                };
                let entry = self.get_fd(ev.pid, old);
                if c.name == "fcntl" && cmd == F_SETFL {
                    let flags = num(ev.line, c, 2)?;
                    if let Some((d, _)) = entry
                        && let Some(desc) = self.descs.get_mut(d)
                    {
                        desc.append = flags & O_APPEND != 0;
                    }
                    return Ok(());
                }
                if c.name == "fcntl" && cmd == F_SETFD {
                    let flags = num(ev.line, c, 2)?;
                    if let Some((d, _)) = entry {
                        self.set_fd(ev.pid, old, Some((d, flags & FD_CLOEXEC != 0)));
                    }
                    return Ok(());
                }
                if c.name == "fcntl" && !matches!(cmd, F_DUPFD | F_DUPFD_CLOEXEC) {
                    return Ok(());
                }
                let Some(new) = ret_value(c) else {
                    return Ok(());
                };
                let cloexec = cmd == F_DUPFD_CLOEXEC
                    || (c.name == "dup3" && num(ev.line, c, 2)? & O_CLOEXEC != 0);
                self.set_fd(ev.pid, new, entry.map(|(d, _)| (d, cloexec)));
            }
            "close" => {
                if let Some(fd) = fd_of(c.args.first()) {
                    self.set_fd(ev.pid, fd, None);
                }
            }
            "close_range" => {
                let (lo, hi) = (num(ev.line, c, 0)?, num(ev.line, c, 1)?);
                let t = self.table(ev.pid);
                let fds: Vec<i64> = self
                    .table_list
                    .get(t)
                    .map(|x| {
                        x.fds
                            .keys()
                            .copied()
                            .filter(|f| *f >= lo && *f <= hi)
                            .collect()
                    })
                    .unwrap_or_default();
                let cloexec_only = num(ev.line, c, 2)? & 4 != 0; // CLOSE_RANGE_CLOEXEC
                for fd in fds {
                    if cloexec_only {
                        if let Some((d, _)) = self.get_fd(ev.pid, fd) {
                            self.set_fd(ev.pid, fd, Some((d, true)));
                        }
                    } else {
                        self.set_fd(ev.pid, fd, None);
                    }
                }
            }
            "execve" | "execveat" => {
                // The new program keeps its descriptors, but not those marked close-on-exec.
                let t = self.table(ev.pid);
                if let Some(table) = self.table_list.get_mut(t) {
                    let closing: Vec<i64> = table
                        .fds
                        .iter()
                        .filter(|(_, (_, ce))| *ce)
                        .map(|(f, _)| *f)
                        .collect();
                    for fd in closing {
                        table.fds.remove(&fd);
                    }
                }
            }
            "clone" | "clone3" | "fork" | "vfork" => self.fork(ev, c)?,
            "sendfile" | "splice" | "copy_file_range" | "tee" | "vmsplice" => {
                let out = if c.name == "sendfile" { 0 } else { 2 };
                if let Some(p) = c.fd_path(out)
                    && self.inside(&normalize(&bytes_path(p)))
                {
                    return Err(refuse(
                        ev.line,
                        format!("{} into {}", c.name, String::from_utf8_lossy(p)),
                    ));
                }
                // Reading from a descriptor without an offset moves its position.
                let (input, offset_arg) = match c.name.as_str() {
                    "sendfile" => (1, 2),
                    "splice" | "copy_file_range" => (0, 1),
                    _ => return Ok(()),
                };
                if matches!(c.args.get(offset_arg), Some(Arg::Other(s)) if s == "NULL")
                    && let (Some(fd), Some(v)) = (fd_of(c.args.get(input)), ret_value(c))
                    && let Some((d, _)) = self.get_fd(ev.pid, fd)
                    && let Some(desc) = self.descs.get_mut(d)
                {
                    desc.pos = desc.pos.saturating_add(u64::try_from(v).unwrap_or(0));
                }
            }
            "mmap" => {
                let prot = num(ev.line, c, 2)?;
                let flags = num(ev.line, c, 3)?;
                if let Some(p) = c.fd_path(4)
                    && prot & PROT_WRITE != 0
                    && flags & MAP_SHARED != 0
                    && self.inside(&normalize(&bytes_path(p)))
                {
                    return Err(refuse(
                        ev.line,
                        format!("a writable shared mmap of {}", String::from_utf8_lossy(p)),
                    ));
                }
            }
            "io_uring_setup" | "io_submit" => {
                return Err(refuse(
                    ev.line,
                    format!("{} (writes the model cannot see)", c.name),
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// A new process or thread: its table is its parent's (`CLONE_FILES`) or a copy of
    /// it, made here or at the child's first call if that came earlier in the trace.
    fn fork(&mut self, ev: &Event, c: &Syscall) -> Result<(), ExploreError> {
        if let Some(Err(what)) = field(c, "flags") {
            return Err(refuse(
                ev.line,
                format!(
                    "{} {what}, not a number (take the trace with -X raw)",
                    c.name
                ),
            ));
        }
        if let Some(child) = ret_value(c).and_then(|v| u32::try_from(v).ok())
            && child > 0
        {
            self.table(child);
        }
        Ok(())
    }

    fn resize(&mut self, ev: &Event, c: &Syscall) -> Result<(), ExploreError> {
        let file = if c.name == "truncate" {
            let p = c.str_arg(0).map(|n| self.cwd.resolve(ev.pid, None, n));
            let Some(p) = self.path(ev.line, p)? else {
                return Ok(());
            };
            if !self.inside(&p) {
                return Ok(());
            }
            let f = self
                .sim
                .open_file(&p, OpenMode::ReadWrite)
                .map_err(|e| io_err(ev.line, "truncate", e))?;
            Some((p, Arc::from(f)))
        } else {
            self.desc_of(ev, c)?
                .and_then(|d| self.descs.get(d))
                .and_then(|d| d.file.clone().map(|f| (d.path.clone(), f)))
        };
        let Some((path, f)) = file else {
            return Ok(());
        };
        let to = if c.name == "fallocate" {
            let mode = num(ev.line, c, 1)?;
            if mode & !FALLOC_FL_KEEP_SIZE != 0 {
                return Err(refuse(ev.line, format!("fallocate mode {mode:#x}")));
            }
            let end = num(ev.line, c, 2)?.saturating_add(num(ev.line, c, 3)?);
            let len = f.len().map_err(|e| io_err(ev.line, "fallocate", e))?;
            let end = u64::try_from(end).unwrap_or(0);
            if mode & FALLOC_FL_KEEP_SIZE != 0 || end <= len {
                return Ok(());
            }
            end
        } else {
            u64::try_from(num(ev.line, c, 1)?).unwrap_or(0)
        };
        self.room(ev.line, to, 0)?;
        self.change(ev, c, &f, &path, to, None)?;
        self.op_done(ev.line, c, false);
        Ok(())
    }
}

/// Replays `events` into the simulator and returns it with the crash points.
fn replay(
    events: &[Event],
    cfg: &Config,
    initial: &BTreeMap<PathBuf, Initial>,
    points: Points,
) -> Result<(SimFs, Vec<Point>, Vec<String>), ExploreError> {
    let watch = match cfg.watch.as_slice() {
        [w] => w.clone(),
        _ => {
            return Err(ExploreError::NotMeasured(
                "explore takes exactly one --watch directory".to_owned(),
            ));
        }
    };
    let sim = SimFs::new();
    let fs = sim.durable();
    let mut size = 0u64;
    for (p, what) in initial {
        if !p.starts_with(&watch) {
            continue;
        }
        match what {
            Initial::Dir => fs.create_dir_all(p)?,
            Initial::File(bytes) => {
                size += bytes.len() as u64;
                if size > MAX_INITIAL_BYTES {
                    return Err(ExploreError::NotMeasured(format!(
                        "the watched directory held more than {MAX_INITIAL_BYTES} bytes at the \
                         start (each crash state would copy them)"
                    )));
                }
                if let Some(parent) = p.parent() {
                    fs.create_dir_all(parent)?;
                }
                fs.atomic_replace(p, bytes)?;
            }
        }
    }
    // The watched directory and its ancestors are outside the audit's scope: durable from
    // the start (the program's own mkdir of them, perhaps through a symlink, changes nothing).
    fs.create_dir_all(&watch)?;
    sim.start_journal();
    // fsyncs other processes' lines interrupted: what completed meanwhile may be uncovered.
    let mut windows: Vec<(u64, u64, PathBuf)> = events
        .iter()
        .filter(|e| e.start < e.line)
        .filter_map(|e| match &e.kind {
            EventKind::Syscall(c) if matches!(c.name.as_str(), "fsync" | "fdatasync") => c
                .fd_path(0)
                .map(|p| (e.start, e.line, normalize(&bytes_path(p)))),
            _ => None,
        })
        .collect();
    windows.sort();
    let global_windows = events
        .iter()
        .filter(|e| e.start < e.line)
        .filter(|e| matches!(&e.kind, EventKind::Syscall(c) if matches!(c.name.as_str(), "sync" | "syncfs")))
        .map(|e| (e.start, e.line))
        .collect();
    let parents = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Syscall(c)
                if matches!(c.name.as_str(), "clone" | "clone3" | "fork" | "vfork") =>
            {
                let child = ret_value(c).and_then(|v| u32::try_from(v).ok())?;
                let flags = match c.name.as_str() {
                    "clone" | "clone3" => field(c, "flags").and_then(Result::ok).unwrap_or(0),
                    _ => 0,
                };
                (child > 0).then_some((child, (e.pid, flags & CLONE_FILES != 0)))
            }
            _ => None,
        })
        .collect();
    let mut r = Replay {
        cfg,
        watch,
        sim,
        cwd: Cwd::default(),
        tables: HashMap::new(),
        parents,
        table_list: Vec::new(),
        descs: Vec::new(),
        pending: BTreeMap::new(),
        seq: 0,
        pending_dir: BTreeMap::new(),
        pending_data: BTreeMap::new(),
        windows,
        windows_seen: 0,
        covers: HashMap::new(),
        global_windows,
        change_lines: Vec::new(),
        acks: Vec::new(),
        points: Vec::new(),
        mode: points,
        written: 0,
        first_pid: None,
        reader: AckReader::default(),
    };
    let mut last = 0;
    for (key, ev) in cfg.replay_order_keyed(events) {
        last = last.max(ev.line);
        r.pass(key);
        if let EventKind::Syscall(c) = &ev.kind {
            r.call(ev, c)?;
        }
    }
    // A last acknowledgement the program wrote without a newline.
    let tail = r.reader.finish(cfg);
    if !tail.is_empty() {
        r.ack(last, tail);
    }
    r.point(last, "the end of the run".to_owned());
    Ok((r.sim, r.points, r.acks))
}

/// One file or directory of a crash state, for hashing and writing.
enum Entry {
    Dir(PathBuf),
    File(PathBuf, Vec<u8>),
}

/// The entries of `image` under `root`, relative to it, in order.
fn entries(image: &SimFs, root: &Path) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    if image.entry_kind(root)? != Some(EntryKind::Dir) {
        return Ok(out);
    }
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut names = image.list_dir(&root.join(&rel))?;
        names.sort();
        for name in names.into_iter().rev() {
            let r = rel.join(&name);
            let p = root.join(&r);
            match image.entry_kind(&p)? {
                Some(EntryKind::Dir) => {
                    out.push(Entry::Dir(r.clone()));
                    stack.push(r);
                }
                Some(_) => {
                    let f = image.open_file(&p, OpenMode::Read)?;
                    let len = usize::try_from(f.len()?).unwrap_or(usize::MAX);
                    let mut buf = vec![0u8; len];
                    let mut at = 0;
                    while at < len {
                        let n = f.read_at(buf.get_mut(at..).unwrap_or_default(), at as u64)?;
                        if n == 0 {
                            break;
                        }
                        at += n;
                    }
                    out.push(Entry::File(r, buf));
                }
                None => {}
            }
        }
    }
    Ok(out)
}

fn digest(entries: &[Entry], acks: usize) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    acks.hash(&mut h);
    for e in entries {
        match e {
            Entry::Dir(p) => (0u8, p).hash(&mut h),
            Entry::File(p, data) => (1u8, p, data).hash(&mut h),
        }
    }
    h.finish()
}

/// Whether `image` lost pending operation `p` (`None`: data, not compared here).
fn lost(image: &SimFs, p: &Pending) -> Option<bool> {
    let exists = |q: &Path| image.entry_kind(q).ok().flatten().is_some();
    match p.op {
        "create" | "mkdir" | "link" => Some(!exists(&p.path)),
        "unlink" => Some(exists(&p.path)),
        "rename" => Some(!exists(&p.path) || p.from.as_deref().is_some_and(exists)),
        _ => None,
    }
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.to_string_lossy().replace('\'', "'\\''"))
}

/// A crash state waiting for its check.
struct State {
    dir: PathBuf,
    /// The crash state itself, to keep an untouched copy if the check fails (the check
    /// may change its copy: opening a database recovers it).
    entries: Vec<Entry>,
    point: usize,
    mode: CrashMode,
    seed: u64,
    acks: usize,
    lost: Vec<Option<bool>>,
}

struct Checked {
    exit: Option<i32>,
    output: String,
}

/// Kills process group `pgid` (the check and whatever it started).
fn kill_group(pgid: u32) {
    if let Some(pid) = i32::try_from(pgid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

const OUTPUT_KEPT: usize = 2048;

fn run_check(opts: &Options, state: &State) -> Result<Checked, ExploreError> {
    let cmd = opts.check.replace("{dir}", &quote(&state.dir.join("dir")));
    let dir = state.dir.join("dir");
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        // Its own process group: a timeout kills whatever the check started too (a child
        // left holding the output pipes would keep the readers waiting).
        .process_group(0)
        .env("DURABLE_AUDIT_DIR", &dir)
        .env("DURABLE_AUDIT_ACKED", state.dir.join("acked"))
        .env("DURABLE_AUDIT_ACKS", state.acks.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(ExploreError::Check)?;
    // Readers drain the pipes (a chatty check must not block), keeping the start; they
    // report on a channel, so a descendant that left the group holding a pipe cannot make
    // us wait for ever.
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut r| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let room = OUTPUT_KEPT.saturating_sub(kept.len());
                kept.extend_from_slice(buf.get(..n.min(room)).unwrap_or_default());
            }
            let _ = tx.send(kept);
        })
    })
    .collect();
    drop(tx);
    let deadline = Instant::now() + opts.timeout;
    let (status, timed_out) = loop {
        match child.try_wait().map_err(ExploreError::Check)? {
            Some(status) => break (Some(status), false),
            None if Instant::now() >= deadline => {
                kill_group(child.id());
                let _ = child.kill();
                break (child.wait().ok(), true);
            }
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    // Whatever the check left running in its group (holding the pipes) goes too.
    kill_group(child.id());
    let mut output = Vec::new();
    let grace = Instant::now() + Duration::from_secs(2);
    for _ in 0..readers.len() {
        match rx.recv_timeout(grace.saturating_duration_since(Instant::now())) {
            Ok(part) => output.extend(part),
            Err(_) => {
                output
                    .extend_from_slice(b"(output cut: something the check started still holds it)");
                break;
            }
        }
    }
    drop(readers); // detached if still blocked
    let mut output = String::from_utf8_lossy(&output).into_owned();
    let exit = status.and_then(|s| s.code());
    if timed_out {
        output.push_str(&format!(
            "(killed: no exit within {} s)",
            opts.timeout.as_secs()
        ));
    } else if let Some(sig) = status.and_then(|s| s.signal()) {
        output.push_str(&format!("(the check died of signal {sig})"));
    }
    Ok(Checked { exit, output })
}

/// Explores the crash states of the run `events` recorded. `initial`: what the watched
/// directory held when the run started (empty when it did not exist).
pub fn explore(
    events: &[Event],
    cfg: &Config,
    initial: &BTreeMap<PathBuf, Initial>,
    opts: &Options,
) -> Result<Outcome, ExploreError> {
    if opts.check.contains("\"{dir}") || opts.check.contains("'{dir}") {
        return Err(ExploreError::Usage(
            "--check: write {dir} unquoted (it is replaced by a quoted path), or use \
             \"$DURABLE_AUDIT_DIR\""
                .to_owned(),
        ));
    }
    let (sim, points, acks) = replay(events, cfg, initial, opts.points)?;
    if acks.is_empty() {
        return Err(ExploreError::NotMeasured(
            "nothing was acknowledged: every crash state would pass a check with nothing to \
             verify (see --ack)"
                .to_owned(),
        ));
    }
    let journal = sim
        .journal()
        .ok_or_else(|| ExploreError::NotMeasured("the simulator kept no journal".to_owned()))?;
    let watch = cfg.watch.first().cloned().unwrap_or_default();
    let real = DurableFs::real();
    let scratch = opts.scratch.join(format!(
        "durable-audit-explore-{}-{:x}",
        std::process::id(),
        durable_fs::random_salt(u64::from(std::process::id()))
    ));
    real.create_dir_all(&scratch)?;
    let mut outcome = Outcome {
        points: points.len(),
        ..Outcome::default()
    };
    let positions: Vec<u64> = points.iter().map(|p| p.journal).collect();
    let mut seen = HashSet::new();
    let mut batch: Vec<State> = Vec::new();
    let mut error: Option<ExploreError> = None;
    let mut n = 0u64;
    for &mode in &opts.modes {
        let seeds = if mode == CrashMode::Strict {
            1
        } else {
            opts.seeds.max(1)
        };
        for seed in 0..seeds {
            let mut index = 0usize;
            journal.for_each_crash(
                &positions,
                mode,
                |k| k.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed.wrapping_add(1),
                |_, image| {
                    let i = index;
                    index += 1;
                    outcome.states += 1;
                    if error.is_some() {
                        return;
                    }
                    let Some(point) = points.get(i) else {
                        return;
                    };
                    let state = match entries(&image, &watch) {
                        Ok(e) => e,
                        Err(e) => {
                            error = Some(refuse(point.line, format!("reading a crash state: {e}")));
                            return;
                        }
                    };
                    if !seen.insert(digest(&state, point.acks)) {
                        return;
                    }
                    outcome.distinct += 1;
                    if seen.len() > opts.max_states {
                        outcome.skipped += 1;
                        return;
                    }
                    n += 1;
                    let dir = scratch.join(format!("state-{n}"));
                    let written =
                        write_state(&real, &dir, &state, acks.get(..point.acks).unwrap_or(&acks));
                    if let Err(e) = written {
                        error = Some(e);
                        return;
                    }
                    batch.push(State {
                        dir,
                        entries: state,
                        point: i,
                        mode,
                        seed,
                        acks: point.acks,
                        lost: point.pending.iter().map(|p| lost(&image, p)).collect(),
                    });
                    if batch.len() >= opts.jobs.max(1) * 4 {
                        let b = std::mem::take(&mut batch);
                        if let Err(e) = check_batch(&real, opts, &points, b, &mut outcome) {
                            error = Some(e);
                        }
                    }
                },
            );
            if let Some(e) = error.take() {
                let _ = real.remove_dir_all(&scratch);
                return Err(e);
            }
        }
    }
    let b = std::mem::take(&mut batch);
    let r = check_batch(&real, opts, &points, b, &mut outcome);
    if outcome.failures.iter().all(|f| f.kept.is_none())
        && outcome.leftovers.is_empty()
        && real.remove_dir_all(&scratch).is_err()
    {
        outcome.leftovers.push(scratch);
    }
    r?;
    Ok(outcome)
}

fn write_state(
    fs: &DurableFs,
    dir: &Path,
    state: &[Entry],
    acks: &[String],
) -> Result<(), ExploreError> {
    let root = dir.join("dir");
    fs.create_dir_all(&root)?;
    for e in state {
        match e {
            Entry::Dir(p) => fs.create_dir_all(&root.join(p))?,
            Entry::File(p, data) => {
                let f = fs.create_new(&root.join(p))?;
                f.write_all_at(data, 0)?;
            }
        }
    }
    let mut list = Vec::new();
    for a in acks {
        list.extend_from_slice(a.as_bytes());
        list.push(b'\n');
    }
    let f = fs.create_new(&dir.join("acked"))?;
    f.write_all_at(&list, 0)?;
    Ok(())
}

fn check_batch(
    fs: &DurableFs,
    opts: &Options,
    points: &[Point],
    batch: Vec<State>,
    outcome: &mut Outcome,
) -> Result<(), ExploreError> {
    let next = AtomicUsize::new(0);
    let results: Vec<Result<Checked, ExploreError>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..opts.jobs.max(1).min(batch.len().max(1)))
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(state) = batch.get(i) else {
                            break;
                        };
                        mine.push((i, run_check(opts, state)));
                    }
                    mine
                })
            })
            .collect();
        let mut all: Vec<(usize, Result<Checked, ExploreError>)> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect();
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, r)| r).collect()
    });
    for (state, result) in batch.into_iter().zip(results) {
        let checked = result?;
        outcome.checked += 1;
        let keep = checked.exit != Some(0)
            && outcome.failures.iter().filter(|f| f.kept.is_some()).count() < opts.keep_failed;
        if checked.exit != Some(0) {
            let Some(point) = points.get(state.point) else {
                continue;
            };
            outcome.failures.push(Failure {
                point: point.clone(),
                mode: state.mode,
                seed: state.seed,
                exit: checked.exit,
                output: checked.output,
                pending: point.pending.iter().cloned().zip(state.lost).collect(),
                kept: keep.then(|| state.dir.clone()),
            });
        }
        if keep {
            // Next to the check's copy, the state as the crash left it.
            write_state(fs, &state.dir.join("as-crashed"), &state.entries, &[])?;
        } else if fs.remove_dir_all(&state.dir).is_err() {
            // What the check left may not be removable; never lose the verdicts for it.
            outcome.leftovers.push(state.dir);
        }
    }
    Ok(())
}

/// What the watched directory held when the run started, as the capture saved it.
/// Refused (not measured) for a trace captured without `--explore` (no contents, and not
/// the calls that place writes).
pub fn initial(cfg: &Config) -> Result<BTreeMap<PathBuf, Initial>, ExploreError> {
    let mut out: BTreeMap<PathBuf, Initial> = cfg
        .existing_dirs
        .iter()
        .map(|d| (d.clone(), Initial::Dir))
        .collect();
    match &cfg.contents {
        Some(c) => {
            for (p, b) in c {
                out.insert(p.clone(), Initial::File(b.clone()));
            }
            if let Some(other) = cfg
                .existing
                .iter()
                .find(|p| !out.contains_key(*p) && cfg.watch.iter().any(|w| p.starts_with(w)))
            {
                return Err(ExploreError::NotMeasured(format!(
                    "{} in the watched directory is neither a file nor a directory (a \
                     symlink?): the model has no such thing",
                    other.display()
                )));
            }
        }
        None => {
            // A trace captured for the lint alone: no contents, and none of the calls that
            // move a descriptor's position (lseek, read, dup...): bytes would be misplaced.
            return Err(ExploreError::NotMeasured(
                "the trace was not captured with --explore (it lacks the watched directory's \
                 contents and the calls that place writes): capture it with --explore"
                    .to_owned(),
            ));
        }
    }
    Ok(out)
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seed = match self.mode {
            CrashMode::Strict => String::new(),
            _ => format!(" seed {}", self.seed),
        };
        let exit = match self.exit {
            Some(c) => format!("exit {c}"),
            None => "killed".to_owned(),
        };
        write!(
            f,
            "CRASH after trace line {} ({}), {}{seed}: the check failed ({exit})",
            self.point.line, self.point.what, self.mode
        )?;
        for line in self.output.lines().take(8) {
            write!(f, "\n     check: {line}")?;
        }
        if self.point.more > 0 {
            write!(
                f,
                "\n     ({} more operations were pending)",
                self.point.more
            )?;
        }
        if self.pending.is_empty() {
            write!(
                f,
                "\n     nothing was pending: the state is what the program had synced"
            )?;
        }
        for (p, lost) in &self.pending {
            write!(f, "\n     pending: {p}")?;
            match lost {
                Some(true) => write!(f, " (lost in this state)")?,
                Some(false) => write!(f, " (kept in this state)")?,
                None => {}
            }
        }
        if let Some(k) = &self.kept {
            write!(f, "\n     state kept in {}", k.display())?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match (self.op, &self.from) {
            ("write", _) => format!("data written to {} not fsynced", self.path.display()),
            ("rename", Some(from)) => format!(
                "rename of {} to {}, directory not fsynced",
                from.display(),
                self.path.display()
            ),
            (op, _) => format!("{op} of {}, directory not fsynced", self.path.display()),
        };
        write!(
            f,
            "{what} (trace line {}, pid {} {})",
            self.line, self.pid, self.syscall
        )
    }
}
