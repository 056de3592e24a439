//! [`Options`], [`SyncPolicy`] and [`RecoveryMode`].

use std::time::Duration;

use durable_fs::DurableFs;

use crate::error::{Error, Result};

/// When appended records become durable. Each variant says what survives a power cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncPolicy {
    /// `append` returns only after the `fdatasync` that covers its record: everything
    /// acknowledged survives. Concurrent appenders share one fsync (leader/follower group
    /// commit), so many writers cost little more than one.
    Always,
    /// A background thread syncs every interval: a power cut loses at most about that much.
    Interval(Duration),
    /// A background sync starts whenever this many bytes are unsynced.
    Bytes(u64),
    /// Nothing is synced until the caller calls [`Wal::sync`](crate::Wal::sync) (or
    /// `close`): a power cut loses everything after the last sync.
    Never,
}

/// What recovery does with damaged bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecoveryMode {
    /// Default. A damaged tail of the last segment with no valid record after it (what a
    /// crash mid-append leaves) is truncated, durably, and reported in the
    /// [`RecoveryReport`](crate::RecoveryReport). Damage followed by valid records is
    /// corruption: an error naming the file and offset.
    TolerateTornTail,
    /// Any damage, even a torn tail, is an error.
    Strict,
    /// Salvage: skip damaged ranges, keep every valid record, report what was skipped. Use to
    /// rescue data, not in normal operation.
    SkipCorrupt,
}

/// Options for [`Wal::open`](crate::Wal::open); build with the `with_*` methods.
///
/// ```
/// use wal::{Options, SyncPolicy};
/// let opts = Options::default()
///     .with_max_segment_bytes(8 << 20)
///     .with_sync(SyncPolicy::Always);
/// assert!(opts.validate().is_ok());
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Options {
    /// The filesystem door. Default: the real filesystem.
    pub fs: DurableFs,
    /// A segment is rotated before a record would take it past this. Default: 64 MiB.
    /// Minimum: 4 KiB. (A single record or batch larger than this gets a segment of its own.)
    pub max_segment_bytes: u64,
    /// Largest payload accepted. Default: 16 MiB. Maximum: 1 GiB.
    pub max_record_bytes: u32,
    /// Durability of `append`. Default: [`SyncPolicy::Always`].
    pub sync: SyncPolicy,
    /// Treatment of damage at open. Default: [`RecoveryMode::TolerateTornTail`].
    pub recovery: RecoveryMode,
    /// Segments grow in steps of this many bytes (zeros, sparse on most filesystems), so
    /// most appends do not change the file size and their `fdatasync` has no size metadata to
    /// flush. Recovery treats zeros after the last record as free space. 0 turns it off.
    /// Default: 1 MiB.
    pub preallocate_bytes: u64,
    /// Records are gathered in memory and written in one `write` call when this fills (or at
    /// a sync). Default: 1 MiB. Minimum: 4 KiB.
    pub write_buffer_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fs: DurableFs::real(),
            max_segment_bytes: 64 << 20,
            max_record_bytes: 16 << 20,
            sync: SyncPolicy::Always,
            recovery: RecoveryMode::TolerateTornTail,
            preallocate_bytes: 1 << 20,
            write_buffer_bytes: 1 << 20,
        }
    }
}

impl Options {
    /// Uses another filesystem (for example a simulated one).
    #[must_use]
    pub fn with_fs(mut self, fs: DurableFs) -> Self {
        self.fs = fs;
        self
    }

    /// Sets [`Options::max_segment_bytes`].
    #[must_use]
    pub fn with_max_segment_bytes(mut self, n: u64) -> Self {
        self.max_segment_bytes = n;
        self
    }

    /// Sets [`Options::max_record_bytes`].
    #[must_use]
    pub fn with_max_record_bytes(mut self, n: u32) -> Self {
        self.max_record_bytes = n;
        self
    }

    /// Sets [`Options::sync`].
    #[must_use]
    pub fn with_sync(mut self, sync: SyncPolicy) -> Self {
        self.sync = sync;
        self
    }

    /// Sets [`Options::recovery`].
    #[must_use]
    pub fn with_recovery(mut self, recovery: RecoveryMode) -> Self {
        self.recovery = recovery;
        self
    }

    /// Sets [`Options::preallocate_bytes`].
    #[must_use]
    pub fn with_preallocate_bytes(mut self, n: u64) -> Self {
        self.preallocate_bytes = n;
        self
    }

    /// Sets [`Options::write_buffer_bytes`].
    #[must_use]
    pub fn with_write_buffer_bytes(mut self, n: usize) -> Self {
        self.write_buffer_bytes = n;
        self
    }

    /// Checks the limits documented on each field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidOptions(m));
        if !(4096..=crate::format::MAX_SEGMENT_LEN).contains(&self.max_segment_bytes) {
            return bad(format!(
                "max_segment_bytes {} is not in 4096..=4 GiB",
                self.max_segment_bytes
            ));
        }
        if self.max_record_bytes > crate::format::MAX_RECORD_LIMIT {
            return bad(format!(
                "max_record_bytes {} is over the maximum 1 GiB",
                self.max_record_bytes
            ));
        }
        if self.write_buffer_bytes < 4096 {
            return bad(format!(
                "write_buffer_bytes {} is below the minimum 4096",
                self.write_buffer_bytes
            ));
        }
        match self.sync {
            SyncPolicy::Interval(d) if d.is_zero() => bad("sync interval must be > 0".into()),
            SyncPolicy::Bytes(0) => bad("sync byte threshold must be > 0".into()),
            _ => Ok(()),
        }
    }
}
