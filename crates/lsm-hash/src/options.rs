//! [`Options`].

use std::time::Duration;

use durable_fs::DurableFs;

use kv_core::{Error, RecoveryMode, Result, SyncPolicy, check_limits};

/// Options for [`LsmHash::open`](crate::LsmHash::open); build with the `with_*` methods.
/// The fields shared with bitcask (`fs`, `max_file_bytes`, `preallocate_bytes`,
/// `max_key_bytes`, `max_value_bytes`, `sync`, `read_only`, `recovery`) have the same names,
/// defaults and limits there (except `max_file_bytes`, 16 MiB here).
///
/// ```
/// use lsm_hash::Options;
/// let opts = Options::default().with_max_file_bytes(8 << 20).with_compaction_min_segments(6);
/// assert!(opts.validate().is_ok());
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Options {
    /// The filesystem door. Default: the real filesystem.
    pub fs: DurableFs,
    /// The active segment (a file) is frozen before a write would take it past this.
    /// Default: 16 MiB. Minimum: 4 KiB. Maximum: 4 GiB.
    pub max_file_bytes: u64,
    /// The active segment grows in steps of this many bytes (zeros), so most writes do not
    /// change the file size and their `fdatasync` has no size metadata to flush; a segment is
    /// trimmed to its records when frozen. 0 turns it off. Default: 1 MiB.
    pub preallocate_bytes: u64,
    /// Longest key. Default: 64 KiB.
    pub max_key_bytes: u32,
    /// Longest value. Default: 64 MiB.
    pub max_value_bytes: u32,
    /// Durability of writes ([`SyncPolicy`], shared with `bitcask`). Default: `Always`.
    pub sync: SyncPolicy,
    /// Open without the lock, for reading only: nothing is created, removed, truncated or
    /// written; writes, syncs and compactions return `Error::ReadOnly`. Default: false.
    pub read_only: bool,
    /// Bytes of verified values kept in memory for gets ([`kv_core::ValueCache`]; a hit costs
    /// no read and no checksum, a miss reads and verifies from disk; once full, one miss in 8
    /// is admitted). Default: 32 MiB; 0 turns the cache off. It pays when the hot values fit
    /// (+30% on uniform gets over 100k keys here); uniform gets over a set many times larger
    /// run about 10% slower with it than without (BENCHMARKS.md).
    pub cache_bytes: u64,
    /// What open does with damaged bytes ([`RecoveryMode`], shared with `bitcask`).
    /// Default: `TolerateTornTail`.
    pub recovery: RecoveryMode,
    /// The background thread compacts once this many frozen segments exist. 0 turns
    /// background compaction off (`compact` still works). Default: 4.
    pub compaction_min_segments: usize,
    /// How often the background thread checks. Default: 1 s.
    pub compaction_check_interval: Duration,
    /// Test support only: puts fixed bugs back (all off by default).
    #[doc(hidden)]
    pub regressions: Regressions,
}

/// Fixed bugs a test can put back, to show that the concurrent crash torture catches them
/// (its negative controls). Never set outside tests; every field is `false` by default.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regressions {
    /// Under [`SyncPolicy::Always`], a write is visible to readers before its fsync returns.
    pub visible_before_durable: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fs: DurableFs::real(),
            max_file_bytes: 16 << 20,
            preallocate_bytes: 1 << 20,
            max_key_bytes: 64 << 10,
            max_value_bytes: 64 << 20,
            sync: SyncPolicy::Always,
            read_only: false,
            recovery: RecoveryMode::TolerateTornTail,
            cache_bytes: 32 << 20,
            compaction_min_segments: 4,
            compaction_check_interval: Duration::from_secs(1),
            regressions: Regressions::default(),
        }
    }
}

impl Options {
    /// Test support only: see [`Regressions`].
    #[doc(hidden)]
    #[must_use]
    pub fn with_regressions(mut self, r: Regressions) -> Self {
        self.regressions = r;
        self
    }

    /// Uses another filesystem (for example a simulated one).
    #[must_use]
    pub fn with_fs(mut self, fs: DurableFs) -> Self {
        self.fs = fs;
        self
    }

    /// Sets [`Options::max_file_bytes`].
    #[must_use]
    pub fn with_max_file_bytes(mut self, n: u64) -> Self {
        self.max_file_bytes = n;
        self
    }

    /// Sets [`Options::preallocate_bytes`].
    #[must_use]
    pub fn with_preallocate_bytes(mut self, n: u64) -> Self {
        self.preallocate_bytes = n;
        self
    }

    /// Sets [`Options::max_key_bytes`].
    #[must_use]
    pub fn with_max_key_bytes(mut self, n: u32) -> Self {
        self.max_key_bytes = n;
        self
    }

    /// Sets [`Options::max_value_bytes`].
    #[must_use]
    pub fn with_max_value_bytes(mut self, n: u32) -> Self {
        self.max_value_bytes = n;
        self
    }

    /// Sets [`Options::read_only`].
    #[must_use]
    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Sets [`Options::cache_bytes`].
    #[must_use]
    pub fn with_cache_bytes(mut self, bytes: u64) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Sets [`Options::recovery`].
    #[must_use]
    pub fn with_recovery(mut self, recovery: RecoveryMode) -> Self {
        self.recovery = recovery;
        self
    }

    /// Sets [`Options::sync`].
    #[must_use]
    pub fn with_sync(mut self, sync: SyncPolicy) -> Self {
        self.sync = sync;
        self
    }

    /// Sets [`Options::compaction_min_segments`].
    #[must_use]
    pub fn with_compaction_min_segments(mut self, n: usize) -> Self {
        self.compaction_min_segments = n;
        self
    }

    /// Sets [`Options::compaction_check_interval`].
    #[must_use]
    pub fn with_compaction_check_interval(mut self, d: Duration) -> Self {
        self.compaction_check_interval = d;
        self
    }

    /// Checks the limits documented on each field.
    pub fn validate(&self) -> Result<()> {
        check_limits(
            self.max_file_bytes,
            self.max_key_bytes,
            self.max_value_bytes,
            self.sync,
        )?;
        if self.compaction_check_interval.is_zero() {
            return Err(Error::InvalidOptions(
                "compaction check interval must be > 0".into(),
            ));
        }
        Ok(())
    }
}
