//! The simulated disk: inodes with a *live* state (what the running process sees) and a
//! *durable* state (what a power cut leaves), plus the unsynced changes between them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::path::{Component, Path};

use super::CrashMode;
use super::rng::Rng;

pub(crate) type Ino = u64;
pub(crate) const ROOT: Ino = 0;
/// Torn writes damage at most up to the end of the sector they stop in.
const SECTOR: u64 = 512;

/// An unsynced change to a file's data or size.
#[derive(Clone, Debug)]
pub(crate) enum PendingWrite {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Clone, Debug, Default)]
pub(crate) struct FileNode {
    pub live: Vec<u8>,
    pub durable: Vec<u8>,
    /// Changes applied to `live` but not yet to `durable`, oldest first.
    pub pending: Vec<PendingWrite>,
    /// Changes ever made, and ever made durable or dropped (`pending` is the difference):
    /// a sync that covers only what came before a mark drains up to it.
    pub made: u64,
    pub settled: u64,
}

/// An unsynced change to a directory's entries.
#[derive(Clone, Debug)]
pub(crate) enum DirOp {
    Insert(String, Ino),
    Remove(String),
    /// A rename within one directory is one atomic step (as in a journaling filesystem).
    Rename {
        from: String,
        to: String,
        ino: Ino,
    },
}

#[derive(Clone, Debug, Default)]
pub(crate) struct DirNode {
    pub live: BTreeMap<String, Ino>,
    pub durable: BTreeMap<String, Ino>,
    pub pending: Vec<DirOp>,
    /// As for files: entry changes ever made, and ever made durable.
    pub made: u64,
    pub settled: u64,
}

#[derive(Clone, Debug)]
pub(crate) enum Node {
    File(FileNode),
    Dir(DirNode),
}

#[derive(Clone, Debug)]
pub(crate) struct Disk {
    pub nodes: HashMap<Ino, Node>,
    next_ino: Ino,
}

pub(crate) fn err(kind: io::ErrorKind, msg: impl Into<String>) -> io::Error {
    io::Error::new(kind, msg.into())
}

/// The normalised components of `path` (`.` and the root are ignored, `..` pops).
pub(crate) fn components(path: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

pub(crate) fn apply_write(buf: &mut Vec<u8>, w: &PendingWrite) {
    match w {
        PendingWrite::Write { offset, data } => write_at(buf, *offset, data),
        PendingWrite::SetLen(len) => buf.resize(usize::try_from(*len).unwrap_or(usize::MAX), 0),
    }
}

pub(crate) fn write_at(buf: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let end = start.saturating_add(data.len());
    if buf.len() < end {
        buf.resize(end, 0);
    }
    if let Some(dst) = buf.get_mut(start..end) {
        dst.copy_from_slice(data);
    }
}

fn apply_dir_op(map: &mut BTreeMap<String, Ino>, op: &DirOp) {
    match op {
        DirOp::Insert(name, ino) => {
            map.insert(name.clone(), *ino);
        }
        DirOp::Remove(name) => {
            map.remove(name);
        }
        DirOp::Rename { from, to, ino } => {
            map.remove(from);
            map.insert(to.clone(), *ino);
        }
    }
}

/// One change to the disk: what [`Disk::apply`] does, and what a journal records so that any
/// prefix of a run can be rebuilt.
#[derive(Clone, Debug)]
pub(crate) enum Change {
    /// A new inode (a directory when `dir`), numbered by the disk's counter.
    Alloc { dir: bool },
    /// A directory entry change, live now, durable at the directory's sync.
    Dir(Ino, DirOp),
    /// A directory sync: its entries become durable.
    DirSync(Ino),
    /// A write or size change to a file, live now, durable at its sync.
    File(Ino, PendingWrite),
    /// A file sync: its data becomes durable.
    Sync(Ino),
    /// A failed file sync: the kernel dropped the dirty pages.
    SyncLost(Ino),
    /// A sync of a file or directory that covers only the changes made before `mark` (its
    /// `made` count when the sync started; see [`Disk::mark`]).
    SyncThrough(Ino, u64),
    /// Damage on the medium: `mask` XORed into the byte at `offset`, live and durable.
    Flip { ino: Ino, offset: u64, mask: u8 },
}

impl Disk {
    /// Applies `c`; returns the new inode for [`Change::Alloc`] (else the one changed).
    pub fn apply(&mut self, c: &Change) -> io::Result<Ino> {
        match c {
            Change::Alloc { dir } => Ok(self.alloc(if *dir {
                Node::Dir(DirNode::default())
            } else {
                Node::File(FileNode::default())
            })),
            Change::Dir(ino, op) => {
                self.dir_change(*ino, op.clone())?;
                Ok(*ino)
            }
            Change::DirSync(ino) => {
                let d = self.dir_mut(*ino)?;
                d.durable = d.live.clone();
                d.settled += d.pending.len() as u64;
                d.pending.clear();
                Ok(*ino)
            }
            Change::File(ino, w) => {
                let f = self.file_mut(*ino)?;
                apply_write(&mut f.live, w);
                f.pending.push(w.clone());
                f.made += 1;
                Ok(*ino)
            }
            Change::Sync(ino) => {
                let f = self.file_mut(*ino)?;
                f.settled += f.pending.len() as u64;
                for w in std::mem::take(&mut f.pending) {
                    apply_write(&mut f.durable, &w);
                }
                debug_assert!(f.durable == f.live, "sync must make durable equal live");
                Ok(*ino)
            }
            Change::SyncThrough(ino, mark) => {
                // The changes made before `mark` and still pending are the first ones.
                match self.nodes.get_mut(ino) {
                    Some(Node::File(f)) => {
                        let n = usize::try_from(mark.saturating_sub(f.settled))
                            .unwrap_or(usize::MAX)
                            .min(f.pending.len());
                        for w in f.pending.drain(..n) {
                            apply_write(&mut f.durable, &w);
                        }
                        f.settled += n as u64;
                    }
                    Some(Node::Dir(d)) => {
                        let n = usize::try_from(mark.saturating_sub(d.settled))
                            .unwrap_or(usize::MAX)
                            .min(d.pending.len());
                        for op in d.pending.drain(..n) {
                            apply_dir_op(&mut d.durable, &op);
                        }
                        d.settled += n as u64;
                    }
                    None => return Err(err(io::ErrorKind::NotFound, "no such inode")),
                }
                Ok(*ino)
            }
            Change::SyncLost(ino) => {
                let f = self.file_mut(*ino)?;
                f.live = f.durable.clone();
                f.settled += f.pending.len() as u64;
                f.pending.clear();
                Ok(*ino)
            }
            Change::Flip { ino, offset, mask } => {
                let f = self.file_mut(*ino)?;
                let i = usize::try_from(*offset).unwrap_or(usize::MAX);
                for buf in [&mut f.live, &mut f.durable] {
                    let b = buf.get_mut(i).ok_or_else(|| {
                        err(io::ErrorKind::InvalidInput, "offset past end of file")
                    })?;
                    *b ^= *mask;
                }
                Ok(*ino)
            }
        }
    }

    /// What a process crash leaves (no power cut): everything the running process sees,
    /// page cache included, reachable from the root.
    pub fn live_image(&self) -> Disk {
        self.surviving(|node| match node {
            Node::Dir(d) => Node::Dir(DirNode {
                live: d.live.clone(),
                durable: d.live.clone(),
                pending: Vec::new(),
                ..DirNode::default()
            }),
            Node::File(f) => Node::File(FileNode {
                live: f.live.clone(),
                durable: f.live.clone(),
                pending: Vec::new(),
                ..FileNode::default()
            }),
        })
    }

    /// The disk that `survive` leaves of each node, walking from the root through the
    /// entries of the surviving directories (what is unreachable is gone).
    fn surviving(&self, mut survive: impl FnMut(&Node) -> Node) -> Disk {
        let mut out = Disk {
            nodes: HashMap::new(),
            next_ino: self.next_ino,
        };
        let mut queue = VecDeque::from([ROOT]);
        while let Some(ino) = queue.pop_front() {
            if out.nodes.contains_key(&ino) {
                continue;
            }
            let Some(node) = self.nodes.get(&ino) else {
                continue;
            };
            let kept = survive(node);
            if let Node::Dir(d) = &kept {
                queue.extend(d.live.values().copied());
            }
            out.nodes.insert(ino, kept);
        }
        out
    }

    pub fn new() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::Dir(DirNode::default()));
        Disk { nodes, next_ino: 1 }
    }

    pub fn alloc(&mut self, node: Node) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        ino
    }

    pub fn dir(&self, ino: Ino) -> io::Result<&DirNode> {
        match self.nodes.get(&ino) {
            Some(Node::Dir(d)) => Ok(d),
            _ => Err(err(io::ErrorKind::NotADirectory, "not a directory")),
        }
    }

    pub fn dir_mut(&mut self, ino: Ino) -> io::Result<&mut DirNode> {
        match self.nodes.get_mut(&ino) {
            Some(Node::Dir(d)) => Ok(d),
            _ => Err(err(io::ErrorKind::NotADirectory, "not a directory")),
        }
    }

    pub fn file(&self, ino: Ino) -> io::Result<&FileNode> {
        match self.nodes.get(&ino) {
            Some(Node::File(f)) => Ok(f),
            _ => Err(err(io::ErrorKind::IsADirectory, "not a file")),
        }
    }

    pub fn file_mut(&mut self, ino: Ino) -> io::Result<&mut FileNode> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(f)) => Ok(f),
            _ => Err(err(io::ErrorKind::IsADirectory, "not a file")),
        }
    }

    /// Looks `path` up through the live entries.
    pub fn resolve(&self, path: &Path) -> io::Result<Ino> {
        let mut ino = ROOT;
        for name in components(path) {
            ino = *self.dir(ino)?.live.get(&name).ok_or_else(|| {
                err(
                    io::ErrorKind::NotFound,
                    format!("{} not found", path.display()),
                )
            })?;
        }
        Ok(ino)
    }

    /// The directory holding `path` and the last component's name.
    pub fn parent_of(&self, path: &Path) -> io::Result<(Ino, String)> {
        let mut comps = components(path);
        let name = comps
            .pop()
            .ok_or_else(|| err(io::ErrorKind::InvalidInput, "the root has no parent"))?;
        let mut ino = ROOT;
        for c in comps {
            ino = *self.dir(ino)?.live.get(&c).ok_or_else(|| {
                err(
                    io::ErrorKind::NotFound,
                    format!("{} not found", path.display()),
                )
            })?;
        }
        self.dir(ino)?;
        Ok((ino, name))
    }

    /// Adds an entry to the live directory and queues it for the durable one.
    pub fn dir_change(&mut self, dir: Ino, op: DirOp) -> io::Result<()> {
        let d = self.dir_mut(dir)?;
        apply_dir_op(&mut d.live, &op);
        d.pending.push(op);
        d.made += 1;
        Ok(())
    }

    /// What survives a power cut now.
    pub fn crash_image(&self, mode: CrashMode, rng: &mut Rng) -> Disk {
        self.surviving(|node| match node {
            Node::Dir(d) => {
                let mut entries = d.durable.clone();
                if mode != CrashMode::Strict {
                    let n = rng.below_usize(d.pending.len() + 1);
                    for op in d.pending.iter().take(n) {
                        apply_dir_op(&mut entries, op);
                    }
                }
                Node::Dir(DirNode {
                    live: entries.clone(),
                    durable: entries,
                    pending: Vec::new(),
                    ..DirNode::default()
                })
            }
            Node::File(f) => {
                let mut data = f.durable.clone();
                match mode {
                    CrashMode::Strict => {}
                    CrashMode::Torn => torn_file(&mut data, &f.pending, rng),
                    CrashMode::Reordered => reordered_file(&mut data, &f.pending, rng),
                }
                Node::File(FileNode {
                    live: data.clone(),
                    durable: data,
                    pending: Vec::new(),
                    ..FileNode::default()
                })
            }
        })
    }
}

/// Applies each unsynced sector of `pending` (and each size change) with probability 1/2,
/// in order: the disk wrote back some dirty pages and not others.
fn reordered_file(data: &mut Vec<u8>, pending: &[PendingWrite], rng: &mut Rng) {
    for w in pending {
        match w {
            PendingWrite::SetLen(_) => {
                if rng.chance(1, 2) {
                    apply_write(data, w);
                }
            }
            PendingWrite::Write {
                offset,
                data: bytes,
            } => {
                let mut at = *offset;
                let end = offset + bytes.len() as u64;
                while at < end {
                    let next = ((at / SECTOR + 1) * SECTOR).min(end);
                    if rng.chance(1, 2) {
                        let from = usize::try_from(at - offset).unwrap_or(0);
                        let to = usize::try_from(next - offset).unwrap_or(0);
                        write_at(data, at, bytes.get(from..to).unwrap_or_default());
                    }
                    at = next;
                }
            }
        }
    }
}

/// Applies a random prefix of `pending` to `data`, and maybe part of the next write, with the
/// rest of its last sector holding garbage or zeros.
fn torn_file(data: &mut Vec<u8>, pending: &[PendingWrite], rng: &mut Rng) {
    let n = rng.below_usize(pending.len() + 1);
    for w in pending.iter().take(n) {
        apply_write(data, w);
    }
    let Some(PendingWrite::Write {
        offset,
        data: bytes,
    }) = pending.get(n)
    else {
        return;
    };
    if bytes.is_empty() || rng.chance(1, 3) {
        return;
    }
    let cut = rng.below_usize(bytes.len());
    write_at(data, *offset, bytes.get(..cut).unwrap_or_default());
    let torn_at = offset + cut as u64;
    let sector_end = (torn_at / SECTOR + 1) * SECTOR;
    let fill_end = sector_end.min(offset + bytes.len() as u64);
    let fill_len = usize::try_from(fill_end.saturating_sub(torn_at)).unwrap_or(0);
    let mut fill = vec![0u8; fill_len];
    if rng.chance(1, 2) {
        rng.fill(&mut fill);
    }
    write_at(data, torn_at, &fill);
}
