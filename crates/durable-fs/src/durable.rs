//! [`DurableFs`]: the durable namespace recipes, written once over any [`Fs`].

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::chunks::{Bytes, Source, each_chunk, end_of_nonzero};
use crate::error::{Error, Op, Result};
use crate::file::File;
use crate::fs::{EntryKind, Fs, LockToken, OpenMode};
use crate::std_fs::StdFs;

/// Name of the lock file [`DurableFs::lock_dir`] creates inside a locked directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// The directory inside a store where [`DurableFs::quarantine`] keeps bytes recovery cut
/// (not `lost+found`, which a filesystem may own at its root).
pub const QUARANTINE_DIR: &str = "quarantine";

/// Suffix of the temporary file [`DurableFs::atomic_replace`] writes next to its target.
/// Engines may remove stale ones (left by a crash mid-replace) at open.
pub const TEMP_SUFFIX: &str = ".tmp";

/// How [`DurableFs::open`] opens an existing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// Reads only.
    Read,
    /// Reads and writes.
    ReadWrite,
}

/// The door to the filesystem. Every engine does all its file work through one of these.
///
/// A cheap, cloneable handle over any [`Fs`] ([`StdFs`] by default). Each namespace operation
/// is durable when it returns: a power cut right after it returns cannot undo it.
///
/// | operation | what it does before returning |
/// |---|---|
/// | [`create_new`](Self::create_new) | create the file, `fsync` it, `fsync` the parent directory |
/// | [`rename`](Self::rename) | `fsync` the file, rename, `fsync` the destination directory, and the source directory if it differs |
/// | [`remove_file`](Self::remove_file) | unlink, `fsync` the parent directory |
/// | [`create_dir_all`](Self::create_dir_all) | for each missing directory, top down: `mkdir`, `fsync` its parent |
/// | [`atomic_replace`](Self::atomic_replace) | write `NAME.tmp`, `fsync` it, rename over `NAME`, `fsync` the directory |
/// | [`sync_dir`](Self::sync_dir) | `fsync` the directory (for callers that batch raw changes) |
///
/// File *contents* are durable only after [`File::sync_data`] or [`File::sync_all`].
///
/// **Fail-stop directories.** A failed directory `fsync` poisons that directory in this
/// `DurableFs` (and its clones): later syncs of it return [`Error::Poisoned`] with the first
/// error. The entry changes it should have covered may or may not be on disk; reopen and
/// recover.
///
/// **Platforms.** Linux first. On macOS `sync_all` is `F_FULLFSYNC` (Rust's standard library
/// does that). Windows cannot `fsync` a directory; there `sync_dir` is a no-op and namespace
/// changes rely on NTFS's metadata journal.
///
/// # Example
/// ```
/// use durable_fs::{Access, DurableFs};
///
/// # fn main() -> Result<(), durable_fs::Error> {
/// # let tmp = tempfile::tempdir().unwrap();
/// # let dir = tmp.path().join("db");
/// let fs = DurableFs::real();
/// fs.create_dir_all(&dir)?;                      // every new directory's parent is fsynced
/// let _lock = fs.lock_dir(&dir)?;                // exclusive: a second writer gets `Locked`
/// let log = fs.create_new(&dir.join("000001.log"))?; // the entry survives a power cut
/// log.append(b"hello")?;
/// log.sync_data()?;                              // and now so does the data
/// fs.atomic_replace(&dir.join("MANIFEST"), b"000001.log\n")?;
/// assert_eq!(fs.read(&dir.join("MANIFEST"))?, b"000001.log\n");
/// let again = fs.open(&dir.join("000001.log"), Access::Read)?;
/// assert_eq!(again.read_all()?, b"hello");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct DurableFs {
    fs: Arc<dyn Fs>,
    poisoned_dirs: Arc<Mutex<HashMap<PathBuf, Arc<io::Error>>>>,
}

impl fmt::Debug for DurableFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableFs").field("fs", &self.fs).finish()
    }
}

impl Default for DurableFs {
    fn default() -> Self {
        Self::real()
    }
}

/// The directory that holds `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

impl DurableFs {
    /// The real filesystem ([`StdFs`]).
    pub fn real() -> Self {
        Self::new(Arc::new(StdFs))
    }

    /// A door over any [`Fs`] implementation.
    pub fn new(fs: Arc<dyn Fs>) -> Self {
        DurableFs {
            fs,
            poisoned_dirs: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Opens an existing file.
    pub fn open(&self, path: &Path, access: Access) -> Result<File> {
        let mode = match access {
            Access::Read => OpenMode::Read,
            Access::ReadWrite => OpenMode::ReadWrite,
        };
        let raw = self
            .fs
            .open_file(path, mode)
            .map_err(|e| Error::io(Op::Open, path, e))?;
        let len = raw.len().map_err(|e| Error::io(Op::Len, path, e))?;
        Ok(File::new(raw, path.to_path_buf(), len))
    }

    /// Creates a new, empty file (failing if the name exists) and makes its directory entry
    /// durable: the file is `fsync`ed, then its parent directory.
    pub fn create_new(&self, path: &Path) -> Result<File> {
        let raw = self
            .fs
            .open_file(path, OpenMode::CreateNew)
            .map_err(|e| Error::io(Op::Create, path, e))?;
        let file = File::new(raw, path.to_path_buf(), 0);
        file.sync_all()?;
        self.sync_dir(parent_dir(path))?;
        Ok(file)
    }

    /// Renames the file `from` to `to` (replacing `to`), durably: `from` is `fsync`ed first
    /// (so the new name never points at unsynced data), then the rename, then the destination
    /// directory is `fsync`ed, and the source directory too when it differs.
    pub fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.open(from, Access::Read)?.sync_all()?;
        self.fs
            .rename_entry(from, to)
            .map_err(|e| Error::io(Op::Rename, from, e))?;
        let (src, dst) = (parent_dir(from), parent_dir(to));
        self.sync_dir(dst)?;
        if src != dst {
            self.sync_dir(src)?;
        }
        Ok(())
    }

    /// Removes the file `path` and `fsync`s its parent, so the file cannot come back.
    pub fn remove_file(&self, path: &Path) -> Result<()> {
        self.fs
            .remove_entry(path)
            .map_err(|e| Error::io(Op::Remove, path, e))?;
        self.sync_dir(parent_dir(path))
    }

    /// Removes the empty directory `dir` and `fsync`s its parent.
    pub fn remove_dir(&self, dir: &Path) -> Result<()> {
        self.fs
            .remove_dir_entry(dir)
            .map_err(|e| Error::io(Op::Remove, dir, e))?;
        self.sync_dir(parent_dir(dir))
    }

    /// Removes `dir` and everything in it, durably (each directory's removals are fsynced).
    /// For tools and tests; engines remove their own files one by one.
    pub fn remove_dir_all(&self, dir: &Path) -> Result<()> {
        for name in self.list(dir)? {
            let path = dir.join(&name);
            match self.kind(&path)? {
                Some(EntryKind::Dir) => self.remove_dir_all(&path)?,
                _ => self.remove_file(&path)?,
            }
        }
        self.remove_dir(dir)
    }

    /// Creates `path` and any missing ancestors; each new directory's parent is `fsync`ed
    /// before the next level is created. Succeeds if the directory already exists.
    pub fn create_dir_all(&self, path: &Path) -> Result<()> {
        let mut missing = Vec::new();
        let mut cur = Some(path);
        while let Some(p) = cur {
            if p.as_os_str().is_empty() {
                break;
            }
            match self.kind(p)? {
                Some(EntryKind::Dir) => break,
                Some(EntryKind::File) => {
                    return Err(Error::io(
                        Op::CreateDir,
                        p,
                        io::Error::new(io::ErrorKind::NotADirectory, "a file is in the way"),
                    ));
                }
                None => missing.push(p),
            }
            cur = p.parent();
        }
        for dir in missing.into_iter().rev() {
            match self.fs.create_dir_entry(dir) {
                Ok(()) => {}
                // Someone else made it meanwhile; their sync covers it, ours is harmless.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(Op::CreateDir, dir, e)),
            }
            self.sync_dir(parent_dir(dir))?;
        }
        Ok(())
    }

    /// Keeps bytes a recovery is about to cut (a torn tail: possibly user data, never proven
    /// garbage), durably, before the cut: `bytes` without their trailing zeros (preallocated
    /// space, not data) go to `store_dir/quarantine/<file name>.<offset>.<crc32 of the bytes>`
    /// with [`DurableFs::atomic_replace`], the directory created and the store directory
    /// synced so the entry survives a power cut. Returns that path, or `None` when nothing but
    /// zeros was cut. The CRC in the name means a later cut at the same offset (the file was
    /// appended to again after the first cut) never overwrites an earlier copy, and a repeat
    /// of the same cut (a crash before the cut) rewrites identical bytes. If the copy cannot
    /// be made (no space, no permission), this fails and the caller does not cut.
    pub fn quarantine(
        &self,
        store_dir: &Path,
        file: &Path,
        offset: u64,
        bytes: &[u8],
    ) -> Result<Option<PathBuf>> {
        self.keep(store_dir, file, offset, (&mut Bytes(bytes), 0))
    }

    /// [`DurableFs::quarantine`] for a tail read from `src` (the whole file being cut, read
    /// in chunks: memory stays bounded whatever the tail's length): the bytes `offset..`,
    /// without their trailing zeros.
    pub fn quarantine_tail(
        &self,
        store_dir: &Path,
        file: &Path,
        src: &mut dyn Source,
        offset: u64,
    ) -> Result<Option<PathBuf>> {
        self.keep(store_dir, file, offset, (src, offset))
    }

    /// The bytes of `src` from `from` on, without trailing zeros, kept as
    /// `quarantine/<file name>.<offset>.<crc32>` (see [`DurableFs::quarantine`]).
    fn keep(
        &self,
        store_dir: &Path,
        file: &Path,
        offset: u64,
        (src, from): (&mut dyn Source, u64),
    ) -> Result<Option<PathBuf>> {
        let end = end_of_nonzero(src, from)?;
        if end <= from {
            return Ok(None);
        }
        let lost = store_dir.join(QUARANTINE_DIR);
        self.create_dir_all(&lost)?;
        // The directory may exist from a run that crashed before its entry was synced.
        self.sync_dir(store_dir)?;
        let name = file
            .file_name()
            .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
        let mut h = crc32fast::Hasher::new();
        each_chunk(src, from, end - from, |c| h.update(c))?;
        let path = lost.join(format!("{name}.{offset}.{:08x}", h.finalize()));
        self.replace_with(&path, |tmp| {
            let mut at = 0u64;
            let mut written = Ok(());
            each_chunk(src, from, end - from, |c| {
                if written.is_ok() {
                    written = tmp.write_all_at(c, at);
                    at += c.len() as u64;
                }
            })?;
            written
        })?;
        Ok(Some(path))
    }

    /// Replaces the whole content of the small file `path` atomically and durably: after a
    /// crash at any point the file holds either the old content or `bytes`, never a mix.
    ///
    /// The recipe: write `path` + [`TEMP_SUFFIX`], `fsync` it, rename it over `path`,
    /// `fsync` the directory. A crash can leave the temporary file behind; it is removed by
    /// the next replace of the same path.
    pub fn atomic_replace(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        self.replace_with(path, |file| file.write_all_at(bytes, 0))
    }

    /// [`DurableFs::atomic_replace`] for content too large to hold in memory at once:
    /// `write` writes it into the temporary file (by position, from 0), which is then
    /// synced, renamed over `path` and made durable by a directory sync, as there. An error
    /// from `write` removes the temporary file and leaves `path` as it was.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let fs = durable_fs::DurableFs::real();
    /// let path = dir.path().join("big");
    /// fs.atomic_replace_with(&path, |f| {
    ///     f.write_all_at(b"hello, ", 0)?;
    ///     f.write_all_at(b"world", 7)
    /// })
    /// .unwrap();
    /// assert_eq!(fs.read(&path).unwrap(), b"hello, world");
    /// ```
    pub fn atomic_replace_with(
        &self,
        path: &Path,
        write: impl FnOnce(&File) -> Result<()>,
    ) -> Result<()> {
        self.replace_with(path, write)
    }

    /// The recipe of [`DurableFs::atomic_replace`], the content written by `write` into the
    /// temporary file.
    fn replace_with(&self, path: &Path, write: impl FnOnce(&File) -> Result<()>) -> Result<()> {
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(TEMP_SUFFIX);
        let tmp = PathBuf::from(tmp_name);
        if self.kind(&tmp)?.is_some() {
            // Left by a crash; its entry need not be durable, the rename below supersedes it.
            self.fs
                .remove_entry(&tmp)
                .map_err(|e| Error::io(Op::Remove, &tmp, e))?;
        }
        let raw = self
            .fs
            .open_file(&tmp, OpenMode::CreateNew)
            .map_err(|e| Error::io(Op::Create, &tmp, e))?;
        let file = File::new(raw, tmp.clone(), 0);
        if let Err(e) = write(&file).and_then(|()| file.sync_all()) {
            // Best effort: a large partial copy should not sit there until the next try.
            drop(file);
            let _ = self.fs.remove_entry(&tmp);
            return Err(e);
        }
        drop(file);
        self.fs
            .rename_entry(&tmp, path)
            .map_err(|e| Error::io(Op::Rename, &tmp, e))?;
        self.sync_dir(parent_dir(path))
    }

    /// `fsync`s the directory `dir`, making every entry change in it durable. Fail-stop: a
    /// failure poisons the directory for this `DurableFs`.
    pub fn sync_dir(&self, dir: &Path) -> Result<()> {
        // One directory sync at a time per door, and the poison checked under the same lock:
        // two concurrent fsyncs of a directory could see one error between them.
        let key: PathBuf = dir
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect();
        let mut poisoned = self.poisoned_dirs.lock();
        if let Some(first) = poisoned.get(&key) {
            return Err(Error::Poisoned {
                op: Op::SyncDir,
                path: dir.to_path_buf(),
                source: Arc::clone(first),
            });
        }
        match self.fs.sync_dir(dir) {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = Arc::new(e);
                poisoned.insert(key, Arc::clone(&e));
                Err(Error::Io {
                    op: Op::SyncDir,
                    path: dir.to_path_buf(),
                    source: io::Error::new(e.kind(), e),
                })
            }
        }
    }

    /// The names in directory `dir`, sorted.
    pub fn list(&self, dir: &Path) -> Result<Vec<String>> {
        self.fs
            .list_dir(dir)
            .map_err(|e| Error::io(Op::List, dir, e))
    }

    /// What is at `path`, if anything.
    pub fn kind(&self, path: &Path) -> Result<Option<EntryKind>> {
        self.fs
            .entry_kind(path)
            .map_err(|e| Error::io(Op::Stat, path, e))
    }

    /// The absolute path of `path` (which must exist) with every symlink resolved: what the
    /// kernel names it (`durable audit` compares its paths with the kernel's).
    ///
    /// ```
    /// let fs = durable_fs::DurableFs::real();
    /// let dir = tempfile::tempdir().unwrap();
    /// let c = fs.canonicalize(&dir.path().join(".")).unwrap();
    /// assert!(c.is_absolute() && !c.ends_with("."));
    /// ```
    pub fn canonicalize(&self, path: &Path) -> Result<PathBuf> {
        self.fs
            .canonical(path)
            .map_err(|e| Error::io(Op::Stat, path, e))
    }

    /// True if anything is at `path`.
    pub fn exists(&self, path: &Path) -> Result<bool> {
        Ok(self.kind(path)?.is_some())
    }

    /// Reads a whole file.
    pub fn read(&self, path: &Path) -> Result<Vec<u8>> {
        self.open(path, Access::Read)?.read_all()
    }

    /// Takes the exclusive lock of directory `dir` (the file [`LOCK_FILE_NAME`] inside it),
    /// without waiting. A second lock of the same directory, from this process or another,
    /// gets [`Error::Locked`] until the returned guard is dropped.
    pub fn lock_dir(&self, dir: &Path) -> Result<DirLock> {
        let path = dir.join(LOCK_FILE_NAME);
        match self.fs.try_lock(&path) {
            Ok(token) => Ok(DirLock {
                path,
                _token: token,
            }),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(Error::Locked { path }),
            Err(e) => Err(Error::io(Op::Lock, path, e)),
        }
    }
}

/// The exclusive lock on a directory; released on drop.
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
    _token: Box<dyn LockToken>,
}

impl DirLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
