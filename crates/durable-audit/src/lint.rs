//! The lint: replays a trace against a model of what is durable and reports each
//! acknowledgement that came before what it acknowledged was durable.
//!
//! Rules (stable ids):
//!
//! - **D001** (error): at an acknowledgement, a create, rename, unlink, mkdir or link in a
//!   watched directory is not yet durable: its directory was not fsynced since (nor was
//!   everything, with `sync` or `syncfs`).
//! - **D003** (error): `rename(tmp, X)` while `tmp` has writes never fsynced (after a crash
//!   `X` can be empty or partial: the rename was durable, the data not).
//! - **D004** (error, at the end): a file in a watched directory was fsynced, its directory
//!   never, and no acknowledgement caught it earlier.
//! - **D002** (warning): at an acknowledgement, a file in a watched directory has writes
//!   never fsynced (they can be lost or torn by a crash).
//! - **D005** (error): an acknowledgement after an fsync failed (fsyncgate: the kernel may
//!   have dropped the dirty pages; a retry that succeeds proves nothing; fail-stop instead).
//! - **D006** (warning): a file that existed is opened with `O_TRUNC` and rewritten in
//!   place (a crash leaves it empty or partial: write a new file, fsync, rename over it).
//!
//! The model is path-based: paths are absolute (strace's `-y` gives every descriptor's
//! path, and `AT_FDCWD` the working directory), normalised lexically (no symlinks
//! followed). A create is an `O_CREAT` open of a path not known to exist: known are the
//! names listed in the watched directories when the run started, and what the run created.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use crate::trace::{Arg, Event, EventKind, Ret, Syscall};

/// A finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule: `D001` to `D006`.
    pub rule: &'static str,
    /// `error` (exit 1) or `warning`.
    pub severity: &'static str,
    /// The trace line of the operation that was not durable.
    pub line: u64,
    /// Its process.
    pub pid: u32,
    /// Its system call.
    pub syscall: String,
    /// What it did: `create`, `rename`, `unlink`, `mkdir`, `link`, `fsync`.
    pub op: &'static str,
    /// The directory whose entry was not durable.
    pub dir: PathBuf,
    /// The name in it.
    pub name: String,
    /// The acknowledgement that came too early: its trace line and text (none for D004).
    pub ack: Option<(u64, String)>,
}

impl Finding {
    /// How to fix it, in one line.
    pub fn fix(&self) -> String {
        match self.rule {
            "D003" => format!("fsync {} before renaming it", self.name),
            "D002" => format!("fsync {} before acknowledging", self.name),
            "D005" => "stop at a failed fsync (fail-stop): never acknowledge after one".to_owned(),
            "D006" => format!(
                "write a new file, fsync it, rename it over {}, fsync {}",
                self.name,
                self.dir.display()
            ),
            _ => format!(
                "fsync {} after the {} of {}",
                self.dir.display(),
                self.op,
                self.name
            ),
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.rule {
            "D003" => format!(
                "rename of {:?} in {} at trace line {} (pid {} {}) while its data was never fsynced",
                self.name,
                self.dir.display(),
                self.line,
                self.pid,
                self.syscall
            ),
            "D002" => format!(
                "{:?} in {}, written at trace line {} (pid {} {}) and never fsynced,",
                self.name,
                self.dir.display(),
                self.line,
                self.pid,
                self.syscall
            ),
            "D005" => format!(
                "an fsync of {:?} failed at trace line {} (pid {} {}), and then something",
                self.name, self.line, self.pid, self.syscall
            ),
            "D006" => format!(
                "{:?} in {} was truncated and rewritten in place at trace line {} (pid {} {})",
                self.name,
                self.dir.display(),
                self.line,
                self.pid,
                self.syscall
            ),
            "D004" => format!(
                "{:?} in {} was fsynced at trace line {} (pid {} {}), its directory never",
                self.name,
                self.dir.display(),
                self.line,
                self.pid,
                self.syscall
            ),
            _ => format!(
                "{} of {:?} in {} at trace line {} (pid {} {})",
                self.op,
                self.name,
                self.dir.display(),
                self.line,
                self.pid,
                self.syscall
            ),
        };
        if let ("D005", Some((n, text))) = (self.rule, &self.ack) {
            return write!(
                f,
                "D005 fsync of {:?} in {} failed at trace line {} (pid {} {}), and {text:?} \
                 (trace line {n}) was acknowledged after it",
                self.name,
                self.dir.display(),
                self.line,
                self.pid,
                self.syscall
            );
        }
        match &self.ack {
            Some((n, text)) => write!(
                f,
                "{} {what} was acknowledged by {text:?} (trace line {n}) before {} was durable",
                self.rule,
                match self.rule {
                    "D003" | "D002" => "its data",
                    "D005" => "anything after the failure",
                    _ => "its directory",
                }
            ),
            None => write!(f, "{} {what}", self.rule),
        }
    }
}

/// What counts as an acknowledgement (any of them).
#[derive(Debug, Clone)]
pub struct AckSpec {
    /// A line written to descriptor 1 that matches this pattern. Default: `^ack\b`.
    pub line: Option<regex::bytes::Regex>,
    /// The program's exit with status 0 acknowledges everything it did.
    pub exit: bool,
    /// Any write to these descriptors.
    pub fds: Vec<i64>,
}

impl Default for AckSpec {
    fn default() -> Self {
        AckSpec {
            line: regex::bytes::Regex::new(r"^ack\b").ok(),
            exit: false,
            fds: Vec::new(),
        }
    }
}

impl AckSpec {
    /// Parses `--ack` specs: `line:REGEX`, `exit`, `fd:N` (no spec: the default).
    pub fn parse(specs: &[String]) -> Result<AckSpec, String> {
        if specs.is_empty() {
            return Ok(AckSpec::default());
        }
        let mut a = AckSpec {
            line: None,
            exit: false,
            fds: Vec::new(),
        };
        for spec in specs {
            if let Some(re) = spec.strip_prefix("line:") {
                a.line =
                    Some(regex::bytes::Regex::new(re).map_err(|e| format!("--ack {spec:?}: {e}"))?);
            } else if spec == "exit" {
                a.exit = true;
            } else if let Some(n) = spec.strip_prefix("fd:") {
                a.fds.push(
                    n.parse()
                        .map_err(|_| format!("--ack {spec:?}: not a descriptor"))?,
                );
            } else {
                return Err(format!("--ack {spec:?}: expected line:REGEX, exit or fd:N"));
            }
        }
        Ok(a)
    }

    /// Each line of `data` matching the pattern (a write may carry several).
    fn matches(&self, data: &[u8]) -> Vec<String> {
        let Some(re) = self.line.as_ref() else {
            return Vec::new();
        };
        data.split(|&b| b == b'\n')
            .filter(|line| re.is_match(line))
            .map(|line| String::from_utf8_lossy(line).into_owned())
            .collect()
    }
}

/// Reads acknowledgements as the program wrote them. A line may come in pieces (a buffered
/// stdout writes what fits), so each channel's bytes are joined and a line counts once it
/// is complete, at the write that completes it; a write cut short (the process died in
/// it) still counts, its bytes may have been read.
#[derive(Debug, Default)]
pub struct AckReader {
    /// Per channel (strace's name for it, `pipe:[N]`): the bytes after its last newline.
    partial: HashMap<Vec<u8>, Vec<u8>>,
    /// The first write to a channel whose bytes strace did not keep in full: (line, bytes
    /// written, bytes kept). An acknowledgement in the rest would be missed.
    pub truncated: Option<(u64, u64, usize)>,
}

/// Longest unfinished line kept per channel (a program that never writes a newline).
const MAX_PARTIAL: usize = 1 << 16;

impl AckReader {
    /// The acknowledgements call `c` (trace line `line`) makes, in order.
    pub fn feed(&mut self, cfg: &Config, line: u64, c: &Syscall) -> Vec<String> {
        if !cfg.channel(c) || !matches!(c.ret, Ret::Value { .. } | Ret::Unknown) {
            return Vec::new();
        }
        let Some(Arg::Fd { fd, path }) = c.args.first() else {
            return Vec::new();
        };
        if cfg.ack.fds.contains(fd) {
            return vec![format!("a write to fd {fd}")];
        }
        let mut data = written(c);
        if let Some(Arg::Str {
            truncated: true, ..
        }) = c.args.get(1)
            && self.truncated.is_none()
        {
            self.truncated = Some((line, data.len() as u64 + 1, data.len()));
        }
        if let Ret::Value { value, .. } = c.ret {
            let n = usize::try_from(value).unwrap_or(0);
            if data.len() < n && self.truncated.is_none() {
                self.truncated = Some((line, n as u64, data.len()));
            }
            data.truncate(n);
        }
        let buf = self.partial.entry(path.clone()).or_default();
        buf.extend_from_slice(&data);
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            if buf.len() > MAX_PARTIAL {
                buf.clear();
            }
            return Vec::new();
        };
        let rest = buf.split_off(end + 1);
        let complete = std::mem::replace(buf, rest);
        cfg.ack.matches(&complete)
    }

    /// At the end of the run: what the program wrote after its last newline (a last
    /// acknowledgement without one).
    pub fn finish(&mut self, cfg: &Config) -> Vec<String> {
        let mut out = Vec::new();
        let mut channels: Vec<Vec<u8>> = self.partial.drain().map(|(_, v)| v).collect();
        channels.sort();
        for rest in channels {
            out.extend(cfg.ack.matches(&rest));
        }
        out
    }
}

/// What the lint needs besides the trace.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Directories whose entries must be durable at each acknowledgement (absolute).
    pub watch: Vec<PathBuf>,
    /// Paths that existed when the run started (so an `O_CREAT` open of one is not a create).
    pub existing: BTreeSet<PathBuf>,
    /// Of those, the directories.
    pub existing_dirs: BTreeSet<PathBuf>,
    /// What an acknowledgement is.
    pub ack: AckSpec,
    /// The bytes of each regular file under the watched directories at the start, when
    /// they were saved (explore needs them; the lint does not).
    pub contents: Option<BTreeMap<PathBuf, Vec<u8>>>,
    /// The program's working directory when it started (relative paths before the trace
    /// shows one).
    pub start_cwd: Option<PathBuf>,
}

/// What the lint found, and what it saw.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The findings, in trace order.
    pub findings: Vec<Finding>,
    /// System calls replayed.
    pub syscalls: u64,
    /// Processes seen.
    pub processes: usize,
    /// How the program (the trace's first process) ended: `exit N`, `killed by SIG...`,
    /// or `None` when the trace does not say.
    pub end: Option<String>,
    /// Acknowledgements seen.
    pub acks: u64,
    /// fsync-like calls seen.
    pub syncs: u64,
    /// Calls the model cannot see through (mmap of a writable shared mapping, io_uring),
    /// with their trace line: a run that has them is not measured.
    pub blind_spots: Vec<(u64, String)>,
}

#[derive(Debug, Clone)]
struct PendingOp {
    line: u64,
    pid: u32,
    syscall: String,
    op: &'static str,
    name: String,
}

/// Lexical normalisation: `.` dropped, `..` pops.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

pub(crate) fn bytes_path(b: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(b))
}

pub(crate) fn split(path: &Path) -> (PathBuf, String) {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (dir, name)
}

// Linux's flag values (x86_64 and aarch64 agree), as `-X raw` prints them.
pub(crate) const O_CREAT: i64 = 0o100;
pub(crate) const O_TMPFILE: i64 = 0o20_000_000;
pub(crate) const O_DIRECTORY: i64 = 0o200_000;
pub(crate) const O_TRUNC: i64 = 0o1000;
pub(crate) const O_ACCMODE: i64 = 0o3;
pub(crate) const PROT_WRITE: i64 = 2;
pub(crate) const MAP_SHARED: i64 = 1;

/// Each process's working directory as the trace shows it: `AT_FDCWD`'s `-y` path, `chdir`,
/// `fchdir`, and a child starting where its parent is.
#[derive(Debug, Default)]
pub(crate) struct Cwd(HashMap<u32, PathBuf>);

impl Cwd {
    /// Process `pid` starts in `dir`.
    pub(crate) fn start(&mut self, pid: u32, dir: PathBuf) {
        self.0.entry(pid).or_insert(dir);
    }

    /// Follows what `c` (a successful call or not) says about working directories.
    pub(crate) fn observe(&mut self, ev: &Event, c: &Syscall) {
        for a in &c.args {
            if let Arg::Fd { fd: -100, path } = a {
                self.0.insert(ev.pid, normalize(&bytes_path(path)));
            }
        }
        let ok = c.ok();
        match c.name.as_str() {
            "chdir" => {
                if let (true, Some(name)) = (ok, c.str_arg(0)) {
                    let to = self.resolve(ev.pid, None, name);
                    self.0.insert(ev.pid, to);
                }
            }
            "fchdir" => {
                if let (true, Some(Arg::Fd { path, .. })) = (ok, c.args.first()) {
                    self.0.insert(ev.pid, normalize(&bytes_path(path)));
                }
            }
            "clone" | "clone3" | "fork" | "vfork" => {
                // The child starts where its parent is.
                if let (Ret::Value { value, .. }, Some(cwd)) = (&c.ret, self.0.get(&ev.pid))
                    && let Ok(child) = u32::try_from(*value)
                    && child > 0
                {
                    let cwd = cwd.clone();
                    self.0.entry(child).or_insert(cwd);
                }
            }
            _ => {}
        }
    }

    /// An absolute path for `name` relative to descriptor argument `dirfd` (or the cwd).
    pub(crate) fn resolve(&self, pid: u32, dirfd: Option<&Arg>, name: &[u8]) -> PathBuf {
        let p = bytes_path(name);
        if p.is_absolute() {
            return normalize(&p);
        }
        let base = match dirfd {
            Some(Arg::Fd { path, .. }) => bytes_path(path),
            _ => self.0.get(&pid).cloned().unwrap_or_default(),
        };
        normalize(&base.join(p))
    }
}

impl Config {
    /// True when `dir` is a watched directory or under one.
    pub fn watched(&self, dir: &Path) -> bool {
        self.watch.iter().any(|w| dir.starts_with(w))
    }

    /// The order in which a replay takes the events: as they completed, except that a
    /// write that may acknowledge (to descriptor 1, or one named with `fd:N`) counts from
    /// the line it started on (a call interrupted by other processes' lines may have been
    /// read by the time they ran; moving a write to stdout earlier changes no file).
    pub fn replay_order<'a>(&self, events: &'a [Event]) -> Vec<&'a Event> {
        self.replay_order_keyed(events)
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    }

    /// [`Config::replay_order`] with each event's place (the line it counts from).
    pub fn replay_order_keyed<'a>(&self, events: &'a [Event]) -> Vec<(u64, &'a Event)> {
        let mut order: Vec<(u64, &Event)> = events
            .iter()
            .map(|e| match &e.kind {
                EventKind::Syscall(c) if e.start < e.line && self.channel(c) => (e.start, e),
                _ => (e.line, e),
            })
            .collect();
        order.sort_by_key(|(k, _)| *k);
        order
    }

    /// A write to where acknowledgements come from.
    pub fn channel(&self, c: &Syscall) -> bool {
        if !matches!(
            c.name.as_str(),
            "write" | "pwrite64" | "writev" | "pwritev" | "pwritev2"
        ) {
            return false;
        }
        let Some(Arg::Fd { fd, path }) = c.args.first() else {
            return false;
        };
        let to = normalize(&bytes_path(path));
        (*fd == 1
            && path.as_slice() != b"/dev/null"
            && !to.parent().is_some_and(|d| self.watched(d)))
            || self.ack.fds.contains(fd)
    }
}

struct Lint<'a> {
    cfg: &'a Config,
    report: Report,
    exists: BTreeSet<PathBuf>,
    /// dir -> entries changed since its last fsync
    pending: BTreeMap<PathBuf, Vec<PendingOp>>,
    /// files with writes never fsynced
    dirty: BTreeSet<PathBuf>,
    /// the first write since the last fsync, per dirty file: (line, pid, syscall)
    first_write: BTreeMap<PathBuf, (u64, u32, String)>,
    /// the first failed fsync: (line, pid, syscall, path)
    failed_sync: Option<(u64, u32, String, PathBuf)>,
    /// files fsynced: (line, pid, syscall) of the first fsync since their directory's
    fsynced: BTreeMap<PathBuf, (u64, u32, String)>,
    cwd: Cwd,
    reader: AckReader,
    pids: BTreeSet<u32>,
    reported: BTreeSet<(u64, String)>,
    /// Entries reported as D001 (their directory still not durable).
    reported_names: BTreeSet<PathBuf>,
    /// In-place rewrites (O_TRUNC of an existing file), reported at the end unless the file
    /// was renamed away (a leftover temporary file reused for a replace).
    rewrites: BTreeMap<PathBuf, Finding>,
    /// Paths known to be directories: watched, listed as such at the start, made, opened
    /// with O_DIRECTORY, or the parent of an entry.
    dirs: BTreeSet<PathBuf>,
}

impl Lint<'_> {
    fn watched(&self, dir: &Path) -> bool {
        self.cfg.watched(dir)
    }

    fn resolve(&self, pid: u32, dirfd: Option<&Arg>, name: &[u8]) -> PathBuf {
        self.cwd.resolve(pid, dirfd, name)
    }

    fn dir_op(&mut self, ev: &Event, call: &Syscall, op: &'static str, path: &Path) {
        let (dir, name) = split(path);
        self.dirs.insert(dir.clone());
        self.pending.entry(dir).or_default().push(PendingOp {
            line: ev.line,
            pid: ev.pid,
            syscall: call.name.clone(),
            op,
            name,
        });
    }

    fn sync_dir(&mut self, dir: &Path) {
        self.pending.remove(dir);
        self.fsynced.retain(|f, _| f.parent() != Some(dir));
    }

    fn ack(&mut self, line: u64, text: String) {
        self.report.acks += 1;
        self.ack_inner(line, &text);
        // What was reported is not rescanned at every later acknowledgement (a program
        // with the bug acknowledges often): its entries stay not durable, reported once.
        let watched: Vec<PathBuf> = self
            .pending
            .keys()
            .filter(|d| self.watched(d))
            .cloned()
            .collect();
        for d in watched {
            if let Some(ops) = self.pending.get_mut(&d) {
                for op in ops.drain(..) {
                    self.reported_names.insert(d.join(&op.name));
                }
            }
        }
        let written: Vec<PathBuf> = self
            .first_write
            .keys()
            .filter(|f| f.parent().is_some_and(|d| self.watched(d)))
            .cloned()
            .collect();
        for f in written {
            self.first_write.remove(&f);
        }
    }

    fn ack_inner(&mut self, line: u64, text: &str) {
        let text = text.to_owned();
        if let Some((l, pid, syscall, path)) = self.failed_sync.clone()
            && self.reported.insert((l, "D005".to_owned()))
        {
            let (dir, name) = split(&path);
            self.report.findings.push(Finding {
                rule: "D005",
                severity: "error",
                line: l,
                pid,
                syscall,
                op: "fsync",
                dir,
                name,
                ack: Some((line, text.clone())),
            });
        }
        let dirty: Vec<(PathBuf, (u64, u32, String))> = self
            .first_write
            .iter()
            .filter(|(f, _)| f.parent().is_some_and(|d| self.watched(d)))
            .map(|(f, w)| (f.clone(), w.clone()))
            .collect();
        for (f, (l, pid, syscall)) in dirty {
            if !self.reported.insert((l, format!("D002 {}", f.display()))) {
                continue;
            }
            let (dir, name) = split(&f);
            self.report.findings.push(Finding {
                rule: "D002",
                severity: "warning",
                line: l,
                pid,
                syscall,
                op: "write",
                dir,
                name,
                ack: Some((line, text.clone())),
            });
        }
        for (dir, ops) in &self.pending {
            if !self.watched(dir) {
                continue;
            }
            for op in ops {
                if !self.reported.insert((op.line, format!("D001 {}", op.name))) {
                    continue;
                }
                self.report.findings.push(Finding {
                    rule: "D001",
                    severity: "error",
                    line: op.line,
                    pid: op.pid,
                    syscall: op.syscall.clone(),
                    op: op.op,
                    dir: dir.clone(),
                    name: op.name.clone(),
                    ack: Some((line, text.clone())),
                });
            }
        }
    }

    fn call(&mut self, ev: &Event, c: &Syscall) {
        self.report.syscalls += 1;
        self.cwd.observe(ev, c);
        if self.cfg.channel(c) {
            for text in self.reader.feed(self.cfg, ev.line, c) {
                self.ack(ev.line, text);
            }
        }
        let ok = c.ok();
        match c.name.as_str() {
            "open" | "openat" | "creat" | "openat2" => {
                let (dirfd, name, flags) = match c.name.as_str() {
                    "open" => (None, c.str_arg(0), c.int_arg(1)),
                    "creat" => (None, c.str_arg(0), Some(O_CREAT)),
                    _ => (c.args.first(), c.str_arg(1), c.int_arg(2)),
                };
                let (Some(name), true) = (name, ok) else {
                    return;
                };
                let flags = flags.unwrap_or(0);
                if flags & O_DIRECTORY != 0
                    && let Ret::Value { path: Some(p), .. } = &c.ret
                {
                    self.dirs.insert(normalize(&bytes_path(p)));
                }
                let path = match &c.ret {
                    Ret::Value { path: Some(p), .. } => normalize(&bytes_path(p)),
                    _ => self.resolve(ev.pid, dirfd, name),
                };
                if flags & O_TRUNC != 0
                    && flags & O_ACCMODE != 0
                    && self.exists.contains(&path)
                    && !self.dirs.contains(&path)
                    && path.parent().is_some_and(|d| self.watched(d))
                {
                    let (dir, fname) = split(&path);
                    self.rewrites.entry(path.clone()).or_insert(Finding {
                        rule: "D006",
                        severity: "warning",
                        line: ev.line,
                        pid: ev.pid,
                        syscall: c.name.clone(),
                        op: "truncate",
                        dir,
                        name: fname,
                        ack: None,
                    });
                }
                if flags & O_CREAT == 0 || flags & O_TMPFILE == O_TMPFILE {
                    return;
                }
                if self.exists.insert(path.clone()) {
                    self.dir_op(ev, c, "create", &path);
                }
            }
            "write" | "pwrite64" | "writev" | "pwritev" | "pwritev2" => {
                if !ok || self.cfg.channel(c) {
                    return;
                }
                if let Some(Arg::Fd { path, .. }) = c.args.first() {
                    let p = normalize(&bytes_path(path));
                    self.first_write
                        .entry(p.clone())
                        .or_insert((ev.line, ev.pid, c.name.clone()));
                    self.dirty.insert(p);
                }
            }
            "ftruncate" | "fallocate" => {
                if let (true, Some(Arg::Fd { path, .. })) = (ok, c.args.first()) {
                    self.dirty.insert(normalize(&bytes_path(path)));
                }
            }
            "fsync" | "fdatasync" => {
                self.report.syncs += 1;
                let Some(Arg::Fd { path, .. }) = c.args.first() else {
                    return;
                };
                let p = normalize(&bytes_path(path));
                let serious = matches!(&c.ret, Ret::Error { errno } if matches!(errno.as_str(), "EIO" | "ENOSPC" | "EDQUOT"));
                if !ok && !serious {
                    return; // EINVAL on a pipe, EBADF: not a failed write-back
                }
                if !ok {
                    // The program did try to sync this directory: its files are no D004
                    // (what it acknowledges after the failure is D005's business).
                    if self.pending.contains_key(&p) || self.dirs.contains(&p) {
                        self.fsynced.retain(|f, _| f.parent() != Some(p.as_path()));
                    }
                    if self.failed_sync.is_none()
                        && (self.watched(&p) || p.parent().is_some_and(|d| self.watched(d)))
                    {
                        self.failed_sync = Some((ev.line, ev.pid, c.name.clone(), p));
                    }
                    return;
                }
                self.dirty.remove(&p);
                self.first_write.remove(&p);
                if self.pending.contains_key(&p) || self.dirs.contains(&p) {
                    self.sync_dir(&p);
                } else {
                    self.fsynced
                        .entry(p)
                        .or_insert((ev.line, ev.pid, c.name.clone()));
                }
            }
            "sync" | "syncfs" => {
                self.report.syncs += 1;
                // syncfs syncs one filesystem: the watched directories' if its descriptor is
                // in one of them or above (taken as the same filesystem).
                let here = c.name == "sync"
                    || c.fd_path(0).is_some_and(|p| {
                        let p = normalize(&bytes_path(p));
                        self.watched(&p) || self.cfg.watch.iter().any(|w| w.starts_with(&p))
                    });
                if ok && here {
                    self.pending.clear();
                    self.dirty.clear();
                    self.first_write.clear();
                    self.fsynced.clear();
                }
            }
            "rename" | "renameat" | "renameat2" => {
                if !ok {
                    return;
                }
                let (from, to) = if c.name == "rename" {
                    (
                        c.str_arg(0).map(|n| self.resolve(ev.pid, None, n)),
                        c.str_arg(1).map(|n| self.resolve(ev.pid, None, n)),
                    )
                } else {
                    (
                        c.str_arg(1)
                            .map(|n| self.resolve(ev.pid, c.args.first(), n)),
                        c.str_arg(3).map(|n| self.resolve(ev.pid, c.args.get(2), n)),
                    )
                };
                let (Some(from), Some(to)) = (from, to) else {
                    return;
                };
                // A rewritten file renamed away was a temporary file: no in-place rewrite.
                self.rewrites.remove(&from);
                let moved_write = self.first_write.remove(&from);
                if let Some(w) = moved_write {
                    self.first_write.insert(to.clone(), w);
                }
                if self.dirty.remove(&from) {
                    let (dir, name) = split(&from);
                    if self.watched(&dir) || self.watched(to.parent().unwrap_or(&to)) {
                        self.report.findings.push(Finding {
                            rule: "D003",
                            severity: "error",
                            line: ev.line,
                            pid: ev.pid,
                            syscall: c.name.clone(),
                            op: "rename",
                            dir,
                            name,
                            ack: None,
                        });
                    }
                    self.dirty.insert(to.clone());
                }
                self.exists.remove(&from);
                self.exists.insert(to.clone());
                if let Some(s) = self.fsynced.remove(&from) {
                    self.fsynced.insert(to.clone(), s);
                }
                self.dir_op(ev, c, "rename", &to);
                if from.parent() != to.parent() {
                    self.dir_op(ev, c, "rename", &from);
                }
            }
            "unlink" | "unlinkat" | "rmdir" => {
                let (dirfd, name) = if c.name == "unlinkat" {
                    (c.args.first(), c.str_arg(1))
                } else {
                    (None, c.str_arg(0))
                };
                if let (true, Some(name)) = (ok, name) {
                    let path = self.resolve(ev.pid, dirfd, name);
                    self.exists.remove(&path);
                    self.dirty.remove(&path);
                    self.first_write.remove(&path);
                    self.fsynced.remove(&path);
                    self.dir_op(ev, c, "unlink", &path);
                }
            }
            "mkdir" | "mkdirat" => {
                let (dirfd, name) = if c.name == "mkdirat" {
                    (c.args.first(), c.str_arg(1))
                } else {
                    (None, c.str_arg(0))
                };
                if let (true, Some(name)) = (ok, name) {
                    let path = self.resolve(ev.pid, dirfd, name);
                    self.exists.insert(path.clone());
                    self.dirs.insert(path.clone());
                    self.dir_op(ev, c, "mkdir", &path);
                }
            }
            "link" | "linkat" | "symlink" | "symlinkat" => {
                let (dirfd, name) = match c.name.as_str() {
                    "link" | "symlink" => (None, c.str_arg(1)),
                    "linkat" => (c.args.get(2), c.str_arg(3)),
                    _ => (c.args.get(1), c.str_arg(2)),
                };
                if let (true, Some(name)) = (ok, name) {
                    let path = self.resolve(ev.pid, dirfd, name);
                    self.exists.insert(path.clone());
                    self.dir_op(ev, c, "link", &path);
                }
            }
            "mmap" => {
                let prot = c.int_arg(2).unwrap_or(0);
                let flags = c.int_arg(3).unwrap_or(0);
                if let Some(Arg::Fd { path, .. }) = c.args.get(4)
                    && prot & PROT_WRITE != 0
                    && flags & MAP_SHARED != 0
                    && self.watched(&normalize(&bytes_path(path)))
                {
                    self.report.blind_spots.push((
                        ev.line,
                        format!(
                            "a writable shared mmap of {}",
                            String::from_utf8_lossy(path)
                        ),
                    ));
                }
            }
            "io_uring_setup" | "io_submit" => {
                self.report
                    .blind_spots
                    .push((ev.line, format!("{} (writes the model cannot see)", c.name)));
            }
            _ => {}
        }
    }
}

impl Report {
    /// Findings of severity `error` (what makes the exit code 1).
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == "error")
            .count()
    }
}

/// The bytes a write call wrote, as far as the trace shows them: the string argument, or
/// the `iov_base` strings of a `writev` array.
pub(crate) fn written(c: &Syscall) -> Vec<u8> {
    if let Some(b) = c.str_arg(1) {
        return b.to_vec();
    }
    let Some(Arg::Other(list)) = c.args.get(1) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut rest = list.as_str();
    while let Some(at) = rest.find("iov_base=\"") {
        let body = rest.get(at + 10..).unwrap_or("");
        let mut end = 0;
        let b = body.as_bytes();
        while let Some(&ch) = b.get(end) {
            match ch {
                b'\\' => end += 2,
                b'"' => break,
                _ => end += 1,
            }
        }
        if let Some(Ok(bytes)) = body.get(..end).map(crate::trace::unescape_str) {
            out.extend(bytes);
        }
        rest = body.get(end..).unwrap_or("");
    }
    out
}

/// Replays `events` and reports.
pub fn lint(events: &[Event], cfg: &Config) -> Report {
    let mut l = Lint {
        cfg,
        report: Report::default(),
        exists: cfg.existing.clone(),
        pending: BTreeMap::new(),
        dirty: BTreeSet::new(),
        first_write: BTreeMap::new(),
        failed_sync: None,
        fsynced: BTreeMap::new(),
        cwd: Cwd::default(),
        reader: AckReader::default(),
        pids: BTreeSet::new(),
        reported: BTreeSet::new(),
        reported_names: BTreeSet::new(),
        rewrites: BTreeMap::new(),
        dirs: cfg
            .watch
            .iter()
            .chain(&cfg.existing_dirs)
            .cloned()
            .collect(),
    };
    if let (Some(first), Some(cwd)) = (events.first(), &cfg.start_cwd) {
        l.cwd.start(first.pid, cwd.clone());
    }
    for ev in cfg.replay_order(events) {
        l.pids.insert(ev.pid);
        if let EventKind::Syscall(c) = &ev.kind {
            l.call(ev, c);
        }
    }
    // A last acknowledgement the program wrote without a newline.
    if let Some(last) = events.iter().map(|e| e.line).max() {
        for text in l.reader.finish(cfg) {
            l.ack(last, text);
        }
    }
    // `--ack exit`: the first process exiting with status 0 acknowledges everything.
    if cfg.ack.exit
        && let Some(first) = events.first().map(|e| e.pid)
        && let Some(ev) = events.iter().rev().find(|e| {
            e.pid == first
                && matches!(&e.kind, EventKind::Syscall(c) if c.name == "exit_group" && c.int_arg(0) == Some(0))
        })
    {
        l.ack(ev.line, "exit 0".to_owned());
    }
    // D004: fsynced files whose directory never was, not caught at an acknowledgement.
    let leftovers: Vec<(PathBuf, (u64, u32, String))> = l
        .fsynced
        .iter()
        .filter(|(f, _)| {
            // Its own entry (its create or rename) is still not durable.
            let (dir, name) = split(f);
            l.watched(&dir)
                && (l.reported_names.contains(*f)
                    || l.pending
                        .get(&dir)
                        .is_some_and(|ops| ops.iter().any(|o| o.name == name)))
        })
        .map(|(f, s)| (f.clone(), s.clone()))
        .collect();
    for (f, (line, pid, syscall)) in leftovers {
        let (dir, name) = split(&f);
        if l.reported_names.contains(&f) {
            continue;
        }
        l.report.findings.push(Finding {
            rule: "D004",
            severity: "error",
            line,
            pid,
            syscall,
            op: "fsync",
            dir,
            name,
            ack: None,
        });
    }
    if let Some((line, n, kept)) = l.reader.truncated {
        l.report.blind_spots.push((
            line,
            format!(
                "a write of {n} bytes to the acknowledgement channel of which strace kept {kept} \
                 (an acknowledgement in the rest would be missed: raise --max-write)"
            ),
        ));
    }
    let rewrites = std::mem::take(&mut l.rewrites);
    l.report.findings.extend(rewrites.into_values());
    l.report.processes = l.pids.len();
    l.report.end = events.first().map(|e| e.pid).and_then(|first| {
        events.iter().rev().find_map(|e| match &e.kind {
            EventKind::Exited(code) if e.pid == first => Some(format!("exit {code}")),
            EventKind::Killed(sig) if e.pid == first => Some(format!("killed by {sig}")),
            _ => None,
        })
    });
    l.report.findings.sort_by_key(|f| f.line);
    l.report
}
