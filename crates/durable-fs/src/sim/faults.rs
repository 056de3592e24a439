//! Injected faults for [`SimFs`](super::SimFs).

use std::fmt;
use std::io;

/// The kinds of operation a [`Fault`] can target; also the unit of [`SimFs`](super::SimFs)'s
/// per-kind operation counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OpKind {
    /// Opening an existing file.
    Open,
    /// Creating a file.
    Create,
    /// A positional read.
    Read,
    /// A positional write.
    Write,
    /// Truncating or extending a file.
    SetLen,
    /// `sync_data` or `sync_all` of a file.
    Sync,
    /// Syncing a directory.
    SyncDir,
    /// Renaming an entry.
    Rename,
    /// Removing a file.
    Remove,
    /// Creating a directory.
    CreateDir,
}

/// The error a [`Fault`] produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultError {
    /// `EIO`. On a file sync it also *loses the dirty data*: the unsynced writes vanish from
    /// the file (as when the kernel drops the pages it failed to write back).
    Eio,
    /// `ENOSPC`. On a write, nothing of it is written.
    Enospc,
}

impl FaultError {
    pub(crate) fn to_io(self) -> io::Error {
        match self {
            // Raw OS codes, so `kind()` is what a real failure reports (StorageFull for ENOSPC).
            FaultError::Eio => io::Error::from_raw_os_error(5),
            FaultError::Enospc => io::Error::from_raw_os_error(28),
        }
    }
}

impl fmt::Display for FaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultError::Eio => "EIO",
            FaultError::Enospc => "ENOSPC",
        })
    }
}

/// A fault to inject: the `nth` (1-based) operation of `kind` fails with `error`; when
/// `sticky`, every later operation of that kind fails too (a full disk stays full).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Which operations.
    pub kind: OpKind,
    /// The first failing one, counting from 1 over operations of `kind`.
    pub nth: u64,
    /// What they fail with.
    pub error: FaultError,
    /// Whether every later operation of `kind` fails as well.
    pub sticky: bool,
}

impl Fault {
    /// Only the `nth` operation of `kind` fails.
    pub fn once(kind: OpKind, nth: u64, error: FaultError) -> Self {
        Fault {
            kind,
            nth,
            error,
            sticky: false,
        }
    }

    /// The `nth` operation of `kind` and every later one fail.
    pub fn from_nth(kind: OpKind, nth: u64, error: FaultError) -> Self {
        Fault {
            kind,
            nth,
            error,
            sticky: true,
        }
    }

    pub(crate) fn fires(&self, kind: OpKind, count: u64) -> bool {
        self.kind == kind && (count == self.nth || (self.sticky && count > self.nth))
    }
}
