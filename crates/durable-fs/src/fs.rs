//! The two traits a filesystem implementation provides: [`Fs`] for the namespace and
//! [`RawFile`] for open files.
//!
//! These are the *primitives*. None of them makes a namespace change durable on its own:
//! that is the job of [`DurableFs`](crate::DurableFs), which composes them into the durable
//! recipes (create then fsync the parent, rename then fsync both directories, ...). Keeping the
//! recipes out of the implementations means they are written once, and a simulated
//! implementation whose `sync_dir` lies proves the tests would catch their absence.

use std::fmt;
use std::io;
use std::path::Path;

/// How [`Fs::open_file`] opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenMode {
    /// An existing file, for reading only.
    Read,
    /// An existing file, for reading and writing (never truncated on open).
    ReadWrite,
    /// A new file for reading and writing; fails with `AlreadyExists` if the name is taken.
    /// The new directory entry is *not* durable until the parent directory is synced.
    CreateNew,
}

/// What a directory entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

/// A held lock; dropping it releases the lock.
pub trait LockToken: Send + Sync + fmt::Debug {}

/// The namespace primitives of a filesystem. Object safe: engines hold `Arc<dyn Fs>` inside a
/// [`DurableFs`](crate::DurableFs), never this trait directly.
///
/// Implementations: [`StdFs`](crate::StdFs) (the real one), [`SimFs`](crate::sim::SimFs) (the
/// simulation), [`RecordingFs`](crate::RecordingFs) (a logging wrapper).
pub trait Fs: Send + Sync + fmt::Debug {
    /// Opens a file. With [`OpenMode::CreateNew`] the entry is in the page cache only until
    /// [`Fs::sync_dir`] of the parent.
    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn RawFile>>;

    /// Renames `from` to `to`, replacing `to` if it is a file. Not durable until the
    /// directories are synced.
    fn rename_entry(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Removes a file. Not durable until the parent directory is synced.
    fn remove_entry(&self, path: &Path) -> io::Result<()>;

    /// Creates one directory (the parent must exist). Not durable until the parent is synced.
    fn create_dir_entry(&self, path: &Path) -> io::Result<()>;

    /// Removes an empty directory. Not durable until the parent is synced.
    fn remove_dir_entry(&self, path: &Path) -> io::Result<()>;

    /// Makes every entry change in the directory `path` durable (`fsync` on the directory).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;

    /// The names in directory `path`, sorted.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;

    /// The kind of the entry at `path`, or `None` if there is none.
    fn entry_kind(&self, path: &Path) -> io::Result<Option<EntryKind>>;

    /// Takes an exclusive lock on the file `path` (created if missing), without waiting.
    /// Fails with `ErrorKind::WouldBlock` if anyone else, in this process or another, holds it.
    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn LockToken>>;

    /// The absolute path of `path` (which must exist) with every symlink resolved. The
    /// default, for filesystems without symlinks (the simulator), is `path` itself.
    fn canonical(&self, path: &Path) -> io::Result<std::path::PathBuf> {
        Ok(path.to_path_buf())
    }
}

/// An open file: positional I/O plus the two syncs. Methods take `&self` so one handle can be
/// written by one thread while another syncs it (the basis of group commit).
pub trait RawFile: Send + Sync + fmt::Debug {
    /// Reads at `offset`; returns the number of bytes read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Writes all of `buf` at `offset`, extending the file if needed. Not durable until synced.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// Makes the file's data and size durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;

    /// Makes the file's data and all metadata durable (`fsync`; `F_FULLFSYNC` on macOS).
    fn sync_all(&self) -> io::Result<()>;

    /// The file's current length in bytes.
    fn len(&self) -> io::Result<u64>;

    /// True when the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Truncates or extends (with zeros) the file to `len`. Not durable until synced.
    fn set_len(&self, len: u64) -> io::Result<()>;
}
