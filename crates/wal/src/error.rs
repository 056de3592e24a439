//! The error type of the `wal` crate.

use std::path::PathBuf;
use std::sync::Arc;

use crate::format::{DecodeError, HeaderError, Lsn};

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What is wrong with damaged bytes; part of [`Error::Corruption`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptionKind {
    /// The segment does not start with the WAL magic.
    BadMagic,
    /// The segment header's checksum does not match.
    BadHeaderChecksum,
    /// The segment header is shorter than 32 bytes.
    ShortHeader,
    /// The header's first LSN differs from the one in the file name.
    NameMismatch {
        /// LSN in the file name.
        name_lsn: Lsn,
        /// LSN in the header.
        header_lsn: Lsn,
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
    /// A record's length is over the limit.
    LengthTooLarge {
        /// Length found.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// Unknown flag bits.
    BadFlags(u32),
    /// A record's LSN is not the one expected next.
    LsnMismatch {
        /// The LSN expected.
        expected: Lsn,
        /// The LSN found.
        found: Lsn,
    },
    /// A segment starts at or below an LSN the previous segment already holds.
    SegmentOverlap {
        /// Last LSN of the previous segment.
        previous_last: Lsn,
        /// First LSN of this one.
        first: Lsn,
    },
    /// The log ends inside a batch (all-or-nothing: the batch is dropped).
    IncompleteBatch,
    /// Damage followed by more plausible-looking records than a linear rescan may check (a
    /// crafted file): whether the damage was durable cannot be told, so it is refused.
    RescanLimit,
    /// The segment chain (`CHAIN`) lists a segment that is not there.
    MissingSegment,
    /// A sealed segment holds fewer records than the chain says it ended with.
    MissingRecords {
        /// The last LSN the chain lists for it.
        expected_last: Lsn,
        /// The last LSN found.
        found_last: Lsn,
    },
    /// A segment's salt is not the one the chain lists: another log's segment.
    ForeignSegment {
        /// Salt in the chain.
        chain_salt: u32,
        /// Salt in the segment header.
        header_salt: u32,
    },
    /// A segment newer than the chain's last holds records: the chain was replaced.
    UnlistedSegment,
    /// The chain file is damaged.
    BadChain,
    /// Format-2 segments hold records but the chain file is missing.
    MissingChain,
    /// A segment longer than its header allows (or, in format 1, than 4 GiB): refused
    /// before anything is read or allocated for it.
    SegmentTooLong {
        /// The file's length.
        len: u64,
        /// The most the format allows it.
        max: u64,
    },
    /// The store's identity file (`IDENTITY`) is damaged.
    BadIdentity,
}

impl std::fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CorruptionKind::BadIdentity => write!(f, "damaged identity file"),
            CorruptionKind::BadMagic => write!(f, "not a WAL segment (bad magic)"),
            CorruptionKind::BadHeaderChecksum => write!(f, "segment header checksum mismatch"),
            CorruptionKind::ShortHeader => write!(f, "segment header is cut short"),
            CorruptionKind::NameMismatch {
                name_lsn,
                header_lsn,
            } => write!(
                f,
                "file name says first LSN {name_lsn}, header says {header_lsn}"
            ),
            CorruptionKind::ChecksumMismatch { expected, actual } => write!(
                f,
                "record checksum mismatch (stored {expected:#010x}, computed {actual:#010x})"
            ),
            CorruptionKind::TruncatedRecord => write!(f, "file ends inside a record"),
            CorruptionKind::LengthTooLarge { len, max } => {
                write!(f, "record length {len} is over the limit {max}")
            }
            CorruptionKind::BadFlags(flags) => write!(f, "unknown record flags {flags:#x}"),
            CorruptionKind::LsnMismatch { expected, found } => {
                write!(f, "expected LSN {expected}, found {found}")
            }
            CorruptionKind::SegmentOverlap {
                previous_last,
                first,
            } => write!(
                f,
                "segment starts at LSN {first} but the previous one ends at {previous_last}"
            ),
            CorruptionKind::IncompleteBatch => write!(f, "log ends inside a batch"),
            CorruptionKind::RescanLimit => write!(
                f,
                "damage followed by more candidate records than a linear rescan checks"
            ),
            CorruptionKind::MissingSegment => {
                write!(f, "segment missing: the segment chain lists it")
            }
            CorruptionKind::MissingRecords {
                expected_last,
                found_last,
            } => write!(
                f,
                "segment ends at LSN {found_last}, the chain says {expected_last}"
            ),
            CorruptionKind::ForeignSegment {
                chain_salt,
                header_salt,
            } => write!(
                f,
                "segment salt {header_salt:#010x} is not the chain's {chain_salt:#010x}: another log's segment"
            ),
            CorruptionKind::UnlistedSegment => {
                write!(f, "segment holds records but is not in the segment chain")
            }
            CorruptionKind::BadChain => write!(f, "segment chain file damaged"),
            CorruptionKind::MissingChain => write!(
                f,
                "segment chain file missing while format-2 segments hold records"
            ),
            CorruptionKind::SegmentTooLong { len, max } => {
                write!(
                    f,
                    "segment is {len} bytes, more than the {max} its format allows"
                )
            }
        }
    }
}

impl From<DecodeError> for CorruptionKind {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Truncated { .. } => CorruptionKind::TruncatedRecord,
            DecodeError::LengthTooLarge { len, max } => CorruptionKind::LengthTooLarge { len, max },
            DecodeError::ChecksumMismatch { expected, actual } => {
                CorruptionKind::ChecksumMismatch { expected, actual }
            }
            DecodeError::BadFlags(f) => CorruptionKind::BadFlags(f),
        }
    }
}

impl From<HeaderError> for CorruptionKind {
    fn from(e: HeaderError) -> Self {
        match e {
            HeaderError::Short => CorruptionKind::ShortHeader,
            HeaderError::BadMagic => CorruptionKind::BadMagic,
            HeaderError::BadChecksum | HeaderError::UnsupportedVersion(_) => {
                CorruptionKind::BadHeaderChecksum
            }
        }
    }
}

/// Errors from the write-ahead log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A filesystem operation failed (the error names the path and the operation).
    #[error(transparent)]
    Fs(durable_fs::Error),
    /// Damaged bytes at a known place.
    #[error("corrupt WAL segment {} at offset {offset}: {kind}", path.display())]
    Corruption {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the damage in it.
        offset: u64,
        /// What is wrong.
        kind: CorruptionKind,
    },
    /// A segment written by an unknown format version.
    #[error("WAL segment {} has format version {version}; this build reads version {}", path.display(), crate::format::VERSION)]
    UnsupportedVersion {
        /// The segment file.
        path: PathBuf,
        /// The version found.
        version: u32,
    },
    /// Another process (or handle) has the log open for writing.
    #[error("the WAL in {} is locked by another writer (lock file {})", dir.display(), lock_file.display())]
    Locked {
        /// The log directory.
        dir: PathBuf,
        /// Its lock file.
        lock_file: PathBuf,
    },
    /// A payload over `max_record_bytes`.
    #[error("record of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// Its length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// An earlier write or sync failed; the log refuses further work until reopened
    /// (fail-stop: nothing after the failure is acknowledged).
    #[error("the WAL is poisoned by an earlier failure: {0}")]
    Poisoned(Arc<Error>),
    /// Options that cannot work.
    #[error("invalid WAL options: {0}")]
    InvalidOptions(String),
    /// The background sync thread could not be started.
    #[error("cannot start the background sync thread: {0}")]
    Thread(std::io::Error),
    /// The append's records were dropped by a concurrent [`Wal::truncate_after`] before they
    /// became durable: they are not in the log, and this LSN will not be reused.
    ///
    /// [`Wal::truncate_after`]: crate::Wal::truncate_after
    #[error("record {lsn} was dropped by truncate_after({after}) before it became durable")]
    Truncated {
        /// The append's last LSN.
        lsn: u64,
        /// The LSN truncate_after kept up to.
        after: u64,
    },
    /// A bug: an invariant broke (for example the group-commit sync panicked). The store is
    /// poisoned; reopen it.
    #[error("internal error: {0}")]
    Internal(String),
    /// An argument out of range (for example truncating beyond the end).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The directory is not a log: missing or empty (for a read-only access), another
    /// engine's store, or holding files the log does not own. Nothing was changed.
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
