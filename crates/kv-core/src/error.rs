//! The error type both key-value engines return ([`Error`]), and what damaged bytes look
//! like ([`CorruptionKind`]).

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
    /// The header's file kind (bytes 24..28) is not one this version knows.
    BadFileKind(u32),
    /// The header's file id differs from the file name.
    NameMismatch {
        /// Id in the name.
        name_id: u64,
        /// Id in the header.
        header_id: u64,
    },
    /// A number past what the engine can index: a file id past bitcask's 32-bit keydir ids
    /// (a file named with a larger id, or the id that would follow one), or a record offset
    /// past 4 GiB (files are at most 4 GiB).
    OutOfRange {
        /// `"file id"` or `"offset"`.
        what: &'static str,
        /// The number found.
        value: u64,
        /// The largest allowed.
        max: u64,
    },
    /// A record's checksum does not match.
    ChecksumMismatch {
        /// Stored checksum.
        expected: u32,
        /// Checksum of the bytes found.
        actual: u32,
    },
    /// A valid record, but not the one the index points to (another key, or another write of
    /// the key): the index and the file disagree.
    KeyMismatch {
        /// The seq the index expected.
        expected_seq: u64,
        /// The seq of the record found there.
        found_seq: u64,
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
    /// Bitcask's merge marker is damaged or names files that do not exist.
    BadMergeMarker,
    /// The store's manifest (lsm-hash's `MANIFEST`, bitcask's `FILES`) is damaged, or
    /// missing while format-2 files hold records.
    BadManifest,
    /// Damage followed by more plausible-looking records than a linear rescan may check (a
    /// crafted file): whether the damage was durable cannot be told, so it is refused.
    RescanLimit,
    /// A file the store's manifest lists is not there.
    MissingFile,
    /// A data file holding records that the store's list of files does not name.
    UnlistedFile,
    /// The store's identity file (`IDENTITY`) is damaged.
    BadIdentity,
    /// A hint file or index snapshot is damaged, or lists records its data file does not
    /// hold (found by `verify`; opens fall back to scanning the data file).
    BadHint,
}

impl std::fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CorruptionKind::BadIdentity => write!(f, "damaged identity file"),
            CorruptionKind::BadHint => write!(f, "damaged hint or index snapshot"),
            CorruptionKind::BadMagic => write!(f, "bad magic"),
            CorruptionKind::BadHeaderChecksum => write!(f, "file header checksum mismatch"),
            CorruptionKind::ShortHeader => write!(f, "file header is cut short"),
            CorruptionKind::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            CorruptionKind::BadFileKind(k) => write!(f, "unknown file kind {k}"),
            CorruptionKind::NameMismatch { name_id, header_id } => {
                write!(f, "file name says id {name_id}, header says {header_id}")
            }
            CorruptionKind::OutOfRange { what, value, max } => {
                write!(f, "{what} {value} is past the largest allowed, {max}")
            }
            CorruptionKind::ChecksumMismatch { expected, actual } => write!(
                f,
                "record checksum mismatch (stored {expected:#010x}, computed {actual:#010x})"
            ),
            CorruptionKind::KeyMismatch {
                expected_seq,
                found_seq,
            } => write!(
                f,
                "the index expects the record of seq {expected_seq} here, found seq {found_seq}"
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
            CorruptionKind::MissingFile => write!(f, "file missing: the store's manifest lists it"),
            CorruptionKind::UnlistedFile => {
                write!(
                    f,
                    "data file holds records but the store's list of files does not name it"
                )
            }
            CorruptionKind::RescanLimit => write!(
                f,
                "damage followed by more candidate records than a linear rescan checks"
            ),
        }
    }
}

/// Errors from a key-value store (bitcask or lsm-hash).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A filesystem operation failed (the error names the path and the operation).
    #[error(transparent)]
    Fs(durable_fs::Error),
    /// Damaged bytes at a known place.
    #[error("corrupt store file {} at offset {offset}: {kind}", path.display())]
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
    /// A key, value or batch over the limit.
    #[error("{what} of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// `"key"`, `"value"` or `"batch"`.
        what: &'static str,
        /// Its length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// An earlier write or sync failed; the store refuses reads and writes until reopened.
    #[error("the store is poisoned by an earlier failure: {0}")]
    Poisoned(Arc<Error>),
    /// A write (or merge, compaction, sync) on a store opened read-only.
    #[error("the store is open read-only")]
    ReadOnly,
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
    /// The directory is not this engine's store: missing or empty (for a read-only open),
    /// another engine's store, or holding files the engine does not own. Nothing was changed.
    #[error(transparent)]
    Store(durable_fs::StoreError),
}

impl From<durable_fs::StoreError> for Error {
    /// A damaged identity file is corruption naming it, like any damaged file of the store.
    fn from(e: durable_fs::StoreError) -> Self {
        match e {
            durable_fs::StoreError::BadIdentity { path } => Error::Corruption {
                path,
                offset: 0,
                kind: CorruptionKind::BadIdentity,
            },
            other => Error::Store(other),
        }
    }
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

impl Error {
    /// A [`Error::Corruption`] in `path` at `offset`.
    pub fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        kind: impl Into<CorruptionKind>,
    ) -> Error {
        Error::Corruption {
            path: path.into(),
            offset,
            kind: kind.into(),
        }
    }
}
