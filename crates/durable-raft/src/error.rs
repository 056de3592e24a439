//! Errors of the Raft storage, and their mapping onto openraft's `StorageError`.

use std::path::PathBuf;
use std::sync::Arc;

/// Errors from the Raft log store and state machine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The write-ahead log under the Raft log failed.
    #[error(transparent)]
    Wal(#[from] wal::Error),
    /// The bitcask store under the state machine failed.
    #[error(transparent)]
    Kv(#[from] bitcask::Error),
    /// A filesystem operation failed (the error names the path and the operation).
    #[error(transparent)]
    Fs(#[from] durable_fs::Error),
    /// Damaged or impossible bytes at a known place.
    #[error("corrupt Raft storage file {} at offset {offset}: {what}", path.display())]
    Corruption {
        /// The file (for the log: the log directory; the offset is then the LSN).
        path: PathBuf,
        /// Byte offset of the damage (for a log record: its LSN).
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A call that breaks the Raft log's rules (indexes that do not grow, an older leader, an
    /// entry over the size limit).
    #[error("invalid Raft log operation: {0}")]
    Invalid(String),
    /// An encoding failed (a value that postcard cannot write).
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Why.
        source: postcard::Error,
    },
    /// An earlier write or sync failed: the store refuses further work until reopened
    /// (fail-stop: nothing after the failure is acknowledged).
    #[error("the Raft storage is poisoned by an earlier failure: {0}")]
    Poisoned(Arc<Error>),
    /// The background flusher thread is gone (it could not start, or the store is closing).
    #[error("the Raft log's flusher thread is gone")]
    FlusherGone,
    /// A bug: a background task panicked.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn corrupt(path: impl Into<PathBuf>, offset: u64, what: impl Into<String>) -> Error {
        Error::Corruption {
            path: path.into(),
            offset,
            what: what.into(),
        }
    }
}
