//! The error type of the `lsm-hash` crate.

use std::path::PathBuf;
use std::sync::Arc;

pub use bitcask::CorruptionKind;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A filesystem operation failed (the error names the path and the operation).
    #[error(transparent)]
    Fs(durable_fs::Error),
    /// Damaged bytes at a known place.
    #[error("corrupt lsm-hash file {} at offset {offset}: {kind}", path.display())]
    Corruption {
        /// The file.
        path: PathBuf,
        /// Byte offset of the damage.
        offset: u64,
        /// What is wrong.
        kind: CorruptionKind,
    },
    /// Another writer has the store open.
    #[error("the store in {} is locked by another writer (lock file {})", dir.display(), lock_file.display())]
    Locked {
        /// The store directory.
        dir: PathBuf,
        /// Its lock file.
        lock_file: PathBuf,
    },
    /// A key or value over the configured limit.
    #[error("{what} of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// `"key"` or `"value"`.
        what: &'static str,
        /// Its length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// An earlier write or sync failed; the store refuses writes until reopened.
    #[error("the store is poisoned by an earlier failure: {0}")]
    Poisoned(Arc<Error>),
    /// Options that cannot work.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// A background thread could not be started.
    #[error("cannot start a background thread: {0}")]
    Thread(std::io::Error),
    /// A bug: an invariant broke (for example the group-commit sync panicked). The store is
    /// poisoned; reopen it.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<durable_fs::Error> for Error {
    fn from(e: durable_fs::Error) -> Self {
        match e {
            durable_fs::Error::Locked { path } => Error::Locked {
                dir: durable_fs::parent_dir(&path).to_path_buf(),
                lock_file: path,
            },
            other => Error::Fs(other),
        }
    }
}
