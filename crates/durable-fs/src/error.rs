//! The error type of `durable-fs`.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The filesystem operation that failed; part of every [`Error`] so a message says what was
/// being done, not only to which path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// Opening an existing file.
    Open,
    /// Creating a new file.
    Create,
    /// A positional read.
    Read,
    /// A positional write or append.
    Write,
    /// `fdatasync` of a file.
    SyncData,
    /// `fsync` of a file.
    SyncAll,
    /// `fsync` of a directory.
    SyncDir,
    /// Reading a file's length.
    Len,
    /// Truncating or extending a file.
    SetLen,
    /// Renaming an entry.
    Rename,
    /// Removing a file.
    Remove,
    /// Creating a directory.
    CreateDir,
    /// Listing a directory.
    List,
    /// Looking up an entry's kind.
    Stat,
    /// Taking the directory lock.
    Lock,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Op::Open => "open",
            Op::Create => "create",
            Op::Read => "read",
            Op::Write => "write",
            Op::SyncData => "fdatasync",
            Op::SyncAll => "fsync",
            Op::SyncDir => "directory fsync",
            Op::Len => "stat",
            Op::SetLen => "truncate",
            Op::Rename => "rename",
            Op::Remove => "remove",
            Op::CreateDir => "mkdir",
            Op::List => "list",
            Op::Stat => "stat",
            Op::Lock => "lock",
        };
        f.write_str(s)
    }
}

/// Errors from `durable-fs`. Every variant names the path it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error from the operating system (or injected by the simulation).
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: Op,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// An earlier write or sync of this file (or directory) failed. After a failed fsync the
    /// kernel may have dropped the dirty pages, so a retry could "succeed" without the data
    /// (PostgreSQL's "fsyncgate"); the handle therefore refuses all further writes and syncs
    /// and reports the original error. Reopen (and recover) to continue.
    #[error("{} is poisoned: an earlier {op} failed ({source}); reopen to recover", path.display())]
    Poisoned {
        /// The operation that failed first.
        op: Op,
        /// The poisoned file or directory.
        path: PathBuf,
        /// The original error, shared by every later report.
        #[source]
        source: Arc<io::Error>,
    },
    /// Another handle (in this process or another) holds the exclusive lock on the directory.
    #[error("{} is locked by another writer", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
}

impl Error {
    /// The kind of the underlying I/O error (`ErrorKind::StorageFull` for ENOSPC, ...).
    pub fn io_kind(&self) -> io::ErrorKind {
        match self {
            Error::Io { source, .. } => source.kind(),
            Error::Poisoned { source, .. } => source.kind(),
            Error::Locked { .. } => io::ErrorKind::WouldBlock,
        }
    }

    /// The operating system's error code (`EIO` is 5, `ENOSPC` 28 on Linux), if there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error().or_else(|| {
                // Errors re-wrapped by the fail-stop layer keep the original as their inner error.
                source
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<Arc<io::Error>>())
                    .and_then(|orig| orig.raw_os_error())
            }),
            Error::Poisoned { source, .. } => source.raw_os_error(),
            Error::Locked { .. } => None,
        }
    }

    /// True when the path did not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// The path this error concerns.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Error::Io { path, .. } | Error::Poisoned { path, .. } | Error::Locked { path } => path,
        }
    }

    pub(crate) fn io(op: Op, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
