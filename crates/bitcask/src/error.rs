//! The error type of the `bitcask` crate.

use std::path::PathBuf;
use std::sync::Arc;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What is wrong with damaged bytes; part of [`Error::Corruption`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptionKind {
    /// The file does not start with the expected magic.
    BadMagic,
    /// The file header's checksum does not match.
    BadHeaderChecksum,
    /// The file is shorter than its header.
    ShortHeader,
    /// Written by an unknown format version.
    UnsupportedVersion(u32),
    /// The header's file id differs from the file name.
    NameMismatch {
        /// Id in the name.
        name_id: u64,
        /// Id in the header.
        header_id: u64,
    },
    /// A record's checksum does not match.
    ChecksumMismatch {
        /// Stored checksum.
        expected: u32,
        /// Checksum of the bytes found.
        actual: u32,
    },
    /// The file ends inside a record.
    TruncatedRecord,
    /// A key or value length over the limit.
    LengthTooLarge {
        /// Length found.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// Unknown flag bits.
    BadFlags(u32),
    /// The file ends inside a batch.
    IncompleteBatch,
    /// The merge marker is damaged or names files that do not exist.
    BadMergeMarker,
    /// A manifest (lsm-hash) is damaged, or missing while segments hold records.
    BadManifest,
}

impl std::fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CorruptionKind::BadMagic => write!(f, "bad magic"),
            CorruptionKind::BadHeaderChecksum => write!(f, "file header checksum mismatch"),
            CorruptionKind::ShortHeader => write!(f, "file header is cut short"),
            CorruptionKind::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            CorruptionKind::NameMismatch { name_id, header_id } => {
                write!(f, "file name says id {name_id}, header says {header_id}")
            }
            CorruptionKind::ChecksumMismatch { expected, actual } => write!(
                f,
                "record checksum mismatch (stored {expected:#010x}, computed {actual:#010x})"
            ),
            CorruptionKind::TruncatedRecord => write!(f, "file ends inside a record"),
            CorruptionKind::LengthTooLarge { len, max } => {
                write!(f, "length {len} is over the limit {max}")
            }
            CorruptionKind::BadFlags(x) => write!(f, "unknown record flags {x:#x}"),
            CorruptionKind::IncompleteBatch => write!(f, "file ends inside a batch"),
            CorruptionKind::BadMergeMarker => write!(f, "damaged merge marker"),
            CorruptionKind::BadManifest => {
                write!(
                    f,
                    "manifest damaged, or missing while segments hold records"
                )
            }
        }
    }
}

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A filesystem operation failed (the error names the path and the operation).
    #[error(transparent)]
    Fs(durable_fs::Error),
    /// Damaged bytes at a known place.
    #[error("corrupt bitcask file {} at offset {offset}: {kind}", path.display())]
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
    /// A write on a store opened read-only.
    #[error("the store is open read-only")]
    ReadOnly,
    /// Options that cannot work.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// The background thread could not be started.
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
