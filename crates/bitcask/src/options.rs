//! [`Options`] and [`MergeTriggers`].

use std::time::Duration;

use durable_fs::DurableFs;
use kv_core::{Error, RecoveryMode, Result, SyncPolicy, check_limits};

/// When an automatic background merge starts (Riak's `frag_merge_trigger` and
/// `dead_bytes_merge_trigger`). Either condition, checked every `check_interval`.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct MergeTriggers {
    /// Merge when dead bytes / total bytes of the immutable files reach this. Default: 0.6.
    pub fragmentation: f64,
    /// Merge when the immutable files hold this many dead bytes. Default: 512 MiB.
    pub dead_bytes: u64,
    /// How often to check. Default: 10 s.
    pub check_interval: Duration,
}

impl MergeTriggers {
    /// Sets [`MergeTriggers::fragmentation`].
    #[must_use]
    pub fn with_fragmentation(mut self, f: f64) -> Self {
        self.fragmentation = f;
        self
    }

    /// Sets [`MergeTriggers::dead_bytes`].
    #[must_use]
    pub fn with_dead_bytes(mut self, n: u64) -> Self {
        self.dead_bytes = n;
        self
    }

    /// Sets [`MergeTriggers::check_interval`].
    #[must_use]
    pub fn with_check_interval(mut self, every: Duration) -> Self {
        self.check_interval = every;
        self
    }
}

impl Default for MergeTriggers {
    fn default() -> Self {
        MergeTriggers {
            fragmentation: 0.6,
            dead_bytes: 512 << 20,
            check_interval: Duration::from_secs(10),
        }
    }
}

/// Options for [`Bitcask::open`](crate::Bitcask::open); build with the `with_*` methods.
/// The fields shared with lsm-hash (`fs`, `max_file_bytes`, `preallocate_bytes`,
/// `max_key_bytes`, `max_value_bytes`, `sync`, `read_only`, `recovery`) have the same names,
/// defaults and limits there.
///
/// ```
/// use bitcask::{Options, SyncPolicy};
/// let opts = Options::default().with_max_file_bytes(16 << 20).with_sync(SyncPolicy::Never);
/// assert!(opts.validate().is_ok());
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Options {
    /// The filesystem door. Default: the real filesystem.
    pub fs: DurableFs,
    /// The active data file is rotated before a write would take it past this. Default:
    /// 64 MiB. Minimum: 4 KiB. Maximum: 4 GiB.
    pub max_file_bytes: u64,
    /// The active data file grows in steps of this many bytes (zeros, sparse on most
    /// filesystems), so most writes do not change the file size and their `fdatasync` has no
    /// size metadata to flush. A file is trimmed to its records when it becomes immutable.
    /// 0 turns it off. Default: 1 MiB.
    pub preallocate_bytes: u64,
    /// Longest key. Default: 64 KiB.
    pub max_key_bytes: u32,
    /// Longest value. Default: 64 MiB.
    pub max_value_bytes: u32,
    /// Durability of writes. Default: [`SyncPolicy::Always`].
    pub sync: SyncPolicy,
    /// Open without the lock, for reading only: no repair, no writes. Default: false.
    pub read_only: bool,
    /// Bytes of verified values kept in memory for gets ([`kv_core::ValueCache`]; a hit costs
    /// no read and no checksum, a miss reads and verifies from disk; once full, one miss in 8
    /// is admitted). Default: 32 MiB; 0 turns the cache off. It pays when the hot values fit
    /// (+30% on uniform gets over 100k keys here); uniform gets over a set many times larger
    /// run about 10% slower with it than without (BENCHMARKS.md).
    pub cache_bytes: u64,
    /// What open does with damaged bytes. Default: [`RecoveryMode::TolerateTornTail`] (cut a
    /// torn tail of the newest file, refuse other damage with file and offset).
    pub recovery: RecoveryMode,
    /// Open read handles kept, at most (the active file's is extra). Default: 64. Minimum 1.
    pub max_open_files: usize,
    /// Automatic background merges; `None` (default) merges only when asked.
    pub auto_merge: Option<MergeTriggers>,
    /// Close writes a keydir image (`KEYDIR`, see the crate docs) when the store holds at
    /// least this many keys, so that the next open loads the keydir in a few large reads
    /// instead of rebuilding it from every hint. Default: 65 536 (below it, hints open a
    /// store in milliseconds); `u64::MAX` never writes one. Opens use an image whatever this
    /// says.
    pub image_min_keys: u64,
    /// Test support only: puts fixed bugs back (all off by default).
    #[doc(hidden)]
    pub regressions: Regressions,
}

/// Fixed bugs a test can put back, to show that the concurrent crash torture catches them
/// (its negative controls). Never set outside tests; every field is `false` by default.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regressions {
    /// A merge commits without first making durable the writes that made the records it
    /// skipped dead (the lost-overwrite race).
    pub merge_commits_before_durable: bool,
    /// Under [`SyncPolicy::Always`], a write is visible to readers before its fsync returns.
    pub visible_before_durable: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fs: DurableFs::real(),
            max_file_bytes: 64 << 20,
            preallocate_bytes: 1 << 20,
            max_key_bytes: 64 << 10,
            max_value_bytes: 64 << 20,
            sync: SyncPolicy::Always,
            read_only: false,
            recovery: RecoveryMode::TolerateTornTail,
            cache_bytes: 32 << 20,
            max_open_files: 64,
            auto_merge: None,
            image_min_keys: 1 << 16,
            regressions: Regressions::default(),
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

    /// Sets [`Options::sync`].
    #[must_use]
    pub fn with_sync(mut self, sync: SyncPolicy) -> Self {
        self.sync = sync;
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

    /// Sets [`Options::image_min_keys`].
    #[must_use]
    pub fn with_image_min_keys(mut self, keys: u64) -> Self {
        self.image_min_keys = keys;
        self
    }

    /// Sets [`Options::recovery`].
    #[must_use]
    pub fn with_recovery(mut self, recovery: RecoveryMode) -> Self {
        self.recovery = recovery;
        self
    }

    /// Sets [`Options::max_open_files`].
    #[must_use]
    pub fn with_max_open_files(mut self, n: usize) -> Self {
        self.max_open_files = n;
        self
    }

    /// Sets [`Options::auto_merge`].
    #[must_use]
    pub fn with_auto_merge(mut self, triggers: Option<MergeTriggers>) -> Self {
        self.auto_merge = triggers;
        self
    }

    /// Test support only: see [`Regressions`].
    #[doc(hidden)]
    #[must_use]
    pub fn with_regressions(mut self, r: Regressions) -> Self {
        self.regressions = r;
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
        if self.max_open_files == 0 {
            return Err(Error::InvalidOptions(
                "max_open_files must be at least 1".into(),
            ));
        }
        if let Some(t) = self.auto_merge
            && (!(0.0..=1.0).contains(&t.fragmentation) || t.check_interval.is_zero())
        {
            return Err(Error::InvalidOptions(
                "merge fragmentation must be in 0..=1 and the interval > 0".into(),
            ));
        }
        Ok(())
    }
}
